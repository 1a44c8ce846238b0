//! Changes: what a plant's change policy asks of approvals before a baseline moves, staging
//! controllers, and the review an emergency change still owes.
//!
//! ```text
//! observation (a capture, or a fresh one at submission) of asset A in state D
//!   ──► pending approvals of A that cover D (`to` = D, or `content` = D's change signature
//!       with A's identity unchanged), grouped by change id
//!   ──► per change: an emergency token?           apply now, review due within review_within
//!                   no policy for A?               apply (one valid approval is enough)
//!                   the policy's rules all met?    apply
//!                   otherwise                      stay pending; the open drift says why
//!                                                  ("approvals 1 of 2; notice 3h of 48h")
//! ```
//!
//! The rules of a policy ([`PolicyRule`]), each measured, never assumed:
//! - **approvals**: distinct approver ids among the change's tokens that cover the state (with
//!   `diff_review`, only tokens whose `diff` is the digest of the content changes from the
//!   baseline to the observed state count);
//! - **notice**: from the agent receiving the change's first token to the change reaching the
//!   device (the first capture of the current run of that state);
//! - **require_staging**: a staging controller of the asset (`staging_for`) was seen with the
//!   same change signature before the change reached the device;
//! - the **safety policy** replaces the asset's policy when the change touches an item the
//!   asset lists as safety configuration.
//!
//! A staging controller S of production asset P: a capture of S whose change signature is the
//! content of an approval for P links the change to S (`change.staged`); a `content` approval
//! for P approves the same content on S (S's baseline moves, identity unchanged). An emergency
//! change is reviewed by `review` tokens (not approvals: the change already happened) from
//! approvers other than the emergency's own, meeting the policy's `approvals` and
//! `diff_review` within `review_within`; past it the change is `review_overdue`.

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{Clock, Diff, Digest, format_timestamp, path_matches};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use crate::StoreError;
use crate::approvals::{self, AppliedApproval, ApprovalRow, approvals_where};
use crate::audit;
use crate::events::{enqueue, event_type};
use crate::ingest::{current_baseline, insert_baseline, load_snapshot};
use crate::model::{digest, opt_ts, ts};

/// One policy, as the agent hands it over from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRule {
    /// The policy's id.
    pub id: String,
    /// Distinct approver ids that must sign.
    pub approvals: u32,
    /// Least time between the first token and the change reaching the device.
    pub notice: TimeDelta,
    /// The change must first be seen on a staging controller.
    pub require_staging: bool,
    /// Counted tokens must carry the digest of the content changes.
    pub diff_review: bool,
    /// Time allowed for an emergency change's review.
    pub review_within: TimeDelta,
}

/// The change rules of one asset (the store knows no config: the agent fills this in).
/// The default is no policy, no staging relation, and the config's default skew (60 s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRules {
    /// The asset's policy; `None`: one valid approval applies.
    pub policy: Option<PolicyRule>,
    /// Item path patterns of safety configuration (exact, or a prefix ending in `*`).
    pub safety: Vec<String>,
    /// The policy for changes that touch `safety` items.
    pub safety_policy: Option<PolicyRule>,
    /// The staging controllers of this asset, when it is a production asset.
    pub staging: Vec<String>,
    /// The production asset, when this asset is a staging controller.
    pub production: Option<String>,
    /// How far an approver's clock may be off (`[agent] clock_skew_secs`): a token whose `nbf`
    /// lies within it is already valid, as the verifier judged it.
    pub skew: TimeDelta,
}

impl Default for ChangeRules {
    fn default() -> Self {
        ChangeRules {
            policy: None,
            safety: Vec::new(),
            safety_policy: None,
            staging: Vec::new(),
            production: None,
            skew: TimeDelta::seconds(60),
        }
    }
}

/// What an observation of an asset is, for matching approvals against it.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The asset.
    pub asset: String,
    /// Its full signature.
    pub digest: Digest,
    /// Its change signature.
    pub content: Digest,
    /// Its identity class digest.
    pub identity: Digest,
    /// The identity digest of the asset's current baseline, if it has one.
    pub baseline_identity: Option<Digest>,
    /// When this run of the state began (the capture row's first sighting).
    pub reached_at: DateTime<Utc>,
    /// When it was last seen.
    pub last_seen: DateTime<Utc>,
    /// The capture row.
    pub capture_id: i64,
}

/// What an observation did to the asset's approvals.
#[derive(Debug)]
pub enum Verdict {
    /// No approval covers the state.
    None,
    /// A change's approvals moved the baseline.
    Applied(Box<AppliedApproval>),
    /// A change's approvals cover the state but its policy is not met yet.
    Unmet {
        /// The change.
        change_id: String,
        /// The policy applied.
        policy: String,
        /// The rules not met, as people read them (`approvals 1 of 2`).
        unmet: Vec<String>,
    },
}

/// The latest observation of an asset, with the digests approvals are matched on.
pub(crate) fn latest_observation(
    conn: &Connection,
    asset: &str,
) -> Result<Option<Observed>, StoreError> {
    let row: Option<(i64, String, String, String, Option<String>, String)> = conn
        .query_row(
            "SELECT c.id, s.digest, c.first_seen, c.last_seen, s.content_digest, s.identity_digest
             FROM captures c JOIN snapshots s ON s.digest = COALESCE(c.judged_digest, c.digest)
             WHERE c.asset = ?1 ORDER BY c.id DESC LIMIT 1",
            [asset],
            |r| r.try_into(),
        )
        .optional()?;
    let Some((capture_id, d, first, last, content, identity)) = row else {
        return Ok(None);
    };
    let d = digest(&d)?;
    let content = match content {
        Some(c) => digest(&c)?,
        None => load_snapshot(conn, &d)?.content_digest(),
    };
    Ok(Some(Observed {
        asset: asset.to_owned(),
        digest: d,
        content,
        identity: digest(&identity)?,
        baseline_identity: baseline_identity(conn, asset)?,
        reached_at: ts(&first)?,
        last_seen: ts(&last)?,
        capture_id,
    }))
}

/// The identity digest of the asset's current baseline.
pub(crate) fn baseline_identity(
    conn: &Connection,
    asset: &str,
) -> Result<Option<Digest>, StoreError> {
    let Some(baseline) = current_baseline(conn, asset)? else {
        return Ok(None);
    };
    let identity: Option<String> = conn
        .query_row(
            "SELECT identity_digest FROM snapshots WHERE digest = ?1",
            [baseline.digest.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    identity.as_deref().map(digest).transpose()
}

/// The policy that applies to a change from `baseline` to `observed`: the safety policy when
/// the change touches a safety item, or when the tokens' envelopes cover one (an envelope is a
/// change of what may move without approval), else the asset's policy.
fn rule_for<'r>(
    rules: &'r ChangeRules,
    diff: &Diff,
    group: &[ApprovalRow],
) -> Option<&'r PolicyRule> {
    let envelope_patterns = group
        .iter()
        .filter_map(|a| a.claims.get("envelope").and_then(|e| e.as_object()))
        .flat_map(|e| e.keys());
    let touches_safety = !rules.safety.is_empty()
        && (diff
            .changes
            .iter()
            .any(|c| rules.safety.iter().any(|p| path_matches(p, &c.path)))
            || envelope_patterns
                .into_iter()
                .any(|e| rules.safety.iter().any(|p| patterns_overlap(p, e))));
    match (touches_safety, &rules.safety_policy) {
        (true, Some(safety)) => Some(safety),
        _ => rules.policy.as_ref(),
    }
}

/// Whether two path patterns (exact, or a prefix ending in `*`) can match the same path.
fn patterns_overlap(a: &str, b: &str) -> bool {
    match (a.strip_suffix('*'), b.strip_suffix('*')) {
        (Some(pa), Some(pb)) => pa.starts_with(pb) || pb.starts_with(pa),
        (Some(pa), None) => b.starts_with(pa),
        (None, Some(pb)) => a.starts_with(pb),
        (None, None) => a == b,
    }
}

/// When a staging controller of this asset was first seen with the change signature
/// `content`, if ever.
fn staged_at(
    conn: &Connection,
    rules: &ChangeRules,
    content: &Digest,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut first: Option<DateTime<Utc>> = None;
    for staging in &rules.staging {
        let seen: Option<String> = conn.query_row(
            "SELECT MIN(c.first_seen) FROM captures c JOIN snapshots s ON s.digest = c.digest
             WHERE c.asset = ?1 AND s.content_digest = ?2",
            params![staging, content.to_string()],
            |r| r.get(0),
        )?;
        if let Some(seen) = opt_ts(seen)? {
            first = Some(first.map_or(seen, |f| f.min(seen)));
        }
    }
    Ok(first)
}

/// A duration as people read it in a reason: `3h`, `2d`, `45m`, `12s`.
pub(crate) fn human(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The rules of `rule` that the change's tokens (`group`) do not meet for this observation.
fn unmet_rules(
    rule: &PolicyRule,
    group: &[ApprovalRow],
    observed: &Observed,
    diff_digest: &Digest,
    staged: Option<DateTime<Utc>>,
) -> Vec<String> {
    let mut unmet = Vec::new();
    let mut signers: Vec<&str> = group.iter().map(|a| a.approver_id.as_str()).collect();
    signers.sort_unstable();
    signers.dedup();
    let mut reviewed: Vec<&str> = group
        .iter()
        .filter(|a| a.diff == Some(*diff_digest))
        .map(|a| a.approver_id.as_str())
        .collect();
    reviewed.sort_unstable();
    reviewed.dedup();
    let counted = if rule.diff_review {
        reviewed.len()
    } else {
        signers.len()
    };
    if counted < rule.approvals as usize {
        unmet.push(format!("approvals {counted} of {}", rule.approvals));
    }
    // Signatures without the reviewed diff are why the count falls short: say so.
    if rule.diff_review && counted < rule.approvals as usize && reviewed.len() < signers.len() {
        unmet.push(format!(
            "diff not reviewed ({} of {} approvals carry the digest {diff_digest} of the changes)",
            reviewed.len(),
            signers.len()
        ));
    }
    if rule.notice > TimeDelta::zero() {
        let first = group.iter().map(|a| a.received_at).min();
        let given = first.map_or(TimeDelta::zero(), |f| observed.reached_at - f);
        if given < rule.notice {
            unmet.push(format!("notice {} of {}", human(given), human(rule.notice)));
        }
    }
    if rule.require_staging && staged.is_none_or(|s| s > observed.reached_at) {
        unmet.push("not staged".to_owned());
    }
    unmet
}

/// Applies the approvals that cover the asset's observation, if their change policy is met
/// (see the module documentation). `observed_now`: the asset is in that state right now.
pub(crate) fn try_apply(
    conn: &Connection,
    clock: &dyn Clock,
    rules: &ChangeRules,
    observed: &Observed,
    observed_now: bool,
) -> Result<Verdict, StoreError> {
    let now = clock.now();
    let baseline = current_baseline(conn, &observed.asset)?;
    let candidates: Vec<ApprovalRow> =
        approvals_where(conn, "status = 'pending' AND asset = ?1", &observed.asset)?
            .into_iter()
            .filter(|a| {
                approvals::covers(
                    a,
                    observed,
                    baseline.as_ref().map(|b| &b.digest),
                    now + rules.skew,
                )
            })
            .collect();
    if candidates.is_empty() {
        return Ok(Verdict::None);
    }
    let mut groups: Vec<(String, Vec<ApprovalRow>)> = Vec::new();
    for a in candidates {
        match groups.iter_mut().find(|(c, _)| *c == a.change_id) {
            Some((_, g)) => g.push(a),
            None => groups.push((a.change_id.clone(), vec![a])),
        }
    }
    let diff = match &baseline {
        Some(b) => Diff::between(
            &load_snapshot(conn, &b.digest)?,
            &load_snapshot(conn, &observed.digest)?,
        ),
        None => Diff::default(),
    };
    let diff_digest = diff.content_digest();
    let staged = staged_at(conn, rules, &observed.content)?;
    let mut first_unmet = None;
    for (change_id, group) in groups {
        let emergency = group.iter().find(|a| a.kind == "emergency");
        let rule = rule_for(rules, &diff, &group);
        let unmet = match (emergency, rule) {
            (Some(_), _) | (None, None) => Vec::new(),
            (None, Some(rule)) => unmet_rules(rule, &group, observed, &diff_digest, staged),
        };
        if unmet.is_empty() {
            let applied = apply_group(conn, clock, &group, observed, observed_now)?;
            crate::reviews::record_change(
                conn,
                clock,
                &group,
                rule,
                &applied.baseline,
                observed,
                &diff_digest,
            )?;
            return Ok(Verdict::Applied(Box::new(applied)));
        }
        let reason = format!("waiting for: {}", unmet.join("; "));
        for a in &group {
            conn.execute(
                "UPDATE approvals SET reason = ?2 WHERE id = ?1",
                params![a.id, reason],
            )?;
        }
        if first_unmet.is_none() {
            first_unmet = Some(Verdict::Unmet {
                change_id,
                policy: rule.map(|r| r.id.clone()).unwrap_or_default(),
                unmet,
            });
        }
    }
    Ok(first_unmet.unwrap_or(Verdict::None))
}

/// Applies a change's tokens: the first moves the baseline, the others are applied with it
/// (co-signatures of the same change).
fn apply_group(
    conn: &Connection,
    clock: &dyn Clock,
    group: &[ApprovalRow],
    observed: &Observed,
    observed_now: bool,
) -> Result<AppliedApproval, StoreError> {
    let (first, rest) = group
        .split_first()
        .ok_or_else(|| StoreError::Corrupt("an empty approval group".to_owned()))?;
    let applied = approvals::apply(conn, clock, first, &observed.digest, observed_now)?;
    let now = format_timestamp(clock.now());
    for other in rest {
        conn.execute(
            "UPDATE approvals SET status = 'applied', applied_at = ?2, baseline_id = ?3,
                 reason = NULL
             WHERE id = ?1",
            params![other.id, now, applied.baseline.id],
        )?;
        audit::append(
            conn,
            clock,
            "approval.applied",
            Some(&other.asset),
            &json!({
                "approval_id": other.id,
                "jti": other.jti,
                "asset": other.asset,
                "change_id": other.change_id,
                "kind": other.kind,
                "approver_id": other.approver_id,
                "approver": other.approver,
                "to": observed.digest.to_string(),
                "co_signature_of": first.jti,
            }),
        )?;
    }
    conn.execute(
        "UPDATE approvals SET reason = NULL WHERE id = ?1",
        [first.id],
    )?;
    Ok(applied)
}

/// A capture of staging controller `observed.asset` (for production `production`): links
/// every change approving its content for production (`change.staged`, once per change and
/// staging controller), and applies a `content` approval of production to the staging
/// controller itself when its identity is unchanged. Returns the baseline move, if any.
pub(crate) fn on_staging_capture(
    conn: &Connection,
    clock: &dyn Clock,
    production: &str,
    observed: &Observed,
) -> Result<Option<AppliedApproval>, StoreError> {
    let approving: Vec<ApprovalRow> = approvals_where(
        conn,
        "asset = ?1 AND status IN ('pending', 'applied') AND content_digest IS NOT NULL",
        &production,
    )?
    .into_iter()
    .filter(|a| a.content == Some(observed.content))
    .collect();
    for a in &approving {
        link(
            conn,
            clock,
            a,
            production,
            &observed.asset,
            observed.capture_id,
            observed.reached_at,
        )?;
    }
    let Some(approval) = approving.first() else {
        return Ok(None);
    };
    let baseline = current_baseline(conn, &observed.asset)?;
    if baseline
        .as_ref()
        .is_some_and(|b| b.digest == observed.digest)
        || observed.baseline_identity != Some(observed.identity)
    {
        return Ok(None);
    }
    let now = clock.now();
    let moved = insert_baseline(
        conn,
        &observed.asset,
        &observed.digest,
        false,
        now,
        "staging",
        Some(&approval.change_id),
        Some(observed.capture_id),
    )?;
    let drift = crate::ingest::approve_open_drift(
        conn,
        clock,
        &observed.asset,
        &approval.change_id,
        approval.id,
        &observed.digest,
    )?;
    let body = json!({
        "asset": observed.asset,
        "baseline_id": moved.id,
        "previous_digest": baseline.as_ref().map(|b| b.digest.to_string()),
        "digest": observed.digest.to_string(),
        "change_id": approval.change_id,
        "approval_id": approval.id,
        "reason": "staging",
        "production": production,
    });
    audit::append(conn, clock, "baseline.moved", Some(&observed.asset), &body)?;
    enqueue(
        conn,
        clock,
        event_type::BASELINE_MOVED,
        Some(&observed.asset),
        &json!({
            "asset": observed.asset,
            "digest": observed.digest.to_string(),
            "previous_digest": baseline.as_ref().map(|b| b.digest.to_string()),
            "provisional": false,
            "reason": "staging",
            "change_id": approval.change_id,
            "set_at": format_timestamp(now),
            "production": production,
            "drift_id": drift.as_ref().map(|d| d.id),
        }),
    )?;
    Ok(Some(AppliedApproval {
        approval: approval.clone(),
        baseline: moved,
        previous: baseline,
        drift,
    }))
}

/// Links `approval`'s change to a staging capture (once per change and staging controller).
fn link(
    conn: &Connection,
    clock: &dyn Clock,
    approval: &ApprovalRow,
    production: &str,
    staging: &str,
    capture_id: i64,
    seen_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(content) = approval.content else {
        return Ok(());
    };
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO staging_links(change_id, production, staging, capture_id,
             content_digest, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            approval.change_id,
            production,
            staging,
            capture_id,
            content.to_string(),
            format_timestamp(seen_at)
        ],
    )?;
    if inserted == 1 {
        let body = json!({
            "change_id": approval.change_id,
            "asset": production,
            "staging_asset": staging,
            "content_digest": content.to_string(),
            "capture_id": capture_id,
            "seen_at": format_timestamp(seen_at),
        });
        audit::append_with_event(
            conn,
            clock,
            "change.staged",
            event_type::CHANGE_STAGED,
            Some(production),
            &body,
        )?;
    }
    Ok(())
}

/// At the submission of a `content` approval: a staging controller that already ran that
/// content (before the token arrived) is linked to the change.
pub(crate) fn link_earlier_staging(
    conn: &Connection,
    clock: &dyn Clock,
    approval: &ApprovalRow,
    rules: &ChangeRules,
) -> Result<(), StoreError> {
    let Some(content) = approval.content else {
        return Ok(());
    };
    for staging in &rules.staging {
        let seen: Option<(i64, String)> = conn
            .query_row(
                "SELECT c.id, c.first_seen FROM captures c JOIN snapshots s ON s.digest = c.digest
                 WHERE c.asset = ?1 AND s.content_digest = ?2 ORDER BY c.first_seen LIMIT 1",
                params![staging, content.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((capture_id, seen)) = seen {
            link(
                conn,
                clock,
                approval,
                &approval.asset,
                staging,
                capture_id,
                ts(&seen)?,
            )?;
        }
    }
    Ok(())
}
