//! otdrift's configuration file: what an operator writes, how it is checked, and the typed
//! [`Config`] the agent runs from ([`load`], [`parse`], [`ConfigErrors`]).
//!
//! The reference below is `docs/reference/config.md`, included here.
#![doc = include_str!("../../docs/reference/config.md")]
//!
//! # Usage
//!
//! ```
//! let text = r#"
//! [agent]
//! id = "gw-line3"
//! data_dir = "/var/lib/otdrift"
//!
//! [[asset]]
//! id = "press-7"
//! protocol = "modbus"
//! address = "10.0.3.17"
//! "#;
//! let config = otdrift_config::parse(text, "otdrift.toml".as_ref()).map_err(|e| e.to_string())?;
//! let press = config.asset("press-7").ok_or("no asset")?;
//! assert_eq!(press.port, 502);
//! # Ok::<(), String>(())
//! ```

mod check;
mod error;
mod protocols;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use protocols::ads::{AdsConfig, AdsSetpoint};
pub use protocols::cip::{CipConfig, CipLink, CipSetpoint};
pub use protocols::modbus::{
    ModbusConfig, ModbusField, ModbusFieldType, ModbusSetpoint, ModbusTable, WordOrder,
};
pub use protocols::opcua::{OpcuaConfig, OpcuaSecurity, OpcuaSetpoint};
pub use protocols::s7::{S7Config, S7Field, S7FieldType, S7Setpoint};
pub use validate::accepted_keys;

/// Reads and checks the config file at `path`.
///
/// A file that cannot be read gives one [`ConfigErrorKind::Io`] error (line 0) naming the path;
/// otherwise this is [`parse`] on the file's text.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read(path) {
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) => parse(text, path),
            Err(e) => Err(ConfigErrors(vec![not_utf8(&bytes, &e, path)])),
        },
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            kind: ConfigErrorKind::Io,
            message: format!("cannot read the config file: {e}"),
        }])),
    }
}

/// The error for a file that is not UTF-8 (TOML must be): it names the line and column of
/// the first bad byte (the column counted in characters, like every other error), and the
/// byte, so an editor that silently shows a Latin-1 `°` or `µ` still leads to the spot.
fn not_utf8(bytes: &[u8], e: &std::str::Utf8Error, path: &Path) -> ConfigError {
    let good = e.valid_up_to();
    // Everything before the bad byte is valid UTF-8 by definition.
    let before = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let byte = bytes.get(good).copied().unwrap_or_default();
    ConfigError {
        file: path.to_path_buf(),
        line,
        column,
        key: String::new(),
        kind: ConfigErrorKind::Syntax,
        message: format!(
            "the file is not UTF-8: byte 0x{byte:02x} at byte offset {good} is not valid UTF-8 (save the file as UTF-8; a Latin-1 editor writes `°` or `µ` this way)"
        ),
    }
}

/// Checks config text, so tests and `check-config` can validate without touching the disk;
/// `path` is only used in error messages and [`Config::path`].
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    validate::parse(text, path)
}

/// Parses a duration written the way every duration in the config is written: a number and
/// a unit, `"90s"`, `"30m"`, `"12h"`, `"35d"`, or several such parts (`"1h 30m"`). Also the
/// parser of every duration on the command line (`--valid 24h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty duration; write e.g. \"30s\", \"12h\" or \"35d\"".to_owned());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} has no unit; write e.g. \"{text}s\", \"{text}h\" or \"{text}d\""
        ));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e})"))
}

/// Writes a duration the way [`parse_duration`] reads it, in its largest whole unit.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d.subsec_nanos() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// Parses a size the way sizes are written in the config: a number and a binary unit,
/// `"256MiB"`, `"512 KiB"`, `"2GiB"`, or systemd's spelling of the same units (`"256M"`, as
/// in `MemoryMax=`), or bytes (`"4096B"`). Decimal units (`MB`) are refused rather than
/// guessed at.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size; write e.g. \"256MiB\", \"512KiB\" or \"2GiB\""
        ));
    }
    let shift = match unit {
        "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        "" => {
            return Err(format!(
                "{text:?} has no unit; write e.g. \"{number}MiB\" or \"{number}B\""
            ));
        }
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; use B, KiB, MiB, GiB or TiB (1024-based)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Writes a size the way [`parse_size`] reads it, in its largest whole unit.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// The schedule an asset actually runs on: an interval schedule shared by many assets is
/// spread within its interval by a stable hash of the asset id, so 500 PLCs behind one switch
/// are not all asked in the same second. Drift is still seen within one interval.
///
/// - seconds `*/N` (N dividing 60): the second becomes `K/N`, K = hash mod N;
/// - seconds `0` and minutes `*` or `*/N` (N dividing 60): the second becomes hash mod 60 and
///   minutes `*/N` become `M/N`, M = hash / 60 mod N;
/// - anything else (explicit times such as `0 30 2 * * *`, lists, ranges, every second) is
///   kept as written.
///
/// The hash is FNV-1a of the id: the same asset keeps its offset across restarts and
/// versions.
pub fn spread_schedule(schedule: &str, asset_id: &str) -> String {
    let hash = asset_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let every = |field: &str| -> Option<u64> {
        let n: u64 = field.strip_prefix("*/")?.parse().ok()?;
        (n > 1 && 60 % n == 0).then_some(n)
    };
    let mut out: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    match fields.as_slice() {
        [seconds, ..] if every(seconds).is_some() => {
            let n = every(seconds).unwrap_or(1);
            out[0] = format!("{}/{n}", hash % n);
        }
        ["0", "*", ..] => out[0] = (hash % 60).to_string(),
        ["0", minutes, ..] if every(minutes).is_some() => {
            let n = every(minutes).unwrap_or(1);
            out[0] = (hash % 60).to_string();
            out[1] = format!("{}/{n}", (hash / 60) % n);
        }
        _ => return schedule.to_owned(),
    }
    out.join(" ")
}

/// A cron schedule with a seconds field (6 fields, an optional 7th for the year), read the way
/// every schedule in the config is: asset schedules, maintenance windows. Day of month and
/// day of week restrict as in crontab (a day matching either fires). `Err` is croner's reason.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(schedule)
        .map_err(|e| e.to_string())
}

/// The gap between the next two firings of a (valid) cron schedule with seconds after
/// `after`: its period, for schedules like `*/10 * * * * *`, and the gap an operator would
/// expect for the others. `None` for a schedule that does not parse or never fires twice.
pub fn schedule_period(schedule: &str, after: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let cron = parse_schedule(schedule).ok()?;
    let mut next = cron.iter_after(after);
    let first = next.next()?;
    let second = next.next()?;
    (second - first).to_std().ok()
}

impl AssetConfig {
    /// How recently the state an approval names must have been seen for the approval to
    /// apply at once: `[agent] approval_max_observation_age`, or two periods of this asset's
    /// schedule (the gap between its next two firings after `now`).
    pub fn approval_max_observation_age(
        &self,
        agent: &AgentConfig,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Duration {
        agent.approval_max_observation_age.unwrap_or_else(|| {
            schedule_period(&self.schedule, now)
                .map(|p| p.saturating_mul(2))
                .unwrap_or(Duration::from_secs(600))
        })
    }
}

/// The whole, validated configuration; the agent runs from this and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, so later messages (and audit entries) can name it.
    pub path: PathBuf,
    /// `[agent]`: who this gateway is and where it keeps its state.
    pub agent: AgentConfig,
    /// `[api]`: present when the pull/approval HTTP API should run.
    pub api: Option<ApiConfig>,
    /// `[upstream]`: present when events should be pushed to a central system.
    pub upstream: Option<UpstreamConfig>,
    /// `[[sink]]`: where else events go (a SIEM over syslog, an MQTT broker), each on its own
    /// cursor of the outbox, in file order.
    pub sinks: Vec<SinkConfig>,
    /// `[retention]`: how long delivered events and unreferenced captures are kept.
    pub retention: RetentionConfig,
    /// `[[approver]]`: who may sign approval tokens, in file order.
    pub approvers: Vec<ApproverConfig>,
    /// `[[policy]]`: the plant's change policies, in file order.
    pub policies: Vec<PolicyConfig>,
    /// `[[asset]]`: the PLCs to watch, in file order.
    pub assets: Vec<AssetConfig>,
}

impl Config {
    /// Looks an asset up by id, as CLI commands and approval tokens name assets.
    pub fn asset(&self, id: &str) -> Option<&AssetConfig> {
        self.assets.iter().find(|a| a.id == id)
    }

    /// Looks a change policy up by id.
    pub fn policy(&self, id: &str) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| p.id == id)
    }

    /// The staging controllers of a production asset (`staging_for = "<id>"`).
    pub fn staging_of(&self, production: &str) -> Vec<&AssetConfig> {
        self.assets
            .iter()
            .filter(|a| a.staging_for.as_deref() == Some(production))
            .collect()
    }

    /// Looks an approver up by id, as a token's `kid` names its signer.
    pub fn approver(&self, id: &str) -> Option<&ApproverConfig> {
        self.approvers.iter().find(|a| a.id == id)
    }
}

/// `[agent]`: identity and storage of this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Names this gateway in every event (`otdrift://<id>/<asset>`).
    pub id: String,
    /// Where the SQLite database, the agent key and exports live.
    pub data_dir: PathBuf,
    /// Upper bound on assets captured at the same time, to protect the gateway and the network
    /// (`max_concurrency`, default 16, 1..=1024).
    pub max_concurrency: usize,
    /// How far the approver's clock may be off when an approval token's `nbf`/`exp` are
    /// checked (`clock_skew_secs`, default 60, 0..=3600). Small, so an expired approval stays
    /// expired.
    pub clock_skew_secs: u64,
    /// How often the daemon publishes the audit chain's head as an `audit.head` event
    /// (`audit_head_interval_secs`, default 3600, 1..=604800).
    pub audit_head_interval_secs: u64,
    /// The longest pause between attempts to reach an unreachable asset
    /// (`backoff_max_secs`, default 300, 1..=86400).
    pub backoff_max_secs: u64,
    /// The longest an approval token may be valid, `exp - iat` (`max_token_lifetime`, a
    /// duration, default `"30d"`, 1 minute to 3660 days). A longer-lived token is refused: an
    /// approval that waits for months is how a stale pre-approval rolls a plant back.
    pub max_token_lifetime: Duration,
    /// How recently the state an approval names must have been seen for the approval to apply
    /// at once (`approval_max_observation_age`, a duration; default: two schedule periods of
    /// the asset, see [`AssetConfig::approval_max_observation_age`]). Older observations make
    /// the approval wait for the next capture.
    pub approval_max_observation_age: Option<Duration>,
    /// The memory pool all running captures share (`memory_budget`, a size such as
    /// `"256MiB"`, 1MiB to 1TiB). Absent: half the service's `MemoryMax` when the daemon runs
    /// under one, else 256 MiB.
    pub memory_budget: Option<u64>,
    /// How long the daemon keeps the seen-times and counters of unchanged polls in memory
    /// before writing them in one transaction (`seen_flush`, a duration, default `"60s"`, 1s
    /// to 1h; also written at shutdown). A poll that changes anything (a new state, drift,
    /// an approval, an alarm, an event) is written at once whatever this says; a killed
    /// process loses at most this window of "still the same" timestamps.
    pub seen_flush: Duration,
    /// How old an asset's last verification (its last capture that matched its approved,
    /// non-provisional baseline) may grow before `asset.verification_overdue` is raised
    /// (`verify_max_age`, a duration, default `"35d"`: NERC CIP-010 R2 asks for at least
    /// every 35 days; 1s to 10 years).
    pub verify_max_age: Duration,
}

/// The default of `[agent] verify_max_age`: 35 days.
pub const DEFAULT_VERIFY_MAX_AGE: Duration = Duration::from_secs(35 * 86_400);

/// `[retention]`: what the store may delete, and when. The audit log is never pruned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Events delivered to every destination are deleted this long after they were written
    /// (`outbox`, default `"30d"`). A pull client asking for a deleted position gets 410.
    pub outbox: Duration,
    /// Captures and snapshots no baseline, open or approved drift, change, staging link or
    /// technician's capture refers to are deleted this long after they were last seen
    /// (`captures`, default `"90d"`).
    pub captures: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            outbox: Duration::from_secs(30 * 86_400),
            captures: Duration::from_secs(90 * 86_400),
        }
    }
}

/// `[api]`: the pull and approval HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// File holding the bearer token clients must present to read (read by the agent, not
    /// here).
    pub token_file: PathBuf,
    /// File holding the second token that `POST /v1/approvals` needs
    /// (`approve_token_file`); without it approvals over HTTP are off.
    pub approve_token_file: Option<PathBuf>,
    /// Open connections the API serves at once (`max_connections`, default 256, 1..=1024);
    /// more are closed at once. Well under the unit's 4096 file descriptors, so slow or idle
    /// clients can never take the sockets the PLCs and the upstream need.
    pub max_connections: usize,
    /// Serves the read-only status page under `/ui` (`ui`, default false).
    pub ui: bool,
    /// A PEM certificate chain (`tls_cert`) and its private key (`tls_key`): the API, and the
    /// status page, are then served over HTTPS only.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// `[upstream]`: where events are pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Receiver URL (`http://` or `https://`, with a host).
    pub url: String,
    /// File holding the bearer token for the receiver, when it wants one.
    pub token_file: Option<PathBuf>,
    /// Events per push (`batch_size`, default 100, 1..=10000).
    pub batch_size: usize,
    /// Deadline for one push request (`timeout_ms`, default 10000, 100..=300000).
    pub timeout_ms: u64,
    /// The most bytes one event may take, envelope included (`max_event_bytes`, default
    /// 262144 = 256 KiB, 16384..=16777216). A drift event with more changes than fit carries
    /// the first ones, counts per class and a pull link; the full list stays in the store.
    pub max_event_bytes: usize,
    /// Allows a bearer token over plain `http://` (`allow_insecure_http`, default false).
    /// Without it, `url = "http://..."` with a `token_file` is a config error.
    pub allow_insecure_http: bool,
}

/// `[[sink]]`: one more destination of the outbox's events, with its own cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The sink's name (`name`): its delivery cursor is `sink:<name>`.
    pub name: String,
    /// What it speaks, and where.
    pub kind: SinkKind,
    /// The host from `url`.
    pub host: String,
    /// The port from `url` (or the scheme's default).
    pub port: u16,
    /// A PEM file of the certificates the server's must chain to (`ca_file`); without it, the
    /// platform's trust store.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM, `client_cert_file`) and its key (`client_key_file`), for
    /// servers that authenticate clients by certificate.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Events per send (`batch_size`, default 100, 1..=10000).
    pub batch_size: usize,
    /// Deadline for connecting and for one batch (`timeout_ms`, default 10000).
    pub timeout_ms: u64,
    /// The line of the `[[sink]]` header, for messages.
    pub line: usize,
}

/// What a sink speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// Syslog (`type = "syslog"`).
    Syslog {
        /// `udp://`, `tcp://` (RFC 6587 octet counting) or `tls://` (RFC 5425).
        transport: SyslogTransport,
        /// RFC 5424 with structured data, or ArcSight CEF (`format`).
        format: SyslogFormat,
        /// The syslog facility (`facility`, default `local0`), as its number.
        facility: u8,
    },
    /// MQTT 3.1.1 (`type = "mqtt"`, `mqtt://` or `mqtts://`).
    Mqtt {
        /// Whether the connection is TLS (`mqtts://`).
        tls: bool,
        /// The user name (`username`).
        username: Option<String>,
        /// A file holding the password (`password_file`).
        password_file: Option<PathBuf>,
        /// The first topic level (`topic_prefix`, default `otdrift`).
        topic_prefix: String,
    },
}

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    /// RFC 5426: one datagram per event; best effort, long events truncated.
    Udp,
    /// RFC 6587 octet counting over TCP.
    Tcp,
    /// RFC 5425: octet counting over TLS.
    Tls,
}

/// What a syslog message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    /// RFC 5424 with an `otdrift@32473` structured-data element.
    Rfc5424,
    /// ArcSight Common Event Format in the message part.
    Cef,
}

/// Default of `[upstream] max_event_bytes` (the store applies the same bounds).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;
/// Smallest `[upstream] max_event_bytes`: a drift event still carries its header, counts and
/// pull link.
pub const MIN_MAX_EVENT_BYTES: usize = 16 * 1024;
/// Largest `[upstream] max_event_bytes` (16 MiB).
pub const MAX_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// `[[approver]]`: someone whose Ed25519 signature can move a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverConfig {
    /// The token's `kid` header and `iss` claim.
    pub id: String,
    /// Raw Ed25519 public key, decoded from `ed25519:<base64>`.
    pub public_key: [u8; 32],
}

/// `[[policy]]`: what a change must satisfy before the agent accepts it as approved (a tier
/// of the plant's change runbook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// What assets name in `policy = "..."` and `safety_policy = "..."`.
    pub id: String,
    /// How many distinct approver ids must sign the same change id and content
    /// (`approvals`, default 1, 1-16).
    pub approvals: u32,
    /// The least time between the agent receiving the change's first approval and the change
    /// reaching the device (`notice`, a duration, default `"0s"`).
    pub notice: Duration,
    /// Whether the change must first be seen on one of the asset's staging controllers
    /// (`require_staging`, default false).
    pub require_staging: bool,
    /// Whether each counted approval must carry `diff`, the digest of the content changes the
    /// approver reviewed (`diff_review`, default false).
    pub diff_review: bool,
    /// How long after an emergency change its review must be complete (`review_within`, a
    /// duration, default `"7d"`).
    pub review_within: Duration,
    /// 1-based line of the `[[policy]]` header.
    pub line: usize,
}

/// A recurring maintenance window of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// When a window starts: a cron schedule with seconds (UTC).
    pub start: String,
    /// How long it lasts.
    pub duration: Duration,
}

impl MaintenanceConfig {
    /// Whether `now` lies inside a window of this schedule (the latest start at or before
    /// `now`, plus the duration). Looks back at most the duration.
    pub fn contains(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let Ok(cron) = parse_schedule(&self.start) else {
            return false;
        };
        let Ok(span) = chrono::TimeDelta::from_std(self.duration) else {
            return false;
        };
        cron.iter_after(now - span - chrono::TimeDelta::seconds(1))
            .next()
            .is_some_and(|start| start <= now && now < start + span)
    }
}

/// `[[asset]]`: one PLC to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetConfig {
    /// Unique id; goes into paths, URLs and event sources, hence the restricted alphabet.
    pub id: String,
    /// The address as written, for display.
    pub address: String,
    /// Host to connect to: IPv4, IPv6 without brackets, or a DNS name (not resolved here);
    /// for opcua the endpoint URL's host.
    pub host: String,
    /// Port to connect to, or the protocol's default.
    pub port: u16,
    /// Cron expression with seconds, as accepted by the scheduler.
    pub schedule: String,
    /// Per-request device timeout in milliseconds.
    pub timeout_ms: u64,
    /// Deadline for a whole capture in milliseconds (`capture_timeout_ms`, default 60000):
    /// the daemon abandons a capture that takes longer and counts it as a failure.
    pub capture_timeout_ms: u64,
    /// The most requests the collector sends this device in any one second
    /// (`max_requests_per_sec`, default 50, 1-10000): a communication processor shared with
    /// the HMI and SCADA never sees a flood from the gateway.
    pub max_requests_per_sec: u32,
    /// Protocol and its settings and setpoints.
    pub protocol: ProtocolConfig,
    /// The change policy a change to this asset must satisfy (`policy`); none: one valid
    /// approval suffices.
    pub policy: Option<String>,
    /// Item path patterns (an exact path, or a prefix ending in `*`) of safety configuration
    /// (`safety`); a change touching one of them needs `safety_policy` instead of `policy`.
    pub safety: Vec<String>,
    /// The policy for changes that touch `safety` items (`safety_policy`).
    pub safety_policy: Option<String>,
    /// Recurring maintenance windows (`maintenance = [{ start = "0 0 2 * * Sun", duration =
    /// "4h" }]`): unreachable, failed-collection and stale alarms are held back inside them;
    /// drift is not.
    pub maintenance: Vec<MaintenanceConfig>,
    /// This asset is a staging controller for the named production asset (`staging_for`):
    /// changes are validated here before production, and a `content` approval for the
    /// production asset approves the same content here.
    pub staging_for: Option<String>,
    /// 1-based line of the `[[asset]]` header, so later messages can point into the file.
    pub line: usize,
}

/// An asset's protocol-specific settings; one variant per protocol, so a modbus asset cannot
/// carry s7 settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtocolConfig {
    /// Siemens S7comm.
    S7(S7Config),
    /// Beckhoff ADS.
    Ads(AdsConfig),
    /// Allen-Bradley Logix over EtherNet/IP CIP.
    Cip(CipConfig),
    /// Modbus TCP.
    Modbus(ModbusConfig),
    /// OPC UA.
    Opcua(OpcuaConfig),
}

impl ProtocolConfig {
    /// Which protocol this is, for dispatch and display without matching on settings.
    pub fn kind(&self) -> Protocol {
        match self {
            ProtocolConfig::S7(_) => Protocol::S7,
            ProtocolConfig::Ads(_) => Protocol::Ads,
            ProtocolConfig::Cip(_) => Protocol::Cip,
            ProtocolConfig::Modbus(_) => Protocol::Modbus,
            ProtocolConfig::Opcua(_) => Protocol::Opcua,
        }
    }
}

/// The protocols otdrift speaks, as a plain tag for dispatch, display and CLI arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Siemens S7comm (ISO-on-TCP).
    S7,
    /// Beckhoff ADS.
    Ads,
    /// EtherNet/IP CIP (Logix).
    Cip,
    /// Modbus TCP.
    Modbus,
    /// OPC UA binary (opc.tcp).
    Opcua,
}

impl Protocol {
    /// Every protocol, in the order the docs list them, for help texts and iteration. Also the
    /// declaration order, and the order of the protocol registry (`src/protocols/`), which
    /// holds each protocol's name, default port, keys and validator.
    pub const ALL: [Protocol; 5] = [
        Protocol::S7,
        Protocol::Ads,
        Protocol::Cip,
        Protocol::Modbus,
        Protocol::Opcua,
    ];

    /// The name used in the config file, the CLI and JSON output.
    pub fn as_str(self) -> &'static str {
        protocols::unit(self).name
    }

    /// The protocol's well-known TCP port, used when an address has none.
    pub fn default_port(self) -> u16 {
        protocols::unit(self).default_port
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name otdrift does not know; its `Display` lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol(pub String);

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown protocol {:?}; expected one of {}",
            self.0,
            Protocol::ALL.map(Protocol::as_str).join(", ")
        )
    }
}

impl std::error::Error for UnknownProtocol {}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// Accepts the names of [`Protocol::as_str`], ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

#[cfg(test)]
mod size_tests {
    use super::{format_size, parse_size};

    #[test]
    fn sizes_are_binary_and_need_a_unit() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(
            parse_size("256M"),
            Ok(256 << 20),
            "systemd's MemoryMax spelling"
        );
        assert_eq!(parse_size(" 512 KiB "), Ok(512 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("4096B"), Ok(4096));
        let no_unit = parse_size("256").expect_err("no unit");
        assert!(no_unit.contains("has no unit"), "{no_unit}");
        let decimal = parse_size("256MB").expect_err("decimal");
        assert!(decimal.contains("unknown unit \"MB\""), "{decimal}");
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1MiB").is_err());
        assert!(parse_size("1.5GiB").is_err());
        let huge = parse_size("99999999999TiB").expect_err("overflow");
        assert!(huge.contains("too large"), "{huge}");
    }

    #[test]
    fn sizes_round_trip() {
        for n in [0, 1, 1000, 1024, 3 << 20, 256 << 20, 5 << 30, 1 << 40] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(256 << 20), "256MiB");
        assert_eq!(format_size(1536), "1536B");
    }
}
