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
