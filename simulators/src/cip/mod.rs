//! A simulated Allen-Bradley Logix controller (ControlLogix / CompactLogix) on EtherNet/IP.
//!
//! It exists so that otdrift's tests, `otdrift demo` and test rigs (`otdrift sim cip`) have
//! a Logix controller to read, to drift and to prove things about: every request is logged
//! by CIP service code (see [`crate::request_log`]), with `write: true` for anything that
//! changes state, so a test can assert that otdrift never sent one.
//!
//! # What it answers
//!
//! EtherNet/IP encapsulation on TCP: RegisterSession, UnRegisterSession, ListIdentity,
//! ListServices, ListInterfaces, NOP, SendRRData (unconnected, directly or through
//! Unconnected Send 0x52 with the route `port 1, slot`) and SendUnitData (on a connection
//! from Forward Open 0x54 or Large Forward Open 0x5B, closed by Forward Close 0x4E). Frames
//! announcing more than 65,511 bytes close the connection; unknown commands get encapsulation
//! status 0x0001; malformed Common Packet Format gets 0x0003.
//!
//! CIP services:
//!
//! | object | services |
//! |---|---|
//! | Identity (0x01) | Get Attributes All (0x01), Get Attribute Single (0x0E) |
//! | Message Router (0x02) | Multiple Service Packet (0x0A): embedded replies that would overflow the message get 0x11 |
//! | Connection Manager (0x06) | Unconnected Send (0x52), Forward Open (0x54, ≤ 511 bytes), Large Forward Open (0x5B, ≤ 4002 bytes), Forward Close (0x4E) |
//! | program name (0x64) | Get Attributes All: the project name as a STRING |
//! | Symbol (0x6B) | Get Instance Attribute List (0x55), controller scope or `Program:<name>`, attributes 1, 2, 3, 5, 6, 7, 8, 10, paged by message size with status 0x06 |
//! | Template (0x6C) | Get Attribute List (0x03) attributes 1, 2, 4, 5; Read Template (0x4C), paged with 0x06 |
//! | WallClockTime (0x8B) | Get Attribute List attribute 0x0B (µs since 1970, the host's clock) |
//! | tags (symbolic paths, elements, members) | Read Tag (0x4C), Read Tag Fragmented (0x52) |
//!
//! State-changing services are logged with `write: true` and answered like a Logix
//! controller: Write Tag (0x4D), Read-Modify-Write (0x4E on a tag) and single-fragment
//! Write Tag Fragmented (0x53) are applied; Set Attribute(s) (0x02, 0x04, 0x10) answer 0x0E
//! (not settable); Reset / Start / Stop (0x05-0x07) answer 0x0C (mode change refused).
//!
//! The controller lists, like Logix: `Program:<name>` (type 0x1068) and `Task:<name>`
//! (0x1070) in the controller scope, `Routine:<name>` (0x106D) in a program's scope, two
//! internal symbols (`__CIP_Internal`, `Map:Local`), and, with change detection on, the
//! controller-scoped LINT tags `AuditValue` and `ChangesToDetect` that a GSV rung fills on a
//! real controller. UDTs are laid out like Logix does: consecutive BOOL members packed into a
//! hidden SINT host (`ZZZZZZZZZZ<udt><n>`), members aligned to their size, the structure
//! padded to its alignment (at least 4); STRING is the predefined 88-byte `LEN` + `DATA[82]`
//! structure (template 0x0FCE). Tag-level BOOL arrays are read as DWORDs (type 0xD3).
//!
//! The audit value is derived from the project structure (name, UDTs, programs, routines,
//! tasks, tags with their types) plus a logic revision (`logic N`) and `audit_seed`: a
//! structural change ("download": `add-tag`, `remove-tag`, `add-program`, `add-member`...)
//! or a logic edit changes it, and putting the change back restores it. (A real controller
//! computes a new value on every download, so there putting back is a change to approve.)
//!
//! What it cannot emulate: ladder logic and its execution (values only move by `tick`,
//! commands or Write Tag), I/O modules and their connection tags, controller faults, the
//! keyswitch, CIP Security, routing beyond one backplane hop, implicit (class 1) I/O
//! connections, connection timeouts while idle (connections live as long as the TCP session),
//! the real audit-value algorithm, tag external-access restrictions, and multi-fragment
//! Write Tag Fragmented (refused with 0x08).
//!
//! # State file
//!
//! TOML; unknown keys are refused.
//!
//! ```toml
//! name = "Line3_Oven"          # project name (default "Simulated")
//! slot = 0                     # backplane slot of the controller (default 0)
//! tick_ms = 1000               # how often ticking tags move; 0 = only on `tick` (default 1000)
//! change_detection = true      # AuditValue / ChangesToDetect tags present (default true)
//! changes_to_detect = 0xFFFFFFFFFFFFFFFF
//! audit_seed = 0               # mixed into the audit value (default 0)
//! task = ["MainTask"]          # task names (a top-level key: before any table)
//!
//! [identity]                   # all optional
//! vendor_id = 1
//! device_type = 14
//! product_code = 108
//! revision = "33.11"
//! serial_number = 0x60C0FFEE
//! product_name = "1769-L33ER/A LOGIX5333ER"
//! status = 0x3060
//!
//! [[udt]]                      # user-defined types, in dependency order or not
//! name = "Recipe_t"
//! members = [{ name = "Temp", type = "REAL" }, { name = "Ramp", type = "REAL", dims = 4 },
//!            { name = "Enable", type = "BOOL" }, { name = "Name", type = "STRING" }]
//!
//! [[program]]
//! name = "Oven"
//! routines = ["MainRoutine", "Ramp"]
//!
//! [[tag]]
//! name = "Oven_SP"             # a Logix name
//! type = "REAL"                # BOOL SINT INT DINT LINT USINT UINT UDINT ULINT REAL LREAL STRING or a UDT
//! program = "Oven"             # optional: program scope
//! dims = [4]                   # optional: up to 3 dimensions
//! value = 180.0                # optional: scalar, (nested) list, or a table for a UDT
//! tick = "sine"                # optional: "counter" (+1 per tick) or "sine" (50 ± 10)
//!
//! [quirks]                     # optional; same names as the `quirk` command
//! no-audit = true
//! ```
//!
//! # Commands
//!
//! One command per line; the reply is one line: `ok`, `ok <json>` or `error: <reason>`.
//! Available through [`CipSimHandle::command`], the process's stdin and the control port.
//!
//! | command | effect |
//! |---|---|
//! | `set TAG VALUE` | sets one value: `set Oven_SP 185.5`, `set Program:Oven.Zone_Temp[2] 190`, `set Recipe.Name Epoxy B` (not a download) |
//! | `get [TAG]` | `ok <json>`: one value, or every tag |
//! | `add-tag [Program:P.]NAME TYPE[dims]` | download: a new tag (`add-tag Spare DINT[4]`) |
//! | `remove-tag [Program:P.]NAME` | download: removes a tag |
//! | `add-program NAME [ROUTINE...]` / `remove-program NAME` | download |
//! | `add-member UDT NAME TYPE[dim]` / `remove-member UDT NAME` | download: changes a UDT (values keep their other members) |
//! | `logic N` | sets the logic revision (an online edit of ladder logic): changes the audit value |
//! | `audit` | `ok {"audit_value":"16#...","changes_to_detect":"16#...","change_detection":true,"logic":0}` |
//! | `change-detection on\|off` | the AuditValue / ChangesToDetect tags exist or not |
//! | `identity` / `identity FIELD VALUE` | shows / sets `revision`, `serial_number`, `product_code`, `vendor_id`, `status`, `product_name`, `name` |
//! | `tick [N]` | moves ticking tags once (or N times) |
//! | `quirk` / `quirk NAME on\|off` | lists / switches quirks (below); `quirk refuse-all on [STATUS]`, `quirk refuse-tag on TAG [STATUS]` take a parameter |
//! | `log` / `log clear` | `ok {"total":N,"writes":W,"by_service":{"0x4c":12,...}}` / resets the log |
//! | `help` | one-line summary |
//!
//! Quirks: `stall` (accept requests, never answer), `drop-session` (one-shot: the next CIP
//! request closes the session, then the quirk switches off), `no-audit` (firmware before
//! v20: no change-detection tags), `no-multi-service` (0x0A answered 0x08),
//! `no-large-forward-open` (0x5B answered 0x08), `no-connections` (every Forward Open
//! refused, 0x01/0x0113), `no-browse` (0x55 answered 0x08), `browse-drops-session` (0x55
//! closes the session), `partial-paging` (3 symbols per 0x55 page), `msp-no-header`
//! (0x0A answered without its count and offsets), `placeholder-identity` (Identity answered
//! with vendor 0, product 0, serial 0, empty name), `malformed` (every reply's CPF data item
//! announces 7 bytes more than it carries).
//!
//! Quirks that make the collector's field-truth decisions testable (decision 0004):
//! `refuse-all [STATUS]` (every message-router service, embedded ones too, answered with one
//! general status, 0x08 unless given: `quirk refuse-all on 0x05`; the connection manager still
//! works), `refuse-tag TAG [STATUS]` (reads of a listed tag answered 0x05 unless given; `quirk
//! refuse-tag on Program:Oven.Ramp_Rate 0x08`; repeat for more tags, `off` forgets them all),
//! `busy` (every message-router request, a Multiple Service Packet as a whole too, answered
//! 0x02), `broken-msp` (Multiple Service Packet replies whose last offset points past the
//! end), `foreign-connection-id` (connected replies carry the O->T id, as cpppo's do),
//! `no-program-name` (class 0x64 answered 0x08), `garbled-clock` (the wall clock answered as
//! cpppo does: `0b 00 16 00`, no count), `browse-encap-unsupported` (0x55 answered with
//! encapsulation status 0x0008 and no reply, then the connection closed, as cpppo does),
//! `refuse-template` (Read Template answered 0x05). In a state file, `refuse-all = 5` and
//! `refuse-tag = "Oven_SP"` (or a list) switch them on with a parameter.
//!
//! # Request log
//!
//! One entry per encapsulation command, with `service` = 0x100 + the command
//! (0x165 RegisterSession, 0x16F SendRRData, 0x170 SendUnitData, ...), and one per CIP
//! service inside it: Unconnected Send is unwrapped (its embedded service is logged), a
//! Multiple Service Packet is logged (0x0A, `count` = services) and so is each embedded
//! service. `address` is the class of a logical path; `count` the element count of a read.

mod commands;
mod file;
mod layout;
mod path;
mod services;
mod state;
mod tags;

use std::{
    io,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};

pub use self::state::{CipState, OVEN_DEMO_TOML, Quirk, QuirkArg, Quirks, StateError};
pub use crate::control::CommandError;
use crate::{
    request_log::Described,
    runtime::{Protocol, SimHandle},
};
use services::{Conn, Ctx};

/// The controller-scoped tag a GSV rung fills with the controller's audit value.
pub const AUDIT_TAG: &str = "AuditValue";
/// The controller-scoped tag a GSV rung fills with the changes-to-detect mask.
pub const CHANGES_TAG: &str = "ChangesToDetect";

/// Most simultaneous TCP connections (a CompactLogix 5380 allows more; tests need few).
const MAX_CONNECTIONS: usize = 64;
/// Largest encapsulation data length (CIP Vol. 2).
const MAX_ENCAP_DATA: usize = 65_511;

type Shared = crate::runtime::Shared<CipSimulator>;

/// What the CIP simulator keeps beside its state: the next session handle.
#[derive(Debug)]
pub struct Sessions {
    next_session: Mutex<u32>,
}

/// Request-log entries of the CIP simulator.
impl crate::runtime::Shared<CipSimulator> {
    fn record_encap(&self, peer: SocketAddr, command: u16, outcome: &str) {
        let name = match command {
            0x0000 => "nop",
            0x0004 => "list_services",
            0x0063 => "list_identity",
            0x0064 => "list_interfaces",
            0x0065 => "register_session",
            0x0066 => "unregister_session",
            0x006F => "send_rr_data",
            0x0070 => "send_unit_data",
            _ => "unknown_command",
        };
        self.record(
            peer,
            Described::new(
                0x100 + (command & 0xFF),
                name,
                format!("encapsulation command 0x{command:04x}"),
            ),
            outcome,
        );
    }
}

/// Starts simulated Logix controllers.
#[derive(Debug)]
pub struct CipSimulator;

/// Controls a running simulator. Cheap to clone; the last clone dropped stops it.
pub type CipSimHandle = SimHandle<CipSimulator>;

impl CipSimulator {
    /// Binds `listen` and serves `state` until [`CipSimHandle::shutdown`] or the last handle
    /// is dropped. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub async fn start(listen: SocketAddr, state: CipState) -> io::Result<CipSimHandle> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let tick_ms = state.tick_ms;
        let sessions = Sessions {
            next_session: Mutex::new(0x0001_0000),
        };
        let shared = crate::runtime::Shared::new(local_addr, state, sessions);
        shared.serve(listener, Some(MAX_CONNECTIONS), serve);
        shared.tick_every(tick_ms);
        Ok(SimHandle::new(shared))
    }
}

impl Protocol for CipSimulator {
    const NAME: &'static str = "cip";
    type State = CipState;
    type Quirk = Quirk;
    type QuirkArg = QuirkArg;
    type Extra = Sessions;
    type StartError = std::convert::Infallible;

    fn quirks(state: &mut CipState) -> &mut Quirks {
        &mut state.quirks
    }

    fn tick(shared: &Shared) {
        shared.lock_state().tick();
    }

    fn load(path: &Path) -> Result<CipState, StateError> {
        CipState::load(path)
    }

    fn demo() -> CipState {
        CipState::demo()
    }

    async fn start(listen: SocketAddr, state: CipState) -> Result<CipSimHandle, SimError> {
        CipSimulator::start(listen, state)
            .await
            .map_err(SimError::bind(Self::NAME, listen))
    }
}

/// CIP's own controls of a running simulator.
impl SimHandle<CipSimulator> {
    /// Sets one value by tag path (`Oven_SP`, `Program:Oven.Zone_Temp[2]`, `Recipe.Temp`).
    ///
    /// # Errors
    /// Unknown tag or a value that does not fit its type.
    pub fn set_tag(&self, tag: &str, value: &str) -> Result<(), CommandError> {
        self.command(&format!("set {tag} {value}")).map(|_| ())
    }

    /// A value as JSON.
    ///
    /// # Errors
    /// Unknown tag.
    pub fn tag(&self, tag: &str) -> Result<serde_json::Value, CommandError> {
        let text = self.command(&format!("get {tag}"))?;
        serde_json::from_str(&text).map_err(|e| CommandError::Usage(e.to_string()))
    }

    /// A download adding a tag (`add_tag("Program:Oven.Fan", "REAL")`).
    ///
    /// # Errors
    /// Bad name or type, or the tag exists.
    pub fn add_tag(&self, path: &str, ty: &str) -> Result<(), CommandError> {
        self.command(&format!("add-tag {path} {ty}")).map(|_| ())
    }

    /// A download removing a tag.
    ///
    /// # Errors
    /// No such tag.
    pub fn remove_tag(&self, path: &str) -> Result<(), CommandError> {
        self.command(&format!("remove-tag {path}")).map(|_| ())
    }

    /// The controller's audit value now.
    #[must_use]
    pub fn audit_value(&self) -> u64 {
        self.shared().lock_state().audit_value()
    }

    /// A copy of the whole state.
    #[must_use]
    pub fn state(&self) -> CipState {
        self.shared().lock_state().clone()
    }
}

/// What to do after a frame.
enum Next {
    Reply(Vec<u8>),
    /// Reply, then close the connection (an encapsulation-level refusal, as cpppo does).
    ReplyThenClose(Vec<u8>),
    Silent,
    Close,
}

struct Conversation {
    session: u32,
    conns: Vec<Conn>,
    next_conn_id: u32,
}

async fn serve(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut stop = shared.stop_for(peer);
    let mut conv = Conversation {
        session: 0,
        conns: Vec::new(),
        next_conn_id: 0,
    };
    loop {
        let mut head = [0u8; 24];
        let Some(Ok(_)) = stop.or(stream.read_exact(&mut head)).await else {
            break;
        };
        let command = u16::from_le_bytes([head[0], head[1]]);
        let length = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let session = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if length > MAX_ENCAP_DATA {
            break;
        }
        let mut data = vec![0u8; length];
        let Some(Ok(_)) = stop.or(stream.read_exact(&mut data)).await else {
            break;
        };
        let next = frame(&shared, &mut conv, peer, command, session, &head, &data);
        let (bytes, then_close) = match next {
            Next::Close => break,
            Next::Silent => continue,
            Next::Reply(bytes) => (bytes, false),
            Next::ReplyThenClose(bytes) => (bytes, true),
        };
        if !stop.send(&mut stream, &bytes).await || then_close {
            break;
        }
    }
}

fn encap(command: u16, session: u32, status: u32, context: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + data.len());
    out.extend_from_slice(&command.to_le_bytes());
    out.extend_from_slice(&(data.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(context);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Reads the CPF items of a SendRRData / SendUnitData request.
fn cpf(data: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut p = 6usize; // interface handle, timeout
    let count = usize::from(u16::from_le_bytes([*data.get(p)?, *data.get(p + 1)?]));
    p += 2;
    if count > 8 {
        return None;
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = u16::from_le_bytes([*data.get(p)?, *data.get(p + 1)?]);
        let len = usize::from(u16::from_le_bytes([*data.get(p + 2)?, *data.get(p + 3)?]));
        p += 4;
        items.push((kind, data.get(p..p + len)?));
        p += len;
    }
    (p == data.len()).then_some(items)
}

fn cpf_reply(items: &[(u16, &[u8])], overstate: usize) -> Vec<u8> {
    let mut out = vec![0u8; 6];
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    for (i, (kind, body)) in items.iter().enumerate() {
        out.extend_from_slice(&kind.to_le_bytes());
        let extra = if i + 1 == items.len() { overstate } else { 0 };
        out.extend_from_slice(
            &((body.len() + extra).min(usize::from(u16::MAX)) as u16).to_le_bytes(),
        );
        out.extend_from_slice(body);
    }
    out
}

#[allow(clippy::too_many_lines)]
fn frame(
    shared: &Shared,
    conv: &mut Conversation,
    peer: SocketAddr,
    command: u16,
    session: u32,
    head: &[u8; 24],
    data: &[u8],
) -> Next {
    let context = &head[12..20];
    let (stall, malformed) = {
        let state = shared.lock_state();
        (
            state.quirks.get(Quirk::Stall),
            state.quirks.get(Quirk::Malformed),
        )
    };
    if stall {
        shared.record_encap(peer, command, "no answer (stall quirk)");
        return Next::Silent;
    }
    match command {
        0x0000 => {
            shared.record_encap(peer, command, "ok");
            Next::Silent
        }
        0x0065 => {
            if data.len() != 4 || data[0] != 1 {
                shared.record_encap(peer, command, "unsupported protocol version");
                return Next::Reply(encap(command, 0, 0x0069, context, &[]));
            }
            if conv.session == 0 {
                let mut next = shared
                    .extra
                    .next_session
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *next = next.wrapping_add(1).max(1);
                conv.session = *next;
            }
            shared.record_encap(peer, command, "ok");
            Next::Reply(encap(command, conv.session, 0, context, &[1, 0, 0, 0]))
        }
        0x0066 => {
            shared.record_encap(peer, command, "session closed");
            Next::Close
        }
        0x0063 | 0x0004 | 0x0064 => {
            shared.record_encap(peer, command, "ok");
            let body: Vec<u8> = match command {
                0x0063 => {
                    let state = shared.lock_state();
                    let id = &state.identity;
                    let mut item = Vec::new();
                    item.extend_from_slice(&1u16.to_le_bytes()); // encapsulation version
                    item.extend_from_slice(&2u16.to_be_bytes()); // sockaddr: AF_INET
                    item.extend_from_slice(&shared.local_addr().port().to_be_bytes());
                    match shared.local_addr().ip() {
                        std::net::IpAddr::V4(ip) => item.extend_from_slice(&ip.octets()),
                        std::net::IpAddr::V6(_) => item.extend_from_slice(&[0; 4]),
                    }
                    item.extend_from_slice(&[0; 8]);
                    item.extend_from_slice(&id.vendor_id.to_le_bytes());
                    item.extend_from_slice(&id.device_type.to_le_bytes());
                    item.extend_from_slice(&id.product_code.to_le_bytes());
                    item.push(id.major);
                    item.push(id.minor);
                    item.extend_from_slice(&id.status.to_le_bytes());
                    item.extend_from_slice(&id.serial.to_le_bytes());
                    let name = id.product_name.as_bytes();
                    item.push(name.len().min(255) as u8);
                    item.extend_from_slice(&name[..name.len().min(255)]);
                    item.push(3); // state: operational
                    let mut out = 1u16.to_le_bytes().to_vec();
                    out.extend_from_slice(&0x000Cu16.to_le_bytes());
                    out.extend_from_slice(&(item.len() as u16).to_le_bytes());
                    out.extend_from_slice(&item);
                    out
                }
                0x0004 => {
                    let mut item = 1u16.to_le_bytes().to_vec();
                    item.extend_from_slice(&0x0120u16.to_le_bytes());
                    item.extend_from_slice(b"Communications\0\0");
                    let mut out = 1u16.to_le_bytes().to_vec();
                    out.extend_from_slice(&0x0100u16.to_le_bytes());
                    out.extend_from_slice(&(item.len() as u16).to_le_bytes());
                    out.extend_from_slice(&item);
                    out
                }
                _ => 0u16.to_le_bytes().to_vec(),
            };
            Next::Reply(encap(command, session, 0, context, &body))
        }
        0x006F | 0x0070 => {
            if conv.session == 0 || session != conv.session {
                shared.record_encap(peer, command, "invalid session handle");
                return Next::Reply(encap(command, session, 0x0064, context, &[]));
            }
            let Some(items) = cpf(data) else {
                shared.record_encap(peer, command, "incorrect data");
                return Next::Reply(encap(command, session, 0x0003, context, &[]));
            };
            {
                let mut state = shared.lock_state();
                if state.quirks.get(Quirk::DropSession) {
                    state.quirks.set(Quirk::DropSession, false);
                    drop(state);
                    shared.record_encap(peer, command, "session dropped (drop-session quirk)");
                    return Next::Close;
                }
            }
            shared.record_encap(peer, command, "ok");
            let overstate = if malformed { 7 } else { 0 };
            if command == 0x006F {
                let message = match items.as_slice() {
                    [(0x0000, []), (0x00B2, message)] => *message,
                    _ => return Next::Reply(encap(command, session, 0x0003, context, &[])),
                };
                let routed = route(shared, conv, peer, message, services::UNCONNECTED_SIZE);
                if let Some(status) = routed.encap_status {
                    return Next::ReplyThenClose(encap(command, session, status, context, &[]));
                }
                if routed.close {
                    return Next::Close;
                }
                let reply = routed.reply;
                let body = cpf_reply(&[(0x0000, &[]), (0x00B2, &reply)], overstate);
                Next::Reply(encap(command, session, 0, context, &body))
            } else {
                let (conn_id, payload) = match items.as_slice() {
                    [(0x00A1, addr), (0x00B1, payload)]
                        if addr.len() == 4 && payload.len() >= 2 =>
                    {
                        (
                            u32::from_le_bytes([addr[0], addr[1], addr[2], addr[3]]),
                            *payload,
                        )
                    }
                    _ => return Next::Reply(encap(command, session, 0x0003, context, &[])),
                };
                let sequence = &payload[..2];
                let message = &payload[2..];
                let routed = match conv.conns.iter().find(|c| c.o_t_id == conn_id).copied() {
                    Some(c) => route(
                        shared,
                        conv,
                        peer,
                        message,
                        usize::from(c.size).saturating_sub(2),
                    ),
                    None => {
                        let service = message.first().copied().unwrap_or(0);
                        Routed {
                            reply: vec![service | 0x80, 0, 0x01, 1, 0x07, 0x01],
                            close: false,
                            encap_status: None,
                        }
                    }
                };
                if let Some(status) = routed.encap_status {
                    return Next::ReplyThenClose(encap(command, session, status, context, &[]));
                }
                if routed.close {
                    return Next::Close;
                }
                let reply = routed.reply;
                // CIP addresses replies with the T->O id; cpppo copies the request's O->T id.
                let foreign = shared.lock_state().quirks.get(Quirk::ForeignConnectionId);
                let t_o = conv
                    .conns
                    .iter()
                    .find(|c| c.o_t_id == conn_id)
                    .map_or(conn_id, |c| if foreign { c.o_t_id } else { c.t_o_id });
                let mut data_item = sequence.to_vec();
                data_item.extend_from_slice(&reply);
                let body = cpf_reply(
                    &[(0x00A1, &t_o.to_le_bytes()), (0x00B1, &data_item)],
                    overstate,
                );
                Next::Reply(encap(command, session, 0, context, &body))
            }
        }
        _ => {
            shared.record_encap(peer, command, "invalid command");
            Next::Reply(encap(command, session, 0x0001, context, &[]))
        }
    }
}

/// What the message router made of one message.
struct Routed {
    reply: Vec<u8>,
    /// Close the session instead of answering.
    close: bool,
    /// Answer with this encapsulation status (no reply), then close.
    encap_status: Option<u32>,
}

fn route(
    shared: &Shared,
    conv: &mut Conversation,
    peer: SocketAddr,
    message: &[u8],
    capacity: usize,
) -> Routed {
    let mut state = shared.lock_state();
    let mut ctx = Ctx {
        state: &mut state,
        capacity,
        log: Vec::new(),
        close: false,
        encap_status: None,
        conns: &mut conv.conns,
        next_conn_id: &mut conv.next_conn_id,
    };
    let reply = services::handle(&mut ctx, message, false);
    let (log, close, encap_status) = (std::mem::take(&mut ctx.log), ctx.close, ctx.encap_status);
    drop(state);
    for (described, outcome) in log {
        shared.record(peer, described, outcome);
    }
    Routed {
        reply,
        close,
        encap_status,
    }
}

/// Why the simulator could not start (or, as a process, run).
pub type SimError = crate::process::SimError<StateError>;

#[cfg(test)]
mod tests;
