//! Training behaviour: determinism, exact resume, learning progress, the divergence guard, and
//! the correctness in distribution of the Gibbs sampler.

use rtrbm::backend::{Backend, Cpu};
use rtrbm::checkpoint;
use rtrbm::config::{Config, ValidMetric};
use rtrbm::data::{jsb_embedded, Dataset};
use rtrbm::model::{Model, ModelKind, ModelSpec};
use rtrbm::rng::{HostRng, RngKey};
use rtrbm::train::{self, RunOptions};

/// The tiny config of `configs/tiny.yaml` (LSTM-RTRBM 16/8) on a few JSB pieces.
fn tiny() -> (Config, Dataset) {
    let cfg = Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny.yaml"))).unwrap();
    let mut data = jsb_embedded();
    data.train.truncate(6);
    data.valid.truncate(3);
    data.test.truncate(3);
    (cfg, data)
}

fn opts(dir: &std::path::Path, resume: bool) -> RunOptions {
    RunOptions { out_dir: dir.to_path_buf(), resume, progress: false, verbose: false }
}

fn params_of(dir: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let ck = checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    let mut all = ck.params;
    all.extend(ck.extra);
    all
}

#[test]
fn same_seed_gives_bit_identical_training() {
    let (mut cfg, data) = tiny();
    cfg.train.max_updates = 25;
    let be = Cpu::<f32>::new(2);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train::run(&be, cfg.clone(), &data, &opts(a.path(), false)).unwrap();
    // one thread instead of two: the chains are split differently, the numbers must not change
    train::run(&Cpu::<f32>::new(1), cfg.clone(), &data, &opts(b.path(), false)).unwrap();
    assert_eq!(params_of(a.path()), params_of(b.path()));
    // and a different seed gives different parameters
    cfg.train.seed += 1;
    let c = tempfile::tempdir().unwrap();
    train::run(&be, cfg, &data, &opts(c.path(), false)).unwrap();
    assert_ne!(params_of(a.path()), params_of(c.path()));
}

#[test]
fn killed_and_resumed_run_equals_uninterrupted_run() {
    let (mut cfg, data) = tiny();
    // about 8 chunks per epoch: 30 updates cross several epoch ends and validations
    cfg.train.max_updates = 30;
    cfg.train.epochs = 100;
    cfg.train.valid_metric = ValidMetric::Cost;
    let be = Cpu::<f32>::new(1);
    let whole = tempfile::tempdir().unwrap();
    train::run(&be, cfg.clone(), &data, &opts(whole.path(), false)).unwrap();

    let parts = tempfile::tempdir().unwrap();
    for stop in [7u64, 19] {
        // "killed" at `stop` (a checkpoint is written at the stop), then resumed
        let mut c = cfg.clone();
        c.train.max_updates = stop;
        train::run(&be, c.clone(), &data, &opts(parts.path(), stop != 7)).unwrap();
    }
    // the resumed run reads its config from the run folder; raise its limit to 30 there
    let cfg_path = parts.path().join("config.yaml");
    let mut c = Config::load(&cfg_path).unwrap();
    c.train.max_updates = 30;
    std::fs::write(&cfg_path, c.to_yaml()).unwrap();
    train::run(&be, c, &data, &opts(parts.path(), true)).unwrap();
    let ck = checkpoint::load(&parts.path().join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.meta["update"], "30");
    assert_eq!(params_of(whole.path()), params_of(parts.path()));
    // and so are the metrics, epoch means of the cost included (wall times aside)
    let metrics = |d: &std::path::Path| -> Vec<serde_json::Value> {
        let mut m = train::read_metrics(&d.join("metrics.jsonl")).unwrap();
        m.iter_mut().for_each(|v| {
            v.as_object_mut().unwrap().remove("wall_s");
        });
        m
    };
    assert_eq!(metrics(whole.path()), metrics(parts.path()));
}

/// A few hundred updates on JSB lower the free-energy gap and raise a validation proxy.
#[test]
fn a_few_hundred_updates_improve_the_model() {
    let mut cfg = Config { model: ModelSpec::new(ModelKind::Rtrbm, 88, 32, 0), ..Config::default() };
    cfg.train.max_updates = 300;
    cfg.train.cd_schedule = vec![rtrbm::config::CdStep { from: 0, k: 5 }];
    cfg.train.lr = 0.05;
    cfg.train.valid_metric = ValidMetric::None;
    let mut data = jsb_embedded();
    data.valid.truncate(10);
    let be = Cpu::<f32>::new(2);
    let dir = tempfile::tempdir().unwrap();
    let valid_cfg = {
        let mut c = cfg.clone();
        c.train.valid_metric = ValidMetric::AisLl;
        c.train.valid_ais_betas = 300;
        c.train.valid_ais_runs = 16;
        c.train.valid_max_frames = 500;
        c
    };
    let before = Model::init(&be, cfg.model.clone(), 0.01, cfg.train.seed).unwrap();
    let ll_before = train::validate(&be, &before, &valid_cfg, &data.valid).unwrap().unwrap();
    train::run(&be, cfg.clone(), &data, &opts(dir.path(), false)).unwrap();
    let ck = checkpoint::load(&dir.path().join("checkpoint.safetensors")).unwrap();
    let after = Model::from_checkpoint(&be, &ck).unwrap();
    let ll_after = train::validate(&be, &after, &valid_cfg, &data.valid).unwrap().unwrap();
    // An untrained model is near the 88 ln(1/2) = -61 of RANDOM; 300 updates get far better.
    assert!(ll_before < -55.0, "untrained LL {ll_before}");
    assert!(ll_after > ll_before + 20.0, "LL before {ll_before}, after {ll_after}");

    // The free-energy gap between validation data and noise frames of the same density widens:
    // the trained model prefers music to noise by a wide margin.
    let gap = |m: &Model<Cpu<f32>>| -> f64 {
        let mut rng = HostRng::new(77, 0);
        let seq = &data.valid[0];
        let dense = seq.to_dense();
        let t = seq.len();
        let noise: Vec<f32> = (0..t * 88).map(|_| if rng.next_f64() < 4.0 / 88.0 { 1.0 } else { 0.0 }).collect();
        let w = m.params.get("W").unwrap();
        let bv: Vec<f32> = (0..t).flat_map(|_| m.params.get("bv").unwrap().clone()).collect();
        let bh: Vec<f32> = (0..t).flat_map(|_| m.params.get("bh").unwrap().clone()).collect();
        let (mut fd, mut fnz) = (vec![0.0; t], vec![0.0; t]);
        be.free_energy(w, &bv, &bh, &dense, t, 88, 32, false, &mut fd).unwrap();
        be.free_energy(w, &bv, &bh, &noise, t, 88, 32, false, &mut fnz).unwrap();
        (fnz.iter().sum::<f32>() - fd.iter().sum::<f32>()) as f64 / t as f64
    };
    let (g0, g1) = (gap(&before), gap(&after));
    assert!(g0.abs() < 1.0 && g1 > 5.0, "noise-minus-data free energy per frame: before {g0}, after {g1}");
}

#[test]
fn divergence_stops_training_and_keeps_the_last_good_checkpoint() {
    let (mut cfg, data) = tiny();
    cfg.train.lr = 1e37;
    cfg.train.momentum = 0.99;
    cfg.train.max_updates = 200;
    cfg.train.log_every = 1;
    cfg.train.checkpoint_every = 0;
    let dir = tempfile::tempdir().unwrap();
    let err = train::run(&Cpu::<f32>::new(1), cfg, &data, &opts(dir.path(), false)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("divergence") && msg.contains("last good checkpoint"), "{msg}");
}

/// Block Gibbs sampling is correct in distribution: on an RBM small enough to enumerate
/// (V = 5, H = 3), the visible states after 30 steps of 40,000 independent chains match the
/// exact P(v) in total variation (expected TV of the empirical law is about 0.01 here).
#[test]
fn gibbs_sampling_matches_the_exact_distribution() {
    let (nv, nh, chains) = (5usize, 3usize, 40_000usize);
    let mut rng = HostRng::new(3, 0);
    let w: Vec<f64> = (0..nv * nh).map(|_| 1.2 * rng.normal()).collect();
    let bv: Vec<f64> = (0..nv).map(|_| 0.5 * rng.normal()).collect();
    let bh: Vec<f64> = (0..nh).map(|_| 0.5 * rng.normal()).collect();
    // exact P(v) ∝ exp(-F(v))
    let free = |v: &[f64]| -> f64 {
        let mut f = -v.iter().zip(&bv).map(|(a, b)| a * b).sum::<f64>();
        for j in 0..nh {
            let a: f64 = bh[j] + (0..nv).map(|i| v[i] * w[i * nh + j]).sum::<f64>();
            f -= (1.0 + a.exp()).ln();
        }
        f
    };
    let states: Vec<Vec<f64>> = (0..1 << nv).map(|s| (0..nv).map(|i| ((s >> i) & 1) as f64).collect()).collect();
    let un: Vec<f64> = states.iter().map(|v| (-free(v)).exp()).collect();
    let z: f64 = un.iter().sum();
    let be = Cpu::<f64>::new(2);
    let mut v = vec![0.0; chains * nv];
    let bv_t: Vec<f64> = (0..chains).flat_map(|_| bv.clone()).collect();
    let bh_t: Vec<f64> = (0..chains).flat_map(|_| bh.clone()).collect();
    be.gibbs(&w, &bv_t, &bh_t, &mut v, None, chains, nv, nh, 30, false, &[RngKey::new(5, 0)], 0).unwrap();
    let mut counts = vec![0usize; 1 << nv];
    for c in v.chunks(nv) {
        counts[c.iter().enumerate().map(|(i, &x)| (x as usize) << i).sum::<usize>()] += 1;
    }
    let tv: f64 = counts.iter().zip(&un).map(|(&c, &u)| (c as f64 / chains as f64 - u / z).abs()).sum::<f64>() / 2.0;
    assert!(tv < 0.03, "total variation {tv}");
    // and the test can fail: a wrong distribution (W = 0) is far away
    let uniformish: f64 = counts.iter().map(|&c| (c as f64 / chains as f64 - 1.0 / 32.0).abs()).sum::<f64>() / 2.0;
    assert!(uniformish > 0.1, "the sampled law should be far from uniform ({uniformish})");
}

/// `train.bucket`: every chunk once per epoch, batches of similar length (JSB batch 64: the
/// padding falls from 46% of the rows to 18%, the batches' T from ~100 each to 100, 65, 56 and
/// 41), a different batch order every epoch, and without the flag exactly the shuffled order of
/// before.
#[test]
fn length_buckets_keep_the_epoch_and_cut_the_padding() {
    let lens: Vec<usize> = train::make_chunks::<f32>(&jsb_embedded().train, 100).iter().map(|c| c.len() / 88).collect();
    assert_eq!((lens.len(), lens.iter().sum::<usize>()), (243, 13_807));
    let mut tc = Config::default().train;
    tc.batch = 64;
    // rows of a batch padded to its longest chunk, over the epoch's batches
    let padding = |order: &[usize]| -> f64 {
        let (mut rows, mut real) = (0usize, 0usize);
        for b in order.chunks(tc.batch) {
            rows += tc.batch * b.iter().map(|&i| lens[i]).max().unwrap();
            real += b.iter().map(|&i| lens[i]).sum::<usize>();
        }
        1.0 - real as f64 / rows as f64
    };
    let plain: Vec<Vec<usize>> = (0..3).map(|e| train::epoch_order(&tc, &lens, e)).collect();
    let mut expect: Vec<usize> = (0..lens.len()).collect();
    HostRng::new(tc.seed, 0x5EED + 1).shuffle(&mut expect);
    assert_eq!(plain[1], expect, "without buckets the order is the epoch's shuffle");
    tc.bucket = true;
    let buckets: Vec<Vec<usize>> = (0..3).map(|e| train::epoch_order(&tc, &lens, e)).collect();
    for (e, order) in buckets.iter().enumerate() {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..lens.len()).collect::<Vec<_>>(), "epoch {e}: every chunk once");
        // each batch is a run of the chunks sorted by length; the short one (the shortest) last
        for b in order.chunks(tc.batch) {
            let (lo, hi) = (b.iter().map(|&i| lens[i]).min().unwrap(), b.iter().map(|&i| lens[i]).max().unwrap());
            let longer = lens.iter().filter(|&&l| l > lo).count();
            let as_long = lens.iter().filter(|&&l| l >= hi).count();
            assert!(
                longer < as_long + tc.batch,
                "epoch {e}: batch of {lo}..={hi} frames is not a run of the sorted chunks"
            );
        }
        let last = order.chunks(tc.batch).last().unwrap();
        assert!(last
            .iter()
            .all(|&i| lens[i] <= 100 && order[..order.len() - last.len()].iter().all(|&j| lens[j] >= lens[i])));
        let (p, q) = (padding(&plain[e]), padding(order));
        assert!(p > 0.40 && q < 0.20, "epoch {e}: padding {p:.3} in random batches, {q:.3} in buckets");
        let mut ts: Vec<usize> = order.chunks(tc.batch).map(|b| b.iter().map(|&i| lens[i]).max().unwrap()).collect();
        ts.sort();
        assert_eq!(ts, [41, 56, 65, 100], "epoch {e}: the batches' T");
    }
    assert_ne!(buckets[0], buckets[1], "the batches are shuffled every epoch");
    assert_ne!(buckets[1], buckets[2]);
    tc.batch = 1;
    assert_eq!(train::epoch_order(&tc, &lens, 1), plain[1], "batch 1: buckets change nothing");
}

/// A killed and resumed run with length buckets equals the uninterrupted one (the order is a
/// function of the seed and the epoch), and buckets change the training.
#[test]
fn bucketed_training_resumes_exactly() {
    let (mut cfg, data) = tiny();
    cfg.train.batch = 3;
    cfg.train.bucket = true;
    cfg.train.max_updates = 12;
    cfg.train.epochs = 100;
    cfg.train.valid_metric = ValidMetric::Cost;
    let be = Cpu::<f32>::new(1);
    let whole = tempfile::tempdir().unwrap();
    train::run(&be, cfg.clone(), &data, &opts(whole.path(), false)).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let mut c = cfg.clone();
    c.train.max_updates = 5;
    train::run(&be, c, &data, &opts(parts.path(), false)).unwrap();
    let cfg_path = parts.path().join("config.yaml");
    let mut c = Config::load(&cfg_path).unwrap();
    assert!(c.train.bucket, "the run folder's config keeps the flag");
    c.train.max_updates = 12;
    std::fs::write(&cfg_path, c.to_yaml()).unwrap();
    train::run(&be, c, &data, &opts(parts.path(), true)).unwrap();
    assert_eq!(params_of(whole.path()), params_of(parts.path()));
    let random = tempfile::tempdir().unwrap();
    cfg.train.bucket = false;
    train::run(&be, cfg, &data, &opts(random.path(), false)).unwrap();
    assert_ne!(params_of(whole.path()), params_of(random.path()));
}
