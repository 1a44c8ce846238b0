//! The S7 simulator's state file (format on the [`s7`](super) module): parsed and checked
//! into an [`S7State`](super::S7State).

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::state::{
    BlockMeta, COMPONENT_FIELDS, DEFAULT_TIME, DbState, Identity, ProgramBlock, ProgramType,
    Quirks, S7State, Selector, StateError, TickKind, check_component, generated_code, invalid,
    language_code, parse_block_time,
};
use crate::runtime::verbs::apply_file_quirks;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateFile {
    #[serde(default)]
    pub(crate) rack: u16,
    #[serde(default = "default_slot")]
    pub(crate) slot: u16,
    #[serde(default = "default_max_pdu")]
    pub(crate) max_pdu: u16,
    #[serde(default = "default_tick_ms")]
    pub(crate) tick_ms: u64,
    #[serde(default = "default_mode")]
    pub(crate) mode: String,
    #[serde(default)]
    pub(crate) identity: IdentityFile,
    #[serde(default)]
    pub(crate) protection: ProtectionFile,
    #[serde(default)]
    pub(crate) system_blocks: SystemBlocksFile,
    #[serde(default)]
    pub(crate) db: Vec<DbFile>,
    #[serde(default)]
    pub(crate) block: Vec<BlockFile>,
    #[serde(default)]
    pub(crate) quirks: BTreeMap<String, toml::Value>,
}

pub(crate) fn default_slot() -> u16 {
    2
}
pub(crate) fn default_max_pdu() -> u16 {
    960
}
pub(crate) fn default_tick_ms() -> u64 {
    1000
}
pub(crate) fn default_mode() -> String {
    "run".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityFile {
    pub(crate) order_number: Option<String>,
    pub(crate) module_version: Option<u16>,
    pub(crate) hardware_version: Option<u16>,
    pub(crate) firmware: Option<String>,
    pub(crate) system_name: Option<String>,
    pub(crate) module_name: Option<String>,
    pub(crate) plant_id: Option<String>,
    pub(crate) copyright: Option<String>,
    pub(crate) serial_number: Option<String>,
    pub(crate) module_type_name: Option<String>,
    pub(crate) memory_card_serial: Option<String>,
    pub(crate) location: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProtectionFile {
    #[serde(default = "default_level")]
    pub(crate) level: u16,
    #[serde(default = "default_selector")]
    pub(crate) selector: String,
}

impl Default for ProtectionFile {
    fn default() -> Self {
        ProtectionFile {
            level: default_level(),
            selector: default_selector(),
        }
    }
}

pub(crate) fn default_level() -> u16 {
    1
}
pub(crate) fn default_selector() -> String {
    "run-p".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SystemBlocksFile {
    #[serde(default)]
    pub(crate) sfc: u16,
    #[serde(default)]
    pub(crate) sfb: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetaFile {
    pub(crate) name: Option<String>,
    pub(crate) family: Option<String>,
    pub(crate) author: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) language: Option<String>,
    pub(crate) code_time: Option<String>,
    pub(crate) interface_time: Option<String>,
    pub(crate) local_data: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DbFile {
    pub(crate) number: u16,
    pub(crate) size: usize,
    #[serde(default)]
    pub(crate) values: Vec<u8>,
    #[serde(default)]
    pub(crate) fill: u8,
    pub(crate) tick: Option<String>,
    #[serde(flatten)]
    pub(crate) meta: MetaFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockFile {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) number: u16,
    #[serde(default = "default_code_size")]
    pub(crate) size: u16,
    pub(crate) code: Option<String>,
    #[serde(flatten)]
    pub(crate) meta: MetaFile,
}

pub(crate) fn default_code_size() -> u16 {
    128
}

pub(crate) fn meta(
    file: MetaFile,
    what: &str,
    default_language: u8,
    default_name: &str,
) -> Result<BlockMeta, StateError> {
    let text8 = |field: &str, value: Option<String>, default: &str| -> Result<String, StateError> {
        let value = value.unwrap_or_else(|| default.to_owned());
        if value.len() > 8 || !value.is_ascii() {
            return Err(invalid(format!(
                "{what}: {field} {value:?} is not at most 8 ASCII characters"
            )));
        }
        Ok(value)
    };
    let version = match file.version {
        None => (0, 1),
        Some(v) => {
            let parsed = v
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse::<u8>().ok()?, b.parse::<u8>().ok()?)))
                .filter(|(a, b)| *a < 16 && *b < 16);
            parsed.ok_or_else(|| {
                invalid(format!(
                    "{what}: version {v:?} is not MAJOR.MINOR (0..=15 each)"
                ))
            })?
        }
    };
    let language = match file.language {
        None => default_language,
        Some(l) => language_code(&l).ok_or_else(|| {
            invalid(format!(
                "{what}: unknown language {l:?} (STL, LAD, FBD, SCL, DB, GRAPH, SDB)"
            ))
        })?,
    };
    let time = |field: &str, value: Option<String>| -> Result<(u32, u16), StateError> {
        match value {
            None => Ok(DEFAULT_TIME),
            Some(t) => parse_block_time(&t).ok_or_else(|| {
                invalid(format!(
                    "{what}: {field} {t:?} is not YYYY-MM-DDTHH:MM:SS[.mmm] after 1984"
                ))
            }),
        }
    };
    let code_time = time("code_time", file.code_time)?;
    let interface_time = match file.interface_time {
        None => code_time,
        some => time("interface_time", some)?,
    };
    Ok(BlockMeta {
        name: text8("name", file.name, default_name)?,
        family: text8("family", file.family, "")?,
        author: text8("author", file.author, "OTDRIFT")?,
        version,
        language,
        code_time,
        interface_time,
        local_data: file.local_data.unwrap_or(0),
    })
}

pub(crate) fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn firmware(text: &str) -> Option<(u8, u8, u8, u8)> {
    let mut chars = text.chars();
    let letter = chars.next().filter(char::is_ascii_uppercase)?;
    let mut parts = chars.as_str().split('.');
    let a = parts.next()?.parse().ok()?;
    let b = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((letter as u8, a, b, c))
}

impl S7State {
    /// Parses a state file's text.
    ///
    /// # Errors
    /// If it is not valid TOML of the documented shape or describes an impossible CPU.
    pub fn from_toml(text: &str) -> Result<Self, StateError> {
        let file: StateFile = toml::from_str(text)?;
        if file.rack > 7 || file.slot > 31 {
            return Err(invalid(format!(
                "rack {} slot {}: rack is 0..=7, slot 0..=31",
                file.rack, file.slot
            )));
        }
        if !(240..=960).contains(&file.max_pdu) {
            return Err(invalid(format!(
                "max_pdu {} is outside 240..=960",
                file.max_pdu
            )));
        }
        let running = match file.mode.to_ascii_lowercase().as_str() {
            "run" => true,
            "stop" => false,
            other => {
                return Err(invalid(format!(
                    "mode {other:?}: expected \"run\" or \"stop\""
                )));
            }
        };
        let id = file.identity;
        let order_number = id
            .order_number
            .unwrap_or_else(|| "6ES7 315-2EH14-0AB0".into());
        if order_number.len() > 19 || !order_number.is_ascii() {
            return Err(invalid(format!(
                "identity.order_number {order_number:?} is not at most 19 ASCII characters"
            )));
        }
        let firmware_text = id.firmware.unwrap_or_else(|| "V3.2.6".into());
        let firmware = firmware(&firmware_text).ok_or_else(|| {
            invalid(format!(
                "identity.firmware {firmware_text:?} is not like V3.2.6"
            ))
        })?;
        let mut components = BTreeMap::new();
        let defaults = [
            id.system_name.unwrap_or_else(|| "OTDRIFT-SIM".into()),
            id.module_name.unwrap_or_else(|| "CPU 315-2 PN/DP".into()),
            id.plant_id.unwrap_or_default(),
            id.copyright
                .unwrap_or_else(|| "Original Siemens Equipment".into()),
            id.serial_number.unwrap_or_else(|| "S C-X0000000001".into()),
            id.module_type_name
                .unwrap_or_else(|| "CPU 315-2 PN/DP".into()),
            id.memory_card_serial
                .unwrap_or_else(|| "MMC 00000001".into()),
            id.location.unwrap_or_default(),
        ];
        for ((field, index), value) in COMPONENT_FIELDS.iter().zip(defaults) {
            check_component(field, &value)?;
            components.insert(*index, value);
        }
        if file.protection.level > 3 {
            return Err(invalid(format!(
                "protection.level {} is outside 0..=3",
                file.protection.level
            )));
        }
        let selector = Selector::parse(&file.protection.selector).ok_or_else(|| {
            invalid(format!(
                "protection.selector {:?}: run, run-p, stop, mres or none",
                file.protection.selector
            ))
        })?;
        let mut dbs = BTreeMap::new();
        for db in file.db {
            if db.number == 0 {
                return Err(invalid("DB0 does not exist on S7 CPUs; numbers start at 1"));
            }
            let what = format!("DB{}", db.number);
            let tick = db.tick.as_deref().map(TickKind::parse).transpose()?;
            let meta = meta(db.meta, &what, 5, &what)?;
            let state = DbState::new(db.number, db.size, &db.values, db.fill, tick, meta)?;
            if dbs.insert(db.number, state).is_some() {
                return Err(invalid(format!("{what} is defined twice")));
            }
        }
        let mut blocks = BTreeMap::new();
        for block in file.block {
            let kind = ProgramType::parse(&block.kind).ok_or_else(|| {
                invalid(format!(
                    "block type {:?}: OB, FB, FC or SDB (DBs go in [[db]])",
                    block.kind
                ))
            })?;
            let what = format!("{}{}", kind.name(), block.number);
            let language = if kind == ProgramType::Sdb { 7 } else { 1 };
            let meta = meta(block.meta, &what, language, &what)?;
            let code = match block.code {
                Some(hex) => {
                    parse_hex(&hex).ok_or_else(|| invalid(format!("{what}: code is not hex")))?
                }
                None => generated_code(kind, block.number, usize::from(block.size), 0),
            };
            if code.is_empty() || code.len() > 65_000 {
                return Err(invalid(format!(
                    "{what}: code of {} bytes is outside 1..=65000",
                    code.len()
                )));
            }
            if blocks
                .insert((kind, block.number), ProgramBlock { meta, code })
                .is_some()
            {
                return Err(invalid(format!("{what} is defined twice")));
            }
        }
        Ok(S7State {
            rack: file.rack,
            slot: file.slot,
            max_pdu: file.max_pdu,
            tick_ms: file.tick_ms,
            running,
            identity: Identity {
                order_number,
                module_version: id.module_version.unwrap_or(4),
                hardware_version: id.hardware_version.unwrap_or(4),
                firmware,
                components,
            },
            protection_level: file.protection.level,
            selector,
            system_blocks: (file.system_blocks.sfc, file.system_blocks.sfb),
            dbs,
            blocks,
            quirks: Quirks::default(),
            ticks: 0,
            started_checksums: [0; 4],
        })
        .and_then(|mut state| {
            state.started_checksums = state.compute_checksums();
            apply_file_quirks::<super::S7Simulator>(&mut state, &file.quirks).map_err(invalid)?;
            Ok(state)
        })
    }

    /// Reads and parses a state file.
    ///
    /// # Errors
    /// If the file cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        crate::runtime::load_state(path, Self::from_toml)
    }
}
