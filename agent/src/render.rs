//! Output shapes: the `--json` documents and their human counterparts.
//!
//! The JSON shapes are a contract with scripts and central systems; keys listed in `docs/reference/` are
//! always present, more are added where they help.

use otdrift_config::AssetConfig;
use otdrift_core::{Class, Diff, Snapshot, format_timestamp};
use otdrift_store::{Baseline, ChangeRecord, DriftEvent, DriftOutcome};
use std::io::Write as _;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value as Json, json};

use crate::capture::CaptureReport;

/// Renders a diff's changes with setpoint names from the asset's config.
pub fn change_records(asset: &AssetConfig, diff: &Diff) -> Vec<ChangeRecord> {
    let label = |path: &str| otdrift_protocols::setpoint_label(asset, path);
    diff.changes
        .iter()
        .map(|c| ChangeRecord::from_change(c, &label))
        .collect()
}

fn baseline_json(b: &Baseline) -> Json {
    json!({
        "digest": b.digest,
        "provisional": b.provisional,
        "set_at": format_timestamp(b.set_at),
        "reason": b.reason,
        "change_id": b.change_id,
        "envelope": otdrift_store::envelope::to_json(&b.envelope),
    })
}

/// A bound for people: `70..75` or `one of 1, 2`.
pub fn bound_text(rule: &Json) -> String {
    match (rule.get("min"), rule.get("max"), rule.get("one_of")) {
        (Some(min), Some(max), _) => format!("{min}..{max}"),
        (_, _, Some(Json::Array(values))) => {
            let values: Vec<String> = values.iter().map(Json::to_string).collect();
            format!("one of {}", values.join(", "))
        }
        _ => rule.to_string(),
    }
}

/// The envelopes in force, one line each for people: `s7/db1/fill_temp  70..75`.
pub fn envelope_lines(envelope: &otdrift_core::Envelope) -> Vec<String> {
    envelope
        .iter()
        .map(|(pattern, bound)| {
            let rule = serde_json::to_value(bound).unwrap_or(Json::Null);
            format!("{pattern}  {}", bound_text(&rule))
        })
        .collect()
}

/// Setpoints that sat inside their envelopes, as `--json` lists them.
fn adjustments_json(adjustments: &[otdrift_core::Adjustment]) -> Json {
    Json::Array(
        adjustments
            .iter()
            .map(|a| {
                json!({
                    "path": a.path,
                    "baseline": a.baseline,
                    "observed": a.observed,
                    "envelope": a.pattern,
                })
            })
            .collect(),
    )
}

/// `otdrift capture --json`: the report, serialized as it is written, so that its items (one per
/// register, tag or block, possibly tens of thousands) are rendered one at a time from the
/// snapshot instead of as a second copy of the whole list.
pub struct CaptureJson<'a> {
    /// Every field but `items`, which holds a `null` placeholder that keeps its place.
    fields: serde_json::Map<String, Json>,
    asset: &'a AssetConfig,
    snapshot: &'a Snapshot,
}

impl Serialize for CaptureJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in &self.fields {
            if key == "items" {
                map.serialize_entry(key, &CaptureItems(self.asset, self.snapshot))?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// The `items` array of [`CaptureJson`], each element built just before it is written.
struct CaptureItems<'a>(&'a AssetConfig, &'a Snapshot);

impl Serialize for CaptureItems<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let CaptureItems(asset, snapshot) = *self;
        let mut seq = serializer.serialize_seq(Some(snapshot.len()))?;
        for item in snapshot.items() {
            let mut v = json!({
                "path": item.path(),
                "class": item.class(),
                "value": item.value(),
                "digest": item.digest(),
            });
            if item.class() == Class::Setpoint
                && let Some(name) = otdrift_protocols::setpoint_label(asset, item.path())
            {
                v["setpoint"] = json!(name);
            }
            seq.serialize_element(&v)?;
        }
        seq.end()
    }
}

/// `otdrift capture --json`; write it with [`print_json`].
pub fn capture_json<'a>(asset: &'a AssetConfig, report: &'a CaptureReport) -> CaptureJson<'a> {
    let outcome = &report.outcome;
    let snapshot = &report.capture.snapshot;
    let drift = match &outcome.drift {
        DriftOutcome::Opened(e)
        | DriftOutcome::Updated(e)
        | DriftOutcome::Seen(e)
        | DriftOutcome::Muted(e) => json!({
            "id": e.id,
            "status": e.status.as_str(),
            "severity": e.severity.as_str(),
            "reason": e.reason.as_str(),
            "first_seen": format_timestamp(e.first_seen),
            "policy_reason": e.policy_reason,
            "changes": e.changes,
        }),
        DriftOutcome::None | DriftOutcome::Resolved(_) | DriftOutcome::Approved(_) => Json::Null,
    };
    let mut baseline = baseline_json(&outcome.baseline);
    baseline["created"] = json!(outcome.baseline_created);
    let doc = json!({
        "asset": asset.id,
        "protocol": asset.protocol.kind().as_str(),
        "address": asset.address,
        "captured_at": format_timestamp(outcome.capture.last_seen),
        "digest": outcome.digests.overall,
        "change_signature": outcome.digests.content,
        "classes": {
            "identity": outcome.digests.identity,
            "program": outcome.digests.program,
            "setpoint": outcome.digests.setpoint,
            "history": outcome.digests.history,
        },
        "judged_digest": outcome.capture.judged_digest,
        "inside_envelopes": adjustments_json(&outcome.adjustments),
        "item_count": snapshot.len(),
        "items": Json::Null,
        "baseline": baseline,
        "drift": drift,
        "resolved_drift": match &outcome.drift {
            DriftOutcome::Resolved(e) => json!(e.id),
            _ => Json::Null,
        },
        "approved_drift": match &outcome.drift {
            DriftOutcome::Approved(e) => json!(e.id),
            _ => Json::Null,
        },
        "policy_unmet": outcome.policy_unmet.as_ref().map(|(change, policy, unmet)| json!({
            "change_id": change,
            "policy": policy,
            "unmet": unmet,
        })),
        "approval_applied": outcome.approval.as_ref().map(|a| json!({
            "change_id": a.approval.change_id,
            "jti": a.approval.jti,
            "kind": a.approval.kind,
            "approver": a.approval.approver,
        })),
        "change_id": outcome.capture.change_id,
        "phase": outcome.capture.phase,
        "state_changes": outcome.state_changes,
        "requests": report.capture.stats.requests,
        "duration_ms": u64::try_from(report.capture.stats.duration.as_millis()).unwrap_or(u64::MAX),
        "runtime": report.capture.observed(),
    });
    let Json::Object(fields) = doc else {
        unreachable!("a json! object literal is an object")
    };
    CaptureJson {
        fields,
        asset,
        snapshot,
    }
}

/// One change as a line for people: `changed  modbus/holding/40 [recipe]  1234 -> 1300`.
pub fn change_line(c: &ChangeRecord) -> String {
    let show = |v: &Option<Json>| match v {
        Some(Json::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
        None => "-".to_owned(),
    };
    let name = c
        .setpoint
        .as_ref()
        .map(|n| format!(" [{n}]"))
        .unwrap_or_default();
    let broken = c
        .envelope
        .as_ref()
        .map(|rule| {
            let side = if rule["inside"] == Json::Bool(true) {
                "inside"
            } else {
                "outside"
            };
            format!("  ({side} its envelope {})", bound_text(rule))
        })
        .unwrap_or_default();
    format!(
        "{:<8} {:<8} {}{}  {} -> {}{broken}",
        c.kind.as_str(),
        c.class.as_str(),
        c.path,
        name,
        show(&c.before),
        show(&c.after)
    )
}

/// At most `limit` change lines, then a count of the rest.
pub fn change_lines(changes: &[ChangeRecord], limit: usize) -> Vec<String> {
    let mut lines: Vec<String> = changes.iter().take(limit).map(change_line).collect();
    if changes.len() > limit {
        lines.push(format!(
            "... and {} more (use --json for all)",
            changes.len() - limit
        ));
    }
    lines
}

/// `otdrift capture` for people.
pub fn capture_human(asset: &AssetConfig, report: &CaptureReport) -> String {
    let o = &report.outcome;
    let stats = &report.capture.stats;
    let snapshot = &report.capture.snapshot;
    let count = |class| snapshot.items_of(class).count();
    let mut out = String::new();
    out.push_str(&format!(
        "{} ({} {}) captured at {}: {} items, {} requests, {} ms\n",
        asset.id,
        asset.protocol.kind(),
        asset.address,
        format_timestamp(o.capture.last_seen),
        snapshot.len(),
        stats.requests,
        stats.duration.as_millis()
    ));
    out.push_str(&format!("  signature  {}\n", o.digests.overall));
    out.push_str(&format!(
        "  change signature {}  (content only: program and setpoint items)\n",
        o.digests.content
    ));
    for class in Class::ALL {
        out.push_str(&format!(
            "  {:<9}  {}  ({} items)\n",
            class.as_str(),
            o.digests.class(class),
            count(class)
        ));
    }
    if let Some(change) = &o.capture.change_id {
        let phase = o.capture.phase.map(|p| p.as_str()).unwrap_or("-");
        out.push_str(&format!(
            "  recorded as the {phase} signature of change {change}\n"
        ));
    }
    let state = if o.baseline.provisional {
        "provisional"
    } else {
        "approved"
    };
    out.push_str(&format!("  baseline   {} ({state})\n", o.baseline.digest));
    for line in envelope_lines(&o.baseline.envelope) {
        out.push_str(&format!("  envelope   {line}\n"));
    }
    if let Some(judged) = &o.capture.judged_digest {
        out.push_str(&format!(
            "  judged as  {judged}  (setpoints inside their envelopes at baseline values: the signature approvals name)\n"
        ));
    }
    for a in &o.adjustments {
        out.push_str(&format!(
            "  inside envelope {}: {} {} -> {} (matches, not drift)\n",
            a.pattern, a.path, a.baseline, a.observed
        ));
    }
    if o.baseline_created {
        out.push_str(
            "  first capture of this asset: it is now the provisional baseline; approve it with a token whose `to` is the signature above\n",
        );
    }
    for c in &o.state_changes {
        out.push_str(&format!(
            "  operating state {}: {} -> {} (reported, not drift)\n",
            c.key, c.before, c.after
        ));
    }
    if let Some((change, policy, unmet)) = &o.policy_unmet {
        out.push_str(&format!(
            "  change {change} is approved but policy {policy} is not met: {}\n",
            unmet.join("; ")
        ));
    }
    if let Some(a) = &o.approval {
        out.push_str(&format!(
            "  pending approval for change {} ({}) applied: this state is now the approved baseline\n",
            a.approval.change_id, a.approval.kind
        ));
    }
    match &o.drift {
        DriftOutcome::Approved(e) => out.push_str(&format!(
            "  drift #{} approved by change {}\n",
            e.id,
            e.change_id.as_deref().unwrap_or("?")
        )),
        DriftOutcome::None => {
            if !o.baseline_created {
                out.push_str("  matches the baseline\n");
            }
        }
        DriftOutcome::Resolved(e) => out.push_str(&format!(
            "  matches the baseline again: drift #{} resolved\n",
            e.id
        )),
        DriftOutcome::Opened(e)
        | DriftOutcome::Updated(e)
        | DriftOutcome::Seen(e)
        | DriftOutcome::Muted(e) => {
            let what = match &o.drift {
                DriftOutcome::Opened(_) => "opened",
                DriftOutcome::Updated(_) => "updated",
                DriftOutcome::Muted(_) => "still open, only flapping items moved",
                _ => "still open",
            };
            out.push_str(&format!(
                "  DRIFT #{} ({what}, severity {}): {} item(s) differ from the baseline\n",
                e.id,
                e.severity,
                e.changes.len()
            ));
            if e.reason == otdrift_store::DriftReason::CaptureChanged {
                out.push_str(CAPTURE_CHANGED);
            }
            for line in change_lines(&e.changes, 20) {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

/// What a `capture_changed` drift tells people, one line.
const CAPTURE_CHANGED: &str = "  reason capture_changed: the asset is read differently than when its baseline was approved (a new setpoint range or layout, or an agent that reads more); the difference may be the capture's alone\n";

/// A drift event as in `otdrift drift --json`.
pub fn drift_json(e: &DriftEvent) -> Json {
    json!({
        "id": e.id,
        "asset": e.asset,
        "status": e.status.as_str(),
        "severity": e.severity.as_str(),
        "reason": e.reason.as_str(),
        "baseline_digest": e.baseline_digest,
        "observed_digest": e.observed_digest,
        "first_seen": format_timestamp(e.first_seen),
        "last_seen": format_timestamp(e.last_seen),
        "seen_count": e.seen_count,
        "closed_at": e.closed_at.map(format_timestamp),
        "change_id": e.change_id,
        "changes": e.changes,
    })
}

/// A drift event for people.
pub fn drift_human(e: &DriftEvent) -> String {
    let mut out = format!(
        "#{} {} {} severity {}: first seen {}, last seen {} ({} polls)\n    baseline {}\n    observed {}\n",
        e.id,
        e.asset,
        e.status.as_str().to_uppercase(),
        e.severity,
        format_timestamp(e.first_seen),
        format_timestamp(e.last_seen),
        e.seen_count,
        e.baseline_digest,
        e.observed_digest
    );
    if let Some(closed) = e.closed_at {
        out.push_str(&format!("    closed {}\n", format_timestamp(closed)));
    }
    if e.reason == otdrift_store::DriftReason::CaptureChanged {
        out.push_str(&CAPTURE_CHANGED.replacen("  ", "    ", 1));
    }
    for line in change_lines(&e.changes, 10) {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

/// Prints a JSON document on stdout, the only thing `--json` prints there: pretty-printed,
/// followed by a newline, written through a buffer as it is serialized (no copy of the text).
pub fn print_json<T: Serialize + ?Sized>(doc: &T) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, doc)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("error: cannot write JSON: {e}");
    }
}

/// Every configured asset with what the store knows about it: `otdrift status --json` and
/// `GET /v1/assets` share this shape.
pub fn asset_rows(
    config: &otdrift_config::Config,
    store: &otdrift_store::Store,
) -> Result<Vec<Json>, otdrift_store::StoreError> {
    let mut rows = Vec::with_capacity(config.assets.len());
    for asset in &config.assets {
        let known = store.asset(&asset.id)?;
        let baseline = store.current_baseline(&asset.id)?;
        let max_age = chrono::TimeDelta::from_std(config.agent.verify_max_age)
            .unwrap_or(chrono::TimeDelta::MAX);
        let verification = store.verification(&asset.id, max_age)?;
        let open = store.open_drift_count(&asset.id)?;
        let pending = store.pending_approvals(&asset.id)?.len();
        let review_due: Vec<Json> = store
            .reviews_due(&asset.id)?
            .iter()
            .map(|c| {
                json!({
                    "change_id": c.change_id,
                    "status": c.status,
                    "review_due_by": c.review_due_by.map(format_timestamp),
                    "reviews_needed": c.review_approvals,
                })
            })
            .collect();
        rows.push(json!({
            "policy": asset.policy,
            "staging_for": asset.staging_for,
            "review_due": review_due,
            "id": asset.id,
            "protocol": asset.protocol.kind().as_str(),
            "address": asset.address,
            "schedule": asset.schedule,
            "runs_on": otdrift_config::spread_schedule(&asset.schedule, &asset.id),
            "reachable": known.as_ref().and_then(|k| k.reachable),
            "last_capture": known.as_ref().and_then(|k| k.last_capture).map(format_timestamp),
            "last_attempt": known.as_ref().and_then(|k| k.last_attempt).map(format_timestamp),
            "last_error": known.as_ref().and_then(|k| k.last_error.clone()),
            "stale_since": known.as_ref().and_then(|k| k.stale_since).map(format_timestamp),
            "last_verified": verification.last_verified.map(format_timestamp),
            "verification_due": verification.due.map(format_timestamp),
            "verification_overdue_since": verification.overdue_since.map(format_timestamp),
            "muted_items": store.muted_items(&asset.id)?,
            "maintenance": store.maintenance_now(&asset.id)?.map(|w| json!({
                "until": format_timestamp(w.ends_at),
                "reason": w.reason,
            })),
            "collection": known.as_ref().and_then(|k| {
                k.failing_since.map(|since| json!({
                    "failing_since": format_timestamp(since),
                    "reason": k.failure_reason,
                    "failures": k.failure_count,
                }))
            }),
            "baseline": baseline.as_ref().map(|b| json!({
                "digest": b.digest,
                "provisional": b.provisional,
                "set_at": format_timestamp(b.set_at),
                "change_id": b.change_id,
                "envelope": otdrift_store::envelope::to_json(&b.envelope),
            })),
            "open_drift": open,
            "pending_approvals": pending,
        }));
    }
    Ok(rows)
}

/// Where the upstream's delivery stands: `otdrift outbox --json` and `GET /v1/outbox`.
/// `url` is `[upstream] url`, `None` when no upstream is configured.
pub fn delivery_json(d: &otdrift_store::DeliveryState, url: Option<&str>) -> Json {
    json!({
        "destination": d.destination,
        "configured": url.is_some(),
        "url": url,
        "acked_seq": d.acked_seq,
        "last_seq": d.last_seq,
        "depth": d.depth,
        "parked": d.parked,
        "queued_retries": d.queued,
        "paused": d.paused.as_ref().map(|p| json!({
            "reason": p.reason,
            "http_status": p.http_status,
            "since": format_timestamp(p.since),
        })),
    })
}

/// A parked event with its fate and the event itself, as it is sent (CloudEvents).
pub fn parked_json(agent_id: &str, p: &otdrift_store::ParkedEvent) -> Json {
    json!({
        "seq": p.event.seq,
        "status": p.status.as_str(),
        "reason": p.reason,
        "http_status": p.http_status,
        "message": p.message,
        "parked_at": format_timestamp(p.parked_at),
        "retries": p.retries,
        "retried_at": p.retried_at.map(format_timestamp),
        "delivered_at": p.delivered_at.map(format_timestamp),
        "event": crate::events::cloud_event(agent_id, &p.event),
    })
}

/// One page of a drift's changes (`GET /v1/drift/{id}/changes`), `None` when there is no such
/// drift or the observed state asked for is not stored. The changes of the drift's current
/// state come from its record; those of a state it has moved on from are computed again from
/// the two stored snapshots, with the asset's setpoint names, exactly as the capture did.
pub fn drift_changes_page(
    config: &otdrift_config::Config,
    store: &otdrift_store::Store,
    id: i64,
    observed: Option<otdrift_core::Digest>,
    after: u64,
    limit: u32,
) -> Result<Option<Json>, otdrift_store::StoreError> {
    let Some(header) = store.drift_header(id)? else {
        return Ok(None);
    };
    let (observed, total, changes) = match observed {
        Some(o) if o != header.observed_digest => {
            if !store.has_snapshot(&o)? || !store.has_snapshot(&header.baseline_digest)? {
                return Ok(None);
            }
            let before = store.snapshot(&header.baseline_digest)?;
            let now = store.snapshot(&o)?;
            let diff = Diff::between(&before, &now);
            let records = match config.asset(&header.asset) {
                Some(asset) => change_records(asset, &diff),
                None => diff
                    .changes
                    .iter()
                    .map(|c| ChangeRecord::from_change(c, &|_| None))
                    .collect(),
            };
            let total = records.len() as u64;
            let page: Vec<Json> = records
                .iter()
                .skip(usize::try_from(after).unwrap_or(usize::MAX))
                .take(limit as usize)
                .map(|c| serde_json::to_value(c).unwrap_or(Json::Null))
                .collect();
            (o, total, page)
        }
        _ => {
            let Some(page) = store.drift_changes(id, after, limit)? else {
                return Ok(None);
            };
            (header.observed_digest, header.changes_total, page.changes)
        }
    };
    let end = after.saturating_add(changes.len() as u64);
    Ok(Some(json!({
        "drift_id": id,
        "asset": header.asset,
        "baseline_digest": header.baseline_digest,
        "observed_digest": observed,
        "changes_total": total,
        "after": after,
        "changes": changes,
        "next": (end < total).then_some(end),
    })))
}
