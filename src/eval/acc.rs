//! Expected frame-level accuracy (SPEC 4.2) and the one-step prediction error of Gaussian models
//! (SPEC 4.3).
//!
//! ACC (Bay, Ehmann, Downie 2009): with `p_{t,i} = P(v_{t,i} = 1 | v_<t)`,
//! `E[TP] = sum v p`, `E[FP] = sum (1 - v) p`, `E[FN] = sum v (1 - p)`, summed over all frames
//! and keys, and `ACC = E[TP] / (E[TP] + E[FP] + E[FN])` (the primary figure). The secondary
//! figure is the mean over frames of the per-frame ratio; a frame whose `E[TP] + E[FP] + E[FN]`
//! is 0 (silent frame predicted silent with certainty) counts as ACC 1.
//!
//! The marginals come from [`Backend::gibbs_marginals`] (chains start at v = 0, `burn_in` steps,
//! then `P(v = 1 | h)` averaged over `samples` steps), or exactly from
//! [`super::exact::exact_frames`] for small models. The chains are run in G independent groups
//! (G = min(chains, 8), group g on RNG stream `ACC_STREAM + (g << 20) + batch`); the pooled
//! marginals give the reported ACC and the spread of the groups' ACCs gives its sampling error
//! `sd(ACC_g) / sqrt(G)`.

use super::FrameBiases;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::model::Model;
use crate::rng::RngKey;

/// First RNG stream of the accuracy chains.
pub const ACC_STREAM: u32 = 0xACC0_0000;
/// First RNG stream of the prediction chains of [`prediction_mse`].
pub const MSE_STREAM: u32 = 0x3550_0000;

/// Gibbs settings of the sampled marginals.
#[derive(Clone, Debug)]
pub struct AccOptions {
    /// Chains per frame (in total over the groups).
    pub chains: usize,
    pub burn_in: usize,
    pub samples: usize,
    pub seed: u64,
    /// Upper bound on frames x chains per backend call.
    pub max_chains: usize,
}

impl Default for AccOptions {
    fn default() -> Self {
        Self { chains: 8, burn_in: 50, samples: 50, seed: 1, max_chains: 50_000 }
    }
}

/// Expected accuracy with the settings that produced it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AccReport {
    /// E[TP] / (E[TP] + E[FP] + E[FN]) over all frames (primary).
    pub acc: f64,
    /// Mean over frames of the per-frame ratio (1 for a frame with TP + FP + FN = 0).
    pub acc_per_frame: f64,
    pub e_tp: f64,
    pub e_fp: f64,
    pub e_fn: f64,
    pub frames: usize,
    /// Mean notes per frame n (random check: p = 1/2 gives ACC = n / (n + 88)).
    pub mean_notes: f64,
    /// `gibbs` or `exact`.
    pub method: String,
    pub chains: Option<usize>,
    pub burn_in: Option<usize>,
    pub samples: Option<usize>,
    /// Sampling standard error of `acc` (Gibbs only, from the chain groups).
    pub sampling_se: Option<f64>,
    pub wall_s: f64,
}

/// The summed expectations and the per-frame mean of a set of frames.
fn counts(v: &[f64], p: &[f64], nv: usize) -> (f64, f64, f64, f64) {
    let (mut tp, mut fp, mut fneg, mut per) = (0.0, 0.0, 0.0, 0.0);
    for (vt, pt) in v.chunks(nv).zip(p.chunks(nv)) {
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for (&vi, &pi) in vt.iter().zip(pt) {
            a += vi * pi;
            b += (1.0 - vi) * pi;
            c += vi * (1.0 - pi);
        }
        per += if a + b + c > 0.0 { a / (a + b + c) } else { 1.0 };
        tp += a;
        fp += b;
        fneg += c;
    }
    (tp, fp, fneg, per)
}

fn ratio(tp: f64, fp: f64, fneg: f64) -> f64 {
    if tp + fp + fneg > 0.0 {
        tp / (tp + fp + fneg)
    } else {
        1.0
    }
}

impl AccReport {
    /// ACC of data frames `v` `[N, V]` under marginals `p` `[N, V]`; `gibbs` is
    /// `(chains, burn_in, samples)` when the marginals were sampled.
    pub fn from_marginals(
        v: &[f64],
        p: &[f64],
        nv: usize,
        method: &str,
        gibbs: Option<(usize, usize, usize)>,
    ) -> Result<Self> {
        if nv == 0 || v.len() != p.len() || !v.len().is_multiple_of(nv) {
            return Err(Error::Shape(format!("ACC: {} data values and {} marginals of width {nv}", v.len(), p.len())));
        }
        let frames = v.len() / nv;
        let (tp, fp, fneg, per) = counts(v, p, nv);
        Ok(AccReport {
            acc: ratio(tp, fp, fneg),
            acc_per_frame: per / frames.max(1) as f64,
            e_tp: tp,
            e_fp: fp,
            e_fn: fneg,
            frames,
            mean_notes: v.iter().sum::<f64>() / frames.max(1) as f64,
            method: method.into(),
            chains: gibbs.map(|g| g.0),
            burn_in: gibbs.map(|g| g.1),
            samples: gibbs.map(|g| g.2),
            sampling_se: None,
            wall_s: 0.0,
        })
    }
}

/// Sampled marginals `[N, V]` of `chains` chains per frame (one group), on RNG streams `stream + batch`.
fn sampled_marginals<B: Backend>(
    be: &B,
    fb: &FrameBiases,
    w: &B::Buf,
    chains: usize,
    opts: &AccOptions,
    stream: u32,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f64>> {
    let (nv, nh, n) = (fb.nv, fb.nh, fb.frames);
    let by_index = (u32::MAX as usize / nv.max(nh).max(1)) / chains;
    let per_call = (opts.max_chains / chains).min(by_index).max(1);
    let to_f = |xs: &[f64]| xs.iter().map(|&x| B::F::from_f64(x)).collect::<Vec<_>>();
    let mut out = Vec::with_capacity(n * nv);
    let (mut start, mut batch) = (0, 0u32);
    while start < n {
        let end = (start + per_call).min(n);
        let nb = end - start;
        let bv = be.upload(&to_f(&fb.bv[start * nv..end * nv]))?;
        let bh = be.upload(&to_f(&fb.bh[start * nh..end * nh]))?;
        let mut p = be.zeros(nb * nv)?;
        let rng = RngKey::new(opts.seed, stream.wrapping_add(batch));
        be.gibbs_marginals(w, &bv, &bh, nb, nv, nh, chains, opts.burn_in, opts.samples, rng, 0, &mut p)?;
        out.extend(be.download(&p)?.iter().map(|x| x.to_f64()));
        start = end;
        batch += 1;
        progress(nb);
    }
    Ok(out)
}

/// ACC of every frame of `fb` from Gibbs-sampled marginals, with its sampling error.
/// `progress(done, total)` counts frames x groups.
pub fn gibbs_acc<B: Backend>(
    be: &B,
    fb: &FrameBiases,
    opts: &AccOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AccReport> {
    let start = std::time::Instant::now();
    if fb.gaussian {
        return Err(Error::msg("ACC is defined for binary visible units only"));
    }
    if opts.chains == 0 || opts.samples == 0 {
        return Err(Error::msg("ACC: --acc-chains and --acc-samples must be positive"));
    }
    let nv = fb.nv;
    let groups = opts.chains.min(8);
    let w = be.upload(&fb.w.iter().map(|&x| B::F::from_f64(x)).collect::<Vec<_>>())?;
    let total = fb.frames * groups;
    let mut done = 0;
    let mut pooled = vec![0.0; fb.frames * nv];
    let mut group_acc = vec![];
    for g in 0..groups {
        let chains = opts.chains / groups + usize::from(g < opts.chains % groups);
        let stream = ACC_STREAM.wrapping_add((g as u32) << 20);
        let p = sampled_marginals(be, fb, &w, chains, opts, stream, &mut |k| {
            done += k;
            progress(done, total);
        })?;
        let (tp, fp, fneg, _) = counts(&fb.v, &p, nv);
        group_acc.push(ratio(tp, fp, fneg));
        let weight = chains as f64 / opts.chains as f64;
        pooled.iter_mut().zip(&p).for_each(|(a, b)| *a += weight * b);
    }
    let mut r =
        AccReport::from_marginals(&fb.v, &pooled, nv, "gibbs", Some((opts.chains, opts.burn_in, opts.samples)))?;
    if groups >= 2 {
        let g = groups as f64;
        let mean = group_acc.iter().sum::<f64>() / g;
        let var = group_acc.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (g - 1.0);
        r.sampling_se = Some((var / g).sqrt());
    }
    r.wall_s = start.elapsed().as_secs_f64();
    Ok(r)
}

/// ACC of `model` on whole sequences (`seqs[b]` dense `[T_b, V]`) from Gibbs-sampled marginals.
pub fn evaluate_acc<B: Backend>(be: &B, model: &Model<B>, seqs: &[Vec<f64>], opts: &AccOptions) -> Result<AccReport> {
    let fb = FrameBiases::compute(be, model, seqs)?;
    gibbs_acc(be, &fb, opts, &mut |_, _| {})
}

/// ACC of `model` on whole sequences from exact marginals (min(V, H) <= 24).
pub fn evaluate_acc_exact<B: Backend>(
    be: &B,
    model: &Model<B>,
    seqs: &[Vec<f64>],
    threads: usize,
) -> Result<AccReport> {
    let start = std::time::Instant::now();
    let fb = FrameBiases::compute(be, model, seqs)?;
    let ex = super::exact::exact_frames(&fb, true, threads)?;
    let mut r = AccReport::from_marginals(&fb.v, &ex.marginals, fb.nv, "exact", None)?;
    r.wall_s = start.elapsed().as_secs_f64();
    Ok(r)
}

/// One-step prediction error of a Gaussian-visible model (SPEC 4.3).
#[derive(Clone, Debug, serde::Serialize)]
pub struct MseReport {
    /// Mean squared error per dimension per scored frame.
    pub mse: f64,
    /// Scored frames and dimensions V.
    pub frames: usize,
    pub dims: usize,
    pub gibbs_steps: usize,
    pub seed: u64,
}

/// The first frame of the test part when the last `fraction` of a sequence of `len` frames is
/// the test set (Sutskever's split: fraction 0.2).
pub fn last_fraction_start(len: usize, fraction: f64) -> usize {
    let test = (len as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
    len - test.min(len)
}

/// Mean squared one-step prediction error per dimension per frame of a Gaussian-visible model
/// (SPEC 4.3) on whole sequences `seqs[b]` (dense `[T_b, V]`, standardised), scoring the frames
/// `scored_from[b]..T_b` of each (the recurrence still runs over the whole sequence).
///
/// Frame t is predicted from frames < t: a Gaussian Gibbs chain under RBM_t starts at v_{t-1}
/// (zeros at a sequence's first frame) and runs `gibbs_steps` steps ([`Backend::gibbs`],
/// stream `MSE_STREAM`); the prediction is the final visible mean given the hidden layer,
/// `bv_t + W P(h = 1 | v)` — the Rao-Blackwellised form of `bv_t + W h` (the expected value of
/// the final visible mean over the last hidden sample). Every scored frame is predicted.
pub fn prediction_mse<B: Backend>(
    be: &B,
    model: &Model<B>,
    seqs: &[Vec<f64>],
    scored_from: &[usize],
    gibbs_steps: usize,
    seed: u64,
) -> Result<MseReport> {
    if !model.spec.gaussian {
        return Err(Error::msg("prediction_mse is the metric of Gaussian-visible models (SPEC 4.3)"));
    }
    if scored_from.len() != seqs.len() {
        return Err(Error::Shape(format!("{} sequences but {} scored_from entries", seqs.len(), scored_from.len())));
    }
    let fb = FrameBiases::compute(be, model, seqs)?;
    let (nv, nh, n) = (fb.nv, fb.nh, fb.frames);
    let mut report = MseReport { mse: 0.0, frames: 0, dims: nv, gibbs_steps, seed };
    if n == 0 {
        return Ok(report);
    }
    // chain starts: the previous data frame, zeros at the start of a sequence; and which frames count
    let mut v0 = vec![0.0; n * nv];
    let mut scored = vec![false; n];
    let mut t0 = 0;
    for (&len, &from) in fb.seq_lens.iter().zip(scored_from) {
        for s in 0..len {
            if s > 0 {
                v0[(t0 + s) * nv..(t0 + s + 1) * nv].copy_from_slice(&fb.v[(t0 + s - 1) * nv..(t0 + s) * nv]);
            }
            scored[t0 + s] = s >= from;
        }
        t0 += len;
    }
    let to_f = |xs: &[f64]| xs.iter().map(|&x| B::F::from_f64(x)).collect::<Vec<_>>();
    let w = be.upload(&to_f(&fb.w))?;
    let per_call = (50_000usize).min(u32::MAX as usize / (2 * nv.max(nh))).max(1);
    let mut sse = 0.0;
    let (mut start, mut batch) = (0, 0u32);
    while start < n {
        let end = (start + per_call).min(n);
        let nb = end - start;
        let bv = be.upload(&to_f(&fb.bv[start * nv..end * nv]))?;
        let bh = be.upload(&to_f(&fb.bh[start * nh..end * nh]))?;
        let mut v = be.upload(&to_f(&v0[start * nv..end * nv]))?;
        let rng = RngKey::new(seed, MSE_STREAM.wrapping_add(batch));
        if gibbs_steps > 0 {
            be.gibbs(&w, &bv, &bh, &mut v, None, nb, nv, nh, gibbs_steps, true, &[rng], 0)?;
        }
        let mut ph = be.zeros(nb * nh)?;
        be.hidden_probs(&w, &v, &bh, nb, nv, nh, &mut ph)?;
        let ph = be.download(&ph)?;
        for k in 0..nb {
            let t = start + k;
            if !scored[t] {
                continue;
            }
            let p = &ph[k * nh..(k + 1) * nh];
            for i in 0..nv {
                let wi = &fb.w[i * nh..(i + 1) * nh];
                let mean = fb.bv[t * nv + i] + wi.iter().zip(p).map(|(a, b)| a * b.to_f64()).sum::<f64>();
                let e = mean - fb.v[t * nv + i];
                sse += e * e;
            }
            report.frames += 1;
        }
        start = end;
        batch += 1;
    }
    report.mse = sse / (report.frames.max(1) * nv) as f64;
    Ok(report)
}
