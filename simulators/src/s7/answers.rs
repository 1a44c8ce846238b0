//! What the simulator answers itself, in front of snap7: identity SZLs, block functions and
//! uploads from the state file, and the refusals quirks call for. Frames are built here;
//! the decisions are in `proxy.rs`.

use super::state::{BlockMeta, ProgramType, S7State};

/// A parsed request from a client.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) rosctr: u8,
    pub(crate) pdu_ref: u16,
    pub(crate) params: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

impl Parsed {
    /// Parses an S7 request PDU; `None` when its lengths do not add up.
    pub(crate) fn parse(pdu: &[u8]) -> Option<Parsed> {
        let header = pdu.get(..10)?;
        if header[0] != 0x32 || !matches!(header[1], 0x01 | 0x07) {
            return None;
        }
        let plen = usize::from(u16::from_be_bytes([header[6], header[7]]));
        let dlen = usize::from(u16::from_be_bytes([header[8], header[9]]));
        if 10 + plen + dlen != pdu.len() {
            return None;
        }
        Some(Parsed {
            rosctr: header[1],
            pdu_ref: u16::from_be_bytes([header[4], header[5]]),
            params: pdu.get(10..10 + plen)?.to_vec(),
            data: pdu.get(10 + plen..)?.to_vec(),
        })
    }

    /// The job function (first parameter byte) of a job.
    pub(crate) fn function(&self) -> Option<u8> {
        (self.rosctr == 0x01)
            .then(|| self.params.first().copied())
            .flatten()
    }

    /// Userdata (group, subfunction, sequence, is-continuation).
    pub(crate) fn userdata(&self) -> Option<(u8, u8, u8, bool)> {
        if self.rosctr != 0x07 || self.params.len() < 8 || self.params[..3] != [0x00, 0x01, 0x12] {
            return None;
        }
        Some((
            self.params[5] & 0x0F,
            self.params[6],
            self.params[7],
            self.params[3] == 0x08,
        ))
    }
}

fn header(rosctr: u8, pdu_ref: u16, error: Option<u16>, params: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x32, rosctr, 0, 0];
    out.extend_from_slice(&pdu_ref.to_be_bytes());
    out.extend_from_slice(&(params.len() as u16).to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    if let Some(error) = error {
        out.extend_from_slice(&error.to_be_bytes());
    }
    out.extend_from_slice(params);
    out.extend_from_slice(data);
    out
}

/// An ack without data carrying an error class and code (how a CPU refuses a job).
pub(crate) fn job_error(pdu_ref: u16, error: u16) -> Vec<u8> {
    header(0x02, pdu_ref, Some(error), &[], &[])
}

/// A Read Var answer whose `count` items are all refused with item return code `code` (an
/// error item carries no data: return code, transport size 0, length 0).
pub(crate) fn read_var_refused(pdu_ref: u16, count: u8, code: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..count).flat_map(|_| [code, 0x00, 0x00, 0x00]).collect();
    job_answer(pdu_ref, &[0x04, count], &data)
}

/// An ack-data answer to a job.
pub(crate) fn job_answer(pdu_ref: u16, params: &[u8], data: &[u8]) -> Vec<u8> {
    header(0x03, pdu_ref, Some(0), params, data)
}

/// A userdata answer: `payload` with the standard data header, or an error code with the
/// "no data" data part.
pub(crate) fn userdata_answer(
    pdu_ref: u16,
    group: u8,
    subfunction: u8,
    seq: u8,
    more: bool,
    result: Result<&[u8], u16>,
) -> Vec<u8> {
    let error = result.err().unwrap_or(0);
    let [e_hi, e_lo] = error.to_be_bytes();
    let params = [
        0x00,
        0x01,
        0x12,
        0x08,
        0x12,
        0x80 | group,
        subfunction,
        seq,
        0x00,
        u8::from(more),
        e_hi,
        e_lo,
    ];
    let data = match result {
        Ok(payload) => {
            let mut data = vec![0xFF, 0x09];
            data.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            data.extend_from_slice(payload);
            data
        }
        Err(_) => vec![0x0A, 0x00, 0x00, 0x00],
    };
    header(0x07, pdu_ref, None, &params, &data)
}

/// Wraps an S7 PDU in TPKT + COTP DT.
pub(crate) fn frame(pdu: &[u8]) -> Vec<u8> {
    let total = 7 + pdu.len();
    let mut out = vec![0x03, 0x00];
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&[0x02, 0xF0, 0x80]);
    out.extend_from_slice(pdu);
    out
}

/// The COTP disconnect request a CPU sends for a connection it will not take.
pub(crate) fn disconnect(reason: u8) -> Vec<u8> {
    vec![
        0x03, 0x00, 0x00, 0x0B, 0x06, 0x80, 0x00, 0x01, 0x00, 0x00, reason,
    ]
}

fn padded(text: &str, width: usize, pad: u8) -> Vec<u8> {
    let mut out: Vec<u8> = text.bytes().take(width).collect();
    out.resize(width, pad);
    out
}

fn szl(id: u16, index: u16, record_len: u16, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&record_len.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for record in records {
        out.extend_from_slice(record);
    }
    out
}

/// The `ken_rel` word of SZL 0x0232 index 4 the simulator answers (the value S7-300/400 CPUs
/// answer with valid checksums).
pub(crate) const CHECKSUMS_VALID: u16 = 0x5656;

/// The SZL lists the simulator answers itself (header + records): 0x0011 module
/// identification, 0x001C component identification, 0x0232 index 4 protection.
pub(crate) fn szl_list(state: &S7State, id: u16, index: u16) -> Option<Vec<u8>> {
    let identity = &state.identity;
    match id {
        0x0011 => {
            let record = |index: u16, order: &str, ausbg: u16, ausbe: u16| {
                let mut r = index.to_be_bytes().to_vec();
                r.extend_from_slice(&padded(order, 20, b' '));
                r.extend_from_slice(&[0x00, 0xC0]);
                r.extend_from_slice(&ausbg.to_be_bytes());
                r.extend_from_slice(&ausbe.to_be_bytes());
                r
            };
            let (letter, a, b, c) = identity.firmware;
            Some(szl(
                0x0011,
                0x0000,
                28,
                &[
                    record(1, &identity.order_number, identity.module_version, 0),
                    record(6, &identity.order_number, identity.hardware_version, 0),
                    record(
                        7,
                        "",
                        u16::from_be_bytes([letter, a]),
                        u16::from_be_bytes([b, c]),
                    ),
                ],
            ))
        }
        0x001C => {
            let mut records = Vec::new();
            for (index, text) in &identity.components {
                let mut r = index.to_be_bytes().to_vec();
                r.extend_from_slice(&padded(text, 32, 0));
                records.push(r);
            }
            // Index 9: manufacturer 0x002A (Siemens), profile 0xF600, type 1.
            let mut r = vec![0x00, 0x09, 0x00, 0x2A, 0xF6, 0x00, 0x00, 0x01];
            r.resize(34, 0);
            records.push(r);
            records.sort();
            Some(szl(0x001C, 0x0000, 34, &records))
        }
        0x0232 if index == 0x0004 => {
            let by_switch: u16 = if state.selector.code() == 1 { 2 } else { 1 };
            let mut r = Vec::new();
            for word in [
                0x0004,
                by_switch,
                state.protection_level,
                state.effective_protection(),
                state.selector.code(),
                0,
                0,
            ] {
                r.extend_from_slice(&u16::to_be_bytes(word));
            }
            // ken_rel, then the version IDs/checksums of the hardware configuration and of
            // the user program, as S7-300/400 CPUs report them.
            let [hw1, hw2, program1, program2] = state.configuration_checksums();
            for word in [CHECKSUMS_VALID, hw1, hw2, program1, program2] {
                r.extend_from_slice(&u16::to_be_bytes(word));
            }
            r.resize(40, 0);
            Some(szl(0x0232, 0x0004, 40, &[r]))
        }
        _ => None,
    }
}

/// The list-blocks payload: counts of OB, FB, FC, DB, SDB, SFC, SFB.
pub(crate) fn block_counts(state: &S7State) -> Vec<u8> {
    let count = |t: ProgramType| state.blocks.keys().filter(|(k, _)| *k == t).count() as u16;
    let mut out = Vec::new();
    for (code, n) in [
        (0x38, count(ProgramType::Ob)),
        (0x45, count(ProgramType::Fb)),
        (0x43, count(ProgramType::Fc)),
        (0x41, state.dbs.len() as u16),
        (0x42, count(ProgramType::Sdb)),
        (0x44, state.system_blocks.0),
        (0x46, state.system_blocks.1),
    ] {
        out.extend_from_slice(&[0x30, code]);
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// The list-blocks-of-type entries (number, flags, language) for type `code`.
pub(crate) fn block_list(state: &S7State, code: u8) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if code == 0x41 {
        for number in state.dbs.keys() {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&[0x22, 0x05]);
        }
    } else {
        let kind = ProgramType::from_code(code)?;
        for ((k, number), block) in &state.blocks {
            if *k == kind {
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&[0x22, block.meta.language]);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Block info's 78-byte record.
fn info_record(sub_type: u8, number: u16, meta: &BlockMeta, mc7: u16, checksum: u16) -> Vec<u8> {
    let load = u32::from(mc7) + 92;
    let mut r = vec![0x01, 0x00, 0x4A, 0x00, 0x00, 0x22, 0x70, 0x70, 0x01, 0x01];
    r.push(meta.language);
    r.push(sub_type);
    r.extend_from_slice(&number.to_be_bytes());
    r.extend_from_slice(&load.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&meta.code_time.0.to_be_bytes());
    r.extend_from_slice(&meta.code_time.1.to_be_bytes());
    r.extend_from_slice(&meta.interface_time.0.to_be_bytes());
    r.extend_from_slice(&meta.interface_time.1.to_be_bytes());
    r.extend_from_slice(&[0x00, 0x14, 0x00, 0x00]);
    r.extend_from_slice(&meta.local_data.to_be_bytes());
    r.extend_from_slice(&mc7.to_be_bytes());
    r.extend_from_slice(&padded(&meta.author, 8, 0));
    r.extend_from_slice(&padded(&meta.family, 8, 0));
    r.extend_from_slice(&padded(&meta.name, 8, 0));
    r.push((meta.version.0 << 4) | (meta.version.1 & 0x0F));
    r.push(0);
    r.extend_from_slice(&checksum.to_be_bytes());
    r.resize(78, 0);
    r
}

/// Block info for block type `code` number `number`, or `None` if there is no such block.
pub(crate) fn block_info(state: &S7State, code: u8, number: u16) -> Option<Vec<u8>> {
    if code == 0x41 {
        let db = state.dbs.get(&number)?;
        let size = u16::try_from(db.size).unwrap_or(u16::MAX);
        return Some(info_record(
            0x0A,
            number,
            &db.meta,
            size,
            state.db_checksum(number)?,
        ));
    }
    let kind = ProgramType::from_code(code)?;
    let block = state.blocks.get(&(kind, number))?;
    let mc7 = u16::try_from(block.code.len()).unwrap_or(u16::MAX);
    Some(info_record(
        kind.sub_type(),
        number,
        &block.meta,
        mc7,
        state.block_checksum(kind, number)?,
    ))
}

/// The all-zero block info of the `blockinfo-placeholder` quirk.
pub(crate) fn placeholder_info() -> Vec<u8> {
    let mut r = vec![0x01, 0x00, 0x4A, 0x00, 0x00, 0x22, 0x70, 0x70];
    r.resize(78, 0);
    r
}

/// A block's uploaded image: a 36-byte header (the compact block info), the code (or, for a
/// DB, its current bytes), a 56-byte footer with the names. Its length is block info's load
/// size.
pub(crate) fn upload_image(
    state: &S7State,
    code: u8,
    number: u16,
    db_bytes: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let (record, body): (Vec<u8>, Vec<u8>) = if code == 0x41 {
        (block_info(state, code, number)?, db_bytes?.to_vec())
    } else {
        let kind = ProgramType::from_code(code)?;
        (
            block_info(state, code, number)?,
            state.blocks.get(&(kind, number))?.code.clone(),
        )
    };
    let mut out = vec![0x70, 0x70];
    out.extend_from_slice(record.get(8..42)?);
    out.extend_from_slice(&body);
    let mut footer = record.get(42..66)?.to_vec();
    footer.resize(56, 0);
    out.extend_from_slice(&footer);
    Some(out)
}
