//! The CPU reference backend: SPEC.md made executable.
//!
//! Plain loops over row-major slices, one comment per step, generic over the float type so the
//! same code runs in f64 for gradient checks. Work that is independent across chains (Gibbs, AIS,
//! marginals) is split over `threads` OS threads; because every random number is a function of
//! (seed, stream, counter, index), the result does not depend on the thread count.
//!
//! Each method is the reference for a CUDA kernel in `kernels/` (named in the comment).

use super::{check_models, check_spans, Backend, Dims, Mat, SgdHyper};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::rng::RngKey;
use std::marker::PhantomData;

/// Rows per block of [`Backend::sum_rows`]' summation order: the rows of each block are added in
/// order and then the block sums in order, which the CUDA kernel can spread over many warps and
/// still add exactly as the CPU does.
pub const SUM_ROWS_BLOCK: usize = 64;

/// The CPU backend over float type `F` (f32 for speed, f64 for gradient checks).
#[derive(Clone, Debug)]
pub struct Cpu<F: Float = f32> {
    threads: usize,
    _f: PhantomData<F>,
}

/// Products of at least this many multiply-adds split their rows over the threads (batched
/// training; the paper protocol's products, ~2^21, stay on the calling thread, where a thread
/// spawn costs more than it saves).
const GEMM_PAR_MACS: usize = 1 << 22;

impl<F: Float> Default for Cpu<F> {
    fn default() -> Self {
        Self::new(1)
    }
}

impl<F: Float> Cpu<F> {
    /// A CPU backend using `threads` threads (at least 1) for chain-parallel work.
    pub fn new(threads: usize) -> Self {
        Self { threads: threads.max(1), _f: PhantomData }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(first_item, items)` over `out` split into contiguous blocks of whole items of
    /// `item_len` elements, one block per thread. Scoped threads per call, not a pool kept
    /// alive: only a few calls of an update are parallel and the calling thread works alone
    /// between them, where a pool's idle workers spinning on a 2-core machine took its time
    /// (tried: paper protocol 600 -> 500 updates/s).
    fn par_items<T: Send>(&self, out: &mut [T], item_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
        self.par_items_by_cost(out, item_len, |_| 1, f)
    }

    /// [`Cpu::par_items`] with blocks of about equal work instead of equal length: item i costs
    /// `cost(i)` (0: skipped), and the contiguous blocks are cut where the running cost passes
    /// each thread's share. The split changes no result (items are independent).
    fn par_items_by_cost<T: Send>(
        &self,
        out: &mut [T],
        item_len: usize,
        cost: impl Fn(usize) -> usize,
        f: impl Fn(usize, &mut [T]) + Sync,
    ) {
        let items = out.len().checked_div(item_len).unwrap_or(0);
        let threads = self.threads.min(items).max(1);
        let total: usize = (0..items).map(&cost).sum();
        if threads == 1 || total == 0 {
            f(0, out);
            return;
        }
        let mut cuts = vec![];
        let mut run = 0;
        for i in 0..items {
            run += cost(i);
            if cuts.len() + 1 < threads && run * threads >= total * (cuts.len() + 1) {
                cuts.push(i + 1);
            }
        }
        std::thread::scope(|scope| {
            let (mut rest, mut first) = (out, 0);
            for cut in cuts.into_iter().chain([items]) {
                let (block, tail) = rest.split_at_mut((cut - first) * item_len);
                let f = &f;
                scope.spawn(move || f(first, block));
                (rest, first) = (tail, cut);
            }
        });
    }
}

fn check_len<F>(name: &str, buf: &[F], need: usize) -> Result<()> {
    if buf.len() < need {
        return Err(Error::Shape(format!("{name}: buffer has {} elements, operation needs {need}", buf.len())));
    }
    Ok(())
}

/// Bernoulli draw: 1 when the uniform `u` is below the probability `p`.
#[inline(always)]
fn bernoulli<F: Float>(u: f32, p: F) -> F {
    if F::from_f64(u as f64) < p {
        F::ONE
    } else {
        F::ZERO
    }
}

/// `acc[j] = bias[j] + sum_i x[i] * m[i, j]` for a row-major `[len(x), len(acc)]` matrix `m`,
/// skipping zero entries of `x` (visible and hidden samples are exactly 0/1, mostly 0).
/// Runs an AVX2-compiled copy when the CPU has AVX2 (same additions in the same order).
#[inline]
fn affine_rows<F: Float>(x: &[F], m: &[F], bias: &[F], acc: &mut [F]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::float::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            unsafe { affine_rows_avx2(x, m, bias, acc) };
            return;
        }
    }
    affine_rows_kernel(x, m, bias, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn affine_rows_avx2<F: Float>(x: &[F], m: &[F], bias: &[F], acc: &mut [F]) {
    affine_rows_kernel(x, m, bias, acc)
}

#[inline(always)]
fn affine_rows_kernel<F: Float>(x: &[F], m: &[F], bias: &[F], acc: &mut [F]) {
    let width = acc.len();
    acc.copy_from_slice(bias);
    // The non-zero entries of x, a block of rows at a time; then each tile of columns is
    // accumulated in registers over those rows (the same additions, in the same order, as
    // acc[j] += x[i] m[i, j] for i ascending; x[i] = 1 multiplies exactly).
    const ROWS: usize = 128;
    let mut idx = [0u32; ROWS];
    let mut val = [F::ZERO; ROWS];
    for (block, xs) in x.chunks(ROWS).enumerate() {
        let mut n = 0;
        for (i, &xi) in xs.iter().enumerate() {
            // branch-free compaction: always write, advance only past non-zeros
            idx[n] = (block * ROWS + i) as u32;
            val[n] = xi;
            n += (xi != F::ZERO) as usize;
        }
        let (idx, val) = (&idx[..n], &val[..n]);
        let mut col = 0;
        while col + 32 <= width {
            tile::<F, 32>(idx, val, m, width, col, acc);
            col += 32;
        }
        while col + 8 <= width {
            tile::<F, 8>(idx, val, m, width, col, acc);
            col += 8;
        }
        while col < width {
            tile::<F, 1>(idx, val, m, width, col, acc);
            col += 1;
        }
    }
}

#[inline(always)]
fn tile<F: Float, const C: usize>(idx: &[u32], val: &[F], m: &[F], width: usize, col: usize, acc: &mut [F]) {
    let mut r = [F::ZERO; C];
    r.copy_from_slice(&acc[col..col + C]);
    for (&i, &xi) in idx.iter().zip(val) {
        let row = &m[i as usize * width + col..i as usize * width + col + C];
        for c in 0..C {
            r[c] += xi * row[c];
        }
    }
    acc[col..col + C].copy_from_slice(&r);
}

/// `sum_i a[i] b[i]` with 8 interleaved partial sums (vectorisable; rounding differs from a
/// sequential sum). AVX2 copy when the CPU has it.
#[inline]
fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::float::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_kernel(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2<F: Float>(a: &[F], b: &[F]) -> F {
    dot_kernel(a, b)
}

#[inline(always)]
fn dot_kernel<F: Float>(a: &[F], b: &[F]) -> F {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [F::ZERO; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            s[l] += x[l] * y[l];
        }
    }
    for (l, (&x, &y)) in ar.iter().zip(br).enumerate() {
        s[l] += x * y;
    }
    ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

/// The hidden half of an AIS step (SPEC 4.1): with b_j = b_prev x_j + bh_j, z_j = (b_k - b_prev) x_j
/// and a_j = b_j + z_j = b_k x_j + bh_j, writes `h[j] = sigma(a_j)` and returns the log-weight
/// increment `sum_j softplus(a_j) - softplus(b_j)`.
///
/// The increments are tiny (|z| goes down to 1e-6 at 14,500 betas) and thousands of them add up,
/// so none may be rounded in a biased way. The ratio (1 + e^a) / (1 + e^b) rounded to a float
/// near 1 is (a chain that keeps its v repeats the same rounding of 1 + e^b step after step:
/// -6e-7 nats per step on the JSB model, docs/EVALUATION.md). Instead each unit's factor is
///   (1 + e^a) / (1 + e^b) = 1 + y,   y = sigma(b) expm1(z)   (|z| < 1/8: every unit but a few
///                                                             in the first steps),
/// the factors of a lane multiply as 1 + Y, kept as Y (Y <- Y + y + Y y, never rounding a 1 + y),
/// and the increment is ln(1 + Y), with the relative accuracy of the small y. The other units
/// take the exact difference ([`ais_rare_increment`]). The CUDA kernels compute the same
/// (`ais_unit` in kernels/common.cuh).
#[inline]
fn ais_hidden<F: Float>(x: &[F], bh: &[F], b_prev: F, b_k: F, h: &mut [F]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::float::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { ais_hidden_avx2(x, bh, b_prev, b_k, h) };
        }
    }
    ais_hidden_kernel(x, bh, b_prev, b_k, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn ais_hidden_avx2<F: Float>(x: &[F], bh: &[F], b_prev: F, b_k: F, h: &mut [F]) -> f64 {
    ais_hidden_kernel(x, bh, b_prev, b_k, h)
}

#[inline(always)]
fn ais_hidden_kernel<F: Float>(x: &[F], bh: &[F], b_prev: F, b_k: F, h: &mut [F]) -> f64 {
    const L: usize = 8;
    // a lane's factors each lie in (e^-1/8, e^1/8): 256 of them keep 1 + Y far inside the range
    const FLUSH: usize = 256;
    let n = h.len();
    let (x, bh) = (&x[..n], &bh[..n]);
    let dl = b_k - b_prev;
    let mut ys = [F::ZERO; L];
    let mut rare = [false; L];
    let mut d = 0f64;
    let full = n / L * L;
    for (c, j0) in (0..full).step_by(L).enumerate() {
        ais_lanes::<F, L>(&x[j0..j0 + L], &bh[j0..j0 + L], b_prev, dl, &mut h[j0..j0 + L], &mut ys, &mut rare);
        if c % FLUSH == FLUSH - 1 {
            d += ys.iter().map(|y| y.to_f64().ln_1p()).sum::<f64>();
            ys = [F::ZERO; L];
        }
    }
    for j in full..n {
        let l = j - full;
        let (y1, r1) = (&mut ys[l..l + 1], &mut rare[l..l + 1]);
        ais_lanes::<F, 1>(
            &x[j..j + 1],
            &bh[j..j + 1],
            b_prev,
            dl,
            &mut h[j..j + 1],
            y1.try_into().unwrap(),
            r1.try_into().unwrap(),
        );
    }
    d += ys.iter().map(|y| y.to_f64().ln_1p()).sum::<f64>();
    if rare.iter().any(|&r| r) {
        for j in 0..n {
            let z = dl * x[j];
            if !ais_common(z) {
                let (a, b) = (b_k * x[j] + bh[j], b_prev * x[j] + bh[j]);
                d += ais_rare_increment(a, b, z).to_f64();
                h[j] = a.sigmoid();
            }
        }
    }
    d
}

/// Whether a unit takes the product form of [`ais_hidden`]: |z| < 1/8 (false for NaN).
#[inline(always)]
fn ais_common<F: Float>(z: F) -> bool {
    let e = F::from_f64(0.125);
    z < e && z > -e
}

/// e^z - 1 for |z| < 1/8: the degree-6 Taylor polynomial (relative error below 1e-9).
#[inline(always)]
fn expm1_small<F: Float>(z: F) -> F {
    let c = |x: f64| F::from_f64(x);
    let p = c(1.0 / 120.0) + z * c(1.0 / 720.0);
    let p = c(1.0 / 24.0) + z * p;
    let p = c(1.0 / 6.0) + z * p;
    let p = c(0.5) + z * p;
    z + z * z * p
}

/// softplus(a) - softplus(b) for a unit outside the product form's range, z = a - b: for a, b > 0
/// as z + ln(1 + e^-a) - ln(1 + e^-b), which keeps the relative accuracy of a small z (the plain
/// difference of two values near 10..80 would not).
fn ais_rare_increment<F: Float>(a: F, b: F, z: F) -> F {
    if a > F::ZERO && b > F::ZERO {
        z + ((-a).exp().ln_1p() - (-b).exp().ln_1p())
    } else {
        a.softplus() - b.softplus()
    }
}

/// `N` units of [`ais_hidden_kernel`], one per lane: h = sigma(a) = e^z / (e^z + e^-b) (a = b + z),
/// and the unit's factor 1 + y, y = sigma(b) expm1(z), multiplied into the lane's 1 + Y; a unit
/// outside the range (|z| >= 1/8) leaves Y as it is and marks its lane `rare`. e^-b is clamped by
/// `exp_fast` (sigma(b) then rounds to 0 or 1 as it should).
#[inline(always)]
fn ais_lanes<F: Float, const N: usize>(
    x: &[F],
    bh: &[F],
    b_prev: F,
    dl: F,
    h: &mut [F],
    ys: &mut [F; N],
    rare: &mut [bool; N],
) {
    let (x, bh, h) = (&x[..N], &bh[..N], &mut h[..N]);
    for l in 0..N {
        let b = b_prev * x[l] + bh[l];
        let z = dl * x[l];
        let enb = (-b).exp_fast();
        let em = expm1_small(z);
        let y = em / (F::ONE + enb);
        let ez = F::ONE + em;
        h[l] = ez / (ez + enb);
        let common = ais_common(z);
        let yl = ys[l];
        ys[l] = if common { yl + y + yl * y } else { yl };
        rare[l] |= !common;
    }
}

/// `x[i] = [u[i] < x[i]]`: Bernoulli draws from the probabilities in `x`, in place.
#[inline(always)]
fn bernoulli_slice<F: Float>(u: &[f32], x: &mut [F]) {
    for (xi, &ui) in x.iter_mut().zip(u) {
        *xi = bernoulli(ui, *xi);
    }
}

/// `W^T` of a row-major `[rows, cols]` matrix, as a row-major `[cols, rows]` matrix.
fn transpose<F: Float>(m: &[F], rows: usize, cols: usize) -> Vec<F> {
    let mut t = vec![F::ZERO; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

impl<F: Float> Cpu<F> {
    /// One block-Gibbs step of one chain: h ~ P(h | v), then v ~ P(v | h) (SPEC 1), returning
    /// P(v = 1 | h) in `pv` (the visible means before sampling).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn gibbs_step(
        w: &[F],
        wt: &[F],
        bv: &[F],
        bh: &[F],
        v: &mut [F],
        h: &mut [F],
        pv: &mut [F],
        u: &mut [f32],
        gaussian: bool,
        rng: RngKey,
        counter: u32,
        chain: usize,
    ) {
        let (nv, nh) = (v.len(), h.len());
        // Hidden: a = v W + bh, h_j = [u_j < sigma(a_j)] with uniforms (counter, chain*H + j).
        affine_rows(v, w, bh, h);
        F::sigmoid_slice(h);
        rng.fill_uniform(counter, (chain * nh) as u32, &mut u[..nh]);
        bernoulli_slice(&u[..nh], h);
        // Visible: b = W h + bv; binary: v_i = [u_i < sigma(b_i)], Gaussian: v_i = b_i + N(0,1).
        affine_rows(h, wt, bv, pv);
        if gaussian {
            for (i, (vi, &mean)) in v.iter_mut().zip(pv.iter()).enumerate() {
                *vi = mean + F::from_f64(rng.normal(counter + 1, (chain * nv + i) as u32));
            }
        } else {
            rng.fill_uniform(counter + 1, (chain * nv) as u32, &mut u[..nv]);
            F::sigmoid_slice(pv);
            v.copy_from_slice(pv);
            bernoulli_slice(&u[..nv], v);
        }
    }
}

impl<F: Float> Backend for Cpu<F> {
    type F = F;
    type Buf = Vec<F>;
    type Store = Vec<F>;
    type Recording = ();

    fn name(&self) -> String {
        format!("cpu ({} thread{}, {})", self.threads, if self.threads == 1 { "" } else { "s" }, F::NAME)
    }

    fn zeros(&self, n: usize) -> Result<Vec<F>> {
        Ok(vec![F::ZERO; n])
    }

    fn upload(&self, host: &[F]) -> Result<Vec<F>> {
        Ok(host.to_vec())
    }

    fn write(&self, dst: &mut Vec<F>, host: &[F]) -> Result<()> {
        if dst.len() != host.len() {
            return Err(Error::Shape(format!("write: buffer {} vs host {}", dst.len(), host.len())));
        }
        dst.copy_from_slice(host);
        Ok(())
    }

    fn download(&self, buf: &Vec<F>) -> Result<Vec<F>> {
        Ok(buf.clone())
    }

    fn len(&self, buf: &Vec<F>) -> usize {
        buf.len()
    }

    fn copy(&self, src: &Vec<F>, src_off: usize, dst: &mut Vec<F>, dst_off: usize, n: usize) -> Result<()> {
        check_len("copy src", src, src_off + n)?;
        check_len("copy dst", dst, dst_off + n)?;
        dst[dst_off..dst_off + n].copy_from_slice(&src[src_off..src_off + n]);
        Ok(())
    }

    fn fill(&self, x: &mut Vec<F>, value: F) -> Result<()> {
        x.iter_mut().for_each(|e| *e = value);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn upload_store(&self, frames: &[F]) -> Result<Vec<F>> {
        Ok(frames.to_vec())
    }

    /// Reference of `gather_frames` in `kernels/linalg.cu`.
    fn gather_frames(
        &self,
        store: &Vec<F>,
        spans: &[[u32; 2]],
        t_max: usize,
        b: usize,
        nv: usize,
        v: &mut Vec<F>,
        mask: &mut Vec<F>,
        wmask: &mut Vec<F>,
    ) -> Result<()> {
        check_spans(spans, 1, b, t_max, store.len() / nv.max(1))?;
        check_len("gather_frames v", v, t_max * b * nv)?;
        check_len("gather_frames mask", mask, t_max * b)?;
        check_len("gather_frames wmask", wmask, t_max * b)?;
        let frames: usize = spans.iter().map(|s| s[1] as usize).sum();
        let w = F::from_f64(1.0 / frames.max(1) as f64);
        for s in 0..t_max {
            for (bi, &[start, len]) in spans.iter().enumerate() {
                let row = s * b + bi;
                let dst = &mut v[row * nv..(row + 1) * nv];
                let m = if s < len as usize {
                    let src = (start as usize + s) * nv;
                    dst.copy_from_slice(&store[src..src + nv]);
                    F::ONE
                } else {
                    dst.fill(F::ZERO);
                    F::ZERO
                };
                mask[row] = m;
                wmask[row] = w * m;
            }
        }
        Ok(())
    }

    /// Reference of `gemm_f32` in `kernels/linalg.cu`.
    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: F,
        a: Mat<'_, Vec<F>>,
        b: Mat<'_, Vec<F>>,
        beta: F,
        c: &mut Vec<F>,
        c_off: usize,
    ) -> Result<()> {
        check_len("gemm A", a.buf, a.offset + m * k)?;
        check_len("gemm B", b.buf, b.offset + k * n)?;
        check_len("gemm C", c, c_off + m * n)?;
        let av = &a.buf[a.offset..a.offset + m * k];
        let bv = &b.buf[b.offset..b.offset + k * n];
        let cv = &mut c[c_off..c_off + m * n];
        // C = beta C
        if beta == F::ZERO {
            cv.iter_mut().for_each(|x| *x = F::ZERO);
        } else if beta != F::ONE {
            cv.iter_mut().for_each(|x| *x *= beta);
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        // A(i, p) and B(p, j) in the four storage orders.
        let a_at = |i: usize, p: usize| if a.trans { av[p * m + i] } else { av[i * k + p] };
        // rows i0.. of C (each row's arithmetic is the same whichever thread computes it)
        let rows = |i0: usize, cv: &mut [F]| match b.trans {
            false => {
                // C[i, :] += alpha A(i, p) B[p, :] (rows of B are contiguous)
                for (r, crow) in cv.chunks_mut(n).enumerate() {
                    let i = i0 + r;
                    for p in 0..k {
                        let s = a_at(i, p);
                        if s == F::ZERO {
                            continue;
                        }
                        let s = alpha * s;
                        for (cij, &bpj) in crow.iter_mut().zip(&bv[p * n..(p + 1) * n]) {
                            *cij += s * bpj;
                        }
                    }
                }
            }
            true => {
                // C[i, j] += alpha sum_p A(i, p) B^T[j, p]
                for (r, crow) in cv.chunks_mut(n).enumerate() {
                    let i = i0 + r;
                    for (j, cij) in crow.iter_mut().enumerate() {
                        let brow = &bv[j * k..(j + 1) * k];
                        let s = if a.trans {
                            let mut s = F::ZERO;
                            for (p, &bjp) in brow.iter().enumerate() {
                                s += a_at(i, p) * bjp;
                            }
                            s
                        } else {
                            dot(&av[i * k..(i + 1) * k], brow)
                        };
                        *cij += alpha * s;
                    }
                }
            }
        };
        if m * n * k >= GEMM_PAR_MACS {
            self.par_items(cv, n, rows);
        } else {
            rows(0, cv);
        }
        Ok(())
    }

    fn broadcast_rows(&self, x: &mut Vec<F>, bias: &Vec<F>, rows: usize, cols: usize) -> Result<()> {
        check_len("broadcast_rows x", x, rows * cols)?;
        check_len("broadcast_rows bias", bias, cols)?;
        for row in x[..rows * cols].chunks_mut(cols) {
            row.copy_from_slice(&bias[..cols]);
        }
        Ok(())
    }

    fn sum_rows(&self, x: &Vec<F>, rows: usize, cols: usize, alpha: F, beta: F, out: &mut Vec<F>) -> Result<()> {
        check_len("sum_rows x", x, rows * cols)?;
        check_len("sum_rows out", out, cols)?;
        if cols == 0 {
            return Ok(());
        }
        // blocks of SUM_ROWS_BLOCK rows added in order, then the block sums in order (the CUDA
        // kernel adds the same numbers in the same order)
        let mut acc = vec![F::ZERO; cols];
        let mut part = vec![F::ZERO; cols];
        for block in x[..rows * cols].chunks(SUM_ROWS_BLOCK * cols) {
            part.fill(F::ZERO);
            for row in block.chunks(cols) {
                for (p, &e) in part.iter_mut().zip(row) {
                    *p += e;
                }
            }
            for (a, &p) in acc.iter_mut().zip(&part) {
                *a += p;
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = beta * *o + alpha * a;
        }
        Ok(())
    }

    /// Reference of `hidden_probs` in `kernels/rbm.cu`.
    fn hidden_probs(
        &self,
        w: &Vec<F>,
        v: &Vec<F>,
        bh_t: &Vec<F>,
        n: usize,
        nv: usize,
        nh: usize,
        out: &mut Vec<F>,
    ) -> Result<()> {
        check_len("hidden_probs W", w, nv * nh)?;
        check_len("hidden_probs v", v, n * nv)?;
        check_len("hidden_probs bh_t", bh_t, n * nh)?;
        check_len("hidden_probs out", out, n * nh)?;
        for r in 0..n {
            let o = &mut out[r * nh..(r + 1) * nh];
            // a = v W + bh_t, out = sigma(a)
            affine_rows(&v[r * nv..(r + 1) * nv], w, &bh_t[r * nh..(r + 1) * nh], o);
            F::sigmoid_slice(o);
        }
        Ok(())
    }

    /// Reference of `cd_stats` and `cd_stats_v2_r{R}` in `kernels/rbm.cu`: per row, the
    /// expressions of `hidden_probs` (twice) and the weighted differences `w (a - b)` (twice).
    fn cd_stats(
        &self,
        w: &Vec<F>,
        v: &Vec<F>,
        vneg: &Vec<F>,
        bh_t: &Vec<F>,
        wmask: &Vec<F>,
        n: usize,
        nv: usize,
        nh: usize,
        phneg: &mut Vec<F>,
        dbh_t: &mut Vec<F>,
        dbv_t: &mut Vec<F>,
    ) -> Result<()> {
        check_len("cd_stats W", w, nv * nh)?;
        check_len("cd_stats v", v, n * nv)?;
        check_len("cd_stats vneg", vneg, n * nv)?;
        check_len("cd_stats bh_t", bh_t, n * nh)?;
        check_len("cd_stats wmask", wmask, n)?;
        check_len("cd_stats phneg", phneg, n * nh)?;
        check_len("cd_stats dbh_t", dbh_t, n * nh)?;
        check_len("cd_stats dbv_t", dbv_t, n * nv)?;
        let mut ph = vec![F::ZERO; nh];
        for (r, &m) in wmask.iter().enumerate().take(n) {
            let (vr, nr) = (&v[r * nv..(r + 1) * nv], &vneg[r * nv..(r + 1) * nv]);
            let bh = &bh_t[r * nh..(r + 1) * nh];
            let pn = &mut phneg[r * nh..(r + 1) * nh];
            // ph* = sigma(v* W + bh_t), ph = sigma(v W + bh_t)
            affine_rows(nr, w, bh, pn);
            F::sigmoid_slice(pn);
            affine_rows(vr, w, bh, &mut ph);
            F::sigmoid_slice(&mut ph);
            // d cost / d bh_t (direct) = m (ph* - ph), d cost / d bv_t = m (v* - v)
            for ((d, &a), &b) in dbh_t[r * nh..(r + 1) * nh].iter_mut().zip(pn.iter()).zip(&ph) {
                *d = m * (a - b);
            }
            for ((d, &a), &b) in dbv_t[r * nv..(r + 1) * nv].iter_mut().zip(nr).zip(vr) {
                *d = m * (a - b);
            }
        }
        Ok(())
    }

    /// Reference of `gibbs_chain` in `kernels/rbm.cu`.
    fn gibbs(
        &self,
        w: &Vec<F>,
        bv_t: &Vec<F>,
        bh_t: &Vec<F>,
        v: &mut Vec<F>,
        mask: Option<&Vec<F>>,
        n: usize,
        nv: usize,
        nh: usize,
        k: usize,
        gaussian: bool,
        rng: &[RngKey],
        counter: u32,
    ) -> Result<()> {
        check_models("gibbs keys", rng.len(), 1)?;
        let rng = rng[0];
        check_len("gibbs W", w, nv * nh)?;
        check_len("gibbs bv_t", bv_t, n * nv)?;
        check_len("gibbs bh_t", bh_t, n * nh)?;
        check_len("gibbs v", v, n * nv)?;
        if let Some(m) = mask {
            check_len("gibbs mask", m, n)?;
        }
        let wt = transpose(w, nv, nh);
        // padded frames cost nothing, so the threads split the chains that run evenly
        let runs = |chain: usize| mask.is_none_or(|m| m[chain] != F::ZERO) as usize;
        self.par_items_by_cost(&mut v[..n * nv], nv, runs, |first, block| {
            let (mut h, mut pv, mut u) = (vec![F::ZERO; nh], vec![F::ZERO; nv], vec![0f32; nv.max(nh)]);
            for (c, vc) in block.chunks_mut(nv).enumerate() {
                let chain = first + c;
                if mask.is_some_and(|m| m[chain] == F::ZERO) {
                    continue; // a padded frame: left as it is
                }
                let (bv, bh) = (&bv_t[chain * nv..(chain + 1) * nv], &bh_t[chain * nh..(chain + 1) * nh]);
                for step in 0..k as u32 {
                    Self::gibbs_step(
                        w,
                        &wt,
                        bv,
                        bh,
                        vc,
                        &mut h,
                        &mut pv,
                        &mut u,
                        gaussian,
                        rng,
                        counter + 2 * step,
                        chain,
                    );
                }
            }
        });
        Ok(())
    }

    /// Reference of `free_energy` in `kernels/rbm.cu`.
    fn free_energy(
        &self,
        w: &Vec<F>,
        bv_t: &Vec<F>,
        bh_t: &Vec<F>,
        v: &Vec<F>,
        n: usize,
        nv: usize,
        nh: usize,
        gaussian: bool,
        out: &mut Vec<F>,
    ) -> Result<()> {
        check_len("free_energy out", out, n)?;
        let mut a = vec![F::ZERO; nh];
        for r in 0..n {
            let (vr, bv) = (&v[r * nv..(r + 1) * nv], &bv_t[r * nv..(r + 1) * nv]);
            affine_rows(vr, w, &bh_t[r * nh..(r + 1) * nh], &mut a);
            // binary: F = -v.bv - sum_j softplus(a_j); Gaussian: |v - bv|^2 / 2 - sum_j softplus(a_j)
            let mut f = F::ZERO;
            for (&x, &b) in vr.iter().zip(bv) {
                f += if gaussian { (x - b) * (x - b) * F::from_f64(0.5) } else { -x * b };
            }
            for &aj in &a {
                f -= aj.softplus();
            }
            out[r] = f;
        }
        Ok(())
    }

    /// Reference of `rtrbm_forward` in `kernels/recurrent.cu`.
    fn rtrbm_forward(
        &self,
        wr: &Vec<F>,
        pre: &Vec<F>,
        vw: &Vec<F>,
        r: &mut Vec<F>,
        bh_t: &mut Vec<F>,
        d: Dims,
    ) -> Result<()> {
        let (b, h) = (d.b, d.h);
        check_len("rtrbm_forward r", r, (d.t + 1) * b * h)?;
        check_len("rtrbm_forward bh_t", bh_t, d.n() * h)?;
        for s in 0..d.t {
            for bi in 0..b {
                let row = (s * b + bi) * h;
                let (prev, next) = r.split_at_mut((s + 1) * b * h);
                let r_prev = &prev[(s * b + bi) * h..(s * b + bi + 1) * h];
                let bh = &mut bh_t[row..row + h];
                // bh_t = pre + r_{t-1} WR
                affine_rows(r_prev, wr, &pre[row..row + h], bh);
                // r_t = sigma(v_t W + bh_t)
                for (j, rj) in next[bi * h..(bi + 1) * h].iter_mut().enumerate() {
                    *rj = (vw[row + j] + bh[j]).sigmoid();
                }
            }
        }
        Ok(())
    }

    /// Reference of `rtrbm_backward` in `kernels/recurrent.cu`.
    fn rtrbm_backward(&self, wr: &Vec<F>, r: &Vec<F>, dbh: &Vec<F>, g: &mut Vec<F>, d: Dims) -> Result<()> {
        let (t, b, h) = (d.t, d.b, d.h);
        check_len("rtrbm_backward g", g, t * b * h)?;
        for s in (0..t).rev() {
            for bi in 0..b {
                let row = (s * b + bi) * h;
                for j in 0..h {
                    let mut gj = dbh[row + j];
                    if s + 1 < t {
                        // d cost / d r_t = WR g_{t+1}, through r_t = sigma(.): times r (1 - r)
                        let next = ((s + 1) * b + bi) * h;
                        let dr = dot(&wr[j * h..(j + 1) * h], &g[next..next + h]);
                        let rj = r[((s + 1) * b + bi) * h + j];
                        gj += dr * rj * (F::ONE - rj);
                    }
                    g[row + j] = gj;
                }
            }
        }
        Ok(())
    }

    /// Reference of `rnn_forward` in `kernels/recurrent.cu`.
    fn rnn_forward(&self, wuu: &Vec<F>, pre: &Vec<F>, u: &mut Vec<F>, d: Dims) -> Result<()> {
        let (b, nu) = (d.b, d.u);
        check_len("rnn_forward u", u, (d.t + 1) * b * nu)?;
        let mut z = vec![F::ZERO; nu];
        for s in 0..d.t {
            for bi in 0..b {
                let row = (s * b + bi) * nu;
                // u_t = tanh(pre_t + u_{t-1} Wuu)
                affine_rows(&u[row..row + nu], wuu, &pre[row..row + nu], &mut z);
                let out = ((s + 1) * b + bi) * nu;
                for (j, &zj) in z.iter().enumerate() {
                    u[out + j] = zj.tanh();
                }
            }
        }
        Ok(())
    }

    /// Reference of `rnn_backward` in `kernels/recurrent.cu`.
    fn rnn_backward(&self, wuu: &Vec<F>, u: &Vec<F>, e: &Vec<F>, dz: &mut Vec<F>, d: Dims) -> Result<()> {
        let (t, b, nu) = (d.t, d.b, d.u);
        check_len("rnn_backward dz", dz, t * b * nu)?;
        for s in (0..t).rev() {
            for bi in 0..b {
                let row = (s * b + bi) * nu;
                for j in 0..nu {
                    // du_t = e_t + Wuu dz_{t+1}; dz_t = du_t (1 - u_t^2)
                    let mut du = e[row + j];
                    if s + 1 < t {
                        let next = ((s + 1) * b + bi) * nu;
                        du += dot(&wuu[j * nu..(j + 1) * nu], &dz[next..next + nu]);
                    }
                    let uj = u[((s + 1) * b + bi) * nu + j];
                    dz[row + j] = du * (F::ONE - uj * uj);
                }
            }
        }
        Ok(())
    }

    /// Reference of `lstm_forward` in `kernels/lstm.cu`.
    fn lstm_forward(
        &self,
        wl: &Vec<F>,
        peep: Option<&Vec<F>>,
        pre: &Vec<F>,
        l: &mut Vec<F>,
        c: &mut Vec<F>,
        gates: &mut Vec<F>,
        d: Dims,
    ) -> Result<()> {
        let (b, nu) = (d.b, d.u);
        let g4 = 4 * nu;
        check_len("lstm_forward Wl", wl, nu * g4)?;
        check_len("lstm_forward pre", pre, d.n() * g4)?;
        check_len("lstm_forward l", l, (d.t + 1) * b * nu)?;
        check_len("lstm_forward c", c, (d.t + 1) * b * nu)?;
        check_len("lstm_forward gates", gates, d.n() * g4)?;
        let mut z = vec![F::ZERO; g4];
        for s in 0..d.t {
            for bi in 0..b {
                let prev = (s * b + bi) * nu;
                let next = ((s + 1) * b + bi) * nu;
                let grow = (s * b + bi) * g4;
                // z = pre_t + l_{t-1} Wl, gates in the order (i, f, o, g)
                affine_rows(&l[prev..prev + nu], wl, &pre[grow..grow + g4], &mut z);
                for j in 0..nu {
                    let c_prev = c[prev + j];
                    let (mut zi, mut zf, mut zo) = (z[j], z[nu + j], z[2 * nu + j]);
                    if let Some(p) = peep {
                        zi += p[j] * c_prev;
                        zf += p[nu + j] * c_prev;
                    }
                    let (i, f, g) = (zi.sigmoid(), zf.sigmoid(), z[3 * nu + j].tanh());
                    // c_t = f c_{t-1} + i g
                    let ct = f * c_prev + i * g;
                    if let Some(p) = peep {
                        zo += p[2 * nu + j] * ct;
                    }
                    let o = zo.sigmoid();
                    // l_t = o tanh(c_t)
                    c[next + j] = ct;
                    l[next + j] = o * ct.tanh();
                    gates[grow + j] = i;
                    gates[grow + nu + j] = f;
                    gates[grow + 2 * nu + j] = o;
                    gates[grow + 3 * nu + j] = g;
                }
            }
        }
        Ok(())
    }

    /// Reference of `lstm_backward` in `kernels/lstm.cu`.
    fn lstm_backward(
        &self,
        wl: &Vec<F>,
        peep: Option<&Vec<F>>,
        _l: &Vec<F>,
        c: &Vec<F>,
        gates: &Vec<F>,
        dl: &Vec<F>,
        dpre: &mut Vec<F>,
        dstate0: &mut Vec<F>,
        mut dpeep: Option<&mut Vec<F>>,
        d: Dims,
    ) -> Result<()> {
        let (t, b, nu) = (d.t, d.b, d.u);
        let g4 = 4 * nu;
        check_len("lstm_backward dpre", dpre, t * b * g4)?;
        check_len("lstm_backward dstate0", dstate0, 2 * b * nu)?;
        // Recurrent gradients flowing into l_{t-1} and c_{t-1}, per sequence.
        let mut dl_rec = vec![F::ZERO; b * nu];
        let mut dc_next = vec![F::ZERO; b * nu];
        for s in (0..t).rev() {
            for bi in 0..b {
                let prev = (s * b + bi) * nu;
                let next = ((s + 1) * b + bi) * nu;
                let grow = (s * b + bi) * g4;
                for j in 0..nu {
                    let (i, f, o, g) =
                        (gates[grow + j], gates[grow + nu + j], gates[grow + 2 * nu + j], gates[grow + 3 * nu + j]);
                    let (c_prev, ct) = (c[prev + j], c[next + j]);
                    let tc = ct.tanh();
                    // l_t = o tanh(c_t)
                    let dlt = dl[next + j] + dl_rec[bi * nu + j];
                    let dzo = dlt * tc * o * (F::ONE - o);
                    // c_t feeds l_t, c_{t+1} and (peephole) o_t
                    let mut dc = dc_next[bi * nu + j] + dlt * o * (F::ONE - tc * tc);
                    if let Some(p) = peep {
                        dc += dzo * p[2 * nu + j];
                    }
                    // c_t = f c_{t-1} + i g
                    let dzi = dc * g * i * (F::ONE - i);
                    let dzf = dc * c_prev * f * (F::ONE - f);
                    let dzg = dc * i * (F::ONE - g * g);
                    let mut dc_prev = dc * f;
                    if let Some(p) = peep {
                        dc_prev += dzi * p[j] + dzf * p[nu + j];
                    }
                    if let Some(dp) = dpeep.as_deref_mut() {
                        dp[j] += dzi * c_prev;
                        dp[nu + j] += dzf * c_prev;
                        dp[2 * nu + j] += dzo * ct;
                    }
                    dc_next[bi * nu + j] = dc_prev;
                    dpre[grow + j] = dzi;
                    dpre[grow + nu + j] = dzf;
                    dpre[grow + 2 * nu + j] = dzo;
                    dpre[grow + 3 * nu + j] = dzg;
                }
                // d l_{t-1} (through the gates) = dz Wl^T
                for j in 0..nu {
                    dl_rec[bi * nu + j] = dot(&wl[j * g4..(j + 1) * g4], &dpre[grow..grow + g4]);
                }
            }
        }
        for bi in 0..b {
            for j in 0..nu {
                dstate0[bi * nu + j] = dl[bi * nu + j] + dl_rec[bi * nu + j];
                dstate0[(b + bi) * nu + j] = dc_next[bi * nu + j];
            }
        }
        Ok(())
    }

    /// Reference of `sgd_momentum` in `kernels/optim.cu`.
    fn sgd_momentum(&self, param: &mut Vec<F>, grad: &Vec<F>, vel: &mut Vec<F>, hyper: &[SgdHyper<F>]) -> Result<()> {
        check_len("sgd grad", grad, param.len())?;
        check_len("sgd vel", vel, param.len())?;
        check_models("sgd_momentum hyper-parameters", hyper.len(), 1)?;
        let SgdHyper { lr, momentum, weight_decay } = hyper[0];
        for ((p, &g), v) in param.iter_mut().zip(grad).zip(vel.iter_mut()) {
            *v = momentum * *v - lr * (g + weight_decay * *p);
            *p += *v;
        }
        Ok(())
    }

    fn scale(&self, x: &mut Vec<F>, alpha: &[F]) -> Result<()> {
        check_models("scale factors", alpha.len(), 1)?;
        x.iter_mut().for_each(|e| *e *= alpha[0]);
        Ok(())
    }

    fn sum_squares(&self, x: &Vec<F>) -> Result<Vec<f64>> {
        Ok(vec![x.iter().map(|&e| e.to_f64() * e.to_f64()).sum()])
    }

    /// Reference of `ais_chains` in `kernels/ais.cu`.
    fn ais(
        &self,
        w: &Vec<F>,
        bv_t: &Vec<F>,
        bh_t: &Vec<F>,
        n: usize,
        nv: usize,
        nh: usize,
        runs: usize,
        betas: &[f64],
        rng: &[RngKey],
        counter: u32,
    ) -> Result<Vec<f64>> {
        check_models("ais keys", rng.len(), 1)?;
        let rng = rng[0];
        check_len("ais bv_t", bv_t, n * nv)?;
        check_len("ais bh_t", bh_t, n * nh)?;
        if betas.len() < 2 || betas[0] != 0.0 || *betas.last().unwrap_or(&0.0) != 1.0 {
            return Err(Error::msg("ais: the schedule must start at beta = 0 and end at beta = 1"));
        }
        let wt = transpose(w, nv, nh);
        let betas_f: Vec<F> = betas.iter().map(|&b| F::from_f64(b)).collect();
        let mut logw = vec![0f64; n * runs];
        self.par_items(&mut logw, 1, |first, block| {
            let (mut v, mut x, mut h, mut pv) =
                (vec![F::ZERO; nv], vec![F::ZERO; nh], vec![F::ZERO; nh], vec![F::ZERO; nv]);
            let mut u = vec![0f32; nv.max(nh)];
            let (zero_h, zero_v) = (vec![F::ZERO; nh], vec![F::ZERO; nv]);
            for (c, lw) in block.iter_mut().enumerate() {
                let chain = first + c;
                let frame = chain / runs;
                let (bv, bh) = (&bv_t[frame * nv..(frame + 1) * nv], &bh_t[frame * nh..(frame + 1) * nh]);
                // v_0 ~ base distribution (W = 0): independent Bernoulli(sigma(bv))
                rng.fill_uniform(counter, (chain * nv) as u32, &mut u[..nv]);
                v.copy_from_slice(bv);
                F::sigmoid_slice(&mut v);
                bernoulli_slice(&u[..nv], &mut v);
                let mut acc = 0f64;
                for k in 1..betas.len() {
                    let (b_prev, b_k) = (betas_f[k - 1], betas_f[k]);
                    // x = v W; log p*_beta(v) = v.bv + sum_j softplus(beta x_j + bh_j); v.bv cancels.
                    affine_rows(&v, w, &zero_h, &mut x);
                    // delta = sum_j softplus(b_k x_j + bh_j) - softplus(b_prev x_j + bh_j)
                    //       = log prod_j (1 + e^a_j) / (1 + e^b_j), and h holds sigma(a_j).
                    acc += ais_hidden(&x, bh, b_prev, b_k, &mut h);
                    if k + 1 == betas.len() {
                        break; // the last transition would not change the weight
                    }
                    // Transition at beta_k: h ~ sigma(beta_k x + bh), v ~ sigma(beta_k W h + bv).
                    let ctr = counter + 2 * k as u32 - 1;
                    rng.fill_uniform(ctr, (chain * nh) as u32, &mut u[..nh]);
                    bernoulli_slice(&u[..nh], &mut h);
                    affine_rows(&h, &wt, &zero_v, &mut pv);
                    rng.fill_uniform(ctr + 1, (chain * nv) as u32, &mut u[..nv]);
                    for i in 0..nv {
                        v[i] = b_k * pv[i] + bv[i];
                    }
                    F::sigmoid_slice(&mut v);
                    bernoulli_slice(&u[..nv], &mut v);
                }
                *lw = acc;
            }
        });
        Ok(logw)
    }

    /// Reference of `gibbs_marginals` in `kernels/rbm.cu`.
    fn gibbs_marginals(
        &self,
        w: &Vec<F>,
        bv_t: &Vec<F>,
        bh_t: &Vec<F>,
        n: usize,
        nv: usize,
        nh: usize,
        chains: usize,
        burn_in: usize,
        samples: usize,
        rng: RngKey,
        counter: u32,
        out: &mut Vec<F>,
    ) -> Result<()> {
        check_len("gibbs_marginals out", out, n * nv)?;
        if chains == 0 || samples == 0 {
            return Err(Error::msg("gibbs_marginals: chains and samples must be positive"));
        }
        let wt = transpose(w, nv, nh);
        let norm = F::from_f64(1.0 / (chains * samples) as f64);
        self.par_items(&mut out[..n * nv], nv, |first, block| {
            let (mut v, mut h, mut pv) = (vec![F::ZERO; nv], vec![F::ZERO; nh], vec![F::ZERO; nv]);
            let mut u = vec![0f32; nv.max(nh)];
            for (r, acc) in block.chunks_mut(nv).enumerate() {
                let frame = first + r;
                let (bv, bh) = (&bv_t[frame * nv..(frame + 1) * nv], &bh_t[frame * nh..(frame + 1) * nh]);
                acc.iter_mut().for_each(|a| *a = F::ZERO);
                for c in 0..chains {
                    let chain = frame * chains + c;
                    v.iter_mut().for_each(|x| *x = F::ZERO);
                    for step in 0..(burn_in + samples) as u32 {
                        Self::gibbs_step(
                            w,
                            &wt,
                            bv,
                            bh,
                            &mut v,
                            &mut h,
                            &mut pv,
                            &mut u,
                            false,
                            rng,
                            counter + 2 * step,
                            chain,
                        );
                        if step as usize >= burn_in {
                            // average P(v = 1 | h) over the kept steps
                            for (a, &p) in acc.iter_mut().zip(pv.iter()) {
                                *a += p;
                            }
                        }
                    }
                }
                acc.iter_mut().for_each(|a| *a *= norm);
            }
        });
        Ok(())
    }
}
