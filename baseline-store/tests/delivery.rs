//! Delivery state per destination (cursors, parked events, pauses) and bounded drift events,
//! against real SQLite files.

mod common;

use std::sync::Arc;

use otdrift_core::{Class, Item, ManualClock, Snapshot, Value, parse_timestamp};
use otdrift_store::{
    DeliveryRefusal, ENVELOPE_ALLOWANCE, MIN_MAX_EVENT_BYTES, ParkedStatus, RetryTarget, Store,
    StoreError, UPSTREAM, event_type,
};
use serde_json::json;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        parse_timestamp("2026-12-01T08:00:00Z").expect("valid timestamp"),
    ))
}

fn store_in(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("otdrift.db"), clock()).expect("store")
}

fn fill(store: &mut Store, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            store
                .enqueue_event(event_type::AUDIT_HEAD, None, &json!({"n": i}))
                .expect("enqueue")
        })
        .collect()
}

const TOO_LARGE: DeliveryRefusal<'static> = DeliveryRefusal {
    reason: "too-large",
    http_status: Some(413),
    message: "payload too large",
};

#[test]
fn a_cursor_moves_in_order_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = store_in(&dir);
    let seqs = fill(&mut store, 5);
    assert_eq!(store.outbox_depth().expect("depth"), 5);
    let batch = store.pending(UPSTREAM, 3).expect("pending");
    assert_eq!(
        batch.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs[..3].to_vec()
    );
    assert_eq!(store.acknowledge(UPSTREAM, seqs[2]).expect("ack"), seqs[2]);
    // An older acknowledgement (a late duplicate) never moves the cursor back.
    assert_eq!(store.acknowledge(UPSTREAM, seqs[0]).expect("ack"), seqs[2]);
    assert!(matches!(
        store.acknowledge(UPSTREAM, seqs[4] + 10),
        Err(StoreError::NotFound(_))
    ));
    drop(store);

    let store = store_in(&dir);
    let state = store.delivery_state(UPSTREAM).expect("state");
    assert_eq!(state.acked_seq, seqs[2]);
    assert_eq!(state.depth, 2);
    assert_eq!(state.last_seq, seqs[4]);
    assert_eq!(
        store
            .pending(UPSTREAM, 10)
            .expect("pending")
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        seqs[3..].to_vec()
    );
    // Another destination has a cursor of its own: the upstream's progress is not its.
    assert_eq!(store.pending("syslog", 10).expect("pending").len(), 5);
}

#[test]
fn a_parked_event_is_kept_announced_once_and_the_rest_flows_on() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = store_in(&dir);
    let seqs = fill(&mut store, 3);
    // Only the head can be parked: parking a later event would reorder the ones before it.
    assert!(matches!(
        store.park(UPSTREAM, seqs[1], &TOO_LARGE),
        Err(StoreError::NotFound(_))
    ));
    let announced = store
        .park(UPSTREAM, seqs[0], &TOO_LARGE)
        .expect("parked")
        .expect("announced");
    let state = store.delivery_state(UPSTREAM).expect("state");
    assert_eq!(state.acked_seq, seqs[0]);
    assert_eq!((state.parked, state.queued), (1, 0));
    // Not delivered and not parked: the two behind it and the announcement.
    assert_eq!(state.depth, 3);
    let next: Vec<i64> = store
        .pending(UPSTREAM, 10)
        .expect("pending")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(next, vec![seqs[1], seqs[2], announced]);
    let announcement = &store.events_after(announced - 1, 1).expect("events")[0];
    assert_eq!(announcement.event_type, event_type::OUTBOX_PARKED);
    assert_eq!(announcement.data["seq"], seqs[0]);
    assert_eq!(announcement.data["http_status"], 413);
    assert_eq!(announcement.data["reason"], "too-large");
    assert_eq!(announcement.data["destination"], "upstream");

    // A refused announcement is parked without announcing itself again.
    store.acknowledge(UPSTREAM, seqs[2]).expect("ack");
    assert_eq!(
        store.park(UPSTREAM, announced, &TOO_LARGE).expect("parked"),
        None
    );
    assert_eq!(store.last_event_seq().expect("last"), announced);

    let parked = store.parked_events(UPSTREAM, false).expect("parked");
    assert_eq!(
        parked.iter().map(|p| p.event.seq).collect::<Vec<_>>(),
        vec![seqs[0], announced]
    );
    assert_eq!(parked[0].status, ParkedStatus::Parked);
    assert_eq!(parked[0].http_status, Some(413));
    assert_eq!(parked[0].message, "payload too large");
    let audit = store
        .audit_entries_of_kind(&["outbox.parked"])
        .expect("audit");
    assert_eq!(audit.len(), 2);
    assert!(store.audit_verify().expect("verify").first_break.is_none());
}

#[test]
fn a_retry_requeues_a_parked_event_until_it_is_delivered() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = store_in(&dir);
    let seqs = fill(&mut store, 2);
    store.park(UPSTREAM, seqs[0], &TOO_LARGE).expect("parked");
    assert!(matches!(
        store.request_retry(UPSTREAM, RetryTarget::Seq(seqs[1])),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .request_retry(UPSTREAM, RetryTarget::Seq(seqs[0]))
            .expect("retry"),
        vec![seqs[0]]
    );
    let state = store.delivery_state(UPSTREAM).expect("state");
    assert_eq!((state.parked, state.queued), (0, 1));
    let queued = store.queued_retries(UPSTREAM, 10).expect("queued");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].seq, seqs[0]);

    // Refused again: parked again, with the new answer and the retry counted.
    let refused = DeliveryRefusal {
        reason: "unprocessable",
        http_status: Some(422),
        message: "still no",
    };
    store
        .retry_refused(UPSTREAM, seqs[0], &refused)
        .expect("re-parked");
    let parked = store.parked_events(UPSTREAM, false).expect("parked");
    assert_eq!(parked[0].status, ParkedStatus::Parked);
    assert_eq!(parked[0].http_status, Some(422));
    assert_eq!(parked[0].retries, 1);

    assert_eq!(
        store
            .request_retry(UPSTREAM, RetryTarget::All)
            .expect("all"),
        vec![seqs[0]]
    );
    store
        .pause_delivery(UPSTREAM, "the receiver answered 403", Some(403))
        .expect("paused");
    store.retry_delivered(UPSTREAM, seqs[0]).expect("delivered");
    assert_eq!(
        store.delivery_state(UPSTREAM).expect("state").paused,
        None,
        "an accepted retry ends a pause too"
    );
    assert!(
        store
            .parked_events(UPSTREAM, false)
            .expect("open")
            .is_empty()
    );
    let all = store.parked_events(UPSTREAM, true).expect("all");
    assert_eq!(all[0].status, ParkedStatus::Delivered);
    assert_eq!(all[0].retries, 2);
    assert!(all[0].delivered_at.is_some());
    assert_eq!(store.delivery_state(UPSTREAM).expect("state").queued, 0);
    assert_eq!(
        store
            .audit_entries_of_kind(&["outbox.retry_requested"])
            .expect("audit")
            .len(),
        2
    );
}

#[test]
fn a_pause_is_kept_until_the_destination_accepts_again() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = store_in(&dir);
    let seqs = fill(&mut store, 2);
    assert!(
        store
            .pause_delivery(UPSTREAM, "the receiver answered 401", Some(401))
            .expect("paused")
    );
    assert!(
        !store
            .pause_delivery(UPSTREAM, "the receiver answered 403", Some(403))
            .expect("still paused")
    );
    drop(store);
    let mut store = store_in(&dir);
    let pause = store
        .delivery_state(UPSTREAM)
        .expect("state")
        .paused
        .expect("kept across a reopen");
    assert_eq!(pause.http_status, Some(403));
    assert_eq!(
        pause.since,
        parse_timestamp("2026-12-01T08:00:00Z").expect("t")
    );
    store.acknowledge(UPSTREAM, seqs[1]).expect("ack");
    assert_eq!(store.delivery_state(UPSTREAM).expect("state").paused, None);
    let kinds: Vec<String> = store
        .audit_entries_of_kind(&["delivery.paused", "delivery.resumed"])
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["delivery.paused", "delivery.resumed"]);
}

fn big_snapshot(n: usize, value: u64) -> Snapshot {
    let mut items =
        vec![Item::new("ads/identity/version", Class::Identity, Value::from("3.1")).expect("item")];
    for i in 0..n {
        items.push(
            Item::new(
                format!("ads/symbol/GVL.Table[{i:06}]"),
                Class::Program,
                Value::UInt(value + i as u64),
            )
            .expect("item"),
        );
    }
    Snapshot::from_items(items).expect("unique")
}

fn record(store: &mut Store, s: &Snapshot) -> otdrift_store::CaptureOutcome {
    store
        .record_capture(&common::ads_capture("filler-1", s))
        .expect("recorded")
}

#[test]
fn a_huge_drift_event_is_cut_to_the_limit_and_pages_the_rest() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = store_in(&dir);
    store.set_max_event_bytes(1);
    assert_eq!(store.max_event_bytes(), MIN_MAX_EVENT_BYTES);
    record(&mut store, &big_snapshot(3000, 0));
    let outcome = record(&mut store, &big_snapshot(3000, 1));
    let drift = outcome.drift.event().expect("drift").clone();
    assert_eq!(drift.changes.len(), 3000);

    let last = store.last_event_seq().expect("last");
    let event = &store.events_after(last - 1, 1).expect("events")[0];
    assert_eq!(event.event_type, event_type::DRIFT_DETECTED);
    let data = &event.data;
    let size = serde_json::to_vec(data).expect("json").len();
    assert!(
        size <= MIN_MAX_EVENT_BYTES - ENVELOPE_ALLOWANCE,
        "data is {size} bytes"
    );
    assert_eq!(data["truncated"], true);
    assert_eq!(data["changes_total"], 3000);
    assert_eq!(data["changes_by_class"]["program"], 3000);
    assert_eq!(data["changes_by_class"]["identity"], 0);
    let kept = data["changes"].as_array().expect("changes").len();
    assert!(kept > 10 && kept < 3000, "{kept} changes kept");
    let link = data["changes_link"].as_str().expect("link");
    assert_eq!(
        link,
        format!(
            "/v1/drift/{}/changes?observed={}&after={kept}",
            drift.id, drift.observed_digest
        )
    );

    // The rest, page by page, is exactly the stored list after the kept ones.
    let mut after = kept as u64;
    let mut rest = Vec::new();
    loop {
        let page = store
            .drift_changes(drift.id, after, 1000)
            .expect("page")
            .expect("drift exists");
        assert_eq!(page.header.changes_total, 3000);
        assert_eq!(page.header.observed_digest, drift.observed_digest);
        if page.changes.is_empty() {
            break;
        }
        after += page.changes.len() as u64;
        rest.extend(page.changes);
    }
    let mut all: Vec<serde_json::Value> = data["changes"].as_array().expect("changes").clone();
    all.extend(rest);
    assert_eq!(
        all,
        serde_json::to_value(&drift.changes)
            .expect("json")
            .as_array()
            .expect("a")
            .clone()
    );
    assert!(
        store
            .drift_changes(drift.id + 100, 0, 10)
            .expect("q")
            .is_none()
    );
}

#[test]
fn a_small_drift_event_carries_every_change_and_the_counts() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = store_in(&dir);
    record(&mut store, &big_snapshot(3, 0));
    record(&mut store, &big_snapshot(3, 1));
    let last = store.last_event_seq().expect("last");
    let data = &store.events_after(last - 1, 1).expect("events")[0].data;
    assert_eq!(data["truncated"], false);
    assert_eq!(data["changes_total"], 3);
    assert_eq!(data["changes"].as_array().expect("changes").len(), 3);
    assert!(data.get("changes_link").is_none());
}
