//! Run configuration in YAML (`configs/*.yaml`): data, model, initialisation, training.
//!
//! Unknown fields are rejected, missing ones take the paper's defaults (SPEC 3), and
//! [`Config::validate`] checks every value with a message that names the field.

use crate::error::{Error, Result};
use crate::model::{ModelKind, ModelSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole configuration of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelSpec,
    pub init: InitConfig,
    pub train: TrainConfig,
}

/// Where the piano rolls come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `jsb` for the JSB Chorales shipped inside the binary, or a `.json`, `.pkl` or `.mat` file
    /// (relative paths are taken from the current directory).
    pub path: String,
}

/// Parameter initialisation (SPEC 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitConfig {
    /// Standard deviation of W, WR, WL and the RNN-RBM matrices.
    pub weight_std: f64,
}

/// One step of the CD schedule: from update `from` on, use `k` Gibbs steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdStep {
    pub from: u64,
    pub k: usize,
}

/// What early stopping and model selection watch (validation set only, never test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidMetric {
    /// Log-likelihood per frame by a short AIS schedule (a cheap, optimistic proxy of SPEC 4.1).
    AisLl,
    /// The CD free-energy cost of SPEC 3 on the validation set (lower is better; a weak proxy).
    Cost,
    /// No validation.
    None,
}

/// Training (SPEC 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Sequences are cut into consecutive chunks of at most this many frames; states reset per chunk.
    pub chunk_frames: usize,
    /// Chunks per parameter update (1 = the paper's protocol); shorter chunks are padded and masked.
    pub batch: usize,
    /// Learning rate of momentum SGD.
    pub lr: f64,
    /// Momentum of momentum SGD.
    pub momentum: f64,
    /// L2 weight decay added to every gradient (0 = off).
    pub weight_decay: f64,
    /// Clip the global gradient L2 norm to this value (0 = off).
    pub grad_clip: f64,
    /// CD-K schedule: K for each range of updates (paper: K = 10, then 25 after 1000 updates).
    pub cd_schedule: Vec<CdStep>,
    /// Passes over the training set.
    pub epochs: usize,
    /// Stop after this many updates in total (0 = no limit).
    pub max_updates: u64,
    /// Seed of initialisation, shuffling and Gibbs sampling.
    pub seed: u64,
    /// Shuffle the chunks every epoch.
    pub shuffle: bool,
    /// Batch chunks of similar length (with `batch` > 1; off by default): each epoch sorts its
    /// (shuffled) chunks by length, cuts them into batches and shuffles the batches, so that a
    /// batch is padded to about its own chunks' length instead of its longest one's. The cost and
    /// the epoch are the same; which chunks share an update is not (see `train::epoch_order`).
    /// In a pack of runs an update spans the longest of the runs' batches, so runs with their
    /// own seeds gain less there.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bucket: bool,
    /// Log the training cost every this many updates.
    pub log_every: u64,
    /// Write a checkpoint every this many updates (0 = only at epoch ends).
    pub checkpoint_every: u64,
    /// Validation figure for early stopping and for choosing `best.safetensors`.
    pub valid_metric: ValidMetric,
    /// Validate every this many epochs.
    pub valid_every: usize,
    /// Stop when the validation figure has not improved for this many validations (0 = never).
    pub patience: usize,
    /// AIS betas (linear schedule) and runs of the `ais_ll` validation proxy.
    pub valid_ais_betas: usize,
    pub valid_ais_runs: usize,
    /// Use at most this many validation frames (whole sequences, in file order; 0 = all).
    pub valid_max_frames: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { path: "jsb".into() }
    }
}

impl Default for InitConfig {
    fn default() -> Self {
        Self { weight_std: 0.01 }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            chunk_frames: 100,
            batch: 1,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            grad_clip: 0.0,
            cd_schedule: vec![CdStep { from: 0, k: 10 }, CdStep { from: 1000, k: 25 }],
            epochs: 200,
            max_updates: 0,
            seed: 1234,
            shuffle: true,
            bucket: false,
            log_every: 50,
            checkpoint_every: 0,
            valid_metric: ValidMetric::AisLl,
            valid_every: 5,
            patience: 4,
            valid_ais_betas: 500,
            valid_ais_runs: 10,
            valid_max_frames: 2000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: DataConfig::default(),
            model: ModelSpec::new(ModelKind::LstmRtrbm, 88, 88, 88),
            init: InitConfig::default(),
            train: TrainConfig::default(),
        }
    }
}

impl TrainConfig {
    /// K of the CD schedule at update `update`.
    pub fn cd_k(&self, update: u64) -> usize {
        self.cd_schedule.iter().rev().find(|s| s.from <= update).map(|s| s.k).unwrap_or(1)
    }
    /// The largest K in the schedule.
    pub fn max_k(&self) -> usize {
        self.cd_schedule.iter().map(|s| s.k).max().unwrap_or(1)
    }
}

impl Config {
    /// Parses YAML text; `origin` (a file name) is used in error messages.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config> {
        let cfg: Config = serde_yaml::from_str(text).map_err(|e| {
            let at = e.location().map(|l| format!(" (line {}, column {})", l.line(), l.column())).unwrap_or_default();
            Error::format(origin, format!("invalid config{at}: {e}"))
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Reads and validates a YAML config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::from_yaml(&text, &path.display().to_string())
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Checks every value; errors name the field (e.g. `train.lr`).
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(Error::config(origin, field, msg));
        if self.data.path.trim().is_empty() {
            return bad("data.path", "must name a dataset file or `jsb`");
        }
        self.model.validate().map_err(|e| match e {
            Error::Config { field, msg, .. } => Error::config(origin, format!("model.{field}"), msg),
            other => other,
        })?;
        if !self.model.gaussian && self.model.visible != crate::data::KEYS {
            return bad("model.visible", "binary piano-roll models have 88 visible units");
        }
        if !(self.init.weight_std.is_finite() && self.init.weight_std >= 0.0) {
            return bad("init.weight_std", "must be a finite number >= 0");
        }
        let t = &self.train;
        if t.chunk_frames == 0 {
            return bad("train.chunk_frames", "must be at least 1");
        }
        if t.batch == 0 {
            return bad("train.batch", "must be at least 1");
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("train.lr", "must be a finite number > 0");
        }
        if !(t.momentum.is_finite() && (0.0..1.0).contains(&t.momentum)) {
            return bad("train.momentum", "must be in [0, 1)");
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad("train.weight_decay", "must be a finite number >= 0");
        }
        if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
            return bad("train.grad_clip", "must be a finite number >= 0 (0 = off)");
        }
        if t.cd_schedule.is_empty() || t.cd_schedule[0].from != 0 {
            return bad("train.cd_schedule", "must be a non-empty list whose first entry has `from: 0`");
        }
        if t.cd_schedule.windows(2).any(|w| w[1].from <= w[0].from) {
            return bad("train.cd_schedule", "`from` values must increase");
        }
        if t.cd_schedule.iter().any(|s| s.k == 0 || s.k > 10_000) {
            return bad("train.cd_schedule", "every `k` must be in 1..=10000");
        }
        if t.epochs == 0 {
            return bad("train.epochs", "must be at least 1");
        }
        if t.log_every == 0 {
            return bad("train.log_every", "must be at least 1");
        }
        if t.valid_every == 0 {
            return bad("train.valid_every", "must be at least 1");
        }
        if t.valid_metric == ValidMetric::AisLl && (t.valid_ais_betas < 2 || t.valid_ais_runs == 0) {
            return bad("train.valid_ais_betas", "AIS validation needs at least 2 betas and 1 run");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_paper_settings() {
        let c = Config::default();
        c.validate("default").unwrap();
        assert_eq!(c.model.kind, ModelKind::LstmRtrbm);
        assert_eq!((c.model.hidden, c.model.recurrent), (88, 88));
        assert_eq!((c.train.lr, c.train.momentum), (0.01, 0.9));
        assert_eq!((c.train.cd_k(0), c.train.cd_k(999), c.train.cd_k(1000)), (10, 10, 25));
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let e = Config::from_yaml("train:\n  lr: 0.01\n  lrr: 3\n", "x.yaml").unwrap_err().to_string();
        assert!(e.contains("x.yaml") && e.contains("lrr"), "{e}");
        let e = Config::from_yaml("train:\n  lr: -1\n", "x.yaml").unwrap_err().to_string();
        assert!(e.contains("train.lr"), "{e}");
        let e = Config::from_yaml("model:\n  kind: lstm_rtrbm\n  visible: 88\n  hidden: 0\n  recurrent: 8\n  gaussian: false\n  learned_init: false\n  peepholes: false\n", "y.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.hidden"), "{e}");
        let e = Config::from_yaml("train: [1, 2", "z.yaml").unwrap_err().to_string();
        assert!(e.contains("z.yaml"), "{e}");
    }
}
