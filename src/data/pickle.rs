//! stub
use super::Dataset;
use crate::error::{Error, Result};
use std::path::Path;
pub fn read(path: &Path) -> Result<Dataset> {
    Err(Error::format(path, "todo"))
}
