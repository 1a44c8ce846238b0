//! Siemens S7comm (ISO-on-TCP): an s7 asset's settings, the keys it takes, and their checks.

use super::{Address, Asset, Unit, all};
use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{Cx, Tbl, get_bool, get_int};
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
    setpoint_optional_keys: &[],
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
            Some(S7Setpoint {
                name: name.clone()?,
                db: db?.0,
                start: start?.0,
                size: size?.0,
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
