//! Housekeeping: retention and delivery lag, so that five years on one gateway fit on its
//! flash (`[retention]`, [`otdrift_store::Retention`]).
//!
//! Every hour the store deletes what nothing needs any more, in steps of [`BATCH`] rows so
//! that a capture never waits long behind it; the database connection is free between steps.
//! Every ten minutes an upstream whose oldest unacknowledged event is more than [`MAX_LAG`]
//! old is announced (`io.otdrift.outbox.lagging`, once per episode).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use otdrift_config::Config;
use otdrift_store::{Pruned, Retention, UPSTREAM};
use tokio_util::sync::CancellationToken;

use super::db::Db;
use super::metrics::{KindLabel, Metrics};

/// Rows of each kind one pruning step deletes.
pub const BATCH: u32 = 500;
/// How far behind a destination may fall before it is announced.
pub const MAX_LAG: TimeDelta = TimeDelta::days(1);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often delivery lag is checked.
const LAG_EVERY: Duration = Duration::from_secs(600);
/// The most steps of one run; the next run goes on where this one stopped.
const MAX_STEPS: u32 = 2_000;

/// The store's retention rules from the config.
pub fn retention(config: &Config) -> Retention {
    let days = |d: Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
    Retention {
        outbox: days(config.retention.outbox),
        captures: days(config.retention.captures),
        destinations: destinations(config),
        batch: BATCH,
    }
}

fn destinations(config: &Config) -> Vec<String> {
    config
        .upstream
        .iter()
        .map(|_| UPSTREAM.to_owned())
        .chain(config.sinks.iter().map(super::sinks::destination))
        .collect()
}

/// One retention run: steps until nothing is left (or [`MAX_STEPS`]), then one audit entry.
pub async fn prune(db: &Db, retention: &Retention, metrics: &Metrics) -> Pruned {
    let mut total = Pruned::default();
    for _ in 0..MAX_STEPS {
        let r = retention.clone();
        match db.call(move |s| s.prune_step(&r)).await {
            Ok(step) if step.is_empty() => break,
            Ok(step) => total.add(step),
            Err(e) => {
                tracing::error!(error = %e, "retention step failed");
                break;
            }
        }
        // Let captures and the API in between steps.
        tokio::task::yield_now().await;
    }
    for (kind, n) in [
        ("outbox", total.outbox),
        ("captures", total.captures),
        ("snapshots", total.snapshots),
    ] {
        metrics
            .pruned
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc_by(n);
    }
    if !total.is_empty() {
        tracing::info!(
            outbox = total.outbox,
            captures = total.captures,
            snapshots = total.snapshots,
            "retention pruned"
        );
        if let Err(e) = db.call(move |s| s.record_pruned(total)).await {
            tracing::error!(error = %e, "cannot audit the retention run");
        }
    }
    total
}

/// Runs retention and lag checks until `stop`.
pub async fn run(
    config: Arc<Config>,
    db: Db,
    metrics: Arc<Metrics>,
    events: Arc<super::wake::Wake>,
    stop: CancellationToken,
) {
    let retention = retention(&config);
    let destinations = destinations(&config);
    let now = tokio::time::Instant::now();
    // The first run a minute after start, out of the way of the first captures.
    let mut prune_ticker = tokio::time::interval_at(now + Duration::from_secs(60), PRUNE_EVERY);
    let mut lag_ticker = tokio::time::interval_at(now + LAG_EVERY, LAG_EVERY);
    loop {
        tokio::select! {
            _ = prune_ticker.tick() => {
                prune(&db, &retention, &metrics).await;
            }
            _ = lag_ticker.tick() => {
                let d = destinations.clone();
                match db.call(move |s| s.check_delivery_lag(&d, MAX_LAG)).await {
                    Ok(lagging) => {
                        metrics.delivery_lagging.set(i64::from(!lagging.is_empty()));
                        if !lagging.is_empty() {
                            tracing::warn!(destinations = ?lagging, "delivery is more than a day behind");
                            events.queued();
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot check delivery lag"),
                }
            }
            () = stop.cancelled() => break,
        }
    }
}
