//! Quiet polls write nothing at once (`seen.rs`): their seen-times wait in memory for one
//! flush, anything else is written at once, and a kill loses only the seen-times of the
//! window. Writes are observed from a second connection (`PRAGMA data_version` moves when
//! another connection commits) and on the WAL file's size.

mod common;

use std::path::Path;
use std::sync::Arc;

use chrono::TimeDelta;
use otdrift_core::{Class, Clock, Item, ManualClock, Snapshot, Value, parse_timestamp};
use otdrift_store::{
    ApprovalInput, CaptureOutcome, CaptureRecord, DriftOutcome, FailedCollection, Store, VERIFIED,
};
use rusqlite::Connection;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        parse_timestamp("2026-12-01T08:00:00Z").expect("valid timestamp"),
    ))
}

fn snapshot(setpoint: u64) -> Snapshot {
    Snapshot::from_items([
        Item::new(
            "modbus/identity/revision",
            Class::Identity,
            Value::from("1.4"),
        )
        .expect("valid"),
        Item::new("modbus/holding/40", Class::Setpoint, Value::UInt(setpoint)).expect("valid"),
    ])
    .expect("unique paths")
}

/// Hands `f` the record of a poll of `s` with operating state `state`.
fn with_record<T>(
    s: &Snapshot,
    state: &serde_json::Value,
    f: impl FnOnce(&CaptureRecord<'_>) -> T,
) -> T {
    let runtime = serde_json::json!({"modbus/holding/100": 7});
    f(&CaptureRecord {
        asset: "press-7",
        protocol: "modbus",
        address: "127.0.0.1:502",
        snapshot: s,
        runtime: &runtime,
        operating_state: state,
        change_id: None,
        phase: None,
        duration_ms: 3,
        requests: 2,
        label: &|_| None,
        rules: &otdrift_store::ChangeRules::default(),
        capture_spec: None,
    })
}

fn run_state() -> serde_json::Value {
    serde_json::json!({"modbus/state": "run"})
}

/// A poll the way the daemon records it: the quiet path without the database first, the
/// store otherwise.
fn poll_with(store: &mut Store, s: &Snapshot, state: &serde_json::Value) -> CaptureOutcome {
    let quiet = store.quiet_path();
    with_record(s, state, |rec| {
        quiet
            .record(rec)
            .unwrap_or_else(|| store.record_capture(rec).expect("capture recorded"))
    })
}

fn poll(store: &mut Store, s: &Snapshot) -> CaptureOutcome {
    poll_with(store, s, &run_state())
}

/// A poll on the quiet path alone: `None` when its memo does not vouch for it.
fn poll_memo(store: &Store, s: &Snapshot) -> Option<CaptureOutcome> {
    with_record(s, &run_state(), |rec| store.quiet_path().record(rec))
}

/// Another connection to the same file, as another process would have.
struct Observer {
    conn: Connection,
    wal: std::path::PathBuf,
}

impl Observer {
    fn new(path: &Path) -> Self {
        Observer {
            conn: Connection::open(path).expect("observer"),
            wal: path.with_extension("db-wal"),
        }
    }

    /// Changes whenever another connection commits.
    fn version(&self) -> i64 {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .expect("data_version")
    }

    fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    /// What the database holds: the latest row's (seen_count, last_seen), and the number of
    /// capture rows.
    fn latest(&self) -> (i64, String, i64) {
        let (count, last): (i64, String) = self
            .conn
            .query_row(
                "SELECT seen_count, last_seen FROM captures WHERE asset = 'press-7'
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("latest");
        let rows: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM captures", [], |r| r.get(0))
            .expect("count");
        (count, last, rows)
    }

    /// The asset's last capture as another process's store reads it from the database.
    fn last_capture(&self) -> String {
        let path = self.conn.path().expect("a file");
        let other = Store::open_read_only(Path::new(path), clock()).expect("another store");
        let asset = other.asset("press-7").expect("read").expect("asset");
        otdrift_core::format_timestamp(asset.last_capture.expect("a capture"))
    }

    /// The asset row's own last capture column (the flush leaves it alone).
    fn asset_row_last_capture(&self) -> String {
        self.conn
            .query_row(
                "SELECT last_capture FROM assets WHERE id = 'press-7'",
                [],
                |r| r.get(0),
            )
            .expect("asset")
    }
}

/// A store that defers quiet polls, its baseline recorded and the day's verified entry
/// written (the second poll), and an observer.
fn quiet_store(dir: &Path, clock: &Arc<ManualClock>) -> (Store, Observer) {
    let path = dir.join("otdrift.db");
    let mut store = Store::open(&path, clock.clone()).expect("open");
    store.defer_seen(true).expect("defer seen");
    poll(&mut store, &snapshot(100));
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    (store, Observer::new(&path))
}

fn kinds(store: &Store) -> Vec<String> {
    store
        .audit_entries(0, 1000)
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn quiet_polls_write_nothing_until_one_flush() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    let (version, wal) = (observer.version(), observer.wal_bytes());
    let (count_before, last_before, _) = observer.latest();
    assert_eq!(count_before, 2, "the verified poll wrote its own count");
    for _ in 0..50 {
        clock.advance(TimeDelta::minutes(1));
        let out = poll(&mut store, &snapshot(100));
        assert_eq!(out.drift, DriftOutcome::None);
        assert!(!out.baseline_created);
    }
    // Nothing committed, nothing appended to the WAL.
    assert_eq!(observer.version(), version, "a quiet poll committed");
    assert_eq!(observer.wal_bytes(), wal, "a quiet poll wrote to the WAL");
    assert_eq!(observer.latest(), (2, last_before.clone(), 1));
    assert_eq!(store.seen_pending(), 1);
    // Reads through the store show the polls kept in memory.
    let latest = store.latest_capture("press-7").expect("read").expect("row");
    assert_eq!(latest.seen_count, 52);
    assert_eq!(latest.last_seen, clock.now());
    let asset = store.asset("press-7").expect("read").expect("asset");
    assert_eq!(asset.last_capture, Some(clock.now()));
    // A read-only store that shares the bumps shows them too.
    let mut reader =
        Store::open_read_only(&dir.path().join("otdrift.db"), clock.clone()).expect("reader");
    store.share_seen(&mut reader);
    let seen = reader
        .latest_capture("press-7")
        .expect("read")
        .expect("row");
    assert_eq!((seen.seen_count, seen.last_seen), (52, clock.now()));

    // One flush: one commit with the final seen-time and count.
    assert_eq!(store.flush_seen().expect("flush"), 1);
    assert_eq!(observer.version(), version + 1);
    let now = otdrift_core::format_timestamp(clock.now());
    assert_eq!(observer.latest(), (52, now.clone(), 1));
    assert_eq!(observer.last_capture(), now);
    // ... from the capture row: the flush rewrote no asset row.
    assert!(observer.asset_row_last_capture() < now);
    assert_eq!(store.seen_pending(), 0);
    // Nothing left: a second flush is no transaction at all.
    assert_eq!(store.flush_seen().expect("flush"), 0);
    assert_eq!(observer.version(), version + 1);
    assert_eq!(
        kinds(&store),
        ["capture.recorded", "baseline.provisional", VERIFIED]
    );
}

#[test]
fn a_store_that_does_not_defer_writes_every_poll() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    store.defer_seen(false).expect("defer seen");
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    assert_ne!(observer.version(), version);
    assert_eq!(observer.latest().0, 3);
}

#[test]
fn a_change_is_written_at_once_with_the_quiet_polls_before_it() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    for _ in 0..5 {
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(100));
    }
    let quiet_until = otdrift_core::format_timestamp(clock.now());
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    let out = poll(&mut store, &snapshot(101));
    assert!(matches!(out.drift, DriftOutcome::Opened(_)));
    assert_ne!(observer.version(), version, "a change waited");
    assert_eq!(observer.latest().2, 2, "the new state has its row at once");
    assert_eq!(store.seen_pending(), 0);
    // The previous row got its quiet polls in the same transaction.
    let rows = store.captures("press-7", 10).expect("captures");
    assert_eq!(rows[1].seen_count, 7);
    assert_eq!(
        otdrift_core::format_timestamp(rows[1].last_seen),
        quiet_until
    );
    // The same drifted state again is not quiet (the open drift counts it).
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    assert!(matches!(
        poll(&mut store, &snapshot(101)).drift,
        DriftOutcome::Seen(_)
    ));
    assert_ne!(observer.version(), version);
}

#[test]
fn a_failure_and_the_recovery_are_written_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    store
        .record_failure(&FailedCollection {
            asset: "press-7",
            protocol: "modbus",
            address: "127.0.0.1:502",
            reason: "malformed",
            request: "FC3 40..41",
            detail: "short answer",
            message: "short answer",
            observed: None,
            maintenance: None,
        })
        .expect("failure");
    assert_ne!(observer.version(), version);
    // The next good poll ends the streak: not quiet.
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    assert_ne!(observer.version(), version, "the recovery waited");
    assert!(kinds(&store).contains(&"asset.collection_recovered".to_owned()));
    assert_eq!(store.seen_pending(), 0);
    // The poll that had waited in memory is counted: 2 + 1 + the recovery.
    assert_eq!(observer.latest().0, 4);
    // And quiet again after it.
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    assert_eq!(observer.version(), version);
}

#[test]
fn an_operating_state_change_is_written_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    let out = poll_with(
        &mut store,
        &snapshot(100),
        &serde_json::json!({"modbus/state": "stop"}),
    );
    assert_eq!(out.state_changes.len(), 1);
    assert_ne!(observer.version(), version);
    assert!(kinds(&store).contains(&"asset.state_changed".to_owned()));
}

#[test]
fn a_pending_approval_makes_every_poll_durable() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    submit(&mut store, &clock, "press-7", "j-1", snapshot(200));
    for _ in 0..3 {
        let version = observer.version();
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(100));
        assert_ne!(
            observer.version(),
            version,
            "a poll with a pending approval waited"
        );
    }
    // The approval expires at the first poll after `exp`, as before; then polls are quiet.
    clock.advance(TimeDelta::hours(2));
    poll(&mut store, &snapshot(100));
    assert!(kinds(&store).contains(&"approval.expired".to_owned()));
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    assert_eq!(observer.version(), version);
}

#[test]
fn flapping_detection_sees_every_poll() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(101));
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    // The item is tracked (its mask holds the last two changes) for the next ten polls.
    let mut durable = 0;
    for _ in 0..12 {
        let version = observer.version();
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(100));
        durable += usize::from(observer.version() != version);
    }
    let tracked: i64 = observer
        .conn
        .query_row("SELECT COUNT(*) FROM item_flaps", [], |r| r.get(0))
        .expect("flaps");
    assert_eq!(tracked, 0);
    assert!(
        (9..12).contains(&durable),
        "{durable} of 12 polls written while the item was tracked"
    );
    // Once untracked, polls are quiet.
    let version = observer.version();
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    assert_eq!(observer.version(), version);
}

#[test]
fn a_killed_process_loses_only_the_seen_times_of_the_window() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("otdrift.db");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    for _ in 0..3 {
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(100));
    }
    assert_eq!(store.flush_seen().expect("flush"), 1);
    let flushed_at = clock.now();
    // A window of quiet polls, a drift in the middle of it, and more quiet polls.
    for _ in 0..4 {
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(100));
    }
    clock.advance(TimeDelta::minutes(1));
    let drift = poll(&mut store, &snapshot(101));
    let DriftOutcome::Opened(opened) = drift.drift else {
        panic!("drift expected: {:?}", drift.drift);
    };
    for _ in 0..2 {
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(101));
    }
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100)); // resolved
    // The item is tracked for flapping for ten polls (written), then polls are quiet again.
    for _ in 0..15 {
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(100));
    }
    let events_before = store.events_after(0, 1000).expect("events").len();
    let audit_before = kinds(&store);
    let rows_before = store.captures("press-7", 10).expect("captures");
    assert!(store.seen_pending() > 0);
    let (written_count, written_last, _) = observer.latest();
    // Killed: no flush, no close.
    std::mem::forget(store);

    let reopened = Store::open(&path, clock.clone()).expect("reopen");
    let report = reopened.audit_verify().expect("verify");
    assert!(report.first_break.is_none(), "{:?}", report.first_break);
    assert_eq!(kinds(&reopened), audit_before);
    assert_eq!(
        reopened.events_after(0, 1000).expect("events").len(),
        events_before
    );
    let drifts = reopened
        .drift_events(&otdrift_store::DriftFilter::default())
        .expect("drifts");
    assert_eq!(drifts.len(), 1);
    assert_eq!(drifts[0].id, opened.id);
    assert_eq!(drifts[0].status, otdrift_store::DriftStatus::Resolved);
    let rows = reopened.captures("press-7", 10).expect("captures");
    assert_eq!(rows.len(), rows_before.len());
    // Every row and state is there; only the newest row's quiet polls since its last write
    // are gone: it still says when its state was reached (the resolving poll).
    for (got, had) in rows.iter().zip(&rows_before).skip(1) {
        assert_eq!(got, had);
    }
    assert_eq!(rows[0].id, rows_before[0].id);
    assert_eq!(rows[0].digest, rows_before[0].digest);
    assert_eq!(rows[0].first_seen, rows_before[0].first_seen);
    assert_eq!(rows[0].seen_count, written_count);
    assert_eq!(
        otdrift_core::format_timestamp(rows[0].last_seen),
        written_last
    );
    assert!(rows[0].seen_count < rows_before[0].seen_count);
    assert!(rows[0].last_seen > flushed_at);
    assert!(rows[0].last_seen < rows_before[0].last_seen);
}

#[test]
fn verified_once_a_day_per_asset_in_the_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("otdrift.db");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    // A day of polls every minute (from 08:01 to the next day's 08:01).
    let mut commits = 0;
    for _ in 0..(24 * 60) {
        let version = observer.version();
        clock.advance(TimeDelta::minutes(1));
        poll(&mut store, &snapshot(100));
        commits += usize::from(observer.version() != version);
    }
    // The only commit: the new UTC day's entry (with the polls kept until then).
    assert_eq!(commits, 1);
    let verified = store.audit_entries_of_kind(&[VERIFIED]).expect("audit");
    assert_eq!(verified.len(), 2);
    assert_eq!(
        verified[1].at.date_naive(),
        parse_timestamp("2026-12-02T00:00:00Z")
            .expect("valid")
            .date_naive()
    );
    let body: serde_json::Value = serde_json::from_str(&verified[1].body).expect("json");
    assert_eq!(body["digest"], snapshot(100).digest().to_string());
    assert_eq!(body["asset"], "press-7");
    assert!(body["seen_count"].as_i64().expect("count") > 900);
    // A restart on the same day does not repeat it.
    store.flush_seen().expect("flush");
    drop(store);
    let mut store = Store::open(&path, clock.clone()).expect("reopen");
    store.defer_seen(true).expect("defer seen");
    clock.advance(TimeDelta::minutes(1));
    poll(&mut store, &snapshot(100));
    assert_eq!(
        store
            .audit_entries_of_kind(&[VERIFIED])
            .expect("audit")
            .len(),
        2
    );
    let report = store.audit_verify().expect("verify");
    assert!(report.first_break.is_none());
    assert!(report.entries >= 4);
}

/// An approval of `asset` naming `to`, valid for two hours from now.
fn submit(store: &mut Store, clock: &Arc<ManualClock>, asset: &str, jti: &str, to: Snapshot) {
    let now = clock.now();
    let claims = serde_json::json!({"jti": jti});
    store
        .submit_approval(&ApprovalInput {
            jti,
            asset,
            change_id: "CHG-1",
            kind: "normal",
            approver_id: "plant-eng-mgr",
            approver: Some("Dana Okafor"),
            requestor: Some("Lee Brandt"),
            from: None,
            to: Some(to.digest()),
            content: None,
            diff: None,
            issued_at: now,
            not_before: now,
            expires_at: now + TimeDelta::hours(2),
            token: "header.claims.signature",
            claims: &claims,
            max_observation_age: TimeDelta::minutes(10),
            source: "test",
            rules: &otdrift_store::ChangeRules::default(),
        })
        .expect("submitted");
}

#[test]
fn the_memo_vouches_for_the_same_state_until_this_store_commits() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    let version = observer.version();
    // The last quiet check left a memo: the same state is kept without the database.
    clock.advance(TimeDelta::minutes(1));
    let out = poll_memo(&store, &snapshot(100)).expect("the memo vouches");
    assert!(out.quiet);
    assert_eq!(out.capture.seen_count, 3);
    assert_eq!(out.capture.last_seen, clock.now());
    assert_eq!(out.baseline.digest, snapshot(100).digest());
    // Another state, another operating state: not for the memo.
    assert!(poll_memo(&store, &snapshot(200)).is_none());
    let stopped = with_record(
        &snapshot(100),
        &serde_json::json!({"modbus/state": "stop"}),
        |rec| store.quiet_path().record(rec),
    );
    assert!(stopped.is_none());
    assert_eq!(observer.version(), version);
    // Any commit of this store ends it: the next poll takes the quiet check again, which
    // makes a new memo.
    store
        .enqueue_event("io.otdrift.test", None, &serde_json::json!({}))
        .expect("event");
    clock.advance(TimeDelta::minutes(1));
    assert!(poll_memo(&store, &snapshot(100)).is_none());
    assert!(poll(&mut store, &snapshot(100)).quiet);
    clock.advance(TimeDelta::minutes(1));
    let out = poll_memo(&store, &snapshot(100)).expect("a new memo");
    assert_eq!(out.capture.seen_count, 5);
    // A change is never the memo's: it is written at once, as before.
    clock.advance(TimeDelta::minutes(1));
    let drifted = poll(&mut store, &snapshot(200));
    assert!(!drifted.quiet);
    assert!(drifted.drift.is_drifted());
    assert!(poll_memo(&store, &snapshot(200)).is_none());
}

#[test]
fn another_processs_commit_ends_the_memo_once_noticed() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    // Another process (`otdrift approve` beside the daemon) submits an approval.
    let mut other = Store::open(&dir.path().join("otdrift.db"), clock.clone()).expect("other");
    submit(&mut other, &clock, "press-7", "j-9", snapshot(200));
    // Until the daemon looks, its memo still holds (the look comes every few seconds).
    clock.advance(TimeDelta::seconds(1));
    assert!(poll_memo(&store, &snapshot(100)).is_some());
    assert!(store.notice_other_writers().expect("look"));
    assert!(!store.notice_other_writers().expect("look again"));
    // From then on the pending approval is the durable path's, as for any poll.
    assert!(poll_memo(&store, &snapshot(100)).is_none());
    let version = observer.version();
    clock.advance(TimeDelta::seconds(1));
    assert!(!poll(&mut store, &snapshot(100)).quiet);
    assert_ne!(observer.version(), version);
    // The device reaches the approved state: applied, as before.
    clock.advance(TimeDelta::minutes(1));
    let applied = poll(&mut store, &snapshot(200));
    assert!(applied.approval.is_some(), "{:?}", applied.drift);
    assert_eq!(applied.baseline.digest, snapshot(200).digest());
}

#[test]
fn a_flush_carries_the_memo_and_every_poll_is_counted() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, observer) = quiet_store(dir.path(), &clock);
    for _ in 0..10 {
        clock.advance(TimeDelta::minutes(1));
        poll_memo(&store, &snapshot(100)).expect("the memo vouches");
    }
    assert_eq!(store.flush_seen().expect("flush"), 1);
    assert_eq!(observer.latest().0, 12);
    // The flush wrote only what the memo shows: it holds on, with the flushed counts.
    for _ in 0..5 {
        clock.advance(TimeDelta::minutes(1));
        let out = poll_memo(&store, &snapshot(100)).expect("still vouches");
        assert_eq!(out.capture.last_seen, clock.now());
    }
    assert_eq!(
        store
            .latest_capture("press-7")
            .expect("read")
            .expect("row")
            .seen_count,
        17
    );
    store.flush_seen().expect("flush");
    let now = otdrift_core::format_timestamp(clock.now());
    assert_eq!(observer.latest(), (17, now, 1));
}

#[test]
fn an_expiry_or_a_new_day_ends_the_memo_at_its_time() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let (mut store, _observer) = quiet_store(dir.path(), &clock);
    // Another asset's approval, pending for two hours: this asset's polls stay quiet.
    submit(&mut store, &clock, "mixer-2", "j-7", snapshot(300));
    clock.advance(TimeDelta::minutes(1));
    assert!(poll(&mut store, &snapshot(100)).quiet);
    clock.advance(TimeDelta::minutes(118));
    assert!(poll_memo(&store, &snapshot(100)).is_some());
    // Past its expiry the durable path has work (expiring it): the memo ends there.
    clock.advance(TimeDelta::minutes(2));
    assert!(poll_memo(&store, &snapshot(100)).is_none());
    assert!(!poll(&mut store, &snapshot(100)).quiet);
    assert!(kinds(&store).contains(&"approval.expired".to_owned()));
    clock.advance(TimeDelta::minutes(1));
    assert!(poll(&mut store, &snapshot(100)).quiet);
    assert!(poll_memo(&store, &snapshot(100)).is_some());
    // A new UTC day: its `asset.verified` entry is the store's to write.
    let verified = store
        .audit_entries_of_kind(&[VERIFIED])
        .expect("audit")
        .len();
    clock.advance(TimeDelta::hours(24));
    assert!(poll_memo(&store, &snapshot(100)).is_none());
    poll(&mut store, &snapshot(100));
    assert_eq!(
        store
            .audit_entries_of_kind(&[VERIFIED])
            .expect("audit")
            .len(),
        verified + 1
    );
    clock.advance(TimeDelta::minutes(1));
    assert!(poll_memo(&store, &snapshot(100)).is_some());
}

/// `last_verified` is the last moment a capture held the approved baseline's state (never a
/// provisional one); past `verify_max_age` the store announces `verification_overdue` once,
/// and the first matching capture after it `asset.verified` once.
#[test]
fn last_verified_follows_matching_captures_and_overdue_is_announced_once() {
    use otdrift_store::{VerificationCheck, event_type};
    let dir = tempfile::tempdir().expect("dir");
    let clock = clock();
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock.clone()).expect("store");
    let max_age = TimeDelta::days(35);
    let start = clock.now();
    poll(&mut store, &snapshot(100));
    // A provisional baseline proves nothing; the proof falls due from it.
    let v = store
        .verification("press-7", max_age)
        .expect("verification");
    assert_eq!((v.last_verified, v.due), (None, Some(start + max_age)));
    assert!(matches!(
        store.check_verification("press-7", max_age),
        Ok(VerificationCheck::Current(_))
    ));

    // Approved: the next matching capture verifies it.
    clock.advance(TimeDelta::hours(1));
    submit(&mut store, &clock, "press-7", "jti-verify-1", snapshot(100));
    poll(&mut store, &snapshot(100));
    clock.advance(TimeDelta::days(1));
    poll(&mut store, &snapshot(100));
    let verified_at = clock.now();
    let v = store
        .verification("press-7", max_age)
        .expect("verification");
    assert_eq!(v.last_verified, Some(verified_at));
    assert_eq!(v.due, Some(verified_at + max_age));

    // Drifted ever since: the proof grows old; announced once.
    clock.advance(TimeDelta::hours(1));
    poll(&mut store, &snapshot(101));
    clock.advance(TimeDelta::days(35));
    let seen = common::event_types(&store, 10_000).len();
    match store.check_verification("press-7", max_age).expect("check") {
        VerificationCheck::Overdue(v, true) => {
            assert_eq!(
                v.last_verified,
                Some(verified_at),
                "drifted captures prove nothing"
            );
            assert_eq!(v.overdue_since, Some(verified_at + max_age));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.check_verification("press-7", max_age),
        Ok(VerificationCheck::Overdue(_, false))
    ));
    assert_eq!(
        common::event_types(&store, 10_000)[seen..],
        [event_type::ASSET_VERIFICATION_OVERDUE]
    );
    // Survives a restart: the episode is in the database.
    drop(store);
    let mut store = Store::open(&dir.path().join("otdrift.db"), clock.clone()).expect("store");
    assert!(matches!(
        store.check_verification("press-7", max_age),
        Ok(VerificationCheck::Overdue(_, false))
    ));

    // Back at the baseline: verified again, announced once.
    clock.advance(TimeDelta::minutes(5));
    poll(&mut store, &snapshot(100));
    let seen = common::event_types(&store, 10_000).len();
    match store.check_verification("press-7", max_age).expect("check") {
        VerificationCheck::Recovered(v) => {
            assert_eq!(v.last_verified, Some(clock.now()));
            assert_eq!(v.overdue_since, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.check_verification("press-7", max_age),
        Ok(VerificationCheck::Current(_))
    ));
    assert_eq!(
        common::event_types(&store, 10_000)[seen..],
        [event_type::ASSET_VERIFIED]
    );
    assert_eq!(store.audit_verify().expect("verify").first_break, None);
}
