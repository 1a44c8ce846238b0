//! Bounded growth: what may be deleted, when, and in steps small enough that a capture never
//! waits long behind the pruning.
//!
//! - **Outbox**: an event every destination has acknowledged (or, with no destination, any
//!   event: pull clients had the retention period to read it), older than `[retention]
//!   outbox`. Parked events stay until delivered. The highest deleted sequence is kept, so a
//!   pull client asking for a position before it gets 410 and where to resume.
//! - **Captures**: older than `[retention] captures` (by `last_seen`), unless a baseline or a
//!   staging link names it, it is a technician's capture (it carries a change id: evidence),
//!   it is its asset's latest, or the asset's open drift observes its state.
//! - **Snapshots**: older than `[retention] captures` (by `first_seen`), unless a capture, a
//!   baseline, an open or approved drift, an approval, a review or a change names it.
//! - **The audit log is append-only and never pruned.**
//!
//! Each [`Store::prune_step`] is one transaction of at most `batch` rows per kind; the
//! daemon repeats it until nothing is left, letting other work in between.

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{Clock, format_timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::audit;
use crate::events::event_type;
use crate::{Store, StoreError};

/// A snapshot `s` is in use while anything but a pruned capture names it.
const SNAPSHOT_IN_USE: &str = "(EXISTS (SELECT 1 FROM captures WHERE digest = s.digest)
    OR EXISTS (SELECT 1 FROM captures WHERE judged_digest = s.digest)
    OR EXISTS (SELECT 1 FROM baselines WHERE digest = s.digest)
    OR EXISTS (SELECT 1 FROM drift_events WHERE status <> 'resolved'
                  AND (observed_digest = s.digest OR baseline_digest = s.digest))
    OR EXISTS (SELECT 1 FROM approvals WHERE to_digest = s.digest OR from_digest = s.digest)
    OR EXISTS (SELECT 1 FROM reviews WHERE to_digest = s.digest)
    OR EXISTS (SELECT 1 FROM changes WHERE digest = s.digest))";

/// Deletes a snapshot at once if nothing names it any more (the state a folded capture row
/// held while a flapping item moved).
pub(crate) fn drop_snapshot_if_unused(conn: &Connection, digest: &str) -> Result<(), StoreError> {
    conn.execute(
        &format!("DELETE FROM snapshots AS s WHERE s.digest = ?1 AND NOT {SNAPSHOT_IN_USE}"),
        [digest],
    )?;
    Ok(())
}

/// What the store may delete; the agent fills it from `[retention]`.
#[derive(Clone, Debug)]
pub struct Retention {
    /// How long an acknowledged event is kept.
    pub outbox: TimeDelta,
    /// How long an unreferenced capture or snapshot is kept.
    pub captures: TimeDelta,
    /// The destinations that must have acknowledged an event before it goes (`upstream`
    /// when one is configured); empty when events are only pulled.
    pub destinations: Vec<String>,
    /// The most rows of each kind one step deletes.
    pub batch: u32,
}

/// What pruning deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Outbox rows.
    pub outbox: u64,
    /// Capture rows.
    pub captures: u64,
    /// Snapshots.
    pub snapshots: u64,
}

impl Pruned {
    /// Nothing was deleted.
    pub fn is_empty(&self) -> bool {
        self.outbox == 0 && self.captures == 0 && self.snapshots == 0
    }

    /// Adds another step's figures.
    pub fn add(&mut self, other: Pruned) {
        self.outbox += other.outbox;
        self.captures += other.captures;
        self.snapshots += other.snapshots;
    }
}

/// A pull position that points into deleted events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrunedPosition {
    /// Every event up to this sequence may be gone: resume with `after` = this.
    pub pruned_through: i64,
    /// The oldest event still held (0 when the outbox is empty).
    pub oldest_seq: i64,
}

fn cutoff(clock: &dyn Clock, age: TimeDelta) -> String {
    let at: DateTime<Utc> = clock.now() - age;
    format_timestamp(at)
}

fn mark(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT value FROM retention_marks WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// The position every destination has acknowledged.
fn acknowledged_by_all(conn: &Connection, destinations: &[String]) -> Result<i64, StoreError> {
    let mut all = i64::MAX;
    for d in destinations {
        let acked: i64 = conn
            .query_row(
                "SELECT acked_seq FROM delivery_cursors WHERE destination = ?1",
                [d],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        all = all.min(acked);
    }
    Ok(all)
}

fn prune_outbox(conn: &Connection, clock: &dyn Clock, r: &Retention) -> Result<u64, StoreError> {
    let through = acknowledged_by_all(conn, &r.destinations)?;
    let seqs: Vec<i64> = conn
        .prepare(
            "SELECT seq FROM outbox WHERE seq <= ?1 AND time < ?2
                 AND seq NOT IN (SELECT seq FROM parked WHERE status <> 'delivered')
             ORDER BY seq LIMIT ?3",
        )?
        .query_map(params![through, cutoff(clock, r.outbox), r.batch], |row| {
            row.get(0)
        })?
        .collect::<Result<_, _>>()?;
    let Some(&last) = seqs.last() else {
        return Ok(0);
    };
    let mut parked = conn.prepare_cached("DELETE FROM parked WHERE seq = ?1")?;
    let mut outbox = conn.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
    for seq in &seqs {
        parked.execute([seq])?;
        outbox.execute([seq])?;
    }
    conn.execute(
        "INSERT INTO retention_marks(name, value) VALUES ('outbox_pruned_through', ?1)
         ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
        [last],
    )?;
    Ok(seqs.len() as u64)
}

fn prune_captures(conn: &Connection, clock: &dyn Clock, r: &Retention) -> Result<u64, StoreError> {
    let n = conn.execute(
        "DELETE FROM captures WHERE id IN (
             SELECT c.id FROM captures c
             WHERE c.last_seen < ?1 AND c.change_id IS NULL
               AND c.id < (SELECT MAX(id) FROM captures l WHERE l.asset = c.asset)
               AND NOT EXISTS (SELECT 1 FROM baselines b WHERE b.capture_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM staging_links s WHERE s.capture_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM drift_events d WHERE d.asset = c.asset
                                  AND d.status = 'open' AND d.observed_digest = c.digest)
             LIMIT ?2)",
        params![cutoff(clock, r.captures), r.batch],
    )?;
    Ok(n as u64)
}

fn prune_snapshots(conn: &Connection, clock: &dyn Clock, r: &Retention) -> Result<u64, StoreError> {
    let n = conn.execute(
        &format!(
            "DELETE FROM snapshots WHERE digest IN (
                 SELECT s.digest FROM snapshots s
                 WHERE s.first_seen < ?1 AND NOT {SNAPSHOT_IN_USE}
                 LIMIT ?2)"
        ),
        params![cutoff(clock, r.captures), r.batch],
    )?;
    Ok(n as u64)
}

impl Store {
    /// One pruning step, in one transaction: at most `batch` outbox rows, captures and
    /// snapshots. Repeat until it returns [`Pruned::is_empty`].
    pub fn prune_step(&mut self, retention: &Retention) -> Result<Pruned, StoreError> {
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pruned = Pruned {
            outbox: prune_outbox(&tx, clock.as_ref(), retention)?,
            captures: prune_captures(&tx, clock.as_ref(), retention)?,
            snapshots: prune_snapshots(&tx, clock.as_ref(), retention)?,
        };
        if pruned.is_empty() {
            // Nothing to write: end the transaction without touching the file.
            tx.rollback()?;
        } else {
            tx.commit()?;
        }
        Ok(pruned)
    }

    /// Records a pruning run in the audit log (one entry per run that deleted something).
    pub fn record_pruned(&mut self, pruned: Pruned) -> Result<(), StoreError> {
        if pruned.is_empty() {
            return Ok(());
        }
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let through = mark(&tx, "outbox_pruned_through")?;
        audit::append(
            &tx,
            clock.as_ref(),
            "retention.pruned",
            None,
            &json!({
                "outbox": pruned.outbox,
                "captures": pruned.captures,
                "snapshots": pruned.snapshots,
                "outbox_pruned_through": through,
            }),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// `Some` when events after `after` were deleted: the pull client lost them and must
    /// resume from [`PrunedPosition::pruned_through`].
    pub fn pruned_position(&self, after: i64) -> Result<Option<PrunedPosition>, StoreError> {
        let through = mark(&self.conn, "outbox_pruned_through")?;
        if after >= through {
            return Ok(None);
        }
        let oldest_seq: i64 = self.conn.query_row(
            "SELECT COALESCE(MIN(seq), 0) FROM outbox WHERE seq > ?1",
            [through],
            |r| r.get(0),
        )?;
        Ok(Some(PrunedPosition {
            pruned_through: through,
            oldest_seq,
        }))
    }

    /// Announces a destination whose oldest unacknowledged event is older than `max_lag`
    /// (`io.otdrift.outbox.lagging`, once per episode), and records in the audit log when it
    /// caught up. Returns the destinations lagging now.
    pub fn check_delivery_lag(
        &mut self,
        destinations: &[String],
        max_lag: TimeDelta,
    ) -> Result<Vec<String>, StoreError> {
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let limit = cutoff(clock.as_ref(), max_lag);
        let mut lagging = Vec::new();
        let mut wrote = false;
        for d in destinations {
            crate::delivery::ensure_cursor(&tx, d)?;
            let (acked, announced): (i64, bool) = tx.query_row(
                "SELECT acked_seq, lag_announced FROM delivery_cursors WHERE destination = ?1",
                [d],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let oldest: Option<(i64, String)> = tx
                .query_row(
                    "SELECT seq, time FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT 1",
                    [acked],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let behind = oldest.as_ref().filter(|(_, time)| *time < limit);
            match (behind, announced) {
                (Some((seq, time)), false) => {
                    let pending: i64 =
                        tx.query_row("SELECT COUNT(*) FROM outbox WHERE seq > ?1", [acked], |r| {
                            r.get(0)
                        })?;
                    let body = json!({
                        "destination": d,
                        "acked_seq": acked,
                        "oldest_pending_seq": seq,
                        "oldest_pending_time": time,
                        "pending": pending,
                        "max_lag": max_lag.num_seconds(),
                    });
                    audit::append_with_event(
                        &tx,
                        clock.as_ref(),
                        "delivery.lagging",
                        event_type::OUTBOX_LAGGING,
                        None,
                        &body,
                    )?;
                    tx.execute(
                        "UPDATE delivery_cursors SET lag_announced = 1 WHERE destination = ?1",
                        [d],
                    )?;
                    wrote = true;
                }
                (None, true) => {
                    audit::append(
                        &tx,
                        clock.as_ref(),
                        "delivery.caught_up",
                        None,
                        &json!({"destination": d, "acked_seq": acked}),
                    )?;
                    tx.execute(
                        "UPDATE delivery_cursors SET lag_announced = 0 WHERE destination = ?1",
                        [d],
                    )?;
                    wrote = true;
                }
                _ => {}
            }
            if behind.is_some() {
                lagging.push(d.clone());
            }
        }
        if wrote {
            tx.commit()?;
        } else {
            tx.rollback()?;
        }
        Ok(lagging)
    }
}
