//! `rtrbm eval` plumbing: argument parsing into evaluation options, the generic `evaluate` core
//! on a checkpoint round trip, the printed report, clear errors for bad input, and the Gaussian
//! prediction error of SPEC 4.3 on a model whose answer is known.

use clap::Parser;
use rtrbm::backend::Cpu;
use rtrbm::checkpoint::{self, Checkpoint};
use rtrbm::cli::eval::{format_report, EvalArgs};
use rtrbm::eval::acc::{last_fraction_start, prediction_mse};
use rtrbm::eval::evaluate;
use rtrbm::model::{init_params, Model, ModelKind, ModelSpec, Params};
use rtrbm::rng::HostRng;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EvalArgs,
}

fn parse(extra: &[&str]) -> Result<EvalArgs, clap::Error> {
    let mut argv = vec!["eval", "--checkpoint", "m.safetensors"];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).map(|c| c.args)
}

#[test]
fn arguments_become_options() {
    let o = parse(&[]).unwrap().options().unwrap();
    let ais = o.ais.unwrap();
    assert_eq!((ais.runs, ais.schedule.count()), (100, 14_500));
    assert_eq!(o.acc.unwrap().chains, 8);
    assert!(o.convergence.is_empty());

    let o =
        parse(&["--ais-betas", "1000", "--ais-runs", "50", "--convergence", "--convergence-betas", "10,20"]).unwrap();
    let o = o.options().unwrap();
    assert_eq!(o.ais.as_ref().unwrap().schedule.count(), 1000);
    assert_eq!(o.ais.as_ref().unwrap().runs, 50);
    assert_eq!(o.convergence, vec![10, 20]);

    let o = parse(&["--ais-schedule", "0.5:10,1:20", "--no-acc", "--exact"]).unwrap().options().unwrap();
    assert_eq!(o.ais.unwrap().schedule.count(), 30);
    assert!(o.acc.is_none() && o.exact);

    assert!(parse(&["--ais-betas", "10", "--ais-schedule", "linear:5"]).is_err(), "conflicting schedules");
    assert!(parse(&["--ais-schedule", "0.5:10,0.4:3,1:2"]).unwrap().options().is_err());
    assert!(parse(&["--ais-runs", "1"]).unwrap().options().is_err());
    assert!(parse(&["--acc-chains", "0"]).unwrap().options().is_err());
}

#[test]
fn missing_checkpoint_is_a_clear_error() {
    let args = parse(&["--no-acc"]).unwrap();
    let err = rtrbm::cli::eval::run(EvalArgs { checkpoint: "/nonexistent/m.safetensors".into(), ..args }).unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/m.safetensors"), "{err:#}");
}

#[test]
fn evaluate_a_saved_checkpoint() {
    let be = Cpu::<f32>::new(2);
    let spec = ModelSpec::new(ModelKind::LstmRtrbm, 88, 10, 6);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let ck =
        Checkpoint { spec: spec.clone(), params: init_params(&spec, 0.3, 5), extra: vec![], meta: Default::default() };
    checkpoint::save(&path, &ck).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    let model = Model { spec: ck.spec, params: Params::from_host(&be, ck.params).unwrap() };

    let mut rng = HostRng::new(1, 1);
    let seqs: Vec<Vec<f64>> = [5usize, 3]
        .iter()
        .map(|&t| (0..t * 88).map(|_| if rng.next_f64() < 0.05 { 1.0 } else { 0.0 }).collect())
        .collect();
    let args =
        parse(&["--ais-betas", "200", "--ais-runs", "20", "--exact", "--convergence", "--convergence-betas", "50,200"])
            .unwrap();
    let mut calls = 0;
    let r = evaluate(&be, &model, &seqs, &args.options().unwrap(), &mut |_, _, _| calls += 1).unwrap();
    assert!(calls > 0);
    assert_eq!(r.frames, 8);
    let (ll, exact) = (r.ll.as_ref().unwrap().ll, r.exact_ll.unwrap());
    assert!((ll - exact).abs() < 0.5, "AIS {ll} vs exact {exact}");
    assert_eq!(r.convergence.len(), 2);
    let acc = r.acc.as_ref().unwrap().acc;
    assert!((acc - r.exact_acc.as_ref().unwrap().acc).abs() < 0.05);
    let text = format_report(&r);
    for want in ["LL", "ACC", "200 betas", "exact LL", "convergence", "optimistic"] {
        assert!(text.contains(want), "report lacks `{want}`:\n{text}");
    }
    assert!(!text.contains("impossible"), "no warning for a negative LL:\n{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["ll"]["schedule"]["count"], 200);
    assert_eq!(json["frames"], 8);
    // a positive LL (what a far too short AIS schedule gives) is flagged
    let mut r = r;
    r.ll.as_mut().unwrap().ll = 3.0;
    assert!(format_report(&r).contains("impossible for binary frames"), "{}", format_report(&r));

    // empty input and a wrong frame width are errors, not panics
    assert!(evaluate(&be, &model, &[], &args.options().unwrap(), &mut |_, _, _| {}).is_err());
    assert!(evaluate(&be, &model, &[vec![1.0; 80]], &args.options().unwrap(), &mut |_, _, _| {}).is_err());
}

#[test]
fn prediction_mse_of_a_static_gaussian_model() {
    // Gaussian RBM with W = 0: the visible mean is bv whatever the chain does, so the error is
    // the mean squared distance of the data from bv.
    let be = Cpu::<f32>::new(2);
    let mut spec = ModelSpec::new(ModelKind::Rtrbm, 5, 4, 0);
    spec.gaussian = true;
    let host = init_params(&spec, 0.0, 1)
        .into_iter()
        .map(|(n, s, v)| {
            let v = if n == "bv" { vec![0.5, -0.5, 0.0, 1.0, 0.0] } else { vec![0.0; v.len()] };
            (n, s, v)
        })
        .collect();
    let model = Model { spec, params: Params::from_host(&be, host).unwrap() };
    let mut rng = HostRng::new(3, 3);
    let seqs: Vec<Vec<f64>> = [10usize, 6].iter().map(|&t| (0..t * 5).map(|_| rng.normal()).collect()).collect();
    let from: Vec<usize> = seqs.iter().map(|s| last_fraction_start(s.len() / 5, 0.2)).collect();
    assert_eq!(from, vec![8, 5]);
    let r = prediction_mse(&be, &model, &seqs, &from, 5, 1).unwrap();
    assert_eq!((r.frames, r.dims), (3, 5));
    let bv = [0.5, -0.5, 0.0, 1.0, 0.0];
    let mut want = 0.0;
    for (s, &f) in seqs.iter().zip(&from) {
        for row in s.chunks(5).skip(f) {
            want += row.iter().zip(&bv).map(|(x, b)| (x - b) * (x - b)).sum::<f64>();
        }
    }
    want /= 15.0;
    assert!((r.mse - want).abs() < 1e-5, "{} vs {want}", r.mse);
    // a binary model is refused
    let binary = Model::init(&be, ModelSpec::new(ModelKind::Rtrbm, 5, 4, 0), 0.1, 1).unwrap();
    assert!(prediction_mse(&be, &binary, &seqs, &from, 5, 1).is_err());
}
