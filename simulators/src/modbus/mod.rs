//! A simulated Modbus TCP device that behaves like a real small PLC.
//!
//! It exists so that otdrift's tests, `otdrift demo` and test rigs
//! (`otdrift sim modbus`) have a device to read, to drift, and to prove
//! things about: every request is logged (see [`crate::request_log`]), so a
//! test can assert that otdrift never sent a write.
//!
//! Behaviour, like a real device:
//! - every read function (FC 1, 2, 3, 4, 43/14) and every common write
//!   function (FC 5, 6, 15, 16, 22, 23) is answered; writes are applied;
//! - an address outside the defined blocks of a table answers exception
//!   0x02; quantities outside the spec (reads 1..=125 registers, 1..=2000
//!   bits; writes 1..=123 registers, 1..=1968 coils; FC 23 1..=125 read and
//!   1..=121 written) answer 0x03, as do malformed requests and coil values
//!   other than 0x0000/0xFF00; unsupported functions (FC 7, 8, 11, 12, 17,
//!   20, 21, 24, custom codes) and MEI types other than 14 answer 0x01;
//! - requests for the configured unit, 0 and 255 are answered; any other
//!   unit gets 0x0B (gateway target device failed to respond);
//! - each connection is independent and served in order; the state is
//!   shared; at most `max_connections` connections are open at once (more
//!   are closed right after accept); a frame whose MBAP length is not
//!   2..=254 closes the connection, a frame with a protocol id other than 0
//!   is ignored.
//!
//! # State file
//!
//! TOML; unknown keys are refused so typos do not go unnoticed.
//!
//! ```toml
//! unit_id = 1          # default 1. The unit this device answers; 0 and 255 are
//!                      # also accepted (Modbus TCP convention); any other unit
//!                      # gets exception 0x0B, like a gateway.
//! tick_ms = 1000       # default 1000. How often ticking registers move;
//!                      # 0 = only on the `tick` command.
//! max_connections = 32 # default 32. Simultaneous TCP connections.
//!
//! [identity]           # answers Read Device Identification (FC 43 / MEI 14).
//!                      # Omit the table and the device refuses FC 43 with
//!                      # exception 0x01 (illegal function), like many devices.
//! vendor_name = "otdrift"                  # required (basic object 0x00)
//! product_code = "SIM-PRESS"               # required (0x01)
//! revision = "1.4"                         # required (0x02)
//! vendor_url = "https://example.invalid"   # optional (regular object 0x03)
//! product_name = "Simulated press"         # optional (0x04)
//! model_name = "P-7"                       # optional (0x05)
//! user_application_name = "line 3"         # optional (0x06)
//! enabled = true                           # optional; false = defined but
//!                                          # refused until `identity on`
//! [identity.extended]                      # optional extended objects
//! "0x80" = "serial 0012345"                # id 0x80..=0xFF (or decimal)
//!
//! [[holding]]          # a block of holding registers; several blocks
//! start = 0            # allowed, they must not overlap. Adjacent blocks
//! values = [100, 200, 300]   # read as one area; gaps answer 0x02.
//!                      # Register values 0..=65535, or -32768..=-1 stored as
//!                      # two's complement.
//! [[holding]]
//! start = 1000
//! count = 10000        # instead of values: `count` registers filled with
//! fill = 7             # `fill` (default 0). With both, `values` come first
//!                      # and the rest up to `count` is filled.
//! [[input]]
//! start = 0
//! values = [0, 0]
//! tick = "counter"     # optional, register blocks only: "counter" adds 1
//!                      # (wrapping) per tick to every register of the block;
//!                      # "sine": register i of the block becomes
//!                      # 1000 + round(1000·sin(2π·(n+i)/60)) on tick n
//!                      # (0..=2000, period 60 ticks; a block given by
//!                      # `count` starts on the wave); omit for static.
//! [[coil]]
//! start = 0
//! values = [true, false]   # bits: true/false or 1/0
//! [[discrete]]
//! start = 0
//! count = 16
//!
//! [quirks]             # optional, all default false; same as `quirk` below
//! stall = false
//! short_read = false
//! limit_64 = false
//! busy = false
//! refuse_reads = false
//! conformity_83 = false
//! slow = false
//! ```
//!
//! FC 43 implements the specification's access types: read codes 1 (basic,
//! objects 0x00..=0x02), 2 (regular, ..=0x7F), 3 (extended, ..=0xFF) stream
//! the defined objects starting at the requested object id (an id that is
//! not in the category restarts at the first object); if they do not all fit
//! in one 253-byte PDU the answer has `more_follows = 0xFF` and
//! `next_object_id` set. Read code 4 returns one object (0x02 if it is not
//! defined). The conformity level is 0x81/0x82/0x83 by the highest object
//! defined.
//!
//! # Commands
//!
//! One command per line; the reply is one line: `ok`, `ok <json>` or
//! `error: <reason>`. Available through [`ModbusSimHandle::command`], on the
//! process's stdin and on the optional control port of `otdrift sim modbus`. Blank lines
//! and lines starting with `#` are ignored (no reply).
//!
//! | command | effect |
//! |---|---|
//! | `set holding\|input\|coil\|discrete ADDR VALUE [VALUE...]` | writes consecutive addresses (all must be inside defined blocks, else nothing is written). Registers: 0..=65535, -32768..=-1, 0x...; bits: 0/1/true/false. Not logged as a request. |
//! | `get holding\|input\|coil\|discrete ADDR [COUNT]` | `ok [values]` without a Modbus request |
//! | `identity` | `ok {"enabled":..,"conformity_level":..,"objects":{..}}` |
//! | `identity FIELD VALUE...` | sets an object (`vendor_name`, `product_code`, `revision`, `vendor_url`, `product_name`, `model_name`, `user_application_name` or an id 0x80..0xFF); the value is the rest of the line. Does not switch FC 43 on. |
//! | `identity off` / `identity on` | refuse FC 43 with 0x01 from now on / answer it again |
//! | `tick [N]` | advances ticking registers once (or N times): deterministic tests without waiting |
//! | `quirk` | `ok {"busy":false,"conformity-83":false,"limit-64":false,"refuse-reads":false,"short-read":false,"stall":false}` |
//! | `quirk NAME on\|off` | `stall`: accept requests, never answer (timeouts); `short-read`: register reads answer one register fewer than asked, bit reads one data byte fewer (malformed); `limit-64`: register reads of more than 64 answer 0x03; `busy`: every request answers 0x06; `refuse-reads`: every table read answers 0x02; `conformity-83`: identification claims extended objects it does not have (pymodbus's server does); `slow`: every answer comes 50 ms late |
//! | `log` | `ok {"total":N,"writes":W,"by_function":{"3":80,...}}` |
//! | `log clear` | resets the in-memory log and its counters |
//! | `help` | one-line summary |

mod commands;
mod pdu;
mod state;

use std::{io, net::SocketAddr, path::Path, sync::Arc};

use chrono::Utc;
use tokio::{io::AsyncReadExt, net::TcpStream};

pub use self::state::{
    DEFAULT_MAX_CONNECTIONS, ModbusState, PRESS_DEMO_TOML, Quirk, Quirks, StateError,
};
pub use crate::control::CommandError;
use crate::{
    request_log::LoggedRequest,
    runtime::{Protocol, QuirkSet, SimHandle},
};
use state::TableKind;

type Shared = crate::runtime::Shared<ModbusSimulator>;

/// Starts simulated Modbus TCP devices.
#[derive(Debug)]
pub struct ModbusSimulator;

/// Controls a running simulator: its address, its request log, mutations.
///
/// Cheap to clone; all clones control the same simulator. Dropping the last
/// clone shuts the simulator down.
pub type ModbusSimHandle = SimHandle<ModbusSimulator>;

impl ModbusSimulator {
    /// Binds `listen` (use `127.0.0.1:0` in tests: the OS picks a free port,
    /// see [`ModbusSimHandle::local_addr`]) and serves `state` until
    /// [`ModbusSimHandle::shutdown`] or until the last handle is dropped.
    /// Must be called inside a tokio runtime; the tick task runs while the
    /// simulator runs.
    ///
    /// # Errors
    /// If the address cannot be bound.
    pub async fn start(listen: SocketAddr, state: ModbusState) -> io::Result<ModbusSimHandle> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (tick_ms, max_connections) = (state.tick_ms, state.max_connections);
        let shared = crate::runtime::Shared::new(local_addr, state, ());
        shared.serve(listener, Some(max_connections), serve_connection);
        shared.tick_every(tick_ms);
        Ok(SimHandle::new(shared))
    }
}

impl Protocol for ModbusSimulator {
    const NAME: &'static str = "modbus";
    type State = ModbusState;
    type Quirk = Quirk;
    type QuirkArg = ();
    type Extra = ();
    type StartError = std::convert::Infallible;

    fn quirks(state: &mut ModbusState) -> &mut QuirkSet<Quirk> {
        &mut state.quirks
    }

    fn tick(shared: &Shared) {
        shared.lock_state().tick();
    }

    fn load(path: &Path) -> Result<ModbusState, StateError> {
        ModbusState::load(path)
    }

    fn demo() -> ModbusState {
        ModbusState::press_demo()
    }

    async fn start(listen: SocketAddr, state: ModbusState) -> Result<ModbusSimHandle, SimError> {
        ModbusSimulator::start(listen, state)
            .await
            .map_err(SimError::bind(Self::NAME, listen))
    }
}

/// Modbus's own controls of a running simulator.
impl SimHandle<ModbusSimulator> {
    /// Sets holding registers `addr..` (all must exist, else nothing is set).
    ///
    /// # Errors
    /// [`CommandError::Address`] if an address is outside the defined blocks.
    pub fn set_holding(&self, addr: u16, values: &[u16]) -> Result<(), CommandError> {
        commands::set_registers(
            &mut self.shared().lock_state(),
            TableKind::Holding,
            addr,
            values,
        )
    }

    /// Sets input registers `addr..` (all must exist, else nothing is set).
    ///
    /// # Errors
    /// [`CommandError::Address`] if an address is outside the defined blocks.
    pub fn set_input(&self, addr: u16, values: &[u16]) -> Result<(), CommandError> {
        commands::set_registers(
            &mut self.shared().lock_state(),
            TableKind::Input,
            addr,
            values,
        )
    }

    /// Sets one coil.
    ///
    /// # Errors
    /// [`CommandError::Address`] if the address is outside the defined blocks.
    pub fn set_coil(&self, addr: u16, value: bool) -> Result<(), CommandError> {
        self.set_coils(addr, &[value])
    }

    /// Sets coils `addr..` (all must exist, else nothing is set).
    ///
    /// # Errors
    /// [`CommandError::Address`] if an address is outside the defined blocks.
    pub fn set_coils(&self, addr: u16, values: &[bool]) -> Result<(), CommandError> {
        commands::set_bits(
            &mut self.shared().lock_state(),
            TableKind::Coil,
            addr,
            values,
        )
    }

    /// Sets discrete inputs `addr..` (all must exist, else nothing is set).
    ///
    /// # Errors
    /// [`CommandError::Address`] if an address is outside the defined blocks.
    pub fn set_discrete(&self, addr: u16, values: &[bool]) -> Result<(), CommandError> {
        commands::set_bits(
            &mut self.shared().lock_state(),
            TableKind::Discrete,
            addr,
            values,
        )
    }

    /// Holding register value, `None` if the address is not defined.
    #[must_use]
    pub fn holding(&self, addr: u16) -> Option<u16> {
        self.shared().lock_state().holding(addr)
    }

    /// Input register value, `None` if the address is not defined.
    #[must_use]
    pub fn input(&self, addr: u16) -> Option<u16> {
        self.shared().lock_state().input(addr)
    }

    /// Coil value, `None` if the address is not defined.
    #[must_use]
    pub fn coil(&self, addr: u16) -> Option<bool> {
        self.shared().lock_state().coil(addr)
    }

    /// Discrete input value, `None` if the address is not defined.
    #[must_use]
    pub fn discrete(&self, addr: u16) -> Option<bool> {
        self.shared().lock_state().discrete(addr)
    }

    /// A snapshot of the whole device state.
    #[must_use]
    pub fn state(&self) -> ModbusState {
        self.shared().lock_state().clone()
    }
}

/// MBAP header length (transaction id, protocol id, length, unit id).
const MBAP_LEN: usize = 7;
/// Largest MBAP length field: unit id + 253-byte PDU.
const MAX_MBAP_LENGTH: usize = 254;

/// Reads one ADU into `buf`; returns its total length, `None` on a clean
/// close between frames.
async fn read_frame(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    if stream.read(&mut buf[..1]).await? == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut buf[1..MBAP_LEN]).await?;
    let length = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if !(2..=MAX_MBAP_LENGTH).contains(&length) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("MBAP length {length} outside 2..={MAX_MBAP_LENGTH}"),
        ));
    }
    let total = MBAP_LEN - 1 + length;
    stream.read_exact(&mut buf[MBAP_LEN..total]).await?;
    Ok(Some(total))
}

async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut stop = shared.stop_for(peer);
    let mut buf = [0u8; MBAP_LEN - 1 + MAX_MBAP_LENGTH];
    loop {
        let Some(read) = stop.or(read_frame(&mut stream, &mut buf)).await else {
            break;
        };
        let total = match read {
            Ok(Some(total)) => total,
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(%peer, %err, "closing modbus connection");
                break;
            }
        };
        let time = Utc::now();
        let (transaction, protocol, unit) = ([buf[0], buf[1]], [buf[2], buf[3]], buf[6]);
        if protocol != [0, 0] {
            tracing::debug!(%peer, "ignoring frame with protocol id {protocol:?}");
            continue;
        }
        let pdu = &buf[MBAP_LEN..total];
        let (described, answer, slow) = {
            let mut state = shared.lock_state();
            let (described, answer) = pdu::handle(&mut state, unit, pdu);
            (described, answer, state.quirks.get(Quirk::Slow))
        };
        let response = answer.response_pdu(pdu.first().copied().unwrap_or_default());
        let mut entry =
            LoggedRequest::new(ModbusSimulator::NAME, peer, described, answer.outcome());
        entry.time = time;
        entry.unit_id = Some(unit);
        shared.log().record(entry);
        let Some(response) = response else {
            continue;
        };
        if slow {
            tokio::time::sleep(std::time::Duration::from_millis(state::SLOW_ANSWER_MS)).await;
        }
        let mut frame = Vec::with_capacity(MBAP_LEN + response.len());
        frame.extend_from_slice(&transaction);
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&((response.len() + 1) as u16).to_be_bytes());
        frame.push(unit);
        frame.extend_from_slice(&response);
        if !stop.send(&mut stream, &frame).await {
            break;
        }
    }
}

/// Why the simulator could not start (or, as a process, run).
pub type SimError = crate::process::SimError<StateError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::testing::{Process, assert_refuses_a_missing_state_file};
    use tokio_modbus::client::{Reader, tcp};

    #[tokio::test]
    async fn run_prints_ready_lines_and_serves_the_control_port() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("requests.jsonl");
        let mut process = Process::<ModbusSimulator>::start(log_path.clone()).await;
        let modbus = process.served;
        assert!(modbus.ip().is_loopback() && process.control.ip().is_loopback());
        assert_eq!(process.send(&["set holding 0 4242"]).await, ["ok"]);

        let mut ctx = tcp::connect(modbus).await.expect("modbus connect");
        // A well-behaved simulator answers in full, so the client's debug assertion holds.
        #[allow(clippy::disallowed_methods)]
        let read = ctx.read_holding_registers(0, 2).await.expect("transport");
        assert_eq!(read, Ok(vec![4242, 3]));

        let replies = process.send(&["log", "bogus"]).await;
        assert_eq!(
            replies[0],
            r#"ok {"total":1,"writes":0,"by_function":{"3":1}}"#
        );
        let bogus = &replies[1];
        assert!(bogus.starts_with("error: unknown command"), "{bogus}");

        process.stop().await;
        assert!(
            TcpStream::connect(modbus).await.is_err(),
            "modbus port closed"
        );
        let logged =
            crate::request_log::RequestLog::read_json_lines(&log_path).expect("request log file");
        assert_eq!(logged.len(), 1);
    }

    #[tokio::test]
    async fn run_refuses_a_bad_state_file() {
        assert_refuses_a_missing_state_file::<ModbusSimulator>().await;
    }
}
