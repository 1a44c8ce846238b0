//! Approval tokens: JWS compact serialization (RFC 7515), EdDSA (Ed25519) only.
//!
//! Verification order matters and is fixed:
//! 1. shape: three base64url parts (no padding), at most [`MAX_TOKEN_LEN`] bytes;
//! 2. header: a strict JSON object (no member twice, see [`crate::strict_json`]) whose `alg`
//!    is exactly `EdDSA`; anything else (`none`, `HS256` keyed with the public key, ...) is
//!    refused **before any key is looked up**; no `crit`;
//! 3. `kid` names a configured approver, and the signature verifies (strict Ed25519) against
//!    that approver's key over `header.payload` as received;
//! 4. only then are the claims read, again as strict JSON: `iss` = `kid`, required claims
//!    present and typed, time claims inside years 1970-9999 with `nbf <= exp` and `iat <= exp`,
//!    a lifetime `exp - iat` of at most `[agent] max_token_lifetime`, the time window (`nbf` ..
//!    `exp`, and `iat` not in the future, each with the configured clock skew), the claims of
//!    the token's kind (`to`/`from` digests for approvals, `withdraws` for a withdrawal),
//!    separation of duties ([`names`](super::names): the requestor is required for `standard`
//!    and `normal` changes and is never the approver, the issuer or the signing approver's id),
//!    and `sub` a configured asset.
//!
//! Whether the token was used before (`jti`) and what it does to a baseline are decided by the
//! store, in the same transaction that records it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use otdrift_config::ApproverConfig;
use otdrift_core::Digest;
use serde_json::{Map, Value as Json, json};

/// Tokens longer than this are refused unread: a real one is well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a token is for: three kinds of change approval, and the withdrawal of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A pre-approved routine change.
    Standard,
    /// A change that went through the normal approval process.
    Normal,
    /// An emergency change: the only kind that may be approved after it was implemented, and
    /// the only approval that may come without a `requestor` (the on-call engineer who fixes
    /// the line at night may be alone); when it names one, the requestor still cannot be the
    /// approver.
    Emergency,
    /// Withdraws a pending approval (claim `withdraws` = its `jti`); approves nothing.
    Withdraw,
    /// Reviews an emergency change after the fact (`to` = the state it applied, no `from`):
    /// not an approval, the emergency already applied.
    Review,
}

impl Kind {
    /// The kind's name in tokens.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Standard => "standard",
            Kind::Normal => "normal",
            Kind::Emergency => "emergency",
            Kind::Withdraw => "withdraw",
            Kind::Review => "review",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard" => Some(Kind::Standard),
            "normal" => Some(Kind::Normal),
            "emergency" => Some(Kind::Emergency),
            "withdraw" => Some(Kind::Withdraw),
            "review" => Some(Kind::Review),
            _ => None,
        }
    }

    /// Whether the token approves a change (as opposed to withdrawing or reviewing one).
    pub const fn approves(self) -> bool {
        matches!(self, Kind::Standard | Kind::Normal | Kind::Emergency)
    }
}

/// The claims of a verified token.
#[derive(Clone, Debug, PartialEq)]
pub struct Claims {
    /// The approver id (= `kid`).
    pub iss: String,
    /// The asset.
    pub sub: String,
    /// The token's unique id.
    pub jti: String,
    /// Issued at.
    pub iat: DateTime<Utc>,
    /// Not before (`iat` when absent).
    pub nbf: DateTime<Utc>,
    /// Expires.
    pub exp: DateTime<Utc>,
    /// The change ticket.
    pub change_id: String,
    /// The approved state (`to`): this device in exactly this state. For a `review`, the
    /// state the emergency change applied.
    pub to: Option<Digest>,
    /// The approved content (`content`, a change signature): any controller running it with
    /// its identity unchanged. An approving token carries `to` or `content`, never both.
    pub content: Option<Digest>,
    /// The digest of the content changes the approver reviewed (`diff`), for policies with
    /// `diff_review`.
    pub diff: Option<Digest>,
    /// The state the change starts from.
    pub from: Option<Digest>,
    /// The `jti` of the pending approval a `withdraw` token withdraws.
    pub withdraws: Option<String>,
    /// The approving person.
    pub approver: Option<String>,
    /// The requesting person.
    pub requestor: Option<String>,
    /// The change kind.
    pub kind: Kind,
    /// The approved envelopes (`envelope`): setpoints that may move inside them without
    /// drift once the token applies. `None` without the claim (the baseline's envelope carries
    /// over); an empty object clears it.
    pub envelope: Option<otdrift_core::Envelope>,
    /// A token for a list of assets (`sub` = `*`): each asset with the exact state approved
    /// for it. Only capture changes are approved this way (see `approval::submit`).
    pub assets: Vec<(String, Digest)>,
}

/// A token whose signature and claims checked out.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The compact JWS as received (trimmed).
    pub raw: String,
    /// The decoded header.
    pub header: Json,
    /// The decoded claims, as sent.
    pub claims_json: Json,
    /// The typed claims.
    pub claims: Claims,
}

/// Why a token was refused. `code()` is stable (events, JSON, tests); `Display` is for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a JWS compact token, or undecodable parts.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm other than EdDSA.
    #[error("algorithm {0:?} is not accepted; approval tokens must be signed with EdDSA (Ed25519)")]
    Algorithm(String),
    /// `kid` names no configured approver.
    #[error("unknown approver {0:?}: no [[approver]] with this id in the config")]
    UnknownApprover(String),
    /// The signature does not verify with the approver's key.
    #[error("signature does not verify with the public key of approver {0:?}")]
    Signature(String),
    /// `iss` differs from `kid`.
    #[error("issuer `iss` {iss:?} differs from the signing key id `kid` {kid:?}")]
    IssuerMismatch {
        /// The claim.
        iss: String,
        /// The header.
        kid: String,
    },
    /// A required claim is absent.
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an invalid value.
    #[error("claim `{claim}`: {reason}")]
    BadClaim {
        /// Which claim.
        claim: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `to` or `from` is not a `blake3:` digest.
    #[error("claim `{claim}` is not a blake3 digest: {reason}")]
    BadDigest {
        /// `to` or `from`.
        claim: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `exp` has passed.
    #[error("token expired at {0}")]
    Expired(String),
    /// `nbf` (or `iat`) is in the future.
    #[error("token not valid yet: {0}")]
    NotYetValid(String),
    /// `requestor` names the approver (after Unicode normalisation, see
    /// [`names`](super::names)), the issuer, or the signing approver's id.
    #[error(
        "requestor {requestor:?} cannot approve their own change: it names the same person as {field} {other:?}"
    )]
    SelfApproved {
        /// The requestor as written.
        requestor: String,
        /// `approver`, `iss` or `kid`.
        field: &'static str,
        /// That field as written.
        other: String,
    },
    /// A member name appears twice in the header or the claims.
    #[error(
        "the {part} has the member {name:?} more than once; a token must say one thing to every reader"
    )]
    DuplicateMember {
        /// `header` or `claims`.
        part: &'static str,
        /// The member.
        name: String,
    },
    /// `exp - iat` is longer than `[agent] max_token_lifetime`.
    #[error(
        "the token is valid for {lifetime} (iat to exp), longer than this agent accepts ({max}, [agent] max_token_lifetime)"
    )]
    Lifetime {
        /// `exp - iat`.
        lifetime: String,
        /// The limit.
        max: String,
    },
    /// The time claims contradict each other (`nbf` after `exp`, `iat` after `exp`).
    #[error("the time claims contradict each other: {0}")]
    TimeWindow(String),
    /// `sub` is not a configured asset.
    #[error("asset {0:?} is not configured on this agent")]
    UnknownAsset(String),
}

impl Rejection {
    /// A stable reason code (events, JSON, tests).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::Algorithm(_) => "algorithm",
            Rejection::UnknownApprover(_) => "unknown-approver",
            Rejection::Signature(_) => "signature",
            Rejection::IssuerMismatch { .. } => "issuer-mismatch",
            Rejection::MissingClaim(_) => "missing-claim",
            Rejection::BadClaim { .. } => "bad-claim",
            Rejection::BadDigest { .. } => "bad-digest",
            Rejection::Expired(_) => "expired",
            Rejection::NotYetValid(_) => "not-yet-valid",
            Rejection::SelfApproved { .. } => "self-approved",
            Rejection::UnknownAsset(_) => "unknown-asset",
            Rejection::DuplicateMember { .. } => "duplicate-member",
            Rejection::Lifetime { .. } => "lifetime",
            Rejection::TimeWindow(_) => "time-window",
        }
    }
}

/// What verification checks against.
pub struct VerifyContext<'a> {
    /// The configured approvers.
    pub approvers: &'a [ApproverConfig],
    /// Whether an asset id is configured.
    pub asset_known: &'a dyn Fn(&str) -> bool,
    /// Now.
    pub now: DateTime<Utc>,
    /// Tolerance on `nbf`, `exp` and `iat`.
    pub skew: TimeDelta,
    /// The longest `exp - iat` accepted (`[agent] max_token_lifetime`).
    pub max_lifetime: TimeDelta,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD.decode(part).map_err(|e| {
        Rejection::Malformed(format!("the {what} is not base64url without padding: {e}"))
    })
}

fn json_object(bytes: &[u8], part: &'static str) -> Result<Map<String, Json>, Rejection> {
    match crate::strict_json::parse(bytes) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(Rejection::Malformed(format!(
            "the {part} is not a JSON object"
        ))),
        Err(crate::strict_json::StrictJsonError::DuplicateMember(name)) => {
            Err(Rejection::DuplicateMember { part, name })
        }
        Err(e) => Err(Rejection::Malformed(format!("the {part} is not JSON: {e}"))),
    }
}

fn string_claim(
    claims: &Map<String, Json>,
    name: &'static str,
) -> Result<Option<String>, Rejection> {
    match claims.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Err(Rejection::BadClaim {
            claim: name,
            reason: "is empty".to_owned(),
        }),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Rejection::BadClaim {
            claim: name,
            reason: format!("must be a string, not {other}"),
        }),
    }
}

fn required(claims: &Map<String, Json>, name: &'static str) -> Result<String, Rejection> {
    string_claim(claims, name)?.ok_or(Rejection::MissingClaim(name))
}

fn time_claim(
    claims: &Map<String, Json>,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, Rejection> {
    let bad = |reason: String| Rejection::BadClaim {
        claim: name,
        reason,
    };
    match claims.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => {
            // NumericDate: seconds since the epoch, possibly fractional (RFC 7519 §2).
            let secs = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.floor() as i64)
                })
                .ok_or_else(|| bad(format!("{n} is not a time")))?;
            // Years 1970 to 9999: every timestamp is then written and read back the same
            // way (RFC 3339 has four-digit years), and nothing sensible lies outside.
            const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
            if !(0..=LAST).contains(&secs) {
                return Err(bad(format!("{secs} is outside the years 1970 to 9999")));
            }
            DateTime::from_timestamp(secs, 0)
                .map(Some)
                .ok_or_else(|| bad(format!("{secs} is out of range")))
        }
        Some(other) => Err(bad(format!("must be seconds since the epoch, not {other}"))),
    }
}

fn digest_claim(
    claims: &Map<String, Json>,
    name: &'static str,
) -> Result<Option<Digest>, Rejection> {
    match claims.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => s.parse().map(Some).map_err(|e| Rejection::BadDigest {
            claim: name,
            reason: format!("{s:?}: {e}"),
        }),
        Some(other) => Err(Rejection::BadDigest {
            claim: name,
            reason: format!("{other} is not a string"),
        }),
    }
}

/// Verifies a compact JWS approval token (see the module documentation for the order).
pub fn verify(token: &str, cx: &VerifyContext<'_>) -> Result<VerifiedToken, Rejection> {
    let raw = token.trim();
    if raw.len() > MAX_TOKEN_LEN {
        return Err(Rejection::Malformed(format!(
            "{} bytes is longer than any approval token ({MAX_TOKEN_LEN})",
            raw.len()
        )));
    }
    let parts: Vec<&str> = raw.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(Rejection::Malformed(format!(
            "a JWS compact token has 3 dot-separated parts, this has {}",
            parts.len()
        )));
    };
    let header = json_object(&b64(header_b64, "header")?, "header")?;

    // The algorithm is pinned before any key is touched.
    let alg = match header.get("alg") {
        Some(Json::String(a)) => a.clone(),
        Some(other) => return Err(Rejection::Algorithm(other.to_string())),
        None => return Err(Rejection::Algorithm("(none given)".to_owned())),
    };
    if alg != "EdDSA" {
        return Err(Rejection::Algorithm(alg));
    }
    if header.contains_key("crit") {
        return Err(Rejection::Malformed(
            "the header has critical extensions (`crit`) this agent does not implement".to_owned(),
        ));
    }
    let kid = match header.get("kid") {
        Some(Json::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(Rejection::Malformed(
                "the header has no `kid` naming the approver".to_owned(),
            ));
        }
    };
    let approver = cx
        .approvers
        .iter()
        .find(|a| a.id == kid)
        .ok_or_else(|| Rejection::UnknownApprover(kid.clone()))?;
    let key = VerifyingKey::from_bytes(&approver.public_key)
        .map_err(|_| Rejection::Signature(kid.clone()))?;
    let signature_bytes = b64(signature_b64, "signature")?;
    let signature =
        Signature::from_slice(&signature_bytes).map_err(|_| Rejection::Signature(kid.clone()))?;
    let signed = format!("{header_b64}.{payload_b64}");
    key.verify_strict(signed.as_bytes(), &signature)
        .map_err(|_| Rejection::Signature(kid.clone()))?;

    // Signed by a configured approver: now the claims are worth reading.
    let claims = json_object(&b64(payload_b64, "payload")?, "claims")?;
    let iss = required(&claims, "iss")?;
    if iss != kid {
        return Err(Rejection::IssuerMismatch { iss, kid });
    }
    let sub = required(&claims, "sub")?;
    let jti = required(&claims, "jti")?;
    let change_id = required(&claims, "change_id")?;
    let kind_text = required(&claims, "kind")?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| Rejection::BadClaim {
        claim: "kind",
        reason: format!("{kind_text:?} is not standard, normal, emergency, review or withdraw"),
    })?;
    let approver_name = string_claim(&claims, "approver")?;
    let requestor = string_claim(&claims, "requestor")?;
    let iat = time_claim(&claims, "iat")?.ok_or(Rejection::MissingClaim("iat"))?;
    let exp = time_claim(&claims, "exp")?.ok_or(Rejection::MissingClaim("exp"))?;
    let nbf = time_claim(&claims, "nbf")?.unwrap_or(iat);

    let fmt = otdrift_core::format_timestamp;
    if nbf > exp {
        return Err(Rejection::TimeWindow(format!(
            "nbf {} is after exp {}",
            fmt(nbf),
            fmt(exp)
        )));
    }
    if iat > exp {
        return Err(Rejection::TimeWindow(format!(
            "iat {} is after exp {}",
            fmt(iat),
            fmt(exp)
        )));
    }
    if exp - iat > cx.max_lifetime {
        let human = |d: TimeDelta| {
            otdrift_config::format_duration(d.to_std().unwrap_or(std::time::Duration::MAX))
        };
        return Err(Rejection::Lifetime {
            lifetime: human(exp - iat),
            max: human(cx.max_lifetime),
        });
    }
    if cx.now - cx.skew >= exp {
        return Err(Rejection::Expired(fmt(exp)));
    }
    if nbf > cx.now + cx.skew {
        return Err(Rejection::NotYetValid(format!("nbf is {}", fmt(nbf))));
    }
    if iat > cx.now + cx.skew {
        return Err(Rejection::NotYetValid(format!(
            "issued in the future (iat {})",
            fmt(iat)
        )));
    }

    let forbid = |names: &[&'static str], why: &str| -> Result<(), Rejection> {
        match names.iter().find(|n| claims.contains_key(**n)) {
            Some(claim) => Err(Rejection::BadClaim {
                claim,
                reason: why.to_owned(),
            }),
            None => Ok(()),
        }
    };
    let diff = digest_claim(&claims, "diff")?;
    let assets = match claims.get("assets") {
        None => Vec::new(),
        Some(_) if !kind.approves() => {
            return Err(Rejection::BadClaim {
                claim: "assets",
                reason: format!("a {} token names one asset", kind.as_str()),
            });
        }
        Some(list) => {
            forbid(
                &["to", "content", "from", "diff", "envelope"],
                "a token for a list of assets names each asset's state in `assets`, nothing else",
            )?;
            if sub != ALL_ASSETS {
                return Err(Rejection::BadClaim {
                    claim: "sub",
                    reason: format!("a token with `assets` has `sub` = {ALL_ASSETS:?}"),
                });
            }
            assets_claim(list, cx)?
        }
    };
    let (to, content, from, withdraws) = match kind {
        _ if !assets.is_empty() => (None, None, None, None),
        Kind::Standard | Kind::Normal | Kind::Emergency => {
            let to = digest_claim(&claims, "to")?;
            let content = digest_claim(&claims, "content")?;
            match (to, content) {
                (Some(_), Some(_)) => {
                    return Err(Rejection::BadClaim {
                        claim: "content",
                        reason: "a token names `to` (this device in exactly this state) or `content` (any controller running this content), never both".to_owned(),
                    });
                }
                (None, None) => return Err(Rejection::MissingClaim("to")),
                _ => {}
            }
            (to, content, digest_claim(&claims, "from")?, None)
        }
        Kind::Review => {
            forbid(
                &["from", "content", "withdraws", "envelope"],
                "a review names the state the emergency change applied (`to`), nothing else",
            )?;
            let to = digest_claim(&claims, "to")?.ok_or(Rejection::MissingClaim("to"))?;
            (Some(to), None, None, None)
        }
        Kind::Withdraw => {
            forbid(
                &["to", "from", "content", "envelope"],
                "a withdraw token approves no state",
            )?;
            (None, None, None, Some(required(&claims, "withdraws")?))
        }
    };

    let envelope = claims
        .get("envelope")
        .map(otdrift_store::envelope::parse)
        .transpose()
        .map_err(|reason| Rejection::BadClaim {
            claim: "envelope",
            reason,
        })?;
    separation_of_duties(kind, requestor.as_deref(), approver_name.as_deref(), &iss)?;
    if assets.is_empty() && !(cx.asset_known)(&sub) {
        return Err(Rejection::UnknownAsset(sub));
    }
    Ok(VerifiedToken {
        raw: raw.to_owned(),
        header: Json::Object(header),
        claims_json: Json::Object(claims.clone()),
        claims: Claims {
            iss,
            sub,
            jti,
            iat,
            nbf,
            exp,
            change_id,
            to,
            content,
            diff,
            from,
            withdraws,
            approver: approver_name,
            requestor,
            kind,
            envelope,
            assets,
        },
    })
}

/// `sub` of a token for a list of assets.
pub const ALL_ASSETS: &str = "*";

/// The most assets one token may name.
pub const MAX_ASSETS: usize = 1000;

/// The `assets` claim: configured asset id → the `blake3:` state approved for it.
fn assets_claim(list: &Json, cx: &VerifyContext<'_>) -> Result<Vec<(String, Digest)>, Rejection> {
    let bad = |reason: String| Rejection::BadClaim {
        claim: "assets",
        reason,
    };
    let Some(list) = list.as_object().filter(|l| !l.is_empty()) else {
        return Err(bad(
            "must be a non-empty object: asset id → approved state".to_owned()
        ));
    };
    if list.len() > MAX_ASSETS {
        return Err(bad(format!(
            "names {} assets, at most {MAX_ASSETS}",
            list.len()
        )));
    }
    list.iter()
        .map(|(asset, to)| {
            if !(cx.asset_known)(asset) {
                return Err(Rejection::UnknownAsset(asset.clone()));
            }
            let to = to
                .as_str()
                .ok_or_else(|| bad(format!("{asset:?}: {to} is not a string")))?
                .parse()
                .map_err(|e| Rejection::BadDigest {
                    claim: "assets",
                    reason: format!("{asset:?}: {e}"),
                })?;
            Ok((asset.clone(), to))
        })
        .collect()
}

/// The requestor of a change never approves it: required for `standard` and `normal`
/// changes, optional for `emergency` ones (see [`Kind::Emergency`]), irrelevant to a
/// withdrawal. Names are compared by [`names::identity_key`](super::names::identity_key), with
/// the `approver` claim, the issuer and the signing approver's id (`kid`, equal to `iss` here).
fn separation_of_duties(
    kind: Kind,
    requestor: Option<&str>,
    approver: Option<&str>,
    iss: &str,
) -> Result<(), Rejection> {
    let requestor = match (kind, requestor) {
        (Kind::Withdraw | Kind::Review, _) | (Kind::Emergency, None) => return Ok(()),
        (_, None) => return Err(Rejection::MissingClaim("requestor")),
        (_, Some(r)) => r,
    };
    let others = [("approver", approver), ("iss", Some(iss))];
    for (field, other) in others {
        if let Some(other) = other
            && super::names::same_person(requestor, other)
        {
            return Err(Rejection::SelfApproved {
                requestor: requestor.to_owned(),
                field,
                other: other.to_owned(),
            });
        }
    }
    Ok(())
}

/// Decodes a token's header and claims without verifying anything, for showing what a rejected
/// token claimed (never for deciding anything).
pub fn peek(token: &str) -> (Option<Json>, Option<Json>) {
    let mut parts = token.trim().split('.');
    let mut decode = || {
        parts
            .next()
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
            .filter(Json::is_object)
    };
    let header = decode();
    let claims = decode();
    (header, claims)
}

/// Signs claims as a compact JWS with `alg` EdDSA and `kid`.
pub fn sign(claims: &Json, kid: &str, key: &SigningKey) -> String {
    let header = json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"});
    let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
    let payload_b64 = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header_b64}.{payload_b64}");
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}
