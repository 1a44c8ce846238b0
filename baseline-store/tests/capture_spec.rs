//! Capture specs: a capture read another way than its baseline's state is drift with reason
//! `capture_changed`; the same state read another way teaches the baseline the new spec.

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use otdrift_core::{Class, Digest, Item, ManualClock, Snapshot, Value, parse_timestamp};
use otdrift_store::{CaptureRecord, DriftOutcome, DriftReason, Store};

fn state(words: &[(&str, u64)]) -> Snapshot {
    Snapshot::from_items(
        words
            .iter()
            .map(|(p, v)| Item::new(*p, Class::Setpoint, Value::UInt(*v)).expect("item")),
    )
    .expect("snapshot")
}

fn record(store: &mut Store, s: &Snapshot, spec: &str) -> otdrift_store::CaptureOutcome {
    common::record_ok(
        store,
        &CaptureRecord {
            capture_spec: Some(Digest::of(spec.as_bytes())),
            ..common::capture("press-7", s)
        },
    )
}

#[test]
fn a_capture_read_another_way_is_a_capture_change_and_the_same_state_adopts_the_spec() {
    let clock = Arc::new(ManualClock::new(
        parse_timestamp("2026-12-01T08:00:00Z").expect("time"),
    ));
    let mut store = Store::open_in_memory(clock.clone()).expect("store");
    let bytes = state(&[("modbus/holding/10", 17041), ("modbus/holding/11", 0)]);
    record(&mut store, &bytes, "v1");

    // Same spec, another value: the device changed.
    clock.advance(TimeDelta::minutes(1));
    let o = record(
        &mut store,
        &state(&[("modbus/holding/10", 1), ("modbus/holding/11", 0)]),
        "v1",
    );
    assert_eq!(o.drift.event().map(|d| d.reason), Some(DriftReason::Device));
    clock.advance(TimeDelta::minutes(1));
    assert!(matches!(
        record(&mut store, &bytes, "v1").drift,
        DriftOutcome::Resolved(_)
    ));

    // A layout: other items under another spec.
    clock.advance(TimeDelta::minutes(1));
    let typed = state(&[("modbus/holding/fill_temp", 72)]);
    let o = record(&mut store, &typed, "v2");
    let drift = o.drift.event().expect("drift");
    assert_eq!(drift.reason, DriftReason::CaptureChanged);
    assert_eq!(drift.changes.len(), 3);

    // The layout is removed again: the baseline's state under a new spec (v3) matches, and
    // the baseline learns v3, so the next device change is a device change.
    clock.advance(TimeDelta::minutes(1));
    let o = record(&mut store, &bytes, "v3");
    assert!(
        matches!(o.drift, DriftOutcome::Resolved(_)),
        "{:?}",
        o.drift
    );
    assert_eq!(o.baseline.capture_spec, Some(Digest::of(b"v3")));
    assert_eq!(
        store
            .audit_entries_of_kind(&["baseline.capture_spec"])
            .expect("audit")
            .len(),
        1
    );
    clock.advance(TimeDelta::minutes(1));
    let o = record(
        &mut store,
        &state(&[("modbus/holding/10", 2), ("modbus/holding/11", 0)]),
        "v3",
    );
    assert_eq!(o.drift.event().map(|d| d.reason), Some(DriftReason::Device));
}

#[test]
fn a_quiet_poll_needs_the_same_capture_spec() {
    let clock = Arc::new(ManualClock::new(
        parse_timestamp("2026-12-01T08:00:00Z").expect("time"),
    ));
    let mut store = Store::open_in_memory(clock.clone()).expect("store");
    store.defer_seen(true).expect("defer");
    let s = state(&[("modbus/holding/10", 1)]);
    record(&mut store, &s, "v1");
    clock.advance(TimeDelta::seconds(10));
    assert!(record(&mut store, &s, "v1").quiet);
    clock.advance(TimeDelta::seconds(10));
    assert!(
        !record(&mut store, &s, "v2").quiet,
        "a new spec takes the durable path once"
    );
    clock.advance(TimeDelta::seconds(10));
    assert!(record(&mut store, &s, "v2").quiet);
}
