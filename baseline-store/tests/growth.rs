//! Bounded growth: flapping items are muted alone, and retention deletes what nothing needs
//! any more, never the audit log. Against real SQLite files and an injected clock.

mod common;

use std::path::Path;
use std::sync::Arc;

use chrono::TimeDelta;
use otdrift_core::{Class, Item, ManualClock, Snapshot, Value, parse_timestamp};
use otdrift_store::{
    CaptureRecord, DeliveryRefusal, DriftOutcome, Retention, Store, UPSTREAM, event_type,
};

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        parse_timestamp("2026-12-01T08:00:00Z").expect("valid timestamp"),
    ))
}

/// `press-7` with a process value misconfigured as a setpoint (`holding/40`) and a real
/// setpoint (`holding/41`).
fn snapshot(process_value: u64, setpoint: u64) -> Snapshot {
    Snapshot::from_items([
        Item::new(
            "modbus/identity/revision",
            Class::Identity,
            Value::from("2.1"),
        )
        .expect("item"),
        Item::new(
            "modbus/holding/40",
            Class::Setpoint,
            Value::UInt(process_value),
        )
        .expect("item"),
        Item::new("modbus/holding/41", Class::Setpoint, Value::UInt(setpoint)).expect("item"),
    ])
    .expect("unique paths")
}

fn record_as(store: &mut Store, asset: &str, s: &Snapshot) -> otdrift_store::CaptureOutcome {
    common::record_ok(
        store,
        &CaptureRecord {
            duration_ms: 3,
            requests: 2,
            ..common::capture(asset, s)
        },
    )
}

fn record(store: &mut Store, s: &Snapshot) -> otdrift_store::CaptureOutcome {
    record_as(store, "press-7", s)
}

fn count(db: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("db");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

fn types(store: &Store) -> Vec<String> {
    common::event_types(store, 10_000)
}

fn of_type(store: &Store, t: &str) -> usize {
    types(store).iter().filter(|e| *e == t).count()
}

#[test]
fn a_flapping_item_is_reported_once_and_then_muted_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("otdrift.db");
    let clock = clock();
    let mut store = Store::open(&db, clock.clone()).expect("store");

    record(&mut store, &snapshot(0, 5));
    // The process value changes on every poll.
    let mut flapping_at = None;
    for poll in 1..=6u64 {
        clock.advance(TimeDelta::seconds(10));
        record(&mut store, &snapshot(poll, 5));
        if of_type(&store, event_type::DRIFT_FLAPPING) > 0 && flapping_at.is_none() {
            flapping_at = Some(poll);
        }
    }
    assert_eq!(flapping_at, Some(6), "the sixth change in ten polls");
    assert_eq!(
        store.muted_items("press-7").expect("muted"),
        ["modbus/holding/40"]
    );
    let flapping = store
        .events_after(0, 1000)
        .expect("events")
        .into_iter()
        .find(|e| e.event_type == event_type::DRIFT_FLAPPING)
        .expect("flapping event");
    assert_eq!(flapping.data["items"][0]["path"], "modbus/holding/40");
    assert_eq!(flapping.data["items"][0]["changes"], 6);
    assert!(flapping.data["drift_id"].is_i64(), "{}", flapping.data);

    // From now on: no rows, audit entries or events per poll, even when the value passes
    // through its baseline value.
    let events = types(&store).len();
    let captures = count(&db, "captures");
    let snapshots = count(&db, "snapshots");
    let audit = store.audit_entries(0, 100_000).expect("audit").len();
    let drifts = count(&db, "drift_events");
    for poll in 7..=40u64 {
        clock.advance(TimeDelta::seconds(10));
        let value = if poll % 5 == 0 { 0 } else { poll };
        let outcome = record(&mut store, &snapshot(value, 5));
        assert!(
            matches!(outcome.drift, DriftOutcome::Muted(_)),
            "poll {poll}: {:?}",
            outcome.drift
        );
    }
    assert_eq!(types(&store).len(), events, "no event while muted");
    assert_eq!(
        count(&db, "captures"),
        captures,
        "the last capture row is folded"
    );
    assert!(
        count(&db, "snapshots") <= snapshots,
        "old states are dropped"
    );
    assert_eq!(store.audit_entries(0, 100_000).expect("audit").len(), audit);
    assert_eq!(
        count(&db, "drift_events"),
        drifts,
        "one open drift, updated"
    );

    // Any other change on the asset is still drift, at once.
    clock.advance(TimeDelta::seconds(10));
    let outcome = record(&mut store, &snapshot(41, 99));
    assert!(
        matches!(outcome.drift, DriftOutcome::Updated(_)),
        "{:?}",
        outcome.drift
    );
    assert_eq!(of_type(&store, event_type::DRIFT_DETECTED), {
        let before = events - of_type(&store, event_type::DRIFT_FLAPPING);
        // drift.detected events before muting, plus this one
        types(&store)[..before]
            .iter()
            .filter(|t| *t == event_type::DRIFT_DETECTED)
            .count()
            + 1
    });

    // The process value settles: ten quiet polls after its last change the mute lifts, and
    // the open drift is announced with the state it reached.
    let detected = of_type(&store, event_type::DRIFT_DETECTED);
    for _ in 0..=10 {
        clock.advance(TimeDelta::seconds(10));
        record(&mut store, &snapshot(7, 99));
    }
    assert_eq!(of_type(&store, event_type::DRIFT_FLAPPING_ENDED), 1);
    assert!(store.muted_items("press-7").expect("muted").is_empty());
    assert_eq!(of_type(&store, event_type::DRIFT_DETECTED), detected + 1);
    let last = store
        .events_after(0, 10_000)
        .expect("events")
        .into_iter()
        .rfind(|e| e.event_type == event_type::DRIFT_DETECTED)
        .expect("drift event");
    let observed = snapshot(7, 99).digest().to_string();
    assert_eq!(last.data["observed_digest"], observed);
    assert!(
        store.audit_verify().expect("verify").first_break.is_none(),
        "the chain holds"
    );
}

#[test]
fn a_flap_back_to_the_baseline_keeps_the_drift_open_until_the_mute_lifts() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock.clone()).expect("store");
    record(&mut store, &snapshot(0, 5));
    // Toggles between the baseline value and another one.
    for poll in 1..=30u64 {
        clock.advance(TimeDelta::seconds(10));
        record(&mut store, &snapshot(poll % 2, 5));
    }
    assert_eq!(of_type(&store, event_type::DRIFT_FLAPPING), 1);
    let opened = of_type(&store, event_type::DRIFT_DETECTED);
    let resolved = of_type(&store, event_type::DRIFT_RESOLVED);
    assert!(
        opened <= 3 && resolved <= 3,
        "{opened} opened, {resolved} resolved"
    );
    // Settles at the baseline value: resolved once the flapping is over.
    for _ in 0..11 {
        clock.advance(TimeDelta::seconds(10));
        record(&mut store, &snapshot(0, 5));
    }
    assert_eq!(of_type(&store, event_type::DRIFT_RESOLVED), resolved + 1);
    assert_eq!(of_type(&store, event_type::DRIFT_FLAPPING_ENDED), 1);
}

fn retention(destinations: &[&str]) -> Retention {
    Retention {
        outbox: TimeDelta::days(30),
        captures: TimeDelta::days(90),
        destinations: destinations.iter().map(|d| d.to_string()).collect(),
        batch: 7,
    }
}

fn prune_all(store: &mut Store, r: &Retention) -> otdrift_store::Pruned {
    let mut total = otdrift_store::Pruned::default();
    for _ in 0..10_000 {
        let step = store.prune_step(r).expect("prune");
        if step.is_empty() {
            store.record_pruned(total).expect("audited");
            return total;
        }
        assert!(
            step.outbox <= 7 && step.captures <= 7 && step.snapshots <= 7,
            "{step:?}"
        );
        total.add(step);
    }
    panic!("pruning did not end");
}

#[test]
fn retention_deletes_what_nothing_needs_and_never_the_audit_log() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("otdrift.db");
    let clock = clock();
    let mut store = Store::open(&db, clock.clone()).expect("store");

    // A baseline, then forty states a day apart that come and go (each a drift, each on
    // another item, so that none of them flaps), then the baseline again.
    record(&mut store, &snapshot(0, 5));
    for day in 1..=40u64 {
        clock.advance(TimeDelta::days(1));
        let mut items: Vec<Item> = snapshot(0, 5).items().cloned().collect();
        items.push(
            Item::new(
                format!("modbus/holding/{}", 100 + day),
                Class::Setpoint,
                Value::UInt(day),
            )
            .expect("item"),
        );
        record(&mut store, &Snapshot::from_items(items).expect("unique"));
        clock.advance(TimeDelta::hours(1));
        record(&mut store, &snapshot(0, 5));
    }
    // A technician's capture is evidence.
    store
        .record_capture(&CaptureRecord {
            change_id: Some("CHG-1"),
            phase: Some(otdrift_store::Phase::Before),
            duration_ms: 3,
            requests: 2,
            ..common::capture("press-7", &snapshot(0, 1000))
        })
        .expect("technician capture");
    record(&mut store, &snapshot(0, 5));
    let audit_before = store.audit_entries(0, 1_000_000).expect("audit").len();
    let events = store.last_event_seq().expect("seq");
    assert!(events > 80, "{events}");

    // Nothing is old enough yet.
    let r = retention(&[UPSTREAM]);
    assert!(prune_all(&mut store, &r).is_empty());

    // 200 days on: the upstream has acknowledged the first half of the events only, and
    // refused one of them on its own (parked).
    clock.advance(TimeDelta::days(200));
    store
        .acknowledge(UPSTREAM, events / 2 - 1)
        .expect("acknowledged");
    store
        .park(
            UPSTREAM,
            events / 2,
            &DeliveryRefusal {
                reason: "too-large",
                http_status: Some(413),
                message: "",
            },
        )
        .expect("parked");
    let pruned = prune_all(&mut store, &r);
    assert_eq!(
        pruned.outbox as i64,
        events / 2 - 1,
        "acknowledged events only"
    );
    assert!(pruned.captures >= 79, "{pruned:?}");
    assert!(pruned.snapshots >= 39, "{pruned:?}");
    // The parked event and everything unacknowledged are still there.
    let held: Vec<i64> = store
        .events_after(0, 10_000)
        .expect("events")
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(held.first(), Some(&(events / 2)));
    assert!(held.contains(&events), "unacknowledged events are kept");
    // The baseline, the latest capture and the technician's capture survive, and still load.
    assert!(
        store
            .current_baseline("press-7")
            .expect("baseline")
            .is_some()
    );
    assert_eq!(
        count(&db, "captures"),
        3,
        "baseline's, technician's and the latest"
    );
    let verified = store.audit_verify().expect("verify");
    assert!(verified.first_break.is_none());
    let audit_after = store.audit_entries(0, 1_000_000).expect("audit");
    assert_eq!(
        audit_after.len(),
        audit_before + 2,
        "parked, and one pruning entry"
    );
    assert_eq!(audit_after.last().expect("entry").kind, "retention.pruned");

    // A pull client asking for a pruned position is told where to resume.
    let gone = store.pruned_position(3).expect("position").expect("pruned");
    assert_eq!(gone.pruned_through, events / 2 - 1);
    assert_eq!(gone.oldest_seq, events / 2);
    assert!(
        store
            .pruned_position(events / 2 - 1)
            .expect("position")
            .is_none()
    );

    // A second run finds nothing: nothing is written.
    assert!(prune_all(&mut store, &r).is_empty());
}

#[test]
fn without_a_destination_events_go_by_age_alone_and_a_lagging_one_is_announced_once() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock.clone()).expect("store");
    record(&mut store, &snapshot(0, 5));
    record(&mut store, &snapshot(0, 6));
    let day = TimeDelta::days(1);
    let up = vec![UPSTREAM.to_owned()];
    assert!(store.check_delivery_lag(&up, day).expect("lag").is_empty());
    clock.advance(TimeDelta::hours(25));
    assert_eq!(store.check_delivery_lag(&up, day).expect("lag"), up);
    assert_eq!(store.check_delivery_lag(&up, day).expect("lag"), up);
    assert_eq!(
        of_type(&store, event_type::OUTBOX_LAGGING),
        1,
        "once per episode"
    );
    let last = store.last_event_seq().expect("seq");
    store.acknowledge(UPSTREAM, last).expect("caught up");
    assert!(store.check_delivery_lag(&up, day).expect("lag").is_empty());
    let kinds = common::audit_kinds(&store, 1000);
    assert!(kinds.contains(&"delivery.lagging".to_owned()));
    assert!(kinds.contains(&"delivery.caught_up".to_owned()));

    // Pull only: events older than the retention go whether read or not.
    clock.advance(TimeDelta::days(31));
    record_as(&mut store, "other", &snapshot(1, 1));
    let pruned = prune_all(&mut store, &retention(&[]));
    assert_eq!(pruned.outbox as i64, last);
    assert_eq!(store.events_after(0, 100).expect("events").len(), 1);
}
