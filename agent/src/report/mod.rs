//! `otdrift report`: the compliance report an auditor asks for. For every configured asset:
//! what it is, the approved baseline in force (digest, change, approvers, when), when it was
//! last verified (its last capture that matched that baseline), whether that proof is overdue,
//! its open drift, and the drift events and failed collections of the reporting window.
//!
//! Three renderings of one document: JSON signed by the agent key like an evidence pack
//! (`{"report", "signature"}`, `evidence-verify` checks it), one self-contained HTML file
//! (`html.rs`, printable), and CSV (one row per asset, for a spreadsheet). The schema is in
//! `docs/reference/report.md`.

pub mod html;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use otdrift_config::Config;
use otdrift_core::format_timestamp;
use otdrift_store::{DriftFilter, DriftStatus, Store, StoreError};
use serde_json::{Value as Json, json};

use crate::keys;

/// The report schema this build writes.
pub const SCHEMA: &str = "otdrift.report/v1";

/// The audit kinds counted as failed collections: one entry per failure streak, and outages
/// a maintenance window held back (announced outages are events, read from the outbox).
const FAILED_KINDS: [&str; 2] = ["asset.collection_failed", "asset.unreachable"];

/// Outbox events read per page while looking for announced outages.
const PAGE: u32 = 1_000;

/// Announced outages (`io.otdrift.asset.unreachable`) since `since`, from the outbox (as long
/// as retention keeps them: `[retention]`).
fn outages(
    store: &Store,
    since: DateTime<Utc>,
) -> Result<Vec<otdrift_store::OutboxEvent>, StoreError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page.into_iter().filter(|e| {
            e.event_type == otdrift_store::event_type::ASSET_UNREACHABLE && e.time >= since
        }));
    }
    Ok(out)
}

/// An asset's standing, the report's first column.
fn standing(asset: &Json) -> &'static str {
    if asset["baseline"].is_null() {
        "no baseline"
    } else if asset["verification_overdue_since"].is_string() {
        "verification overdue"
    } else if asset["open_drift"]
        .as_array()
        .is_some_and(|open| !open.is_empty())
    {
        "drift open"
    } else if asset["baseline"]["provisional"] == Json::Bool(true) {
        "provisional baseline"
    } else {
        "verified"
    }
}

/// Builds and signs the report of every configured asset for the window from `since` to now.
pub fn build(
    store: &Store,
    config: &Config,
    agent_key: &SigningKey,
    since: DateTime<Utc>,
) -> Result<Json, StoreError> {
    let now = store.clock().now();
    let max_age = TimeDelta::from_std(config.agent.verify_max_age).unwrap_or(TimeDelta::MAX);
    let failures = store.audit_entries_of_kind(&FAILED_KINDS)?;
    let outages = outages(store, since)?;
    let mut assets = Vec::with_capacity(config.assets.len());
    for asset in &config.assets {
        let baseline = store.current_baseline(&asset.id)?;
        let approvers: Vec<Json> = match baseline.as_ref().and_then(|b| b.change_id.clone()) {
            Some(change) => store
                .approvals_for_change(&change)?
                .into_iter()
                .filter(|a| a.asset == asset.id)
                .map(|a| {
                    json!({
                        "approver_id": a.approver_id,
                        "approver": a.approver,
                        "requestor": a.requestor,
                        "kind": a.kind,
                        "issued_at": format_timestamp(a.issued_at),
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let verification = store.verification(&asset.id, max_age)?;
        let drifts = store.drift_events(&DriftFilter {
            asset: Some(asset.id.clone()),
            open_only: false,
        })?;
        let open: Vec<Json> = drifts
            .iter()
            .filter(|d| d.status == DriftStatus::Open)
            .map(|d| {
                json!({
                    "id": d.id,
                    "severity": d.severity.to_string(),
                    "first_seen": format_timestamp(d.first_seen),
                    "last_seen": format_timestamp(d.last_seen),
                    "observed_digest": d.observed_digest,
                })
            })
            .collect();
        let in_window: Vec<Json> = drifts
            .iter()
            .filter(|d| d.last_seen >= since)
            .map(|d| {
                json!({
                    "id": d.id,
                    "status": d.status.as_str(),
                    "severity": d.severity.to_string(),
                    "first_seen": format_timestamp(d.first_seen),
                    "last_seen": format_timestamp(d.last_seen),
                    "closed_at": d.closed_at.map(format_timestamp),
                    "change_id": d.change_id,
                    "changes": d.changes.len(),
                })
            })
            .collect();
        let mine = |a: &Option<String>| a.as_deref() == Some(asset.id.as_str());
        let mut failed: Vec<(DateTime<Utc>, Json)> = failures
            .iter()
            .filter(|e| mine(&e.asset) && e.at >= since)
            .map(|e| {
                let body: Json = serde_json::from_str(&e.body).unwrap_or(Json::Null);
                let row = json!({
                    "at": format_timestamp(e.at),
                    "kind": e.kind,
                    "reason": body.get("reason"),
                    "request": body.get("request"),
                    "message": body.get("message").or(body.get("error")),
                    "audit_seq": e.seq,
                    "event_seq": null,
                });
                (e.at, row)
            })
            .collect();
        failed.extend(outages.iter().filter(|e| mine(&e.asset)).map(|e| {
            let row = json!({
                "at": format_timestamp(e.time),
                "kind": "asset.unreachable",
                "reason": "unreachable",
                "request": null,
                "message": e.data.get("error"),
                "audit_seq": null,
                "event_seq": e.seq,
            });
            (e.time, row)
        }));
        failed.sort_by_key(|(at, _)| *at);
        let failed: Vec<Json> = failed.into_iter().map(|(_, row)| row).collect();
        let mut row = json!({
            "id": asset.id,
            "protocol": asset.protocol.kind().as_str(),
            "address": asset.address,
            "baseline": baseline.as_ref().map(|b| json!({
                "digest": b.digest,
                "provisional": b.provisional,
                "set_at": format_timestamp(b.set_at),
                "reason": b.reason,
                "change_id": b.change_id,
                "approvers": approvers,
            })),
            "last_verified": verification.last_verified.map(format_timestamp),
            "verification_due": verification.due.map(format_timestamp),
            "verification_overdue_since": verification.overdue_since.map(format_timestamp),
            "open_drift": open,
            "drift_events": in_window,
            "failed_collections": failed,
            // The approved envelopes in force: setpoints that may move inside them.
            "envelopes": baseline.as_ref().map_or_else(Vec::new, |b| {
                b.envelope
                    .iter()
                    .filter_map(|(pattern, _)| {
                        otdrift_store::envelope::rule_json(&b.envelope, pattern)
                    })
                    .collect()
            }),
        });
        row["standing"] = json!(standing(&row));
        assets.push(row);
    }
    let count = |what: &str| assets.iter().filter(|a| a["standing"] == what).count();
    let sum = |key: &str| -> usize {
        assets
            .iter()
            .map(|a| a[key].as_array().map_or(0, Vec::len))
            .sum()
    };
    let summary = json!({
        "assets": assets.len(),
        "verified": count("verified"),
        "verification_overdue": count("verification overdue"),
        "drift_open": count("drift open"),
        "provisional_baseline": count("provisional baseline"),
        "no_baseline": count("no baseline"),
        "drift_events": sum("drift_events"),
        "failed_collections": sum("failed_collections"),
    });
    let report = json!({
        "schema": SCHEMA,
        "generated_at": format_timestamp(now),
        "agent": {
            "id": config.agent.id,
            "public_key": keys::public_key_text(&agent_key.verifying_key()),
        },
        "window": {"since": format_timestamp(since), "until": format_timestamp(now)},
        "verify_max_age": humantime(config.agent.verify_max_age),
        "summary": summary,
        "assets": assets,
    });
    Ok(crate::evidence::signed(agent_key, "report", report))
}

/// A duration as the config writes it (`35d`, `12h`, `30s`).
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// One CSV field (RFC 4180: quoted when it holds a comma, quote or line break; quotes
/// doubled). A field that starts like a formula is prefixed with `'` so that a spreadsheet
/// shows it instead of running it.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The envelopes in force for people: `s7/db1/fill_temp 70..75; s7/db2/* one of 1, 2`.
pub(crate) fn envelopes_text(envelopes: &Json) -> String {
    envelopes
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            format!(
                "{} {}",
                rule["pattern"].as_str().unwrap_or_default(),
                crate::render::bound_text(rule)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The report as CSV: a header and one row per asset.
pub fn csv(doc: &Json) -> String {
    let cols = [
        "asset",
        "protocol",
        "address",
        "standing",
        "baseline_digest",
        "baseline_provisional",
        "baseline_set_at",
        "change_id",
        "approvers",
        "last_verified",
        "verification_due",
        "verification_overdue_since",
        "open_drift",
        "drift_events_in_window",
        "failed_collections_in_window",
        "envelopes",
    ];
    let mut out = cols.join(",");
    out.push_str("\r\n");
    let text = |v: &Json| match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let len = |v: &Json| v.as_array().map_or(0, Vec::len).to_string();
    for a in crate::evidence::list(&doc["report"], "assets") {
        let approvers: Vec<String> = crate::evidence::list(&a["baseline"], "approvers")
            .map(|p| match p["approver"].as_str() {
                Some(name) => format!("{name} ({})", text(&p["approver_id"])),
                None => text(&p["approver_id"]),
            })
            .collect();
        let fields = [
            text(&a["id"]),
            text(&a["protocol"]),
            text(&a["address"]),
            text(&a["standing"]),
            text(&a["baseline"]["digest"]),
            text(&a["baseline"]["provisional"]),
            text(&a["baseline"]["set_at"]),
            text(&a["baseline"]["change_id"]),
            approvers.join("; "),
            text(&a["last_verified"]),
            text(&a["verification_due"]),
            text(&a["verification_overdue_since"]),
            len(&a["open_drift"]),
            len(&a["drift_events"]),
            len(&a["failed_collections"]),
            envelopes_text(&a["envelopes"]),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-1,5"), "\"'-1,5\"");
    }

    #[test]
    fn durations_print_as_the_config_writes_them() {
        assert_eq!(
            humantime(std::time::Duration::from_secs(35 * 86_400)),
            "35d"
        );
        assert_eq!(humantime(std::time::Duration::from_secs(7_200)), "2h");
        assert_eq!(humantime(std::time::Duration::from_secs(90)), "90s");
    }
}
