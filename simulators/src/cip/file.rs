//! The CIP simulator's state file (format on the [`cip`](super) module): parsed and checked
//! into a [`CipState`](super::CipState).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::state::{
    CipState, Identity, Program, Quirks, StateError, Tag, Tick, Ty, Udt, UdtMember, atomic_code,
    invalid,
};
use crate::runtime::verbs::apply_file_quirks;

// ---------------------------------------------------------------- parsing

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub(crate) name: Option<String>,
    pub(crate) slot: Option<u8>,
    pub(crate) tick_ms: Option<u64>,
    pub(crate) change_detection: Option<bool>,
    pub(crate) changes_to_detect: Option<u64>,
    pub(crate) audit_seed: Option<u64>,
    pub(crate) identity: Option<RawIdentity>,
    pub(crate) quirks: Option<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    pub(crate) udt: Vec<RawUdt>,
    #[serde(default)]
    pub(crate) program: Vec<RawProgram>,
    #[serde(default)]
    pub(crate) task: Vec<String>,
    #[serde(default)]
    pub(crate) tag: Vec<RawTag>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub(crate) vendor_id: Option<u16>,
    pub(crate) device_type: Option<u16>,
    pub(crate) product_code: Option<u16>,
    pub(crate) revision: Option<String>,
    pub(crate) serial_number: Option<u32>,
    pub(crate) product_name: Option<String>,
    pub(crate) status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUdt {
    pub(crate) name: String,
    pub(crate) members: Vec<RawMember>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMember {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) ty: String,
    #[serde(default)]
    pub(crate) dims: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProgram {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) routines: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTag {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) ty: String,
    pub(crate) program: Option<String>,
    #[serde(default)]
    pub(crate) dims: Vec<u32>,
    pub(crate) value: Option<toml::Value>,
    pub(crate) tick: Option<String>,
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
    pub(crate) fn build(self) -> Result<CipState, StateError> {
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
