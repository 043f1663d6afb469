//! The `rtrbm` command line: one module per subcommand family.
pub mod data;
pub mod eval;
