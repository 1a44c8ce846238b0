//! Schema migrations.
//!
//! The schema version lives in SQLite's `user_version`. Each migration runs in its own
//! transaction together with the version bump, so a process killed mid-upgrade leaves either
//! the old schema or the new one. A database written by a newer otdrift is refused rather than
//! guessed at.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::StoreError;

/// Migrations in order; migration `i` takes the schema from version `i` to `i + 1`.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the spine.
    r#"
    CREATE TABLE snapshots (
        digest            TEXT PRIMARY KEY,
        encoding_version  INTEGER NOT NULL,
        body              BLOB NOT NULL,
        identity_digest   TEXT NOT NULL,
        program_digest    TEXT NOT NULL,
        setpoint_digest   TEXT NOT NULL,
        item_count        INTEGER NOT NULL,
        first_seen        TEXT NOT NULL
    ) STRICT;

    CREATE TABLE assets (
        id                TEXT PRIMARY KEY,
        protocol          TEXT NOT NULL,
        address           TEXT NOT NULL,
        reachable         INTEGER,
        last_attempt      TEXT,
        last_capture      TEXT,
        last_error        TEXT,
        unreachable_since TEXT
    ) STRICT;

    -- One row per distinct observation: a poll that sees the same state as the asset's
    -- previous capture only moves last_seen and seen_count. Technician captures (with a
    -- change id) always get their own row: they are evidence.
    CREATE TABLE captures (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        asset         TEXT NOT NULL,
        digest        TEXT NOT NULL REFERENCES snapshots(digest),
        first_seen    TEXT NOT NULL,
        last_seen     TEXT NOT NULL,
        seen_count    INTEGER NOT NULL DEFAULT 1,
        change_id     TEXT,
        phase         TEXT CHECK (phase IN ('before', 'after')),
        runtime       TEXT NOT NULL DEFAULT '{}',
        duration_ms   INTEGER NOT NULL DEFAULT 0,
        requests      INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX captures_asset ON captures(asset, id);
    CREATE INDEX captures_change ON captures(change_id) WHERE change_id IS NOT NULL;

    -- Baseline history: the current baseline of an asset is its row with the highest id.
    CREATE TABLE baselines (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        asset         TEXT NOT NULL,
        digest        TEXT NOT NULL REFERENCES snapshots(digest),
        provisional   INTEGER NOT NULL CHECK (provisional IN (0, 1)),
        set_at        TEXT NOT NULL,
        reason        TEXT NOT NULL,
        change_id     TEXT,
        capture_id    INTEGER REFERENCES captures(id)
    ) STRICT;
    CREATE INDEX baselines_asset ON baselines(asset, id);

    CREATE TABLE drift_events (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        asset           TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'approved')),
        severity        TEXT NOT NULL,
        baseline_digest TEXT NOT NULL,
        observed_digest TEXT NOT NULL,
        first_seen      TEXT NOT NULL,
        last_seen       TEXT NOT NULL,
        seen_count      INTEGER NOT NULL DEFAULT 1,
        closed_at       TEXT,
        change_id       TEXT,
        changes         TEXT NOT NULL
    ) STRICT;
    -- At most one open drift per asset: re-seeing drift updates it.
    CREATE UNIQUE INDEX drift_one_open ON drift_events(asset) WHERE status = 'open';
    CREATE INDEX drift_asset ON drift_events(asset, id);

    -- Events for the central system, written in the same transaction as the state change
    -- they report. AUTOINCREMENT: a sequence number is never reused, so cursors stay valid.
    CREATE TABLE outbox (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id      TEXT NOT NULL UNIQUE,
        type          TEXT NOT NULL,
        asset         TEXT,
        time          TEXT NOT NULL,
        data          TEXT NOT NULL,
        delivered_at  TEXT
    ) STRICT;
    CREATE INDEX outbox_undelivered ON outbox(seq) WHERE delivered_at IS NULL;

    CREATE TABLE audit_log (
        seq        INTEGER PRIMARY KEY,
        at         TEXT NOT NULL,
        kind       TEXT NOT NULL,
        asset      TEXT,
        body       TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
    ) STRICT;

    CREATE TABLE settings (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    ) STRICT;
    "#,
    // 2: signed approvals.
    r#"
    -- Every approval token that passed verification, with its fate. The jti is unique: a
    -- token is a one-shot instrument, whatever became of its first submission.
    CREATE TABLE approvals (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        jti           TEXT NOT NULL UNIQUE,
        asset         TEXT NOT NULL,
        change_id     TEXT NOT NULL,
        kind          TEXT NOT NULL,
        approver_id   TEXT NOT NULL,
        approver      TEXT,
        requestor     TEXT,
        from_digest   TEXT,
        to_digest     TEXT NOT NULL,
        issued_at     TEXT NOT NULL,
        not_before    TEXT NOT NULL,
        expires_at    TEXT NOT NULL,
        token         TEXT NOT NULL,
        claims        TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'rejected', 'expired')),
        reason        TEXT,
        received_at   TEXT NOT NULL,
        applied_at    TEXT,
        retroactive   INTEGER NOT NULL DEFAULT 0,
        baseline_id   INTEGER REFERENCES baselines(id)
    ) STRICT;
    CREATE INDEX approvals_pending ON approvals(asset, to_digest) WHERE status = 'pending';
    CREATE INDEX approvals_change ON approvals(change_id);
    ALTER TABLE baselines ADD COLUMN approval_id INTEGER REFERENCES approvals(id);
    "#,
    // 3: failed collections are a state of their own (one event per failure streak).
    r#"
    ALTER TABLE assets ADD COLUMN failing_since TEXT;
    ALTER TABLE assets ADD COLUMN failure_reason TEXT;
    ALTER TABLE assets ADD COLUMN failure_count INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: approvals as a state machine (superseded, refused = withdrawn), withdrawals, and
    // rate-limited rejections. SQLite cannot change a CHECK constraint, so the approvals table
    // is rebuilt (foreign keys are off while migrations run; see `migrate`).
    r#"
    CREATE TABLE approvals_v4 (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        jti           TEXT NOT NULL UNIQUE,
        asset         TEXT NOT NULL,
        change_id     TEXT NOT NULL,
        kind          TEXT NOT NULL,
        approver_id   TEXT NOT NULL,
        approver      TEXT,
        requestor     TEXT,
        from_digest   TEXT,
        to_digest     TEXT,
        issued_at     TEXT NOT NULL,
        not_before    TEXT NOT NULL,
        expires_at    TEXT NOT NULL,
        token         TEXT NOT NULL,
        claims        TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN
                          ('pending', 'applied', 'rejected', 'expired', 'superseded', 'refused')),
        reason        TEXT,
        received_at   TEXT NOT NULL,
        applied_at    TEXT,
        retroactive   INTEGER NOT NULL DEFAULT 0,
        baseline_id   INTEGER REFERENCES baselines(id),
        closed_at     TEXT,
        -- A token names either the full state (`to`) or the content (`content`), never both.
        content_digest TEXT,
        diff_digest   TEXT,
        CHECK ((to_digest IS NULL) <> (content_digest IS NULL))
    ) STRICT;
    INSERT INTO approvals_v4(id, jti, asset, change_id, kind, approver_id, approver, requestor,
        from_digest, to_digest, issued_at, not_before, expires_at, token, claims, status,
        reason, received_at, applied_at, retroactive, baseline_id)
    SELECT id, jti, asset, change_id, kind, approver_id, approver, requestor, from_digest,
        to_digest, issued_at, not_before, expires_at, token, claims, status, reason,
        received_at, applied_at, retroactive, baseline_id FROM approvals;
    DROP TABLE approvals;
    ALTER TABLE approvals_v4 RENAME TO approvals;
    CREATE INDEX approvals_pending ON approvals(asset, to_digest) WHERE status = 'pending';
    CREATE INDEX approvals_change ON approvals(change_id);

    -- Signed withdrawals of pending approvals. Their jti is spent like an approval's.
    CREATE TABLE withdrawals (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        jti           TEXT NOT NULL UNIQUE,
        asset         TEXT NOT NULL,
        change_id     TEXT NOT NULL,
        approver_id   TEXT NOT NULL,
        approver      TEXT,
        target_jti    TEXT NOT NULL,
        outcome       TEXT NOT NULL,
        token         TEXT NOT NULL,
        claims        TEXT NOT NULL,
        received_at   TEXT NOT NULL
    ) STRICT;

    -- Rejected tokens per source and minute: beyond a threshold they are counted here and
    -- summarised once, so a flood of bad tokens cannot flood the audit log or the outbox.
    CREATE TABLE rejection_windows (
        source        TEXT PRIMARY KEY,
        window_start  TEXT NOT NULL,
        count         INTEGER NOT NULL,
        suppressed    INTEGER NOT NULL
    ) STRICT;
    "#,
    // 5: change signatures, change policy, staging and emergency reviews.
    r#"
    -- The change signature (content items only) and the history digest of every snapshot;
    -- rows written before this migration are filled in when the store opens.
    ALTER TABLE snapshots ADD COLUMN content_digest TEXT;
    ALTER TABLE snapshots ADD COLUMN history_digest TEXT;
    CREATE INDEX snapshots_content ON snapshots(content_digest);

    -- A change that moved a baseline, with what its approval still owes (an emergency's
    -- review). One row per change and asset.
    CREATE TABLE changes (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        change_id         TEXT NOT NULL,
        asset             TEXT NOT NULL,
        kind              TEXT NOT NULL,
        policy            TEXT,
        status            TEXT NOT NULL CHECK (status IN
                              ('applied', 'review_due', 'reviewed', 'review_overdue')),
        baseline_id       INTEGER NOT NULL REFERENCES baselines(id),
        digest            TEXT NOT NULL,
        content_digest    TEXT NOT NULL,
        diff_digest       TEXT NOT NULL,
        applied_at        TEXT NOT NULL,
        review_due_by     TEXT,
        review_approvals  INTEGER NOT NULL DEFAULT 0,
        review_diff       INTEGER NOT NULL DEFAULT 0,
        approver_id       TEXT NOT NULL,
        reviewed_at       TEXT,
        overdue_at        TEXT,
        UNIQUE (change_id, asset)
    ) STRICT;

    -- Review tokens of emergency changes. Their jti is spent like an approval's.
    CREATE TABLE reviews (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        jti           TEXT NOT NULL UNIQUE,
        change_id     TEXT NOT NULL,
        asset         TEXT NOT NULL,
        approver_id   TEXT NOT NULL,
        approver      TEXT,
        to_digest     TEXT NOT NULL,
        diff_digest   TEXT,
        token         TEXT NOT NULL,
        claims        TEXT NOT NULL,
        received_at   TEXT NOT NULL,
        outcome       TEXT NOT NULL
    ) STRICT;

    -- A staging controller seen with the content a change approves, before production.
    CREATE TABLE staging_links (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        change_id       TEXT NOT NULL,
        production      TEXT NOT NULL,
        staging         TEXT NOT NULL,
        capture_id      INTEGER NOT NULL REFERENCES captures(id),
        content_digest  TEXT NOT NULL,
        seen_at         TEXT NOT NULL,
        UNIQUE (change_id, staging)
    ) STRICT;

    -- Why an open drift that approvals cover is not approved yet (the unmet policy rules).
    ALTER TABLE drift_events ADD COLUMN policy_reason TEXT;

    -- Alarms: whether an outage or failure streak was announced (a maintenance window may
    -- have suppressed it), and since when an asset is stale.
    ALTER TABLE assets ADD COLUMN unreachable_announced INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE assets ADD COLUMN failure_announced INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE assets ADD COLUMN stale_since TEXT;
    UPDATE assets SET unreachable_announced = 1 WHERE reachable = 0;
    UPDATE assets SET failure_announced = 1 WHERE failing_since IS NOT NULL;

    -- Explicit maintenance windows (`otdrift maintenance ASSET --for 2h`).
    CREATE TABLE maintenance (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        asset       TEXT NOT NULL,
        starts_at   TEXT NOT NULL,
        ends_at     TEXT NOT NULL,
        reason      TEXT NOT NULL,
        source      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX maintenance_asset ON maintenance(asset, ends_at);
    "#,
    // 6: delivery state per destination instead of one `delivered_at` per outbox row, so
    // more destinations (sinks) can each keep their own place on the same outbox, and events
    // a receiver refuses can be parked without stopping the ones behind them.
    r#"
    -- One row per destination (`upstream`, later sinks): everything up to acked_seq was
    -- acknowledged or parked, in order. A pause (401/403) is kept here so that the command
    -- line and the API can show it.
    CREATE TABLE delivery_cursors (
        destination    TEXT PRIMARY KEY,
        acked_seq      INTEGER NOT NULL DEFAULT 0,
        paused_reason  TEXT,
        paused_status  INTEGER,
        paused_at      TEXT,
        updated_at     TEXT
    ) STRICT;
    -- Batches were always acknowledged in order, so the first undelivered event is where
    -- the upstream's cursor stands.
    INSERT INTO delivery_cursors(destination, acked_seq)
    SELECT 'upstream', COALESCE(
        (SELECT MIN(seq) - 1 FROM outbox WHERE delivered_at IS NULL),
        (SELECT MAX(seq) FROM outbox),
        0);

    -- Events a destination refused on their own (413/422/400 for a batch of one): kept, listed,
    -- retried on request. The cursor moves past them, so later events flow on.
    CREATE TABLE parked (
        destination   TEXT NOT NULL,
        seq           INTEGER NOT NULL REFERENCES outbox(seq),
        status        TEXT NOT NULL CHECK (status IN ('parked', 'queued', 'delivered')),
        reason        TEXT NOT NULL,
        http_status   INTEGER,
        message       TEXT NOT NULL DEFAULT '',
        parked_at     TEXT NOT NULL,
        retries       INTEGER NOT NULL DEFAULT 0,
        retried_at    TEXT,
        delivered_at  TEXT,
        PRIMARY KEY (destination, seq)
    ) STRICT;
    CREATE INDEX parked_open ON parked(destination, status, seq) WHERE status != 'delivered';

    DROP INDEX outbox_undelivered;
    ALTER TABLE outbox DROP COLUMN delivered_at;
    "#,
    // 7: bounded growth: flapping items, retention, lag alarms.
    r#"
    -- Items that changed on recent polls: bit 0 of mask is the latest poll, bit 9 ten polls
    -- ago. An item is muted (muted_at) while it flaps; rows go when their mask is 0.
    CREATE TABLE item_flaps (
        asset     TEXT NOT NULL,
        path      TEXT NOT NULL,
        mask      INTEGER NOT NULL,
        muted_at  TEXT,
        PRIMARY KEY (asset, path)
    ) STRICT, WITHOUT ROWID;

    -- High-water marks of pruning (`outbox_pruned_through`: pull positions before it get 410).
    CREATE TABLE retention_marks (
        name   TEXT PRIMARY KEY,
        value  INTEGER NOT NULL
    ) STRICT;

    -- Whether a destination's lag beyond a day was announced (once per episode).
    ALTER TABLE delivery_cursors ADD COLUMN lag_announced INTEGER NOT NULL DEFAULT 0;

    -- What retention asks of every snapshot: who still names it.
    CREATE INDEX captures_digest ON captures(digest);
    CREATE INDEX baselines_digest ON baselines(digest);
    CREATE INDEX baselines_capture ON baselines(capture_id);
    CREATE INDEX drift_observed ON drift_events(observed_digest);
    CREATE INDEX drift_baseline ON drift_events(baseline_digest);
    CREATE INDEX approvals_to ON approvals(to_digest);
    CREATE INDEX approvals_from ON approvals(from_digest);
    CREATE INDEX outbox_time ON outbox(time);
    "#,
    // 8: since when an asset's last verification is older than `verify_max_age` (announced
    // once per episode, `verification.rs`).
    r#"
    ALTER TABLE assets ADD COLUMN verification_overdue_since TEXT;
    "#,
    // 9: approved envelopes (`envelope.rs`): the envelope in force with each baseline, the
    // state each capture was judged as, and the last reported move of each covered setpoint;
    // capture specs and the drift reason `capture_changed`.
    r#"
    ALTER TABLE baselines ADD COLUMN envelope TEXT;
    -- The capture with every setpoint move inside its envelope at the baseline's value, and
    -- the baseline it was judged against; NULL when the capture is judged as observed.
    ALTER TABLE captures ADD COLUMN judged_digest TEXT;
    ALTER TABLE captures ADD COLUMN judged_baseline INTEGER;
    CREATE INDEX captures_judged ON captures(judged_digest) WHERE judged_digest IS NOT NULL;
    -- Per covered setpoint: the value last reported (`setpoint.adjusted`), when, and whether a
    -- later move waits for the minute to pass (at most one event per item per minute).
    -- What each capture was read by (the capture spec: the collector's reader version and the
    -- config's setpoint areas and layouts) and what each baseline's state was read by: when
    -- they differ, drift has reason `capture_changed`, not `device`.
    ALTER TABLE captures ADD COLUMN capture_spec TEXT;
    ALTER TABLE baselines ADD COLUMN capture_spec TEXT;
    ALTER TABLE drift_events ADD COLUMN reason TEXT NOT NULL DEFAULT 'device'
        CHECK (reason IN ('device', 'capture_changed'));
    CREATE TABLE setpoint_moves (
        asset        TEXT NOT NULL,
        path         TEXT NOT NULL,
        reported     TEXT NOT NULL,
        reported_at  TEXT NOT NULL,
        waiting      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (asset, path)
    ) STRICT, WITHOUT ROWID;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    // Foreign keys are enforced outside migrations only: a migration that rebuilds a table
    // (SQLite's only way to change a constraint) must drop the old one while rows in other
    // tables still refer to it. Every migration is checked with `foreign_key_check` instead.
    conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let target = index as u32 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Another process may have migrated while we waited for the lock.
        let now: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now >= target {
            tx.commit()?;
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { target, source })?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(StoreError::Corrupt(format!(
                "migration {target} left rows in {table} pointing nowhere"
            )));
        }
        tx.execute_batch(&format!("PRAGMA user_version = {target}"))?;
        tx.commit()?;
        tracing::info!(version = target, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written by the previous version, with an applied approval that a baseline
    /// refers to, survives the approvals table's rebuild in migration 4 row for row, and the
    /// foreign keys still hold.
    #[test]
    fn the_approvals_rebuild_keeps_every_row_and_reference() {
        let mut conn = Connection::open_in_memory().expect("db");
        for (i, sql) in MIGRATIONS.iter().take(3).enumerate() {
            conn.execute_batch(sql).expect("old migration");
            conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .expect("version");
        }
        conn.execute_batch(
            "INSERT INTO snapshots VALUES ('blake3:aa', 1, x'00', 'i', 'p', 's', 0, 't');
             INSERT INTO approvals(jti, asset, change_id, kind, approver_id, to_digest,
                 issued_at, not_before, expires_at, token, claims, status, received_at)
             VALUES ('j-1', 'press-7', 'CHG-1', 'normal', 'eng', 'blake3:aa', 't', 't', 't',
                 'h.c.s', '{}', 'applied', 't');
             INSERT INTO baselines(asset, digest, provisional, set_at, reason, approval_id)
             VALUES ('press-7', 'blake3:aa', 0, 't', 'approval', 1);",
        )
        .expect("old rows");
        migrate(&mut conn).expect("migrated");
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .expect("fk on");
        let (jti, status): (String, String) = conn
            .query_row("SELECT jti, status FROM approvals WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row kept");
        assert_eq!((jti.as_str(), status.as_str()), ("j-1", "applied"));
        let broken: Option<String> = conn
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .expect("check");
        assert_eq!(broken, None);
        conn.execute(
            "UPDATE approvals SET status = 'superseded' WHERE id = 1",
            [],
        )
        .expect("the new status is allowed");
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// Migration 6 carries the `delivered_at` state over: the upstream's cursor stands just
    /// before the first undelivered event, or at the end when everything was delivered.
    #[test]
    fn the_delivery_cursor_starts_where_delivered_at_stood() {
        for (delivered, expected) in [(&[1, 2, 3][..], 3), (&[1, 2, 3, 4, 5][..], 5), (&[][..], 0)]
        {
            let mut conn = Connection::open_in_memory().expect("db");
            for (i, sql) in MIGRATIONS.iter().take(5).enumerate() {
                conn.execute_batch(sql).expect("old migration");
                conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                    .expect("version");
            }
            for seq in 1..=5 {
                let at = delivered
                    .contains(&seq)
                    .then_some("2026-12-01T08:00:00.000Z");
                conn.execute(
                    "INSERT INTO outbox(seq, event_id, type, time, data, delivered_at)
                     VALUES (?1, ?2, 't', 't', '{}', ?3)",
                    rusqlite::params![seq, format!("id-{seq}"), at],
                )
                .expect("row");
            }
            migrate(&mut conn).expect("migrated");
            let acked: i64 = conn
                .query_row(
                    "SELECT acked_seq FROM delivery_cursors WHERE destination = 'upstream'",
                    [],
                    |r| r.get(0),
                )
                .expect("cursor");
            assert_eq!(acked, expected, "delivered {delivered:?}");
            let rows: i64 = conn
                .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
                .expect("count");
            assert_eq!(rows, 5, "every event is kept");
        }
        // An empty database gets a cursor at 0.
        let mut conn = Connection::open_in_memory().expect("db");
        migrate(&mut conn).expect("migrated");
        let acked: i64 = conn
            .query_row("SELECT acked_seq FROM delivery_cursors", [], |r| r.get(0))
            .expect("cursor");
        assert_eq!(acked, 0);
    }
}
