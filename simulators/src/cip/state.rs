//! The simulated Logix controller's project: identity, programs, UDTs, tags and values,
//! with the layouts a real controller derives from them (BOOL packing, alignment, template
//! definitions, structure handles, symbol type words).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::runtime::verbs::apply_file_quirks;
use crate::runtime::{QuirkName, QuirkSet};

/// The embedded demo state (`simulators/states/cip-oven.toml`).
pub const OVEN_DEMO_TOML: &str = include_str!("../../states/cip-oven.toml");

/// The template instance and structure handle of the predefined STRING type (82 characters).
pub(crate) const STRING_TEMPLATE: u16 = 0x0FCE;
/// Capacity of the predefined STRING.
pub(crate) const STRING_CAPACITY: usize = 82;
/// First template instance given to user-defined types.
const FIRST_UDT_TEMPLATE: u16 = 0x100;
/// Deepest UDT nesting accepted.
const MAX_NESTING: usize = 8;
/// Largest array accepted in a state file or command.
const MAX_ELEMENTS: u64 = 100_000;

/// Why a state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read CIP state file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// Not valid TOML, or unknown keys.
    #[error("invalid CIP state: {0}")]
    Toml(#[from] toml::de::Error),
    /// Valid TOML, but not a valid controller.
    #[error("invalid CIP state: {0}")]
    Invalid(String),
}

pub(crate) fn invalid(text: impl Into<String>) -> StateError {
    StateError::Invalid(text.into())
}

/// A data type: atomic, the predefined STRING, or a user-defined type by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ty {
    /// An atomic type code (0xC1 BOOL .. 0xCB LREAL).
    Atomic(u8),
    /// The predefined STRING.
    String,
    /// A UDT by name.
    Udt(String),
}

/// Atomic types by name.
pub(crate) fn atomic_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_uppercase().as_str() {
        "BOOL" => 0xC1,
        "SINT" => 0xC2,
        "INT" => 0xC3,
        "DINT" => 0xC4,
        "LINT" => 0xC5,
        "USINT" => 0xC6,
        "UINT" => 0xC7,
        "UDINT" => 0xC8,
        "ULINT" => 0xC9,
        "REAL" => 0xCA,
        "LREAL" => 0xCB,
        _ => return None,
    })
}

/// Size of an atomic element.
pub(crate) fn atomic_size(code: u8) -> usize {
    match code {
        0xC1 | 0xC2 | 0xC6 => 1,
        0xC3 | 0xC7 => 2,
        0xC5 | 0xC9 | 0xCB => 8,
        _ => 4,
    }
}

fn atomic_name(code: u8) -> &'static str {
    match code {
        0xC1 => "BOOL",
        0xC2 => "SINT",
        0xC3 => "INT",
        0xC4 => "DINT",
        0xC5 => "LINT",
        0xC6 => "USINT",
        0xC7 => "UINT",
        0xC8 => "UDINT",
        0xC9 => "ULINT",
        0xCA => "REAL",
        _ => "LREAL",
    }
}

impl Ty {
    /// Parses `DINT`, `STRING` or a UDT name.
    pub(crate) fn parse(name: &str) -> Ty {
        if let Some(code) = atomic_code(name) {
            Ty::Atomic(code)
        } else if name.eq_ignore_ascii_case("STRING") {
            Ty::String
        } else {
            Ty::Udt(name.to_owned())
        }
    }

    /// The type's name.
    pub(crate) fn name(&self) -> String {
        match self {
            Ty::Atomic(code) => atomic_name(*code).to_owned(),
            Ty::String => "STRING".to_owned(),
            Ty::Udt(name) => name.clone(),
        }
    }
}

/// A value of the simulated controller.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    /// BOOL.
    Bool(bool),
    /// Any integer type.
    Int(i128),
    /// REAL or LREAL.
    Real(f64),
    /// STRING.
    Str(String),
    /// An array (flattened, row-major).
    List(Vec<Val>),
    /// A UDT.
    Struct(BTreeMap<String, Val>),
}

/// One member of a UDT as defined.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UdtMember {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: Ty,
    /// Array length (0 = scalar).
    pub dims: u16,
}

/// A user-defined type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Udt {
    /// Name.
    pub name: String,
    /// Members in definition order.
    pub members: Vec<UdtMember>,
}

/// A program.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Program {
    /// Name.
    pub name: String,
    /// Routine names.
    pub routines: Vec<String>,
    /// Symbol instance of the program symbol.
    pub instance: u32,
}

/// How a tag moves by itself (a process value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    /// +1 per tick.
    Counter,
    /// 50 + 10·sin(2π·n/60).
    Sine,
}

/// A tag.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tag {
    /// `None` = controller scope, else the program.
    pub scope: Option<String>,
    /// Name.
    pub name: String,
    /// Element type.
    pub ty: Ty,
    /// Array dimensions (up to 3).
    pub dims: Vec<u32>,
    /// The value.
    pub value: Val,
    /// Ticking behaviour.
    pub tick: Option<Tick>,
    /// Symbol instance.
    pub instance: u32,
}

/// The simulated device's identity (Identity object, class 0x01).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub vendor_id: u16,
    pub device_type: u16,
    pub product_code: u16,
    pub major: u8,
    pub minor: u8,
    pub status: u16,
    pub serial: u32,
    pub product_name: String,
}

/// A quirk: a way real devices differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quirk {
    /// Accept requests, never answer.
    Stall,
    /// One-shot: close the session on the next CIP request (then switch off).
    DropSession,
    /// Firmware before v20: no AuditValue / ChangesToDetect tags.
    NoAudit,
    /// Multiple Service Packet answered "service not supported" (0x08).
    NoMultiService,
    /// Large Forward Open answered "service not supported" (0x08).
    NoLargeForwardOpen,
    /// Every Forward Open refused: out of connections (0x01 / 0x0113).
    NoConnections,
    /// Get Instance Attribute List answered "service not supported" (0x08).
    NoBrowse,
    /// Get Instance Attribute List closes the session.
    BrowseDropsSession,
    /// Symbol listings answered 3 symbols per page.
    PartialPaging,
    /// Multiple Service Packet answered without its count and offsets.
    MspNoHeader,
    /// Identity answered with a fixed placeholder (vendor 0, product 0, serial 0).
    PlaceholderIdentity,
    /// Every reply's data item announces 7 bytes more than it carries.
    Malformed,
    /// Every message-router service (embedded ones too, not the connection manager's)
    /// answered with one general status, 0x08 unless set (`quirk refuse-all on 0x05`).
    RefuseAll,
    /// Reads of the named, listed tags answered with a general status (0x05 unless set:
    /// `quirk refuse-tag on Oven_SP 0x04`).
    RefuseTag,
    /// Every message-router request, a Multiple Service Packet as a whole too, answered
    /// "resource unavailable" (0x02).
    Busy,
    /// Multiple Service Packet replies whose last offset points past the end of the reply.
    BrokenMsp,
    /// Connected replies carry the O->T connection id (as cpppo does) instead of the T->O id.
    ForeignConnectionId,
    /// No program-name object: Get Attributes All on class 0x64 answered 0x08.
    NoProgramName,
    /// The wall clock answered as cpppo does: attribute 0x0B with status 0x16, no count.
    GarbledClock,
    /// Get Instance Attribute List answered with encapsulation status 0x0008 and no reply,
    /// then the connection closed (as cpppo does).
    BrowseEncapUnsupported,
    /// Read Template answered "path destination unknown" (0x05) for every template.
    RefuseTemplate,
}

impl QuirkName for Quirk {
    const ALL: &'static [Quirk] = &[
        Quirk::Stall,
        Quirk::DropSession,
        Quirk::NoAudit,
        Quirk::NoMultiService,
        Quirk::NoLargeForwardOpen,
        Quirk::NoConnections,
        Quirk::NoBrowse,
        Quirk::BrowseDropsSession,
        Quirk::PartialPaging,
        Quirk::MspNoHeader,
        Quirk::PlaceholderIdentity,
        Quirk::Malformed,
        Quirk::RefuseAll,
        Quirk::RefuseTag,
        Quirk::Busy,
        Quirk::BrokenMsp,
        Quirk::ForeignConnectionId,
        Quirk::NoProgramName,
        Quirk::GarbledClock,
        Quirk::BrowseEncapUnsupported,
        Quirk::RefuseTemplate,
    ];

    /// The name used by `quirk NAME on|off` and in the state file (with `_` for `-`).
    fn name(self) -> &'static str {
        match self {
            Quirk::Stall => "stall",
            Quirk::DropSession => "drop-session",
            Quirk::NoAudit => "no-audit",
            Quirk::NoMultiService => "no-multi-service",
            Quirk::NoLargeForwardOpen => "no-large-forward-open",
            Quirk::NoConnections => "no-connections",
            Quirk::NoBrowse => "no-browse",
            Quirk::BrowseDropsSession => "browse-drops-session",
            Quirk::PartialPaging => "partial-paging",
            Quirk::MspNoHeader => "msp-no-header",
            Quirk::PlaceholderIdentity => "placeholder-identity",
            Quirk::Malformed => "malformed",
            Quirk::RefuseAll => "refuse-all",
            Quirk::RefuseTag => "refuse-tag",
            Quirk::Busy => "busy",
            Quirk::BrokenMsp => "broken-msp",
            Quirk::ForeignConnectionId => "foreign-connection-id",
            Quirk::NoProgramName => "no-program-name",
            Quirk::GarbledClock => "garbled-clock",
            Quirk::BrowseEncapUnsupported => "browse-encap-unsupported",
            Quirk::RefuseTemplate => "refuse-template",
        }
    }
}

/// The general status `refuse-all` answers unless told otherwise: service not supported.
pub const DEFAULT_REFUSE_ALL_STATUS: u8 = 0x08;
/// The general status `refuse-tag` answers unless told otherwise: path destination unknown,
/// the status that would pass for "no such tag" if the tag list did not list it.
pub const DEFAULT_REFUSE_TAG_STATUS: u8 = 0x05;

/// The argument of the quirks that take one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuirkArg {
    /// `refuse-all`: the general status every service gets.
    Status(u8),
    /// `refuse-tag`: a tag (lower case, `program:p.tag` for program scope) and its status.
    Tag(String, u8),
}

/// The quirks switched on, with the parameters of those that take one.
pub type Quirks = QuirkSet<Quirk, QuirkArg>;

/// What the quirks with arguments say.
impl QuirkSet<Quirk, QuirkArg> {
    /// The general status every service gets while `refuse-all` is on.
    pub fn refuse_all_status(&self) -> Option<u8> {
        if !self.get(Quirk::RefuseAll) {
            return None;
        }
        Some(match self.arg(Quirk::RefuseAll) {
            Some(QuirkArg::Status(status)) => *status,
            _ => DEFAULT_REFUSE_ALL_STATUS,
        })
    }

    /// The general status reads of `tag` get while `refuse-tag` names it.
    pub fn refused_tag(&self, tag: &str) -> Option<u8> {
        let tag = tag.to_ascii_lowercase();
        self.args(Quirk::RefuseTag)
            .iter()
            .rev()
            .find_map(|arg| match arg {
                QuirkArg::Tag(name, status) if *name == tag => Some(*status),
                _ => None,
            })
    }
}

/// A laid-out UDT: what the Template object reports.
#[derive(Clone, Debug)]
pub(crate) struct TemplateLayout {
    pub instance: u16,
    pub size: u32,
    pub handle: u16,
    /// (name, type word, info, offset, bit) including hidden BOOL hosts.
    pub members: Vec<LaidMember>,
    /// The definition Read Template returns.
    pub definition: Vec<u8>,
}

/// A member with its place in the structure.
#[derive(Clone, Debug)]
pub(crate) struct LaidMember {
    pub name: String,
    pub ty: Option<Ty>,
    pub type_word: u16,
    pub info: u16,
    pub offset: u32,
    pub bit: Option<u8>,
    pub dims: u16,
}

/// The simulated controller.
#[derive(Clone, Debug)]
pub struct CipState {
    pub(crate) identity: Identity,
    pub(crate) name: String,
    pub(crate) slot: u8,
    pub(crate) tick_ms: u64,
    pub(crate) change_detection: bool,
    pub(crate) changes_to_detect: u64,
    pub(crate) audit_seed: u64,
    pub(crate) logic: u64,
    pub(crate) udts: Vec<Udt>,
    pub(crate) programs: Vec<Program>,
    pub(crate) tasks: Vec<String>,
    pub(crate) tags: Vec<Tag>,
    pub(crate) quirks: Quirks,
    pub(crate) next_instance: u32,
    pub(crate) ticks: u64,
    pub(crate) layouts: BTreeMap<String, TemplateLayout>,
}

impl CipState {
    /// Parses a state file's text (the format is in the module docs).
    ///
    /// # Errors
    /// Invalid TOML, unknown keys, unknown types, values that do not fit their type.
    pub fn from_toml(text: &str) -> Result<Self, StateError> {
        let raw: RawState = toml::from_str(text)?;
        raw.build()
    }

    /// Loads a state file.
    ///
    /// # Errors
    /// As [`from_toml`](Self::from_toml), or the file cannot be read.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The embedded demo: a CompactLogix 5380 running an oven line (two programs, recipe
    /// UDTs, setpoints, ticking process values).
    #[allow(clippy::expect_used)]
    pub fn demo() -> Self {
        Self::from_toml(OVEN_DEMO_TOML).expect("the embedded cip-oven.toml is valid (tested)")
    }

    /// The same state with another tick period (0 = ticks only on command).
    #[must_use]
    pub fn with_tick_ms(mut self, tick_ms: u64) -> Self {
        self.tick_ms = tick_ms;
        self
    }

    /// The backplane slot the controller answers in.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// The quirks switched on.
    pub fn quirks(&self) -> Quirks {
        self.quirks.clone()
    }

    /// The audit value the controller reports (derived from the project structure and the
    /// logic revision: see the module docs).
    pub fn audit_value(&self) -> u64 {
        let mut h = Fnv::new(self.audit_seed);
        h.str(&self.name);
        for udt in &self.udts {
            h.str(&udt.name);
            for m in &udt.members {
                h.str(&m.name);
                h.str(&m.ty.name());
                h.u64(u64::from(m.dims));
            }
        }
        for p in &self.programs {
            h.str(&p.name);
            for r in &p.routines {
                h.str(r);
            }
        }
        for t in &self.tasks {
            h.str(t);
        }
        for t in &self.tags {
            h.str(t.scope.as_deref().unwrap_or(""));
            h.str(&t.name);
            h.str(&t.ty.name());
            for d in &t.dims {
                h.u64(u64::from(*d));
            }
        }
        h.u64(self.logic);
        h.0
    }

    /// Whether the change-detection tags are present (firmware v20+ with the GSV rung).
    pub(crate) fn has_audit_tags(&self) -> bool {
        self.change_detection && !self.quirks.get(Quirk::NoAudit)
    }

    pub(crate) fn tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        let n = self.ticks;
        for tag in &mut self.tags {
            match tag.tick {
                None => {}
                Some(Tick::Counter) => bump(&mut tag.value),
                Some(Tick::Sine) => {
                    let v =
                        50.0 + 10.0 * (2.0 * std::f64::consts::PI * (n % 60) as f64 / 60.0).sin();
                    set_all_reals(&mut tag.value, v);
                }
            }
        }
    }

    pub(crate) fn fresh_instance(&mut self) -> u32 {
        self.next_instance += 1;
        self.next_instance
    }

    /// Recomputes UDT layouts (after a change of UDTs); fails on unknown or cyclic types.
    pub(crate) fn relayout(&mut self) -> Result<(), String> {
        let mut layouts = BTreeMap::new();
        for (i, udt) in self.udts.iter().enumerate() {
            let instance = FIRST_UDT_TEMPLATE + u16::try_from(i).map_err(|_| "too many UDTs")?;
            let layout = self.layout_udt(udt, instance, 0)?;
            layouts.insert(udt.name.to_ascii_lowercase(), layout);
        }
        self.layouts = layouts;
        Ok(())
    }

    fn udt(&self, name: &str) -> Option<&Udt> {
        self.udts.iter().find(|u| u.name.eq_ignore_ascii_case(name))
    }

    fn udt_index(&self, name: &str) -> Option<u16> {
        self.udts
            .iter()
            .position(|u| u.name.eq_ignore_ascii_case(name))
            .and_then(|i| u16::try_from(i).ok())
    }

    /// Alignment and size of a type.
    pub(crate) fn size_align(&self, ty: &Ty, depth: usize) -> Result<(u32, u32), String> {
        if depth > MAX_NESTING {
            return Err("UDTs nest too deeply (or contain themselves)".to_owned());
        }
        Ok(match ty {
            Ty::Atomic(code) => {
                let s = atomic_size(*code) as u32;
                (s, s)
            }
            Ty::String => (88, 4),
            Ty::Udt(name) => {
                let udt = self
                    .udt(name)
                    .ok_or_else(|| format!("unknown type {name}"))?;
                let layout = self.layout_udt(udt, 0, depth + 1)?;
                let align = self.max_align(udt, depth + 1)?;
                (layout.size, align)
            }
        })
    }

    fn max_align(&self, udt: &Udt, depth: usize) -> Result<u32, String> {
        let mut align = 4;
        for m in &udt.members {
            align = align.max(self.size_align(&m.ty, depth)?.1);
        }
        Ok(align)
    }

    fn type_word(&self, ty: &Ty) -> Result<u16, String> {
        Ok(match ty {
            Ty::Atomic(code) => u16::from(*code),
            Ty::String => 0x8000 | STRING_TEMPLATE,
            Ty::Udt(name) => {
                0x8000
                    | (FIRST_UDT_TEMPLATE
                        + self
                            .udt_index(name)
                            .ok_or_else(|| format!("unknown type {name}"))?)
            }
        })
    }

    fn layout_udt(&self, udt: &Udt, instance: u16, depth: usize) -> Result<TemplateLayout, String> {
        let mut members: Vec<LaidMember> = Vec::new();
        let mut offset: u32 = 0;
        let mut host: Option<(u32, u8)> = None; // (offset, next bit)
        let mut hosts = 0;
        for m in &udt.members {
            if m.ty == Ty::Atomic(0xC1) && m.dims == 0 {
                let (at, bit) = match host {
                    Some((at, bit)) if bit < 8 => (at, bit),
                    _ => {
                        let at = offset;
                        members.push(LaidMember {
                            name: format!("ZZZZZZZZZZ{}{hosts}", udt.name),
                            ty: None,
                            type_word: 0xC2,
                            info: 0,
                            offset: at,
                            bit: None,
                            dims: 0,
                        });
                        hosts += 1;
                        offset += 1;
                        (at, 0)
                    }
                };
                host = Some((at, bit + 1));
                members.push(LaidMember {
                    name: m.name.clone(),
                    ty: Some(m.ty.clone()),
                    type_word: 0xC1,
                    info: u16::from(bit),
                    offset: at,
                    bit: Some(bit),
                    dims: 0,
                });
                continue;
            }
            host = None;
            if m.ty == Ty::Atomic(0xC1) {
                return Err(format!(
                    "{}.{}: BOOL arrays inside a UDT are not simulated",
                    udt.name, m.name
                ));
            }
            let (size, align) = self.size_align(&m.ty, depth)?;
            offset = offset.div_ceil(align) * align;
            let mut type_word = self.type_word(&m.ty)?;
            if m.dims > 0 {
                type_word |= 0x2000;
            }
            members.push(LaidMember {
                name: m.name.clone(),
                ty: Some(m.ty.clone()),
                type_word,
                info: m.dims,
                offset,
                bit: None,
                dims: m.dims,
            });
            offset += size * u32::from(m.dims.max(1));
        }
        let align = self.max_align(udt, depth)?;
        let size = offset.max(1).div_ceil(align) * align;
        let mut definition = Vec::new();
        for m in &members {
            definition.extend_from_slice(&m.info.to_le_bytes());
            definition.extend_from_slice(&m.type_word.to_le_bytes());
            definition.extend_from_slice(&m.offset.to_le_bytes());
        }
        // After the name and ';': a type letter, then two access bytes per member (the
        // low two bits of the second are the external access; 0 = hidden), as pylogix
        // reads them. Never NUL or ';'.
        definition.extend_from_slice(format!("{};n", udt.name).as_bytes());
        for m in &members {
            definition.push(b'A');
            definition.push(if m.ty.is_some() { b'C' } else { b'@' });
        }
        definition.push(0);
        for m in &members {
            definition.extend_from_slice(m.name.as_bytes());
            definition.push(0);
        }
        // Logix pads the definition to whole 32-bit words.
        definition.resize(definition.len().div_ceil(4) * 4, 0);
        let mut h = Fnv::new(0);
        h.bytes(&definition);
        let handle =
            (h.0 as u16 ^ (h.0 >> 16) as u16 ^ (h.0 >> 32) as u16 ^ (h.0 >> 48) as u16).max(1);
        Ok(TemplateLayout {
            instance,
            size,
            handle,
            members,
            definition,
        })
    }

    /// The layout of a structure type (a UDT or STRING).
    pub(crate) fn layout_of(&self, ty: &Ty) -> Option<TemplateLayout> {
        match ty {
            Ty::String => Some(string_layout()),
            Ty::Udt(name) => self.layouts.get(&name.to_ascii_lowercase()).cloned(),
            Ty::Atomic(_) => None,
        }
    }

    /// The layout by template instance.
    pub(crate) fn layout_by_instance(&self, instance: u16) -> Option<TemplateLayout> {
        if instance == STRING_TEMPLATE {
            return Some(string_layout());
        }
        self.layouts
            .values()
            .find(|l| l.instance == instance)
            .cloned()
    }

    /// Symbol type word of a tag.
    pub(crate) fn symbol_type(&self, tag: &Tag) -> u16 {
        let base = self.type_word(&tag.ty).unwrap_or(0);
        base | ((tag.dims.len().min(3) as u16) << 13)
    }

    /// The default value of a type.
    pub(crate) fn default_value(&self, ty: &Ty, dims: &[u32]) -> Result<Val, String> {
        let one = self.default_scalar(ty, 0)?;
        let count = element_count(dims)?;
        Ok(if dims.is_empty() {
            one
        } else {
            Val::List(vec![one; count])
        })
    }

    fn default_scalar(&self, ty: &Ty, depth: usize) -> Result<Val, String> {
        if depth > MAX_NESTING {
            return Err("UDTs nest too deeply".to_owned());
        }
        Ok(match ty {
            Ty::Atomic(0xC1) => Val::Bool(false),
            Ty::Atomic(0xCA | 0xCB) => Val::Real(0.0),
            Ty::Atomic(_) => Val::Int(0),
            Ty::String => Val::Str(String::new()),
            Ty::Udt(name) => {
                let udt = self
                    .udt(name)
                    .ok_or_else(|| format!("unknown type {name}"))?;
                let mut map = BTreeMap::new();
                for m in &udt.members {
                    let v = self.default_scalar(&m.ty, depth + 1)?;
                    let v = if m.dims > 0 {
                        Val::List(vec![v; usize::from(m.dims)])
                    } else {
                        v
                    };
                    map.insert(m.name.clone(), v);
                }
                Val::Struct(map)
            }
        })
    }

    /// Encodes one element of `ty` as the controller stores it.
    pub(crate) fn encode(&self, ty: &Ty, value: &Val, out: &mut Vec<u8>) -> Result<(), String> {
        match (ty, value) {
            (Ty::Atomic(code), v) => encode_atomic(*code, v, out),
            (Ty::String, Val::Str(s)) => {
                let bytes = s.as_bytes();
                let len = bytes.len().min(STRING_CAPACITY);
                out.extend_from_slice(&(len as u32).to_le_bytes());
                out.extend_from_slice(&bytes[..len]);
                out.resize(out.len() + (STRING_CAPACITY - len) + 2, 0);
                Ok(())
            }
            (Ty::Udt(_), Val::Struct(map)) => {
                let layout = self.layout_of(ty).ok_or("unknown UDT")?;
                let start = out.len();
                out.resize(start + layout.size as usize, 0);
                for m in &layout.members {
                    let Some(mty) = &m.ty else { continue };
                    let Some(v) = map.get(&m.name) else { continue };
                    let at = start + m.offset as usize;
                    if let Some(bit) = m.bit {
                        if let Val::Bool(true) = v
                            && let Some(byte) = out.get_mut(at)
                        {
                            *byte |= 1 << bit;
                        }
                        continue;
                    }
                    let mut buf = Vec::new();
                    match v {
                        Val::List(items) if m.dims > 0 => {
                            for item in items {
                                self.encode(mty, item, &mut buf)?;
                            }
                        }
                        other => self.encode(mty, other, &mut buf)?,
                    }
                    let end = (at + buf.len()).min(out.len());
                    if let Some(slot) = out.get_mut(at..end) {
                        slot.copy_from_slice(&buf[..end - at]);
                    }
                }
                Ok(())
            }
            (ty, v) => Err(format!("value {v:?} does not fit type {}", ty.name())),
        }
    }

    /// Decodes one element of `ty` (for Write Tag, which a real controller applies).
    pub(crate) fn decode(&self, ty: &Ty, data: &[u8]) -> Result<Val, String> {
        match ty {
            Ty::Atomic(code) => decode_atomic(*code, data),
            Ty::String => {
                let len = data
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or("short STRING")?;
                let text = data
                    .get(4..4 + len.min(STRING_CAPACITY))
                    .ok_or("short STRING")?;
                Ok(Val::Str(String::from_utf8_lossy(text).into_owned()))
            }
            Ty::Udt(_) => {
                let layout = self.layout_of(ty).ok_or("unknown UDT")?;
                let mut map = BTreeMap::new();
                for m in &layout.members {
                    let Some(mty) = &m.ty else { continue };
                    let at = m.offset as usize;
                    if let Some(bit) = m.bit {
                        let byte = data.get(at).copied().ok_or("short structure")?;
                        map.insert(m.name.clone(), Val::Bool(byte & (1 << bit) != 0));
                        continue;
                    }
                    let (size, _) = self.size_align(mty, 0)?;
                    let size = size as usize;
                    if m.dims > 0 {
                        let mut items = Vec::new();
                        for i in 0..usize::from(m.dims) {
                            let chunk = data
                                .get(at + i * size..at + (i + 1) * size)
                                .ok_or("short structure")?;
                            items.push(self.decode(mty, chunk)?);
                        }
                        map.insert(m.name.clone(), Val::List(items));
                    } else {
                        let chunk = data.get(at..at + size).ok_or("short structure")?;
                        map.insert(m.name.clone(), self.decode(mty, chunk)?);
                    }
                }
                Ok(Val::Struct(map))
            }
        }
    }

    /// Finds a tag by scope and name (case-insensitive, like Logix).
    pub(crate) fn find_tag(&self, scope: Option<&str>, name: &str) -> Option<usize> {
        self.tags.iter().position(|t| {
            t.name.eq_ignore_ascii_case(name)
                && match (&t.scope, scope) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                }
        })
    }

    /// The program with this name.
    pub(crate) fn find_program(&self, name: &str) -> Option<usize> {
        self.programs
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Parses a value for a type from a TOML value (state files).
    pub(crate) fn value_from_toml(
        &self,
        ty: &Ty,
        dims: &[u32],
        v: &toml::Value,
    ) -> Result<Val, String> {
        if dims.is_empty() {
            return self.scalar_from_toml(ty, v, 0);
        }
        let count = element_count(dims)?;
        let mut flat = Vec::new();
        flatten(v, &mut flat);
        if flat.len() != count {
            return Err(format!("{} values given for {count} elements", flat.len()));
        }
        let items = flat
            .into_iter()
            .map(|x| self.scalar_from_toml(ty, x, 0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Val::List(items))
    }

    fn scalar_from_toml(&self, ty: &Ty, v: &toml::Value, depth: usize) -> Result<Val, String> {
        if depth > MAX_NESTING {
            return Err("values nest too deeply".to_owned());
        }
        match (ty, v) {
            (Ty::Atomic(0xC1), toml::Value::Boolean(b)) => Ok(Val::Bool(*b)),
            (Ty::Atomic(0xC1), toml::Value::Integer(i)) => Ok(Val::Bool(*i != 0)),
            (Ty::Atomic(0xCA | 0xCB), toml::Value::Float(f)) => Ok(Val::Real(*f)),
            (Ty::Atomic(0xCA | 0xCB), toml::Value::Integer(i)) => Ok(Val::Real(*i as f64)),
            (Ty::Atomic(code), toml::Value::Integer(i)) => {
                check_range(*code, i128::from(*i))?;
                Ok(Val::Int(i128::from(*i)))
            }
            (Ty::String, toml::Value::String(s)) => {
                if s.len() > STRING_CAPACITY {
                    return Err(format!("string of {} bytes exceeds 82", s.len()));
                }
                Ok(Val::Str(s.clone()))
            }
            (Ty::Udt(name), toml::Value::Table(table)) => {
                let udt = self
                    .udt(name)
                    .ok_or_else(|| format!("unknown type {name}"))?
                    .clone();
                let mut base = match self.default_scalar(ty, depth)? {
                    Val::Struct(map) => map,
                    _ => BTreeMap::new(),
                };
                for (key, value) in table {
                    let m = udt
                        .members
                        .iter()
                        .find(|m| m.name.eq_ignore_ascii_case(key))
                        .ok_or_else(|| format!("{name} has no member {key}"))?;
                    let dims: Vec<u32> = if m.dims > 0 {
                        vec![u32::from(m.dims)]
                    } else {
                        vec![]
                    };
                    let parsed = if dims.is_empty() {
                        self.scalar_from_toml(&m.ty, value, depth + 1)?
                    } else {
                        self.value_from_toml(&m.ty, &dims, value)?
                    };
                    base.insert(m.name.clone(), parsed);
                }
                Ok(Val::Struct(base))
            }
            (ty, v) => Err(format!("{v} is not a {}", ty.name())),
        }
    }

    /// Parses a command-line value for a type (`72.5`, `true`, `-3`, text for STRING).
    pub(crate) fn value_from_text(&self, ty: &Ty, text: &str) -> Result<Val, String> {
        match ty {
            Ty::Atomic(0xC1) => match text.to_ascii_lowercase().as_str() {
                "1" | "true" | "on" => Ok(Val::Bool(true)),
                "0" | "false" | "off" => Ok(Val::Bool(false)),
                _ => Err(format!("{text:?} is not a BOOL (0, 1, true, false)")),
            },
            Ty::Atomic(0xCA | 0xCB) => text
                .parse::<f64>()
                .map(Val::Real)
                .map_err(|_| format!("{text:?} is not a number")),
            Ty::Atomic(code) => {
                let n = text
                    .parse::<i128>()
                    .map_err(|_| format!("{text:?} is not an integer"))?;
                check_range(*code, n)?;
                Ok(Val::Int(n))
            }
            Ty::String => {
                let s = text.trim_matches('"');
                if s.len() > STRING_CAPACITY {
                    return Err("string longer than 82 characters".to_owned());
                }
                Ok(Val::Str(s.to_owned()))
            }
            Ty::Udt(name) => Err(format!("set the members of {name} one by one")),
        }
    }
}

/// The predefined STRING's template.
pub(crate) fn string_layout() -> TemplateLayout {
    let members = vec![
        LaidMember {
            name: "LEN".to_owned(),
            ty: Some(Ty::Atomic(0xC4)),
            type_word: 0xC4,
            info: 0,
            offset: 0,
            bit: None,
            dims: 0,
        },
        LaidMember {
            name: "DATA".to_owned(),
            ty: Some(Ty::Atomic(0xC2)),
            type_word: 0x20C2,
            info: STRING_CAPACITY as u16,
            offset: 4,
            bit: None,
            dims: STRING_CAPACITY as u16,
        },
    ];
    let mut definition = Vec::new();
    for m in &members {
        definition.extend_from_slice(&m.info.to_le_bytes());
        definition.extend_from_slice(&m.type_word.to_le_bytes());
        definition.extend_from_slice(&m.offset.to_le_bytes());
    }
    definition.extend_from_slice(b"ASCIISTRING82;nACAC\0LEN\0DATA\0");
    definition.resize(definition.len().div_ceil(4) * 4, 0);
    TemplateLayout {
        instance: STRING_TEMPLATE,
        size: 88,
        handle: STRING_TEMPLATE,
        members,
        definition,
    }
}

pub(crate) fn element_count(dims: &[u32]) -> Result<usize, String> {
    let n = dims
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(u64::from(*d)));
    match n {
        Some(n) if n <= MAX_ELEMENTS && !dims.contains(&0) => Ok(n as usize),
        _ => Err(format!(
            "array {dims:?} is larger than {MAX_ELEMENTS} elements or empty"
        )),
    }
}

fn flatten<'a>(v: &'a toml::Value, out: &mut Vec<&'a toml::Value>) {
    match v {
        toml::Value::Array(items) => {
            for item in items {
                flatten(item, out);
            }
        }
        other => out.push(other),
    }
}

fn check_range(code: u8, n: i128) -> Result<(), String> {
    let (lo, hi): (i128, i128) = match code {
        0xC2 => (i8::MIN.into(), i8::MAX.into()),
        0xC3 => (i16::MIN.into(), i16::MAX.into()),
        0xC4 => (i32::MIN.into(), i32::MAX.into()),
        0xC5 => (i64::MIN.into(), i64::MAX.into()),
        0xC6 => (0, u8::MAX.into()),
        0xC7 => (0, u16::MAX.into()),
        0xC8 => (0, u32::MAX.into()),
        _ => (0, u64::MAX.into()),
    };
    if n < lo || n > hi {
        return Err(format!("{n} is outside {}..={}", lo, hi));
    }
    Ok(())
}

fn encode_atomic(code: u8, v: &Val, out: &mut Vec<u8>) -> Result<(), String> {
    let int = |v: &Val| -> Result<i128, String> {
        match v {
            Val::Int(i) => Ok(*i),
            Val::Bool(b) => Ok(i128::from(*b)),
            Val::Real(f) => Ok(*f as i128),
            other => Err(format!("{other:?} is not a number")),
        }
    };
    match code {
        0xC1 => out.push(
            if matches!(v, Val::Bool(true)) || matches!(v, Val::Int(i) if *i != 0) {
                0xFF
            } else {
                0
            },
        ),
        0xC2 | 0xC6 => out.push(int(v)? as u8),
        0xC3 | 0xC7 => out.extend_from_slice(&(int(v)? as u16).to_le_bytes()),
        0xC4 | 0xC8 => out.extend_from_slice(&(int(v)? as u32).to_le_bytes()),
        0xC5 | 0xC9 => out.extend_from_slice(&(int(v)? as u64).to_le_bytes()),
        0xCA => {
            let f = match v {
                Val::Real(f) => *f,
                other => int(other)? as f64,
            };
            out.extend_from_slice(&(f as f32).to_le_bytes());
        }
        0xCB => {
            let f = match v {
                Val::Real(f) => *f,
                other => int(other)? as f64,
            };
            out.extend_from_slice(&f.to_le_bytes());
        }
        other => return Err(format!("type 0x{other:02x} is not simulated")),
    }
    Ok(())
}

fn decode_atomic(code: u8, d: &[u8]) -> Result<Val, String> {
    let size = atomic_size(code);
    let b = d.get(..size).ok_or("short value")?;
    let mut raw = [0u8; 8];
    raw[..size].copy_from_slice(b);
    let u = u64::from_le_bytes(raw);
    Ok(match code {
        0xC1 => Val::Bool(u != 0),
        0xC2 => Val::Int(i128::from(u as u8 as i8)),
        0xC3 => Val::Int(i128::from(u as u16 as i16)),
        0xC4 => Val::Int(i128::from(u as u32 as i32)),
        0xC5 => Val::Int(i128::from(u as i64)),
        0xCA => Val::Real(f64::from(f32::from_bits(u as u32))),
        0xCB => Val::Real(f64::from_bits(u)),
        _ => Val::Int(i128::from(u)),
    })
}

fn bump(v: &mut Val) {
    match v {
        Val::Int(i) => *i = (*i + 1) % 2_147_483_647,
        Val::Real(f) => *f += 1.0,
        Val::Bool(b) => *b = !*b,
        Val::List(items) => items.iter_mut().for_each(bump),
        Val::Struct(map) => map.values_mut().for_each(bump),
        Val::Str(_) => {}
    }
}

fn set_all_reals(v: &mut Val, x: f64) {
    match v {
        Val::Real(f) => *f = x,
        Val::Int(i) => *i = x.round() as i128,
        Val::List(items) => items.iter_mut().for_each(|i| set_all_reals(i, x)),
        Val::Struct(map) => map.values_mut().for_each(|i| set_all_reals(i, x)),
        _ => {}
    }
}

/// FNV-1a, 64-bit: the simulator's stable hash for audit values and structure handles.
struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Self {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.u64(seed);
        h
    }
    fn bytes(&mut self, b: &[u8]) {
        for byte in b {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.to_ascii_lowercase().as_bytes());
        self.bytes(&[0xFF]);
    }
}

// ---------------------------------------------------------------- parsing

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    name: Option<String>,
    slot: Option<u8>,
    tick_ms: Option<u64>,
    change_detection: Option<bool>,
    changes_to_detect: Option<u64>,
    audit_seed: Option<u64>,
    identity: Option<RawIdentity>,
    quirks: Option<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    udt: Vec<RawUdt>,
    #[serde(default)]
    program: Vec<RawProgram>,
    #[serde(default)]
    task: Vec<String>,
    #[serde(default)]
    tag: Vec<RawTag>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    vendor_id: Option<u16>,
    device_type: Option<u16>,
    product_code: Option<u16>,
    revision: Option<String>,
    serial_number: Option<u32>,
    product_name: Option<String>,
    status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUdt {
    name: String,
    members: Vec<RawMember>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    dims: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgram {
    name: String,
    #[serde(default)]
    routines: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    program: Option<String>,
    #[serde(default)]
    dims: Vec<u32>,
    value: Option<toml::Value>,
    tick: Option<String>,
}

/// Checks a Logix name: a letter or `_` first, then letters, digits, `_`; at most 40.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Logix name (letter or _ first, then letters, digits, _; at most 40)"
        ))
    }
}

pub(crate) fn parse_revision(text: &str) -> Result<(u8, u8), String> {
    let (major, minor) = text
        .split_once('.')
        .ok_or_else(|| format!("revision {text:?} is MAJOR.MINOR"))?;
    Ok((
        major
            .parse()
            .map_err(|_| format!("bad major revision {major:?}"))?,
        minor
            .parse()
            .map_err(|_| format!("bad minor revision {minor:?}"))?,
    ))
}

impl RawState {
    fn build(self) -> Result<CipState, StateError> {
        let id = self.identity.unwrap_or(RawIdentity {
            vendor_id: None,
            device_type: None,
            product_code: None,
            revision: None,
            serial_number: None,
            product_name: None,
            status: None,
        });
        let (major, minor) =
            parse_revision(id.revision.as_deref().unwrap_or("33.11")).map_err(invalid)?;
        let identity = Identity {
            vendor_id: id.vendor_id.unwrap_or(1),
            device_type: id.device_type.unwrap_or(14),
            product_code: id.product_code.unwrap_or(108),
            major,
            minor,
            status: id.status.unwrap_or(0x3060),
            serial: id.serial_number.unwrap_or(0x00C0_FFEE),
            product_name: id
                .product_name
                .unwrap_or_else(|| "1769-L33ER/A LOGIX5333ER".to_owned()),
        };
        if identity.product_name.len() > 255 {
            return Err(invalid("identity.product_name is longer than 255 bytes"));
        }
        let quirks = self.quirks.unwrap_or_default();
        let mut state = CipState {
            identity,
            name: self.name.unwrap_or_else(|| "Simulated".to_owned()),
            slot: self.slot.unwrap_or(0),
            tick_ms: self.tick_ms.unwrap_or(1000),
            change_detection: self.change_detection.unwrap_or(true),
            changes_to_detect: self.changes_to_detect.unwrap_or(u64::MAX),
            audit_seed: self.audit_seed.unwrap_or(0),
            logic: 0,
            udts: Vec::new(),
            programs: Vec::new(),
            tasks: Vec::new(),
            tags: Vec::new(),
            quirks: Quirks::default(),
            next_instance: 0x20,
            ticks: 0,
            layouts: BTreeMap::new(),
        };
        for udt in self.udt {
            check_name(&udt.name).map_err(invalid)?;
            if state.udt(&udt.name).is_some()
                || atomic_code(&udt.name).is_some()
                || udt.name.eq_ignore_ascii_case("STRING")
            {
                return Err(invalid(format!("type {} defined twice", udt.name)));
            }
            let mut members: Vec<UdtMember> = Vec::new();
            for m in udt.members {
                check_name(&m.name).map_err(invalid)?;
                if members.iter().any(|x| x.name.eq_ignore_ascii_case(&m.name)) {
                    return Err(invalid(format!("{}.{} defined twice", udt.name, m.name)));
                }
                members.push(UdtMember {
                    name: m.name,
                    ty: Ty::parse(&m.ty),
                    dims: m.dims,
                });
            }
            if members.is_empty() {
                return Err(invalid(format!("UDT {} has no members", udt.name)));
            }
            state.udts.push(Udt {
                name: udt.name,
                members,
            });
        }
        state.relayout().map_err(invalid)?;
        for p in self.program {
            check_name(&p.name).map_err(invalid)?;
            if state.find_program(&p.name).is_some() {
                return Err(invalid(format!("program {} defined twice", p.name)));
            }
            for r in &p.routines {
                check_name(r).map_err(invalid)?;
            }
            let instance = state.fresh_instance();
            state.programs.push(Program {
                name: p.name,
                routines: p.routines,
                instance,
            });
        }
        for t in self.task {
            check_name(&t).map_err(invalid)?;
            state.tasks.push(t);
        }
        for t in self.tag {
            check_name(&t.name).map_err(invalid)?;
            if let Some(p) = &t.program
                && state.find_program(p).is_none()
            {
                return Err(invalid(format!("tag {}: no program {p}", t.name)));
            }
            if state.find_tag(t.program.as_deref(), &t.name).is_some() {
                return Err(invalid(format!("tag {} defined twice", t.name)));
            }
            if t.program.is_none()
                && (t.name.eq_ignore_ascii_case(super::AUDIT_TAG)
                    || t.name.eq_ignore_ascii_case(super::CHANGES_TAG))
            {
                return Err(invalid(format!(
                    "{} is the GSV-filled change-detection tag; set change_detection instead",
                    t.name
                )));
            }
            if t.dims.len() > 3 {
                return Err(invalid(format!("tag {}: at most 3 dimensions", t.name)));
            }
            let ty = Ty::parse(&t.ty);
            let value = match &t.value {
                Some(v) => state.value_from_toml(&ty, &t.dims, v),
                None => state.default_value(&ty, &t.dims),
            }
            .map_err(|e| invalid(format!("tag {}: {e}", t.name)))?;
            let tick = match t.tick.as_deref() {
                None => None,
                Some("counter") => Some(Tick::Counter),
                Some("sine") => Some(Tick::Sine),
                Some(other) => {
                    return Err(invalid(format!(
                        "tag {}: tick {other:?} (counter or sine)",
                        t.name
                    )));
                }
            };
            let instance = state.fresh_instance();
            state.tags.push(Tag {
                scope: t.program.map(|p| {
                    state
                        .programs
                        .iter()
                        .find(|x| x.name.eq_ignore_ascii_case(&p))
                        .map_or(p, |x| x.name.clone())
                }),
                name: t.name,
                ty,
                dims: t.dims,
                value,
                tick,
                instance,
            });
        }
        apply_file_quirks::<super::CipSimulator>(&mut state, &quirks).map_err(invalid)?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_state_is_valid_and_lays_out_like_logix() {
        let state = CipState::demo();
        let recipe = state
            .layout_of(&Ty::Udt("Recipe_t".into()))
            .expect("Recipe_t");
        // BOOLs are packed into a hidden SINT host.
        assert!(
            recipe
                .members
                .iter()
                .any(|m| m.name.starts_with("ZZZZZZZZZZ"))
        );
        assert_eq!(recipe.size % 4, 0);
        assert_ne!(recipe.handle, 0);
        let before = state.audit_value();
        let mut changed = state.clone();
        changed.logic += 1;
        assert_ne!(changed.audit_value(), before);
    }

    #[test]
    fn bad_states_are_refused_with_a_reason() {
        for (text, needle) in [
            (
                "[[tag]]\nname = \"1x\"\ntype = \"DINT\"\n",
                "not a Logix name",
            ),
            ("[[tag]]\nname = \"X\"\ntype = \"Nope\"\n", "unknown type"),
            (
                "[[tag]]\nname = \"X\"\ntype = \"SINT\"\nvalue = 300\n",
                "outside",
            ),
            ("bogus = 1\n", "unknown field"),
            ("[quirks]\nwhatever = true\n", "unknown quirk"),
            (
                "[[udt]]\nname = \"A\"\nmembers = [{ name = \"B\", type = \"A\" }]\n",
                "nest",
            ),
        ] {
            let err = CipState::from_toml(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
