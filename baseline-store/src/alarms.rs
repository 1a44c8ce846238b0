//! Alarms about an asset's collection, as opposed to its state: unreachable, a failed
//! collection, stale; their recoveries; and maintenance windows that suppress them.
//!
//! ```text
//!                 announced?  in maintenance?
//! unreachable     no          no       ──► asset.unreachable (once per outage)
//!                 no          yes      ──► audit entry only; announced at the first failure
//!                                          after the window if the outage lasts
//! collection      no          no       ──► asset.collection_failed (once per streak)
//! failed          no          yes      ──► audit entry only, likewise
//! stale           -           -        ──► asset.stale, unless an unreachable or
//!                                          collection_failed alarm already describes the
//!                                          outage (then folded into it: audit entry only),
//!                                          or the asset is in maintenance
//! success                              ──► asset.reachable / collection_recovered, for the
//!                                          alarms that were announced
//! ```
//!
//! Drift is never suppressed: a maintenance window is when changes happen, and each one is
//! still reported.

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{Clock, Digest, format_timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::audit;
use crate::events::{enqueue, event_type};
use crate::model::opt_ts;
use crate::{Store, StoreError};

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
    /// Why alarms are suppressed now (a maintenance window), if they are.
    pub maintenance: Option<&'a str>,
}

/// What recording a failure did to the asset's alarms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// The alarm was announced now (an event went out).
    Announced,
    /// The alarm started but a maintenance window suppressed it (audit entry only).
    Suppressed,
    /// The outage or streak was already known: only counted.
    Continues,
}

/// An explicit maintenance window (`otdrift maintenance ASSET --for 2h`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// The asset.
    pub asset: String,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// Who opened it (`command-line`, ...).
    pub source: String,
}

impl Store {
    /// Records a capture that reached the device but failed: refused, malformed, a safety
    /// bound, busy, the gateway's config, an internal error. Nothing of it is state: the
    /// error is kept for `status`, reachability is unchanged, nothing is drift. The first
    /// failure of a streak is an audit entry and an `asset.collection_failed` event (outside
    /// maintenance; see the module documentation); later failures of the streak only count.
    pub fn record_failure(&mut self, failure: &FailedCollection<'_>) -> Result<Alarm, StoreError> {
        let now_text = format_timestamp(self.clock.now());
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let was: Option<(Option<String>, i64)> = tx
            .query_row(
                "SELECT failing_since, failure_announced FROM assets WHERE id = ?1",
                [failure.asset],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let starts = !matches!(was, Some((Some(_), _)));
        let announced = matches!(was, Some((_, 1)));
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
        let since: Option<String> = tx.query_row(
            "SELECT failing_since FROM assets WHERE id = ?1",
            [failure.asset],
            |r| r.get(0),
        )?;
        let body = json!({
            "asset": failure.asset,
            "address": failure.address,
            "reason": failure.reason,
            "request": failure.request,
            "detail": failure.detail,
            "message": failure.message,
            "observed_digest": failure.observed.map(|d| d.to_string()),
            "since": since,
        });
        let alarm = match (announced, failure.maintenance, starts) {
            (true, _, _) => Alarm::Continues,
            (false, Some(window), true) => {
                let mut body = body;
                body["suppressed"] = json!(window);
                audit::append(
                    &tx,
                    clock.as_ref(),
                    "asset.collection_failed",
                    Some(failure.asset),
                    &body,
                )?;
                Alarm::Suppressed
            }
            (false, Some(_), false) => Alarm::Continues,
            (false, None, _) => {
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
                tx.execute(
                    "UPDATE assets SET failure_announced = 1 WHERE id = ?1",
                    [failure.asset],
                )?;
                Alarm::Announced
            }
        };
        tx.commit()?;
        Ok(alarm)
    }

    /// Records a failed attempt to reach an asset. The first of an outage is announced as an
    /// `asset.unreachable` event (outside maintenance; see the module documentation): one per
    /// outage, not one per failed poll.
    pub fn record_unreachable(
        &mut self,
        asset: &str,
        protocol: &str,
        address: &str,
        error: &str,
        maintenance: Option<&str>,
    ) -> Result<Alarm, StoreError> {
        let now_text = format_timestamp(self.clock.now());
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let was: Option<(Option<i64>, i64)> = tx
            .query_row(
                "SELECT reachable, unreachable_announced FROM assets WHERE id = ?1",
                [asset],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let starts = !matches!(was, Some((Some(0), _)));
        let announced = matches!(was, Some((_, 1)));
        tx.execute(
            "INSERT INTO assets(id, protocol, address, reachable, last_attempt, last_error, unreachable_since)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?4)
             ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol, address = excluded.address,
                 reachable = 0, last_attempt = excluded.last_attempt, last_error = excluded.last_error,
                 unreachable_since = COALESCE(assets.unreachable_since, excluded.unreachable_since)",
            params![asset, protocol, address, now_text, error],
        )?;
        let since: Option<String> = tx.query_row(
            "SELECT unreachable_since FROM assets WHERE id = ?1",
            [asset],
            |r| r.get(0),
        )?;
        let data = json!({"asset": asset, "address": address, "error": error, "since": since});
        let alarm = match (announced, maintenance, starts) {
            (true, _, _) => Alarm::Continues,
            (false, Some(window), true) => {
                let mut body = data;
                body["suppressed"] = json!(window);
                audit::append(&tx, clock.as_ref(), "asset.unreachable", Some(asset), &body)?;
                Alarm::Suppressed
            }
            (false, Some(_), false) => Alarm::Continues,
            (false, None, _) => {
                enqueue(
                    &tx,
                    clock.as_ref(),
                    event_type::ASSET_UNREACHABLE,
                    Some(asset),
                    &data,
                )?;
                tx.execute(
                    "UPDATE assets SET unreachable_announced = 1 WHERE id = ?1",
                    [asset],
                )?;
                Alarm::Announced
            }
        };
        tx.commit()?;
        Ok(alarm)
    }

    /// Checks whether the asset's last successful capture is older than `threshold` (three
    /// schedule periods), `reference` standing in for it before any capture: the first time,
    /// `asset.stale` is announced, unless an unreachable or collection-failed alarm already
    /// describes the outage (folded into it) or the asset is in maintenance. Returns whether
    /// the asset is stale.
    pub fn check_stale(
        &mut self,
        asset: &str,
        threshold: TimeDelta,
        reference: DateTime<Utc>,
        maintenance: Option<&str>,
    ) -> Result<bool, StoreError> {
        // The last capture may be a quiet poll not written yet.
        self.flush_seen()?;
        let clock = self.clock.clone();
        let now = clock.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        type Row = (Option<String>, Option<String>, i64, i64);
        // Quiet polls move the latest capture row only (`seen.rs`).
        let row: Option<Row> = tx
            .query_row(
                &format!(
                    "SELECT {}, stale_since, unreachable_announced, failure_announced
                     FROM assets a WHERE id = ?1",
                    crate::seen::later("a.last_capture", crate::seen::LATEST_SEEN)
                ),
                [asset],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (last, stale_since, unreachable, failing) = row.unwrap_or((None, None, 0, 0));
        let last = opt_ts(last)?.unwrap_or(reference);
        if now - last <= threshold {
            tx.commit()?;
            return Ok(false);
        }
        if stale_since.is_some() {
            tx.commit()?;
            return Ok(true);
        }
        let since = format_timestamp(last + threshold);
        tx.execute(
            "INSERT INTO assets(id, protocol, address, stale_since) VALUES (?1, '', '', ?2)
             ON CONFLICT(id) DO UPDATE SET stale_since = excluded.stale_since",
            params![asset, since],
        )?;
        let mut body = json!({
            "asset": asset,
            "last_capture": format_timestamp(last),
            "stale_after": crate::changes::human(threshold),
            "since": since,
        });
        let folded = match (unreachable, failing) {
            (1, _) => Some("asset.unreachable"),
            (_, 1) => Some("asset.collection_failed"),
            _ => None,
        };
        match (folded, maintenance) {
            (Some(into), _) => {
                body["folded_into"] = json!(into);
                audit::append(&tx, clock.as_ref(), "asset.stale", Some(asset), &body)?;
            }
            (None, Some(window)) => {
                body["suppressed"] = json!(window);
                audit::append(&tx, clock.as_ref(), "asset.stale", Some(asset), &body)?;
            }
            (None, None) => {
                audit::append_with_event(
                    &tx,
                    clock.as_ref(),
                    "asset.stale",
                    event_type::ASSET_STALE,
                    Some(asset),
                    &body,
                )?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// Opens a maintenance window for `asset` from now until `until`, with an audit entry.
    pub fn start_maintenance(
        &mut self,
        asset: &str,
        until: DateTime<Utc>,
        reason: &str,
        source: &str,
    ) -> Result<MaintenanceWindow, StoreError> {
        let clock = self.clock.clone();
        let now = clock.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO maintenance(asset, starts_at, ends_at, reason, source)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                asset,
                format_timestamp(now),
                format_timestamp(until),
                reason,
                source
            ],
        )?;
        audit::append(
            &tx,
            clock.as_ref(),
            "maintenance.started",
            Some(asset),
            &json!({
                "asset": asset,
                "starts_at": format_timestamp(now),
                "ends_at": format_timestamp(until),
                "reason": reason,
                "source": source,
            }),
        )?;
        tx.commit()?;
        Ok(MaintenanceWindow {
            asset: asset.to_owned(),
            starts_at: now,
            ends_at: until,
            reason: reason.to_owned(),
            source: source.to_owned(),
        })
    }

    /// Ends the asset's open maintenance windows now, with an audit entry.
    pub fn end_maintenance(&mut self, asset: &str, source: &str) -> Result<usize, StoreError> {
        let clock = self.clock.clone();
        let now = format_timestamp(clock.now());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE maintenance SET ends_at = ?2 WHERE asset = ?1 AND ends_at > ?2",
            params![asset, now],
        )?;
        if n > 0 {
            audit::append(
                &tx,
                clock.as_ref(),
                "maintenance.ended",
                Some(asset),
                &json!({"asset": asset, "ended_at": now, "source": source}),
            )?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// The asset's maintenance window open now, if any.
    pub fn maintenance_now(&self, asset: &str) -> Result<Option<MaintenanceWindow>, StoreError> {
        let now = format_timestamp(self.clock.now());
        let row: Option<(String, String, String, String)> = self
            .conn
            .query_row(
                "SELECT starts_at, ends_at, reason, source FROM maintenance
                 WHERE asset = ?1 AND starts_at <= ?2 AND ends_at > ?2
                 ORDER BY ends_at DESC LIMIT 1",
                params![asset, now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(s, e, reason, source)| {
            Ok(MaintenanceWindow {
                asset: asset.to_owned(),
                starts_at: crate::model::ts(&s)?,
                ends_at: crate::model::ts(&e)?,
                reason,
                source,
            })
        })
        .transpose()
    }
}

/// A successful capture: the asset is reachable, its collection works, it is fresh. The
/// alarms that were announced get their recovery events; suppressed ones only an audit entry.
pub(crate) fn mark_reachable(
    conn: &Connection,
    clock: &dyn Clock,
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
        i64,
        i64,
        Option<String>,
    );
    let was: Option<Was> = conn
        .query_row(
            "SELECT reachable, unreachable_since, failing_since, failure_reason, failure_count,
                    unreachable_announced, failure_announced, stale_since
             FROM assets WHERE id = ?1",
            [asset],
            |r| r.try_into(),
        )
        .optional()?;
    conn.execute(
        "INSERT INTO assets(id, protocol, address, reachable, last_attempt, last_capture)
         VALUES (?1, ?2, ?3, 1, ?4, ?4)
         ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol, address = excluded.address,
             reachable = 1, last_attempt = excluded.last_attempt,
             last_capture = excluded.last_capture, last_error = NULL, unreachable_since = NULL,
             failing_since = NULL, failure_reason = NULL, failure_count = 0,
             unreachable_announced = 0, failure_announced = 0, stale_since = NULL",
        params![asset, protocol, address, now],
    )?;
    let Some((reachable, unreachable_since, failing, reason, failures, u_ann, f_ann, stale)) = was
    else {
        return Ok(());
    };
    if let Some(failing_since) = failing {
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
        if f_ann == 1 {
            enqueue(
                conn,
                clock,
                event_type::ASSET_COLLECTION_RECOVERED,
                Some(asset),
                &body,
            )?;
        }
    }
    // Only an announced outage ends with `asset.reachable`; a first contact is not news.
    if reachable == Some(0) && u_ann == 1 {
        enqueue(
            conn,
            clock,
            event_type::ASSET_REACHABLE,
            Some(asset),
            &json!({"asset": asset, "address": address, "unreachable_since": unreachable_since, "since": now}),
        )?;
    }
    if let Some(stale_since) = stale {
        audit::append(
            conn,
            clock,
            "asset.fresh",
            Some(asset),
            &json!({"asset": asset, "stale_since": stale_since, "since": now}),
        )?;
    }
    Ok(())
}
