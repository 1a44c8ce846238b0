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

mod drift;
mod rows;

pub(crate) use drift::*;
pub use drift::{ENVELOPE_ALLOWANCE, drift_changes_link};
pub(crate) use rows::*;

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
    /// What the capture was read by (`otdrift_protocols::capture_spec`); `None` when the
    /// caller cannot tell (the difference from the baseline is then the device's).
    pub capture_spec: Option<Digest>,
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
    /// Setpoints that differ from the baseline inside their approved envelopes (they match).
    pub adjustments: Vec<otdrift_core::Adjustment>,
    /// True for a quiet poll kept in memory (`seen.rs`): nothing was written and nothing
    /// queued for upstream.
    pub quiet: bool,
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
        audit::append_with_event(
            conn,
            clock,
            "asset.state_changed",
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
            crate::seen::apply(&tx, p)?;
        }

        store_snapshot(&tx, rec.snapshot, &digests, &now_text)?;
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
        // Approvals are matched on the state judged against the baseline's envelopes, so an
        // operator's move inside one does not break a pending approval.
        let prior = current_baseline(&tx, rec.asset)?;
        let pre = judge_against(&tx, prior.as_ref(), rec.snapshot, &digests, &now_text)?;
        let seen_as = pre.as_ref().map_or(&digests, |j| &j.digests);
        let observed = crate::changes::Observed {
            asset: rec.asset.to_owned(),
            digest: seen_as.overall,
            content: seen_as.content,
            identity: seen_as.identity,
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
        let (current, judged) = match &approval {
            Some(applied) => (
                Some(applied.baseline.clone()),
                judge_against(
                    &tx,
                    Some(&applied.baseline),
                    rec.snapshot,
                    &digests,
                    &now_text,
                )?,
            ),
            None => (prior, pre),
        };
        let (judged_snapshot, judged_digests) = match &judged {
            Some(j) => (&j.snapshot, &j.digests),
            None => (rec.snapshot, &digests),
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
            Some(mut baseline) if baseline.digest == judged_digests.overall => {
                // The same state read another way (or by an agent that kept no spec yet):
                // the baseline takes the capture's spec, so that a later device change is
                // told apart from this capture change.
                if let Some(spec) = rec
                    .capture_spec
                    .filter(|s| baseline.capture_spec != Some(*s))
                {
                    adopt_capture_spec(&tx, clock.as_ref(), &baseline, &spec)?;
                    baseline.capture_spec = Some(spec);
                }
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
                let diff = Diff::between(&before, judged_snapshot);
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
                            reason: match (baseline.capture_spec, rec.capture_spec) {
                                (Some(held), Some(now)) if held != now => {
                                    crate::model::DriftReason::CaptureChanged
                                }
                                _ => crate::model::DriftReason::Device,
                            },
                            digests: judged_digests,
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
        // Setpoints inside their envelopes: each move reported (at most once a minute).
        if !baseline.envelope.is_empty() {
            crate::envelope::report_moves(
                &tx,
                clock.as_ref(),
                rec.asset,
                &load_snapshot(&tx, &baseline.digest)?,
                &baseline.envelope,
                rec.snapshot,
            )?;
        }
        let judged_digest = judged.as_ref().map(|j| j.digests.overall.to_string());
        tx.execute(
            "UPDATE captures SET judged_digest = ?2, judged_baseline = ?3
             WHERE id = ?1 AND (judged_digest IS NOT ?2 OR judged_baseline IS NOT ?3)",
            params![
                capture.id,
                judged_digest,
                judged.as_ref().map(|_| baseline.id)
            ],
        )?;
        let mut capture = capture;
        capture.judged_digest = judged.as_ref().map(|j| j.digests.overall);
        let adjustments = judged
            .as_ref()
            .map(|j| j.adjustments.clone())
            .unwrap_or_default();
        // Once a UTC day, an asset that matches its baseline says so in the chain.
        let verified = matches!(drift, DriftOutcome::None)
            && !baseline_created
            && baseline.digest == judged_digests.overall
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
                adjustments,
                quiet: false,
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

/// Records that `baseline`'s state is what captures under `spec` read (an audit entry when
/// it had another spec: the capture changed and the state did not).
fn adopt_capture_spec(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    baseline: &Baseline,
    spec: &Digest,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE baselines SET capture_spec = ?2 WHERE id = ?1",
        params![baseline.id, spec.to_string()],
    )?;
    if let Some(previous) = baseline.capture_spec {
        audit::append(
            conn,
            clock,
            "baseline.capture_spec",
            Some(&baseline.asset),
            &json!({
                "asset": baseline.asset,
                "baseline_id": baseline.id,
                "digest": baseline.digest.to_string(),
                "previous_capture_spec": previous.to_string(),
                "capture_spec": spec.to_string(),
            }),
        )?;
    }
    Ok(())
}

/// Stores a snapshot once per digest.
fn store_snapshot(
    conn: &Connection,
    snapshot: &Snapshot,
    digests: &SnapshotDigests,
    now_text: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO snapshots(digest, encoding_version, body, identity_digest,
             program_digest, setpoint_digest, item_count, first_seen, content_digest,
             history_digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        digests.overall.to_string(),
        otdrift_core::ENCODING_VERSION,
        snapshot.encode(),
        digests.identity.to_string(),
        digests.program.to_string(),
        digests.setpoint.to_string(),
        snapshot.len() as i64,
        now_text,
        digests.content.to_string(),
        digests.history.to_string()
    ])?;
    Ok(())
}

/// A capture with its setpoint moves inside the baseline's envelopes at the baseline's values.
struct EnvelopeJudged {
    snapshot: Snapshot,
    digests: SnapshotDigests,
    adjustments: Vec<otdrift_core::Adjustment>,
}

/// Judges `observed` against `baseline`'s envelopes (`otdrift_core::Envelope::judge`), and
/// stores the judged state (approvals and drift name it). `None` when no move was admitted:
/// the capture is judged as observed.
fn judge_against(
    conn: &Connection,
    baseline: Option<&Baseline>,
    observed: &Snapshot,
    digests: &SnapshotDigests,
    now_text: &str,
) -> Result<Option<EnvelopeJudged>, StoreError> {
    let Some(baseline) = baseline.filter(|b| !b.envelope.is_empty()) else {
        return Ok(None);
    };
    if baseline.digest == digests.overall {
        return Ok(None);
    }
    let judged = baseline
        .envelope
        .judge(&load_snapshot(conn, &baseline.digest)?, observed);
    if judged.adjustments.is_empty() {
        return Ok(None);
    }
    let judged_digests = judged.snapshot.digests();
    store_snapshot(conn, &judged.snapshot, &judged_digests, now_text)?;
    Ok(Some(EnvelopeJudged {
        snapshot: judged.snapshot,
        digests: judged_digests,
        adjustments: judged.adjustments,
    }))
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
    let spec = rec.capture_spec.map(|d| d.to_string());
    let same_state = previous.is_some_and(|p| p.digest == digest_text && p.change_id.is_none());
    let id = match previous {
        Some(p) if folded => {
            conn.execute(
                "UPDATE captures SET digest = ?2, last_seen = ?3, seen_count = seen_count + 1,
                     runtime = ?4, duration_ms = ?5, requests = ?6, capture_spec = ?7
                 WHERE id = ?1",
                params![
                    p.id,
                    digest_text,
                    now_text,
                    runtime,
                    rec.duration_ms as i64,
                    rec.requests as i64,
                    spec
                ],
            )?;
            p.id
        }
        Some(p) if same_state && rec.change_id.is_none() => {
            let id = p.id;
            conn.execute(
                "UPDATE captures SET last_seen = ?2, seen_count = seen_count + 1, runtime = ?3,
                     duration_ms = ?4, requests = ?5, capture_spec = ?6 WHERE id = ?1",
                params![
                    id,
                    now_text,
                    runtime,
                    rec.duration_ms as i64,
                    rec.requests as i64,
                    spec
                ],
            )?;
            id
        }
        _ => {
            conn.execute(
                "INSERT INTO captures(asset, digest, first_seen, last_seen, change_id, phase,
                     runtime, duration_ms, requests, capture_spec)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    rec.asset,
                    digest_text,
                    now_text,
                    rec.change_id,
                    rec.phase.map(|p| p.as_str()),
                    runtime,
                    rec.duration_ms as i64,
                    rec.requests as i64,
                    spec
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
