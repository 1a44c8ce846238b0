//! One capture of one asset, from the device to the store: shared by `otdrift capture`, the
//! demo and the daemon so that every path records the same way.

use anyhow::anyhow;
use otdrift_config::AssetConfig;
use otdrift_protocols::{Capture, CollectError, Collector};
use otdrift_store::{CaptureOutcome, CaptureRecord, Phase, Store};

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
    Store(otdrift_store::StoreError),
}

impl From<CaptureFailure> for Failure {
    fn from(f: CaptureFailure) -> Self {
        match f {
            CaptureFailure::Device(e) => Failure::runtime(anyhow!(e)),
            CaptureFailure::Store(e) => {
                Failure::runtime(anyhow!(e).context("cannot record the capture"))
            }
        }
    }
}

/// Captures `asset` with `collector` and records the result (or the failure to reach it).
pub async fn capture_asset(
    store: &mut Store,
    asset: &AssetConfig,
    collector: &mut dyn Collector,
    change: Option<(&str, Phase)>,
) -> Result<CaptureReport, CaptureFailure> {
    let protocol = asset.protocol.kind().as_str();
    let capture = match collector.capture().await {
        Ok(capture) => capture,
        Err(error) => {
            if error.is_unreachable()
                && let Err(store_error) = store.record_unreachable(
                    &asset.id,
                    protocol,
                    &asset.address,
                    &error.to_string(),
                )
            {
                tracing::error!(asset = %asset.id, error = %store_error, "cannot record unreachability");
            }
            return Err(CaptureFailure::Device(error));
        }
    };
    let runtime = serde_json::to_value(&capture.runtime).unwrap_or(serde_json::Value::Null);
    let label = |path: &str| otdrift_protocols::setpoint_label(asset, path);
    let outcome = store
        .record_capture(&CaptureRecord {
            asset: &asset.id,
            protocol,
            address: &asset.address,
            snapshot: &capture.snapshot,
            runtime: &runtime,
            change_id: change.map(|(id, _)| id),
            phase: change.map(|(_, phase)| phase),
            duration_ms: u64::try_from(capture.stats.duration.as_millis()).unwrap_or(u64::MAX),
            requests: u64::from(capture.stats.requests),
            label: &label,
        })
        .map_err(CaptureFailure::Store)?;
    Ok(CaptureReport { capture, outcome })
}
