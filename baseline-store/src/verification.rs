//! When each asset was last *verified*: its last capture that matched its approved
//! (non-provisional) baseline, and the alarm when that proof grows older than the agent's
//! `verify_max_age` (NERC CIP-010 R2 asks for at least every 35 days).
//!
//! ```text
//! last verified older than max age   ──► asset.verification_overdue (once per episode)
//! a matching capture after that      ──► asset.verified (the episode ends)
//! ```
//!
//! Nothing here is stored that the captures and baselines do not already say: a capture row
//! proves its state from `first_seen` to `last_seen`, and a baseline is in force from its
//! `set_at` until the next one. Only the episode (`assets.verification_overdue_since`) is
//! kept, so that it is announced once and ended once, across restarts.

use chrono::{DateTime, TimeDelta, Utc};
use otdrift_core::format_timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use crate::audit;
use crate::events::event_type;
use crate::model::opt_ts;
use crate::{Store, StoreError};

/// SQL for an asset's last verification (`?1` the asset): the latest moment a capture row held
/// the digest of a non-provisional baseline while that baseline was in force.
pub(crate) const LAST_VERIFIED: &str = "
    SELECT MAX(CASE WHEN nb.set_at IS NOT NULL AND nb.set_at < c.last_seen
                    THEN nb.set_at ELSE c.last_seen END)
    FROM baselines b
    LEFT JOIN baselines nb ON nb.id = (
        SELECT MIN(n.id) FROM baselines n WHERE n.asset = b.asset AND n.id > b.id)
    JOIN captures c ON c.asset = b.asset AND (c.digest = b.digest OR c.judged_digest = b.digest)
        AND c.last_seen >= b.set_at
        AND (nb.set_at IS NULL OR c.first_seen <= nb.set_at)
    WHERE b.asset = ?1 AND b.provisional = 0";

/// An asset's verification, as `status`, the API and the report show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// The last capture that matched the approved baseline, if any ever did.
    pub last_verified: Option<DateTime<Utc>>,
    /// Since when the proof is older than `verify_max_age` (the episode is announced).
    pub overdue_since: Option<DateTime<Utc>>,
    /// When the proof falls due: the last verification (for an asset never verified, its
    /// first baseline) plus `verify_max_age`. `None` before any baseline.
    pub due: Option<DateTime<Utc>>,
}

/// What [`Store::check_verification`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerificationCheck {
    /// Verified within the max age; nothing was announced.
    Current(Verification),
    /// Older than the max age: announced now (`true`) or already (`false`).
    Overdue(Verification, bool),
    /// A matching capture ended an overdue episode: `asset.verified` was announced.
    Recovered(Verification),
}

fn read(conn: &Connection, asset: &str, max_age: TimeDelta) -> Result<Verification, StoreError> {
    let last: Option<String> = conn.query_row(LAST_VERIFIED, [asset], |r| r.get(0))?;
    let row: Option<(Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT a.verification_overdue_since,
                    (SELECT MIN(b.set_at) FROM baselines b WHERE b.asset = a.id)
             FROM assets a WHERE a.id = ?1",
            [asset],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (overdue, first_baseline) = row.unwrap_or((None, None));
    let last_verified = opt_ts(last)?;
    let reference = last_verified.or(opt_ts(first_baseline)?);
    Ok(Verification {
        last_verified,
        overdue_since: opt_ts(overdue)?,
        due: reference.and_then(|r| r.checked_add_signed(max_age)),
    })
}

impl Store {
    /// When `asset` was last verified, whether that is overdue (announced), and when it falls
    /// due at `max_age`.
    pub fn verification(
        &self,
        asset: &str,
        max_age: TimeDelta,
    ) -> Result<Verification, StoreError> {
        read(&self.conn, asset, max_age)
    }

    /// Checks `asset`'s last verification against `max_age`. Older (or, for an asset never
    /// verified, its first baseline older): `asset.verification_overdue` is announced, once
    /// per episode. Within it again while an episode is open: `asset.verified` ends the
    /// episode. An asset without any baseline (never captured) is never overdue: the
    /// collection alarms describe it. The agent calls this only when its own bookkeeping says
    /// something may have changed, not every poll.
    pub fn check_verification(
        &mut self,
        asset: &str,
        max_age: TimeDelta,
    ) -> Result<VerificationCheck, StoreError> {
        // A quiet poll that matched may not be written yet.
        self.flush_seen()?;
        let clock = self.clock.clone();
        let now = clock.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = read(&tx, asset, max_age)?;
        let Some(due) = found.due else {
            tx.commit()?;
            return Ok(VerificationCheck::Current(found));
        };
        let overdue = now > due;
        let last = found.last_verified.map(format_timestamp);
        let result = match (overdue, found.overdue_since) {
            (true, Some(_)) => VerificationCheck::Overdue(found, false),
            (true, None) => {
                let since = due;
                tx.execute(
                    "INSERT INTO assets(id, protocol, address, verification_overdue_since)
                     VALUES (?1, '', '', ?2)
                     ON CONFLICT(id) DO UPDATE SET
                         verification_overdue_since = excluded.verification_overdue_since",
                    params![asset, format_timestamp(since)],
                )?;
                audit::append_with_event(
                    &tx,
                    clock.as_ref(),
                    "asset.verification_overdue",
                    event_type::ASSET_VERIFICATION_OVERDUE,
                    Some(asset),
                    &json!({
                        "asset": asset,
                        "last_verified": last,
                        "verify_max_age": crate::changes::human(max_age),
                        "since": format_timestamp(since),
                    }),
                )?;
                VerificationCheck::Overdue(
                    Verification {
                        overdue_since: Some(since),
                        ..found
                    },
                    true,
                )
            }
            (false, Some(since)) => {
                tx.execute(
                    "UPDATE assets SET verification_overdue_since = NULL WHERE id = ?1",
                    [asset],
                )?;
                audit::append_with_event(
                    &tx,
                    clock.as_ref(),
                    "asset.verification_recovered",
                    event_type::ASSET_VERIFIED,
                    Some(asset),
                    &json!({
                        "asset": asset,
                        "last_verified": last,
                        "overdue_since": format_timestamp(since),
                        "since": format_timestamp(now),
                    }),
                )?;
                VerificationCheck::Recovered(Verification {
                    overdue_since: None,
                    ..found
                })
            }
            (false, None) => VerificationCheck::Current(found),
        };
        tx.commit()?;
        Ok(result)
    }
}
