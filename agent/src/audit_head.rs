//! The audit chain's head, signed by the agent, for a central system to hold.
//!
//! A local attacker with write access to the database can rewrite the whole hash chain
//! consistently; what they cannot rewrite is a copy held elsewhere. So the daemon publishes the
//! head (`io.otdrift.audit.head`) at start, every `[agent] audit_head_interval_secs` and at
//! shutdown, as a JWS compact token signed with the agent key (`alg` EdDSA, `kid` the key's
//! [`key_id`](crate::keys::key_id)) whose claims are:
//!
//! | claim | value |
//! |---|---|
//! | `iss` | the agent id |
//! | `sub` | `audit-head` |
//! | `seq` | the head's sequence number (0 for an empty log) |
//! | `hash` | the head's chain hash, `blake3:...` (absent for an empty log) |
//! | `iat` | when it was signed, seconds since the epoch |
//!
//! Any JWT library verifies it with the agent's public key (published as
//! `io.otdrift.agent.key` and shown by `otdrift status --json`): a receiver that stores the
//! heads can later prove that the gateway's log still holds every entry it announced.

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use otdrift_core::Digest;
use serde_json::{Value as Json, json};

use crate::keys;

/// The `data` of an `audit.head` event for `head`, signed now.
pub fn signed_head(
    key: &SigningKey,
    agent_id: &str,
    head: Option<(i64, Digest)>,
    now: DateTime<Utc>,
) -> Json {
    let mut claims = json!({
        "iss": agent_id,
        "sub": "audit-head",
        "seq": head.map_or(0, |(seq, _)| seq),
        "iat": now.timestamp(),
    });
    if let Some((_, hash)) = head {
        claims["hash"] = json!(hash.to_string());
    }
    let kid = keys::key_id(&key.verifying_key());
    let jws = crate::approval::token::sign(&claims, &kid, key);
    json!({
        "agent": agent_id,
        "seq": head.map(|(seq, _)| seq),
        "hash": head.map(|(_, hash)| hash.to_string()),
        "entries": head.map_or(0, |(seq, _)| seq),
        "key_id": kid,
        "public_key": keys::public_key_text(&key.verifying_key()),
        "jws": jws,
    })
}

/// The `data` of an `io.otdrift.agent.key` event announcing the agent's current key.
pub fn key_announcement(key: &SigningKey, agent_id: &str) -> Json {
    json!({
        "agent": agent_id,
        "public_key": keys::public_key_text(&key.verifying_key()),
        "key_id": keys::key_id(&key.verifying_key()),
    })
}
