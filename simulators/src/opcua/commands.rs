//! The OPC UA simulator's command language (reference on the [`opcua`](super) module).

use opcua_types::Variant;
use serde_json::json;

use super::{
    OpcuaSimulator,
    file::{folder_node, variable_node},
    state::OpcuaState,
};
use crate::control::CommandError;
use crate::runtime::verbs::{split_word, usage};
use crate::runtime::{Commands, verbs};

type Shared = crate::runtime::Shared<OpcuaSimulator>;

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

impl Commands for OpcuaSimulator {
    const HELP: &'static str = "commands: \
    set ID VALUE ; get ID ; add folder ID ; add variable ID TYPE VALUE ; remove ID ; \
    build_info FIELD VALUE ; tick [N] ; quirk [NAME on|off] ; drop ; certificate ; \
    log [clear] ; help";
    const LOG_KEY: &'static str = "by_service";

    /// The OPC UA simulator's own verbs.
    fn command(shared: &Shared, verb: &str, rest: &str) -> Result<String, CommandError> {
        match verb {
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
                        add_variable(&mut shared.lock_state(), id, vtype, value)
                            .map(|()| String::new())
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
            "drop" => {
                if !rest.is_empty() {
                    return Err(usage("drop"));
                }
                shared.drop_connections();
                Ok(String::new())
            }
            "certificate" => Ok(json!({ "thumbprint": shared.extra.thumbprint }).to_string()),
            other => Err(CommandError::Unknown(other.to_owned())),
        }
    }

    fn log_summary(shared: &Shared) -> String {
        verbs::log_counts::<Self, _>(verbs::counts_by_name(shared.log()))
    }
}
