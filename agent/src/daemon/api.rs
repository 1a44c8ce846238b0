//! The pull and approval API (`docs/reference/api.md`), on axum.
//!
//! Every route but `/healthz` requires `Authorization: Bearer <token>`; tokens are compared
//! in constant time (both sides are hashed to 32 bytes first, so not even the length leaks).
//! Two scopes: the token of `[api] token_file` reads (events, assets, metrics); `POST
//! /v1/approvals` needs the token of `[api] approve_token_file`, a second secret, and is off
//! without it, so a central system or dashboard that only reads can never move a baseline.
//! The approval token reads too. Request bodies are capped at 16 KiB: the only body is an
//! approval token.
//!
//! A client that fails to authenticate 20 times in a minute is answered 429 for a minute
//! without its tokens being compared ([`super::server::AuthLimiter`]); every request must be
//! read and answered within [`super::server::REQUEST_TIMEOUT`]. Connection limits and header
//! timeouts are the server's ([`super::server`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use otdrift_config::Config;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use subtle::ConstantTimeEq as _;

use super::db::Db;
use super::metrics::Metrics;
use super::server::{self, AuthLimiter};
use crate::approval::{self, Outcome};
use crate::events::cloud_event;
use crate::render;

/// The largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// The most events one page holds.
pub const MAX_PAGE: u32 = 1000;

/// The most drift changes one page of `GET /v1/drift/{id}/changes` holds.
pub const MAX_CHANGES_PAGE: u32 = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub db: Db,
    /// The config (approvers, assets).
    pub config: Arc<Config>,
    /// BLAKE3 of the read token.
    pub token_hash: [u8; 32],
    /// BLAKE3 of the approval token; `None` turns approvals over HTTP off.
    pub approve_token_hash: Option<[u8; 32]>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Wakes the push worker after an approval queued events.
    pub events: Arc<super::wake::Wake>,
    /// The agent's public key (`ed25519:...`), shown with the assets.
    pub agent_key: String,
    /// Failed authentications per client.
    pub auth_limiter: Arc<AuthLimiter>,
    /// The status page's sessions (`[api] ui`).
    pub ui_sessions: Arc<super::ui::Sessions>,
    /// Whether the listener speaks TLS (session cookies are then `Secure`).
    pub tls: bool,
}

/// Every route, as `docs/reference/api.md` lists them (a test keeps the two together).
pub const ROUTES: [(&str, &str); 8] = [
    ("GET", "/v1/events"),
    ("GET", "/v1/assets"),
    ("GET", "/metrics"),
    ("GET", "/v1/outbox"),
    ("GET", "/v1/outbox/parked"),
    ("GET", "/v1/drift/{id}/changes"),
    ("POST", "/v1/approvals"),
    ("GET", "/healthz"),
];

/// The routes.
pub fn router(state: ApiState) -> Router {
    let [
        events_,
        assets_,
        metrics_,
        outbox_,
        parked_,
        changes_,
        approvals_,
        health_,
    ] = ROUTES.map(|(_, path)| path);
    let reading = Router::new()
        .route(events_, get(events))
        .route(assets_, get(assets))
        .route(metrics_, get(metrics))
        .route(outbox_, get(outbox))
        .route(parked_, get(outbox_parked))
        .route(changes_, get(drift_changes))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let approving = Router::new()
        .route(approvals_, post(approvals))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth_approve));
    let ui = if state.config.api.as_ref().is_some_and(|a| a.ui) {
        super::ui::router(state.clone())
    } else {
        Router::new()
    };
    Router::new()
        .route(health_, get(|| async { "ok\n" }))
        .merge(reading)
        .merge(approving)
        .merge(ui)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(deadline))
        .with_state(state)
}

/// Reading a request's body and answering it take at most [`server::REQUEST_TIMEOUT`].
async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(server::REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request was not read and answered in time",
        ),
    }
}

fn error(status: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": reason, "message": message.into()})),
    )
        .into_response()
}

/// Which of the configured tokens the request presents.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    /// No token, or a wrong one.
    None,
    /// The read token.
    Read,
    /// The approval token.
    Approve,
}

fn presented(state: &ApiState, headers: &HeaderMap) -> Presented {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map_or(Presented::None, |token| scope(state, token))
}

/// Which configured token `token` is (the bearer header's, or the status page's login form).
pub(crate) fn scope(state: &ApiState, token: &str) -> Presented {
    let hash = otdrift_core::Digest::of(token.trim().as_bytes());
    // Both comparisons always run, so the timing does not say which token matched.
    let read = bool::from(hash.as_bytes().ct_eq(&state.token_hash));
    let approve = state
        .approve_token_hash
        .is_some_and(|h| bool::from(hash.as_bytes().ct_eq(&h)));
    match (read, approve) {
        (_, true) => Presented::Approve,
        (true, false) => Presented::Read,
        (false, false) => Presented::None,
    }
}

fn throttled(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-failures",
        format!("too many requests without a valid token from this address; try again in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    close(response)
}

/// Asks hyper to close the connection after this answer: a client without a valid token
/// must not keep a connection slot warm with cheap refused requests.
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Who is asking: `Err` with the answer when the client is throttled or presents no valid
/// token (counted against its address), else which token it presented.
fn authenticate(state: &ApiState, request: &Request) -> Result<Presented, Box<Response>> {
    let ip = server::peer(request).map(|p| p.ip());
    if let Some(wait) = ip.and_then(|ip| state.auth_limiter.throttled(ip)) {
        state.metrics.api_auth_throttled.inc();
        return Err(Box::new(throttled(wait)));
    }
    match presented(state, request.headers()) {
        Presented::None => {
            state.metrics.api_auth_failures.inc();
            if let Some(ip) = ip
                && state.auth_limiter.failed(ip)
            {
                tracing::warn!(client = %ip, "API client throttled after repeated failed authentication");
            }
            Err(Box::new(unauthorized()))
        }
        who => Ok(who),
    }
}

fn unauthorized() -> Response {
    close(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(
                json!({"error": "unauthorized", "message": "a valid bearer token is required"}),
            ),
        )
            .into_response(),
    )
}

async fn auth(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match authenticate(&state, &request) {
        Ok(_) => next.run(request).await,
        Err(response) => *response,
    }
}

async fn auth_approve(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    // Who is asking comes first: an unknown client learns nothing about the scopes.
    let who = match authenticate(&state, &request) {
        Ok(who) => who,
        Err(response) => return *response,
    };
    if state.approve_token_hash.is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "approvals-disabled",
            "approvals over HTTP are off on this agent: set [api] approve_token_file to allow them",
        );
    }
    match who {
        Presented::Approve => next.run(request).await,
        Presented::Read => error(
            StatusCode::FORBIDDEN,
            "read-only-token",
            "this token may only read; POST /v1/approvals needs the token of [api] approve_token_file",
        ),
        Presented::None => unauthorized(),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn events(State(state): State<ApiState>, Query(q): Query<EventsQuery>) -> Response {
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let read = state
        .db
        .read(move |s| Ok((s.pruned_position(after)?, s.events_after(after, limit)?)))
        .await;
    match read {
        // Retention deleted events after `after`: the client lost them and must know.
        Ok((Some(gone), _)) => (
            StatusCode::GONE,
            axum::Json(json!({
                "error": "pruned",
                "message": format!(
                    "events after {after} up to {} were deleted by retention; resume with after={}",
                    gone.pruned_through, gone.pruned_through
                ),
                "pruned_through": gone.pruned_through,
                "oldest_seq": gone.oldest_seq,
            })),
        )
            .into_response(),
        Ok((None, rows)) => {
            let next = rows.last().map_or(after, |e| e.seq);
            let events: Vec<Json> = rows
                .iter()
                .map(|e| cloud_event(&state.config.agent.id, e))
                .collect();
            axum::Json(json!({"events": events, "next": next})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

async fn assets(State(state): State<ApiState>) -> Response {
    let config = state.config.clone();
    let read = state
        .db
        .read(move |s| {
            Ok((
                render::asset_rows(&config, s)?,
                s.delivery_state(otdrift_store::UPSTREAM)?,
            ))
        })
        .await;
    match read {
        Ok((rows, delivery)) => axum::Json(json!({
            "agent": state.config.agent.id,
            "agent_key": state.agent_key,
            "assets": rows,
            // A central system that stopped receiving pushes can see why here.
            "delivery": render::delivery_json(
                &delivery,
                state.config.upstream.as_ref().map(|u| u.url.as_str()),
            ),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

/// The HTTP status for a rejection reason: a token that is not a token is a bad request;
/// one that is not trusted is forbidden; one whose claims do not hold is unprocessable; one
/// that conflicts with what the agent already recorded is a conflict.
pub(crate) fn rejection_status(code: &str) -> StatusCode {
    match code {
        "malformed" | "duplicate-member" => StatusCode::BAD_REQUEST,
        "algorithm" | "unknown-approver" | "signature" | "issuer-mismatch" => StatusCode::FORBIDDEN,
        "replay" | "from-mismatch" | "not-pending" => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn approvals(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let Ok(raw) = String::from_utf8(body.to_vec()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "malformed",
            "the body is not UTF-8 text",
        );
    };
    let config = state.config.clone();
    let outcome = state
        .db
        .call(move |s| approval::submit(&config, s, &raw, &format!("api:{}", peer.ip())))
        .await;
    state.events.queued();
    match outcome {
        Ok(Outcome::Applied { token, applied }) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "applied",
                "asset": token.claims.sub,
                "change_id": token.claims.change_id,
                "baseline": {
                    "digest": applied.baseline.digest,
                    "previous": applied.previous.as_ref().map(|b| b.digest),
                },
                "drift_id": applied.drift.as_ref().map(|d| d.id),
                "retroactive": applied.approval.retroactive,
            })),
        )
            .into_response(),
        Ok(Outcome::Pending { token, approval }) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "status": "pending",
                "asset": token.claims.sub,
                "change_id": token.claims.change_id,
                "to": token.claims.to,
                "content": token.claims.content,
                "expires_at": otdrift_core::format_timestamp(approval.expires_at),
                "waiting_for": approval.reason,
            })),
        )
            .into_response(),
        Ok(Outcome::Reviewed { token, review }) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "reviewed",
                "asset": token.claims.sub,
                "change_id": token.claims.change_id,
                "counted": review.counted,
                "reviewers": review.reviewers,
                "needed": review.change.review_approvals,
                "change_status": review.change.status,
            })),
        )
            .into_response(),
        Ok(Outcome::Withdrawn { token, approval }) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "withdrawn",
                "asset": token.claims.sub,
                "change_id": token.claims.change_id,
                "withdrawn": approval.jti,
                "approval_status": approval.status.as_str(),
            })),
        )
            .into_response(),
        Ok(Outcome::Assets { token, results }) => {
            // 200 when every asset's part was applied or is pending, else the status of the
            // first refusal; the body says what happened to each.
            let status = results
                .iter()
                .find_map(|(_, o)| match o {
                    Outcome::Rejected { code, .. } => Some(rejection_status(code)),
                    _ => None,
                })
                .unwrap_or(StatusCode::OK);
            (
                status,
                axum::Json(json!({
                    "status": "assets",
                    "change_id": token.claims.change_id,
                    "results": results
                        .iter()
                        .map(|(asset, o)| approval::asset_result_json(asset, o))
                        .collect::<Vec<_>>(),
                })),
            )
                .into_response()
        }
        Ok(Outcome::Rejected { code, message }) => (
            rejection_status(&code),
            axum::Json(json!({"status": "rejected", "reason": code, "message": message})),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    if let Ok(depth) = state.db.read(|s| s.outbox_depth()).await {
        state
            .metrics
            .outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn outbox(State(state): State<ApiState>) -> Response {
    match state
        .db
        .read(|s| s.delivery_state(otdrift_store::UPSTREAM))
        .await
    {
        Ok(d) => axum::Json(render::delivery_json(
            &d,
            state.config.upstream.as_ref().map(|u| u.url.as_str()),
        ))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

#[derive(Deserialize)]
struct ParkedQuery {
    all: Option<bool>,
}

async fn outbox_parked(State(state): State<ApiState>, Query(q): Query<ParkedQuery>) -> Response {
    let all = q.all.unwrap_or(false);
    match state
        .db
        .read(move |s| s.parked_events(otdrift_store::UPSTREAM, all))
        .await
    {
        Ok(parked) => axum::Json(json!({
            "destination": otdrift_store::UPSTREAM,
            "parked": parked
                .iter()
                .map(|p| render::parked_json(&state.config.agent.id, p))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

#[derive(Deserialize)]
struct ChangesQuery {
    after: Option<u64>,
    limit: Option<u32>,
    observed: Option<String>,
}

/// A page of a drift's changes: the pull link of a truncated `drift.detected` event. With
/// `observed` naming a state the drift has since moved on from, that state's changes are
/// computed again from the stored snapshots (the drift record keeps only the latest list).
async fn drift_changes(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
    Query(q): Query<ChangesQuery>,
) -> Response {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(500).clamp(1, MAX_CHANGES_PAGE);
    let observed: Option<otdrift_core::Digest> = match q.observed.as_deref().map(str::parse) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad-digest",
                format!("observed is not a digest: {e}"),
            );
        }
    };
    let config = state.config.clone();
    let page = state
        .db
        .read(move |s| render::drift_changes_page(&config, s, id, observed, after, limit))
        .await;
    match page {
        Ok(Some(page)) => axum::Json(page).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no drift {id}, or its observed state is not stored"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}
