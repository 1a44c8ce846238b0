//! The setpoints: each configured symbol (a name, a structure field, or a `.*` prefix)
//! resolved through the device's directory to a read with its value's layout, the reads cut
//! into sum-read batches, and the answers judged and decoded.

use std::collections::HashSet;

use otdrift_core::{Class, Item, Value};

use super::decode;
use super::items::{app_class, app_signals, app_values, starts_with_ci};
use super::program::Program;
use super::request::{ReadSpec, Request, group};
use super::tables::{self, Symbol};
use super::types::{Shape, Types};
use super::wire::{SubResult, code, error_text};
use super::{APP_INFO_SYMBOL, AdsCollector, MAX_SUM_BYTES, MAX_SUM_READS, MAX_VALUE_BYTES};
use crate::CollectError;

/// The most bytes a 0xF009 symbol entry may have.
const MAX_SYMBOL_ENTRY: u32 = 64 * 1024;

/// A setpoint read to make.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    pub(crate) name: String,
    pub(crate) spec: ReadSpec,
    pub(crate) shape: Shape,
    /// Which of the device's directories lists the symbol: a refused read of it contradicts
    /// that directory.
    pub(crate) directory: &'static str,
}

/// The directory a symbol was found in: the uploaded symbol table.
const SYMBOL_TABLE: &str = "the symbol table (0xF00B)";
/// The directory a symbol was found in without a symbol table.
const BY_NAME: &str = "symbol info by name (0xF009)";

/// A setpoint that is not read: either the device's own directory says there is nothing to
/// read (a stable, not-available item), or the capture fails.
pub(crate) enum Unplanned {
    /// Why there is no value, in stable words.
    NotAvailable(String),
    /// Why the capture fails.
    Fails(CollectError),
}

impl From<CollectError> for Unplanned {
    fn from(e: CollectError) -> Self {
        Unplanned::Fails(e)
    }
}

/// Cuts reads into sum-read batches: at most [`MAX_SUM_READS`] and [`MAX_SUM_BYTES`] each.
pub(crate) fn batches(specs: &[ReadSpec]) -> Vec<&[ReadSpec]> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut bytes = 0u64;
    for (i, spec) in specs.iter().enumerate() {
        let count = i - start;
        if count > 0
            && (count >= MAX_SUM_READS || bytes + u64::from(spec.length) > u64::from(MAX_SUM_BYTES))
        {
            if let Some(batch) = specs.get(start..i) {
                out.push(batch);
            }
            start = i;
            bytes = 0;
        }
        bytes += u64::from(spec.length);
    }
    if let Some(batch) = specs.get(start..).filter(|b| !b.is_empty()) {
        out.push(batch);
    }
    out
}

impl AdsCollector {
    /// Resolves the configured setpoints to reads. A setpoint the device's own directory
    /// does not list (or cannot be asked for) becomes a stable not-available item; anything
    /// else that stops a setpoint from being read fails the capture.
    pub(crate) async fn plan_setpoints(
        &mut self,
        program: &mut Program,
    ) -> Result<(Vec<Planned>, Vec<Item>), CollectError> {
        let mut planned: Vec<Planned> = Vec::new();
        let mut gaps = Vec::new();
        let mut seen = HashSet::new();
        for sp in self.setpoints.clone() {
            let mut found: Vec<Result<Planned, Unplanned>> = Vec::new();
            let types = Types {
                table: &program.types,
            };
            if let Some(prefix) = sp.symbol.strip_suffix('*') {
                match &program.symbols {
                    None => found.push(Err(Unplanned::NotAvailable(
                        "a symbol prefix needs the symbol table, which this device does not upload"
                            .to_owned(),
                    ))),
                    Some(list) => {
                        let mut matches: Vec<&Symbol> = list
                            .iter()
                            .filter(|s| starts_with_ci(&s.name, prefix))
                            .collect();
                        matches.sort_by(|a, b| a.name.cmp(&b.name));
                        if matches.is_empty() {
                            found.push(Err(Unplanned::NotAvailable(format!(
                                "no symbol starts with {prefix}"
                            ))));
                        }
                        for s in matches {
                            found.push(self.plan_symbol(&types, s, SYMBOL_TABLE));
                        }
                    }
                }
            } else if let Some(list) = &program.symbols {
                match list
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case(&sp.symbol))
                {
                    Some(s) => found.push(self.plan_symbol(&types, s, SYMBOL_TABLE)),
                    None => found.push(self.plan_field(&types, list, &sp.symbol)),
                }
            } else {
                let key = sp.symbol.to_ascii_lowercase();
                let entry = match program.by_name.get(&key) {
                    Some(entry) => entry.clone(),
                    None => {
                        let entry = self.symbol_by_name(&sp.symbol).await?;
                        program.by_name.insert(key, entry.clone());
                        entry
                    }
                };
                let types = Types {
                    table: &program.types,
                };
                found.push(match entry {
                    Some(s) => self.plan_symbol(&types, &s, BY_NAME),
                    // Without a symbol table, the by-name lookup is the device's directory:
                    // "symbol not found" from it means there is no such symbol.
                    None => Err(Unplanned::NotAvailable(format!(
                        "no symbol {} on the device ({BY_NAME}: {})",
                        sp.symbol,
                        error_text(code::SYMBOL_NOT_FOUND)
                    ))),
                });
            }
            for f in found {
                match f {
                    Ok(p) => {
                        if seen.insert(p.name.to_ascii_lowercase()) {
                            planned.push(p);
                        }
                    }
                    Err(Unplanned::NotAvailable(reason)) => {
                        if seen.insert(sp.symbol.to_ascii_lowercase()) {
                            gaps.push(self.item(
                                format!("ads/value/{}", sp.symbol),
                                Class::Setpoint,
                                Value::unavailable(reason),
                            )?);
                        }
                    }
                    Err(Unplanned::Fails(e)) => return Err(e),
                }
            }
        }
        Ok((planned, gaps))
    }

    /// A symbol whose value is beyond [`MAX_VALUE_BYTES`]: the configuration asks for more
    /// than this collector reads, a bound.
    fn too_large(&self, symbol: &str, size: u32) -> Unplanned {
        Unplanned::Fails(self.driver.scope().bound(
            format!("the value of symbol {symbol}"),
            format!(
                "{symbol} is {size} bytes; otdrift reads at most {MAX_VALUE_BYTES} bytes per symbol"
            ),
        ))
    }

    /// Plans the read of a whole symbol that `directory` lists.
    fn plan_symbol(
        &self,
        types: &Types<'_>,
        s: &Symbol,
        directory: &'static str,
    ) -> Result<Planned, Unplanned> {
        if s.size == 0 {
            // The directory's own, stable answer: a bit-addressed symbol has no whole byte.
            return Err(Unplanned::NotAvailable(format!(
                "{} has size 0 (a bit-addressed symbol); otdrift captures whole bytes",
                s.name
            )));
        }
        if s.size > MAX_VALUE_BYTES {
            return Err(self.too_large(&s.name, s.size));
        }
        let shape = types
            .shape(&s.type_name, s.size, s.base_type)
            .map_err(|e| self.shape_error(&s.name, e))?;
        Ok(Planned {
            name: s.name.clone(),
            spec: ReadSpec {
                group: s.group,
                offset: s.offset,
                length: s.size,
            },
            shape,
            directory,
        })
    }

    /// Plans the read of a structure field named `Symbol.Field.Sub`, through the data-type
    /// table.
    fn plan_field(
        &self,
        types: &Types<'_>,
        symbols: &[Symbol],
        path: &str,
    ) -> Result<Planned, Unplanned> {
        let not_found = || Unplanned::NotAvailable(format!("no symbol {path} in the symbol table"));
        // The longest symbol name that is a prefix of the path followed by '.'.
        let base = symbols
            .iter()
            .filter(|s| {
                starts_with_ci(path, &s.name) && path.as_bytes().get(s.name.len()) == Some(&b'.')
            })
            .max_by_key(|s| s.name.len())
            .ok_or_else(not_found)?;
        let mut shape = types
            .shape(&base.type_name, base.size, base.base_type)
            .map_err(|e| self.shape_error(&base.name, e))?;
        let mut offset = 0u32;
        let mut size = base.size;
        let mut name = base.name.clone();
        for part in path
            .get(base.name.len() + 1..)
            .unwrap_or_default()
            .split('.')
        {
            let Shape::Struct(fields) = &shape else {
                if types.table.is_empty() {
                    return Err(Unplanned::NotAvailable(format!(
                        "the fields of {} are unknown without the data-type table",
                        base.name
                    )));
                }
                return Err(not_found());
            };
            let Some((fname, foff, fsize, fshape)) =
                fields.iter().find(|(n, ..)| n.eq_ignore_ascii_case(part))
            else {
                return Err(not_found());
            };
            offset = offset
                .checked_add(*foff)
                .ok_or_else(|| self.overflow(path))?;
            size = *fsize;
            name = format!("{name}.{fname}");
            shape = fshape.clone();
        }
        if size == 0 {
            return Err(Unplanned::NotAvailable(format!(
                "{path} has size 0 (a bit field); otdrift captures whole bytes"
            )));
        }
        if size > MAX_VALUE_BYTES {
            return Err(self.too_large(path, size));
        }
        Ok(Planned {
            name,
            spec: ReadSpec {
                group: base.group,
                offset: base
                    .offset
                    .checked_add(offset)
                    .ok_or_else(|| self.overflow(path))?,
                length: size,
            },
            shape,
            directory: SYMBOL_TABLE,
        })
    }

    /// Field offsets that run past the 4 GiB an index offset can address: the tables do not
    /// add up.
    fn overflow(&self, path: &str) -> Unplanned {
        Unplanned::Fails(self.driver.scope().malformed(
            format!("Read 0x{:04X} (data-type upload)", group::SYM_DT_UPLOAD),
            format!("the offsets of {path} add up to more than 4 GiB"),
        ))
    }

    /// 0xF009: one symbol's entry by name, for devices without a symbol table. `None`: the
    /// device says it has no such symbol (0x710); any other refusal fails the capture.
    async fn symbol_by_name(&mut self, name: &str) -> Result<Option<Symbol>, CollectError> {
        let request = Request::SymbolInfoByName {
            name: name.to_owned(),
            max: MAX_SYMBOL_ENTRY,
        };
        match self.driver.call_data(&request).await? {
            Ok(bytes) => {
                let (symbol, _) =
                    tables::parse_symbol_entry(&bytes).map_err(|e| self.malformed(&request, e))?;
                if !symbol.name.eq_ignore_ascii_case(name) {
                    return Err(self
                        .malformed(&request, format!("answered the entry of {:?}", symbol.name)));
                }
                Ok(Some(symbol))
            }
            Err(code::SYMBOL_NOT_FOUND) => Ok(None),
            Err(code) => Err(self.refused(&request, code)),
        }
    }

    /// Reads the setpoints (and `_AppInfo` when the poll did not), returning the setpoint
    /// items and the `_AppInfo` items; records the application counters in the program's
    /// signals.
    pub(crate) async fn capture_values(
        &mut self,
        program: &mut Program,
        app_bytes: &mut Option<SubResult>,
    ) -> Result<(Vec<Item>, Vec<Item>), CollectError> {
        let (planned, mut items) = self.plan_setpoints(program).await?;
        let mut specs: Vec<ReadSpec> = planned.iter().map(|p| p.spec).collect();
        let app_loc = program.app.clone();
        let read_app = app_loc.is_ok() && app_bytes.is_none();
        if let (true, Ok(loc)) = (read_app, &app_loc) {
            specs.push(loc.spec);
        }
        let mut results = self.driver.read_values(&specs).await?.into_iter();
        for p in &planned {
            let request = Request::Read(p.spec);
            match results.next() {
                Some(Ok(bytes)) if bytes.len() == p.spec.length as usize => {
                    let mut flat = Vec::new();
                    decode::decode(&p.shape, &bytes).flatten(String::new(), &mut flat);
                    for (suffix, value) in flat {
                        items.push(self.item(
                            format!("ads/value/{}{suffix}", p.name),
                            Class::Setpoint,
                            value,
                        )?);
                    }
                }
                Some(Ok(bytes)) => {
                    return Err(self.malformed(
                        &request,
                        format!(
                            "symbol {} is {} bytes, the device answered {}",
                            p.name,
                            p.spec.length,
                            bytes.len()
                        ),
                    ));
                }
                // Refused even when read alone: the directory lists the symbol, the device
                // will not read it. A contradiction, never a gap.
                Some(Err(code)) => {
                    return Err(self.contradiction(p.spec, &p.name, p.directory, code));
                }
                None => return Err(self.no_result(p.spec)),
            }
        }
        if read_app {
            *app_bytes = results.next();
        }
        let mut app_items = Vec::new();
        match (&app_loc, app_bytes.as_ref()) {
            (Err(reason), _) => app_items.push(self.item(
                "ads/app".to_owned(),
                Class::Program,
                Value::unavailable(reason.clone()),
            )?),
            (Ok(loc), Some(Ok(bytes))) if bytes.len() == loc.spec.length as usize => {
                program.signals.app = Some(app_signals(loc, bytes));
                for (path, value) in app_values(loc, bytes) {
                    app_items.push(self.item(path.clone(), app_class(&path), value)?);
                }
            }
            // The symbol table lists `_AppInfo` and the device refuses to read it, even
            // alone: a contradiction.
            (Ok(loc), Some(Err(code))) => {
                return Err(self.contradiction(loc.spec, APP_INFO_SYMBOL, SYMBOL_TABLE, *code));
            }
            (Ok(loc), _) => {
                return Err(self.malformed(
                    &Request::Read(loc.spec),
                    format!("{APP_INFO_SYMBOL} did not read in full"),
                ));
            }
        }
        Ok((items, app_items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(length: u32) -> ReadSpec {
        ReadSpec {
            group: 0x4040,
            offset: 0,
            length,
        }
    }

    #[test]
    fn batches_respect_both_limits() {
        let many: Vec<ReadSpec> = (0..1001).map(|_| spec(4)).collect();
        let cut = batches(&many);
        assert_eq!(
            cut.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![500, 500, 1]
        );
        let big = vec![
            spec(MAX_SUM_BYTES / 2 + 1),
            spec(MAX_SUM_BYTES / 2),
            spec(10),
        ];
        assert_eq!(
            batches(&big).iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let huge = vec![spec(MAX_SUM_BYTES * 2), spec(1)];
        assert_eq!(
            batches(&huge).iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![1, 1]
        );
        assert!(batches(&[]).is_empty());
    }
}
