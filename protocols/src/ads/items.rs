//! ADS answers as items: symbol and data-type entries, `_AppInfo` fields, and which setpoint
//! a path belongs to.

use std::collections::BTreeMap;

use otdrift_config::AdsConfig;
use otdrift_core::{Class, Value};

use super::APP_INFO_SYMBOL;
use super::decode;
use super::program::AppInfoLoc;
use super::tables::{DataType, FLAG_PERSISTENT, Symbol};

/// A net id as people write it (`5.80.201.232.1.1`).
pub(crate) fn net_id_text(id: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = id;
    format!("{a}.{b}.{c}.{d}.{e}.{f}")
}

/// The name of an ADS state.
pub(crate) fn ads_state_name(state: u16) -> Option<&'static str> {
    Some(match state {
        0 => "INVALID",
        1 => "IDLE",
        2 => "RESET",
        3 => "INIT",
        4 => "START",
        5 => "RUN",
        6 => "STOP",
        7 => "SAVECFG",
        8 => "LOADCFG",
        9 => "POWERFAILURE",
        10 => "POWERGOOD",
        11 => "ERROR",
        12 => "SHUTDOWN",
        13 => "SUSPEND",
        14 => "RESUME",
        15 => "CONFIG",
        16 => "RECONFIG",
        17 => "STOPPING",
        18 => "INCOMPATIBLE",
        19 => "EXCEPTION",
        _ => return None,
    })
}

/// Whether `name` starts with `prefix`, ignoring ASCII case.
pub(crate) fn starts_with_ci(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// A symbol's program item value.
pub(crate) fn symbol_value(s: &Symbol) -> Value {
    let mut m = BTreeMap::new();
    m.insert("type".to_owned(), Value::Text(s.type_name.clone()));
    m.insert("size".to_owned(), Value::from(s.size));
    m.insert("group".to_owned(), Value::from(s.group));
    m.insert("offset".to_owned(), Value::from(s.offset));
    m.insert("flags".to_owned(), Value::from(s.flags));
    m.insert("base_type".to_owned(), Value::from(s.base_type));
    m.insert(
        "persistent".to_owned(),
        Value::Bool(s.flags & FLAG_PERSISTENT != 0),
    );
    Value::Map(m)
}

/// A data type's program item value.
pub(crate) fn datatype_value(dt: &DataType) -> Value {
    let mut m = BTreeMap::new();
    m.insert("size".to_owned(), Value::from(dt.size));
    m.insert("base_type".to_owned(), Value::from(dt.base_type));
    m.insert("flags".to_owned(), Value::from(dt.flags));
    if !dt.type_name.is_empty() {
        m.insert("type".to_owned(), Value::Text(dt.type_name.clone()));
    }
    let dims = |array: &[(i32, u32)]| {
        Value::List(
            array
                .iter()
                .map(|&(lo, n)| Value::List(vec![Value::Int(i64::from(lo)), Value::from(n)]))
                .collect(),
        )
    };
    if !dt.array.is_empty() {
        m.insert("array".to_owned(), dims(&dt.array));
    }
    if !dt.fields.is_empty() {
        let fields = dt
            .fields
            .iter()
            .map(|f| {
                let mut fm = BTreeMap::new();
                fm.insert("name".to_owned(), Value::Text(f.name.clone()));
                fm.insert("type".to_owned(), Value::Text(f.type_name.clone()));
                fm.insert(
                    "offset".to_owned(),
                    f.offset.map_or(Value::Null, Value::from),
                );
                fm.insert("size".to_owned(), Value::from(f.size));
                Value::Map(fm)
            })
            .collect();
        m.insert("fields".to_owned(), Value::List(fields));
    }
    Value::Map(m)
}

/// The `_AppInfo` field named `name` (ignoring case), decoded.
pub(crate) fn app_field(loc: &AppInfoLoc, bytes: &[u8], name: &str) -> Option<Value> {
    let (_, offset, size, shape) = loc
        .fields
        .iter()
        .find(|(n, ..)| n.eq_ignore_ascii_case(name))?;
    let start = *offset as usize;
    let part = bytes.get(start..start.checked_add(*size as usize)?)?;
    Some(decode::decode(shape, part).into_value())
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::UInt(u) => Some(*u),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// OnlineChangeCnt and AppTimestamp: the change signals `_AppInfo` carries.
pub(crate) fn app_signals(loc: &AppInfoLoc, bytes: &[u8]) -> (Option<u64>, Option<u64>) {
    (
        app_field(loc, bytes, "OnlineChangeCnt")
            .as_ref()
            .and_then(as_u64),
        app_field(loc, bytes, "AppTimestamp")
            .as_ref()
            .and_then(as_u64),
    )
}

/// The hashed `ads/app/...` items.
/// The class of an `ads/app/...` item: the online change counter and the application's
/// timestamp are the runtime's own record of what was done to it (history: two controllers
/// running the same project never share them); the project, application name and task count
/// are what the project delivers (program).
pub(crate) fn app_class(path: &str) -> Class {
    match path {
        "ads/app/online_change_count" | "ads/app/timestamp" => Class::History,
        _ => Class::Program,
    }
}

pub(crate) fn app_values(loc: &AppInfoLoc, bytes: &[u8]) -> Vec<(String, Value)> {
    let fields = [
        ("OnlineChangeCnt", "online_change_count"),
        ("AppTimestamp", "timestamp"),
        ("ProjectName", "project_name"),
        ("AppName", "app_name"),
        ("TaskCnt", "task_count"),
    ];
    fields
        .iter()
        .map(|(field, item)| {
            let value = match app_field(loc, bytes, field) {
                Some(v) if *field == "AppTimestamp" => match as_u64(&v) {
                    Some(secs) => Value::Text(decode::dt_literal(secs)),
                    None => v,
                },
                Some(v) => v,
                None => Value::unavailable(format!("{APP_INFO_SYMBOL} has no field {field}")),
            };
            (format!("ads/app/{item}"), value)
        })
        .collect()
}

/// The setpoint entry covering `path` (`ads/value/<SYMBOL>[.<Field>...]`): an exact symbol,
/// a structure the path is a field of, or a `.*` prefix; names compared ignoring ASCII case.
pub fn setpoint_label(cfg: &AdsConfig, path: &str) -> Option<String> {
    let name = path.strip_prefix("ads/value/")?;
    cfg.setpoints
        .iter()
        .find(|sp| {
            if name.eq_ignore_ascii_case(&sp.symbol) {
                return true;
            }
            match sp.symbol.strip_suffix('*') {
                Some(prefix) => starts_with_ci(name, prefix),
                None => {
                    starts_with_ci(name, &sp.symbol)
                        && matches!(name.as_bytes().get(sp.symbol.len()), Some(b'.' | b'['))
                }
            }
        })
        .map(|sp| sp.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use otdrift_config::AdsSetpoint;

    #[test]
    fn labels_follow_names_fields_and_prefixes() {
        let cfg = AdsConfig {
            ams_net_id: [1, 2, 3, 4, 1, 1],
            ams_port: 851,
            source_ams_net_id: None,
            setpoints: vec![
                AdsSetpoint {
                    name: "fill".into(),
                    symbol: "GVL_Recipe.FillVolume".into(),
                },
                AdsSetpoint {
                    name: "recipe".into(),
                    symbol: "GVL_Recipe.*".into(),
                },
                AdsSetpoint {
                    name: "main".into(),
                    symbol: "MAIN.stParams".into(),
                },
            ],
        };
        let label = |p: &str| setpoint_label(&cfg, p);
        assert_eq!(
            label("ads/value/gvl_recipe.fillvolume").as_deref(),
            Some("fill")
        );
        assert_eq!(
            label("ads/value/GVL_Recipe.Product").as_deref(),
            Some("recipe")
        );
        assert_eq!(label("ads/value/GVL_Recipe.*").as_deref(), Some("recipe"));
        assert_eq!(
            label("ads/value/MAIN.stParams.Speed").as_deref(),
            Some("main")
        );
        assert_eq!(label("ads/value/MAIN.stParamsX"), None);
        assert_eq!(label("ads/symbol/GVL_Recipe.FillVolume"), None);
        assert_eq!(label("ads/value/MAIN.x"), None);
    }
}
