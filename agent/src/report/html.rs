//! The compliance report for an auditor's eyes (and paper): one self-contained file, no
//! scripts, no network, every value from the signed JSON document, escaped. Laid out to print:
//! a summary, one table of every asset, then per asset the drift and failed collections of
//! the window.

use serde_json::Value as Json;

use crate::evidence::html::{Col, STYLE, cell, esc, rows, text};
use crate::evidence::list;

/// The CSS class that colours an asset's standing.
fn standing_class(standing: &str) -> &'static str {
    match standing {
        "verified" => "ok",
        "provisional baseline" | "no baseline" => "warning",
        _ => "violation",
    }
}

/// Renders a report document (`{"report", "signature"}`) as HTML.
pub fn render(doc: &Json) -> String {
    let empty = Json::Null;
    let report = doc.get("report").unwrap_or(&empty);
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!(
        "<title>Configuration compliance report: {}</title><style>{STYLE}</style></head><body>\n",
        cell(report.pointer("/agent/id"))
    ));
    h.push_str(&format!(
        "<h1>Configuration compliance report: {}</h1>\n",
        cell(report.pointer("/agent/id"))
    ));
    h.push_str(&format!(
        "<p class=\"muted\">Report {} generated {} by otdrift agent {} (key <code>{}</code>). \
         Window {} to {}; an asset is verification overdue when its last match with the \
         approved baseline is older than {}. The JSON file beside this one carries the \
         agent's signature: <code>otdrift evidence-verify</code> checks it.</p>\n",
        cell(report.get("schema")),
        cell(report.get("generated_at")),
        cell(report.pointer("/agent/id")),
        cell(report.pointer("/agent/public_key")),
        cell(report.pointer("/window/since")),
        cell(report.pointer("/window/until")),
        cell(report.get("verify_max_age")),
    ));

    h.push_str("<h2>Summary</h2>\n<dl>\n");
    for (label, key) in [
        ("Assets", "assets"),
        ("Verified against an approved baseline", "verified"),
        ("Verification overdue", "verification_overdue"),
        ("Open drift", "drift_open"),
        (
            "Provisional baseline (never approved)",
            "provisional_baseline",
        ),
        ("No baseline yet", "no_baseline"),
        ("Drift events in the window", "drift_events"),
        ("Failed collections in the window", "failed_collections"),
    ] {
        h.push_str(&format!(
            "<dt>{label}</dt><dd>{}</dd>\n",
            cell(report.pointer(&format!("/summary/{key}")))
        ));
    }
    h.push_str("</dl>\n");

    h.push_str("<h2>Assets</h2>\n<table>\n<tr><th>Asset</th><th>Standing</th><th>Protocol</th><th>Address</th><th>Approved baseline</th><th>Change</th><th>Approved by</th><th>Set</th><th>Last verified</th><th>Due</th><th>Open drift</th><th>Envelopes</th></tr>\n");
    for a in list(report, "assets") {
        let standing = text(a.get("standing"));
        let approvers: Vec<String> = list(&a["baseline"], "approvers")
            .map(|p| match p["approver"].as_str() {
                Some(name) => format!("{name} ({})", text(p.get("approver_id"))),
                None => text(p.get("approver_id")),
            })
            .collect();
        let digest = match &a["baseline"] {
            Json::Null => "—".to_owned(),
            b => format!(
                "<code>{}</code>{}",
                cell(b.get("digest")),
                if b["provisional"] == Json::Bool(true) {
                    " (provisional)"
                } else {
                    ""
                }
            ),
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"flag {}\">{}</td><td>{}</td><td><code>{}</code></td><td>{digest}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            cell(a.get("id")),
            standing_class(&standing),
            esc(&standing),
            cell(a.get("protocol")),
            cell(a.get("address")),
            cell(a.pointer("/baseline/change_id")),
            esc(&if approvers.is_empty() { "—".to_owned() } else { approvers.join(", ") }),
            cell(a.pointer("/baseline/set_at")),
            cell(a.get("last_verified")),
            cell(a.get("verification_due")),
            a["open_drift"].as_array().map_or(0, Vec::len),
            esc(&super::envelopes_text(&a["envelopes"])),
        ));
    }
    h.push_str("</table>\n");

    for a in list(report, "assets") {
        let drift: Vec<&Json> = list(a, "drift_events").collect();
        let failed: Vec<&Json> = list(a, "failed_collections").collect();
        if drift.is_empty() && failed.is_empty() {
            continue;
        }
        h.push_str(&format!("<h2>{} in the window</h2>\n", cell(a.get("id"))));
        if !drift.is_empty() {
            h.push_str("<table>\n<tr><th>Drift</th><th>Status</th><th>Severity</th><th>First seen</th><th>Last seen</th><th>Closed</th><th>Change</th><th>Items</th></tr>\n");
            rows(
                &mut h,
                drift,
                &[
                    Col::Ref("/id"),
                    Col::Text("/status"),
                    Col::Text("/severity"),
                    Col::Text("/first_seen"),
                    Col::Text("/last_seen"),
                    Col::Text("/closed_at"),
                    Col::Text("/change_id"),
                    Col::Text("/changes"),
                ],
            );
            h.push_str("</table>\n");
        }
        if !failed.is_empty() {
            h.push_str("<table>\n<tr><th>Failed collection</th><th>Kind</th><th>Reason</th><th>Request</th><th>Message</th><th>Audit entry</th></tr>\n");
            rows(
                &mut h,
                failed,
                &[
                    Col::Text("/at"),
                    Col::Text("/kind"),
                    Col::Text("/reason"),
                    Col::Code("/request"),
                    Col::Text("/message"),
                    Col::Ref("/audit_seq"),
                ],
            );
            h.push_str("</table>\n");
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let doc = serde_json::json!({"report": {
            "agent": {"id": "<script>"},
            "assets": [{"id": "a&b", "standing": "verified", "baseline": null,
                        "open_drift": [], "envelopes": [], "drift_events": [],
                        "failed_collections": []}],
        }});
        let html = render(&doc);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a&amp;b"));
    }
}
