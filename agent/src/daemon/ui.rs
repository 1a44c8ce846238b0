//! The status page (`[api] ui = true`): what the engineer at the gateway reads in a browser.
//!
//! ```text
//! GET  /ui/login    the login form (the read token, typed into a password field)
//! POST /ui/login    token right: a session cookie (HttpOnly, SameSite=Strict, Secure over
//!                   TLS), 303 to /ui; wrong: the form again, counted like a failed bearer token
//! POST /ui/logout   the session ends
//! GET  /ui          assets: reachability, baseline, last verified, open drift, approvals
//! GET  /ui/drift    drift events, newest first;  GET /ui/drift/{id}: its item diff
//! GET  /ui/approvals  pending approvals;  GET /ui/audit: the audit chain's state
//! ```
//!
//! Server-rendered HTML without JavaScript (the Content-Security-Policy allows none), every
//! value escaped. Read-only by construction: the only forms are login and logout, and the
//! router holds no route that writes to the store. Sessions live in memory (a restart logs
//! everyone out), at most [`MAX_SESSIONS`], each for [`SESSION_TTL`]; only the BLAKE3 of a
//! session id is kept.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value as Json;

use super::api::ApiState;
use crate::evidence::html::{STYLE, esc};

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The most sessions kept; a new one beyond it ends the oldest.
pub const MAX_SESSIONS: usize = 256;

/// The session cookie's name.
pub const COOKIE: &str = "otdrift_ui";

/// The routes of the status page, as `docs/reference/api.md` lists them.
pub const ROUTES: [(&str, &str); 8] = [
    ("GET", "/ui"),
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("POST", "/ui/logout"),
    ("GET", "/ui/drift"),
    ("GET", "/ui/drift/{id}"),
    ("GET", "/ui/approvals"),
    ("GET", "/ui/audit"),
];

/// The page's sessions.
#[derive(Default)]
pub struct Sessions {
    /// BLAKE3 of the session id → when it ends.
    live: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Sessions {
    /// A new session; returns its id (the cookie's value).
    fn open(&self) -> Option<String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).ok()?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, until| *until > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k)
        {
            live.remove(&oldest);
        }
        live.insert(
            *otdrift_core::Digest::of(id.as_bytes()).as_bytes(),
            now + SESSION_TTL,
        );
        Some(id)
    }

    /// Whether `id` is a live session.
    fn valid(&self, id: &str) -> bool {
        // Keyed by the BLAKE3 of the id: looking it up reveals nothing of a live id.
        let key = otdrift_core::Digest::of(id.as_bytes());
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(key.as_bytes())
            .is_some_and(|until| *until > Instant::now())
    }

    fn close(&self, id: &str) {
        let key = otdrift_core::Digest::of(id.as_bytes());
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key.as_bytes());
    }
}

/// The status page's routes (merged into the API's router when `[api] ui` is on).
pub fn router(state: ApiState) -> Router<ApiState> {
    let pages = Router::new()
        .route(ROUTES[0].1, get(assets))
        .route(ROUTES[4].1, get(drift_list))
        .route(ROUTES[5].1, get(drift_detail))
        .route(ROUTES[6].1, get(approvals))
        .route(ROUTES[7].1, get(audit))
        .route(ROUTES[3].1, post(logout))
        .route_layer(middleware::from_fn_with_state(state, session));
    Router::new()
        .route(ROUTES[1].1, get(login_form).post(login))
        .merge(pages)
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

async fn session(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match cookie_of(request.headers()) {
        Some(id) if state.ui_sessions.valid(&id) => harden(next.run(request).await),
        _ => harden(see_other("/ui/login")),
    }
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// Headers every page carries: no scripts, no framing, no caching, no referrer.
fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// One page: the title, the navigation (the current entry marked), the body.
fn page(state: &ApiState, title: &str, current: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in [
        ("/ui", "Assets"),
        ("/ui/drift", "Drift"),
        ("/ui/approvals", "Approvals"),
        ("/ui/audit", "Audit chain"),
    ] {
        let mark = if name == current {
            " aria-current=\"page\" class=\"here\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{mark}>{name}</a> ");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t} — otdrift {agent}</title><style>{STYLE}\nnav{{margin:.5rem 0 1rem}}nav a{{margin-right:1rem}}nav a.here{{font-weight:700;text-decoration:none}}form.inline{{display:inline}}.bad{{color:#82071e;font-weight:600}}.good{{color:#116329}}</style></head><body>\n<header><h1>{t}</h1><div class=\"muted\">otdrift agent <b>{agent}</b> · read-only view · <form class=\"inline\" method=\"post\" action=\"/ui/logout\"><button type=\"submit\">Log out</button></form></div><nav>{nav}</nav></header>\n<main>\n{body}\n</main></body></html>\n",
        t = esc(title),
        agent = esc(&state.config.agent.id),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login_form(State(state): State<ApiState>) -> Response {
    harden(html(StatusCode::OK, login_page(&state, None)))
}

fn login_page(state: &ApiState, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"flag violation\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Log in — otdrift {agent}</title><style>{STYLE}</style></head><body>\n<h1>otdrift {agent}</h1><p>This page shows what the agent knows: assets, drift, approvals, the audit chain. It cannot change anything.</p>{error}<form method=\"post\" action=\"/ui/login\"><label for=\"token\">Read token (<code>[api] token_file</code>)</label><br><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required size=\"48\"> <button type=\"submit\">Log in</button></form></body></html>\n",
        agent = esc(&state.config.agent.id),
    )
}

async fn login(
    State(state): State<ApiState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let ip = Some(peer.ip());
    if let Some(wait) = ip.and_then(|ip| state.auth_limiter.throttled(ip)) {
        state.metrics.api_auth_throttled.inc();
        let msg = format!(
            "Too many failed logins from this address; try again in {} s.",
            wait.as_secs().max(1)
        );
        return harden(html(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(&state, Some(&msg)),
        ));
    }
    if super::api::scope(&state, &form.token) == super::api::Presented::None {
        state.metrics.api_auth_failures.inc();
        if let Some(ip) = ip {
            let _ = state.auth_limiter.failed(ip);
        }
        return harden(html(
            StatusCode::UNAUTHORIZED,
            login_page(&state, Some("That is not the read token of this agent.")),
        ));
    }
    let Some(id) = state.ui_sessions.open() else {
        return harden(html(
            StatusCode::INTERNAL_SERVER_ERROR,
            login_page(&state, Some("No session could be made (no randomness).")),
        ));
    };
    let secure = if state.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut response = see_other("/ui");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    harden(response)
}

async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_of(&headers) {
        state.ui_sessions.close(&id);
    }
    let mut response = see_other("/ui/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("otdrift_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// A JSON value for a cell: text as it is, `—` for nothing.
fn show(v: &Json) -> String {
    match v {
        Json::Null => "—".into(),
        Json::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

fn short(digest: &Json) -> String {
    digest
        .as_str()
        .map(|d| {
            let hex = d.strip_prefix("blake3:").unwrap_or(d);
            format!(
                "<code title=\"{}\">{}</code>",
                esc(d),
                esc(hex.get(..12).unwrap_or(hex))
            )
        })
        .unwrap_or_else(|| "—".into())
}

fn failed(state: &ApiState, what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "status page: cannot read {what}");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            state,
            "Error",
            "",
            &format!(
                "<p class=\"bad\">Cannot read {}: {}</p>",
                esc(what),
                esc(&e.to_string())
            ),
        ),
    )
}

async fn assets(State(state): State<ApiState>) -> Response {
    let config = state.config.clone();
    let rows = match state
        .db
        .read(move |s| crate::render::asset_rows(&config, s))
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(&state, "the assets", e),
    };
    let drifting = rows
        .iter()
        .filter(|r| r["open_drift"].as_u64().unwrap_or(0) > 0)
        .count();
    let unreachable = rows
        .iter()
        .filter(|r| r["reachable"] == Json::Bool(false))
        .count();
    let overdue = rows
        .iter()
        .filter(|r| !r["verification_overdue_since"].is_null())
        .count();
    let mut b = format!(
        "<p><b>{}</b> asset(s): <span class=\"{}\">{drifting} with open drift</span>, <span class=\"{}\">{unreachable} unreachable</span>, <span class=\"{}\">{overdue} with verification overdue</span>.</p>\n",
        rows.len(),
        if drifting > 0 { "bad" } else { "good" },
        if unreachable > 0 { "bad" } else { "good" },
        if overdue > 0 { "bad" } else { "good" },
    );
    b.push_str("<table><tr><th>Asset</th><th>Protocol</th><th>Address</th><th>Reachable</th><th>Last capture</th><th>Baseline</th><th>Last verified</th><th>Open drift</th><th>Pending approvals</th><th>Envelopes</th></tr>\n");
    for r in &rows {
        let reachable = match r["reachable"] {
            Json::Bool(true) => "<span class=\"good\">yes</span>".to_owned(),
            Json::Bool(false) => "<span class=\"bad\">NO</span>".to_owned(),
            _ => "not polled yet".to_owned(),
        };
        let baseline = match &r["baseline"] {
            Json::Null => "none yet".to_owned(),
            bl => format!(
                "{} {}{}",
                short(&bl["digest"]),
                if bl["provisional"] == Json::Bool(true) {
                    "provisional"
                } else {
                    "approved"
                },
                bl["change_id"]
                    .as_str()
                    .map(|c| format!(" ({})", esc(c)))
                    .unwrap_or_default()
            ),
        };
        let verified = match (&r["last_verified"], &r["verification_overdue_since"]) {
            (v, Json::Null) => show(v),
            (v, since) => format!(
                "{} <span class=\"bad\">OVERDUE since {}</span>",
                show(v),
                show(since)
            ),
        };
        let open = r["open_drift"].as_u64().unwrap_or(0);
        let open = if open > 0 {
            format!("<a class=\"bad\" href=\"/ui/drift\">{open}</a>")
        } else {
            "0".into()
        };
        let envelopes = r["baseline"]["envelope"]
            .as_object()
            .map(|e| {
                e.iter()
                    .map(|(p, b)| {
                        format!(
                            "<code>{}</code> {}",
                            esc(p),
                            esc(&crate::render::bound_text(b))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            b,
            "<tr><td><b>{}</b></td><td>{}</td><td><code>{}</code></td><td>{reachable}</td><td>{}</td><td>{baseline}</td><td>{verified}</td><td>{open}</td><td>{}</td><td>{envelopes}</td></tr>",
            show(&r["id"]),
            show(&r["protocol"]),
            show(&r["address"]),
            show(&r["last_capture"]),
            show(&r["pending_approvals"]),
        );
        if let Some(e) = r["last_error"].as_str() {
            let _ = writeln!(
                b,
                "<tr><td></td><td colspan=\"9\" class=\"bad\">last error: {}</td></tr>",
                esc(e)
            );
        }
    }
    b.push_str("</table>\n");
    harden(html(StatusCode::OK, page(&state, "Assets", "Assets", &b)))
}

async fn drift_list(State(state): State<ApiState>) -> Response {
    let events = match state.db.read(|s| s.recent_drift(200)).await {
        Ok(e) => e,
        Err(e) => return failed(&state, "the drift events", e),
    };
    let mut b = String::from(
        "<p>The newest 200 drift events, open ones first.</p><table><tr><th>Drift</th><th>Asset</th><th>Status</th><th>Severity</th><th>Reason</th><th>First seen</th><th>Last seen</th><th>Items</th><th>Change</th></tr>\n",
    );
    let mut sorted: Vec<&otdrift_store::DriftEvent> = events.iter().collect();
    sorted.sort_by_key(|d| (d.status != otdrift_store::DriftStatus::Open, -d.id));
    for d in sorted {
        let status = d.status.as_str();
        let _ = writeln!(
            b,
            "<tr><td><a href=\"/ui/drift/{id}\">#{id}</a></td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.asset),
            if status == "open" { "bad" } else { "" },
            esc(status),
            esc(d.severity.as_str()),
            esc(d.reason.as_str()),
            esc(&otdrift_core::format_timestamp(d.first_seen)),
            esc(&otdrift_core::format_timestamp(d.last_seen)),
            d.changes.len(),
            esc(d.change_id.as_deref().unwrap_or("—")),
            id = d.id,
        );
    }
    b.push_str("</table>\n");
    harden(html(StatusCode::OK, page(&state, "Drift", "Drift", &b)))
}

/// The most changes one drift page lists.
const DRIFT_PAGE: usize = 1000;

async fn drift_detail(State(state): State<ApiState>, UrlPath(id): UrlPath<i64>) -> Response {
    let event = match state.db.read(move |s| s.drift_event(id)).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return harden(html(
                StatusCode::NOT_FOUND,
                page(
                    &state,
                    "Drift",
                    "Drift",
                    &format!("<p>No drift event #{id}.</p>"),
                ),
            ));
        }
        Err(e) => return failed(&state, "the drift event", e),
    };
    let mut b = format!(
        "<dl><dt>Asset</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd><dt>Severity</dt><dd>{}</dd><dt>Reason</dt><dd>{}</dd><dt>Baseline</dt><dd><code>{}</code></dd><dt>Observed</dt><dd><code>{}</code></dd><dt>First seen</dt><dd>{}</dd><dt>Last seen</dt><dd>{} ({} polls)</dd><dt>Change</dt><dd>{}</dd>",
        esc(&event.asset),
        esc(event.status.as_str()),
        esc(event.severity.as_str()),
        esc(match event.reason {
            otdrift_store::DriftReason::CaptureChanged =>
                "capture_changed: the asset is read differently than when its baseline was approved",
            otdrift_store::DriftReason::Device =>
                "device: the device differs from its approved baseline",
        }),
        esc(&event.baseline_digest.to_string()),
        esc(&event.observed_digest.to_string()),
        esc(&otdrift_core::format_timestamp(event.first_seen)),
        esc(&otdrift_core::format_timestamp(event.last_seen)),
        event.seen_count,
        esc(event.change_id.as_deref().unwrap_or("—")),
    );
    if let Some(reason) = &event.policy_reason {
        let _ = write!(b, "<dt>Policy</dt><dd>{}</dd>", esc(reason));
    }
    b.push_str("</dl>\n<h2>Items that differ from the baseline</h2>\n<table><tr><th>Item</th><th>Class</th><th>Change</th><th>Baseline</th><th>Observed</th><th>Setpoint</th><th>Envelope</th></tr>\n");
    for c in event.changes.iter().take(DRIFT_PAGE) {
        let value = |v: &Option<Json>| v.as_ref().map_or_else(|| "—".into(), show);
        let envelope = c
            .envelope
            .as_ref()
            .map(|e| format!("outside {}", esc(&crate::render::bound_text(e))))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{envelope}</td></tr>",
            esc(&c.path),
            esc(c.class.as_str()),
            esc(c.kind.as_str()),
            value(&c.before),
            value(&c.after),
            esc(c.setpoint.as_deref().unwrap_or("—")),
        );
    }
    b.push_str("</table>\n");
    if event.changes.len() > DRIFT_PAGE {
        let _ = writeln!(
            b,
            "<p>{} more: <code>GET /v1/drift/{}/changes</code> pages them all.</p>",
            event.changes.len() - DRIFT_PAGE,
            event.id
        );
    }
    harden(html(
        StatusCode::OK,
        page(&state, &format!("Drift #{id}"), "Drift", &b),
    ))
}

async fn approvals(State(state): State<ApiState>) -> Response {
    let ids: Vec<String> = state.config.assets.iter().map(|a| a.id.clone()).collect();
    let pending = match state
        .db
        .read(move |s| {
            let mut all = Vec::new();
            for id in &ids {
                all.extend(s.pending_approvals(id)?);
            }
            Ok(all)
        })
        .await
    {
        Ok(p) => p,
        Err(e) => return failed(&state, "the approvals", e),
    };
    let mut b = format!(
        "<p>{} approval(s) wait for the state they name, or for their change policy. Approving happens with signed tokens (<code>otdrift approve</code>), never here.</p><table><tr><th>Asset</th><th>Change</th><th>Kind</th><th>Approver</th><th>Requestor</th><th>Approves</th><th>Received</th><th>Expires</th><th>Waiting for</th></tr>\n",
        pending.len()
    );
    for a in &pending {
        let approves = match (a.to, a.content) {
            (Some(to), _) => format!("state {}", short(&Json::String(to.to_string()))),
            (None, Some(c)) => format!("content {}", short(&Json::String(c.to_string()))),
            (None, None) => "—".into(),
        };
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{approves}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.asset),
            esc(&a.change_id),
            esc(&a.kind),
            esc(a.approver.as_deref().unwrap_or(&a.approver_id)),
            esc(a.requestor.as_deref().unwrap_or("—")),
            esc(&otdrift_core::format_timestamp(a.received_at)),
            esc(&otdrift_core::format_timestamp(a.expires_at)),
            esc(a
                .reason
                .as_deref()
                .unwrap_or("the approved state to be observed")),
        );
    }
    b.push_str("</table>\n");
    harden(html(
        StatusCode::OK,
        page(&state, "Pending approvals", "Approvals", &b),
    ))
}

async fn audit(State(state): State<ApiState>) -> Response {
    let read = state
        .db
        .read(|s| {
            let report = s.audit_verify()?;
            let head = report.head.map_or(0, |(seq, _)| seq);
            let recent = s.audit_entries(head.saturating_sub(50), 50)?;
            Ok((report, recent))
        })
        .await;
    let (report, recent) = match read {
        Ok(r) => r,
        Err(e) => return failed(&state, "the audit log", e),
    };
    let mut b = match &report.first_break {
        None => format!(
            "<p class=\"flag ok\">The hash chain holds: {} entries, each hash covering its fields and the previous hash.</p>",
            report.entries
        ),
        Some(br) => format!(
            "<p class=\"flag violation\">The hash chain BREAKS at entry #{}: {}</p>",
            br.seq,
            esc(&br.reason)
        ),
    };
    if let Some((seq, hash)) = &report.head {
        let _ = write!(
            b,
            "<dl><dt>Head</dt><dd>#{seq} <code>{}</code></dd><dt>Published</dt><dd>signed as <code>io.otdrift.audit.head</code> events; <code>otdrift audit-verify</code> checks the same chain</dd></dl>",
            esc(&hash.to_string())
        );
    }
    b.push_str("<h2>The latest entries</h2><table><tr><th>#</th><th>When</th><th>What</th><th>Asset</th></tr>\n");
    for e in recent.iter().rev() {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            esc(&otdrift_core::format_timestamp(e.at)),
            esc(&e.kind),
            esc(e.asset.as_deref().unwrap_or("—"))
        );
    }
    b.push_str("</table>\n");
    harden(html(
        StatusCode::OK,
        page(&state, "Audit chain", "Audit chain", &b),
    ))
}
