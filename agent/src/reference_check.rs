//! The reference in `docs/reference/` agrees with the code: every route, metric, event type
//! and rejection reason the agent has is documented, with the status it answers.

use std::path::Path;

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/reference")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_route_is_in_the_api_reference() {
    let api = doc("api.md");
    for (method, path) in crate::daemon::api::ROUTES
        .into_iter()
        .chain(crate::daemon::ui::ROUTES)
    {
        assert!(
            api.contains(&format!("`{method} {path}")),
            "docs/reference/api.md does not list {method} {path}"
        );
    }
}

#[test]
fn every_metric_is_in_the_api_reference() {
    let api = doc("api.md");
    use crate::daemon::metrics::{AssetLabel, CaptureLabel, FailureLabel, KindLabel, Metrics};
    let metrics = Metrics::new();
    // Families show only once they have a sample.
    let asset = AssetLabel { asset: "a".into() };
    let _ = metrics.captures.get_or_create(&CaptureLabel {
        asset: "a".into(),
        outcome: "match".into(),
    });
    let _ = metrics.collection_failures.get_or_create(&FailureLabel {
        asset: "a".into(),
        reason: "refused".into(),
    });
    for family in [&metrics.missed, &metrics.backoff_skips, &metrics.deferred] {
        let _ = family.get_or_create(&asset);
    }
    for family in [&metrics.drift_open, &metrics.reachable] {
        let _ = family.get_or_create(&asset);
    }
    let _ = metrics.pruned.get_or_create(&KindLabel {
        kind: "outbox".into(),
    });
    let text = metrics.render();
    let mut seen = 0;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line["# TYPE ".len()..].split(' ');
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let shown = match kind {
            "counter" => format!("{name}_total"),
            _ => name.to_owned(),
        };
        seen += 1;
        assert!(
            api.contains(&format!("`{shown}")),
            "docs/reference/api.md does not list the metric {shown}"
        );
    }
    assert!(seen >= 20, "only {seen} metrics rendered:\n{text}");
}

#[test]
fn every_event_type_is_in_the_events_reference() {
    let events = doc("events.md");
    for t in otdrift_store::event_type::ALL {
        assert!(
            events.contains(&format!("| `{t}` |")),
            "docs/reference/events.md has no row for {t}"
        );
    }
}

#[test]
fn every_rejection_reason_is_in_the_token_reference_with_its_status() {
    use crate::approval::token::Rejection;
    let tokens = doc("tokens.md");
    let mut codes: Vec<&str> = [
        Rejection::Malformed(String::new()),
        Rejection::Algorithm(String::new()),
        Rejection::UnknownApprover(String::new()),
        Rejection::Signature(String::new()),
        Rejection::IssuerMismatch {
            iss: String::new(),
            kid: String::new(),
        },
        Rejection::MissingClaim("to"),
        Rejection::BadClaim {
            claim: "to",
            reason: String::new(),
        },
        Rejection::BadDigest {
            claim: "to",
            reason: String::new(),
        },
        Rejection::Expired(String::new()),
        Rejection::NotYetValid(String::new()),
        Rejection::SelfApproved {
            requestor: String::new(),
            field: "iss",
            other: String::new(),
        },
        Rejection::DuplicateMember {
            part: "claims",
            name: String::new(),
        },
        Rejection::Lifetime {
            lifetime: String::new(),
            max: String::new(),
        },
        Rejection::TimeWindow(String::new()),
        Rejection::UnknownAsset(String::new()),
    ]
    .iter()
    .map(Rejection::code)
    .collect();
    // The store's refusals of a verified token.
    codes.extend([
        "replay",
        "from-mismatch",
        "not-pending",
        crate::approval::ENVELOPE_REFUSED,
        crate::approval::NOT_CAPTURE_CHANGE,
    ]);
    for code in codes {
        let status = crate::daemon::api::rejection_status(code).as_u16();
        assert!(
            tokens.contains(&format!("| `{code}` | {status} |")),
            "docs/reference/tokens.md has no row `{code}` with HTTP {status}"
        );
    }
}
