//! A simulated Beckhoff TwinCAT PLC runtime speaking ADS over AMS/TCP.
//!
//! It exists so otdrift's tests, `otdrift demo` and test rigs (`otdrift sim ads`) have a
//! TwinCAT PLC to read, to drift, and to prove things about: every request is logged with
//! its ADS command id and a `write` flag (see [`crate::request_log`]). No crate provides an
//! ADS server; this one is written for the simulator.
//!
//! # Services
//!
//! | command | answered |
//! |---|---|
//! | ReadDeviceInfo (1) | name and version from the state |
//! | Read (2) | PLC memory (index group 0x4040), value by handle (0xF005), symbol version (0xF008), upload info (0xF00C: 8 bytes; 0xF00F: 64 bytes), symbol table (0xF00B), data-type table (0xF00E) |
//! | ReadState (4) | ADS state and device state |
//! | ReadWrite (9) | symbol entry by name (0xF009), handle by name (0xF003), sum-read (0xF080: results then data at the requested lengths; 0xF083: results and lengths then data at the requested lengths; 0xF084: results and lengths then packed data), sum-read-write (0xF082, of 0xF003/0xF009), sum-write (0xF081), read-write of PLC memory |
//! | Write (3) | PLC memory, value by handle, release handle (0xF006): applied like a real PLC, **logged as a write** |
//! | WriteControl (5) | the ADS state is set, **logged as a write** |
//! | AddDeviceNotification (6), DeleteDeviceNotification (7) | acknowledged with a handle, **logged as writes**; no notification is ever sent |
//!
//! Sum commands take at most 500 sub-commands (more: ADS error 0x705). Errors are ADS
//! return codes, as TwinCAT gives them: 0x702 unknown index group, 0x703 offset outside the
//! memory, 0x705 wrong size (a buffer too small for a table, a short parameter block),
//! 0x710 unknown symbol, 0x006 / 0x007 a request for another AMS port / Net Id, 0x008 an
//! unknown command id, 0x00E an AMS header whose data length disagrees with the frame. A
//! frame shorter than an AMS header or longer than 4 MiB closes the connection (there is no
//! header to answer); AMS/TCP router frames (reserved word not 0) are logged and ignored.
//! Nothing a client sends can panic the simulator.
//!
//! Symbols are laid out in index group 0x4040 in declaration order with natural alignment
//! (at most 8), `_AppInfo` first; structures likewise. The symbol table and data-type table
//! follow TwinCAT's AdsSymbolEntry and AdsDatatypeEntry formats (entries padded to 4 bytes;
//! arrays, structures, aliases and enumerations with their enum infos); upload info 0xF00F
//! announces their counts and sizes.
//!
//! What it cannot emulate: the AMS router (routes are a plain allow-list of source Net
//! Ids, no UDP route registration, no port-open requests), ADS over UDP, device
//! notifications, secure ADS, TwinCAT's one-connection-per-peer-IP rule (every TCP
//! connection is independent), file, registry and license services, and a real compiler
//! (an online change adds or removes one symbol; a download restores the loaded project).
//!
//! # State file
//!
//! TOML; unknown keys are refused so typos do not go unnoticed.
//!
//! ```toml
//! ams_net_id = "5.80.201.232.1.1"  # default 127.0.0.1.1.1; requests for another get 0x007
//! ams_port = 851                   # default 851; requests for another port get 0x006
//! device_name = "Plc30 App"        # ReadDeviceInfo name, at most 15 bytes
//! version = "3.1.4024"             # ReadDeviceInfo version MAJOR.MINOR.BUILD
//! ads_state = "RUN"                # an ADS state name (RUN, STOP, CONFIG, ...) or 0..=19
//! device_state = 0
//! symbol_version = 3               # 0xF008; moves on `download` and `restart`
//! tick_ms = 1000                   # how often ticking symbols move; 0 = only on `tick`
//! max_connections = 32
//! routes = ["10.0.3.5.1.1"]        # optional: source Net Ids served; others are
//!                                  # disconnected at their first request, like TwinCAT
//!                                  # without a route. Omit to serve everyone.
//!
//! [app]                            # TwinCAT 3 `TwinCAT_SystemInfoVarList._AppInfo`
//! project_name = "Filler_L3"       # (type PlcAppSystemInfo). Omit for a TwinCAT 2 PLC
//! app_name = "Port_851"            # or another vendor's server without it.
//! online_change_count = 0
//! timestamp = "2025-03-01T10:22:05"   # AppTimestamp (DT)
//! task_count = 2
//!
//! [[type]]                         # a structure
//! name = "ST_Valve"
//! fields = [{ name = "OpenDelay", type = "TIME" }, { name = "Enabled", type = "BOOL" }]
//! [[type]]                         # an alias
//! name = "T_Millilitre"
//! alias = "REAL"
//! [[type]]                         # an enumeration (base default INT)
//! name = "E_FillMode"
//! base = "INT"
//! members = { Volumetric = 0, Gravimetric = 1 }
//!
//! [[symbol]]
//! name = "GVL_Recipe.FillVolume"
//! type = "T_Millilitre"            # BOOL, BYTE, WORD, DWORD, LWORD, SINT, USINT, INT, UINT,
//!                                  # DINT, UDINT, LINT, ULINT, REAL, LREAL, TIME, LTIME,
//!                                  # DATE, TOD, DT, STRING(n), WSTRING(n),
//!                                  # ARRAY [a..b, ...] OF T, or a declared type
//! value = 500.0                    # optional initial value (TOML: numbers, true/false,
//!                                  # strings, arrays, { Field = ... } for structures,
//!                                  # member names for enumerations); default all zero
//! persistent = true                # symbol flag 0x01: kept across `restart` and `download`
//! comment = "target volume"
//! tick = "sine"                    # optional runtime movement: "counter" (+1), "sine"
//!                                  # (50 + 50·sin(2π·n/60)), "toggle" (BOOL)
//!
//! [quirks]                         # optional, all default off; same as `quirk` below
//! stall = false
//! refuse_all = 0x701               # an ADS error code for every request
//! refuse_symbol = { name = "GVL_Recipe.FillVolume", code = 0x710 }
//! ```
//!
//! Without `--state` the simulator runs [`AdsState::demo`], a TwinCAT 3 bottle filler
//! (`simulators/states/ads-filler.toml`).
//!
//! # Commands
//!
//! One command per line; the reply is one line: `ok`, `ok <json>` or `error: <reason>`.
//! Available through [`AdsSimHandle::command`], on the process's stdin and on the optional
//! control port of `otdrift sim ads`.
//!
//! | command | effect |
//! |---|---|
//! | `set PATH VALUE` | sets a symbol, a field (`GVL.stValve.OpenDelay`) or an element (`GVL.aTemps[2]`); VALUE is a TOML value (`520`, `"Cola"`, `[1, 2]`, `{ Enabled = false }`). Not logged as a request. |
//! | `get PATH` | `ok <json value>` |
//! | `info` | `ok {"device_name", "version", "ads_state", "symbol_version", "online_change_count", "app_timestamp", "symbols", "datatypes", ...}` |
//! | `symbols [PREFIX]` | `ok [{"name", "type", "size", "offset", "persistent"}...]` |
//! | `tick [N]` | moves ticking symbols once (or N times) |
//! | `state NAME` | sets the ADS state (`RUN`, `STOP`, `CONFIG`...) |
//! | `device name TEXT` / `device version X.Y.Z` | changes ReadDeviceInfo's answer |
//! | `online-change add NAME TYPE [= VALUE]` | an online change adding a symbol: symbol table grows, `OnlineChangeCnt` +1, `AppTimestamp` moves, symbol version unchanged |
//! | `online-change remove NAME` | an online change removing a symbol |
//! | `download` | a full download of the loaded project: its symbol table and `_AppInfo` again (same timestamp, its online change count), symbol version +1, PERSISTENT values kept, others initial |
//! | `restart` | a runtime restart: symbol version +1, non-persistent values back to initial |
//! | `quirk` / `quirk NAME on\|off` | lists / switches a quirk (below) |
//! | `quirk refuse-all on [CODE]` | answers every request with ADS error CODE (default 0x701; `0x710`, `1808` both work) |
//! | `quirk refuse-symbol on NAME [CODE]` | refuses every read of symbol NAME with CODE (default 0x710) |
//! | `log` / `log clear` | `ok {"total", "writes", "by_command": {"2": 3, "9": 4}}` / resets the log |
//! | `help` | one-line summary |
//!
//! Quirks (how real devices vary):
//!
//! | quirk | behaviour |
//! |---|---|
//! | `stall` | accepts requests, never answers |
//! | `drop-session` | closes the connection on the next request without answering, then switches itself off |
//! | `no-device-info` | ReadDeviceInfo answers ADS error 0x701 |
//! | `no-read-state` | ReadState answers ADS error 0x701 |
//! | `no-upload` | upload info, symbol and data-type uploads answer 0x701 (0xF009 by name still works) |
//! | `no-table-upload` | the symbol (0xF00B) and data-type (0xF00E) uploads answer 0x701 while the upload info still announces them |
//! | `no-sum-read-ex` | 0xF083/0xF084 answer 0x702 (only the plain sum-read 0xF080) |
//! | `no-sum` | every sum command answers 0x702 |
//! | `sum-read-no-results` | sum-reads answer the data without the per-read result (and length) block |
//! | `sum-read-sub-error` | inside sum-reads, every sub-read of PLC memory answers 0x70A (out of memory); the same reads alone work |
//! | `symver-placeholder` | the symbol version always reads 0 |
//! | `bad-symbol-entry` | the second symbol entry's name length runs past its entry |
//! | `upload-info-mismatch` | the upload info (0xF00F, 0xF00C) announces one symbol more than the table holds |
//! | `self-referencing-type` | the data-type table gains `ST_Loop`, a structure whose field `Next` is an `ST_Loop` (the upload info's counts and sizes include it) |
//! | `legacy-upload-info` | upload info 2 (0xF00F) and the data-type upload answer 0x701; only the legacy upload info 0xF00C (symbol count and size) is answered |
//! | `refuse-all` | every request answers an ADS error in its result field: 0x701 unless another code is given |
//! | `busy` | every request answers ADS error 0x708 (device busy) |
//! | `refuse-symbol` | every read of one symbol's memory (Read, sum-read sub-read, value by handle), its handle and its symbol info by name answer 0x710 (or the given code); the symbol table still lists it |

mod commands;
mod file;
mod program;
mod state;
mod types;
mod wire;

use std::{io, net::SocketAddr, path::Path, sync::Arc};

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};

pub use self::state::{
    APP_INFO_SYMBOL, AdsState, DEFAULT_MAX_CONNECTIONS, DEVICE_BUSY, FILLER_DEMO_TOML,
    MEMORY_GROUP, Quirk, QuirkArg, Quirks, RefusedSymbol, SERVICE_NOT_SUPPORTED, SYMBOL_NOT_FOUND,
    StateError,
};
pub use self::wire::MAX_SUM_COMMANDS;
pub use crate::control::CommandError;
use crate::{
    request_log::Described,
    runtime::{Protocol, SimHandle},
};
use wire::Action;

/// AMS/TCP prefix: reserved word and length.
const PREFIX: usize = 6;
/// AMS header.
const HEADER: usize = 32;
/// The largest request frame accepted.
const MAX_FRAME: usize = 4 * 1024 * 1024;

type Shared = crate::runtime::Shared<AdsSimulator>;

/// Starts simulated TwinCAT PLCs.
#[derive(Debug)]
pub struct AdsSimulator;

/// Controls a running simulator. Cheap to clone; dropping the last clone shuts it down.
pub type AdsSimHandle = SimHandle<AdsSimulator>;

impl AdsSimulator {
    /// Binds `listen` (`127.0.0.1:0` in tests) and serves `state` until
    /// [`AdsSimHandle::shutdown`] or until the last handle is dropped. Must be called inside a
    /// tokio runtime.
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub async fn start(listen: SocketAddr, state: AdsState) -> io::Result<AdsSimHandle> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (tick_ms, max_connections) = (state.tick_ms, state.max_connections);
        let shared = crate::runtime::Shared::new(local_addr, state, ());
        shared.serve(listener, Some(max_connections), serve_connection);
        shared.tick_every(tick_ms);
        Ok(SimHandle::new(shared))
    }
}

impl Protocol for AdsSimulator {
    const NAME: &'static str = "ads";
    type State = AdsState;
    type Quirk = Quirk;
    type QuirkArg = QuirkArg;
    type Extra = ();
    type StartError = std::convert::Infallible;

    fn quirks(state: &mut AdsState) -> &mut Quirks {
        &mut state.quirks
    }

    fn tick(shared: &Shared) {
        shared.lock_state().tick();
    }

    fn load(path: &Path) -> Result<AdsState, StateError> {
        AdsState::load(path)
    }

    fn demo() -> AdsState {
        AdsState::demo()
    }

    async fn start(listen: SocketAddr, state: AdsState) -> Result<AdsSimHandle, SimError> {
        AdsSimulator::start(listen, state)
            .await
            .map_err(SimError::bind(Self::NAME, listen))
    }
}

/// ADS's own controls of a running simulator.
impl SimHandle<AdsSimulator> {
    /// Sets a symbol, field or element to a TOML value (`set` without the parsing).
    ///
    /// # Errors
    /// An unknown path or a value that does not fit the type.
    pub fn set(&self, path: &str, value: impl Into<toml::Value>) -> Result<(), CommandError> {
        commands::set_value(&mut self.shared().lock_state(), path, &value.into())
    }

    /// The value at `path` as JSON, `None` if there is no such symbol.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        commands::get_value(&self.shared().lock_state(), path).ok()
    }

    /// An online change adding a symbol (see the `online-change` command); `value` is its
    /// initial value as TOML text (`"1500"`, `"\"Cola\""`).
    ///
    /// # Errors
    /// An existing name, an unknown type or a value that does not fit.
    pub fn online_change_add(
        &self,
        name: &str,
        type_name: &str,
        value: Option<&str>,
    ) -> Result<(), CommandError> {
        let value = value.map(commands::parse_value).transpose()?;
        commands::online_change_add(
            &mut self.shared().lock_state(),
            name,
            type_name,
            value.as_ref(),
        )
    }

    /// A full download of the loaded project (see the `download` command).
    ///
    /// # Errors
    /// Only if the loaded project no longer lays out (it always does).
    pub fn download(&self) -> Result<(), CommandError> {
        commands::download(&mut self.shared().lock_state())
    }

    /// A runtime restart (see the `restart` command).
    pub fn restart(&self) {
        commands::restart(&mut self.shared().lock_state());
    }

    /// Sets the ADS state (5 = RUN, 6 = STOP, 15 = CONFIG).
    pub fn set_ads_state(&self, state: u16) {
        self.shared().lock_state().ads_state = state;
    }

    /// Answers every request with ADS error `code` from now on (`None`: serves again).
    pub fn refuse_all(&self, code: Option<u32>) {
        let mut state = self.shared().lock_state();
        match code {
            Some(code) => state.quirks.replace(Quirk::RefuseAll, QuirkArg::Code(code)),
            None => state.quirks.set(Quirk::RefuseAll, false),
        }
    }

    /// Refuses every read of symbol `name` (its memory, a handle to it, its symbol info by
    /// name) with ADS error `code`, while the symbol table still lists it.
    ///
    /// # Errors
    /// If there is no such symbol.
    pub fn refuse_symbol(&self, name: &str, code: u32) -> Result<(), CommandError> {
        commands::refuse_symbol(&mut self.shared().lock_state(), name, code)
    }

    /// A copy of the whole state.
    #[must_use]
    pub fn state(&self) -> AdsState {
        self.shared().lock_state().clone()
    }
}

/// The parts of an AMS header the answer needs.
struct Header {
    target: [u8; 8],
    source: [u8; 8],
    command: u16,
    data_len: u32,
    invoke: [u8; 4],
}

fn parse_header(body: &[u8]) -> Option<Header> {
    Some(Header {
        target: body.get(0..8)?.try_into().ok()?,
        source: body.get(8..16)?.try_into().ok()?,
        command: u16::from_le_bytes(body.get(16..18)?.try_into().ok()?),
        data_len: u32::from_le_bytes(body.get(20..24)?.try_into().ok()?),
        invoke: body.get(28..32)?.try_into().ok()?,
    })
}

fn answer_frame(h: &Header, error: u32, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(HEADER + data.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(PREFIX + HEADER + data.len());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h.source);
    out.extend_from_slice(&h.target);
    out.extend_from_slice(&h.command.to_le_bytes());
    out.extend_from_slice(&5u16.to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&error.to_le_bytes());
    out.extend_from_slice(&h.invoke);
    out.extend_from_slice(data);
    out
}

fn net_id_text(b: &[u8]) -> String {
    b.iter()
        .take(6)
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn ads_error_text(code: u32) -> String {
    let name = match code {
        0x006 => "target port not found",
        0x007 => "target machine not found",
        0x008 => "unknown command id",
        0x00E => "invalid AMS length",
        0x701 => "service not supported",
        0x702 => "invalid index group",
        0x703 => "invalid index offset",
        0x705 => "invalid size",
        0x706 => "invalid parameter",
        0x708 => "device busy",
        0x70A => "out of memory",
        0x710 => "symbol not found",
        _ => "error",
    };
    format!("ADS error 0x{code:X} ({name})")
}

/// What the log says the device did.
fn outcome_of(action: &Action) -> String {
    match action {
        Action::Reply { error, data } => {
            let result = data
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .unwrap_or(0);
            match (*error, result) {
                (0, 0) => "ok".to_owned(),
                (0, code) | (code, _) => ads_error_text(code),
            }
        }
        Action::Drop(reason) => (*reason).to_owned(),
        Action::Silent => "no answer (stall quirk)".to_owned(),
    }
}

/// Reads one frame; `Ok(None)` on a clean close between frames, `Err` on a framing error
/// (the connection is closed: there is no header to answer).
async fn read_frame(stream: &mut TcpStream) -> Result<Option<(u16, Vec<u8>)>, String> {
    let mut prefix = [0u8; PREFIX];
    match stream.read(&mut prefix[..1]).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    stream
        .read_exact(&mut prefix[1..])
        .await
        .map_err(|e| e.to_string())?;
    let [r0, r1, l0, l1, l2, l3] = prefix;
    let reserved = u16::from_le_bytes([r0, r1]);
    let length = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if length > MAX_FRAME {
        return Err(format!("AMS/TCP length {length} exceeds {MAX_FRAME}"));
    }
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some((reserved, body)))
}

async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut stop = shared.stop_for(peer);
    loop {
        let Some(read) = stop.or(read_frame(&mut stream)).await else {
            break;
        };
        let (reserved, body) = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(reason) => {
                shared.record(
                    peer,
                    Described::new(0, "framing_error", reason),
                    "connection closed",
                );
                break;
            }
        };
        if reserved != 0 {
            shared.record(
                peer,
                Described::new(
                    0,
                    "ams_tcp_command",
                    format!("reserved word 0x{reserved:04X}, {} bytes", body.len()),
                ),
                "ignored (no AMS router here)",
            );
            continue;
        }
        let Some(header) = parse_header(&body) else {
            shared.record(
                peer,
                Described::new(
                    0,
                    "framing_error",
                    format!(
                        "AMS/TCP length {} is shorter than the 32-byte AMS header",
                        body.len()
                    ),
                ),
                "connection closed",
            );
            break;
        };
        let data = body.get(HEADER..).unwrap_or_default();
        let (described, action) = {
            let mut state = shared.lock_state();
            let source_net: [u8; 6] = header.source[..6].try_into().unwrap_or_default();
            let target_net: [u8; 6] = header.target[..6].try_into().unwrap_or_default();
            let target_port = u16::from_le_bytes([header.target[6], header.target[7]]);
            let mut described = Described::new(header.command, "request", "");
            let action = if state.quirks.get(Quirk::Stall) {
                let (d, _) = wire::handle(&mut state.clone(), header.command, data);
                described = d;
                Action::Silent
            } else if state.quirks.get(Quirk::DropSession) {
                state.quirks.set(Quirk::DropSession, false);
                let (d, _) = wire::handle(&mut state.clone(), header.command, data);
                described = d;
                Action::Drop("session dropped (drop-session quirk)")
            } else if !state.routes.is_empty() && !state.routes.contains(&source_net) {
                described.detail = format!("from source {}", net_id_text(&header.source));
                Action::Drop("no route for this source Net Id: connection closed")
            } else if header.data_len as usize != data.len() {
                described.detail = format!(
                    "AMS header announces {} data bytes, the frame carries {}",
                    header.data_len,
                    data.len()
                );
                Action::Reply {
                    error: wire::err::INVALID_AMS_LENGTH,
                    data: Vec::new(),
                }
            } else if target_net != state.ams_net_id {
                described.detail = format!("for Net Id {}", net_id_text(&header.target));
                Action::Reply {
                    error: wire::err::TARGET_MACHINE_NOT_FOUND,
                    data: Vec::new(),
                }
            } else if target_port != state.ams_port {
                described.detail = format!("for AMS port {target_port}");
                Action::Reply {
                    error: wire::err::TARGET_PORT_NOT_FOUND,
                    data: Vec::new(),
                }
            } else if let Some(code) = state.quirks.refusal() {
                // Described on a copy, so that a refused request changes nothing.
                let (d, _) = wire::handle(&mut state.clone(), header.command, data);
                described = d;
                Action::Reply {
                    error: 0,
                    data: code.to_le_bytes().to_vec(),
                }
            } else {
                let (d, action) = wire::handle(&mut state, header.command, data);
                described = d;
                action
            };
            (described, action)
        };
        shared.record(peer, described, outcome_of(&action));
        match action {
            Action::Silent => continue,
            Action::Drop(_) => break,
            Action::Reply { error, data } => {
                let frame = answer_frame(&header, error, &data);
                if !stop.send(&mut stream, &frame).await {
                    break;
                }
            }
        }
    }
}

/// Why the simulator could not start (or, as a process, run).
pub type SimError = crate::process::SimError<StateError>;

#[cfg(test)]
mod tests;
