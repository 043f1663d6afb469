//! Evaluation of the temporal RBM models (SPEC 4): log-likelihood per frame by annealed
//! importance sampling ([`ais`]) or exactly for small models ([`exact`]), expected frame-level
//! accuracy ([`acc`]), one-step prediction error of Gaussian models ([`acc::prediction_mse`]),
//! and the AIS beta schedules ([`schedule`]).
//!
//! Evaluation always runs the recurrences over whole sequences (no chunk resets, SPEC 4): each
//! sequence is run through [`Model::forward`] with B = 1 and T = its length, and the per-frame
//! biases bv_t `[N, V]`, bh_t `[N, H]` of all N frames of all sequences are concatenated on the
//! host ([`FrameBiases`]). Everything after that works frame by frame on N conditional RBMs.
//!
//! [`evaluate`] is the generic core of `rtrbm eval` (any [`Backend`]).

pub mod acc;
pub mod ais;
pub mod exact;
pub mod schedule;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::model::{Model, Workspace};

/// softplus(x) = log(1 + e^x), computed stably in f64.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// log sum exp of `xs` (-inf for an empty slice).
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY || m.is_nan() {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The data frames and per-frame RBMs of a set of whole sequences, on the host in f64.
#[derive(Clone, Debug)]
pub struct FrameBiases {
    /// V and H.
    pub nv: usize,
    pub nh: usize,
    /// N, the total number of frames.
    pub frames: usize,
    /// Gaussian visible units (SPEC 1).
    pub gaussian: bool,
    /// Shared weights W `[V, H]`.
    pub w: Vec<f64>,
    /// Data frames v_t `[N, V]`.
    pub v: Vec<f64>,
    /// Dynamic biases bv_t `[N, V]` and bh_t `[N, H]`.
    pub bv: Vec<f64>,
    pub bh: Vec<f64>,
    /// Frames of each sequence, in order (empty sequences are kept as 0).
    pub seq_lens: Vec<usize>,
}

impl FrameBiases {
    /// Runs `model` over each whole sequence (`seqs[b]` is `[T_b, V]` row-major) and collects
    /// the per-frame biases.
    pub fn compute<B: Backend>(be: &B, model: &Model<B>, seqs: &[Vec<f64>]) -> Result<Self> {
        let spec = &model.spec;
        let (nv, nh) = (spec.visible, spec.hidden);
        if nv == 0 || nh == 0 {
            return Err(Error::Shape(format!("model with V = {nv}, H = {nh}")));
        }
        for (i, s) in seqs.iter().enumerate() {
            if s.len() % nv != 0 {
                return Err(Error::Shape(format!(
                    "sequence {i}: {} values is not a whole number of {nv}-unit frames",
                    s.len()
                )));
            }
            if let Some(j) = s.iter().position(|x| !x.is_finite()) {
                return Err(Error::msg(format!("sequence {i}: value {j} is not finite")));
            }
        }
        let t_max = seqs.iter().map(|s| s.len() / nv).max().unwrap_or(0);
        let w: Vec<f64> = be.download(model.params.get("W")?)?.iter().map(|x| x.to_f64()).collect();
        if w.len() != nv * nh {
            return Err(Error::Shape(format!("W has {} values, expected V x H = {nv} x {nh}", w.len())));
        }
        let mut fb = FrameBiases {
            nv,
            nh,
            frames: 0,
            gaussian: spec.gaussian,
            w,
            v: vec![],
            bv: vec![],
            bh: vec![],
            seq_lens: vec![],
        };
        if t_max == 0 {
            fb.seq_lens = vec![0; seqs.len()];
            return Ok(fb);
        }
        let mut ws = Workspace::new(be, spec, t_max, 1)?;
        for s in seqs {
            let t = s.len() / nv;
            fb.seq_lens.push(t);
            if t == 0 {
                continue;
            }
            let host: Vec<B::F> = s.iter().map(|&x| B::F::from_f64(x)).collect();
            ws.load(be, &[&host], nv)?;
            model.forward(be, &mut ws, t, false)?;
            let bv = be.download(&ws.bv_t)?;
            let bh = be.download(&ws.bh_t)?;
            fb.bv.extend(bv[..t * nv].iter().map(|x| x.to_f64()));
            fb.bh.extend(bh[..t * nh].iter().map(|x| x.to_f64()));
            fb.v.extend_from_slice(s);
            fb.frames += t;
        }
        if let Some(i) = fb.bv.iter().chain(&fb.bh).position(|x| !x.is_finite()) {
            return Err(Error::msg(format!(
                "the model produced a non-finite bias (value {i}); is the checkpoint diverged?"
            )));
        }
        Ok(fb)
    }

    /// `v_t W` of frame t, `[H]`.
    pub fn vw(&self, t: usize) -> Vec<f64> {
        let (nv, nh) = (self.nv, self.nh);
        let mut x = vec![0.0; nh];
        for (i, &vi) in self.v[t * nv..(t + 1) * nv].iter().enumerate() {
            if vi != 0.0 {
                x.iter_mut().zip(&self.w[i * nh..(i + 1) * nh]).for_each(|(xj, wij)| *xj += vi * wij);
            }
        }
        x
    }

    /// Free energy F_t(v_t) of the data frame t under RBM_t (SPEC 1), in f64.
    pub fn free_energy(&self, t: usize) -> f64 {
        let (nv, nh) = (self.nv, self.nh);
        let v = &self.v[t * nv..(t + 1) * nv];
        let bv = &self.bv[t * nv..(t + 1) * nv];
        let bh = &self.bh[t * nh..(t + 1) * nh];
        let vis = if self.gaussian {
            v.iter().zip(bv).map(|(a, b)| 0.5 * (a - b) * (a - b)).sum::<f64>()
        } else {
            -v.iter().zip(bv).map(|(a, b)| a * b).sum::<f64>()
        };
        vis - self.vw(t).iter().zip(bh).map(|(x, b)| softplus(x + b)).sum::<f64>()
    }

    /// `log Z_0` of the base RBM of frame t (W = 0): sum softplus(bv_t) + sum softplus(bh_t).
    pub fn log_z0(&self, t: usize) -> f64 {
        let (nv, nh) = (self.nv, self.nh);
        self.bv[t * nv..(t + 1) * nv].iter().chain(&self.bh[t * nh..(t + 1) * nh]).map(|&x| softplus(x)).sum()
    }

    /// Mean number of active units per frame (notes per frame for piano rolls).
    pub fn mean_notes(&self) -> f64 {
        self.v.iter().sum::<f64>() / self.frames.max(1) as f64
    }
}

/// What [`evaluate`] computes.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// AIS log-likelihood (None: skip).
    pub ais: Option<ais::AisOptions>,
    /// Gibbs-sampled expected accuracy (None: skip).
    pub acc: Option<acc::AccOptions>,
    /// Exact LL and ACC too (min(V, H) <= 24 only).
    pub exact: bool,
    /// Beta counts of the convergence check (empty: none); each is a scaled default schedule.
    pub convergence: Vec<usize>,
    /// Host threads for exact enumeration.
    pub threads: usize,
}

/// One point of the convergence check: LL against the number of betas.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConvergencePoint {
    pub betas: usize,
    pub ll: f64,
    pub stderr: f64,
    pub wall_s: f64,
}

/// Everything `rtrbm eval` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub model: String,
    pub visible: usize,
    pub hidden: usize,
    pub sequences: usize,
    pub frames: usize,
    pub mean_notes_per_frame: f64,
    pub device: String,
    pub ll: Option<ais::LlReport>,
    pub acc: Option<acc::AccReport>,
    pub exact_ll: Option<f64>,
    pub exact_acc: Option<acc::AccReport>,
    pub convergence: Vec<ConvergencePoint>,
    /// Set when `convergence` is: AIS underestimates log Z on average, so AIS LL is optimistic.
    pub convergence_note: Option<String>,
    pub wall_s: f64,
}

/// The generic core of `rtrbm eval`: runs the requested evaluations of `model` on `seqs`
/// (dense `[T_b, V]` frames). `progress(stage, done, total)` is called as work completes.
pub fn evaluate<B: Backend>(
    be: &B,
    model: &Model<B>,
    seqs: &[Vec<f64>],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<EvalReport> {
    let start = std::time::Instant::now();
    let fb = FrameBiases::compute(be, model, seqs)?;
    if fb.frames == 0 {
        return Err(Error::msg("no frames to evaluate (empty split?)"));
    }
    let mut report = EvalReport {
        model: model.spec.kind.name().into(),
        visible: fb.nv,
        hidden: fb.nh,
        sequences: seqs.len(),
        frames: fb.frames,
        mean_notes_per_frame: fb.mean_notes(),
        device: be.name(),
        ll: None,
        acc: None,
        exact_ll: None,
        exact_acc: None,
        convergence: vec![],
        convergence_note: None,
        wall_s: 0.0,
    };
    if fb.gaussian && (opts.ais.is_some() || opts.acc.is_some() || opts.exact) {
        return Err(Error::msg(
            "LL and ACC are defined for binary visible units; use acc::prediction_mse for Gaussian models",
        ));
    }
    if let Some(a) = &opts.ais {
        report.ll = Some(ais::ais_ll(be, &fb, a, &mut |d, t| progress("ais", d, t))?);
    }
    if let Some(a) = &opts.acc {
        report.acc = Some(acc::gibbs_acc(be, &fb, a, &mut |d, t| progress("acc", d, t))?);
    }
    if opts.exact {
        let ex = exact::exact_frames(&fb, true, opts.threads)?;
        report.exact_ll = Some(ex.ll());
        report.exact_acc = Some(acc::AccReport::from_marginals(&fb.v, &ex.marginals, fb.nv, "exact", None)?);
    }
    if !opts.convergence.is_empty() {
        let base = opts.ais.clone().unwrap_or_default();
        for &n in &opts.convergence {
            let a = ais::AisOptions { schedule: schedule::Schedule::scaled(n)?, ..base.clone() };
            let r = ais::ais_ll(be, &fb, &a, &mut |d, t| progress(&format!("convergence {n}"), d, t))?;
            report.convergence.push(ConvergencePoint { betas: n, ll: r.ll, stderr: r.stderr, wall_s: r.wall_s });
        }
        report.convergence_note = Some(
            "AIS underestimates log Z on average, so AIS LL is optimistic (too high); it should fall and \
             level off as the number of betas grows"
                .into(),
        );
    }
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}
