//! `otdrift check-config`: every error at once, each with file, line and key, then every check
//! `otdrift run` makes before it starts ([`crate::preflight::check`], the same function), so a
//! config that passes here does not fail at start.

use std::path::Path;

use anyhow::anyhow;
use serde_json::json;

use crate::context::plural;
use crate::exit::{CmdResult, Exit, Failure};
use crate::render;

/// Checks the config file and what `run` checks at start; exit 0 when both are fine (warnings
/// are printed), 2 with every error otherwise.
pub fn run(path: &Path, json: bool) -> CmdResult {
    match otdrift_config::load(path) {
        Ok(config) => {
            let (_, problems) = crate::preflight::check(&config);
            let fatal = problems.iter().filter(|p| p.fatal).count();
            if json {
                render::print_json(&json!({
                    "ok": fatal == 0,
                    "file": path,
                    "agent": config.agent.id,
                    "assets": config.assets.iter().map(|a| json!({
                        "id": a.id,
                        "protocol": a.protocol.kind().as_str(),
                        "address": a.address,
                        "schedule": a.schedule,
                    })).collect::<Vec<_>>(),
                    "approvers": config.approvers.iter().map(|a| &a.id).collect::<Vec<_>>(),
                    "errors": [],
                    "problems": problems.iter().map(|p| json!({
                        "key": p.key,
                        "message": p.message,
                        "fatal": p.fatal,
                    })).collect::<Vec<_>>(),
                }));
            } else {
                for p in &problems {
                    println!("{}: {p}", path.display());
                }
                if fatal == 0 {
                    println!(
                        "{}: ok ({}, {})",
                        path.display(),
                        plural(config.assets.len(), "asset"),
                        plural(config.approvers.len(), "approver")
                    );
                }
            }
            if fatal > 0 {
                return Err(Failure::usage(anyhow!(
                    "{} in {}: `otdrift run` would refuse to start",
                    plural(fatal, "problem"),
                    path.display()
                )));
            }
            Ok(Exit::Ok)
        }
        Err(errors) => {
            if json {
                render::print_json(&json!({
                    "ok": false,
                    "file": path,
                    "errors": errors.0.iter().map(|e| json!({
                        "file": e.file,
                        "line": e.line,
                        "column": e.column,
                        "key": e.key,
                        "kind": format!("{:?}", e.kind),
                        "message": e.message,
                    })).collect::<Vec<_>>(),
                }));
            } else {
                println!("{errors}");
            }
            Err(Failure::usage(anyhow!(
                "{} in {}",
                plural(errors.0.len(), "config error"),
                path.display()
            )))
        }
    }
}
