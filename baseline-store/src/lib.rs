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

mod approvals;
mod audit;
mod events;
mod ingest;
mod model;
mod queries;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use otdrift_core::{Clock, Digest};
use rusqlite::Connection;

pub use approvals::{
    AppliedApproval, ApprovalDecision, ApprovalInput, ApprovalRefusal, ApprovalRow, ApprovalStatus,
    REJECTIONS_PER_MINUTE, WithdrawInput,
};
pub use audit::{AuditBreak, AuditEntry, AuditReport, chain_hash};
pub use events::{OutboxEvent, event_type};
pub use ingest::{
    CaptureOutcome, CaptureRecord, DriftOutcome, FailedCollection, Refusal, StateChange,
};
pub use model::{
    AssetRow, Baseline, CaptureRow, ChangeRecord, DriftEvent, DriftFilter, DriftStatus, Phase,
};
pub use schema::SCHEMA_VERSION;

/// How long a writer waits for another process's transaction (the daemon and a technician's
/// `otdrift capture` share the database) before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

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

/// An open store. One per process; `&mut self` on writes keeps transactions simple.
pub struct Store {
    conn: Connection,
    clock: Arc<dyn Clock>,
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
        schema::migrate(&mut conn)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Ok(Store { conn, clock })
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

    /// Records that the configuration changed (SPEC: config changes are audit entries). Does
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
