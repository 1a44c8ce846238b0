//! Read-only queries for the command line, the API and evidence packs.

use otdrift_core::{Digest, Snapshot};
use rusqlite::{OptionalExtension, params};

use crate::ingest::{
    BASELINE_COLUMNS, CAPTURE_COLUMNS, DRIFT_COLUMNS, DriftRaw, baseline_row, capture_row,
    current_baseline, drift_row, load_snapshot, parse_baseline,
};
use crate::model::{AssetRow, Baseline, CaptureRow, DriftEvent, DriftFilter, opt_ts};
use crate::{Store, StoreError};

impl Store {
    /// The snapshot with this digest, checked against it.
    pub fn snapshot(&self, digest: &Digest) -> Result<Snapshot, StoreError> {
        load_snapshot(&self.conn, digest)
    }

    /// Whether a snapshot with this digest is stored.
    pub fn has_snapshot(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM snapshots WHERE digest = ?1",
                [digest.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The asset's current baseline.
    pub fn current_baseline(&self, asset: &str) -> Result<Option<Baseline>, StoreError> {
        current_baseline(&self.conn, asset)
    }

    /// Every baseline the asset has had, oldest first.
    pub fn baseline_history(&self, asset: &str) -> Result<Vec<Baseline>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {BASELINE_COLUMNS} FROM baselines WHERE asset = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([asset], baseline_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(parse_baseline(row?)?);
        }
        Ok(out)
    }

    /// The asset's most recent capture.
    pub fn latest_capture(&self, asset: &str) -> Result<Option<CaptureRow>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {CAPTURE_COLUMNS} FROM captures WHERE asset = ?1 ORDER BY id DESC LIMIT 1"
                ),
                [asset],
                capture_row,
            )
            .optional()?
            .map(|raw| raw.parse())
            .transpose()
            .map(|row| {
                row.map(|mut row| {
                    self.overlay_capture(&mut row);
                    row
                })
            })
    }

    /// The asset's captures, newest first, at most `limit`.
    pub fn captures(&self, asset: &str, limit: u32) -> Result<Vec<CaptureRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CAPTURE_COLUMNS} FROM captures WHERE asset = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![asset, limit], capture_row)?;
        let mut out = Vec::new();
        for row in rows {
            let mut row = row?.parse()?;
            self.overlay_capture(&mut row);
            out.push(row);
        }
        Ok(out)
    }

    /// The captures recorded for a change id, oldest first.
    pub fn captures_for_change(&self, change_id: &str) -> Result<Vec<CaptureRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CAPTURE_COLUMNS} FROM captures WHERE change_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([change_id], capture_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.parse()?);
        }
        Ok(out)
    }

    /// The runtime facts stored with a capture (never hashed).
    pub fn capture_runtime(&self, capture_id: i64) -> Result<serde_json::Value, StoreError> {
        let text: String = match self.pending_runtime(capture_id) {
            Some(text) => text,
            None => self.conn.query_row(
                "SELECT runtime FROM captures WHERE id = ?1",
                [capture_id],
                |r| r.get(0),
            )?,
        };
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("capture {capture_id} runtime: {e}")))
    }

    /// Drift events, newest first.
    pub fn drift_events(&self, filter: &DriftFilter) -> Result<Vec<DriftEvent>, StoreError> {
        let mut sql = format!("SELECT {DRIFT_COLUMNS} FROM drift_events WHERE 1 = 1");
        if filter.asset.is_some() {
            sql.push_str(" AND asset = ?1");
        }
        if filter.open_only {
            sql.push_str(" AND status = 'open'");
        }
        sql.push_str(" ORDER BY id DESC");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows: Vec<DriftRaw> = match &filter.asset {
            Some(asset) => stmt
                .query_map([asset], drift_row)?
                .collect::<Result<_, _>>()?,
            None => stmt.query_map([], drift_row)?.collect::<Result<_, _>>()?,
        };
        rows.into_iter().map(DriftRaw::parse).collect()
    }

    /// One drift event by id.
    pub fn drift_event(&self, id: i64) -> Result<Option<DriftEvent>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {DRIFT_COLUMNS} FROM drift_events WHERE id = ?1"),
                [id],
                drift_row,
            )
            .optional()?
            .map(DriftRaw::parse)
            .transpose()
    }

    /// The newest `limit` drift events of every asset, newest first.
    pub fn recent_drift(&self, limit: u32) -> Result<Vec<DriftEvent>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DRIFT_COLUMNS} FROM drift_events ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows: Vec<DriftRaw> = stmt
            .query_map([limit], drift_row)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(DriftRaw::parse).collect()
    }

    /// How many drift events are open for the asset.
    pub fn open_drift_count(&self, asset: &str) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM drift_events WHERE asset = ?1 AND status = 'open'",
            [asset],
            |r| r.get(0),
        )?)
    }

    /// What the store knows about the asset's reachability and failures.
    pub fn asset(&self, id: &str) -> Result<Option<AssetRow>, StoreError> {
        // Quiet polls move the latest capture row only (`seen.rs`).
        let latest = crate::seen::LATEST_SEEN;
        self.conn
            .prepare_cached(&format!(
                "SELECT id, protocol, address, reachable, {}, {}, last_error,
                        failing_since, failure_reason, failure_count, stale_since
                 FROM assets a WHERE id = ?1",
                crate::seen::later("a.last_attempt", latest),
                crate::seen::later("a.last_capture", latest),
            ))?
            .query_row([id], |r| {
                Ok((
                    AssetRow {
                        id: r.get(0)?,
                        protocol: r.get(1)?,
                        address: r.get(2)?,
                        reachable: r.get::<_, Option<i64>>(3)?.map(|v| v != 0),
                        last_attempt: None,
                        last_capture: None,
                        last_error: r.get(6)?,
                        failing_since: None,
                        failure_reason: r.get(8)?,
                        failure_count: r.get::<_, i64>(9)?.max(0) as u64,
                        stale_since: None,
                    },
                    [
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(10)?,
                    ],
                ))
            })
            .optional()?
            .map(|(mut row, [attempt, capture, failing, stale])| {
                row.stale_since = opt_ts(stale)?;
                row.last_attempt = opt_ts(attempt)?;
                row.last_capture = opt_ts(capture)?;
                row.failing_since = opt_ts(failing)?;
                self.overlay_asset(&mut row);
                Ok(row)
            })
            .transpose()
    }
}

/// What a drift record is about, without its (possibly huge) list of changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftHeader {
    /// The drift id.
    pub id: i64,
    /// The asset.
    pub asset: String,
    /// The baseline it drifted from.
    pub baseline_digest: Digest,
    /// The state last observed while open; the stored changes are between these two.
    pub observed_digest: Digest,
    /// How many changes the record holds.
    pub changes_total: u64,
}

/// One page of a drift's changes.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftChanges {
    /// The drift.
    pub header: DriftHeader,
    /// The changes from the requested position on, as stored (the `changes` items of
    /// `drift.detected`).
    pub changes: Vec<serde_json::Value>,
}

impl Store {
    /// The drift record `id` without its changes, `None` when there is none.
    pub fn drift_header(&self, id: i64) -> Result<Option<DriftHeader>, StoreError> {
        let raw: Option<(String, String, String, i64)> = self
            .conn
            .query_row(
                "SELECT asset, baseline_digest, observed_digest, json_array_length(changes)
                 FROM drift_events WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        raw.map(|(asset, baseline, observed, total)| {
            Ok(DriftHeader {
                id,
                asset,
                baseline_digest: crate::model::digest(&baseline)?,
                observed_digest: crate::model::digest(&observed)?,
                changes_total: u64::try_from(total).unwrap_or(0),
            })
        })
        .transpose()
    }

    /// The changes of drift `id` from position `after` (0-based) on, at most `limit`, in the
    /// order of the drift record (the order `drift.detected` carries them in). SQLite walks
    /// the stored JSON, so a page of a million-change drift does not build the whole list in
    /// memory. `None` when there is no such drift.
    pub fn drift_changes(
        &self,
        id: i64,
        after: u64,
        limit: u32,
    ) -> Result<Option<DriftChanges>, StoreError> {
        let Some(header) = self.drift_header(id)? else {
            return Ok(None);
        };
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(
            "SELECT json_each.value FROM drift_events, json_each(drift_events.changes)
             WHERE drift_events.id = ?1 AND json_each.key >= ?2
             ORDER BY json_each.key LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![id, after, limit], |r| r.get::<_, String>(0))?;
        let mut changes = Vec::new();
        for row in rows {
            let text = row?;
            changes.push(
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("drift {id} changes: {e}")))?,
            );
        }
        Ok(Some(DriftChanges { header, changes }))
    }
}
