//! Sinks: destinations beside `[upstream]` (`[[sink]]`: a SIEM over syslog, an MQTT broker),
//! each with its own cursor on the durable outbox.
//!
//! ```text
//! outbox ──► pending("sink:<name>", batch_size) ──► Sink::deliver ──ok──► acknowledge(last seq)
//!                                                        └─err──► reset the connection, back
//!                                                                 off 1 s .. 60 s, same batch
//! ```
//!
//! One worker per sink, so one sink's outage never delays another or the upstream. Events
//! go in outbox order; a batch is acknowledged only once the sink confirmed all of it (TCP
//! and TLS syslog: written and flushed on a live connection; MQTT: every PUBACK), so a killed
//! process or a dead connection resends at most that batch (at least once; CloudEvents ids let
//! a receiver drop repeats). UDP syslog is best effort: a datagram sent is a datagram counted.
//! A sink seen for the first time starts at the end of the outbox (it takes the events from
//! then on, not the retained history), recorded in the audit log.

mod mqtt;
mod syslog;

use std::sync::Arc;
use std::time::Duration;

use otdrift_config::{SinkConfig, SinkKind};
use otdrift_store::OutboxEvent;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::backoff::Backoff;
use super::db::Db;

/// How long an idle worker waits for a new event before it looks anyway.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The delivery cursor of a sink.
pub fn destination(sink: &SinkConfig) -> String {
    format!("sink:{}", sink.name)
}

/// Why a batch did not reach a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Could not connect, or the connection failed.
    #[error("{0}")]
    Connection(String),
    /// The sink's own setting cannot work (a certificate file that does not parse, ...).
    #[error("{0}")]
    Setup(String),
}

/// One kind of sink: a connection that delivers batches in order.
pub(crate) trait Sink: Send {
    /// Delivers `batch` in order; `Ok` only when the sink confirmed all of it.
    fn deliver(
        &mut self,
        batch: &[OutboxEvent],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Forgets the connection after a failure (the next `deliver` connects again).
    fn reset(&mut self) -> impl Future<Output = ()> + Send;
}

/// What every sink worker needs from the daemon.
pub struct SinkContext {
    /// The agent's id (CloudEvents `source`, syslog HOSTNAME, MQTT topics).
    pub agent_id: String,
    /// The store.
    pub db: Db,
    /// Woken when events are queued.
    pub wake: Arc<Notify>,
    /// Stops the worker.
    pub shutdown: CancellationToken,
}

/// Runs the sink until shutdown.
pub async fn run(cfg: SinkConfig, cx: SinkContext) {
    let span = tracing::info_span!("sink", sink = %cfg.name);
    run_sink(cfg, cx).instrument(span).await;
}

async fn run_sink(cfg: SinkConfig, cx: SinkContext) {
    match &cfg.kind {
        SinkKind::Syslog { .. } => match syslog::Syslog::new(&cfg, &cx.agent_id) {
            Ok(sink) => work(&cfg, cx, sink).await,
            Err(e) => {
                tracing::error!(error = %e, "the sink cannot start; its events stay in the outbox")
            }
        },
        SinkKind::Mqtt { .. } => match mqtt::Mqtt::new(&cfg, &cx) {
            Ok(sink) => work(&cfg, cx, sink).await,
            Err(e) => {
                tracing::error!(error = %e, "the sink cannot start; its events stay in the outbox")
            }
        },
    }
}

async fn work<S: Sink>(cfg: &SinkConfig, cx: SinkContext, mut sink: S) {
    let dest = destination(cfg);
    let limit = u32::try_from(cfg.batch_size).unwrap_or(u32::MAX).max(1);
    let timeout = Duration::from_millis(cfg.timeout_ms);
    {
        let d = dest.clone();
        if let Err(e) = cx.db.call(move |s| s.start_cursor(&d)).await {
            tracing::error!(error = %e, "cannot read the sink's delivery cursor");
            return;
        }
    }
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut failing = false;
    while !cx.shutdown.is_cancelled() {
        let d = dest.clone();
        let batch = match cx.db.read(move |s| s.pending(&d, limit)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                if sleep_or_stop(&cx.shutdown, backoff.failed(tokio::time::Instant::now())).await {
                    break;
                }
                continue;
            }
        };
        let Some(last) = batch.last().map(|e| e.seq) else {
            tokio::select! {
                () = cx.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = cx.shutdown.cancelled() => break,
            }
            continue;
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, sink.deliver(&batch)) => r.unwrap_or_else(|_| {
                Err(SinkError::Connection(format!("no confirmation within {} ms", cfg.timeout_ms)))
            }),
            () = cx.shutdown.cancelled() => break,
        };
        match outcome {
            Ok(()) => {
                let d = dest.clone();
                if let Err(e) = cx.db.call(move |s| s.acknowledge(&d, last)).await {
                    tracing::error!(error = %e, "cannot move the sink's cursor");
                }
                if failing {
                    tracing::info!(up_to = last, "the sink takes events again");
                    failing = false;
                }
                backoff.succeeded();
            }
            Err(e) => {
                // One warning per outage: a broker down for a night logs once.
                if !failing {
                    tracing::warn!(error = %e, events = batch.len(), "the sink did not take the events; retrying with backoff");
                }
                failing = true;
                sink.reset().await;
                if sleep_or_stop(&cx.shutdown, backoff.failed(tokio::time::Instant::now())).await {
                    break;
                }
            }
        }
    }
    sink.reset().await;
}

/// Sleeps `d`; true when shutdown came first.
async fn sleep_or_stop(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = shutdown.cancelled() => true,
    }
}

/// How much an event matters to a SOC, from its type and data: 0 (least) to 10.
pub(crate) fn importance(e: &OutboxEvent) -> u8 {
    let kind = e
        .event_type
        .strip_prefix("io.otdrift.")
        .unwrap_or(&e.event_type);
    match kind {
        "drift.detected" => match e.data.get("severity").and_then(|s| s.as_str()) {
            Some("high") => 8,
            _ => 6,
        },
        "approval.rejected"
        | "approval.rejections_suppressed"
        | "asset.verification_overdue"
        | "change.review_overdue" => 6,
        "asset.collection_failed"
        | "asset.unreachable"
        | "asset.stale"
        | "outbox.parked"
        | "outbox.lagging"
        | "drift.flapping" => 5,
        "baseline.moved"
        | "approval.superseded"
        | "approval.refused"
        | "setpoint.adjusted"
        | "asset.state_changed"
        | "agent.key" => 3,
        _ => 2,
    }
}
