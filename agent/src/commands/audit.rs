//! `otdrift audit-verify`: walks the hash chain; exit 5 names the first broken entry.

use std::path::Path;

use serde_json::json;

use crate::context::Agent;
use crate::exit::{CmdResult, Exit, RuntimeContext};
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
