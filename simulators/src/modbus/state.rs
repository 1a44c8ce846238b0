//! The simulated device's memory: parsed from the TOML state file (format
//! documented on the [`modbus`](super) module), mutated by writes, commands
//! and ticks.

use std::{collections::BTreeMap, fmt, path::Path};

use serde::Deserialize;

pub use crate::runtime::StateError;
pub(crate) use crate::runtime::invalid;
use crate::runtime::verbs::apply_file_quirks;
use crate::runtime::{QuirkName, QuirkSet};

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    Holding,
    Input,
    Coil,
    Discrete,
}

impl TableKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Holding => "holding",
            Self::Input => "input",
            Self::Coil => "coil",
            Self::Discrete => "discrete",
        }
    }

    pub(crate) fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "holding" | "holding_registers" | "hr" => Self::Holding,
            "input" | "input_registers" | "ir" => Self::Input,
            "coil" | "coils" => Self::Coil,
            "discrete" | "discrete_inputs" | "di" => Self::Discrete,
            _ => return None,
        })
    }
}

/// How a ticking register block moves on each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TickKind {
    /// Adds 1 (wrapping) to every register of the block.
    Counter,
    /// Register `i` of the block becomes `1000 + round(1000·sin(2π·(n+i)/60))`
    /// on tick `n`.
    Sine,
}

/// The sine pattern value of register `offset` of a block on tick `tick`.
pub(crate) fn sine_value(tick: u64, offset: usize) -> u16 {
    let phase = (tick.wrapping_add(offset as u64) % 60) as f64;
    let value = 1000.0 + (1000.0 * (std::f64::consts::TAU * phase / 60.0).sin()).round();
    value.clamp(0.0, 2000.0) as u16
}

/// A contiguous run of addresses in one table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Block<T> {
    pub(crate) start: u16,
    pub(crate) values: Vec<T>,
    pub(crate) tick: Option<TickKind>,
}

impl<T> Block<T> {
    /// One past the last address (up to 65536).
    fn end(&self) -> u32 {
        u32::from(self.start) + self.values.len() as u32
    }
}

/// One data table: sorted, non-overlapping blocks. Addresses outside every
/// block do not exist (exception 0x02, like a real device).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Table<T> {
    pub(crate) blocks: Vec<Block<T>>,
}

impl<T: Copy> Table<T> {
    fn locate(&self, addr: u32) -> Option<(usize, usize)> {
        let index = self
            .blocks
            .partition_point(|b| u32::from(b.start) <= addr)
            .checked_sub(1)?;
        let block = &self.blocks[index];
        (addr < block.end()).then(|| (index, (addr - u32::from(block.start)) as usize))
    }

    /// The first address of `addr..addr+count` that does not exist, if any.
    /// Adjacent blocks read as one contiguous memory area.
    pub(crate) fn first_missing(&self, addr: u16, count: usize) -> Option<u32> {
        let end = u32::from(addr) + count as u32;
        let mut at = u32::from(addr);
        while at < end {
            let Some((index, _)) = self.locate(at) else {
                return Some(at);
            };
            at = self.blocks[index].end().min(end);
        }
        None
    }

    /// The values at `addr..addr+count`, or `None` if any address is missing.
    pub(crate) fn read(&self, addr: u16, count: usize) -> Option<Vec<T>> {
        let end = u32::from(addr) + count as u32;
        let mut out = Vec::with_capacity(count);
        let mut at = u32::from(addr);
        while at < end {
            let (index, offset) = self.locate(at)?;
            let block = &self.blocks[index];
            let stop = block.end().min(end);
            let take = (stop - at) as usize;
            out.extend_from_slice(&block.values[offset..offset + take]);
            at = stop;
        }
        Some(out)
    }

    /// One value.
    pub(crate) fn get(&self, addr: u16) -> Option<T> {
        let (index, offset) = self.locate(u32::from(addr))?;
        Some(self.blocks[index].values[offset])
    }

    /// Writes `values` at `addr..`; all addresses must exist, else nothing is
    /// written and the first missing address is returned.
    pub(crate) fn write(&mut self, addr: u16, values: &[T]) -> Result<(), u32> {
        if let Some(missing) = self.first_missing(addr, values.len()) {
            return Err(missing);
        }
        for (i, value) in values.iter().enumerate() {
            let at = u32::from(addr) + i as u32;
            if let Some((index, offset)) = self.locate(at) {
                self.blocks[index].values[offset] = *value;
            }
        }
        Ok(())
    }

    /// Number of defined addresses.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.values.len()).sum()
    }
}

impl Table<u16> {
    fn tick(&mut self, tick: u64) {
        for block in &mut self.blocks {
            match block.tick {
                None => {}
                Some(TickKind::Counter) => {
                    for value in &mut block.values {
                        *value = value.wrapping_add(1);
                    }
                }
                Some(TickKind::Sine) => {
                    for (offset, value) in block.values.iter_mut().enumerate() {
                        *value = sine_value(tick, offset);
                    }
                }
            }
        }
    }
}

/// Names of the identification objects settable by name (object id, key).
pub(crate) const IDENTITY_FIELDS: [(u8, &str); 7] = [
    (0x00, "vendor_name"),
    (0x01, "product_code"),
    (0x02, "revision"),
    (0x03, "vendor_url"),
    (0x04, "product_name"),
    (0x05, "model_name"),
    (0x06, "user_application_name"),
];

/// Longest object value: one object must fit in one response PDU
/// (253 bytes − 7 header bytes − 2 object header bytes).
pub(crate) const MAX_OBJECT_LEN: usize = 244;

/// Parses an identification field name (`vendor_name`...) or an object id
/// (`0x80`, `128`) into the object id.
pub(crate) fn identity_object_id(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.as_str();
    if let Some((id, _)) = IDENTITY_FIELDS.iter().find(|(_, key)| *key == lower) {
        return Some(*id);
    }
    match lower {
        "major_minor_revision" => Some(0x02),
        _ => parse_u8(lower),
    }
}

fn parse_u8(text: &str) -> Option<u8> {
    match text.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Read Device Identification objects, and whether FC 43 is answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Identity {
    pub(crate) enabled: bool,
    pub(crate) objects: BTreeMap<u8, Vec<u8>>,
}

impl Identity {
    /// Conformity level byte: individual access is supported (bit 0x80),
    /// level by the highest category present.
    pub(crate) fn conformity_level(&self) -> u8 {
        let highest = self.objects.keys().next_back().copied().unwrap_or(0);
        match highest {
            0x80..=0xFF => 0x83,
            0x03..=0x7F => 0x82,
            _ => 0x81,
        }
    }
}

/// Device quirks: deviations from a well-behaved device, for testing the client's error
/// handling (switched with `quirk NAME on|off`, or set in the state file's `[quirks]`).
pub type Quirks = QuirkSet<Quirk>;

/// How late the `slow` quirk answers.
pub const SLOW_ANSWER_MS: u64 = 50;

/// A device quirk, switchable at run time (`quirk NAME on|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quirk {
    /// `stall`: accept requests but never answer (for timeout tests).
    Stall,
    /// `short-read`: answer register/bit reads with one element (register; data byte for
    /// bits) fewer than asked: a malformed answer.
    ShortRead,
    /// `limit-64`: refuse register reads of more than 64 with exception 0x03, like some
    /// small devices.
    Limit64,
    /// `busy`: answer every request with exception 0x06 (server device busy).
    Busy,
    /// `refuse-reads`: answer every table read with exception 0x02, like a device whose
    /// register map changed under the reader.
    RefuseReads,
    /// `conformity-83`: report identification conformity level 0x83 (extended objects)
    /// without extended objects, like pymodbus's server: a client asking for the extended
    /// stream then gets the regular objects again (the specification's restart at object 0).
    Conformity83,
    /// `slow`: answer every request [`SLOW_ANSWER_MS`] late: a healthy but slow device, for
    /// whole-capture deadlines.
    Slow,
}

impl QuirkName for Quirk {
    const ALL: &'static [Quirk] = &[
        Quirk::Stall,
        Quirk::ShortRead,
        Quirk::Limit64,
        Quirk::Busy,
        Quirk::RefuseReads,
        Quirk::Conformity83,
        Quirk::Slow,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Stall => "stall",
            Self::ShortRead => "short-read",
            Self::Limit64 => "limit-64",
            Self::Busy => "busy",
            Self::RefuseReads => "refuse-reads",
            Self::Conformity83 => "conformity-83",
            Self::Slow => "slow",
        }
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Default `max_connections`: more than any sane client needs, few enough
/// that a connection flood is refused like a real device would.
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;

/// The complete state of a simulated Modbus device: unit id, identity, the
/// four data tables, tick settings and quirks.
///
/// Built from a TOML state file (see the [`modbus`](super) module for the
/// format) or [`press_demo`](Self::press_demo); handed to
/// [`ModbusSimulator::start`](super::ModbusSimulator::start).
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusState {
    pub(crate) unit_id: u8,
    pub(crate) tick_ms: u64,
    pub(crate) max_connections: usize,
    pub(crate) identity: Identity,
    pub(crate) holding: Table<u16>,
    pub(crate) input: Table<u16>,
    pub(crate) coils: Table<bool>,
    pub(crate) discrete: Table<bool>,
    pub(crate) quirks: Quirks,
    pub(crate) ticks: u64,
}

/// The embedded default state (a small hydraulic press).
pub const PRESS_DEMO_TOML: &str = include_str!("../../states/modbus-press.toml");

impl ModbusState {
    /// Parses a state file's text.
    ///
    /// # Errors
    /// [`StateError::Toml`] for syntax errors, unknown keys or wrong types;
    /// [`StateError::Invalid`] for overlapping blocks and out-of-range values.
    pub fn from_toml(text: &str) -> Result<Self, StateError> {
        let raw: RawState = toml::from_str(text)?;
        raw.build()
    }

    /// Reads and parses a state file.
    ///
    /// # Errors
    /// [`StateError::Io`] if the file cannot be read, else as
    /// [`from_toml`](Self::from_toml).
    pub fn load(path: &Path) -> Result<Self, StateError> {
        crate::runtime::load_state(path, Self::from_toml)
    }

    /// The embedded default state (`simulators/states/modbus-press.toml`): a
    /// hydraulic press with identity, a 50-register recipe in holding 0..=49,
    /// ticking input registers 0..=9, 16 coils and 16 discrete inputs. Used
    /// by `otdrift demo` and `otdrift sim modbus` without `--state`.
    #[must_use]
    pub fn press_demo() -> Self {
        Self::from_toml(PRESS_DEMO_TOML).expect("the embedded modbus-press.toml is valid (tested)")
    }

    /// The unit id this device answers (besides 0 and 255).
    #[must_use]
    pub fn unit_id(&self) -> u8 {
        self.unit_id
    }

    /// Tick period in milliseconds (0: only on the `tick` command).
    #[must_use]
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Replaces the tick period, e.g. to 0 so a test controls ticks itself.
    #[must_use]
    pub fn with_tick_ms(mut self, tick_ms: u64) -> Self {
        self.tick_ms = tick_ms;
        self
    }

    /// The quirks the device starts with.
    #[must_use]
    pub fn quirks(&self) -> Quirks {
        self.quirks.clone()
    }

    /// Holding register value, if the address exists.
    #[must_use]
    pub fn holding(&self, addr: u16) -> Option<u16> {
        self.holding.get(addr)
    }

    /// Input register value, if the address exists.
    #[must_use]
    pub fn input(&self, addr: u16) -> Option<u16> {
        self.input.get(addr)
    }

    /// Coil value, if the address exists.
    #[must_use]
    pub fn coil(&self, addr: u16) -> Option<bool> {
        self.coils.get(addr)
    }

    /// Discrete input value, if the address exists.
    #[must_use]
    pub fn discrete(&self, addr: u16) -> Option<bool> {
        self.discrete.get(addr)
    }

    /// Identification object value (`0x00` vendor name...), if defined
    /// (whether or not FC 43 is currently answered).
    #[must_use]
    pub fn identity_object(&self, id: u8) -> Option<String> {
        self.identity
            .objects
            .get(&id)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    }

    /// Advances every ticking block once.
    pub(crate) fn tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        let tick = self.ticks;
        self.holding.tick(tick);
        self.input.tick(tick);
    }
}

// ---------------------------------------------------------------- parsing

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    unit_id: Option<u8>,
    tick_ms: Option<u64>,
    max_connections: Option<usize>,
    identity: Option<RawIdentity>,
    quirks: Option<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    holding: Vec<RawBlock>,
    #[serde(default)]
    input: Vec<RawBlock>,
    #[serde(default)]
    coil: Vec<RawBlock>,
    #[serde(default)]
    discrete: Vec<RawBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    vendor_name: String,
    product_code: String,
    revision: String,
    vendor_url: Option<String>,
    product_name: Option<String>,
    model_name: Option<String>,
    user_application_name: Option<String>,
    #[serde(default)]
    extended: BTreeMap<String, String>,
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    start: u16,
    values: Option<Vec<toml::Value>>,
    count: Option<u32>,
    fill: Option<toml::Value>,
    tick: Option<String>,
}

impl RawState {
    fn build(self) -> Result<ModbusState, StateError> {
        let identity = match self.identity {
            None => Identity::default(),
            Some(raw) => raw.build()?,
        };
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid("max_connections must be at least 1"));
        }
        Ok(ModbusState {
            unit_id: self.unit_id.unwrap_or(1),
            tick_ms: self.tick_ms.unwrap_or(1000),
            max_connections,
            identity,
            holding: build_table(TableKind::Holding, self.holding, register_value, sine_start)?,
            input: build_table(TableKind::Input, self.input, register_value, sine_start)?,
            coils: build_table(TableKind::Coil, self.coil, bit_value, |_| None)?,
            discrete: build_table(TableKind::Discrete, self.discrete, bit_value, |_| None)?,
            quirks: Quirks::default(),
            ticks: 0,
        })
        .and_then(|mut state| {
            if let Some(table) = &self.quirks {
                apply_file_quirks::<super::ModbusSimulator>(&mut state, table).map_err(invalid)?;
            }
            Ok(state)
        })
    }
}

impl RawIdentity {
    fn build(self) -> Result<Identity, StateError> {
        let mut objects = BTreeMap::new();
        let named = [
            (0x00, Some(self.vendor_name)),
            (0x01, Some(self.product_code)),
            (0x02, Some(self.revision)),
            (0x03, self.vendor_url),
            (0x04, self.product_name),
            (0x05, self.model_name),
            (0x06, self.user_application_name),
        ];
        for (id, value) in named {
            if let Some(value) = value {
                objects.insert(id, value.into_bytes());
            }
        }
        for (key, value) in self.extended {
            let id = parse_u8(&key.to_ascii_lowercase())
                .filter(|id| *id >= 0x80)
                .ok_or_else(|| {
                    invalid(format!(
                        "identity.extended key {key:?} must be an object id 0x80..=0xFF"
                    ))
                })?;
            objects.insert(id, value.into_bytes());
        }
        for (id, value) in &objects {
            if value.len() > MAX_OBJECT_LEN {
                return Err(invalid(format!(
                    "identity object 0x{id:02X} is {} bytes; at most {MAX_OBJECT_LEN} fit in a response",
                    value.len()
                )));
            }
        }
        Ok(Identity {
            enabled: self.enabled.unwrap_or(true),
            objects,
        })
    }
}

fn register_value(value: &toml::Value) -> Result<u16, String> {
    match value {
        toml::Value::Integer(n) => {
            let n = *n;
            if let Ok(v) = u16::try_from(n) {
                Ok(v)
            } else if let Ok(v) = i16::try_from(n) {
                Ok(v as u16)
            } else {
                Err(format!(
                    "{n} does not fit a 16-bit register (-32768..=65535)"
                ))
            }
        }
        other => Err(format!("register values are integers, not {other}")),
    }
}

fn sine_start(offset: usize) -> Option<u16> {
    Some(sine_value(0, offset))
}

fn bit_value(value: &toml::Value) -> Result<bool, String> {
    match value {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::Integer(0) => Ok(false),
        toml::Value::Integer(1) => Ok(true),
        other => Err(format!("bit values are true/false or 0/1, not {other}")),
    }
}

fn build_table<T: Copy + Default>(
    kind: TableKind,
    raw: Vec<RawBlock>,
    convert: fn(&toml::Value) -> Result<T, String>,
    sine_start: fn(usize) -> Option<T>,
) -> Result<Table<T>, StateError> {
    let name = kind.name();
    let registers = matches!(kind, TableKind::Holding | TableKind::Input);
    let mut blocks = Vec::with_capacity(raw.len());
    for (index, block) in raw.into_iter().enumerate() {
        let at = format!("[[{name}]] #{} (start = {})", index + 1, block.start);
        let explicit_values = block.values.is_some();
        let mut values = Vec::new();
        for value in block.values.unwrap_or_default() {
            values.push(convert(&value).map_err(|e| invalid(format!("{at}: {e}")))?);
        }
        let fill = match &block.fill {
            Some(value) => convert(value).map_err(|e| invalid(format!("{at}: fill: {e}")))?,
            None => T::default(),
        };
        if let Some(count) = block.count {
            let count = count as usize;
            if count < values.len() {
                return Err(invalid(format!(
                    "{at}: count = {count} is less than the {} values given",
                    values.len()
                )));
            }
            values.resize(count, fill);
        } else if block.fill.is_some() {
            return Err(invalid(format!("{at}: fill needs count")));
        }
        if values.is_empty() {
            return Err(invalid(format!(
                "{at}: needs values or count (at least one address)"
            )));
        }
        let end = u32::from(block.start) + values.len() as u32;
        if end > 0x1_0000 {
            return Err(invalid(format!(
                "{at}: ends at address {}, past 65535",
                end - 1
            )));
        }
        let tick = match block.tick.as_deref() {
            None => None,
            Some(_) if !registers => {
                return Err(invalid(format!(
                    "{at}: tick applies to register blocks only"
                )));
            }
            Some("counter") => Some(TickKind::Counter),
            Some("sine") => Some(TickKind::Sine),
            Some(other) => {
                return Err(invalid(format!(
                    "{at}: tick = {other:?}; expected \"counter\" or \"sine\""
                )));
            }
        };
        let mut block = Block {
            start: block.start,
            values,
            tick,
        };
        if tick == Some(TickKind::Sine) && !explicit_values {
            // Start on the wave (tick 0) rather than at a flat 0.
            for (offset, value) in block.values.iter_mut().enumerate() {
                if let Some(start) = sine_start(offset) {
                    *value = start;
                }
            }
        }
        blocks.push(block);
    }
    blocks.sort_by_key(|b| b.start);
    for pair in blocks.windows(2) {
        if pair[0].end() > u32::from(pair[1].start) {
            return Err(invalid(format!(
                "[[{name}]] blocks overlap: {}..={} and {}..={}",
                pair[0].start,
                pair[0].end() - 1,
                pair[1].start,
                pair[1].end() - 1
            )));
        }
    }
    Ok(Table { blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn press_demo_parses() {
        let state = ModbusState::from_toml(PRESS_DEMO_TOML).expect("press demo parses");
        assert_eq!(state.holding.len(), 50);
        assert!(state.holding.read(0, 50).is_some());
        assert_eq!(state.input.len(), 10);
        assert!(state.input.blocks.iter().all(|b| b.tick.is_some()));
        assert_eq!(state.coils.len(), 16);
        assert_eq!(state.discrete.len(), 16);
        assert!(state.identity.enabled);
        assert_eq!(state.identity_object(0).as_deref(), Some("otdrift"));
    }

    #[test]
    fn blocks_count_fill_and_gaps() {
        let state = ModbusState::from_toml(
            "[[holding]]\nstart = 10\nvalues = [1, -1]\ncount = 4\nfill = 7\n\
             [[holding]]\nstart = 14\nvalues = [9]\n[[holding]]\nstart = 100\ncount = 2\n",
        )
        .expect("state parses");
        assert_eq!(state.unit_id(), 1);
        assert_eq!(state.holding.read(10, 5), Some(vec![1, 0xFFFF, 7, 7, 9]));
        assert_eq!(state.holding.read(13, 3), None);
        assert_eq!(state.holding.first_missing(13, 3), Some(15));
        assert_eq!(state.holding.first_missing(9, 1), Some(9));
        assert_eq!(state.holding.read(100, 2), Some(vec![0, 0]));
        assert_eq!(state.holding.get(65535), None);
    }

    #[test]
    fn refuses_bad_files() {
        let bad = [
            "[[holding]]\nstart = 0\nvalues = [1, 2]\n[[holding]]\nstart = 1\nvalues = [3]\n",
            "[[holding]]\nstart = 0\nvalues = [70000]\n",
            "[[holding]]\nstart = 65535\nvalues = [1, 2]\n",
            "[[holding]]\nstart = 0\n",
            "[[coil]]\nstart = 0\nvalues = [2]\n",
            "[[coil]]\nstart = 0\nvalues = [true]\ntick = \"counter\"\n",
            "[[input]]\nstart = 0\nvalues = [1]\ntick = \"square\"\n",
            "unit = 1\n",
            "[identity]\nvendor_name = \"x\"\n",
            "[identity]\nvendor_name = \"x\"\nproduct_code = \"y\"\nrevision = \"1\"\n[identity.extended]\n\"0x10\" = \"z\"\n",
        ];
        for text in bad {
            assert!(ModbusState::from_toml(text).is_err(), "accepted: {text}");
        }
    }

    #[test]
    fn ticks() {
        let mut state = ModbusState::from_toml(
            "[[input]]\nstart = 0\nvalues = [65535, 5]\ntick = \"counter\"\n\
             [[input]]\nstart = 2\ncount = 3\ntick = \"sine\"\n[[input]]\nstart = 5\nvalues = [42]\n",
        )
        .expect("state parses");
        state.tick();
        assert_eq!(
            state.input.read(0, 6),
            Some(vec![0, 6, 1105, 1208, 1309, 42])
        );
        for tick in 0..200 {
            for offset in 0..70 {
                assert!(sine_value(tick, offset) <= 2000);
            }
        }
        assert_eq!(sine_value(15, 0), 2000);
        assert_eq!(sine_value(45, 0), 0);
    }
}
