//! Deterministic train / valid / test splitting of a list of sequences (e.g. imported MIDI).

use super::{Dataset, Sequence};
use crate::rng::HostRng;

/// The Philox stream used for dataset splits (kept apart from the training streams).
pub const SPLIT_STREAM: u32 = 0x5911;

/// Splits `seqs` into train / valid / test: `round(n * test_frac)` sequences go to test,
/// `round(n * valid_frac)` to valid (at most what is left) and the rest to train.
///
/// The choice is a Fisher-Yates shuffle of the indices by `HostRng::new(seed, SPLIT_STREAM)`, so
/// the same input and seed always give the same split; within each split the sequences keep their
/// original order. Fractions that are negative or not finite count as 0, above 1 as 1.
pub fn split_sequences(seqs: Vec<Sequence>, valid_frac: f64, test_frac: f64, seed: u64) -> Dataset {
    let n = seqs.len();
    let count = |f: f64| -> usize {
        let f = if f.is_finite() { f.clamp(0.0, 1.0) } else { 0.0 };
        ((n as f64 * f).round() as usize).min(n)
    };
    let n_test = count(test_frac);
    let n_valid = count(valid_frac).min(n - n_test);

    let mut order: Vec<usize> = (0..n).collect();
    HostRng::new(seed, SPLIT_STREAM).shuffle(&mut order);
    // 0 = train, 1 = valid, 2 = test, indexed by original position.
    let mut dest = vec![0u8; n];
    for (rank, &i) in order.iter().enumerate() {
        dest[i] = if rank < n_test {
            2
        } else if rank < n_test + n_valid {
            1
        } else {
            0
        };
    }
    let mut ds = Dataset::default();
    for (seq, d) in seqs.into_iter().zip(dest) {
        match d {
            2 => ds.test.push(seq),
            1 => ds.valid.push(seq),
            _ => ds.train.push(seq),
        }
    }
    ds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_determinism() {
        let seqs: Vec<Sequence> = (0..10).map(|i| Sequence { frames: vec![vec![21 + i as u8]] }).collect();
        let a = split_sequences(seqs.clone(), 0.2, 0.1, 7);
        assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (7, 2, 1));
        assert_eq!(a, split_sequences(seqs.clone(), 0.2, 0.1, 7));
        let b = split_sequences(seqs.clone(), f64::NAN, 2.0, 7);
        assert_eq!((b.train.len(), b.valid.len(), b.test.len()), (0, 0, 10));
    }
}
