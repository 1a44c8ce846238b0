//! The simulated TwinCAT PLC's state: device identity, ADS state, the PLC program (types,
//! symbols laid out in memory), `_AppInfo`, counters and quirks. The file format is
//! documented on the [`ads`](super) module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runtime::verbs::apply_file_quirks;
use crate::runtime::{QuirkName, QuirkSet};

use super::types::{self, Resolver, Ty, TypeDecl, collect_exported, datatype_entry};

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

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read ADS state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The text is not valid TOML or has unknown keys.
    #[error("ADS state: {0}")]
    Toml(String),
    /// A value is out of range or a name does not resolve.
    #[error("ADS state: {0}")]
    Invalid(String),
}

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

fn symbol_not_found() -> u32 {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    ams_net_id: Option<String>,
    ams_port: Option<u16>,
    device_name: Option<String>,
    version: Option<String>,
    ads_state: Option<String>,
    device_state: Option<u16>,
    symbol_version: Option<u8>,
    tick_ms: Option<u64>,
    max_connections: Option<usize>,
    routes: Option<Vec<String>>,
    app: Option<RawApp>,
    #[serde(rename = "type", default)]
    types: Vec<RawType>,
    #[serde(rename = "symbol", default)]
    symbols: Vec<RawSymbol>,
    quirks: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    project_name: String,
    app_name: Option<String>,
    online_change_count: Option<u32>,
    timestamp: Option<String>,
    task_count: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    name: String,
    fields: Option<Vec<RawField>>,
    alias: Option<String>,
    base: Option<String>,
    members: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSymbol {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    value: Option<toml::Value>,
    persistent: Option<bool>,
    comment: Option<String>,
    tick: Option<String>,
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

/// Parses `5.80.201.232.1.1`.
pub(crate) fn parse_net_id(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = text
        .trim()
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

/// Parses `2025-03-01T10:22:05` or `DT#2025-03-01-10:22:05` to seconds since 1970.
pub(crate) fn parse_dt(text: &str) -> Option<u32> {
    let t = text.trim();
    let parsed = match t.strip_prefix("DT#") {
        Some(rest) => chrono::NaiveDateTime::parse_from_str(rest, "%Y-%m-%d-%H:%M:%S").ok(),
        None => chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok(),
    }?;
    u32::try_from(parsed.and_utc().timestamp()).ok()
}

fn invalid(text: impl Into<String>) -> StateError {
    StateError::Invalid(text.into())
}

/// The built-in `PlcAppSystemInfo` structure (the TwinCAT 3 fields otdrift reads, and the
/// ones around them).
fn app_info_decl() -> TypeDecl {
    TypeDecl::Struct(
        [
            ("ObjId", "UDINT"),
            ("TaskCnt", "UDINT"),
            ("OnlineChangeCnt", "UDINT"),
            ("Flags", "DWORD"),
            ("AdsPort", "UINT"),
            ("BootDataLoaded", "BOOL"),
            ("OldBootData", "BOOL"),
            ("AppTimestamp", "DT"),
            ("KeepOutputsOnBP", "BOOL"),
            ("ShutdownInProgress", "BOOL"),
            ("LicensesPending", "BOOL"),
            ("BSODOccured", "BOOL"),
            ("LoggedIn", "BOOL"),
            ("AppName", "STRING(63)"),
            ("ProjectName", "STRING(63)"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect(),
    )
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

    fn empty() -> AdsState {
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

    /// Reads a state file.
    ///
    /// # Errors
    /// If the file cannot be read or is not a valid state.
    pub fn load(path: &Path) -> Result<AdsState, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        AdsState::from_toml(&text)
    }

    /// Parses a state from TOML (format on the module docs).
    ///
    /// # Errors
    /// Unknown keys, bad values, unknown types, duplicate names.
    pub fn from_toml(text: &str) -> Result<AdsState, StateError> {
        let raw: RawState = toml::from_str(text).map_err(|e| StateError::Toml(e.to_string()))?;
        let mut state = AdsState::empty();
        if let Some(id) = raw.ams_net_id {
            state.ams_net_id = parse_net_id(&id).ok_or_else(|| {
                invalid(format!("ams_net_id {id:?} is not six dot-separated bytes"))
            })?;
        }
        state.ams_port = raw.ams_port.unwrap_or(851);
        if let Some(name) = raw.device_name {
            if name.len() > 15 {
                return Err(invalid(format!(
                    "device_name {name:?} is longer than 15 bytes"
                )));
            }
            state.device_name = name;
        }
        if let Some(v) = raw.version {
            state.version = parse_version(&v)
                .ok_or_else(|| invalid(format!("version {v:?} is not MAJOR.MINOR.BUILD")))?;
        }
        if let Some(s) = raw.ads_state {
            state.ads_state =
                parse_ads_state(&s).ok_or_else(|| invalid(format!("unknown ads_state {s:?}")))?;
        }
        state.device_state = raw.device_state.unwrap_or(0);
        state.symbol_version = raw.symbol_version.unwrap_or(1);
        state.tick_ms = raw.tick_ms.unwrap_or(1000);
        state.max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if state.max_connections == 0 {
            return Err(invalid("max_connections must be at least 1"));
        }
        for r in raw.routes.unwrap_or_default() {
            state.routes.push(
                parse_net_id(&r)
                    .ok_or_else(|| invalid(format!("route {r:?} is not an AMS Net Id")))?,
            );
        }
        let app = match raw.app {
            None => None,
            Some(a) => Some(AppInfo {
                app_name: a
                    .app_name
                    .unwrap_or_else(|| format!("Port_{}", state.ams_port)),
                online_change_count: a.online_change_count.unwrap_or(0),
                timestamp: match a.timestamp {
                    None => 1_740_824_525,
                    Some(t) => parse_dt(&t).ok_or_else(|| {
                        invalid(format!("app.timestamp {t:?} is not YYYY-MM-DDThh:mm:ss"))
                    })?,
                },
                task_count: a.task_count.unwrap_or(1),
                project_name: a.project_name,
            }),
        };
        let mut types = Vec::with_capacity(raw.types.len());
        for t in raw.types {
            let decl = match (t.fields, t.alias, t.members) {
                (Some(fields), None, None) if t.base.is_none() => {
                    if fields.is_empty() {
                        return Err(invalid(format!("type {} has no fields", t.name)));
                    }
                    TypeDecl::Struct(fields.into_iter().map(|f| (f.name, f.type_name)).collect())
                }
                (None, Some(target), None) if t.base.is_none() => TypeDecl::Alias(target),
                (None, None, Some(members)) => {
                    let mut list = Vec::with_capacity(members.len());
                    for (m, v) in members {
                        let toml::Value::Integer(n) = v else {
                            return Err(invalid(format!(
                                "enum {}: member {m} needs an integer",
                                t.name
                            )));
                        };
                        list.push((m, n));
                    }
                    list.sort_by_key(|(_, n)| *n);
                    TypeDecl::Enum {
                        base: t.base.unwrap_or_else(|| "INT".to_owned()),
                        members: list,
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "type {} needs exactly one of fields, alias, or members (with optional base)",
                        t.name
                    )));
                }
            };
            types.push((t.name, decl));
        }
        let mut symbols = Vec::with_capacity(raw.symbols.len());
        for s in raw.symbols {
            let tick = match s.tick.as_deref() {
                None => None,
                Some("counter") => Some(Tick::Counter),
                Some("sine") => Some(Tick::Sine),
                Some("toggle") => Some(Tick::Toggle),
                Some(other) => {
                    return Err(invalid(format!(
                        "symbol {}: tick {other:?} (counter, sine or toggle)",
                        s.name
                    )));
                }
            };
            symbols.push(SymbolDecl {
                name: s.name,
                type_name: s.type_name,
                value: s.value,
                persistent: s.persistent.unwrap_or(false),
                comment: s.comment.unwrap_or_default(),
                tick,
            });
        }
        state.project = Project {
            types,
            symbols,
            app: app.clone(),
        };
        state.app = app;
        state.rebuild(None)?;
        if let Some(table) = &raw.quirks {
            apply_file_quirks::<super::AdsSimulator>(&mut state, table)
                .map_err(StateError::Invalid)?;
        }
        Ok(state)
    }

    /// Lays the project out in memory. With `keep`, persistent symbols that still exist
    /// keep their bytes (what a download does).
    pub(crate) fn rebuild(&mut self, keep: Option<&[Sym]>) -> Result<(), StateError> {
        let mut decls = BTreeMap::new();
        for (name, decl) in &self.project.types {
            if decls
                .insert(name.to_ascii_lowercase(), (name.clone(), decl.clone()))
                .is_some()
            {
                return Err(invalid(format!("type {name} is declared twice")));
            }
        }
        if self.project.app.is_some() {
            decls.insert(
                APP_INFO_TYPE.to_ascii_lowercase(),
                (APP_INFO_TYPE.to_owned(), app_info_decl()),
            );
        }
        let resolver = Resolver { decls: &decls };
        for (name, _) in &self.project.types {
            resolver.resolve(name).map_err(invalid)?;
        }
        let old_memory = std::mem::take(&mut self.memory);
        self.symbols.clear();
        self.decls = decls;
        if self.project.app.is_some() {
            self.place(APP_INFO_SYMBOL, APP_INFO_TYPE, None, false, "", None)?;
        }
        for s in self.project.symbols.clone() {
            self.place(
                &s.name,
                &s.type_name,
                s.value.as_ref(),
                s.persistent,
                &s.comment,
                s.tick,
            )?;
        }
        if let Some(previous) = keep {
            for old in previous.iter().filter(|o| o.persistent) {
                let Some(new) = self
                    .symbols
                    .iter()
                    .find(|n| n.name.eq_ignore_ascii_case(&old.name) && n.ty == old.ty)
                else {
                    continue;
                };
                let size = new.ty.size() as usize;
                let (from, to) = (old.offset as usize, new.offset as usize);
                if let (Some(src), true) = (
                    old_memory.get(from..from + size),
                    to + size <= self.memory.len(),
                ) {
                    let src = src.to_vec();
                    self.memory[to..to + size].copy_from_slice(&src);
                }
            }
        }
        self.write_app();
        self.tables = None;
        self.handles.clear();
        Ok(())
    }

    /// Appends a symbol to memory (aligned) with its initial value.
    pub(crate) fn place(
        &mut self,
        name: &str,
        type_name: &str,
        value: Option<&toml::Value>,
        persistent: bool,
        comment: &str,
        tick: Option<Tick>,
    ) -> Result<(), StateError> {
        if name.trim().is_empty() || name.len() > 255 {
            return Err(invalid(format!("symbol name {name:?} must be 1-255 bytes")));
        }
        if self
            .symbols
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(name))
        {
            return Err(invalid(format!("symbol {name} is declared twice")));
        }
        let ty = Resolver { decls: &self.decls }
            .resolve(type_name)
            .map_err(|e| invalid(format!("symbol {name}: {e}")))?;
        if let Some(t) = tick {
            let ok = match (t, prim_of(&ty)) {
                (Tick::Toggle, Some(types::Prim::Bool)) => true,
                (Tick::Counter | Tick::Sine, Some(p)) => p != types::Prim::Bool,
                _ => false,
            };
            if !ok {
                return Err(invalid(format!(
                    "symbol {name}: tick needs a numeric type (toggle: BOOL), not {}",
                    ty.name()
                )));
            }
        }
        let align = ty.align().clamp(1, 8) as usize;
        let offset = self.memory.len().div_ceil(align) * align;
        let size = ty.size() as usize;
        let mut initial = vec![0u8; size];
        if let Some(v) = value {
            types::encode(&ty, v, &mut initial)
                .map_err(|e| invalid(format!("symbol {name}: {e}")))?;
        }
        let offset_u32 = u32::try_from(offset + size)
            .ok()
            .and_then(|_| u32::try_from(offset).ok())
            .ok_or_else(|| invalid("PLC memory exceeds 4 GiB"))?;
        self.memory.resize(offset, 0);
        self.memory.extend_from_slice(&initial);
        self.symbols.push(Sym {
            name: name.to_owned(),
            ty,
            offset: offset_u32,
            persistent,
            comment: comment.to_owned(),
            tick,
            initial,
        });
        self.tables = None;
        Ok(())
    }

    /// Writes `_AppInfo` into memory from [`AdsState::app`].
    pub(crate) fn write_app(&mut self) {
        let Some(app) = self.app.clone() else { return };
        let Some(sym) = self
            .symbols
            .iter()
            .find(|s| s.name == APP_INFO_SYMBOL)
            .cloned()
        else {
            return;
        };
        let mut table = toml::Table::new();
        table.insert("ObjId".into(), toml::Value::Integer(0x0101_0010));
        table.insert(
            "TaskCnt".into(),
            toml::Value::Integer(i64::from(app.task_count)),
        );
        table.insert(
            "OnlineChangeCnt".into(),
            toml::Value::Integer(i64::from(app.online_change_count)),
        );
        table.insert(
            "AdsPort".into(),
            toml::Value::Integer(i64::from(self.ams_port)),
        );
        table.insert("BootDataLoaded".into(), toml::Value::Boolean(true));
        table.insert(
            "AppTimestamp".into(),
            toml::Value::Integer(i64::from(app.timestamp)),
        );
        table.insert(
            "AppName".into(),
            toml::Value::String(app.app_name.chars().take(63).collect()),
        );
        table.insert(
            "ProjectName".into(),
            toml::Value::String(app.project_name.chars().take(63).collect()),
        );
        let start = sym.offset as usize;
        let end = start + sym.ty.size() as usize;
        if let Some(bytes) = self.memory.get_mut(start..end)
            && let Err(e) = types::encode(&sym.ty, &toml::Value::Table(table), bytes)
        {
            tracing::warn!(%e, "cannot write _AppInfo");
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

    /// The symbol and data-type tables (built on first use after a change).
    pub(crate) fn tables(&mut self) -> Tables {
        if let Some(t) = &self.tables {
            return t.clone();
        }
        let mut symbols = Vec::new();
        for s in &self.symbols {
            symbols.extend(symbol_entry(s));
        }
        let mut exported: Vec<Ty> = Vec::new();
        let resolver = Resolver { decls: &self.decls };
        for (name, _) in self.decls.values() {
            if let Ok(ty) = resolver.resolve(name) {
                collect_exported(&ty, &mut exported);
            }
        }
        for s in &self.symbols {
            collect_exported(&s.ty, &mut exported);
        }
        let mut names = std::collections::HashSet::new();
        let mut datatypes = Vec::new();
        let mut count = 0u32;
        for ty in &exported {
            if names.insert(ty.name().to_ascii_lowercase()) {
                datatypes.extend(datatype_entry(&ty.name(), ty, 0, false, ""));
                count += 1;
            }
        }
        let t = Tables {
            symbol_count: u32::try_from(self.symbols.len()).unwrap_or(u32::MAX),
            symbols,
            datatypes,
            datatype_count: count,
        };
        self.tables = Some(t.clone());
        t
    }

    /// One symbol's table entry by name, ignoring case (0xF009).
    pub(crate) fn symbol_entry_by_name(&self, name: &str) -> Option<Vec<u8>> {
        self.symbols
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name.trim_end_matches('\0')))
            .map(symbol_entry)
    }

    /// Resolves `Symbol`, `Symbol.Field.Sub`, `Symbol[2]`, `Symbol.Arr[1,0]` to a memory
    /// offset and type.
    pub(crate) fn locate(&self, path: &str) -> Result<(u32, Ty), String> {
        let lower = path.to_ascii_lowercase();
        let sym = self
            .symbols
            .iter()
            .filter(|s| {
                let n = s.name.to_ascii_lowercase();
                lower == n
                    || (lower.starts_with(&n)
                        && matches!(lower.as_bytes().get(n.len()), Some(b'.' | b'[')))
            })
            .max_by_key(|s| s.name.len())
            .ok_or_else(|| format!("no symbol {path}"))?;
        let mut offset = sym.offset;
        let mut ty = sym.ty.clone();
        let mut rest = path.get(sym.name.len()..).unwrap_or_default();
        while !rest.is_empty() {
            while let Ty::Alias { target, .. } = ty {
                ty = *target;
            }
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let field = r.get(..end).unwrap_or_default();
                let Ty::Struct { fields, name, .. } = &ty else {
                    return Err(format!("{} is not a structure", ty.name()));
                };
                let (_, fty, foff) = fields
                    .iter()
                    .find(|(f, ..)| f.eq_ignore_ascii_case(field))
                    .ok_or_else(|| format!("{name} has no field {field}"))?;
                offset += foff;
                let next = fty.clone();
                ty = next;
                rest = r.get(end..).unwrap_or_default();
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or("missing ]")?;
                let indexes: Vec<i64> = r
                    .get(..end)
                    .unwrap_or_default()
                    .split(',')
                    .map(|i| i.trim().parse().map_err(|_| format!("bad index {i:?}")))
                    .collect::<Result<_, _>>()?;
                let Ty::Array { dims, elem } = &ty else {
                    return Err(format!("{} is not an array", ty.name()));
                };
                if indexes.len() != dims.len() {
                    return Err(format!("{} needs {} indexes", ty.name(), dims.len()));
                }
                let mut linear = 0i64;
                for (&i, &(lo, n)) in indexes.iter().zip(dims) {
                    let pos = i - i64::from(lo);
                    if pos < 0 || pos >= i64::from(n) {
                        return Err(format!(
                            "index {i} outside {lo}..{}",
                            i64::from(lo) + i64::from(n) - 1
                        ));
                    }
                    linear = linear * i64::from(n) + pos;
                }
                offset += u32::try_from(linear).map_err(|_| "index too large")? * elem.size();
                let next = (**elem).clone();
                ty = next;
                rest = r.get(end + 1..).unwrap_or_default();
            } else {
                return Err(format!("cannot read {rest:?} in {path}"));
            }
        }
        Ok((offset, ty))
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

fn parse_version(v: &str) -> Option<(u8, u8, u16)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let build = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((major, minor, build))
}

/// The primitive behind a type (through aliases and enums), if it is one.
pub(crate) fn prim_of(ty: &Ty) -> Option<types::Prim> {
    match ty {
        Ty::Prim(p, _) => Some(*p),
        Ty::Alias { target, .. } => prim_of(target),
        Ty::Enum { base, .. } => Some(*base),
        _ => None,
    }
}

/// One symbol table entry (TwinCAT's AdsSymbolEntry), padded to a multiple of 4 bytes as
/// TwinCAT does.
pub(crate) fn symbol_entry(s: &Sym) -> Vec<u8> {
    let type_name = s.ty.name();
    let mut body = Vec::new();
    for v in [MEMORY_GROUP, s.offset, s.ty.size(), s.ty.base_type()] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let flags = if s.persistent { SYM_FLAG_PERSISTENT } else { 0 };
    body.extend_from_slice(&flags.to_le_bytes());
    let dims = match &s.ty {
        Ty::Array { dims, .. } => u16::try_from(dims.len()).unwrap_or(0),
        _ => 0,
    };
    body.extend_from_slice(&dims.to_le_bytes());
    for text in [s.name.as_str(), type_name.as_str(), s.comment.as_str()] {
        body.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_le_bytes());
    }
    for text in [s.name.as_str(), type_name.as_str(), s.comment.as_str()] {
        body.extend_from_slice(text.as_bytes());
        body.push(0);
    }
    let len = (body.len() + 4).div_ceil(4) * 4;
    let mut entry = Vec::with_capacity(len);
    entry.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    entry.extend(body);
    entry.resize(len, 0);
    entry
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
