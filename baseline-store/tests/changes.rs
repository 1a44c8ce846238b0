//! Change signatures, content approvals, change policies, staging controllers and emergency
//! reviews, against a real SQLite store with an injectable clock.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{
    Class, Clock, Diff, Digest, Item, ManualClock, Snapshot, Value, parse_timestamp,
};
use otdrift_store::{
    ApprovalDecision, ApprovalInput, ApprovalStatus, CaptureOutcome, CaptureRecord, ChangeRules,
    DriftOutcome, PolicyRule, ReviewInput, Store, event_type,
};

fn start() -> DateTime<Utc> {
    parse_timestamp("2026-12-01T08:00:00Z").expect("valid timestamp")
}

/// A controller: its identity (serial), its program, a setpoint, and its own history (an
/// online-change counter that differs between two controllers running the same content).
fn controller(serial: &str, program: &str, setpoint: u64, counter: u64) -> Snapshot {
    Snapshot::from_items([
        Item::new("ads/device/serial", Class::Identity, Value::from(serial)).expect("valid"),
        Item::new("ads/symbol/MAIN.Step", Class::Program, Value::from(program)).expect("valid"),
        Item::new(
            "ads/value/GVL.Speed",
            Class::Setpoint,
            Value::UInt(setpoint),
        )
        .expect("valid"),
        Item::new(
            "ads/app/online_change_count",
            Class::History,
            Value::UInt(counter),
        )
        .expect("valid"),
    ])
    .expect("unique paths")
}

struct Rig {
    clock: Arc<ManualClock>,
    store: Store,
}

fn new_rig() -> Rig {
    let clock = Arc::new(ManualClock::new(start()));
    let store = Store::open_in_memory(clock.clone()).expect("store");
    Rig { clock, store }
}

fn policy(id: &str, approvals: u32) -> PolicyRule {
    PolicyRule {
        id: id.to_owned(),
        approvals,
        notice: TimeDelta::zero(),
        require_staging: false,
        diff_review: false,
        review_within: TimeDelta::days(7),
    }
}

fn rules(p: Option<PolicyRule>) -> ChangeRules {
    ChangeRules {
        policy: p,
        ..ChangeRules::default()
    }
}

struct Token<'a> {
    jti: &'a str,
    approver_id: &'a str,
    change: &'a str,
    kind: &'a str,
    to: Option<Digest>,
    content: Option<Digest>,
    diff: Option<Digest>,
}

impl Rig {
    fn capture(&mut self, asset: &str, s: &Snapshot, rules: &ChangeRules) -> CaptureOutcome {
        common::record_ok(
            &mut self.store,
            &CaptureRecord {
                rules,
                ..common::ads_capture(asset, s)
            },
        )
    }

    fn submit(&mut self, asset: &str, t: &Token<'_>, rules: &ChangeRules) -> ApprovalDecision {
        let now = self.clock.now();
        let claims = serde_json::json!({"jti": t.jti});
        self.store
            .submit_approval(&ApprovalInput {
                jti: t.jti,
                asset,
                change_id: t.change,
                kind: t.kind,
                approver_id: t.approver_id,
                approver: None,
                requestor: Some("Lee Brandt"),
                from: None,
                to: t.to,
                content: t.content,
                diff: t.diff,
                issued_at: now,
                not_before: now,
                expires_at: now + TimeDelta::days(20),
                token: "h.c.s",
                claims: &claims,
                max_observation_age: TimeDelta::minutes(10),
                source: "test",
                rules,
            })
            .expect("submitted")
    }

    fn events(&self) -> Vec<String> {
        common::event_types(&self.store, 10_000)
    }
}

fn content_token<'a>(jti: &'a str, approver: &'a str, content: Digest) -> Token<'a> {
    Token {
        jti,
        approver_id: approver,
        change: "CHG-7",
        kind: "normal",
        to: None,
        content: Some(content),
        diff: None,
    }
}

/// Two controllers that differ only in identity and history have one change signature; a
/// `content` approval learned on one applies to the other when its identity is unchanged, and
/// the new baseline is the full state observed there.
#[test]
fn a_content_approval_applies_on_another_controller_with_the_same_content() {
    let mut rig = new_rig();
    let none = rules(None);
    let production_now = controller("SN-PROD", "v1", 100, 40);
    rig.capture("line-1", &production_now, &none);
    let staged = controller("SN-STAGE", "v2", 120, 3);
    let planned = controller("SN-PROD", "v2", 120, 41);
    assert_ne!(staged.digest(), planned.digest());
    assert_eq!(staged.content_digest(), planned.content_digest());
    let content = staged.content_digest();
    assert!(matches!(
        rig.submit("line-1", &content_token("c-1", "eng", content), &none),
        ApprovalDecision::Pending(_)
    ));
    let reached = rig.capture("line-1", &planned, &none);
    let applied = reached.approval.expect("the content approval applied");
    assert_eq!(applied.baseline.digest, planned.digest());
    assert_eq!(reached.digests.content, content);

    // The same content on a controller whose identity changed (a swapped CPU) is drift.
    let mut rig = new_rig();
    rig.capture("line-1", &production_now, &none);
    rig.submit("line-1", &content_token("c-2", "eng", content), &none);
    let swapped = controller("SN-OTHER", "v2", 120, 41);
    let seen = rig.capture("line-1", &swapped, &none);
    assert!(seen.approval.is_none());
    assert!(seen.drift.is_drifted());
}

/// `approvals = 2`: one approver is not enough, whichever comes first, the tokens or the
/// change; the second distinct approver applies it while the state holds.
#[test]
fn a_two_approver_policy_waits_for_the_second_signature_in_both_orders() {
    let board = rules(Some(policy("board", 2)));
    // Tokens first, then the change.
    let mut rig = new_rig();
    rig.capture("line-1", &controller("SN-1", "v1", 100, 1), &board);
    let target = controller("SN-1", "v2", 100, 2);
    let t1 = Token {
        to: Some(target.digest()),
        content: None,
        ..content_token("a-1", "alice", target.content_digest())
    };
    rig.submit("line-1", &t1, &board);
    let seen = rig.capture("line-1", &target, &board);
    assert!(seen.drift.is_drifted());
    let reason = seen
        .drift
        .event()
        .and_then(|e| e.policy_reason.clone())
        .expect("the drift says why");
    assert!(reason.contains("approvals 1 of 2"), "{reason}");
    assert!(reason.contains("policy board"), "{reason}");
    // The same approver again does not count twice.
    let t1b = Token { jti: "a-1b", ..t1 };
    assert!(matches!(
        rig.submit("line-1", &t1b, &board),
        ApprovalDecision::Pending(_)
    ));
    let t2 = Token {
        jti: "a-2",
        approver_id: "bob",
        ..t1b
    };
    let ApprovalDecision::Applied(applied) = rig.submit("line-1", &t2, &board) else {
        panic!("the second approver applies it while the state holds");
    };
    assert_eq!(applied.baseline.digest, target.digest());
    let drift = applied.drift.expect("the drift is approved");
    assert_eq!(drift.change_id.as_deref(), Some("CHG-7"));

    // The change first, then both tokens.
    let mut rig = rig_with_change(&board);
    let target = controller("SN-1", "v2", 100, 2);
    let t = |jti, who| Token {
        to: Some(target.digest()),
        content: None,
        ..content_token(jti, who, target.content_digest())
    };
    assert!(matches!(
        rig.submit("line-1", &t("b-1", "alice"), &board),
        ApprovalDecision::Pending(_)
    ));
    assert!(matches!(
        rig.submit("line-1", &t("b-2", "bob"), &board),
        ApprovalDecision::Applied(_)
    ));
    let rows = rig.store.approvals_for_change("CHG-7").expect("approvals");
    assert!(
        rows.iter().all(|a| a.status == ApprovalStatus::Applied),
        "{rows:?}"
    );
}

fn rig_with_change(r: &ChangeRules) -> Rig {
    let mut rig = new_rig();
    rig.capture("line-1", &controller("SN-1", "v1", 100, 1), r);
    let seen = rig.capture("line-1", &controller("SN-1", "v2", 100, 2), r);
    assert!(seen.drift.is_drifted());
    rig
}

/// `notice = 48h`: a change that reaches the device 3 hours after the first approval is not
/// applied ("notice 3h of 48h"); the same change deployed after the notice period is.
#[test]
fn notice_is_measured_from_the_first_approval_to_the_change() {
    let mut p = policy("tier-1", 1);
    p.notice = TimeDelta::hours(48);
    let r = rules(Some(p));
    let mut rig = new_rig();
    let before = controller("SN-1", "v1", 100, 1);
    rig.capture("line-1", &before, &r);
    let target = controller("SN-1", "v2", 100, 2);
    rig.submit(
        "line-1",
        &content_token("n-1", "alice", target.content_digest()),
        &r,
    );
    rig.clock.advance(TimeDelta::hours(3));
    let early = rig.capture("line-1", &target, &r);
    let reason = early
        .drift
        .event()
        .and_then(|e| e.policy_reason.clone())
        .expect("why");
    assert!(reason.contains("notice 3h of 2d"), "{reason}");
    // Still the same run of the state two days later: the notice was not given.
    rig.clock.advance(TimeDelta::hours(48));
    assert!(rig.capture("line-1", &target, &r).drift.is_drifted());
    // Rolled back and deployed again after the notice: applied.
    rig.capture("line-1", &before, &r);
    rig.clock.advance(TimeDelta::minutes(5));
    let redeployed = rig.capture("line-1", &target, &r);
    assert!(redeployed.approval.is_some(), "{:?}", redeployed.drift);
}

/// `require_staging`: the change must be seen on a staging controller (same content, its own
/// identity and history) before production; the staging controller is moved by the same
/// content approval and linked to the change.
#[test]
fn staging_must_come_first_and_is_linked_to_the_change() {
    let mut p = policy("tier-1", 1);
    p.require_staging = true;
    let production_rules = ChangeRules {
        policy: Some(p),
        staging: vec!["line-1-spare".to_owned()],
        ..ChangeRules::default()
    };
    let staging_rules = ChangeRules {
        production: Some("line-1".to_owned()),
        ..ChangeRules::default()
    };
    // Both controllers at v1 with their baselines.
    let line_at_v1 = || {
        let mut rig = new_rig();
        rig.capture(
            "line-1",
            &controller("SN-P", "v1", 100, 40),
            &production_rules,
        );
        rig.capture(
            "line-1-spare",
            &controller("SN-S", "v1", 100, 2),
            &staging_rules,
        );
        rig
    };
    // Production first: not staged.
    let mut rig = line_at_v1();
    let target = controller("SN-P", "v2", 100, 41);
    let content = target.content_digest();
    rig.submit(
        "line-1",
        &content_token("s-1", "alice", content),
        &production_rules,
    );
    rig.clock.advance(TimeDelta::minutes(1));
    let unstaged = rig.capture("line-1", &target, &production_rules);
    let reason = unstaged.drift.event().and_then(|e| e.policy_reason.clone());
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("not staged")),
        "{reason:?}"
    );

    // Staging first, then production: applied, linked, and the spare moved too.
    let mut rig = line_at_v1();
    rig.submit(
        "line-1",
        &content_token("s-2", "alice", content),
        &production_rules,
    );
    rig.clock.advance(TimeDelta::minutes(1));
    let spare = rig.capture(
        "line-1-spare",
        &controller("SN-S", "v2", 100, 3),
        &staging_rules,
    );
    assert!(
        spare.approval.is_some(),
        "the content approval moves the staging controller"
    );
    assert!(!spare.drift.is_drifted());
    rig.clock.advance(TimeDelta::minutes(10));
    let deployed = rig.capture("line-1", &target, &production_rules);
    assert!(deployed.approval.is_some(), "{:?}", deployed.drift);
    let links = rig.store.staging_links("CHG-7").expect("links");
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].staging, "line-1-spare");
    assert_eq!(links[0].content, content);
    assert!(rig.events().contains(&event_type::CHANGE_STAGED.to_owned()));
}

/// `diff_review`: the token must carry the digest of the content changes; one that carries
/// another diff (or none) does not count.
#[test]
fn a_diff_review_policy_needs_the_reviewed_diff() {
    let mut p = policy("tier-2", 1);
    p.diff_review = true;
    let r = rules(Some(p));
    let mut rig = new_rig();
    let before = controller("SN-1", "v1", 100, 1);
    rig.capture("line-1", &before, &r);
    let target = controller("SN-1", "v2", 110, 2);
    let diff = Diff::between(&before, &target).content_digest();
    let wrong = Token {
        diff: Some(Digest::of(b"something else")),
        ..content_token("d-1", "alice", target.content_digest())
    };
    rig.submit("line-1", &wrong, &r);
    let seen = rig.capture("line-1", &target, &r);
    let reason = seen.drift.event().and_then(|e| e.policy_reason.clone());
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("diff not reviewed")),
        "{reason:?}"
    );
    let right = Token {
        jti: "d-2",
        approver_id: "bob",
        diff: Some(diff),
        ..wrong
    };
    assert!(matches!(
        rig.submit("line-1", &right, &r),
        ApprovalDecision::Applied(_)
    ));
    // The diff a staging controller shows is the same digest: identity and history are left
    // out.
    let staging_before = controller("SN-S", "v1", 100, 7);
    let staging_after = controller("SN-S", "v2", 110, 8);
    assert_eq!(
        Diff::between(&staging_before, &staging_after).content_digest(),
        diff
    );
}

/// A change that touches a safety item needs the safety policy, whatever the asset's tier.
#[test]
fn a_change_to_safety_items_escalates_to_the_safety_policy() {
    let r = ChangeRules {
        policy: Some(policy("tier-3", 1)),
        safety: vec!["ads/value/GVL.Speed*".to_owned()],
        safety_policy: Some(policy("board", 2)),
        ..ChangeRules::default()
    };
    let mut rig = new_rig();
    rig.capture("line-1", &controller("SN-1", "v1", 100, 1), &r);
    // A program change alone: tier-3, one approval.
    let program = controller("SN-1", "v2", 100, 2);
    rig.submit(
        "line-1",
        &content_token("p-1", "alice", program.content_digest()),
        &r,
    );
    assert!(rig.capture("line-1", &program, &r).approval.is_some());
    // A safety setpoint change: the board, two approvals.
    let safety = controller("SN-1", "v2", 50, 3);
    let t = Token {
        change: "CHG-8",
        ..content_token("p-2", "alice", safety.content_digest())
    };
    rig.submit("line-1", &t, &r);
    let seen = rig.capture("line-1", &safety, &r);
    let reason = seen.drift.event().and_then(|e| e.policy_reason.clone());
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("policy board") && r.contains("approvals 1 of 2")),
        "{reason:?}"
    );
}

/// An emergency token applies at once whatever the policy; the change is then due for review
/// by other approvers within the policy's window, and overdue after it.
#[test]
fn an_emergency_applies_at_once_and_owes_a_timely_review() {
    let mut p = policy("board", 2);
    p.notice = TimeDelta::hours(48);
    p.review_within = TimeDelta::days(7);
    let r = rules(Some(p));
    for reviewed_in_time in [true, false] {
        let mut rig = new_rig();
        rig.capture("line-1", &controller("SN-1", "v1", 100, 1), &r);
        let fix = controller("SN-1", "v1-hotfix", 100, 2);
        let seen = rig.capture("line-1", &fix, &r);
        assert!(seen.drift.is_drifted());
        let emergency = Token {
            kind: "emergency",
            change: "CHG-911",
            to: Some(fix.digest()),
            content: None,
            ..content_token("e-1", "night-lead", fix.content_digest())
        };
        assert!(matches!(
            rig.submit("line-1", &emergency, &r),
            ApprovalDecision::Applied(_)
        ));
        let due = rig.store.reviews_due("line-1").expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].status, "review_due");
        let review = |rig: &mut Rig, jti: &str, who: &str| {
            let claims = serde_json::json!({});
            rig.store
                .submit_review(&ReviewInput {
                    jti,
                    change_id: "CHG-911",
                    asset: "line-1",
                    approver_id: who,
                    approver: None,
                    to: fix.digest(),
                    diff: None,
                    token: "h.c.s",
                    claims: &claims,
                    source: "test",
                })
                .expect("recorded")
        };
        if reviewed_in_time {
            rig.clock.advance(TimeDelta::days(2));
            // The emergency's own approver does not review their own fix.
            let own = review(&mut rig, "r-0", "night-lead").expect("recorded");
            assert!(!own.counted);
            let first = review(&mut rig, "r-1", "alice").expect("recorded");
            assert!(first.counted);
            assert_eq!(first.change.status, "review_due");
            let second = review(&mut rig, "r-2", "bob").expect("recorded");
            assert_eq!(second.change.status, "reviewed");
            assert!(
                rig.events()
                    .contains(&event_type::CHANGE_REVIEWED.to_owned())
            );
            rig.clock.advance(TimeDelta::days(10));
            assert_eq!(rig.store.check_reviews().expect("check"), 0);
        } else {
            rig.clock.advance(TimeDelta::days(8));
            assert_eq!(rig.store.check_reviews().expect("check"), 1);
            assert_eq!(
                rig.store.reviews_due("line-1").expect("due")[0].status,
                "review_overdue"
            );
            assert!(
                rig.events()
                    .contains(&event_type::CHANGE_REVIEW_OVERDUE.to_owned())
            );
            // A late review still completes it, marked late.
            review(&mut rig, "r-1", "alice").expect("recorded");
            let done = review(&mut rig, "r-2", "bob").expect("recorded");
            assert_eq!(done.change.status, "reviewed");
        }
        // A review of another state, or of a change that needs none, is refused.
        let claims = serde_json::json!({});
        let refused = rig
            .store
            .submit_review(&ReviewInput {
                jti: "r-x",
                change_id: "CHG-911",
                asset: "line-1",
                approver_id: "carol",
                approver: None,
                to: Digest::of(b"another state"),
                diff: None,
                token: "h.c.s",
                claims: &claims,
                source: "test",
            })
            .expect("recorded");
        assert!(refused.is_err());
        assert!(
            rig.store
                .audit_verify()
                .expect("verify")
                .first_break
                .is_none()
        );
    }
}

/// Drift is unchanged: a history item that moves (a counter) is drift unless an approval
/// covers it, and it ranks high.
#[test]
fn a_moving_counter_is_still_drift() {
    let mut rig = new_rig();
    let none = rules(None);
    rig.capture("line-1", &controller("SN-1", "v1", 100, 1), &none);
    let moved = rig.capture("line-1", &controller("SN-1", "v1", 100, 2), &none);
    let DriftOutcome::Opened(event) = moved.drift else {
        panic!("a counter that moves is drift");
    };
    assert_eq!(event.severity.as_str(), "high");
    assert_eq!(event.changes[0].class, Class::History);
}
