//! Shared set-up for the store's integration tests: recording a capture the way the agent does,
//! and reading back the event and audit kinds a test asserts on.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::LazyLock;

use otdrift_core::Snapshot;
use otdrift_store::{CaptureOutcome, CaptureRecord, ChangeRules, Store};

/// `{}`: the runtime facts and operating state of a capture that reports none.
static EMPTY: LazyLock<serde_json::Value> = LazyLock::new(|| serde_json::json!({}));

/// No policy, no staging relation, the default skew.
static DEFAULT_RULES: LazyLock<ChangeRules> = LazyLock::new(ChangeRules::default);

/// A capture of `snapshot` for `asset` with the plain defaults: a Modbus device at
/// 127.0.0.1:502, no runtime facts or operating state, no change, no setpoint labels, default
/// change rules, 1 ms and 1 request. Tests override what they need with struct update syntax
/// (`CaptureRecord { requests: 2, ..capture("press-7", &s) }`).
pub fn capture<'a>(asset: &'a str, snapshot: &'a Snapshot) -> CaptureRecord<'a> {
    CaptureRecord {
        asset,
        protocol: "modbus",
        address: "127.0.0.1:502",
        snapshot,
        runtime: &EMPTY,
        operating_state: &EMPTY,
        change_id: None,
        phase: None,
        duration_ms: 1,
        requests: 1,
        label: &|_| None,
        rules: &DEFAULT_RULES,
        capture_spec: None,
    }
}

/// [`capture`] on an ADS device at 127.0.0.1:48898 (the TwinCAT rigs).
pub fn ads_capture<'a>(asset: &'a str, snapshot: &'a Snapshot) -> CaptureRecord<'a> {
    CaptureRecord {
        protocol: "ads",
        address: "127.0.0.1:48898",
        ..capture(asset, snapshot)
    }
}

/// Records `record`, which must succeed.
pub fn record_ok(store: &mut Store, record: &CaptureRecord<'_>) -> CaptureOutcome {
    store.record_capture(record).expect("capture recorded")
}

/// The type of every event in the outbox, oldest first (at most `limit`).
pub fn event_types(store: &Store, limit: u32) -> Vec<String> {
    store
        .events_after(0, limit)
        .expect("events")
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// The kind of every audit log entry, oldest first (at most `limit`).
pub fn audit_kinds(store: &Store, limit: u32) -> Vec<String> {
    store
        .audit_entries(0, limit)
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}
