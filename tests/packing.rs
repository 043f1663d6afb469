//! Packed training: P runs trained together in the same operations (`Packed<Cpu>`, one lone
//! operation per model, on one or several threads; the CUDA backend's packed launches are held to the same standard in
//! `gpu_kernels.rs`) give exactly what each run gives alone, bit for bit: parameters, velocities,
//! best checkpoints, metrics, early stopping and divergence, with the models' chunks of different
//! lengths padded to the longest.

use rtrbm::backend::{Backend, Cpu, Packed};
use rtrbm::checkpoint;
use rtrbm::config::Config;
use rtrbm::data::{jsb_embedded, Dataset};
use rtrbm::model::{ModelKind, Workspace};
use rtrbm::train::{self, RunOptions, RunSummary, Trainer};
use std::path::Path;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny.yaml");

fn small_data() -> Dataset {
    let mut d = jsb_embedded();
    d.train.truncate(3);
    d.valid.truncate(2);
    d
}

/// Runs that differ in everything a pack allows to differ: seed, learning rate, momentum, weight
/// decay, clipping and initial weight scale; the second stops early, the last diverges.
fn configs(kind: ModelKind) -> Vec<Config> {
    let mut base = Config::load(Path::new(TINY)).unwrap();
    base.model.kind = kind;
    base.train.epochs = 4;
    base.train.max_updates = 0;
    base.train.log_every = 3;
    base.train.checkpoint_every = 7;
    base.train.valid_max_frames = 30;
    base.train.valid_ais_betas = 8;
    let mut cfgs = vec![];
    for (i, (lr, mom, wd, clip, w_std)) in [
        (0.01, 0.9, 0.0, 0.0, 0.01),
        (0.5, 0.9, 1e-3, 0.5, 0.1),
        (0.02, 0.0, 0.0, 0.2, 0.05),
        (1e37, 0.99, 0.0, 0.0, 0.5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = base.clone();
        c.train.seed = 100 + i as u64;
        c.train.lr = lr;
        c.train.momentum = mom;
        c.train.weight_decay = wd;
        c.train.grad_clip = clip;
        c.init.weight_std = w_std;
        if i == 1 {
            c.train.patience = 1;
            c.train.valid_metric = rtrbm::config::ValidMetric::Cost;
        }
        cfgs.push(c);
    }
    cfgs
}

fn opts(dir: &Path) -> RunOptions {
    RunOptions { out_dir: dir.to_path_buf(), resume: false, progress: false, verbose: false }
}

fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let ck = checkpoint::load(path).unwrap();
    let mut all = ck.params;
    all.extend(ck.extra);
    all
}

/// metrics.jsonl without the wall-clock times.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    let mut m = train::read_metrics(&dir.join("metrics.jsonl")).unwrap();
    for v in m.iter_mut() {
        v.as_object_mut().unwrap().remove("wall_s");
    }
    m
}

fn key(s: &RunSummary) -> (u64, usize, Option<f64>, bool) {
    (s.updates, s.epochs_done, s.best_valid, s.stopped_early)
}

fn packed_equals_alone(kind: ModelKind, threads: usize) {
    let data = small_data();
    let cfgs = configs(kind);
    let dir = tempfile::tempdir().unwrap();
    let lone_be = Cpu::<f32>::new(1);
    let alone: Vec<_> = cfgs
        .iter()
        .enumerate()
        .map(|(p, c)| train::run(&lone_be, c.clone(), &data, &opts(&dir.path().join(format!("alone{p}")))))
        .collect();
    let packed_be = Packed::with_threads(Cpu::<f32>::new(1), cfgs.len(), threads).unwrap();
    assert_eq!(packed_be.models(), 4);
    let popts: Vec<RunOptions> = (0..cfgs.len()).map(|p| opts(&dir.path().join(format!("packed{p}")))).collect();
    let packed = train::run_packed(&packed_be, cfgs.clone(), &data, &popts).unwrap();
    assert_eq!(packed.len(), 4);

    let ok: Vec<bool> = alone.iter().map(|r| r.is_ok()).collect();
    assert_eq!(ok, [true, true, true, false], "{kind:?}: the last run must diverge alone: {alone:?}");
    assert!(alone[1].as_ref().unwrap().stopped_early, "{kind:?}: run 1 must stop early");
    assert!(!alone[0].as_ref().unwrap().stopped_early);
    for p in 0..cfgs.len() {
        let (a, b) = (dir.path().join(format!("alone{p}")), dir.path().join(format!("packed{p}")));
        match (&alone[p], &packed[p]) {
            (Ok(x), Ok(y)) => {
                assert_eq!(key(x), key(y), "{kind:?} run {p}: summaries differ");
                for f in ["checkpoint.safetensors", "best.safetensors"] {
                    assert_eq!(tensors(&a.join(f)), tensors(&b.join(f)), "{kind:?} run {p}: {f} differs");
                }
            }
            (Err(x), Err(y)) => assert_eq!(x.to_string().replace("alone", ""), y.to_string().replace("packed", "")),
            (x, y) => panic!("{kind:?} run {p}: alone {x:?}, packed {y:?}"),
        }
        assert_eq!(metrics(&a), metrics(&b), "{kind:?} run {p}: metrics differ");
        assert!(!metrics(&a).is_empty());
    }
}

#[test]
fn packed_lstm_rtrbm_runs_equal_lone_runs_bit_for_bit() {
    packed_equals_alone(ModelKind::LstmRtrbm, 1);
    // the models of a pack spread over threads: the same bits
    packed_equals_alone(ModelKind::LstmRtrbm, 3);
}

#[test]
fn packed_rtrbm_and_rnn_rbm_runs_equal_lone_runs_bit_for_bit() {
    packed_equals_alone(ModelKind::Rtrbm, 2);
    packed_equals_alone(ModelKind::RnnRbm, 2);
}

#[test]
fn one_packed_step_pads_chunks_of_different_lengths() {
    // model 0 gets 5 frames, model 1 gets 12: the pack runs T = 12 and model 0's 7 padded frames
    // must not change its update
    let mut cfgs = configs(ModelKind::LstmRtrbm);
    cfgs.truncate(2);
    let d = small_data();
    let chunks: Vec<Vec<f32>> = train::make_chunks(&d.train, 12);
    let short: Vec<f32> = chunks[0][..5 * 88].to_vec();
    let long = &chunks[1];
    assert_eq!(long.len(), 12 * 88);
    let be = Packed::new(Cpu::<f32>::new(1), 2).unwrap();
    let mut pack = Trainer::new_packed(&be, cfgs.clone()).unwrap();
    let (t, frames) = pack.step_packed(&[&short, long], &[0, 0]).unwrap();
    assert_eq!((t, frames), (12, vec![5, 12]));
    let lone = Cpu::<f32>::new(1);
    for (p, chunk) in [&short, long].into_iter().enumerate() {
        let mut alone = Trainer::new(&lone, cfgs[p].clone()).unwrap();
        alone.step(&[chunk], 0).unwrap();
        assert_eq!(alone.model.params.to_host(&lone).unwrap(), pack.host_params(p).unwrap(), "model {p}");
    }
    // workspace of a pack holds B sequences per model
    let ws = Workspace::new(&be, &cfgs[0].model, 12, 1).unwrap();
    assert_eq!(be.len(&ws.v), 12 * 88);
    assert_eq!(be.download(&ws.v).unwrap().len(), 2 * 12 * 88);
}

#[test]
fn packs_reject_runs_that_differ_in_shape_or_schedule() {
    let cfgs = configs(ModelKind::LstmRtrbm);
    assert!(train::check_packable(&cfgs).is_ok());
    let mut bad = cfgs.clone();
    bad[2].model.hidden += 1;
    let be = Packed::new(Cpu::<f32>::new(1), 4).unwrap();
    let err = Trainer::new_packed(&be, bad).err().expect("different shapes must not pack").to_string();
    assert!(err.contains("cannot share a pack") && err.contains("hidden"), "{err}");
    let mut bad = cfgs.clone();
    bad[0].train.cd_schedule[0].k += 1;
    assert!(train::check_packable(&bad).is_err());
    // as many configs as models
    assert!(Trainer::new_packed(&be, cfgs[..3].to_vec()).is_err());
}

#[test]
fn a_pack_stopped_and_resumed_equals_uninterrupted_lone_runs() {
    let data = small_data();
    let mut cfgs = configs(ModelKind::LstmRtrbm);
    cfgs.truncate(3);
    let dir = tempfile::tempdir().unwrap();
    let lone = Cpu::<f32>::new(1);
    let be = Packed::new(Cpu::<f32>::new(1), 3).unwrap();
    let dirs: Vec<_> = (0..3).map(|p| dir.path().join(format!("packed{p}"))).collect();
    // the pack stops at update 9 (mid-epoch), then resumes to the end
    let part: Vec<Config> = cfgs
        .iter()
        .map(|c| Config {
            train: {
                let mut t = c.train.clone();
                t.max_updates = 9;
                t
            },
            ..c.clone()
        })
        .collect();
    let o: Vec<RunOptions> = dirs.iter().map(|d| opts(d)).collect();
    for r in train::run_packed(&be, part, &data, &o).unwrap() {
        assert_eq!(r.unwrap().updates, 9);
    }
    let o: Vec<RunOptions> = dirs.iter().map(|d| RunOptions { resume: true, ..opts(d) }).collect();
    let resumed = train::run_packed(&be, cfgs.clone(), &data, &o).unwrap();
    for (p, c) in cfgs.iter().enumerate() {
        let a = dir.path().join(format!("alone{p}"));
        let whole = train::run(&lone, c.clone(), &data, &opts(&a)).unwrap();
        let r = resumed[p].as_ref().unwrap();
        assert_eq!(key(&whole), key(r), "run {p}");
        for f in ["checkpoint.safetensors", "best.safetensors"] {
            assert_eq!(tensors(&a.join(f)), tensors(&dirs[p].join(f)), "run {p}: {f} differs");
        }
        assert_eq!(metrics(&a), metrics(&dirs[p]), "run {p}: metrics differ");
    }
}

#[test]
fn packed_validation_equals_each_model_alone() {
    // three models, differently initialised, with different validation settings: model 1 uses
    // the cost, model 2 a shorter AIS validation set, model 3 the same settings as model 0
    let data = small_data();
    let mut cfgs = configs(ModelKind::LstmRtrbm);
    cfgs[2].train.valid_max_frames = 12;
    cfgs[3].train.lr = 0.01;
    let be = Packed::with_threads(Cpu::<f32>::new(1), cfgs.len(), 2).unwrap();
    let pack = Trainer::new_packed(&be, cfgs.clone()).unwrap();
    let figures = train::validate_packed(&be, &pack.model, &cfgs, &data.valid).unwrap();
    let lone = Cpu::<f32>::new(1);
    for (p, c) in cfgs.iter().enumerate() {
        let alone = rtrbm::model::Model::from_host(&lone, c.model.clone(), pack.host_params(p).unwrap()).unwrap();
        let want = train::validate(&lone, &alone, c, &data.valid).unwrap();
        assert!(want.is_some_and(f64::is_finite), "model {p}: {want:?}");
        assert_eq!(figures[p].map(f64::to_bits), want.map(f64::to_bits), "model {p}");
    }
    assert_ne!(figures[0], figures[3], "different seeds, different figures");
    assert!(train::validate_packed(&be, &pack.model, &cfgs[..2], &data.valid).is_err());
}
