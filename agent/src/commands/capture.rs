//! `otdrift capture ASSET [--change ID --phase before|after] [--json]`.

use std::path::Path;

use otdrift_store::Phase;
use serde_json::json;

use crate::capture::{CaptureFailure, capture_asset};
use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure};
use crate::render;

/// Captures one asset now, under its `capture_timeout_ms`; exit 0 when it matches its
/// baseline, 3 on drift, 1 when the device cannot be read or its answers are not state
/// (refused, malformed, a safety bound: an `asset.collection_failed` event).
pub async fn run(
    config: &Path,
    asset_id: &str,
    change: Option<(String, Phase)>,
    json: bool,
) -> CmdResult {
    let mut agent = Agent::open(config)?;
    let asset = agent.asset(asset_id)?.clone();
    let mut collector =
        otdrift_protocols::build(&asset, &agent.config.agent.data_dir).map_err(Failure::usage)?;
    let change_ref = change.as_ref().map(|(id, phase)| (id.as_str(), *phase));
    let rules = crate::rules::change_rules(&agent.config, &asset);
    let result = capture_asset(
        &mut agent.store,
        &asset,
        &rules,
        collector.as_mut(),
        change_ref,
    )
    .await;
    collector.close().await;
    let report = match result {
        Ok(report) => report,
        Err(failure) => {
            if json {
                let error = match &failure {
                    CaptureFailure::Device(e) => json!({
                        "kind": e.reason().as_str(),
                        "request": e.request,
                        "detail": e.detail(),
                        "message": e.to_string(),
                    }),
                    CaptureFailure::Store(e) => json!({
                        "kind": "store",
                        "message": e.to_string(),
                    }),
                };
                render::print_json(&json!({
                    "asset": asset.id,
                    "address": asset.address,
                    "error": error,
                }));
            }
            return Err(failure.into());
        }
    };
    if json {
        render::print_json(&render::capture_json(&asset, &report));
    } else {
        print!("{}", render::capture_human(&asset, &report));
    }
    Ok(if report.outcome.drift.is_drifted() {
        Exit::Drift
    } else {
        Exit::Ok
    })
}
