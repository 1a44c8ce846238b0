//! The checker: walks the spanned TOML tree once and turns it into a [`Config`] or a list of
//! every problem found.
//!
//! Design: the document is parsed once into spanned values (`toml::de::DeTable`). Each table
//! is then checked by hand, not by serde derive: first its keys against the known key lists
//! (so every unknown, misplaced or missing key of a table is reported, not just the first),
//! then each value. Each value getter records its own error and returns a "bad" marker; a
//! table's result is only assembled after all of its fields were looked at, and each array
//! element (approver, asset, setpoint) is checked on its own, so one mistake never hides
//! another. Dispatch on `protocol` is explicit, never through serde tagged enums.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::check;
use crate::error::{ConfigError, ConfigErrorKind as Kind, ConfigErrors};
use crate::{
    AdsConfig, AdsSetpoint, AgentConfig, ApiConfig, ApproverConfig, AssetConfig, CipConfig,
    CipSetpoint, Config, MaintenanceConfig, ModbusConfig, ModbusSetpoint, ModbusTable, OpcuaConfig,
    OpcuaSecurity, OpcuaSetpoint, PolicyConfig, Protocol, ProtocolConfig, RetentionConfig,
    S7Config, S7Setpoint, UpstreamConfig,
};

type Span = Range<usize>;
type Val<'i> = Spanned<DeValue<'i>>;

const DEFAULT_SCHEDULE: &str = "0 */5 * * * *";
const ROOT_KEYS: &[&str] = &[
    "agent",
    "api",
    "upstream",
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
];
const API_KEYS: &[&str] = &[
    "listen",
    "token_file",
    "approve_token_file",
    "max_connections",
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
const MAINTENANCE_KEYS: &[&str] = &["start", "duration"];
const ASSET_COMMON_KEYS: &[&str] = &[
    "id",
    "protocol",
    "address",
    "schedule",
    "timeout_ms",
    "capture_timeout_ms",
    "setpoints",
    "policy",
    "safety",
    "safety_policy",
    "staging_for",
    "maintenance",
];

/// Every key the validator accepts, by the table it belongs to (`[agent]`, `[[asset]]`,
/// `[[asset]] s7`, `[[asset.setpoints]] s7`, ...): what `docs/reference/config.md` must list.
pub fn accepted_keys() -> Vec<(String, &'static [&'static str])> {
    let mut out: Vec<(String, &'static [&'static str])> = vec![
        ("top level".into(), ROOT_KEYS),
        ("[agent]".into(), AGENT_KEYS),
        ("[api]".into(), API_KEYS),
        ("[upstream]".into(), UPSTREAM_KEYS),
        ("[retention]".into(), RETENTION_KEYS),
        ("[[approver]]".into(), APPROVER_KEYS),
        ("[[policy]]".into(), POLICY_KEYS),
        ("[[asset]]".into(), ASSET_COMMON_KEYS),
        ("[[asset]] maintenance".into(), MAINTENANCE_KEYS),
    ];
    for p in Protocol::ALL {
        out.push((format!("[[asset]] {}", p.as_str()), asset_keys(p)));
        out.push((
            format!("[[asset.setpoints]] {}", p.as_str()),
            setpoint_keys(p),
        ));
    }
    out
}

/// Asset-level keys each protocol adds to [`ASSET_COMMON_KEYS`].
fn asset_keys(p: Protocol) -> &'static [&'static str] {
    match p {
        Protocol::S7 => &["rack", "slot", "upload_blocks", "pdu_size"],
        Protocol::Ads => &["ams_net_id", "ams_port", "source_ams_net_id"],
        Protocol::Cip => &[
            "slot",
            "route",
            "rebrowse_every",
            "audit_tag",
            "changes_tag",
        ],
        Protocol::Modbus => &["unit_id", "device_id", "max_registers", "max_bits"],
        Protocol::Opcua => &[
            "security",
            "security_policy",
            "username",
            "password_file",
            "allow_unencrypted_password",
        ],
    }
}

/// Setpoint addressing keys of each protocol (all required); every setpoint also has `name`.
fn setpoint_keys(p: Protocol) -> &'static [&'static str] {
    match p {
        Protocol::S7 => &["db", "start", "size"],
        Protocol::Ads => &["symbol"],
        Protocol::Cip => &["tag"],
        Protocol::Modbus => &["table", "start", "count"],
        Protocol::Opcua => &["node"],
    }
}

/// "an s7", "a modbus": the article for a protocol name read aloud.
fn article(p: Protocol) -> &'static str {
    match p {
        Protocol::S7 | Protocol::Ads | Protocol::Opcua => "an",
        Protocol::Cip | Protocol::Modbus => "a",
    }
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

/// Error sink plus the source text, to turn byte spans into line/column.
struct Cx<'s> {
    file: PathBuf,
    src: &'s str,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'s> Cx<'s> {
    fn new(src: &'s str, file: &Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Cx {
            file: file.to_path_buf(),
            src,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// 1-based (line, column) of a byte offset; the column counts characters. Offsets past the
    /// end or inside a character are clamped, never sliced blindly.
    fn pos(&self, offset: usize) -> (usize, usize) {
        let mut o = offset.min(self.src.len());
        while o > 0 && !self.src.is_char_boundary(o) {
            o -= 1;
        }
        let idx = self
            .line_starts
            .partition_point(|&s| s <= o)
            .saturating_sub(1);
        let start = self.line_starts.get(idx).copied().unwrap_or(0);
        let col = self.src.get(start..o).map_or(0, |s| s.chars().count()) + 1;
        (idx + 1, col)
    }

    fn line(&self, offset: usize) -> usize {
        self.pos(offset).0
    }

    fn push(&mut self, span: Span, key: impl Into<String>, kind: Kind, message: String) {
        let (line, column) = self.pos(span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            kind,
            message,
        });
    }

    fn syntax(&mut self, e: &toml::de::Error) {
        let offset = e.span().map_or(0, |s| s.start);
        let key = self.section_key_at(offset);
        let msg = e.message().trim().to_owned();
        self.push(offset..offset, key, Kind::Syntax, msg);
    }

    /// Best-effort key path for a syntax error: the table header in effect at `offset` (with
    /// array-of-tables indexes) plus the key of the offending line. Only a hint, because the
    /// document could not be parsed.
    fn section_key_at(&self, offset: usize) -> String {
        let (line_no, _) = self.pos(offset);
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut section = String::new();
        let mut last_line = "";
        for (i, raw) in self.src.split('\n').enumerate() {
            if i + 1 > line_no {
                break;
            }
            last_line = raw;
            let line = raw.trim();
            let array = line.starts_with("[[");
            if !line.starts_with('[') {
                continue;
            }
            let inner = line.trim_start_matches('[');
            let Some(end) = inner.find(']') else {
                continue;
            };
            let name: String = inner
                .get(..end)
                .unwrap_or("")
                .split('.')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(".");
            if array {
                *counts.entry(name.clone()).or_insert(0) += 1;
                let nested = format!("{name}.");
                counts.retain(|k, _| !k.starts_with(&nested));
            }
            let mut rendered = String::new();
            let mut prefix = String::new();
            for seg in name.split('.') {
                if !prefix.is_empty() {
                    prefix.push('.');
                    rendered.push('.');
                }
                prefix.push_str(seg);
                rendered.push_str(seg);
                if let Some(n) = counts.get(&prefix) {
                    rendered.push_str(&format!("[{}]", n.saturating_sub(1)));
                }
            }
            section = rendered;
        }
        let line = last_line.trim();
        if line.starts_with('[') {
            return section;
        }
        match line.split_once('=') {
            Some((k, _)) if !k.trim().is_empty() && !k.contains(['"', '\'', '[', '{', '#']) => {
                let k: Vec<&str> = k.split('.').map(str::trim).collect();
                let k = k.join(".");
                if section.is_empty() {
                    k
                } else {
                    format!("{section}.{k}")
                }
            }
            _ => section,
        }
    }

    fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors.dedup();
        ConfigErrors(self.errors)
    }
}

/// One TOML table being checked, with what is needed to name it in messages.
struct Tbl<'a, 'i> {
    t: &'a DeTable<'i>,
    /// Header (or inline table) span, where missing keys are reported.
    span: Span,
    /// Key path of the table, e.g. `asset[2]`; empty for the top level.
    path: String,
    /// Message prefix naming the asset, e.g. `asset "press-7": `; empty when not an asset.
    who: String,
    /// How to name the table in a "missing key" message, e.g. `[[asset]]`.
    header: String,
}

impl<'a, 'i> Tbl<'a, 'i> {
    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{}", self.path, k)
        }
    }

    fn get(&self, k: &str) -> Option<&'a Val<'i>> {
        self.t.get(k)
    }
}

/// Result of looking a value up: absent (default applies), present but bad (already
/// reported), or good with its span.
enum Got<T> {
    Absent,
    Bad,
    Val(T, Span),
}

impl<T> Got<T> {
    /// A required value: absence is reported at the table header.
    fn req(self, cx: &mut Cx<'_>, t: &Tbl<'_, '_>, k: &str, need: &str) -> Option<(T, Span)> {
        match self {
            Got::Val(v, s) => Some((v, s)),
            Got::Bad => None,
            Got::Absent => {
                let need = if need.is_empty() {
                    String::new()
                } else {
                    format!(" ({need})")
                };
                cx.push(
                    t.span.clone(),
                    t.key(k),
                    Kind::MissingKey,
                    format!("{}missing required key `{k}` in {}{need}", t.who, t.header),
                );
                None
            }
        }
    }

    /// An optional value with a default.
    fn or(self, default: T) -> Option<T> {
        match self {
            Got::Val(v, _) => Some(v),
            Got::Bad => None,
            Got::Absent => Some(default),
        }
    }

    /// An optional value without a default: `Some(None)` when absent, `None` when bad.
    fn opt(self) -> Option<Option<T>> {
        match self {
            Got::Val(v, _) => Some(Some(v)),
            Got::Bad => None,
            Got::Absent => Some(None),
        }
    }
}

/// What a value is, for "expected X, found Y" messages.
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => {
            let short: String = s.chars().take(40).collect();
            if short.len() < s.len() {
                format!("string {short:?}...")
            } else {
                format!("string {short:?}")
            }
        }
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

fn wrong_type(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, k: &str, v: &Val<'_>, expected: &str) {
    cx.push(
        v.span(),
        t.key(k),
        Kind::InvalidValue,
        format!(
            "{}expected {expected}, found {}",
            t.who,
            describe(v.get_ref())
        ),
    );
}

fn get_str<'a>(cx: &mut Cx<'_>, t: &Tbl<'a, '_>, k: &str) -> Got<&'a str> {
    match t.get(k) {
        None => Got::Absent,
        Some(v) => match v.get_ref() {
            DeValue::String(s) => Got::Val(s.as_ref(), v.span()),
            _ => {
                wrong_type(cx, t, k, v, "a string");
                Got::Bad
            }
        },
    }
}

/// An array of strings, each checked by `f`.
fn get_str_list(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    k: &str,
    f: impl Fn(&str) -> Result<(), String>,
) -> Got<Vec<String>> {
    let Some(v) = t.get(k) else {
        return Got::Absent;
    };
    let DeValue::Array(items) = v.get_ref() else {
        wrong_type(cx, t, k, v, "an array of strings");
        return Got::Bad;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (j, item) in items.iter().enumerate() {
        match item.get_ref() {
            DeValue::String(s) => match f(s) {
                Ok(()) => out.push(s.to_string()),
                Err(m) => {
                    ok = false;
                    cx.push(
                        item.span(),
                        format!("{}[{j}]", t.key(k)),
                        Kind::InvalidValue,
                        format!("{}{m}", t.who),
                    );
                }
            },
            other => {
                ok = false;
                cx.push(
                    item.span(),
                    format!("{}[{j}]", t.key(k)),
                    Kind::InvalidValue,
                    format!("{}expected a string, found {}", t.who, describe(other)),
                );
            }
        }
    }
    if ok {
        Got::Val(out, v.span())
    } else {
        Got::Bad
    }
}

fn get_bool(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, k: &str) -> Got<bool> {
    match t.get(k) {
        None => Got::Absent,
        Some(v) => match v.get_ref() {
            DeValue::Boolean(b) => Got::Val(*b, v.span()),
            _ => {
                wrong_type(cx, t, k, v, "true or false");
                Got::Bad
            }
        },
    }
}

/// A duration written as a string (`"90s"`, `"30m"`, `"12h"`, `"35d"`, `"1h 30m"`) in
/// `lo..=hi`.
fn get_duration(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    k: &str,
    lo: Duration,
    hi: Duration,
) -> Got<Duration> {
    let Some(v) = t.get(k) else {
        return Got::Absent;
    };
    let expected = format!(
        "a duration string from {} to {}, such as \"30s\", \"12h\" or \"35d\"",
        crate::format_duration(lo),
        crate::format_duration(hi)
    );
    match v.get_ref() {
        DeValue::String(s) => match crate::parse_duration(s) {
            Ok(d) if (lo..=hi).contains(&d) => Got::Val(d, v.span()),
            Ok(_) => {
                cx.push(
                    v.span(),
                    t.key(k),
                    Kind::InvalidValue,
                    format!("{}expected {expected}, found {s:?}", t.who),
                );
                Got::Bad
            }
            Err(m) => {
                cx.push(
                    v.span(),
                    t.key(k),
                    Kind::InvalidValue,
                    format!("{}{m}; expected {expected}", t.who),
                );
                Got::Bad
            }
        },
        _ => {
            wrong_type(cx, t, k, v, &expected);
            Got::Bad
        }
    }
}

/// An integer in `lo..=hi`, converted to the field's type.
fn get_int<N: TryFrom<i128>>(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    k: &str,
    lo: i128,
    hi: i128,
) -> Got<N> {
    let Some(v) = t.get(k) else {
        return Got::Absent;
    };
    let expected = format!("an integer from {lo} to {hi}");
    match v.get_ref() {
        DeValue::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            let n = i128::from_str_radix(&digits, i.radix())
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .and_then(|n| N::try_from(n).ok());
            match n {
                Some(n) => Got::Val(n, v.span()),
                None => {
                    cx.push(
                        v.span(),
                        t.key(k),
                        Kind::InvalidValue,
                        format!("{}expected {expected}, found {i}", t.who),
                    );
                    Got::Bad
                }
            }
        }
        _ => {
            wrong_type(cx, t, k, v, &expected);
            Got::Bad
        }
    }
}

/// A string checked by `f`; a failed check is reported as `kind` with `f`'s reason.
fn get_checked<'a, T>(
    cx: &mut Cx<'_>,
    t: &Tbl<'a, '_>,
    k: &str,
    kind: Kind,
    f: impl FnOnce(&'a str) -> Result<T, String>,
) -> Got<T> {
    match get_str(cx, t, k) {
        Got::Val(s, span) => match f(s) {
            Ok(v) => Got::Val(v, span),
            Err(m) => {
                cx.push(span, t.key(k), kind, format!("{}{m}", t.who));
                Got::Bad
            }
        },
        Got::Absent => Got::Absent,
        Got::Bad => Got::Bad,
    }
}

/// A file-system path: a non-empty string.
fn get_path(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, k: &str) -> Got<PathBuf> {
    get_checked(cx, t, k, Kind::InvalidValue, |s| {
        if s.is_empty() {
            Err("expected a path, found an empty string".into())
        } else if s.contains('\0') {
            Err("a path cannot contain a NUL character".into())
        } else {
            Ok(PathBuf::from(s))
        }
    })
}

/// Reports every key of `t` that is not in `allowed`: as WrongProtocolKey when `foreign`
/// names the protocol it belongs to, else as UnknownKey with the expected list.
fn check_keys(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    allowed: &[&str],
    expects: &str,
    foreign: &dyn Fn(&str) -> Option<String>,
) {
    for (k, _) in t.t.iter() {
        let name: &str = k.get_ref();
        if allowed.contains(&name) {
            continue;
        }
        if let Some(msg) = foreign(name) {
            cx.push(k.span(), t.key(name), Kind::WrongProtocolKey, msg);
            continue;
        }
        let hint = allowed
            .iter()
            .map(|a| (check::edit_distance(name, a), *a))
            .filter(|(d, a)| *d <= 2 && *d < a.len() && *d < name.chars().count())
            .min()
            .map(|(_, a)| format!(" (did you mean `{a}`?)"))
            .unwrap_or_default();
        cx.push(
            k.span(),
            t.key(name),
            Kind::UnknownKey,
            format!(
                "{}unknown key `{name}`{expects}{hint}; expected one of {}",
                t.who,
                allowed.join(", ")
            ),
        );
    }
}

fn no_foreign(_: &str) -> Option<String> {
    None
}

/// A sub-table (`[agent]`); `None` when absent or not a table (reported).
fn sub_table<'a, 'i>(cx: &mut Cx<'_>, parent: &Tbl<'a, 'i>, k: &str) -> Got<Tbl<'a, 'i>> {
    let Some(v) = parent.get(k) else {
        return Got::Absent;
    };
    match v.get_ref() {
        DeValue::Table(t) => Got::Val(
            Tbl {
                t,
                span: v.span(),
                path: parent.key(k),
                who: String::new(),
                header: format!("[{}]", parent.key(k)),
            },
            v.span(),
        ),
        _ => {
            wrong_type(cx, parent, k, v, &format!("a table [{k}]"));
            Got::Bad
        }
    }
}

/// An array of tables (`[[asset]]`). Elements that are not tables are reported and skipped;
/// indexes stay those of the file.
fn table_array<'a, 'i>(
    cx: &mut Cx<'_>,
    parent: &Tbl<'a, 'i>,
    k: &str,
    header: &str,
) -> Option<Vec<Tbl<'a, 'i>>> {
    let Some(v) = parent.get(k) else {
        return Some(Vec::new());
    };
    match v.get_ref() {
        DeValue::Array(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (j, item) in items.iter().enumerate() {
                let path = format!("{}[{j}]", parent.key(k));
                match item.get_ref() {
                    DeValue::Table(t) => out.push(Tbl {
                        t,
                        span: item.span(),
                        path,
                        who: parent.who.clone(),
                        header: header.to_owned(),
                    }),
                    other => {
                        ok = false;
                        cx.push(
                            item.span(),
                            path,
                            Kind::InvalidValue,
                            format!(
                                "{}expected a table ({header}), found {}",
                                parent.who,
                                describe(other)
                            ),
                        );
                    }
                }
            }
            ok.then_some(out)
        }
        other => {
            cx.push(
                v.span(),
                parent.key(k),
                Kind::InvalidValue,
                format!(
                    "{}expected an array of tables written {header}, found {}",
                    parent.who,
                    describe(other)
                ),
            );
            None
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
        retention: retention?,
        approvers: approvers?,
        policies: policies?,
        assets: assets?,
    })
}

/// A `staging_for` reference, kept with its place in the file for the checks that need every
/// asset.
struct StagingLink {
    asset: String,
    production: String,
    key: String,
    span: Span,
}

/// `staging_for` names another configured asset, of the same protocol, that is not itself a
/// staging controller.
fn check_staging(cx: &mut Cx<'_>, assets: &[AssetConfig], links: &[StagingLink]) {
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
    Some(ApiConfig {
        listen: listen?.0,
        token_file: token_file?.0,
        approve_token_file: approve_token_file?,
        max_connections: max_connections?,
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

/// Protocol-specific WrongProtocolKey message for `k`, if another protocol knows it.
fn foreign_key_msg(
    k: &str,
    p: Protocol,
    asset_name: &str,
    level: &str,
    keys_of: fn(Protocol) -> &'static [&'static str],
    expected: &[&str],
) -> Option<String> {
    let owners: Vec<Protocol> = Protocol::ALL
        .into_iter()
        .filter(|q| *q != p && keys_of(*q).contains(&k))
        .collect();
    let first = owners.first()?;
    let names: Vec<&str> = owners.iter().map(|q| q.as_str()).collect();
    Some(format!(
        "`{k}` is {} {} {level} key; {asset_name} uses {p} ({level} keys: {})",
        article(*first),
        names.join("/"),
        expected.join(", ")
    ))
}

fn asset(
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

    let protocol = match get_str(cx, &t, "protocol").req(
        cx,
        &t,
        "protocol",
        "s7, ads, cip, modbus or opcua",
    ) {
        Some((s, span)) => match s.parse::<Protocol>() {
            Ok(p) => Some(p),
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
        Some(p) => allowed.extend_from_slice(asset_keys(p)),
        None => {
            for p in Protocol::ALL {
                for k in asset_keys(p) {
                    if !allowed.contains(k) {
                        allowed.push(k);
                    }
                }
            }
        }
    }
    let expects = match protocol {
        Some(p) => format!(" for {article} {p} asset", article = article(p)),
        None => " in [[asset]]".to_owned(),
    };
    let foreign = |k: &str| {
        protocol.and_then(|p| foreign_key_msg(k, p, &asset_name, "asset", asset_keys, &allowed))
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
            let r = if p == Protocol::Opcua {
                check::opcua_endpoint(a)
            } else if a
                .get(..10)
                .is_some_and(|h| h.eq_ignore_ascii_case("opc.tcp://"))
            {
                Err(format!(
                    "an OPC UA endpoint URL, which only protocol = \"opcua\" takes; {article} {p} address is host[:port] (default port {port})",
                    article = article(p),
                    port = p.default_port()
                ))
            } else {
                check::host_port(a, p.default_port())
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
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build()
            .parse(s)
            .map(|_| s.to_owned())
            .map_err(|e| {
                format!("{s:?} is not a valid cron schedule with seconds ({e}); expected e.g. \"0 */5 * * * *\"")
            })
    })
    .or(DEFAULT_SCHEDULE.to_owned());
    let timeout_ms = get_int::<u64>(cx, &t, "timeout_ms", 50, 600_000).or(3000);
    let capture_timeout_ms =
        get_int::<u64>(cx, &t, "capture_timeout_ms", 100, 3_600_000).or(60_000);

    // Setpoints: keys and names first (same for all protocols), then the addressing keys.
    let setpoints = table_array(cx, &t, "setpoints", "[[asset.setpoints]]");
    let sps = setpoints.as_deref().unwrap_or(&[]);
    let mut names: HashMap<String, usize> = HashMap::new();
    let sp_names: Vec<Option<String>> = sps
        .iter()
        .map(|sp| setpoint_common(cx, sp, protocol, &asset_name, &mut names))
        .collect();

    let proto_cfg = match protocol {
        Some(Protocol::S7) => s7(cx, &t, sps, &sp_names).map(ProtocolConfig::S7),
        Some(Protocol::Ads) => ads(cx, &t, sps, &sp_names).map(ProtocolConfig::Ads),
        Some(Protocol::Cip) => cip(cx, &t, sps, &sp_names).map(ProtocolConfig::Cip),
        Some(Protocol::Modbus) => modbus(cx, &t, sps, &sp_names).map(ProtocolConfig::Modbus),
        Some(Protocol::Opcua) => {
            let endpoint_str = address.as_ref().map(|(a, _)| (*a).to_owned());
            opcua(cx, &t, sps, &sp_names, endpoint_str).map(ProtocolConfig::Opcua)
        }
        None => None,
    };
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
                    croner::parser::CronParser::builder()
                        .seconds(croner::parser::Seconds::Required)
                        .build()
                        .parse(s)
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
    protocol: Option<Protocol>,
    asset_name: &str,
    names: &mut HashMap<String, usize>,
) -> Option<String> {
    let mut allowed: Vec<&str> = vec!["name"];
    match protocol {
        Some(p) => allowed.extend_from_slice(setpoint_keys(p)),
        None => {
            for p in Protocol::ALL {
                for k in setpoint_keys(p) {
                    if !allowed.contains(k) {
                        allowed.push(k);
                    }
                }
            }
        }
    }
    let expects = match protocol {
        Some(p) => format!(" for {article} {p} setpoint", article = article(p)),
        None => " in [[asset.setpoints]]".to_owned(),
    };
    let foreign = |k: &str| {
        protocol
            .and_then(|p| foreign_key_msg(k, p, asset_name, "setpoint", setpoint_keys, &allowed))
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

/// The "(modbus setpoints need ...)" hint for missing addressing keys.
fn sp_need(p: Protocol) -> String {
    let mut keys = vec!["name"];
    keys.extend_from_slice(setpoint_keys(p));
    format!("{p} setpoints need {}", keys.join(", "))
}

/// Turns per-element results into the list, but only after every element was checked.
fn all<T>(items: Vec<Option<T>>) -> Option<Vec<T>> {
    items.into_iter().collect()
}

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
    let need = sp_need(Protocol::S7);
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
    let need = sp_need(Protocol::Ads);
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
    let need = sp_need(Protocol::Cip);
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
    let need = sp_need(Protocol::Modbus);

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

fn opcua(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    sps: &[Tbl<'_, '_>],
    names: &[Option<String>],
    endpoint: Option<String>,
) -> Option<OpcuaConfig> {
    let security = get_checked(cx, t, "security", Kind::InvalidValue, |s| match s {
        "none" => Ok(OpcuaSecurity::None),
        "sign" => Ok(OpcuaSecurity::Sign),
        "sign-and-encrypt" => Ok(OpcuaSecurity::SignAndEncrypt),
        _ => Err(format!(
            "{s:?} is not a security mode; expected one of none, sign, sign-and-encrypt"
        )),
    })
    .or(OpcuaSecurity::None);
    let security_policy = get_checked(cx, t, "security_policy", Kind::InvalidValue, |s| {
        match s {
            "Basic256Sha256" | "Aes128Sha256RsaOaep" | "Aes256Sha256RsaPss" => Ok(s.to_owned()),
            _ => Err(format!(
                "{s:?} is not a supported security policy; expected one of Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss"
            )),
        }
    })
    .opt();
    let username = get_checked(cx, t, "username", Kind::InvalidValue, |s| {
        if s.is_empty() || s.chars().any(char::is_control) {
            Err("a user name is non-empty text without control characters".to_owned())
        } else {
            Ok(s.to_owned())
        }
    })
    .opt();
    let password_file = get_path(cx, t, "password_file").opt();
    let allow_unencrypted_password = get_bool(cx, t, "allow_unencrypted_password").or(false);
    let need = sp_need(Protocol::Opcua);
    let setpoints: Vec<Option<OpcuaSetpoint>> = sps
        .iter()
        .zip(names)
        .map(|(sp, name)| {
            let node = get_checked(cx, sp, "node", Kind::InvalidValue, |s| {
                check::opcua_node_id(s).map(|()| s.to_owned())
            })
            .req(cx, sp, "node", &need);
            Some(OpcuaSetpoint {
                name: name.clone()?,
                node: node?.0,
            })
        })
        .collect();
    let (username, password_file) = (username?, password_file?);
    if username.is_some() != password_file.is_some() {
        let missing = if username.is_some() {
            "password_file"
        } else {
            "username"
        };
        cx.push(
            t.span.clone(),
            t.key(missing),
            Kind::MissingKey,
            format!(
                "{}missing required key `{missing}` in {} (an OPC UA user needs both username and password_file)",
                t.who, t.header
            ),
        );
        return None;
    }
    // Only sign-and-encrypt hides the password on the wire whatever the server's user-token
    // policy says; the certificate pin (first use, data_dir/opcua-pki) authenticates the
    // server but encrypts nothing, so it is no substitute.
    let (security, allow_unencrypted_password) = (security?, allow_unencrypted_password?);
    if username.is_some()
        && security != OpcuaSecurity::SignAndEncrypt
        && !allow_unencrypted_password
    {
        let span = t.get("username").map_or(t.span.clone(), |v| v.span());
        cx.push(
            span,
            t.key("username"),
            Kind::InvalidValue,
            format!(
                "{}a user name needs security = \"sign-and-encrypt\": with \"{}\" the password may cross the network readable (set allow_unencrypted_password = true only if the server's user-token policy encrypts it)",
                t.who,
                security.as_str()
            ),
        );
        return None;
    }
    Some(OpcuaConfig {
        endpoint: endpoint?,
        security,
        security_policy: security_policy?,
        username,
        password_file,
        allow_unencrypted_password,
        setpoints: all(setpoints)?,
    })
}
