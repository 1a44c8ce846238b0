//! Modbus TCP: a modbus asset's settings, the keys it takes, and their checks (ranges within
//! the 16-bit address space, no two setpoints sharing an address).

use std::fmt;

use super::{Address, Asset, Unit, all};
use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{Cx, Tbl, get_bool, get_checked, get_int};
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
        // No `?` here: it would leave the loop and skip the remaining setpoints.
        setpoints.push(match (name, table, start, count) {
            (Some(name), Some((table, _)), Some((start, _)), Some((count, _))) => {
                Some(ModbusSetpoint {
                    name: name.clone(),
                    table,
                    start,
                    count,
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
