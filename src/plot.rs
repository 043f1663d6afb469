//! PNG pictures: piano rolls and training curves (stub: filled in by the plotting work).
use crate::data::Sequence;
use crate::error::{Error, Result};
use std::path::Path;

/// Writes a piano-roll picture (time across, pitch up).
pub fn piano_roll_png(path: &Path, _seq: &Sequence, _title: &str) -> Result<()> {
    Err(Error::format(path, "piano-roll pictures not implemented yet"))
}

/// One line of a line chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes a line chart (e.g. training curves) with the given series.
pub fn line_chart_png(path: &Path, _title: &str, _x_label: &str, _series: &[Series]) -> Result<()> {
    Err(Error::format(path, "line charts not implemented yet"))
}
