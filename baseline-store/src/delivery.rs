//! Where each destination stands on the outbox, and the events it refused.
//!
//! The outbox is one ordered log; every destination (today `upstream`, later syslog or MQTT
//! sinks) reads it with a cursor of its own (`delivery_cursors`): everything up to
//! `acked_seq` was acknowledged or parked, in order, and everything after it is still to be
//! sent. One destination's outage therefore never moves, blocks or delays another's cursor,
//! and a retention job may drop a row once every cursor is past it and no destination holds
//! it parked (the `parked` rows refer to their outbox row, so it cannot disappear under
//! them).
//!
//! ```text
//!  pending (seq > acked_seq) ──2xx──────────────────────────────► acknowledged (cursor moves)
//!        │
//!        └── refused alone (413/422/400) ──► parked ──retry──► queued ──2xx──► delivered
//!                (cursor moves past it,          ▲                │
//!                 announced once)                └── refused ─────┘
//! ```
//!
//! A pause (the destination answered 401/403) is kept with the cursor, so `otdrift outbox`
//! and `GET /v1/outbox` can show why nothing moves; the next acknowledgement clears it.

use chrono::{DateTime, Utc};
use otdrift_core::format_timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::audit;
use crate::events::{OutboxEvent, enqueue, event_type, select};
use crate::model::{opt_ts, ts};
use crate::{Store, StoreError};

/// The destination name of `[upstream]`.
pub const UPSTREAM: &str = "upstream";

/// The most of a receiver's answer kept with a parked event (bytes, cut at a character
/// boundary): enough to say why, never a receiver's whole error page.
pub const REFUSAL_MESSAGE_MAX: usize = 1024;

/// Why a destination stopped taking events until something changes (401/403).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    /// What the destination said, for people.
    pub reason: String,
    /// Its HTTP status, when it answered with one.
    pub http_status: Option<u16>,
    /// When the pause began (the first refusal of the streak).
    pub since: DateTime<Utc>,
}

/// Where a destination stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryState {
    /// The destination (`upstream`).
    pub destination: String,
    /// Everything up to here was acknowledged or parked.
    pub acked_seq: i64,
    /// The newest event in the outbox.
    pub last_seq: i64,
    /// Events not yet delivered and not parked: after the cursor, plus parked events whose
    /// retry was requested.
    pub depth: u64,
    /// Events parked and not queued for a retry.
    pub parked: u64,
    /// Parked events queued for a retry.
    pub queued: u64,
    /// Set while the destination refuses our credentials.
    pub paused: Option<Pause>,
}

/// The state of a parked event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkedStatus {
    /// Refused, kept, waiting for an operator.
    Parked,
    /// An operator asked for a retry; the push worker sends it next.
    Queued,
    /// A retry was accepted.
    Delivered,
}

impl ParkedStatus {
    /// The name in the database and in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParkedStatus::Parked => "parked",
            ParkedStatus::Queued => "queued",
            ParkedStatus::Delivered => "delivered",
        }
    }
}

impl std::str::FromStr for ParkedStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "parked" => Ok(ParkedStatus::Parked),
            "queued" => Ok(ParkedStatus::Queued),
            "delivered" => Ok(ParkedStatus::Delivered),
            other => Err(format!("unknown parked status {other:?}")),
        }
    }
}

/// A destination's refusal of one event.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryRefusal<'a> {
    /// A short code: `too-large` (413), `unprocessable` (422), `bad-request` (400).
    pub reason: &'a str,
    /// The HTTP status.
    pub http_status: Option<u16>,
    /// The receiver's own words (cut to [`REFUSAL_MESSAGE_MAX`]).
    pub message: &'a str,
}

/// An event a destination refused, with its fate.
#[derive(Clone, Debug, PartialEq)]
pub struct ParkedEvent {
    /// The destination that refused it.
    pub destination: String,
    /// The event, as it is sent.
    pub event: OutboxEvent,
    /// Parked, queued for a retry, or delivered by a retry.
    pub status: ParkedStatus,
    /// The refusal code (see [`DeliveryRefusal::reason`]).
    pub reason: String,
    /// The HTTP status of the last refusal.
    pub http_status: Option<u16>,
    /// The receiver's words at the last refusal.
    pub message: String,
    /// When it was (last) refused.
    pub parked_at: DateTime<Utc>,
    /// Retries requested so far.
    pub retries: u32,
    /// When the last retry was requested.
    pub retried_at: Option<DateTime<Utc>>,
    /// When a retry was accepted.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Which parked events to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryTarget {
    /// The event with this outbox sequence number.
    Seq(i64),
    /// Every event currently parked.
    All,
}

/// Cuts `text` to at most `max` bytes at a character boundary (receivers' answers are kept
/// and logged only this far).
pub fn cut_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(crate) fn ensure_cursor(conn: &Connection, destination: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO delivery_cursors(destination, acked_seq) VALUES (?1, 0)",
        [destination],
    )?;
    Ok(())
}

/// (acked_seq, paused_reason, paused_status, paused_at) of a destination; a destination never
/// seen stands at 0, unpaused.
type RawCursor = (i64, Option<String>, Option<i64>, Option<String>);

fn cursor(conn: &Connection, destination: &str) -> Result<RawCursor, StoreError> {
    Ok(conn
        .query_row(
            "SELECT acked_seq, paused_reason, paused_status, paused_at
             FROM delivery_cursors WHERE destination = ?1",
            [destination],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
        .unwrap_or((0, None, None, None)))
}

fn status_code(v: Option<i64>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))?)
}

impl Store {
    /// Where `destination` stands: its cursor, what waits, what is parked, whether it is
    /// paused.
    pub fn delivery_state(&self, destination: &str) -> Result<DeliveryState, StoreError> {
        let (acked_seq, reason, status, at) = cursor(&self.conn, destination)?;
        let after: u64 = self.conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE seq > ?1",
            [acked_seq],
            |r| r.get(0),
        )?;
        let (parked, queued): (u64, u64) = self.conn.query_row(
            "SELECT COALESCE(SUM(status = 'parked'), 0), COALESCE(SUM(status = 'queued'), 0)
             FROM parked WHERE destination = ?1 AND status != 'delivered'",
            [destination],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let paused = match (reason, at) {
            (Some(reason), Some(at)) => Some(Pause {
                reason,
                http_status: status_code(status),
                since: ts(&at)?,
            }),
            _ => None,
        };
        Ok(DeliveryState {
            destination: destination.to_owned(),
            acked_seq,
            last_seq: last_seq(&self.conn)?,
            depth: after + queued,
            parked,
            queued,
            paused,
        })
    }

    /// How many events wait for the upstream: not yet delivered and not parked.
    pub fn outbox_depth(&self) -> Result<u64, StoreError> {
        Ok(self.delivery_state(UPSTREAM)?.depth)
    }

    /// The next events for `destination`, oldest first, at most `limit`: everything after its
    /// cursor. Parked events are behind the cursor and never come back here.
    pub fn pending(&self, destination: &str, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        let (acked, ..) = cursor(&self.conn, destination)?;
        select(
            &self.conn,
            "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![acked, limit],
        )
    }

    /// Gives `destination` a cursor at the end of the outbox when it has none: a sink added to
    /// the config takes the events from then on, not the retained history (an audit entry
    /// says where it started). Returns its cursor.
    pub fn start_cursor(&mut self, destination: &str) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM delivery_cursors WHERE destination = ?1)",
            [destination],
            |r| r.get(0),
        )?;
        let at = if known {
            cursor(&tx, destination)?.0
        } else {
            let last = last_seq(&tx)?;
            tx.execute(
                "INSERT INTO delivery_cursors(destination, acked_seq, updated_at)
                 VALUES (?1, ?2, ?3)",
                params![destination, last, format_timestamp(self.clock.now())],
            )?;
            audit::append(
                &tx,
                self.clock.as_ref(),
                "delivery.started",
                None,
                &json!({"destination": destination, "after_seq": last}),
            )?;
            last
        };
        tx.commit()?;
        Ok(at)
    }

    /// `destination` acknowledged every event up to `up_to_seq` (batches go strictly in
    /// order, so the cursor only moves forward). Clears a pause: the destination takes our
    /// events again. Returns the new cursor.
    pub fn acknowledge(&mut self, destination: &str, up_to_seq: i64) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_cursor(&tx, destination)?;
        let last = last_seq(&tx)?;
        if up_to_seq > last {
            return Err(StoreError::NotFound(format!(
                "cannot acknowledge event {up_to_seq}: the outbox ends at {last}"
            )));
        }
        let (acked, paused, ..) = cursor(&tx, destination)?;
        let now = format_timestamp(self.clock.now());
        tx.execute(
            "UPDATE delivery_cursors SET acked_seq = MAX(acked_seq, ?2), paused_reason = NULL,
                 paused_status = NULL, paused_at = NULL, updated_at = ?3
             WHERE destination = ?1",
            params![destination, up_to_seq, now],
        )?;
        if paused.is_some() {
            audit::append(
                &tx,
                self.clock.as_ref(),
                "delivery.resumed",
                None,
                &json!({"destination": destination, "acked_seq": acked.max(up_to_seq)}),
            )?;
        }
        tx.commit()?;
        Ok(acked.max(up_to_seq))
    }

    /// Parks the event `seq`, which `destination` refused on its own: the cursor moves past
    /// it, so later events flow on. Only the head (the first event after the cursor) can be
    /// parked, which keeps the order of everything not parked. Recorded in the audit log and
    /// announced as an `outbox.parked` event, in the same transaction; a refused announcement
    /// is parked without a second one, so a receiver that refuses announcements cannot make
    /// them multiply. Returns the announcement's sequence number.
    pub fn park(
        &mut self,
        destination: &str,
        seq: i64,
        refusal: &DeliveryRefusal<'_>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_cursor(&tx, destination)?;
        let (acked, ..) = cursor(&tx, destination)?;
        let head: Option<i64> = tx
            .query_row("SELECT MIN(seq) FROM outbox WHERE seq > ?1", [acked], |r| {
                r.get(0)
            })
            .optional()?
            .flatten();
        if head != Some(seq) {
            return Err(StoreError::NotFound(format!(
                "event {seq} is not the next event for {destination} (cursor at {acked}); only the head can be parked"
            )));
        }
        let events = select(&tx, "WHERE seq = ?1", [seq])?;
        let Some(event) = events.first() else {
            return Err(StoreError::NotFound(format!("no outbox event {seq}")));
        };
        let now = self.clock.now();
        let now_text = format_timestamp(now);
        let message = cut_text(refusal.message, REFUSAL_MESSAGE_MAX);
        tx.execute(
            "INSERT INTO parked(destination, seq, status, reason, http_status, message, parked_at)
             VALUES (?1, ?2, 'parked', ?3, ?4, ?5, ?6)",
            params![
                destination,
                seq,
                refusal.reason,
                refusal.http_status,
                message,
                now_text
            ],
        )?;
        tx.execute(
            "UPDATE delivery_cursors SET acked_seq = ?2, updated_at = ?3 WHERE destination = ?1",
            params![destination, seq, now_text],
        )?;
        let body = json!({
            "destination": destination,
            "seq": seq,
            "event_id": event.id,
            "event_type": event.event_type,
            "asset": event.asset,
            "reason": refusal.reason,
            "http_status": refusal.http_status,
            "message": message,
            "parked_at": now_text,
        });
        audit::append(
            &tx,
            self.clock.as_ref(),
            "outbox.parked",
            event.asset.as_deref(),
            &body,
        )?;
        let announced = if event.event_type == event_type::OUTBOX_PARKED {
            None
        } else {
            Some(enqueue(
                &tx,
                self.clock.as_ref(),
                event_type::OUTBOX_PARKED,
                event.asset.as_deref(),
                &body,
            )?)
        };
        tx.commit()?;
        Ok(announced)
    }

    /// Parked events of `destination` whose retry was requested, oldest first.
    pub fn queued_retries(
        &self,
        destination: &str,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        select(
            &self.conn,
            "JOIN parked ON parked.seq = outbox.seq
             WHERE parked.destination = ?1 AND parked.status = 'queued'
             ORDER BY outbox.seq LIMIT ?2",
            params![destination, limit],
        )
    }

    /// A retried event was accepted: it is delivered, and the destination takes our events
    /// again (a pause ends here as on any acknowledgement).
    pub fn retry_delivered(&mut self, destination: &str, seq: i64) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = format_timestamp(self.clock.now());
        tx.execute(
            "UPDATE parked SET status = 'delivered', delivered_at = ?3
             WHERE destination = ?1 AND seq = ?2 AND status = 'queued'",
            params![destination, seq, now],
        )?;
        let (acked, paused, ..) = cursor(&tx, destination)?;
        if paused.is_some() {
            tx.execute(
                "UPDATE delivery_cursors SET paused_reason = NULL, paused_status = NULL,
                     paused_at = NULL, updated_at = ?2
                 WHERE destination = ?1",
                params![destination, now],
            )?;
            audit::append(
                &tx,
                self.clock.as_ref(),
                "delivery.resumed",
                None,
                &json!({"destination": destination, "acked_seq": acked, "retried": seq}),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A retried event was refused again: parked again with the new answer (audited, not
    /// announced a second time).
    pub fn retry_refused(
        &mut self,
        destination: &str,
        seq: i64,
        refusal: &DeliveryRefusal<'_>,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = format_timestamp(self.clock.now());
        let message = cut_text(refusal.message, REFUSAL_MESSAGE_MAX);
        let changed = tx.execute(
            "UPDATE parked SET status = 'parked', reason = ?3, http_status = ?4, message = ?5,
                 parked_at = ?6
             WHERE destination = ?1 AND seq = ?2 AND status = 'queued'",
            params![
                destination,
                seq,
                refusal.reason,
                refusal.http_status,
                message,
                now
            ],
        )?;
        if changed > 0 {
            audit::append(
                &tx,
                self.clock.as_ref(),
                "outbox.parked",
                None,
                &json!({
                    "destination": destination,
                    "seq": seq,
                    "reason": refusal.reason,
                    "http_status": refusal.http_status,
                    "message": message,
                    "parked_at": now,
                    "retry": true,
                }),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Queues parked events of `destination` for another attempt (`otdrift outbox --retry`).
    /// They are sent again out of their original order, one at a time, between the regular
    /// batches. Returns the sequence numbers queued; asking for an event that is not parked
    /// is an error naming it.
    pub fn request_retry(
        &mut self,
        destination: &str,
        target: RetryTarget,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let seqs: Vec<i64> = match target {
            RetryTarget::Seq(seq) => {
                let status: Option<String> = tx
                    .query_row(
                        "SELECT status FROM parked WHERE destination = ?1 AND seq = ?2",
                        params![destination, seq],
                        |r| r.get(0),
                    )
                    .optional()?;
                match status.as_deref() {
                    Some("parked") => vec![seq],
                    Some("queued") => Vec::new(),
                    Some(other) => {
                        return Err(StoreError::NotFound(format!(
                            "event {seq} is not parked for {destination} (it is {other})"
                        )));
                    }
                    None => {
                        return Err(StoreError::NotFound(format!(
                            "event {seq} is not parked for {destination}"
                        )));
                    }
                }
            }
            RetryTarget::All => {
                let mut stmt = tx.prepare(
                    "SELECT seq FROM parked WHERE destination = ?1 AND status = 'parked'
                     ORDER BY seq",
                )?;
                let rows = stmt.query_map([destination], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            }
        };
        if !seqs.is_empty() {
            let now = format_timestamp(self.clock.now());
            for seq in &seqs {
                tx.execute(
                    "UPDATE parked SET status = 'queued', retries = retries + 1, retried_at = ?3
                     WHERE destination = ?1 AND seq = ?2",
                    params![destination, seq, now],
                )?;
            }
            audit::append(
                &tx,
                self.clock.as_ref(),
                "outbox.retry_requested",
                None,
                &json!({"destination": destination, "seqs": seqs}),
            )?;
        }
        tx.commit()?;
        Ok(seqs)
    }

    /// Parked events of `destination`, oldest first; delivered retries too when asked.
    pub fn parked_events(
        &self,
        destination: &str,
        include_delivered: bool,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let filter = if include_delivered {
            ""
        } else {
            "AND parked.status != 'delivered'"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT parked.seq, parked.status, parked.reason, parked.http_status, parked.message,
                    parked.parked_at, parked.retries, parked.retried_at, parked.delivered_at
             FROM parked WHERE parked.destination = ?1 {filter} ORDER BY parked.seq"
        ))?;
        type Raw = (
            i64,
            String,
            String,
            Option<i64>,
            String,
            String,
            i64,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Raw> = stmt
            .query_map([destination], |r| r.try_into())?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (seq, status, reason, http, message, at, retries, retried, delivered) in rows {
            let event = select(&self.conn, "WHERE seq = ?1", [seq])?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Corrupt(format!("parked event {seq} is gone")))?;
            out.push(ParkedEvent {
                destination: destination.to_owned(),
                event,
                status: status.parse().map_err(StoreError::Corrupt)?,
                reason,
                http_status: status_code(http),
                message,
                parked_at: ts(&at)?,
                retries: u32::try_from(retries).unwrap_or(0),
                retried_at: opt_ts(retried)?,
                delivered_at: opt_ts(delivered)?,
            });
        }
        Ok(out)
    }

    /// `destination` refuses our credentials (401/403): nothing is sent until a probe is
    /// accepted. The first refusal of a streak is audited and sets `since`; later ones only
    /// update the reason. Returns whether this started the pause.
    pub fn pause_delivery(
        &mut self,
        destination: &str,
        reason: &str,
        http_status: Option<u16>,
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_cursor(&tx, destination)?;
        let (acked, paused, ..) = cursor(&tx, destination)?;
        let now = format_timestamp(self.clock.now());
        let reason = cut_text(reason, REFUSAL_MESSAGE_MAX);
        tx.execute(
            "UPDATE delivery_cursors SET paused_reason = ?2, paused_status = ?3,
                 paused_at = COALESCE(paused_at, ?4), updated_at = ?4
             WHERE destination = ?1",
            params![destination, reason, http_status, now],
        )?;
        let started = paused.is_none();
        if started {
            audit::append(
                &tx,
                self.clock.as_ref(),
                "delivery.paused",
                None,
                &json!({
                    "destination": destination,
                    "reason": reason,
                    "http_status": http_status,
                    "acked_seq": acked,
                }),
            )?;
        }
        tx.commit()?;
        Ok(started)
    }
}
