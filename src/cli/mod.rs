//! The `rtrbm` command line: one module per subcommand family.
pub mod bench;
pub mod data;
pub mod device;
pub mod eval;
pub mod info;
pub mod reproduce;
pub mod sample;
pub mod sweep;
pub mod train;

use crate::data::Dataset;
use crate::error::Result;

/// Opens a dataset named on the command line: `jsb` is the JSB Chorales shipped in the binary,
/// anything else a `.json`, `.pkl` or `.mat` file.
pub fn load_data(name: &str) -> Result<Dataset> {
    crate::data::open(name)
}
