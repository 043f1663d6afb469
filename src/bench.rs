//! Reusable timing workloads (used by `benches/train.rs` and the `rtrbm bench` command).
//!
//! Each workload warms up, then times several repetitions, calling `be.synchronize()` before it
//! reads the clock, and reports the median, minimum and maximum seconds per repetition and the
//! throughput at the median.

use crate::backend::Backend;
use crate::config::{CdStep, Config, TrainConfig};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::model::{ChunkStore, ModelKind, ModelSpec};
use crate::rng::{HostRng, RngKey};
use crate::train::{epoch_order, make_chunks, Batch, Trainer};
use std::time::Instant;

/// Timings of one workload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    /// What was timed, e.g. `train lstm_rtrbm batch 1 CD-25`.
    pub name: String,
    /// Seconds per repetition: median, fastest, slowest.
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Repetitions timed (after the warm-up).
    pub reps: usize,
    /// Work items per repetition (updates, or chain-steps for AIS).
    pub items_per_rep: f64,
    /// Work items per second at the median.
    pub throughput: f64,
    /// Name of the work item: `updates` or `chain-steps`.
    pub unit: String,
    /// Training workloads: whether the timed updates replayed recorded CUDA graphs.
    pub recorded: bool,
    /// Training workloads: the real (unpadded) frames of the timed updates, per update.
    pub frames_per_update: Option<f64>,
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {:.4e} {}/s (median {:.4} s, min {:.4} s, max {:.4} s over {} reps of {} {})",
            self.name,
            self.throughput,
            self.unit,
            self.median_s,
            self.min_s,
            self.max_s,
            self.reps,
            self.items_per_rep,
            self.unit
        )
    }
}

fn summarise(name: String, mut times: Vec<f64>, items: f64, unit: &str) -> BenchResult {
    times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let median = times[times.len() / 2];
    BenchResult {
        name,
        median_s: median,
        min_s: times[0],
        max_s: times[times.len() - 1],
        reps: times.len(),
        items_per_rep: items,
        throughput: items / median.max(1e-12),
        unit: unit.to_string(),
        recorded: false,
        frames_per_update: None,
    }
}

/// The paper-protocol model spec of `kind`: V = 88, H = 88 (RNN-RBM: H = 150, U = 100; LSTM-RTRBM: U = 88).
pub fn paper_spec(kind: ModelKind) -> ModelSpec {
    match kind {
        ModelKind::RnnRbm => ModelSpec::new(kind, 88, 150, 100),
        ModelKind::LstmRtrbm => ModelSpec::new(kind, 88, 88, 88),
        _ => ModelSpec::new(kind, 88, 88, 0),
    }
}

/// The paper-protocol config of `kind` with `batch` chunks per update and CD-`k`, and the JSB
/// Chorales training chunks (<= 100 frames) as dense `[T, V]` arrays.
fn paper_setup<F: Float>(
    what: &str,
    kind: ModelKind,
    batch: usize,
    k: usize,
    updates: usize,
) -> Result<(Config, Vec<Vec<F>>)> {
    if batch == 0 || k == 0 || updates == 0 {
        return Err(Error::msg(format!("{what}: batch, k and updates must be positive")));
    }
    let mut cfg = Config { model: paper_spec(kind), ..Config::default() };
    cfg.train.batch = batch;
    cfg.train.cd_schedule = vec![CdStep { from: 0, k }];
    let chunks = make_chunks(&crate::data::jsb_embedded().train, cfg.train.chunk_frames);
    if chunks.is_empty() {
        return Err(Error::msg(format!("{what}: no training chunks")));
    }
    Ok((cfg, chunks))
}

/// Frames of each JSB Chorales training chunk (<= 100 frames; the embedded data).
fn jsb_chunk_lens() -> Vec<usize> {
    make_chunks::<f32>(&crate::data::jsb_embedded().train, 100).iter().map(|c| c.len() / 88).collect()
}

/// Mean frames of a JSB Chorales training chunk (<= 100 frames): 13,807 frames in 243 chunks,
/// 56.8 (counted from the embedded data).
pub fn jsb_mean_chunk_frames() -> f64 {
    let lens = jsb_chunk_lens();
    lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64
}

/// The tags of a training workload's name: `, length buckets` and `, recorded updates` where
/// they apply.
pub fn workload_tags(bucket: bool, recorded: bool) -> String {
    format!("{}{}", if bucket { ", length buckets" } else { "" }, if recorded { ", recorded updates" } else { "" })
}

/// The chunks of each update of the training benchmarks. Without `bucket`: `batch` consecutive
/// chunks of the `chunks` in file order, wrapping (the batches every recorded figure before
/// length buckets used). With `bucket`: the batches a training run with `train.bucket` makes
/// ([`epoch_order`] of epoch `u / batches per epoch`, seed 1234), short last batch included.
struct BenchBatches {
    batch: usize,
    lens: Vec<usize>,
    bucket: Option<TrainConfig>,
    /// The epoch order last made (epoch, order), so that an update reuses its epoch's.
    order: std::cell::RefCell<(usize, Vec<usize>)>,
}

impl BenchBatches {
    fn new(cfg: &Config, lens: Vec<usize>, bucket: bool) -> Self {
        let tc = TrainConfig { bucket: true, shuffle: true, ..cfg.train.clone() };
        let order = std::cell::RefCell::new((usize::MAX, vec![]));
        Self { batch: cfg.train.batch, lens, bucket: bucket.then_some(tc), order }
    }

    fn ids(&self, u: usize) -> Vec<Option<usize>> {
        let (b, n) = (self.batch, self.lens.len());
        match &self.bucket {
            None => (0..b).map(|i| Some((u * b + i) % n)).collect(),
            Some(tc) => {
                let per_epoch = n.div_ceil(b);
                let mut cached = self.order.borrow_mut();
                if cached.0 != u / per_epoch {
                    *cached = (u / per_epoch, epoch_order(tc, &self.lens, u / per_epoch));
                }
                let (order, pos) = (&cached.1, (u % per_epoch) * b);
                let mut ids: Vec<Option<usize>> = order[pos..(pos + b).min(n)].iter().map(|&i| Some(i)).collect();
                ids.resize(b, None);
                ids
            }
        }
    }

    /// Real frames of the updates `us`, per update.
    fn frames_per_update(&self, us: std::ops::Range<usize>) -> f64 {
        let count = us.len().max(1) as f64;
        let frames: usize = us.flat_map(|u| self.ids(u)).flatten().map(|i| self.lens[i]).sum();
        frames as f64 / count
    }
}

/// Updates before the clock starts: `max(updates / 5, 2)`, or with recorded updates two passes
/// over the `chunks` in batches of `batch`, so that every shape of update is recorded first.
fn warm_up_updates(recorded: bool, chunks: usize, batch: usize, updates: usize) -> usize {
    if recorded {
        2 * chunks.div_ceil(batch)
    } else {
        (updates / 5).max(2)
    }
}

/// Training updates of the paper protocol on JSB Chorales chunks (<= 100 frames), `batch`
/// chunks per update (with `bucket`, batches of similar length as `train.bucket` makes them:
/// [`BenchBatches`]), CD-`k`: 5 repetitions of `updates` updates after a warm-up of
/// `max(updates / 5, 2)` updates. With recorded updates (CUDA, unless `RTRBM_GRAPHS=0`) the
/// warm-up is two passes over the chunks, so that every shape of update is recorded before the
/// clock starts (a training run records each shape once and replays it for the rest of the run).
/// Throughput is updates per second; `frames_per_update` counts the timed updates' real frames.
pub fn train_workload<B: Backend>(
    be: &B,
    kind: ModelKind,
    batch: usize,
    k: usize,
    updates: usize,
    bucket: bool,
) -> Result<BenchResult> {
    let (cfg, chunks) = paper_setup::<B::F>("train_workload", kind, batch, k, updates)?;
    let store = ChunkStore::new(be, &chunks, cfg.model.visible)?;
    let batches = BenchBatches::new(&cfg, (0..store.len()).map(|i| store.frames(i)).collect(), bucket);
    let mut trainer = Trainer::new(be, cfg)?;
    let mut update = 0u64;
    let mut run = |trainer: &mut Trainer<'_, B>, n: usize| -> Result<()> {
        for _ in 0..n {
            trainer.step_store(&store, &batches.ids(update as usize), &[update])?;
            update += 1;
        }
        Ok(())
    };
    let recorded = trainer.records_updates();
    let warm_up = warm_up_updates(recorded, chunks.len(), batch, updates);
    run(&mut trainer, warm_up)?;
    be.synchronize()?;
    let mut times = vec![];
    for _ in 0..5 {
        let t0 = Instant::now();
        run(&mut trainer, updates)?;
        be.synchronize()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let frames = batches.frames_per_update(warm_up..warm_up + 5 * updates);
    let name =
        format!("train {} batch {batch} CD-{k} on {}{}", kind.name(), be.name(), workload_tags(bucket, recorded));
    Ok(BenchResult { recorded, frames_per_update: Some(frames), ..summarise(name, times, updates as f64, "updates") })
}

/// Where the time of one update goes: `updates` paper-protocol updates (as
/// [`train_workload`], with or without length buckets, after a warm-up), timed twice. (1) Unsynchronised: the host time of each
/// `Trainer::step` call (on a GPU: the time to issue its work; when it is close to the
/// synchronised update time, the update is bound by the host or by a blocking copy) and the
/// time per update with one synchronisation at the end. (2) Synchronised after each phase of the
/// step (`Trainer::step_marked`): the mean wall time of each phase, device work included (the
/// synchronisations themselves add a little to each). With recorded updates (CUDA, unless
/// `RTRBM_GRAPHS=0`), (1) replays recordings (warmed up as in [`train_workload`]); (2) never
/// records.
pub fn phase_workload<B: Backend>(
    be: &B,
    kind: ModelKind,
    batch: usize,
    k: usize,
    updates: usize,
    bucket: bool,
) -> Result<PhaseTimes> {
    let (cfg, chunks) = paper_setup::<B::F>("phase_workload", kind, batch, k, updates)?;
    let store = ChunkStore::new(be, &chunks, cfg.model.visible)?;
    let batches = BenchBatches::new(&cfg, (0..store.len()).map(|i| store.frames(i)).collect(), bucket);
    let batch_at = |u: usize| batches.ids(u);
    let mut trainer = Trainer::new(be, cfg)?;
    let recorded = trainer.records_updates();
    for u in 0..warm_up_updates(recorded, chunks.len(), batch, updates) {
        trainer.step_store(&store, &batch_at(u), &[u as u64])?;
    }
    be.synchronize()?;
    // (1) unsynchronised
    let mut host = 0.0;
    let t0 = Instant::now();
    for u in 0..updates {
        let t = Instant::now();
        trainer.step_store(&store, &batch_at(u), &[u as u64])?;
        host += t.elapsed().as_secs_f64();
    }
    be.synchronize()?;
    let update_s = t0.elapsed().as_secs_f64() / updates as f64;
    // (2) synchronised after each phase
    let mut phases: Vec<(&'static str, f64)> = vec![];
    for u in 0..updates {
        be.synchronize()?;
        let mut last = Instant::now();
        trainer.step_marked(Batch::Store(&store, &batch_at(u)), &[u as u64], &mut |name| {
            be.synchronize()?;
            let now = Instant::now();
            let dt = (now - last).as_secs_f64() / updates as f64;
            match phases.iter_mut().find(|p| p.0 == name) {
                Some(p) => p.1 += dt,
                None => phases.push((name, dt)),
            }
            last = now;
            Ok(())
        })?;
    }
    Ok(PhaseTimes {
        workload: format!("{} batch {batch} CD-{k}{}", kind.name(), workload_tags(bucket, recorded)),
        device: be.name(),
        updates,
        update_s,
        host_issue_s: host / updates as f64,
        phases: phases.into_iter().map(|(n, s)| (n.to_string(), s)).collect(),
    })
}

/// What [`phase_workload`] measured, seconds per update.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseTimes {
    pub workload: String,
    pub device: String,
    pub updates: usize,
    /// Wall time per update, synchronised once at the end.
    pub update_s: f64,
    /// Host time of one `Trainer::step` call, unsynchronised.
    pub host_issue_s: f64,
    /// Each phase's wall time per update, synchronised after every phase.
    pub phases: Vec<(String, f64)>,
}

/// Trained-like RBM parameters for AIS timing: V = H = 88, W ~ Normal(0, 0.1^2), bv = -3, bh = -1.
pub fn ais_params<F: Float>(nv: usize, nh: usize, seed: u64) -> (Vec<F>, Vec<F>, Vec<F>) {
    let mut rng = HostRng::new(seed, 0xA1);
    let w = (0..nv * nh).map(|_| F::from_f64(0.1 * rng.normal())).collect();
    (w, vec![F::from_f64(-3.0); nv], vec![F::from_f64(-1.0); nh])
}

/// [`Backend::ais`] for one RBM (V = H = 88, [`ais_params`]) with `chains` runs through a linear
/// schedule of `betas` inverse temperatures: 5 repetitions after one warm-up. Throughput is
/// chain-steps per second, one chain advancing one beta being one chain-step.
pub fn ais_workload<B: Backend>(be: &B, chains: usize, betas: usize) -> Result<BenchResult> {
    if chains == 0 || betas < 2 {
        return Err(Error::msg("ais_workload: needs chains >= 1 and betas >= 2"));
    }
    let (nv, nh) = (88, 88);
    let (w, bv, bh) = ais_params::<B::F>(nv, nh, 17);
    let (w, bv, bh) = (be.upload(&w)?, be.upload(&bv)?, be.upload(&bh)?);
    let schedule: Vec<f64> = (0..betas).map(|i| i as f64 / (betas - 1) as f64).collect();
    let key = RngKey::new(99, 3);
    be.ais(&w, &bv, &bh, 1, nv, nh, chains, &schedule, &[key], 0)?;
    be.synchronize()?;
    let mut times = vec![];
    for rep in 0..5u32 {
        let t0 = Instant::now();
        be.ais(&w, &bv, &bh, 1, nv, nh, chains, &schedule, &[key], 1 + rep * 2 * betas as u32)?;
        be.synchronize()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let name = format!("ais V=H=88 {chains} chains x {betas} betas on {}", be.name());
    Ok(summarise(name, times, (chains * (betas - 1)) as f64, "chain-steps"))
}

/// A sweep of `models` independent LSTM-RTRBM models (88/88, paper protocol, CD-`k`, each its
/// own seed and data order) trained at once: every model makes `updates` updates per repetition.
/// Models are spread over `groups` host threads; each thread trains its models in packs of up to
/// `pack` (a pack is one [`Trainer`] on `make_backend(thread, models in the pack)`, a backend
/// packing that many models: on a GPU one set of launches for the whole pack, the model index in
/// the launch grid). Each thread steps its packs in turn. Throughput is model-updates per second.
pub fn sweep_workload<B: Backend, M: Fn(usize, usize) -> Result<B> + Sync>(
    make_backend: M,
    groups: usize,
    models: usize,
    pack: usize,
    k: usize,
    updates: usize,
) -> Result<BenchResult> {
    if models == 0 || groups == 0 || updates == 0 || pack == 0 {
        return Err(Error::msg("sweep_workload: models, groups, pack and updates must be positive"));
    }
    let data = crate::data::jsb_embedded();
    let groups = groups.min(models);
    let reps = 3usize;
    let per_group: Vec<usize> = (0..groups).map(|g| (g..models).step_by(groups).count()).collect();
    // per thread: the times of its repetitions, and whether its trainers record their updates
    let times = std::thread::scope(|scope| -> Result<Vec<(Vec<f64>, bool)>> {
        let handles: Vec<_> = per_group
            .iter()
            .enumerate()
            .map(|(g, &n)| {
                let (data, make_backend) = (&data, &make_backend);
                scope.spawn(move || -> Result<(Vec<f64>, bool)> {
                    let chunks: Vec<Vec<B::F>> = make_chunks(&data.train, 100);
                    // model i of this thread is model g + i*groups of the sweep
                    let ids: Vec<usize> = (0..n).map(|i| g + i * groups).collect();
                    let backends: Vec<B> = ids.chunks(pack).map(|p| make_backend(g, p.len())).collect::<Result<_>>()?;
                    let mut trainers = vec![];
                    let nv = paper_spec(ModelKind::LstmRtrbm).visible;
                    let stores: Vec<ChunkStore<B>> =
                        backends.iter().map(|be| ChunkStore::new(be, &chunks, nv)).collect::<Result<_>>()?;
                    for (be, p) in backends.iter().zip(ids.chunks(pack)) {
                        let cfgs = p
                            .iter()
                            .map(|&id| {
                                let mut cfg = Config { model: paper_spec(ModelKind::LstmRtrbm), ..Config::default() };
                                cfg.train.cd_schedule = vec![CdStep { from: 0, k }];
                                cfg.train.seed = 1000 + id as u64;
                                cfg
                            })
                            .collect();
                        trainers.push((Trainer::new_packed(be, cfgs)?, p));
                    }
                    let mut times = vec![];
                    for rep in 0..=reps {
                        backends.iter().try_for_each(|b| b.synchronize())?;
                        let t0 = Instant::now();
                        for u in 0..updates {
                            for ((t, p), store) in trainers.iter_mut().zip(&stores) {
                                let batch: Vec<Option<usize>> =
                                    p.iter().map(|&id| Some((u * 7 + id * 13 + rep * 31) % chunks.len())).collect();
                                t.step_store(store, &batch, &vec![(rep * updates + u) as u64; p.len()])?;
                            }
                        }
                        backends.iter().try_for_each(|b| b.synchronize())?;
                        if rep > 0 {
                            times.push(t0.elapsed().as_secs_f64()); // rep 0 is the warm-up
                        }
                    }
                    Ok((times, trainers.iter().all(|(t, _)| t.records_updates())))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| Error::msg("sweep worker panicked"))?).collect()
    })?;
    // the slowest group bounds each repetition
    let rep_times: Vec<f64> = (0..reps).map(|r| times.iter().map(|t| t.0[r]).fold(0.0, f64::max)).collect();
    let recorded = times.iter().all(|t| t.1);
    let tag = if recorded { ", recorded updates" } else { "" };
    let name = format!("sweep of {models} LSTM-RTRBM models in packs of {pack}, CD-{k}, {groups} thread(s){tag}");
    Ok(BenchResult { recorded, ..summarise(name, rep_times, (models * updates) as f64, "model-updates") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, Packed};

    /// The workloads run and report what they did (no timing is asserted).
    #[test]
    fn phase_and_sweep_workloads_run_on_the_cpu() {
        let be = Cpu::<f32>::new(1);
        let p = phase_workload(&be, ModelKind::Rtrbm, 1, 2, 3, false).unwrap();
        let names: Vec<&str> = p.phases.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["load", "forward", "negatives", "backward", "clip", "sgd"]);
        assert!(p.update_s > 0.0 && p.host_issue_s > 0.0 && p.phases.iter().all(|x| x.1 >= 0.0));
        let lone = sweep_workload(|_, _| Ok(Cpu::<f32>::new(1)), 2, 3, 1, 1, 1).unwrap();
        let packed = sweep_workload(|_, p| Packed::new(Cpu::<f32>::new(1), p), 1, 3, 2, 1, 1).unwrap();
        for r in [lone, packed] {
            assert_eq!((r.reps, r.items_per_rep), (3, 3.0), "{}", r.name);
        }
        assert!(sweep_workload(|_, _| Ok(Cpu::<f32>::new(1)), 1, 2, 0, 1, 1).is_err());
    }

    /// The batches of the training benchmarks and the frames they count: file order as before
    /// (JSB: 56.8 frames per chunk, not the 59.3 the table assumed until the count was made
    /// exact), and with buckets an epoch of the trainer's batches, every chunk once.
    #[test]
    fn bench_batches_count_the_real_frames() {
        assert!((jsb_mean_chunk_frames() - 13_807.0 / 243.0).abs() < 1e-9);
        let mut cfg = Config::default();
        cfg.train.batch = 64;
        let lens = jsb_chunk_lens();
        let plain = BenchBatches::new(&cfg, lens.clone(), false);
        assert_eq!(plain.ids(1)[0], Some(64));
        assert_eq!(plain.ids(3)[63], Some((3 * 64 + 63) % 243), "file order, wrapping");
        // 243 updates of 64 chunks in file order are every chunk 64 times
        assert!((plain.frames_per_update(0..243) - 64.0 * 13_807.0 / 243.0).abs() < 1e-6);
        let buckets = BenchBatches::new(&cfg, lens, true);
        for epoch in 0..2 {
            let ids: Vec<usize> = (4 * epoch..4 * epoch + 4).flat_map(|u| buckets.ids(u)).flatten().collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(sorted, (0..243).collect::<Vec<_>>(), "epoch {epoch}: every chunk once");
            assert_eq!(buckets.ids(4 * epoch + 3).iter().filter(|i| i.is_none()).count(), 64 * 4 - 243);
        }
        assert!((buckets.frames_per_update(0..8) - 13_807.0 / 4.0).abs() < 1e-9);
    }
}
