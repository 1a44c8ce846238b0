//! Approvals: verifying a signed token and handing it to the store, shared by
//! `otdrift approve` and `POST /v1/approvals`. The state machine an approval goes through is
//! documented in `otdrift_store`'s approvals module and in ARCHITECTURE.md.

pub mod names;
pub mod token;

use chrono::TimeDelta;
use otdrift_config::Config;
use otdrift_store::{
    AppliedApproval, ApprovalDecision, ApprovalInput, ApprovalRow, ReviewInput, ReviewOutcome,
    Store, StoreError, WithdrawInput,
};
use serde_json::{Value as Json, json};

pub use token::{Kind, Rejection, VerifiedToken};

/// What submitting a token did.
#[derive(Debug)]
pub enum Outcome {
    /// The asset is in the approved state: its baseline moved.
    Applied {
        /// The token.
        token: Box<VerifiedToken>,
        /// What the store did.
        applied: Box<AppliedApproval>,
    },
    /// Held until a capture observes the approved state, or `exp`.
    Pending {
        /// The token.
        token: Box<VerifiedToken>,
        /// The stored approval.
        approval: Box<ApprovalRow>,
    },
    /// A review of an emergency change was recorded.
    Reviewed {
        /// The review token.
        token: Box<VerifiedToken>,
        /// Where the change's review stands.
        review: Box<ReviewOutcome>,
    },
    /// A pending approval was withdrawn (it is now `refused`).
    Withdrawn {
        /// The withdraw token.
        token: Box<VerifiedToken>,
        /// The approval it withdrew.
        approval: Box<ApprovalRow>,
    },
    /// A token for a list of assets: what it did to each (applied, pending or rejected).
    Assets {
        /// The token.
        token: Box<VerifiedToken>,
        /// Each asset in the order the token names them, with its outcome.
        results: Vec<(String, Outcome)>,
    },
    /// Refused; already recorded in the audit log and as an `approval.rejected` event.
    Rejected {
        /// Stable reason code.
        code: String,
        /// The reason for people.
        message: String,
    },
}

/// The source of a token submitted on the command line, for rate limits and the audit log.
pub const COMMAND_LINE: &str = "command-line";

/// Hands one asset's approval of a verified token to the store (`jti` is the token's, or for a
/// token for a list of assets, the token's with the asset appended).
fn submit_one(
    config: &Config,
    store: &mut Store,
    verified: &VerifiedToken,
    jti: &str,
    asset: &otdrift_config::AssetConfig,
    to: Option<otdrift_core::Digest>,
    source: &str,
) -> Result<ApprovalDecision, StoreError> {
    let c = &verified.claims;
    let now = store.clock().now();
    let max_age = asset.approval_max_observation_age(&config.agent, now);
    let rules = crate::rules::change_rules(config, asset);
    store.submit_approval(&ApprovalInput {
        jti,
        asset: &asset.id,
        change_id: &c.change_id,
        kind: c.kind.as_str(),
        approver_id: &c.iss,
        approver: c.approver.as_deref(),
        requestor: c.requestor.as_deref(),
        from: c.from,
        to,
        content: c.content,
        diff: c.diff,
        issued_at: c.iat,
        not_before: c.nbf,
        expires_at: c.exp,
        token: &verified.raw,
        claims: &verified.claims_json,
        max_observation_age: TimeDelta::from_std(max_age).unwrap_or(TimeDelta::MAX),
        source,
        rules: &rules,
    })
}

/// The rejection code of an asset in a token for a list of assets whose open drift is not a
/// capture change.
pub const NOT_CAPTURE_CHANGE: &str = "not-capture-change";

/// A token for a list of assets (`assets` claim): each asset's part is an approval of its
/// own (token id `<jti>/<asset>`), matched and recorded as if it came alone, and allowed only
/// where the asset's open drift has reason `capture_changed` (a new setpoint range or layout,
/// an agent that reads more, on many assets at once): one signature may re-baseline what the
/// agent reads, never what a device runs.
fn submit_assets(
    config: &Config,
    store: &mut Store,
    verified: VerifiedToken,
    source: &str,
) -> Result<Outcome, StoreError> {
    let c = &verified.claims;
    let mut results = Vec::with_capacity(c.assets.len());
    for (id, to) in &c.assets {
        let jti = format!("{}/{id}", c.jti);
        let Some(asset) = config.asset(id) else {
            continue; // verify() refuses assets that are not configured.
        };
        let open = store.drift_events(&otdrift_store::DriftFilter {
            asset: Some(id.clone()),
            open_only: true,
        })?;
        let capture_change = open
            .first()
            .is_some_and(|d| d.reason == otdrift_store::DriftReason::CaptureChanged);
        if !capture_change {
            let message = format!(
                "asset {id:?} has no open capture_changed drift: a token for a list of assets approves only capture changes, each device change needs its own token"
            );
            let details = json!({
                "kid": c.iss, "jti": jti, "sub": id, "change_id": c.change_id, "verified": true,
            });
            store.record_rejection(source, NOT_CAPTURE_CHANGE, &message, &details, Some(id))?;
            results.push((
                id.clone(),
                Outcome::Rejected {
                    code: NOT_CAPTURE_CHANGE.to_owned(),
                    message,
                },
            ));
            continue;
        }
        let mut one = verified.clone();
        one.claims.sub = id.clone();
        one.claims.to = Some(*to);
        one.claims.jti = jti.clone();
        let outcome = match submit_one(config, store, &verified, &jti, asset, Some(*to), source)? {
            ApprovalDecision::Applied(applied) => Outcome::Applied {
                token: Box::new(one),
                applied,
            },
            ApprovalDecision::Pending(approval) => Outcome::Pending {
                token: Box::new(one),
                approval,
            },
            ApprovalDecision::Rejected(refusal) => Outcome::Rejected {
                code: refusal.code().to_owned(),
                message: refusal.to_string(),
            },
        };
        results.push((id.clone(), outcome));
    }
    Ok(Outcome::Assets {
        token: Box::new(verified),
        results,
    })
}

/// One asset's part of a token for a list of assets, as `approve --json` and the API show it.
pub fn asset_result_json(asset: &str, outcome: &Outcome) -> Json {
    match outcome {
        Outcome::Applied { applied, .. } => json!({
            "asset": asset,
            "status": "applied",
            "baseline": {
                "digest": applied.baseline.digest,
                "previous": applied.previous.as_ref().map(|b| b.digest),
            },
            "drift_id": applied.drift.as_ref().map(|d| d.id),
        }),
        Outcome::Pending { approval, .. } => json!({
            "asset": asset,
            "status": "pending",
            "to": approval.to,
            "waiting_for": approval.reason,
        }),
        Outcome::Rejected { code, message } => json!({
            "asset": asset,
            "status": "rejected",
            "reason": code,
            "message": message,
        }),
        _ => json!({"asset": asset, "status": "unexpected"}),
    }
}

/// The rejection code of an envelope that covers something other than the asset's setpoints.
pub const ENVELOPE_REFUSED: &str = "envelope";

/// Why an envelope cannot be approved for `asset`, if it cannot: a pattern that covers an
/// identity, program or history item (only setpoints may move without approval), or one that
/// matches no item at all (a typo would otherwise approve nothing and say nothing). Checked
/// against the approved state when the agent has seen it, else the asset's latest capture.
fn misplaced_envelope(
    store: &Store,
    asset: &str,
    to: Option<otdrift_core::Digest>,
    envelope: &otdrift_core::Envelope,
) -> Result<Option<String>, StoreError> {
    let state = match to {
        Some(to) if store.has_snapshot(&to)? => Some(to),
        _ => store.latest_capture(asset)?.map(|c| c.digest),
    };
    let Some(state) = state else {
        return Ok(Some(format!(
            "the envelope cannot be checked: asset {asset:?} has no capture yet"
        )));
    };
    let snapshot = store.snapshot(&state)?;
    let (unmatched, forbidden) = envelope.misplaced(&snapshot);
    if let Some(path) = forbidden.first() {
        let class = snapshot.get(path).map_or("", |i| i.class().as_str());
        return Ok(Some(format!(
            "the envelope covers {path} ({class}): envelopes cover setpoints only"
        )));
    }
    if let Some(pattern) = unmatched.first() {
        return Ok(Some(format!(
            "the envelope pattern {pattern:?} matches no setpoint of asset {asset:?} (state {state})"
        )));
    }
    Ok(None)
}

/// Verifies `raw` against the config and submits it to the store. Every outcome, a rejection
/// for whatever reason included, is recorded by the store before this returns. `source`
/// names who submitted it (an API client's address, or [`COMMAND_LINE`]).
pub fn submit(
    config: &Config,
    store: &mut Store,
    raw: &str,
    source: &str,
) -> Result<Outcome, StoreError> {
    let now = store.clock().now();
    let asset_known = |id: &str| config.asset(id).is_some();
    let cx = token::VerifyContext {
        approvers: &config.approvers,
        asset_known: &asset_known,
        now,
        skew: TimeDelta::seconds(i64::try_from(config.agent.clock_skew_secs).unwrap_or(3600)),
        max_lifetime: TimeDelta::from_std(config.agent.max_token_lifetime)
            .unwrap_or(TimeDelta::MAX),
    };
    let verified = match token::verify(raw, &cx) {
        Ok(v) => v,
        Err(rejection) => {
            let (header, claims) = token::peek(raw);
            let field = |doc: &Option<Json>, key: &str| {
                doc.as_ref()
                    .and_then(|d| d.get(key))
                    .and_then(Json::as_str)
                    .map(str::to_owned)
            };
            let sub = field(&claims, "sub");
            // Only a configured asset id goes into the event's asset field; anything else a
            // token claims stays in the (unverified) details.
            let asset = sub.as_deref().filter(|s| config.asset(s).is_some());
            let details = json!({
                "kid": field(&header, "kid"),
                "alg": field(&header, "alg"),
                "jti": field(&claims, "jti"),
                "sub": sub,
                "change_id": field(&claims, "change_id"),
                "verified": false,
            });
            let message = rejection.to_string();
            store.record_rejection(source, rejection.code(), &message, &details, asset)?;
            return Ok(Outcome::Rejected {
                code: rejection.code().to_owned(),
                message,
            });
        }
    };
    let c = &verified.claims;
    if let Some(target) = &c.withdraws {
        let result = store.withdraw_approval(&WithdrawInput {
            jti: &c.jti,
            asset: &c.sub,
            change_id: &c.change_id,
            approver_id: &c.iss,
            approver: c.approver.as_deref(),
            target_jti: target,
            token: &verified.raw,
            claims: &verified.claims_json,
            source,
        })?;
        return Ok(match result {
            Ok(approval) => Outcome::Withdrawn {
                token: Box::new(verified),
                approval: Box::new(approval),
            },
            Err(refusal) => Outcome::Rejected {
                code: refusal.code().to_owned(),
                message: refusal.to_string(),
            },
        });
    }
    if !c.assets.is_empty() {
        return submit_assets(config, store, verified, source);
    }
    let Some(asset) = config.asset(&c.sub) else {
        // verify() refuses tokens for assets that are not configured.
        return Ok(Outcome::Rejected {
            code: "unknown-asset".to_owned(),
            message: format!("asset {:?} is not configured on this agent", c.sub),
        });
    };
    if c.kind == Kind::Review {
        let Some(to) = c.to else {
            return Ok(Outcome::Rejected {
                code: "missing-claim".to_owned(),
                message: "the token has no `to` claim".to_owned(),
            });
        };
        let result = store.submit_review(&ReviewInput {
            jti: &c.jti,
            change_id: &c.change_id,
            asset: &c.sub,
            approver_id: &c.iss,
            approver: c.approver.as_deref(),
            to,
            diff: c.diff,
            token: &verified.raw,
            claims: &verified.claims_json,
            source,
        })?;
        return Ok(match result {
            Ok(review) => Outcome::Reviewed {
                token: Box::new(verified),
                review: Box::new(review),
            },
            Err(refusal) => Outcome::Rejected {
                code: refusal.code().to_owned(),
                message: refusal.to_string(),
            },
        });
    }
    if let Some(envelope) = c.envelope.as_ref().filter(|e| !e.is_empty())
        && let Some(message) = misplaced_envelope(store, &c.sub, c.to, envelope)?
    {
        let details = json!({
            "kid": c.iss,
            "jti": c.jti,
            "sub": c.sub,
            "change_id": c.change_id,
            "verified": true,
        });
        store.record_rejection(source, ENVELOPE_REFUSED, &message, &details, Some(&c.sub))?;
        return Ok(Outcome::Rejected {
            code: ENVELOPE_REFUSED.to_owned(),
            message,
        });
    }
    let decision = submit_one(config, store, &verified, &c.jti, asset, c.to, source)?;
    Ok(match decision {
        ApprovalDecision::Applied(applied) => Outcome::Applied {
            token: Box::new(verified),
            applied,
        },
        ApprovalDecision::Pending(approval) => Outcome::Pending {
            token: Box::new(verified),
            approval,
        },
        ApprovalDecision::Rejected(refusal) => Outcome::Rejected {
            code: refusal.code().to_owned(),
            message: refusal.to_string(),
        },
    })
}
