//! The OPC UA simulator's state: server settings, the PLC's nodes and the quirks. The file
//! format is documented on the [`opcua`](super) module.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use opcua_types::{
    ByteString, DateTime, LocalizedText, UAString, Variant, VariantScalarTypeId, array::Array,
};
use serde::Deserialize;

use crate::runtime::{QuirkName, QuirkSet};

use super::certs::ServerCertificate;

/// The embedded demo state (a batch mixer behind an S7-1500-like OPC UA server).
pub const MIXER_DEMO_TOML: &str = include_str!("../../states/opcua-mixer.toml");

/// Longest node identifier accepted in a state file or a command.
pub const MAX_ID_LEN: usize = 512;
/// Most nodes a state may hold (the bench uses a few thousand).
pub const MAX_NODES: usize = 200_000;
/// Longest array value accepted.
pub const MAX_ARRAY_LEN: usize = 10_000;

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type.
    #[error("invalid state file: {0}")]
    Toml(#[from] toml::de::Error),
    /// Valid TOML that does not describe a device.
    #[error("invalid state: {0}")]
    Invalid(String),
}

fn invalid(text: impl Into<String>) -> StateError {
    StateError::Invalid(text.into())
}

/// The scalar types a simulated variable can have (OPC UA built-in types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Boolean (i=1).
    Boolean,
    /// SByte (i=2).
    SByte,
    /// Byte (i=3).
    Byte,
    /// Int16 (i=4).
    Int16,
    /// UInt16 (i=5).
    UInt16,
    /// Int32 (i=6).
    Int32,
    /// UInt32 (i=7).
    UInt32,
    /// Int64 (i=8).
    Int64,
    /// UInt64 (i=9).
    UInt64,
    /// Float (i=10).
    Float,
    /// Double (i=11).
    Double,
    /// String (i=12).
    String,
    /// DateTime (i=13).
    DateTime,
    /// ByteString (i=15).
    ByteString,
    /// LocalizedText (i=21).
    LocalizedText,
}

impl ValueType {
    /// Every type, for messages.
    pub const ALL: [ValueType; 15] = [
        ValueType::Boolean,
        ValueType::SByte,
        ValueType::Byte,
        ValueType::Int16,
        ValueType::UInt16,
        ValueType::Int32,
        ValueType::UInt32,
        ValueType::Int64,
        ValueType::UInt64,
        ValueType::Float,
        ValueType::Double,
        ValueType::String,
        ValueType::DateTime,
        ValueType::ByteString,
        ValueType::LocalizedText,
    ];

    /// The type's name as written in state files and commands.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Boolean => "Boolean",
            ValueType::SByte => "SByte",
            ValueType::Byte => "Byte",
            ValueType::Int16 => "Int16",
            ValueType::UInt16 => "UInt16",
            ValueType::Int32 => "Int32",
            ValueType::UInt32 => "UInt32",
            ValueType::Int64 => "Int64",
            ValueType::UInt64 => "UInt64",
            ValueType::Float => "Float",
            ValueType::Double => "Double",
            ValueType::String => "String",
            ValueType::DateTime => "DateTime",
            ValueType::ByteString => "ByteString",
            ValueType::LocalizedText => "LocalizedText",
        }
    }

    /// Parses a type name (ASCII case ignored).
    pub fn parse(text: &str) -> Option<ValueType> {
        ValueType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(text))
    }

    /// The variant type, which is also the numeric id of the DataType node in namespace 0.
    pub fn scalar_type(self) -> VariantScalarTypeId {
        match self {
            ValueType::Boolean => VariantScalarTypeId::Boolean,
            ValueType::SByte => VariantScalarTypeId::SByte,
            ValueType::Byte => VariantScalarTypeId::Byte,
            ValueType::Int16 => VariantScalarTypeId::Int16,
            ValueType::UInt16 => VariantScalarTypeId::UInt16,
            ValueType::Int32 => VariantScalarTypeId::Int32,
            ValueType::UInt32 => VariantScalarTypeId::UInt32,
            ValueType::Int64 => VariantScalarTypeId::Int64,
            ValueType::UInt64 => VariantScalarTypeId::UInt64,
            ValueType::Float => VariantScalarTypeId::Float,
            ValueType::Double => VariantScalarTypeId::Double,
            ValueType::String => VariantScalarTypeId::String,
            ValueType::DateTime => VariantScalarTypeId::DateTime,
            ValueType::ByteString => VariantScalarTypeId::ByteString,
            ValueType::LocalizedText => VariantScalarTypeId::LocalizedText,
        }
    }

    /// The numeric id of the type's DataType node (namespace 0).
    pub fn data_type_id(self) -> u32 {
        self.scalar_type() as u32
    }

    fn is_float(self) -> bool {
        matches!(self, ValueType::Float | ValueType::Double)
    }

    fn is_integer(self) -> bool {
        matches!(
            self,
            ValueType::SByte
                | ValueType::Byte
                | ValueType::Int16
                | ValueType::UInt16
                | ValueType::Int32
                | ValueType::UInt32
                | ValueType::Int64
                | ValueType::UInt64
        )
    }

    /// Converts a TOML value (a scalar of this type, or an array of them) to a variant.
    pub fn convert(self, value: &toml::Value) -> Result<Variant, String> {
        if let toml::Value::Array(items) = value {
            if items.len() > MAX_ARRAY_LEN {
                return Err(format!(
                    "array of {} elements; at most {MAX_ARRAY_LEN}",
                    items.len()
                ));
            }
            let values = items
                .iter()
                .map(|item| match item {
                    toml::Value::Array(_) => Err("nested arrays are not supported".to_owned()),
                    scalar => self.scalar(scalar),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let array = Array::new(self.scalar_type(), values).map_err(|e| format!("{e:?}"))?;
            return Ok(Variant::Array(Box::new(array)));
        }
        self.scalar(value)
    }

    fn scalar(self, value: &toml::Value) -> Result<Variant, String> {
        let wrong = || format!("{value} is not a {} value", self.name());
        match (self, value) {
            (ValueType::Boolean, toml::Value::Boolean(b)) => Ok(Variant::Boolean(*b)),
            (t, toml::Value::Integer(n)) if t.is_integer() => {
                let n = *n;
                let out_of_range = || format!("{n} is out of range for {}", t.name());
                Ok(match t {
                    ValueType::SByte => {
                        Variant::SByte(i8::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::Byte => Variant::Byte(u8::try_from(n).map_err(|_| out_of_range())?),
                    ValueType::Int16 => {
                        Variant::Int16(i16::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::UInt16 => {
                        Variant::UInt16(u16::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::Int32 => {
                        Variant::Int32(i32::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::UInt32 => {
                        Variant::UInt32(u32::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::Int64 => Variant::Int64(n),
                    _ => Variant::UInt64(u64::try_from(n).map_err(|_| out_of_range())?),
                })
            }
            (ValueType::Float, toml::Value::Float(f)) => Ok(Variant::Float(*f as f32)),
            (ValueType::Float, toml::Value::Integer(n)) => Ok(Variant::Float(*n as f32)),
            (ValueType::Double, toml::Value::Float(f)) => Ok(Variant::Double(*f)),
            (ValueType::Double, toml::Value::Integer(n)) => Ok(Variant::Double(*n as f64)),
            (ValueType::String, toml::Value::String(s)) => {
                Ok(Variant::String(UAString::from(s.as_str())))
            }
            (ValueType::LocalizedText, toml::Value::String(s)) => {
                Ok(Variant::LocalizedText(Box::new(LocalizedText::new("", s))))
            }
            (ValueType::DateTime, toml::Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|d| Variant::DateTime(Box::new(d)))
                .map_err(|e| format!("{s:?} is not an RFC 3339 date and time: {e}")),
            (ValueType::DateTime, toml::Value::Datetime(d)) => {
                DateTime::parse_from_rfc3339(&d.to_string())
                    .map(|d| Variant::DateTime(Box::new(d)))
                    .map_err(|e| format!("{d} is not a full date and time with offset: {e}"))
            }
            (ValueType::ByteString, toml::Value::String(s)) => parse_hex(s)
                .map(|bytes| Variant::ByteString(ByteString::from(bytes)))
                .ok_or_else(|| format!("{s:?} is not hex bytes (e.g. \"0a1b2c\")")),
            _ => Err(wrong()),
        }
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

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
    fn parse(text: &str, vtype: ValueType) -> Result<Tick, String> {
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
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawState = toml::from_str(&text)?;
        raw.build(path.parent())
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
        Ok(())
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

fn sine(n: u64) -> f64 {
    50.0 + 50.0 * (std::f64::consts::TAU * (n % 60) as f64 / 60.0).sin()
}

fn ticked(value: &Variant, tick: Tick, n: u64) -> Variant {
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

fn check_id(id: &str) -> Result<(), String> {
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

// ---------------------------------------------------------------- parsing

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    tick_ms: Option<u64>,
    application_name: Option<String>,
    application_uri: Option<String>,
    namespace_uri: Option<String>,
    #[serde(default)]
    extra_namespaces: Vec<String>,
    pki_dir: Option<PathBuf>,
    build_info: Option<RawBuildInfo>,
    limits: Option<RawLimits>,
    security: Option<RawSecurity>,
    #[serde(default)]
    quirks: BTreeMap<String, toml::Value>,
    #[serde(default)]
    folder: Vec<RawFolder>,
    #[serde(default)]
    variable: Vec<RawVariable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuildInfo {
    product_uri: String,
    manufacturer_name: String,
    product_name: String,
    software_version: String,
    build_number: String,
    build_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_nodes_per_read: Option<u32>,
    max_nodes_per_browse: Option<u32>,
    max_references_per_node: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    modes: Option<Vec<String>>,
    policies: Option<Vec<String>>,
    anonymous: Option<bool>,
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFolder {
    id: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    id: String,
    name: Option<String>,
    #[serde(rename = "type")]
    vtype: String,
    value: toml::Value,
    tick: Option<String>,
    readable: Option<bool>,
}

/// The policies the simulator offers unless told otherwise.
pub const DEFAULT_POLICIES: [&str; 3] = [
    "Basic256Sha256",
    "Aes128Sha256RsaOaep",
    "Aes256Sha256RsaPss",
];

fn last_segment(id: &str) -> String {
    id.rsplit('.').next().unwrap_or(id).to_owned()
}

/// Builds a variable node from its parts (shared by the state file and the `add` command).
pub(crate) fn variable_node(
    id: &str,
    vtype: &str,
    value: &toml::Value,
    tick: Option<&str>,
    readable: bool,
    name: Option<String>,
) -> Result<PlcNode, String> {
    let vtype = ValueType::parse(vtype).ok_or_else(|| {
        format!(
            "{id}: type {vtype:?} is not one of {}",
            ValueType::ALL.map(ValueType::name).join(", ")
        )
    })?;
    let value = vtype.convert(value).map_err(|e| format!("{id}: {e}"))?;
    let tick = tick
        .map(|t| Tick::parse(t, vtype))
        .transpose()
        .map_err(|e| format!("{id}: {e}"))?;
    Ok(PlcNode {
        name: name.unwrap_or_else(|| last_segment(id)),
        variable: Some(VariableNode {
            vtype,
            value,
            tick,
            readable,
        }),
    })
}

/// A folder node.
pub(crate) fn folder_node(id: &str, name: Option<String>) -> PlcNode {
    PlcNode {
        name: name.unwrap_or_else(|| last_segment(id)),
        variable: None,
    }
}

impl RawState {
    fn build(self, base: Option<&Path>) -> Result<OpcuaState, StateError> {
        let build_info = match self.build_info {
            Some(b) => {
                DateTime::parse_from_rfc3339(&b.build_date).map_err(|e| {
                    invalid(format!(
                        "build_info.build_date {:?} is not RFC 3339: {e}",
                        b.build_date
                    ))
                })?;
                BuildInfo {
                    product_uri: b.product_uri,
                    manufacturer_name: b.manufacturer_name,
                    product_name: b.product_name,
                    software_version: b.software_version,
                    build_number: b.build_number,
                    build_date: b.build_date,
                }
            }
            None => BuildInfo {
                product_uri: "urn:otdrift:sim".into(),
                manufacturer_name: "otdrift".into(),
                product_name: "otdrift OPC UA simulator".into(),
                software_version: env!("CARGO_PKG_VERSION").into(),
                build_number: "0".into(),
                build_date: "2025-01-01T00:00:00Z".into(),
            },
        };
        let limits = {
            let raw = self.limits;
            let get = |f: fn(&RawLimits) -> Option<u32>, default: u32| {
                raw.as_ref().and_then(f).unwrap_or(default)
            };
            Limits {
                max_nodes_per_read: get(|l| l.max_nodes_per_read, 1000),
                max_nodes_per_browse: get(|l| l.max_nodes_per_browse, 500),
                max_references_per_node: get(|l| l.max_references_per_node, 1000),
            }
        };
        if limits.max_nodes_per_read == 0
            || limits.max_nodes_per_browse == 0
            || limits.max_references_per_node == 0
        {
            return Err(invalid("limits must be at least 1"));
        }
        let security = match self.security {
            None => Security {
                modes: [Mode::None, Mode::Sign, Mode::SignAndEncrypt].into(),
                policies: DEFAULT_POLICIES.map(str::to_owned).to_vec(),
                anonymous: true,
                users: BTreeMap::new(),
            },
            Some(raw) => {
                let mut modes = BTreeSet::new();
                for mode in raw.modes.unwrap_or_else(|| {
                    vec!["none".into(), "sign".into(), "sign-and-encrypt".into()]
                }) {
                    modes.insert(match mode.as_str() {
                        "none" => Mode::None,
                        "sign" => Mode::Sign,
                        "sign-and-encrypt" => Mode::SignAndEncrypt,
                        other => {
                            return Err(invalid(format!(
                                "security.modes: {other:?}; expected none, sign or sign-and-encrypt"
                            )));
                        }
                    });
                }
                if modes.is_empty() {
                    return Err(invalid("security.modes must name at least one mode"));
                }
                let policies = raw
                    .policies
                    .unwrap_or_else(|| DEFAULT_POLICIES.map(str::to_owned).to_vec());
                for policy in &policies {
                    if !DEFAULT_POLICIES.contains(&policy.as_str()) {
                        return Err(invalid(format!(
                            "security.policies: {policy:?}; expected one of {}",
                            DEFAULT_POLICIES.join(", ")
                        )));
                    }
                }
                let mut users = BTreeMap::new();
                for user in raw.user {
                    if user.name.is_empty() {
                        return Err(invalid("security.user: empty name"));
                    }
                    if users.insert(user.name.clone(), user.password).is_some() {
                        return Err(invalid(format!("security.user {:?} twice", user.name)));
                    }
                }
                let anonymous = raw.anonymous.unwrap_or(true);
                if !anonymous && users.is_empty() {
                    return Err(invalid(
                        "security: anonymous = false needs at least one [[security.user]]",
                    ));
                }
                Security {
                    modes,
                    policies,
                    anonymous,
                    users,
                }
            }
        };
        let application_uri = self
            .application_uri
            .unwrap_or_else(|| "urn:otdrift:sim:opcua".into());
        let namespace_uri = self
            .namespace_uri
            .unwrap_or_else(|| "urn:otdrift:sim:plc".into());
        let mut seen = BTreeSet::from(["http://opcfoundation.org/UA/".to_owned()]);
        for uri in std::iter::once(&application_uri)
            .chain(&self.extra_namespaces)
            .chain(std::iter::once(&namespace_uri))
        {
            if uri.is_empty() || !seen.insert(uri.clone()) {
                return Err(invalid(format!(
                    "namespace URI {uri:?} is empty or used twice"
                )));
            }
        }
        let mut state = OpcuaState {
            tick_ms: self.tick_ms.unwrap_or(1000),
            application_name: self
                .application_name
                .unwrap_or_else(|| "otdrift OPC UA simulator".into()),
            application_uri,
            namespace_uri,
            extra_namespaces: self.extra_namespaces,
            build_info,
            limits,
            security,
            quirks: Quirks::default(),
            nodes: BTreeMap::new(),
            children: BTreeMap::new(),
            ticks: 0,
            certificate: CertificateSlot {
                dir: self.pki_dir.map(|dir| match base {
                    Some(base) if dir.is_relative() => base.join(dir),
                    _ => dir,
                }),
                current: Arc::default(),
            },
        };
        // Folders first, shortest ids first, so parents exist before their children.
        let mut folders = self.folder;
        folders.sort_by_key(|f| f.id.matches('.').count());
        for folder in folders {
            let node = folder_node(&folder.id, folder.name);
            state.add_node(&folder.id, node).map_err(invalid)?;
        }
        for var in self.variable {
            let node = variable_node(
                &var.id,
                &var.vtype,
                &var.value,
                var.tick.as_deref(),
                var.readable.unwrap_or(true),
                var.name,
            )
            .map_err(invalid)?;
            state.add_node(&var.id, node).map_err(invalid)?;
        }
        crate::runtime::verbs::apply_file_quirks::<super::OpcuaSimulator>(&mut state, &self.quirks)
            .map_err(invalid)?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
