//! Approved envelopes: setpoint moves inside them match the baseline, are reported at most
//! once a minute per item, keep pending approvals matching and count as verification; moves
//! outside are drift naming the envelope.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{Class, Clock, Digest, Item, ManualClock, Snapshot, Value, parse_timestamp};
use otdrift_store::{
    ApprovalDecision, ApprovalInput, CaptureOutcome, ChangeRules, DriftOutcome, PolicyRule, Store,
    event_type,
};
use serde_json::{Value as Json, json};

fn start() -> DateTime<Utc> {
    parse_timestamp("2026-12-01T08:00:00Z").expect("valid timestamp")
}

/// A press with one program block, a REAL fill temperature and two speed words.
fn state(program: u64, temp: f32, speed: u64) -> Snapshot {
    Snapshot::from_items([
        Item::new("s7/identity/order", Class::Identity, Value::from("6ES7")).expect("item"),
        Item::new("s7/block/OB1", Class::Program, Value::UInt(program)).expect("item"),
        Item::new("s7/db1/fill_temp", Class::Setpoint, Value::F32(temp)).expect("item"),
        Item::new("s7/db1/speed", Class::Setpoint, Value::UInt(speed)).expect("item"),
        Item::new("s7/db2/mode", Class::Setpoint, Value::UInt(1)).expect("item"),
    ])
    .expect("unique paths")
}

fn capture(store: &mut Store, s: &Snapshot) -> CaptureOutcome {
    common::record_ok(store, &common::capture("press-7", s))
}

fn approve(store: &mut Store, jti: &str, to: Digest, claims: &Json) -> ApprovalDecision {
    approve_as(
        store,
        jti,
        "plant-eng-mgr",
        to,
        claims,
        &ChangeRules::default(),
    )
}

fn approve_as(
    store: &mut Store,
    jti: &str,
    approver_id: &str,
    to: Digest,
    claims: &Json,
    rules: &ChangeRules,
) -> ApprovalDecision {
    let issued = store.clock().now();
    store
        .submit_approval(&ApprovalInput {
            jti,
            asset: "press-7",
            change_id: "CHG-7",
            kind: "normal",
            approver_id,
            approver: None,
            requestor: Some("Lee Brandt"),
            from: None,
            to: Some(to),
            content: None,
            diff: None,
            issued_at: issued,
            not_before: issued,
            expires_at: issued + TimeDelta::hours(24),
            token: "header.claims.signature",
            claims,
            max_observation_age: TimeDelta::minutes(10),
            source: "test",
            rules,
        })
        .expect("submitted")
}

fn events_of(store: &Store, kind: &str) -> Vec<Json> {
    store
        .events_after(0, 10_000)
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == kind)
        .map(|e| e.data)
        .collect()
}

/// A store whose press runs `state(1, 72.5, 100)` under an approved baseline with the
/// envelope `fill_temp` 70..75 and `s7/db1/speed*` 90..110.
fn enveloped() -> (Arc<ManualClock>, Store, Snapshot) {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("store");
    let base = state(1, 72.5, 100);
    capture(&mut store, &base);
    let claims = json!({"jti": "env-1", "envelope": {
        "s7/db1/fill_temp": {"min": 70.0, "max": 75.0},
        "s7/db1/speed*": {"min": 90, "max": 110},
    }});
    let decision = approve(&mut store, "env-1", base.digest(), &claims);
    assert!(
        matches!(decision, ApprovalDecision::Applied(_)),
        "{decision:?}"
    );
    let baseline = store
        .current_baseline("press-7")
        .expect("read")
        .expect("baseline");
    assert!(!baseline.provisional);
    assert!(!baseline.envelope.is_empty());
    (clock, store, base)
}

#[test]
fn a_move_inside_matches_is_reported_and_never_moves_the_baseline() {
    let (clock, mut store, base) = enveloped();
    clock.advance(TimeDelta::minutes(5));
    let moved = capture(&mut store, &state(1, 74.0, 100));
    assert_eq!(moved.drift, DriftOutcome::None, "a move inside is no drift");
    assert_eq!(moved.baseline.digest, base.digest(), "the baseline stays");
    assert_eq!(moved.capture.judged_digest, Some(base.digest()));
    assert_eq!(moved.adjustments.len(), 1);
    assert_eq!(moved.adjustments[0].pattern, "s7/db1/fill_temp");
    let adjusted = events_of(&store, event_type::SETPOINT_ADJUSTED);
    assert_eq!(adjusted.len(), 1);
    assert_eq!(adjusted[0]["path"], "s7/db1/fill_temp");
    assert_eq!(adjusted[0]["before"], json!(72.5));
    assert_eq!(adjusted[0]["after"], json!(74.0));
    assert_eq!(
        adjusted[0]["envelope"],
        json!({"pattern": "s7/db1/fill_temp", "min": 70, "max": 75})
    );
    assert_eq!(
        store
            .audit_entries_of_kind(&["setpoint.adjusted"])
            .expect("audit")
            .len(),
        1
    );
    // Verified: the in-envelope capture proves the approved state.
    let v = store
        .verification("press-7", TimeDelta::days(35))
        .expect("verification");
    assert_eq!(v.last_verified, Some(clock.now()));
}

#[test]
fn moves_are_reported_at_most_once_a_minute_and_the_last_value_is_not_lost() {
    let (clock, mut store, _) = enveloped();
    store.defer_seen(true).expect("defer");
    clock.advance(TimeDelta::minutes(5));
    capture(&mut store, &state(1, 74.0, 100));
    clock.advance(TimeDelta::seconds(20));
    capture(&mut store, &state(1, 74.5, 100));
    clock.advance(TimeDelta::seconds(20));
    capture(&mut store, &state(1, 73.0, 100));
    assert_eq!(events_of(&store, event_type::SETPOINT_ADJUSTED).len(), 1);
    // The minute passes: the same state's next poll reports the move it held back.
    clock.advance(TimeDelta::seconds(21));
    let again = capture(&mut store, &state(1, 73.0, 100));
    assert!(!again.quiet, "a held-back move takes the durable path");
    let adjusted = events_of(&store, event_type::SETPOINT_ADJUSTED);
    assert_eq!(adjusted.len(), 2);
    assert_eq!(adjusted[1]["before"], json!(74.0));
    assert_eq!(adjusted[1]["after"], json!(73.0));
    // Back to the baseline value: reported too (a minute later), and then quiet.
    clock.advance(TimeDelta::minutes(2));
    capture(&mut store, &state(1, 72.5, 100));
    let adjusted = events_of(&store, event_type::SETPOINT_ADJUSTED);
    assert_eq!(adjusted.len(), 3);
    assert_eq!(adjusted[2]["after"], json!(72.5));
    // Once flapping detection forgets the move (ten polls), the same state is quiet.
    let quiet: Vec<bool> = (0..11)
        .map(|_| {
            clock.advance(TimeDelta::seconds(10));
            capture(&mut store, &state(1, 72.5, 100)).quiet
        })
        .collect();
    assert_eq!(quiet.last(), Some(&true), "{quiet:?}");
}

#[test]
fn the_bounds_are_inside_and_a_prefix_envelope_covers_its_items() {
    let (clock, mut store, _) = enveloped();
    for (temp, speed) in [(75.0, 110), (70.0, 90), (74.9, 95)] {
        clock.advance(TimeDelta::minutes(2));
        let o = capture(&mut store, &state(1, temp, speed));
        assert_eq!(o.drift, DriftOutcome::None, "{temp} / {speed} are inside");
        assert_eq!(o.adjustments.len(), 2);
    }
}

#[test]
fn a_move_outside_is_drift_naming_the_envelope_broken() {
    let (clock, mut store, _) = enveloped();
    clock.advance(TimeDelta::minutes(2));
    let o = capture(&mut store, &state(1, 75.5, 100));
    let DriftOutcome::Opened(drift) = &o.drift else {
        panic!("expected drift, got {:?}", o.drift);
    };
    assert_eq!(drift.changes.len(), 1);
    assert_eq!(drift.changes[0].path, "s7/db1/fill_temp");
    assert_eq!(
        drift.changes[0].envelope,
        Some(json!({"pattern": "s7/db1/fill_temp", "min": 70, "max": 75}))
    );
    // Inside on one item and outside on another: the drift lists only the one outside.
    clock.advance(TimeDelta::minutes(2));
    let o = capture(&mut store, &state(1, 73.0, 120));
    let drift = o.drift.event().expect("drift");
    let paths: Vec<&str> = drift.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["s7/db1/speed"]);
    // An item no envelope covers: drift without an envelope.
    clock.advance(TimeDelta::minutes(2));
    let mut other = state(1, 72.5, 100);
    other.replace(Item::new("s7/db2/mode", Class::Setpoint, Value::UInt(2)).expect("item"));
    let o = capture(&mut store, &other);
    let drift = o.drift.event().expect("drift");
    assert_eq!(drift.changes.len(), 1);
    assert_eq!(drift.changes[0].envelope, None);
    // Back inside: the drift resolves.
    clock.advance(TimeDelta::minutes(2));
    let o = capture(&mut store, &state(1, 71.0, 100));
    assert!(
        matches!(o.drift, DriftOutcome::Resolved(_)),
        "{:?}",
        o.drift
    );
}

#[test]
fn a_pending_approval_still_matches_while_a_setpoint_sits_elsewhere_in_its_envelope() {
    let (clock, mut store, base) = enveloped();
    // The change is approved for the new program with the baseline's setpoints ...
    let target = state(2, 72.5, 100);
    let decision = approve(
        &mut store,
        "chg-2",
        target.digest(),
        &json!({"jti": "chg-2"}),
    );
    assert!(
        matches!(decision, ApprovalDecision::Pending(_)),
        "{decision:?}"
    );
    // ... and deployed while the operator has the temperature at 73.5.
    clock.advance(TimeDelta::minutes(2));
    let o = capture(&mut store, &state(2, 73.5, 100));
    let applied = o.approval.as_ref().expect("the approval applied");
    assert_eq!(applied.baseline.digest, target.digest());
    assert_ne!(applied.baseline.digest, base.digest());
    assert_eq!(o.drift, DriftOutcome::None);
    // The envelope carried over to the new baseline (the token had no claim).
    let b = store
        .current_baseline("press-7")
        .expect("read")
        .expect("baseline");
    assert_eq!(b.envelope.iter().count(), 2);
    // A token with an empty envelope clears it: the operator's value is drift again.
    clock.advance(TimeDelta::minutes(2));
    let cleared = approve(
        &mut store,
        "clear",
        target.digest(),
        &json!({"jti": "clear", "envelope": {}}),
    );
    assert!(
        matches!(cleared, ApprovalDecision::Applied(_)),
        "{cleared:?}"
    );
    clock.advance(TimeDelta::minutes(2));
    let o = capture(&mut store, &state(2, 73.5, 100));
    assert!(o.drift.is_drifted(), "{:?}", o.drift);
}

#[test]
fn a_steady_state_inside_its_envelope_is_a_quiet_poll() {
    let (clock, mut store, _) = enveloped();
    store.defer_seen(true).expect("defer");
    clock.advance(TimeDelta::minutes(2));
    assert!(!capture(&mut store, &state(1, 74.0, 100)).quiet);
    // Flapping detection watches the item for ten polls after it moved; then the same
    // in-envelope state writes nothing at once.
    for _ in 0..10 {
        clock.advance(TimeDelta::seconds(10));
        capture(&mut store, &state(1, 74.0, 100));
    }
    for _ in 0..3 {
        clock.advance(TimeDelta::seconds(10));
        let o = capture(&mut store, &state(1, 74.0, 100));
        assert!(
            o.quiet,
            "the same in-envelope state again writes nothing at once"
        );
        assert_eq!(o.drift, DriftOutcome::None);
    }
    store.flush_seen().expect("flush");
    let latest = store.latest_capture("press-7").expect("read").expect("row");
    assert_eq!(latest.seen_count, 14);
}

/// An envelope is a change of what may move without approval: on a safety item it needs the
/// safety policy, even when the approved state itself does not change.
#[test]
fn an_envelope_on_a_safety_item_needs_the_safety_policy() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("store");
    let policy = |id: &str, approvals| PolicyRule {
        id: id.to_owned(),
        approvals,
        notice: TimeDelta::zero(),
        require_staging: false,
        diff_review: false,
        review_within: TimeDelta::days(7),
    };
    let rules = ChangeRules {
        policy: Some(policy("tier-3", 1)),
        safety: vec!["s7/db1/fill*".to_owned()],
        safety_policy: Some(policy("board", 2)),
        ..ChangeRules::default()
    };
    let base = state(1, 72.5, 100);
    common::record_ok(
        &mut store,
        &otdrift_store::CaptureRecord {
            rules: &rules,
            ..common::capture("press-7", &base)
        },
    );
    // Confirming the state alone: the asset's policy, one approval.
    let plain = approve_as(
        &mut store,
        "b-1",
        "alice",
        base.digest(),
        &json!({}),
        &rules,
    );
    assert!(matches!(plain, ApprovalDecision::Applied(_)), "{plain:?}");
    let claims = json!({"envelope": {"s7/db1/fill_temp": {"min": 60, "max": 90}}});
    let first = approve_as(&mut store, "e-1", "alice", base.digest(), &claims, &rules);
    assert!(
        matches!(first, ApprovalDecision::Pending(_)),
        "one approval is not the board: {first:?}"
    );
    let b = store
        .current_baseline("press-7")
        .expect("read")
        .expect("baseline");
    assert!(
        b.envelope.is_empty(),
        "nothing is in force before the policy is met"
    );
    let second = approve_as(&mut store, "e-2", "bob", base.digest(), &claims, &rules);
    assert!(matches!(second, ApprovalDecision::Applied(_)), "{second:?}");
    let b = store
        .current_baseline("press-7")
        .expect("read")
        .expect("baseline");
    assert!(!b.envelope.is_empty());
}
