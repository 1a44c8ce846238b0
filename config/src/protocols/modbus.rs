//! Modbus TCP: a modbus asset's settings, the keys it takes, and their checks (ranges within
//! the 16-bit address space, no two setpoints sharing an address).

use std::fmt;

use super::{Address, Asset, Unit, all, layout};
use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{Cx, Tbl, check_keys, get_bool, get_checked, get_int, table_array};
use crate::{Protocol, ProtocolConfig};

/// Modbus in the registry ([`super::UNITS`]).
pub(super) const UNIT: Unit = Unit {
    protocol: Protocol::Modbus,
    name: "modbus",
    article: "a",
    default_port: 502,
    address: Address::HostPort,
    asset_keys: &["unit_id", "device_id", "max_registers", "max_bits"],
    setpoint_keys: &["table", "start", "count"],
    setpoint_optional_keys: &["field"],
    validate,
};

/// Modbus settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModbusConfig {
    /// Unit identifier (slave id) sent with every request; gateways route on it.
    pub unit_id: u8,
    /// Whether to ask Read Device Identification (FC 43/14) for the identity; some devices
    /// answer it badly, so it can be switched off.
    pub device_id: bool,
    /// Registers per read request (the protocol allows at most 125; some devices less).
    pub max_registers: u16,
    /// Coils / discrete inputs per read request (the protocol allows at most 2000).
    pub max_bits: u16,
    /// Ranges to capture.
    pub setpoints: Vec<ModbusSetpoint>,
}

/// A Modbus range to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModbusSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// Which of the four data tables.
    pub table: ModbusTable,
    /// First (0-based) address.
    pub start: u16,
    /// Number of registers or bits; `start + count <= 65536`.
    pub count: u16,
    /// Typed fields laid over the registers (`[[asset.setpoints.field]]`, register tables
    /// only), sorted by offset; registers outside every field stay one item each.
    pub fields: Vec<ModbusField>,
}

/// The keys of `[[asset.setpoints.field]]` on a Modbus setpoint.
pub(crate) const FIELD_KEYS: &[&str] = &["name", "offset", "type", "word_order"];

/// A named, typed value spanning one to four registers of a register range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModbusField {
    /// The item name: `modbus/<table>/<name>`.
    pub name: String,
    /// The field's first register (the address the device documents, within the range).
    pub offset: u16,
    /// How its registers are read.
    pub kind: ModbusFieldType,
    /// Which register holds the most significant word of a 32- or 64-bit value.
    pub word_order: WordOrder,
}

/// The value types of a Modbus field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusFieldType {
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, IEEE 754 single precision.
    F32,
    /// Four registers, IEEE 754 double precision.
    F64,
}

impl ModbusFieldType {
    /// Every type, with its config name.
    pub const ALL: [(ModbusFieldType, &'static str); 6] = [
        (ModbusFieldType::U16, "u16"),
        (ModbusFieldType::I16, "i16"),
        (ModbusFieldType::U32, "u32"),
        (ModbusFieldType::I32, "i32"),
        (ModbusFieldType::F32, "f32"),
        (ModbusFieldType::F64, "f64"),
    ];

    /// Registers the value spans.
    pub fn registers(self) -> u16 {
        match self {
            ModbusFieldType::U16 | ModbusFieldType::I16 => 1,
            ModbusFieldType::U32 | ModbusFieldType::I32 | ModbusFieldType::F32 => 2,
            ModbusFieldType::F64 => 4,
        }
    }

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("u16", |(_, n)| n)
    }
}

/// Word order of a multi-register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordOrder {
    /// The first register holds the most significant word (Modbus's own byte order carried
    /// over to words; most devices).
    #[default]
    Big,
    /// The first register holds the least significant word ("word swapped": many PLCs).
    Little,
}

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModbusTable {
    /// Holding registers (FC 3).
    Holding,
    /// Coils (FC 1).
    Coil,
    /// Input registers (FC 4).
    Input,
    /// Discrete inputs (FC 2).
    Discrete,
}

impl ModbusTable {
    /// Every table, for help texts and iteration.
    pub const ALL: [ModbusTable; 4] = [
        ModbusTable::Holding,
        ModbusTable::Coil,
        ModbusTable::Input,
        ModbusTable::Discrete,
    ];

    /// The name used in the config file and in item paths (`modbus/holding/40`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModbusTable::Holding => "holding",
            ModbusTable::Coil => "coil",
            ModbusTable::Input => "input",
            ModbusTable::Discrete => "discrete",
        }
    }
}

impl fmt::Display for ModbusTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit's validator: this protocol's asset keys and setpoints, as [`ProtocolConfig::Modbus`].
fn validate(cx: &mut Cx<'_>, a: &Asset<'_, '_, '_>) -> Option<ProtocolConfig> {
    modbus(cx, a.table, a.setpoints, a.names).map(ProtocolConfig::Modbus)
}

/// The protocol's own asset keys, then every setpoint (all checked, even after one failed).
fn modbus(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    sps: &[Tbl<'_, '_>],
    names: &[Option<String>],
) -> Option<ModbusConfig> {
    let unit_id = get_int::<u8>(cx, t, "unit_id", 0, 255).or(1);
    let device_id = get_bool(cx, t, "device_id").or(true);
    let max_registers = get_int::<u16>(cx, t, "max_registers", 1, 125).or(125);
    let max_bits = get_int::<u16>(cx, t, "max_bits", 1, 2000).or(2000);
    let need = UNIT.setpoint_need();

    // (index, name for messages, table, start, end exclusive) of every well-formed range.
    let mut ranges: Vec<(usize, String, ModbusTable, u32, u32)> = Vec::new();
    let mut setpoints: Vec<Option<ModbusSetpoint>> = Vec::new();
    // Field item paths, with the line that used each first: they must be unique.
    let mut field_names = layout::Names::default();
    for (j, (sp, name)) in sps.iter().zip(names).enumerate() {
        let table = get_checked(cx, sp, "table", Kind::InvalidValue, |s| {
            ModbusTable::ALL
                .into_iter()
                .find(|m| m.as_str() == s)
                .ok_or_else(|| format!("{s:?} is not a Modbus table; expected one of holding, coil, input, discrete"))
        })
        .req(cx, sp, "table", &need);
        let start = get_int::<u16>(cx, sp, "start", 0, 65_535).req(cx, sp, "start", &need);
        let mut count = get_int::<u16>(cx, sp, "count", 1, 65_535).req(cx, sp, "count", &need);
        if let (Some((s, _)), Some((c, cspan))) = (&start, &count) {
            let end = u32::from(*s) + u32::from(*c);
            if end > 65_536 {
                let msg = format!(
                    "{}start {s} + count {c} = {end} runs past the last Modbus address (65535); start + count must be at most 65536",
                    sp.who
                );
                cx.push(cspan.clone(), sp.key("count"), Kind::InvalidValue, msg);
                count = None;
            }
        }
        if let (Some((tb, _)), Some((s, _)), Some((c, _))) = (&table, &start, &count) {
            let raw_name = sp.get("name").and_then(|v| v.get_ref().as_str());
            let label = match name.as_deref().or(raw_name) {
                Some(n) => format!("{n:?}"),
                None => format!("#{j}"),
            };
            ranges.push((j, label, *tb, u32::from(*s), u32::from(*s) + u32::from(*c)));
        }
        let range = match (&table, &start, &count) {
            (Some((tb, _)), Some((s, _)), Some((c, _))) => {
                Some((*tb, u32::from(*s), u32::from(*s) + u32::from(*c)))
            }
            _ => None,
        };
        let fields = fields(cx, sp, range, &mut field_names);
        // No `?` here: it would leave the loop and skip the remaining setpoints.
        setpoints.push(match (name, table, start, count, fields) {
            (Some(name), Some((table, _)), Some((start, _)), Some((count, _)), Some(fields)) => {
                Some(ModbusSetpoint {
                    name: name.clone(),
                    table,
                    start,
                    count,
                    fields,
                })
            }
            _ => None,
        });
    }

    // Overlaps within one table: sort by start; compare each range to the one reaching
    // furthest so far. Report at whichever of the two comes later in the file.
    let mut overlap = false;
    ranges.sort_by_key(|r| (r.2, r.3, r.0));
    let mut reach: Option<&(usize, String, ModbusTable, u32, u32)> = None;
    for r in &ranges {
        if let Some(prev) = reach.filter(|p| p.2 == r.2) {
            if r.3 < prev.4 {
                overlap = true;
                let (later, earlier) = if r.0 > prev.0 { (r, prev) } else { (prev, r) };
                if let Some(sp) = sps.get(later.0) {
                    let earlier_line = sps.get(earlier.0).map_or(0, |e| cx.line(e.span.start));
                    let msg = format!(
                        "{}setpoint {} ({} {}..={}) overlaps setpoint {} ({} {}..={}, line {earlier_line}); each {} address may belong to one setpoint only",
                        sp.who,
                        later.1,
                        later.2,
                        later.3,
                        later.4 - 1,
                        earlier.1,
                        earlier.2,
                        earlier.3,
                        earlier.4 - 1,
                        later.2,
                    );
                    cx.push(sp.span.clone(), sp.path.clone(), Kind::InvalidValue, msg);
                }
            }
            if r.4 > prev.4 {
                reach = Some(r);
            }
        } else {
            reach = Some(r);
        }
    }

    let setpoints = all(setpoints)?;
    if overlap {
        return None;
    }
    Some(ModbusConfig {
        unit_id: unit_id?,
        device_id: device_id?,
        max_registers: max_registers?,
        max_bits: max_bits?,
        setpoints,
    })
}

/// The `[[asset.setpoints.field]]` layout of one setpoint: every field checked (keys, name,
/// type, word order), then each against the range (`range`: table, start, end exclusive,
/// when the setpoint's own keys were valid) and against the others. `None` when any was
/// reported.
fn fields(
    cx: &mut Cx<'_>,
    sp: &Tbl<'_, '_>,
    range: Option<(ModbusTable, u32, u32)>,
    names: &mut layout::Names,
) -> Option<Vec<ModbusField>> {
    let tables = table_array(cx, sp, "field", "[[asset.setpoints.field]]")?;
    if tables.is_empty() {
        return Some(Vec::new());
    }
    if let Some((table, ..)) = range
        && !matches!(table, ModbusTable::Holding | ModbusTable::Input)
    {
        let span = sp.get("field").map_or(sp.span.clone(), |v| v.span());
        cx.push(
            span,
            sp.key("field"),
            Kind::InvalidValue,
            format!(
                "{}fields are typed registers: a {} range has bits, which are items of their own",
                sp.who,
                table.as_str()
            ),
        );
        return None;
    }
    let need = "fields need name, offset, type";
    let mut out = Vec::new();
    let mut footprints = Vec::new();
    let mut ok = true;
    for f in &tables {
        check_keys(cx, f, FIELD_KEYS, " in [[asset.setpoints.field]]", &|_| {
            None
        });
        let name = layout::name(cx, f, need);
        let offset = get_int::<u16>(cx, f, "offset", 0, 65_535).req(cx, f, "offset", need);
        let kind = get_checked(cx, f, "type", Kind::InvalidValue, |s| {
            ModbusFieldType::ALL
                .iter()
                .find(|(_, n)| *n == s)
                .map(|(t, _)| *t)
                .ok_or_else(|| {
                    format!("{s:?} is not a Modbus field type; expected one of u16, i16, u32, i32, f32, f64")
                })
        })
        .req(cx, f, "type", need);
        let word_order = get_checked(cx, f, "word_order", Kind::InvalidValue, |s| match s {
            "big" => Ok(WordOrder::Big),
            "little" => Ok(WordOrder::Little),
            _ => Err(format!("{s:?} is not a word order; expected big or little")),
        })
        .or(WordOrder::Big);
        let (Some(name), Some((offset, ospan)), Some((kind, _)), Some(word_order)) =
            (name, offset, kind, word_order)
        else {
            ok = false;
            continue;
        };
        let last = u32::from(offset) + u32::from(kind.registers()) - 1;
        let range_text =
            range.map(|(table, start, end)| format!("{} {start}..={}", table.as_str(), end - 1));
        let at = range
            .zip(range_text.as_deref())
            .map(|((table, start, end), text)| layout::Placement {
                offset_span: ospan,
                inside: u32::from(offset) >= start && last < end,
                detail: format!(
                    "{} at {offset}, {} register(s)",
                    kind.as_str(),
                    kind.registers()
                ),
                range: text,
                path: format!("modbus/{}/{name}", table.as_str()),
            });
        if !layout::place(cx, sp, f, &name, names, at) {
            ok = false;
            continue;
        }
        footprints.push(layout::Footprint {
            table: f,
            name: name.clone(),
            first: u64::from(offset),
            last: u64::from(last),
            shown: format!("{} at {offset}", kind.as_str()),
        });
        out.push(ModbusField {
            name,
            offset,
            kind,
            word_order,
        });
    }
    ok &= layout::no_overlaps(cx, sp, "register", &mut footprints);
    out.sort_by_key(|f| f.offset);
    ok.then_some(out)
}
