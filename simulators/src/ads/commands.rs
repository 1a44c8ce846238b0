//! The ADS simulator's command language (reference on the [`ads`](super) module).

use serde_json::json;

use super::AdsSimulator;
use super::state::{
    ADS_STATES, AdsState, Quirk, QuirkArg, RefusedSymbol, SYM_FLAG_PERSISTENT, SYMBOL_NOT_FOUND,
    StateError, parse_ads_state,
};
use super::types;
use crate::control::CommandError;
use crate::runtime::verbs::{split_word, usage};
use crate::runtime::{Commands, verbs};

type Shared = crate::runtime::Shared<AdsSimulator>;

/// Parses a TOML value (`520`, `"Cola"`, `[1, 2]`, `{ a = 1 }`).
pub(crate) fn parse_value(text: &str) -> Result<toml::Value, CommandError> {
    let table: toml::Table = toml::from_str(&format!("v = {text}")).map_err(|e| {
        CommandError::Usage(format!(
            "bad value {text:?} (a TOML value: 520, 1.5, true, \"text\", [1, 2], {{ Field = 1 }}): {}",
            e.message()
        ))
    })?;
    table
        .get("v")
        .cloned()
        .ok_or_else(|| CommandError::Usage("missing value".to_owned()))
}

/// Sets the value at `path` (a symbol, `Symbol.Field`, `Symbol[i]`).
pub(crate) fn set_value(
    state: &mut AdsState,
    path: &str,
    value: &toml::Value,
) -> Result<(), CommandError> {
    let (offset, ty) = state.locate(path).map_err(CommandError::Usage)?;
    let start = offset as usize;
    let size = ty.size() as usize;
    let slot = state
        .memory
        .get_mut(start..start + size)
        .ok_or_else(|| CommandError::Usage(format!("{path} is outside the PLC memory")))?;
    let mut bytes = slot.to_vec();
    types::encode(&ty, value, &mut bytes)
        .map_err(|e| CommandError::Usage(format!("{path}: {e}")))?;
    slot.copy_from_slice(&bytes);
    Ok(())
}

/// The value at `path`, as JSON.
pub(crate) fn get_value(state: &AdsState, path: &str) -> Result<serde_json::Value, CommandError> {
    let (offset, ty) = state.locate(path).map_err(CommandError::Usage)?;
    let start = offset as usize;
    let bytes = state
        .memory
        .get(start..start + ty.size() as usize)
        .ok_or_else(|| CommandError::Usage(format!("{path} is outside the PLC memory")))?;
    Ok(types::decode(&ty, bytes))
}

fn bump_application(state: &mut AdsState) {
    if let Some(app) = state.app.as_mut() {
        app.online_change_count = app.online_change_count.wrapping_add(1);
        let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
        app.timestamp = now.max(app.timestamp.saturating_add(1));
    }
    state.write_app();
}

/// An online change that adds a symbol: the symbol table grows, `_AppInfo.OnlineChangeCnt`
/// and `AppTimestamp` move, the symbol version does not.
pub(crate) fn online_change_add(
    state: &mut AdsState,
    name: &str,
    type_name: &str,
    value: Option<&toml::Value>,
) -> Result<(), CommandError> {
    state
        .place(name, type_name, value, false, "", None)
        .map_err(state_error)?;
    bump_application(state);
    Ok(())
}

/// An online change that removes a symbol.
pub(crate) fn online_change_remove(state: &mut AdsState, name: &str) -> Result<(), CommandError> {
    if name.eq_ignore_ascii_case(super::state::APP_INFO_SYMBOL) {
        return Err(CommandError::Usage(
            "the application info cannot be removed".to_owned(),
        ));
    }
    let before = state.symbols.len();
    state.symbols.retain(|s| !s.name.eq_ignore_ascii_case(name));
    if state.symbols.len() == before {
        return Err(CommandError::Usage(format!("no symbol {name}")));
    }
    state.tables = None;
    bump_application(state);
    Ok(())
}

/// A full download of the project the simulator was loaded with: the symbol table is the
/// loaded one again, `_AppInfo` is the loaded one (same compile, same timestamp, online
/// change count back), the symbol version moves, PERSISTENT symbols keep their values.
pub(crate) fn download(state: &mut AdsState) -> Result<(), CommandError> {
    let previous = state.symbols.clone();
    state.app = state.project.app.clone();
    state.rebuild(Some(&previous)).map_err(state_error)?;
    state.symbol_version = state.symbol_version.wrapping_add(1);
    state.ads_state = 5;
    Ok(())
}

/// A restart of the PLC runtime: the symbol version moves, non-persistent symbols get their
/// initial values, the program is unchanged.
pub(crate) fn restart(state: &mut AdsState) {
    for s in state.symbols.clone() {
        if !s.persistent {
            let start = s.offset as usize;
            if let Some(slot) = state.memory.get_mut(start..start + s.initial.len()) {
                slot.copy_from_slice(&s.initial);
            }
        }
    }
    state.write_app();
    state.handles.clear();
    state.symbol_version = state.symbol_version.wrapping_add(1);
    state.ads_state = 5;
}

/// Parses an ADS error code: `0x710` or `1808`.
fn parse_code(text: &str) -> Result<u32, CommandError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed
        .filter(|&c| c != 0)
        .ok_or_else(|| usage("an ADS error code, e.g. 0x701 or 1793 (not 0)"))
}

/// Refuses every read of symbol `name` with `code` (the `refuse-symbol` quirk).
pub(crate) fn refuse_symbol(
    state: &mut AdsState,
    name: &str,
    code: u32,
) -> Result<(), CommandError> {
    let Some(sym) = state
        .symbols
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
    else {
        return Err(CommandError::Usage(format!("no symbol {name}")));
    };
    let symbol = RefusedSymbol {
        name: sym.name.clone(),
        code,
    };
    state
        .quirks
        .replace(Quirk::RefuseSymbol, QuirkArg::Symbol(symbol));
    Ok(())
}

fn state_error(e: StateError) -> CommandError {
    CommandError::Usage(
        e.to_string()
            .trim_start_matches("invalid state file: ")
            .to_owned(),
    )
}

fn info(state: &mut AdsState) -> serde_json::Value {
    let tables = state.tables();
    json!({
        "device_name": state.device_name,
        "version": format!("{}.{}.{}", state.version.0, state.version.1, state.version.2),
        "ams_net_id": state.ams_net_id.iter().map(u8::to_string).collect::<Vec<_>>().join("."),
        "ams_port": state.ams_port,
        "ads_state": ADS_STATES.get(usize::from(state.ads_state)).copied().unwrap_or("?"),
        "symbol_version": state.symbol_version,
        "online_change_count": state.app.as_ref().map(|a| a.online_change_count),
        "app_timestamp": state.app.as_ref().map(|a| a.timestamp),
        "symbols": tables.symbol_count,
        "datatypes": tables.datatype_count,
        "memory_bytes": state.memory.len(),
    })
}

impl Commands for AdsSimulator {
    const HELP: &'static str = "commands: \
    set PATH VALUE ; get PATH ; info ; symbols [PREFIX] ; tick [N] ; \
    state RUN|STOP|CONFIG|... ; device name TEXT|version X.Y.Z ; \
    online-change add NAME TYPE [= VALUE] ; online-change remove NAME ; download ; restart ; \
    quirk [NAME on|off] ; quirk refuse-all on [CODE] ; quirk refuse-symbol on NAME [CODE] ; \
    log [clear] ; help";
    const LOG_KEY: &'static str = "by_command";

    /// `quirk NAME on [ARGS]`: `refuse-all` takes an optional code, `refuse-symbol` a name and
    /// an optional code; the others take nothing.
    fn quirk_on(state: &mut AdsState, quirk: Quirk, args: &str) -> Result<(), CommandError> {
        let args: Vec<&str> = args.split_whitespace().collect();
        match (quirk, args.as_slice()) {
            (Quirk::RefuseAll, []) => state.quirks.set(quirk, true),
            (Quirk::RefuseAll, [code]) => state
                .quirks
                .replace(quirk, QuirkArg::Code(parse_code(code)?)),
            (Quirk::RefuseSymbol, [symbol]) => refuse_symbol(state, symbol, SYMBOL_NOT_FOUND)?,
            (Quirk::RefuseSymbol, [symbol, code]) => {
                refuse_symbol(state, symbol, parse_code(code)?)?;
            }
            (Quirk::RefuseAll, _) => return Err(usage("quirk refuse-all on [CODE] | off")),
            (Quirk::RefuseSymbol, _) => {
                return Err(usage("quirk refuse-symbol on NAME [CODE] | off"));
            }
            (_, []) => state.quirks.set(quirk, true),
            _ => return Err(usage("quirk NAME on|off")),
        }
        Ok(())
    }

    /// A state file's `refuse_symbol = { name = "...", code = 0x710 }`, as the command's words.
    fn file_arg(quirk: Quirk, value: &toml::Value) -> Result<String, String> {
        match (quirk, value) {
            (Quirk::RefuseSymbol, toml::Value::Table(table)) => {
                let symbol: RefusedSymbol = toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| e.message().to_owned())?;
                Ok(format!("{} {}", symbol.name, symbol.code))
            }
            (_, toml::Value::Integer(n)) => Ok(n.to_string()),
            (_, toml::Value::String(s)) => Ok(s.clone()),
            _ => Err("expected true, false or the quirk's argument".to_owned()),
        }
    }

    /// The ADS simulator's own verbs.
    fn command(shared: &Shared, verb: &str, rest: &str) -> Result<String, CommandError> {
        let mut state = shared.lock_state();
        match verb {
            "set" => {
                let (path, value) = split_word(rest);
                if path.is_empty() || value.is_empty() {
                    return Err(usage("set PATH VALUE"));
                }
                parse_value(value)
                    .and_then(|value| set_value(&mut state, path, &value))
                    .map(|()| String::new())
            }
            "get" => {
                if rest.is_empty() {
                    return Err(usage("get PATH"));
                }
                get_value(&state, rest).map(|v| v.to_string())
            }
            "info" => Ok(info(&mut state).to_string()),
            "symbols" => {
                let names: Vec<serde_json::Value> = state
                    .symbols
                    .iter()
                    .filter(|s| {
                        s.name
                            .get(..rest.len())
                            .is_some_and(|h| h.eq_ignore_ascii_case(rest))
                    })
                    .map(|s| {
                        json!({
                            "name": s.name,
                            "type": s.ty.name(),
                            "size": s.ty.size(),
                            "offset": s.offset,
                            "persistent": s.persistent && SYM_FLAG_PERSISTENT != 0,
                        })
                    })
                    .collect();
                Ok(serde_json::Value::Array(names).to_string())
            }
            "state" => parse_ads_state(rest)
                .filter(|c| usize::from(*c) < ADS_STATES.len())
                .ok_or_else(|| usage("state RUN|STOP|CONFIG|... (an ADS state name or 0..=19)"))
                .map(|code| {
                    state.ads_state = code;
                    String::new()
                }),
            "device" => device(&mut state, rest),
            "online-change" => online_change(&mut state, rest),
            "download" => download(&mut state).map(|()| String::new()),
            "restart" => {
                restart(&mut state);
                Ok(String::new())
            }
            _ => Err(CommandError::Unknown(verb.to_owned())),
        }
    }

    fn log_summary(shared: &Shared) -> String {
        verbs::log_counts::<Self, _>(shared.log().count_by_service())
    }
}

fn device(state: &mut AdsState, rest: &str) -> Result<String, CommandError> {
    let (field, value) = split_word(rest);
    match field {
        "name" if !value.is_empty() && value.len() <= 15 => {
            state.device_name = value.to_owned();
            Ok(String::new())
        }
        "version" => {
            let parts: Vec<&str> = value.split('.').collect();
            match parts.as_slice() {
                [a, b, c] => match (a.parse(), b.parse(), c.parse()) {
                    (Ok(a), Ok(b), Ok(c)) => {
                        state.version = (a, b, c);
                        Ok(String::new())
                    }
                    _ => Err(usage("device version MAJOR.MINOR.BUILD")),
                },
                _ => Err(usage("device version MAJOR.MINOR.BUILD")),
            }
        }
        _ => Err(usage(
            "device name TEXT (1-15 bytes) | device version X.Y.Z",
        )),
    }
}

fn online_change(state: &mut AdsState, rest: &str) -> Result<String, CommandError> {
    let (what, args) = split_word(rest);
    match what {
        "add" => {
            let (name, tail) = split_word(args);
            let (type_name, value) = match tail.split_once('=') {
                Some((t, v)) => (t.trim(), Some(parse_value(v.trim())?)),
                None => (tail.trim(), None),
            };
            if name.is_empty() || type_name.is_empty() {
                return Err(usage("online-change add NAME TYPE [= VALUE]"));
            }
            online_change_add(state, name, type_name, value.as_ref())?;
            Ok(String::new())
        }
        "remove" if !args.is_empty() => {
            online_change_remove(state, args)?;
            Ok(String::new())
        }
        _ => Err(usage(
            "online-change add NAME TYPE [= VALUE] | online-change remove NAME",
        )),
    }
}
