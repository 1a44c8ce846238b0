//! Prometheus metrics of the daemon (`GET /metrics`), on prometheus-client.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming an asset.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AssetLabel {
    /// The asset id.
    pub asset: String,
}

/// Labels of a capture's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaptureLabel {
    /// The asset id.
    pub asset: String,
    /// `match`, `drift`, `baseline`, `unreachable`, `timeout`, a failure reason (`refused`,
    /// `malformed`, `bound`, `busy`, `config`, `internal`), or `error` (the store failed).
    pub outcome: String,
}

/// Labels of a failed collection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    /// The asset id.
    pub asset: String,
    /// `refused`, `malformed`, `bound`, `busy`, `config`, `internal`.
    pub reason: String,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    /// Captures by asset and outcome.
    pub captures: Family<CaptureLabel, Counter>,
    /// Failed collections of reachable devices, by asset and reason.
    pub collection_failures: Family<FailureLabel, Counter>,
    /// Wall time of successful captures.
    pub capture_seconds: Histogram,
    /// Schedule ticks skipped because the asset's previous capture was still running.
    pub missed: Family<AssetLabel, Counter>,
    /// Ticks skipped while backing off an unreachable asset.
    pub backoff_skips: Family<AssetLabel, Counter>,
    /// 1 while an asset has an open drift event.
    pub drift_open: Family<AssetLabel, Gauge>,
    /// 1 while an asset answers, 0 while it does not.
    pub reachable: Family<AssetLabel, Gauge>,
    /// When each asset last matched its approved baseline (Unix seconds).
    pub last_verified: Family<AssetLabel, Gauge>,
    /// Events waiting for the upstream.
    pub outbox_depth: Gauge,
    /// Events the upstream acknowledged.
    pub events_pushed: Counter,
    /// Push attempts that failed (transport error or non-2xx).
    pub push_failures: Counter,
    /// 1 while the upstream refuses our credentials (401/403) or every event, and delivery
    /// waits for a re-check.
    pub upstream_paused: Gauge,
    /// Events the upstream refused on their own and that wait for `otdrift outbox --retry`.
    pub outbox_parked: Gauge,
    /// Events parked since the start.
    pub events_parked: Counter,
    /// Open API connections.
    pub api_connections: Gauge,
    /// API connections closed at once because `[api] max_connections` were open.
    pub api_connections_rejected: Counter,
    /// API connections closed to make room because they sent no complete request.
    pub api_connections_evicted: Counter,
    /// API requests with a missing or wrong token.
    pub api_auth_failures: Counter,
    /// API requests answered 429 because their client failed to authenticate too often.
    pub api_auth_throttled: Counter,
    /// Rows retention deleted, by kind (`outbox`, `captures`, `snapshots`).
    pub pruned: Family<KindLabel, Counter>,
    /// 1 while the upstream's oldest unacknowledged event is more than a day old.
    pub delivery_lagging: Gauge,
    /// Polls that gave way in the memory budget and were polled again soon, by asset.
    pub deferred: Family<AssetLabel, Counter>,
    /// Assets whose quiet polls wait in memory for the next seen flush.
    pub seen_pending: Gauge,
    /// Seen flushes that wrote something (one transaction each).
    pub seen_flushes: Counter,
    /// The captures' memory pool, in bytes.
    memory_budget: Gauge,
    /// What running captures hold of it, in bytes.
    memory_in_use: Gauge,
    /// The pool the two gauges show, read at every scrape.
    budget: std::sync::OnceLock<otdrift_protocols::MemoryBudget>,
}

/// Labels of pruned rows.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `outbox`, `captures` or `snapshots`.
    pub kind: String,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let captures = Family::<CaptureLabel, Counter>::default();
        let collection_failures = Family::<FailureLabel, Counter>::default();
        let capture_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let missed = Family::<AssetLabel, Counter>::default();
        let backoff_skips = Family::<AssetLabel, Counter>::default();
        let drift_open = Family::<AssetLabel, Gauge>::default();
        let reachable = Family::<AssetLabel, Gauge>::default();
        let last_verified = Family::<AssetLabel, Gauge>::default();
        let outbox_depth = Gauge::default();
        let events_pushed = Counter::default();
        let push_failures = Counter::default();
        let upstream_paused = Gauge::default();
        let outbox_parked = Gauge::default();
        let events_parked = Counter::default();
        let api_connections = Gauge::default();
        let api_connections_rejected = Counter::default();
        let api_connections_evicted = Counter::default();
        let api_auth_failures = Counter::default();
        let api_auth_throttled = Counter::default();
        let pruned = Family::<KindLabel, Counter>::default();
        let delivery_lagging = Gauge::default();
        let deferred = Family::<AssetLabel, Counter>::default();
        let memory_budget = Gauge::default();
        let memory_in_use = Gauge::default();
        let seen_pending = Gauge::default();
        let seen_flushes = Counter::default();
        registry.register(
            "otdrift_seen_pending",
            "Assets whose quiet polls wait in memory for the next seen flush",
            seen_pending.clone(),
        );
        registry.register(
            "otdrift_seen_flushes",
            "Seen flushes that wrote the quiet polls of a window, one transaction each",
            seen_flushes.clone(),
        );
        registry.register(
            "otdrift_captures_deferred",
            "Polls that gave way to another capture in the memory budget and were polled again soon",
            deferred.clone(),
        );
        registry.register(
            "otdrift_memory_budget_bytes",
            "The memory pool all running captures share",
            memory_budget.clone(),
        );
        registry.register(
            "otdrift_memory_in_use_bytes",
            "What running captures hold of the memory pool",
            memory_in_use.clone(),
        );
        registry.register(
            "otdrift_pruned_rows",
            "Rows retention deleted, by kind (outbox, captures, snapshots)",
            pruned.clone(),
        );
        registry.register(
            "otdrift_delivery_lagging",
            "1 while the upstream's oldest unacknowledged event is more than a day old",
            delivery_lagging.clone(),
        );
        registry.register(
            "otdrift_captures",
            "Captures by asset and outcome",
            captures.clone(),
        );
        registry.register(
            "otdrift_collection_failures",
            "Captures of a reachable device that produced no state, by asset and reason",
            collection_failures.clone(),
        );
        registry.register(
            "otdrift_capture_duration_seconds",
            "Wall time of successful captures",
            capture_seconds.clone(),
        );
        registry.register(
            "otdrift_schedule_missed",
            "Schedule ticks skipped because the previous capture of the asset was still running",
            missed.clone(),
        );
        registry.register(
            "otdrift_backoff_skips",
            "Schedule ticks skipped while backing off an unreachable asset",
            backoff_skips.clone(),
        );
        registry.register(
            "otdrift_drift_open",
            "1 while the asset has an open drift event",
            drift_open.clone(),
        );
        registry.register(
            "otdrift_last_verified_timestamp_seconds",
            "When the asset last matched its approved baseline (Unix time; absent before it ever did)",
            last_verified.clone(),
        );
        registry.register(
            "otdrift_asset_reachable",
            "1 while the asset answers, 0 while it does not",
            reachable.clone(),
        );
        registry.register(
            "otdrift_outbox_depth",
            "Events waiting for the upstream",
            outbox_depth.clone(),
        );
        registry.register(
            "otdrift_events_pushed",
            "Events the upstream acknowledged",
            events_pushed.clone(),
        );
        registry.register(
            "otdrift_push_failures",
            "Push attempts that failed",
            push_failures.clone(),
        );
        registry.register(
            "otdrift_upstream_paused",
            "1 while the upstream refuses our credentials or every event and delivery waits for a re-check",
            upstream_paused.clone(),
        );
        registry.register(
            "otdrift_outbox_parked",
            "Events the upstream refused on their own, waiting for otdrift outbox --retry",
            outbox_parked.clone(),
        );
        registry.register(
            "otdrift_events_parked",
            "Events parked because the upstream refused them on their own",
            events_parked.clone(),
        );
        registry.register(
            "otdrift_api_connections",
            "Open connections to the API",
            api_connections.clone(),
        );
        registry.register(
            "otdrift_api_connections_rejected",
            "API connections closed at once because max_connections were open",
            api_connections_rejected.clone(),
        );
        registry.register(
            "otdrift_api_connections_evicted",
            "API connections closed to make room because they sent no complete request",
            api_connections_evicted.clone(),
        );
        registry.register(
            "otdrift_api_auth_failures",
            "API requests with a missing or wrong token",
            api_auth_failures.clone(),
        );
        registry.register(
            "otdrift_api_auth_throttled",
            "API requests answered 429 because their client failed to authenticate too often",
            api_auth_throttled.clone(),
        );
        Metrics {
            registry,
            captures,
            collection_failures,
            capture_seconds,
            missed,
            backoff_skips,
            drift_open,
            reachable,
            last_verified,
            outbox_depth,
            events_pushed,
            push_failures,
            upstream_paused,
            outbox_parked,
            events_parked,
            api_connections,
            api_connections_rejected,
            api_connections_evicted,
            api_auth_failures,
            api_auth_throttled,
            pruned,
            delivery_lagging,
            deferred,
            seen_pending,
            seen_flushes,
            memory_budget,
            memory_in_use,
            budget: std::sync::OnceLock::new(),
        }
    }

    /// Shows `budget`'s size and use in every scrape (the first pool given stays).
    pub fn watch_budget(&self, budget: otdrift_protocols::MemoryBudget) {
        let _ = self.budget.set(budget);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(budget) = self.budget.get() {
            let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.memory_budget.set(gauge(budget.capacity()));
            self.memory_in_use.set(gauge(budget.in_use()));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a capture outcome.
    pub fn capture(&self, asset: &str, outcome: &str) {
        self.captures
            .get_or_create(&CaptureLabel {
                asset: asset.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a failed collection of a reachable device.
    pub fn collection_failed(&self, asset: &str, reason: otdrift_protocols::FailureReason) {
        self.collection_failures
            .get_or_create(&FailureLabel {
                asset: asset.to_owned(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// Sets a per-asset gauge.
    pub fn set(&self, family: &Family<AssetLabel, Gauge>, asset: &str, value: i64) {
        family
            .get_or_create(&AssetLabel {
                asset: asset.to_owned(),
            })
            .set(value);
    }

    /// Increments a per-asset counter.
    pub fn inc(&self, family: &Family<AssetLabel, Counter>, asset: &str) {
        family
            .get_or_create(&AssetLabel {
                asset: asset.to_owned(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
