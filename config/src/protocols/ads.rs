//! Beckhoff ADS (AMS/TCP): an ads asset's settings, the keys it takes, and their checks.

use super::{Address, Asset, Unit, all};
use crate::check;
use crate::error::ConfigErrorKind as Kind;
use crate::validate::read::{Cx, Tbl, get_checked, get_int};
use crate::{Protocol, ProtocolConfig};

/// ADS in the registry ([`super::UNITS`]).
pub(super) const UNIT: Unit = Unit {
    protocol: Protocol::Ads,
    name: "ads",
    article: "an",
    default_port: 48898,
    address: Address::HostPort,
    asset_keys: &["ams_net_id", "ams_port", "source_ams_net_id"],
    setpoint_keys: &["symbol"],
    setpoint_optional_keys: &[],
    validate,
};

/// Beckhoff ADS settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdsConfig {
    /// Target AMS Net Id.
    pub ams_net_id: [u8; 6],
    /// Target AMS port (851 = first TwinCAT 3 PLC runtime).
    pub ams_port: u16,
    /// Our own AMS Net Id, when the PLC's route requires a fixed one.
    pub source_ams_net_id: Option<[u8; 6]>,
    /// Symbols to capture.
    pub setpoints: Vec<AdsSetpoint>,
}

/// An ADS symbol (or symbol prefix) to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdsSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// A symbol name, or a prefix ending in `.*` that selects every symbol below it.
    pub symbol: String,
}

/// The unit's validator: this protocol's asset keys and setpoints, as [`ProtocolConfig::Ads`].
fn validate(cx: &mut Cx<'_>, a: &Asset<'_, '_, '_>) -> Option<ProtocolConfig> {
    ads(cx, a.table, a.setpoints, a.names).map(ProtocolConfig::Ads)
}

/// The protocol's own asset keys, then every setpoint (all checked, even after one failed).
fn ads(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    sps: &[Tbl<'_, '_>],
    names: &[Option<String>],
) -> Option<AdsConfig> {
    let net_id = get_checked(cx, t, "ams_net_id", Kind::InvalidValue, check::ams_net_id).req(
        cx,
        t,
        "ams_net_id",
        "the target's AMS Net Id, e.g. \"5.23.101.12.1.1\"",
    );
    let port = get_int::<u16>(cx, t, "ams_port", 1, 65_535).or(851);
    let source = get_checked(
        cx,
        t,
        "source_ams_net_id",
        Kind::InvalidValue,
        check::ams_net_id,
    )
    .opt();
    let need = UNIT.setpoint_need();
    let setpoints: Vec<Option<AdsSetpoint>> = sps
        .iter()
        .zip(names)
        .map(|(sp, name)| {
            let symbol = get_checked(cx, sp, "symbol", Kind::InvalidValue, |s| {
                check::ads_symbol(s).map(|()| s.to_owned())
            })
            .req(cx, sp, "symbol", &need);
            Some(AdsSetpoint {
                name: name.clone()?,
                symbol: symbol?.0,
            })
        })
        .collect();
    Some(AdsConfig {
        ams_net_id: net_id?.0,
        ams_port: port?,
        source_ams_net_id: source?,
        setpoints: all(setpoints)?,
    })
}
