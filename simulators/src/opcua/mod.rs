//! A simulated OPC UA server (opc.tcp) that behaves like a PLC's embedded server.
//!
//! It exists so that otdrift's tests, `otdrift demo` and test rigs (`otdrift sim opcua`)
//! have an OPC UA server to read, to drift and to prove things about: every service call is
//! logged (see [`crate::request_log`] and "Request log" below), so a test can assert that
//! otdrift never sent a Write, Call or node-management request.
//!
//! It is an [async-opcua](https://crates.io/crates/async-opcua) server (secure channels,
//! sessions, security policies and user authentication are async-opcua's) with one node
//! manager of ours that owns every node: a subset of namespace 0 (Root, Objects, the Server
//! object with ServerArray, NamespaceArray, ServerStatus and its BuildInfo, ServiceLevel,
//! ServerCapabilities with MaxBrowseContinuationPoints and OperationLimits/MaxNodesPerRead and
//! MaxNodesPerBrowse) and the PLC's folders and variables from the state.
//!
//! # Endpoints and security
//!
//! The endpoint URL is `opc.tcp://<ip:port>/` (path `/`). The server offers, per the state,
//! security mode `None` and `Sign`/`SignAndEncrypt` with the policies Basic256Sha256,
//! Aes128Sha256RsaOaep and Aes256Sha256RsaPss, anonymous and/or user name/password
//! sessions. Client certificates are trusted automatically (a simulator). The server's own
//! application certificate (RSA 2048, self-signed, application URI and `localhost`,
//! `127.0.0.1` as alternative names) is made on first start and reused: within a process for
//! every start of the same state (clones share it), across processes when the state names a
//! `pki_dir`. The `new-certificate` quirk makes every start present a new certificate.
//!
//! # Address space
//!
//! The PLC's nodes live in the namespace `namespace_uri` (index 2, or later when
//! `extra_namespaces` are listed before it), as string NodeIds: the node `Mixer.Setpoints.Speed`
//! is `ns=2;s=Mixer.Setpoints.Speed`, its browse name `2:Speed`, its parent the folder
//! `Mixer.Setpoints` (a dot separates path segments); top-level nodes hang under Objects.
//! Folders are `FolderType` objects organizing their children; variables are
//! `BaseDataVariableType` with a built-in data type, value rank -1 (scalar) or 1 (array, with
//! ArrayDimensions), AccessLevel CurrentRead. References are browsed in identifier order.
//!
//! # State file
//!
//! TOML; unknown keys are refused so typos do not go unnoticed.
//!
//! ```toml
//! tick_ms = 1000                  # default 1000; how often ticking variables move (0 = only on `tick`)
//! application_name = "Mixer PLC"  # the server's application name and certificate CN
//! application_uri = "urn:plc:mixer"          # the server's application URI (namespace 1)
//! namespace_uri = "urn:plc:mixer:program"    # the PLC's namespace
//! extra_namespaces = ["urn:vendor:extras"]   # optional, placed before the PLC's namespace
//! pki_dir = "sim-pki"             # optional; keeps the server certificate across processes
//!                                 # (relative to the state file)
//! node_version = false            # true: every PLC folder has a NodeVersion property
//!                                 # (`<folder>#NodeVersion`, String, HasProperty) that moves
//!                                 # when a child is added to or removed from it
//!
//! [build_info]                    # the Server object's BuildInfo; all six fields required
//! product_uri = "urn:vendor:plc"
//! manufacturer_name = "Vendor"
//! product_name = "PLC 1516-3"
//! software_version = "V3.1.2"
//! build_number = "3.1.2.4711"
//! build_date = "2024-02-01T00:00:00Z"   # RFC 3339
//!
//! [limits]                        # advertised in OperationLimits and enforced
//! max_nodes_per_read = 1000       # default 1000
//! max_nodes_per_browse = 500      # default 500
//! max_references_per_node = 1000  # default 1000; references per Browse answer, the rest
//!                                 # follows through a continuation point
//!
//! [security]                      # optional; default: every mode and policy, anonymous
//! modes = ["none", "sign", "sign-and-encrypt"]
//! policies = ["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"]
//! anonymous = true                # false: a user name is required
//! [[security.user]]
//! name = "otdrift"
//! password = "read-only-please"
//!
//! [quirks]                        # optional, all default false; same as `quirk` below
//! tiny-limits = false
//!
//! [[folder]]
//! id = "Mixer.Setpoints"          # parent "Mixer" must be a folder too (folders may be
//! name = "Setpoints"              # listed in any order); name defaults to the last segment
//!
//! [[variable]]
//! id = "Mixer.Setpoints.Speed"
//! type = "Double"                 # Boolean, SByte, Byte, Int16, UInt16, Int32, UInt32,
//!                                 # Int64, UInt64, Float, Double, String, DateTime,
//!                                 # ByteString (hex), LocalizedText
//! value = 72.5                    # or an array: value = [1, 2, 3] (value rank 1)
//! tick = "sine"                   # optional: "counter" (numbers +1, booleans toggle),
//!                                 # "sine" (numbers 50 ± 50, period 60 ticks), "clock"
//!                                 # (DateTime = now): a runtime value
//! readable = true                 # optional; false answers BadNotReadable for its value
//!                                 # and AccessLevel/UserAccessLevel without CurrentRead
//! ```
//!
//! # Commands
//!
//! One command per line; the reply is one line: `ok`, `ok <json>` or `error: <reason>`.
//! Available through [`OpcuaSimHandle::command`], on the process's stdin and on the optional
//! control port of `otdrift sim opcua`. Blank lines and lines starting with `#` are ignored.
//!
//! | command | effect |
//! |---|---|
//! | `set ID VALUE` | sets a variable's value (TOML syntax of its type: `75.0`, `true`, `"text"`, `[1, 2]`) |
//! | `get ID` | `ok <json>`: the variable's value |
//! | `add folder ID` / `add variable ID TYPE VALUE` | a structural change: a node appears under its parent folder |
//! | `remove ID` | removes a node and everything below it |
//! | `build_info FIELD VALUE...` | sets a BuildInfo field (`product_uri`, `manufacturer_name`, `product_name`, `software_version`, `build_number`, `build_date`) |
//! | `tick [N]` | advances ticking variables once (or N times) |
//! | `quirk` / `quirk NAME on\|off` | lists the quirks / switches one |
//! | `drop` | closes every client connection now (a PLC restarting its OPC UA stack) |
//! | `certificate` | `ok {"thumbprint": "..."}`: the SHA-1 thumbprint of the certificate presented |
//! | `log` / `log clear` | `ok {"total":N,"writes":W,"by_service":{"read":..}}` / resets the in-memory log |
//! | `help` | one-line summary |
//!
//! # Quirks
//!
//! | quirk | behaviour |
//! |---|---|
//! | `stall` | Read, Browse and other node services are accepted and never answered (until switched off; then they answer BadTimeout) |
//! | `drop-session` | Read and Browse requests are answered by closing every client connection |
//! | `no-browse-next` | BrowseNext is refused with BadServiceUnsupported on every result |
//! | `browse-next-restarts` | BrowseNext ignores the continuation point and answers the first page again (with a new continuation point) |
//! | `tiny-limits` | MaxNodesPerRead 5, MaxNodesPerBrowse 5, 3 references per Browse answer |
//! | `hidden-limits` | OperationLimits and its variables do not exist (BadNodeIdUnknown) |
//! | `empty-build-info` | BuildInfo fields are empty strings and the build date is the null date |
//! | `placeholder-build-info` | BuildInfo answers fixed placeholders (`Unknown`, `OPC UA Server`, `1.0.0`, 2000-01-01) |
//! | `refuse-identity` | reads of BuildInfo and its fields answer BadUserAccessDenied |
//! | `reverse-order` | Browse answers list references in reverse order |
//! | `new-certificate` | every start presents a newly made certificate |
//! | `bad-values` | the Value of every PLC variable answers BadOutOfService |
//! | `uncertain-values` | the Value of every PLC variable comes with UncertainLastUsableValue |
//! | `no-buildinfo` | the Server object has no BuildInfo: its variable and fields answer BadNodeIdUnknown and are not referenced |
//! | `endless-continuation` | a Browse of a PLC folder always carries a continuation point; every BrowseNext answers one new generated reference (`<folder>#more-<n>`) and another continuation point, forever |
//! | `deep-nesting` | every PLC folder holds a chain of 10 000 nested folders (`<folder>#deep-1` … `#deep-10000`) |
//! | `million-refs` | every PLC folder has 1 000 000 more references (`<folder>#ref-<n>`), made page by page as a client pages through them: the simulator holds a counter, not a million references |
//! | `huge-string` | String variables answer a 10 MiB value; connections opened while it is on have their Hello's MaxMessageSize and MaxChunkCount set to 0 ("no limit") by the front proxy, so the server sends what the client refused (async-opcua's server would otherwise refuse with BadResponseTooLarge, which sessions opened before still see) |
//! | `busy` | Read and Browse are answered BadServerTooBusy |
//! | `slow` | Read and Browse are answered after 250 ms ([`SLOW_ANSWER_MS`]) |
//! | `unknown-on-read` | reads of PLC variables answer BadNodeIdUnknown while Browse still lists them |
//! | `unreadable-values` | PLC values answer BadNotReadable while AccessLevel and UserAccessLevel still grant CurrentRead |
//! | `frozen-node-version` | folders' NodeVersion properties (`node_version = true`) stop moving when children are added or removed |
//!
//! A request over a limit is answered BadTooManyOperations on every result (the limits are
//! enforced by the node manager so that `tiny-limits` can change them at run time).
//!
//! # Request log
//!
//! What the log covers, exactly: every call async-opcua hands to the node manager (Read,
//! Browse, BrowseNext with continuation points to follow, TranslateBrowsePathsToNodeIds,
//! RegisterNodes, HistoryRead, Write, HistoryUpdate, Call, AddNodes, AddReferences,
//! DeleteNodes, DeleteReferences, CreateMonitoredItems), every ActivateSession (through the
//! authenticator, with the user and security mode; its `peer` is `0.0.0.0:0`), and every TCP
//! connection (`connect`). `service` is the request's binary encoding id (Read 631, Browse
//! 527, BrowseNext 533, Write 673, Call 712, AddNodes 488, DeleteNodes 500...), `count` the
//! number of operations, `detail` the first node ids and the message security mode, and
//! `write` is set for Write, HistoryUpdate, Call and node management, which the simulator logs
//! and then refuses (Write is applied to PLC variables when the value's type fits).
//!
//! Not logged, because async-opcua answers them before any hook of ours: the secure channel
//! (Hello, OpenSecureChannel, CloseSecureChannel), GetEndpoints, FindServers, CreateSession,
//! CloseSession, the subscription services, a BrowseNext that only releases continuation
//! points, and requests the framework refuses before dispatch (empty operation lists). None of
//! these change the server's address space.
//!
//! # What it cannot emulate
//!
//! Responses that break the OPC UA encoding (missing headers, wrong array counts) — the
//! collector's tests use a raw TCP peer for those; model-change events; historical access;
//! methods; type nodes (type definitions are referenced but not served); certificate
//! revocation lists and server-side certificate validation (client certificates are trusted).

mod certs;
mod commands;
mod file;
mod manager;
mod nodes;
mod proxy;
mod state;
mod values;

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use opcua_crypto::SecurityPolicy;
use opcua_server::{
    ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerEndpoint, ServerUserToken,
    authenticator::DefaultAuthenticator,
};
use opcua_types::{DateTime, MessageSecurityMode};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

pub use self::certs::ServerCertificate;
pub use self::state::{
    BUILD_INFO_FIELDS, BuildInfo, DEEP_NESTING_LEVELS, HUGE_STRING_BYTES, Limits, MILLION_REFS,
    MIXER_DEMO_TOML, Mode, OpcuaState, PlcNode, Quirk, Quirks, SLOW_ANSWER_MS, StateError,
    TINY_LIMITS, Tick, VariableNode,
};
pub use self::values::ValueType;
pub use crate::control::CommandError;
use crate::runtime::{Protocol, SimHandle};

/// Largest message the simulated server sends or accepts: above the `huge-string` quirk's
/// value, so that quirk is limited by the client only.
const SERVER_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Most elements of an array in a request or an answer.
const SERVER_MAX_ARRAY_LENGTH: usize = 100_000;
/// Most chunks per message, matching [`SERVER_MAX_MESSAGE_SIZE`] at 64 KiB per chunk.
const SERVER_MAX_CHUNK_COUNT: usize = 1024;

pub(crate) type Shared = crate::runtime::Shared<OpcuaSimulator>;

/// What the OPC UA simulator keeps beside its state: async-opcua's server and what the
/// proxy in front of it learns.
pub struct Server {
    /// Bumped to close every client connection.
    drops: watch::Sender<u64>,
    /// Mirrors the stall quirk, so stalled requests can wait for it to end.
    stalled: watch::Sender<bool>,
    /// Secure channel id → client address, learnt by the proxy.
    channels: Mutex<HashMap<u32, SocketAddr>>,
    /// The clients' messages, counted by the proxy.
    wire: Mutex<WireCount>,
    start_time: DateTime,
    thumbprint: String,
    /// The per-start PKI folder async-opcua uses; removed on shutdown.
    pki_dir: PathBuf,
    /// Cancels the async-opcua server.
    cancel: CancellationToken,
}

/// Every message clients sent, as the wire carries them (the request log names services; a
/// session's set-up and teardown are counted here): what a client costs the server in
/// round trips, whatever its security mode (chunk headers are never encrypted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireCount {
    /// Hello messages (one per TCP connection).
    pub hello: u64,
    /// OpenSecureChannel requests (issue and renew).
    pub open: u64,
    /// Service requests (MSG): CreateSession, GetEndpoints, Read, CloseSession and the rest.
    pub requests: u64,
    /// CloseSecureChannel requests.
    pub close: u64,
}

impl WireCount {
    /// All messages together.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.hello + self.open + self.requests + self.close
    }
}

impl std::ops::Sub for WireCount {
    type Output = WireCount;
    fn sub(self, earlier: WireCount) -> WireCount {
        WireCount {
            hello: self.hello.saturating_sub(earlier.hello),
            open: self.open.saturating_sub(earlier.open),
            requests: self.requests.saturating_sub(earlier.requests),
            close: self.close.saturating_sub(earlier.close),
        }
    }
}

/// The OPC UA simulator's own shared helpers.
impl crate::runtime::Shared<OpcuaSimulator> {
    /// Counts one chunk from a client: a message is its final chunk (`F`; Hello has only one).
    fn count_message(&self, kind: &[u8; 3], chunk: u8) {
        if kind != b"HEL" && chunk != b'F' {
            return;
        }
        let mut wire = self
            .extra
            .wire
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match kind {
            b"HEL" => wire.hello += 1,
            b"OPN" => wire.open += 1,
            b"MSG" => wire.requests += 1,
            b"CLO" => wire.close += 1,
            _ => {}
        }
    }

    fn peer_of(&self, channel: u32) -> SocketAddr {
        self.extra
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&channel)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    fn drop_connections(&self) {
        self.extra.drops.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn wait_while_stalled(&self) {
        let mut stalled = self.extra.stalled.subscribe();
        let mut stop = self.shutdown_watch();
        tokio::select! {
            _ = stalled.wait_for(|on| !*on) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
}

/// Why [`OpcuaSimulator::start`] (or the simulator as a process) failed.
pub type SimError = crate::process::SimError<StateError, StartError>;

/// What starting the OPC UA server can fail with besides binding its port.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The server certificate could not be made, read or installed.
    #[error("server certificate: {0}")]
    Certificate(io::Error),
    /// async-opcua refused the server configuration.
    #[error("OPC UA server: {0}")]
    Server(String),
}

impl From<StartError> for SimError {
    fn from(e: StartError) -> Self {
        SimError::Start(e)
    }
}

/// Starts simulated OPC UA servers.
#[derive(Debug)]
pub struct OpcuaSimulator;

impl OpcuaSimulator {
    /// Binds `listen` (use `127.0.0.1:0` in tests: the OS picks a free port, see
    /// [`OpcuaSimHandle::local_addr`]) and serves `state` until
    /// [`OpcuaSimHandle::shutdown`] or until the last handle is dropped. Must be called
    /// inside a tokio runtime. The first start of a state makes its certificate (an RSA key:
    /// takes a moment).
    ///
    /// # Errors
    /// If an address cannot be bound, the certificate cannot be made or async-opcua refuses
    /// the configuration.
    pub async fn start(listen: SocketAddr, state: OpcuaState) -> Result<OpcuaSimHandle, SimError> {
        let (listener, local_addr) = crate::runtime::bind::<OpcuaSimulator>(listen).await?;
        let certificate = {
            let slot = state.certificate.clone();
            let renew = state.quirks.get(Quirk::NewCertificate);
            let (uri, name) = (
                state.application_uri.clone(),
                state.application_name.clone(),
            );
            tokio::task::spawn_blocking(move || resolve_certificate(&slot, renew, &uri, &name))
                .await
                .map_err(|e| StartError::Certificate(io::Error::other(e.to_string())))?
                .map_err(StartError::Certificate)?
        };
        let pki_dir = certs::scratch_dir("pki").map_err(StartError::Certificate)?;
        certificate
            .install(&pki_dir)
            .map_err(StartError::Certificate)?;
        let internal = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let upstream = internal.local_addr()?;
        let cancel = CancellationToken::new();
        let (drops, _) = watch::channel(0);
        let (stalled, _) = watch::channel(state.quirks.get(Quirk::Stall));
        let tick_ms = state.tick_ms;
        let security = state.security.clone();
        let (app_name, app_uri, product_uri) = (
            state.application_name.clone(),
            state.application_uri.clone(),
            state.build_info.product_uri.clone(),
        );
        let server = Server {
            drops,
            stalled,
            channels: Mutex::new(HashMap::new()),
            wire: Mutex::new(WireCount::default()),
            start_time: DateTime::now(),
            thumbprint: certificate.thumbprint.clone(),
            pki_dir: pki_dir.clone(),
            cancel: cancel.clone(),
        };
        let shared = crate::runtime::Shared::new(local_addr, state, server);

        let mut builder = ServerBuilder::new()
            .application_name(app_name)
            .application_uri(app_uri)
            .product_uri(product_uri)
            .host(local_addr.ip().to_string())
            .port(local_addr.port())
            .pki_dir(&pki_dir)
            .certificate_path(certs::CERT_PATH)
            .private_key_path(certs::KEY_PATH)
            .create_sample_keypair(false)
            .trust_client_certs(true)
            .discovery_urls(vec!["/".to_owned()])
            .max_browse_continuation_points(usize::from(manager::MAX_BROWSE_CONTINUATION_POINTS))
            // Room for the `huge-string` quirk's 10 MiB answer: the server must be able to
            // send what a broken PLC stack would; the client's own limits (from its Hello)
            // still apply unless the proxy rewrites them.
            .max_message_size(SERVER_MAX_MESSAGE_SIZE)
            .max_chunk_count(SERVER_MAX_CHUNK_COUNT)
            // Requests of up to the largest MaxNodesPerRead a state may publish and a client
            // may use (10 000 operations, 4 per variable) decode; the state's limits are the
            // node manager's to enforce.
            .max_array_length(SERVER_MAX_ARRAY_LENGTH)
            .token(cancel.clone());
        {
            let limits = builder.limits_mut();
            let ops = &mut limits.operational;
            // The node manager enforces the state's limits (they change at run time).
            ops.max_nodes_per_read = 1_000_000;
            ops.max_nodes_per_browse = 1_000_000;
            ops.max_references_per_browse_node = 1_000_000;
        }
        let mut token_ids = Vec::new();
        if security.anonymous {
            token_ids.push(ANONYMOUS_USER_TOKEN_ID.to_owned());
        }
        let mut users = std::collections::BTreeMap::new();
        for (index, (name, password)) in security.users.iter().enumerate() {
            let id = format!("user{index}");
            let token = ServerUserToken {
                user: name.clone(),
                pass: Some(password.clone()),
                ..Default::default()
            };
            users.insert(id.clone(), token.clone());
            builder = builder.add_user_token(&id, token);
            token_ids.push(id);
        }
        for mode in &security.modes {
            let pairs: Vec<(SecurityPolicy, MessageSecurityMode)> = match mode {
                Mode::None => vec![(SecurityPolicy::None, MessageSecurityMode::None)],
                Mode::Sign | Mode::SignAndEncrypt => security
                    .policies
                    .iter()
                    .map(|p| {
                        (
                            format!(
                                "http://opcfoundation.org/UA/SecurityPolicy#{}",
                                policy_uri_suffix(p)
                            )
                            .parse()
                            .unwrap_or(SecurityPolicy::Unknown),
                            if *mode == Mode::Sign {
                                MessageSecurityMode::Sign
                            } else {
                                MessageSecurityMode::SignAndEncrypt
                            },
                        )
                    })
                    .collect(),
            };
            for (policy, mode) in pairs
                .into_iter()
                .filter(|(p, _)| *p != SecurityPolicy::Unknown)
            {
                let id = format!("{policy}-{mode}");
                builder =
                    builder.add_endpoint(&id, ServerEndpoint::new("/", policy, mode, &token_ids));
            }
        }
        let for_manager = Arc::clone(&shared);
        builder = builder
            .with_node_manager(move |context| manager::SimNodeManager::new(for_manager, context))
            .with_authenticator(Arc::new(manager::SimAuthenticator::new(
                DefaultAuthenticator::new(users),
                Arc::clone(&shared),
            )));
        let (server, _handle) = builder.build().map_err(StartError::Server)?;

        let alive_rx = shared.alive();
        tokio::spawn(async move {
            let _alive = alive_rx;
            if let Err(err) = server.run_with(internal).await {
                tracing::warn!(%err, "OPC UA simulator server ended");
            }
        });
        shared.serve(listener, None, move |shared, stream, peer| {
            proxy::accept(shared, stream, peer, upstream)
        });
        shared.tick_every(tick_ms);
        Ok(SimHandle::new(shared))
    }
}

/// The URI fragment of a policy name as the state file writes it.
fn policy_uri_suffix(name: &str) -> &str {
    match name {
        "Aes128Sha256RsaOaep" => "Aes128_Sha256_RsaOaep",
        "Aes256Sha256RsaPss" => "Aes256_Sha256_RsaPss",
        other => other,
    }
}

/// The certificate a start presents: the state's (made on first start, or kept in its
/// `pki_dir`), or a new one with the `new-certificate` quirk.
fn resolve_certificate(
    slot: &state::CertificateSlot,
    renew: bool,
    uri: &str,
    name: &str,
) -> io::Result<Arc<ServerCertificate>> {
    let mut current = slot.current.lock().unwrap_or_else(PoisonError::into_inner);
    if !renew && let Some(found) = current.as_ref() {
        return Ok(Arc::clone(found));
    }
    let made = match &slot.dir {
        Some(dir) => Arc::new(ServerCertificate::load_or_create(dir, renew, uri, name)?),
        None if renew => Arc::new(ServerCertificate::generate(uri, name)?),
        None => certs::shared_for(uri, name)?,
    };
    *current = Some(Arc::clone(&made));
    Ok(made)
}

/// Controls a running simulator: its address, its request log, mutations.
///
/// Cheap to clone; all clones control the same simulator. Dropping the last clone shuts the
/// simulator down.
pub type OpcuaSimHandle = SimHandle<OpcuaSimulator>;

/// OPC UA's own controls of a running simulator.
impl SimHandle<OpcuaSimulator> {
    /// The endpoint URL clients connect to: `opc.tcp://<ip:port>/`.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        format!("opc.tcp://{}/", self.local_addr())
    }

    /// Sets a variable's value from TOML syntax of its type (`75.0`, `"text"`, `[1, 2]`).
    ///
    /// # Errors
    /// If there is no such variable or the value does not fit its type.
    pub fn set_value(&self, id: &str, value: &str) -> Result<(), CommandError> {
        commands::set_value(&mut self.shared().lock_state(), id, value)
    }

    /// Adds a variable under its parent folder (a structural change).
    ///
    /// # Errors
    /// If the parent folder does not exist, the id is taken or the value does not fit.
    pub fn add_variable(
        &self,
        id: &str,
        vtype: ValueType,
        value: &str,
    ) -> Result<(), CommandError> {
        commands::add_variable(&mut self.shared().lock_state(), id, vtype.name(), value)
    }

    /// Removes a node and everything below it.
    ///
    /// # Errors
    /// If there is no such node.
    pub fn remove(&self, id: &str) -> Result<(), CommandError> {
        self.shared()
            .lock_state()
            .remove_node(id)
            .map(|_| ())
            .map_err(CommandError::Usage)
    }

    /// The messages clients have sent so far (subtract an earlier count for one client's
    /// share).
    #[must_use]
    pub fn wire_messages(&self) -> WireCount {
        *self
            .shared()
            .extra
            .wire
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every client connection now.
    pub fn drop_connections(&self) {
        self.shared().drop_connections();
    }

    /// The SHA-1 thumbprint (lowercase hex) of the certificate this start presents.
    #[must_use]
    pub fn certificate_thumbprint(&self) -> String {
        self.shared().extra.thumbprint.clone()
    }

    /// A copy of the whole state (sharing the certificate, so starting a simulator with it
    /// presents the same certificate).
    #[must_use]
    pub fn state(&self) -> OpcuaState {
        self.shared().lock_state().clone()
    }
}

impl Protocol for OpcuaSimulator {
    const NAME: &'static str = "opcua";
    type State = OpcuaState;
    type Quirk = Quirk;
    type QuirkArg = ();
    type Extra = Server;
    type StartError = StartError;

    fn quirks(state: &mut OpcuaState) -> &mut Quirks {
        &mut state.quirks
    }

    /// The stall quirk is mirrored, so stalled requests can wait for it to end.
    fn quirk_switched(shared: &Shared, quirk: Quirk, on: bool) {
        if quirk == Quirk::Stall {
            shared.extra.stalled.send_replace(on);
        }
    }

    fn tick(shared: &Shared) {
        shared.lock_state().tick();
    }

    /// async-opcua's server ends with the simulator.
    fn stopping(shared: &Shared) {
        shared.extra.cancel.cancel();
    }

    /// The per-start PKI folder goes once everything has stopped.
    fn stopped(shared: &Shared) {
        let _ = std::fs::remove_dir_all(&shared.extra.pki_dir);
    }

    fn load(path: &Path) -> Result<OpcuaState, StateError> {
        OpcuaState::load(path)
    }

    fn demo() -> OpcuaState {
        OpcuaState::demo()
    }

    async fn start(listen: SocketAddr, state: OpcuaState) -> Result<OpcuaSimHandle, SimError> {
        OpcuaSimulator::start(listen, state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_mutate_the_state_and_refuse_nonsense() {
        let sim = OpcuaSimulator::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            OpcuaState::demo().with_tick_ms(0),
        )
        .await
        .expect("simulator starts");
        assert!(sim.endpoint_url().starts_with("opc.tcp://127.0.0.1:"));
        assert_eq!(
            sim.command("get Mixer.Setpoints.MixSpeed").as_deref(),
            Ok("72.5")
        );
        assert_eq!(
            sim.command("set Mixer.Setpoints.MixSpeed 75").as_deref(),
            Ok("")
        );
        assert_eq!(
            sim.command("get Mixer.Setpoints.MixSpeed").as_deref(),
            Ok("75.0")
        );
        assert_eq!(
            sim.command("get Mixer.Setpoints.RampProfile").as_deref(),
            Ok("[10,25,50,75,100]")
        );
        assert!(
            sim.command("set Mixer.Setpoints.MixSpeed \"fast\"")
                .is_err()
        );
        assert!(sim.command("set Mixer.Setpoints.MixTime -1").is_err());
        assert!(sim.command("set Mixer.Nowhere 1").is_err());
        assert_eq!(
            sim.command("add variable Mixer.Setpoints.Viscosity UInt16 12")
                .as_deref(),
            Ok("")
        );
        assert!(
            sim.command("add variable Mixer.Setpoints.Viscosity UInt16 12")
                .is_err()
        );
        assert!(sim.command("add variable Nowhere.X Double 1").is_err());
        assert_eq!(sim.command("add folder Mixer.Extra").as_deref(), Ok(""));
        assert_eq!(
            sim.command("remove Mixer.Setpoints.Viscosity").as_deref(),
            Ok("{\"removed\":1}")
        );
        let before = sim.command("get Mixer.Runtime.BatchCounter").expect("get");
        assert_eq!(sim.command("tick 3").as_deref(), Ok(""));
        let after = sim.command("get Mixer.Runtime.BatchCounter").expect("get");
        assert_eq!(
            after.parse::<u64>().expect("number"),
            before.parse::<u64>().expect("number") + 3
        );
        assert!(sim.command("tick 0").is_err());
        assert_eq!(sim.command("quirk tiny-limits on").as_deref(), Ok(""));
        assert!(
            sim.command("quirk")
                .expect("quirks")
                .contains("\"tiny-limits\":true")
        );
        assert!(sim.command("quirk flying on").is_err());
        assert!(sim.command("build_info software_version V4.0").is_ok());
        assert_eq!(sim.state().build_info().software_version, "V4.0");
        assert!(sim.command("build_info build_date yesterday").is_err());
        assert!(
            sim.command("certificate")
                .expect("certificate")
                .contains(&sim.certificate_thumbprint())
        );
        assert!(sim.command("log").expect("log").contains("\"writes\":0"));
        assert!(matches!(
            sim.command("fly"),
            Err(CommandError::Unknown(word)) if word == "fly"
        ));
        assert!(sim.command("help").expect("help").contains("quirk"));
        sim.shutdown();
        sim.stopped().await;
    }
}
