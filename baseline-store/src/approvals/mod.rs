//! Approvals: the only way a baseline moves past its first capture.
//!
//! The agent verifies a token (signature, approver, time window, claims) before it reaches the
//! store; the store decides what the verified token does, in one transaction with everything it
//! implies. An approval is a small state machine:
//!
//! ```text
//!                 ┌─► rejected      jti seen before (replay), or `from` is not the baseline
//!                 │                 (the jti is spent either way)
//! token ─► verify ┼─► applied       `to` is the asset's state, seen within
//!                 │                 approval_max_observation_age: the baseline moves at once
//!                 └─► pending ─┬─► applied     the first capture that observes `to` (with
//!                              │               `from`, if any, still the baseline)
//!                              ├─► superseded  the baseline moved elsewhere and the approval's
//!                              │               `from` is absent or no longer the baseline
//!                              ├─► expired     `exp` passed first
//!                              └─► refused     an approver withdrew it (a `withdraw` token)
//! ```
//!
//! `applied`, `rejected`, `superseded`, `expired` and `refused` are final. Every transition is
//! an audit entry; rejections are `approval.rejected` events, supersessions
//! `approval.superseded`, withdrawals `approval.refused`, and every baseline move a
//! `baseline.moved` event. Superseding is what stops a stale pre-approval from rolling a plant
//! back: once the team has deployed X' instead of the pre-approved X, loading X months later is
//! drift, not an approved change. An approval is **retroactive** when its token was issued after
//! the approved state was first seen on the asset: the change was implemented before it was
//! approved. Only an `emergency` approval permits that; evidence packs flag it.
//!
//! Rejections are rate-limited per source (an API client's address, `command-line`): beyond
//! [`REJECTIONS_PER_MINUTE`] in a minute they are counted and summarised once
//! (`approval.rejections_suppressed`), so a flood of bad tokens can neither fill the audit log
//! nor queue thousands of events ahead of a drift event.

mod rejections;
mod types;

pub use rejections::REJECTIONS_PER_MINUTE;
pub(crate) use rejections::refuse;
pub use types::{
    AppliedApproval, ApprovalDecision, ApprovalInput, ApprovalRefusal, ApprovalRow, ApprovalStatus,
    WithdrawInput,
};

use chrono::{DateTime, Utc};
use otdrift_core::{Clock, Digest, format_timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::audit;
use crate::events::{enqueue, event_type};
use crate::ingest::{DRIFT_COLUMNS, DriftRaw, current_baseline, drift_row, insert_baseline};
use crate::model::{Baseline, DriftEvent, digest, opt_ts, ts};
use crate::{Store, StoreError};

/// When a token id was first received, by an approval, a withdrawal or a review.
pub(crate) fn jti_received(conn: &Connection, jti: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT received_at FROM approvals WHERE jti = ?1
             UNION ALL SELECT received_at FROM withdrawals WHERE jti = ?1
             UNION ALL SELECT received_at FROM reviews WHERE jti = ?1 LIMIT 1",
            [jti],
            |r| r.get(0),
        )
        .optional()?)
}

pub(crate) const APPROVAL_COLUMNS: &str = "id, jti, asset, change_id, kind, approver_id, approver, requestor, from_digest, to_digest, issued_at, not_before, expires_at, token, claims, status, reason, received_at, applied_at, retroactive, baseline_id, closed_at, content_digest, diff_digest, (SELECT digest FROM baselines WHERE baselines.id = approvals.baseline_id)";

pub(crate) fn approval_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<ApprovalRow, StoreError>> {
    let from: Option<String> = r.get(8)?;
    let to: Option<String> = r.get(9)?;
    let issued: String = r.get(10)?;
    let nbf: String = r.get(11)?;
    let exp: String = r.get(12)?;
    let claims: String = r.get(14)?;
    let status: String = r.get(15)?;
    let received: String = r.get(17)?;
    let applied: Option<String> = r.get(18)?;
    let closed: Option<String> = r.get(21)?;
    let content: Option<String> = r.get(22)?;
    let diff: Option<String> = r.get(23)?;
    let applied_digest: Option<String> = r.get(24)?;
    let id: i64 = r.get(0)?;
    let fields = (
        r.get::<_, String>(1)?,
        r.get::<_, String>(2)?,
        r.get::<_, String>(3)?,
        r.get::<_, String>(4)?,
        r.get::<_, String>(5)?,
        r.get::<_, Option<String>>(6)?,
        r.get::<_, Option<String>>(7)?,
        r.get::<_, String>(13)?,
        r.get::<_, Option<String>>(16)?,
        r.get::<_, i64>(19)?,
        r.get::<_, Option<i64>>(20)?,
    );
    Ok((|| {
        let (
            jti,
            asset,
            change_id,
            kind,
            approver_id,
            approver,
            requestor,
            token,
            reason,
            retro,
            baseline_id,
        ) = fields;
        Ok(ApprovalRow {
            id,
            jti,
            asset,
            change_id,
            kind,
            approver_id,
            approver,
            requestor,
            from: from.as_deref().map(digest).transpose()?,
            to: to.as_deref().map(digest).transpose()?,
            content: content.as_deref().map(digest).transpose()?,
            diff: diff.as_deref().map(digest).transpose()?,
            applied_digest: applied_digest.as_deref().map(digest).transpose()?,
            issued_at: ts(&issued)?,
            not_before: ts(&nbf)?,
            expires_at: ts(&exp)?,
            token,
            claims: serde_json::from_str(&claims)
                .map_err(|e| StoreError::Corrupt(format!("approval {id} claims: {e}")))?,
            status: ApprovalStatus::parse(&status)?,
            reason,
            received_at: ts(&received)?,
            applied_at: opt_ts(applied)?,
            retroactive: retro != 0,
            baseline_id,
            closed_at: opt_ts(closed)?,
        })
    })())
}

pub(crate) fn approval_by_id(conn: &Connection, id: i64) -> Result<ApprovalRow, StoreError> {
    conn.query_row(
        &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"),
        [id],
        approval_row,
    )?
}

pub(crate) fn approvals_where(
    conn: &Connection,
    filter: &str,
    param: &dyn rusqlite::ToSql,
) -> Result<Vec<ApprovalRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE {filter} ORDER BY id"
    ))?;
    let rows = stmt.query_map([param], approval_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// Marks pending approvals whose `exp` has passed as expired, each with an audit entry.
pub(crate) fn expire_pending(conn: &Connection, clock: &dyn Clock) -> Result<(), StoreError> {
    let now = format_timestamp(clock.now());
    let expired: Vec<(i64, String, String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT id, jti, asset, change_id FROM approvals
             WHERE status = 'pending' AND expires_at < ?1",
        )?;
        let rows = stmt.query_map([&now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, jti, asset, change_id) in expired {
        conn.execute(
            "UPDATE approvals SET status = 'expired', closed_at = ?2,
                 reason = 'the asset did not reach the approved state before exp'
             WHERE id = ?1",
            params![id, now],
        )?;
        audit::append(
            conn,
            clock,
            "approval.expired",
            Some(&asset),
            &json!({"approval_id": id, "jti": jti, "asset": asset, "change_id": change_id}),
        )?;
    }
    Ok(())
}

/// Whether a pending approval covers an observation of its asset: the observed state is its
/// `to`, or the observed change signature is its `content` with the asset's identity
/// unchanged from the baseline's; valid at `valid_at` (`nbf`, with the agent's clock skew
/// already added by the caller; `exp` is enforced by expiry); `from` (if any) still the
/// baseline.
pub(crate) fn covers(
    a: &ApprovalRow,
    observed: &crate::changes::Observed,
    baseline: Option<&Digest>,
    valid_at: DateTime<Utc>,
) -> bool {
    let state = match (a.to, a.content) {
        (Some(to), _) => to == observed.digest,
        (None, Some(content)) => {
            content == observed.content
                && observed
                    .baseline_identity
                    .is_some_and(|identity| identity == observed.identity)
        }
        (None, None) => false,
    };
    state && a.not_before <= valid_at && a.from.is_none_or(|f| Some(&f) == baseline)
}

/// After `applied` moved the baseline: every other pending approval of the asset whose `from`
/// is absent or is not the new baseline can no longer apply safely (it was meant for another
/// starting point, or it would carry the asset to an older plan), so it becomes `superseded`,
/// with an audit entry and an `approval.superseded` event each. Approvals that start from the
/// new baseline stay pending: they are the next change.
fn supersede_pending(
    conn: &Connection,
    clock: &dyn Clock,
    applied: &ApprovalRow,
    baseline: &Baseline,
) -> Result<(), StoreError> {
    let now = format_timestamp(clock.now());
    let pending = approvals_where(conn, "status = 'pending' AND asset = ?1", &applied.asset)?;
    for other in pending {
        if other.id == applied.id || other.from == Some(baseline.digest) {
            continue;
        }
        let reason = format!(
            "the baseline moved to {} (change {}, approval {:?}) and this approval {}",
            baseline.digest,
            applied.change_id,
            applied.jti,
            match other.from {
                None => "names no `from`".to_owned(),
                Some(from) => format!("starts from {from}"),
            }
        );
        conn.execute(
            "UPDATE approvals SET status = 'superseded', reason = ?2, closed_at = ?3 WHERE id = ?1",
            params![other.id, reason, now],
        )?;
        let body = json!({
            "approval_id": other.id,
            "jti": other.jti,
            "asset": other.asset,
            "change_id": other.change_id,
            "to": other.to.map(|d| d.to_string()),
            "content": other.content.map(|d| d.to_string()),
            "from": other.from.map(|d| d.to_string()),
            "superseded_by": {
                "jti": applied.jti,
                "change_id": applied.change_id,
                "baseline_digest": baseline.digest.to_string(),
            },
            "reason": reason,
        });
        audit::append(
            conn,
            clock,
            "approval.superseded",
            Some(&other.asset),
            &body,
        )?;
        enqueue(
            conn,
            clock,
            event_type::APPROVAL_SUPERSEDED,
            Some(&other.asset),
            &body,
        )?;
    }
    Ok(())
}

/// Moves the asset's baseline to `target` (the approval's `to`, or the observed state its
/// `content` covers), inside the caller's transaction. `observed_now` is true when the asset
/// is being captured in that state right now, in which case an open drift is approved whatever
/// intermediate state it last recorded.
pub(crate) fn apply(
    conn: &Connection,
    clock: &dyn Clock,
    approval: &ApprovalRow,
    target: &Digest,
    observed_now: bool,
) -> Result<AppliedApproval, StoreError> {
    let now = clock.now();
    let now_text = format_timestamp(now);
    let previous = current_baseline(conn, &approval.asset)?;
    let first_seen: Option<String> = conn.query_row(
        "SELECT MIN(first_seen) FROM captures WHERE asset = ?1
             AND (digest = ?2 OR judged_digest = ?2)",
        params![approval.asset, target.to_string()],
        |r| r.get(0),
    )?;
    let first_seen = opt_ts(first_seen)?;
    // `iat` has whole seconds; the same second counts as "not after" (benefit of the doubt).
    // Approving the state that already is the baseline (a provisional first baseline) changes
    // nothing on the plant floor, so it cannot come after an implementation.
    let confirms_baseline = previous.as_ref().is_some_and(|b| b.digest == *target);
    let retroactive = !confirms_baseline
        && first_seen.is_some_and(|seen| approval.issued_at.timestamp() > seen.timestamp());
    let capture_id: Option<i64> = conn
        .query_row(
            "SELECT id FROM captures WHERE asset = ?1 AND (digest = ?2 OR judged_digest = ?2)
             ORDER BY id DESC LIMIT 1",
            params![approval.asset, target.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    let carried = insert_baseline(
        conn,
        &approval.asset,
        target,
        false,
        now,
        "approval",
        Some(&approval.change_id),
        capture_id,
    )?;
    // The token's envelope, when it has the claim, replaces the one carried over.
    let envelope = match approval.claims.get("envelope") {
        Some(claim) => Some(crate::envelope::parse(claim).map_err(|e| {
            StoreError::Corrupt(format!("approval {:?}: envelope {e}", approval.jti))
        })?),
        None => None,
    };
    conn.execute(
        "UPDATE baselines SET approval_id = ?2,
             envelope = CASE WHEN ?3 THEN ?4 ELSE envelope END
         WHERE id = ?1",
        params![
            carried.id,
            approval.id,
            envelope.is_some(),
            envelope.as_ref().and_then(crate::envelope::to_column)
        ],
    )?;
    let baseline = crate::ingest::baseline_by_id(conn, carried.id)?;
    conn.execute(
        "UPDATE approvals SET status = 'applied', applied_at = ?2, baseline_id = ?3, retroactive = ?4
         WHERE id = ?1",
        params![approval.id, now_text, baseline.id, i64::from(retroactive)],
    )?;
    // Confirming a provisional baseline (same digest) moves nothing on the plant floor.
    if previous
        .as_ref()
        .is_none_or(|p| p.digest != baseline.digest)
    {
        supersede_pending(conn, clock, approval, &baseline)?;
    }

    let open: Option<DriftEvent> = conn
        .query_row(
            &format!(
                "SELECT {DRIFT_COLUMNS} FROM drift_events WHERE asset = ?1 AND status = 'open'"
            ),
            [&approval.asset],
            drift_row,
        )
        .optional()?
        .map(DriftRaw::parse)
        .transpose()?;
    let drift = match open {
        Some(d) if observed_now || d.observed_digest == *target => {
            conn.execute(
                "UPDATE drift_events SET status = 'approved', change_id = ?2, closed_at = ?3,
                     observed_digest = ?4
                 WHERE id = ?1",
                params![d.id, approval.change_id, now_text, target.to_string()],
            )?;
            let approved = conn
                .query_row(
                    &format!("SELECT {DRIFT_COLUMNS} FROM drift_events WHERE id = ?1"),
                    [d.id],
                    drift_row,
                )?
                .parse()?;
            audit::append(
                conn,
                clock,
                "drift.approved",
                Some(&approval.asset),
                &json!({
                    "drift_id": d.id,
                    "asset": approval.asset,
                    "change_id": approval.change_id,
                    "approval_id": approval.id,
                    "observed_digest": target.to_string(),
                }),
            )?;
            Some(approved)
        }
        _ => None,
    };

    let previous_digest = previous.as_ref().map(|b| b.digest.to_string());
    audit::append(
        conn,
        clock,
        "approval.applied",
        Some(&approval.asset),
        &json!({
            "approval_id": approval.id,
            "jti": approval.jti,
            "asset": approval.asset,
            "change_id": approval.change_id,
            "kind": approval.kind,
            "approver_id": approval.approver_id,
            "approver": approval.approver,
            "requestor": approval.requestor,
            "to": target.to_string(),
            "content": approval.content.map(|d| d.to_string()),
            "retroactive": retroactive,
        }),
    )?;
    audit::append(
        conn,
        clock,
        "baseline.moved",
        Some(&approval.asset),
        &json!({
            "asset": approval.asset,
            "baseline_id": baseline.id,
            "previous_digest": previous_digest,
            "digest": target.to_string(),
            "change_id": approval.change_id,
            "approval_id": approval.id,
            "reason": "approval",
            "envelope": crate::envelope::to_json(&baseline.envelope),
        }),
    )?;
    enqueue(
        conn,
        clock,
        event_type::BASELINE_MOVED,
        Some(&approval.asset),
        &json!({
            "asset": approval.asset,
            "digest": target.to_string(),
            "previous_digest": previous_digest,
            "provisional": false,
            "reason": "approval",
            "change_id": approval.change_id,
            "set_at": now_text,
            "envelope": crate::envelope::to_json(&baseline.envelope),
            "approval": {
                "jti": approval.jti,
                "kind": approval.kind,
                "approver_id": approval.approver_id,
                "approver": approval.approver,
                "requestor": approval.requestor,
                "retroactive": retroactive,
            },
            "drift_id": drift.as_ref().map(|d| d.id),
        }),
    )?;
    Ok(AppliedApproval {
        approval: approval_by_id(conn, approval.id)?,
        baseline,
        previous,
        drift,
    })
}

impl Store {
    /// Whether a token id was already used (by an approval or a withdrawal).
    pub fn jti_used(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(jti_received(&self.conn, jti)?.is_some())
    }

    /// Withdraws a pending approval (a verified `withdraw` token): pending -> refused, with an
    /// audit entry and an `approval.refused` event. Any configured approver may withdraw: a
    /// withdrawal only ever stops a baseline from moving. The withdrawal's own `jti` is spent
    /// whatever the outcome.
    pub fn withdraw_approval(
        &mut self,
        input: &WithdrawInput<'_>,
    ) -> Result<Result<ApprovalRow, ApprovalRefusal>, StoreError> {
        let clock = self.clock.clone();
        let now_text = format_timestamp(clock.now());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        expire_pending(&tx, clock.as_ref())?;
        let details = json!({
            "jti": input.jti,
            "asset": input.asset,
            "change_id": input.change_id,
            "approver_id": input.approver_id,
            "withdraws": input.target_jti,
        });
        let refusal = if let Some(first) = jti_received(&tx, input.jti)? {
            Some(ApprovalRefusal::Replay {
                jti: input.jti.to_owned(),
                first_received: ts(&first)?,
            })
        } else {
            let target: Option<ApprovalRow> = tx
                .query_row(
                    &format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE jti = ?1 AND asset = ?2"
                    ),
                    params![input.target_jti, input.asset],
                    approval_row,
                )
                .optional()?
                .transpose()?;
            match target {
                Some(t) if t.status == ApprovalStatus::Pending => None,
                other => Some(ApprovalRefusal::NotPending {
                    target: input.target_jti.to_owned(),
                    status: other.map(|t| t.status),
                }),
            }
        };
        let outcome = refusal.as_ref().map_or("withdrawn", |r| r.code());
        if !matches!(refusal, Some(ApprovalRefusal::Replay { .. })) {
            tx.execute(
                "INSERT INTO withdrawals(jti, asset, change_id, approver_id, approver, target_jti,
                     outcome, token, claims, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    input.jti,
                    input.asset,
                    input.change_id,
                    input.approver_id,
                    input.approver,
                    input.target_jti,
                    outcome,
                    input.token,
                    input.claims.to_string(),
                    now_text
                ],
            )?;
        }
        if let Some(refusal) = refusal {
            refuse(
                tx,
                clock.as_ref(),
                input.source,
                &refusal,
                &details,
                input.asset,
            )?;
            return Ok(Err(refusal));
        }
        let reason = format!(
            "withdrawn by approver {} ({}) with token {:?}",
            input.approver_id,
            input.approver.unwrap_or("no name given"),
            input.jti
        );
        tx.execute(
            "UPDATE approvals SET status = 'refused', reason = ?3, closed_at = ?4
             WHERE jti = ?1 AND asset = ?2",
            params![input.target_jti, input.asset, reason, now_text],
        )?;
        let row = tx.query_row(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE jti = ?1"),
            [input.target_jti],
            approval_row,
        )??;
        let body = json!({
            "approval_id": row.id,
            "jti": row.jti,
            "asset": row.asset,
            "change_id": row.change_id,
            "to": row.to.map(|d| d.to_string()),
            "content": row.content.map(|d| d.to_string()),
            "withdrawn_by": {
                "jti": input.jti,
                "approver_id": input.approver_id,
                "approver": input.approver,
                "change_id": input.change_id,
            },
            "reason": reason,
        });
        audit::append(
            &tx,
            clock.as_ref(),
            "approval.refused",
            Some(input.asset),
            &body,
        )?;
        enqueue(
            &tx,
            clock.as_ref(),
            event_type::APPROVAL_REFUSED,
            Some(input.asset),
            &body,
        )?;
        tx.commit()?;
        Ok(Ok(row))
    }

    /// Submits a verified token (see the module documentation for what it does).
    pub fn submit_approval(
        &mut self,
        input: &ApprovalInput<'_>,
    ) -> Result<ApprovalDecision, StoreError> {
        // "Observed now" reads the latest capture's last_seen: quiet polls first.
        self.flush_seen()?;
        let clock = self.clock.clone();
        let now = clock.now();
        let now_text = format_timestamp(now);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        expire_pending(&tx, clock.as_ref())?;
        let details = json!({
            "jti": input.jti,
            "asset": input.asset,
            "change_id": input.change_id,
            "approver_id": input.approver_id,
            "to": input.to.map(|d| d.to_string()),
            "content": input.content.map(|d| d.to_string()),
            "from": input.from.map(|d| d.to_string()),
        });

        let used = jti_received(&tx, input.jti)?;
        let reject = |tx: rusqlite::Transaction<'_>, refusal: ApprovalRefusal| {
            refuse(
                tx,
                clock.as_ref(),
                input.source,
                &refusal,
                &details,
                input.asset,
            )?;
            Ok(ApprovalDecision::Rejected(refusal))
        };
        if let Some(first) = used {
            let refusal = ApprovalRefusal::Replay {
                jti: input.jti.to_owned(),
                first_received: ts(&first)?,
            };
            return reject(tx, refusal);
        }

        let baseline = current_baseline(&tx, input.asset)?;
        let refusal = match input.from {
            Some(from) if baseline.as_ref().map(|b| b.digest) != Some(from) => {
                Some(ApprovalRefusal::FromMismatch {
                    from,
                    baseline: baseline.as_ref().map(|b| b.digest),
                })
            }
            _ => None,
        };
        let status = if refusal.is_some() {
            "rejected"
        } else {
            "pending"
        };
        tx.execute(
            &format!(
                "INSERT INTO approvals(jti, asset, change_id, kind, approver_id, approver, requestor,
                     from_digest, to_digest, issued_at, not_before, expires_at, token, claims,
                     status, reason, received_at, content_digest, diff_digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, '{status}', ?15, ?16,
                     ?17, ?18)"
            ),
            params![
                input.jti,
                input.asset,
                input.change_id,
                input.kind,
                input.approver_id,
                input.approver,
                input.requestor,
                input.from.map(|d| d.to_string()),
                input.to.map(|d| d.to_string()),
                format_timestamp(input.issued_at),
                format_timestamp(input.not_before),
                format_timestamp(input.expires_at),
                input.token,
                input.claims.to_string(),
                refusal.as_ref().map(ToString::to_string),
                now_text,
                input.content.map(|d| d.to_string()),
                input.diff.map(|d| d.to_string()),
            ],
        )?;
        let id = tx.last_insert_rowid();
        if let Some(refusal) = refusal {
            return reject(tx, refusal);
        }

        // "Observed now" means the asset's latest capture is the approved state *and* was
        // seen recently: an asset unreachable for days may be in any state by now, so the
        // approval waits for the next capture to see it.
        let observed = crate::changes::latest_observation(&tx, input.asset)?;
        let row = approval_by_id(&tx, id)?;
        let fresh = observed
            .as_ref()
            .filter(|o| now - o.last_seen <= input.max_observation_age)
            .filter(|o| {
                covers(
                    &row,
                    o,
                    baseline.as_ref().map(|b| &b.digest),
                    now + input.rules.skew,
                )
            });
        audit::append(
            &tx,
            clock.as_ref(),
            "approval.accepted",
            Some(input.asset),
            &json!({
                "approval_id": id,
                "jti": input.jti,
                "asset": input.asset,
                "change_id": input.change_id,
                "kind": input.kind,
                "approver_id": input.approver_id,
                "approver": input.approver,
                "requestor": input.requestor,
                "from": input.from.map(|d| d.to_string()),
                "to": input.to.map(|d| d.to_string()),
                "content": input.content.map(|d| d.to_string()),
                "diff": input.diff.map(|d| d.to_string()),
                "issued_at": format_timestamp(input.issued_at),
                "expires_at": format_timestamp(input.expires_at),
                "observed_now": fresh.is_some(),
            }),
        )?;
        if row.content.is_some() {
            crate::changes::link_earlier_staging(&tx, clock.as_ref(), &row, input.rules)?;
        }
        let decision = match fresh {
            Some(observation) => {
                match crate::changes::try_apply(
                    &tx,
                    clock.as_ref(),
                    input.rules,
                    observation,
                    true,
                )? {
                    crate::changes::Verdict::Applied(applied)
                        if applied.approval.change_id == row.change_id =>
                    {
                        ApprovalDecision::Applied(applied)
                    }
                    _ => ApprovalDecision::Pending(Box::new(approval_by_id(&tx, id)?)),
                }
            }
            None => ApprovalDecision::Pending(Box::new(row)),
        };
        tx.commit()?;
        Ok(decision)
    }

    /// Every approval recorded for a change, oldest first.
    pub fn approvals_for_change(&self, change_id: &str) -> Result<Vec<ApprovalRow>, StoreError> {
        approvals_where(&self.conn, "change_id = ?1", &change_id)
    }

    /// The asset's pending approvals, oldest first.
    pub fn pending_approvals(&self, asset: &str) -> Result<Vec<ApprovalRow>, StoreError> {
        approvals_where(&self.conn, "status = 'pending' AND asset = ?1", &asset)
    }
}
