//! Polling: one ticker per asset sleeps until the next firing of its schedule (croner computes
//! it, seconds precision) and ticks that asset's worker; a semaphore bounds how many assets
//! are captured at once. A ticker is a sleeping timer between firings: no scheduler loop
//! wakes up for assets that are not due (docs/decisions/0009-per-asset-tickers.md).
//!
//! Each worker owns its asset's collector, so the PLC connection is reused from poll to poll.
//! A tick that arrives while the asset's previous capture still runs is skipped and counted
//! (`otdrift_schedule_missed_total`): captures never queue up behind a slow device. An
//! unreachable asset is backed off exponentially with jitter (1 s doubling up to
//! `backoff_max_secs`); ticks inside the backoff are skipped and counted. Reachability changes
//! are events once per outage, not per failed poll (the store decides that).
//!
//! Captures share one memory budget (`otdrift_protocols::budget`). A capture that gives way in
//! it (another, larger one waits for the pool) is *deferred*: nothing is recorded or
//! announced, it is counted (`otdrift_captures_deferred_total`), and the worker polls again
//! after a short backoff (2 s doubling up to a minute, with jitter), or at the next tick if
//! that comes first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use otdrift_config::AssetConfig;
use otdrift_protocols::{CollectError, Collector, ErrorKind};
use otdrift_store::{DriftOutcome, VerificationCheck};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::Backoff;
use super::db::Db;
use super::metrics::Metrics;
use crate::capture;

/// The first retry of a deferred poll; doubling per deferral in a row.
const DEFER_FIRST: Duration = Duration::from_secs(2);
/// The longest pause before a deferred poll is retried.
const DEFER_MAX: Duration = Duration::from_secs(60);
/// Captures of at most this many items are hashed on the worker itself (well under a
/// millisecond); larger ones on a blocking thread.
const INLINE_HASH_ITEMS: usize = 2_000;

/// What every worker shares.
pub struct Shared {
    /// The memory pool all captures draw from.
    pub budget: otdrift_protocols::MemoryBudget,
    /// The store.
    pub db: Db,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Bounds concurrent captures (`[agent] max_concurrency`).
    pub permits: Arc<Semaphore>,
    /// Wakes the push worker when new events are in the outbox.
    pub events: Arc<super::wake::Wake>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// How old an asset's last verification may grow (`[agent] verify_max_age`).
    pub verify_max_age: Duration,
    /// The agent's data directory (collectors keep certificates there).
    pub data_dir: std::path::PathBuf,
}

/// A running scheduler: the tickers and the workers they tick.
pub struct Scheduler {
    /// Stops the tickers.
    stop_ticking: CancellationToken,
    tickers: Vec<tokio::task::JoinHandle<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// An asset's schedule is not a cron expression (the config's validation catches this
    /// first; kept for a config built in code).
    #[error("asset {asset}: cannot schedule {schedule:?}: {reason}")]
    Job {
        /// The asset.
        asset: String,
        /// Its schedule.
        schedule: String,
        /// croner's error.
        reason: String,
    },
}

/// What a ticker needs to tick its asset's worker.
struct Ticker {
    cron: croner::Cron,
    id: String,
    tx: mpsc::Sender<()>,
    busy: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Ticker {
    /// Sleeps until each firing of the schedule and ticks the worker: a tick that arrives
    /// while the previous capture still runs is skipped and counted, never queued. Each
    /// firing ticks once, even when the wall clock is stepped back (the next firing is
    /// looked for after the last one as well as after now).
    async fn run(self, stop: CancellationToken) {
        let mut last: Option<chrono::DateTime<chrono::Utc>> = None;
        // The start-up poll (ticked at once, not by the schedule) may still be running, or
        // waiting for a capture slot behind a whole fleet, when the first firing comes: that
        // firing is folded into it, since the asset is being looked at right then.
        let mut first = true;
        loop {
            let (next, wait) = match next_firing(&self.cron, last, chrono::Utc::now()) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(asset = %self.id, error = %e, "the schedule has no next firing; this asset is no longer polled");
                    return;
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            last = Some(next);
            let start_up = std::mem::replace(&mut first, false);
            if self.busy.swap(true, Ordering::AcqRel) {
                if start_up {
                    tracing::debug!(asset = %self.id, "first firing folded into the start-up poll");
                    continue;
                }
                self.metrics.inc(&self.metrics.missed, &self.id);
                tracing::warn!(asset = %self.id, "schedule tick missed: the previous capture is still running");
            } else if self.tx.try_send(()).is_err() {
                self.busy.store(false, Ordering::Release);
            }
        }
    }
}

/// The next firing of `cron` after both `now` and the `last` one fired, and how long to sleep
/// until it (zero when it is already due).
fn next_firing(
    cron: &croner::Cron,
    last: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(chrono::DateTime<chrono::Utc>, Duration), croner::errors::CronError> {
    let after = last.map_or(now, |l| l.max(now));
    let next = cron.find_next_occurrence(&after, false)?;
    Ok((next, (next - now).to_std().unwrap_or_default()))
}

impl Scheduler {
    /// Starts one worker and one ticker per asset, and ticks every asset once right away so
    /// that a restart does not wait a whole period to look at the plant.
    pub fn start(
        config: &otdrift_config::Config,
        shared: Arc<Shared>,
    ) -> Result<Self, SchedulerError> {
        let assets = &config.assets;
        let stop_ticking = CancellationToken::new();
        let mut workers = Vec::with_capacity(assets.len());
        let mut tickers = Vec::with_capacity(assets.len());
        for asset in assets {
            let (tx, rx) = mpsc::channel::<()>(1);
            let busy = Arc::new(AtomicBool::new(true));
            let asset_arc = Arc::new(asset.clone());
            // Interval schedules shared by many assets are spread by asset (config docs).
            let schedule = otdrift_config::spread_schedule(&asset.schedule, &asset.id);
            let period = otdrift_config::schedule_period(&schedule, chrono::Utc::now())
                .unwrap_or(Duration::from_secs(300));
            let cron = otdrift_config::parse_schedule(&schedule).map_err(|reason| {
                SchedulerError::Job {
                    asset: asset.id.clone(),
                    schedule: schedule.clone(),
                    reason,
                }
            })?;
            let worker = Worker {
                rules: Arc::new(crate::rules::change_rules(config, asset)),
                capture_spec: otdrift_protocols::capture_spec(asset),
                stale_after: period.saturating_mul(3),
                last_success: chrono::Utc::now(),
                stale: false,
                verification: Verified::default(),
                asset: asset_arc.clone(),
                collector: None,
                backoff: Backoff::new(Duration::from_secs(1), shared.backoff_max),
                busy: busy.clone(),
                deferrals: 0,
                retry_at: None,
            };
            workers.push(tokio::spawn(worker.run(rx, shared.clone())));
            // The first tick, now.
            let _ = tx.try_send(());

            let ticker = Ticker {
                cron,
                id: asset.id.clone(),
                tx,
                busy,
                metrics: shared.metrics.clone(),
            };
            tickers.push(tokio::spawn(ticker.run(stop_ticking.clone())));
        }
        Ok(Scheduler {
            stop_ticking,
            tickers,
            workers,
        })
    }

    /// Stops ticking and waits for the workers to finish or abandon their captures (they
    /// watch the shutdown token). Workers still running after `grace` are aborted; a capture
    /// aborted that way has written nothing, because a capture is recorded in one transaction
    /// only after it completed.
    pub async fn stop(self, grace: Duration) {
        self.stop_ticking.cancel();
        for ticker in self.tickers {
            let _ = ticker.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        for handle in self.workers {
            let abort = handle.abort_handle();
            if tokio::time::timeout_at(deadline, handle).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// The text of a panic payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Fault injection for the daemon's own tests, compiled into debug builds only: the release
/// binary in the package never reads the variable.
mod fault {
    use std::sync::atomic::{AtomicU32, Ordering};

    static PANICS: AtomicU32 = AtomicU32::new(0);

    /// With `OTDRIFT_TEST_PANIC=<asset>:<n>` in a debug build, the first `n` captures of that
    /// asset panic inside the capture task (a stand-in for a collector bug).
    pub(super) fn maybe_panic(asset: &str) {
        if !cfg!(debug_assertions) {
            return;
        }
        let Ok(spec) = std::env::var("OTDRIFT_TEST_PANIC") else {
            return;
        };
        let Some((target, n)) = spec.split_once(':') else {
            return;
        };
        let n: u32 = n.parse().unwrap_or(0);
        if target == asset && PANICS.fetch_add(1, Ordering::SeqCst) < n {
            panic!("injected collector panic for {asset} (OTDRIFT_TEST_PANIC)");
        }
    }
}

struct Worker {
    asset: Arc<AssetConfig>,
    /// Three schedule periods: longer without a successful capture is `asset.stale`.
    stale_after: Duration,
    /// The last successful capture (the daemon's start before the first).
    last_success: chrono::DateTime<chrono::Utc>,
    /// Whether the store already knows this asset is stale.
    stale: bool,
    /// What the store said of the asset's last verification, and when to ask it again.
    verification: Verified,
    rules: Arc<otdrift_store::ChangeRules>,
    /// The asset's capture spec, worked out once (the config does not change under a
    /// running daemon).
    capture_spec: otdrift_core::Digest,
    collector: Option<Box<dyn Collector>>,
    backoff: Backoff,
    busy: Arc<AtomicBool>,
    /// Deferred polls in a row.
    deferrals: u32,
    /// When a deferred poll is retried (unless a tick comes first).
    retry_at: Option<tokio::time::Instant>,
}

/// A worker's view of its asset's verification (`otdrift_store::Verification`): the store is
/// asked at the first tick, when the proof falls due, when a matching capture may end an
/// overdue episode, and after a first baseline; never on an ordinary poll.
#[derive(Clone, Copy, Debug, Default)]
struct Verified {
    /// The store was asked since the last event that could change its answer.
    known: bool,
    /// When the proof falls due (the last verification or first baseline plus the max age).
    due: Option<chrono::DateTime<chrono::Utc>>,
    /// An overdue episode is announced.
    overdue: bool,
}

/// How a poll ended, for the worker's loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Polled {
    /// Captured, failed or skipped: the schedule goes on.
    Done,
    /// Gave way in the memory budget: polled again soon.
    Deferred,
}

impl Worker {
    /// Waits for ticks and polls. A poll's future is boxed: it is large (every await of a
    /// capture and its recording) and lives only during the poll, while this loop waits
    /// between polls for every asset of the fleet all the time.
    async fn run(mut self, mut ticks: mpsc::Receiver<()>, shared: Arc<Shared>) {
        loop {
            let retry = self.retry_at;
            tokio::select! {
                biased;
                () = shared.shutdown.cancelled() => break,
                tick = ticks.recv() => {
                    if tick.is_none() {
                        break;
                    }
                    Box::pin(self.poll_and_plan(&shared)).await;
                    self.busy.store(false, Ordering::Release);
                }
                () = tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)),
                    if retry.is_some() =>
                {
                    self.retry_at = None;
                    // A tick already queued polls instead.
                    if self.busy.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    Box::pin(self.poll_and_plan(&shared)).await;
                    self.busy.store(false, Ordering::Release);
                }
            }
        }
        if let Some(mut c) = self.collector.take() {
            c.close().await;
        }
    }

    /// Polls once, and plans the retry of a deferred poll.
    async fn poll_and_plan(&mut self, shared: &Shared) {
        let span = tracing::info_span!(
            "poll",
            asset = %self.asset.id,
            protocol = self.asset.protocol.kind().as_str()
        );
        self.retry_at = None;
        match self.poll(shared).instrument(span).await {
            Polled::Done => self.deferrals = 0,
            Polled::Deferred => {
                self.deferrals = self.deferrals.saturating_add(1);
                let wait = super::backoff::delay(
                    self.deferrals,
                    DEFER_FIRST,
                    DEFER_MAX,
                    super::backoff::unit(),
                );
                self.retry_at = Some(tokio::time::Instant::now() + wait);
            }
        }
    }

    async fn poll(&mut self, shared: &Shared) -> Polled {
        let id = self.asset.id.clone();
        self.check_stale(shared).await;
        self.check_verification(shared).await;
        if !self.backoff.ready(tokio::time::Instant::now()) {
            shared.metrics.inc(&shared.metrics.backoff_skips, &id);
            return Polled::Done;
        }
        let Ok(_permit) = shared.permits.clone().acquire_owned().await else {
            return Polled::Done;
        };
        if self.collector.is_none() {
            match otdrift_protocols::build(&self.asset, &shared.data_dir) {
                Ok(c) => self.collector = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "no collector");
                    self.failed(shared, e).await;
                    shared.events.queued();
                    return Polled::Done;
                }
            }
        }
        let Some(mut collector) = self.collector.take() else {
            return Polled::Done;
        };
        let started = Instant::now();
        // A collector that panics (a bug, never the device's doing) fails that capture as
        // `internal` and its asset keeps being polled with a fresh collector, instead of
        // leaving the worker stuck and the asset silent. The panic is caught where it
        // happens, not by a task of its own: a task per poll is a thread wake-up per poll.
        let capture = std::panic::AssertUnwindSafe(async {
            fault::maybe_panic(&self.asset.id);
            otdrift_protocols::capture_within(collector.as_mut(), &self.asset, &shared.budget).await
        })
        .catch_unwind();
        let caught = tokio::select! {
            caught = capture => caught,
            () = shared.shutdown.cancelled() => {
                // Abandoned mid-capture: nothing was recorded; the connection is dropped.
                tracing::info!("capture cancelled by shutdown");
                return Polled::Done;
            }
        };
        let result = match caught {
            Ok(result) => {
                self.collector = Some(collector);
                result
            }
            Err(payload) => {
                let why = panic_message(payload);
                tracing::error!(error = %why, "the collector panicked; the asset keeps being polled");
                Err(
                    otdrift_protocols::Scope::new(&self.asset.id, &self.asset.address)
                        .internal(format!("the collector panicked: {why}")),
                )
            }
        };
        if let Err(e) = &result
            && e.is_deferred()
        {
            // Not the device's doing and not a failed collection: nothing is recorded.
            shared.metrics.inc(&shared.metrics.deferred, &id);
            tracing::info!(error = %e, "capture deferred: the memory budget is taken by others");
            return Polled::Deferred;
        }
        if let Err(e) = &result
            && e.poisons_connection()
        {
            // The collector was stopped mid-request: its connection state is unknown.
            self.collector = None;
        }
        let asset = self.asset.clone();
        let rules = self.rules.clone();
        let spec = self.capture_spec;
        // Whether the poll may have queued events: a quiet poll queued none, so the push
        // worker is not woken for it.
        let mut queued = true;
        match result {
            Ok(c) => {
                let elapsed = started.elapsed();
                // Hashing is the heavy part of recording a large capture: done here, outside
                // the store's lock, so other assets and the API do not wait for it (the
                // snapshot keeps the digests). A small one is hashed in place: handing it to
                // another thread costs more than hashing it.
                let c = if c.snapshot.len() <= INLINE_HASH_ITEMS {
                    let _ = c.snapshot.digests();
                    c
                } else {
                    match tokio::task::spawn_blocking(move || {
                        let _ = c.snapshot.digests();
                        c
                    })
                    .await
                    {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::error!(error = %e, "hashing the capture failed");
                            return Polled::Done;
                        }
                    }
                };
                // The same state as last time, with nothing written since: kept in memory
                // here, without a blocking thread (a quiet poll never has refusals: its
                // digest is the baseline's).
                let quiet = capture::with_record(&asset, &rules, spec, &c, None, |rec| {
                    shared.db.record_quiet(rec)
                });
                let recorded = match quiet {
                    Some(outcome) => Ok(outcome),
                    None => shared
                        .db
                        .call(move |store| {
                            Ok(capture::record_checked(store, &asset, &rules, &c, None))
                        })
                        .await
                        .map_err(capture::CaptureFailure::from)
                        .and_then(|recorded| recorded),
                };
                let pending = shared.db.seen_pending();
                shared
                    .metrics
                    .seen_pending
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
                match recorded {
                    Ok(outcome) => {
                        queued = !outcome.quiet;
                        self.backoff.succeeded();
                        self.last_success = chrono::Utc::now();
                        self.stale = false;
                        shared
                            .metrics
                            .capture_seconds
                            .observe(elapsed.as_secs_f64());
                        shared.metrics.set(&shared.metrics.reachable, &id, 1);
                        let drifted = outcome.drift.is_drifted();
                        shared
                            .metrics
                            .set(&shared.metrics.drift_open, &id, i64::from(drifted));
                        let label = if outcome.baseline_created {
                            "baseline"
                        } else if drifted {
                            "drift"
                        } else {
                            "match"
                        };
                        shared.metrics.capture(&id, label);
                        self.verified(shared, &outcome);
                        match &outcome.drift {
                            DriftOutcome::Opened(d) | DriftOutcome::Updated(d) => tracing::warn!(
                                drift = d.id,
                                severity = %d.severity,
                                changes = d.changes.len(),
                                observed = %outcome.digests.overall,
                                "drift detected"
                            ),
                            DriftOutcome::Resolved(d) => {
                                tracing::info!(drift = d.id, "drift resolved")
                            }
                            DriftOutcome::Approved(d) => {
                                tracing::info!(drift = d.id, "drift approved")
                            }
                            DriftOutcome::Muted(d) => tracing::debug!(
                                drift = d.id,
                                observed = %outcome.digests.overall,
                                "only flapping (muted) items changed"
                            ),
                            DriftOutcome::Seen(_) | DriftOutcome::None => tracing::debug!(
                                digest = %outcome.digests.overall,
                                ms = elapsed.as_millis() as u64,
                                "captured"
                            ),
                        }
                    }
                    Err(capture::CaptureFailure::Device(e)) => {
                        // The field-truth check refused the capture (recorded as a failure).
                        shared.metrics.capture(&id, e.reason().as_str());
                        shared.metrics.collection_failed(&id, e.reason());
                        tracing::warn!(error = %e, "capture refused: not state");
                    }
                    Err(capture::CaptureFailure::Store(e)) => {
                        shared.metrics.capture(&id, "error");
                        tracing::error!(error = %e, "cannot record the capture");
                    }
                }
            }
            Err(error) => self.failed(shared, error).await,
        }
        if queued {
            shared.events.queued();
        }
        Polled::Done
    }

    /// Every tick, captured or skipped: an asset without a successful capture for three
    /// periods is stale (announced once by the store, unless another alarm explains it).
    async fn check_stale(&mut self, shared: &Shared) {
        let since = chrono::Utc::now() - self.last_success;
        if self.stale || since.to_std().is_ok_and(|s| s <= self.stale_after) {
            return;
        }
        let asset = self.asset.clone();
        let threshold =
            chrono::TimeDelta::from_std(self.stale_after).unwrap_or(chrono::TimeDelta::MAX);
        let reference = self.last_success;
        let checked = shared
            .db
            .call(move |store| {
                let maintenance = crate::maintenance::active(&asset, store)?;
                store.check_stale(&asset.id, threshold, reference, maintenance.as_deref())
            })
            .await;
        match checked {
            Ok(stale) => {
                self.stale = stale;
                if stale {
                    tracing::warn!("asset stale: no successful capture for three schedule periods");
                    shared.events.queued();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot check staleness"),
        }
    }

    /// A recorded capture: one that matched the approved (non-provisional) baseline moves the
    /// proof's due time; after an overdue episode the store is asked to end it; a first
    /// baseline makes the store's answer worth asking again.
    fn verified(&mut self, shared: &Shared, outcome: &otdrift_store::CaptureOutcome) {
        let matched = !outcome.baseline.provisional
            && outcome.baseline.digest == outcome.digests.overall
            && !outcome.drift.is_drifted();
        if matched {
            let now = chrono::Utc::now();
            let max_age = chrono::TimeDelta::from_std(shared.verify_max_age)
                .unwrap_or(chrono::TimeDelta::MAX);
            self.verification.due = now.checked_add_signed(max_age);
            shared.metrics.set(
                &shared.metrics.last_verified,
                &self.asset.id,
                now.timestamp(),
            );
            if self.verification.overdue {
                self.verification.known = false;
            }
        } else if outcome.baseline_created {
            self.verification.known = false;
        }
    }

    /// Every tick: asks the store about the asset's verification when the worker's view says
    /// something may have changed (see [`Verified`]); the store announces an overdue proof
    /// once, and its end once.
    async fn check_verification(&mut self, shared: &Shared) {
        let now = chrono::Utc::now();
        let v = self.verification;
        let ask = !v.known || (!v.overdue && v.due.is_some_and(|due| now >= due));
        if !ask {
            return;
        }
        let asset = self.asset.id.clone();
        let max_age =
            chrono::TimeDelta::from_std(shared.verify_max_age).unwrap_or(chrono::TimeDelta::MAX);
        let checked = shared
            .db
            .call(move |store| store.check_verification(&asset, max_age))
            .await;
        let found = match checked {
            Ok(check) => check,
            Err(e) => {
                tracing::error!(error = %e, "cannot check the asset's verification");
                // Asked again when the proof falls due or a capture matches.
                self.verification.known = true;
                return;
            }
        };
        let (state, news) = match found {
            VerificationCheck::Current(state) => (state, false),
            VerificationCheck::Overdue(state, announced) => {
                if announced {
                    tracing::warn!(
                        last_verified = ?state.last_verified,
                        "verification overdue: no capture has matched the approved baseline \
                         within verify_max_age"
                    );
                }
                (state, announced)
            }
            VerificationCheck::Recovered(state) => {
                tracing::info!("verified again: the asset matches its approved baseline");
                (state, true)
            }
        };
        if let Some(last) = state.last_verified {
            shared.metrics.set(
                &shared.metrics.last_verified,
                &self.asset.id,
                last.timestamp(),
            );
        }
        self.verification = Verified {
            known: true,
            due: state.due,
            overdue: state.overdue_since.is_some(),
        };
        if news {
            shared.events.queued();
        }
    }

    /// A capture that did not produce state: counted, recorded (one event per outage or
    /// failure streak), and, for an unreachable device, backed off.
    async fn failed(&mut self, shared: &Shared, error: CollectError) {
        let id = self.asset.id.clone();
        let asset = self.asset.clone();
        let unreachable = error.is_unreachable();
        let outcome = match &error.kind {
            ErrorKind::Timeout { .. } => "timeout",
            _ => error.reason().as_str(),
        };
        shared.metrics.capture(&id, outcome);
        if !unreachable {
            shared.metrics.collection_failed(&id, error.reason());
        }
        // A device that does not answer, or answers "busy", is asked less often: exponential
        // backoff with jitter, reset by the next success. Every other failure keeps the
        // schedule (the field-truth rule: it is reported, and the next poll looks again).
        let busy = error.reason() == otdrift_protocols::FailureReason::Busy;
        let wait = if unreachable || busy {
            if unreachable {
                shared.metrics.set(&shared.metrics.reachable, &id, 0);
            }
            Some(self.backoff.failed(tokio::time::Instant::now()))
        } else {
            None
        };
        let message = error.to_string();
        let recorded = shared
            .db
            .call(move |store| capture::record_failure(store, &asset, &error, None))
            .await;
        match recorded {
            Ok(capture::FailureStart::Outage) => {
                tracing::warn!(error = %message, "asset unreachable")
            }
            Ok(capture::FailureStart::Streak) => {
                tracing::warn!(error = %message, "collection failed")
            }
            Ok(capture::FailureStart::Continues) => tracing::debug!(
                error = %message,
                retry_in_ms = wait.map(|w| w.as_millis() as u64),
                "capture failed"
            ),
            Err(e) => tracing::error!(error = %e, "cannot record the failure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn each_firing_is_found_once_even_when_the_clock_steps_back() {
        let cron = otdrift_config::parse_schedule("*/10 * * * * *").expect("schedule");
        let at = |s: u32| chrono::Utc.with_ymd_and_hms(2026, 12, 6, 8, 0, s).unwrap();
        let ms = |n: u64| Duration::from_millis(n);
        // From 08:00:03: the 08:00:10 firing, 7 s away.
        assert_eq!(
            next_firing(&cron, None, at(3)).ok(),
            Some((at(10), ms(7000)))
        );
        // Woken at 08:00:10 after firing it: the next one is 08:00:20.
        assert_eq!(
            next_firing(&cron, Some(at(10)), at(10)).ok(),
            Some((at(20), ms(10_000)))
        );
        // The wall clock stepped back 4 s after 08:00:10 fired: 08:00:10 is not fired again.
        assert_eq!(
            next_firing(&cron, Some(at(10)), at(6)).ok(),
            Some((at(20), ms(14_000)))
        );
        // Woken late (a busy gateway): the missed firing is not made up, the next one is due.
        assert_eq!(
            next_firing(&cron, Some(at(10)), at(35)).ok(),
            Some((
                chrono::Utc.with_ymd_and_hms(2026, 12, 6, 8, 0, 40).unwrap(),
                ms(5000)
            ))
        );
    }
}
