//! `Packed<B>`: P models of the same shapes on any backend, one lone operation per model.
//!
//! A buffer is one inner buffer per model, and each operation runs the inner backend's lone
//! operation on model p's buffers, for every p, spread over `threads` host threads (a rayon pool
//! of its own, kept for the backend's life: a pack hands out ~45 operations per update, too many
//! to spawn threads for each; 1 = in order on the calling thread). This is how the CPU packs a
//! sweep's models, and it is the reference that the CUDA backend's packed launches (model index in
//! the launch grid) must equal: a model trained in a pack computes exactly what it computes alone,
//! whatever the thread count.

use super::{check_models, Backend, Dims, Mat, SgdHyper};
use crate::error::{Error, Result};
use crate::rng::RngKey;

/// P models on backend `B`, one lone operation per model.
pub struct Packed<B: Backend> {
    inner: B,
    models: usize,
    threads: usize,
    /// The worker threads (None for one thread).
    pool: Option<rayon::ThreadPool>,
}

impl<B: Backend> Packed<B> {
    /// Packs `models` (at least 1) models on `inner`, which must itself be a lone backend; the
    /// models' operations run one after another.
    pub fn new(inner: B, models: usize) -> Result<Self> {
        Self::with_threads(inner, models, 1)
    }

    /// As [`Packed::new`], the models' operations spread over `threads` host threads (for a CPU
    /// `inner`, best with one thread of its own).
    pub fn with_threads(inner: B, models: usize, threads: usize) -> Result<Self> {
        if models == 0 || inner.models() != 1 {
            return Err(Error::msg(format!(
                "cannot pack {models} models on a backend that already packs {}",
                inner.models()
            )));
        }
        let threads = threads.max(1);
        let pool = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("rtrbm-pack-{i}"))
                .build()
                .map_err(|e| Error::msg(format!("cannot start {threads} threads for a pack: {e}")))?;
            Some(pool)
        } else {
            None
        };
        Ok(Self { inner, models, threads, pool })
    }

    /// The lone backend underneath.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Runs `f(p, item)` for the item of each model p (`items[p]`), spread over the threads;
    /// returns the error of the lowest-numbered model that failed.
    fn each<T: Send>(&self, items: Vec<T>, f: impl Fn(usize, T) -> Result<()> + Sync) -> Result<()> {
        use rayon::prelude::*;
        match &self.pool {
            Some(pool) if items.len() > 1 => {
                let results: Vec<Result<()>> =
                    pool.install(|| items.into_par_iter().enumerate().map(|(p, t)| f(p, t)).collect());
                results.into_iter().collect()
            }
            _ => items.into_iter().enumerate().try_for_each(|(p, t)| f(p, t)),
        }
    }

    /// [`Packed::each`] collecting one vector per model, concatenated in model order.
    fn each_out<T: Send>(&self, f: impl Fn(usize) -> Result<Vec<T>> + Sync) -> Result<Vec<T>> {
        let mut outs: Vec<Vec<T>> = (0..self.models).map(|_| vec![]).collect();
        self.each(outs.iter_mut().collect(), |p, o| {
            *o = f(p)?;
            Ok(())
        })?;
        Ok(outs.into_iter().flatten().collect())
    }
}

fn mat<'a, Buf>(m: &Mat<'a, Vec<Buf>>, p: usize) -> Mat<'a, Buf> {
    Mat { buf: &m.buf[p], offset: m.offset, trans: m.trans }
}

impl<B: Backend> Backend for Packed<B> {
    type F = B::F;
    type Buf = Vec<B::Buf>;
    type Store = B::Store;
    type Recording = ();

    fn name(&self) -> String {
        let threads = if self.threads > 1 { format!(" over {} threads", self.threads) } else { String::new() };
        format!("{} models packed on {}{threads}", self.models, self.inner.name())
    }

    fn models(&self) -> usize {
        self.models
    }

    fn zeros(&self, n: usize) -> Result<Self::Buf> {
        (0..self.models).map(|_| self.inner.zeros(n)).collect()
    }

    fn upload(&self, host: &[Self::F]) -> Result<Self::Buf> {
        if host.len() % self.models != 0 {
            return Err(Error::Shape(format!("upload of {} values to {} packed models", host.len(), self.models)));
        }
        host.chunks(host.len() / self.models).map(|h| self.inner.upload(h)).collect()
    }

    fn write(&self, dst: &mut Self::Buf, host: &[Self::F]) -> Result<()> {
        let n = self.len(dst);
        if host.len() != n * self.models {
            return Err(Error::Shape(format!(
                "write of {} values to {} x {n} packed elements",
                host.len(),
                self.models
            )));
        }
        dst.iter_mut().zip(host.chunks(n.max(1))).try_for_each(|(d, h)| self.inner.write(d, h))
    }

    fn download(&self, buf: &Self::Buf) -> Result<Vec<Self::F>> {
        let mut out = vec![];
        for b in buf {
            out.extend(self.inner.download(b)?);
        }
        Ok(out)
    }

    fn len(&self, buf: &Self::Buf) -> usize {
        buf.first().map_or(0, |b| self.inner.len(b))
    }

    fn copy(&self, src: &Self::Buf, src_off: usize, dst: &mut Self::Buf, dst_off: usize, n: usize) -> Result<()> {
        self.each(dst.iter_mut().collect(), |p, d| self.inner.copy(&src[p], src_off, d, dst_off, n))
    }

    fn fill(&self, x: &mut Self::Buf, value: Self::F) -> Result<()> {
        self.each(x.iter_mut().collect(), |_, b| self.inner.fill(b, value))
    }

    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    fn upload_store(&self, frames: &[Self::F]) -> Result<B::Store> {
        self.inner.upload_store(frames)
    }

    fn gather_frames(
        &self,
        store: &B::Store,
        spans: &[[u32; 2]],
        t_max: usize,
        b: usize,
        nv: usize,
        v: &mut Self::Buf,
        mask: &mut Self::Buf,
        wmask: &mut Self::Buf,
    ) -> Result<()> {
        if spans.len() != self.models * b {
            return Err(Error::Shape(format!(
                "gather_frames: {} spans for {} models x {b} sequences",
                spans.len(),
                self.models
            )));
        }
        let items: Vec<_> = v.iter_mut().zip(mask.iter_mut()).zip(wmask.iter_mut()).collect();
        self.each(items, |p, ((v, m), w)| {
            self.inner.gather_frames(store, &spans[p * b..(p + 1) * b], t_max, b, nv, v, m, w)
        })
    }

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
    ) -> Result<()> {
        self.each(c.iter_mut().collect(), |p, cp| {
            self.inner.gemm(m, n, k, alpha, mat(&a, p), mat(&b, p), beta, cp, c_off)
        })
    }

    fn broadcast_rows(&self, x: &mut Self::Buf, bias: &Self::Buf, rows: usize, cols: usize) -> Result<()> {
        self.each(x.iter_mut().collect(), |p, x| self.inner.broadcast_rows(x, &bias[p], rows, cols))
    }

    fn sum_rows(
        &self,
        x: &Self::Buf,
        rows: usize,
        cols: usize,
        alpha: Self::F,
        beta: Self::F,
        out: &mut Self::Buf,
    ) -> Result<()> {
        self.each(out.iter_mut().collect(), |p, o| self.inner.sum_rows(&x[p], rows, cols, alpha, beta, o))
    }

    fn hidden_probs(
        &self,
        w: &Self::Buf,
        v: &Self::Buf,
        bh_t: &Self::Buf,
        n: usize,
        nv: usize,
        nh: usize,
        out: &mut Self::Buf,
    ) -> Result<()> {
        self.each(out.iter_mut().collect(), |p, o| self.inner.hidden_probs(&w[p], &v[p], &bh_t[p], n, nv, nh, o))
    }

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
    ) -> Result<()> {
        let outs = phneg.iter_mut().zip(dbh_t.iter_mut()).zip(dbv_t.iter_mut()).collect();
        self.each(outs, |p, ((pn, dh), dv)| {
            self.inner.cd_stats(&w[p], &v[p], &vneg[p], &bh_t[p], &wmask[p], n, nv, nh, pn, dh, dv)
        })
    }

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
    ) -> Result<()> {
        check_models("gibbs keys", rng.len(), self.models)?;
        self.each(v.iter_mut().collect(), |p, vp| {
            let m = mask.map(|m| &m[p]);
            self.inner.gibbs(&w[p], &bv_t[p], &bh_t[p], vp, m, n, nv, nh, k, gaussian, &rng[p..=p], counter)
        })
    }

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
    ) -> Result<()> {
        self.each(out.iter_mut().collect(), |p, o| {
            self.inner.free_energy(&w[p], &bv_t[p], &bh_t[p], &v[p], n, nv, nh, gaussian, o)
        })
    }

    fn rtrbm_forward(
        &self,
        wr: &Self::Buf,
        pre: &Self::Buf,
        vw: &Self::Buf,
        r: &mut Self::Buf,
        bh_t: &mut Self::Buf,
        d: Dims,
    ) -> Result<()> {
        self.each(r.iter_mut().zip(bh_t.iter_mut()).collect(), |p, (rp, bp)| {
            self.inner.rtrbm_forward(&wr[p], &pre[p], &vw[p], rp, bp, d)
        })
    }

    fn rtrbm_backward(&self, wr: &Self::Buf, r: &Self::Buf, dbh: &Self::Buf, g: &mut Self::Buf, d: Dims) -> Result<()> {
        self.each(g.iter_mut().collect(), |p, gp| self.inner.rtrbm_backward(&wr[p], &r[p], &dbh[p], gp, d))
    }

    fn rnn_forward(&self, wuu: &Self::Buf, pre: &Self::Buf, u: &mut Self::Buf, d: Dims) -> Result<()> {
        self.each(u.iter_mut().collect(), |p, up| self.inner.rnn_forward(&wuu[p], &pre[p], up, d))
    }

    fn rnn_backward(&self, wuu: &Self::Buf, u: &Self::Buf, e: &Self::Buf, dz: &mut Self::Buf, d: Dims) -> Result<()> {
        self.each(dz.iter_mut().collect(), |p, dzp| self.inner.rnn_backward(&wuu[p], &u[p], &e[p], dzp, d))
    }

    fn lstm_forward(
        &self,
        wl: &Self::Buf,
        peep: Option<&Self::Buf>,
        pre: &Self::Buf,
        l: &mut Self::Buf,
        c: &mut Self::Buf,
        gates: &mut Self::Buf,
        d: Dims,
    ) -> Result<()> {
        let items = l.iter_mut().zip(c.iter_mut()).zip(gates.iter_mut()).collect();
        self.each(items, |p, ((lp, cp), gp)| {
            self.inner.lstm_forward(&wl[p], peep.map(|x| &x[p]), &pre[p], lp, cp, gp, d)
        })
    }

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
    ) -> Result<()> {
        let dpeeps: Vec<Option<&mut B::Buf>> = match dpeep {
            Some(x) => x.iter_mut().map(Some).collect(),
            None => (0..self.models).map(|_| None).collect(),
        };
        let items = dpre.iter_mut().zip(dstate0.iter_mut()).zip(dpeeps).collect();
        self.each(items, |p, ((dp, ds), dpeep)| {
            let peep = peep.map(|x| &x[p]);
            self.inner.lstm_backward(&wl[p], peep, &l[p], &c[p], &gates[p], &dl[p], dp, ds, dpeep, d)
        })
    }

    fn sgd_momentum(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        vel: &mut Self::Buf,
        hyper: &[SgdHyper<Self::F>],
    ) -> Result<()> {
        check_models("sgd_momentum hyper-parameters", hyper.len(), self.models)?;
        self.each(param.iter_mut().zip(vel.iter_mut()).collect(), |p, (x, v)| {
            self.inner.sgd_momentum(x, &grad[p], v, &hyper[p..=p])
        })
    }

    fn scale(&self, x: &mut Self::Buf, alpha: &[Self::F]) -> Result<()> {
        check_models("scale factors", alpha.len(), self.models)?;
        self.each(x.iter_mut().collect(), |p, x| self.inner.scale(x, &alpha[p..=p]))
    }

    fn sum_squares(&self, x: &Self::Buf) -> Result<Vec<f64>> {
        self.each_out(|p| self.inner.sum_squares(&x[p]))
    }

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
    ) -> Result<Vec<f64>> {
        check_models("ais keys", rng.len(), self.models)?;
        self.each_out(|p| self.inner.ais(&w[p], &bv_t[p], &bh_t[p], n, nv, nh, runs, betas, &rng[p..=p], counter))
    }

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
    ) -> Result<()> {
        self.each(out.iter_mut().collect(), |p, o| {
            self.inner.gibbs_marginals(&w[p], &bv_t[p], &bh_t[p], n, nv, nh, chains, burn_in, samples, rng, counter, o)
        })
    }
}
