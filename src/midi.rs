//! MIDI in and out (stub: filled in by the MIDI work).
use crate::data::{Dataset, Sequence};
use crate::error::{Error, Result};
use std::path::Path;

/// Grid resolution of the imported piano roll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Grid {
    Quarter,
    Eighth,
}

/// Options of the importer.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub grid: Grid,
    pub include_drums: bool,
    pub transpose_to_c: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { grid: Grid::Quarter, include_drums: false, transpose_to_c: false }
    }
}

/// Reads one MIDI file into a piano roll.
pub fn read_midi(path: &Path, _opts: &ImportOptions) -> Result<Sequence> {
    Err(Error::format(path, "MIDI import not implemented yet"))
}

/// Reads a `.mid` file or a folder of them into a dataset (all pieces in `train` unless split).
pub fn import_path(path: &Path, _opts: &ImportOptions) -> Result<Dataset> {
    Err(Error::format(path, "MIDI import not implemented yet"))
}

/// Writes a piano roll as a type-1 MIDI file; `ticks_per_frame` ticks per frame at 480 TPQ.
pub fn write_midi(path: &Path, _seq: &Sequence, _frame_beats: f64, _bpm: f64) -> Result<()> {
    Err(Error::format(path, "MIDI export not implemented yet"))
}
