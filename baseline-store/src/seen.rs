//! Quiet polls: a poll that finds nothing new writes nothing at once.
//!
//! ```text
//! record_capture ──► quiet? (reads only) ──yes──► bump kept in memory (last_seen, +1, runtime)
//!                         │                        once a UTC day per asset: asset.verified
//!                         │                        (audit, with the bump, one transaction)
//!                         no
//!                         ▼
//!                 the asset's bump, then the whole drift state machine (one transaction)
//! flush_seen ───────────► every bump in one transaction (the daemon: every seen_flush, at stop)
//! ```
//!
//! A poll is *quiet* only when recording it durably would change nothing but the seen-time,
//! counter and runtime facts of the asset's latest capture row and the asset's
//! `last_attempt`/`last_capture`: the latest row has this digest and no change id, the
//! capture is no technician's, the digest is the baseline's and no drift is open, the asset
//! is reachable with no failure streak, outage or staleness to end (so no recovery event is
//! due), no approval of the asset is pending, no approval anywhere has expired and no review
//! is overdue (both are judged by the durable path, as before), no item of the asset is
//! tracked for flapping (flapping detection sees every poll), the operating state is the one
//! stored with the row, and a staging controller has no change to link. Anything else takes
//! the durable path, which first writes the asset's bump in its own transaction.
//!
//! Only a store switched to it ([`Store::defer_seen`]) keeps bumps: the daemon. One-shot
//! commands write every poll as before. A killed process loses the bumps not flushed yet: at
//! most one flush window of "still the same" timestamps and counts, never a state, a drift,
//! an approval, an alarm, an audit entry or an event.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, Utc};
use otdrift_core::format_timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::ingest::{CaptureOutcome, CaptureRecord, DriftOutcome};
use crate::model::{AssetRow, CaptureRow};
use crate::{Store, StoreError};

/// The audit kind that records, once a UTC day per asset, that the asset matched its baseline.
pub const VERIFIED: &str = "asset.verified";

/// The seen-time and counters of an asset's quiet polls, not written yet.
#[derive(Clone, Debug)]
pub(crate) struct PendingSeen {
    /// The capture row they belong to (the asset's latest).
    pub capture_id: i64,
    /// The last quiet poll.
    pub last_seen: DateTime<Utc>,
    /// How many quiet polls.
    pub count: i64,
    /// The last poll's runtime facts, duration and requests.
    pub runtime: String,
    pub duration_ms: i64,
    pub requests: i64,
}

/// Bumps not written yet and the assets verified today; shared with a read-only store of the
/// same process ([`Store::share_seen`]) so the API's reads show them.
#[derive(Debug, Default)]
pub(crate) struct SeenState {
    pending: HashMap<String, PendingSeen>,
    /// The UTC day `verified` is about (loaded from the audit log when the day changes).
    verified_day: Option<NaiveDate>,
    verified: HashSet<String>,
}

pub(crate) type SharedSeen = Arc<Mutex<SeenState>>;

pub(crate) fn lock(seen: &SharedSeen) -> MutexGuard<'_, SeenState> {
    // Nothing in the state can be half-updated by a panic: keep using it.
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

impl SeenState {
    pub(crate) fn take(&mut self, asset: &str) -> Option<PendingSeen> {
        self.pending.remove(asset)
    }

    /// Puts back a bump whose write failed (a newer one, if any, already holds its time).
    pub(crate) fn restore(&mut self, asset: &str, p: PendingSeen) {
        match self.pending.get_mut(asset) {
            Some(newer) if newer.capture_id == p.capture_id => newer.count += p.count,
            Some(_) => {}
            None => {
                self.pending.insert(asset.to_owned(), p);
            }
        }
    }
}

/// Writes a bump: the row's last_seen (never backwards), count and last runtime facts, and
/// the asset's last attempt and capture (never backwards: a failure may have come since).
pub(crate) fn apply(conn: &Connection, asset: &str, p: &PendingSeen) -> Result<(), StoreError> {
    let at = format_timestamp(p.last_seen);
    conn.execute(
        "UPDATE captures SET last_seen = MAX(last_seen, ?2), seen_count = seen_count + ?3,
             runtime = ?4, duration_ms = ?5, requests = ?6
         WHERE id = ?1",
        params![
            p.capture_id,
            at,
            p.count,
            p.runtime,
            p.duration_ms,
            p.requests
        ],
    )?;
    conn.execute(
        "UPDATE assets SET last_attempt = MAX(COALESCE(last_attempt, ''), ?2),
             last_capture = MAX(COALESCE(last_capture, ''), ?2)
         WHERE id = ?1",
        params![asset, at],
    )?;
    Ok(())
}

/// Whether the asset still needs today's `asset.verified` entry (loading the day's entries
/// from the audit log, newest first, when the UTC day changed).
pub(crate) fn needs_verified(
    conn: &Connection,
    seen: &SharedSeen,
    asset: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let today = now.date_naive();
    let mut state = lock(seen);
    if state.verified_day != Some(today) {
        let start = format_timestamp(today.and_time(chrono::NaiveTime::MIN).and_utc());
        let mut stmt = conn.prepare("SELECT at, kind, asset FROM audit_log ORDER BY seq DESC")?;
        let mut rows = stmt.query([])?;
        let mut verified = HashSet::new();
        while let Some(row) = rows.next()? {
            let at: String = row.get(0)?;
            if at < start {
                break;
            }
            let (kind, who): (String, Option<String>) = (row.get(1)?, row.get(2)?);
            if let (VERIFIED, Some(who)) = (kind.as_str(), who) {
                verified.insert(who);
            }
        }
        state.verified_day = Some(today);
        state.verified = verified;
    }
    Ok(!state.verified.contains(asset))
}

pub(crate) fn mark_verified(seen: &SharedSeen, asset: &str, now: DateTime<Utc>) {
    let mut state = lock(seen);
    if state.verified_day == Some(now.date_naive()) {
        state.verified.insert(asset.to_owned());
    }
}

/// Appends today's `asset.verified` entry for a capture row that matches the baseline.
pub(crate) fn append_verified(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    capture: &CaptureRow,
    baseline_id: i64,
) -> Result<(), StoreError> {
    crate::audit::append(
        conn,
        clock,
        VERIFIED,
        Some(&capture.asset),
        &json!({
            "asset": capture.asset,
            "digest": capture.digest.to_string(),
            "baseline_id": baseline_id,
            "capture_id": capture.id,
            "first_seen": format_timestamp(capture.first_seen),
            "last_seen": format_timestamp(capture.last_seen),
            "seen_count": capture.seen_count,
        }),
    )?;
    Ok(())
}

/// What the quiet check read about the asset's latest capture.
struct Latest {
    id: i64,
    runtime: String,
}

impl Store {
    /// Keeps the seen-times and counters of quiet polls in memory until [`Store::flush_seen`]
    /// (the daemon); off by default, so one-shot commands write every poll. See the module
    /// documentation of `seen.rs` for what a quiet poll is.
    pub fn defer_seen(&mut self, on: bool) {
        self.defer_seen = on;
    }

    /// Lets `reader` (a read-only store of the same database, in this process) show this
    /// store's bumps not written yet in [`Store::latest_capture`], [`Store::captures`] and
    /// [`Store::asset`].
    pub fn share_seen(&self, reader: &mut Store) {
        reader.seen = self.seen.clone();
    }

    /// How many assets have quiet polls not written yet.
    pub fn seen_pending(&self) -> usize {
        lock(&self.seen).pending.len()
    }

    /// Writes every bump kept in memory, in one transaction; returns how many assets it
    /// wrote. Nothing to write is no transaction at all.
    pub fn flush_seen(&mut self) -> Result<usize, StoreError> {
        let pending = std::mem::take(&mut lock(&self.seen).pending);
        if pending.is_empty() {
            return Ok(0);
        }
        let written = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (asset, p) in &pending {
                apply(&tx, asset, p)?;
            }
            tx.commit()?;
            Ok::<_, StoreError>(pending.len())
        })();
        if written.is_err() {
            let mut state = lock(&self.seen);
            for (asset, p) in pending {
                state.restore(&asset, p);
            }
        }
        written
    }

    /// Shows a bump not written yet on a capture row read from the database.
    pub(crate) fn overlay_capture(&self, row: &mut CaptureRow) {
        if let Some(p) = lock(&self.seen).pending.get(&row.asset)
            && p.capture_id == row.id
        {
            row.last_seen = row.last_seen.max(p.last_seen);
            row.seen_count += p.count;
            row.duration_ms = p.duration_ms;
            row.requests = p.requests;
        }
    }

    /// Shows a bump not written yet on an asset row read from the database.
    pub(crate) fn overlay_asset(&self, row: &mut AssetRow) {
        if let Some(p) = lock(&self.seen).pending.get(&row.id) {
            row.last_attempt = row.last_attempt.max(Some(p.last_seen));
            row.last_capture = row.last_capture.max(Some(p.last_seen));
        }
    }

    /// The runtime facts of a bump not written yet, for that capture row.
    pub(crate) fn pending_runtime(&self, capture_id: i64) -> Option<String> {
        lock(&self.seen)
            .pending
            .values()
            .find(|p| p.capture_id == capture_id)
            .map(|p| p.runtime.clone())
    }

    /// The quiet path of [`Store::record_capture`]: `None` when the poll must be recorded
    /// durably; otherwise its bump is kept in memory (and today's `asset.verified` written
    /// when due) and the outcome is what the durable path would have returned.
    pub(crate) fn record_quiet(
        &mut self,
        rec: &CaptureRecord<'_>,
    ) -> Result<Option<CaptureOutcome>, StoreError> {
        if !self.defer_seen || rec.change_id.is_some() || rec.phase.is_some() {
            return Ok(None);
        }
        let now = self.clock.now();
        let now_text = format_timestamp(now);
        let digests = rec.snapshot.digests();
        let digest_text = digests.overall.to_string();
        let Some(latest) = self.quiet_latest(rec, &digest_text, &now_text)? else {
            return Ok(None);
        };
        // The operating state must be the one stored with the row, key by key.
        let stored: serde_json::Value = serde_json::from_str(&latest.runtime).unwrap_or_default();
        if let Some(state) = rec.operating_state.as_object()
            && state.iter().any(|(k, v)| stored.get(k.as_str()) != Some(v))
        {
            return Ok(None);
        }
        if let Some(production) = &rec.rules.production {
            // A staging controller links the production asset's changes it shows.
            let linking: bool = self.conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM approvals WHERE asset = ?1
                     AND status IN ('pending', 'applied') AND content_digest = ?2)",
                params![production, digests.content.to_string()],
                |r| r.get(0),
            )?;
            if linking {
                return Ok(None);
            }
        }
        let Some(baseline) = crate::ingest::current_baseline(&self.conn, rec.asset)? else {
            return Ok(None);
        };
        {
            let mut state = lock(&self.seen);
            let bump = PendingSeen {
                capture_id: latest.id,
                last_seen: now,
                count: 1,
                runtime: crate::ingest::stored_runtime(rec).to_string(),
                duration_ms: i64::try_from(rec.duration_ms).unwrap_or(i64::MAX),
                requests: i64::try_from(rec.requests).unwrap_or(i64::MAX),
            };
            match state.pending.get_mut(rec.asset) {
                // Another process recorded a newer row meanwhile: the durable path writes
                // the old bump first.
                Some(p) if p.capture_id != latest.id => return Ok(None),
                Some(p) => {
                    p.count += 1;
                    p.last_seen = p.last_seen.max(now);
                    p.runtime = bump.runtime;
                    p.duration_ms = bump.duration_ms;
                    p.requests = bump.requests;
                }
                None => {
                    state.pending.insert(rec.asset.to_owned(), bump);
                }
            }
        }
        let mut capture = crate::ingest::capture_by_id(&self.conn, latest.id)?;
        self.overlay_capture(&mut capture);
        if needs_verified(&self.conn, &self.seen, rec.asset, now)? {
            // Once a UTC day: the asset's bump and the chained entry, together.
            let carried = lock(&self.seen).take(rec.asset);
            let clock = self.clock.clone();
            let written = (|| {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(p) = &carried {
                    apply(&tx, rec.asset, p)?;
                }
                append_verified(&tx, clock.as_ref(), &capture, baseline.id)?;
                tx.commit()?;
                Ok::<_, StoreError>(())
            })();
            match written {
                Ok(()) => mark_verified(&self.seen, rec.asset, now),
                Err(e) => {
                    if let Some(p) = carried {
                        lock(&self.seen).restore(rec.asset, p);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Some(CaptureOutcome {
            capture,
            digests,
            baseline,
            baseline_created: false,
            diff: otdrift_core::Diff::default(),
            drift: DriftOutcome::None,
            approval: None,
            policy_unmet: None,
            state_changes: Vec::new(),
        }))
    }

    /// The asset's latest capture row when everything but the operating state and staging
    /// says the poll is quiet (one read).
    fn quiet_latest(
        &self,
        rec: &CaptureRecord<'_>,
        digest: &str,
        now: &str,
    ) -> Result<Option<Latest>, StoreError> {
        // Prepared once per connection: this runs on every poll.
        let row: Option<(i64, String, bool)> = self
            .conn
            .prepare_cached(
                "SELECT c.id, c.runtime,
                    c.digest = ?2 AND c.change_id IS NULL
                    AND a.protocol = ?4 AND a.address = ?5 AND a.reachable = 1
                    AND a.last_error IS NULL AND a.unreachable_since IS NULL
                    AND a.failing_since IS NULL AND a.failure_reason IS NULL
                    AND a.failure_count = 0 AND a.unreachable_announced = 0
                    AND a.failure_announced = 0 AND a.stale_since IS NULL
                    AND (SELECT b.digest FROM baselines b WHERE b.asset = ?1
                         ORDER BY b.id DESC LIMIT 1) = ?2
                    AND NOT EXISTS(SELECT 1 FROM drift_events d
                                   WHERE d.asset = ?1 AND d.status = 'open')
                    AND NOT EXISTS(SELECT 1 FROM approvals p
                                   WHERE p.asset = ?1 AND p.status = 'pending')
                    AND NOT EXISTS(SELECT 1 FROM item_flaps f WHERE f.asset = ?1)
                    AND NOT EXISTS(SELECT 1 FROM approvals p
                                   WHERE p.status = 'pending' AND p.expires_at < ?3)
                    AND NOT EXISTS(SELECT 1 FROM changes g
                                   WHERE g.status = 'review_due' AND g.review_due_by < ?3)
                 FROM captures c JOIN assets a ON a.id = c.asset
                 WHERE c.asset = ?1 ORDER BY c.id DESC LIMIT 1",
            )?
            .query_row(
                params![rec.asset, digest, now, rec.protocol, rec.address],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(match row {
            Some((id, runtime, true)) => Some(Latest { id, runtime }),
            _ => None,
        })
    }
}
