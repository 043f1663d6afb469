//! Training (SPEC 3): chunks, CD-K with the paper's schedule, BPTT, momentum SGD, validation,
//! early stopping, checkpoints that resume exactly, metrics and training curves.
//!
//! Reproducibility: every random number is a function of the seed and a position, never of a
//! sequential generator's history. Epoch e orders its chunks with `HostRng(seed, 0x5EED + e)`
//! (and `0xB0C7 + e` for length buckets, [`epoch_order`]);
//! update n samples its negatives with `RngKey(seed ^ GIBBS_SALT, n)`. A checkpoint therefore
//! needs only the parameters, velocities, update count and position in the epoch to continue
//! bit for bit where a killed run stopped.

use crate::backend::{check_models, Backend, SgdHyper};
use crate::checkpoint::{self, Checkpoint};
use crate::config::{Config, TrainConfig, ValidMetric};
use crate::data::{Dataset, Sequence};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::model::params::HostTensor;
use crate::model::{ChunkStore, Model, Params, Workspace};
use crate::rng::{HostRng, RngKey};
use std::collections::{HashMap, HashSet};
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
    /// Update shapes recorded as graphs and replayed (CUDA, unless `RTRBM_GRAPHS=0`), 0 otherwise.
    pub recorded_shapes: usize,
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
    /// Sum and count of the costs logged so far in this epoch (for its mean train cost).
    epoch_cost: (f64, usize),
}

/// Fails unless the configs can be trained as one pack: the same model, data, chunking, batch
/// and schedule of K (see [`pack_key`]).
pub fn check_packable(cfgs: &[Config]) -> Result<()> {
    let Some(first) = cfgs.first() else {
        return Err(Error::msg("a pack needs at least one run"));
    };
    if let Some(c) = cfgs.iter().find(|c| pack_key(c) != pack_key(first)) {
        return Err(Error::msg(format!(
            "runs differ in model, data, chunk_frames, batch or cd_schedule, so they cannot share a pack:\n{}\nvs\n{}",
            pack_key(first),
            pack_key(c)
        )));
    }
    Ok(())
}

/// What the runs of a pack must share: the model, the data, the chunking, the batch and the
/// schedule of K. Everything else (optimiser, initialisation, seed, length of training,
/// validation, early stopping, logging) is each run's own.
pub fn pack_key(cfg: &Config) -> String {
    let t = &cfg.train;
    let v = serde_json::json!({"model": cfg.model, "data": cfg.data.path, "chunk_frames": t.chunk_frames,
        "batch": t.batch, "cd_schedule": t.cd_schedule});
    v.to_string()
}

/// Models with their optimiser state and buffers on a backend: one model, or P packed models
/// (one config each) on a backend with `models() == P`.
pub struct Trainer<'a, B: Backend> {
    pub be: &'a B,
    pub cfgs: Vec<Config>,
    pub model: Model<B>,
    pub vel: Params<B>,
    pub grads: Params<B>,
    pub ws: Workspace<B>,
    hyper: Vec<SgdHyper<B::F>>,
    /// Every model's parameters and velocities on the host, downloaded once after an update
    /// when a checkpoint or a validation needs them (one download for the whole pack, not one
    /// per model); cleared by every update and restore.
    host: std::cell::RefCell<Option<HostState>>,
    /// Updates recorded as graphs and replayed ([`Trainer::record_updates`]); None: every update
    /// issues its operations one by one.
    recordings: Option<Recordings<B::Recording>>,
}

/// The recorded updates of a trainer, by shape (chunk length T, CD-K): everything else an update
/// launches with (buffers, batch size, hyper-parameters) is fixed for the trainer's life, and
/// the Gibbs keys are staged in device memory before each replay.
struct Recordings<R> {
    /// The backend's [`Backend::recording_generation`] the recordings were made at.
    generation: u64,
    /// Shapes run once without recording (so every buffer they need exists): recorded next time.
    seen: HashSet<(usize, usize)>,
    by_shape: HashMap<(usize, usize), R>,
    /// The backend does not record, or a recording failed (a warning said why): updates run
    /// unrecorded from then on.
    off: bool,
}

impl<R> Recordings<R> {
    fn new() -> Self {
        Self { generation: 0, seen: HashSet::new(), by_shape: HashMap::new(), off: false }
    }
}

/// Whether trainers record their updates ([`Trainer::record_updates`]): yes unless
/// `RTRBM_GRAPHS=0` (measured on an H100: the paper protocol 7-10% faster, docs/GPU.md).
pub fn graphs_from_env() -> bool {
    std::env::var("RTRBM_GRAPHS").as_deref() != Ok("0")
}

/// Where the chunks of an update come from.
pub enum Batch<'c, B: Backend> {
    /// Host arrays uploaded by the update: `chunks[p*B + b]` (`[T_b, V]`) is sequence b of
    /// model p.
    Host(&'c [&'c [B::F]]),
    /// Chunks of a store resident on the device: `ids[p*B + b]` (None: padding).
    Store(&'c ChunkStore<B>, &'c [Option<usize>]),
}

/// Parameters and velocities of each packed model, on the host.
type HostState = (Vec<Vec<HostTensor>>, Vec<Vec<HostTensor>>);

impl<'a, B: Backend> Trainer<'a, B> {
    /// A freshly initialised lone model (SPEC 3 initialisation from `cfg.train.seed`).
    pub fn new(be: &'a B, cfg: Config) -> Result<Self> {
        Self::new_packed(be, vec![cfg])
    }

    /// Freshly initialised packed models, model p from `cfgs[p]` exactly as it would be alone.
    pub fn new_packed(be: &'a B, cfgs: Vec<Config>) -> Result<Self> {
        let inits: Vec<(f64, u64)> = cfgs.iter().map(|c| (c.init.weight_std, c.train.seed)).collect();
        let spec = cfgs.first().map(|c| c.model.clone()).ok_or_else(|| Error::msg("no runs to train"))?;
        check_models("configs", cfgs.len(), be.models())?;
        let model = Model::init_packed(be, spec, &inits)?;
        Self::with_model(be, cfgs, model)
    }

    pub fn with_model(be: &'a B, cfgs: Vec<Config>, model: Model<B>) -> Result<Self> {
        check_packable(&cfgs)?;
        check_models("configs", cfgs.len(), be.models())?;
        let vel = model.zeros_like(be)?;
        let grads = model.zeros_like(be)?;
        let tc = &cfgs[0].train;
        let ws = Workspace::new(be, &cfgs[0].model, tc.chunk_frames, tc.batch)?;
        let hyper = cfgs
            .iter()
            .map(|c| SgdHyper {
                lr: B::F::from_f64(c.train.lr),
                momentum: B::F::from_f64(c.train.momentum),
                weight_decay: B::F::from_f64(c.train.weight_decay),
            })
            .collect();
        let recordings = graphs_from_env().then(Recordings::new);
        Ok(Self { be, cfgs, model, vel, grads, ws, hyper, host: Default::default(), recordings })
    }

    /// Records each shape of update (chunk length, CD-K) as a graph the second time it runs, and
    /// replays it from then on: an update of [`Trainer::step_store`] is then a host-to-device
    /// copy of the chunk spans, the gather launch, a copy of the Gibbs keys and one graph launch
    /// (on CUDA; a backend that does not record runs every update as usual). Results are the same
    /// bits as unrecorded updates. On by default (`RTRBM_GRAPHS=0` turns it off);
    /// [`Trainer::step_packed`] and the phase benchmark never record.
    pub fn record_updates(&mut self, on: bool) {
        if on != self.recordings.is_some() {
            self.recordings = on.then(Recordings::new);
        }
    }

    /// Whether updates are recorded: [`Trainer::record_updates`] is on and the backend records.
    pub fn records_updates(&self) -> bool {
        self.recordings.is_some() && self.be.records()
    }

    /// How many update shapes are recorded now (0 when recording is off or unsupported).
    pub fn recorded_shapes(&self) -> usize {
        self.recordings.as_ref().map_or(0, |r| r.by_shape.len())
    }

    /// The config of model 0 (the only one of a lone trainer).
    pub fn cfg(&self) -> &Config {
        &self.cfgs[0]
    }

    /// One parameter update of a lone model on a batch of chunks (each `[T_b, V]`). Returns the
    /// chunk's T and real frames.
    pub fn step(&mut self, chunks: &[&[B::F]], update: u64) -> Result<(usize, usize)> {
        let (t, frames) = self.step_packed(chunks, &[update])?;
        Ok((t, frames[0]))
    }

    /// One parameter update of every packed model, model p on `chunks[p*B .. (p+1)*B]` at its
    /// update number `updates[p]`: forward, CD-K negatives, BPTT gradient, optional clipping,
    /// momentum SGD. Returns the chunk's T and each model's real frames.
    pub fn step_packed(&mut self, chunks: &[&[B::F]], updates: &[u64]) -> Result<(usize, Vec<usize>)> {
        self.step_marked(Batch::Host(chunks), updates, &mut |_| Ok(()))
    }

    /// [`Trainer::step_packed`] on chunks of a store resident on the device (`ids[p*B + b]`,
    /// None: a padding sequence): what training does, no frames copied from the host.
    /// With [`Trainer::record_updates`], replays the update's recording.
    pub fn step_store(
        &mut self,
        store: &ChunkStore<B>,
        ids: &[Option<usize>],
        updates: &[u64],
    ) -> Result<(usize, Vec<usize>)> {
        let Some(mut rec) = self.recordings.take() else {
            return self.step_marked(Batch::Store(store, ids), updates, &mut |_| Ok(()));
        };
        let out = self.step_recorded(&mut rec, store, ids, updates);
        self.recordings = Some(rec);
        out
    }

    /// [`Trainer::step_store`] through recordings: replays the recording of the update's shape,
    /// records it if the shape ran before, or runs it unrecorded.
    fn step_recorded(
        &mut self,
        rec: &mut Recordings<B::Recording>,
        store: &ChunkStore<B>,
        ids: &[Option<usize>],
        updates: &[u64],
    ) -> Result<(usize, Vec<usize>)> {
        let be = self.be;
        let (k, keys) = self.update_keys(updates)?;
        self.host.replace(None);
        let (t, frames) = self.ws.gather(be, store, ids)?;
        be.stage_gibbs_keys(&keys)?;
        let generation = be.recording_generation();
        if rec.generation != generation {
            // a buffer a recording may hold was replaced: record again
            rec.by_shape.clear();
            rec.seen.clear();
            rec.generation = generation;
        }
        let shape = (t, k);
        if let Some(recording) = rec.by_shape.get(&shape) {
            be.replay(recording)?;
            return Ok((t, frames));
        }
        if rec.seen.contains(&shape) && !rec.off {
            match self.record(t, k, &keys) {
                Ok(Some(recording)) => {
                    be.replay(&recording)?;
                    if be.recording_generation() == generation {
                        rec.by_shape.insert(shape, recording);
                    }
                    return Ok((t, frames));
                }
                Ok(None) => rec.off = true,
                Err(e) => {
                    // nothing of a failed recording has run: the update runs unrecorded below
                    eprintln!("warning: recording a training update failed ({e}); updates run unrecorded");
                    rec.off = true;
                }
            }
        }
        rec.seen.insert(shape);
        self.update_body(t, k, &keys, &mut |_| Ok(()))?;
        Ok((t, frames))
    }

    /// Records the device work of an update (nothing runs); None when the backend does not
    /// record.
    fn record(&mut self, t: usize, k: usize, keys: &[RngKey]) -> Result<Option<B::Recording>> {
        if !self.be.begin_recording()? {
            return Ok(None);
        }
        let body = self.update_body(t, k, keys, &mut |_| Ok(()));
        let recording = self.be.end_recording();
        body.and(recording).map(Some)
    }

    /// The update's CD-K (equal for every packed model) and each model's Gibbs key.
    fn update_keys(&self, updates: &[u64]) -> Result<(usize, Vec<RngKey>)> {
        check_models("update numbers", updates.len(), self.cfgs.len())?;
        let k = self.cfgs[0].train.cd_k(updates[0]);
        if updates.iter().zip(&self.cfgs).any(|(&u, c)| c.train.cd_k(u) != k) {
            return Err(Error::msg("packed models are at updates with different CD-K"));
        }
        let keys =
            self.cfgs.iter().zip(updates).map(|(c, &u)| RngKey::new(c.train.seed ^ GIBBS_SALT, u as u32)).collect();
        Ok((k, keys))
    }

    /// One update ([`Trainer::step_packed`] or [`Trainer::step_store`]), calling `mark(phase)`
    /// after each of its phases: `load` (the chunks into the workspace), `forward`,
    /// `negatives`, `backward`, `clip` and `sgd`. The phase benchmark (`rtrbm bench phases`)
    /// synchronises and reads a clock there.
    pub fn step_marked(
        &mut self,
        batch: Batch<'_, B>,
        updates: &[u64],
        mark: &mut dyn FnMut(&'static str) -> Result<()>,
    ) -> Result<(usize, Vec<usize>)> {
        let be = self.be;
        let nv = self.cfgs[0].model.visible;
        let (k, keys) = self.update_keys(updates)?;
        self.host.replace(None);
        let (t, frames) = match batch {
            Batch::Host(chunks) => self.ws.load(be, chunks, nv)?,
            Batch::Store(store, ids) => self.ws.gather(be, store, ids)?,
        };
        mark("load")?;
        self.update_body(t, k, &keys, mark)?;
        Ok((t, frames))
    }

    /// The device work of an update on the chunks in the workspace (T frames): forward, CD-K
    /// negatives with `keys`, backward, optional clipping, momentum SGD; `mark(phase)` after each.
    fn update_body(
        &mut self,
        t: usize,
        k: usize,
        keys: &[RngKey],
        mark: &mut dyn FnMut(&'static str) -> Result<()>,
    ) -> Result<()> {
        let be = self.be;
        self.model.forward(be, &mut self.ws, t, false)?;
        mark("forward")?;
        self.model.negatives(be, &mut self.ws, t, k, keys, 0)?;
        mark("negatives")?;
        self.model.backward(be, &mut self.ws, t, &mut self.grads)?;
        mark("backward")?;
        if self.cfgs.iter().any(|c| c.train.grad_clip > 0.0) {
            let clips: Vec<f64> = self.cfgs.iter().map(|c| c.train.grad_clip).collect();
            be.clip_grad_norm(&mut self.grads.bufs, &clips)?;
        }
        mark("clip")?;
        be.sgd_momentum_all(&mut self.model.params.bufs, &self.grads.bufs, &mut self.vel.bufs, &self.hyper)?;
        mark("sgd")
    }

    /// The SPEC 3 cost of each model on the batch last passed to [`Trainer::step_packed`], with
    /// the parameters before that step's update (from the buffers of its forward pass).
    pub fn last_costs(&mut self, t: usize) -> Result<Vec<f64>> {
        self.model.cost(self.be, &mut self.ws, t)
    }

    /// For each model: None, or which parameter holds NaN or infinite values.
    pub fn non_finite(&self) -> Result<Vec<Option<String>>> {
        let mut bad = vec![None; self.cfgs.len()];
        for (name, buf) in self.model.params.names.iter().zip(&self.model.params.bufs) {
            for (b, s) in bad.iter_mut().zip(self.be.sum_squares(buf)?) {
                if b.is_none() && !s.is_finite() {
                    *b = Some(format!("parameter `{name}` holds NaN or infinite values"));
                }
            }
        }
        Ok(bad)
    }

    /// Fails with [`Error::Divergence`] when a parameter of any model is NaN or infinite.
    pub fn check_finite(&self) -> Result<()> {
        match self.non_finite()?.into_iter().flatten().next() {
            Some(msg) => Err(Error::Divergence(msg)),
            None => Ok(()),
        }
    }

    /// Model p's parameters as host tensors.
    pub fn host_params(&self, p: usize) -> Result<Vec<HostTensor>> {
        Ok(self.host_state()?.0[p].clone())
    }

    /// The host copy of every model's parameters and velocities (downloaded when absent).
    fn host_state(&self) -> Result<std::cell::Ref<'_, HostState>> {
        if self.host.borrow().is_none() {
            let params = self.model.params.to_host_models(self.be)?;
            let vel = self.vel.to_host_models(self.be)?;
            *self.host.borrow_mut() = Some((params, vel));
        }
        Ok(std::cell::Ref::map(self.host.borrow(), |h| h.as_ref().expect("filled above")))
    }

    fn to_checkpoint(&self, p: usize, prog: &Progress) -> Result<Checkpoint> {
        let cfg = &self.cfgs[p];
        let (params, vel) = {
            let host = self.host_state()?;
            (host.0[p].clone(), host.1[p].clone())
        };
        let extra = vel.into_iter().map(|(n, s, v)| (format!("vel.{n}"), s, v)).collect();
        let mut meta = HashMap::new();
        meta.insert("update".into(), prog.update.to_string());
        meta.insert("epoch".into(), prog.epoch.to_string());
        meta.insert("batch_pos".into(), prog.batch_pos.to_string());
        meta.insert("best_valid".into(), prog.best_valid.map(|x| format!("{x:e}")).unwrap_or_default());
        meta.insert("bad_validations".into(), prog.bad_validations.to_string());
        meta.insert("wall_s".into(), format!("{}", prog.wall_s));
        meta.insert("epoch_cost".into(), format!("{:e} {}", prog.epoch_cost.0, prog.epoch_cost.1));
        meta.insert("config".into(), cfg.to_yaml());
        meta.insert("rng".into(), format!("philox4x32-10 seed {} (positional; see train.rs)", cfg.train.seed));
        meta.insert("device".into(), self.be.name());
        Ok(Checkpoint { spec: cfg.model.clone(), params, extra, meta })
    }

    /// Restores model p's parameters, velocities and progress from a checkpoint of this trainer.
    fn restore(&mut self, p: usize, ck: &Checkpoint) -> Result<Progress> {
        if ck.spec != self.cfgs[p].model {
            return Err(Error::msg("checkpoint model does not match the config's model"));
        }
        self.host.replace(None);
        let mut vals = vec![];
        for (i, name) in self.model.params.names.iter().enumerate() {
            let t = ck.params.iter().find(|t| &t.0 == name);
            vals.push(t.ok_or_else(|| Error::msg(format!("checkpoint lacks `{name}`")))?.2.as_slice());
            debug_assert_eq!(&ck.params[i].0, name);
        }
        write_model(self.be, &mut self.model.params, p, &vals)?;
        let mut vals = vec![];
        for name in &self.vel.names {
            let key = format!("vel.{name}");
            let t =
                ck.extra.iter().find(|e| e.0 == key).ok_or_else(|| Error::msg(format!("checkpoint lacks `{key}`")))?;
            vals.push(t.2.as_slice());
        }
        write_model(self.be, &mut self.vel, p, &vals)?;
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
            // absent in checkpoints of older versions: the epoch's mean cost then covers only
            // the updates after the resumption
            epoch_cost: get("epoch_cost")
                .split_once(' ')
                .and_then(|(s, n)| Some((s.parse().ok()?, n.parse().ok()?)))
                .unwrap_or((0.0, 0)),
        })
    }
}

/// Replaces model p's slab of each tensor in `set` with `values[i]` (a host round trip).
fn write_model<B: Backend>(be: &B, set: &mut Params<B>, p: usize, values: &[&[f64]]) -> Result<()> {
    for (buf, vals) in set.bufs.iter_mut().zip(values) {
        let mut all = be.download(buf)?;
        let n = be.len(buf);
        if vals.len() != n {
            return Err(Error::Shape(format!("checkpoint tensor of {} values, model has {n}", vals.len())));
        }
        all[p * n..(p + 1) * n].iter_mut().zip(vals.iter()).for_each(|(a, &x)| *a = B::F::from_f64(x));
        be.write(buf, &all)?;
    }
    Ok(())
}

/// A cheap validation figure (see [`ValidMetric`]); higher is better for `AisLl`, and the cost is
/// negated so that higher is better for every metric. `model` is a lone model.
pub fn validate<B: Backend>(be: &B, model: &Model<B>, cfg: &Config, valid: &[Sequence]) -> Result<Option<f64>> {
    Ok(validate_packed(be, model, std::slice::from_ref(cfg), valid)?.swap_remove(0))
}

/// What the validation of a run depends on besides its parameters and seed: runs of a pack that
/// agree on it are validated together, in one pass of packed operations.
fn valid_key(cfg: &Config) -> (ValidMetric, usize, usize, usize) {
    let t = &cfg.train;
    (t.valid_metric, t.valid_max_frames, t.valid_ais_betas, t.valid_ais_runs)
}

/// [`validate`] for every model of a pack at once (model p with `cfgs[p]`'s settings and seed),
/// each exactly as it is alone: the validation sequences go to every model's slab, and each
/// model draws with its own keys. Models that differ in validation settings take one packed pass
/// per setting (each pass computes every slab and keeps its own models' figures).
pub fn validate_packed<B: Backend>(
    be: &B,
    model: &Model<B>,
    cfgs: &[Config],
    valid: &[Sequence],
) -> Result<Vec<Option<f64>>> {
    check_models("configs", cfgs.len(), be.models())?;
    let mut out = vec![None; cfgs.len()];
    let mut done = vec![false; cfgs.len()];
    for p in 0..cfgs.len() {
        if done[p] {
            continue;
        }
        let key = valid_key(&cfgs[p]);
        let figures = validate_pass(be, model, cfgs, &cfgs[p], valid)?;
        for q in p..cfgs.len() {
            if !done[q] && valid_key(&cfgs[q]) == key {
                out[q] = figures[q];
                done[q] = true;
            }
        }
    }
    Ok(out)
}

/// One packed validation pass with the settings of `settings` and each model's own seed.
fn validate_pass<B: Backend>(
    be: &B,
    model: &Model<B>,
    cfgs: &[Config],
    settings: &Config,
    valid: &[Sequence],
) -> Result<Vec<Option<f64>>> {
    let tc = &settings.train;
    let models = cfgs.len();
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
        return Ok(vec![None; models]);
    }
    match tc.valid_metric {
        ValidMetric::None => Ok(vec![None; models]),
        ValidMetric::Cost => {
            let mut total = vec![0.0; models];
            let mut frames_total = 0;
            // one workspace for the longest sequence, reused (a pack's is P slabs)
            let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
            let mut ws = Workspace::new(be, &model.spec, longest, 1)?;
            for (i, s) in seqs.iter().enumerate() {
                let dense: Vec<B::F> = s.to_dense().iter().map(|&x| B::F::from_f64(x as f64)).collect();
                let (t, frames) = ws.load(be, &vec![dense.as_slice(); models], model.spec.visible)?;
                model.forward(be, &mut ws, t, false)?;
                let keys: Vec<RngKey> = cfgs.iter().map(|c| RngKey::new(c.train.seed, 0xC057 + i as u32)).collect();
                model.negatives(be, &mut ws, t, tc.max_k(), &keys, 0)?;
                for (tot, c) in total.iter_mut().zip(model.cost(be, &mut ws, t)?) {
                    *tot += c * frames[0] as f64;
                }
                frames_total += frames[0];
            }
            Ok(total.into_iter().map(|t| Some(-t / frames_total as f64)).collect())
        }
        ValidMetric::AisLl => {
            let betas: Vec<f64> = (0..tc.valid_ais_betas).map(|i| i as f64 / (tc.valid_ais_betas - 1) as f64).collect();
            let keys: Vec<RngKey> = cfgs.iter().map(|c| RngKey::new(c.train.seed, 0xA15)).collect();
            let ll = ais_ll_quick(be, model, &seqs, &betas, tc.valid_ais_runs, &keys)?;
            Ok(ll.into_iter().map(Some).collect())
        }
    }
}

/// Mean log P(v_t | v_<t) per frame by AIS over whole sequences (SPEC 4.1), without standard
/// errors: the validation proxy used during training, for every packed model (`rng` holds one
/// key per model). `rtrbm eval` is the full evaluation.
pub fn ais_ll_quick<B: Backend>(
    be: &B,
    model: &Model<B>,
    seqs: &[Sequence],
    betas: &[f64],
    runs: usize,
    rng: &[RngKey],
) -> Result<Vec<f64>> {
    let (nv, nh) = (model.spec.visible, model.spec.hidden);
    let models = be.models();
    check_models("AIS keys", rng.len(), models)?;
    let mut total = vec![0.0; models];
    let mut frames = 0usize;
    let w = model.params.get("W")?;
    // one workspace for the longest sequence, reused: model p's slabs start at p * t_max rows
    let t_max = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
    let mut ws = Workspace::new(be, &model.spec, t_max, 1)?;
    for (si, s) in seqs.iter().enumerate() {
        let dense: Vec<B::F> = s.to_dense().iter().map(|&x| B::F::from_f64(x as f64)).collect();
        let t = s.len();
        ws.load(be, &vec![dense.as_slice(); models], nv)?;
        model.forward(be, &mut ws, t, false)?;
        be.free_energy(w, &ws.bv_t, &ws.bh_t, &ws.v, t, nv, nh, model.spec.gaussian, &mut ws.fe)?;
        let fe = be.download(&ws.fe)?;
        let keys: Vec<RngKey> = rng.iter().map(|k| RngKey::new(k.seed, k.stream.wrapping_add(si as u32))).collect();
        let logw = be.ais(w, &ws.bv_t, &ws.bh_t, t, nv, nh, runs, betas, &keys, 0)?;
        let bv = be.download(&ws.bv_t)?;
        let bh = be.download(&ws.bh_t)?;
        // model p's slabs: fe [t_max], bv_t [t_max, V], bh_t [t_max, H] (first t rows used),
        // log-weights [t, runs]
        for (p, tot) in total.iter_mut().enumerate() {
            let (fe, bv, bh) = (&fe[p * t_max..], &bv[p * t_max * nv..], &bh[p * t_max * nh..]);
            let logw = &logw[p * t * runs..];
            for f in 0..t {
                let log_z0: f64 = bv[f * nv..(f + 1) * nv].iter().map(|x| x.softplus().to_f64()).sum::<f64>()
                    + bh[f * nh..(f + 1) * nh].iter().map(|x| x.softplus().to_f64()).sum::<f64>();
                let (lme, _) = crate::eval::ais::log_mean_exp_se(&logw[f * runs..(f + 1) * runs]);
                *tot += -fe[f].to_f64() - (log_z0 + lme);
            }
        }
        frames += t;
    }
    Ok(total.into_iter().map(|t| t / frames.max(1) as f64).collect())
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
    run_packed(be, vec![cfg], data, std::slice::from_ref(opts))?.remove(0)
}

/// Trains packed runs (`cfgs[p]` into `opts[p].out_dir`, see [`run_pack`]) on the piano rolls of
/// `data`, validating the whole pack at once ([`validate_packed`]).
pub fn run_packed<B: Backend>(
    be: &B,
    cfgs: Vec<Config>,
    data: &Dataset,
    opts: &[RunOptions],
) -> Result<Vec<Result<RunSummary>>> {
    let chunk_frames = cfgs.first().map_or(1, |c| c.train.chunk_frames);
    let chunks: Vec<Vec<B::F>> = make_chunks(&data.train, chunk_frames);
    let valid_cfgs = cfgs.clone();
    let mut valid = |m: &Model<B>| validate_packed(be, m, &valid_cfgs, &data.valid);
    run_pack(be, cfgs, &chunks, &mut valid, opts)
}

/// Validation figures (higher is better, or None) of every model of a pack, given the packed
/// model; called once at an epoch end where any run validates, and each run that validates
/// then takes its own figure.
pub type ValidFn<'a, B> = dyn FnMut(&Model<B>) -> Result<Vec<Option<f64>>> + 'a;

/// Trains `cfg` on dense chunks (`[T_c, V]` each, binary or real-valued) into `opts.out_dir`,
/// validating with `valid` every `train.valid_every` epochs.
pub fn run_chunks<B: Backend>(
    be: &B,
    cfg: Config,
    chunks: Vec<Vec<B::F>>,
    valid_fn: &mut ValidFn<'_, B>,
    opts: &RunOptions,
) -> Result<RunSummary> {
    run_pack(be, vec![cfg], &chunks, valid_fn, std::slice::from_ref(opts))?.remove(0)
}

/// The chunk order of epoch `epoch` of a run whose chunks have `lens` frames; its batches are
/// consecutive runs of `tc.batch` chunks of it (the last one possibly shorter). The chunks are
/// shuffled with `HostRng(seed, 0x5EED + epoch)` (file order without `tc.shuffle`). With
/// `tc.bucket` and a batch > 1 they are then sorted by length, longest first (stably, so chunks
/// of one length keep their shuffled order), cut into batches, and the whole batches shuffled
/// with `HostRng(seed, 0xB0C7 + epoch)`; a short last batch (the shortest chunks) stays last.
/// Every chunk is still seen once per epoch, but a batch then holds chunks of similar length: an
/// update's T is about its chunks' length rather than the longest of B random chunks (JSB, batch
/// 64: the padding falls from 46% of the rows to 18%, and the four batches of an epoch have T =
/// 100, 65, 56 and 41 instead of ~100 each; larger datasets bucket more finely).
pub fn epoch_order(tc: &TrainConfig, lens: &[usize], epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    if tc.shuffle {
        HostRng::new(tc.seed, 0x5EED + epoch as u32).shuffle(&mut order);
    }
    if tc.bucket && tc.batch > 1 {
        order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
        let full = order.len() / tc.batch;
        let mut batches: Vec<&[usize]> = order.chunks(tc.batch).collect();
        if tc.shuffle {
            HostRng::new(tc.seed, 0xB0C7 + epoch as u32).shuffle(&mut batches[..full]);
        }
        order = batches.concat();
    }
    order
}

/// Where one run of a pack stands.
struct RunState<'o> {
    opts: &'o RunOptions,
    ck_path: PathBuf,
    metrics_path: PathBuf,
    prog: Progress,
    last_good: Progress,
    /// The shuffled chunk order of epoch `order.0`.
    order: (usize, Vec<usize>),
    stopped_early: bool,
    wall0: f64,
    update0: u64,
    result: Option<Result<RunSummary>>,
}

impl RunState<'_> {
    fn label(&self) -> String {
        self.opts.out_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Trains P runs as one pack on `be` (`be.models() == cfgs.len()`; one run on a lone backend):
/// `cfgs[p]` into `opts[p].out_dir`, each exactly as it would train alone (its own
/// initialisation, data order, Gibbs keys, optimiser, validation, early stopping and
/// checkpoints), in lockstep, one update of every model per step. A run that has finished
/// (epochs, update budget, early stop, divergence) keeps its results while the others go on; its
/// slab still computes but is ignored. Runs in lockstep end their epochs at the same step, so
/// `valid_fn` validates the whole pack once there and every run due takes its figure. Returns
/// each run's result; the outer error is one that stops the whole pack (the device, the data).
pub fn run_pack<B: Backend>(
    be: &B,
    cfgs: Vec<Config>,
    chunks: &[Vec<B::F>],
    valid_fn: &mut ValidFn<'_, B>,
    opts: &[RunOptions],
) -> Result<Vec<Result<RunSummary>>> {
    check_models("run options", opts.len(), cfgs.len())?;
    if chunks.is_empty() {
        return Err(Error::msg("the training split has no frames"));
    }
    let mut trainer = Trainer::new_packed(be, cfgs.clone())?;
    // the training chunks live on the device for the whole run; an update gathers its batch
    let store = ChunkStore::new(be, chunks, cfgs[0].model.visible)?;
    let lens: Vec<usize> = (0..store.len()).map(|i| store.frames(i)).collect();
    let mut ids: Vec<Option<usize>> = Vec::with_capacity(cfgs.len() * cfgs[0].train.batch);
    let mut runs: Vec<RunState> = vec![];
    for (p, o) in opts.iter().enumerate() {
        let out = &o.out_dir;
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let mut st = RunState {
            opts: o,
            ck_path: out.join("checkpoint.safetensors"),
            metrics_path: out.join("metrics.jsonl"),
            prog: Progress::default(),
            last_good: Progress::default(),
            order: (usize::MAX, vec![]),
            stopped_early: false,
            wall0: 0.0,
            update0: 0,
            result: None,
        };
        if o.resume {
            let ck = checkpoint::load(&st.ck_path)?;
            st.prog = trainer.restore(p, &ck)?;
            if o.verbose {
                let (u, e) = (st.prog.update, st.prog.epoch + 1);
                eprintln!("resuming from {} at update {u}, epoch {e}", st.ck_path.display());
            }
        } else {
            crate::error::write_atomic(&out.join("config.yaml"), cfgs[p].to_yaml().as_bytes())?;
            let _ = std::fs::remove_file(&st.metrics_path);
        }
        // a resumed run that had already stopped early stays stopped
        let tc = &cfgs[p].train;
        st.stopped_early = tc.patience > 0 && st.prog.bad_validations >= tc.patience;
        st.last_good = st.prog.clone();
        st.wall0 = st.prog.wall_s;
        st.update0 = st.prog.update;
        runs.push(st);
    }
    let tc0 = cfgs[0].train.clone();
    let batches_per_epoch = chunks.len().div_ceil(tc0.batch);
    let start = Instant::now();
    let bar = opts[0].progress.then(|| {
        let epochs_total = (batches_per_epoch * tc0.epochs) as u64;
        let total = if tc0.max_updates > 0 { tc0.max_updates.min(epochs_total) } else { epochs_total };
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} updates ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_position(runs.iter().map(|r| r.prog.update).max().unwrap_or(0));
        pb
    });
    let say = |msg: String| match &bar {
        Some(pb) => pb.println(msg),
        None => eprintln!("{msg}"),
    };
    let packed = cfgs.len() > 1;
    let save = |trainer: &Trainer<B>, p: usize, st: &RunState, name: &str| -> Result<()> {
        checkpoint::save(&st.opts.out_dir.join(name), &trainer.to_checkpoint(p, &st.prog)?)
    };
    // The pack's validation figures at a step (the step's number, one figure per model).
    let mut figures: Option<(u64, Vec<Option<f64>>)> = None;
    let mut step_no = 0u64;
    // The end of an epoch of run p: validate, early-stop, checkpoint, curves.
    let mut end_epoch = |trainer: &Trainer<B>, p: usize, st: &mut RunState, step_no: u64| -> Result<()> {
        let tc = &cfgs[p].train;
        st.prog.epoch += 1;
        st.prog.batch_pos = 0;
        if let Some(msg) = trainer.non_finite()?.swap_remove(p) {
            return Err(Error::Divergence(msg));
        }
        let mut valid = None;
        if tc.valid_metric != ValidMetric::None && st.prog.epoch.is_multiple_of(tc.valid_every) {
            let current = match figures.take() {
                Some((n, f)) if n == step_no => f,
                _ => valid_fn(&trainer.model)?,
            };
            check_models("validation figures", current.len(), cfgs.len())?;
            valid = current[p];
            figures = Some((step_no, current));
            if let Some(v) = valid {
                if st.prog.best_valid.is_none_or(|b| v > b) {
                    st.prog.best_valid = Some(v);
                    st.prog.bad_validations = 0;
                    save(trainer, p, st, "best.safetensors")?;
                } else {
                    st.prog.bad_validations += 1;
                }
            }
        }
        st.prog.wall_s = st.wall0 + start.elapsed().as_secs_f64();
        let (sum, n) = std::mem::take(&mut st.prog.epoch_cost);
        let train_cost = (n > 0).then(|| sum / n as f64);
        append_jsonl(
            &st.metrics_path,
            &serde_json::json!({"kind": "epoch", "epoch": st.prog.epoch, "update": st.prog.update,
                "train_cost": train_cost, "valid": valid, "valid_metric": tc.valid_metric, "wall_s": st.prog.wall_s}),
        )?;
        if st.opts.verbose {
            let v = valid.map(|v| format!(", valid {v:.4}")).unwrap_or_default();
            let c = train_cost.map(|c| format!(", cost {c:.4}")).unwrap_or_default();
            let who = if packed { format!("{}: ", st.label()) } else { String::new() };
            say(format!("{who}epoch {} (update {}){c}{v}", st.prog.epoch, st.prog.update));
        }
        save(trainer, p, st, "checkpoint.safetensors")?;
        if tc.patience > 0 && st.prog.bad_validations >= tc.patience {
            st.stopped_early = true;
        } else {
            st.last_good = st.prog.clone();
            let _ = plot_curves(&st.opts.out_dir);
        }
        Ok(())
    };
    let finish = |trainer: &Trainer<B>, p: usize, st: &mut RunState| -> Result<RunSummary> {
        st.prog.wall_s = st.wall0 + start.elapsed().as_secs_f64();
        save(trainer, p, st, "checkpoint.safetensors")?;
        if st.prog.best_valid.is_none() {
            save(trainer, p, st, "best.safetensors")?;
        }
        let _ = plot_curves(&st.opts.out_dir);
        let el = start.elapsed().as_secs_f64();
        Ok(RunSummary {
            updates: st.prog.update,
            epochs_done: st.prog.epoch,
            best_valid: st.prog.best_valid,
            stopped_early: st.stopped_early,
            wall_s: st.prog.wall_s,
            updates_per_s: (st.prog.update - st.update0) as f64 / el.max(1e-9),
            recorded_shapes: trainer.recorded_shapes(),
        })
    };
    loop {
        // the next batch of every run that goes on (None: finished)
        let mut batches: Vec<Option<&[usize]>> = vec![];
        for (p, st) in runs.iter_mut().enumerate() {
            let tc = &cfgs[p].train;
            loop {
                if st.result.is_some() {
                    break;
                }
                let budget_spent = tc.max_updates > 0 && st.prog.update >= tc.max_updates;
                if st.stopped_early
                    || st.prog.epoch >= tc.epochs
                    || st.prog.batch_pos < batches_per_epoch && budget_spent
                {
                    st.result = Some(finish(&trainer, p, st));
                    break;
                }
                if st.prog.batch_pos < batches_per_epoch {
                    break;
                }
                if let Err(e) = end_epoch(&trainer, p, st, step_no) {
                    st.result = Some(Err(e));
                }
            }
            if st.result.is_none() && st.order.0 != st.prog.epoch {
                st.order = (st.prog.epoch, epoch_order(tc, &lens, st.prog.epoch));
            }
        }
        for st in &runs {
            batches.push(st.result.is_none().then(|| {
                let (pos, b) = (st.prog.batch_pos, tc0.batch);
                &st.order.1[pos * b..((pos + 1) * b).min(st.order.1.len())]
            }));
        }
        let Some(lead) = runs.iter().position(|st| st.result.is_none()) else {
            break;
        };
        // finished runs get all-padding batches; short batches at the end of an epoch are padded
        ids.clear();
        for batch in &batches {
            let batch = batch.unwrap_or(&[]);
            ids.extend(batch.iter().map(|&i| Some(i)));
            ids.extend(std::iter::repeat_n(None, tc0.batch - batch.len()));
        }
        let updates: Vec<u64> =
            runs.iter().map(|st| if st.result.is_none() { st.prog.update } else { runs[lead].prog.update }).collect();
        let (t, _) = trainer.step_store(&store, &ids, &updates)?;
        step_no += 1;
        let mut costs: Option<Vec<f64>> = None;
        let mut bad: Option<Vec<Option<String>>> = None;
        for (p, st) in runs.iter_mut().enumerate() {
            if st.result.is_some() {
                continue;
            }
            let tc = &cfgs[p].train;
            st.prog.update += 1;
            st.prog.batch_pos += 1;
            if st.prog.update % tc.log_every == 0 {
                // the cost of this batch before its update, from the buffers of its forward pass
                let cost = match &costs {
                    Some(c) => c[p],
                    None => costs.insert(trainer.last_costs(t)?)[p],
                };
                let nonfinite = match &bad {
                    Some(b) => b[p].is_some(),
                    None => bad.insert(trainer.non_finite()?)[p].is_some(),
                };
                if !cost.is_finite() || nonfinite {
                    st.result = Some(Err(Error::Divergence(format!(
                        "non-finite cost or parameter at update {}; the last good checkpoint ({}, update {}) is kept",
                        st.prog.update,
                        st.ck_path.display(),
                        st.last_good.update
                    ))));
                    continue;
                }
                st.prog.epoch_cost.0 += cost;
                st.prog.epoch_cost.1 += 1;
                let k = tc.cd_k(st.prog.update - 1);
                append_jsonl(
                    &st.metrics_path,
                    &serde_json::json!({"kind": "step", "update": st.prog.update, "epoch": st.prog.epoch + 1,
                        "cost": cost, "k": k, "wall_s": st.wall0 + start.elapsed().as_secs_f64()}),
                )?;
                if let (Some(pb), false) = (&bar, packed) {
                    pb.set_message(format!("cost {cost:.4} K={k}"));
                }
            }
            if tc.checkpoint_every > 0 && st.prog.update % tc.checkpoint_every == 0 {
                let msg = match &bad {
                    Some(b) => b[p].clone(),
                    None => bad.insert(trainer.non_finite()?)[p].clone(),
                };
                if let Some(msg) = msg {
                    st.result = Some(Err(Error::Divergence(msg)));
                    continue;
                }
                st.prog.wall_s = st.wall0 + start.elapsed().as_secs_f64();
                save(&trainer, p, st, "checkpoint.safetensors")?;
                st.last_good = st.prog.clone();
            }
        }
        if let Some(pb) = &bar {
            pb.set_position(runs.iter().map(|r| r.prog.update).max().unwrap_or(0));
            if packed {
                let active = runs.iter().filter(|r| r.result.is_none()).count();
                pb.set_message(format!("{active} of {} runs training", runs.len()));
            }
        }
    }
    if let Some(pb) = &bar {
        if runs.iter().all(|r| matches!(r.result, Some(Ok(_)))) {
            pb.finish();
        } else {
            pb.abandon();
        }
    }
    Ok(runs.into_iter().map(|st| st.result.unwrap_or_else(|| Err(Error::msg("run did not finish")))).collect())
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
        let mut none = |_: &Model<B>| Ok(vec![None]);
        run_chunks(be, cfg, chunks, &mut none, opts)
    } else {
        let data = crate::data::open(&cfg.data.path)?;
        run(be, cfg, &data, opts)
    }
}
