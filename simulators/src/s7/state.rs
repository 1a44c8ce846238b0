//! The simulated S7 CPU's state: parsed from the TOML state file (format documented on the
//! [`s7`](super) module), changed by commands and ticks.

use std::{collections::BTreeMap, fmt};

pub use crate::runtime::StateError;
pub(crate) use crate::runtime::invalid;
use crate::runtime::{QuirkName, QuirkSet};

/// The largest DB snap7's server can hold: it keeps sizes in 16 bits.
pub const MAX_DB_SIZE: usize = 65535;

/// The embedded demo CPU: an S7-315-2 PN/DP filling line (see `simulators/states/s7-line3.toml`).
pub const DEMO_TOML: &str = include_str!("../../states/s7-line3.toml");

/// How a ticking DB's bytes move on each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickKind {
    /// Every byte adds 1 (wrapping).
    Counter,
    /// Byte `i` becomes `128 + round(127·sin(2π·(n+i)/60))` on tick `n`.
    Sine,
}

impl TickKind {
    pub(crate) fn parse(text: &str) -> Result<Self, StateError> {
        match text {
            "counter" => Ok(Self::Counter),
            "sine" => Ok(Self::Sine),
            other => Err(invalid(format!(
                "tick {other:?}: expected \"counter\" or \"sine\""
            ))),
        }
    }
}

pub(crate) fn sine_byte(tick: u64, offset: usize) -> u8 {
    let phase = (tick.wrapping_add(offset as u64) % 60) as f64;
    let value = 128.0 + (127.0 * (std::f64::consts::TAU * phase / 60.0).sin()).round();
    value.clamp(0.0, 255.0) as u8
}

/// The program block types the simulator holds besides DBs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProgramType {
    /// Organization block.
    Ob,
    /// Function block.
    Fb,
    /// Function.
    Fc,
    /// System data block.
    Sdb,
}

impl ProgramType {
    /// S7comm's ASCII block type code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Ob => 0x38,
            Self::Fb => 0x45,
            Self::Fc => 0x43,
            Self::Sdb => 0x42,
        }
    }

    /// The sub-block type in block info.
    #[must_use]
    pub fn sub_type(self) -> u8 {
        match self {
            Self::Ob => 0x08,
            Self::Fb => 0x0E,
            Self::Fc => 0x0C,
            Self::Sdb => 0x0B,
        }
    }

    /// The name in paths and commands.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ob => "OB",
            Self::Fb => "FB",
            Self::Fc => "FC",
            Self::Sdb => "SDB",
        }
    }

    /// Parses `OB`, `FB`, `FC` or `SDB` (any case).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "OB" => Some(Self::Ob),
            "FB" => Some(Self::Fb),
            "FC" => Some(Self::Fc),
            "SDB" => Some(Self::Sdb),
            _ => None,
        }
    }

    /// From S7comm's ASCII block type code.
    #[must_use]
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Ob, Self::Fb, Self::Fc, Self::Sdb]
            .into_iter()
            .find(|t| t.code() == code)
    }
}

/// Block header fields that block info reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// Block name (8 characters).
    pub name: String,
    /// Family (8 characters).
    pub family: String,
    /// Author (8 characters).
    pub author: String,
    /// Version, major and minor (0..=15 each).
    pub version: (u8, u8),
    /// Language code (1 STL, 2 LAD, 3 FBD, 4 SCL, 5 DB, 6 GRAPH, 7 SDB).
    pub language: u8,
    /// Code timestamp: milliseconds since midnight, days since 1984-01-01.
    pub code_time: (u32, u16),
    /// Interface timestamp.
    pub interface_time: (u32, u16),
    /// Local data bytes.
    pub local_data: u16,
}

/// A data block: its metadata; its bytes live in snap7's server (see `S7SimHandle::db`).
#[derive(Debug, Clone, PartialEq)]
pub struct DbState {
    /// Size in bytes (1..=65535).
    pub size: usize,
    /// The bytes it was loaded with (its "initial values", part of its checksum).
    pub initial: Vec<u8>,
    /// How its bytes move on a tick, if they do.
    pub tick: Option<TickKind>,
    /// Block info fields.
    pub meta: BlockMeta,
}

/// A program block (OB, FB, FC, SDB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramBlock {
    /// Block info fields.
    pub meta: BlockMeta,
    /// The MC7 code.
    pub code: Vec<u8>,
}

/// Texts of SZL 0x0011 and 0x001C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Order number (MLFB), SZL 0x0011 index 1 and 6.
    pub order_number: String,
    /// Module version, SZL 0x0011 index 1.
    pub module_version: u16,
    /// Hardware version, SZL 0x0011 index 6.
    pub hardware_version: u16,
    /// Firmware version `V<a>.<b>.<c>`, SZL 0x0011 index 7.
    pub firmware: (u8, u8, u8, u8),
    /// SZL 0x001C fields by index (1 system name, 2 module name, 3 plant id, 4 copyright,
    /// 5 serial number, 7 module type name, 8 memory card serial, 11 location).
    pub components: BTreeMap<u16, String>,
}

/// Identity field names of the state file and the `identity` command, with their SZL 0x001C
/// index.
pub const COMPONENT_FIELDS: [(&str, u16); 8] = [
    ("system_name", 1),
    ("module_name", 2),
    ("plant_id", 3),
    ("copyright", 4),
    ("serial_number", 5),
    ("module_type_name", 7),
    ("memory_card_serial", 8),
    ("location", 11),
];

/// Mode selector positions (SZL 0x0232 `bart_sch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// RUN.
    Run,
    /// RUN-P.
    RunP,
    /// STOP.
    Stop,
    /// MRES.
    Mres,
    /// No selector (S7-1200/1500 style).
    None,
}

impl Selector {
    /// Parses `run`, `run-p`, `stop`, `mres` or `none`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "run" => Some(Self::Run),
            "run-p" | "run_p" => Some(Self::RunP),
            "stop" => Some(Self::Stop),
            "mres" => Some(Self::Mres),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// SZL 0x0232's code.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::None => 0,
            Self::Run => 1,
            Self::RunP => 2,
            Self::Stop => 3,
            Self::Mres => 4,
        }
    }
}

/// Device quirks: how real devices deviate, for testing the client. Each can be set in the
/// state file's `[quirks]` and switched with `quirk NAME on|off`.
pub type Quirks = QuirkSet<Quirk>;

/// A device quirk, switchable at run time (`quirk NAME on|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quirk {
    /// Accept connections and requests, never answer.
    Stall,
    /// Refuse block functions (list, list of type, block info) with error 0x8104, like an
    /// S7-1200/1500.
    RefuseBlocks,
    /// Close the session on any block function request.
    DropOnBlocks,
    /// Refuse Read/Write Var with header error 0x8104, like an S7-1200/1500 with PUT/GET off.
    PutGetOff,
    /// Answer SZL reads without the 8-byte SZL header (records only).
    SzlNoHeader,
    /// Answer SZL reads with a record count of 0.
    SzlNoCount,
    /// Answer every SZL read with the SZL 0x0011 list, whatever was asked.
    SzlPlaceholder,
    /// Answer every block info request with the same all-zero record.
    BlockinfoPlaceholder,
    /// Let snap7's server answer everything itself (its fixed identity, DB-only block
    /// functions, refused uploads): a plain snap7 peer.
    Snap7Only,
    /// Answer every Read Var item with return code 0x0A (object does not exist), although
    /// the block list and block info still show the DB.
    RefuseDbRead,
    /// Answer every Read Var item with return code 0x05 (address out of range), although
    /// the range lies within the DB block info describes.
    RefuseDbRange,
    /// Answer every Read Var item with return code 0x03 (access to the object not allowed).
    DenyDbRead,
    /// Answer SZL 0x0011, 0x001C and 0x0232 with a list header claiming one record more than
    /// the answer carries.
    SzlOverclaim,
    /// Refuse SZL 0x0011 and 0x001C (identity) with error 0xD401 (SZL ID unknown).
    RefuseIdentity,
    /// Refuse SZL 0x0232 with error 0xD401, like S7-1200/1500 firmware without that list.
    NoProtectionSzl,
    /// Refuse list blocks of type with error 0x8104 while list blocks still counts the blocks.
    RefuseBlockList,
    /// Refuse block info with error 0xD209 (block not found) for blocks the list still shows.
    RefuseBlockInfo,
    /// Answer every request after Setup Communication with error 0x8302 (too few resources
    /// available): a CPU busy serving other connections.
    Busy,
    /// SZL 0x0232 index 4 keeps answering the configuration checksums the CPU started with,
    /// whatever is downloaded: a CPU whose checksums cannot be trusted.
    StaleProgramChecksum,
    /// Refuse new ISO connections with COTP disconnect reason 0x81 (congestion at connect
    /// request time): a CPU whose connection resources are all in use.
    Congested,
}

impl QuirkName for Quirk {
    const ALL: &'static [Quirk] = &[
        Quirk::Stall,
        Quirk::RefuseBlocks,
        Quirk::DropOnBlocks,
        Quirk::PutGetOff,
        Quirk::SzlNoHeader,
        Quirk::SzlNoCount,
        Quirk::SzlPlaceholder,
        Quirk::BlockinfoPlaceholder,
        Quirk::Snap7Only,
        Quirk::RefuseDbRead,
        Quirk::RefuseDbRange,
        Quirk::DenyDbRead,
        Quirk::SzlOverclaim,
        Quirk::RefuseIdentity,
        Quirk::NoProtectionSzl,
        Quirk::RefuseBlockList,
        Quirk::RefuseBlockInfo,
        Quirk::Busy,
        Quirk::Congested,
        Quirk::StaleProgramChecksum,
    ];

    fn name(self) -> &'static str {
        match self {
            Quirk::Stall => "stall",
            Quirk::RefuseBlocks => "refuse-blocks",
            Quirk::DropOnBlocks => "drop-on-blocks",
            Quirk::PutGetOff => "put-get-off",
            Quirk::SzlNoHeader => "szl-no-header",
            Quirk::SzlNoCount => "szl-no-count",
            Quirk::SzlPlaceholder => "szl-placeholder",
            Quirk::BlockinfoPlaceholder => "blockinfo-placeholder",
            Quirk::Snap7Only => "snap7-only",
            Quirk::RefuseDbRead => "refuse-db-read",
            Quirk::RefuseDbRange => "refuse-db-range",
            Quirk::DenyDbRead => "deny-db-read",
            Quirk::SzlOverclaim => "szl-overclaim",
            Quirk::RefuseIdentity => "refuse-identity",
            Quirk::NoProtectionSzl => "no-protection-szl",
            Quirk::RefuseBlockList => "refuse-block-list",
            Quirk::RefuseBlockInfo => "refuse-block-info",
            Quirk::Busy => "busy",
            Quirk::Congested => "congested",
            Quirk::StaleProgramChecksum => "stale-program-checksum",
        }
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The complete state of a simulated S7 CPU. Built from a TOML state file (format on the
/// [`s7`](super) module) or [`S7State::demo`]; handed to
/// [`S7Simulator::start`](super::S7Simulator::start).
#[derive(Debug, Clone, PartialEq)]
pub struct S7State {
    /// Rack the CPU answers for.
    pub rack: u16,
    /// Slot the CPU answers for.
    pub slot: u16,
    /// The largest PDU the CPU grants (240..=960).
    pub max_pdu: u16,
    /// Milliseconds between ticks of ticking DBs; 0 = only on `tick`.
    pub tick_ms: u64,
    /// Whether the CPU is in RUN (else STOP).
    pub running: bool,
    /// Identity answered in SZL 0x0011 and 0x001C.
    pub identity: Identity,
    /// Protection level set in the parameters (0..=3).
    pub protection_level: u16,
    /// Mode selector position.
    pub selector: Selector,
    /// SFC and SFB counts in the block list (firmware blocks).
    pub system_blocks: (u16, u16),
    /// Data blocks by number.
    pub dbs: BTreeMap<u16, DbState>,
    /// Program blocks by type and number.
    pub blocks: BTreeMap<(ProgramType, u16), ProgramBlock>,
    /// Quirks in force.
    pub quirks: Quirks,
    /// Ticks so far.
    pub ticks: u64,
    /// The configuration checksums when the state was built (what `stale-program-checksum`
    /// keeps answering).
    pub started_checksums: [u16; 4],
}

/// Days since 1984-01-01 of a civil date.
pub(crate) fn days_since_1984(year: i64, month: u32, day: u32) -> Option<u16> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days_since_1970 = era * 146_097 + doe - 719_468;
    u16::try_from(days_since_1970 - 5113).ok()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.mmm]` into block info's (ms since midnight, days since 1984).
pub fn parse_block_time(text: &str) -> Option<(u32, u16)> {
    let (date, time) = text.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, ms) = match time.split_once('.') {
        Some((hms, ms)) => (hms, ms.parse::<u32>().ok().filter(|ms| *ms < 1000)?),
        None => (time, 0),
    };
    let mut t = hms.split(':');
    let h: u32 = t.next()?.parse().ok()?;
    let m: u32 = t.next()?.parse().ok()?;
    let s: u32 = t.next()?.parse().ok()?;
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some((
        ((h * 60 + m) * 60 + s) * 1000 + ms,
        days_since_1984(year, month, day)?,
    ))
}

pub(crate) fn language_code(text: &str) -> Option<u8> {
    Some(match text.to_ascii_uppercase().as_str() {
        "STL" | "AWL" => 1,
        "LAD" | "KOP" => 2,
        "FBD" | "FUP" => 3,
        "SCL" => 4,
        "DB" => 5,
        "GRAPH" => 6,
        "SDB" => 7,
        _ => return None,
    })
}

/// The default code timestamp: 2024-03-01 08:00.
pub(crate) const DEFAULT_TIME: (u32, u16) = (28_800_000, 14_670);

/// Deterministic MC7-like code bytes for a block without explicit code.
pub(crate) fn generated_code(
    kind: ProgramType,
    number: u16,
    size: usize,
    revision: u32,
) -> Vec<u8> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64
        ^ (u64::from(kind.code()) << 40)
        ^ (u64::from(number) << 16)
        ^ u64::from(revision);
    (0..size)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

impl DbState {
    /// A DB of `size` bytes starting with `values`, the rest `fill`.
    pub(crate) fn new(
        number: u16,
        size: usize,
        values: &[u8],
        fill: u8,
        tick: Option<TickKind>,
        meta: BlockMeta,
    ) -> Result<Self, StateError> {
        if size == 0 || size > MAX_DB_SIZE {
            return Err(invalid(format!(
                "DB{number}: size {size} is outside 1..={MAX_DB_SIZE}"
            )));
        }
        if values.len() > size {
            return Err(invalid(format!(
                "DB{number}: {} values do not fit {size} bytes",
                values.len()
            )));
        }
        let mut initial = values.to_vec();
        initial.resize(size, fill);
        Ok(DbState {
            size,
            initial,
            tick,
            meta,
        })
    }

    /// A plain DB as the `db add` command makes it.
    pub(crate) fn plain(number: u16, size: usize, fill: u8) -> Result<Self, StateError> {
        let meta = BlockMeta {
            name: format!("DB{number}").chars().take(8).collect(),
            family: String::new(),
            author: "OTDRIFT".into(),
            version: (0, 1),
            language: 5,
            code_time: DEFAULT_TIME,
            interface_time: DEFAULT_TIME,
            local_data: 0,
        };
        Self::new(number, size, &[], fill, None, meta)
    }
}

/// CRC-16/CCITT-FALSE, the simulator's block checksum.
pub(crate) fn crc16(bytes: impl IntoIterator<Item = u8>) -> u16 {
    let mut crc = 0xFFFFu16;
    for byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

impl BlockMeta {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for text in [&self.name, &self.family, &self.author] {
            out.extend_from_slice(text.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(&[self.version.0, self.version.1, self.language]);
        out.extend_from_slice(&self.interface_time.0.to_be_bytes());
        out.extend_from_slice(&self.interface_time.1.to_be_bytes());
        out
    }
}

impl S7State {
    /// The embedded demo CPU (an S7-315-2 PN/DP on a filling line): DB1 recipe, DB2 ticking
    /// process values, DB3 limits, OB1/OB35/OB100, FB1, FC1/FC2 and SDBs.
    #[must_use]
    pub fn demo() -> Self {
        match Self::from_toml(DEMO_TOML) {
            Ok(state) => state,
            // The embedded file is checked by a unit test; an empty CPU is the only fallback
            // that cannot fail.
            Err(_) => Self::from_toml("").unwrap_or_else(|_| unreachable_state()),
        }
    }

    /// A block's checksum as block info reports it: over the block's header fields and its
    /// code (program blocks) or its size and initial values (DBs). Changing a DB's bytes at
    /// run time does not change it, as on a real CPU.
    #[must_use]
    pub fn db_checksum(&self, number: u16) -> Option<u16> {
        let db = self.dbs.get(&number)?;
        let mut bytes = db.meta.bytes();
        bytes.extend_from_slice(&(db.size as u32).to_be_bytes());
        bytes.extend_from_slice(&db.initial);
        Some(crc16(bytes))
    }

    /// A program block's checksum.
    #[must_use]
    pub fn block_checksum(&self, kind: ProgramType, number: u16) -> Option<u16> {
        let block = self.blocks.get(&(kind, number))?;
        let mut bytes = block.meta.bytes();
        bytes.extend_from_slice(&block.code);
        Some(crc16(bytes))
    }

    /// The version IDs/checksums SZL 0x0232 index 4 reports (`ken_ver1_hw`, `ken_ver2_hw`,
    /// `ken_ver1_awp`, `ken_ver2_awp`): two CRCs over the checksums of the SDBs (the
    /// hardware configuration) and two over those of every other block (the user program),
    /// so that a download, a deleted block or a resized DB moves them and a DB's values do
    /// not. With the `stale-program-checksum` quirk they are those of the state the simulator
    /// started with.
    #[must_use]
    pub fn configuration_checksums(&self) -> [u16; 4] {
        if self.quirks.get(Quirk::StaleProgramChecksum) {
            return self.started_checksums;
        }
        self.compute_checksums()
    }

    pub(crate) fn compute_checksums(&self) -> [u16; 4] {
        let mut hardware = Vec::new();
        let mut program = Vec::new();
        for number in self.dbs.keys() {
            let sum = self.db_checksum(*number).unwrap_or(0);
            program.extend_from_slice(&[0x41]);
            program.extend_from_slice(&number.to_be_bytes());
            program.extend_from_slice(&sum.to_be_bytes());
        }
        for (kind, number) in self.blocks.keys() {
            let sum = self.block_checksum(*kind, *number).unwrap_or(0);
            let out = if *kind == ProgramType::Sdb {
                &mut hardware
            } else {
                &mut program
            };
            out.push(kind.code());
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&sum.to_be_bytes());
        }
        let reversed = |bytes: &[u8]| bytes.iter().rev().copied().collect::<Vec<u8>>();
        [
            crc16(hardware.iter().copied()),
            crc16(reversed(&hardware)),
            crc16(program.iter().copied()),
            crc16(reversed(&program)),
        ]
    }

    /// The effective protection level: the parameterized level, raised to 2 while the
    /// selector is in RUN (an S7-300 key switch write-protects in RUN).
    #[must_use]
    pub fn effective_protection(&self) -> u16 {
        let by_switch = if self.selector == Selector::Run { 2 } else { 1 };
        self.protection_level.max(by_switch)
    }
}

pub(crate) fn unreachable_state() -> S7State {
    S7State {
        rack: 0,
        slot: 2,
        max_pdu: 960,
        tick_ms: 0,
        running: true,
        identity: Identity {
            order_number: String::new(),
            module_version: 0,
            hardware_version: 0,
            firmware: (b'V', 0, 0, 0),
            components: BTreeMap::new(),
        },
        protection_level: 1,
        selector: Selector::None,
        system_blocks: (0, 0),
        dbs: BTreeMap::new(),
        blocks: BTreeMap::new(),
        quirks: Quirks::default(),
        ticks: 0,
        started_checksums: [0; 4],
    }
}

pub(crate) fn check_component(field: &str, value: &str) -> Result<(), StateError> {
    if value.len() > 32 || !value.is_ascii() {
        return Err(invalid(format!(
            "identity.{field} {value:?} is not at most 32 ASCII characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_state_is_valid() {
        let state = S7State::from_toml(DEMO_TOML).expect("demo state");
        assert!(state.dbs.contains_key(&1));
        assert!(state.dbs.values().any(|db| db.tick.is_some()));
        assert!(state.blocks.contains_key(&(ProgramType::Ob, 1)));
    }

    #[test]
    fn every_quirk_has_a_file_key_and_a_switch() {
        let state = S7State::from_toml("[quirks]\nrefuse_db_read = true\ncongested = true\n")
            .expect("quirks table");
        assert!(state.quirks.get(Quirk::RefuseDbRead) && state.quirks.get(Quirk::Congested));
        assert!(!state.quirks.get(Quirk::Busy));
        let err = S7State::from_toml("[quirks]\nrefuse_everything = true\n").expect_err("typo");
        assert!(err.to_string().contains("unknown field"), "{err}");
        for &quirk in Quirk::ALL {
            let mut quirks = Quirks::default();
            quirks.set(quirk, true);
            assert!(quirks.get(quirk), "{quirk}");
            assert_eq!(
                Quirk::ALL.iter().filter(|q| quirks.get(**q)).count(),
                1,
                "{quirk} switches only itself"
            );
            assert_eq!(Quirk::parse(&quirk.name().replace('-', "_")), Some(quirk));
            let file = format!("[quirks]\n{} = true\n", quirk.name().replace('-', "_"));
            let parsed = S7State::from_toml(&file).expect("a quirk key");
            assert_eq!(parsed.quirks, quirks, "{file}");
        }
    }

    #[test]
    fn bad_state_files_are_refused_with_a_reason() {
        for (text, needle) in [
            ("[[db]]\nnumber = 1\nsize = 70000\n", "outside 1..=65535"),
            (
                "[[db]]\nnumber = 1\nsize = 2\nvalues = [1, 2, 3]\n",
                "do not fit",
            ),
            (
                "[[db]]\nnumber = 1\nsize = 2\n[[db]]\nnumber = 1\nsize = 2\n",
                "twice",
            ),
            (
                "[[block]]\ntype = \"DB\"\nnumber = 1\n",
                "OB, FB, FC or SDB",
            ),
            ("max_pdu = 100\n", "240..=960"),
            ("colour = 1\n", "unknown field"),
            ("[identity]\nfirmware = \"3.2\"\n", "like V3.2.6"),
        ] {
            let err = S7State::from_toml(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn block_times_parse() {
        assert_eq!(parse_block_time("1999-11-18T00:00:00"), Some((0, 5800)));
        assert_eq!(
            parse_block_time("2024-03-01T12:34:56.789"),
            Some((45_296_789, 14_670))
        );
        assert_eq!(parse_block_time("1983-12-31T00:00:00"), None);
    }
}
