//! Pushing the outbox upstream.
//!
//! Batches of the oldest undelivered events are POSTed as a CloudEvents JSON batch with the
//! configured bearer token. A batch is marked delivered only after a 2xx; anything else is
//! retried, with exponential backoff and jitter (1 s doubling to 60 s), before any newer event
//! is sent, so the receiver sees events in order. Because delivery state lives in the outbox
//! table, a restart (or a killed process) resumes where the receiver last acknowledged; a
//! batch that was received but not acknowledged is sent again with the same event ids, which
//! is what receivers de-duplicate on.

use std::sync::Arc;
use std::time::Duration;

use otdrift_store::OutboxEvent;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::db::Db;
use super::metrics::Metrics;
use crate::events::{BATCH_CONTENT_TYPE, cloud_event};

/// How the push worker is set up.
pub struct PushConfig {
    /// The receiver.
    pub url: String,
    /// Bearer token, when the receiver wants one.
    pub token: Option<String>,
    /// Events per request.
    pub batch_size: u32,
    /// Deadline of one request.
    pub timeout: Duration,
    /// This agent's id (event sources).
    pub agent_id: String,
}

/// How often the worker looks at the outbox when nothing woke it.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Runs until `shutdown`.
pub async fn run(
    cfg: PushConfig,
    db: Db,
    events: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .user_agent(concat!("otdrift/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; events stay in the outbox");
            return;
        }
    };
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let limit = cfg.batch_size;
        let batch: Vec<OutboxEvent> = match db
            .call(move |s| s.pending(otdrift_store::UPSTREAM, limit))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                wait(&shutdown, &events, IDLE_POLL).await;
                continue;
            }
        };
        if let Ok(depth) = db.call(|s| s.outbox_depth()).await {
            metrics
                .outbox_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        let Some(last) = batch.last().map(|e| e.seq) else {
            wait(&shutdown, &events, IDLE_POLL).await;
            continue;
        };
        let body: Vec<serde_json::Value> = batch
            .iter()
            .map(|e| cloud_event(&cfg.agent_id, e))
            .collect();
        let mut request = client
            .post(&cfg.url)
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .body(serde_json::to_vec(&body).unwrap_or_default());
        if let Some(token) = &cfg.token {
            request = request.bearer_auth(token);
        }
        let sent = tokio::select! {
            r = request.send() => r,
            () = shutdown.cancelled() => break,
        };
        let failure = match sent {
            Ok(resp) if resp.status().is_success() => {
                match db
                    .call(move |s| s.acknowledge(otdrift_store::UPSTREAM, last))
                    .await
                {
                    Ok(_) => {
                        metrics.events_pushed.inc_by(batch.len() as u64);
                        backoff.succeeded();
                        tracing::debug!(events = batch.len(), up_to = last, "pushed");
                        continue;
                    }
                    Err(e) => format!("delivered, but cannot mark it: {e}"),
                }
            }
            Ok(resp) => format!("the receiver answered {}", resp.status()),
            Err(e) => format!("cannot reach the receiver: {e}"),
        };
        metrics.push_failures.inc();
        let retry = backoff.failed(tokio::time::Instant::now());
        tracing::warn!(
            url = %cfg.url,
            events = batch.len(),
            retry_in_ms = retry.as_millis() as u64,
            "push failed: {failure}"
        );
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = shutdown.cancelled() => break,
        }
    }
}

async fn wait(shutdown: &CancellationToken, events: &Notify, idle: Duration) {
    tokio::select! {
        () = events.notified() => {}
        () = tokio::time::sleep(idle) => {}
        () = shutdown.cancelled() => {}
    }
}
