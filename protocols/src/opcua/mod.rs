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
//! # What a server may not reveal
//!
//! A field or node the server refuses (an access-restricted user, BadNotReadable), answers
//! empty (BuildInfo left blank by a firmware) or does not have becomes one stable item whose
//! value is `not available: <reason>` (e.g. `server answered BadUserAccessDenied`), so the
//! digest stays stable and the gap visible. A configured node the server does not know is
//! recorded as `opcua/node/<node>` = not available. A server that refuses BrowseNext or
//! ignores continuation points gets `opcua/node/<node>/children` = not available for the
//! nodes whose references did not fit in one answer.
//!
//! # Cost and bounds
//!
//! A capture sends one Read for identity, one Browse per tree level (plus BrowseNext for long
//! reference lists) and ⌈operations / MaxNodesPerRead⌉ Reads for attributes and values, where
//! a variable costs 4 operations (data type, value rank, array dimensions, value) and a
//! configured root 6. MaxNodesPerRead and MaxNodesPerBrowse come from the server's
//! OperationLimits, read once per session (0 = no limit → 10 000; not published → 100); a
//! server that answers BadTooManyOperations anyway gets half the batch size until it accepts.
//! The session is kept between captures; a session the server dropped is replaced once,
//! transparently. Connecting costs GetEndpoints, CreateSession, ActivateSession, one
//! keep-alive Read by async-opcua and one Read of the limits. Every request runs under the
//! asset's `timeout_ms`. Bounds: 50 000 nodes per capture (more is an error asking for a
//! narrower node), 32 levels below a configured node (deeper nodes are recorded as not
//! walked), 1 000 BrowseNext rounds, messages of 16 MiB, arrays of 100 000 elements, strings
//! of 65 535 bytes, byte strings of 1 MiB.
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
//! readable by group or others. Without them the session is anonymous. The config accepts a
//! user name only with `security = "sign-and-encrypt"` unless the asset sets
//! `allow_unencrypted_password = true` (otdrift-config explains why the pin is no substitute).
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

/// Largest message accepted from a server.
pub(crate) const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// Most chunks in one message.
pub(crate) const MAX_CHUNK_COUNT: usize = 512;
/// Longest array accepted from a server (reference lists, values).
pub(crate) const MAX_ARRAY_LEN: usize = 100_000;
/// Longest string accepted from a server.
pub(crate) const MAX_STRING_LEN: usize = 65_535;
/// Longest byte string accepted from a server (certificates, ByteString values).
pub(crate) const MAX_BYTE_STRING_LEN: usize = 1024 * 1024;
/// Most nodes one capture walks.
pub const MAX_NODES: usize = 50_000;
/// Deepest level walked below a configured node.
pub const MAX_DEPTH: usize = 32;
/// Most BrowseNext rounds in one walk step.
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
            | StatusCode::BadEncodingLimitsExceeded
            | StatusCode::BadResponseTooLarge
            | StatusCode::BadUnknownResponse
            | StatusCode::BadDataEncodingInvalid
            | StatusCode::BadTcpMessageTooLarge
            | StatusCode::BadTcpMessageTypeInvalid
            | StatusCode::BadSequenceNumberInvalid
            | StatusCode::BadSecurityChecksFailed
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
    depth: usize,
    root: bool,
    children: Option<String>,
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
        self.refused(
            request,
            format!("server answered {}", convert::status_text(status)),
        )
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
            Ok(Err(e)) if e.status() == StatusCode::BadTooManyOperations => {
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

    /// Reads MaxNodesPerRead and MaxNodesPerBrowse (once per session).
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
    /// per operation, in order. A BadTooManyOperations halves the batch and retries.
    async fn read_all(&mut self, ops: &[ReadValueId]) -> Result<Vec<DataValue>, CollectError> {
        let mut out = Vec::with_capacity(ops.len());
        let mut at = 0;
        while at < ops.len() {
            let batch = self.limits().read.max(1);
            let end = at.saturating_add(batch).min(ops.len());
            let chunk = ops.get(at..end).unwrap_or_default();
            let request = Request::Read(chunk);
            let describe = request.describe();
            let too_many = match self.call(request).await {
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
                        true
                    } else {
                        out.extend(values);
                        at = end;
                        false
                    }
                }
                Ok(Answer::Browsed(_)) => {
                    return Err(self.malformed(describe, "a browse answer to a read".to_owned()));
                }
                Err(Fault::Status(_)) => true,
                Err(Fault::Fatal(e)) => return Err(e),
            };
            if too_many {
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
        }
        Ok(out)
    }

    /// Browses nodes (forward hierarchical references, all node classes) in batches of
    /// MaxNodesPerBrowse and follows continuation points with BrowseNext. Per node: the
    /// references, or the reason they are incomplete, plus references found before that.
    async fn browse_all(
        &mut self,
        ids: &[NodeId],
    ) -> Result<Vec<(Vec<ReferenceDescription>, Option<String>)>, CollectError> {
        let mut out: Vec<(Vec<ReferenceDescription>, Option<String>)> =
            ids.iter().map(|_| (Vec::new(), None)).collect();
        let mut at = 0;
        while at < ids.len() {
            let end = at
                .saturating_add(self.limits().browse.max(1))
                .min(ids.len());
            let chunk: Vec<BrowseDescription> = ids
                .get(at..end)
                .unwrap_or_default()
                .iter()
                .map(|id| BrowseDescription {
                    node_id: id.clone(),
                    browse_direction: BrowseDirection::Forward,
                    reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                    include_subtypes: true,
                    node_class_mask: 0,
                    result_mask: BrowseResultMask::All as u32,
                })
                .collect();
            let request = Request::Browse(&chunk);
            let describe = request.describe();
            let results = match self.call(request).await {
                Ok(Answer::Browsed(results)) => results,
                Ok(Answer::Values(_)) => {
                    return Err(self.malformed(describe, "a read answer to a browse".to_owned()));
                }
                Err(Fault::Status(status)) => {
                    return Err(self.refused(describe, convert::status_text(status)));
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
            for (offset, result) in results.into_iter().enumerate() {
                let index = at + offset;
                let Some(slot) = out.get_mut(index) else {
                    continue;
                };
                if result.status_code.is_bad() {
                    slot.1 = Some(format!(
                        "server answered {}",
                        convert::status_text(result.status_code)
                    ));
                    continue;
                }
                let refs = result.references.unwrap_or_default();
                let seen: BTreeSet<String> = refs.iter().map(|r| r.node_id.to_string()).collect();
                slot.0.extend(refs);
                if !result.continuation_point.is_null_or_empty() {
                    pending.push((index, result.continuation_point, seen));
                }
            }
            self.follow(&mut out, pending).await?;
            at = end;
        }
        Ok(out)
    }

    /// BrowseNext until every continuation point is done; a server that refuses BrowseNext
    /// or repeats itself leaves the node's children marked incomplete.
    async fn follow(
        &mut self,
        out: &mut [(Vec<ReferenceDescription>, Option<String>)],
        mut pending: Vec<(usize, ByteString, BTreeSet<String>)>,
    ) -> Result<(), CollectError> {
        let mut rounds = 0;
        let mut release: Vec<ByteString> = Vec::new();
        while !pending.is_empty() {
            rounds += 1;
            if rounds > MAX_BROWSE_NEXT_ROUNDS {
                for (index, point, _) in pending.drain(..) {
                    if let Some(slot) = out.get_mut(index) {
                        slot.1 = Some(format!(
                            "more than {MAX_BROWSE_NEXT_ROUNDS} BrowseNext rounds: not walked"
                        ));
                    }
                    release.push(point);
                }
                break;
            }
            let batch = self.limits().browse.max(1);
            let mut next = Vec::new();
            for group in pending.chunks(batch) {
                let points: Vec<ByteString> = group.iter().map(|(_, p, _)| p.clone()).collect();
                let request = Request::BrowseNext {
                    points: &points,
                    release: false,
                };
                let describe = request.describe();
                let results = match self.call(request).await {
                    Ok(Answer::Browsed(results)) => results,
                    Ok(Answer::Values(_)) => {
                        return Err(
                            self.malformed(describe, "a read answer to a browse".to_owned())
                        );
                    }
                    Err(Fault::Status(status)) => {
                        for (index, _, _) in group {
                            if let Some(slot) = out.get_mut(*index) {
                                slot.1 = Some(format!(
                                    "BrowseNext refused: {}",
                                    convert::status_text(status)
                                ));
                            }
                        }
                        continue;
                    }
                    Err(Fault::Fatal(CollectError {
                        kind: crate::ErrorKind::Refused(reason),
                        ..
                    })) => {
                        // A service fault for BrowseNext: the server cannot continue.
                        for (index, _, _) in group {
                            if let Some(slot) = out.get_mut(*index) {
                                slot.1 = Some(format!("BrowseNext refused: {reason}"));
                            }
                        }
                        continue;
                    }
                    Err(Fault::Fatal(e)) => return Err(e),
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
                for ((index, _, mut seen), result) in group.iter().cloned().zip(results) {
                    let Some(slot) = out.get_mut(index) else {
                        continue;
                    };
                    if result.status_code.is_bad() {
                        slot.1 = Some(format!(
                            "BrowseNext refused: {}",
                            convert::status_text(result.status_code)
                        ));
                        continue;
                    }
                    let refs = result.references.unwrap_or_default();
                    let before = seen.len();
                    seen.extend(refs.iter().map(|r| r.node_id.to_string()));
                    let progressed = seen.len() > before;
                    let more = !result.continuation_point.is_null_or_empty();
                    if !progressed && (more || !refs.is_empty()) {
                        slot.1 = Some(
                            "BrowseNext repeats references already received (the server does \
                             not honour continuation points)"
                                .to_owned(),
                        );
                        if more {
                            release.push(result.continuation_point);
                        }
                        continue;
                    }
                    slot.0.extend(refs);
                    if more {
                        next.push((index, result.continuation_point, seen));
                    }
                }
            }
            pending = next;
        }
        if !release.is_empty() {
            // Free the server's continuation points; its answer changes nothing here.
            let request = Request::BrowseNext {
                points: &release,
                release: true,
            };
            match self.call(request).await {
                Ok(_) | Err(Fault::Status(_)) => {}
                Err(Fault::Fatal(e)) if matches!(e.kind, crate::ErrorKind::Refused(_)) => {}
                Err(Fault::Fatal(e)) => return Err(e),
            }
        }
        Ok(())
    }

    fn item(&self, path: String, class: Class, value: Value) -> Result<Item, CollectError> {
        Item::new(path, class, value).map_err(|e| self.local(e.to_string()))
    }

    fn insert(
        &self,
        snapshot: &mut Snapshot,
        path: String,
        class: Class,
        value: Value,
    ) -> Result<(), CollectError> {
        let item = self.item(path, class, value)?;
        snapshot.insert(item).map_err(|e| self.local(e.to_string()))
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
        let mut namespaces = Vec::new();
        if namespaces_dv.status().is_bad() {
            self.insert(
                snapshot,
                "opcua/namespace".to_owned(),
                Class::Identity,
                convert::data_value(&namespaces_dv),
            )?;
        } else {
            match &namespaces_dv.value {
                Some(Variant::Array(array)) => {
                    for v in &array.values {
                        namespaces.push(match v {
                            Variant::String(s) => s.as_ref().to_owned(),
                            other => other.to_string(),
                        });
                    }
                }
                other => {
                    return Err(self.malformed(
                        "Read of Server/NamespaceArray".to_owned(),
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
        }
        for (i, (_, field)) in BUILD_INFO_FIELDS.iter().enumerate() {
            let dv = get(i + 1);
            let value = match convert::data_value(&dv) {
                Value::Text(t) if t.is_empty() => {
                    Value::unavailable(format!("server reports an empty {field}"))
                }
                Value::Null => Value::unavailable(format!("server reports no {field}")),
                other => other,
            };
            self.insert(
                snapshot,
                format!("opcua/server/build_info/{field}"),
                Class::Identity,
                value,
            )?;
        }
        let status_base = 1 + BUILD_INFO_FIELDS.len();
        for (offset, name) in ["state", "start_time", "current_time"].iter().enumerate() {
            let value = convert::data_value(&get(status_base + offset));
            let value = match (name, value) {
                (&"state", Value::Int(0)) => Value::Text("Running".to_owned()),
                (_, other) => other,
            };
            runtime.insert(format!("opcua/server/{name}"), value);
        }
        if let Some(conn) = self.conn.as_ref() {
            let facts = &conn.server;
            let app = if facts.application_uri.is_empty() {
                Value::unavailable("server reports no application URI")
            } else {
                Value::Text(facts.application_uri.clone())
            };
            let thumb = match &facts.thumbprint {
                Some(t) => Value::Text(t.clone()),
                None => Value::unavailable("server presents no application certificate"),
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
            let resolved = convert::ConfigNode::parse(&setpoint.node)
                .ok_or_else(|| format!("{:?} is not a NodeId", setpoint.node))
                .and_then(|n| n.resolve(namespaces));
            match resolved {
                Ok(id) => {
                    let key = convert::node_key(&id, namespaces);
                    let found = nodes.entry(key).or_default();
                    found.id = Some(id);
                    found.root = true;
                }
                Err(reason) => {
                    let path = format!("opcua/node/{}", setpoint.node);
                    if snapshot.get(&path).is_none() {
                        self.insert(snapshot, path, Class::Program, Value::unavailable(reason))?;
                    }
                }
            }
        }
        let mut frontier: Vec<String> = nodes.keys().cloned().collect();
        let mut missing_roots: BTreeSet<String> = BTreeSet::new();
        for depth in 0..=MAX_DEPTH {
            let walkable: Vec<String> = frontier
                .iter()
                .filter(|key| {
                    nodes.get(*key).is_some_and(|f| {
                        matches!(
                            f.class,
                            None | Some(NodeClass::Object | NodeClass::Variable | NodeClass::View)
                        )
                    })
                })
                .cloned()
                .collect();
            if walkable.is_empty() {
                break;
            }
            if depth == MAX_DEPTH {
                for key in &walkable {
                    if let Some(found) = nodes.get_mut(key) {
                        found.children = Some(format!(
                            "deeper than {MAX_DEPTH} levels below a configured node: not walked"
                        ));
                    }
                }
                break;
            }
            let ids: Vec<NodeId> = walkable
                .iter()
                .filter_map(|k| nodes.get(k).and_then(|f| f.id.clone()))
                .collect();
            if ids.len() != walkable.len() {
                return Err(self.local("internal: a walked node has no id".to_owned()));
            }
            let browsed = self.browse_all(&ids).await?;
            let mut next = Vec::new();
            for (parent, (refs, note)) in walkable.iter().zip(browsed) {
                if let Some(note) = note {
                    let is_root = nodes.get(parent).is_some_and(|f| f.root);
                    if is_root && depth == 0 && note.contains("BadNodeIdUnknown") {
                        missing_roots.insert(parent.clone());
                        continue;
                    }
                    if let Some(found) = nodes.get_mut(parent) {
                        found.children = Some(note);
                    }
                }
                for r in refs {
                    if !r.is_forward || r.node_id.server_index != 0 {
                        continue;
                    }
                    let (child_key, child_id) = expanded_key(&r.node_id, namespaces);
                    let is_new = !nodes.contains_key(&child_key);
                    if is_new && nodes.len() >= MAX_NODES {
                        return Err(self.local(format!(
                            "more than {MAX_NODES} nodes below the configured setpoint nodes; configure narrower nodes"
                        )));
                    }
                    let found = nodes.entry(child_key.clone()).or_default();
                    found.parents.insert(parent.clone());
                    if is_new {
                        found.id = child_id;
                        found.depth = depth + 1;
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
        for key in &missing_roots {
            nodes.remove(key);
            self.insert(
                snapshot,
                format!("opcua/node/{key}"),
                Class::Program,
                Value::unavailable("server answered BadNodeIdUnknown"),
            )?;
        }

        // Attributes: roots 6 operations (class and name unknown), variables 4.
        let mut ops = Vec::new();
        let mut plan: Vec<(String, Vec<AttributeId>)> = Vec::new();
        for (key, found) in &nodes {
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
        for (key, found) in &nodes {
            let attrs = read.remove(key).unwrap_or_default();
            let attr = |a: AttributeId| attrs.get(&(a as u32));
            let class = if found.root {
                match attr(AttributeId::NodeClass).map(|dv| (dv.status(), dv.value.as_ref())) {
                    Some((s, Some(Variant::Int32(n)))) if s.is_good() => {
                        NodeClass::try_from(*n).ok()
                    }
                    _ => None,
                }
            } else {
                found.class
            };
            let node = |attribute: &str| format!("opcua/node/{key}/{attribute}");
            self.insert(
                snapshot,
                node("node_class"),
                Class::Program,
                class.map_or_else(
                    || Value::unavailable("node class not readable"),
                    |c| Value::Text(class_name(c)),
                ),
            )?;
            let browse = if found.root {
                match attr(AttributeId::BrowseName).map(|dv| (dv.status(), dv.value.as_ref())) {
                    Some((s, Some(Variant::QualifiedName(q)))) if s.is_good() => {
                        Value::Text(convert::browse_name(q, namespaces))
                    }
                    Some((s, _)) if s.is_bad() => {
                        Value::unavailable(format!("server answered {}", convert::status_text(s)))
                    }
                    _ => Value::unavailable("browse name not readable"),
                }
            } else {
                found.browse_name.clone().map_or(Value::Null, Value::Text)
            };
            self.insert(snapshot, node("browse_name"), Class::Program, browse)?;
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
            if let Some(note) = &found.children {
                self.insert(
                    snapshot,
                    node("children"),
                    Class::Program,
                    Value::unavailable(note.clone()),
                )?;
            }
            if class != Some(NodeClass::Variable) {
                continue;
            }
            let data_type =
                match attr(AttributeId::DataType).map(|dv| (dv.status(), dv.value.as_ref())) {
                    Some((s, Some(Variant::NodeId(id)))) if s.is_good() => {
                        Value::Text(convert::data_type_name(id, namespaces))
                    }
                    Some((_, _)) => {
                        attr(AttributeId::DataType).map_or(Value::Null, convert::data_value)
                    }
                    None => Value::Null,
                };
            self.insert(snapshot, node("data_type"), Class::Program, data_type)?;
            let rank = attr(AttributeId::ValueRank).map_or(Value::Null, convert::data_value);
            self.insert(snapshot, node("value_rank"), Class::Program, rank)?;
            let dims = attr(AttributeId::ArrayDimensions).map_or(Value::Null, convert::data_value);
            self.insert(snapshot, node("array_dimensions"), Class::Program, dims)?;
            let value = attr(AttributeId::Value).map_or(Value::Null, convert::data_value);
            self.insert(
                snapshot,
                format!("opcua/value/{key}"),
                Class::Setpoint,
                value,
            )?;
        }
        Ok(())
    }

    async fn capture_once(&mut self) -> Result<(Snapshot, BTreeMap<String, Value>), CollectError> {
        self.ensure_open().await?;
        let mut snapshot = Snapshot::new();
        let mut runtime = BTreeMap::new();
        let namespaces = self.read_identity(&mut snapshot, &mut runtime).await?;
        self.read_tree(&mut snapshot, &namespaces).await?;
        Ok((snapshot, runtime))
    }
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

    async fn connect(&mut self) -> Result<(), CollectError> {
        let span = tracing::info_span!("connect", asset = %self.asset, protocol = "opcua");
        async { self.ensure_open().await }.instrument(span).await
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
            let pooled = self.conn.is_some();
            let mut result = self.capture_once().await;
            if result.is_err() && pooled && self.lost && self.stats.connects == 0 {
                tracing::debug!("pooled session lost, reconnecting");
                self.conn = None;
                self.lost = false;
                result = self.capture_once().await;
            }
            let (snapshot, runtime) = result?;
            Ok(Capture {
                snapshot,
                runtime,
                stats: self.stats,
            })
        })
        .await
    }

    async fn close(&mut self) {
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
