//! The ADS simulator's state file (format on the [`ads`](super) module): parsed and checked
//! into an [`AdsState`](super::AdsState).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::runtime::verbs::apply_file_quirks;

use super::state::{
    AdsState, AppInfo, DEFAULT_MAX_CONNECTIONS, Project, StateError, SymbolDecl, Tick, invalid,
    parse_ads_state,
};
use super::types::TypeDecl;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub(crate) ams_net_id: Option<String>,
    pub(crate) ams_port: Option<u16>,
    pub(crate) device_name: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) ads_state: Option<String>,
    pub(crate) device_state: Option<u16>,
    pub(crate) symbol_version: Option<u8>,
    pub(crate) tick_ms: Option<u64>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) routes: Option<Vec<String>>,
    pub(crate) app: Option<RawApp>,
    #[serde(rename = "type", default)]
    pub(crate) types: Vec<RawType>,
    #[serde(rename = "symbol", default)]
    pub(crate) symbols: Vec<RawSymbol>,
    pub(crate) quirks: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub(crate) project_name: String,
    pub(crate) app_name: Option<String>,
    pub(crate) online_change_count: Option<u32>,
    pub(crate) timestamp: Option<String>,
    pub(crate) task_count: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawType {
    pub(crate) name: String,
    pub(crate) fields: Option<Vec<RawField>>,
    pub(crate) alias: Option<String>,
    pub(crate) base: Option<String>,
    pub(crate) members: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawField {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) type_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSymbol {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) type_name: String,
    pub(crate) value: Option<toml::Value>,
    pub(crate) persistent: Option<bool>,
    pub(crate) comment: Option<String>,
    pub(crate) tick: Option<String>,
}

/// Parses `5.80.201.232.1.1`.
pub(crate) fn parse_net_id(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = text
        .trim()
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

/// Parses `2025-03-01T10:22:05` or `DT#2025-03-01-10:22:05` to seconds since 1970.
pub(crate) fn parse_dt(text: &str) -> Option<u32> {
    let t = text.trim();
    let parsed = match t.strip_prefix("DT#") {
        Some(rest) => chrono::NaiveDateTime::parse_from_str(rest, "%Y-%m-%d-%H:%M:%S").ok(),
        None => chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok(),
    }?;
    u32::try_from(parsed.and_utc().timestamp()).ok()
}

impl AdsState {
    /// Reads a state file.
    ///
    /// # Errors
    /// If the file cannot be read or is not a valid state.
    pub fn load(path: &Path) -> Result<AdsState, StateError> {
        crate::runtime::load_state(path, AdsState::from_toml)
    }

    /// Parses a state from TOML (format on the module docs).
    ///
    /// # Errors
    /// Unknown keys, bad values, unknown types, duplicate names.
    pub fn from_toml(text: &str) -> Result<AdsState, StateError> {
        let raw: RawState = toml::from_str(text)?;
        let mut state = AdsState::empty();
        if let Some(id) = raw.ams_net_id {
            state.ams_net_id = parse_net_id(&id).ok_or_else(|| {
                invalid(format!("ams_net_id {id:?} is not six dot-separated bytes"))
            })?;
        }
        state.ams_port = raw.ams_port.unwrap_or(851);
        if let Some(name) = raw.device_name {
            if name.len() > 15 {
                return Err(invalid(format!(
                    "device_name {name:?} is longer than 15 bytes"
                )));
            }
            state.device_name = name;
        }
        if let Some(v) = raw.version {
            state.version = parse_version(&v)
                .ok_or_else(|| invalid(format!("version {v:?} is not MAJOR.MINOR.BUILD")))?;
        }
        if let Some(s) = raw.ads_state {
            state.ads_state =
                parse_ads_state(&s).ok_or_else(|| invalid(format!("unknown ads_state {s:?}")))?;
        }
        state.device_state = raw.device_state.unwrap_or(0);
        state.symbol_version = raw.symbol_version.unwrap_or(1);
        state.tick_ms = raw.tick_ms.unwrap_or(1000);
        state.max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if state.max_connections == 0 {
            return Err(invalid("max_connections must be at least 1"));
        }
        for r in raw.routes.unwrap_or_default() {
            state.routes.push(
                parse_net_id(&r)
                    .ok_or_else(|| invalid(format!("route {r:?} is not an AMS Net Id")))?,
            );
        }
        let app = match raw.app {
            None => None,
            Some(a) => Some(AppInfo {
                app_name: a
                    .app_name
                    .unwrap_or_else(|| format!("Port_{}", state.ams_port)),
                online_change_count: a.online_change_count.unwrap_or(0),
                timestamp: match a.timestamp {
                    None => 1_740_824_525,
                    Some(t) => parse_dt(&t).ok_or_else(|| {
                        invalid(format!("app.timestamp {t:?} is not YYYY-MM-DDThh:mm:ss"))
                    })?,
                },
                task_count: a.task_count.unwrap_or(1),
                project_name: a.project_name,
            }),
        };
        let mut types = Vec::with_capacity(raw.types.len());
        for t in raw.types {
            let decl = match (t.fields, t.alias, t.members) {
                (Some(fields), None, None) if t.base.is_none() => {
                    if fields.is_empty() {
                        return Err(invalid(format!("type {} has no fields", t.name)));
                    }
                    TypeDecl::Struct(fields.into_iter().map(|f| (f.name, f.type_name)).collect())
                }
                (None, Some(target), None) if t.base.is_none() => TypeDecl::Alias(target),
                (None, None, Some(members)) => {
                    let mut list = Vec::with_capacity(members.len());
                    for (m, v) in members {
                        let toml::Value::Integer(n) = v else {
                            return Err(invalid(format!(
                                "enum {}: member {m} needs an integer",
                                t.name
                            )));
                        };
                        list.push((m, n));
                    }
                    list.sort_by_key(|(_, n)| *n);
                    TypeDecl::Enum {
                        base: t.base.unwrap_or_else(|| "INT".to_owned()),
                        members: list,
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "type {} needs exactly one of fields, alias, or members (with optional base)",
                        t.name
                    )));
                }
            };
            types.push((t.name, decl));
        }
        let mut symbols = Vec::with_capacity(raw.symbols.len());
        for s in raw.symbols {
            let tick = match s.tick.as_deref() {
                None => None,
                Some("counter") => Some(Tick::Counter),
                Some("sine") => Some(Tick::Sine),
                Some("toggle") => Some(Tick::Toggle),
                Some(other) => {
                    return Err(invalid(format!(
                        "symbol {}: tick {other:?} (counter, sine or toggle)",
                        s.name
                    )));
                }
            };
            symbols.push(SymbolDecl {
                name: s.name,
                type_name: s.type_name,
                value: s.value,
                persistent: s.persistent.unwrap_or(false),
                comment: s.comment.unwrap_or_default(),
                tick,
            });
        }
        state.project = Project {
            types,
            symbols,
            app: app.clone(),
        };
        state.app = app;
        state.rebuild(None)?;
        if let Some(table) = &raw.quirks {
            apply_file_quirks::<super::AdsSimulator>(&mut state, table)
                .map_err(StateError::Invalid)?;
        }
        Ok(state)
    }
}

pub(crate) fn parse_version(v: &str) -> Option<(u8, u8, u16)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let build = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((major, minor, build))
}
