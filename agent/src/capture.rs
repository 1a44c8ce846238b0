//! One capture of one asset, from the device to the store: shared by `otdrift capture`, the
//! demo and the daemon so that every path records the same way.
//!
//! Collecting (async, talks to the PLC) and recording (blocking, one SQLite transaction) are
//! separate steps so the daemon can run the second on a blocking thread.

use anyhow::anyhow;
use otdrift_config::AssetConfig;
use otdrift_protocols::{Capture, CollectError, Collector};
use otdrift_store::{CaptureOutcome, CaptureRecord, Phase, Store, StoreError};

use crate::exit::Failure;

/// A finished capture: what the device said and what the store made of it.
pub struct CaptureReport {
    /// The collector's result.
    pub capture: Capture,
    /// The store's verdict: baseline, diff, drift.
    pub outcome: CaptureOutcome,
}

/// Why a capture failed.
#[derive(Debug)]
pub enum CaptureFailure {
    /// The device could not be reached or answered badly.
    Device(CollectError),
    /// The store could not record it.
    Store(StoreError),
}

impl From<CaptureFailure> for Failure {
    fn from(f: CaptureFailure) -> Self {
        match f {
            CaptureFailure::Device(e @ CollectError::Config { .. }) => Failure::usage(anyhow!(e)),
            CaptureFailure::Device(e) => Failure::runtime(anyhow!(e)),
            CaptureFailure::Store(e) => {
                Failure::runtime(anyhow!(e).context("cannot record the capture"))
            }
        }
    }
}

/// Records a finished capture and everything it implies, in one transaction.
pub fn record(
    store: &mut Store,
    asset: &AssetConfig,
    capture: &Capture,
    change: Option<(&str, Phase)>,
) -> Result<CaptureOutcome, StoreError> {
    let runtime = serde_json::to_value(&capture.runtime).unwrap_or(serde_json::Value::Null);
    let label = |path: &str| otdrift_protocols::setpoint_label(asset, path);
    store.record_capture(&CaptureRecord {
        asset: &asset.id,
        protocol: asset.protocol.kind().as_str(),
        address: &asset.address,
        snapshot: &capture.snapshot,
        runtime: &runtime,
        change_id: change.map(|(id, _)| id),
        phase: change.map(|(_, phase)| phase),
        duration_ms: u64::try_from(capture.stats.duration.as_millis()).unwrap_or(u64::MAX),
        requests: u64::from(capture.stats.requests),
        label: &label,
    })
}

/// Records a failed capture: an unreachable device is marked so (one `asset.unreachable` event
/// per outage); a device that answered badly keeps its reachability and gets the error noted.
/// Returns whether this failure started an outage.
pub fn record_failure(
    store: &mut Store,
    asset: &AssetConfig,
    error: &CollectError,
) -> Result<bool, StoreError> {
    let protocol = asset.protocol.kind().as_str();
    if error.is_unreachable() {
        store.record_unreachable(&asset.id, protocol, &asset.address, &error.to_string())
    } else {
        store
            .record_failure(&asset.id, protocol, &asset.address, &error.to_string())
            .map(|()| false)
    }
}

/// Captures `asset` with `collector` and records the result (or the failure).
pub async fn capture_asset(
    store: &mut Store,
    asset: &AssetConfig,
    collector: &mut dyn Collector,
    change: Option<(&str, Phase)>,
) -> Result<CaptureReport, CaptureFailure> {
    let capture = match collector.capture().await {
        Ok(capture) => capture,
        Err(error) => {
            if let Err(store_error) = record_failure(store, asset, &error) {
                tracing::error!(asset = %asset.id, error = %store_error, "cannot record the failure");
            }
            return Err(CaptureFailure::Device(error));
        }
    };
    let outcome = record(store, asset, &capture, change).map_err(CaptureFailure::Store)?;
    Ok(CaptureReport { capture, outcome })
}
