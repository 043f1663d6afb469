//! AIS against the exact oracle (SPEC 4.1): random RBMs shaped like trained music models
//! (V = 88 with H = 12..20, and the transposed case), the 1/sqrt(M) shrinkage of the standard
//! error, whole-sequence LL of small RTRBM and LSTM-RTRBM models, and sampled against exact ACC.
//! Seeds are fixed, so every run is the same; the schedules are reduced but adequate.

use rtrbm::backend::Cpu;
use rtrbm::eval::ais::{ais_ll, rbm_log_z, AisOptions};
use rtrbm::eval::exact::{exact_frames, log_z};
use rtrbm::eval::schedule::Schedule;
use rtrbm::eval::{acc, FrameBiases};
use rtrbm::model::{init_params, Model, ModelKind, ModelSpec, Params};
use rtrbm::rng::HostRng;

type Be = Cpu<f32>;

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4)
}

/// Biases like a trained music model: most keys strongly off (bv in -5..-3), a band of common
/// keys less so (-2..-1); hidden biases in -1..0. W ~ Normal(0, std^2).
fn music_rbm(nv: usize, nh: usize, std: f64, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = HostRng::new(seed, 21);
    let w = (0..nv * nh).map(|_| std * rng.normal()).collect();
    let bv = (0..nv)
        .map(|i| if nv >= 40 && (30..60).contains(&i) { -1.0 - rng.next_f64() } else { -3.0 - 2.0 * rng.next_f64() })
        .collect();
    let bh = (0..nh).map(|_| -rng.next_f64()).collect();
    (w, bv, bh)
}

fn check_rbm(nv: usize, nh: usize, std: f64, seed: u64, betas: usize) {
    let be = Be::new(threads());
    let (w, bv, bh) = music_rbm(nv, nh, std, seed);
    let exact = log_z(&w, &bv, &bh, threads()).unwrap();
    let opts = AisOptions { runs: 100, schedule: Schedule::scaled(betas).unwrap(), seed, max_chains: 50_000 };
    let (est, se) = rbm_log_z(&be, &w, &bv, &bh, &opts).unwrap();
    eprintln!("V={nv} H={nh} std={std}: exact {exact:.4}, AIS {est:.4} +- {se:.4} ({betas} betas)");
    assert!(se > 0.0 && se.is_finite());
    assert!((est - exact).abs() < 3.0 * se + 1e-3, "V={nv} H={nh} std={std}: AIS {est} +- {se} vs exact {exact}");
}

#[test]
fn ais_matches_exact_v88() {
    check_rbm(88, 12, 0.3, 1, 2000);
    check_rbm(88, 16, 0.6, 2, 3000);
    check_rbm(88, 20, 1.0, 3, 4000);
}

#[test]
fn ais_matches_exact_h88() {
    check_rbm(12, 88, 0.3, 4, 2000);
    check_rbm(16, 88, 0.6, 5, 3000);
    // std 1 with 88 hidden units is the hard case: 4,000 betas can fall 3 s.e. short (seed 43)
    check_rbm(18, 88, 1.0, 6, 10000);
}

#[test]
fn stderr_shrinks_as_one_over_sqrt_runs() {
    let be = Be::new(threads());
    let (w, bv, bh) = music_rbm(88, 16, 0.6, 7);
    // mean standard error over 4 seeds, so the ratio is not at the mercy of one sd estimate
    let se = |runs: usize| {
        (0..4u64)
            .map(|seed| {
                let opts =
                    AisOptions { runs, schedule: Schedule::scaled(1000).unwrap(), seed: 9 + seed, max_chains: 50_000 };
                rbm_log_z(&be, &w, &bv, &bh, &opts).unwrap().1
            })
            .sum::<f64>()
            / 4.0
    };
    let (small, large) = (se(25), se(400));
    let ratio = small / large;
    eprintln!("se(M=25) = {small:.4}, se(M=400) = {large:.4}, ratio {ratio:.2} (expected about 4)");
    assert!((2.5..6.5).contains(&ratio), "se ratio {ratio} for M = 25 vs 400");
}

fn random_rolls(lens: &[usize], nv: usize, p: f64, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = HostRng::new(seed, 3);
    lens.iter().map(|&t| (0..t * nv).map(|_| if rng.next_f64() < p { 1.0 } else { 0.0 }).collect()).collect()
}

/// A temporal model with random parameters of scale `std` and music-like biases.
fn random_temporal(be: &Be, kind: ModelKind, h: usize, u: usize, std: f64, seed: u64) -> Model<Be> {
    let spec = ModelSpec::new(kind, 88, h, u);
    let mut rng = HostRng::new(seed, 31);
    let host = init_params(&spec, 0.0, seed)
        .into_iter()
        .map(|(name, shape, vals)| {
            let vals = match name.as_str() {
                "bv" => (0..vals.len()).map(|_| -3.0 - 1.5 * rng.next_f64()).collect(),
                "bh" => (0..vals.len()).map(|_| -rng.next_f64()).collect(),
                _ => (0..vals.len()).map(|_| std * rng.normal()).collect(),
            };
            (name, shape, vals)
        })
        .collect();
    Model { spec, params: Params::from_host(be, host).unwrap() }
}

#[test]
fn temporal_ais_ll_matches_exact() {
    let be = Be::new(threads());
    let seqs = random_rolls(&[6, 4, 5], 88, 0.05, 5);
    for (kind, h, u) in [(ModelKind::Rtrbm, 14, 0), (ModelKind::LstmRtrbm, 12, 8), (ModelKind::RnnRbm, 10, 6)] {
        let model = random_temporal(&be, kind, h, u, 0.5, 17);
        let fb = FrameBiases::compute(&be, &model, &seqs).unwrap();
        assert_eq!(fb.frames, 15);
        // the biases really vary over time
        assert!(fb.bh[..h].iter().zip(&fb.bh[h..2 * h]).any(|(a, b)| (a - b).abs() > 1e-3));
        let exact = exact_frames(&fb, false, threads()).unwrap().ll();
        let opts = AisOptions { runs: 100, schedule: Schedule::scaled(2000).unwrap(), seed: 3, max_chains: 50_000 };
        let r = ais_ll(&be, &fb, &opts, &mut |_, _| {}).unwrap();
        eprintln!("{kind:?}: exact LL {exact:.4}, AIS {:.4} +- {:.4}", r.ll, r.stderr);
        assert!(r.stderr > 0.0);
        assert!(
            (r.ll - exact).abs() < 3.0 * r.stderr + 1e-3,
            "{kind:?}: AIS LL {} +- {} vs exact {exact}",
            r.ll,
            r.stderr
        );
    }
}

#[test]
fn sampled_acc_matches_exact_acc() {
    let be = Be::new(threads());
    let seqs = random_rolls(&[8, 6], 88, 0.08, 8);
    let model = random_temporal(&be, ModelKind::Rtrbm, 12, 0, 0.6, 23);
    let exact = acc::evaluate_acc_exact(&be, &model, &seqs, threads()).unwrap();
    let opts = acc::AccOptions { chains: 16, burn_in: 100, samples: 200, seed: 4, max_chains: 50_000 };
    let g = acc::evaluate_acc(&be, &model, &seqs, &opts).unwrap();
    let se = g.sampling_se.unwrap();
    eprintln!("ACC exact {:.5}, Gibbs {:.5} +- {se:.5}", exact.acc, g.acc);
    assert!(se > 0.0 && se < 0.02, "sampling error {se}");
    assert!((g.acc - exact.acc).abs() < 3.0 * se, "Gibbs ACC {} +- {se} vs exact {}", g.acc, exact.acc);
    assert!(exact.acc > 0.0 && exact.acc < 1.0 && exact.acc_per_frame > 0.0);
}
