//! Emergency changes and their reviews, and the `changes` record every applied change leaves:
//! what it applied, under which policy, and (for an emergency) the review it still owes. The
//! review rule is in [`crate::changes`]'s module documentation.

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{Clock, Digest, Snapshot, format_timestamp};
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::json;

use crate::approvals::{self, ApprovalRefusal, ApprovalRow};
use crate::audit;
use crate::changes::{Observed, PolicyRule};
use crate::events::{enqueue, event_type};
use crate::ingest::load_snapshot;
use crate::model::{Baseline, digest, opt_ts, ts};
use crate::{Store, StoreError};

/// Review obligations when an emergency change applies without a policy: one reviewer,
/// within seven days.
const DEFAULT_REVIEW: (u32, i64) = (1, 7);

/// Records a change that moved a baseline, with the review an emergency still owes.
pub(crate) fn record_change(
    conn: &Connection,
    clock: &dyn Clock,
    group: &[ApprovalRow],
    rule: Option<&PolicyRule>,
    baseline: &Baseline,
    observed: &Observed,
    diff_digest: &Digest,
) -> Result<(), StoreError> {
    let now = clock.now();
    let emergency = group.iter().find(|a| a.kind == "emergency");
    let first = &group[0];
    let (approvals, diff_review, within) = match rule {
        Some(r) => (r.approvals, r.diff_review, r.review_within),
        None => (DEFAULT_REVIEW.0, false, TimeDelta::days(DEFAULT_REVIEW.1)),
    };
    let (status, due) = match emergency {
        Some(_) => ("review_due", Some(format_timestamp(now + within))),
        None => ("applied", None),
    };
    conn.execute(
        "INSERT INTO changes(change_id, asset, kind, policy, status, baseline_id, digest,
             content_digest, diff_digest, applied_at, review_due_by, review_approvals,
             review_diff, approver_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT(change_id, asset) DO UPDATE SET kind = excluded.kind,
             policy = excluded.policy, status = excluded.status,
             baseline_id = excluded.baseline_id, digest = excluded.digest,
             content_digest = excluded.content_digest, diff_digest = excluded.diff_digest,
             applied_at = excluded.applied_at, review_due_by = excluded.review_due_by,
             review_approvals = excluded.review_approvals, review_diff = excluded.review_diff,
             approver_id = excluded.approver_id, reviewed_at = NULL, overdue_at = NULL",
        params![
            first.change_id,
            observed.asset,
            emergency.map_or(first.kind.as_str(), |e| e.kind.as_str()),
            rule.map(|r| r.id.clone()),
            status,
            baseline.id,
            observed.digest.to_string(),
            observed.content.to_string(),
            diff_digest.to_string(),
            format_timestamp(now),
            due,
            i64::from(approvals),
            i64::from(diff_review),
            emergency.map_or(first.approver_id.as_str(), |e| e.approver_id.as_str()),
        ],
    )?;
    if let (Some(e), Some(due)) = (emergency, &due) {
        audit::append(
            conn,
            clock,
            "change.review_due",
            Some(&observed.asset),
            &json!({
                "change_id": e.change_id,
                "asset": observed.asset,
                "approver_id": e.approver_id,
                "digest": observed.digest.to_string(),
                "review_due_by": due,
                "reviews_needed": approvals,
                "diff_review": diff_review,
                "diff_digest": diff_digest.to_string(),
            }),
        )?;
    }
    Ok(())
}

/// Marks emergency changes whose review window has passed as `review_overdue`, each with an
/// audit entry and a `change.review_overdue` event.
pub(crate) fn check_overdue(conn: &Connection, clock: &dyn Clock) -> Result<usize, StoreError> {
    let now = format_timestamp(clock.now());
    let due: Vec<(i64, String, String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT id, change_id, asset, review_due_by FROM changes
             WHERE status = 'review_due' AND review_due_by < ?1",
        )?;
        let rows = stmt.query_map([&now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, change_id, asset, by) in &due {
        conn.execute(
            "UPDATE changes SET status = 'review_overdue', overdue_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        let body = json!({
            "change_id": change_id,
            "asset": asset,
            "review_due_by": by,
            "overdue_since": now,
        });
        audit::append_with_event(
            conn,
            clock,
            "change.review_overdue",
            event_type::CHANGE_REVIEW_OVERDUE,
            Some(asset),
            &body,
        )?;
    }
    Ok(due.len())
}

/// A change that moved a baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRow {
    /// The change ticket.
    pub change_id: String,
    /// The asset.
    pub asset: String,
    /// The kind of its approval (`emergency`, `normal`, ...).
    pub kind: String,
    /// The policy it met, if any.
    pub policy: Option<String>,
    /// `applied`, `review_due`, `reviewed` or `review_overdue`.
    pub status: String,
    /// The state it applied.
    pub digest: Digest,
    /// Its change signature.
    pub content: Digest,
    /// The digest of its content changes (what a review signs as `diff`).
    pub diff: Digest,
    /// When it applied.
    pub applied_at: DateTime<Utc>,
    /// When its review is due (emergencies).
    pub review_due_by: Option<DateTime<Utc>>,
    /// Distinct reviewers needed.
    pub review_approvals: u32,
    /// Whether reviews must carry the diff digest.
    pub review_diff: bool,
    /// The approver of the emergency (whose own review does not count).
    pub approver_id: String,
    /// When the review was complete.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// When it became overdue.
    pub overdue_at: Option<DateTime<Utc>>,
}

const CHANGE_COLUMNS: &str = "change_id, asset, kind, policy, status, digest, content_digest,
    diff_digest, applied_at, review_due_by, review_approvals, review_diff, approver_id,
    reviewed_at, overdue_at";

type RawChange = (
    (String, String, String, Option<String>, String),
    (String, String, String, String, Option<String>),
    (i64, i64, String, Option<String>, Option<String>),
);

fn change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawChange> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
        (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?),
        (r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?, r.get(14)?),
    ))
}

fn parse_change(raw: RawChange) -> Result<ChangeRow, StoreError> {
    let ((change_id, asset, kind, policy, status), (d, c, diff, at, due), (n, rd, who, rev, over)) =
        raw;
    Ok(ChangeRow {
        change_id,
        asset,
        kind,
        policy,
        status,
        digest: digest(&d)?,
        content: digest(&c)?,
        diff: digest(&diff)?,
        applied_at: ts(&at)?,
        review_due_by: opt_ts(due)?,
        review_approvals: u32::try_from(n).unwrap_or(0),
        review_diff: rd != 0,
        approver_id: who,
        reviewed_at: opt_ts(rev)?,
        overdue_at: opt_ts(over)?,
    })
}

fn changes_where(
    conn: &Connection,
    filter: &str,
    param: &dyn rusqlite::ToSql,
) -> Result<Vec<ChangeRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE {filter} ORDER BY id"
    ))?;
    let rows = stmt.query_map([param], change_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(parse_change(row?)?);
    }
    Ok(out)
}

/// A staging controller seen with a change's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagingLink {
    /// The change.
    pub change_id: String,
    /// The production asset.
    pub production: String,
    /// The staging controller.
    pub staging: String,
    /// Its capture.
    pub capture_id: i64,
    /// The change signature seen.
    pub content: Digest,
    /// When it was first seen there.
    pub seen_at: DateTime<Utc>,
}

/// A review token as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewRecord {
    /// The configured approver who signed it.
    pub approver_id: String,
    /// The reviewing person.
    pub approver: Option<String>,
    /// `counted`, `not-counted`, or a refusal reason.
    pub outcome: String,
    /// When the agent received it.
    pub received_at: DateTime<Utc>,
}

/// A verified `review` token, as the store records it.
#[derive(Clone, Debug)]
pub struct ReviewInput<'a> {
    /// The review's own token id.
    pub jti: &'a str,
    /// The change it reviews.
    pub change_id: &'a str,
    /// The asset.
    pub asset: &'a str,
    /// The configured approver whose key signed it.
    pub approver_id: &'a str,
    /// The reviewing person.
    pub approver: Option<&'a str>,
    /// The applied signature it reviews.
    pub to: Digest,
    /// The content-change digest the reviewer saw.
    pub diff: Option<Digest>,
    /// The compact JWS.
    pub token: &'a str,
    /// Its decoded claims.
    pub claims: &'a serde_json::Value,
    /// Who submitted it, for rate limits.
    pub source: &'a str,
}

/// Where a change's review stands after a review token.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewOutcome {
    /// The change, after the review.
    pub change: ChangeRow,
    /// Whether this review counted (another approver than the emergency's, with the right
    /// `diff` when the policy wants it).
    pub counted: bool,
    /// Distinct reviewers counted so far.
    pub reviewers: u32,
}

impl Store {
    /// Fills in the change signature and history digest of snapshots stored before those
    /// digests existed (schema 5). Runs at open; a no-op once done.
    pub(crate) fn backfill_snapshot_digests(&mut self) -> Result<(), StoreError> {
        loop {
            let batch: Vec<String> = {
                let mut stmt = self.conn.prepare(
                    "SELECT digest FROM snapshots WHERE content_digest IS NULL LIMIT 100",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<_, _>>()?
            };
            if batch.is_empty() {
                return Ok(());
            }
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for d in &batch {
                let snapshot: Snapshot = load_snapshot(&tx, &digest(d)?)?;
                let digests = snapshot.digests();
                tx.execute(
                    "UPDATE snapshots SET content_digest = ?2, history_digest = ?3 WHERE digest = ?1",
                    params![d, digests.content.to_string(), digests.history.to_string()],
                )?;
            }
            tx.commit()?;
        }
    }

    /// Records a `review` token of an emergency change (see the module documentation). The
    /// review's `jti` is spent whatever the outcome.
    pub fn submit_review(
        &mut self,
        input: &ReviewInput<'_>,
    ) -> Result<Result<ReviewOutcome, ApprovalRefusal>, StoreError> {
        let clock = self.clock.clone();
        let now = clock.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        check_overdue(&tx, clock.as_ref())?;
        let details = json!({
            "jti": input.jti,
            "asset": input.asset,
            "change_id": input.change_id,
            "approver_id": input.approver_id,
            "to": input.to.to_string(),
            "kind": "review",
        });
        let change = changes_where(&tx, "change_id = ?1", &input.change_id)?
            .into_iter()
            .find(|c| c.asset == input.asset);
        let refusal = if let Some(first) = approvals::jti_received(&tx, input.jti)? {
            Some(ApprovalRefusal::Replay {
                jti: input.jti.to_owned(),
                first_received: ts(&first)?,
            })
        } else {
            match &change {
                Some(c)
                    if matches!(
                        c.status.as_str(),
                        "review_due" | "review_overdue" | "reviewed"
                    ) && c.digest == input.to =>
                {
                    None
                }
                other => Some(ApprovalRefusal::NotUnderReview {
                    change_id: input.change_id.to_owned(),
                    status: other.as_ref().map(|c| c.status.clone()),
                }),
            }
        };
        let counted = match (&refusal, &change) {
            (None, Some(c)) => {
                input.approver_id != c.approver_id && (!c.review_diff || input.diff == Some(c.diff))
            }
            _ => false,
        };
        if !matches!(refusal, Some(ApprovalRefusal::Replay { .. })) {
            tx.execute(
                "INSERT INTO reviews(jti, change_id, asset, approver_id, approver, to_digest,
                     diff_digest, token, claims, received_at, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    input.jti,
                    input.change_id,
                    input.asset,
                    input.approver_id,
                    input.approver,
                    input.to.to_string(),
                    input.diff.map(|d| d.to_string()),
                    input.token,
                    input.claims.to_string(),
                    format_timestamp(now),
                    match (&refusal, counted) {
                        (Some(r), _) => r.code(),
                        (None, true) => "counted",
                        (None, false) => "not-counted",
                    },
                ],
            )?;
        }
        if let Some(refusal) = refusal {
            approvals::refuse(
                tx,
                clock.as_ref(),
                input.source,
                &refusal,
                &details,
                input.asset,
            )?;
            return Ok(Err(refusal));
        }
        let Some(change) = change else {
            return Err(StoreError::Corrupt(
                "a review without its change".to_owned(),
            ));
        };
        let reviewers: u32 = tx.query_row(
            "SELECT COUNT(DISTINCT approver_id) FROM reviews
             WHERE change_id = ?1 AND asset = ?2 AND outcome = 'counted'",
            params![input.change_id, input.asset],
            |r| r.get(0),
        )?;
        audit::append(
            &tx,
            clock.as_ref(),
            "change.review_received",
            Some(input.asset),
            &json!({
                "change_id": input.change_id,
                "asset": input.asset,
                "jti": input.jti,
                "approver_id": input.approver_id,
                "approver": input.approver,
                "counted": counted,
                "reviewers": reviewers,
                "needed": change.review_approvals,
            }),
        )?;
        if change.status != "reviewed" && reviewers >= change.review_approvals {
            let late = change.status == "review_overdue";
            tx.execute(
                "UPDATE changes SET status = 'reviewed', reviewed_at = ?3
                 WHERE change_id = ?1 AND asset = ?2",
                params![input.change_id, input.asset, format_timestamp(now)],
            )?;
            let body = json!({
                "change_id": input.change_id,
                "asset": input.asset,
                "reviewers": reviewers,
                "late": late,
                "reviewed_at": format_timestamp(now),
            });
            audit::append(
                &tx,
                clock.as_ref(),
                "change.reviewed",
                Some(input.asset),
                &body,
            )?;
            enqueue(
                &tx,
                clock.as_ref(),
                event_type::CHANGE_REVIEWED,
                Some(input.asset),
                &body,
            )?;
        }
        let change = changes_where(&tx, "change_id = ?1", &input.change_id)?
            .into_iter()
            .find(|c| c.asset == input.asset)
            .ok_or_else(|| StoreError::Corrupt("the change vanished".to_owned()))?;
        tx.commit()?;
        Ok(Ok(ReviewOutcome {
            change,
            counted,
            reviewers,
        }))
    }

    /// Marks overdue reviews (the daemon calls this every minute; captures and approvals do
    /// too). Returns how many became overdue.
    pub fn check_reviews(&mut self) -> Result<usize, StoreError> {
        let clock = self.clock.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = check_overdue(&tx, clock.as_ref())?;
        tx.commit()?;
        Ok(n)
    }

    /// Every change recorded under a change id (one per asset it moved).
    pub fn changes_for(&self, change_id: &str) -> Result<Vec<ChangeRow>, StoreError> {
        changes_where(&self.conn, "change_id = ?1", &change_id)
    }

    /// The asset's changes whose review is due or overdue.
    pub fn reviews_due(&self, asset: &str) -> Result<Vec<ChangeRow>, StoreError> {
        changes_where(
            &self.conn,
            "asset = ?1 AND status IN ('review_due', 'review_overdue')",
            &asset,
        )
    }

    /// The staging controllers a change was seen on before production.
    pub fn staging_links(&self, change_id: &str) -> Result<Vec<StagingLink>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT change_id, production, staging, capture_id, content_digest, seen_at
             FROM staging_links WHERE change_id = ?1 ORDER BY seen_at",
        )?;
        let rows = stmt.query_map([change_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (change_id, production, staging, capture_id, content, seen) = row?;
            out.push(StagingLink {
                change_id,
                production,
                staging,
                capture_id,
                content: digest(&content)?,
                seen_at: ts(&seen)?,
            });
        }
        Ok(out)
    }

    /// Review tokens received for a change, oldest first.
    pub fn reviews_for(&self, change_id: &str) -> Result<Vec<ReviewRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT approver_id, approver, outcome, received_at FROM reviews
             WHERE change_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([change_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (approver_id, approver, outcome, at) = row?;
            out.push(ReviewRecord {
                approver_id,
                approver,
                outcome,
                received_at: ts(&at)?,
            });
        }
        Ok(out)
    }
}
