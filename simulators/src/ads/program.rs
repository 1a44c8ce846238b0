//! The simulated PLC's program as ADS serves it: the symbol and data-type tables built from
//! the project, online changes and downloads laid out in memory, and symbol paths located.

use std::collections::BTreeMap;

use super::state::{
    APP_INFO_SYMBOL, APP_INFO_TYPE, AdsState, MEMORY_GROUP, SYM_FLAG_PERSISTENT, StateError, Sym,
    Tables, Tick, invalid,
};
use super::types::{self, Resolver, Ty, TypeDecl, collect_exported, datatype_entry};

/// The built-in `PlcAppSystemInfo` structure (the TwinCAT 3 fields otdrift reads, and the
/// ones around them).
pub(crate) fn app_info_decl() -> TypeDecl {
    TypeDecl::Struct(
        [
            ("ObjId", "UDINT"),
            ("TaskCnt", "UDINT"),
            ("OnlineChangeCnt", "UDINT"),
            ("Flags", "DWORD"),
            ("AdsPort", "UINT"),
            ("BootDataLoaded", "BOOL"),
            ("OldBootData", "BOOL"),
            ("AppTimestamp", "DT"),
            ("KeepOutputsOnBP", "BOOL"),
            ("ShutdownInProgress", "BOOL"),
            ("LicensesPending", "BOOL"),
            ("BSODOccured", "BOOL"),
            ("LoggedIn", "BOOL"),
            ("AppName", "STRING(63)"),
            ("ProjectName", "STRING(63)"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect(),
    )
}

/// The primitive behind a type (through aliases and enums), if it is one.
pub(crate) fn prim_of(ty: &Ty) -> Option<types::Prim> {
    match ty {
        Ty::Prim(p, _) => Some(*p),
        Ty::Alias { target, .. } => prim_of(target),
        Ty::Enum { base, .. } => Some(*base),
        _ => None,
    }
}

/// One symbol table entry (TwinCAT's AdsSymbolEntry), padded to a multiple of 4 bytes as
/// TwinCAT does.
pub(crate) fn symbol_entry(s: &Sym) -> Vec<u8> {
    let type_name = s.ty.name();
    let mut body = Vec::new();
    for v in [MEMORY_GROUP, s.offset, s.ty.size(), s.ty.base_type()] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let flags = if s.persistent { SYM_FLAG_PERSISTENT } else { 0 };
    body.extend_from_slice(&flags.to_le_bytes());
    let dims = match &s.ty {
        Ty::Array { dims, .. } => u16::try_from(dims.len()).unwrap_or(0),
        _ => 0,
    };
    body.extend_from_slice(&dims.to_le_bytes());
    for text in [s.name.as_str(), type_name.as_str(), s.comment.as_str()] {
        body.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_le_bytes());
    }
    for text in [s.name.as_str(), type_name.as_str(), s.comment.as_str()] {
        body.extend_from_slice(text.as_bytes());
        body.push(0);
    }
    let len = (body.len() + 4).div_ceil(4) * 4;
    let mut entry = Vec::with_capacity(len);
    entry.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    entry.extend(body);
    entry.resize(len, 0);
    entry
}

impl AdsState {
    /// Lays the project out in memory. With `keep`, persistent symbols that still exist
    /// keep their bytes (what a download does).
    pub(crate) fn rebuild(&mut self, keep: Option<&[Sym]>) -> Result<(), StateError> {
        let mut decls = BTreeMap::new();
        for (name, decl) in &self.project.types {
            if decls
                .insert(name.to_ascii_lowercase(), (name.clone(), decl.clone()))
                .is_some()
            {
                return Err(invalid(format!("type {name} is declared twice")));
            }
        }
        if self.project.app.is_some() {
            decls.insert(
                APP_INFO_TYPE.to_ascii_lowercase(),
                (APP_INFO_TYPE.to_owned(), app_info_decl()),
            );
        }
        let resolver = Resolver { decls: &decls };
        for (name, _) in &self.project.types {
            resolver.resolve(name).map_err(invalid)?;
        }
        let old_memory = std::mem::take(&mut self.memory);
        self.symbols.clear();
        self.decls = decls;
        if self.project.app.is_some() {
            self.place(APP_INFO_SYMBOL, APP_INFO_TYPE, None, false, "", None)?;
        }
        for s in self.project.symbols.clone() {
            self.place(
                &s.name,
                &s.type_name,
                s.value.as_ref(),
                s.persistent,
                &s.comment,
                s.tick,
            )?;
        }
        if let Some(previous) = keep {
            for old in previous.iter().filter(|o| o.persistent) {
                let Some(new) = self
                    .symbols
                    .iter()
                    .find(|n| n.name.eq_ignore_ascii_case(&old.name) && n.ty == old.ty)
                else {
                    continue;
                };
                let size = new.ty.size() as usize;
                let (from, to) = (old.offset as usize, new.offset as usize);
                if let (Some(src), true) = (
                    old_memory.get(from..from + size),
                    to + size <= self.memory.len(),
                ) {
                    let src = src.to_vec();
                    self.memory[to..to + size].copy_from_slice(&src);
                }
            }
        }
        self.write_app();
        self.tables = None;
        self.handles.clear();
        Ok(())
    }

    /// Appends a symbol to memory (aligned) with its initial value.
    pub(crate) fn place(
        &mut self,
        name: &str,
        type_name: &str,
        value: Option<&toml::Value>,
        persistent: bool,
        comment: &str,
        tick: Option<Tick>,
    ) -> Result<(), StateError> {
        if name.trim().is_empty() || name.len() > 255 {
            return Err(invalid(format!("symbol name {name:?} must be 1-255 bytes")));
        }
        if self
            .symbols
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(name))
        {
            return Err(invalid(format!("symbol {name} is declared twice")));
        }
        let ty = Resolver { decls: &self.decls }
            .resolve(type_name)
            .map_err(|e| invalid(format!("symbol {name}: {e}")))?;
        if let Some(t) = tick {
            let ok = match (t, prim_of(&ty)) {
                (Tick::Toggle, Some(types::Prim::Bool)) => true,
                (Tick::Counter | Tick::Sine, Some(p)) => p != types::Prim::Bool,
                _ => false,
            };
            if !ok {
                return Err(invalid(format!(
                    "symbol {name}: tick needs a numeric type (toggle: BOOL), not {}",
                    ty.name()
                )));
            }
        }
        let align = ty.align().clamp(1, 8) as usize;
        let offset = self.memory.len().div_ceil(align) * align;
        let size = ty.size() as usize;
        let mut initial = vec![0u8; size];
        if let Some(v) = value {
            types::encode(&ty, v, &mut initial)
                .map_err(|e| invalid(format!("symbol {name}: {e}")))?;
        }
        let offset_u32 = u32::try_from(offset + size)
            .ok()
            .and_then(|_| u32::try_from(offset).ok())
            .ok_or_else(|| invalid("PLC memory exceeds 4 GiB"))?;
        self.memory.resize(offset, 0);
        self.memory.extend_from_slice(&initial);
        self.symbols.push(Sym {
            name: name.to_owned(),
            ty,
            offset: offset_u32,
            persistent,
            comment: comment.to_owned(),
            tick,
            initial,
        });
        self.tables = None;
        Ok(())
    }

    /// Writes `_AppInfo` into memory from [`AdsState::app`].
    pub(crate) fn write_app(&mut self) {
        let Some(app) = self.app.clone() else { return };
        let Some(sym) = self
            .symbols
            .iter()
            .find(|s| s.name == APP_INFO_SYMBOL)
            .cloned()
        else {
            return;
        };
        let mut table = toml::Table::new();
        table.insert("ObjId".into(), toml::Value::Integer(0x0101_0010));
        table.insert(
            "TaskCnt".into(),
            toml::Value::Integer(i64::from(app.task_count)),
        );
        table.insert(
            "OnlineChangeCnt".into(),
            toml::Value::Integer(i64::from(app.online_change_count)),
        );
        table.insert(
            "AdsPort".into(),
            toml::Value::Integer(i64::from(self.ams_port)),
        );
        table.insert("BootDataLoaded".into(), toml::Value::Boolean(true));
        table.insert(
            "AppTimestamp".into(),
            toml::Value::Integer(i64::from(app.timestamp)),
        );
        table.insert(
            "AppName".into(),
            toml::Value::String(app.app_name.chars().take(63).collect()),
        );
        table.insert(
            "ProjectName".into(),
            toml::Value::String(app.project_name.chars().take(63).collect()),
        );
        let start = sym.offset as usize;
        let end = start + sym.ty.size() as usize;
        if let Some(bytes) = self.memory.get_mut(start..end)
            && let Err(e) = types::encode(&sym.ty, &toml::Value::Table(table), bytes)
        {
            tracing::warn!(%e, "cannot write _AppInfo");
        }
    }

    /// The symbol and data-type tables (built on first use after a change).
    pub(crate) fn tables(&mut self) -> Tables {
        if let Some(t) = &self.tables {
            return t.clone();
        }
        let mut symbols = Vec::new();
        for s in &self.symbols {
            symbols.extend(symbol_entry(s));
        }
        let mut exported: Vec<Ty> = Vec::new();
        let resolver = Resolver { decls: &self.decls };
        for (name, _) in self.decls.values() {
            if let Ok(ty) = resolver.resolve(name) {
                collect_exported(&ty, &mut exported);
            }
        }
        for s in &self.symbols {
            collect_exported(&s.ty, &mut exported);
        }
        let mut names = std::collections::HashSet::new();
        let mut datatypes = Vec::new();
        let mut count = 0u32;
        for ty in &exported {
            if names.insert(ty.name().to_ascii_lowercase()) {
                datatypes.extend(datatype_entry(&ty.name(), ty, 0, false, ""));
                count += 1;
            }
        }
        let t = Tables {
            symbol_count: u32::try_from(self.symbols.len()).unwrap_or(u32::MAX),
            symbols,
            datatypes,
            datatype_count: count,
        };
        self.tables = Some(t.clone());
        t
    }

    /// One symbol's table entry by name, ignoring case (0xF009).
    pub(crate) fn symbol_entry_by_name(&self, name: &str) -> Option<Vec<u8>> {
        self.symbols
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name.trim_end_matches('\0')))
            .map(symbol_entry)
    }

    /// Resolves `Symbol`, `Symbol.Field.Sub`, `Symbol[2]`, `Symbol.Arr[1,0]` to a memory
    /// offset and type.
    pub(crate) fn locate(&self, path: &str) -> Result<(u32, Ty), String> {
        let lower = path.to_ascii_lowercase();
        let sym = self
            .symbols
            .iter()
            .filter(|s| {
                let n = s.name.to_ascii_lowercase();
                lower == n
                    || (lower.starts_with(&n)
                        && matches!(lower.as_bytes().get(n.len()), Some(b'.' | b'[')))
            })
            .max_by_key(|s| s.name.len())
            .ok_or_else(|| format!("no symbol {path}"))?;
        let mut offset = sym.offset;
        let mut ty = sym.ty.clone();
        let mut rest = path.get(sym.name.len()..).unwrap_or_default();
        while !rest.is_empty() {
            while let Ty::Alias { target, .. } = ty {
                ty = *target;
            }
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let field = r.get(..end).unwrap_or_default();
                let Ty::Struct { fields, name, .. } = &ty else {
                    return Err(format!("{} is not a structure", ty.name()));
                };
                let (_, fty, foff) = fields
                    .iter()
                    .find(|(f, ..)| f.eq_ignore_ascii_case(field))
                    .ok_or_else(|| format!("{name} has no field {field}"))?;
                offset += foff;
                let next = fty.clone();
                ty = next;
                rest = r.get(end..).unwrap_or_default();
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or("missing ]")?;
                let indexes: Vec<i64> = r
                    .get(..end)
                    .unwrap_or_default()
                    .split(',')
                    .map(|i| i.trim().parse().map_err(|_| format!("bad index {i:?}")))
                    .collect::<Result<_, _>>()?;
                let Ty::Array { dims, elem } = &ty else {
                    return Err(format!("{} is not an array", ty.name()));
                };
                if indexes.len() != dims.len() {
                    return Err(format!("{} needs {} indexes", ty.name(), dims.len()));
                }
                let mut linear = 0i64;
                for (&i, &(lo, n)) in indexes.iter().zip(dims) {
                    let pos = i - i64::from(lo);
                    if pos < 0 || pos >= i64::from(n) {
                        return Err(format!(
                            "index {i} outside {lo}..{}",
                            i64::from(lo) + i64::from(n) - 1
                        ));
                    }
                    linear = linear * i64::from(n) + pos;
                }
                offset += u32::try_from(linear).map_err(|_| "index too large")? * elem.size();
                let next = (**elem).clone();
                ty = next;
                rest = r.get(end + 1..).unwrap_or_default();
            } else {
                return Err(format!("cannot read {rest:?} in {path}"));
            }
        }
        Ok((offset, ty))
    }
}
