//! An in-test upstream: a real HTTP server on 127.0.0.1:0 that receives CloudEvents batches
//! the way a central system would, and can be told to answer 503 for a while, or scripted
//! per request ([`Received::script`]): a redirect with a `Location`, 413 for batches over a
//! size or holding one event, 422 for one event, 401, 429 with `Retry-After`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value as Json;

/// A scripted answer: the status and headers to answer a batch with instead of accepting it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }
}

/// Decides, per batch, whether to answer something else than 200 (`None` accepts it).
pub type Script = Box<dyn Fn(&[Json]) -> Option<Answer> + Send + Sync>;

/// One request as the receiver answered it.
#[derive(Clone, Debug)]
pub struct Request {
    pub at: Instant,
    pub status: u16,
    /// The `otdriftseq` of every event in the batch.
    pub seqs: Vec<i64>,
}

/// What the receiver saw.
#[derive(Default)]
pub struct Received {
    /// Every event of every accepted batch, in arrival order (duplicates included).
    pub events: Mutex<Vec<Json>>,
    /// Requests answered 503.
    pub refused: AtomicUsize,
    /// Requests whose content type or token was wrong.
    pub bad: AtomicUsize,
    /// While true, every request is answered 503.
    pub down: AtomicBool,
    /// When set, asked first for every well-formed batch.
    pub script: Mutex<Option<Script>>,
    /// Every well-formed batch and how it was answered, in order.
    pub requests: Mutex<Vec<Request>>,
    /// GET requests to the redirect target (a POST that followed a redirect as a GET).
    pub redirected_gets: AtomicUsize,
}

impl Received {
    /// Events received, de-duplicated on `id` as a CloudEvents receiver does, first arrival
    /// order kept.
    pub fn unique(&self) -> Vec<Json> {
        let events = self.events.lock().expect("lock");
        let mut seen = std::collections::HashSet::new();
        events
            .iter()
            .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_owned()))
            .cloned()
            .collect()
    }

    /// Replaces the script (`None`: accept everything).
    pub fn set_script(&self, script: Option<Script>) {
        *self.script.lock().expect("lock") = script;
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    /// The `type`s received so far (de-duplicated).
    pub fn types(&self) -> Vec<String> {
        self.unique()
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect()
    }
}

#[derive(Clone)]
struct St {
    received: Arc<Received>,
    token: String,
}

async fn receive(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    if st.received.down.load(Ordering::SeqCst) {
        st.received.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let token_ok = st.token.is_empty() || auth == format!("Bearer {}", st.token);
    if content_type != "application/cloudevents-batch+json" || !token_ok {
        st.received.bad.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST.into_response();
    }
    let Ok(Json::Array(batch)) = serde_json::from_slice::<Json>(&body) else {
        st.received.bad.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST.into_response();
    };
    let answer = st
        .received
        .script
        .lock()
        .expect("lock")
        .as_ref()
        .and_then(|script| script(&batch));
    let status = answer.as_ref().map_or(200, |a| a.status);
    st.received.requests.lock().expect("lock").push(Request {
        at: Instant::now(),
        status,
        seqs: batch
            .iter()
            .filter_map(|e| e["otdriftseq"].as_i64())
            .collect(),
    });
    if let Some(answer) = answer {
        let mut response = (
            StatusCode::from_u16(answer.status).expect("status"),
            format!("scripted {}", answer.status),
        )
            .into_response();
        for (name, value) in answer.headers {
            response
                .headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        return response;
    }
    st.received.events.lock().expect("lock").extend(batch);
    StatusCode::OK.into_response()
}

/// Where a scripted redirect points: answers a GET with 200, as a moved receiver would, and
/// counts it (a client that follows a 303 would call this a delivery).
async fn moved(State(st): State<St>) -> StatusCode {
    st.received.redirected_gets.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw; shared with the server task.
    pub received: Arc<Received>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Starts a receiver expecting `token` (any, or none, when empty), on its own runtime
    /// thread.
    pub fn start(token: &str) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let received = Arc::new(Received::default());
        let state = St {
            received: received.clone(),
            token: token.to_owned(),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route("/events", post(receive))
            .route("/moved", get(moved).post(moved))
            .with_state(state);
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            received,
            _runtime: runtime,
        }
    }

    /// The URL to configure as `[upstream] url`.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// The redirect target.
    pub fn moved_url(&self) -> String {
        format!("http://{}/moved", self.addr)
    }
}
