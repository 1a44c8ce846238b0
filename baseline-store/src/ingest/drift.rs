//! Drift: judging a capture against the baseline, and the drift event it raises, updates or
//! resolves (with its size bound and the link to the rest of its changes).

use super::*;

/// Room kept for the CloudEvents envelope around an event's `data` (`id`, `source`, `type`,
/// `time`, `subject`, `otdriftseq`): agent and asset ids are at most 64 characters, so the
/// envelope stays well under this, and `data` within `max_event_bytes - ENVELOPE_ALLOWANCE`
/// keeps the whole event within `max_event_bytes`.
pub const ENVELOPE_ALLOWANCE: usize = 1024;

/// The pull link of a drift's changes from the `after`-th on, relative to the agent's API.
/// It names the observed state, so a link from an older `drift.detected` event still pages
/// that event's changes after the drift moved on to another state.
pub fn drift_changes_link(drift_id: i64, observed: &otdrift_core::Digest, after: usize) -> String {
    format!("/v1/drift/{drift_id}/changes?observed={observed}&after={after}")
}

pub(super) fn json_len(v: &serde_json::Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// The `data` of a `drift.detected` event, at most `max_event_bytes - ENVELOPE_ALLOWANCE`
/// bytes of JSON. It always carries `changes_total`, `changes_by_class` and `truncated`; when
/// every change does not fit (an ADS table may have a million symbols), `changes` holds the
/// first ones that do, in the drift's order, `truncated` is true, and `changes_link` is
/// `GET /v1/drift/{id}/changes?observed=...&after=N` for the rest. Sized on the serialized
/// bytes, not on a count, because one change can be a 64 KiB string.
pub(crate) fn drift_event_data(
    d: &DriftEvent,
    change_signatures: (&Digest, &Digest),
    max_event_bytes: usize,
) -> serde_json::Value {
    let mut by_class = serde_json::Map::new();
    for class in otdrift_core::Class::ALL {
        let n = d.changes.iter().filter(|c| c.class == class).count();
        by_class.insert(class.as_str().to_owned(), json!(n));
    }
    let total = d.changes.len();
    let mut data = json!({
        "drift_id": d.id,
        "asset": d.asset,
        "status": d.status.as_str(),
        "severity": d.severity.as_str(),
        "reason": d.reason.as_str(),
        "baseline_digest": d.baseline_digest.to_string(),
        "observed_digest": d.observed_digest.to_string(),
        "baseline_change_signature": change_signatures.0.to_string(),
        "observed_change_signature": change_signatures.1.to_string(),
        "first_seen": format_timestamp(d.first_seen),
        "last_seen": format_timestamp(d.last_seen),
        "change_id": d.change_id,
        "policy_reason": d.policy_reason,
        "changes": d.changes,
        "changes_total": total,
        "changes_by_class": by_class,
        "truncated": false,
    });
    let budget = max_event_bytes.saturating_sub(ENVELOPE_ALLOWANCE);
    if json_len(&data) <= budget {
        return data;
    }
    data["truncated"] = json!(true);
    data["changes"] = json!([]);
    // The longest the link can be, so that the final one (with a smaller `after`) fits too.
    data["changes_link"] = json!(drift_changes_link(d.id, &d.observed_digest, total));
    let mut used = json_len(&data);
    let mut kept = 0;
    for change in &d.changes {
        let size = serde_json::to_vec(change)
            .map_or(usize::MAX, |b| b.len())
            .saturating_add(usize::from(kept > 0));
        if used.saturating_add(size) > budget {
            break;
        }
        used += size;
        kept += 1;
    }
    data["changes"] = serde_json::to_value(&d.changes[..kept]).unwrap_or_else(|_| json!([]));
    data["changes_link"] = json!(drift_changes_link(d.id, &d.observed_digest, kept));
    data
}

/// The change signature of a stored snapshot.
pub(crate) fn content_digest_of(conn: &Connection, digest: &Digest) -> Result<Digest, StoreError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT content_digest FROM snapshots WHERE digest = ?1",
            [digest.to_string()],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    match stored {
        Some(c) => crate::model::digest(&c),
        None => Ok(load_snapshot(conn, digest)?.content_digest()),
    }
}

/// What a capture was judged against: the baseline, its digests and diff, and the policy
/// verdict of the approvals that cover it.
pub(super) struct Judged<'a> {
    pub(super) baseline: &'a Baseline,
    pub(super) reason: crate::model::DriftReason,
    pub(super) digests: &'a SnapshotDigests,
    pub(super) diff: &'a Diff,
    pub(super) policy_unmet: Option<&'a (String, String, Vec<String>)>,
}

pub(super) fn record_drift(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    max_event_bytes: usize,
    rec: &CaptureRecord<'_>,
    judged: &Judged<'_>,
    now: DateTime<Utc>,
) -> Result<DriftOutcome, StoreError> {
    let Judged {
        baseline,
        reason,
        digests,
        diff,
        policy_unmet,
    } = *judged;
    let now_text = format_timestamp(now);
    let policy_reason = policy_unmet.map(|(change, policy, unmet)| {
        format!(
            "change {change} is approved but policy {policy} is not met: {}",
            unmet.join("; ")
        )
    });
    let observed = digests.overall.to_string();
    let severity = diff
        .severity()
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "asset {} differs from its baseline {} by digest but not by item",
                rec.asset, baseline.digest
            ))
        })?
        .as_str();
    // A setpoint an envelope covers changed outside it: the drift names the envelope broken.
    let changes: Vec<ChangeRecord> = diff
        .changes
        .iter()
        .map(|c| {
            let mut record = ChangeRecord::from_change(c, rec.label);
            if c.class == otdrift_core::Class::Setpoint {
                record.envelope = crate::envelope::rule_json(&baseline.envelope, &c.path);
            }
            record
        })
        .collect();
    let changes_text = serde_json::to_string(&changes)
        .map_err(|e| StoreError::Corrupt(format!("cannot render changes: {e}")))?;

    let (id, opened) = match open_drift(conn, rec.asset)? {
        Some(open)
            if open.observed_digest == digests.overall
                && open.baseline_digest == baseline.digest
                && open.policy_reason == policy_reason
                && open.reason == reason =>
        {
            conn.execute(
                "UPDATE drift_events SET last_seen = ?2, seen_count = seen_count + 1 WHERE id = ?1",
                params![open.id, now_text],
            )?;
            return Ok(DriftOutcome::Seen(drift_by_id(conn, open.id)?));
        }
        Some(open) => {
            conn.execute(
                "UPDATE drift_events SET last_seen = ?2, seen_count = seen_count + 1,
                     observed_digest = ?3, baseline_digest = ?4, severity = ?5, changes = ?6,
                     policy_reason = ?7, reason = ?8
                 WHERE id = ?1",
                params![
                    open.id,
                    now_text,
                    observed,
                    baseline.digest.to_string(),
                    severity,
                    changes_text,
                    policy_reason,
                    reason.as_str()
                ],
            )?;
            (open.id, false)
        }
        None => {
            conn.execute(
                "INSERT INTO drift_events(asset, status, severity, baseline_digest,
                     observed_digest, first_seen, last_seen, changes, policy_reason, reason)
                 VALUES (?1, 'open', ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
                params![
                    rec.asset,
                    severity,
                    baseline.digest.to_string(),
                    observed,
                    now_text,
                    changes_text,
                    policy_reason,
                    reason.as_str()
                ],
            )?;
            (conn.last_insert_rowid(), true)
        }
    };
    let event = drift_by_id(conn, id)?;
    let kind = if opened {
        "drift.opened"
    } else {
        "drift.updated"
    };
    audit::append(
        conn,
        clock,
        kind,
        Some(rec.asset),
        &json!({
            "drift_id": event.id,
            "asset": rec.asset,
            "severity": severity,
            "baseline_digest": baseline.digest.to_string(),
            "observed_digest": observed,
            "reason": reason.as_str(),
            "changed_items": changes.len(),
        }),
    )?;
    enqueue(
        conn,
        clock,
        event_type::DRIFT_DETECTED,
        Some(rec.asset),
        &drift_event_data(
            &event,
            (
                &content_digest_of(conn, &baseline.digest)?,
                &digests.content,
            ),
            max_event_bytes,
        ),
    )?;
    Ok(if opened {
        DriftOutcome::Opened(event)
    } else {
        DriftOutcome::Updated(event)
    })
}

/// Names the config's setpoint that covers an item path.
pub(super) type Label<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Moves the open drift to the observed state without an audit entry or event: only muted
/// items changed. `diff` is the difference from the baseline (none when the state is the
/// baseline's: the drift keeps its last list of changes).
pub(super) fn fold_drift(
    conn: &Connection,
    open: &DriftEvent,
    digests: &SnapshotDigests,
    diff: Option<(&Diff, &Label<'_>)>,
    now: DateTime<Utc>,
) -> Result<DriftEvent, StoreError> {
    let changes = match diff {
        Some((diff, label)) if !diff.changes.is_empty() => {
            let changes: Vec<ChangeRecord> = diff
                .changes
                .iter()
                .map(|c| ChangeRecord::from_change(c, label))
                .collect();
            Some((
                serde_json::to_string(&changes)
                    .map_err(|e| StoreError::Corrupt(format!("cannot render changes: {e}")))?,
                diff.severity().map(|s| s.as_str()),
            ))
        }
        _ => None,
    };
    conn.execute(
        "UPDATE drift_events SET last_seen = ?2, seen_count = seen_count + 1,
             observed_digest = ?3, changes = COALESCE(?4, changes),
             severity = COALESCE(?5, severity)
         WHERE id = ?1",
        params![
            open.id,
            format_timestamp(now),
            digests.overall.to_string(),
            changes.as_ref().map(|c| &c.0),
            changes.as_ref().and_then(|c| c.1)
        ],
    )?;
    drift_by_id(conn, open.id)
}

pub(super) fn resolve(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    open: DriftEvent,
    now: DateTime<Utc>,
) -> Result<DriftEvent, StoreError> {
    let now_text = format_timestamp(now);
    conn.execute(
        "UPDATE drift_events SET status = 'resolved', closed_at = ?2, last_seen = ?2 WHERE id = ?1",
        params![open.id, now_text],
    )?;
    let event = drift_by_id(conn, open.id)?;
    audit::append(
        conn,
        clock,
        "drift.resolved",
        Some(&event.asset),
        &json!({
            "drift_id": event.id,
            "asset": event.asset,
            "baseline_digest": event.baseline_digest.to_string(),
            "last_drifted_digest": event.observed_digest.to_string(),
        }),
    )?;
    enqueue(
        conn,
        clock,
        event_type::DRIFT_RESOLVED,
        Some(&event.asset),
        &json!({
            "drift_id": event.id,
            "asset": event.asset,
            "status": DriftStatus::Resolved.as_str(),
            "severity": event.severity.as_str(),
            "baseline_digest": event.baseline_digest.to_string(),
            "observed_digest": event.baseline_digest.to_string(),
            "last_drifted_digest": event.observed_digest.to_string(),
            "first_seen": format_timestamp(event.first_seen),
            "resolved_at": now_text,
        }),
    )?;
    Ok(event)
}
