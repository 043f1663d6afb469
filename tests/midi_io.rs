//! MIDI import/export and PNG pictures: round trips, real-world files, bad input.

use rtrbm::data::{Dataset, Sequence, JSB_JSON};
use rtrbm::midi::*;
use rtrbm::plot::{self, Series, NOTE_COLOUR, PALETTE};
use std::path::{Path, PathBuf};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");

fn samples_dir() -> Option<PathBuf> {
    let d = Path::new(SHARED).join("midi-samples");
    if d.is_dir() {
        Some(d)
    } else {
        println!("skipping: {} not present", d.display());
        None
    }
}

/// JSB from the crate's JSON reader if it works in this tree, else a local serde_json parse.
fn jsb() -> Dataset {
    if let Ok(d) = rtrbm::data::json::parse(JSB_JSON, Path::new("jsb")) {
        return d;
    }
    let v: std::collections::HashMap<String, Vec<Vec<Vec<u8>>>> =
        serde_json::from_str(JSB_JSON).expect("embedded JSB JSON");
    let split = |k: &str| -> Vec<Sequence> {
        v.get(k).expect("split present").iter().map(|s| Sequence { frames: s.clone() }).collect()
    };
    Dataset { train: split("train"), valid: split("valid"), test: split("test") }
}

fn q() -> ImportOptions {
    ImportOptions::default()
}

fn seq(frames: &[&[u8]]) -> Sequence {
    Sequence { frames: frames.iter().map(|f| f.to_vec()).collect() }
}

const C_SCALE: [u8; 8] = [60, 62, 64, 65, 67, 69, 71, 72];

fn scale_roll() -> Sequence {
    Sequence { frames: C_SCALE.iter().map(|&p| vec![p]).collect() }
}

/// Number of (frame, pitch) cells where a pitch starts sounding.
fn onsets(s: &Sequence) -> usize {
    let mut n = 0;
    let empty = Vec::new();
    for (t, f) in s.frames.iter().enumerate() {
        let prev = if t == 0 { &empty } else { &s.frames[t - 1] };
        n += f.iter().filter(|p| !prev.contains(p)).count();
    }
    n
}

// ---------------------------------------------------------------- round trips

#[test]
fn jsb_round_trip_is_lossless() {
    let data = jsb();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("piece.mid");
    let mut n = 0;
    for split in [&data.train, &data.valid, &data.test] {
        for s in split {
            write_midi(&path, s, 1.0, 100.0).unwrap();
            let back = read_midi(&path, &q()).unwrap();
            assert_eq!(&back, s, "piece {n} changed in the round trip");
            n += 1;
        }
    }
    assert_eq!(n, 229 + 76 + 77);
}

#[test]
fn eighth_grid_round_trip_and_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.mid");
    let all: Vec<u8> = (21..=108).collect();
    let cases = [
        Sequence::default(),
        seq(&[&[], &[], &[60]]),                 // leading rests
        seq(&[&[60, 64], &[], &[], &[]]),        // trailing rests
        seq(&[&[60], &[60], &[60], &[], &[60]]), // held, then re-struck after a rest
        seq(&[&all, &[21, 108], &all]),
        seq(&[&[], &[], &[]]),
    ];
    for (i, s) in cases.iter().enumerate() {
        for (beats, grid) in [(1.0, Grid::Quarter), (0.5, Grid::Eighth)] {
            write_midi(&path, s, beats, 120.0).unwrap();
            let opts = ImportOptions { grid, ..q() };
            assert_eq!(&read_midi(&path, &opts).unwrap(), s, "case {i}, {grid:?}");
        }
    }
    // A quarter-grid export read on the eighth grid doubles every frame.
    let s = seq(&[&[60], &[], &[62, 67]]);
    write_midi(&path, &s, 1.0, 120.0).unwrap();
    let opts = ImportOptions { grid: Grid::Eighth, ..q() };
    assert_eq!(read_midi(&path, &opts).unwrap(), seq(&[&[60], &[60], &[], &[], &[62, 67], &[62, 67]]));
}

#[test]
fn exported_file_is_a_standard_type1_smf() {
    use midly::{Format, MetaMessage, MidiMessage, Timing, TrackEventKind};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mid");
    let s = seq(&[&[60, 64], &[60, 64], &[], &[67]]);
    write_midi(&path, &s, 1.0, 90.0).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let smf = midly::Smf::parse(&bytes).unwrap();
    assert_eq!(smf.header.format, Format::Parallel);
    assert_eq!(smf.header.timing, Timing::Metrical(480.into()));
    assert_eq!(smf.tracks.len(), 2);
    let t0 = &smf.tracks[0];
    assert!(t0.iter().any(|e| matches!(e.kind, TrackEventKind::Meta(MetaMessage::TrackName(_)))));
    assert!(t0.iter().any(|e| matches!(e.kind, TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, _, _)))));
    let tempo = t0.iter().find_map(|e| match e.kind {
        TrackEventKind::Meta(MetaMessage::Tempo(t)) => Some(t.as_int()),
        _ => None,
    });
    assert_eq!(tempo, Some(666_667));
    for t in &smf.tracks {
        assert!(matches!(t.last().unwrap().kind, TrackEventKind::Meta(MetaMessage::EndOfTrack)));
    }
    let t1 = &smf.tracks[1];
    assert!(t1.iter().any(|e| matches!(
        e.kind,
        TrackEventKind::Midi { channel, message: MidiMessage::ProgramChange { program } }
            if channel == 0 && program == 0
    )));
    let ons: Vec<(u8, u8)> = t1
        .iter()
        .filter_map(|e| match e.kind {
            TrackEventKind::Midi { message: MidiMessage::NoteOn { key, vel }, .. } => {
                Some((key.as_int(), vel.as_int()))
            }
            _ => None,
        })
        .collect();
    // Held notes are one note each: 60 and 64 once, then 67.
    assert_eq!(ons, vec![(60, 80), (64, 80), (67, 80)]);
    // The track lasts 4 frames of 480 ticks.
    let total: u32 = t1.iter().map(|e| e.delta.as_int()).sum();
    assert_eq!(total, 4 * 480);
}

// ---------------------------------------------------------------- real files

/// (file, notes in the README, drum notes in the README)
const SAMPLES: &[(&str, usize, usize)] = &[
    ("jazzsoft_test_midi/test-2-tracks-type-0.mid", 16, 0),
    ("jazzsoft_test_midi/test-2-tracks-type-1.mid", 16, 0),
    ("jazzsoft_test_midi/test-2-tracks-type-2.mid", 16, 0),
    ("jazzsoft_test_midi/test-all-gm-percussion.mid", 183, 183),
    ("jazzsoft_test_midi/test-control-40-damper.mid", 8, 0),
    ("jazzsoft_test_midi/test-running-status-metaevent.mid", 8, 0),
    ("jazzsoft_test_midi/test-running-status-sysex.mid", 8, 0),
    ("jazzsoft_test_midi/test-non-midi-track.mid", 8, 0),
    ("jazzsoft_test_midi/test-corrupt-file-extra-byte.mid", 8, 0),
    ("jazzsoft_test_midi/test-karaoke-kar.mid", 29, 0),
    ("jazzsoft_test_midi/test-vlq-4-byte.mid", 8, 0),
    ("tonejs_midi/230_bpm_multitrack.mid", 3203, 1234),
    ("tonejs_midi/beat.mid", 390, 390),
    ("tonejs_midi/concerto_for_orchestra_1.mid", 19083, 1),
    ("tonejs_midi/symphony_7_2.mid", 6077, 0),
    ("tonejs_midi/symphony_7_2_singletrack.mid", 6077, 0),
    ("webern_midi_file/phobos_dorico.mid", 256, 0),
    ("webern_midi_file/b_guajeo.mid", 19, 0),
    ("webern_midi_file/later_folia.mid", 67, 0),
    ("jukedeck_nottingham/ashover11.mid", 349, 0),
    ("jukedeck_nottingham/playford5.mid", 430, 0),
    ("jukedeck_nottingham/reelsh-l46.mid", 264, 0),
    ("jukedeck_nottingham/waltzes6.mid", 360, 0),
    ("jukedeck_nottingham/hpps33.mid", 200, 0),
    ("jsb_chorales/003806b_.mid", 253, 0),
    ("jsb_chorales/018707b_.mid", 282, 0),
    ("jsb_chorales/009106ch.mid", 197, 0),
    ("jsb_chorales/001805blz.mid", 310, 0),
    ("jsb_chorales/025100b_.mid", 455, 0),
    ("jsb_chorales/000101b_.mid", 11382, 0),
];

#[test]
fn every_sample_imports_with_the_readme_note_counts() {
    let Some(dir) = samples_dir() else { return };
    for &(file, notes, drums) in SAMPLES {
        let path = dir.join(file);
        for include_drums in [false, true] {
            let opts = ImportOptions { include_drums, ..q() };
            let (s, r) = read_midi_report(&path, &opts).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(r.notes, notes, "{file}: note-ons");
            let skipped = if include_drums { 0 } else { drums };
            assert_eq!(r.drum_notes_skipped, skipped, "{file}: drum notes");
            assert_eq!(r.notes_out_of_range, 0, "{file}");
            assert_eq!(r.notes_imported, notes - skipped, "{file}");
            assert_eq!(r.frames, s.len());
            assert!(onsets(&s) <= r.notes_imported, "{file}: more onsets than notes");
            if r.notes_imported > 0 {
                assert!(s.frames.iter().any(|f| !f.is_empty()), "{file}: empty roll");
            }
            for f in &s.frames {
                assert!(f.windows(2).all(|w| w[0] < w[1]), "{file}: frame not ascending");
                assert!(f.iter().all(|&p| (21..=108).contains(&p)));
            }
        }
    }
}

#[test]
fn frame_counts_follow_the_beat() {
    let Some(dir) = samples_dir() else { return };
    // Files without a tempo event play at 120 bpm: 2 beats per second (README durations).
    for (file, secs) in [
        ("jukedeck_nottingham/ashover11.mid", 49.5),
        ("jukedeck_nottingham/playford5.mid", 99.0),
        ("jukedeck_nottingham/reelsh-l46.mid", 33.0),
        ("jukedeck_nottingham/waltzes6.mid", 73.5),
        ("jukedeck_nottingham/hpps33.mid", 34.0),
        ("jazzsoft_test_midi/test-2-tracks-type-1.mid", 4.5),
        ("jazzsoft_test_midi/test-2-tracks-type-2.mid", 9.0),
        ("jazzsoft_test_midi/test-control-40-damper.mid", 8.0),
    ] {
        let s = read_midi(&dir.join(file), &q()).unwrap();
        let beats = secs * 2.0;
        assert!((s.len() as f64 - beats).abs() <= 1.0, "{file}: {} frames for {beats} beats", s.len());
        let e = read_midi(&dir.join(file), &ImportOptions { grid: Grid::Eighth, ..q() }).unwrap();
        assert!((e.len() as f64 - 2.0 * beats).abs() <= 1.0, "{file}: eighth grid");
    }
    // The same symphony written as 13 tracks at TPQ 256 and 1 track at TPQ 960 gives one roll.
    let a = read_midi(&dir.join("tonejs_midi/symphony_7_2.mid"), &q()).unwrap();
    let b = read_midi(&dir.join("tonejs_midi/symphony_7_2_singletrack.mid"), &q()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn drums_are_skipped_unless_asked_for() {
    let Some(dir) = samples_dir() else { return };
    for file in ["jazzsoft_test_midi/test-all-gm-percussion.mid", "tonejs_midi/beat.mid"] {
        let path = dir.join(file);
        let s = read_midi(&path, &q()).unwrap();
        assert!(s.frames.iter().all(|f| f.is_empty()), "{file}: drums leaked in");
        let d = read_midi(&path, &ImportOptions { include_drums: true, ..q() }).unwrap();
        assert!(d.frames.iter().filter(|f| !f.is_empty()).count() > 10, "{file}");
    }
}

#[test]
fn type_0_1_2_versions_of_the_same_test() {
    let Some(dir) = samples_dir() else { return };
    let j = dir.join("jazzsoft_test_midi");
    let t0 = read_midi(&j.join("test-2-tracks-type-0.mid"), &q()).unwrap();
    let t1 = read_midi(&j.join("test-2-tracks-type-1.mid"), &q()).unwrap();
    let t2 = read_midi(&j.join("test-2-tracks-type-2.mid"), &q()).unwrap();
    // Types 0 and 1: two scales together, starting after one beat of rest.
    assert_eq!(t0, t1);
    let upper = [61, 63, 65, 66, 68, 70, 72, 73];
    let mut want = vec![vec![]];
    want.extend(C_SCALE.iter().zip(upper).map(|(&a, b)| vec![a, b]));
    assert_eq!(t1.frames, want);
    // Type 2 ("must play sequentially"): the same notes, track 2 after track 1.
    assert_eq!(t2.len(), 2 * t1.len());
    for f in 0..t1.len() {
        let mut both: Vec<u8> = t2.frames[f].iter().chain(&t2.frames[f + t1.len()]).copied().collect();
        both.sort_unstable();
        assert_eq!(both, t1.frames[f], "frame {f}");
    }
}

#[test]
fn quirky_files_parse_leniently() {
    let Some(dir) = samples_dir() else { return };
    let j = dir.join("jazzsoft_test_midi");
    let (s, r) = read_midi_report(&j.join("test-corrupt-file-extra-byte.mid"), &q()).unwrap();
    assert_eq!(s, scale_roll());
    assert_eq!(r.trailing_bytes, 1);
    let (s, r) = read_midi_report(&j.join("test-non-midi-track.mid"), &q()).unwrap();
    assert_eq!(r.unknown_chunks, 1);
    assert_eq!(s.frames.iter().flatten().copied().collect::<Vec<_>>(), C_SCALE);
    // Running status across meta / sysex events (mido refuses the sysex one).
    for f in ["test-running-status-metaevent.mid", "test-running-status-sysex.mid", "test-vlq-4-byte.mid"] {
        let s = read_midi(&j.join(f), &q()).unwrap();
        assert_eq!(s.frames.iter().flatten().copied().collect::<Vec<_>>(), C_SCALE, "{f}");
    }
    // Redundant note-offs and zero-length notes of the Tone.js orchestral score.
    let (_, r) = read_midi_report(&dir.join("tonejs_midi/concerto_for_orchestra_1.mid"), &q()).unwrap();
    assert_eq!(r.zero_length_notes, 6013);
    assert_eq!(r.unmatched_note_offs, 11683);
}

#[test]
fn folders_import_sorted_pieces() {
    let Some(dir) = samples_dir() else { return };
    let d = import_path(&dir.join("jukedeck_nottingham"), &q()).unwrap();
    assert_eq!(d.train.len(), 5);
    assert!(d.valid.is_empty() && d.test.is_empty());
    // Sorted by name: ashover11 first.
    assert_eq!(d.train[0], read_midi(&dir.join("jukedeck_nottingham/ashover11.mid"), &q()).unwrap());
    let one = import_path(&dir.join("jsb_chorales/003806b_.mid"), &q()).unwrap();
    assert_eq!(one.train.len(), 1);
    // The drums-only files are left out of a folder import, the rest kept.
    let (d, reports) = import_path_report(&dir.join("jazzsoft_test_midi"), &q()).unwrap();
    assert_eq!(reports.len(), 11);
    assert_eq!(d.train.len(), 10);
}

// ---------------------------------------------------------------- bad input

fn assert_err_names(err: rtrbm::Error, path: &Path, words: &str) {
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg:?} does not name {}", path.display());
    assert!(msg.to_lowercase().contains(words), "{msg:?} does not say {words:?}");
}

#[test]
fn bad_files_give_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    // A text file named .mid.
    let text = dir.path().join("x.mid");
    std::fs::write(&text, "this is not a MIDI file\n").unwrap();
    assert_err_names(read_midi(&text, &q()).unwrap_err(), &text, "not a valid midi file");
    // An empty file.
    let empty = dir.path().join("empty.mid");
    std::fs::write(&empty, b"").unwrap();
    assert_err_names(read_midi(&empty, &q()).unwrap_err(), &empty, "not a valid midi file");
    // A truncated file (cut inside its only track).
    let good = dir.path().join("good.mid");
    write_midi(&good, &scale_roll(), 1.0, 120.0).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.mid");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    assert_err_names(read_midi(&cut, &q()).unwrap_err(), &cut, "truncated");
    // Only the header.
    let head = dir.path().join("head.mid");
    std::fs::write(&head, &bytes[..14]).unwrap();
    assert_err_names(read_midi(&head, &q()).unwrap_err(), &head, "no track");
    // Half a header.
    let half = dir.path().join("half.mid");
    std::fs::write(&half, &bytes[..10]).unwrap();
    assert_err_names(read_midi(&half, &q()).unwrap_err(), &half, "not a valid midi file");
    // A malformed event inside a complete chunk (a system-common status byte 0xF3).
    let mut bad = b"MThd\0\0\0\x06\0\0\0\x01\0\x60MTrk\0\0\0\x08".to_vec();
    bad.extend_from_slice(&[0x00, 0x90, 0x3C, 0x40, 0x10, 0xF3, 0x00, 0x00]);
    let badp = dir.path().join("bad-event.mid");
    std::fs::write(&badp, &bad).unwrap();
    assert_err_names(read_midi(&badp, &q()).unwrap_err(), &badp, "malformed");
    // SMPTE timecode division.
    let smpte = b"MThd\0\0\0\x06\0\0\0\x01\xE7\x28MTrk\0\0\0\x04\0\xFF\x2F\0".to_vec();
    let sp = dir.path().join("smpte.mid");
    std::fs::write(&sp, &smpte).unwrap();
    assert_err_names(read_midi(&sp, &q()).unwrap_err(), &sp, "smpte");
    // A missing file.
    let missing = dir.path().join("missing.mid");
    assert_err_names(read_midi(&missing, &q()).unwrap_err(), &missing, "");
}

#[test]
fn bad_folders_give_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Empty folder.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_err_names(import_path(&empty, &q()).unwrap_err(), &empty, "no midi files");
    // A folder with only non-MIDI files.
    std::fs::write(empty.join("notes.txt"), "hello").unwrap();
    assert_err_names(import_path(&empty, &q()).unwrap_err(), &empty, "no midi files");
    // A broken file among good ones fails the import and is named.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    write_midi(&mixed.join("a.mid"), &scale_roll(), 1.0, 120.0).unwrap();
    let broken = mixed.join("b.midi");
    std::fs::write(&broken, "garbage").unwrap();
    write_midi(&mixed.join("c.MID"), &scale_roll(), 1.0, 120.0).unwrap();
    assert_err_names(import_path(&mixed, &q()).unwrap_err(), &broken, "not a valid midi file");
    std::fs::remove_file(&broken).unwrap();
    assert_eq!(import_path(&mixed, &q()).unwrap().train.len(), 2);
}

#[test]
fn failed_exports_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    // The target's folder is a file.
    let target = blocker.join("out.mid");
    assert!(write_midi(&target, &scale_roll(), 1.0, 120.0).is_err());
    // Invalid content or parameters.
    let out = dir.path().join("out.mid");
    let err = write_midi(&out, &seq(&[&[60], &[120]]), 1.0, 120.0).unwrap_err();
    assert_err_names(err, &out, "pitch 120");
    assert!(write_midi(&out, &scale_roll(), 0.0, 120.0).is_err());
    assert!(write_midi(&out, &scale_roll(), 1.0, f64::NAN).is_err());
    assert!(write_midi(&out, &scale_roll(), 1.0, -5.0).is_err());
    let png = dir.path().join("file").join("x.png");
    assert!(plot::piano_roll_png(&png, &scale_roll(), "t").is_err());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("file")], "leftovers: {names:?}");
}

// ---------------------------------------------------------------- key

#[test]
fn key_estimation_and_transposition_to_c() {
    let mut hist = [0.0; 12];
    for pc in [0, 2, 4, 5, 7, 9, 11] {
        hist[pc] = 1.0;
    }
    hist[0] = 3.0;
    hist[7] = 2.0;
    assert_eq!(estimate_key(&hist), Some((0, false)));
    assert_eq!(estimate_key(&[0.0; 12]), None);
    assert_eq!(shift_to_c(0), 0);
    assert_eq!(shift_to_c(2), -2);
    assert_eq!(shift_to_c(7), 5);
    assert_eq!(shift_to_c(6), -6);
    assert_eq!(shift_to_c(11), 1);

    // A D major cadence (I IV V I with the scale) comes back as the same in C major.
    let d_major: Vec<Vec<u8>> = vec![
        vec![50, 62, 66, 69],
        vec![55, 62, 67, 71],
        vec![57, 61, 64, 69],
        vec![50, 62, 66, 69],
        vec![62],
        vec![64],
        vec![66],
        vec![67],
        vec![69],
        vec![71],
        vec![73],
        vec![74],
        vec![50, 62, 66, 69],
    ];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.mid");
    write_midi(&p, &Sequence { frames: d_major.clone() }, 1.0, 120.0).unwrap();
    let opts = ImportOptions { transpose_to_c: true, ..q() };
    let (s, r) = read_midi_report(&p, &opts).unwrap();
    assert_eq!(r.transpose, -2);
    let want: Vec<Vec<u8>> = d_major.iter().map(|f| f.iter().map(|p| p - 2).collect()).collect();
    assert_eq!(s.frames, want);

    // Pitches pushed out of range are dropped and counted.
    let low = Sequence { frames: vec![vec![21, 62, 66, 69], vec![62, 66, 69], vec![50, 62, 66]] };
    write_midi(&p, &low, 1.0, 120.0).unwrap();
    let (s, r) = read_midi_report(&p, &opts).unwrap();
    assert_eq!(r.transpose, -2);
    assert_eq!(r.notes_dropped_by_transpose, 1);
    assert!(s.frames.iter().flatten().all(|&p| p >= 21));
}

// ---------------------------------------------------------------- pictures

fn decode_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let f = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(f).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn count_colour(buf: &[u8], c: [u8; 3]) -> usize {
    buf.chunks(3).filter(|p| *p == c).count()
}

/// Where to keep the pictures for a look (set `MIDI_IO_KEEP=folder`), else a temporary folder.
fn picture_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("MIDI_IO_KEEP") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            (None, PathBuf::from(d))
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

#[test]
fn piano_roll_pictures() {
    let (_keep, dir) = picture_dir();
    let data = jsb();
    let s = &data.train[0];
    let path = dir.join("roll.png");
    plot::piano_roll_png(&path, s, "JSB chorale 0 (train)").unwrap();
    let (w, h, buf) = decode_png(&path);
    assert_eq!(h, 24 + 88 * 4 + 22);
    assert!(w >= 34 + 4 * s.len());
    let cells: usize = s.frames.iter().map(|f| f.len()).sum();
    // Each cell is 3 x 3 note-coloured pixels (4 px per frame and per key, with a 1 px gap).
    assert_eq!(count_colour(&buf, NOTE_COLOUR), cells * 9);

    // A long piece stays a reasonable width; an empty one still gives a picture.
    let long = Sequence { frames: (0..20_000).map(|t| vec![21 + (t % 88) as u8]).collect() };
    plot::piano_roll_png(&dir.join("long.png"), &long, "long").unwrap();
    let (w, _, buf) = decode_png(&dir.join("long.png"));
    assert!(w <= 6100, "width {w}");
    assert!(count_colour(&buf, NOTE_COLOUR) > 0);
    plot::piano_roll_png(&dir.join("empty.png"), &Sequence::default(), "").unwrap();
    let (_, _, buf) = decode_png(&dir.join("empty.png"));
    assert_eq!(count_colour(&buf, NOTE_COLOUR), 0);
}

#[test]
fn line_chart_pictures() {
    let (_keep, dir) = picture_dir();
    let train: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, 8.0 * (-(i as f64) / 40.0).exp() + 2.5)).collect();
    let mut valid: Vec<(f64, f64)> =
        (0..200).step_by(10).map(|i| (i as f64, 8.5 * (-(i as f64) / 45.0).exp() + 3.0)).collect();
    valid[5].1 = f64::NAN;
    valid[9].1 = f64::INFINITY;
    let series = vec![
        Series { label: "train NLL".into(), points: train },
        Series { label: "valid NLL".into(), points: valid },
        Series { label: "best".into(), points: vec![(150.0, 3.1)] },
        Series { label: "empty".into(), points: vec![] },
    ];
    let path = dir.join("chart.png");
    plot::line_chart_png(&path, "Training curves (LSTM-RTRBM, JSB)", "epoch", &series).unwrap();
    let (w, h, buf) = decode_png(&path);
    assert_eq!((w, h), (800, 500));
    for c in &PALETTE[..3] {
        assert!(count_colour(&buf, *c) > 20, "colour {c:?} missing");
    }
    // Degenerate inputs still give valid pictures.
    let cases: Vec<Vec<Series>> = vec![
        vec![],
        vec![Series { label: "nan".into(), points: vec![(f64::NAN, 1.0), (0.0, f64::INFINITY)] }],
        vec![Series { label: "one".into(), points: vec![(3.0, -2.0)] }],
        vec![Series { label: "flat".into(), points: vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)] }],
        vec![Series { label: "huge".into(), points: vec![(0.0, -1e300), (1e300, 1e300)] }],
        vec![Series { label: "tiny".into(), points: vec![(0.0, 1e-9), (1.0, 2e-9)] }],
    ];
    for (i, s) in cases.iter().enumerate() {
        let p = dir.join(format!("case{i}.png"));
        plot::line_chart_png(&p, "degenerate", "x", s).unwrap();
        assert_eq!(decode_png(&p).0, 800);
    }
    let (_, _, buf) = decode_png(&dir.join("case2.png"));
    assert!(count_colour(&buf, PALETTE[0]) >= 25, "single point marker");
}

// ---------------------------------------------------------------- hand-made files

/// A one-track SMF at `tpq` from (delta, raw event bytes) pairs (deltas below 128).
fn smf(format: u8, tpq: u16, tracks: &[&[(u8, &[u8])]]) -> Vec<u8> {
    let mut out = b"MThd\0\0\0\x06\0".to_vec();
    out.push(format);
    out.extend_from_slice(&(tracks.len() as u16).to_be_bytes());
    out.extend_from_slice(&tpq.to_be_bytes());
    for t in tracks {
        let mut body = Vec::new();
        for (delta, ev) in t.iter() {
            body.push(*delta);
            body.extend_from_slice(ev);
        }
        out.extend_from_slice(b"MTrk");
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

const EOT: &[u8] = &[0xFF, 0x2F, 0x00];

#[test]
fn note_matching_rules() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.mid");
    // TPQ 4, quarter grid: 4 ticks per frame.
    let track: &[(u8, &[u8])] = &[
        (0, &[0x90, 60, 100]), // C4 on at 0
        (4, &[0x90, 60, 100]), // C4 again at 4 (overlap)
        (4, &[0x80, 60, 0]),   // off at 8: closes the first (FIFO)
        (0, &[0x80, 64, 0]),   // unmatched note-off
        (0, &[0x90, 67, 90]),  // G4 at 8 ...
        (0, &[0x90, 67, 0]),   // ... velocity-0 note-on at 8: zero length, keeps frame 2
        (5, &[0x80, 60, 0]),   // off at 13 closes the second C4: rounds to frame 3
        (0, &[0x99, 40, 100]), // a drum at 13, never released
        (1, &[0x90, 30, 100]), // 14: low note never released
        (0, &[0x90, 10, 100]), // pitch 10: out of range
        (0, &[0x80, 10, 0]),
        (10, EOT), // end at 24 = frame 6
    ];
    std::fs::write(&p, smf(1, 4, &[track])).unwrap();
    let (s, r) = read_midi_report(&p, &q()).unwrap();
    assert_eq!(r.notes, 6);
    assert_eq!(r.unmatched_note_offs, 1);
    assert_eq!(r.zero_length_notes, 2);
    assert_eq!(r.notes_never_released, 2);
    assert_eq!(r.drum_notes_skipped, 1);
    assert_eq!(r.notes_out_of_range, 1);
    assert_eq!(r.notes_imported, 4);
    // Rounding: 13 / 4 = 3.25 -> frame 3 (exclusive end); 14 / 4 = 3.5 -> frame 4 (halves up).
    assert_eq!(s, seq(&[&[60], &[60], &[60, 67], &[], &[30], &[30]]));
    let d = read_midi(&p, &ImportOptions { include_drums: true, ..q() }).unwrap();
    assert_eq!(d.frames[3], vec![40]);
}

#[test]
fn lenient_and_strict_edges() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.mid");
    // The last chunk declares more bytes than there are, but its events end cleanly: accepted.
    let mut bytes = smf(0, 1, &[&[(0, &[0x90, 60, 100]), (1, &[0x80, 60, 0]), (0, EOT)]]);
    bytes[14 + 7] += 5; // low byte of the MTrk length (header chunk is 14 bytes)
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(read_midi(&p, &q()).unwrap(), seq(&[&[60]]));
    // A track without end-of-track is accepted and counted.
    std::fs::write(&p, smf(0, 1, &[&[(0, &[0x90, 60, 100]), (2, &[0x80, 60, 0])]])).unwrap();
    let (s, r) = read_midi_report(&p, &q()).unwrap();
    assert_eq!(r.missing_end_of_track, 1);
    assert_eq!(s, seq(&[&[60], &[60]]));
    // Absurd lengths are refused rather than allocated.
    let mut huge = b"MThd\0\0\0\x06\0\0\0\x01\0\x01MTrk\0\0\0\x07".to_vec();
    huge.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0x2F, 0x00]);
    std::fs::write(&p, &huge).unwrap();
    assert_err_names(read_midi(&p, &q()).unwrap_err(), &p, "limit");
    // Type 2 tracks follow each other.
    let a: &[(u8, &[u8])] = &[(0, &[0x90, 60, 100]), (2, &[0x80, 60, 0]), (0, EOT)];
    let b: &[(u8, &[u8])] = &[(1, &[0x90, 62, 100]), (1, &[0x80, 62, 0]), (0, EOT)];
    std::fs::write(&p, smf(2, 1, &[a, b])).unwrap();
    assert_eq!(read_midi(&p, &q()).unwrap(), seq(&[&[60], &[60], &[], &[62]]));
    std::fs::write(&p, smf(1, 1, &[a, b])).unwrap();
    assert_eq!(read_midi(&p, &q()).unwrap(), seq(&[&[60], &[60, 62]]));
}
