//! `rtrbm reproduce`: the paper's Table 1 (SPEC 5) and its extension to all four datasets, plus
//! the motion-capture baseline (SPEC 4.3), trained, evaluated and written up by one command.
//!
//! Every (dataset, model) pair trains from `configs/<dataset>_<model>.yaml` into
//! `<out>/<dataset>_<model>/` (skipped when `done.json` is there, resumed when a checkpoint is),
//! is evaluated on its test split from `best.safetensors` (model selection on validation only),
//! and leaves `results.json`. `docs/RESULTS.md` is then generated from every `results.json`
//! found, so results computed on different machines (a CPU laptop, a GPU node) can be combined.

use crate::backend::Backend;
use crate::checkpoint;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::eval::acc::AccOptions;
use crate::eval::ais::AisOptions;
use crate::eval::schedule::Schedule;
use crate::eval::{evaluate, EvalOptions};
use crate::model::Model;
use crate::train::{self, RunOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DATASETS: [&str; 4] = ["jsb", "musedata", "nottingham", "piano_midi_de"];
pub const MODELS: [&str; 3] = ["rtrbm", "rnn_rbm", "lstm_rtrbm"];
pub const MOCAP_CONFIGS: [&str; 3] = ["mocap_rtrbm", "mocap_lstm_rtrbm_100", "mocap_lstm_rtrbm_200"];

/// The paper's Table 1 and Boulanger-Lewandowski et al. 2012 (test LL nats/frame, ACC %).
pub fn paper_figure(dataset: &str, model: &str) -> (Option<f64>, Option<f64>) {
    match (dataset, model) {
        ("musedata", "rtrbm") => (Some(-6.35), Some(30.85)),
        ("musedata", "rnn_rbm") => (Some(-6.01), Some(34.02)),
        ("musedata", "lstm_rtrbm") => (Some(-5.54), Some(33.89)),
        ("jsb", "rtrbm") => (Some(-6.35), Some(30.17)),
        ("jsb", "rnn_rbm") => (Some(-6.27), Some(33.12)),
        ("jsb", "lstm_rtrbm") => (Some(-4.72), Some(35.22)),
        ("nottingham", "rnn_rbm") => (Some(-2.39), None),
        ("piano_midi_de", "rnn_rbm") => (Some(-7.09), None),
        _ => (None, None),
    }
}

/// The paper's motion-capture figures (squared error per dimension per frame).
pub fn paper_mocap(config: &str) -> f64 {
    match config {
        "mocap_rtrbm" => 0.32,
        "mocap_lstm_rtrbm_100" => 0.13,
        _ => 0.09,
    }
}

#[derive(Clone, Debug)]
pub struct ReproduceOptions {
    pub datasets: Vec<String>,
    pub models: Vec<String>,
    pub configs_dir: PathBuf,
    pub out_dir: PathBuf,
    pub docs_dir: PathBuf,
    /// AIS intervals (the Salakhutdinov-Murray schedule scaled to this count; 14,500 = full).
    pub ais_betas: usize,
    pub ais_runs: usize,
    /// Gibbs settings of the ACC marginals.
    pub acc: AccOptions,
    /// Overrides of the configs for CPU-limited runs (recorded in the results).
    pub epochs: Option<usize>,
    pub max_updates: Option<u64>,
    /// Evaluate at most this many test sequences (None: all), recorded in the results.
    pub eval_max_sequences: Option<usize>,
    pub mocap: bool,
    pub samples: bool,
    pub only_report: bool,
    /// The command line, written into RESULTS.md.
    pub command: String,
}

/// What one (dataset, model) pair produced; `results.json` in its run folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    pub dataset: String,
    pub model: String,
    pub config: String,
    pub seed: u64,
    pub updates: u64,
    pub epochs: usize,
    pub stopped_early: bool,
    pub train_wall_s: f64,
    pub train_device: String,
    pub best_valid: Option<f64>,
    pub overrides: String,
    pub test_frames: usize,
    pub test_sequences: usize,
    pub ll: Option<f64>,
    pub ll_se: Option<f64>,
    pub ais_betas: usize,
    pub ais_runs: usize,
    pub acc: Option<f64>,
    pub acc_se: Option<f64>,
    pub acc_settings: String,
    pub eval_wall_s: f64,
    pub eval_device: String,
    /// One-step prediction error (motion capture only).
    pub mse: Option<f64>,
}

impl PairResult {
    /// A result with the training record (`done.json`) filled in and no evaluation yet.
    fn from_training(dataset: &str, model: &str, seed: u64, done: &serde_json::Value, overrides: String) -> Self {
        PairResult {
            dataset: dataset.into(),
            model: model.into(),
            config: format!("configs/{dataset}_{model}.yaml"),
            seed,
            updates: done["updates"].as_u64().unwrap_or(0),
            epochs: done["epochs"].as_u64().unwrap_or(0) as usize,
            stopped_early: done["stopped_early"].as_bool().unwrap_or(false),
            train_wall_s: done["wall_s"].as_f64().unwrap_or(0.0),
            train_device: done["device"].as_str().unwrap_or("").into(),
            best_valid: done["best_valid"].as_f64(),
            overrides,
            test_frames: 0,
            test_sequences: 0,
            ll: None,
            ll_se: None,
            ais_betas: 0,
            ais_runs: 0,
            acc: None,
            acc_se: None,
            acc_settings: String::new(),
            eval_wall_s: 0.0,
            eval_device: String::new(),
            mse: None,
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::msg(e.to_string()))?;
    crate::error::write_atomic(path, text.as_bytes())
}

/// Trains (or resumes, or skips) one run; returns its config and the training summary.
fn train_pair<B: Backend>(be: &B, name: &str, opts: &ReproduceOptions) -> Result<(Config, serde_json::Value)> {
    let cfg_path = opts.configs_dir.join(format!("{name}.yaml"));
    let mut cfg = Config::load(&cfg_path)?;
    if let Some(e) = opts.epochs {
        cfg.train.epochs = e;
    }
    if let Some(m) = opts.max_updates {
        cfg.train.max_updates = m;
    }
    let dir = opts.out_dir.join(name);
    let done = dir.join("done.json");
    if let Some(v) = read_json::<serde_json::Value>(&done) {
        eprintln!("{name}: trained already ({}), skipping training", done.display());
        return Ok((cfg, v));
    }
    let resume = dir.join("checkpoint.safetensors").exists() && dir.join("config.yaml").exists();
    eprintln!("{name}: {} on {}", if resume { "resuming" } else { "training" }, be.name());
    let run_opts = RunOptions { out_dir: dir.clone(), resume, progress: true, verbose: true };
    let summary = train::run_config(be, cfg.clone(), &run_opts)?;
    let v = serde_json::json!({
        "updates": summary.updates, "epochs": summary.epochs_done, "stopped_early": summary.stopped_early,
        "best_valid": summary.best_valid, "wall_s": summary.wall_s, "device": be.name(),
        "overrides": overrides(opts),
    });
    write_json(&done, &v)?;
    Ok((cfg, v))
}

fn overrides(opts: &ReproduceOptions) -> String {
    let mut o = vec![];
    if let Some(e) = opts.epochs {
        o.push(format!("epochs={e}"));
    }
    if let Some(m) = opts.max_updates {
        o.push(format!("max_updates={m}"));
    }
    if let Some(n) = opts.eval_max_sequences {
        o.push(format!("test on first {n} sequences"));
    }
    o.join(", ")
}

/// Trains and evaluates one piano-roll pair.
fn run_pair<B: Backend>(be: &B, dataset: &str, model: &str, opts: &ReproduceOptions) -> Result<PairResult> {
    let name = format!("{dataset}_{model}");
    let (cfg, done) = train_pair(be, &name, opts)?;
    let dir = opts.out_dir.join(&name);
    let res_path = dir.join("results.json");
    if let Some(r) = read_json::<PairResult>(&res_path) {
        if r.ais_betas == opts.ais_betas && r.ais_runs == opts.ais_runs {
            eprintln!("{name}: evaluated already with this schedule, skipping");
            return Ok(r);
        }
    }
    let ck = checkpoint::load(&dir.join("best.safetensors"))?;
    let m = Model::from_checkpoint(be, &ck)?;
    let data = crate::data::open(&cfg.data.path)?;
    let mut test: Vec<_> = data.test.iter().filter(|s| !s.is_empty()).collect();
    if let Some(n) = opts.eval_max_sequences {
        test.truncate(n);
    }
    let seqs: Vec<Vec<f64>> = test.iter().map(|s| s.to_dense().iter().map(|&x| x as f64).collect()).collect();
    let eval_opts = EvalOptions {
        ais: Some(AisOptions {
            runs: opts.ais_runs,
            schedule: Schedule::scaled(opts.ais_betas)?,
            seed: 1,
            ..AisOptions::default()
        }),
        acc: Some(opts.acc.clone()),
        exact: false,
        convergence: vec![],
        threads: crate::cli::device::default_threads(),
    };
    eprintln!(
        "{name}: evaluating {} test sequences ({} AIS betas x {} runs)",
        seqs.len(),
        opts.ais_betas,
        opts.ais_runs
    );
    let rep = evaluate(be, &m, &seqs, &eval_opts, &mut |_, _, _| {})?;
    let r = PairResult {
        test_frames: rep.frames,
        test_sequences: rep.sequences,
        ll: rep.ll.as_ref().map(|l| l.ll),
        ll_se: rep.ll.as_ref().map(|l| l.stderr),
        ais_betas: opts.ais_betas,
        ais_runs: opts.ais_runs,
        acc: rep.acc.as_ref().map(|a| 100.0 * a.acc),
        acc_se: rep.acc.as_ref().and_then(|a| a.sampling_se.map(|s| 100.0 * s)),
        acc_settings: format!("{} chains, burn-in {}, {} samples", opts.acc.chains, opts.acc.burn_in, opts.acc.samples),
        eval_wall_s: rep.wall_s,
        eval_device: rep.device.clone(),
        ..PairResult::from_training(dataset, model, cfg.train.seed, &done, overrides(opts))
    };
    write_json(&res_path, &r)?;
    // the training curve and, for LSTM-RTRBM, a generated piece go into the docs
    let curves = opts.docs_dir.join("curves");
    std::fs::create_dir_all(&curves).map_err(|e| Error::io(&curves, e))?;
    let _ = std::fs::copy(dir.join("curves.png"), curves.join(format!("{name}.png")));
    if opts.samples && model == "lstm_rtrbm" {
        let sdir = opts.docs_dir.join("samples");
        std::fs::create_dir_all(&sdir).map_err(|e| Error::io(&sdir, e))?;
        let g = crate::generate::GenerateOptions { frames: 96, seed: 1, ..Default::default() };
        let piece = crate::generate::generate(be, &m, &g)?;
        let beats = if dataset == "jsb" { 1.0 } else { 0.5 };
        crate::midi::write_midi(&sdir.join(format!("{dataset}.mid")), &piece, beats, 100.0)?;
        crate::plot::piano_roll_png(
            &sdir.join(format!("{dataset}.png")),
            &piece,
            &format!("LSTM-RTRBM sample ({dataset})"),
        )?;
    }
    Ok(r)
}

/// Trains and evaluates one motion-capture config (SPEC 4.3).
fn run_mocap<B: Backend>(be: &B, name: &str, opts: &ReproduceOptions) -> Result<PairResult> {
    let (cfg, done) = train_pair(be, name, opts)?;
    let dir = opts.out_dir.join(name);
    let ck = checkpoint::load(&dir.join("checkpoint.safetensors"))?;
    let m = Model::from_checkpoint(be, &ck)?;
    let data = crate::data::mocap::read(Path::new(&cfg.data.path))?;
    let rep = crate::eval::acc::prediction_mse(be, &m, &data.seqs, &data.train_len, 50, 1)?;
    let r = PairResult {
        config: format!("configs/{name}.yaml"),
        test_frames: rep.frames,
        test_sequences: data.seqs.len(),
        eval_device: be.name(),
        mse: Some(rep.mse),
        ..PairResult::from_training("mocap", name, cfg.train.seed, &done, overrides(opts))
    };
    write_json(&dir.join("results.json"), &r)?;
    Ok(r)
}

/// Runs everything the options ask for, then writes `docs/RESULTS.md`.
pub fn reproduce<B: Backend>(be: &B, opts: &ReproduceOptions) -> Result<()> {
    if !opts.only_report {
        for d in &opts.datasets {
            for m in &opts.models {
                if let Err(e) = run_pair(be, d, m, opts) {
                    eprintln!("{d}_{m}: failed: {e}");
                }
            }
        }
        if opts.mocap {
            for name in MOCAP_CONFIGS {
                if let Err(e) = run_mocap(be, name, opts) {
                    eprintln!("{name}: failed: {e}");
                }
            }
        }
    }
    write_report(opts)
}

fn fmt_opt(x: Option<f64>, prec: usize) -> String {
    x.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "—".into())
}

/// Folds an `rtrbm eval --json` report (`eval_full.json` in a run folder, e.g. the full
/// schedule computed on a GPU node for a model trained elsewhere) into a pair's result.
fn apply_eval_json(r: &mut PairResult, path: &Path) {
    let Some(v) = read_json::<serde_json::Value>(path) else { return };
    if let Some(ll) = v.get("ll").filter(|l| !l.is_null()) {
        r.ll = ll["ll"].as_f64();
        r.ll_se = ll["stderr"].as_f64();
        r.ais_betas = ll["schedule"]["count"].as_u64().unwrap_or(0) as usize;
        r.ais_runs = ll["runs"].as_u64().unwrap_or(0) as usize;
        r.test_frames = ll["frames"].as_u64().unwrap_or(0) as usize;
    }
    if let Some(acc) = v.get("acc").filter(|a| !a.is_null()) {
        r.acc = acc["acc"].as_f64().map(|a| 100.0 * a);
        r.acc_se = acc["sampling_se"].as_f64().map(|a| 100.0 * a);
    }
    r.eval_device = v["device"].as_str().unwrap_or("").into();
    r.eval_wall_s = v["wall_s"].as_f64().unwrap_or(0.0);
    r.overrides = r.overrides.split(", ").filter(|o| !o.starts_with("test on first")).collect::<Vec<_>>().join(", ");
}

/// The result of a pair for the report: its `results.json`, or (for a model trained here and
/// evaluated elsewhere) its `done.json`, with an `eval_full.json` folded in when present.
fn load_pair(dir: &Path, dataset: &str, model: &str) -> Option<PairResult> {
    let eval = dir.join("eval_full.json");
    let mut r = match read_json::<PairResult>(&dir.join("results.json")) {
        Some(r) => r,
        None if eval.exists() => {
            let done = read_json::<serde_json::Value>(&dir.join("done.json"))?;
            let cfg = Config::load(&dir.join("config.yaml")).ok()?;
            let overrides = done["overrides"].as_str().unwrap_or("").to_string();
            PairResult {
                acc_settings: "8 chains, burn-in 50, 50 samples".into(),
                ..PairResult::from_training(dataset, model, cfg.train.seed, &done, overrides)
            }
        }
        None => return None,
    };
    apply_eval_json(&mut r, &eval);
    Some(r)
}

/// Writes `docs/CONVERGENCE.md` from an `rtrbm eval --convergence --json` report.
fn write_convergence(opts: &ReproduceOptions, name: &str) -> Result<()> {
    let path = opts.out_dir.join(name).join("convergence.json");
    let Some(v) = read_json::<serde_json::Value>(&path) else { return Ok(()) };
    let mut md = format!(
        "# AIS convergence on a trained model ({name})\n\nGenerated by `rtrbm reproduce` from `rtrbm eval --convergence` \
         on {}: test-set LL per frame against the number of AIS intervals (the Salakhutdinov-Murray schedule \
         scaled to each count), {} runs per frame. AIS underestimates log Z on average, so short schedules give \
         optimistic (too high) LL; the estimate should fall and level off as betas grow.\n\n\
         | betas | LL (nats/frame) | s.e. | wall time |\n|---|---|---|---|\n",
        v["device"].as_str().unwrap_or("?"),
        v["ll"]["runs"].as_u64().unwrap_or(0)
    );
    if let Some(points) = v["convergence"].as_array() {
        for p in points {
            md.push_str(&format!(
                "| {} | {:.3} | {:.3} | {:.1} s |\n",
                p["betas"].as_u64().unwrap_or(0),
                p["ll"].as_f64().unwrap_or(f64::NAN),
                p["stderr"].as_f64().unwrap_or(f64::NAN),
                p["wall_s"].as_f64().unwrap_or(f64::NAN)
            ));
        }
    }
    crate::error::write_atomic(&opts.docs_dir.join("CONVERGENCE.md"), md.as_bytes())
}

/// Writes `docs/RESULTS.md` from every `results.json` under the output folder.
pub fn write_report(opts: &ReproduceOptions) -> Result<()> {
    write_convergence(opts, "jsb_lstm_rtrbm")?;
    let mut md = String::new();
    md.push_str("# Results: Table 1 reproduced and extended\n\n");
    md.push_str("Generated by `rtrbm reproduce` from the `results.json` of each run; do not edit by hand.\n\n");
    if opts.only_report {
        md.push_str(
            "Regenerate this file from the run folders with `rtrbm reproduce --report-only`; retrain and \
             re-evaluate everything with `rtrbm reproduce --mocap` (add `--device cuda` on a GPU). The commands \
             that produced the runs below are listed under \"How these numbers were made\".\n\n",
        );
    } else {
        md.push_str(&format!("Command: `{}`\n\n", opts.command));
    }
    md.push_str(
        "Test-set log-likelihood per frame (nats, natural log, higher is better) estimated by AIS (SPEC 4.1) \
         with its standard error, and expected frame-level accuracy (SPEC 4.2, counts summed over all test \
         frames). Models were selected on the validation set only. AIS underestimates log Z on average, so \
         AIS LL is optimistic; numbers from schedules shorter than the full 14,500 betas are marked and are \
         **not** directly comparable with the paper's column.\n\n",
    );
    md.push_str("| dataset | model | our LL ± s.e. | AIS schedule | paper LL | our ACC % | paper ACC % | updates (epochs) | train time | seed | overrides | trained on / evaluated on |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut missing = vec![];
    for d in DATASETS {
        for m in MODELS {
            let (pl, pa) = paper_figure(d, m);
            match load_pair(&opts.out_dir.join(format!("{d}_{m}")), d, m) {
                Some(r) => {
                    let sched = if r.ais_betas == 14_500 {
                        format!("full, {} betas × {} runs", r.ais_betas, r.ais_runs)
                    } else {
                        format!("**short**: {} betas × {} runs", r.ais_betas, r.ais_runs)
                    };
                    let partial = format!(" ({} frames)", r.test_frames);
                    md.push_str(&format!(
                        "| {d} | {m} | {} ± {}{partial} | {sched} | {} | {} | {} | {} ({}{}) | {:.0} s | {} | {} | {} / {} |\n",
                        fmt_opt(r.ll, 3),
                        fmt_opt(r.ll_se, 4),
                        fmt_opt(pl, 2),
                        fmt_opt(r.acc, 2),
                        fmt_opt(pa, 2),
                        r.updates,
                        r.epochs,
                        if r.stopped_early { ", early stop" } else { "" },
                        r.train_wall_s,
                        r.seed,
                        if r.overrides.is_empty() { "none".into() } else { r.overrides.clone() },
                        r.train_device,
                        r.eval_device
                    ));
                }
                None => {
                    missing.push(format!("{d}_{m}"));
                    md.push_str(&format!(
                        "| {d} | {m} | not run yet | — | {} | — | {} | — | — | — | — | — |\n",
                        fmt_opt(pl, 2),
                        fmt_opt(pa, 2)
                    ));
                }
            }
        }
    }
    md.push_str(
        "\nPaper figures: Lyu, Wu, Zhu (2015) Table 1 (JSB, MuseData); Nottingham and Piano-midi.de \
                 RNN-RBM figures from Boulanger-Lewandowski et al. (2012); the others were not published (—).\n\n",
    );
    if !missing.is_empty() {
        md.push_str(&format!(
            "Not run yet: {}. These need more compute than the CPU session that generated this file had; \
             the same command on a GPU (`--device cuda`) fills them in.\n\n",
            missing.join(", ")
        ));
    }
    md.push_str(
        "## Motion capture (SPEC 4.3)\n\nOne-step prediction error per dimension per frame on the last 20% of \
                 each sequence (766 frames), Gaussian-visible models, 50 Gibbs steps per prediction.\n\n",
    );
    md.push_str("| model | ours | paper | updates | train time |\n|---|---|---|---|---|\n");
    for name in MOCAP_CONFIGS {
        let r = read_json::<PairResult>(&opts.out_dir.join(name).join("results.json"));
        md.push_str(&format!(
            "| {name} | {} | {:.2} | {} | {} |\n",
            r.as_ref().and_then(|r| r.mse).map(|v| format!("{v:.3}")).unwrap_or_else(|| "not run yet".into()),
            paper_mocap(name),
            r.as_ref().map(|r| r.updates.to_string()).unwrap_or_else(|| "—".into()),
            r.as_ref().map(|r| format!("{:.0} s", r.train_wall_s)).unwrap_or_else(|| "—".into()),
        ));
    }
    md.push_str("\n## Training curves and samples\n\n");
    for d in DATASETS {
        for m in MODELS {
            let p = opts.docs_dir.join("curves").join(format!("{d}_{m}.png"));
            if p.exists() {
                md.push_str(&format!("- {d} {m}: [curves](curves/{d}_{m}.png)\n"));
            }
        }
        let s = opts.docs_dir.join("samples").join(format!("{d}.mid"));
        if s.exists() {
            md.push_str(&format!("- {d} LSTM-RTRBM sample: [MIDI](samples/{d}.mid), [piano roll](samples/{d}.png)\n"));
        }
    }
    // Hand-written discussion (what the numbers say, what was tried), kept beside the generated table.
    if let Ok(notes) = std::fs::read_to_string(opts.docs_dir.join("RESULTS-notes.md")) {
        md.push('\n');
        md.push_str(&notes);
    }
    let conv = opts.docs_dir.join("CONVERGENCE.md");
    if conv.exists() {
        md.push_str("\nAIS convergence check on a trained JSB model: [CONVERGENCE.md](CONVERGENCE.md).\n");
    }
    std::fs::create_dir_all(&opts.docs_dir).map_err(|e| Error::io(&opts.docs_dir, e))?;
    crate::error::write_atomic(&opts.docs_dir.join("RESULTS.md"), md.as_bytes())?;
    eprintln!("wrote {}", opts.docs_dir.join("RESULTS.md").display());
    Ok(())
}
