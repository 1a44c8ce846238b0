//! Flapping items: a "setpoint" that really holds a process value changes on most polls. Left
//! alone it would add a snapshot, a capture row, an audit entry and a `drift.detected` event
//! with its change list on every poll, until the gateway's disk is full.
//!
//! Each item that changed recently has a row with a ten-bit mask: bit 0 is "changed on the
//! latest poll", bit 9 "changed ten polls ago". A poll shifts every mask of its asset by one and
//! sets bit 0 of the items that changed since the previous poll. An item with at least
//! [`THRESHOLD`] bits set is **flapping**: reported once (`io.otdrift.drift.flapping`) and then
//! muted on its own. A poll whose only changes are muted items is folded into the asset's last
//! capture row and its one open drift, without a new row, audit entry or event
//! ([`crate::ingest`]); every other change on the asset is judged as always. After
//! [`WINDOW`] polls without a change the mute lifts (`io.otdrift.drift.flapping_ended`) and the
//! open drift, if any, is announced again with the state it reached meanwhile.
//!
//! A poll that changes more than [`MAX_TRACKED`] items at once is a project change, not a
//! process value: its items are not tracked (the masks of tracked items still shift).

use std::collections::BTreeSet;

use otdrift_core::{Clock, Diff};
use rusqlite::{Connection, params};
use serde_json::json;

use crate::StoreError;
use crate::audit;
use crate::events::event_type;

/// How many of the last polls are looked at.
pub const WINDOW: u32 = 10;
/// How many of them must change an item for it to be flapping.
pub const THRESHOLD: u32 = 6;
/// The most items tracked per poll; a poll changing more is not flapping.
pub const MAX_TRACKED: usize = 1024;
/// The most items named in one flapping event; the rest are counted.
const MAX_NAMED: usize = 100;

const MASK: i64 = (1 << WINDOW) - 1;

/// What one poll did to an asset's flapping items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flaps {
    /// The items muted after this poll.
    pub muted: BTreeSet<String>,
    /// Items that started flapping on this poll, with how many of the last polls changed them.
    pub started: Vec<(String, u32)>,
    /// Items whose mute lifted on this poll.
    pub ended: Vec<String>,
}

impl Flaps {
    /// Whether every change of `changed` is a muted item (and there is at least one).
    pub fn only_muted(&self, changed: &[String]) -> bool {
        !changed.is_empty() && changed.iter().all(|p| self.muted.contains(p))
    }
}

/// The item paths that differ between the previous poll and this one.
pub(crate) fn changed_paths(diff: &Diff) -> Vec<String> {
    diff.changes.iter().map(|c| c.path.clone()).collect()
}

/// Shifts the asset's masks by one poll, marks `changed`, and mutes or unmutes items.
pub(crate) fn observe(
    conn: &Connection,
    asset: &str,
    changed: &[String],
    now_text: &str,
) -> Result<Flaps, StoreError> {
    // Writes nothing for an asset with no recent changes: no rows, no pages touched.
    conn.execute(
        "UPDATE item_flaps SET mask = (mask << 1) & ?2 WHERE asset = ?1",
        params![asset, MASK],
    )?;
    if changed.len() <= MAX_TRACKED {
        let mut mark = conn.prepare_cached(
            "INSERT INTO item_flaps(asset, path, mask) VALUES (?1, ?2, 1)
             ON CONFLICT(asset, path) DO UPDATE SET mask = mask | 1",
        )?;
        for path in changed {
            mark.execute(params![asset, path])?;
        }
    }
    let mut flaps = Flaps::default();
    let mut rows = conn.prepare_cached(
        "SELECT path, mask, muted_at IS NOT NULL FROM item_flaps WHERE asset = ?1",
    )?;
    let tracked = rows
        .query_map([asset], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (path, mask, muted) in tracked {
        let count = (mask & MASK).count_ones();
        if muted && mask == 0 {
            flaps.ended.push(path);
        } else if muted {
            flaps.muted.insert(path);
        } else if count >= THRESHOLD {
            flaps.started.push((path.clone(), count));
            flaps.muted.insert(path);
        }
    }
    for (path, _) in &flaps.started {
        conn.execute(
            "UPDATE item_flaps SET muted_at = ?3 WHERE asset = ?1 AND path = ?2",
            params![asset, path, now_text],
        )?;
    }
    conn.execute(
        "DELETE FROM item_flaps WHERE asset = ?1 AND mask = 0",
        [asset],
    )?;
    Ok(flaps)
}

/// Reports items that started or stopped flapping: an audit entry and an event each way.
pub(crate) fn announce(
    conn: &Connection,
    clock: &dyn Clock,
    asset: &str,
    flaps: &Flaps,
    drift_id: Option<i64>,
) -> Result<(), StoreError> {
    if !flaps.started.is_empty() {
        let items: Vec<_> = flaps
            .started
            .iter()
            .take(MAX_NAMED)
            .map(|(path, count)| json!({"path": path, "changes": count}))
            .collect();
        let body = json!({
            "asset": asset,
            "items": items,
            "items_total": flaps.started.len(),
            "window": WINDOW,
            "threshold": THRESHOLD,
            "drift_id": drift_id,
        });
        audit::append_with_event(
            conn,
            clock,
            "drift.flapping",
            event_type::DRIFT_FLAPPING,
            Some(asset),
            &body,
        )?;
    }
    if !flaps.ended.is_empty() {
        let body = json!({
            "asset": asset,
            "items": flaps.ended.iter().take(MAX_NAMED).collect::<Vec<_>>(),
            "items_total": flaps.ended.len(),
            "window": WINDOW,
            "drift_id": drift_id,
        });
        audit::append_with_event(
            conn,
            clock,
            "drift.flapping_ended",
            event_type::DRIFT_FLAPPING_ENDED,
            Some(asset),
            &body,
        )?;
    }
    Ok(())
}

impl crate::Store {
    /// The asset's muted (flapping) items, for `status` and the API.
    pub fn muted_items(&self, asset: &str) -> Result<Vec<String>, StoreError> {
        muted(&self.conn, asset)
    }
}

fn muted(conn: &Connection, asset: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT path FROM item_flaps WHERE asset = ?1 AND muted_at IS NOT NULL ORDER BY path",
    )?;
    let rows = stmt
        .query_map([asset], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(rows)
}
