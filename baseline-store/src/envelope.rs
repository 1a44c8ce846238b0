//! Approved envelopes in the store: the claim's JSON form, the envelope kept with each
//! baseline, and the `setpoint.adjusted` reports of moves inside it.
//!
//! The judging itself is [`otdrift_core::Envelope::judge`]. Here:
//!
//! - [`parse`] reads the token claim (`{"PATH": {"min": N, "max": N} | {"one_of": [..]}}`),
//!   strictly: unknown members, a min above its max, a non-finite number or an empty list are
//!   refused with the pattern named;
//! - a baseline row keeps the envelope in force (`baselines.envelope`, the claim's canonical
//!   JSON); an approval without the claim carries the previous baseline's envelope forward,
//!   one with `"envelope": {}` clears it;
//! - [`report_moves`] writes, per covered setpoint, one `setpoint.adjusted` audit entry and
//!   event per move, at most one per item per minute: a move inside the minute waits
//!   (`setpoint_moves.waiting`) and is reported by the first capture after it, with the value
//!   the item has then, so the last value is always reported.

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::{Bound, Class, Envelope, Literal, Snapshot, format_timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value as Json, json};

use crate::StoreError;
use crate::audit;
use crate::events::event_type;

/// The shortest time between two reports of the same item.
pub const REPORT_INTERVAL: TimeDelta = TimeDelta::minutes(1);

/// Reads an `envelope` claim. The error names the pattern and what is wrong with it.
pub fn parse(claim: &Json) -> Result<Envelope, String> {
    let Some(members) = claim.as_object() else {
        return Err(
            "must be an object mapping item paths to {\"min\", \"max\"} or {\"one_of\"}".into(),
        );
    };
    let mut envelope = Envelope::new();
    for (pattern, bound) in members {
        let named = |e: &dyn std::fmt::Display| format!("{pattern:?}: {e}");
        let Some(b) = bound.as_object() else {
            return Err(named(
                &"must be an object: {\"min\": N, \"max\": N} or {\"one_of\": [..]}",
            ));
        };
        let mut keys: Vec<&str> = b.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let bound = match keys.as_slice() {
            ["max", "min"] => {
                let number = |k: &str| {
                    b[k].as_f64()
                        .ok_or_else(|| named(&format_args!("`{k}` must be a number")))
                };
                Bound::range(number("min")?, number("max")?).map_err(|e| named(&e))?
            }
            ["one_of"] => {
                let Some(values) = b["one_of"].as_array() else {
                    return Err(named(&"`one_of` must be a list"));
                };
                let literals = values
                    .iter()
                    .map(|v| match v {
                        Json::Bool(x) => Ok(Literal::Bool(*x)),
                        Json::String(x) => Ok(Literal::Text(x.clone())),
                        Json::Number(n) => n
                            .as_f64()
                            .map(Literal::Number)
                            .ok_or_else(|| named(&"a number out of range")),
                        _ => Err(named(&"`one_of` values are numbers, strings or booleans")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Bound::one_of(literals).map_err(|e| named(&e))?
            }
            _ => {
                return Err(named(&format_args!(
                    "has members {keys:?}; a bound is exactly {{\"min\", \"max\"}} or {{\"one_of\"}}"
                )));
            }
        };
        envelope
            .insert(pattern.clone(), bound)
            .map_err(|e| named(&e))?;
    }
    Ok(envelope)
}

/// The envelope as the claim writes it (patterns sorted).
pub fn to_json(envelope: &Envelope) -> Json {
    serde_json::to_value(envelope).unwrap_or_else(|_| json!({}))
}

/// The envelope a baseline row keeps (`None` and an empty text are no envelope).
pub(crate) fn from_column(text: Option<&str>) -> Result<Envelope, StoreError> {
    match text {
        None | Some("") => Ok(Envelope::new()),
        Some(t) => {
            let json: Json = serde_json::from_str(t)
                .map_err(|e| StoreError::Corrupt(format!("a baseline's envelope: {e}")))?;
            parse(&json).map_err(|e| StoreError::Corrupt(format!("a baseline's envelope: {e}")))
        }
    }
}

/// The column text for an envelope (`NULL` when empty).
pub(crate) fn to_column(envelope: &Envelope) -> Option<String> {
    (!envelope.is_empty()).then(|| to_json(envelope).to_string())
}

/// The rule covering `path` in the form events and drift changes show it:
/// `{"pattern": "...", "min": N, "max": N}` or `{"pattern": "...", "one_of": [..]}`.
pub fn rule_json(envelope: &Envelope, path: &str) -> Option<Json> {
    let (pattern, bound) = envelope.rule_for(path)?;
    let mut rule = serde_json::to_value(bound).ok()?;
    rule.as_object_mut()?
        .insert("pattern".into(), Json::String(pattern.to_owned()));
    Some(rule)
}

/// Reports the moves of the setpoints `envelope` covers, in the caller's transaction (see
/// the module documentation). `observed` is the capture as the device answered; an item
/// outside its envelope is drift, not a move, and is not reported here.
pub(crate) fn report_moves(
    conn: &Connection,
    clock: &dyn otdrift_core::Clock,
    asset: &str,
    baseline: &Snapshot,
    envelope: &Envelope,
    observed: &Snapshot,
) -> Result<(), StoreError> {
    if envelope.is_empty() {
        return Ok(());
    }
    let now = clock.now();
    for item in observed.items_of(Class::Setpoint) {
        let Some(held) = baseline.get(item.path()) else {
            continue;
        };
        let Some((_, bound)) = envelope.rule_for(item.path()) else {
            continue;
        };
        if held.class() != Class::Setpoint
            || !(held.value() == item.value() || bound.admits(item.value()))
        {
            continue;
        }
        let value = serde_json::to_value(item.value()).unwrap_or(Json::Null);
        let last: Option<(String, String)> = conn
            .prepare_cached(
                "SELECT reported, reported_at FROM setpoint_moves WHERE asset = ?1 AND path = ?2",
            )?
            .query_row(params![asset, item.path()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let baseline_value = serde_json::to_value(held.value()).unwrap_or(Json::Null);
        let (reported, at) = match &last {
            Some((r, at)) => (
                serde_json::from_str::<Json>(r).unwrap_or(Json::Null),
                Some(crate::model::ts(at)?),
            ),
            None => (baseline_value.clone(), None),
        };
        if reported == value {
            if last.is_some() {
                conn.execute(
                    "UPDATE setpoint_moves SET waiting = 0 WHERE asset = ?1 AND path = ?2
                         AND waiting = 1",
                    params![asset, item.path()],
                )?;
            }
            continue;
        }
        if at.is_some_and(|at: DateTime<Utc>| now - at < REPORT_INTERVAL) {
            conn.execute(
                "UPDATE setpoint_moves SET waiting = 1 WHERE asset = ?1 AND path = ?2",
                params![asset, item.path()],
            )?;
            continue;
        }
        let body = json!({
            "asset": asset,
            "path": item.path(),
            "before": reported,
            "after": value,
            "baseline": baseline_value,
            "envelope": rule_json(envelope, item.path()),
            "at": format_timestamp(now),
        });
        audit::append_with_event(
            conn,
            clock,
            "setpoint.adjusted",
            event_type::SETPOINT_ADJUSTED,
            Some(asset),
            &body,
        )?;
        conn.execute(
            "INSERT INTO setpoint_moves(asset, path, reported, reported_at, waiting)
             VALUES (?1, ?2, ?3, ?4, 0)
             ON CONFLICT(asset, path) DO UPDATE SET reported = excluded.reported,
                 reported_at = excluded.reported_at, waiting = 0",
            params![asset, item.path(), value.to_string(), format_timestamp(now)],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_is_read_strictly() {
        let ok = parse(&json!({"a": {"min": 1, "max": 2}, "b/*": {"one_of": [1, "x", true]}}))
            .expect("valid");
        assert_eq!(
            to_json(&ok),
            json!({"a": {"min": 1, "max": 2}, "b/*": {"one_of": [1, "x", true]}})
        );
        for (bad, says) in [
            (json!([]), "must be an object"),
            (json!({"a": 3}), "\"a\": must be an object"),
            (
                json!({"a": {"min": 5, "max": 1}}),
                "\"a\": min 5 is above max 1",
            ),
            (json!({"a": {"min": 1}}), "a bound is exactly"),
            (
                json!({"a": {"min": 1, "max": 2, "step": 1}}),
                "a bound is exactly",
            ),
            (
                json!({"a": {"min": "1", "max": 2}}),
                "`min` must be a number",
            ),
            (json!({"a": {"one_of": []}}), "one_of lists no value"),
            (
                json!({"a": {"one_of": [null]}}),
                "numbers, strings or booleans",
            ),
            (
                json!({"a*b": {"min": 1, "max": 2}}),
                "prefix ending in a single",
            ),
        ] {
            let e = parse(&bad).expect_err("refused");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
