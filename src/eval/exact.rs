//! Exact partition functions and marginals of small binary RBMs (the oracle of SPEC 4.1).
//!
//! An RBM with V visible and H hidden units (W `[V, H]`, biases bv `[V]`, bh `[H]`) has
//! `log Z = logsumexp_h [h.bh + sum_i softplus(bv_i + (W h)_i)]
//!        = logsumexp_v [v.bv + sum_j softplus(bh_j + (v W)_j)]`,
//! so enumerating the smaller layer costs `2^min(V, H)` terms. Both are the same sum over a
//! layer `s` of k units with biases `a`, coupled by `M` `[k, n]` to the other layer of n units
//! with biases `c`: `term(s) = s.a + sum_o softplus(c_o + (s M)_o)`. States are visited in Gray
//! code order (one row of M added or removed per step), the log-sum-exp is streamed in f64, and
//! the `2^k` states are split over threads with `std::thread::scope`.
//!
//! The marginals `P(v_i = 1)` come out of the same pass: `E[s]` when the visible layer is
//! enumerated, `E[sigma(c + s M)]` when the hidden layer is.

use super::{softplus, FrameBiases};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::Model;

/// The largest layer that [`log_z`] enumerates (2^24 states).
pub const MAX_ENUM_UNITS: usize = 24;

/// Result of enumerating one layer.
#[derive(Clone, Debug)]
pub struct Enumerated {
    /// log of the sum of `exp(term(s))`, i.e. log Z.
    pub log_z: f64,
    /// `E[s_k]` under the RBM (empty unless means were asked for).
    pub mean_enum: Vec<f64>,
    /// `E[sigma(c_o + (s M)_o)]` = `P(other_o = 1)` (empty unless means were asked for).
    pub mean_other: Vec<f64>,
}

/// A streamed, rescaled weighted sum of exp(term).
struct Acc {
    max: f64,
    sum: f64,
    s: Vec<f64>,
    o: Vec<f64>,
}

impl Acc {
    fn new(k: usize, n: usize, means: bool) -> Self {
        let (k, n) = if means { (k, n) } else { (0, 0) };
        Acc { max: f64::NEG_INFINITY, sum: 0.0, s: vec![0.0; k], o: vec![0.0; n] }
    }
    fn rescale(&mut self, new_max: f64) {
        if self.max > f64::NEG_INFINITY {
            let f = (self.max - new_max).exp();
            self.sum *= f;
            self.s.iter_mut().chain(self.o.iter_mut()).for_each(|x| *x *= f);
        }
        self.max = new_max;
    }
    fn merge(&mut self, other: &Acc) {
        if other.max == f64::NEG_INFINITY {
            return;
        }
        if other.max > self.max {
            self.rescale(other.max);
        }
        let f = (other.max - self.max).exp();
        self.sum += f * other.sum;
        for (a, b) in self.s.iter_mut().zip(&other.s) {
            *a += f * b;
        }
        for (a, b) in self.o.iter_mut().zip(&other.o) {
            *a += f * b;
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Visits the Gray-code states `gray(i)`, `i` in `lo..hi`, of k units.
fn enumerate_range(a: &[f64], c: &[f64], m: &[f64], lo: u64, hi: u64, means: bool) -> Acc {
    let (k, n) = (a.len(), c.len());
    let mut acc = Acc::new(k, n, means);
    if lo >= hi {
        return acc;
    }
    let g0 = lo ^ (lo >> 1);
    let mut state = vec![false; k];
    let mut x = c.to_vec();
    let mut lin = 0.0;
    for (bit, on) in state.iter_mut().enumerate() {
        if g0 >> bit & 1 == 1 {
            *on = true;
            lin += a[bit];
            x.iter_mut().zip(&m[bit * n..(bit + 1) * n]).for_each(|(xo, mo)| *xo += mo);
        }
    }
    let mut i = lo;
    loop {
        let term = lin + x.iter().map(|&xo| softplus(xo)).sum::<f64>();
        if term > acc.max {
            acc.rescale(term);
        }
        let e = (term - acc.max).exp();
        acc.sum += e;
        if means {
            for (sk, &on) in acc.s.iter_mut().zip(&state) {
                if on {
                    *sk += e;
                }
            }
            for (oo, &xo) in acc.o.iter_mut().zip(&x) {
                *oo += e * sigmoid(xo);
            }
        }
        i += 1;
        if i >= hi {
            break;
        }
        let bit = i.trailing_zeros() as usize;
        let row = &m[bit * n..(bit + 1) * n];
        if state[bit] {
            state[bit] = false;
            lin -= a[bit];
            x.iter_mut().zip(row).for_each(|(xo, mo)| *xo -= mo);
        } else {
            state[bit] = true;
            lin += a[bit];
            x.iter_mut().zip(row).for_each(|(xo, mo)| *xo += mo);
        }
    }
    acc
}

/// log-sum-exp over `s` in {0,1}^k of `s.a + sum_o softplus(c_o + (s M)_o)`, `M` `[k, n]`
/// row-major, with the means of s and of sigma(c + s M) when `means`.
pub fn enumerate_layer(a: &[f64], c: &[f64], m: &[f64], means: bool, threads: usize) -> Result<Enumerated> {
    let (k, n) = (a.len(), c.len());
    if k > MAX_ENUM_UNITS {
        return Err(Error::msg(format!("exact enumeration of {k} units (at most {MAX_ENUM_UNITS})")));
    }
    if m.len() != k * n {
        return Err(Error::Shape(format!("enumerate_layer: M has {} values, expected {k} x {n}", m.len())));
    }
    let total = 1u64 << k;
    let workers = (threads.max(1) as u64).min(total / 4096).max(1);
    let per = total.div_ceil(workers);
    let mut acc = if workers == 1 {
        enumerate_range(a, c, m, 0, total, means)
    } else {
        let parts: Vec<Acc> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (lo, hi) = (w * per, ((w + 1) * per).min(total));
                    scope.spawn(move || enumerate_range(a, c, m, lo, hi, means))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("enumeration worker panicked")).collect()
        });
        let mut acc = Acc::new(k, n, means);
        for p in &parts {
            acc.merge(p);
        }
        acc
    };
    let log_z = acc.max + acc.sum.ln();
    let norm = 1.0 / acc.sum;
    acc.s.iter_mut().chain(acc.o.iter_mut()).for_each(|x| *x *= norm);
    Ok(Enumerated { log_z, mean_enum: acc.s, mean_other: acc.o })
}

fn check_rbm(w: &[f64], bv: &[f64], bh: &[f64]) -> Result<()> {
    let (nv, nh) = (bv.len(), bh.len());
    if w.len() != nv * nh {
        return Err(Error::Shape(format!("RBM: W has {} values, expected V x H = {nv} x {nh}", w.len())));
    }
    if nv.min(nh) > MAX_ENUM_UNITS {
        return Err(Error::msg(format!(
            "exact log Z needs min(V, H) <= {MAX_ENUM_UNITS}; this RBM has V = {nv}, H = {nh}"
        )));
    }
    Ok(())
}

fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Exact `log Z` and visible marginals `P(v_i = 1)` `[V]` (when `marginals`) of a binary RBM
/// with W `[V, H]`, bv `[V]`, bh `[H]`, enumerating the smaller layer.
pub fn rbm_exact(w: &[f64], bv: &[f64], bh: &[f64], marginals: bool, threads: usize) -> Result<(f64, Vec<f64>)> {
    check_rbm(w, bv, bh)?;
    let (nv, nh) = (bv.len(), bh.len());
    if nh <= nv {
        let e = enumerate_layer(bh, bv, &transpose(w, nv, nh), marginals, threads)?;
        Ok((e.log_z, e.mean_other))
    } else {
        let e = enumerate_layer(bv, bh, w, marginals, threads)?;
        Ok((e.log_z, e.mean_enum))
    }
}

/// Exact `log Z` of a binary RBM (W `[V, H]`), enumerating the smaller layer.
pub fn log_z(w: &[f64], bv: &[f64], bh: &[f64], threads: usize) -> Result<f64> {
    Ok(rbm_exact(w, bv, bh, false, threads)?.0)
}

/// Brute force over both layers, `log sum_{v,h} exp(v.bv + h.bh + v W h)`, for V + H <= 24
/// (a check of [`log_z`] in tests).
pub fn log_z_brute(w: &[f64], bv: &[f64], bh: &[f64]) -> Result<f64> {
    let (nv, nh) = (bv.len(), bh.len());
    if w.len() != nv * nh || nv + nh > 24 {
        return Err(Error::Shape(format!("log_z_brute: V + H = {} (at most 24), W {} values", nv + nh, w.len())));
    }
    let mut terms = Vec::with_capacity(1 << (nv + nh));
    for vs in 0u64..1 << nv {
        for hs in 0u64..1 << nh {
            let mut e = 0.0;
            for i in (0..nv).filter(|i| vs >> i & 1 == 1) {
                e += bv[i];
                for j in (0..nh).filter(|j| hs >> j & 1 == 1) {
                    e += w[i * nh + j];
                }
            }
            for j in (0..nh).filter(|j| hs >> j & 1 == 1) {
                e += bh[j];
            }
            terms.push(e);
        }
    }
    Ok(super::log_sum_exp(&terms))
}

/// Exact per-frame results of a temporal model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExactFrames {
    /// `log Z_t` per frame `[N]`.
    pub log_z: Vec<f64>,
    /// `log P(v_t | v_<t) = -F_t(v_t) - log Z_t` per frame `[N]`.
    pub log_p: Vec<f64>,
    /// Marginals `P(v_t,i = 1 | v_<t)` `[N, V]` (empty unless asked for).
    pub marginals: Vec<f64>,
}

impl ExactFrames {
    /// Mean log-likelihood per frame.
    pub fn ll(&self) -> f64 {
        self.log_p.iter().sum::<f64>() / self.log_p.len().max(1) as f64
    }
}

/// Exact `log Z_t`, `log P(v_t | v_<t)` (and marginals) of every frame in `fb`.
pub fn exact_frames(fb: &FrameBiases, marginals: bool, threads: usize) -> Result<ExactFrames> {
    if fb.gaussian {
        return Err(Error::msg("exact log Z is for binary visible units only"));
    }
    let (nv, nh) = (fb.nv, fb.nh);
    let mut out = ExactFrames { log_z: vec![], log_p: vec![], marginals: vec![] };
    for t in 0..fb.frames {
        let (bv, bh) = (&fb.bv[t * nv..(t + 1) * nv], &fb.bh[t * nh..(t + 1) * nh]);
        let (lz, marg) = rbm_exact(&fb.w, bv, bh, marginals, threads)?;
        out.log_z.push(lz);
        out.log_p.push(-fb.free_energy(t) - lz);
        out.marginals.extend(marg);
    }
    Ok(out)
}

/// Exact per-frame log-likelihoods of `model` over whole sequences (dense `[T_b, V]` each).
pub fn exact_log_likelihood<B: Backend>(
    be: &B,
    model: &Model<B>,
    seqs: &[Vec<f64>],
    threads: usize,
) -> Result<ExactFrames> {
    let fb = FrameBiases::compute(be, model, seqs)?;
    exact_frames(&fb, false, threads)
}
