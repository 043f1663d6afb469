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
    /// Evaluate a checkpoint: AIS log-likelihood per frame, expected frame-level accuracy.
    Eval(cli::eval::EvalArgs),
    /// Generate a piece from a checkpoint as MIDI (and a piano-roll picture).
    Sample(cli::sample::SampleArgs),
    /// Train and evaluate every (dataset, model) pair of Table 1 and write docs/RESULTS.md.
    Reproduce(cli::reproduce::ReproduceArgs),
    /// Inspect, convert and import piano-roll datasets.
    #[command(subcommand)]
    Data(cli::data::DataCmd),
    /// Time the standard workloads (training, batched training, AIS) on a device.
    Bench(cli::bench::BenchArgs),
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
        Cmd::Eval(a) => cli::eval::run(a),
        Cmd::Sample(a) => cli::sample::run(a),
        Cmd::Reproduce(a) => cli::reproduce::run(a),
        Cmd::Data(c) => cli::data::run(c),
        Cmd::Bench(a) => cli::bench::run(a),
        Cmd::Sweep(c) => cli::sweep::run(c),
        Cmd::Info => cli::info::run(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
