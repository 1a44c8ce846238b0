//! `evidence-verify`: checks a pack offline, with nothing but the file. A compliance report
//! (`otdrift report --format json`, `{"report", "signature"}`) is checked for its strict JSON,
//! its schema and the agent's signature (the same rules as a pack's).
//!
//! - the document is strict JSON (no member twice, see [`crate::strict_json`]): a pack must
//!   say one thing to every reader;
//! - the agent's signature over the canonical JSON of `pack`, with the key the auditor pins
//!   (from the agent's `io.otdrift.agent.key` event or `otdrift status --json`); only when the
//!   auditor explicitly trusts it is the key inside the pack enough, since anyone can sign a
//!   pack with a key of their own and put that key in it;
//! - every embedded snapshot hashes to its digest and decodes;
//! - every capture's class digests are those of its snapshot;
//! - the diff is exactly what the before and after snapshots give;
//! - every approval token decodes to the header and claims shown, verifies with the approver
//!   key shown, and names this change and the state the pack says it approved;
//! - every baseline move by approval moves to that approval's `to`;
//! - every audit entry hashes to its chain hash, and consecutive entries link.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use otdrift_core::{Diff, Digest, Snapshot};
use serde_json::{Value as Json, json};

use super::canonical_json;
use crate::keys;

/// What `evidence-verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// The change the pack documents.
    pub change_id: Option<String>,
    /// The document is a compliance report (`otdrift report`), not an evidence pack.
    pub is_report: bool,
    /// The key that signed it.
    pub agent_key: Option<String>,
    /// Everything that did not check out; empty means the pack verifies.
    pub problems: Vec<String>,
    /// What was checked, for the output.
    pub checked: Vec<String>,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn str_at<'a>(v: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

fn digest_at(v: &Json, key: &str) -> Option<Digest> {
    v.get(key)?.as_str()?.parse().ok()
}

/// Which agent key an evidence pack must be signed with.
#[derive(Clone, Copy, Debug)]
pub enum KeyTrust<'a> {
    /// This public key (`ed25519:...`), obtained independently of the pack.
    Pinned(&'a str),
    /// Whatever key the pack names (`--trust-embedded-key`): proves only that the pack was
    /// not changed after it was signed, not who signed it.
    Embedded,
}

/// Checks an evidence document (the text of `evidence.json`) against the agent key the
/// auditor trusts.
pub fn verify(text: &str, trust: KeyTrust<'_>) -> VerifyReport {
    let mut r = VerifyReport::default();
    let doc: Json = match crate::strict_json::parse(text.as_bytes()) {
        Ok(doc) => doc,
        Err(crate::strict_json::StrictJsonError::DuplicateMember(name)) => {
            r.problems.push(format!(
                "duplicate-member: the member {name:?} appears twice in one object; two readers could see two different packs"
            ));
            return r;
        }
        Err(e) => {
            r.problems.push(format!("not JSON: {e}"));
            return r;
        }
    };
    // A compliance report (`otdrift report`) is signed the same way; it holds no snapshots,
    // tokens or audit entries of its own to check beyond its signature.
    let (pack, is_report) = match (doc.get("pack"), doc.get("report")) {
        (Some(pack), None) => (pack, false),
        (None, Some(report)) => (report, true),
        _ => {
            r.problems.push(
                "not an evidence pack or report: exactly one of `pack` and `report`, and `signature`, are required"
                    .to_owned(),
            );
            return r;
        }
    };
    r.is_report = is_report;
    let Some(signature) = doc.get("signature") else {
        r.problems
            .push("not an evidence pack or report: `signature` is required".to_owned());
        return r;
    };
    r.change_id = pack
        .get("change_id")
        .and_then(Json::as_str)
        .map(str::to_owned);

    // 1. The agent's signature.
    let key_text = str_at(signature, &["public_key"]).unwrap_or_default();
    r.agent_key = Some(key_text.to_owned());
    if str_at(pack, &["agent", "public_key"]) != Some(key_text) {
        r.problems
            .push("the signing key differs from the agent key named in the pack".to_owned());
    }
    if let KeyTrust::Pinned(pinned) = trust
        && pinned.trim() != key_text
    {
        r.problems.push(format!(
            "signed by {key_text}, not by the pinned agent key {}",
            pinned.trim()
        ));
    }
    match (
        keys::parse_public_key(key_text),
        str_at(signature, &["value"]).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()),
    ) {
        (Ok(key), Some(sig)) => match Signature::from_slice(&sig) {
            Ok(sig)
                if key
                    .verify_strict(canonical_json(pack).as_bytes(), &sig)
                    .is_ok() =>
            {
                r.checked.push("agent signature".to_owned());
            }
            _ => r.problems.push(
                "the agent's signature does not match the pack: it was changed after signing"
                    .to_owned(),
            ),
        },
        (Err(e), _) => r.problems.push(format!("signature public key: {e}")),
        (_, None) => r
            .problems
            .push("the signature value is missing or not base64url".to_owned()),
    }
    if is_report {
        if str_at(pack, &["schema"]) == Some(crate::report::SCHEMA) {
            r.checked.push("report schema".to_owned());
        } else {
            r.problems.push(format!(
                "not a report of schema {}: {:?}",
                crate::report::SCHEMA,
                str_at(pack, &["schema"])
            ));
        }
        return r;
    }

    // 2. Snapshots.
    let mut snapshots = std::collections::BTreeMap::new();
    if let Some(map) = pack.get("snapshots").and_then(Json::as_object) {
        for (digest_text, body) in map {
            let Ok(digest) = digest_text.parse::<Digest>() else {
                r.problems
                    .push(format!("snapshot key {digest_text:?} is not a digest"));
                continue;
            };
            let Some(bytes) = body.as_str().and_then(|b| STANDARD.decode(b).ok()) else {
                r.problems.push(format!("snapshot {digest} is not base64"));
                continue;
            };
            if Digest::of(&bytes) != digest {
                r.problems.push(format!(
                    "snapshot {digest}: its encoding hashes to {}",
                    Digest::of(&bytes)
                ));
                continue;
            }
            match Snapshot::decode(&bytes) {
                Ok(s) => {
                    snapshots.insert(digest, s);
                }
                Err(e) => r
                    .problems
                    .push(format!("snapshot {digest} does not decode: {e}")),
            }
        }
        r.checked
            .push(format!("{} snapshot digests", snapshots.len()));
    }

    // 3. Captures.
    for c in super::list(pack, "captures") {
        let id = c.get("capture_id").cloned().unwrap_or(Json::Null);
        let Some(digest) = digest_at(c, "digest") else {
            r.problems.push(format!("capture {id}: no digest"));
            continue;
        };
        let Some(s) = snapshots.get(&digest) else {
            r.problems.push(format!(
                "capture {id}: its snapshot {digest} is not in the pack"
            ));
            continue;
        };
        let d = s.digests();
        let classes = c.get("classes").cloned().unwrap_or(Json::Null);
        let expected = json!({
            "identity": d.identity,
            "program": d.program,
            "setpoint": d.setpoint,
            "history": d.history,
        });
        if classes != expected || c.get("change_signature") != Some(&json!(d.content)) {
            r.problems.push(format!(
                "capture {id}: class digests or change signature do not match its snapshot"
            ));
        }
    }
    for side in ["before", "after"] {
        if let Some(d) = pack
            .get("signatures")
            .and_then(|s| digest_at(s, side))
            .filter(|d| !snapshots.contains_key(d))
        {
            r.problems.push(format!(
                "the {side} signature {d} has no snapshot in the pack"
            ));
        }
    }

    // 4. The diff.
    if let Some(diff) = pack.get("diff").filter(|d| !d.is_null()) {
        match (digest_at(diff, "from"), digest_at(diff, "to")) {
            (Some(from), Some(to)) => match (snapshots.get(&from), snapshots.get(&to)) {
                (Some(a), Some(b)) => {
                    let expected: Vec<Json> = Diff::between(a, b)
                        .changes
                        .iter()
                        .map(|c| {
                            json!({
                                "path": c.path,
                                "class": c.class,
                                "kind": c.kind,
                                "before": c.before,
                                "after": c.after,
                            })
                        })
                        .collect();
                    let shown: Vec<Json> = super::list(diff, "changes")
                        .map(|c| {
                            json!({
                                "path": c.get("path"),
                                "class": c.get("class"),
                                "kind": c.get("kind"),
                                "before": c.get("before"),
                                "after": c.get("after"),
                            })
                        })
                        .collect();
                    if expected == shown {
                        r.checked.push(format!("diff ({} changes)", shown.len()));
                    } else {
                        r.problems.push(
                            "the diff shown is not the difference between the before and after snapshots"
                                .to_owned(),
                        );
                    }
                }
                _ => r
                    .problems
                    .push("the diff's snapshots are not in the pack".to_owned()),
            },
            _ => r
                .problems
                .push("the diff has no valid from/to digests".to_owned()),
        }
    }

    // 5. Approvals.
    let change_id = r.change_id.clone().unwrap_or_default();
    let approvals: Vec<&Json> = super::list(pack, "approvals").collect();
    for a in &approvals {
        let jti = str_at(a, &["jti"]).unwrap_or("?").to_owned();
        let raw = str_at(a, &["token"]).unwrap_or_default();
        let (header, claims) = crate::approval::token::peek(raw);
        if header.as_ref() != a.get("header") || claims.as_ref() != a.get("claims") {
            r.problems.push(format!(
                "approval {jti}: the decoded header or claims differ from the token"
            ));
        }
        let claims = claims.unwrap_or(Json::Null);
        if str_at(&claims, &["change_id"]) != Some(change_id.as_str()) {
            r.problems
                .push(format!("approval {jti}: the token names another change"));
        }
        for claim in ["to", "content", "diff"] {
            let shown = a.get(claim).filter(|v| !v.is_null());
            if claims.get(claim) != shown {
                r.problems.push(format!(
                    "approval {jti}: the pack's `{claim}` differs from the token's"
                ));
            }
        }
        match str_at(a, &["approver_public_key"]).map(keys::parse_public_key) {
            Some(Ok(key)) => {
                if jws_verifies(raw, &key) {
                    r.checked.push(format!("approval {jti} signature"));
                } else {
                    r.problems.push(format!(
                        "approval {jti}: the token does not verify with the approver key shown"
                    ));
                }
            }
            Some(Err(e)) => r
                .problems
                .push(format!("approval {jti}: approver key: {e}")),
            None => r.checked.push(format!(
                "approval {jti}: no approver key in the pack (approver no longer configured)"
            )),
        }
    }

    // 6. Baseline moves by approval go where the approval said.
    for m in super::list(pack, "baseline_moves") {
        if m.get("reason").and_then(Json::as_str) != Some("approval") {
            continue;
        }
        let id = m.get("baseline_id").cloned().unwrap_or(Json::Null);
        let by = approvals.iter().find(|a| a.get("baseline_id") == Some(&id));
        // A `to` approval names the state; a `content` approval names the change signature
        // of the state it moved to (checked on the snapshot the pack embeds).
        let content_of = |d: &Json| -> Option<Digest> {
            let d: Digest = d.as_str()?.parse().ok()?;
            snapshots.get(&d).map(Snapshot::content_digest)
        };
        match by {
            Some(a)
                if a.get("to").is_some_and(|t| !t.is_null()) && a.get("to") == m.get("digest") => {}
            Some(a)
                if a.get("content")
                    .and_then(|c| c.as_str()?.parse::<Digest>().ok())
                    .is_some_and(|c| m.get("digest").and_then(content_of) == Some(c)) => {}
            Some(_) => r.problems.push(format!(
                "baseline move {id} does not go to the state its approval approved"
            )),
            None => r
                .problems
                .push(format!("baseline move {id} has no approval in the pack")),
        }
    }

    // 7. Audit entries.
    let mut previous: Option<(i64, String)> = None;
    let mut entries = 0;
    for e in super::list(pack, "audit") {
        let seq = e.get("seq").and_then(Json::as_i64).unwrap_or(-1);
        let (Some(at), Some(kind), Some(body), Some(prev), Some(hash)) = (
            str_at(e, &["at"]),
            str_at(e, &["kind"]),
            str_at(e, &["body"]),
            digest_at(e, "prev_hash"),
            str_at(e, &["hash"]),
        ) else {
            r.problems
                .push(format!("audit entry {seq}: fields are missing"));
            continue;
        };
        let asset = e.get("asset").and_then(Json::as_str);
        let computed = otdrift_store::chain_hash(seq, at, kind, asset, body, &prev);
        if computed.to_string() != hash {
            r.problems.push(format!(
                "audit entry #{seq}: its fields hash to {computed}, not to the recorded {hash}"
            ));
        }
        if let Some((prev_seq, prev_hash)) = &previous
            && *prev_seq + 1 == seq
            && prev.to_string() != *prev_hash
        {
            r.problems.push(format!(
                "audit entry #{seq} does not link to entry #{prev_seq}"
            ));
        }
        previous = Some((seq, hash.to_owned()));
        entries += 1;
    }
    r.checked.push(format!("{entries} audit entries"));
    r
}

fn jws_verifies(raw: &str, key: &VerifyingKey) -> bool {
    let Some((signed, sig)) = raw.rsplit_once('.') else {
        return false;
    };
    let Some(sig) = URL_SAFE_NO_PAD
        .decode(sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
    else {
        return false;
    };
    key.verify_strict(signed.as_bytes(), &sig).is_ok()
}
