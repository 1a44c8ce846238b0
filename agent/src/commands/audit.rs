//! `otdrift audit-verify`: walks the hash chain; exit 5 names the first broken entry.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use serde_json::json;

use crate::context::{Agent, DB_FILE};
use crate::exit::{CmdResult, Exit, Failure, RuntimeContext};
use crate::keys::AGENT_KEY_FILE;
use crate::render;

/// Checks the audit log's chain.
pub fn verify(config: &Path, json: bool) -> CmdResult {
    // Opening the agent may append a config-change entry; that is itself audited, and it is
    // appended to a chain verified below like every other entry.
    let agent = Agent::open(config)?;
    let report = agent
        .store
        .audit_verify()
        .runtime("cannot read the audit log")?;
    let head = report
        .head
        .map(|(seq, hash)| json!({"seq": seq, "hash": hash}));
    if json {
        render::print_json(&json!({
            "ok": report.first_break.is_none(),
            "entries_verified": report.entries,
            "head": head,
            "first_break": report.first_break.as_ref().map(|b| json!({
                "seq": b.seq,
                "reason": b.reason,
            })),
        }));
    }
    match &report.first_break {
        None => {
            if !json {
                match report.head {
                    Some((seq, hash)) => println!(
                        "audit log intact: {} entries, head #{seq} {hash}",
                        report.entries
                    ),
                    None => println!("audit log intact: no entries yet"),
                }
            }
            Ok(Exit::Ok)
        }
        Some(b) => {
            let message = format!(
                "audit log BROKEN at entry #{}: {} ({} entries before it verify)",
                b.seq, b.reason, report.entries
            );
            if json {
                eprintln!("{message}");
            } else {
                println!("{message}");
            }
            Ok(Exit::VerificationFailed)
        }
    }
}

/// `otdrift backup --out DIR`: a consistent copy of the database (SQLite `VACUUM INTO`, safe
/// while the daemon writes) and the agent key, checked by opening the copy and verifying its
/// audit chain. Restoring is copying both files back into `data_dir` while the agent is
/// stopped (README: "Backup and restore").
pub fn backup(config: &Path, out: &Path) -> CmdResult {
    let agent = Agent::open(config)?;
    if out.exists() {
        return Err(Failure::usage(anyhow!(
            "{} already exists; a backup goes into a new directory",
            out.display()
        )));
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(out)
        .with_context(|| format!("cannot create {}", out.display()))
        .map_err(Failure::runtime)?;
    let db = out.join(DB_FILE);
    agent
        .store
        .backup_to(&db)
        .runtime("cannot copy the database")?;
    let key_from = agent.config.agent.data_dir.join(AGENT_KEY_FILE);
    let key_to = out.join(AGENT_KEY_FILE);
    std::fs::copy(&key_from, &key_to)
        .with_context(|| format!("cannot copy {}", key_from.display()))
        .map_err(Failure::runtime)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_to, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", key_to.display()))
            .map_err(Failure::runtime)?;
    }
    let copy = otdrift_store::Store::open(&db, Arc::new(otdrift_core::SystemClock))
        .runtime("the copy does not open")?;
    let report = copy.audit_verify().runtime("cannot verify the copy")?;
    if let Some(b) = report.first_break {
        return Err(Failure::runtime(anyhow!(
            "the copy's audit chain breaks at #{}: {}",
            b.seq,
            b.reason
        )));
    }
    println!(
        "backup written to {}: {DB_FILE} ({} audit entries, head {}) and {AGENT_KEY_FILE} (mode 0600; keep it secret)",
        out.display(),
        report.entries,
        report
            .head
            .map(|(seq, hash)| format!("#{seq} {}", hash.short()))
            .unwrap_or_else(|| "none".to_owned())
    );
    Ok(Exit::Ok)
}
