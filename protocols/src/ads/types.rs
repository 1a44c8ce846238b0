//! Typed decoding of symbol values: from the symbol's type name, the data-type table and the
//! ADS base type to an [`otdrift_core::Value`], so diffs show `72.5 -> 75.0`, not bytes.
//!
//! | IEC type | value |
//! |---|---|
//! | BOOL | `Bool` (any non-zero byte is TRUE) |
//! | SINT, INT, DINT, LINT | `Int` |
//! | USINT, UINT, UDINT, ULINT, BYTE, WORD, DWORD, LWORD | `UInt` |
//! | REAL, LREAL | `F32`, `F64` |
//! | STRING(n) | `Text` up to the first NUL, Windows-1252 (TwinCAT's code page) |
//! | WSTRING(n) | `Text` up to the first NUL, UTF-16LE (`Bytes` if not valid UTF-16) |
//! | TIME, TIME_OF_DAY / TOD | `UInt` milliseconds (since midnight for TOD) |
//! | LTIME | `UInt` nanoseconds |
//! | DATE, DATE_AND_TIME / DT | `UInt` seconds since 1970-01-01 |
//! | ARRAY [a..b, ...] OF T | `List` (nested per dimension) |
//! | structures | `Map` of field name to value (fields placed elsewhere in memory are left out) |
//! | enumerations, aliases | the underlying type |
//! | anything else (pointers, interfaces, unknown names) | `Bytes` |

use std::collections::{BTreeMap, HashMap};

use otdrift_core::Value;

use super::tables::DataType;

/// How deep a value's type nests (fields, array elements, aliases) before the collector
/// stops following it.
pub(crate) const MAX_DEPTH: usize = 16;
/// The most elements an array may have.
const MAX_ELEMENTS: u64 = 1_000_000;
/// The most dimensions an array may have (as the data-type table's own limit).
const MAX_ARRAY_DIMS: usize = 16;
/// The most structure fields one value may expand to (fields of fields included): a table
/// of structures of many structures could otherwise multiply into millions.
pub(crate) const MAX_FIELDS_PER_VALUE: usize = 65_536;

/// Why a value's shape could not be worked out from the data-type table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ShapeError {
    /// A type contains itself, directly or through others: the table contradicts itself (such
    /// a value would have no end).
    Cycle(String),
    /// Nesting deeper than [`MAX_DEPTH`], or more than [`MAX_FIELDS_PER_VALUE`] fields: a
    /// bound.
    Bound(String),
}

/// `POINTER TO x` and `REFERENCE TO x` hold an address, not an `x`: they are leaves, never
/// followed (a structure may well point to its own type, as a linked list does).
fn is_indirection(name: &str) -> bool {
    let name = name.trim_start();
    ["POINTER TO ", "REFERENCE TO "].iter().any(|prefix| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

/// Where a walk through the types is: the table entries it is inside (for cycles) and how
/// many fields it has expanded.
#[derive(Default)]
struct Walk {
    inside: Vec<String>,
    fields: usize,
}

impl Walk {
    fn chain(&self, last: &str) -> String {
        let mut names: Vec<&str> = self.inside.iter().map(String::as_str).collect();
        names.push(last);
        names.join(" -> ")
    }
}

/// ADS base types (`ADST_*`).
mod base {
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const REAL32: u32 = 4;
    pub const REAL64: u32 = 5;
    pub const INT8: u32 = 16;
    pub const UINT8: u32 = 17;
    pub const UINT16: u32 = 18;
    pub const UINT32: u32 = 19;
    pub const INT64: u32 = 20;
    pub const UINT64: u32 = 21;
    pub const STRING: u32 = 30;
    pub const WSTRING: u32 = 31;
    pub const BIT: u32 = 33;
}

/// A primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prim {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
}

impl Prim {
    fn size(self) -> u32 {
        match self {
            Prim::Bool | Prim::I8 | Prim::U8 => 1,
            Prim::I16 | Prim::U16 => 2,
            Prim::I32 | Prim::U32 | Prim::F32 => 4,
            Prim::I64 | Prim::U64 | Prim::F64 => 8,
        }
    }

    fn by_name(name: &str) -> Option<Prim> {
        Some(match name {
            "BOOL" | "BIT" => Prim::Bool,
            "SINT" => Prim::I8,
            "INT" => Prim::I16,
            "DINT" => Prim::I32,
            "LINT" => Prim::I64,
            "USINT" | "BYTE" => Prim::U8,
            "UINT" | "WORD" => Prim::U16,
            "UDINT" | "DWORD" | "TIME" | "TIME_OF_DAY" | "TOD" | "DATE" | "DATE_AND_TIME"
            | "DT" => Prim::U32,
            "ULINT" | "LWORD" | "LTIME" => Prim::U64,
            "REAL" => Prim::F32,
            "LREAL" => Prim::F64,
            _ => return None,
        })
    }

    fn by_base(base: u32) -> Option<Prim> {
        Some(match base {
            base::BIT => Prim::Bool,
            base::INT8 => Prim::I8,
            base::INT16 => Prim::I16,
            base::INT32 => Prim::I32,
            base::INT64 => Prim::I64,
            base::UINT8 => Prim::U8,
            base::UINT16 => Prim::U16,
            base::UINT32 => Prim::U32,
            base::UINT64 => Prim::U64,
            base::REAL32 => Prim::F32,
            base::REAL64 => Prim::F64,
            _ => return None,
        })
    }

    /// The value of a primitive of this kind in `bytes`, if they hold one.
    pub(crate) fn decode(self, bytes: &[u8]) -> Option<Value> {
        fn arr<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
            bytes.get(..N)?.try_into().ok()
        }
        Some(match self {
            Prim::Bool => Value::Bool(*bytes.first()? != 0),
            Prim::I8 => Value::Int(i64::from(i8::from_le_bytes(arr(bytes)?))),
            Prim::I16 => Value::Int(i64::from(i16::from_le_bytes(arr(bytes)?))),
            Prim::I32 => Value::Int(i64::from(i32::from_le_bytes(arr(bytes)?))),
            Prim::I64 => Value::Int(i64::from_le_bytes(arr(bytes)?)),
            Prim::U8 => Value::UInt(u64::from(*bytes.first()?)),
            Prim::U16 => Value::UInt(u64::from(u16::from_le_bytes(arr(bytes)?))),
            Prim::U32 => Value::UInt(u64::from(u32::from_le_bytes(arr(bytes)?))),
            Prim::U64 => Value::UInt(u64::from_le_bytes(arr(bytes)?)),
            Prim::F32 => Value::F32(f32::from_le_bytes(arr(bytes)?)),
            Prim::F64 => Value::F64(f64::from_le_bytes(arr(bytes)?)),
        })
    }
}

/// What a value looks like in memory.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Shape {
    Prim(Prim),
    /// STRING (`wide = false`) or WSTRING, `size` bytes including the terminator.
    Str {
        wide: bool,
    },
    /// Dimensions (lower bound, count) and the element shape and size.
    Array {
        dims: Vec<(i32, u32)>,
        elem: Box<Shape>,
        elem_size: u32,
    },
    /// Fields: name, offset, size, shape.
    Struct(Vec<(String, u32, u32, Shape)>),
    Bytes,
}

/// Resolves type names against the data-type table.
pub(crate) struct Types<'a> {
    pub table: &'a BTreeMap<String, DataType>,
}

impl Types<'_> {
    /// The shape of a value of type `name` that occupies `size` bytes and has ADS base type
    /// `base`. Never loops and never recurses deeper than [`MAX_DEPTH`]: a type that contains
    /// itself is a [`ShapeError::Cycle`], deeper nesting a [`ShapeError::Bound`].
    pub(crate) fn shape(&self, name: &str, size: u32, base: u32) -> Result<Shape, ShapeError> {
        self.shape_at(name, size, base, 0, &mut Walk::default())
    }

    fn shape_at(
        &self,
        name: &str,
        size: u32,
        base: u32,
        depth: usize,
        walk: &mut Walk,
    ) -> Result<Shape, ShapeError> {
        let name = name.trim();
        if depth > MAX_DEPTH {
            return Err(ShapeError::Bound(format!(
                "type {} nests more than {MAX_DEPTH} levels deep",
                walk.chain(name)
            )));
        }
        if is_indirection(name) {
            return Ok(by_base(base, size));
        }
        let upper = name.to_ascii_uppercase();
        let key = name.to_ascii_lowercase();
        if let Some(dt) = self.table.get(&key) {
            if walk.inside.contains(&key) {
                return Err(ShapeError::Cycle(format!(
                    "data type {} contains itself ({})",
                    dt.name,
                    walk.chain(&key)
                )));
            }
            walk.inside.push(key);
            let shape = self.table_shape(dt, depth, walk);
            walk.inside.pop();
            return shape;
        }
        if let Some(prim) = Prim::by_name(&upper) {
            return Ok(if prim.size() == size {
                Shape::Prim(prim)
            } else {
                Shape::Bytes
            });
        }
        if upper.starts_with("STRING") {
            return Ok(Shape::Str { wide: false });
        }
        if upper.starts_with("WSTRING") {
            return Ok(Shape::Str { wide: true });
        }
        if let Some((dims, elem)) = parse_array(name) {
            return self.array(dims, elem, size, base, depth, walk);
        }
        Ok(by_base(base, size))
    }

    fn table_shape(
        &self,
        dt: &DataType,
        depth: usize,
        walk: &mut Walk,
    ) -> Result<Shape, ShapeError> {
        if !dt.array.is_empty() {
            return self.array(
                dt.array.clone(),
                dt.type_name.clone(),
                dt.size,
                dt.base_type,
                depth,
                walk,
            );
        }
        if !dt.fields.is_empty() {
            let mut fields = Vec::with_capacity(dt.fields.len());
            for f in &dt.fields {
                let Some(offset) = f.offset else { continue };
                let end = u64::from(offset) + u64::from(f.size);
                if end > u64::from(dt.size) {
                    // A field beyond its structure's end: bit fields (whose offsets and
                    // sizes TwinCAT gives in bits) look like this, so the value is kept
                    // as the bytes it is rather than guessed at.
                    return Ok(Shape::Bytes);
                }
                walk.fields += 1;
                if walk.fields > MAX_FIELDS_PER_VALUE {
                    return Err(ShapeError::Bound(format!(
                        "a value of type {} expands to more than {MAX_FIELDS_PER_VALUE} fields",
                        walk.inside.first().map_or(dt.name.as_str(), String::as_str)
                    )));
                }
                let shape = if f.array.is_empty() {
                    self.shape_at(&f.type_name, f.size, f.base_type, depth + 1, walk)?
                } else {
                    let elem = parse_array(&f.type_name)
                        .map(|(_, e)| e)
                        .unwrap_or_else(|| f.type_name.clone());
                    self.array(f.array.clone(), elem, f.size, f.base_type, depth + 1, walk)?
                };
                fields.push((f.name.clone(), offset, f.size, shape));
            }
            return Ok(Shape::Struct(fields));
        }
        if !dt.type_name.is_empty() && !dt.type_name.eq_ignore_ascii_case(&dt.name) {
            // An alias or an enumeration: the underlying type.
            return self.shape_at(&dt.type_name, dt.size, dt.base_type, depth + 1, walk);
        }
        if let Some(prim) = Prim::by_name(&dt.name.to_ascii_uppercase())
            && prim.size() == dt.size
        {
            return Ok(Shape::Prim(prim));
        }
        Ok(by_base(dt.base_type, dt.size))
    }

    fn array(
        &self,
        dims: Vec<(i32, u32)>,
        elem_name: String,
        size: u32,
        base: u32,
        depth: usize,
        walk: &mut Walk,
    ) -> Result<Shape, ShapeError> {
        let total = dims
            .iter()
            .try_fold(1u64, |acc, &(_, n)| acc.checked_mul(u64::from(n)));
        if dims.len() > MAX_ARRAY_DIMS {
            return Err(ShapeError::Bound(format!(
                "an array of {elem_name} with {} dimensions (at most {MAX_ARRAY_DIMS})",
                dims.len()
            )));
        }
        let Some(total) = total.filter(|&t| t > 0 && t <= MAX_ELEMENTS) else {
            return Ok(Shape::Bytes);
        };
        if u64::from(size) % total != 0 {
            return Ok(Shape::Bytes);
        }
        let Ok(elem_size) = u32::try_from(u64::from(size) / total) else {
            return Ok(Shape::Bytes);
        };
        if elem_size == 0 {
            return Ok(Shape::Bytes);
        }
        let elem = self.shape_at(&elem_name, elem_size, base, depth + 1, walk)?;
        Ok(Shape::Array {
            dims,
            elem: Box::new(elem),
            elem_size,
        })
    }
}

/// The table entry a type name leads to, the way [`Types::shape`] follows it: the name
/// itself when the table lists it, else the element type of an `ARRAY [..] OF` name;
/// pointers and references lead nowhere.
fn referenced<'t>(table: &'t BTreeMap<String, DataType>, name: &str) -> Option<&'t str> {
    let mut name = name.trim();
    // Each step drops at least `ARRAY [..] OF`, so this ends within the name's length.
    loop {
        if is_indirection(name) {
            return None;
        }
        if let Some((key, _)) = table.get_key_value(&name.to_ascii_lowercase()) {
            return Some(key.as_str());
        }
        let (_, elem) = parse_array(name)?;
        let rest = name.len().saturating_sub(elem.len());
        name = name.get(rest..)?.trim();
    }
}

/// The entries one entry refers to: its fields' types, its element type, or the type it
/// aliases.
fn references<'t>(table: &'t BTreeMap<String, DataType>, dt: &DataType) -> Vec<&'t str> {
    let mut out = Vec::new();
    if !dt.array.is_empty() {
        out.extend(referenced(table, &dt.type_name));
    } else if !dt.fields.is_empty() {
        // An array field's type is `ARRAY [..] OF T`, which `referenced` follows to `T`.
        for f in &dt.fields {
            out.extend(referenced(table, &f.type_name));
        }
    } else if !dt.type_name.is_empty() && !dt.type_name.eq_ignore_ascii_case(&dt.name) {
        out.extend(referenced(table, &dt.type_name));
    }
    out
}

/// Checks a whole data-type table for types that contain themselves (directly, or through
/// other types). Such a table contradicts itself: a structure cannot contain itself, and
/// anything that followed it would never end. Iterative, so even a chain of a million types
/// cannot exhaust the stack; each entry and reference is visited once.
pub(crate) fn check_table(table: &BTreeMap<String, DataType>) -> Result<(), String> {
    let index: HashMap<&str, usize> = table
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let entries: Vec<&DataType> = table.values().collect();
    let edges: Vec<Vec<usize>> = entries
        .iter()
        .map(|dt| {
            references(table, dt)
                .into_iter()
                .filter_map(|k| index.get(k).copied())
                .collect()
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; entries.len()];
    for root in 0..entries.len() {
        if marks.get(root) != Some(&Mark::New) {
            continue;
        }
        // (entry, next reference to follow)
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        if let Some(m) = marks.get_mut(root) {
            *m = Mark::Open;
        }
        while let Some(top) = path.last_mut() {
            let (node, edge) = *top;
            top.1 += 1;
            let target = edges.get(node).and_then(|e| e.get(edge)).copied();
            let Some(target) = target else {
                if let Some(m) = marks.get_mut(node) {
                    *m = Mark::Done;
                }
                path.pop();
                continue;
            };
            match marks.get(target) {
                Some(Mark::New) => {
                    if let Some(m) = marks.get_mut(target) {
                        *m = Mark::Open;
                    }
                    path.push((target, 0));
                }
                Some(Mark::Open) => {
                    let from = path.iter().position(|&(n, _)| n == target).unwrap_or(0);
                    let mut names: Vec<&str> = path
                        .get(from..)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|&(n, _)| entries.get(n).map(|dt| dt.name.as_str()))
                        .collect();
                    let first = entries.get(target).map_or("?", |dt| dt.name.as_str());
                    names.push(first);
                    return Err(format!(
                        "data type {first} contains itself ({})",
                        names.join(" -> ")
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn by_base(base: u32, size: u32) -> Shape {
    match base {
        base::STRING => Shape::Str { wide: false },
        base::WSTRING => Shape::Str { wide: true },
        other => match Prim::by_base(other) {
            Some(prim) if prim.size() == size => Shape::Prim(prim),
            _ => Shape::Bytes,
        },
    }
}

/// Parses `ARRAY [1..10, 0..2] OF REAL` into dimensions (lower bound, count) and the
/// element type name.
pub(crate) fn parse_array(name: &str) -> Option<(Vec<(i32, u32)>, String)> {
    let rest = name.trim();
    let head = rest.get(..5)?;
    if !head.eq_ignore_ascii_case("ARRAY") {
        return None;
    }
    let rest = rest.get(5..)?.trim_start();
    let rest = rest.strip_prefix('[')?;
    let close = rest.find(']')?;
    let ranges = rest.get(..close)?;
    let after = rest.get(close + 1..)?.trim_start();
    let of = after.get(..2)?;
    if !of.eq_ignore_ascii_case("OF") {
        return None;
    }
    let elem = after.get(2..)?.trim().to_owned();
    if elem.is_empty() {
        return None;
    }
    let mut dims = Vec::new();
    for range in ranges.split(',') {
        let (lo, hi) = range.split_once("..")?;
        let lo: i32 = lo.trim().parse().ok()?;
        let hi: i32 = hi.trim().parse().ok()?;
        let count = i64::from(hi) - i64::from(lo) + 1;
        dims.push((lo, u32::try_from(count).ok().filter(|&c| c > 0)?));
    }
    (!dims.is_empty()).then_some((dims, elem))
}

#[cfg(test)]
mod tests {
    use super::super::decode::decode;
    use super::super::tables::Field;
    use super::*;

    #[test]
    fn arrays_parse() {
        assert_eq!(
            parse_array("ARRAY [1..5] OF REAL"),
            Some((vec![(1, 5)], "REAL".to_owned()))
        );
        assert_eq!(
            parse_array("array[0..1, -1..1] of ST_X"),
            Some((vec![(0, 2), (-1, 3)], "ST_X".to_owned()))
        );
        assert_eq!(parse_array("ARRAY [5..1] OF INT"), None);
        assert_eq!(parse_array("ARRAY [1..2]"), None);
        assert_eq!(parse_array("STRING(80)"), None);
    }

    #[test]
    fn structures_decode_as_fields_and_cycles_end() {
        let mut table = BTreeMap::new();
        let field = |name: &str, ty: &str, offset: u32, size: u32, base: u32| Field {
            name: name.into(),
            type_name: ty.into(),
            offset: Some(offset),
            size,
            base_type: base,
            array: vec![],
        };
        table.insert(
            "st_recipe".to_owned(),
            DataType {
                name: "ST_Recipe".into(),
                size: 8,
                base_type: 65,
                flags: 1,
                type_name: String::new(),
                array: vec![],
                fields: vec![
                    field("Volume", "REAL", 0, 4, 4),
                    field("Mode", "E_Mode", 4, 2, 2),
                ],
            },
        );
        table.insert(
            "e_mode".to_owned(),
            DataType {
                name: "E_Mode".into(),
                size: 2,
                base_type: 2,
                flags: 1,
                type_name: "INT".into(),
                array: vec![],
                fields: vec![],
            },
        );
        table.insert(
            "t_loop".to_owned(),
            DataType {
                name: "T_Loop".into(),
                size: 4,
                base_type: 65,
                flags: 1,
                type_name: "T_Loop2".into(),
                array: vec![],
                fields: vec![],
            },
        );
        table.insert(
            "t_loop2".to_owned(),
            DataType {
                name: "T_Loop2".into(),
                size: 4,
                base_type: 65,
                flags: 1,
                type_name: "T_Loop".into(),
                array: vec![],
                fields: vec![],
            },
        );
        let t = Types { table: &table };
        let mut bytes = 500.0f32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&1i16.to_le_bytes());
        bytes.extend_from_slice(&[0, 0]);
        let mut flat = Vec::new();
        decode(&t.shape("ST_Recipe", 8, 65).expect("shape"), &bytes)
            .flatten("GVL.r".into(), &mut flat);
        assert_eq!(
            flat,
            vec![
                ("GVL.r.Volume".to_owned(), Value::F32(500.0)),
                ("GVL.r.Mode".to_owned(), Value::Int(1)),
            ]
        );
        assert!(
            matches!(t.shape("T_Loop", 4, 65), Err(ShapeError::Cycle(e)) if e.contains("T_Loop")),
        );
        assert!(check_table(&table).is_err_and(|e| e.contains("T_Loop")));
    }

    fn alias(name: &str, target: &str, size: u32) -> DataType {
        DataType {
            name: name.into(),
            size,
            base_type: 4,
            flags: 1,
            type_name: target.into(),
            array: vec![],
            fields: vec![],
        }
    }

    fn structure(name: &str, fields: &[(&str, &str)]) -> DataType {
        DataType {
            name: name.into(),
            size: 8,
            base_type: 65,
            flags: 1,
            type_name: String::new(),
            array: vec![],
            fields: fields
                .iter()
                .map(|(f, ty)| Field {
                    name: (*f).into(),
                    type_name: (*ty).into(),
                    offset: Some(0),
                    size: 8,
                    base_type: 65,
                    array: vec![],
                })
                .collect(),
        }
    }

    fn table_of(types: Vec<DataType>) -> BTreeMap<String, DataType> {
        types
            .into_iter()
            .map(|dt| (dt.name.to_ascii_lowercase(), dt))
            .collect()
    }

    #[test]
    fn a_type_containing_itself_is_a_cycle_a_pointer_to_itself_is_not() {
        // Directly: a structure whose field is the structure.
        let direct = table_of(vec![structure("ST_Loop", &[("Next", "ST_Loop")])]);
        assert!(check_table(&direct).is_err_and(|e| e.contains("ST_Loop -> ST_Loop")));
        let t = Types { table: &direct };
        assert!(matches!(
            t.shape("ST_Loop", 8, 65),
            Err(ShapeError::Cycle(_))
        ));
        // Through others, and through an array of itself.
        let indirect = table_of(vec![
            structure("ST_A", &[("b", "ST_B")]),
            structure("ST_B", &[("c", "ARRAY [1..2] OF ST_C")]),
            structure("ST_C", &[("a", "ST_A")]),
        ]);
        assert!(check_table(&indirect).is_err_and(|e| e.contains("ST_A -> ST_B -> ST_C -> ST_A")));
        // A linked list points to its own type: that is an address, not containment.
        let list = table_of(vec![structure(
            "ST_Node",
            &[
                ("pNext", "POINTER TO ST_Node"),
                ("rSelf", "REFERENCE TO ST_Node"),
            ],
        )]);
        assert_eq!(check_table(&list), Ok(()));
        assert!(Types { table: &list }.shape("ST_Node", 8, 65).is_ok());
        // A base type listed under its own name is not an alias of itself.
        let base = table_of(vec![alias("REAL", "REAL", 4)]);
        assert_eq!(check_table(&base), Ok(()));
    }

    #[test]
    fn nesting_beyond_the_bound_is_a_bound_and_a_long_chain_is_no_stack_overflow() {
        // A chain of aliases one deeper than followed.
        let chain: Vec<DataType> = (0..=MAX_DEPTH + 1)
            .map(|i| {
                let target = if i == MAX_DEPTH + 1 {
                    "REAL".to_owned()
                } else {
                    format!("T_{}", i + 1)
                };
                alias(&format!("T_{i}"), &target, 4)
            })
            .collect();
        let table = table_of(chain);
        assert_eq!(check_table(&table), Ok(()), "deep is not circular");
        let t = Types { table: &table };
        assert!(
            matches!(t.shape("T_0", 4, 4), Err(ShapeError::Bound(e)) if e.contains("levels deep"))
        );
        assert_eq!(t.shape("T_2", 4, 4), Ok(Shape::Prim(Prim::F32)));
        // A chain of 200 000 types closing on itself: found without recursion.
        let n = 200_000usize;
        let ring = table_of(
            (0..n)
                .map(|i| alias(&format!("R{i}"), &format!("R{}", (i + 1) % n), 4))
                .collect(),
        );
        assert!(check_table(&ring).is_err());
        // An array name with thousands of dimensions is refused, not recursed into.
        let dims = vec!["0..0"; 5000].join(",");
        let empty = BTreeMap::new();
        assert!(matches!(
            Types { table: &empty }.shape(&format!("ARRAY [{dims}] OF BYTE"), 1, 17),
            Err(ShapeError::Bound(_))
        ));
    }
}
