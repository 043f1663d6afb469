//! `rtrbm eval`: log-likelihood per frame (AIS, SPEC 4.1), expected frame-level accuracy
//! (SPEC 4.2), optionally exact values for small models and an AIS convergence check, for a
//! checkpoint on a dataset split. The work is [`rtrbm::eval::evaluate`], generic over the
//! backend; [`run`] picks the CPU backend and [`run_with`] takes any.
//!
//! Example: `rtrbm eval --checkpoint runs/jsb/best.safetensors --data jsb --split test
//! --ais-betas 1000 --json eval.json`.

use crate::backend::Backend;
use crate::checkpoint;
use crate::data::{self, Dataset, Split, KEYS};
use crate::eval::acc::AccOptions;
use crate::eval::ais::AisOptions;
use crate::eval::schedule::Schedule;
use crate::eval::{evaluate, EvalOptions, EvalReport};
use crate::model::{Model, Params};
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Arguments of `rtrbm eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Checkpoint to evaluate (safetensors written by `rtrbm train`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset file (.json, .pkl, .mat) or `jsb` for the embedded JSB Chorales.
    #[arg(long, default_value = "jsb")]
    pub data: String,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Evaluate only the first N sequences of the split (quick checks).
    #[arg(long)]
    pub max_sequences: Option<usize>,
    /// AIS runs M per frame.
    #[arg(long, default_value_t = 100)]
    pub ais_runs: usize,
    /// Number of AIS intervals: the Salakhutdinov-Murray schedule scaled to N (default 14500).
    #[arg(long, conflicts_with = "ais_schedule")]
    pub ais_betas: Option<usize>,
    /// AIS schedule: `default`, `linear:N`, `scaled:N`, piecewise `0.5:1000,0.9:4000,1.0:10000`,
    /// or `@FILE` with one beta per line.
    #[arg(long)]
    pub ais_schedule: Option<String>,
    /// Skip the AIS log-likelihood.
    #[arg(long)]
    pub no_ll: bool,
    #[command(flatten)]
    pub acc: AccArgs,
    /// Skip the accuracy.
    #[arg(long)]
    pub no_acc: bool,
    /// Also compute exact LL and ACC by enumeration (models with min(V, H) <= 24).
    #[arg(long)]
    pub exact: bool,
    /// Also report LL against the number of betas (see --convergence-betas).
    #[arg(long)]
    pub convergence: bool,
    /// Beta counts of the convergence check.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,14500,50000")]
    pub convergence_betas: Vec<usize>,
    /// auto (GPU if usable, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: super::device::DeviceChoice,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of the AIS and Gibbs chains.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The JSON report: what was evaluated and the results.
#[derive(serde::Serialize)]
struct CliReport<'a> {
    checkpoint: String,
    data: &'a str,
    split: &'a str,
    #[serde(flatten)]
    report: &'a EvalReport,
}

impl EvalArgs {
    /// The evaluation options these arguments ask for.
    pub fn options(&self) -> anyhow::Result<EvalOptions> {
        let schedule = match (&self.ais_schedule, self.ais_betas) {
            (Some(s), _) => Schedule::parse(s)?,
            (None, Some(n)) => Schedule::scaled(n)?,
            (None, None) => Schedule::default_sm(),
        };
        if !self.no_ll && self.ais_runs < 2 {
            bail!("--ais-runs must be at least 2 (the standard error needs two runs)");
        }
        if self.convergence && self.convergence_betas.iter().any(|&n| n < 3) {
            bail!("--convergence-betas: every count must be at least 3");
        }
        let ais = AisOptions { runs: self.ais_runs.max(2), schedule, seed: self.seed, ..AisOptions::default() };
        Ok(EvalOptions {
            ais: (!self.no_ll).then(|| ais.clone()),
            acc: if self.no_acc { None } else { Some(self.acc.options(self.seed)?) },
            exact: self.exact,
            convergence: if self.convergence { self.convergence_betas.clone() } else { vec![] },
            threads: self.threads(),
        })
    }

    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1)
    }
}

/// Gibbs settings of the ACC marginals (SPEC 4.2), shared by `eval` and `reproduce`.
#[derive(clap::Args, Debug, Clone)]
pub struct AccArgs {
    /// Gibbs chains per frame for the ACC marginals.
    #[arg(long, default_value_t = 8)]
    pub acc_chains: usize,
    /// Gibbs burn-in steps for the ACC marginals.
    #[arg(long, default_value_t = 50)]
    pub acc_burn_in: usize,
    /// Gibbs steps averaged for the ACC marginals.
    #[arg(long, default_value_t = 50)]
    pub acc_samples: usize,
}

impl AccArgs {
    /// The ACC options these arguments ask for, with chains seeded by `seed`.
    pub fn options(&self, seed: u64) -> anyhow::Result<AccOptions> {
        if self.acc_chains == 0 || self.acc_samples == 0 {
            bail!("--acc-chains and --acc-samples must be positive");
        }
        Ok(AccOptions {
            chains: self.acc_chains,
            burn_in: self.acc_burn_in,
            samples: self.acc_samples,
            seed,
            ..AccOptions::default()
        })
    }
}

/// Reads `--data` (a file, or `jsb` for the embedded JSB Chorales).
pub fn load_dataset(data: &str) -> anyhow::Result<Dataset> {
    data::open(data).with_context(|| format!("reading dataset {data}"))
}

/// `rtrbm eval` on the device the arguments name.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let device = super::device::Device::open(args.device, args.threads())?;
    crate::with_device!(device, |be| run_with(be, &args))
}

/// `rtrbm eval` on any backend.
pub fn run_with<B: Backend>(be: &B, args: &EvalArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    let ck = checkpoint::load(&args.checkpoint)?;
    let spec = ck.spec.clone();
    if spec.gaussian {
        bail!(
            "{}: a Gaussian-visible model; its metric is the one-step prediction error \
             (rtrbm::eval::acc::prediction_mse), not LL/ACC",
            args.checkpoint.display()
        );
    }
    if spec.visible != KEYS {
        bail!(
            "{}: the model has {} visible units but piano rolls have {KEYS}",
            args.checkpoint.display(),
            spec.visible
        );
    }
    let model = Model { spec: spec.clone(), params: Params::from_host(be, ck.params)? };
    let dataset = load_dataset(&args.data)?;
    let mut seqs: Vec<Vec<f64>> =
        dataset.split(args.split).iter().map(|s| s.to_dense().into_iter().map(f64::from).collect()).collect();
    if let Some(n) = args.max_sequences {
        seqs.truncate(n);
    }
    if seqs.iter().all(|s| s.is_empty()) {
        bail!("{} split of {} has no frames", args.split.name(), args.data);
    }
    eprintln!(
        "model {} (V={}, H={}, U={}) from {}; {} split of {}: {} sequences; {}",
        spec.kind.name(),
        spec.visible,
        spec.hidden,
        spec.u(),
        args.checkpoint.display(),
        args.split.name(),
        args.data,
        seqs.len(),
        be.name()
    );

    let mut bar: Option<(String, indicatif::ProgressBar)> = None;
    let mut progress = |stage: &str, done: usize, total: usize| {
        if bar.as_ref().map(|b| b.0 != stage).unwrap_or(true) {
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>16} [{bar:40}] {pos}/{len} frames, {elapsed} elapsed, ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(stage.to_string());
            bar = Some((stage.to_string(), b));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done as u64);
        }
    };
    let report = evaluate(be, &model, &seqs, &opts, &mut progress)?;
    if let Some((_, b)) = bar.take() {
        b.finish_and_clear();
    }
    print!("{}", format_report(&report));
    if let Some(path) = &args.json {
        let out = CliReport {
            checkpoint: args.checkpoint.display().to_string(),
            data: &args.data,
            split: args.split.name(),
            report: &report,
        };
        let text = serde_json::to_string_pretty(&out)?;
        crate::error::write_atomic(path, text.as_bytes())?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

/// The human-readable report.
pub fn format_report(r: &EvalReport) -> String {
    let mut s = String::new();
    s += &format!(
        "frames        {} in {} sequences, {:.2} notes per frame\n",
        r.frames, r.sequences, r.mean_notes_per_frame
    );
    if let Some(ll) = &r.ll {
        s += &format!(
            "LL            {:.4} ± {:.4} nats/frame  (AIS: {} runs, {} betas [{}], seed {}; max per-frame s.e. {:.3}; {:.1} s)\n",
            ll.ll, ll.stderr, ll.runs, ll.schedule.count, ll.schedule.kind, ll.seed, ll.max_frame_se, ll.wall_s
        );
        if ll.ll > 0.0 {
            // log p(v) <= 0 for binary frames: only an underestimated log Z gives a positive mean
            s += &format!(
                "warning       a log-likelihood above 0 is impossible for binary frames: {} betas are too few, AIS \
                 underestimates log Z; use more (--ais-betas, default 14500)\n",
                ll.schedule.count
            );
        }
    }
    if let Some(a) = &r.acc {
        s += &format!(
            "ACC           {:.2}%{}  (Gibbs marginals: {} chains, burn-in {}, {} samples; {:.1} s); per-frame mean {:.2}%\n",
            100.0 * a.acc,
            a.sampling_se.map(|e| format!(" ± {:.2}%", 100.0 * e)).unwrap_or_default(),
            a.chains.unwrap_or(0),
            a.burn_in.unwrap_or(0),
            a.samples.unwrap_or(0),
            a.wall_s,
            100.0 * a.acc_per_frame
        );
    }
    if let Some(ll) = r.exact_ll {
        s += &format!("exact LL      {ll:.4} nats/frame\n");
    }
    if let Some(a) = &r.exact_acc {
        s += &format!("exact ACC     {:.2}%; per-frame mean {:.2}%\n", 100.0 * a.acc, 100.0 * a.acc_per_frame);
    }
    if !r.convergence.is_empty() {
        s += "convergence   betas        LL       s.e.    time\n";
        for p in &r.convergence {
            s += &format!("              {:>6} {:>10.4} {:>9.4} {:>6.1} s\n", p.betas, p.ll, p.stderr, p.wall_s);
        }
        if let Some(note) = &r.convergence_note {
            s += &format!("              note: {note}\n");
        }
    }
    s += &format!("device        {}\nwall time     {:.1} s\n", r.device, r.wall_s);
    s
}
