//! The `rtrbm` binary end to end: train -> eval -> sample on the tiny config, device selection,
//! and error messages for bad input.

use std::path::Path;
use std::process::Command;

fn rtrbm(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtrbm")).args(args).current_dir(cwd).output().expect("run rtrbm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn gpu_usable() -> bool {
    #[cfg(feature = "cuda")]
    {
        rtrbm::backend::cuda::Cuda::new(0).is_ok()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

#[test]
fn train_eval_sample_on_the_tiny_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny.yaml");
    let (ok, _, err) = rtrbm(&["train", "--config", cfg, "--device", "cpu", "--out", "run", "--quiet"], d);
    assert!(ok, "train failed: {err}");
    for f in ["config.yaml", "metrics.jsonl", "checkpoint.safetensors", "best.safetensors", "curves.png"] {
        assert!(d.join("run").join(f).exists(), "missing run/{f}; stderr: {err}");
    }
    let (ok, out, err) = rtrbm(
        &[
            "eval",
            "--checkpoint",
            "run/best.safetensors",
            "--data",
            "jsb",
            "--max-sequences",
            "2",
            "--ais-betas",
            "50",
            "--ais-runs",
            "4",
            "--acc-samples",
            "5",
            "--acc-burn-in",
            "5",
            "--device",
            "cpu",
            "--json",
            "eval.json",
        ],
        d,
    );
    assert!(ok, "eval failed: {err}");
    assert!(out.contains("LL") && out.contains("ACC"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("eval.json")).unwrap()).unwrap();
    assert!(report["ll"]["ll"].as_f64().unwrap().is_finite());
    let (ok, _, err) = rtrbm(
        &[
            "sample",
            "--checkpoint",
            "run/best.safetensors",
            "--frames",
            "24",
            "--out",
            "s.mid",
            "--png",
            "s.png",
            "--prime",
            "jsb:test:0",
            "--device",
            "cpu",
            "--side-slip",
            "0.2",
        ],
        d,
    );
    assert!(ok, "sample failed: {err}");
    let bytes = std::fs::read(d.join("s.mid")).unwrap();
    let smf = midly::Smf::parse(&bytes).expect("a valid MIDI file");
    assert_eq!(smf.tracks.len(), 2);
    let roll = rtrbm::midi::read_midi(&d.join("s.mid"), &Default::default()).unwrap();
    assert_eq!(roll.len(), 16 + 24, "primer (16 frames) + 24 generated frames");
    assert!(d.join("s.png").exists());
    // resume continues the finished run without error
    let (ok, _, err) = rtrbm(&["train", "--resume", "run", "--device", "cpu", "--quiet"], d);
    assert!(ok, "resume failed: {err}");
}

#[test]
fn device_selection_falls_back_or_fails_clearly() {
    if gpu_usable() {
        eprintln!("a GPU is usable here: the fallback messages are not exercised");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (ok, _, err) = rtrbm(&["train", "--device", "cuda", "--max-updates", "1", "--out", "x"], d.path());
    assert!(!ok && err.contains("CUDA"), "explicit cuda without a GPU must fail clearly: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny.yaml");
    let (ok, _, err) =
        rtrbm(&["train", "--config", cfg, "--device", "auto", "--max-updates", "2", "--out", "y", "--quiet"], d.path());
    assert!(ok, "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("note: using the CPU")).count(), 1, "{err}");
    let (ok, _, err) = rtrbm(&["train", "--device", "tpu"], d.path());
    assert!(!ok && err.contains("unknown device"), "{err}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("bad.yaml"), "train:\n  lr: -0.5\n").unwrap();
    let (ok, _, err) = rtrbm(&["train", "--config", "bad.yaml", "--device", "cpu"], p);
    assert!(!ok && err.contains("bad.yaml") && err.contains("train.lr"), "{err}");
    std::fs::write(p.join("typo.yaml"), "model:\n  kind: lstm_rtrbm\n  hiden: 3\n").unwrap();
    let (ok, _, err) = rtrbm(&["train", "--config", "typo.yaml", "--device", "cpu"], p);
    assert!(!ok && err.contains("typo.yaml") && err.contains("hiden"), "{err}");
    std::fs::write(p.join("ck.safetensors"), b"not a checkpoint").unwrap();
    let (ok, _, err) = rtrbm(&["sample", "--checkpoint", "ck.safetensors", "--out", "o.mid", "--device", "cpu"], p);
    assert!(!ok && err.contains("ck.safetensors"), "{err}");
    assert!(!p.join("o.mid").exists(), "no output file after a failure");
    let (ok, _, err) = rtrbm(&["train", "--resume", "nowhere", "--device", "cpu"], p);
    assert!(!ok && err.contains("nowhere"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn info_lists_backends() {
    let d = tempfile::tempdir().unwrap();
    let (ok, out, _) = rtrbm(&["info"], d.path());
    assert!(ok && out.contains("backends: cpu"), "{out}");
}
