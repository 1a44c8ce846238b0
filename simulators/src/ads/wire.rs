//! The simulated PLC's ADS services: one request's data in, one answer (or a quirk's
//! silence) out, with what the request log records about it.

use super::state::{AdsState, MEMORY_GROUP, Quirk, Tables};
use super::types::{Prim, Ty, datatype_entry};
use crate::request_log::Described;

/// ADS return codes the simulator gives.
pub(crate) mod err {
    pub const TARGET_PORT_NOT_FOUND: u32 = 0x006;
    pub const TARGET_MACHINE_NOT_FOUND: u32 = 0x007;
    pub const UNKNOWN_COMMAND: u32 = 0x008;
    pub const INVALID_AMS_LENGTH: u32 = 0x00E;
    pub const SERVICE_NOT_SUPPORTED: u32 = 0x701;
    pub const INVALID_GROUP: u32 = 0x702;
    pub const INVALID_OFFSET: u32 = 0x703;
    pub const INVALID_SIZE: u32 = 0x705;
    pub const INVALID_PARAMETER: u32 = 0x706;
    pub const OUT_OF_MEMORY: u32 = 0x70A;
    pub const SYMBOL_NOT_FOUND: u32 = 0x710;
}

/// The most sub-commands one sum command may carry (Beckhoff's documented limit).
pub const MAX_SUM_COMMANDS: u32 = 500;

/// Index groups served.
mod group {
    pub const HANDLE_BY_NAME: u32 = 0xF003;
    pub const VALUE_BY_HANDLE: u32 = 0xF005;
    pub const RELEASE_HANDLE: u32 = 0xF006;
    pub const SYM_VERSION: u32 = 0xF008;
    pub const SYM_INFO_BY_NAME_EX: u32 = 0xF009;
    pub const SYM_UPLOAD: u32 = 0xF00B;
    pub const SYM_UPLOAD_INFO: u32 = 0xF00C;
    pub const SYM_DT_UPLOAD: u32 = 0xF00E;
    pub const SYM_UPLOAD_INFO2: u32 = 0xF00F;
    pub const SUMUP_READ: u32 = 0xF080;
    pub const SUMUP_WRITE: u32 = 0xF081;
    pub const SUMUP_READWRITE: u32 = 0xF082;
    pub const SUMUP_READ_EX: u32 = 0xF083;
    pub const SUMUP_READ_EX2: u32 = 0xF084;
    pub const SUMUP_ADD_NOTE: u32 = 0xF085;
    pub const SUMUP_DEL_NOTE: u32 = 0xF086;
}

/// What the connection does with a request.
#[derive(Debug)]
pub(crate) enum Action {
    /// Answer with this AMS header error code and data.
    Reply { error: u32, data: Vec<u8> },
    /// Close the connection without answering.
    Drop(&'static str),
    /// Never answer.
    Silent,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn result_only(code: u32) -> Vec<u8> {
    code.to_le_bytes().to_vec()
}

/// `result, length, data`.
fn with_data(code: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn group_label(g: u32) -> &'static str {
    match g {
        MEMORY_GROUP => "PLC memory",
        group::HANDLE_BY_NAME => "handle by name",
        group::VALUE_BY_HANDLE => "value by handle",
        group::RELEASE_HANDLE => "release handle",
        group::SYM_VERSION => "symbol version",
        group::SYM_INFO_BY_NAME_EX => "symbol info by name",
        group::SYM_UPLOAD => "symbol upload",
        group::SYM_UPLOAD_INFO => "upload info",
        group::SYM_DT_UPLOAD => "data-type upload",
        group::SYM_UPLOAD_INFO2 => "upload info 2",
        group::SUMUP_READ => "sum-read",
        group::SUMUP_WRITE => "sum-write",
        group::SUMUP_READWRITE => "sum-read-write",
        group::SUMUP_READ_EX => "sum-read with lengths",
        group::SUMUP_READ_EX2 => "sum-read packed",
        group::SUMUP_ADD_NOTE => "sum add notification",
        group::SUMUP_DEL_NOTE => "sum delete notification",
        _ => "unknown group",
    }
}

/// The 64-byte upload info 2 (0xF00F).
fn upload_info2(t: &Tables) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for v in [
        t.symbol_count,
        u32::try_from(t.symbols.len()).unwrap_or(u32::MAX),
        t.datatype_count,
        u32::try_from(t.datatypes.len()).unwrap_or(u32::MAX),
        0,
        0,
        0,
        1252,
        0,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.resize(64, 0);
    out
}

/// The tables as this device serves them: the program's, with what the quirks add.
fn served_tables(state: &mut AdsState) -> Tables {
    let mut t = state.tables();
    if state.quirks.get(Quirk::SelfReferencingType) {
        // A structure whose only field is the structure itself: no real compiler makes one,
        // so a table holding it contradicts itself. The field is described as a 4-byte
        // item of type `ST_Loop`, which is all a table can say.
        let field = Ty::Alias {
            name: "ST_Loop".to_owned(),
            target: Box::new(Ty::Prim(Prim::Udint, "UDINT")),
        };
        let looped = Ty::Struct {
            name: "ST_Loop".to_owned(),
            fields: vec![("Next".to_owned(), field, 0)],
            size: 4,
            align: 4,
        };
        t.datatypes
            .extend(datatype_entry("ST_Loop", &looped, 0, false, ""));
        t.datatype_count += 1;
    }
    if state.quirks.get(Quirk::UploadInfoMismatch) {
        t.symbol_count += 1;
    }
    t
}

/// Corrupts the second symbol entry: its name length runs past the entry.
fn corrupt_second_entry(table: &mut [u8]) {
    let Some(first) = le_u32(table, 0) else {
        return;
    };
    let at = first as usize + 24;
    if let Some(slot) = table.get_mut(at..at + 2) {
        slot.copy_from_slice(&0x7FFFu16.to_le_bytes());
    }
}

/// Reads `length` bytes at `group:offset` (Read, and each sub-read of a sum-read).
pub(crate) fn read_area(
    state: &mut AdsState,
    g: u32,
    offset: u32,
    length: u32,
) -> Result<Vec<u8>, u32> {
    let upload_refused = state.quirks.get(Quirk::NoUpload)
        && matches!(
            g,
            group::SYM_UPLOAD
                | group::SYM_UPLOAD_INFO
                | group::SYM_UPLOAD_INFO2
                | group::SYM_DT_UPLOAD
        );
    let legacy_refused = state.quirks.get(Quirk::LegacyUploadInfo)
        && matches!(g, group::SYM_UPLOAD_INFO2 | group::SYM_DT_UPLOAD);
    let tables_refused = state.quirks.get(Quirk::NoTableUpload)
        && matches!(g, group::SYM_UPLOAD | group::SYM_DT_UPLOAD);
    if upload_refused || legacy_refused || tables_refused {
        return Err(err::SERVICE_NOT_SUPPORTED);
    }
    let refused = state.refused_range();
    let overlaps_refused = |at: u32, len: u32| {
        refused.and_then(|(code, start, end)| {
            (u64::from(at) < u64::from(end) && u64::from(at) + u64::from(len) > u64::from(start))
                .then_some(code)
        })
    };
    let whole = |bytes: Vec<u8>| {
        if (length as usize) < bytes.len() {
            Err(err::INVALID_SIZE)
        } else {
            Ok(bytes)
        }
    };
    match g {
        MEMORY_GROUP => {
            let start = offset as usize;
            if start >= state.memory.len() {
                return Err(err::INVALID_OFFSET);
            }
            if let Some(code) = overlaps_refused(offset, length) {
                return Err(code);
            }
            state
                .memory
                .get(start..start + length as usize)
                .map(<[u8]>::to_vec)
                .ok_or(err::INVALID_SIZE)
        }
        group::VALUE_BY_HANDLE => {
            let (at, size) = *state.handles.get(&offset).ok_or(err::INVALID_OFFSET)?;
            if let Some(code) = overlaps_refused(at, size) {
                return Err(code);
            }
            if length < size {
                return Err(err::INVALID_SIZE);
            }
            let start = at as usize;
            state
                .memory
                .get(start..start + size as usize)
                .map(<[u8]>::to_vec)
                .ok_or(err::INVALID_OFFSET)
        }
        group::SYM_VERSION => {
            if length == 0 {
                return Err(err::INVALID_SIZE);
            }
            Ok(vec![if state.quirks.get(Quirk::SymverPlaceholder) {
                0
            } else {
                state.symbol_version
            }])
        }
        group::SYM_UPLOAD_INFO => {
            let t = served_tables(state);
            let mut out = t.symbol_count.to_le_bytes().to_vec();
            out.extend_from_slice(
                &u32::try_from(t.symbols.len())
                    .unwrap_or(u32::MAX)
                    .to_le_bytes(),
            );
            out.truncate(length as usize);
            Ok(out)
        }
        group::SYM_UPLOAD_INFO2 => {
            let mut out = upload_info2(&served_tables(state));
            out.truncate(length as usize);
            Ok(out)
        }
        group::SYM_UPLOAD => {
            let mut table = served_tables(state).symbols;
            if state.quirks.get(Quirk::BadSymbolEntry) {
                corrupt_second_entry(&mut table);
            }
            whole(table)
        }
        group::SYM_DT_UPLOAD => whole(served_tables(state).datatypes),
        _ => Err(err::INVALID_GROUP),
    }
}

/// Writes bytes at `group:offset` (Write, sum-write; always logged as a write).
fn write_area(state: &mut AdsState, g: u32, offset: u32, data: &[u8]) -> Result<(), u32> {
    match g {
        MEMORY_GROUP => {
            let start = offset as usize;
            let slot = state
                .memory
                .get_mut(start..start + data.len())
                .ok_or(err::INVALID_OFFSET)?;
            slot.copy_from_slice(data);
            Ok(())
        }
        group::VALUE_BY_HANDLE => {
            let (at, size) = *state.handles.get(&offset).ok_or(err::INVALID_OFFSET)?;
            if data.len() != size as usize {
                return Err(err::INVALID_SIZE);
            }
            let start = at as usize;
            state
                .memory
                .get_mut(start..start + data.len())
                .ok_or(err::INVALID_OFFSET)?
                .copy_from_slice(data);
            Ok(())
        }
        group::RELEASE_HANDLE => {
            let handle = le_u32(data, 0).ok_or(err::INVALID_SIZE)?;
            state
                .handles
                .remove(&handle)
                .map(|_| ())
                .ok_or(err::INVALID_PARAMETER)
        }
        _ => Err(err::INVALID_GROUP),
    }
}

fn name_of(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(data.get(..end).unwrap_or_default()).into_owned()
}

/// A ReadWrite's sub-service: `(answer data or error, write?)`.
fn read_write_area(
    state: &mut AdsState,
    g: u32,
    offset: u32,
    read_len: u32,
    write: &[u8],
) -> (Result<Vec<u8>, u32>, bool) {
    match g {
        group::HANDLE_BY_NAME => {
            let name = name_of(write);
            if let Some(code) = state.refuses_name(&name) {
                return (Err(code), false);
            }
            let located = state.locate(&name);
            (
                match located {
                    Ok((at, ty)) => {
                        let handle = state.next_handle;
                        state.next_handle = state.next_handle.wrapping_add(1);
                        state.handles.insert(handle, (at, ty.size()));
                        Ok(handle.to_le_bytes().to_vec())
                    }
                    Err(_) => Err(err::SYMBOL_NOT_FOUND),
                },
                false,
            )
        }
        group::SYM_INFO_BY_NAME_EX => {
            let name = name_of(write);
            let entry = match state.refuses_name(&name) {
                Some(code) => Err(code),
                None => state
                    .symbol_entry_by_name(&name)
                    .ok_or(err::SYMBOL_NOT_FOUND),
            };
            (
                entry.and_then(|e| {
                    if e.len() <= read_len as usize {
                        Ok(e)
                    } else {
                        Err(err::INVALID_SIZE)
                    }
                }),
                false,
            )
        }
        MEMORY_GROUP | group::VALUE_BY_HANDLE => {
            let written = write_area(state, g, offset, write);
            (
                written.and_then(|()| read_area(state, g, offset, read_len)),
                true,
            )
        }
        _ => (Err(err::INVALID_GROUP), false),
    }
}

/// Sum commands (0xF080-0xF086).
fn sum_command(
    state: &mut AdsState,
    g: u32,
    count: u32,
    read_len: u32,
    write: &[u8],
) -> (Result<Vec<u8>, u32>, bool, String) {
    let label = format!("{} 0x{g:04X} of {count}", group_label(g));
    let writes = matches!(
        g,
        group::SUMUP_WRITE | group::SUMUP_ADD_NOTE | group::SUMUP_DEL_NOTE
    );
    if state.quirks.get(Quirk::NoSum)
        || (state.quirks.get(Quirk::NoSumReadEx)
            && matches!(g, group::SUMUP_READ_EX | group::SUMUP_READ_EX2))
    {
        return (Err(err::INVALID_GROUP), writes, label);
    }
    if count == 0 || count > MAX_SUM_COMMANDS {
        return (Err(err::INVALID_SIZE), writes, label);
    }
    let n = count as usize;
    let result = match g {
        group::SUMUP_READ | group::SUMUP_READ_EX | group::SUMUP_READ_EX2 => {
            if write.len() != 12 * n {
                return (Err(err::INVALID_SIZE), false, label);
            }
            let mut heads = Vec::with_capacity(8 * n);
            let mut data = Vec::new();
            for i in 0..n {
                let (Some(sg), Some(so), Some(sl)) = (
                    le_u32(write, 12 * i),
                    le_u32(write, 12 * i + 4),
                    le_u32(write, 12 * i + 8),
                ) else {
                    return (Err(err::INVALID_SIZE), false, label);
                };
                let sub = if state.quirks.get(Quirk::SumReadSubError) && sg == MEMORY_GROUP {
                    Err(err::OUT_OF_MEMORY)
                } else {
                    read_area(state, sg, so, sl)
                };
                let (code, bytes) = match sub {
                    Ok(b) => (0, b),
                    Err(c) => (c, Vec::new()),
                };
                heads.extend_from_slice(&code.to_le_bytes());
                if g != group::SUMUP_READ {
                    heads.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(0).to_le_bytes());
                }
                let start = data.len();
                data.extend_from_slice(&bytes);
                if g != group::SUMUP_READ_EX2 {
                    data.resize(start + sl as usize, 0);
                }
            }
            if state.quirks.get(Quirk::SumReadNoResults) {
                Ok(data)
            } else {
                heads.extend(data);
                Ok(heads)
            }
        }
        group::SUMUP_WRITE => {
            let Some(specs) = write.get(..12 * n) else {
                return (Err(err::INVALID_SIZE), true, label);
            };
            let mut payload = write.get(12 * n..).unwrap_or_default();
            let mut results = Vec::with_capacity(4 * n);
            for i in 0..n {
                let (Some(sg), Some(so), Some(sl)) = (
                    le_u32(specs, 12 * i),
                    le_u32(specs, 12 * i + 4),
                    le_u32(specs, 12 * i + 8),
                ) else {
                    return (Err(err::INVALID_SIZE), true, label);
                };
                let Some(part) = payload.get(..sl as usize) else {
                    return (Err(err::INVALID_SIZE), true, label);
                };
                payload = payload.get(sl as usize..).unwrap_or_default();
                let code = write_area(state, sg, so, part).err().unwrap_or(0);
                results.extend_from_slice(&code.to_le_bytes());
            }
            Ok(results)
        }
        group::SUMUP_READWRITE => {
            let Some(specs) = write.get(..16 * n) else {
                return (Err(err::INVALID_SIZE), false, label);
            };
            let mut payload = write.get(16 * n..).unwrap_or_default();
            let mut heads = Vec::new();
            let mut data = Vec::new();
            let mut any_write = false;
            for i in 0..n {
                let (Some(sg), Some(so), Some(rl), Some(wl)) = (
                    le_u32(specs, 16 * i),
                    le_u32(specs, 16 * i + 4),
                    le_u32(specs, 16 * i + 8),
                    le_u32(specs, 16 * i + 12),
                ) else {
                    return (Err(err::INVALID_SIZE), any_write, label);
                };
                let Some(part) = payload.get(..wl as usize) else {
                    return (Err(err::INVALID_SIZE), any_write, label);
                };
                payload = payload.get(wl as usize..).unwrap_or_default();
                let (sub, w) = read_write_area(state, sg, so, rl, part);
                any_write |= w;
                let (code, bytes) = match sub {
                    Ok(b) => (0, b),
                    Err(c) => (c, Vec::new()),
                };
                heads.extend_from_slice(&code.to_le_bytes());
                heads.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(0).to_le_bytes());
                data.extend(bytes);
            }
            heads.extend(data);
            return (
                if heads.len() > read_len as usize {
                    Err(err::INVALID_SIZE)
                } else {
                    Ok(heads)
                },
                any_write,
                label,
            );
        }
        // Notifications are acknowledged but never sent (see the module docs).
        _ => Err(err::SERVICE_NOT_SUPPORTED),
    };
    let result = result.and_then(|body| {
        if body.len() > read_len as usize {
            Err(err::INVALID_SIZE)
        } else {
            Ok(body)
        }
    });
    (result, writes, label)
}

/// Handles one request's data block (after the AMS header) for command `cmd`.
pub(crate) fn handle(state: &mut AdsState, cmd: u16, data: &[u8]) -> (Described, Action) {
    let mut d = Described::new(cmd, "unknown_command", "");
    let ok = |data: Vec<u8>| Action::Reply { error: 0, data };
    let action = match cmd {
        1 => {
            d.name = "read_device_info".to_owned();
            if state.quirks.get(Quirk::NoDeviceInfo) {
                ok(result_only(err::SERVICE_NOT_SUPPORTED))
            } else {
                let mut out = result_only(0);
                out.push(state.version.0);
                out.push(state.version.1);
                out.extend_from_slice(&state.version.2.to_le_bytes());
                let mut name = [0u8; 16];
                for (slot, b) in name.iter_mut().zip(state.device_name.bytes().take(15)) {
                    *slot = b;
                }
                out.extend_from_slice(&name);
                ok(out)
            }
        }
        2 => {
            d.name = "read".to_owned();
            match (le_u32(data, 0), le_u32(data, 4), le_u32(data, 8)) {
                (Some(g), Some(o), Some(l)) if data.len() == 12 => {
                    d.address = Some(g);
                    d.count = Some(l);
                    d.detail = format!(
                        "group=0x{g:04X} offset=0x{o:X} length={l} ({})",
                        group_label(g)
                    );
                    match read_area(state, g, o, l) {
                        Ok(bytes) => ok(with_data(0, &bytes)),
                        Err(code) => ok(result_only(code)),
                    }
                }
                _ => {
                    d.detail = format!("{} parameter bytes", data.len());
                    ok(result_only(err::INVALID_SIZE))
                }
            }
        }
        3 => {
            d.name = "write".to_owned();
            d.write = true;
            match (le_u32(data, 0), le_u32(data, 4), le_u32(data, 8)) {
                (Some(g), Some(o), Some(l)) if data.len() == 12 + l as usize => {
                    d.address = Some(g);
                    d.count = Some(l);
                    d.detail = format!(
                        "group=0x{g:04X} offset=0x{o:X} length={l} ({})",
                        group_label(g)
                    );
                    let code = write_area(state, g, o, data.get(12..).unwrap_or_default())
                        .err()
                        .unwrap_or(0);
                    ok(result_only(code))
                }
                _ => ok(result_only(err::INVALID_SIZE)),
            }
        }
        4 => {
            d.name = "read_state".to_owned();
            if state.quirks.get(Quirk::NoReadState) {
                return (d, ok(result_only(err::SERVICE_NOT_SUPPORTED)));
            }
            let mut out = result_only(0);
            out.extend_from_slice(&state.ads_state.to_le_bytes());
            out.extend_from_slice(&state.device_state.to_le_bytes());
            ok(out)
        }
        5 => {
            d.name = "write_control".to_owned();
            d.write = true;
            match (le_u16(data, 0), le_u16(data, 2), le_u32(data, 4)) {
                (Some(ads), Some(dev), Some(l)) if data.len() == 8 + l as usize => {
                    d.detail = format!("ads_state={ads} device_state={dev}");
                    if usize::from(ads) < super::state::ADS_STATES.len() {
                        state.ads_state = ads;
                        state.device_state = dev;
                        ok(result_only(0))
                    } else {
                        ok(result_only(err::INVALID_PARAMETER))
                    }
                }
                _ => ok(result_only(err::INVALID_SIZE)),
            }
        }
        6 => {
            d.name = "add_notification".to_owned();
            d.write = true;
            match (le_u32(data, 0), le_u32(data, 4), le_u32(data, 8)) {
                (Some(g), Some(o), Some(l)) if data.len() == 40 => {
                    d.address = Some(g);
                    d.count = Some(l);
                    d.detail = format!("group=0x{g:04X} offset=0x{o:X} length={l}");
                    let handle = state.next_handle;
                    state.next_handle = state.next_handle.wrapping_add(1);
                    let mut out = result_only(0);
                    out.extend_from_slice(&handle.to_le_bytes());
                    ok(out)
                }
                _ => ok(result_only(err::INVALID_SIZE)),
            }
        }
        7 => {
            d.name = "delete_notification".to_owned();
            d.write = true;
            if data.len() == 4 {
                ok(result_only(0))
            } else {
                ok(result_only(err::INVALID_SIZE))
            }
        }
        9 => {
            d.name = "read_write".to_owned();
            match (
                le_u32(data, 0),
                le_u32(data, 4),
                le_u32(data, 8),
                le_u32(data, 12),
            ) {
                (Some(g), Some(o), Some(rl), Some(wl)) if data.len() == 16 + wl as usize => {
                    let write = data.get(16..).unwrap_or_default();
                    d.address = Some(g);
                    let (result, is_write, detail) =
                        if (group::SUMUP_READ..=group::SUMUP_DEL_NOTE).contains(&g) {
                            d.count = Some(o);
                            sum_command(state, g, o, rl, write)
                        } else {
                            d.count = Some(rl);
                            let (r, w) = read_write_area(state, g, o, rl, write);
                            let label = match g {
                                group::SYM_INFO_BY_NAME_EX | group::HANDLE_BY_NAME => {
                                    format!("{} {:?}", group_label(g), name_of(write))
                                }
                                _ => format!(
                                    "group=0x{g:04X} offset=0x{o:X} read={rl} write={wl} ({})",
                                    group_label(g)
                                ),
                            };
                            (r, w, label)
                        };
                    d.write = is_write;
                    d.detail = detail;
                    match result {
                        Ok(bytes) if bytes.len() <= rl as usize => ok(with_data(0, &bytes)),
                        Ok(_) => ok(result_only(err::INVALID_SIZE)),
                        Err(code) => ok(result_only(code)),
                    }
                }
                _ => {
                    d.detail = format!("{} parameter bytes", data.len());
                    ok(result_only(err::INVALID_SIZE))
                }
            }
        }
        other => {
            d.detail = format!("command id {other}");
            Action::Reply {
                error: err::UNKNOWN_COMMAND,
                data: Vec::new(),
            }
        }
    };
    (d, action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AdsState {
        AdsState::demo()
    }

    fn data_of(action: Action) -> Vec<u8> {
        match action {
            Action::Reply { data, .. } => data,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn reads_of_memory_are_bounded() {
        let mut s = state();
        let len = s.memory.len() as u32;
        assert!(read_area(&mut s, MEMORY_GROUP, 0, len).is_ok());
        assert_eq!(
            read_area(&mut s, MEMORY_GROUP, len, 1),
            Err(err::INVALID_OFFSET)
        );
        assert_eq!(
            read_area(&mut s, MEMORY_GROUP, len - 1, 2),
            Err(err::INVALID_SIZE)
        );
        assert_eq!(read_area(&mut s, 0x1234, 0, 1), Err(err::INVALID_GROUP));
        assert_eq!(
            read_area(&mut s, group::SYM_UPLOAD, 0, 1),
            Err(err::INVALID_SIZE)
        );
    }

    #[test]
    fn every_state_changing_command_is_flagged_as_a_write() {
        let mut s = state();
        let mut write = vec![];
        for v in [MEMORY_GROUP, 0, 1] {
            write.extend_from_slice(&v.to_le_bytes());
        }
        write.push(1);
        for (cmd, data, is_write) in [
            (3u16, write.clone(), true),
            (5, vec![6, 0, 0, 0, 0, 0, 0, 0], true),
            (6, vec![0; 40], true),
            (7, vec![0; 4], true),
            (2, write[..12].to_vec(), false),
            (1, vec![], false),
            (4, vec![], false),
        ] {
            let (d, _) = handle(&mut s, cmd, &data);
            assert_eq!(d.write, is_write, "command {cmd}");
        }
        assert_eq!(s.ads_state, 6, "WriteControl applied like a real PLC");
        // A ReadWrite into memory writes; one into the symbol services does not.
        let mut rw = vec![];
        for v in [MEMORY_GROUP, 0, 1, 1] {
            rw.extend_from_slice(&v.to_le_bytes());
        }
        rw.push(0);
        assert!(handle(&mut s, 9, &rw).0.write);
        let mut info = vec![];
        for v in [group::SYM_INFO_BY_NAME_EX, 0, 1024, 5] {
            info.extend_from_slice(&v.to_le_bytes());
        }
        info.extend_from_slice(b"MAIN\0");
        assert!(!handle(&mut s, 9, &info).0.write);
    }

    #[test]
    fn malformed_requests_get_ads_errors() {
        let mut s = state();
        for (cmd, data) in [
            (2u16, vec![1, 2, 3]),
            (9, vec![0; 15]),
            (3, vec![0; 11]),
            (5, vec![0; 3]),
        ] {
            let (_, action) = handle(&mut s, cmd, &data);
            let data = data_of(action);
            assert_eq!(le_u32(&data, 0), Some(err::INVALID_SIZE), "command {cmd}");
        }
        let (_, action) = handle(&mut s, 42, &[]);
        assert!(matches!(
            action,
            Action::Reply {
                error: err::UNKNOWN_COMMAND,
                ..
            }
        ));
        // A sum-read whose count does not match its parameter block.
        let mut sum = vec![];
        for v in [group::SUMUP_READ, 2, 100, 12] {
            sum.extend_from_slice(&v.to_le_bytes());
        }
        sum.extend_from_slice(&[0; 12]);
        let data = data_of(handle(&mut s, 9, &sum).1);
        assert_eq!(le_u32(&data, 0), Some(err::INVALID_SIZE));
    }
}
