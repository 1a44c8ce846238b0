//! What a verified approval does to an asset's baseline, drift and record.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{Class, Clock, Digest, Item, ManualClock, Snapshot, Value, parse_timestamp};
use otdrift_store::{
    ApprovalDecision, ApprovalInput, ApprovalRefusal, ApprovalStatus, CaptureOutcome, DriftOutcome,
    DriftStatus, REJECTIONS_PER_MINUTE, Store, WithdrawInput, event_type,
};

fn start() -> DateTime<Utc> {
    parse_timestamp("2026-12-01T08:00:00Z").expect("valid timestamp")
}

fn snapshot(setpoint: u64) -> Snapshot {
    Snapshot::from_items([
        Item::new(
            "modbus/identity/vendor_name",
            Class::Identity,
            Value::from("ACME"),
        )
        .expect("valid"),
        Item::new("modbus/holding/40", Class::Setpoint, Value::UInt(setpoint)).expect("valid"),
    ])
    .expect("unique paths")
}

fn capture(store: &mut Store, s: &Snapshot) -> CaptureOutcome {
    common::record_ok(store, &common::capture("press-7", s))
}

struct Token {
    jti: String,
    to: Digest,
    from: Option<Digest>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    change: String,
}

impl Token {
    fn new(jti: &str, to: Digest, issued_at: DateTime<Utc>) -> Self {
        Token {
            jti: jti.to_owned(),
            to,
            from: None,
            issued_at,
            expires_at: issued_at + TimeDelta::hours(24),
            change: "CHG-1042".to_owned(),
        }
    }

    fn submit(&self, store: &mut Store) -> ApprovalDecision {
        let claims = serde_json::json!({"jti": self.jti});
        store
            .submit_approval(&ApprovalInput {
                jti: &self.jti,
                asset: "press-7",
                change_id: &self.change,
                kind: "normal",
                approver_id: "plant-eng-mgr",
                approver: Some("Dana Okafor"),
                requestor: Some("Lee Brandt"),
                from: self.from,
                to: Some(self.to),
                content: None,
                diff: None,
                issued_at: self.issued_at,
                not_before: self.issued_at,
                expires_at: self.expires_at,
                token: "header.claims.signature",
                claims: &claims,
                max_observation_age: chrono::TimeDelta::minutes(10),
                source: "test",
                rules: &otdrift_store::ChangeRules::default(),
            })
            .expect("submitted")
    }
}

fn events(store: &Store) -> Vec<String> {
    common::event_types(store, 1000)
}

#[test]
fn approving_the_observed_state_moves_the_baseline_and_approves_the_drift() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let base = snapshot(100);
    capture(&mut store, &base);
    clock.advance(TimeDelta::minutes(5));
    let changed = snapshot(130);
    let drifted = capture(&mut store, &changed);
    assert!(drifted.drift.is_drifted());

    clock.advance(TimeDelta::minutes(5));
    let mut token = Token::new("t-1", changed.digest(), clock.now());
    token.from = Some(base.digest());
    let ApprovalDecision::Applied(applied) = token.submit(&mut store) else {
        panic!("expected the approval to apply");
    };
    assert_eq!(applied.baseline.digest, changed.digest());
    assert!(!applied.baseline.provisional);
    assert_eq!(applied.baseline.change_id.as_deref(), Some("CHG-1042"));
    assert_eq!(applied.previous.map(|b| b.digest), Some(base.digest()));
    // Issued after the state was first seen: implemented before it was approved.
    assert!(applied.approval.retroactive);
    let drift = applied.drift.expect("the open drift is approved");
    assert_eq!(drift.status, DriftStatus::Approved);
    assert_eq!(drift.change_id.as_deref(), Some("CHG-1042"));
    assert_eq!(store.open_drift_count("press-7").expect("count"), 0);

    // The device stays in the approved state: no drift.
    let after = capture(&mut store, &changed);
    assert_eq!(after.drift, DriftOutcome::None);
    assert_eq!(
        events(&store),
        [
            event_type::BASELINE_MOVED,
            event_type::DRIFT_DETECTED,
            event_type::BASELINE_MOVED
        ]
    );
    let kinds = common::audit_kinds(&store, 100);
    for kind in [
        "approval.accepted",
        "drift.approved",
        "approval.applied",
        "baseline.moved",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert_eq!(store.audit_verify().expect("verify").first_break, None);
}

#[test]
fn a_pending_approval_is_applied_by_the_first_capture_that_reaches_it() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let base = snapshot(100);
    capture(&mut store, &base);
    let planned = snapshot(140);

    // Approved before the change is made.
    let mut token = Token::new("t-pending", planned.digest(), clock.now());
    token.from = Some(base.digest());
    let ApprovalDecision::Pending(row) = token.submit(&mut store) else {
        panic!("expected a pending approval");
    };
    assert_eq!(row.status, ApprovalStatus::Pending);
    assert_eq!(
        store.pending_approvals("press-7").expect("pending").len(),
        1
    );

    // Another state first: drift, the approval stays pending.
    clock.advance(TimeDelta::minutes(5));
    let wrong = capture(&mut store, &snapshot(135));
    assert!(matches!(wrong.drift, DriftOutcome::Opened(_)));
    assert!(wrong.approval.is_none());

    // Then the approved state: the baseline moves, the drift is approved, no drift remains.
    clock.advance(TimeDelta::minutes(5));
    let reached = capture(&mut store, &planned);
    let applied = reached.approval.expect("the pending approval applied");
    assert!(!applied.approval.retroactive);
    assert_eq!(applied.approval.status, ApprovalStatus::Applied);
    assert_eq!(reached.baseline.digest, planned.digest());
    let DriftOutcome::Approved(drift) = reached.drift else {
        panic!("expected the drift to be approved, got {:?}", reached.drift);
    };
    assert_eq!(drift.change_id.as_deref(), Some("CHG-1042"));
    assert_eq!(drift.observed_digest, planned.digest());
    assert!(
        store
            .pending_approvals("press-7")
            .expect("pending")
            .is_empty()
    );
}

#[test]
fn a_token_for_another_state_leaves_the_drift_open() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    capture(&mut store, &snapshot(100));
    capture(&mut store, &snapshot(130));
    let token = Token::new("t-other", snapshot(999).digest(), clock.now());
    assert!(matches!(
        token.submit(&mut store),
        ApprovalDecision::Pending(_)
    ));
    assert_eq!(store.open_drift_count("press-7").expect("count"), 1);
    let still = capture(&mut store, &snapshot(130));
    assert!(matches!(still.drift, DriftOutcome::Seen(_)));
}

#[test]
fn replay_and_a_wrong_from_are_refused_and_recorded() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let base = snapshot(100);
    capture(&mut store, &base);

    let mut wrong_from = Token::new("t-from", snapshot(120).digest(), clock.now());
    wrong_from.from = Some(snapshot(1).digest());
    let ApprovalDecision::Rejected(refusal) = wrong_from.submit(&mut store) else {
        panic!("expected a refusal");
    };
    assert!(
        matches!(refusal, ApprovalRefusal::FromMismatch { .. }),
        "{refusal}"
    );
    assert!(refusal.to_string().contains(&base.digest().to_string()));
    // The token id is spent even though the token did nothing.
    assert!(store.jti_used("t-from").expect("query"));
    let ApprovalDecision::Rejected(again) = wrong_from.submit(&mut store) else {
        panic!("expected a refusal");
    };
    assert_eq!(again.code(), "replay");

    let rejected: Vec<_> = store
        .events_after(0, 100)
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == event_type::APPROVAL_REJECTED)
        .collect();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].data["reason"], "from-mismatch");
    assert_eq!(rejected[1].data["reason"], "replay");
    assert_eq!(
        store
            .current_baseline("press-7")
            .expect("query")
            .map(|b| b.digest),
        Some(base.digest())
    );
}

#[test]
fn a_pending_approval_expires_unapplied() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    capture(&mut store, &snapshot(100));
    let target = snapshot(150);
    let token = Token::new("t-exp", target.digest(), clock.now());
    assert!(matches!(
        token.submit(&mut store),
        ApprovalDecision::Pending(_)
    ));
    clock.advance(TimeDelta::hours(25));
    let late = capture(&mut store, &target);
    assert!(late.approval.is_none());
    assert!(matches!(late.drift, DriftOutcome::Opened(_)));
    let rows = store.approvals_for_change("CHG-1042").expect("approvals");
    assert_eq!(rows[0].status, ApprovalStatus::Expired);
}

#[test]
fn a_provisional_baseline_is_approved_with_its_own_digest() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let base = snapshot(100);
    let first = capture(&mut store, &base);
    assert!(first.baseline.provisional);
    let token = Token::new("t-prov", base.digest(), clock.now() + TimeDelta::minutes(1));
    let ApprovalDecision::Applied(applied) = token.submit(&mut store) else {
        panic!("expected the provisional baseline to be approved");
    };
    assert!(!applied.baseline.provisional);
    assert_eq!(applied.baseline.digest, base.digest());
    // Confirming the baseline changes nothing on the plant floor: never "after implementation".
    assert!(!applied.approval.retroactive);
    let history = store.baseline_history("press-7").expect("history");
    assert_eq!(history.len(), 2);
    assert!(history[0].provisional && !history[1].provisional);
}

fn status_of(store: &Store, jti: &str) -> ApprovalStatus {
    store
        .approvals_for_change("CHG-1042")
        .expect("approvals")
        .into_iter()
        .chain(store.approvals_for_change("CHG-X").expect("approvals"))
        .chain(store.approvals_for_change("CHG-Y").expect("approvals"))
        .find(|a| a.jti == jti)
        .map(|a| a.status)
        .unwrap_or_else(|| panic!("no approval {jti}"))
}

/// The rollback the state machine closes: X is pre-approved without `from`, the team deploys
/// X' under another approval, and months later someone loads X. X's approval was superseded
/// when the baseline moved to X', so loading X is drift, not an approved change.
#[test]
fn a_stale_pre_approval_is_superseded_and_cannot_roll_the_plant_back() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let b0 = snapshot(100);
    capture(&mut store, &b0);
    let (x, x2) = (snapshot(200), snapshot(210));

    // Confirming the provisional baseline moves nothing: the pre-approval of X stays pending.
    let confirm = Token::new("t-b0", b0.digest(), clock.now());
    assert!(matches!(
        confirm.submit(&mut store),
        ApprovalDecision::Applied(_)
    ));
    let mut pre = Token::new("t-x", x.digest(), clock.now());
    pre.change = "CHG-X".to_owned();
    assert!(matches!(
        pre.submit(&mut store),
        ApprovalDecision::Pending(_)
    ));
    // A second pre-approval that starts from b0 is superseded by the move too: it was meant
    // for a starting point the asset has left.
    let mut other = Token::new("t-y", snapshot(300).digest(), clock.now());
    other.from = Some(b0.digest());
    other.change = "CHG-Y".to_owned();
    assert!(matches!(
        other.submit(&mut store),
        ApprovalDecision::Pending(_)
    ));

    clock.advance(TimeDelta::minutes(10));
    capture(&mut store, &x2);
    let mut deployed = Token::new("t-x2", x2.digest(), clock.now());
    deployed.from = Some(b0.digest());
    assert!(matches!(
        deployed.submit(&mut store),
        ApprovalDecision::Applied(_)
    ));
    assert_eq!(status_of(&store, "t-x"), ApprovalStatus::Superseded);
    assert_eq!(status_of(&store, "t-y"), ApprovalStatus::Superseded);
    let superseded = store
        .events_after(0, 100)
        .expect("events")
        .into_iter()
        .find(|e| e.event_type == event_type::APPROVAL_SUPERSEDED)
        .expect("superseded event");
    assert_eq!(superseded.data["jti"], "t-x");
    assert_eq!(superseded.data["superseded_by"]["jti"], "t-x2");

    // Later, someone loads X: drift, and the baseline stays X'.
    clock.advance(TimeDelta::hours(20));
    let loaded = capture(&mut store, &x);
    assert!(loaded.drift.is_drifted(), "{:?}", loaded.drift);
    assert_eq!(loaded.baseline.digest, x2.digest());
    assert!(loaded.approval.is_none());
    assert!(store.audit_verify().expect("verify").first_break.is_none());
}

#[test]
fn a_withdrawn_approval_is_refused_and_never_applies() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    capture(&mut store, &snapshot(100));
    let planned = snapshot(150);
    Token::new("t-plan", planned.digest(), clock.now()).submit(&mut store);
    let claims = serde_json::json!({"kind": "withdraw"});
    let withdraw = |store: &mut Store, jti: &str, target: &str| {
        store
            .withdraw_approval(&WithdrawInput {
                jti,
                asset: "press-7",
                change_id: "CHG-1042",
                approver_id: "plant-eng-mgr",
                approver: Some("Dana Okafor"),
                target_jti: target,
                token: "h.c.s",
                claims: &claims,
                source: "test",
            })
            .expect("recorded")
    };
    let withdrawn = withdraw(&mut store, "w-1", "t-plan").expect("withdrawn");
    assert_eq!(withdrawn.status, ApprovalStatus::Refused);
    assert!(
        withdrawn
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("withdrawn by approver plant-eng-mgr")),
        "{withdrawn:?}"
    );
    // The planned state arrives anyway: drift, not an approved change.
    let reached = capture(&mut store, &planned);
    assert!(reached.drift.is_drifted());
    assert!(reached.approval.is_none());
    // Withdrawing again, or something that is not pending, is refused; a withdrawal's jti is
    // spent like an approval's.
    assert!(matches!(
        withdraw(&mut store, "w-2", "t-plan"),
        Err(ApprovalRefusal::NotPending {
            status: Some(ApprovalStatus::Refused),
            ..
        })
    ));
    assert!(matches!(
        withdraw(&mut store, "w-1", "nothing"),
        Err(ApprovalRefusal::Replay { .. })
    ));
    assert!(store.jti_used("w-2").expect("jti"));
    let types = events(&store);
    assert!(
        types.contains(&event_type::APPROVAL_REFUSED.to_owned()),
        "{types:?}"
    );
}

/// "Observed now" needs a recent observation: the latest capture of an asset that has been
/// unreachable for a day says nothing about its state now.
#[test]
fn an_approval_for_a_stale_observation_waits_for_the_next_capture() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    capture(&mut store, &snapshot(100));
    let changed = snapshot(130);
    capture(&mut store, &changed);
    clock.advance(TimeDelta::days(1));
    let token = Token::new("t-late", changed.digest(), clock.now());
    let ApprovalDecision::Pending(row) = token.submit(&mut store) else {
        panic!("a day-old observation must not apply at once");
    };
    assert_eq!(row.status, ApprovalStatus::Pending);
    let seen = capture(&mut store, &changed);
    let applied = seen.approval.expect("applied by the fresh capture");
    assert_eq!(applied.approval.jti, "t-late");
    assert_eq!(seen.baseline.digest, changed.digest());
}

/// A flood of bad tokens from one source writes at most REJECTIONS_PER_MINUTE entries and
/// events a minute, then one summary; another source is not held back by it.
#[test]
fn rejections_are_rate_limited_per_source_and_summarised() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut store = Store::open_in_memory(clock.clone()).expect("open");
    let details = serde_json::json!({"verified": false});
    for _ in 0..25 {
        store
            .record_rejection("api:10.0.0.66", "signature", "bad", &details, None)
            .expect("recorded");
    }
    store
        .record_rejection("command-line", "expired", "old", &details, None)
        .expect("recorded");
    let rejected = |store: &Store| {
        events(store)
            .iter()
            .filter(|t| *t == event_type::APPROVAL_REJECTED)
            .count() as i64
    };
    assert_eq!(rejected(&store), REJECTIONS_PER_MINUTE + 1);
    assert_eq!(store.flush_rejection_summaries().expect("flush"), 0);
    clock.advance(TimeDelta::seconds(61));
    assert_eq!(store.flush_rejection_summaries().expect("flush"), 1);
    let summary = store
        .events_after(0, 1000)
        .expect("events")
        .into_iter()
        .find(|e| e.event_type == event_type::APPROVAL_REJECTIONS_SUPPRESSED)
        .expect("summary");
    assert_eq!(summary.data["source"], "api:10.0.0.66");
    assert_eq!(summary.data["suppressed"], 25 - REJECTIONS_PER_MINUTE);
    // A new minute starts afresh.
    store
        .record_rejection("api:10.0.0.66", "signature", "bad", &details, None)
        .expect("recorded");
    assert_eq!(rejected(&store), REJECTIONS_PER_MINUTE + 2);
    let kinds = common::audit_kinds(&store, 1000);
    assert_eq!(
        kinds.iter().filter(|k| *k == "approval.rejected").count() as i64,
        REJECTIONS_PER_MINUTE + 2
    );
    assert!(kinds.contains(&"approval.rejections_suppressed".to_owned()));
}
