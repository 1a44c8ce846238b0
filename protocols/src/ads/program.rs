//! What the collector knows of the PLC program between captures: the change signals (symbol
//! version, upload info, `_AppInfo`), the symbol and data-type tables uploaded again only when
//! a signal moved, and where `_AppInfo` is.

use std::collections::BTreeMap;

use otdrift_core::{Class, Item, Value};

use super::items::{app_signals, datatype_value, symbol_value};
use super::request::{ReadSpec, Request, group};
use super::tables::{self, DataType, Symbol, TableError, UploadInfo};
use super::types::{self, Shape, Types};
use super::wire::{SubResult, code, error_text, is_service_not_supported};
use super::{APP_INFO_SYMBOL, AdsCollector, MAX_VALUE_BYTES};
use crate::CollectError;

/// Which upload info the device answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InfoSource {
    Info2,
    Legacy,
    None,
}

/// The change signals a poll reads; the tables are uploaded again when they differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Signals {
    pub(crate) symbol_version: Option<u8>,
    pub(crate) upload: Option<UploadInfo>,
    /// `_AppInfo` OnlineChangeCnt and AppTimestamp.
    pub(crate) app: Option<(Option<u64>, Option<u64>)>,
}

/// Where `_AppInfo` is and what it looks like.
#[derive(Clone, Debug)]
pub(crate) struct AppInfoLoc {
    pub(crate) spec: ReadSpec,
    pub(crate) fields: Vec<(String, u32, u32, Shape)>,
}

/// What the collector knows of the PLC program between captures.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub(crate) signals: Signals,
    pub(crate) info_source: InfoSource,
    pub(crate) symbols: Option<Vec<Symbol>>,
    pub(crate) types: BTreeMap<String, DataType>,
    /// Program items derived from the tables (or their not-available gaps).
    pub(crate) items: Vec<Item>,
    pub(crate) app: Result<AppInfoLoc, String>,
    /// Symbols looked up by name with 0xF009 when there is no symbol table; `None`: the
    /// device said it has no such symbol (0x710).
    pub(crate) by_name: BTreeMap<String, Option<Symbol>>,
}

impl AdsCollector {
    /// Reads the change signals, and uploads the tables again when they moved (or on the
    /// first capture). Returns the program knowledge and the `_AppInfo` bytes when read.
    pub(crate) async fn refresh_program(
        &mut self,
        runtime: &mut BTreeMap<String, Value>,
    ) -> Result<(Program, Option<SubResult>), CollectError> {
        // The cached program stays in place while polling, so a failed poll loses nothing.
        let info_source = self
            .program
            .as_ref()
            .map_or(InfoSource::Info2, |p| p.info_source);
        let app_spec = self
            .program
            .as_ref()
            .and_then(|p| p.app.as_ref().ok())
            .map(|a| a.spec);
        let symver_spec = ReadSpec {
            group: group::SYM_VERSION,
            offset: 0,
            length: 1,
        };
        let mut specs = vec![symver_spec];
        let info_spec = match info_source {
            InfoSource::Info2 => Some(ReadSpec {
                group: group::SYM_UPLOAD_INFO2,
                offset: 0,
                length: 64,
            }),
            InfoSource::Legacy => Some(ReadSpec {
                group: group::SYM_UPLOAD_INFO,
                offset: 0,
                length: 8,
            }),
            InfoSource::None => None,
        };
        specs.extend(info_spec);
        specs.extend(app_spec);
        let mut results = self.driver.read_values(&specs).await?.into_iter();
        // The symbol version is runtime only (never hashed) and only one of three change
        // signals: a device that will not give it is recorded as such, unless it is busy.
        let symbol_version = match results.next() {
            Some(Ok(bytes)) => bytes.first().copied().ok_or_else(|| {
                "device answered the symbol version (0xF008) without data".to_owned()
            }),
            Some(Err(code::BUSY)) => {
                return Err(self.refused(&Request::Read(symver_spec), code::BUSY));
            }
            Some(Err(code)) => Err(format!(
                "device refused the symbol version (0xF008): {}",
                error_text(code)
            )),
            None => return Err(self.no_result(symver_spec)),
        };
        runtime.insert(
            "symbol_version".to_owned(),
            match &symbol_version {
                Ok(v) => Value::from(u64::from(*v)),
                Err(reason) => Value::unavailable(reason.clone()),
            },
        );
        let symbol_version = symbol_version.ok();
        let (upload, info_source) = match info_spec {
            None => (None, InfoSource::None),
            Some(spec) => {
                let result = results.next().ok_or_else(|| self.no_result(spec))?;
                self.upload_info(spec, result, info_source).await?
            }
        };
        // A refused `_AppInfo` is judged once the tables say whether it is still there (a
        // download may have moved it); busy is busy at once.
        let app_bytes = match (app_spec, results.next()) {
            (Some(spec), Some(Err(code::BUSY))) => {
                return Err(self.refused(&Request::Read(spec), code::BUSY));
            }
            (Some(_), bytes) => bytes,
            (None, _) => None,
        };
        let app_now = match (&self.program, &app_bytes) {
            (Some(p), Some(Ok(bytes))) => p.app.as_ref().ok().map(|a| app_signals(a, bytes)),
            _ => None,
        };
        let signals_now = Signals {
            symbol_version,
            upload,
            app: app_now,
        };
        let cached = self.program.take();
        match cached {
            Some(program)
                if program.signals == signals_now && program.info_source == info_source =>
            {
                runtime.insert("symbol_table".to_owned(), Value::from("unchanged"));
                return Ok((program, app_bytes));
            }
            Some(ref program) => tracing::debug!(
                before = ?program.signals,
                now = ?signals_now,
                "program changed, uploading the tables again"
            ),
            None => {}
        }
        runtime.insert("symbol_table".to_owned(), Value::from("uploaded"));
        let program = match self.upload(signals_now, info_source).await {
            Ok(program) => program,
            Err(e) => {
                // Its signals differ from the device's now, so the next poll uploads again.
                self.program = cached;
                return Err(e);
            }
        };
        // `_AppInfo` read by the poll is only good if it is still at the same place.
        let app_bytes = match (&program.app, app_spec) {
            (Ok(loc), Some(old)) if loc.spec == old => app_bytes,
            _ => None,
        };
        Ok((program, app_bytes))
    }

    /// Interprets the upload info sub-read, falling back from 0xF00F to 0xF00C. The upload
    /// is a capability gap only when the device says, for both, that it does not offer the
    /// service (0x701, or 0x702 for an index group it does not serve); any other refusal
    /// fails the capture.
    async fn upload_info(
        &mut self,
        spec: ReadSpec,
        result: SubResult,
        source: InfoSource,
    ) -> Result<(Option<UploadInfo>, InfoSource), CollectError> {
        let legacy = ReadSpec {
            group: group::SYM_UPLOAD_INFO,
            offset: 0,
            length: 8,
        };
        match result {
            Ok(bytes) => Ok((
                Some(self.parse_upload_info(&bytes, spec, source == InfoSource::Legacy)?),
                source,
            )),
            Err(code) if is_service_not_supported(code) && source == InfoSource::Info2 => {
                match self.driver.read(legacy).await? {
                    Ok(bytes) => Ok((
                        Some(self.parse_upload_info(&bytes, legacy, true)?),
                        InfoSource::Legacy,
                    )),
                    Err(code) if is_service_not_supported(code) => Ok((None, InfoSource::None)),
                    Err(code) => Err(self.refused(&Request::Read(legacy), code)),
                }
            }
            Err(code) if is_service_not_supported(code) => Ok((None, InfoSource::None)),
            Err(code) => Err(self.refused(&Request::Read(spec), code)),
        }
    }

    pub(crate) fn parse_upload_info(
        &self,
        bytes: &[u8],
        spec: ReadSpec,
        legacy: bool,
    ) -> Result<UploadInfo, CollectError> {
        UploadInfo::parse(bytes, legacy).map_err(|e| self.table_error(&Request::Read(spec), e))
    }

    /// A read in a batch that got no result at all: the batch's answer did not add up.
    pub(crate) fn no_result(&self, spec: ReadSpec) -> CollectError {
        self.malformed(&Request::Read(spec), "no result for this read")
    }

    /// A table (or upload info) that cannot be taken: malformed, or beyond a bound. A
    /// placeholder is not an error; callers handle it before.
    pub(crate) fn table_error(&self, request: &Request, error: TableError) -> CollectError {
        match error {
            TableError::Malformed(e) | TableError::Placeholder(e) => self.malformed(request, e),
            TableError::Bound(e) => self.driver.scope().bound(request.describe(), e),
        }
    }

    /// Reads one table of `bytes` bytes. The upload info announced it, so a refusal
    /// contradicts the device's own answer and fails the capture.
    async fn read_table(&mut self, table_group: u32, bytes: u32) -> Result<Vec<u8>, CollectError> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let spec = ReadSpec {
            group: table_group,
            offset: 0,
            length: bytes,
        };
        match self.driver.read(spec).await? {
            Ok(data) if data.len() == bytes as usize => Ok(data),
            Ok(data) => Err(self.malformed(
                &Request::Read(spec),
                format!(
                    "the upload info announced {bytes} bytes, the device sent {}",
                    data.len()
                ),
            )),
            Err(code) => Err(self.ads_error(
                Request::Read(spec).describe(),
                code,
                &format!(", although the upload info announced this table ({bytes} bytes)"),
            )),
        }
    }

    /// Uploads the symbol and data-type tables and derives the program items.
    async fn upload(
        &mut self,
        signals: Signals,
        info_source: InfoSource,
    ) -> Result<Program, CollectError> {
        let mut items = Vec::new();
        let mut symbols = None;
        let mut types = BTreeMap::new();
        // The size of the data-type table when it was uploaded (it must then describe every
        // type the symbol table names).
        let mut type_table = None;
        let gap = |path: &str, reason: String| {
            Item::new(path.to_owned(), Class::Program, Value::unavailable(reason))
        };
        match signals.upload {
            None => {
                // Both upload infos answered "not supported": a device without the upload
                // (BC/BX controllers, gateways). A stable capability, recorded as such.
                let reason = "device does not offer the symbol upload (0xF00F/0xF00C: service not supported)";
                items.push(
                    gap("ads/symbols", reason.to_owned())
                        .map_err(|e| self.driver.scope().item(e))?,
                );
                items.push(
                    gap("ads/datatypes", reason.to_owned())
                        .map_err(|e| self.driver.scope().item(e))?,
                );
            }
            Some(info) => {
                let sym_request = Request::Read(ReadSpec {
                    group: group::SYM_UPLOAD,
                    offset: 0,
                    length: info.symbol_bytes,
                });
                let bytes = self
                    .read_table(group::SYM_UPLOAD, info.symbol_bytes)
                    .await?;
                match tables::parse_symbols(&bytes, info.symbols) {
                    Ok(list) => symbols = Some(list),
                    // Every entry nameless: the device's way of having no table to give.
                    Err(TableError::Placeholder(e)) => items.push(
                        gap(
                            "ads/symbols",
                            format!(
                                "device answers the symbol upload with placeholder entries ({e})"
                            ),
                        )
                        .map_err(|e| self.driver.scope().item(e))?,
                    ),
                    Err(e) => return Err(self.table_error(&sym_request, e)),
                }
                match info.datatypes {
                    // The legacy upload info has no data-type figures: the device's own
                    // answer says there is no data-type table to ask for.
                    None => items.push(
                        gap(
                            "ads/datatypes",
                            "device reports no data-type table (legacy upload info 0xF00C)"
                                .to_owned(),
                        )
                        .map_err(|e| self.driver.scope().item(e))?,
                    ),
                    Some((count, bytes)) => {
                        let dt_request = Request::Read(ReadSpec {
                            group: group::SYM_DT_UPLOAD,
                            offset: 0,
                            length: bytes,
                        });
                        let data = self.read_table(group::SYM_DT_UPLOAD, bytes).await?;
                        match tables::parse_datatypes(&data, count) {
                            Ok(list) => {
                                types = tables::index_types(list);
                                types::check_table(&types)
                                    .map_err(|e| self.malformed(&dt_request, e))?;
                                type_table = Some(bytes);
                            }
                            Err(TableError::Placeholder(e)) => items.push(
                                gap(
                                    "ads/datatypes",
                                    format!(
                                        "device answers the data-type upload with placeholder entries ({e})"
                                    ),
                                )
                                .map_err(|e| self.driver.scope().item(e))?,
                            ),
                            Err(e) => return Err(self.table_error(&dt_request, e)),
                        }
                    }
                }
            }
        }
        if let Some(list) = &symbols {
            for s in list {
                items.push(self.item(
                    format!("ads/symbol/{}", s.name),
                    Class::Program,
                    symbol_value(s),
                )?);
            }
        }
        for dt in types.values() {
            items.push(self.item(
                format!("ads/datatype/{}", dt.name),
                Class::Program,
                datatype_value(dt),
            )?);
        }
        let app = self.locate_app_info(symbols.as_deref(), &types, type_table)?;
        Ok(Program {
            signals,
            info_source,
            symbols,
            types,
            items,
            app,
            by_name: BTreeMap::new(),
        })
    }

    /// Where `_AppInfo` is, or why it is not there in stable words: no symbol table to look
    /// in, or a symbol table that does not list it (TwinCAT 2, other vendors), or no
    /// data-type table to lay it out with. A data-type table that is there but does not
    /// describe the type the symbol table gives `_AppInfo` contradicts it: malformed.
    fn locate_app_info(
        &self,
        symbols: Option<&[Symbol]>,
        types: &BTreeMap<String, DataType>,
        type_table: Option<u32>,
    ) -> Result<Result<AppInfoLoc, String>, CollectError> {
        let Some(list) = symbols else {
            return Ok(Err(
                "no symbol table to find TwinCAT_SystemInfoVarList._AppInfo in".to_owned(),
            ));
        };
        let Some(s) = list
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(APP_INFO_SYMBOL))
        else {
            return Ok(Err(format!(
                "{APP_INFO_SYMBOL} is not in the symbol table (TwinCAT 2 or another vendor's ADS server)"
            )));
        };
        let Some(type_table) = type_table else {
            return Ok(Err(format!(
                "the layout of {APP_INFO_SYMBOL} (type {}) needs the data-type table, which this device does not give",
                s.type_name
            )));
        };
        let shape = (Types { table: types })
            .shape(&s.type_name, s.size, s.base_type)
            .map_err(|e| self.shape_error(APP_INFO_SYMBOL, e))?;
        match shape {
            Shape::Struct(fields) if s.size <= MAX_VALUE_BYTES => Ok(Ok(AppInfoLoc {
                spec: ReadSpec {
                    group: s.group,
                    offset: s.offset,
                    length: s.size,
                },
                fields,
            })),
            _ => Err(self.malformed(
                &Request::Read(ReadSpec {
                    group: group::SYM_DT_UPLOAD,
                    offset: 0,
                    length: type_table,
                }),
                format!(
                    "the symbol table lists {APP_INFO_SYMBOL} as {} ({} bytes), which the data-type table does not describe as a structure",
                    s.type_name, s.size
                ),
            )),
        }
    }
}
