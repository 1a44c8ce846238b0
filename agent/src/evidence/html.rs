//! `evidence.html`: the pack for an auditor's eyes. One self-contained file, no scripts, no
//! network; every value comes from `evidence.json`, escaped.

use serde_json::Value as Json;

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as text for a table cell.
pub(crate) fn text(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => "—".to_owned(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn cell(v: Option<&Json>) -> String {
    esc(&text(v))
}

pub(crate) fn code(v: Option<&Json>) -> String {
    format!("<code>{}</code>", cell(v))
}

/// How one column of a table shows its value (a JSON pointer into the row's object).
pub(crate) enum Col {
    /// Escaped text.
    Text(&'static str),
    /// Escaped text in `<code>` (digests, hashes, item paths).
    Code(&'static str),
    /// A numbered reference, shown as `#n`.
    Ref(&'static str),
    /// Approved envelopes (`{pattern: bound}`), one per line as `pattern 70..75`.
    Envelope(&'static str),
}

/// One table row per element of `items`, its columns as `cols` says.
pub(crate) fn rows<'a>(h: &mut String, items: impl IntoIterator<Item = &'a Json>, cols: &[Col]) {
    for item in items {
        h.push_str("<tr>");
        for col in cols {
            let shown = match col {
                Col::Text(at) => cell(item.pointer(at)),
                Col::Code(at) => code(item.pointer(at)),
                Col::Ref(at) => format!("#{}", cell(item.pointer(at))),
                Col::Envelope(at) => {
                    let lines: Vec<String> = item
                        .pointer(at)
                        .and_then(Json::as_object)
                        .into_iter()
                        .flatten()
                        .map(|(pattern, bound)| {
                            esc(&format!("{pattern} {}", crate::render::bound_text(bound)))
                        })
                        .collect();
                    if lines.is_empty() {
                        "—".to_owned()
                    } else {
                        lines.join("<br>")
                    }
                }
            };
            h.push_str(&format!("<td>{shown}</td>"));
        }
        h.push_str("</tr>\n");
    }
}

pub(crate) const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;word-break:break-all}
.flag{padding:.6rem .8rem;margin:.4rem 0;border-radius:4px;border:1px solid}
.violation{background:#ffebe9;border-color:#cf222e;color:#82071e;font-weight:600}
.warning{background:#fff8c5;border-color:#bf8700}.info{background:#ddf4ff;border-color:#54aeff}
.ok{background:#dafbe1;border-color:#2da44e}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}
.muted{color:#57606a;font-size:.85rem}
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}tr{break-inside:avoid}a{color:inherit}}";

/// Renders an evidence document (`{"pack", "signature"}`) as HTML.
pub fn render(doc: &Json) -> String {
    let empty = Json::Null;
    let pack = doc.get("pack").unwrap_or(&empty);
    let change = text(pack.get("change_id"));
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!(
        "<title>Evidence: change {}</title><style>{STYLE}</style></head><body>\n",
        esc(&change)
    ));
    h.push_str(&format!("<h1>Change {}</h1>\n", esc(&change)));
    h.push_str(&format!(
        "<p class=\"muted\">Evidence pack {} generated {} by otdrift agent {} for asset {} ({} {}).</p>\n",
        cell(pack.get("schema")),
        cell(pack.get("generated_at")),
        cell(pack.pointer("/agent/id")),
        cell(pack.pointer("/asset/id")),
        cell(pack.pointer("/asset/protocol")),
        cell(pack.pointer("/asset/address")),
    ));

    // Flags first: an auditor must not miss them.
    h.push_str("<h2>Findings</h2>\n");
    let flags: Vec<&Json> = super::list(pack, "flags").collect();
    if flags
        .iter()
        .all(|f| f.get("level").and_then(Json::as_str) == Some("info"))
    {
        h.push_str(
            "<div class=\"flag ok\">Approved before implementation; no violations found.</div>\n",
        );
    }
    for f in &flags {
        let level = f.get("level").and_then(Json::as_str).unwrap_or("info");
        let class = match level {
            "violation" => "violation",
            "warning" => "warning",
            _ => "info",
        };
        h.push_str(&format!(
            "<div class=\"flag {class}\" data-code=\"{}\">{}: {}</div>\n",
            cell(f.get("code")),
            esc(&level.to_uppercase()),
            cell(f.get("message"))
        ));
    }

    // People and approvals.
    h.push_str("<h2>Approval</h2>\n");
    let approvals: Vec<&Json> = super::list(pack, "approvals").collect();
    if approvals.is_empty() {
        h.push_str("<p>No approval token was received for this change.</p>\n");
    }
    for a in approvals {
        h.push_str("<dl>\n");
        for (label, key) in [
            ("Status", "status"),
            ("Kind", "kind"),
            ("Requested by", "requestor"),
            ("Approved by", "approver"),
            ("Approver key id", "approver_id"),
            ("Token issued", "issued_at"),
            ("Valid until", "expires_at"),
            ("Received by the agent", "received_at"),
            ("Applied (baseline moved)", "applied_at"),
            ("Approved after implementation", "retroactive"),
            ("From state", "from"),
            ("Approved state (to)", "to"),
            ("Token id (jti)", "jti"),
            ("Rejection reason", "reason"),
        ] {
            if matches!(a.get(key), None | Some(Json::Null)) && key == "reason" {
                continue;
            }
            h.push_str(&format!("<dt>{label}</dt><dd>{}</dd>\n", cell(a.get(key))));
        }
        h.push_str(&format!(
            "<dt>Approver public key</dt><dd>{}</dd>\n<dt>Token</dt><dd>{}</dd>\n</dl>\n",
            code(a.get("approver_public_key")),
            code(a.get("token"))
        ));
    }

    // Signatures.
    h.push_str(
        "<h2>Before and after signatures</h2>\n<table><tr><th>side</th><th>signature</th></tr>\n",
    );
    for side in ["before", "after"] {
        h.push_str(&format!(
            "<tr><td>{side}</td><td>{}</td></tr>\n",
            code(pack.pointer(&format!("/signatures/{side}")))
        ));
    }
    h.push_str("</table>\n");
    h.push_str(&format!(
        "<p>Change signatures (content only, the same on every controller that runs it): before {}, after {}.</p>\n",
        code(pack.pointer("/signatures/before_change_signature")),
        code(pack.pointer("/signatures/after_change_signature"))
    ));

    // Where it was validated, and what it still owes.
    let staging: Vec<&Json> = super::list(pack, "staging").collect();
    let changes: Vec<&Json> = super::list(pack, "changes").collect();
    if !staging.is_empty() || !changes.is_empty() {
        h.push_str("<h2>Staging and policy</h2>\n<ul>\n");
        for l in &staging {
            h.push_str(&format!(
                "<li>{} (change signature {})</li>\n",
                cell(l.get("text")),
                code(l.get("change_signature"))
            ));
        }
        for c in &changes {
            h.push_str(&format!(
                "<li>applied on {} at {} under policy {} ({} change): status <strong>{}</strong>; reviewed diff {}{}</li>\n",
                cell(c.get("asset")),
                cell(c.get("applied_at")),
                cell(c.get("policy")),
                cell(c.get("kind")),
                cell(c.get("status")),
                code(c.get("diff_digest")),
                match c.get("review_due_by").and_then(Json::as_str) {
                    Some(due) => format!("; review due by {}", esc(due)),
                    None => String::new(),
                }
            ));
        }
        h.push_str("</ul>\n");
    }
    let captures: Vec<&Json> = super::list(pack, "captures").collect();
    if !captures.is_empty() {
        h.push_str("<p>Technician's captures:</p>\n<table><tr><th>phase</th><th>captured</th><th>signature</th><th>identity</th><th>program</th><th>setpoint</th><th>items</th></tr>\n");
        rows(
            &mut h,
            captures,
            &[
                Col::Text("/phase"),
                Col::Text("/first_seen"),
                Col::Code("/digest"),
                Col::Code("/classes/identity"),
                Col::Code("/classes/program"),
                Col::Code("/classes/setpoint"),
                Col::Text("/items"),
            ],
        );
        h.push_str("</table>\n");
    }

    // What changed.
    h.push_str("<h2>What changed</h2>\n");
    match pack.get("diff").filter(|d| !d.is_null()) {
        None => h.push_str("<p>No diff: the before or after state is not stored.</p>\n"),
        Some(diff) => {
            let changes: Vec<&Json> = super::list(diff, "changes").collect();
            h.push_str(&format!(
                "<p>{} item(s) differ from {} to {}.</p>\n<table><tr><th>path</th><th>setpoint</th><th>class</th><th>change</th><th>before</th><th>after</th></tr>\n",
                changes.len(),
                code(diff.get("from")),
                code(diff.get("to"))
            ));
            rows(
                &mut h,
                changes,
                &[
                    Col::Code("/path"),
                    Col::Text("/setpoint"),
                    Col::Text("/class"),
                    Col::Text("/kind"),
                    Col::Text("/before"),
                    Col::Text("/after"),
                ],
            );
            h.push_str("</table>\n");
        }
    }

    // Baseline move and drift.
    h.push_str("<h2>Baseline move</h2>\n<table><tr><th>when</th><th>from</th><th>to</th><th>reason</th><th>envelopes before</th><th>envelopes after</th></tr>\n");
    rows(
        &mut h,
        super::list(pack, "baseline_moves"),
        &[
            Col::Text("/set_at"),
            Col::Code("/previous_digest"),
            Col::Code("/digest"),
            Col::Text("/reason"),
            Col::Envelope("/previous_envelope"),
            Col::Envelope("/envelope"),
        ],
    );
    h.push_str("</table>\n");
    let drift: Vec<&Json> = super::list(pack, "drift_events").collect();
    if !drift.is_empty() {
        h.push_str("<p>Drift events closed by this change:</p>\n<table><tr><th>drift</th><th>status</th><th>first seen</th><th>closed</th><th>observed</th></tr>\n");
        rows(
            &mut h,
            drift,
            &[
                Col::Ref("/id"),
                Col::Text("/status"),
                Col::Text("/first_seen"),
                Col::Text("/closed_at"),
                Col::Code("/observed_digest"),
            ],
        );
        h.push_str("</table>\n");
    }

    // The audit trail.
    h.push_str("<h2>Audit-log entries</h2>\n<table><tr><th>#</th><th>at</th><th>event</th><th>details</th><th>chain hash</th><th>previous hash</th></tr>\n");
    rows(
        &mut h,
        super::list(pack, "audit"),
        &[
            Col::Text("/seq"),
            Col::Text("/at"),
            Col::Text("/kind"),
            Col::Code("/body"),
            Col::Code("/hash"),
            Col::Code("/prev_hash"),
        ],
    );
    h.push_str("</table>\n");

    let sig = doc.get("signature").unwrap_or(&empty);
    h.push_str(&format!(
        "<h2>Signature</h2>\n<p>This pack is signed ({}) by the agent key {}. Check it offline with <code>otdrift evidence-verify evidence.json</code>; the signature covers {}.</p>\n",
        cell(sig.get("alg")),
        code(sig.get("public_key")),
        cell(sig.get("signed"))
    ));
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_escaped() {
        let doc = serde_json::json!({"pack": {"change_id": "<script>alert(1)</script>"}});
        let html = super::render(&doc);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
