//! rtrbm: a CUDA-native trainer for polyphonic music models.
//!
//! LSTM-RTRBM (Lyu, Wu, Zhu 2015) and its baselines RTRBM and RNN-RBM, trained by CD-K with
//! back-propagation through time, evaluated by annealed importance sampling and expected
//! frame-level accuracy, and sampled into MIDI. The math is `SPEC.md` (copied into `docs/`);
//! every GPU kernel in `kernels/` has a CPU twin in `backend::cpu` that reads like the spec.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod float;
pub mod generate;
pub mod midi;
pub mod model;
pub mod plot;
pub mod reproduce;
pub mod rng;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};
