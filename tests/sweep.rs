//! Sweeps: expansion and its errors, the on-disk queue (packed runs equal lone runs bit for bit,
//! stale claims are taken over and resumed, live ones are left alone), a CI-sized sweep of 32
//! tiny runs from one call, the report, and the Slurm script.

use rtrbm::backend::Cpu;
use rtrbm::checkpoint;
use rtrbm::config::Config;
use rtrbm::data::jsb_embedded;
use rtrbm::sweep::queue::{self, Devices, QueueOptions};
use rtrbm::sweep::report::{self, SlurmOptions};
use rtrbm::sweep::Sweep;
use rtrbm::train::{self, RunOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny.yaml");

/// A small JSB subset as a JSON file (so epochs end and validation runs in a few updates).
fn small_data(dir: &Path) -> PathBuf {
    let mut d = jsb_embedded();
    d.train.truncate(3);
    d.valid.truncate(2);
    d.test.truncate(2);
    let p = dir.join("small.json");
    rtrbm::data::json::write(&p, &d).unwrap();
    p
}

/// Writes a sweep file into `dir` and loads it.
fn sweep_in(dir: &Path, body: &str) -> Sweep {
    let data = small_data(dir);
    let text = format!(
        "name: t\nout: out\nbase: {TINY}\nconfig:\n  data: {{path: {}}}\n  train: {{max_updates: 12, epochs: 3, valid_max_frames: 40}}\n{body}",
        data.display()
    );
    let f = dir.join("sweep.yaml");
    std::fs::write(&f, text).unwrap();
    Sweep::load(&f).unwrap()
}

fn cpu_opts(workers: usize, threads: usize) -> QueueOptions {
    QueueOptions {
        devices: Devices::Cpu,
        workers: Some(workers),
        threads: Some(threads),
        verbose: false,
        heartbeat_every: Duration::from_millis(200),
        ..Default::default()
    }
}

fn params_of(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let ck = checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    let mut all = ck.params;
    all.extend(ck.extra);
    all
}

#[test]
fn expansion_is_deterministic_with_stable_names() {
    let dir = tempfile::tempdir().unwrap();
    let body =
        "grid:\n  train.lr: [0.01, 0.03]\n  model.hidden: [8, 16]\nrandom:\n  count: 3\n  seed: 5\n  fields:\n    \
                train.momentum: {uniform: [0.5, 0.95]}\n    train.weight_decay: {log_uniform: [1.0e-6, 1.0e-3]}\n    \
                model.recurrent: {choice: [4, 8]}\n    train.batch: {int_uniform: [1, 3]}\n";
    let a = sweep_in(dir.path(), body);
    let b = sweep_in(dir.path(), body);
    assert_eq!(a.runs.len(), 2 * 2 * 3);
    assert_eq!(
        a.fields,
        ["model.hidden", "train.lr", "model.recurrent", "train.batch", "train.momentum", "train.weight_decay"]
    );
    for (x, y) in a.runs.iter().zip(&b.runs) {
        assert_eq!((&x.name, &x.config), (&y.name, &y.config));
    }
    // grid in sorted-field order, the last field fastest, each point crossed with the draws
    assert!(a.runs[0].name.starts_with("r0000-hidden8-lr0.01-"), "{}", a.runs[0].name);
    assert!(a.runs[3].name.starts_with("r0003-hidden8-lr0.03-"), "{}", a.runs[3].name);
    assert!(a.runs[6].name.starts_with("r0006-hidden16-lr0.01-"), "{}", a.runs[6].name);
    assert_eq!(a.runs[7].config.model.hidden, 16);
    assert_eq!(a.runs[7].config.train.lr, 0.01);
    // the same draws for every grid point
    assert_eq!(a.runs[1].config.train.momentum, a.runs[4].config.train.momentum);
    assert_ne!(a.runs[0].config.train.momentum, a.runs[1].config.train.momentum);
    for r in &a.runs {
        let t = &r.config.train;
        assert!((0.5..=0.95).contains(&t.momentum) && (1e-6..=1e-3).contains(&t.weight_decay));
        assert!([4, 8].contains(&r.config.model.recurrent) && (1..=3).contains(&t.batch));
        assert_eq!(t.max_updates, 12, "inline overrides apply to every run");
        assert!(Path::new(&r.config.data.path).is_absolute());
    }
    let names: std::collections::HashSet<_> = a.runs.iter().map(|r| &r.name).collect();
    assert_eq!(names.len(), a.runs.len());
    assert!(a.plan_table().lines().count() == a.runs.len() + 2);
}

#[test]
fn bad_sweeps_are_reported_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    let err = |body: &str| {
        std::fs::write(&f, body).unwrap();
        Sweep::load(&f).unwrap_err().to_string()
    };
    let e = err(&format!("base: {TINY}\ngrid:\n  train.lrr: [1]\n"));
    assert!(e.contains("bad.yaml") && e.contains("grid.train.lrr") && e.contains("lrr"), "{e}");
    let e = err(&format!("base: {TINY}\ngrid:\n  train.lr: [0.01, -1]\n"));
    assert!(e.contains("train.lr") && e.contains("r0001"), "{e}");
    let e = err(&format!("base: {TINY}\ngrid:\n  model.hidden: [abc]\n"));
    assert!(e.contains("model.hidden"), "{e}");
    let e = err(&format!("base: {TINY}\ngrid:\n  train: [1]\n"));
    assert!(e.contains("grid.train") && e.contains("section"), "{e}");
    let e = err(&format!("base: {TINY}\ngird:\n  train.lr: [1]\n"));
    assert!(e.contains("gird"), "{e}");
    let e = err(&format!("base: {TINY}\nrandom: {{count: 2, fields: {{train.lr: {{log_uniform: [0, 1]}}}}}}\n"));
    assert!(e.contains("random.fields.train.lr") && e.contains("log_uniform"), "{e}");
    let e = err(&format!("base: {TINY}\nrandom: {{count: 2, fields: {{train.lr: {{gauss: [0, 1]}}}}}}\n"));
    assert!(e.contains("gauss"), "{e}");
    let e = err("base: nowhere.yaml\n");
    assert!(e.contains("base") && e.contains("nowhere.yaml"), "{e}");
    let e = err(&format!("base: {TINY}\nconfig:\n  train: {{lr: 0.1, momentun: 0.5}}\n"));
    assert!(e.contains("config.train.momentun"), "{e}");
    let e = err(&format!("base: {TINY}\ngrid:\n  train.lr: []\n"));
    assert!(e.contains("grid.train.lr") && e.contains("at least one"), "{e}");
}

#[test]
fn runs_on_worker_threads_and_in_packs_equal_lone_runs_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep_in(dir.path(), "grid:\n  train.seed: [1, 2, 3, 4]\n  model.kind: [lstm_rtrbm, rnn_rbm]\n");
    assert_eq!(sweep.runs.len(), 8);
    // (a) alone, one run on its own backend with 2 threads
    let lone = dir.path().join("lone");
    for idx in [2usize, 5] {
        let run = &sweep.runs[idx];
        let out = lone.join(&run.name);
        let data = rtrbm::data::open(&run.config.data.path).unwrap();
        let opts = RunOptions { out_dir: out.clone(), resume: false, progress: false, verbose: false };
        train::run(&Cpu::<f32>::new(2), run.config.clone(), &data, &opts).unwrap();
    }
    // (b) inside the sweep, 4 runs at once, one thread each
    let s = queue::run_sweep(&sweep, &cpu_opts(4, 1)).unwrap();
    assert_eq!((s.trained.len(), s.done_now, s.failed.len()), (8, 8, 0), "{s:?}");
    for idx in [2usize, 5] {
        let run = &sweep.runs[idx];
        assert_eq!(params_of(&lone.join(&run.name)), params_of(&sweep.run_dir(run)), "run {}", run.name);
    }
    // finished runs are skipped on restart
    let again = queue::run_sweep(&sweep, &cpu_opts(2, 1)).unwrap();
    assert_eq!((again.trained.len(), again.already_done), (0, 8));
    // (c) the same sweep in packs of 4 models (one pack per model kind)
    let packed = sweep_in(
        &dir.path().join("packed"),
        "grid:\n  train.seed: [1, 2, 3, 4]\n  model.kind: [lstm_rtrbm, rnn_rbm]\n",
    );
    let s = queue::run_sweep(&packed, &QueueOptions { pack: 4, ..cpu_opts(1, 1) }).unwrap();
    assert_eq!((s.done_now, s.failed.len()), (8, 0), "{s:?}");
    for (run, prun) in sweep.runs.iter().zip(&packed.runs) {
        assert_eq!(queue::read_done(&packed.run_dir(prun)).unwrap().pack_size, 4, "{}", prun.name);
        assert_eq!(params_of(&sweep.run_dir(run)), params_of(&packed.run_dir(prun)), "run {}", run.name);
    }
}

#[test]
fn stale_claims_are_taken_over_and_resumed_live_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep_in(dir.path(), "grid:\n  train.lr: [0.01, 0.02, 0.03]\n");
    queue::prepare(&sweep).unwrap();
    // run 0: a worker was killed after 5 updates; its pid is dead on this host
    let r0 = &sweep.runs[0];
    let d0 = sweep.run_dir(r0);
    let data = rtrbm::data::open(&r0.config.data.path).unwrap();
    let mut part = r0.config.clone();
    part.train.max_updates = 5;
    let opts = |out: &Path, resume| RunOptions { out_dir: out.to_path_buf(), resume, progress: false, verbose: false };
    train::run(&Cpu::<f32>::new(1), part, &data, &opts(&d0, false)).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let claim = serde_json::json!({"host": queue::hostname(), "pid": dead, "worker": "killed", "started_unix": 0});
    std::fs::write(d0.join("claim"), claim.to_string()).unwrap();
    std::fs::write(d0.join("heartbeat"), "0").unwrap();
    assert!(queue::claim_is_stale(&d0, Duration::from_secs(3600)));
    // run 1: claimed by a live worker on another host with a fresh heartbeat: left alone
    let d1 = sweep.run_dir(&sweep.runs[1]);
    let live = serde_json::json!({"host": "elsewhere", "pid": 1, "worker": "live", "started_unix": 0});
    std::fs::write(d1.join("claim"), live.to_string()).unwrap();
    std::fs::write(d1.join("heartbeat"), "0").unwrap();
    assert!(!queue::claim_is_stale(&d1, Duration::from_secs(3600)));
    let s =
        queue::run_sweep(&sweep, &QueueOptions { stale_after: Duration::from_secs(3600), ..cpu_opts(2, 1) }).unwrap();
    assert_eq!(s.trained.len(), 2, "{s:?}");
    assert!(d0.join("done.json").exists() && !d0.join("claim").exists());
    assert!(std::fs::read_to_string(d0.join("takeovers.log")).unwrap().contains("killed"));
    assert!(!d1.join("done.json").exists(), "a live claim must not be taken");
    assert_eq!(queue::run_status(&d1, Duration::from_secs(3600)), "running");
    // the resumed run equals an uninterrupted one
    let whole = dir.path().join("whole");
    train::run(&Cpu::<f32>::new(1), r0.config.clone(), &data, &opts(&whole, false)).unwrap();
    assert_eq!(params_of(&whole), params_of(&d0));
    // a heartbeat older than the timeout makes the live-looking claim stale
    std::thread::sleep(Duration::from_millis(1100));
    assert!(queue::claim_is_stale(&d1, Duration::from_secs(1)));
    let s = queue::run_sweep(&sweep, &QueueOptions { stale_after: Duration::from_secs(1), ..cpu_opts(2, 1) }).unwrap();
    assert_eq!((s.trained.len(), s.done_now), (1, 3));
}

#[test]
fn ci_sweep_of_32_tiny_runs_and_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep_in(
        dir.path(),
        "grid:\n  train.lr: [0.003, 0.01, 0.03, 0.1]\n  model.hidden: [4, 8]\n  train.seed: [1, 2, 3, 4]\n",
    );
    assert_eq!(sweep.runs.len(), 32);
    // one call, the default devices (the CPU here: one worker per core), packs of up to 8 models
    // (2 shapes; the workers claim concurrently, so a pack may hold fewer)
    let t0 = Instant::now();
    let s = queue::run_sweep(
        &sweep,
        &QueueOptions { devices: Devices::All, workers: None, threads: None, pack: 8, ..cpu_opts(1, 1) },
    )
    .unwrap();
    assert_eq!((s.done_now, s.failed.len()), (32, 0), "{s:?}");
    eprintln!("32 tiny runs in {:.2} s", t0.elapsed().as_secs_f64());
    let mut by_size = std::collections::BTreeMap::new();
    for run in &sweep.runs {
        *by_size.entry(queue::read_done(&sweep.run_dir(run)).unwrap().pack_size).or_insert(0usize) += 1;
    }
    // every run was trained in a pack of 1..=8, and s runs share each pack of size s
    assert!(by_size.iter().all(|(&size, &n)| (1..=8).contains(&size) && n % size == 0), "{by_size:?}");
    let r = report::report(&sweep).unwrap();
    assert_eq!(r.rows.len(), 32);
    assert!(r.rows.iter().all(|x| x.status == "done" && x.done.as_ref().and_then(|d| d.figure).is_some()));
    let figs: Vec<f64> = r.rows.iter().map(|x| x.done.as_ref().unwrap().figure.unwrap()).collect();
    assert!(figs.windows(2).all(|w| w[0] >= w[1]), "sorted best first: {figs:?}");
    let md = std::fs::read_to_string(sweep.out.join("report.md")).unwrap();
    assert_eq!(md.lines().filter(|l| l.contains("| done |")).count(), 32);
    let csv = std::fs::read_to_string(sweep.out.join("report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 33);
    // best.yaml is the best run's config, loadable as is
    let best = Config::load(&sweep.out.join("best.yaml")).unwrap();
    let best_run = sweep.runs.iter().find(|x| Some(&x.name) == r.best.as_ref()).unwrap();
    assert_eq!(best, best_run.config);
    for f in ["train.lr", "model.hidden", "train.seed"] {
        let png = sweep.out.join(format!("valid_vs_{f}.png"));
        assert!(std::fs::metadata(&png).map(|m| m.len() > 1000).unwrap_or(false), "{}", png.display());
    }
}

#[test]
fn slurm_script_runs_one_worker_per_task_on_the_shared_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep_in(dir.path(), "grid:\n  train.lr: [0.01, 0.02, 0.03, 0.04, 0.05]\n");
    let opts = SlurmOptions {
        partition: Some("gpu".into()),
        gpus_per_task: Some(1),
        time: Some("01:00:00".into()),
        array_parallel: Some(2),
        binary: Some(PathBuf::from("/opt/rtrbm")),
        pack: Some(2),
        ..Default::default()
    };
    let s = report::slurm_script(&sweep, &opts).unwrap();
    assert!(s.starts_with("#!/bin/bash\n"));
    for want in [
        "#SBATCH --array=0-2%2", // 5 runs in packs of 2: one task per pack
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --time=01:00:00",
        "--worker --devices all --pack 2",
    ] {
        assert!(s.contains(want), "missing `{want}` in\n{s}");
    }
    assert!(s.contains(&format!("exec /opt/rtrbm sweep run {} --worker", sweep.file.display())), "{s}");
    assert!(sweep.file.is_absolute() && sweep.out.is_absolute());
    // no --pack: a GPU task packs automatically (all 5 fit one pack), a CPU task trains alone
    let gpu = report::slurm_script(&sweep, &SlurmOptions { pack: None, array_parallel: None, ..opts.clone() }).unwrap();
    assert!(gpu.contains("#SBATCH --array=0-0\n") && !gpu.contains("--pack"), "{gpu}");
    let cpu = SlurmOptions { gpus_per_task: None, pack: None, array_parallel: None, ..opts.clone() };
    let cpu = report::slurm_script(&sweep, &cpu).unwrap();
    assert!(cpu.contains("#SBATCH --array=0-4\n") && !cpu.contains("--pack"), "{cpu}");
}

#[test]
fn automatic_pack_sizes() {
    use rtrbm::cli::device::DeviceChoice;
    use rtrbm::sweep::queue::{packs_needed, resolve_pack, GPU_AUTO_PACK};
    // an explicit pack wins everywhere
    assert_eq!(resolve_pack(5, DeviceChoice::Cpu, 100, 0), 5);
    assert_eq!(resolve_pack(5, DeviceChoice::Cuda(0), 100, 2), 5);
    // automatic: CPU workers train alone; GPU workers share the pending runs, 1..=GPU_AUTO_PACK
    assert_eq!(resolve_pack(0, DeviceChoice::Cpu, 100, 0), 1);
    assert_eq!(resolve_pack(0, DeviceChoice::Cuda(0), 32, 1), 32);
    assert_eq!(resolve_pack(0, DeviceChoice::Cuda(1), 32, 8), 4);
    assert_eq!(resolve_pack(0, DeviceChoice::Cuda(0), 33, 2), 17);
    assert_eq!(resolve_pack(0, DeviceChoice::Cuda(0), 1000, 1), GPU_AUTO_PACK);
    assert_eq!(resolve_pack(0, DeviceChoice::Cuda(0), 1, 4), 1);
    // packs needed: runs with different shapes never share a pack
    let dir = tempfile::tempdir().unwrap();
    let sweep = sweep_in(dir.path(), "grid:\n  model.hidden: [8, 12]\n  train.lr: [0.01, 0.02, 0.03]\n");
    assert_eq!(packs_needed(&sweep.runs, 64), 2);
    assert_eq!(packs_needed(&sweep.runs, 2), 4);
    assert_eq!(packs_needed(&sweep.runs, 1), 6);
}
