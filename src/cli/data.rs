//! `rtrbm data ...` (stub)
#[derive(clap::Subcommand, Debug)]
pub enum DataCmd {}
pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {}
}
