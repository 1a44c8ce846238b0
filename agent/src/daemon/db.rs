//! The daemon's handle on the store: one SQLite connection shared by the scheduler, the push
//! worker and the API, used from blocking threads so the async workers never wait on SQLite.
//! Other processes (`otdrift capture` while the daemon runs) open their own connection; WAL and
//! the busy timeout let them write alongside.

use std::sync::{Arc, Mutex};

use otdrift_store::{Store, StoreError};

/// A cloneable, thread-safe store handle.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The store said no.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Db {
    /// Wraps an open store.
    pub fn new(store: Store) -> Self {
        Db {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// Runs `f` on the store on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-written transaction behind
            // (rusqlite rolls back on drop), so a poisoned lock is safe to keep using.
            let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await?;
        Ok(result?)
    }
}
