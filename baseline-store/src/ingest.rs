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
//! without its event or an event without its drift. A store that defers quiet polls (the
//! daemon) keeps a poll that would only bump `last_seen` in memory until its seen flush
//! (`seen.rs`); every other poll takes this path, with the asset's kept polls written first.

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
    /// The asset's change policy and staging relations.
    pub rules: &'a crate::ChangeRules,
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
    /// Only muted (flapping) items changed: the open drift took the new state without an
    /// event, and stays open until the mute lifts (crate::flapping).
    Muted(DriftEvent),
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
            | DriftOutcome::Approved(e)
            | DriftOutcome::Muted(e) => Some(e),
        }
    }

    /// Whether the device differs from its baseline after this capture.
    pub fn is_drifted(&self) -> bool {
        matches!(
            self,
            DriftOutcome::Opened(_)
                | DriftOutcome::Updated(_)
                | DriftOutcome::Seen(_)
                | DriftOutcome::Muted(_)
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
    /// Approvals cover the observed state, but the change policy is not met yet: the change,
    /// the policy and the unmet rules (also the open drift's `policy_reason`).
    pub policy_unmet: Option<(String, String, Vec<String>)>,
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
pub(crate) fn stored_runtime(rec: &CaptureRecord<'_>) -> serde_json::Value {
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
    /// Records a capture and everything it implies, in one transaction. On a store that
    /// defers quiet polls ([`Store::defer_seen`]), a poll that changes nothing but the
    /// seen-time is kept in memory until [`Store::flush_seen`] (`seen.rs`).
    pub fn record_capture(
        &mut self,
        rec: &CaptureRecord<'_>,
    ) -> Result<CaptureOutcome, StoreError> {
        if let Some(quiet) = self.record_quiet(rec)? {
            return Ok(quiet);
        }
        // The asset's quiet polls so far are written with this one, before it.
        let carried = crate::seen::lock(&self.seen).take(rec.asset);
        let recorded = self.record_durable(rec, carried.as_ref());
        match (&recorded, carried) {
            (Ok(outcome), _) if outcome.verified => {
                crate::seen::mark_verified(&self.seen, rec.asset, self.clock.now());
            }
            (Err(_), Some(p)) => crate::seen::lock(&self.seen).restore(rec.asset, p),
            _ => {}
        }
        recorded.map(|o| o.outcome)
    }

    fn record_durable(
        &mut self,
        rec: &CaptureRecord<'_>,
        carried: Option<&crate::seen::PendingSeen>,
    ) -> Result<Durable, StoreError> {
        let now = self.clock.now();
        let now_text = format_timestamp(now);
        let digests = rec.snapshot.digests();
        let digest_text = digests.overall.to_string();
        let clock = self.clock.clone();
        let max_event_bytes = self.max_event_bytes;
        let seen = self.seen.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(p) = carried {
            crate::seen::apply(&tx, rec.asset, p)?;
        }

        tx.execute(
            "INSERT OR IGNORE INTO snapshots(digest, encoding_version, body, identity_digest,
                 program_digest, setpoint_digest, item_count, first_seen, content_digest,
                 history_digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                digest_text,
                otdrift_core::ENCODING_VERSION,
                rec.snapshot.encode(),
                digests.identity.to_string(),
                digests.program.to_string(),
                digests.setpoint.to_string(),
                rec.snapshot.len() as i64,
                now_text,
                digests.content.to_string(),
                digests.history.to_string()
            ],
        )?;
        crate::alarms::mark_reachable(
            &tx,
            clock.as_ref(),
            rec.asset,
            rec.protocol,
            rec.address,
            &now_text,
        )?;

        let state_changes = operating_state_changes(&tx, clock.as_ref(), rec)?;
        let previous = previous_capture(&tx, rec.asset)?;
        // Which items moved since the previous poll: flapping items are muted on their own.
        let changed = match &previous {
            Some(p) if p.digest != digest_text => {
                let before = load_snapshot(&tx, &crate::model::digest(&p.digest)?)?;
                crate::flapping::changed_paths(&Diff::between(&before, rec.snapshot))
            }
            _ => Vec::new(),
        };
        let flaps = crate::flapping::observe(&tx, rec.asset, &changed, &now_text)?;
        // A poll whose only changes are muted items folds into the last capture row and the
        // open drift, without new rows, audit entries or events (crate::flapping).
        let folded = flaps.only_muted(&changed)
            && rec.change_id.is_none()
            && previous.as_ref().is_some_and(|p| p.change_id.is_none());
        let capture = upsert_capture(
            &tx,
            clock.as_ref(),
            rec,
            previous.as_ref(),
            folded,
            &digest_text,
            &now_text,
        )?;

        // Approvals that cover this state move the baseline before drift is judged, when the
        // asset's change policy is met (crate::changes).
        approvals::expire_pending(&tx, clock.as_ref())?;
        crate::reviews::check_overdue(&tx, clock.as_ref())?;
        let observed = crate::changes::Observed {
            asset: rec.asset.to_owned(),
            digest: digests.overall,
            content: digests.content,
            identity: digests.identity,
            baseline_identity: crate::changes::baseline_identity(&tx, rec.asset)?,
            reached_at: capture.first_seen,
            last_seen: now,
            capture_id: capture.id,
        };
        let mut policy_unmet = None;
        let mut approval = match &rec.rules.production {
            // A staging controller: linked to the changes it validates, and moved by a
            // `content` approval of its production asset.
            Some(production) => {
                crate::changes::on_staging_capture(&tx, clock.as_ref(), production, &observed)?
            }
            None => None,
        };
        if approval.is_none() {
            match crate::changes::try_apply(&tx, clock.as_ref(), rec.rules, &observed, true)? {
                crate::changes::Verdict::Applied(applied) => approval = Some(*applied),
                crate::changes::Verdict::Unmet {
                    change_id,
                    policy,
                    unmet,
                } => policy_unmet = Some((change_id, policy, unmet)),
                crate::changes::Verdict::None => {}
            }
        }
        let current = match &approval {
            Some(applied) => Some(applied.baseline.clone()),
            None => current_baseline(&tx, rec.asset)?,
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
                    // A muted item went back to its baseline value: the item still flaps,
                    // so its drift stays open until the mute lifts.
                    (Some(open), None) if folded => {
                        DriftOutcome::Muted(fold_drift(&tx, &open, &digests, None, now)?)
                    }
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
                let open = match approval {
                    None if folded => open_drift(&tx, rec.asset)?,
                    _ => None,
                };
                let drift = if let Some(open) = open {
                    DriftOutcome::Muted(fold_drift(
                        &tx,
                        &open,
                        &digests,
                        Some((&diff, rec.label)),
                        now,
                    )?)
                } else {
                    record_drift(
                        &tx,
                        clock.as_ref(),
                        max_event_bytes,
                        rec,
                        &Judged {
                            baseline: &baseline,
                            digests: &digests,
                            diff: &diff,
                            policy_unmet: policy_unmet.as_ref(),
                        },
                        now,
                    )?
                };
                (baseline, false, diff, drift)
            }
        };
        let open = drift.event().filter(|_| drift.is_drifted());
        crate::flapping::announce(&tx, clock.as_ref(), rec.asset, &flaps, open.map(|d| d.id))?;
        if let (false, DriftOutcome::Seen(open)) = (flaps.ended.is_empty(), &drift) {
            // The mute lifted: the open drift may have moved while it was silent.
            enqueue(
                &tx,
                clock.as_ref(),
                event_type::DRIFT_DETECTED,
                Some(rec.asset),
                &drift_event_data(
                    open,
                    (&content_digest_of(&tx, &baseline.digest)?, &digests.content),
                    max_event_bytes,
                ),
            )?;
        }
        if let (true, Some(p)) = (folded, &previous) {
            // The state the folded row held: gone unless a baseline, a drift or a change
            // still names it.
            crate::retention::drop_snapshot_if_unused(&tx, &p.digest)?;
        }
        // Once a UTC day, an asset that matches its baseline says so in the chain.
        let verified = matches!(drift, DriftOutcome::None)
            && !baseline_created
            && baseline.digest == digests.overall
            && crate::seen::needs_verified(&tx, &seen, rec.asset, now)?;
        if verified {
            crate::seen::append_verified(&tx, clock.as_ref(), &capture, baseline.id)?;
        }
        tx.commit()?;
        Ok(Durable {
            outcome: CaptureOutcome {
                capture,
                digests,
                baseline,
                baseline_created,
                diff,
                drift,
                approval,
                policy_unmet,
                state_changes,
            },
            verified,
        })
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
}

/// What the durable path recorded, and whether it wrote today's `asset.verified` entry.
struct Durable {
    outcome: CaptureOutcome,
    verified: bool,
}

/// The asset's latest capture row, as far as recording the next one needs it.
struct PreviousCapture {
    id: i64,
    digest: String,
    change_id: Option<String>,
}

fn previous_capture(conn: &Connection, asset: &str) -> Result<Option<PreviousCapture>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, digest, change_id FROM captures WHERE asset = ?1 ORDER BY id DESC LIMIT 1",
            [asset],
            |r| {
                Ok(PreviousCapture {
                    id: r.get(0)?,
                    digest: r.get(1)?,
                    change_id: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Records the capture: a new row for a new state (or a technician's capture), a `last_seen`
/// bump for the same state, and for a `folded` poll (only muted items changed) the previous
/// row takes the new state, and the state it held goes if nothing else refers to it.
fn upsert_capture(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    rec: &CaptureRecord<'_>,
    previous: Option<&PreviousCapture>,
    folded: bool,
    digest_text: &str,
    now_text: &str,
) -> Result<CaptureRow, StoreError> {
    let runtime = stored_runtime(rec).to_string();
    let same_state = previous.is_some_and(|p| p.digest == digest_text && p.change_id.is_none());
    let id = match previous {
        Some(p) if folded => {
            conn.execute(
                "UPDATE captures SET digest = ?2, last_seen = ?3, seen_count = seen_count + 1,
                     runtime = ?4, duration_ms = ?5, requests = ?6 WHERE id = ?1",
                params![
                    p.id,
                    digest_text,
                    now_text,
                    runtime,
                    rec.duration_ms as i64,
                    rec.requests as i64
                ],
            )?;
            p.id
        }
        Some(p) if same_state && rec.change_id.is_none() => {
            let id = p.id;
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
            let state_changed = previous.is_none_or(|p| p.digest != digest_text);
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
                        "previous_digest": previous.map(|p| &p.digest),
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

pub(crate) fn capture_by_id(conn: &Connection, id: i64) -> Result<CaptureRow, StoreError> {
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
    r.try_into()
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

/// Marks the asset's open drift approved by `change_id` (a baseline moved to `observed`), with
/// an audit entry; returns it.
pub(crate) fn approve_open_drift(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    asset: &str,
    change_id: &str,
    approval_id: i64,
    observed: &Digest,
) -> Result<Option<DriftEvent>, StoreError> {
    let Some(open) = open_drift(conn, asset)? else {
        return Ok(None);
    };
    conn.execute(
        "UPDATE drift_events SET status = 'approved', change_id = ?2, closed_at = ?3,
             observed_digest = ?4, policy_reason = NULL
         WHERE id = ?1",
        params![
            open.id,
            change_id,
            format_timestamp(clock.now()),
            observed.to_string()
        ],
    )?;
    audit::append(
        conn,
        clock,
        "drift.approved",
        Some(asset),
        &json!({
            "drift_id": open.id,
            "asset": asset,
            "change_id": change_id,
            "approval_id": approval_id,
            "observed_digest": observed.to_string(),
        }),
    )?;
    drift_by_id(conn, open.id).map(Some)
}

pub(crate) const DRIFT_COLUMNS: &str = "id, asset, status, severity, baseline_digest, observed_digest, first_seen, last_seen, seen_count, closed_at, change_id, changes, policy_reason";

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
    policy_reason: Option<String>,
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
        policy_reason: r.get(12)?,
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
            policy_reason: self.policy_reason,
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

/// Room kept for the CloudEvents envelope around an event's `data` (`id`, `source`, `type`,
/// `time`, `subject`, `otdriftseq`): agent and asset ids are at most 64 characters, so the
/// envelope stays well under this, and `data` within `max_event_bytes - ENVELOPE_ALLOWANCE`
/// keeps the whole event within `max_event_bytes`.
pub const ENVELOPE_ALLOWANCE: usize = 1024;

/// The pull link of a drift's changes from the `after`-th on, relative to the agent's API.
/// It names the observed state, so a link from an older `drift.detected` event still pages
/// that event's changes after the drift moved on to another state.
pub fn drift_changes_link(drift_id: i64, observed: &otdrift_core::Digest, after: usize) -> String {
    format!("/v1/drift/{drift_id}/changes?observed={observed}&after={after}")
}

fn json_len(v: &serde_json::Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// The `data` of a `drift.detected` event, at most `max_event_bytes - ENVELOPE_ALLOWANCE`
/// bytes of JSON. It always carries `changes_total`, `changes_by_class` and `truncated`; when
/// every change does not fit (an ADS table may have a million symbols), `changes` holds the
/// first ones that do, in the drift's order, `truncated` is true, and `changes_link` is
/// `GET /v1/drift/{id}/changes?observed=...&after=N` for the rest. Sized on the serialized
/// bytes, not on a count, because one change can be a 64 KiB string.
pub(crate) fn drift_event_data(
    d: &DriftEvent,
    change_signatures: (&Digest, &Digest),
    max_event_bytes: usize,
) -> serde_json::Value {
    let mut by_class = serde_json::Map::new();
    for class in otdrift_core::Class::ALL {
        let n = d.changes.iter().filter(|c| c.class == class).count();
        by_class.insert(class.as_str().to_owned(), json!(n));
    }
    let total = d.changes.len();
    let mut data = json!({
        "drift_id": d.id,
        "asset": d.asset,
        "status": d.status.as_str(),
        "severity": d.severity.as_str(),
        "baseline_digest": d.baseline_digest.to_string(),
        "observed_digest": d.observed_digest.to_string(),
        "baseline_change_signature": change_signatures.0.to_string(),
        "observed_change_signature": change_signatures.1.to_string(),
        "first_seen": format_timestamp(d.first_seen),
        "last_seen": format_timestamp(d.last_seen),
        "change_id": d.change_id,
        "policy_reason": d.policy_reason,
        "changes": d.changes,
        "changes_total": total,
        "changes_by_class": by_class,
        "truncated": false,
    });
    let budget = max_event_bytes.saturating_sub(ENVELOPE_ALLOWANCE);
    if json_len(&data) <= budget {
        return data;
    }
    data["truncated"] = json!(true);
    data["changes"] = json!([]);
    // The longest the link can be, so that the final one (with a smaller `after`) fits too.
    data["changes_link"] = json!(drift_changes_link(d.id, &d.observed_digest, total));
    let mut used = json_len(&data);
    let mut kept = 0;
    for change in &d.changes {
        let size = serde_json::to_vec(change)
            .map_or(usize::MAX, |b| b.len())
            .saturating_add(usize::from(kept > 0));
        if used.saturating_add(size) > budget {
            break;
        }
        used += size;
        kept += 1;
    }
    data["changes"] = serde_json::to_value(&d.changes[..kept]).unwrap_or_else(|_| json!([]));
    data["changes_link"] = json!(drift_changes_link(d.id, &d.observed_digest, kept));
    data
}

/// The change signature of a stored snapshot.
pub(crate) fn content_digest_of(conn: &Connection, digest: &Digest) -> Result<Digest, StoreError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT content_digest FROM snapshots WHERE digest = ?1",
            [digest.to_string()],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    match stored {
        Some(c) => crate::model::digest(&c),
        None => Ok(load_snapshot(conn, digest)?.content_digest()),
    }
}

/// What a capture was judged against: the baseline, its digests and diff, and the policy
/// verdict of the approvals that cover it.
struct Judged<'a> {
    baseline: &'a Baseline,
    digests: &'a SnapshotDigests,
    diff: &'a Diff,
    policy_unmet: Option<&'a (String, String, Vec<String>)>,
}

fn record_drift(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    max_event_bytes: usize,
    rec: &CaptureRecord<'_>,
    judged: &Judged<'_>,
    now: DateTime<Utc>,
) -> Result<DriftOutcome, StoreError> {
    let Judged {
        baseline,
        digests,
        diff,
        policy_unmet,
    } = *judged;
    let now_text = format_timestamp(now);
    let policy_reason = policy_unmet.map(|(change, policy, unmet)| {
        format!(
            "change {change} is approved but policy {policy} is not met: {}",
            unmet.join("; ")
        )
    });
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
                && open.baseline_digest == baseline.digest
                && open.policy_reason == policy_reason =>
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
                     observed_digest = ?3, baseline_digest = ?4, severity = ?5, changes = ?6,
                     policy_reason = ?7
                 WHERE id = ?1",
                params![
                    open.id,
                    now_text,
                    observed,
                    baseline.digest.to_string(),
                    severity,
                    changes_text,
                    policy_reason
                ],
            )?;
            (open.id, false)
        }
        None => {
            conn.execute(
                "INSERT INTO drift_events(asset, status, severity, baseline_digest,
                     observed_digest, first_seen, last_seen, changes, policy_reason)
                 VALUES (?1, 'open', ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                params![
                    rec.asset,
                    severity,
                    baseline.digest.to_string(),
                    observed,
                    now_text,
                    changes_text,
                    policy_reason
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
        &drift_event_data(
            &event,
            (
                &content_digest_of(conn, &baseline.digest)?,
                &digests.content,
            ),
            max_event_bytes,
        ),
    )?;
    Ok(if opened {
        DriftOutcome::Opened(event)
    } else {
        DriftOutcome::Updated(event)
    })
}

/// Names the config's setpoint that covers an item path.
type Label<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Moves the open drift to the observed state without an audit entry or event: only muted
/// items changed. `diff` is the difference from the baseline (none when the state is the
/// baseline's: the drift keeps its last list of changes).
fn fold_drift(
    conn: &Connection,
    open: &DriftEvent,
    digests: &SnapshotDigests,
    diff: Option<(&Diff, &Label<'_>)>,
    now: DateTime<Utc>,
) -> Result<DriftEvent, StoreError> {
    let changes = match diff {
        Some((diff, label)) if !diff.changes.is_empty() => {
            let changes: Vec<ChangeRecord> = diff
                .changes
                .iter()
                .map(|c| ChangeRecord::from_change(c, label))
                .collect();
            Some((
                serde_json::to_string(&changes)
                    .map_err(|e| StoreError::Corrupt(format!("cannot render changes: {e}")))?,
                diff.severity().map(|s| s.as_str()),
            ))
        }
        _ => None,
    };
    conn.execute(
        "UPDATE drift_events SET last_seen = ?2, seen_count = seen_count + 1,
             observed_digest = ?3, changes = COALESCE(?4, changes),
             severity = COALESCE(?5, severity)
         WHERE id = ?1",
        params![
            open.id,
            format_timestamp(now),
            digests.overall.to_string(),
            changes.as_ref().map(|c| &c.0),
            changes.as_ref().and_then(|c| c.1)
        ],
    )?;
    drift_by_id(conn, open.id)
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
