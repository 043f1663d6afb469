//! `rtrbm reproduce`: train and evaluate every (dataset, model) pair and write docs/RESULTS.md.

use super::device::{default_threads, Device, DeviceChoice};
use crate::reproduce::{reproduce, ReproduceOptions, DATASETS, MODELS};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// Datasets (jsb, musedata, nottingham, piano_midi_de).
    #[arg(long, value_delimiter = ',', default_value = "jsb,musedata,nottingham,piano_midi_de")]
    pub datasets: Vec<String>,
    /// Models (rtrbm, rnn_rbm, lstm_rtrbm).
    #[arg(long, value_delimiter = ',', default_value = "rtrbm,rnn_rbm,lstm_rtrbm")]
    pub models: Vec<String>,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// AIS intervals: the Salakhutdinov-Murray schedule scaled to N (14500 = the full schedule).
    #[arg(long, default_value_t = 14_500)]
    pub ais_betas: usize,
    /// AIS runs per frame.
    #[arg(long, default_value_t = 100)]
    pub ais_runs: usize,
    #[command(flatten)]
    pub acc: super::eval::AccArgs,
    /// Override the configs' epochs (recorded in RESULTS.md).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the configs' max_updates (recorded in RESULTS.md).
    #[arg(long)]
    pub max_updates: Option<u64>,
    /// Evaluate only the first N test sequences (recorded in RESULTS.md).
    #[arg(long)]
    pub eval_max_sequences: Option<usize>,
    /// Also the motion-capture baseline (SPEC 4.3).
    #[arg(long)]
    pub mocap: bool,
    /// Skip the generated samples.
    #[arg(long)]
    pub no_samples: bool,
    /// Only regenerate docs/RESULTS.md from the results already on disk.
    #[arg(long)]
    pub report_only: bool,
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Run folders.
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    #[arg(long, default_value = "docs")]
    pub docs: PathBuf,
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(mut args: ReproduceArgs) -> anyhow::Result<()> {
    // `--datasets ""` (with `--mocap`) runs the motion-capture baseline alone
    args.datasets.retain(|d| !d.is_empty());
    args.models.retain(|m| !m.is_empty());
    for d in &args.datasets {
        anyhow::ensure!(DATASETS.contains(&d.as_str()), "unknown dataset `{d}` (expected one of {DATASETS:?})");
    }
    for m in &args.models {
        anyhow::ensure!(MODELS.contains(&m.as_str()), "unknown model `{m}` (expected one of {MODELS:?})");
    }
    let command = format!("rtrbm {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let opts = ReproduceOptions {
        datasets: args.datasets,
        models: args.models,
        configs_dir: args.configs,
        out_dir: args.out,
        docs_dir: args.docs,
        ais_betas: args.ais_betas,
        ais_runs: args.ais_runs,
        acc: args.acc.options(1)?,
        epochs: args.epochs,
        max_updates: args.max_updates,
        eval_max_sequences: args.eval_max_sequences,
        mocap: args.mocap,
        samples: !args.no_samples,
        only_report: args.report_only,
        command,
    };
    if opts.only_report {
        return Ok(crate::reproduce::write_report(&opts)?);
    }
    let device = Device::open(args.device, args.threads.unwrap_or_else(default_threads))?;
    crate::with_device!(device, |be| reproduce(be, &opts))?;
    Ok(())
}
