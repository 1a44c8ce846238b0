//! The S7 simulator's command language (reference on the [`s7`](super) module) and the
//! mutations behind it, shared with the typed methods of `S7SimHandle`.

use std::collections::BTreeMap;

use super::{
    S7Simulator,
    state::{
        BlockMeta, COMPONENT_FIELDS, DEFAULT_TIME, DbState, MAX_DB_SIZE, ProgramBlock, ProgramType,
        Selector, TickKind, check_component, generated_code, sine_byte,
    },
};
use crate::control::CommandError;
use crate::runtime::Commands;
use crate::runtime::verbs::{number, split_word, usage};

type Shared = crate::runtime::Shared<S7Simulator>;

fn db_number(text: &str) -> Result<u16, CommandError> {
    let digits = text
        .strip_prefix("db")
        .or_else(|| text.strip_prefix("DB"))
        .unwrap_or(text);
    number(digits, "DB number")
}

/// Writes bytes into a DB, all or nothing. Not a request: not logged.
pub(crate) fn set_bytes(
    shared: &Shared,
    db: u16,
    offset: usize,
    bytes: &[u8],
) -> Result<(), CommandError> {
    let _state = shared.lock_state();
    let mut backend = shared.extra.lock_backend();
    let Some(memory) = backend.db_mut(db) else {
        return Err(CommandError::Usage(format!("DB{db} does not exist")));
    };
    let end = offset
        .checked_add(bytes.len())
        .filter(|end| *end <= memory.len());
    let Some(end) = end else {
        return Err(CommandError::Address {
            table: "db",
            address: u32::try_from(offset.max(memory.len())).unwrap_or(u32::MAX),
        });
    };
    memory[offset..end].copy_from_slice(bytes);
    Ok(())
}

/// Adds a DB of `size` bytes filled with `fill` (like downloading a new DB).
pub(crate) fn add_db(
    shared: &Shared,
    number: u16,
    size: usize,
    fill: u8,
) -> Result<(), CommandError> {
    if number == 0 {
        return Err(CommandError::Usage("DB numbers start at 1".into()));
    }
    let mut state = shared.lock_state();
    if state.dbs.contains_key(&number) {
        return Err(CommandError::Usage(format!("DB{number} already exists")));
    }
    let db = DbState::plain(number, size, fill).map_err(|e| CommandError::Usage(e.to_string()))?;
    shared
        .extra
        .lock_backend()
        .add_db(number, db.initial.clone())
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    state.dbs.insert(number, db);
    Ok(())
}

/// Changes a DB's size, keeping its bytes (like downloading it with a new layout).
pub(crate) fn resize_db(shared: &Shared, number: u16, size: usize) -> Result<(), CommandError> {
    if size == 0 || size > MAX_DB_SIZE {
        return Err(CommandError::Usage(format!(
            "size {size} is outside 1..={MAX_DB_SIZE}"
        )));
    }
    let mut state = shared.lock_state();
    let Some(db) = state.dbs.get_mut(&number) else {
        return Err(CommandError::Usage(format!("DB{number} does not exist")));
    };
    let mut backend = shared.extra.lock_backend();
    let mut bytes = backend.db(number).map(<[u8]>::to_vec).unwrap_or_default();
    bytes.resize(size, 0);
    backend
        .remove_db(number)
        .and_then(|()| backend.add_db(number, bytes))
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    db.size = size;
    db.initial.resize(size, 0);
    Ok(())
}

/// Deletes a DB.
pub(crate) fn delete_db(shared: &Shared, number: u16) -> Result<(), CommandError> {
    let mut state = shared.lock_state();
    if state.dbs.remove(&number).is_none() {
        return Err(CommandError::Usage(format!("DB{number} does not exist")));
    }
    shared
        .extra
        .lock_backend()
        .remove_db(number)
        .map_err(|e| CommandError::Usage(e.to_string()))
}

/// Ticks every ticking DB once.
pub(crate) fn tick(shared: &Shared) {
    let mut state = shared.lock_state();
    state.ticks = state.ticks.wrapping_add(1);
    let n = state.ticks;
    let mut backend = shared.extra.lock_backend();
    for (number, db) in &state.dbs {
        let (Some(kind), Some(memory)) = (db.tick, backend.db_mut(*number)) else {
            continue;
        };
        for (i, byte) in memory.iter_mut().enumerate() {
            *byte = match kind {
                TickKind::Counter => byte.wrapping_add(1),
                TickKind::Sine => sine_byte(n, i),
            };
        }
    }
}

/// Switches the CPU between RUN and STOP.
pub(crate) fn set_running(shared: &Shared, running: bool) {
    let mut state = shared.lock_state();
    state.running = running;
    shared.extra.lock_backend().set_running(running);
}

fn set_dbs(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [db, offset, values @ ..] = words.as_slice() else {
        return Err(usage("set dbN OFFSET BYTE..."));
    };
    if values.is_empty() {
        return Err(usage("set dbN OFFSET BYTE..."));
    }
    let db = db_number(db)?;
    let offset: usize = number(offset, "offset")?;
    let bytes = values
        .iter()
        .map(|v| number::<u8>(v, "byte (0..=255 or 0x..)"))
        .collect::<Result<Vec<u8>, _>>()?;
    set_bytes(shared, db, offset, &bytes)?;
    Ok(String::new())
}

fn get(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (db, offset, count) = match words.as_slice() {
        [db, offset] => (*db, *offset, "1"),
        [db, offset, count] => (*db, *offset, *count),
        _ => return Err(usage("get dbN OFFSET [COUNT]")),
    };
    let db = db_number(db)?;
    let offset: usize = number(offset, "offset")?;
    let count: usize = number(count, "count")?;
    let _state = shared.lock_state();
    let backend = shared.extra.lock_backend();
    let memory = backend
        .db(db)
        .ok_or_else(|| CommandError::Usage(format!("DB{db} does not exist")))?;
    let bytes = offset
        .checked_add(count)
        .and_then(|end| memory.get(offset..end))
        .ok_or(CommandError::Address {
            table: "db",
            address: u32::try_from(offset).unwrap_or(u32::MAX),
        })?;
    Ok(serde_json::to_string(bytes).unwrap_or_default())
}

fn db(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let (verb, rest) = split_word(rest);
    let words: Vec<&str> = rest.split_whitespace().collect();
    match (verb, words.as_slice()) {
        ("add", [n, size]) => add_db(shared, db_number(n)?, number(size, "size")?, 0),
        ("add", [n, size, fill]) => add_db(
            shared,
            db_number(n)?,
            number(size, "size")?,
            number(fill, "fill byte")?,
        ),
        ("resize", [n, size]) => resize_db(shared, db_number(n)?, number(size, "size")?),
        ("delete", [n]) => delete_db(shared, db_number(n)?),
        ("list", []) => {
            let state = shared.lock_state();
            let sizes: BTreeMap<String, usize> = state
                .dbs
                .iter()
                .map(|(n, db)| (format!("DB{n}"), db.size))
                .collect();
            return Ok(serde_json::to_string(&sizes).unwrap_or_default());
        }
        _ => {
            return Err(usage(
                "db add N SIZE [FILL] | db resize N SIZE | db delete N | db list",
            ));
        }
    }
    .map(|()| String::new())
}

fn block(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    // `FB1` is accepted for `FB 1`.
    if let Some(spec) = words.get(1).copied()
        && let Some(at) = spec.find(|c: char| c.is_ascii_digit()).filter(|at| *at > 0)
    {
        words.splice(1..2, [&spec[..at], &spec[at..]]);
    }
    let (verb, kind, n, size) = match words.as_slice() {
        [verb, kind, n] => (*verb, *kind, *n, None),
        [verb, kind, n, size] => (*verb, *kind, *n, Some(*size)),
        _ => return Err(usage("block add|change|delete OB|FB|FC|SDB N [SIZE]")),
    };
    let kind = ProgramType::parse(kind)
        .ok_or_else(|| usage("block add|change|delete OB|FB|FC|SDB N [SIZE]"))?;
    let n: u16 = number(n, "block number")?;
    let mut state = shared.lock_state();
    match verb {
        "add" => {
            let size: usize = size.map(|s| number(s, "size")).transpose()?.unwrap_or(128);
            if size == 0 || size > 65_000 {
                return Err(CommandError::Usage(format!(
                    "size {size} is outside 1..=65000"
                )));
            }
            if state.blocks.contains_key(&(kind, n)) {
                return Err(CommandError::Usage(format!(
                    "{}{n} already exists",
                    kind.name()
                )));
            }
            let mut meta = BlockMeta {
                name: String::new(),
                family: String::new(),
                author: "OTDRIFT".into(),
                version: (0, 1),
                language: if kind == ProgramType::Sdb { 7 } else { 1 },
                code_time: DEFAULT_TIME,
                interface_time: DEFAULT_TIME,
                local_data: 0,
            };
            meta.name = format!("{}{n}", kind.name()).chars().take(8).collect();
            let code = generated_code(kind, n, size, 0);
            state.blocks.insert((kind, n), ProgramBlock { meta, code });
        }
        "change" => {
            let Some(block) = state.blocks.get_mut(&(kind, n)) else {
                return Err(CommandError::Usage(format!(
                    "{}{n} does not exist",
                    kind.name()
                )));
            };
            // A new compile: different code, new code timestamp (a minute later).
            let revision = u32::from(block.code.first().copied().unwrap_or(0)) + 1;
            block.code = generated_code(kind, n, block.code.len(), revision);
            block.meta.code_time.0 = (block.meta.code_time.0 + 60_000) % 86_400_000;
        }
        "delete" => {
            if state.blocks.remove(&(kind, n)).is_none() {
                return Err(CommandError::Usage(format!(
                    "{}{n} does not exist",
                    kind.name()
                )));
            }
        }
        _ => return Err(usage("block add|change|delete OB|FB|FC|SDB N [SIZE]")),
    }
    Ok(String::new())
}

fn identity(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let mut state = shared.lock_state();
    if rest.is_empty() {
        let id = &state.identity;
        let mut map: BTreeMap<&str, String> = BTreeMap::new();
        map.insert("order_number", id.order_number.clone());
        let (l, a, b, c) = id.firmware;
        map.insert("firmware", format!("{}{a}.{b}.{c}", char::from(l)));
        for (field, index) in COMPONENT_FIELDS {
            map.insert(
                field,
                id.components.get(&index).cloned().unwrap_or_default(),
            );
        }
        return Ok(serde_json::to_string(&map).unwrap_or_default());
    }
    let (field, value) = split_word(rest);
    if field == "order_number" {
        if value.len() > 19 || !value.is_ascii() {
            return Err(CommandError::Usage(
                "order_number: at most 19 ASCII characters".into(),
            ));
        }
        state.identity.order_number = value.to_owned();
        return Ok(String::new());
    }
    let Some((_, index)) = COMPONENT_FIELDS.iter().find(|(f, _)| *f == field) else {
        return Err(usage(
            "identity order_number|system_name|module_name|plant_id|copyright|serial_number|module_type_name|memory_card_serial|location VALUE",
        ));
    };
    check_component(field, value).map_err(|e| CommandError::Usage(e.to_string()))?;
    state.identity.components.insert(*index, value.to_owned());
    Ok(String::new())
}

fn protection(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (level, selector) = match words.as_slice() {
        [level] => (*level, None),
        [level, selector] => (*level, Some(*selector)),
        _ => return Err(usage("protection LEVEL(0-3) [run|run-p|stop|mres|none]")),
    };
    let level: u16 = number(level, "protection level")?;
    if level > 3 {
        return Err(usage("protection LEVEL(0-3) [run|run-p|stop|mres|none]"));
    }
    let selector = selector
        .map(|s| {
            Selector::parse(s).ok_or_else(|| usage("protection LEVEL [run|run-p|stop|mres|none]"))
        })
        .transpose()?;
    let mut state = shared.lock_state();
    state.protection_level = level;
    if let Some(selector) = selector {
        state.selector = selector;
    }
    Ok(String::new())
}

impl Commands for S7Simulator {
    const HELP: &'static str = "commands: \
    set dbN OFFSET BYTE... ; get dbN OFFSET [COUNT] ; \
    db add N SIZE [FILL] | resize N SIZE | delete N | list ; \
    block add OB|FB|FC|SDB N [SIZE] | change TYPE N | delete TYPE N ; \
    mode run|stop ; protection LEVEL [SELECTOR] ; identity [FIELD VALUE...] ; \
    tick [N] ; quirk [NAME on|off] ; log [clear] ; help";
    const LOG_KEY: &'static str = "by_service";

    /// The S7 simulator's own verbs.
    fn command(shared: &Shared, verb: &str, rest: &str) -> Result<String, CommandError> {
        match verb {
            "set" => set_dbs(shared, rest),
            "get" => get(shared, rest),
            "db" => db(shared, rest),
            "block" => block(shared, rest),
            "mode" => match rest.to_ascii_lowercase().as_str() {
                "run" => {
                    set_running(shared, true);
                    Ok(String::new())
                }
                "stop" => {
                    set_running(shared, false);
                    Ok(String::new())
                }
                _ => Err(usage("mode run|stop")),
            },
            "protection" => protection(shared, rest),
            "identity" => identity(shared, rest),
            _ => Err(CommandError::Unknown(verb.to_owned())),
        }
    }

    /// The `log` summary: requests by service name, and snap7's own server events as a second
    /// witness.
    fn log_summary(shared: &Shared) -> String {
        let by_service = crate::runtime::verbs::counts_by_name(shared.log());
        let (snap7_events, snap7_writes) = {
            let mut backend = shared.extra.lock_backend();
            backend.drain_events();
            let events: BTreeMap<String, usize> = backend
                .events()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect();
            (events, backend.event_writes())
        };
        format!(
            "{},\"snap7_events\":{},\"snap7_writes\":{snap7_writes}",
            crate::runtime::verbs::log_counts::<S7Simulator, _>(by_service),
            serde_json::to_string(&snap7_events).unwrap_or_default()
        )
    }

    /// `log clear` also forgets snap7's events.
    fn log_cleared(shared: &Shared) {
        let mut backend = shared.extra.lock_backend();
        backend.drain_events();
        backend.clear_events();
    }
}
