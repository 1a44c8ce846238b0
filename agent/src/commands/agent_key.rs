//! `otdrift agent-key show|rotate`: the agent's own identity key, which signs evidence packs,
//! reports and audit heads.
//!
//! A rotation is deliberate and leaves a trail a verifier can follow: the new key is announced
//! in a statement signed by the *old* key (a JWS whose claims name both), recorded in the audit
//! log (`agent.key_rotated`) and published (`io.otdrift.agent.key`, with the statement). Anyone
//! who pinned the old key can check the statement and move their pin. The new private key is
//! written first as `agent.key.new`, the database records it, then the file replaces
//! `agent.key`; a crash in between is completed at the next start. The old private key is
//! deleted with the rename: only its public half, in the audit log, stays.

use std::path::Path;

use anyhow::anyhow;
use chrono::Utc;
use serde_json::json;

use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure, RuntimeContext as _};
use crate::keys;
use crate::render;

/// Prints the agent's public key (what auditors pin for `evidence-verify --agent-key`).
pub fn show(config: &Path, json: bool) -> CmdResult {
    let agent = Agent::open(config)?;
    let public = agent.public_key();
    let history = agent
        .store
        .audit_entries_of_kind(&["agent.key_created", "agent.key_rotated"])
        .runtime("cannot read the agent key's history")?;
    if json {
        let history: Vec<serde_json::Value> = history
            .iter()
            .map(|e| {
                let body: serde_json::Value =
                    serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null);
                json!({
                    "at": otdrift_core::format_timestamp(e.at),
                    "event": e.kind,
                    "public_key": body["public_key"],
                    "audit_seq": e.seq,
                })
            })
            .collect();
        render::print_json(&json!({
            "agent": agent.config.agent.id,
            "public_key": public,
            "key_id": keys::key_id(&agent.key.verifying_key()),
            "history": history,
        }));
    } else {
        println!("{public}");
    }
    Ok(Exit::Ok)
}

/// Replaces the agent key on purpose (see the module documentation).
pub fn rotate(config: &Path, json: bool) -> CmdResult {
    let mut agent = Agent::open(config)?;
    let data_dir = agent.config.agent.data_dir.clone();
    let old = agent.key.clone();
    let new = keys::generate().map_err(Failure::runtime)?;
    let (old_text, new_text) = (
        keys::public_key_text(&old.verifying_key()),
        keys::public_key_text(&new.verifying_key()),
    );
    let now = Utc::now();
    let statement = crate::approval::token::sign(
        &json!({
            "iss": agent.config.agent.id,
            "sub": "agent-key-rotation",
            "iat": now.timestamp(),
            "previous_key": old_text,
            "public_key": new_text,
        }),
        &keys::key_id(&old.verifying_key()),
        &old,
    );
    keys::write_pending_agent_key(&data_dir, &new).map_err(Failure::runtime)?;
    let body = json!({
        "agent": agent.config.agent.id,
        "public_key": new_text,
        "key_id": keys::key_id(&new.verifying_key()),
        "previous_key": old_text,
        "statement": statement,
    });
    agent
        .store
        .audit_and_event(
            "agent.key_rotated",
            otdrift_store::event_type::AGENT_KEY,
            None,
            &body,
        )
        .runtime("cannot record the rotation")?;
    keys::commit_pending_agent_key(&data_dir).map_err(|e| {
        Failure::runtime(
            anyhow!(e).context("the rotation is recorded; the next start of otdrift finishes it"),
        )
    })?;
    if json {
        render::print_json(&body);
    } else {
        println!(
            "agent key rotated\n  previous: {old_text}\n  new:      {new_text}\n  the new key is announced as io.otdrift.agent.key, with a statement signed by the previous key;\n  restart a running agent (systemctl restart otdrift) so it signs with the new key"
        );
    }
    Ok(Exit::Ok)
}
