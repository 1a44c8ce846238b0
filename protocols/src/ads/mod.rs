//! Beckhoff ADS (TwinCAT 2 and 3, and other vendors' ADS servers) over AMS/TCP, port 48898.
//!
//! The collector speaks AMS/TCP itself (a small async client in `wire` and `conn`;
//! `docs/decisions/0003-ads-client.md` says why not the `ads` crate): every request runs under
//! the asset's `timeout_ms`, every length the device sends is bounded before anything is
//! allocated for it, and only read requests can be built.
//!
//! # What is captured
//!
//! | path | class | value |
//! |---|---|---|
//! | `ads/device/name` | identity | ReadDeviceInfo's device name (`Plc30 App` for a TwinCAT 3 PLC runtime) |
//! | `ads/device/version` | identity | ReadDeviceInfo's version, `major.minor.build` (`3.1.4024`: the TwinCAT build) |
//! | `ads/symbol/<NAME>` | program | every symbol of the symbol table (0xF00B): `type`, `size`, `group`, `offset`, `flags`, `base_type`, `persistent` (flag 0x01) |
//! | `ads/datatype/<NAME>` | program | every entry of the data-type table (0xF00E): `size`, `base_type`, `flags`, and where present `type` (element or aliased type), `array` (`[lower, count]` per dimension) and `fields` (`name`, `type`, `offset`, `size`) |
//! | `ads/app/online_change_count` | history | `TwinCAT_SystemInfoVarList._AppInfo.OnlineChangeCnt` |
//! | `ads/app/timestamp` | history | `_AppInfo.AppTimestamp` as `DT#YYYY-MM-DD-hh:mm:ss` (PLC local time) |
//! | `ads/app/project_name`, `ads/app/app_name`, `ads/app/task_count` | program | `_AppInfo.ProjectName`, `AppName`, `TaskCnt` |
//! | `ads/value/<SYMBOL>` | setpoint | the value of each symbol named by `[[asset.setpoints]]`, typed (table below); a structure gives one item per field, `ads/value/<SYMBOL>.<Field>` |
//!
//! Values keep their PLC type: BOOL as a bool; SINT/INT/DINT/LINT as signed and
//! USINT/UINT/UDINT/ULINT/BYTE/WORD/DWORD/LWORD as unsigned integers; REAL/LREAL as 32/64-bit
//! floats; STRING(n) as text (Windows-1252) and WSTRING(n) as text (UTF-16); TIME and TOD as
//! milliseconds, LTIME as nanoseconds, DATE and DT as seconds since 1970 (unsigned integers);
//! arrays as lists (nested per dimension); structures as one item per field (inside arrays, as
//! maps); enumerations and aliases as their underlying type; anything else (pointers,
//! interfaces, unknown types) as bytes.
//!
//! A `symbol` setpoint is a symbol name (`GVL_Recipe.FillVolume`), a field of a structured
//! symbol (`GVL_Recipe.stMain.Speed`), or a prefix ending in `.*` (`GVL_Recipe.*`: every
//! symbol whose name starts with `GVL_Recipe.`). Names are matched ignoring ASCII case, as
//! TwinCAT does; paths use the device's spelling.
//!
//! # What fails a capture, and what is a not-available item
//!
//! The field-truth rule (`docs/decisions/0004-field-truth.md`): absence is state only when
//! the device's own directory agrees. Only these stable gaps become items whose value is
//! `not available: <reason>` (same words every poll):
//!
//! - `ads/symbols`, `ads/datatypes`: both upload infos (0xF00F, 0xF00C) answered "service
//!   not supported" (0x701, or 0x702 for an index group the device does not serve), or the
//!   upload answered only nameless placeholder entries; `ads/datatypes` also when the device
//!   only has the legacy upload info (no data-type table announced);
//! - `ads/app`: `_AppInfo` is not in the symbol table (TwinCAT 2, other vendors), or there
//!   is no symbol or data-type table to find and lay it out with;
//! - `ads/value/<SYMBOL>`: the symbol table does not list it (or, without a symbol table,
//!   symbol info by name 0xF009 answers 0x710 "symbol not found"), a `.*` prefix on a device
//!   without a symbol table, or a bit-addressed symbol of size 0.
//!
//! Everything else fails the capture with a [`CollectError`] naming the request:
//! ReadDeviceInfo or ReadState refused, a table refused after the upload info announced it,
//! a listed symbol (or `_AppInfo`) whose read is refused even when read alone (a
//! contradiction, naming the symbol and the ADS error), a refused 0xF009 other than 0x710
//! (`Refused`); ADS error 0x708 anywhere (`Busy`, and only that); answers whose lengths or
//! counts do not add up, a data-type table in which a type contains itself (`Malformed`);
//! tables, values, nesting or field counts beyond this collector's limits (`Bound`). A
//! sub-read refused inside a sum-read is first read again alone with a plain Read of the
//! same index group, offset and length: the value then is exactly the device's.

//! # What is NOT hashed (`Capture::runtime`)
//!
//! - `ads_state` (`RUN`, `STOP`, `CONFIG`...), `ads_state_code`, `device_state`: a PLC
//!   switched to STOP is news, not drift;
//! - `symbol_version` (0xF008): TwinCAT moves it on every download *and on every restart*
//!   of the runtime, so hashing it would report a power cycle as a program change. It is
//!   used as a change signal (below), and a real download also changes the hashed
//!   `_AppInfo` items and, usually, the symbol table;
//! - `symbol_table` (`uploaded` or `unchanged`), `sum_read` (which sum-read the device
//!   takes), `source_ams_net_id` and `target`: how the capture was made.
//!
//! # Cost on the PLC
//!
//! A capture sends ReadDeviceInfo, ReadState, and one sum-read of the change signals: the
//! symbol version, the upload info (symbol and data-type counts and table sizes) and
//! `_AppInfo` (whose `OnlineChangeCnt` and `AppTimestamp` move on an online change, which
//! leaves the symbol version alone). Only when one of them moved are the symbol table
//! (0xF00B) and the data-type table (0xF00E) uploaded again. Setpoints are read with
//! sum-reads of at most [`MAX_SUM_READS`] sub-reads and [`MAX_SUM_BYTES`] bytes, so N symbols
//! cost ceil(N / 500) round trips: a steady-state capture of N setpoint symbols costs
//! `3 + ceil(N / 500)` requests.
//!
//! Sum-reads use 0xF083 (which returns each sub-read's length, so a short answer is seen);
//! a device that refuses it (ADS error 0x701-0x705) is asked with the plain sum-read 0xF080,
//! and one that refuses that too with one Read per symbol. The choice is remembered. A
//! sub-read a sum-read refuses (other than busy) costs one more round trip: it is read alone.
//!
//! # Device generations
//!
//! - **TwinCAT 3** (port 851, 852...): everything above; upload info 0xF00F answers 64 bytes.
//! - **TwinCAT 2** (port 801, 811...): symbol and data-type tables, but no `_AppInfo`
//!   (`ads/app` is not available); online changes show only through the symbol table.
//! - **Other vendors' ADS servers and small controllers** (BC/BX, ADS gateways): often no
//!   upload (`ads/symbols` not available; exact setpoint names are then looked up one by
//!   one with 0xF009 and prefixes are not available), sometimes no sum-read (one Read per
//!   symbol), sometimes only the legacy upload info 0xF00C (no data-type table).
//!
//! # Setting up the PLC
//!
//! ADS needs an AMS route on the PLC for the gateway, in both directions of naming: the PLC
//! must know the gateway's AMS Net Id and its IP address. otdrift's own Net Id is
//! `source_ams_net_id`, or by default the gateway's IPv4 address on the connection plus
//! `.1.1` (gateway `10.0.3.5` -> `10.0.3.5.1.1`). Add the route in TwinCAT XAE (SYSTEM ->
//! Routes -> Add Route, "Remote Route": the gateway's Net Id and IP, transport TCP/IP) or in
//! `TwinCAT\3.1\Target\StaticRoutes.xml` on the PLC, then restart the router. Without a route
//! TwinCAT closes the connection at once. The AMS port is `ams_port` (851: first TC3 PLC).
//! Reading needs no PLC login and no write access; a route flagged read-only is enough where
//! the firmware offers it. TwinCAT accepts one TCP connection per peer IP: a second ADS
//! client on the gateway (another tool, or `otdrift capture` while the daemon runs) takes
//! over the connection, and the collector reconnects once, transparently, on its next request.

mod conn;
mod tables;
mod types;
mod wire;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use otdrift_config::{AdsConfig, AdsSetpoint, AssetConfig, Protocol};
use otdrift_core::{Class, Item, Snapshot, Value};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::{Capture, CaptureStats, CollectError, Collector};
use conn::{CallError, Connection};
use tables::{DataType, FLAG_PERSISTENT, Symbol, TableError, UploadInfo};
use types::{Shape, ShapeError, Types};
use wire::{
    AmsAddr, Answer, Cursor, ReadSpec, Request, code, error_text, group, is_service_not_supported,
    is_sum_read_refused,
};

/// The most sub-reads in one sum-read (Beckhoff's documented limit for sum commands).
pub const MAX_SUM_READS: usize = 500;
/// The most value bytes one sum-read asks for; a batch is cut before it would exceed this.
pub const MAX_SUM_BYTES: u32 = 1024 * 1024;
/// The largest setpoint symbol captured; a bigger one is recorded as not available.
pub const MAX_VALUE_BYTES: u32 = 1024 * 1024;
/// The AMS port otdrift uses as its own (source) port: a client port, not a service.
pub const SOURCE_AMS_PORT: u16 = 32905;
/// The symbol TwinCAT 3 publishes its application info in.
pub const APP_INFO_SYMBOL: &str = "TwinCAT_SystemInfoVarList._AppInfo";
/// The most bytes a 0xF009 symbol entry may have.
const MAX_SYMBOL_ENTRY: u32 = 64 * 1024;

/// Which sum-read the device takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SumMode {
    /// 0xF083: results and lengths.
    WithLengths,
    /// 0xF080: results only.
    Plain,
    /// No sum-read: one Read per value.
    Single,
}

impl SumMode {
    fn name(self) -> &'static str {
        match self {
            SumMode::WithLengths => "0xF083",
            SumMode::Plain => "0xF080",
            SumMode::Single => "single reads",
        }
    }
}

/// Which upload info the device answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InfoSource {
    Info2,
    Legacy,
    None,
}

/// The change signals a poll reads; the tables are uploaded again when they differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Signals {
    symbol_version: Option<u8>,
    upload: Option<UploadInfo>,
    /// `_AppInfo` OnlineChangeCnt and AppTimestamp.
    app: Option<(Option<u64>, Option<u64>)>,
}

/// Where `_AppInfo` is and what it looks like.
#[derive(Clone, Debug)]
struct AppInfoLoc {
    spec: ReadSpec,
    fields: Vec<(String, u32, u32, Shape)>,
}

/// What the collector knows of the PLC program between captures.
#[derive(Clone, Debug)]
struct Program {
    signals: Signals,
    info_source: InfoSource,
    symbols: Option<Vec<Symbol>>,
    types: BTreeMap<String, DataType>,
    /// Program items derived from the tables (or their not-available gaps).
    items: Vec<Item>,
    app: Result<AppInfoLoc, String>,
    /// Symbols looked up by name with 0xF009 when there is no symbol table; `None`: the
    /// device said it has no such symbol (0x710).
    by_name: BTreeMap<String, Option<Symbol>>,
}

/// A setpoint read to make.
#[derive(Clone, Debug)]
struct Planned {
    name: String,
    spec: ReadSpec,
    shape: Shape,
    /// Which of the device's directories lists the symbol: a refused read of it contradicts
    /// that directory.
    directory: &'static str,
}

/// The directory a symbol was found in: the uploaded symbol table.
const SYMBOL_TABLE: &str = "the symbol table (0xF00B)";
/// The directory a symbol was found in without a symbol table.
const BY_NAME: &str = "symbol info by name (0xF009)";

/// A setpoint that is not read: either the device's own directory says there is nothing to
/// read (a stable, not-available item), or the capture fails.
enum Unplanned {
    /// Why there is no value, in stable words.
    NotAvailable(String),
    /// Why the capture fails.
    Fails(CollectError),
}

impl From<CollectError> for Unplanned {
    fn from(e: CollectError) -> Self {
        Unplanned::Fails(e)
    }
}

/// The Beckhoff ADS collector for one asset; keeps its AMS/TCP connection and what it
/// learned of the program between captures.
pub struct AdsCollector {
    asset: String,
    host: String,
    port: u16,
    address: String,
    timeout: Duration,
    target_net_id: [u8; 6],
    target_port: u16,
    source_net_id: Option<[u8; 6]>,
    setpoints: Vec<AdsSetpoint>,
    conn: Option<Connection>,
    sum_mode: SumMode,
    program: Option<Program>,
    stats: CaptureStats,
}

impl std::fmt::Debug for AdsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsCollector")
            .field("asset", &self.asset)
            .field("address", &self.address)
            .field("connected", &self.conn.is_some())
            .field("sum_read", &self.sum_mode.name())
            .finish()
    }
}

fn net_id_text(id: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = id;
    format!("{a}.{b}.{c}.{d}.{e}.{f}")
}

fn ads_state_name(state: u16) -> Option<&'static str> {
    Some(match state {
        0 => "INVALID",
        1 => "IDLE",
        2 => "RESET",
        3 => "INIT",
        4 => "START",
        5 => "RUN",
        6 => "STOP",
        7 => "SAVECFG",
        8 => "LOADCFG",
        9 => "POWERFAILURE",
        10 => "POWERGOOD",
        11 => "ERROR",
        12 => "SHUTDOWN",
        13 => "SUSPEND",
        14 => "RESUME",
        15 => "CONFIG",
        16 => "RECONFIG",
        17 => "STOPPING",
        18 => "INCOMPATIBLE",
        19 => "EXCEPTION",
        _ => return None,
    })
}

/// Whether `name` starts with `prefix`, ignoring ASCII case.
fn starts_with_ci(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Cuts reads into sum-read batches: at most [`MAX_SUM_READS`] and [`MAX_SUM_BYTES`] each.
fn batches(specs: &[ReadSpec]) -> Vec<&[ReadSpec]> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut bytes = 0u64;
    for (i, spec) in specs.iter().enumerate() {
        let count = i - start;
        if count > 0
            && (count >= MAX_SUM_READS || bytes + u64::from(spec.length) > u64::from(MAX_SUM_BYTES))
        {
            if let Some(batch) = specs.get(start..i) {
                out.push(batch);
            }
            start = i;
            bytes = 0;
        }
        bytes += u64::from(spec.length);
    }
    if let Some(batch) = specs.get(start..).filter(|b| !b.is_empty()) {
        out.push(batch);
    }
    out
}

/// One sub-read's outcome: its bytes, or the ADS error the device gave for it.
type SubResult = Result<Vec<u8>, u32>;

impl AdsCollector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &AdsConfig) -> Self {
        AdsCollector {
            asset: asset.id.clone(),
            host: asset.host.clone(),
            port: asset.port,
            address: asset.address.clone(),
            timeout: Duration::from_millis(asset.timeout_ms),
            target_net_id: cfg.ams_net_id,
            target_port: cfg.ams_port,
            source_net_id: cfg.source_ams_net_id,
            setpoints: cfg.setpoints.clone(),
            conn: None,
            sum_mode: SumMode::WithLengths,
            program: None,
            stats: CaptureStats::default(),
        }
    }

    fn scope(&self) -> crate::Scope {
        crate::Scope::new(&self.asset, &self.address)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn target(&self) -> AmsAddr {
        AmsAddr {
            net_id: self.target_net_id,
            port: self.target_port,
        }
    }

    fn malformed(&self, request: &Request, detail: impl Into<String>) -> CollectError {
        self.scope().malformed(request.describe(), detail.into())
    }

    /// The device answered `request` with ADS error `code`: busy (0x708) is
    /// [`ErrorKind::Busy`](crate::ErrorKind::Busy), every other code a refusal. `why` says
    /// what makes the refusal a failure when that is not obvious (a contradiction).
    fn ads_error(&self, request: String, code: u32, why: &str) -> CollectError {
        let request = format!("{request} at {}", self.target());
        if code == code::BUSY {
            self.scope().busy(request, error_text(code))
        } else {
            self.scope()
                .refused(request, format!("{}{why}", error_text(code)))
        }
    }

    fn refused(&self, request: &Request, code: u32) -> CollectError {
        self.ads_error(request.describe(), code, "")
    }

    /// The device refused to read `symbol`, which its own `directory` lists: a
    /// contradiction, never a gap.
    fn contradiction(
        &self,
        spec: ReadSpec,
        symbol: &str,
        directory: &str,
        code: u32,
    ) -> CollectError {
        self.ads_error(
            format!("{} of symbol {symbol}", Request::Read(spec).describe()),
            code,
            &format!(", although {directory} lists {symbol}"),
        )
    }

    /// A value's type could not be followed: a table that contains itself is malformed (the
    /// data-type upload is named), nesting beyond the bound is a bound on reading `symbol`.
    fn shape_error(&self, symbol: &str, error: ShapeError) -> CollectError {
        match error {
            ShapeError::Cycle(detail) => self.scope().malformed(
                format!("Read 0x{:04X} (data-type upload)", group::SYM_DT_UPLOAD),
                detail,
            ),
            ShapeError::Bound(detail) => self
                .scope()
                .bound(format!("the value of symbol {symbol}"), detail),
        }
    }

    fn item(&self, path: String, class: Class, value: Value) -> Result<Item, CollectError> {
        Item::new(path, class, value).map_err(|e| self.scope().item(e))
    }

    async fn open(&mut self) -> Result<(), CollectError> {
        let connect = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await?
                .collect();
            let mut last = std::io::Error::new(
                std::io::ErrorKind::NotFound,
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
        let stream = match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => {
                return Err(self.scope().timeout("connect", self.timeout_ms(), ""));
            }
            Ok(Err(source)) => {
                return Err(self.scope().connect(source));
            }
            Ok(Ok(stream)) => stream,
        };
        // Small request/response exchanges: do not wait to coalesce them.
        let _ = stream.set_nodelay(true);
        let source_net_id = match self.source_net_id {
            Some(id) => id,
            None => {
                let local = stream
                    .local_addr()
                    .map_err(|source| self.scope().connect(source))?;
                let v4 = match local.ip() {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(v6) => v6.to_ipv4_mapped(),
                };
                let Some(v4) = v4 else {
                    return Err(self.scope().connect(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "connected over IPv6, so no AMS Net Id can be derived from the gateway's address; set source_ams_net_id for this asset",
                    )));
                };
                let [a, b, c, d] = v4.octets();
                [a, b, c, d, 1, 1]
            }
        };
        let source = AmsAddr {
            net_id: source_net_id,
            port: SOURCE_AMS_PORT,
        };
        self.conn = Some(Connection::new(stream, self.target(), source));
        self.stats.connects += 1;
        tracing::debug!(address = %self.address, source = %source, target = %self.target(), "connected");
        Ok(())
    }

    /// Sends one request and returns its checked answer.
    ///
    /// A connection the device dropped since the previous request (TwinCAT drops a client
    /// when another connects from the same IP, and on router restarts) fails on first use;
    /// that one failure is retried once on a fresh connection. After a timeout or a
    /// malformed answer the connection is dropped, so a late or misaligned answer can never
    /// be taken for the answer to the next request.
    async fn call(&mut self, request: &Request) -> Result<Answer, CollectError> {
        let mut retried = false;
        loop {
            let pooled = self.conn.is_some();
            if !pooled {
                self.open().await?;
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            self.stats.requests += 1;
            let result = tokio::time::timeout(self.timeout, conn.call(request)).await;
            match result {
                Ok(Ok(answer)) => return Ok(answer),
                Err(_) => {
                    self.conn = None;
                    return Err(self.scope().timeout(
                        request.describe(),
                        self.timeout_ms(),
                        "; check the AMS route on the PLC (without one TwinCAT may stay silent) and the ams_net_id/ams_port",
                    ));
                }
                Ok(Err(CallError::Malformed(detail))) => {
                    self.conn = None;
                    return Err(self.malformed(request, detail));
                }
                Ok(Err(CallError::Io(source))) => {
                    self.conn = None;
                    if pooled && !retried {
                        retried = true;
                        tracing::debug!(error = %source, "connection lost, reconnecting once");
                        continue;
                    }
                    return Err(self.scope().transport(request.describe(), source));
                }
            }
        }
    }

    /// A Read-shaped answer (`result, length, data`): the data, or the device's error.
    async fn call_data(&mut self, request: &Request) -> Result<SubResult, CollectError> {
        let answer = self.call(request).await?;
        if answer.error != 0 {
            return Ok(Err(answer.error));
        }
        let mut c = Cursor::new(&answer.data);
        let result = c.u32("result").map_err(|e| self.malformed(request, e))?;
        if result != 0 {
            return Ok(Err(result));
        }
        let length = c.u32("length").map_err(|e| self.malformed(request, e))?;
        let asked = request.max_answer_data().saturating_sub(8);
        if length as usize > asked {
            return Err(self.malformed(
                request,
                format!("answer length {length} is more than the {asked} bytes asked for"),
            ));
        }
        if length as usize != c.remaining() {
            return Err(self.malformed(
                request,
                format!(
                    "answer length field says {length} bytes, {} arrived",
                    c.remaining()
                ),
            ));
        }
        let data = c
            .take(length as usize, "data")
            .map_err(|e| self.malformed(request, e))?;
        Ok(Ok(data.to_vec()))
    }

    async fn read(&mut self, spec: ReadSpec) -> Result<SubResult, CollectError> {
        self.call_data(&Request::Read(spec)).await
    }

    /// One sum-read; `Err(code)` when the device refused the sum-read as a whole.
    async fn sum_read(
        &mut self,
        ex: bool,
        reads: &[ReadSpec],
    ) -> Result<Result<Vec<SubResult>, u32>, CollectError> {
        let request = Request::SumRead {
            ex,
            reads: reads.to_vec(),
        };
        let body = match self.call_data(&request).await? {
            Ok(body) => body,
            Err(code) => return Ok(Err(code)),
        };
        let n = reads.len();
        let per = if ex { 8 } else { 4 };
        let mut c = Cursor::new(&body);
        let mut heads = Vec::with_capacity(n);
        for (i, spec) in reads.iter().enumerate() {
            let err = c
                .u32("sub-read result")
                .map_err(|e| self.malformed(&request, format!("sub-read #{i}: {e}")))?;
            let len = if ex {
                c.u32("sub-read length")
                    .map_err(|e| self.malformed(&request, format!("sub-read #{i}: {e}")))?
            } else if err == 0 {
                spec.length
            } else {
                0
            };
            if len > spec.length {
                return Err(self.malformed(
                    &request,
                    format!(
                        "sub-read #{i} answers {len} bytes, {} were asked for",
                        spec.length
                    ),
                ));
            }
            heads.push((err, len));
        }
        let data_len = body.len().saturating_sub(per * n);
        let requested: usize = reads.iter().map(|r| r.length as usize).sum();
        let returned: usize = heads.iter().map(|&(_, len)| len as usize).sum();
        // TwinCAT keeps each sub-read's slot at its requested length; some servers pack the
        // data at the returned lengths. Anything else does not add up.
        let padded = data_len == requested;
        if !padded && data_len != returned {
            return Err(self.malformed(
                &request,
                format!(
                    "{} data bytes follow the {n} sub-read results; {requested} (slots as asked) or {returned} (as returned) were expected",
                    data_len
                ),
            ));
        }
        let mut out = Vec::with_capacity(n);
        for (spec, &(err, len)) in reads.iter().zip(&heads) {
            let slot = if padded { spec.length } else { len } as usize;
            let bytes = c
                .take(slot, "sub-read data")
                .map_err(|e| self.malformed(&request, e))?;
            out.push(if err != 0 {
                Err(err)
            } else {
                Ok(bytes.get(..len as usize).unwrap_or_default().to_vec())
            });
        }
        Ok(Ok(out))
    }

    /// Reads many values in as few round trips as the device allows; each result says
    /// whether a sum-read carried it.
    async fn read_many(
        &mut self,
        specs: &[ReadSpec],
    ) -> Result<Vec<(SubResult, bool)>, CollectError> {
        let mut out = Vec::with_capacity(specs.len());
        for batch in batches(specs) {
            loop {
                let ex = match self.sum_mode {
                    SumMode::Single => {
                        for spec in batch {
                            out.push((self.read(*spec).await?, false));
                        }
                        break;
                    }
                    SumMode::WithLengths => true,
                    SumMode::Plain => false,
                };
                match self.sum_read(ex, batch).await? {
                    Ok(results) => {
                        out.extend(results.into_iter().map(|r| (r, true)));
                        break;
                    }
                    Err(code) if is_sum_read_refused(code) => {
                        let next = if ex { SumMode::Plain } else { SumMode::Single };
                        tracing::debug!(
                            refused = self.sum_mode.name(),
                            reason = %error_text(code),
                            next = next.name(),
                            "sum-read refused, falling back"
                        );
                        self.sum_mode = next;
                    }
                    Err(code) => {
                        let request = Request::SumRead {
                            ex,
                            reads: batch.to_vec(),
                        };
                        return Err(self.refused(&request, code));
                    }
                }
            }
        }
        Ok(out)
    }

    /// [`read_many`](Self::read_many), and every sub-read a sum-read refused (other than
    /// busy) read again alone, once, with a plain Read of exactly the same index group,
    /// offset and length: an honest retry (a sum-read can fail a sub-read for reasons of its
    /// own), so what comes back is exactly the device's value. A read refused alone too is
    /// returned as refused, for the caller to judge.
    async fn read_values(&mut self, specs: &[ReadSpec]) -> Result<Vec<SubResult>, CollectError> {
        let tagged = self.read_many(specs).await?;
        let mut out = Vec::with_capacity(tagged.len());
        for (spec, (result, summed)) in specs.iter().zip(tagged) {
            out.push(match result {
                Err(code) if summed && code != code::BUSY => {
                    tracing::debug!(
                        group = spec.group,
                        offset = spec.offset,
                        reason = %error_text(code),
                        "sub-read refused inside a sum-read, reading it alone"
                    );
                    self.read(*spec).await?
                }
                other => other,
            });
        }
        Ok(out)
    }

    /// ReadDeviceInfo: the identity items.
    async fn read_identity(&mut self) -> Result<Vec<Item>, CollectError> {
        let request = Request::DeviceInfo;
        let answer = self.call(&request).await?;
        let mut c = Cursor::new(&answer.data);
        let result = if answer.error != 0 {
            answer.error
        } else {
            c.u32("result").map_err(|e| self.malformed(&request, e))?
        };
        // Every ADS device answers ReadDeviceInfo: a refusal is never a capability gap.
        if result != 0 {
            return Err(self.refused(&request, result));
        }
        // The standard answer is 24 bytes (a 16-byte name field); some ADS servers other than
        // TwinCAT send only the name's bytes and its NUL. Anything longer does not fit.
        if !(8..=24).contains(&answer.data.len()) {
            return Err(self.malformed(
                &request,
                format!(
                    "{} data bytes, ReadDeviceInfo answers 8 to 24",
                    answer.data.len()
                ),
            ));
        }
        let parse = |c: &mut Cursor<'_>| -> Result<(u8, u8, u16, String), String> {
            let major = c.u8("major version")?;
            let minor = c.u8("minor version")?;
            let build = c.u16("build")?;
            let name = c.take(c.remaining(), "device name")?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            Ok((
                major,
                minor,
                build,
                tables::text(name.get(..end).unwrap_or_default())
                    .trim()
                    .to_owned(),
            ))
        };
        let (major, minor, build, name) = parse(&mut c).map_err(|e| self.malformed(&request, e))?;
        Ok(vec![
            self.item(
                "ads/device/name".to_owned(),
                Class::Identity,
                Value::Text(name),
            )?,
            self.item(
                "ads/device/version".to_owned(),
                Class::Identity,
                Value::Text(format!("{major}.{minor}.{build}")),
            )?,
        ])
    }

    /// ReadState: runtime only.
    async fn read_state(
        &mut self,
        runtime: &mut BTreeMap<String, Value>,
    ) -> Result<(), CollectError> {
        let request = Request::ReadState;
        let answer = self.call(&request).await?;
        let mut c = Cursor::new(&answer.data);
        let result = if answer.error != 0 {
            answer.error
        } else {
            c.u32("result").map_err(|e| self.malformed(&request, e))?
        };
        // Every ADS device answers ReadState: a refusal fails the capture.
        if result != 0 {
            return Err(self.refused(&request, result));
        }
        if answer.data.len() != 8 {
            return Err(self.malformed(
                &request,
                format!("{} data bytes, ReadState answers 8", answer.data.len()),
            ));
        }
        let ads_state = c
            .u16("ADS state")
            .map_err(|e| self.malformed(&request, e))?;
        let device_state = c
            .u16("device state")
            .map_err(|e| self.malformed(&request, e))?;
        runtime.insert(
            "ads_state".to_owned(),
            Value::Text(
                ads_state_name(ads_state)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("unknown ({ads_state})")),
            ),
        );
        runtime.insert("ads_state_code".to_owned(), Value::from(ads_state));
        runtime.insert("device_state".to_owned(), Value::from(device_state));
        Ok(())
    }

    /// Reads the change signals, and uploads the tables again when they moved (or on the
    /// first capture). Returns the program knowledge and the `_AppInfo` bytes when read.
    async fn refresh_program(
        &mut self,
        runtime: &mut BTreeMap<String, Value>,
    ) -> Result<(Program, Option<SubResult>), CollectError> {
        // The cached program stays in place while polling, so a failed poll loses nothing.
        let info_source = self
            .program
            .as_ref()
            .map_or(InfoSource::Info2, |p| p.info_source);
        let app_spec = self
            .program
            .as_ref()
            .and_then(|p| p.app.as_ref().ok())
            .map(|a| a.spec);
        let symver_spec = ReadSpec {
            group: group::SYM_VERSION,
            offset: 0,
            length: 1,
        };
        let mut specs = vec![symver_spec];
        let info_spec = match info_source {
            InfoSource::Info2 => Some(ReadSpec {
                group: group::SYM_UPLOAD_INFO2,
                offset: 0,
                length: 64,
            }),
            InfoSource::Legacy => Some(ReadSpec {
                group: group::SYM_UPLOAD_INFO,
                offset: 0,
                length: 8,
            }),
            InfoSource::None => None,
        };
        specs.extend(info_spec);
        specs.extend(app_spec);
        let mut results = self.read_values(&specs).await?.into_iter();
        // The symbol version is runtime only (never hashed) and only one of three change
        // signals: a device that will not give it is recorded as such, unless it is busy.
        let symbol_version = match results.next() {
            Some(Ok(bytes)) => bytes.first().copied().ok_or_else(|| {
                "device answered the symbol version (0xF008) without data".to_owned()
            }),
            Some(Err(code::BUSY)) => {
                return Err(self.refused(&Request::Read(symver_spec), code::BUSY));
            }
            Some(Err(code)) => Err(format!(
                "device refused the symbol version (0xF008): {}",
                error_text(code)
            )),
            None => return Err(self.no_result(symver_spec)),
        };
        runtime.insert(
            "symbol_version".to_owned(),
            match &symbol_version {
                Ok(v) => Value::from(u64::from(*v)),
                Err(reason) => Value::unavailable(reason.clone()),
            },
        );
        let symbol_version = symbol_version.ok();
        let (upload, info_source) = match info_spec {
            None => (None, InfoSource::None),
            Some(spec) => {
                let result = results.next().ok_or_else(|| self.no_result(spec))?;
                self.upload_info(spec, result, info_source).await?
            }
        };
        // A refused `_AppInfo` is judged once the tables say whether it is still there (a
        // download may have moved it); busy is busy at once.
        let app_bytes = match (app_spec, results.next()) {
            (Some(spec), Some(Err(code::BUSY))) => {
                return Err(self.refused(&Request::Read(spec), code::BUSY));
            }
            (Some(_), bytes) => bytes,
            (None, _) => None,
        };
        let app_now = match (&self.program, &app_bytes) {
            (Some(p), Some(Ok(bytes))) => p.app.as_ref().ok().map(|a| app_signals(a, bytes)),
            _ => None,
        };
        let signals_now = Signals {
            symbol_version,
            upload,
            app: app_now,
        };
        let cached = self.program.take();
        match cached {
            Some(program)
                if program.signals == signals_now && program.info_source == info_source =>
            {
                runtime.insert("symbol_table".to_owned(), Value::from("unchanged"));
                return Ok((program, app_bytes));
            }
            Some(ref program) => tracing::debug!(
                before = ?program.signals,
                now = ?signals_now,
                "program changed, uploading the tables again"
            ),
            None => {}
        }
        runtime.insert("symbol_table".to_owned(), Value::from("uploaded"));
        let program = match self.upload(signals_now, info_source).await {
            Ok(program) => program,
            Err(e) => {
                // Its signals differ from the device's now, so the next poll uploads again.
                self.program = cached;
                return Err(e);
            }
        };
        // `_AppInfo` read by the poll is only good if it is still at the same place.
        let app_bytes = match (&program.app, app_spec) {
            (Ok(loc), Some(old)) if loc.spec == old => app_bytes,
            _ => None,
        };
        Ok((program, app_bytes))
    }

    /// Interprets the upload info sub-read, falling back from 0xF00F to 0xF00C. The upload
    /// is a capability gap only when the device says, for both, that it does not offer the
    /// service (0x701, or 0x702 for an index group it does not serve); any other refusal
    /// fails the capture.
    async fn upload_info(
        &mut self,
        spec: ReadSpec,
        result: SubResult,
        source: InfoSource,
    ) -> Result<(Option<UploadInfo>, InfoSource), CollectError> {
        let legacy = ReadSpec {
            group: group::SYM_UPLOAD_INFO,
            offset: 0,
            length: 8,
        };
        match result {
            Ok(bytes) => Ok((
                Some(self.parse_upload_info(&bytes, spec, source == InfoSource::Legacy)?),
                source,
            )),
            Err(code) if is_service_not_supported(code) && source == InfoSource::Info2 => {
                match self.read(legacy).await? {
                    Ok(bytes) => Ok((
                        Some(self.parse_upload_info(&bytes, legacy, true)?),
                        InfoSource::Legacy,
                    )),
                    Err(code) if is_service_not_supported(code) => Ok((None, InfoSource::None)),
                    Err(code) => Err(self.refused(&Request::Read(legacy), code)),
                }
            }
            Err(code) if is_service_not_supported(code) => Ok((None, InfoSource::None)),
            Err(code) => Err(self.refused(&Request::Read(spec), code)),
        }
    }

    fn parse_upload_info(
        &self,
        bytes: &[u8],
        spec: ReadSpec,
        legacy: bool,
    ) -> Result<UploadInfo, CollectError> {
        UploadInfo::parse(bytes, legacy).map_err(|e| self.table_error(&Request::Read(spec), e))
    }

    /// A read in a batch that got no result at all: the batch's answer did not add up.
    fn no_result(&self, spec: ReadSpec) -> CollectError {
        self.malformed(&Request::Read(spec), "no result for this read")
    }

    /// A table (or upload info) that cannot be taken: malformed, or beyond a bound. A
    /// placeholder is not an error; callers handle it before.
    fn table_error(&self, request: &Request, error: TableError) -> CollectError {
        match error {
            TableError::Malformed(e) | TableError::Placeholder(e) => self.malformed(request, e),
            TableError::Bound(e) => self.scope().bound(request.describe(), e),
        }
    }

    /// Reads one table of `bytes` bytes. The upload info announced it, so a refusal
    /// contradicts the device's own answer and fails the capture.
    async fn read_table(&mut self, table_group: u32, bytes: u32) -> Result<Vec<u8>, CollectError> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let spec = ReadSpec {
            group: table_group,
            offset: 0,
            length: bytes,
        };
        match self.read(spec).await? {
            Ok(data) if data.len() == bytes as usize => Ok(data),
            Ok(data) => Err(self.malformed(
                &Request::Read(spec),
                format!(
                    "the upload info announced {bytes} bytes, the device sent {}",
                    data.len()
                ),
            )),
            Err(code) => Err(self.ads_error(
                Request::Read(spec).describe(),
                code,
                &format!(", although the upload info announced this table ({bytes} bytes)"),
            )),
        }
    }

    /// Uploads the symbol and data-type tables and derives the program items.
    async fn upload(
        &mut self,
        signals: Signals,
        info_source: InfoSource,
    ) -> Result<Program, CollectError> {
        let mut items = Vec::new();
        let mut symbols = None;
        let mut types = BTreeMap::new();
        // The size of the data-type table when it was uploaded (it must then describe every
        // type the symbol table names).
        let mut type_table = None;
        let gap = |path: &str, reason: String| {
            Item::new(path.to_owned(), Class::Program, Value::unavailable(reason))
        };
        match signals.upload {
            None => {
                // Both upload infos answered "not supported": a device without the upload
                // (BC/BX controllers, gateways). A stable capability, recorded as such.
                let reason = "device does not offer the symbol upload (0xF00F/0xF00C: service not supported)";
                items
                    .push(gap("ads/symbols", reason.to_owned()).map_err(|e| self.scope().item(e))?);
                items.push(
                    gap("ads/datatypes", reason.to_owned()).map_err(|e| self.scope().item(e))?,
                );
            }
            Some(info) => {
                let sym_request = Request::Read(ReadSpec {
                    group: group::SYM_UPLOAD,
                    offset: 0,
                    length: info.symbol_bytes,
                });
                let bytes = self
                    .read_table(group::SYM_UPLOAD, info.symbol_bytes)
                    .await?;
                match tables::parse_symbols(&bytes, info.symbols) {
                    Ok(list) => symbols = Some(list),
                    // Every entry nameless: the device's way of having no table to give.
                    Err(TableError::Placeholder(e)) => items.push(
                        gap(
                            "ads/symbols",
                            format!(
                                "device answers the symbol upload with placeholder entries ({e})"
                            ),
                        )
                        .map_err(|e| self.scope().item(e))?,
                    ),
                    Err(e) => return Err(self.table_error(&sym_request, e)),
                }
                match info.datatypes {
                    // The legacy upload info has no data-type figures: the device's own
                    // answer says there is no data-type table to ask for.
                    None => items.push(
                        gap(
                            "ads/datatypes",
                            "device reports no data-type table (legacy upload info 0xF00C)"
                                .to_owned(),
                        )
                        .map_err(|e| self.scope().item(e))?,
                    ),
                    Some((count, bytes)) => {
                        let dt_request = Request::Read(ReadSpec {
                            group: group::SYM_DT_UPLOAD,
                            offset: 0,
                            length: bytes,
                        });
                        let data = self.read_table(group::SYM_DT_UPLOAD, bytes).await?;
                        match tables::parse_datatypes(&data, count) {
                            Ok(list) => {
                                types = tables::index_types(list);
                                types::check_table(&types)
                                    .map_err(|e| self.malformed(&dt_request, e))?;
                                type_table = Some(bytes);
                            }
                            Err(TableError::Placeholder(e)) => items.push(
                                gap(
                                    "ads/datatypes",
                                    format!(
                                        "device answers the data-type upload with placeholder entries ({e})"
                                    ),
                                )
                                .map_err(|e| self.scope().item(e))?,
                            ),
                            Err(e) => return Err(self.table_error(&dt_request, e)),
                        }
                    }
                }
            }
        }
        if let Some(list) = &symbols {
            for s in list {
                items.push(self.item(
                    format!("ads/symbol/{}", s.name),
                    Class::Program,
                    symbol_value(s),
                )?);
            }
        }
        for dt in types.values() {
            items.push(self.item(
                format!("ads/datatype/{}", dt.name),
                Class::Program,
                datatype_value(dt),
            )?);
        }
        let app = self.locate_app_info(symbols.as_deref(), &types, type_table)?;
        Ok(Program {
            signals,
            info_source,
            symbols,
            types,
            items,
            app,
            by_name: BTreeMap::new(),
        })
    }

    /// Where `_AppInfo` is, or why it is not there in stable words: no symbol table to look
    /// in, or a symbol table that does not list it (TwinCAT 2, other vendors), or no
    /// data-type table to lay it out with. A data-type table that is there but does not
    /// describe the type the symbol table gives `_AppInfo` contradicts it: malformed.
    fn locate_app_info(
        &self,
        symbols: Option<&[Symbol]>,
        types: &BTreeMap<String, DataType>,
        type_table: Option<u32>,
    ) -> Result<Result<AppInfoLoc, String>, CollectError> {
        let Some(list) = symbols else {
            return Ok(Err(
                "no symbol table to find TwinCAT_SystemInfoVarList._AppInfo in".to_owned(),
            ));
        };
        let Some(s) = list
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(APP_INFO_SYMBOL))
        else {
            return Ok(Err(format!(
                "{APP_INFO_SYMBOL} is not in the symbol table (TwinCAT 2 or another vendor's ADS server)"
            )));
        };
        let Some(type_table) = type_table else {
            return Ok(Err(format!(
                "the layout of {APP_INFO_SYMBOL} (type {}) needs the data-type table, which this device does not give",
                s.type_name
            )));
        };
        let shape = (Types { table: types })
            .shape(&s.type_name, s.size, s.base_type)
            .map_err(|e| self.shape_error(APP_INFO_SYMBOL, e))?;
        match shape {
            Shape::Struct(fields) if s.size <= MAX_VALUE_BYTES => Ok(Ok(AppInfoLoc {
                spec: ReadSpec {
                    group: s.group,
                    offset: s.offset,
                    length: s.size,
                },
                fields,
            })),
            _ => Err(self.malformed(
                &Request::Read(ReadSpec {
                    group: group::SYM_DT_UPLOAD,
                    offset: 0,
                    length: type_table,
                }),
                format!(
                    "the symbol table lists {APP_INFO_SYMBOL} as {} ({} bytes), which the data-type table does not describe as a structure",
                    s.type_name, s.size
                ),
            )),
        }
    }

    /// Resolves the configured setpoints to reads. A setpoint the device's own directory
    /// does not list (or cannot be asked for) becomes a stable not-available item; anything
    /// else that stops a setpoint from being read fails the capture.
    async fn plan_setpoints(
        &mut self,
        program: &mut Program,
    ) -> Result<(Vec<Planned>, Vec<Item>), CollectError> {
        let mut planned: Vec<Planned> = Vec::new();
        let mut gaps = Vec::new();
        let mut seen = HashSet::new();
        for sp in self.setpoints.clone() {
            let mut found: Vec<Result<Planned, Unplanned>> = Vec::new();
            let types = Types {
                table: &program.types,
            };
            if let Some(prefix) = sp.symbol.strip_suffix('*') {
                match &program.symbols {
                    None => found.push(Err(Unplanned::NotAvailable(
                        "a symbol prefix needs the symbol table, which this device does not upload"
                            .to_owned(),
                    ))),
                    Some(list) => {
                        let mut matches: Vec<&Symbol> = list
                            .iter()
                            .filter(|s| starts_with_ci(&s.name, prefix))
                            .collect();
                        matches.sort_by(|a, b| a.name.cmp(&b.name));
                        if matches.is_empty() {
                            found.push(Err(Unplanned::NotAvailable(format!(
                                "no symbol starts with {prefix}"
                            ))));
                        }
                        for s in matches {
                            found.push(self.plan_symbol(&types, s, SYMBOL_TABLE));
                        }
                    }
                }
            } else if let Some(list) = &program.symbols {
                match list
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case(&sp.symbol))
                {
                    Some(s) => found.push(self.plan_symbol(&types, s, SYMBOL_TABLE)),
                    None => found.push(self.plan_field(&types, list, &sp.symbol)),
                }
            } else {
                let key = sp.symbol.to_ascii_lowercase();
                let entry = match program.by_name.get(&key) {
                    Some(entry) => entry.clone(),
                    None => {
                        let entry = self.symbol_by_name(&sp.symbol).await?;
                        program.by_name.insert(key, entry.clone());
                        entry
                    }
                };
                let types = Types {
                    table: &program.types,
                };
                found.push(match entry {
                    Some(s) => self.plan_symbol(&types, &s, BY_NAME),
                    // Without a symbol table, the by-name lookup is the device's directory:
                    // "symbol not found" from it means there is no such symbol.
                    None => Err(Unplanned::NotAvailable(format!(
                        "no symbol {} on the device ({BY_NAME}: {})",
                        sp.symbol,
                        error_text(code::SYMBOL_NOT_FOUND)
                    ))),
                });
            }
            for f in found {
                match f {
                    Ok(p) => {
                        if seen.insert(p.name.to_ascii_lowercase()) {
                            planned.push(p);
                        }
                    }
                    Err(Unplanned::NotAvailable(reason)) => {
                        if seen.insert(sp.symbol.to_ascii_lowercase()) {
                            gaps.push(self.item(
                                format!("ads/value/{}", sp.symbol),
                                Class::Setpoint,
                                Value::unavailable(reason),
                            )?);
                        }
                    }
                    Err(Unplanned::Fails(e)) => return Err(e),
                }
            }
        }
        Ok((planned, gaps))
    }

    /// A symbol whose value is beyond [`MAX_VALUE_BYTES`]: the configuration asks for more
    /// than this collector reads, a bound.
    fn too_large(&self, symbol: &str, size: u32) -> Unplanned {
        Unplanned::Fails(self.scope().bound(
            format!("the value of symbol {symbol}"),
            format!(
                "{symbol} is {size} bytes; otdrift reads at most {MAX_VALUE_BYTES} bytes per symbol"
            ),
        ))
    }

    /// Plans the read of a whole symbol that `directory` lists.
    fn plan_symbol(
        &self,
        types: &Types<'_>,
        s: &Symbol,
        directory: &'static str,
    ) -> Result<Planned, Unplanned> {
        if s.size == 0 {
            // The directory's own, stable answer: a bit-addressed symbol has no whole byte.
            return Err(Unplanned::NotAvailable(format!(
                "{} has size 0 (a bit-addressed symbol); otdrift captures whole bytes",
                s.name
            )));
        }
        if s.size > MAX_VALUE_BYTES {
            return Err(self.too_large(&s.name, s.size));
        }
        let shape = types
            .shape(&s.type_name, s.size, s.base_type)
            .map_err(|e| self.shape_error(&s.name, e))?;
        Ok(Planned {
            name: s.name.clone(),
            spec: ReadSpec {
                group: s.group,
                offset: s.offset,
                length: s.size,
            },
            shape,
            directory,
        })
    }

    /// Plans the read of a structure field named `Symbol.Field.Sub`, through the data-type
    /// table.
    fn plan_field(
        &self,
        types: &Types<'_>,
        symbols: &[Symbol],
        path: &str,
    ) -> Result<Planned, Unplanned> {
        let not_found = || Unplanned::NotAvailable(format!("no symbol {path} in the symbol table"));
        // The longest symbol name that is a prefix of the path followed by '.'.
        let base = symbols
            .iter()
            .filter(|s| {
                starts_with_ci(path, &s.name) && path.as_bytes().get(s.name.len()) == Some(&b'.')
            })
            .max_by_key(|s| s.name.len())
            .ok_or_else(not_found)?;
        let mut shape = types
            .shape(&base.type_name, base.size, base.base_type)
            .map_err(|e| self.shape_error(&base.name, e))?;
        let mut offset = 0u32;
        let mut size = base.size;
        let mut name = base.name.clone();
        for part in path
            .get(base.name.len() + 1..)
            .unwrap_or_default()
            .split('.')
        {
            let Shape::Struct(fields) = &shape else {
                if types.table.is_empty() {
                    return Err(Unplanned::NotAvailable(format!(
                        "the fields of {} are unknown without the data-type table",
                        base.name
                    )));
                }
                return Err(not_found());
            };
            let Some((fname, foff, fsize, fshape)) =
                fields.iter().find(|(n, ..)| n.eq_ignore_ascii_case(part))
            else {
                return Err(not_found());
            };
            offset = offset
                .checked_add(*foff)
                .ok_or_else(|| self.overflow(path))?;
            size = *fsize;
            name = format!("{name}.{fname}");
            shape = fshape.clone();
        }
        if size == 0 {
            return Err(Unplanned::NotAvailable(format!(
                "{path} has size 0 (a bit field); otdrift captures whole bytes"
            )));
        }
        if size > MAX_VALUE_BYTES {
            return Err(self.too_large(path, size));
        }
        Ok(Planned {
            name,
            spec: ReadSpec {
                group: base.group,
                offset: base
                    .offset
                    .checked_add(offset)
                    .ok_or_else(|| self.overflow(path))?,
                length: size,
            },
            shape,
            directory: SYMBOL_TABLE,
        })
    }

    /// Field offsets that run past the 4 GiB an index offset can address: the tables do not
    /// add up.
    fn overflow(&self, path: &str) -> Unplanned {
        Unplanned::Fails(self.scope().malformed(
            format!("Read 0x{:04X} (data-type upload)", group::SYM_DT_UPLOAD),
            format!("the offsets of {path} add up to more than 4 GiB"),
        ))
    }

    /// 0xF009: one symbol's entry by name, for devices without a symbol table. `None`: the
    /// device says it has no such symbol (0x710); any other refusal fails the capture.
    async fn symbol_by_name(&mut self, name: &str) -> Result<Option<Symbol>, CollectError> {
        let request = Request::SymbolInfoByName {
            name: name.to_owned(),
            max: MAX_SYMBOL_ENTRY,
        };
        match self.call_data(&request).await? {
            Ok(bytes) => {
                let (symbol, _) =
                    tables::parse_symbol_entry(&bytes).map_err(|e| self.malformed(&request, e))?;
                if !symbol.name.eq_ignore_ascii_case(name) {
                    return Err(self
                        .malformed(&request, format!("answered the entry of {:?}", symbol.name)));
                }
                Ok(Some(symbol))
            }
            Err(code::SYMBOL_NOT_FOUND) => Ok(None),
            Err(code) => Err(self.refused(&request, code)),
        }
    }

    async fn capture_inner(&mut self) -> Result<(Snapshot, BTreeMap<String, Value>), CollectError> {
        let mut snapshot = Snapshot::new();
        let mut runtime = BTreeMap::new();
        if self.conn.is_none() {
            self.open().await?;
        }
        for item in self.read_identity().await? {
            put(&mut snapshot, item, &self.asset)?;
        }
        self.read_state(&mut runtime).await?;
        let (mut program, mut app_bytes) = self.refresh_program(&mut runtime).await?;
        let outcome = self.capture_values(&mut program, &mut app_bytes).await;
        // Keep what was learned even when the values could not be read.
        let (values, app_items) = match outcome {
            Ok(found) => found,
            Err(e) => {
                self.program = Some(program);
                return Err(e);
            }
        };
        for item in program.items.iter().cloned().chain(app_items) {
            put(&mut snapshot, item, &self.asset)?;
        }
        for item in values {
            // A field reached both through its structure and by its own name is kept once.
            if snapshot.get(item.path()).is_none() {
                put(&mut snapshot, item, &self.asset)?;
            }
        }
        if let Some(conn) = &self.conn {
            runtime.insert(
                "source_ams_net_id".to_owned(),
                Value::Text(net_id_text(conn.source.net_id)),
            );
        }
        runtime.insert("target".to_owned(), Value::Text(self.target().to_string()));
        runtime.insert("sum_read".to_owned(), Value::from(self.sum_mode.name()));
        self.program = Some(program);
        Ok((snapshot, runtime))
    }

    /// Reads the setpoints (and `_AppInfo` when the poll did not), returning the setpoint
    /// items and the `_AppInfo` items; records the application counters in the program's
    /// signals.
    async fn capture_values(
        &mut self,
        program: &mut Program,
        app_bytes: &mut Option<SubResult>,
    ) -> Result<(Vec<Item>, Vec<Item>), CollectError> {
        let (planned, mut items) = self.plan_setpoints(program).await?;
        let mut specs: Vec<ReadSpec> = planned.iter().map(|p| p.spec).collect();
        let app_loc = program.app.clone();
        let read_app = app_loc.is_ok() && app_bytes.is_none();
        if let (true, Ok(loc)) = (read_app, &app_loc) {
            specs.push(loc.spec);
        }
        let mut results = self.read_values(&specs).await?.into_iter();
        for p in &planned {
            let request = Request::Read(p.spec);
            match results.next() {
                Some(Ok(bytes)) if bytes.len() == p.spec.length as usize => {
                    let mut flat = Vec::new();
                    types::decode(&p.shape, &bytes).flatten(String::new(), &mut flat);
                    for (suffix, value) in flat {
                        items.push(self.item(
                            format!("ads/value/{}{suffix}", p.name),
                            Class::Setpoint,
                            value,
                        )?);
                    }
                }
                Some(Ok(bytes)) => {
                    return Err(self.malformed(
                        &request,
                        format!(
                            "symbol {} is {} bytes, the device answered {}",
                            p.name,
                            p.spec.length,
                            bytes.len()
                        ),
                    ));
                }
                // Refused even when read alone: the directory lists the symbol, the device
                // will not read it. A contradiction, never a gap.
                Some(Err(code)) => {
                    return Err(self.contradiction(p.spec, &p.name, p.directory, code));
                }
                None => return Err(self.no_result(p.spec)),
            }
        }
        if read_app {
            *app_bytes = results.next();
        }
        let mut app_items = Vec::new();
        match (&app_loc, app_bytes.as_ref()) {
            (Err(reason), _) => app_items.push(self.item(
                "ads/app".to_owned(),
                Class::Program,
                Value::unavailable(reason.clone()),
            )?),
            (Ok(loc), Some(Ok(bytes))) if bytes.len() == loc.spec.length as usize => {
                program.signals.app = Some(app_signals(loc, bytes));
                for (path, value) in app_values(loc, bytes) {
                    app_items.push(self.item(path.clone(), app_class(&path), value)?);
                }
            }
            // The symbol table lists `_AppInfo` and the device refuses to read it, even
            // alone: a contradiction.
            (Ok(loc), Some(Err(code))) => {
                return Err(self.contradiction(loc.spec, APP_INFO_SYMBOL, SYMBOL_TABLE, *code));
            }
            (Ok(loc), _) => {
                return Err(self.malformed(
                    &Request::Read(loc.spec),
                    format!("{APP_INFO_SYMBOL} did not read in full"),
                ));
            }
        }
        Ok((items, app_items))
    }
}

fn put(snapshot: &mut Snapshot, item: Item, asset: &str) -> Result<(), CollectError> {
    snapshot.insert(item).map_err(|e| CollectError {
        asset: asset.to_owned(),
        address: String::new(),
        request: String::new(),
        kind: crate::ErrorKind::Bound(format!("item beyond limits: {e}")),
    })
}

/// A symbol's program item value.
fn symbol_value(s: &Symbol) -> Value {
    let mut m = BTreeMap::new();
    m.insert("type".to_owned(), Value::Text(s.type_name.clone()));
    m.insert("size".to_owned(), Value::from(s.size));
    m.insert("group".to_owned(), Value::from(s.group));
    m.insert("offset".to_owned(), Value::from(s.offset));
    m.insert("flags".to_owned(), Value::from(s.flags));
    m.insert("base_type".to_owned(), Value::from(s.base_type));
    m.insert(
        "persistent".to_owned(),
        Value::Bool(s.flags & FLAG_PERSISTENT != 0),
    );
    Value::Map(m)
}

/// A data type's program item value.
fn datatype_value(dt: &DataType) -> Value {
    let mut m = BTreeMap::new();
    m.insert("size".to_owned(), Value::from(dt.size));
    m.insert("base_type".to_owned(), Value::from(dt.base_type));
    m.insert("flags".to_owned(), Value::from(dt.flags));
    if !dt.type_name.is_empty() {
        m.insert("type".to_owned(), Value::Text(dt.type_name.clone()));
    }
    let dims = |array: &[(i32, u32)]| {
        Value::List(
            array
                .iter()
                .map(|&(lo, n)| Value::List(vec![Value::Int(i64::from(lo)), Value::from(n)]))
                .collect(),
        )
    };
    if !dt.array.is_empty() {
        m.insert("array".to_owned(), dims(&dt.array));
    }
    if !dt.fields.is_empty() {
        let fields = dt
            .fields
            .iter()
            .map(|f| {
                let mut fm = BTreeMap::new();
                fm.insert("name".to_owned(), Value::Text(f.name.clone()));
                fm.insert("type".to_owned(), Value::Text(f.type_name.clone()));
                fm.insert(
                    "offset".to_owned(),
                    f.offset.map_or(Value::Null, Value::from),
                );
                fm.insert("size".to_owned(), Value::from(f.size));
                Value::Map(fm)
            })
            .collect();
        m.insert("fields".to_owned(), Value::List(fields));
    }
    Value::Map(m)
}

/// The `_AppInfo` field named `name` (ignoring case), decoded.
fn app_field(loc: &AppInfoLoc, bytes: &[u8], name: &str) -> Option<Value> {
    let (_, offset, size, shape) = loc
        .fields
        .iter()
        .find(|(n, ..)| n.eq_ignore_ascii_case(name))?;
    let start = *offset as usize;
    let part = bytes.get(start..start.checked_add(*size as usize)?)?;
    Some(types::decode(shape, part).into_value())
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::UInt(u) => Some(*u),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// OnlineChangeCnt and AppTimestamp: the change signals `_AppInfo` carries.
fn app_signals(loc: &AppInfoLoc, bytes: &[u8]) -> (Option<u64>, Option<u64>) {
    (
        app_field(loc, bytes, "OnlineChangeCnt")
            .as_ref()
            .and_then(as_u64),
        app_field(loc, bytes, "AppTimestamp")
            .as_ref()
            .and_then(as_u64),
    )
}

/// The hashed `ads/app/...` items.
/// The class of an `ads/app/...` item: the online change counter and the application's
/// timestamp are the runtime's own record of what was done to it (history: two controllers
/// running the same project never share them); the project, application name and task count
/// are what the project delivers (program).
fn app_class(path: &str) -> Class {
    match path {
        "ads/app/online_change_count" | "ads/app/timestamp" => Class::History,
        _ => Class::Program,
    }
}

fn app_values(loc: &AppInfoLoc, bytes: &[u8]) -> Vec<(String, Value)> {
    let fields = [
        ("OnlineChangeCnt", "online_change_count"),
        ("AppTimestamp", "timestamp"),
        ("ProjectName", "project_name"),
        ("AppName", "app_name"),
        ("TaskCnt", "task_count"),
    ];
    fields
        .iter()
        .map(|(field, item)| {
            let value = match app_field(loc, bytes, field) {
                Some(v) if *field == "AppTimestamp" => match as_u64(&v) {
                    Some(secs) => Value::Text(types::dt_literal(secs)),
                    None => v,
                },
                Some(v) => v,
                None => Value::unavailable(format!("{APP_INFO_SYMBOL} has no field {field}")),
            };
            (format!("ads/app/{item}"), value)
        })
        .collect()
}

#[async_trait]
impl Collector for AdsCollector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::Ads
    }

    async fn identify(&mut self) -> Result<Vec<Item>, CollectError> {
        let span = tracing::info_span!("identify", asset = %self.asset, protocol = "ads");
        async { self.read_identity().await }.instrument(span).await
    }

    async fn capture(&mut self) -> Result<Capture, CollectError> {
        let span = tracing::info_span!("capture", asset = %self.asset, protocol = "ads");
        crate::timed_capture(span, async {
            self.stats = CaptureStats::default();
            let (snapshot, runtime) = self.capture_inner().await?;
            let mut runtime = runtime;
            let operating_state =
                crate::split_operating_state(&mut runtime, &["ads_state", "device_state"]);
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
        if let Some(conn) = self.conn.take() {
            conn.shutdown().await;
        }
    }
}

/// The setpoint entry covering `path` (`ads/value/<SYMBOL>[.<Field>...]`): an exact symbol,
/// a structure the path is a field of, or a `.*` prefix; names compared ignoring ASCII case.
pub fn setpoint_label(cfg: &AdsConfig, path: &str) -> Option<String> {
    let name = path.strip_prefix("ads/value/")?;
    cfg.setpoints
        .iter()
        .find(|sp| {
            if name.eq_ignore_ascii_case(&sp.symbol) {
                return true;
            }
            match sp.symbol.strip_suffix('*') {
                Some(prefix) => starts_with_ci(name, prefix),
                None => {
                    starts_with_ci(name, &sp.symbol)
                        && matches!(name.as_bytes().get(sp.symbol.len()), Some(b'.' | b'['))
                }
            }
        })
        .map(|sp| sp.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(length: u32) -> ReadSpec {
        ReadSpec {
            group: 0x4040,
            offset: 0,
            length,
        }
    }

    #[test]
    fn batches_respect_both_limits() {
        let many: Vec<ReadSpec> = (0..1001).map(|_| spec(4)).collect();
        let cut = batches(&many);
        assert_eq!(
            cut.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![500, 500, 1]
        );
        let big = vec![
            spec(MAX_SUM_BYTES / 2 + 1),
            spec(MAX_SUM_BYTES / 2),
            spec(10),
        ];
        assert_eq!(
            batches(&big).iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let huge = vec![spec(MAX_SUM_BYTES * 2), spec(1)];
        assert_eq!(
            batches(&huge).iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn labels_follow_names_fields_and_prefixes() {
        let cfg = AdsConfig {
            ams_net_id: [1, 2, 3, 4, 1, 1],
            ams_port: 851,
            source_ams_net_id: None,
            setpoints: vec![
                AdsSetpoint {
                    name: "fill".into(),
                    symbol: "GVL_Recipe.FillVolume".into(),
                },
                AdsSetpoint {
                    name: "recipe".into(),
                    symbol: "GVL_Recipe.*".into(),
                },
                AdsSetpoint {
                    name: "main".into(),
                    symbol: "MAIN.stParams".into(),
                },
            ],
        };
        let label = |p: &str| setpoint_label(&cfg, p);
        assert_eq!(
            label("ads/value/gvl_recipe.fillvolume").as_deref(),
            Some("fill")
        );
        assert_eq!(
            label("ads/value/GVL_Recipe.Product").as_deref(),
            Some("recipe")
        );
        assert_eq!(label("ads/value/GVL_Recipe.*").as_deref(), Some("recipe"));
        assert_eq!(
            label("ads/value/MAIN.stParams.Speed").as_deref(),
            Some("main")
        );
        assert_eq!(label("ads/value/MAIN.stParamsX"), None);
        assert_eq!(label("ads/symbol/GVL_Recipe.FillVolume"), None);
        assert_eq!(label("ads/value/MAIN.x"), None);
    }
}
