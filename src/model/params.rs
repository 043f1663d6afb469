//! Named parameter tensors on a backend (also used for gradients and momentum velocities).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::float::Float;

/// A tensor on the host: (name, shape, values).
pub type HostTensor = (String, Vec<usize>, Vec<f64>);

/// An ordered set of named tensors: parameters, their gradients, or optimiser state.
pub struct Params<B: Backend> {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub bufs: Vec<B::Buf>,
}

impl<B: Backend> Params<B> {
    /// Uploads host tensors `(name, shape, values)` of a lone model.
    pub fn from_host(be: &B, host: Vec<HostTensor>) -> Result<Self> {
        Self::from_host_models(be, vec![host])
    }

    /// Uploads the host tensors of each packed model (`host[p]` for model p; the same names and
    /// shapes in the same order for every model).
    pub fn from_host_models(be: &B, host: Vec<Vec<HostTensor>>) -> Result<Self> {
        crate::backend::check_models("parameter sets", host.len(), be.models())?;
        let mut p = Params { names: vec![], shapes: vec![], bufs: vec![] };
        for (name, shape, _) in &host[0] {
            let n: usize = shape.iter().product();
            let mut vals: Vec<B::F> = Vec::with_capacity(n * host.len());
            for model in &host {
                let data = match model.iter().find(|t| &t.0 == name) {
                    Some((_, s, data)) if s == shape && data.len() == n => data,
                    Some((_, s, data)) => {
                        return Err(Error::Shape(format!(
                            "parameter {name}: shape {s:?} with {} values, expected {shape:?}",
                            data.len()
                        )))
                    }
                    None => return Err(Error::Shape(format!("a packed model lacks parameter {name}"))),
                };
                vals.extend(data.iter().map(|&x| B::F::from_f64(x)));
            }
            p.bufs.push(be.upload(&vals)?);
            p.names.push(name.clone());
            p.shapes.push(shape.clone());
        }
        Ok(p)
    }

    /// Downloads every tensor of a lone model as f64 (model 0 of a packed backend).
    pub fn to_host(&self, be: &B) -> Result<Vec<HostTensor>> {
        Ok(self.to_host_models(be)?.swap_remove(0))
    }

    /// Downloads every tensor of every packed model as f64: `out[p]` holds model p's.
    pub fn to_host_models(&self, be: &B) -> Result<Vec<Vec<HostTensor>>> {
        let models = be.models();
        let mut out = vec![vec![]; models];
        for ((name, shape), buf) in self.names.iter().zip(&self.shapes).zip(&self.bufs) {
            let all = be.download(buf)?;
            let n: usize = shape.iter().product();
            for (p, model) in out.iter_mut().enumerate() {
                let data = all[p * n..(p + 1) * n].iter().map(|x| x.to_f64()).collect();
                model.push((name.clone(), shape.clone(), data));
            }
        }
        Ok(out)
    }

    /// Zero tensors with the same names and shapes.
    pub fn zeros_like(&self, be: &B) -> Result<Self> {
        let bufs = self.shapes.iter().map(|s| be.zeros(s.iter().product())).collect::<Result<Vec<_>>>()?;
        Ok(Params { names: self.names.clone(), shapes: self.shapes.clone(), bufs })
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
    pub fn find(&self, name: &str) -> Option<&B::Buf> {
        self.index(name).map(|i| &self.bufs[i])
    }
    pub fn find_mut(&mut self, name: &str) -> Option<&mut B::Buf> {
        self.index(name).map(move |i| &mut self.bufs[i])
    }
    pub fn get(&self, name: &str) -> Result<&B::Buf> {
        self.find(name).ok_or_else(|| Error::msg(format!("model has no parameter `{name}`")))
    }
    pub fn get_mut(&mut self, name: &str) -> Result<&mut B::Buf> {
        self.find_mut(name).ok_or_else(|| Error::msg(format!("model has no parameter `{name}`")))
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// Total number of scalars.
    pub fn numel(&self) -> usize {
        self.shapes.iter().map(|s| s.iter().product::<usize>()).sum()
    }
}
