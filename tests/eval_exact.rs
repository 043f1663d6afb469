//! Exact evaluation checks: the RANDOM row of SPEC 4.1 (every probability 1/2 gives
//! 88 ln(1/2) = -60.997 nats per frame) by exact enumeration and by AIS, the random-ACC check of
//! SPEC 4.2 (ACC = n / (n + 88)), and exact log Z against brute force over both layers.

use rtrbm::backend::Cpu;
use rtrbm::eval::ais::{ais_ll, AisOptions};
use rtrbm::eval::exact::{self, enumerate_layer, log_z_brute, rbm_exact};
use rtrbm::eval::schedule::Schedule;
use rtrbm::eval::{acc, FrameBiases};
use rtrbm::model::{init_params, Model, ModelKind, ModelSpec, Params};
use rtrbm::rng::HostRng;

type Be = Cpu<f32>;

/// Random sparse piano rolls: sequences of the given lengths, each key on with probability `p`.
fn random_rolls(lens: &[usize], nv: usize, p: f64, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = HostRng::new(seed, 3);
    lens.iter().map(|&t| (0..t * nv).map(|_| if rng.next_f64() < p { 1.0 } else { 0.0 }).collect()).collect()
}

/// A model whose parameters are all zero: every P(v_i = 1 | v_<t) is 1/2.
fn zero_model(be: &Be, kind: ModelKind, h: usize) -> Model<Be> {
    let spec = ModelSpec::new(kind, 88, h, 6);
    let host = init_params(&spec, 0.0, 1).into_iter().map(|(n, s, v)| (n, s, vec![0.0; v.len()])).collect();
    Model { spec, params: Params::from_host(be, host).unwrap() }
}

#[test]
fn random_model_scores_88_ln_half() {
    let be = Be::new(2);
    let want = 88.0 * 0.5f64.ln();
    assert!((want + 60.997).abs() < 1e-3);
    let seqs = random_rolls(&[5, 7, 3], 88, 0.05, 1);
    for kind in [ModelKind::Rbm, ModelKind::Rtrbm, ModelKind::RnnRbm, ModelKind::LstmRtrbm] {
        let model = zero_model(&be, kind, 10);
        let ex = exact::exact_log_likelihood(&be, &model, &seqs, 2).unwrap();
        assert_eq!(ex.log_p.len(), 15);
        assert!((ex.ll() - want).abs() < 1e-9, "{kind:?}: exact LL {} vs {want}", ex.ll());

        let fb = FrameBiases::compute(&be, &model, &seqs).unwrap();
        let opts = AisOptions { runs: 4, schedule: Schedule::linear(20).unwrap(), seed: 3, max_chains: 8 };
        let r = ais_ll(&be, &fb, &opts, &mut |_, _| {}).unwrap();
        assert_eq!(r.frames, 15);
        assert!((r.ll - want).abs() < 1e-9, "{kind:?}: AIS LL {} vs {want}", r.ll);
        assert!(r.stderr.abs() < 1e-12, "all log-weights are 0, so the error is 0");
    }
}

#[test]
fn random_model_acc_is_n_over_n_plus_88() {
    let be = Be::new(2);
    let seqs = random_rolls(&[6, 9], 88, 0.06, 2);
    let model = zero_model(&be, ModelKind::Rtrbm, 8);
    let fb = FrameBiases::compute(&be, &model, &seqs).unwrap();
    let n = fb.mean_notes();
    assert!(n > 1.0);
    let want = n / (n + 88.0);
    let ex = acc::evaluate_acc_exact(&be, &model, &seqs, 2).unwrap();
    assert!((ex.acc - want).abs() < 1e-12, "exact ACC {} vs n/(n+88) = {want}", ex.acc);
    // Gibbs marginals are averages of P(v = 1 | h) = sigma(0) = 1/2: exact too.
    let opts = acc::AccOptions { chains: 2, burn_in: 3, samples: 4, seed: 1, max_chains: 10 };
    let g = acc::evaluate_acc(&be, &model, &seqs, &opts).unwrap();
    assert!((g.acc - want).abs() < 1e-6, "Gibbs ACC {} vs {want}", g.acc);
    assert_eq!((g.chains, g.burn_in, g.samples), (Some(2), Some(3), Some(4)));
}

fn random_rbm(nv: usize, nh: usize, std: f64, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = HostRng::new(seed, 7);
    let w = (0..nv * nh).map(|_| std * rng.normal()).collect();
    let bv = (0..nv).map(|_| rng.normal() - 1.0).collect();
    let bh = (0..nh).map(|_| 0.5 * rng.normal()).collect();
    (w, bv, bh)
}

/// P(v_i = 1) by brute force over both layers.
fn brute_marginals(w: &[f64], bv: &[f64], bh: &[f64]) -> Vec<f64> {
    let (nv, nh) = (bv.len(), bh.len());
    let lz = log_z_brute(w, bv, bh).unwrap();
    let mut m = vec![0.0; nv];
    for vs in 0u64..1 << nv {
        for hs in 0u64..1 << nh {
            let on = |s: u64, i: usize| (s >> i & 1) as f64;
            let mut e = 0.0;
            for i in 0..nv {
                e += on(vs, i) * bv[i];
                for j in 0..nh {
                    e += on(vs, i) * on(hs, j) * w[i * nh + j];
                }
            }
            e += (0..nh).map(|j| on(hs, j) * bh[j]).sum::<f64>();
            let p = (e - lz).exp();
            for (i, mi) in m.iter_mut().enumerate() {
                *mi += on(vs, i) * p;
            }
        }
    }
    m
}

#[test]
fn exact_log_z_matches_brute_force() {
    for (k, &(nv, nh)) in [(3, 5), (6, 4), (8, 8), (5, 12), (12, 3), (1, 1)].iter().enumerate() {
        let (w, bv, bh) = random_rbm(nv, nh, 1.0, k as u64);
        let brute = log_z_brute(&w, &bv, &bh).unwrap();
        for threads in [1, 3] {
            let (lz, marg) = rbm_exact(&w, &bv, &bh, true, threads).unwrap();
            assert!((lz - brute).abs() < 1e-10, "V={nv} H={nh}: {lz} vs brute force {brute}");
            let bm = brute_marginals(&w, &bv, &bh);
            for (a, b) in marg.iter().zip(&bm) {
                assert!((a - b).abs() < 1e-10, "V={nv} H={nh}: marginal {a} vs {b}");
            }
        }
    }
}

#[test]
fn enumerating_either_layer_agrees_and_threads_agree() {
    // 14 and 15 units: 2^14 states, enough to split over threads.
    let (nv, nh) = (14, 15);
    let (w, bv, bh) = random_rbm(nv, nh, 0.7, 11);
    let mut wt = vec![0.0; nv * nh];
    for i in 0..nv {
        for j in 0..nh {
            wt[j * nv + i] = w[i * nh + j];
        }
    }
    let by_v1 = enumerate_layer(&bv, &bh, &w, true, 1).unwrap();
    let by_v4 = enumerate_layer(&bv, &bh, &w, true, 4).unwrap();
    let by_h = enumerate_layer(&bh, &bv, &wt, true, 4).unwrap();
    assert!((by_v1.log_z - by_h.log_z).abs() < 1e-9, "{} vs {}", by_v1.log_z, by_h.log_z);
    assert!((by_v1.log_z - by_v4.log_z).abs() < 1e-10);
    for i in 0..nv {
        assert!((by_v4.mean_enum[i] - by_h.mean_other[i]).abs() < 1e-9);
    }
    for j in 0..nh {
        assert!((by_v1.mean_other[j] - by_h.mean_enum[j]).abs() < 1e-9);
    }
}

#[test]
fn bad_input_is_an_error() {
    let be = Be::new(1);
    let (w, bv, bh) = random_rbm(30, 30, 0.1, 1);
    assert!(rbm_exact(&w, &bv, &bh, false, 1).is_err(), "min(V, H) = 30 is too large to enumerate");
    assert!(rbm_exact(&w[1..], &bv, &bh, false, 1).is_err());
    let model = zero_model(&be, ModelKind::Rtrbm, 8);
    assert!(FrameBiases::compute(&be, &model, &[vec![0.0; 87]]).is_err(), "not a whole frame");
    let fb = FrameBiases::compute(&be, &model, &random_rolls(&[2], 88, 0.1, 1)).unwrap();
    let one_run = AisOptions { runs: 1, schedule: Schedule::linear(3).unwrap(), seed: 1, max_chains: 10 };
    assert!(ais_ll(&be, &fb, &one_run, &mut |_, _| {}).is_err());
}
