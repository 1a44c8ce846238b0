//! `otdrift evidence CHANGE_ID --out DIR` and `otdrift evidence-verify FILE`.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use serde_json::{Value as Json, json};

use crate::context::Agent;
use crate::evidence::{self, EvidenceError};
use crate::exit::{CmdResult, Exit, Failure};
use crate::render;

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

/// Checks a pack offline; exit 5 on any problem.
pub fn verify(file: &Path, agent_key: Option<&str>, json: bool) -> CmdResult {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(Failure::usage)?;
    let report = evidence::verify(&text, agent_key);
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
            "evidence for change {} verifies: signed by {}\n  checked: {}",
            report.change_id.as_deref().unwrap_or("?"),
            report.agent_key.as_deref().unwrap_or("?"),
            report.checked.join(", ")
        );
        if agent_key.is_none() {
            println!(
                "  (compare the agent key with the one your central system recorded, or pass --agent-key)"
            );
        }
    } else {
        println!(
            "evidence for change {} does NOT verify:",
            report.change_id.as_deref().unwrap_or("?")
        );
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
