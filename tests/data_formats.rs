//! Integration tests of the dataset readers and writer (JSON, pickle, MAT v5), the statistics
//! table, and the split helper. Tests that need `../shared/data` skip, with a message, when that
//! folder is absent; the bad-input tests build their own files in a temporary folder.

use rtrbm::data::split::split_sequences;
use rtrbm::data::stats::{table_rows, Stats};
use rtrbm::data::{self, json, mat, pickle, Dataset, Sequence, Split};
use std::path::{Path, PathBuf};

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data"));
    if p.is_dir() {
        Some(p)
    } else {
        println!("skipping: {} is absent", p.display());
        None
    }
}

/// One README row: seqs, frames, mean len, max len, pitch range, max poly, mean poly, empty.
type Row = (usize, usize, &'static str, usize, (u8, u8), usize, &'static str, usize);

/// The table of `shared/data/README.md`, copied by hand.
const README: [(&str, [Row; 3], &str); 4] = [
    (
        "jsb_chorales.json",
        [
            (229, 13_807, "60.3", 129, (43, 96), 4, "3.90", 18),
            (76, 4_602, "60.6", 144, (48, 96), 4, "3.87", 29),
            (77, 4_725, "61.4", 160, (45, 96), 4, "3.89", 17),
        ],
        "| jsb_chorales.json | train | 229 | 13,807 | 60.3 | 129 | 43-96 | 4 | 3.90 | 18 |
| | valid | 76 | 4,602 | 60.6 | 144 | 48-96 | 4 | 3.87 | 29 |
| | test | 77 | 4,725 | 61.4 | 160 | 45-96 | 4 | 3.89 | 17 |",
    ),
    (
        "musedata.json",
        [
            (524, 245_202, "467.9", 3_457, (21, 96), 14, "3.49", 12_962),
            (135, 82_755, "613.0", 3_723, (21, 100), 15, "3.48", 4_412),
            (124, 64_339, "518.9", 4_273, (21, 105), 14, "3.29", 5_042),
        ],
        "| musedata.json | train | 524 | 245,202 | 467.9 | 3,457 | 21-96 | 14 | 3.49 | 12,962 |
| | valid | 135 | 82,755 | 613.0 | 3,723 | 21-100 | 15 | 3.48 | 4,412 |
| | test | 124 | 64,339 | 518.9 | 4,273 | 21-105 | 14 | 3.29 | 5,042 |",
    ),
    (
        "nottingham.json",
        [
            (694, 176_561, "254.4", 1_788, (31, 93), 9, "3.96", 487),
            (173, 45_513, "263.1", 1_473, (34, 91), 8, "3.96", 51),
            (170, 44_463, "261.5", 1_793, (36, 89), 9, "3.99", 19),
        ],
        "| nottingham.json | train | 694 | 176,561 | 254.4 | 1,788 | 31-93 | 9 | 3.96 | 487 |
| | valid | 173 | 45,513 | 263.1 | 1,473 | 34-91 | 8 | 3.96 | 51 |
| | test | 170 | 44,463 | 261.5 | 1,793 | 36-89 | 9 | 3.99 | 19 |",
    ),
    (
        "piano_midi_de.json",
        [
            (87, 75_911, "872.5", 3_857, (21, 108), 12, "3.04", 4_917),
            (12, 8_540, "711.7", 1_637, (24, 104), 11, "3.23", 251),
            (25, 19_036, "761.4", 2_645, (21, 108), 10, "2.95", 652),
        ],
        "| piano_midi_de.json | train | 87 | 75,911 | 872.5 | 3,857 | 21-108 | 12 | 3.04 | 4,917 |
| | valid | 12 | 8,540 | 711.7 | 1,637 | 24-104 | 11 | 3.23 | 251 |
| | test | 25 | 19,036 | 761.4 | 2,645 | 21-108 | 10 | 2.95 | 652 |",
    ),
];

#[test]
fn stats_reproduce_readme_table() {
    let Some(root) = shared() else { return };
    for (file, rows, text) in README {
        let ds = json::read(&root.join("polyphonic").join(file)).unwrap();
        for (split, want) in Split::ALL.iter().zip(rows) {
            let s = Stats::of(&ds, *split);
            let got = (
                s.seqs,
                s.frames,
                format!("{:.1}", s.mean_len),
                s.max_len,
                s.pitch_range.unwrap(),
                s.max_poly,
                format!("{:.2}", s.mean_poly),
                s.empty_frames,
            );
            let want = (want.0, want.1, want.2.to_string(), want.3, want.4, want.5, want.6.to_string(), want.7);
            assert_eq!(got, want, "{file} {}", split.name());
        }
        assert_eq!(table_rows(file, &ds), text, "{file}: rendered rows");
    }
}

/// Asserts two datasets are equal, naming the first differing split, sequence and frame.
fn assert_same(a: &Dataset, b: &Dataset, what: &str) {
    for split in Split::ALL {
        let (x, y) = (a.split(split), b.split(split));
        assert_eq!(x.len(), y.len(), "{what}: split {} sequence counts", split.name());
        for (i, (s, t)) in x.iter().zip(y).enumerate() {
            assert_eq!(s.len(), t.len(), "{what}: split {}, sequence {i} lengths", split.name());
            for (j, (f, g)) in s.frames.iter().zip(&t.frames).enumerate() {
                assert_eq!(f, g, "{what}: split {}, sequence {i}, frame {j}", split.name());
            }
        }
    }
    assert_eq!(a, b, "{what}");
}

#[test]
fn jsb_identical_in_every_format() {
    let Some(root) = shared() else { return };
    let reference = json::read(&root.join("polyphonic/jsb_chorales.json")).unwrap();
    let others = [
        ("pickle", pickle::read(&root.join("originals/jsb-chorales-quarter.pkl")).unwrap()),
        ("mat", mat::read(&root.join("originals/JSB_Chorales.mat")).unwrap()),
        ("quarter json", json::read(&root.join("originals/jsb-chorales-quarter.json")).unwrap()),
        ("embedded", data::jsb_embedded()),
        ("load by extension", Dataset::load(&root.join("originals/jsb-chorales-quarter.pkl")).unwrap()),
    ];
    for (what, ds) in &others {
        assert_same(&reference, ds, what);
    }
}

#[test]
fn mat_files_equal_json_versions() {
    let Some(root) = shared() else { return };
    for (m, j) in [
        ("MuseData.mat", "musedata.json"),
        ("Nottingham.mat", "nottingham.json"),
        ("Piano_midi.mat", "piano_midi_de.json"),
    ] {
        let a = mat::read(&root.join("originals").join(m)).unwrap();
        let b = json::read(&root.join("polyphonic").join(j)).unwrap();
        assert_same(&a, &b, m);
    }
}

/// A protocol-2 pickle like the original files: `{'train': [[(60, 64), ()]], 'valid': [], 'test': []}`
/// with the pitches as numpy int64 scalars.
fn small_pickle() -> Vec<u8> {
    let mut b = vec![0x80, 2, b'}', b'q', 1, b'('];
    b.extend_from_slice(b"U\x05train](](");
    b.extend_from_slice(b"cnumpy.core.multiarray\nscalar\nq\x02cnumpy\ndtype\nq\x03U\x02i8K\x00K\x01\x87Rq\x04");
    b.extend_from_slice(b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
    b.extend_from_slice(b"U\x08<\x00\x00\x00\x00\x00\x00\x00\x86R"); // 60
    b.extend_from_slice(b"h\x02h\x04U\x08@\x00\x00\x00\x00\x00\x00\x00\x86R"); // 64
    b.extend_from_slice(b"\x86)ee");
    b.extend_from_slice(b"U\x05valid]U\x04test]u.");
    b
}

#[test]
fn small_pickle_with_numpy_scalars() {
    let ds = pickle::parse(&small_pickle(), Path::new("small.pkl")).unwrap();
    assert_eq!(ds.train, vec![Sequence { frames: vec![vec![60, 64], vec![]] }]);
    assert!(ds.valid.is_empty() && ds.test.is_empty());
}

fn mat_header() -> Vec<u8> {
    let mut h = b"MATLAB 5.0 MAT-file, test".to_vec();
    h.resize(116, b' ');
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
    h
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pkl = small_pickle();
    let mut unsupported = pkl[..2].to_vec();
    unsupported.extend_from_slice(b"G@\x09\x21\xfb\x54\x44\x2d\x18.");
    let mut truncated_mat = mat_header();
    truncated_mat.extend_from_slice(&[15, 0, 0, 0, 0xe8, 0x03, 0, 0]);
    truncated_mat.extend_from_slice(&[0x78, 0x9c, 1, 2, 3]);
    let mut corrupt_mat = mat_header();
    corrupt_mat.extend_from_slice(&[15, 0, 0, 0, 16, 0, 0, 0]);
    corrupt_mat.extend_from_slice(b"this is not zlib");
    let mut truncated_real_mat = None;
    if let Some(root) = shared() {
        let b = std::fs::read(root.join("originals/JSB_Chorales.mat")).unwrap();
        truncated_real_mat = Some(b[..b.len() / 2].to_vec());
    }

    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.pkl", pkl[..pkl.len() / 2].to_vec(), "truncated"),
        ("no-stop.pkl", pkl[..pkl.len() - 1].to_vec(), "before the STOP opcode"),
        ("unsupported.pkl", unsupported, "byte offset 2, opcode BINFLOAT"),
        ("text.pkl", b"train,valid,test\n1,2,3\n".to_vec(), "not a protocol-2 pickle"),
        ("empty.pkl", Vec::new(), "empty file"),
        ("truncated.mat", truncated_mat, "truncated"),
        ("corrupt.mat", corrupt_mat, "corrupt compressed data"),
        ("short.mat", b"MATLAB 5.0 MAT-file".to_vec(), "truncated MAT header"),
        ("text.mat", vec![b'x'; 200], "not a MATLAB v5 MAT file"),
        ("empty.mat", Vec::new(), "empty file"),
        ("invalid.json", b"{\"train\": [[[60, 64], [".to_vec(), "invalid JSON"),
        (
            "range.json",
            b"{\"train\": [[[60], [12, 60]]], \"valid\": [], \"test\": []}".to_vec(),
            "split train, sequence 0, frame 1: pitch 12 outside 21..108",
        ),
        (
            "unsorted.json",
            b"{\"train\": [], \"valid\": [[[64, 60]]], \"test\": []}".to_vec(),
            "split valid, sequence 0, frame 0: pitches not in ascending order",
        ),
        ("missing.json", b"{\"train\": [], \"valid\": []}".to_vec(), "missing top-level key \"test\""),
        ("empty.json", Vec::new(), "empty file"),
    ];
    if let Some(b) = truncated_real_mat {
        cases.push(("half.mat", b, "truncated"));
    }
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = match Dataset::load(&path) {
            Ok(_) => panic!("{name}: read without error"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(name), "{name}: error does not name the file: {err}");
        assert!(err.contains(want), "{name}: expected {want:?} in: {err}");
    }
}

#[test]
fn json_write_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let small = Dataset {
        train: vec![Sequence { frames: vec![vec![21, 60, 108], vec![], vec![64]] }, Sequence::default()],
        valid: vec![],
        test: vec![Sequence { frames: vec![vec![]] }],
    };
    for (name, ds) in [("small.json", small), ("jsb.json", data::jsb_embedded())] {
        let path = dir.path().join(name.replace(".json", "")).join(name);
        json::write(&path, &ds).unwrap();
        assert_eq!(json::read(&path).unwrap(), ds, "{name}");
        // Writing again replaces the file atomically and leaves no temporary file behind.
        json::write(&path, &ds).unwrap();
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(files.len(), 1, "{name}: stray files");
    }
}

#[test]
fn split_is_deterministic_and_partitions() {
    let seqs: Vec<Sequence> =
        (0..103u32).map(|i| Sequence { frames: vec![vec![21 + (i % 88) as u8]; 1 + i as usize / 88] }).collect();
    let a = split_sequences(seqs.clone(), 0.15, 0.1, 42);
    let b = split_sequences(seqs.clone(), 0.15, 0.1, 42);
    assert_eq!(a, b, "same seed, same split");
    assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (78, 15, 10)); // 103 * 0.1 -> 10, 103 * 0.15 -> 15
    let c = split_sequences(seqs.clone(), 0.15, 0.1, 43);
    assert_ne!(a, c, "another seed gives another split");
    let mut all: Vec<Sequence> = Split::ALL.iter().flat_map(|&s| a.split(s).to_vec()).collect();
    let mut want = seqs;
    let key = |s: &Sequence| s.frames.clone();
    all.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(all, want, "every sequence lands in exactly one split");
}

/// Truncating the real pickle and .mat anywhere, or flipping any of many bytes, gives an error
/// (or, for a harmless flip, a dataset) but never a panic.
#[test]
fn damaged_real_files_never_panic() {
    let Some(root) = shared() else { return };
    for (name, read) in [
        ("originals/jsb-chorales-quarter.pkl", pickle::parse as fn(&[u8], &Path) -> rtrbm::Result<Dataset>),
        ("originals/JSB_Chorales.mat", mat::parse),
    ] {
        let bytes = std::fs::read(root.join(name)).unwrap();
        let path = Path::new(name);
        let step = bytes.len() / 41;
        for cut in (0..bytes.len()).step_by(step).chain(bytes.len() - 16..bytes.len()) {
            let err = read(&bytes[..cut], path).expect_err("a truncated file must not read");
            assert!(err.to_string().contains(name), "{err}");
        }
        let mut flipped = bytes.clone();
        for i in (0..bytes.len()).step_by(step + 1) {
            flipped[i] ^= 0x5a;
            let _ = read(&flipped, path);
            flipped[i] = bytes[i];
        }
    }
}
