//! Logix data types, symbol and template records, and value decoding, all bounded.

use std::collections::BTreeMap;

use otdrift_core::Value;

use super::wire::{Cursor, WireError, bad};

/// Longest symbol or member name accepted from a device (Logix allows 40 characters; a
/// program-scoped name adds `Program:`; anything much longer is not a Logix name).
pub(crate) const MAX_NAME: usize = 255;
/// Most members a template may declare.
pub(crate) const MAX_MEMBERS: usize = 4096;
/// Deepest template nesting followed when decoding (Logix nests far less).
const MAX_DEPTH: usize = 16;

/// The BOOL type code.
pub(crate) const BOOL: u8 = 0xC1;
/// The DWORD type code (BOOL arrays travel as DWORD arrays).
pub(crate) const DWORD: u8 = 0xD3;
/// The type word of a structure in a Read Tag reply.
pub(crate) const STRUCT_REPLY: u16 = 0x02A0;

/// Name of an atomic type code.
pub(crate) fn atomic_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0xC1 => "BOOL",
        0xC2 => "SINT",
        0xC3 => "INT",
        0xC4 => "DINT",
        0xC5 => "LINT",
        0xC6 => "USINT",
        0xC7 => "UINT",
        0xC8 => "UDINT",
        0xC9 => "ULINT",
        0xCA => "REAL",
        0xCB => "LREAL",
        0xD1 => "BYTE",
        0xD2 => "WORD",
        0xD3 => "DWORD",
        0xD4 => "LWORD",
        _ => return None,
    })
}

/// Size in bytes of one element of an atomic type.
pub(crate) fn atomic_size(code: u8) -> Option<usize> {
    Some(match code {
        0xC1 | 0xC2 | 0xC6 | 0xD1 => 1,
        0xC3 | 0xC7 | 0xD2 => 2,
        0xC4 | 0xC8 | 0xCA | 0xD3 => 4,
        0xC5 | 0xC9 | 0xCB | 0xD4 => 8,
        _ => return None,
    })
}

/// A symbol type word as the Symbol object reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SymbolType(pub u16);

impl SymbolType {
    /// A structure (bit 15).
    pub(crate) fn is_struct(self) -> bool {
        self.0 & 0x8000 != 0
    }

    /// A system symbol (bit 12): programs, routines, tasks and internal tags.
    pub(crate) fn is_system(self) -> bool {
        self.0 & 0x1000 != 0
    }

    /// Number of array dimensions (bits 13-14).
    pub(crate) fn dims(self) -> usize {
        usize::from((self.0 >> 13) & 0b11)
    }

    /// Template instance of a structure (low 12 bits).
    pub(crate) fn template(self) -> Option<u16> {
        self.is_struct().then_some(self.0 & 0x0FFF)
    }

    /// Atomic type code (low byte) when not a structure.
    pub(crate) fn atomic(self) -> Option<u8> {
        (!self.is_struct()).then_some((self.0 & 0xFF) as u8)
    }

    /// The element type with the array bits cleared.
    pub(crate) fn element(self) -> ElementType {
        match self.template() {
            Some(t) => ElementType::Struct(t),
            None => ElementType::Atomic((self.0 & 0xFF) as u8),
        }
    }
}

/// The type of one element: an atomic code or a template instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ElementType {
    /// An atomic type code.
    Atomic(u8),
    /// A structure, by template instance.
    Struct(u16),
}

/// One symbol of a Get Instance Attribute List reply (attributes 1, 2, 8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Symbol {
    /// Instance id (for paging).
    pub instance: u32,
    /// Name as the controller spells it.
    pub name: String,
    /// Type word.
    pub kind: SymbolType,
    /// Array dimensions (as many as the type word declares).
    pub dims: Vec<u32>,
}

/// Parses the entries of a Get Instance Attribute List reply.
pub(crate) fn parse_symbols(data: &[u8]) -> Result<Vec<Symbol>, WireError> {
    let mut c = Cursor::new(data, "symbol list");
    let mut out = Vec::new();
    while !c.is_empty() {
        let instance = c.u32()?;
        let len = usize::from(c.u16()?);
        if len == 0 || len > MAX_NAME {
            return Err(bad(format!(
                "symbol instance {instance} has a name of {len} bytes (1..={MAX_NAME} expected)"
            )));
        }
        let raw = c.take(len)?;
        let name = std::str::from_utf8(raw)
            .map_err(|_| {
                bad(format!(
                    "symbol instance {instance} has a name that is not text"
                ))
            })?
            .to_owned();
        if name.chars().any(|ch| ch.is_control()) {
            return Err(bad(format!(
                "symbol instance {instance} has control characters in its name"
            )));
        }
        let kind = SymbolType(c.u16()?);
        let all = [c.u32()?, c.u32()?, c.u32()?];
        let dims: Vec<u32> = all.iter().copied().take(kind.dims()).collect();
        if dims.contains(&0) {
            return Err(bad(format!(
                "symbol {name} declares {} dimensions but one of them is 0",
                kind.dims()
            )));
        }
        out.push(Symbol {
            instance,
            name,
            kind,
            dims,
        });
    }
    Ok(out)
}

/// Template attributes (Get Attribute List 4, 5, 2, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TemplateInfo {
    /// Definition size in 32-bit words.
    pub definition_words: u32,
    /// Structure size in bytes (one element of the type on the wire).
    pub structure_size: u32,
    /// Member count.
    pub members: u16,
    /// Structure handle (a CRC of the definition, computed by the controller).
    pub handle: u16,
}

/// Parses a Get Attribute List reply for the template attributes.
pub(crate) fn parse_template_info(data: &[u8]) -> Result<TemplateInfo, WireError> {
    let mut c = Cursor::new(data, "template attributes");
    let count = c.u16()?;
    if count != 4 {
        return Err(bad(format!(
            "template attributes: {count} answered, 4 asked"
        )));
    }
    let (mut words, mut size, mut members, mut handle) = (None, None, None, None);
    for _ in 0..4 {
        let id = c.u16()?;
        let status = c.u16()?;
        if status != 0 {
            return Err(bad(format!(
                "template attribute {id} answered status 0x{status:04x}"
            )));
        }
        match id {
            4 => words = Some(c.u32()?),
            5 => size = Some(c.u32()?),
            2 => members = Some(c.u16()?),
            1 => handle = Some(c.u16()?),
            other => return Err(bad(format!("template attribute {other} was not asked"))),
        }
    }
    match (words, size, members, handle) {
        (Some(definition_words), Some(structure_size), Some(members), Some(handle)) => {
            if usize::from(members) > MAX_MEMBERS {
                return Err(bad(format!(
                    "template declares {members} members (at most {MAX_MEMBERS})"
                )));
            }
            Ok(TemplateInfo {
                definition_words,
                structure_size,
                members,
                handle,
            })
        }
        _ => Err(bad("template attributes: an attribute is missing")),
    }
}

/// One member of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// Member name.
    pub name: String,
    /// Element type.
    pub element: ElementType,
    /// Array length (0 = not an array).
    pub array: u16,
    /// Bit number of a BOOL member inside its host byte.
    pub bit: Option<u8>,
    /// Byte offset inside the structure.
    pub offset: u32,
}

impl Member {
    /// Hidden members: the hosts of packed BOOLs (`ZZZZZZZZZZ...`) and internal ones (`__`).
    pub(crate) fn is_hidden(&self) -> bool {
        self.name.starts_with("ZZZZZZZZZZ") || self.name.starts_with("__")
    }
}

/// A structure definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    /// Template instance.
    pub instance: u16,
    /// Type name (`Recipe_t`, `TIMER`, ...).
    pub name: String,
    /// Attributes.
    pub info: TemplateInfo,
    /// Members in definition order.
    pub members: Vec<Member>,
}

impl Template {
    /// Whether this is a Logix string type: `LEN` (DINT) then `DATA` (SINT array).
    pub(crate) fn string_capacity(&self) -> Option<usize> {
        let visible: Vec<&Member> = self.members.iter().filter(|m| !m.is_hidden()).collect();
        match visible.as_slice() {
            [len, data]
                if len.name.eq_ignore_ascii_case("LEN")
                    && len.element == ElementType::Atomic(0xC4)
                    && data.name.eq_ignore_ascii_case("DATA")
                    && data.element == ElementType::Atomic(0xC2)
                    && data.array > 0 =>
            {
                Some(usize::from(data.array))
            }
            _ => None,
        }
    }
}

/// Parses the definition read by Read Template: `members` records of info (u16), type
/// (u16), offset (u32), then the NUL-terminated template name (`Name;...`) and member names.
pub(crate) fn parse_template(
    instance: u16,
    info: TemplateInfo,
    data: &[u8],
) -> Result<Template, WireError> {
    let count = usize::from(info.members);
    let mut c = Cursor::new(data, "template definition");
    let mut raw = Vec::with_capacity(count);
    for _ in 0..count {
        let info_word = c.u16()?;
        let kind = SymbolType(c.u16()?);
        let offset = c.u32()?;
        raw.push((info_word, kind, offset));
    }
    let mut names = c.rest().split(|b| *b == 0);
    let first = names
        .next()
        .ok_or_else(|| bad("template definition has no name"))?;
    let first = text(first, "template name")?;
    let mut name = first.split(';').next().unwrap_or("").to_owned();
    if name == "ASCIISTRING82" {
        // Logix's internal name of the predefined STRING type.
        name = "STRING".to_owned();
    }
    if name.is_empty() {
        return Err(bad(format!("template 0x{instance:03x} has an empty name")));
    }
    let mut members = Vec::with_capacity(count);
    for (i, (info_word, kind, offset)) in raw.into_iter().enumerate() {
        let member_name = names.next().ok_or_else(|| {
            bad(format!(
                "template {name} declares {count} members but names only {i}"
            ))
        })?;
        let member_name = text(member_name, "member name")?;
        let element = kind.element();
        if let ElementType::Atomic(code) = element
            && atomic_size(code).is_none()
        {
            return Err(bad(format!(
                "member {name}.{member_name} has unknown type code 0x{code:02x}"
            )));
        }
        if offset >= info.structure_size.max(1) && info.structure_size > 0 {
            return Err(bad(format!(
                "member {name}.{member_name} at offset {offset} lies outside the {}-byte structure",
                info.structure_size
            )));
        }
        let is_bool = element == ElementType::Atomic(BOOL);
        let array = if kind.0 & 0x2000 != 0 || (!is_bool && info_word > 0) {
            info_word
        } else {
            0
        };
        let bit = if is_bool && array == 0 {
            let bit = u8::try_from(info_word)
                .ok()
                .filter(|b| *b < 8)
                .ok_or_else(|| {
                    bad(format!(
                        "BOOL member {name}.{member_name} has bit number {info_word}"
                    ))
                })?;
            Some(bit)
        } else {
            None
        };
        members.push(Member {
            name: member_name.to_owned(),
            element,
            array,
            bit,
            offset,
        });
    }
    Ok(Template {
        instance,
        name,
        info,
        members,
    })
}

fn text<'a>(raw: &'a [u8], what: &str) -> Result<&'a str, WireError> {
    if raw.len() > MAX_NAME {
        return Err(bad(format!("{what} is {} bytes long", raw.len())));
    }
    std::str::from_utf8(raw).map_err(|_| bad(format!("{what} is not text")))
}

/// The templates known to the collector, by instance.
pub(crate) type Templates = BTreeMap<u16, Template>;

/// The name of an element type, for tag items (template names, or `struct 0x...` when the
/// templates could not be read).
pub(crate) fn type_name(element: ElementType, templates: &Templates) -> String {
    match element {
        ElementType::Atomic(code) => atomic_name(code)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("type 0x{code:02x}")),
        ElementType::Struct(t) => templates
            .get(&t)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| "structure (template not readable)".to_owned()),
    }
}

/// Bytes one element of a type takes on the wire.
pub(crate) fn element_size(element: ElementType, templates: &Templates) -> Option<usize> {
    match element {
        ElementType::Atomic(code) => atomic_size(code),
        ElementType::Struct(t) => templates
            .get(&t)
            .and_then(|t| usize::try_from(t.info.structure_size).ok()),
    }
}

/// Decodes `count` elements of `element` from `data` (which must hold exactly that many).
pub(crate) fn decode(
    element: ElementType,
    count: usize,
    data: &[u8],
    templates: &Templates,
) -> Result<Value, WireError> {
    let size = element_size(element, templates).ok_or_else(|| bad("element size unknown"))?;
    let expected = size
        .checked_mul(count)
        .ok_or_else(|| bad("value size overflows"))?;
    if data.len() != expected {
        return Err(bad(format!(
            "value holds {} bytes, {count} x {size} = {expected} expected",
            data.len()
        )));
    }
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let start = i * size;
        let chunk = data
            .get(start..start + size)
            .ok_or_else(|| bad("element out of range"))?;
        values.push(decode_one(element, chunk, templates, 0)?);
    }
    if count == 1 {
        Ok(values.pop().unwrap_or(Value::Null))
    } else {
        Ok(Value::List(values))
    }
}

fn decode_one(
    element: ElementType,
    data: &[u8],
    templates: &Templates,
    depth: usize,
) -> Result<Value, WireError> {
    if depth > MAX_DEPTH {
        return Err(bad("structures nest too deeply"));
    }
    match element {
        ElementType::Atomic(code) => decode_atomic(code, data),
        ElementType::Struct(t) => {
            let template = templates
                .get(&t)
                .ok_or_else(|| bad(format!("no template 0x{t:03x}")))?;
            if let Some(capacity) = template.string_capacity() {
                let mut c = Cursor::new(data, "STRING");
                let len = c.u32()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > capacity {
                    return Err(bad(format!(
                        "STRING length {len} exceeds its capacity {capacity}"
                    )));
                }
                let bytes = c.take(len)?;
                return Ok(match std::str::from_utf8(bytes) {
                    Ok(s) => Value::Text(s.to_owned()),
                    Err(_) => Value::Bytes(bytes.to_vec()),
                });
            }
            let mut map = BTreeMap::new();
            for member in template.members.iter().filter(|m| !m.is_hidden()) {
                let offset = usize::try_from(member.offset).unwrap_or(usize::MAX);
                let value = if let Some(bit) = member.bit {
                    let byte = data.get(offset).ok_or_else(|| {
                        bad(format!("member {} lies outside the value", member.name))
                    })?;
                    Value::Bool(byte & (1 << bit) != 0)
                } else {
                    let size = element_size(member.element, templates)
                        .ok_or_else(|| bad(format!("member {} has no known size", member.name)))?;
                    let n = usize::from(member.array.max(1));
                    let end = size
                        .checked_mul(n)
                        .and_then(|len| offset.checked_add(len))
                        .ok_or_else(|| bad("member size overflows"))?;
                    let chunk = data.get(offset..end).ok_or_else(|| {
                        bad(format!("member {} lies outside the value", member.name))
                    })?;
                    if member.array > 0 && member.element == ElementType::Atomic(DWORD) {
                        // BOOL arrays inside structures are stored as DWORDs.
                        let mut list = Vec::with_capacity(n);
                        for i in 0..n {
                            let word = chunk.get(i * 4..i * 4 + 4).ok_or_else(|| bad("short"))?;
                            list.push(decode_atomic(DWORD, word)?);
                        }
                        Value::List(list)
                    } else if member.array > 0 {
                        let mut list = Vec::with_capacity(n);
                        for i in 0..n {
                            let part = chunk
                                .get(i * size..(i + 1) * size)
                                .ok_or_else(|| bad("member element out of range"))?;
                            list.push(decode_one(member.element, part, templates, depth + 1)?);
                        }
                        Value::List(list)
                    } else {
                        decode_one(member.element, chunk, templates, depth + 1)?
                    }
                };
                map.insert(member.name.clone(), value);
            }
            Ok(Value::Map(map))
        }
    }
}

/// Decodes one atomic value.
pub(crate) fn decode_atomic(code: u8, data: &[u8]) -> Result<Value, WireError> {
    let mut c = Cursor::new(data, "atomic value");
    let value = match code {
        0xC1 => Value::Bool(c.u8()? != 0),
        0xC2 => Value::Int(i64::from(c.u8()? as i8)),
        0xC3 => Value::Int(i64::from(c.u16()? as i16)),
        0xC4 => Value::Int(i64::from(c.u32()? as i32)),
        0xC5 => Value::Int(c.u64()? as i64),
        0xC6 | 0xD1 => Value::UInt(u64::from(c.u8()?)),
        0xC7 | 0xD2 => Value::UInt(u64::from(c.u16()?)),
        0xC8 | 0xD3 => Value::UInt(u64::from(c.u32()?)),
        0xC9 | 0xD4 => Value::UInt(c.u64()?),
        0xCA => Value::F32(f32::from_bits(c.u32()?)),
        0xCB => Value::F64(f64::from_bits(c.u64()?)),
        other => return Err(bad(format!("unknown type code 0x{other:02x}"))),
    };
    if !c.is_empty() {
        return Err(bad(format!(
            "{} bytes left after a {} value",
            c.remaining(),
            atomic_name(code).unwrap_or("?")
        )));
    }
    Ok(value)
}

/// Unpacks a BOOL array read as DWORDs into `n` booleans.
pub(crate) fn unpack_bools(data: &[u8], n: usize) -> Result<Value, WireError> {
    let words = n.div_ceil(32);
    if data.len() != words * 4 {
        return Err(bad(format!(
            "BOOL[{n}] needs {} bytes, {} arrived",
            words * 4,
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let byte = data.get(i / 8).copied().unwrap_or(0);
        out.push(Value::Bool(byte & (1 << (i % 8)) != 0));
    }
    Ok(Value::List(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_symbol_lists_are_errors() {
        assert!(parse_symbols(&[1, 0, 0, 0, 0xFF, 0xFF]).is_err());
        assert!(
            parse_symbols(&[
                1, 0, 0, 0, 2, 0, 0xFF, 0xFE, 0xC4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ])
            .is_err()
        );
        // One dimension declared, dimension 0.
        let mut one = vec![1, 0, 0, 0, 1, 0, b'A', 0xC4, 0x20];
        one.extend_from_slice(&[0; 12]);
        assert!(parse_symbols(&one).is_err());
    }

    #[test]
    fn atomic_values_decode_by_type() {
        assert_eq!(
            decode_atomic(0xCA, &72.5f32.to_le_bytes()),
            Ok(Value::F32(72.5))
        );
        assert_eq!(
            decode_atomic(0xC3, &(-2i16).to_le_bytes()),
            Ok(Value::Int(-2))
        );
        assert!(decode_atomic(0xC4, &[1, 2]).is_err());
        assert!(decode_atomic(0xC4, &[1, 2, 3, 4, 5]).is_err());
        assert_eq!(
            unpack_bools(&[0b101, 0, 0, 0], 3),
            Ok(Value::List(vec![
                Value::Bool(true),
                Value::Bool(false),
                Value::Bool(true)
            ]))
        );
    }
}
