//! The approval types the store takes and gives: verified tokens in, rows and decisions out.

use chrono::{DateTime, Utc};
use otdrift_core::{Digest, format_timestamp};

use crate::StoreError;
use crate::model::{Baseline, DriftEvent};

/// A verified approval token, as the store records it.
#[derive(Clone, Debug)]
pub struct ApprovalInput<'a> {
    /// The token's unique id.
    pub jti: &'a str,
    /// The asset (`sub`).
    pub asset: &'a str,
    /// The change ticket.
    pub change_id: &'a str,
    /// `standard`, `normal` or `emergency`.
    pub kind: &'a str,
    /// The configured approver whose key signed it (`kid` = `iss`).
    pub approver_id: &'a str,
    /// The approving person, as the change system names them.
    pub approver: Option<&'a str>,
    /// The requesting person.
    pub requestor: Option<&'a str>,
    /// The state the change starts from, when the token names one.
    pub from: Option<Digest>,
    /// The approved state (`to`): this device in exactly this state.
    pub to: Option<Digest>,
    /// The approved content (`content`, a change signature): any controller running it,
    /// with the asset's identity unchanged. Exactly one of `to` and `content` is set.
    pub content: Option<Digest>,
    /// The digest of the content changes the approver reviewed (`diff`).
    pub diff: Option<Digest>,
    /// `iat`.
    pub issued_at: DateTime<Utc>,
    /// `nbf`.
    pub not_before: DateTime<Utc>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
    /// The compact JWS, kept verbatim for evidence packs.
    pub token: &'a str,
    /// The decoded claims.
    pub claims: &'a serde_json::Value,
    /// How recently `to` must have been seen for the approval to apply at once; an older
    /// observation makes it pending until the next capture.
    pub max_observation_age: chrono::TimeDelta,
    /// Who submitted it (an API client's address, `command-line`), for rate limits.
    pub source: &'a str,
    /// The asset's change policy and staging relations.
    pub rules: &'a crate::ChangeRules,
}

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalStatus {
    /// Waiting for the asset to reach `to`.
    Pending,
    /// The baseline moved.
    Applied,
    /// Refused for a reason that depends on the asset's state.
    Rejected,
    /// `exp` passed before the asset reached `to`.
    Expired,
    /// The baseline moved elsewhere and the approval's `from` is absent or no longer the
    /// baseline: it can never apply safely.
    Superseded,
    /// An approver withdrew it.
    Refused,
}

impl ApprovalStatus {
    /// The status's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Applied => "applied",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Superseded => "superseded",
            ApprovalStatus::Refused => "refused",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(ApprovalStatus::Pending),
            "applied" => Ok(ApprovalStatus::Applied),
            "rejected" => Ok(ApprovalStatus::Rejected),
            "expired" => Ok(ApprovalStatus::Expired),
            "superseded" => Ok(ApprovalStatus::Superseded),
            "refused" => Ok(ApprovalStatus::Refused),
            other => Err(StoreError::Corrupt(format!(
                "unknown approval status {other:?}"
            ))),
        }
    }
}

/// A stored approval.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRow {
    /// Row id.
    pub id: i64,
    /// The token's unique id.
    pub jti: String,
    /// The asset.
    pub asset: String,
    /// The change ticket.
    pub change_id: String,
    /// `standard`, `normal` or `emergency`.
    pub kind: String,
    /// The configured approver (`kid`).
    pub approver_id: String,
    /// The approving person.
    pub approver: Option<String>,
    /// The requesting person.
    pub requestor: Option<String>,
    /// `from`.
    pub from: Option<Digest>,
    /// `to`: the approved state, when the token names one.
    pub to: Option<Digest>,
    /// `content`: the approved change signature, when the token names one.
    pub content: Option<Digest>,
    /// `diff`: the digest of the content changes the approver reviewed.
    pub diff: Option<Digest>,
    /// The state the baseline moved to when it was applied.
    pub applied_digest: Option<Digest>,
    /// `iat`.
    pub issued_at: DateTime<Utc>,
    /// `nbf`.
    pub not_before: DateTime<Utc>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
    /// The compact JWS as received.
    pub token: String,
    /// The decoded claims.
    pub claims: serde_json::Value,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Why it was rejected or expired.
    pub reason: Option<String>,
    /// When the agent received it.
    pub received_at: DateTime<Utc>,
    /// When it moved the baseline.
    pub applied_at: Option<DateTime<Utc>>,
    /// Issued after the approved state was first seen.
    pub retroactive: bool,
    /// The baseline it created.
    pub baseline_id: Option<i64>,
    /// When it became superseded, expired or refused.
    pub closed_at: Option<DateTime<Utc>>,
}

/// Why the store refused a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalRefusal {
    /// The `jti` was used before.
    Replay {
        /// The token id.
        jti: String,
        /// When it was first received.
        first_received: DateTime<Utc>,
    },
    /// `from` is not the asset's current baseline.
    FromMismatch {
        /// The token's `from`.
        from: Digest,
        /// The current baseline, if any.
        baseline: Option<Digest>,
    },
    /// A review names a change that is not an emergency awaiting review on this asset, or
    /// another state than the one the change applied.
    NotUnderReview {
        /// The change it names.
        change_id: String,
        /// Where that change stands, if it exists.
        status: Option<String>,
    },
    /// A withdrawal names an approval that is not pending on this asset.
    NotPending {
        /// The `jti` it names.
        target: String,
        /// Where that approval stands, if it exists.
        status: Option<ApprovalStatus>,
    },
}

impl ApprovalRefusal {
    /// A stable reason code for events and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalRefusal::Replay { .. } => "replay",
            ApprovalRefusal::FromMismatch { .. } => "from-mismatch",
            ApprovalRefusal::NotPending { .. } => "not-pending",
            ApprovalRefusal::NotUnderReview { .. } => "not-under-review",
        }
    }
}

impl std::fmt::Display for ApprovalRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApprovalRefusal::Replay {
                jti,
                first_received,
            } => write!(
                f,
                "token id (jti) {jti:?} was already used on {}",
                format_timestamp(*first_received)
            ),
            ApprovalRefusal::FromMismatch { from, baseline } => match baseline {
                Some(b) => write!(
                    f,
                    "the token's `from` {from} is not the asset's current baseline {b}"
                ),
                None => write!(
                    f,
                    "the token's `from` {from} names a baseline, but the asset has none yet"
                ),
            },
            ApprovalRefusal::NotUnderReview { change_id, status } => match status {
                Some(status) => write!(
                    f,
                    "change {change_id:?} on this asset is {status}, or applied another state: only an emergency change is reviewed, with `to` = the state it applied"
                ),
                None => write!(
                    f,
                    "change {change_id:?} moved no baseline of this asset: there is nothing to review"
                ),
            },
            ApprovalRefusal::NotPending { target, status } => match status {
                Some(status) => write!(
                    f,
                    "approval {target:?} is {}, not pending: only a pending approval can be withdrawn",
                    status.as_str()
                ),
                None => write!(f, "no approval {target:?} on this asset"),
            },
        }
    }
}

/// A verified `withdraw` token, as the store records it.
#[derive(Clone, Debug)]
pub struct WithdrawInput<'a> {
    /// The withdrawal's own token id.
    pub jti: &'a str,
    /// The asset (`sub`).
    pub asset: &'a str,
    /// The change ticket the withdrawal belongs to.
    pub change_id: &'a str,
    /// The configured approver whose key signed it.
    pub approver_id: &'a str,
    /// The withdrawing person.
    pub approver: Option<&'a str>,
    /// The `jti` of the pending approval to withdraw.
    pub target_jti: &'a str,
    /// The compact JWS as received.
    pub token: &'a str,
    /// The decoded claims.
    pub claims: &'a serde_json::Value,
    /// Who submitted it, for rate limits.
    pub source: &'a str,
}

/// An approval that moved a baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedApproval {
    /// The approval, now applied.
    pub approval: ApprovalRow,
    /// The new baseline.
    pub baseline: Baseline,
    /// The baseline it replaced.
    pub previous: Option<Baseline>,
    /// The drift event it approved, if one was open for this state.
    pub drift: Option<DriftEvent>,
}

/// What submitting a verified token did.
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalDecision {
    /// The asset is in the approved state: the baseline moved.
    Applied(Box<AppliedApproval>),
    /// Held until the asset reaches `to` or the token expires.
    Pending(Box<ApprovalRow>),
    /// Refused; the reason is recorded in the audit log and as an event.
    Rejected(ApprovalRefusal),
}
