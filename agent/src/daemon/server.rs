//! Serving the API without letting clients take the gateway's file descriptors.
//!
//! The unit allows 4096 open files (`LimitNOFILE`), and the PLC connections, the upstream and
//! SQLite need them. An HTTP server that accepts every connection and waits forever for its
//! headers lets a few thousand slow, unauthenticated connections take them all. So:
//!
//! - **connection limit**: at most `[api] max_connections` (default 256) connections are
//!   served at once. When all are taken, the oldest connection that has been open for
//!   [`EVICT_AFTER`] without sending one complete request (a slow or silent client) is closed
//!   to make room; when there is none, the new connection is answered `503` and closed at
//!   once, so it holds its file descriptor for microseconds. A real client sends its request
//!   right after connecting, so holding slots with half-sent requests keeps nobody out;
//! - **header read timeout**: a client has [`HEADER_READ_TIMEOUT`] to send a request's
//!   headers; hyper's timer also runs while a keep-alive connection waits for its next
//!   request, so the same bound is the **idle timeout** between requests;
//! - **request timeout**: reading the body and answering take at most [`REQUEST_TIMEOUT`]
//!   (408 after it), so a body sent a byte a minute cannot hold a slot either;
//! - **connection age**: after [`MAX_CONNECTION_AGE`] a connection is closed after its current
//!   request, and after a further [`CLOSE_GRACE`] in any case (a client that never reads
//!   its answer);
//! - **failed authentication**: see [`AuthLimiter`].
//!
//! hyper's own HTTP/1 connection builder does the protocol and the header timeout; the accept
//! loop around it only counts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use chrono::{DateTime, Utc};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use otdrift_core::Clock;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::metrics::Metrics;

/// How long a client has to send a request's headers; also how long a keep-alive connection
/// may sit idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reading a request's body and answering it may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one connection is served before it is closed after its current request.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);

/// How long a connection asked to close (age, shutdown) gets before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// How long a connection may stay open without a complete request before a new connection
/// may take its slot when all are taken.
pub const EVICT_AFTER: Duration = Duration::from_secs(2);

/// A served connection, as the accept loop sees it.
struct Slot {
    accepted: tokio::time::Instant,
    /// Set once hyper handed one complete request to the service.
    served: std::sync::atomic::AtomicBool,
    /// Cancelled to close the connection (to make room for a new one).
    evict: CancellationToken,
}

/// The open connections in the order they were accepted.
type Slots = Arc<Mutex<std::collections::BTreeMap<u64, Arc<Slot>>>>;

/// Closes the oldest connection that never completed a request and is older than
/// [`EVICT_AFTER`]; returns whether there was one.
fn evict_one(open: &Slots) -> bool {
    let now = tokio::time::Instant::now();
    let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
    let victim = open
        .iter()
        .find(|(_, s)| {
            !s.served.load(std::sync::atomic::Ordering::Relaxed)
                && now.duration_since(s.accepted) >= EVICT_AFTER
        })
        .map(|(id, _)| *id);
    match victim.and_then(|id| open.remove(&id)) {
        Some(slot) => {
            slot.evict.cancel();
            true
        }
        None => false,
    }
}

/// What a connection beyond the limit is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Type: application/json\r\nContent-Length: 74\r\nConnection: close\r\n\r\n{\"error\":\"busy\",\"message\":\"too many open connections; try again shortly\"}\n";

/// Serves `app` on `listener` within the limits above until `stop`, then lets the connections
/// in flight finish for up to [`CLOSE_GRACE`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let open: Slots = Arc::default();
    let mut next_id: u64 = 0;
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors (EMFILE) or a connection reset before accept: wait
                // a moment rather than spin.
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            // All taken: make room by closing the oldest silent connection, if any.
            Err(_) if evict_one(&open) => {
                metrics.api_connections_evicted.inc();
                tokio::time::timeout(Duration::from_millis(100), slots.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            metrics.api_connections_rejected.inc();
            let _ = stream.try_write(BUSY);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let slot = Arc::new(Slot {
            accepted: tokio::time::Instant::now(),
            served: std::sync::atomic::AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        open.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, slot.clone());
        let app = app.clone();
        let builder = builder.clone();
        let metrics = metrics.clone();
        let stop = stop.clone();
        let open = open.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            metrics.api_connections.inc();
            let marker = slot.clone();
            let service = TowerToHyperService::new(tower::service_fn(
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    marker
                        .served
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(request)
                },
            ));
            match tls {
                None => drive(TokioIo::new(stream), &builder, service, &slot, &stop, peer).await,
                // The handshake counts against the header timeout: a client that opens TLS
                // and stalls holds its slot no longer than one that sends no request.
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            drive(TokioIo::new(tls), &builder, service, &slot, &stop, peer).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
            open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            metrics.api_connections.dec();
        });
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_GRACE, drain).await.is_err() {
        tracing::warn!("API connections did not close in time");
    }
}

/// Serves one connection until it ends, is evicted, ages out or the server stops (then
/// gracefully, within [`CLOSE_GRACE`]).
async fn drive<I, S, B>(
    io: I,
    builder: &hyper::server::conn::http1::Builder,
    service: S,
    slot: &Slot,
    stop: &CancellationToken,
    peer: std::net::SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::http::Response<B>,
        > + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let closing = tokio::select! {
        r = connection.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "API connection ended");
            }
            false
        }
        () = slot.evict.cancelled() => {
            tracing::debug!(peer = %peer, "API connection closed to make room: no request yet");
            false
        }
        () = tokio::time::sleep(MAX_CONNECTION_AGE) => true,
        () = stop.cancelled() => true,
    };
    if closing {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await;
    }
}

/// Failed authentications allowed per client and minute before it is throttled.
pub const AUTH_FAILURES_PER_MINUTE: u32 = 20;

/// How long a throttled client is answered 429 without its token being looked at.
pub const AUTH_THROTTLE: Duration = Duration::from_secs(60);

/// Clients tracked at most; beyond it the least recently failed expired ones are dropped, and
/// when none has expired, new clients share one bucket (so an attacker with many addresses
/// throttles only the clients nobody knew yet, never the memory).
pub const AUTH_TRACKED_CLIENTS: usize = 4096;

/// Counts failed authentications per client (an IPv4 address, or an IPv6 /64, which one
/// host usually owns whole) and throttles a client after [`AUTH_FAILURES_PER_MINUTE`] in a
/// minute: for [`AUTH_THROTTLE`] it is answered 429 with `Retry-After`, and its tokens are
/// not compared, so guessing costs it a minute per twenty tries. Time comes from the
/// injectable clock.
pub struct AuthLimiter {
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<ClientKey, Bucket>>,
}

/// Who a failure is counted against.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum ClientKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    Overflow,
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    ClientKey::V6Prefix(prefix)
                }
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    window_start: DateTime<Utc>,
    failures: u32,
    blocked_until: Option<DateTime<Utc>>,
}

impl AuthLimiter {
    /// A limiter on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        AuthLimiter {
            clock,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How long `peer` is still throttled, `None` when it may try.
    pub fn throttled(&self, peer: IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = clients.get(&ClientKey::of(peer)).or_else(|| {
            // A client nobody tracked shares the overflow bucket while the map is full.
            (clients.len() >= AUTH_TRACKED_CLIENTS)
                .then(|| clients.get(&ClientKey::Overflow))
                .flatten()
        })?;
        let until = bucket.blocked_until?;
        (until > now).then(|| (until - now).to_std().unwrap_or(AUTH_THROTTLE))
    }

    /// Counts a failed authentication of `peer`; returns whether it is now throttled.
    pub fn failed(&self, peer: IpAddr) -> bool {
        let now = self.clock.now();
        let minute = chrono::TimeDelta::seconds(60);
        let throttle = chrono::TimeDelta::from_std(AUTH_THROTTLE).unwrap_or(minute);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = ClientKey::of(peer);
        if !clients.contains_key(&key) && clients.len() >= AUTH_TRACKED_CLIENTS {
            clients.retain(|_, b| {
                b.window_start + minute > now || b.blocked_until.is_some_and(|u| u > now)
            });
            if clients.len() >= AUTH_TRACKED_CLIENTS {
                key = ClientKey::Overflow;
            }
        }
        let bucket = clients.entry(key).or_insert(Bucket {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now - bucket.window_start >= minute {
            bucket.window_start = now;
            bucket.failures = 0;
        }
        bucket.failures = bucket.failures.saturating_add(1);
        if bucket.failures >= AUTH_FAILURES_PER_MINUTE {
            bucket.blocked_until = Some(now + throttle);
            bucket.window_start = now + throttle;
            bucket.failures = 0;
            return true;
        }
        false
    }
}

/// The peer address a request came from (set by [`serve`]).
pub fn peer(request: &axum::extract::Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use otdrift_core::ManualClock;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(
            otdrift_core::parse_timestamp("2026-12-02T08:00:00Z").expect("time"),
        ))
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        serde_json::from_str::<serde_json::Value>(body).expect("JSON body");
    }

    #[test]
    fn twenty_failures_in_a_minute_throttle_a_client_for_a_minute() {
        let clock = clock();
        let limiter = AuthLimiter::new(clock.clone());
        let attacker: IpAddr = "192.0.2.7".parse().expect("ip");
        let neighbour: IpAddr = "192.0.2.8".parse().expect("ip");
        for _ in 0..AUTH_FAILURES_PER_MINUTE - 1 {
            assert!(!limiter.failed(attacker));
        }
        assert_eq!(limiter.throttled(attacker), None);
        assert!(limiter.failed(attacker));
        assert_eq!(limiter.throttled(attacker), Some(AUTH_THROTTLE));
        assert_eq!(limiter.throttled(neighbour), None, "only the attacker");
        clock.advance(chrono::TimeDelta::seconds(59));
        assert_eq!(limiter.throttled(attacker), Some(Duration::from_secs(1)));
        clock.advance(chrono::TimeDelta::seconds(1));
        assert_eq!(limiter.throttled(attacker), None);
        // It starts from zero again.
        assert!(!limiter.failed(attacker));
    }

    #[test]
    fn failures_spread_over_minutes_never_throttle() {
        let clock = clock();
        let limiter = AuthLimiter::new(clock.clone());
        let client: IpAddr = "198.51.100.1".parse().expect("ip");
        for _ in 0..10 {
            for _ in 0..AUTH_FAILURES_PER_MINUTE / 2 {
                assert!(!limiter.failed(client));
            }
            clock.advance(chrono::TimeDelta::seconds(61));
        }
        assert_eq!(limiter.throttled(client), None);
    }

    #[test]
    fn an_ipv6_host_is_one_client_per_64_and_mapped_ipv4_is_ipv4() {
        let limiter = AuthLimiter::new(clock());
        for i in 0..AUTH_FAILURES_PER_MINUTE {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ip");
            limiter.failed(ip);
        }
        assert!(
            limiter
                .throttled("2001:db8:1:2:ffff::1".parse().expect("ip"))
                .is_some()
        );
        assert!(
            limiter
                .throttled("2001:db8:1:3::1".parse().expect("ip"))
                .is_none()
        );
        assert_eq!(
            ClientKey::of("::ffff:192.0.2.1".parse().expect("ip")),
            ClientKey::of("192.0.2.1".parse().expect("ip"))
        );
    }

    #[test]
    fn the_table_of_clients_is_bounded() {
        let clock = clock();
        let limiter = AuthLimiter::new(clock.clone());
        for i in 0..(AUTH_TRACKED_CLIENTS as u32 + 100) {
            let ip = IpAddr::from(i.to_be_bytes());
            limiter.failed(ip);
        }
        let size = limiter.clients.lock().expect("lock").len();
        assert!(size <= AUTH_TRACKED_CLIENTS + 1, "{size}");
        // A minute later the old entries make room again.
        clock.advance(chrono::TimeDelta::seconds(120));
        limiter.failed("203.0.113.9".parse().expect("ip"));
        let size = limiter.clients.lock().expect("lock").len();
        assert!(size <= 2, "{size}");
    }
}
