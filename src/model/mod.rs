//! The four models of SPEC 2 on any [`Backend`]: RBM, RTRBM, RNN-RBM and LSTM-RTRBM.
//!
//! Every temporal model is a chain of conditional RBMs sharing W whose biases bv_t, bh_t are
//! deterministic functions of the true history. A model is its [`ModelSpec`] (kind and sizes) and
//! its named parameter tensors; the per-chunk buffers live in a [`Workspace`]. Training
//! (SPEC 3) is [`Model::forward`] (biases and mean-field states), [`Model::negatives`] (CD-K
//! Gibbs chains) and [`Model::backward`] (the CD gradient carried back through time).

pub mod params;

use crate::backend::{Backend, Dims, Mat};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::rng::{HostRng, RngKey};
pub use params::Params;

/// Which model of SPEC 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ModelKind {
    /// A frame-level RBM with static biases (no time).
    Rbm,
    /// Recurrent temporal RBM (Sutskever, Hinton, Taylor 2008).
    Rtrbm,
    /// RNN-RBM (Boulanger-Lewandowski et al. 2012).
    RnnRbm,
    /// RTRBM plus an LSTM bypass (Lyu, Wu, Zhu 2015).
    LstmRtrbm,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Rbm => "rbm",
            ModelKind::Rtrbm => "rtrbm",
            ModelKind::RnnRbm => "rnn_rbm",
            ModelKind::LstmRtrbm => "lstm_rtrbm",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [ModelKind::Rbm, ModelKind::Rtrbm, ModelKind::RnnRbm, ModelKind::LstmRtrbm].into_iter().find(|k| k.name() == s)
    }
}

/// Kind and sizes of a model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub kind: ModelKind,
    /// Visible units V (88 piano keys, or the data dimension for Gaussian visibles).
    pub visible: usize,
    /// RBM hidden units H.
    pub hidden: usize,
    /// LSTM units (LSTM-RTRBM) or RNN units (RNN-RBM), U; ignored by RBM and RTRBM.
    pub recurrent: usize,
    /// Gaussian visible units with unit variance (SPEC 1), for real-valued data.
    #[serde(default)]
    pub gaussian: bool,
    /// Learn the initial states r_0, l_0, c_0, u_0 instead of starting at zero.
    #[serde(default)]
    pub learned_init: bool,
    /// LSTM peephole connections from the cell state to the gates.
    #[serde(default)]
    pub peepholes: bool,
}

impl ModelSpec {
    pub fn new(kind: ModelKind, visible: usize, hidden: usize, recurrent: usize) -> Self {
        Self { kind, visible, hidden, recurrent, gaussian: false, learned_init: false, peepholes: false }
    }

    /// U as used by the backend: 0 for models without an LSTM or RNN.
    pub fn u(&self) -> usize {
        match self.kind {
            ModelKind::Rbm | ModelKind::Rtrbm => 0,
            _ => self.recurrent,
        }
    }

    pub fn dims(&self, t: usize, b: usize) -> Dims {
        Dims { t, b, v: self.visible, h: self.hidden, u: self.u() }
    }

    /// The parameter tensors of this model: (name, shape).
    pub fn param_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (v, h, u) = (self.visible, self.hidden, self.recurrent);
        let mut p = vec![("W", vec![v, h]), ("bv", vec![v]), ("bh", vec![h])];
        match self.kind {
            ModelKind::Rbm => {}
            ModelKind::Rtrbm => {
                p.push(("WR", vec![h, h]));
                if self.learned_init {
                    p.push(("r0", vec![h]));
                }
            }
            ModelKind::LstmRtrbm => {
                p.extend([("WR", vec![h, h]), ("WL", vec![u, h]), ("lstm_Wx", vec![v, 4 * u])]);
                p.extend([("lstm_Wl", vec![u, 4 * u]), ("lstm_b", vec![4 * u])]);
                if self.peepholes {
                    p.push(("lstm_peep", vec![3 * u]));
                }
                if self.learned_init {
                    p.extend([("r0", vec![h]), ("l0", vec![u]), ("c0", vec![u])]);
                }
            }
            ModelKind::RnnRbm => {
                p.extend([("Wuv", vec![u, v]), ("Wuh", vec![u, h]), ("Wuu", vec![u, u]), ("Wvu", vec![v, u])]);
                p.push(("bu", vec![u]));
                if self.learned_init {
                    p.push(("u0", vec![u]));
                }
            }
        }
        p
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::config("model", f, m));
        if self.visible == 0 {
            return bad("visible", "must be positive");
        }
        if self.hidden == 0 {
            return bad("hidden", "must be positive");
        }
        if matches!(self.kind, ModelKind::LstmRtrbm | ModelKind::RnnRbm) && self.recurrent == 0 {
            return bad("recurrent", "must be positive for lstm_rtrbm and rnn_rbm");
        }
        if self.gaussian && matches!(self.kind, ModelKind::RnnRbm) {
            return bad("gaussian", "Gaussian visible units are supported for rbm, rtrbm and lstm_rtrbm");
        }
        if self.peepholes && self.kind != ModelKind::LstmRtrbm {
            return bad("peepholes", "only lstm_rtrbm has an LSTM");
        }
        Ok(())
    }
}

/// Initial values of the parameters (SPEC 3): W, WR, WL and the RNN matrices ~ Normal(0, w_std^2);
/// biases 0; LSTM weights uniform(-1/sqrt(U), 1/sqrt(U)); forget-gate bias 1.
pub fn init_params(spec: &ModelSpec, w_std: f64, seed: u64) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let mut rng = HostRng::new(seed, 0x1417);
    let u = spec.recurrent;
    spec.param_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<f64> = match name {
                "W" | "WR" | "WL" | "Wuv" | "Wuh" | "Wuu" | "Wvu" => (0..n).map(|_| w_std * rng.normal()).collect(),
                "lstm_Wx" | "lstm_Wl" | "lstm_peep" => {
                    let a = 1.0 / (u as f64).sqrt();
                    (0..n).map(|_| a * (2.0 * rng.next_f64() - 1.0)).collect()
                }
                // gate order (i, f, o, g): the forget block [U, 2U) starts at 1
                "lstm_b" => (0..n).map(|i| if (u..2 * u).contains(&i) { 1.0 } else { 0.0 }).collect(),
                _ => vec![0.0; n],
            };
            (name.to_string(), shape, data)
        })
        .collect()
}

/// Buffers for one chunk of at most `t_max` frames of `b` sequences. Time-major `[T, B, X]`
/// layouts (see `backend`), so a chunk of T <= t_max frames uses a prefix of each buffer.
pub struct Workspace<B: Backend> {
    pub t_max: usize,
    pub b: usize,
    /// data frames `[T,B,V]` (padded frames are zero) and frame mask `[T*B]` (1 = real frame)
    pub v: B::Buf,
    pub mask: B::Buf,
    /// mask / (real frames of the model): the weights of the SPEC 3 cost `[T*B]`
    pub wmask: B::Buf,
    /// dynamic biases `[T,B,V]`, `[T,B,H]`
    pub bv_t: B::Buf,
    pub bh_t: B::Buf,
    /// RTRBM: `pre` (bh + WL l) and `vw` (v W) `[T,B,H]`, mean-field states `r` `[T+1,B,H]`
    pub pre_h: B::Buf,
    pub vw: B::Buf,
    pub r: B::Buf,
    /// LSTM: pre-activations and gates `[T,B,4U]`, states `l`, `c` `[T+1,B,U]`
    pub pre_g: B::Buf,
    pub gates: B::Buf,
    pub l: B::Buf,
    pub c: B::Buf,
    /// RNN-RBM: pre-activations `[T,B,U]`, states `u` `[T+1,B,U]`
    pub pre_u: B::Buf,
    pub u: B::Buf,
    /// negative samples `[T,B,V]` and their hidden probabilities `[T,B,H]`
    pub vneg: B::Buf,
    pub phneg: B::Buf,
    /// backward scratch: dbv_t `[T,B,V]`, dbh_t, g, tmp_h `[T,B,H]`, du `[T+1,B,U]`,
    /// dpre `[T,B,4U]`, dz/e `[T,B,U]`, dstate0 `[2,B,U]`, dfe `[T*B]`
    pub dbv_t: B::Buf,
    pub dbh_t: B::Buf,
    pub g: B::Buf,
    pub tmp_h: B::Buf,
    pub du: B::Buf,
    pub dpre: B::Buf,
    pub dz: B::Buf,
    pub e: B::Buf,
    pub dstate0: B::Buf,
    pub fe: B::Buf,
    /// zeros `[B, max(H,U)]`, never written: the initial states without a learned one and the
    /// zero last frame of the backward's `du` / `e` (copied, so that no update allocates)
    pub zero_state: B::Buf,
}

impl<B: Backend> Workspace<B> {
    pub fn new(be: &B, spec: &ModelSpec, t_max: usize, b: usize) -> Result<Self> {
        let (v, h, u) = (spec.visible, spec.hidden, spec.u().max(1));
        let n = t_max * b;
        let s = (t_max + 1) * b;
        Ok(Self {
            t_max,
            b,
            v: be.zeros(n * v)?,
            mask: be.zeros(n)?,
            wmask: be.zeros(n)?,
            bv_t: be.zeros(n * v)?,
            bh_t: be.zeros(n * h)?,
            pre_h: be.zeros(n * h)?,
            vw: be.zeros(n * h)?,
            r: be.zeros(s * h)?,
            pre_g: be.zeros(n * 4 * u)?,
            gates: be.zeros(n * 4 * u)?,
            l: be.zeros(s * u)?,
            c: be.zeros(s * u)?,
            pre_u: be.zeros(n * u)?,
            u: be.zeros(s * u)?,
            vneg: be.zeros(n * v)?,
            phneg: be.zeros(n * h)?,
            dbv_t: be.zeros(n * v)?,
            dbh_t: be.zeros(n * h)?,
            g: be.zeros(n * h)?,
            tmp_h: be.zeros(n * h)?,
            du: be.zeros(s * u)?,
            dpre: be.zeros(n * 4 * u)?,
            dz: be.zeros(n * u)?,
            e: be.zeros(n * u)?,
            dstate0: be.zeros(2 * b * u)?,
            fe: be.zeros(n)?,
            zero_state: be.zeros(b * h.max(u))?,
        })
    }

    /// Loads a batch of B sequences per packed model, model-major (`frames[p*B + b]` is
    /// sequence b of model p, `[T_b, V]` row-major), zero-padding to the longest of all. Writes
    /// the frame mask and `wmask` = mask / (the model's real frames). Returns the chunk's T and
    /// each model's real frame count.
    pub fn load(&mut self, be: &B, frames: &[&[B::F]], nv: usize) -> Result<(usize, Vec<usize>)> {
        let (b, models) = (self.b, be.models());
        if frames.len() != b * models {
            return Err(Error::Shape(format!("workspace holds {b} sequences x {models} models, got {}", frames.len())));
        }
        let t = frames.iter().map(|f| f.len() / nv).max().unwrap_or(0);
        if t == 0 || t > self.t_max {
            return Err(Error::Shape(format!("chunk of {t} frames (workspace holds 1..={})", self.t_max)));
        }
        let slab = self.t_max * b;
        let mut v = vec![B::F::ZERO; models * slab * nv];
        let mut mask = vec![B::F::ZERO; models * slab];
        let mut wmask = vec![B::F::ZERO; models * slab];
        let mut real = vec![0usize; models];
        for (p, seqs) in frames.chunks(b).enumerate() {
            for (bi, seq) in seqs.iter().enumerate() {
                for s in 0..seq.len() / nv {
                    let row = p * slab + s * b + bi;
                    v[row * nv..(row + 1) * nv].copy_from_slice(&seq[s * nv..(s + 1) * nv]);
                    mask[row] = B::F::ONE;
                    real[p] += 1;
                }
            }
            // the 1/frames of the SPEC 3 cost, folded into the mask of each model
            let w = B::F::from_f64(1.0 / real[p].max(1) as f64);
            for (wm, &m) in wmask[p * slab..(p + 1) * slab].iter_mut().zip(&mask[p * slab..(p + 1) * slab]) {
                *wm = w * m;
            }
        }
        be.write(&mut self.v, &v)?;
        be.write(&mut self.mask, &mask)?;
        be.write(&mut self.wmask, &wmask)?;
        Ok((t, real))
    }

    /// [`Workspace::load`] from a [`ChunkStore`] on the device: sequence b of model p is chunk
    /// `ids[p*B + b]` (None: padding). Writes exactly what `load` writes for those chunks, with
    /// one launch and no frames copied from the host. Returns the chunk's T and each model's
    /// real frame count.
    pub fn gather(&mut self, be: &B, store: &ChunkStore<B>, ids: &[Option<usize>]) -> Result<(usize, Vec<usize>)> {
        let (b, models) = (self.b, be.models());
        if ids.len() != b * models {
            return Err(Error::Shape(format!("workspace holds {b} sequences x {models} models, got {}", ids.len())));
        }
        let mut spans = Vec::with_capacity(ids.len());
        for id in ids {
            spans.push(match *id {
                None => [0, 0],
                Some(i) if i < store.len() => [store.starts[i], store.lens[i]],
                Some(i) => return Err(Error::Shape(format!("chunk {i} of a store of {}", store.len()))),
            });
        }
        let t = spans.iter().map(|s| s[1] as usize).max().unwrap_or(0);
        if t == 0 || t > self.t_max {
            return Err(Error::Shape(format!("chunk of {t} frames (workspace holds 1..={})", self.t_max)));
        }
        let real = spans.chunks(b.max(1)).map(|s| s.iter().map(|x| x[1] as usize).sum()).collect();
        be.gather_frames(&store.store, &spans, self.t_max, b, store.nv, &mut self.v, &mut self.mask, &mut self.wmask)?;
        Ok((t, real))
    }
}

/// The training chunks resident on the device for a whole run (one copy, shared by every
/// packed model): chunk i is `lens[i]` frames from row `starts[i]` of the store. An update then
/// loads its batch with [`Workspace::gather`], one launch, instead of uploading frames.
pub struct ChunkStore<B: Backend> {
    store: B::Store,
    starts: Vec<u32>,
    lens: Vec<u32>,
    nv: usize,
}

impl<B: Backend> ChunkStore<B> {
    /// Uploads `chunks` (each `[T_i, V]` row-major) one after another.
    pub fn new(be: &B, chunks: &[Vec<B::F>], nv: usize) -> Result<Self> {
        let (mut starts, mut lens) = (vec![], vec![]);
        let mut rows = 0usize;
        for (i, c) in chunks.iter().enumerate() {
            if nv == 0 || c.len() % nv != 0 {
                return Err(Error::Shape(format!("chunk {i} holds {} values, not whole frames of {nv}", c.len())));
            }
            let too_big = || Error::Shape(format!("the training chunks hold more than {} frames", u32::MAX));
            starts.push(u32::try_from(rows).map_err(|_| too_big())?);
            lens.push(u32::try_from(c.len() / nv).map_err(|_| too_big())?);
            rows += c.len() / nv;
        }
        let flat: Vec<B::F> = chunks.concat();
        Ok(Self { store: be.upload_store(&flat)?, starts, lens, nv })
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Frames of chunk `i`.
    pub fn frames(&self, i: usize) -> usize {
        self.lens[i] as usize
    }
}

/// A model: its spec and its parameters on a backend.
pub struct Model<B: Backend> {
    pub spec: ModelSpec,
    pub params: Params<B>,
}

fn m<Buf>(buf: &Buf, offset: usize, trans: bool) -> Mat<'_, Buf> {
    Mat { buf, offset, trans }
}

impl<B: Backend> Model<B> {
    /// A model with the default initialisation of SPEC 3.
    pub fn init(be: &B, spec: ModelSpec, w_std: f64, seed: u64) -> Result<Self> {
        Self::init_packed(be, spec, &[(w_std, seed)])
    }

    /// The packed models of a packed backend, model p initialised (SPEC 3) from `inits[p]` =
    /// (weight std, seed): each exactly as [`Model::init`] initialises it alone.
    pub fn init_packed(be: &B, spec: ModelSpec, inits: &[(f64, u64)]) -> Result<Self> {
        spec.validate()?;
        let host = inits.iter().map(|&(w_std, seed)| init_params(&spec, w_std, seed)).collect();
        let params = Params::from_host_models(be, host)?;
        Ok(Self { spec, params })
    }

    /// Zero-valued tensors shaped like the parameters (gradients, velocities).
    pub fn zeros_like(&self, be: &B) -> Result<Params<B>> {
        self.params.zeros_like(be)
    }

    /// Writes the initial states (row 0 of r, l, c, u): learned ones broadcast over the batch, or 0.
    fn init_states(&self, be: &B, ws: &mut Workspace<B>) -> Result<()> {
        let (b, h, u) = (ws.b, self.spec.hidden, self.spec.u());
        let p = &self.params;
        let zero = &ws.zero_state;
        let set = |be: &B, dst: &mut B::Buf, name: &str, width: usize| -> Result<()> {
            match p.find(name) {
                Some(src) => (0..b).try_for_each(|bi| be.copy(src, 0, dst, bi * width, width)),
                None => be.copy(zero, 0, dst, 0, b * width),
            }
        };
        match self.spec.kind {
            ModelKind::Rbm => {}
            ModelKind::Rtrbm => set(be, &mut ws.r, "r0", h)?,
            ModelKind::LstmRtrbm => {
                set(be, &mut ws.r, "r0", h)?;
                set(be, &mut ws.l, "l0", u)?;
                set(be, &mut ws.c, "c0", u)?;
            }
            ModelKind::RnnRbm => set(be, &mut ws.u, "u0", u)?,
        }
        Ok(())
    }

    /// Computes the dynamic biases bv_t, bh_t of every frame of the chunk in `ws` (T frames),
    /// with the mean-field / LSTM / RNN states. With `carry_state`, row 0 of the state buffers is
    /// taken as it is (continuing a sequence); otherwise it is reset (SPEC 3: per chunk).
    pub fn forward(&self, be: &B, ws: &mut Workspace<B>, t: usize, carry_state: bool) -> Result<()> {
        let d = self.spec.dims(t, ws.b);
        let (n, nv, nh, nu) = (d.n(), d.v, d.h, d.u);
        let p = &self.params;
        if !carry_state {
            self.init_states(be, ws)?;
        }
        let one = B::F::ONE;
        let zero = B::F::ZERO;
        // bv_t = bv (every model but RNN-RBM)
        let broadcast = |be: &B, dst: &mut B::Buf, bias: &B::Buf, width: usize| be.broadcast_rows(dst, bias, n, width);
        match self.spec.kind {
            ModelKind::Rbm => {
                broadcast(be, &mut ws.bv_t, p.get("bv")?, nv)?;
                broadcast(be, &mut ws.bh_t, p.get("bh")?, nh)?;
            }
            ModelKind::Rtrbm | ModelKind::LstmRtrbm => {
                broadcast(be, &mut ws.bv_t, p.get("bv")?, nv)?;
                // pre = bh (+ l_{t-1} WL)
                broadcast(be, &mut ws.pre_h, p.get("bh")?, nh)?;
                // vw = v_t W
                be.gemm(n, nh, nv, one, m(&ws.v, 0, false), m(p.get("W")?, 0, false), zero, &mut ws.vw, 0)?;
                if self.spec.kind == ModelKind::LstmRtrbm {
                    // LSTM over the chunk first: it is driven by the data only (SPEC 2).
                    // pre_g = v_t Wx + b
                    broadcast(be, &mut ws.pre_g, p.get("lstm_b")?, 4 * nu)?;
                    be.gemm(
                        n,
                        4 * nu,
                        nv,
                        one,
                        m(&ws.v, 0, false),
                        m(p.get("lstm_Wx")?, 0, false),
                        one,
                        &mut ws.pre_g,
                        0,
                    )?;
                    // the LSTM, pre += l_{t-1} WL (rows 0..T of l), then the RTRBM recurrence
                    be.lstm_rtrbm_forward(
                        p.get("lstm_Wl")?,
                        p.find("lstm_peep"),
                        &ws.pre_g,
                        &mut ws.l,
                        &mut ws.c,
                        &mut ws.gates,
                        p.get("WL")?,
                        p.get("WR")?,
                        &mut ws.pre_h,
                        &ws.vw,
                        &mut ws.r,
                        &mut ws.bh_t,
                        d,
                    )?;
                } else {
                    be.rtrbm_forward(p.get("WR")?, &ws.pre_h, &ws.vw, &mut ws.r, &mut ws.bh_t, d)?;
                }
            }
            ModelKind::RnnRbm => {
                // u_t = tanh(bu + v_t Wvu + u_{t-1} Wuu)
                broadcast(be, &mut ws.pre_u, p.get("bu")?, nu)?;
                be.gemm(n, nu, nv, one, m(&ws.v, 0, false), m(p.get("Wvu")?, 0, false), one, &mut ws.pre_u, 0)?;
                be.rnn_forward(p.get("Wuu")?, &ws.pre_u, &mut ws.u, d)?;
                // bv_t = bv + u_{t-1} Wuv, bh_t = bh + u_{t-1} Wuh
                broadcast(be, &mut ws.bv_t, p.get("bv")?, nv)?;
                be.gemm(n, nv, nu, one, m(&ws.u, 0, false), m(p.get("Wuv")?, 0, false), one, &mut ws.bv_t, 0)?;
                broadcast(be, &mut ws.bh_t, p.get("bh")?, nh)?;
                be.gemm(n, nh, nu, one, m(&ws.u, 0, false), m(p.get("Wuh")?, 0, false), one, &mut ws.bh_t, 0)?;
            }
        }
        Ok(())
    }

    /// CD-K negative samples: `vneg` = last visible of a K-step Gibbs chain started at each data
    /// frame under its own RBM (SPEC 3), with one key per packed model. Padded frames keep their
    /// data frame (zero), and their cost weight is 0.
    pub fn negatives(
        &self,
        be: &B,
        ws: &mut Workspace<B>,
        t: usize,
        k: usize,
        rng: &[RngKey],
        counter: u32,
    ) -> Result<()> {
        let d = self.spec.dims(t, ws.b);
        let n = d.n();
        be.copy(&ws.v, 0, &mut ws.vneg, 0, n * d.v)?;
        be.gibbs(
            self.params.get("W")?,
            &ws.bv_t,
            &ws.bh_t,
            &mut ws.vneg,
            Some(&ws.mask), // padded frames draw nothing and keep their (zero) data frame
            n,
            d.v,
            d.h,
            k,
            self.spec.gaussian,
            rng,
            counter,
        )
    }

    /// The gradient of the SPEC 3 cost `(1/frames) sum_t m_t [F_t(v_t) - F_t(v*_t)]` with the
    /// negatives in `ws.vneg` held fixed, written into `grads` (overwritten). The weights
    /// m_t / frames are `ws.wmask`, written by [`Workspace::load`].
    pub fn backward(&self, be: &B, ws: &mut Workspace<B>, t: usize, grads: &mut Params<B>) -> Result<()> {
        let d = self.spec.dims(t, ws.b);
        let (n, b, nv, nh, nu) = (d.n(), d.b, d.v, d.h, d.u);
        let p = &self.params;
        let w = p.get("W")?;
        let (one, zero) = (B::F::ONE, B::F::ZERO);

        // --- CD part (SPEC 3), weights w_t = m_t / frames: ph* = sigma(v* W + bh_t),
        // d cost / d bh_t (direct) = w_t (ph* - ph), d cost / d bv_t = w_t (v* - v)
        be.cd_stats(w, &ws.v, &ws.vneg, &ws.bh_t, &ws.wmask, n, nv, nh, &mut ws.phneg, &mut ws.dbh_t, &mut ws.dbv_t)?;
        // dW = sum_t w_t (v*_t^T ph*_t - v_t^T ph_t) [+ sum_t v_t^T (g_t - dbh_t), the RTRBM's
        // path through r_t]. Since w (v*^T ph* - v^T ph) = w (v* - v)^T ph* + v^T w (ph* - ph):
        //   dW = dbv_t^T ph* + v^T G,  G = dbh_t (RBM, RNN-RBM) or g (RTRBM, LSTM-RTRBM),
        // two products over the frames instead of three, with no masked copies of ph and ph*.
        be.gemm(nv, nh, n, one, m(&ws.dbv_t, 0, true), m(&ws.phneg, 0, false), zero, grads.get_mut("W")?, 0)?;
        // dbv = sum_t dbv_t (RNN-RBM adds its own path below, too)
        be.sum_rows(&ws.dbv_t, n, nv, one, zero, grads.get_mut("bv")?)?;

        match self.spec.kind {
            ModelKind::Rbm => {
                be.sum_rows(&ws.dbh_t, n, nh, one, zero, grads.get_mut("bh")?)?;
                be.gemm(nv, nh, n, one, m(&ws.v, 0, true), m(&ws.dbh_t, 0, false), one, grads.get_mut("W")?, 0)?;
            }
            ModelKind::Rtrbm | ModelKind::LstmRtrbm => {
                if self.spec.kind == ModelKind::LstmRtrbm {
                    // g_t (below), then d l_{t-1} = g_t WL^T into du (row T, the gradient at l_T,
                    // is 0), then the LSTM's BPTT from du
                    be.copy(&ws.zero_state, 0, &mut ws.du, n * nu, b * nu)?;
                    if let Some(dp) = grads.find_mut("lstm_peep") {
                        be.fill(dp, zero)?;
                    }
                    be.lstm_rtrbm_backward(
                        p.get("WR")?,
                        &ws.r,
                        &ws.dbh_t,
                        &mut ws.g,
                        p.get("WL")?,
                        &mut ws.du,
                        p.get("lstm_Wl")?,
                        p.find("lstm_peep"),
                        &ws.l,
                        &ws.c,
                        &ws.gates,
                        &mut ws.dpre,
                        &mut ws.dstate0,
                        grads.find_mut("lstm_peep"),
                        d,
                    )?;
                } else {
                    // g_t = total d cost / d bh_t, through r_t into later frames (BPTT)
                    be.rtrbm_backward(p.get("WR")?, &ws.r, &ws.dbh_t, &mut ws.g, d)?;
                }
                be.sum_rows(&ws.g, n, nh, one, zero, grads.get_mut("bh")?)?;
                // dWR = sum_t r_{t-1}^T g_t
                be.gemm(nh, nh, n, one, m(&ws.r, 0, true), m(&ws.g, 0, false), zero, grads.get_mut("WR")?, 0)?;
                // dW += v^T g (the direct CD term v^T dbh_t and the path through r_t, see above)
                be.gemm(nv, nh, n, one, m(&ws.v, 0, true), m(&ws.g, 0, false), one, grads.get_mut("W")?, 0)?;
                if let Some(dr0) = grads.find_mut("r0") {
                    // d r_0 = sum_b g_1 WR^T
                    be.gemm(b, nh, nh, one, m(&ws.g, 0, false), m(p.get("WR")?, 0, true), zero, &mut ws.tmp_h, 0)?;
                    be.sum_rows(&ws.tmp_h, b, nh, one, zero, dr0)?;
                }
                if self.spec.kind == ModelKind::LstmRtrbm {
                    // dWL = sum_t l_{t-1}^T g_t
                    be.gemm(nu, nh, n, one, m(&ws.l, 0, true), m(&ws.g, 0, false), zero, grads.get_mut("WL")?, 0)?;
                    // dWx = sum_t v_t^T dpre_t, dWl = sum_t l_{t-1}^T dpre_t, db = sum_t dpre_t
                    be.gemm(
                        nv,
                        4 * nu,
                        n,
                        one,
                        m(&ws.v, 0, true),
                        m(&ws.dpre, 0, false),
                        zero,
                        grads.get_mut("lstm_Wx")?,
                        0,
                    )?;
                    be.gemm(
                        nu,
                        4 * nu,
                        n,
                        one,
                        m(&ws.l, 0, true),
                        m(&ws.dpre, 0, false),
                        zero,
                        grads.get_mut("lstm_Wl")?,
                        0,
                    )?;
                    be.sum_rows(&ws.dpre, n, 4 * nu, one, zero, grads.get_mut("lstm_b")?)?;
                    if let Some(dl0) = grads.find_mut("l0") {
                        be.sum_rows(&ws.dstate0, b, nu, one, zero, dl0)?;
                    }
                    if grads.find("c0").is_some() {
                        // d c_0 rows [B,U] of dstate0, via the `e` scratch (unused by LSTM-RTRBM)
                        be.copy(&ws.dstate0, b * nu, &mut ws.e, 0, b * nu)?;
                        be.sum_rows(&ws.e, b, nu, one, zero, grads.get_mut("c0")?)?;
                    }
                }
            }
            ModelKind::RnnRbm => {
                be.sum_rows(&ws.dbh_t, n, nh, one, zero, grads.get_mut("bh")?)?;
                be.gemm(nv, nh, n, one, m(&ws.v, 0, true), m(&ws.dbh_t, 0, false), one, grads.get_mut("W")?, 0)?;
                // dWuv = sum_t u_{t-1}^T dbv_t, dWuh = sum_t u_{t-1}^T dbh_t
                be.gemm(nu, nv, n, one, m(&ws.u, 0, true), m(&ws.dbv_t, 0, false), zero, grads.get_mut("Wuv")?, 0)?;
                be.gemm(nu, nh, n, one, m(&ws.u, 0, true), m(&ws.dbh_t, 0, false), zero, grads.get_mut("Wuh")?, 0)?;
                // du[s] (gradient at u_{s}, rows 0..T) = dbv_t Wuv^T + dbh_t Wuh^T
                be.gemm(n, nu, nv, one, m(&ws.dbv_t, 0, false), m(p.get("Wuv")?, 0, true), zero, &mut ws.du, 0)?;
                be.gemm(n, nu, nh, one, m(&ws.dbh_t, 0, false), m(p.get("Wuh")?, 0, true), one, &mut ws.du, 0)?;
                // e[s] = du[s+1]: the outside gradient at u[s+1]; zero for the last frame
                if t > 1 {
                    be.copy(&ws.du, b * nu, &mut ws.e, 0, (n - b) * nu)?;
                }
                be.copy(&ws.zero_state, 0, &mut ws.e, (n - b) * nu, b * nu)?;
                be.rnn_backward(p.get("Wuu")?, &ws.u, &ws.e, &mut ws.dz, d)?;
                // dWuu = sum_t u_{t-1}^T dz_t, dWvu = sum_t v_t^T dz_t, dbu = sum_t dz_t
                be.gemm(nu, nu, n, one, m(&ws.u, 0, true), m(&ws.dz, 0, false), zero, grads.get_mut("Wuu")?, 0)?;
                be.gemm(nv, nu, n, one, m(&ws.v, 0, true), m(&ws.dz, 0, false), zero, grads.get_mut("Wvu")?, 0)?;
                be.sum_rows(&ws.dz, n, nu, one, zero, grads.get_mut("bu")?)?;
                if let Some(du0) = grads.find_mut("u0") {
                    // d u_0 = du[0] + dz_1 Wuu^T, summed over the batch
                    be.gemm(b, nu, nu, one, m(&ws.dz, 0, false), m(p.get("Wuu")?, 0, true), one, &mut ws.du, 0)?;
                    be.sum_rows(&ws.du, b, nu, one, zero, du0)?;
                }
            }
        }
        Ok(())
    }

    /// The SPEC 3 cost `(1/frames) sum_t m_t [F_t(v_t) - F_t(v*_t)]` of each packed model for
    /// the negatives in `ws.vneg` (after [`Model::forward`]), in f64.
    pub fn cost(&self, be: &B, ws: &mut Workspace<B>, t: usize) -> Result<Vec<f64>> {
        let d = self.spec.dims(t, ws.b);
        let n = d.n();
        let w = self.params.get("W")?;
        let wmask = be.download(&ws.wmask)?;
        be.free_energy(w, &ws.bv_t, &ws.bh_t, &ws.v, n, d.v, d.h, self.spec.gaussian, &mut ws.fe)?;
        let f_data = be.download(&ws.fe)?;
        be.free_energy(w, &ws.bv_t, &ws.bh_t, &ws.vneg, n, d.v, d.h, self.spec.gaussian, &mut ws.fe)?;
        let f_neg = be.download(&ws.fe)?;
        let slab = be.len(&ws.fe);
        Ok((0..be.models())
            .map(|p| {
                (p * slab..p * slab + n).map(|i| wmask[i].to_f64() * (f_data[i].to_f64() - f_neg[i].to_f64())).sum()
            })
            .collect())
    }
}

impl<B: Backend> Model<B> {
    /// Uploads the parameters of a checkpoint.
    pub fn from_checkpoint(be: &B, ck: &crate::checkpoint::Checkpoint) -> Result<Self> {
        Self::from_host(be, ck.spec.clone(), ck.params.clone())
    }

    /// A lone model from host tensors.
    pub fn from_host(be: &B, spec: ModelSpec, params: Vec<params::HostTensor>) -> Result<Self> {
        spec.validate()?;
        Ok(Self { spec, params: Params::from_host(be, params)? })
    }
}
