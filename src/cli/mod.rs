//! The `rtrbm` command line: one module per subcommand family.
pub mod data;
pub mod device;
pub mod info;
pub mod sample;
pub mod sweep;
pub mod train;

use crate::data::Dataset;
use crate::error::Result;
use std::path::Path;

/// Opens a dataset named on the command line: `jsb` is the JSB Chorales shipped in the binary,
/// anything else a `.json`, `.pkl` or `.mat` file.
pub fn load_data(name: &str) -> Result<Dataset> {
    if name == "jsb" {
        Ok(crate::data::jsb_embedded())
    } else {
        Dataset::load(Path::new(name))
    }
}
