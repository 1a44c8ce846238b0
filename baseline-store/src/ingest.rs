//! Recording a capture: the drift state machine, in one transaction.
//!
//! ```text
//! capture ──► snapshot stored once per digest
//!         ──► capture row (new state) or last_seen bump (same state as last poll)
//!         ──► no baseline yet?        provisional baseline          + audit + baseline.moved
//!             equals the baseline?    open drift → resolved          + audit + drift.resolved
//!             differs, no open drift  drift opened                   + audit + drift.detected
//!             differs, same as open   open drift's last_seen bumped
//!             differs, new state      open drift updated             + audit + drift.detected
//! ```
//!
//! Everything above commits together or not at all, so a killed process never leaves a drift
//! without its event or an event without its drift.

use chrono::{DateTime, Utc};
use otdrift_core::{Diff, Digest, Snapshot, SnapshotDigests, Value, format_timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::approvals::{self, AppliedApproval};
use crate::audit;
use crate::events::{enqueue, event_type};
use crate::model::{Baseline, CaptureRow, ChangeRecord, DriftEvent, DriftStatus, Phase};
use crate::{Store, StoreError};

/// A capture to record.
pub struct CaptureRecord<'a> {
    /// The asset's id.
    pub asset: &'a str,
    /// Its protocol (kept for `status`).
    pub protocol: &'a str,
    /// Its address (kept for `status`).
    pub address: &'a str,
    /// What the collector found.
    pub snapshot: &'a Snapshot,
    /// Observed runtime facts (clocks, process values): stored, never hashed.
    pub runtime: &'a serde_json::Value,
    /// The controller's operating state (CPU mode, device state), as the collector names it:
    /// stored with the runtime facts, never hashed, and compared with the previous capture's
    /// (a change is an `asset.state_changed` event, never drift).
    pub operating_state: &'a serde_json::Value,
    /// The change a technician's capture belongs to.
    pub change_id: Option<&'a str>,
    /// Before or after that change.
    pub phase: Option<Phase>,
    /// How long the capture took.
    pub duration_ms: u64,
    /// How many requests it cost the device.
    pub requests: u64,
    /// Names the config's setpoint that covers an item path, for diffs and events.
    pub label: &'a dyn Fn(&str) -> Option<String>,
}

/// A capture that reached the device but failed, as [`Store::record_failure`] records it.
/// The store knows nothing of protocols: the agent fills this from the collector's error.
#[derive(Clone, Copy, Debug)]
pub struct FailedCollection<'a> {
    /// The asset.
    pub asset: &'a str,
    /// Its protocol (kept for `status`).
    pub protocol: &'a str,
    /// Its address.
    pub address: &'a str,
    /// `refused`, `malformed`, `bound`, `busy`, `config` or `internal`.
    pub reason: &'a str,
    /// The request that failed (empty when none).
    pub request: &'a str,
    /// The device's own words (or the bound, or what is wrong).
    pub detail: &'a str,
    /// The whole message, as shown to people.
    pub message: &'a str,
    /// The signature of what was observed, when the device answered everything but some of
    /// it was a refusal: an approver who wants the refusal to be the new state signs this.
    pub observed: Option<&'a Digest>,
}

/// An item the device would not tell although the baseline holds it otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// The item.
    pub path: String,
    /// What was observed (`not available: <the device's words>`).
    pub observed: Value,
    /// What the baseline holds, if it holds the item at all.
    pub baseline: Option<Value>,
}

/// What recording a capture did to the asset's drift state.
#[derive(Clone, Debug, PartialEq)]
pub enum DriftOutcome {
    /// The capture matches the baseline and nothing was open.
    None,
    /// A new drift event was opened.
    Opened(DriftEvent),
    /// The open drift moved to a different state.
    Updated(DriftEvent),
    /// The same drift was seen again; only its `last_seen` moved.
    Seen(DriftEvent),
    /// The device went back to its baseline; the drift is resolved.
    Resolved(DriftEvent),
    /// A pending approval for the observed state moved the baseline; the drift is approved.
    Approved(DriftEvent),
}

impl DriftOutcome {
    /// The drift event concerned, if any.
    pub fn event(&self) -> Option<&DriftEvent> {
        match self {
            DriftOutcome::None => None,
            DriftOutcome::Opened(e)
            | DriftOutcome::Updated(e)
            | DriftOutcome::Seen(e)
            | DriftOutcome::Resolved(e)
            | DriftOutcome::Approved(e) => Some(e),
        }
    }

    /// Whether the device differs from its baseline after this capture.
    pub fn is_drifted(&self) -> bool {
        matches!(
            self,
            DriftOutcome::Opened(_) | DriftOutcome::Updated(_) | DriftOutcome::Seen(_)
        )
    }
}

/// What recording a capture did.
#[derive(Clone, Debug)]
pub struct CaptureOutcome {
    /// The capture row (new, or the one whose `last_seen` moved).
    pub capture: CaptureRow,
    /// The capture's digests.
    pub digests: SnapshotDigests,
    /// The asset's baseline after this capture.
    pub baseline: Baseline,
    /// True when this capture created the (provisional) baseline.
    pub baseline_created: bool,
    /// The item-level difference from the baseline.
    pub diff: Diff,
    /// The drift state change.
    pub drift: DriftOutcome,
    /// The pending approval this capture applied, if any.
    pub approval: Option<AppliedApproval>,
    /// Changes of the controller's operating state (CPU mode, ADS state, ...) since the
    /// previous capture: reported, never drift.
    pub state_changes: Vec<StateChange>,
}

/// A change of a runtime value that describes the controller's operating state.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StateChange {
    /// The runtime key, e.g. `s7/cpu_mode`.
    pub key: String,
    /// The value at the previous capture.
    pub before: serde_json::Value,
    /// The value now.
    pub after: serde_json::Value,
}

/// What a capture row stores as its runtime: the runtime facts and the operating state in one
/// object (the operating state's keys are the collector's own, e.g. `s7/cpu_mode`).
fn stored_runtime(rec: &CaptureRecord<'_>) -> serde_json::Value {
    let mut all = rec.runtime.as_object().cloned().unwrap_or_default();
    if let Some(state) = rec.operating_state.as_object() {
        all.extend(state.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    serde_json::Value::Object(all)
}

/// Compares the operating state with the asset's previous capture (as stored with it); a
/// change is an audit entry and an `asset.state_changed` event, in the caller's transaction.
fn operating_state_changes(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    rec: &CaptureRecord<'_>,
) -> Result<Vec<StateChange>, StoreError> {
    let previous: Option<String> = conn
        .query_row(
            "SELECT runtime FROM captures WHERE asset = ?1 ORDER BY id DESC LIMIT 1",
            [rec.asset],
            |r| r.get(0),
        )
        .optional()?;
    let Some(previous) = previous else {
        return Ok(Vec::new());
    };
    let before: serde_json::Value = serde_json::from_str(&previous).unwrap_or_default();
    let empty = serde_json::Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = rec.operating_state.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = after.keys().collect();
    keys.sort();
    let changes: Vec<StateChange> = keys
        .into_iter()
        .filter_map(|k| {
            let (b, a) = (before.get(k.as_str()), after.get(k.as_str()));
            // A state the previous capture did not report is not a change of state.
            match (b, a) {
                (Some(b), Some(a)) if b != a => Some(StateChange {
                    key: k.clone(),
                    before: b.clone(),
                    after: a.clone(),
                }),
                _ => None,
            }
        })
        .collect();
    if !changes.is_empty() {
        let body = json!({"asset": rec.asset, "changes": changes});
        audit::append(conn, clock, "asset.state_changed", Some(rec.asset), &body)?;
        enqueue(
            conn,
            clock,
            event_type::ASSET_STATE_CHANGED,
            Some(rec.asset),
            &body,
        )?;
    }
    Ok(changes)
}

impl Store {
    /// Records a capture and everything it implies, in one transaction.
    pub fn record_capture(
        &mut self,
        rec: &CaptureRecord<'_>,
    ) -> Result<CaptureOutcome, StoreError> {
        let now = self.clock.now();
        let now_text = format_timestamp(now);
        let digests = rec.snapshot.digests();
        let digest_text = digests.overall.to_string();
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;

        tx.execute(
            "INSERT OR IGNORE INTO snapshots(digest, encoding_version, body, identity_digest,
                 program_digest, setpoint_digest, item_count, first_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                digest_text,
                otdrift_core::ENCODING_VERSION,
                rec.snapshot.encode(),
                digests.identity.to_string(),
                digests.program.to_string(),
                digests.setpoint.to_string(),
                rec.snapshot.len() as i64,
                now_text
            ],
        )?;
        mark_reachable(
            &tx,
            clock.as_ref(),
            rec.asset,
            rec.protocol,
            rec.address,
            &now_text,
        )?;

        let state_changes = operating_state_changes(&tx, clock.as_ref(), rec)?;
        let capture = upsert_capture(&tx, clock.as_ref(), rec, &digest_text, &now_text)?;

        // A pending approval for exactly this state moves the baseline before drift is judged.
        approvals::expire_pending(&tx, clock.as_ref())?;
        let mut current = current_baseline(&tx, rec.asset)?;
        let pending = approvals::applicable_pending(
            &tx,
            rec.asset,
            &digests.overall,
            current.as_ref().map(|b| &b.digest),
            now,
        )?;
        let approval = match pending {
            Some(p) => {
                let applied = approvals::apply(&tx, clock.as_ref(), &p, true)?;
                current = Some(applied.baseline.clone());
                Some(applied)
            }
            None => None,
        };

        let (baseline, baseline_created, diff, drift) = match current {
            None => {
                let baseline = insert_baseline(
                    &tx,
                    rec.asset,
                    &digests.overall,
                    true,
                    now,
                    "first-capture",
                    None,
                    Some(capture.id),
                )?;
                audit::append(
                    &tx,
                    clock.as_ref(),
                    "baseline.provisional",
                    Some(rec.asset),
                    &json!({
                        "asset": rec.asset,
                        "digest": digest_text,
                        "baseline_id": baseline.id,
                        "capture_id": capture.id,
                        "reason": "first-capture",
                    }),
                )?;
                enqueue(
                    &tx,
                    clock.as_ref(),
                    event_type::BASELINE_MOVED,
                    Some(rec.asset),
                    &json!({
                        "asset": rec.asset,
                        "digest": digest_text,
                        "previous_digest": null,
                        "provisional": true,
                        "reason": "first-capture",
                        "change_id": null,
                        "set_at": now_text,
                    }),
                )?;
                (baseline, true, Diff::default(), DriftOutcome::None)
            }
            Some(baseline) if baseline.digest == digests.overall => {
                let approved = approval.as_ref().and_then(|a| a.drift.clone());
                let drift = match (open_drift(&tx, rec.asset)?, approved) {
                    (Some(open), _) => {
                        DriftOutcome::Resolved(resolve(&tx, clock.as_ref(), open, now)?)
                    }
                    (None, Some(approved)) => DriftOutcome::Approved(approved),
                    (None, None) => DriftOutcome::None,
                };
                (baseline, false, Diff::default(), drift)
            }
            Some(baseline) => {
                let before = load_snapshot(&tx, &baseline.digest)?;
                let diff = Diff::between(&before, rec.snapshot);
                let drift =
                    record_drift(&tx, clock.as_ref(), rec, &baseline, &digests, &diff, now)?;
                (baseline, false, diff, drift)
            }
        };
        tx.commit()?;
        Ok(CaptureOutcome {
            capture,
            digests,
            baseline,
            baseline_created,
            diff,
            drift,
            approval,
            state_changes,
        })
    }

    /// Records a capture that reached the device but failed: refused, malformed, a safety
    /// bound, busy, the gateway's config, an internal error. Nothing of it is state: the
    /// error is kept for `status`, reachability is unchanged, nothing is drift. The first
    /// failure of a streak is an audit entry and an `asset.collection_failed` event; later
    /// failures of the same streak only count. Returns whether this failure started a streak.
    pub fn record_failure(&mut self, failure: &FailedCollection<'_>) -> Result<bool, StoreError> {
        let now_text = format_timestamp(self.clock.now());
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let was_failing: Option<Option<String>> = tx
            .query_row(
                "SELECT failing_since FROM assets WHERE id = ?1",
                [failure.asset],
                |r| r.get(0),
            )
            .optional()?;
        let starts = !matches!(was_failing, Some(Some(_)));
        tx.execute(
            "INSERT INTO assets(id, protocol, address, last_attempt, last_error, failing_since,
                                failure_reason, failure_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6, 1)
             ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol,
                 address = excluded.address, last_attempt = excluded.last_attempt,
                 last_error = excluded.last_error,
                 failing_since = COALESCE(assets.failing_since, excluded.failing_since),
                 failure_reason = COALESCE(assets.failure_reason, excluded.failure_reason),
                 failure_count = assets.failure_count + 1",
            params![
                failure.asset,
                failure.protocol,
                failure.address,
                now_text,
                failure.message,
                failure.reason
            ],
        )?;
        if starts {
            let body = json!({
                "asset": failure.asset,
                "address": failure.address,
                "reason": failure.reason,
                "request": failure.request,
                "detail": failure.detail,
                "message": failure.message,
                "observed_digest": failure.observed.map(|d| d.to_string()),
                "since": now_text,
            });
            audit::append(
                &tx,
                clock.as_ref(),
                "asset.collection_failed",
                Some(failure.asset),
                &body,
            )?;
            enqueue(
                &tx,
                clock.as_ref(),
                event_type::ASSET_COLLECTION_FAILED,
                Some(failure.asset),
                &body,
            )?;
        }
        tx.commit()?;
        Ok(starts)
    }

    /// The items of `snapshot` that the device did not tell (`not available`) although the
    /// asset's baseline holds them otherwise: with another value, another reason, or not at
    /// all. Such a capture is a refusal, not state (the field-truth rule,
    /// `docs/decisions/0004-field-truth.md`), unless a pending approval names exactly this
    /// state, which is how a device's lost capability (a firmware that no longer serves block
    /// lists) becomes the baseline on purpose. Empty when the asset has no baseline yet: the
    /// first capture records what the device can tell.
    pub fn unapproved_refusals(
        &self,
        asset: &str,
        snapshot: &Snapshot,
    ) -> Result<Vec<Refusal>, StoreError> {
        let unavailable: Vec<&otdrift_core::Item> = snapshot
            .items()
            .filter(|i| matches!(i.value(), Value::Unavailable(_)))
            .collect();
        if unavailable.is_empty() {
            return Ok(Vec::new());
        }
        let Some(baseline) = current_baseline(&self.conn, asset)? else {
            return Ok(Vec::new());
        };
        let digest = snapshot.digest();
        if baseline.digest == digest {
            return Ok(Vec::new());
        }
        let approved: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM approvals WHERE asset = ?1 AND to_digest = ?2
                                                     AND status = 'pending')",
            params![asset, digest.to_string()],
            |r| r.get(0),
        )?;
        if approved {
            return Ok(Vec::new());
        }
        let before = load_snapshot(&self.conn, &baseline.digest)?;
        Ok(unavailable
            .into_iter()
            .filter_map(|item| {
                let held = before.get(item.path());
                if held.is_some_and(|b| b.value() == item.value()) {
                    return None;
                }
                Some(Refusal {
                    path: item.path().to_owned(),
                    observed: item.value().clone(),
                    baseline: held.map(|b| b.value().clone()),
                })
            })
            .collect())
    }

    /// Records a failed attempt to reach an asset. Returns true when this is the transition
    /// from reachable (or unknown) to unreachable, which is when an `asset.unreachable` event
    /// is queued: one per outage, not one per failed poll.
    pub fn record_unreachable(
        &mut self,
        asset: &str,
        protocol: &str,
        address: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        let now_text = format_timestamp(self.clock.now());
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let was: Option<Option<i64>> = tx
            .query_row("SELECT reachable FROM assets WHERE id = ?1", [asset], |r| {
                r.get(0)
            })
            .optional()?;
        let transition = !matches!(was, Some(Some(0)));
        tx.execute(
            "INSERT INTO assets(id, protocol, address, reachable, last_attempt, last_error, unreachable_since)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?4)
             ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol, address = excluded.address,
                 reachable = 0, last_attempt = excluded.last_attempt, last_error = excluded.last_error,
                 unreachable_since = COALESCE(assets.unreachable_since, excluded.unreachable_since)",
            params![asset, protocol, address, now_text, error],
        )?;
        if transition {
            enqueue(
                &tx,
                clock.as_ref(),
                event_type::ASSET_UNREACHABLE,
                Some(asset),
                &json!({"asset": asset, "address": address, "error": error, "since": now_text}),
            )?;
        }
        tx.commit()?;
        Ok(transition)
    }
}

fn mark_reachable(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    asset: &str,
    protocol: &str,
    address: &str,
    now: &str,
) -> Result<(), StoreError> {
    type Was = (
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
    );
    let was: Option<Was> = conn
        .query_row(
            "SELECT reachable, unreachable_since, failing_since, failure_reason, failure_count
             FROM assets WHERE id = ?1",
            [asset],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    conn.execute(
        "INSERT INTO assets(id, protocol, address, reachable, last_attempt, last_capture)
         VALUES (?1, ?2, ?3, 1, ?4, ?4)
         ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol, address = excluded.address,
             reachable = 1, last_attempt = excluded.last_attempt,
             last_capture = excluded.last_capture, last_error = NULL, unreachable_since = NULL,
             failing_since = NULL, failure_reason = NULL, failure_count = 0",
        params![asset, protocol, address, now],
    )?;
    if let Some((_, _, Some(failing_since), reason, failures)) = &was {
        let body = json!({
            "asset": asset,
            "address": address,
            "reason": reason,
            "failing_since": failing_since,
            "failures": failures,
            "since": now,
        });
        audit::append(
            conn,
            clock,
            "asset.collection_recovered",
            Some(asset),
            &body,
        )?;
        enqueue(
            conn,
            clock,
            event_type::ASSET_COLLECTION_RECOVERED,
            Some(asset),
            &body,
        )?;
    }
    let was = was.map(|(reachable, since, ..)| (reachable, since));
    if let Some((Some(0), since)) = was {
        // Only a known outage ends with `asset.reachable`; a first contact is not news.
        enqueue(
            conn,
            clock,
            event_type::ASSET_REACHABLE,
            Some(asset),
            &json!({"asset": asset, "address": address, "unreachable_since": since, "since": now}),
        )?;
    }
    Ok(())
}

fn upsert_capture(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    rec: &CaptureRecord<'_>,
    digest_text: &str,
    now_text: &str,
) -> Result<CaptureRow, StoreError> {
    let previous: Option<(i64, String, Option<String>)> = conn
        .query_row(
            "SELECT id, digest, change_id FROM captures WHERE asset = ?1 ORDER BY id DESC LIMIT 1",
            [rec.asset],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let runtime = stored_runtime(rec).to_string();
    let same_state = previous
        .as_ref()
        .is_some_and(|(_, d, change)| d == digest_text && change.is_none());
    let id = match previous {
        Some((id, _, _)) if same_state && rec.change_id.is_none() => {
            conn.execute(
                "UPDATE captures SET last_seen = ?2, seen_count = seen_count + 1, runtime = ?3,
                     duration_ms = ?4, requests = ?5 WHERE id = ?1",
                params![
                    id,
                    now_text,
                    runtime,
                    rec.duration_ms as i64,
                    rec.requests as i64
                ],
            )?;
            id
        }
        _ => {
            conn.execute(
                "INSERT INTO captures(asset, digest, first_seen, last_seen, change_id, phase,
                     runtime, duration_ms, requests)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    rec.asset,
                    digest_text,
                    now_text,
                    rec.change_id,
                    rec.phase.map(|p| p.as_str()),
                    runtime,
                    rec.duration_ms as i64,
                    rec.requests as i64
                ],
            )?;
            let id = conn.last_insert_rowid();
            let state_changed = previous.as_ref().is_none_or(|(_, d, _)| d != digest_text);
            if state_changed || rec.change_id.is_some() {
                audit::append(
                    conn,
                    clock,
                    "capture.recorded",
                    Some(rec.asset),
                    &json!({
                        "asset": rec.asset,
                        "capture_id": id,
                        "digest": digest_text,
                        "previous_digest": previous.as_ref().map(|(_, d, _)| d),
                        "change_id": rec.change_id,
                        "phase": rec.phase.map(|p| p.as_str()),
                    }),
                )?;
            }
            id
        }
    };
    capture_by_id(conn, id)
}

pub(crate) const CAPTURE_COLUMNS: &str =
    "id, asset, digest, first_seen, last_seen, seen_count, change_id, phase, duration_ms, requests";

pub(crate) fn capture_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CaptureRowRaw> {
    Ok(CaptureRowRaw {
        id: r.get(0)?,
        asset: r.get(1)?,
        digest: r.get(2)?,
        first_seen: r.get(3)?,
        last_seen: r.get(4)?,
        seen_count: r.get(5)?,
        change_id: r.get(6)?,
        phase: r.get(7)?,
        duration_ms: r.get(8)?,
        requests: r.get(9)?,
    })
}

pub(crate) struct CaptureRowRaw {
    id: i64,
    asset: String,
    digest: String,
    first_seen: String,
    last_seen: String,
    seen_count: i64,
    change_id: Option<String>,
    phase: Option<String>,
    duration_ms: i64,
    requests: i64,
}

impl CaptureRowRaw {
    pub(crate) fn parse(self) -> Result<CaptureRow, StoreError> {
        Ok(CaptureRow {
            id: self.id,
            asset: self.asset,
            digest: crate::model::digest(&self.digest)?,
            first_seen: crate::model::ts(&self.first_seen)?,
            last_seen: crate::model::ts(&self.last_seen)?,
            seen_count: self.seen_count,
            change_id: self.change_id,
            phase: self
                .phase
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(StoreError::Corrupt)?,
            duration_ms: self.duration_ms,
            requests: self.requests,
        })
    }
}

fn capture_by_id(conn: &Connection, id: i64) -> Result<CaptureRow, StoreError> {
    conn.query_row(
        &format!("SELECT {CAPTURE_COLUMNS} FROM captures WHERE id = ?1"),
        [id],
        capture_row,
    )?
    .parse()
}

pub(crate) const BASELINE_COLUMNS: &str =
    "id, asset, digest, provisional, set_at, reason, change_id";

/// A baseline row as SQLite returns it, in [`BASELINE_COLUMNS`] order.
pub(crate) type RawBaseline = (i64, String, String, i64, String, String, Option<String>);

pub(crate) fn baseline_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawBaseline> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

pub(crate) fn parse_baseline(raw: RawBaseline) -> Result<Baseline, StoreError> {
    let (id, asset, digest, provisional, set_at, reason, change_id) = raw;
    Ok(Baseline {
        id,
        asset,
        digest: crate::model::digest(&digest)?,
        provisional: provisional != 0,
        set_at: crate::model::ts(&set_at)?,
        reason,
        change_id,
    })
}

pub(crate) fn current_baseline(
    conn: &Connection,
    asset: &str,
) -> Result<Option<Baseline>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {BASELINE_COLUMNS} FROM baselines WHERE asset = ?1 ORDER BY id DESC LIMIT 1"
        ),
        [asset],
        baseline_row,
    )
    .optional()?
    .map(parse_baseline)
    .transpose()
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_baseline(
    conn: &Connection,
    asset: &str,
    digest: &Digest,
    provisional: bool,
    at: DateTime<Utc>,
    reason: &str,
    change_id: Option<&str>,
    capture_id: Option<i64>,
) -> Result<Baseline, StoreError> {
    conn.execute(
        "INSERT INTO baselines(asset, digest, provisional, set_at, reason, change_id, capture_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            asset,
            digest.to_string(),
            i64::from(provisional),
            format_timestamp(at),
            reason,
            change_id,
            capture_id
        ],
    )?;
    Ok(Baseline {
        id: conn.last_insert_rowid(),
        asset: asset.to_owned(),
        digest: *digest,
        provisional,
        set_at: at,
        reason: reason.to_owned(),
        change_id: change_id.map(str::to_owned),
    })
}

/// Loads a snapshot and checks that its body still hashes to its digest.
pub(crate) fn load_snapshot(conn: &Connection, digest: &Digest) -> Result<Snapshot, StoreError> {
    let body: Vec<u8> = conn
        .query_row(
            "SELECT body FROM snapshots WHERE digest = ?1",
            [digest.to_string()],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("no stored snapshot with digest {digest}")))?;
    if Digest::of(&body) != *digest {
        return Err(StoreError::Corrupt(format!(
            "the stored body of snapshot {digest} does not hash to its digest"
        )));
    }
    Snapshot::decode(&body)
        .map_err(|e| StoreError::Corrupt(format!("snapshot {digest} does not decode: {e}")))
}

pub(crate) const DRIFT_COLUMNS: &str = "id, asset, status, severity, baseline_digest, observed_digest, first_seen, last_seen, seen_count, closed_at, change_id, changes";

pub(crate) struct DriftRaw {
    id: i64,
    asset: String,
    status: String,
    severity: String,
    baseline: String,
    observed: String,
    first_seen: String,
    last_seen: String,
    seen_count: i64,
    closed_at: Option<String>,
    change_id: Option<String>,
    changes: String,
}

pub(crate) fn drift_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DriftRaw> {
    Ok(DriftRaw {
        id: r.get(0)?,
        asset: r.get(1)?,
        status: r.get(2)?,
        severity: r.get(3)?,
        baseline: r.get(4)?,
        observed: r.get(5)?,
        first_seen: r.get(6)?,
        last_seen: r.get(7)?,
        seen_count: r.get(8)?,
        closed_at: r.get(9)?,
        change_id: r.get(10)?,
        changes: r.get(11)?,
    })
}

impl DriftRaw {
    pub(crate) fn parse(self) -> Result<DriftEvent, StoreError> {
        Ok(DriftEvent {
            id: self.id,
            asset: self.asset,
            status: self.status.parse().map_err(StoreError::Corrupt)?,
            severity: self.severity.parse().map_err(StoreError::Corrupt)?,
            baseline_digest: crate::model::digest(&self.baseline)?,
            observed_digest: crate::model::digest(&self.observed)?,
            first_seen: crate::model::ts(&self.first_seen)?,
            last_seen: crate::model::ts(&self.last_seen)?,
            seen_count: self.seen_count,
            closed_at: crate::model::opt_ts(self.closed_at)?,
            change_id: self.change_id,
            changes: serde_json::from_str(&self.changes)
                .map_err(|e| StoreError::Corrupt(format!("drift {} changes: {e}", self.id)))?,
        })
    }
}

pub(crate) fn open_drift(conn: &Connection, asset: &str) -> Result<Option<DriftEvent>, StoreError> {
    conn.query_row(
        &format!("SELECT {DRIFT_COLUMNS} FROM drift_events WHERE asset = ?1 AND status = 'open'"),
        [asset],
        drift_row,
    )
    .optional()?
    .map(DriftRaw::parse)
    .transpose()
}

fn drift_by_id(conn: &Connection, id: i64) -> Result<DriftEvent, StoreError> {
    conn.query_row(
        &format!("SELECT {DRIFT_COLUMNS} FROM drift_events WHERE id = ?1"),
        [id],
        drift_row,
    )?
    .parse()
}

/// The `data` of a `drift.detected` event.
pub(crate) fn drift_event_data(d: &DriftEvent) -> serde_json::Value {
    json!({
        "drift_id": d.id,
        "asset": d.asset,
        "status": d.status.as_str(),
        "severity": d.severity.as_str(),
        "baseline_digest": d.baseline_digest.to_string(),
        "observed_digest": d.observed_digest.to_string(),
        "first_seen": format_timestamp(d.first_seen),
        "last_seen": format_timestamp(d.last_seen),
        "change_id": d.change_id,
        "changes": d.changes,
    })
}

fn record_drift(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    rec: &CaptureRecord<'_>,
    baseline: &Baseline,
    digests: &SnapshotDigests,
    diff: &Diff,
    now: DateTime<Utc>,
) -> Result<DriftOutcome, StoreError> {
    let now_text = format_timestamp(now);
    let observed = digests.overall.to_string();
    let severity = diff
        .severity()
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "asset {} differs from its baseline {} by digest but not by item",
                rec.asset, baseline.digest
            ))
        })?
        .as_str();
    let changes: Vec<ChangeRecord> = diff
        .changes
        .iter()
        .map(|c| ChangeRecord::from_change(c, rec.label))
        .collect();
    let changes_text = serde_json::to_string(&changes)
        .map_err(|e| StoreError::Corrupt(format!("cannot render changes: {e}")))?;

    let (id, opened) = match open_drift(conn, rec.asset)? {
        Some(open)
            if open.observed_digest == digests.overall
                && open.baseline_digest == baseline.digest =>
        {
            conn.execute(
                "UPDATE drift_events SET last_seen = ?2, seen_count = seen_count + 1 WHERE id = ?1",
                params![open.id, now_text],
            )?;
            return Ok(DriftOutcome::Seen(drift_by_id(conn, open.id)?));
        }
        Some(open) => {
            conn.execute(
                "UPDATE drift_events SET last_seen = ?2, seen_count = seen_count + 1,
                     observed_digest = ?3, baseline_digest = ?4, severity = ?5, changes = ?6
                 WHERE id = ?1",
                params![
                    open.id,
                    now_text,
                    observed,
                    baseline.digest.to_string(),
                    severity,
                    changes_text
                ],
            )?;
            (open.id, false)
        }
        None => {
            conn.execute(
                "INSERT INTO drift_events(asset, status, severity, baseline_digest,
                     observed_digest, first_seen, last_seen, changes)
                 VALUES (?1, 'open', ?2, ?3, ?4, ?5, ?5, ?6)",
                params![
                    rec.asset,
                    severity,
                    baseline.digest.to_string(),
                    observed,
                    now_text,
                    changes_text
                ],
            )?;
            (conn.last_insert_rowid(), true)
        }
    };
    let event = drift_by_id(conn, id)?;
    let kind = if opened {
        "drift.opened"
    } else {
        "drift.updated"
    };
    audit::append(
        conn,
        clock,
        kind,
        Some(rec.asset),
        &json!({
            "drift_id": event.id,
            "asset": rec.asset,
            "severity": severity,
            "baseline_digest": baseline.digest.to_string(),
            "observed_digest": observed,
            "changed_items": changes.len(),
        }),
    )?;
    enqueue(
        conn,
        clock,
        event_type::DRIFT_DETECTED,
        Some(rec.asset),
        &drift_event_data(&event),
    )?;
    Ok(if opened {
        DriftOutcome::Opened(event)
    } else {
        DriftOutcome::Updated(event)
    })
}

fn resolve(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    open: DriftEvent,
    now: DateTime<Utc>,
) -> Result<DriftEvent, StoreError> {
    let now_text = format_timestamp(now);
    conn.execute(
        "UPDATE drift_events SET status = 'resolved', closed_at = ?2, last_seen = ?2 WHERE id = ?1",
        params![open.id, now_text],
    )?;
    let event = drift_by_id(conn, open.id)?;
    audit::append(
        conn,
        clock,
        "drift.resolved",
        Some(&event.asset),
        &json!({
            "drift_id": event.id,
            "asset": event.asset,
            "baseline_digest": event.baseline_digest.to_string(),
            "last_drifted_digest": event.observed_digest.to_string(),
        }),
    )?;
    enqueue(
        conn,
        clock,
        event_type::DRIFT_RESOLVED,
        Some(&event.asset),
        &json!({
            "drift_id": event.id,
            "asset": event.asset,
            "status": DriftStatus::Resolved.as_str(),
            "severity": event.severity.as_str(),
            "baseline_digest": event.baseline_digest.to_string(),
            "observed_digest": event.baseline_digest.to_string(),
            "last_drifted_digest": event.observed_digest.to_string(),
            "first_seen": format_timestamp(event.first_seen),
            "resolved_at": now_text,
        }),
    )?;
    Ok(event)
}
