//! `otdrift evidence CHANGE_ID --out DIR`, `otdrift report` and `otdrift evidence-verify FILE`.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use serde_json::{Value as Json, json};

use crate::context::Agent;
use crate::evidence::{self, EvidenceError};
use crate::exit::{CmdResult, Exit, Failure};
use crate::render;

/// Where `evidence-verify` gets the agent key it trusts.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// `--agent-key ed25519:...`.
    Key(String),
    /// `--agent-key-file FILE` (a `.pub` file holding `ed25519:...`).
    File(std::path::PathBuf),
    /// `--trust-embedded-key`.
    Embedded,
    /// Nothing given: verification fails (exit 5).
    None,
}

/// Writes `evidence.json` and `evidence.html` for a change.
pub fn write(config: &Path, change_id: &str, out: &Path) -> CmdResult {
    let agent = Agent::open(config)?;
    let doc =
        evidence::build(&agent.store, &agent.config, &agent.key, change_id).map_err(
            |e| match e {
                EvidenceError::Unknown(_) => Failure::usage(anyhow!(e)),
                EvidenceError::Store(_) => Failure::runtime(anyhow!(e)),
            },
        )?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create {}", out.display()))
        .map_err(Failure::runtime)?;
    let json_path = out.join("evidence.json");
    let html_path = out.join("evidence.html");
    let text = serde_json::to_string_pretty(&doc)
        .context("cannot render the pack")
        .map_err(Failure::runtime)?;
    std::fs::write(&json_path, format!("{text}\n"))
        .with_context(|| format!("cannot write {}", json_path.display()))
        .map_err(Failure::runtime)?;
    std::fs::write(&html_path, evidence::html::render(&doc))
        .with_context(|| format!("cannot write {}", html_path.display()))
        .map_err(Failure::runtime)?;
    println!(
        "evidence for change {change_id}:\n  {}\n  {}",
        json_path.display(),
        html_path.display()
    );
    for f in doc
        .pointer("/pack/flags")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let level = f.get("level").and_then(Json::as_str).unwrap_or("info");
        if level != "info" {
            println!(
                "  {}: {}",
                level.to_uppercase(),
                f.get("message").and_then(Json::as_str).unwrap_or_default()
            );
        }
    }
    Ok(Exit::Ok)
}

/// Writes the compliance report (`crate::report`) as JSON (signed), HTML or CSV.
pub fn report(config: &Path, format: &str, out: Option<&Path>, since: &str) -> CmdResult {
    let window = otdrift_config::parse_duration(since)
        .map_err(|e| Failure::usage(anyhow!("--since {since:?}: {e}")))?;
    let agent = Agent::open(config)?;
    let now = agent.store.clock().now();
    let from = chrono::TimeDelta::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let doc = crate::report::build(&agent.store, &agent.config, &agent.key, from)
        .context("cannot read the store")
        .map_err(Failure::runtime)?;
    let text = match format {
        "html" => crate::report::html::render(&doc),
        "csv" => crate::report::csv(&doc),
        _ => format!(
            "{}\n",
            serde_json::to_string_pretty(&doc)
                .context("cannot render the report")
                .map_err(Failure::runtime)?
        ),
    };
    match out {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Failure::runtime)?;
            let summary = &doc["report"]["summary"];
            println!(
                "report of {} asset(s) written to {}: {} verified, {} verification overdue, {} with open drift, {} provisional",
                summary["assets"],
                path.display(),
                summary["verified"],
                summary["verification_overdue"],
                summary["drift_open"],
                summary["provisional_baseline"],
            );
        }
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write the report")
                .map_err(Failure::runtime)?;
        }
    }
    Ok(Exit::Ok)
}

/// Checks a pack offline; exit 5 on any problem.
pub fn verify(file: &Path, trust: &KeySource, json: bool) -> CmdResult {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(Failure::usage)?;
    let pinned = match trust {
        KeySource::Key(k) => Some(k.trim().to_owned()),
        KeySource::File(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the agent key file {}", path.display()))
                .map_err(Failure::usage)?
                .trim()
                .to_owned(),
        ),
        KeySource::Embedded => None,
        KeySource::None => {
            let message = "no agent key is pinned: give --agent-key ed25519:... (from the agent's io.otdrift.agent.key event or `otdrift status --json`) or --agent-key-file FILE; --trust-embedded-key checks only that the pack is intact, not who signed it";
            if json {
                render::print_json(&json!({"ok": false, "problems": [message]}));
            } else {
                println!("evidence NOT verified: {message}");
            }
            return Ok(Exit::VerificationFailed);
        }
    };
    let agent_key = pinned.as_deref();
    let report = evidence::verify(
        &text,
        match agent_key {
            Some(k) => evidence::verify::KeyTrust::Pinned(k),
            None => evidence::verify::KeyTrust::Embedded,
        },
    );
    let what = match (&report.change_id, report.is_report) {
        (_, true) => "the compliance report".to_owned(),
        (Some(change), false) => format!("evidence for change {change}"),
        (None, false) => "the evidence".to_owned(),
    };
    if json {
        render::print_json(&json!({
            "ok": report.ok(),
            "change_id": report.change_id,
            "agent_key": report.agent_key,
            "checked": report.checked,
            "problems": report.problems,
        }));
    } else if report.ok() {
        println!(
            "{what} verifies: signed by {}\n  checked: {}",
            report.agent_key.as_deref().unwrap_or("?"),
            report.checked.join(", ")
        );
        if agent_key.is_none() {
            println!(
                "  WARNING: the key was taken from the pack itself (--trust-embedded-key): this proves the pack is intact, not that this agent signed it"
            );
        }
    } else {
        println!("{what} does NOT verify:");
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    Ok(if report.ok() {
        Exit::Ok
    } else {
        Exit::VerificationFailed
    })
}
