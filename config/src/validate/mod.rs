//! The checker: walks the spanned TOML tree once and turns it into a [`Config`] or a list of
//! every problem found.
//!
//! Design: the document is parsed once into spanned values (`toml::de::DeTable`). Each table
//! is then checked by hand, not by serde derive: first its keys against the known key lists
//! (so every unknown, misplaced or missing key of a table is reported, not just the first),
//! then each value. Each value getter records its own error and returns a "bad" marker; a
//! table's result is only assembled after all of its fields were looked at, and each array
//! element (approver, asset, setpoint) is checked on its own, so one mistake never hides
//! another. Dispatch on `protocol` is explicit, never through serde tagged enums: an asset's
//! protocol is looked up in the registry (`crate::protocols`), whose unit lists its keys and
//! checks its settings.
//!
//! Here: the document-level tables (`[agent]`, `[api]`, `[upstream]`, `[retention]`,
//! `[[approver]]`, `[[policy]]`); `asset.rs`: `[[asset]]` and its staging links; `read.rs`:
//! reading the spanned tree (the error sink, the value getters, the key check).

mod asset;
pub(crate) mod read;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::de::DeTable;

use crate::check;
use crate::error::{ConfigErrorKind as Kind, ConfigErrors};
use crate::protocols::UNITS;
use crate::{
    AgentConfig, ApiConfig, ApproverConfig, Config, PolicyConfig, RetentionConfig, SinkConfig,
    SinkKind, SyslogFormat, SyslogTransport, UpstreamConfig,
};
use asset::{ASSET_COMMON_KEYS, MAINTENANCE_KEYS, asset, check_staging};
use read::{
    Cx, Got, Tbl, check_keys, get_bool, get_checked, get_duration, get_int, get_path, get_str,
    no_foreign, sub_table, table_array,
};

const ROOT_KEYS: &[&str] = &[
    "agent",
    "api",
    "upstream",
    "sink",
    "retention",
    "approver",
    "policy",
    "asset",
];
const RETENTION_KEYS: &[&str] = &["outbox", "captures"];
const POLICY_KEYS: &[&str] = &[
    "id",
    "approvals",
    "notice",
    "require_staging",
    "diff_review",
    "review_within",
];
const AGENT_KEYS: &[&str] = &[
    "id",
    "data_dir",
    "max_concurrency",
    "clock_skew_secs",
    "audit_head_interval_secs",
    "backoff_max_secs",
    "max_token_lifetime",
    "approval_max_observation_age",
    "memory_budget",
    "seen_flush",
    "verify_max_age",
];
const API_KEYS: &[&str] = &[
    "listen",
    "token_file",
    "approve_token_file",
    "max_connections",
    "ui",
    "tls_cert",
    "tls_key",
];
const UPSTREAM_KEYS: &[&str] = &[
    "url",
    "token_file",
    "batch_size",
    "timeout_ms",
    "max_event_bytes",
    "allow_insecure_http",
];
const APPROVER_KEYS: &[&str] = &["id", "public_key"];
const SINK_KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "format",
    "facility",
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "username",
    "password_file",
    "topic_prefix",
    "allow_insecure",
    "batch_size",
    "timeout_ms",
];

/// Syslog facilities by name (RFC 5424 section 6.2.1).
const FACILITIES: &[(&str, u8)] = &[
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("security", 13),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Every key the validator accepts, by the table it belongs to (`[agent]`, `[[asset]]`,
/// `[[asset]] s7`, `[[asset.setpoints]] s7`, ...): what `docs/reference/config.md` must list.
pub fn accepted_keys() -> Vec<(String, &'static [&'static str])> {
    let mut out: Vec<(String, &'static [&'static str])> = vec![
        ("top level".into(), ROOT_KEYS),
        ("[agent]".into(), AGENT_KEYS),
        ("[api]".into(), API_KEYS),
        ("[upstream]".into(), UPSTREAM_KEYS),
        ("[[sink]]".into(), SINK_KEYS),
        ("[retention]".into(), RETENTION_KEYS),
        ("[[approver]]".into(), APPROVER_KEYS),
        ("[[policy]]".into(), POLICY_KEYS),
        ("[[asset]]".into(), ASSET_COMMON_KEYS),
        ("[[asset]] maintenance".into(), MAINTENANCE_KEYS),
    ];
    for u in &UNITS {
        out.push((format!("[[asset]] {}", u.name), u.asset_keys));
        out.push((format!("[[asset.setpoints]] {}", u.name), u.setpoint_keys));
        if !u.setpoint_optional_keys.is_empty() {
            out.push((
                format!("[[asset.setpoints]] {}", u.name),
                u.setpoint_optional_keys,
            ));
        }
    }
    out.push((
        "[[asset.setpoints.field]] modbus".into(),
        crate::protocols::modbus::FIELD_KEYS,
    ));
    out.push((
        "[[asset.setpoints.field]] s7".into(),
        crate::protocols::s7::FIELD_KEYS,
    ));
    out
}

pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = Cx::new(text, path);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            cx.syntax(e);
        }
        return Err(cx.finish());
    }
    let root = Tbl {
        t: root.get_ref(),
        span: 0..0,
        path: String::new(),
        who: String::new(),
        header: "the top level".into(),
    };
    let config = config(&mut cx, &root);
    match config {
        Some(c) if cx.errors.is_empty() => Ok(c),
        _ => {
            if cx.errors.is_empty() {
                // Every path that yields `None` records an error; this is a safety net only.
                cx.push(
                    0..0,
                    "",
                    Kind::InvalidValue,
                    "internal error: config rejected without a reason".into(),
                );
            }
            Err(cx.finish())
        }
    }
}

fn config(cx: &mut Cx<'_>, root: &Tbl<'_, '_>) -> Option<Config> {
    check_keys(cx, root, ROOT_KEYS, " at the top level", &no_foreign);

    let agent = match sub_table(cx, root, "agent") {
        Got::Val(t, _) => agent(cx, &t),
        Got::Bad => None,
        Got::Absent => {
            cx.push(
                0..0,
                "agent",
                Kind::MissingKey,
                "missing required table [agent] (with id and data_dir)".into(),
            );
            None
        }
    };
    let api = match sub_table(cx, root, "api") {
        Got::Val(t, _) => api(cx, &t).map(Some),
        Got::Bad => None,
        Got::Absent => Some(None),
    };
    let upstream = match sub_table(cx, root, "upstream") {
        Got::Val(t, _) => upstream(cx, &t).map(Some),
        Got::Bad => None,
        Got::Absent => Some(None),
    };

    let sinks = table_array(cx, root, "sink", "[[sink]]").map(|tables| {
        let mut seen: HashMap<String, usize> = HashMap::new();
        tables
            .iter()
            .map(|t| sink(cx, t, &mut seen))
            .collect::<Vec<_>>()
    });
    let sinks = sinks.and_then(|v| v.into_iter().collect::<Option<Vec<_>>>());

    let retention = match sub_table(cx, root, "retention") {
        Got::Val(t, _) => retention(cx, &t),
        Got::Bad => None,
        Got::Absent => Some(RetentionConfig::default()),
    };

    let approvers = table_array(cx, root, "approver", "[[approver]]").map(|tables| {
        let mut seen: HashMap<String, usize> = HashMap::new();
        tables
            .iter()
            .map(|t| approver(cx, t, &mut seen))
            .collect::<Vec<_>>()
    });
    let approvers = approvers.and_then(|v| v.into_iter().collect::<Option<Vec<_>>>());

    let policy_tables = table_array(cx, root, "policy", "[[policy]]");
    // The ids assets may name: every `[[policy]]` that has one, even a policy with another
    // mistake, so one error is reported once and not again at every asset naming it.
    let policy_ids: Vec<String> = policy_tables
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            t.get("id")
                .and_then(|v| v.get_ref().as_str())
                .map(str::to_owned)
        })
        .collect();
    let policies = policy_tables.map(|tables| {
        let mut seen: HashMap<String, usize> = HashMap::new();
        tables
            .iter()
            .map(|t| policy(cx, t, &mut seen))
            .collect::<Vec<_>>()
    });
    let policies = policies.and_then(|v| v.into_iter().collect::<Option<Vec<_>>>());

    let mut links = Vec::new();
    let assets = table_array(cx, root, "asset", "[[asset]]").map(|tables| {
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        tables
            .iter()
            .map(|t| asset(cx, t, &mut seen, &policy_ids, &mut links))
            .collect::<Vec<_>>()
    });
    let assets = assets.and_then(|v| v.into_iter().collect::<Option<Vec<_>>>());
    if let Some(assets) = &assets {
        check_staging(cx, assets, &links);
    }

    Some(Config {
        path: cx.file.clone(),
        agent: agent?,
        api: api?,
        upstream: upstream?,
        sinks: sinks?,
        retention: retention?,
        approvers: approvers?,
        policies: policies?,
        assets: assets?,
    })
}

fn policy(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    seen: &mut HashMap<String, usize>,
) -> Option<PolicyConfig> {
    check_keys(cx, t, POLICY_KEYS, " in [[policy]]", &no_foreign);
    let line = cx.line(t.span.start);
    let mut id = get_checked(cx, t, "id", Kind::InvalidValue, |s| {
        check::id(s).map(|()| s.to_owned())
    })
    .req(cx, t, "id", "the name assets use in `policy = \"...\"`");
    if let Some((s, span)) = &id {
        if let Some(first) = seen.get(s) {
            let msg = format!("policy id {s:?} is already used by the policy on line {first}");
            cx.push(span.clone(), t.key("id"), Kind::DuplicateId, msg);
            id = None;
        } else {
            seen.insert(s.clone(), line);
        }
    }
    let approvals = get_int::<u32>(cx, t, "approvals", 1, 16).or(1);
    let notice = get_duration(
        cx,
        t,
        "notice",
        Duration::ZERO,
        Duration::from_secs(366 * 86_400),
    )
    .or(Duration::ZERO);
    let require_staging = get_bool(cx, t, "require_staging").or(false);
    let diff_review = get_bool(cx, t, "diff_review").or(false);
    let review_within = get_duration(
        cx,
        t,
        "review_within",
        Duration::from_secs(3600),
        Duration::from_secs(366 * 86_400),
    )
    .or(Duration::from_secs(7 * 86_400));
    Some(PolicyConfig {
        id: id?.0,
        approvals: approvals?,
        notice: notice?,
        require_staging: require_staging?,
        diff_review: diff_review?,
        review_within: review_within?,
        line,
    })
}

fn agent(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<AgentConfig> {
    check_keys(cx, t, AGENT_KEYS, " in [agent]", &no_foreign);
    let id = get_checked(cx, t, "id", Kind::InvalidValue, |s| {
        check::id(s).map(|()| s.to_owned())
    })
    .req(cx, t, "id", "the name of this gateway in every event");
    let data_dir =
        get_path(cx, t, "data_dir").req(cx, t, "data_dir", "where the database and agent key live");
    let max_concurrency = get_int::<usize>(cx, t, "max_concurrency", 1, 1024).or(16);
    let clock_skew_secs = get_int::<u64>(cx, t, "clock_skew_secs", 0, 3600).or(60);
    let audit_head_interval_secs =
        get_int::<u64>(cx, t, "audit_head_interval_secs", 1, 604_800).or(3600);
    let backoff_max_secs = get_int::<u64>(cx, t, "backoff_max_secs", 1, 86_400).or(300);
    let max_token_lifetime = get_duration(
        cx,
        t,
        "max_token_lifetime",
        Duration::from_secs(60),
        Duration::from_secs(3660 * 86_400),
    )
    .or(Duration::from_secs(30 * 86_400));
    let approval_max_observation_age = get_duration(
        cx,
        t,
        "approval_max_observation_age",
        Duration::from_secs(1),
        Duration::from_secs(366 * 86_400),
    )
    .opt();
    let memory_budget = get_checked(cx, t, "memory_budget", Kind::InvalidValue, |s| {
        const LO: u64 = 1 << 20;
        const HI: u64 = 1 << 40;
        let expected = "expected a size from 1MiB to 1TiB, such as \"256MiB\"";
        match crate::parse_size(s) {
            Ok(n) if (LO..=HI).contains(&n) => Ok(n),
            Ok(_) => Err(format!("{expected}, found {s:?}")),
            Err(m) => Err(format!("{m}; {expected}")),
        }
    })
    .opt();
    let seen_flush = get_duration(
        cx,
        t,
        "seen_flush",
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )
    .or(Duration::from_secs(60));
    let verify_max_age = get_duration(
        cx,
        t,
        "verify_max_age",
        Duration::from_secs(1),
        Duration::from_secs(3650 * 86_400),
    )
    .or(crate::DEFAULT_VERIFY_MAX_AGE);
    Some(AgentConfig {
        id: id?.0,
        data_dir: data_dir?.0,
        max_concurrency: max_concurrency?,
        clock_skew_secs: clock_skew_secs?,
        audit_head_interval_secs: audit_head_interval_secs?,
        backoff_max_secs: backoff_max_secs?,
        max_token_lifetime: max_token_lifetime?,
        approval_max_observation_age: approval_max_observation_age?,
        memory_budget: memory_budget?,
        seen_flush: seen_flush?,
        verify_max_age: verify_max_age?,
    })
}

fn retention(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<RetentionConfig> {
    check_keys(cx, t, RETENTION_KEYS, " in [retention]", &no_foreign);
    let defaults = RetentionConfig::default();
    const DAY: u64 = 86_400;
    let outbox = get_duration(
        cx,
        t,
        "outbox",
        Duration::from_secs(DAY),
        Duration::from_secs(3660 * DAY),
    )
    .or(defaults.outbox);
    let captures = get_duration(
        cx,
        t,
        "captures",
        Duration::from_secs(DAY),
        Duration::from_secs(3660 * DAY),
    )
    .or(defaults.captures);
    Some(RetentionConfig {
        outbox: outbox?,
        captures: captures?,
    })
}

fn api(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<ApiConfig> {
    check_keys(cx, t, API_KEYS, " in [api]", &no_foreign);
    let listen = get_checked(cx, t, "listen", Kind::InvalidValue, |s| {
        match s.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => Err(format!("{s:?}: port 0 is not a fixed port to listen on")),
            Ok(a) => Ok(a),
            Err(_) => Err(format!(
                "{s:?} is not an IP socket address; expected e.g. \"127.0.0.1:8410\" or \"[::1]:8410\""
            )),
        }
    })
    .req(cx, t, "listen", "");
    let token_file = get_path(cx, t, "token_file").req(
        cx,
        t,
        "token_file",
        "the bearer token clients must present",
    );
    let approve_token_file = match get_path(cx, t, "approve_token_file") {
        // One file for both scopes would make every reader an approver.
        Got::Val(path, span) if token_file.as_ref().is_some_and(|(read, _)| *read == path) => {
            cx.push(
                span,
                t.key("approve_token_file"),
                Kind::InvalidValue,
                format!(
                    "{}approve_token_file must be another file than token_file: the approval token is a second, stronger secret",
                    t.who
                ),
            );
            Got::Bad
        }
        other => other,
    }
    .opt();
    let max_connections = get_int::<usize>(cx, t, "max_connections", 1, 1024).or(256);
    let ui = get_bool(cx, t, "ui");
    let tls_cert = get_path(cx, t, "tls_cert").opt();
    let tls_key = get_path(cx, t, "tls_key").opt();
    let tls = match (tls_cert?, tls_key?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (c, _) => {
            let (missing, present) = if c.is_some() {
                ("tls_key", "tls_cert")
            } else {
                ("tls_cert", "tls_key")
            };
            let span = t.t.get(present).map_or(t.span.clone(), |v| v.span());
            cx.push(
                span,
                t.key(missing),
                Kind::MissingKey,
                format!(
                    "{}{present} needs {missing}: the certificate and its key go together",
                    t.who
                ),
            );
            return None;
        }
    };
    // The read token travels in the login form and the session in a cookie: in the clear
    // only on this machine.
    if let (Got::Val(true, span), Some((listen, _)), None) = (&ui, &listen, &tls)
        && !listen.ip().is_loopback()
    {
        cx.push(
            span.clone(),
            t.key("ui"),
            Kind::InvalidValue,
            format!(
                "{}ui on {listen}, which is not a loopback address, needs tls_cert and tls_key: the login token and the session cookie would cross the network readable",
                t.who
            ),
        );
        return None;
    }
    Some(ApiConfig {
        listen: listen?.0,
        token_file: token_file?.0,
        approve_token_file: approve_token_file?,
        max_connections: max_connections?,
        ui: ui.or(false)?,
        tls,
    })
}

fn upstream(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<UpstreamConfig> {
    check_keys(cx, t, UPSTREAM_KEYS, " in [upstream]", &no_foreign);
    let url = get_checked(cx, t, "url", Kind::InvalidValue, |s| {
        check::http_url(s)
            .map(|()| s.to_owned())
            .map_err(|m| format!("url {s:?}: {m}"))
    })
    .req(cx, t, "url", "");
    let token_file = get_path(cx, t, "token_file");
    let batch_size = get_int::<usize>(cx, t, "batch_size", 1, 10_000).or(100);
    let timeout_ms = get_int::<u64>(cx, t, "timeout_ms", 100, 300_000).or(10_000);
    let max_event_bytes = get_int::<usize>(
        cx,
        t,
        "max_event_bytes",
        crate::MIN_MAX_EVENT_BYTES as i128,
        crate::MAX_MAX_EVENT_BYTES as i128,
    )
    .or(crate::DEFAULT_MAX_EVENT_BYTES);
    let allow_insecure_http = get_bool(cx, t, "allow_insecure_http").or(false);
    // A bearer token over plain HTTP is readable by anyone on the path: refuse it unless the
    // operator says so in as many words.
    if let (Some((url, _)), Got::Val(_, span), Some(false)) =
        (&url, &token_file, allow_insecure_http)
        && crate::check::is_plain_http(url)
    {
        cx.push(
            span.clone(),
            t.key("token_file"),
            Kind::InvalidValue,
            format!(
                "the upstream token would be sent in cleartext to {url}: use an https:// url, or set allow_insecure_http = true in [upstream] if the path is trusted"
            ),
        );
        return None;
    }
    Some(UpstreamConfig {
        url: url?.0,
        token_file: token_file.opt()?,
        batch_size: batch_size?,
        timeout_ms: timeout_ms?,
        max_event_bytes: max_event_bytes?,
        allow_insecure_http: allow_insecure_http?,
    })
}

/// A sink's `url`: one of `schemes` (with its default port), then `HOST[:PORT]` and nothing
/// else. Returns the scheme without `://`, the host and the port.
fn sink_url(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    schemes: &[(&str, u16)],
) -> Option<(String, String, u16)> {
    get_checked(cx, t, "url", Kind::InvalidValue, |s| {
        let Some((scheme, port)) = schemes.iter().find(|(scheme, _)| {
            s.get(..scheme.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(scheme))
        }) else {
            let names: Vec<String> = schemes
                .iter()
                .map(|(s, _)| format!("{s}HOST:PORT"))
                .collect();
            return Err(format!("url {s:?}: expected {}", names.join(", ")));
        };
        let authority = &s[scheme.len()..];
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "url {s:?}: only {scheme}HOST:PORT (credentials go into username and password_file)"
            ));
        }
        let (host, port) =
            check::host_port(authority, *port).map_err(|m| format!("url {s:?}: {m}"))?;
        Ok((
            scheme.trim_end_matches("://").to_ascii_lowercase(),
            host,
            port,
        ))
    })
    .req(cx, t, "url", "")
    .map(|(v, _)| v)
}

/// A `[[sink]]`: its keys, its URL for its type, and the secrets it may send.
fn sink(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, seen: &mut HashMap<String, usize>) -> Option<SinkConfig> {
    check_keys(cx, t, SINK_KEYS, " in [[sink]]", &no_foreign);
    let line = cx.line(t.span.start);
    let mut name = get_checked(cx, t, "name", Kind::InvalidValue, |s| {
        check::id(s).map(|()| s.to_owned())
    })
    .req(cx, t, "name", "its delivery cursor is sink:<name>");
    if let Some((s, span)) = &name {
        if let Some(first) = seen.get(s) {
            let msg = format!("sink name {s:?} is already used by the sink on line {first}");
            cx.push(span.clone(), t.key("name"), Kind::DuplicateId, msg);
            name = None;
        } else {
            seen.insert(s.clone(), line);
        }
    }
    let kind = get_checked(cx, t, "type", Kind::InvalidValue, |s| match s {
        "syslog" | "mqtt" => Ok(s.to_owned()),
        other => Err(format!("type {other:?}: expected \"syslog\" or \"mqtt\"")),
    })
    .req(cx, t, "type", "\"syslog\" or \"mqtt\"");
    let schemes: &[(&str, u16)] = match kind.as_ref().map(|(k, _)| k.as_str()) {
        Some("syslog") => &[("udp://", 514), ("tcp://", 514), ("tls://", 6514)],
        Some("mqtt") => &[("mqtt://", 1883), ("mqtts://", 8883)],
        _ => &[],
    };
    // Without a known type the url cannot be judged; the type's error says enough.
    let url = if schemes.is_empty() {
        None
    } else {
        sink_url(cx, t, schemes)
    };
    let format = match get_str(cx, t, "format") {
        Got::Val("rfc5424", _) | Got::Absent => Some(SyslogFormat::Rfc5424),
        Got::Val("cef", _) => Some(SyslogFormat::Cef),
        Got::Val(other, span) => {
            cx.push(
                span,
                t.key("format"),
                Kind::InvalidValue,
                format!("{}format {other:?}: expected \"rfc5424\" or \"cef\"", t.who),
            );
            None
        }
        Got::Bad => None,
    };
    let facility = get_checked(cx, t, "facility", Kind::InvalidValue, |s| {
        FACILITIES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                format!("facility {s:?}: expected one of {}", names.join(", "))
            })
    })
    .or(16);
    let ca_file = get_path(cx, t, "ca_file").opt();
    let client_cert = get_path(cx, t, "client_cert_file").opt();
    let client_key = get_path(cx, t, "client_key_file").opt();
    let username = get_str(cx, t, "username")
        .opt()
        .map(|u| u.map(str::to_owned));
    let password_file = get_path(cx, t, "password_file");
    let topic_prefix = get_checked(cx, t, "topic_prefix", Kind::InvalidValue, |s| {
        if s.is_empty() || s.contains(['#', '+', '\0']) || s.starts_with('/') || s.ends_with('/') {
            Err(format!(
                "topic_prefix {s:?}: MQTT topic levels without wildcards (+, #), not starting or ending with /"
            ))
        } else {
            Ok(s.to_owned())
        }
    })
    .or("otdrift".to_owned());
    let allow_insecure = get_bool(cx, t, "allow_insecure").or(false);
    let batch_size = get_int::<usize>(cx, t, "batch_size", 1, 10_000).or(100);
    let timeout_ms = get_int::<u64>(cx, t, "timeout_ms", 100, 300_000).or(10_000);

    let ((kind, _), (scheme, host, port)) = (kind?, url?);
    let tls = matches!(scheme.as_str(), "tls" | "mqtts");
    // Keys that mean nothing for this type are mistakes, not silence.
    let foreign: &[&str] = if kind == "syslog" {
        &[
            "username",
            "password_file",
            "topic_prefix",
            "allow_insecure",
        ]
    } else {
        &["format", "facility"]
    };
    for k in foreign {
        if let Some(v) = t.t.get(*k) {
            cx.push(
                v.span(),
                t.key(k),
                Kind::InvalidValue,
                format!("{}`{k}` does not apply to a {kind} sink", t.who),
            );
            return None;
        }
    }
    for k in ["ca_file", "client_cert_file", "client_key_file"] {
        if !tls && let Some(v) = t.t.get(k) {
            cx.push(
                v.span(),
                t.key(k),
                Kind::InvalidValue,
                format!("{}`{k}` needs a TLS url (tls:// or mqtts://)", t.who),
            );
            return None;
        }
    }
    let client_cert = match (client_cert?, client_key?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            cx.push(
                t.span.clone(),
                t.key("client_cert_file"),
                Kind::MissingKey,
                format!("{}client_cert_file and client_key_file go together", t.who),
            );
            return None;
        }
    };
    // A password over plain MQTT is readable by anyone on the path.
    if let (Got::Val(_, span), false, Some(false)) = (&password_file, tls, allow_insecure) {
        cx.push(
            span.clone(),
            t.key("password_file"),
            Kind::InvalidValue,
            format!(
                "{}the MQTT password would be sent in cleartext: use an mqtts:// url, or set allow_insecure = true if the path is trusted",
                t.who
            ),
        );
        return None;
    }
    let kind = match kind.as_str() {
        "syslog" => SinkKind::Syslog {
            transport: match scheme.as_str() {
                "udp" => SyslogTransport::Udp,
                "tcp" => SyslogTransport::Tcp,
                _ => SyslogTransport::Tls,
            },
            format: format?,
            facility: facility?,
        },
        _ => SinkKind::Mqtt {
            tls,
            username: username?,
            password_file: password_file.opt()?,
            topic_prefix: topic_prefix?,
        },
    };
    allow_insecure?;
    Some(SinkConfig {
        name: name?.0,
        kind,
        host,
        port,
        ca_file: ca_file?,
        client_cert,
        batch_size: batch_size?,
        timeout_ms: timeout_ms?,
        line,
    })
}

fn approver(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    seen: &mut HashMap<String, usize>,
) -> Option<ApproverConfig> {
    check_keys(cx, t, APPROVER_KEYS, " in [[approver]]", &no_foreign);
    let mut id = get_checked(cx, t, "id", Kind::InvalidValue, |s| {
        check::approver_id(s).map(|()| s.to_owned())
    })
    .req(cx, t, "id", "the token's kid and iss");
    if let Some((s, span)) = &id {
        let line = cx.line(t.span.start);
        if let Some(first) = seen.get(s) {
            let msg = format!("approver id {s:?} is already used by the approver on line {first}");
            cx.push(span.clone(), t.key("id"), Kind::DuplicateId, msg);
            id = None;
        } else {
            seen.insert(s.clone(), line);
        }
    }
    let key = get_checked(
        cx,
        t,
        "public_key",
        Kind::InvalidValue,
        check::ed25519_public_key,
    )
    .req(cx, t, "public_key", "\"ed25519:<base64>\"");
    Some(ApproverConfig {
        id: id?.0,
        public_key: key?.0,
    })
}
