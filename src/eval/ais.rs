//! Log-likelihood per frame by annealed importance sampling (SPEC 4.1), on any [`Backend`].
//!
//! For every frame t of the N frames of [`FrameBiases`] (whole sequences, no chunk resets),
//! [`Backend::ais`] runs M independent annealing runs from the base RBM (W = 0, its own biases)
//! to RBM_t through the schedule's betas and returns the log-weights `[N, M]`. Then
//!
//! - `log Z_t = log Z_0 + log mean_m exp(logw_m)` with `log Z_0 = sum softplus(bv_t) +
//!   sum softplus(bh_t)` computed exactly in f64;
//! - its standard error by the delta method, `se = sd(w) / (sqrt(M) mean(w))`, with the weights
//!   normalised by their maximum first (so it is stable for any spread of log-weights);
//! - `log P(v_t | v_<t) = -F_t(v_t) - log Z_t` (F_t in f64 on the host);
//! - `LL = mean_t log P(v_t | v_<t)` and `stderr(LL) = sqrt(sum_t se_t^2) / N` (the frames'
//!   estimates are independent).
//!
//! Frames go to the backend in batches of at most `max_chains / M` frames, so memory stays
//! bounded; batch `b` uses the RNG stream `AIS_STREAM + b` at counter 0.
//!
//! AIS underestimates log Z on average (Jensen), so an AIS LL is optimistic: report it with its
//! schedule and a convergence check against the number of betas.

use super::schedule::{Schedule, ScheduleInfo};
use super::FrameBiases;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::rng::RngKey;

/// First RNG stream of AIS batches.
pub const AIS_STREAM: u32 = 0xA150_0000;

/// AIS settings.
#[derive(Clone, Debug)]
pub struct AisOptions {
    /// M, runs per frame (at least 2, for a standard error).
    pub runs: usize,
    pub schedule: Schedule,
    pub seed: u64,
    /// Upper bound on frames x runs per [`Backend::ais`] call.
    pub max_chains: usize,
}

impl Default for AisOptions {
    /// M = 100 and the 14,500-interval Salakhutdinov-Murray schedule (SPEC 4.1).
    fn default() -> Self {
        Self { runs: 100, schedule: Schedule::default_sm(), seed: 1, max_chains: 50_000 }
    }
}

/// Per-frame AIS results.
#[derive(Clone, Debug)]
pub struct AisFrames {
    /// Estimated `log Z_t` `[N]`.
    pub log_z: Vec<f64>,
    /// Standard error of each `log Z_t` (delta method) `[N]`.
    pub se: Vec<f64>,
    /// `log P(v_t | v_<t)` `[N]`.
    pub log_p: Vec<f64>,
}

/// An AIS log-likelihood with the settings that produced it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LlReport {
    /// Mean log P(v_t | v_<t) over all frames, nats per frame.
    pub ll: f64,
    /// Its standard error, `sqrt(sum_t se_t^2) / N`.
    pub stderr: f64,
    pub frames: usize,
    /// M.
    pub runs: usize,
    pub schedule: ScheduleInfo,
    pub seed: u64,
    /// Largest per-frame standard error of log Z_t (a sign of a too-short schedule when large).
    pub max_frame_se: f64,
    pub wall_s: f64,
}

/// `(log mean exp(lw), its delta-method standard error)`. The error is `sd(w) / (sqrt(M) mean(w))`
/// with the sample standard deviation (M - 1); it is NaN for M < 2.
pub fn log_mean_exp_se(lw: &[f64]) -> (f64, f64) {
    let m = lw.len();
    let max = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == 0 || !max.is_finite() {
        return (f64::NAN, f64::NAN);
    }
    let a: Vec<f64> = lw.iter().map(|x| (x - max).exp()).collect();
    let mean = a.iter().sum::<f64>() / m as f64;
    let se = if m < 2 {
        f64::NAN
    } else {
        let var = a.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (m - 1) as f64;
        var.sqrt() / ((m as f64).sqrt() * mean)
    };
    (max + mean.ln(), se)
}

fn check(opts: &AisOptions, nv: usize, nh: usize) -> Result<usize> {
    if opts.runs < 2 {
        return Err(Error::msg(format!("AIS needs at least 2 runs per frame for a standard error, got {}", opts.runs)));
    }
    if opts.schedule.betas.len() > (u32::MAX / 4) as usize {
        return Err(Error::msg("AIS schedule too long for the RNG counters"));
    }
    // chain indices (n*M + m) * max(V, H) must fit the u32 RNG index
    let by_index = (u32::MAX as usize / nv.max(nh).max(1)) / opts.runs;
    let frames_per_call = (opts.max_chains / opts.runs).min(by_index).max(1);
    Ok(frames_per_call)
}

/// Runs AIS for every frame of `fb`. `progress(done_frames, total_frames)` after each batch.
pub fn ais_frames<B: Backend>(
    be: &B,
    fb: &FrameBiases,
    opts: &AisOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AisFrames> {
    let (nv, nh, n) = (fb.nv, fb.nh, fb.frames);
    if fb.gaussian {
        return Err(Error::msg("AIS log-likelihood is implemented for binary visible units only"));
    }
    let per_call = check(opts, nv, nh)?;
    let to_f = |xs: &[f64]| xs.iter().map(|&x| B::F::from_f64(x)).collect::<Vec<_>>();
    let w = be.upload(&to_f(&fb.w))?;
    let mut out = AisFrames { log_z: Vec::with_capacity(n), se: Vec::with_capacity(n), log_p: Vec::with_capacity(n) };
    let mut start = 0;
    let mut batch = 0u32;
    while start < n {
        let end = (start + per_call).min(n);
        let nb = end - start;
        let bv = be.upload(&to_f(&fb.bv[start * nv..end * nv]))?;
        let bh = be.upload(&to_f(&fb.bh[start * nh..end * nh]))?;
        let rng = RngKey::new(opts.seed, AIS_STREAM.wrapping_add(batch));
        let lw = be.ais(&w, &bv, &bh, nb, nv, nh, opts.runs, &opts.schedule.betas, &[rng], 0)?;
        if lw.len() != nb * opts.runs {
            return Err(Error::Shape(format!("ais returned {} log-weights, expected {}", lw.len(), nb * opts.runs)));
        }
        for (k, frame_lw) in lw.chunks(opts.runs).enumerate() {
            let t = start + k;
            let (lme, se) = log_mean_exp_se(frame_lw);
            if !lme.is_finite() {
                return Err(Error::msg(format!("AIS produced a non-finite log-weight at frame {t}")));
            }
            let lz = fb.log_z0(t) + lme;
            out.log_z.push(lz);
            out.se.push(se);
            out.log_p.push(-fb.free_energy(t) - lz);
        }
        start = end;
        batch = batch.wrapping_add(1);
        progress(end, n);
    }
    Ok(out)
}

/// The AIS log-likelihood per frame of all frames of `fb` with its standard error.
pub fn ais_ll<B: Backend>(
    be: &B,
    fb: &FrameBiases,
    opts: &AisOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LlReport> {
    let start = std::time::Instant::now();
    let r = ais_frames(be, fb, opts, progress)?;
    let n = r.log_p.len().max(1) as f64;
    Ok(LlReport {
        ll: r.log_p.iter().sum::<f64>() / n,
        stderr: r.se.iter().map(|s| s * s).sum::<f64>().sqrt() / n,
        frames: r.log_p.len(),
        runs: opts.runs,
        schedule: opts.schedule.info(),
        seed: opts.seed,
        max_frame_se: r.se.iter().cloned().fold(0.0, f64::max),
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// AIS estimate `(log Z, standard error)` of a single binary RBM (W `[V, H]`, bv `[V]`, bh `[H]`).
pub fn rbm_log_z<B: Backend>(be: &B, w: &[f64], bv: &[f64], bh: &[f64], opts: &AisOptions) -> Result<(f64, f64)> {
    let (nv, nh) = (bv.len(), bh.len());
    if w.len() != nv * nh {
        return Err(Error::Shape(format!("W has {} values, expected {nv} x {nh}", w.len())));
    }
    let fb = FrameBiases {
        nv,
        nh,
        frames: 1,
        gaussian: false,
        w: w.to_vec(),
        v: vec![0.0; nv],
        bv: bv.to_vec(),
        bh: bh.to_vec(),
        seq_lens: vec![1],
    };
    let r = ais_frames(be, &fb, opts, &mut |_, _| {})?;
    Ok((r.log_z[0], r.se[0]))
}
