//! The simulated Logix controller's project: identity, programs, UDTs, tags and values,
//! with the layouts a real controller derives from them (BOOL packing, alignment, template
//! definitions, structure handles, symbol type words).

use std::collections::BTreeMap;
use std::path::Path;

use super::file::RawState;
use super::layout::TemplateLayout;
pub use crate::runtime::StateError;
pub(crate) use crate::runtime::invalid;
use crate::runtime::{QuirkName, QuirkSet};

/// The embedded demo state (`simulators/states/cip-oven.toml`).
pub const OVEN_DEMO_TOML: &str = include_str!("../../states/cip-oven.toml");

/// The template instance and structure handle of the predefined STRING type (82 characters).
pub(crate) const STRING_TEMPLATE: u16 = 0x0FCE;
/// Capacity of the predefined STRING.
pub(crate) const STRING_CAPACITY: usize = 82;
/// First template instance given to user-defined types.
pub(crate) const FIRST_UDT_TEMPLATE: u16 = 0x100;
/// Deepest UDT nesting accepted.
pub(crate) const MAX_NESTING: usize = 8;
/// Largest array accepted in a state file or command.
pub(crate) const MAX_ELEMENTS: u64 = 100_000;

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

pub(crate) fn atomic_name(code: u8) -> &'static str {
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
        crate::runtime::load_state(path, Self::from_toml)
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

    pub(crate) fn udt(&self, name: &str) -> Option<&Udt> {
        self.udts.iter().find(|u| u.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn udt_index(&self, name: &str) -> Option<u16> {
        self.udts
            .iter()
            .position(|u| u.name.eq_ignore_ascii_case(name))
            .and_then(|i| u16::try_from(i).ok())
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
}

pub(crate) fn bump(v: &mut Val) {
    match v {
        Val::Int(i) => *i = (*i + 1) % 2_147_483_647,
        Val::Real(f) => *f += 1.0,
        Val::Bool(b) => *b = !*b,
        Val::List(items) => items.iter_mut().for_each(bump),
        Val::Struct(map) => map.values_mut().for_each(bump),
        Val::Str(_) => {}
    }
}

pub(crate) fn set_all_reals(v: &mut Val, x: f64) {
    match v {
        Val::Real(f) => *f = x,
        Val::Int(i) => *i = x.round() as i128,
        Val::List(items) => items.iter_mut().for_each(|i| set_all_reals(i, x)),
        Val::Struct(map) => map.values_mut().for_each(|i| set_all_reals(i, x)),
        _ => {}
    }
}

/// FNV-1a, 64-bit: the simulator's stable hash for audit values and structure handles.
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new(seed: u64) -> Self {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.u64(seed);
        h
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        for byte in b {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.to_ascii_lowercase().as_bytes());
        self.bytes(&[0xFF]);
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
