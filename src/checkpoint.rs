//! Checkpoints in safetensors: every parameter as a named f32 tensor (f64 for exactness is not
//! needed: training runs in f32), plus metadata (model spec, update count, RNG state, config as
//! YAML), written atomically (temporary file + rename).

use crate::error::{Error, Result};
use crate::model::ModelSpec;
use std::collections::HashMap;
use std::path::Path;

/// Host copy of a checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub spec: ModelSpec,
    /// `(name, shape, values)` in the model's parameter order.
    pub params: Vec<(String, Vec<usize>, Vec<f64>)>,
    /// Optimiser state and other tensors that are not parameters (e.g. `vel.W`).
    pub extra: Vec<(String, Vec<usize>, Vec<f64>)>,
    /// Free-form metadata (update count, epoch, RNG state, resolved config, ...), as strings.
    pub meta: HashMap<String, String>,
}

impl Checkpoint {
    pub fn param(&self, name: &str) -> Option<&[f64]> {
        self.params.iter().find(|p| p.0 == name).map(|p| p.2.as_slice())
    }
}

/// Writes `ck` to `path` atomically.
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    let mut meta = ck.meta.clone();
    meta.insert("model_spec".into(), serde_json::to_string(&ck.spec).map_err(|e| Error::msg(e.to_string()))?);
    meta.insert("format".into(), "rtrbm-checkpoint-v1".into());
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = ck
        .params
        .iter()
        .chain(ck.extra.iter())
        .map(|(n, s, v)| (n.clone(), s.clone(), v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::format(path, format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, &Some(meta)).map_err(|e| Error::format(path, e.to_string()))?;
    crate::error::write_atomic(path, &bytes)
}

/// Reads a checkpoint written by [`save`], checking every tensor against the model spec.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors checkpoint: {e}")))?;
    let meta: HashMap<String, String> = md.metadata().clone().unwrap_or_default();
    let spec_json = meta.get("model_spec").ok_or_else(|| Error::format(path, "metadata has no `model_spec`"))?;
    let spec: ModelSpec =
        serde_json::from_str(spec_json).map_err(|e| Error::format(path, format!("bad `model_spec` metadata: {e}")))?;
    spec.validate().map_err(|e| Error::format(path, e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::format(path, e.to_string()))?;
    let mut params = vec![];
    for (name, shape) in spec.param_shapes() {
        let t = st.tensor(name).map_err(|_| Error::format(path, format!("missing tensor `{name}`")))?;
        if t.shape() != shape.as_slice() || t.dtype() != safetensors::Dtype::F32 {
            return Err(Error::format(
                path,
                format!("tensor `{name}`: expected f32 {shape:?}, found {:?} {:?}", t.dtype(), t.shape()),
            ));
        }
        let vals: Vec<f64> =
            t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect();
        if let Some(i) = vals.iter().position(|x| !x.is_finite()) {
            return Err(Error::format(path, format!("tensor `{name}` holds a non-finite value at {i}")));
        }
        params.push((name.to_string(), shape, vals));
    }
    let mut extra = vec![];
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        if params.iter().any(|p| p.0 == name) {
            continue;
        }
        let t = st.tensor(&name).map_err(|e| Error::format(path, e.to_string()))?;
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(Error::format(path, format!("tensor `{name}` is not f32")));
        }
        let vals = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect();
        extra.push((name, t.shape().to_vec(), vals));
    }
    Ok(Checkpoint { spec, params, extra, meta })
}
