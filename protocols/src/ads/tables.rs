//! The symbol table (0xF00B), the data-type table (0xF00E) and the upload info (0xF00F /
//! 0xF00C), parsed with every length bounded.
//!
//! Symbol entry: `entryLength u32, iGroup u32, iOffs u32, size u32, dataType u32, flags u16,
//! arrayDim u16, nameLength u16, typeLength u16, commentLength u16`, then name, type and
//! comment, each followed by one terminator byte, then optional parts (type GUID, attributes,
//! extended flags) up to `entryLength`.
//!
//! Data-type entry: `entryLength u32, version u32, hashValue u32, typeHashValue u32, size u32,
//! offs u32, dataType u32, flags u32, nameLength u16, typeLength u16, commentLength u16,
//! arrayDim u16, subItems u16`, then name, type, comment (each terminated), `arrayDim` pairs
//! of `(lBound i32, elements u32)`, `subItems` nested entries of the same form (the fields of
//! a structure), then optional parts up to `entryLength`.
//!
//! Each entry's length is checked against the bytes left and against its own declared name,
//! type and comment lengths; a table whose entries do not add up to what the upload info
//! announced is refused.

use std::collections::{BTreeMap, HashMap};

use super::wire::Cursor;

/// The most bytes a symbol or data-type table may have before the collector refuses to ask
/// for it (a large TwinCAT 3 project has a few MiB).
pub(crate) const MAX_TABLE_BYTES: u32 = 64 * 1024 * 1024;
/// The most entries a table may declare.
pub(crate) const MAX_ENTRIES: u32 = 1_000_000;
/// Nesting of data-type sub-entries accepted (structures of structures are separate
/// entries; sub-entries themselves do not nest in TwinCAT's format). Deeper nesting is a
/// bound, so a hostile table cannot recurse the parser off its stack.
pub(crate) const MAX_SUBITEM_DEPTH: usize = 4;
/// The most array dimensions a type may declare.
const MAX_ARRAY_DIMS: u16 = 16;
/// The most fields a structure may declare.
const MAX_FIELDS: u16 = 8192;
/// Smallest symbol entry: the 30-byte fixed part plus three terminators.
const SYMBOL_FIXED: usize = 30 + 3;
/// Smallest data-type entry: the 42-byte fixed part plus three terminators.
const DATATYPE_FIXED: usize = 42 + 3;
/// Upload info 2 (0xF00F) answers at least the six counters of `AdsSymbolUploadInfo2` (24
/// bytes; TwinCAT 3 adds more, up to 64).
const UPLOAD_INFO2_MIN: usize = 24;
/// The legacy upload info (0xF00C): symbol count and table size.
const UPLOAD_INFO_LEGACY: usize = 8;

/// Symbol flag: the variable is PERSISTENT (kept across restarts): a good hint for
/// "which symbols are setpoints?".
pub(crate) const FLAG_PERSISTENT: u16 = 0x0001;

/// What the upload info said about the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UploadInfo {
    pub symbols: u32,
    pub symbol_bytes: u32,
    /// `None` for the legacy 0xF00C answer, which has no data-type figures.
    pub datatypes: Option<(u32, u32)>,
}

impl UploadInfo {
    /// Parses an upload info 2 answer (0xF00F: 24 bytes on older runtimes, 64 on TwinCAT 3)
    /// or, with `legacy`, a 0xF00C answer (8 bytes). Counts that cannot fit the announced
    /// sizes are malformed; tables beyond this collector's limits are a bound.
    pub(crate) fn parse(bytes: &[u8], legacy: bool) -> Result<UploadInfo, TableError> {
        let need = if legacy {
            UPLOAD_INFO_LEGACY
        } else {
            UPLOAD_INFO2_MIN
        };
        if bytes.len() < need {
            return Err(TableError::Malformed(format!(
                "{} bytes; this upload info answers at least {need}",
                bytes.len()
            )));
        }
        let mut c = Cursor::new(bytes);
        let mut field = |what: &str| c.u32(what).map_err(TableError::Malformed);
        let symbols = field("symbol count")?;
        let symbol_bytes = field("symbol table size")?;
        let datatypes = if legacy {
            None
        } else {
            Some((field("data-type count")?, field("data-type table size")?))
        };
        let info = UploadInfo {
            symbols,
            symbol_bytes,
            datatypes,
        };
        info.check()?;
        Ok(info)
    }

    fn check(&self) -> Result<(), TableError> {
        let tables = std::iter::once(("symbol", self.symbols, self.symbol_bytes))
            .chain(self.datatypes.map(|(n, b)| ("data-type", n, b)));
        for (what, count, bytes) in tables {
            if bytes > MAX_TABLE_BYTES {
                return Err(TableError::Bound(format!(
                    "announces a {what} table of {bytes} bytes; this collector reads at most {MAX_TABLE_BYTES}"
                )));
            }
            if count > MAX_ENTRIES {
                return Err(TableError::Bound(format!(
                    "announces {count} {what} entries; this collector accepts at most {MAX_ENTRIES}"
                )));
            }
            let smallest = if what == "symbol" {
                SYMBOL_FIXED
            } else {
                DATATYPE_FIXED
            };
            if u64::from(count) * smallest as u64 > u64::from(bytes) {
                return Err(TableError::Malformed(format!(
                    "announces {count} {what} entries in {bytes} bytes, too few for that many"
                )));
            }
        }
        Ok(())
    }
}

/// One symbol of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub name: String,
    pub group: u32,
    pub offset: u32,
    pub size: u32,
    pub base_type: u32,
    pub flags: u16,
    pub type_name: String,
}

/// One field of a structure type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: String,
    pub type_name: String,
    /// `None`: the field is placed elsewhere in memory (`AT %M...`), not inside the struct.
    pub offset: Option<u32>,
    pub size: u32,
    pub base_type: u32,
    pub array: Vec<(i32, u32)>,
}

/// One entry of the data-type table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DataType {
    pub name: String,
    pub size: u32,
    pub base_type: u32,
    pub flags: u32,
    /// The element type of an array, the aliased type of an alias; empty otherwise.
    pub type_name: String,
    pub array: Vec<(i32, u32)>,
    pub fields: Vec<Field>,
}

/// Decodes a name, type or comment: UTF-8 when it is, otherwise Windows-1252 (TwinCAT's
/// default code page), so any byte string gives one stable text.
pub(crate) fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => windows_1252(bytes),
    }
}

/// Windows-1252 to text (the code page of TwinCAT's STRING).
pub(crate) fn windows_1252(bytes: &[u8]) -> String {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}',
        '\u{017D}', '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}',
        '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}',
        '\u{9D}', '\u{017E}', '\u{0178}',
    ];
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => HIGH
                .get(usize::from(b - 0x80))
                .copied()
                .unwrap_or(char::REPLACEMENT_CHARACTER),
            _ => char::from(b),
        })
        .collect()
}

/// Reads `len` bytes of text and the terminator byte after it. The terminator's value is not
/// checked (some ADS servers other than TwinCAT put a space there), only its presence.
fn terminated(c: &mut Cursor<'_>, len: u16, what: &str) -> Result<String, String> {
    let bytes = c.take(usize::from(len), what)?;
    c.take(1, what)?;
    Ok(text(bytes))
}

/// Parses one symbol entry (from the table or from a 0xF009 answer); returns the symbol and
/// the entry's declared length.
pub(crate) fn parse_symbol_entry(bytes: &[u8]) -> Result<(Symbol, usize), String> {
    let mut head = Cursor::new(bytes);
    let entry_len = head.u32("symbol entry length")? as usize;
    if entry_len < SYMBOL_FIXED {
        return Err(format!(
            "symbol entry length {entry_len} is below the {SYMBOL_FIXED}-byte minimum"
        ));
    }
    if entry_len > bytes.len() {
        return Err(format!(
            "symbol entry length {entry_len} runs past the {} bytes left",
            bytes.len()
        ));
    }
    let entry = bytes.get(..entry_len).ok_or("symbol entry out of range")?;
    let mut c = Cursor::new(entry);
    c.take(4, "symbol entry length")?;
    let group = c.u32("symbol index group")?;
    let offset = c.u32("symbol index offset")?;
    let size = c.u32("symbol size")?;
    let base_type = c.u32("symbol data type")?;
    let flags = c.u16("symbol flags")?;
    let _array_dim = c.u16("symbol array dimensions")?;
    let name_len = c.u16("symbol name length")?;
    let type_len = c.u16("symbol type length")?;
    let comment_len = c.u16("symbol comment length")?;
    let declared =
        SYMBOL_FIXED + usize::from(name_len) + usize::from(type_len) + usize::from(comment_len);
    if declared > entry_len {
        return Err(format!(
            "symbol entry of {entry_len} bytes declares a name of {name_len}, a type of {type_len} and a comment of {comment_len} bytes ({declared} bytes in all)"
        ));
    }
    let name = terminated(&mut c, name_len, "symbol name")?;
    let type_name = terminated(&mut c, type_len, "symbol type")?;
    c.take(usize::from(comment_len) + 1, "symbol comment")?;
    Ok((
        Symbol {
            name,
            group,
            offset,
            size,
            base_type,
            flags,
            type_name,
        },
        entry_len,
    ))
}

/// Why a table (or the upload info) could not be taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// The bytes do not follow the format, or contradict themselves (a malformed answer).
    Malformed(String),
    /// Well-formed entries that carry no information (every name empty): a device that
    /// answers the upload with placeholders, which is how it says it has no table to give.
    Placeholder(String),
    /// Beyond this collector's limits (sizes, counts, nesting).
    Bound(String),
}

/// What a parse of one entry can say: malformed, or beyond a bound.
enum EntryError {
    Malformed(String),
    Bound(String),
}

impl EntryError {
    fn at(self, index: usize, what: &str) -> TableError {
        match self {
            EntryError::Malformed(e) => {
                TableError::Malformed(format!("{what} entry #{index}: {e}"))
            }
            EntryError::Bound(e) => TableError::Bound(format!("{what} entry #{index}: {e}")),
        }
    }

    fn within(self, context: String) -> EntryError {
        match self {
            EntryError::Malformed(e) => EntryError::Malformed(format!("{context}: {e}")),
            EntryError::Bound(e) => EntryError::Bound(format!("{context}: {e}")),
        }
    }
}

impl From<String> for EntryError {
    fn from(e: String) -> Self {
        EntryError::Malformed(e)
    }
}

impl From<&str> for EntryError {
    fn from(e: &str) -> Self {
        EntryError::Malformed(e.to_owned())
    }
}

/// A table answered with entries whose names are all empty is a placeholder; one with some
/// named and some nameless entries contradicts itself.
fn nameless(named: usize, first_nameless: Option<usize>, what: &str) -> Result<(), TableError> {
    match first_nameless {
        None => Ok(()),
        Some(_) if named == 0 => Err(TableError::Placeholder(format!(
            "every {what} entry has an empty name"
        ))),
        Some(index) => Err(TableError::Malformed(format!(
            "{what} entry #{index} has an empty name among {named} named entries"
        ))),
    }
}

/// Parses the symbol table; `expected` is the count from the upload info.
pub(crate) fn parse_symbols(bytes: &[u8], expected: u32) -> Result<Vec<Symbol>, TableError> {
    let mut out = Vec::with_capacity((expected as usize).min(bytes.len() / SYMBOL_FIXED + 1));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rest = bytes;
    let mut index = 0usize;
    let mut first_nameless = None;
    while !rest.is_empty() {
        let (symbol, len) = parse_symbol_entry(rest)
            .map_err(|e| TableError::Malformed(format!("symbol entry #{index}: {e}")))?;
        if symbol.name.is_empty() {
            first_nameless.get_or_insert(index);
        } else if let Some(first) = seen.insert(symbol.name.to_ascii_lowercase(), index) {
            return Err(TableError::Malformed(format!(
                "symbol {:?} is listed twice (entries #{first} and #{index})",
                symbol.name
            )));
        }
        out.push(symbol);
        rest = rest.get(len..).unwrap_or_default();
        index += 1;
        if index > MAX_ENTRIES as usize {
            return Err(TableError::Bound(format!(
                "more than {MAX_ENTRIES} symbol entries"
            )));
        }
    }
    if out.len() != expected as usize {
        return Err(TableError::Malformed(format!(
            "the upload info announced {expected} symbols, the table holds {}",
            out.len()
        )));
    }
    nameless(seen.len(), first_nameless, "symbol")?;
    Ok(out)
}

/// Parses one data-type entry; returns it, its raw `offs` field (a field's place in its
/// structure) and the entry's declared length.
fn parse_datatype_entry(bytes: &[u8], depth: usize) -> Result<(DataType, u32, usize), EntryError> {
    let mut head = Cursor::new(bytes);
    let entry_len = head.u32("data-type entry length")? as usize;
    if entry_len < DATATYPE_FIXED {
        return Err(EntryError::Malformed(format!(
            "data-type entry length {entry_len} is below the {DATATYPE_FIXED}-byte minimum"
        )));
    }
    if entry_len > bytes.len() {
        return Err(EntryError::Malformed(format!(
            "data-type entry length {entry_len} runs past the {} bytes left",
            bytes.len()
        )));
    }
    let entry = bytes
        .get(..entry_len)
        .ok_or("data-type entry out of range")?;
    let mut c = Cursor::new(entry);
    c.take(4, "data-type entry length")?;
    let _version = c.u32("data-type version")?;
    let _hash = c.u32("data-type hash")?;
    let _type_hash = c.u32("data-type type hash")?;
    let size = c.u32("data-type size")?;
    let offset = c.u32("data-type offset")?;
    let base_type = c.u32("data-type base type")?;
    let flags = c.u32("data-type flags")?;
    let name_len = c.u16("data-type name length")?;
    let type_len = c.u16("data-type type length")?;
    let comment_len = c.u16("data-type comment length")?;
    let dims = c.u16("data-type array dimensions")?;
    let sub_items = c.u16("data-type sub-items")?;
    let declared = DATATYPE_FIXED
        + usize::from(name_len)
        + usize::from(type_len)
        + usize::from(comment_len)
        + 8 * usize::from(dims);
    if declared > entry_len {
        return Err(EntryError::Malformed(format!(
            "data-type entry of {entry_len} bytes declares {declared} bytes of names and array bounds"
        )));
    }
    if dims > MAX_ARRAY_DIMS {
        return Err(EntryError::Bound(format!(
            "{dims} array dimensions (at most {MAX_ARRAY_DIMS})"
        )));
    }
    if sub_items > MAX_FIELDS {
        return Err(EntryError::Bound(format!(
            "{sub_items} fields (at most {MAX_FIELDS})"
        )));
    }
    let name = terminated(&mut c, name_len, "data-type name")?;
    let type_name = terminated(&mut c, type_len, "data-type type")?;
    c.take(usize::from(comment_len) + 1, "data-type comment")?;
    let mut array = Vec::with_capacity(usize::from(dims));
    for _ in 0..dims {
        let lower = c.i32("array lower bound")?;
        let count = c.u32("array element count")?;
        array.push((lower, count));
    }
    let mut fields = Vec::with_capacity(usize::from(sub_items));
    if sub_items > 0 && depth >= MAX_SUBITEM_DEPTH {
        return Err(EntryError::Bound(format!(
            "{name:?} has sub-items nested deeper than {MAX_SUBITEM_DEPTH} levels"
        )));
    }
    for i in 0..sub_items {
        let rest = entry.get(c.position()..).unwrap_or_default();
        let (field, field_offset, len) = parse_datatype_entry(rest, depth + 1)
            .map_err(|e| e.within(format!("field #{i} of {name:?}")))?;
        c.take(len, "field")?;
        fields.push(Field {
            name: field.name,
            type_name: field.type_name,
            // 0xFFFFFFFF marks a field placed elsewhere in memory (AT %M...).
            offset: (field_offset != u32::MAX).then_some(field_offset),
            size: field.size,
            base_type: field.base_type,
            array: field.array,
        });
    }
    Ok((
        DataType {
            name,
            size,
            base_type,
            flags,
            type_name,
            array,
            fields,
        },
        offset,
        entry_len,
    ))
}

/// Parses the data-type table; `expected` is the count from the upload info.
pub(crate) fn parse_datatypes(bytes: &[u8], expected: u32) -> Result<Vec<DataType>, TableError> {
    let mut out = Vec::with_capacity((expected as usize).min(bytes.len() / DATATYPE_FIXED + 1));
    let mut rest = bytes;
    let mut index = 0usize;
    let mut first_nameless = None;
    let mut named = 0usize;
    while !rest.is_empty() {
        let (dt, _, len) = parse_datatype_entry(rest, 0).map_err(|e| e.at(index, "data-type"))?;
        if dt.name.is_empty() {
            first_nameless.get_or_insert(index);
        } else {
            named += 1;
        }
        out.push(dt);
        rest = rest.get(len..).unwrap_or_default();
        index += 1;
        if index > MAX_ENTRIES as usize {
            return Err(TableError::Bound(format!(
                "more than {MAX_ENTRIES} data-type entries"
            )));
        }
    }
    if out.len() != expected as usize {
        return Err(TableError::Malformed(format!(
            "the upload info announced {expected} data types, the table holds {}",
            out.len()
        )));
    }
    nameless(named, first_nameless, "data-type")?;
    Ok(out)
}

/// The data types by lower-case name (TwinCAT names are case-insensitive). A name listed
/// twice keeps its first entry, so the choice never depends on hashing.
pub(crate) fn index_types(types: Vec<DataType>) -> BTreeMap<String, DataType> {
    let mut map = BTreeMap::new();
    for dt in types {
        map.entry(dt.name.to_ascii_lowercase()).or_insert(dt);
    }
    map
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn symbol_entry(
        name: &str,
        ty: &str,
        group: u32,
        offset: u32,
        size: u32,
    ) -> Vec<u8> {
        let mut e = Vec::new();
        let len = (SYMBOL_FIXED + name.len() + ty.len()) as u32;
        assert_eq!(SYMBOL_FIXED, 33);
        e.extend_from_slice(&len.to_le_bytes());
        for v in [group, offset, size, 4u32] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(&1u16.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&(name.len() as u16).to_le_bytes());
        e.extend_from_slice(&(ty.len() as u16).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(name.as_bytes());
        e.push(0);
        e.extend_from_slice(ty.as_bytes());
        e.push(0);
        e.push(0);
        e
    }

    #[test]
    fn symbols_parse_and_lengths_are_checked() {
        let mut table = symbol_entry("GVL.a", "REAL", 0x4040, 0, 4);
        table.extend(symbol_entry("GVL.b", "INT", 0x4040, 4, 2));
        let symbols = parse_symbols(&table, 2).expect("table");
        assert_eq!(symbols[1].name, "GVL.b");
        assert_eq!(symbols[0].flags & FLAG_PERSISTENT, 1);
        assert!(matches!(
            parse_symbols(&table, 3),
            Err(TableError::Malformed(_))
        ));
        // A name length running past the entry.
        let mut bad = symbol_entry("GVL.a", "REAL", 0x4040, 0, 4);
        bad[24] = 200;
        assert!(
            matches!(parse_symbols(&bad, 1), Err(TableError::Malformed(e)) if e.contains("declares"))
        );
        // An entry length running past the table, and one below the minimum.
        let mut long = symbol_entry("GVL.a", "REAL", 0x4040, 0, 4);
        long[0] = 250;
        assert!(parse_symbols(&long, 1).is_err());
        let mut short = symbol_entry("GVL.a", "REAL", 0x4040, 0, 4);
        short[0] = 3;
        short[1] = 0;
        assert!(parse_symbols(&short, 1).is_err());
        // A duplicate, and a placeholder.
        let mut twice = symbol_entry("GVL.a", "REAL", 0x4040, 0, 4);
        twice.extend(symbol_entry("gvl.A", "REAL", 0x4040, 0, 4));
        assert!(parse_symbols(&twice, 2).is_err());
        assert!(matches!(
            parse_symbols(&symbol_entry("", "", 0, 0, 0), 1),
            Err(TableError::Placeholder(_))
        ));
    }

    #[test]
    fn upload_info_is_checked_and_bounded() {
        let mut info = Vec::new();
        for v in [2u32, 100, 1, 50, 0, 0] {
            info.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            UploadInfo::parse(&info, false),
            Ok(UploadInfo {
                symbols: 2,
                symbol_bytes: 100,
                datatypes: Some((1, 50))
            })
        );
        assert_eq!(
            UploadInfo::parse(&info[..8], true).map(|i| i.datatypes),
            Ok(None)
        );
        // Too short for the service that was asked.
        assert!(matches!(
            UploadInfo::parse(&info[..16], false),
            Err(TableError::Malformed(_))
        ));
        assert!(matches!(
            UploadInfo::parse(&info[..6], true),
            Err(TableError::Malformed(_))
        ));
        // A table beyond the collector's limit is a bound; counts that cannot fit are
        // malformed.
        let mut huge = info.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            UploadInfo::parse(&huge, false),
            Err(TableError::Bound(_))
        ));
        let mut crowded = info;
        crowded[0..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            UploadInfo::parse(&crowded, false),
            Err(TableError::Malformed(_))
        ));
    }

    #[test]
    fn a_table_of_only_nameless_entries_is_a_placeholder_a_mixed_one_malformed() {
        let mut empty = symbol_entry("", "", 0, 0, 0);
        empty.extend(symbol_entry("", "", 0, 0, 0));
        assert!(matches!(
            parse_symbols(&empty, 2),
            Err(TableError::Placeholder(_))
        ));
        let mut mixed = symbol_entry("GVL.a", "REAL", 0x4040, 0, 4);
        mixed.extend(symbol_entry("", "", 0, 0, 0));
        assert!(
            matches!(parse_symbols(&mixed, 2), Err(TableError::Malformed(e)) if e.contains("#1"))
        );
        // The count is checked first: a placeholder that does not add up is malformed.
        assert!(matches!(
            parse_symbols(&empty, 3),
            Err(TableError::Malformed(_))
        ));
    }

    /// A data-type entry whose one sub-item nests `levels` more sub-items inside it.
    pub(crate) fn nested_datatype(name: &str, levels: usize) -> Vec<u8> {
        let inner = if levels == 0 {
            Vec::new()
        } else {
            nested_datatype("Inner", levels - 1)
        };
        let mut e = Vec::new();
        for v in [1u32, 0, 0, 1, 0, 17, 1] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        let type_name = if levels == 0 { "BYTE" } else { "" };
        for v in [name.len(), type_name.len(), 0, 0, usize::from(levels > 0)] {
            e.extend_from_slice(&(v as u16).to_le_bytes());
        }
        e.extend_from_slice(name.as_bytes());
        e.push(0);
        e.extend_from_slice(type_name.as_bytes());
        e.push(0);
        e.push(0);
        e.extend(inner);
        let mut entry = ((e.len() + 4) as u32).to_le_bytes().to_vec();
        entry.extend(e);
        entry
    }

    #[test]
    fn sub_items_nested_beyond_the_bound_are_a_bound_not_a_stack_overflow() {
        let fine = nested_datatype("ST_Ok", MAX_SUBITEM_DEPTH);
        assert!(parse_datatypes(&fine, 1).is_ok());
        let deep = nested_datatype("ST_Deep", MAX_SUBITEM_DEPTH + 1);
        assert!(
            matches!(parse_datatypes(&deep, 1), Err(TableError::Bound(e)) if e.contains("nested deeper")),
        );
        // Far deeper than any stack would allow if the parser did not stop.
        let absurd = nested_datatype("ST_Absurd", 1_000);
        assert!(matches!(
            parse_datatypes(&absurd, 1),
            Err(TableError::Bound(_))
        ));
    }

    #[test]
    fn text_is_utf8_or_windows_1252() {
        assert_eq!(text(b"Gr\xfc\xdfe \x80"), "Grüße €");
        assert_eq!(text("Grüße".as_bytes()), "Grüße");
    }
}
