//! otdrift's local store: the only crate that touches SQLite.
//!
//! What it keeps, and why each is here:
//! - **snapshots**, content-addressed by their signature, stored once however often seen;
//! - **captures**: when an asset was seen in which state (a repeated state only moves
//!   `last_seen`), and the technician's before/after captures for a change;
//! - **baselines** with their history and a provisional flag;
//! - **drift events** (open, resolved, approved);
//! - the **outbox** of events for the central system;
//! - the **audit log**, hash-chained so local tampering shows.
//!
//! Invariants:
//! - every write that belongs together is one `BEGIN IMMEDIATE` transaction: a capture, the
//!   drift it opens, its audit entry and its outbox event land together or not at all;
//! - the database runs in WAL mode with `synchronous = FULL`, so a committed capture survives
//!   a killed process and a power cut;
//! - a snapshot read back is re-hashed and refused if it does not match its digest.

mod alarms;
mod approvals;
mod audit;
mod changes;
mod delivery;
pub mod envelope;
mod events;
mod flapping;
mod ingest;
mod model;
mod queries;
mod retention;
mod reviews;
mod schema;
mod seen;
mod verification;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use otdrift_core::{Clock, Digest};
use rusqlite::Connection;

pub use alarms::{Alarm, FailedCollection, MaintenanceWindow};
pub use approvals::{
    AppliedApproval, ApprovalDecision, ApprovalInput, ApprovalRefusal, ApprovalRow, ApprovalStatus,
    REJECTIONS_PER_MINUTE, WithdrawInput,
};
pub use audit::{AuditBreak, AuditEntry, AuditReport, chain_hash};
pub use changes::{ChangeRules, Observed, PolicyRule, Verdict};
pub use delivery::{
    DeliveryRefusal, DeliveryState, ParkedEvent, ParkedStatus, Pause, REFUSAL_MESSAGE_MAX,
    RetryTarget, UPSTREAM, cut_text,
};
pub use events::{OutboxEvent, event_type};
pub use ingest::{
    CaptureOutcome, CaptureRecord, DriftOutcome, ENVELOPE_ALLOWANCE, Refusal, StateChange,
    drift_changes_link,
};
pub use model::{
    AssetRow, Baseline, CaptureRow, ChangeRecord, DriftEvent, DriftFilter, DriftReason,
    DriftStatus, Phase,
};
pub use queries::{DriftChanges, DriftHeader};
pub use retention::{Pruned, PrunedPosition, Retention};
pub use reviews::{ChangeRow, ReviewInput, ReviewOutcome, ReviewRecord, StagingLink};
pub use schema::SCHEMA_VERSION;
pub use seen::{QuietPath, VERIFIED};
pub use verification::{Verification, VerificationCheck};

/// How long a writer waits for another process's transaction (the daemon and a technician's
/// `otdrift capture` share the database) before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The default cap on one event's size (`[upstream] max_event_bytes`): 256 KiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;

/// The smallest cap accepted: a drift event must still carry its header, counts and link.
pub const MIN_MAX_EVENT_BYTES: usize = 16 * 1024;

/// The largest cap accepted (16 MiB): beyond it one event is a bulk transfer, which is what
/// the pull link of a truncated drift event is for.
pub const MAX_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Errors from the store. SQLite's own errors keep their cause; the others say what in the
/// data is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A migration failed; the database stays at the previous version.
    #[error("database migration to schema version {target} failed: {source}")]
    Migration {
        /// The version being migrated to.
        target: u32,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// The database was written by a newer otdrift.
    #[error(
        "database schema version {found} is newer than this otdrift supports ({supported}); upgrade otdrift"
    )]
    SchemaTooNew {
        /// The version in the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// Stored data does not match what it claims (a snapshot body that does not hash to its
    /// digest, an unreadable column).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A referenced snapshot, asset or event does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// Each connection's page cache: 1 MiB (SQLite's default is 2 MiB). A gateway keeps two
/// connections open for months, and the operating system caches the file anyway; a page
/// not in this cache is a read from memory, not from flash.
const CACHE_SIZE: &str = "PRAGMA cache_size = -1024;";

/// An open store. One per process; `&mut self` on writes keeps transactions simple.
pub struct Store {
    conn: Connection,
    clock: Arc<dyn Clock>,
    /// The most bytes one event (CloudEvents envelope included) may take; drift events
    /// beyond it carry their first changes, counts and a pull link (see
    /// [`Store::set_max_event_bytes`]).
    max_event_bytes: usize,
    /// Quiet polls not written yet and the assets verified today (`seen.rs`).
    seen: seen::SharedSeen,
    /// Whether quiet polls are kept in memory ([`Store::defer_seen`]).
    defer_seen: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::setup(conn, clock)
    }

    /// Opens an existing database read-only, without migrating it: for checks that must not
    /// change anything (`otdrift check-config` reads the agent key's history this way). A
    /// database from a newer otdrift is refused as in [`Store::open`].
    pub fn open_read_only(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(CACHE_SIZE)?;
        let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            conn,
            clock,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            seen: seen::SharedSeen::default(),
            defer_seen: false,
        })
    }

    /// An in-memory store, for tests and the demo's dry runs.
    pub fn open_in_memory(clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?, clock)
    }

    fn setup(mut conn: Connection, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode answers with a row; WAL lets readers (the API, `status`) run beside
        // the writer, FULL makes every commit durable.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        conn.execute_batch(CACHE_SIZE)?;
        schema::migrate(&mut conn)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        let mut store = Store {
            conn,
            clock,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            seen: seen::SharedSeen::default(),
            defer_seen: false,
        };
        store.backfill_snapshot_digests()?;
        Ok(store)
    }

    /// Caps the size of the events this store writes (`[upstream] max_event_bytes`), clamped
    /// to [`MIN_MAX_EVENT_BYTES`]..=[`MAX_MAX_EVENT_BYTES`]. A drift event whose changes do
    /// not fit carries the first ones, counts per class and a pull link for the rest; the full
    /// list stays in the drift record. The cap is applied when an event is written, so an
    /// event's content never changes between retries.
    pub fn set_max_event_bytes(&mut self, bytes: usize) {
        self.max_event_bytes = bytes.clamp(MIN_MAX_EVENT_BYTES, MAX_MAX_EVENT_BYTES);
    }

    /// The cap on one event's size.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The clock the store stamps records with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Writes a consistent copy of the whole database to `path` (which must not exist), while
    /// other connections keep working: SQLite's `VACUUM INTO` reads one snapshot of the WAL
    /// database and writes a compact file.
    pub fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        if path.exists() {
            return Err(StoreError::NotFound(format!(
                "{} already exists; a backup never overwrites a file",
                path.display()
            )));
        }
        let target = path.to_str().ok_or_else(|| {
            StoreError::NotFound(format!("{} is not a UTF-8 path", path.display()))
        })?;
        self.conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    /// Reads a stored setting (e.g. the digest of the last config seen).
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Records that the configuration changed (config changes are audit entries). Does
    /// nothing when `digest` equals the last recorded config digest; returns whether an entry
    /// was written.
    pub fn note_config(&mut self, path: &str, digest: &Digest) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let previous: Option<String> = {
            use rusqlite::OptionalExtension;
            tx.query_row(
                "SELECT value FROM settings WHERE key = 'config_digest'",
                [],
                |r| r.get(0),
            )
            .optional()?
        };
        let digest_text = digest.to_string();
        if previous.as_deref() == Some(digest_text.as_str()) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO settings(key, value) VALUES ('config_digest', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [&digest_text],
        )?;
        audit::append(
            &tx,
            self.clock.as_ref(),
            "config.changed",
            None,
            &serde_json::json!({
                "path": path,
                "digest": digest_text,
                "previous": previous,
            }),
        )?;
        tx.commit()?;
        Ok(true)
    }
}
