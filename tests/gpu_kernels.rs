//! Every `Backend` op of `Cuda` against the CPU reference `Cpu::<f32>`.
//!
//! Each GPU test calls [`gpu`]: without a usable GPU it prints why and returns (skip), unless
//! `REQUIRE_CUDA=1`, in which case it panics. Outputs are poisoned with NaN before the launch.
//!
//! Tolerances (`|gpu - cpu| <= atol + rtol |cpu|`), chosen from how each kernel computes:
//! - elementwise ops: kernels are compiled with `--fmad=false`, so they agree to 1 ulp: atol
//!   1e-6, rtol 1e-6. sum_rows adds the rows in the CPU's order with the CPU's expressions: bit
//!   for bit.
//! - gemm: tiled, FMA, different summation order: error ~ k * eps * |terms|, k <= 300 and terms
//!   in [-1, 1]: atol 1e-4, rtol 1e-4.
//! - hidden_probs and recurrences: hidden_probs and the v1 recurrences sum in the CPU's order;
//!   the default split-K recurrences (`*_v2`) add S partial sums of every dot product (a few
//!   ulps for sums of up to 1,200 terms); expf/tanhf differ from Rust's libm by an ulp or two;
//!   all of it grows through T <= 7 frames: atol 2e-5, rtol 1e-4.
//! - free energy: warp-tree reductions of ~100 softplus terms of size ~10: atol 1e-3, rtol 1e-5.
//! - Bernoulli samples: equal unless a uniform lies within rounding of its probability (~1e-7
//!   per draw); counted, bounded by 1e-4 of draws (K = 1) and 2 % of chains (K = 25).
//! - training update: 100 BPTT frames with gemm in another order: atol 1e-4, rtol 1e-3.
//! - AIS log-weights (sums of thousands of increments): 1e-3 per chain, for at least 90 % of
//!   chains (a chain whose draw flips on a near-tie takes another path); estimates of log Z
//!   within 3 standard errors + 0.01 of the enumerated value. The tensor-core kernel
//!   (`ais_chains_tc_n*`) is held to the same bounds against ais_chains_v2 and the CPU.
//!
//! Without a GPU, `every_test_of_this_file_on_the_cuda_emulator` runs all of them again on the
//! CPU emulator of the CUDA driver (tests/cuda-emu: the same kernel sources built with g++, every
//! CUDA thread a fiber, barriers and warp collectives resolved exactly), so the kernels and the
//! backend's launches are checked on every machine, GPU or not. The emulator checks what the
//! kernels compute, not their speed; a real GPU run is still needed for timing and for what the
//! emulator cannot see (its README lists it).
//!
//! Packed models (`Cuda::packed(P)`, P = 3, distinct random data per model; the `packed_*`
//! tests): slab p of every packed result must equal the lone `Cuda` op on model p's data BIT FOR
//! BIT (the same kernels run the same arithmetic, only the pointers move by p slabs; the split-K
//! plan and the Philox indices depend on the per-model shapes only). Buffers get guard elements
//! of different sizes so that every argument has its own slab stride, and whole slabs (guards
//! included) are compared. The packed training update is also compared with
//! `Packed<Cpu<f32>>` with the training-update tolerances above.
#![cfg(feature = "cuda")]
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use rtrbm::backend::cuda::AisKernel;
use rtrbm::backend::{Backend, Cpu, Cuda, Dims, GemmPath, Mat, Packed, SgdHyper};
use rtrbm::model::{init_params, Model, ModelKind, ModelSpec, Params, Workspace};
use rtrbm::rng::{HostRng, RngKey};

/// The GPU, or None (skip) with the reason printed; panics instead when REQUIRE_CUDA=1.
fn gpu() -> Option<Cuda> {
    match Cuda::new(0) {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("REQUIRE_CUDA=1 but the CUDA backend is unavailable: {e}");
            }
            eprintln!("SKIPPED (no CUDA): {e}");
            None
        }
    }
}

/// Runs every other test of this binary in a child process whose libcuda is the CPU emulator of
/// tests/cuda-emu (built here by its build.py into `<target>/cuda-emu`), with REQUIRE_CUDA=1.
/// Does nothing when a real GPU is present (the tests above ran on it). Skips, saying why, when
/// python3, g++ or NVRTC are missing, unless REQUIRE_CUDA_EMU=1 (set by .ci/run), which makes
/// that a failure. Any build failure of the emulator or failing test of the child fails it.
#[test]
fn every_test_of_this_file_on_the_cuda_emulator() {
    use std::process::Command;
    if Cuda::new(0).is_ok() {
        eprintln!("a CUDA device is present: the tests ran on it; the emulator is not needed");
        return;
    }
    let required = std::env::var("REQUIRE_CUDA_EMU").as_deref() == Ok("1");
    let skip = |why: &str| {
        if required {
            panic!("REQUIRE_CUDA_EMU=1 but the CUDA emulator cannot run: {why}");
        }
        eprintln!("SKIPPED (CUDA emulator): {why}");
    };
    for tool in ["python3", "g++"] {
        if Command::new(tool).arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            return skip(&format!("{tool} not found"));
        }
    }
    if !rtrbm::backend::cuda::nvrtc_present() {
        return skip("libnvrtc not found (put its lib folder on LD_LIBRARY_PATH)");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("tests/cuda-emu/build.py").exists() {
        return skip("tests/cuda-emu/build.py not found (this binary runs away from its checkout)");
    }
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/gpu_kernels-<hash>
    let target = exe.ancestors().nth(3).expect("test binary under <target>/<profile>/deps");
    let out = target.join("cuda-emu");
    let build =
        Command::new("python3").arg(root.join("tests/cuda-emu/build.py")).arg("--out").arg(&out).output().unwrap();
    assert!(
        build.status.success(),
        "building the CUDA emulator failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let ld = match std::env::var("LD_LIBRARY_PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", out.display()),
        _ => out.display().to_string(),
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 8);
    let run = Command::new(&exe)
        .args(["--skip", "every_test_of_this_file_on_the_cuda_emulator", "--test-threads"])
        .arg(threads.to_string())
        .env("LD_LIBRARY_PATH", ld)
        .env("REQUIRE_CUDA", "1")
        .env("RTRBM_EMU_DEVICES", "2")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the GPU tests failed on the CUDA emulator:\n{text}");
    let summary = text.lines().rev().find(|l| l.starts_with("test result:")).unwrap_or("(no summary)");
    eprintln!("on the CUDA emulator: {summary}");
    assert!(summary.contains(" 0 failed") && !summary.contains(" 0 passed"), "unexpected summary: {summary}");
}

fn hyper(lr: f32, momentum: f32, weight_decay: f32) -> SgdHyper<f32> {
    SgdHyper { lr, momentum, weight_decay }
}

fn cpu() -> Cpu<f32> {
    Cpu::new(2)
}

fn rand_vec(r: &mut HostRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| scale * (2.0 * r.next_f64() as f32 - 1.0)).collect()
}

fn bin_vec(r: &mut HostRng, n: usize, p: f64) -> Vec<f32> {
    (0..n).map(|_| if r.next_f64() < p { 1.0 } else { 0.0 }).collect()
}

/// Panics naming the worst element when some |g - c| > atol + rtol |c|.
fn assert_close(what: &str, g: &[f32], c: &[f32], atol: f32, rtol: f32) {
    assert_eq!(g.len(), c.len(), "{what}: lengths");
    let mut worst = (0usize, 0f32);
    let mut bad = 0usize;
    for (i, (&x, &y)) in g.iter().zip(c).enumerate() {
        let excess = if x.is_nan() || y.is_nan() { f32::INFINITY } else { (x - y).abs() - (atol + rtol * y.abs()) };
        if excess > 0.0 {
            bad += 1;
        }
        if excess > worst.1 || (bad == 1 && excess > 0.0 && worst.1 == 0.0) {
            worst = (i, excess);
        }
    }
    if bad > 0 {
        let i = worst.0;
        panic!(
            "{what}: {bad} of {} elements out of tolerance (atol {atol}, rtol {rtol}); worst at {i}: gpu {} cpu {}",
            g.len(),
            g[i],
            c[i]
        );
    }
}

fn poisoned(g: &Cuda, n: usize) -> <Cuda as Backend>::Buf {
    g.upload(&vec![f32::NAN; n]).unwrap()
}

#[test]
fn uniforms_are_bit_identical() {
    let Some(g) = gpu() else { return };
    for (seed, stream, counter, first, n) in
        [(0u64, 0u32, 0u32, 0u32, 1usize), (42, 3, 7, 5, 10_007), (u64::MAX, u32::MAX, u32::MAX, 1 << 31, 4099)]
    {
        let k = RngKey::new(seed, stream);
        let gu = g.uniforms(k, counter, first, n).unwrap();
        let mut cu = vec![0f32; n];
        k.fill_uniform(counter, first, &mut cu);
        for i in 0..n {
            assert_eq!(
                gu[i].to_bits(),
                cu[i].to_bits(),
                "uniform {i} of seed {seed} stream {stream} counter {counter} first {first}"
            );
        }
    }
}

#[test]
fn gemm_all_transposes_and_offsets() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let mut r = HostRng::new(1, 0);
    // Small shapes through both kernels (the blocked one with and without split-K); the large
    // ones take the blocked kernel under `Auto` (>= 2^24 multiply-adds): split-K where the
    // output has fewer 64x64 tiles than the SMs (300x260, 650x100), one slice for 1030x530.
    let small = [(1, 1, 1), (37, 53, 88), (88, 88, 100), (5, 300, 17), (130, 7, 300)];
    let cases = small.iter().flat_map(|&s| [(s, GemmPath::Simple), (s, GemmPath::Blocked)]).chain([
        ((300, 260, 300), GemmPath::Auto),
        ((650, 100, 260), GemmPath::Auto),
        ((1030, 530, 100), GemmPath::Auto),
    ]);
    for ((m, n, k), path) in cases {
        for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
            for beta in [0.0f32, 0.5] {
                let (ao, bo, co) = (3, 5, 7);
                let a = rand_vec(&mut r, ao + m * k, 1.0);
                let b = rand_vec(&mut r, bo + k * n, 1.0);
                let c0 = rand_vec(&mut r, co + m * n + 2, 1.0);
                let (ga, gb) = (g.upload(&a).unwrap(), g.upload(&b).unwrap());
                let mut gc = if beta == 0.0 {
                    let mut p = c0.clone();
                    p[co..co + m * n].iter_mut().for_each(|x| *x = f32::NAN);
                    g.upload(&p).unwrap()
                } else {
                    g.upload(&c0).unwrap()
                };
                let mut cc = c0.clone();
                let (ma, mb) = (Mat { buf: &ga, offset: ao, trans: at }, Mat { buf: &gb, offset: bo, trans: bt });
                g.gemm_with(path, m, n, k, 0.7, ma, mb, beta, &mut gc, co).unwrap();
                c.gemm(
                    m,
                    n,
                    k,
                    0.7,
                    Mat { buf: &a, offset: ao, trans: at },
                    Mat { buf: &b, offset: bo, trans: bt },
                    beta,
                    &mut cc,
                    co,
                )
                .unwrap();
                let gv = g.download(&gc).unwrap();
                assert_close(&format!("gemm {path:?} {m}x{n}x{k} ta={at} tb={bt} beta={beta}"), &gv, &cc, 1e-4, 1e-4);
                // the guard elements around C are untouched
                assert_eq!(gv[..co].to_vec(), c0[..co].to_vec(), "gemm {path:?} {m}x{n}x{k}: C before c_off");
                assert_eq!(
                    gv[co + m * n..].to_vec(),
                    c0[co + m * n..].to_vec(),
                    "gemm {path:?} {m}x{n}x{k}: C after m n"
                );
            }
        }
    }
}

/// Every gemm path sums an output as the fold of its k-slices (kernels/linalg.cu), so the simple
/// kernel, the blocked one and the blocked one with split-K give the same bits, and zero rows
/// appended to k (a packed model's padding past its own chunk) change none: a model's products
/// do not depend on its pack.
#[test]
fn gemm_paths_and_zero_padding_give_the_same_bits() {
    let Some(g) = gpu() else { return };
    let mut r = HostRng::new(8, 0);
    // (m, n, k): k within one slice, across slices, and the shapes of the weight gradients
    for (m, n, k) in [(20, 30, 100), (37, 53, 300), (88, 88, 700), (88, 352, 1000), (5, 7, 129)] {
        for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rand_vec(&mut r, m * k, 1.0);
            let b = rand_vec(&mut r, k * n, 1.0);
            let (ga, gb) = (g.upload(&a).unwrap(), g.upload(&b).unwrap());
            let mut outs = vec![];
            for path in [GemmPath::Simple, GemmPath::BlockedUnsplit, GemmPath::Blocked, GemmPath::Auto] {
                let mut gc = g.upload(&vec![f32::NAN; m * n]).unwrap();
                let (ma, mb) = (Mat { buf: &ga, offset: 0, trans: at }, Mat { buf: &gb, offset: 0, trans: bt });
                g.gemm_with(path, m, n, k, 0.7, ma, mb, 0.0, &mut gc, 0).unwrap();
                outs.push((path, g.download(&gc).unwrap()));
            }
            for (path, o) in &outs[1..] {
                assert_bits(&format!("gemm {m}x{n}x{k} ta={at} tb={bt}: {path:?} vs Simple"), o, &outs[0].1);
            }
            // k + 150 with zero rows: the padded product equals the unpadded one, bit for bit
            let kp = k + 150;
            let pad = |x: &[f32], rows: usize, cols: usize, trans_rows_are_k: bool| -> Vec<f32> {
                // x holds a k x cols matrix (k rows) when trans_rows_are_k, else rows x k
                if trans_rows_are_k {
                    let mut y = x.to_vec();
                    y.resize(kp * cols, 0.0);
                    y
                } else {
                    (0..rows)
                        .flat_map(|i| x[i * k..(i + 1) * k].iter().copied().chain(std::iter::repeat_n(0.0, kp - k)))
                        .collect()
                }
            };
            // A is m x k (at: stored k x m); B is k x n (bt: stored n x k)
            let (ap, bp) = (pad(&a, m, m, at), pad(&b, n, n, !bt));
            let (gap, gbp) = (g.upload(&ap).unwrap(), g.upload(&bp).unwrap());
            for path in [GemmPath::Simple, GemmPath::Blocked] {
                let mut gc = g.upload(&vec![f32::NAN; m * n]).unwrap();
                let (ma, mb) = (Mat { buf: &gap, offset: 0, trans: at }, Mat { buf: &gbp, offset: 0, trans: bt });
                g.gemm_with(path, m, n, kp, 0.7, ma, mb, 0.0, &mut gc, 0).unwrap();
                let what = format!("gemm {m}x{n}x{k} ta={at} tb={bt} {path:?}: zero rows to k = {kp}");
                assert_bits(&what, &g.download(&gc).unwrap(), &outs[0].1);
            }
        }
    }
}

#[test]
fn elementwise_ops() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let mut r = HostRng::new(2, 0);
    // sum_rows adds blocks of 64 rows, 16 blocks a round: partial blocks, whole ones, a round and
    // a half; beyond 16 blocks (1,025 rows: 17 blocks, the last of one row; 3,001; a batch-64
    // update's 6,400) the two-launch path (every block sum at once, then their sum in order)
    for (rows, cols) in
        [(1, 1), (37, 53), (3001, 88), (100, 352), (256, 33), (512, 40), (769, 88), (1025, 33), (6400, 88)]
    {
        let n = rows * cols;
        let x = rand_vec(&mut r, n, 2.0);
        let y = rand_vec(&mut r, n, 2.0);
        let bias = rand_vec(&mut r, cols, 1.0);
        let gx = g.upload(&x).unwrap();
        let gy = g.upload(&y).unwrap();
        let gbias = g.upload(&bias).unwrap();
        let tol = |w: &str, gb: &<Cuda as Backend>::Buf, cv: &[f32]| {
            assert_close(&format!("{w} {rows}x{cols}"), &g.download(gb).unwrap(), cv, 1e-6, 1e-6)
        };
        // broadcast_rows, over a poisoned buffer: every element is the bias, bit for bit
        let mut gt = poisoned(&g, n);
        let mut ct = vec![f32::NAN; n];
        g.broadcast_rows(&mut gt, &gbias, rows, cols).unwrap();
        c.broadcast_rows(&mut ct, &bias, rows, cols).unwrap();
        assert_bits(&format!("broadcast_rows {rows}x{cols}"), &g.download(&gt).unwrap(), &ct);
        assert_bits(&format!("broadcast_rows {rows}x{cols} = the bias"), &ct[n - cols..], &bias);
        // sum_rows (beta = 0 on a poisoned output, and beta != 0)
        let mut go = poisoned(&g, cols);
        let mut co = vec![0f32; cols];
        g.sum_rows(&gx, rows, cols, 0.3, 0.0, &mut go).unwrap();
        c.sum_rows(&x, rows, cols, 0.3, 0.0, &mut co).unwrap();
        assert_bits(&format!("sum_rows beta=0 {rows}x{cols}"), &g.download(&go).unwrap(), &co);
        let o0 = rand_vec(&mut r, cols, 1.0);
        let (mut go, mut co) = (g.upload(&o0).unwrap(), o0.clone());
        g.sum_rows(&gx, rows, cols, -1.0, 0.9, &mut go).unwrap();
        c.sum_rows(&x, rows, cols, -1.0, 0.9, &mut co).unwrap();
        assert_bits(&format!("sum_rows beta=0.9 {rows}x{cols}"), &g.download(&go).unwrap(), &co);
        // fill, scale
        let mut gt = poisoned(&g, n);
        g.fill(&mut gt, 0.25).unwrap();
        tol("fill", &gt, &vec![0.25; n]);
        let (mut gt, mut ct) = (g.upload(&x).unwrap(), x.clone());
        g.scale(&mut gt, &[-1.5]).unwrap();
        c.scale(&mut ct, &[-1.5]).unwrap();
        tol("scale", &gt, &ct);
        // sgd_momentum
        let vel = rand_vec(&mut r, n, 0.1);
        let (mut gp, mut cp) = (g.upload(&x).unwrap(), x.clone());
        let (mut gv, mut cv) = (g.upload(&vel).unwrap(), vel.clone());
        g.sgd_momentum(&mut gp, &gy, &mut gv, &[hyper(0.01, 0.9, 1e-3)]).unwrap();
        c.sgd_momentum(&mut cp, &y, &mut cv, &[hyper(0.01, 0.9, 1e-3)]).unwrap();
        tol("sgd param", &gp, &cp);
        tol("sgd vel", &gv, &cv);
        // sum_squares (f64)
        let (gs, cs) = (g.sum_squares(&gx).unwrap()[0], c.sum_squares(&x).unwrap()[0]);
        assert!((gs - cs).abs() <= 1e-9 * cs.abs() + 1e-12, "sum_squares {gs} vs {cs}");
        // copy with offsets
        if n > 10 {
            let mut gt = g.upload(&y).unwrap();
            let mut ct = y.clone();
            g.copy(&gx, 3, &mut gt, 5, n - 10).unwrap();
            c.copy(&x, 3, &mut ct, 5, n - 10).unwrap();
            assert_eq!(g.download(&gt).unwrap(), ct, "copy {rows}x{cols}");
        }
    }
    let nanbuf = g.upload(&[1.0, f32::NAN]).unwrap();
    assert!(g.sum_squares(&nanbuf).unwrap()[0].is_nan());
}

/// `w[r] (a[r, :] - b[r, :])` in f32: the CD gradient of a dynamic bias, row r weighted by its
/// cost weight (0 for padding).
fn weighted_diff(a: &[f32], b: &[f32], w: &[f32]) -> Vec<f32> {
    let cols = a.len() / w.len().max(1);
    a.iter().zip(b).enumerate().map(|(i, (&x, &y))| w[i / cols] * (x - y)).collect()
}

/// Random RBM inputs: W [V,H], bv_t [N,V], bh_t [N,H], binary v [N,V].
fn rbm_inputs(seed: u64, n: usize, nv: usize, nh: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut r = HostRng::new(seed, 5);
    (
        rand_vec(&mut r, nv * nh, 0.5),
        rand_vec(&mut r, n * nv, 1.5),
        rand_vec(&mut r, n * nh, 1.5),
        bin_vec(&mut r, n * nv, 0.2),
    )
}

/// `cd_stats` (the CD statistics of a training update in one launch) gives, bit for bit, what
/// the launches it replaced gave: `hidden_probs` of v and of v*, then the weighted differences
/// `wmask[n] (a - b)` of each (computed here on the host, as the masking kernels did), on the
/// warp-per-row kernels and on the v1 ones (RTRBM_KERNELS=v1, or V or H > 256); and it matches
/// the CPU within the tolerance of `hidden_probs`.
#[test]
fn cd_stats_equal_hidden_probs_and_weighted_differences() {
    let Some(g) = gpu() else { return };
    let g1 = gpu().unwrap().with_chain_kernels_v1(true);
    let c = cpu();
    for (n, nv, nh) in [(1, 1, 1), (500, 88, 88), (1001, 37, 53), (7, 300, 129)] {
        let (w, _, bh, v) = rbm_inputs(40 + n as u64, n, nv, nh);
        let mut r = HostRng::new(41, n as u32);
        // weights: padded rows 0, real ones 1/frames; negatives 0/1, and real-valued (Gaussian)
        let wmask: Vec<f32> = bin_vec(&mut r, n, 0.7).iter().map(|m| m / 321.0).collect();
        let vneg_bin = bin_vec(&mut r, n * nv, 0.2);
        let vneg_real = rand_vec(&mut r, n * nv, 2.0);
        for (what, vneg) in [("binary", &vneg_bin), ("real", &vneg_real)] {
            let case = format!("{what} v*, N{n} V{nv} H{nh}");
            for (kern, gb) in [("v2", &g), ("v1", &g1)] {
                let up = |x: &[f32]| gb.upload(x).unwrap();
                let (gw, gv, gvn, gbh, gm) = (up(&w), up(&v), up(vneg), up(&bh), up(&wmask));
                let (mut pn, mut dh, mut dv) = (poisoned(gb, n * nh), poisoned(gb, n * nh), poisoned(gb, n * nv));
                gb.cd_stats(&gw, &gv, &gvn, &gbh, &gm, n, nv, nh, &mut pn, &mut dh, &mut dv).unwrap();
                let (mut ph, mut pn0) = (poisoned(gb, n * nh), poisoned(gb, n * nh));
                gb.hidden_probs(&gw, &gv, &gbh, n, nv, nh, &mut ph).unwrap();
                gb.hidden_probs(&gw, &gvn, &gbh, n, nv, nh, &mut pn0).unwrap();
                let got = |x: &<Cuda as Backend>::Buf| gb.download(x).unwrap();
                let (dh0, dv0) = (weighted_diff(&got(&pn0), &got(&ph), &wmask), weighted_diff(vneg, &v, &wmask));
                assert_bits(&format!("cd_stats {kern} phneg, {case}"), &got(&pn), &got(&pn0));
                assert_bits(&format!("cd_stats {kern} dbh_t, {case}"), &got(&dh), &dh0);
                assert_bits(&format!("cd_stats {kern} dbv_t, {case}"), &got(&dv), &dv0);
                let (mut cpn, mut cdh, mut cdv) = (vec![0f32; n * nh], vec![0f32; n * nh], vec![0f32; n * nv]);
                c.cd_stats(&w, &v, vneg, &bh, &wmask, n, nv, nh, &mut cpn, &mut cdh, &mut cdv).unwrap();
                assert_close(&format!("cd_stats {kern} phneg vs CPU, {case}"), &got(&pn), &cpn, 2e-6, 1e-5);
                assert_close(&format!("cd_stats {kern} dbh_t vs CPU, {case}"), &got(&dh), &cdh, 8e-8, 1e-5);
                assert_bits(&format!("cd_stats {kern} dbv_t vs CPU, {case}"), &got(&dv), &cdv);
            }
        }
    }
}

/// The LSTM with its weights in registers (`RTRBM_KERNELS=rec-regs`: `lstm_forward_rw_k{K}`,
/// `lstm_backward_rw_k44`) gives the v2 kernels' states, gates and gradients bit for bit: U = 88
/// (the paper's model) and 37, odd and even T, with and without peepholes, lone and in a pack of
/// 3 (each model as alone).
#[test]
fn lstm_with_weights_in_registers_equals_v2() {
    let Some(g) = gpu() else { return };
    // profiled, to see which kernels ran
    let gr = gpu().unwrap().with_rec_regs(true).with_kernel_profile();
    let mut r = HostRng::new(77, 0);
    for (t, b, u) in [(1, 1, 88), (7, 3, 88), (6, 2, 37), (100, 2, 88)] {
        let d = Dims { t, b, v: 88, h: 88, u };
        let (n, g4) = (t * b, 4 * u);
        for with_peep in [false, true] {
            let wl = rand_vec(&mut r, u * g4, 0.3);
            let peep = rand_vec(&mut r, 3 * u, 0.3);
            let preg = rand_vec(&mut r, n * g4, 1.0);
            let mut l0 = vec![f32::NAN; (t + 1) * b * u];
            let mut c0 = l0.clone();
            l0[..b * u].copy_from_slice(&rand_vec(&mut r, b * u, 0.5));
            c0[..b * u].copy_from_slice(&rand_vec(&mut r, b * u, 0.5));
            let dl = rand_vec(&mut r, (t + 1) * b * u, 0.1);
            let dp0 = rand_vec(&mut r, 3 * u, 0.1);
            let run = |be: &Cuda| {
                let (wl, peep, preg) = (be.upload(&wl).unwrap(), be.upload(&peep).unwrap(), be.upload(&preg).unwrap());
                let (mut l, mut c, mut gates) =
                    (be.upload(&l0).unwrap(), be.upload(&c0).unwrap(), poisoned(be, n * g4));
                let pp = with_peep.then_some(&peep);
                be.lstm_forward(&wl, pp, &preg, &mut l, &mut c, &mut gates, d).unwrap();
                let (gdl, mut dpre, mut ds) = (be.upload(&dl).unwrap(), poisoned(be, n * g4), poisoned(be, 2 * b * u));
                let mut dp = be.upload(&dp0).unwrap();
                be.lstm_backward(&wl, pp, &l, &c, &gates, &gdl, &mut dpre, &mut ds, with_peep.then_some(&mut dp), d)
                    .unwrap();
                [l, c, gates, dpre, ds, dp].map(|x| be.download(&x).unwrap())
            };
            let (want, got) = (run(&g), run(&gr));
            let names = ["l", "c", "gates", "dpre", "dstate0", "dpeep"];
            for (what, (x, y)) in names.iter().zip(got.iter().zip(&want)) {
                assert_bits(&format!("lstm_rw {what} T{t} B{b} U{u} peep={with_peep}"), x, y);
            }
        }
    }
    let ran: Vec<String> = gr.kernel_profile().unwrap().unwrap().into_iter().map(|k| k.kernel).collect();
    for k in ["lstm_forward_rw_k12", "lstm_forward_rw_k8", "lstm_backward_rw_k44"] {
        assert!(ran.iter().any(|r| r == k), "{k} ran: {ran:?}");
    }
    assert!(!ran.iter().any(|k| k.ends_with("_v2")), "only the register kernels ran: {ran:?}");
    // a pack of 3: each model's slab as the model alone
    let (t, b, u) = (5, 2, 88);
    let d = Dims { t, b, v: 88, h: 88, u };
    let pk = gr.packed(P).unwrap();
    let wl = per_model(&mut r, u * 4 * u, 0.3);
    let preg = per_model(&mut r, t * b * 4 * u, 1.0);
    let l0 = per_model(&mut r, (t + 1) * b * u, 0.5);
    let c0 = per_model(&mut r, (t + 1) * b * u, 0.5);
    let ((pwl, lwl), (ppre, lpre)) = (up(&gr, &pk, &wl), up(&gr, &pk, &preg));
    let ((mut pl, mut ll), (mut pc, mut lc)) = (up(&gr, &pk, &l0), up(&gr, &pk, &c0));
    let (mut pgates, mut lgates) = up(&gr, &pk, &vec![vec![f32::NAN; t * b * 4 * u]; P]);
    pk.lstm_forward(&pwl, None, &ppre, &mut pl, &mut pc, &mut pgates, d).unwrap();
    for p in 0..P {
        gr.lstm_forward(&lwl[p], None, &lpre[p], &mut ll[p], &mut lc[p], &mut lgates[p], d).unwrap();
    }
    same("packed lstm_forward_rw l", &gr, &pk, &pl, &ll);
    same("packed lstm_forward_rw gates", &gr, &pk, &pgates, &lgates);
    let dl = per_model(&mut r, (t + 1) * b * u, 0.1);
    let (pdl, ldl) = up(&gr, &pk, &dl);
    let ((mut pdpre, mut ldpre), (mut pds, mut lds)) =
        (up(&gr, &pk, &vec![vec![f32::NAN; t * b * 4 * u]; P]), up(&gr, &pk, &vec![vec![f32::NAN; 2 * b * u]; P]));
    pk.lstm_backward(&pwl, None, &pl, &pc, &pgates, &pdl, &mut pdpre, &mut pds, None, d).unwrap();
    for p in 0..P {
        gr.lstm_backward(&lwl[p], None, &ll[p], &lc[p], &lgates[p], &ldl[p], &mut ldpre[p], &mut lds[p], None, d)
            .unwrap();
    }
    same("packed lstm_backward_rw dpre", &gr, &pk, &pdpre, &ldpre);
    same("packed lstm_backward_rw dstate0", &gr, &pk, &pds, &lds);
}

/// LSTM-RTRBM's forward recurrences in one launch (`RTRBM_KERNELS=fused-fwd`:
/// `lstm_rtrbm_forward_k{K}`, the RTRBM blocks following the LSTM blocks frame by frame through
/// published frame counts): l, c and gates bit for bit those of the separate kernels (v2, and the
/// register-weights LSTM under `rec-regs`), r and bh_t within the recurrences' tolerance of the
/// CPU's composition (LSTM, gemm pre += l WL, RTRBM), `pre` left as it was; T from 1 to 100 (the
/// frame pipeline's edges), U = H = 88 and U = 37, H = 53, peepholes on and off, lone and in a
/// pack of 3 (each model as alone); the fused kernels ran (kernel profile).
#[test]
fn fused_lstm_rtrbm_forward_matches_the_composition() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let gf = gpu().unwrap().with_fused_forward(true).with_kernel_profile();
    let gfr = gpu().unwrap().with_fused_forward(true).with_rec_regs(true).with_kernel_profile();
    let mut r = HostRng::new(91, 0);
    for (t, b, u, h) in [
        (1, 1, 88, 88),
        (2, 1, 88, 88),
        (3, 2, 88, 88),
        (4, 1, 88, 88),
        (7, 3, 88, 88),
        (6, 2, 37, 53),
        (100, 2, 88, 88),
    ] {
        let d = Dims { t, b, v: 88, h, u };
        let (n, g4) = (t * b, 4 * u);
        for with_peep in [false, true] {
            let lwl = rand_vec(&mut r, u * g4, 0.3);
            let peep = rand_vec(&mut r, 3 * u, 0.3);
            let preg = rand_vec(&mut r, n * g4, 1.0);
            let wl = rand_vec(&mut r, u * h, 0.3);
            let wr = rand_vec(&mut r, h * h, 0.3);
            let pre = rand_vec(&mut r, n * h, 1.0);
            let vw = rand_vec(&mut r, n * h, 1.0);
            let mut l0 = vec![f32::NAN; (t + 1) * b * u];
            let mut c0 = l0.clone();
            let mut r0 = vec![f32::NAN; (t + 1) * b * h];
            l0[..b * u].copy_from_slice(&rand_vec(&mut r, b * u, 0.5));
            c0[..b * u].copy_from_slice(&rand_vec(&mut r, b * u, 0.5));
            r0[..b * h].copy_from_slice(&rand_vec(&mut r, b * h, 0.5));
            let pp = with_peep.then_some(&peep);
            let (mut lc, mut cc, mut gc) = (l0.clone(), c0.clone(), vec![0f32; n * g4]);
            let (mut prec, mut rc, mut bhc) = (pre.clone(), r0.clone(), vec![0f32; n * h]);
            c.lstm_rtrbm_forward(
                &lwl, pp, &preg, &mut lc, &mut cc, &mut gc, &wl, &wr, &mut prec, &vw, &mut rc, &mut bhc, d,
            )
            .unwrap();
            let run = |be: &Cuda| {
                let up = |x: &Vec<f32>| be.upload(x).unwrap();
                let (glwl, gpeep, gpreg, gwl, gwr, gvw) = (up(&lwl), up(&peep), up(&preg), up(&wl), up(&wr), up(&vw));
                let (mut gl, mut gcs, mut gg) = (up(&l0), up(&c0), poisoned(be, n * g4));
                let (mut gpre, mut gr, mut gbh) = (up(&pre), up(&r0), poisoned(be, n * h));
                let gp = with_peep.then_some(&gpeep);
                be.lstm_rtrbm_forward(
                    &glwl, gp, &gpreg, &mut gl, &mut gcs, &mut gg, &gwl, &gwr, &mut gpre, &gvw, &mut gr, &mut gbh, d,
                )
                .unwrap();
                [gl, gcs, gg, gr, gbh, gpre].map(|x| be.download(&x).unwrap())
            };
            let what = |x: &str| format!("fused forward {x} T{t} B{b} U{u} H{h} peep={with_peep}");
            let plain = run(&g);
            for fused in [run(&gf), run(&gfr)] {
                for (i, x) in ["l", "c", "gates"].iter().enumerate() {
                    assert_bits(&what(x), &fused[i], &plain[i]);
                }
                assert_close(&what("r"), &fused[3], &rc, 2e-5, 1e-4);
                assert_close(&what("bh_t"), &fused[4], &bhc, 2e-5, 1e-4);
                assert_bits(&what("pre (read, not written)"), &fused[5], &pre);
            }
            // the separate kernels (the fallback) against the CPU too
            assert_close(&what("r (separate kernels)"), &plain[3], &rc, 2e-5, 1e-4);
            assert_close(&what("bh_t (separate kernels)"), &plain[4], &bhc, 2e-5, 1e-4);
        }
    }
    for (be, k) in [(&gf, "lstm_rtrbm_forward_k0"), (&gfr, "lstm_rtrbm_forward_k12")] {
        let ran: Vec<String> = be.kernel_profile().unwrap().unwrap().into_iter().map(|k| k.kernel).collect();
        assert!(ran.iter().any(|r| r == k), "{k} ran: {ran:?}");
        assert!(!ran.iter().any(|k| k.starts_with("rtrbm_forward")), "no separate RTRBM forward ran: {ran:?}");
    }
    // a pack of 3: each model's slab as the model alone
    let (t, b, u, h) = (9, 2, 88, 88);
    let d = Dims { t, b, v: 88, h, u };
    let pk = gf.packed(P).unwrap();
    let ins = [
        per_model(&mut r, u * 4 * u, 0.3),
        per_model(&mut r, t * b * 4 * u, 1.0),
        per_model(&mut r, u * h, 0.3),
        per_model(&mut r, h * h, 0.3),
        per_model(&mut r, t * b * h, 1.0),
        per_model(&mut r, t * b * h, 1.0),
    ];
    let [(plwl, llwl), (ppreg, lpreg), (pwl, lwl), (pwr, lwr), (mut ppre, mut lpre), (pvw, lvw)] =
        ins.map(|x| up(&gf, &pk, &x));
    let ((mut pl, mut ll), (mut pc, mut lc)) = (
        up(&gf, &pk, &per_model(&mut r, (t + 1) * b * u, 0.5)),
        up(&gf, &pk, &per_model(&mut r, (t + 1) * b * u, 0.5)),
    );
    let (mut pr, mut lr) = up(&gf, &pk, &per_model(&mut r, (t + 1) * b * h, 0.5));
    let (mut pg, mut lg) = up(&gf, &pk, &vec![vec![f32::NAN; t * b * 4 * u]; P]);
    let (mut pbh, mut lbh) = up(&gf, &pk, &vec![vec![f32::NAN; t * b * h]; P]);
    pk.lstm_rtrbm_forward(
        &plwl, None, &ppreg, &mut pl, &mut pc, &mut pg, &pwl, &pwr, &mut ppre, &pvw, &mut pr, &mut pbh, d,
    )
    .unwrap();
    for p in 0..P {
        gf.lstm_rtrbm_forward(
            &llwl[p],
            None,
            &lpreg[p],
            &mut ll[p],
            &mut lc[p],
            &mut lg[p],
            &lwl[p],
            &lwr[p],
            &mut lpre[p],
            &lvw[p],
            &mut lr[p],
            &mut lbh[p],
            d,
        )
        .unwrap();
    }
    for (x, pb, lb) in [("l", &pl, &ll), ("gates", &pg, &lg), ("r", &pr, &lr), ("bh_t", &pbh, &lbh)] {
        same(&format!("packed fused forward {x}"), &gf, &pk, pb, lb);
    }
}

/// LSTM-RTRBM's backward recurrences in one launch (`RTRBM_KERNELS=fused-bwd`:
/// `lstm_rtrbm_backward_k{K}`, the LSTM blocks following the RTRBM blocks frame by frame): g, du
/// (= g WL^T, row T left 0), dpre, dstate0 and the peephole gradient within the recurrences'
/// tolerance of the CPU's composition (RTRBM backward, gemm, LSTM backward) and of the separate
/// GPU kernels, with the LSTM as v2 and as `rec-regs`; T from 1 to 100, U = H = 88 and U = 37,
/// H = 53, peepholes on and off, lone and in a pack of 3 (each model as alone); the fused kernels
/// ran (kernel profile).
#[test]
fn fused_lstm_rtrbm_backward_matches_the_composition() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let gf = gpu().unwrap().with_fused_backward(true).with_kernel_profile();
    let gfr = gpu().unwrap().with_fused_backward(true).with_rec_regs(true).with_kernel_profile();
    let mut r = HostRng::new(92, 0);
    for (t, b, u, h) in
        [(1, 1, 88, 88), (2, 1, 88, 88), (3, 2, 88, 88), (7, 3, 88, 88), (6, 2, 37, 53), (100, 2, 88, 88)]
    {
        let d = Dims { t, b, v: 88, h, u };
        let (n, g4) = (t * b, 4 * u);
        for with_peep in [false, true] {
            let wr = rand_vec(&mut r, h * h, 0.3);
            let rs: Vec<f32> = rand_vec(&mut r, (t + 1) * b * h, 1.0).iter().map(|x| 0.5 + 0.45 * x).collect();
            let dbh = rand_vec(&mut r, n * h, 0.1);
            let wl = rand_vec(&mut r, u * h, 0.3);
            let lwl = rand_vec(&mut r, u * g4, 0.3);
            let peep = rand_vec(&mut r, 3 * u, 0.3);
            let l = rand_vec(&mut r, (t + 1) * b * u, 0.5);
            let cs = rand_vec(&mut r, (t + 1) * b * u, 0.5);
            let gates: Vec<f32> = rand_vec(&mut r, n * g4, 1.0).iter().map(|x| 0.5 + 0.45 * x).collect();
            let dp0 = rand_vec(&mut r, 3 * u, 0.1);
            let mut du0 = vec![f32::NAN; (t + 1) * b * u];
            du0[n * u..].iter_mut().for_each(|x| *x = 0.0);
            let pp = with_peep.then_some(&peep);
            let (mut gc, mut duc, mut dprec, mut dsc, mut dpc) =
                (vec![0f32; n * h], du0.clone(), vec![0f32; n * g4], vec![0f32; 2 * b * u], dp0.clone());
            c.lstm_rtrbm_backward(
                &wr,
                &rs,
                &dbh,
                &mut gc,
                &wl,
                &mut duc,
                &lwl,
                pp,
                &l,
                &cs,
                &gates,
                &mut dprec,
                &mut dsc,
                with_peep.then_some(&mut dpc),
                d,
            )
            .unwrap();
            let run = |be: &Cuda| {
                let up = |x: &Vec<f32>| be.upload(x).unwrap();
                let (gwr, grs, gdbh, gwl, glwl, gpeep) = (up(&wr), up(&rs), up(&dbh), up(&wl), up(&lwl), up(&peep));
                let (gl, gcs, ggates) = (up(&l), up(&cs), up(&gates));
                let (mut gg, mut gdu, mut gdpre, mut gds, mut gdp) =
                    (poisoned(be, n * h), up(&du0), poisoned(be, n * g4), poisoned(be, 2 * b * u), up(&dp0));
                be.lstm_rtrbm_backward(
                    &gwr,
                    &grs,
                    &gdbh,
                    &mut gg,
                    &gwl,
                    &mut gdu,
                    &glwl,
                    with_peep.then_some(&gpeep),
                    &gl,
                    &gcs,
                    &ggates,
                    &mut gdpre,
                    &mut gds,
                    with_peep.then_some(&mut gdp),
                    d,
                )
                .unwrap();
                [gg, gdu, gdpre, gds, gdp].map(|x| be.download(&x).unwrap())
            };
            let want = [&gc, &duc, &dprec, &dsc, &dpc];
            for (which, be) in [("separate", &g), ("fused", &gf), ("fused rec-regs", &gfr)] {
                let got = run(be);
                for (i, x) in ["g", "du", "dpre", "dstate0", "dpeep"].iter().enumerate() {
                    let what = format!("{which} backward {x} T{t} B{b} U{u} H{h} peep={with_peep}");
                    assert_close(&what, &got[i], want[i], 2e-5, 1e-4);
                }
            }
        }
    }
    for (be, k) in [(&gf, "lstm_rtrbm_backward_k0"), (&gfr, "lstm_rtrbm_backward_k44")] {
        let ran: Vec<String> = be.kernel_profile().unwrap().unwrap().into_iter().map(|k| k.kernel).collect();
        assert!(ran.iter().any(|r| r == k), "{k} ran: {ran:?}");
        assert!(!ran.iter().any(|k| k.starts_with("rtrbm_backward")), "no separate RTRBM backward ran: {ran:?}");
    }
    // a pack of 3: each model's slab as the model alone
    let (t, b, u, h) = (9, 2, 88, 88);
    let d = Dims { t, b, v: 88, h, u };
    let pk = gf.packed(P).unwrap();
    let ins = [
        per_model(&mut r, h * h, 0.3),
        per_model(&mut r, (t + 1) * b * h, 0.4),
        per_model(&mut r, t * b * h, 0.1),
        per_model(&mut r, u * h, 0.3),
        per_model(&mut r, u * 4 * u, 0.3),
        per_model(&mut r, (t + 1) * b * u, 0.5),
        per_model(&mut r, (t + 1) * b * u, 0.5),
        per_model(&mut r, t * b * 4 * u, 0.4),
    ];
    let [(pwr, lwr), (prs, lrs), (pdbh, ldbh), (pwl, lwl), (plwl, llwl), (pl, ll), (pc, lc), (pgates, lgates)] =
        ins.map(|x| up(&gf, &pk, &x));
    let mut du0 = vec![f32::NAN; (t + 1) * b * u];
    du0[t * b * u..].iter_mut().for_each(|x| *x = 0.0);
    let ((mut pg, mut lg), (mut pdu, mut ldu)) =
        (up(&gf, &pk, &vec![vec![f32::NAN; t * b * h]; P]), up(&gf, &pk, &vec![du0; P]));
    let ((mut pdpre, mut ldpre), (mut pds, mut lds)) =
        (up(&gf, &pk, &vec![vec![f32::NAN; t * b * 4 * u]; P]), up(&gf, &pk, &vec![vec![f32::NAN; 2 * b * u]; P]));
    pk.lstm_rtrbm_backward(
        &pwr, &prs, &pdbh, &mut pg, &pwl, &mut pdu, &plwl, None, &pl, &pc, &pgates, &mut pdpre, &mut pds, None, d,
    )
    .unwrap();
    for p in 0..P {
        gf.lstm_rtrbm_backward(
            &lwr[p],
            &lrs[p],
            &ldbh[p],
            &mut lg[p],
            &lwl[p],
            &mut ldu[p],
            &llwl[p],
            None,
            &ll[p],
            &lc[p],
            &lgates[p],
            &mut ldpre[p],
            &mut lds[p],
            None,
            d,
        )
        .unwrap();
    }
    for (x, pb, lb) in [("g", &pg, &lg), ("du", &pdu, &ldu), ("dpre", &pdpre, &ldpre), ("dstate0", &pds, &lds)] {
        same(&format!("packed fused backward {x}"), &gf, &pk, pb, lb);
    }
}

#[test]
fn hidden_probs_and_free_energy() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    for (n, nv, nh) in [(1, 1, 1), (500, 88, 88), (1001, 37, 53), (7, 300, 129)] {
        let (w, bv, bh, v) = rbm_inputs(n as u64, n, nv, nh);
        let (gw, gbv, gbh, gv) =
            (g.upload(&w).unwrap(), g.upload(&bv).unwrap(), g.upload(&bh).unwrap(), g.upload(&v).unwrap());
        let mut go = poisoned(&g, n * nh);
        let mut co = vec![0f32; n * nh];
        g.hidden_probs(&gw, &gv, &gbh, n, nv, nh, &mut go).unwrap();
        c.hidden_probs(&w, &v, &bh, n, nv, nh, &mut co).unwrap();
        assert_close(&format!("hidden_probs N{n} V{nv} H{nh}"), &g.download(&go).unwrap(), &co, 2e-6, 1e-5);
        // hidden_probs_v2 (one warp per row, nonzero visibles only) against the first kernel:
        // the same bits, for 0/1 rows and for real-valued ones
        let g1 = gpu().unwrap().with_chain_kernels_v1(true);
        let vr = rand_vec(&mut HostRng::new(5, n as u32), n * nv, 2.0);
        for (what, vh) in [("binary", &v), ("real", &vr)] {
            let (gw1, gbh1, gv1, gvv) =
                (g1.upload(&w).unwrap(), g1.upload(&bh).unwrap(), g1.upload(vh).unwrap(), g.upload(vh).unwrap());
            let (mut o2, mut o1) = (poisoned(&g, n * nh), poisoned(&g1, n * nh));
            g.hidden_probs(&gw, &gvv, &gbh, n, nv, nh, &mut o2).unwrap();
            g1.hidden_probs(&gw1, &gv1, &gbh1, n, nv, nh, &mut o1).unwrap();
            let (a, b) = (g.download(&o2).unwrap(), g1.download(&o1).unwrap());
            let bad = a.iter().zip(&b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
            assert_eq!(bad, 0, "hidden_probs v2 against v1, {what} v, N{n} V{nv} H{nh}: {bad} outputs differ");
        }
        for gaussian in [false, true] {
            let mut go = poisoned(&g, n);
            let mut co = vec![0f32; n];
            g.free_energy(&gw, &gbv, &gbh, &gv, n, nv, nh, gaussian, &mut go).unwrap();
            c.free_energy(&w, &bv, &bh, &v, n, nv, nh, gaussian, &mut co).unwrap();
            assert_close(
                &format!("free_energy gaussian={gaussian} N{n} V{nv} H{nh}"),
                &g.download(&go).unwrap(),
                &co,
                1e-3,
                1e-5,
            );
        }
    }
}

#[test]
fn gibbs_matches_cpu_samples() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let key = RngKey::new(0xfeed, 2);
    for (n, nv, nh) in [(2000, 88, 88), (777, 37, 53), (64, 300, 200)] {
        let (w, bv, bh, v) = rbm_inputs(7 + n as u64, n, nv, nh);
        let (gw, gbv, gbh) = (g.upload(&w).unwrap(), g.upload(&bv).unwrap(), g.upload(&bh).unwrap());
        for k in [1usize, 25] {
            let mut gv = g.upload(&v).unwrap();
            let mut cv = v.clone();
            g.gibbs(&gw, &gbv, &gbh, &mut gv, None, n, nv, nh, k, false, &[key], 11).unwrap();
            c.gibbs(&w, &bv, &bh, &mut cv, None, n, nv, nh, k, false, &[key], 11).unwrap();
            let gvh = g.download(&gv).unwrap();
            assert!(gvh.iter().all(|&x| x == 0.0 || x == 1.0), "gibbs output not binary");
            let draws_bad = gvh.iter().zip(&cv).filter(|(a, b)| a != b).count();
            let chains_bad = (0..n).filter(|&i| gvh[i * nv..(i + 1) * nv] != cv[i * nv..(i + 1) * nv]).count();
            eprintln!(
                "gibbs N{n} V{nv} H{nh} K{k}: {draws_bad} differing visible draws, {chains_bad} differing chains"
            );
            if k == 1 {
                assert!(draws_bad as f64 <= 1e-4 * (n * (nv + nh)) as f64 + 1.0, "gibbs K=1: {draws_bad} mismatches");
            } else {
                assert!(chains_bad as f64 <= 0.02 * n as f64 + 1.0, "gibbs K=25: {chains_bad} of {n} chains differ");
            }
            // same seed twice: identical
            let mut gv2 = g.upload(&v).unwrap();
            g.gibbs(&gw, &gbv, &gbh, &mut gv2, None, n, nv, nh, k, false, &[key], 11).unwrap();
            assert_eq!(g.download(&gv2).unwrap(), gvh, "gibbs not reproducible");
        }
        // A frame mask: the chains that run draw exactly what they draw without it, the
        // others keep their v; the first 40 chains (whole blocks) and every third are padding.
        let mask: Vec<f32> = (0..n).map(|i| if i < 40 || i % 3 == 0 { 0.0 } else { 1.0 }).collect();
        for gaussian in [false, true] {
            let gm = g.upload(&mask).unwrap();
            let (mut all, mut masked) = (g.upload(&v).unwrap(), g.upload(&v).unwrap());
            g.gibbs(&gw, &gbv, &gbh, &mut all, None, n, nv, nh, 3, gaussian, &[key], 5).unwrap();
            g.gibbs(&gw, &gbv, &gbh, &mut masked, Some(&gm), n, nv, nh, 3, gaussian, &[key], 5).unwrap();
            let (all, masked) = (g.download(&all).unwrap(), g.download(&masked).unwrap());
            for i in 0..n {
                let want = if mask[i] == 0.0 { &v[i * nv..(i + 1) * nv] } else { &all[i * nv..(i + 1) * nv] };
                assert_bits(
                    &format!("masked gibbs N{n} chain {i} gaussian={gaussian}"),
                    &masked[i * nv..(i + 1) * nv],
                    want,
                );
            }
        }
        // Gaussian visibles, K = 1: v = mean + normal (f32 Box-Muller on the GPU, f64 on the CPU)
        let mut gv = g.upload(&v).unwrap();
        let mut cv = v.clone();
        g.gibbs(&gw, &gbv, &gbh, &mut gv, None, n, nv, nh, 1, true, &[key], 3).unwrap();
        c.gibbs(&w, &bv, &bh, &mut cv, None, n, nv, nh, 1, true, &[key], 3).unwrap();
        let gvh = g.download(&gv).unwrap();
        let far = gvh.iter().zip(&cv).filter(|(a, b)| (*a - *b).abs() > 1e-4 + 1e-4 * b.abs()).count();
        assert!(far as f64 <= 1e-3 * (n * nv) as f64 + 1.0, "gaussian gibbs: {far} elements differ");
    }
}

#[test]
fn gibbs_marginals_match_cpu() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let key = RngKey::new(99, 1);
    let (n, nv, nh) = (9, 37, 53);
    let (w, bv, bh, _) = rbm_inputs(3, n, nv, nh);
    let (gw, gbv, gbh) = (g.upload(&w).unwrap(), g.upload(&bv).unwrap(), g.upload(&bh).unwrap());
    let mut go = poisoned(&g, n * nv);
    let mut co = vec![0f32; n * nv];
    g.gibbs_marginals(&gw, &gbv, &gbh, n, nv, nh, 3, 5, 10, key, 100, &mut go).unwrap();
    c.gibbs_marginals(&w, &bv, &bh, n, nv, nh, 3, 5, 10, key, 100, &mut co).unwrap();
    let gv = g.download(&go).unwrap();
    assert!(gv.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
    let far = gv.iter().zip(&co).filter(|(a, b)| (*a - *b).abs() > 1e-5).count();
    assert!(far <= 2 * nv, "gibbs_marginals: {far} of {} differ (more than one chain diverged)", n * nv);
}

#[test]
fn recurrences_match_cpu() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let mut r = HostRng::new(4, 0);
    // (2, 2, 1030, 1030): more units than a block has threads, so the split-K kernels take
    // their outputs in two passes, and the LSTM's Wl no longer fits in shared memory;
    // (3, 2, 32, 32): S = 32 in lstm_backward_v2 (a 5-step butterfly, 1024 threads);
    // (2, 2, 53, 119): the LSTM's padded stride does not fit 227 KB, the odd one does
    for (t, b, h, u) in [
        (1, 1, 88, 88),
        (7, 5, 53, 37),
        (3, 2, 88, 300),
        (5, 3, 129, 1),
        (2, 2, 1030, 1030),
        (3, 2, 32, 32),
        (2, 2, 53, 119),
    ] {
        let d = Dims { t, b, v: 88, h, u };
        let n = t * b;
        let tol = |w: &str, gb: &<Cuda as Backend>::Buf, cv: &[f32]| {
            assert_close(&format!("{w} T{t} B{b} H{h} U{u}"), &g.download(gb).unwrap(), cv, 2e-5, 1e-4)
        };
        // RTRBM
        let wr = rand_vec(&mut r, h * h, 0.3);
        let pre = rand_vec(&mut r, n * h, 1.0);
        let vw = rand_vec(&mut r, n * h, 1.0);
        let mut r_c = rand_vec(&mut r, (t + 1) * b * h, 1.0);
        r_c[b * h..].iter_mut().for_each(|x| *x = 0.0);
        let mut r_g = g.upload(&r_c).unwrap();
        for x in r_c[b * h..].iter_mut() {
            *x = f32::NAN;
        }
        let mut tmp = r_c.clone();
        tmp[b * h..].iter_mut().for_each(|x| *x = f32::NAN);
        g.write(&mut r_g, &tmp).unwrap();
        let (gwr, gpre, gvw) = (g.upload(&wr).unwrap(), g.upload(&pre).unwrap(), g.upload(&vw).unwrap());
        let mut bh_g = poisoned(&g, n * h);
        let mut bh_c = vec![0f32; n * h];
        g.rtrbm_forward(&gwr, &gpre, &gvw, &mut r_g, &mut bh_g, d).unwrap();
        c.rtrbm_forward(&wr, &pre, &vw, &mut r_c, &mut bh_c, d).unwrap();
        tol("rtrbm_forward r", &r_g, &r_c);
        tol("rtrbm_forward bh_t", &bh_g, &bh_c);
        let dbh = rand_vec(&mut r, n * h, 0.1);
        let gdbh = g.upload(&dbh).unwrap();
        let rg_exact = g.upload(&r_c).unwrap();
        let mut gg = poisoned(&g, n * h);
        let mut gc = vec![0f32; n * h];
        g.rtrbm_backward(&gwr, &rg_exact, &gdbh, &mut gg, d).unwrap();
        c.rtrbm_backward(&wr, &r_c, &dbh, &mut gc, d).unwrap();
        tol("rtrbm_backward", &gg, &gc);
        // RNN
        let wuu = rand_vec(&mut r, u * u, 0.3);
        let preu = rand_vec(&mut r, n * u, 1.0);
        let mut u_c = rand_vec(&mut r, (t + 1) * b * u, 0.5);
        let mut tmp = u_c.clone();
        tmp[b * u..].iter_mut().for_each(|x| *x = f32::NAN);
        let mut u_g = g.upload(&tmp).unwrap();
        let (gwuu, gpreu) = (g.upload(&wuu).unwrap(), g.upload(&preu).unwrap());
        g.rnn_forward(&gwuu, &gpreu, &mut u_g, d).unwrap();
        c.rnn_forward(&wuu, &preu, &mut u_c, d).unwrap();
        tol("rnn_forward", &u_g, &u_c);
        let e = rand_vec(&mut r, n * u, 0.1);
        let (ge, gu_exact) = (g.upload(&e).unwrap(), g.upload(&u_c).unwrap());
        let mut dz_g = poisoned(&g, n * u);
        let mut dz_c = vec![0f32; n * u];
        g.rnn_backward(&gwuu, &gu_exact, &ge, &mut dz_g, d).unwrap();
        c.rnn_backward(&wuu, &u_c, &e, &mut dz_c, d).unwrap();
        tol("rnn_backward", &dz_g, &dz_c);
        // LSTM, with and without peepholes
        for with_peep in [false, true] {
            let g4 = 4 * u;
            let wl = rand_vec(&mut r, u * g4, 0.3);
            let peep = rand_vec(&mut r, 3 * u, 0.3);
            let preg = rand_vec(&mut r, n * g4, 1.0);
            let mut l_c = rand_vec(&mut r, (t + 1) * b * u, 0.5);
            let mut c_c = rand_vec(&mut r, (t + 1) * b * u, 0.5);
            let poison_tail = |x: &[f32]| {
                let mut p = x.to_vec();
                p[b * u..].iter_mut().for_each(|e| *e = f32::NAN);
                p
            };
            let (mut l_g, mut c_g) = (g.upload(&poison_tail(&l_c)).unwrap(), g.upload(&poison_tail(&c_c)).unwrap());
            let (gwl, gpeep, gpreg) = (g.upload(&wl).unwrap(), g.upload(&peep).unwrap(), g.upload(&preg).unwrap());
            let mut gates_g = poisoned(&g, n * g4);
            let mut gates_c = vec![0f32; n * g4];
            let pg = if with_peep { Some(&gpeep) } else { None };
            let pc = if with_peep { Some(&peep) } else { None };
            g.lstm_forward(&gwl, pg, &gpreg, &mut l_g, &mut c_g, &mut gates_g, d).unwrap();
            c.lstm_forward(&wl, pc, &preg, &mut l_c, &mut c_c, &mut gates_c, d).unwrap();
            tol(&format!("lstm_forward l peep={with_peep}"), &l_g, &l_c);
            tol(&format!("lstm_forward c peep={with_peep}"), &c_g, &c_c);
            tol(&format!("lstm_forward gates peep={with_peep}"), &gates_g, &gates_c);
            let dl = rand_vec(&mut r, (t + 1) * b * u, 0.1);
            let (gl, gcc, ggates, gdl) =
                (g.upload(&l_c).unwrap(), g.upload(&c_c).unwrap(), g.upload(&gates_c).unwrap(), g.upload(&dl).unwrap());
            let mut dpre_g = poisoned(&g, n * g4);
            let mut ds_g = poisoned(&g, 2 * b * u);
            let dp0 = rand_vec(&mut r, 3 * u, 0.1);
            let mut dp_g = g.upload(&dp0).unwrap();
            let (mut dpre_c, mut ds_c, mut dp_c) = (vec![0f32; n * g4], vec![0f32; 2 * b * u], dp0.clone());
            g.lstm_backward(
                &gwl,
                pg,
                &gl,
                &gcc,
                &ggates,
                &gdl,
                &mut dpre_g,
                &mut ds_g,
                if with_peep { Some(&mut dp_g) } else { None },
                d,
            )
            .unwrap();
            c.lstm_backward(
                &wl,
                pc,
                &l_c,
                &c_c,
                &gates_c,
                &dl,
                &mut dpre_c,
                &mut ds_c,
                if with_peep { Some(&mut dp_c) } else { None },
                d,
            )
            .unwrap();
            tol(&format!("lstm_backward dpre peep={with_peep}"), &dpre_g, &dpre_c);
            tol(&format!("lstm_backward dstate0 peep={with_peep}"), &ds_g, &ds_c);
            tol(&format!("lstm_backward dpeep peep={with_peep}"), &dp_g, &dp_c);
        }
    }
}

/// log sum_v exp(v.bv + sum_j softplus(v W + bh)_j), by enumeration in f64.
fn exact_log_z(w: &[f32], bv: &[f32], bh: &[f32], nv: usize, nh: usize) -> f64 {
    let sp = |x: f64| if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() };
    let mut terms = vec![];
    for bits in 0u32..(1 << nv) {
        let mut s = 0.0;
        for i in 0..nv {
            if bits >> i & 1 == 1 {
                s += bv[i] as f64;
            }
        }
        for j in 0..nh {
            let mut a = bh[j] as f64;
            for i in 0..nv {
                if bits >> i & 1 == 1 {
                    a += w[i * nh + j] as f64;
                }
            }
            s += sp(a);
        }
        terms.push(s);
    }
    let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
}

#[test]
fn ais_estimates_exact_log_z() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let (n, nv, nh, runs) = (3, 12, 10, 256);
    let (w, bv, bh, _) = rbm_inputs(17, n, nv, nh);
    let (gw, gbv, gbh) = (g.upload(&w).unwrap(), g.upload(&bv).unwrap(), g.upload(&bh).unwrap());
    let steps = 1000;
    let betas: Vec<f64> = (0..=steps).map(|k| k as f64 / steps as f64).collect();
    let key = RngKey::new(5, 9);
    let lw_g = g.ais(&gw, &gbv, &gbh, n, nv, nh, runs, &betas, &[key], 1000).unwrap();
    let lw_c = c.ais(&w, &bv, &bh, n, nv, nh, runs, &betas, &[key], 1000).unwrap();
    assert_eq!(lw_g.len(), n * runs);
    let close = close_count(&lw_g, &lw_c, 1e-3);
    eprintln!("AIS: {close} of {} GPU log-weights within 1e-3 of the CPU's", n * runs);
    assert!(close as f64 >= 0.9 * (n * runs) as f64, "AIS: only {close} of {} chains agree with the CPU", n * runs);
    let lw_g2 = g.ais(&gw, &gbv, &gbh, n, nv, nh, runs, &betas, &[key], 1000).unwrap();
    assert_eq!(lw_g, lw_g2, "AIS not reproducible");
    for (f, (est, se)) in ais_estimates(&lw_g, &bv, &bh, nv, nh, runs).into_iter().enumerate() {
        let exact = exact_log_z(&w, &bv[f * nv..(f + 1) * nv], &bh[f * nh..(f + 1) * nh], nv, nh);
        eprintln!("AIS frame {f}: estimate {est:.5} exact {exact:.5} se {se:.5}");
        assert!((est - exact).abs() <= 3.0 * se + 0.01, "AIS frame {f}: estimate {est} vs exact {exact} (se {se})");
    }
}

/// log (mean of e^lw) over each frame's `runs` log-weights plus log Z_0 (the AIS estimate of
/// log Z), with its standard error (delta method), per frame.
fn ais_estimates(lw: &[f64], bv: &[f32], bh: &[f32], nv: usize, nh: usize, runs: usize) -> Vec<(f64, f64)> {
    let sp = |x: f64| if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() };
    (0..lw.len() / runs)
        .map(|f| {
            let (bvf, bhf) = (&bv[f * nv..(f + 1) * nv], &bh[f * nh..(f + 1) * nh]);
            let log_z0: f64 =
                bvf.iter().map(|&x| sp(x as f64)).sum::<f64>() + bhf.iter().map(|&x| sp(x as f64)).sum::<f64>();
            let l = &lw[f * runs..(f + 1) * runs];
            let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ws: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
            let mean = ws.iter().sum::<f64>() / runs as f64;
            let var = ws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (runs - 1) as f64;
            (log_z0 + m + mean.ln(), (var.sqrt() / mean) / (runs as f64).sqrt())
        })
        .collect()
}

/// How many of `a` are within `tol` of `b` (same chains).
fn close_count(a: &[f64], b: &[f64], tol: f64) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| (*x - *y).abs() <= tol).count()
}

/// The tensor-core AIS kernel (kernels/ais_tc.cu): the same chains and uniforms as
/// ais_chains_v2, products on tensor cores (f16 hi + lo split of W, f32 accumulation).
#[test]
fn ais_tensor_cores_agree_with_v2_cpu_and_exact_log_z() {
    let (Some(tc), Some(v2)) = (gpu(), gpu()) else { return };
    let (tc, v2) = (tc.with_ais_kernel(AisKernel::TensorCore), v2.with_ais_kernel(AisKernel::V2));
    let c = cpu();
    // (frames, V, H, runs, betas, weight scale): enumerable; the 88-key piano roll with an odd
    // number of 8-unit tiles (11) and a partial last warp (4 x 37 chains); H % 8 == 4.
    for (case, &(n, nv, nh, runs, steps, ws)) in
        [(3, 12, 16, 256, 1000, 0.5f32), (4, 88, 88, 37, 500, 0.1), (2, 20, 12, 50, 300, 0.5)].iter().enumerate()
    {
        let name = tc.ais_kernel_name(nv, nh);
        assert!(name.starts_with("ais_chains_tc_n"), "case {case}: the tensor-core kernel must apply, got {name}");
        assert!(v2.ais_kernel_name(nv, nh).starts_with("ais_chains_v2_r"));
        let (w, bv, bh, _) = rbm_inputs(17 + case as u64, n, nv, nh);
        let w: Vec<f32> = w.iter().map(|x| x * ws / 0.5).collect();
        let betas: Vec<f64> = (0..=steps).map(|k| k as f64 / steps as f64).collect();
        let key = RngKey::new(5, 9);
        let run = |g: &Cuda| {
            let (gw, gbv, gbh) = (g.upload(&w).unwrap(), g.upload(&bv).unwrap(), g.upload(&bh).unwrap());
            g.ais(&gw, &gbv, &gbh, n, nv, nh, runs, &betas, &[key], 1000).unwrap()
        };
        let (lt, l2) = (run(&tc), run(&v2));
        assert_eq!(run(&tc), lt, "case {case}: {name} not reproducible");
        let lc = c.ais(&w, &bv, &bh, n, nv, nh, runs, &betas, &[key], 1000).unwrap();
        let chains = n * runs;
        assert!(lt.iter().all(|x| x.is_finite()), "case {case}: non-finite log-weights");
        let (near_v2, near_cpu) = (close_count(&lt, &l2, 1e-3), close_count(&lt, &lc, 1e-3));
        eprintln!("case {case} ({name}): {near_v2}/{chains} within 1e-3 of v2, {near_cpu}/{chains} of the CPU");
        assert!(near_v2 as f64 >= 0.9 * chains as f64, "case {case}: {name} vs v2: {near_v2}/{chains}");
        assert!(near_cpu as f64 >= 0.9 * chains as f64, "case {case}: {name} vs CPU: {near_cpu}/{chains}");
        let (et, e2) = (ais_estimates(&lt, &bv, &bh, nv, nh, runs), ais_estimates(&l2, &bv, &bh, nv, nh, runs));
        for f in 0..n {
            let ((a, se), (b, _)) = (et[f], e2[f]);
            assert!((a - b).abs() <= se + 0.01, "case {case} frame {f}: log Z {a} (tc) vs {b} (v2), se {se}");
            if nv <= 16 {
                let exact = exact_log_z(&w, &bv[f * nv..(f + 1) * nv], &bh[f * nh..(f + 1) * nh], nv, nh);
                eprintln!("case {case} frame {f}: tc {a:.5} exact {exact:.5} se {se:.5}");
                assert!((a - exact).abs() <= 3.0 * se + 0.01, "case {case} frame {f}: {a} vs exact {exact} (se {se})");
            }
        }
    }
    // V or H not a multiple of 4: the tensor-core backend runs v2, bit for bit
    let (n, nv, nh, runs) = (2, 10, 12, 20);
    assert!(tc.ais_kernel_name(nv, nh).starts_with("ais_chains_v2_r"));
    let (w, bv, bh, _) = rbm_inputs(3, n, nv, nh);
    let betas: Vec<f64> = (0..=100).map(|k| k as f64 / 100.0).collect();
    let run = |g: &Cuda| {
        let (gw, gbv, gbh) = (g.upload(&w).unwrap(), g.upload(&bv).unwrap(), g.upload(&bh).unwrap());
        g.ais(&gw, &gbv, &gbh, n, nv, nh, runs, &betas, &[RngKey::new(1, 2)], 7).unwrap()
    };
    assert_eq!(run(&tc), run(&v2), "fallback to v2 must be exact");
}

/// No AIS kernel drifts from the f64 CPU over a long schedule on the same chains. The first v2
/// kernel rounded each unit's factor (1 + e^a) / (1 + e^b) to a float near 1 and lost a biased part
/// of the tiny increments (-6e-7 nats per step on the JSB model, an LL 0.006 nats per frame too
/// high at 14,500 betas); every kernel now multiplies factors 1 + y kept as y (ais_unit in
/// common.cuh). The median over chains of the difference from f64 is robust to the few chains
/// whose paths part at a near-tie; the bound is a tenth of that old drift over 5,000 steps.
#[test]
fn ais_kernels_do_not_drift_from_f64_over_a_long_schedule() {
    let (n, nv, nh, runs) = (1, 88, 88, 16);
    let (w, bv, bh, _) = rbm_inputs(41, n, nv, nh);
    let betas = rtrbm::eval::schedule::Schedule::scaled(5000).unwrap().betas;
    let key = [RngKey::new(3, 4)];
    let up = |x: &[f32]| x.iter().map(|&e| e as f64).collect::<Vec<f64>>();
    let lw64 = Cpu::<f64>::new(2).ais(&up(&w), &up(&bv), &up(&bh), n, nv, nh, runs, &betas, &key, 0).unwrap();
    for kernel in [AisKernel::V1, AisKernel::V2, AisKernel::TensorCore] {
        let Some(g) = gpu() else { return };
        let g = g.with_ais_kernel(kernel);
        let name = g.ais_kernel_name(nv, nh);
        let (gw, gbv, gbh) = (g.upload(&w).unwrap(), g.upload(&bv).unwrap(), g.upload(&bh).unwrap());
        let lw = g.ais(&gw, &gbv, &gbh, n, nv, nh, runs, &betas, &key, 0).unwrap();
        let mut d: Vec<f64> = lw.iter().zip(&lw64).map(|(a, b)| a - b).collect();
        d.sort_by(|a, b| a.total_cmp(b));
        let median = d[runs / 2];
        eprintln!("{kernel:?} ({name}): median f32 - f64 {median:.3e} over {runs} chains (log w ~ {:.2})", lw64[0]);
        assert!(median.abs() < 3e-4, "{kernel:?} ({name}): AIS drifts from f64 by {median:.3e} nats per chain");
    }
}

/// The tensor-core Gibbs kernel (opt-in, `RTRBM_KERNELS=gibbs-tc`) against gibbs_chain_v2: the
/// same chains and uniforms with probabilities a few ulps apart, so whole chains agree except where
/// a draw met a near-tie; the frame mask leaves padded chains untouched and the others as drawn
/// without it; a real-valued starting v takes the f32 first product; a pack of 3 with a mask
/// equals each model alone, bit for bit.
#[test]
fn gibbs_tensor_cores_agree_with_v2() {
    let (Some(g), Some(tc)) = (gpu(), gpu()) else { return };
    let tc = tc.with_gibbs_tc(true);
    let key = RngKey::new(0xbeef, 3);
    for (n, nv, nh) in [(300, 88, 88), (77, 12, 20)] {
        let name = tc.gibbs_kernel_name(nv, nh);
        assert!(name.starts_with("gibbs_chain_tc_n"), "the tensor-core kernel must apply, got {name}");
        assert!(g.gibbs_kernel_name(nv, nh).starts_with("gibbs_chain_v2_r"));
        let (w, bv, bh, v) = rbm_inputs(31 + n as u64, n, nv, nh);
        let vr = rand_vec(&mut HostRng::new(9, n as u32), n * nv, 1.0);
        let mask: Vec<f32> = (0..n).map(|c| if c % 5 == 2 { 0.0 } else { 1.0 }).collect();
        for k in [1usize, 25] {
            let run = |b: &Cuda, v0: &[f32], m: Option<&[f32]>| -> Vec<f32> {
                let (gw, gbv, gbh) = (b.upload(&w).unwrap(), b.upload(&bv).unwrap(), b.upload(&bh).unwrap());
                let mut gv = b.upload(v0).unwrap();
                let gm = m.map(|m| b.upload(m).unwrap());
                b.gibbs(&gw, &gbv, &gbh, &mut gv, gm.as_ref(), n, nv, nh, k, false, &[key], 11).unwrap();
                b.download(&gv).unwrap()
            };
            let chains_equal =
                |a: &[f32], b: &[f32]| (0..n).filter(|&c| a[c * nv..(c + 1) * nv] == b[c * nv..(c + 1) * nv]).count();
            for (what, v0) in [("0/1", &v), ("real", &vr)] {
                let (a, b) = (run(&tc, v0, None), run(&g, v0, None));
                assert!(a.iter().all(|&x| x == 0.0 || x == 1.0), "{what} K{k}: samples must be 0/1");
                let same = chains_equal(&a, &b);
                eprintln!("gibbs tc N{n} V{nv} H{nh} K{k} {what} start: {same}/{n} chains equal v2's");
                assert!(same as f64 >= 0.9 * n as f64, "{what} K{k} N{n}: only {same}/{n} chains equal v2's");
                if what == "0/1" {
                    let am = run(&tc, v0, Some(&mask));
                    for c in 0..n {
                        let want = if mask[c] == 0.0 { &v0[c * nv..(c + 1) * nv] } else { &a[c * nv..(c + 1) * nv] };
                        assert_eq!(&am[c * nv..(c + 1) * nv], want, "masked K{k}: chain {c}");
                    }
                }
            }
        }
    }
    // a pack of 3 (its own W, biases, starting v, mask and key per model) against each alone
    let pk = tc.packed(P).unwrap();
    let (g1, mut r) = (gpu().unwrap().with_gibbs_tc(true), HostRng::new(77, 0));
    let (n, nv, nh, k) = (40, 88, 88, 5);
    let (w, bv, bh) = (per_model(&mut r, nv * nh, 0.5), per_model(&mut r, n * nv, 1.5), per_model(&mut r, n * nh, 1.5));
    let (v, masks) = (per_model_bin(&mut r, n * nv, 0.2), per_model_bin(&mut r, n, 0.8));
    let keys: Vec<RngKey> = (0..P).map(|p| RngKey::new(3 + p as u64, 7 * p as u32)).collect();
    let ((pw, lw), (pbv, lbv), (pbh, lbh)) = (up(&g1, &pk, &w), up(&g1, &pk, &bv), up(&g1, &pk, &bh));
    let ((mut pv, mut lv), (pm, lm)) = (up(&g1, &pk, &v), up(&g1, &pk, &masks));
    pk.gibbs(&pw, &pbv, &pbh, &mut pv, Some(&pm), n, nv, nh, k, false, &keys, 11).unwrap();
    for p in 0..P {
        g1.gibbs(&lw[p], &lbv[p], &lbh[p], &mut lv[p], Some(&lm[p]), n, nv, nh, k, false, &keys[p..=p], 11).unwrap();
    }
    same("packed gibbs on tensor cores", &g1, &pk, &pv, &lv);
}

/// A pack of 3 on the tensor-core AIS kernel equals each model alone, bit for bit (each block
/// computes its own model's scale).
#[test]
fn packed_ais_tensor_cores_equal_lone() {
    let Some(g) = gpu() else { return };
    let g = g.with_ais_kernel(AisKernel::TensorCore);
    let pk = g.packed(P).unwrap().with_ais_kernel(AisKernel::TensorCore);
    let (n, nv, nh, runs) = (3, 88, 88, 21);
    assert!(pk.ais_kernel_name(nv, nh).starts_with("ais_chains_tc_n"));
    let mut r = HostRng::new(12, 0);
    // different weight scales per model: different per-block scales
    let ws: Vec<Vec<f32>> = (0..P).map(|p| rand_vec(&mut r, nv * nh, 0.05 * (1 + 3 * p) as f32)).collect();
    let bvs: Vec<Vec<f32>> = (0..P).map(|_| rand_vec(&mut r, n * nv, 1.5)).collect();
    let bhs: Vec<Vec<f32>> = (0..P).map(|_| rand_vec(&mut r, n * nh, 1.5)).collect();
    let (pw, lw) = up(&g, &pk, &ws);
    let (pbv, lbv) = up(&g, &pk, &bvs);
    let (pbh, lbh) = up(&g, &pk, &bhs);
    let betas: Vec<f64> = (0..=200).map(|k| k as f64 / 200.0).collect();
    let keys: Vec<RngKey> = (0..P).map(|p| RngKey::new(5 + p as u64, 9 + 2 * p as u32)).collect();
    let plw = pk.ais(&pw, &pbv, &pbh, n, nv, nh, runs, &betas, &keys, 1000).unwrap();
    let llw: Vec<f64> = (0..P)
        .flat_map(|p| g.ais(&lw[p], &lbv[p], &lbh[p], n, nv, nh, runs, &betas, &keys[p..=p], 1000).unwrap())
        .collect();
    assert_eq!(plw.len(), llw.len());
    let bad = plw.iter().zip(&llw).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(bad, 0, "{bad} packed tensor-core log-weights differ from the lone ones");
}

/// `with_kernel_profile`: every launch is timed under its kernel's name; reset forgets.
#[test]
fn kernel_profile_times_every_launch() {
    let Some(g) = gpu() else { return };
    let g = g.with_kernel_profile();
    let (rows, cols) = (300, 88);
    let mut x = g.upload(&vec![1.0f32; rows * cols]).unwrap();
    let bias = g.upload(&vec![0.5f32; cols]).unwrap();
    for _ in 0..3 {
        g.broadcast_rows(&mut x, &bias, rows, cols).unwrap();
    }
    let prof = g.kernel_profile().unwrap().expect("profiling is on");
    let t =
        prof.iter().find(|t| t.kernel == "broadcast_rows").unwrap_or_else(|| panic!("no broadcast_rows in {prof:?}"));
    assert_eq!(t.launches, 3, "{prof:?}");
    assert!(t.total_ms > 0.0 && t.total_ms < 1e3, "{prof:?}");
    assert_eq!(prof.iter().map(|t| t.launches).sum::<usize>(), 3, "only the 3 launches: {prof:?}");
    assert!(g.download(&x).unwrap().iter().all(|&v| v == 0.5), "profiled launches still compute");
    g.reset_kernel_profile().unwrap();
    assert!(g.kernel_profile().unwrap().unwrap().is_empty());
}

fn host_params(spec: &ModelSpec, seed: u64) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    // default init plus small random biases/initial states so every path carries signal
    let mut r = HostRng::new(seed, 77);
    init_params(spec, 0.1, seed)
        .into_iter()
        .map(|(name, shape, data)| {
            let data = data.into_iter().map(|x| x + 0.05 * (2.0 * r.next_f64() - 1.0)).collect();
            (name, shape, data)
        })
        .collect()
}

fn training_update(spec: ModelSpec, t: usize, b: usize) {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let host = host_params(&spec, 3);
    let mg = Model { spec: spec.clone(), params: Params::from_host(&g, host.clone()).unwrap() };
    let mc = Model { spec: spec.clone(), params: Params::from_host(&c, host).unwrap() };
    let mut wg = Workspace::new(&g, &spec, t, b).unwrap();
    let mut wc = Workspace::new(&c, &spec, t, b).unwrap();
    let mut r = HostRng::new(8, 0);
    // sequences of different lengths (the last ones shorter, so padding is exercised when b > 1)
    let seqs: Vec<Vec<f32>> = (0..b).map(|i| bin_vec(&mut r, (t - i.min(t - 1)) * spec.visible, 0.12)).collect();
    let refs: Vec<&[f32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let (tg, _) = wg.load(&g, &refs, spec.visible).unwrap();
    wc.load(&c, &refs, spec.visible).unwrap();
    mg.forward(&g, &mut wg, tg, false).unwrap();
    mc.forward(&c, &mut wc, tg, false).unwrap();
    let what = spec.kind.name();
    let n = tg * b;
    let cmp = |w: &str, gb: &<Cuda as Backend>::Buf, cb: &Vec<f32>, len: usize, atol: f32, rtol: f32| {
        let gv = g.download(gb).unwrap();
        assert_close(&format!("{what}: {w}"), &gv[..len], &cb[..len], atol, rtol);
    };
    cmp("bv_t", &wg.bv_t, &wc.bv_t, n * spec.visible, 1e-4, 1e-3);
    cmp("bh_t", &wg.bh_t, &wc.bh_t, n * spec.hidden, 1e-4, 1e-3);
    let key = RngKey::new(21, 4);
    mg.negatives(&g, &mut wg, tg, 5, &[key], 0).unwrap();
    mc.negatives(&c, &mut wc, tg, 5, &[key], 0).unwrap();
    let vneg_g = g.download(&wg.vneg).unwrap();
    let diff = vneg_g[..n * spec.visible].iter().zip(&wc.vneg).filter(|(a, b)| a != b).count();
    eprintln!("{what}: {diff} negative draws differ between GPU and CPU");
    assert!(diff as f64 <= 0.05 * (n * spec.visible) as f64, "{what}: {diff} negatives differ");
    // deterministic backward: the GPU uses the CPU's negatives
    g.write(&mut wg.vneg, &wc.vneg).unwrap();
    let mut gg = mg.zeros_like(&g).unwrap();
    let mut gc = mc.zeros_like(&c).unwrap();
    mg.backward(&g, &mut wg, tg, &mut gg).unwrap();
    mc.backward(&c, &mut wc, tg, &mut gc).unwrap();
    for (i, name) in gc.names.iter().enumerate() {
        cmp(&format!("grad {name}"), &gg.bufs[i], &gc.bufs[i], gc.bufs[i].len(), 1e-4, 1e-3);
    }
    let (cost_g, cost_c) = (mg.cost(&g, &mut wg, tg).unwrap()[0], mc.cost(&c, &mut wc, tg).unwrap()[0]);
    assert!((cost_g - cost_c).abs() <= 1e-3 + 1e-4 * cost_c.abs(), "{what}: cost {cost_g} vs {cost_c}");
    let mut mg = mg;
    let mut mc = mc;
    let mut vg = mg.zeros_like(&g).unwrap();
    let mut vc = mc.zeros_like(&c).unwrap();
    for i in 0..gc.names.len() {
        g.sgd_momentum(&mut mg.params.bufs[i], &gg.bufs[i], &mut vg.bufs[i], &[hyper(0.01, 0.9, 1e-4)]).unwrap();
        c.sgd_momentum(&mut mc.params.bufs[i], &gc.bufs[i], &mut vc.bufs[i], &[hyper(0.01, 0.9, 1e-4)]).unwrap();
    }
    for (i, name) in mc.params.names.iter().enumerate() {
        cmp(&format!("updated {name}"), &mg.params.bufs[i], &mc.params.bufs[i], mc.params.bufs[i].len(), 1e-5, 1e-4);
    }
}

#[test]
fn training_update_lstm_rtrbm() {
    let mut spec = ModelSpec::new(ModelKind::LstmRtrbm, 88, 88, 88);
    spec.peepholes = true;
    spec.learned_init = true;
    training_update(spec, 100, 1);
}

#[test]
fn training_update_lstm_rtrbm_batched() {
    training_update(ModelSpec::new(ModelKind::LstmRtrbm, 37, 53, 29), 7, 3);
}

/// Batch 24 x 100 frames: every product of the update has >= 2^24 multiply-adds, so the
/// register-blocked gemm runs (split-K for the k = N weight gradients).
#[test]
fn training_update_lstm_rtrbm_large_batch() {
    training_update(ModelSpec::new(ModelKind::LstmRtrbm, 88, 88, 88), 100, 24);
}

#[test]
fn training_update_rnn_rbm() {
    let mut spec = ModelSpec::new(ModelKind::RnnRbm, 88, 88, 88);
    spec.learned_init = true;
    training_update(spec, 50, 3);
}

#[test]
fn training_update_rtrbm() {
    training_update(ModelSpec::new(ModelKind::Rtrbm, 88, 88, 0), 30, 2);
}

/// Models trained concurrently from 4 threads, each on its own CUDA stream (`Cuda::fork`, what
/// `rtrbm bench sweep` does), end bit-identical to the same models trained one after another on
/// the base stream: streams overlap the work without changing it.
#[test]
fn forked_streams_train_independent_models_identically() {
    let Some(g) = gpu() else { return };
    let data = rtrbm::data::jsb_embedded();
    let chunks: Vec<Vec<f32>> = rtrbm::train::make_chunks(&data.train, 100);
    let train = |be: &Cuda, seed: u64| -> Vec<Vec<f32>> {
        let mut cfg =
            rtrbm::config::Config { model: ModelSpec::new(ModelKind::LstmRtrbm, 88, 40, 24), ..Default::default() };
        cfg.train.seed = seed;
        let mut t = rtrbm::train::Trainer::new(be, cfg).unwrap();
        for u in 0..12u64 {
            let c = &chunks[(seed as usize * 17 + u as usize * 5) % chunks.len()];
            t.step(&[c.as_slice()], u).unwrap();
        }
        t.model.params.bufs.iter().map(|b| be.download(b).unwrap()).collect()
    };
    let alone: Vec<_> = (0..4u64).map(|s| train(&g, s)).collect();
    let together: Vec<_> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4u64)
            .map(|s| {
                let fork = g.fork().unwrap();
                let train = &train;
                scope.spawn(move || train(&fork, s))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for s in 0..4 {
        assert_eq!(alone[s], together[s], "model {s}: forked-stream training differs from the base stream");
    }
    assert_ne!(alone[0], alone[1], "different seeds must give different models");
}

/// The frame store on the device: `gather_frames` on the lone and the packed (P = 3) `Cuda`
/// writes exactly what the CPU writes (bit for bit: it only copies, and rounds 1/frames from f64
/// as the host does), for chunks of different lengths, padding sequences and a finished model
/// (all padding), over a workspace dirtied by an earlier, longer batch.
#[test]
fn gather_frames_matches_cpu() {
    let Some(g) = gpu() else { return };
    let data = rtrbm::data::jsb_embedded();
    let chunks: Vec<Vec<f32>> = rtrbm::train::make_chunks(&data.train[..6], 16);
    let spec = ModelSpec::new(ModelKind::LstmRtrbm, 88, 16, 8);
    let short = chunks.iter().position(|c| c.len() < 16 * 88).expect("a short chunk");
    let last = chunks.len() - 1;
    fn check<B: Backend<F = f32>>(
        be: &B,
        cpu: &Packed<Cpu<f32>>,
        spec: &ModelSpec,
        chunks: &[Vec<f32>],
        b: usize,
        ids: &[Option<usize>],
    ) {
        let store = rtrbm::model::ChunkStore::new(be, chunks, 88).unwrap();
        let cstore = rtrbm::model::ChunkStore::new(cpu, chunks, 88).unwrap();
        let mut ws = Workspace::new(be, spec, 16, b).unwrap();
        let mut wc = Workspace::new(cpu, spec, 16, b).unwrap();
        let first: Vec<Option<usize>> = vec![Some(0); ids.len()];
        ws.gather(be, &store, &first).unwrap();
        assert_eq!(ws.gather(be, &store, ids).unwrap(), wc.gather(cpu, &cstore, ids).unwrap());
        for (name, got, want) in [("v", &ws.v, &wc.v), ("mask", &ws.mask, &wc.mask), ("wmask", &ws.wmask, &wc.wmask)] {
            let what = format!("{}: gather_frames {name} for {ids:?}", be.name());
            assert_bits(&what, &be.download(got).unwrap(), &cpu.download(want).unwrap());
        }
        assert!(ws.gather(be, &store, &vec![Some(chunks.len()); ids.len()]).is_err(), "id past the store");
    }
    check(&g, &Packed::new(Cpu::<f32>::new(1), 1).unwrap(), &spec, &chunks, 1, &[Some(short)]);
    check(&g, &Packed::new(Cpu::<f32>::new(1), 1).unwrap(), &spec, &chunks, 3, &[Some(last), None, Some(2)]);
    let pk = g.packed(P).unwrap();
    let pc = Packed::new(Cpu::<f32>::new(1), P).unwrap();
    check(&pk, &pc, &spec, &chunks, 2, &[Some(1), Some(short), None, None, Some(last), None]);
}

/// Gradient clipping on the device (`Cuda::clip_grad_norm`: no host round trip) equals the
/// trait's host path (`sum_squares` + `scale`) on the same GPU bit for bit, lone and packed
/// (each model its own threshold: clipped, not clipped, 0 = off), and the CPU within 1 ulp.
#[test]
fn clip_grad_norm_on_the_device_equals_the_host_path() {
    let Some(g) = gpu() else { return };
    let mut r = HostRng::new(77, 0);
    let sizes = [88 * 88, 88, 88 * 352 + 5, 1];
    let host_path = |be: &Cuda, xs: &mut [Buf], clip: &[f64]| {
        let mut sq = vec![0.0; clip.len()];
        for x in xs.iter() {
            sq.iter_mut().zip(be.sum_squares(x).unwrap()).for_each(|(a, b)| *a += b);
        }
        let f: Vec<f32> = clip
            .iter()
            .zip(&sq)
            .map(|(&c, &s)| if c > 0.0 && s.sqrt() > c { (c / s.sqrt()) as f32 } else { 1.0 })
            .collect();
        xs.iter_mut().for_each(|x| be.scale(x, &f).unwrap());
    };
    // lone: the norm is about 0.58 * sqrt(39k) ~ 114
    for clip in [1.0, 1e6, 0.0] {
        let host: Vec<Vec<f32>> = sizes.iter().map(|&n| rand_vec(&mut r, n, 1.0)).collect();
        let mut dev: Vec<Buf> = host.iter().map(|h| g.upload(h).unwrap()).collect();
        let mut via_host: Vec<Buf> = host.iter().map(|h| g.upload(h).unwrap()).collect();
        g.clip_grad_norm(&mut dev, &[clip]).unwrap();
        host_path(&g, &mut via_host, &[clip]);
        let mut cpu_x = host.clone();
        cpu().clip_grad_norm(&mut cpu_x, &[clip]).unwrap();
        for t in 0..sizes.len() {
            let d = g.download(&dev[t]).unwrap();
            assert_bits(&format!("clip {clip} tensor {t}"), &d, &g.download(&via_host[t]).unwrap());
            assert_close(&format!("clip {clip} tensor {t} vs CPU"), &d, &cpu_x[t], 1e-6, 1e-6);
            if clip == 0.0 || clip == 1e6 {
                assert_bits(&format!("clip {clip} leaves tensor {t}"), &d, &host[t]);
            }
        }
    }
    // packed: models 0 and 1 clipped (different norms: data scaled by 1 and 3), model 2 off;
    // each equals its lone clipping, so each factor comes from that model's own norm
    let pk = g.packed(P).unwrap();
    let clips = [1.0, 2.0, 0.0];
    let per: Vec<Vec<Vec<f32>>> =
        sizes.iter().map(|&n| (0..P).map(|p| rand_vec(&mut r, n, [1.0, 3.0, 1.0][p])).collect()).collect();
    let mut pbufs: Vec<Buf> = per.iter().map(|x| pk.upload(&x.concat()).unwrap()).collect();
    pk.clip_grad_norm(&mut pbufs, &clips).unwrap();
    assert!(pk.clip_grad_norm(&mut pbufs, &clips[..1]).is_err(), "one threshold for 3 models");
    for p in 0..P {
        let mut lone: Vec<Buf> = per.iter().map(|x| g.upload(&x[p]).unwrap()).collect();
        g.clip_grad_norm(&mut lone, &clips[p..=p]).unwrap();
        for t in 0..sizes.len() {
            let all = pk.download(&pbufs[t]).unwrap();
            let n = all.len() / P;
            assert_bits(
                &format!("packed clip model {p} tensor {t}"),
                &all[p * n..(p + 1) * n],
                &g.download(&lone[t]).unwrap(),
            );
        }
    }
}

// ----- packed models: `Cuda::packed(P)` against the lone `Cuda`, bit for bit ----------------------

/// Models per pack in the packed tests.
const P: usize = 3;

type Buf = <Cuda as Backend>::Buf;

/// P random vectors of n elements (one per model).
fn per_model(r: &mut HostRng, n: usize, scale: f32) -> Vec<Vec<f32>> {
    (0..P).map(|_| rand_vec(r, n, scale)).collect()
}

/// P random binary vectors of n elements.
fn per_model_bin(r: &mut HostRng, n: usize, p: f64) -> Vec<Vec<f32>> {
    (0..P).map(|_| bin_vec(r, n, p)).collect()
}

/// The pack's buffer of `xs` (model-major, as `upload` takes it) and each model's lone buffer.
fn up(g: &Cuda, pk: &Cuda, xs: &[Vec<f32>]) -> (Buf, Vec<Buf>) {
    assert!(xs.len() == P && xs.iter().all(|x| x.len() == xs[0].len()));
    (pk.upload(&xs.concat()).unwrap(), xs.iter().map(|x| g.upload(x).unwrap()).collect())
}

/// Panics unless `got` and `want` are equal bit for bit.
fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{what}: {} of {} elements differ bit for bit; first at {i}: {} against {}",
            bad.len(),
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Slab p of the pack's `pb` equals the lone `lb[p]` bit for bit, for every model (the whole slab,
/// guard elements included).
fn same(what: &str, g: &Cuda, pk: &Cuda, pb: &Buf, lb: &[Buf]) {
    let all = pk.download(pb).unwrap();
    assert_eq!(all.len() % P, 0, "{what}: packed length");
    let per = all.len() / P;
    assert_eq!(pk.len(pb), per, "{what}: per-model length");
    for (p, l) in lb.iter().enumerate() {
        assert_bits(&format!("{what} (model {p})"), &all[p * per..(p + 1) * per], &g.download(l).unwrap());
    }
}

#[test]
fn packed_memory_ops_follow_the_slab_rules() {
    let Some(g) = gpu() else { return };
    assert!(g.packed(0).is_err());
    let pk = g.packed(P).unwrap();
    assert_eq!((g.models(), pk.models(), pk.fork().unwrap().models()), (1, P, P));
    assert!(pk.name().contains("3 models packed"), "{}", pk.name());
    let z = pk.zeros(5).unwrap();
    assert_eq!((pk.len(&z), pk.download(&z).unwrap().len()), (5, 5 * P));
    assert!(pk.upload(&[1.0; 7]).is_err(), "7 values cannot be 3 equal slabs");
    let mut x = pk.upload(&(0..12).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
    assert_eq!(pk.len(&x), 4);
    assert!(pk.write(&mut x, &[0.0; 4]).is_err(), "write takes all slabs");
    // copy within slabs: dst[1..3] = src[2..4] in each model
    let src = pk.upload(&(100..112).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
    pk.copy(&src, 2, &mut x, 1, 2).unwrap();
    assert_eq!(pk.download(&x).unwrap(), vec![0.0, 102.0, 103.0, 3.0, 4.0, 106.0, 107.0, 7.0, 8.0, 110.0, 111.0, 11.0]);
    assert!(pk.copy(&src, 3, &mut x, 0, 2).is_err(), "a copy may not cross a slab");
    // fill covers every slab
    pk.fill(&mut x, 0.5).unwrap();
    assert_eq!(pk.download(&x).unwrap(), vec![0.5; 12]);
}

#[test]
fn packed_gemm_equals_lone() {
    let Some(g) = gpu() else { return };
    let pk = g.packed(P).unwrap();
    // the same pack with grid z limited to 1 block: the blocked gemm launches one model at a
    // time (the path of packs whose models x split-K slices exceed the device's grid z)
    let pk1 = g.packed(P).unwrap().with_grid_z_limit(1);
    let mut r = HostRng::new(41, 0);
    // Both kernels on small shapes (blocked: 37x53x88 and 130x7x300 take split-K, few 64x64
    // tiles and k > 64, so the scratch holds P models' slices; 5x300x17 one slice), and under
    // `Auto` a split-K (300x260x300) and a one-slice (1030x530x100) blocked product.
    let small = [(37, 53, 88), (5, 300, 17), (130, 7, 300)];
    let cases = small
        .iter()
        .flat_map(|&s| [(s, GemmPath::Simple), (s, GemmPath::Blocked)])
        .chain([((300, 260, 300), GemmPath::Auto), ((1030, 530, 100), GemmPath::Auto)]);
    for ((m, n, k), path) in cases {
        for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
            for beta in [0.0f32, 0.5] {
                let (ao, bo, co) = (3, 5, 7);
                // guards of different sizes: each operand has its own slab stride
                let a = per_model(&mut r, ao + m * k + 1, 1.0);
                let b = per_model(&mut r, bo + k * n + 4, 1.0);
                let mut c0 = per_model(&mut r, co + m * n + 2, 1.0);
                if beta == 0.0 {
                    c0.iter_mut().for_each(|c| c[co..co + m * n].fill(f32::NAN));
                }
                let ((pa, la), (pb, lb)) = (up(&g, &pk, &a), up(&g, &pk, &b));
                let (mut pc, mut lc) = up(&g, &pk, &c0);
                let ma = Mat { buf: &pa, offset: ao, trans: at };
                let mb = Mat { buf: &pb, offset: bo, trans: bt };
                pk.gemm_with(path, m, n, k, 0.7, ma, mb, beta, &mut pc, co).unwrap();
                for p in 0..P {
                    let ma = Mat { buf: &la[p], offset: ao, trans: at };
                    let mb = Mat { buf: &lb[p], offset: bo, trans: bt };
                    g.gemm_with(path, m, n, k, 0.7, ma, mb, beta, &mut lc[p], co).unwrap();
                }
                same(&format!("packed gemm {path:?} {m}x{n}x{k} ta={at} tb={bt} beta={beta}"), &g, &pk, &pc, &lc);
                let mut pc1 = pk1.upload(&c0.concat()).unwrap();
                let ma = Mat { buf: &pa, offset: ao, trans: at };
                let mb = Mat { buf: &pb, offset: bo, trans: bt };
                pk1.gemm_with(path, m, n, k, 0.7, ma, mb, beta, &mut pc1, co).unwrap();
                same(&format!("packed gemm in groups of 1 {path:?} {m}x{n}x{k} ta={at} tb={bt}"), &g, &pk1, &pc1, &lc);
            }
        }
    }
}

#[test]
fn packed_elementwise_ops_equal_lone() {
    let Some(g) = gpu() else { return };
    let pk = g.packed(P).unwrap();
    let mut r = HostRng::new(42, 0);
    for (rows, cols) in [(1, 1), (37, 53), (3001, 88)] {
        let n = rows * cols;
        let what = |op: &str| format!("packed {op} {rows}x{cols}");
        let x = per_model(&mut r, n, 2.0);
        let y = per_model(&mut r, n + 3, 2.0);
        let bias = per_model(&mut r, cols + 2, 1.0);
        let ((px, lx), (py, ly)) = (up(&g, &pk, &x), up(&g, &pk, &y));
        let (pbias, lbias) = up(&g, &pk, &bias);
        // broadcast_rows
        let (mut pt, mut lt) = up(&g, &pk, &y);
        pk.broadcast_rows(&mut pt, &pbias, rows, cols).unwrap();
        (0..P).for_each(|p| g.broadcast_rows(&mut lt[p], &lbias[p], rows, cols).unwrap());
        same(&what("broadcast_rows"), &g, &pk, &pt, &lt);
        // sum_rows, beta = 0 over NaN and beta != 0
        for beta in [0.0f32, 0.9] {
            let o0: Vec<Vec<f32>> = per_model(&mut r, cols + 1, 1.0)
                .into_iter()
                .map(|o| if beta == 0.0 { vec![f32::NAN; o.len()] } else { o })
                .collect();
            let (mut po, mut lo) = up(&g, &pk, &o0);
            pk.sum_rows(&px, rows, cols, -0.3, beta, &mut po).unwrap();
            (0..P).for_each(|p| g.sum_rows(&lx[p], rows, cols, -0.3, beta, &mut lo[p]).unwrap());
            same(&what(&format!("sum_rows beta={beta}")), &g, &pk, &po, &lo);
        }
        // copy within slabs, with offsets
        if n > 10 {
            let (mut pt, mut lt) = up(&g, &pk, &y);
            pk.copy(&px, 3, &mut pt, 5, n - 10).unwrap();
            (0..P).for_each(|p| g.copy(&lx[p], 3, &mut lt[p], 5, n - 10).unwrap());
            same(&what("copy"), &g, &pk, &pt, &lt);
        }
        // scale, one factor per model; twice, so the cached factors are replaced once
        for alphas in [[-1.5f32, 0.25, 3.0], [2.0, -0.5, 1.0]] {
            let (mut pt, mut lt) = up(&g, &pk, &x);
            pk.scale(&mut pt, &alphas).unwrap();
            (0..P).for_each(|p| g.scale(&mut lt[p], &alphas[p..=p]).unwrap());
            same(&what(&format!("scale {alphas:?}")), &g, &pk, &pt, &lt);
        }
        assert!(pk.scale(&mut up(&g, &pk, &x).0, &[1.0]).is_err(), "one factor per model");
        // sgd_momentum, different hyper-parameters per model; the same twice (cached), then others
        let vel = per_model(&mut r, n, 0.1);
        let (mut pp, mut lp) = up(&g, &pk, &x);
        let (mut pv, mut lv) = up(&g, &pk, &vel);
        let h1 = [hyper(0.01, 0.9, 1e-3), hyper(0.05, 0.5, 0.0), hyper(0.001, 0.99, 1e-2)];
        let h2 = [hyper(0.02, 0.0, 1e-4), hyper(0.01, 0.9, 1e-3), hyper(0.3, 0.7, 0.5)];
        for hs in [h1, h1, h2] {
            pk.sgd_momentum(&mut pp, &py, &mut pv, &hs).unwrap();
            (0..P).for_each(|p| g.sgd_momentum(&mut lp[p], &ly[p], &mut lv[p], &hs[p..=p]).unwrap());
        }
        same(&what("sgd param"), &g, &pk, &pp, &lp);
        same(&what("sgd vel"), &g, &pk, &pv, &lv);
        assert!(pk.sgd_momentum(&mut pp, &py, &mut pv, &h1[..1]).is_err(), "one hyper set per model");
        // sum_squares: one f64 per model, each the lone sum bit for bit
        let ps = pk.sum_squares(&px).unwrap();
        let ls: Vec<f64> = (0..P).map(|p| g.sum_squares(&lx[p]).unwrap()[0]).collect();
        assert_eq!(ps, ls, "{}", what("sum_squares"));
    }
    // a NaN in one model's slab only
    let pn = pk.upload(&[1.0, 2.0, f32::NAN, 3.0, 4.0, 5.0]).unwrap();
    let s = pk.sum_squares(&pn).unwrap();
    assert!(s[0] == 5.0 && s[1].is_nan() && s[2] == 41.0, "packed sum_squares with a NaN: {s:?}");
}

#[test]
fn packed_rbm_ops_equal_lone() {
    let Some(g) = gpu() else { return };
    // AIS v2 for both: these bias slabs have odd lengths, on which a pack falls back from the
    // tensor-core AIS to v2 (packed_ais_tensor_cores_equal_lone covers that kernel)
    let g = g.with_ais_kernel(AisKernel::V2);
    let pk = g.packed(P).unwrap();
    let mut r = HostRng::new(43, 0);
    // (N, V, H): 88/88 and 37/53 take the v2 chain kernels, 300/200 the v1 ones
    for (n, nv, nh) in [(1, 1, 1), (500, 88, 88), (777, 37, 53), (64, 300, 200)] {
        let what = |op: &str| format!("packed {op} N{n} V{nv} H{nh}");
        let w = per_model(&mut r, nv * nh + 5, 0.5);
        let bv = per_model(&mut r, n * nv + 1, 1.5);
        let bh = per_model(&mut r, n * nh + 2, 1.5);
        let v = per_model_bin(&mut r, n * nv + 3, 0.2);
        let ((pw, lw), (pbv, lbv), (pbh, lbh)) = (up(&g, &pk, &w), up(&g, &pk, &bv), up(&g, &pk, &bh));
        let (pv, lv) = up(&g, &pk, &v);
        // hidden_probs
        let o0 = vec![vec![f32::NAN; n * nh + 4]; P];
        let (mut po, mut lo) = up(&g, &pk, &o0);
        pk.hidden_probs(&pw, &pv, &pbh, n, nv, nh, &mut po).unwrap();
        (0..P).for_each(|p| g.hidden_probs(&lw[p], &lv[p], &lbh[p], n, nv, nh, &mut lo[p]).unwrap());
        same(&what("hidden_probs"), &g, &pk, &po, &lo);
        // cd_stats (v* = the biases' signs: another 0/1 matrix), with per-model weights
        let vneg: Vec<Vec<f32>> = bv.iter().map(|b| b.iter().map(|&x| (x > 0.5) as u8 as f32).collect()).collect();
        let wm = per_model_bin(&mut r, n + 1, 0.7);
        let ((pvn, lvn), (pwm, lwm)) = (up(&g, &pk, &vneg), up(&g, &pk, &wm));
        let outs = |len: usize| up(&g, &pk, &vec![vec![f32::NAN; len]; P]);
        let ((mut ppn, mut lpn), (mut pdh, mut ldh), (mut pdv, mut ldv)) =
            (outs(n * nh + 1), outs(n * nh + 2), outs(n * nv + 3));
        pk.cd_stats(&pw, &pv, &pvn, &pbh, &pwm, n, nv, nh, &mut ppn, &mut pdh, &mut pdv).unwrap();
        for p in 0..P {
            g.cd_stats(&lw[p], &lv[p], &lvn[p], &lbh[p], &lwm[p], n, nv, nh, &mut lpn[p], &mut ldh[p], &mut ldv[p])
                .unwrap();
        }
        same(&what("cd_stats phneg"), &g, &pk, &ppn, &lpn);
        same(&what("cd_stats dbh_t"), &g, &pk, &pdh, &ldh);
        same(&what("cd_stats dbv_t"), &g, &pk, &pdv, &ldv);
        // free_energy
        for gaussian in [false, true] {
            let o0 = vec![vec![f32::NAN; n + 1]; P];
            let (mut po, mut lo) = up(&g, &pk, &o0);
            pk.free_energy(&pw, &pbv, &pbh, &pv, n, nv, nh, gaussian, &mut po).unwrap();
            (0..P).for_each(|p| {
                g.free_energy(&lw[p], &lbv[p], &lbh[p], &lv[p], n, nv, nh, gaussian, &mut lo[p]).unwrap()
            });
            same(&what(&format!("free_energy gaussian={gaussian}")), &g, &pk, &po, &lo);
        }
        // gibbs: a key per model, samples bit for bit (binary: v2 or v1; Gaussian: v1)
        let keys: Vec<RngKey> = (0..P).map(|p| RngKey::new(0xfeed + p as u64, 2 + p as u32)).collect();
        for (k, gaussian) in [(1usize, false), (25, false), (1, true)] {
            let (mut pt, mut lt) = up(&g, &pk, &v);
            pk.gibbs(&pw, &pbv, &pbh, &mut pt, None, n, nv, nh, k, gaussian, &keys, 11).unwrap();
            for p in 0..P {
                g.gibbs(&lw[p], &lbv[p], &lbh[p], &mut lt[p], None, n, nv, nh, k, gaussian, &keys[p..=p], 11).unwrap();
            }
            same(&what(&format!("gibbs K{k} gaussian={gaussian}")), &g, &pk, &pt, &lt);
        }
        assert!(pk.gibbs(&pw, &pbv, &pbh, &mut up(&g, &pk, &v).0, None, n, nv, nh, 1, false, &keys[..1], 11).is_err());
        // with a frame mask per model (model p pads its last p + 1 frames; model 2 also frame 0)
        let masks: Vec<Vec<f32>> = (0..P)
            .map(|p| (0..n).map(|i| if i + p + 1 >= n || (p == 2 && i == 0) { 0.0 } else { 1.0 }).collect())
            .collect();
        let (pm, lm) = up(&g, &pk, &masks);
        for (k, gaussian) in [(2usize, false), (2, true)] {
            let (mut pt, mut lt) = up(&g, &pk, &v);
            pk.gibbs(&pw, &pbv, &pbh, &mut pt, Some(&pm), n, nv, nh, k, gaussian, &keys, 11).unwrap();
            for p in 0..P {
                let key = &keys[p..=p];
                g.gibbs(&lw[p], &lbv[p], &lbh[p], &mut lt[p], Some(&lm[p]), n, nv, nh, k, gaussian, key, 11).unwrap();
            }
            same(&what(&format!("masked gibbs K{k} gaussian={gaussian}")), &g, &pk, &pt, &lt);
        }
        // another key for model 0 changes model 0's samples only
        if n > 1 {
            let mut keys2 = keys.clone();
            keys2[0] = RngKey::new(1, 1);
            let (mut pa, _) = up(&g, &pk, &v);
            let (mut pb, _) = up(&g, &pk, &v);
            pk.gibbs(&pw, &pbv, &pbh, &mut pa, None, n, nv, nh, 1, false, &keys, 11).unwrap();
            pk.gibbs(&pw, &pbv, &pbh, &mut pb, None, n, nv, nh, 1, false, &keys2, 11).unwrap();
            let (a, b) = (pk.download(&pa).unwrap(), pk.download(&pb).unwrap());
            let per = a.len() / P;
            assert_ne!(a[..per], b[..per], "model 0's key must change model 0's samples");
            assert_eq!(a[per..], b[per..], "model 0's key must not change the other models");
        }
        // gibbs_marginals: one key for every model (evaluation); AIS: a key per model (validation)
        {
            let key = RngKey::new(99, 1);
            let o0 = vec![vec![f32::NAN; n * nv + 1]; P];
            let (mut po, mut lo) = up(&g, &pk, &o0);
            pk.gibbs_marginals(&pw, &pbv, &pbh, n, nv, nh, 3, 5, 10, key, 100, &mut po).unwrap();
            for p in 0..P {
                g.gibbs_marginals(&lw[p], &lbv[p], &lbh[p], n, nv, nh, 3, 5, 10, key, 100, &mut lo[p]).unwrap();
            }
            same(&what("gibbs_marginals"), &g, &pk, &po, &lo);
            let betas: Vec<f64> = (0..=50).map(|k| k as f64 / 50.0).collect();
            let runs = 8;
            let akeys: Vec<RngKey> = (0..P).map(|p| RngKey::new(5 + p as u64, 9 + 2 * p as u32)).collect();
            let plw = pk.ais(&pw, &pbv, &pbh, n, nv, nh, runs, &betas, &akeys, 1000).unwrap();
            let llw: Vec<f64> = (0..P)
                .flat_map(|p| g.ais(&lw[p], &lbv[p], &lbh[p], n, nv, nh, runs, &betas, &akeys[p..=p], 1000).unwrap())
                .collect();
            assert!(pk.ais(&pw, &pbv, &pbh, n, nv, nh, runs, &betas, &akeys[..1], 1000).is_err(), "one key for 3");
            assert_eq!(plw.len(), P * n * runs, "{}", what("ais length"));
            let bad = plw.iter().zip(&llw).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(bad, 0, "{}: {bad} log-weights differ from the lone ones", what("ais"));
        }
    }
}

#[test]
fn packed_recurrences_equal_lone() {
    let Some(g) = gpu() else { return };
    let pk = g.packed(P).unwrap();
    let mut r = HostRng::new(44, 0);
    // U = 300: Wl (300 x 1200) does not fit in shared memory, so the LSTM reads it from global
    for (t, b, h, u) in [(1, 1, 88, 88), (7, 5, 53, 37), (3, 2, 88, 300), (5, 3, 129, 1)] {
        let d = Dims { t, b, v: 88, h, u };
        let n = t * b;
        let what = |op: &str| format!("packed {op} T{t} B{b} H{h} U{u}");
        let nan = |len: usize| vec![vec![f32::NAN; len]; P];
        // RTRBM
        let wr = per_model(&mut r, h * h + 1, 0.3);
        let pre = per_model(&mut r, n * h + 2, 1.0);
        let vw = per_model(&mut r, n * h + 3, 1.0);
        let r0: Vec<Vec<f32>> = per_model(&mut r, (t + 1) * b * h + 4, 1.0)
            .into_iter()
            .map(|mut x| {
                x[b * h..].fill(f32::NAN);
                x
            })
            .collect();
        let ((pwr, lwr), (ppre, lpre), (pvw, lvw)) = (up(&g, &pk, &wr), up(&g, &pk, &pre), up(&g, &pk, &vw));
        let (mut prr, mut lrr) = up(&g, &pk, &r0);
        let (mut pbh, mut lbh) = up(&g, &pk, &nan(n * h + 5));
        pk.rtrbm_forward(&pwr, &ppre, &pvw, &mut prr, &mut pbh, d).unwrap();
        (0..P).for_each(|p| g.rtrbm_forward(&lwr[p], &lpre[p], &lvw[p], &mut lrr[p], &mut lbh[p], d).unwrap());
        same(&what("rtrbm_forward r"), &g, &pk, &prr, &lrr);
        same(&what("rtrbm_forward bh_t"), &g, &pk, &pbh, &lbh);
        let dbh = per_model(&mut r, n * h + 1, 0.1);
        let (pdbh, ldbh) = up(&g, &pk, &dbh);
        let (mut pg, mut lg) = up(&g, &pk, &nan(n * h + 2));
        pk.rtrbm_backward(&pwr, &prr, &pdbh, &mut pg, d).unwrap();
        (0..P).for_each(|p| g.rtrbm_backward(&lwr[p], &lrr[p], &ldbh[p], &mut lg[p], d).unwrap());
        same(&what("rtrbm_backward"), &g, &pk, &pg, &lg);
        // RNN
        let wuu = per_model(&mut r, u * u + 2, 0.3);
        let preu = per_model(&mut r, n * u + 1, 1.0);
        let u0: Vec<Vec<f32>> = per_model(&mut r, (t + 1) * b * u + 3, 0.5)
            .into_iter()
            .map(|mut x| {
                x[b * u..].fill(f32::NAN);
                x
            })
            .collect();
        let ((pwuu, lwuu), (ppreu, lpreu)) = (up(&g, &pk, &wuu), up(&g, &pk, &preu));
        let (mut pu, mut lu) = up(&g, &pk, &u0);
        pk.rnn_forward(&pwuu, &ppreu, &mut pu, d).unwrap();
        (0..P).for_each(|p| g.rnn_forward(&lwuu[p], &lpreu[p], &mut lu[p], d).unwrap());
        same(&what("rnn_forward"), &g, &pk, &pu, &lu);
        let e = per_model(&mut r, n * u + 4, 0.1);
        let (pe, le) = up(&g, &pk, &e);
        let (mut pdz, mut ldz) = up(&g, &pk, &nan(n * u + 1));
        pk.rnn_backward(&pwuu, &pu, &pe, &mut pdz, d).unwrap();
        (0..P).for_each(|p| g.rnn_backward(&lwuu[p], &lu[p], &le[p], &mut ldz[p], d).unwrap());
        same(&what("rnn_backward"), &g, &pk, &pdz, &ldz);
        // LSTM, with and without peepholes
        for with_peep in [false, true] {
            let g4 = 4 * u;
            let what = |op: &str| what(&format!("{op} peep={with_peep}"));
            let wl = per_model(&mut r, u * g4 + 1, 0.3);
            let peep = per_model(&mut r, 3 * u + 2, 0.3);
            let preg = per_model(&mut r, n * g4 + 3, 1.0);
            let state0 = |r: &mut HostRng, extra: usize| -> Vec<Vec<f32>> {
                per_model(r, (t + 1) * b * u + extra, 0.5)
                    .into_iter()
                    .map(|mut x| {
                        x[b * u..].fill(f32::NAN);
                        x
                    })
                    .collect()
            };
            let (l0, c0) = (state0(&mut r, 1), state0(&mut r, 4));
            let ((pwl, lwl), (ppeep, lpeep), (ppreg, lpreg)) =
                (up(&g, &pk, &wl), up(&g, &pk, &peep), up(&g, &pk, &preg));
            let ((mut pl, mut ll), (mut pc, mut lc)) = (up(&g, &pk, &l0), up(&g, &pk, &c0));
            let (mut pgates, mut lgates) = up(&g, &pk, &nan(n * g4 + 2));
            pk.lstm_forward(&pwl, with_peep.then_some(&ppeep), &ppreg, &mut pl, &mut pc, &mut pgates, d).unwrap();
            for p in 0..P {
                let peep = with_peep.then_some(&lpeep[p]);
                g.lstm_forward(&lwl[p], peep, &lpreg[p], &mut ll[p], &mut lc[p], &mut lgates[p], d).unwrap();
            }
            same(&what("lstm_forward l"), &g, &pk, &pl, &ll);
            same(&what("lstm_forward c"), &g, &pk, &pc, &lc);
            same(&what("lstm_forward gates"), &g, &pk, &pgates, &lgates);
            let dl = per_model(&mut r, (t + 1) * b * u + 2, 0.1);
            let dp0 = per_model(&mut r, 3 * u + 1, 0.1);
            let (pdl, ldl) = up(&g, &pk, &dl);
            let (mut pdpre, mut ldpre) = up(&g, &pk, &nan(n * g4 + 1));
            let (mut pds, mut lds) = up(&g, &pk, &nan(2 * b * u + 3));
            let (mut pdp, mut ldp) = up(&g, &pk, &dp0);
            pk.lstm_backward(
                &pwl,
                with_peep.then_some(&ppeep),
                &pl,
                &pc,
                &pgates,
                &pdl,
                &mut pdpre,
                &mut pds,
                if with_peep { Some(&mut pdp) } else { None },
                d,
            )
            .unwrap();
            for p in 0..P {
                g.lstm_backward(
                    &lwl[p],
                    with_peep.then_some(&lpeep[p]),
                    &ll[p],
                    &lc[p],
                    &lgates[p],
                    &ldl[p],
                    &mut ldpre[p],
                    &mut lds[p],
                    if with_peep { Some(&mut ldp[p]) } else { None },
                    d,
                )
                .unwrap();
            }
            same(&what("lstm_backward dpre"), &g, &pk, &pdpre, &ldpre);
            same(&what("lstm_backward dstate0"), &g, &pk, &pds, &lds);
            same(&what("lstm_backward dpeep"), &g, &pk, &pdp, &ldp);
        }
    }
}

/// One whole training update (forward, CD-K negatives, BPTT gradients, momentum SGD with
/// different hyper-parameters per model) of P models packed on `Cuda::packed(P)`, against each
/// model alone on `Cuda` (bit for bit) and against `Packed<Cpu<f32>>` (training-update
/// tolerances). Model p's sequences are shorter than model p-1's, so the pack's chunk is padded
/// differently in every model; the lone runs use the pack's T (their padded tail is zero, as in
/// the pack).
fn packed_training_update(spec: ModelSpec, t: usize, b: usize) {
    let Some(g) = gpu() else { return };
    let pk = g.packed(P).unwrap();
    let pc = Packed::new(Cpu::<f32>::new(1), P).unwrap();
    let what = format!("packed {}", spec.kind.name());
    let nv = spec.visible;
    let hosts: Vec<_> = (0..P).map(|p| host_params(&spec, 3 + p as u64)).collect();
    let mut mp = Model { spec: spec.clone(), params: Params::from_host_models(&pk, hosts.clone()).unwrap() };
    let mut mc = Model { spec: spec.clone(), params: Params::from_host_models(&pc, hosts.clone()).unwrap() };
    let mut ml: Vec<Model<Cuda>> =
        hosts.iter().map(|h| Model { spec: spec.clone(), params: Params::from_host(&g, h.clone()).unwrap() }).collect();
    // model p, sequence i: t - p - i frames (at least 1)
    let mut r = HostRng::new(9, 0);
    let seqs: Vec<Vec<f32>> =
        (0..P * b).map(|q| bin_vec(&mut r, (t - (q / b + q % b).min(t - 1)) * nv, 0.12)).collect();
    let refs: Vec<&[f32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let mut wp = Workspace::new(&pk, &spec, t, b).unwrap();
    let mut wc = Workspace::new(&pc, &spec, t, b).unwrap();
    let mut wl: Vec<Workspace<Cuda>> = (0..P).map(|_| Workspace::new(&g, &spec, t, b).unwrap()).collect();
    let (tp, real) = wp.load(&pk, &refs, nv).unwrap();
    assert_eq!(tp, t);
    assert_eq!(wc.load(&pc, &refs, nv).unwrap(), (tp, real.clone()));
    // each lone model runs on its own chunk length (the pack pads to the longest, tp): its
    // results must not depend on the other models' lengths
    let mut tls = vec![];
    for p in 0..P {
        let (tl, rl) = wl[p].load(&g, &refs[p * b..(p + 1) * b], nv).unwrap();
        assert_eq!((tl, rl[0]), (t - p.min(t - 1), real[p]), "{what}: model {p} chunk");
        tls.push(tl);
    }
    let n = tp * b;
    // pack vs lone: the first `len(p)` elements of every slab, bit for bit
    let vs_lone = |w: &str, pb: &Buf, lb: &[&Buf], len: &dyn Fn(usize) -> usize| {
        let all = pk.download(pb).unwrap();
        let per = all.len() / P;
        for p in 0..P {
            let lone = g.download(lb[p]).unwrap();
            let len = len(p);
            assert_bits(&format!("{what}: {w} (model {p})"), &all[p * per..p * per + len], &lone[..len]);
        }
    };
    // pack vs CPU: the first `len` elements of every slab, within tolerance
    let vs_cpu = |w: &str, pb: &Buf, cb: &Vec<Vec<f32>>, len: usize, atol: f32, rtol: f32| {
        let all = pk.download(pb).unwrap();
        let per = all.len() / P;
        for p in 0..P {
            assert_close(
                &format!("{what}: {w} (model {p}) vs CPU"),
                &all[p * per..p * per + len],
                &cb[p][..len],
                atol,
                rtol,
            );
        }
    };
    // forward
    mp.forward(&pk, &mut wp, tp, false).unwrap();
    mc.forward(&pc, &mut wc, tp, false).unwrap();
    (0..P).for_each(|p| ml[p].forward(&g, &mut wl[p], tls[p], false).unwrap());
    vs_lone("bv_t", &wp.bv_t, &wl.iter().map(|w| &w.bv_t).collect::<Vec<_>>(), &|p| tls[p] * b * nv);
    vs_lone("bh_t", &wp.bh_t, &wl.iter().map(|w| &w.bh_t).collect::<Vec<_>>(), &|p| tls[p] * b * spec.hidden);
    vs_cpu("bv_t", &wp.bv_t, &wc.bv_t, n * nv, 1e-4, 1e-3);
    vs_cpu("bh_t", &wp.bh_t, &wc.bh_t, n * spec.hidden, 1e-4, 1e-3);
    // negatives: one key per model
    let keys: Vec<RngKey> = (0..P).map(|p| RngKey::new(21 + p as u64, 4)).collect();
    mp.negatives(&pk, &mut wp, tp, 5, &keys, 0).unwrap();
    mc.negatives(&pc, &mut wc, tp, 5, &keys, 0).unwrap();
    (0..P).for_each(|p| ml[p].negatives(&g, &mut wl[p], tls[p], 5, &keys[p..=p], 0).unwrap());
    vs_lone("negatives", &wp.vneg, &wl.iter().map(|w| &w.vneg).collect::<Vec<_>>(), &|p| tls[p] * b * nv);
    let vneg = pk.download(&wp.vneg).unwrap();
    let per = vneg.len() / P;
    for p in 0..P {
        let diff = vneg[p * per..p * per + n * nv].iter().zip(&wc.vneg[p]).filter(|(a, b)| a != b).count();
        eprintln!("{what}: model {p}: {diff} negative draws differ between GPU and CPU");
        assert!(diff as f64 <= 0.05 * (n * nv) as f64, "{what}: model {p}: {diff} negatives differ");
    }
    // deterministic backward: the GPU runs use the CPU's negatives
    pk.write(&mut wp.vneg, &pc.download(&wc.vneg).unwrap()).unwrap();
    (0..P).for_each(|p| g.write(&mut wl[p].vneg, &wc.vneg[p]).unwrap());
    let mut gp = mp.zeros_like(&pk).unwrap();
    let mut gc = mc.zeros_like(&pc).unwrap();
    let mut gl: Vec<Params<Cuda>> = ml.iter().map(|m| m.zeros_like(&g).unwrap()).collect();
    mp.backward(&pk, &mut wp, tp, &mut gp).unwrap();
    mc.backward(&pc, &mut wc, tp, &mut gc).unwrap();
    (0..P).for_each(|p| ml[p].backward(&g, &mut wl[p], tls[p], &mut gl[p]).unwrap());
    for (i, name) in gc.names.iter().enumerate() {
        let len = pk.len(&gp.bufs[i]);
        vs_lone(&format!("grad {name}"), &gp.bufs[i], &gl.iter().map(|x| &x.bufs[i]).collect::<Vec<_>>(), &|_| len);
        vs_cpu(&format!("grad {name}"), &gp.bufs[i], &gc.bufs[i], len, 1e-4, 1e-3);
    }
    let cost_p = mp.cost(&pk, &mut wp, tp).unwrap();
    let cost_c = mc.cost(&pc, &mut wc, tp).unwrap();
    for p in 0..P {
        let cost_l = ml[p].cost(&g, &mut wl[p], tls[p]).unwrap()[0];
        assert_eq!(
            cost_p[p].to_bits(),
            cost_l.to_bits(),
            "{what}: model {p}: cost {} packed vs {cost_l} lone",
            cost_p[p]
        );
        assert!(
            (cost_p[p] - cost_c[p]).abs() <= 1e-3 + 1e-4 * cost_c[p].abs(),
            "{what}: model {p}: cost {} vs CPU {}",
            cost_p[p],
            cost_c[p]
        );
    }
    // momentum SGD, different hyper-parameters per model
    let hs = [hyper(0.01, 0.9, 1e-4), hyper(0.05, 0.5, 0.0), hyper(0.002, 0.99, 1e-3)];
    let mut vp = mp.zeros_like(&pk).unwrap();
    let mut vc = mc.zeros_like(&pc).unwrap();
    let mut vl: Vec<Params<Cuda>> = ml.iter().map(|m| m.zeros_like(&g).unwrap()).collect();
    for i in 0..gc.names.len() {
        pk.sgd_momentum(&mut mp.params.bufs[i], &gp.bufs[i], &mut vp.bufs[i], &hs).unwrap();
        pc.sgd_momentum(&mut mc.params.bufs[i], &gc.bufs[i], &mut vc.bufs[i], &hs).unwrap();
        for p in 0..P {
            g.sgd_momentum(&mut ml[p].params.bufs[i], &gl[p].bufs[i], &mut vl[p].bufs[i], &hs[p..=p]).unwrap();
        }
    }
    for (i, name) in mc.params.names.iter().enumerate() {
        let len = pk.len(&mp.params.bufs[i]);
        let lone: Vec<&Buf> = ml.iter().map(|m| &m.params.bufs[i]).collect();
        vs_lone(&format!("updated {name}"), &mp.params.bufs[i], &lone, &|_| len);
        vs_cpu(&format!("updated {name}"), &mp.params.bufs[i], &mc.params.bufs[i], len, 1e-5, 1e-4);
    }
    // and the models differ from each other (distinct data, parameters and hyper-parameters)
    let w = pk.download(mp.params.get("W").unwrap()).unwrap();
    let per = w.len() / P;
    assert_ne!(w[..per], w[per..2 * per], "{what}: models 0 and 1 should differ");
}

#[test]
fn packed_training_update_lstm_rtrbm() {
    let mut spec = ModelSpec::new(ModelKind::LstmRtrbm, 88, 88, 88);
    spec.peepholes = true;
    spec.learned_init = true;
    packed_training_update(spec, 30, 2);
}

#[test]
fn packed_training_update_lstm_rtrbm_odd_sizes() {
    packed_training_update(ModelSpec::new(ModelKind::LstmRtrbm, 37, 53, 29), 7, 3);
}

/// Batch 24 x 100 frames: the register-blocked gemm runs, with split-K for the k = N weight
/// gradients (its scratch holds the P models' slices).
#[test]
fn packed_training_update_lstm_rtrbm_large_batch() {
    packed_training_update(ModelSpec::new(ModelKind::LstmRtrbm, 88, 88, 88), 100, 24);
}

#[test]
fn packed_training_update_rnn_rbm() {
    let mut spec = ModelSpec::new(ModelKind::RnnRbm, 88, 88, 88);
    spec.learned_init = true;
    packed_training_update(spec, 20, 3);
}

#[test]
fn packed_training_update_rtrbm() {
    let mut spec = ModelSpec::new(ModelKind::Rtrbm, 88, 88, 0);
    spec.learned_init = true;
    packed_training_update(spec, 15, 2);
}

/// A whole sweep on the GPU, packed automatically (two pack keys, two runs each), against the same
/// sweep trained run by run on the CPU: the sweep queue, the packed trainer and the packed
/// validation of `train.rs` on the CUDA backend, end to end. Twelve updates of tiny models
/// (V 88, H 16, U 8, CD-2), validated after every epoch. A Gibbs draw whose uniform lies within
/// rounding of its probability can flip on one device and not the other (about 2e-7 per draw,
/// 2e5 draws here) and moves a few weights by up to lr; so each parameter tensor is compared by
/// its relative L2 difference (<= 2e-2; a run trained with another run's data, key or slab
/// differs by order 1) and the validation figures within 1e-3 nats (a flip moves them by ~1e-5).
#[test]
fn packed_gpu_sweep_matches_the_cpu_sweep() {
    if gpu().is_some() {
        gpu_sweep_matches_the_cpu_sweep(vec![0]);
    }
}

/// The same sweep over two GPUs (`--devices 0,1`: one worker per GPU, one shared queue), where a
/// machine has two (the emulator's child run has, RTRBM_EMU_DEVICES=2): both workers train, and
/// every run equals its CPU twin as above.
#[test]
fn sweep_over_two_gpus_matches_the_cpu_sweep() {
    if gpu().is_none() {
        return;
    }
    let n = cudarc::driver::CudaContext::device_count().unwrap_or(0);
    if n < 2 {
        eprintln!("{n} CUDA device(s): the two-GPU sweep needs two");
        return;
    }
    gpu_sweep_matches_the_cpu_sweep(vec![0, 1]);
}

fn gpu_sweep_matches_the_cpu_sweep(gpus: Vec<usize>) {
    use rtrbm::sweep::queue::{self, Devices, QueueOptions};
    use rtrbm::sweep::Sweep;
    let two = gpus.len() > 1;
    let dir = tempfile::tempdir().unwrap();
    let mut d = rtrbm::data::jsb_embedded();
    d.train.truncate(3);
    d.valid.truncate(2);
    d.test.truncate(2);
    let data = dir.path().join("small.json");
    rtrbm::data::json::write(&data, &d).unwrap();
    // the config is compiled in: a GPU machine runs this binary away from its checkout
    std::fs::write(dir.path().join("tiny.yaml"), include_str!("../configs/tiny.yaml")).unwrap();
    let sweep_at = |name: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let text = format!(
            "name: {name}\nout: out\nbase: ../tiny.yaml\nconfig:\n  data: {{path: {}}}\n  train: {{max_updates: 12, epochs: 3, valid_every: 1, valid_max_frames: 40}}\ngrid:\n  train.seed: [1, 2]\n  model.kind: [lstm_rtrbm, rnn_rbm]\n",
            data.display()
        );
        std::fs::write(sub.join("sweep.yaml"), text).unwrap();
        Sweep::load(&sub.join("sweep.yaml")).unwrap()
    };
    let (on_gpu, on_cpu) = (sweep_at("gpu"), sweep_at("cpu"));
    let opts = |devices| QueueOptions { devices, verbose: false, ..Default::default() };
    let s = queue::run_sweep(&on_gpu, &opts(Devices::Gpus(gpus))).unwrap();
    assert_eq!((s.done_now, s.failed.len()), (4, 0), "{s:?}");
    let s =
        queue::run_sweep(&on_cpu, &QueueOptions { workers: Some(2), threads: Some(1), ..opts(Devices::Cpu) }).unwrap();
    assert_eq!((s.done_now, s.failed.len()), (4, 0), "{s:?}");
    let mut workers = std::collections::BTreeSet::new();
    for (rg, rc) in on_gpu.runs.iter().zip(&on_cpu.runs) {
        let (dg, dc) = (on_gpu.run_dir(rg), on_cpu.run_dir(rc));
        let (done_g, done_c) = (queue::read_done(&dg).unwrap(), queue::read_done(&dc).unwrap());
        if !two {
            assert_eq!(done_g.pack_size, 2, "{}: the GPU worker packs the two runs of each model kind", rg.name);
        }
        workers.insert(done_g.worker.clone());
        assert!(done_g.device.contains("sm_"), "{}: trained on {}", rg.name, done_g.device);
        assert_eq!(done_g.updates, done_c.updates, "{}", rg.name);
        for (what, a, b) in
            [("final", done_g.final_valid, done_c.final_valid), ("best", done_g.best_valid, done_c.best_valid)]
        {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-3, "{}: {what} validation gpu {a} cpu {b}", rg.name),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{}: {what} validation", rg.name),
            }
        }
        let load = |d: &std::path::Path| rtrbm::checkpoint::load(&d.join("checkpoint.safetensors")).unwrap().params;
        let (pg, pc) = (load(&dg), load(&dc));
        assert_eq!(pg.len(), pc.len());
        for ((name, shape_g, g), (_, shape_c, c)) in pg.iter().zip(&pc) {
            assert_eq!(shape_g, shape_c, "{}: {name}", rg.name);
            let diff: f64 = g.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            let norm: f64 = c.iter().map(|b| b * b).sum::<f64>().sqrt();
            assert!(diff <= 2e-2 * norm.max(1e-6), "{}: {name}: |gpu - cpu| = {diff:e}, |cpu| = {norm:e}", rg.name);
        }
    }
    if two {
        assert_eq!(workers.len(), 2, "both GPU workers train: {workers:?}");
    }
}

/// The calling thread's driver calls so far, from the emulator's `rtrbm_emu_counters` (None on a
/// real driver): launches, H2D copies, H2D bytes, D2H copies, D2H bytes, D2D copies, memsets,
/// host synchronisations, allocations, frees, event records, stream waits, graph launches.
fn emu_counters() -> Option<[u64; 13]> {
    // SAFETY: the driver library is loaded (a Cuda exists); the symbol, where it exists, is
    // `void rtrbm_emu_counters(unsigned long long out[13])` (tests/cuda-emu/driver.cpp).
    unsafe {
        let lib = cudarc::driver::sys::culib();
        let f = lib.get::<unsafe extern "C" fn(*mut u64)>(b"rtrbm_emu_counters").ok()?;
        let mut out = [0u64; 13];
        f(out.as_mut_ptr());
        Some(out)
    }
}

/// What a training update asks of the driver (issue "GPU speed": no host-device copies inside an
/// update, no per-step synchronisation), counted by the emulator's driver: after a warm-up, three
/// updates of LSTM-RTRBM 88/88/88 (CD-2) on chunks resident on the device, lone with batch 1 and 4
/// and with gradient clipping, and a pack of 2: no device-to-host copy, no synchronisation, no
/// allocation or free; one host-to-device copy per update (the chunk spans, 8 bytes per sequence
/// and model). Then the same updates recorded ([`Trainer::record_updates`]): per update, the
/// spans and the staged Gibbs keys (16 bytes per model) copied, the gather launched and one graph
/// launched, nothing else. On a real driver there are no counters: the test says so and returns.
#[test]
fn a_training_update_copies_back_and_synchronises_nothing() {
    use rtrbm::config::{CdStep, Config};
    use rtrbm::model::ChunkStore;
    use rtrbm::train::{make_chunks, Trainer};
    let Some(g) = gpu() else { return };
    if emu_counters().is_none() {
        eprintln!("not on the CUDA emulator: its driver counters are what this test reads");
        return;
    }
    let chunks: Vec<Vec<f32>> = make_chunks(&rtrbm::data::jsb_embedded().train[..6], 40);
    for (batch, clip, pack) in [(1usize, 0.0, 1usize), (4, 0.0, 1), (1, 1.0, 1), (2, 0.0, 2)] {
        let be = if pack == 1 { g.fork().unwrap() } else { g.packed(pack).unwrap() };
        let mut cfg = Config { model: ModelSpec::new(ModelKind::LstmRtrbm, 88, 88, 88), ..Config::default() };
        cfg.train.batch = batch;
        cfg.train.grad_clip = clip;
        cfg.train.cd_schedule = vec![CdStep { from: 0, k: 2 }];
        let cfgs: Vec<Config> = (0..pack)
            .map(|p| {
                let mut c = cfg.clone();
                c.train.seed += p as u64;
                c
            })
            .collect();
        let store = ChunkStore::new(&be, &chunks, 88).unwrap();
        let mut trainer = Trainer::new_packed(&be, cfgs.clone()).unwrap();
        trainer.record_updates(false);
        let ids =
            |u: usize| -> Vec<Option<usize>> { (0..batch * pack).map(|i| Some((u * 7 + i) % chunks.len())).collect() };
        let step = |t: &mut Trainer<'_, Cuda>, u: usize| {
            t.step_store(&store, &ids(u), &vec![u as u64; pack]).unwrap();
        };
        step(&mut trainer, 0);
        step(&mut trainer, 1);
        be.synchronize().unwrap();
        let before = emu_counters().unwrap();
        for u in 2..5 {
            step(&mut trainer, u);
        }
        let after = emu_counters().unwrap();
        let d: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let what = format!("batch {batch}, grad_clip {clip}, pack {pack}");
        eprintln!(
            "{what}: per update {} launches, {} H2D copies ({} bytes), {} D2H, {} D2D, {} memsets, {} syncs, {} allocs, {} event records, {} stream waits",
            d[0] / 3,
            d[1] / 3,
            d[2] / 3,
            d[3] / 3,
            d[5] / 3,
            d[6] / 3,
            d[7] / 3,
            d[8] / 3,
            d[10] / 3,
            d[11] / 3
        );
        assert_eq!((d[3], d[4]), (0, 0), "{what}: device-to-host copies inside updates");
        assert_eq!(d[7], 0, "{what}: host synchronisations inside updates");
        assert_eq!((d[8], d[9]), (0, 0), "{what}: allocations or frees inside updates");
        assert_eq!(d[1], 3, "{what}: host-to-device copies in 3 updates");
        assert_eq!(d[2], 3 * 8 * (batch * pack) as u64, "{what}: bytes copied to the device in 3 updates");
        assert!((3 * 20..=3 * 64).contains(&d[0]), "{what}: {} launches in 3 updates", d[0]);
        // host work per launch: cudarc's event tracking is off for these streams
        assert_eq!((d[10], d[11]), (0, 0), "{what}: event records and stream waits inside updates");
        assert_eq!(d[12], 0, "{what}: graph launches without recording");

        // recorded: two updates of the shape (run, then recorded and replayed), then replays
        let mut trainer = Trainer::new_packed(&be, cfgs).unwrap();
        trainer.record_updates(true);
        for u in 0..2 {
            trainer.step_store(&store, &ids(0), &vec![u as u64; pack]).unwrap();
        }
        assert_eq!(trainer.recorded_shapes(), 1, "{what}: the update's shape is recorded");
        be.synchronize().unwrap();
        let before = emu_counters().unwrap();
        for u in 2..5 {
            trainer.step_store(&store, &ids(0), &vec![u as u64; pack]).unwrap();
        }
        let after = emu_counters().unwrap();
        let d: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        eprintln!(
            "{what}, recorded: per update {:?} (counters as emu_counters)",
            d.iter().map(|x| x / 3).collect::<Vec<_>>()
        );
        let copied = 3 * (8 * batch * pack + 16 * pack) as u64;
        let expect = [3, 6, copied, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        assert_eq!(d, expect, "{what}, recorded: 3 updates = 3 x (gather launch, 2 copies, 1 graph launch)");
    }
}

/// Recorded updates ([`Trainer::record_updates`]) compute exactly what unrecorded ones do: the
/// same trainer setup run with and without recording over updates whose chunk lengths and CD-K
/// repeat (so most updates replay a recording), for a lone LSTM-RTRBM (batch 1 and 3, with
/// gradient clipping), an RTRBM, an RNN-RBM and a pack of 2 LSTM-RTRBMs: every parameter and
/// velocity equal bit for bit after every update, and the costs of the last update too.
#[test]
fn recorded_updates_equal_unrecorded_ones() {
    use rtrbm::config::{CdStep, Config};
    use rtrbm::model::ChunkStore;
    use rtrbm::train::{make_chunks, Trainer};
    let Some(g) = gpu() else { return };
    // chunks of 6 and 4 frames (sequences cut at 6): shapes (T, K) repeat across updates
    let seqs = &rtrbm::data::jsb_embedded().train[..3];
    let chunks: Vec<Vec<f32>> = make_chunks(seqs, 6);
    // (fused: LSTM-RTRBM's recurrences in one launch each way, whose counters are cleared by a
    // recorded memset)
    let fused = g.fork().unwrap().with_fused_forward(true).with_fused_backward(true);
    for (kind, batch, clip, pack, fuse) in [
        (ModelKind::LstmRtrbm, 1usize, 0.0, 1usize, false),
        (ModelKind::LstmRtrbm, 3, 0.5, 1, false),
        (ModelKind::Rtrbm, 2, 0.0, 1, false),
        (ModelKind::RnnRbm, 1, 0.0, 1, false),
        (ModelKind::LstmRtrbm, 1, 0.0, 2, false),
        (ModelKind::LstmRtrbm, 3, 0.0, 1, true),
        (ModelKind::LstmRtrbm, 1, 0.0, 2, true),
    ] {
        let what = format!("{kind:?}, batch {batch}, grad_clip {clip}, pack {pack}, fused {fuse}");
        let base = if fuse { &fused } else { &g };
        let be = if pack == 1 { base.fork().unwrap() } else { base.packed(pack).unwrap() };
        let mut cfg = Config { model: ModelSpec::new(kind, 88, 20, 12), ..Config::default() };
        cfg.train.batch = batch;
        cfg.train.grad_clip = clip;
        cfg.train.chunk_frames = 6;
        // K = 2 for updates 0..6, then 3: each K meets repeated chunk lengths
        cfg.train.cd_schedule = vec![CdStep { from: 0, k: 2 }, CdStep { from: 6, k: 3 }];
        let cfgs: Vec<Config> = (0..pack)
            .map(|p| {
                let mut c = cfg.clone();
                c.train.seed += 11 * p as u64;
                c
            })
            .collect();
        let store = ChunkStore::new(&be, &chunks, 88).unwrap();
        let mut plain = Trainer::new_packed(&be, cfgs.clone()).unwrap();
        plain.record_updates(false);
        let mut recorded = Trainer::new_packed(&be, cfgs).unwrap();
        recorded.record_updates(true);
        let ids = |u: usize| -> Vec<Option<usize>> {
            (0..batch * pack).map(|i| Some((u / 2 + i * 5) % chunks.len())).collect()
        };
        let state = |t: &Trainer<'_, Cuda>| -> Vec<Vec<u32>> {
            let mut out = Vec::new();
            for p in t.model.params.bufs.iter().chain(&t.vel.bufs) {
                out.push(be.download(p).unwrap().iter().map(|x| x.to_bits()).collect());
            }
            out
        };
        let mut last_t = 0;
        for u in 0..14 {
            let updates = vec![u as u64; pack];
            let (ta, fa) = plain.step_store(&store, &ids(u), &updates).unwrap();
            let (tb, fb) = recorded.step_store(&store, &ids(u), &updates).unwrap();
            assert_eq!((ta, &fa), (tb, &fb), "{what}: update {u}: chunk length and frames");
            assert!(state(&plain) == state(&recorded), "{what}: parameters or velocities differ after update {u}");
            last_t = ta;
        }
        assert!(recorded.recorded_shapes() >= 2, "{what}: {} shapes recorded", recorded.recorded_shapes());
        let (ca, cb) = (plain.last_costs(last_t).unwrap(), recorded.last_costs(last_t).unwrap());
        assert_eq!(ca, cb, "{what}: costs of the last update");
    }
}

/// While recording, the backend refuses what a recording must not contain, with errors that say
/// so, and stays usable: a gemm whose split-K scratch would have to grow (300 x 260 x 300 takes
/// split-K) and a Gibbs chain recorded with keys other than the staged ones both fail; after
/// `end_recording` the same gemm runs directly, matches the CPU, and starts a new recording
/// generation (the scratch was allocated), after which it records without error.
#[test]
fn recording_refuses_allocations_and_unstaged_keys() {
    let Some(g) = gpu() else { return };
    let be = g.fork().unwrap();
    let c = cpu();
    let mut r = HostRng::new(5, 0);
    let (m, n, k) = (300, 260, 300);
    let (a, b) = (rand_vec(&mut r, m * k, 1.0), rand_vec(&mut r, k * n, 1.0));
    let (ga, gb) = (be.upload(&a).unwrap(), be.upload(&b).unwrap());
    let mut gc = be.zeros(m * n).unwrap();
    let mat = |buf| Mat { buf, offset: 0, trans: false };
    let (nv, nh, nn) = (12, 10, 4);
    let w = be.upload(&rand_vec(&mut r, nv * nh, 0.5)).unwrap();
    let (bv, bh) = (be.zeros(nn * nv).unwrap(), be.zeros(nn * nh).unwrap());
    let mut v = be.zeros(nn * nv).unwrap();
    let key = RngKey::new(9, 3);
    let gen0 = be.recording_generation();
    assert!(be.begin_recording().unwrap(), "CUDA records");
    let err = be.gemm(m, n, k, 1.0, mat(&ga), mat(&gb), 0.0, &mut gc, 0).unwrap_err().to_string();
    assert!(err.contains("split-K scratch") && err.contains("recorded"), "{err}");
    // gibbs with keys that were never staged
    let err = be.gibbs(&w, &bv, &bh, &mut v, None, nn, nv, nh, 2, false, &[key], 0).unwrap_err().to_string();
    assert!(err.contains("staged"), "{err}");
    let _nothing = be.end_recording();
    assert_eq!(be.recording_generation(), gen0, "nothing was replaced while recording");
    // directly: the gemm runs and allocates its scratch (a new generation)
    be.gemm(m, n, k, 1.0, mat(&ga), mat(&gb), 0.0, &mut gc, 0).unwrap();
    assert!(be.recording_generation() > gen0, "the scratch allocation starts a new generation");
    let mut cc = vec![0.0f32; m * n];
    c.gemm(
        m,
        n,
        k,
        1.0,
        Mat { buf: &a, offset: 0, trans: false },
        Mat { buf: &b, offset: 0, trans: false },
        0.0,
        &mut cc,
        0,
    )
    .unwrap();
    assert_close("gemm after a refused recording", &be.download(&gc).unwrap(), &cc, 1e-4, 1e-4);
    // now both record: the scratch exists and the keys are staged
    be.stage_gibbs_keys(&[key]).unwrap();
    let gen1 = be.recording_generation();
    assert!(be.begin_recording().unwrap());
    be.gemm(m, n, k, 1.0, mat(&ga), mat(&gb), 0.0, &mut gc, 0).unwrap();
    be.gibbs(&w, &bv, &bh, &mut v, None, nn, nv, nh, 2, false, &[key], 0).unwrap();
    let recording = be.end_recording().unwrap();
    assert_eq!(be.recording_generation(), gen1);
    be.replay(&recording).unwrap();
    assert_close("replayed gemm", &be.download(&gc).unwrap(), &cc, 1e-4, 1e-4);
}

/// `sgd_momentum_all` (one launch for every tensor, `sgd_momentum_multi`) updates each tensor
/// exactly as `sgd_momentum` does one at a time: tensors of 1 to 30,976 elements, lone and a pack
/// of P models with their own hyper-parameters, three steps (the tensor table and the
/// hyper-parameters reused, then new hyper-parameters): parameters and velocities equal bit for
/// bit. Mismatched lists are errors.
#[test]
fn sgd_of_all_tensors_in_one_launch_equals_one_at_a_time() {
    let Some(g) = gpu() else { return };
    let mut r = HostRng::new(77, 0);
    let sizes = [88 * 88, 88, 1, 88 * 352, 3001];
    let h1 = [hyper(0.01, 0.9, 1e-3), hyper(0.05, 0.5, 0.0), hyper(0.001, 0.99, 1e-2)];
    let h2 = [hyper(0.02, 0.0, 1e-4), hyper(0.01, 0.9, 1e-3), hyper(0.3, 0.7, 0.5)];
    for models in [1, P] {
        let be = if models == 1 { g.fork().unwrap() } else { g.packed(P).unwrap() };
        let mk = |r: &mut HostRng, scale: f32| -> Vec<Vec<f32>> {
            sizes.iter().map(|&n| rand_vec(r, n * models, scale)).collect()
        };
        let (p0, gr, v0) = (mk(&mut r, 1.0), mk(&mut r, 1.0), mk(&mut r, 0.1));
        let up =
            |xs: &[Vec<f32>]| -> Vec<<Cuda as Backend>::Buf> { xs.iter().map(|x| be.upload(x).unwrap()).collect() };
        let (mut pa, ga, mut va) = (up(&p0), up(&gr), up(&v0));
        let (mut pb, gb, mut vb) = (up(&p0), up(&gr), up(&v0));
        for hs in [&h1, &h1, &h2] {
            let hs = &hs[..models];
            be.sgd_momentum_all(&mut pa, &ga, &mut va, hs).unwrap();
            for i in 0..sizes.len() {
                be.sgd_momentum(&mut pb[i], &gb[i], &mut vb[i], hs).unwrap();
            }
        }
        for i in 0..sizes.len() {
            let what = format!("{models} model(s), tensor {i} ({} elements)", sizes[i]);
            assert_bits(&format!("{what}: param"), &be.download(&pa[i]).unwrap(), &be.download(&pb[i]).unwrap());
            assert_bits(&format!("{what}: vel"), &be.download(&va[i]).unwrap(), &be.download(&vb[i]).unwrap());
        }
        let err = be.sgd_momentum_all(&mut pa, &ga[..2], &mut va, &h1[..models]).unwrap_err().to_string();
        assert!(err.contains("2 gradients"), "{err}");
    }
}
