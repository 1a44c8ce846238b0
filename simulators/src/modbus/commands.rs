//! The Modbus simulator's command language (reference on the
//! [`modbus`](super) module).

use std::collections::BTreeMap;

use super::{
    ModbusSimulator,
    state::{IDENTITY_FIELDS, MAX_OBJECT_LEN, ModbusState, Table, TableKind, identity_object_id},
};
use crate::control::CommandError;
use crate::runtime::verbs::{split_word, usage};
use crate::runtime::{Commands, verbs};

type Shared = crate::runtime::Shared<ModbusSimulator>;

fn parse_address(text: &str) -> Result<u16, CommandError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.ok_or_else(|| CommandError::Usage(format!("bad address {text:?} (0..=65535 or 0x...)")))
}

fn parse_register(text: &str) -> Result<u16, CommandError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => text.parse::<i32>().ok().and_then(|n| {
            u16::try_from(n)
                .ok()
                .or_else(|| i16::try_from(n).ok().map(|v| v as u16))
        }),
    };
    parsed.ok_or_else(|| {
        CommandError::Usage(format!(
            "bad register value {text:?} (0..=65535, -32768..=-1 or 0x...)"
        ))
    })
}

fn parse_bit(text: &str) -> Result<bool, CommandError> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" => Ok(true),
        "0" | "false" | "off" => Ok(false),
        _ => Err(CommandError::Usage(format!(
            "bad bit value {text:?} (0, 1, true, false)"
        ))),
    }
}

/// Writes registers, all or nothing.
pub(crate) fn set_registers(
    state: &mut ModbusState,
    kind: TableKind,
    addr: u16,
    values: &[u16],
) -> Result<(), CommandError> {
    match kind {
        TableKind::Holding => write(&mut state.holding, kind, addr, values),
        TableKind::Input => write(&mut state.input, kind, addr, values),
        TableKind::Coil | TableKind::Discrete => Err(wrong_table(kind, "bit")),
    }
}

/// Writes bits, all or nothing.
pub(crate) fn set_bits(
    state: &mut ModbusState,
    kind: TableKind,
    addr: u16,
    values: &[bool],
) -> Result<(), CommandError> {
    match kind {
        TableKind::Coil => write(&mut state.coils, kind, addr, values),
        TableKind::Discrete => write(&mut state.discrete, kind, addr, values),
        TableKind::Holding | TableKind::Input => Err(wrong_table(kind, "register")),
    }
}

/// Writes `values` into one table, naming the first address outside it.
fn write<T: Copy>(
    table: &mut Table<T>,
    kind: TableKind,
    addr: u16,
    values: &[T],
) -> Result<(), CommandError> {
    table
        .write(addr, values)
        .map_err(|address| CommandError::Address {
            table: kind.name(),
            address,
        })
}

fn wrong_table(kind: TableKind, is: &str) -> CommandError {
    CommandError::Usage(format!("{} is a {is} table", kind.name()))
}

const SET_USAGE: &str = "set holding|input|coil|discrete ADDR VALUE [VALUE...]";
const GET_USAGE: &str = "get holding|input|coil|discrete ADDR [COUNT]";

fn table_and_address(
    rest: &str,
    usage_text: &str,
) -> Result<(TableKind, u16, Vec<String>), CommandError> {
    let mut words = rest.split_whitespace();
    let kind = words
        .next()
        .and_then(TableKind::parse)
        .ok_or_else(|| usage(usage_text))?;
    let addr = parse_address(words.next().ok_or_else(|| usage(usage_text))?)?;
    Ok((kind, addr, words.map(str::to_string).collect()))
}

fn set(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let (kind, addr, words) = table_and_address(rest, SET_USAGE)?;
    if words.is_empty() {
        return Err(usage(SET_USAGE));
    }
    let mut state = shared.lock_state();
    match kind {
        TableKind::Holding | TableKind::Input => {
            let values = words
                .iter()
                .map(|w| parse_register(w))
                .collect::<Result<Vec<_>, _>>()?;
            set_registers(&mut state, kind, addr, &values)?;
        }
        TableKind::Coil | TableKind::Discrete => {
            let values = words
                .iter()
                .map(|w| parse_bit(w))
                .collect::<Result<Vec<_>, _>>()?;
            set_bits(&mut state, kind, addr, &values)?;
        }
    }
    Ok(String::new())
}

fn get(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let (kind, addr, words) = table_and_address(rest, GET_USAGE)?;
    let count = match words.as_slice() {
        [] => 1,
        [count] => count
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=65536).contains(n))
            .ok_or_else(|| usage(GET_USAGE))?,
        _ => return Err(usage(GET_USAGE)),
    };
    let state = shared.lock_state();
    let missing = |address| CommandError::Address {
        table: kind.name(),
        address,
    };
    let json = match kind {
        TableKind::Holding | TableKind::Input => {
            let table = if kind == TableKind::Holding {
                &state.holding
            } else {
                &state.input
            };
            if let Some(at) = table.first_missing(addr, count) {
                return Err(missing(at));
            }
            serde_json::to_string(&table.read(addr, count))
        }
        TableKind::Coil | TableKind::Discrete => {
            let table = if kind == TableKind::Coil {
                &state.coils
            } else {
                &state.discrete
            };
            if let Some(at) = table.first_missing(addr, count) {
                return Err(missing(at));
            }
            serde_json::to_string(&table.read(addr, count))
        }
    };
    json.map_err(|e| CommandError::Usage(e.to_string()))
}

fn identity(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let (field, value) = split_word(rest);
    let mut state = shared.lock_state();
    match field.to_ascii_lowercase().as_str() {
        "" => {
            let identity = &state.identity;
            let objects: BTreeMap<String, String> = identity
                .objects
                .iter()
                .map(|(id, value)| {
                    let key = IDENTITY_FIELDS
                        .iter()
                        .find(|(field_id, _)| field_id == id)
                        .map_or_else(|| format!("0x{id:02X}"), |(_, name)| (*name).to_string());
                    (key, String::from_utf8_lossy(value).into_owned())
                })
                .collect();
            let summary = serde_json::json!({
                "enabled": identity.enabled,
                "conformity_level": format!("0x{:02X}", identity.conformity_level()),
                "objects": objects,
            });
            Ok(summary.to_string())
        }
        "on" if value.is_empty() => {
            if state.identity.objects.is_empty() {
                return Err(CommandError::Usage(
                    "no identification objects defined; set some with `identity FIELD VALUE` first"
                        .to_string(),
                ));
            }
            state.identity.enabled = true;
            Ok(String::new())
        }
        "off" if value.is_empty() => {
            state.identity.enabled = false;
            Ok(String::new())
        }
        _ => {
            let id = identity_object_id(field)
                .filter(|id| *id <= 0x06 || *id >= 0x80)
                .ok_or_else(|| {
                    let names: Vec<&str> = IDENTITY_FIELDS.iter().map(|(_, name)| *name).collect();
                    CommandError::Usage(format!(
                        "unknown identity field {field:?}; one of {}, or an object id 0x80..0xFF, or on/off",
                        names.join(", ")
                    ))
                })?;
            if value.is_empty() {
                return Err(usage(
                    "identity FIELD VALUE... | identity on | identity off",
                ));
            }
            if value.len() > MAX_OBJECT_LEN {
                return Err(CommandError::Usage(format!(
                    "value is {} bytes; at most {MAX_OBJECT_LEN} fit in a response",
                    value.len()
                )));
            }
            state.identity.objects.insert(id, value.as_bytes().to_vec());
            Ok(String::new())
        }
    }
}

impl Commands for ModbusSimulator {
    const HELP: &'static str = "commands: \
    set holding|input|coil|discrete ADDR VALUE... ; \
    get holding|input|coil|discrete ADDR [COUNT] ; \
    identity [FIELD VALUE...|on|off] ; \
    tick [N] ; \
    quirk [stall|short-read|limit-64|busy|refuse-reads|conformity-83|slow on|off] ; \
    log [clear] ; \
    help";
    const LOG_KEY: &'static str = "by_function";

    /// The Modbus simulator's own verbs.
    fn command(shared: &Shared, verb: &str, rest: &str) -> Result<String, CommandError> {
        match verb {
            "set" => set(shared, rest),
            "get" => get(shared, rest),
            "identity" => identity(shared, rest),
            _ => Err(CommandError::Unknown(verb.to_owned())),
        }
    }

    fn log_summary(shared: &Shared) -> String {
        verbs::log_counts::<Self, _>(shared.log().count_by_function())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_register("-1"), Ok(0xFFFF));
        assert_eq!(parse_register("0x10"), Ok(16));
        assert!(parse_register("65536").is_err());
        assert!(parse_register("-32769").is_err());
        assert_eq!(parse_address("0x0A"), Ok(10));
        assert!(parse_bit("2").is_err());
        assert_eq!(
            split_word("  identity product_name  A  B "),
            ("identity", "product_name  A  B")
        );
    }
}
