//! The program: block counts, the blocks of each type with their block info, and (with
//! `upload_blocks`) the digest of each code block's contents. The block directory is also the
//! authority on which DBs exist, for the setpoints.

use std::collections::BTreeMap;

use otdrift_core::{Class, Digest, Value};

use super::S7Collector;
use super::decode::{self, Protection};
use super::items::{Found, block_fields, put};
use super::link::Denied;
use super::request::{BlockType, FN_END_UPLOAD, FN_START_UPLOAD, FN_UPLOAD, GROUP_BLOCKS, Request};
use super::wire::{self, Refusal};
use crate::CollectError;

/// The most parts one block list of one type may take: 65536 blocks at 50 per part.
const MAX_LIST_PARTS: usize = 1400;
/// The most parts one upload may take.
const MAX_UPLOAD_PARTS: usize = 4096;

/// At most this many polls in a row may take the block directory from the last full read on a
/// CPU whose configuration checksums were seen to move with a block change (see
/// [`Checksums`]): once an hour on a 1-minute schedule, the same as OPC UA's default
/// `full_browse_every`.
pub const FULL_BLOCK_READ_EVERY: u32 = 60;

/// What the collector knows of the CPU's program between captures, so that a quiet poll may
/// skip the block lists and block info (one request per block) when the CPU's own
/// configuration checksums (SZL 0x0232 index 4, read every poll with the protection) say
/// nothing was downloaded, and never at the cost of a missed change:
///
/// - only on a CPU whose checksums **were seen to move** with a block change: a full read
///   found the block directory (counts, block info) changed since the previous full read and
///   the checksums moved too. A block change with the checksums unchanged revokes that for
///   good (in this process). A CPU without checksums (S7-1200/1500, snap7: zeros) reads block
///   info every poll, as a list-blocks answer alone never proves that nothing changed;
/// - never on a new connection or when the checksums or the protection moved;
/// - a full read at least every [`FULL_BLOCK_READ_EVERY`] polls.
#[derive(Debug, Default)]
pub(crate) struct Checksums {
    last: Option<LastBlocks>,
    proven: bool,
    disproven: bool,
    since_full: u32,
}

/// One item of the block directory, as [`Found`] holds it.
pub(crate) type BlockItem = (String, (Class, Value));

/// The last full read of the block directory.
#[derive(Debug)]
struct LastBlocks {
    protection: Option<Protection>,
    items: Vec<BlockItem>,
    directory: DbDirectory,
}

/// Whether a path is one of the block directory's items.
fn is_block_item(path: &str) -> bool {
    path == "s7/blocks" || path.starts_with("s7/blocks/") || path.starts_with("s7/block/")
}

impl Checksums {
    /// The block items and DB directory of the last full read, when this poll may reuse them.
    pub(crate) fn reuse(
        &mut self,
        fresh: bool,
        protection: Option<Protection>,
    ) -> Option<(Vec<BlockItem>, DbDirectory)> {
        let last = self.last.as_ref()?;
        let fits = self.proven
            && !fresh
            && protection.is_some_and(|p| p.checksums.is_some())
            && last.protection == protection
            && self.since_full.saturating_add(1) < FULL_BLOCK_READ_EVERY;
        if !fits {
            return None;
        }
        self.since_full += 1;
        Some((last.items.clone(), last.directory.clone()))
    }

    /// Takes in a full read: proves or disproves the CPU's checksums, keeps what a later poll
    /// may reuse.
    pub(crate) fn remember(
        &mut self,
        asset: &str,
        protection: Option<Protection>,
        found: &Found,
        directory: &DbDirectory,
    ) {
        let items: Vec<BlockItem> = found
            .iter()
            .filter(|(path, _)| is_block_item(path))
            .map(|(path, item)| (path.clone(), item.clone()))
            .collect();
        let sums = protection.and_then(|p| p.checksums);
        if let Some(last) = &self.last
            && last.items != items
        {
            let before = last.protection.and_then(|p| p.checksums);
            let moved = before.is_some() && sums.is_some() && before != sums;
            if moved && !self.disproven {
                if !self.proven {
                    tracing::info!(
                        asset,
                        "the CPU's program checksums moved with a block change: quiet polls \
                         may skip block info while they stay"
                    );
                }
                self.proven = true;
            } else if !moved {
                if self.proven || before.is_some() {
                    tracing::warn!(
                        asset,
                        "the blocks changed while the CPU's program checksums did not: every \
                         poll reads block info from now on"
                    );
                }
                self.proven = false;
                self.disproven = true;
            }
        }
        self.since_full = 0;
        self.last = Some(LastBlocks {
            protection,
            items,
            directory: directory.clone(),
        });
    }
}

/// What the CPU's own block directory said about its DBs in this capture: the authority
/// that decides whether a DB a setpoint names is absent (state) or refused (a failure).
#[derive(Debug, Clone)]
pub(crate) enum DbDirectory {
    /// The CPU does not offer block functions (S7-1200/1500): no absence can be confirmed.
    Unknown,
    /// The DBs the block list shows, with their size in bytes from block info (a DB's MC7
    /// size is its data length).
    Listed(BTreeMap<u16, u32>),
}

/// Cached upload result of one block, valid while the block's info and the protection stay
/// the same.
#[derive(Debug)]
pub(crate) struct CachedUpload {
    key: (u16, u32, u16, String, Option<Protection>),
    items: Vec<(String, Value)>,
}

impl S7Collector {
    /// The numbers of the blocks of one type, following continuation parts (at most
    /// [`MAX_LIST_PARTS`], a `bound`). `Ok(Err(..))` when the CPU refuses a part.
    async fn list_blocks_of_type(
        &mut self,
        block: BlockType,
    ) -> Result<Result<Vec<u16>, Denied>, CollectError> {
        let first = Request::ListBlocksOfType { block };
        let (mut seq, mut more, payload) =
            match self.driver.userdata(&first, GROUP_BLOCKS, 0x02).await? {
                Ok(part) => part,
                Err(denied) => return Ok(Err(denied)),
            };
        let mut numbers = Vec::new();
        fn add(
            this: &S7Collector,
            request: &Request,
            payload: &[u8],
            numbers: &mut Vec<u16>,
        ) -> Result<(), CollectError> {
            let entries = decode::block_list(payload)
                .map_err(|e| this.driver.scope().malformed(request.describe(), e))?;
            numbers.extend(entries.iter().map(|e| e.number));
            if numbers.len() > usize::from(u16::MAX) + 1 {
                return Err(this.driver.scope().malformed(
                    request.describe(),
                    "more than 65536 blocks of one type (some listed twice)",
                ));
            }
            Ok(())
        }
        add(self, &first, &payload, &mut numbers)?;
        let mut parts = 1;
        while more {
            let next = Request::ListBlocksOfTypeNext { block, seq };
            if parts >= MAX_LIST_PARTS {
                self.driver.drop_connection();
                return Err(self.driver.scope().bound(
                    next.describe(),
                    format!("more data still follows after {parts} parts (at most {MAX_LIST_PARTS} are read)"),
                ));
            }
            match self.driver.userdata(&next, GROUP_BLOCKS, 0x02).await? {
                Ok((s, m, payload)) => {
                    add(self, &next, &payload, &mut numbers)?;
                    (seq, more) = (s, m);
                }
                Err(denied) => return Ok(Err(denied)),
            }
            parts += 1;
        }
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w.first() == w.get(1)) {
            return Err(self
                .driver
                .scope()
                .malformed(first.describe(), "a block is listed twice"));
        }
        Ok(Ok(sorted))
    }

    /// Uploads one block (CPU to us) and returns its bytes. `Ok(Err(..))` only when the CPU
    /// refuses to start the upload for a stable reason (protection level, service not
    /// offered); any other refusal, and a refusal after the upload started, fail the capture.
    async fn upload(
        &mut self,
        block: BlockType,
        number: u16,
    ) -> Result<Result<Vec<u8>, Denied>, CollectError> {
        let start = Request::StartUpload { block, number };
        let (params, _) = match self.driver.job(&start, FN_START_UPLOAD).await? {
            Ok(answer) => answer,
            Err(denied)
                if !denied.is_busy()
                    && denied
                        .code()
                        .is_some_and(|r| r.is_protection() || r.is_not_offered()) =>
            {
                return Ok(Err(denied));
            }
            Err(denied) => return Err(denied.fail(self.driver.scope(), "")),
        };
        let (id, announced) = decode::start_upload(&params)
            .map_err(|e| self.driver.scope().malformed(start.describe(), e))?;
        if let Some(length) = announced.filter(|n| *n > decode::MAX_UPLOAD_BYTES) {
            self.driver.drop_connection();
            return Err(self.driver.scope().bound(
                start.describe(),
                format!(
                    "the CPU announces a block of {length} bytes; at most {} are uploaded",
                    decode::MAX_UPLOAD_BYTES
                ),
            ));
        }
        let limit = announced.unwrap_or(decode::MAX_UPLOAD_BYTES);
        let mut bytes = Vec::new();
        let mut parts = 0;
        // From here on the CPU holds an open upload: any failure drops the connection, so the
        // CPU releases it (an upload left open blocks the next one: error 0x8304).
        loop {
            let part = Request::Upload { block, number, id };
            if parts >= MAX_UPLOAD_PARTS {
                self.driver.drop_connection();
                return Err(self.driver.scope().bound(
                    part.describe(),
                    format!("still not finished after {parts} parts (at most {MAX_UPLOAD_PARTS} are read)"),
                ));
            }
            parts += 1;
            let (params, data) = match self.driver.job(&part, FN_UPLOAD).await? {
                Ok(answer) => answer,
                Err(denied) => {
                    self.driver.drop_connection();
                    return Err(denied.fail(self.driver.scope(), "; the upload had started"));
                }
            };
            let (more, chunk) = match decode::upload_part(&params, &data) {
                Ok(part) => part,
                Err(e) => {
                    self.driver.drop_connection();
                    return Err(self.driver.scope().malformed(part.describe(), e));
                }
            };
            if bytes.len() + chunk.len() > limit {
                self.driver.drop_connection();
                return Err(match announced {
                    Some(_) => self.driver.scope().malformed(
                        part.describe(),
                        format!("the upload exceeds the {limit} bytes announced"),
                    ),
                    None => self
                        .driver
                        .scope()
                        .bound(part.describe(), format!("the upload exceeds {limit} bytes")),
                });
            }
            bytes.extend_from_slice(chunk);
            if !more {
                break;
            }
        }
        let end = Request::EndUpload { block, number, id };
        if let Err(denied) = self.driver.job(&end, FN_END_UPLOAD).await? {
            // The block is complete; a CPU that will not confirm the end is noted only.
            tracing::debug!(reason = %denied.reason(), "end upload not confirmed");
        }
        Ok(Ok(bytes))
    }

    /// The program: block counts, the blocks of each type with their block info, and (with
    /// `upload_blocks`) the digest of each code block's contents. Returns what the block
    /// directory says about DBs, for the setpoints.
    pub(crate) async fn read_blocks(
        &mut self,
        found: &mut Found,
        protection: Option<Protection>,
    ) -> Result<DbDirectory, CollectError> {
        let counts = match self
            .driver
            .userdata(&Request::ListBlocks, GROUP_BLOCKS, 0x01)
            .await?
        {
            Ok((_, _, payload)) => decode::block_counts(&payload).map_err(|e| {
                self.driver
                    .scope()
                    .malformed(Request::ListBlocks.describe(), e)
            })?,
            // S7-1200/1500 answer every block function with 0x8104 over PUT/GET; some stacks
            // close the session instead. Their program is not visible over S7comm at all: a
            // stable capability, recorded once.
            Err(denied)
                if !denied.is_busy() && denied.code().is_none_or(Refusal::is_not_offered) =>
            {
                put(
                    found,
                    "s7/blocks".to_owned(),
                    Class::Program,
                    Value::unavailable(denied.reason()),
                );
                return Ok(DbDirectory::Unknown);
            }
            Err(denied) => return Err(denied.fail(self.driver.scope(), "")),
        };
        put(
            found,
            "s7/blocks/count".to_owned(),
            Class::Program,
            Value::Map(
                counts
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::UInt((*v).into())))
                    .collect(),
            ),
        );
        let mut seen = Vec::new();
        let mut dbs = BTreeMap::new();
        for block in BlockType::LISTED {
            let count = counts.get(block.name()).copied().unwrap_or(0);
            if count == 0 {
                continue;
            }
            let numbers = match self.list_blocks_of_type(block).await? {
                Ok(numbers) => numbers,
                Err(denied) => {
                    return Err(denied.fail(
                        self.driver.scope(),
                        &format!("; list blocks counts {count} {} blocks", block.name()),
                    ));
                }
            };
            for number in numbers {
                seen.push((block, number));
                let size = self.read_block(found, block, number, protection).await?;
                if block == BlockType::Db {
                    dbs.insert(number, size);
                }
            }
        }
        self.uploads.retain(|key, _| seen.contains(key));
        Ok(DbDirectory::Listed(dbs))
    }

    /// Block info (and with `upload_blocks` the code) of one listed block; returns its MC7
    /// size. The block was listed, so a refused block info is a contradiction and a block info
    /// for another block is malformed: both fail the capture.
    async fn read_block(
        &mut self,
        found: &mut Found,
        block: BlockType,
        number: u16,
        protection: Option<Protection>,
    ) -> Result<u32, CollectError> {
        let name = format!("s7/block/{}{number}", block.name());
        let request = Request::BlockInfo { block, number };
        let info = match self.driver.userdata(&request, GROUP_BLOCKS, 0x03).await? {
            Ok((_, _, payload)) => decode::block_info(&payload, block, number)
                .map_err(|e| self.driver.scope().malformed(request.describe(), e))?
                .map_err(|reason| self.driver.scope().malformed(request.describe(), reason))?,
            Err(denied) => {
                return Err(denied.fail(
                    self.driver.scope(),
                    &format!(
                        "; list blocks of type {} still lists {}{number}",
                        block.name(),
                        block.name()
                    ),
                ));
            }
        };
        block_fields(found, &name, &info);
        let size = u32::from(info.mc7_size);
        if !(self.upload_blocks && block.uploadable()) {
            return Ok(size);
        }
        let key = (
            info.checksum,
            info.load_size,
            info.mc7_size,
            info.code_time.clone(),
            // The levels decide whether an upload is refused; the configuration checksums
            // move with every other block's download and say nothing about this one.
            protection.map(|p| Protection {
                checksums: None,
                ..p
            }),
        );
        if let Some(cached) = self.uploads.get(&(block, number)).filter(|c| c.key == key) {
            for (path, value) in &cached.items {
                put(found, path.clone(), Class::Program, value.clone());
            }
            return Ok(size);
        }
        let items = match self.upload(block, number).await? {
            Ok(bytes) => vec![
                (
                    format!("{name}/code"),
                    Value::Text(Digest::of(&bytes).to_string()),
                ),
                (format!("{name}/code_size"), Value::UInt(bytes.len() as u64)),
            ],
            Err(denied) => vec![(format!("{name}/code"), Value::unavailable(denied.reason()))],
        };
        for (path, value) in &items {
            put(found, path.clone(), Class::Program, value.clone());
        }
        self.uploads
            .insert((block, number), CachedUpload { key, items });
        Ok(size)
    }

    /// Why DB `db`, which the block list does not show and which Read Var answered with item
    /// return code `code` (`what`), is absent: block info must agree that it does not exist.
    /// Anything else fails the capture.
    pub(crate) async fn confirm_absent(
        &mut self,
        db: u16,
        code: u8,
        what: &str,
    ) -> Result<String, CollectError> {
        let request = Request::BlockInfo {
            block: BlockType::Db,
            number: db,
        };
        match self.driver.userdata(&request, GROUP_BLOCKS, 0x03).await? {
            Err(denied)
                if !denied.is_busy() && denied.code().is_some_and(Refusal::is_no_such_block) =>
            {
                Ok(format!(
                    "DB{db} does not exist: read var answered item return code 0x{code:02X} ({}), the block list does not show DB{db}, and {}",
                    wire::item_error_text(code),
                    denied.reason()
                ))
            }
            Err(denied) => Err(denied.fail(self.driver.scope(), "")),
            Ok(_) => Err(self.driver.scope().refused(
                what,
                format!(
                    "DB{db}: item return code 0x{code:02X} ({}), yet block info describes DB{db}",
                    wire::item_error_text(code)
                ),
            )),
        }
    }
}
