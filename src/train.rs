//! Training (SPEC 3): chunks, CD-K with the paper's schedule, BPTT, momentum SGD, validation,
//! early stopping, checkpoints that resume exactly, metrics and training curves.
//!
//! Reproducibility: every random number is a function of the seed and a position, never of a
//! sequential generator's history. Epoch e shuffles its chunks with `HostRng(seed, 0x5EED + e)`;
//! update n samples its negatives with `RngKey(seed ^ GIBBS_SALT, n)`. A checkpoint therefore
//! needs only the parameters, velocities, update count and position in the epoch to continue
//! bit for bit where a killed run stopped.

use crate::backend::Backend;
use crate::checkpoint::{self, Checkpoint};
use crate::config::{Config, ValidMetric};
use crate::data::{Dataset, Sequence};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::model::{Model, Params, Workspace};
use crate::rng::{HostRng, RngKey};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Salt of the Gibbs-sampling key, so it differs from the other uses of the seed.
pub const GIBBS_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// Cuts sequences into consecutive chunks of at most `chunk` frames, as dense `[T, V]` arrays.
pub fn make_chunks<F: Float>(seqs: &[Sequence], chunk: usize) -> Vec<Vec<F>> {
    let v = crate::data::KEYS;
    let mut out = vec![];
    for s in seqs {
        let dense: Vec<F> = s.to_dense().iter().map(|&x| F::from_f64(x as f64)).collect();
        for piece in dense.chunks(chunk * v) {
            out.push(piece.to_vec());
        }
    }
    out
}

/// Options of a run that are not part of the model's configuration.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Folder for the resolved config, metrics, curves and checkpoints.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint.safetensors`.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Print one line per epoch.
    pub verbose: bool,
}

/// What a finished run reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunSummary {
    pub updates: u64,
    pub epochs_done: usize,
    pub best_valid: Option<f64>,
    pub stopped_early: bool,
    pub wall_s: f64,
    pub updates_per_s: f64,
}

/// Where training stands (saved in checkpoint metadata).
#[derive(Clone, Debug, Default, PartialEq)]
struct Progress {
    update: u64,
    epoch: usize,
    /// Index of the next batch within the epoch.
    batch_pos: usize,
    best_valid: Option<f64>,
    bad_validations: usize,
    wall_s: f64,
}

/// A model with its optimiser state and buffers on a backend.
pub struct Trainer<'a, B: Backend> {
    pub be: &'a B,
    pub cfg: Config,
    pub model: Model<B>,
    pub vel: Params<B>,
    pub grads: Params<B>,
    pub ws: Workspace<B>,
}

impl<'a, B: Backend> Trainer<'a, B> {
    /// A freshly initialised model (SPEC 3 initialisation from `cfg.train.seed`).
    pub fn new(be: &'a B, cfg: Config) -> Result<Self> {
        let model = Model::init(be, cfg.model.clone(), cfg.init.weight_std, cfg.train.seed)?;
        Self::with_model(be, cfg, model)
    }

    pub fn with_model(be: &'a B, cfg: Config, model: Model<B>) -> Result<Self> {
        let vel = model.zeros_like(be)?;
        let grads = model.zeros_like(be)?;
        let ws = Workspace::new(be, &cfg.model, cfg.train.chunk_frames, cfg.train.batch)?;
        Ok(Self { be, cfg, model, vel, grads, ws })
    }

    /// One parameter update on a batch of chunks (each `[T_b, V]`): forward, CD-K negatives,
    /// BPTT gradient, optional clipping, momentum SGD. Returns the chunk's T and real frames.
    pub fn step(&mut self, chunks: &[&[B::F]], update: u64) -> Result<(usize, usize)> {
        let be = self.be;
        let tc = &self.cfg.train;
        let nv = self.cfg.model.visible;
        let (t, frames) = self.ws.load(be, chunks, nv)?;
        self.model.forward(be, &mut self.ws, t, false)?;
        let key = RngKey::new(tc.seed ^ GIBBS_SALT, update as u32);
        self.model.negatives(be, &mut self.ws, t, tc.cd_k(update), &[key], 0)?;
        self.model.backward(be, &mut self.ws, t, &mut self.grads)?;
        if tc.grad_clip > 0.0 {
            let mut sq = 0.0;
            for g in &self.grads.bufs {
                sq += be.sum_squares(g)?[0];
            }
            let norm = sq.sqrt();
            if norm > tc.grad_clip {
                let s = B::F::from_f64(tc.grad_clip / norm);
                for g in self.grads.bufs.iter_mut() {
                    be.scale(g, &[s])?;
                }
            }
        }
        let hyper = crate::backend::SgdHyper {
            lr: B::F::from_f64(tc.lr),
            momentum: B::F::from_f64(tc.momentum),
            weight_decay: B::F::from_f64(tc.weight_decay),
        };
        for ((p, g), v) in self.model.params.bufs.iter_mut().zip(&self.grads.bufs).zip(self.vel.bufs.iter_mut()) {
            be.sgd_momentum(p, g, v, &[hyper])?;
        }
        Ok((t, frames[0]))
    }

    /// The SPEC 3 cost of the batch last passed to [`Trainer::step`], with the parameters
    /// before that step's update (it is computed from the buffers of the forward pass).
    pub fn last_cost(&mut self, t: usize, frames: usize) -> Result<f64> {
        let _ = frames;
        Ok(self.model.cost(self.be, &mut self.ws, t)?[0])
    }

    /// Fails with [`Error::Divergence`] when a parameter is NaN or infinite.
    pub fn check_finite(&self) -> Result<()> {
        for (name, buf) in self.model.params.names.iter().zip(&self.model.params.bufs) {
            let s = self.be.sum_squares(buf)?[0];
            if !s.is_finite() {
                return Err(Error::Divergence(format!("parameter `{name}` holds NaN or infinite values")));
            }
        }
        Ok(())
    }

    fn to_checkpoint(&self, prog: &Progress) -> Result<Checkpoint> {
        let params = self.model.params.to_host(self.be)?;
        let extra = self.vel.to_host(self.be)?.into_iter().map(|(n, s, v)| (format!("vel.{n}"), s, v)).collect();
        let mut meta = HashMap::new();
        meta.insert("update".into(), prog.update.to_string());
        meta.insert("epoch".into(), prog.epoch.to_string());
        meta.insert("batch_pos".into(), prog.batch_pos.to_string());
        meta.insert("best_valid".into(), prog.best_valid.map(|x| format!("{x:e}")).unwrap_or_default());
        meta.insert("bad_validations".into(), prog.bad_validations.to_string());
        meta.insert("wall_s".into(), format!("{}", prog.wall_s));
        meta.insert("config".into(), self.cfg.to_yaml());
        meta.insert("rng".into(), format!("philox4x32-10 seed {} (positional; see train.rs)", self.cfg.train.seed));
        meta.insert("device".into(), self.be.name());
        Ok(Checkpoint { spec: self.cfg.model.clone(), params, extra, meta })
    }

    /// Restores parameters, velocities and progress from a checkpoint written by this trainer.
    fn restore(&mut self, ck: &Checkpoint) -> Result<Progress> {
        if ck.spec != self.cfg.model {
            return Err(Error::msg("checkpoint model does not match the config's model"));
        }
        let up = |vals: &[f64]| vals.iter().map(|&x| B::F::from_f64(x)).collect::<Vec<_>>();
        for (i, (name, _, vals)) in ck.params.iter().enumerate() {
            debug_assert_eq!(&self.model.params.names[i], name);
            self.be.write(&mut self.model.params.bufs[i], &up(vals))?;
        }
        for (i, name) in self.vel.names.clone().iter().enumerate() {
            let key = format!("vel.{name}");
            let vals =
                ck.extra.iter().find(|e| e.0 == key).ok_or_else(|| Error::msg(format!("checkpoint lacks `{key}`")))?;
            self.be.write(&mut self.vel.bufs[i], &up(&vals.2))?;
        }
        let get = |k: &str| ck.meta.get(k).cloned().unwrap_or_default();
        let num = |k: &str| {
            get(k).parse::<u64>().map_err(|_| Error::msg(format!("checkpoint metadata `{k}` is missing or invalid")))
        };
        Ok(Progress {
            update: num("update")?,
            epoch: num("epoch")? as usize,
            batch_pos: num("batch_pos")? as usize,
            best_valid: get("best_valid").parse::<f64>().ok(),
            bad_validations: num("bad_validations")? as usize,
            wall_s: get("wall_s").parse().unwrap_or(0.0),
        })
    }
}

/// A cheap validation figure (see [`ValidMetric`]); higher is better for `AisLl`, and the cost is
/// negated so that higher is better for every metric.
pub fn validate<B: Backend>(be: &B, model: &Model<B>, cfg: &Config, valid: &[Sequence]) -> Result<Option<f64>> {
    let tc = &cfg.train;
    let mut seqs = vec![];
    let mut budget = if tc.valid_max_frames == 0 { usize::MAX } else { tc.valid_max_frames };
    for s in valid {
        if s.is_empty() || budget == 0 {
            continue;
        }
        let take = s.len().min(budget);
        budget -= take;
        seqs.push(Sequence { frames: s.frames[..take].to_vec() });
    }
    if seqs.is_empty() {
        return Ok(None);
    }
    match tc.valid_metric {
        ValidMetric::None => Ok(None),
        ValidMetric::Cost => {
            let mut total = 0.0;
            let mut frames_total = 0;
            for (i, s) in seqs.iter().enumerate() {
                let dense: Vec<B::F> = s.to_dense().iter().map(|&x| B::F::from_f64(x as f64)).collect();
                let mut ws = Workspace::new(be, &model.spec, s.len(), 1)?;
                let (t, frames) = ws.load(be, &[&dense], model.spec.visible)?;
                model.forward(be, &mut ws, t, false)?;
                model.negatives(be, &mut ws, t, tc.max_k(), &[RngKey::new(tc.seed, 0xC057 + i as u32)], 0)?;
                total += model.cost(be, &mut ws, t)?[0] * frames[0] as f64;
                frames_total += frames[0];
            }
            Ok(Some(-total / frames_total as f64))
        }
        ValidMetric::AisLl => {
            let betas: Vec<f64> = (0..tc.valid_ais_betas).map(|i| i as f64 / (tc.valid_ais_betas - 1) as f64).collect();
            let ll = ais_ll_quick(be, model, &seqs, &betas, tc.valid_ais_runs, RngKey::new(tc.seed, 0xA15))?;
            Ok(Some(ll))
        }
    }
}

/// Mean log P(v_t | v_<t) per frame by AIS over whole sequences (SPEC 4.1), without standard
/// errors: the validation proxy used during training. `rtrbm eval` is the full evaluation.
pub fn ais_ll_quick<B: Backend>(
    be: &B,
    model: &Model<B>,
    seqs: &[Sequence],
    betas: &[f64],
    runs: usize,
    rng: RngKey,
) -> Result<f64> {
    let (nv, nh) = (model.spec.visible, model.spec.hidden);
    let mut total = 0.0;
    let mut frames = 0usize;
    let w = model.params.get("W")?;
    for (si, s) in seqs.iter().enumerate() {
        let dense: Vec<B::F> = s.to_dense().iter().map(|&x| B::F::from_f64(x as f64)).collect();
        let t = s.len();
        let mut ws = Workspace::new(be, &model.spec, t, 1)?;
        ws.load(be, &[&dense], nv)?;
        model.forward(be, &mut ws, t, false)?;
        be.free_energy(w, &ws.bv_t, &ws.bh_t, &ws.v, t, nv, nh, model.spec.gaussian, &mut ws.fe)?;
        let fe = be.download(&ws.fe)?;
        let logw = be.ais(
            w,
            &ws.bv_t,
            &ws.bh_t,
            t,
            nv,
            nh,
            runs,
            betas,
            RngKey::new(rng.seed, rng.stream.wrapping_add(si as u32)),
            0,
        )?;
        let bv = be.download(&ws.bv_t)?;
        let bh = be.download(&ws.bh_t)?;
        for f in 0..t {
            let log_z0: f64 = bv[f * nv..(f + 1) * nv].iter().map(|x| x.softplus().to_f64()).sum::<f64>()
                + bh[f * nh..(f + 1) * nh].iter().map(|x| x.softplus().to_f64()).sum::<f64>();
            let lw = &logw[f * runs..(f + 1) * runs];
            let mx = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lme = mx + (lw.iter().map(|x| (x - mx).exp()).sum::<f64>() / runs as f64).ln();
            total += -fe[f].to_f64() - (log_z0 + lme);
        }
        frames += t;
    }
    Ok(total / frames.max(1) as f64)
}

fn append_jsonl(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    writeln!(f, "{value}").map_err(|e| Error::io(path, e))
}

/// Reads `metrics.jsonl` back (for curves and reports).
pub fn read_metrics(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::format(path, format!("line {}: {e}", i + 1))))
        .collect()
}

/// Draws the training curves of a run folder into `curves.png`.
pub fn plot_curves(out_dir: &Path) -> Result<()> {
    use crate::plot::Series;
    let metrics = read_metrics(&out_dir.join("metrics.jsonl"))?;
    let pick = |kind: &str, key: &str| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .filter(|m| m["kind"] == kind)
            .filter_map(|m| Some((m["update"].as_f64()?, m[key].as_f64()?)))
            .collect()
    };
    let series = vec![
        Series { label: "train cost (CD free-energy gap)".into(), points: pick("step", "cost") },
        Series {
            label: match metrics.iter().find_map(|m| m["valid_metric"].as_str()) {
                Some("ais_ll") => "valid LL per frame (short AIS proxy)".into(),
                Some("cost") => "valid figure (minus CD cost)".into(),
                _ => "valid figure (higher is better)".into(),
            },
            points: pick("epoch", "valid"),
        },
    ];
    crate::plot::line_chart_png(&out_dir.join("curves.png"), "training curves", "updates", &series)
}

/// Trains `cfg` on the piano rolls of `data` into `opts.out_dir` (SPEC 3), resuming when asked.
pub fn run<B: Backend>(be: &B, cfg: Config, data: &Dataset, opts: &RunOptions) -> Result<RunSummary> {
    let chunks: Vec<Vec<B::F>> = make_chunks(&data.train, cfg.train.chunk_frames);
    let valid_cfg = cfg.clone();
    let mut valid = |m: &Model<B>| validate(be, m, &valid_cfg, &data.valid);
    run_chunks(be, cfg, chunks, &mut valid, opts)
}

/// Validation figure of a model (higher is better), or None.
pub type ValidFn<'a, B> = dyn FnMut(&Model<B>) -> Result<Option<f64>> + 'a;

/// Trains `cfg` on dense chunks (`[T_c, V]` each, binary or real-valued) into `opts.out_dir`,
/// validating with `valid` every `train.valid_every` epochs.
pub fn run_chunks<B: Backend>(
    be: &B,
    cfg: Config,
    chunks: Vec<Vec<B::F>>,
    valid_fn: &mut ValidFn<'_, B>,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let out = &opts.out_dir;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let ck_path = out.join("checkpoint.safetensors");
    let metrics_path = out.join("metrics.jsonl");
    let mut trainer = Trainer::new(be, cfg.clone())?;
    let mut prog = Progress::default();
    if opts.resume {
        let ck = checkpoint::load(&ck_path)?;
        prog = trainer.restore(&ck)?;
        if opts.verbose {
            eprintln!("resuming from {} at update {}, epoch {}", ck_path.display(), prog.update, prog.epoch + 1);
        }
    } else {
        crate::error::write_atomic(&out.join("config.yaml"), cfg.to_yaml().as_bytes())?;
        let _ = std::fs::remove_file(&metrics_path);
    }
    let tc = cfg.train.clone();
    if chunks.is_empty() {
        return Err(Error::msg("the training split has no frames"));
    }
    let batches_per_epoch = chunks.len().div_ceil(tc.batch);
    let start = Instant::now();
    let wall0 = prog.wall_s;
    let update0 = prog.update;
    let mut stopped_early = false;
    let bar = if opts.progress {
        let total = if tc.max_updates > 0 {
            tc.max_updates.min((batches_per_epoch * tc.epochs) as u64)
        } else {
            (batches_per_epoch * tc.epochs) as u64
        };
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} updates ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_position(prog.update);
        Some(pb)
    } else {
        None
    };
    let save = |trainer: &Trainer<B>, prog: &Progress, name: &str| -> Result<()> {
        checkpoint::save(&out.join(name), &trainer.to_checkpoint(prog)?)
    };
    let mut last_good = prog.clone();
    let mut epoch_cost = (0.0f64, 0usize);
    // a resumed run that had already stopped early stays stopped
    if tc.patience > 0 && prog.bad_validations >= tc.patience {
        stopped_early = true;
    }
    'epochs: while !stopped_early && prog.epoch < tc.epochs {
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        if tc.shuffle {
            HostRng::new(tc.seed, 0x5EED + prog.epoch as u32).shuffle(&mut order);
        }
        while prog.batch_pos < batches_per_epoch {
            if tc.max_updates > 0 && prog.update >= tc.max_updates {
                break 'epochs;
            }
            let ids = &order[prog.batch_pos * tc.batch..((prog.batch_pos + 1) * tc.batch).min(order.len())];
            let mut batch: Vec<&[B::F]> = ids.iter().map(|&i| chunks[i].as_slice()).collect();
            while batch.len() < tc.batch {
                batch.push(&[]); // an all-padding sequence at the end of an epoch
            }
            let (t, frames) = trainer.step(&batch, prog.update)?;
            prog.update += 1;
            prog.batch_pos += 1;
            if prog.update % tc.log_every == 0 {
                // the cost of this batch before its update, from the buffers of its forward pass
                let cost = trainer.last_cost(t, frames)?;
                if !cost.is_finite() || trainer.check_finite().is_err() {
                    if let Some(pb) = &bar {
                        pb.abandon();
                    }
                    return Err(Error::Divergence(format!(
                        "non-finite cost or parameter at update {}; the last good checkpoint ({}, update {}) is kept",
                        prog.update,
                        ck_path.display(),
                        last_good.update
                    )));
                }
                epoch_cost.0 += cost;
                epoch_cost.1 += 1;
                let el = start.elapsed().as_secs_f64();
                append_jsonl(
                    &metrics_path,
                    &serde_json::json!({"kind": "step", "update": prog.update, "epoch": prog.epoch + 1, "cost": cost,
                        "k": tc.cd_k(prog.update - 1), "wall_s": wall0 + el}),
                )?;
                if let Some(pb) = &bar {
                    pb.set_message(format!("cost {cost:.4} K={}", tc.cd_k(prog.update - 1)));
                }
            }
            if let Some(pb) = &bar {
                pb.set_position(prog.update);
            }
            if tc.checkpoint_every > 0 && prog.update % tc.checkpoint_every == 0 {
                trainer.check_finite()?;
                prog.wall_s = wall0 + start.elapsed().as_secs_f64();
                save(&trainer, &prog, "checkpoint.safetensors")?;
                last_good = prog.clone();
            }
        }
        // end of an epoch: validate, early-stop, checkpoint, curves
        prog.epoch += 1;
        prog.batch_pos = 0;
        trainer.check_finite()?;
        let mut valid = None;
        if tc.valid_metric != ValidMetric::None && prog.epoch % tc.valid_every == 0 {
            valid = valid_fn(&trainer.model)?;
            if let Some(v) = valid {
                if prog.best_valid.is_none_or(|b| v > b) {
                    prog.best_valid = Some(v);
                    prog.bad_validations = 0;
                    save(&trainer, &prog, "best.safetensors")?;
                } else {
                    prog.bad_validations += 1;
                }
            }
        }
        let el = start.elapsed().as_secs_f64();
        prog.wall_s = wall0 + el;
        let train_cost = if epoch_cost.1 > 0 { Some(epoch_cost.0 / epoch_cost.1 as f64) } else { None };
        append_jsonl(
            &metrics_path,
            &serde_json::json!({"kind": "epoch", "epoch": prog.epoch, "update": prog.update, "train_cost": train_cost,
                "valid": valid, "valid_metric": tc.valid_metric, "wall_s": prog.wall_s}),
        )?;
        epoch_cost = (0.0, 0);
        if opts.verbose {
            let v = valid.map(|v| format!(", valid {v:.4}")).unwrap_or_default();
            let c = train_cost.map(|c| format!(", cost {c:.4}")).unwrap_or_default();
            let msg = format!("epoch {} (update {}){c}{v}", prog.epoch, prog.update);
            match &bar {
                Some(pb) => pb.println(msg),
                None => eprintln!("{msg}"),
            }
        }
        if tc.patience > 0 && prog.bad_validations >= tc.patience {
            stopped_early = true;
            save(&trainer, &prog, "checkpoint.safetensors")?;
            break;
        }
        save(&trainer, &prog, "checkpoint.safetensors")?;
        last_good = prog.clone();
        let _ = plot_curves(out);
    }
    prog.wall_s = wall0 + start.elapsed().as_secs_f64();
    save(&trainer, &prog, "checkpoint.safetensors")?;
    if prog.best_valid.is_none() {
        save(&trainer, &prog, "best.safetensors")?;
    }
    let _ = plot_curves(out);
    if let Some(pb) = &bar {
        pb.finish();
    }
    let el = start.elapsed().as_secs_f64();
    Ok(RunSummary {
        updates: prog.update,
        epochs_done: prog.epoch,
        best_valid: prog.best_valid,
        stopped_early,
        wall_s: prog.wall_s,
        updates_per_s: (prog.update - update0) as f64 / el.max(1e-9),
    })
}

/// Trains the run a config describes, reading its data: piano rolls (`jsb` or a dataset file),
/// or the real-valued motion capture (`.../mocap49.json`, Gaussian-visible models; no
/// validation split in that protocol, so `train.valid_metric` must be `none`).
pub fn run_config<B: Backend>(be: &B, cfg: Config, opts: &RunOptions) -> Result<RunSummary> {
    if crate::data::is_mocap(&cfg.data.path) {
        let data = crate::data::mocap::read(Path::new(&cfg.data.path))?;
        if !cfg.model.gaussian || cfg.model.visible != data.dims {
            return Err(Error::config(
                &cfg.data.path,
                "model",
                format!("motion capture needs gaussian: true and visible: {}", data.dims),
            ));
        }
        let chunks: Vec<Vec<B::F>> = data
            .train_chunks(cfg.train.chunk_frames)
            .into_iter()
            .map(|c| c.into_iter().map(B::F::from_f64).collect())
            .collect();
        let mut none = |_: &Model<B>| Ok(None);
        run_chunks(be, cfg, chunks, &mut none, opts)
    } else {
        let data = crate::data::open(&cfg.data.path)?;
        run(be, cfg, &data, opts)
    }
}
