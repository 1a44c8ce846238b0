//! The daemon's handle on the store: one writing SQLite connection shared by the scheduler,
//! the push worker and the API's approvals, and one read-only connection for the API's reads,
//! both used from blocking threads so the async workers never wait on SQLite. In WAL mode a
//! reader sees the last committed state and never waits for the writer, so a page of events
//! or the asset list is served while a large capture is being recorded. Other processes
//! (`otdrift capture` while the daemon runs) open their own connection; WAL and the busy
//! timeout let them write alongside.

use std::sync::{Arc, Mutex};

use otdrift_store::{Store, StoreError};

/// A cloneable, thread-safe store handle.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
    reader: Option<Arc<Mutex<Store>>>,
    /// The store's quiet path: a poll of the state its asset's memo holds is kept in
    /// memory on the caller's thread, without a blocking thread or the store's lock.
    quiet: otdrift_store::QuietPath,
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
    /// Wraps an open store; reads go through it too.
    pub fn new(store: Store) -> Self {
        Db {
            quiet: store.quiet_path(),
            store: Arc::new(Mutex::new(store)),
            reader: None,
        }
    }

    /// Wraps an open store and a read-only connection to the same database for
    /// [`Db::read`].
    pub fn with_reader(store: Store, reader: Store) -> Self {
        Db {
            quiet: store.quiet_path(),
            store: Arc::new(Mutex::new(store)),
            reader: Some(Arc::new(Mutex::new(reader))),
        }
    }

    /// Records a quiet poll in memory when the store's memo vouches for it
    /// ([`otdrift_store::QuietPath`]); `None` means: record it with [`Db::call`].
    pub fn record_quiet(
        &self,
        rec: &otdrift_store::CaptureRecord<'_>,
    ) -> Option<otdrift_store::CaptureOutcome> {
        self.quiet.record(rec)
    }

    /// How many assets have quiet polls not written yet, without the store's lock.
    pub fn seen_pending(&self) -> usize {
        self.quiet.pending()
    }

    /// Runs `f` on the writing connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        run(self.store.clone(), f).await
    }

    /// Runs `f`, which only reads, on the read-only connection (the writing one without it).
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        run(self.reader.as_ref().unwrap_or(&self.store).clone(), f).await
    }
}

async fn run<T, F>(store: Arc<Mutex<Store>>, f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
{
    let result = tokio::task::spawn_blocking(move || {
        // A panic while holding the lock cannot leave a half-written transaction behind
        // (rusqlite rolls back on drop), so a poisoned lock is safe to keep using.
        let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    })
    .await?;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use otdrift_core::SystemClock;

    use super::*;

    /// A read is served while the writer is busy (a large capture being recorded).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("otdrift.db");
        let store = Store::open(&path, Arc::new(SystemClock)).expect("store");
        let reader = Store::open_read_only(&path, Arc::new(SystemClock)).expect("reader");
        let db = Db::with_reader(store, reader);
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                db.call(move |_| {
                    let _ = held_tx.send(());
                    let _ = release_rx.recv_timeout(Duration::from_secs(10));
                    Ok(())
                })
                .await
            })
        };
        held_rx.await.expect("the writer holds its lock");
        let read = tokio::time::timeout(Duration::from_secs(2), db.read(|s| s.last_event_seq()))
            .await
            .expect("the read did not wait for the writer");
        assert_eq!(read.expect("read"), 0);
        release_tx.send(()).expect("release");
        writer.await.expect("joined").expect("written");
    }
}
