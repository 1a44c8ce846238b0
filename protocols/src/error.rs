//! Why a capture failed: one error type for every collector.
//!
//! A [`CollectError`] is always *asset + address + request + kind*: the operator woken at night
//! needs to know which PLC, where, what we asked, and what went wrong, in that order. The
//! [`ErrorKind`] decides what happens next:
//!
//! - **unreachable** kinds ([`ErrorKind::Connect`], [`ErrorKind::Timeout`],
//!   [`ErrorKind::Transport`]) are an availability problem: `asset.unreachable`, backoff;
//! - every other kind means the device answered, but not with state we can record: the capture
//!   fails as a whole (nothing is stored, nothing is drift) and `asset.collection_failed` says
//!   why, with a [`FailureReason`]. This is the field-truth rule of
//!   `docs/decisions/0004-field-truth.md`: a refusal, an error status, a contradiction, a
//!   malformed answer or a safety bound is never state;
//! - [`ErrorKind::Deferred`] is neither: the gateway's own memory budget was taken by other
//!   captures (`budget.rs`). Nothing is recorded and nothing is announced; the scheduler polls
//!   the asset again shortly.

use otdrift_config::Protocol;

/// A failed capture: which asset, where, during which request, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("asset {asset}: {}", self.describe())]
pub struct CollectError {
    /// The asset.
    pub asset: String,
    /// Where it was looked for (`host:port` as configured).
    pub address: String,
    /// The request in flight (`connect`, `the whole capture`, or the protocol's own name for
    /// the request, e.g. `Read Var DB1.DBB0 (64 bytes)`); empty when no request was involved.
    pub request: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong; see the module docs for what each kind leads to.
#[derive(Debug)]
pub enum ErrorKind {
    /// No TCP connection could be made.
    Connect(std::io::Error),
    /// The device did not answer a request in time.
    Timeout {
        /// The deadline of one request (`timeout_ms`).
        timeout_ms: u64,
        /// Advice for the operator, starting with "; " when present.
        hint: String,
    },
    /// The connection broke during a request.
    Transport(std::io::Error),
    /// The device answered with a protocol-level refusal (exception, error code, status), or
    /// refused something its own directory says exists (a contradiction).
    Refused(String),
    /// The device said it is busy (Modbus exception 6, ADS 0x708, CIP general status 0x02,
    /// S7's resource errors): try again later, gently.
    Busy(String),
    /// The device answered something that does not fit the request or contradicts itself.
    Malformed(String),
    /// A safety bound was hit: depth, width, size, continuation points or time.
    Bound(String),
    /// The asset's protocol is not compiled into this build.
    Unsupported(Protocol),
    /// The gateway's side is not set up to talk to this asset: a secret file that is missing
    /// or readable by others, a certificate store that cannot be written. Fixing it is the
    /// operator's job, not the device's.
    Config(String),
    /// A bug on our side (a collector that panicked, an item we built wrongly).
    Internal(String),
    /// The capture gave way to others in the gateway's memory budget (another capture waits
    /// for the pool, or this one waited until its deadline): not the device's doing and not
    /// a failed collection; the asset is polled again shortly.
    Deferred(String),
}

/// Why a collection failed, as `asset.collection_failed` events and metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// The device could not be reached (connect, timeout, broken connection).
    Unreachable,
    /// The device refused a request, or refused what its own directory lists.
    Refused,
    /// An answer did not fit the request or contradicted itself.
    Malformed,
    /// A safety bound was hit (depth, width, size, continuation points, time).
    Bound,
    /// The device said it is busy.
    Busy,
    /// The gateway's own configuration is wrong for this asset.
    Config,
    /// A bug on our side.
    Internal,
    /// Not a failure: the capture gave way in the memory budget and is polled again soon
    /// (never in a `collection_failed` event; not in [`FailureReason::ALL`]).
    Deferred,
}

impl FailureReason {
    /// The name used in events, metrics and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Unreachable => "unreachable",
            FailureReason::Refused => "refused",
            FailureReason::Malformed => "malformed",
            FailureReason::Bound => "bound",
            FailureReason::Busy => "busy",
            FailureReason::Config => "config",
            FailureReason::Internal => "internal",
            FailureReason::Deferred => "deferred",
        }
    }

    /// Every reason a collection fails for, for metrics that must show zeros.
    pub const ALL: [FailureReason; 7] = [
        FailureReason::Unreachable,
        FailureReason::Refused,
        FailureReason::Malformed,
        FailureReason::Bound,
        FailureReason::Busy,
        FailureReason::Config,
        FailureReason::Internal,
    ];
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CollectError {
    /// Why the collection failed.
    pub fn reason(&self) -> FailureReason {
        match self.kind {
            ErrorKind::Connect(_) | ErrorKind::Timeout { .. } | ErrorKind::Transport(_) => {
                FailureReason::Unreachable
            }
            ErrorKind::Refused(_) => FailureReason::Refused,
            ErrorKind::Busy(_) => FailureReason::Busy,
            ErrorKind::Malformed(_) => FailureReason::Malformed,
            ErrorKind::Bound(_) => FailureReason::Bound,
            ErrorKind::Unsupported(_) | ErrorKind::Config(_) => FailureReason::Config,
            ErrorKind::Internal(_) => FailureReason::Internal,
            ErrorKind::Deferred(_) => FailureReason::Deferred,
        }
    }

    /// Whether the capture only gave way in the memory budget: nothing to record or
    /// announce, poll again soon.
    pub fn is_deferred(&self) -> bool {
        self.reason() == FailureReason::Deferred
    }

    /// Whether the failure means the device could not be reached (as opposed to answering
    /// badly): drives `asset.unreachable` and the daemon's backoff.
    pub fn is_unreachable(&self) -> bool {
        self.reason() == FailureReason::Unreachable
    }

    /// What the device (or the bound, or the operating system) said, without the asset and
    /// request around it: the `detail` of a `collection_failed` event.
    pub fn detail(&self) -> String {
        match &self.kind {
            ErrorKind::Connect(e) | ErrorKind::Transport(e) => e.to_string(),
            ErrorKind::Timeout { timeout_ms, hint } => {
                format!("no answer within {timeout_ms} ms{hint}")
            }
            ErrorKind::Refused(s)
            | ErrorKind::Busy(s)
            | ErrorKind::Malformed(s)
            | ErrorKind::Bound(s)
            | ErrorKind::Config(s)
            | ErrorKind::Internal(s)
            | ErrorKind::Deferred(s) => s.clone(),
            ErrorKind::Unsupported(p) => {
                format!("the {p} collector is not part of this otdrift build")
            }
        }
    }

    /// Whether the collector's connection may be in an unknown state afterwards (a request
    /// abandoned mid-way): the caller drops the collector and starts afresh.
    pub fn poisons_connection(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Timeout { .. } | ErrorKind::Transport(_) | ErrorKind::Internal(_)
        ) || (matches!(self.kind, ErrorKind::Bound(_)) && self.request == WHOLE_CAPTURE)
    }

    fn describe(&self) -> String {
        let (address, request) = (&self.address, &self.request);
        match &self.kind {
            ErrorKind::Connect(e) => format!("cannot connect to {address}: {e}"),
            ErrorKind::Timeout { timeout_ms, hint } => {
                format!("no answer from {address} to {request} within {timeout_ms} ms{hint}")
            }
            ErrorKind::Transport(e) => {
                format!("connection to {address} failed during {request}: {e}")
            }
            ErrorKind::Refused(reason) => format!("{address} refused {request}: {reason}"),
            ErrorKind::Busy(reason) => format!("{address} is busy and refused {request}: {reason}"),
            ErrorKind::Malformed(detail) => {
                format!("malformed answer from {address} to {request}: {detail}")
            }
            ErrorKind::Bound(limit) => {
                format!("{request} at {address} stopped at a safety bound: {limit}")
            }
            ErrorKind::Unsupported(p) => {
                format!("the {p} collector is not part of this otdrift build")
            }
            ErrorKind::Config(detail) | ErrorKind::Internal(detail) => detail.clone(),
            ErrorKind::Deferred(detail) => format!("{request} at {address} deferred: {detail}"),
        }
    }
}

/// The request name of a capture stopped by its own deadline (`capture_timeout_ms`).
pub const WHOLE_CAPTURE: &str = "the whole capture";

/// Builds [`CollectError`]s for one asset, so a collector names its asset and address once
/// instead of in every error it raises.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The asset.
    pub asset: String,
    /// Its configured address.
    pub address: String,
}

impl Scope {
    /// A scope for `asset` at `address`.
    pub fn new(asset: impl Into<String>, address: impl Into<String>) -> Self {
        Scope {
            asset: asset.into(),
            address: address.into(),
        }
    }

    /// An error of `kind` during `request`.
    pub fn error(&self, request: impl Into<String>, kind: ErrorKind) -> CollectError {
        CollectError {
            asset: self.asset.clone(),
            address: self.address.clone(),
            request: request.into(),
            kind,
        }
    }

    /// No TCP connection could be made.
    pub fn connect(&self, source: std::io::Error) -> CollectError {
        self.error("connect", ErrorKind::Connect(source))
    }

    /// `request` went unanswered for `timeout_ms`.
    pub fn timeout(&self, request: impl Into<String>, timeout_ms: u64, hint: &str) -> CollectError {
        self.error(
            request,
            ErrorKind::Timeout {
                timeout_ms,
                hint: hint.to_owned(),
            },
        )
    }

    /// The connection broke during `request`.
    pub fn transport(&self, request: impl Into<String>, source: std::io::Error) -> CollectError {
        self.error(request, ErrorKind::Transport(source))
    }

    /// The device refused `request`.
    pub fn refused(
        &self,
        request: impl Into<String>,
        reason: impl std::fmt::Display,
    ) -> CollectError {
        self.error(request, ErrorKind::Refused(reason.to_string()))
    }

    /// The device said it is busy.
    pub fn busy(&self, request: impl Into<String>, reason: impl std::fmt::Display) -> CollectError {
        self.error(request, ErrorKind::Busy(reason.to_string()))
    }

    /// The answer to `request` does not fit.
    pub fn malformed(
        &self,
        request: impl Into<String>,
        detail: impl std::fmt::Display,
    ) -> CollectError {
        self.error(request, ErrorKind::Malformed(detail.to_string()))
    }

    /// `request` hit a safety bound.
    pub fn bound(&self, request: impl Into<String>, limit: impl std::fmt::Display) -> CollectError {
        self.error(request, ErrorKind::Bound(limit.to_string()))
    }

    /// The gateway's configuration for this asset is wrong.
    pub fn config(&self, detail: impl std::fmt::Display) -> CollectError {
        self.error("", ErrorKind::Config(detail.to_string()))
    }

    /// What the memory budget refused during `request`: a capture too big for the whole pool
    /// is a bound, one that gave way to others is deferred.
    pub fn budget(
        &self,
        request: impl Into<String>,
        refusal: crate::budget::Refusal,
    ) -> CollectError {
        let kind = match refusal {
            crate::budget::Refusal::TooBig { .. } => ErrorKind::Bound(refusal.to_string()),
            crate::budget::Refusal::Deferred { .. } => ErrorKind::Deferred(refusal.to_string()),
        };
        self.error(request, kind)
    }

    /// A bug on our side.
    pub fn internal(&self, detail: impl std::fmt::Display) -> CollectError {
        self.error("", ErrorKind::Internal(detail.to_string()))
    }

    /// An item the collector built is invalid: a name or value beyond the snapshot's limits
    /// (a device-supplied name too long), which is a bound, not a bug.
    pub fn item(&self, error: impl std::fmt::Display) -> CollectError {
        self.error("", ErrorKind::Bound(format!("item beyond limits: {error}")))
    }

    /// An item, or the [`item`](Self::item) error when it is beyond the snapshot's limits.
    pub fn new_item(
        &self,
        path: String,
        class: otdrift_core::Class,
        value: otdrift_core::Value,
    ) -> Result<otdrift_core::Item, CollectError> {
        otdrift_core::Item::new(path, class, value).map_err(|e| self.item(e))
    }

    /// Adds `item` to `snapshot`, or the [`item`](Self::item) error (beyond the snapshot's
    /// limits, or a path taken twice).
    pub fn insert(
        &self,
        snapshot: &mut otdrift_core::Snapshot,
        item: otdrift_core::Item,
    ) -> Result<(), CollectError> {
        snapshot.insert(item).map_err(|e| self.item(e))
    }
}
