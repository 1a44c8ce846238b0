//! `otdrift run`: the long-running gateway agent.
//!
//! ```text
//!            ┌─ cron job per asset ─► worker (owns the collector) ─┐
//! scheduler ─┤                         semaphore: max_concurrency   ├─► Db (one SQLite connection,
//!            └─ ...                                                 │    blocking threads)
//! audit-head ticker ────────────────────────────────────────────────┤
//! housekeeping: retention (hourly, small steps), delivery lag ──────┤
//! seen flush: quiet polls' seen-times, every seen_flush and at stop ┤
//! API (axum): /v1/events /v1/assets /v1/approvals /metrics ─────────┤
//! push worker: outbox ─► POST batches upstream, in order, retried ◄─┘ (woken by Notify)
//! ```
//!
//! Startup runs the checks of [`crate::preflight`] (the same `check-config` runs) and refuses
//! to start on any fatal one, and prints one ready line on stdout once every part is up. SIGTERM or SIGINT stops the schedule, lets
//! in-flight captures finish (or abandons them after a grace period: a capture is recorded in
//! one transaction only once complete, so nothing half-written remains), stops the push worker
//! between requests and the API between requests.

pub mod api;
pub mod backoff;
pub mod db;
pub mod housekeeping;
pub mod memory;
pub mod metrics;
pub mod push;
pub mod scheduler;
pub mod server;
pub mod sinks;
pub mod tls;
pub mod ui;
pub mod wake;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure};

/// How long in-flight captures get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often the daemon looks whether another process wrote to the database: what it wrote
/// (an approval, a capture) is judged by each asset's next poll after that look.
pub const OTHER_WRITERS: Duration = Duration::from_secs(2);

/// How long the push worker gets to deliver what is left (the last audit head) at shutdown;
/// anything not delivered stays in the outbox for the next start.
pub const FINAL_DELIVERY: Duration = Duration::from_secs(3);

/// Publishes the signed audit head (see [`crate::audit_head`]); a failure is logged, not fatal.
async fn publish_head(db: &db::Db, key: &ed25519_dalek::SigningKey, agent_id: &str) {
    let (key, agent_id) = (key.clone(), agent_id.to_owned());
    let published = db
        .call(move |s| {
            let now = s.clock().now();
            s.publish_audit_head(|head| crate::audit_head::signed_head(&key, &agent_id, head, now))
        })
        .await;
    match published {
        Ok(head) => tracing::debug!(head = ?head, "audit head published"),
        Err(e) => tracing::error!(error = %e, "cannot publish the audit head"),
    }
}

/// Writes the quiet polls kept in memory (one transaction); a failure is logged and they
/// stay for the next flush.
async fn flush_seen(db: &db::Db, metrics: &metrics::Metrics) {
    match db.call(|s| Ok((s.flush_seen(), s.seen_pending()))).await {
        Ok((written, pending)) => {
            metrics
                .seen_pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            match written {
                Ok(0) => {}
                Ok(n) => {
                    metrics.seen_flushes.inc();
                    tracing::debug!(assets = n, "seen-times flushed");
                }
                Err(e) => tracing::error!(error = %e, "cannot write the seen-times"),
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot write the seen-times"),
    }
}

async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> CmdResult {
    let (config, digest) = crate::context::load_config(config_path)?;
    // Every check `check-config` makes too (one function), before anything is written.
    let (secrets, problems) = crate::preflight::check(&config);
    for p in problems.iter().filter(|p| !p.fatal) {
        tracing::warn!(key = %p.key, "{}", p.message);
    }
    let fatal: Vec<String> = problems
        .iter()
        .filter(|p| p.fatal)
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    if !fatal.is_empty() {
        let error = anyhow!(
            "refusing to start ({}):\n{}",
            crate::context::plural(fatal.len(), "problem"),
            fatal.join("\n")
        );
        // Secrets and settings are the operator's config (exit 2); the data dir and the agent
        // key are the machine's state (exit 1, as for every other command).
        let config_problem = problems
            .iter()
            .any(|p| p.fatal && !p.key.starts_with("agent."));
        return Err(if config_problem {
            Failure::usage(error)
        } else {
            Failure::runtime(error)
        });
    }
    let agent = Agent::with_config(config, &digest)?;
    let config = Arc::new(agent.config.clone());
    let key = agent.key.clone();
    // rustls needs a process-wide crypto provider; ring is small and builds anywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let crate::preflight::Secrets {
        api_token,
        approve_token,
        upstream_token,
        api_tls,
    } = secrets;

    let clock = agent.store.clock().clone();
    // The API reads on a connection of its own (WAL: readers never wait for the writer).
    let db_path = config.agent.data_dir.join(crate::context::DB_FILE);
    // Quiet polls wait in memory for the seen flush; the reader shows them.
    let mut store = agent.store;
    store
        .defer_seen(true)
        .map_err(|e| Failure::runtime(anyhow!(e).context("cannot prepare the store")))?;
    let db = match otdrift_store::Store::open_read_only(&db_path, clock.clone()) {
        Ok(mut reader) => {
            store.share_seen(&mut reader);
            db::Db::with_reader(store, reader)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no read-only connection; the API reads on the writer's");
            db::Db::new(store)
        }
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let events = Arc::new(wake::Wake::default());
    // Two stops: captures and tickers stop first; delivery (push, API) a moment later, so the
    // last audit head still leaves the gateway.
    let shutdown = CancellationToken::new();
    let delivery = CancellationToken::new();

    // Who we are, and where the log stands, before anything else happens.
    {
        let announce = crate::audit_head::key_announcement(&key, &config.agent.id);
        db.call(move |s| {
            s.enqueue_event(otdrift_store::event_type::AGENT_KEY, None, &announce)
                .map(|_| ())
        })
        .await
        .map_err(|e| Failure::runtime(anyhow!(e).context("cannot announce the agent key")))?;
        publish_head(&db, &key, &config.agent.id).await;
    }
    let mut tasks = tokio::task::JoinSet::new();

    // The API first: a port that cannot be bound is a configuration problem, said at once.
    let mut api_addr = None;
    if let (Some(api), Some(token)) = (&config.api, &api_token) {
        let listener = tokio::net::TcpListener::bind(api.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([api] listen)", api.listen))
            .map_err(Failure::runtime)?;
        api_addr = listener.local_addr().ok();
        let state = api::ApiState {
            db: db.clone(),
            config: config.clone(),
            token_hash: *otdrift_core::Digest::of(token.as_bytes()).as_bytes(),
            approve_token_hash: approve_token
                .as_ref()
                .map(|t| *otdrift_core::Digest::of(t.as_bytes()).as_bytes()),
            metrics: metrics.clone(),
            events: events.clone(),
            agent_key: crate::keys::public_key_text(&key.verifying_key()),
            auth_limiter: Arc::new(server::AuthLimiter::new(clock.clone())),
            ui_sessions: Arc::default(),
            tls: api_tls.is_some(),
        };
        let stop = delivery.clone();
        let max_connections = api.max_connections;
        let metrics = metrics.clone();
        tasks.spawn(async move {
            server::serve(
                listener,
                api::router(state),
                max_connections,
                api_tls,
                metrics,
                stop,
            )
            .await;
        });
    }

    if let Some(up) = &config.upstream {
        let cfg = push::PushConfig {
            url: up.url.clone(),
            token: upstream_token,
            batch_size: u32::try_from(up.batch_size).unwrap_or(u32::MAX),
            timeout: Duration::from_millis(up.timeout_ms),
            agent_id: config.agent.id.clone(),
        };
        tasks.spawn(push::run(
            cfg,
            db.clone(),
            events.subscribe(),
            metrics.clone(),
            clock.clone(),
            delivery.clone(),
        ));
    }

    for sink in &config.sinks {
        tasks.spawn(sinks::run(
            sink.clone(),
            sinks::SinkContext {
                agent_id: config.agent.id.clone(),
                db: db.clone(),
                wake: events.subscribe(),
                shutdown: delivery.clone(),
            },
        ));
    }

    // The audit chain's head, signed, every interval (and at start and shutdown, around this).
    {
        let db = db.clone();
        let events = events.clone();
        let stop = shutdown.clone();
        let key = key.clone();
        let agent_id = config.agent.id.clone();
        let every = Duration::from_secs(config.agent.audit_head_interval_secs);
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        publish_head(&db, &key, &agent_id).await;
                        events.queued();
                    }
                    () = stop.cancelled() => break,
                }
            }
        });
    }

    // Once a minute: rejected approval tokens beyond the per-source threshold are summarised,
    // and emergency changes whose review window passed become overdue.
    {
        let db = db.clone();
        let events = events.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let every = Duration::from_secs(60);
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        match db.call(|s| s.flush_rejection_summaries()).await {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::warn!(sources = n, "rejected approval tokens were rate-limited");
                                events.queued();
                            }
                            Err(e) => tracing::error!(error = %e, "cannot summarise rejections"),
                        }
                        // Emergency changes whose review window has passed.
                        match db.call(|s| s.check_reviews()).await {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::warn!(changes = n, "emergency change review overdue");
                                events.queued();
                            }
                            Err(e) => tracing::error!(error = %e, "cannot check reviews"),
                        }
                    }
                    () = stop.cancelled() => break,
                }
            }
        });
    }

    // Quiet polls' seen-times, in one transaction every `seen_flush` (and at shutdown below);
    // and every OTHER_WRITERS a look whether another process (`otdrift capture`, `approve`)
    // committed, which ends the quiet path's memos (`otdrift_store::QuietPath`).
    {
        let db = db.clone();
        let metrics = metrics.clone();
        let stop = shutdown.clone();
        let every = config.agent.seen_flush;
        tasks.spawn(async move {
            let start = tokio::time::Instant::now();
            let mut ticker = tokio::time::interval_at(start + every, every);
            let mut others = tokio::time::interval_at(start + OTHER_WRITERS, OTHER_WRITERS);
            others.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => flush_seen(&db, &metrics).await,
                    _ = others.tick() => {
                        if let Err(e) = db.call(|s| s.notice_other_writers()).await {
                            tracing::error!(error = %e, "cannot look for other writers");
                        }
                    }
                    () = stop.cancelled() => break,
                }
            }
        });
    }

    // Retention (hourly, in small steps) and delivery lag (every ten minutes).
    tasks.spawn(housekeeping::run(
        config.clone(),
        db.clone(),
        metrics.clone(),
        events.clone(),
        shutdown.clone(),
    ));

    let (pool, source) = memory::pool_size(config.agent.memory_budget, memory::cgroup_memory_max());
    let budget = otdrift_protocols::MemoryBudget::new(pool);
    metrics.watch_budget(budget.clone());
    tracing::info!(
        bytes = pool,
        from = source.as_str(),
        "memory budget for captures: {}",
        otdrift_protocols::budget::format_bytes(pool)
    );
    let shared = Arc::new(scheduler::Shared {
        budget,
        db: db.clone(),
        metrics: metrics.clone(),
        permits: Arc::new(Semaphore::new(config.agent.max_concurrency)),
        events: events.clone(),
        shutdown: shutdown.clone(),
        backoff_max: Duration::from_secs(config.agent.backoff_max_secs),
        verify_max_age: config.agent.verify_max_age,
        data_dir: config.agent.data_dir.clone(),
    });
    let sched =
        scheduler::Scheduler::start(&config, shared).map_err(|e| Failure::runtime(anyhow!(e)))?;

    println!(
        "otdrift running: agent {}, {} asset(s), api {}, upstream {}",
        config.agent.id,
        config.assets.len(),
        api_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        config.upstream.as_ref().map_or("off", |u| u.url.as_str())
    );
    tracing::info!(assets = config.assets.len(), "running");
    // Under systemd (Type=notify) this is the readiness signal; elsewhere it does nothing.
    let status = format!("watching {} asset(s)", config.assets.len());
    if let Err(e) = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }

    let got = signal().await;
    tracing::info!(signal = got, "shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    sched.stop(SHUTDOWN_GRACE).await;
    // The last window of quiet polls, before the audit head.
    flush_seen(&db, &metrics).await;
    // The log's last word before the agent stops, then a short chance to deliver it.
    publish_head(&db, &key, &config.agent.id).await;
    events.queued();
    if config.upstream.is_some() {
        let drained = async {
            while db.call(|s| s.outbox_depth()).await.is_ok_and(|d| d > 0) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let _ = tokio::time::timeout(FINAL_DELIVERY, drained).await;
    }
    delivery.cancel();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("some tasks did not stop in time");
    }
    tracing::info!("stopped");
    Ok(Exit::Ok)
}
