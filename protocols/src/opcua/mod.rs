//! OPC UA (opc.tcp), on async-opcua's client.
//!
//! Many S7-1500, TwinCAT and Logix-era gateways expose their configuration through OPC UA
//! when the native protocol is locked down; this collector is also the fallback path for
//! them. It only ever sends GetEndpoints, CreateSession/ActivateSession/CloseSession, Read,
//! Browse and BrowseNext (see `Request`, the one place requests are built); Write, Call,
//! node management and history updates are unreachable.
//!
//! # What is captured
//!
//! - **identity** (class identity):
//!   - `opcua/server/application_uri`: the server's application URI (from its endpoint);
//!   - `opcua/server/certificate_thumbprint`: SHA-1 of its application certificate, as
//!     UaExpert and the servers' web pages show it (a swapped certificate is identity drift);
//!   - `opcua/server/build_info/<field>` for `product_uri`, `manufacturer_name`,
//!     `product_name`, `software_version`, `build_number`, `build_date` (RFC 3339): the
//!     Server object's BuildInfo, read field by field;
//!   - `opcua/namespace/<index>`: the NamespaceArray (an index that moves is identity drift;
//!     the items below name namespaces by URI so they do not move with it).
//! - **program** (class program): the structure below every configured setpoint node, walked
//!   with Browse/BrowseNext over hierarchical references: for every node
//!   `opcua/node/<node>/node_class`, `.../browse_name`, `.../type_definition`, `.../parents`
//!   (the nodes that reference it, sorted), and for variables `.../data_type`,
//!   `.../value_rank`, `.../array_dimensions`. A node added, removed, renamed, retyped or
//!   moved is program drift. Items depend on the set of nodes, never on the order the server
//!   lists them in.
//! - **setpoints** (class setpoint): `opcua/value/<node>` for every variable below (or at) a
//!   configured `node`, typed: Boolean, integers, Float/Double keep their type (a diff shows
//!   `72.5 -> 75.0`), String and LocalizedText are text, ByteString bytes, DateTime RFC 3339
//!   text, arrays lists, other types their string form.
//!
//! `<node>` is the NodeId with its namespace as a URI, e.g.
//! `nsu=urn:plc:mixer;s=Mixer.Setpoints.MixSpeed` (`i=2253` for namespace 0): namespace
//! indexes may change when a server restarts or a namespace is added, URIs do not. A setpoint
//! `node` may be written either way (`ns=3;s=...` or `nsu=<uri>;s=...`).
//!
//! **Not hashed** (kept in the capture's runtime record): ServerStatus (state, start and
//! current time), the operation limits used, the security mode and policy, and the state of
//! the certificate pin. Process values are never hashed unless a configured node contains
//! them: configure the folder holding the recipe, not the one holding measurements.
//!
//! # Field truth: what fails a capture
//!
//! Only what the server answered completely and consistently is recorded
//! (`docs/decisions/0004-field-truth.md`; the full list is in `docs/protocols/opcua.md`):
//!
//! - **state**: what the server answers as it answers it (an empty BuildInfo field is `""`);
//!   a configured node its address space does not have (a Browse of it answers
//!   BadNodeIdUnknown) or whose namespace its NamespaceArray lacks is
//!   `opcua/node/<node>/node_class` = `absent (...)`: deleting a configured folder is drift;
//! - **not available** (stable capability refusals, the same text every poll): a value below a
//!   configured node refused with BadNotReadable/BadUserAccessDenied whose UserAccessLevel
//!   agrees (no CurrentRead), and the thumbprint of a security-none server without a
//!   certificate;
//! - **refused**: any other Bad status, and every Uncertain one, on an attribute of a node the
//!   walk found or the config names; BuildInfo or NamespaceArray refused; BrowseNext refused;
//!   contradictions (a node its parent lists answering BadNodeIdUnknown; a refused value whose
//!   UserAccessLevel grants reading);
//! - **malformed**: BuildInfo or NamespaceArray missing or unreadable to anyone (mandatory in
//!   the Server object), wrong types, repeated references after a continuation point, counts
//!   that do not match;
//! - **busy**: [`busy_status`];
//! - **bound**: the constants below, and the whole capture's deadline.
//!
//! # Cost and bounds
//!
//! A capture sends one Read for identity, one Browse per tree level (plus BrowseNext for long
//! reference lists) and ⌈operations / MaxNodesPerRead⌉ Reads for attributes and values, where
//! a variable costs 4 operations (data type, value rank, array dimensions, value) and a
//! configured root 6; one more Read only when values were refused with an access status.
//! MaxNodesPerRead and MaxNodesPerBrowse come from the server's OperationLimits, read once per
//! session (0 = no limit → 10 000; not published → 100); a server that answers
//! BadTooManyOperations anyway gets half the batch size until it accepts, one that answers
//! BadResponseTooLarge gets smaller batches for that call, and nodes a Browse answered
//! BadNoContinuationPoints are browsed again once the batch's continuation points are done.
//! The session is kept between captures; a session the server dropped is replaced once,
//! transparently. Connecting costs GetEndpoints, CreateSession, ActivateSession, one
//! keep-alive Read by async-opcua and one Read of the limits. Every request runs under the
//! asset's `timeout_ms`.
//! The bounds are the constants [`MAX_DEPTH`], [`MAX_REFERENCES_PER_NODE`],
//! [`MAX_REFERENCES`], [`MAX_NODES`], [`MAX_BROWSE_NEXT_ROUNDS_PER_NODE`],
//! [`MAX_BROWSE_NEXT_ROUNDS`], [`MAX_MESSAGE_SIZE`], [`MAX_CHUNK_COUNT`], [`MAX_TEXT_VALUE`]
//! and [`MAX_BYTES_VALUE`]; each is a `bound` failure, never a partial capture.
//!
//! # Security
//!
//! `security = "none" | "sign" | "sign-and-encrypt"` picks the endpoint's message security
//! mode; `security_policy` (Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss) the
//! policy, by default the strongest the server offers. For `sign` and `sign-and-encrypt` the
//! agent uses its own application certificate, made on first use in the PKI folder
//! (`<pki>/own/cert.der`, key in `<pki>/private/`, mode 0600; application URI
//! `urn:otdrift:agent`). Most servers reject an unknown client certificate: trust that
//! certificate on the server (TIA Portal: OPC UA server → Security → trusted clients; TwinCAT:
//! the server's `PKI/trusted` folder; Kepware/UA servers: move it from `rejected` to
//! `trusted`), then capture again. `username` and `password_file` log in as that user
//! (create a user with read-only rights on the server); the password file must not be
//! readable by group or others. Without them the session is anonymous.
//!
//! # Certificate pinning
//!
//! The server's certificate is pinned on first use (`<pki>/pinned/<asset>.der`). A different
//! certificate later is reported, not silently trusted: a warning is logged on every capture,
//! the presented certificate is saved to `<pki>/rejected/<asset>-<thumbprint>.der`, the
//! thumbprint item changes (identity drift, high severity), and no password is ever sent to
//! it (an asset with a user name fails with a refusal naming both thumbprints). When the
//! change was intended (a new certificate was installed on the PLC), approve the drift and
//! delete the pin file; the next capture pins the new certificate.

mod connection;
mod convert;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::Duration,
};

use async_trait::async_trait;
use opcua::{
    client::{Client, Session},
    types::{
        AttributeId, BrowseDescription, BrowseDirection, BrowseResult, BrowseResultMask,
        ByteString, DataValue, ExpandedNodeId, NodeClass, NodeId, ReadValueId,
        ReferenceDescription, ReferenceTypeId, StatusCode, TimestampsToReturn, Variant,
    },
};
use otdrift_config::{AssetConfig, OpcuaConfig, Protocol};
use otdrift_core::{Class, Item, Snapshot, Value};
use tracing::Instrument;

use crate::{Capture, CaptureStats, CollectError, Collector};
use connection::{Link, Live, Pin};

/// Largest message accepted from a server (the MaxMessageSize of our Hello, and the largest
/// chunk the decoder takes). 2 MiB holds a Read of thousands of values or a Browse of a
/// thousand references per node many times over; an honest server answers a larger response
/// with BadResponseTooLarge, which the collector meets by asking for fewer operations at once
/// (the same objects, so the digest is unchanged), and a single value larger than this is a
/// bound. Kept small because async-opcua holds a whole chunk before checking it.
pub const MAX_MESSAGE_SIZE: usize = 2 * 1024 * 1024;
/// Most chunks in one message (the MaxChunkCount of our Hello): [`MAX_MESSAGE_SIZE`] at the
/// usual 64 KiB chunk size. A server that ignores it is cut off at the next chunk
/// (BadEncodingLimitsExceeded, a bound), so at most 32 chunks of an answer are ever held.
pub const MAX_CHUNK_COUNT: usize = 32;
/// Longest array the decoder accepts (reference lists, array values): 100 000 elements of a
/// few dozen bytes each stay far below the memory budget; longer arrays fail to decode
/// (malformed: a length that large cannot be told from a garbled one).
pub(crate) const MAX_ARRAY_LEN: usize = 100_000;
/// Longest text kept in one value (a setpoint string, a browse name, a BuildInfo field):
/// PLC strings are at most a few KiB (an S7 WString holds 16 382 characters); a longer one
/// stops the capture at a bound rather than being cut, which would hide a change in its tail.
pub const MAX_TEXT_VALUE: usize = 65_535;
/// Longest byte string kept in one value (a ByteString setpoint): 1 MiB, for the same reason.
pub const MAX_BYTES_VALUE: usize = 1024 * 1024;
/// Most nodes one capture walks: PLC configuration folders hold hundreds to a few thousand
/// nodes; more means a configured node is too wide (a whole server), and the snapshot and
/// its diff must stay small enough to read.
pub const MAX_NODES: usize = 50_000;
/// Deepest level walked below a configured node: PLC data (structures of structures, arrays
/// of UDTs) nests a dozen levels at most; deeper is a loop or a hostile server.
pub const MAX_DEPTH: usize = 64;
/// Most hierarchical references one node may have: a folder with more children than this is
/// not a configuration folder. Checked as each answer arrives, so a folder with a million
/// references costs a handful of requests, not a million references in memory.
pub const MAX_REFERENCES_PER_NODE: usize = 10_000;
/// Most references one capture takes in (every node has at least one): twice [`MAX_NODES`],
/// room for nodes organized from several parents.
pub const MAX_REFERENCES: usize = 2 * MAX_NODES;
/// Most BrowseNext rounds for one node: [`MAX_REFERENCES_PER_NODE`] at 100 references per
/// answer (servers answer up to [`REFERENCES_PER_NODE`]); a chain of continuation points
/// longer than this never ends.
pub const MAX_BROWSE_NEXT_ROUNDS_PER_NODE: usize = 100;
/// Most BrowseNext requests in one capture.
pub const MAX_BROWSE_NEXT_ROUNDS: usize = 1_000;
/// Operations per Read or nodes per Browse when the server does not publish a limit.
pub const DEFAULT_BATCH: usize = 100;
/// Operations per request when the server says "no limit" (or a larger one).
pub const MAX_BATCH: usize = 10_000;
/// References asked for per node in one Browse answer.
pub const REFERENCES_PER_NODE: u32 = 1_000;

// Namespace 0 nodes read for identity, status and limits.
const NAMESPACE_ARRAY: u32 = 2255;
const SERVER_STATE: u32 = 2259;
const START_TIME: u32 = 2257;
const CURRENT_TIME: u32 = 2258;
const BUILD_INFO_FIELDS: [(u32, &str); 6] = [
    (2262, "product_uri"),
    (2263, "manufacturer_name"),
    (2261, "product_name"),
    (2264, "software_version"),
    (2265, "build_number"),
    (2266, "build_date"),
];
const MAX_NODES_PER_READ: u32 = 11705;
const MAX_NODES_PER_BROWSE: u32 = 11710;

/// The value of `opcua/node/<node>/node_class` for a configured node the server does not
/// have: its address space (a Browse answering BadNodeIdUnknown) says so, which is state.
const ABSENT: &str = "absent (not in the server's address space)";
/// The same for a configured node whose namespace is not in the server's NamespaceArray.
const ABSENT_NAMESPACE: &str = "absent (namespace not in the server's NamespaceArray)";

/// The only requests a session carries: reads and browses. This enum and [`send`] are the
/// collector's read-only boundary; nothing else in this module talks to a server except the
/// discovery call (GetEndpoints) and session management in [`OpcuaCollector::open`].
#[derive(Debug)]
enum Request<'a> {
    /// Read attributes.
    Read(&'a [ReadValueId]),
    /// Browse references.
    Browse(&'a [BrowseDescription]),
    /// Continue (or release) browse continuation points.
    BrowseNext {
        points: &'a [ByteString],
        release: bool,
    },
}

impl Request<'_> {
    /// The OPC UA service this request is.
    fn service(&self) -> &'static str {
        match self {
            Request::Read(_) => "Read",
            Request::Browse(_) => "Browse",
            Request::BrowseNext { .. } => "BrowseNext",
        }
    }

    fn len(&self) -> usize {
        match self {
            Request::Read(ops) => ops.len(),
            Request::Browse(nodes) => nodes.len(),
            Request::BrowseNext { points, .. } => points.len(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Request::BrowseNext { release: true, .. } => {
                format!("BrowseNext (release {} continuation points)", self.len())
            }
            _ => format!("{} of {} operations", self.service(), self.len()),
        }
    }
}

/// What a server answered to a [`Request`].
enum Answer {
    Values(Vec<DataValue>),
    Browsed(Vec<BrowseResult>),
}

/// Sends one request on the session. Read, Browse and BrowseNext only.
async fn send(session: &Session, request: &Request<'_>) -> Result<Answer, opcua::types::Error> {
    match request {
        Request::Read(ops) => session
            .read(ops, TimestampsToReturn::Neither, 0.0)
            .await
            .map(Answer::Values),
        Request::Browse(nodes) => session
            .browse(nodes, REFERENCES_PER_NODE, None)
            .await
            .map(Answer::Browsed),
        Request::BrowseNext { points, release } => session
            .browse_next(*release, points)
            .await
            .map(Answer::Browsed),
    }
}

/// Statuses that mean the connection is gone.
fn connection_lost(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadConnectionClosed
            | StatusCode::BadNotConnected
            | StatusCode::BadSecureChannelClosed
            | StatusCode::BadSecureChannelIdInvalid
            | StatusCode::BadCommunicationError
            | StatusCode::BadTcpInternalError
            | StatusCode::BadDisconnect
            | StatusCode::BadEndOfStream
            | StatusCode::BadServerNotConnected
            | StatusCode::BadNoCommunication
            | StatusCode::BadConnectionRejected
            | StatusCode::BadTcpSecureChannelUnknown
            | StatusCode::BadServerHalted
            | StatusCode::BadShutdown
    )
}

/// Statuses that mean the server forgot our session (it expired or was closed).
fn session_gone(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadSessionIdInvalid
            | StatusCode::BadSessionClosed
            | StatusCode::BadSessionNotActivated
    )
}

/// Statuses that mean the answer could not be decoded or did not fit the request.
fn malformed_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadDecodingError
            | StatusCode::BadUnknownResponse
            | StatusCode::BadDataEncodingInvalid
            | StatusCode::BadTcpMessageTypeInvalid
            | StatusCode::BadSequenceNumberInvalid
            | StatusCode::BadSecurityChecksFailed
    )
}

/// Statuses that mean an answer was larger than our limits ([`MAX_MESSAGE_SIZE`],
/// [`MAX_CHUNK_COUNT`]): a bound. BadResponseTooLarge comes from an honest server refusing to
/// send it, BadEncodingLimitsExceeded from async-opcua cutting off a server that sent it
/// anyway, BadTcpMessageTooLarge from a single chunk over the limit.
fn too_large(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadResponseTooLarge
            | StatusCode::BadEncodingLimitsExceeded
            | StatusCode::BadTcpMessageTooLarge
    )
}

/// Statuses that honestly mean "busy, try later" (OPC 10000-4 status codes): the server or its
/// data source lacks the resources now, not the node or the right to read it.
/// BadTooManyOperations is not among them: it is the server's per-request limit, met by
/// smaller batches.
pub(crate) fn busy_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadServerTooBusy
            | StatusCode::BadTcpServerTooBusy
            | StatusCode::BadTooManySessions
            | StatusCode::BadMaxConnectionsReached
            | StatusCode::BadResourceUnavailable
            | StatusCode::BadOutOfMemory
            | StatusCode::BadNoContinuationPoints
            | StatusCode::BadWaitingForInitialData
    )
}

/// A failed request: either the server's status for the whole service (handled by the
/// caller in some cases) or an error ending the capture.
enum Fault {
    Status(StatusCode),
    Fatal(CollectError),
}

/// The batch sizes in force on a session.
#[derive(Debug, Clone, Copy)]
struct Limits {
    read: usize,
    browse: usize,
    published: bool,
}

/// What the session learnt about the server when it connected.
struct ServerFacts {
    application_uri: String,
    thumbprint: Option<String>,
    pin: Pin,
    mode: String,
    policy: String,
}

struct Conn {
    live: Live,
    server: ServerFacts,
    limits: Limits,
}

/// One node found by the walk.
#[derive(Debug, Default)]
struct Found {
    id: Option<NodeId>,
    class: Option<NodeClass>,
    browse_name: Option<String>,
    type_definition: Option<String>,
    parents: BTreeSet<String>,
    root: bool,
}

/// The OPC UA collector for one asset; keeps its session between captures.
pub struct OpcuaCollector {
    asset: String,
    endpoint_url: String,
    cfg: OpcuaConfig,
    timeout: Duration,
    pki_dir: PathBuf,
    client: Option<Client>,
    conn: Option<Conn>,
    stats: CaptureStats,
    /// Set when the last failure was a lost connection or session (worth one reconnect).
    lost: bool,
    /// What the current capture's walk has taken in.
    walk: Walk,
    /// Set while a capture runs; still set at `close` when the capture was abandoned (its
    /// deadline passed), so `close` does not wait on a server in an unknown state.
    in_flight: bool,
}

impl std::fmt::Debug for OpcuaCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpcuaCollector")
            .field("asset", &self.asset)
            .field("endpoint", &self.endpoint_url)
            .field("security", &self.cfg.security)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl OpcuaCollector {
    /// A collector for `asset`; nothing is sent and nothing is written until the first
    /// capture. Its PKI folder defaults to [`default_pki_dir`] (for tests); the agent sets
    /// `data_dir/opcua-pki` with [`with_pki_dir`](Self::with_pki_dir).
    pub fn new(asset: &AssetConfig, cfg: &OpcuaConfig) -> Self {
        OpcuaCollector {
            asset: asset.id.clone(),
            endpoint_url: cfg.endpoint.clone(),
            cfg: cfg.clone(),
            timeout: Duration::from_millis(asset.timeout_ms),
            pki_dir: default_pki_dir(&asset.id),
            client: None,
            conn: None,
            stats: CaptureStats::default(),
            lost: false,
            walk: Walk::default(),
            in_flight: false,
        }
    }

    /// Where the agent's application certificate and the pinned server certificates are kept
    /// (created on first use; shared by every OPC UA asset of an agent, pins are per asset).
    #[must_use]
    pub fn with_pki_dir(mut self, dir: PathBuf) -> Self {
        self.pki_dir = dir;
        self.client = None;
        self
    }

    /// The PKI folder in use.
    pub fn pki_dir(&self) -> &std::path::Path {
        &self.pki_dir
    }

    fn scope(&self) -> crate::Scope {
        crate::Scope::new(&self.asset, &self.endpoint_url)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn timeout_error(&self, request: String) -> CollectError {
        self.scope().timeout(request, self.timeout_ms(), "")
    }

    fn malformed(&self, request: String, detail: String) -> CollectError {
        self.scope().malformed(request, detail)
    }

    fn refused(&self, request: String, reason: String) -> CollectError {
        self.scope().refused(request, reason)
    }

    fn transport(&self, request: String, status: StatusCode) -> CollectError {
        self.scope().transport(
            request,
            std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                convert::status_text(status),
            ),
        )
    }

    fn local(&self, detail: String) -> CollectError {
        self.scope().config(detail)
    }

    /// Turns a failed service call into the capture's error, dropping the session when the
    /// connection or session is gone.
    fn service_error(&mut self, request: String, status: StatusCode) -> CollectError {
        if status == StatusCode::BadTimeout || status == StatusCode::BadRequestTimeout {
            self.conn = None;
            return self.timeout_error(request);
        }
        if connection_lost(status) || session_gone(status) {
            self.conn = None;
            self.lost = true;
            return if session_gone(status) {
                self.refused(request, convert::status_text(status))
            } else {
                self.transport(request, status)
            };
        }
        if malformed_status(status) {
            self.conn = None;
            return self.malformed(request, convert::status_text(status));
        }
        if too_large(status) {
            return self.too_large_error(request, status);
        }
        self.operation_error(request, status)
    }

    /// Sends one request under the deadline.
    async fn call(&mut self, request: Request<'_>) -> Result<Answer, Fault> {
        let session = match self.conn.as_ref() {
            Some(conn) if conn.live.is_up() => std::sync::Arc::clone(&conn.live.session),
            _ => {
                self.conn = None;
                self.lost = true;
                return Err(Fault::Fatal(
                    self.transport(request.describe(), StatusCode::BadConnectionClosed),
                ));
            }
        };
        self.stats.requests += 1;
        match tokio::time::timeout(self.timeout, send(&session, &request)).await {
            Err(_) => {
                // The answer may still come; a new session makes sure it is never taken for
                // the answer to something else.
                self.conn = None;
                Err(Fault::Fatal(self.timeout_error(request.describe())))
            }
            Ok(Ok(answer)) => Ok(answer),
            // The caller meets these by asking for fewer operations at once.
            Ok(Err(e))
                if e.status() == StatusCode::BadTooManyOperations || too_large(e.status()) =>
            {
                Err(Fault::Status(e.status()))
            }
            Ok(Err(e)) => Err(Fault::Fatal(
                self.service_error(request.describe(), e.status()),
            )),
        }
    }

    /// Opens a session: discovery, endpoint choice, certificate pin, session activation, the
    /// server's limits.
    async fn open(&mut self) -> Result<(), CollectError> {
        let user = match (&self.cfg.username, &self.cfg.password_file) {
            (Some(name), Some(file)) => {
                let password =
                    connection::read_password(file).map_err(|e| self.local(e.to_string()))?;
                Some((name.clone(), password))
            }
            _ => None,
        };
        let mut client = match self.client.take() {
            Some(client) => client,
            None => {
                let (pki, timeout) = (self.pki_dir.clone(), self.timeout);
                tokio::task::spawn_blocking(move || connection::make_client(&pki, timeout))
                    .await
                    .map_err(|e| self.local(format!("cannot make the OPC UA client: {e}")))?
                    .map_err(|e| self.local(e))?
            }
        };
        let opened = self.open_with(&mut client, user).await;
        self.client = Some(client);
        opened?;
        self.read_limits().await
    }

    async fn open_with(
        &mut self,
        client: &mut Client,
        user: Option<(String, String)>,
    ) -> Result<(), CollectError> {
        let url = self.endpoint_url.clone();
        self.stats.requests += 1;
        let discovery = tokio::time::timeout(
            self.timeout,
            client.get_server_endpoints_from_url(url.as_str()),
        )
        .await;
        let endpoints = match discovery {
            Err(_) => return Err(self.timeout_error("GetEndpoints (connect)".to_owned())),
            Ok(Err(e))
                if connection_lost(e.status())
                    || e.status() == StatusCode::BadTcpEndpointUrlInvalid =>
            {
                return Err(
                    crate::Scope::new(&self.asset, url).connect(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        format!("no OPC UA answer ({})", convert::status_text(e.status())),
                    )),
                );
            }
            Ok(Err(e)) if e.status() == StatusCode::BadTimeout => {
                return Err(self.timeout_error("GetEndpoints (connect)".to_owned()));
            }
            Ok(Err(e)) if busy_status(e.status()) => {
                return Err(self.scope().busy(
                    "GetEndpoints".to_owned(),
                    format!("server answered {}", convert::status_text(e.status())),
                ));
            }
            Ok(Err(e)) if malformed_status(e.status()) => {
                return Err(
                    self.malformed("GetEndpoints".to_owned(), convert::status_text(e.status()))
                );
            }
            Ok(Err(e)) => {
                return Err(self.refused(
                    "GetEndpoints".to_owned(),
                    format!("server answered {}", convert::status_text(e.status())),
                ));
            }
            Ok(Ok(endpoints)) => endpoints,
        };
        let mut endpoint = connection::choose_endpoint(
            &endpoints,
            self.cfg.security,
            self.cfg.security_policy.as_deref(),
            user.is_some(),
        )
        .map_err(|reason| self.refused("GetEndpoints".to_owned(), reason))?;
        let certificate = {
            let own = endpoint
                .server_certificate
                .value
                .as_deref()
                .unwrap_or_default();
            let any = endpoints
                .iter()
                .filter_map(|e| e.server_certificate.value.as_deref())
                .find(|c| !c.is_empty())
                .unwrap_or_default();
            connection::first_der(if own.is_empty() { any } else { own }).to_vec()
        };
        connection::check_endpoint(&endpoint, &certificate)
            .map_err(|why| self.malformed("GetEndpoints".to_owned(), why))?;
        let pin = connection::check_pin(&self.pki_dir, &self.asset, &certificate).map_err(|e| {
            self.local(format!(
                "cannot keep the pinned server certificate in {}: {e}",
                self.pki_dir.display()
            ))
        })?;
        let thumbprint = (!certificate.is_empty()).then(|| connection::thumbprint(&certificate));
        match &pin {
            Pin::FirstUse => tracing::info!(
                thumbprint = thumbprint.as_deref().unwrap_or(""),
                "pinned the server certificate on first use"
            ),
            Pin::Changed { pinned, rejected } => {
                tracing::warn!(
                    pinned = %pinned,
                    presented = thumbprint.as_deref().unwrap_or(""),
                    saved = %rejected.display(),
                    pin = %connection::pin_path(&self.pki_dir, &self.asset).display(),
                    "the server presents a different certificate than the pinned one; \
                     if the change is intended, approve the identity drift and delete the pin file"
                );
                if user.is_some() {
                    return Err(self.refused(
                        "CreateSession".to_owned(),
                        format!(
                            "the server certificate changed (pinned {pinned}, presented {}); \
                             otdrift does not send the password to an unpinned certificate; if \
                             the change is intended, delete {}",
                            thumbprint.as_deref().unwrap_or("?"),
                            connection::pin_path(&self.pki_dir, &self.asset).display()
                        ),
                    ));
                }
            }
            Pin::Matches | Pin::NoCertificate => {}
        }
        let facts = ServerFacts {
            application_uri: endpoint.server.application_uri.as_ref().to_owned(),
            thumbprint,
            pin,
            mode: endpoint.security_mode.to_string(),
            policy: endpoint
                .security_policy_uri
                .as_ref()
                .rsplit('#')
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        // Servers often advertise a host name that does not resolve from here; the
        // configured URL is the one that reaches them.
        endpoint.endpoint_url = url.as_str().into();
        let identity = connection::identity(user.as_ref().map(|(n, p)| (n.as_str(), p.as_str())));
        let live = Live::start(client, endpoint, identity).map_err(|status| {
            self.refused("CreateSession".to_owned(), convert::status_text(status))
        })?;
        self.stats.requests += 2; // CreateSession, ActivateSession
        let mut link = live.link.clone();
        let up = tokio::time::timeout(self.timeout, async {
            link.wait_for(|l| !matches!(l, Link::Connecting))
                .await
                .map(|state| *state)
        })
        .await;
        let state = match up {
            Err(_) => return Err(self.timeout_error("CreateSession/ActivateSession".to_owned())),
            Ok(Err(_)) => Link::Down(StatusCode::BadConnectionClosed),
            Ok(Ok(state)) => state,
        };
        if let Link::Down(status) = state {
            return Err(self.session_refused(status));
        }
        self.stats.connects += 1;
        // async-opcua reads ServerStatus/State once right after connecting; wait for it so
        // the session's traffic is the same every time (and counted).
        let mut alive = live.keep_alives.clone();
        if tokio::time::timeout(self.timeout, alive.wait_for(|n| *n >= 1))
            .await
            .is_err()
        {
            return Err(self.timeout_error("Read of ServerStatus/State (keep-alive)".to_owned()));
        }
        self.stats.requests += 1;
        tracing::debug!(mode = %facts.mode, policy = %facts.policy, "session open");
        self.conn = Some(Conn {
            live,
            server: facts,
            limits: Limits {
                read: 2,
                browse: DEFAULT_BATCH,
                published: false,
            },
        });
        Ok(())
    }

    fn session_refused(&self, status: StatusCode) -> CollectError {
        let request = "CreateSession/ActivateSession".to_owned();
        let reason = convert::status_text(status);
        if connection_lost(status) {
            return self.scope().connect(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                reason,
            ));
        }
        if busy_status(status) {
            return self
                .scope()
                .busy(request, format!("server answered {reason}"));
        }
        let hint = match status {
            StatusCode::BadIdentityTokenRejected
            | StatusCode::BadIdentityTokenInvalid
            | StatusCode::BadUserAccessDenied => {
                "; check the user name and password file, and that the user may log in"
            }
            StatusCode::BadCertificateUntrusted
            | StatusCode::BadSecurityChecksFailed
            | StatusCode::BadCertificateInvalid => {
                "; trust the agent's certificate on the server (see the PKI folder's own/cert.der)"
            }
            _ => "",
        };
        self.refused(request, format!("{reason}{hint}"))
    }

    /// Reads MaxNodesPerRead and MaxNodesPerBrowse (once per session). These are not state:
    /// a refused or missing one means the defaults.
    async fn read_limits(&mut self) -> Result<(), CollectError> {
        let ops = [MAX_NODES_PER_READ, MAX_NODES_PER_BROWSE].map(|id| value_of(NodeId::new(0, id)));
        let values = self.read_all(&ops).await?;
        let limit = |dv: Option<&DataValue>| match dv.map(|dv| (dv.status(), dv.value.as_ref())) {
            Some((status, Some(Variant::UInt32(0)))) if status.is_good() => Some(MAX_BATCH),
            Some((status, Some(Variant::UInt32(n)))) if status.is_good() => {
                Some(usize::try_from(*n).unwrap_or(MAX_BATCH).min(MAX_BATCH))
            }
            _ => None,
        };
        let (read, browse) = (limit(values.first()), limit(values.get(1)));
        if let Some(conn) = self.conn.as_mut() {
            conn.limits = Limits {
                read: read.unwrap_or(DEFAULT_BATCH),
                browse: browse.unwrap_or(DEFAULT_BATCH),
                published: read.is_some(),
            };
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.conn.as_ref().map_or(
            Limits {
                read: DEFAULT_BATCH,
                browse: DEFAULT_BATCH,
                published: false,
            },
            |c| c.limits,
        )
    }

    /// Reads every operation in batches of MaxNodesPerRead; the answer has exactly one value
    /// per operation, in order. A BadTooManyOperations halves the batch for the session (the
    /// server's limit); an answer too large for [`MAX_MESSAGE_SIZE`] halves it for this call
    /// only. Either way the same operations are read, so the digest cannot change; a single
    /// operation whose answer is still too large is a bound naming its node.
    async fn read_all(&mut self, ops: &[ReadValueId]) -> Result<Vec<DataValue>, CollectError> {
        let mut out = Vec::with_capacity(ops.len());
        let mut size_cap = usize::MAX;
        let mut at = 0;
        while at < ops.len() {
            let batch = self.limits().read.clamp(1, size_cap);
            let end = at.saturating_add(batch).min(ops.len());
            let chunk = ops.get(at..end).unwrap_or_default();
            let request = Request::Read(chunk);
            let describe = match chunk {
                [one] => format!(
                    "Read of {} of {}",
                    attribute_name(one.attribute_id),
                    one.node_id
                ),
                _ => request.describe(),
            };
            let status = match self.call(request).await {
                Ok(Answer::Values(values)) => {
                    if values.len() != chunk.len() {
                        self.conn = None;
                        return Err(self.malformed(
                            describe,
                            format!("asked for {} values, got {}", chunk.len(), values.len()),
                        ));
                    }
                    if values
                        .iter()
                        .all(|v| v.status() == StatusCode::BadTooManyOperations)
                    {
                        StatusCode::BadTooManyOperations
                    } else {
                        out.extend(values);
                        at = end;
                        continue;
                    }
                }
                Ok(Answer::Browsed(_)) => {
                    return Err(self.malformed(describe, "a browse answer to a read".to_owned()));
                }
                Err(Fault::Status(status)) => status,
                Err(Fault::Fatal(e)) => return Err(e),
            };
            if too_large(status) {
                if batch == 1 {
                    return Err(self.too_large_error(describe, status));
                }
                tracing::debug!(batch, "answer too large; asking for fewer values at once");
                size_cap = batch / 2;
                continue;
            }
            if batch == 1 {
                return Err(self.refused(
                    describe,
                    "server answered BadTooManyOperations to a single operation".to_owned(),
                ));
            }
            tracing::warn!(batch, "server refused the batch size; halving it");
            if let Some(conn) = self.conn.as_mut() {
                conn.limits.read = batch / 2;
            }
        }
        Ok(out)
    }

    fn too_large_error(&mut self, request: String, status: StatusCode) -> CollectError {
        if status != StatusCode::BadResponseTooLarge {
            // The server sent it anyway: the rest of it may still be on the wire.
            self.conn = None;
        }
        self.scope().bound(
            request,
            format!(
                "server answered {}: the answer is larger than the {MAX_MESSAGE_SIZE} bytes \
                 ({MAX_CHUNK_COUNT} chunks) a message may have",
                convert::status_text(status)
            ),
        )
    }

    /// A Bad or Uncertain status on one operation, as the capture's error: busy statuses are
    /// [`ErrorKind::Busy`](crate::ErrorKind::Busy), size statuses a bound, everything else a
    /// refusal (an uncertain value is not approved state).
    fn operation_error(&self, request: String, status: StatusCode) -> CollectError {
        let text = convert::status_text(status);
        if busy_status(status) {
            self.scope()
                .busy(request, format!("server answered {text}"))
        } else if too_large(status) {
            self.scope()
                .bound(request, format!("server answered {text}"))
        } else if status.is_uncertain() {
            self.refused(
                request,
                format!(
                    "server answered {text}: the server is not sure of the value, and an \
                     uncertain value is not approved state"
                ),
            )
        } else {
            self.refused(request, format!("server answered {text}"))
        }
    }

    /// Browses nodes (forward hierarchical references, all node classes) in batches of
    /// MaxNodesPerBrowse and follows continuation points with BrowseNext. Per node: its
    /// references, or `None` when the server says the node does not exist (BadNodeIdUnknown;
    /// the caller decides whether that is absence or a contradiction). References are counted
    /// as they arrive against [`MAX_REFERENCES_PER_NODE`] and [`MAX_REFERENCES`].
    async fn browse_all(
        &mut self,
        nodes: &[(String, NodeId)],
    ) -> Result<Vec<Option<Vec<ReferenceDescription>>>, CollectError> {
        let mut out: Vec<Option<Vec<ReferenceDescription>>> =
            nodes.iter().map(|_| Some(Vec::new())).collect();
        let mut size_cap = usize::MAX;
        // Indexes into `nodes` still to browse, in order.
        let mut queue: std::collections::VecDeque<usize> = (0..nodes.len()).collect();
        while !queue.is_empty() {
            let batch = self.limits().browse.clamp(1, size_cap);
            let indexes: Vec<usize> = queue.drain(..batch.min(queue.len())).collect();
            let group: Vec<&(String, NodeId)> =
                indexes.iter().filter_map(|i| nodes.get(*i)).collect();
            let chunk: Vec<BrowseDescription> = group
                .iter()
                .map(|(_, id)| BrowseDescription {
                    node_id: id.clone(),
                    browse_direction: BrowseDirection::Forward,
                    reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                    include_subtypes: true,
                    node_class_mask: 0,
                    result_mask: BrowseResultMask::All as u32,
                })
                .collect();
            let request = Request::Browse(&chunk);
            let describe = match group.as_slice() {
                [(key, _)] => format!("Browse of {key}"),
                _ => request.describe(),
            };
            let results = match self.call(request).await {
                Ok(Answer::Browsed(results)) => results,
                Ok(Answer::Values(_)) => {
                    return Err(self.malformed(describe, "a read answer to a browse".to_owned()));
                }
                Err(Fault::Status(status)) if too_large(status) => {
                    if indexes.len() == 1 {
                        return Err(self.too_large_error(describe, status));
                    }
                    size_cap = indexes.len() / 2;
                    for index in indexes.into_iter().rev() {
                        queue.push_front(index);
                    }
                    continue;
                }
                Err(Fault::Status(status)) => {
                    return Err(self.operation_error(describe, status));
                }
                Err(Fault::Fatal(e)) => return Err(e),
            };
            if results.len() != chunk.len() {
                self.conn = None;
                return Err(self.malformed(
                    describe,
                    format!(
                        "asked to browse {} nodes, got {} results",
                        chunk.len(),
                        results.len()
                    ),
                ));
            }
            // (index into `out`, continuation point, references seen so far for it)
            let mut pending: Vec<(usize, ByteString, BTreeSet<String>)> = Vec::new();
            let mut failed = None;
            // Nodes the server had no continuation point left for: browsed again once the
            // points of this batch are done (the same nodes, so nothing changes but timing).
            let mut again = Vec::new();
            for (&index, result) in indexes.iter().zip(results) {
                if result.status_code == StatusCode::BadNoContinuationPoints {
                    again.push(index);
                    continue;
                }
                let key = nodes
                    .get(index)
                    .map(|(k, _)| k.as_str())
                    .unwrap_or_default();
                if result.status_code == StatusCode::BadNodeIdUnknown {
                    if let Some(slot) = out.get_mut(index) {
                        *slot = None;
                    }
                    continue;
                }
                if !result.status_code.is_good() {
                    failed = Some((format!("Browse of {key}"), result.status_code));
                    if !result.continuation_point.is_null_or_empty() {
                        pending.push((index, result.continuation_point, BTreeSet::new()));
                    }
                    continue;
                }
                let refs = result.references.unwrap_or_default();
                let seen: BTreeSet<String> = refs.iter().map(|r| r.node_id.to_string()).collect();
                if let Some(Some(slot)) = out.get_mut(index) {
                    slot.extend(refs);
                }
                if let Err(e) = self.count_references(&out, index, key) {
                    pending.push((index, result.continuation_point, seen));
                    self.release(pending).await;
                    return Err(e);
                }
                if !result.continuation_point.is_null_or_empty() {
                    pending.push((index, result.continuation_point, seen));
                }
            }
            if let Some((request, status)) = failed {
                self.release(pending).await;
                return Err(self.operation_error(request, status));
            }
            self.follow(nodes, &mut out, pending).await?;
            if again.len() == indexes.len() {
                // Not one node got a continuation point although none of ours is held: the
                // server is out of them (other sessions hold them), which is "busy".
                let key = again
                    .first()
                    .and_then(|i| nodes.get(*i))
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
                return Err(self.operation_error(
                    format!("Browse of {key}"),
                    StatusCode::BadNoContinuationPoints,
                ));
            }
            for index in again.into_iter().rev() {
                queue.push_front(index);
            }
        }
        Ok(out)
    }

    /// Counts the references of node `index` (after an answer added some) against
    /// [`MAX_REFERENCES_PER_NODE`] and the capture's [`MAX_REFERENCES`].
    fn count_references(
        &mut self,
        out: &[Option<Vec<ReferenceDescription>>],
        index: usize,
        key: &str,
    ) -> Result<(), CollectError> {
        let here = out.get(index).and_then(Option::as_ref).map_or(0, Vec::len);
        if here > MAX_REFERENCES_PER_NODE {
            return Err(self.scope().bound(
                format!("Browse of {key}"),
                format!(
                    "more than {MAX_REFERENCES_PER_NODE} references from one node; configure a \
                     narrower node"
                ),
            ));
        }
        let total: usize = out.iter().flatten().map(Vec::len).sum();
        if self.walk.references.saturating_add(total) > MAX_REFERENCES {
            return Err(self.scope().bound(
                format!("Browse of {key}"),
                format!(
                    "more than {MAX_REFERENCES} references below the configured nodes; \
                     configure narrower nodes"
                ),
            ));
        }
        Ok(())
    }

    /// Frees continuation points the walk will not follow (best effort: the server frees them
    /// with the session anyway).
    async fn release(&mut self, pending: Vec<(usize, ByteString, BTreeSet<String>)>) {
        let points: Vec<ByteString> = pending
            .into_iter()
            .map(|(_, p, _)| p)
            .filter(|p| !p.is_null_or_empty())
            .collect();
        if points.is_empty() || self.conn.is_none() {
            return;
        }
        let request = Request::BrowseNext {
            points: &points,
            release: true,
        };
        let _ = self.call(request).await;
    }

    /// BrowseNext until every continuation point is done. A chain longer than
    /// [`MAX_BROWSE_NEXT_ROUNDS_PER_NODE`] (or the capture's [`MAX_BROWSE_NEXT_ROUNDS`]) is a
    /// bound; a server that refuses BrowseNext fails the capture (the node's children would be
    /// incomplete); one that repeats references it already sent is malformed.
    async fn follow(
        &mut self,
        nodes: &[(String, NodeId)],
        out: &mut [Option<Vec<ReferenceDescription>>],
        mut pending: Vec<(usize, ByteString, BTreeSet<String>)>,
    ) -> Result<(), CollectError> {
        let key_of = |index: usize| nodes.get(index).map(|(k, _)| k.clone()).unwrap_or_default();
        let mut rounds = 0usize;
        while !pending.is_empty() {
            rounds += 1;
            if rounds > MAX_BROWSE_NEXT_ROUNDS_PER_NODE
                || self.walk.browse_next >= MAX_BROWSE_NEXT_ROUNDS
            {
                let key = key_of(pending.first().map_or(0, |(i, _, _)| *i));
                self.release(pending).await;
                let limit = if rounds > MAX_BROWSE_NEXT_ROUNDS_PER_NODE {
                    format!(
                        "more than {MAX_BROWSE_NEXT_ROUNDS_PER_NODE} BrowseNext rounds for one \
                         node: the server's continuation points do not end"
                    )
                } else {
                    format!("more than {MAX_BROWSE_NEXT_ROUNDS} BrowseNext requests in one capture")
                };
                return Err(self.scope().bound(format!("BrowseNext of {key}"), limit));
            }
            let batch = self.limits().browse.max(1);
            let mut next = Vec::new();
            let mut groups = pending.chunks(batch).map(<[_]>::to_vec).collect::<Vec<_>>();
            groups.reverse();
            while let Some(group) = groups.pop() {
                self.walk.browse_next += 1;
                let points: Vec<ByteString> = group.iter().map(|(_, p, _)| p.clone()).collect();
                let request = Request::BrowseNext {
                    points: &points,
                    release: false,
                };
                let describe = match group.as_slice() {
                    [(index, _, _)] => format!("BrowseNext of {}", key_of(*index)),
                    _ => request.describe(),
                };
                let unfinished =
                    |groups: Vec<Vec<(usize, ByteString, BTreeSet<String>)>>,
                     next: Vec<(usize, ByteString, BTreeSet<String>)>| {
                        groups.into_iter().flatten().chain(next).collect::<Vec<_>>()
                    };
                let results = match self.call(request).await {
                    Ok(Answer::Browsed(results)) => results,
                    Ok(Answer::Values(_)) => {
                        return Err(
                            self.malformed(describe, "a read answer to a browse".to_owned())
                        );
                    }
                    Err(Fault::Status(status)) => {
                        self.release(unfinished(groups, next)).await;
                        return Err(if too_large(status) {
                            self.too_large_error(describe, status)
                        } else {
                            self.operation_error(describe, status)
                        });
                    }
                    Err(Fault::Fatal(e)) => {
                        if self.conn.is_some() {
                            self.release(unfinished(groups, next)).await;
                        }
                        return Err(e);
                    }
                };
                if results.len() != group.len() {
                    self.conn = None;
                    return Err(self.malformed(
                        describe,
                        format!(
                            "asked to continue {} browses, got {} results",
                            group.len(),
                            results.len()
                        ),
                    ));
                }
                let mut failure = None;
                for ((index, _, mut seen), result) in group.into_iter().zip(results) {
                    let more = !result.continuation_point.is_null_or_empty();
                    if failure.is_some() {
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        continue;
                    }
                    if !result.status_code.is_good() {
                        failure = Some(self.operation_error(
                            format!("BrowseNext of {}", key_of(index)),
                            result.status_code,
                        ));
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        continue;
                    }
                    let refs = result.references.unwrap_or_default();
                    let before = seen.len();
                    seen.extend(refs.iter().map(|r| r.node_id.to_string()));
                    if seen.len() < before + refs.len() {
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        failure = Some(
                            self.malformed(
                                format!("BrowseNext of {}", key_of(index)),
                                "the answer repeats references already received: the server does \
                             not honour continuation points"
                                    .to_owned(),
                            ),
                        );
                        continue;
                    }
                    if let Some(Some(slot)) = out.get_mut(index) {
                        slot.extend(refs);
                    }
                    if let Err(e) = self.count_references(out, index, &key_of(index)) {
                        if more {
                            next.push((index, result.continuation_point, seen));
                        }
                        failure = Some(e);
                        continue;
                    }
                    if more {
                        next.push((index, result.continuation_point, seen));
                    }
                }
                if let Some(e) = failure {
                    self.release(unfinished(groups, next)).await;
                    return Err(e);
                }
            }
            pending = next;
        }
        Ok(())
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
        snapshot.insert(item).map_err(|e| {
            self.malformed(
                "Browse".to_owned(),
                format!("two nodes of the server map to the same item path ({e})"),
            )
        })
    }

    async fn ensure_open(&mut self) -> Result<(), CollectError> {
        if self.conn.as_ref().is_some_and(|c| c.live.is_up()) {
            return Ok(());
        }
        self.conn = None;
        let opened = self.open().await;
        if opened.is_err() {
            self.conn = None;
        }
        opened
    }

    /// A mandatory text field of the Server object (BuildInfo): a String, or null.
    fn server_text(&self, field: &str, dv: &DataValue) -> Result<Value, CollectError> {
        let request = format!("Read of Server/ServerStatus/BuildInfo/{field}");
        self.mandatory_status(&request, dv)?;
        match &dv.value {
            None | Some(Variant::Empty) => Ok(Value::Null),
            Some(Variant::String(s)) => match s.value() {
                None => Ok(Value::Null),
                Some(t) => convert::text(t)
                    .map(Value::Text)
                    .map_err(|convert::Oversize(why)| self.scope().bound(request, why)),
            },
            Some(Variant::DateTime(d)) if field == "build_date" => Ok(if d.is_null() {
                Value::Null
            } else {
                Value::Text(d.to_rfc3339())
            }),
            Some(other) => Err(self.malformed(
                request,
                format!(
                    "expected a {}, got {other:?}",
                    if field == "build_date" {
                        "DateTime"
                    } else {
                        "String"
                    }
                ),
            )),
        }
    }

    /// The status of a variable every server must have (NamespaceArray, BuildInfo): a node
    /// the server says it lacks, or says no one may read (BadNotReadable: its AccessLevel),
    /// is malformed (the Server object is incomplete); any other Bad or Uncertain status is
    /// the operation's error (BadUserAccessDenied: this user is refused, which the operator
    /// can change, so `refused`).
    fn mandatory_status(&self, request: &str, dv: &DataValue) -> Result<(), CollectError> {
        let status = dv.status();
        if status.is_good() {
            return Ok(());
        }
        if matches!(
            status,
            StatusCode::BadNodeIdUnknown
                | StatusCode::BadAttributeIdInvalid
                | StatusCode::BadNotReadable
        ) {
            return Err(self.malformed(
                request.to_owned(),
                format!(
                    "server answered {}: the Server object lacks a readable variable every \
                     OPC UA server must have",
                    convert::status_text(status)
                ),
            ));
        }
        Err(self.operation_error(request.to_owned(), status))
    }

    /// Identity, namespaces and server status: one read.
    async fn read_identity(
        &mut self,
        snapshot: &mut Snapshot,
        runtime: &mut BTreeMap<String, Value>,
    ) -> Result<Vec<String>, CollectError> {
        let mut ids = vec![NAMESPACE_ARRAY];
        ids.extend(BUILD_INFO_FIELDS.iter().map(|(id, _)| *id));
        ids.extend([SERVER_STATE, START_TIME, CURRENT_TIME]);
        let ops: Vec<ReadValueId> = ids.iter().map(|id| value_of(NodeId::new(0, *id))).collect();
        let values = self.read_all(&ops).await?;
        let get = |i: usize| values.get(i).cloned().unwrap_or_default();

        let namespaces_dv = get(0);
        let request = "Read of Server/NamespaceArray";
        self.mandatory_status(request, &namespaces_dv)?;
        let mut namespaces = Vec::new();
        match &namespaces_dv.value {
            Some(Variant::Array(array)) => {
                for v in &array.values {
                    match v {
                        Variant::String(s) => {
                            namespaces.push(convert::text(s.as_ref()).map_err(
                                |convert::Oversize(why)| self.scope().bound(request, why),
                            )?)
                        }
                        other => {
                            return Err(self.malformed(
                                request.to_owned(),
                                format!("expected an array of strings, got an element {other:?}"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(self.malformed(
                    request.to_owned(),
                    format!("expected an array of strings, got {other:?}"),
                ));
            }
        }
        for (index, uri) in namespaces.iter().enumerate() {
            self.insert(
                snapshot,
                format!("opcua/namespace/{index}"),
                Class::Identity,
                Value::Text(uri.clone()),
            )?;
        }
        for (i, (_, field)) in BUILD_INFO_FIELDS.iter().enumerate() {
            let value = self.server_text(field, &get(i + 1))?;
            self.insert(
                snapshot,
                format!("opcua/server/build_info/{field}"),
                Class::Identity,
                value,
            )?;
        }
        let status_base = 1 + BUILD_INFO_FIELDS.len();
        for (offset, name) in ["state", "start_time", "current_time"].iter().enumerate() {
            let value = convert::runtime_value(&get(status_base + offset));
            let value = match (name, value) {
                (&"state", Value::Int(0)) => Value::Text("Running".to_owned()),
                (_, other) => other,
            };
            runtime.insert(format!("opcua/server/{name}"), value);
        }
        if let Some(conn) = self.conn.as_ref() {
            let facts = &conn.server;
            let app = Value::Text(facts.application_uri.clone());
            let thumb = match &facts.thumbprint {
                Some(t) => Value::Text(t.clone()),
                // Only reachable with security none (a secured endpoint without a certificate
                // is refused when connecting): a server that never presents one is a stable
                // capability, the same text every poll.
                None => Value::unavailable(
                    "the server presents no application certificate (security none)",
                ),
            };
            let pin = facts.pin.describe();
            let (mode, policy) = (facts.mode.clone(), facts.policy.clone());
            let limits = conn.limits;
            self.insert(
                snapshot,
                "opcua/server/application_uri".to_owned(),
                Class::Identity,
                app,
            )?;
            self.insert(
                snapshot,
                "opcua/server/certificate_thumbprint".to_owned(),
                Class::Identity,
                thumb,
            )?;
            runtime.insert(
                "opcua/security/certificate_pin".to_owned(),
                Value::Text(pin),
            );
            runtime.insert("opcua/security/mode".to_owned(), Value::Text(mode));
            runtime.insert("opcua/security/policy".to_owned(), Value::Text(policy));
            runtime.insert(
                "opcua/limits/max_nodes_per_read".to_owned(),
                Value::UInt(limits.read as u64),
            );
            runtime.insert(
                "opcua/limits/max_nodes_per_browse".to_owned(),
                Value::UInt(limits.browse as u64),
            );
            runtime.insert(
                "opcua/limits/source".to_owned(),
                Value::Text(
                    if limits.published {
                        "server"
                    } else {
                        "default"
                    }
                    .to_owned(),
                ),
            );
        }
        Ok(namespaces)
    }

    /// The structure and values below the configured nodes.
    async fn read_tree(
        &mut self,
        snapshot: &mut Snapshot,
        namespaces: &[String],
    ) -> Result<(), CollectError> {
        let mut nodes: BTreeMap<String, Found> = BTreeMap::new();
        for setpoint in &self.cfg.setpoints.clone() {
            let parsed = convert::ConfigNode::parse(&setpoint.node).ok_or_else(|| {
                self.local(format!(
                    "setpoint {:?}: {:?} is not a NodeId",
                    setpoint.name, setpoint.node
                ))
            })?;
            match parsed.resolve(namespaces) {
                Ok(id) => {
                    let key = convert::node_key(&id, namespaces);
                    let found = nodes.entry(key).or_default();
                    found.id = Some(id);
                    found.root = true;
                }
                Err(_) => {
                    // The server's own list of namespaces does not have it: absent, as the
                    // server says.
                    let path = format!("opcua/node/{}/node_class", setpoint.node);
                    if snapshot.get(&path).is_none() {
                        self.insert(
                            snapshot,
                            path,
                            Class::Program,
                            Value::Text(ABSENT_NAMESPACE.to_owned()),
                        )?;
                    }
                }
            }
        }
        let mut frontier: Vec<String> = nodes.keys().cloned().collect();
        let mut absent_roots: BTreeSet<String> = BTreeSet::new();
        for depth in 0..=MAX_DEPTH {
            let walkable: Vec<(String, NodeId)> = frontier
                .iter()
                .filter_map(|key| {
                    let found = nodes.get(key)?;
                    let walk = matches!(
                        found.class,
                        None | Some(NodeClass::Object | NodeClass::Variable | NodeClass::View)
                    );
                    walk.then(|| found.id.clone().map(|id| (key.clone(), id)))
                        .flatten()
                })
                .collect();
            if walkable.is_empty() {
                break;
            }
            if depth == MAX_DEPTH {
                let key = walkable.first().map(|(k, _)| k.clone()).unwrap_or_default();
                return Err(self.scope().bound(
                    format!("Browse of {key}"),
                    format!("nodes nested more than {MAX_DEPTH} levels below a configured node"),
                ));
            }
            let browsed = self.browse_all(&walkable).await?;
            self.walk.references = self
                .walk
                .references
                .saturating_add(browsed.iter().flatten().map(Vec::len).sum());
            let mut next = Vec::new();
            for ((parent, _), refs) in walkable.iter().zip(browsed) {
                let Some(refs) = refs else {
                    let is_root = nodes.get(parent).is_some_and(|f| f.root);
                    if is_root && depth == 0 {
                        absent_roots.insert(parent.clone());
                        continue;
                    }
                    return Err(self.refused(
                        format!("Browse of {parent}"),
                        "server answered BadNodeIdUnknown for a node its own Browse lists (a \
                         contradiction)"
                            .to_owned(),
                    ));
                };
                for r in refs {
                    if !r.is_forward || r.node_id.server_index != 0 {
                        continue;
                    }
                    let (child_key, child_id) = expanded_key(&r.node_id, namespaces);
                    let is_new = !nodes.contains_key(&child_key);
                    if is_new && nodes.len() >= MAX_NODES {
                        return Err(self.scope().bound(
                            format!("Browse of {parent}"),
                            format!(
                                "more than {MAX_NODES} nodes below the configured setpoint \
                                 nodes; configure narrower nodes"
                            ),
                        ));
                    }
                    let found = nodes.entry(child_key.clone()).or_default();
                    found.parents.insert(parent.clone());
                    if is_new {
                        found.id = child_id;
                        found.class = Some(r.node_class);
                        found.browse_name = Some(convert::browse_name(&r.browse_name, namespaces));
                        if !r.type_definition.is_null() {
                            found.type_definition =
                                Some(expanded_key(&r.type_definition, namespaces).0);
                        }
                        if found.id.is_some() {
                            next.push(child_key);
                        }
                    }
                }
            }
            frontier = next;
        }
        for key in &absent_roots {
            nodes.remove(key);
            self.insert(
                snapshot,
                format!("opcua/node/{key}/node_class"),
                Class::Program,
                Value::Text(ABSENT.to_owned()),
            )?;
        }
        self.read_attributes(snapshot, namespaces, &nodes).await
    }

    /// Reads the attributes of every node found (roots 6 operations: class and name are not
    /// known from a browse; variables 4) and inserts the items.
    async fn read_attributes(
        &mut self,
        snapshot: &mut Snapshot,
        namespaces: &[String],
        nodes: &BTreeMap<String, Found>,
    ) -> Result<(), CollectError> {
        let mut ops = Vec::new();
        let mut plan: Vec<(String, Vec<AttributeId>)> = Vec::new();
        for (key, found) in nodes {
            let Some(id) = &found.id else { continue };
            let mut attrs = Vec::new();
            if found.root {
                attrs.extend([AttributeId::NodeClass, AttributeId::BrowseName]);
            }
            if found.root || found.class == Some(NodeClass::Variable) {
                attrs.extend([
                    AttributeId::DataType,
                    AttributeId::ValueRank,
                    AttributeId::ArrayDimensions,
                    AttributeId::Value,
                ]);
            }
            for a in &attrs {
                ops.push(ReadValueId {
                    node_id: id.clone(),
                    attribute_id: *a as u32,
                    ..Default::default()
                });
            }
            plan.push((key.clone(), attrs));
        }
        let values = self.read_all(&ops).await?;
        let mut values = values.into_iter();
        let mut read: BTreeMap<String, BTreeMap<u32, DataValue>> = BTreeMap::new();
        for (key, attrs) in plan {
            let entry = read.entry(key).or_default();
            for a in attrs {
                entry.insert(a as u32, values.next().unwrap_or_default());
            }
        }
        // Values the server refused to read with an access status: kept as "not available"
        // only when the node's own UserAccessLevel agrees (see `refused_values`).
        let mut access_refused: Vec<(String, NodeId, StatusCode)> = Vec::new();
        for (key, found) in nodes {
            let attrs = read.remove(key).unwrap_or_default();
            let attr = |a: AttributeId| attrs.get(&(a as u32));
            let node = |attribute: &str| format!("opcua/node/{key}/{attribute}");
            let request = |a: AttributeId| format!("Read of {} of {key}", attribute_name(a as u32));
            let class = if found.root {
                let dv = self.listed_attribute(
                    &request(AttributeId::NodeClass),
                    attr(AttributeId::NodeClass),
                )?;
                match dv.value {
                    Some(Variant::Int32(n)) => NodeClass::try_from(n).ok(),
                    _ => None,
                }
                .ok_or_else(|| {
                    self.malformed(
                        request(AttributeId::NodeClass),
                        format!("expected a NodeClass, got {:?}", dv.value),
                    )
                })?
            } else {
                found.class.unwrap_or(NodeClass::Unspecified)
            };
            self.insert(
                snapshot,
                node("node_class"),
                Class::Program,
                Value::Text(class_name(class)),
            )?;
            let browse = if found.root {
                let dv = self.listed_attribute(
                    &request(AttributeId::BrowseName),
                    attr(AttributeId::BrowseName),
                )?;
                match &dv.value {
                    Some(Variant::QualifiedName(q)) => convert::browse_name(q, namespaces),
                    other => {
                        return Err(self.malformed(
                            request(AttributeId::BrowseName),
                            format!("expected a QualifiedName, got {other:?}"),
                        ));
                    }
                }
            } else {
                found.browse_name.clone().unwrap_or_default()
            };
            let browse = convert::text(&browse).map_err(|convert::Oversize(why)| {
                self.scope()
                    .bound(format!("Browse of {key}"), format!("browse name: {why}"))
            })?;
            self.insert(
                snapshot,
                node("browse_name"),
                Class::Program,
                Value::Text(browse),
            )?;
            if let Some(t) = &found.type_definition {
                self.insert(
                    snapshot,
                    node("type_definition"),
                    Class::Program,
                    Value::Text(t.clone()),
                )?;
            }
            if !found.parents.is_empty() {
                self.insert(
                    snapshot,
                    node("parents"),
                    Class::Program,
                    Value::List(found.parents.iter().cloned().map(Value::Text).collect()),
                )?;
            }
            if class != NodeClass::Variable {
                continue;
            }
            let data_type = {
                let dv = self.listed_attribute(
                    &request(AttributeId::DataType),
                    attr(AttributeId::DataType),
                )?;
                match &dv.value {
                    Some(Variant::NodeId(id)) => convert::data_type_name(id, namespaces),
                    other => {
                        return Err(self.malformed(
                            request(AttributeId::DataType),
                            format!("expected a NodeId, got {other:?}"),
                        ));
                    }
                }
            };
            self.insert(
                snapshot,
                node("data_type"),
                Class::Program,
                Value::Text(data_type),
            )?;
            let rank = {
                let dv = self.listed_attribute(
                    &request(AttributeId::ValueRank),
                    attr(AttributeId::ValueRank),
                )?;
                match dv.value {
                    Some(Variant::Int32(n)) => Value::Int(i64::from(n)),
                    other => {
                        return Err(self.malformed(
                            request(AttributeId::ValueRank),
                            format!("expected an Int32, got {other:?}"),
                        ));
                    }
                }
            };
            self.insert(snapshot, node("value_rank"), Class::Program, rank)?;
            // ArrayDimensions is optional: BadAttributeIdInvalid is the server saying the
            // node has none, which is what an empty one says too.
            let dims = match attr(AttributeId::ArrayDimensions) {
                Some(dv) if dv.status() == StatusCode::BadAttributeIdInvalid => Value::Null,
                dv => {
                    let dv = self.listed_attribute(&request(AttributeId::ArrayDimensions), dv)?;
                    self.typed(&request(AttributeId::ArrayDimensions), &dv)?
                }
            };
            self.insert(snapshot, node("array_dimensions"), Class::Program, dims)?;
            let value_request = request(AttributeId::Value);
            let dv = attr(AttributeId::Value).cloned().unwrap_or_default();
            let status = dv.status();
            let value = if matches!(
                status,
                StatusCode::BadNotReadable | StatusCode::BadUserAccessDenied
            ) && !found.root
            {
                if let Some(id) = &found.id {
                    access_refused.push((key.clone(), id.clone(), status));
                }
                continue;
            } else {
                let dv = self.listed_attribute(&value_request, Some(&dv))?;
                self.typed(&value_request, &dv)?
            };
            self.insert(
                snapshot,
                format!("opcua/value/{key}"),
                Class::Setpoint,
                value,
            )?;
        }
        self.refused_values(snapshot, access_refused).await
    }

    /// Values refused with BadNotReadable or BadUserAccessDenied, below (not at) a configured
    /// node: a stable capability refusal when the node's UserAccessLevel agrees (no
    /// CurrentRead: the server's own model says this user may not read it), recorded as "not
    /// available" with a text that is the same every poll; a contradiction otherwise. One more
    /// Read, sent only when there is such a value.
    async fn refused_values(
        &mut self,
        snapshot: &mut Snapshot,
        refused: Vec<(String, NodeId, StatusCode)>,
    ) -> Result<(), CollectError> {
        if refused.is_empty() {
            return Ok(());
        }
        let ops: Vec<ReadValueId> = refused
            .iter()
            .map(|(_, id, _)| ReadValueId {
                node_id: id.clone(),
                attribute_id: AttributeId::UserAccessLevel as u32,
                ..Default::default()
            })
            .collect();
        let levels = self.read_all(&ops).await?;
        for ((key, _, status), level) in refused.into_iter().zip(levels) {
            let request = format!("Read of UserAccessLevel of {key}");
            let level = self.listed_attribute(&request, Some(&level))?;
            let readable = match level.value {
                Some(Variant::Byte(bits)) => bits & 1 != 0,
                other => {
                    return Err(self.malformed(request, format!("expected a Byte, got {other:?}")));
                }
            };
            if readable {
                return Err(self.refused(
                    format!("Read of Value of {key}"),
                    format!(
                        "server answered {} although the node's UserAccessLevel grants \
                         CurrentRead (a contradiction)",
                        convert::status_text(status)
                    ),
                ));
            }
            self.insert(
                snapshot,
                format!("opcua/value/{key}"),
                Class::Setpoint,
                Value::unavailable(
                    "the server does not let this user read it (UserAccessLevel without \
                     CurrentRead)",
                ),
            )?;
        }
        Ok(())
    }

    /// An attribute of a node the walk found (or the config names and the browse confirmed):
    /// Good, or the capture's error. BadNodeIdUnknown here contradicts the browse.
    fn listed_attribute(
        &self,
        request: &str,
        dv: Option<&DataValue>,
    ) -> Result<DataValue, CollectError> {
        let Some(dv) = dv else {
            return Err(self.malformed(request.to_owned(), "no value in the answer".to_owned()));
        };
        let status = dv.status();
        if status.is_good() {
            return Ok(dv.clone());
        }
        if status == StatusCode::BadNodeIdUnknown {
            return Err(self.refused(
                request.to_owned(),
                "server answered BadNodeIdUnknown for a node its own Browse lists (a \
                 contradiction)"
                    .to_owned(),
            ));
        }
        Err(self.operation_error(request.to_owned(), status))
    }

    /// A Good attribute value as a typed item value; a value beyond the size bounds is a bound.
    fn typed(&self, request: &str, dv: &DataValue) -> Result<Value, CollectError> {
        match &dv.value {
            None => Ok(Value::Null),
            Some(v) => convert::variant(v)
                .map_err(|convert::Oversize(why)| self.scope().bound(request.to_owned(), why)),
        }
    }

    async fn capture_once(&mut self) -> Result<(Snapshot, BTreeMap<String, Value>), CollectError> {
        self.ensure_open().await?;
        self.walk = Walk::default();
        let mut snapshot = Snapshot::new();
        let mut runtime = BTreeMap::new();
        let namespaces = self.read_identity(&mut snapshot, &mut runtime).await?;
        self.read_tree(&mut snapshot, &namespaces).await?;
        Ok((snapshot, runtime))
    }
}

/// The name of an attribute in requests (`Read of Value of <node>`).
fn attribute_name(id: u32) -> &'static str {
    match AttributeId::from_u32(id) {
        Ok(AttributeId::NodeClass) => "NodeClass",
        Ok(AttributeId::BrowseName) => "BrowseName",
        Ok(AttributeId::DataType) => "DataType",
        Ok(AttributeId::ValueRank) => "ValueRank",
        Ok(AttributeId::ArrayDimensions) => "ArrayDimensions",
        Ok(AttributeId::Value) => "Value",
        Ok(AttributeId::UserAccessLevel) => "UserAccessLevel",
        _ => "an attribute",
    }
}

/// What one capture's walk has taken in so far, against the bounds.
#[derive(Debug, Default, Clone, Copy)]
struct Walk {
    /// References received for finished browse levels.
    references: usize,
    /// BrowseNext requests sent.
    browse_next: usize,
}

/// A ReadValueId for the Value attribute.
fn value_of(node_id: NodeId) -> ReadValueId {
    ReadValueId {
        node_id,
        attribute_id: AttributeId::Value as u32,
        ..Default::default()
    }
}

/// The key of an ExpandedNodeId (with its URI when the reference carries one) and the NodeId
/// to browse it with (when its namespace is known here).
fn expanded_key(id: &ExpandedNodeId, namespaces: &[String]) -> (String, Option<NodeId>) {
    let uri = id.namespace_uri.as_ref();
    if uri.is_empty() {
        return (
            convert::node_key(&id.node_id, namespaces),
            Some(id.node_id.clone()),
        );
    }
    let index = namespaces
        .iter()
        .position(|u| u == uri)
        .and_then(|i| u16::try_from(i).ok());
    let node = index.map(|namespace| NodeId {
        namespace,
        identifier: id.node_id.identifier.clone(),
    });
    let key = match &node {
        Some(n) => convert::node_key(n, namespaces),
        None => format!("nsu={uri};{}", id.node_id.identifier),
    };
    (key, node)
}

fn class_name(class: NodeClass) -> String {
    match class {
        NodeClass::Object => "Object",
        NodeClass::Variable => "Variable",
        NodeClass::Method => "Method",
        NodeClass::ObjectType => "ObjectType",
        NodeClass::VariableType => "VariableType",
        NodeClass::ReferenceType => "ReferenceType",
        NodeClass::DataType => "DataType",
        NodeClass::View => "View",
        NodeClass::Unspecified => "Unspecified",
    }
    .to_owned()
}

/// The PKI folder used unless [`OpcuaCollector::with_pki_dir`] says otherwise: below the
/// system temp dir, named after the asset. For tests only: an agent keeps its certificate and
/// pins in its data directory.
pub fn default_pki_dir(asset: &str) -> PathBuf {
    std::env::temp_dir().join(format!("otdrift-opcua-pki-{asset}"))
}

#[async_trait]
impl Collector for OpcuaCollector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::Opcua
    }

    async fn identify(&mut self) -> Result<Vec<Item>, CollectError> {
        let span = tracing::info_span!("identify", asset = %self.asset, protocol = "opcua");
        async {
            self.ensure_open().await?;
            let mut snapshot = Snapshot::new();
            let mut runtime = BTreeMap::new();
            self.read_identity(&mut snapshot, &mut runtime).await?;
            Ok(snapshot.items().cloned().collect())
        }
        .instrument(span)
        .await
    }

    async fn capture(&mut self) -> Result<Capture, CollectError> {
        let span = tracing::info_span!("capture", asset = %self.asset, protocol = "opcua");
        crate::timed_capture(span, async {
            self.stats = CaptureStats::default();
            self.lost = false;
            self.in_flight = true;
            let pooled = self.conn.is_some();
            let mut result = self.capture_once().await;
            if result.is_err() && pooled && self.lost && self.stats.connects == 0 {
                tracing::debug!("pooled session lost, reconnecting");
                self.conn = None;
                self.lost = false;
                result = self.capture_once().await;
            }
            self.in_flight = false;
            let (snapshot, runtime) = result?;
            let mut runtime = runtime;
            let operating_state =
                crate::split_operating_state(&mut runtime, &["opcua/server/state"]);
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
        if std::mem::take(&mut self.in_flight) {
            // The capture was abandoned at its deadline: the server is in an unknown state
            // (slow, stuck), so do not wait on it again; dropping the connection ends the
            // session on its side.
            self.conn = None;
            return;
        }
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(self.timeout, conn.live.session.disconnect()).await;
        }
    }
}

/// The setpoint entry covering an item path (`opcua/value/<node>` or
/// `opcua/node/<node>/<attribute>`): the configured node itself or, for string NodeIds, the
/// most specific configured node whose identifier the item's extends (`s=Mixer.Setpoints`
/// covers `s=Mixer.Setpoints.MixSpeed`). Numeric children of a numeric folder carry no name.
pub fn setpoint_label(cfg: &OpcuaConfig, path: &str) -> Option<String> {
    let roots: Vec<(String, String)> = cfg
        .setpoints
        .iter()
        .map(|s| (s.name.clone(), s.node.clone()))
        .collect();
    convert::label(&roots, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_and_browse_requests_exist() {
        let ops = [value_of(NodeId::new(0, 2255u32))];
        let nodes = [BrowseDescription::default()];
        let points = [ByteString::from(vec![1u8])];
        for request in [
            Request::Read(&ops),
            Request::Browse(&nodes),
            Request::BrowseNext {
                points: &points,
                release: false,
            },
            Request::BrowseNext {
                points: &points,
                release: true,
            },
        ] {
            assert!(
                matches!(request.service(), "Read" | "Browse" | "BrowseNext"),
                "{}",
                request.service()
            );
            assert_eq!(request.len(), 1);
        }
    }

    #[test]
    fn endpoints_must_carry_what_every_server_has() {
        use opcua::types::{EndpointDescription, MessageSecurityMode};
        let mut endpoint = EndpointDescription::default();
        endpoint.server.application_uri = "urn:plc".into();
        endpoint.security_mode = MessageSecurityMode::None;
        // Security none without a certificate: allowed (the thumbprint is "not available").
        assert_eq!(connection::check_endpoint(&endpoint, &[]), Ok(()));
        endpoint.security_mode = MessageSecurityMode::SignAndEncrypt;
        let refused = connection::check_endpoint(&endpoint, &[]).expect_err("no certificate");
        assert!(refused.contains("without a certificate"), "{refused}");
        assert_eq!(connection::check_endpoint(&endpoint, &[0x30, 0x00]), Ok(()));
        endpoint.server.application_uri = "".into();
        let refused = connection::check_endpoint(&endpoint, &[0x30, 0x00]).expect_err("no URI");
        assert!(refused.contains("ApplicationUri"), "{refused}");
    }

    #[test]
    fn certificates_are_cut_to_the_first_element_and_hashed() {
        let cert = [0x30, 0x03, 0x02, 0x01, 0x05];
        let mut chain = cert.to_vec();
        chain.extend_from_slice(&[0x30, 0x00]);
        assert_eq!(connection::first_der(&chain), &cert);
        assert_eq!(
            connection::first_der(&[0x30, 0x82, 0xff]),
            &[0x30, 0x82, 0xff]
        );
        assert_eq!(connection::first_der(&[]), &[] as &[u8]);
        assert_eq!(
            connection::thumbprint(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn pins_are_kept_per_asset_and_changes_reported() {
        let dir = std::env::temp_dir().join(format!("otdrift-pin-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let check =
            |asset: &str, der: &[u8]| connection::check_pin(&dir, asset, der).expect("pin store");
        assert_eq!(check("a", b"one"), Pin::FirstUse);
        assert_eq!(check("a", b"one"), Pin::Matches);
        assert_eq!(check("b", b"two"), Pin::FirstUse);
        match check("a", b"two") {
            Pin::Changed { pinned, rejected } => {
                assert_eq!(pinned, connection::thumbprint(b"one"));
                assert_eq!(std::fs::read(&rejected).expect("saved"), b"two");
            }
            other => panic!("expected a change, got {other:?}"),
        }
        // The pin stays: a changed certificate is never trusted silently.
        assert_eq!(check("a", b"one"), Pin::Matches);
        assert_eq!(check("a", b""), Pin::NoCertificate);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn password_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("otdrift-pw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = connection::read_password(&file).expect_err("world readable");
        assert!(refused.contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(connection::read_password(&file).as_deref(), Ok("s3cret"));
        std::fs::write(&file, "").expect("write");
        assert!(connection::read_password(&file).is_err());
        assert!(connection::read_password(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
