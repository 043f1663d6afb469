//! Real-valued motion capture (SPEC 4.3): the 49-dimensional standardised walking data of
//! `../shared/data/mocap/mocap49.json` (Hsu / Taylor, as released with Sutskever's RTRBM code).
//!
//! Split as in that code: the last ceil(20%) frames of each sequence are the test set, the frames
//! before them the training set. The recurrence of a test prediction runs over the whole sequence.

use crate::error::{Error, Result};
use std::path::Path;

/// Real-valued sequences with a per-sequence train/test boundary.
#[derive(Clone, Debug)]
pub struct RealSequences {
    pub dims: usize,
    /// Each sequence as a row-major `[T, D]` array.
    pub seqs: Vec<Vec<f64>>,
    /// Frames `0..train_len[s]` of sequence s are training data; the rest is the test set.
    pub train_len: Vec<usize>,
}

impl RealSequences {
    pub fn len_of(&self, s: usize) -> usize {
        self.seqs[s].len() / self.dims
    }
    /// The training parts, cut into consecutive chunks of at most `chunk` frames.
    pub fn train_chunks(&self, chunk: usize) -> Vec<Vec<f64>> {
        let mut out = vec![];
        for (s, seq) in self.seqs.iter().enumerate() {
            for piece in seq[..self.train_len[s] * self.dims].chunks(chunk * self.dims) {
                out.push(piece.to_vec());
            }
        }
        out
    }
    pub fn test_frames(&self) -> usize {
        (0..self.seqs.len()).map(|s| self.len_of(s) - self.train_len[s]).sum()
    }
}

#[derive(serde::Deserialize)]
struct Split {
    train_len: Vec<usize>,
}

#[derive(serde::Deserialize)]
struct MocapJson {
    num_dims: usize,
    sequences: Vec<Vec<Vec<f64>>>,
    rtrbm_split: Split,
}

/// Reads `mocap49.json`.
pub fn read(path: &Path) -> Result<RealSequences> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let m: MocapJson =
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a mocap49.json layout: {e}")))?;
    let d = m.num_dims;
    if d == 0 || m.sequences.is_empty() || m.rtrbm_split.train_len.len() != m.sequences.len() {
        return Err(Error::format(path, "needs num_dims > 0, sequences, and one rtrbm_split.train_len per sequence"));
    }
    let mut seqs = vec![];
    for (s, seq) in m.sequences.iter().enumerate() {
        let mut flat = Vec::with_capacity(seq.len() * d);
        for (t, frame) in seq.iter().enumerate() {
            if frame.len() != d || frame.iter().any(|x| !x.is_finite()) {
                return Err(Error::format(path, format!("sequence {s}, frame {t}: expected {d} finite values")));
            }
            flat.extend_from_slice(frame);
        }
        if m.rtrbm_split.train_len[s] >= seq.len() {
            return Err(Error::format(path, format!("sequence {s}: train_len leaves no test frames")));
        }
        seqs.push(flat);
    }
    Ok(RealSequences { dims: d, seqs, train_len: m.rtrbm_split.train_len })
}
