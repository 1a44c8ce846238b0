//! The protocols, one registered unit each.
//!
//! Everything the config crate knows about one protocol sits in that protocol's file here
//! (`s7.rs`, `ads.rs`, `cip.rs`, `modbus.rs`, `opcua.rs`), side by side: its settings types
//! (`S7Config`, `ModbusTable`, ...; re-exported from the crate root under those names), its
//! [`Unit`] (name, article, default port, how `address` is written, the keys it adds to
//! `[[asset]]` and to `[[asset.setpoints]]`) and its validator. The generic checker in
//! `validate/` names no protocol: it looks an asset's protocol up with [`unit()`] and asks the
//! unit, so the key lists, the messages built from them and `accepted_keys()` (which the
//! reference test compares with `docs/reference/config.md`) all come from the same place.
//!
//! Why: a protocol used to be spread over half a dozen `match`es in the validator (its key
//! lists, its article, its default port, its dispatch, its "setpoints need" hint), and a new
//! protocol had to find every one of them.
//!
//! A new protocol adds, in this crate: a variant of [`Protocol`] (and its place in
//! [`Protocol::ALL`]) and of [`ProtocolConfig`] (and its arm in [`ProtocolConfig::kind`]); a
//! file here with its types, its `UNIT` and its validator; its `mod` line below and its
//! `UNIT` in [`UNITS`] at the same position as in `Protocol::ALL`; and the `pub use` of its
//! types in `lib.rs`. The compiler checks the number of units, and a const assertion and a
//! test the order. Its keys then have to be documented in `docs/reference/config.md`, which
//! `config/tests/reference.rs` enforces.

pub(crate) mod ads;
pub(crate) mod cip;
mod layout;
pub(crate) mod modbus;
pub(crate) mod opcua;
pub(crate) mod s7;
mod s7_source;

use crate::validate::read::{Cx, Tbl};
use crate::{Protocol, ProtocolConfig};

/// Every protocol's unit, in [`Protocol::ALL`] order (which is the declaration order of
/// [`Protocol`]): the one place mapping a protocol to its unit.
pub(crate) static UNITS: [Unit; Protocol::ALL.len()] =
    [s7::UNIT, ads::UNIT, cip::UNIT, modbus::UNIT, opcua::UNIT];

// A unit listed out of order would answer for another protocol: refuse to compile.
const _: () = {
    let mut i = 0;
    while i < UNITS.len() {
        assert!(
            UNITS[i].protocol as usize == i && Protocol::ALL[i] as usize == i,
            "UNITS must list the units in Protocol::ALL order, which must be declaration order"
        );
        i += 1;
    }
};

/// The unit of a protocol.
pub(crate) fn unit(p: Protocol) -> &'static Unit {
    // In range: UNITS has one unit per entry of Protocol::ALL, in declaration order (above).
    &UNITS[p as usize]
}

/// The protocol names as a hint reads them: "s7, ads, cip, modbus or opcua".
pub(crate) fn one_of() -> String {
    let names: Vec<&str> = UNITS.iter().map(|u| u.name).collect();
    match names.split_last() {
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// What the generic checker asks of a protocol.
pub(crate) struct Unit {
    /// The protocol this unit describes.
    pub(crate) protocol: Protocol,
    /// The name in the config file, the CLI and JSON output ([`Protocol::as_str`]).
    pub(crate) name: &'static str,
    /// "an s7", "a modbus": the article for the name read aloud, in messages.
    pub(crate) article: &'static str,
    /// The well-known TCP port, used when an address has none ([`Protocol::default_port`]).
    pub(crate) default_port: u16,
    /// How `address` is written.
    pub(crate) address: Address,
    /// The asset-level keys this protocol adds to the keys every asset has; a key of another
    /// protocol's list is reported as that protocol's key.
    pub(crate) asset_keys: &'static [&'static str],
    /// The setpoint addressing keys (all required); every setpoint also has `name`.
    pub(crate) setpoint_keys: &'static [&'static str],
    /// Optional setpoint keys (a layout of typed fields).
    pub(crate) setpoint_optional_keys: &'static [&'static str],
    /// Checks the protocol's own keys of an asset whose common keys and setpoint names were
    /// checked, reporting every problem; `None` when there was one.
    pub(crate) validate: fn(&mut Cx<'_>, &Asset<'_, '_, '_>) -> Option<ProtocolConfig>,
}

impl Unit {
    /// The "(modbus setpoints need ...)" hint for missing addressing keys.
    pub(crate) fn setpoint_need(&self) -> String {
        let mut keys = vec!["name"];
        keys.extend_from_slice(self.setpoint_keys);
        format!("{} setpoints need {}", self.name, keys.join(", "))
    }
}

/// How an asset of a protocol writes `address`.
pub(crate) enum Address {
    /// `host[:port]`, the port defaulting to the unit's `default_port`; an `opc.tcp://` URL is
    /// refused with a message saying which protocol takes one.
    HostPort,
    /// A URL, checked by this function, which returns the host and port to connect to.
    Url(fn(&str) -> Result<(String, u16), String>),
}

/// An asset as its protocol's validator sees it: the `[[asset]]` table, its setpoint tables
/// and their names (`None` where a name was bad, already reported), and the address as
/// written when it is a string.
pub(crate) struct Asset<'x, 'a, 'i> {
    /// The `[[asset]]` table.
    pub(crate) table: &'x Tbl<'a, 'i>,
    /// Its `[[asset.setpoints]]`, in file order.
    pub(crate) setpoints: &'x [Tbl<'a, 'i>],
    /// The checked name of each setpoint, same order.
    pub(crate) names: &'x [Option<String>],
    /// `address`, when present and a string.
    pub(crate) address: Option<&'x str>,
}

/// Turns per-element results into the list, but only after every element was checked.
fn all<T>(items: Vec<Option<T>>) -> Option<Vec<T>> {
    items.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_in_protocol_all_order() {
        assert_eq!(UNITS.len(), Protocol::ALL.len());
        for (i, p) in Protocol::ALL.into_iter().enumerate() {
            assert_eq!(p as usize, i, "Protocol::ALL is in declaration order");
            assert_eq!(UNITS[i].protocol, p, "UNITS[{i}] is the unit of {p:?}");
            assert_eq!(unit(p).protocol, p);
        }
        assert_eq!(one_of(), "s7, ads, cip, modbus or opcua");
    }
}
