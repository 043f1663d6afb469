//! `rtrbm train`: train a model from a YAML config (default: LSTM-RTRBM on the shipped JSB).

use super::device::{default_threads, Device, DeviceChoice};
use crate::config::Config;
use crate::train::{self, RunOptions};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// YAML config (see configs/); without one, LSTM-RTRBM 88/88 on the JSB Chorales shipped in
    /// the binary with the paper's settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// auto (GPU if usable, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Run folder (config.yaml, metrics.jsonl, curves.png, checkpoint.safetensors, best.safetensors).
    /// Default: runs/<config name>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (uses its config.yaml).
    #[arg(long, conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// Override train.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override train.max_updates (stop after this many updates in total).
    #[arg(long)]
    pub max_updates: Option<u64>,
    /// Override train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override train.batch (chunks per update) for a new run.
    #[arg(long, conflicts_with = "resume")]
    pub batch: Option<usize>,
    /// Set train.bucket for a new run: batches of chunks of similar length (batch > 1), padded
    /// far less than batches of random chunks, so an epoch takes less time.
    #[arg(long, conflicts_with = "resume")]
    pub bucket: bool,
    /// Override train.checkpoint_every.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let (mut cfg, out, resume) = match &args.resume {
        Some(dir) => (Config::load(&dir.join("config.yaml"))?, dir.clone(), true),
        None => {
            let cfg = match &args.config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            let name = args.config.as_ref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned());
            let out =
                args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(name.unwrap_or("jsb_lstm_rtrbm".into())));
            (cfg, out, false)
        }
    };
    if let Some(s) = args.seed {
        cfg.train.seed = s;
    }
    if let Some(m) = args.max_updates {
        cfg.train.max_updates = m;
    }
    if let Some(e) = args.epochs {
        cfg.train.epochs = e;
    }
    if let Some(b) = args.batch {
        cfg.train.batch = b;
    }
    if args.bucket {
        cfg.train.bucket = true;
    }
    if let Some(c) = args.checkpoint_every {
        cfg.train.checkpoint_every = c;
    }
    cfg.validate("command line")?;
    let device = Device::open(args.device, args.threads.unwrap_or_else(default_threads))?;
    let opts = RunOptions { out_dir: out.clone(), resume, progress: !args.quiet, verbose: true };
    let summary = crate::with_device!(device, |be| {
        eprintln!(
            "training {} ({} parameters) on {} with {} -> {}",
            cfg.model.kind.name(),
            cfg.model.param_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum::<usize>(),
            cfg.data.path,
            crate::backend::Backend::name(be),
            out.display()
        );
        train::run_config(be, cfg.clone(), &opts).with_context(|| format!("training on `{}`", cfg.data.path))?
    });
    eprintln!(
        "done: {} updates, {} epochs{}, {:.1} s ({:.0} updates/s){}; checkpoints in {}",
        summary.updates,
        summary.epochs_done,
        summary.best_valid.map(|v| format!(", best valid {v:.4}")).unwrap_or_default(),
        summary.wall_s,
        summary.updates_per_s,
        if summary.stopped_early { ", stopped early" } else { "" },
        out.display()
    );
    if summary.recorded_shapes > 0 {
        eprintln!(
            "recorded updates: {} shapes of update replayed as CUDA graphs (RTRBM_GRAPHS=0 turns this off)",
            summary.recorded_shapes
        );
    }
    if !cfg.model.gaussian {
        let best = out.join("best.safetensors");
        eprintln!("next: rtrbm eval --checkpoint {} --data {}", best.display(), cfg.data.path);
        eprintln!("      rtrbm sample --checkpoint {} --out sample.mid --png sample.png", best.display());
    }
    Ok(())
}
