//! `rtrbm data ...`: dataset statistics, format conversion, MIDI import and viewing one sequence.
//!
//! Every command that reads a dataset accepts a `.json`, `.pkl`/`.pickle` or `.mat` file, or the
//! literal `jsb` for the JSB Chorales copy embedded in the binary.

use crate::data::{self, json, split, stats, Dataset, Sequence, Split};
use crate::midi::{self, Grid, ImportOptions};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum DataCmd {
    /// Print the statistics table (as in the data README) of a dataset: all three splits.
    Stats {
        /// Dataset file (.json, .pkl, .pickle or .mat), or `jsb` for the embedded JSB Chorales.
        file: String,
        /// Print the statistics as JSON instead of a Markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Import a MIDI file or a folder of MIDI files into a JSON piano-roll dataset.
    ImportMidi {
        /// A `.mid` file or a folder of them.
        path: PathBuf,
        /// Output JSON dataset file.
        #[arg(long)]
        out: PathBuf,
        /// Frame length of the piano roll grid.
        #[arg(long, value_enum, default_value = "quarter")]
        grid: Grid,
        /// Keep drum tracks (MIDI channel 10), which are dropped by default.
        #[arg(long)]
        drums: bool,
        /// Transpose each piece to C major / C minor.
        #[arg(long)]
        transpose_to_c: bool,
        /// Split the pieces into train / valid / test: `VALID_FRAC,TEST_FRAC`, e.g. `0.1,0.1`
        /// (without it every piece goes to train).
        #[arg(long, value_name = "VALID_FRAC,TEST_FRAC", value_parser = parse_fracs)]
        split: Option<(f64, f64)>,
        /// Seed of the deterministic split.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Convert a dataset to JSON (the output format follows the extension; only .json is written).
    Convert {
        /// Input dataset (.json, .pkl, .pickle or .mat), or `jsb` for the embedded JSB Chorales.
        input: String,
        /// Output file; must end in .json.
        output: PathBuf,
    },
    /// Show one sequence: its size, and optionally a piano-roll picture and a MIDI file.
    Show {
        /// Dataset file (.json, .pkl, .pickle or .mat), or `jsb` for the embedded JSB Chorales.
        file: String,
        /// Which split the sequence is in.
        #[arg(long, value_enum)]
        split: Split,
        /// Index of the sequence within the split (from 0).
        #[arg(long)]
        index: usize,
        /// Write a piano-roll picture of the sequence to this PNG file.
        #[arg(long, value_name = "OUT.png")]
        png: Option<PathBuf>,
        /// Write the sequence as a MIDI file (one beat per frame, 100 bpm).
        #[arg(long, value_name = "OUT.mid")]
        midi: Option<PathBuf>,
    },
}

/// Parses `VALID_FRAC,TEST_FRAC`: two fractions in [0, 1] whose sum is below 1.
fn parse_fracs(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s.split_once(',').ok_or_else(|| format!("expected VALID_FRAC,TEST_FRAC, got {s:?}"))?;
    let parse = |x: &str| -> Result<f64, String> {
        let v: f64 = x.trim().parse().map_err(|_| format!("{x:?} is not a number"))?;
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("fraction {v} outside 0..1"));
        }
        Ok(v)
    };
    let (v, t) = (parse(a)?, parse(b)?);
    if v + t >= 1.0 {
        return Err(format!("valid + test fractions ({}) must be below 1", v + t));
    }
    Ok((v, t))
}

fn display_name(file: &str) -> String {
    if file == "jsb" {
        return "jsb (embedded)".to_string();
    }
    Path::new(file).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.to_string())
}

fn summary(ds: &Dataset) -> String {
    Split::ALL
        .iter()
        .map(|&s| {
            let st = stats::Stats::of(ds, s);
            format!("{} {} seqs / {} frames", s.name(), stats::thousands(st.seqs), stats::thousands(st.frames))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_json_out(path: &Path) -> anyhow::Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "json" {
        bail!("{}: only JSON output is supported (the file name must end in .json)", path.display());
    }
    Ok(())
}

pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Stats { file, json } => {
            let ds = data::open(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats::Stats::all(&ds))?);
            } else {
                println!("{}", stats::table(&display_name(&file), &ds));
            }
        }
        DataCmd::ImportMidi { path, out, grid, drums, transpose_to_c, split, seed } => {
            check_json_out(&out)?;
            let opts = ImportOptions { grid, include_drums: drums, transpose_to_c };
            let mut ds = midi::import_path(&path, &opts)?;
            if let Some((v, t)) = split {
                let mut all: Vec<Sequence> = Vec::new();
                for s in Split::ALL {
                    all.append(ds.split_mut(s));
                }
                ds = split::split_sequences(all, v, t, seed);
            }
            json::write(&out, &ds)?;
            println!("imported {} -> {}: {}", path.display(), out.display(), summary(&ds));
        }
        DataCmd::Convert { input, output } => {
            check_json_out(&output)?;
            let ds = data::open(&input)?;
            json::write(&output, &ds)?;
            println!("converted {} -> {}: {}", display_name(&input), output.display(), summary(&ds));
        }
        DataCmd::Show { file, split, index, png, midi: midi_out } => {
            let ds = data::open(&file)?;
            let seqs = ds.split(split);
            let seq = seqs.get(index).with_context(|| {
                format!(
                    "{}: split {} has {} sequences, no index {index}",
                    display_name(&file),
                    split.name(),
                    seqs.len()
                )
            })?;
            let notes: usize = seq.frames.iter().map(Vec::len).sum();
            println!(
                "{} {} #{index}: {} frames, {} notes, {} empty frames",
                display_name(&file),
                split.name(),
                seq.len(),
                notes,
                seq.frames.iter().filter(|f| f.is_empty()).count()
            );
            if let Some(p) = png {
                let title = format!("{} {} #{index}", display_name(&file), split.name());
                crate::plot::piano_roll_png(&p, seq, &title)?;
                println!("wrote {}", p.display());
            }
            if let Some(p) = midi_out {
                midi::write_midi(&p, seq, 1.0, 100.0)?;
                println!("wrote {}", p.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions() {
        assert_eq!(parse_fracs("0.1,0.2"), Ok((0.1, 0.2)));
        assert!(parse_fracs("0.1").is_err());
        assert!(parse_fracs("0.6,0.5").is_err());
        assert!(parse_fracs("-0.1,0.2").is_err());
    }
}
