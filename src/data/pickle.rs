//! A small, strict reader for the Python pickles the benchmark datasets were first distributed as.
//!
//! It understands the layout of the original `JSB Chorales.pickle` (protocol 2, written by
//! Python 2): a dict with str keys `train`, `valid`, `test`, each a list of sequences, each a list
//! of frames, each frame a tuple (or list) of pitches. A pitch is either a plain Python int or a
//! `numpy.int64` scalar, pickled as `GLOBAL 'numpy.core.multiarray scalar'` + `REDUCE` of
//! `(dtype('i8') with byte order '<', 8 little-endian bytes)`.
//!
//! This is a tiny pickle virtual machine for exactly the opcodes such files use; it never imports
//! or calls anything: the only callables it accepts are `numpy.dtype` and
//! `numpy.core.multiarray.scalar`, which it interprets itself. Any other opcode, callable or
//! object is an error naming the file, the byte offset and the opcode. A frame's pitches are a set
//! in the original files, so they are sorted here; a duplicated or out-of-range pitch is an error.

use super::{Dataset, Sequence, Split, PITCH_MAX, PITCH_MIN};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Reads a pickled dataset file.
pub fn read(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

/// Parses the bytes of a pickled dataset; `path` is only used in error messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Dataset> {
    if bytes.is_empty() {
        return Err(Error::format(path, "empty file: not a pickle"));
    }
    if bytes[0] != 0x80 {
        return Err(Error::format(
            path,
            format!(
                "not a protocol-2 pickle: expected the PROTO opcode (0x80) at byte 0, found {}",
                describe_byte(bytes[0])
            ),
        ));
    }
    let value = Vm { bytes, path, pos: 0, stack: Vec::new(), memo: HashMap::new(), objects: 0 }.run()?;
    to_dataset(value, path)
}

/// A Python object as far as these files need one.
#[derive(Clone, Debug)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// A Python 2 `str` (bytes) or a `unicode` (kept as its UTF-8 bytes).
    Str(Vec<u8>),
    List(Vec<Obj>),
    Tuple(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
    /// A `GLOBAL module name` reference that has not been called.
    Global(String, String),
    /// A `numpy.dtype(descr, 0, 1)`, with the byte order once `BUILD` has set its state; `id`
    /// identifies the object so that `BUILD` also updates its memoized copies.
    Dtype {
        id: usize,
        descr: String,
        byteorder: Option<String>,
    },
    /// A numpy integer scalar.
    NumpyInt(i64),
}

impl Obj {
    fn type_name(&self) -> String {
        match self {
            Obj::None => "None".into(),
            Obj::Bool(_) => "bool".into(),
            Obj::Int(_) => "int".into(),
            Obj::Str(_) => "str".into(),
            Obj::List(_) => "list".into(),
            Obj::Tuple(_) => "tuple".into(),
            Obj::Dict(_) => "dict".into(),
            Obj::Global(m, n) => format!("global {m}.{n}"),
            Obj::Dtype { descr, .. } => format!("numpy dtype {descr:?}"),
            Obj::NumpyInt(_) => "numpy integer".into(),
        }
    }
}

/// A stack entry: an object or a MARK.
enum Slot {
    Mark,
    Obj(Obj),
}

struct Vm<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Obj>,
    /// Objects created so far that need an identity (dtypes).
    objects: usize,
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("0x{b:02x} ('{}')", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

fn opcode_name(b: u8) -> &'static str {
    match b {
        0x80 => "PROTO",
        b'}' => "EMPTY_DICT",
        b']' => "EMPTY_LIST",
        b')' => "EMPTY_TUPLE",
        b'(' => "MARK",
        b'X' => "BINUNICODE",
        b'U' => "SHORT_BINSTRING",
        b'T' => "BINSTRING",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'M' => "BININT2",
        0x8a => "LONG1",
        b'c' => "GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b't' => "TUPLE",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b'l' => "LIST",
        b'd' => "DICT",
        b's' => "SETITEM",
        b'u' => "SETITEMS",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b'h' => "BINGET",
        b'j' => "LONG_BINGET",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        b'N' => "NONE",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "DUP",
        b'2' => "POP_MARK",
        b'p' => "PUT",
        b'g' => "GET",
        b'I' => "INT",
        b'L' => "LONG",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'F' => "FLOAT",
        b'G' => "BINFLOAT",
        b'o' => "OBJ",
        b'i' => "INST",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        _ => "unknown opcode",
    }
}

impl<'a> Vm<'a> {
    fn err(&self, at: usize, op: u8, msg: impl std::fmt::Display) -> Error {
        Error::format(self.path, format!("byte offset {at}, opcode {} ({}): {msg}", opcode_name(op), describe_byte(op)))
    }

    fn take(&mut self, n: usize, at: usize, op: u8) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err(
                at,
                op,
                format!("truncated file: needs {n} more bytes, only {} left", self.bytes.len() - self.pos),
            )),
        }
    }

    fn u8(&mut self, at: usize, op: u8) -> Result<u8> {
        Ok(self.take(1, at, op)?[0])
    }

    fn u32(&mut self, at: usize, op: u8) -> Result<u32> {
        let b = self.take(4, at, op)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a newline-terminated ASCII line (the arguments of GLOBAL).
    fn line(&mut self, at: usize, op: u8) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err(at, op, "truncated file: unterminated line"));
        };
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.err(at, op, "argument is not ASCII text"))?;
        let s = s.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, o: Obj) {
        self.stack.push(Slot::Obj(o));
    }

    fn pop(&mut self, at: usize, op: u8) -> Result<Obj> {
        match self.stack.pop() {
            Some(Slot::Obj(o)) => Ok(o),
            Some(Slot::Mark) => Err(self.err(at, op, "expected an object on the stack, found a MARK")),
            None => Err(self.err(at, op, "stack underflow")),
        }
    }

    /// Pops everything above the topmost MARK, and the MARK.
    fn pop_mark(&mut self, at: usize, op: u8) -> Result<Vec<Obj>> {
        let Some(m) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return Err(self.err(at, op, "no MARK on the stack"));
        };
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::Obj(o) => o,
                Slot::Mark => Obj::None, // unreachable: m is the topmost mark
            })
            .collect())
    }

    fn top_mut(&mut self, at: usize, op: u8) -> Result<&mut Obj> {
        if !matches!(self.stack.last(), Some(Slot::Obj(_))) {
            return Err(self.err(at, op, "expected an object on the stack"));
        }
        match self.stack.last_mut() {
            Some(Slot::Obj(o)) => Ok(o),
            _ => Err(Error::msg("pickle stack changed")), // unreachable: checked above
        }
    }

    fn put(&mut self, idx: u32, at: usize, op: u8) -> Result<()> {
        let o = match self.stack.last() {
            Some(Slot::Obj(o)) => o.clone(),
            _ => return Err(self.err(at, op, "nothing to memoize on the stack")),
        };
        self.memo.insert(idx, o);
        Ok(())
    }

    fn get(&mut self, idx: u32, at: usize, op: u8) -> Result<()> {
        let o = match self.memo.get(&idx) {
            Some(o) => o.clone(),
            None => return Err(self.err(at, op, format!("memo entry {idx} not defined"))),
        };
        // The memo holds a snapshot; a shared reference to a container that may have been
        // mutated since would silently differ from Python's semantics.
        if matches!(o, Obj::List(_) | Obj::Dict(_)) {
            return Err(self.err(
                at,
                op,
                format!("shared reference to a {} (memo {idx}) is not supported", o.type_name()),
            ));
        }
        self.push(o);
        Ok(())
    }

    fn run(mut self) -> Result<Obj> {
        loop {
            let at = self.pos;
            let Some(&op) = self.bytes.get(at) else {
                return Err(Error::format(
                    self.path,
                    format!("truncated file: ended at byte {at} before the STOP opcode"),
                ));
            };
            self.pos += 1;
            match op {
                0x80 => {
                    let v = self.u8(at, op)?;
                    if v > 2 {
                        return Err(self.err(at, op, format!("pickle protocol {v} not supported (only 0..=2)")));
                    }
                }
                b'}' => self.push(Obj::Dict(Vec::new())),
                b']' => self.push(Obj::List(Vec::new())),
                b')' => self.push(Obj::Tuple(Vec::new())),
                b'(' => self.stack.push(Slot::Mark),
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'X' => {
                    let n = self.u32(at, op)? as usize;
                    let s = self.take(n, at, op)?;
                    if std::str::from_utf8(s).is_err() {
                        return Err(self.err(at, op, "string is not valid UTF-8"));
                    }
                    self.push(Obj::Str(s.to_vec()));
                }
                b'U' => {
                    let n = self.u8(at, op)? as usize;
                    let s = self.take(n, at, op)?.to_vec();
                    self.push(Obj::Str(s));
                }
                b'T' => {
                    let n = self.u32(at, op)?;
                    if n > i32::MAX as u32 {
                        return Err(self.err(at, op, "negative string length"));
                    }
                    let s = self.take(n as usize, at, op)?.to_vec();
                    self.push(Obj::Str(s));
                }
                b'J' => {
                    let v = self.u32(at, op)? as i32;
                    self.push(Obj::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8(at, op)?;
                    self.push(Obj::Int(v as i64));
                }
                b'M' => {
                    let b = self.take(2, at, op)?;
                    self.push(Obj::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
                }
                0x8a => {
                    let n = self.u8(at, op)? as usize;
                    if n > 8 {
                        return Err(self.err(at, op, format!("integer of {n} bytes is too large")));
                    }
                    let b = self.take(n, at, op)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n); // sign-extend
                    }
                    self.push(Obj::Int(v));
                }
                b'c' => {
                    let module = self.line(at, op)?;
                    let name = self.line(at, op)?;
                    self.push(Obj::Global(module, name));
                }
                b'R' => {
                    let args = self.pop(at, op)?;
                    let func = self.pop(at, op)?;
                    let o = self.reduce(func, args, at, op)?;
                    self.push(o);
                }
                b'b' => {
                    let state = self.pop(at, op)?;
                    let target = self.pop(at, op)?;
                    let o = self.build(target, state, at, op)?;
                    self.push(o);
                }
                b't' => {
                    let items = self.pop_mark(at, op)?;
                    self.push(Obj::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at, op)?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark(at, op)?;
                    self.push(Obj::List(items));
                }
                b'd' => {
                    let items = self.pop_mark(at, op)?;
                    let d = self.pairs(items, at, op)?;
                    self.push(Obj::Dict(d));
                }
                b'a' => {
                    let v = self.pop(at, op)?;
                    self.extend_list(vec![v], at, op)?;
                }
                b'e' => {
                    let items = self.pop_mark(at, op)?;
                    self.extend_list(items, at, op)?;
                }
                b's' => {
                    let v = self.pop(at, op)?;
                    let k = self.pop(at, op)?;
                    self.extend_dict(vec![(k, v)], at, op)?;
                }
                b'u' => {
                    let items = self.pop_mark(at, op)?;
                    let pairs = self.pairs(items, at, op)?;
                    self.extend_dict(pairs, at, op)?;
                }
                b'q' => {
                    let i = self.u8(at, op)? as u32;
                    self.put(i, at, op)?;
                }
                b'r' => {
                    let i = self.u32(at, op)?;
                    self.put(i, at, op)?;
                }
                b'h' => {
                    let i = self.u8(at, op)? as u32;
                    self.get(i, at, op)?;
                }
                b'j' => {
                    let i = self.u32(at, op)?;
                    self.get(i, at, op)?;
                }
                b'.' => {
                    let v = self.pop(at, op)?;
                    if !self.stack.is_empty() {
                        return Err(self.err(at, op, "objects left on the stack at STOP"));
                    }
                    if self.pos != self.bytes.len() {
                        return Err(self.err(
                            at,
                            op,
                            format!("{} bytes of trailing data after STOP", self.bytes.len() - self.pos),
                        ));
                    }
                    return Ok(v);
                }
                _ => return Err(self.err(at, op, "opcode not supported by this reader")),
            }
        }
    }

    fn pairs(&self, items: Vec<Obj>, at: usize, op: u8) -> Result<Vec<(Obj, Obj)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(at, op, "odd number of items for key/value pairs"));
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn extend_list(&mut self, items: Vec<Obj>, at: usize, op: u8) -> Result<()> {
        match self.top_mut(at, op)? {
            Obj::List(l) => {
                l.extend(items);
                Ok(())
            }
            other => {
                let t = other.type_name();
                Err(self.err(at, op, format!("cannot append to a {t}")))
            }
        }
    }

    fn extend_dict(&mut self, pairs: Vec<(Obj, Obj)>, at: usize, op: u8) -> Result<()> {
        match self.top_mut(at, op)? {
            Obj::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            other => {
                let t = other.type_name();
                Err(self.err(at, op, format!("cannot set an item of a {t}")))
            }
        }
    }

    /// Interprets the two callables numpy scalars need; refuses everything else.
    fn reduce(&mut self, func: Obj, args: Obj, at: usize, op: u8) -> Result<Obj> {
        let Obj::Global(module, name) = &func else {
            return Err(self.err(at, op, format!("cannot call a {}", func.type_name())));
        };
        let Obj::Tuple(args) = args else {
            return Err(self.err(
                at,
                op,
                format!("arguments of {module}.{name} are a {}, not a tuple", args.type_name()),
            ));
        };
        match (module.as_str(), name.as_str()) {
            ("numpy", "dtype") => match args.as_slice() {
                [Obj::Str(d), Obj::Int(0) | Obj::Bool(false), Obj::Int(1) | Obj::Bool(true)] => {
                    let descr = String::from_utf8_lossy(d).into_owned();
                    if descr != "i8" && descr != "<i8" {
                        return Err(self.err(at, op, format!("numpy dtype {descr:?} not supported (only int64 'i8')")));
                    }
                    let byteorder = descr.strip_suffix("i8").filter(|b| !b.is_empty()).map(str::to_string);
                    self.objects += 1;
                    Ok(Obj::Dtype { id: self.objects, descr, byteorder })
                }
                _ => Err(self.err(at, op, "unexpected arguments to numpy.dtype")),
            },
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => match args.as_slice() {
                [Obj::Dtype { descr, byteorder, .. }, Obj::Str(data)] => {
                    if byteorder.as_deref() != Some("<") {
                        return Err(self.err(
                            at,
                            op,
                            format!(
                                "numpy scalar of dtype {descr:?} with byte order {:?}: only little-endian int64 ('<i8') is supported",
                                byteorder.as_deref().unwrap_or("unknown")
                            ),
                        ));
                    }
                    let b: [u8; 8] = data.as_slice().try_into().map_err(|_| {
                        self.err(at, op, format!("numpy int64 scalar has {} data bytes, expected 8", data.len()))
                    })?;
                    Ok(Obj::NumpyInt(i64::from_le_bytes(b)))
                }
                _ => Err(self.err(at, op, "unexpected arguments to numpy.core.multiarray.scalar")),
            },
            _ => Err(self.err(at, op, format!("callable {module}.{name} not supported (only numpy int64 scalars)"))),
        }
    }

    /// `BUILD` on a dtype sets its state `(version, byteorder, ...)`; nothing else is built.
    fn build(&mut self, target: Obj, state: Obj, at: usize, op: u8) -> Result<Obj> {
        match (target, state) {
            (Obj::Dtype { id, descr, .. }, Obj::Tuple(st)) => {
                match st.get(1) {
                    Some(Obj::Str(bo)) => {
                        let bo = String::from_utf8_lossy(bo).into_owned();
                        if bo != "<" {
                            return Err(self.err(
                            at,
                            op,
                            format!("numpy dtype {descr:?} has byte order {bo:?}: only little-endian ('<') is supported"),
                        ));
                        }
                        // BUILD mutates the object in place: its memoized copies see the new state.
                        for m in self.memo.values_mut() {
                            if let Obj::Dtype { id: mid, byteorder, .. } = m {
                                if *mid == id {
                                    *byteorder = Some(bo.clone());
                                }
                            }
                        }
                        Ok(Obj::Dtype { id, descr, byteorder: Some(bo) })
                    }
                    _ => Err(self.err(at, op, "unexpected numpy dtype state")),
                }
            }
            (t, _) => Err(self.err(at, op, format!("cannot set the state of a {}", t.type_name()))),
        }
    }
}

fn to_dataset(top: Obj, path: &Path) -> Result<Dataset> {
    let Obj::Dict(items) = top else {
        return Err(Error::format(path, format!("top-level object is a {}, expected a dict", top.type_name())));
    };
    let mut found: [Option<Vec<Sequence>>; 3] = [None, None, None];
    for (k, v) in items {
        let Obj::Str(k) = k else {
            return Err(Error::format(path, format!("top-level key is a {}, expected a str", k.type_name())));
        };
        let key = String::from_utf8_lossy(&k).into_owned();
        let Some(i) = Split::ALL.iter().position(|s| s.name() == key) else {
            return Err(Error::format(
                path,
                format!("unknown top-level key {key:?} (expected only train, valid, test)"),
            ));
        };
        if found[i].is_some() {
            return Err(Error::format(path, format!("duplicate top-level key {key:?}")));
        }
        found[i] = Some(to_split(v, Split::ALL[i], path)?);
    }
    let mut ds = Dataset::default();
    for (i, split) in Split::ALL.iter().enumerate() {
        *ds.split_mut(*split) = found[i]
            .take()
            .ok_or_else(|| Error::format(path, format!("missing top-level key \"{}\"", split.name())))?;
    }
    Ok(ds)
}

fn to_split(v: Obj, split: Split, path: &Path) -> Result<Vec<Sequence>> {
    let name = split.name();
    let Obj::List(seqs) = v else {
        return Err(Error::format(
            path,
            format!("split {name}: expected a list of sequences, found a {}", v.type_name()),
        ));
    };
    let mut out = Vec::with_capacity(seqs.len());
    for (si, s) in seqs.into_iter().enumerate() {
        let (Obj::List(frames) | Obj::Tuple(frames)) = s else {
            return Err(Error::format(
                path,
                format!("split {name}, sequence {si}: expected a list of frames, found a {}", s.type_name()),
            ));
        };
        let mut seq = Sequence { frames: Vec::with_capacity(frames.len()) };
        for (fi, f) in frames.into_iter().enumerate() {
            let at = || format!("split {name}, sequence {si}, frame {fi}");
            let (Obj::Tuple(notes) | Obj::List(notes)) = f else {
                return Err(Error::format(
                    path,
                    format!("{}: expected a tuple of pitches, found a {}", at(), f.type_name()),
                ));
            };
            let mut frame = Vec::with_capacity(notes.len());
            for n in notes {
                let p = match n {
                    Obj::Int(p) | Obj::NumpyInt(p) => p,
                    other => {
                        return Err(Error::format(
                            path,
                            format!("{}: pitch is a {}, not an integer", at(), other.type_name()),
                        ))
                    }
                };
                if p < PITCH_MIN as i64 || p > PITCH_MAX as i64 {
                    return Err(Error::format(path, format!("{}: pitch {p} outside {PITCH_MIN}..{PITCH_MAX}", at())));
                }
                frame.push(p as u8);
            }
            frame.sort_unstable();
            if let Some(w) = frame.windows(2).find(|w| w[0] == w[1]) {
                return Err(Error::format(path, format!("{}: duplicate pitch {}", at(), w[0])));
            }
            seq.frames.push(frame);
        }
        out.push(seq);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_int_frames() {
        // {'train': [[(60, 64), ()]], 'valid': [], 'test': []} written by hand with protocol 2.
        let mut good = vec![0x80, 2, b'}', b'('];
        good.extend_from_slice(b"U\x05train](](K<K@\x86)ee");
        good.extend_from_slice(b"U\x05valid]U\x04test]u.");
        let ds = parse(&good, Path::new("t.pkl")).unwrap();
        assert_eq!(ds.train, vec![Sequence { frames: vec![vec![60, 64], vec![]] }]);
        assert!(ds.valid.is_empty() && ds.test.is_empty());
    }

    #[test]
    fn rejects_unknown_opcode_with_offset() {
        let e = parse(&[0x80, 2, b'G', 0, 0], Path::new("t.pkl")).unwrap_err().to_string();
        assert!(e.contains("t.pkl") && e.contains("byte offset 2") && e.contains("BINFLOAT"), "{e}");
    }
}
