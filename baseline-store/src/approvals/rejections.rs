//! Rejected tokens: recorded one by one up to [`REJECTIONS_PER_MINUTE`] per source and
//! minute, then counted and summarised (see the module documentation of `approvals`).

use otdrift_core::{Clock, format_timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::audit;
use crate::events::event_type;
use crate::model::ts;
use crate::{Store, StoreError};

/// Rejections per source and minute that are recorded one by one; beyond this they are
/// counted and summarised (`approval.rejections_suppressed`) once per minute.
pub const REJECTIONS_PER_MINUTE: i64 = 10;

/// Records a rejection: an audit entry and an `approval.rejected` event, unless `source` has
/// already had [`REJECTIONS_PER_MINUTE`] this minute, in which case it is only counted (and
/// the count is summarised when the minute is over).
pub(crate) fn rejection(
    conn: &Connection,
    clock: &dyn Clock,
    source: &str,
    code: &str,
    message: &str,
    details: &serde_json::Value,
    asset: Option<&str>,
) -> Result<(), StoreError> {
    let now = clock.now();
    let window: Option<(String, i64, i64)> = conn
        .query_row(
            "SELECT window_start, count, suppressed FROM rejection_windows WHERE source = ?1",
            [source],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let count = match window {
        Some((start, count, suppressed)) if now - ts(&start)? < chrono::TimeDelta::minutes(1) => {
            conn.execute(
                "UPDATE rejection_windows SET count = count + 1,
                     suppressed = suppressed + ?2 WHERE source = ?1",
                params![source, i64::from(count >= REJECTIONS_PER_MINUTE)],
            )?;
            let _ = suppressed;
            count + 1
        }
        previous => {
            if let Some((start, _, suppressed)) = previous
                && suppressed > 0
            {
                summarise(conn, clock, source, &start, suppressed)?;
            }
            conn.execute(
                "INSERT INTO rejection_windows(source, window_start, count, suppressed)
                 VALUES (?1, ?2, 1, 0)
                 ON CONFLICT(source) DO UPDATE SET window_start = excluded.window_start,
                     count = 1, suppressed = 0",
                params![source, format_timestamp(now)],
            )?;
            1
        }
    };
    if count > REJECTIONS_PER_MINUTE {
        return Ok(());
    }
    let body = json!({
        "reason": code,
        "message": message,
        "source": source,
        "token": details,
    });
    audit::append_with_event(
        conn,
        clock,
        "approval.rejected",
        event_type::APPROVAL_REJECTED,
        asset,
        &body,
    )?;
    Ok(())
}

/// Records `refusal` of a token about `asset` as a [`rejection`] and commits the transaction
/// that found it: how submitting, withdrawing and reviewing all end when they refuse.
pub(crate) fn refuse(
    tx: rusqlite::Transaction<'_>,
    clock: &dyn Clock,
    source: &str,
    refusal: &super::ApprovalRefusal,
    details: &serde_json::Value,
    asset: &str,
) -> Result<(), StoreError> {
    rejection(
        &tx,
        clock,
        source,
        refusal.code(),
        &refusal.to_string(),
        details,
        Some(asset),
    )?;
    tx.commit()?;
    Ok(())
}

/// One audit entry and event for the rejections of `source` that were only counted.
fn summarise(
    conn: &Connection,
    clock: &dyn Clock,
    source: &str,
    window_start: &str,
    suppressed: i64,
) -> Result<(), StoreError> {
    let body = json!({
        "source": source,
        "window_start": window_start,
        "recorded": REJECTIONS_PER_MINUTE,
        "suppressed": suppressed,
    });
    audit::append_with_event(
        conn,
        clock,
        "approval.rejections_suppressed",
        event_type::APPROVAL_REJECTIONS_SUPPRESSED,
        None,
        &body,
    )?;
    Ok(())
}

impl Store {
    /// Records a token the agent refused before it reached the store (bad signature, unknown
    /// approver, ...): an audit entry and an `approval.rejected` event, together, rate-limited
    /// per `source` (see the module documentation).
    pub fn record_rejection(
        &mut self,
        source: &str,
        code: &str,
        message: &str,
        details: &serde_json::Value,
        asset: Option<&str>,
    ) -> Result<(), StoreError> {
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        rejection(&tx, clock.as_ref(), source, code, message, details, asset)?;
        tx.commit()?;
        Ok(())
    }

    /// Summarises the rejections counted but not recorded in minutes that are over (the
    /// daemon calls this every minute; a later rejection from the same source does it too).
    pub fn flush_rejection_summaries(&mut self) -> Result<usize, StoreError> {
        let clock = self.clock.clone();
        let cutoff = format_timestamp(clock.now() - chrono::TimeDelta::minutes(1));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let due: Vec<(String, String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT source, window_start, suppressed FROM rejection_windows
                 WHERE suppressed > 0 AND window_start <= ?1",
            )?;
            let rows = stmt.query_map([&cutoff], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (source, start, suppressed) in &due {
            summarise(&tx, clock.as_ref(), source, start, *suppressed)?;
            tx.execute("DELETE FROM rejection_windows WHERE source = ?1", [source])?;
        }
        tx.commit()?;
        Ok(due.len())
    }
}
