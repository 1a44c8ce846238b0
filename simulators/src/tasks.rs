//! The background tasks every simulator runs: accepting connections and ticking its state.
//! One implementation, so that shutdown, the connection limit and "stopped" mean the same in
//! all of them.
//!
//! Each simulator owns a `shutdown` flag (turns true once) and an `alive` channel whose
//! receivers its tasks hold: when the last receiver is gone, every task and connection has
//! ended, which is what a handle's `stopped()` waits for.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// What a connection task watches while it waits for its client: the simulator shutting
/// down, which closes the connection.
pub(crate) struct Stop {
    protocol: &'static str,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
}

impl Stop {
    pub(crate) fn new(
        protocol: &'static str,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Stop {
            protocol,
            peer,
            shutdown,
        }
    }

    /// `work`'s result, or `None` once the simulator shuts down (the connection closes).
    pub(crate) async fn or<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            _ = self.shutdown.wait_for(|stop| *stop) => None,
            out = work => Some(out),
        }
    }

    /// Sends `bytes` to the client; false when the connection is to close: the simulator
    /// shuts down first, or the write fails (logged).
    pub(crate) async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut W,
        bytes: &[u8],
    ) -> bool {
        match self.or(stream.write_all(bytes)).await {
            Some(Ok(())) => true,
            Some(Err(err)) => {
                let (protocol, peer) = (self.protocol, self.peer);
                tracing::debug!(protocol, %peer, %err, "closing connection");
                false
            }
            None => false,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` turns true and serves each on its own
/// task with `serve`, which runs synchronously at accept time (so it can log the connect in
/// order) and returns the connection's future. With `limit`, a connection beyond it is closed
/// at once, as a PLC with a full connection table does. Each connection task holds an `alive`
/// receiver until it ends.
pub(crate) fn spawn_accept_loop<F, Fut>(
    protocol: &'static str,
    listener: TcpListener,
    shutdown: &watch::Sender<bool>,
    alive: &watch::Sender<()>,
    limit: Option<usize>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut stop = shutdown.subscribe();
    let alive = alive.subscribe();
    let slots = limit.map(|limit| (limit, Arc::new(Semaphore::new(limit))));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically out of file descriptors: back off briefly rather than spin.
                    tracing::warn!(protocol, %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match &slots {
                Some((limit, slots)) => match Arc::clone(slots).try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        tracing::debug!(protocol, %peer, limit, "connection limit reached; closing");
                        drop(stream);
                        continue;
                    }
                },
                None => None,
            };
            tracing::debug!(protocol, %peer, "connection");
            let connection = serve(stream, peer);
            let alive = alive.clone();
            tokio::spawn(async move {
                connection.await;
                drop(permit);
                drop(alive);
            });
        }
        tracing::debug!(protocol, "simulator stopped accepting");
    });
}

/// Calls `tick` every `period` (first after one period) until `shutdown` turns true: the
/// simulated process moving (counters, clocks, inputs).
pub(crate) fn spawn_ticker(
    period: Duration,
    shutdown: &watch::Sender<bool>,
    alive: &watch::Sender<()>,
    mut tick: impl FnMut() + Send + 'static,
) {
    let mut stop = shutdown.subscribe();
    let alive = alive.subscribe();
    tokio::spawn(async move {
        let _alive = alive;
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                _ = interval.tick() => tick(),
            }
        }
    });
}
