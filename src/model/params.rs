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
    /// Uploads host tensors `(name, shape, values)`.
    pub fn from_host(be: &B, host: Vec<(String, Vec<usize>, Vec<f64>)>) -> Result<Self> {
        let mut p = Params { names: vec![], shapes: vec![], bufs: vec![] };
        for (name, shape, data) in host {
            let n: usize = shape.iter().product();
            if data.len() != n {
                return Err(Error::Shape(format!("parameter {name}: shape {shape:?} but {} values", data.len())));
            }
            let vals: Vec<B::F> = data.iter().map(|&x| B::F::from_f64(x)).collect();
            p.bufs.push(be.upload(&vals)?);
            p.names.push(name);
            p.shapes.push(shape);
        }
        Ok(p)
    }

    /// Downloads every tensor as f64.
    pub fn to_host(&self, be: &B) -> Result<Vec<HostTensor>> {
        let mut out = vec![];
        for ((name, shape), buf) in self.names.iter().zip(&self.shapes).zip(&self.bufs) {
            let data = be.download(buf)?.iter().map(|x| x.to_f64()).collect();
            out.push((name.clone(), shape.clone(), data));
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
