//! IEC 61131-3 types of the simulated PLC: layout, encoding of values from TOML, decoding to
//! JSON, and the data-type table entries TwinCAT uploads.

use std::collections::BTreeMap;

/// A primitive type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prim {
    Bool,
    Sint,
    Int,
    Dint,
    Lint,
    Usint,
    Uint,
    Udint,
    Ulint,
    Real,
    Lreal,
}

impl Prim {
    pub(crate) fn size(self) -> u32 {
        match self {
            Prim::Bool | Prim::Sint | Prim::Usint => 1,
            Prim::Int | Prim::Uint => 2,
            Prim::Dint | Prim::Udint | Prim::Real => 4,
            Prim::Lint | Prim::Ulint | Prim::Lreal => 8,
        }
    }

    /// ADS base type (`ADST_*`).
    pub(crate) fn base_type(self) -> u32 {
        match self {
            Prim::Bool => 33,
            Prim::Sint => 16,
            Prim::Int => 2,
            Prim::Dint => 3,
            Prim::Lint => 20,
            Prim::Usint => 17,
            Prim::Uint => 18,
            Prim::Udint => 19,
            Prim::Ulint => 21,
            Prim::Real => 4,
            Prim::Lreal => 5,
        }
    }

    fn is_signed(self) -> bool {
        matches!(self, Prim::Sint | Prim::Int | Prim::Dint | Prim::Lint)
    }

    fn is_float(self) -> bool {
        matches!(self, Prim::Real | Prim::Lreal)
    }

    /// The built-in type names and the primitive behind each.
    pub(crate) fn by_name(name: &str) -> Option<(Prim, &'static str)> {
        const NAMES: [(&str, Prim); 25] = [
            ("BOOL", Prim::Bool),
            ("SINT", Prim::Sint),
            ("INT", Prim::Int),
            ("DINT", Prim::Dint),
            ("LINT", Prim::Lint),
            ("USINT", Prim::Usint),
            ("BYTE", Prim::Usint),
            ("UINT", Prim::Uint),
            ("WORD", Prim::Uint),
            ("UDINT", Prim::Udint),
            ("DWORD", Prim::Udint),
            ("ULINT", Prim::Ulint),
            ("LWORD", Prim::Ulint),
            ("REAL", Prim::Real),
            ("LREAL", Prim::Lreal),
            ("TIME", Prim::Udint),
            ("TOD", Prim::Udint),
            ("TIME_OF_DAY", Prim::Udint),
            ("DATE", Prim::Udint),
            ("DT", Prim::Udint),
            ("DATE_AND_TIME", Prim::Udint),
            ("LTIME", Prim::Ulint),
            ("LDATE", Prim::Ulint),
            ("LDT", Prim::Ulint),
            ("LTOD", Prim::Ulint),
        ];
        let upper = name.trim().to_ascii_uppercase();
        NAMES
            .iter()
            .find(|(n, _)| *n == upper)
            .map(|(n, p)| (*p, *n))
    }
}

/// A resolved type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ty {
    /// A primitive under one of its names (`DWORD`, `TIME`, ...).
    Prim(Prim, &'static str),
    /// STRING(n) / WSTRING(n): n characters plus the terminator.
    Str {
        chars: u32,
        wide: bool,
    },
    Array {
        dims: Vec<(i32, u32)>,
        elem: Box<Ty>,
    },
    Struct {
        name: String,
        fields: Vec<(String, Ty, u32)>,
        size: u32,
        align: u32,
    },
    Alias {
        name: String,
        target: Box<Ty>,
    },
    Enum {
        name: String,
        base: Prim,
        members: Vec<(String, i64)>,
    },
}

/// How deep declared types may nest (a state file could declare them circularly).
const MAX_NESTING: usize = 64;

/// The largest value the simulator lays out (bounds arrays written in a state file).
const MAX_TYPE_SIZE: u64 = 16 * 1024 * 1024;

impl Ty {
    pub(crate) fn size(&self) -> u32 {
        match self {
            Ty::Prim(p, _) => p.size(),
            Ty::Str { chars, wide } => (chars + 1) * if *wide { 2 } else { 1 },
            Ty::Array { dims, elem } => {
                let n: u32 = dims.iter().map(|&(_, c)| c).product();
                n * elem.size()
            }
            Ty::Struct { size, .. } => *size,
            Ty::Alias { target, .. } => target.size(),
            Ty::Enum { base, .. } => base.size(),
        }
    }

    pub(crate) fn align(&self) -> u32 {
        match self {
            Ty::Prim(p, _) => p.size(),
            Ty::Str { wide, .. } => {
                if *wide {
                    2
                } else {
                    1
                }
            }
            Ty::Array { elem, .. } => elem.align(),
            Ty::Struct { align, .. } => *align,
            Ty::Alias { target, .. } => target.align(),
            Ty::Enum { base, .. } => base.size(),
        }
    }

    /// The type's name as TwinCAT writes it.
    pub(crate) fn name(&self) -> String {
        match self {
            Ty::Prim(_, name) => (*name).to_owned(),
            Ty::Str { chars, wide } => {
                format!("{}({chars})", if *wide { "WSTRING" } else { "STRING" })
            }
            Ty::Array { dims, elem } => {
                let ranges: Vec<String> = dims
                    .iter()
                    .map(|&(lo, n)| format!("{lo}..{}", i64::from(lo) + i64::from(n) - 1))
                    .collect();
                format!("ARRAY [{}] OF {}", ranges.join(","), elem.name())
            }
            Ty::Struct { name, .. } | Ty::Alias { name, .. } | Ty::Enum { name, .. } => {
                name.clone()
            }
        }
    }

    /// ADS base type.
    pub(crate) fn base_type(&self) -> u32 {
        match self {
            Ty::Prim(p, _) => p.base_type(),
            Ty::Str { wide: false, .. } => 30,
            Ty::Str { wide: true, .. } => 31,
            Ty::Array { elem, .. } => elem.base_type(),
            Ty::Struct { .. } => 65,
            Ty::Alias { target, .. } => target.base_type(),
            Ty::Enum { base, .. } => base.base_type(),
        }
    }
}

/// How a user type is declared in the state file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TypeDecl {
    Struct(Vec<(String, String)>),
    Alias(String),
    Enum {
        base: String,
        members: Vec<(String, i64)>,
    },
}

/// Resolves type names: built-ins, STRING(n), ARRAY [..] OF T and the declared types.
pub(crate) struct Resolver<'a> {
    pub decls: &'a BTreeMap<String, (String, TypeDecl)>,
}

impl Resolver<'_> {
    pub(crate) fn resolve(&self, name: &str) -> Result<Ty, String> {
        self.resolve_at(name, 0)
    }

    fn resolve_at(&self, name: &str, depth: usize) -> Result<Ty, String> {
        // Deep enough for state files that test a collector's own nesting bound (16).
        if depth > MAX_NESTING {
            return Err(format!(
                "type {name:?} nests more than {MAX_NESTING} levels deep, or refers to itself"
            ));
        }
        let name = name.trim();
        if let Some((prim, canonical)) = Prim::by_name(name) {
            return Ok(Ty::Prim(prim, canonical));
        }
        let upper = name.to_ascii_uppercase();
        for (prefix, wide) in [("WSTRING", true), ("STRING", false)] {
            if let Some(rest) = upper.strip_prefix(prefix) {
                let rest = rest.trim();
                let chars = if rest.is_empty() {
                    80
                } else {
                    rest.strip_prefix('(')
                        .and_then(|r| r.strip_suffix(')'))
                        .and_then(|n| n.trim().parse::<u32>().ok())
                        .filter(|n| (1..=65_535).contains(n))
                        .ok_or_else(|| format!("bad string type {name:?} (STRING(1..65535))"))?
                };
                return Ok(Ty::Str { chars, wide });
            }
        }
        if upper.starts_with("ARRAY") {
            let (dims, elem) = parse_array(name)
                .ok_or_else(|| format!("bad array type {name:?} (ARRAY [a..b, ...] OF T)"))?;
            let elem = self.resolve_at(&elem, depth + 1)?;
            let count: u64 = dims.iter().map(|&(_, c)| u64::from(c)).product();
            if count * u64::from(elem.size()) > MAX_TYPE_SIZE {
                return Err(format!("{name} is larger than {MAX_TYPE_SIZE} bytes"));
            }
            return Ok(Ty::Array {
                dims,
                elem: Box::new(elem),
            });
        }
        let (declared_name, decl) = self
            .decls
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown type {name:?}"))?;
        match decl {
            TypeDecl::Alias(target) => Ok(Ty::Alias {
                name: declared_name.clone(),
                target: Box::new(self.resolve_at(target, depth + 1)?),
            }),
            TypeDecl::Enum { base, members } => match self.resolve_at(base, depth + 1)? {
                Ty::Prim(p, _) if !p.is_float() && p != Prim::Bool => Ok(Ty::Enum {
                    name: declared_name.clone(),
                    base: p,
                    members: members.clone(),
                }),
                _ => Err(format!(
                    "enum {declared_name}: base {base} is not an integer type"
                )),
            },
            TypeDecl::Struct(fields) => {
                let mut out = Vec::with_capacity(fields.len());
                let mut offset = 0u32;
                let mut align = 1u32;
                for (fname, ftype) in fields {
                    let ty = self
                        .resolve_at(ftype, depth + 1)
                        .map_err(|e| format!("{declared_name}.{fname}: {e}"))?;
                    let a = ty.align().clamp(1, 8);
                    align = align.max(a);
                    offset = offset.div_ceil(a) * a;
                    let size = ty.size();
                    out.push((fname.clone(), ty, offset));
                    offset = offset
                        .checked_add(size)
                        .filter(|&o| u64::from(o) <= MAX_TYPE_SIZE)
                        .ok_or_else(|| format!("{declared_name} is too large"))?;
                }
                Ok(Ty::Struct {
                    name: declared_name.clone(),
                    fields: out,
                    size: offset.div_ceil(align) * align,
                    align,
                })
            }
        }
    }
}

/// Parses `ARRAY [1..10, 0..2] OF REAL`.
pub(crate) fn parse_array(name: &str) -> Option<(Vec<(i32, u32)>, String)> {
    let rest = name.trim();
    if !rest.get(..5)?.eq_ignore_ascii_case("ARRAY") {
        return None;
    }
    let rest = rest.get(5..)?.trim_start().strip_prefix('[')?;
    let close = rest.find(']')?;
    let after = rest.get(close + 1..)?.trim_start();
    if !after.get(..2)?.eq_ignore_ascii_case("OF") {
        return None;
    }
    let elem = after.get(2..)?.trim().to_owned();
    let mut dims = Vec::new();
    for range in rest.get(..close)?.split(',') {
        let (lo, hi) = range.split_once("..")?;
        let lo: i32 = lo.trim().parse().ok()?;
        let hi: i32 = hi.trim().parse().ok()?;
        let n = u32::try_from(i64::from(hi) - i64::from(lo) + 1).ok()?;
        if n == 0 {
            return None;
        }
        dims.push((lo, n));
    }
    (!dims.is_empty() && !elem.is_empty()).then_some((dims, elem))
}

fn put_prim(p: Prim, v: &toml::Value, out: &mut [u8]) -> Result<(), String> {
    let int = |v: &toml::Value| -> Result<i128, String> {
        match v {
            toml::Value::Integer(i) => Ok(i128::from(*i)),
            toml::Value::Boolean(b) => Ok(i128::from(*b)),
            other => Err(format!("expected an integer, got {other}")),
        }
    };
    let bytes: Vec<u8> = match p {
        Prim::Bool => match v {
            toml::Value::Boolean(b) => vec![u8::from(*b)],
            toml::Value::Integer(0) => vec![0],
            toml::Value::Integer(1) => vec![1],
            other => return Err(format!("expected true or false, got {other}")),
        },
        Prim::Real | Prim::Lreal => {
            let f = match v {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                other => return Err(format!("expected a number, got {other}")),
            };
            if p == Prim::Real {
                (f as f32).to_le_bytes().to_vec()
            } else {
                f.to_le_bytes().to_vec()
            }
        }
        _ => {
            let i = int(v)?;
            let bits = p.size() * 8;
            let (lo, hi) = if p.is_signed() {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            if i < lo || i > hi {
                return Err(format!("{i} is out of range {lo}..={hi}"));
            }
            let le = i.to_le_bytes();
            le.get(..p.size() as usize).unwrap_or_default().to_vec()
        }
    };
    if bytes.len() != out.len() {
        return Err("internal size mismatch".to_owned());
    }
    out.copy_from_slice(&bytes);
    Ok(())
}

/// Encodes a TOML value into `out` (exactly the type's size). A structure given as a table
/// may name only some fields; the others keep their bytes.
pub(crate) fn encode(ty: &Ty, v: &toml::Value, out: &mut [u8]) -> Result<(), String> {
    match ty {
        Ty::Prim(p, _) => put_prim(*p, v, out),
        Ty::Alias { target, .. } => encode(target, v, out),
        Ty::Enum {
            name,
            base,
            members,
        } => {
            let value = match v {
                toml::Value::String(s) => members
                    .iter()
                    .find(|(m, _)| m.eq_ignore_ascii_case(s))
                    .map(|(_, n)| *n)
                    .ok_or_else(|| format!("{s:?} is not a member of {name}"))?,
                toml::Value::Integer(i) => *i,
                other => return Err(format!("expected a member of {name}, got {other}")),
            };
            put_prim(*base, &toml::Value::Integer(value), out)
        }
        Ty::Str { chars, wide } => {
            let toml::Value::String(s) = v else {
                return Err(format!("expected a string, got {v}"));
            };
            let encoded: Vec<u8> = if *wide {
                s.encode_utf16().flat_map(u16::to_le_bytes).collect()
            } else {
                s.chars()
                    .map(|c| {
                        u8::try_from(u32::from(c))
                            .map_err(|_| format!("{c:?} is not a Latin-1 character"))
                    })
                    .collect::<Result<_, _>>()?
            };
            let unit = if *wide { 2 } else { 1 };
            if encoded.len() > (*chars as usize) * unit {
                return Err(format!("{s:?} is longer than {chars} characters"));
            }
            out.fill(0);
            out.get_mut(..encoded.len())
                .ok_or("string does not fit")?
                .copy_from_slice(&encoded);
            Ok(())
        }
        Ty::Array { dims, elem } => encode_dims(dims, elem, v, out),
        Ty::Struct { name, fields, .. } => {
            let toml::Value::Table(table) = v else {
                return Err(format!("expected a table of {name}'s fields, got {v}"));
            };
            for (key, value) in table {
                let (_, fty, offset) = fields
                    .iter()
                    .find(|(f, ..)| f.eq_ignore_ascii_case(key))
                    .ok_or_else(|| format!("{name} has no field {key}"))?;
                let start = *offset as usize;
                let part = out
                    .get_mut(start..start + fty.size() as usize)
                    .ok_or("field out of range")?;
                encode(fty, value, part).map_err(|e| format!("{name}.{key}: {e}"))?;
            }
            Ok(())
        }
    }
}

fn encode_dims(
    dims: &[(i32, u32)],
    elem: &Ty,
    v: &toml::Value,
    out: &mut [u8],
) -> Result<(), String> {
    let Some((&(_, count), inner)) = dims.split_first() else {
        return encode(elem, v, out);
    };
    let toml::Value::Array(items) = v else {
        return Err(format!("expected an array of {count}, got {v}"));
    };
    if items.len() != count as usize {
        return Err(format!("expected {count} elements, got {}", items.len()));
    }
    let stride = out.len() / count as usize;
    for (item, chunk) in items.iter().zip(out.chunks_mut(stride)) {
        encode_dims(inner, elem, item, chunk)?;
    }
    Ok(())
}

/// Decodes memory as JSON, for the `get` command.
pub(crate) fn decode(ty: &Ty, bytes: &[u8]) -> serde_json::Value {
    use serde_json::Value as J;
    fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        for (d, s) in a.iter_mut().zip(b) {
            *d = *s;
        }
        a
    }
    match ty {
        Ty::Prim(p, _) => match p {
            Prim::Bool => J::Bool(bytes.first().is_some_and(|b| *b != 0)),
            Prim::Sint => J::from(i8::from_le_bytes(arr(bytes))),
            Prim::Int => J::from(i16::from_le_bytes(arr(bytes))),
            Prim::Dint => J::from(i32::from_le_bytes(arr(bytes))),
            Prim::Lint => J::from(i64::from_le_bytes(arr(bytes))),
            Prim::Usint => J::from(u8::from_le_bytes(arr(bytes))),
            Prim::Uint => J::from(u16::from_le_bytes(arr(bytes))),
            Prim::Udint => J::from(u32::from_le_bytes(arr(bytes))),
            Prim::Ulint => J::from(u64::from_le_bytes(arr(bytes))),
            Prim::Real => J::from(f64::from(f32::from_le_bytes(arr(bytes)))),
            Prim::Lreal => J::from(f64::from_le_bytes(arr(bytes))),
        },
        Ty::Alias { target, .. } => decode(target, bytes),
        Ty::Enum { base, members, .. } => {
            let n = decode(&Ty::Prim(*base, ""), bytes);
            match members.iter().find(|(_, v)| Some(*v) == n.as_i64()) {
                Some((m, _)) => J::String(m.clone()),
                None => n,
            }
        }
        Ty::Str { wide: false, .. } => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            J::String(bytes.iter().take(end).map(|&b| char::from(b)).collect())
        }
        Ty::Str { wide: true, .. } => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes(arr(c)))
                .take_while(|&u| u != 0)
                .collect();
            J::String(String::from_utf16_lossy(&units))
        }
        Ty::Array { dims, elem } => decode_dims(dims, elem, bytes),
        Ty::Struct { fields, .. } => J::Object(
            fields
                .iter()
                .map(|(name, fty, offset)| {
                    let start = *offset as usize;
                    let part = bytes
                        .get(start..start + fty.size() as usize)
                        .unwrap_or_default();
                    (name.clone(), decode(fty, part))
                })
                .collect(),
        ),
    }
}

fn decode_dims(dims: &[(i32, u32)], elem: &Ty, bytes: &[u8]) -> serde_json::Value {
    let Some((&(_, count), inner)) = dims.split_first() else {
        return decode(elem, bytes);
    };
    let stride = (bytes.len() / count.max(1) as usize).max(1);
    serde_json::Value::Array(
        bytes
            .chunks(stride)
            .take(count as usize)
            .map(|c| decode_dims(inner, elem, c))
            .collect(),
    )
}

/// Data-type flag: a data type entry.
const DT_FLAG_DATATYPE: u32 = 0x01;
/// Data-type flag: a data item (a structure's field).
const DT_FLAG_DATAITEM: u32 = 0x02;
/// Data-type flag: enum infos follow.
const DT_FLAG_ENUM_INFOS: u32 = 0x2000;

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn len16(s: &str) -> u16 {
    u16::try_from(s.len()).unwrap_or(u16::MAX)
}

/// What an entry carries besides its size: type name, array bounds, fields, enum members.
type EntryParts = (
    String,
    Vec<(i32, u32)>,
    Vec<(String, Ty, u32)>,
    Option<(Prim, Vec<(String, i64)>)>,
);

/// One data-type table entry (TwinCAT's AdsDatatypeEntry): `name` with type `ty`, placed at
/// `offset` when it is a field (`item`).
pub(crate) fn datatype_entry(
    name: &str,
    ty: &Ty,
    offset: u32,
    item: bool,
    comment: &str,
) -> Vec<u8> {
    let (type_name, dims, fields, enum_members): EntryParts = match ty {
        _ if item => (
            ty.name(),
            match ty {
                Ty::Array { dims, .. } => dims.clone(),
                _ => Vec::new(),
            },
            Vec::new(),
            None,
        ),
        Ty::Array { dims, elem } => (elem.name(), dims.clone(), Vec::new(), None),
        Ty::Struct { fields, .. } => (String::new(), Vec::new(), fields.clone(), None),
        Ty::Alias { target, .. } => (target.name(), Vec::new(), Vec::new(), None),
        Ty::Enum { base, members, .. } => (
            Ty::Prim(*base, "").base_type_name(),
            Vec::new(),
            Vec::new(),
            Some((*base, members.clone())),
        ),
        other => (other.name(), Vec::new(), Vec::new(), None),
    };
    let mut flags = if item {
        DT_FLAG_DATAITEM
    } else {
        DT_FLAG_DATATYPE
    };
    if enum_members.is_some() {
        flags |= DT_FLAG_ENUM_INFOS;
    }
    let mut body = Vec::new();
    put_u32(&mut body, 1); // version
    put_u32(&mut body, 0); // hash value
    put_u32(&mut body, 0); // type hash value
    put_u32(&mut body, ty.size());
    put_u32(&mut body, offset);
    put_u32(&mut body, ty.base_type());
    put_u32(&mut body, flags);
    put_u16(&mut body, len16(name));
    put_u16(&mut body, len16(&type_name));
    put_u16(&mut body, len16(comment));
    put_u16(&mut body, u16::try_from(dims.len()).unwrap_or(0));
    put_u16(&mut body, u16::try_from(fields.len()).unwrap_or(0));
    for s in [name, type_name.as_str(), comment] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    for (lo, n) in &dims {
        body.extend_from_slice(&lo.to_le_bytes());
        put_u32(&mut body, *n);
    }
    for (fname, fty, foff) in &fields {
        body.extend(datatype_entry(fname, fty, *foff, true, ""));
    }
    if let Some((base, members)) = enum_members {
        put_u16(&mut body, u16::try_from(members.len()).unwrap_or(0));
        for (m, v) in members {
            body.push(u8::try_from(m.len()).unwrap_or(u8::MAX));
            body.extend_from_slice(m.as_bytes());
            body.push(0);
            let le = v.to_le_bytes();
            body.extend_from_slice(le.get(..base.size() as usize).unwrap_or_default());
        }
    }
    let mut entry = Vec::with_capacity(body.len() + 4);
    put_u32(
        &mut entry,
        u32::try_from(body.len() + 4).unwrap_or(u32::MAX),
    );
    entry.extend(body);
    entry
}

impl Ty {
    /// The name of an enumeration's base type.
    fn base_type_name(&self) -> String {
        match self {
            Ty::Prim(p, _) => match p {
                Prim::Bool => "BOOL",
                Prim::Sint => "SINT",
                Prim::Int => "INT",
                Prim::Dint => "DINT",
                Prim::Lint => "LINT",
                Prim::Usint => "USINT",
                Prim::Uint => "UINT",
                Prim::Udint => "UDINT",
                Prim::Ulint => "ULINT",
                Prim::Real => "REAL",
                Prim::Lreal => "LREAL",
            }
            .to_owned(),
            other => other.name(),
        }
    }
}

/// The array and structure types a type uses (itself included), for the data-type table.
pub(crate) fn collect_exported(ty: &Ty, out: &mut Vec<Ty>) {
    match ty {
        Ty::Array { elem, .. } => {
            collect_exported(elem, out);
            if !out.contains(ty) {
                out.push(ty.clone());
            }
        }
        Ty::Struct { fields, .. } => {
            for (_, f, _) in fields {
                collect_exported(f, out);
            }
            if !out.contains(ty) {
                out.push(ty.clone());
            }
        }
        Ty::Alias { target, .. } => {
            collect_exported(target, out);
            if !out.contains(ty) {
                out.push(ty.clone());
            }
        }
        Ty::Enum { .. } => {
            if !out.contains(ty) {
                out.push(ty.clone());
            }
        }
        Ty::Prim(..) | Ty::Str { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, (String, TypeDecl)> {
        let mut d = BTreeMap::new();
        d.insert(
            "st_recipe".into(),
            (
                "ST_Recipe".into(),
                TypeDecl::Struct(vec![
                    ("Active".into(), "BOOL".into()),
                    ("Volume".into(), "LREAL".into()),
                    ("Name".into(), "STRING(10)".into()),
                    ("Mode".into(), "E_Mode".into()),
                ]),
            ),
        );
        d.insert(
            "e_mode".into(),
            (
                "E_Mode".into(),
                TypeDecl::Enum {
                    base: "INT".into(),
                    members: vec![("Auto".into(), 0), ("Manual".into(), 1)],
                },
            ),
        );
        d
    }

    #[test]
    fn structures_are_laid_out_with_natural_alignment() {
        let d = decls();
        let r = Resolver { decls: &d };
        let ty = r.resolve("ST_Recipe").expect("resolves");
        let Ty::Struct { fields, size, .. } = &ty else {
            panic!("a struct")
        };
        let offsets: Vec<u32> = fields.iter().map(|f| f.2).collect();
        assert_eq!(offsets, vec![0, 8, 16, 28]);
        assert_eq!(*size, 32);
        let mut mem = vec![0u8; 32];
        let v: toml::Value = toml::from_str::<toml::Table>(
            "v = { Volume = 500.5, Name = \"Cola\", Mode = \"Manual\", Active = true }",
        )
        .expect("toml")["v"]
            .clone();
        encode(&ty, &v, &mut mem).expect("encodes");
        assert_eq!(
            decode(&ty, &mem),
            serde_json::json!({"Active": true, "Volume": 500.5, "Name": "Cola", "Mode": "Manual"})
        );
        assert!(r.resolve("ARRAY [1..3] OF INT").is_ok());
        assert!(r.resolve("ST_Nope").is_err());
        assert!(r.resolve("STRING(0)").is_err());
    }

    #[test]
    fn values_are_range_checked() {
        let mut b = [0u8; 2];
        assert!(put_prim(Prim::Int, &toml::Value::Integer(40000), &mut b).is_err());
        assert!(put_prim(Prim::Uint, &toml::Value::Integer(-1), &mut b).is_err());
        assert!(put_prim(Prim::Uint, &toml::Value::Integer(65535), &mut b).is_ok());
    }
}
