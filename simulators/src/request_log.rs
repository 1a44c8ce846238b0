//! A protocol-neutral log of every request a simulated device received.
//!
//! The log exists to *prove* things about the client under test, above all
//! that otdrift never sends a write. Every simulator in this crate (Modbus
//! today; S7, ADS, CIP and OPC UA later) records one [`LoggedRequest`] per
//! request it decoded, whether it was answered, refused with an error, or
//! swallowed by a quirk.
//!
//! The log is kept in memory (shared, cheap to clone) and can additionally be
//! appended to a file as JSON lines, one object per request, flushed per
//! line, so that a test running in another process can read it with
//! [`RequestLog::read_json_lines`] or any JSON tool:
//!
//! ```text
//! {"seq":0,"time":"2025-01-01T12:00:00.123456Z","protocol":"modbus","peer":"127.0.0.1:50412","unit_id":1,"service":3,"name":"read_holding_registers","detail":"address=0 count=125","address":0,"count":125,"write":false,"outcome":"ok"}
//! ```

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many entries [`RequestLog`] keeps in memory unless told otherwise.
///
/// Counters ([`RequestLog::total`], [`RequestLog::writes`],
/// [`RequestLog::count_by_function`]) are exact regardless; only the list of
/// entries is bounded, so a long-running test rig (or a client flooding the
/// simulator) cannot exhaust memory.
pub const DEFAULT_MEMORY_LIMIT: usize = 100_000;

/// One request as received by a simulated device.
///
/// Protocol-neutral: `protocol` names the simulator, `service` is the
/// protocol's operation code (the function code for Modbus), `name` and
/// `detail` are human-readable. `unit_id`, `address` and `count` are filled
/// in where the protocol has such a notion (Modbus does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// Position in the log since it was created (assigned by
    /// [`RequestLog::record`]; not reset by [`RequestLog::clear`]), so lines
    /// from a file can be ordered and gaps detected.
    pub seq: u64,
    /// When the request was received (UTC).
    pub time: DateTime<Utc>,
    /// Which simulator received it, e.g. `"modbus"`.
    pub protocol: String,
    /// The client's address, to tell several clients apart.
    pub peer: SocketAddr,
    /// The addressed unit (Modbus unit identifier), where the protocol has one.
    pub unit_id: Option<u8>,
    /// The protocol's operation code; for Modbus the function code.
    pub service: u16,
    /// Operation name in snake case, e.g. `"read_holding_registers"`.
    pub name: String,
    /// Parameters in a readable form, e.g. `"address=0 count=125"`.
    pub detail: String,
    /// First address the request touches, where the protocol has addresses.
    pub address: Option<u32>,
    /// Number of items the request touches (registers, bits, bytes...).
    pub count: Option<u32>,
    /// True if the request asks the device to change state (Modbus function
    /// codes 5, 6, 15, 16, 21, 22, 23 and state-changing diagnostics),
    /// whether or not the device applied it. This is what otdrift must never
    /// send.
    pub write: bool,
    /// What the device did: `"ok"`, `"exception 0x02 (illegal data
    /// address)"`, `"no answer (stall quirk)"`...
    pub outcome: String,
}

/// What a simulator decoded of one request: the protocol's part of a [`LoggedRequest`] (the
/// log adds the sequence number, the time, the protocol, the peer and the outcome). Every
/// simulator describes its requests with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Described {
    /// The protocol's operation code ([`LoggedRequest::service`]).
    pub(crate) service: u16,
    /// Operation name in snake case.
    pub(crate) name: String,
    /// Parameters in a readable form.
    pub(crate) detail: String,
    /// First address the request touches, where the protocol has addresses.
    pub(crate) address: Option<u32>,
    /// Number of items the request touches.
    pub(crate) count: Option<u32>,
    /// True if the request asks the device to change state.
    pub(crate) write: bool,
}

impl Described {
    /// A request without address, count or write.
    pub(crate) fn new(service: u16, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Described {
            service,
            name: name.into(),
            detail: detail.into(),
            ..Described::default()
        }
    }
}

impl LoggedRequest {
    /// The entry for a request `protocol` received from `peer` and what became of it (the
    /// log assigns `seq`; no unit id).
    pub(crate) fn new(
        protocol: &str,
        peer: SocketAddr,
        described: Described,
        outcome: impl Into<String>,
    ) -> Self {
        LoggedRequest {
            seq: 0,
            time: Utc::now(),
            protocol: protocol.to_owned(),
            peer,
            unit_id: None,
            service: described.service,
            name: described.name,
            detail: described.detail,
            address: described.address,
            count: described.count,
            write: described.write,
            outcome: outcome.into(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    entries: VecDeque<LoggedRequest>,
    memory_limit: usize,
    next_seq: u64,
    total: usize,
    writes: usize,
    by_service: BTreeMap<u16, usize>,
    file: Option<(PathBuf, File)>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            next_seq: 0,
            total: 0,
            writes: 0,
            by_service: BTreeMap::new(),
            file: None,
        }
    }
}

/// The shared request log of one simulator.
///
/// Cloning is cheap and every clone sees the same log (it is an `Arc`
/// inside), so a test can keep a clone while the simulator records into it.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    inner: Arc<Mutex<Inner>>,
}

impl RequestLog {
    /// An empty log keeping up to [`DEFAULT_MEMORY_LIMIT`] entries in memory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty log keeping at most `limit` entries in memory (the oldest
    /// are dropped first; counters stay exact; the file gets everything).
    #[must_use]
    pub fn with_memory_limit(limit: usize) -> Self {
        let log = Self::default();
        log.lock().memory_limit = limit;
        log
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the log inconsistent
        // in a way that matters for a test log, so keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one request: assigns its `seq`, updates the counters, keeps it
    /// in memory and appends it to the JSON-lines file if one is set.
    /// Returns the assigned sequence number.
    pub fn record(&self, mut entry: LoggedRequest) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        entry.seq = seq;
        inner.total += 1;
        if entry.write {
            inner.writes += 1;
        }
        *inner.by_service.entry(entry.service).or_insert(0) += 1;
        if let Some((path, file)) = inner.file.as_mut() {
            match serde_json::to_string(&entry) {
                Ok(mut line) => {
                    line.push('\n');
                    // One write call per line: a reader in another process
                    // never sees half a line unless the disk is full.
                    if let Err(err) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
                        tracing::warn!(path = %path.display(), %err, "cannot append to request log file");
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot serialize request log entry"),
            }
        }
        if inner.memory_limit == 0 {
            return seq;
        }
        while inner.entries.len() >= inner.memory_limit {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
        seq
    }

    /// The entries kept in memory, oldest first (all of them unless more than
    /// the memory limit were recorded since the last [`clear`](Self::clear)).
    #[must_use]
    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.lock().entries.iter().cloned().collect()
    }

    /// How many requests were recorded since creation or the last clear.
    #[must_use]
    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// How many of them were writes (`write == true`): the number that must
    /// stay zero while otdrift talks to the device.
    #[must_use]
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// Requests per Modbus function code (services that do not fit in a
    /// byte are left out; use [`count_by_service`](Self::count_by_service)
    /// for other protocols).
    #[must_use]
    pub fn count_by_function(&self) -> BTreeMap<u8, usize> {
        self.lock()
            .by_service
            .iter()
            .filter_map(|(service, count)| u8::try_from(*service).ok().map(|fc| (fc, *count)))
            .collect()
    }

    /// Requests per service code, for any protocol.
    #[must_use]
    pub fn count_by_service(&self) -> BTreeMap<u16, usize> {
        self.lock().by_service.clone()
    }

    /// Forgets the entries in memory and resets the counters, so a test can
    /// look at just what happens next. The file (if any) is not touched and
    /// sequence numbers keep counting up.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.total = 0;
        inner.writes = 0;
        inner.by_service.clear();
    }

    /// Starts appending every request recorded from now on to `path` as one
    /// JSON object per line (created if missing, appended if present),
    /// flushed per line. Replaces a file set earlier.
    ///
    /// # Errors
    /// If the file cannot be opened for appending.
    pub fn log_to_file(&self, path: &Path) -> io::Result<()> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        self.lock().file = Some((path.to_path_buf(), file));
        Ok(())
    }

    /// Stops appending to the file set by [`log_to_file`](Self::log_to_file).
    pub fn stop_file_log(&self) {
        self.lock().file = None;
    }

    /// Reads a JSON-lines file written by [`log_to_file`](Self::log_to_file)
    /// (for tests that run the simulator in another process). Blank lines are
    /// skipped; a torn last line (the writer was killed mid-write) is ignored.
    ///
    /// # Errors
    /// If the file cannot be read or a complete line is not a valid entry.
    pub fn read_json_lines(path: &Path) -> io::Result<Vec<LoggedRequest>> {
        let reader = BufReader::new(File::open(path)?);
        let lines: Vec<String> = reader.lines().collect::<io::Result<_>>()?;
        let last = lines.len().saturating_sub(1);
        let mut out = Vec::with_capacity(lines.len());
        for (index, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(entry) => out.push(entry),
                Err(_) if index == last => {}
                Err(err) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: line {}: {err}", path.display(), index + 1),
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(service: u16, write: bool) -> LoggedRequest {
        LoggedRequest {
            seq: 999,
            time: Utc::now(),
            protocol: "modbus".into(),
            peer: "127.0.0.1:1".parse().expect("peer address"),
            unit_id: Some(1),
            service,
            name: "x".into(),
            detail: String::new(),
            address: Some(0),
            count: Some(1),
            write,
            outcome: "ok".into(),
        }
    }

    #[test]
    fn counters_memory_limit_and_clear() {
        let log = RequestLog::with_memory_limit(2);
        log.record(entry(3, false));
        log.record(entry(3, false));
        log.record(entry(6, true));
        assert_eq!(log.total(), 3);
        assert_eq!(log.writes(), 1);
        assert_eq!(log.count_by_function(), BTreeMap::from([(3, 2), (6, 1)]));
        let entries = log.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].seq, 1);
        assert_eq!(entries[1].seq, 2);
        log.clear();
        assert_eq!(log.total(), 0);
        assert!(log.entries().is_empty());
        assert_eq!(log.record(entry(3, false)), 3);
    }

    #[test]
    fn json_lines_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let log = RequestLog::new();
        log.record(entry(1, false));
        log.log_to_file(&path).expect("open log file");
        log.record(entry(3, false));
        log.record(entry(16, true));
        let read = RequestLog::read_json_lines(&path).expect("read log file");
        assert_eq!(read.len(), 2);
        assert_eq!(read, log.entries()[1..].to_vec());
    }
}
