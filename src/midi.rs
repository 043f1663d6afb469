//! MIDI in and out: Standard MIDI Files <-> beat-synchronous piano rolls ([`Sequence`]).
//!
//! # Import ([`read_midi`], [`read_midi_report`], [`import_path`])
//!
//! - **Grid.** Frames are beat-synchronous and come from the file's ticks-per-beat (TPQ) division:
//!   [`Grid::Quarter`] is one frame per beat, [`Grid::Eighth`] two. Tempo changes do not move the
//!   grid (the grid is musical time, not seconds). A step may be a fractional number of ticks
//!   (e.g. TPQ 15 on the eighth grid); all arithmetic is exact integer arithmetic.
//! - **Grid rule (onset/offset rounding).** A note from tick `on` to tick `off` starts in frame
//!   `round(on / step)` and ends (exclusive) at frame `round(off / step)`, halves rounding up; it
//!   always occupies at least the frame of its (rounded) onset, so zero-length and very short
//!   notes are kept. A note that starts and ends exactly on frame boundaries therefore occupies
//!   exactly the frames it covers, which makes roll -> [`write_midi`] -> roll exactly lossless,
//!   and small timing jitter in performed files does not smear notes into neighbouring frames.
//! - **Length.** The roll has `max(last note end frame, round(last end-of-track tick / step))`
//!   frames, so trailing rests written by [`write_midi`] survive the round trip.
//! - **Note matching.** Note-on with velocity 0 is a note-off. Notes are matched per track,
//!   channel and pitch; a note-off closes the *earliest* open note (FIFO); a pitch sounds while
//!   any of its instances does (the roll is the union). Note-offs with no open note are counted
//!   and ignored; notes never released end at their track's end. Sustain pedal (CC 64) and all
//!   other controllers, program changes and pitch bends are ignored.
//! - **Drums.** Channel 10 (midly channel 9) is skipped unless `include_drums` is set.
//! - **Pitch range.** Notes outside 21..=108 are dropped and counted.
//! - **File types.** Type 0 and type 1: all tracks play together (a "type 0" file with several
//!   track chunks is read like type 1). Type 2: the tracks are independent sequential patterns;
//!   they are concatenated in time, each starting at the end-of-track tick of the previous one.
//! - **Division.** SMPTE timecode division gives an error: there is no beat grid to quantise to.
//! - **Leniency.** midly's parser (non-strict) plus a chunk walk of our own: unknown chunks are
//!   skipped; trailing bytes after the last chunk are ignored; running status is kept across
//!   meta and sysex events (as most players do); a last track chunk that declares more bytes than
//!   the file has is accepted only if its events are intact up to an end-of-track event. Anything
//!   else that is broken (not a MIDI file, truncated header or track, malformed event) is an
//!   error naming the file, the track and the problem. Everything skipped is counted in the
//!   [`ImportReport`].
//! - **Key.** With `transpose_to_c`, the key is estimated with Krumhansl-Schmuckler profiles over
//!   pitch-class durations (in beats) of the imported notes, and all notes are shifted by the
//!   smallest interval (-6..=+5 semitones) that moves the tonic to C (major -> C major, minor ->
//!   C minor); notes pushed outside 21..=108 are dropped and counted.
//! - **Folders.** [`import_path`] reads a `.mid`/`.midi`/`.kar` file or every such file in a
//!   folder (not recursive, sorted by file name) into `train`. A broken file fails the whole
//!   import with an error naming it (no silent skipping); a folder without MIDI files is an error
//!   naming the folder. Pieces without any note are left out (counted by [`import_path_report`]).
//!
//! # Export ([`write_midi`])
//!
//! A type-1 SMF at 480 ticks per quarter: track 0 holds the track name, tempo and a 4/4 time
//! signature; track 1 is a piano track (program 0 on channel 0) whose notes have velocity 80, one
//! held note per run of consecutive frames with the same pitch. Both tracks end at the end of the
//! last frame. The file is written atomically.
use crate::data::{Dataset, Sequence, KEYS, PITCH_MAX, PITCH_MIN};
use crate::error::{write_atomic, Error, Result};
use midly::num::{u15, u24, u28, u4, u7};
use midly::{EventIter, Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// Grid resolution of the imported piano roll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Grid {
    Quarter,
    Eighth,
}

impl Grid {
    /// Frames per beat (quarter note).
    pub fn frames_per_beat(self) -> u64 {
        match self {
            Grid::Quarter => 1,
            Grid::Eighth => 2,
        }
    }
}

/// Options of the importer.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub grid: Grid,
    pub include_drums: bool,
    pub transpose_to_c: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { grid: Grid::Quarter, include_drums: false, transpose_to_c: false }
    }
}

/// What the importer saw and what it left out, for one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Track chunks read.
    pub tracks: usize,
    /// Ticks per beat of the file.
    pub ticks_per_beat: u16,
    /// Note-ons with velocity > 0, on every channel (drums included).
    pub notes: usize,
    /// Notes that made it into the roll.
    pub notes_imported: usize,
    /// Drum-channel notes skipped (0 with `include_drums`).
    pub drum_notes_skipped: usize,
    /// Notes dropped because their pitch is outside 21..=108.
    pub notes_out_of_range: usize,
    /// Notes in range that transposition pushed out of 21..=108 (dropped).
    pub notes_dropped_by_transpose: usize,
    /// Notes whose note-off came at the tick of their note-on (kept: they occupy their onset frame).
    pub zero_length_notes: usize,
    /// Note-offs with no open note of that pitch and channel (ignored).
    pub unmatched_note_offs: usize,
    /// Notes still open at the end of their track (ended there).
    pub notes_never_released: usize,
    /// Tracks that end without an end-of-track event.
    pub missing_end_of_track: usize,
    /// Chunks that are neither `MThd` nor `MTrk` (skipped).
    pub unknown_chunks: usize,
    /// Bytes after the last chunk (ignored).
    pub trailing_bytes: usize,
    /// Semitones added to every pitch by `transpose_to_c` (0 without it).
    pub transpose: i32,
    /// Frames of the resulting roll.
    pub frames: usize,
}

/// Longest roll the importer builds (a guard against absurd tick values in broken files).
pub const MAX_FRAMES: u64 = 1_000_000;

/// Reads one MIDI file into a piano roll.
pub fn read_midi(path: &Path, opts: &ImportOptions) -> Result<Sequence> {
    read_midi_report(path, opts).map(|(seq, _)| seq)
}

/// Reads one MIDI file into a piano roll, with counts of what was read and left out.
pub fn read_midi_report(path: &Path, opts: &ImportOptions) -> Result<(Sequence, ImportReport)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_midi(&bytes, path, opts)
}

/// A note in absolute ticks.
#[derive(Clone, Copy, Debug)]
struct Note {
    pitch: u8,
    on: u64,
    off: u64,
    drum: bool,
}

/// Parses SMF bytes (`path` is only used in messages).
pub fn parse_midi(bytes: &[u8], path: &Path, opts: &ImportOptions) -> Result<(Sequence, ImportReport)> {
    let bad = |msg: String| Error::format(path, msg);
    let (header, tracks) = midly::parse(bytes).map_err(|e| bad(format!("not a valid MIDI file: {e}")))?;
    let tpq = match header.timing {
        Timing::Metrical(t) => t.as_int(),
        Timing::Timecode(fps, sub) => {
            return Err(bad(format!(
                "SMPTE timecode division ({} fps, {sub} ticks per frame) is not supported: \
                 the importer needs a ticks-per-beat division",
                fps.as_int()
            )))
        }
    };
    if tpq == 0 {
        return Err(bad("division of 0 ticks per beat".into()));
    }
    let mut report = ImportReport { ticks_per_beat: tpq, ..Default::default() };

    // Walk the chunks ourselves, so truncation and garbage are noticed rather than silently eaten.
    let mut rest = tracks.unread();
    let mut notes: Vec<Note> = Vec::new();
    let mut track_ends: Vec<u64> = Vec::new();
    let mut track_index = 0usize;
    let sequential = header.format == Format::Sequential;
    let mut offset = 0u64; // start tick of the current track (type 2 only)
    while !rest.is_empty() {
        if rest.len() < 8 {
            report.trailing_bytes += rest.len();
            break;
        }
        let id = &rest[..4];
        let declared = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let avail = rest.len() - 8;
        let looks_like_chunk = id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ' || *b == b'_');
        if !looks_like_chunk {
            report.trailing_bytes += rest.len();
            break;
        }
        let truncated = declared > avail;
        let body = &rest[8..8 + declared.min(avail)];
        rest = &rest[8 + declared.min(avail)..];
        if id != b"MTrk" {
            // Unknown chunk (or a stray header): skip it.
            report.unknown_chunks += 1;
            continue;
        }
        let truncation = || {
            bad(format!(
                "track {track_index} is truncated: its chunk declares {declared} bytes but the file has only {avail} left"
            ))
        };
        let track = match read_track(body, track_index, offset, &mut report, path) {
            Ok(t) if truncated && !t.saw_eot => return Err(truncation()),
            Ok(t) => t,
            Err(_) if truncated => return Err(truncation()),
            Err(e) => return Err(e),
        };
        if !track.saw_eot {
            report.missing_end_of_track += 1;
        }
        notes.extend(track.notes);
        track_ends.push(track.end);
        if sequential {
            offset = track.end;
        }
        track_index += 1;
    }
    report.tracks = track_index;
    if track_index == 0 {
        return Err(bad("no track chunk (MTrk) in the file".into()));
    }

    // Drums. Every note-on was either matched or closed at its track's end, so this counts them.
    report.notes = notes.len();
    let mut kept: Vec<Note> = Vec::with_capacity(notes.len());
    for n in notes {
        if n.drum && !opts.include_drums {
            report.drum_notes_skipped += 1;
        } else {
            kept.push(n);
        }
    }
    // Pitch range, then key.
    let mut in_range: Vec<Note> = Vec::with_capacity(kept.len());
    for n in kept {
        if (PITCH_MIN..=PITCH_MAX).contains(&n.pitch) {
            in_range.push(n);
        } else {
            report.notes_out_of_range += 1;
        }
    }
    if opts.transpose_to_c {
        let shift = transposition_to_c(&in_range);
        report.transpose = shift;
        let before = in_range.len();
        in_range = in_range
            .into_iter()
            .filter_map(|mut n| {
                let p = n.pitch as i32 + shift;
                if (PITCH_MIN as i32..=PITCH_MAX as i32).contains(&p) {
                    n.pitch = p as u8;
                    Some(n)
                } else {
                    None
                }
            })
            .collect();
        report.notes_dropped_by_transpose = before - in_range.len();
    }
    report.notes_imported = in_range.len();

    // Quantise: frame(t) = round(t * fpb / tpq), halves up, in exact integers.
    let fpb = opts.grid.frames_per_beat();
    let tpq64 = tpq as u64;
    let frame_of = |t: u64| -> u64 {
        let f = (2 * t as u128 * fpb as u128 + tpq64 as u128) / (2 * tpq64 as u128);
        u64::try_from(f).unwrap_or(u64::MAX)
    };
    let mut len = track_ends.iter().map(|&e| frame_of(e)).max().unwrap_or(0);
    let spans: Vec<(u8, u64, u64)> = in_range
        .iter()
        .map(|n| {
            let a = frame_of(n.on);
            let b = frame_of(n.off).max(a + 1);
            (n.pitch, a, b)
        })
        .collect();
    for &(_, _, b) in &spans {
        len = len.max(b);
    }
    if len > MAX_FRAMES {
        return Err(bad(format!("the piece would have {len} frames, more than the limit of {MAX_FRAMES}")));
    }
    let len = len as usize;
    let mut grid = vec![false; len * KEYS];
    for (p, a, b) in spans {
        let unit = (p - PITCH_MIN) as usize;
        for f in a as usize..b as usize {
            grid[f * KEYS + unit] = true;
        }
    }
    let frames: Vec<Vec<u8>> = grid
        .chunks(KEYS)
        .map(|row| row.iter().enumerate().filter(|(_, &on)| on).map(|(i, _)| PITCH_MIN + i as u8).collect())
        .collect();
    report.frames = frames.len();
    Ok((Sequence { frames }, report))
}

struct TrackNotes {
    notes: Vec<Note>,
    end: u64,
    saw_eot: bool,
}

/// Reads the note events of one track chunk body; `offset` is added to every tick.
fn read_track(body: &[u8], index: usize, offset: u64, report: &mut ImportReport, path: &Path) -> Result<TrackNotes> {
    let mut it = EventIter::new(body);
    let mut tick = offset;
    let mut notes = Vec::new();
    // Open notes per (channel, pitch), FIFO.
    let mut open: HashMap<(u8, u8), VecDeque<u64>> = HashMap::new();
    let mut last_channel_status: Option<u8> = None;
    let mut saw_eot = false;
    loop {
        let remaining = it.unread().len();
        if remaining == 0 {
            break;
        }
        let ev = match it.next() {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                return Err(Error::format(
                    path,
                    format!("track {index}: malformed event at byte {} of the track: {e}", body.len() - remaining),
                ))
            }
            None => {
                return Err(Error::format(
                    path,
                    format!(
                        "track {index}: malformed or truncated event at byte {} of the track",
                        body.len() - remaining
                    ),
                ))
            }
        };
        tick += ev.delta.as_int() as u64;
        match ev.kind {
            TrackEventKind::Midi { channel, message } => {
                let ch = channel.as_int();
                last_channel_status = it.running_status();
                let (key, is_on) = match message {
                    MidiMessage::NoteOn { key, vel } => (key.as_int(), vel.as_int() > 0),
                    MidiMessage::NoteOff { key, .. } => (key.as_int(), false),
                    _ => continue,
                };
                if is_on {
                    open.entry((ch, key)).or_default().push_back(tick);
                } else {
                    match open.get_mut(&(ch, key)).and_then(|q| q.pop_front()) {
                        Some(on) => {
                            if on == tick {
                                report.zero_length_notes += 1;
                            }
                            notes.push(Note { pitch: key, on, off: tick, drum: ch == 9 });
                        }
                        None => report.unmatched_note_offs += 1,
                    }
                }
            }
            TrackEventKind::Meta(MetaMessage::EndOfTrack) => {
                saw_eot = true;
                break;
            }
            TrackEventKind::Meta(_) | TrackEventKind::SysEx(_) | TrackEventKind::Escape(_) => {
                // Lenient: keep running status across meta and sysex events.
                *it.running_status_mut() = last_channel_status;
            }
        }
    }
    for ((ch, key), q) in open {
        for on in q {
            report.notes_never_released += 1;
            notes.push(Note { pitch: key, on, off: tick, drum: ch == 9 });
        }
    }
    Ok(TrackNotes { notes, end: tick, saw_eot })
}

/// Krumhansl-Kessler key profiles (major, minor), index 0 = tonic.
const MAJOR_PROFILE: [f64; 12] = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88];
const MINOR_PROFILE: [f64; 12] = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17];

fn pearson(a: &[f64; 12], b: &[f64; 12]) -> f64 {
    let ma = a.iter().sum::<f64>() / 12.0;
    let mb = b.iter().sum::<f64>() / 12.0;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for i in 0..12 {
        num += (a[i] - ma) * (b[i] - mb);
        da += (a[i] - ma) * (a[i] - ma);
        db += (b[i] - mb) * (b[i] - mb);
    }
    if da <= 0.0 || db <= 0.0 {
        0.0
    } else {
        num / (da * db).sqrt()
    }
}

/// Estimates the key (tonic pitch class 0..12, minor?) from a pitch-class histogram with the
/// Krumhansl-Schmuckler method. `None` for an empty histogram.
pub fn estimate_key(histogram: &[f64; 12]) -> Option<(u8, bool)> {
    if histogram.iter().all(|&w| w <= 0.0) {
        return None;
    }
    let mut best = (f64::NEG_INFINITY, 0u8, false);
    for tonic in 0..12u8 {
        let mut rotated = [0.0; 12];
        for (i, r) in rotated.iter_mut().enumerate() {
            *r = histogram[(i + tonic as usize) % 12];
        }
        for (minor, profile) in [(false, &MAJOR_PROFILE), (true, &MINOR_PROFILE)] {
            let c = pearson(&rotated, profile);
            if c > best.0 {
                best = (c, tonic, minor);
            }
        }
    }
    Some((best.1, best.2))
}

/// The shift in -6..=5 semitones that moves a tonic to C.
pub fn shift_to_c(tonic: u8) -> i32 {
    let s = (12 - (tonic as i32 % 12)) % 12; // 0..11 upwards
    if s > 5 {
        s - 12
    } else {
        s
    }
}

/// Semitones that move the estimated key of `notes` to C (0 when there are no pitched notes).
fn transposition_to_c(notes: &[Note]) -> i32 {
    let mut hist = [0.0f64; 12];
    let mut counts = [0.0f64; 12];
    for n in notes.iter().filter(|n| !n.drum) {
        hist[n.pitch as usize % 12] += (n.off - n.on) as f64;
        counts[n.pitch as usize % 12] += 1.0;
    }
    let h = if hist.iter().all(|&w| w <= 0.0) { &counts } else { &hist };
    estimate_key(h).map(|(tonic, _)| shift_to_c(tonic)).unwrap_or(0)
}

/// Is this a MIDI file name (`.mid`, `.midi`, `.kar`, any case)?
pub fn is_midi_file_name(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "mid" | "midi" | "kar")
}

/// Reads a `.mid` file or a folder of them into a dataset (all pieces in `train`).
pub fn import_path(path: &Path, opts: &ImportOptions) -> Result<Dataset> {
    import_path_report(path, opts).map(|(d, _)| d)
}

/// Like [`import_path`], also returning each file's report (in import order, empty pieces too).
pub fn import_path_report(path: &Path, opts: &ImportOptions) -> Result<(Dataset, Vec<(PathBuf, ImportReport)>)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            let p = entry.path();
            if p.is_file() && is_midi_file_name(&p) {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(Error::format(path, "folder contains no MIDI files (.mid, .midi, .kar)"));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut data = Dataset::default();
    let mut reports = Vec::with_capacity(files.len());
    for f in files {
        let (seq, report) = read_midi_report(&f, opts)?;
        if seq.frames.iter().any(|fr| !fr.is_empty()) {
            data.train.push(seq);
        }
        reports.push((f, report));
    }
    if data.train.is_empty() {
        return Err(Error::format(path, "no notes imported: every MIDI file gave an empty piano roll"));
    }
    Ok((data, reports))
}

/// Ticks per quarter note of exported files.
pub const EXPORT_TPQ: u16 = 480;

/// Encodes a piano roll as a type-1 SMF (see the module doc); `frame_beats` beats per frame.
pub fn encode_midi(seq: &Sequence, frame_beats: f64, bpm: f64) -> std::result::Result<Vec<u8>, String> {
    if !(frame_beats.is_finite() && frame_beats > 0.0) {
        return Err(format!("frame length must be a positive number of beats, got {frame_beats}"));
    }
    let step = (frame_beats * EXPORT_TPQ as f64).round();
    if !(1.0..=1e6).contains(&step) {
        return Err(format!("frame length of {frame_beats} beats is not representable at {EXPORT_TPQ} ticks per beat"));
    }
    let step = step as u64;
    if !(bpm.is_finite() && bpm > 0.0) {
        return Err(format!("tempo must be a positive number of beats per minute, got {bpm}"));
    }
    let usec = (60_000_000.0 / bpm).round();
    if !(1.0..=u24::max_value().as_int() as f64).contains(&usec) {
        return Err(format!("tempo of {bpm} bpm is outside what MIDI can store"));
    }
    let total = seq.frames.len() as u64 * step;
    if total > u28::max_value().as_int() as u64 {
        return Err(format!("the piece is too long to export ({} frames)", seq.frames.len()));
    }
    // Note spans per pitch: runs of consecutive frames.
    let mut on_events: Vec<(u64, u8, bool)> = Vec::new(); // (tick, pitch, is_on)
    let mut active = [false; KEYS];
    let mut start = [0u64; KEYS];
    for (t, frame) in seq.frames.iter().enumerate() {
        let mut now = [false; KEYS];
        for &p in frame {
            if !(PITCH_MIN..=PITCH_MAX).contains(&p) {
                return Err(format!("frame {t} has pitch {p}, outside {PITCH_MIN}..={PITCH_MAX}"));
            }
            now[(p - PITCH_MIN) as usize] = true;
        }
        for u in 0..KEYS {
            if now[u] && !active[u] {
                start[u] = t as u64;
            } else if !now[u] && active[u] {
                on_events.push((start[u] * step, PITCH_MIN + u as u8, true));
                on_events.push((t as u64 * step, PITCH_MIN + u as u8, false));
            }
        }
        active = now;
    }
    for u in 0..KEYS {
        if active[u] {
            on_events.push((start[u] * step, PITCH_MIN + u as u8, true));
            on_events.push((total, PITCH_MIN + u as u8, false));
        }
    }
    // Offs before ons at the same tick; then by pitch.
    on_events.sort_by_key(|&(tick, p, on)| (tick, on, p));

    let ev = |delta: u64, kind: TrackEventKind<'static>| TrackEvent { delta: u28::new(delta as u32), kind };
    let mut t0 = vec![
        ev(0, TrackEventKind::Meta(MetaMessage::TrackName(b"rtrbm"))),
        ev(0, TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8))),
        ev(0, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(usec as u32)))),
    ];
    t0.push(ev(total, TrackEventKind::Meta(MetaMessage::EndOfTrack)));
    let ch = u4::new(0);
    let mut t1 = vec![
        ev(0, TrackEventKind::Meta(MetaMessage::TrackName(b"Piano"))),
        ev(0, TrackEventKind::Midi { channel: ch, message: MidiMessage::ProgramChange { program: u7::new(0) } }),
    ];
    let mut now = 0u64;
    for (tick, p, on) in on_events {
        let key = u7::new(p);
        let message = if on {
            MidiMessage::NoteOn { key, vel: u7::new(80) }
        } else {
            MidiMessage::NoteOff { key, vel: u7::new(64) }
        };
        t1.push(ev(tick - now, TrackEventKind::Midi { channel: ch, message }));
        now = tick;
    }
    t1.push(ev(total - now, TrackEventKind::Meta(MetaMessage::EndOfTrack)));

    let mut smf = Smf::new(Header::new(Format::Parallel, Timing::Metrical(u15::new(EXPORT_TPQ))));
    smf.tracks = vec![t0, t1];
    let mut out = Vec::new();
    smf.write_std(&mut out).map_err(|e| format!("cannot encode MIDI: {e}"))?;
    Ok(out)
}

/// Writes a piano roll as a type-1 MIDI file at 480 ticks per quarter, `frame_beats` beats per
/// frame (1 for the quarter grid, 0.5 for the eighth grid) and `bpm` quarter notes per minute.
pub fn write_midi(path: &Path, seq: &Sequence, frame_beats: f64, bpm: f64) -> Result<()> {
    let bytes = encode_midi(seq, frame_beats, bpm).map_err(|m| Error::format(path, m))?;
    write_atomic(path, &bytes)
}
