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
//!   coils and discrete inputs as booleans, read in the fewest requests (see [`plan`]). A
//!   register range with a layout (`[[asset.setpoints.field]]`) gives one item per field,
//!   `modbus/<table>/<name>`, its registers decoded as the field's type (`u16`, `i16`, `u32`,
//!   `i32`, `f32`, `f64`, big or little word order; `items::decode`), and one item per register
//!   outside every field. A field may span two reads: values are decoded after all are in.
//!   Adding a layout to an asset replaces its registers' items by the fields', which the next
//!   capture reports as setpoint drift, to approve like any change.
//!
//! Modbus has no program state and no change counter, so there is no program class here.
//!
//! Only read function codes (1, 2, 3, 4, 43) can be sent: `request.rs` is the only place a
//! request is built, and its `Read` has no other variant. `link.rs` is the transport
//! (tokio-modbus's client), `wire.rs` checks the answers against the requests, `plan.rs`
//! plans the reads and `items.rs` turns answers into items.

mod items;
mod link;
pub mod plan;
mod request;
mod wire;

use std::path::Path;

use otdrift_config::{
    AssetConfig, ModbusConfig, ModbusField, ModbusTable, Protocol, ProtocolConfig,
};
use otdrift_core::{Class, Item, Value};
use tokio_modbus::prelude::{ExceptionCode, ReadCode, Response};

use crate::CollectError;
use crate::driver::Driver;
use crate::module::{Module, Observed};
use link::ModbusLink;
use plan::ReadOp;
use request::Read;
use wire::{IdStream, MAX_DEVICE_ID_REQUESTS, exception_text, is_not_implemented};

pub use items::setpoint_label;

/// The Modbus collector for one asset; keeps its TCP connection between captures.
#[derive(Debug)]
pub struct ModbusCollector {
    driver: Driver<ModbusLink>,
    device_id: bool,
    plan: Vec<ReadOp>,
    /// The typed fields laid over register ranges (`[[asset.setpoints.field]]`).
    fields: Vec<(ModbusTable, ModbusField)>,
}

impl ModbusCollector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &ModbusConfig) -> Self {
        let link = ModbusLink {
            host: asset.host.clone(),
            port: asset.port,
            unit_id: cfg.unit_id,
        };
        ModbusCollector {
            driver: Driver::new(asset, link),
            device_id: cfg.device_id,
            plan: plan::plan(&cfg.setpoints, cfg.max_registers, cfg.max_bits),
            fields: cfg
                .setpoints
                .iter()
                .flat_map(|s| s.fields.iter().map(|f| (s.table, f.clone())))
                .collect(),
        }
    }

    /// The requests a capture sends for setpoints, in order.
    pub fn read_plan(&self) -> &[ReadOp] {
        &self.plan
    }

    /// An exception answer: busy (exception 6, "server device busy") is its own kind, so the
    /// daemon backs off; every other exception is a refusal.
    fn exception(&self, read: &Read, e: ExceptionCode) -> CollectError {
        let scope = self.driver.scope();
        if e == ExceptionCode::ServerDeviceBusy {
            scope.busy(read.describe(), exception_text(e))
        } else {
            scope.refused(read.describe(), exception_text(e))
        }
    }

    /// One planned read: the values at `op.start..op.start + op.count`.
    async fn read_table(&mut self, op: ReadOp) -> Result<Vec<Value>, CollectError> {
        let read = Read::Table(op);
        let answer = match self.driver.exchange(&read).await? {
            Ok(answer) => answer,
            Err(exception) => return Err(self.exception(&read, exception)),
        };
        let scope = self.driver.scope();
        wire::table_values(op, answer).map_err(|e| scope.malformed(read.describe(), e))
    }

    /// Reads one identification stream (basic, regular or extended objects), following
    /// "more follows" with a bound on the number of requests and a check that the device
    /// makes progress (see [`IdStream`]). `Ok(Err(..))`: the device's exception.
    async fn device_id_stream(
        &mut self,
        code: ReadCode,
    ) -> Result<Result<(Vec<(u8, Value)>, u8), ExceptionCode>, CollectError> {
        let mut stream = IdStream::new(code);
        for _ in 0..MAX_DEVICE_ID_REQUESTS {
            let read = Read::DeviceId {
                code,
                object: stream.next,
            };
            let answer: Response = match self.driver.exchange(&read).await? {
                Ok(answer) => answer,
                Err(e) => return Ok(Err(e)),
            };
            let done = stream
                .take(answer)
                .map_err(|e| self.driver.scope().malformed(read.describe(), e))?;
            if done {
                let level = stream.conformity.unwrap_or_default();
                return Ok(Ok((stream.objects, level)));
            }
        }
        let read = Read::DeviceId {
            code,
            object: stream.next,
        };
        Err(self.driver.scope().malformed(
            read.describe(),
            format!("identification still incomplete after {MAX_DEVICE_ID_REQUESTS} requests"),
        ))
    }

    /// Reads device identification: regular objects (falling back to basic), then the
    /// extended objects when the device's conformity level says it has them. Exceptions 1, 2
    /// and 3 mean "not implemented" and are recorded as a stable not-available item; other
    /// exceptions (busy, device failure) fail the capture, since they say nothing stable.
    async fn device_identity(&mut self) -> Result<Vec<Item>, CollectError> {
        let mut regular = self.device_id_stream(ReadCode::Regular).await?;
        if let Err(ExceptionCode::IllegalDataValue) = regular {
            regular = self.device_id_stream(ReadCode::Basic).await?;
        }
        let scope = self.driver.scope().clone();
        let (objects, level) = match regular {
            Ok(found) => found,
            Err(e) if is_not_implemented(e) => {
                return Ok(vec![scope.new_item(
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
        let mut found = Vec::with_capacity(objects.len() + 2);
        for (id, value) in objects {
            found.push(items::identity(&scope, &items::object_name(id), value)?);
        }
        found.push(items::identity(
            &scope,
            "conformity_level",
            Value::UInt(u64::from(level)),
        )?);
        // Conformity 0x03 / 0x83: the device has extended objects (0x80-0xFF).
        if matches!(level, 0x03 | 0x83) {
            match self.device_id_stream(ReadCode::Extended).await? {
                Ok((extended, _)) => {
                    for (id, value) in extended {
                        found.push(items::identity(&scope, &items::object_name(id), value)?);
                    }
                }
                Err(e) if is_not_implemented(e) => found.push(items::identity(
                    &scope,
                    "extended",
                    Value::unavailable(format!(
                        "device refused extended identification ({})",
                        exception_text(e)
                    )),
                )?),
                Err(e) => return Err(self.refused(ReadCode::Extended, e)),
            }
        }
        Ok(found)
    }

    fn refused(&self, code: ReadCode, e: ExceptionCode) -> CollectError {
        self.exception(&Read::DeviceId { code, object: 0 }, e)
    }
}

impl Module for ModbusCollector {
    const PROTOCOL: Protocol = Protocol::Modbus;
    type Config = ModbusConfig;
    type Link = ModbusLink;

    fn config(protocol: &ProtocolConfig) -> Option<&ModbusConfig> {
        match protocol {
            ProtocolConfig::Modbus(cfg) => Some(cfg),
            _ => None,
        }
    }

    fn build(asset: &AssetConfig, cfg: &ModbusConfig, _data_dir: &Path) -> Self {
        ModbusCollector::new(asset, cfg)
    }

    fn setpoint_label(cfg: &ModbusConfig, path: &str) -> Option<String> {
        items::setpoint_label(cfg, path)
    }

    const READER: u32 = 1;

    fn capture_spec(cfg: &ModbusConfig) -> Vec<String> {
        let mut lines = vec![format!("device_id {}", cfg.device_id)];
        lines.extend(cfg.setpoints.iter().map(|s| {
            let fields: String = s
                .fields
                .iter()
                .map(|f| format!(" {}@{}:{:?}/{:?}", f.name, f.offset, f.kind, f.word_order))
                .collect();
            format!("{:?} {}+{}{fields}", s.table, s.start, s.count)
        }));
        lines
    }

    /// The planned reads, plus one Read Device Identification when it is asked for.
    fn planned_requests(cfg: &ModbusConfig) -> Option<u64> {
        let reads = plan::plan(&cfg.setpoints, cfg.max_registers, cfg.max_bits).len();
        let reads = u64::try_from(reads).unwrap_or(u64::MAX);
        Some(reads.saturating_add(u64::from(cfg.device_id)))
    }

    fn driver(&self) -> &Driver<ModbusLink> {
        &self.driver
    }

    fn driver_mut(&mut self) -> &mut Driver<ModbusLink> {
        &mut self.driver
    }

    async fn read(&mut self) -> Result<Observed, CollectError> {
        let mut found = Observed::default();
        let scope = self.driver.scope().clone();
        if self.device_id {
            for item in self.device_identity().await? {
                scope.insert(&mut found.snapshot, item)?;
            }
        }
        // Every value read, by table and address: a field may span two reads.
        let mut read = std::collections::BTreeMap::new();
        for op in self.plan.clone() {
            for (addr, value) in (op.start..).zip(self.read_table(op).await?) {
                read.insert((op.table, addr), value);
            }
        }
        for item in items::setpoints(&scope, read, &self.fields)? {
            scope.insert(&mut found.snapshot, item)?;
        }
        Ok(found)
    }

    async fn read_identity(&mut self) -> Result<Vec<Item>, CollectError> {
        if self.device_id {
            self.device_identity().await
        } else {
            Ok(Vec::new())
        }
    }
}
