//! The CIP simulator's command language (reference in the [`cip`](super) module docs).

use serde_json::json;

use super::CipSimulator;
use super::file::{check_name, parse_revision};
use super::state::{
    CipState, DEFAULT_REFUSE_TAG_STATUS, Program, Quirk, QuirkArg, Tag, Ty, UdtMember, Val,
};
use super::tags;
use crate::control::CommandError;
use crate::runtime::verbs::{on_off as parse_on_off, split_word, usage};
use crate::runtime::{Commands, verbs};

type Shared = crate::runtime::Shared<CipSimulator>;

impl Commands for CipSimulator {
    const HELP: &'static str = "commands: \
    set TAG VALUE ; get [TAG] ; \
    add-tag [Program:P.]NAME TYPE[dims] ; remove-tag [Program:P.]NAME ; \
    add-program NAME [ROUTINE...] ; remove-program NAME ; \
    add-member UDT NAME TYPE[dims] ; remove-member UDT NAME ; \
    logic N ; audit ; change-detection on|off ; \
    identity [FIELD VALUE] ; tick [N] ; quirk [NAME on|off [ARG]] ; log [clear] ; help";
    const LOG_KEY: &'static str = "by_service";

    /// `quirk NAME on [ARGS]`: `refuse-all` takes an optional status, `refuse-tag` a tag and an
    /// optional status (once per tag); the others take nothing.
    fn quirk_on(state: &mut CipState, quirk: Quirk, args: &str) -> Result<(), CommandError> {
        match quirk {
            Quirk::RefuseAll if args.is_empty() => state.quirks.set(quirk, true),
            Quirk::RefuseAll => state
                .quirks
                .replace(quirk, QuirkArg::Status(parse_status(args)?)),
            Quirk::RefuseTag => {
                let (tag, status) = split_word(args);
                if tag.is_empty() {
                    return Err(usage("quirk refuse-tag on TAG [STATUS]"));
                }
                let status = match status {
                    "" => DEFAULT_REFUSE_TAG_STATUS,
                    text => parse_status(text)?,
                };
                state
                    .quirks
                    .push(quirk, QuirkArg::Tag(tag.to_ascii_lowercase(), status));
            }
            _ if args.is_empty() => state.quirks.set(quirk, true),
            _ => {
                return Err(usage(
                    "quirk NAME on|off (refuse-all on [STATUS], refuse-tag on TAG [STATUS])",
                ));
            }
        }
        Ok(())
    }

    /// A state file's `refuse-tag` names tags (strings); `refuse-all` a status.
    fn file_arg(quirk: Quirk, value: &toml::Value) -> Result<String, String> {
        match (quirk, value) {
            (Quirk::RefuseTag, toml::Value::String(tag)) => Ok(tag.clone()),
            (Quirk::RefuseTag, _) => Err("tags are strings".to_owned()),
            (_, toml::Value::Integer(n)) => Ok(n.to_string()),
            (_, toml::Value::String(s)) => Ok(s.clone()),
            _ => Err("expected true, false or the quirk's argument".to_owned()),
        }
    }

    /// The CIP simulator's own verbs.
    fn command(shared: &Shared, word: &str, rest: &str) -> Result<String, CommandError> {
        match word {
            "set" => {
                let (tag, value) = split_word(rest);
                if tag.is_empty() || value.is_empty() {
                    return Err(usage("set TAG VALUE"));
                }
                let mut state = shared.lock_state();
                tags::set_by_text(&mut state, tag, value).map_err(CommandError::Usage)?;
                Ok(String::new())
            }
            "get" => {
                let state = shared.lock_state();
                if rest.is_empty() {
                    return Ok(serde_json::to_string(&tags::dump(&state)).unwrap_or_default());
                }
                let value = tags::get_by_text(&state, rest).map_err(CommandError::Usage)?;
                Ok(value.to_string())
            }
            "add-tag" => {
                let (path, ty) = split_word(rest);
                if path.is_empty() || ty.is_empty() {
                    return Err(usage("add-tag [Program:P.]NAME TYPE[dims]"));
                }
                download(shared, |state| add_tag(state, path, ty))
            }
            "remove-tag" => {
                if rest.is_empty() {
                    return Err(usage("remove-tag [Program:P.]NAME"));
                }
                download(shared, |state| {
                    let (scope, name) = scoped(rest)?;
                    let idx = state
                        .find_tag(scope.as_deref(), &name)
                        .ok_or_else(|| format!("no tag {rest}"))?;
                    state.tags.remove(idx);
                    Ok(())
                })
            }
            "add-program" => {
                let mut words = rest.split_whitespace();
                let name = words
                    .next()
                    .ok_or_else(|| usage("add-program NAME [ROUTINE...]"))?
                    .to_owned();
                let routines: Vec<String> = words.map(str::to_owned).collect();
                download(shared, move |state| {
                    check_name(&name)?;
                    if state.find_program(&name).is_some() {
                        return Err(format!("program {name} exists"));
                    }
                    for r in &routines {
                        check_name(r)?;
                    }
                    let instance = state.fresh_instance();
                    state.programs.push(Program {
                        name: name.clone(),
                        routines: routines.clone(),
                        instance,
                    });
                    Ok(())
                })
            }
            "remove-program" => {
                if rest.is_empty() {
                    return Err(usage("remove-program NAME"));
                }
                download(shared, |state| {
                    let idx = state
                        .find_program(rest)
                        .ok_or_else(|| format!("no program {rest}"))?;
                    let name = state.programs.remove(idx).name;
                    state.tags.retain(|t| {
                        !t.scope
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case(&name))
                    });
                    Ok(())
                })
            }
            "add-member" => {
                let mut words = rest.split_whitespace();
                let (Some(udt), Some(name), Some(ty)) = (words.next(), words.next(), words.next())
                else {
                    return Err(usage("add-member UDT NAME TYPE[dims]"));
                };
                download(shared, |state| {
                    check_name(name)?;
                    let (ty, dims) = parse_type(ty)?;
                    if dims.len() > 1 {
                        return Err("UDT members have at most one dimension".to_owned());
                    }
                    let u = state
                        .udts
                        .iter_mut()
                        .find(|u| u.name.eq_ignore_ascii_case(udt))
                        .ok_or_else(|| format!("no UDT {udt}"))?;
                    if u.members.iter().any(|m| m.name.eq_ignore_ascii_case(name)) {
                        return Err(format!("{udt}.{name} exists"));
                    }
                    u.members.push(UdtMember {
                        name: name.to_owned(),
                        ty,
                        dims: dims
                            .first()
                            .map(|d| u16::try_from(*d).unwrap_or(u16::MAX))
                            .unwrap_or(0),
                    });
                    Ok(())
                })
            }
            "remove-member" => {
                let mut words = rest.split_whitespace();
                let (Some(udt), Some(name)) = (words.next(), words.next()) else {
                    return Err(usage("remove-member UDT NAME"));
                };
                download(shared, |state| {
                    let u = state
                        .udts
                        .iter_mut()
                        .find(|u| u.name.eq_ignore_ascii_case(udt))
                        .ok_or_else(|| format!("no UDT {udt}"))?;
                    let before = u.members.len();
                    u.members.retain(|m| !m.name.eq_ignore_ascii_case(name));
                    if u.members.len() == before {
                        return Err(format!("{udt} has no member {name}"));
                    }
                    if u.members.is_empty() {
                        return Err("a UDT keeps at least one member".to_owned());
                    }
                    Ok(())
                })
            }
            "logic" => {
                let n: u64 = rest
                    .parse()
                    .map_err(|_| usage("logic N (the logic revision, 0..)"))?;
                shared.lock_state().logic = n;
                Ok(String::new())
            }
            "audit" => {
                let state = shared.lock_state();
                Ok(json!({
                    "audit_value": format!("16#{}", group(state.audit_value())),
                    "changes_to_detect": format!("16#{}", group(state.changes_to_detect)),
                    "change_detection": state.has_audit_tags(),
                    "logic": state.logic,
                })
                .to_string())
            }
            "change-detection" => {
                let on = parse_on_off(rest).ok_or_else(|| usage("change-detection on|off"))?;
                shared.lock_state().change_detection = on;
                Ok(String::new())
            }
            "identity" => identity(shared, rest),
            other => Err(CommandError::Unknown(other.to_owned())),
        }
    }

    fn log_summary(shared: &Shared) -> String {
        let by: std::collections::BTreeMap<String, usize> = shared
            .log()
            .count_by_service()
            .into_iter()
            .map(|(k, v)| (format!("0x{k:02x}"), v))
            .collect();
        verbs::log_counts::<Self, _>(by)
    }
}

/// A CIP general status for the refusing quirks: `0x05` or `5`, never success.
fn parse_status(text: &str) -> Result<u8, CommandError> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed
        .filter(|s| *s != 0)
        .ok_or_else(|| usage("STATUS is a CIP general status 0x01..0xFF, e.g. 0x05"))
}

fn group(v: u64) -> String {
    let hex = format!("{v:016x}");
    (0..4)
        .filter_map(|i| hex.get(i * 4..i * 4 + 4))
        .collect::<Vec<_>>()
        .join("_")
}

/// A structural change ("download"): applied to a copy, re-laid out, values migrated, and
/// committed only if all of it works.
fn download(
    shared: &Shared,
    change: impl FnOnce(&mut CipState) -> Result<(), String>,
) -> Result<String, CommandError> {
    let mut state = shared.lock_state();
    let mut next = state.clone();
    change(&mut next).map_err(CommandError::Usage)?;
    next.relayout().map_err(CommandError::Usage)?;
    let tags = std::mem::take(&mut next.tags);
    let mut migrated = Vec::with_capacity(tags.len());
    for mut tag in tags {
        let fresh = next
            .default_value(&tag.ty, &tag.dims)
            .map_err(|e| CommandError::Usage(format!("tag {}: {e}", tag.name)))?;
        tag.value = conform(fresh, &tag.value);
        migrated.push(tag);
    }
    next.tags = migrated;
    *state = next;
    Ok(String::new())
}

/// Keeps old member values where the new type still has them.
fn conform(fresh: Val, old: &Val) -> Val {
    match (fresh, old) {
        (Val::Struct(mut map), Val::Struct(old)) => {
            for (k, v) in map.iter_mut() {
                if let Some(o) = old.get(k) {
                    *v = conform(v.clone(), o);
                }
            }
            Val::Struct(map)
        }
        (Val::List(items), Val::List(old)) => Val::List(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match old.get(i) {
                    Some(o) => conform(v, o),
                    None => v,
                })
                .collect(),
        ),
        (fresh, old) if std::mem::discriminant(&fresh) == std::mem::discriminant(old) => {
            old.clone()
        }
        (fresh, _) => fresh,
    }
}

fn scoped(path: &str) -> Result<(Option<String>, String), String> {
    match path.get(..8).filter(|h| h.eq_ignore_ascii_case("Program:")) {
        Some(_) => {
            let (program, name) = path
                .get(8..)
                .and_then(|r| r.split_once('.'))
                .ok_or_else(|| format!("{path}: Program:<program>.<tag>"))?;
            Ok((Some(program.to_owned()), name.to_owned()))
        }
        None => Ok((None, path.to_owned())),
    }
}

/// `DINT`, `REAL[10]`, `Recipe_t[2,3]`.
fn parse_type(text: &str) -> Result<(Ty, Vec<u32>), String> {
    let (name, dims) = match text.split_once('[') {
        Some((n, d)) => {
            let d = d
                .strip_suffix(']')
                .ok_or_else(|| format!("{text}: unclosed ["))?;
            let dims = d
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{text}: bad dimension {x:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (n, dims)
        }
        None => (text, vec![]),
    };
    tags::check_dims(&dims)?;
    Ok((Ty::parse(name), dims))
}

fn add_tag(state: &mut CipState, path: &str, ty: &str) -> Result<(), String> {
    let (scope, name) = scoped(path)?;
    check_name(&name)?;
    let scope = match scope {
        Some(p) => Some(
            state
                .programs
                .get(
                    state
                        .find_program(&p)
                        .ok_or_else(|| format!("no program {p}"))?,
                )
                .map(|p| p.name.clone())
                .unwrap_or(p),
        ),
        None => None,
    };
    if scope.is_none()
        && (name.eq_ignore_ascii_case(super::AUDIT_TAG)
            || name.eq_ignore_ascii_case(super::CHANGES_TAG))
    {
        return Err(format!("{name} is the GSV-filled change-detection tag"));
    }
    if state.find_tag(scope.as_deref(), &name).is_some() {
        return Err(format!("tag {path} exists"));
    }
    let (ty, dims) = parse_type(ty)?;
    let value = state.default_value(&ty, &dims)?;
    let instance = state.fresh_instance();
    state.tags.push(Tag {
        scope,
        name,
        ty,
        dims,
        value,
        tick: None,
        instance,
    });
    Ok(())
}

fn identity(shared: &Shared, rest: &str) -> Result<String, CommandError> {
    let mut state = shared.lock_state();
    if rest.is_empty() {
        let id = &state.identity;
        return Ok(json!({
            "vendor_id": id.vendor_id,
            "device_type": id.device_type,
            "product_code": id.product_code,
            "revision": format!("{}.{}", id.major, id.minor),
            "serial_number": format!("{:08X}", id.serial),
            "product_name": id.product_name,
            "name": state.name,
        })
        .to_string());
    }
    let (field, value) = split_word(rest);
    let number = |v: &str| -> Result<u64, CommandError> {
        let parsed = match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        };
        parsed.ok_or_else(|| CommandError::Usage(format!("bad number {v:?}")))
    };
    let id = &mut state.identity;
    match field {
        "revision" => {
            let (major, minor) = parse_revision(value).map_err(CommandError::Usage)?;
            id.major = major;
            id.minor = minor;
        }
        "serial_number" => {
            id.serial =
                u32::try_from(number(value)?).map_err(|_| usage("serial_number 0..0xFFFFFFFF"))?;
        }
        "product_code" => {
            id.product_code =
                u16::try_from(number(value)?).map_err(|_| usage("product_code 0..65535"))?;
        }
        "vendor_id" => {
            id.vendor_id =
                u16::try_from(number(value)?).map_err(|_| usage("vendor_id 0..65535"))?;
        }
        "status" => {
            id.status = u16::try_from(number(value)?).map_err(|_| usage("status 0..65535"))?;
        }
        "product_name" if value.len() <= 255 => id.product_name = value.to_owned(),
        "name" if !value.is_empty() => state.name = value.to_owned(),
        _ => {
            return Err(usage(
                "identity revision|serial_number|product_code|vendor_id|status|product_name|name VALUE",
            ));
        }
    }
    Ok(String::new())
}
