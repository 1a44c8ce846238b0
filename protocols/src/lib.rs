//! otdrift's collectors: one module per PLC protocol behind one [`Collector`] trait.
//!
//! A collector connects to one asset, says who it is ([`Collector::identify`]) and captures
//! its state ([`Collector::capture`]) as a [`Snapshot`]. It knows nothing of SQLite, HTTP or
//! drift: it reads, bounds and checks what the device says, and nothing else.
//!
//! # The framework
//!
//! Every protocol module stands on the same two pieces (see `driver.rs` and `module.rs`):
//! a `Link` (connect, exchange one request, classify a failure), driven by one `Driver` that
//! owns the pooled connection, the per-request deadline, the one reconnect-once rule, request
//! counting and error building; and a `Module` (its config, its collector, its setpoint
//! labels, how to read a capture), from which the framework makes the [`Collector`] and the
//! registry behind [`build`] and [`setpoint_label`].
//!
//! Every module has the same files for the same jobs: `mod.rs` (the collector), `request.rs`
//! (the only place its requests are built: the read-only boundary, with a unit test that it
//! builds only reads), `link.rs` (transport or session), `wire.rs` (answers, bounds-checked),
//! `plan.rs` (read planning) and `items.rs` (answers to items), plus protocol-specific ones.
//!
//! Invariants every collector keeps:
//! - **read-only**: only read, browse and identify services are ever sent. Each protocol
//!   module builds its requests in its `request.rs` only, whose type can only be a read, and
//!   `clippy.toml` bans the protocol crates' write calls outside the simulators;
//! - **hostile answers**: every length a device reports is checked against what was asked and
//!   what arrived; a malformed answer is an [`ErrorKind::Malformed`] naming the asset and
//!   the request, never a panic;
//! - **deadlines**: every connect and every request runs under the asset's `timeout_ms`;
//! - **field truth**: a refusal, a contradiction, a malformed answer or a bound fails the
//!   capture (`docs/decisions/0004-field-truth.md`); only stable capability refusals become
//!   `not available` items;
//! - **cheap**: reads are batched to the protocol's limits and connections are reused across
//!   captures.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use otdrift_config::{AssetConfig, Protocol};
use otdrift_core::{Item, Snapshot, Value};

pub mod budget;
mod driver;
mod error;
mod module;

pub use budget::{Lease, MemoryBudget};
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
    /// Its share of the memory budget, held until the last clone of the capture is dropped
    /// (after the agent has hashed, judged and recorded it).
    pub lease: Lease,
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

    /// Reads only the identity items: who the controller is (a cheap check that the asset
    /// is the device it should be; the tests check each protocol's identity with it).
    async fn identify(&mut self) -> Result<Vec<Item>, CollectError>;

    /// Reads everything the digest covers, charging what it holds to `lease` (see
    /// [`budget`]): a capture too big for the whole pool fails with [`FailureReason::Bound`],
    /// one that must give way to another with [`ErrorKind::Deferred`].
    async fn capture_in(&mut self, lease: Lease) -> Result<Capture, CollectError>;

    /// Reads everything the digest covers, outside any memory budget (tests, benchmarks).
    async fn capture(&mut self) -> Result<Capture, CollectError> {
        self.capture_in(Lease::unbounded()).await
    }

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

/// Runs one capture under the asset's whole-capture deadline (`capture_timeout_ms`) and inside
/// the memory `budget`, the same way for `otdrift capture`, the demo and the daemon. A capture
/// waiting for room in the budget waits until that deadline at the latest, then is deferred.
/// A capture that overruns the deadline otherwise fails with
/// [`FailureReason::Bound`] (request [`WHOLE_CAPTURE`]): the device kept answering, but the
/// capture would not end (a million references, an endless continuation point), and the
/// collector's connection is left in an unknown state ([`CollectError::poisons_connection`]).
/// One request that goes unanswered is the collector's own `timeout_ms`, an unreachable device.
pub async fn capture_within(
    collector: &mut dyn Collector,
    asset: &AssetConfig,
    budget: &MemoryBudget,
) -> Result<Capture, CollectError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(asset.capture_timeout_ms);
    let lease = budget.lease(Some(deadline));
    // The lease's wait ends at the same instant; the capture is polled first, so a capture
    // still waiting for memory then is deferred, not a bound.
    match tokio::time::timeout_at(deadline, collector.capture_in(lease)).await {
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

/// The compiled-in protocols.
const PROTOCOLS: &[module::Entry] = &[
    #[cfg(feature = "modbus")]
    module::Entry::of::<modbus::ModbusCollector>(),
    #[cfg(feature = "s7")]
    module::Entry::of::<s7::S7Collector>(),
    #[cfg(feature = "ads")]
    module::Entry::of::<ads::AdsCollector>(),
    #[cfg(feature = "cip")]
    module::Entry::of::<cip::CipCollector>(),
    #[cfg(feature = "opcua")]
    module::Entry::of::<opcua::OpcuaCollector>(),
];

/// Builds the collector for an asset. `data_dir` is the agent's data directory: collectors
/// that keep state on disk (the OPC UA collector's certificates and pinned server
/// certificates, under `opcua-pki/`) keep it there.
pub fn build(asset: &AssetConfig, data_dir: &Path) -> Result<Box<dyn Collector>, CollectError> {
    PROTOCOLS
        .iter()
        .find_map(|p| p.build(asset, data_dir))
        .ok_or_else(|| {
            Scope::new(&asset.id, &asset.address)
                .error("", ErrorKind::Unsupported(asset.protocol.kind()))
        })
}

/// The fewest requests a capture of `asset` sends, when its config alone says so (see
/// `Module::planned_requests`); `None` when it depends on the device.
pub fn planned_requests(asset: &AssetConfig) -> Option<u64> {
    PROTOCOLS
        .iter()
        .find_map(|p| p.planned_requests(asset))
        .flatten()
}

/// The capture spec of `asset`: the digest of what its collector is asked to read (its
/// protocol's reader version, its setpoint areas and layouts, the options that add or remove
/// items). A capture under another spec than the baseline's is drift with reason
/// `capture_changed`: the difference may be the capture's, not the device's.
pub fn capture_spec(asset: &AssetConfig) -> otdrift_core::Digest {
    let text = PROTOCOLS
        .iter()
        .find_map(|p| p.capture_spec(asset))
        .unwrap_or_else(|| format!("{} (no collector in this build)", asset.protocol.kind()));
    otdrift_core::Digest::of(text.as_bytes())
}

/// The name of the config's setpoint entry that covers an item path, for diffs and events.
pub fn setpoint_label(asset: &AssetConfig, path: &str) -> Option<String> {
    PROTOCOLS.iter().find_map(|p| p.setpoint_label(asset, path))
}
