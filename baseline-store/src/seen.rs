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
//! counter and runtime facts of the asset's latest capture row (the asset's last capture and
//! attempt are read from it): the latest row has this digest, no change id and the same
//! capture spec, the
//! capture is no technician's, the digest is the baseline's (or the row was judged, against
//! this very baseline row, as the baseline's with setpoints inside their envelopes, and no
//! setpoint move waits to be reported) and no drift is open, the asset
//! is reachable with no failure streak, outage or staleness to end (so no recovery event is
//! due), no approval of the asset is pending, no approval anywhere has expired and no review
//! is overdue (both are judged by the durable path, as before), no item of the asset is
//! tracked for flapping (flapping detection sees every poll), the operating state is the one
//! stored with the row, and a staging controller has no change to link. Anything else takes
//! the durable path, which first writes the asset's bump in its own transaction.
//!
//! The quiet check reads the database; the daemon polls the same state over and over, so
//! each successful check leaves a *memo* (the asset's latest row, baseline and digest) that
//! lets the next poll of the same state be recognised without the database and without the
//! store's lock ([`QuietPath`]). A memo holds only while nothing was committed since it was
//! made: every commit on this store's connection ends all memos (a commit hook counts them),
//! a commit by another process ends them once [`Store::notice_other_writers`] sees it, and a
//! pending approval's expiry or an overdue review ends them at that time. The seen flush,
//! which writes only what the memos already account for, carries them over.
//!
//! Only a store switched to it ([`Store::defer_seen`]) keeps bumps: the daemon. One-shot
//! commands write every poll as before. A killed process loses the bumps not flushed yet: at
//! most one flush window of "still the same" timestamps and counts, never a state, a drift,
//! an approval, an alarm, an audit entry or an event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, Utc};
use otdrift_core::format_timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::ingest::{CaptureOutcome, CaptureRecord, DriftOutcome};
use crate::model::{AssetRow, Baseline, CaptureRow};
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
    /// What the last quiet check of each asset found (module docs).
    memo: HashMap<String, QuietMemo>,
    /// Commits on the store's connection, counted by its commit hook, plus one for every
    /// commit of another process noticed: a memo made at another count is void.
    writes: Arc<AtomicU64>,
    /// `PRAGMA data_version` when last looked at (changes when another connection commits).
    data_version: Option<i64>,
}

/// What a quiet check established about an asset, for [`QuietPath`].
#[derive(Clone, Debug)]
struct QuietMemo {
    /// [`SeenState::writes`] when the check ran.
    writes: u64,
    protocol: String,
    address: String,
    /// The runtime facts stored with the row (the operating state is compared with it).
    stored: serde_json::Value,
    /// The row as written (bumps not written yet are overlaid when answering).
    capture: CaptureRow,
    /// The capture spec the row was read by.
    capture_spec: Option<otdrift_core::Digest>,
    /// The baseline, whose digest is the row's or the row's judged digest (a quiet check
    /// requires it).
    baseline: Baseline,
    /// The earliest expiry of a pending approval or due time of a review anywhere: from
    /// then on the durable path has work, so the memo ends there.
    until: Option<String>,
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

    /// Keeps a quiet poll's bump (`Err(())` when another row became the asset's latest
    /// meanwhile: the durable path writes the old bump first).
    fn bump(&mut self, asset: &str, bump: PendingSeen) -> Result<(), ()> {
        match self.pending.get_mut(asset) {
            Some(p) if p.capture_id != bump.capture_id => return Err(()),
            Some(p) => {
                p.count += 1;
                p.last_seen = p.last_seen.max(bump.last_seen);
                p.runtime = bump.runtime;
                p.duration_ms = bump.duration_ms;
                p.requests = bump.requests;
            }
            None => {
                self.pending.insert(asset.to_owned(), bump);
            }
        }
        Ok(())
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

/// Shows a bump on the capture row it belongs to.
fn overlay(row: &mut CaptureRow, p: &PendingSeen) {
    if p.capture_id == row.id {
        row.last_seen = row.last_seen.max(p.last_seen);
        row.seen_count += p.count;
        row.duration_ms = p.duration_ms;
        row.requests = p.requests;
    }
}

/// Writes a bump: the row's last_seen (never backwards), count and last runtime facts. The
/// asset's row is not touched: its last capture and attempt are read as the later of its own
/// and its latest capture row's last_seen ([`LATEST_SEEN`]), so a flush rewrites the pages
/// of one table, not two (gateways run on flash).
pub(crate) fn apply(conn: &Connection, p: &PendingSeen) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE captures SET last_seen = MAX(last_seen, ?2), seen_count = seen_count + ?3,
             runtime = ?4, duration_ms = ?5, requests = ?6
         WHERE id = ?1",
    )?
    .execute(params![
        p.capture_id,
        format_timestamp(p.last_seen),
        p.count,
        p.runtime,
        p.duration_ms,
        p.requests
    ])?;
    Ok(())
}

/// SQL for the last_seen of the latest capture row of the asset row `a` (NULL without one).
pub(crate) const LATEST_SEEN: &str =
    "(SELECT c.last_seen FROM captures c WHERE c.asset = a.id ORDER BY c.id DESC LIMIT 1)";

/// SQL for the later of two nullable timestamps (NULL when both are).
pub(crate) fn later(x: &str, y: &str) -> String {
    format!("MAX(COALESCE({x}, {y}), COALESCE({y}, {x}))")
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

/// A quiet poll's bump of row `capture_id`.
fn pending_bump(rec: &CaptureRecord<'_>, capture_id: i64, now: DateTime<Utc>) -> PendingSeen {
    PendingSeen {
        capture_id,
        last_seen: now,
        count: 1,
        runtime: crate::ingest::stored_runtime(rec).to_string(),
        duration_ms: i64::try_from(rec.duration_ms).unwrap_or(i64::MAX),
        requests: i64::try_from(rec.requests).unwrap_or(i64::MAX),
    }
}

/// What a quiet poll returns: what the durable path would have.
fn quiet_outcome(
    capture: CaptureRow,
    digests: otdrift_core::SnapshotDigests,
    baseline: Baseline,
) -> CaptureOutcome {
    CaptureOutcome {
        capture,
        digests,
        baseline,
        baseline_created: false,
        diff: otdrift_core::Diff::default(),
        drift: DriftOutcome::None,
        approval: None,
        policy_unmet: None,
        state_changes: Vec::new(),
        adjustments: Vec::new(),
        quiet: true,
    }
}

/// Whether the operating state is the one stored with the row, key by key.
fn same_operating_state(rec: &CaptureRecord<'_>, stored: &serde_json::Value) -> bool {
    rec.operating_state
        .as_object()
        .is_none_or(|state| state.iter().all(|(k, v)| stored.get(k.as_str()) == Some(v)))
}

/// The quiet path of a store switched to [`Store::defer_seen`], without its database or its
/// lock, for the daemon's workers: a poll that finds the state its asset's memo holds (module
/// docs) is kept in memory exactly as [`Store::record_capture`] would keep it. Anything the
/// memo cannot vouch for (no memo, a commit since, another digest, address or operating
/// state, a staging controller, a technician's capture, today's `asset.verified` not
/// written yet, an expiry due) is `None`: then the caller records through the store.
#[derive(Clone)]
pub struct QuietPath {
    seen: SharedSeen,
    clock: Arc<dyn otdrift_core::Clock>,
}

impl std::fmt::Debug for QuietPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuietPath").finish_non_exhaustive()
    }
}

impl QuietPath {
    /// How many assets have quiet polls not written yet ([`Store::seen_pending`]).
    pub fn pending(&self) -> usize {
        lock(&self.seen).pending.len()
    }

    /// Records `rec` as a quiet poll if the memo vouches for it; `None` otherwise (nothing
    /// kept).
    pub fn record(&self, rec: &CaptureRecord<'_>) -> Option<CaptureOutcome> {
        if rec.change_id.is_some() || rec.phase.is_some() || rec.rules.production.is_some() {
            return None;
        }
        let now = self.clock.now();
        let digests = rec.snapshot.digests();
        let mut state = lock(&self.seen);
        let memo = state.memo.get(rec.asset)?;
        let current = memo.writes == state.writes.load(Ordering::Acquire)
            && memo.capture.digest == digests.overall
            && memo.capture_spec == rec.capture_spec
            && memo.protocol == rec.protocol
            && memo.address == rec.address
            && same_operating_state(rec, &memo.stored)
            && memo
                .until
                .as_deref()
                .is_none_or(|until| format_timestamp(now).as_str() <= until)
            && state.verified_day == Some(now.date_naive())
            && state.verified.contains(rec.asset);
        if !current {
            return None;
        }
        let mut capture = memo.capture.clone();
        let baseline = memo.baseline.clone();
        state
            .bump(rec.asset, pending_bump(rec, capture.id, now))
            .ok()?;
        if let Some(p) = state.pending.get(rec.asset) {
            overlay(&mut capture, p);
        }
        Some(quiet_outcome(capture, digests, baseline))
    }
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
    pub fn defer_seen(&mut self, on: bool) -> Result<(), StoreError> {
        self.defer_seen = on;
        let writes = {
            let mut state = lock(&self.seen);
            state.memo.clear();
            state.writes.clone()
        };
        if on {
            // Every commit on this connection voids the memos (module docs).
            self.conn.commit_hook(Some(move || {
                writes.fetch_add(1, Ordering::AcqRel);
                false
            }));
            self.notice_other_writers()?;
        } else {
            self.conn.commit_hook(None::<fn() -> bool>);
        }
        Ok(())
    }

    /// The quiet path without the database (module docs), for the daemon's workers.
    pub fn quiet_path(&self) -> QuietPath {
        QuietPath {
            seen: self.seen.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Looks whether another process committed to the database since the last look, and
    /// if so voids every memo: what another process wrote (an approval, a capture) is then
    /// judged by the next poll's quiet check. Returns whether it had. The daemon looks every
    /// few seconds.
    pub fn notice_other_writers(&mut self) -> Result<bool, StoreError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let mut state = lock(&self.seen);
        let changed = state.data_version.is_some_and(|seen| seen != version);
        if changed {
            state.writes.fetch_add(1, Ordering::AcqRel);
        }
        state.data_version = Some(version);
        Ok(changed)
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
        let before = lock(&self.seen).writes.load(Ordering::Acquire);
        let written = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for p in pending.values() {
                apply(&tx, p)?;
            }
            tx.commit()?;
            Ok::<_, StoreError>(pending.len())
        })();
        let mut state = lock(&self.seen);
        if written.is_err() {
            for (asset, p) in pending {
                state.restore(&asset, p);
            }
            return written;
        }
        // This flush wrote only bumps the memos already show: when it was the only commit
        // since they were made, they hold on, with the bumps now in their rows.
        let after = state.writes.load(Ordering::Acquire);
        if after == before + 1 {
            for (asset, memo) in state.memo.iter_mut() {
                if memo.writes == before {
                    memo.writes = after;
                    if let Some(p) = pending.get(asset) {
                        overlay(&mut memo.capture, p);
                    }
                }
            }
        }
        written
    }

    /// Shows a bump not written yet on a capture row read from the database.
    pub(crate) fn overlay_capture(&self, row: &mut CaptureRow) {
        if let Some(p) = lock(&self.seen).pending.get(&row.asset) {
            overlay(row, p);
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
        if !same_operating_state(rec, &stored) {
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
        // Another process recorded a newer row meanwhile: the durable path writes the old
        // bump first.
        if lock(&self.seen)
            .bump(rec.asset, pending_bump(rec, latest.id, now))
            .is_err()
        {
            return Ok(None);
        }
        // The row as written: what a memo holds.
        let mut row = crate::ingest::capture_by_id(&self.conn, latest.id)?;
        let mut capture = row.clone();
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
                    apply(&tx, p)?;
                }
                append_verified(&tx, clock.as_ref(), &capture, baseline.id)?;
                tx.commit()?;
                Ok::<_, StoreError>(())
            })();
            match written {
                Ok(()) => {
                    mark_verified(&self.seen, rec.asset, now);
                    // The bumps are written now, with the entry.
                    row = capture.clone();
                }
                Err(e) => {
                    if let Some(p) = carried {
                        lock(&self.seen).restore(rec.asset, p);
                    }
                    return Err(e);
                }
            }
        }
        if self.defer_seen && rec.rules.production.is_none() {
            let until: Option<String> = self
                .conn
                .prepare_cached(
                    "SELECT MIN(t) FROM (
                         SELECT MIN(expires_at) AS t FROM approvals WHERE status = 'pending'
                         UNION ALL
                         SELECT MIN(review_due_by) FROM changes WHERE status = 'review_due')",
                )?
                .query_row([], |r| r.get(0))?;
            let mut state = lock(&self.seen);
            let memo = QuietMemo {
                writes: state.writes.load(Ordering::Acquire),
                capture_spec: rec.capture_spec,
                protocol: rec.protocol.to_owned(),
                address: rec.address.to_owned(),
                stored,
                capture: row,
                baseline: baseline.clone(),
                until,
            };
            state.memo.insert(rec.asset.to_owned(), memo);
        }
        Ok(Some(quiet_outcome(capture, digests, baseline)))
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
                    c.digest = ?2 AND c.change_id IS NULL AND c.capture_spec IS ?6
                    AND a.protocol = ?4 AND a.address = ?5 AND a.reachable = 1
                    AND a.last_error IS NULL AND a.unreachable_since IS NULL
                    AND a.failing_since IS NULL AND a.failure_reason IS NULL
                    AND a.failure_count = 0 AND a.unreachable_announced = 0
                    AND a.failure_announced = 0 AND a.stale_since IS NULL
                    AND (SELECT CASE WHEN c.judged_baseline IS NULL THEN b.digest = ?2
                                     ELSE b.id = c.judged_baseline
                                          AND b.digest = c.judged_digest END
                         FROM baselines b WHERE b.asset = ?1 ORDER BY b.id DESC LIMIT 1)
                    AND NOT EXISTS(SELECT 1 FROM setpoint_moves m
                                   WHERE m.asset = ?1 AND m.waiting = 1)
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
                params![
                    rec.asset,
                    digest,
                    now,
                    rec.protocol,
                    rec.address,
                    rec.capture_spec.map(|d| d.to_string())
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(match row {
            Some((id, runtime, true)) => Some(Latest { id, runtime }),
            _ => None,
        })
    }
}
