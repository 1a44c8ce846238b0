//! Beckhoff ADS (TwinCAT 2 and 3, and other vendors' ADS servers) over AMS/TCP, port 48898.
//!
//! The collector speaks AMS/TCP itself (`docs/decisions/0003-ads-client.md` says why not the
//! `ads` crate): every request runs under the asset's `timeout_ms`, every length the device
//! sends is bounded before anything is allocated for it, and only read requests can be built.
//!
//! Files: `request.rs` builds every request (the read-only boundary), `link.rs` is the AMS/TCP
//! connection and the read services (sum-reads and their fallbacks), `wire.rs` checks the
//! answers, `tables.rs` parses the symbol and data-type tables, `types.rs` lays out and
//! decodes values, `program.rs` keeps the program (change signals, table uploads, `_AppInfo`),
//! `plan.rs` resolves and reads the setpoints and `items.rs` turns answers into items.
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

//! # What is NOT hashed (`Capture::operating_state` and `Capture::runtime`)
//!
//! - the operating state `ads_state` (`RUN`, `STOP`, `CONFIG`...) and `device_state`, and
//!   `ads_state_code` in the runtime: a PLC switched to STOP is news (`asset.state_changed`),
//!   not drift;
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

mod decode;
mod items;
mod link;
mod plan;
mod program;
mod request;
mod tables;
mod types;
mod wire;

use std::path::Path;

use otdrift_config::{AdsConfig, AdsSetpoint, AssetConfig, Protocol, ProtocolConfig};
use otdrift_core::{Class, Item, Value};

use crate::CollectError;
use crate::driver::Driver;
use crate::module::{Module, Observed};
use link::{AdsLink, SumMode};
use program::Program;
use request::{ReadSpec, Request, group};
use types::ShapeError;
use wire::{AmsAddr, Cursor};

pub use items::setpoint_label;
pub use link::SOURCE_AMS_PORT;

/// The most sub-reads in one sum-read (Beckhoff's documented limit for sum commands).
pub const MAX_SUM_READS: usize = 500;
/// The most value bytes one sum-read asks for; a batch is cut before it would exceed this.
pub const MAX_SUM_BYTES: u32 = 1024 * 1024;
/// The largest setpoint symbol captured; a bigger one is recorded as not available.
pub const MAX_VALUE_BYTES: u32 = 1024 * 1024;
/// The symbol TwinCAT 3 publishes its application info in.
pub const APP_INFO_SYMBOL: &str = "TwinCAT_SystemInfoVarList._AppInfo";

/// The Beckhoff ADS collector for one asset; keeps its AMS/TCP connection and what it
/// learned of the program between captures.
#[derive(Debug)]
pub struct AdsCollector {
    driver: Driver<AdsLink>,
    setpoints: Vec<AdsSetpoint>,
    program: Option<Program>,
}

impl AdsCollector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &AdsConfig) -> Self {
        let link = AdsLink {
            host: asset.host.clone(),
            port: asset.port,
            target: AmsAddr {
                net_id: cfg.ams_net_id,
                port: cfg.ams_port,
            },
            source_net_id: cfg.source_ams_net_id,
            sum_mode: SumMode::WithLengths,
        };
        AdsCollector {
            driver: Driver::new(asset, link),
            setpoints: cfg.setpoints.clone(),
            program: None,
        }
    }

    fn malformed(&self, request: &Request, detail: impl Into<String>) -> CollectError {
        self.driver
            .scope()
            .malformed(request.describe(), detail.into())
    }

    fn ads_error(&self, request: String, code: u32, why: &str) -> CollectError {
        self.driver.ads_error(request, code, why)
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
            ShapeError::Cycle(detail) => self.driver.scope().malformed(
                format!("Read 0x{:04X} (data-type upload)", group::SYM_DT_UPLOAD),
                detail,
            ),
            ShapeError::Bound(detail) => self
                .driver
                .scope()
                .bound(format!("the value of symbol {symbol}"), detail),
        }
    }

    fn item(&self, path: String, class: Class, value: Value) -> Result<Item, CollectError> {
        self.driver.scope().new_item(path, class, value)
    }

    /// Sends a service every ADS device answers and checks its answer: an AMS error or a
    /// non-zero ADS result fails the capture as refused (never a capability gap), and the data
    /// (result included) must be `len` bytes long. Returns the data after the result.
    async fn required(
        &mut self,
        request: &Request,
        service: &str,
        len: std::ops::RangeInclusive<usize>,
    ) -> Result<Vec<u8>, CollectError> {
        let answer = self.driver.exchange(request).await?;
        let mut c = Cursor::new(&answer.data);
        let result = if answer.error != 0 {
            answer.error
        } else {
            c.u32("result").map_err(|e| self.malformed(request, e))?
        };
        if result != 0 {
            return Err(self.refused(request, result));
        }
        if !len.contains(&answer.data.len()) {
            let (lo, hi) = (len.start(), len.end());
            let expected = if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo} to {hi}")
            };
            return Err(self.malformed(
                request,
                format!(
                    "{} data bytes, {service} answers {expected}",
                    answer.data.len()
                ),
            ));
        }
        Ok(answer.data.get(4..).unwrap_or_default().to_vec())
    }

    /// ReadDeviceInfo: the identity items.
    async fn device_info(&mut self) -> Result<Vec<Item>, CollectError> {
        let request = Request::DeviceInfo;
        // The standard answer is 24 bytes (a 16-byte name field); some ADS servers other than
        // TwinCAT send only the name's bytes and its NUL. Anything longer does not fit.
        let data = self.required(&request, "ReadDeviceInfo", 8..=24).await?;
        let mut c = Cursor::new(&data);
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

    /// ReadState: the operating state (never hashed).
    async fn read_state(&mut self, observed: &mut Observed) -> Result<(), CollectError> {
        let request = Request::ReadState;
        let data = self.required(&request, "ReadState", 8..=8).await?;
        let mut c = Cursor::new(&data);
        let ads_state = c
            .u16("ADS state")
            .map_err(|e| self.malformed(&request, e))?;
        let device_state = c
            .u16("device state")
            .map_err(|e| self.malformed(&request, e))?;
        observed.operating_state.insert(
            "ads_state".to_owned(),
            Value::Text(
                items::ads_state_name(ads_state)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("unknown ({ads_state})")),
            ),
        );
        observed
            .runtime
            .insert("ads_state_code".to_owned(), Value::from(ads_state));
        observed
            .operating_state
            .insert("device_state".to_owned(), Value::from(device_state));
        Ok(())
    }
}

impl Module for AdsCollector {
    const PROTOCOL: Protocol = Protocol::Ads;
    type Config = AdsConfig;
    type Link = AdsLink;

    fn config(protocol: &ProtocolConfig) -> Option<&AdsConfig> {
        match protocol {
            ProtocolConfig::Ads(cfg) => Some(cfg),
            _ => None,
        }
    }

    fn build(asset: &AssetConfig, cfg: &AdsConfig, _data_dir: &Path) -> Self {
        AdsCollector::new(asset, cfg)
    }

    fn setpoint_label(cfg: &AdsConfig, path: &str) -> Option<String> {
        items::setpoint_label(cfg, path)
    }

    const READER: u32 = 1;

    fn capture_spec(cfg: &AdsConfig) -> Vec<String> {
        cfg.setpoints
            .iter()
            .map(|s| format!("symbol {}", s.symbol))
            .collect()
    }

    fn driver(&self) -> &Driver<AdsLink> {
        &self.driver
    }

    fn driver_mut(&mut self) -> &mut Driver<AdsLink> {
        &mut self.driver
    }

    async fn read(&mut self) -> Result<Observed, CollectError> {
        let mut observed = Observed::default();
        let scope = self.driver.scope().clone();
        for item in self.device_info().await? {
            scope.insert(&mut observed.snapshot, item)?;
        }
        self.read_state(&mut observed).await?;
        let (mut program, mut app_bytes) = self.refresh_program(&mut observed.runtime).await?;
        let outcome = self.capture_values(&mut program, &mut app_bytes).await;
        // Keep what was learned even when the values could not be read.
        let (values, app_items) = match outcome {
            Ok(found) => found,
            Err(e) => {
                self.program = Some(program);
                return Err(e);
            }
        };
        let snapshot = &mut observed.snapshot;
        for item in program.items.iter().cloned().chain(app_items) {
            scope.insert(snapshot, item)?;
        }
        for item in values {
            // A field reached both through its structure and by its own name is kept once.
            if snapshot.get(item.path()).is_none() {
                scope.insert(snapshot, item)?;
            }
        }
        let runtime = &mut observed.runtime;
        if let Some(source) = self.driver.source() {
            runtime.insert(
                "source_ams_net_id".to_owned(),
                Value::Text(items::net_id_text(source.net_id)),
            );
        }
        let link = &self.driver.link;
        runtime.insert("target".to_owned(), Value::Text(link.target.to_string()));
        runtime.insert("sum_read".to_owned(), Value::from(link.sum_mode.name()));
        self.program = Some(program);
        Ok(observed)
    }

    async fn read_identity(&mut self) -> Result<Vec<Item>, CollectError> {
        self.device_info().await
    }
}
