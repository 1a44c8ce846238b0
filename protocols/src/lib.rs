//! otdrift's collectors: one module per PLC protocol behind one [`Collector`] trait.
//!
//! A collector connects to one asset, says who it is ([`Collector::identify`]) and captures
//! its state ([`Collector::capture`]) as a [`Snapshot`]. It knows nothing of SQLite, HTTP or
//! drift: it reads, bounds and checks what the device says, and nothing else.
//!
//! Invariants every collector keeps:
//! - **read-only**: only read, browse and identify services are ever sent. Each protocol module
//!   funnels its requests through one private function that can only build read requests,
//!   and `clippy.toml` bans the protocol crates' write calls outside the simulators;
//! - **hostile answers**: every length a device reports is checked against what was asked and
//!   what arrived; a malformed answer is a [`CollectError::Malformed`] naming the asset and
//!   the request, never a panic;
//! - **deadlines**: every connect and every request runs under the asset's `timeout_ms`;
//! - **cheap**: reads are batched to the protocol's limits and connections are reused across
//!   captures.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use otdrift_config::{AssetConfig, Protocol, ProtocolConfig};
use otdrift_core::{Item, Snapshot, Value};

mod error;

pub use error::{CollectError, ErrorKind, FailureReason, Scope, WHOLE_CAPTURE};

#[cfg(feature = "ads")]
pub mod ads;
#[cfg(feature = "cip")]
pub mod cip;
#[cfg(feature = "modbus")]
pub mod modbus;
#[cfg(feature = "opcua")]
pub mod opcua;
#[cfg(feature = "s7")]
pub mod s7;

/// What one capture found, and what it cost.
#[derive(Clone, Debug)]
pub struct Capture {
    /// The hashed state: identity, program and setpoint items.
    pub snapshot: Snapshot,
    /// Observed runtime facts that are recorded but never hashed (clocks, process values,
    /// how the capture was made).
    pub runtime: BTreeMap<String, Value>,
    /// The controller's operating state (CPU mode, ADS state, server state), never hashed
    /// either: compared from capture to capture, a change is an `asset.state_changed` event,
    /// never drift. Each collector says which of its facts these are.
    pub operating_state: BTreeMap<String, Value>,
    /// What the capture cost the device.
    pub stats: CaptureStats,
}

impl Capture {
    /// Everything observed but not hashed, runtime facts and operating state together: what
    /// is stored with the capture and shown as its `runtime`.
    pub fn observed(&self) -> BTreeMap<String, Value> {
        let mut all = self.runtime.clone();
        all.extend(
            self.operating_state
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        all
    }
}

/// Moves the runtime facts named in `keys` (a collector's operating state) out of `runtime`.
fn split_operating_state(
    runtime: &mut BTreeMap<String, Value>,
    keys: &[&str],
) -> BTreeMap<String, Value> {
    keys.iter()
        .filter_map(|k| runtime.remove_entry(*k))
        .collect()
}

/// The cost of a capture, for the benchmark, metrics and the `--json` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Requests sent (round trips).
    pub requests: u32,
    /// Connections opened during the capture (0 when a pooled one was reused).
    pub connects: u32,
    /// Wall time.
    pub duration: Duration,
}

/// One asset's collector. Implementations keep their connection between captures.
#[async_trait]
pub trait Collector: Send {
    /// The asset this collector reads.
    fn asset(&self) -> &str;

    /// The protocol it speaks.
    fn protocol(&self) -> Protocol;

    /// Opens the connection, or checks the pooled one is still there.
    async fn connect(&mut self) -> Result<(), CollectError>;

    /// Reads only the identity items: who the controller is.
    async fn identify(&mut self) -> Result<Vec<Item>, CollectError>;

    /// Reads everything the digest covers.
    async fn capture(&mut self) -> Result<Capture, CollectError>;

    /// Closes the connection (a pooled collector may be dropped without this).
    async fn close(&mut self);
}

/// Runs one capture the way every collector does: inside `span` (which carries the asset and
/// protocol), timed into [`CaptureStats::duration`], and logged with its size and cost. The
/// collector's `body` only reads and returns the capture.
async fn timed_capture(
    span: tracing::Span,
    body: impl std::future::Future<Output = Result<Capture, CollectError>>,
) -> Result<Capture, CollectError> {
    use tracing::Instrument;
    async {
        let started = std::time::Instant::now();
        let mut capture = body.await?;
        capture.stats.duration = started.elapsed();
        tracing::debug!(
            items = capture.snapshot.len(),
            requests = capture.stats.requests,
            connects = capture.stats.connects,
            ms = capture.stats.duration.as_millis() as u64,
            "captured"
        );
        Ok(capture)
    }
    .instrument(span)
    .await
}

/// Runs one capture under the asset's whole-capture deadline (`capture_timeout_ms`), the same
/// way for `otdrift capture`, the demo and the daemon. A capture that overruns it fails with
/// [`FailureReason::Bound`] (request [`WHOLE_CAPTURE`]): the device kept answering, but the
/// capture would not end (a million references, an endless continuation point), and the
/// collector's connection is left in an unknown state ([`CollectError::poisons_connection`]).
/// One request that goes unanswered is the collector's own `timeout_ms`, an unreachable device.
pub async fn capture_within(
    collector: &mut dyn Collector,
    asset: &AssetConfig,
) -> Result<Capture, CollectError> {
    let deadline = Duration::from_millis(asset.capture_timeout_ms);
    match tokio::time::timeout(deadline, collector.capture()).await {
        Ok(result) => result,
        Err(_) => Err(Scope::new(&asset.id, &asset.address).bound(
            WHOLE_CAPTURE,
            format!(
                "not finished within capture_timeout_ms ({} ms): an answer that does not end, \
                 or an asset too large for the deadline",
                asset.capture_timeout_ms
            ),
        )),
    }
}

/// Builds the collector for an asset. `data_dir` is the agent's data directory: collectors
/// that keep state on disk (the OPC UA collector's certificates and pinned server
/// certificates, under `opcua-pki/`) keep it there.
pub fn build(asset: &AssetConfig, data_dir: &Path) -> Result<Box<dyn Collector>, CollectError> {
    #[cfg(not(feature = "opcua"))]
    let _ = data_dir;
    #[allow(unreachable_patterns)]
    match &asset.protocol {
        #[cfg(feature = "modbus")]
        ProtocolConfig::Modbus(cfg) => Ok(Box::new(modbus::ModbusCollector::new(asset, cfg))),
        #[cfg(feature = "s7")]
        ProtocolConfig::S7(cfg) => Ok(Box::new(s7::S7Collector::new(asset, cfg))),
        #[cfg(feature = "ads")]
        ProtocolConfig::Ads(cfg) => Ok(Box::new(ads::AdsCollector::new(asset, cfg))),
        #[cfg(feature = "cip")]
        ProtocolConfig::Cip(cfg) => Ok(Box::new(cip::CipCollector::new(asset, cfg))),
        #[cfg(feature = "opcua")]
        ProtocolConfig::Opcua(cfg) => Ok(Box::new(
            opcua::OpcuaCollector::new(asset, cfg).with_pki_dir(data_dir.join("opcua-pki")),
        )),
        other => {
            Err(Scope::new(&asset.id, &asset.address)
                .error("", ErrorKind::Unsupported(other.kind())))
        }
    }
}

/// The name of the config's setpoint entry that covers an item path, for diffs and events.
pub fn setpoint_label(asset: &AssetConfig, path: &str) -> Option<String> {
    match &asset.protocol {
        #[cfg(feature = "modbus")]
        ProtocolConfig::Modbus(cfg) => modbus::setpoint_label(cfg, path),
        #[cfg(feature = "s7")]
        ProtocolConfig::S7(cfg) => s7::setpoint_label(cfg, path),
        #[cfg(feature = "ads")]
        ProtocolConfig::Ads(cfg) => ads::setpoint_label(cfg, path),
        #[cfg(feature = "cip")]
        ProtocolConfig::Cip(cfg) => cip::setpoint_label(cfg, path),
        #[cfg(feature = "opcua")]
        ProtocolConfig::Opcua(cfg) => opcua::setpoint_label(cfg, path),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
