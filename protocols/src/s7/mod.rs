//! Siemens S7 (S7comm over ISO-on-TCP, port 102), read-only.
//!
//! The collector speaks S7comm itself (no snap7 client: see
//! `docs/decisions/0002-s7comm-client.md`); `docs/protocols/s7.md` is the operator's version
//! of this page.
//!
//! # What is captured
//!
//! One session is kept open between captures (a session the CPU dropped while idle is
//! replaced once, transparently). A capture reads, in order:
//!
//! - **identity** (class identity): SZL 0x0011 (order numbers and versions of the module,
//!   hardware and firmware), SZL 0x001C (system and module names, plant id, copyright, serial
//!   numbers, location, manufacturer) and SZL 0x0232 index 4 (the protection level set in
//!   the CPU's parameters);
//! - **runtime**, never hashed: SZL 0x0424 (`s7/cpu_mode`: RUN, STOP...; a mode change is not
//!   drift), the granted PDU (`s7/pdu_size`), the effective
//!   protection level and the mode selector position (`s7/protection_level_effective`,
//!   `s7/mode_selector`: the key switch of an S7-300 changes them), the CPU's configuration
//!   checksums from the same SZL 0x0232 record (`s7/configuration_checksums`) and whether
//!   block info was read (`s7/block_info`);
//! - **program** (class program): the block counts, the blocks of each type OB, FB, FC, DB
//!   and SDB, and block info of each block (checksum, load, MC7 and local data sizes, author,
//!   family, name, version, language, flags, code and interface timestamps). With
//!   `upload_blocks = true` the code of OB, FB, FC and SDB blocks is uploaded (CPU to us) and
//!   hashed, again only when the block's info or the protection changed since the previous
//!   capture of this collector. DBs are never uploaded: their contents are process data;
//!   resizing or re-downloading a DB changes its block info. On a CPU whose configuration
//!   checksums were seen to move with a block change, a quiet poll takes the block items of
//!   the last full read instead (`program.rs`, `Checksums`);
//! - **setpoints** (class setpoint): the bytes of the `[[asset.setpoints]]` ranges, merged
//!   per DB and read with as few Read Var requests as the granted PDU allows (`plan.rs`). A
//!   range with a layout (`[[asset.setpoints.field]]`) gives one typed item per field
//!   (`s7/db<N>/<name>`: BOOL, INT, UINT, DINT, UDINT, REAL, LREAL big-endian as S7 stores
//!   them, STRING[N] checked against its header; `items::range_items`), one item per byte
//!   outside every field, and one per remaining bit of a byte with BOOL fields
//!   (`s7/db<N>/<offset>.<bit>`). The same bytes are read either way.
//!
//! # Paths
//!
//! `s7/identity/module/order_number`, `s7/identity/{module,hardware,firmware}/version`,
//! `s7/identity/<0x001C field>` (`serial_number`, `plant_id`...), `s7/identity/protection_level`,
//! `s7/blocks/count`, `s7/block/<TYPE><n>/<field>` (e.g. `s7/block/DB10/checksum`),
//! `s7/block/<TYPE><n>/code` (`blake3:` of the uploaded block) and `code_size`, and
//! `s7/db<N>/<offset>` for each setpoint byte as an unsigned integer (S7comm does not know a
//! DB's layout), or `s7/db<N>/<name>` for a field of the range's configured layout.
//!
//! # What fails a capture, what is a stable gap
//!
//! The field-truth rule (`docs/decisions/0004-field-truth.md`; the operator's table is in
//! `docs/protocols/s7.md`). Only what the CPU refuses as a stable capability, or what its own
//! directory agrees does not exist, becomes one "not available" item with a stable reason:
//!
//! - `s7/blocks`: list blocks answered with 0x8104, 0x8305 or 0x8702 (service not offered:
//!   S7-1200/1500 over PUT/GET), or the session closed on it;
//! - `s7/block/<TYPE><n>/code`: start upload refused for the protection level (0xD241,
//!   0xD0A1) or as not offered (`upload_blocks = true` only);
//! - `s7/identity/protection_level`: SZL 0x0232 index 4 unknown to the CPU (0xD401, 0xD402,
//!   return code 0x0A), or its record without the protection words;
//! - `s7/identity/<name>/version`: SZL 0x0011 records too short for the version words;
//! - `s7/db<N>/<start>..<end>`: a DB the block list does not show and block info says does
//!   not exist, or a range beyond the size block info gives a listed DB.
//!
//! Everything else fails the capture, naming the request: a refused identity SZL (0x0011,
//! 0x001C), list of type, block info, upload part, or Read Var (`Refused`; a Read Var item
//! refused with 0x05 or 0x0A for a DB the block list and block info show is a contradiction);
//! busy answers (error class 0x83 except 0x8305, 0x011A, 0x011B, 0x0140, 0x0141,
//! 0xD061-0xD067, COTP disconnect reasons 0x01 and 0x81: `Busy`); answers that do not add up
//! or answer something else (an SZL header claiming more records than carried, another SZL,
//! block info for another block: `Malformed`); and the bounds on SZL, block list and upload
//! parts and sizes (`Bound`). Runtime-only reads (CPU mode, clock) that are refused or garbled
//! are recorded in runtime as not available.
//!
//! # CPU generations
//!
//! S7-300/400 answer everything (uploads refused at protection level 3). S7-1200/1500 answer
//! the identity SZLs and, with PUT/GET permitted, Read Var on DBs whose "Optimized block
//! access" is off; they refuse block functions and uploads (their program is only visible in
//! S7comm-plus), which shows as `s7/blocks` not available. LOGO! and S7-200 use other TSAPs
//! and are not supported.
//!
//! # Setting the CPU up
//!
//! TCP 102 from the gateway; `rack`/`slot` of the CPU (S7-300: 0/2, S7-400: as configured,
//! S7-1200/1500: 0/1). The collector opens a PG connection (TSAP 0x0100 to
//! 0x01 + rack·32 + slot) and holds one PG connection resource per asset. S7-1200/1500: permit
//! PUT/GET access, read access level at least, non-optimized setpoint DBs.
//!
//! # Files
//!
//! `request.rs` builds every request (the read-only boundary: `Request` has no variant for a
//! write, download, PI service, stop, clock setting or password; a unit test asserts what it
//! can encode), `link.rs` carries them (TCP, COTP, Setup Communication, and the job, userdata
//! and SZL services), `wire.rs` parses the answers, `decode.rs` reads SZL lists, block info and
//! upload parts, `plan.rs` packs the setpoint reads, `program.rs` reads the block directory and
//! `items.rs` turns answers into items.

mod decode;
mod items;
mod link;
mod plan;
mod program;
mod request;
mod wire;

use std::collections::BTreeMap;
use std::path::Path;

use otdrift_config::{AssetConfig, Protocol, ProtocolConfig, S7Config, S7Setpoint};
use otdrift_core::{Class, Item, Value};

use crate::CollectError;
use crate::driver::Driver;
use crate::module::{Module, Observed};
use decode::Protection;
use items::{Found, put};
use link::{Denial, Denied, S7Link};
use program::{CachedUpload, Checksums, DbDirectory};
use request::{BlockType, FN_READ_VAR, ReadItem, Request};
use wire::Refusal;

pub use items::setpoint_label;
pub use request::remote_tsap;

/// The Siemens S7 collector for one asset; keeps its connection between captures and the
/// previous capture's block uploads, so blocks are uploaded again only when they change.
#[derive(Debug)]
pub struct S7Collector {
    driver: Driver<S7Link>,
    upload_blocks: bool,
    setpoints: Vec<S7Setpoint>,
    ranges: Vec<plan::Range>,
    unaddressable: Vec<S7Setpoint>,
    uploads: BTreeMap<(BlockType, u16), CachedUpload>,
    /// The CPU's configuration checksums and the block directory they vouch for.
    checksums: Checksums,
}

impl S7Collector {
    /// A collector for `asset`; nothing is sent until the first capture.
    pub fn new(asset: &AssetConfig, cfg: &S7Config) -> Self {
        let (ranges, unaddressable) = plan::merge(&cfg.setpoints);
        let link = S7Link {
            host: asset.host.clone(),
            port: asset.port,
            rack: cfg.rack,
            slot: cfg.slot,
            pdu_wanted: cfg.pdu_size.clamp(240, 960),
        };
        S7Collector {
            driver: Driver::new(asset, link),
            upload_blocks: cfg.upload_blocks,
            setpoints: cfg.setpoints.clone(),
            ranges,
            unaddressable,
            uploads: BTreeMap::new(),
            checksums: Checksums::default(),
        }
    }

    /// The PDU size the CPU granted on the open connection, if any.
    pub fn negotiated_pdu(&self) -> Option<u16> {
        self.driver.pdu()
    }

    /// How many Read Var requests the setpoints take at PDU size `pdu`.
    pub fn planned_reads(&self, pdu: u16) -> usize {
        plan::plan(&self.ranges, pdu).len()
    }

    /// The fewest Read Var requests any client could read the setpoints in at PDU size
    /// `pdu` (the benchmark holds [`planned_reads`](Self::planned_reads) to it).
    pub fn minimum_reads(&self, pdu: u16) -> usize {
        plan::minimum_requests(&self.ranges, pdu)
    }

    /// Identity items (SZL 0x0011, 0x001C, 0x0232) and the protection found. A CPU must say
    /// what and who it is: a refused SZL 0x0011 or 0x001C fails the capture. Only SZL 0x0232,
    /// which S7-1200/1500 firmware does not always offer, may be absent, and only when the CPU
    /// says the list does not exist on it.
    async fn identity(
        &mut self,
        found: &mut Found,
        runtime: &mut BTreeMap<String, Value>,
    ) -> Result<Option<Protection>, CollectError> {
        let module = match self.driver.szl(0x0011, 0x0000).await? {
            Ok(list) => list,
            Err(denied) => {
                return Err(denied.fail(
                    self.driver.scope(),
                    "; a CPU must say what it is (order number, versions)",
                ));
            }
        };
        for (path, value) in decode::module_identity(&module) {
            put(found, format!("s7/identity/{path}"), Class::Identity, value);
        }
        // SZL 0x001C (component identification: names, serial number) is optional: some
        // firmware (S7-1200 4.x) answers "SZL ID not available" every time. That is a stable
        // capability of the CPU, recorded as one not-available item; the module identity
        // above is what a CPU must always tell. Any other refusal fails the capture.
        match self.driver.szl(0x001C, 0x0000).await? {
            Ok(component) => {
                for (path, value) in decode::component_identity(&component) {
                    put(found, format!("s7/identity/{path}"), Class::Identity, value);
                }
            }
            Err(denied)
                if !denied.is_busy() && denied.code().is_some_and(Refusal::is_unknown_szl) =>
            {
                put(
                    found,
                    "s7/identity/components".to_owned(),
                    Class::Identity,
                    Value::unavailable(denied.reason()),
                );
            }
            Err(denied) => {
                return Err(denied.fail(
                    self.driver.scope(),
                    "; a CPU must say who it is (names, serial number)",
                ));
            }
        }
        let protection = match self.driver.szl(0x0232, 0x0004).await? {
            Ok(list) => decode::protection(&list),
            Err(denied)
                if !denied.is_busy() && denied.code().is_some_and(Refusal::is_unknown_szl) =>
            {
                Err(denied.reason())
            }
            Err(denied) => return Err(denied.fail(self.driver.scope(), "")),
        };
        match protection {
            Ok(p) => {
                put(
                    found,
                    "s7/identity/protection_level".to_owned(),
                    Class::Identity,
                    Value::UInt(p.parameterized.into()),
                );
                runtime.insert(
                    "s7/protection_level_effective".to_owned(),
                    Value::UInt(p.effective.into()),
                );
                runtime.insert(
                    "s7/mode_selector".to_owned(),
                    Value::Text(decode::selector_name(p.selector)),
                );
                Ok(Some(p))
            }
            Err(reason) => {
                put(
                    found,
                    "s7/identity/protection_level".to_owned(),
                    Class::Identity,
                    Value::unavailable(reason),
                );
                Ok(None)
            }
        }
    }

    /// CPU mode (SZL 0x0424): never hashed, so a refused or garbled answer is recorded as not
    /// available. A busy CPU still fails the capture. The CPU clock is not read: it is not
    /// state, and reading it would cost the PLC a request every poll.
    async fn read_runtime(
        &mut self,
        state: &mut BTreeMap<String, Value>,
    ) -> Result<(), CollectError> {
        let mode = match self.driver.read_szl(0x0424, 0x0000).await? {
            Ok(bytes) => decode::szl_list(0x0424, 0x0000, &bytes)
                .map_err(|e| format!("read SZL 0x0424 index 0x0000: {e}"))
                .and_then(|list| decode::cpu_mode(&list)),
            Err(denied) if denied.is_busy() => return Err(denied.fail(self.driver.scope(), "")),
            Err(denied) => Err(denied.reason()),
        };
        state.insert(
            "s7/cpu_mode".to_owned(),
            mode.map_or_else(Value::unavailable, Value::Text),
        );
        Ok(())
    }

    /// The setpoint ranges, read with the plan for the negotiated PDU. The config asks for
    /// them, so a refusal fails the capture, except where the CPU's own block directory
    /// agrees the bytes do not exist: a DB the block list does not show and block info says
    /// does not exist, or a range beyond a listed DB's size. Those are stable "not available"
    /// ranges (state: a DB deleted or shrunk).
    async fn read_setpoints(
        &mut self,
        found: &mut Found,
        directory: &DbDirectory,
    ) -> Result<(), CollectError> {
        if let Some(sp) = self.unaddressable.first() {
            return Err(self.driver.scope().config(format!(
                "setpoint {:?}: DB{} bytes {}..{} lie beyond what S7comm can address (byte offsets 0..={})",
                sp.name,
                sp.db,
                sp.start,
                u64::from(sp.start) + u64::from(sp.size),
                request::MAX_BYTE_ADDRESS
            )));
        }
        if self.ranges.is_empty() {
            return Ok(());
        }
        let mut setpoints = self.setpoints.clone();
        setpoints.sort_by_key(|sp| (sp.db, sp.start, sp.size));
        // Ranges beyond a listed DB's size: the directory already says they do not exist.
        let mut absent: BTreeMap<String, String> = BTreeMap::new();
        let mut readable = Vec::new();
        for sp in &setpoints {
            let end = u64::from(sp.start) + u64::from(sp.size);
            match directory {
                DbDirectory::Listed(dbs) => match dbs.get(&sp.db) {
                    Some(&size) if end > u64::from(size) => {
                        absent.insert(
                            sp.name.clone(),
                            format!(
                                "DB{} holds {size} bytes (block info); bytes {}..{end} are not all in it",
                                sp.db, sp.start
                            ),
                        );
                    }
                    _ => readable.push(sp.clone()),
                },
                DbDirectory::Unknown => readable.push(sp.clone()),
            }
        }
        let (ranges, _) = plan::merge(&readable);
        self.driver.connect().await?;
        let pdu = self.driver.pdu().unwrap_or(self.driver.link.pdu_wanted);
        let mut pieces: Vec<(ReadItem, Vec<u8>)> = Vec::new();
        let mut refused: Vec<(ReadItem, u8, String)> = Vec::new();
        for items in plan::plan(&ranges, pdu) {
            let request = Request::ReadVar {
                items: items.clone(),
            };
            let what = request.describe();
            let pdu = self.driver.exchange(&request).await?;
            let answer =
                wire::parse_answer(&pdu).map_err(|e| self.driver.scope().malformed(&what, e))?;
            let params = match wire::job_answer(&answer, FN_READ_VAR) {
                Err(e) => {
                    self.driver.drop_connection();
                    return Err(self.driver.scope().malformed(&what, e));
                }
                Ok(Err(refusal)) => {
                    let denied = Denied {
                        request: what,
                        denial: Denial::Code(refusal),
                    };
                    return Err(denied.fail(
                        self.driver.scope(),
                        "; the configured setpoints must be readable",
                    ));
                }
                Ok(Ok(params)) => params,
            };
            let results = match wire::read_var_answer(params, answer.data, &items) {
                Ok(results) => results,
                Err(e) => {
                    self.driver.drop_connection();
                    return Err(self.driver.scope().malformed(&what, e));
                }
            };
            for (item, result) in items.iter().zip(results) {
                match result {
                    Ok(bytes) => pieces.push((*item, bytes)),
                    Err(code) => refused.push((*item, code, what.clone())),
                }
            }
        }
        // Each refused item: absent only when the directory agrees, else the capture fails.
        let mut missing_dbs: BTreeMap<u16, String> = BTreeMap::new();
        for (item, code, what) in &refused {
            if missing_dbs.contains_key(&item.db) {
                continue;
            }
            let text = wire::item_error_text(*code);
            let does_not_exist = matches!(code, 0x05 | 0x0A);
            let listed = match directory {
                DbDirectory::Listed(dbs) => Some(dbs.get(&item.db).copied()),
                DbDirectory::Unknown => None,
            };
            match listed {
                Some(None) if does_not_exist => {
                    let reason = self.confirm_absent(item.db, *code, what).await?;
                    missing_dbs.insert(item.db, reason);
                }
                Some(Some(size)) if does_not_exist => {
                    return Err(self.driver.scope().refused(
                        what,
                        format!(
                            "DB{}: item return code 0x{code:02X} ({text}), yet the block list shows DB{} and block info gives it {size} bytes",
                            item.db, item.db
                        ),
                    ));
                }
                None if does_not_exist => {
                    return Err(self.driver.scope().refused(
                        what,
                        format!(
                            "DB{}: item return code 0x{code:02X} ({text}); this CPU does not list its blocks, so the absence cannot be confirmed (on an S7-1200/1500: does DB{} exist, with \"Optimized block access\" off?)",
                            item.db, item.db
                        ),
                    ));
                }
                _ => {
                    return Err(self.driver.scope().refused(
                        what,
                        format!("DB{}: item return code 0x{code:02X} ({text})", item.db),
                    ));
                }
            }
        }
        items::setpoints(
            self.driver.scope(),
            found,
            &setpoints,
            &absent,
            &missing_dbs,
            pieces,
        )
    }
}

impl Module for S7Collector {
    const PROTOCOL: Protocol = Protocol::S7;
    type Config = S7Config;
    type Link = S7Link;

    fn config(protocol: &ProtocolConfig) -> Option<&S7Config> {
        match protocol {
            ProtocolConfig::S7(cfg) => Some(cfg),
            _ => None,
        }
    }

    fn build(asset: &AssetConfig, cfg: &S7Config, _data_dir: &Path) -> Self {
        S7Collector::new(asset, cfg)
    }

    fn setpoint_label(cfg: &S7Config, path: &str) -> Option<String> {
        items::setpoint_label(cfg, path)
    }

    const READER: u32 = 1;

    fn capture_spec(cfg: &S7Config) -> Vec<String> {
        let mut lines = vec![format!("upload_blocks {}", cfg.upload_blocks)];
        lines.extend(cfg.setpoints.iter().map(|s| {
            let fields: String = s
                .fields
                .iter()
                .map(|f| format!(" {}@{}.{}:{:?}", f.name, f.offset, f.bit, f.kind))
                .collect();
            format!("db{} {}+{}{fields}", s.db, s.start, s.size)
        }));
        lines
    }

    fn driver(&self) -> &Driver<S7Link> {
        &self.driver
    }

    fn driver_mut(&mut self) -> &mut Driver<S7Link> {
        &mut self.driver
    }

    async fn read(&mut self) -> Result<Observed, CollectError> {
        let mut found = Found::new();
        let mut observed = Observed::default();
        let fresh = self.driver.connect().await?;
        let protection = self.identity(&mut found, &mut observed.runtime).await?;
        self.read_runtime(&mut observed.operating_state).await?;
        if let Some([rel, hw1, hw2, program1, program2]) = protection.and_then(|p| p.checksums) {
            observed.runtime.insert(
                "s7/configuration_checksums".to_owned(),
                Value::Text(format!(
                    "ken_rel {rel:04X}, hardware {hw1:04X} {hw2:04X}, program {program1:04X} {program2:04X}"
                )),
            );
        }
        let (directory, blocks) = match self.checksums.reuse(fresh, protection) {
            Some((items, directory)) => {
                found.extend(items);
                (directory, "skipped (configuration checksums unchanged)")
            }
            None => {
                let directory = self.read_blocks(&mut found, protection).await?;
                let asset = self.driver.scope().asset.clone();
                self.checksums
                    .remember(&asset, protection, &found, &directory);
                (directory, "read")
            }
        };
        observed
            .runtime
            .insert("s7/block_info".to_owned(), Value::Text(blocks.to_owned()));
        self.read_setpoints(&mut found, &directory).await?;
        if let Some(pdu) = self.driver.pdu() {
            observed
                .runtime
                .insert("s7/pdu_size".to_owned(), Value::UInt(pdu.into()));
        }
        observed.snapshot = items::snapshot(self.driver.scope(), found)?;
        Ok(observed)
    }

    async fn read_identity(&mut self) -> Result<Vec<Item>, CollectError> {
        let mut found = Found::new();
        let mut runtime = BTreeMap::new();
        self.driver.connect().await?;
        self.identity(&mut found, &mut runtime).await?;
        Ok(items::snapshot(self.driver.scope(), found)?
            .items()
            .cloned()
            .collect())
    }
}
