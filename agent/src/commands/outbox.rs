//! `otdrift outbox`: where delivery upstream stands, the events the receiver refused, and
//! retries of them. Works beside a running agent (the store is shared): a retry queued here is
//! picked up by the agent's push worker within seconds.

use std::path::Path;

use anyhow::anyhow;
use otdrift_core::format_timestamp;
use otdrift_store::{RetryTarget, StoreError, UPSTREAM};
use serde_json::json;

use crate::context::{Agent, plural};
use crate::exit::{CmdResult, Exit, Failure, RuntimeContext as _};
use crate::render;

/// What `otdrift outbox` was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Where delivery stands.
    Status,
    /// List parked events (`all`: also those delivered by a retry).
    Parked {
        /// Include delivered retries.
        all: bool,
    },
    /// Queue parked events for another try.
    Retry(RetryTarget),
}

/// Runs `otdrift outbox`.
pub fn run(config: &Path, action: Action, json: bool) -> CmdResult {
    let mut agent = Agent::open(config)?;
    let url = agent.config.upstream.as_ref().map(|u| u.url.clone());
    match action {
        Action::Status => {
            let state = agent
                .store
                .delivery_state(UPSTREAM)
                .runtime("cannot read the delivery state")?;
            // Each sink on its own cursor: where it stands.
            let mut sinks = Vec::new();
            for sink in &agent.config.sinks {
                let s = agent
                    .store
                    .delivery_state(&crate::daemon::sinks::destination(sink))
                    .runtime("cannot read the delivery state")?;
                sinks.push((sink, s));
            }
            if json {
                let mut doc = render::delivery_json(&state, url.as_deref());
                doc["sinks"] = serde_json::Value::Array(
                    sinks
                        .iter()
                        .map(|(sink, s)| {
                            serde_json::json!({
                                "name": sink.name,
                                "destination": s.destination,
                                "acked_seq": s.acked_seq,
                                "last_seq": s.last_seq,
                                "depth": s.depth,
                            })
                        })
                        .collect(),
                );
                render::print_json(&doc);
                return Ok(Exit::Ok);
            }
            for (sink, s) in &sinks {
                println!(
                    "sink {} ({}:{}): delivered up to event {} of {}; {} waiting",
                    sink.name,
                    sink.host,
                    sink.port,
                    s.acked_seq,
                    s.last_seq,
                    plural(usize::try_from(s.depth).unwrap_or(usize::MAX), "event")
                );
            }
            match &url {
                Some(url) => println!("upstream {url}"),
                None => println!(
                    "upstream: not configured ([upstream] url); events are kept for GET /v1/events"
                ),
            }
            println!(
                "  delivered up to event {} of {}; {} waiting",
                state.acked_seq,
                state.last_seq,
                plural(usize::try_from(state.depth).unwrap_or(usize::MAX), "event")
            );
            if let Some(p) = &state.paused {
                println!(
                    "  PAUSED since {}: {} (re-checked every {} s and at every start)",
                    format_timestamp(p.since),
                    p.reason,
                    crate::daemon::push::AUTH_RECHECK.as_secs()
                );
            }
            if state.parked + state.queued > 0 {
                println!(
                    "  parked: {} (otdrift outbox --parked), {} queued for a retry",
                    state.parked, state.queued
                );
            }
            Ok(Exit::Ok)
        }
        Action::Parked { all } => {
            let parked = agent
                .store
                .parked_events(UPSTREAM, all)
                .runtime("cannot read the parked events")?;
            if json {
                render::print_json(&json!({
                    "destination": UPSTREAM,
                    "parked": parked
                        .iter()
                        .map(|p| render::parked_json(&agent.config.agent.id, p))
                        .collect::<Vec<_>>(),
                }));
                return Ok(Exit::Ok);
            }
            if parked.is_empty() {
                println!("no parked events");
            }
            for p in &parked {
                println!(
                    "{:>8}  {:<9}  {}  {} {}  {}{}  retries {}",
                    p.event.seq,
                    p.status.as_str(),
                    format_timestamp(p.parked_at),
                    p.http_status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    p.reason,
                    p.event.event_type,
                    p.event
                        .asset
                        .as_ref()
                        .map_or_else(String::new, |a| format!(" ({a})")),
                    p.retries
                );
                if !p.message.is_empty() {
                    println!("          receiver: {}", p.message);
                }
            }
            Ok(Exit::Ok)
        }
        Action::Retry(target) => {
            let queued = agent
                .store
                .request_retry(UPSTREAM, target)
                .map_err(|e| match e {
                    StoreError::NotFound(m) => Failure::usage(anyhow!(
                        "{m}; `otdrift outbox --parked` lists the parked events"
                    )),
                    other => Failure::runtime(anyhow!(other).context("cannot queue the retry")),
                })?;
            if json {
                render::print_json(&json!({"destination": UPSTREAM, "queued": queued}));
            } else if queued.is_empty() {
                println!("nothing to retry: no event is parked (or it is already queued)");
            } else {
                println!(
                    "queued {} for another try: {}; the running agent sends them one at a time, before the next batch, out of their original order (otdriftseq says where they belong)",
                    plural(queued.len(), "parked event"),
                    queued
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(Exit::Ok)
        }
    }
}
