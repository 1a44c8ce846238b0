//! The meaning of S7 answers: SZL lists (identity, protection, CPU mode), block lists, block
//! info and upload parts.
//!
//! Two kinds of result are kept apart (`docs/decisions/0004-field-truth.md`). A [`WireError`]
//! is an answer that does not add up or does not answer what was asked (an SZL list header
//! claiming more records than it carries, another SZL than the one asked, a block info for
//! another block): the capture fails with `Malformed`. A `String` reason is a well-formed
//! answer that, in the device's own format, does not carry a field (SZL 0x0011 records too
//! short for the version words, an SZL 0x0232 record without the protection words): the item
//! becomes a stable "not available" value, because the device answers the same way every time
//! and its own record length says the field is not there.

use std::collections::BTreeMap;

use otdrift_core::Value;

use super::request::BlockType;
use super::wire::{WireError, bad};

/// The most bytes an SZL list may add up to across its parts.
pub(crate) const MAX_SZL_BYTES: usize = 64 * 1024;

/// A system status list as the CPU reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SzlList {
    pub(crate) id: u16,
    pub(crate) index: u16,
    /// The records, each `LENTHDR` bytes long.
    pub(crate) records: Vec<Vec<u8>>,
}

/// Interprets the concatenated parts of an SZL answer for list `id`/`index`: the 8-byte SZL
/// header (ID, index, record length `LENTHDR`, record count `N_DR`) and `N_DR` records of
/// `LENTHDR` bytes each.
pub(crate) fn szl_list(
    asked_id: u16,
    asked_index: u16,
    bytes: &[u8],
) -> Result<SzlList, WireError> {
    let Some((&[id_hi, id_lo, ix_hi, ix_lo, len_hi, len_lo, n_hi, n_lo], records)) =
        bytes.split_first_chunk::<8>()
    else {
        return bad(format!(
            "an SZL answer of {} bytes is shorter than the 8-byte SZL header",
            bytes.len()
        ));
    };
    let id = u16::from_be_bytes([id_hi, id_lo]);
    let index = u16::from_be_bytes([ix_hi, ix_lo]);
    let record_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let declared = usize::from(u16::from_be_bytes([n_hi, n_lo]));
    let consistent = record_len > 0 && declared * record_len == records.len();
    if id != asked_id {
        return bad(if consistent {
            format!("SZL 0x{asked_id:04X} was answered with SZL 0x{id:04X}")
        } else {
            format!(
                "the answer for SZL 0x{asked_id:04X} does not start with an SZL header (it names SZL 0x{id:04X})"
            )
        });
    }
    if asked_index != 0 && index != asked_index {
        return bad(format!(
            "SZL 0x{asked_id:04X} index 0x{asked_index:04X} was answered for index 0x{index:04X}"
        ));
    }
    if record_len == 0 {
        if records.is_empty() {
            return Ok(SzlList {
                id,
                index,
                records: Vec::new(),
            });
        }
        return bad(format!(
            "the SZL header gives a record length of 0 but {} record bytes follow",
            records.len()
        ));
    }
    if declared * record_len > records.len() {
        return bad(format!(
            "the SZL header claims {declared} records of {record_len} bytes ({} bytes), the answer carries {}",
            declared * record_len,
            records.len()
        ));
    }
    if !records.len().is_multiple_of(record_len) {
        return bad(format!(
            "{} record bytes are not a whole number of {record_len}-byte records",
            records.len()
        ));
    }
    let count = records.len() / record_len;
    // A record count of 0 with whole records present is a known variation (some stacks leave
    // the count out); the records are still whole and are taken. Any other mismatch means the
    // answer lost or invented records.
    if declared != count && declared != 0 {
        return bad(format!(
            "the SZL header announces {declared} records, the answer carries {count}"
        ));
    }
    Ok(SzlList {
        id,
        index,
        records: records
            .chunks_exact(record_len)
            .map(<[u8]>::to_vec)
            .collect(),
    })
}

fn word(bytes: &[u8], at: usize) -> Option<u16> {
    let hi = *bytes.get(at)?;
    let lo = *bytes.get(at + 1)?;
    Some(u16::from_be_bytes([hi, lo]))
}

fn dword(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

/// Text from a fixed-width field: up to the first NUL, trailing blanks removed. Bytes that
/// are not printable ASCII are kept as bytes rather than guessed at.
pub(crate) fn text(field: &[u8]) -> Value {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let field = field.get(..end).unwrap_or_default();
    let trimmed_len = field
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |last| last + 1);
    let field = field.get(..trimmed_len).unwrap_or_default();
    if field.iter().all(|b| (0x20..0x7F).contains(b)) {
        Value::Text(field.iter().map(|&b| char::from(b)).collect())
    } else {
        Value::Bytes(field.to_vec())
    }
}

/// Items (relative path, value) from SZL 0x0011, module identification: for each record
/// the order number and the version. Index 0x0001 is the module, 0x0006 the basic hardware,
/// 0x0007 the basic firmware.
pub(crate) fn module_identity(list: &SzlList) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for record in &list.records {
        let Some(index) = word(record, 0) else {
            continue;
        };
        let name = match index {
            0x0001 => "module".to_owned(),
            0x0006 => "hardware".to_owned(),
            0x0007 => "firmware".to_owned(),
            0x0081 => "boot_loader".to_owned(),
            other => format!("index_0x{other:04x}"),
        };
        let order = text(
            record
                .get(2..22)
                .unwrap_or_else(|| record.get(2..).unwrap_or_default()),
        );
        if !matches!(&order, Value::Text(t) if t.is_empty()) {
            out.push((format!("{name}/order_number"), order));
        }
        let (Some(ausbg), Some(ausbe)) = (word(record, 24), word(record, 26)) else {
            // Some stacks send shorter records: the order number is still there, the version
            // fields are not.
            out.push((
                format!("{name}/version"),
                Value::unavailable(format!(
                    "SZL 0x0011 records of {} bytes lack the standard version fields",
                    record.len()
                )),
            ));
            continue;
        };
        let [letter, major] = ausbg.to_be_bytes();
        let [minor, patch] = ausbe.to_be_bytes();
        let version = if letter.is_ascii_uppercase() {
            format!("{}{major}.{minor}.{patch}", char::from(letter))
        } else if ausbe == 0 {
            format!("{ausbg}")
        } else {
            format!("{ausbg}.{ausbe}")
        };
        out.push((format!("{name}/version"), Value::Text(version)));
    }
    out
}

/// Items from SZL 0x001C, component identification: names, plant designation, serial
/// numbers. Index 9 (manufacturer and profile) is decoded as numbers; unknown indices are
/// kept as bytes.
pub(crate) fn component_identity(list: &SzlList) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for record in &list.records {
        let Some(index) = word(record, 0) else {
            continue;
        };
        let body = record.get(2..).unwrap_or_default();
        let field = |n: usize| body.get(..n.min(body.len())).unwrap_or_default();
        let (name, value) = match index {
            0x0001 => ("system_name".to_owned(), text(field(24))),
            0x0002 => ("module_name".to_owned(), text(field(24))),
            0x0003 => ("plant_id".to_owned(), text(field(32))),
            0x0004 => ("copyright".to_owned(), text(field(26))),
            0x0005 => ("serial_number".to_owned(), text(field(24))),
            0x0007 => ("module_type_name".to_owned(), text(field(32))),
            0x0008 => ("memory_card_serial".to_owned(), text(field(32))),
            0x000B => ("location".to_owned(), text(field(32))),
            0x0009 => {
                let mut map = BTreeMap::new();
                if let (Some(manufacturer), Some(profile), Some(kind)) =
                    (word(body, 0), word(body, 2), word(body, 4))
                {
                    map.insert(
                        "manufacturer_id".to_owned(),
                        Value::UInt(manufacturer.into()),
                    );
                    map.insert("profile_id".to_owned(), Value::UInt(profile.into()));
                    map.insert("profile_type".to_owned(), Value::UInt(kind.into()));
                }
                ("manufacturer".to_owned(), Value::Map(map))
            }
            other => {
                let end = body
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(0, |last| last + 1);
                (
                    format!("component_0x{other:04x}"),
                    Value::Bytes(body.get(..end).unwrap_or_default().to_vec()),
                )
            }
        };
        out.push((name, value));
    }
    out
}

/// The CPU protection from SZL 0x0232 index 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Protection {
    /// Level set by the mode selector (1-3).
    pub(crate) by_switch: u16,
    /// Level set in the CPU's parameters (0-3).
    pub(crate) parameterized: u16,
    /// The level in force.
    pub(crate) effective: u16,
    /// Mode selector position (1 RUN, 2 RUN-P, 3 STOP, 4 MRES, 0 none).
    pub(crate) selector: u16,
    /// `ken_rel` and the version IDs/checksums of the hardware configuration and the user
    /// program (`ken_ver1_hw`, `ken_ver2_hw`, `ken_ver1_awp`, `ken_ver2_awp`), when the record
    /// carries them, `ken_rel` says they are valid (non-zero) and the program's are not zero
    /// (S7-300/400; S7-1200/1500 and snap7 answer zeros).
    pub(crate) checksums: Option<[u16; 5]>,
}

pub(crate) fn protection(list: &SzlList) -> Result<Protection, String> {
    let record = list
        .records
        .iter()
        .find(|r| word(r, 0) == Some(0x0004))
        .or_else(|| list.records.first())
        .ok_or_else(|| "SZL 0x0232 answer has no records".to_owned())?;
    match (
        word(record, 2),
        word(record, 4),
        word(record, 6),
        word(record, 8),
    ) {
        (Some(by_switch), Some(parameterized), Some(effective), Some(selector)) => Ok(Protection {
            by_switch,
            parameterized,
            effective,
            selector,
            checksums: checksums(record),
        }),
        _ => Err("SZL 0x0232 record is shorter than the protection fields".to_owned()),
    }
}

/// The configuration checksums of an SZL 0x0232 index 4 record (see [`Protection`]).
fn checksums(record: &[u8]) -> Option<[u16; 5]> {
    let words = [14, 16, 18, 20, 22].map(|at| word(record, at));
    match words {
        [
            Some(rel),
            Some(hw1),
            Some(hw2),
            Some(program1),
            Some(program2),
        ] if rel != 0 && (program1, program2) != (0, 0) => {
            Some([rel, hw1, hw2, program1, program2])
        }
        _ => None,
    }
}

/// The mode selector position's name.
pub(crate) fn selector_name(position: u16) -> String {
    match position {
        0 => "none".to_owned(),
        1 => "RUN".to_owned(),
        2 => "RUN-P".to_owned(),
        3 => "STOP".to_owned(),
        4 => "MRES".to_owned(),
        other => format!("0x{other:04x}"),
    }
}

/// The CPU's current mode from SZL 0x0424 (bits 0-3 of the first record's `bzu_id`).
pub(crate) fn cpu_mode(list: &SzlList) -> Result<String, String> {
    let record = list
        .records
        .first()
        .ok_or_else(|| "SZL 0x0424 answer has no records".to_owned())?;
    let bzu = record
        .get(3)
        .copied()
        .ok_or_else(|| "SZL 0x0424 record is too short".to_owned())?;
    Ok(match bzu & 0x0F {
        0x0 => "UNKNOWN".to_owned(),
        0x1..=0x4 => "STOP".to_owned(),
        0x5..=0x7 => "STARTUP".to_owned(),
        0x8 => "RUN".to_owned(),
        0x9 => "RUN-R".to_owned(),
        0xA => "HOLD".to_owned(),
        0xB => "LINK-UP".to_owned(),
        0xC => "UPDATE".to_owned(),
        0xD => "DEFECTIVE".to_owned(),
        other => format!("0x{other:X}"),
    })
}

/// Block counts per type from a list-blocks answer.
pub(crate) fn block_counts(payload: &[u8]) -> Result<BTreeMap<String, u16>, WireError> {
    if !payload.len().is_multiple_of(4) || payload.len() > 4 * 32 {
        return bad(format!(
            "block list of {} bytes is not a list of 4-byte entries",
            payload.len()
        ));
    }
    let mut out = BTreeMap::new();
    for entry in payload.chunks_exact(4) {
        let Some(&[_, kind, hi, lo]) = entry.first_chunk::<4>() else {
            continue;
        };
        let name = BlockType::from_code(kind)
            .map_or_else(|| format!("0x{kind:02X}"), |t| t.name().to_owned());
        if out
            .insert(name.clone(), u16::from_be_bytes([hi, lo]))
            .is_some()
        {
            return bad(format!("block type {name} listed twice"));
        }
    }
    Ok(out)
}

/// One entry of a list-blocks-of-type answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListedBlock {
    pub(crate) number: u16,
    pub(crate) flags: u8,
    pub(crate) language: u8,
}

/// The entries of one part of a list-blocks-of-type answer.
pub(crate) fn block_list(payload: &[u8]) -> Result<Vec<ListedBlock>, WireError> {
    if !payload.len().is_multiple_of(4) {
        return bad(format!(
            "block list part of {} bytes is not a list of 4-byte entries",
            payload.len()
        ));
    }
    Ok(payload
        .chunks_exact(4)
        .filter_map(|e| e.first_chunk::<4>())
        .map(|&[hi, lo, flags, language]| ListedBlock {
            number: u16::from_be_bytes([hi, lo]),
            flags,
            language,
        })
        .collect())
}

/// What block info says about one block.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BlockInfo {
    pub(crate) flags: u8,
    pub(crate) language: u8,
    pub(crate) load_size: u32,
    pub(crate) code_time: String,
    pub(crate) interface_time: String,
    pub(crate) local_data: u16,
    pub(crate) mc7_size: u16,
    pub(crate) author: Value,
    pub(crate) family: Value,
    pub(crate) name: Value,
    pub(crate) version: String,
    pub(crate) checksum: u16,
}

/// Block info's fixed part: 78 bytes after the data header.
pub(crate) const BLOCK_INFO_LEN: usize = 78;

/// A timestamp of block info: milliseconds since midnight and days since 1984-01-01.
pub(crate) fn s7_time(ms: u32, days: u16) -> String {
    // Days from 1970-01-01 to 1984-01-01.
    let z = i64::from(days) + 5113 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let ms = ms.min(86_399_999);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The name of a block language code.
pub(crate) fn language_name(code: u8) -> String {
    match code {
        0x00 => "none".to_owned(),
        0x01 => "STL".to_owned(),
        0x02 => "LAD".to_owned(),
        0x03 => "FBD".to_owned(),
        0x04 => "SCL".to_owned(),
        0x05 => "DB".to_owned(),
        0x06 => "GRAPH".to_owned(),
        0x07 => "SDB".to_owned(),
        0x08 => "CPU-DB".to_owned(),
        0x11 => "SDB (after overall reset)".to_owned(),
        0x12 => "SDB (routing)".to_owned(),
        0x29 => "encrypted".to_owned(),
        other => format!("0x{other:02X}"),
    }
}

/// Block info for `block` `number`. `Ok(Err(reason))` when the answer describes another
/// block (a placeholder answer), which the collector treats as malformed.
pub(crate) fn block_info(
    payload: &[u8],
    block: BlockType,
    number: u16,
) -> Result<Result<BlockInfo, String>, WireError> {
    if payload.len() < BLOCK_INFO_LEN {
        return bad(format!(
            "block info of {} bytes is shorter than the {BLOCK_INFO_LEN}-byte record",
            payload.len()
        ));
    }
    let b = |i: usize| payload.get(i).copied().unwrap_or(0);
    let w = |i: usize| word(payload, i).unwrap_or(0);
    let d = |i: usize| dword(payload, i).unwrap_or(0);
    let answered_number = w(12);
    let sub_type = b(11);
    // Siemens CPUs and snap7 report the sub-block type (0x0A for a DB); some emulators
    // (python-snap7's server) repeat the ASCII block type instead. Either names the block.
    if answered_number != number || (sub_type != block.sub_type() && sub_type != block.code()) {
        return Ok(Err(format!(
            "block info for {}{number} describes block number {answered_number} of sub-block type 0x{sub_type:02X}",
            block.name()
        )));
    }
    let version = b(66);
    Ok(Ok(BlockInfo {
        flags: b(9),
        language: b(10),
        load_size: d(14),
        code_time: s7_time(d(22), w(26)),
        interface_time: s7_time(d(28), w(32)),
        local_data: w(38),
        mc7_size: w(40),
        author: text(payload.get(42..50).unwrap_or_default()),
        family: text(payload.get(50..58).unwrap_or_default()),
        name: text(payload.get(58..66).unwrap_or_default()),
        version: format!("{}.{}", version >> 4, version & 0x0F),
        checksum: w(68),
    }))
}

/// The largest block an upload may deliver.
pub(crate) const MAX_UPLOAD_BYTES: usize = 1024 * 1024;

/// The upload id and announced length from a start-upload answer's parameters (the caller
/// holds the length to [`MAX_UPLOAD_BYTES`]).
pub(crate) fn start_upload(params: &[u8]) -> Result<([u8; 4], Option<usize>), WireError> {
    let Some(&[_, _, _, _, a, b, c, d]) = params.first_chunk::<8>() else {
        return bad(format!(
            "start upload answer has {} parameter bytes, at least 8 are standard",
            params.len()
        ));
    };
    let id = [a, b, c, d];
    let length = match params.get(8) {
        None => None,
        Some(&n) => {
            let digits = params
                .get(9..9 + usize::from(n))
                .ok_or_else(|| WireError(format!("block length of {n} digits is cut short")))?;
            if n == 0 || n > 10 || !digits.iter().all(u8::is_ascii_digit) {
                return bad("block length is not a decimal number");
            }
            let value = digits.iter().fold(0usize, |acc, d| {
                acc.saturating_mul(10).saturating_add(usize::from(d - b'0'))
            });
            Some(value)
        }
    };
    Ok((id, length))
}

/// One upload part: whether more follow, and the block bytes it carries.
pub(crate) fn upload_part<'a>(
    params: &[u8],
    data: &'a [u8],
) -> Result<(bool, &'a [u8]), WireError> {
    let Some(&[_, status]) = params.first_chunk::<2>() else {
        return bad("upload answer without its status byte");
    };
    let Some((&[len_hi, len_lo, _, _], bytes)) = data.split_first_chunk::<4>() else {
        return bad(format!(
            "upload answer has {} data bytes, at least 4 are standard",
            data.len()
        ));
    };
    let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if len != bytes.len() {
        return bad(format!(
            "upload part announces {len} bytes, {} arrived",
            bytes.len()
        ));
    }
    Ok((status & 0x01 != 0, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_times_count_days_from_1984() {
        assert_eq!(s7_time(0, 0), "1984-01-01T00:00:00.000");
        // snap7's constant: Nov 18 1999.
        assert_eq!(s7_time(0, 5800), "1999-11-18T00:00:00.000");
        assert_eq!(s7_time(45_296_789, 14_670), "2024-03-01T12:34:56.789");
    }

    #[test]
    fn szl_headers_are_checked() {
        let mut ok = vec![0x00, 0x11, 0x00, 0x00, 0x00, 0x02, 0x00, 0x02, 1, 2, 3, 4];
        assert_eq!(
            szl_list(0x0011, 0, &ok).expect("valid").records,
            vec![vec![1, 2], vec![3, 4]]
        );
        // Count missing: the records are still taken.
        ok[7] = 0;
        assert_eq!(szl_list(0x0011, 0, &ok).expect("valid").records.len(), 2);
        // More records claimed than carried (LENTHDR x N_DR > data): malformed.
        ok[7] = 3;
        let err = szl_list(0x0011, 0, &ok).expect_err("overclaim");
        assert!(err.0.contains("claims 3 records of 2 bytes"), "{err}");
        // Fewer claimed than carried, but not 0: records lost or invented.
        ok[7] = 1;
        assert!(szl_list(0x0011, 0, &ok).is_err());
        // Another list than the one asked.
        let other = [0x00, 0x12, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 1, 2];
        let err = szl_list(0x0011, 0, &other).expect_err("another list");
        assert!(err.0.contains("answered with SZL 0x0012"), "{err}");
        // No header at all.
        let err = szl_list(
            0x0011,
            0,
            &[0x00, 0x01, 0x36, 0x45, 0x53, 0x37, 0x20, 0x33, 0x31],
        )
        .expect_err("no header");
        assert!(err.0.contains("does not start with an SZL header"), "{err}");
        // A record length of 0 with bytes after it (python-snap7's SZL 0x001C).
        let err = szl_list(0x001C, 0, &[0x00, 0x1C, 0, 0, 0, 0, 0, 0, 1, 2, 3])
            .expect_err("no record length");
        assert!(err.0.contains("record length of 0"), "{err}");
    }

    #[test]
    fn versions_are_read_like_step7_shows_them() {
        let mut record = vec![0x00, 0x07];
        record.extend_from_slice(&[b' '; 20]);
        record.extend_from_slice(&[0x00, 0xC0, b'V', 3, 2, 6]);
        let list = SzlList {
            id: 0x11,
            index: 0,
            records: vec![record],
        };
        assert_eq!(
            module_identity(&list),
            vec![("firmware/version".to_owned(), Value::Text("V3.2.6".into()))]
        );
    }
}
