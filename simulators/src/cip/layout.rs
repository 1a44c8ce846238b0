//! How the simulated controller lays its types out and encodes its values: UDT templates
//! (member offsets, alignment, BOOL hosts), STRING, and values to and from bytes, TOML and
//! command text.

use std::collections::BTreeMap;

use super::state::{
    CipState, FIRST_UDT_TEMPLATE, Fnv, MAX_ELEMENTS, MAX_NESTING, STRING_CAPACITY, STRING_TEMPLATE,
    Tag, Ty, Udt, Val, atomic_size,
};

/// A laid-out UDT: what the Template object reports.
#[derive(Clone, Debug)]
pub(crate) struct TemplateLayout {
    pub instance: u16,
    pub size: u32,
    pub handle: u16,
    /// (name, type word, info, offset, bit) including hidden BOOL hosts.
    pub members: Vec<LaidMember>,
    /// The definition Read Template returns.
    pub definition: Vec<u8>,
}

/// A member with its place in the structure.
#[derive(Clone, Debug)]
pub(crate) struct LaidMember {
    pub name: String,
    pub ty: Option<Ty>,
    pub type_word: u16,
    pub info: u16,
    pub offset: u32,
    pub bit: Option<u8>,
    pub dims: u16,
}

impl CipState {
    /// Alignment and size of a type.
    pub(crate) fn size_align(&self, ty: &Ty, depth: usize) -> Result<(u32, u32), String> {
        if depth > MAX_NESTING {
            return Err("UDTs nest too deeply (or contain themselves)".to_owned());
        }
        Ok(match ty {
            Ty::Atomic(code) => {
                let s = atomic_size(*code) as u32;
                (s, s)
            }
            Ty::String => (88, 4),
            Ty::Udt(name) => {
                let udt = self
                    .udt(name)
                    .ok_or_else(|| format!("unknown type {name}"))?;
                let layout = self.layout_udt(udt, 0, depth + 1)?;
                let align = self.max_align(udt, depth + 1)?;
                (layout.size, align)
            }
        })
    }

    pub(crate) fn max_align(&self, udt: &Udt, depth: usize) -> Result<u32, String> {
        let mut align = 4;
        for m in &udt.members {
            align = align.max(self.size_align(&m.ty, depth)?.1);
        }
        Ok(align)
    }

    pub(crate) fn type_word(&self, ty: &Ty) -> Result<u16, String> {
        Ok(match ty {
            Ty::Atomic(code) => u16::from(*code),
            Ty::String => 0x8000 | STRING_TEMPLATE,
            Ty::Udt(name) => {
                0x8000
                    | (FIRST_UDT_TEMPLATE
                        + self
                            .udt_index(name)
                            .ok_or_else(|| format!("unknown type {name}"))?)
            }
        })
    }

    pub(crate) fn layout_udt(
        &self,
        udt: &Udt,
        instance: u16,
        depth: usize,
    ) -> Result<TemplateLayout, String> {
        let mut members: Vec<LaidMember> = Vec::new();
        let mut offset: u32 = 0;
        let mut host: Option<(u32, u8)> = None; // (offset, next bit)
        let mut hosts = 0;
        for m in &udt.members {
            if m.ty == Ty::Atomic(0xC1) && m.dims == 0 {
                let (at, bit) = match host {
                    Some((at, bit)) if bit < 8 => (at, bit),
                    _ => {
                        let at = offset;
                        members.push(LaidMember {
                            name: format!("ZZZZZZZZZZ{}{hosts}", udt.name),
                            ty: None,
                            type_word: 0xC2,
                            info: 0,
                            offset: at,
                            bit: None,
                            dims: 0,
                        });
                        hosts += 1;
                        offset += 1;
                        (at, 0)
                    }
                };
                host = Some((at, bit + 1));
                members.push(LaidMember {
                    name: m.name.clone(),
                    ty: Some(m.ty.clone()),
                    type_word: 0xC1,
                    info: u16::from(bit),
                    offset: at,
                    bit: Some(bit),
                    dims: 0,
                });
                continue;
            }
            host = None;
            if m.ty == Ty::Atomic(0xC1) {
                return Err(format!(
                    "{}.{}: BOOL arrays inside a UDT are not simulated",
                    udt.name, m.name
                ));
            }
            let (size, align) = self.size_align(&m.ty, depth)?;
            offset = offset.div_ceil(align) * align;
            let mut type_word = self.type_word(&m.ty)?;
            if m.dims > 0 {
                type_word |= 0x2000;
            }
            members.push(LaidMember {
                name: m.name.clone(),
                ty: Some(m.ty.clone()),
                type_word,
                info: m.dims,
                offset,
                bit: None,
                dims: m.dims,
            });
            offset += size * u32::from(m.dims.max(1));
        }
        let align = self.max_align(udt, depth)?;
        let size = offset.max(1).div_ceil(align) * align;
        let mut definition = Vec::new();
        for m in &members {
            definition.extend_from_slice(&m.info.to_le_bytes());
            definition.extend_from_slice(&m.type_word.to_le_bytes());
            definition.extend_from_slice(&m.offset.to_le_bytes());
        }
        // After the name and ';': a type letter, then two access bytes per member (the
        // low two bits of the second are the external access; 0 = hidden), as pylogix
        // reads them. Never NUL or ';'.
        definition.extend_from_slice(format!("{};n", udt.name).as_bytes());
        for m in &members {
            definition.push(b'A');
            definition.push(if m.ty.is_some() { b'C' } else { b'@' });
        }
        definition.push(0);
        for m in &members {
            definition.extend_from_slice(m.name.as_bytes());
            definition.push(0);
        }
        // Logix pads the definition to whole 32-bit words.
        definition.resize(definition.len().div_ceil(4) * 4, 0);
        let mut h = Fnv::new(0);
        h.bytes(&definition);
        let handle =
            (h.0 as u16 ^ (h.0 >> 16) as u16 ^ (h.0 >> 32) as u16 ^ (h.0 >> 48) as u16).max(1);
        Ok(TemplateLayout {
            instance,
            size,
            handle,
            members,
            definition,
        })
    }

    /// The layout of a structure type (a UDT or STRING).
    pub(crate) fn layout_of(&self, ty: &Ty) -> Option<TemplateLayout> {
        match ty {
            Ty::String => Some(string_layout()),
            Ty::Udt(name) => self.layouts.get(&name.to_ascii_lowercase()).cloned(),
            Ty::Atomic(_) => None,
        }
    }

    /// The layout by template instance.
    pub(crate) fn layout_by_instance(&self, instance: u16) -> Option<TemplateLayout> {
        if instance == STRING_TEMPLATE {
            return Some(string_layout());
        }
        self.layouts
            .values()
            .find(|l| l.instance == instance)
            .cloned()
    }

    /// Symbol type word of a tag.
    pub(crate) fn symbol_type(&self, tag: &Tag) -> u16 {
        let base = self.type_word(&tag.ty).unwrap_or(0);
        base | ((tag.dims.len().min(3) as u16) << 13)
    }

    /// The default value of a type.
    pub(crate) fn default_value(&self, ty: &Ty, dims: &[u32]) -> Result<Val, String> {
        let one = self.default_scalar(ty, 0)?;
        let count = element_count(dims)?;
        Ok(if dims.is_empty() {
            one
        } else {
            Val::List(vec![one; count])
        })
    }

    pub(crate) fn default_scalar(&self, ty: &Ty, depth: usize) -> Result<Val, String> {
        if depth > MAX_NESTING {
            return Err("UDTs nest too deeply".to_owned());
        }
        Ok(match ty {
            Ty::Atomic(0xC1) => Val::Bool(false),
            Ty::Atomic(0xCA | 0xCB) => Val::Real(0.0),
            Ty::Atomic(_) => Val::Int(0),
            Ty::String => Val::Str(String::new()),
            Ty::Udt(name) => {
                let udt = self
                    .udt(name)
                    .ok_or_else(|| format!("unknown type {name}"))?;
                let mut map = BTreeMap::new();
                for m in &udt.members {
                    let v = self.default_scalar(&m.ty, depth + 1)?;
                    let v = if m.dims > 0 {
                        Val::List(vec![v; usize::from(m.dims)])
                    } else {
                        v
                    };
                    map.insert(m.name.clone(), v);
                }
                Val::Struct(map)
            }
        })
    }

    /// Encodes one element of `ty` as the controller stores it.
    pub(crate) fn encode(&self, ty: &Ty, value: &Val, out: &mut Vec<u8>) -> Result<(), String> {
        match (ty, value) {
            (Ty::Atomic(code), v) => encode_atomic(*code, v, out),
            (Ty::String, Val::Str(s)) => {
                let bytes = s.as_bytes();
                let len = bytes.len().min(STRING_CAPACITY);
                out.extend_from_slice(&(len as u32).to_le_bytes());
                out.extend_from_slice(&bytes[..len]);
                out.resize(out.len() + (STRING_CAPACITY - len) + 2, 0);
                Ok(())
            }
            (Ty::Udt(_), Val::Struct(map)) => {
                let layout = self.layout_of(ty).ok_or("unknown UDT")?;
                let start = out.len();
                out.resize(start + layout.size as usize, 0);
                for m in &layout.members {
                    let Some(mty) = &m.ty else { continue };
                    let Some(v) = map.get(&m.name) else { continue };
                    let at = start + m.offset as usize;
                    if let Some(bit) = m.bit {
                        if let Val::Bool(true) = v
                            && let Some(byte) = out.get_mut(at)
                        {
                            *byte |= 1 << bit;
                        }
                        continue;
                    }
                    let mut buf = Vec::new();
                    match v {
                        Val::List(items) if m.dims > 0 => {
                            for item in items {
                                self.encode(mty, item, &mut buf)?;
                            }
                        }
                        other => self.encode(mty, other, &mut buf)?,
                    }
                    let end = (at + buf.len()).min(out.len());
                    if let Some(slot) = out.get_mut(at..end) {
                        slot.copy_from_slice(&buf[..end - at]);
                    }
                }
                Ok(())
            }
            (ty, v) => Err(format!("value {v:?} does not fit type {}", ty.name())),
        }
    }

    /// Decodes one element of `ty` (for Write Tag, which a real controller applies).
    pub(crate) fn decode(&self, ty: &Ty, data: &[u8]) -> Result<Val, String> {
        match ty {
            Ty::Atomic(code) => decode_atomic(*code, data),
            Ty::String => {
                let len = data
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or("short STRING")?;
                let text = data
                    .get(4..4 + len.min(STRING_CAPACITY))
                    .ok_or("short STRING")?;
                Ok(Val::Str(String::from_utf8_lossy(text).into_owned()))
            }
            Ty::Udt(_) => {
                let layout = self.layout_of(ty).ok_or("unknown UDT")?;
                let mut map = BTreeMap::new();
                for m in &layout.members {
                    let Some(mty) = &m.ty else { continue };
                    let at = m.offset as usize;
                    if let Some(bit) = m.bit {
                        let byte = data.get(at).copied().ok_or("short structure")?;
                        map.insert(m.name.clone(), Val::Bool(byte & (1 << bit) != 0));
                        continue;
                    }
                    let (size, _) = self.size_align(mty, 0)?;
                    let size = size as usize;
                    if m.dims > 0 {
                        let mut items = Vec::new();
                        for i in 0..usize::from(m.dims) {
                            let chunk = data
                                .get(at + i * size..at + (i + 1) * size)
                                .ok_or("short structure")?;
                            items.push(self.decode(mty, chunk)?);
                        }
                        map.insert(m.name.clone(), Val::List(items));
                    } else {
                        let chunk = data.get(at..at + size).ok_or("short structure")?;
                        map.insert(m.name.clone(), self.decode(mty, chunk)?);
                    }
                }
                Ok(Val::Struct(map))
            }
        }
    }

    /// Parses a value for a type from a TOML value (state files).
    pub(crate) fn value_from_toml(
        &self,
        ty: &Ty,
        dims: &[u32],
        v: &toml::Value,
    ) -> Result<Val, String> {
        if dims.is_empty() {
            return self.scalar_from_toml(ty, v, 0);
        }
        let count = element_count(dims)?;
        let mut flat = Vec::new();
        flatten(v, &mut flat);
        if flat.len() != count {
            return Err(format!("{} values given for {count} elements", flat.len()));
        }
        let items = flat
            .into_iter()
            .map(|x| self.scalar_from_toml(ty, x, 0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Val::List(items))
    }

    pub(crate) fn scalar_from_toml(
        &self,
        ty: &Ty,
        v: &toml::Value,
        depth: usize,
    ) -> Result<Val, String> {
        if depth > MAX_NESTING {
            return Err("values nest too deeply".to_owned());
        }
        match (ty, v) {
            (Ty::Atomic(0xC1), toml::Value::Boolean(b)) => Ok(Val::Bool(*b)),
            (Ty::Atomic(0xC1), toml::Value::Integer(i)) => Ok(Val::Bool(*i != 0)),
            (Ty::Atomic(0xCA | 0xCB), toml::Value::Float(f)) => Ok(Val::Real(*f)),
            (Ty::Atomic(0xCA | 0xCB), toml::Value::Integer(i)) => Ok(Val::Real(*i as f64)),
            (Ty::Atomic(code), toml::Value::Integer(i)) => {
                check_range(*code, i128::from(*i))?;
                Ok(Val::Int(i128::from(*i)))
            }
            (Ty::String, toml::Value::String(s)) => {
                if s.len() > STRING_CAPACITY {
                    return Err(format!("string of {} bytes exceeds 82", s.len()));
                }
                Ok(Val::Str(s.clone()))
            }
            (Ty::Udt(name), toml::Value::Table(table)) => {
                let udt = self
                    .udt(name)
                    .ok_or_else(|| format!("unknown type {name}"))?
                    .clone();
                let mut base = match self.default_scalar(ty, depth)? {
                    Val::Struct(map) => map,
                    _ => BTreeMap::new(),
                };
                for (key, value) in table {
                    let m = udt
                        .members
                        .iter()
                        .find(|m| m.name.eq_ignore_ascii_case(key))
                        .ok_or_else(|| format!("{name} has no member {key}"))?;
                    let dims: Vec<u32> = if m.dims > 0 {
                        vec![u32::from(m.dims)]
                    } else {
                        vec![]
                    };
                    let parsed = if dims.is_empty() {
                        self.scalar_from_toml(&m.ty, value, depth + 1)?
                    } else {
                        self.value_from_toml(&m.ty, &dims, value)?
                    };
                    base.insert(m.name.clone(), parsed);
                }
                Ok(Val::Struct(base))
            }
            (ty, v) => Err(format!("{v} is not a {}", ty.name())),
        }
    }

    /// Parses a command-line value for a type (`72.5`, `true`, `-3`, text for STRING).
    pub(crate) fn value_from_text(&self, ty: &Ty, text: &str) -> Result<Val, String> {
        match ty {
            Ty::Atomic(0xC1) => match text.to_ascii_lowercase().as_str() {
                "1" | "true" | "on" => Ok(Val::Bool(true)),
                "0" | "false" | "off" => Ok(Val::Bool(false)),
                _ => Err(format!("{text:?} is not a BOOL (0, 1, true, false)")),
            },
            Ty::Atomic(0xCA | 0xCB) => text
                .parse::<f64>()
                .map(Val::Real)
                .map_err(|_| format!("{text:?} is not a number")),
            Ty::Atomic(code) => {
                let n = text
                    .parse::<i128>()
                    .map_err(|_| format!("{text:?} is not an integer"))?;
                check_range(*code, n)?;
                Ok(Val::Int(n))
            }
            Ty::String => {
                let s = text.trim_matches('"');
                if s.len() > STRING_CAPACITY {
                    return Err("string longer than 82 characters".to_owned());
                }
                Ok(Val::Str(s.to_owned()))
            }
            Ty::Udt(name) => Err(format!("set the members of {name} one by one")),
        }
    }
}

/// The predefined STRING's template.
pub(crate) fn string_layout() -> TemplateLayout {
    let members = vec![
        LaidMember {
            name: "LEN".to_owned(),
            ty: Some(Ty::Atomic(0xC4)),
            type_word: 0xC4,
            info: 0,
            offset: 0,
            bit: None,
            dims: 0,
        },
        LaidMember {
            name: "DATA".to_owned(),
            ty: Some(Ty::Atomic(0xC2)),
            type_word: 0x20C2,
            info: STRING_CAPACITY as u16,
            offset: 4,
            bit: None,
            dims: STRING_CAPACITY as u16,
        },
    ];
    let mut definition = Vec::new();
    for m in &members {
        definition.extend_from_slice(&m.info.to_le_bytes());
        definition.extend_from_slice(&m.type_word.to_le_bytes());
        definition.extend_from_slice(&m.offset.to_le_bytes());
    }
    definition.extend_from_slice(b"ASCIISTRING82;nACAC\0LEN\0DATA\0");
    definition.resize(definition.len().div_ceil(4) * 4, 0);
    TemplateLayout {
        instance: STRING_TEMPLATE,
        size: 88,
        handle: STRING_TEMPLATE,
        members,
        definition,
    }
}

pub(crate) fn element_count(dims: &[u32]) -> Result<usize, String> {
    let n = dims
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(u64::from(*d)));
    match n {
        Some(n) if n <= MAX_ELEMENTS && !dims.contains(&0) => Ok(n as usize),
        _ => Err(format!(
            "array {dims:?} is larger than {MAX_ELEMENTS} elements or empty"
        )),
    }
}

pub(crate) fn flatten<'a>(v: &'a toml::Value, out: &mut Vec<&'a toml::Value>) {
    match v {
        toml::Value::Array(items) => {
            for item in items {
                flatten(item, out);
            }
        }
        other => out.push(other),
    }
}

pub(crate) fn check_range(code: u8, n: i128) -> Result<(), String> {
    let (lo, hi): (i128, i128) = match code {
        0xC2 => (i8::MIN.into(), i8::MAX.into()),
        0xC3 => (i16::MIN.into(), i16::MAX.into()),
        0xC4 => (i32::MIN.into(), i32::MAX.into()),
        0xC5 => (i64::MIN.into(), i64::MAX.into()),
        0xC6 => (0, u8::MAX.into()),
        0xC7 => (0, u16::MAX.into()),
        0xC8 => (0, u32::MAX.into()),
        _ => (0, u64::MAX.into()),
    };
    if n < lo || n > hi {
        return Err(format!("{n} is outside {}..={}", lo, hi));
    }
    Ok(())
}

pub(crate) fn encode_atomic(code: u8, v: &Val, out: &mut Vec<u8>) -> Result<(), String> {
    let int = |v: &Val| -> Result<i128, String> {
        match v {
            Val::Int(i) => Ok(*i),
            Val::Bool(b) => Ok(i128::from(*b)),
            Val::Real(f) => Ok(*f as i128),
            other => Err(format!("{other:?} is not a number")),
        }
    };
    match code {
        0xC1 => out.push(
            if matches!(v, Val::Bool(true)) || matches!(v, Val::Int(i) if *i != 0) {
                0xFF
            } else {
                0
            },
        ),
        0xC2 | 0xC6 => out.push(int(v)? as u8),
        0xC3 | 0xC7 => out.extend_from_slice(&(int(v)? as u16).to_le_bytes()),
        0xC4 | 0xC8 => out.extend_from_slice(&(int(v)? as u32).to_le_bytes()),
        0xC5 | 0xC9 => out.extend_from_slice(&(int(v)? as u64).to_le_bytes()),
        0xCA => {
            let f = match v {
                Val::Real(f) => *f,
                other => int(other)? as f64,
            };
            out.extend_from_slice(&(f as f32).to_le_bytes());
        }
        0xCB => {
            let f = match v {
                Val::Real(f) => *f,
                other => int(other)? as f64,
            };
            out.extend_from_slice(&f.to_le_bytes());
        }
        other => return Err(format!("type 0x{other:02x} is not simulated")),
    }
    Ok(())
}

pub(crate) fn decode_atomic(code: u8, d: &[u8]) -> Result<Val, String> {
    let size = atomic_size(code);
    let b = d.get(..size).ok_or("short value")?;
    let mut raw = [0u8; 8];
    raw[..size].copy_from_slice(b);
    let u = u64::from_le_bytes(raw);
    Ok(match code {
        0xC1 => Val::Bool(u != 0),
        0xC2 => Val::Int(i128::from(u as u8 as i8)),
        0xC3 => Val::Int(i128::from(u as u16 as i16)),
        0xC4 => Val::Int(i128::from(u as u32 as i32)),
        0xC5 => Val::Int(i128::from(u as i64)),
        0xCA => Val::Real(f64::from(f32::from_bits(u as u32))),
        0xCB => Val::Real(f64::from_bits(u)),
        _ => Val::Int(i128::from(u)),
    })
}
