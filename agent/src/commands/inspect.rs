//! `otdrift status`, `otdrift drift`, `otdrift diff`: reading what the store knows.

use std::path::Path;

use anyhow::anyhow;
use otdrift_core::{Diff, Digest};
use otdrift_store::DriftFilter;
use serde_json::{Value as Json, json};

use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure, RuntimeContext};
use crate::render;

/// Every configured asset with what the store knows about it.
pub fn status(config: &Path, json: bool) -> CmdResult {
    let agent = Agent::open(config)?;
    let rows =
        render::asset_rows(&agent.config, &agent.store).runtime("cannot read asset state")?;
    let delivery = agent
        .store
        .delivery_state(otdrift_store::UPSTREAM)
        .runtime("cannot read the delivery state")?;
    let url = agent.config.upstream.as_ref().map(|u| u.url.as_str());
    if json {
        render::print_json(&json!({
            "agent": agent.config.agent.id,
            "agent_key": agent.public_key(),
            "assets": rows,
            "delivery": render::delivery_json(&delivery, url),
        }));
        return Ok(Exit::Ok);
    }
    let now = agent.store.clock().now();
    let count = |key: &str, want: &Json| rows.iter().filter(|r| &r[key] == want).count();
    let open: u64 = rows.iter().filter_map(|r| r["open_drift"].as_u64()).sum();
    let pending: u64 = rows
        .iter()
        .filter_map(|r| r["pending_approvals"].as_u64())
        .sum();
    let failing = rows.iter().filter(|r| !r["collection"].is_null()).count();
    println!(
        "{}: {} asset(s), {} unreachable, {} failing collection, {} open drift, {} provisional baseline(s), {} pending approval(s)\n",
        agent.config.agent.id,
        rows.len(),
        count("reachable", &Json::Bool(false)),
        failing,
        open,
        rows.iter()
            .filter(|r| r["baseline"]["provisional"] == Json::Bool(true))
            .count(),
        pending
    );
    println!(
        "{}",
        table_row([
            "ASSET",
            "PROTOCOL",
            "ADDRESS",
            "REACHABLE",
            "LAST CAPTURE",
            "LAST VERIFIED",
            "BASELINE",
            "OPEN DRIFT"
        ])
    );
    let mut problems = Vec::new();
    for (asset, row) in agent.config.assets.iter().zip(&rows) {
        let reachable = match (&row["reachable"], &row["collection"]["reason"]) {
            (Json::Bool(false), _) => "NO".to_owned(),
            // Answers, but what it answers is not state: say why in the same column.
            (_, Json::String(reason)) => format!("FAIL:{reason}"),
            (Json::Bool(true), _) => "yes".to_owned(),
            _ => "not yet".to_owned(),
        };
        let baseline = match &row["baseline"] {
            Json::Null => "none yet".to_owned(),
            b => {
                let digest = b["digest"].as_str().and_then(|d| d.parse::<Digest>().ok());
                format!(
                    "{} {}",
                    digest.map(|d| d.short()).unwrap_or_default(),
                    if b["provisional"] == Json::Bool(true) {
                        "provisional"
                    } else {
                        "approved"
                    }
                )
            }
        };
        let last = row["last_capture"]
            .as_str()
            .and_then(|t| otdrift_core::parse_timestamp(t).ok())
            .map_or_else(|| "never".to_owned(), |t| age(now - t));
        let open = row["open_drift"].to_string();
        let verified = row["last_verified"]
            .as_str()
            .and_then(|t| otdrift_core::parse_timestamp(t).ok())
            .map_or_else(|| "never".to_owned(), |t| age(now - t));
        println!(
            "{}",
            table_row([
                &asset.id,
                asset.protocol.kind().as_str(),
                &asset.address,
                &reachable,
                &last,
                &verified,
                &baseline,
                &open,
            ])
        );
        if let Some(error) = row["last_error"].as_str() {
            problems.push(format!("  {}: {error}", asset.id));
        }
        if let Some(since) = row["verification_overdue_since"].as_str() {
            problems.push(format!(
                "  {}: VERIFICATION OVERDUE since {since}: no capture has matched the approved baseline within verify_max_age (last verified {})",
                asset.id,
                row["last_verified"].as_str().unwrap_or("never"),
            ));
        }
        for due in row["review_due"].as_array().into_iter().flatten() {
            problems.push(format!(
                "  {}: emergency change {} {} (review due by {})",
                asset.id,
                due["change_id"].as_str().unwrap_or("?"),
                if due["status"] == "review_overdue" {
                    "REVIEW OVERDUE"
                } else {
                    "awaits its review"
                },
                due["review_due_by"].as_str().unwrap_or("?"),
            ));
        }
        if let Some(muted) = row["muted_items"].as_array().filter(|m| !m.is_empty()) {
            let names: Vec<&str> = muted.iter().filter_map(Json::as_str).take(5).collect();
            problems.push(format!(
                "  {}: {} flapping item(s) muted ({}{}): a process value read as a setpoint?",
                asset.id,
                muted.len(),
                names.join(", "),
                if muted.len() > names.len() {
                    ", ..."
                } else {
                    ""
                }
            ));
        }
        if let Some(since) = row["collection"]["failing_since"].as_str() {
            problems.push(format!(
                "  {}: collection failing since {since} ({} failed capture(s), reason {})",
                asset.id,
                row["collection"]["failures"],
                row["collection"]["reason"].as_str().unwrap_or("unknown"),
            ));
        }
    }
    if !problems.is_empty() {
        println!("\nneeds attention:\n{}", problems.join("\n"));
    }
    // The approved envelopes in force: what may move on the HMI without drift.
    let envelopes: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let env = row["baseline"]["envelope"].as_object()?;
            let asset = row["id"].as_str()?;
            Some(env.iter().map(move |(pattern, rule)| {
                format!("  {asset}: {pattern}  {}", crate::render::bound_text(rule))
            }))
        })
        .flatten()
        .collect();
    if !envelopes.is_empty() {
        println!("\napproved envelopes:\n{}", envelopes.join("\n"));
    }
    // Delivery upstream needs attention only when it is paused or holds refused events.
    if url.is_some() && (delivery.paused.is_some() || delivery.parked > 0) {
        println!();
        if let Some(p) = &delivery.paused {
            println!(
                "upstream: PAUSED since {}: {}",
                otdrift_core::format_timestamp(p.since),
                p.reason
            );
        }
        if delivery.parked > 0 {
            println!(
                "upstream: {} parked event(s) the receiver refused (otdrift outbox --parked)",
                delivery.parked
            );
        }
    }
    Ok(Exit::Ok)
}

/// "42 s ago", "5 min ago", "3 h ago", "2 d ago": how fresh a capture is, at a glance.
fn age(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn table_row(cols: [&str; 8]) -> String {
    format!(
        "{:<16} {:<8} {:<22} {:<10} {:<13} {:<13} {:<31} {}",
        cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]
    )
}

/// Drift events, newest first.
pub fn drift(config: &Path, asset: Option<String>, open_only: bool, json: bool) -> CmdResult {
    let agent = Agent::open(config)?;
    if let Some(id) = &asset {
        agent.asset(id)?;
    }
    let events = agent
        .store
        .drift_events(&DriftFilter { asset, open_only })
        .runtime("cannot read drift events")?;
    if json {
        let events: Vec<Json> = events.iter().map(render::drift_json).collect();
        render::print_json(&json!({ "events": events }));
    } else if events.is_empty() {
        println!("no {}drift events", if open_only { "open " } else { "" });
    } else {
        for e in &events {
            print!("{}", render::drift_human(e));
        }
    }
    Ok(Exit::Ok)
}

fn parse_digest(text: &str, which: &str) -> Result<Digest, Failure> {
    text.parse()
        .map_err(|e| Failure::usage(anyhow!("--{which} {text:?} is not a digest: {e}")))
}

/// The item-level difference between two stored states of an asset.
pub fn diff(
    config: &Path,
    asset_id: &str,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> CmdResult {
    let agent = Agent::open(config)?;
    let asset = agent.asset(asset_id)?;
    let from = match from {
        Some(text) => parse_digest(text, "from")?,
        None => agent
            .store
            .current_baseline(asset_id)
            .runtime("cannot read the baseline")?
            .ok_or_else(|| {
                Failure::usage(anyhow!(
                    "asset {asset_id} has no baseline yet: run `otdrift capture {asset_id}` first"
                ))
            })?
            .digest,
    };
    let to = match to {
        Some(text) => parse_digest(text, "to")?,
        None => {
            agent
                .store
                .latest_capture(asset_id)
                .runtime("cannot read captures")?
                .ok_or_else(|| Failure::usage(anyhow!("asset {asset_id} has no captures yet")))?
                .digest
        }
    };
    let load = |d: &Digest| {
        agent.store.snapshot(d).map_err(|e| match e {
            otdrift_store::StoreError::NotFound(_) => Failure::usage(anyhow!(
                "no stored state {d} for this agent (digests come from `otdrift capture` or `otdrift drift`)"
            )),
            other => Failure::runtime(anyhow!(other)),
        })
    };
    let before = load(&from)?;
    let after = load(&to)?;
    let diff = Diff::between(&before, &after);
    let mut changes = render::change_records(asset, &diff);
    // The envelopes of the asset's baseline: which setpoint changes they admit.
    let envelope = agent
        .store
        .current_baseline(asset_id)
        .runtime("cannot read the baseline")?
        .map(|b| b.envelope)
        .unwrap_or_default();
    for (record, change) in changes.iter_mut().zip(&diff.changes) {
        if change.class != otdrift_core::Class::Setpoint {
            continue;
        }
        let Some(mut rule) = otdrift_store::envelope::rule_json(&envelope, &change.path) else {
            continue;
        };
        let inside = envelope
            .rule_for(&change.path)
            .zip(change.after.as_ref())
            .is_some_and(|((_, bound), after)| bound.admits(after));
        rule["inside"] = json!(inside);
        record.envelope = Some(rule);
    }
    // What an approver signs as `diff` for a policy with diff_review: the content changes
    // only, so a diff taken against a staging controller's capture (another serial number,
    // other change counters) is the diff production will show.
    let diff_digest = diff.content_digest();
    if json {
        render::print_json(&json!({
            "asset": asset_id,
            "from": from,
            "to": to,
            "from_change_signature": before.content_digest(),
            "to_change_signature": after.content_digest(),
            "diff_digest": diff_digest,
            "content_changes": diff.content_changes().count(),
            "envelope": otdrift_store::envelope::to_json(&envelope),
            "changes": changes,
        }));
    } else if changes.is_empty() {
        println!("{asset_id}: {from} and {to} are the same state");
    } else {
        println!(
            "{asset_id}: {} change(s)\n  from {from}\n  to   {to}",
            changes.len()
        );
        for line in render::change_lines(&changes, usize::MAX) {
            println!("  {line}");
        }
        println!(
            "  change signatures: {} -> {}\n  diff digest (sign it as `diff` for a diff_review policy): {diff_digest}",
            before.content_digest(),
            after.content_digest()
        );
    }
    Ok(Exit::Ok)
}

/// `otdrift maintenance ASSET --for DURATION [--reason R]` or `--end`.
pub fn maintenance(
    config: &Path,
    asset_id: &str,
    duration: Option<&str>,
    reason: &str,
    end: bool,
) -> CmdResult {
    let mut agent = Agent::open(config)?;
    agent.asset(asset_id)?;
    if end {
        let n = agent
            .store
            .end_maintenance(asset_id, "command-line")
            .runtime("cannot end the maintenance window")?;
        println!(
            "{asset_id}: {}",
            if n == 0 {
                "no maintenance window was open"
            } else {
                "maintenance ended; alarms are sent again"
            }
        );
        return Ok(Exit::Ok);
    }
    let text = duration.unwrap_or_default();
    let d =
        otdrift_config::parse_duration(text).map_err(|e| Failure::usage(anyhow!("--for {e}")))?;
    if d.as_secs() < 60 || d.as_secs() > 7 * 86_400 {
        return Err(Failure::usage(anyhow!(
            "--for {text:?}: a maintenance window lasts from 1m to 7d"
        )));
    }
    let until = agent.store.clock().now()
        + chrono::TimeDelta::from_std(d).map_err(|e| Failure::usage(anyhow!("--for {e}")))?;
    let window = agent
        .store
        .start_maintenance(asset_id, until, reason, "command-line")
        .runtime("cannot open the maintenance window")?;
    println!(
        "{asset_id}: maintenance until {} ({}): unreachable, failed-collection and stale alarms are held back and audited; drift is still raised",
        otdrift_core::format_timestamp(window.ends_at),
        window.reason
    );
    Ok(Exit::Ok)
}
