//! Piano-roll datasets: one in-memory type for the four benchmarks and for imported MIDI.
//!
//! A frame is the ascending list of MIDI pitches sounding in it (21..=108); unit i of the 88-unit
//! visible layer is pitch 21 + i. A dataset has three splits of sequences of frames.

pub mod json;
pub mod mat;
pub mod mocap;
pub mod pickle;
pub mod split;
pub mod stats;

use crate::error::{Error, Result};
use std::path::Path;

/// Lowest and highest piano pitch (MIDI numbers) and the number of keys V.
pub const PITCH_MIN: u8 = 21;
pub const PITCH_MAX: u8 = 108;
pub const KEYS: usize = 88;

/// One piece: a list of frames, each the ascending pitches sounding in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sequence {
    pub frames: Vec<Vec<u8>>,
}

impl Sequence {
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    /// The piano roll as a dense T x 88 row-major 0/1 matrix.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.frames.len() * KEYS];
        for (t, frame) in self.frames.iter().enumerate() {
            for &p in frame {
                out[t * KEYS + (p - PITCH_MIN) as usize] = 1.0;
            }
        }
        out
    }
    /// The inverse of [`Sequence::to_dense`]: a unit is on when its value is above 0.5.
    pub fn from_dense(dense: &[f32]) -> Self {
        let frames = dense
            .chunks(KEYS)
            .map(|row| row.iter().enumerate().filter(|(_, &x)| x > 0.5).map(|(i, _)| PITCH_MIN + i as u8).collect())
            .collect();
        Sequence { frames }
    }
}

/// The three standard splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// A piano-roll dataset with train / valid / test splits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dataset {
    pub train: Vec<Sequence>,
    pub valid: Vec<Sequence>,
    pub test: Vec<Sequence>,
}

impl Dataset {
    pub fn split(&self, s: Split) -> &[Sequence] {
        match s {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }
    pub fn split_mut(&mut self, s: Split) -> &mut Vec<Sequence> {
        match s {
            Split::Train => &mut self.train,
            Split::Valid => &mut self.valid,
            Split::Test => &mut self.test,
        }
    }

    /// Reads a dataset, choosing the reader by extension: `.json`, `.pkl`/`.pickle`, `.mat`.
    pub fn load(path: &Path) -> Result<Dataset> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "json" => json::read(path),
            "pkl" | "pickle" => pickle::read(path),
            "mat" => mat::read(path),
            _ => Err(Error::format(path, "unknown dataset format (expected .json, .pkl, .pickle or .mat)")),
        }
    }
}

/// JSB Chorales, shipped inside the binary (public domain; see `data/README.md`).
pub const JSB_JSON: &str = include_str!("../../data/jsb_chorales.json");

/// The embedded JSB Chorales dataset.
pub fn jsb_embedded() -> Dataset {
    json::parse(JSB_JSON, Path::new("<embedded jsb_chorales.json>")).expect("embedded JSB data is valid")
}

/// Opens a dataset by the name used in configs and on the command line: `jsb` is the JSB
/// Chorales shipped in the binary, anything else a `.json`, `.pkl` or `.mat` file.
pub fn open(name: &str) -> Result<Dataset> {
    if name == "jsb" {
        Ok(jsb_embedded())
    } else {
        Dataset::load(Path::new(name))
    }
}

/// True when a data path names the real-valued motion-capture file (SPEC 4.3).
pub fn is_mocap(name: &str) -> bool {
    name.ends_with("mocap49.json")
}
