//! Allen-Bradley ControlLogix / CompactLogix over EtherNet/IP (CIP), read-only.
//!
//! # What is captured
//!
//! | path | class | value |
//! |---|---|---|
//! | `cip/identity/vendor_id`, `device_type`, `product_code` | identity | unsigned integers from the Identity object (class 0x01, instance 1) |
//! | `cip/identity/revision` | identity | firmware revision as text, `"33.11"` |
//! | `cip/identity/serial_number` | identity | 8 hex digits, as RSLinx shows it |
//! | `cip/identity/product_name` | identity | e.g. `"1769-L33ER/A LOGIX5333ER"` |
//! | `cip/controller/name` | program | the project name (program-name object 0x64) |
//! | `cip/controller/audit_value`, `cip/controller/changes_to_detect` | history | the controller's change-detection values, `"16#xxxx_xxxx_xxxx_xxxx"` (see below) |
//! | `cip/program/<program>` | program | `{routines: [...]}` |
//! | `cip/task/<task>` | program | null (the task exists) |
//! | `cip/tag/<tag>` and `cip/tag/Program:<program>.<tag>` | program | `{type: "REAL", dims: [10]}` (dims only for arrays) |
//! | `cip/template/<udt>` | program | `{size, handle}`: structure size in bytes, the controller's structure handle (a CRC of the definition) |
//! | `cip/template/<udt>/<member>` | program | `{type, offset}` plus `dims` for arrays and `bit` for packed BOOLs |
//! | `cip/value/<tag as configured>` | setpoint | the value, typed: BOOL → bool, SINT..LINT → int, USINT..ULINT → uint, REAL → f32, LREAL → f64, STRING → text, arrays → lists, UDTs → maps of members |
//!
//! Not hashed (in the capture's runtime): the controller's wall clock (`cip/wall_clock_us`),
//! the Identity status word (`cip/identity_status`) and its major-fault bits
//! (`cip/major_fault`), the connection used (`cip/connection`), whether the tag list was
//! browsed or reused (`cip/tag_list`) and whether Multiple Service Packet worked
//! (`cip/multiple_service_packet`). Tag values that are not configured setpoints are never read.
//!
//! What the controller will not tell fails the capture, except for the stable capabilities
//! that become one `not available: <reason>` item (decision 0004, field truth; the full list
//! is in `docs/protocols/cip.md`): `cip/controller/name` (no Logix program-name object, or an
//! answer that is no Logix name), `cip/controller/audit_value` / `changes_to_detect` (no
//! change-detection tags), `cip/tags` (the tag list cannot be browsed: service not supported,
//! or the session closed on it every time), `cip/value/<tag>` (a setpoint the tag list does
//! not list, or, without a tag list, one the controller answers "path unknown" for). Identity
//! refused, a listed tag or template refused, a busy answer (0x02), a malformed answer or a
//! bound fail the capture. A refused or garbled wall clock is recorded in the runtime as not
//! available (it is never hashed).
//!
//! # Change detection and cheap polling
//!
//! Rockwell documents AuditValue and ChangesToDetect (1756-PM015, "Change detection", v20+)
//! as readable by GSV and by a CIP Generic MSG whose service type ("Audit Value Get") hides
//! the class and attribute numbers; no public capture or client code (pycomm3, pylogix,
//! libplctag, cpppo, Wireshark's CIP dissector) we could find names them, so the collector
//! does not guess them. It reads them the documented way: a controller-scoped tag
//! `AuditValue` (LINT or `DINT[2]`) and optionally `ChangesToDetect`, filled by one GSV rung
//! (`GSV CONTROLLER AuditValue AuditValue`). Where they exist, every capture reads them
//! first, in the same Multiple Service Packet as identity and clock, and re-browses the tag
//! list and templates only when the audit value changed (or the controller's identity did).
//! Where they do not (firmware before v20, or no GSV rung), the digest still covers the tag
//! list, templates and identity revision, and the collector re-browses every
//! [`REBROWSE_EVERY`]th poll. Logic edits are only visible through the audit value: a
//! routine's contents cannot be read over CIP.
//!
//! # Device generations and setup
//!
//! - ControlLogix / CompactLogix v20+: everything above; Large Forward Open (4002 bytes);
//!   the audit value with the GSV rung.
//! - v16-v19: Forward Open with 504 bytes (Large Forward Open answers 0x08); no change
//!   detection, so `cip/controller/audit_value` is not available and the tag list is
//!   re-browsed every [`REBROWSE_EVERY`]th poll.
//! - Older firmware may refuse Get Instance Attribute List: `cip/tags` not available,
//!   setpoints still read and decoded by the type the controller answers.
//! - Logix Emulate has no change detection; Micro800 is not supported (no Symbol/Template
//!   browsing in this form, no backplane route).
//! - Tags with External Access `None` are neither listed nor readable (setpoints become not
//!   available). Nothing else needs access rights: only reads are sent.
//! - Route: `address` is the controller's own port or a 1756-EN2T in its chassis, `slot`
//!   the controller's backplane slot (requests go through port 1, that slot). A controller
//!   behind a second communication module needs a multi-hop route, which the config cannot
//!   express yet (a `route` key; see `docs/protocols/cip.md`).
//!
//! # Requests
//!
//! One capture in steady state is one Multiple Service Packet (identity, project name, clock,
//! audit value) plus the setpoints packed into as few Multiple Service Packets as the
//! connection size allows (Read Tag Fragmented for values larger than one packet). The
//! collector opens a Large Forward Open connection (4002 bytes) and falls back to Forward
//! Open (504 bytes) and then to unconnected messaging (504 bytes) when the controller refuses;
//! the connection and session are kept between captures, and a pooled session the controller
//! dropped is reopened once, transparently. Every exchange runs under the asset's
//! `timeout_ms`; after a timeout the session is dropped. Only read, browse and identify
//! services can be built (the private `request::Request`); see `docs/protocols/cip.md` for the device
//! setup (routes, slot, access rights) and what each generation reveals.
//!
//! # Files
//!
//! `request.rs` builds every request (rseip encodes them; the read-only boundary), `link.rs`
//! is the session (register, Forward Open, one request at a time) and the Multiple Service
//! Packet packing, `wire.rs` parses the answers, `types.rs` decodes Logix types and
//! templates, `program.rs` probes and browses the controller, `plan.rs` resolves and reads
//! the setpoints and `items.rs` turns it all into items.

mod items;
mod link;
mod plan;
mod program;
mod request;
mod types;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use otdrift_config::{AssetConfig, CipConfig, Protocol, ProtocolConfig};
use otdrift_core::{Class, Item, Value};

use crate::CollectError;
use crate::driver::Driver;
use crate::module::{Module, Observed};
use link::CipLink;
use program::Cache;
use request::Request;

pub use items::setpoint_label;

/// Polls between full re-browses of the tag list when the controller has no audit value
/// (proposed config key `rebrowse_every`).
pub const REBROWSE_EVERY: u32 = 12;
// (the config's `rebrowse_every`, `audit_tag` and `changes_tag` default to these values)
/// The controller-scoped tag a GSV rung fills with `CONTROLLER.AuditValue`.
pub const AUDIT_TAG: &str = "AuditValue";
/// The controller-scoped tag a GSV rung fills with `CONTROLLER.ChangesToDetect`.
pub const CHANGES_TAG: &str = "ChangesToDetect";

/// Largest setpoint value read.
pub(crate) const MAX_VALUE_BYTES: usize = 1 << 20;
/// CIP general status 0x02, resource unavailable: the one status that means "busy".
pub(crate) const BUSY: u8 = 0x02;

/// A configured setpoint.
#[derive(Clone, Debug)]
struct Setpoint {
    tag: String,
}

/// The Logix collector for one asset; keeps its session and connection between captures.
#[derive(Debug)]
pub struct CipCollector {
    driver: Driver<CipLink>,
    /// Polls between re-browses when the controller has no audit value.
    rebrowse_every: u32,
    /// The tag holding the audit value.
    audit_tag: String,
    /// The tag holding the ChangesToDetect mask.
    changes_tag: String,
    setpoints: Vec<Setpoint>,
    cache: Option<Cache>,
    /// This capture's runtime facts so far.
    runtime: BTreeMap<String, Value>,
    /// This capture's operating state so far.
    operating_state: BTreeMap<String, Value>,
}

impl CipCollector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &CipConfig) -> Self {
        let mut seen = BTreeSet::new();
        let setpoints = cfg
            .setpoints
            .iter()
            .filter(|s| seen.insert(s.tag.clone()))
            .map(|s| Setpoint { tag: s.tag.clone() })
            .collect();
        let link = CipLink {
            host: asset.host.clone(),
            port: asset.port,
            route: match &cfg.route {
                Some(hops) => request::configured_route(hops),
                None => request::backplane_route(cfg.slot),
            },
            large_open: true,
            connection_serial: 0,
            connection: None,
            multi_service: true,
            max_batch: usize::MAX,
            msp_note: None,
        };
        CipCollector {
            driver: Driver::new(asset, link),
            rebrowse_every: cfg.rebrowse_every.max(1),
            audit_tag: cfg.audit_tag.clone(),
            changes_tag: cfg.changes_tag.clone(),
            setpoints,
            cache: None,
            runtime: BTreeMap::new(),
            operating_state: BTreeMap::new(),
        }
    }

    /// The Identity object's answer as identity items and the controller's fingerprint; its
    /// status word is operating state. A placeholder identity fails.
    #[allow(clippy::type_complexity)]
    fn parse_identity(
        &mut self,
        data: &[u8],
    ) -> Result<(Vec<(String, Value)>, Vec<Value>), CollectError> {
        let describe = Request::Identity.describe();
        let record =
            wire::identity_record(data).map_err(|e| self.driver.scope().malformed(&describe, e))?;
        self.operating_state.insert(
            "cip/identity_status".to_owned(),
            Value::UInt(u64::from(record.status)),
        );
        self.runtime.insert(
            "cip/major_fault".to_owned(),
            Value::Bool(record.status & 0x0C00 != 0),
        );
        if record.vendor == 0 && record.product_code == 0 && record.serial == 0 {
            // ODVA never assigns vendor 0: some gateways answer a fixed placeholder for
            // routed requests instead of refusing. That is a refusal in disguise of something
            // every device has, so the capture fails.
            return Err(self.driver.scope().refused(
                describe,
                "the device answered a placeholder identity (vendor 0, product code 0, serial 0) instead of its own",
            ));
        }
        Ok(items::identity(&record))
    }
}

impl Module for CipCollector {
    const PROTOCOL: Protocol = Protocol::Cip;
    type Config = CipConfig;
    type Link = CipLink;

    fn config(protocol: &ProtocolConfig) -> Option<&CipConfig> {
        match protocol {
            ProtocolConfig::Cip(cfg) => Some(cfg),
            _ => None,
        }
    }

    fn build(asset: &AssetConfig, cfg: &CipConfig, _data_dir: &Path) -> Self {
        CipCollector::new(asset, cfg)
    }

    fn setpoint_label(cfg: &CipConfig, path: &str) -> Option<String> {
        items::setpoint_label(cfg, path)
    }

    const READER: u32 = 1;

    fn capture_spec(cfg: &CipConfig) -> Vec<String> {
        let mut lines = vec![
            format!("audit_tag {}", cfg.audit_tag),
            format!("changes_tag {}", cfg.changes_tag),
        ];
        lines.extend(cfg.setpoints.iter().map(|s| format!("tag {}", s.tag)));
        lines
    }

    fn driver(&self) -> &Driver<CipLink> {
        &self.driver
    }

    fn driver_mut(&mut self) -> &mut Driver<CipLink> {
        &mut self.driver
    }

    async fn read(&mut self) -> Result<Observed, CollectError> {
        self.runtime.clear();
        self.operating_state.clear();
        let with_audit = self.cache.is_some();
        let probe = self.probe(with_audit).await?;
        let cache = self.program(&probe).await?;
        let values = match self.read_setpoints(&cache.browse).await {
            Ok(v) => v,
            Err(e) => {
                self.cache = Some(cache);
                return Err(e);
            }
        };
        let snapshot = items::assemble(self.driver.scope(), &probe, &cache, values);
        self.cache = Some(cache);
        let snapshot = snapshot?;
        let link = &self.driver.link;
        let mut runtime = std::mem::take(&mut self.runtime);
        if let Some(connection) = &link.connection {
            runtime.insert("cip/connection".to_owned(), Value::Text(connection.clone()));
        }
        let msp = match (&link.msp_note, link.multi_service) {
            (Some(note), false) => note.clone(),
            _ => "used".to_owned(),
        };
        runtime.insert("cip/multiple_service_packet".to_owned(), Value::Text(msp));
        Ok(Observed {
            snapshot,
            runtime,
            operating_state: std::mem::take(&mut self.operating_state),
        })
    }

    async fn read_identity(&mut self) -> Result<Vec<Item>, CollectError> {
        let answer = self.driver.call(&Request::Identity).await?;
        if !answer.status.is_ok() {
            return Err(self.driver.refusal(
                &Request::Identity.describe(),
                "the controller refused its identity",
                &answer.status,
            ));
        }
        let pairs = self.parse_identity(&answer.data)?.0;
        let scope = self.driver.scope();
        pairs
            .into_iter()
            .map(|(path, value)| scope.new_item(path, Class::Identity, value))
            .collect()
    }
}
