//! One capture of one asset, from the device to the store: shared by `otdrift capture`, the
//! demo and the daemon so that every path collects, judges and records the same way.
//!
//! Collecting (async, talks to the PLC, under the asset's `capture_timeout_ms`) and recording
//! (blocking, one SQLite transaction) are separate steps so the daemon can run the second on
//! a blocking thread. Between them sits the field-truth check
//! (`docs/decisions/0004-field-truth.md`): a capture whose refusals replace what the baseline
//! holds is a failed collection, never state.

use anyhow::anyhow;
use otdrift_config::AssetConfig;
use otdrift_core::Value;
use otdrift_protocols::{Capture, CollectError, Collector, FailureReason, Scope};
use otdrift_store::{
    Alarm, CaptureOutcome, CaptureRecord, ChangeRules, FailedCollection, Phase, Store, StoreError,
};

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
    /// The device could not be reached, or its answers could not be recorded as state.
    Device(CollectError),
    /// The store could not record it.
    Store(StoreError),
}

impl From<crate::daemon::db::DbError> for CaptureFailure {
    fn from(e: crate::daemon::db::DbError) -> Self {
        match e {
            crate::daemon::db::DbError::Store(e) => CaptureFailure::Store(e),
            crate::daemon::db::DbError::Join(e) => CaptureFailure::Device(
                Scope::new("", "").internal(format!("the store task failed: {e}")),
            ),
        }
    }
}

impl From<CaptureFailure> for Failure {
    fn from(f: CaptureFailure) -> Self {
        match f {
            CaptureFailure::Device(e) if e.reason() == FailureReason::Config => {
                Failure::usage(anyhow!(e))
            }
            CaptureFailure::Device(e) => Failure::runtime(anyhow!(e)),
            CaptureFailure::Store(e) => {
                Failure::runtime(anyhow!(e).context("cannot record the capture"))
            }
        }
    }
}

/// Records a finished capture and everything it implies, in one transaction. Callers check
/// [`refusals`] first; [`record_checked`] does both.
pub fn record(
    store: &mut Store,
    asset: &AssetConfig,
    rules: &ChangeRules,
    capture: &Capture,
    change: Option<(&str, Phase)>,
) -> Result<CaptureOutcome, StoreError> {
    let spec = otdrift_protocols::capture_spec(asset);
    with_record(asset, rules, spec, capture, change, |rec| {
        store.record_capture(rec)
    })
}

/// Hands `f` the store's record of a finished capture (one shape for the store's durable
/// path and the daemon's quiet one). `capture_spec` is `otdrift_protocols::capture_spec` of
/// the asset (the daemon works it out once per asset).
pub fn with_record<T>(
    asset: &AssetConfig,
    rules: &ChangeRules,
    capture_spec: otdrift_core::Digest,
    capture: &Capture,
    change: Option<(&str, Phase)>,
    f: impl FnOnce(&CaptureRecord<'_>) -> T,
) -> T {
    let runtime = serde_json::to_value(&capture.runtime).unwrap_or(serde_json::Value::Null);
    let operating_state =
        serde_json::to_value(&capture.operating_state).unwrap_or(serde_json::Value::Null);
    let label = |path: &str| otdrift_protocols::setpoint_label(asset, path);
    f(&CaptureRecord {
        asset: &asset.id,
        protocol: asset.protocol.kind().as_str(),
        address: &asset.address,
        snapshot: &capture.snapshot,
        runtime: &runtime,
        operating_state: &operating_state,
        change_id: change.map(|(id, _)| id),
        phase: change.map(|(_, phase)| phase),
        duration_ms: u64::try_from(capture.stats.duration.as_millis()).unwrap_or(u64::MAX),
        requests: u64::from(capture.stats.requests),
        label: &label,
        rules,
        capture_spec: Some(capture_spec),
    })
}

/// The field-truth check: `Err` when the capture holds `not available` items that the
/// baseline holds otherwise (a value, another reason, or not at all) and no pending approval
/// names this exact state. The error names the first such item and the device's words.
pub fn refusals(
    store: &Store,
    asset: &AssetConfig,
    capture: &Capture,
) -> Result<(), CaptureFailure> {
    let found = store
        .unapproved_refusals(&asset.id, &capture.snapshot)
        .map_err(CaptureFailure::Store)?;
    let Some(first) = found.first() else {
        return Ok(());
    };
    let words = match &first.observed {
        Value::Unavailable(reason) => reason.clone(),
        other => other.to_string(),
    };
    let held = match &first.baseline {
        Some(Value::Unavailable(reason)) => {
            format!("the baseline has it refused otherwise ({reason})")
        }
        Some(value) => format!("the baseline holds {value}"),
        None => "the baseline does not have it".to_owned(),
    };
    let more = match found.len() {
        1 => String::new(),
        n => format!(" (and {} more item(s))", n - 1),
    };
    Err(CaptureFailure::Device(Scope::new(&asset.id, &asset.address).refused(
        first.path.clone(),
        format!(
            "{words}; {held}{more}. A refusal is not state: approve signature {} to make it the baseline",
            capture.snapshot.digest()
        ),
    )))
}

/// [`refusals`] then [`record`]; a refusal is recorded as a failed collection.
pub fn record_checked(
    store: &mut Store,
    asset: &AssetConfig,
    rules: &ChangeRules,
    capture: &Capture,
    change: Option<(&str, Phase)>,
) -> Result<CaptureOutcome, CaptureFailure> {
    if let Err(failure) = refusals(store, asset, capture) {
        if let CaptureFailure::Device(error) = &failure {
            let observed = capture.snapshot.digest();
            if let Err(e) = record_failure(store, asset, error, Some(&observed)) {
                tracing::error!(asset = %asset.id, error = %e, "cannot record the failure");
            }
        }
        return Err(failure);
    }
    record(store, asset, rules, capture, change).map_err(CaptureFailure::Store)
}

/// What recording a failure started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureStart {
    /// The asset was reachable (or unknown) and now is not: `asset.unreachable` was queued.
    Outage,
    /// The asset answered, but this is the first failed collection of a streak:
    /// `asset.collection_failed` was queued.
    Streak,
    /// The failure continues an outage or a streak, or a maintenance window held its alarm
    /// back: only counted (and audited).
    Continues,
}

/// Records a failed capture: an unreachable device is marked so (one `asset.unreachable` event
/// per outage); a device that answered but whose answers are not state starts or continues a
/// failure streak (one `asset.collection_failed` event per streak).
pub fn record_failure(
    store: &mut Store,
    asset: &AssetConfig,
    error: &CollectError,
    observed: Option<&otdrift_core::Digest>,
) -> Result<FailureStart, StoreError> {
    let protocol = asset.protocol.kind().as_str();
    let maintenance = crate::maintenance::active(asset, store)?;
    let started = if error.is_unreachable() {
        store
            .record_unreachable(
                &asset.id,
                protocol,
                &asset.address,
                &error.to_string(),
                maintenance.as_deref(),
            )
            .map(|alarm| (alarm == Alarm::Announced).then_some(FailureStart::Outage))?
    } else {
        let reason = error.reason();
        store
            .record_failure(&FailedCollection {
                asset: &asset.id,
                protocol,
                address: &asset.address,
                reason: reason.as_str(),
                request: &error.request,
                detail: &error.detail(),
                message: &error.to_string(),
                observed,
                maintenance: maintenance.as_deref(),
            })
            .map(|alarm| (alarm == Alarm::Announced).then_some(FailureStart::Streak))?
    };
    Ok(started.unwrap_or(FailureStart::Continues))
}

/// Captures `asset` with `collector` under its `capture_timeout_ms`, checks it, and records
/// the result (or the failure). A one-shot command captures one asset at a time, in a pool of
/// its own of the fixed default size ([`otdrift_protocols::budget::DEFAULT_BYTES`]).
pub async fn capture_asset(
    store: &mut Store,
    asset: &AssetConfig,
    rules: &ChangeRules,
    collector: &mut dyn Collector,
    change: Option<(&str, Phase)>,
) -> Result<CaptureReport, CaptureFailure> {
    let budget = otdrift_protocols::MemoryBudget::default();
    let capture = match otdrift_protocols::capture_within(collector, asset, &budget).await {
        Ok(capture) => capture,
        Err(error) => {
            // Alone in its pool, a capture is never deferred; were it, nothing is recorded.
            if error.is_deferred() {
                return Err(CaptureFailure::Device(error));
            }
            if let Err(store_error) = record_failure(store, asset, &error, None) {
                tracing::error!(asset = %asset.id, error = %store_error, "cannot record the failure");
            }
            return Err(CaptureFailure::Device(error));
        }
    };
    let outcome = record_checked(store, asset, rules, &capture, change)?;
    Ok(CaptureReport { capture, outcome })
}
