//! otdrift's configuration file: what an operator writes, how it is checked, and the typed
//! [`Config`] the agent runs from.
//!
//! The default path is `/etc/otdrift/otdrift.toml` (`--config PATH` or `OTDRIFT_CONFIG`
//! override it). The file is TOML. It is checked completely before the agent starts: every
//! problem is reported at once, each with file, line, column and key (see [Errors](#errors)).
//!
//! # Example
//!
//! ```toml
//! [agent]
//! id = "gw-line3"                 # names this gateway in every event
//! data_dir = "/var/lib/otdrift"   # SQLite database, agent key, exports
//! max_concurrency = 16            # optional: assets polled at the same time (1-1024)
//! clock_skew_secs = 60            # optional: tolerance on approval token times (0-3600)
//!
//! [api]                           # optional: the pull and approval API
//! listen = "127.0.0.1:8410"
//! token_file = "/etc/otdrift/api.token"
//!
//! [upstream]                      # optional: push of events
//! url = "https://central.example/otdrift/events"
//! token_file = "/etc/otdrift/upstream.token"   # optional
//! batch_size = 100                # optional: events per push (1-10000)
//!
//! [[approver]]                    # zero or more: who may sign approval tokens
//! id = "plant-eng-mgr"            # = the token's `kid` header and `iss` claim
//! public_key = "ed25519:<base64 of the 32-byte public key>"
//!
//! [[asset]]
//! id = "press-7"
//! protocol = "modbus"             # s7 | ads | cip | modbus | opcua
//! address = "10.0.3.17:502"       # host[:port]; opcua: opc.tcp://host[:port][/path]
//! schedule = "0 */5 * * * *"      # cron with seconds; default every 5 minutes
//! timeout_ms = 3000               # per-request device timeout (50-600000)
//! unit_id = 1                     # modbus only
//!
//!   [[asset.setpoints]]
//!   name = "recipe"
//!   table = "holding"             # modbus: holding | coil | input | discrete
//!   start = 0
//!   count = 200
//! ```
//!
//! # Sections
//!
//! Top-level keys are `agent`, `api`, `upstream`, `approver` and `asset`; anything else is an
//! error. Paths are used as written (a relative path is relative to the agent's working
//! directory).
//!
//! | section | key | required | meaning |
//! |---|---|---|---|
//! | `[agent]` | `id` | yes | gateway name in every event: 1-64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit |
//! | | `data_dir` | yes | directory for the SQLite database, the agent key and exports |
//! | | `max_concurrency` | no, 16 | assets captured at the same time, 1-1024 |
//! | | `clock_skew_secs` | no, 60 | tolerance on approval tokens' `nbf`/`exp`, 0-3600 |
//! | | `audit_head_interval_secs` | no, 3600 | how often `otdrift run` publishes the audit chain head, 1-604800 |
//! | | `backoff_max_secs` | no, 300 | longest pause between attempts on an unreachable asset, 1-86400 |
//! | | `max_token_lifetime` | no, `"30d"` | longest validity of an approval token (`exp - iat`), a duration from 1m to 3660d |
//! | | `approval_max_observation_age` | no, two schedule periods of the asset | how recently the approved state must have been seen for an approval to apply at once, a duration from 1s to 366d |
//! | `[api]` | `listen` | yes | socket address, `127.0.0.1:8410` or `[::1]:8410`; port not 0 |
//! | | `token_file` | yes | file holding the bearer token that reads (events, assets, metrics) |
//! | | `approve_token_file` | no | file holding a second token, needed for `POST /v1/approvals`; without it approvals over HTTP are off. Must be another file than `token_file` |
//!
//! Durations are strings of a number and a unit (`"90s"`, `"30m"`, `"12h"`, `"35d"`, or parts
//! such as `"1h 30m"`).
//! | `[upstream]` | `url` | yes | `http://` or `https://` URL with a host, no user info |
//! | | `token_file` | no | file holding the bearer token for the receiver |
//! | | `batch_size` | no, 100 | events per push, 1-10000 |
//! | | `timeout_ms` | no, 10000 | deadline of one push request, 100-300000 |
//! | `[[approver]]` | `id` | yes | token `kid`/`iss`: 1-128 characters, no whitespace; unique |
//! | | `public_key` | yes | `ed25519:` + standard padded base64 of exactly 32 bytes |
//!
//! # Assets
//!
//! Every `[[asset]]` has these keys:
//!
//! | key | required | meaning |
//! |---|---|---|
//! | `id` | yes | 1-64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit; unique |
//! | `protocol` | yes | `s7`, `ads`, `cip`, `modbus` or `opcua` (ASCII case ignored) |
//! | `address` | yes | `host` or `host:port` (IPv4, `[IPv6]`, or a DNS name; not resolved here); the port defaults to the protocol's own: s7 102, ads 48898, cip 44818, modbus 502. For opcua an endpoint URL `opc.tcp://host[:port][/path]` (port 4840) |
//! | `schedule` | no, `"0 */5 * * * *"` | cron with a seconds field (6 fields, optional 7th = year) |
//! | `timeout_ms` | no, 3000 | per-request device timeout, 50-600000 |
//! | `capture_timeout_ms` | no, 60000 | deadline of a whole capture in the daemon, 100-3600000 |
//! | `setpoints` | no | the `[[asset.setpoints]]` entries below |
//!
//! and the keys of its protocol; a key of another protocol is an error that says so:
//!
//! | protocol | key | required | meaning |
//! |---|---|---|---|
//! | s7 | `rack` | yes | 0-7 |
//! | | `slot` | yes | 0-31 |
//! | | `upload_blocks` | no, false | also hash the blocks' code as read from the PLC |
//! | | `pdu_size` | no, 960 | PDU size to negotiate, 240-960 (the CPU may grant less) |
//! | ads | `ams_net_id` | yes | target AMS Net Id, six dot-separated bytes `5.23.101.12.1.1` |
//! | | `ams_port` | no, 851 | target AMS port (851 = first TwinCAT 3 PLC runtime) |
//! | | `source_ams_net_id` | no | our own AMS Net Id, when the route on the PLC needs a fixed one |
//! | cip | `slot` | no, 0 | backplane slot of the Logix controller, 0-255 |
//! | | `route` | no | multi-hop route instead of `slot`, port/link pairs: `"1/2/2/10.0.0.5/1/0"` |
//! | | `rebrowse_every` | no, 12 | without an audit value, re-browse the tag list every N polls |
//! | | `audit_tag`, `changes_tag` | no, `AuditValue`, `ChangesToDetect` | tags a GSV rung fills with the controller's change-detection values |
//! | modbus | `unit_id` | no, 1 | 0-255 |
//! | | `device_id` | no, true | ask Read Device Identification (FC 43/14) for the identity |
//! | | `max_registers` | no, 125 | registers per read request, 1-125 |
//! | | `max_bits` | no, 2000 | coils/discrete inputs per read request, 1-2000 |
//! | opcua | `security` | no, `"none"` | `none`, `sign` or `sign-and-encrypt` |
//! | | `security_policy` | no | `Basic256Sha256`, `Aes128Sha256RsaOaep` or `Aes256Sha256RsaPss` (for `sign`/`sign-and-encrypt`) |
//! | | `username`, `password_file` | no, anonymous | a user name and the file holding its password; both or neither |
//!
//! # Setpoints
//!
//! Each `[[asset.setpoints]]` entry has a `name` (unique within the asset, used in diffs:
//! 1-128 characters, no control characters, no `/`, no surrounding spaces) and the addressing
//! keys of the asset's protocol, all required:
//!
//! | protocol | keys |
//! |---|---|
//! | s7 | `db` (1-65535), `start` (byte offset, 0-2097151), `size` (bytes, 1-65536; the range must end within the 2 MiB S7comm can address) |
//! | ads | `symbol`: a symbol name, or a prefix ending in `.*` (e.g. `"GVL_Recipe.*"`); no whitespace |
//! | cip | `tag`: controller-scoped `Oven_SP`, or `Program:<program>.<tag>` |
//! | modbus | `table` (`holding`, `coil`, `input`, `discrete`), `start` (0-65535), `count` (1-65535; `start + count` ≤ 65536). Ranges of one table must not overlap |
//! | opcua | `node`: a NodeId string, `[ns=<n>;]` then `i=<number>`, `s=<string>`, `g=<guid>` or `b=<base64>`; a folder is walked |
//!
//! # Errors
//!
//! [`load`] and [`parse`] return either a [`Config`] or [`ConfigErrors`], the list of every
//! problem found, sorted by position. One error displays as
//! `{file}:{line}:{column}: {key}: {message}`, lines and columns 1-based, the column counted in
//! characters; keys are paths such as `asset[2].setpoints[0].table` with 0-based indexes in order
//! of appearance. A missing key is reported at the header of the table that lacks it.
//!
//! ```text
//! /etc/otdrift/otdrift.toml:9:1: asset[0].unti_id: asset "press-7": unknown key `unti_id` for a modbus asset (did you mean `unit_id`?); expected one of id, protocol, address, schedule, timeout_ms, capture_timeout_ms, setpoints, unit_id, device_id, max_registers, max_bits
//! /etc/otdrift/otdrift.toml:14:11: asset[1].address: asset "oven-2": address "10.0.3.18:0": port 0 is out of range 1-65535
//! /etc/otdrift/otdrift.toml:15:3: asset[1].setpoints[0].table: asset "oven-2": missing required key `table` in [[asset.setpoints]] (modbus setpoints need name, table, start, count)
//! /etc/otdrift/otdrift.toml:17:3: asset[1].setpoints[0].db: `db` is an s7 setpoint key; asset "oven-2" uses modbus (setpoint keys: name, table, start, count)
//! /etc/otdrift/otdrift.toml:25:12: asset[2].schedule: asset "mixer": "*/5 * * * *" is not a valid cron schedule with seconds (Invalid pattern: Pattern must have 6 or 7 fields when seconds are required and years are optional.); expected e.g. "0 */5 * * * *"
//! ```
//!
//! Each error also has a [`ConfigErrorKind`] (`UnknownKey`, `MissingKey`, `InvalidValue`,
//! `BadProtocol`, `BadAddress`, `DuplicateId`, `WrongProtocolKey`, `BadCron`, `Syntax`, `Io`)
//! for programs. Asset ids are compared ignoring ASCII case when looking for duplicates (they
//! name directories); setpoint names must be unique within their asset; the second use is the
//! one reported, with the line of the first.
//!
//! A TOML syntax error stops checking there (the rest of the document would not mean what the
//! operator wrote), but all syntax errors toml's parser can recover from are reported. Past
//! syntax, every section, every `[[approver]]`, every `[[asset]]` and every setpoint is checked
//! on its own, and inside one table unknown keys, missing keys and bad values are all reported,
//! so one mistake never hides another.
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
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};

/// Reads and checks the config file at `path`.
///
/// A file that cannot be read gives one [`ConfigErrorKind::Io`] error (line 0) naming the path;
/// otherwise this is [`parse`] on the file's text.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
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

/// The gap between the next two firings of a (valid) cron schedule with seconds after
/// `after`: its period, for schedules like `*/10 * * * * *`, and the gap an operator would
/// expect for the others. `None` for a schedule that does not parse or never fires twice.
pub fn schedule_period(schedule: &str, after: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(schedule)
        .ok()?;
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
    /// `[[approver]]`: who may sign approval tokens, in file order.
    pub approvers: Vec<ApproverConfig>,
    /// `[[asset]]`: the PLCs to watch, in file order.
    pub assets: Vec<AssetConfig>,
}

impl Config {
    /// Looks an asset up by id, as CLI commands and approval tokens name assets.
    pub fn asset(&self, id: &str) -> Option<&AssetConfig> {
        self.assets.iter().find(|a| a.id == id)
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
}

/// `[[approver]]`: someone whose Ed25519 signature can move a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverConfig {
    /// The token's `kid` header and `iss` claim.
    pub id: String,
    /// Raw Ed25519 public key, decoded from `ed25519:<base64>`.
    pub public_key: [u8; 32],
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
    /// Protocol and its settings and setpoints.
    pub protocol: ProtocolConfig,
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
    /// Every protocol, in the order the docs list them, for help texts and iteration.
    pub const ALL: [Protocol; 5] = [
        Protocol::S7,
        Protocol::Ads,
        Protocol::Cip,
        Protocol::Modbus,
        Protocol::Opcua,
    ];

    /// The name used in the config file, the CLI and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::S7 => "s7",
            Protocol::Ads => "ads",
            Protocol::Cip => "cip",
            Protocol::Modbus => "modbus",
            Protocol::Opcua => "opcua",
        }
    }

    /// The protocol's well-known TCP port, used when an address has none.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::S7 => 102,
            Protocol::Ads => 48898,
            Protocol::Cip => 44818,
            Protocol::Modbus => 502,
            Protocol::Opcua => 4840,
        }
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
            "unknown protocol {:?}; expected one of s7, ads, cip, modbus, opcua",
            self.0
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

/// Modbus settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModbusConfig {
    /// Unit identifier (slave id) sent with every request; gateways route on it.
    pub unit_id: u8,
    /// Whether to ask Read Device Identification (FC 43/14) for the identity; some devices
    /// answer it badly, so it can be switched off.
    pub device_id: bool,
    /// Registers per read request (the protocol allows at most 125; some devices less).
    pub max_registers: u16,
    /// Coils / discrete inputs per read request (the protocol allows at most 2000).
    pub max_bits: u16,
    /// Ranges to capture.
    pub setpoints: Vec<ModbusSetpoint>,
}

/// A Modbus range to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModbusSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// Which of the four data tables.
    pub table: ModbusTable,
    /// First (0-based) address.
    pub start: u16,
    /// Number of registers or bits; `start + count <= 65536`.
    pub count: u16,
}

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModbusTable {
    /// Holding registers (FC 3).
    Holding,
    /// Coils (FC 1).
    Coil,
    /// Input registers (FC 4).
    Input,
    /// Discrete inputs (FC 2).
    Discrete,
}

impl ModbusTable {
    /// Every table, for help texts and iteration.
    pub const ALL: [ModbusTable; 4] = [
        ModbusTable::Holding,
        ModbusTable::Coil,
        ModbusTable::Input,
        ModbusTable::Discrete,
    ];

    /// The name used in the config file and in item paths (`modbus/holding/40`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModbusTable::Holding => "holding",
            ModbusTable::Coil => "coil",
            ModbusTable::Input => "input",
            ModbusTable::Discrete => "discrete",
        }
    }
}

impl fmt::Display for ModbusTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Siemens S7 settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S7Config {
    /// Rack of the CPU (0..=7).
    pub rack: u16,
    /// Slot of the CPU (0..=31; 1 or 2 for S7-300/1200/1500, often 3 for S7-400).
    pub slot: u16,
    /// Whether to also read the blocks' code for hashing (slower, still read-only).
    pub upload_blocks: bool,
    /// The PDU size to negotiate (`pdu_size`, default 960, 240..=960); the CPU may grant less.
    pub pdu_size: u16,
    /// Data-block ranges to capture.
    pub setpoints: Vec<S7Setpoint>,
}

/// An S7 data-block range to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S7Setpoint {
    /// Name used in diffs.
    pub name: String,
    /// Data block number (1..=65535).
    pub db: u16,
    /// Byte offset in the DB.
    pub start: u32,
    /// Bytes to read (1..=65536).
    pub size: u32,
}

/// Beckhoff ADS settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdsConfig {
    /// Target AMS Net Id.
    pub ams_net_id: [u8; 6],
    /// Target AMS port (851 = first TwinCAT 3 PLC runtime).
    pub ams_port: u16,
    /// Our own AMS Net Id, when the PLC's route requires a fixed one.
    pub source_ams_net_id: Option<[u8; 6]>,
    /// Symbols to capture.
    pub setpoints: Vec<AdsSetpoint>,
}

/// An ADS symbol (or symbol prefix) to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdsSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// A symbol name, or a prefix ending in `.*` that selects every symbol below it.
    pub symbol: String,
}

/// Logix (EtherNet/IP CIP) settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipConfig {
    /// Backplane slot of the controller (0..=255); the route is port 1, this slot.
    pub slot: u8,
    /// A multi-hop route that replaces `slot` (`route = "1/2/2/10.0.0.5/1/0"`): port/link
    /// pairs, a link being a slot or an IPv4 address, to reach a controller behind a
    /// communication module.
    pub route: Option<Vec<(u8, CipLink)>>,
    /// Controllers without a change-detection audit value get their tag list re-browsed every
    /// this many polls (`rebrowse_every`, default 12).
    pub rebrowse_every: u32,
    /// The controller-scoped tag a GSV rung fills with the audit value (`audit_tag`, default
    /// `AuditValue`).
    pub audit_tag: String,
    /// The tag holding the ChangesToDetect mask (`changes_tag`, default `ChangesToDetect`).
    pub changes_tag: String,
    /// Tags to capture.
    pub setpoints: Vec<CipSetpoint>,
}

/// One hop's link in a CIP route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipLink {
    /// A backplane slot.
    Slot(u8),
    /// A node on an EtherNet/IP port.
    Address(std::net::Ipv4Addr),
}

/// A Logix tag to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// Controller-scoped tag, or `Program:<program>.<tag>`.
    pub tag: String,
}

/// OPC UA settings of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpcuaConfig {
    /// Endpoint URL (the asset's `address`).
    pub endpoint: String,
    /// Message security mode to request.
    pub security: OpcuaSecurity,
    /// Security policy for `sign` and `sign-and-encrypt` (`security_policy`; the collector's
    /// default when absent).
    pub security_policy: Option<String>,
    /// User name to log in with; anonymous when absent.
    pub username: Option<String>,
    /// File holding the password of `username` (mode 0600).
    pub password_file: Option<PathBuf>,
    /// Nodes to capture.
    pub setpoints: Vec<OpcuaSetpoint>,
}

/// OPC UA message security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpcuaSecurity {
    /// No signing, no encryption.
    None,
    /// Messages signed.
    Sign,
    /// Messages signed and encrypted.
    SignAndEncrypt,
}

impl OpcuaSecurity {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OpcuaSecurity::None => "none",
            OpcuaSecurity::Sign => "sign",
            OpcuaSecurity::SignAndEncrypt => "sign-and-encrypt",
        }
    }
}

impl fmt::Display for OpcuaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OPC UA node (or folder, which is walked) to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpcuaSetpoint {
    /// Name used in diffs.
    pub name: String,
    /// NodeId string, e.g. `ns=2;s=Recipe`.
    pub node: String,
}
