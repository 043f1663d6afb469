//! Training sweeps: many runs of one configuration with some fields varied.
//!
//! A sweep file (YAML, unknown fields rejected) names a base config and the fields to vary:
//!
//! ```yaml
//! name: lr-hidden
//! out: sweeps/lr-hidden          # the sweep folder (relative to this file)
//! base: ../configs/tiny.yaml      # relative to this file; optional
//! config:                         # inline overrides of the base, as a partial config; optional
//!   train: {max_updates: 200}
//! grid:                           # every combination, fields in sorted order
//!   train.lr: [0.003, 0.01, 0.03]
//!   model.hidden: [32, 64]
//! random:                         # `count` draws, crossed with every grid point; optional
//!   count: 4
//!   seed: 7
//!   fields:
//!     train.momentum: {uniform: [0.5, 0.95]}
//!     train.weight_decay: {log_uniform: [1.0e-6, 1.0e-3]}
//!     model.recurrent: {choice: [8, 16]}
//! ```
//!
//! Expansion ([`Sweep::load`]) is deterministic: the grid's points in sorted-field order (the last
//! field varies fastest), each crossed with the random draws (drawn once, in order, by
//! [`HostRng`]`(seed, 0x5EE9)`). Every run gets a stable name such as `r0007-lr0.01-hidden64` and a
//! fully resolved, validated [`Config`]: overrides are applied to the YAML value of the base, then
//! deserialised and checked, so a bad value is reported with the sweep file, the run and the
//! dotted field. [`queue`] runs them (threads, GPUs or Slurm array tasks sharing one folder) and
//! [`report`] collects their figures.

pub mod queue;
pub mod report;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::rng::HostRng;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The sweep file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// A name for reports and Slurm jobs (default: the file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// The sweep folder, relative to the sweep file (default: `sweeps/<name>` next to it).
    #[serde(default)]
    pub out: Option<String>,
    /// A config file, relative to the sweep file (default: the built-in defaults).
    #[serde(default)]
    pub base: Option<String>,
    /// Inline overrides of the base, as a partial config.
    #[serde(default)]
    pub config: Option<Value>,
    /// Dotted field -> the list of values to try.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<Value>>,
    /// Random search, crossed with the grid.
    #[serde(default)]
    pub random: Option<RandomSpec>,
}

/// `random:` — `count` draws of the listed fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSpec {
    pub count: usize,
    #[serde(default)]
    pub seed: u64,
    pub fields: BTreeMap<String, Dist>,
}

/// How one field of a random search is drawn.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "DistRepr")]
pub enum Dist {
    /// Uniform on `[lo, hi]`.
    Uniform([f64; 2]),
    /// `exp` of a uniform on `[ln lo, ln hi]` (`0 < lo <= hi`).
    LogUniform([f64; 2]),
    /// An integer uniform on `lo..=hi`.
    IntUniform([i64; 2]),
    /// One of the listed values, each equally likely.
    Choice(Vec<Value>),
}

/// The written form of a [`Dist`]: a mapping with exactly one of these keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistRepr {
    uniform: Option<[f64; 2]>,
    log_uniform: Option<[f64; 2]>,
    int_uniform: Option<[i64; 2]>,
    choice: Option<Vec<Value>>,
}

impl TryFrom<DistRepr> for Dist {
    type Error = String;
    fn try_from(r: DistRepr) -> std::result::Result<Dist, String> {
        let all = [
            r.uniform.map(Dist::Uniform),
            r.log_uniform.map(Dist::LogUniform),
            r.int_uniform.map(Dist::IntUniform),
            r.choice.map(Dist::Choice),
        ];
        let mut set = all.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(d), None) => Ok(d),
            _ => Err("give exactly one of uniform: [lo, hi], log_uniform: [lo, hi], int_uniform: [lo, hi], \
                      choice: [values]"
                .into()),
        }
    }
}

/// One run of a sweep.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Position in the sweep (0-based).
    pub index: usize,
    /// Stable folder name, e.g. `r0007-lr0.01-hidden64`.
    pub name: String,
    /// The swept fields and their values for this run (grid fields, then random fields).
    pub params: Vec<(String, Value)>,
    /// The resolved, validated configuration.
    pub config: Config,
}

/// A loaded and expanded sweep.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The sweep file (absolute).
    pub file: PathBuf,
    pub name: String,
    /// The sweep folder (absolute).
    pub out: PathBuf,
    /// The swept fields, in column order (grid fields sorted, then random fields sorted).
    pub fields: Vec<String>,
    pub runs: Vec<RunSpec>,
}

/// Salt of the random-search stream of [`HostRng`].
const RANDOM_STREAM: u32 = 0x5EE9;
/// At most this many runs in one sweep (a typo in a grid should not create a million folders).
pub const MAX_RUNS: usize = 100_000;

impl Sweep {
    /// Reads, expands and validates a sweep file.
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file = absolute(path)?;
        Sweep::from_yaml(&text, &file)
    }

    /// Expands the sweep file text `text`, read from `file` (used for relative paths and errors).
    pub fn from_yaml(text: &str, file: &Path) -> Result<Sweep> {
        let origin = file.display().to_string();
        let spec: SweepFile = serde_yaml::from_str(text).map_err(|e| {
            let at = e.location().map(|l| format!(" (line {}, column {})", l.line(), l.column())).unwrap_or_default();
            Error::format(file, format!("invalid sweep file{at}: {e}"))
        })?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or("sweep".into()));
        if name.trim().is_empty() {
            return Err(Error::config(&origin, "name", "must not be empty"));
        }
        let out = match &spec.out {
            Some(o) if o.trim().is_empty() => return Err(Error::config(&origin, "out", "must not be empty")),
            Some(o) => dir.join(o),
            None => dir.join("sweeps").join(sanitize(&name)),
        };
        // the base config as a YAML value, with the inline overrides merged in
        let mut base = match &spec.base {
            Some(b) => {
                let p = dir.join(b);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Error::config(&origin, "base", format!("cannot read {}: {e}", p.display())))?;
                // parse it as a Config first so that its own errors name the base file
                Config::from_yaml(&text, &p.display().to_string())?;
                serde_yaml::from_str::<Value>(&text).map_err(|e| Error::format(&p, e.to_string()))?
            }
            None => Value::Mapping(Default::default()),
        };
        if base.is_null() {
            base = Value::Mapping(Default::default());
        }
        if let Some(over) = &spec.config {
            let mut leaves = vec![];
            collect_leaves(over, "", &mut leaves);
            for (field, value) in leaves {
                check_field(&field).map_err(|m| Error::config(&origin, format!("config.{field}"), m))?;
                set_path(&mut base, &field, value).map_err(|m| Error::config(&origin, format!("config.{field}"), m))?;
            }
        }
        // grid points
        let mut axes: Vec<(String, Vec<Value>)> = vec![];
        for (field, values) in &spec.grid {
            check_field(field).map_err(|m| Error::config(&origin, format!("grid.{field}"), m))?;
            if values.is_empty() {
                return Err(Error::config(&origin, format!("grid.{field}"), "needs at least one value"));
            }
            axes.push((field.clone(), values.clone()));
        }
        let mut points: Vec<Vec<(String, Value, usize)>> = vec![vec![]];
        for (field, values) in &axes {
            let mut next = Vec::with_capacity(points.len() * values.len());
            for p in &points {
                for (i, v) in values.iter().enumerate() {
                    let mut q = p.clone();
                    q.push((field.clone(), v.clone(), i));
                    next.push(q);
                }
            }
            if next.len() > MAX_RUNS {
                return Err(Error::config(&origin, "grid", format!("expands to more than {MAX_RUNS} runs")));
            }
            points = next;
        }
        // random draws
        let mut draws: Vec<Vec<(String, Value, usize)>> = vec![vec![]];
        let mut fields: Vec<String> = axes.iter().map(|a| a.0.clone()).collect();
        if let Some(r) = &spec.random {
            if r.count == 0 {
                return Err(Error::config(&origin, "random.count", "must be at least 1"));
            }
            for (field, dist) in &r.fields {
                check_field(field).map_err(|m| Error::config(&origin, format!("random.fields.{field}"), m))?;
                if spec.grid.contains_key(field) {
                    return Err(Error::config(&origin, format!("random.fields.{field}"), "is also a grid field"));
                }
                check_dist(dist).map_err(|m| Error::config(&origin, format!("random.fields.{field}"), m))?;
                fields.push(field.clone());
            }
            if r.count.saturating_mul(points.len()) > MAX_RUNS {
                return Err(Error::config(
                    &origin,
                    "random.count",
                    format!("the sweep would have more than {MAX_RUNS} runs"),
                ));
            }
            let mut rng = HostRng::new(r.seed, RANDOM_STREAM);
            draws = (0..r.count)
                .map(|_| r.fields.iter().map(|(f, d)| (f.clone(), draw(d, &mut rng), usize::MAX)).collect())
                .collect();
        }
        let mut runs = vec![];
        for p in &points {
            for d in &draws {
                let index = runs.len();
                let all: Vec<(String, Value, usize)> = p.iter().chain(d.iter()).cloned().collect();
                let mut value = base.clone();
                for (field, v, _) in &all {
                    set_path(&mut value, field, v.clone()).map_err(|m| Error::config(&origin, field.clone(), m))?;
                }
                let mut name = format!("r{index:04}");
                for (field, v, i) in &all {
                    name.push('-');
                    name.push_str(&name_part(field, v, *i));
                }
                if name.len() > 96 {
                    name.truncate(96);
                }
                let run_origin = format!("{origin} (run {name})");
                let mut config = to_config(&value, &base, &all, &run_origin)?;
                resolve_data_path(&mut config, &dir);
                config.validate(&run_origin)?;
                runs.push(RunSpec { index, name, params: all.into_iter().map(|(f, v, _)| (f, v)).collect(), config });
            }
        }
        Ok(Sweep { file: file.to_path_buf(), name, out, fields, runs })
    }

    /// The folder of run `run`.
    pub fn run_dir(&self, run: &RunSpec) -> PathBuf {
        self.out.join("runs").join(&run.name)
    }

    /// The table `rtrbm sweep plan` prints: one row per run with its swept values.
    pub fn plan_table(&self) -> String {
        let mut header = vec!["#".to_string(), "run".to_string()];
        header.extend(self.fields.iter().cloned());
        let rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|r| {
                let mut row = vec![r.index.to_string(), r.name.clone()];
                row.extend(r.params.iter().map(|(_, v)| value_str(v)));
                row
            })
            .collect();
        report::markdown_table(&header, &rows)
    }
}

/// Makes `path` absolute (from the current directory) without requiring it to exist.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    Ok(cwd.join(path))
}

/// A relative `data.path` becomes absolute, so every worker (any current directory, any Slurm
/// node) reads the same file: from the current directory when it exists there, else from the
/// sweep file's folder.
fn resolve_data_path(cfg: &mut Config, sweep_dir: &Path) {
    let p = Path::new(&cfg.data.path);
    if cfg.data.path == "jsb" || p.is_absolute() {
        return;
    }
    let from_cwd = std::env::current_dir().map(|d| d.join(p)).ok();
    let chosen = match from_cwd {
        Some(c) if c.exists() => c,
        _ => sweep_dir.join(p),
    };
    cfg.data.path = chosen.display().to_string();
}

/// Deserialises the resolved value; when that fails, finds the override responsible so the error
/// names its dotted field.
fn to_config(value: &Value, base: &Value, overrides: &[(String, Value, usize)], origin: &str) -> Result<Config> {
    match serde_yaml::from_value::<Config>(value.clone()) {
        Ok(c) => Ok(c),
        Err(e) => {
            for (field, v, _) in overrides {
                let mut one = base.clone();
                if set_path(&mut one, field, v.clone()).is_ok() {
                    if let Err(e1) = serde_yaml::from_value::<Config>(one) {
                        return Err(Error::config(origin, field.clone(), format!("bad value {}: {e1}", value_str(v))));
                    }
                }
            }
            Err(Error::config(origin, "config", e.to_string()))
        }
    }
}

/// Checks that a dotted field names a field of [`Config`] (a list-valued field such as
/// `train.cd_schedule` is a leaf).
pub fn check_field(field: &str) -> std::result::Result<(), String> {
    let defaults = serde_yaml::to_value(Config::default()).map_err(|e| e.to_string())?;
    let mut node = &defaults;
    let mut walked = vec![];
    for part in field.split('.') {
        let Value::Mapping(m) = node else {
            return Err(format!("`{}` has no sub-fields", walked.join(".")));
        };
        match m.get(Value::String(part.to_string())) {
            Some(n) => node = n,
            None => {
                let known: Vec<String> = m.keys().filter_map(|k| k.as_str().map(String::from)).collect();
                let at = if walked.is_empty() { "a config".to_string() } else { format!("`{}`", walked.join(".")) };
                return Err(format!("unknown config field: {at} has no `{part}` (known: {})", known.join(", ")));
            }
        }
        walked.push(part);
    }
    if matches!(node, Value::Mapping(_)) {
        return Err("names a section, not a field: give a field such as `train.lr`".into());
    }
    Ok(())
}

/// Sets the dotted `field` of a YAML mapping, creating intermediate mappings.
fn set_path(root: &mut Value, field: &str, value: Value) -> std::result::Result<(), String> {
    let parts: Vec<&str> = field.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("empty component in a dotted field name".into());
    }
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Default::default());
        }
        let Value::Mapping(m) = node else {
            return Err(format!("`{}` in the base config is not a mapping", parts[..i].join(".")));
        };
        let key = Value::String(part.to_string());
        if i + 1 == parts.len() {
            m.insert(key, value);
            return Ok(());
        }
        node = m.entry(key).or_insert(Value::Null);
    }
    Ok(())
}

/// The leaves of a partial config as dotted fields (lists are leaves).
fn collect_leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, x) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => value_str(other),
                };
                let p = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                collect_leaves(x, &p, out);
            }
        }
        _ if prefix.is_empty() => {}
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn check_dist(d: &Dist) -> std::result::Result<(), String> {
    match d {
        Dist::Uniform([lo, hi]) if !(lo.is_finite() && hi.is_finite() && lo <= hi) => {
            Err(format!("uniform needs finite lo <= hi, got [{lo}, {hi}]"))
        }
        Dist::LogUniform([lo, hi]) if !(lo.is_finite() && hi.is_finite() && *lo > 0.0 && lo <= hi) => {
            Err(format!("log_uniform needs 0 < lo <= hi, got [{lo}, {hi}]"))
        }
        Dist::IntUniform([lo, hi]) if lo > hi => Err(format!("int_uniform needs lo <= hi, got [{lo}, {hi}]")),
        Dist::Choice(v) if v.is_empty() => Err("choice needs at least one value".into()),
        _ => Ok(()),
    }
}

fn draw(d: &Dist, rng: &mut HostRng) -> Value {
    match d {
        Dist::Uniform([lo, hi]) => Value::from(lo + (hi - lo) * rng.next_f64()),
        Dist::LogUniform([lo, hi]) => Value::from((lo.ln() + (hi.ln() - lo.ln()) * rng.next_f64()).exp()),
        Dist::IntUniform([lo, hi]) => {
            let n = (hi - lo) as u64 + 1;
            Value::from(lo + (rng.next_u64() % n) as i64)
        }
        Dist::Choice(v) => v[rng.below(v.len())].clone(),
    }
}

/// A compact text form of a YAML value (for names and tables).
pub fn value_str(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => short_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other)
            .unwrap_or_else(|_| serde_yaml::to_string(other).unwrap_or_default().trim().replace('\n', " ")),
    }
}

/// Up to 4 significant digits, no trailing zeros (plain between 1e-3 and 1e5, else `1.5e-6`).
fn short_float(f: f64) -> String {
    let plain = format!("{f}");
    if plain.len() <= 7 || !f.is_finite() || f == 0.0 {
        return plain;
    }
    let trim = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    let mag = f.abs().log10().floor() as i32;
    if (-3..5).contains(&mag) {
        let prec = (3 - mag).max(0) as usize;
        return trim(format!("{f:.prec$}"));
    }
    let s = format!("{f:.3e}");
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", trim(m.to_string())),
        None => s,
    }
}

/// `field=value` in a run name: the last component of the field, then the value; values that
/// are not scalars (a CD schedule) are named by their position in the grid's list.
fn name_part(field: &str, v: &Value, i: usize) -> String {
    let short = field.rsplit('.').next().unwrap_or(field);
    let val = match v {
        Value::Sequence(_) | Value::Mapping(_) if i != usize::MAX => i.to_string(),
        Value::String(s) if field == "data.path" => {
            Path::new(s).file_stem().map(|x| x.to_string_lossy().into_owned()).unwrap_or_else(|| s.clone())
        }
        _ => value_str(v),
    };
    sanitize(&format!("{short}{val}"))
}

/// Keeps ASCII letters, digits, `.`, `_` and `-` (others become `_`).
pub fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}
