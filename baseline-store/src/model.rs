//! The records the store hands out. They are the store's own shapes, not wire formats: the
//! agent decides how they look in JSON output, events and the HTTP API.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use otdrift_core::{Change, ChangeKind, Class, Digest, Severity, parse_timestamp};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Which side of a change a technician's capture documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before the change was implemented.
    Before,
    /// After the change was implemented.
    After,
}

impl Phase {
    /// The phase's name as in the CLI and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "before" => Ok(Phase::Before),
            "after" => Ok(Phase::After),
            other => Err(format!("phase must be before or after, not {other:?}")),
        }
    }
}

/// An asset's baseline at one point in its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    /// Row id; higher is newer.
    pub id: i64,
    /// The asset.
    pub asset: String,
    /// The approved (or provisional) signature.
    pub digest: Digest,
    /// True until an approval token approves it.
    pub provisional: bool,
    /// When it became the baseline.
    pub set_at: DateTime<Utc>,
    /// Why: `first-capture`, `approval`, ...
    pub reason: String,
    /// The change that moved it, when an approval did.
    pub change_id: Option<String>,
    /// The envelopes in force: setpoint moves inside them match this baseline
    /// (`envelope.rs`). Empty when none was approved.
    pub envelope: otdrift_core::Envelope,
    /// What its state was read by (the capture spec); `None` for a baseline recorded before
    /// otdrift kept it, until a matching capture teaches it.
    pub capture_spec: Option<Digest>,
}

/// One distinct observation of an asset's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureRow {
    /// Row id.
    pub id: i64,
    /// The asset.
    pub asset: String,
    /// The signature seen.
    pub digest: Digest,
    /// When this state was first seen in this row.
    pub first_seen: DateTime<Utc>,
    /// When it was last seen (polls that find the same state move this).
    pub last_seen: DateTime<Utc>,
    /// How many polls saw it.
    pub seen_count: i64,
    /// The change a technician's capture belongs to.
    pub change_id: Option<String>,
    /// Before or after the change.
    pub phase: Option<Phase>,
    /// How long the capture took.
    pub duration_ms: i64,
    /// How many requests it cost the device.
    pub requests: i64,
    /// The state it was judged as when setpoints sat inside their approved envelopes (their
    /// baseline values in place of the observed ones): the signature approvals name and
    /// that matched the baseline. `None` when it was judged as observed.
    pub judged_digest: Option<Digest>,
}

/// The state of a drift event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftStatus {
    /// The device differs from its baseline and no approval covers it.
    Open,
    /// The device went back to its baseline.
    Resolved,
    /// An approval moved the baseline to the drifted state.
    Approved,
}

impl DriftStatus {
    /// The status's name, as events and `--json` output spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            DriftStatus::Open => "open",
            DriftStatus::Resolved => "resolved",
            DriftStatus::Approved => "approved",
        }
    }
}

impl FromStr for DriftStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(DriftStatus::Open),
            "resolved" => Ok(DriftStatus::Resolved),
            "approved" => Ok(DriftStatus::Approved),
            other => Err(format!("unknown drift status {other:?}")),
        }
    }
}

/// One changed item as recorded with a drift event, values in typed JSON (`docs/reference/events.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The item's path.
    pub path: String,
    /// Its class.
    pub class: Class,
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// The value in the baseline.
    pub before: Option<serde_json::Value>,
    /// The value observed.
    pub after: Option<serde_json::Value>,
    /// The config's setpoint name covering this item, when it is a setpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setpoint: Option<String>,
    /// The approved envelope covering the item (`{"pattern", "min", "max"}` or
    /// `{"pattern", "one_of"}`): in a drift, the envelope this change broke; `otdrift diff`
    /// adds `"inside"` (whether the new value lies inside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<serde_json::Value>,
}

impl ChangeRecord {
    /// Renders a core change, naming its setpoint through `label`.
    pub fn from_change(change: &Change, label: &dyn Fn(&str) -> Option<String>) -> Self {
        let json = |v: &Option<otdrift_core::Value>| {
            v.as_ref()
                .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
        };
        ChangeRecord {
            path: change.path.clone(),
            class: change.class,
            kind: change.kind,
            before: json(&change.before),
            after: json(&change.after),
            setpoint: if change.class == Class::Setpoint {
                label(&change.path)
            } else {
                None
            },
            envelope: None,
        }
    }
}

/// A drift event: an asset seen in a state other than its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftEvent {
    /// Row id, also the drift id in events.
    pub id: i64,
    /// The asset.
    pub asset: String,
    /// Open, resolved or approved.
    pub status: DriftStatus,
    /// The highest severity among the changes.
    pub severity: Severity,
    /// The baseline it drifted from.
    pub baseline_digest: Digest,
    /// The state last observed while open.
    pub observed_digest: Digest,
    /// When the drift was first seen.
    pub first_seen: DateTime<Utc>,
    /// When it was last seen.
    pub last_seen: DateTime<Utc>,
    /// How many polls saw it.
    pub seen_count: i64,
    /// When it was resolved or approved.
    pub closed_at: Option<DateTime<Utc>>,
    /// The change that approved it.
    pub change_id: Option<String>,
    /// The changed items.
    pub changes: Vec<ChangeRecord>,
    /// Why approvals that cover the observed state have not applied (the change policy's
    /// unmet rules); `None` when no approval covers it.
    pub policy_reason: Option<String>,
    /// Whether the device changed, or the capture did (another capture spec than the
    /// baseline's: a new setpoint range or layout, an agent that reads more).
    pub reason: DriftReason,
}

/// Why an asset differs from its baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftReason {
    /// Read the same way as the baseline: the device changed.
    Device,
    /// Read another way than the baseline (`capture_spec` differs): the difference may be
    /// the capture's alone.
    CaptureChanged,
}

impl DriftReason {
    /// The reason as events, JSON and the database spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            DriftReason::Device => "device",
            DriftReason::CaptureChanged => "capture_changed",
        }
    }
}

impl std::str::FromStr for DriftReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "device" => Ok(DriftReason::Device),
            "capture_changed" => Ok(DriftReason::CaptureChanged),
            other => Err(format!("unknown drift reason {other:?}")),
        }
    }
}

/// Which drift events to list.
#[derive(Clone, Debug, Default)]
pub struct DriftFilter {
    /// Only this asset.
    pub asset: Option<String>,
    /// Only open events.
    pub open_only: bool,
}

/// What the store knows about an asset's reachability and last capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetRow {
    /// The asset.
    pub id: String,
    /// Its protocol, as configured when last polled.
    pub protocol: String,
    /// Its address, as configured when last polled.
    pub address: String,
    /// Whether the last attempt reached it; `None` before any attempt.
    pub reachable: Option<bool>,
    /// The last attempt, successful or not.
    pub last_attempt: Option<DateTime<Utc>>,
    /// The last successful capture.
    pub last_capture: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Since when captures fail although the device answers (refused, malformed, bound...);
    /// `None` while captures succeed.
    pub failing_since: Option<DateTime<Utc>>,
    /// Why the current failure streak started (`refused`, `malformed`, `bound`, ...).
    pub failure_reason: Option<String>,
    /// Failed captures in the current streak.
    pub failure_count: u64,
    /// Since when no capture succeeded for three schedule periods; `None` while fresh.
    pub stale_since: Option<DateTime<Utc>>,
}

pub(crate) fn ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_timestamp(s).map_err(|e| StoreError::Corrupt(format!("bad timestamp {s:?}: {e}")))
}

pub(crate) fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.as_deref().map(ts).transpose()
}

pub(crate) fn digest(s: &str) -> Result<Digest, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("bad digest {s:?}: {e}")))
}
