//! OPC UA (opc.tcp), on async-opcua's client.
//!
//! Many S7-1500, TwinCAT and Logix-era gateways expose their configuration through OPC UA
//! when the native protocol is locked down; this collector is also the fallback path for
//! them. It only ever sends GetEndpoints, CreateSession/ActivateSession/CloseSession, Read,
//! Browse and BrowseNext (`request.rs` is the one place requests are built and sent; `link.rs`
//! opens and closes sessions); Write, Call, node management and history updates are
//! unreachable.
//!
//! Files: `request.rs` (the read-only boundary), `link.rs` (the session as the framework's
//! Link), `session.rs` (certificates, pins, endpoint choice, the async-opcua session task),
//! `wire.rs` (what statuses and attribute values mean), `plan.rs` (batching and continuation
//! points), `program.rs` (the browse walk), `items.rs` (attributes and values as items) and
//! `convert.rs` (values, node keys, setpoint labels).
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
//! current time), the operation limits used, the security mode and policy, the state of
//! the certificate pin, and whether the poll walked the structure (`opcua/walk`). Process values are never hashed unless a configured node contains
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
//! session with its first identity Read (0 = no limit → 10 000; not published → 100); a server
//! that answers BadTooManyOperations anyway gets half of what was asked until it accepts, one
//! that answers
//! BadResponseTooLarge gets smaller batches for that call, and nodes a Browse answered
//! BadNoContinuationPoints are browsed again once the batch's continuation points are done.
//! On a kept session, a server whose NodeVersion properties were seen to move with a
//! structure change gets values-only polls: identity and one Read per MaxNodesPerRead values,
//! no Browse, with a full walk whenever a hint of change appears and at least every
//! `full_browse_every` polls (`program.rs`, [`program::Model`]).
//! The session is kept between captures; a session the server dropped is replaced once,
//! transparently (the whole capture runs again on a fresh session; `link.rs` says why not
//! one request). Connecting costs CreateSession, ActivateSession, one keep-alive Read by
//! async-opcua and GetEndpoints on the session's own channel when the endpoint a discovery
//! chose before is kept (`link.rs`), and a discovery channel before that otherwise. Every
//! request runs under the asset's `timeout_ms`.
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

mod convert;
mod items;
mod link;
mod plan;
mod program;
mod request;
mod session;
mod wire;

use std::path::{Path, PathBuf};

use opcua::types::{NodeId, ReadValueId, Variant};
use otdrift_config::{AssetConfig, OpcuaConfig, Protocol, ProtocolConfig};
use otdrift_core::{Class, Item, Value};

use crate::driver::Driver;
use crate::module::{Module, Observed};
use crate::{CollectError, Scope};
use link::OpcuaLink;
use program::{Model, Walk};
use wire::{mandatory_status, server_text, value_of};

pub use items::setpoint_label;

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
pub(crate) const MAX_NODES_PER_READ: u32 = 11705;
pub(crate) const MAX_NODES_PER_BROWSE: u32 = 11710;

/// The OPC UA collector for one asset; keeps its session between captures.
#[derive(Debug)]
pub struct OpcuaCollector {
    driver: Driver<OpcuaLink>,
    cfg: OpcuaConfig,
    /// What the current capture's walk has taken in.
    walk: Walk,
    /// What the last full walk found, for values-only polls.
    model: Model,
}

impl OpcuaCollector {
    /// A collector for `asset`; nothing is sent and nothing is written until the first
    /// capture. Its PKI folder defaults to [`default_pki_dir`] (for tests); the agent sets
    /// `data_dir/opcua-pki` with [`with_pki_dir`](Self::with_pki_dir).
    pub fn new(asset: &AssetConfig, cfg: &OpcuaConfig) -> Self {
        let link = OpcuaLink {
            asset: asset.id.clone(),
            endpoint_url: cfg.endpoint.clone(),
            security: cfg.security,
            security_policy: cfg.security_policy.clone(),
            username: cfg.username.clone(),
            password_file: cfg.password_file.clone(),
            pki_dir: default_pki_dir(&asset.id),
            client: None,
        };
        let scope = Scope::new(&asset.id, &cfg.endpoint);
        OpcuaCollector {
            driver: Driver::with_scope(scope, asset.timeout_ms, asset.max_requests_per_sec, link),
            cfg: cfg.clone(),
            walk: Walk::default(),
            model: Model::default(),
        }
    }

    /// Where the agent's application certificate and the pinned server certificates are kept
    /// (created on first use; shared by every OPC UA asset of an agent, pins are per asset).
    #[must_use]
    pub fn with_pki_dir(mut self, dir: PathBuf) -> Self {
        self.driver.link.pki_dir = dir;
        self.driver.link.client = None;
        self
    }

    /// The PKI folder in use.
    pub fn pki_dir(&self) -> &Path {
        &self.driver.link.pki_dir
    }

    /// Identity, namespaces and server status: one Read, which on a new session also reads
    /// the server's operation limits.
    async fn server_object(&mut self, found: &mut Observed) -> Result<Vec<String>, CollectError> {
        let (snapshot, runtime) = (&mut found.snapshot, &mut found.runtime);
        let mut ids = vec![NAMESPACE_ARRAY];
        ids.extend(BUILD_INFO_FIELDS.iter().map(|(id, _)| *id));
        ids.extend([SERVER_STATE, START_TIME, CURRENT_TIME]);
        let mut ops: Vec<ReadValueId> =
            ids.iter().map(|id| value_of(NodeId::new(0, *id))).collect();
        let limits = self.limit_ops();
        ops.extend(limits.iter().cloned());
        let values = self.read_all(&ops).await?;
        if !limits.is_empty() {
            self.take_limits(values.get(ids.len()..).unwrap_or_default());
        }
        let get = |i: usize| values.get(i).cloned().unwrap_or_default();

        let namespaces_dv = get(0);
        let request = "Read of Server/NamespaceArray";
        mandatory_status(self.driver.scope(), request, &namespaces_dv)?;
        let mut namespaces = Vec::new();
        match &namespaces_dv.value {
            Some(Variant::Array(array)) => {
                for v in &array.values {
                    match v {
                        Variant::String(s) => namespaces.push(convert::text(s.as_ref()).map_err(
                            |convert::Oversize(why)| self.driver.scope().bound(request, why),
                        )?),
                        other => {
                            return Err(self.driver.scope().malformed(
                                request.to_owned(),
                                format!("expected an array of strings, got an element {other:?}"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(self.driver.scope().malformed(
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
            let value = server_text(self.driver.scope(), field, &get(i + 1))?;
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
            if *name == "state" {
                found
                    .operating_state
                    .insert(format!("opcua/server/{name}"), value);
            } else {
                runtime.insert(format!("opcua/server/{name}"), value);
            }
        }
        if let Some(conn) = self.driver.conn() {
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
}

/// The PKI folder used unless [`OpcuaCollector::with_pki_dir`] says otherwise: below the
/// system temp dir, named after the asset. For tests only: an agent keeps its certificate and
/// pins in its data directory.
pub fn default_pki_dir(asset: &str) -> PathBuf {
    std::env::temp_dir().join(format!("otdrift-opcua-pki-{asset}"))
}

impl Module for OpcuaCollector {
    const PROTOCOL: Protocol = Protocol::Opcua;
    type Config = OpcuaConfig;
    type Link = OpcuaLink;

    fn config(protocol: &ProtocolConfig) -> Option<&OpcuaConfig> {
        match protocol {
            ProtocolConfig::Opcua(cfg) => Some(cfg),
            _ => None,
        }
    }

    fn build(asset: &AssetConfig, cfg: &OpcuaConfig, data_dir: &Path) -> Self {
        OpcuaCollector::new(asset, cfg).with_pki_dir(data_dir.join("opcua-pki"))
    }

    fn setpoint_label(cfg: &OpcuaConfig, path: &str) -> Option<String> {
        items::setpoint_label(cfg, path)
    }

    const READER: u32 = 1;

    fn capture_spec(cfg: &OpcuaConfig) -> Vec<String> {
        cfg.setpoints
            .iter()
            .map(|s| format!("node {}", s.node))
            .collect()
    }

    fn driver(&self) -> &Driver<OpcuaLink> {
        &self.driver
    }

    fn driver_mut(&mut self) -> &mut Driver<OpcuaLink> {
        &mut self.driver
    }

    async fn read(&mut self) -> Result<Observed, CollectError> {
        let fresh = self.driver.connect().await?;
        self.walk = Walk::default();
        let mut found = Observed::default();
        let namespaces = self.server_object(&mut found).await?;
        let start_time = found.runtime.get("opcua/server/start_time").cloned();
        if !fresh && let Some(items) = self.values_only(&namespaces, start_time.as_ref()).await? {
            for item in items {
                let path = item.path().to_owned();
                found.snapshot.insert(item).map_err(|e| {
                    self.driver
                        .scope()
                        .malformed(format!("Read of {path}"), e.to_string())
                })?;
            }
            found.runtime.insert(
                "opcua/walk".to_owned(),
                Value::Text("values only (NodeVersion unchanged)".to_owned()),
            );
            return Ok(found);
        }
        let nodes = self.read_tree(&mut found.snapshot, &namespaces).await?;
        let asset = self.driver.scope().asset.clone();
        self.model
            .remember(&asset, &found.snapshot, &nodes, namespaces, start_time);
        found
            .runtime
            .insert("opcua/walk".to_owned(), Value::Text("full".to_owned()));
        Ok(found)
    }

    async fn read_identity(&mut self) -> Result<Vec<Item>, CollectError> {
        self.driver.connect().await?;
        let mut found = Observed::default();
        self.server_object(&mut found).await?;
        Ok(found.snapshot.items().cloned().collect())
    }
}
