//! Allen-Bradley ControlLogix / CompactLogix over EtherNet/IP (CIP), read-only.
//!
//! # What is captured
//!
//! | path | class | value |
//! |---|---|---|
//! | `cip/identity/vendor_id`, `device_type`, `product_code` | identity | unsigned integers from the Identity object (class 0x01, instance 1) |
//! | `cip/identity/revision` | identity | firmware revision as text, `"33.11"` |
//! | `cip/identity/serial_number` | identity | 8 hex digits, as RSLinx shows it |
//! | `cip/identity/product_name` | identity | e.g. `"1769-L33ER/A LOGIX5333ER"` |
//! | `cip/controller/name` | program | the project name (program-name object 0x64) |
//! | `cip/controller/audit_value`, `cip/controller/changes_to_detect` | history | the controller's change-detection values, `"16#xxxx_xxxx_xxxx_xxxx"` (see below) |
//! | `cip/program/<program>` | program | `{routines: [...]}` |
//! | `cip/task/<task>` | program | null (the task exists) |
//! | `cip/tag/<tag>` and `cip/tag/Program:<program>.<tag>` | program | `{type: "REAL", dims: [10]}` (dims only for arrays) |
//! | `cip/template/<udt>` | program | `{size, handle}`: structure size in bytes, the controller's structure handle (a CRC of the definition) |
//! | `cip/template/<udt>/<member>` | program | `{type, offset}` plus `dims` for arrays and `bit` for packed BOOLs |
//! | `cip/value/<tag as configured>` | setpoint | the value, typed: BOOL → bool, SINT..LINT → int, USINT..ULINT → uint, REAL → f32, LREAL → f64, STRING → text, arrays → lists, UDTs → maps of members |
//!
//! Not hashed (in the capture's runtime): the controller's wall clock (`cip/wall_clock_us`),
//! the Identity status word (`cip/identity_status`) and its major-fault bits
//! (`cip/major_fault`), the connection used (`cip/connection`), whether the tag list was
//! browsed or reused (`cip/tag_list`) and whether Multiple Service Packet worked
//! (`cip/multiple_service_packet`). Tag values that are not configured setpoints are never read.
//!
//! What the controller will not tell fails the capture, except for the stable capabilities
//! that become one `not available: <reason>` item (decision 0004, field truth; the full list
//! is in `docs/protocols/cip.md`): `cip/controller/name` (no Logix program-name object, or an
//! answer that is no Logix name), `cip/controller/audit_value` / `changes_to_detect` (no
//! change-detection tags), `cip/tags` (the tag list cannot be browsed: service not supported,
//! or the session closed on it every time), `cip/value/<tag>` (a setpoint the tag list does
//! not list, or, without a tag list, one the controller answers "path unknown" for). Identity
//! refused, a listed tag or template refused, a busy answer (0x02), a malformed answer or a
//! bound fail the capture. A refused or garbled wall clock is recorded in the runtime as not
//! available (it is never hashed).
//!
//! # Change detection and cheap polling
//!
//! Rockwell documents AuditValue and ChangesToDetect (1756-PM015, "Change detection", v20+)
//! as readable by GSV and by a CIP Generic MSG whose service type ("Audit Value Get") hides
//! the class and attribute numbers; no public capture or client code (pycomm3, pylogix,
//! libplctag, cpppo, Wireshark's CIP dissector) we could find names them, so the collector
//! does not guess them. It reads them the documented way: a controller-scoped tag
//! `AuditValue` (LINT or `DINT[2]`) and optionally `ChangesToDetect`, filled by one GSV rung
//! (`GSV CONTROLLER AuditValue AuditValue`). Where they exist, every capture reads them
//! first, in the same Multiple Service Packet as identity and clock, and re-browses the tag
//! list and templates only when the audit value changed (or the controller's identity did).
//! Where they do not (firmware before v20, or no GSV rung), the digest still covers the tag
//! list, templates and identity revision, and the collector re-browses every
//! [`REBROWSE_EVERY`]th poll. Logic edits are only visible through the audit value: a
//! routine's contents cannot be read over CIP.
//!
//! # Device generations and setup
//!
//! - ControlLogix / CompactLogix v20+: everything above; Large Forward Open (4002 bytes);
//!   the audit value with the GSV rung.
//! - v16-v19: Forward Open with 504 bytes (Large Forward Open answers 0x08); no change
//!   detection, so `cip/controller/audit_value` is not available and the tag list is
//!   re-browsed every [`REBROWSE_EVERY`]th poll.
//! - Older firmware may refuse Get Instance Attribute List: `cip/tags` not available,
//!   setpoints still read and decoded by the type the controller answers.
//! - Logix Emulate has no change detection; Micro800 is not supported (no Symbol/Template
//!   browsing in this form, no backplane route).
//! - Tags with External Access `None` are neither listed nor readable (setpoints become not
//!   available). Nothing else needs access rights: only reads are sent.
//! - Route: `address` is the controller's own port or a 1756-EN2T in its chassis, `slot`
//!   the controller's backplane slot (requests go through port 1, that slot). A controller
//!   behind a second communication module needs a multi-hop route, which the config cannot
//!   express yet (a `route` key; see `docs/protocols/cip.md`).
//!
//! # Requests
//!
//! One capture in steady state is one Multiple Service Packet (identity, project name, clock,
//! audit value) plus the setpoints packed into as few Multiple Service Packets as the
//! connection size allows (Read Tag Fragmented for values larger than one packet). The
//! collector opens a Large Forward Open connection (4002 bytes) and falls back to Forward
//! Open (504 bytes) and then to unconnected messaging (504 bytes) when the controller refuses;
//! the connection and session are kept between captures, and a pooled session the controller
//! dropped is reopened once, transparently. Every exchange runs under the asset's
//! `timeout_ms`; after a timeout the session is dropped. Only read, browse and identify
//! services can be built (the private `request::Request`); see `docs/protocols/cip.md` for the device
//! setup (routes, slot, access rights) and what each generation reveals.

mod request;
mod session;
mod types;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use otdrift_config::{AssetConfig, CipConfig, Protocol};
use otdrift_core::{Class, Item, Snapshot, Value};
use tracing::Instrument;

use crate::{Capture, CaptureStats, CollectError, Collector};
use request::{Request, TagAddress};
use session::{Answer, Session, SessionError};
use types::{ElementType, Symbol, Template, Templates};
use wire::Status;

/// Polls between full re-browses of the tag list when the controller has no audit value
/// (proposed config key `rebrowse_every`).
pub const REBROWSE_EVERY: u32 = 12;
// (the config's `rebrowse_every`, `audit_tag` and `changes_tag` default to these values)
/// The controller-scoped tag a GSV rung fills with `CONTROLLER.AuditValue`.
pub const AUDIT_TAG: &str = "AuditValue";
/// The controller-scoped tag a GSV rung fills with `CONTROLLER.ChangesToDetect`.
pub const CHANGES_TAG: &str = "ChangesToDetect";

/// Most symbols accepted in one scope.
const MAX_SYMBOLS: usize = 200_000;
/// Most pages of one symbol listing.
const MAX_PAGES: usize = 20_000;
/// Most templates followed.
const MAX_TEMPLATES: usize = 4096;
/// Largest template definition read.
const MAX_TEMPLATE_BYTES: usize = 1 << 20;
/// Largest setpoint value read.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// Reply size assumed for a setpoint whose type is unknown (no tag list).
const UNKNOWN_REPLY: usize = 96;
/// CIP general status 0x02, resource unavailable: the one status that means "busy".
const BUSY: u8 = 0x02;
/// The encapsulation status cpppo answers (then closing the connection) for a request it
/// cannot serve at all; EtherNet/IP does not define it (its CIP meaning is "service not
/// supported", put in the wrong layer).
const ENCAP_UNSUPPORTED: u32 = 0x0008;

/// A configured setpoint.
#[derive(Clone, Debug)]
struct Setpoint {
    tag: String,
}

/// One program's symbols.
#[derive(Clone, Debug, Default)]
struct ProgramInfo {
    tags: Vec<Symbol>,
    routines: Vec<String>,
}

/// What a browse found (kept between captures for cheap polling).
#[derive(Clone, Debug, Default)]
struct Browse {
    controller: Vec<Symbol>,
    programs: BTreeMap<String, ProgramInfo>,
    tasks: Vec<String>,
    templates: Templates,
    /// Why the tag list is not available (then everything above is empty).
    unavailable: Option<String>,
}

/// How the audit value is read on this controller.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AuditSource {
    /// A LINT / DINT[2] tag.
    Tag {
        address: TagAddress,
        dint_pair: bool,
    },
    /// None: the stable reason.
    Missing(String),
}

#[derive(Clone, Debug)]
struct Cache {
    browse: Browse,
    audit: AuditSource,
    changes: AuditSource,
    audit_value: Value,
    changes_value: Value,
    fingerprint: Vec<Value>,
    polls_since_browse: u32,
}

/// What the cheap first request found.
struct Probe {
    identity: Vec<(String, Value)>,
    fingerprint: Vec<Value>,
    name: Value,
    audit_value: Option<Value>,
    changes_value: Option<Value>,
    audit_failed: bool,
}

/// What listing one scope's symbols gave.
#[derive(Debug)]
enum Listing {
    /// The symbols, every page.
    Symbols(Vec<Symbol>),
    /// The stable capability "no tag list", with its reason.
    Unsupported(String),
    /// The connection broke on the controller scope's first page: a capability only if it
    /// breaks again on a fresh session.
    Closed(CollectError),
}

/// Why a configured setpoint is not read.
#[derive(Debug)]
enum Unresolved {
    /// The tag list says it does not exist (or cannot be decoded): a stable not-available
    /// item with this reason.
    NotAvailable(String),
    /// The configured text is no Logix tag path: the gateway's configuration is wrong.
    Config(String),
    /// Larger than otdrift reads.
    Bound(String),
    /// A bug on our side.
    Internal(String),
}

/// Why a setpoint is not available when the controller, without a tag list, answers "path
/// unknown" for it: one text for 0x04 and 0x05, so it is stable.
const NO_SUCH_TAG: &str = "the controller has no such tag (its tag list cannot be read, and Read Tag answers path unknown)";

/// A setpoint resolved against the tag list.
#[derive(Clone, Debug)]
struct Resolved {
    address: TagAddress,
    element: Option<ElementType>,
    count: usize,
    /// BOOL arrays travel as DWORDs: the number of BOOLs.
    bools: Option<usize>,
    reply_bytes: usize,
}

/// The Logix collector for one asset; keeps its session and connection between captures.
pub struct CipCollector {
    asset: String,
    host: String,
    port: u16,
    address: String,
    timeout: Duration,
    route: Vec<u8>,
    /// Polls between re-browses when the controller has no audit value.
    rebrowse_every: u32,
    /// The tag holding the audit value.
    audit_tag: String,
    /// The tag holding the ChangesToDetect mask.
    changes_tag: String,
    setpoints: Vec<Setpoint>,
    session: Option<Session>,
    stats: CaptureStats,
    cache: Option<Cache>,
    /// Learned: the controller answers Multiple Service Packet.
    multi_service: bool,
    /// Learned: the most services the controller accepts in one Multiple Service Packet.
    max_batch: usize,
    /// Learned: the controller answers Large Forward Open.
    large_open: bool,
    connection_serial: u16,
    runtime: BTreeMap<String, Value>,
}

impl std::fmt::Debug for CipCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipCollector")
            .field("asset", &self.asset)
            .field("address", &self.address)
            .field("connected", &self.session.is_some())
            .finish()
    }
}

impl CipCollector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &CipConfig) -> Self {
        let mut seen = BTreeSet::new();
        let setpoints = cfg
            .setpoints
            .iter()
            .filter(|s| seen.insert(s.tag.clone()))
            .map(|s| Setpoint { tag: s.tag.clone() })
            .collect();
        CipCollector {
            asset: asset.id.clone(),
            host: asset.host.clone(),
            port: asset.port,
            address: asset.address.clone(),
            timeout: Duration::from_millis(asset.timeout_ms),
            route: match &cfg.route {
                Some(hops) => request::configured_route(hops),
                None => request::backplane_route(cfg.slot),
            },
            rebrowse_every: cfg.rebrowse_every.max(1),
            audit_tag: cfg.audit_tag.clone(),
            changes_tag: cfg.changes_tag.clone(),
            setpoints,
            session: None,
            stats: CaptureStats::default(),
            cache: None,
            multi_service: true,
            max_batch: usize::MAX,
            large_open: true,
            connection_serial: 0,
            runtime: BTreeMap::new(),
        }
    }

    fn scope(&self) -> crate::Scope {
        crate::Scope::new(&self.asset, &self.address)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn timeout_error(&self, request: String) -> CollectError {
        self.scope().timeout(request, self.timeout_ms(), "")
    }

    fn malformed(&self, request: &str, detail: impl std::fmt::Display) -> CollectError {
        self.scope().malformed(request, detail)
    }

    fn refused(&self, request: &str, reason: String) -> CollectError {
        self.scope().refused(request, reason)
    }

    fn session_error(&self, request: &str, e: SessionError) -> CollectError {
        match e {
            SessionError::Io(source) => self.scope().transport(request, source),
            SessionError::Wire(w) => self.malformed(request, w),
            SessionError::Encapsulation(status) => self.refused(
                request,
                format!(
                    "encapsulation status 0x{status:08x} ({})",
                    encap_status(status)
                ),
            ),
        }
    }

    /// Connects, registers a session and opens the explicit connection (Large Forward
    /// Open, then Forward Open, then none).
    async fn open(&mut self) -> Result<(), CollectError> {
        let lookup = async {
            tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map(|addrs| addrs.collect::<Vec<SocketAddr>>())
        };
        let addrs = match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => return Err(self.timeout_error("connect".to_owned())),
            Ok(Err(source)) => {
                return Err(self.scope().connect(source));
            }
            Ok(Ok(addrs)) => addrs,
        };
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.host),
        );
        let mut session = None;
        for addr in addrs {
            self.stats.requests += 1; // RegisterSession
            let opened = Session::open(addr, self.route.clone(), self.timeout_ms());
            match tokio::time::timeout(self.timeout, opened).await {
                Err(_) => return Err(self.timeout_error("connect and RegisterSession".to_owned())),
                Ok(Ok(s)) => {
                    session = Some(s);
                    break;
                }
                Ok(Err(SessionError::Io(e))) => last = e,
                Ok(Err(e)) => return Err(self.session_error("RegisterSession", e)),
            }
        }
        let Some(mut session) = session else {
            return Err(self.scope().connect(last));
        };
        self.stats.connects += 1;
        for large in [true, false] {
            if large && !self.large_open {
                continue;
            }
            self.connection_serial = self.connection_serial.wrapping_add(1).max(1);
            self.stats.requests += 1;
            let what = if large {
                "Large Forward Open (0x5B)"
            } else {
                "Forward Open (0x54)"
            };
            match tokio::time::timeout(
                self.timeout,
                session.forward_open(large, self.connection_serial),
            )
            .await
            {
                Err(_) => return Err(self.timeout_error(what.to_owned())),
                Ok(Err(e)) => return Err(self.session_error(what, e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(refusal))) => {
                    tracing::debug!(status = %refusal.status, what, "forward open refused");
                    if large && refusal.status.general == 0x08 {
                        // Firmware without Large Forward Open (before v20): never ask again.
                        self.large_open = false;
                    }
                }
            }
        }
        let connection = match session.connection_size() {
            Some(size) if size > 511 => format!("Large Forward Open, {size} bytes"),
            Some(size) => format!("Forward Open, {size} bytes"),
            None => format!("unconnected, {} bytes", session::UNCONNECTED_SIZE),
        };
        self.runtime
            .insert("cip/connection".to_owned(), Value::Text(connection));
        tracing::debug!(address = %self.address, "session open");
        self.session = Some(session);
        Ok(())
    }

    /// Sends one request and returns the controller's answer (which may be a refusal).
    ///
    /// A pooled session the controller dropped since the last capture fails on first use;
    /// that one failure is retried once on a fresh session.
    async fn call(&mut self, request: &Request) -> Result<Answer, CollectError> {
        match self.call_or_encapsulation(request).await? {
            Ok(answer) => Ok(answer),
            Err(status) => {
                Err(self.session_error(&request.describe(), SessionError::Encapsulation(status)))
            }
        }
    }

    /// [`Self::call`], except that an answer refused at the encapsulation layer (non-zero
    /// encapsulation status, no CIP reply at all) comes back as `Ok(Err(status))` for the
    /// caller to judge; the session is dropped, since the device may close it (cpppo does).
    async fn call_or_encapsulation(
        &mut self,
        request: &Request,
    ) -> Result<Result<Answer, u32>, CollectError> {
        let mut reused = self.session.is_some();
        loop {
            if self.session.is_none() {
                self.open().await?;
            }
            let Some(session) = self.session.as_mut() else {
                continue;
            };
            self.stats.requests += 1;
            let result = tokio::time::timeout(self.timeout, session.send(request)).await;
            match result {
                Err(_) => {
                    self.session = None;
                    return Err(self.timeout_error(request.describe()));
                }
                Ok(Ok(answer)) => {
                    // 0x01/0x0107: the controller no longer knows our connection (it timed
                    // out while we were idle): same as a dropped session.
                    if reused
                        && answer.status.general == 0x01
                        && answer.status.extended.first() == Some(&0x0107)
                    {
                        reused = false;
                        self.session = None;
                        continue;
                    }
                    if answer.service == request::UNCONNECTED_SEND | 0x80
                        && request_service(request) != request::READ_TAG_FRAGMENTED
                    {
                        // The connection manager could not route to the controller.
                        return Err(self.refused(
                            &request.describe(),
                            format!(
                                "routing to the controller failed ({}); check the asset's {}",
                                answer.status,
                                request::describe_route(&self.route)
                            ),
                        ));
                    }
                    let expected = request_service(request) | 0x80;
                    if answer.service != expected && answer.status.is_ok() {
                        self.session = None;
                        return Err(self.malformed(
                            &request.describe(),
                            format!(
                                "reply service 0x{:02x}, expected 0x{expected:02x}",
                                answer.service
                            ),
                        ));
                    }
                    return Ok(Ok(answer));
                }
                Ok(Err(SessionError::Io(source))) => {
                    self.session = None;
                    if reused {
                        reused = false;
                        tracing::debug!(error = %source, "pooled session lost, reconnecting");
                        continue;
                    }
                    return Err(self.session_error(&request.describe(), SessionError::Io(source)));
                }
                Ok(Err(SessionError::Encapsulation(status))) => {
                    self.session = None;
                    return Ok(Err(status));
                }
                Ok(Err(e)) => {
                    self.session = None;
                    return Err(self.session_error(&request.describe(), e));
                }
            }
        }
    }

    /// The error for a request the controller answered with a non-success `status`:
    /// [`ErrorKind::Busy`](crate::ErrorKind::Busy) for general status 0x02 (resource
    /// unavailable), the only status that means "later"; otherwise a refusal, `why` saying what
    /// the refusal means here (a contradiction with the tag list, a must-have object).
    fn refusal(&self, request: &str, why: &str, status: &Status) -> CollectError {
        if status.general == BUSY {
            self.scope().busy(request, status)
        } else {
            self.refused(request, format!("{why} ({status})"))
        }
    }

    fn capacity(&self) -> usize {
        self.session
            .as_ref()
            .map_or(session::UNCONNECTED_SIZE, Session::capacity)
    }

    /// Sends requests, packed into Multiple Service Packets as far as the connection size
    /// allows (request and reply sizes both), and returns one answer per request.
    async fn batch(
        &mut self,
        requests: Vec<(Request, usize)>,
    ) -> Result<Vec<Answer>, CollectError> {
        if self.session.is_none() {
            self.open().await?;
        }
        let mut answers = Vec::with_capacity(requests.len());
        let mut i = 0;
        while i < requests.len() {
            let capacity = self.capacity();
            let mut group: Vec<Request> = Vec::new();
            let mut request_bytes = 8; // service, path size, path (4), count
            let mut reply_bytes = 6; // reply header (4), count
            while let Some((request, reply)) = requests.get(i + group.len()) {
                let size = request
                    .encode(&self.route)
                    .map_err(|e| self.malformed(&request.describe(), e))?
                    .len();
                let more_request = request_bytes + 2 + size;
                let more_reply = reply_bytes + 2 + reply;
                if !group.is_empty()
                    && (more_request > capacity
                        || more_reply > capacity
                        || group.len() >= self.max_batch)
                {
                    break;
                }
                request_bytes = more_request;
                reply_bytes = more_reply;
                group.push(request.clone());
                if !self.multi_service {
                    break;
                }
            }
            let n = group.len();
            if n == 1 || !self.multi_service {
                for request in &group {
                    let answer = self.call(request).await?;
                    answers.push(answer);
                }
            } else {
                let multiple = Request::Multiple(group.clone());
                let answer = self.call(&multiple).await?;
                if answer.status.general == BUSY {
                    return Err(self.scope().busy(multiple.describe(), &answer.status));
                }
                if !answer.status.is_ok()
                    && !matches!(answer.status.general, 0x08 | 0x1E)
                    && answer.data.is_empty()
                {
                    // Refused as a whole (too many services, too large): pack fewer from
                    // now on and send these again.
                    tracing::debug!(status = %answer.status, n, "multiple service packet refused, packing fewer");
                    self.max_batch = (n / 2).max(1);
                    if self.max_batch == 1 {
                        self.multi_service = false;
                        self.runtime.insert(
                            "cip/multiple_service_packet".to_owned(),
                            Value::Text(format!("not used: {}", answer.status)),
                        );
                    }
                    continue;
                }
                match split_multiple(&answer, &group) {
                    Ok(parts) => answers.extend(parts),
                    Err(reason) => {
                        // Service refused, or answered without its standard count/offsets (or
                        // with offsets that do not add up): send these one by one, and never
                        // pack again on this controller. The honest retry of the field-truth
                        // rule: the very same requests, so the capture is exactly the device's
                        // state, or fails on what the single answers say.
                        tracing::debug!(%reason, "multiple service packet unusable");
                        self.multi_service = false;
                        self.runtime.insert(
                            "cip/multiple_service_packet".to_owned(),
                            Value::Text(format!("not used: {reason}")),
                        );
                        for request in &group {
                            let answer = self.call(request).await?;
                            answers.push(answer);
                        }
                    }
                }
            }
            i += n;
        }
        Ok(answers)
    }

    /// The cheap first round trip: identity, project name, clock and audit value.
    async fn probe(&mut self, with_audit: bool) -> Result<Probe, CollectError> {
        let mut requests = vec![
            (Request::Identity, 64),
            (Request::ControllerName, 48),
            (Request::WallClock, 20),
        ];
        // The audit tags known from the last browse (a missing one is not asked for).
        let audit_sources: Vec<AuditSource> = match (&self.cache, with_audit) {
            (Some(cache), true) => vec![cache.audit.clone(), cache.changes.clone()],
            _ => Vec::new(),
        };
        for source in &audit_sources {
            if let AuditSource::Tag { address, dint_pair } = source {
                let count = if *dint_pair { 2 } else { 1 };
                let tag = address.clone();
                requests.push((Request::ReadTag { tag, count }, 16));
            }
        }
        let mut answers = self.batch(requests).await?.into_iter();
        let identity_answer = answers.next();
        let name_answer = answers.next();
        let clock_answer = answers.next();

        let (identity, fingerprint) = match identity_answer {
            Some(a) if a.status.is_ok() => self.parse_identity(&a.data)?,
            // Every CIP device has an Identity object: refusing it is never a capability.
            Some(a) => {
                return Err(self.refusal(
                    &Request::Identity.describe(),
                    "the controller refused its identity",
                    &a.status,
                ));
            }
            None => return Err(self.malformed(&Request::Identity.describe(), "no answer")),
        };
        let name = match name_answer {
            Some(a) => self.project_name(&a)?,
            None => return Err(self.malformed(&Request::ControllerName.describe(), "no answer")),
        };
        let clock = match clock_answer {
            Some(a) => self.wall_clock(&a)?,
            None => return Err(self.malformed(&Request::WallClock.describe(), "no answer")),
        };
        self.runtime.insert("cip/wall_clock_us".to_owned(), clock);
        let mut audit_value = None;
        let mut changes_value = None;
        let mut audit_failed = false;
        for (k, source) in audit_sources.iter().enumerate() {
            let value = match source {
                AuditSource::Missing(reason) => Value::unavailable(reason.clone()),
                AuditSource::Tag { dint_pair, address } => match answers.next() {
                    Some(a) if a.status.is_ok() => {
                        audit_from_reply(&a.data, *dint_pair).map_err(|e| {
                            self.malformed(&format!("Read Tag (0x4C) {}", address.text), e)
                        })?
                    }
                    Some(a) if a.status.general == BUSY => {
                        return Err(self
                            .scope()
                            .busy(format!("Read Tag (0x4C) {}", address.text), &a.status));
                    }
                    _ => {
                        // The tag went away (a download removed it): browse again, which
                        // finds it gone (not available) or listed yet refused (a refusal).
                        audit_failed = true;
                        continue;
                    }
                },
            };
            if k == 0 {
                audit_value = Some(value);
            } else {
                changes_value = Some(value);
            }
        }
        Ok(Probe {
            identity,
            fingerprint,
            name,
            audit_value,
            changes_value,
            audit_failed,
        })
    }

    /// The project name from the program-name object's answer.
    ///
    /// Logix answers a STRING (then bytes nobody has documented), always a Logix name. A
    /// device without that object either refuses (0x04/0x05 path unknown, 0x08 service not
    /// supported) or, like cpppo, answers "success" with whatever its own object holds (a
    /// dump of its tag values). Both are the same stable capability, "no Logix project
    /// name", recorded with a text that names neither status nor bytes, so it is identical
    /// every poll; a controller that had a name and loses it fails against its baseline.
    /// Busy is busy; any other refusal fails.
    fn project_name(&self, answer: &Answer) -> Result<Value, CollectError> {
        let describe = Request::ControllerName.describe();
        if answer.status.is_ok() {
            return Ok(match parse_project_name(&answer.data) {
                Some(name) => Value::Text(name),
                None => Value::unavailable(NO_PROJECT_NAME_ANSWER),
            });
        }
        if matches!(answer.status.general, 0x04 | 0x05 | 0x08) {
            tracing::debug!(status = %answer.status, "no program-name object");
            return Ok(Value::unavailable(NO_PROJECT_NAME_OBJECT));
        }
        Err(self.refusal(
            &describe,
            "the controller refused its project name",
            &answer.status,
        ))
    }

    /// The controller's clock for the runtime (never hashed): a refused or garbled answer is
    /// recorded there as not available instead of failing the capture (cpppo answers the
    /// attribute list without its count, and "object does not exist" for the attribute).
    /// Busy is still busy.
    fn wall_clock(&self, answer: &Answer) -> Result<Value, CollectError> {
        if answer.status.general == BUSY {
            return Err(self
                .scope()
                .busy(Request::WallClock.describe(), &answer.status));
        }
        if !answer.status.is_ok() {
            return Ok(Value::unavailable(format!(
                "the controller refused its wall clock ({})",
                stable_status(&answer.status)
            )));
        }
        Ok(match parse_wall_clock(&answer.data) {
            Ok(us) => Value::UInt(us),
            Err(e) => Value::unavailable(format!("the wall clock answer does not fit: {e}")),
        })
    }

    #[allow(clippy::type_complexity)]
    fn parse_identity(
        &mut self,
        data: &[u8],
    ) -> Result<(Vec<(String, Value)>, Vec<Value>), CollectError> {
        let describe = Request::Identity.describe();
        let mut c = wire::Cursor::new(data, "Identity");
        let parsed = (|| -> Result<_, wire::WireError> {
            let vendor = c.u16()?;
            let device_type = c.u16()?;
            let product_code = c.u16()?;
            let major = c.u8()?;
            let minor = c.u8()?;
            let status = c.u16()?;
            let serial = c.u32()?;
            let len = usize::from(c.u8()?);
            let name = c.take(len)?;
            Ok((
                vendor,
                device_type,
                product_code,
                major,
                minor,
                status,
                serial,
                name,
            ))
        })();
        let (vendor, device_type, product_code, major, minor, status, serial, name) =
            parsed.map_err(|e| self.malformed(&describe, e))?;
        self.runtime.insert(
            "cip/identity_status".to_owned(),
            Value::UInt(u64::from(status)),
        );
        self.runtime.insert(
            "cip/major_fault".to_owned(),
            Value::Bool(status & 0x0C00 != 0),
        );
        if vendor == 0 && product_code == 0 && serial == 0 {
            // ODVA never assigns vendor 0: some gateways answer a fixed placeholder for
            // routed requests instead of refusing. That is a refusal in disguise of something
            // every device has, so the capture fails.
            return Err(self.refused(
                &describe,
                "the device answered a placeholder identity (vendor 0, product code 0, serial 0) instead of its own".to_owned(),
            ));
        }
        let name = match std::str::from_utf8(name) {
            Ok(text) => Value::Text(text.trim_end_matches('\0').to_owned()),
            Err(_) => Value::Bytes(name.to_vec()),
        };
        let revision = Value::Text(format!("{major}.{minor}"));
        let serial = Value::Text(format!("{serial:08X}"));
        let fingerprint = vec![
            revision.clone(),
            serial.clone(),
            Value::from(u32::from(product_code)),
        ];
        Ok((
            vec![
                ("cip/identity/vendor_id".to_owned(), Value::from(vendor)),
                (
                    "cip/identity/device_type".to_owned(),
                    Value::from(device_type),
                ),
                (
                    "cip/identity/product_code".to_owned(),
                    Value::from(product_code),
                ),
                ("cip/identity/revision".to_owned(), revision),
                ("cip/identity/serial_number".to_owned(), serial),
                ("cip/identity/product_name".to_owned(), name),
            ],
            fingerprint,
        ))
    }

    /// Lists one scope's symbols, following "partial transfer" pages.
    ///
    /// [`Listing::Unsupported`] only for the stable capability "no tag list": the controller
    /// scope's first page answered "service not supported" (0x08, firmware without the
    /// service), or refused at the encapsulation layer with 0x0008 (cpppo, which then closes
    /// the connection). [`Listing::Closed`] when the connection broke on that first page.
    /// Anything else that is not an answer fails: a program the controller itself lists
    /// whose scope is refused, or a refusal after the first page, contradicts the listing;
    /// 0x04/0x05 mean the device has no Symbol object, which no Logix lacks.
    async fn list_symbols(&mut self, program: Option<&str>) -> Result<Listing, CollectError> {
        let mut start = 0u32;
        let mut out: Vec<Symbol> = Vec::new();
        let scope = program.map_or_else(|| "the controller".to_owned(), |p| format!("Program:{p}"));
        for _ in 0..MAX_PAGES {
            let request = Request::ListSymbols {
                program: program.map(str::to_owned),
                start,
            };
            let capability = program.is_none() && start == 0;
            let answer = match self.call_or_encapsulation(&request).await {
                Ok(Ok(answer)) => answer,
                Err(e) if capability && matches!(e.kind, crate::ErrorKind::Transport(_)) => {
                    return Ok(Listing::Closed(e));
                }
                Err(e) => return Err(e),
                Ok(Err(ENCAP_UNSUPPORTED)) if capability => {
                    return Ok(Listing::Unsupported(format!(
                        "the controller does not support Get Instance Attribute List (0x55): encapsulation status 0x{ENCAP_UNSUPPORTED:08x}, and it closes the connection"
                    )));
                }
                Ok(Err(status)) => {
                    return Err(self
                        .session_error(&request.describe(), SessionError::Encapsulation(status)));
                }
            };
            if !answer.status.is_ok() && !answer.status.is_partial() {
                if capability && answer.status.general == 0x08 {
                    return Ok(Listing::Unsupported(format!(
                        "controller refused Get Instance Attribute List (0x55) on {scope} ({})",
                        answer.status
                    )));
                }
                let why = match program {
                    Some(_) => "the controller lists this program but refuses to list its tags",
                    None if start > 0 => {
                        "the controller refused a later page of the tag list it had started"
                    }
                    None => "the controller refused its tag list",
                };
                return Err(self.refusal(&request.describe(), why, &answer.status));
            }
            let page = types::parse_symbols(&answer.data)
                .map_err(|e| self.malformed(&request.describe(), e))?;
            if let Some(first) = page.first()
                && first.instance < start
            {
                return Err(self.malformed(
                    &request.describe(),
                    format!("page starts at instance {}, before {start}", first.instance),
                ));
            }
            if page.windows(2).any(|w| w[1].instance <= w[0].instance) {
                return Err(self.malformed(&request.describe(), "instances are not ascending"));
            }
            let last = page.last().map(|s| s.instance);
            out.extend(page);
            if out.len() > MAX_SYMBOLS {
                return Err(self.scope().bound(
                    request.describe(),
                    format!("more than {MAX_SYMBOLS} symbols"),
                ));
            }
            if answer.status.is_ok() {
                return Ok(Listing::Symbols(out));
            }
            match last.and_then(|l| l.checked_add(1)) {
                Some(next) => start = next,
                None => {
                    return Err(self.malformed(
                        &request.describe(),
                        "partial transfer without any symbol: the listing does not advance",
                    ));
                }
            }
        }
        Err(self.scope().bound(
            "Get Instance Attribute List (0x55)",
            format!("still incomplete after {MAX_PAGES} pages"),
        ))
    }

    /// Lists the controller, its programs and the templates their tags use.
    async fn browse(&mut self) -> Result<Browse, CollectError> {
        let mut browse = Browse::default();
        let mut listed = self.list_symbols(None).await?;
        if let Listing::Closed(e) = &listed {
            // The connection broke on the tag list: ask once more on a fresh session, so a
            // glitch is not taken for a capability.
            tracing::debug!(error = %e, "connection lost on the tag list, asking again");
            self.session = None;
            listed = self.list_symbols(None).await?;
        }
        let controller = match listed {
            Listing::Symbols(symbols) => symbols,
            Listing::Unsupported(reason) => {
                browse.unavailable = Some(reason);
                return Ok(browse);
            }
            Listing::Closed(_) => {
                // Reachable, yet closes the session on this service every time: a stable
                // capability. Go on with a fresh session; failing to reconnect is an outage.
                self.session = None;
                self.open().await?;
                browse.unavailable = Some(
                    "the controller closes the session when asked for its tag list (Get Instance Attribute List 0x55)"
                        .to_owned(),
                );
                return Ok(browse);
            }
        };
        for symbol in controller {
            let name = symbol.name.clone();
            if let Some(program) = strip_prefix_ci(&name, "Program:") {
                browse
                    .programs
                    .insert(program.to_owned(), ProgramInfo::default());
            } else if let Some(task) = strip_prefix_ci(&name, "Task:") {
                browse.tasks.push(task.to_owned());
            } else if is_user_tag(&symbol) {
                browse.controller.push(symbol);
            }
        }
        let programs: Vec<String> = browse.programs.keys().cloned().collect();
        for program in programs {
            let symbols = match self.list_symbols(Some(&program)).await? {
                Listing::Symbols(symbols) => symbols,
                // Only the controller scope's first page is a capability (see list_symbols).
                Listing::Unsupported(reason) => return Err(self.scope().internal(reason)),
                Listing::Closed(e) => return Err(e),
            };
            let info = browse.programs.entry(program).or_default();
            for symbol in symbols {
                if let Some(routine) = strip_prefix_ci(&symbol.name, "Routine:") {
                    info.routines.push(routine.to_owned());
                } else if is_user_tag(&symbol) {
                    info.tags.push(symbol);
                }
            }
            info.routines.sort();
        }
        browse.tasks.sort();
        // Templates used by any tag, then by their members, until closed.
        let mut wanted: BTreeSet<u16> = browse
            .controller
            .iter()
            .chain(browse.programs.values().flat_map(|p| p.tags.iter()))
            .filter_map(|s| s.kind.template())
            .collect();
        // A template is only ever asked for because a listed tag or member has its type, so
        // refusing it contradicts the controller's own listing: the capture fails.
        while !wanted.is_empty() {
            if browse.templates.len() + wanted.len() > MAX_TEMPLATES {
                return Err(self.scope().bound(
                    "Template (class 0x6C)",
                    format!("more than {MAX_TEMPLATES} templates"),
                ));
            }
            let instances: Vec<u16> = std::mem::take(&mut wanted).into_iter().collect();
            let requests = instances
                .iter()
                .map(|&instance| (Request::TemplateAttributes { instance }, 32))
                .collect();
            let answers = self.batch(requests).await?;
            for (instance, answer) in instances.into_iter().zip(answers) {
                let describe = Request::TemplateAttributes { instance }.describe();
                if !answer.status.is_ok() {
                    return Err(self.refusal(
                        &describe,
                        "the tag list uses this structure type, but the controller refuses its template",
                        &answer.status,
                    ));
                }
                let info = types::parse_template_info(&answer.data)
                    .map_err(|e| self.malformed(&describe, e))?;
                let template = self.read_template(instance, info).await?;
                for member in &template.members {
                    if let ElementType::Struct(t) = member.element
                        && t != instance
                        && !browse.templates.contains_key(&t)
                    {
                        wanted.insert(t);
                    }
                }
                browse.templates.insert(instance, template);
            }
            wanted.retain(|t| !browse.templates.contains_key(t));
        }
        if let Some(name) = template_cycle(&browse.templates) {
            // A structure cannot contain itself, directly or through its members: the type
            // table contradicts itself.
            return Err(self.malformed(
                "Read Template (0x4C)",
                format!("structure {name} contains itself through its members"),
            ));
        }
        Ok(browse)
    }

    /// Reads one template's definition, following partial transfers.
    async fn read_template(
        &mut self,
        instance: u16,
        info: types::TemplateInfo,
    ) -> Result<Template, CollectError> {
        // The definition is (words * 4 - 21) bytes (1756-PM020; pycomm3 reads it so).
        let total = usize::try_from(info.definition_words)
            .unwrap_or(usize::MAX)
            .saturating_mul(4)
            .saturating_sub(21);
        if total > MAX_TEMPLATE_BYTES {
            return Err(self.scope().bound(
                format!("Template (class 0x6C) instance 0x{instance:03x}"),
                format!("definition of {total} bytes exceeds {MAX_TEMPLATE_BYTES}"),
            ));
        }
        let mut data: Vec<u8> = Vec::with_capacity(total);
        loop {
            let offset = data.len();
            let remaining = total.saturating_sub(offset);
            let request = Request::ReadTemplate {
                instance,
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                bytes: u16::try_from(remaining).unwrap_or(u16::MAX),
            };
            let answer = self.call(&request).await?;
            if !answer.status.is_ok() && !answer.status.is_partial() {
                return Err(self.refusal(
                    &request.describe(),
                    "the controller answered this template's attributes, but refuses its definition",
                    &answer.status,
                ));
            }
            if answer.data.len() > remaining.saturating_add(4) {
                return Err(self.malformed(
                    &request.describe(),
                    format!("{} bytes answered, {remaining} asked", answer.data.len()),
                ));
            }
            data.extend_from_slice(&answer.data);
            if answer.status.is_ok() {
                break;
            }
            if answer.data.is_empty() || data.len() >= total.saturating_add(4) {
                return Err(self.malformed(
                    &request.describe(),
                    "partial transfer that does not advance",
                ));
            }
        }
        types::parse_template(instance, info, &data).map_err(|e| {
            self.malformed(
                &format!("Read Template (0x4C) instance 0x{instance:03x}"),
                e,
            )
        })
    }

    /// Finds a configured tag in the tag list and works out what to read.
    fn resolve(&self, browse: &Browse, text: &str) -> Result<Resolved, Unresolved> {
        let parse = |t: &str| {
            TagAddress::parse(t).map_err(|e| Unresolved::Config(format!("tag path rejected: {e}")))
        };
        if browse.unavailable.is_some() {
            // No tag list: read one element and decode it by the reply's type code.
            return Ok(Resolved {
                address: parse(text)?,
                element: None,
                count: 1,
                bools: None,
                reply_bytes: UNKNOWN_REPLY,
            });
        }
        let absent = Unresolved::NotAvailable;
        let parts = split_tag(text).map_err(Unresolved::Config)?;
        let mut parts = parts.into_iter();
        let first = parts
            .next()
            .ok_or_else(|| Unresolved::Config("empty tag".to_owned()))?;
        let (symbols, base) = match strip_prefix_ci(&first.name, "Program:") {
            Some(program) => {
                if !first.indices.is_empty() {
                    return Err(Unresolved::Config("a program has no elements".to_owned()));
                }
                let info = browse
                    .programs
                    .iter()
                    .find(|(p, _)| p.eq_ignore_ascii_case(program))
                    .map(|(_, info)| info)
                    .ok_or_else(|| absent(format!("the controller has no program {program}")))?;
                let base = parts
                    .next()
                    .ok_or_else(|| Unresolved::Config("no tag after the program".to_owned()))?;
                (&info.tags, base)
            }
            None => (&browse.controller, first),
        };
        let symbol = symbols
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&base.name))
            .ok_or_else(|| absent(format!("{} is not in the controller's tag list", base.name)))?;
        let mut element = symbol.kind.element();
        let mut dims: Vec<u32> = symbol.dims.clone();
        let mut tag_level_bool_array =
            element == ElementType::Atomic(types::BOOL) && !dims.is_empty();
        apply_indices(&mut dims, &base.indices, &base.name).map_err(absent)?;
        if !base.indices.is_empty() {
            tag_level_bool_array = false;
        }
        for part in parts {
            if !dims.is_empty() {
                return Err(absent(format!(
                    "{} is an array: index it before a member",
                    part.name
                )));
            }
            let ElementType::Struct(t) = element else {
                return Err(absent(format!(
                    "{} is not a member of an atomic value",
                    part.name
                )));
            };
            // Every template a listed tag uses was read by the browse, or it failed.
            let template = browse.templates.get(&t).ok_or_else(|| {
                Unresolved::Internal(format!("template 0x{t:03x} missing after the browse"))
            })?;
            let member = template
                .members
                .iter()
                .find(|m| !m.is_hidden() && m.name.eq_ignore_ascii_case(&part.name))
                .ok_or_else(|| absent(format!("{} has no member {}", template.name, part.name)))?;
            element = member.element;
            dims = if member.array > 0 {
                vec![u32::from(member.array)]
            } else {
                vec![]
            };
            apply_indices(&mut dims, &part.indices, &part.name).map_err(absent)?;
        }
        let count: usize = dims
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(*d).ok()?))
            .ok_or_else(|| Unresolved::Bound("the array's size overflows".to_owned()))?;
        // A whole array is read from its first element.
        let read_text = if dims.is_empty() {
            text.to_owned()
        } else {
            format!("{text}[{}]", vec!["0"; dims.len()].join(","))
        };
        let address = parse(&read_text)?;
        let (bools, wire_count, data_bytes) = if tag_level_bool_array {
            let words = count.div_ceil(32);
            (Some(count), words, words.saturating_mul(4))
        } else {
            let size = types::element_size(element, &browse.templates).ok_or_else(|| {
                absent(format!(
                    "its type ({}) is not one otdrift can decode",
                    types::type_name(element, &browse.templates)
                ))
            })?;
            (None, count, count.saturating_mul(size))
        };
        if data_bytes > MAX_VALUE_BYTES || wire_count > usize::from(u16::MAX) {
            return Err(Unresolved::Bound(format!(
                "{data_bytes} bytes is larger than the {MAX_VALUE_BYTES} bytes otdrift reads for one setpoint"
            )));
        }
        let header = if matches!(element, ElementType::Struct(_)) {
            4
        } else {
            2
        };
        Ok(Resolved {
            address,
            element: Some(element),
            count: wire_count,
            bools,
            reply_bytes: 4 + header + data_bytes,
        })
    }

    /// Reads the setpoints: resolved tags packed into Multiple Service Packets, large ones
    /// by Read Tag Fragmented.
    async fn read_setpoints(
        &mut self,
        browse: &Browse,
    ) -> Result<Vec<(String, Value)>, CollectError> {
        let mut out = Vec::with_capacity(self.setpoints.len());
        let mut small: Vec<(usize, Resolved)> = Vec::new();
        let mut large: Vec<(usize, Resolved)> = Vec::new();
        let setpoints = self.setpoints.clone();
        let single_limit = self.capacity().saturating_sub(12);
        for (i, setpoint) in setpoints.iter().enumerate() {
            let tag = &setpoint.tag;
            match self.resolve(browse, tag) {
                Ok(r) if r.reply_bytes > single_limit => large.push((i, r)),
                Ok(r) => small.push((i, r)),
                Err(Unresolved::NotAvailable(reason)) => out.push((i, Value::unavailable(reason))),
                Err(Unresolved::Config(reason)) => {
                    return Err(self
                        .scope()
                        .config(format!("setpoint tag {tag} cannot be read: {reason}")));
                }
                Err(Unresolved::Bound(limit)) => {
                    return Err(self.scope().bound(format!("Read Tag (0x4C) {tag}"), limit));
                }
                Err(Unresolved::Internal(detail)) => {
                    return Err(self
                        .scope()
                        .internal(format!("setpoint tag {tag}: {detail}")));
                }
            }
        }
        let requests = small
            .iter()
            .map(|(_, r)| {
                (
                    Request::ReadTag {
                        tag: r.address.clone(),
                        count: u16::try_from(r.count).unwrap_or(u16::MAX),
                    },
                    r.reply_bytes,
                )
            })
            .collect();
        let answers = self.batch(requests).await?;
        for ((i, resolved), answer) in small.into_iter().zip(answers) {
            let value = if answer.status.is_partial() || answer.status.general == 0x11 {
                // Did not fit after all: fragmented.
                self.read_fragmented(browse, &resolved).await?
            } else {
                self.decode_answer(browse, &resolved, &answer)?
            };
            out.push((i, value));
        }
        for (i, resolved) in large {
            let value = self.read_fragmented(browse, &resolved).await?;
            out.push((i, value));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out
            .into_iter()
            .filter_map(|(i, v)| setpoints.get(i).map(|s| (s.tag.clone(), v)))
            .collect())
    }

    fn decode_answer(
        &self,
        browse: &Browse,
        resolved: &Resolved,
        answer: &Answer,
    ) -> Result<Value, CollectError> {
        let describe = format!("Read Tag (0x4C) {}", resolved.address.text);
        if !answer.status.is_ok() {
            return self.read_refused(browse, &describe, &answer.status);
        }
        let (type_word, handle, data) =
            split_typed(&answer.data).map_err(|e| self.malformed(&describe, e))?;
        self.decode_typed(browse, resolved, type_word, handle, data)
            .map_err(|e| self.malformed(&describe, e))
    }

    /// A configured setpoint's read refused with `status`. With a tag list, the controller
    /// listed the tag (else it was not read): a refusal contradicts its own list. Without
    /// one, "path unknown" (0x04, 0x05) is the controller's own directory saying the tag
    /// does not exist, which is state; any other refusal (0x08, a range error...) fails.
    fn read_refused(
        &self,
        browse: &Browse,
        request: &str,
        status: &Status,
    ) -> Result<Value, CollectError> {
        match &browse.unavailable {
            Some(_) if matches!(status.general, 0x04 | 0x05) => Ok(Value::unavailable(NO_SUCH_TAG)),
            Some(_) => Err(self.refusal(
                request,
                "the controller refused to read a configured tag",
                status,
            )),
            None => Err(self.refusal(
                request,
                "the controller lists this tag in its tag list, but refuses to read it",
                status,
            )),
        }
    }

    fn decode_typed(
        &self,
        browse: &Browse,
        resolved: &Resolved,
        type_word: u16,
        handle: Option<u16>,
        data: &[u8],
    ) -> Result<Value, wire::WireError> {
        if let Some(n) = resolved.bools {
            if type_word != u16::from(types::DWORD) {
                return Err(wire::bad(format!(
                    "BOOL array answered as type 0x{type_word:04x}, expected DWORD"
                )));
            }
            return types::unpack_bools(data, n);
        }
        match resolved.element {
            Some(ElementType::Atomic(code)) => {
                if type_word != u16::from(code) {
                    return Err(wire::bad(format!(
                        "answered type 0x{type_word:04x}, the tag list says 0x{code:02x}"
                    )));
                }
                types::decode(
                    ElementType::Atomic(code),
                    resolved.count,
                    data,
                    &browse.templates,
                )
            }
            Some(ElementType::Struct(t)) => {
                let template = browse
                    .templates
                    .get(&t)
                    .ok_or_else(|| wire::bad("template unknown"))?;
                if handle != Some(template.info.handle) {
                    return Err(wire::bad(format!(
                        "answered structure handle {handle:?}, template {} has 0x{:04x}",
                        template.name, template.info.handle
                    )));
                }
                types::decode(
                    ElementType::Struct(t),
                    resolved.count,
                    data,
                    &browse.templates,
                )
            }
            None => match handle {
                // Without a tag list, a structure's bytes are captured as they are.
                Some(_) => Ok(Value::Bytes(data.to_vec())),
                None => {
                    let code = u8::try_from(type_word)
                        .map_err(|_| wire::bad(format!("unknown type 0x{type_word:04x}")))?;
                    let size = types::atomic_size(code)
                        .ok_or_else(|| wire::bad(format!("unknown type 0x{type_word:04x}")))?;
                    let count = data.len() / size.max(1);
                    types::decode(
                        ElementType::Atomic(code),
                        count.max(1),
                        data,
                        &browse.templates,
                    )
                }
            },
        }
    }

    async fn read_fragmented(
        &mut self,
        browse: &Browse,
        resolved: &Resolved,
    ) -> Result<Value, CollectError> {
        let mut data: Vec<u8> = Vec::new();
        let mut first_type: Option<(u16, Option<u16>)> = None;
        let expected = resolved.reply_bytes.saturating_sub(4);
        loop {
            let request = Request::ReadTagFragmented {
                tag: resolved.address.clone(),
                count: u16::try_from(resolved.count).unwrap_or(u16::MAX),
                offset: u32::try_from(data.len()).unwrap_or(u32::MAX),
            };
            let answer = self.call(&request).await?;
            if !answer.status.is_ok() && !answer.status.is_partial() {
                return self.read_refused(browse, &request.describe(), &answer.status);
            }
            let (type_word, handle, chunk) =
                split_typed(&answer.data).map_err(|e| self.malformed(&request.describe(), e))?;
            match first_type {
                None => first_type = Some((type_word, handle)),
                Some(t) if t != (type_word, handle) => {
                    return Err(self.malformed(&request.describe(), "fragments change type"));
                }
                Some(_) => {}
            }
            data.extend_from_slice(chunk);
            if resolved.element.is_some() && data.len() > expected {
                return Err(self.malformed(
                    &request.describe(),
                    format!("fragments add up to {} bytes, more than asked", data.len()),
                ));
            }
            if data.len() > MAX_VALUE_BYTES {
                return Err(self.scope().bound(
                    request.describe(),
                    format!("fragments add up to more than the {MAX_VALUE_BYTES} bytes otdrift reads for one setpoint"),
                ));
            }
            if answer.status.is_ok() {
                break;
            }
            if chunk.is_empty() {
                return Err(self.malformed(
                    &request.describe(),
                    "partial transfer that does not advance",
                ));
            }
        }
        let (type_word, handle) = first_type.unwrap_or((0, None));
        self.decode_typed(browse, resolved, type_word, handle, &data)
            .map_err(|e| {
                self.malformed(
                    &format!("Read Tag Fragmented (0x52) {}", resolved.address.text),
                    e,
                )
            })
    }

    /// Where the controller keeps its audit value and change mask, from the tag list.
    fn audit_sources(&self, browse: &Browse) -> (AuditSource, AuditSource) {
        let find = |name: &str| -> AuditSource {
            if browse.unavailable.is_some() {
                return AuditSource::Missing(
                    "not available: the tag list is not readable, so the change-detection tags cannot be found".to_owned(),
                );
            }
            let Some(symbol) = browse
                .controller
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(name))
            else {
                return AuditSource::Missing(format!(
                    "not available: no controller-scoped tag {name} (change detection needs firmware v20+ and a GSV rung copying CONTROLLER.{name} into it)"
                ));
            };
            let lint = symbol.kind.atomic() == Some(0xC5) && symbol.dims.is_empty();
            let pair = symbol.kind.atomic() == Some(0xC4) && symbol.dims == [2];
            match TagAddress::parse(&if pair {
                format!("{name}[0]")
            } else {
                name.to_owned()
            }) {
                Ok(address) if lint || pair => AuditSource::Tag {
                    address,
                    dint_pair: pair,
                },
                _ => AuditSource::Missing(format!(
                    "not available: tag {name} is not a LINT or DINT[2]"
                )),
            }
        };
        (find(&self.audit_tag), find(&self.changes_tag))
    }

    async fn read_audit(&mut self, source: &AuditSource) -> Result<Value, CollectError> {
        match source {
            AuditSource::Missing(reason) => Ok(Value::unavailable(reason.clone())),
            AuditSource::Tag { address, dint_pair } => {
                let request = Request::ReadTag {
                    tag: address.clone(),
                    count: if *dint_pair { 2 } else { 1 },
                };
                let answer = self.call(&request).await?;
                if !answer.status.is_ok() {
                    // Found in the tag list moments ago: a refusal contradicts it.
                    return Err(self.refusal(
                        &request.describe(),
                        "the controller lists its change-detection tag, but refuses to read it",
                        &answer.status,
                    ));
                }
                audit_from_reply(&answer.data, *dint_pair)
                    .map_err(|e| self.malformed(&request.describe(), e))
            }
        }
    }

    fn item(&self, path: String, class: Class, value: Value) -> Result<Item, CollectError> {
        Item::new(path, class, value).map_err(|e| self.scope().item(e))
    }

    fn insert(
        &self,
        snapshot: &mut Snapshot,
        path: String,
        class: Class,
        value: Value,
    ) -> Result<(), CollectError> {
        let item = self.item(path, class, value)?;
        snapshot.insert(item).map_err(|e| self.scope().item(e))
    }

    async fn capture_inner(&mut self) -> Result<Snapshot, CollectError> {
        let with_audit = self.cache.is_some();
        let probe = self.probe(with_audit).await?;
        let reason = match &self.cache {
            None => Some("first capture"),
            Some(cache) if cache.fingerprint != probe.fingerprint => Some("identity changed"),
            Some(_) if probe.audit_failed => Some("audit value not readable"),
            Some(cache) => match (&cache.audit, &probe.audit_value) {
                (AuditSource::Tag { .. }, Some(now)) if *now != cache.audit_value => {
                    Some("audit value changed")
                }
                (AuditSource::Tag { .. }, _) => None,
                (AuditSource::Missing(_), _)
                    if cache.polls_since_browse + 1 >= self.rebrowse_every =>
                {
                    Some("periodic re-browse (no audit value)")
                }
                (AuditSource::Missing(_), _) => None,
            },
        };
        let cache = match (reason, self.cache.take()) {
            (None, Some(mut cache)) => {
                cache.polls_since_browse += 1;
                if let Some(v) = probe.audit_value.clone() {
                    cache.audit_value = v;
                }
                if let Some(v) = probe.changes_value.clone() {
                    cache.changes_value = v;
                }
                let how = match &cache.audit {
                    AuditSource::Tag { .. } => "reused: audit value unchanged".to_owned(),
                    AuditSource::Missing(_) => format!(
                        "reused: poll {} of {} without an audit value",
                        cache.polls_since_browse, self.rebrowse_every
                    ),
                };
                self.runtime
                    .insert("cip/tag_list".to_owned(), Value::Text(how));
                cache
            }
            (reason, _) => {
                let browse = self.browse().await?;
                let (audit, changes) = self.audit_sources(&browse);
                let audit_value = self.read_audit(&audit).await?;
                let changes_value = self.read_audit(&changes).await?;
                self.runtime.insert(
                    "cip/tag_list".to_owned(),
                    Value::Text(format!("browsed: {}", reason.unwrap_or("requested"))),
                );
                Cache {
                    browse,
                    audit,
                    changes,
                    audit_value,
                    changes_value,
                    fingerprint: probe.fingerprint.clone(),
                    polls_since_browse: 0,
                }
            }
        };
        let values = self.read_setpoints(&cache.browse).await;
        let values = match values {
            Ok(v) => v,
            Err(e) => {
                self.cache = Some(cache);
                return Err(e);
            }
        };
        let snapshot = self.assemble(&probe, &cache, values);
        self.cache = Some(cache);
        snapshot
    }

    fn assemble(
        &self,
        probe: &Probe,
        cache: &Cache,
        values: Vec<(String, Value)>,
    ) -> Result<Snapshot, CollectError> {
        let mut s = Snapshot::new();
        for (path, value) in &probe.identity {
            self.insert(&mut s, path.clone(), Class::Identity, value.clone())?;
        }
        self.insert(
            &mut s,
            "cip/controller/name".into(),
            Class::Program,
            probe.name.clone(),
        )?;
        // The controller's change-detection values are its own history (two controllers
        // running the same project never share them), not content a change delivers.
        self.insert(
            &mut s,
            "cip/controller/audit_value".into(),
            Class::History,
            cache.audit_value.clone(),
        )?;
        self.insert(
            &mut s,
            "cip/controller/changes_to_detect".into(),
            Class::History,
            cache.changes_value.clone(),
        )?;
        let browse = &cache.browse;
        if let Some(reason) = &browse.unavailable {
            self.insert(
                &mut s,
                "cip/tags".into(),
                Class::Program,
                Value::unavailable(reason.clone()),
            )?;
        }
        for task in &browse.tasks {
            self.insert(
                &mut s,
                format!("cip/task/{task}"),
                Class::Program,
                Value::Null,
            )?;
        }
        let tag_value = |symbol: &Symbol| -> Value {
            let mut map = BTreeMap::new();
            map.insert(
                "type".to_owned(),
                Value::Text(types::type_name(symbol.kind.element(), &browse.templates)),
            );
            if !symbol.dims.is_empty() {
                map.insert(
                    "dims".to_owned(),
                    Value::List(symbol.dims.iter().map(|d| Value::from(*d)).collect()),
                );
            }
            Value::Map(map)
        };
        for symbol in &browse.controller {
            self.insert(
                &mut s,
                format!("cip/tag/{}", symbol.name),
                Class::Program,
                tag_value(symbol),
            )?;
        }
        for (program, info) in &browse.programs {
            let mut map = BTreeMap::new();
            map.insert(
                "routines".to_owned(),
                Value::List(
                    info.routines
                        .iter()
                        .map(|r| Value::Text(r.clone()))
                        .collect(),
                ),
            );
            self.insert(
                &mut s,
                format!("cip/program/{program}"),
                Class::Program,
                Value::Map(map),
            )?;
            for symbol in &info.tags {
                self.insert(
                    &mut s,
                    format!("cip/tag/Program:{program}.{}", symbol.name),
                    Class::Program,
                    tag_value(symbol),
                )?;
            }
        }
        for template in browse.templates.values() {
            let mut map = BTreeMap::new();
            map.insert("size".to_owned(), Value::from(template.info.structure_size));
            map.insert("handle".to_owned(), Value::from(template.info.handle));
            // Two templates with one name (a predefined and a user type) stay apart.
            let base = if s.get(&format!("cip/template/{}", template.name)).is_some() {
                format!("cip/template/{}#{:03x}", template.name, template.instance)
            } else {
                format!("cip/template/{}", template.name)
            };
            self.insert(&mut s, base.clone(), Class::Program, Value::Map(map))?;
            for member in template.members.iter().filter(|m| !m.is_hidden()) {
                let mut map = BTreeMap::new();
                map.insert(
                    "type".to_owned(),
                    Value::Text(types::type_name(member.element, &browse.templates)),
                );
                map.insert("offset".to_owned(), Value::from(member.offset));
                if member.array > 0 {
                    map.insert(
                        "dims".to_owned(),
                        Value::List(vec![Value::from(u32::from(member.array))]),
                    );
                }
                if let Some(bit) = member.bit {
                    map.insert("bit".to_owned(), Value::from(u32::from(bit)));
                }
                let path = format!("{base}/{}", member.name);
                if s.get(&path).is_none() {
                    self.insert(&mut s, path, Class::Program, Value::Map(map))?;
                }
            }
        }
        for (tag, value) in values {
            self.insert(&mut s, format!("cip/value/{tag}"), Class::Setpoint, value)?;
        }
        Ok(s)
    }
}

#[async_trait]
impl Collector for CipCollector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::Cip
    }

    async fn identify(&mut self) -> Result<Vec<Item>, CollectError> {
        let span = tracing::info_span!("identify", asset = %self.asset, protocol = "cip");
        async {
            let answer = self.call(&Request::Identity).await?;
            if !answer.status.is_ok() {
                return Err(self.refusal(
                    &Request::Identity.describe(),
                    "the controller refused its identity",
                    &answer.status,
                ));
            }
            let pairs = self.parse_identity(&answer.data)?.0;
            pairs
                .into_iter()
                .map(|(path, value)| self.item(path, Class::Identity, value))
                .collect()
        }
        .instrument(span)
        .await
    }

    async fn capture(&mut self) -> Result<Capture, CollectError> {
        let span = tracing::info_span!("capture", asset = %self.asset, protocol = "cip");
        crate::timed_capture(span, async {
            self.stats = CaptureStats::default();
            self.runtime
                .retain(|k, _| k == "cip/connection" || k == "cip/multiple_service_packet");
            let snapshot = self.capture_inner().await?;
            self.runtime.insert(
                "cip/multiple_service_packet".to_owned(),
                self.runtime
                    .get("cip/multiple_service_packet")
                    .cloned()
                    .filter(|_| !self.multi_service)
                    .unwrap_or(Value::Text("used".to_owned())),
            );
            let mut runtime = self.runtime.clone();
            let operating_state =
                crate::split_operating_state(&mut runtime, &["cip/identity_status"]);
            Ok(Capture {
                snapshot,
                runtime,
                operating_state,
                stats: self.stats,
            })
        })
        .await
    }

    async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = tokio::time::timeout(self.timeout, session.close()).await;
        }
    }
}

/// The setpoint entry covering `path` (`cip/value/<tag>`).
pub fn setpoint_label(cfg: &CipConfig, path: &str) -> Option<String> {
    let tag = path.strip_prefix("cip/value/")?;
    cfg.setpoints
        .iter()
        .find(|s| s.tag.eq_ignore_ascii_case(tag))
        .map(|s| s.name.clone())
}

/// The service code a request's reply answers.
fn request_service(request: &Request) -> u8 {
    match request {
        Request::Identity | Request::ControllerName => request::GET_ATTRIBUTES_ALL,
        Request::WallClock | Request::TemplateAttributes { .. } => request::GET_ATTRIBUTE_LIST,
        Request::ListSymbols { .. } => request::GET_INSTANCE_ATTRIBUTE_LIST,
        Request::ReadTemplate { .. } | Request::ReadTag { .. } => request::READ_TAG,
        Request::ReadTagFragmented { .. } => request::READ_TAG_FRAGMENTED,
        Request::Multiple(_) => request::MULTIPLE_SERVICE_PACKET,
        Request::ForwardOpen(p) if p.large => request::LARGE_FORWARD_OPEN,
        Request::ForwardOpen(_) => request::FORWARD_OPEN,
        Request::ForwardClose(_) => request::FORWARD_CLOSE,
    }
}

/// Splits a Multiple Service Packet answer into one answer per request; `Err` when the
/// service is unusable on this controller (refused, or answered without its standard
/// count and offsets).
fn split_multiple(answer: &Answer, group: &[Request]) -> Result<Vec<Answer>, String> {
    if !answer.status.is_ok() && answer.status.general != 0x1E {
        return Err(format!(
            "Multiple Service Packet refused ({})",
            answer.status
        ));
    }
    let parts = wire::multiple_service_replies(&answer.data, group.len()).map_err(|e| e.0)?;
    let mut out = Vec::with_capacity(parts.len());
    for (part, request) in parts.into_iter().zip(group) {
        let reply = wire::mr_reply(part).map_err(|e| e.0)?;
        let expected = request_service(request) | 0x80;
        if reply.service != expected {
            return Err(format!(
                "embedded reply service 0x{:02x}, expected 0x{expected:02x}",
                reply.service
            ));
        }
        out.push(Answer {
            service: reply.service,
            status: reply.status,
            data: reply.data.to_vec(),
        });
    }
    Ok(out)
}

/// A template that contains itself, directly or through its members' types, if any (by
/// removing, Kahn's way, every template no remaining template contains: what is left is on
/// a cycle).
fn template_cycle(templates: &Templates) -> Option<String> {
    let children = |t: &Template| -> Vec<u16> {
        t.members
            .iter()
            .filter_map(|m| match m.element {
                ElementType::Struct(c) if templates.contains_key(&c) => Some(c),
                _ => None,
            })
            .collect()
    };
    let mut contained_by: BTreeMap<u16, usize> = templates.keys().map(|k| (*k, 0)).collect();
    for template in templates.values() {
        for child in children(template) {
            if let Some(n) = contained_by.get_mut(&child) {
                *n += 1;
            }
        }
    }
    let mut free: Vec<u16> = contained_by
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    while let Some(k) = free.pop() {
        contained_by.remove(&k);
        let Some(template) = templates.get(&k) else {
            continue;
        };
        for child in children(template) {
            if let Some(n) = contained_by.get_mut(&child) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    free.push(child);
                }
            }
        }
    }
    contained_by
        .keys()
        .next()
        .and_then(|k| templates.get(k))
        .map(|t| t.name.clone())
}

/// A Read Tag reply's type word (and structure handle), then the value bytes.
fn split_typed(data: &[u8]) -> Result<(u16, Option<u16>, &[u8]), wire::WireError> {
    let mut c = wire::Cursor::new(data, "Read Tag reply");
    let type_word = c.u16()?;
    if type_word == types::STRUCT_REPLY {
        let handle = c.u16()?;
        Ok((type_word, Some(handle), c.rest()))
    } else {
        Ok((type_word, None, c.rest()))
    }
}

/// The audit value from a Read Tag reply, as Rockwell shows it: `16#xxxx_xxxx_xxxx_xxxx`.
fn audit_from_reply(data: &[u8], dint_pair: bool) -> Result<Value, wire::WireError> {
    let (type_word, _, bytes) = split_typed(data)?;
    let mut c = wire::Cursor::new(bytes, "audit value");
    let value = if dint_pair {
        if type_word != 0xC4 {
            return Err(wire::bad(format!(
                "answered type 0x{type_word:04x}, expected DINT"
            )));
        }
        let low = c.u32()?;
        let high = c.u32()?;
        (u64::from(high) << 32) | u64::from(low)
    } else {
        if type_word != 0xC5 {
            return Err(wire::bad(format!(
                "answered type 0x{type_word:04x}, expected LINT"
            )));
        }
        c.u64()?
    };
    if !c.is_empty() {
        return Err(wire::bad("audit value longer than asked"));
    }
    let hex = format!("{value:016x}");
    let groups: Vec<&str> = (0..4).filter_map(|i| hex.get(i * 4..i * 4 + 4)).collect();
    Ok(Value::Text(format!("16#{}", groups.join("_"))))
}

/// Why `cip/controller/name` is not available when the device refuses the program-name
/// object (0x04/0x05/0x08): the same text whatever the status, so it is stable.
const NO_PROJECT_NAME_OBJECT: &str = "the device has no Logix program-name object (class 0x64)";
/// Why `cip/controller/name` is not available when the object answers something that is no
/// project name (cpppo answers its own attributes for classes it does not have).
const NO_PROJECT_NAME_ANSWER: &str =
    "the device's answer for the program-name object (class 0x64) is not a Logix project name";

/// The longest Logix name (tags, programs, the controller's project).
const MAX_LOGIX_NAME: usize = 40;

/// The project name from a Get Attributes All reply on the program-name object: a STRING
/// (UINT length, characters) that must be a Logix name (1 to 40 letters, digits or `_`, not
/// starting with a digit), followed by bytes Logix does not document (ignored). `None` when
/// the reply is not that: too short for its length, empty, or not a name.
fn parse_project_name(data: &[u8]) -> Option<String> {
    let mut c = wire::Cursor::new(data, "STRING");
    let len = usize::from(c.u16().ok()?);
    if len == 0 || len > MAX_LOGIX_NAME {
        return None;
    }
    let bytes = c.take(len).ok()?;
    let name = std::str::from_utf8(bytes).ok()?;
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_');
    (first_ok && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')).then(|| name.to_owned())
}

/// The clock from a Get Attribute List reply on WallClockTime: exactly one attribute, 0x0B,
/// status 0, a ULINT of microseconds, nothing after it.
fn parse_wall_clock(data: &[u8]) -> Result<u64, wire::WireError> {
    let mut c = wire::Cursor::new(data, "wall clock");
    let count = c.u16()?;
    if count != 1 {
        return Err(wire::bad(format!("{count} attributes answered, 1 asked")));
    }
    let attribute = c.u16()?;
    if attribute != request::WALL_CLOCK_ATTRIBUTE {
        return Err(wire::bad(format!(
            "attribute {attribute} answered, {} asked",
            request::WALL_CLOCK_ATTRIBUTE
        )));
    }
    let status = c.u16()?;
    if status != 0 {
        return Err(wire::bad(format!("attribute status 0x{status:04x}")));
    }
    let us = c.u64()?;
    if !c.is_empty() {
        return Err(wire::bad(format!(
            "{} bytes after the clock",
            c.remaining()
        )));
    }
    Ok(us)
}

/// A status for a not-available reason: general status only, so the reason (and the
/// digest) stays stable whatever extended words a firmware adds.
fn stable_status(status: &Status) -> String {
    format!(
        "CIP status 0x{:02x}, {}",
        status.general,
        wire::status_text(status.general)
    )
}

fn encap_status(status: u32) -> &'static str {
    match status {
        0x0001 => "invalid or unsupported command",
        0x0002 => "no resources",
        0x0003 => "incorrect data",
        ENCAP_UNSUPPORTED => {
            "not an EtherNet/IP status: the CIP \"service not supported\" in the encapsulation header"
        }
        0x0064 => "invalid session handle",
        0x0065 => "invalid length",
        0x0069 => "unsupported protocol version",
        _ => "unknown",
    }
}

fn strip_prefix_ci<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| name.get(prefix.len()..))
        .flatten()
}

/// User tags: not system symbols, not internal (`__`), not module mapping or connection
/// objects. I/O module tags (`Local:1:I`) are kept: they describe the hardware setup.
fn is_user_tag(symbol: &Symbol) -> bool {
    let name = &symbol.name;
    !(name.starts_with("__")
        || name.contains("Map:")
        || name.contains("Cxn:")
        || symbol.kind.is_system())
}

/// One dot-separated part of a tag path: a name and optional indices.
struct PathPart {
    name: String,
    indices: Vec<u32>,
}

/// Splits `Program:Main.Recipe[1,2].Temp` into parts (the syntax rseip's parser accepts).
fn split_tag(text: &str) -> Result<Vec<PathPart>, String> {
    let mut parts = Vec::new();
    let (scope, rest) = match strip_prefix_ci(text, "Program:") {
        Some(rest) => {
            let (program, rest) = rest
                .split_once('.')
                .ok_or("a program-scoped tag is Program:<program>.<tag>")?;
            parts.push(PathPart {
                name: format!("Program:{program}"),
                indices: vec![],
            });
            (true, rest)
        }
        None => (false, text),
    };
    let _ = scope;
    for piece in rest.split('.') {
        if piece.is_empty() {
            return Err(format!("{text}: empty member name"));
        }
        if piece.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{text}: bit access (.{piece}) is not supported for setpoints"
            ));
        }
        let (name, indices) = match piece.split_once('[') {
            Some((name, idx)) => {
                let idx = idx
                    .strip_suffix(']')
                    .ok_or_else(|| format!("{text}: unclosed index"))?;
                let indices = idx
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse::<u32>()
                            .map_err(|_| format!("{text}: bad index {n:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (name, indices)
            }
            None => (piece, vec![]),
        };
        parts.push(PathPart {
            name: name.to_owned(),
            indices,
        });
    }
    Ok(parts)
}

fn apply_indices(dims: &mut Vec<u32>, indices: &[u32], name: &str) -> Result<(), String> {
    if indices.is_empty() {
        return Ok(());
    }
    if indices.len() != dims.len() {
        return Err(format!(
            "{name} has {} dimensions, {} indices given",
            dims.len(),
            indices.len()
        ));
    }
    for (i, (index, dim)) in indices.iter().zip(dims.iter()).enumerate() {
        if index >= dim {
            return Err(format!(
                "{name}: index {index} of dimension {i} is beyond {dim}"
            ));
        }
    }
    dims.clear();
    Ok(())
}

#[cfg(test)]
mod tests;
