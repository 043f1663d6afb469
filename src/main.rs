use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "rtrbm", version, about = "Train, evaluate and sample LSTM-RTRBM, RTRBM and RNN-RBM music models")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Inspect, convert and import piano-roll datasets.
    #[command(subcommand)]
    Data(rtrbm::cli::data::DataCmd),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Data(c) => rtrbm::cli::data::run(c),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
