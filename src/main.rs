//! The `rtrbm` command: train, evaluate and sample polyphonic music models.

use clap::Parser;
use rtrbm::cli;

#[derive(Parser, Debug)]
#[command(
    name = "rtrbm",
    version,
    about = "Train, evaluate and sample LSTM-RTRBM, RTRBM and RNN-RBM models of polyphonic music",
    long_about = "Train, evaluate and sample LSTM-RTRBM, RTRBM and RNN-RBM models of polyphonic music.\n\n\
                  Start with `rtrbm train` (LSTM-RTRBM on the JSB Chorales shipped in the binary), then\n\
                  `rtrbm eval --checkpoint runs/jsb_lstm_rtrbm/best.safetensors --data jsb` and\n\
                  `rtrbm sample --checkpoint runs/jsb_lstm_rtrbm/best.safetensors --out sample.mid --png sample.png`."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Train a model (default: LSTM-RTRBM on the shipped JSB Chorales).
    Train(cli::train::TrainArgs),
    /// Generate a piece from a checkpoint as MIDI (and a piano-roll picture).
    Sample(cli::sample::SampleArgs),
    /// Inspect, convert and import piano-roll datasets.
    #[command(subcommand)]
    Data(cli::data::DataCmd),
    /// Training sweeps: plan, run (threads, GPUs, Slurm), report.
    #[command(subcommand)]
    Sweep(cli::sweep::SweepCmd),
    /// Version, compiled-in backends, CUDA libraries and GPUs.
    Info,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Train(a) => cli::train::run(a),
        Cmd::Sample(a) => cli::sample::run(a),
        Cmd::Data(c) => cli::data::run(c),
        Cmd::Sweep(c) => cli::sweep::run(c),
        Cmd::Info => cli::info::run(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
