//! The drift state machine, the audit chain and durability, against real SQLite files.

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use otdrift_core::{Class, Clock, Item, ManualClock, Severity, Snapshot, Value, parse_timestamp};
use otdrift_store::{
    CaptureRecord, DriftFilter, DriftOutcome, DriftStatus, Phase, Store, StoreError, event_type,
};

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        parse_timestamp("2026-12-01T08:00:00Z").expect("valid timestamp"),
    ))
}

fn snapshot(setpoint: u64, firmware: &str) -> Snapshot {
    Snapshot::from_items([
        Item::new(
            "modbus/identity/revision",
            Class::Identity,
            Value::from(firmware),
        )
        .expect("valid"),
        Item::new("modbus/holding/40", Class::Setpoint, Value::UInt(setpoint)).expect("valid"),
        Item::new("modbus/holding/41", Class::Setpoint, Value::UInt(5)).expect("valid"),
    ])
    .expect("unique paths")
}

fn label(path: &str) -> Option<String> {
    path.starts_with("modbus/holding/")
        .then(|| "recipe".to_owned())
}

fn record(store: &mut Store, s: &Snapshot) -> otdrift_store::CaptureOutcome {
    record_with(store, s, None)
}

fn record_with(
    store: &mut Store,
    s: &Snapshot,
    change: Option<(&str, Phase)>,
) -> otdrift_store::CaptureOutcome {
    common::record_ok(
        store,
        &CaptureRecord {
            change_id: change.map(|c| c.0),
            phase: change.map(|c| c.1),
            duration_ms: 3,
            requests: 2,
            label: &label,
            ..common::capture("press-7", s)
        },
    )
}

fn event_types(store: &Store) -> Vec<String> {
    common::event_types(store, 1000)
}

#[test]
fn first_capture_becomes_a_provisional_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock()).expect("open");
    let s = snapshot(100, "1.4");
    let out = record(&mut store, &s);
    assert!(out.baseline_created);
    assert!(out.baseline.provisional);
    assert_eq!(out.baseline.digest, s.digest());
    assert_eq!(out.baseline.reason, "first-capture");
    assert_eq!(out.drift, DriftOutcome::None);
    assert_eq!(event_types(&store), [event_type::BASELINE_MOVED]);
    let kinds = common::audit_kinds(&store, 100);
    assert_eq!(kinds, ["capture.recorded", "baseline.provisional"]);
    assert_eq!(store.snapshot(&s.digest()).expect("stored"), s);
}

#[test]
fn the_same_state_is_stored_once_and_only_counted() {
    let clock = clock();
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let s = snapshot(100, "1.4");
    let first = record(&mut store, &s);
    clock.advance(TimeDelta::minutes(5));
    let second = record(&mut store, &s);
    assert_eq!(first.capture.id, second.capture.id);
    assert_eq!(second.capture.seen_count, 2);
    assert_eq!(
        second.capture.last_seen - second.capture.first_seen,
        TimeDelta::minutes(5)
    );
    assert_eq!(store.captures("press-7", 10).expect("captures").len(), 1);
    // The second poll matched the baseline: the day's `asset.verified` entry, no event.
    let kinds: Vec<String> = store
        .audit_entries(0, 100)
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["capture.recorded", "baseline.provisional", "asset.verified"]
    );
    assert_eq!(event_types(&store).len(), 1);
}

#[test]
fn drift_opens_is_updated_not_duplicated_and_resolves() {
    let clock = clock();
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let base = snapshot(100, "1.4");
    record(&mut store, &base);

    clock.advance(TimeDelta::minutes(5));
    let drifted = snapshot(150, "1.4");
    let out = record(&mut store, &drifted);
    let DriftOutcome::Opened(opened) = &out.drift else {
        panic!("expected a new drift, got {:?}", out.drift);
    };
    assert_eq!(opened.status, DriftStatus::Open);
    assert_eq!(opened.severity, Severity::Medium);
    assert_eq!(opened.changes.len(), 1);
    let change = &opened.changes[0];
    assert_eq!(change.path, "modbus/holding/40");
    assert_eq!(change.before, Some(serde_json::json!(100)));
    assert_eq!(change.after, Some(serde_json::json!(150)));
    assert_eq!(change.setpoint.as_deref(), Some("recipe"));

    // The same drift again: the open event is updated, no second event or audit entry.
    clock.advance(TimeDelta::minutes(5));
    let audit_before = store.audit_entries(0, 100).expect("audit").len();
    let again = record(&mut store, &drifted);
    let DriftOutcome::Seen(seen) = &again.drift else {
        panic!(
            "expected the open drift to be seen again, got {:?}",
            again.drift
        );
    };
    assert_eq!(seen.id, opened.id);
    assert_eq!(seen.seen_count, 2);
    assert_eq!(
        store.audit_entries(0, 100).expect("audit").len(),
        audit_before
    );

    // A different drifted state updates the same open event.
    let other = snapshot(160, "1.5");
    let moved = record(&mut store, &other);
    let DriftOutcome::Updated(updated) = &moved.drift else {
        panic!("expected an update, got {:?}", moved.drift);
    };
    assert_eq!(updated.id, opened.id);
    assert_eq!(updated.severity, Severity::High);
    assert_eq!(updated.observed_digest, other.digest());
    assert_eq!(
        store
            .drift_events(&DriftFilter {
                asset: None,
                open_only: true
            })
            .expect("drift")
            .len(),
        1
    );

    // Back to the baseline: resolved.
    clock.advance(TimeDelta::minutes(5));
    let back = record(&mut store, &base);
    let DriftOutcome::Resolved(resolved) = &back.drift else {
        panic!("expected resolution, got {:?}", back.drift);
    };
    assert_eq!(resolved.status, DriftStatus::Resolved);
    assert_eq!(resolved.id, opened.id);
    assert!(resolved.closed_at.is_some());
    assert_eq!(store.open_drift_count("press-7").expect("count"), 0);

    assert_eq!(
        event_types(&store),
        [
            event_type::BASELINE_MOVED,
            event_type::DRIFT_DETECTED,
            event_type::DRIFT_DETECTED,
            event_type::DRIFT_RESOLVED
        ]
    );
    let report = store.audit_verify().expect("verify");
    assert_eq!(report.first_break, None);
    assert!(report.entries >= 6);
}

#[test]
fn technician_captures_always_get_their_own_row() {
    let mut store = Store::open_in_memory(clock()).expect("open");
    let s = snapshot(100, "1.4");
    record(&mut store, &s);
    let before = record_with(&mut store, &s, Some(("CHG-1", Phase::Before)));
    let after = record_with(&mut store, &s, Some(("CHG-1", Phase::After)));
    assert_ne!(before.capture.id, after.capture.id);
    let rows = store.captures_for_change("CHG-1").expect("captures");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].phase, Some(Phase::Before));
    assert_eq!(rows[1].phase, Some(Phase::After));
    // A routine poll after the technician's capture starts its own row again.
    let poll = record(&mut store, &s);
    assert_ne!(poll.capture.id, after.capture.id);
}

#[test]
fn editing_deleting_or_reordering_audit_rows_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otdrift.db");
    let mut store = Store::open(&path, clock()).expect("open");
    record(&mut store, &snapshot(100, "1.4"));
    record(&mut store, &snapshot(101, "1.4"));
    record(&mut store, &snapshot(100, "1.4"));
    let report = store.audit_verify().expect("verify");
    assert_eq!(report.first_break, None);
    let total = report.entries;
    assert!(total >= 5);

    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute(
        "UPDATE audit_log SET body = replace(body, 'press-7', 'press-8') WHERE seq = 3",
        [],
    )
    .expect("tamper");
    let report = store.audit_verify().expect("verify");
    let broken = report.first_break.expect("tampering detected");
    assert_eq!(broken.seq, 3);
    assert!(broken.reason.contains("altered"), "{}", broken.reason);
    assert_eq!(report.entries, 2);

    // Deleting an entry in the middle is a gap.
    raw.execute(
        "UPDATE audit_log SET body = replace(body, 'press-8', 'press-7') WHERE seq = 3",
        [],
    )
    .expect("restore");
    assert_eq!(store.audit_verify().expect("verify").first_break, None);
    raw.execute("DELETE FROM audit_log WHERE seq = 2", [])
        .expect("delete");
    let broken = store
        .audit_verify()
        .expect("verify")
        .first_break
        .expect("gap detected");
    assert_eq!(broken.seq, 3);
    assert!(broken.reason.contains("missing"), "{}", broken.reason);
}

#[test]
fn everything_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otdrift.db");
    let base = snapshot(100, "1.4");
    {
        let mut store = Store::open(&path, clock()).expect("open");
        record(&mut store, &base);
        record(&mut store, &snapshot(7, "1.4"));
    }
    let store = Store::open(&path, clock()).expect("reopen");
    assert_eq!(
        store.schema_version().expect("version"),
        otdrift_store::SCHEMA_VERSION
    );
    let baseline = store
        .current_baseline("press-7")
        .expect("query")
        .expect("baseline kept");
    assert_eq!(baseline.digest, base.digest());
    assert!(baseline.provisional);
    assert_eq!(store.open_drift_count("press-7").expect("count"), 1);
    assert_eq!(event_types(&store).len(), 2);
    assert_eq!(store.audit_verify().expect("verify").first_break, None);
}

#[test]
fn a_tampered_snapshot_body_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otdrift.db");
    let mut store = Store::open(&path, clock()).expect("open");
    let s = snapshot(100, "1.4");
    record(&mut store, &s);
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let other = snapshot(999, "1.4").encode();
    raw.execute("UPDATE snapshots SET body = ?1", [other])
        .expect("tamper");
    match store.snapshot(&s.digest()) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("does not hash"), "{msg}"),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otdrift.db");
    drop(Store::open(&path, clock()).expect("open"));
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute_batch("PRAGMA user_version = 999")
        .expect("bump");
    match Store::open(&path, clock()) {
        Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn unreachable_is_announced_once_per_outage() {
    let clock = clock();
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let s = snapshot(100, "1.4");
    record(&mut store, &s);
    let refused = |store: &mut Store| {
        store
            .record_unreachable(
                "press-7",
                "modbus",
                "127.0.0.1:502",
                "connection refused",
                None,
            )
            .expect("record")
    };
    assert_eq!(refused(&mut store), otdrift_store::Alarm::Announced);
    assert_eq!(refused(&mut store), otdrift_store::Alarm::Continues);
    let row = store.asset("press-7").expect("query").expect("known");
    assert_eq!(row.reachable, Some(false));
    assert_eq!(row.last_error.as_deref(), Some("connection refused"));
    record(&mut store, &s);
    let row = store.asset("press-7").expect("query").expect("known");
    assert_eq!(row.reachable, Some(true));
    assert_eq!(
        event_types(&store),
        [
            event_type::BASELINE_MOVED,
            event_type::ASSET_UNREACHABLE,
            event_type::ASSET_REACHABLE
        ]
    );
}

#[test]
fn two_processes_can_write_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otdrift.db");
    drop(Store::open(&path, clock()).expect("create"));
    let handles: Vec<_> = (0..2u64)
        .map(|n| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&path, clock()).expect("open");
                for i in 0..25u64 {
                    let s = snapshot(n * 1000 + i, "1.4");
                    let asset = format!("asset-{n}");
                    store
                        .record_capture(&CaptureRecord {
                            label: &label,
                            ..common::capture(&asset, &s)
                        })
                        .expect("no lock error reaches the caller");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    let store = Store::open(&path, clock()).expect("open");
    assert_eq!(store.audit_verify().expect("verify").first_break, None);
    // Every poll counted (a value that changes on every poll flaps: its polls fold into one
    // row after the sixth, so count polls, not rows).
    for asset in ["asset-0", "asset-1"] {
        let polls: i64 = store
            .captures(asset, 100)
            .expect("captures")
            .iter()
            .map(|c| c.seen_count)
            .sum();
        assert_eq!(polls, 25, "{asset}");
    }
}

#[test]
fn config_changes_are_audited_once_per_change() {
    let mut store = Store::open_in_memory(clock()).expect("open");
    let a = otdrift_core::Digest::of(b"config a");
    let b = otdrift_core::Digest::of(b"config b");
    assert!(
        store
            .note_config("/etc/otdrift/otdrift.toml", &a)
            .expect("note")
    );
    assert!(
        !store
            .note_config("/etc/otdrift/otdrift.toml", &a)
            .expect("note")
    );
    assert!(
        store
            .note_config("/etc/otdrift/otdrift.toml", &b)
            .expect("note")
    );
    let entries = store.audit_entries(0, 10).expect("audit");
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.kind == "config.changed"));
}

#[test]
fn a_backup_is_a_consistent_copy_that_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock()).expect("open");
    record(&mut store, &snapshot(100, "1.4"));
    record(&mut store, &snapshot(101, "1.4"));
    let copy = dir.path().join("backup.db");
    store.backup_to(&copy).expect("backup");
    assert!(store.backup_to(&copy).is_err(), "never overwrites");
    let restored = Store::open(&copy, clock()).expect("open the copy");
    assert_eq!(
        restored.audit_verify().expect("verify"),
        store.audit_verify().expect("verify")
    );
    assert_eq!(
        restored.current_baseline("press-7").expect("query"),
        store.current_baseline("press-7").expect("query")
    );
    assert_eq!(restored.open_drift_count("press-7").expect("count"), 1);
}

#[test]
fn an_operating_state_change_is_reported_and_is_not_drift() {
    let mut store = Store::open_in_memory(clock()).expect("open");
    let s = snapshot(100, "1.4");
    let record_runtime = |store: &mut Store, mode: &str, clock: &str| {
        // The collector says which of its facts are operating state: the CPU mode is, the
        // clock is not.
        let runtime = serde_json::json!({ "s7/cpu_clock": clock });
        let operating_state = serde_json::json!({ "s7/cpu_mode": mode });
        store
            .record_capture(&CaptureRecord {
                protocol: "s7",
                address: "127.0.0.1:102",
                runtime: &runtime,
                operating_state: &operating_state,
                label: &label,
                ..common::capture("press-7", &s)
            })
            .expect("capture")
    };
    let first = record_runtime(&mut store, "RUN", "2026-12-01T08:00:00Z");
    assert!(first.state_changes.is_empty());
    // The clock moves: not a state change.
    let same = record_runtime(&mut store, "RUN", "2026-12-01T08:05:00Z");
    assert!(same.state_changes.is_empty());
    let stopped = record_runtime(&mut store, "STOP", "2026-12-01T08:10:00Z");
    assert_eq!(
        stopped.drift,
        DriftOutcome::None,
        "a mode change is not drift"
    );
    assert_eq!(stopped.state_changes.len(), 1);
    assert_eq!(stopped.state_changes[0].key, "s7/cpu_mode");
    assert_eq!(stopped.state_changes[0].before, serde_json::json!("RUN"));
    assert_eq!(stopped.state_changes[0].after, serde_json::json!("STOP"));
    assert_eq!(
        event_types(&store),
        [event_type::BASELINE_MOVED, event_type::ASSET_STATE_CHANGED]
    );
    // Both are stored with the capture, as before.
    let runtime = store
        .capture_runtime(stopped.capture.id)
        .expect("stored runtime");
    assert_eq!(runtime["s7/cpu_mode"], "STOP");
    assert_eq!(runtime["s7/cpu_clock"], "2026-12-01T08:10:00Z");
}

fn failure<'a>(reason: &'a str, detail: &'a str) -> otdrift_store::FailedCollection<'a> {
    otdrift_store::FailedCollection {
        asset: "press-7",
        protocol: "modbus",
        address: "127.0.0.1:502",
        reason,
        request: "read holding registers 40..42 (FC 3)",
        detail,
        message: "asset press-7: 127.0.0.1:502 refused read holding registers 40..42 (FC 3)",
        observed: None,
        maintenance: None,
    }
}

/// A failed collection is announced once per streak (an audit entry and an event), counted
/// while it lasts, never touches the baseline or drift, and ends with one recovery.
#[test]
fn a_failure_streak_is_announced_once_and_recovers_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock()).expect("open");
    let s = snapshot(100, "1.4");
    record(&mut store, &s);
    assert_eq!(
        store
            .record_failure(&failure("refused", "exception 0x02"))
            .expect("recorded"),
        otdrift_store::Alarm::Announced
    );
    assert_eq!(
        store
            .record_failure(&failure("busy", "exception 0x06"))
            .expect("recorded"),
        otdrift_store::Alarm::Continues
    );
    let row = store.asset("press-7").expect("asset").expect("known");
    assert_eq!(row.failure_reason.as_deref(), Some("refused"));
    assert_eq!(row.failure_count, 2);
    assert!(row.failing_since.is_some());
    assert_eq!(row.reachable, Some(true), "a refusing device is reachable");
    let types = event_types(&store);
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == event_type::ASSET_COLLECTION_FAILED)
            .count(),
        1
    );
    let failed = store
        .events_after(0, 100)
        .expect("events")
        .into_iter()
        .find(|e| e.event_type == event_type::ASSET_COLLECTION_FAILED)
        .expect("event");
    assert_eq!(failed.data["reason"], "refused");
    assert_eq!(failed.data["detail"], "exception 0x02");
    assert_eq!(
        failed.data["request"],
        "read holding registers 40..42 (FC 3)"
    );
    assert_eq!(
        store
            .drift_events(&DriftFilter::default())
            .expect("drift")
            .len(),
        0
    );

    let out = record(&mut store, &s);
    assert_eq!(out.drift, DriftOutcome::None);
    let row = store.asset("press-7").expect("asset").expect("known");
    assert_eq!(row.failing_since, None);
    assert_eq!(row.failure_count, 0);
    let events = store.events_after(0, 100).expect("events");
    let recovered: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == event_type::ASSET_COLLECTION_RECOVERED)
        .collect();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].data["failures"], 2);
    assert_eq!(recovered[0].data["reason"], "refused");
    // Another good capture is not news.
    record(&mut store, &s);
    assert_eq!(
        event_types(&store)
            .iter()
            .filter(|t| *t == event_type::ASSET_COLLECTION_RECOVERED)
            .count(),
        1
    );
    let kinds = common::audit_kinds(&store, 100);
    assert!(
        kinds.contains(&"asset.collection_failed".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"asset.collection_recovered".to_owned()),
        "{kinds:?}"
    );
    assert!(store.audit_verify().expect("verify").first_break.is_none());
}

fn with_refused_setpoint(reason: &str) -> Snapshot {
    Snapshot::from_items([
        Item::new(
            "modbus/identity/revision",
            Class::Identity,
            Value::from("1.4"),
        )
        .expect("valid"),
        Item::new(
            "modbus/holding/40",
            Class::Setpoint,
            Value::unavailable(reason),
        )
        .expect("valid"),
        Item::new("modbus/holding/41", Class::Setpoint, Value::UInt(5)).expect("valid"),
    ])
    .expect("unique paths")
}

/// The field-truth check: a `not available` item is acceptable only where the baseline holds
/// exactly that refusal (or there is no baseline yet, or a pending approval names the state).
#[test]
fn refusals_are_checked_against_the_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock()).expect("open");
    let refused = with_refused_setpoint("device refused it");
    // No baseline: the first capture records what the device can tell.
    assert!(
        store
            .unapproved_refusals("press-7", &refused)
            .expect("check")
            .is_empty()
    );
    record(&mut store, &snapshot(100, "1.4"));
    let found = store
        .unapproved_refusals("press-7", &refused)
        .expect("check");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "modbus/holding/40");
    assert_eq!(found[0].baseline, Some(Value::UInt(100)));
    // A capture without refusals is never held back.
    assert!(
        store
            .unapproved_refusals("press-7", &snapshot(999, "1.4"))
            .expect("check")
            .is_empty()
    );
}

#[test]
fn a_stable_refusal_the_baseline_holds_is_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock()).expect("open");
    let refused = with_refused_setpoint("service not supported");
    record(&mut store, &refused);
    assert!(
        store
            .unapproved_refusals("press-7", &refused)
            .expect("check")
            .is_empty()
    );
    // The same item refused with other words is not the stable refusal the baseline holds.
    let other = with_refused_setpoint("device busy");
    let found = store.unapproved_refusals("press-7", &other).expect("check");
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].baseline,
        Some(Value::unavailable("service not supported"))
    );
}

/// A maintenance window holds back the unreachable alarm (audited instead); if the outage
/// outlasts the window, the first failure after it is announced; the recovery of an alarm
/// never announced is not news either.
#[test]
fn maintenance_holds_alarms_back_and_an_outage_that_outlasts_it_is_announced() {
    let clock = clock();
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let s = snapshot(100, "1.4");
    record(&mut store, &s);
    let window = store
        .start_maintenance(
            "press-7",
            clock.now() + TimeDelta::hours(2),
            "swap the panel PC",
            "test",
        )
        .expect("window");
    assert_eq!(window.reason, "swap the panel PC");
    assert!(store.maintenance_now("press-7").expect("now").is_some());
    let down = |store: &mut Store, m: Option<&str>| {
        store
            .record_unreachable("press-7", "modbus", "127.0.0.1:502", "refused", m)
            .expect("record")
    };
    assert_eq!(
        down(&mut store, Some("maintenance")),
        otdrift_store::Alarm::Suppressed
    );
    assert_eq!(
        down(&mut store, Some("maintenance")),
        otdrift_store::Alarm::Continues
    );
    assert!(!event_types(&store).contains(&event_type::ASSET_UNREACHABLE.to_owned()));
    // Still down after the window: announced now, once.
    clock.advance(TimeDelta::hours(3));
    assert!(store.maintenance_now("press-7").expect("now").is_none());
    assert_eq!(down(&mut store, None), otdrift_store::Alarm::Announced);
    assert_eq!(down(&mut store, None), otdrift_store::Alarm::Continues);
    record(&mut store, &s);
    let types = event_types(&store);
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == event_type::ASSET_UNREACHABLE)
            .count(),
        1
    );
    assert!(types.contains(&event_type::ASSET_REACHABLE.to_owned()));
    // An outage entirely inside a window: audited, never an event, no "reachable" either.
    store
        .start_maintenance(
            "press-7",
            clock.now() + TimeDelta::hours(1),
            "again",
            "test",
        )
        .expect("window");
    down(&mut store, Some("maintenance"));
    record(&mut store, &s);
    assert_eq!(
        event_types(&store)
            .iter()
            .filter(|t| *t == event_type::ASSET_REACHABLE)
            .count(),
        1
    );
    let kinds = common::audit_kinds(&store, 1000);
    assert!(kinds.contains(&"maintenance.started".to_owned()));
    assert!(kinds.contains(&"asset.unreachable".to_owned()));
}

/// Stale: announced once when nothing else explains it, folded into an announced outage,
/// cleared by the next good capture.
#[test]
fn stale_is_announced_once_or_folded_into_the_outage_that_explains_it() {
    let clock = clock();
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let s = snapshot(100, "1.4");
    record(&mut store, &s);
    let threshold = TimeDelta::minutes(15);
    assert!(
        !store
            .check_stale("press-7", threshold, clock.now(), None)
            .expect("check")
    );
    clock.advance(TimeDelta::minutes(20));
    assert!(
        store
            .check_stale("press-7", threshold, clock.now(), None)
            .expect("check")
    );
    assert!(
        store
            .check_stale("press-7", threshold, clock.now(), None)
            .expect("check")
    );
    let stale = |store: &Store| {
        event_types(store)
            .iter()
            .filter(|t| *t == event_type::ASSET_STALE)
            .count()
    };
    assert_eq!(stale(&store), 1);
    record(&mut store, &s);
    // Unreachable and announced: stale is folded into that alarm.
    store
        .record_unreachable("press-7", "modbus", "127.0.0.1:502", "refused", None)
        .expect("record");
    clock.advance(TimeDelta::minutes(20));
    assert!(
        store
            .check_stale("press-7", threshold, clock.now(), None)
            .expect("check")
    );
    assert_eq!(stale(&store), 1);
    let folded = store
        .audit_entries(0, 1000)
        .expect("audit")
        .into_iter()
        .rfind(|e| e.kind == "asset.stale")
        .expect("audited");
    assert!(folded.body.contains("folded_into"), "{}", folded.body);
}
