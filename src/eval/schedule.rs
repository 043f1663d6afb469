//! Inverse-temperature (beta) schedules for annealed importance sampling (SPEC 4.1).
//!
//! A schedule is the list of betas `0 = beta_0 < ... <= beta_K = 1`. **Convention:** the *count*
//! of a schedule is K, the number of intervals (= the number of importance-weight increments and
//! of betas after 0); the list holds K + 1 points. The default Salakhutdinov-Murray schedule
//! (step 1e-3 on [0, 0.5], 1e-4 on [0.5, 0.9], 1e-5 on [0.9, 1]) has 500 + 4,000 + 10,000 =
//! 14,500 intervals, i.e. 14,501 points with no repeated beta (their MATLAB code concatenates
//! the three ranges and so repeats 0.5 and 0.9; a repeated beta adds nothing to the weight).
//!
//! Sources of a schedule ([`Schedule::parse`]):
//! - `default` (or `sm`): the 14,500-interval schedule above;
//! - `linear:N`: N equal steps;
//! - `scaled:N`: the default's three segments scaled to N intervals in total, keeping the
//!   proportions 500 : 4,000 : 10,000 ([`Schedule::scaled`]; `scaled:14500` is the default);
//! - a piecewise spec `"0.5:1000,0.9:4000,1.0:10000"`: segments `end:steps` of equal steps,
//!   starting at 0 and ending at 1;
//! - `@FILE`: one beta per line (blank lines and `#` comments ignored).

use crate::error::{Error, Result};
use std::path::Path;

/// Interval counts of the three segments of the default schedule.
pub const DEFAULT_SEGMENTS: [(f64, usize); 3] = [(0.5, 500), (0.9, 4000), (1.0, 10000)];
/// Number of intervals of the default schedule.
pub const DEFAULT_COUNT: usize = 14_500;

/// A validated AIS schedule and a description of where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The betas, `betas[0] = 0`, last = 1, non-decreasing (K + 1 points).
    pub betas: Vec<f64>,
    /// How it was made, e.g. `salakhutdinov-murray`, `linear`, `piecewise 0.5:10,1:20`.
    pub kind: String,
}

/// What a report says about the schedule it used.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScheduleInfo {
    /// Number of intervals K (the points are K + 1, including beta = 0).
    pub count: usize,
    pub kind: String,
}

impl Schedule {
    /// Checks and wraps a list of betas.
    pub fn from_betas(betas: Vec<f64>, kind: impl Into<String>) -> Result<Self> {
        let kind = kind.into();
        let bad = |m: String| Err(Error::msg(format!("AIS schedule ({kind}): {m}")));
        if betas.len() < 2 {
            return bad(format!("needs at least 2 betas (0 and 1), got {}", betas.len()));
        }
        if let Some(i) = betas.iter().position(|b| !b.is_finite()) {
            return bad(format!("beta #{i} is not a finite number"));
        }
        if betas[0] != 0.0 {
            return bad(format!("must start at beta = 0, starts at {}", betas[0]));
        }
        let last = betas[betas.len() - 1];
        if last != 1.0 {
            return bad(format!("must end at beta = 1, ends at {last}"));
        }
        if let Some(i) = betas.windows(2).position(|w| w[1] < w[0]) {
            return bad(format!(
                "must be non-decreasing: beta #{} = {} > beta #{} = {}",
                i,
                betas[i],
                i + 1,
                betas[i + 1]
            ));
        }
        Ok(Self { betas, kind })
    }

    /// The Salakhutdinov-Murray schedule: 14,500 intervals (14,501 points).
    pub fn default_sm() -> Self {
        let mut s = Self::segments(&DEFAULT_SEGMENTS).expect("the default schedule is valid");
        s.kind = "salakhutdinov-murray".into();
        s
    }

    /// `n` equal steps from 0 to 1.
    pub fn linear(n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::msg("AIS schedule: linear needs at least 1 step"));
        }
        let mut betas: Vec<f64> = (0..=n).map(|k| k as f64 / n as f64).collect();
        betas[n] = 1.0;
        Self::from_betas(betas, "linear")
    }

    /// The default schedule's three segments scaled to `n` intervals in total (proportions
    /// 500 : 4,000 : 10,000, each segment at least 1 step); `scaled(14500)` is the default.
    pub fn scaled(n: usize) -> Result<Self> {
        if n < 3 {
            return Err(Error::msg(format!("AIS schedule: a scaled schedule needs at least 3 intervals, got {n}")));
        }
        let total = DEFAULT_COUNT as f64;
        let n1 = ((n as f64 * 500.0 / total).round() as usize).max(1);
        let n2 = ((n as f64 * 4000.0 / total).round() as usize).max(1);
        let n3 = n.saturating_sub(n1 + n2).max(1);
        let (n1, n2) = if n1 + n2 + n3 > n { (n1, n - n1 - n3) } else { (n1, n2) };
        let mut s = Self::segments(&[(0.5, n1), (0.9, n2), (1.0, n3)])?;
        s.kind = if n == DEFAULT_COUNT { "salakhutdinov-murray".into() } else { "salakhutdinov-murray scaled".into() };
        Ok(s)
    }

    /// Consecutive segments `(end, steps)` of equal steps starting at beta = 0.
    pub fn segments(segs: &[(f64, usize)]) -> Result<Self> {
        let desc = segs.iter().map(|(e, n)| format!("{e}:{n}")).collect::<Vec<_>>().join(",");
        let mut betas = vec![0.0];
        let mut start = 0.0f64;
        for &(end, steps) in segs {
            if !(end.is_finite() && end > start && end <= 1.0) {
                return Err(Error::msg(format!("AIS schedule `{desc}`: segment end {end} must be in ({start}, 1]")));
            }
            if steps == 0 {
                return Err(Error::msg(format!("AIS schedule `{desc}`: segment ending at {end} has 0 steps")));
            }
            for k in 1..=steps {
                betas.push(if k == steps { end } else { start + (end - start) * k as f64 / steps as f64 });
            }
            start = end;
        }
        Self::from_betas(betas, format!("piecewise {desc}"))
    }

    /// Parses a piecewise spec such as `"0.5:1000,0.9:4000,1.0:10000"`.
    pub fn piecewise(spec: &str) -> Result<Self> {
        let mut segs = vec![];
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (end, steps) = part
                .split_once(':')
                .ok_or_else(|| Error::msg(format!("AIS schedule `{spec}`: segment `{part}` is not `end:steps`")))?;
            let end: f64 = end
                .trim()
                .parse()
                .map_err(|_| Error::msg(format!("AIS schedule `{spec}`: `{end}` is not a number")))?;
            let steps: usize = steps
                .trim()
                .parse()
                .map_err(|_| Error::msg(format!("AIS schedule `{spec}`: `{steps}` is not a step count")))?;
            segs.push((end, steps));
        }
        if segs.is_empty() {
            return Err(Error::msg(format!("AIS schedule `{spec}`: no segments")));
        }
        Self::segments(&segs)
    }

    /// Reads one beta per line (blank lines and lines starting with `#` are skipped).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut betas = vec![];
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let b: f64 =
                line.parse().map_err(|_| Error::format(path, format!("line {}: `{line}` is not a number", i + 1)))?;
            betas.push(b);
        }
        Self::from_betas(betas, format!("file {}", path.display())).map_err(|e| Error::format(path, e.to_string()))
    }

    /// Parses a command-line schedule: `default`, `linear:N`, `scaled:N`, `@FILE` or a piecewise
    /// spec (see the module comment).
    pub fn parse(arg: &str) -> Result<Self> {
        let arg = arg.trim();
        let count = |s: &str| -> Result<usize> {
            s.trim().parse().map_err(|_| Error::msg(format!("AIS schedule `{arg}`: `{s}` is not a count")))
        };
        if arg == "default" || arg == "sm" {
            Ok(Self::default_sm())
        } else if let Some(n) = arg.strip_prefix("linear:") {
            Self::linear(count(n)?)
        } else if let Some(n) = arg.strip_prefix("scaled:") {
            Self::scaled(count(n)?)
        } else if let Some(path) = arg.strip_prefix('@') {
            Self::from_file(Path::new(path))
        } else {
            Self::piecewise(arg)
        }
    }

    /// Number of intervals K.
    pub fn count(&self) -> usize {
        self.betas.len() - 1
    }

    pub fn info(&self) -> ScheduleInfo {
        ScheduleInfo { count: self.count(), kind: self.kind.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_14500_intervals() {
        let s = Schedule::default_sm();
        assert_eq!(s.count(), 14_500);
        assert_eq!(s.betas.len(), 14_501);
        assert!((s.betas[500] - 0.5).abs() < 1e-15 && (s.betas[4500] - 0.9).abs() < 1e-15);
        assert!((s.betas[1] - 1e-3).abs() < 1e-15 && (s.betas[14_500] - s.betas[14_499] - 1e-5).abs() < 1e-12);
        assert_eq!(Schedule::scaled(14_500).unwrap().betas, s.betas);
        assert_eq!(Schedule::piecewise("0.5:500,0.9:4000,1.0:10000").unwrap().betas, s.betas);
    }

    #[test]
    fn scaled_keeps_count_and_proportions() {
        for n in [3, 10, 100, 1000, 2900, 50_000] {
            let s = Schedule::scaled(n).unwrap();
            assert_eq!(s.count(), n, "n = {n}");
        }
        let s = Schedule::scaled(2900).unwrap();
        assert_eq!(s.betas[100], 0.5);
        assert_eq!(s.betas[900], 0.9);
    }

    #[test]
    fn rejects_bad_schedules() {
        assert!(Schedule::from_betas(vec![0.0, 0.6, 0.5, 1.0], "x").is_err());
        assert!(Schedule::from_betas(vec![0.1, 1.0], "x").is_err());
        assert!(Schedule::from_betas(vec![0.0, 0.9], "x").is_err());
        assert!(Schedule::piecewise("0.5:10,0.4:10,1:10").is_err());
        assert!(Schedule::piecewise("0.5:10").is_err());
        assert!(Schedule::piecewise("0.5:x,1:3").is_err());
        assert!(Schedule::parse("linear:0").is_err());
        assert!(Schedule::parse("@/nonexistent/betas.txt").is_err());
        assert_eq!(Schedule::parse("linear:4").unwrap().betas, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }
}
