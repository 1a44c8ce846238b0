//! The OPC UA simulator's state: server settings, the PLC's nodes and the quirks. The file
//! format is documented on the [`opcua`](super) module.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use opcua_types::{DateTime, Variant};

pub use crate::runtime::StateError;
pub(crate) use crate::runtime::invalid;
use crate::runtime::{QuirkName, QuirkSet};

use super::certs::ServerCertificate;
use super::file::RawState;
use super::values::ValueType;

/// The embedded demo state (a batch mixer behind an S7-1500-like OPC UA server).
pub const MIXER_DEMO_TOML: &str = include_str!("../../states/opcua-mixer.toml");

/// Longest node identifier accepted in a state file or a command.
pub const MAX_ID_LEN: usize = 512;
/// Most nodes a state may hold (the bench uses a few thousand).
pub const MAX_NODES: usize = 200_000;
/// Longest array value accepted.
pub const MAX_ARRAY_LEN: usize = 10_000;

/// How a ticking variable moves on every tick (runtime values: never setpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Numbers count up by one (wrapping); booleans toggle.
    Counter,
    /// Numbers follow 50 + 50·sin(2π·n/60) (rounded for integers).
    Sine,
    /// Date and time variables take the current time.
    Clock,
}

impl Tick {
    pub(crate) fn parse(text: &str, vtype: ValueType) -> Result<Tick, String> {
        let tick = match text {
            "counter" => Tick::Counter,
            "sine" => Tick::Sine,
            "clock" => Tick::Clock,
            other => {
                return Err(format!(
                    "tick = {other:?}; expected \"counter\", \"sine\" or \"clock\""
                ));
            }
        };
        let fits = match tick {
            Tick::Counter => vtype.is_integer() || vtype.is_float() || vtype == ValueType::Boolean,
            Tick::Sine => vtype.is_integer() || vtype.is_float(),
            Tick::Clock => vtype == ValueType::DateTime,
        };
        if fits {
            Ok(tick)
        } else {
            Err(format!(
                "tick = {text:?} does not apply to {}",
                vtype.name()
            ))
        }
    }
}

/// One variable of the simulated PLC.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableNode {
    /// Its type.
    pub vtype: ValueType,
    /// Its value (a scalar of `vtype`, or an array of them).
    pub value: Variant,
    /// How it moves, if it is a runtime value.
    pub tick: Option<Tick>,
    /// False: reads of its value are refused with BadNotReadable (like a tag a PLC's access
    /// settings hide).
    pub readable: bool,
}

/// One node of the simulated PLC: a folder or a variable.
#[derive(Debug, Clone, PartialEq)]
pub struct PlcNode {
    /// Browse and display name.
    pub name: String,
    /// `None` for folders.
    pub variable: Option<VariableNode>,
}

/// The OPC UA server's BuildInfo, as the state file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// ProductUri.
    pub product_uri: String,
    /// ManufacturerName.
    pub manufacturer_name: String,
    /// ProductName.
    pub product_name: String,
    /// SoftwareVersion.
    pub software_version: String,
    /// BuildNumber.
    pub build_number: String,
    /// BuildDate (RFC 3339).
    pub build_date: String,
}

/// The BuildInfo field names, as the `build_info` command takes them.
pub const BUILD_INFO_FIELDS: [&str; 6] = [
    "product_uri",
    "manufacturer_name",
    "product_name",
    "software_version",
    "build_number",
    "build_date",
];

impl BuildInfo {
    /// Sets a field by name; a build date must be RFC 3339.
    pub fn set(&mut self, field: &str, value: &str) -> Result<(), String> {
        let slot = match field {
            "product_uri" => &mut self.product_uri,
            "manufacturer_name" => &mut self.manufacturer_name,
            "product_name" => &mut self.product_name,
            "software_version" => &mut self.software_version,
            "build_number" => &mut self.build_number,
            "build_date" => {
                DateTime::parse_from_rfc3339(value)
                    .map_err(|e| format!("build_date {value:?} is not RFC 3339: {e}"))?;
                &mut self.build_date
            }
            other => {
                return Err(format!(
                    "unknown BuildInfo field {other:?}; expected one of {}",
                    BUILD_INFO_FIELDS.join(", ")
                ));
            }
        };
        *slot = value.to_owned();
        Ok(())
    }
}

/// The server's operation limits (advertised in ServerCapabilities/OperationLimits and
/// enforced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// MaxNodesPerRead.
    pub max_nodes_per_read: u32,
    /// MaxNodesPerBrowse.
    pub max_nodes_per_browse: u32,
    /// References per node in one Browse or BrowseNext answer (the rest follows through a
    /// continuation point).
    pub max_references_per_node: u32,
}

/// The limits of the `tiny-limits` quirk.
pub const TINY_LIMITS: Limits = Limits {
    max_nodes_per_read: 5,
    max_nodes_per_browse: 5,
    max_references_per_node: 3,
};

/// Message security modes the server offers endpoints for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// No security.
    None,
    /// Signed.
    Sign,
    /// Signed and encrypted.
    SignAndEncrypt,
}

/// Security settings: endpoints and users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// Modes offered.
    pub modes: BTreeSet<Mode>,
    /// Policies offered for `Sign` and `SignAndEncrypt` (OPC UA names, e.g. Basic256Sha256).
    pub policies: Vec<String>,
    /// Anonymous sessions allowed.
    pub anonymous: bool,
    /// User name → password.
    pub users: BTreeMap<String, String>,
}

/// A behaviour of real servers the simulator can switch on (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quirk {
    /// Service requests are accepted and never answered.
    Stall,
    /// Read and Browse requests are answered by dropping the client's connection.
    DropSession,
    /// BrowseNext is refused (BadServiceUnsupported).
    NoBrowseNext,
    /// BrowseNext ignores the continuation point and answers the first page again.
    BrowseNextRestarts,
    /// MaxNodesPerRead 5, MaxNodesPerBrowse 5, 3 references per Browse answer.
    TinyLimits,
    /// OperationLimits are not published (reads of them answer BadNodeIdUnknown).
    HiddenLimits,
    /// BuildInfo fields are empty and the build date is the null date.
    EmptyBuildInfo,
    /// BuildInfo answers fixed placeholder values instead of the configured ones.
    PlaceholderBuildInfo,
    /// Reads of the Server object's variables (BuildInfo, NamespaceArray...) are refused.
    RefuseIdentity,
    /// Browse answers list references in reverse order.
    ReverseOrder,
    /// Every start presents a newly made application certificate.
    NewCertificate,
    /// The Value of every PLC variable answers BadOutOfService.
    BadValues,
    /// The Value of every PLC variable comes with UncertainLastUsableValue.
    UncertainValues,
    /// The Server object has no BuildInfo (its variable and fields do not exist).
    NoBuildInfo,
    /// A browse of a PLC folder never ends: every answer carries another continuation point.
    EndlessContinuation,
    /// Every PLC folder holds a chain of 10 000 nested folders.
    DeepNesting,
    /// Every PLC folder holds 1 000 000 more references (generated page by page).
    MillionRefs,
    /// String variables answer a 10 MiB value, and the server ignores the client's message
    /// limits for connections opened while it is on.
    HugeString,
    /// Read and Browse are answered BadServerTooBusy.
    Busy,
    /// Read and Browse are answered after a delay of [`SLOW_ANSWER_MS`].
    Slow,
    /// Reads of PLC variables answer BadNodeIdUnknown while Browse still lists them (a
    /// contradiction).
    UnknownOnRead,
    /// The Value of every PLC variable answers BadNotReadable while its AccessLevel and
    /// UserAccessLevel still grant CurrentRead (a contradiction).
    UnreadableValues,
    /// Folders' NodeVersion properties (`node_version = true`) no longer move when a child is
    /// added or removed: a server whose NodeVersion cannot be trusted.
    FrozenNodeVersion,
}

/// How long the `slow` quirk delays each Read and Browse answer: long enough that a capture
/// of the demo (about ten requests) overruns a one-second `capture_timeout_ms`, short enough
/// that no single request reaches a `timeout_ms` of a second or more.
pub const SLOW_ANSWER_MS: u64 = 250;

/// Nested folders of the `deep-nesting` quirk.
pub const DEEP_NESTING_LEVELS: u32 = 10_000;

/// Extra references per folder of the `million-refs` quirk.
pub const MILLION_REFS: u32 = 1_000_000;

/// Bytes of the `huge-string` quirk's value.
pub const HUGE_STRING_BYTES: usize = 10 * 1024 * 1024;

impl QuirkName for Quirk {
    const ALL: &'static [Quirk] = &[
        Quirk::Stall,
        Quirk::DropSession,
        Quirk::NoBrowseNext,
        Quirk::BrowseNextRestarts,
        Quirk::TinyLimits,
        Quirk::HiddenLimits,
        Quirk::EmptyBuildInfo,
        Quirk::PlaceholderBuildInfo,
        Quirk::RefuseIdentity,
        Quirk::ReverseOrder,
        Quirk::NewCertificate,
        Quirk::BadValues,
        Quirk::UncertainValues,
        Quirk::NoBuildInfo,
        Quirk::EndlessContinuation,
        Quirk::DeepNesting,
        Quirk::MillionRefs,
        Quirk::HugeString,
        Quirk::Busy,
        Quirk::Slow,
        Quirk::UnknownOnRead,
        Quirk::UnreadableValues,
        Quirk::FrozenNodeVersion,
    ];

    fn name(self) -> &'static str {
        match self {
            Quirk::Stall => "stall",
            Quirk::DropSession => "drop-session",
            Quirk::NoBrowseNext => "no-browse-next",
            Quirk::BrowseNextRestarts => "browse-next-restarts",
            Quirk::TinyLimits => "tiny-limits",
            Quirk::HiddenLimits => "hidden-limits",
            Quirk::EmptyBuildInfo => "empty-build-info",
            Quirk::PlaceholderBuildInfo => "placeholder-build-info",
            Quirk::RefuseIdentity => "refuse-identity",
            Quirk::ReverseOrder => "reverse-order",
            Quirk::NewCertificate => "new-certificate",
            Quirk::BadValues => "bad-values",
            Quirk::UncertainValues => "uncertain-values",
            Quirk::NoBuildInfo => "no-buildinfo",
            Quirk::EndlessContinuation => "endless-continuation",
            Quirk::DeepNesting => "deep-nesting",
            Quirk::MillionRefs => "million-refs",
            Quirk::HugeString => "huge-string",
            Quirk::Busy => "busy",
            Quirk::Slow => "slow",
            Quirk::UnknownOnRead => "unknown-on-read",
            Quirk::UnreadableValues => "unreadable-values",
            Quirk::FrozenNodeVersion => "frozen-node-version",
        }
    }
}

/// The set of quirks switched on.
pub type Quirks = QuirkSet<Quirk>;

/// Where the server's certificate comes from.
#[derive(Debug, Clone, Default)]
pub(crate) struct CertificateSlot {
    /// A directory holding `own/cert.der` and `private/private.pem`, made on first start.
    pub dir: Option<PathBuf>,
    /// The certificate made or loaded by the first start, shared by every clone of the state
    /// so a restart presents the same one (unless the `new-certificate` quirk is on).
    pub current: Arc<Mutex<Option<Arc<ServerCertificate>>>>,
}

impl PartialEq for CertificateSlot {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir && Arc::ptr_eq(&self.current, &other.current)
    }
}

/// The whole state of a simulated OPC UA server.
///
/// Built from a TOML state file (format on the [`opcua`](super) module) or
/// [`demo`](Self::demo); handed to [`OpcuaSimulator::start`](super::OpcuaSimulator::start).
/// Clones share the server certificate, so a simulator restarted with a clone of its state
/// presents the same certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct OpcuaState {
    pub(crate) tick_ms: u64,
    pub(crate) application_name: String,
    pub(crate) application_uri: String,
    pub(crate) namespace_uri: String,
    pub(crate) extra_namespaces: Vec<String>,
    pub(crate) build_info: BuildInfo,
    pub(crate) limits: Limits,
    pub(crate) security: Security,
    pub(crate) quirks: Quirks,
    /// PLC nodes by identifier (the string NodeId in the PLC namespace).
    pub(crate) nodes: BTreeMap<String, PlcNode>,
    /// Parent identifier ("" = the Objects folder) → children identifiers.
    pub(crate) children: BTreeMap<String, BTreeSet<String>>,
    /// Whether every PLC folder has a NodeVersion property (`node_version`).
    pub(crate) node_version: bool,
    /// Each folder's NodeVersion: how often a child was added to or removed from it (the
    /// state file's own nodes count).
    pub(crate) versions: BTreeMap<String, u64>,
    pub(crate) ticks: u64,
    pub(crate) certificate: CertificateSlot,
}

impl OpcuaState {
    /// Parses a state file's text.
    ///
    /// # Errors
    /// [`StateError::Toml`] for syntax errors, unknown keys or wrong types;
    /// [`StateError::Invalid`] for nodes that do not fit together or values that do not fit
    /// their type.
    pub fn from_toml(text: &str) -> Result<Self, StateError> {
        let raw: RawState = toml::from_str(text)?;
        raw.build(None)
    }

    /// Reads and parses a state file; a relative `pki_dir` is taken relative to the file.
    ///
    /// # Errors
    /// [`StateError::Io`] if the file cannot be read, else as [`from_toml`](Self::from_toml).
    pub fn load(path: &Path) -> Result<Self, StateError> {
        crate::runtime::load_state(path, |text| {
            let raw: RawState = toml::from_str(text)?;
            raw.build(path.parent())
        })
    }

    /// The embedded demo state (`simulators/states/opcua-mixer.toml`): a batch mixer with a
    /// Setpoints folder (recipe values of several types), a Runtime folder whose values tick,
    /// and build info of an S7-1500-like server. Used by `otdrift demo` and by
    /// `otdrift sim opcua` without `--state`.
    #[must_use]
    pub fn demo() -> Self {
        Self::from_toml(MIXER_DEMO_TOML).expect("the embedded opcua-mixer.toml is valid (tested)")
    }

    /// Replaces the tick period, e.g. with 0 so a test controls ticks itself.
    #[must_use]
    pub fn with_tick_ms(mut self, tick_ms: u64) -> Self {
        self.tick_ms = tick_ms;
        self
    }

    /// Switches a quirk on or off before the simulator starts.
    #[must_use]
    pub fn with_quirk(mut self, quirk: Quirk, on: bool) -> Self {
        self.quirks.set(quirk, on);
        self
    }

    /// Tick period in milliseconds (0: only on the `tick` command).
    #[must_use]
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// The PLC namespace's URI.
    #[must_use]
    pub fn namespace_uri(&self) -> &str {
        &self.namespace_uri
    }

    /// The PLC namespace's index in the server's NamespaceArray.
    #[must_use]
    pub fn namespace_index(&self) -> u16 {
        u16::try_from(2 + self.extra_namespaces.len()).unwrap_or(u16::MAX)
    }

    /// The NamespaceArray: the OPC UA namespace, the server's own URI, the extra namespaces,
    /// the PLC namespace.
    #[must_use]
    pub fn namespace_array(&self) -> Vec<String> {
        let mut out = vec![
            "http://opcfoundation.org/UA/".to_owned(),
            self.application_uri.clone(),
        ];
        out.extend(self.extra_namespaces.iter().cloned());
        out.push(self.namespace_uri.clone());
        out
    }

    /// The quirks switched on.
    #[must_use]
    pub fn quirks(&self) -> &Quirks {
        &self.quirks
    }

    /// The configured BuildInfo.
    #[must_use]
    pub fn build_info(&self) -> &BuildInfo {
        &self.build_info
    }

    /// A variable's value, `None` if there is no such variable.
    #[must_use]
    pub fn value(&self, id: &str) -> Option<&Variant> {
        self.nodes
            .get(id)
            .and_then(|n| n.variable.as_ref())
            .map(|v| &v.value)
    }

    /// A node, `None` if there is none with that identifier.
    #[must_use]
    pub fn node(&self, id: &str) -> Option<&PlcNode> {
        self.nodes.get(id)
    }

    /// How many PLC nodes there are.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The limits in force (the `tiny-limits` quirk overrides the configured ones).
    #[must_use]
    pub fn effective_limits(&self) -> Limits {
        if self.quirks.get(Quirk::TinyLimits) {
            TINY_LIMITS
        } else {
            self.limits
        }
    }

    /// The parent identifier of `id` ("" for top-level nodes under Objects).
    pub(crate) fn parent_of(id: &str) -> &str {
        id.rfind('.').and_then(|at| id.get(..at)).unwrap_or("")
    }

    /// Adds a node under its parent (which must be an existing folder, or Objects).
    pub(crate) fn add_node(&mut self, id: &str, node: PlcNode) -> Result<(), String> {
        check_id(id)?;
        if self.nodes.contains_key(id) {
            return Err(format!("node {id:?} already exists"));
        }
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("at most {MAX_NODES} nodes"));
        }
        let parent = Self::parent_of(id);
        if !parent.is_empty() {
            match self.nodes.get(parent) {
                Some(PlcNode { variable: None, .. }) => {}
                Some(_) => return Err(format!("parent {parent:?} of {id:?} is not a folder")),
                None => return Err(format!("parent folder {parent:?} of {id:?} does not exist")),
            }
        }
        self.children
            .entry(parent.to_owned())
            .or_default()
            .insert(id.to_owned());
        self.nodes.insert(id.to_owned(), node);
        self.references_changed(parent);
        Ok(())
    }

    /// A folder's references changed: its NodeVersion moves, as OPC UA servers that keep one
    /// do (not with the `frozen-node-version` quirk).
    fn references_changed(&mut self, folder: &str) {
        if !folder.is_empty() && !self.quirks.get(Quirk::FrozenNodeVersion) {
            *self.versions.entry(folder.to_owned()).or_default() += 1;
        }
    }

    /// A folder's NodeVersion, when folders have one (`node_version = true`).
    pub(crate) fn node_version(&self, folder: &str) -> Option<String> {
        let is_folder = self.nodes.get(folder).is_some_and(|n| n.variable.is_none());
        (self.node_version && is_folder)
            .then(|| self.versions.get(folder).copied().unwrap_or(0).to_string())
    }

    /// Removes a node and everything below it; returns how many nodes went.
    pub(crate) fn remove_node(&mut self, id: &str) -> Result<usize, String> {
        if !self.nodes.contains_key(id) {
            return Err(format!("no node {id:?}"));
        }
        let mut stack = vec![id.to_owned()];
        let mut removed = 0;
        while let Some(next) = stack.pop() {
            if self.nodes.remove(&next).is_some() {
                removed += 1;
            }
            if let Some(kids) = self.children.remove(&next) {
                stack.extend(kids);
            }
        }
        if let Some(siblings) = self.children.get_mut(Self::parent_of(id)) {
            siblings.remove(id);
        }
        self.references_changed(Self::parent_of(id));
        Ok(removed)
    }

    /// Advances every ticking variable once.
    pub(crate) fn tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        let n = self.ticks;
        for node in self.nodes.values_mut() {
            if let Some(var) = node.variable.as_mut()
                && let Some(tick) = var.tick
            {
                var.value = ticked(&var.value, tick, n);
            }
        }
    }
}

pub(crate) fn sine(n: u64) -> f64 {
    50.0 + 50.0 * (std::f64::consts::TAU * (n % 60) as f64 / 60.0).sin()
}

pub(crate) fn ticked(value: &Variant, tick: Tick, n: u64) -> Variant {
    if let Tick::Clock = tick {
        return Variant::DateTime(Box::new(DateTime::now()));
    }
    let s = sine(n);
    match (value, tick) {
        (Variant::Boolean(b), _) => Variant::Boolean(!b),
        (Variant::SByte(v), Tick::Counter) => Variant::SByte(v.wrapping_add(1)),
        (Variant::Byte(v), Tick::Counter) => Variant::Byte(v.wrapping_add(1)),
        (Variant::Int16(v), Tick::Counter) => Variant::Int16(v.wrapping_add(1)),
        (Variant::UInt16(v), Tick::Counter) => Variant::UInt16(v.wrapping_add(1)),
        (Variant::Int32(v), Tick::Counter) => Variant::Int32(v.wrapping_add(1)),
        (Variant::UInt32(v), Tick::Counter) => Variant::UInt32(v.wrapping_add(1)),
        (Variant::Int64(v), Tick::Counter) => Variant::Int64(v.wrapping_add(1)),
        (Variant::UInt64(v), Tick::Counter) => Variant::UInt64(v.wrapping_add(1)),
        (Variant::Float(v), Tick::Counter) => Variant::Float(v + 1.0),
        (Variant::Double(v), Tick::Counter) => Variant::Double(v + 1.0),
        (Variant::SByte(_), Tick::Sine) => Variant::SByte(s.round() as i8),
        (Variant::Byte(_), Tick::Sine) => Variant::Byte(s.round() as u8),
        (Variant::Int16(_), Tick::Sine) => Variant::Int16(s.round() as i16),
        (Variant::UInt16(_), Tick::Sine) => Variant::UInt16(s.round() as u16),
        (Variant::Int32(_), Tick::Sine) => Variant::Int32(s.round() as i32),
        (Variant::UInt32(_), Tick::Sine) => Variant::UInt32(s.round() as u32),
        (Variant::Int64(_), Tick::Sine) => Variant::Int64(s.round() as i64),
        (Variant::UInt64(_), Tick::Sine) => Variant::UInt64(s.round() as u64),
        (Variant::Float(_), Tick::Sine) => Variant::Float(s as f32),
        (Variant::Double(_), Tick::Sine) => Variant::Double(s),
        (other, _) => other.clone(),
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("a node id is 1..={MAX_ID_LEN} bytes"));
    }
    if id.starts_with('.') || id.ends_with('.') || id.contains("..") {
        return Err(format!(
            "node id {id:?}: dots separate path segments (Folder.Sub.Name), none may be empty"
        ));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "node id {id:?} must not contain whitespace or control characters"
        ));
    }
    if id.contains('#') {
        return Err(format!(
            "node id {id:?} must not contain '#' (the quirks' generated nodes use it)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua_types::ByteString;

    #[test]
    fn the_demo_parses() {
        let state = OpcuaState::from_toml(MIXER_DEMO_TOML).expect("demo parses");
        assert!(state.node("Mixer.Setpoints").is_some());
        assert!(state.node("Mixer.Runtime").is_some());
        assert!(
            state
                .nodes
                .values()
                .filter_map(|n| n.variable.as_ref())
                .any(|v| v.tick.is_some())
        );
        assert_eq!(state.namespace_index(), 2);
        assert!(Quirk::ALL.iter().all(|q| !state.quirks().get(*q)));
    }

    #[test]
    fn nodes_need_their_parent_folder() {
        let bad = [
            "[[variable]]\nid = \"A.B\"\ntype = \"Double\"\nvalue = 1.0\n",
            "[[folder]]\nid = \"A\"\n[[variable]]\nid = \"A.B\"\ntype = \"Double\"\nvalue = 1\n[[variable]]\nid = \"A.B.C\"\ntype = \"Double\"\nvalue = 1\n",
            "[[folder]]\nid = \"A\"\n[[folder]]\nid = \"A\"\n",
            "[[folder]]\nid = \"A..B\"\n",
            "[[variable]]\nid = \"X\"\ntype = \"Int16\"\nvalue = 70000\n",
            "[[variable]]\nid = \"X\"\ntype = \"Double\"\nvalue = \"a\"\n",
            "[[variable]]\nid = \"X\"\ntype = \"Quad\"\nvalue = 1\n",
            "[[variable]]\nid = \"X\"\ntype = \"String\"\nvalue = \"a\"\ntick = \"sine\"\n",
            "[quirks]\nfly = true\n",
            "colour = 1\n",
            "[security]\nanonymous = false\n",
        ];
        for text in bad {
            assert!(OpcuaState::from_toml(text).is_err(), "accepted: {text}");
        }
    }

    #[test]
    fn values_are_typed_and_tick() {
        let mut state = OpcuaState::from_toml(
            "[[folder]]\nid = \"F\"\n\
             [[variable]]\nid = \"F.Count\"\ntype = \"UInt16\"\nvalue = 65535\ntick = \"counter\"\n\
             [[variable]]\nid = \"F.Wave\"\ntype = \"Double\"\nvalue = 0.0\ntick = \"sine\"\n\
             [[variable]]\nid = \"F.List\"\ntype = \"Int32\"\nvalue = [1, -2, 3]\n\
             [[variable]]\nid = \"F.Bytes\"\ntype = \"ByteString\"\nvalue = \"0a0b\"\n",
        )
        .expect("state parses");
        state.tick();
        assert_eq!(state.value("F.Count"), Some(&Variant::UInt16(0)));
        assert!(
            matches!(state.value("F.Wave"), Some(Variant::Double(v)) if (*v - 55.226).abs() < 0.01)
        );
        assert!(matches!(state.value("F.List"), Some(Variant::Array(a)) if a.values.len() == 3));
        assert_eq!(
            state.value("F.Bytes"),
            Some(&Variant::ByteString(ByteString::from(vec![10u8, 11])))
        );
        assert_eq!(state.remove_node("F"), Ok(5));
        assert_eq!(state.node_count(), 0);
    }
}
