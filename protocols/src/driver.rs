//! The framework every collector stands on: each protocol writes a [`Link`] (how to connect,
//! how to exchange one request, what a failure or an answer means for the connection), and
//! one [`Driver`] does what the five protocols must do alike:
//!
//! - it owns the pooled connection and opens it (each set-up step under the asset's
//!   `timeout_ms`, through [`Dial`]);
//! - it runs every exchange under the same per-request deadline; after a timeout the
//!   connection is dropped, so a late answer can never be taken for the next one;
//! - **reconnect-once**, one rule: a connection lost ([`Failure::Lost`], or an answer the link
//!   judges [`Verdict::Stale`]) on a connection that had already served a request is a pooled
//!   connection the device dropped while idle, and the request is sent again once on a fresh
//!   connection; a loss on a fresh connection, any other I/O error, a timeout or a malformed
//!   answer drops the connection and fails the request;
//! - it charges the bytes of every answer to the capture's memory lease (`budget.rs`), so one
//!   rule bounds what captures of all five protocols hold;
//! - it counts requests and connections into [`CaptureStats`] and builds every
//!   [`CollectError`] through the asset's [`Scope`], naming the request as the link describes
//!   it.
//!
//! A session-level protocol whose client library owns the session (OPC UA, on async-opcua)
//! cannot resend one request on a new session: a browse continuation point, or anything the
//! session learnt, dies with it. Its link says [`Reconnect::Capture`]: the driver then never
//! reconnects inside a capture, marks the loss, and the framework runs the whole capture once
//! more on a fresh session (`Driver::may_rerun`).
//!
//! What the driver does not decide: whether a device's answer is state, a stable capability
//! refusal or a failure of the capture. That is each collector's field-truth judgement
//! (`docs/decisions/0004-field-truth.md`), made on the answers the driver returns.

// The framework serves five protocols; a build with fewer (one cargo feature per protocol)
// leaves parts of it unused, which is not dead code in the product.
#![cfg_attr(
    not(all(
        feature = "modbus",
        feature = "s7",
        feature = "ads",
        feature = "cip",
        feature = "opcua"
    )),
    allow(dead_code)
)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use otdrift_config::AssetConfig;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::budget::Meter;
use crate::{CaptureStats, CollectError, Scope};

/// Why one exchange failed before the protocol had an answer to judge.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection is gone: the device closed or reset it. Retried once when the
    /// connection had served a request before (see the module docs).
    Lost(io::Error),
    /// Any other I/O failure: the connection is dropped and the request fails (transport).
    Io(io::Error),
    /// The answer does not fit the request, or the stream is out of step: the connection is
    /// dropped and the request fails (malformed).
    Malformed(String),
}

/// What an answer means for the connection it arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The connection serves the next request too.
    Keep,
    /// The answer stands, but the connection is dropped (the device may close it after such an
    /// answer, or its state is no longer known).
    Close,
    /// The answer says the device no longer knows this connection or session (it expired
    /// while we were idle): treated like [`Failure::Lost`]. On a fresh connection the answer
    /// is returned as it is, for the collector to judge.
    Stale,
}

/// When a dead connection is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reconnect {
    /// On demand, by the exchange that needs a connection; a pooled connection found dead on
    /// first use is replaced once, transparently.
    Exchange,
    /// Only when a capture starts ([`Driver::connect`]): a connection lost during a capture
    /// fails it, and the capture is run once more on a fresh connection when the lost one was
    /// pooled ([`Driver::may_rerun`]).
    Capture,
}

/// One protocol's transport: what the [`Driver`] needs to connect and to exchange requests.
///
/// A link holds the asset's connection settings and what it learnt about the device across
/// connections (a PDU size, a connection size, a refused service); the connection itself is
/// [`Link::Conn`], owned by the driver.
pub(crate) trait Link: Send + Sync {
    /// An open connection (or session).
    type Conn: Send;
    /// The protocol's request: the module's `request.rs` is the only place one is built.
    type Request: Sync;
    /// A raw answer, checked only as far as the transport goes.
    type Answer: Send;
    /// When a dead connection is replaced.
    const RECONNECT: Reconnect = Reconnect::Exchange;

    /// Opens a connection, each step under the deadline through `dial` (which counts the
    /// set-up requests).
    fn connect(
        &mut self,
        dial: &mut Dial<'_>,
    ) -> impl Future<Output = Result<Self::Conn, CollectError>> + Send;

    /// Sends `request` on `conn` and reads its answer. Not cancellation-safe: when the
    /// driver's deadline passes, it drops the connection.
    fn exchange(
        &self,
        conn: &mut Self::Conn,
        request: &Self::Request,
    ) -> impl Future<Output = Result<Self::Answer, Failure>> + Send;

    /// The request as errors name it (`read holding registers 0..125 (FC 3)`).
    fn describe(&self, request: &Self::Request) -> String;

    /// The bytes `answer` holds (its payload, as received or decoded), charged to the
    /// capture's memory lease.
    fn size(&self, answer: &Self::Answer) -> usize;

    /// Advice appended to a timeout of `request` (starting with `"; "`), if any.
    fn timeout_hint(&self, _request: &Self::Request) -> &'static str {
        ""
    }

    /// What `answer` means for the connection.
    fn judge(&self, _answer: &Self::Answer) -> Verdict {
        Verdict::Keep
    }

    /// Whether a pooled connection can still carry a request (a session library may know it
    /// is down before anything is sent).
    fn usable(&self, _conn: &Self::Conn) -> bool {
        true
    }

    /// The error of a request that finds no usable connection under
    /// [`Reconnect::Capture`].
    fn gone(&self) -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
    }

    /// Closes a connection politely (the driver bounds it with the deadline).
    fn close(&self, conn: Self::Conn) -> impl Future<Output = ()> + Send;
}

/// What a link may use while it connects: the asset's [`Scope`], the per-request deadline and
/// the capture's request counter.
pub(crate) struct Dial<'a> {
    scope: &'a Scope,
    timeout: Duration,
    stats: &'a mut CaptureStats,
    pace: &'a mut Pace,
}

impl Dial<'_> {
    /// The asset's scope, for the errors of the set-up.
    pub(crate) fn scope(&self) -> &Scope {
        self.scope
    }

    /// The per-request deadline.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The per-request deadline in milliseconds.
    pub(crate) fn timeout_ms(&self) -> u64 {
        millis(self.timeout)
    }

    /// The error of a set-up step `what` that went unanswered.
    pub(crate) fn timeout_error(&self, what: impl Into<String>, hint: &str) -> CollectError {
        self.scope.timeout(what, self.timeout_ms(), hint)
    }

    /// Counts `n` set-up requests about to be sent (a client library sends them itself), each
    /// within the asset's request rate.
    pub(crate) async fn count(&mut self, n: u32) {
        for _ in 0..n {
            self.pace.take().await;
        }
        self.stats.requests += n;
    }

    /// Resolves `host` under the deadline.
    pub(crate) async fn resolve(
        &mut self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, CollectError> {
        let lookup = async {
            tokio::net::lookup_host((host, port))
                .await
                .map(Iterator::collect)
        };
        match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => Err(self.timeout_error("connect", "")),
            Ok(Err(source)) => Err(self.scope.connect(source)),
            Ok(Ok(addrs)) => Ok(addrs),
        }
    }

    /// The error of a host that resolved to no address that accepted.
    pub(crate) fn no_address(host: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }

    /// Resolves `host` and opens TCP to the first address that accepts, all under one
    /// deadline. Requests are small and strictly request/response: Nagle is off.
    pub(crate) async fn tcp(&mut self, host: &str, port: u16) -> Result<TcpStream, CollectError> {
        let connect = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            let mut last = Self::no_address(host);
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        let stream = match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => return Err(self.timeout_error("connect", "")),
            Ok(Err(source)) => return Err(self.scope.connect(source)),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Runs one set-up request `what` under the deadline, counting it; a timeout is an error
    /// naming `what`, with `hint`.
    pub(crate) async fn step<T>(
        &mut self,
        what: &str,
        hint: &str,
        request: impl Future<Output = T>,
    ) -> Result<T, CollectError> {
        self.pace.take().await;
        self.stats.requests += 1;
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| self.timeout_error(what, hint))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The asset's request rate (`max_requests_per_sec`): at most that many requests in any one
/// second (a sliding window over the last requests' send times, kept across polls with the
/// pooled connection). A capture of up to that many requests goes out at once; a larger one
/// waits for the window, so a PLC's communication processor, which also serves the HMI and
/// SCADA, never sees more from the gateway. Waiting counts against the capture's deadline,
/// never the request's.
#[derive(Debug)]
pub(crate) struct Pace {
    per_sec: usize,
    /// When the last `per_sec` requests went out, oldest first.
    sent: std::collections::VecDeque<Instant>,
}

impl Pace {
    const WINDOW: Duration = Duration::from_secs(1);

    /// A pace of `per_sec` requests per second (at least one).
    pub(crate) fn new(per_sec: u32) -> Self {
        let per_sec = usize::try_from(per_sec).unwrap_or(usize::MAX).max(1);
        Pace {
            per_sec,
            sent: std::collections::VecDeque::new(),
        }
    }

    /// Waits until one more request may go out, and counts it as sent.
    pub(crate) async fn take(&mut self) {
        if self.sent.len() >= self.per_sec
            && let Some(oldest) = self.sent.pop_front()
        {
            tokio::time::sleep_until(oldest + Self::WINDOW).await;
        }
        self.sent.push_back(Instant::now());
    }
}

/// One asset's pooled connection over a [`Link`], and the rules of the module docs.
pub(crate) struct Driver<L: Link> {
    /// The protocol's link (its settings and what it learnt of the device).
    pub(crate) link: L,
    scope: Scope,
    timeout: Duration,
    conn: Option<L::Conn>,
    /// Whether the pooled connection has carried a request.
    served: bool,
    /// Whether this capture lost its connection ([`Reconnect::Capture`]).
    lost: bool,
    /// Whether a capture is running; still set when one was abandoned at its deadline.
    in_flight: bool,
    stats: CaptureStats,
    /// The running capture's memory lease (none outside a capture).
    meter: Meter,
    /// The asset's request rate.
    pace: Pace,
}

impl<L: Link> std::fmt::Debug for Driver<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("asset", &self.scope.asset)
            .field("address", &self.scope.address)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl<L: Link> Driver<L> {
    /// A driver for `asset` over `link`; nothing is sent until the first request.
    pub(crate) fn new(asset: &AssetConfig, link: L) -> Self {
        Self::with_scope(
            Scope::new(&asset.id, &asset.address),
            asset.timeout_ms,
            asset.max_requests_per_sec,
            link,
        )
    }

    /// A driver whose errors name `scope` (OPC UA names its endpoint URL).
    pub(crate) fn with_scope(scope: Scope, timeout_ms: u64, per_sec: u32, link: L) -> Self {
        Driver {
            link,
            scope,
            timeout: Duration::from_millis(timeout_ms),
            conn: None,
            served: false,
            lost: false,
            in_flight: false,
            stats: CaptureStats::default(),
            meter: Meter::default(),
            pace: Pace::new(per_sec),
        }
    }

    /// The asset's scope: every error of this asset is built through it.
    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The per-request deadline in milliseconds.
    pub(crate) fn timeout_ms(&self) -> u64 {
        millis(self.timeout)
    }

    /// The open connection, if any.
    pub(crate) fn conn(&self) -> Option<&L::Conn> {
        self.conn.as_ref()
    }

    /// The open connection, if any, to update what it learnt.
    pub(crate) fn conn_mut(&mut self) -> Option<&mut L::Conn> {
        self.conn.as_mut()
    }

    /// Whether a connection is pooled.
    pub(crate) fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// What the current capture cost so far.
    pub(crate) fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// Starts a capture: fresh counters; answers are charged to `meter`.
    pub(crate) fn begin(&mut self, meter: Meter) {
        self.stats = CaptureStats::default();
        self.lost = false;
        self.in_flight = true;
        self.meter = meter;
    }

    /// Ends a capture that ran to its end (successfully or not).
    pub(crate) fn end(&mut self) {
        self.in_flight = false;
        self.meter = Meter::default();
    }

    /// The running capture's memory lease.
    pub(crate) fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Charges `answer`, received for `request`, to the capture's memory lease: a capture too
    /// big for the whole pool fails as a bound, one that must give way is deferred. The answer
    /// arrived whole, so the connection stays usable either way.
    async fn charge(
        &mut self,
        request: &L::Request,
        answer: &L::Answer,
    ) -> Result<(), CollectError> {
        let bytes = u64::try_from(self.link.size(answer)).unwrap_or(u64::MAX);
        // Only the meter is held across the wait (a connection need not be `Sync`).
        let meter = self.meter.clone();
        match meter.charge(bytes).await {
            Ok(()) => Ok(()),
            Err(refusal) => Err(self.scope.budget(self.link.describe(request), refusal)),
        }
    }

    /// Whether a failed capture is run once more on a fresh connection: only under
    /// [`Reconnect::Capture`], when the capture started on a `pooled` connection, lost it, and
    /// has not connected since.
    pub(crate) fn may_rerun(&self, pooled: bool) -> bool {
        L::RECONNECT == Reconnect::Capture && pooled && self.lost && self.stats.connects == 0
    }

    /// Drops the connection without a word: after a malformed answer or a bound, when the
    /// stream can no longer be trusted (or an open upload must be released).
    pub(crate) fn drop_connection(&mut self) {
        self.conn = None;
    }

    /// Makes sure a usable connection is open, opening one if needed; `true` when it opened
    /// one.
    pub(crate) async fn connect(&mut self) -> Result<bool, CollectError> {
        if self.conn.as_ref().is_some_and(|c| self.link.usable(c)) {
            return Ok(false);
        }
        self.conn = None;
        let mut dial = Dial {
            scope: &self.scope,
            timeout: self.timeout,
            stats: &mut self.stats,
            pace: &mut self.pace,
        };
        let conn = self.link.connect(&mut dial).await?;
        self.stats.connects += 1;
        self.conn = Some(conn);
        self.served = false;
        tracing::debug!(address = %self.scope.address, "connected");
        Ok(true)
    }

    /// Sends one request and returns its answer, under the rules of the module docs.
    pub(crate) async fn exchange(
        &mut self,
        request: &L::Request,
    ) -> Result<L::Answer, CollectError> {
        match self.exchange_or_dropped(request).await? {
            Ok(answer) => Ok(answer),
            Err(source) => Err(self.scope.transport(self.link.describe(request), source)),
        }
    }

    /// [`exchange`](Self::exchange), except that a fresh connection the device closes in
    /// answer to this very request comes back as `Ok(Err(..))`, for the collector to judge:
    /// some devices close the connection on a service they do not offer.
    pub(crate) async fn exchange_or_dropped(
        &mut self,
        request: &L::Request,
    ) -> Result<Result<L::Answer, io::Error>, CollectError> {
        let answer = self.exchange_uncharged(request).await?;
        if let Ok(answer) = &answer {
            self.charge(request, answer).await?;
        }
        Ok(answer)
    }

    /// [`exchange_or_dropped`](Self::exchange_or_dropped) before the answer is charged.
    async fn exchange_uncharged(
        &mut self,
        request: &L::Request,
    ) -> Result<Result<L::Answer, io::Error>, CollectError> {
        let mut retried = false;
        loop {
            if self.conn.as_ref().is_some_and(|c| !self.link.usable(c)) {
                self.conn = None;
            }
            if self.conn.is_none() {
                if L::RECONNECT == Reconnect::Capture {
                    self.lost = true;
                    return Err(self
                        .scope
                        .transport(self.link.describe(request), self.link.gone()));
                }
                self.connect().await?;
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            self.pace.take().await;
            let served = std::mem::replace(&mut self.served, true);
            self.stats.requests += 1;
            let sent = tokio::time::timeout(self.timeout, self.link.exchange(conn, request)).await;
            match sent {
                Err(_) => {
                    self.conn = None;
                    let hint = self.link.timeout_hint(request);
                    return Err(self.scope.timeout(
                        self.link.describe(request),
                        self.timeout_ms(),
                        hint,
                    ));
                }
                Ok(Ok(answer)) => match (self.link.judge(&answer), L::RECONNECT) {
                    (Verdict::Keep, _) => return Ok(Ok(answer)),
                    (Verdict::Close, _) => {
                        self.conn = None;
                        return Ok(Ok(answer));
                    }
                    (Verdict::Stale, Reconnect::Capture) => {
                        self.conn = None;
                        self.lost = true;
                        return Ok(Ok(answer));
                    }
                    (Verdict::Stale, Reconnect::Exchange) if served && !retried => {
                        self.conn = None;
                        tracing::debug!("the device no longer knows the pooled connection");
                    }
                    (Verdict::Stale, Reconnect::Exchange) => return Ok(Ok(answer)),
                },
                Ok(Err(Failure::Lost(source))) => {
                    self.conn = None;
                    if L::RECONNECT == Reconnect::Capture {
                        self.lost = true;
                        return Err(self.scope.transport(self.link.describe(request), source));
                    }
                    if !served || retried {
                        return Ok(Err(source));
                    }
                    tracing::debug!(error = %source, "pooled connection lost, reconnecting once");
                }
                Ok(Err(Failure::Io(source))) => {
                    self.conn = None;
                    return Err(self.scope.transport(self.link.describe(request), source));
                }
                Ok(Err(Failure::Malformed(detail))) => {
                    self.conn = None;
                    return Err(self.scope.malformed(self.link.describe(request), detail));
                }
            }
            retried = true;
        }
    }

    /// Closes the connection. After a capture abandoned at its deadline the device is in an
    /// unknown state (slow, stuck): the connection is dropped without waiting on it.
    /// Otherwise the link closes it politely, within the per-request deadline.
    pub(crate) async fn close(&mut self) {
        let abandoned = std::mem::take(&mut self.in_flight);
        let Some(conn) = self.conn.take() else {
            return;
        };
        if abandoned {
            return;
        }
        let _ = tokio::time::timeout(self.timeout, self.link.close(conn)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Pace;
    use std::time::Duration;
    use tokio::time::Instant;

    /// Takes `n` requests and returns how long they waited in all (paused time: the clock
    /// moves only when every task waits).
    async fn take(pace: &mut Pace, n: u32) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            pace.take().await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_holds_over_time_and_the_bucket_refills_while_idle() {
        let mut pace = Pace::new(5);
        assert_eq!(
            take(&mut pace, 5).await,
            Duration::ZERO,
            "a full second's burst"
        );
        // The next five wait for the window: all of them one second after the first five.
        assert_eq!(take(&mut pace, 5).await, Duration::from_secs(1));
        // Idle for a while: the burst is back, and not more than that.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(take(&mut pace, 5).await, Duration::ZERO);
        assert_eq!(take(&mut pace, 1).await, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_per_second_means_at_most_fifty_in_any_second() {
        let mut pace = Pace::new(50);
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..500 {
            pace.take().await;
            sent.push(start.elapsed());
        }
        for (i, at) in sent.iter().enumerate() {
            let within = sent[i..]
                .iter()
                .take_while(|t| **t < *at + Duration::from_secs(1))
                .count();
            assert!(within <= 50, "{within} requests in the second from {at:?}");
        }
        // 500 requests: 50 a second, so the last goes out after nine seconds.
        assert_eq!(sent[499], Duration::from_secs(9));
    }
}
