//! The outbox: events for the central system, written in the same transaction as the state
//! change they report, so an event is never lost and never announces something that did not
//! commit. The agent wraps each row in a CloudEvents envelope when it sends or serves it.

use chrono::{DateTime, Utc};
use otdrift_core::{Clock, format_timestamp};
use rusqlite::{Connection, params};

use crate::model::ts;
use crate::{Store, StoreError};

/// The CloudEvents `type`s (`docs/reference/events.md`).
pub mod event_type {
    /// An asset was seen in a state other than its baseline.
    pub const DRIFT_DETECTED: &str = "io.otdrift.drift.detected";
    /// The asset went back to its baseline.
    pub const DRIFT_RESOLVED: &str = "io.otdrift.drift.resolved";
    /// A baseline was set or moved.
    pub const BASELINE_MOVED: &str = "io.otdrift.baseline.moved";
    /// An approval token was refused.
    pub const APPROVAL_REJECTED: &str = "io.otdrift.approval.rejected";
    /// A pending approval can no longer apply: the baseline moved elsewhere.
    pub const APPROVAL_SUPERSEDED: &str = "io.otdrift.approval.superseded";
    /// A pending approval was withdrawn by an approver.
    pub const APPROVAL_REFUSED: &str = "io.otdrift.approval.refused";
    /// Rejections from one source beyond the per-minute threshold, summarised.
    pub const APPROVAL_REJECTIONS_SUPPRESSED: &str = "io.otdrift.approval.rejections_suppressed";
    /// An asset stopped answering.
    pub const ASSET_UNREACHABLE: &str = "io.otdrift.asset.unreachable";
    /// An asset's last successful capture is older than three schedule periods, and no other
    /// alarm explains it.
    pub const ASSET_STALE: &str = "io.otdrift.asset.stale";
    /// An asset answers again.
    pub const ASSET_REACHABLE: &str = "io.otdrift.asset.reachable";
    /// The controller's operating state (CPU mode, ADS state) changed: reported, not drift.
    pub const ASSET_STATE_CHANGED: &str = "io.otdrift.asset.state_changed";
    /// A capture failed although the device answered (refused, malformed, a safety bound,
    /// busy, the gateway's own config, an internal error): once per failure streak.
    pub const ASSET_COLLECTION_FAILED: &str = "io.otdrift.asset.collection_failed";
    /// A capture succeeded again after a failure streak.
    pub const ASSET_COLLECTION_RECOVERED: &str = "io.otdrift.asset.collection_recovered";
    /// The agent's public key (at every start, and after a rotation with the statement signed
    /// by the previous key).
    pub const AGENT_KEY: &str = "io.otdrift.agent.key";
    /// A staging controller was seen with the content a change approves.
    pub const CHANGE_STAGED: &str = "io.otdrift.change.staged";
    /// An emergency change's review window passed before its review was complete.
    pub const CHANGE_REVIEW_OVERDUE: &str = "io.otdrift.change.review_overdue";
    /// An emergency change's review is complete.
    pub const CHANGE_REVIEWED: &str = "io.otdrift.change.reviewed";
    /// The audit chain's head, published so tampering shows centrally.
    pub const AUDIT_HEAD: &str = "io.otdrift.audit.head";
    /// A destination refused one event on its own (413/422/400): the event is parked, kept
    /// and listed, and the events behind it flow on.
    pub const OUTBOX_PARKED: &str = "io.otdrift.outbox.parked";
    /// A destination's oldest unacknowledged event is more than a day old.
    pub const OUTBOX_LAGGING: &str = "io.otdrift.outbox.lagging";
    /// Items changed on at least 6 of the asset's last 10 polls: reported once, then muted on
    /// their own while every other change is judged as always.
    pub const DRIFT_FLAPPING: &str = "io.otdrift.drift.flapping";
    /// Muted items went 10 polls without a change: judged as always again.
    pub const DRIFT_FLAPPING_ENDED: &str = "io.otdrift.drift.flapping_ended";

    /// An asset's last capture that matched its approved baseline is older than
    /// `[agent] verify_max_age` (once per episode).
    pub const ASSET_VERIFICATION_OVERDUE: &str = "io.otdrift.asset.verification_overdue";
    /// A capture matched the approved baseline again after a verification-overdue episode.
    pub const ASSET_VERIFIED: &str = "io.otdrift.asset.verified";
    /// A setpoint moved inside its approved envelope (at most one per item per minute).
    pub const SETPOINT_ADJUSTED: &str = "io.otdrift.setpoint.adjusted";

    /// Every type above, as `docs/reference/events.md` lists them.
    pub const ALL: [&str; 25] = [
        DRIFT_DETECTED,
        DRIFT_RESOLVED,
        BASELINE_MOVED,
        APPROVAL_REJECTED,
        APPROVAL_SUPERSEDED,
        APPROVAL_REFUSED,
        APPROVAL_REJECTIONS_SUPPRESSED,
        ASSET_UNREACHABLE,
        ASSET_STALE,
        ASSET_REACHABLE,
        ASSET_STATE_CHANGED,
        ASSET_COLLECTION_FAILED,
        ASSET_COLLECTION_RECOVERED,
        AGENT_KEY,
        CHANGE_STAGED,
        CHANGE_REVIEW_OVERDUE,
        CHANGE_REVIEWED,
        AUDIT_HEAD,
        OUTBOX_PARKED,
        OUTBOX_LAGGING,
        DRIFT_FLAPPING,
        DRIFT_FLAPPING_ENDED,
        ASSET_VERIFICATION_OVERDUE,
        ASSET_VERIFIED,
        SETPOINT_ADJUSTED,
    ];
}

/// One outbox row.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    /// Position in the outbox; the HTTP API's cursor.
    pub seq: i64,
    /// The CloudEvents `id`, fixed at insertion so retries carry the same id.
    pub id: String,
    /// The CloudEvents `type`.
    pub event_type: String,
    /// The asset, when the event concerns one.
    pub asset: Option<String>,
    /// When the reported change happened.
    pub time: DateTime<Utc>,
    /// The event's `data`.
    pub data: serde_json::Value,
}

/// Queues an event inside the caller's transaction.
pub(crate) fn enqueue(
    conn: &Connection,
    clock: &dyn Clock,
    event_type: &str,
    asset: Option<&str>,
    data: &serde_json::Value,
) -> Result<i64, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO outbox(event_id, type, asset, time, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            id,
            event_type,
            asset,
            format_timestamp(clock.now()),
            data.to_string()
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// An outbox row as SQLite returns it: seq, id, type, asset, time, data.
type RawOutbox = (i64, String, String, Option<String>, String, String);

/// The columns [`row`] reads, qualified so that joins can use them.
pub(crate) const OUTBOX_COLUMNS: &str =
    "outbox.seq, outbox.event_id, outbox.type, outbox.asset, outbox.time, outbox.data";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawOutbox> {
    r.try_into()
}

/// Turns a raw row into an event, refusing unreadable data.
fn parse(raw: RawOutbox) -> Result<OutboxEvent, StoreError> {
    let (seq, id, event_type, asset, time, data) = raw;
    Ok(OutboxEvent {
        seq,
        id,
        event_type,
        asset,
        time: ts(&time)?,
        data: serde_json::from_str(&data)
            .map_err(|e| StoreError::Corrupt(format!("outbox event {seq}: {e}")))?,
    })
}

/// Outbox rows selected by `tail` (FROM clause tail: joins, WHERE, ORDER and LIMIT).
pub(crate) fn select(
    conn: &Connection,
    tail: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox {tail}"))?;
    let rows = stmt.query_map(params, row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(parse(r?)?);
    }
    Ok(out)
}

impl Store {
    /// Events after `after_seq`, oldest first, at most `limit`.
    pub fn events_after(&self, after_seq: i64, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        select(
            &self.conn,
            "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after_seq, limit],
        )
    }

    /// Queues an event on its own transaction (for events that change no other state).
    pub fn enqueue_event(
        &mut self,
        event_type: &str,
        asset: Option<&str>,
        data: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let seq = enqueue(&tx, self.clock.as_ref(), event_type, asset, data)?;
        tx.commit()?;
        Ok(seq)
    }
}

impl Store {
    /// The highest sequence number in the outbox (0 when empty).
    pub fn last_event_seq(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))?)
    }
}
