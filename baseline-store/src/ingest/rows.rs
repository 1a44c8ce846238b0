//! Reading and writing the rows a capture touches: captures, baselines, snapshots, drift.

use super::*;

pub(crate) const CAPTURE_COLUMNS: &str =
    "id, asset, digest, first_seen, last_seen, seen_count, change_id, phase, duration_ms, requests,
     judged_digest";

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
        judged_digest: r.get(10)?,
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
    judged_digest: Option<String>,
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
            judged_digest: self
                .judged_digest
                .as_deref()
                .map(crate::model::digest)
                .transpose()?,
        })
    }
}

pub(crate) fn capture_by_id(conn: &Connection, id: i64) -> Result<CaptureRow, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {CAPTURE_COLUMNS} FROM captures WHERE id = ?1"
    ))?
    .query_row([id], capture_row)?
    .parse()
}

pub(crate) const BASELINE_COLUMNS: &str =
    "id, asset, digest, provisional, set_at, reason, change_id, envelope, capture_spec";

/// A baseline row as SQLite returns it, in [`BASELINE_COLUMNS`] order.
pub(crate) type RawBaseline = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) fn baseline_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawBaseline> {
    r.try_into()
}

pub(crate) fn parse_baseline(raw: RawBaseline) -> Result<Baseline, StoreError> {
    let (id, asset, digest, provisional, set_at, reason, change_id, envelope, capture_spec) = raw;
    Ok(Baseline {
        id,
        asset,
        digest: crate::model::digest(&digest)?,
        provisional: provisional != 0,
        set_at: crate::model::ts(&set_at)?,
        reason,
        change_id,
        envelope: crate::envelope::from_column(envelope.as_deref())?,
        capture_spec: capture_spec
            .as_deref()
            .map(crate::model::digest)
            .transpose()?,
    })
}

pub(crate) fn current_baseline(
    conn: &Connection,
    asset: &str,
) -> Result<Option<Baseline>, StoreError> {
    // Prepared once per connection: every poll asks for it.
    conn.prepare_cached(&format!(
        "SELECT {BASELINE_COLUMNS} FROM baselines WHERE asset = ?1 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row([asset], baseline_row)
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
    // The envelope in force carries over; an approval with its own claim replaces it. The
    // state was read as the capture that saw it was (else as the previous baseline's).
    conn.execute(
        "INSERT INTO baselines(asset, digest, provisional, set_at, reason, change_id, capture_id,
             envelope, capture_spec)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
                 (SELECT envelope FROM baselines WHERE asset = ?1 ORDER BY id DESC LIMIT 1),
                 COALESCE((SELECT capture_spec FROM captures WHERE id = ?7),
                          (SELECT capture_spec FROM baselines WHERE asset = ?1
                           ORDER BY id DESC LIMIT 1)))",
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
    baseline_by_id(conn, conn.last_insert_rowid())
}

/// A baseline row by id.
pub(crate) fn baseline_by_id(conn: &Connection, id: i64) -> Result<Baseline, StoreError> {
    parse_baseline(conn.query_row(
        &format!("SELECT {BASELINE_COLUMNS} FROM baselines WHERE id = ?1"),
        [id],
        baseline_row,
    )?)
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

pub(crate) const DRIFT_COLUMNS: &str = "id, asset, status, severity, baseline_digest, observed_digest, first_seen, last_seen, seen_count, closed_at, change_id, changes, policy_reason, reason";

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
    reason: String,
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
        reason: r.get(13)?,
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
            reason: self.reason.parse().map_err(StoreError::Corrupt)?,
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

pub(super) fn drift_by_id(conn: &Connection, id: i64) -> Result<DriftEvent, StoreError> {
    conn.query_row(
        &format!("SELECT {DRIFT_COLUMNS} FROM drift_events WHERE id = ?1"),
        [id],
        drift_row,
    )?
    .parse()
}
