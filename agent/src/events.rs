//! CloudEvents 1.0 (structured JSON mode) for outbox rows: what the push worker sends and the
//! pull API serves. The same row always renders to the same document, so a receiver that
//! de-duplicates on `id` sees retries as one event.

use otdrift_core::format_timestamp;
use otdrift_store::OutboxEvent;
use serde_json::{Value as Json, json};

/// The media type of a batch (CloudEvents JSON batch format).
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// Renders one outbox row. `source` is `otdrift://<agent id>/<asset id>`, or
/// `otdrift://<agent id>` for events about the agent itself (`audit.head`). The outbox
/// sequence number travels as the extension attribute `otdriftseq`, a receiver's resume
/// point for `GET /v1/events?after=`.
pub fn cloud_event(agent_id: &str, e: &OutboxEvent) -> Json {
    let source = match &e.asset {
        Some(asset) => format!("otdrift://{agent_id}/{asset}"),
        None => format!("otdrift://{agent_id}"),
    };
    let mut doc = json!({
        "specversion": "1.0",
        "id": e.id,
        "source": source,
        "type": e.event_type,
        "time": format_timestamp(e.time),
        "datacontenttype": "application/json",
        "otdriftseq": e.seq,
        "data": e.data,
    });
    if let Some(asset) = &e.asset {
        doc["subject"] = json!(asset);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drift_event_has_the_cloudevents_attributes() {
        let e = OutboxEvent {
            seq: 7,
            id: "5f1c".to_owned(),
            event_type: otdrift_store::event_type::DRIFT_DETECTED.to_owned(),
            asset: Some("press-7".to_owned()),
            time: otdrift_core::parse_timestamp("2026-12-02T08:00:00Z").expect("time"),
            data: json!({"severity": "medium"}),
        };
        let doc = cloud_event("gw-line3", &e);
        assert_eq!(doc["specversion"], "1.0");
        assert_eq!(doc["source"], "otdrift://gw-line3/press-7");
        assert_eq!(doc["type"], "io.otdrift.drift.detected");
        assert_eq!(doc["subject"], "press-7");
        assert_eq!(doc["time"], "2026-12-02T08:00:00.000Z");
        assert_eq!(doc["otdriftseq"], 7);
        assert_eq!(doc["data"]["severity"], "medium");
    }
}
