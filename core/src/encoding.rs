//! The canonical encoding, version 1.
//!
//! A digest is only as trustworthy as the bytes it is taken over. These bytes depend only on
//! the captured items: never on the order the controller answered in, the host, the time, or
//! how a float happens to be formatted. Two agents that see the same device state produce the
//! same bytes, and so the same signature. Changing anything below is a new encoding version.
//!
//! ```text
//! snapshot := magic version count item*
//!   magic   := "OTDRIFT\0"                    8 bytes
//!   version := 0x01                            1 byte
//!   count   := u32                             number of items
//!   item*   := items sorted by path, byte-wise, paths unique
//! item     := path:str class:u8 value
//!   class   := 0x01 identity | 0x02 program | 0x03 setpoint | 0x04 history
//! str      := len:u32 utf8-bytes
//! value    := tag:u8 payload
//!   0x00 null       (no payload)
//!   0x01 bool       u8 0x00 | 0x01
//!   0x02 int        i64
//!   0x03 uint       u64
//!   0x04 f32        u32 IEEE-754 bits; every NaN as 0x7fc00000, -0.0 as 0.0
//!   0x05 f64        u64 IEEE-754 bits; every NaN as 0x7ff8000000000000, -0.0 as 0.0
//!   0x06 text       str
//!   0x07 bytes      len:u32 bytes
//!   0x08 list       count:u32 value*
//!   0x09 map        count:u32 (key:str value)*   keys sorted byte-wise, unique
//!   0x0a unavailable  reason:str
//! ```
//!
//! The content changes between two snapshots (what an approver reviewed, see
//! [`crate::Diff::content_digest`]) have an encoding of their own:
//!
//! ```text
//! diff     := magic version 0xd1 count change*
//!   0xd1    := marks a diff, so no diff encoding is ever a snapshot encoding
//!   count   := u32                             number of changes
//!   change* := content changes only (classes program and setpoint), sorted by path
//! change   := path:str before:opt after:opt
//! opt      := 0x00 (absent) | 0x01 value
//! ```
//!
//! All integers are big-endian. Digests (see [`crate::Snapshot::digests`]):
//! - the **signature** is BLAKE3 of the whole snapshot encoding;
//! - a **class digest** is BLAKE3 of the snapshot encoding of only that class's items;
//! - the **change signature** is BLAKE3 of the snapshot encoding of only the content items
//!   (classes program and setpoint): what a change delivers, the same on every controller that
//!   runs it, whatever its serial number or change counters;
//! - an **item digest** is BLAKE3 of the `item` encoding.
//!
//! Decoding is strict: it accepts exactly the bytes the encoder produces (sorted unique paths
//! and keys, canonical floats, valid UTF-8, no trailing bytes), so every snapshot has one
//! encoding and every accepted encoding one snapshot. Lengths are checked against the bytes
//! that remain before anything is allocated.

use std::collections::BTreeMap;

use crate::item::{Class, Item};
use crate::snapshot::Snapshot;
use crate::value::{Value, canonical_f32_bits, canonical_f64_bits};

/// The encoding version this build writes and reads.
pub const ENCODING_VERSION: u8 = 1;

/// The first bytes of every encoded snapshot.
pub const MAGIC: &[u8; 8] = b"OTDRIFT\0";

/// How deeply lists and maps may nest; deeper data is refused rather than risking the stack.
pub const MAX_DEPTH: usize = 32;

const TAG_NULL: u8 = 0x00;
const TAG_BOOL: u8 = 0x01;
const TAG_INT: u8 = 0x02;
const TAG_UINT: u8 = 0x03;
const TAG_F32: u8 = 0x04;
const TAG_F64: u8 = 0x05;
const TAG_TEXT: u8 = 0x06;
const TAG_BYTES: u8 = 0x07;
const TAG_LIST: u8 = 0x08;
const TAG_MAP: u8 = 0x09;
const TAG_UNAVAILABLE: u8 = 0x0a;

/// Why bytes are not a canonical snapshot encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not start with the magic.
    #[error("not an otdrift snapshot encoding (bad magic)")]
    BadMagic,
    /// An encoding version this build does not know.
    #[error(
        "snapshot encoding version {0} is not supported (this build reads version {ENCODING_VERSION})"
    )]
    UnsupportedVersion(u8),
    /// The bytes end inside a field.
    #[error("snapshot encoding truncated at byte {0}")]
    Truncated(usize),
    /// Bytes follow the last item.
    #[error("{0} trailing bytes after the last item")]
    TrailingBytes(usize),
    /// A value tag that version 1 does not define.
    #[error("unknown value tag 0x{tag:02x} at byte {at}")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
        /// Its offset.
        at: usize,
    },
    /// A class byte other than 1, 2 or 3.
    #[error("unknown item class 0x{class:02x} at byte {at}")]
    UnknownClass {
        /// The class byte.
        class: u8,
        /// Its offset.
        at: usize,
    },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 in a string at byte {0}")]
    InvalidUtf8(usize),
    /// Paths or map keys out of order or repeated: not the canonical form.
    #[error("keys out of canonical order or repeated at byte {0}")]
    NotCanonicalOrder(usize),
    /// A float, boolean or path that the encoder would have written differently.
    #[error("non-canonical value at byte {0}")]
    NotCanonicalValue(usize),
    /// Lists or maps nested deeper than [`MAX_DEPTH`].
    #[error("values nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

pub(crate) fn write_snapshot<'a>(
    out: &mut Vec<u8>,
    items: impl ExactSizeIterator<Item = &'a Item>,
) {
    out.extend_from_slice(MAGIC);
    out.push(ENCODING_VERSION);
    write_len(out, items.len());
    for item in items {
        write_item(out, item);
    }
}

/// The digests of several subsets of one snapshot's items in one pass: each item is encoded
/// once, and each subset's digest hashes the header for its item count followed by its
/// items' encodings, which is byte for byte the canonical encoding of that subset as a
/// snapshot of its own (what [`write_snapshot`] writes). `subsets` says per class whether a
/// subset holds it.
pub(crate) fn subset_digests<'a, const N: usize>(
    items: impl ExactSizeIterator<Item = &'a Item>,
    subsets: [fn(Class) -> bool; N],
) -> [crate::Digest; N] {
    let mut body = Vec::with_capacity(items.len() * 32);
    let mut ends = Vec::with_capacity(items.len());
    for item in items {
        write_item(&mut body, item);
        ends.push((body.len(), item.class()));
    }
    subsets.map(|holds| {
        let count = ends.iter().filter(|(_, class)| holds(*class)).count();
        let mut header = Vec::with_capacity(MAGIC.len() + 6);
        header.extend_from_slice(MAGIC);
        header.push(ENCODING_VERSION);
        write_len(&mut header, count);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header);
        let mut start = 0;
        for &(end, class) in &ends {
            if holds(class) {
                hasher.update(&body[start..end]);
            }
            start = end;
        }
        crate::Digest::from_bytes(*hasher.finalize().as_bytes())
    })
}

/// The marker byte after magic and version that makes an encoding a diff encoding.
pub const DIFF_MARKER: u8 = 0xd1;

/// Writes the diff encoding of `changes` (already filtered and in path order).
pub(crate) fn write_diff<'a>(
    out: &mut Vec<u8>,
    changes: impl ExactSizeIterator<Item = (&'a str, Option<&'a Value>, Option<&'a Value>)>,
) {
    out.extend_from_slice(MAGIC);
    out.push(ENCODING_VERSION);
    out.push(DIFF_MARKER);
    write_len(out, changes.len());
    for (path, before, after) in changes {
        write_str(out, path);
        for side in [before, after] {
            match side {
                None => out.push(0x00),
                Some(v) => {
                    out.push(0x01);
                    write_value(out, v);
                }
            }
        }
    }
}

pub(crate) fn write_item(out: &mut Vec<u8>, item: &Item) {
    write_str(out, item.path());
    out.push(item.class().code());
    write_value(out, item.value());
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    // Items, strings and collections are bounded far below 4 GiB by the collectors; a length
    // that does not fit is a programming error, not device data, so saturating keeps the
    // encoder total while the strict decoder would reject such bytes.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    write_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(v) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*v));
        }
        Value::Int(v) => {
            out.push(TAG_INT);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::UInt(v) => {
            out.push(TAG_UINT);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::F32(v) => {
            out.push(TAG_F32);
            out.extend_from_slice(&canonical_f32_bits(*v).to_be_bytes());
        }
        Value::F64(v) => {
            out.push(TAG_F64);
            out.extend_from_slice(&canonical_f64_bits(*v).to_be_bytes());
        }
        Value::Text(v) => {
            out.push(TAG_TEXT);
            write_str(out, v);
        }
        Value::Bytes(v) => {
            out.push(TAG_BYTES);
            write_len(out, v.len());
            out.extend_from_slice(v);
        }
        Value::List(items) => {
            out.push(TAG_LIST);
            write_len(out, items.len());
            for item in items {
                write_value(out, item);
            }
        }
        Value::Map(fields) => {
            out.push(TAG_MAP);
            write_len(out, fields.len());
            for (k, v) in fields {
                write_str(out, k);
                write_value(out, v);
            }
        }
        Value::Unavailable(reason) => {
            out.push(TAG_UNAVAILABLE);
            write_str(out, reason);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Reads a length and checks it against what is left, given that each counted element
    /// takes at least `min_element` bytes: a hostile length cannot make us allocate.
    fn len(&mut self, min_element: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let len = usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| DecodeError::Truncated(at))?;
        if len.saturating_mul(min_element) > self.remaining() {
            return Err(DecodeError::Truncated(at));
        }
        Ok(len)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.len(1)?;
        let at = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8(at))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let at = self.pos;
        let tag = self.u8()?;
        Ok(match tag {
            TAG_NULL => Value::Null,
            TAG_BOOL => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(DecodeError::NotCanonicalValue(at)),
            },
            TAG_INT => Value::Int(i64::from_be_bytes(self.array()?)),
            TAG_UINT => Value::UInt(u64::from_be_bytes(self.array()?)),
            TAG_F32 => {
                let bits = u32::from_be_bytes(self.array()?);
                let v = f32::from_bits(bits);
                if canonical_f32_bits(v) != bits {
                    return Err(DecodeError::NotCanonicalValue(at));
                }
                Value::F32(v)
            }
            TAG_F64 => {
                let bits = u64::from_be_bytes(self.array()?);
                let v = f64::from_bits(bits);
                if canonical_f64_bits(v) != bits {
                    return Err(DecodeError::NotCanonicalValue(at));
                }
                Value::F64(v)
            }
            TAG_TEXT => Value::Text(self.string()?),
            TAG_BYTES => {
                let len = self.len(1)?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            TAG_LIST => {
                let count = self.len(1)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            TAG_MAP => {
                // A field is at least a 4-byte key length and a 1-byte tag.
                let count = self.len(5)?;
                let mut fields = BTreeMap::new();
                let mut last: Option<String> = None;
                for _ in 0..count {
                    let key_at = self.pos;
                    let key = self.string()?;
                    if last
                        .as_ref()
                        .is_some_and(|prev| prev.as_str() >= key.as_str())
                    {
                        return Err(DecodeError::NotCanonicalOrder(key_at));
                    }
                    let value = self.value(depth + 1)?;
                    last = Some(key.clone());
                    fields.insert(key, value);
                }
                Value::Map(fields)
            }
            TAG_UNAVAILABLE => Value::Unavailable(self.string()?),
            tag => return Err(DecodeError::UnknownTag { tag, at }),
        })
    }
}

pub(crate) fn read_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(MAGIC.len()).map_err(|_| DecodeError::BadMagic)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8()?;
    if version != ENCODING_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // An item is at least a 4-byte path length, a class byte and a tag byte.
    let count = r.len(6)?;
    let mut snapshot = Snapshot::new();
    let mut last: Option<String> = None;
    for _ in 0..count {
        let at = r.pos;
        let path = r.string()?;
        if last
            .as_ref()
            .is_some_and(|prev| prev.as_str() >= path.as_str())
        {
            return Err(DecodeError::NotCanonicalOrder(at));
        }
        let class_at = r.pos;
        let code = r.u8()?;
        let class = Class::from_code(code).ok_or(DecodeError::UnknownClass {
            class: code,
            at: class_at,
        })?;
        let value = r.value(0)?;
        last = Some(path.clone());
        let item = Item::new(path, class, value).map_err(|_| DecodeError::NotCanonicalValue(at))?;
        snapshot
            .insert(item)
            .map_err(|_| DecodeError::NotCanonicalOrder(at))?;
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(snapshot)
}
