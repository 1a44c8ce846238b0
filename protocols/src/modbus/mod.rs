//! Modbus TCP, on tokio-modbus.
//!
//! What is captured:
//! - **identity** (class identity): Read Device Identification (FC 43 / MEI 14), regular
//!   objects 0x00-0x06 (vendor, product code, revision, URL, product and model name, user
//!   application name) and, where the device's conformity level offers them, extended objects.
//!   A device that refuses FC 43 (exception 1, 2 or 3) gets one stable item,
//!   `modbus/identity` = not available, so the digest stays stable and the gap visible. Set
//!   `device_id = false` for devices that ignore FC 43 silently instead of refusing it.
//! - **setpoints** (class setpoint): every address of `[[asset.setpoints]]`, as
//!   `modbus/<table>/<address>` (0-based protocol addresses), registers as unsigned integers,
//!   coils and discrete inputs as booleans, read in the fewest requests (see [`plan`]).
//!
//! Modbus has no program state and no change counter, so there is no program class here.
//!
//! Only read function codes (1, 2, 3, 4, 43) can be sent: every request goes through
//! [`ModbusCollector::call`], which takes a [`Read`] and nothing else.

pub mod plan;

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use otdrift_config::{AssetConfig, ModbusConfig, ModbusTable, Protocol};
use otdrift_core::{Class, Item, Snapshot, Value};
use tokio::net::TcpStream;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::{
    ExceptionCode, ReadCode, ReadDeviceIdentificationResponse, Request, Response, Slave,
};
use tracing::Instrument;

use crate::{Capture, CaptureStats, CollectError, Collector, Scope};
use plan::ReadOp;

/// The only requests this collector can send.
#[derive(Clone, Copy, Debug)]
enum Read {
    /// FC 1, 2, 3 or 4.
    Table(ReadOp),
    /// FC 43 / MEI 14.
    DeviceId { code: ReadCode, object: u8 },
}

impl Read {
    fn describe(&self) -> String {
        match self {
            Read::Table(op) => op.describe(),
            Read::DeviceId { code, object } => format!(
                "Read Device Identification (FC 43/14, read code {}, object 0x{object:02x})",
                code.value()
            ),
        }
    }

    /// The tokio-modbus request. Read functions only: this match is the collector's
    /// read-only boundary.
    fn request(&self) -> Request<'static> {
        match *self {
            Read::Table(op) => match op.table {
                ModbusTable::Holding => Request::ReadHoldingRegisters(op.start, op.count),
                ModbusTable::Input => Request::ReadInputRegisters(op.start, op.count),
                ModbusTable::Coil => Request::ReadCoils(op.start, op.count),
                ModbusTable::Discrete => Request::ReadDiscreteInputs(op.start, op.count),
            },
            Read::DeviceId { code, object } => Request::ReadDeviceIdentification(code, object),
        }
    }
}

/// The most FC 43 requests one identification may take; a device whose "more follows" never
/// ends is answering nonsense.
const MAX_DEVICE_ID_REQUESTS: u32 = 16;

/// Names of the basic and regular identification objects (Modbus Application Protocol
/// v1.1b3, 6.21).
fn object_name(id: u8) -> String {
    match id {
        0x00 => "vendor_name".to_owned(),
        0x01 => "product_code".to_owned(),
        0x02 => "revision".to_owned(),
        0x03 => "vendor_url".to_owned(),
        0x04 => "product_name".to_owned(),
        0x05 => "model_name".to_owned(),
        0x06 => "user_application_name".to_owned(),
        other => format!("object_0x{other:02x}"),
    }
}

/// The object ids a stream of `code` carries (6.21: basic 0x00-0x02; regular adds
/// 0x03-0x7F; extended is 0x80-0xFF).
fn id_category(code: ReadCode) -> std::ops::RangeInclusive<u8> {
    match code {
        ReadCode::Basic => 0x00..=0x02,
        ReadCode::Extended => 0x80..=0xFF,
        ReadCode::Regular | ReadCode::Specific => 0x00..=0x7F,
    }
}

fn exception_text(e: ExceptionCode) -> String {
    format!("exception 0x{:02x} ({e})", u8::from(e))
}

/// The Modbus collector for one asset; keeps its TCP connection between captures.
pub struct ModbusCollector {
    asset: String,
    host: String,
    port: u16,
    address: String,
    scope: Scope,
    unit_id: u8,
    device_id: bool,
    timeout: Duration,
    plan: Vec<ReadOp>,
    conn: Option<Context>,
    stats: CaptureStats,
}

impl std::fmt::Debug for ModbusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusCollector")
            .field("asset", &self.asset)
            .field("address", &self.address)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl ModbusCollector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &ModbusConfig) -> Self {
        ModbusCollector {
            asset: asset.id.clone(),
            host: asset.host.clone(),
            port: asset.port,
            address: asset.address.clone(),
            scope: Scope::new(&asset.id, &asset.address),
            unit_id: cfg.unit_id,
            device_id: cfg.device_id,
            timeout: Duration::from_millis(asset.timeout_ms),
            plan: plan::plan(&cfg.setpoints, cfg.max_registers, cfg.max_bits),
            conn: None,
            stats: CaptureStats::default(),
        }
    }

    /// The requests a capture sends for setpoints, in order.
    pub fn read_plan(&self) -> &[ReadOp] {
        &self.plan
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn timeout_error(&self, request: String, hint: &str) -> CollectError {
        self.scope.timeout(request, self.timeout_ms(), hint)
    }

    fn malformed(&self, read: &Read, detail: String) -> CollectError {
        self.scope.malformed(read.describe(), detail)
    }

    /// An exception answer: busy (exception 6, "server device busy") is its own kind, so the
    /// daemon backs off; every other exception is a refusal.
    fn exception(&self, read: &Read, e: ExceptionCode) -> CollectError {
        if e == ExceptionCode::ServerDeviceBusy {
            self.scope.busy(read.describe(), exception_text(e))
        } else {
            self.scope.refused(read.describe(), exception_text(e))
        }
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
            Err(_) => return Err(self.timeout_error("connect".to_owned(), "")),
            Ok(Err(source)) => return Err(self.scope.connect(source)),
            Ok(Ok(stream)) => stream,
        };
        // Requests are small and strictly request/response: do not wait to coalesce them.
        let _ = stream.set_nodelay(true);
        self.conn = Some(tokio_modbus::client::tcp::attach_slave(
            stream,
            Slave(self.unit_id),
        ));
        self.stats.connects += 1;
        tracing::debug!(address = %self.address, "connected");
        Ok(())
    }

    /// Sends one read and returns the device's answer or its exception.
    ///
    /// A pooled connection the device has closed since the last capture (devices drop idle
    /// clients) fails on first use; that one failure is retried once on a fresh connection.
    /// After a timeout the connection is dropped, so a late answer can never be taken for the
    /// answer to the next request.
    async fn call(&mut self, read: Read) -> Result<Result<Response, ExceptionCode>, CollectError> {
        let mut reused = self.conn.is_some();
        loop {
            if self.conn.is_none() {
                self.open().await?;
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            self.stats.requests += 1;
            let result = tokio::time::timeout(self.timeout, conn.call(read.request())).await;
            match result {
                Err(_) => {
                    self.conn = None;
                    let hint = if matches!(read, Read::DeviceId { .. }) {
                        "; if this device does not implement FC 43, set device_id = false for this asset"
                    } else {
                        ""
                    };
                    return Err(self.timeout_error(read.describe(), hint));
                }
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(tokio_modbus::Error::Transport(source)))
                    if source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    // tokio-modbus's decoder refused the frame: the device sent garbage.
                    self.conn = None;
                    return Err(self.malformed(&read, source.to_string()));
                }
                Ok(Err(tokio_modbus::Error::Transport(source))) => {
                    self.conn = None;
                    if reused {
                        reused = false;
                        tracing::debug!(error = %source, "pooled connection lost, reconnecting");
                        continue;
                    }
                    return Err(self.scope.transport(read.describe(), source));
                }
                Ok(Err(tokio_modbus::Error::Protocol(e))) => {
                    // Mismatched transaction id or function code: the stream is out of step.
                    self.conn = None;
                    return Err(self.malformed(&read, e.to_string()));
                }
            }
        }
    }

    async fn read_table(&mut self, op: ReadOp) -> Result<Vec<Value>, CollectError> {
        let read = Read::Table(op);
        let answer = match self.call(read).await? {
            Ok(answer) => answer,
            Err(exception) => return Err(self.exception(&read, exception)),
        };
        let wanted = usize::from(op.count);
        let values: Vec<Value> = match (op.table, answer) {
            (ModbusTable::Holding, Response::ReadHoldingRegisters(words))
            | (ModbusTable::Input, Response::ReadInputRegisters(words)) => {
                if words.len() != wanted {
                    return Err(self.malformed(
                        &read,
                        format!("asked for {wanted} registers, got {}", words.len()),
                    ));
                }
                words.into_iter().map(Value::from).collect()
            }
            (ModbusTable::Coil, Response::ReadCoils(bits))
            | (ModbusTable::Discrete, Response::ReadDiscreteInputs(bits)) => {
                // Bits arrive in whole bytes: the answer must carry ceil(count / 8) bytes.
                if bits.len() < wanted || bits.len() >= wanted + 8 {
                    return Err(self.malformed(
                        &read,
                        format!(
                            "asked for {wanted} bits ({} bytes), got {} bytes",
                            wanted.div_ceil(8),
                            bits.len() / 8
                        ),
                    ));
                }
                bits.into_iter().take(wanted).map(Value::Bool).collect()
            }
            (_, other) => {
                return Err(self.malformed(&read, format!("unexpected answer {other:?}")));
            }
        };
        Ok(values)
    }

    /// Reads one identification stream (basic, regular or extended objects), following
    /// "more follows" with a bound on the number of requests and a check that the device
    /// makes progress.
    ///
    /// The Modbus application protocol (v1.1b3, 6.21) tells a device that does not know the
    /// object id it was asked for to answer "as if object 0 were pointed out": asked for the
    /// extended stream from 0x80, a device without extended objects (pymodbus's server among
    /// them) restarts at object 0 and sends the regular objects again. So only objects of the
    /// requested category count; others are ignored, and a "next object" outside the category
    /// ends the stream. An object sent twice with the same value is a harmless repeat; with
    /// another value the device contradicts itself.
    async fn device_id_stream(
        &mut self,
        code: ReadCode,
    ) -> Result<Result<(Vec<(u8, Value)>, u8), ExceptionCode>, CollectError> {
        let category = id_category(code);
        let mut objects: Vec<(u8, Value)> = Vec::new();
        let mut next = *category.start();
        let mut conformity = None;
        for _ in 0..MAX_DEVICE_ID_REQUESTS {
            let read = Read::DeviceId { code, object: next };
            let answer = match self.call(read).await? {
                Ok(Response::ReadDeviceIdentification(r)) => r,
                Ok(other) => {
                    return Err(self.malformed(&read, format!("unexpected answer {other:?}")));
                }
                Err(e) => return Ok(Err(e)),
            };
            let ReadDeviceIdentificationResponse {
                conformity_level,
                more_follows,
                next_object_id,
                device_id_objects,
                ..
            } = answer;
            let level = *conformity.get_or_insert(conformity_level.value());
            for object in device_id_objects {
                if !category.contains(&object.id) {
                    continue;
                }
                let value = match object.value_as_str() {
                    Some(text) => Value::Text(text.trim_end_matches('\0').to_owned()),
                    None => Value::Bytes(object.value.to_vec()),
                };
                match objects.iter().find(|(id, _)| *id == object.id) {
                    Some((_, seen)) if *seen == value => {}
                    Some((_, seen)) => {
                        return Err(self.malformed(
                            &read,
                            format!(
                                "object 0x{:02x} sent twice with different values ({seen} and {value})",
                                object.id
                            ),
                        ));
                    }
                    None => objects.push((object.id, value)),
                }
            }
            if !more_follows || !category.contains(&next_object_id) {
                // Done, or the device restarted at object 0 of another category: nothing
                // more of this one.
                return Ok(Ok((objects, level)));
            }
            if next_object_id <= next {
                return Err(self.malformed(
                    &read,
                    format!(
                        "more follows, but the next object 0x{next_object_id:02x} does not advance past 0x{next:02x}"
                    ),
                ));
            }
            next = next_object_id;
        }
        Err(self.malformed(
            &Read::DeviceId { code, object: next },
            format!("identification still incomplete after {MAX_DEVICE_ID_REQUESTS} requests"),
        ))
    }

    /// Reads device identification: regular objects (falling back to basic), then the
    /// extended objects when the device's conformity level says it has them. Exceptions 1, 2
    /// and 3 mean "not implemented" and are recorded as a stable not-available item; other
    /// exceptions (busy, device failure) fail the capture, since they say nothing stable.
    async fn read_device_id(&mut self) -> Result<Vec<Item>, CollectError> {
        fn unsupported(e: ExceptionCode) -> bool {
            matches!(
                e,
                ExceptionCode::IllegalFunction
                    | ExceptionCode::IllegalDataAddress
                    | ExceptionCode::IllegalDataValue
            )
        }
        let mut regular = self.device_id_stream(ReadCode::Regular).await?;
        if let Err(ExceptionCode::IllegalDataValue) = regular {
            regular = self.device_id_stream(ReadCode::Basic).await?;
        }
        let (objects, level) = match regular {
            Ok(found) => found,
            Err(e) if unsupported(e) => {
                return Ok(vec![self.item(
                    "modbus/identity".to_owned(),
                    Class::Identity,
                    Value::unavailable(format!(
                        "device refused Read Device Identification ({})",
                        exception_text(e)
                    )),
                )?]);
            }
            Err(e) => return Err(self.refused(ReadCode::Regular, e)),
        };
        let mut items = Vec::with_capacity(objects.len() + 2);
        for (id, value) in objects {
            items.push(self.item(
                format!("modbus/identity/{}", object_name(id)),
                Class::Identity,
                value,
            )?);
        }
        items.push(self.item(
            "modbus/identity/conformity_level".to_owned(),
            Class::Identity,
            Value::UInt(u64::from(level)),
        )?);
        // Conformity 0x03 / 0x83: the device has extended objects (0x80-0xFF).
        if matches!(level, 0x03 | 0x83) {
            match self.device_id_stream(ReadCode::Extended).await? {
                Ok((extended, _)) => {
                    for (id, value) in extended {
                        items.push(self.item(
                            format!("modbus/identity/{}", object_name(id)),
                            Class::Identity,
                            value,
                        )?);
                    }
                }
                Err(e) if unsupported(e) => items.push(self.item(
                    "modbus/identity/extended".to_owned(),
                    Class::Identity,
                    Value::unavailable(format!(
                        "device refused extended identification ({})",
                        exception_text(e)
                    )),
                )?),
                Err(e) => return Err(self.refused(ReadCode::Extended, e)),
            }
        }
        Ok(items)
    }

    fn refused(&self, code: ReadCode, e: ExceptionCode) -> CollectError {
        self.exception(&Read::DeviceId { code, object: 0 }, e)
    }

    fn item(&self, path: String, class: Class, value: Value) -> Result<Item, CollectError> {
        Item::new(path, class, value).map_err(|e| self.scope.item(e))
    }

    fn insert(&self, snapshot: &mut Snapshot, item: Item) -> Result<(), CollectError> {
        snapshot.insert(item).map_err(|e| self.scope.item(e))
    }

    async fn capture_inner(&mut self) -> Result<Snapshot, CollectError> {
        let mut snapshot = Snapshot::new();
        if self.device_id {
            for item in self.read_device_id().await? {
                self.insert(&mut snapshot, item)?;
            }
        }
        for op in self.plan.clone() {
            let values = self.read_table(op).await?;
            for (offset, value) in values.into_iter().enumerate() {
                let addr = usize::from(op.start) + offset;
                let path = format!("modbus/{}/{addr}", op.table.as_str());
                let item = self.item(path, Class::Setpoint, value)?;
                self.insert(&mut snapshot, item)?;
            }
        }
        Ok(snapshot)
    }
}

#[async_trait]
impl Collector for ModbusCollector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::Modbus
    }

    async fn connect(&mut self) -> Result<(), CollectError> {
        if self.conn.is_none() {
            self.open().await?;
        }
        Ok(())
    }

    async fn identify(&mut self) -> Result<Vec<Item>, CollectError> {
        let span = tracing::info_span!("identify", asset = %self.asset, protocol = "modbus");
        async {
            if self.device_id {
                self.read_device_id().await
            } else {
                Ok(Vec::new())
            }
        }
        .instrument(span)
        .await
    }

    async fn capture(&mut self) -> Result<Capture, CollectError> {
        let span = tracing::info_span!("capture", asset = %self.asset, protocol = "modbus");
        crate::timed_capture(span, async {
            self.stats = CaptureStats::default();
            let snapshot = self.capture_inner().await?;
            Ok(Capture {
                snapshot,
                runtime: Default::default(),
                operating_state: Default::default(),
                stats: self.stats,
            })
        })
        .await
    }

    async fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
    }
}

/// The setpoint entry covering `path` (`modbus/<table>/<address>`).
pub fn setpoint_label(cfg: &ModbusConfig, path: &str) -> Option<String> {
    let mut parts = path.split('/');
    if parts.next() != Some("modbus") {
        return None;
    }
    let table = parts.next()?;
    let addr: u32 = parts.next()?.parse().ok()?;
    cfg.setpoints
        .iter()
        .find(|s| {
            s.table.as_str() == table
                && addr >= u32::from(s.start)
                && addr < u32::from(s.start) + u32::from(s.count)
        })
        .map(|s| s.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_requests_can_be_built() {
        use tokio_modbus::FunctionCode;
        for table in [
            ModbusTable::Holding,
            ModbusTable::Input,
            ModbusTable::Coil,
            ModbusTable::Discrete,
        ] {
            let read = Read::Table(ReadOp {
                table,
                start: 0,
                count: 1,
            });
            let fc = read.request().function_code();
            assert!(
                matches!(
                    fc,
                    FunctionCode::ReadCoils
                        | FunctionCode::ReadDiscreteInputs
                        | FunctionCode::ReadHoldingRegisters
                        | FunctionCode::ReadInputRegisters
                ),
                "{fc:?}"
            );
        }
        let id = Read::DeviceId {
            code: ReadCode::Basic,
            object: 0,
        };
        assert_eq!(
            id.request().function_code(),
            FunctionCode::EncapsulatedInterfaceTransport
        );
    }
}
