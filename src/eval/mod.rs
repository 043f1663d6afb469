//! Evaluation (in progress)
