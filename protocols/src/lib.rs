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
    /// Observed runtime facts that are recorded but never hashed (CPU mode, device state,
    /// clocks): a controller switching to STOP is news, not drift.
    pub runtime: BTreeMap<String, Value>,
    /// What the capture cost the device.
    pub stats: CaptureStats,
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

/// Why a capture failed. Transport failures (the device could not be reached) are kept apart
/// from device refusals (the device answered "no") and malformed answers, because the first
/// is an availability problem and the others are shown to people as what the device said.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// No TCP connection could be made.
    #[error("asset {asset}: cannot connect to {address}: {source}")]
    Connect {
        /// The asset.
        asset: String,
        /// Where it was looked for.
        address: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The device did not answer in time.
    #[error("asset {asset}: no answer from {address} to {request} within {timeout_ms} ms{hint}")]
    Timeout {
        /// The asset.
        asset: String,
        /// Its address.
        address: String,
        /// The request that went unanswered (or "connect").
        request: String,
        /// The deadline.
        timeout_ms: u64,
        /// Advice for the operator, starting with "; " when present.
        hint: String,
    },
    /// The connection broke during a request.
    #[error("asset {asset}: connection to {address} failed during {request}: {source}")]
    Transport {
        /// The asset.
        asset: String,
        /// Its address.
        address: String,
        /// The request in flight.
        request: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The device answered with a protocol-level refusal (exception, error code, status).
    #[error("asset {asset}: {address} refused {request}: {reason}")]
    Refused {
        /// The asset.
        asset: String,
        /// Its address.
        address: String,
        /// The refused request.
        request: String,
        /// The device's reason, decoded.
        reason: String,
    },
    /// The device answered something that does not fit the request.
    #[error("asset {asset}: malformed answer from {address} to {request}: {detail}")]
    Malformed {
        /// The asset.
        asset: String,
        /// Its address.
        address: String,
        /// The request answered.
        request: String,
        /// What was wrong.
        detail: String,
    },
    /// The asset's protocol is not compiled into this build.
    #[error("asset {asset}: the {protocol} collector is not part of this otdrift build")]
    Unsupported {
        /// The asset.
        asset: String,
        /// Its protocol.
        protocol: Protocol,
    },
    /// The gateway's side is not set up to talk to this asset: a secret file that is missing
    /// or readable by others, a certificate store that cannot be written. Fixing it is the
    /// operator's job, not the device's.
    #[error("asset {asset}: {detail}")]
    Config {
        /// The asset.
        asset: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// A collector produced an invalid item (a bug or a device name beyond limits).
    #[error("asset {asset}: {detail}")]
    Item {
        /// The asset.
        asset: String,
        /// What was wrong.
        detail: String,
    },
}

impl CollectError {
    /// Whether the failure means the device could not be reached (as opposed to answering
    /// badly): drives `asset.unreachable` and the daemon's backoff.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            CollectError::Connect { .. }
                | CollectError::Timeout { .. }
                | CollectError::Transport { .. }
        )
    }
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
        other => Err(CollectError::Unsupported {
            asset: asset.id.clone(),
            protocol: other.kind(),
        }),
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
