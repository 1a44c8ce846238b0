//! The simulated TwinCAT PLC's state: device identity, ADS state, the PLC program (types,
//! symbols laid out in memory), `_AppInfo`, counters and quirks. The file format is
//! documented on the [`ads`](super) module.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::runtime::StateError;
pub(crate) use crate::runtime::invalid;
use crate::runtime::{QuirkName, QuirkSet};

use super::program::prim_of;
use super::types::{self, Ty, TypeDecl};

/// The index group of the simulated PLC's memory (TwinCAT's PLC data area).
pub const MEMORY_GROUP: u32 = 0x4040;
/// The symbol the application info lives in.
pub const APP_INFO_SYMBOL: &str = "TwinCAT_SystemInfoVarList._AppInfo";
/// The type of [`APP_INFO_SYMBOL`].
pub const APP_INFO_TYPE: &str = "PlcAppSystemInfo";
/// Default simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;
/// The demo state: a TwinCAT 3 bottle filler.
pub const FILLER_DEMO_TOML: &str = include_str!("../../states/ads-filler.toml");

/// Symbol flag: PERSISTENT.
pub(crate) const SYM_FLAG_PERSISTENT: u16 = 0x0001;

/// The behaviours that make the simulator act like particular real devices, or like a
/// device answering in ways a collector must not take as state (`quirk NAME on|off [ARGS]`,
/// or the state file's `[quirks]`).
pub type Quirks = QuirkSet<Quirk, QuirkArg>;

/// The symbol the `refuse-symbol` quirk refuses, and with which ADS error.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefusedSymbol {
    /// The symbol's name (ignoring case).
    pub name: String,
    /// The ADS error every read of it gets (default 0x710, symbol not found).
    #[serde(default = "symbol_not_found")]
    pub code: u32,
}

/// ADS error 0x701: service not supported (the default of `refuse-all`).
pub const SERVICE_NOT_SUPPORTED: u32 = 0x701;
/// ADS error 0x708: device busy.
pub const DEVICE_BUSY: u32 = 0x708;
/// ADS error 0x710: symbol not found (the default of `refuse-symbol`).
pub const SYMBOL_NOT_FOUND: u32 = 0x710;

pub(crate) fn symbol_not_found() -> u32 {
    SYMBOL_NOT_FOUND
}

/// The argument of the quirks that take one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuirkArg {
    /// `refuse-all`: the ADS error every request gets.
    Code(u32),
    /// `refuse-symbol`: the symbol refused, and how.
    Symbol(RefusedSymbol),
}

/// One quirk, for `set_quirk` and the `quirk` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quirk {
    /// Accept requests, never answer.
    Stall,
    /// Close the connection on the next request without answering (then switch off).
    DropSession,
    /// Refuse ReadDeviceInfo (ADS error 0x701).
    NoDeviceInfo,
    /// Refuse ReadState (ADS error 0x701).
    NoReadState,
    /// Refuse the upload info and the symbol and data-type uploads (0x701), like a small
    /// controller without a symbol upload.
    NoUpload,
    /// Refuse the symbol and data-type uploads (0x701) while the upload info still
    /// announces them: a device contradicting itself.
    NoTableUpload,
    /// Refuse the sum-read with lengths 0xF083 (0x702), like older runtimes.
    NoSumReadEx,
    /// Refuse every sum command (0x702), like small controllers.
    NoSum,
    /// Answer sum-reads with the data only, without the per-read results.
    SumReadNoResults,
    /// Inside sum-reads, answer every sub-read of PLC memory with 0x70A (out of memory);
    /// the same reads alone still work.
    SumReadSubError,
    /// Answer the symbol version (0xF008) with a fixed 0.
    SymverPlaceholder,
    /// Corrupt the second symbol entry: its name length runs past the entry.
    BadSymbolEntry,
    /// Announce one symbol more in the upload info (0xF00F, 0xF00C) than the table holds.
    UploadInfoMismatch,
    /// Add a structure `ST_Loop` whose field `Next` is an `ST_Loop` to the data-type table
    /// (its counts and sizes in the upload info included).
    SelfReferencingType,
    /// Refuse upload info 2 (0xF00F, 0x701) and the data-type upload; answer only the
    /// legacy upload info 0xF00C, like early runtimes.
    LegacyUploadInfo,
    /// Answer every request with this ADS error (in the result field), e.g. 0x701 or 0x710.
    RefuseAll,
    /// Answer every request with ADS error 0x708 (device busy).
    Busy,
    /// Refuse every read of one symbol's memory, its handle and its symbol info by name,
    /// while the symbol table still lists it.
    RefuseSymbol,
}

impl QuirkName for Quirk {
    const ALL: &'static [Quirk] = &[
        Quirk::Stall,
        Quirk::DropSession,
        Quirk::NoDeviceInfo,
        Quirk::NoReadState,
        Quirk::NoUpload,
        Quirk::NoTableUpload,
        Quirk::NoSumReadEx,
        Quirk::NoSum,
        Quirk::SumReadNoResults,
        Quirk::SumReadSubError,
        Quirk::SymverPlaceholder,
        Quirk::BadSymbolEntry,
        Quirk::UploadInfoMismatch,
        Quirk::SelfReferencingType,
        Quirk::LegacyUploadInfo,
        Quirk::RefuseAll,
        Quirk::Busy,
        Quirk::RefuseSymbol,
    ];

    fn name(self) -> &'static str {
        match self {
            Quirk::Stall => "stall",
            Quirk::DropSession => "drop-session",
            Quirk::NoDeviceInfo => "no-device-info",
            Quirk::NoReadState => "no-read-state",
            Quirk::NoUpload => "no-upload",
            Quirk::NoTableUpload => "no-table-upload",
            Quirk::NoSumReadEx => "no-sum-read-ex",
            Quirk::NoSum => "no-sum",
            Quirk::SumReadNoResults => "sum-read-no-results",
            Quirk::SumReadSubError => "sum-read-sub-error",
            Quirk::SymverPlaceholder => "symver-placeholder",
            Quirk::BadSymbolEntry => "bad-symbol-entry",
            Quirk::UploadInfoMismatch => "upload-info-mismatch",
            Quirk::SelfReferencingType => "self-referencing-type",
            Quirk::LegacyUploadInfo => "legacy-upload-info",
            Quirk::RefuseAll => "refuse-all",
            Quirk::Busy => "busy",
            Quirk::RefuseSymbol => "refuse-symbol",
        }
    }
}

/// What the quirks with arguments say.
impl QuirkSet<Quirk, QuirkArg> {
    /// The ADS error `refuse-all` answers every request with, if it is on (0x701 unless a
    /// code was given).
    #[must_use]
    pub fn refuse_all(&self) -> Option<u32> {
        if !self.get(Quirk::RefuseAll) {
            return None;
        }
        Some(match self.arg(Quirk::RefuseAll) {
            Some(QuirkArg::Code(code)) => *code,
            _ => SERVICE_NOT_SUPPORTED,
        })
    }

    /// The symbol `refuse-symbol` refuses, if it is on.
    #[must_use]
    pub fn refuse_symbol(&self) -> Option<&RefusedSymbol> {
        match self.arg(Quirk::RefuseSymbol) {
            Some(QuirkArg::Symbol(symbol)) => Some(symbol),
            _ => None,
        }
    }

    /// The ADS error every request gets, if any (busy first).
    pub(crate) fn refusal(&self) -> Option<u32> {
        if self.get(Quirk::Busy) {
            Some(DEVICE_BUSY)
        } else {
            self.refuse_all()
        }
    }
}

/// How a runtime symbol moves on each tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    /// +1 per tick (wrapping for integers).
    Counter,
    /// 50 + 50·sin(2π·n/60).
    Sine,
    /// BOOL flips.
    Toggle,
}

/// `_AppInfo` contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppInfo {
    pub project_name: String,
    pub app_name: String,
    pub online_change_count: u32,
    /// DT: seconds since 1970.
    pub timestamp: u32,
    pub task_count: u32,
}

/// A symbol as declared.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SymbolDecl {
    pub name: String,
    pub type_name: String,
    pub value: Option<toml::Value>,
    pub persistent: bool,
    pub comment: String,
    pub tick: Option<Tick>,
}

/// The program as loaded (what `download` restores).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Project {
    pub types: Vec<(String, TypeDecl)>,
    pub symbols: Vec<SymbolDecl>,
    pub app: Option<AppInfo>,
}

/// A symbol placed in memory.
#[derive(Clone, Debug)]
pub(crate) struct Sym {
    pub name: String,
    pub ty: Ty,
    pub offset: u32,
    pub persistent: bool,
    pub comment: String,
    pub tick: Option<Tick>,
    pub initial: Vec<u8>,
}

/// The uploadable tables, built once per program change.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    pub symbols: Vec<u8>,
    pub symbol_count: u32,
    pub datatypes: Vec<u8>,
    pub datatype_count: u32,
}

/// The state of a simulated TwinCAT PLC.
#[derive(Clone, Debug)]
pub struct AdsState {
    /// The PLC's AMS Net Id: requests for another get ADS error 0x7.
    pub ams_net_id: [u8; 6],
    /// The PLC runtime's AMS port: requests for another get ADS error 0x6.
    pub ams_port: u16,
    /// ReadDeviceInfo's name (at most 15 bytes).
    pub device_name: String,
    /// ReadDeviceInfo's version: major, minor, build.
    pub version: (u8, u8, u16),
    /// ADS state (5 = RUN).
    pub ads_state: u16,
    /// Device state.
    pub device_state: u16,
    /// The symbol version (0xF008).
    pub symbol_version: u8,
    /// How often ticking symbols move; 0 = only on `tick`.
    pub tick_ms: u64,
    /// Simultaneous TCP connections.
    pub max_connections: usize,
    /// Source AMS Net Ids with a route; empty = every source is served.
    pub routes: Vec<[u8; 6]>,
    /// Active quirks.
    pub quirks: Quirks,
    pub(crate) app: Option<AppInfo>,
    pub(crate) project: Project,
    pub(crate) decls: BTreeMap<String, (String, TypeDecl)>,
    pub(crate) symbols: Vec<Sym>,
    pub(crate) memory: Vec<u8>,
    pub(crate) tables: Option<Tables>,
    pub(crate) ticks: u64,
    /// Handles given out by 0xF003: handle -> (offset, size).
    pub(crate) handles: BTreeMap<u32, (u32, u32)>,
    pub(crate) next_handle: u32,
}

/// ADS state names, by code.
pub(crate) const ADS_STATES: [&str; 20] = [
    "INVALID",
    "IDLE",
    "RESET",
    "INIT",
    "START",
    "RUN",
    "STOP",
    "SAVECFG",
    "LOADCFG",
    "POWERFAILURE",
    "POWERGOOD",
    "ERROR",
    "SHUTDOWN",
    "SUSPEND",
    "RESUME",
    "CONFIG",
    "RECONFIG",
    "STOPPING",
    "INCOMPATIBLE",
    "EXCEPTION",
];

/// Parses an ADS state name or number.
pub(crate) fn parse_ads_state(text: &str) -> Option<u16> {
    let upper = text.trim().to_ascii_uppercase();
    ADS_STATES
        .iter()
        .position(|s| *s == upper)
        .and_then(|i| u16::try_from(i).ok())
        .or_else(|| upper.parse().ok())
}

impl AdsState {
    /// The built-in demo: a TwinCAT 3 bottle filler (`simulators/states/ads-filler.toml`).
    #[must_use]
    pub fn demo() -> AdsState {
        match AdsState::from_toml(FILLER_DEMO_TOML) {
            Ok(state) => state,
            // The embedded file is checked by a unit test; this cannot happen in a build
            // that passed its tests, and a broken demo must not take the process down.
            Err(e) => {
                tracing::error!(%e, "the embedded ADS demo state is invalid");
                AdsState::empty()
            }
        }
    }

    pub(crate) fn empty() -> AdsState {
        AdsState {
            ams_net_id: [127, 0, 0, 1, 1, 1],
            ams_port: 851,
            device_name: "Plc30 App".into(),
            version: (3, 1, 4024),
            ads_state: 5,
            device_state: 0,
            symbol_version: 1,
            tick_ms: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            routes: Vec::new(),
            quirks: Quirks::default(),
            app: None,
            project: Project {
                types: Vec::new(),
                symbols: Vec::new(),
                app: None,
            },
            decls: BTreeMap::new(),
            symbols: Vec::new(),
            memory: Vec::new(),
            tables: None,
            ticks: 0,
            handles: BTreeMap::new(),
            next_handle: 0x1000,
        }
    }

    /// The memory offset (in index group [`MEMORY_GROUP`]) of the symbol `name`, ignoring
    /// case: lets tests address a symbol the way a client that read the table would.
    #[must_use]
    pub fn symbol_offset(&self, name: &str) -> Option<u32> {
        self.symbols
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .map(|s| s.offset)
    }

    /// The `refuse-symbol` quirk's code and the memory range (start, end) of the symbol it
    /// refuses, when it is on and the symbol exists.
    pub(crate) fn refused_range(&self) -> Option<(u32, u32, u32)> {
        let refused = self.quirks.refuse_symbol()?;
        let sym = self
            .symbols
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&refused.name))?;
        Some((
            refused.code,
            sym.offset,
            sym.offset.saturating_add(sym.ty.size()),
        ))
    }

    /// The `refuse-symbol` quirk's code when it refuses `name`.
    pub(crate) fn refuses_name(&self, name: &str) -> Option<u32> {
        let refused = self.quirks.refuse_symbol()?;
        let name = name.trim_end_matches('\0');
        refused
            .name
            .eq_ignore_ascii_case(name)
            .then_some(refused.code)
    }

    /// Every symbol's name, in table order.
    #[must_use]
    pub fn symbol_names(&self) -> Vec<String> {
        self.symbols.iter().map(|s| s.name.clone()).collect()
    }

    /// Advances every ticking symbol once.
    pub fn tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        let n = self.ticks;
        for s in &self.symbols {
            let (Some(tick), Some(p)) = (s.tick, prim_of(&s.ty)) else {
                continue;
            };
            let start = s.offset as usize;
            let Some(bytes) = self.memory.get_mut(start..start + p.size() as usize) else {
                continue;
            };
            let current = types::decode(&Ty::Prim(p, ""), bytes);
            let next = match (tick, p) {
                (Tick::Toggle, _) => toml::Value::Boolean(!current.as_bool().unwrap_or(false)),
                (Tick::Counter, types::Prim::Real | types::Prim::Lreal) => {
                    toml::Value::Float(current.as_f64().unwrap_or(0.0) + 1.0)
                }
                (Tick::Counter, _) => {
                    let bits = p.size() * 8;
                    let v = current
                        .as_i64()
                        .map(i128::from)
                        .or(current.as_u64().map(i128::from))
                        .unwrap_or(0);
                    let signed = current.as_i64().is_some()
                        && matches!(
                            p,
                            types::Prim::Sint
                                | types::Prim::Int
                                | types::Prim::Dint
                                | types::Prim::Lint
                        );
                    let modulus = 1i128 << bits;
                    let mut next = (v + 1).rem_euclid(modulus);
                    if signed && next >= modulus / 2 {
                        next -= modulus;
                    }
                    toml::Value::Integer(i64::try_from(next).unwrap_or(0))
                }
                (Tick::Sine, _) => {
                    let f =
                        50.0 + 50.0 * (2.0 * std::f64::consts::PI * (n % 60) as f64 / 60.0).sin();
                    if matches!(p, types::Prim::Real | types::Prim::Lreal) {
                        toml::Value::Float(f)
                    } else {
                        toml::Value::Integer(f.round() as i64)
                    }
                }
            };
            let _ = types::encode(&Ty::Prim(p, ""), &next, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_state_is_valid() {
        let state = AdsState::from_toml(FILLER_DEMO_TOML).expect("the embedded demo parses");
        assert!(state.app.is_some());
        assert!(state.symbols.iter().any(|s| s.name == APP_INFO_SYMBOL));
        assert!(state.symbols.len() > 10);
    }

    #[test]
    fn bad_states_are_refused_with_a_reason() {
        for (text, needle) in [
            ("colour = 1", "unknown field"),
            ("ams_net_id = \"1.2.3\"", "ams_net_id"),
            (
                "[[symbol]]\nname = \"a\"\ntype = \"ST_Nope\"",
                "unknown type",
            ),
            (
                "[[symbol]]\nname = \"a\"\ntype = \"INT\"\nvalue = 70000",
                "out of range",
            ),
            (
                "[[symbol]]\nname = \"a\"\ntype = \"INT\"\n[[symbol]]\nname = \"A\"\ntype = \"INT\"",
                "twice",
            ),
            (
                "[[symbol]]\nname = \"a\"\ntype = \"STRING\"\ntick = \"counter\"",
                "tick",
            ),
            (
                "[[type]]\nname = \"T\"\nalias = \"INT\"\nfields = []",
                "exactly one",
            ),
        ] {
            let err = AdsState::from_toml(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn paths_locate_fields_and_elements() {
        let state = AdsState::from_toml(
            r#"
[[type]]
name = "ST_P"
fields = [{ name = "a", type = "INT" }, { name = "b", type = "ARRAY [1..3] OF REAL" }]
[[symbol]]
name = "GVL.p"
type = "ST_P"
[[symbol]]
name = "GVL.q"
type = "ARRAY [0..1, 0..1] OF INT"
"#,
        )
        .expect("state");
        let (off, ty) = state.locate("gvl.p.B[2]").expect("element");
        assert_eq!(ty.name(), "REAL");
        assert_eq!(off, state.symbols[0].offset + 4 + 4);
        let (off, _) = state.locate("GVL.q[1,0]").expect("element");
        assert_eq!(off, state.symbols[1].offset + 4);
        assert!(state.locate("GVL.p.c").is_err());
        assert!(state.locate("GVL.q[2,0]").is_err());
        assert!(state.locate("GVL.r").is_err());
    }
}
