//! Per-split dataset statistics, and the Markdown table that `shared/data/README.md` shows.
//!
//! Mean polyphony is the mean number of notes per frame over all frames of the split, empty
//! frames included (this is the definition that reproduces the README table). Pitch range is the
//! lowest and highest pitch over all frames; a split without any note has no range.

use super::{Dataset, Split};

/// Statistics of one split.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    pub split: Split,
    /// Number of sequences.
    pub seqs: usize,
    /// Number of frames over all sequences.
    pub frames: usize,
    /// Mean sequence length in frames (0 without sequences).
    pub mean_len: f64,
    /// Longest sequence in frames.
    pub max_len: usize,
    /// Lowest and highest pitch over all frames (`None` without any note).
    pub pitch_range: Option<(u8, u8)>,
    /// Most notes in one frame.
    pub max_poly: usize,
    /// Mean notes per frame over all frames, empty ones included (0 without frames).
    pub mean_poly: f64,
    /// Frames without any note.
    pub empty_frames: usize,
}

impl Stats {
    /// Computes the statistics of one split of `ds`.
    pub fn of(ds: &Dataset, split: Split) -> Stats {
        let seqs = ds.split(split);
        let mut frames = 0usize;
        let mut notes = 0usize;
        let mut max_len = 0usize;
        let mut max_poly = 0usize;
        let mut empty = 0usize;
        let mut range: Option<(u8, u8)> = None;
        for s in seqs {
            frames += s.len();
            max_len = max_len.max(s.len());
            for f in &s.frames {
                notes += f.len();
                max_poly = max_poly.max(f.len());
                if f.is_empty() {
                    empty += 1;
                }
                for &p in f {
                    range = Some(match range {
                        None => (p, p),
                        Some((lo, hi)) => (lo.min(p), hi.max(p)),
                    });
                }
            }
        }
        Stats {
            split,
            seqs: seqs.len(),
            frames,
            mean_len: if seqs.is_empty() { 0.0 } else { frames as f64 / seqs.len() as f64 },
            max_len,
            pitch_range: range,
            max_poly,
            mean_poly: if frames == 0 { 0.0 } else { notes as f64 / frames as f64 },
            empty_frames: empty,
        }
    }

    /// The statistics of the three splits, in the order train, valid, test.
    pub fn all(ds: &Dataset) -> Vec<Stats> {
        Split::ALL.iter().map(|&s| Stats::of(ds, s)).collect()
    }

    /// The pitch range as the README writes it (`43-96`, or `-` without notes).
    pub fn range_text(&self) -> String {
        match self.pitch_range {
            Some((lo, hi)) => format!("{lo}-{hi}"),
            None => "-".to_string(),
        }
    }

    /// One Markdown table row; `file` is written in the first cell (empty after the first split).
    pub fn row(&self, file: &str) -> String {
        format!(
            "| {file} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            self.split.name(),
            thousands(self.seqs),
            thousands(self.frames),
            thousands_f1(self.mean_len),
            thousands(self.max_len),
            self.range_text(),
            self.max_poly,
            self.mean_poly,
            thousands(self.empty_frames),
        )
        .replace("|  |", "| |")
    }
}

/// The header and separator rows of the README table.
pub const TABLE_HEADER: &str = "| file | split | seqs | frames | mean len | max len | pitch range | max poly | mean poly | empty frames |\n|---|---|---|---|---|---|---|---|---|---|";

/// The README-style table rows of one dataset (no header): the file name on the first row only.
pub fn table_rows(file: &str, ds: &Dataset) -> String {
    Stats::all(ds).iter().enumerate().map(|(i, s)| s.row(if i == 0 { file } else { "" })).collect::<Vec<_>>().join("\n")
}

/// The complete README-style table (header and rows) of one dataset.
pub fn table(file: &str, ds: &Dataset) -> String {
    format!("{TABLE_HEADER}\n{}", table_rows(file, ds))
}

/// An integer with comma thousands separators: `245202` -> `245,202`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A non-negative number with one decimal and thousands separators: `1234.56` -> `1,234.6`.
fn thousands_f1(x: f64) -> String {
    let s = format!("{x:.1}");
    match s.split_once('.') {
        Some((int, frac)) if int.bytes().all(|b| b.is_ascii_digit()) => match int.parse::<usize>() {
            Ok(n) => format!("{}.{frac}", thousands(n)),
            Err(_) => s,
        },
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Sequence;

    #[test]
    fn separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(245202), "245,202");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands_f1(872.46), "872.5");
        assert_eq!(thousands_f1(1234.56), "1,234.6");
    }

    #[test]
    fn small_dataset_row() {
        let ds = Dataset {
            train: vec![Sequence { frames: vec![vec![60, 64], vec![], vec![48, 60, 67]] }],
            valid: vec![],
            test: vec![],
        };
        let s = Stats::of(&ds, Split::Train);
        assert_eq!((s.frames, s.max_len, s.max_poly, s.empty_frames), (3, 3, 3, 1));
        assert_eq!(s.row("x.json"), "| x.json | train | 1 | 3 | 3.0 | 3 | 48-67 | 3 | 1.67 | 1 |");
        assert_eq!(Stats::of(&ds, Split::Valid).row(""), "| | valid | 0 | 0 | 0.0 | 0 | - | 0 | 0.00 | 0 |");
    }
}
