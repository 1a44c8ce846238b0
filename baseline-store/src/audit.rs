//! The hash-chained audit log.
//!
//! Each entry's hash covers its own fields and the previous entry's hash, so editing,
//! deleting or reordering any entry breaks every hash after it. The chain hash of entry `n` is
//!
//! ```text
//! BLAKE3( "otdrift-audit-v1" || field(seq) || field(at) || field(kind) || field(asset)
//!         || field(body) || field(prev_hash) )
//! field(x) := u64 big-endian byte length of x || x      (seq in decimal text, asset "" if none)
//! ```
//!
//! with `prev_hash` of the first entry being `blake3:` and 64 zeros. Length-prefixing keeps
//! field boundaries unambiguous whatever the body holds. A local attacker who rewrites the
//! whole chain is caught by the `audit.head` events a central system receives; truncating the
//! tail likewise, which is why the head is published.

use chrono::{DateTime, Utc};
use otdrift_core::{Clock, Digest, format_timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::ts;
use crate::{Store, StoreError};

/// The hash the first entry points back to.
pub const GENESIS: Digest = Digest::from_bytes([0; 32]);

/// One audit-log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// What happened (`capture.recorded`, `baseline.provisional`, `drift.opened`, ...).
    pub kind: String,
    /// The asset concerned, if any.
    pub asset: Option<String>,
    /// Details as JSON text, exactly as hashed.
    pub body: String,
    /// The previous entry's hash.
    pub prev_hash: Digest,
    /// This entry's hash.
    pub hash: Digest,
}

/// Where a chain stops being trustworthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditBreak {
    /// The first entry that does not verify.
    pub seq: i64,
    /// Why.
    pub reason: String,
}

/// The result of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's sequence number and hash: what `audit.head` publishes.
    pub head: Option<(i64, Digest)>,
    /// The first break, if any.
    pub first_break: Option<AuditBreak>,
}

fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// The chain hash of one entry (see the module documentation), public so that evidence packs
/// can be checked offline without a database.
pub fn chain_hash(
    seq: i64,
    at: &str,
    kind: &str,
    asset: Option<&str>,
    body: &str,
    prev: &Digest,
) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"otdrift-audit-v1");
    field(&mut hasher, seq.to_string().as_bytes());
    field(&mut hasher, at.as_bytes());
    field(&mut hasher, kind.as_bytes());
    field(&mut hasher, asset.unwrap_or("").as_bytes());
    field(&mut hasher, body.as_bytes());
    field(&mut hasher, prev.to_string().as_bytes());
    Digest::from_bytes(*hasher.finalize().as_bytes())
}

/// Appends an entry inside the caller's transaction, so the entry and the change it records
/// commit together.
pub(crate) fn append(
    conn: &Connection,
    clock: &dyn Clock,
    kind: &str,
    asset: Option<&str>,
    body: &serde_json::Value,
) -> Result<AuditEntry, StoreError> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, crate::model::digest(&hash)?),
        None => (1, GENESIS),
    };
    let at = clock.now();
    let at_text = format_timestamp(at);
    let body_text = body.to_string();
    let hash = chain_hash(seq, &at_text, kind, asset, &body_text, &prev_hash);
    conn.execute(
        "INSERT INTO audit_log(seq, at, kind, asset, body, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            seq,
            at_text,
            kind,
            asset,
            body_text,
            prev_hash.to_string(),
            hash.to_string()
        ],
    )?;
    Ok(AuditEntry {
        seq,
        at,
        kind: kind.to_owned(),
        asset: asset.map(str::to_owned),
        body: body_text,
        prev_hash,
        hash,
    })
}

type RawEntry = (i64, String, String, Option<String>, String, String, String);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    r.try_into()
}

fn to_entry(raw: RawEntry) -> Result<AuditEntry, StoreError> {
    let (seq, at, kind, asset, body, prev, hash) = raw;
    Ok(AuditEntry {
        seq,
        at: ts(&at)?,
        kind,
        asset,
        body,
        prev_hash: crate::model::digest(&prev)?,
        hash: crate::model::digest(&hash)?,
    })
}

const SELECT: &str = "SELECT seq, at, kind, asset, body, prev_hash, hash FROM audit_log";

/// Appends an entry and queues an event with the same body, inside the caller's transaction:
/// what every announcement of the store (drift, staleness, flapping, rejections, reviews,
/// delivery lag) records, so the audit log and the outbox never disagree.
pub(crate) fn append_with_event(
    conn: &Connection,
    clock: &dyn Clock,
    kind: &str,
    event_type: &str,
    asset: Option<&str>,
    body: &serde_json::Value,
) -> Result<AuditEntry, StoreError> {
    let entry = append(conn, clock, kind, asset, body)?;
    crate::events::enqueue(conn, clock, event_type, asset, body)?;
    Ok(entry)
}

impl Store {
    /// Appends an audit entry on its own (for events that change nothing else, such as a
    /// rejected approval).
    pub fn audit_append(
        &mut self,
        kind: &str,
        asset: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<AuditEntry, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let entry = append(&tx, self.clock.as_ref(), kind, asset, body)?;
        tx.commit()?;
        Ok(entry)
    }

    /// The chain's head (last entry's sequence number and hash) and the number of entries,
    /// without verifying the chain.
    pub fn audit_head(&self) -> Result<Option<(i64, Digest)>, StoreError> {
        let head: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        head.map(|(seq, hash)| Ok((seq, crate::model::digest(&hash)?)))
            .transpose()
    }

    /// Queues an `audit.head` event: `data` is built by `sign` from the chain's head (the agent
    /// signs it with its key, so a central system holds a copy a local attacker can neither
    /// rewrite nor forge). Head and event are read and written in one transaction. Returns the
    /// head published.
    pub fn publish_audit_head(
        &mut self,
        sign: impl FnOnce(Option<(i64, Digest)>) -> serde_json::Value,
    ) -> Result<Option<(i64, Digest)>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let head: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let head = head
            .map(|(seq, hash)| Ok::<_, StoreError>((seq, crate::model::digest(&hash)?)))
            .transpose()?;
        let data = sign(head);
        crate::events::enqueue(
            &tx,
            self.clock.as_ref(),
            crate::events::event_type::AUDIT_HEAD,
            None,
            &data,
        )?;
        tx.commit()?;
        Ok(head)
    }

    /// Every audit entry of the given kinds, in chain order (e.g. the agent key's history).
    pub fn audit_entries_of_kind(&self, kinds: &[&str]) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for kind in kinds {
            let mut stmt = self
                .conn
                .prepare(&format!("{SELECT} WHERE kind = ?1 ORDER BY seq"))?;
            let rows = stmt.query_map([kind], raw_row)?;
            for row in rows {
                out.push(to_entry(row?)?);
            }
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// Appends an audit entry and queues an event with the same body, in one transaction.
    pub fn audit_and_event(
        &mut self,
        kind: &str,
        event_type: &str,
        asset: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<AuditEntry, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let entry = append_with_event(&tx, self.clock.as_ref(), kind, event_type, asset, body)?;
        tx.commit()?;
        Ok(entry)
    }

    /// Entries in chain order, from `after_seq` (exclusive), at most `limit`.
    pub fn audit_entries(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
        let rows = stmt.query_map(params![after_seq, limit], raw_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(to_entry(row?)?);
        }
        Ok(out)
    }

    /// Entries that mention `needle` in their body (e.g. a change id), in chain order.
    pub fn audit_entries_mentioning(&self, needle: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT} WHERE instr(body, ?1) > 0 ORDER BY seq"))?;
        let rows = stmt.query_map([needle], raw_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(to_entry(row?)?);
        }
        Ok(out)
    }

    /// Walks the whole chain and reports the first entry that does not verify: a changed
    /// field, a broken link, or a missing sequence number.
    pub fn audit_verify(&self) -> Result<AuditReport, StoreError> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        let mut expected_seq = 1i64;
        let mut prev = GENESIS;
        let mut entries = 0u64;
        let mut head = None;
        while let Some(row) = rows.next()? {
            let (seq, at, kind, asset, body, prev_text, hash_text) = raw_row(row)?;
            let broken = |reason: String| AuditBreak { seq, reason };
            let check = || -> Result<Digest, AuditBreak> {
                if seq != expected_seq {
                    return Err(broken(format!(
                        "sequence jumps from {} to {seq}: entries are missing",
                        expected_seq - 1
                    )));
                }
                let stored_prev: Digest = prev_text
                    .parse()
                    .map_err(|_| broken(format!("prev_hash {prev_text:?} is not a digest")))?;
                if stored_prev != prev {
                    return Err(broken(format!(
                        "prev_hash {stored_prev} does not match the hash of entry {} ({prev})",
                        seq - 1
                    )));
                }
                let stored: Digest = hash_text
                    .parse()
                    .map_err(|_| broken(format!("hash {hash_text:?} is not a digest")))?;
                let computed = chain_hash(seq, &at, &kind, asset.as_deref(), &body, &prev);
                if stored != computed {
                    return Err(broken(format!(
                        "entry was altered: its fields hash to {computed}, the chain recorded {stored}"
                    )));
                }
                Ok(stored)
            };
            match check() {
                Ok(hash) => {
                    entries += 1;
                    prev = hash;
                    head = Some((seq, hash));
                    expected_seq = seq + 1;
                }
                Err(b) => {
                    return Ok(AuditReport {
                        entries,
                        head,
                        first_break: Some(b),
                    });
                }
            }
        }
        Ok(AuditReport {
            entries,
            head,
            first_break: None,
        })
    }
}
