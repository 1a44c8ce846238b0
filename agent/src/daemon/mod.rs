//! `otdrift run`: the long-running gateway agent.
//!
//! ```text
//!            ┌─ cron job per asset ─► worker (owns the collector) ─┐
//! scheduler ─┤                         semaphore: max_concurrency   ├─► Db (one SQLite connection,
//!            └─ ...                                                 │    blocking threads)
//! audit-head ticker ────────────────────────────────────────────────┤
//! API (axum): /v1/events /v1/assets /v1/approvals /metrics ─────────┤
//! push worker: outbox ─► POST batches upstream, in order, retried ◄─┘ (woken by Notify)
//! ```
//!
//! Startup refuses to run with a token file that group or others can read, and prints one
//! ready line on stdout once every part is up. SIGTERM or SIGINT stops the schedule, lets
//! in-flight captures finish (or abandons them after a grace period: a capture is recorded in
//! one transaction only once complete, so nothing half-written remains), stops the push worker
//! between requests and the API between requests.

pub mod api;
pub mod backoff;
pub mod db;
pub mod metrics;
pub mod push;
pub mod scheduler;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure};

/// How long in-flight captures get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Reads a secret token file, refusing one that group or others can read.
pub fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the {what} token file {}", path.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "the {what} token file {} is readable by group or others (mode {:03o}); \
                 refusing to start: run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} token file {}", path.display()))?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the {what} token file {} is empty", path.display());
    }
    if token.len() < 16 {
        bail!(
            "the {what} token in {} is shorter than 16 characters; use a long random token",
            path.display()
        );
    }
    Ok(token)
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
    let agent = Agent::open(config_path)?;
    let config = Arc::new(agent.config.clone());
    // rustls needs a process-wide crypto provider; ring is small and builds anywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let api_token = match &config.api {
        Some(api) => Some(read_secret(&api.token_file, "API").map_err(Failure::usage)?),
        None => None,
    };
    let upstream_token = match config.upstream.as_ref().and_then(|u| u.token_file.as_ref()) {
        Some(path) => Some(read_secret(path, "upstream").map_err(Failure::usage)?),
        None => None,
    };

    let db = db::Db::new(agent.store);
    let metrics = Arc::new(metrics::Metrics::new());
    let events = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
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
            metrics: metrics.clone(),
            events: events.clone(),
        };
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, api::router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "API server stopped");
            }
        });
    }

    if let Some(up) = &config.upstream {
        if up.url.starts_with("http://") {
            tracing::warn!(url = %up.url, "events are pushed without TLS");
        }
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
            events.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }

    // The audit chain's head, published periodically.
    {
        let db = db.clone();
        let events = events.clone();
        let stop = shutdown.clone();
        let every = Duration::from_secs(config.agent.audit_head_interval_secs);
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        match db.call(|s| s.publish_audit_head()).await {
                            Ok(head) => tracing::debug!(head = ?head, "audit head published"),
                            Err(e) => tracing::error!(error = %e, "cannot publish the audit head"),
                        }
                        events.notify_one();
                    }
                    () = stop.cancelled() => break,
                }
            }
        });
    }

    let shared = Arc::new(scheduler::Shared {
        db: db.clone(),
        metrics: metrics.clone(),
        permits: Arc::new(Semaphore::new(config.agent.max_concurrency)),
        events: events.clone(),
        shutdown: shutdown.clone(),
        backoff_max: Duration::from_secs(config.agent.backoff_max_secs),
        data_dir: config.agent.data_dir.clone(),
    });
    let sched = scheduler::Scheduler::start(&config.assets, shared)
        .await
        .map_err(|e| Failure::runtime(anyhow!(e)))?;

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
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("some tasks did not stop in time");
    }
    tracing::info!("stopped");
    Ok(Exit::Ok)
}
