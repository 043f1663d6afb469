//! The `Backend` boundary: the operations the models need, one to one with the CUDA kernels.
//!
//! Every array is a flat, row-major buffer of `Self::F` on the backend's device. Shapes use the
//! letters of SPEC.md: T frames, B sequences in a batch, V visible units, H hidden units, U
//! recurrent (LSTM or RNN) units, N = T*B conditional RBMs, K Gibbs steps, M AIS runs.
//! Time-major layout: frame s of sequence b of a `[T, B, X]` array starts at `(s*B + b)*X`.
//! State arrays have T+1 rows: row 0 is the initial state (r_0, l_0, c_0 or u_0) and row s+1 is
//! the state after frame s (0-based frames s = 0..T, i.e. the spec's t = s+1).
//!
//! `Cpu` (in `cpu.rs`) is the readable reference; `Cuda` (in `cuda.rs`) runs the kernels of
//! `kernels/`. A model written against this trait runs on either without change.
//!
//! **Packed models.** A backend may hold P = [`Backend::models`] independent models of the same
//! shapes at once (a sweep's runs, trained together). Then every buffer is P equal slabs laid out
//! model-major, and every operation acts on slab p of each of its arguments exactly as the lone
//! operation would (on CUDA: the model index is a dimension of the launch grid). Sizes and
//! offsets given to the operations are per model: `zeros(n)` holds n elements per model, `len`
//! and `copy` count within a slab; `upload`, `write` and `download` move all P slabs at once,
//! concatenated. Values that differ between models come as one per model: the Gibbs keys, the
//! optimiser's hyper-parameters, the clipping factors and the sums of squares. [`Packed`] packs
//! any backend by looping over its models (the CPU's packing and the reference for the GPU's).

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod packed;

use crate::error::Result;
use crate::float::Float;
use crate::rng::RngKey;

pub use cpu::Cpu;
#[cfg(feature = "cuda")]
pub use cuda::{Cuda, GemmPath};
pub use packed::Packed;

/// Sizes shared by the sequence operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Frames per chunk (T).
    pub t: usize,
    /// Sequences per batch (B).
    pub b: usize,
    /// Visible units (V).
    pub v: usize,
    /// Hidden units of the RBM (H).
    pub h: usize,
    /// Units of the LSTM or RNN (U); 0 for models without one.
    pub u: usize,
}

impl Dims {
    /// N = T*B conditional RBMs.
    pub fn n(&self) -> usize {
        self.t * self.b
    }
}

/// A matrix operand of [`Backend::gemm`]: a row-major `rows x cols` matrix starting `offset`
/// elements into a buffer, read transposed when `trans` is set.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, Buf> {
    pub buf: &'a Buf,
    pub offset: usize,
    pub trans: bool,
}

/// Momentum-SGD hyper-parameters of one model (see [`Backend::sgd_momentum`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdHyper<F> {
    pub lr: F,
    pub momentum: F,
    pub weight_decay: F,
}

/// Fails unless `got` values were given for `models` models.
pub fn check_models(what: &str, got: usize, models: usize) -> Result<()> {
    if got != models {
        return Err(crate::error::Error::Shape(format!("{what}: {got} values for {models} packed models")));
    }
    Ok(())
}

/// Fails unless [`Backend::sgd_momentum_all`] got one gradient and one velocity per parameter
/// tensor.
pub fn check_tensor_lists(params: usize, grads: usize, vels: usize) -> Result<()> {
    if grads != params || vels != params {
        return Err(crate::error::Error::Shape(format!(
            "sgd_momentum_all: {params} parameter tensors, {grads} gradients, {vels} velocities"
        )));
    }
    Ok(())
}

/// Fails unless `spans` (see [`Backend::gather_frames`]) holds B spans for each of `models`
/// models, each at most `t_max` frames and within a store of `rows` frames.
pub fn check_spans(spans: &[[u32; 2]], models: usize, b: usize, t_max: usize, rows: usize) -> Result<()> {
    use crate::error::Error;
    if spans.len() != models * b {
        return Err(Error::Shape(format!("gather_frames: {} spans for {models} models x {b} sequences", spans.len())));
    }
    for (i, &[start, len]) in spans.iter().enumerate() {
        if len as usize > t_max || start as usize + len as usize > rows {
            return Err(Error::Shape(format!(
                "gather_frames: span {i} = frames {start}..{} (store holds {rows} frames, chunks at most {t_max})",
                start as usize + len as usize
            )));
        }
    }
    Ok(())
}

/// The operations of a compute device. See the module comment for layouts.
pub trait Backend: Send + Sync {
    /// Element type of the device buffers.
    type F: Float;
    /// A device buffer of `F`.
    type Buf: Send + Sync;
    /// Training frames kept on the device (see [`Backend::upload_store`]).
    type Store: Send + Sync;
    /// A recorded sequence of operations (a CUDA graph; see [`Backend::begin_recording`]).
    type Recording: Send;

    /// Human-readable device name (e.g. `cpu (2 threads, f32)` or `NVIDIA H100 80GB HBM3`).
    fn name(&self) -> String;

    /// Number of models packed into every buffer and operation (1 for a lone model).
    fn models(&self) -> usize {
        1
    }

    // ----- memory ---------------------------------------------------------------------------

    /// A buffer of `n` zeros.
    fn zeros(&self, n: usize) -> Result<Self::Buf>;
    /// A buffer holding a copy of `host`.
    fn upload(&self, host: &[Self::F]) -> Result<Self::Buf>;
    /// Overwrites `dst` (same length) with `host`.
    fn write(&self, dst: &mut Self::Buf, host: &[Self::F]) -> Result<()>;
    /// Copies the buffer to the host (synchronises).
    fn download(&self, buf: &Self::Buf) -> Result<Vec<Self::F>>;
    /// Number of elements.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// `dst[dst_off .. dst_off+n] = src[src_off .. src_off+n]`.
    fn copy(&self, src: &Self::Buf, src_off: usize, dst: &mut Self::Buf, dst_off: usize, n: usize) -> Result<()>;
    /// Sets every element to `value`.
    fn fill(&self, x: &mut Self::Buf, value: Self::F) -> Result<()>;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<()>;

    // ----- recorded updates ----------------------------------------------------------------------

    /// Starts recording: until [`Backend::end_recording`], operations are recorded instead of
    /// run, with their arguments as they are now (buffer addresses, sizes, scalars). `Ok(false)`:
    /// this backend does not record (the CPU, or CUDA while profiling kernels), nothing changed,
    /// and the caller runs its operations as usual. While recording, operations must not
    /// allocate, upload or download: run the same sequence once without recording first, so that
    /// every buffer it needs exists.
    fn begin_recording(&self) -> Result<bool> {
        Ok(false)
    }
    /// Whether [`Backend::begin_recording`] records on this backend (CUDA, unless it profiles
    /// kernels).
    fn records(&self) -> bool {
        false
    }
    /// Ends the recording begun by [`Backend::begin_recording`] and returns it. Nothing it holds
    /// has run yet.
    fn end_recording(&self) -> Result<Self::Recording> {
        Err(crate::error::Error::msg("this backend does not record operations"))
    }
    /// Runs a recording again, on the buffers' current contents.
    fn replay(&self, _recording: &Self::Recording) -> Result<()> {
        Err(crate::error::Error::msg("this backend does not record operations"))
    }
    /// Writes the Gibbs keys (one per packed model) that a recorded [`Backend::gibbs`] draws
    /// with: a recording freezes launch arguments, so a recorded `gibbs` reads its keys from a
    /// device array, and each replay draws with the keys staged last. Stage the keys before
    /// recording (a `gibbs` recorded with other keys is an error) and before every replay.
    fn stage_gibbs_keys(&self, _keys: &[RngKey]) -> Result<()> {
        Ok(())
    }
    /// Changes whenever the backend allocates or replaces a buffer of its own that a recording
    /// may hold (scratch space, device copies of per-model arguments): recordings made at an
    /// earlier generation must not be replayed.
    fn recording_generation(&self) -> u64 {
        0
    }

    // ----- training data resident on the device -------------------------------------------------

    /// Uploads a frame store: `frames` is `[S, V]`, every training chunk one after another. It
    /// is read by [`Backend::gather_frames`] for the whole run, so an update copies no frames
    /// from the host. Packed, it is one copy shared by every model, not P slabs.
    fn upload_store(&self, frames: &[Self::F]) -> Result<Self::Store>;

    /// Loads one batch from a frame store into a workspace's `v` `[T_max, B, V]`, `mask` and
    /// `wmask` `[T_max, B]` (per model). Sequence b of model p is the store's rows
    /// `start .. start + len`, `[start, len] = spans[p*B + b]` (len 0: a padding sequence):
    /// frame s < len goes to row `s*B + b` of v with mask 1, every other row of the slab is 0 with
    /// mask 0, and `wmask = mask * w_p` with `w_p = f(1 / max(1, F_p))` rounded from f64, F_p =
    /// the sum of model p's lens (the 1/frames of the SPEC 3 cost). The spans are the only
    /// host-to-device copy (8 bytes per sequence).
    #[allow(clippy::too_many_arguments)]
    fn gather_frames(
        &self,
        store: &Self::Store,
        spans: &[[u32; 2]],
        t_max: usize,
        b: usize,
        nv: usize,
        v: &mut Self::Buf,
        mask: &mut Self::Buf,
        wmask: &mut Self::Buf,
    ) -> Result<()>;

    // ----- dense linear algebra ---------------------------------------------------------------

    /// `C[m,n] (at c_off) = alpha * op(A)[m,k] op(B)[k,n] + beta * C`, all row-major.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: Self::F,
        a: Mat<'_, Self::Buf>,
        b: Mat<'_, Self::Buf>,
        beta: Self::F,
        c: &mut Self::Buf,
        c_off: usize,
    ) -> Result<()>;

    /// `x[r, :] = bias` for each of `rows` rows of width `cols`: a bias broadcast over the frames.
    fn broadcast_rows(&self, x: &mut Self::Buf, bias: &Self::Buf, rows: usize, cols: usize) -> Result<()>;

    /// `out[c] = beta * out[c] + alpha * sum_r x[r, c]` over `rows` rows of width `cols`, the
    /// rows added in blocks of [`cpu::SUM_ROWS_BLOCK`] (in order within a block, then the block
    /// sums in order).
    fn sum_rows(
        &self,
        x: &Self::Buf,
        rows: usize,
        cols: usize,
        alpha: Self::F,
        beta: Self::F,
        out: &mut Self::Buf,
    ) -> Result<()>;

    // ----- conditional RBMs ---------------------------------------------------------------------

    /// `out[n, :] = sigma(v[n, :] W + bh_t[n, :])`, n < N: P(h = 1 | v) of each RBM.
    /// `w` is `[V, H]`, `v` is `[N, V]`, `bh_t` and `out` are `[N, H]`.
    #[allow(clippy::too_many_arguments)]
    fn hidden_probs(
        &self,
        w: &Self::Buf,
        v: &Self::Buf,
        bh_t: &Self::Buf,
        n: usize,
        nv: usize,
        nh: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// The per-frame statistics of the CD gradient (SPEC 3) in one pass over N rows, from the
    /// data `v` and the negatives `vneg` (`[N, V]`) under the dynamic biases `bh_t` `[N, H]`,
    /// each row weighted by the cost weight `wmask[n]` (mask / frames):
    /// `phneg = sigma(vneg W + bh_t)`, `dbh_t = wmask * (phneg - sigma(v W + bh_t))` `[N, H]` and
    /// `dbv_t = wmask * (vneg - v)` `[N, V]`. Every value is bit for bit what `hidden_probs`
    /// and `wmask * (a - b)` give; the update's `dW = dbv_t^T phneg + v^T G` needs nothing
    /// else of the CD part (see `Model::backward`).
    #[allow(clippy::too_many_arguments)]
    fn cd_stats(
        &self,
        w: &Self::Buf,
        v: &Self::Buf,
        vneg: &Self::Buf,
        bh_t: &Self::Buf,
        wmask: &Self::Buf,
        n: usize,
        nv: usize,
        nh: usize,
        phneg: &mut Self::Buf,
        dbh_t: &mut Self::Buf,
        dbv_t: &mut Self::Buf,
    ) -> Result<()>;

    /// K steps of block Gibbs sampling for N conditional RBMs sharing W (SPEC 1), in place:
    /// `v` `[N, V]` holds the start and receives the last visible sample. With `mask` `[N]`,
    /// chain n runs only where `mask[n] != 0`; the others (padded frames) keep their v and draw
    /// nothing, and since every draw is indexed by its chain, the chains that run draw exactly
    /// what they draw without a mask. `rng` holds one key per packed model. Step k draws
    /// h ~ Bernoulli(sigma(v W + bh_t)) with uniforms of counter `counter + 2k` at index `n*H + j`,
    /// then v ~ Bernoulli(sigma(W h + bv_t)) (or Normal(W h + bv_t, 1) when `gaussian`) with
    /// counter `counter + 2k + 1` at index `n*V + i` (normals at uniform indices 2(n*V+i), +1).
    #[allow(clippy::too_many_arguments)]
    fn gibbs(
        &self,
        w: &Self::Buf,
        bv_t: &Self::Buf,
        bh_t: &Self::Buf,
        v: &mut Self::Buf,
        mask: Option<&Self::Buf>,
        n: usize,
        nv: usize,
        nh: usize,
        k: usize,
        gaussian: bool,
        rng: &[RngKey],
        counter: u32,
    ) -> Result<()>;

    /// Free energies F_t(v) of SPEC 1 for N RBMs: `out[n] = F(v[n])`.
    #[allow(clippy::too_many_arguments)]
    fn free_energy(
        &self,
        w: &Self::Buf,
        bv_t: &Self::Buf,
        bh_t: &Self::Buf,
        v: &Self::Buf,
        n: usize,
        nv: usize,
        nh: usize,
        gaussian: bool,
        out: &mut Self::Buf,
    ) -> Result<()>;

    // ----- recurrences (sequential in T) ---------------------------------------------------------

    /// RTRBM mean-field recurrence (SPEC 2). For frames s = 0..T:
    /// `bh_t[s] = pre[s] + r[s] WR` and `r[s+1] = sigma(vw[s] + bh_t[s])`, where `pre` `[T,B,H]`
    /// holds bh (+ WL^T l_{t-1} for LSTM-RTRBM), `vw` `[T,B,H]` holds v_t W, `wr` is `[H,H]`,
    /// `r` is `[T+1,B,H]` with row 0 the initial state (read), `bh_t` is `[T,B,H]`.
    fn rtrbm_forward(
        &self,
        wr: &Self::Buf,
        pre: &Self::Buf,
        vw: &Self::Buf,
        r: &mut Self::Buf,
        bh_t: &mut Self::Buf,
        d: Dims,
    ) -> Result<()>;

    /// Backward pass of [`Backend::rtrbm_forward`]: given `dbh` `[T,B,H]`, the gradient of the
    /// cost w.r.t. bh_t through the free energies alone, writes `g` `[T,B,H]`, the total gradient
    /// w.r.t. bh_t: `g[T-1] = dbh[T-1]`, `g[s] = dbh[s] + (g[s+1] WR^T) * r[s+1] * (1 - r[s+1])`.
    fn rtrbm_backward(&self, wr: &Self::Buf, r: &Self::Buf, dbh: &Self::Buf, g: &mut Self::Buf, d: Dims) -> Result<()>;

    /// RNN-RBM state recurrence (SPEC 2): `u[s+1] = tanh(pre[s] + u[s] Wuu)` with `pre` `[T,B,U]`
    /// holding bu + v_t Wvu, `wuu` `[U,U]`, `u` `[T+1,B,U]` with row 0 the initial state.
    fn rnn_forward(&self, wuu: &Self::Buf, pre: &Self::Buf, u: &mut Self::Buf, d: Dims) -> Result<()>;

    /// Backward of [`Backend::rnn_forward`]: `e` `[T,B,U]` is the gradient arriving at u[s+1]
    /// from outside the recurrence; writes `dz` `[T,B,U]`, the gradient w.r.t. the pre-activation
    /// of u[s+1]: `dz[s] = (e[s] + dz[s+1] Wuu^T) * (1 - u[s+1]^2)`, `dz[T]` taken as 0.
    fn rnn_backward(&self, wuu: &Self::Buf, u: &Self::Buf, e: &Self::Buf, dz: &mut Self::Buf, d: Dims) -> Result<()>;

    /// LSTM over a chunk (SPEC 2). Gate pre-activations are `pre[s] + l[s] Wl` (+ peepholes),
    /// with `pre` `[T,B,4U]` holding b + v_t Wx, `wl` `[U,4U]`, gate order (i, f, o, g).
    /// `peep` `[3U]` (p_i, p_f, p_o: i and f see c_{t-1}, o sees c_t) or `None`.
    /// `l`, `c` `[T+1,B,U]` with row 0 the initial state; writes rows 1..=T and the
    /// post-activation `gates` `[T,B,4U]`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_forward(
        &self,
        wl: &Self::Buf,
        peep: Option<&Self::Buf>,
        pre: &Self::Buf,
        l: &mut Self::Buf,
        c: &mut Self::Buf,
        gates: &mut Self::Buf,
        d: Dims,
    ) -> Result<()>;

    /// LSTM-RTRBM's forward recurrences (SPEC 2): [`Backend::lstm_forward`] on `pre_g`, then
    /// `pre += l_{t-1} WL` over the chunk (rows 0..T of `l`; `pre` `[T,B,H]` holds bh broadcast
    /// on entry), then [`Backend::rtrbm_forward`] with `vw` = v W. The CPU composes the three
    /// operations (this default); CUDA may run them as one launch in which the RTRBM follows the
    /// LSTM frame by frame (`RTRBM_KERNELS=fused-fwd`, `kernels/lstm.cu`), and then leaves `pre`
    /// as it was (it reads bh from it) with the same `l`, `c`, `gates` and `r`, `bh_t` equal within
    /// rounding.
    #[allow(clippy::too_many_arguments)]
    fn lstm_rtrbm_forward(
        &self,
        lstm_wl: &Self::Buf,
        peep: Option<&Self::Buf>,
        pre_g: &Self::Buf,
        l: &mut Self::Buf,
        c: &mut Self::Buf,
        gates: &mut Self::Buf,
        wl: &Self::Buf,
        wr: &Self::Buf,
        pre: &mut Self::Buf,
        vw: &Self::Buf,
        r: &mut Self::Buf,
        bh_t: &mut Self::Buf,
        d: Dims,
    ) -> Result<()> {
        lstm_rtrbm_forward_separate(self, lstm_wl, peep, pre_g, l, c, gates, wl, wr, pre, vw, r, bh_t, d)
    }

    /// Backward of [`Backend::lstm_forward`]. `dl` `[T+1,B,U]` is the gradient arriving at each
    /// l[s] from outside the LSTM (row 0 included). Writes `dpre` `[T,B,4U]` (gradient w.r.t. the
    /// gate pre-activations), `dstate0` `[2,B,U]` (gradients w.r.t. l[0] and c[0]) and, with
    /// peepholes, adds to `dpeep` `[3U]`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_backward(
        &self,
        wl: &Self::Buf,
        peep: Option<&Self::Buf>,
        l: &Self::Buf,
        c: &Self::Buf,
        gates: &Self::Buf,
        dl: &Self::Buf,
        dpre: &mut Self::Buf,
        dstate0: &mut Self::Buf,
        dpeep: Option<&mut Self::Buf>,
        d: Dims,
    ) -> Result<()>;

    /// LSTM-RTRBM's backward recurrences (SPEC 3): [`Backend::rtrbm_backward`] into `g`, then
    /// `du[0..T) = g WL^T` (the gradient at l_{t-1} through the RTRBM's biases; row T of `du`
    /// `[T+1,B,U]` must hold 0), then [`Backend::lstm_backward`] from `du`. The CPU composes the
    /// three operations (this default); CUDA may run them as one launch in which the LSTM follows
    /// the RTRBM frame by frame (`RTRBM_KERNELS=fused-bwd`, `kernels/lstm.cu`), with `g`, `du`
    /// and the LSTM's gradients equal within rounding.
    #[allow(clippy::too_many_arguments)]
    fn lstm_rtrbm_backward(
        &self,
        wr: &Self::Buf,
        r: &Self::Buf,
        dbh: &Self::Buf,
        g: &mut Self::Buf,
        wl: &Self::Buf,
        du: &mut Self::Buf,
        lstm_wl: &Self::Buf,
        peep: Option<&Self::Buf>,
        l: &Self::Buf,
        c: &Self::Buf,
        gates: &Self::Buf,
        dpre: &mut Self::Buf,
        dstate0: &mut Self::Buf,
        dpeep: Option<&mut Self::Buf>,
        d: Dims,
    ) -> Result<()> {
        lstm_rtrbm_backward_separate(self, wr, r, dbh, g, wl, du, lstm_wl, peep, l, c, gates, dpre, dstate0, dpeep, d)
    }

    // ----- optimisation -----------------------------------------------------------------------

    /// Momentum SGD: `vel = momentum * vel - lr * (grad + weight_decay * param)`, `param += vel`,
    /// with one set of hyper-parameters per packed model.
    fn sgd_momentum(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        vel: &mut Self::Buf,
        hyper: &[SgdHyper<Self::F>],
    ) -> Result<()>;

    /// [`Backend::sgd_momentum`] of every parameter tensor (`params[i]` with `grads[i]` and
    /// `vels[i]`): the same arithmetic, element for element; CUDA does it in one launch.
    fn sgd_momentum_all(
        &self,
        params: &mut [Self::Buf],
        grads: &[Self::Buf],
        vels: &mut [Self::Buf],
        hyper: &[SgdHyper<Self::F>],
    ) -> Result<()> {
        check_tensor_lists(params.len(), grads.len(), vels.len())?;
        for ((p, g), v) in params.iter_mut().zip(grads).zip(vels.iter_mut()) {
            self.sgd_momentum(p, g, v, hyper)?;
        }
        Ok(())
    }

    /// `x *= alpha[p]` in the slab of model p.
    fn scale(&self, x: &mut Self::Buf, alpha: &[Self::F]) -> Result<()>;

    /// Sum of squares of the elements of each model's slab, in f64 (NaN if any element is NaN
    /// or infinite).
    fn sum_squares(&self, x: &Self::Buf) -> Result<Vec<f64>>;

    /// Clips each model's gradient by its global norm: with `norm_p` the square root of the sum
    /// of squares over all of `xs` (tensor by tensor, in f64), every tensor of model p is scaled
    /// by `f(clip[p] / norm_p)` (rounded from f64) when `clip[p] > 0` and `norm_p > clip[p]`, else
    /// left as it is. This default does it with [`Backend::sum_squares`] and
    /// [`Backend::scale`] through the host; a device may keep it on the device (no
    /// synchronisation), with the same result.
    fn clip_grad_norm(&self, xs: &mut [Self::Buf], clip: &[f64]) -> Result<()> {
        check_models("clipping norms", clip.len(), self.models())?;
        let mut sq = vec![0.0; clip.len()];
        for x in xs.iter() {
            sq.iter_mut().zip(self.sum_squares(x)?).for_each(|(a, b)| *a += b);
        }
        let factors: Vec<Self::F> = clip
            .iter()
            .zip(&sq)
            .map(|(&c, &sq)| {
                let norm = sq.sqrt();
                Self::F::from_f64(if c > 0.0 && norm > c { c / norm } else { 1.0 })
            })
            .collect();
        if factors.iter().any(|&f| f != Self::F::ONE) {
            for x in xs.iter_mut() {
                self.scale(x, &factors)?;
            }
        }
        Ok(())
    }

    // ----- evaluation ---------------------------------------------------------------------------

    /// Annealed importance sampling (SPEC 4.1) for N conditional RBMs, M runs each, through the
    /// inverse temperatures `betas` (ascending, betas[0] = 0, last = 1). Returns the log-weights
    /// `[N, M]` in f64 (log Z_t estimate = log Z_0 + logmeanexp over M). Chain (n, m) starts
    /// from the base distribution (W = 0), drawing v with counter `counter` at index
    /// `(n*M + m)*V + i`; transition k >= 1 uses counters `counter + 2k - 1` (hidden, index
    /// `(n*M+m)*H + j`) and `counter + 2k` (visible). `rng` holds one key per packed model,
    /// and a pack's result holds the models' log-weights one after another (`[P, N, M]`).
    #[allow(clippy::too_many_arguments)]
    fn ais(
        &self,
        w: &Self::Buf,
        bv_t: &Self::Buf,
        bh_t: &Self::Buf,
        n: usize,
        nv: usize,
        nh: usize,
        runs: usize,
        betas: &[f64],
        rng: &[RngKey],
        counter: u32,
    ) -> Result<Vec<f64>>;

    /// Marginals P(v_i = 1) of N conditional RBMs by Gibbs sampling (SPEC 4.2): `chains` chains
    /// per RBM start at v = 0, run `burn_in` steps, then average P(v = 1 | h) over `samples`
    /// further steps. Writes `out` `[N, V]`. Chain c of RBM n is chain `n*chains + c` of
    /// [`Backend::gibbs`]'s numbering, counters as there.
    #[allow(clippy::too_many_arguments)]
    fn gibbs_marginals(
        &self,
        w: &Self::Buf,
        bv_t: &Self::Buf,
        bh_t: &Self::Buf,
        n: usize,
        nv: usize,
        nh: usize,
        chains: usize,
        burn_in: usize,
        samples: usize,
        rng: RngKey,
        counter: u32,
        out: &mut Self::Buf,
    ) -> Result<()>;
}

/// [`Backend::lstm_rtrbm_forward`] as three operations one after another: `lstm_forward`, the
/// gemm `pre += l_{t-1} WL` (rows 0..T of `l`), `rtrbm_forward`. The trait's default, and the
/// CUDA backend's wherever its one-launch kernel does not apply.
#[allow(clippy::too_many_arguments)]
pub fn lstm_rtrbm_forward_separate<B: Backend + ?Sized>(
    be: &B,
    lstm_wl: &B::Buf,
    peep: Option<&B::Buf>,
    pre_g: &B::Buf,
    l: &mut B::Buf,
    c: &mut B::Buf,
    gates: &mut B::Buf,
    wl: &B::Buf,
    wr: &B::Buf,
    pre: &mut B::Buf,
    vw: &B::Buf,
    r: &mut B::Buf,
    bh_t: &mut B::Buf,
    d: Dims,
) -> Result<()> {
    be.lstm_forward(lstm_wl, peep, pre_g, l, c, gates, d)?;
    let one = B::F::ONE;
    let (lm, wm) = (Mat { buf: &*l, offset: 0, trans: false }, Mat { buf: wl, offset: 0, trans: false });
    be.gemm(d.n(), d.h, d.u, one, lm, wm, one, pre, 0)?;
    be.rtrbm_forward(wr, pre, vw, r, bh_t, d)
}

/// [`Backend::lstm_rtrbm_backward`] as three operations one after another: `rtrbm_backward`,
/// the gemm `du[0..T) = g WL^T`, `lstm_backward`. The trait's default, and the CUDA backend's
/// wherever its one-launch kernel does not apply.
#[allow(clippy::too_many_arguments)]
pub fn lstm_rtrbm_backward_separate<B: Backend + ?Sized>(
    be: &B,
    wr: &B::Buf,
    r: &B::Buf,
    dbh: &B::Buf,
    g: &mut B::Buf,
    wl: &B::Buf,
    du: &mut B::Buf,
    lstm_wl: &B::Buf,
    peep: Option<&B::Buf>,
    l: &B::Buf,
    c: &B::Buf,
    gates: &B::Buf,
    dpre: &mut B::Buf,
    dstate0: &mut B::Buf,
    dpeep: Option<&mut B::Buf>,
    d: Dims,
) -> Result<()> {
    be.rtrbm_backward(wr, r, dbh, g, d)?;
    let (gm, wm) = (Mat { buf: &*g, offset: 0, trans: false }, Mat { buf: wl, offset: 0, trans: true });
    be.gemm(d.n(), d.u, d.h, B::F::ONE, gm, wm, B::F::ZERO, du, 0)?;
    be.lstm_backward(lstm_wl, peep, l, c, gates, du, dpre, dstate0, dpeep, d)
}
