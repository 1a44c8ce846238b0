//! `otdrift check-config`: every error at once, each with file, line and key.

use std::path::Path;

use anyhow::anyhow;
use serde_json::json;

use crate::context::plural;
use crate::exit::{CmdResult, Exit, Failure};
use crate::render;

/// Checks the config file; exit 0 when valid, 2 with every error otherwise.
pub fn run(path: &Path, json: bool) -> CmdResult {
    match otdrift_config::load(path) {
        Ok(config) => {
            if json {
                render::print_json(&json!({
                    "ok": true,
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
                }));
            } else {
                println!(
                    "{}: ok ({}, {})",
                    path.display(),
                    plural(config.assets.len(), "asset"),
                    plural(config.approvers.len(), "approver")
                );
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
