//! Finite-difference gradient checks (f64) of the SPEC 3 cost for every model, with the negative
//! samples held fixed, plus the closed forms of d cost / d bh_t and d cost / d bv_t.

use rtrbm::backend::{Backend, Cpu};
use rtrbm::model::{Model, ModelKind, ModelSpec, Params, Workspace};
use rtrbm::rng::{HostRng, RngKey};

type Be = Cpu<f64>;

/// Random data: B = 2 sequences of 4 and 3 frames (the second is padded), binary or Gaussian.
fn random_batch(spec: &ModelSpec, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = HostRng::new(seed, 5);
    [4usize, 3]
        .iter()
        .map(|&t| {
            (0..t * spec.visible)
                .map(|_| {
                    if spec.gaussian {
                        rng.normal()
                    } else if rng.next_f64() < 0.4 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// Sets every parameter to random values of scale 0.5 so that every path carries gradient.
fn randomise(be: &Be, model: &mut Model<Be>, seed: u64) {
    let mut rng = HostRng::new(seed, 9);
    for buf in model.params.bufs.iter_mut() {
        let vals: Vec<f64> = (0..buf.len()).map(|_| 0.5 * rng.normal()).collect();
        be.write(buf, &vals).unwrap();
    }
}

fn cost(be: &Be, model: &Model<Be>, ws: &mut Workspace<Be>, t: usize) -> f64 {
    model.forward(be, ws, t, false).unwrap();
    model.cost(be, ws, t).unwrap()[0]
}

fn check_model(spec: ModelSpec) {
    let be = Be::new(1);
    let mut model = Model::init(&be, spec.clone(), 0.01, 1).unwrap();
    randomise(&be, &mut model, 2);
    let data = random_batch(&spec, 3);
    let mut ws = Workspace::new(&be, &spec, 4, 2).unwrap();
    let refs: Vec<&[f64]> = data.iter().map(|d| d.as_slice()).collect();
    let (t, _) = ws.load(&be, &refs, spec.visible).unwrap();
    model.forward(&be, &mut ws, t, false).unwrap();
    model.negatives(&be, &mut ws, t, 2, &[RngKey::new(7, 0)], 0).unwrap();
    let mut grads: Params<Be> = model.zeros_like(&be).unwrap();
    model.backward(&be, &mut ws, t, &mut grads).unwrap();

    let eps = 1e-6;
    let mut worst = (0.0f64, String::new());
    for pi in 0..model.params.len() {
        let name = model.params.names[pi].clone();
        let analytic = grads.bufs[pi].clone();
        let mut any_nonzero = false;
        for (e, &an) in analytic.iter().enumerate() {
            let orig = model.params.bufs[pi][e];
            model.params.bufs[pi][e] = orig + eps;
            let cp = cost(&be, &model, &mut ws, t);
            model.params.bufs[pi][e] = orig - eps;
            let cm = cost(&be, &model, &mut ws, t);
            model.params.bufs[pi][e] = orig;
            let numeric = (cp - cm) / (2.0 * eps);
            let err = (numeric - an).abs() / (1e-7 + numeric.abs().max(an.abs()));
            // Absolute floor: central differences in f64 carry about 1e-10 of rounding here.
            if (numeric - an).abs() > 1e-9 && err > worst.0 {
                worst = (err, format!("{name}[{e}]: analytic {an} numeric {numeric}"));
            }
            any_nonzero |= an.abs() > 1e-8;
        }
        assert!(any_nonzero, "{:?}: gradient of {name} is identically zero", spec.kind);
    }
    assert!(
        worst.0 < 1e-6,
        "{:?} (gaussian {}): worst relative error {:.3e} at {}",
        spec.kind,
        spec.gaussian,
        worst.0,
        worst.1
    );
}

fn spec(kind: ModelKind) -> ModelSpec {
    ModelSpec::new(kind, 5, 4, 3)
}

#[test]
fn gradient_rbm() {
    check_model(spec(ModelKind::Rbm));
}

#[test]
fn gradient_rtrbm() {
    check_model(spec(ModelKind::Rtrbm));
    check_model(ModelSpec { learned_init: true, ..spec(ModelKind::Rtrbm) });
    check_model(ModelSpec { gaussian: true, ..spec(ModelKind::Rtrbm) });
}

#[test]
fn gradient_rnn_rbm() {
    check_model(spec(ModelKind::RnnRbm));
    check_model(ModelSpec { learned_init: true, ..spec(ModelKind::RnnRbm) });
}

#[test]
fn gradient_lstm_rtrbm() {
    check_model(spec(ModelKind::LstmRtrbm));
    check_model(ModelSpec { learned_init: true, peepholes: true, ..spec(ModelKind::LstmRtrbm) });
    check_model(ModelSpec { gaussian: true, ..spec(ModelKind::LstmRtrbm) });
}

/// SPEC 3 closed forms at the last frame, where no later frame adds to the gradient:
/// d cost / d bh_T = [sigma(W^T v*_T + bh_T) - sigma(W^T v_T + bh_T)] / T and
/// d cost / d bv_T = (v*_T - v_T) / T.
#[test]
fn closed_forms_at_the_last_frame() {
    let be = Be::new(1);
    let spec = ModelSpec::new(ModelKind::Rtrbm, 6, 5, 0);
    let mut model = Model::init(&be, spec.clone(), 0.01, 1).unwrap();
    randomise(&be, &mut model, 4);
    let mut rng = HostRng::new(11, 0);
    let t = 5;
    let data: Vec<f64> = (0..t * 6).map(|_| if rng.next_f64() < 0.5 { 1.0 } else { 0.0 }).collect();
    let mut ws = Workspace::new(&be, &spec, t, 1).unwrap();
    ws.load(&be, &[&data], 6).unwrap();
    model.forward(&be, &mut ws, t, false).unwrap();
    model.negatives(&be, &mut ws, t, 3, &[RngKey::new(1, 1)], 0).unwrap();
    let mut grads = model.zeros_like(&be).unwrap();
    model.backward(&be, &mut ws, t, &mut grads).unwrap();
    let w = model.params.get("W").unwrap();
    let last = t - 1;
    for j in 0..5 {
        let (mut a_data, mut a_neg) = (ws.bh_t[last * 5 + j], ws.bh_t[last * 5 + j]);
        for i in 0..6 {
            a_data += w[i * 5 + j] * ws.v[last * 6 + i];
            a_neg += w[i * 5 + j] * ws.vneg[last * 6 + i];
        }
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = (sig(a_neg) - sig(a_data)) / t as f64;
        assert!((ws.g[last * 5 + j] - expected).abs() < 1e-12, "d cost / d bh_T[{j}]");
    }
    for i in 0..6 {
        let expected = (ws.vneg[last * 6 + i] - ws.v[last * 6 + i]) / t as f64;
        assert!((ws.dbv_t[last * 6 + i] - expected).abs() < 1e-12, "d cost / d bv_T[{i}]");
    }
}
