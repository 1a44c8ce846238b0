//! Siemens S7comm (ISO-on-TCP): an s7 asset's settings, the keys it takes, and their checks.

use super::{Address, Asset, Unit, all, layout};
use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{
    Cx, Got, Tbl, check_keys, get_bool, get_checked, get_int, get_path, table_array,
};
use crate::{Protocol, ProtocolConfig};

/// S7 in the registry ([`super::UNITS`]).
pub(super) const UNIT: Unit = Unit {
    protocol: Protocol::S7,
    name: "s7",
    article: "an",
    default_port: 102,
    address: Address::HostPort,
    asset_keys: &["rack", "slot", "upload_blocks", "pdu_size"],
    setpoint_keys: &["db", "start", "size"],
    setpoint_optional_keys: &["field", "source"],
    validate,
};

/// Siemens S7 settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S7Config {
    /// Rack of the CPU (0..=7).
    pub rack: u16,
    /// Slot of the CPU (0..=31; 1 or 2 for S7-300/1200/1500, often 3 for S7-400).
    pub slot: u16,
    /// Whether to also read the blocks' code for hashing (slower, still read-only).
    pub upload_blocks: bool,
    /// The PDU size to negotiate (`pdu_size`, default 960, 240..=960); the CPU may grant less.
    pub pdu_size: u16,
    /// Data-block ranges to capture.
    pub setpoints: Vec<S7Setpoint>,
}

/// An S7 data-block range to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S7Setpoint {
    /// Name used in diffs.
    pub name: String,
    /// Data block number (1..=65535).
    pub db: u16,
    /// Byte offset in the DB.
    pub start: u32,
    /// Bytes to read (1..=65536).
    pub size: u32,
    /// Typed fields laid over the bytes (`[[asset.setpoints.field]]`), sorted by address;
    /// bytes outside every field stay one item each.
    pub fields: Vec<S7Field>,
}

/// The keys of `[[asset.setpoints.field]]` on an S7 setpoint.
pub(crate) const FIELD_KEYS: &[&str] = &["name", "offset", "bit", "type"];

/// A named, typed value in a DB range, as the DB's declaration has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S7Field {
    /// The item name: `s7/db<N>/<name>`.
    pub name: String,
    /// Its byte address in the DB (as STEP 7 shows it: `DBD 4` is offset 4).
    pub offset: u32,
    /// For BOOL, the bit (0-7) of that byte.
    pub bit: u8,
    /// Its type.
    pub kind: S7FieldType,
}

/// The S7 elementary types a field may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S7FieldType {
    /// BOOL: one bit.
    Bool,
    /// INT: 16-bit signed.
    Int,
    /// DINT: 32-bit signed.
    Dint,
    /// UINT: 16-bit unsigned.
    Uint,
    /// UDINT: 32-bit unsigned.
    Udint,
    /// REAL: IEEE 754 single.
    Real,
    /// LREAL: IEEE 754 double.
    Lreal,
    /// STRING[N]: maximum length, current length, then N characters (N + 2 bytes).
    String(u8),
}

impl S7FieldType {
    /// Parses a config type name (`real`, `string[20]`; case-insensitive, as STEP 7 writes
    /// them either way).
    pub fn parse(s: &str) -> Option<S7FieldType> {
        let lower = s.to_ascii_lowercase();
        Some(match lower.as_str() {
            "bool" => S7FieldType::Bool,
            "int" => S7FieldType::Int,
            "dint" => S7FieldType::Dint,
            "uint" => S7FieldType::Uint,
            "udint" => S7FieldType::Udint,
            "real" => S7FieldType::Real,
            "lreal" => S7FieldType::Lreal,
            other => {
                let n = other.strip_prefix("string[")?.strip_suffix(']')?;
                let n: u8 = n.trim().parse().ok()?;
                if n == 0 || n > 254 {
                    return None;
                }
                S7FieldType::String(n)
            }
        })
    }

    /// Bytes it occupies (BOOL: the byte its bit is in).
    pub fn bytes(self) -> u32 {
        match self {
            S7FieldType::Bool => 1,
            S7FieldType::Int | S7FieldType::Uint => 2,
            S7FieldType::Dint | S7FieldType::Udint | S7FieldType::Real => 4,
            S7FieldType::Lreal => 8,
            S7FieldType::String(n) => u32::from(n) + 2,
        }
    }

    /// The name used in the config and in messages.
    pub fn name(self) -> String {
        match self {
            S7FieldType::Bool => "bool".into(),
            S7FieldType::Int => "int".into(),
            S7FieldType::Dint => "dint".into(),
            S7FieldType::Uint => "uint".into(),
            S7FieldType::Udint => "udint".into(),
            S7FieldType::Real => "real".into(),
            S7FieldType::Lreal => "lreal".into(),
            S7FieldType::String(n) => format!("string[{n}]"),
        }
    }
}

/// The unit's validator: this protocol's asset keys and setpoints, as [`ProtocolConfig::S7`].
fn validate(cx: &mut Cx<'_>, a: &Asset<'_, '_, '_>) -> Option<ProtocolConfig> {
    s7(cx, a.table, a.setpoints, a.names).map(ProtocolConfig::S7)
}

/// The protocol's own asset keys, then every setpoint (all checked, even after one failed).
fn s7(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    sps: &[Tbl<'_, '_>],
    names: &[Option<String>],
) -> Option<S7Config> {
    let rack =
        get_int::<u16>(cx, t, "rack", 0, 7).req(cx, t, "rack", "s7 assets need rack and slot");
    let slot =
        get_int::<u16>(cx, t, "slot", 0, 31).req(cx, t, "slot", "s7 assets need rack and slot");
    let upload_blocks = get_bool(cx, t, "upload_blocks").or(false);
    let pdu_size = get_int::<u16>(cx, t, "pdu_size", 240, 960).or(960);
    let need = UNIT.setpoint_need();
    let mut field_names = layout::Names::default();
    let setpoints: Vec<Option<S7Setpoint>> = sps
        .iter()
        .zip(names)
        .map(|(sp, name)| {
            let db = get_int::<u16>(cx, sp, "db", 1, 65_535).req(cx, sp, "db", &need);
            // S7comm addresses bytes with 21 bits (a 24-bit bit address): 2 MiB per DB.
            let start = get_int::<u32>(cx, sp, "start", 0, 2_097_151).req(cx, sp, "start", &need);
            let size = get_int::<u32>(cx, sp, "size", 1, 65_536).req(cx, sp, "size", &need);
            if let (Some((st, _)), Some((sz, span))) = (&start, &size)
                && u64::from(*st) + u64::from(*sz) > 2_097_152
            {
                cx.push(
                    span.clone(),
                    sp.key("size"),
                    Kind::InvalidValue,
                    format!(
                        "{}start {st} + size {sz} ends beyond byte 2097152, the last byte S7comm can address in a DB",
                        sp.who
                    ),
                );
            }
            let range = match (&db, &start, &size) {
                (Some((d, _)), Some((st, _)), Some((sz, _))) => Some((*d, *st, *st + *sz)),
                _ => None,
            };
            let fields = fields(cx, sp, range, &mut field_names);
            Some(S7Setpoint {
                name: name.clone()?,
                db: db?.0,
                start: start?.0,
                size: size?.0,
                fields: fields?,
            })
        })
        .collect();
    Some(S7Config {
        rack: rack?.0,
        slot: slot?.0,
        upload_blocks: upload_blocks?,
        pdu_size: pdu_size?,
        setpoints: all(setpoints)?,
    })
}

/// The `[[asset.setpoints.field]]` layout of one DB range (`range`: DB, start, end exclusive,
/// when the setpoint's own keys were valid): keys, name, type and bit of each field, then each
/// against the range and the others. `None` when any was reported.
fn fields(
    cx: &mut Cx<'_>,
    sp: &Tbl<'_, '_>,
    range: Option<(u16, u32, u32)>,
    names: &mut layout::Names,
) -> Option<Vec<S7Field>> {
    let tables = table_array(cx, sp, "field", "[[asset.setpoints.field]]")?;
    if let Got::Val(path, span) = get_path(cx, sp, "source") {
        if !tables.is_empty() {
            cx.push(
                span,
                sp.key("source"),
                Kind::InvalidValue,
                format!(
                    "{}a setpoint takes its fields from `source` or from [[asset.setpoints.field]], not both",
                    sp.who
                ),
            );
            return None;
        }
        return source_fields(cx, sp, &path, span, range, names);
    }
    let need = "fields need name, offset, type (and bit for bool)";
    let mut out = Vec::new();
    let mut footprints = Vec::new();
    let mut ok = true;
    for f in &tables {
        check_keys(cx, f, FIELD_KEYS, " in [[asset.setpoints.field]]", &|_| {
            None
        });
        let name = layout::name(cx, f, need);
        let offset = get_int::<u32>(cx, f, "offset", 0, 2_097_151).req(cx, f, "offset", need);
        let kind = get_checked(cx, f, "type", Kind::InvalidValue, |s| {
            S7FieldType::parse(s).ok_or_else(|| {
                format!("{s:?} is not an S7 field type; expected one of bool, int, dint, uint, udint, real, lreal, string[N] (N 1-254)")
            })
        })
        .req(cx, f, "type", need);
        let bit = get_int::<u8>(cx, f, "bit", 0, 7);
        let (Some(name), Some((offset, ospan)), Some((kind, _))) = (name, offset, kind) else {
            ok = false;
            continue;
        };
        let bit = match (kind, bit) {
            (S7FieldType::Bool, b) => match b.req(cx, f, "bit", "a bool field needs its bit (0-7)")
            {
                Some((b, _)) => b,
                None => {
                    ok = false;
                    continue;
                }
            },
            (_, crate::validate::read::Got::Absent) => 0,
            (_, crate::validate::read::Got::Bad) => {
                ok = false;
                continue;
            }
            (other, crate::validate::read::Got::Val(_, span)) => {
                cx.push(
                    span,
                    f.key("bit"),
                    Kind::InvalidValue,
                    format!(
                        "{}bit is for bool fields; {name:?} is {}",
                        sp.who,
                        other.name()
                    ),
                );
                ok = false;
                continue;
            }
        };
        let end = u64::from(offset) + u64::from(kind.bytes());
        let range_text = range.map(|(db, start, stop)| format!("DB{db} {start}..={}", stop - 1));
        let at = range
            .zip(range_text.as_deref())
            .map(|((db, start, stop), text)| layout::Placement {
                offset_span: ospan,
                inside: offset >= start && end <= u64::from(stop),
                detail: format!("{} at {offset}, {} byte(s)", kind.name(), kind.bytes()),
                range: text,
                path: format!("s7/db{db}/{name}"),
            });
        if !layout::place(cx, sp, f, &name, names, at) {
            ok = false;
            continue;
        }
        let (first, last, shown) = if kind == S7FieldType::Bool {
            let at = u64::from(offset) * 8 + u64::from(bit);
            (at, at, format!("bool at {offset}.{bit}"))
        } else {
            (
                u64::from(offset) * 8,
                end * 8 - 1,
                format!("{} at {offset}", kind.name()),
            )
        };
        footprints.push(layout::Footprint {
            table: f,
            name: name.clone(),
            first,
            last,
            shown,
        });
        out.push(S7Field {
            name,
            offset,
            bit,
            kind,
        });
    }
    ok &= layout::no_overlaps(cx, sp, "bit", &mut footprints);
    out.sort_by_key(|f| (f.offset, f.bit));
    ok.then_some(out)
}

/// The fields of a DB source export (`source`, `s7_source.rs`) that lie inside the range
/// (`range`: DB, start, end exclusive); a source that cannot be read or laid out is an error
/// at `source` naming the source's own line.
fn source_fields(
    cx: &mut Cx<'_>,
    sp: &Tbl<'_, '_>,
    path: &std::path::Path,
    span: std::ops::Range<usize>,
    range: Option<(u16, u32, u32)>,
    names: &mut layout::Names,
) -> Option<Vec<S7Field>> {
    /// A DB source export is a few hundred KiB at most.
    const MAX_SOURCE: u64 = 16 * 1024 * 1024;
    let text = std::fs::File::open(path).and_then(|f| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_SOURCE + 1), &mut text)?;
        Ok(text)
    });
    let problem = match text {
        Ok(text) if text.len() as u64 > MAX_SOURCE => Err(format!(
            "the DB source {} is larger than 16 MiB",
            path.display()
        )),
        Ok(text) => super::s7_source::layout(&text).map_err(|e| {
            format!(
                "{}:{}: {} (the DB source export)",
                path.display(),
                e.line,
                e.message
            )
        }),
        Err(e) => Err(format!("cannot read the DB source {}: {e}", path.display())),
    };
    let (fields, _size) = match problem {
        Ok(found) => found,
        Err(message) => {
            cx.push(
                span,
                sp.key("source"),
                Kind::InvalidValue,
                format!("{}{message}", sp.who),
            );
            return None;
        }
    };
    let Some((db, start, end)) = range else {
        return Some(Vec::new());
    };
    let mut out: Vec<S7Field> = fields
        .into_iter()
        .filter(|f| {
            f.offset >= start && u64::from(f.offset) + u64::from(f.kind.bytes()) <= u64::from(end)
        })
        .collect();
    for f in &out {
        if !names.take(cx, sp, sp, &f.name, format!("s7/db{db}/{}", f.name)) {
            return None;
        }
    }
    out.sort_by_key(|f| (f.offset, f.bit));
    Some(out)
}
