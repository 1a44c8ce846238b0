//! One `[[asset]]`: the keys every asset shares (id, protocol, address, schedule, setpoint
//! names, policies, maintenance windows, staging) and its protocol's settings, and the
//! `staging_for` links, which can only be checked once every asset is known.

use std::collections::HashMap;
use std::time::Duration;

use super::read::{
    Cx, Got, Span, Tbl, check_keys, get_checked, get_duration, get_int, get_str, get_str_list,
    no_foreign, table_array,
};
use crate::check;
use crate::error::ConfigErrorKind as Kind;
use crate::protocols::{self, Address, UNITS, Unit};
use crate::{AssetConfig, MaintenanceConfig, Protocol};

const DEFAULT_SCHEDULE: &str = "0 */5 * * * *";
pub(super) const MAINTENANCE_KEYS: &[&str] = &["start", "duration"];
pub(super) const ASSET_COMMON_KEYS: &[&str] = &[
    "id",
    "protocol",
    "address",
    "schedule",
    "timeout_ms",
    "capture_timeout_ms",
    "max_requests_per_sec",
    "setpoints",
    "policy",
    "safety",
    "safety_policy",
    "staging_for",
    "maintenance",
];

/// A `staging_for` reference, kept with its place in the file for the checks that need every
/// asset.
pub(super) struct StagingLink {
    asset: String,
    production: String,
    key: String,
    span: Span,
}

/// `staging_for` names another configured asset, of the same protocol, that is not itself a
/// staging controller.
pub(super) fn check_staging(cx: &mut Cx<'_>, assets: &[AssetConfig], links: &[StagingLink]) {
    for link in links {
        let who = format!("asset {:?}: ", link.asset);
        let Some(production) = assets.iter().find(|a| a.id == link.production) else {
            let known: Vec<&str> = assets.iter().map(|a| a.id.as_str()).collect();
            cx.push(
                link.span.clone(),
                link.key.clone(),
                Kind::InvalidValue,
                format!(
                    "{who}staging_for = {:?} names no configured asset (configured: {})",
                    link.production,
                    known.join(", ")
                ),
            );
            continue;
        };
        let staging = assets.iter().find(|a| a.id == link.asset);
        let message = if production.id == link.asset {
            Some("an asset cannot be its own staging controller".to_owned())
        } else if production.staging_for.is_some() {
            Some(format!(
                "{:?} is itself a staging controller; staging_for must name a production asset",
                production.id
            ))
        } else if staging.is_some_and(|s| s.protocol.kind() != production.protocol.kind()) {
            Some(format!(
                "{:?} speaks {}, another protocol: a staging controller runs the same content as its production asset",
                production.id,
                production.protocol.kind()
            ))
        } else {
            None
        };
        if let Some(m) = message {
            cx.push(
                link.span.clone(),
                link.key.clone(),
                Kind::InvalidValue,
                format!("{who}{m}"),
            );
        }
    }
}

/// Protocol-specific WrongProtocolKey message for `k`, if another protocol knows it.
fn foreign_key_msg(
    k: &str,
    p: &Unit,
    asset_name: &str,
    level: &str,
    keys_of: fn(&Unit) -> &'static [&'static str],
    expected: &[&str],
) -> Option<String> {
    let owners: Vec<&Unit> = UNITS
        .iter()
        .filter(|q| q.protocol != p.protocol && keys_of(q).contains(&k))
        .collect();
    let first = owners.first()?;
    let names: Vec<&str> = owners.iter().map(|q| q.name).collect();
    Some(format!(
        "`{k}` is {} {} {level} key; {asset_name} uses {} ({level} keys: {})",
        first.article,
        names.join("/"),
        p.name,
        expected.join(", ")
    ))
}

pub(super) fn asset(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    seen: &mut HashMap<String, (String, usize)>,
    policy_ids: &[String],
    links: &mut Vec<StagingLink>,
) -> Option<AssetConfig> {
    let mut t = Tbl {
        t: t.t,
        span: t.span.clone(),
        path: t.path.clone(),
        who: String::new(),
        header: t.header.clone(),
    };
    let line = cx.line(t.span.start);
    // Name the asset in every later message once its id is known (even a malformed one).
    let raw_id = t.get("id").and_then(|v| v.get_ref().as_str());
    let asset_name = match raw_id {
        Some(s) => format!("asset {s:?}"),
        None => "this asset".to_owned(),
    };
    if let Some(s) = raw_id {
        t.who = format!("asset {s:?}: ");
    }
    let mut id = get_checked(cx, &t, "id", Kind::InvalidValue, |s| {
        check::id(s).map(|()| s.to_owned())
    })
    .req(cx, &t, "id", "");
    if let Some((s, span)) = &id {
        let folded = s.to_ascii_lowercase();
        if let Some((first, first_line)) = seen.get(&folded) {
            let same = if first == s {
                String::new()
            } else {
                format!(" as {first:?} (ids are compared ignoring case, they name directories)")
            };
            let msg =
                format!("asset id {s:?} is already used{same} by the asset on line {first_line}");
            cx.push(span.clone(), t.key("id"), Kind::DuplicateId, msg);
            id = None;
        } else {
            seen.insert(folded, (s.clone(), line));
        }
    }

    let protocol = match get_str(cx, &t, "protocol").req(cx, &t, "protocol", &protocols::one_of()) {
        Some((s, span)) => match s.parse::<Protocol>() {
            Ok(p) => Some(protocols::unit(p)),
            Err(e) => {
                let msg = format!("{}{e}", t.who);
                cx.push(span, t.key("protocol"), Kind::BadProtocol, msg);
                None
            }
        },
        None => None,
    };

    // Keys: with a known protocol, a key of another protocol is named as such; without one,
    // only keys no protocol knows are reported.
    let mut allowed: Vec<&str> = ASSET_COMMON_KEYS.to_vec();
    match protocol {
        Some(p) => allowed.extend_from_slice(p.asset_keys),
        None => {
            for p in &UNITS {
                for k in p.asset_keys {
                    if !allowed.contains(k) {
                        allowed.push(k);
                    }
                }
            }
        }
    }
    let expects = match protocol {
        Some(p) => format!(" for {} {} asset", p.article, p.name),
        None => " in [[asset]]".to_owned(),
    };
    let foreign = |k: &str| {
        protocol
            .and_then(|p| foreign_key_msg(k, p, &asset_name, "asset", |u| u.asset_keys, &allowed))
    };
    check_keys(cx, &t, &allowed, &expects, &foreign);

    let address = get_str(cx, &t, "address").req(
        cx,
        &t,
        "address",
        "host[:port], or opc.tcp://... for opcua",
    );
    let endpoint = match (&address, protocol) {
        (Some((a, span)), Some(p)) => {
            let r = match p.address {
                Address::Url(url) => url(a),
                Address::HostPort
                    if a.get(..10)
                        .is_some_and(|h| h.eq_ignore_ascii_case("opc.tcp://")) =>
                {
                    Err(format!(
                        "an OPC UA endpoint URL, which only protocol = \"opcua\" takes; {article} {name} address is host[:port] (default port {port})",
                        article = p.article,
                        name = p.name,
                        port = p.default_port
                    ))
                }
                Address::HostPort => check::host_port(a, p.default_port),
            };
            match r {
                Ok(hp) => Some(hp),
                Err(m) => {
                    let msg = format!("{}address {a:?}: {m}", t.who);
                    cx.push(span.clone(), t.key("address"), Kind::BadAddress, msg);
                    None
                }
            }
        }
        _ => None,
    };

    let schedule = get_checked(cx, &t, "schedule", Kind::BadCron, |s| {
        crate::parse_schedule(s)
            .map(|_| s.to_owned())
            .map_err(|e| {
                format!("{s:?} is not a valid cron schedule with seconds ({e}); expected e.g. \"0 */5 * * * *\"")
            })
    })
    .or(DEFAULT_SCHEDULE.to_owned());
    let timeout_ms = get_int::<u64>(cx, &t, "timeout_ms", 50, 600_000).or(3000);
    let capture_timeout_ms =
        get_int::<u64>(cx, &t, "capture_timeout_ms", 100, 3_600_000).or(60_000);
    let max_requests_per_sec = get_int::<u32>(cx, &t, "max_requests_per_sec", 1, 10_000).or(50);

    // Setpoints: keys and names first (same for all protocols), then the addressing keys.
    let setpoints = table_array(cx, &t, "setpoints", "[[asset.setpoints]]");
    let sps = setpoints.as_deref().unwrap_or(&[]);
    let mut names: HashMap<String, usize> = HashMap::new();
    let sp_names: Vec<Option<String>> = sps
        .iter()
        .map(|sp| setpoint_common(cx, sp, protocol, &asset_name, &mut names))
        .collect();

    let proto_cfg = protocol.and_then(|p| {
        let parts = protocols::Asset {
            table: &t,
            setpoints: sps,
            names: &sp_names,
            address: address.as_ref().map(|(a, _)| *a),
        };
        (p.validate)(cx, &parts)
    });
    setpoints?;

    // Change policy: which policy applies, and which items escalate to the safety policy.
    let policy_ref = |cx: &mut Cx<'_>, k: &str| {
        get_checked(cx, &t, k, Kind::InvalidValue, |s| {
            if policy_ids.iter().any(|p| p == s) {
                Ok(s.to_owned())
            } else if policy_ids.is_empty() {
                Err(format!(
                    "{k} = {s:?} names no [[policy]]: none is configured"
                ))
            } else {
                Err(format!(
                    "{k} = {s:?} names no [[policy]] (configured: {})",
                    policy_ids.join(", ")
                ))
            }
        })
    };
    let policy = policy_ref(cx, "policy").opt();
    let safety_policy_got = policy_ref(cx, "safety_policy");
    let safety_got = get_str_list(cx, &t, "safety", check::item_pattern);
    let (safety, safety_policy) = match (safety_got, safety_policy_got) {
        (Got::Val(patterns, span), Got::Absent) => {
            cx.push(
                span,
                t.key("safety"),
                Kind::MissingKey,
                format!(
                    "{}safety lists items but no safety_policy says which [[policy]] a change to them needs",
                    t.who
                ),
            );
            let _ = patterns;
            (None, None)
        }
        (Got::Absent, Got::Val(_, span)) => {
            cx.push(
                span,
                t.key("safety_policy"),
                Kind::MissingKey,
                format!(
                    "{}safety_policy is set but no safety = [...] lists the items it covers",
                    t.who
                ),
            );
            (None, None)
        }
        (Got::Val(patterns, _), Got::Val(p, _)) => (Some(patterns), Some(Some(p))),
        (Got::Absent, Got::Absent) => (Some(Vec::new()), Some(None)),
        _ => (None, None),
    };
    let staging_for = match get_checked(cx, &t, "staging_for", Kind::InvalidValue, |s| {
        check::id(s).map(|()| s.to_owned())
    }) {
        Got::Val(p, span) => {
            if let Some((own, _)) = &id {
                links.push(StagingLink {
                    asset: own.clone(),
                    production: p.clone(),
                    key: t.key("staging_for"),
                    span: span.clone(),
                });
            }
            Got::Val(p, span)
        }
        other => other,
    }
    .opt();

    // Recurring maintenance windows: a cron start (with seconds) and a duration.
    let maintenance = table_array(cx, &t, "maintenance", "maintenance = [{...}]").map(|windows| {
        windows
            .iter()
            .map(|w| {
                check_keys(cx, w, MAINTENANCE_KEYS, " in a maintenance window", &no_foreign);
                let start = get_checked(cx, w, "start", Kind::BadCron, |s| {
                    crate::parse_schedule(s)
                        .map(|_| s.to_owned())
                        .map_err(|e| {
                            format!("{s:?} is not a cron schedule with seconds ({e}); e.g. \"0 0 2 * * Sun\"")
                        })
                })
                .req(cx, w, "start", "a cron schedule with seconds");
                let duration = get_duration(
                    cx,
                    w,
                    "duration",
                    Duration::from_secs(60),
                    Duration::from_secs(7 * 86_400),
                )
                .req(cx, w, "duration", "a duration such as \"4h\"");
                Some(MaintenanceConfig {
                    start: start?.0,
                    duration: duration?.0,
                })
            })
            .collect::<Option<Vec<_>>>()
    });
    let maintenance = maintenance.flatten();

    let (host, port) = endpoint?;
    Some(AssetConfig {
        id: id?.0,
        address: address?.0.to_owned(),
        host,
        port,
        schedule: schedule?,
        timeout_ms: timeout_ms?,
        capture_timeout_ms: capture_timeout_ms?,
        max_requests_per_sec: max_requests_per_sec?,
        protocol: proto_cfg?,
        policy: policy?,
        safety: safety?,
        safety_policy: safety_policy?,
        staging_for: staging_for?,
        maintenance: maintenance?,
        line,
    })
}

/// Checks a setpoint's keys and its `name` (unique within the asset).
fn setpoint_common(
    cx: &mut Cx<'_>,
    sp: &Tbl<'_, '_>,
    protocol: Option<&Unit>,
    asset_name: &str,
    names: &mut HashMap<String, usize>,
) -> Option<String> {
    let mut allowed: Vec<&str> = vec!["name"];
    match protocol {
        Some(p) => {
            allowed.extend_from_slice(p.setpoint_keys);
            allowed.extend_from_slice(p.setpoint_optional_keys);
        }
        None => {
            for p in &UNITS {
                for k in p.setpoint_keys.iter().chain(p.setpoint_optional_keys) {
                    if !allowed.contains(k) {
                        allowed.push(k);
                    }
                }
            }
        }
    }
    let expects = match protocol {
        Some(p) => format!(" for {} {} setpoint", p.article, p.name),
        None => " in [[asset.setpoints]]".to_owned(),
    };
    let foreign = |k: &str| {
        protocol.and_then(|p| {
            foreign_key_msg(k, p, asset_name, "setpoint", |u| u.setpoint_keys, &allowed)
        })
    };
    check_keys(cx, sp, &allowed, &expects, &foreign);

    let (name, span) = get_checked(cx, sp, "name", Kind::InvalidValue, |s| {
        check::setpoint_name(s).map(|()| s.to_owned())
    })
    .req(cx, sp, "name", "used in diffs")?;
    let line = cx.line(sp.span.start);
    if let Some(first) = names.get(&name) {
        let msg = format!(
            "{}setpoint name {name:?} is already used by the setpoint on line {first}",
            sp.who
        );
        cx.push(span, sp.key("name"), Kind::DuplicateId, msg);
        return None;
    }
    names.insert(name.clone(), line);
    Some(name)
}
