//! stub
use super::Dataset;
use crate::error::{Error, Result};
use std::path::Path;
pub fn read(path: &Path) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}
pub fn parse(_text: &str, path: &Path) -> Result<Dataset> {
    Err(Error::format(path, "todo"))
}
