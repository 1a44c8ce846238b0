//! The OPC UA simulator's command language (reference on the [`opcua`](super) module).

use std::collections::BTreeMap;

use opcua_types::Variant;
use serde_json::json;

use super::{
    Shared,
    state::{OpcuaState, Quirk, folder_node, variable_node},
};
use crate::control::CommandError;

/// The `help` reply (one line, like every reply).
pub(crate) const HELP: &str = "commands: \
set ID VALUE ; get ID ; add folder ID ; add variable ID TYPE VALUE ; remove ID ; \
build_info FIELD VALUE ; tick [N] ; quirk [NAME on|off] ; drop ; certificate ; \
log [clear] ; help";

fn usage(text: &str) -> CommandError {
    CommandError::Usage(format!("usage: {text}"))
}

fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(at) => (
            text.get(..at).unwrap_or(text),
            text.get(at..).unwrap_or("").trim(),
        ),
        None => (text, ""),
    }
}

/// Parses one TOML value (`75.0`, `true`, `"text"`, `[1, 2]`).
fn toml_value(text: &str) -> Result<toml::Value, CommandError> {
    #[derive(serde::Deserialize)]
    struct One {
        v: toml::Value,
    }
    toml::from_str::<One>(&format!("v = {text}"))
        .map(|one| one.v)
        .map_err(|_| {
            CommandError::Usage(format!(
                "bad value {text:?} (TOML syntax: 75.0, -3, true, \"text\", [1, 2])"
            ))
        })
}

/// Sets a variable's value, keeping its type.
pub(crate) fn set_value(state: &mut OpcuaState, id: &str, text: &str) -> Result<(), CommandError> {
    let value = toml_value(text)?;
    let Some(var) = state.nodes.get_mut(id).and_then(|n| n.variable.as_mut()) else {
        return Err(CommandError::Usage(format!("no variable {id:?}")));
    };
    var.value = var
        .vtype
        .convert(&value)
        .map_err(|e| CommandError::Usage(format!("{id}: {e}")))?;
    Ok(())
}

/// Adds a variable under its parent folder.
pub(crate) fn add_variable(
    state: &mut OpcuaState,
    id: &str,
    vtype: &str,
    text: &str,
) -> Result<(), CommandError> {
    let value = toml_value(text)?;
    let node = variable_node(id, vtype, &value, None, true, None).map_err(CommandError::Usage)?;
    state.add_node(id, node).map_err(CommandError::Usage)
}

/// A value as JSON for `get` (numbers as numbers, text as text, bytes as hex).
fn json_of(value: &Variant) -> serde_json::Value {
    match value {
        Variant::Empty => serde_json::Value::Null,
        Variant::Boolean(b) => json!(b),
        Variant::SByte(v) => json!(v),
        Variant::Byte(v) => json!(v),
        Variant::Int16(v) => json!(v),
        Variant::UInt16(v) => json!(v),
        Variant::Int32(v) => json!(v),
        Variant::UInt32(v) => json!(v),
        Variant::Int64(v) => json!(v),
        Variant::UInt64(v) => json!(v),
        Variant::Float(v) => json!(v),
        Variant::Double(v) => json!(v),
        Variant::String(s) => json!(s.as_ref()),
        Variant::LocalizedText(t) => json!(t.text.as_ref()),
        Variant::DateTime(d) => json!(d.to_rfc3339()),
        Variant::ByteString(b) => json!(
            b.value
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        ),
        Variant::Array(a) => serde_json::Value::Array(a.values.iter().map(json_of).collect()),
        other => json!(other.to_string()),
    }
}

/// Executes one command line against the simulator.
pub(crate) fn execute(shared: &Shared, line: &str) -> Result<String, CommandError> {
    let (word, rest) = split_word(line);
    match word {
        "help" => Ok(HELP.to_owned()),
        "set" => {
            let (id, value) = split_word(rest);
            if id.is_empty() || value.is_empty() {
                return Err(usage("set ID VALUE"));
            }
            set_value(&mut shared.lock_state(), id, value).map(|()| String::new())
        }
        "get" => {
            let (id, extra) = split_word(rest);
            if id.is_empty() || !extra.is_empty() {
                return Err(usage("get ID"));
            }
            let state = shared.lock_state();
            let value = state
                .value(id)
                .ok_or_else(|| CommandError::Usage(format!("no variable {id:?}")))?;
            Ok(json_of(value).to_string())
        }
        "add" => {
            let (kind, rest) = split_word(rest);
            match kind {
                "folder" => {
                    let (id, extra) = split_word(rest);
                    if id.is_empty() || !extra.is_empty() {
                        return Err(usage("add folder ID"));
                    }
                    shared
                        .lock_state()
                        .add_node(id, folder_node(id, None))
                        .map_err(CommandError::Usage)
                        .map(|()| String::new())
                }
                "variable" => {
                    let (id, rest) = split_word(rest);
                    let (vtype, value) = split_word(rest);
                    if id.is_empty() || vtype.is_empty() || value.is_empty() {
                        return Err(usage("add variable ID TYPE VALUE"));
                    }
                    add_variable(&mut shared.lock_state(), id, vtype, value).map(|()| String::new())
                }
                _ => Err(usage("add folder ID | add variable ID TYPE VALUE")),
            }
        }
        "remove" => {
            let (id, extra) = split_word(rest);
            if id.is_empty() || !extra.is_empty() {
                return Err(usage("remove ID"));
            }
            let removed = shared
                .lock_state()
                .remove_node(id)
                .map_err(CommandError::Usage)?;
            Ok(json!({ "removed": removed }).to_string())
        }
        "build_info" => {
            let (field, value) = split_word(rest);
            if field.is_empty() || value.is_empty() {
                return Err(usage("build_info FIELD VALUE"));
            }
            shared
                .lock_state()
                .build_info
                .set(field, value)
                .map_err(CommandError::Usage)
                .map(|()| String::new())
        }
        "tick" => {
            let n: u32 = if rest.is_empty() {
                1
            } else {
                rest.parse()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| usage("tick [N] (N = 1..=100000)"))?
            };
            let mut state = shared.lock_state();
            for _ in 0..n {
                state.tick();
            }
            Ok(String::new())
        }
        "quirk" => {
            if rest.is_empty() {
                let all: BTreeMap<&str, bool> = shared.lock_state().quirks.all();
                return Ok(json!(all).to_string());
            }
            let (name, switch) = split_word(rest);
            let quirk = Quirk::parse(name).ok_or_else(|| {
                CommandError::Usage(format!(
                    "unknown quirk {name:?}; one of {}",
                    Quirk::ALL.map(Quirk::name).join(", ")
                ))
            })?;
            let on = match switch {
                "on" => true,
                "off" => false,
                _ => return Err(usage("quirk NAME on|off")),
            };
            shared.set_quirk(quirk, on);
            Ok(String::new())
        }
        "drop" => {
            if !rest.is_empty() {
                return Err(usage("drop"));
            }
            shared.drop_connections();
            Ok(String::new())
        }
        "certificate" => Ok(json!({ "thumbprint": shared.thumbprint }).to_string()),
        "log" => match rest {
            "" => {
                let by_service: BTreeMap<String, usize> = {
                    let mut out = BTreeMap::new();
                    for entry in shared.log.entries() {
                        *out.entry(entry.name).or_insert(0) += 1;
                    }
                    out
                };
                Ok(json!({
                    "total": shared.log.total(),
                    "writes": shared.log.writes(),
                    "by_service": by_service,
                })
                .to_string())
            }
            "clear" => {
                shared.log.clear();
                Ok(String::new())
            }
            _ => Err(usage("log [clear]")),
        },
        other => Err(CommandError::Unknown(other.to_owned())),
    }
}
