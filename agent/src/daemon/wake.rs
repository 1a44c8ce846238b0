//! Waking the delivery workers (the upstream push, each sink) when events are queued: each has
//! its own `Notify`, so one worker taking the wake-up never leaves another asleep.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Fans "events were queued" out to every delivery worker.
#[derive(Debug, Default)]
pub struct Wake {
    workers: Mutex<Vec<Arc<Notify>>>,
}

impl Wake {
    /// A new worker's wake-up.
    pub fn subscribe(&self) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        if let Ok(mut w) = self.workers.lock() {
            w.push(n.clone());
        }
        n
    }

    /// Events were queued: every worker looks (a worker busy now looks once it is done).
    pub fn queued(&self) {
        if let Ok(w) = self.workers.lock() {
            for n in w.iter() {
                n.notify_one();
            }
        }
    }
}
