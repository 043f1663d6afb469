//! `Packed<B>`: P models of the same shapes on any backend, one lone operation per model.
//!
//! A buffer is one inner buffer per model, and each operation runs the inner backend's lone
//! operation on model p's buffers, for p = 0..P in order. This is how the CPU packs a sweep's
//! models (its speed comes from running several packs or lone runs on worker threads), and it is
//! the reference that the CUDA backend's packed launches (model index in the launch grid) must
//! equal: a model trained in a pack computes exactly what it computes alone.

use super::{check_models, Backend, Dims, Mat, SgdHyper};
use crate::error::{Error, Result};
use crate::rng::RngKey;

/// P models on backend `B`, one lone operation per model.
pub struct Packed<B: Backend> {
    inner: B,
    models: usize,
}

impl<B: Backend> Packed<B> {
    /// Packs `models` (at least 1) models on `inner`, which must itself be a lone backend.
    pub fn new(inner: B, models: usize) -> Result<Self> {
        if models == 0 || inner.models() != 1 {
            return Err(Error::msg(format!(
                "cannot pack {models} models on a backend that already packs {}",
                inner.models()
            )));
        }
        Ok(Self { inner, models })
    }

    /// The lone backend underneath.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

fn mat<'a, Buf>(m: &Mat<'a, Vec<Buf>>, p: usize) -> Mat<'a, Buf> {
    Mat { buf: &m.buf[p], offset: m.offset, trans: m.trans }
}

impl<B: Backend> Backend for Packed<B> {
    type F = B::F;
    type Buf = Vec<B::Buf>;

    fn name(&self) -> String {
        format!("{} models packed on {}", self.models, self.inner.name())
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
        src.iter().zip(dst.iter_mut()).try_for_each(|(s, d)| self.inner.copy(s, src_off, d, dst_off, n))
    }

    fn fill(&self, x: &mut Self::Buf, value: Self::F) -> Result<()> {
        x.iter_mut().try_for_each(|b| self.inner.fill(b, value))
    }

    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
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
        for (p, cp) in c.iter_mut().enumerate() {
            self.inner.gemm(m, n, k, alpha, mat(&a, p), mat(&b, p), beta, cp, c_off)?;
        }
        Ok(())
    }

    fn add_bias(&self, x: &mut Self::Buf, bias: &Self::Buf, rows: usize, cols: usize) -> Result<()> {
        x.iter_mut().zip(bias).try_for_each(|(x, b)| self.inner.add_bias(x, b, rows, cols))
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
        x.iter().zip(out.iter_mut()).try_for_each(|(x, o)| self.inner.sum_rows(x, rows, cols, alpha, beta, o))
    }

    fn axpy(&self, alpha: Self::F, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        x.iter().zip(y.iter_mut()).try_for_each(|(x, y)| self.inner.axpy(alpha, x, y))
    }

    fn masked_diff(
        &self,
        a: &Self::Buf,
        b: &Self::Buf,
        mask: &Self::Buf,
        scale: Self::F,
        rows: usize,
        cols: usize,
        out: &mut Self::Buf,
    ) -> Result<()> {
        for (p, o) in out.iter_mut().enumerate() {
            self.inner.masked_diff(&a[p], &b[p], &mask[p], scale, rows, cols, o)?;
        }
        Ok(())
    }

    fn mask_rows(&self, x: &mut Self::Buf, mask: &Self::Buf, rows: usize, cols: usize) -> Result<()> {
        x.iter_mut().zip(mask).try_for_each(|(x, m)| self.inner.mask_rows(x, m, rows, cols))
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
        for (p, o) in out.iter_mut().enumerate() {
            self.inner.hidden_probs(&w[p], &v[p], &bh_t[p], n, nv, nh, o)?;
        }
        Ok(())
    }

    fn gibbs(
        &self,
        w: &Self::Buf,
        bv_t: &Self::Buf,
        bh_t: &Self::Buf,
        v: &mut Self::Buf,
        n: usize,
        nv: usize,
        nh: usize,
        k: usize,
        gaussian: bool,
        rng: &[RngKey],
        counter: u32,
    ) -> Result<()> {
        check_models("gibbs keys", rng.len(), self.models)?;
        for (p, vp) in v.iter_mut().enumerate() {
            self.inner.gibbs(&w[p], &bv_t[p], &bh_t[p], vp, n, nv, nh, k, gaussian, &rng[p..=p], counter)?;
        }
        Ok(())
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
        for (p, o) in out.iter_mut().enumerate() {
            self.inner.free_energy(&w[p], &bv_t[p], &bh_t[p], &v[p], n, nv, nh, gaussian, o)?;
        }
        Ok(())
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
        for (p, (rp, bp)) in r.iter_mut().zip(bh_t.iter_mut()).enumerate() {
            self.inner.rtrbm_forward(&wr[p], &pre[p], &vw[p], rp, bp, d)?;
        }
        Ok(())
    }

    fn rtrbm_backward(&self, wr: &Self::Buf, r: &Self::Buf, dbh: &Self::Buf, g: &mut Self::Buf, d: Dims) -> Result<()> {
        for (p, gp) in g.iter_mut().enumerate() {
            self.inner.rtrbm_backward(&wr[p], &r[p], &dbh[p], gp, d)?;
        }
        Ok(())
    }

    fn rnn_forward(&self, wuu: &Self::Buf, pre: &Self::Buf, u: &mut Self::Buf, d: Dims) -> Result<()> {
        for (p, up) in u.iter_mut().enumerate() {
            self.inner.rnn_forward(&wuu[p], &pre[p], up, d)?;
        }
        Ok(())
    }

    fn rnn_backward(&self, wuu: &Self::Buf, u: &Self::Buf, e: &Self::Buf, dz: &mut Self::Buf, d: Dims) -> Result<()> {
        for (p, dzp) in dz.iter_mut().enumerate() {
            self.inner.rnn_backward(&wuu[p], &u[p], &e[p], dzp, d)?;
        }
        Ok(())
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
        for p in 0..self.models {
            let peep = peep.map(|x| &x[p]);
            self.inner.lstm_forward(&wl[p], peep, &pre[p], &mut l[p], &mut c[p], &mut gates[p], d)?;
        }
        Ok(())
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
        mut dpeep: Option<&mut Self::Buf>,
        d: Dims,
    ) -> Result<()> {
        for p in 0..self.models {
            let peep = peep.map(|x| &x[p]);
            let dpeep = dpeep.as_mut().map(|x| &mut x[p]);
            self.inner.lstm_backward(
                &wl[p],
                peep,
                &l[p],
                &c[p],
                &gates[p],
                &dl[p],
                &mut dpre[p],
                &mut dstate0[p],
                dpeep,
                d,
            )?;
        }
        Ok(())
    }

    fn sgd_momentum(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        vel: &mut Self::Buf,
        hyper: &[SgdHyper<Self::F>],
    ) -> Result<()> {
        check_models("sgd_momentum hyper-parameters", hyper.len(), self.models)?;
        for (p, (x, v)) in param.iter_mut().zip(vel.iter_mut()).enumerate() {
            self.inner.sgd_momentum(x, &grad[p], v, &hyper[p..=p])?;
        }
        Ok(())
    }

    fn scale(&self, x: &mut Self::Buf, alpha: &[Self::F]) -> Result<()> {
        check_models("scale factors", alpha.len(), self.models)?;
        x.iter_mut().enumerate().try_for_each(|(p, x)| self.inner.scale(x, &alpha[p..=p]))
    }

    fn sum_squares(&self, x: &Self::Buf) -> Result<Vec<f64>> {
        let mut out = vec![];
        for b in x {
            out.extend(self.inner.sum_squares(b)?);
        }
        Ok(out)
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
        rng: RngKey,
        counter: u32,
    ) -> Result<Vec<f64>> {
        let mut out = vec![];
        for p in 0..self.models {
            out.extend(self.inner.ais(&w[p], &bv_t[p], &bh_t[p], n, nv, nh, runs, betas, rng, counter)?);
        }
        Ok(out)
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
        for (p, o) in out.iter_mut().enumerate() {
            self.inner
                .gibbs_marginals(&w[p], &bv_t[p], &bh_t[p], n, nv, nh, chains, burn_in, samples, rng, counter, o)?;
        }
        Ok(())
    }
}
