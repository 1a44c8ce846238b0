//! An in-test upstream: a real HTTP server on 127.0.0.1:0 that receives CloudEvents batches
//! the way a central system would, and can be told to answer 503 for a while.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value as Json;

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

async fn receive(State(st): State<St>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if st.received.down.load(Ordering::SeqCst) {
        st.received.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
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
        return StatusCode::BAD_REQUEST;
    }
    let Ok(Json::Array(batch)) = serde_json::from_slice::<Json>(&body) else {
        st.received.bad.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST;
    };
    st.received.events.lock().expect("lock").extend(batch);
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
}
