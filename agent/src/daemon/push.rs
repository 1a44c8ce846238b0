//! Pushing the outbox upstream: delivery that cannot stall and cannot lie.
//!
//! Batches of the events after the upstream's cursor are POSTed as a CloudEvents JSON batch
//! with the configured bearer token. What the receiver answers decides what happens:
//!
//! | answer | what the agent does |
//! |---|---|
//! | 2xx | the batch is acknowledged: the cursor moves to its last event |
//! | 3xx | a failure: redirects are never followed (a POST turned into a GET would "deliver" nothing); logged with the `Location`, retried with backoff |
//! | 401, 403 | delivery pauses (`otdrift_upstream_paused` 1, `otdrift outbox`, `GET /v1/outbox`); re-checked every [`AUTH_RECHECK`] and at every start by sending the next batch again |
//! | 413, 422, 400 for a batch of several | the batch is halved and the halves are sent in order, down to single events |
//! | 413, 422, 400 for one event | the event is **parked** (kept, listed, announced as `io.otdrift.outbox.parked`, retried by `otdrift outbox --retry`) and the cursor moves past it: later events flow on |
//! | 429 | retried after `Retry-After` (seconds or an HTTP date, at most [`RETRY_AFTER_CAP`]), never sooner than the backoff |
//! | 5xx, 408, any other status, a transport error | retried with exponential backoff and jitter (1 s doubling to 60 s) |
//!
//! Order holds for every event not parked: a batch goes only after the one before it was
//! acknowledged or parked. A receiver that refuses [`PARK_STREAK_LIMIT`] single events in a
//! row without accepting one in between is treated as refusing everything (a wrong URL or
//! schema answering 400): delivery pauses instead of parking the whole outbox.
//!
//! Parked events queued for a retry are sent one at a time before the next regular batch, so
//! they arrive out of their original order (their `otdriftseq` says where they belong).
//!
//! The cursor lives in the store (`delivery_cursors`), so a restart or a killed process
//! resumes where the receiver last acknowledged; a batch that was received but not
//! acknowledged is sent again with the same CloudEvents ids, which is what receivers
//! de-duplicate on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use otdrift_core::Clock;
use otdrift_store::{DeliveryRefusal, OutboxEvent, UPSTREAM};
use reqwest::StatusCode;
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

/// How often a paused delivery (401/403, or a receiver refusing everything) is tried again.
pub const AUTH_RECHECK: Duration = Duration::from_secs(300);

/// The longest `Retry-After` honoured: a receiver cannot silence the agent for a day.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Single events refused in a row, with none accepted in between, after which the receiver
/// is taken to refuse everything and delivery pauses instead of parking further events.
pub const PARK_STREAK_LIMIT: u32 = 10;

/// The most of a receiver's answer body read, for logs and parked events.
const ANSWER_EXCERPT: usize = 1024;

/// What one POST came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Accepted,
    /// The receiver refused the content (413, 422, 400): split, or park a single event.
    Refused {
        /// The HTTP status.
        status: u16,
        /// `too-large`, `unprocessable`, `bad-request`.
        reason: &'static str,
        /// What the receiver said.
        message: String,
    },
    /// The receiver refused our credentials (401, 403): pause.
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// What the receiver said.
        message: String,
    },
    /// Anything else: try the same batch again later.
    RetryLater {
        /// For the log.
        reason: String,
        /// The receiver's `Retry-After`, capped.
        retry_after: Option<Duration>,
    },
}

/// Parses `Retry-After` (delay seconds, or an HTTP date) relative to `now`, capped at
/// [`RETRY_AFTER_CAP`]. A date in the past is no wait; anything unreadable is ignored.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

/// Decides what an answer means (the table in the module docs). `location` and `retry_after`
/// are the headers of that name, `message` the start of the body.
pub fn classify(
    status: StatusCode,
    location: Option<&str>,
    retry_after_header: Option<&str>,
    message: &str,
    now: DateTime<Utc>,
) -> Verdict {
    let code = status.as_u16();
    let said = if message.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", message.trim())
    };
    match code {
        200..=299 => Verdict::Accepted,
        300..=399 => Verdict::RetryLater {
            reason: format!(
                "the receiver answered {status} redirecting to {}; redirects are not followed (a POST would lose its body): set [upstream] url to the new address",
                location.unwrap_or("(no Location)")
            ),
            retry_after: None,
        },
        401 | 403 => Verdict::Unauthorized {
            status: code,
            message: format!("the receiver answered {status}{said}"),
        },
        400 | 413 | 422 => Verdict::Refused {
            status: code,
            reason: match code {
                413 => "too-large",
                422 => "unprocessable",
                _ => "bad-request",
            },
            message: message.trim().to_owned(),
        },
        429 => Verdict::RetryLater {
            reason: format!("the receiver answered {status}{said}"),
            retry_after: retry_after_header.and_then(|v| retry_after(v, now)),
        },
        _ => Verdict::RetryLater {
            reason: format!("the receiver answered {status}{said}"),
            retry_after: None,
        },
    }
}

/// Runs until `shutdown`.
pub async fn run(
    cfg: PushConfig,
    db: Db,
    events: Arc<Notify>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("otdrift/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; events stay in the outbox");
            return;
        }
    };
    let mut worker = Worker {
        limit: cfg.batch_size.max(1),
        cfg,
        client,
        db,
        metrics,
        clock,
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        park_streak: 0,
        paused_until: None,
    };
    // A pause recorded by an earlier run is re-checked at once: a restart is how an operator
    // says "the credentials changed".
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        worker.refresh_metrics().await;
        if let Some(until) = worker.paused_until {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = shutdown.cancelled() => break,
            }
            worker.paused_until = None;
        }
        let wait = match worker.step().await {
            Step::Again => continue,
            Step::Idle => {
                tokio::select! {
                    () = events.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            Step::Wait(d) => d,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => break,
        }
    }
}

/// What the loop does after a step.
enum Step {
    /// Send the next batch now.
    Again,
    /// Nothing to send: wait for a new event.
    Idle,
    /// Back off this long.
    Wait(Duration),
}

struct Worker {
    cfg: PushConfig,
    client: reqwest::Client,
    db: Db,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    /// Events per request now: halved on a content refusal, back to `batch_size` once the
    /// refused event is parked.
    limit: u32,
    /// Single events parked in a row with none accepted in between.
    park_streak: u32,
    /// While paused: when to try again.
    paused_until: Option<tokio::time::Instant>,
}

impl Worker {
    async fn refresh_metrics(&self) {
        if let Ok(state) = self.db.call(|s| s.delivery_state(UPSTREAM)).await {
            let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.metrics.outbox_depth.set(gauge(state.depth));
            self.metrics.outbox_parked.set(gauge(state.parked));
            self.metrics
                .upstream_paused
                .set(i64::from(state.paused.is_some()));
        }
    }

    /// One request: a queued retry if there is one, else the next batch.
    async fn step(&mut self) -> Step {
        let retry = match self.db.call(|s| s.queued_retries(UPSTREAM, 1)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return Step::Wait(IDLE_POLL);
            }
        };
        if let Some(event) = retry.into_iter().next() {
            return self.retry(event).await;
        }
        let limit = self.limit;
        let batch = match self.db.call(move |s| s.pending(UPSTREAM, limit)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return Step::Wait(IDLE_POLL);
            }
        };
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Step::Idle;
        };
        let (first, last, n) = (first.seq, last.seq, batch.len());
        match self.send(&batch).await {
            Verdict::Accepted => {
                if let Err(e) = self.db.call(move |s| s.acknowledge(UPSTREAM, last)).await {
                    tracing::error!(error = %e, up_to = last, "delivered, but cannot record it");
                    return Step::Wait(IDLE_POLL);
                }
                self.metrics.events_pushed.inc_by(n as u64);
                self.backoff.succeeded();
                self.park_streak = 0;
                tracing::debug!(events = n, up_to = last, "pushed");
                Step::Again
            }
            Verdict::Refused {
                status, message, ..
            } if n > 1 => {
                self.metrics.push_failures.inc();
                self.limit = u32::try_from(n.div_ceil(2)).unwrap_or(1);
                tracing::warn!(
                    url = %self.cfg.url, status, events = n, from = first, to = last,
                    next_batch = self.limit,
                    "the receiver refused a batch; sending it in smaller parts to find the event it refuses: {message}"
                );
                Step::Again
            }
            Verdict::Refused {
                status,
                reason,
                message,
            } => {
                self.metrics.push_failures.inc();
                if self.park_streak >= PARK_STREAK_LIMIT {
                    let why = format!(
                        "the receiver refused {} events in a row ({status}{}); it seems to refuse everything: check [upstream] url and the receiver",
                        self.park_streak + 1,
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(": {message}")
                        }
                    );
                    return self.pause(why, status).await;
                }
                let refusal_message = message.clone();
                let parked = self
                    .db
                    .call(move |s| {
                        s.park(
                            UPSTREAM,
                            first,
                            &DeliveryRefusal {
                                reason,
                                http_status: Some(status),
                                message: &refusal_message,
                            },
                        )
                    })
                    .await;
                match parked {
                    Ok(_) => {
                        self.metrics.events_parked.inc();
                        self.park_streak += 1;
                        self.limit = self.cfg.batch_size.max(1);
                        tracing::error!(
                            url = %self.cfg.url, seq = first, status, reason,
                            "the receiver refused event {first} on its own; parked it (otdrift outbox --parked, --retry {first}); later events go on: {message}"
                        );
                        Step::Again
                    }
                    Err(e) => {
                        tracing::error!(error = %e, seq = first, "cannot park the refused event");
                        Step::Wait(IDLE_POLL)
                    }
                }
            }
            Verdict::Unauthorized { status, message } => self.pause(message, status).await,
            Verdict::RetryLater {
                reason,
                retry_after,
            } => self.failed(&reason, retry_after, n),
        }
    }

    /// Sends one parked event again, as asked by `otdrift outbox --retry`.
    async fn retry(&mut self, event: OutboxEvent) -> Step {
        let seq = event.seq;
        match self.send(std::slice::from_ref(&event)).await {
            Verdict::Accepted => {
                if let Err(e) = self
                    .db
                    .call(move |s| s.retry_delivered(UPSTREAM, seq))
                    .await
                {
                    tracing::error!(error = %e, seq, "delivered, but cannot record it");
                    return Step::Wait(IDLE_POLL);
                }
                self.metrics.events_pushed.inc();
                self.backoff.succeeded();
                tracing::info!(seq, "a parked event was delivered on retry");
                Step::Again
            }
            Verdict::Refused {
                status,
                reason,
                message,
            } => {
                self.metrics.push_failures.inc();
                let text = message.clone();
                let stored = self
                    .db
                    .call(move |s| {
                        s.retry_refused(
                            UPSTREAM,
                            seq,
                            &DeliveryRefusal {
                                reason,
                                http_status: Some(status),
                                message: &text,
                            },
                        )
                    })
                    .await;
                if let Err(e) = stored {
                    tracing::error!(error = %e, seq, "cannot record the refused retry");
                    return Step::Wait(IDLE_POLL);
                }
                tracing::error!(
                    seq,
                    status,
                    "the receiver refused the retried event again; it stays parked: {message}"
                );
                Step::Again
            }
            Verdict::Unauthorized { status, message } => self.pause(message, status).await,
            Verdict::RetryLater {
                reason,
                retry_after,
            } => self.failed(&reason, retry_after, 1),
        }
    }

    fn failed(&mut self, reason: &str, retry_after: Option<Duration>, events: usize) -> Step {
        self.metrics.push_failures.inc();
        let backoff = self.backoff.failed(tokio::time::Instant::now());
        let wait = retry_after.map_or(backoff, |r| r.max(backoff));
        tracing::warn!(
            url = %self.cfg.url,
            events,
            retry_in_ms = wait.as_millis() as u64,
            "push failed: {reason}"
        );
        Step::Wait(wait)
    }

    async fn pause(&mut self, reason: String, status: u16) -> Step {
        self.metrics.push_failures.inc();
        self.metrics.upstream_paused.set(1);
        let why = reason.clone();
        match self
            .db
            .call(move |s| s.pause_delivery(UPSTREAM, &why, Some(status)))
            .await
        {
            Ok(true) => tracing::error!(
                url = %self.cfg.url, status,
                recheck_in_s = AUTH_RECHECK.as_secs(),
                "delivery upstream paused: {reason}; it is tried again every {} s and at every start (check [upstream] token_file and the receiver)",
                AUTH_RECHECK.as_secs()
            ),
            Ok(false) => {
                tracing::warn!(url = %self.cfg.url, status, "delivery upstream still paused: {reason}")
            }
            Err(e) => tracing::error!(error = %e, "cannot record the paused delivery"),
        }
        self.paused_until = Some(tokio::time::Instant::now() + AUTH_RECHECK);
        Step::Again
    }

    async fn send(&self, batch: &[OutboxEvent]) -> Verdict {
        let body: Vec<serde_json::Value> = batch
            .iter()
            .map(|e| cloud_event(&self.cfg.agent_id, e))
            .collect();
        let body = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(e) => {
                return Verdict::RetryLater {
                    reason: format!("cannot encode the batch: {e}"),
                    retry_after: None,
                };
            }
        };
        let mut request = self
            .client
            .post(&self.cfg.url)
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .body(body);
        if let Some(token) = &self.cfg.token {
            request = request.bearer_auth(token);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Verdict::RetryLater {
                    reason: format!("cannot reach the receiver: {e}"),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(reqwest::header::LOCATION);
        let retry_after = header(reqwest::header::RETRY_AFTER);
        // Only the start of the answer: a receiver's error page can be large.
        let mut excerpt = Vec::new();
        if !status.is_success() {
            while excerpt.len() < ANSWER_EXCERPT {
                match response.chunk().await {
                    Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                    _ => break,
                }
            }
        }
        let text = String::from_utf8_lossy(&excerpt);
        let text = otdrift_store::cut_text(&text, ANSWER_EXCERPT);
        classify(
            status,
            location.as_deref(),
            retry_after.as_deref(),
            text,
            self.clock.now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        otdrift_core::parse_timestamp("2026-12-02T08:00:00Z").expect("time")
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        assert_eq!(retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 120 ", now()), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("86400", now()), Some(RETRY_AFTER_CAP));
        assert_eq!(
            retry_after("Wed, 02 Dec 2026 08:00:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 02 Dec 2026 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after("Thu, 03 Dec 2026 08:00:00 GMT", now()),
            Some(RETRY_AFTER_CAP)
        );
        assert_eq!(retry_after("soon", now()), None);
        assert_eq!(retry_after("-5", now()), None);
    }

    #[test]
    fn answers_are_classified_as_the_table_says() {
        let c = |code: u16, location: Option<&str>, ra: Option<&str>| {
            classify(
                StatusCode::from_u16(code).expect("status"),
                location,
                ra,
                "why",
                now(),
            )
        };
        assert_eq!(c(200, None, None), Verdict::Accepted);
        assert_eq!(c(204, None, None), Verdict::Accepted);
        for code in [301, 302, 303, 307, 308] {
            let Verdict::RetryLater {
                reason,
                retry_after,
            } = c(code, Some("https://new.example/e"), None)
            else {
                panic!("{code} must be a failure");
            };
            assert!(reason.contains("https://new.example/e"), "{reason}");
            assert_eq!(retry_after, None);
        }
        assert!(matches!(
            c(401, None, None),
            Verdict::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            c(403, None, None),
            Verdict::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            c(413, None, None),
            Verdict::Refused {
                reason: "too-large",
                ..
            }
        ));
        assert!(matches!(
            c(422, None, None),
            Verdict::Refused {
                reason: "unprocessable",
                ..
            }
        ));
        assert!(matches!(
            c(400, None, None),
            Verdict::Refused {
                reason: "bad-request",
                ..
            }
        ));
        assert_eq!(
            c(429, None, Some("30")),
            Verdict::RetryLater {
                reason: "the receiver answered 429 Too Many Requests: why".into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        );
        for code in [404, 408, 500, 502, 503] {
            assert!(
                matches!(
                    c(code, None, Some("30")),
                    Verdict::RetryLater {
                        retry_after: None,
                        ..
                    }
                ),
                "{code}"
            );
        }
    }
}
