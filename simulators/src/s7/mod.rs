//! A simulated Siemens S7 CPU: snap7's own server behind a protocol-aware front.
//!
//! It exists so that otdrift's tests, `otdrift demo` and test rigs (`otdrift sim s7`) have an
//! S7 CPU to read, to drift and to prove things about: every request is logged (see
//! [`crate::request_log`]), so a test can show that otdrift sends only reads.
//!
//! # How it is built
//!
//! - **snap7's server** (the C++ library, LGPL-3, vendored and linked statically by the
//!   `rust-snap7` crate) holds the DBs of the state file and answers, on its own port on
//!   127.0.0.1: the COTP connection, Setup Communication, Read/Write Var on DBs, SZL reads
//!   from its fixed firmware tables (a CPU 315-2 PN/DP: 0x0000, 0x0011, 0x001C, 0x0424 with
//!   the RUN/STOP status, 0x0131, 0x0232 and more), the clock, block list / list of type /
//!   block info *for DBs only* (constant dates, checksum 0), and control functions (it
//!   applies STOP/start). It refuses uploads and downloads (error 0xD241), ignores
//!   programmer and cyclic-data functions, and has no program blocks.
//! - **the front** (the port clients connect to) reads each request, logs it, and answers
//!   from the state file what snap7 cannot: SZL 0x0011 (order number, hardware and firmware
//!   versions), 0x001C (names, plant id, serial numbers) and 0x0232 index 4 (protection),
//!   split into parts when longer than the PDU ("more data follows"); the block list, list
//!   of type and block info for OB, FB, FC, SDB and DB with checksums and timestamps; and
//!   uploads (start / upload / end) of every block. It checks the called TSAP against the
//!   state's rack and slot (a wrong slot gets a COTP disconnect, like a CPU), caps the PDU
//!   at `max_pdu`, and applies the quirks. Everything else (reads, writes, SZL 0x0424 and
//!   other lists, the clock, control) is relayed to snap7 and snap7's answer relayed back.
//!
//! What it cannot emulate: S7comm-plus (TIA Portal's protocol for S7-1200/1500: symbolic
//! access, optimized blocks, secure communication), real MC7 code (uploads carry
//! deterministic bytes of the right length), passwords (protection level 3 refuses uploads,
//! nothing unlocks it), I/O, marker, timer and counter areas (not registered), and the
//! diagnostic buffer. snap7's server keeps DB sizes in 16 bits, so a DB holds at most 65535
//! bytes.
//!
//! # State file
//!
//! TOML; unknown keys are refused.
//!
//! ```toml
//! rack = 0            # default 0: the CPU answers called TSAP 0x01/02/03 + rack*32+slot
//! slot = 2            # default 2
//! max_pdu = 960       # default 960 (240..=960): the largest PDU granted
//! tick_ms = 1000      # default 1000: how often ticking DBs move; 0 = only on `tick`
//! mode = "run"        # run | stop (SZL 0x0424, answered by snap7)
//!
//! [identity]          # SZL 0x0011 and 0x001C; every key optional
//! order_number = "6ES7 315-2EH14-0AB0"   # at most 19 characters
//! module_version = 4
//! hardware_version = 4
//! firmware = "V3.2.6"                    # a letter and three numbers
//! system_name = "LINE3-FILLER"           # the rest at most 32 characters
//! module_name = "CPU 315-2 PN/DP"
//! plant_id = "Line 3 filler"
//! copyright = "Original Siemens Equipment"
//! serial_number = "S C-X4U421302009"
//! module_type_name = "CPU 315-2 PN/DP"
//! memory_card_serial = "MMC 267FF11F"
//! location = "Hall 2"
//!
//! [protection]        # SZL 0x0232 index 4
//! level = 1           # parameterized level 0..=3; effective level 3 refuses uploads
//! selector = "run-p"  # run | run-p | stop | mres | none (RUN raises the level to 2)
//!
//! [system_blocks]     # counts only, in the block list
//! sfc = 72
//! sfb = 18
//!
//! [[db]]              # a data block, registered with snap7
//! number = 1          # 1..=65535
//! size = 64           # 1..=65535 bytes
//! values = [0x01, 0xF4]   # first bytes (0..=255); the rest is `fill`
//! fill = 0
//! tick = "sine"       # optional: "counter" (+1 per tick) or "sine" (a wave): process data
//! name = "RECIPE"     # block info: name, family, author (8 characters each),
//! family = "FILLER"   # version "MAJOR.MINOR", language, code_time and
//! author = "LINE3"    # interface_time "YYYY-MM-DDTHH:MM:SS[.mmm]", local_data
//! version = "1.2"
//! code_time = "2024-02-12T09:14:03.120"
//!
//! [[block]]           # a program block: OB, FB, FC or SDB
//! type = "FB"
//! number = 1
//! size = 860          # MC7 code bytes, generated deterministically...
//! # code = "70 70 01 ..."   # ...or given as hex
//! name = "FILLCTRL"   # block info fields as for [[db]]; language STL, LAD, FBD, SCL,
//! language = "SCL"    # GRAPH or SDB
//!
//! [quirks]            # all default false; same names as `quirk` with `_`
//! stall = false
//! ```
//!
//! SZL 0x0232 index 4 also carries the CPU's version IDs/checksums of the hardware
//! configuration and of the user program (`ken_ver1_hw`..`ken_ver2_awp`, with `ken_rel`
//! 0x5656), as S7-300/400 CPUs report them: CRCs over the SDBs' checksums and over every other
//! block's, so that a download, a deleted block or a resized DB moves them and a DB's values
//! do not.
//!
//! A block's checksum is a CRC over its header fields and its code (a DB: its size and
//! initial values), so changing a DB's bytes does not change it, while resizing or
//! recompiling does, as on a CPU. Block info's load size is the MC7 size + 92, the length of
//! the uploaded image (36-byte header, code, 56-byte footer).
//!
//! # Commands
//!
//! One command per line; the reply is one line: `ok`, `ok <json>` or `error: <reason>`.
//! Available through [`S7SimHandle::command`], on the process's stdin and on the optional
//! control port of `otdrift sim s7`.
//!
//! | command | effect |
//! |---|---|
//! | `set dbN OFFSET BYTE...` | writes bytes (0..=255 or 0x..) into a DB, all or nothing; not a request, not logged |
//! | `get dbN OFFSET [COUNT]` | `ok [bytes]` |
//! | `db add N SIZE [FILL]` / `db resize N SIZE` / `db delete N` / `db list` | downloads a new DB / changes its size (bytes kept) / deletes it / `ok {"DB1":64,...}` |
//! | `block add TYPE N [SIZE]` / `block change TYPE N` / `block delete TYPE N` | program blocks (OB, FB, FC, SDB): add, recompile (new code, checksum and code time), delete |
//! | `mode run\|stop` | the CPU mode snap7 reports in SZL 0x0424 |
//! | `protection LEVEL [SELECTOR]` | parameterized protection level 0..=3, mode selector |
//! | `identity` / `identity FIELD VALUE...` | shows / sets an identity text (`order_number` or a 0x001C field) |
//! | `tick [N]` | advances ticking DBs once (or N times): deterministic tests without waiting |
//! | `quirk` / `quirk NAME on\|off` | shows / switches a quirk (below) |
//! | `log` | `ok {"total":N,"writes":W,"by_service":{..},"snap7_events":{..},"snap7_writes":S}` |
//! | `log clear` | resets the log and snap7's event counters |
//! | `help` | one-line summary |
//!
//! # Quirks
//!
//! | quirk | the device... |
//! |---|---|
//! | `stall` | accepts connections and requests, never answers |
//! | `refuse-blocks` | refuses block list / list of type / block info with error 0x8104 (S7-1200/1500) |
//! | `drop-on-blocks` | closes the connection on any block function |
//! | `put-get-off` | refuses Read/Write Var with header error 0x8104 (S7-1200/1500 with PUT/GET off) |
//! | `szl-no-header` | answers SZL 0x0011/0x001C/0x0232 without the 8-byte SZL header |
//! | `szl-no-count` | answers them with a record count of 0 |
//! | `szl-placeholder` | answers every SZL read, whatever the ID, with the SZL 0x0011 list |
//! | `blockinfo-placeholder` | answers every block info with the same all-zero record |
//! | `snap7-only` | relays everything to snap7: its fixed identity, DB-only block functions, refused uploads |
//! | `refuse-db-read` | answers every Read Var item with return code 0x0A (object does not exist), the DB still listed |
//! | `refuse-db-range` | answers every Read Var item with return code 0x05 (address out of range), the range within the DB |
//! | `deny-db-read` | answers every Read Var item with return code 0x03 (access to the object not allowed) |
//! | `szl-overclaim` | answers SZL 0x0011/0x001C/0x0232 with a header claiming one record more than it carries |
//! | `refuse-identity` | refuses SZL 0x0011 and 0x001C with error 0xD401 |
//! | `no-protection-szl` | refuses SZL 0x0232 with error 0xD401 (S7-1200/1500 firmware without it) |
//! | `stale-program-checksum` | keeps answering the configuration checksums of SZL 0x0232 index 4 it started with, whatever is downloaded |
//! | `refuse-block-list` | refuses list blocks of type with 0x8104 while list blocks still counts the blocks |
//! | `refuse-block-info` | refuses block info with 0xD209 (block not found) for listed blocks |
//! | `busy` | answers every request after Setup Communication with error 0x8302 (too few resources) |
//! | `congested` | refuses new ISO connections with COTP disconnect reason 0x81 (congestion) |
//!
//! Every request is logged whatever the quirk (its `outcome` names the quirk that answered).
//!
//! # Request log
//!
//! Every request the front receives is logged: `service` is the job function (0xF0 setup,
//! 0x04 read_var, 0x05 write_var, 0x1A-0x1C download, 0x1D-0x1F upload, 0x28 pi_service,
//! 0x29 plc_stop), `0x7000 | group << 8 | subfunction` for userdata (0x7301 list_blocks,
//! 0x7302 list_blocks_of_type, 0x7303 block_info, 0x7401 read_szl, 0x7701 read_clock, 0x7702
//! set_clock, 0x7501 enter_password...), 0xE0 for the COTP connection request. `write` is
//! true for writes, downloads, PI services, stop, set clock, passwords and anything not known
//! to be read-only. snap7's own server events are counted as a second witness (`log`,
//! [`S7SimHandle::snap7_writes`]).

mod answers;
mod backend;
mod commands;
mod file;
mod proxy;
mod state;

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
};

pub use self::state::{
    BlockMeta, COMPONENT_FIELDS, DEMO_TOML, DbState, Identity, MAX_DB_SIZE, ProgramBlock,
    ProgramType, Quirk, Quirks, S7State, Selector, StateError, TickKind, parse_block_time,
};
pub use crate::control::CommandError;
use crate::runtime::{Protocol, QuirkSet, SimHandle};
use backend::Backend;

type Shared = crate::runtime::Shared<S7Simulator>;

/// What the S7 simulator keeps beside its state: snap7's own server.
pub struct Snap7 {
    backend: Mutex<Backend>,
    backend_addr: SocketAddr,
}

impl Snap7 {
    /// snap7's server; always locked after the state when both are needed.
    fn lock_backend(&self) -> MutexGuard<'_, Backend> {
        self.backend.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts simulated S7 CPUs.
#[derive(Debug)]
pub struct S7Simulator;

/// Controls a running simulator: its address, request log, mutations. Cheap to clone; all
/// clones control the same simulator; dropping the last one shuts it down.
pub type S7SimHandle = SimHandle<S7Simulator>;

impl S7Simulator {
    /// Starts snap7's server with the state's DBs, binds `listen` (use `127.0.0.1:0` in
    /// tests: see [`S7SimHandle::local_addr`]) and serves until [`S7SimHandle::shutdown`] or
    /// until the last handle is dropped. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// If the address cannot be bound or snap7's server cannot start.
    pub async fn start(listen: SocketAddr, state: S7State) -> io::Result<S7SimHandle> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let dbs: BTreeMap<u16, Vec<u8>> = state
            .dbs
            .iter()
            .map(|(n, db)| (*n, db.initial.clone()))
            .collect();
        let running = state.running;
        let backend = tokio::task::spawn_blocking(move || Backend::start(dbs, running))
            .await
            .map_err(io::Error::other)??;
        let tick_ms = state.tick_ms;
        let snap7 = Snap7 {
            backend_addr: backend.addr(),
            backend: Mutex::new(backend),
        };
        let shared = crate::runtime::Shared::new(local_addr, state, snap7);
        shared.serve(listener, None, proxy::serve);
        shared.tick_every(tick_ms);
        Ok(SimHandle::new(shared))
    }
}

impl Protocol for S7Simulator {
    const NAME: &'static str = "s7";
    type State = S7State;
    type Quirk = Quirk;
    type QuirkArg = ();
    type Extra = Snap7;
    type StartError = std::convert::Infallible;

    fn quirks(state: &mut S7State) -> &mut QuirkSet<Quirk> {
        &mut state.quirks
    }

    fn tick(shared: &Shared) {
        commands::tick(shared);
    }

    fn load(path: &Path) -> Result<S7State, StateError> {
        S7State::load(path)
    }

    fn demo() -> S7State {
        S7State::demo()
    }

    async fn start(listen: SocketAddr, state: S7State) -> Result<S7SimHandle, SimError> {
        S7Simulator::start(listen, state)
            .await
            .map_err(SimError::bind(Self::NAME, listen))
    }
}

/// S7's own controls of a running simulator.
impl SimHandle<S7Simulator> {
    /// Where snap7's own server listens (127.0.0.1); for diagnostics only: requests sent
    /// there bypass the log.
    #[must_use]
    pub fn snap7_addr(&self) -> SocketAddr {
        self.shared().extra.backend_addr
    }

    /// Writes `bytes` into DB `db` from `offset` (all must fit, else nothing is written).
    ///
    /// # Errors
    /// If the DB does not exist or the bytes do not fit.
    pub fn set_db_bytes(&self, db: u16, offset: usize, bytes: &[u8]) -> Result<(), CommandError> {
        commands::set_bytes(self.shared(), db, offset, bytes)
    }

    /// The current bytes of DB `db`.
    #[must_use]
    pub fn db_bytes(&self, db: u16) -> Option<Vec<u8>> {
        let _state = self.shared().lock_state();
        self.shared()
            .extra
            .lock_backend()
            .db(db)
            .map(<[u8]>::to_vec)
    }

    /// Adds a DB of `size` zero bytes.
    ///
    /// # Errors
    /// If it exists or the size is outside 1..=65535.
    pub fn add_db(&self, number: u16, size: usize) -> Result<(), CommandError> {
        commands::add_db(self.shared(), number, size, 0)
    }

    /// Changes a DB's size, keeping its bytes.
    ///
    /// # Errors
    /// If it does not exist or the size is outside 1..=65535.
    pub fn resize_db(&self, number: u16, size: usize) -> Result<(), CommandError> {
        commands::resize_db(self.shared(), number, size)
    }

    /// Deletes a DB.
    ///
    /// # Errors
    /// If it does not exist.
    pub fn delete_db(&self, number: u16) -> Result<(), CommandError> {
        commands::delete_db(self.shared(), number)
    }

    /// Switches the CPU between RUN and STOP.
    pub fn set_running(&self, running: bool) {
        commands::set_running(self.shared(), running);
    }

    /// A copy of the state (DB bytes as loaded; see [`db_bytes`](Self::db_bytes) for the
    /// current ones).
    #[must_use]
    pub fn state(&self) -> S7State {
        self.shared().lock_state().clone()
    }

    /// snap7's own server events so far, by name (a second witness beside the log).
    #[must_use]
    pub fn snap7_events(&self) -> BTreeMap<String, usize> {
        let mut backend = self.shared().extra.lock_backend();
        backend.drain_events();
        backend
            .events()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    }

    /// How many state-changing events snap7's server saw (data write, download, control,
    /// security, set clock): what must stay zero while otdrift reads.
    #[must_use]
    pub fn snap7_writes(&self) -> usize {
        let mut backend = self.shared().extra.lock_backend();
        backend.drain_events();
        backend.event_writes()
    }
}

/// Why the simulator could not start (or, as a process, run).
pub type SimError = crate::process::SimError<StateError>;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn demo() -> S7State {
        let mut state = S7State::demo();
        state.tick_ms = 0;
        state
    }

    async fn start() -> S7SimHandle {
        S7Simulator::start("127.0.0.1:0".parse().expect("addr"), demo())
            .await
            .expect("simulator starts")
    }

    fn cr(tsap: u16) -> Vec<u8> {
        let [hi, lo] = tsap.to_be_bytes();
        vec![
            3, 0, 0, 22, 17, 0xE0, 0, 0, 0, 1, 0, 0xC0, 1, 10, 0xC1, 2, 1, 0, 0xC2, 2, hi, lo,
        ]
    }

    fn frame(pdu: &[u8]) -> Vec<u8> {
        answers::frame(pdu)
    }

    fn job(pdu_ref: u16, params: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x32, 1, 0, 0];
        out.extend_from_slice(&pdu_ref.to_be_bytes());
        out.extend_from_slice(&(params.len() as u16).to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(params);
        out.extend_from_slice(data);
        out
    }

    async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await.expect("header");
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut rest = vec![0u8; len - 4];
        stream.read_exact(&mut rest).await.expect("body");
        let mut out = header.to_vec();
        out.extend_from_slice(&rest);
        out
    }

    async fn session(sim: &S7SimHandle) -> TcpStream {
        let mut stream = TcpStream::connect(sim.local_addr()).await.expect("connect");
        stream.write_all(&cr(0x0102)).await.expect("send CR");
        let cc = read_frame(&mut stream).await;
        assert_eq!(cc[5] & 0xF0, 0xD0, "connection confirm: {cc:?}");
        stream
            .write_all(&frame(&job(1, &[0xF0, 0, 0, 1, 0, 1, 3, 0xC0], &[])))
            .await
            .expect("setup");
        let answer = read_frame(&mut stream).await;
        assert_eq!(&answer[7..9], &[0x32, 0x03]);
        stream
    }

    #[tokio::test]
    async fn writes_and_control_are_applied_and_logged_as_writes() {
        let sim = start().await;
        let mut stream = session(&sim).await;
        // Write Var DB1.DBB0 = 0x55.
        let write = job(
            2,
            &[0x05, 1, 0x12, 0x0A, 0x10, 0x02, 0, 1, 0, 1, 0x84, 0, 0, 0],
            &[0x00, 0x04, 0x00, 0x08, 0x55],
        );
        stream.write_all(&frame(&write)).await.expect("write");
        let answer = read_frame(&mut stream).await;
        assert_eq!(answer.last(), Some(&0xFF), "write acknowledged: {answer:?}");
        assert_eq!(sim.db_bytes(1).map(|b| b[0]), Some(0x55));
        // PLC stop.
        let stop = job(
            3,
            &[
                0x29, 0, 0, 0, 0, 0, 9, b'P', b'_', b'P', b'R', b'O', b'G', b'R', b'A', b'M',
            ],
            &[],
        );
        stream.write_all(&frame(&stop)).await.expect("stop");
        let _ = read_frame(&mut stream).await;
        let entries = sim.request_log().entries();
        let writes: Vec<&str> = entries
            .iter()
            .filter(|e| e.write)
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(writes, vec!["write_var", "plc_stop"]);
        // snap7 reports its events from its own thread: wait (bounded) for both to arrive.
        for _ in 0..200 {
            if sim.snap7_writes() >= 2 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(sim.snap7_writes() >= 2, "{:?}", sim.snap7_events());
        let log: serde_json::Value =
            serde_json::from_str(&sim.command("log").expect("log")).expect("json");
        assert_eq!(log["writes"], 2);
    }

    #[tokio::test]
    async fn a_wrong_slot_gets_a_disconnect_and_garbage_never_stops_the_cpu() {
        let sim = start().await;
        let mut stream = TcpStream::connect(sim.local_addr()).await.expect("connect");
        stream.write_all(&cr(0x0103)).await.expect("send CR");
        let dr = read_frame(&mut stream).await;
        assert_eq!(dr[5], 0x80, "disconnect request: {dr:?}");
        for garbage in [
            vec![3, 0, 0xFF, 0xFF, 1, 2, 3],
            vec![0x47, 0x45, 0x54, 0x20, 0x2F],
            frame(&[0x32, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0, 0]),
            frame(&[
                0x32, 7, 0, 0, 0, 1, 0, 8, 0, 0, 0, 1, 0x12, 4, 0x11, 0x44, 1, 0,
            ]),
        ] {
            let mut stream = TcpStream::connect(sim.local_addr()).await.expect("connect");
            let _ = stream.write_all(&cr(0x0102)).await;
            let _ = read_frame(&mut stream).await;
            let _ = stream.write_all(&garbage).await;
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf))
                .await;
        }
        // Still serving.
        let _ = session(&sim).await;
        assert_eq!(
            sim.request_log().writes(),
            sim.request_log()
                .entries()
                .iter()
                .filter(|e| e.write)
                .count()
        );
    }

    #[tokio::test]
    async fn mutations_change_what_is_served() {
        let sim = start().await;
        sim.command("set db1 5 0x96").expect("set");
        assert_eq!(sim.db_bytes(1).map(|b| b[5]), Some(0x96));
        assert!(sim.command("set db1 64 1").is_err(), "outside the DB");
        sim.command("db add 9 10 0xAA").expect("add");
        assert_eq!(sim.db_bytes(9), Some(vec![0xAA; 10]));
        sim.command("db resize 9 4").expect("resize");
        assert_eq!(sim.db_bytes(9), Some(vec![0xAA; 4]));
        sim.command("db delete 9").expect("delete");
        assert_eq!(sim.db_bytes(9), None);
        let before = sim.db_bytes(2);
        sim.command("tick 3").expect("tick");
        assert_ne!(sim.db_bytes(2), before, "DB2 ticks");
        sim.command("quirk put-get-off on").expect("quirk");
        assert!(sim.state().quirks.get(Quirk::PutGetOff));
        assert!(sim.command("quirk nonsense on").is_err());
        assert!(sim.command("block change FB1").is_ok());
        assert!(sim.command("block change FB99").is_err());
        assert!(sim.command("frobnicate").is_err());
    }
}
