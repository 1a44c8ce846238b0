//! Allen-Bradley Logix over EtherNet/IP CIP: a cip asset's settings, the keys it takes, and
//! their checks.

use super::{Address, Asset, Unit, all};
use crate::check;
use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{Cx, Tbl, get_checked, get_int};
use crate::{Protocol, ProtocolConfig};

/// CIP in the registry ([`super::UNITS`]).
pub(super) const UNIT: Unit = Unit {
    protocol: Protocol::Cip,
    name: "cip",
    article: "a",
    default_port: 44818,
    address: Address::HostPort,
    asset_keys: &[
        "slot",
        "route",
        "rebrowse_every",
        "audit_tag",
        "changes_tag",
    ],
    setpoint_keys: &["tag"],
    setpoint_optional_keys: &[],
    validate,
};

/// Logix (EtherNet/IP CIP) settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipConfig {
    /// Backplane slot of the controller (0..=255); the route is port 1, this slot.
    pub slot: u8,
    /// A multi-hop route that replaces `slot` (`route = "1/2/2/10.0.0.5/1/0"`): port/link
    /// pairs, a link being a slot or an IPv4 address, to reach a controller behind a
    /// communication module.
    pub route: Option<Vec<(u8, CipLink)>>,
    /// Controllers without a change-detection audit value get their tag list re-browsed every
    /// this many polls (`rebrowse_every`, default 12).
    pub rebrowse_every: u32,
    /// The controller-scoped tag a GSV rung fills with the audit value (`audit_tag`, default
    /// `AuditValue`).
    pub audit_tag: String,
    /// The tag holding the ChangesToDetect mask (`changes_tag`, default `ChangesToDetect`).
    pub changes_tag: String,
    /// Tags to capture.
    pub setpoints: Vec<CipSetpoint>,
}

/// One hop's link in a CIP route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipLink {
    /// A backplane slot.
    Slot(u8),
    /// A node on an EtherNet/IP port.
    Address(std::net::Ipv4Addr),
}

/// A Logix tag to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// Controller-scoped tag, or `Program:<program>.<tag>`.
    pub tag: String,
}

/// The unit's validator: this protocol's asset keys and setpoints, as [`ProtocolConfig::Cip`].
fn validate(cx: &mut Cx<'_>, a: &Asset<'_, '_, '_>) -> Option<ProtocolConfig> {
    cip(cx, a.table, a.setpoints, a.names).map(ProtocolConfig::Cip)
}

/// The protocol's own asset keys, then every setpoint (all checked, even after one failed).
fn cip(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    sps: &[Tbl<'_, '_>],
    names: &[Option<String>],
) -> Option<CipConfig> {
    let slot = get_int::<u8>(cx, t, "slot", 0, 255).or(0);
    let route = get_checked(cx, t, "route", Kind::InvalidValue, |s| {
        check::cip_route(s).map_err(|e| format!("route {s:?}: {e}"))
    })
    .opt();
    let rebrowse_every = get_int::<u32>(cx, t, "rebrowse_every", 1, 100_000).or(12);
    let audit_tag = get_checked(cx, t, "audit_tag", Kind::InvalidValue, |s| {
        check::cip_tag(s).map(|()| s.to_owned())
    })
    .or("AuditValue".to_owned());
    let changes_tag = get_checked(cx, t, "changes_tag", Kind::InvalidValue, |s| {
        check::cip_tag(s).map(|()| s.to_owned())
    })
    .or("ChangesToDetect".to_owned());
    let need = UNIT.setpoint_need();
    let setpoints: Vec<Option<CipSetpoint>> = sps
        .iter()
        .zip(names)
        .map(|(sp, name)| {
            let tag = get_checked(cx, sp, "tag", Kind::InvalidValue, |s| {
                check::cip_tag(s).map(|()| s.to_owned())
            })
            .req(cx, sp, "tag", &need);
            Some(CipSetpoint {
                name: name.clone()?,
                tag: tag?.0,
            })
        })
        .collect();
    Some(CipConfig {
        slot: slot?,
        route: route?,
        rebrowse_every: rebrowse_every?,
        audit_tag: audit_tag?,
        changes_tag: changes_tag?,
        setpoints: all(setpoints)?,
    })
}
