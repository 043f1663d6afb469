//! The JSON dataset format: `{"train"|"valid"|"test": [sequence, ...]}`.
//!
//! A sequence is a list of frames and a frame is a strictly ascending list of integer MIDI
//! pitches in 21..=108, possibly empty. The reader is strict: a missing or unknown top-level key,
//! a non-integer, a pitch out of range, or an unsorted or duplicated pitch is an error that names
//! the file and the position (`split train, sequence 3, frame 17: ...`); nothing is repaired.
//! The writer is deterministic (keys in the order train, valid, test; one sequence per line) and
//! atomic.

use super::{Dataset, Sequence, Split, PITCH_MAX, PITCH_MIN};
use crate::error::{write_atomic, Error, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Reads a JSON dataset file.
pub fn read(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::format(path, format!("not valid UTF-8 text at byte {}: not a JSON dataset", e.valid_up_to()))
    })?;
    parse(text, path)
}

/// Parses the text of a JSON dataset; `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Dataset> {
    if text.trim().is_empty() {
        return Err(Error::format(path, "empty file: expected a JSON object with keys train, valid, test"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(Error::format(
            path,
            format!("expected a JSON object with keys train, valid, test at top level, found {}", kind(&value)),
        ));
    };
    if let Some(k) = map.keys().find(|k| !Split::ALL.iter().any(|s| s.name() == k.as_str())) {
        return Err(Error::format(path, format!("unknown top-level key {k:?} (expected only train, valid, test)")));
    }
    let mut ds = Dataset::default();
    for split in Split::ALL {
        let v = map
            .get(split.name())
            .ok_or_else(|| Error::format(path, format!("missing top-level key \"{}\"", split.name())))?;
        *ds.split_mut(split) = parse_split(v, split, path)?;
    }
    Ok(ds)
}

fn parse_split(v: &Value, split: Split, path: &Path) -> Result<Vec<Sequence>> {
    let name = split.name();
    let seqs = v
        .as_array()
        .ok_or_else(|| Error::format(path, format!("split {name}: expected a list of sequences, found {}", kind(v))))?;
    let mut out = Vec::with_capacity(seqs.len());
    for (si, s) in seqs.iter().enumerate() {
        let frames = s.as_array().ok_or_else(|| {
            Error::format(path, format!("split {name}, sequence {si}: expected a list of frames, found {}", kind(s)))
        })?;
        let mut seq = Sequence { frames: Vec::with_capacity(frames.len()) };
        for (fi, f) in frames.iter().enumerate() {
            let at = || format!("split {name}, sequence {si}, frame {fi}");
            let notes = f.as_array().ok_or_else(|| {
                Error::format(path, format!("{}: expected a list of pitches, found {}", at(), kind(f)))
            })?;
            let mut frame = Vec::with_capacity(notes.len());
            for n in notes {
                let p = match n.as_i64() {
                    Some(p) => p,
                    None => {
                        return Err(Error::format(path, format!("{}: pitch {n} is not an integer", at())));
                    }
                };
                frame.push(check_pitch(p, &frame).map_err(|msg| Error::format(path, format!("{}: {msg}", at())))?);
            }
            seq.frames.push(frame);
        }
        out.push(seq);
    }
    Ok(out)
}

/// Checks that `p` is a piano pitch and that it may follow `frame` (strictly ascending);
/// returns the message to prefix with the position otherwise. Shared by the readers.
pub(crate) fn check_pitch(p: i64, frame: &[u8]) -> std::result::Result<u8, String> {
    if p < PITCH_MIN as i64 || p > PITCH_MAX as i64 {
        return Err(format!("pitch {p} outside {PITCH_MIN}..{PITCH_MAX}"));
    }
    let p = p as u8;
    if let Some(&last) = frame.last() {
        if p == last {
            return Err(format!("duplicate pitch {p}"));
        }
        if p < last {
            return Err(format!("pitches not in ascending order ({last} before {p})"));
        }
    }
    Ok(p)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Renders a dataset as JSON text (keys train, valid, test; one sequence per line).
pub fn to_string(ds: &Dataset) -> String {
    let mut s = String::from("{");
    for (k, split) in Split::ALL.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        let _ = write!(s, "\n\"{}\": [", split.name());
        for (i, seq) in ds.split(*split).iter().enumerate() {
            s.push_str(if i == 0 { "\n  [" } else { ",\n  [" });
            for (j, frame) in seq.frames.iter().enumerate() {
                if j > 0 {
                    s.push_str(", ");
                }
                s.push('[');
                for (n, p) in frame.iter().enumerate() {
                    if n > 0 {
                        s.push_str(", ");
                    }
                    let _ = write!(s, "{p}");
                }
                s.push(']');
            }
            s.push(']');
        }
        s.push_str("\n]");
    }
    s.push_str("\n}\n");
    s
}

/// Writes a dataset as JSON, atomically (a temporary file renamed over `path`).
pub fn write(path: &Path, ds: &Dataset) -> Result<()> {
    write_atomic(path, to_string(ds).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.json")
    }

    #[test]
    fn parses_and_round_trips() {
        let text = r#"{"train": [[[60, 64], []]], "valid": [], "test": [[[21, 108]]]}"#;
        let ds = parse(text, p()).unwrap();
        assert_eq!(ds.train[0].frames, vec![vec![60, 64], vec![]]);
        assert_eq!(parse(&to_string(&ds), p()).unwrap(), ds);
    }

    #[test]
    fn rejects_bad_content() {
        let cases = [
            (r#"{"train": [[[12]]], "valid": [], "test": []}"#, "split train, sequence 0, frame 0: pitch 12 outside"),
            (r#"{"train": [[[64, 60]]], "valid": [], "test": []}"#, "ascending"),
            (r#"{"train": [[[60, 60]]], "valid": [], "test": []}"#, "duplicate pitch 60"),
            (r#"{"train": [[[60.5]]], "valid": [], "test": []}"#, "not an integer"),
            (r#"{"train": [[[60.0]]], "valid": [], "test": []}"#, "not an integer"),
            (r#"{"train": [], "valid": []}"#, "missing top-level key \"test\""),
            (r#"{"train": [], "valid": [], "test": [], "x": []}"#, "unknown top-level key"),
            ("", "empty file"),
            ("{", "invalid JSON"),
        ];
        for (text, want) in cases {
            let e = parse(text, p()).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("x.json"), "{text}: {e}");
        }
    }
}
