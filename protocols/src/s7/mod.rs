//! Siemens S7 (S7comm over ISO-on-TCP, port 102), read-only.
//!
//! The collector speaks S7comm itself (no snap7 client: see
//! `docs/decisions/0002-s7comm-client.md`); `docs/protocols/s7.md` is the operator's version
//! of this page.
//!
//! # What is captured
//!
//! One session is kept open between captures (a session the CPU dropped while idle is
//! replaced once, transparently). A capture reads, in order:
//!
//! - **identity** (class identity): SZL 0x0011 (order numbers and versions of the module,
//!   hardware and firmware), SZL 0x001C (system and module names, plant id, copyright, serial
//!   numbers, location, manufacturer) and SZL 0x0232 index 4 (the protection level set in
//!   the CPU's parameters);
//! - **runtime**, never hashed: SZL 0x0424 (`s7/cpu_mode`: RUN, STOP...; a mode change is not
//!   drift), the CPU clock (`s7/cpu_clock`), the granted PDU (`s7/pdu_size`), the effective
//!   protection level and the mode selector position (`s7/protection_level_effective`,
//!   `s7/mode_selector`: the key switch of an S7-300 changes them);
//! - **program** (class program): the block counts, the blocks of each type OB, FB, FC, DB
//!   and SDB, and block info of each block (checksum, load, MC7 and local data sizes, author,
//!   family, name, version, language, flags, code and interface timestamps). With
//!   `upload_blocks = true` the code of OB, FB, FC and SDB blocks is uploaded (CPU to us) and
//!   hashed, again only when the block's info or the protection changed since the previous
//!   capture of this collector. DBs are never uploaded: their contents are process data;
//!   resizing or re-downloading a DB changes its block info;
//! - **setpoints** (class setpoint): the bytes of the `[[asset.setpoints]]` ranges, merged
//!   per DB and read with as few Read Var requests as the granted PDU allows (`plan.rs`).
//!
//! # Paths
//!
//! `s7/identity/module/order_number`, `s7/identity/{module,hardware,firmware}/version`,
//! `s7/identity/<0x001C field>` (`serial_number`, `plant_id`...), `s7/identity/protection_level`,
//! `s7/blocks/count`, `s7/block/<TYPE><n>/<field>` (e.g. `s7/block/DB10/checksum`),
//! `s7/block/<TYPE><n>/code` (`blake3:` of the uploaded block) and `code_size`, and
//! `s7/db<N>/<offset>` for each setpoint byte as an unsigned integer (S7comm does not know a
//! DB's layout).
//!
//! # What fails a capture, what is a stable gap
//!
//! The field-truth rule (`docs/decisions/0004-field-truth.md`; the operator's table is in
//! `docs/protocols/s7.md`). Only what the CPU refuses as a stable capability, or what its own
//! directory agrees does not exist, becomes one "not available" item with a stable reason:
//!
//! - `s7/blocks`: list blocks answered with 0x8104, 0x8305 or 0x8702 (service not offered:
//!   S7-1200/1500 over PUT/GET), or the session closed on it;
//! - `s7/block/<TYPE><n>/code`: start upload refused for the protection level (0xD241,
//!   0xD0A1) or as not offered (`upload_blocks = true` only);
//! - `s7/identity/protection_level`: SZL 0x0232 index 4 unknown to the CPU (0xD401, 0xD402,
//!   return code 0x0A), or its record without the protection words;
//! - `s7/identity/<name>/version`: SZL 0x0011 records too short for the version words;
//! - `s7/db<N>/<start>..<end>`: a DB the block list does not show and block info says does
//!   not exist, or a range beyond the size block info gives a listed DB.
//!
//! Everything else fails the capture, naming the request: a refused identity SZL (0x0011,
//! 0x001C), list of type, block info, upload part, or Read Var (`Refused`; a Read Var item
//! refused with 0x05 or 0x0A for a DB the block list and block info show is a contradiction);
//! busy answers (error class 0x83 except 0x8305, 0x011A, 0x011B, 0x0140, 0x0141,
//! 0xD061-0xD067, COTP disconnect reasons 0x01 and 0x81: `Busy`); answers that do not add up
//! or answer something else (an SZL header claiming more records than carried, another SZL,
//! block info for another block: `Malformed`); and the bounds on SZL, block list and upload
//! parts and sizes (`Bound`). Runtime-only reads (CPU mode, clock) that are refused or garbled
//! are recorded in runtime as not available.
//!
//! # CPU generations
//!
//! S7-300/400 answer everything (uploads refused at protection level 3). S7-1200/1500 answer
//! the identity SZLs and, with PUT/GET permitted, Read Var on DBs whose "Optimized block
//! access" is off; they refuse block functions and uploads (their program is only visible in
//! S7comm-plus), which shows as `s7/blocks` not available. LOGO! and S7-200 use other TSAPs
//! and are not supported.
//!
//! # Setting the CPU up
//!
//! TCP 102 from the gateway; `rack`/`slot` of the CPU (S7-300: 0/2, S7-400: as configured,
//! S7-1200/1500: 0/1). The collector opens a PG connection (TSAP 0x0100 to
//! 0x01 + rack·32 + slot) and holds one PG connection resource per asset. S7-1200/1500: permit
//! PUT/GET access, read access level at least, non-optimized setpoint DBs.
//!
//! # Read-only
//!
//! Every request is a `wire::Request` (private), which has no variant for a write, download, PI
//! service, stop, clock setting or password; a unit test asserts what it can encode.

mod decode;
mod plan;
mod wire;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use otdrift_config::{AssetConfig, Protocol, S7Config, S7Setpoint};
use otdrift_core::{Class, Digest, Item, Snapshot, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::{Capture, CaptureStats, CollectError, Collector};
use decode::{Protection, SzlList};
use wire::{BlockType, ReadItem, Refusal, Request, WireError};

/// Our own TSAP: a PG-type connection from a "local rack 0 slot 0", as snap7 and STEP 7 use.
const LOCAL_TSAP: u16 = 0x0100;
/// The smallest PDU the collector works with; every S7 CPU grants at least 240.
const MIN_PDU: u16 = 128;
/// The most parts a "more data follows" answer may take (SZL, block lists).
const MAX_PARTS: usize = 64;
/// The most parts one block list of one type may take: 65536 blocks at 50 per part.
const MAX_LIST_PARTS: usize = 1400;
/// The most parts one upload may take.
const MAX_UPLOAD_PARTS: usize = 4096;

/// The CPU's remote TSAP for a PG connection to `rack`/`slot` (snap7 and STEP 7 use the same:
/// connection type 1 in the high byte, rack * 32 + slot in the low byte).
pub fn remote_tsap(rack: u16, slot: u16) -> u16 {
    0x0100 | ((rack & 0x07) * 0x20 + (slot & 0x1F))
}

/// An open ISO-on-TCP connection with its negotiated PDU size.
struct Conn {
    stream: TcpStream,
    pdu: u16,
    next_ref: u16,
    /// Whether an S7 exchange (after setup) has already used this connection.
    used: bool,
}

/// Why an exchange failed at the transport level.
enum IoFail {
    Io(io::Error),
    Wire(WireError),
}

impl From<io::Error> for IoFail {
    fn from(e: io::Error) -> Self {
        IoFail::Io(e)
    }
}

impl From<WireError> for IoFail {
    fn from(e: WireError) -> Self {
        IoFail::Wire(e)
    }
}

/// Why a call failed: a collect error, or the device closing a fresh connection in answer to
/// this very request (devices do that for services they do not support).
enum CallError {
    Collect(CollectError),
    Dropped { request: String, source: io::Error },
}

/// What a device did instead of answering a request.
#[derive(Clone, Copy, Debug)]
enum Denial {
    /// An error code.
    Code(Refusal),
    /// It closed a fresh connection in answer to the request.
    Dropped,
}

/// A request the device would not answer, and how it said so. Each caller decides whether
/// that is a stable capability (a "not available" item) or fails the capture
/// ([`S7Collector::fail`]).
#[derive(Debug)]
struct Denied {
    request: String,
    denial: Denial,
}

impl Denied {
    fn code(&self) -> Option<Refusal> {
        match self.denial {
            Denial::Code(refusal) => Some(refusal),
            Denial::Dropped => None,
        }
    }

    fn is_busy(&self) -> bool {
        self.code().is_some_and(Refusal::is_busy)
    }

    /// What the device said, in its own terms (the code and its meaning).
    fn said(&self) -> String {
        match self.denial {
            Denial::Code(refusal) => refusal.to_string(),
            Denial::Dropped => "the CPU closed the connection in answer to it".to_owned(),
        }
    }

    /// A stable "not available" reason naming the request: the same every poll for the same
    /// device, because it holds only the request and the device's code.
    fn reason(&self) -> String {
        match self.denial {
            Denial::Code(refusal) => format!("{} refused: {refusal}", self.request),
            Denial::Dropped => format!("the CPU closes the connection on {}", self.request),
        }
    }
}

/// What the CPU's own block directory said about its DBs in this capture: the authority
/// that decides whether a DB a setpoint names is absent (state) or refused (a failure).
enum DbDirectory {
    /// The CPU does not offer block functions (S7-1200/1500): no absence can be confirmed.
    Unknown,
    /// The DBs the block list shows, with their size in bytes from block info (a DB's MC7
    /// size is its data length).
    Listed(BTreeMap<u16, u32>),
}

/// Cached upload result of one block, valid while the block's info and the protection stay
/// the same.
struct CachedUpload {
    key: (u16, u32, u16, String, Option<Protection>),
    items: Vec<(String, Value)>,
}

/// The Siemens S7 collector for one asset; keeps its connection between captures and the
/// previous capture's block uploads, so blocks are uploaded again only when they change.
pub struct S7Collector {
    asset: String,
    host: String,
    port: u16,
    address: String,
    rack: u16,
    slot: u16,
    timeout: Duration,
    pdu_wanted: u16,
    upload_blocks: bool,
    setpoints: Vec<S7Setpoint>,
    ranges: Vec<plan::Range>,
    unaddressable: Vec<S7Setpoint>,
    conn: Option<Conn>,
    stats: CaptureStats,
    uploads: BTreeMap<(BlockType, u16), CachedUpload>,
}

impl std::fmt::Debug for S7Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S7Collector")
            .field("asset", &self.asset)
            .field("address", &self.address)
            .field("rack", &self.rack)
            .field("slot", &self.slot)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

type Found = BTreeMap<String, (Class, Value)>;

fn put(found: &mut Found, path: String, class: Class, value: Value) {
    found.entry(path).or_insert((class, value));
}

fn is_drop(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Reads one TPKT frame and returns its COTP TPDU.
async fn read_tpdu(stream: &mut TcpStream) -> Result<Vec<u8>, IoFail> {
    let mut header = [0u8; wire::TPKT_HEADER];
    stream.read_exact(&mut header).await?;
    let len = wire::tpkt_length(header)?;
    let mut tpdu = vec![0u8; len - wire::TPKT_HEADER];
    stream.read_exact(&mut tpdu).await?;
    Ok(tpdu)
}

/// Reads one S7 PDU, reassembling COTP data fragments (bounded in number and size).
async fn read_pdu(stream: &mut TcpStream) -> Result<Vec<u8>, IoFail> {
    let mut pdu = Vec::new();
    for _ in 0..wire::MAX_FRAGMENTS {
        let tpdu = read_tpdu(stream).await?;
        match wire::parse_cotp(&tpdu)? {
            wire::Cotp::Data { last, payload } => {
                if pdu.len() + payload.len() > wire::MAX_S7_PDU {
                    return Err(WireError(format!(
                        "reassembled PDU exceeds {} bytes",
                        wire::MAX_S7_PDU
                    ))
                    .into());
                }
                pdu.extend_from_slice(payload);
                if last {
                    return Ok(pdu);
                }
            }
            wire::Cotp::Disconnect { reason } => {
                return Err(IoFail::Io(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the device sent a COTP disconnect request (reason 0x{reason:02X})"),
                )));
            }
            wire::Cotp::ConnectConfirm => {
                return Err(
                    WireError("a connection confirm where data was expected".into()).into(),
                );
            }
            wire::Cotp::Other { code } => {
                return Err(WireError(format!(
                    "COTP TPDU type 0x{code:02X} where data was expected"
                ))
                .into());
            }
        }
    }
    Err(WireError(format!(
        "PDU still incomplete after {} COTP fragments",
        wire::MAX_FRAGMENTS
    ))
    .into())
}

/// Sends `request` and returns the answer PDU, checked to answer this request's reference.
async fn exchange(conn: &mut Conn, request: &Request) -> Result<Vec<u8>, IoFail> {
    let pdu_ref = conn.next_ref;
    conn.next_ref = conn.next_ref.wrapping_add(1).max(1);
    let frame = wire::data_frame(&request.encode(pdu_ref));
    conn.stream.write_all(&frame).await?;
    let pdu = read_pdu(&mut conn.stream).await?;
    let answer = wire::parse_answer(&pdu)?;
    if answer.pdu_ref != pdu_ref {
        return Err(WireError(format!(
            "answer carries PDU reference {} where {pdu_ref} was sent",
            answer.pdu_ref
        ))
        .into());
    }
    Ok(pdu)
}

impl S7Collector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &S7Config) -> Self {
        let (ranges, unaddressable) = plan::merge(&cfg.setpoints);
        S7Collector {
            asset: asset.id.clone(),
            host: asset.host.clone(),
            port: asset.port,
            address: asset.address.clone(),
            rack: cfg.rack,
            slot: cfg.slot,
            timeout: Duration::from_millis(asset.timeout_ms),
            pdu_wanted: cfg.pdu_size.clamp(240, 960),
            upload_blocks: cfg.upload_blocks,
            setpoints: cfg.setpoints.clone(),
            ranges,
            unaddressable,
            conn: None,
            stats: CaptureStats::default(),
            uploads: BTreeMap::new(),
        }
    }

    /// The PDU size the CPU granted on the open connection, if any.
    pub fn negotiated_pdu(&self) -> Option<u16> {
        self.conn.as_ref().map(|c| c.pdu)
    }

    /// How many Read Var requests the setpoints take at PDU size `pdu`.
    pub fn planned_reads(&self, pdu: u16) -> usize {
        plan::plan(&self.ranges, pdu).len()
    }

    /// The fewest Read Var requests any client could read the setpoints in at PDU size
    /// `pdu` (the benchmark holds [`planned_reads`](Self::planned_reads) to it).
    pub fn minimum_reads(&self, pdu: u16) -> usize {
        plan::minimum_requests(&self.ranges, pdu)
    }

    fn scope(&self) -> crate::Scope {
        crate::Scope::new(&self.asset, &self.address)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn timeout_error(&self, request: String, hint: &str) -> CollectError {
        self.scope().timeout(request, self.timeout_ms(), hint)
    }

    fn malformed(&self, request: &str, detail: impl std::fmt::Display) -> CollectError {
        self.scope().malformed(request, detail)
    }

    fn refused(&self, request: &str, reason: impl std::fmt::Display) -> CollectError {
        self.scope().refused(request, reason)
    }

    fn transport(&self, request: &str, source: io::Error) -> CollectError {
        self.scope().transport(request, source)
    }

    fn collect_error(&self, e: CallError) -> CollectError {
        match e {
            CallError::Collect(e) => e,
            CallError::Dropped { request, source } => self.transport(&request, source),
        }
    }

    /// The capture fails because the device would not answer: `busy` when it said it lacks
    /// the resources, `refused` otherwise. `context` says why this refusal is not a gap (what
    /// the device's own directory still shows, or why the object is required).
    fn fail(&self, denied: &Denied, context: &str) -> CollectError {
        let detail = format!("{}{context}", denied.said());
        if denied.is_busy() {
            self.scope().busy(&denied.request, detail)
        } else {
            self.refused(&denied.request, detail)
        }
    }

    /// Opens TCP, the ISO connection (COTP) and the S7 session (setup communication), each
    /// under the asset's timeout.
    async fn open(&mut self) -> Result<(), CollectError> {
        let connect = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await?
                .collect();
            let mut last = io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            );
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        let mut stream = match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => return Err(self.timeout_error("connect".to_owned(), "")),
            Ok(Err(source)) => {
                return Err(self.scope().connect(source));
            }
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        self.stats.connects += 1;

        let tsap = remote_tsap(self.rack, self.slot);
        let what = format!(
            "ISO connection request (remote TSAP 0x{tsap:04X}, rack {} slot {})",
            self.rack, self.slot
        );
        self.stats.requests += 1;
        let confirm = async {
            stream
                .write_all(&wire::connect_request(LOCAL_TSAP, tsap))
                .await?;
            read_tpdu(&mut stream).await
        };
        let tpdu = match tokio::time::timeout(self.timeout, confirm).await {
            Err(_) => {
                return Err(self
                    .timeout_error(what, "; check that this is an S7 CPU and its rack and slot"));
            }
            Ok(Err(IoFail::Wire(e))) => return Err(self.malformed(&what, e)),
            Ok(Err(IoFail::Io(e))) if is_drop(&e) => {
                return Err(self.refused(
                    &what,
                    "the device closed the connection instead of confirming it; check rack and slot",
                ));
            }
            Ok(Err(IoFail::Io(e))) => return Err(self.transport(&what, e)),
            Ok(Ok(tpdu)) => tpdu,
        };
        match wire::parse_cotp(&tpdu) {
            Ok(wire::Cotp::ConnectConfirm) => {}
            // ISO 8073 disconnect reasons 0x01 (congestion at TSAP) and 0x81 (remote transport
            // entity congestion at connect request time): the CPU has no connection resource
            // free now.
            Ok(wire::Cotp::Disconnect {
                reason: reason @ (0x01 | 0x81),
            }) => {
                return Err(self.scope().busy(
                    &what,
                    format!(
                        "the device refused the connection for congestion (disconnect reason 0x{reason:02X}); its connection resources are in use"
                    ),
                ));
            }
            Ok(wire::Cotp::Disconnect { reason }) => {
                return Err(self.refused(
                    &what,
                    format!(
                        "the device refused the connection (disconnect reason 0x{reason:02X}); no CPU answers at rack {} slot {}",
                        self.rack, self.slot
                    ),
                ));
            }
            Ok(other) => {
                return Err(self.malformed(
                    &what,
                    format!("{other:?} where a connection confirm was expected"),
                ));
            }
            Err(e) => return Err(self.malformed(&what, e)),
        }

        let mut conn = Conn {
            stream,
            pdu: self.pdu_wanted,
            next_ref: 1,
            used: false,
        };
        let setup = Request::Setup {
            pdu: self.pdu_wanted,
        };
        let what = setup.describe();
        self.stats.requests += 1;
        let pdu = match tokio::time::timeout(self.timeout, exchange(&mut conn, &setup)).await {
            Err(_) => return Err(self.timeout_error(what, "")),
            Ok(Err(IoFail::Wire(e))) => return Err(self.malformed(&what, e)),
            Ok(Err(IoFail::Io(e))) => return Err(self.transport(&what, e)),
            Ok(Ok(pdu)) => pdu,
        };
        let answer = wire::parse_answer(&pdu).map_err(|e| self.malformed(&what, e))?;
        let params = match wire::job_answer(&answer, wire::FN_SETUP) {
            Err(e) => return Err(self.malformed(&what, e)),
            Ok(Err(refusal)) => {
                let denied = Denied {
                    request: what,
                    denial: Denial::Code(refusal),
                };
                return Err(self.fail(&denied, ""));
            }
            Ok(Ok(params)) => params,
        };
        let granted = wire::setup_answer(params).map_err(|e| self.malformed(&what, e))?;
        if granted < MIN_PDU {
            return Err(self.malformed(
                &what,
                format!("the CPU granted a PDU of {granted} bytes; at least {MIN_PDU} are needed"),
            ));
        }
        conn.pdu = granted.min(self.pdu_wanted);
        tracing::debug!(address = %self.address, pdu = conn.pdu, "connected");
        self.conn = Some(conn);
        Ok(())
    }

    /// Sends one request and returns the answer PDU. A pooled connection the device closed
    /// since its last use is replaced once, transparently. A fresh connection the device
    /// closes in answer to this request is reported as [`CallError::Dropped`]. After a
    /// timeout or a malformed answer the connection is dropped, so a late answer can never be
    /// taken for the answer to the next request.
    async fn call(&mut self, request: &Request) -> Result<Vec<u8>, CallError> {
        let mut retried = false;
        loop {
            if self.conn.is_none() {
                self.open().await.map_err(CallError::Collect)?;
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let reused = conn.used;
            conn.used = true;
            self.stats.requests += 1;
            let result = tokio::time::timeout(self.timeout, exchange(conn, request)).await;
            match result {
                Ok(Ok(pdu)) => return Ok(pdu),
                Err(_) => {
                    self.conn = None;
                    return Err(CallError::Collect(
                        self.timeout_error(request.describe(), ""),
                    ));
                }
                Ok(Err(IoFail::Wire(e))) => {
                    self.conn = None;
                    return Err(CallError::Collect(self.malformed(&request.describe(), e)));
                }
                Ok(Err(IoFail::Io(e))) => {
                    self.conn = None;
                    if !is_drop(&e) {
                        return Err(CallError::Collect(self.transport(&request.describe(), e)));
                    }
                    if reused && !retried {
                        retried = true;
                        tracing::debug!(error = %e, "connection lost, reconnecting once");
                        continue;
                    }
                    return Err(CallError::Dropped {
                        request: request.describe(),
                        source: e,
                    });
                }
            }
        }
    }

    /// A userdata request. `Ok(Err(..))` for what the device refuses (an error code, or
    /// dropping a fresh session in answer to it); the caller decides what that means.
    async fn userdata(
        &mut self,
        request: &Request,
        group: u8,
        subfunction: u8,
    ) -> Result<Result<(u8, bool, Vec<u8>), Denied>, CollectError> {
        let what = request.describe();
        let pdu = match self.call(request).await {
            Ok(pdu) => pdu,
            Err(CallError::Dropped { .. }) => {
                return Ok(Err(Denied {
                    request: what,
                    denial: Denial::Dropped,
                }));
            }
            Err(e) => return Err(self.collect_error(e)),
        };
        let answer = wire::parse_answer(&pdu).map_err(|e| self.malformed(&what, e))?;
        match wire::userdata_answer(&answer, group, subfunction) {
            Err(e) => {
                self.conn = None;
                Err(self.malformed(&what, e))
            }
            Ok(Err(refusal)) => Ok(Err(Denied {
                request: what,
                denial: Denial::Code(refusal),
            })),
            Ok(Ok(part)) => Ok(Ok((part.seq, part.more, part.payload.to_vec()))),
        }
    }

    /// A job (ack-data) request. `Ok(Err(..))` for a refusal or a dropped session.
    async fn job(
        &mut self,
        request: &Request,
        function: u8,
    ) -> Result<Result<(Vec<u8>, Vec<u8>), Denied>, CollectError> {
        let what = request.describe();
        let pdu = match self.call(request).await {
            Ok(pdu) => pdu,
            Err(CallError::Dropped { .. }) => {
                return Ok(Err(Denied {
                    request: what,
                    denial: Denial::Dropped,
                }));
            }
            Err(e) => return Err(self.collect_error(e)),
        };
        let answer = wire::parse_answer(&pdu).map_err(|e| self.malformed(&what, e))?;
        match wire::job_answer(&answer, function) {
            Err(e) => {
                self.conn = None;
                Err(self.malformed(&what, e))
            }
            Ok(Err(refusal)) => Ok(Err(Denied {
                request: what,
                denial: Denial::Code(refusal),
            })),
            Ok(Ok(params)) => Ok(Ok((params.to_vec(), answer.data.to_vec()))),
        }
    }

    /// Reads the bytes of a whole SZL list, following "more data follows" for at most
    /// [`MAX_PARTS`] parts and [`decode::MAX_SZL_BYTES`] bytes (a `bound`). `Ok(Err(..))` when
    /// the CPU refuses a part.
    async fn read_szl(
        &mut self,
        id: u16,
        index: u16,
    ) -> Result<Result<Vec<u8>, Denied>, CollectError> {
        let first = Request::ReadSzl { id, index };
        let (mut seq, mut more, mut bytes) =
            match self.userdata(&first, wire::GROUP_SZL, 0x01).await? {
                Ok(part) => part,
                Err(denied) => return Ok(Err(denied)),
            };
        let mut parts = 1;
        while more {
            let next = Request::ReadSzlNext { id, index, seq };
            if parts >= MAX_PARTS || bytes.len() > decode::MAX_SZL_BYTES {
                self.conn = None;
                return Err(self.scope().bound(
                    next.describe(),
                    format!(
                        "more data still follows after {parts} parts and {} bytes (at most {MAX_PARTS} parts and {} bytes are read)",
                        bytes.len(),
                        decode::MAX_SZL_BYTES
                    ),
                ));
            }
            match self.userdata(&next, wire::GROUP_SZL, 0x01).await? {
                Ok((s, m, payload)) => {
                    bytes.extend_from_slice(&payload);
                    (seq, more) = (s, m);
                }
                Err(denied) => return Ok(Err(denied)),
            }
            parts += 1;
        }
        Ok(Ok(bytes))
    }

    /// Reads SZL `id`/`index` and checks its header and records against each other: an answer
    /// that does not add up is `malformed`, naming the request. `Ok(Err(..))` when the CPU
    /// refuses it.
    async fn szl(&mut self, id: u16, index: u16) -> Result<Result<SzlList, Denied>, CollectError> {
        let bytes = match self.read_szl(id, index).await? {
            Ok(bytes) => bytes,
            Err(denied) => return Ok(Err(denied)),
        };
        decode::szl_list(id, index, &bytes)
            .map(Ok)
            .map_err(|e| self.malformed(&Request::ReadSzl { id, index }.describe(), e))
    }

    /// Identity items (SZL 0x0011, 0x001C, 0x0232) and the protection found. A CPU must say
    /// what and who it is: a refused SZL 0x0011 or 0x001C fails the capture. Only SZL 0x0232,
    /// which S7-1200/1500 firmware does not always offer, may be absent, and only when the CPU
    /// says the list does not exist on it.
    async fn read_identity(
        &mut self,
        found: &mut Found,
        runtime: &mut BTreeMap<String, Value>,
    ) -> Result<Option<Protection>, CollectError> {
        let module = match self.szl(0x0011, 0x0000).await? {
            Ok(list) => list,
            Err(denied) => {
                return Err(self.fail(
                    &denied,
                    "; a CPU must say what it is (order number, versions)",
                ));
            }
        };
        for (path, value) in decode::module_identity(&module) {
            put(found, format!("s7/identity/{path}"), Class::Identity, value);
        }
        // SZL 0x001C (component identification: names, serial number) is optional: some
        // firmware (S7-1200 4.x) answers "SZL ID not available" every time. That is a stable
        // capability of the CPU, recorded as one not-available item; the module identity
        // above is what a CPU must always tell. Any other refusal fails the capture.
        match self.szl(0x001C, 0x0000).await? {
            Ok(component) => {
                for (path, value) in decode::component_identity(&component) {
                    put(found, format!("s7/identity/{path}"), Class::Identity, value);
                }
            }
            Err(denied)
                if !denied.is_busy() && denied.code().is_some_and(Refusal::is_unknown_szl) =>
            {
                put(
                    found,
                    "s7/identity/components".to_owned(),
                    Class::Identity,
                    Value::unavailable(denied.reason()),
                );
            }
            Err(denied) => {
                return Err(self.fail(&denied, "; a CPU must say who it is (names, serial number)"));
            }
        }
        let protection = match self.szl(0x0232, 0x0004).await? {
            Ok(list) => decode::protection(&list),
            Err(denied)
                if !denied.is_busy() && denied.code().is_some_and(Refusal::is_unknown_szl) =>
            {
                Err(denied.reason())
            }
            Err(denied) => return Err(self.fail(&denied, "")),
        };
        match protection {
            Ok(p) => {
                put(
                    found,
                    "s7/identity/protection_level".to_owned(),
                    Class::Identity,
                    Value::UInt(p.parameterized.into()),
                );
                runtime.insert(
                    "s7/protection_level_effective".to_owned(),
                    Value::UInt(p.effective.into()),
                );
                runtime.insert(
                    "s7/mode_selector".to_owned(),
                    Value::Text(decode::selector_name(p.selector)),
                );
                Ok(Some(p))
            }
            Err(reason) => {
                put(
                    found,
                    "s7/identity/protection_level".to_owned(),
                    Class::Identity,
                    Value::unavailable(reason),
                );
                Ok(None)
            }
        }
    }

    /// CPU mode (SZL 0x0424) and clock: runtime only, never hashed, so a refused or garbled
    /// answer is recorded in runtime as not available. A busy CPU still fails the capture.
    async fn read_runtime(
        &mut self,
        runtime: &mut BTreeMap<String, Value>,
    ) -> Result<(), CollectError> {
        let mode = match self.read_szl(0x0424, 0x0000).await? {
            Ok(bytes) => decode::szl_list(0x0424, 0x0000, &bytes)
                .map_err(|e| format!("read SZL 0x0424 index 0x0000: {e}"))
                .and_then(|list| decode::cpu_mode(&list)),
            Err(denied) if denied.is_busy() => return Err(self.fail(&denied, "")),
            Err(denied) => Err(denied.reason()),
        };
        runtime.insert(
            "s7/cpu_mode".to_owned(),
            mode.map_or_else(Value::unavailable, Value::Text),
        );
        let clock = match self
            .userdata(&Request::ReadClock, wire::GROUP_CLOCK, 0x01)
            .await?
        {
            Ok((_, _, payload)) => decode::clock(&payload),
            Err(denied) if denied.is_busy() => return Err(self.fail(&denied, "")),
            Err(denied) => Err(denied.reason()),
        };
        runtime.insert(
            "s7/cpu_clock".to_owned(),
            clock.map_or_else(Value::unavailable, Value::Text),
        );
        Ok(())
    }

    /// The numbers of the blocks of one type, following continuation parts (at most
    /// [`MAX_LIST_PARTS`], a `bound`). `Ok(Err(..))` when the CPU refuses a part.
    async fn list_blocks_of_type(
        &mut self,
        block: BlockType,
    ) -> Result<Result<Vec<u16>, Denied>, CollectError> {
        let first = Request::ListBlocksOfType { block };
        let (mut seq, mut more, payload) =
            match self.userdata(&first, wire::GROUP_BLOCKS, 0x02).await? {
                Ok(part) => part,
                Err(denied) => return Ok(Err(denied)),
            };
        let mut numbers = Vec::new();
        fn add(
            this: &S7Collector,
            request: &Request,
            payload: &[u8],
            numbers: &mut Vec<u16>,
        ) -> Result<(), CollectError> {
            let entries =
                decode::block_list(payload).map_err(|e| this.malformed(&request.describe(), e))?;
            numbers.extend(entries.iter().map(|e| e.number));
            if numbers.len() > usize::from(u16::MAX) + 1 {
                return Err(this.malformed(
                    &request.describe(),
                    "more than 65536 blocks of one type (some listed twice)",
                ));
            }
            Ok(())
        }
        add(self, &first, &payload, &mut numbers)?;
        let mut parts = 1;
        while more {
            let next = Request::ListBlocksOfTypeNext { block, seq };
            if parts >= MAX_LIST_PARTS {
                self.conn = None;
                return Err(self.scope().bound(
                    next.describe(),
                    format!("more data still follows after {parts} parts (at most {MAX_LIST_PARTS} are read)"),
                ));
            }
            match self.userdata(&next, wire::GROUP_BLOCKS, 0x02).await? {
                Ok((s, m, payload)) => {
                    add(self, &next, &payload, &mut numbers)?;
                    (seq, more) = (s, m);
                }
                Err(denied) => return Ok(Err(denied)),
            }
            parts += 1;
        }
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w.first() == w.get(1)) {
            return Err(self.malformed(&first.describe(), "a block is listed twice"));
        }
        Ok(Ok(sorted))
    }

    /// Uploads one block (CPU to us) and returns its bytes. `Ok(Err(..))` only when the CPU
    /// refuses to start the upload for a stable reason (protection level, service not
    /// offered); any other refusal, and a refusal after the upload started, fail the capture.
    async fn upload(
        &mut self,
        block: BlockType,
        number: u16,
    ) -> Result<Result<Vec<u8>, Denied>, CollectError> {
        let start = Request::StartUpload { block, number };
        let (params, _) = match self.job(&start, wire::FN_START_UPLOAD).await? {
            Ok(answer) => answer,
            Err(denied)
                if !denied.is_busy()
                    && denied
                        .code()
                        .is_some_and(|r| r.is_protection() || r.is_not_offered()) =>
            {
                return Ok(Err(denied));
            }
            Err(denied) => return Err(self.fail(&denied, "")),
        };
        let (id, announced) =
            decode::start_upload(&params).map_err(|e| self.malformed(&start.describe(), e))?;
        if let Some(length) = announced.filter(|n| *n > decode::MAX_UPLOAD_BYTES) {
            self.conn = None;
            return Err(self.scope().bound(
                start.describe(),
                format!(
                    "the CPU announces a block of {length} bytes; at most {} are uploaded",
                    decode::MAX_UPLOAD_BYTES
                ),
            ));
        }
        let limit = announced.unwrap_or(decode::MAX_UPLOAD_BYTES);
        let mut bytes = Vec::new();
        let mut parts = 0;
        // From here on the CPU holds an open upload: any failure drops the connection, so the
        // CPU releases it (an upload left open blocks the next one: error 0x8304).
        loop {
            let part = Request::Upload { block, number, id };
            if parts >= MAX_UPLOAD_PARTS {
                self.conn = None;
                return Err(self.scope().bound(
                    part.describe(),
                    format!("still not finished after {parts} parts (at most {MAX_UPLOAD_PARTS} are read)"),
                ));
            }
            parts += 1;
            let (params, data) = match self.job(&part, wire::FN_UPLOAD).await? {
                Ok(answer) => answer,
                Err(denied) => {
                    self.conn = None;
                    return Err(self.fail(&denied, "; the upload had started"));
                }
            };
            let (more, chunk) = match decode::upload_part(&params, &data) {
                Ok(part) => part,
                Err(e) => {
                    self.conn = None;
                    return Err(self.malformed(&part.describe(), e));
                }
            };
            if bytes.len() + chunk.len() > limit {
                self.conn = None;
                return Err(match announced {
                    Some(_) => self.malformed(
                        &part.describe(),
                        format!("the upload exceeds the {limit} bytes announced"),
                    ),
                    None => self
                        .scope()
                        .bound(part.describe(), format!("the upload exceeds {limit} bytes")),
                });
            }
            bytes.extend_from_slice(chunk);
            if !more {
                break;
            }
        }
        let end = Request::EndUpload { block, number, id };
        if let Err(denied) = self.job(&end, wire::FN_END_UPLOAD).await? {
            // The block is complete; a CPU that will not confirm the end is noted only.
            tracing::debug!(reason = %denied.reason(), "end upload not confirmed");
        }
        Ok(Ok(bytes))
    }

    /// The program: block counts, the blocks of each type with their block info, and (with
    /// `upload_blocks`) the digest of each code block's contents. Returns what the block
    /// directory says about DBs, for the setpoints.
    async fn read_blocks(
        &mut self,
        found: &mut Found,
        protection: Option<Protection>,
    ) -> Result<DbDirectory, CollectError> {
        let counts = match self
            .userdata(&Request::ListBlocks, wire::GROUP_BLOCKS, 0x01)
            .await?
        {
            Ok((_, _, payload)) => decode::block_counts(&payload)
                .map_err(|e| self.malformed(&Request::ListBlocks.describe(), e))?,
            // S7-1200/1500 answer every block function with 0x8104 over PUT/GET; some stacks
            // close the session instead. Their program is not visible over S7comm at all: a
            // stable capability, recorded once.
            Err(denied)
                if !denied.is_busy() && denied.code().is_none_or(Refusal::is_not_offered) =>
            {
                put(
                    found,
                    "s7/blocks".to_owned(),
                    Class::Program,
                    Value::unavailable(denied.reason()),
                );
                return Ok(DbDirectory::Unknown);
            }
            Err(denied) => return Err(self.fail(&denied, "")),
        };
        put(
            found,
            "s7/blocks/count".to_owned(),
            Class::Program,
            Value::Map(
                counts
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::UInt((*v).into())))
                    .collect(),
            ),
        );
        let mut seen = Vec::new();
        let mut dbs = BTreeMap::new();
        for block in BlockType::LISTED {
            let count = counts.get(block.name()).copied().unwrap_or(0);
            if count == 0 {
                continue;
            }
            let numbers = match self.list_blocks_of_type(block).await? {
                Ok(numbers) => numbers,
                Err(denied) => {
                    return Err(self.fail(
                        &denied,
                        &format!("; list blocks counts {count} {} blocks", block.name()),
                    ));
                }
            };
            for number in numbers {
                seen.push((block, number));
                let size = self.read_block(found, block, number, protection).await?;
                if block == BlockType::Db {
                    dbs.insert(number, size);
                }
            }
        }
        self.uploads.retain(|key, _| seen.contains(key));
        Ok(DbDirectory::Listed(dbs))
    }

    /// Block info (and with `upload_blocks` the code) of one listed block; returns its MC7
    /// size. The block was listed, so a refused block info is a contradiction and a block info
    /// for another block is malformed: both fail the capture.
    async fn read_block(
        &mut self,
        found: &mut Found,
        block: BlockType,
        number: u16,
        protection: Option<Protection>,
    ) -> Result<u32, CollectError> {
        let name = format!("s7/block/{}{number}", block.name());
        let request = Request::BlockInfo { block, number };
        let info = match self.userdata(&request, wire::GROUP_BLOCKS, 0x03).await? {
            Ok((_, _, payload)) => decode::block_info(&payload, block, number)
                .map_err(|e| self.malformed(&request.describe(), e))?
                .map_err(|reason| self.malformed(&request.describe(), reason))?,
            Err(denied) => {
                return Err(self.fail(
                    &denied,
                    &format!(
                        "; list blocks of type {} still lists {}{number}",
                        block.name(),
                        block.name()
                    ),
                ));
            }
        };
        let fields = [
            ("checksum", Value::UInt(info.checksum.into())),
            ("load_size", Value::UInt(info.load_size.into())),
            ("mc7_size", Value::UInt(info.mc7_size.into())),
            ("local_data_size", Value::UInt(info.local_data.into())),
            ("author", info.author.clone()),
            ("family", info.family.clone()),
            ("name", info.name.clone()),
            ("version", Value::Text(info.version.clone())),
            (
                "language",
                Value::Text(decode::language_name(info.language)),
            ),
            ("flags", Value::UInt(info.flags.into())),
            ("code_time", Value::Text(info.code_time.clone())),
            ("interface_time", Value::Text(info.interface_time.clone())),
        ];
        for (field, value) in fields {
            put(found, format!("{name}/{field}"), Class::Program, value);
        }
        let size = u32::from(info.mc7_size);
        if !(self.upload_blocks && block.uploadable()) {
            return Ok(size);
        }
        let key = (
            info.checksum,
            info.load_size,
            info.mc7_size,
            info.code_time.clone(),
            protection,
        );
        if let Some(cached) = self.uploads.get(&(block, number)).filter(|c| c.key == key) {
            for (path, value) in &cached.items {
                put(found, path.clone(), Class::Program, value.clone());
            }
            return Ok(size);
        }
        let items = match self.upload(block, number).await? {
            Ok(bytes) => vec![
                (
                    format!("{name}/code"),
                    Value::Text(Digest::of(&bytes).to_string()),
                ),
                (format!("{name}/code_size"), Value::UInt(bytes.len() as u64)),
            ],
            Err(denied) => vec![(format!("{name}/code"), Value::unavailable(denied.reason()))],
        };
        for (path, value) in &items {
            put(found, path.clone(), Class::Program, value.clone());
        }
        self.uploads
            .insert((block, number), CachedUpload { key, items });
        Ok(size)
    }

    /// Why DB `db`, which the block list does not show and which Read Var answered with item
    /// return code `code` (`what`), is absent: block info must agree that it does not exist.
    /// Anything else fails the capture.
    async fn confirm_absent(
        &mut self,
        db: u16,
        code: u8,
        what: &str,
    ) -> Result<String, CollectError> {
        let request = Request::BlockInfo {
            block: BlockType::Db,
            number: db,
        };
        match self.userdata(&request, wire::GROUP_BLOCKS, 0x03).await? {
            Err(denied)
                if !denied.is_busy() && denied.code().is_some_and(Refusal::is_no_such_block) =>
            {
                Ok(format!(
                    "DB{db} does not exist: read var answered item return code 0x{code:02X} ({}), the block list does not show DB{db}, and {}",
                    wire::item_error_text(code),
                    denied.reason()
                ))
            }
            Err(denied) => Err(self.fail(&denied, "")),
            Ok(_) => Err(self.refused(
                what,
                format!(
                    "DB{db}: item return code 0x{code:02X} ({}), yet block info describes DB{db}",
                    wire::item_error_text(code)
                ),
            )),
        }
    }

    /// The setpoint ranges, read with the plan for the negotiated PDU. The config asks for
    /// them, so a refusal fails the capture, except where the CPU's own block directory
    /// agrees the bytes do not exist: a DB the block list does not show and block info says
    /// does not exist, or a range beyond a listed DB's size. Those are stable "not available"
    /// ranges (state: a DB deleted or shrunk).
    async fn read_setpoints(
        &mut self,
        found: &mut Found,
        directory: &DbDirectory,
    ) -> Result<(), CollectError> {
        if let Some(sp) = self.unaddressable.first() {
            return Err(self.scope().config(format!(
                "setpoint {:?}: DB{} bytes {}..{} lie beyond what S7comm can address (byte offsets 0..={})",
                sp.name,
                sp.db,
                sp.start,
                u64::from(sp.start) + u64::from(sp.size),
                wire::MAX_BYTE_ADDRESS
            )));
        }
        if self.ranges.is_empty() {
            return Ok(());
        }
        let mut setpoints = self.setpoints.clone();
        setpoints.sort_by_key(|sp| (sp.db, sp.start, sp.size));
        // Ranges beyond a listed DB's size: the directory already says they do not exist.
        let mut absent: BTreeMap<String, String> = BTreeMap::new();
        let mut readable = Vec::new();
        for sp in &setpoints {
            let end = u64::from(sp.start) + u64::from(sp.size);
            match directory {
                DbDirectory::Listed(dbs) => match dbs.get(&sp.db) {
                    Some(&size) if end > u64::from(size) => {
                        absent.insert(
                            sp.name.clone(),
                            format!(
                                "DB{} holds {size} bytes (block info); bytes {}..{end} are not all in it",
                                sp.db, sp.start
                            ),
                        );
                    }
                    _ => readable.push(sp.clone()),
                },
                DbDirectory::Unknown => readable.push(sp.clone()),
            }
        }
        let (ranges, _) = plan::merge(&readable);
        if self.conn.is_none() {
            self.open().await?;
        }
        let pdu = self.conn.as_ref().map_or(self.pdu_wanted, |c| c.pdu);
        let mut pieces: Vec<(ReadItem, Vec<u8>)> = Vec::new();
        let mut refused: Vec<(ReadItem, u8, String)> = Vec::new();
        for items in plan::plan(&ranges, pdu) {
            let request = Request::ReadVar {
                items: items.clone(),
            };
            let what = request.describe();
            let pdu = self
                .call(&request)
                .await
                .map_err(|e| self.collect_error(e))?;
            let answer = wire::parse_answer(&pdu).map_err(|e| self.malformed(&what, e))?;
            let params = match wire::job_answer(&answer, wire::FN_READ_VAR) {
                Err(e) => {
                    self.conn = None;
                    return Err(self.malformed(&what, e));
                }
                Ok(Err(refusal)) => {
                    let denied = Denied {
                        request: what,
                        denial: Denial::Code(refusal),
                    };
                    return Err(self.fail(&denied, "; the configured setpoints must be readable"));
                }
                Ok(Ok(params)) => params,
            };
            let results = match wire::read_var_answer(params, answer.data, &items) {
                Ok(results) => results,
                Err(e) => {
                    self.conn = None;
                    return Err(self.malformed(&what, e));
                }
            };
            for (item, result) in items.iter().zip(results) {
                match result {
                    Ok(bytes) => pieces.push((*item, bytes)),
                    Err(code) => refused.push((*item, code, what.clone())),
                }
            }
        }
        // Each refused item: absent only when the directory agrees, else the capture fails.
        let mut missing_dbs: BTreeMap<u16, String> = BTreeMap::new();
        for (item, code, what) in &refused {
            if missing_dbs.contains_key(&item.db) {
                continue;
            }
            let text = wire::item_error_text(*code);
            let does_not_exist = matches!(code, 0x05 | 0x0A);
            let listed = match directory {
                DbDirectory::Listed(dbs) => Some(dbs.get(&item.db).copied()),
                DbDirectory::Unknown => None,
            };
            match listed {
                Some(None) if does_not_exist => {
                    let reason = self.confirm_absent(item.db, *code, what).await?;
                    missing_dbs.insert(item.db, reason);
                }
                Some(Some(size)) if does_not_exist => {
                    return Err(self.refused(
                        what,
                        format!(
                            "DB{}: item return code 0x{code:02X} ({text}), yet the block list shows DB{} and block info gives it {size} bytes",
                            item.db, item.db
                        ),
                    ));
                }
                None if does_not_exist => {
                    return Err(self.refused(
                        what,
                        format!(
                            "DB{}: item return code 0x{code:02X} ({text}); this CPU does not list its blocks, so the absence cannot be confirmed (on an S7-1200/1500: does DB{} exist, with \"Optimized block access\" off?)",
                            item.db, item.db
                        ),
                    ));
                }
                _ => {
                    return Err(self.refused(
                        what,
                        format!("DB{}: item return code 0x{code:02X} ({text})", item.db),
                    ));
                }
            }
        }
        pieces.sort_unstable_by_key(|(item, _)| (item.db, item.start));
        let byte_at = |db: u16, offset: u32| -> Option<u8> {
            let i = pieces.partition_point(|(item, _)| (item.db, item.start) <= (db, offset));
            let (item, bytes) = pieces.get(i.checked_sub(1)?)?;
            if item.db != db {
                return None;
            }
            bytes
                .get(usize::try_from(offset.checked_sub(item.start)?).ok()?)
                .copied()
        };
        for sp in &setpoints {
            let end = u64::from(sp.start) + u64::from(sp.size);
            let range_path = format!("s7/db{}/{}..{end}", sp.db, sp.start);
            if let Some(reason) = absent.get(&sp.name).or_else(|| missing_dbs.get(&sp.db)) {
                put(
                    found,
                    range_path,
                    Class::Setpoint,
                    Value::unavailable(reason.clone()),
                );
                continue;
            }
            for offset in sp.start..sp.start.saturating_add(sp.size) {
                let Some(byte) = byte_at(sp.db, offset) else {
                    return Err(self.scope().internal(format!(
                        "DB{} byte {offset} was planned but not read",
                        sp.db
                    )));
                };
                put(
                    found,
                    format!("s7/db{}/{offset}", sp.db),
                    Class::Setpoint,
                    Value::UInt(byte.into()),
                );
            }
        }
        Ok(())
    }

    fn snapshot(&self, found: Found) -> Result<Snapshot, CollectError> {
        let items = found
            .into_iter()
            .map(|(path, (class, value))| Item::new(path, class, value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.scope().item(e))?;
        Snapshot::from_items(items).map_err(|e| self.scope().item(e))
    }

    async fn capture_inner(&mut self) -> Result<(Snapshot, BTreeMap<String, Value>), CollectError> {
        let mut found = Found::new();
        let mut runtime = BTreeMap::new();
        if self.conn.is_none() {
            self.open().await?;
        }
        let protection = self.read_identity(&mut found, &mut runtime).await?;
        self.read_runtime(&mut runtime).await?;
        let directory = self.read_blocks(&mut found, protection).await?;
        self.read_setpoints(&mut found, &directory).await?;
        if let Some(conn) = &self.conn {
            runtime.insert("s7/pdu_size".to_owned(), Value::UInt(conn.pdu.into()));
        }
        Ok((self.snapshot(found)?, runtime))
    }
}

#[async_trait]
impl Collector for S7Collector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::S7
    }

    async fn identify(&mut self) -> Result<Vec<Item>, CollectError> {
        let span = tracing::info_span!("identify", asset = %self.asset, protocol = "s7");
        async {
            let mut found = Found::new();
            let mut runtime = BTreeMap::new();
            if self.conn.is_none() {
                self.open().await?;
            }
            self.read_identity(&mut found, &mut runtime).await?;
            Ok(self.snapshot(found)?.items().cloned().collect())
        }
        .instrument(span)
        .await
    }

    async fn capture(&mut self) -> Result<Capture, CollectError> {
        let span = tracing::info_span!("capture", asset = %self.asset, protocol = "s7");
        crate::timed_capture(span, async {
            self.stats = CaptureStats::default();
            let (snapshot, runtime) = self.capture_inner().await?;
            let mut runtime = runtime;
            let operating_state = crate::split_operating_state(&mut runtime, &["s7/cpu_mode"]);
            Ok(Capture {
                snapshot,
                runtime,
                operating_state,
                stats: self.stats,
            })
        })
        .await
    }

    async fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.stream.shutdown().await;
        }
    }
}

/// The setpoint entry covering `path`: `s7/db<N>/<offset>` for a byte, or
/// `s7/db<N>/<start>..<end>` for a range recorded as not available.
pub fn setpoint_label(cfg: &S7Config, path: &str) -> Option<String> {
    let rest = path.strip_prefix("s7/db")?;
    let (db, offset) = rest.split_once('/')?;
    let db: u16 = db.parse().ok()?;
    let (start, end): (u64, u64) = match offset.split_once("..") {
        Some((s, e)) => (s.parse().ok()?, e.parse().ok()?),
        None => {
            let at: u64 = offset.parse().ok()?;
            (at, at + 1)
        }
    };
    cfg.setpoints
        .iter()
        .find(|sp| {
            sp.db == db
                && u64::from(sp.start) <= start
                && end <= u64::from(sp.start) + u64::from(sp.size)
        })
        .map(|sp| sp.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsaps_follow_rack_and_slot() {
        assert_eq!(remote_tsap(0, 2), 0x0102);
        assert_eq!(remote_tsap(0, 3), 0x0103);
        assert_eq!(remote_tsap(1, 1), 0x0121);
    }

    #[test]
    fn labels_name_the_covering_setpoint() {
        let cfg = S7Config {
            rack: 0,
            slot: 2,
            upload_blocks: false,
            pdu_size: 960,
            setpoints: vec![
                S7Setpoint {
                    name: "recipe".into(),
                    db: 10,
                    start: 0,
                    size: 64,
                },
                S7Setpoint {
                    name: "limits".into(),
                    db: 11,
                    start: 100,
                    size: 4,
                },
            ],
        };
        assert_eq!(
            setpoint_label(&cfg, "s7/db10/63").as_deref(),
            Some("recipe")
        );
        assert_eq!(setpoint_label(&cfg, "s7/db10/64"), None);
        assert_eq!(
            setpoint_label(&cfg, "s7/db11/100..104").as_deref(),
            Some("limits")
        );
        assert_eq!(setpoint_label(&cfg, "s7/block/DB10/checksum"), None);
    }

    mod hostile {
        //! Every parser against random and mutated frames: never a panic, and an error
        //! names what was wrong.
        use super::super::decode;
        use super::super::wire::{self, BlockType, ReadItem};
        use proptest::prelude::*;

        /// Valid answers of every kind, to mutate.
        fn samples() -> Vec<Vec<u8>> {
            let userdata = |group: u8, sub: u8, payload: &[u8]| {
                let mut data = vec![0xFF, 0x09];
                data.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                data.extend_from_slice(payload);
                let params = [
                    0x00,
                    0x01,
                    0x12,
                    0x08,
                    0x12,
                    0x80 | group,
                    sub,
                    1,
                    0,
                    0,
                    0,
                    0,
                ];
                let mut pdu = vec![0x32, 0x07, 0, 0, 0, 1, 0, 12];
                pdu.extend_from_slice(&(data.len() as u16).to_be_bytes());
                pdu.extend_from_slice(&params);
                pdu.extend_from_slice(&data);
                pdu
            };
            let mut szl = vec![0x00, 0x11, 0x00, 0x00, 0x00, 0x1C, 0x00, 0x01, 0x00, 0x01];
            szl.extend_from_slice(b"6ES7 315-2EH14-0AB0 ");
            szl.extend_from_slice(&[0x00, 0xC0, b'V', 3, 2, 6]);
            let mut info = vec![0u8; decode::BLOCK_INFO_LEN];
            info[11] = 0x0E;
            info[13] = 1;
            vec![
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0xF0, 0, 0, 1, 0, 1, 3, 0xC0,
                ],
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 2, 0, 9, 0, 0, 0x04, 1, 0xFF, 0x04, 0, 40, 1, 2, 3,
                    4, 5,
                ],
                userdata(4, 1, &szl),
                userdata(3, 1, &[0x30, 0x38, 0, 2, 0x30, 0x41, 0, 5]),
                userdata(3, 2, &[0, 1, 0x22, 5, 0, 2, 0x22, 5]),
                userdata(3, 3, &info),
                userdata(
                    7,
                    1,
                    &[0, 0x20, 0x24, 0x03, 0x01, 0x12, 0x34, 0x56, 0x78, 0x91],
                ),
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 16, 0, 0, 0, 0, 0x1D, 0, 0, 0, 0, 0, 0, 7, 7, b'0',
                    b'0', b'0', b'0', b'1', b'2', b'8',
                ],
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 2, 0, 6, 0, 0, 0x1E, 0, 0, 2, 0, 0xFB, 9, 9,
                ],
            ]
        }

        fn every_parser(pdu: &[u8]) {
            let asked = [
                ReadItem {
                    db: 1,
                    start: 0,
                    len: 5,
                },
                ReadItem {
                    db: 2,
                    start: 0,
                    len: 1,
                },
            ];
            if let Ok(header) = <[u8; 4]>::try_from(pdu.get(..4).unwrap_or(&[0, 0, 0, 0])) {
                let _ = wire::tpkt_length(header);
            }
            let _ = wire::parse_cotp(pdu);
            let _ = wire::setup_answer(pdu);
            let _ = wire::read_var_answer(pdu, pdu, &asked);
            let _ = wire::read_var_answer(
                pdu.get(..2).unwrap_or_default(),
                pdu.get(2..).unwrap_or_default(),
                &asked,
            );
            for id in [0x0011, 0x001C, 0x0232, 0x0424] {
                if let Ok(list) = decode::szl_list(id, 0, pdu) {
                    let _ = decode::module_identity(&list);
                    let _ = decode::component_identity(&list);
                    let _ = decode::protection(&list);
                    let _ = decode::cpu_mode(&list);
                }
            }
            let _ = decode::clock(pdu);
            let _ = decode::block_counts(pdu);
            let _ = decode::block_list(pdu);
            let _ = decode::block_info(pdu, BlockType::Fb, 1);
            let _ = decode::start_upload(pdu);
            let _ = decode::upload_part(pdu, pdu);
            let _ = decode::upload_part(
                pdu.get(..2).unwrap_or_default(),
                pdu.get(2..).unwrap_or_default(),
            );
            if let Ok(answer) = wire::parse_answer(pdu) {
                for f in [
                    wire::FN_SETUP,
                    wire::FN_READ_VAR,
                    wire::FN_START_UPLOAD,
                    wire::FN_UPLOAD,
                ] {
                    if let Ok(Ok(params)) = wire::job_answer(&answer, f) {
                        let _ = wire::setup_answer(params);
                        let _ = wire::read_var_answer(params, answer.data, &asked);
                        let _ = decode::start_upload(params);
                        let _ = decode::upload_part(params, answer.data);
                    }
                }
                for (group, sub) in [(4, 1), (3, 1), (3, 2), (3, 3), (7, 1)] {
                    if let Ok(Ok(part)) = wire::userdata_answer(&answer, group, sub) {
                        let _ = decode::szl_list(0x0011, 0, part.payload);
                        let _ = decode::block_counts(part.payload);
                        let _ = decode::block_list(part.payload);
                        let _ = decode::block_info(part.payload, BlockType::Fb, 1);
                        let _ = decode::clock(part.payload);
                    }
                }
            }
        }

        #[test]
        fn the_samples_parse() {
            for sample in samples() {
                let answer = wire::parse_answer(&sample).expect("a valid sample");
                assert_eq!(answer.pdu_ref, 1);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                every_parser(&bytes);
            }

            #[test]
            fn mutated_answers_never_panic(
                which in 0usize..9,
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                cut in any::<prop::sample::Index>(),
                extra in prop::collection::vec(any::<u8>(), 0..8),
            ) {
                let samples = samples();
                let mut pdu = samples[which % samples.len()].clone();
                for (at, byte) in flips {
                    let i = at.index(pdu.len());
                    pdu[i] = byte;
                }
                every_parser(&pdu);
                let cut = cut.index(pdu.len() + 1);
                every_parser(&pdu[..cut]);
                pdu.extend_from_slice(&extra);
                every_parser(&pdu);
            }
        }
    }
}
