//! The simulated controller's tags and types as CIP serves them: the symbol listing, the
//! templates, Read Tag and Read Tag Fragmented, and the writes it logs (and applies).

use std::collections::BTreeMap;

use super::layout::element_count;
use super::path::{Fail, Rd, Seg, fail, text_path};
use super::services::Ctx;
use super::state::{CipState, Quirk, Tag, Ty, Val};

/// A symbol entry as the Symbol object lists it.
pub(crate) struct SymbolEntry {
    pub(crate) instance: u32,
    pub(crate) name: String,
    pub(crate) kind: u16,
    pub(crate) dims: [u32; 3],
    pub(crate) size: u16,
}

pub(crate) fn scope_entries(
    state: &CipState,
    program: Option<&str>,
) -> Result<Vec<SymbolEntry>, Fail> {
    let mut out = Vec::new();
    let tag_entry = |t: &Tag| -> SymbolEntry {
        let mut dims = [0u32; 3];
        for (i, d) in t.dims.iter().take(3).enumerate() {
            dims[i] = *d;
        }
        let size = state
            .size_align(&t.ty, 0)
            .map(|(s, _)| s as u16)
            .unwrap_or(0);
        SymbolEntry {
            instance: t.instance,
            name: t.name.clone(),
            kind: state.symbol_type(t),
            dims,
            size,
        }
    };
    match program {
        None => {
            out.push(SymbolEntry {
                instance: 3,
                name: "__CIP_Internal".into(),
                kind: 0x10C4,
                dims: [0; 3],
                size: 4,
            });
            out.push(SymbolEntry {
                instance: 4,
                name: "Map:Local".into(),
                kind: 0x1069,
                dims: [0; 3],
                size: 0,
            });
            if state.has_audit_tags() {
                out.push(SymbolEntry {
                    instance: 8,
                    name: super::AUDIT_TAG.into(),
                    kind: 0x00C5,
                    dims: [0; 3],
                    size: 8,
                });
                out.push(SymbolEntry {
                    instance: 9,
                    name: super::CHANGES_TAG.into(),
                    kind: 0x00C5,
                    dims: [0; 3],
                    size: 8,
                });
            }
            for (i, task) in state.tasks.iter().enumerate() {
                out.push(SymbolEntry {
                    instance: 0x10 + i as u32,
                    name: format!("Task:{task}"),
                    kind: 0x1070,
                    dims: [0; 3],
                    size: 0,
                });
            }
            for p in &state.programs {
                out.push(SymbolEntry {
                    instance: p.instance,
                    name: format!("Program:{}", p.name),
                    kind: 0x1068,
                    dims: [0; 3],
                    size: 0,
                });
            }
            for t in state.tags.iter().filter(|t| t.scope.is_none()) {
                out.push(tag_entry(t));
            }
        }
        Some(name) => {
            let idx = state.find_program(name).ok_or_else(|| (0x05, vec![0]))?;
            let p = &state.programs[idx];
            for (i, r) in p.routines.iter().enumerate() {
                out.push(SymbolEntry {
                    instance: 0x0100_0000 + p.instance * 0x100 + i as u32,
                    name: format!("Routine:{r}"),
                    kind: 0x106D,
                    dims: [0; 3],
                    size: 0,
                });
            }
            for t in state.tags.iter().filter(|t| {
                t.scope
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(name))
            }) {
                out.push(tag_entry(t));
            }
        }
    }
    out.sort_by_key(|e| e.instance);
    Ok(out)
}

pub(crate) fn list_symbols(
    ctx: &mut Ctx<'_>,
    segs: &[Seg],
    data: &[u8],
) -> Result<(Vec<u8>, u8), Fail> {
    if ctx.state.quirks.get(Quirk::BrowseDropsSession) {
        ctx.close = true;
        return Err(fail(0x08));
    }
    if ctx.state.quirks.get(Quirk::BrowseEncapUnsupported) {
        ctx.close = true;
        ctx.encap_status = Some(0x0008);
        return Err(fail(0x08));
    }
    if ctx.state.quirks.get(Quirk::NoBrowse) {
        return Err(fail(0x08));
    }
    let (program, rest) = match segs {
        [Seg::Symbol(p), rest @ ..] => {
            let name = p
                .get(..8)
                .filter(|h| h.eq_ignore_ascii_case("Program:"))
                .and_then(|_| p.get(8..))
                .ok_or_else(|| (0x05, vec![0]))?;
            (Some(name.to_owned()), rest)
        }
        rest => (None, rest),
    };
    let start = match rest {
        [Seg::Class(0x6B), Seg::Instance(i)] => *i,
        [Seg::Class(0x6B)] => 0,
        _ => return Err((0x04, vec![0])),
    };
    let mut r = Rd::new(data);
    let count = usize::from(r.u16()?);
    if count == 0 || count > 16 {
        return Err(fail(0x0A));
    }
    let mut attrs = Vec::with_capacity(count);
    for _ in 0..count {
        let a = r.u16()?;
        if ![1, 2, 3, 5, 6, 7, 8, 10].contains(&a) {
            return Err(fail(0x14));
        }
        attrs.push(a);
    }
    let entries = scope_entries(ctx.state, program.as_deref())?;
    let page_limit = if ctx.state.quirks.get(Quirk::PartialPaging) {
        3
    } else {
        usize::MAX
    };
    let budget = ctx.capacity.saturating_sub(4);
    let mut out = Vec::new();
    let mut more = false;
    for (listed, e) in entries.iter().filter(|e| e.instance >= start).enumerate() {
        let mut one = e.instance.to_le_bytes().to_vec();
        for a in &attrs {
            match a {
                1 => {
                    one.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
                    one.extend_from_slice(e.name.as_bytes());
                }
                2 => one.extend_from_slice(&e.kind.to_le_bytes()),
                3 => one.extend_from_slice(&(0x1000 + e.instance).to_le_bytes()),
                5 => one.extend_from_slice(&(e.instance * 16).to_le_bytes()),
                6 => one.extend_from_slice(&(1u32 << 26).to_le_bytes()),
                7 => one.extend_from_slice(&e.size.to_le_bytes()),
                8 => {
                    for d in e.dims {
                        one.extend_from_slice(&d.to_le_bytes());
                    }
                }
                _ => one.push(0),
            }
        }
        if listed >= page_limit || out.len() + one.len() > budget {
            more = true;
            break;
        }
        out.extend_from_slice(&one);
    }
    Ok((out, if more { 0x06 } else { 0 }))
}

pub(crate) fn template_attributes(
    state: &CipState,
    segs: &[Seg],
    data: &[u8],
) -> Result<Vec<u8>, Fail> {
    let instance = match segs {
        [Seg::Class(0x6C), Seg::Instance(i)] => *i,
        _ => return Err((0x04, vec![0])),
    };
    let layout = u16::try_from(instance)
        .ok()
        .and_then(|i| state.layout_by_instance(i))
        .ok_or_else(|| fail(0x05))?;
    let mut r = Rd::new(data);
    let count = r.u16()?;
    if count == 0 || count > 16 {
        return Err(fail(0x0A));
    }
    // The definition (padded to words) is (words * 4 - 23) bytes rounded up to a word:
    // pylogix reads exactly that; pycomm3 asks for (words * 4 - 21) and takes what comes.
    let words = (layout.definition.len() as u32 + 20) / 4;
    let mut out = count.to_le_bytes().to_vec();
    for _ in 0..count {
        let id = r.u16()?;
        out.extend_from_slice(&id.to_le_bytes());
        match id {
            1 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&layout.handle.to_le_bytes());
            }
            2 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&(layout.members.len() as u16).to_le_bytes());
            }
            3 => {
                // Undocumented by Rockwell; pylogix asks for it and reads a UINT.
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&((layout.size / 4) as u16).to_le_bytes());
            }
            4 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&words.to_le_bytes());
            }
            5 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&layout.size.to_le_bytes());
            }
            _ => out.extend_from_slice(&0x14u16.to_le_bytes()),
        }
    }
    Ok(out)
}

pub(crate) fn read_template(
    ctx: &mut Ctx<'_>,
    segs: &[Seg],
    data: &[u8],
) -> Result<(Vec<u8>, Option<u8>), Fail> {
    let instance = match segs {
        [Seg::Class(0x6C), Seg::Instance(i)] => *i,
        _ => return Err((0x04, vec![0])),
    };
    let layout = u16::try_from(instance)
        .ok()
        .and_then(|i| ctx.state.layout_by_instance(i))
        .ok_or_else(|| fail(0x05))?;
    let mut r = Rd::new(data);
    let offset = r.u32()? as usize;
    let bytes = usize::from(r.u16()?);
    let def = &layout.definition;
    if offset > def.len() {
        return Err(fail(0x03));
    }
    let wanted_end = offset.saturating_add(bytes).min(def.len());
    let room = ctx.capacity.saturating_sub(4);
    let end = wanted_end.min(offset + room);
    let chunk = def.get(offset..end).unwrap_or(&[]).to_vec();
    if end < wanted_end {
        Ok((chunk, Some(0x06)))
    } else {
        Ok((chunk, None))
    }
}

/// Where a tag path leads.
pub(crate) struct Target {
    pub(crate) ty: Ty,
    /// The elements from the addressed one to the end of its array (one for a scalar).
    pub(crate) elements: Vec<Val>,
    /// A tag-level BOOL array: elements are bits, read as DWORDs.
    pub(crate) bool_array: bool,
    /// Index of the first addressed element inside the BOOL array.
    pub(crate) bool_start: usize,
}

pub(crate) enum Step {
    Tag(usize),
    Audit,
    Index(usize),
    Member(String),
}

pub(crate) fn resolve(state: &CipState, segs: &[Seg]) -> Result<(Target, Vec<Step>), Fail> {
    let unknown = || (0x05, vec![0]);
    let mut it = segs.iter().peekable();
    // The base tag: by name, or (as clients do on v21+ firmware) by Symbol instance.
    enum Base<'s> {
        Name(&'s str),
        Instance(u32),
    }
    let by_instance =
        |it: &mut std::iter::Peekable<std::slice::Iter<'_, Seg>>| -> Result<u32, Fail> {
            match it.next() {
                Some(Seg::Instance(i)) => Ok(*i),
                _ => Err((0x04, vec![0])),
            }
        };
    let (scope, base): (Option<&str>, Base<'_>) = match it.next() {
        Some(Seg::Symbol(first)) => {
            let program = first
                .get(..8)
                .filter(|h| h.eq_ignore_ascii_case("Program:"))
                .and_then(|_| first.get(8..));
            match program {
                Some(p) => {
                    state.find_program(p).ok_or_else(unknown)?;
                    match it.next() {
                        Some(Seg::Symbol(n)) => (Some(p), Base::Name(n.as_str())),
                        Some(Seg::Class(0x6B)) => (Some(p), Base::Instance(by_instance(&mut it)?)),
                        _ => return Err((0x04, vec![0])),
                    }
                }
                None => (None, Base::Name(first.as_str())),
            }
        }
        Some(Seg::Class(0x6B)) => (None, Base::Instance(by_instance(&mut it)?)),
        _ => return Err((0x04, vec![0])),
    };
    let mut steps = Vec::new();
    let audit = |name: &str, instance: u32| match base {
        Base::Name(n) => n.eq_ignore_ascii_case(name),
        Base::Instance(i) => i == instance,
    };
    let (mut ty, mut dims, mut val): (Ty, Vec<u32>, Val) = {
        if scope.is_none() && state.has_audit_tags() && audit(super::AUDIT_TAG, 8) {
            steps.push(Step::Audit);
            (
                Ty::Atomic(0xC5),
                vec![],
                Val::Int(i128::from(state.audit_value())),
            )
        } else if scope.is_none() && state.has_audit_tags() && audit(super::CHANGES_TAG, 9) {
            steps.push(Step::Audit);
            (
                Ty::Atomic(0xC5),
                vec![],
                Val::Int(i128::from(state.changes_to_detect)),
            )
        } else {
            let idx = match base {
                Base::Name(name) => state.find_tag(scope, name),
                Base::Instance(i) => state.tags.iter().position(|t| {
                    t.instance == i
                        && match (&t.scope, scope) {
                            (None, None) => true,
                            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                            _ => false,
                        }
                }),
            }
            .ok_or_else(unknown)?;
            steps.push(Step::Tag(idx));
            let t = &state.tags[idx];
            (t.ty.clone(), t.dims.clone(), t.value.clone())
        }
    };
    let tag_level_bools = ty == Ty::Atomic(0xC1) && !dims.is_empty();
    let mut bool_start = 0;
    loop {
        let mut indices = Vec::new();
        while let Some(Seg::Element(e)) = it.peek() {
            indices.push(*e);
            it.next();
        }
        let mut start = 0usize;
        if !indices.is_empty() {
            if dims.is_empty() || indices.len() != dims.len() {
                return Err((0x04, vec![0]));
            }
            let mut flat = 0usize;
            for (i, d) in indices.iter().zip(&dims) {
                if i >= d {
                    return Err((0x05, vec![0]));
                }
                flat = flat * (*d as usize) + *i as usize;
            }
            start = flat;
        }
        match it.next() {
            None => {
                let elements = match (&val, dims.is_empty()) {
                    (Val::List(items), false) => {
                        items.get(start..).map(<[Val]>::to_vec).unwrap_or_default()
                    }
                    (v, _) => vec![v.clone()],
                };
                if tag_level_bools {
                    bool_start = start;
                }
                if !dims.is_empty() {
                    steps.push(Step::Index(start));
                }
                return Ok((
                    Target {
                        ty,
                        elements,
                        bool_array: tag_level_bools,
                        bool_start,
                    },
                    steps,
                ));
            }
            Some(Seg::Symbol(member)) => {
                if !dims.is_empty() && indices.is_empty() {
                    return Err((0x04, vec![0]));
                }
                let element = match (&val, dims.is_empty()) {
                    (Val::List(items), false) => {
                        steps.push(Step::Index(start));
                        items.get(start).cloned().ok_or_else(unknown)?
                    }
                    (v, _) => v.clone(),
                };
                let Ty::Udt(_) = &ty else {
                    return Err(unknown());
                };
                let layout = state.layout_of(&ty).ok_or_else(unknown)?;
                let m = layout
                    .members
                    .iter()
                    .find(|m| m.ty.is_some() && m.name.eq_ignore_ascii_case(member))
                    .ok_or_else(unknown)?;
                let Val::Struct(map) = element else {
                    return Err(unknown());
                };
                steps.push(Step::Member(m.name.clone()));
                val = map.get(&m.name).cloned().ok_or_else(unknown)?;
                ty = m.ty.clone().ok_or_else(unknown)?;
                dims = if m.dims > 0 {
                    vec![u32::from(m.dims)]
                } else {
                    vec![]
                };
            }
            Some(_) => return Err((0x04, vec![0])),
        }
    }
}

pub(crate) fn read_tag(
    ctx: &mut Ctx<'_>,
    segs: &[Seg],
    data: &[u8],
    fragmented: bool,
) -> Result<(Vec<u8>, Option<u8>), Fail> {
    let mut r = Rd::new(data);
    let count = usize::from(r.u16()?);
    let offset = if fragmented { r.u32()? as usize } else { 0 };
    if count == 0 {
        return Err(fail(0x03));
    }
    if let Some(status) = ctx.state.quirks.refused_tag(&base_tag_name(segs)) {
        let ext = if matches!(status, 0x04 | 0x05) {
            vec![0]
        } else {
            vec![]
        };
        return Err((status, ext));
    }
    let (target, _) = resolve(ctx.state, segs)?;
    let state = &*ctx.state;
    let mut header = Vec::new();
    let mut body = Vec::new();
    if target.bool_array {
        header.extend_from_slice(&0x00D3u16.to_le_bytes());
        // Bits travel in DWORDs; the addressed element picks its DWORD.
        let (_, steps) = resolve(state, segs)?;
        let all = match steps.first() {
            Some(Step::Tag(i)) => match &state.tags[*i].value {
                Val::List(items) => items.clone(),
                _ => vec![],
            },
            _ => vec![],
        };
        let first_word = target.bool_start / 32;
        let words_total = all.len().div_ceil(32);
        if first_word + count > words_total {
            return Err((0xFF, vec![0x2105]));
        }
        for w in first_word..first_word + count {
            let mut word = 0u32;
            for bit in 0..32 {
                if let Some(Val::Bool(true)) = all.get(w * 32 + bit) {
                    word |= 1 << bit;
                }
            }
            body.extend_from_slice(&word.to_le_bytes());
        }
    } else {
        if count > target.elements.len() {
            return Err((0xFF, vec![0x2105]));
        }
        match &target.ty {
            Ty::Atomic(code) => header.extend_from_slice(&u16::from(*code).to_le_bytes()),
            other => {
                let layout = state.layout_of(other).ok_or_else(|| fail(0x05))?;
                header.extend_from_slice(&0x02A0u16.to_le_bytes());
                header.extend_from_slice(&layout.handle.to_le_bytes());
            }
        }
        for v in target.elements.iter().take(count) {
            state
                .encode(&target.ty, v, &mut body)
                .map_err(|_| fail(0x09))?;
        }
    }
    let room = ctx.capacity.saturating_sub(4 + header.len());
    if offset > body.len() {
        return Err(fail(0x03));
    }
    let end = body.len().min(offset + room);
    let mut out = header;
    out.extend_from_slice(body.get(offset..end).unwrap_or(&[]));
    if end < body.len() {
        Ok((out, Some(0x06)))
    } else {
        Ok((out, None))
    }
}

/// The tag a symbolic path starts with, as `refuse-tag` names it: `Oven_SP`, or
/// `Program:Oven.Zone_Temp` for a program's tag.
pub(crate) fn base_tag_name(segs: &[Seg]) -> String {
    let mut symbols = segs.iter().filter_map(|s| match s {
        Seg::Symbol(name) => Some(name.as_str()),
        _ => None,
    });
    match symbols.next() {
        Some(first)
            if first
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("Program:")) =>
        {
            format!("{first}.{}", symbols.next().unwrap_or(""))
        }
        Some(first) => first.to_owned(),
        None => String::new(),
    }
}

/// State-changing services: answered (and for tags applied) like a Logix controller would.
pub(crate) fn apply_write(
    ctx: &mut Ctx<'_>,
    service: u8,
    segs: &[Seg],
    data: &[u8],
    symbolic: bool,
) -> Result<Vec<u8>, Fail> {
    match service {
        0x4D | 0x53 if symbolic => {
            let mut r = Rd::new(data);
            let type_word = r.u16()?;
            if type_word == 0x02A0 {
                r.u16()?;
            }
            let count = usize::from(r.u16()?);
            if service == 0x53 {
                let offset = r.u32()?;
                if offset != 0 {
                    return Err(fail(0x08));
                }
            }
            let payload = r.rest();
            write_elements(ctx.state, segs, count, payload)?;
            Ok(Vec::new())
        }
        0x4E if symbolic => {
            let mut r = Rd::new(data);
            let size = usize::from(r.u16()?);
            let or = r.take(size)?.to_vec();
            let and = r.take(size)?.to_vec();
            let (target, _) = resolve(ctx.state, segs)?;
            let Ty::Atomic(code) = target.ty else {
                return Err(fail(0x08));
            };
            let mut current = Vec::new();
            if let Some(v) = target.elements.first() {
                ctx.state
                    .encode(&target.ty, v, &mut current)
                    .map_err(|_| fail(0x09))?;
            }
            if current.len() != size || code == 0xCA || code == 0xCB {
                return Err(fail(0x13));
            }
            for (i, byte) in current.iter_mut().enumerate() {
                *byte = (*byte | or[i]) & and[i];
            }
            write_elements(ctx.state, segs, 1, &current)?;
            Ok(Vec::new())
        }
        0x4D | 0x53 | 0x4E => Err(fail(0x08)),
        // Identity, wall clock, templates: attributes a client cannot set; mode changes
        // refused (the keyswitch is not in REMOTE).
        0x02 | 0x04 | 0x10 => Err(fail(0x0E)),
        0x05..=0x07 => Err(fail(0x0C)),
        _ => Err(fail(0x08)),
    }
}

pub(crate) fn write_elements(
    state: &mut CipState,
    segs: &[Seg],
    count: usize,
    payload: &[u8],
) -> Result<(), Fail> {
    let (target, steps) = resolve(state, segs)?;
    if target.bool_array || matches!(steps.first(), Some(Step::Audit)) {
        return Err(fail(0x0E));
    }
    let (size, _) = state.size_align(&target.ty, 0).map_err(|_| fail(0x09))?;
    let size = size as usize;
    if count == 0 || count > target.elements.len() || payload.len() != size * count {
        return Err(fail(0x13));
    }
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let chunk = payload
            .get(i * size..(i + 1) * size)
            .ok_or_else(|| fail(0x13))?;
        values.push(state.decode(&target.ty, chunk).map_err(|_| fail(0x09))?);
    }
    let Some(Step::Tag(idx)) = steps.first() else {
        return Err(fail(0x05));
    };
    let mut slot: &mut Val = &mut state.tags[*idx].value;
    let rest = &steps[1..];
    for (k, step) in rest.iter().enumerate() {
        let last = k + 1 == rest.len();
        match step {
            Step::Index(i) if last => {
                let Val::List(items) = slot else {
                    return Err(fail(0x05));
                };
                for (j, v) in values.iter().enumerate() {
                    if let Some(e) = items.get_mut(i + j) {
                        *e = v.clone();
                    }
                }
                return Ok(());
            }
            Step::Index(i) => {
                let Val::List(items) = slot else {
                    return Err(fail(0x05));
                };
                slot = items.get_mut(*i).ok_or_else(|| fail(0x05))?;
            }
            Step::Member(m) => {
                let Val::Struct(map) = slot else {
                    return Err(fail(0x05));
                };
                slot = map.get_mut(m).ok_or_else(|| fail(0x05))?;
            }
            Step::Tag(_) | Step::Audit => return Err(fail(0x05)),
        }
    }
    match (slot, values.into_iter().next()) {
        (Val::List(items), Some(v)) => {
            if let Some(first) = items.first_mut() {
                *first = v;
            }
        }
        (slot, Some(v)) => *slot = v,
        _ => {}
    }
    Ok(())
}

/// Sets a value by a tag path written as text (`Program:Oven.Zone_Temp[2]`, `Recipe.Temp`):
/// the `set` command.
pub(crate) fn set_by_text(state: &mut CipState, path: &str, text: &str) -> Result<(), String> {
    let segs = text_path(path)?;
    let (target, _) = resolve(state, &segs).map_err(|(st, _)| match st {
        0x05 => format!("no tag {path}"),
        _ => format!("{path} is not a valid tag path"),
    })?;
    if target.bool_array {
        return Err(format!("{path}: index the BOOL array, e.g. {path}[0]"));
    }
    if target.elements.len() != 1
        && !matches!(segs.last(), Some(Seg::Element(_)))
        && target.elements.len() > 1
    {
        return Err(format!(
            "{path} is an array: set one element, e.g. {path}[0]"
        ));
    }
    let value = state.value_from_text(&target.ty, text)?;
    let mut payload = Vec::new();
    state.encode(&target.ty, &value, &mut payload)?;
    write_elements(state, &segs, 1, &payload)
        .map_err(|(st, _)| format!("cannot set {path} (0x{st:02x})"))
}

/// Reads a value by text path as JSON (the `get` command).
pub(crate) fn get_by_text(state: &CipState, path: &str) -> Result<serde_json::Value, String> {
    let segs = text_path(path)?;
    let (target, _) = resolve(state, &segs).map_err(|_| format!("no tag {path}"))?;
    let whole = matches!(segs.last(), Some(Seg::Symbol(_)));
    if target.bool_array {
        let (_, steps) = resolve(state, &segs).map_err(|_| format!("no tag {path}"))?;
        if let Some(Step::Tag(i)) = steps.first()
            && let Val::List(items) = &state.tags[*i].value
        {
            if whole {
                return Ok(serde_json::Value::Array(
                    items.iter().map(to_json).collect(),
                ));
            }
            return Ok(items
                .get(target.bool_start)
                .map(to_json)
                .unwrap_or_default());
        }
    }
    if whole && target.elements.len() > 1 {
        return Ok(serde_json::Value::Array(
            target.elements.iter().map(to_json).collect(),
        ));
    }
    Ok(target.elements.first().map(to_json).unwrap_or_default())
}

pub(crate) fn to_json(v: &Val) -> serde_json::Value {
    match v {
        Val::Bool(b) => serde_json::Value::Bool(*b),
        Val::Int(i) => i64::try_from(*i)
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(*i as u64)),
        Val::Real(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Val::Str(s) => serde_json::Value::String(s.clone()),
        Val::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Val::Struct(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

/// All values of the controller, for `get` without arguments (debugging a test rig).
pub(crate) fn dump(state: &CipState) -> BTreeMap<String, serde_json::Value> {
    state
        .tags
        .iter()
        .map(|t| {
            let name = match &t.scope {
                Some(p) => format!("Program:{p}.{}", t.name),
                None => t.name.clone(),
            };
            (name, to_json(&t.value))
        })
        .collect()
}

/// Checks that a `dims` list fits: used by commands that add tags.
pub(crate) fn check_dims(dims: &[u32]) -> Result<usize, String> {
    if dims.len() > 3 {
        return Err("at most 3 dimensions".to_owned());
    }
    if dims.is_empty() {
        return Ok(1);
    }
    element_count(dims)
}
