//! Evidence packs: everything an auditor needs about one change, signed by the agent.
//!
//! `evidence.json` is `{"pack": {...}, "signature": {...}}`. The schema is documented in
//! `docs/evidence-pack.md`; in short, the pack links the approval token (raw and decoded), the
//! people, the technician's before/after captures, the item-level diff, the baseline move, the
//! drift events, the audit-log entries with their chain hashes, the canonical encodings of
//! every snapshot it names (so digests and the diff can be recomputed offline), and flags
//! (e.g. an approval that came after the change was implemented).
//!
//! The signature is Ed25519 by the agent's identity key over the **canonical JSON** of `pack`:
//! object keys sorted by their UTF-8 bytes, no insignificant whitespace, strings and numbers
//! exactly as `serde_json` writes them. `evidence-verify` needs nothing but the file.

pub mod html;
pub mod verify;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey};
use otdrift_config::Config;
use otdrift_core::{Diff, Digest, Snapshot, format_timestamp};
use otdrift_store::{ApprovalRow, ApprovalStatus, CaptureRow, Phase, Store, StoreError};
use serde_json::{Value as Json, json};

use crate::keys;
use crate::render;

pub use verify::{KeyTrust, VerifyReport, verify};

/// The pack schema this build writes.
pub const SCHEMA: &str = "otdrift.evidence/v1";

/// Writes `v` as canonical JSON (see the module documentation).
pub fn canonical_json(v: &Json) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A problem assembling a pack.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Nothing is recorded under this change id.
    #[error(
        "nothing is recorded for change {0:?}: no approval, capture, baseline move or audit entry names it"
    )]
    Unknown(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn capture_json(store: &Store, c: &CaptureRow) -> Result<Json, StoreError> {
    let snapshot = store.snapshot(&c.digest)?;
    let d = snapshot.digests();
    Ok(json!({
        "capture_id": c.id,
        "asset": c.asset,
        "phase": c.phase,
        "change_id": c.change_id,
        "digest": c.digest,
        "classes": {
            "identity": d.identity,
            "program": d.program,
            "setpoint": d.setpoint,
            "history": d.history,
        },
        "change_signature": d.content,
        "items": snapshot.len(),
        "first_seen": format_timestamp(c.first_seen),
        "last_seen": format_timestamp(c.last_seen),
    }))
}

fn approval_json(a: &ApprovalRow, approver_key: Option<String>) -> Json {
    let (header, _) = crate::approval::token::peek(&a.token);
    json!({
        "approval_id": a.id,
        "status": a.status.as_str(),
        "reason": a.reason,
        "jti": a.jti,
        "asset": a.asset,
        "kind": a.kind,
        "approver_id": a.approver_id,
        "approver_public_key": approver_key,
        "approver": a.approver,
        "requestor": a.requestor,
        "from": a.from,
        "to": a.to,
        "content": a.content,
        "diff": a.diff,
        "applied_digest": a.applied_digest,
        "issued_at": format_timestamp(a.issued_at),
        "not_before": format_timestamp(a.not_before),
        "expires_at": format_timestamp(a.expires_at),
        "received_at": format_timestamp(a.received_at),
        "applied_at": a.applied_at.map(format_timestamp),
        "retroactive": a.retroactive,
        "baseline_id": a.baseline_id,
        "token": a.token,
        "header": header,
        "claims": a.claims,
    })
}

/// The elements of the array `key` of `v`; none when it is absent or not an array (the
/// verifier judges a pack's shape itself; readers only list what is there).
pub(crate) fn list<'a>(v: &'a Json, key: &str) -> impl Iterator<Item = &'a Json> {
    v.get(key).and_then(Json::as_array).into_iter().flatten()
}

fn flag(level: &str, code: &str, message: String) -> Json {
    json!({"level": level, "code": code, "message": message})
}

/// Assembles and signs the evidence pack for `change_id`.
pub fn build(
    store: &Store,
    config: &Config,
    agent_key: &SigningKey,
    change_id: &str,
) -> Result<Json, EvidenceError> {
    let approver_key = |id: &str| {
        config
            .approver(id)
            .and_then(|a| ed25519_dalek::VerifyingKey::from_bytes(&a.public_key).ok())
            .map(|k| keys::public_key_text(&k))
    };
    let approvals = store.approvals_for_change(change_id)?;
    let captures = store.captures_for_change(change_id)?;
    let quoted = Json::String(change_id.to_owned()).to_string();
    let audit = store.audit_entries_mentioning(&quoted)?;
    let asset_id = approvals
        .iter()
        .find(|a| a.status == ApprovalStatus::Applied)
        .or(approvals.first())
        .map(|a| a.asset.clone())
        .or_else(|| captures.first().map(|c| c.asset.clone()))
        .or_else(|| audit.iter().find_map(|e| e.asset.clone()));
    let Some(asset_id) = asset_id else {
        return Err(EvidenceError::Unknown(change_id.to_owned()));
    };
    let info = config.asset(&asset_id);
    let moves: Vec<_> = store
        .baseline_history(&asset_id)?
        .into_iter()
        .enumerate()
        .collect();
    let drift: Vec<Json> = store
        .drift_events(&otdrift_store::DriftFilter {
            asset: Some(asset_id.clone()),
            open_only: false,
        })?
        .iter()
        .filter(|d| d.change_id.as_deref() == Some(change_id))
        .map(render::drift_json)
        .collect();

    let applied = approvals
        .iter()
        .find(|a| a.status == ApprovalStatus::Applied);
    let phase = |p: Phase| captures.iter().rev().find(|c| c.phase == Some(p));
    let before_capture = phase(Phase::Before);
    let after_capture = phase(Phase::After);

    let mut baseline_moves = Vec::new();
    let mut moved_from: Option<Digest> = None;
    for (i, b) in &moves {
        if b.change_id.as_deref() == Some(change_id) {
            let prior = if *i > 0 {
                moves.get(i - 1).map(|(_, p)| p)
            } else {
                None
            };
            let previous = prior.map(|p| p.digest);
            moved_from = moved_from.or(previous);
            baseline_moves.push(json!({
                "baseline_id": b.id,
                "previous_digest": previous,
                // The approved envelopes in force after the move, and before it: widening
                // one is a change the approvals of this pack approved.
                "envelope": otdrift_store::envelope::to_json(&b.envelope),
                "previous_envelope": prior
                    .map(|p| otdrift_store::envelope::to_json(&p.envelope)),
                "digest": b.digest,
                "provisional": b.provisional,
                "set_at": format_timestamp(b.set_at),
                "reason": b.reason,
            }));
        }
    }

    let before = before_capture
        .map(|c| c.digest)
        .or(applied.and_then(|a| a.from))
        .or(moved_from);
    let after = after_capture
        .map(|c| c.digest)
        .or(applied.and_then(|a| a.applied_digest.or(a.to)));

    let mut snapshots: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut keep = |d: Option<Digest>| -> Result<(), StoreError> {
        if let Some(d) = d
            && !snapshots.contains_key(&d.to_string())
            && store.has_snapshot(&d)?
        {
            snapshots.insert(d.to_string(), store.snapshot(&d)?);
        }
        Ok(())
    };
    keep(before)?;
    keep(after)?;
    for c in &captures {
        keep(Some(c.digest))?;
    }

    let label = |path: &str| info.and_then(|a| otdrift_protocols::setpoint_label(a, path));
    let diff = match (before, after) {
        (Some(b), Some(a)) => {
            match (snapshots.get(&b.to_string()), snapshots.get(&a.to_string())) {
                (Some(sb), Some(sa)) => {
                    let changes: Vec<_> = Diff::between(sb, sa)
                        .changes
                        .iter()
                        .map(|c| otdrift_store::ChangeRecord::from_change(c, &label))
                        .collect();
                    json!({"from": b, "to": a, "changes": changes})
                }
                _ => Json::Null,
            }
        }
        _ => Json::Null,
    };

    let mut flags = Vec::new();
    match applied {
        Some(a) => {
            if a.retroactive {
                if a.kind == "emergency" {
                    flags.push(flag(
                        "warning",
                        "approved_after_implementation",
                        format!(
                            "approved after implementation: token issued {} after the state was first seen; permitted because the change is an emergency change",
                            format_timestamp(a.issued_at)
                        ),
                    ));
                } else {
                    flags.push(flag(
                        "violation",
                        "approved_after_implementation",
                        format!(
                            "APPROVED AFTER IMPLEMENTATION: the token was issued {} after the approved state was already running on the asset; only an emergency change may be approved retroactively, this one is {}",
                            format_timestamp(a.issued_at),
                            a.kind
                        ),
                    ));
                }
            }
            if let Some(after) = after_capture
                && let Some(approved) = a.applied_digest.or(a.to)
                && after.digest != approved
            {
                flags.push(flag(
                    "violation",
                    "after_differs_from_approved",
                    format!(
                        "the after signature {} is not the approved state {approved}",
                        after.digest
                    ),
                ));
            }
            if let (Some(before), Some(from)) = (before_capture, a.from)
                && before.digest != from
            {
                flags.push(flag(
                    "warning",
                    "before_differs_from_token",
                    format!(
                        "the before signature {} is not the token's `from` {from}",
                        before.digest
                    ),
                ));
            }
        }
        None => {
            let pending = approvals
                .iter()
                .any(|a| a.status == ApprovalStatus::Pending);
            flags.push(if pending {
                flag(
                    "warning",
                    "approval_pending",
                    "an approval is pending: the asset has not yet been seen in the approved state"
                        .to_owned(),
                )
            } else {
                flag(
                    "violation",
                    "no_applied_approval",
                    "no approval for this change has moved a baseline".to_owned(),
                )
            });
        }
    }
    for a in approvals
        .iter()
        .filter(|a| a.status == ApprovalStatus::Rejected)
    {
        flags.push(flag(
            "info",
            "approval_rejected",
            format!(
                "approval {} was rejected: {}",
                a.jti,
                a.reason.as_deref().unwrap_or("no reason recorded")
            ),
        ));
    }
    if before_capture.is_none() {
        flags.push(flag(
            "info",
            "no_before_capture",
            "no technician's before capture was recorded; the before signature is the baseline the change started from".to_owned(),
        ));
    }
    if after_capture.is_none() {
        flags.push(flag(
            "info",
            "no_after_capture",
            "no technician's after capture was recorded; the after signature is the approved state"
                .to_owned(),
        ));
    }

    let mut capture_docs = Vec::new();
    for c in &captures {
        capture_docs.push(capture_json(store, c)?);
    }
    // Where the change was validated before production, and the review it owes.
    let staging: Vec<Json> = store
        .staging_links(change_id)?
        .iter()
        .map(|l| {
            json!({
                "staging_asset": l.staging,
                "production_asset": l.production,
                "capture_id": l.capture_id,
                "change_signature": l.content,
                "seen_at": format_timestamp(l.seen_at),
                "text": format!(
                    "validated on staging {} at {}",
                    l.staging,
                    format_timestamp(l.seen_at)
                ),
            })
        })
        .collect();
    let changes = store.changes_for(change_id)?;
    let reviews = store.reviews_for(change_id)?;
    for c in &changes {
        match c.status.as_str() {
            "review_due" => flags.push(flag(
                "warning",
                "review_due",
                format!(
                    "emergency change on {}: its review ({} approver(s){}) is due by {}",
                    c.asset,
                    c.review_approvals,
                    if c.review_diff { ", with the diff" } else { "" },
                    c.review_due_by.map(format_timestamp).unwrap_or_default()
                ),
            )),
            "review_overdue" => flags.push(flag(
                "violation",
                "review_overdue",
                format!(
                    "REVIEW OVERDUE: the emergency change on {} was due for review by {}",
                    c.asset,
                    c.review_due_by.map(format_timestamp).unwrap_or_default()
                ),
            )),
            _ => {}
        }
    }
    let change_docs: Vec<Json> = changes
        .iter()
        .map(|c| {
            json!({
                "asset": c.asset,
                "kind": c.kind,
                "policy": c.policy,
                "status": c.status,
                "digest": c.digest,
                "change_signature": c.content,
                "diff_digest": c.diff,
                "applied_at": format_timestamp(c.applied_at),
                "review_due_by": c.review_due_by.map(format_timestamp),
                "reviews_needed": c.review_approvals,
                "reviewed_at": c.reviewed_at.map(format_timestamp),
                "overdue_at": c.overdue_at.map(format_timestamp),
            })
        })
        .collect();
    let review_docs: Vec<Json> = reviews
        .iter()
        .map(|r| {
            json!({
                "approver_id": r.approver_id,
                "approver": r.approver,
                "outcome": r.outcome,
                "received_at": format_timestamp(r.received_at),
            })
        })
        .collect();
    let public_key = keys::public_key_text(&agent_key.verifying_key());
    let pack = json!({
        "schema": SCHEMA,
        "change_id": change_id,
        "generated_at": format_timestamp(store.clock().now()),
        "agent": {"id": config.agent.id, "public_key": public_key},
        "asset": match info {
            Some(a) => json!({
                "id": a.id,
                "protocol": a.protocol.kind().as_str(),
                "address": a.address,
            }),
            None => json!({"id": asset_id}),
        },
        "approvals": approvals
            .iter()
            .map(|a| approval_json(a, approver_key(&a.approver_id)))
            .collect::<Vec<_>>(),
        "signatures": {
            "before": before,
            "after": after,
            "before_change_signature": before
                .and_then(|d| snapshots.get(&d.to_string()))
                .map(|s| s.content_digest()),
            "after_change_signature": after
                .and_then(|d| snapshots.get(&d.to_string()))
                .map(|s| s.content_digest()),
        },
        "staging": staging,
        "changes": change_docs,
        "reviews": review_docs,
        "captures": capture_docs,
        "diff": diff,
        "baseline_moves": baseline_moves,
        "drift_events": drift,
        "audit": audit.iter().map(|e| json!({
            "seq": e.seq,
            "at": format_timestamp(e.at),
            "kind": e.kind,
            "asset": e.asset,
            "body": e.body,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        })).collect::<Vec<_>>(),
        "flags": flags,
        "snapshots": snapshots
            .iter()
            .map(|(d, s)| (d.clone(), Json::String(STANDARD.encode(s.encode()))))
            .collect::<serde_json::Map<_, _>>(),
    });
    Ok(signed(agent_key, "pack", pack))
}

/// `{name: body, "signature": ...}`: `body` signed by the agent key (Ed25519 over its
/// canonical JSON), as `evidence-verify` checks it. Evidence packs (`pack`) and compliance
/// reports (`report`) are signed alike.
pub fn signed(agent_key: &SigningKey, name: &str, body: Json) -> Json {
    let public_key = keys::public_key_text(&agent_key.verifying_key());
    let signature = agent_key.sign(canonical_json(&body).as_bytes());
    let mut doc = serde_json::Map::new();
    doc.insert(name.to_owned(), body);
    doc.insert(
        "signature".to_owned(),
        json!({
            "alg": "EdDSA",
            "public_key": public_key,
            "value": URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            "signed": format!("canonical JSON of `{name}`: object keys sorted by UTF-8 bytes, no whitespace"),
        }),
    );
    Json::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Json =
            serde_json::from_str(r#"{ "b": [1, 2.5, {"z": null, "a": "x\"y"}], "a": true }"#)
                .expect("json");
        assert_eq!(
            canonical_json(&v),
            r#"{"a":true,"b":[1,2.5,{"a":"x\"y","z":null}]}"#
        );
        let pretty = serde_json::to_string_pretty(&v).expect("pretty");
        let back: Json = serde_json::from_str(&pretty).expect("reparse");
        assert_eq!(canonical_json(&back), canonical_json(&v));
    }
}
