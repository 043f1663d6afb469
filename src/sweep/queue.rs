//! The run queue on disk: workers (threads of one process, processes on several GPUs, or Slurm
//! array tasks on several nodes) share a sweep folder and claim runs atomically.
//!
//! Layout of `<sweep out>/runs/<name>/`:
//! - `claim`: created with `O_EXCL` ([`std::fs::OpenOptions::create_new`]) by the worker that
//!   trains the run; holds its host, pid, worker id and start time (JSON).
//! - `heartbeat`: rewritten every few seconds while the run trains. A claim is *stale* when its
//!   heartbeat (or, lacking one, the claim) is older than the stale timeout, or when its pid is
//!   dead on this host; a stale claim is taken over under `claim.lock` (also `O_EXCL`), so a
//!   killed worker's run is trained again, resumed from its checkpoint.
//! - the run's own files (`config.yaml`, `metrics.jsonl`, checkpoints; see [`crate::train`]).
//! - `done.json` when it finished ([`DoneRecord`]); finished runs are skipped on restart.
//! - `error.txt` when it failed (the worker moves on; the next `sweep run` tries it again).
//!
//! A worker takes runs in sweep order until a pass over the sweep claims nothing, then returns.

use super::{RunSpec, Sweep};
use crate::cli::device::{Device, DeviceChoice};
use crate::config::ValidMetric;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::train::{self, RunOptions};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a finished run reports (`runs/<name>/done.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DoneRecord {
    pub name: String,
    pub index: usize,
    /// The figure runs are ranked by (higher is better): `best_valid`, else `final_valid`.
    pub figure: Option<f64>,
    pub valid_metric: ValidMetric,
    /// Best validation figure seen during training (None when no epoch ended).
    pub best_valid: Option<f64>,
    /// The validation figure of the final model, computed when training never validated.
    pub final_valid: Option<f64>,
    /// The same proxy on the test split with the best model (`--test`), for information only.
    pub test_figure: Option<f64>,
    pub updates: u64,
    pub epochs_done: usize,
    pub stopped_early: bool,
    /// Training wall time (summed over resumptions), seconds.
    pub wall_s: f64,
    pub device: String,
    /// Models in the pack the run was trained in (1: alone).
    #[serde(default = "one")]
    pub pack_size: usize,
    pub worker: String,
    pub finished_unix: u64,
}

fn one() -> usize {
    1
}

/// Who holds a claim (`runs/<name>/claim`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimInfo {
    pub host: String,
    pub pid: u32,
    pub worker: String,
    pub started_unix: u64,
}

/// Where the workers of `sweep run` train.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Devices {
    /// One worker per GPU; the CPU when there is none.
    All,
    /// Runs packed on the CPU, one thread group per run.
    Cpu,
    /// One worker on each of these GPUs.
    Gpus(Vec<usize>),
}

impl std::str::FromStr for Devices {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" | "auto" => Ok(Devices::All),
            "cpu" => Ok(Devices::Cpu),
            _ => s
                .split(',')
                .map(|x| x.trim().trim_start_matches("cuda:").parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Devices::Gpus)
                .map_err(|_| format!("bad --devices `{s}`: expected all, cpu or GPU numbers such as 0,1")),
        }
    }
}

/// Settings of [`run_sweep`].
#[derive(Clone, Debug)]
pub struct QueueOptions {
    pub devices: Devices,
    /// CPU: runs trained at once (default: the number of cores, at most the pending runs).
    /// GPU: runs trained at once on each GPU, each on its own CUDA stream (default 1).
    pub workers: Option<usize>,
    /// CPU: threads per run (default: cores / workers, at least 1).
    pub threads: Option<usize>,
    /// Up to this many fresh runs that can share a pack ([`crate::train::pack_key`]) are claimed
    /// together and trained as one pack of models (on a GPU: the model index is in every launch
    /// grid). 1 = every run alone; 0 = automatic ([`resolve_pack`]: GPU workers split the
    /// pending runs among them, at most [`GPU_AUTO_PACK`] per pack; CPU workers train alone).
    /// Runs resumed from a checkpoint always train alone.
    pub pack: usize,
    /// Run exactly one worker loop (what each Slurm array task does).
    pub single_worker: bool,
    /// A claim whose heartbeat is older than this is stale.
    pub stale_after: Duration,
    /// How often a running worker rewrites its heartbeat.
    pub heartbeat_every: Duration,
    /// Also compute the validation proxy on the test split with the best model.
    pub test_figure: bool,
    /// Print one line per started / finished run.
    pub verbose: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            devices: Devices::All,
            workers: None,
            threads: None,
            pack: 0,
            single_worker: false,
            stale_after: Duration::from_secs(120),
            heartbeat_every: Duration::from_secs(10),
            test_figure: false,
            verbose: true,
        }
    }
}

/// The largest pack that `pack: 0` (automatic) makes on a GPU: where one LSTM-RTRBM 88/88 no
/// longer fills an H100 many times over (docs/PERFORMANCE.md, Step 3), and small enough that a
/// pack's validation and checkpoints stay quick.
pub const GPU_AUTO_PACK: usize = 64;

/// The pack size a worker on `choice` uses: `pack` when it is set (> 0); automatic (0): on a GPU
/// the pending runs shared among the GPU workers, between 1 and [`GPU_AUTO_PACK`] (one pack per
/// GPU when they fit); on the CPU 1, since CPU workers already use every core and a CPU pack is
/// no faster than its runs on threads of their own (docs/PERFORMANCE.md).
pub fn resolve_pack(pack: usize, choice: DeviceChoice, pending: usize, gpu_workers: usize) -> usize {
    match (pack, choice) {
        (p, _) if p > 0 => p,
        (_, DeviceChoice::Cuda(_)) => pending.div_ceil(gpu_workers.max(1)).clamp(1, GPU_AUTO_PACK),
        _ => 1,
    }
}

/// How many packs of at most `pack` runs the runs `runs` make, grouped by
/// [`crate::train::pack_key`] (runs with different keys never share a pack): what `sweep slurm`
/// sizes its array by.
pub fn packs_needed<'a>(runs: impl IntoIterator<Item = &'a super::RunSpec>, pack: usize) -> usize {
    let mut groups: HashMap<String, usize> = HashMap::new();
    for r in runs {
        *groups.entry(train::pack_key(&r.config)).or_default() += 1;
    }
    groups.values().map(|n| n.div_ceil(pack.max(1))).sum()
}

/// What [`run_sweep`] did.
#[derive(Clone, Debug, Default)]
pub struct QueueSummary {
    /// Runs this invocation trained to the end.
    pub trained: Vec<String>,
    /// Runs that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Runs already done before (skipped).
    pub already_done: usize,
    /// Runs of the sweep that are done now.
    pub done_now: usize,
    pub total: usize,
}

/// This machine's host name (for claims).
pub fn hostname() -> String {
    // the kernel's name first: Slurm sets $HOSTNAME to the node name it was given
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether process `pid` is alive on this host (`None` when that cannot be told).
fn pid_alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    match stat {
        None => Some(false),
        // a zombie is dead for our purposes: its state is the field after the `(comm)`
        Some(s) => Some(!s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')).unwrap_or(false)),
    }
}

fn age(path: &Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

/// Whether the claim in run folder `dir` is stale (see the module documentation).
pub fn claim_is_stale(dir: &Path, stale_after: Duration) -> bool {
    let claim = dir.join("claim");
    let info: Option<ClaimInfo> = std::fs::read_to_string(&claim).ok().and_then(|t| serde_json::from_str(&t).ok());
    if let Some(i) = &info {
        if i.host == hostname() && i.pid != std::process::id() && pid_alive(i.pid) == Some(false) {
            return true;
        }
    }
    let beat = age(&dir.join("heartbeat")).or_else(|| age(&claim));
    match beat {
        Some(a) => a > stale_after,
        None => !claim.exists(),
    }
}

/// Tries to claim the run in `dir` for `worker`; true when this worker now holds it.
pub fn try_claim(dir: &Path, worker: &str, stale_after: Duration) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if dir.join("done.json").exists() {
        return Ok(false);
    }
    let claim = dir.join("claim");
    if create_claim(dir, worker)? {
        return Ok(true);
    }
    if !claim_is_stale(dir, stale_after) {
        return Ok(false);
    }
    // take the stale claim over under a lock, so that two workers cannot both take it
    let lock = dir.join("claim.lock");
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if age(&lock).is_some_and(|a| a > Duration::from_secs(60)) {
                let _ = std::fs::remove_file(&lock); // left by a worker killed while taking over
            }
            return Ok(false);
        }
        Err(e) => return Err(Error::io(&lock, e)),
    }
    let result = (|| {
        if !claim_is_stale(dir, stale_after) || dir.join("done.json").exists() {
            return Ok(false);
        }
        let old = std::fs::read_to_string(&claim).unwrap_or_default();
        let _ = std::fs::remove_file(&claim);
        let _ = std::fs::remove_file(dir.join("heartbeat"));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("takeovers.log"))
            .map_err(|e| Error::io(dir.join("takeovers.log"), e))?;
        let _ = writeln!(log, "{} {worker} took over stale claim {}", now_unix(), old.trim());
        create_claim(dir, worker)
    })();
    let _ = std::fs::remove_file(&lock);
    result
}

fn create_claim(dir: &Path, worker: &str) -> Result<bool> {
    let claim = dir.join("claim");
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&claim) {
        Ok(mut f) => {
            let info = ClaimInfo {
                host: hostname(),
                pid: std::process::id(),
                worker: worker.into(),
                started_unix: now_unix(),
            };
            let text = serde_json::to_string(&info).unwrap_or_default();
            f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io(&claim, e))?;
            beat(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(&claim, e)),
    }
}

fn beat(dir: &Path) -> Result<()> {
    let p = dir.join("heartbeat");
    std::fs::write(&p, format!("{}\n", now_unix())).map_err(|e| Error::io(&p, e))
}

/// Gives a claim up (after `done.json` or `error.txt` was written).
fn release(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("heartbeat"));
    let _ = std::fs::remove_file(dir.join("claim"));
}

/// Datasets by `data.path`, each read once per process.
#[derive(Default)]
pub struct DataCache(Mutex<HashMap<String, Arc<Dataset>>>);

impl DataCache {
    pub fn get(&self, path: &str) -> Result<Arc<Dataset>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = m.get(path) {
            return Ok(d.clone());
        }
        let d = Arc::new(crate::data::open(path)?);
        m.insert(path.to_string(), d.clone());
        Ok(d)
    }
}

/// Writes each run's folder and its `run.json` (index, name, swept values) and the sweep's
/// `plan.md`; idempotent.
pub fn prepare(sweep: &Sweep) -> Result<()> {
    for r in &sweep.runs {
        let dir = sweep.run_dir(r);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let params: serde_json::Map<String, serde_json::Value> = r
            .params
            .iter()
            .map(|(f, v)| (f.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null)))
            .collect();
        let info = serde_json::json!({"index": r.index, "name": r.name, "params": params});
        let p = dir.join("run.json");
        let text = serde_json::to_string_pretty(&info).unwrap_or_default();
        if std::fs::read_to_string(&p).ok().as_deref() != Some(text.as_str()) {
            crate::error::write_atomic(&p, text.as_bytes())?;
        }
    }
    let plan = format!("# sweep {}: {} runs\n\n{}", sweep.name, sweep.runs.len(), sweep.plan_table());
    let p = sweep.out.join("plan.md");
    if std::fs::read_to_string(&p).ok().as_deref() != Some(plan.as_str()) {
        crate::error::write_atomic(&p, plan.as_bytes())?;
    }
    Ok(())
}

/// Reads `done.json` of a run folder.
pub fn read_done(dir: &Path) -> Option<DoneRecord> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("done.json")).ok()?).ok()
}

/// One worker loop on `device`: claims and trains runs (alone, or packs of up to `opts.pack`)
/// until a pass claims nothing.
pub fn worker_loop(
    sweep: &Sweep,
    device: &Device,
    worker: &str,
    opts: &QueueOptions,
    cache: &DataCache,
    summary: &Mutex<QueueSummary>,
) {
    let mut attempted: HashSet<usize> = HashSet::new();
    loop {
        let mut claimed_any = false;
        for (i, run) in sweep.runs.iter().enumerate() {
            if attempted.contains(&run.index) || !claim(sweep, run, worker, opts, &mut attempted) {
                continue;
            }
            claimed_any = true;
            let mut group = vec![run];
            if opts.pack > 1 && !resumable(&sweep.run_dir(run)) {
                let key = train::pack_key(&run.config);
                for other in &sweep.runs[i + 1..] {
                    if group.len() == opts.pack {
                        break;
                    }
                    if attempted.contains(&other.index)
                        || resumable(&sweep.run_dir(other))
                        || train::pack_key(&other.config) != key
                    {
                        continue;
                    }
                    if claim(sweep, other, worker, opts, &mut attempted) {
                        group.push(other);
                    }
                }
            }
            let dirs: Vec<PathBuf> = group.iter().map(|r| sweep.run_dir(r)).collect();
            if opts.verbose {
                let names: Vec<&str> = group.iter().map(|r| r.name.as_str()).collect();
                let how = if group.len() > 1 { format!("a pack of {}", group.len()) } else { "alone".into() };
                eprintln!("{worker}: training {} ({how})", names.join(", "));
            }
            let started = Instant::now();
            let results = with_heartbeat(&dirs, opts.heartbeat_every, || {
                if group.len() == 1 {
                    vec![train_one(sweep, run, device, worker, opts, cache)]
                } else {
                    train_pack(sweep, &group, device, worker, opts, cache)
                }
            });
            let mut s = summary.lock().unwrap_or_else(|p| p.into_inner());
            for ((run, dir), result) in group.iter().zip(&dirs).zip(results) {
                match result {
                    Ok(rec) => {
                        if opts.verbose {
                            let fig = rec.figure.map(|f| format!("{f:.4}")).unwrap_or("-".into());
                            eprintln!(
                                "{worker}: done {} ({} updates, figure {fig}, {:.1} s)",
                                run.name,
                                rec.updates,
                                started.elapsed().as_secs_f64()
                            );
                        }
                        s.trained.push(run.name.clone());
                    }
                    Err(e) => {
                        let msg = format!("{e}");
                        eprintln!("{worker}: run {} failed: {msg}", run.name);
                        let _ = std::fs::write(dir.join("error.txt"), format!("{msg}\n"));
                        s.failed.push((run.name.clone(), msg));
                    }
                }
                release(dir);
            }
        }
        if !claimed_any {
            return;
        }
    }
}

/// Tries to claim `run` for this worker; marks it attempted when claimed (or unclaimable).
fn claim(sweep: &Sweep, run: &RunSpec, worker: &str, opts: &QueueOptions, attempted: &mut HashSet<usize>) -> bool {
    let dir = sweep.run_dir(run);
    match try_claim(&dir, worker, opts.stale_after) {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            eprintln!("{worker}: cannot claim {}: {e}", run.name);
            attempted.insert(run.index);
            return false;
        }
    }
    // a run can finish between our check and our claim
    if dir.join("done.json").exists() {
        release(&dir);
        return false;
    }
    attempted.insert(run.index);
    let _ = std::fs::remove_file(dir.join("error.txt"));
    true
}

/// Whether a run folder holds a checkpoint to resume from.
fn resumable(dir: &Path) -> bool {
    dir.join("checkpoint.safetensors").exists() && dir.join("config.yaml").exists()
}

/// Runs `f` while a thread rewrites `heartbeat` in each of `dirs` every `every`.
fn with_heartbeat<T>(dirs: &[PathBuf], every: Duration, f: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(every));
                if last.elapsed() >= every && !stop.load(Ordering::Relaxed) {
                    dirs.iter().for_each(|d| {
                        let _ = beat(d);
                    });
                    last = Instant::now();
                }
            }
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        out
    })
}

/// Trains one claimed run (resuming from its checkpoint when there is one) and writes `done.json`.
fn train_one(
    sweep: &Sweep,
    run: &RunSpec,
    device: &Device,
    worker: &str,
    opts: &QueueOptions,
    cache: &DataCache,
) -> Result<DoneRecord> {
    let dir = sweep.run_dir(run);
    let cfg = run.config.clone();
    let data = cache.get(&cfg.data.path)?;
    let resume = resumable(&dir);
    let ropts = RunOptions { out_dir: dir.clone(), resume, progress: false, verbose: false };
    crate::with_device!(device, |be| {
        let summary = match train::run(be, cfg.clone(), &data, &ropts) {
            Err(e) if resume => {
                eprintln!("{worker}: cannot resume {} ({e}); starting it again", run.name);
                train::run(be, cfg.clone(), &data, &RunOptions { resume: false, ..ropts.clone() })?
            }
            other => other?,
        };
        finish_run(be, sweep, run, 1, summary, &data, worker, opts)
    })
}

/// Trains claimed fresh runs that share a pack key as one pack on `device` and writes each
/// one's `done.json`. The CPU packs with [`crate::backend::Packed`]; a GPU packs natively.
fn train_pack(
    sweep: &Sweep,
    runs: &[&RunSpec],
    device: &Device,
    worker: &str,
    opts: &QueueOptions,
    cache: &DataCache,
) -> Vec<Result<DoneRecord>> {
    let go = || -> Result<Vec<Result<DoneRecord>>> {
        let cfgs: Vec<_> = runs.iter().map(|r| r.config.clone()).collect();
        let data = cache.get(&cfgs[0].data.path)?;
        let ropts: Vec<RunOptions> = runs
            .iter()
            .map(|r| RunOptions { out_dir: sweep.run_dir(r), resume: false, progress: false, verbose: false })
            .collect();
        let p = runs.len();
        let results = crate::with_device!(device, |lone| {
            let packed = lone.pack_on(p)?;
            let results = train::run_packed(&packed, cfgs, &data, &ropts)?;
            runs.iter()
                .zip(results)
                .map(|(run, r)| finish_run(lone, sweep, run, p, r?, &data, worker, opts))
                .collect::<Vec<_>>()
        });
        Ok(results)
    };
    go().unwrap_or_else(|e| runs.iter().map(|_| Err(Error::msg(format!("pack failed: {e}")))).collect())
}

/// How a device trains P models as one pack.
trait PackOn: crate::backend::Backend + Sized {
    type Pack: crate::backend::Backend<F = Self::F>;
    /// P models packed on this device (same stream or threads as `self`).
    fn pack_on(&self, p: usize) -> Result<Self::Pack>;
}

/// The CPU packs with [`crate::backend::Packed`]: one lone operation per model, the models
/// spread over the worker's threads.
impl PackOn for crate::backend::Cpu<f32> {
    type Pack = crate::backend::Packed<crate::backend::Cpu<f32>>;
    fn pack_on(&self, p: usize) -> Result<Self::Pack> {
        crate::backend::Packed::with_threads(crate::backend::Cpu::new(1), p, self.threads())
    }
}

/// A GPU packs natively: the same stream, the model index in every launch grid.
#[cfg(feature = "cuda")]
impl PackOn for crate::backend::cuda::Cuda {
    type Pack = crate::backend::cuda::Cuda;
    fn pack_on(&self, p: usize) -> Result<Self::Pack> {
        self.packed(p)
    }
}

/// Writes `done.json` of a trained run, computing the validation figure of the final model when
/// training never validated and, with `--test`, the test figure of the best model.
#[allow(clippy::too_many_arguments)]
fn finish_run<B: crate::backend::Backend>(
    be: &B,
    sweep: &Sweep,
    run: &RunSpec,
    pack_size: usize,
    summary: train::RunSummary,
    data: &Dataset,
    worker: &str,
    opts: &QueueOptions,
) -> Result<DoneRecord> {
    let dir = sweep.run_dir(run);
    let cfg = &run.config;
    let mut final_valid = None;
    let mut test_figure = None;
    if cfg.train.valid_metric != ValidMetric::None && (summary.best_valid.is_none() || opts.test_figure) {
        let ck = crate::checkpoint::load(&dir.join("best.safetensors"))?;
        let model = crate::model::Model::from_checkpoint(be, &ck)?;
        if summary.best_valid.is_none() {
            final_valid = train::validate(be, &model, cfg, &data.valid)?;
        }
        if opts.test_figure {
            test_figure = train::validate(be, &model, cfg, &data.test)?;
        }
    }
    let rec = DoneRecord {
        name: run.name.clone(),
        index: run.index,
        figure: summary.best_valid.or(final_valid),
        valid_metric: cfg.train.valid_metric,
        best_valid: summary.best_valid,
        final_valid,
        test_figure,
        updates: summary.updates,
        epochs_done: summary.epochs_done,
        stopped_early: summary.stopped_early,
        wall_s: summary.wall_s,
        device: be.name(),
        pack_size,
        worker: worker.to_string(),
        finished_unix: now_unix(),
    };
    let text = serde_json::to_string_pretty(&rec).map_err(|e| Error::msg(e.to_string()))?;
    crate::error::write_atomic(&dir.join("done.json"), text.as_bytes())?;
    Ok(rec)
}

/// The workers `sweep run` starts: `(device choice, threads per run)` each.
pub fn plan_workers(opts: &QueueOptions, pending: usize) -> Vec<(DeviceChoice, usize)> {
    let cores = crate::cli::device::default_threads();
    let gpus: Vec<usize> = match &opts.devices {
        Devices::Cpu => vec![],
        Devices::Gpus(g) => g.clone(),
        Devices::All => (0..64).take_while(|&i| Device::open(DeviceChoice::Cuda(i), 1).is_ok()).collect(),
    };
    if !gpus.is_empty() {
        let per_gpu = opts.workers.unwrap_or(1).max(1);
        let all: Vec<_> = gpus
            .into_iter()
            .flat_map(|g| std::iter::repeat_n((DeviceChoice::Cuda(g), opts.threads.unwrap_or(1)), per_gpu))
            .collect();
        let n = if opts.single_worker { 1 } else { all.len() };
        return all.into_iter().take(n).collect();
    }
    let workers = if opts.single_worker { 1 } else { opts.workers.unwrap_or(cores.min(pending.max(1))).max(1) };
    let threads = opts.threads.unwrap_or((cores / workers).max(1));
    vec![(DeviceChoice::Cpu, threads); workers]
}

/// One opened backend per GPU that workers use: each worker gets its own CUDA stream on it
/// ([`crate::backend::cuda::Cuda::fork`]), so several runs share a GPU and overlap there.
struct GpuBases {
    #[cfg(feature = "cuda")]
    bases: HashMap<usize, Result<crate::backend::cuda::Cuda>>,
}

impl GpuBases {
    fn open(workers: &[(DeviceChoice, usize)]) -> Self {
        #[cfg(feature = "cuda")]
        {
            let mut bases = HashMap::new();
            for (choice, _) in workers {
                if let DeviceChoice::Cuda(g) = choice {
                    bases.entry(*g).or_insert_with(|| crate::backend::cuda::Cuda::new(*g));
                }
            }
            GpuBases { bases }
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = workers;
            GpuBases {}
        }
    }

    /// The device of one worker: a fresh stream on its GPU, or the CPU.
    fn device(&self, choice: DeviceChoice, threads: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        if let DeviceChoice::Cuda(g) = choice {
            return match self.bases.get(&g) {
                Some(Ok(base)) => base.fork().map(Device::Cuda),
                Some(Err(e)) => Err(Error::Cuda(format!("GPU {g}: {e}"))),
                None => Device::open(choice, threads),
            };
        }
        Device::open(choice, threads)
    }
}

/// `rtrbm sweep run`: prepares the folder and trains every pending run with the planned workers.
pub fn run_sweep(sweep: &Sweep, opts: &QueueOptions) -> Result<QueueSummary> {
    prepare(sweep)?;
    let done_before = sweep.runs.iter().filter(|r| sweep.run_dir(r).join("done.json").exists()).count();
    let pending = sweep.runs.len() - done_before;
    let summary = Mutex::new(QueueSummary { already_done: done_before, total: sweep.runs.len(), ..Default::default() });
    if pending > 0 {
        let workers = plan_workers(opts, pending);
        let gpu_workers = workers.iter().filter(|(c, _)| matches!(c, DeviceChoice::Cuda(_))).count();
        if opts.verbose {
            let (d, t) = workers[0];
            let pack = resolve_pack(opts.pack, d, pending, gpu_workers);
            eprintln!(
                "sweep {}: {pending} of {} runs to train, {} worker{} ({}, {t} thread{} per run, packs of up to {pack}) -> {}",
                sweep.name,
                sweep.runs.len(),
                workers.len(),
                if workers.len() == 1 { "" } else { "s" },
                match d {
                    DeviceChoice::Cpu => "cpu".to_string(),
                    DeviceChoice::Cuda(_) => "one CUDA stream each, on the GPUs".to_string(),
                    DeviceChoice::Auto => "auto".to_string(),
                },
                if t == 1 { "" } else { "s" },
                sweep.out.display()
            );
        }
        let cache = DataCache::default();
        let host = hostname();
        let pid = std::process::id();
        let errors: Mutex<Vec<String>> = Mutex::new(vec![]);
        let gpus = GpuBases::open(&workers);
        std::thread::scope(|s| {
            for (i, (choice, threads)) in workers.iter().enumerate() {
                let (cache, summary, errors, host, gpus) = (&cache, &summary, &errors, &host, &gpus);
                let wopts =
                    QueueOptions { pack: resolve_pack(opts.pack, *choice, pending, gpu_workers), ..opts.clone() };
                s.spawn(move || {
                    let worker = format!("{host}:{pid}:w{i}");
                    match gpus.device(*choice, *threads) {
                        Ok(dev) => worker_loop(sweep, &dev, &worker, &wopts, cache, summary),
                        Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{worker}: {e}")),
                    }
                });
            }
        });
        let errors = errors.into_inner().unwrap_or_default();
        if !errors.is_empty() {
            return Err(Error::msg(format!("cannot open a device: {}", errors.join("; "))));
        }
    }
    let mut s = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    s.done_now = sweep.runs.iter().filter(|r| sweep.run_dir(r).join("done.json").exists()).count();
    Ok(s)
}

/// The status of a run folder: `done`, `failed`, `running`, `stale` or `pending`.
pub fn run_status(dir: &Path, stale_after: Duration) -> &'static str {
    if dir.join("done.json").exists() {
        "done"
    } else if dir.join("claim").exists() {
        if claim_is_stale(dir, stale_after) {
            "stale"
        } else {
            "running"
        }
    } else if dir.join("error.txt").exists() {
        "failed"
    } else {
        "pending"
    }
}

/// Paths of a sweep folder.
pub fn runs_dir(sweep: &Sweep) -> PathBuf {
    sweep.out.join("runs")
}
