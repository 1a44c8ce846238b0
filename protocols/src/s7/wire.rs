//! S7comm on the wire, client side: ISO-on-TCP framing (RFC 1006 TPKT + ISO 8073 COTP), the
//! only requests the collector can build ([`Request`]), and the checked parsing of answers.
//!
//! Everything here is pure (no I/O) so that every parser can be fed random and mutated frames
//! by property tests. Parsers return [`WireError`] with a human-readable detail; the collector
//! turns it into `CollectError::Malformed` naming the asset and the request.

use std::fmt;

/// A frame or PDU that does not fit what was asked or what arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn bad<T>(detail: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(detail.into()))
}

/// TPKT header length (RFC 1006).
pub(crate) const TPKT_HEADER: usize = 4;
/// The largest S7 PDU (and so the largest reassembled COTP payload) accepted from a device.
/// PDU sizes are negotiated up to 960 bytes; a little room is left for devices that round up.
pub(crate) const MAX_S7_PDU: usize = 4096;
/// The most COTP data fragments one S7 PDU may arrive in.
pub(crate) const MAX_FRAGMENTS: usize = 64;
/// S7comm's protocol id, the first byte of every S7 PDU.
pub(crate) const S7_PROTOCOL_ID: u8 = 0x32;

/// S7 PDU types (ROSCTR).
pub(crate) const ROSCTR_JOB: u8 = 0x01;
pub(crate) const ROSCTR_ACK: u8 = 0x02;
pub(crate) const ROSCTR_ACK_DATA: u8 = 0x03;
pub(crate) const ROSCTR_USERDATA: u8 = 0x07;

/// Job functions the collector may send.
pub(crate) const FN_SETUP: u8 = 0xF0;
pub(crate) const FN_READ_VAR: u8 = 0x04;
pub(crate) const FN_START_UPLOAD: u8 = 0x1D;
pub(crate) const FN_UPLOAD: u8 = 0x1E;
pub(crate) const FN_END_UPLOAD: u8 = 0x1F;

/// Userdata function groups the collector may use.
pub(crate) const GROUP_BLOCKS: u8 = 0x3;
pub(crate) const GROUP_SZL: u8 = 0x4;
pub(crate) const GROUP_CLOCK: u8 = 0x7;

/// The S7 area code of data blocks.
pub(crate) const AREA_DB: u8 = 0x84;
/// Transport size "byte" in a read item.
pub(crate) const TS_BYTE: u8 = 0x02;
/// Largest byte offset a read item can address (a 24-bit bit address).
pub(crate) const MAX_BYTE_ADDRESS: u32 = 0x001F_FFFF;
/// The most items one Read Var request carries. S7comm allows more when the PDU has room, but
/// CPUs and snap7 handle at most 20 per request (snap7's server silently drops the rest).
pub(crate) const MAX_READ_ITEMS: usize = 20;

/// The block types S7comm's block functions know, by their ASCII code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum BlockType {
    /// Organization block.
    Ob,
    /// Data block.
    Db,
    /// System data block (hardware configuration, connections).
    Sdb,
    /// Function.
    Fc,
    /// System function (in the firmware).
    Sfc,
    /// Function block.
    Fb,
    /// System function block (in the firmware).
    Sfb,
}

impl BlockType {
    /// The types whose blocks are listed and described one by one: the user program and its
    /// configuration. SFC and SFB live in the firmware and are only counted.
    pub(crate) const LISTED: [BlockType; 5] = [
        BlockType::Ob,
        BlockType::Fb,
        BlockType::Fc,
        BlockType::Db,
        BlockType::Sdb,
    ];

    pub(crate) fn code(self) -> u8 {
        match self {
            BlockType::Ob => 0x38,
            BlockType::Db => 0x41,
            BlockType::Sdb => 0x42,
            BlockType::Fc => 0x43,
            BlockType::Sfc => 0x44,
            BlockType::Fb => 0x45,
            BlockType::Sfb => 0x46,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x38 => BlockType::Ob,
            0x41 => BlockType::Db,
            0x42 => BlockType::Sdb,
            0x43 => BlockType::Fc,
            0x44 => BlockType::Sfc,
            0x45 => BlockType::Fb,
            0x46 => BlockType::Sfb,
            _ => return None,
        })
    }

    /// The sub-block type a block info answer carries for this type.
    pub(crate) fn sub_type(self) -> u8 {
        match self {
            BlockType::Ob => 0x08,
            BlockType::Db => 0x0A,
            BlockType::Sdb => 0x0B,
            BlockType::Fc => 0x0C,
            BlockType::Sfc => 0x0D,
            BlockType::Fb => 0x0E,
            BlockType::Sfb => 0x0F,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            BlockType::Ob => "OB",
            BlockType::Db => "DB",
            BlockType::Sdb => "SDB",
            BlockType::Fc => "FC",
            BlockType::Sfc => "SFC",
            BlockType::Fb => "FB",
            BlockType::Sfb => "SFB",
        }
    }

    /// Whether an upload of this type yields program code or configuration (worth hashing).
    /// A DB upload carries the block's actual values, which are process data: DBs are judged
    /// by block info, and their setpoint bytes by the configured ranges.
    pub(crate) fn uploadable(self) -> bool {
        matches!(
            self,
            BlockType::Ob | BlockType::Fb | BlockType::Fc | BlockType::Sdb
        )
    }
}

/// One Read Var item: `len` bytes of DB `db` from byte `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadItem {
    pub(crate) db: u16,
    pub(crate) start: u32,
    pub(crate) len: u16,
}

impl ReadItem {
    fn describe(&self) -> String {
        format!(
            "DB{}.DBB{}..{}",
            self.db,
            self.start,
            u64::from(self.start) + u64::from(self.len)
        )
    }
}

/// The only requests the collector can send: setup, reads, SZL and clock reads, block
/// list/info and upload (which copies a block *from* the CPU). There is no variant for a
/// write, a download, a PI service (start, stop, compress, delete) or a password: the
/// collector cannot build one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Setup Communication: negotiates the PDU size; one job at a time each way.
    Setup { pdu: u16 },
    /// Read Var of DB bytes, several items per request.
    ReadVar { items: Vec<ReadItem> },
    /// Read SZL (system status list), first part.
    ReadSzl { id: u16, index: u16 },
    /// Read SZL, next part of a "more data follows" answer.
    ReadSzlNext { id: u16, index: u16, seq: u8 },
    /// List blocks: how many of each type.
    ListBlocks,
    /// List blocks of one type, first part.
    ListBlocksOfType { block: BlockType },
    /// List blocks of one type, next part.
    ListBlocksOfTypeNext { block: BlockType, seq: u8 },
    /// Get block info of one block.
    BlockInfo { block: BlockType, number: u16 },
    /// Read the CPU clock.
    ReadClock,
    /// Start upload (CPU to us) of one block.
    StartUpload { block: BlockType, number: u16 },
    /// Upload the next part.
    Upload {
        block: BlockType,
        number: u16,
        id: [u8; 4],
    },
    /// End upload.
    EndUpload {
        block: BlockType,
        number: u16,
        id: [u8; 4],
    },
}

fn ascii_number(number: u16) -> [u8; 5] {
    let mut out = [b'0'; 5];
    let mut n = number;
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

impl Request {
    /// What the request asks, for errors and logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Request::Setup { pdu } => format!("setup communication (PDU {pdu})"),
            Request::ReadVar { items } => match items.as_slice() {
                [] => "read var (no items)".to_owned(),
                [one] => format!("read var {}", one.describe()),
                [first, rest @ ..] => format!(
                    "read var {} (+{} more item{})",
                    first.describe(),
                    rest.len(),
                    if rest.len() == 1 { "" } else { "s" }
                ),
            },
            Request::ReadSzl { id, index } => format!("read SZL 0x{id:04X} index 0x{index:04X}"),
            Request::ReadSzlNext { id, index, .. } => {
                format!("read SZL 0x{id:04X} index 0x{index:04X} (next part)")
            }
            Request::ListBlocks => "list blocks".to_owned(),
            Request::ListBlocksOfType { block } => {
                format!("list blocks of type {}", block.name())
            }
            Request::ListBlocksOfTypeNext { block, .. } => {
                format!("list blocks of type {} (next part)", block.name())
            }
            Request::BlockInfo { block, number } => {
                format!("block info {}{number}", block.name())
            }
            Request::ReadClock => "read clock".to_owned(),
            Request::StartUpload { block, number } => {
                format!("start upload {}{number}", block.name())
            }
            Request::Upload { block, number, .. } => format!("upload {}{number}", block.name()),
            Request::EndUpload { block, number, .. } => {
                format!("end upload {}{number}", block.name())
            }
        }
    }

    /// The S7 PDU for this request with PDU reference `pdu_ref`. This is the collector's
    /// read-only boundary: only job functions 0xF0, 0x04, 0x1D, 0x1E, 0x1F and userdata
    /// groups 3 (block list/info), 4 (read SZL) and 7 subfunction 1 (read clock) exist here.
    pub(crate) fn encode(&self, pdu_ref: u16) -> Vec<u8> {
        match self {
            Request::Setup { pdu } => {
                let [hi, lo] = pdu.to_be_bytes();
                job(
                    pdu_ref,
                    &[FN_SETUP, 0x00, 0x00, 0x01, 0x00, 0x01, hi, lo],
                    &[],
                )
            }
            Request::ReadVar { items } => {
                let mut params = Vec::with_capacity(2 + 12 * items.len());
                params.push(FN_READ_VAR);
                params.push(u8::try_from(items.len()).unwrap_or(u8::MAX));
                for item in items {
                    let bits = item.start.saturating_mul(8).min(0x00FF_FFFF);
                    let [_, a, b, c] = bits.to_be_bytes();
                    let [len_hi, len_lo] = item.len.to_be_bytes();
                    let [db_hi, db_lo] = item.db.to_be_bytes();
                    params.extend_from_slice(&[
                        0x12, 0x0A, 0x10, TS_BYTE, len_hi, len_lo, db_hi, db_lo, AREA_DB, a, b, c,
                    ]);
                }
                job(pdu_ref, &params, &[])
            }
            Request::ReadSzl { id, index } => {
                let [id_hi, id_lo] = id.to_be_bytes();
                let [ix_hi, ix_lo] = index.to_be_bytes();
                userdata(
                    pdu_ref,
                    &first_params(GROUP_SZL, 0x01),
                    &[0xFF, 0x09, 0x00, 0x04, id_hi, id_lo, ix_hi, ix_lo],
                )
            }
            Request::ReadSzlNext { seq, .. } => {
                userdata(pdu_ref, &next_params(GROUP_SZL, 0x01, *seq), &NO_DATA)
            }
            Request::ListBlocks => userdata(pdu_ref, &first_params(GROUP_BLOCKS, 0x01), &NO_DATA),
            Request::ListBlocksOfType { block } => userdata(
                pdu_ref,
                &first_params(GROUP_BLOCKS, 0x02),
                &[0xFF, 0x09, 0x00, 0x02, 0x30, block.code()],
            ),
            Request::ListBlocksOfTypeNext { seq, .. } => {
                userdata(pdu_ref, &next_params(GROUP_BLOCKS, 0x02, *seq), &NO_DATA)
            }
            Request::BlockInfo { block, number } => {
                let digits = ascii_number(*number);
                let mut data = vec![0xFF, 0x09, 0x00, 0x08, 0x30, block.code()];
                data.extend_from_slice(&digits);
                data.push(b'A');
                userdata(pdu_ref, &first_params(GROUP_BLOCKS, 0x03), &data)
            }
            Request::ReadClock => userdata(pdu_ref, &first_params(GROUP_CLOCK, 0x01), &NO_DATA),
            Request::StartUpload { block, number } => {
                let mut params = vec![FN_START_UPLOAD, 0, 0, 0, 0, 0, 0, 0, 9, b'_', b'0'];
                params.push(block.code());
                params.extend_from_slice(&ascii_number(*number));
                params.push(b'A');
                job(pdu_ref, &params, &[])
            }
            Request::Upload { id, .. } => {
                let mut params = vec![FN_UPLOAD, 0, 0, 0];
                params.extend_from_slice(id);
                job(pdu_ref, &params, &[])
            }
            Request::EndUpload { id, .. } => {
                let mut params = vec![FN_END_UPLOAD, 0, 0, 0];
                params.extend_from_slice(id);
                job(pdu_ref, &params, &[])
            }
        }
    }
}

/// The data part of a userdata request that carries no payload.
const NO_DATA: [u8; 4] = [0x0A, 0x00, 0x00, 0x00];

/// Userdata parameters of a first request: head, length 4, method request, type request +
/// group, subfunction, sequence 0.
fn first_params(group: u8, subfunction: u8) -> [u8; 8] {
    [
        0x00,
        0x01,
        0x12,
        0x04,
        0x11,
        0x40 | group,
        subfunction,
        0x00,
    ]
}

/// Userdata parameters asking for the next part of an answer whose sequence number is `seq`.
fn next_params(group: u8, subfunction: u8, seq: u8) -> [u8; 12] {
    [
        0x00,
        0x01,
        0x12,
        0x08,
        0x12,
        0x40 | group,
        subfunction,
        seq,
        0x00,
        0x00,
        0x00,
        0x00,
    ]
}

fn header(rosctr: u8, pdu_ref: u16, params: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + params.len() + data.len());
    out.push(S7_PROTOCOL_ID);
    out.push(rosctr);
    out.extend_from_slice(&[0x00, 0x00]);
    out.extend_from_slice(&pdu_ref.to_be_bytes());
    out.extend_from_slice(
        &u16::try_from(params.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(params);
    out.extend_from_slice(data);
    out
}

fn job(pdu_ref: u16, params: &[u8], data: &[u8]) -> Vec<u8> {
    header(ROSCTR_JOB, pdu_ref, params, data)
}

fn userdata(pdu_ref: u16, params: &[u8], data: &[u8]) -> Vec<u8> {
    header(ROSCTR_USERDATA, pdu_ref, params, data)
}

/// Wraps an S7 PDU in TPKT + COTP DT (last data unit).
pub(crate) fn data_frame(pdu: &[u8]) -> Vec<u8> {
    let total = TPKT_HEADER + 3 + pdu.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&[0x02, 0xF0, 0x80]);
    out.extend_from_slice(pdu);
    out
}

/// The COTP connection request for TSAPs `local` and `remote`, TPDU size 1024.
pub(crate) fn connect_request(local: u16, remote: u16) -> Vec<u8> {
    let [l_hi, l_lo] = local.to_be_bytes();
    let [r_hi, r_lo] = remote.to_be_bytes();
    vec![
        0x03, 0x00, 0x00, 0x16, // TPKT, 22 bytes
        0x11, 0xE0, 0x00, 0x00, 0x00, 0x01, 0x00, // COTP CR, dst ref 0, src ref 1, class 0
        0xC0, 0x01, 0x0A, // TPDU size 1024
        0xC1, 0x02, l_hi, l_lo, // calling TSAP
        0xC2, 0x02, r_hi, r_lo, // called TSAP
    ]
}

/// The length a TPKT header announces, checked against what a frame may be.
pub(crate) fn tpkt_length(header: [u8; TPKT_HEADER]) -> Result<usize, WireError> {
    if header[0] != 0x03 {
        return bad(format!(
            "TPKT version {} where RFC 1006 says 3 (is this an ISO-on-TCP port?)",
            header[0]
        ));
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if len < TPKT_HEADER + 3 {
        return bad(format!("TPKT length {len} is shorter than a COTP header"));
    }
    if len > MAX_S7_PDU + TPKT_HEADER + 3 {
        return bad(format!(
            "TPKT length {len} exceeds the largest frame accepted ({})",
            MAX_S7_PDU + TPKT_HEADER + 3
        ));
    }
    Ok(len)
}

/// A COTP TPDU (the TPKT payload).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cotp<'a> {
    /// Connection confirm.
    ConnectConfirm,
    /// Disconnect request: the device ends the connection.
    Disconnect { reason: u8 },
    /// Data, with the end-of-TSDU flag.
    Data { last: bool, payload: &'a [u8] },
    /// Another TPDU type (error, expedited data...).
    Other { code: u8 },
}

/// Parses a TPKT payload as a COTP TPDU.
pub(crate) fn parse_cotp(tpdu: &[u8]) -> Result<Cotp<'_>, WireError> {
    let Some((&li, rest)) = tpdu.split_first() else {
        return bad("empty COTP TPDU");
    };
    let li = usize::from(li);
    if li == 0 || li > rest.len() {
        return bad(format!(
            "COTP header length {li} does not fit the {} bytes received",
            rest.len()
        ));
    }
    let Some((head, payload)) = rest.split_at_checked(li) else {
        return bad("COTP header truncated");
    };
    let Some(&code) = head.first() else {
        return bad("COTP header truncated");
    };
    match code & 0xF0 {
        0xF0 => {
            if li != 2 {
                return bad(format!("COTP DT header length {li} where 2 is standard"));
            }
            let last = head.get(1).is_some_and(|flags| flags & 0x80 != 0);
            Ok(Cotp::Data { last, payload })
        }
        0xD0 => Ok(Cotp::ConnectConfirm),
        0x80 => Ok(Cotp::Disconnect {
            reason: head.get(5).copied().unwrap_or(0),
        }),
        other => Ok(Cotp::Other { code: other }),
    }
}

/// An S7 answer, its header checked against the bytes that arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer<'a> {
    pub(crate) rosctr: u8,
    pub(crate) pdu_ref: u16,
    /// Error class and code from the header of an ack / ack-data (0 = none).
    pub(crate) error: u16,
    pub(crate) params: &'a [u8],
    pub(crate) data: &'a [u8],
}

/// Parses an S7 PDU received as an answer.
pub(crate) fn parse_answer(pdu: &[u8]) -> Result<Answer<'_>, WireError> {
    if pdu.len() < 10 {
        return bad(format!(
            "S7 PDU of {} bytes is shorter than its header",
            pdu.len()
        ));
    }
    let byte = |i: usize| pdu.get(i).copied().unwrap_or(0);
    let word = |i: usize| u16::from_be_bytes([byte(i), byte(i + 1)]);
    if byte(0) != S7_PROTOCOL_ID {
        return bad(format!(
            "protocol id 0x{:02X} is not S7comm (0x32)",
            byte(0)
        ));
    }
    let rosctr = byte(1);
    let header_len = match rosctr {
        ROSCTR_ACK | ROSCTR_ACK_DATA => 12,
        ROSCTR_USERDATA => 10,
        other => return bad(format!("PDU type 0x{other:02X} is not an answer")),
    };
    if pdu.len() < header_len {
        return bad(format!(
            "S7 PDU of {} bytes is shorter than its {header_len}-byte header",
            pdu.len()
        ));
    }
    let params_len = usize::from(word(6));
    let data_len = usize::from(word(8));
    let error = if header_len == 12 { word(10) } else { 0 };
    if header_len + params_len + data_len != pdu.len() {
        return bad(format!(
            "header announces {params_len} parameter and {data_len} data bytes, {} arrived",
            pdu.len() - header_len
        ));
    }
    let body = pdu.get(header_len..).unwrap_or_default();
    let (params, data) = body.split_at(params_len);
    Ok(Answer {
        rosctr,
        pdu_ref: word(4),
        error,
        params,
        data,
    })
}

/// A device's refusal of a request, as the device coded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An error class and code: the header of an ack / ack-data, or the error code in a
    /// userdata answer's parameters.
    Error(u16),
    /// A return code other than 0xFF (success) in a userdata answer's data part; the same
    /// codes as a Read Var item's.
    ReturnCode(u8),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Error(code) => write!(f, "error 0x{code:04X} ({})", error_text(code)),
            Refusal::ReturnCode(code) => {
                write!(f, "return code 0x{code:02X} ({})", item_error_text(code))
            }
        }
    }
}

impl Refusal {
    /// Whether the device said it lacks the resources to serve the request now: S7comm's
    /// error class 0x83 ("no resources available": 0x8301 memory, 0x8302 too few resources
    /// or processor resources not available, 0x8304 no further parallel upload, a resource
    /// bottleneck), except 0x8305 ("function not available", a capability); the parameter
    /// codes 0x011A / 0x011B (PG / PLC resource error), 0x0140 (insufficient memory) and 0x0141
    /// (job cannot be processed for lack of resources); and 0xD061-0xD067 ("resource error":
    /// job memory, job list, triggers, timers). Nothing else is busy.
    pub(crate) fn is_busy(self) -> bool {
        match self {
            Refusal::Error(code) => {
                (code >> 8 == 0x83 && code != 0x8305)
                    || matches!(code, 0x011A | 0x011B | 0x0140 | 0x0141 | 0xD061..=0xD067)
            }
            Refusal::ReturnCode(_) => false,
        }
    }

    /// Whether the device says it does not offer this service at all: 0x8104 (service not
    /// implemented on the module; what S7-1200/1500 answer to block functions over PUT/GET),
    /// 0x8305 (function not available), 0x8702 (service not supported by the module).
    pub(crate) fn is_not_offered(self) -> bool {
        matches!(self, Refusal::Error(0x8104 | 0x8305 | 0x8702))
    }

    /// Whether the device refuses because of its protection level: 0xD0A1 and 0xD241
    /// (function not permitted in the current protection level).
    pub(crate) fn is_protection(self) -> bool {
        matches!(self, Refusal::Error(0xD0A1 | 0xD241))
    }

    /// Whether the device says the SZL (or its index) does not exist on it: 0xD401 / 0xD402
    /// (information function unavailable: SZL ID or index unknown) or a data return code 0x0A
    /// (object does not exist).
    pub(crate) fn is_unknown_szl(self) -> bool {
        matches!(
            self,
            Refusal::Error(0xD401 | 0xD402) | Refusal::ReturnCode(0x0A)
        )
    }

    /// Whether the device says the block does not exist: 0xD209 (block not found on the
    /// module), 0xD20E (no block available), 0x0114 (block not found) or a data return code
    /// 0x0A (object does not exist).
    pub(crate) fn is_no_such_block(self) -> bool {
        matches!(
            self,
            Refusal::Error(0xD209 | 0xD20E | 0x0114) | Refusal::ReturnCode(0x0A)
        )
    }
}

/// The meaning of an S7 error code (header error class + code, or a userdata parameter error).
pub(crate) fn error_text(code: u16) -> &'static str {
    match code {
        0x0000 => "no error",
        0x0110 | 0x0118 | 0xD210 => "invalid block number",
        0x0114 => "block not found",
        0x011A => "PG resource error",
        0x011B => "PLC resource error",
        0x0140 => "insufficient memory available",
        0x0141 => "job cannot be processed for lack of resources",
        0x8104 => "service not implemented on the module (PUT/GET access off?)",
        0x8000..=0x80FF => "application relationship error (function in use or not allowed)",
        0x8301 => "insufficient memory on the module",
        0x8302 => "too few resources available (processor resources not available)",
        0x8304 => "no further parallel upload possible (resource bottleneck)",
        0x8305 => "function not available",
        0x8300..=0x83FF => "no resources available",
        0x8401 => "invalid service sequence",
        0x8404 => "the function cannot be performed",
        0x8500 => "wrong frames (PDU size exceeded)",
        0x8702 => "service not supported by the module",
        0x8703 => "access to object refused",
        0xD061..=0xD067 => "resource error (job memory, job list, trigger or timer occupied)",
        0xD081 => "function not permitted in the current mode",
        0xD0A1 | 0xD241 => "function not permitted in the current protection level",
        0xD209 => "block not found on the module",
        0xD20E => "no (further) block available",
        0xD401 | 0xD402 => "information function unavailable (SZL ID or index unknown)",
        0xD405 => "service not supported or syntax error in function parameters",
        0xD406 => "required information currently unavailable",
        0xD602 => "incorrect password",
        0xDC01 => "date and/or time invalid",
        _ => "unknown error",
    }
}

/// The meaning of a Read Var item return code.
pub(crate) fn item_error_text(code: u8) -> &'static str {
    match code {
        0x01 => "hardware fault",
        0x03 => "access to the object not allowed",
        0x05 => "address out of range",
        0x06 => "data type not supported",
        0x07 => "data type inconsistent",
        0x0A => "object does not exist",
        _ => "unknown item error",
    }
}

/// Checks an answer to a job: PDU type ack-data, no header error, parameters start with the
/// function asked. A header error is a refusal (`Ok(Err(..))`).
pub(crate) fn job_answer<'a>(
    answer: &Answer<'a>,
    function: u8,
) -> Result<Result<&'a [u8], Refusal>, WireError> {
    if answer.rosctr != ROSCTR_ACK_DATA && answer.rosctr != ROSCTR_ACK {
        return bad(format!(
            "PDU type 0x{:02X} where a job answer (ack-data) was expected",
            answer.rosctr
        ));
    }
    if answer.error != 0 {
        return Ok(Err(Refusal::Error(answer.error)));
    }
    if answer.rosctr == ROSCTR_ACK {
        return bad("an ack without data and without an error");
    }
    match answer.params.first() {
        Some(&f) if f == function => Ok(Ok(answer.params)),
        Some(&f) => bad(format!(
            "answer for function 0x{f:02X} where 0x{function:02X} was asked"
        )),
        None => bad("answer without parameters"),
    }
}

/// The granted PDU size from a Setup Communication answer.
pub(crate) fn setup_answer(params: &[u8]) -> Result<u16, WireError> {
    if params.len() != 8 {
        return bad(format!(
            "setup communication answer has {} parameter bytes, 8 are standard",
            params.len()
        ));
    }
    let pdu = u16::from_be_bytes([
        params.get(6).copied().unwrap_or(0),
        params.get(7).copied().unwrap_or(0),
    ]);
    Ok(pdu)
}

/// One item of a Read Var answer: the bytes, or the device's return code.
pub(crate) type ItemResult = Result<Vec<u8>, u8>;

/// Splits a Read Var answer into its items, checking each against what was asked.
pub(crate) fn read_var_answer(
    params: &[u8],
    data: &[u8],
    asked: &[ReadItem],
) -> Result<Vec<ItemResult>, WireError> {
    if params.len() != 2 {
        return bad(format!(
            "read var answer has {} parameter bytes, 2 are standard",
            params.len()
        ));
    }
    let count = usize::from(params.get(1).copied().unwrap_or(0));
    if count != asked.len() {
        return bad(format!(
            "asked for {} items, the answer has {count}",
            asked.len()
        ));
    }
    let mut rest = data;
    let mut out = Vec::with_capacity(asked.len());
    for (i, item) in asked.iter().enumerate() {
        let Some((&[ret, tsize, len_hi, len_lo], after)) = rest.split_first_chunk::<4>() else {
            return bad(format!("item {} of {count}: the answer ends early", i + 1));
        };
        let declared = u16::from_be_bytes([len_hi, len_lo]);
        rest = after;
        if ret != 0xFF {
            // An error item carries no data (whatever its length field says: snap7 puts 4
            // there).
            out.push(Err(ret));
            continue;
        }
        let bytes = match tsize {
            0x03..=0x05 => {
                if declared % 8 != 0 {
                    return bad(format!(
                        "item {}: a length of {declared} bits is not whole bytes",
                        i + 1
                    ));
                }
                usize::from(declared / 8)
            }
            0x06 | 0x07 | 0x09 => usize::from(declared),
            other => {
                return bad(format!(
                    "item {}: transport size 0x{other:02X} where bytes were asked",
                    i + 1
                ));
            }
        };
        if bytes != usize::from(item.len) {
            return bad(format!(
                "item {} ({}): asked for {} bytes, got {bytes}",
                i + 1,
                item.describe(),
                item.len
            ));
        }
        let Some((value, after)) = rest.split_at_checked(bytes) else {
            return bad(format!(
                "item {}: {bytes} bytes announced, {} arrived",
                i + 1,
                rest.len()
            ));
        };
        rest = after;
        out.push(Ok(value.to_vec()));
        let last = i + 1 == asked.len();
        if bytes % 2 == 1 && !last {
            let Some((_, after)) = rest.split_at_checked(1) else {
                return bad(format!("item {}: the fill byte after it is missing", i + 1));
            };
            rest = after;
        }
    }
    // Some devices pad the last odd item too; anything more is not ours.
    let odd_last = asked.last().is_some_and(|item| item.len % 2 == 1);
    if !(rest.is_empty() || (odd_last && rest == [0])) {
        return bad(format!("{} bytes after the last item", rest.len()));
    }
    Ok(out)
}

/// A userdata answer's payload, with the continuation state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UserdataPart<'a> {
    /// The sequence number to echo when asking for the next part.
    pub(crate) seq: u8,
    /// Whether more parts follow.
    pub(crate) more: bool,
    /// The payload after the 4-byte data header.
    pub(crate) payload: &'a [u8],
}

/// Checks a userdata answer to a request of `group`/`subfunction`; a parameter error or a
/// data return code other than 0xFF is a refusal (`Ok(Err(..))`).
pub(crate) fn userdata_answer<'a>(
    answer: &Answer<'a>,
    group: u8,
    subfunction: u8,
) -> Result<Result<UserdataPart<'a>, Refusal>, WireError> {
    if answer.rosctr != ROSCTR_USERDATA {
        if answer.error != 0 {
            // Some CPUs answer an unsupported userdata function with a plain ack + error.
            return Ok(Err(Refusal::Error(answer.error)));
        }
        return bad(format!(
            "PDU type 0x{:02X} where a userdata answer was expected",
            answer.rosctr
        ));
    }
    let p = answer.params;
    if p.len() != 12 {
        return bad(format!(
            "userdata answer has {} parameter bytes, 12 are standard",
            p.len()
        ));
    }
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    if at(0) != 0x00 || at(1) != 0x01 || at(2) != 0x12 || at(3) != 0x08 {
        return bad("userdata parameter head is not 00 01 12 08");
    }
    let type_group = at(5);
    if type_group & 0x0F != group || type_group >> 4 != 0x8 {
        return bad(format!(
            "answer for userdata type/group 0x{type_group:02X} where a response of group {group} was expected"
        ));
    }
    if at(6) != subfunction {
        return bad(format!(
            "answer for subfunction {} where {subfunction} was asked",
            at(6)
        ));
    }
    let seq = at(7);
    let more = at(9) != 0;
    let error = u16::from_be_bytes([at(10), at(11)]);
    if error != 0 {
        return Ok(Err(Refusal::Error(error)));
    }
    let d = answer.data;
    let Some((&[ret, _tsize, len_hi, len_lo], payload)) = d.split_first_chunk::<4>() else {
        return bad(format!(
            "userdata answer has {} data bytes, at least 4 are standard",
            d.len()
        ));
    };
    if ret != 0xFF {
        return Ok(Err(Refusal::ReturnCode(ret)));
    }
    let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if len != payload.len() {
        return bad(format!(
            "userdata data announces {len} bytes, {} arrived",
            payload.len()
        ));
    }
    Ok(Ok(UserdataPart { seq, more, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        let mut out = vec![
            Request::Setup { pdu: 960 },
            Request::ReadVar {
                items: vec![
                    ReadItem {
                        db: 1,
                        start: 0,
                        len: 10,
                    },
                    ReadItem {
                        db: 65535,
                        start: MAX_BYTE_ADDRESS,
                        len: 1,
                    },
                ],
            },
            Request::ReadSzl {
                id: 0x0011,
                index: 0,
            },
            Request::ReadSzlNext {
                id: 0x0011,
                index: 0,
                seq: 7,
            },
            Request::ListBlocks,
            Request::ReadClock,
        ];
        for block in [
            BlockType::Ob,
            BlockType::Db,
            BlockType::Sdb,
            BlockType::Fc,
            BlockType::Sfc,
            BlockType::Fb,
            BlockType::Sfb,
        ] {
            out.push(Request::ListBlocksOfType { block });
            out.push(Request::ListBlocksOfTypeNext { block, seq: 3 });
            out.push(Request::BlockInfo {
                block,
                number: 65535,
            });
            out.push(Request::StartUpload { block, number: 1 });
            out.push(Request::Upload {
                block,
                number: 1,
                id: [0, 0, 0, 7],
            });
            out.push(Request::EndUpload {
                block,
                number: 1,
                id: [0, 0, 0, 7],
            });
        }
        out
    }

    /// The read-only boundary: every request the collector can build is a setup, a read, an
    /// upload step (CPU to us), an SZL read, a block list/info or a clock read. Write Var
    /// (0x05), download (0x1A-0x1C), PI services (0x28: start, compress, delete...), PLC stop
    /// (0x29), set clock, passwords and programmer commands cannot be produced.
    #[test]
    fn only_read_requests_can_be_built() {
        for request in all_requests() {
            let pdu = request.encode(0x1234);
            let answer = pdu.clone();
            assert_eq!(answer[0], S7_PROTOCOL_ID);
            let params_len = usize::from(u16::from_be_bytes([pdu[6], pdu[7]]));
            let data_len = usize::from(u16::from_be_bytes([pdu[8], pdu[9]]));
            assert_eq!(10 + params_len + data_len, pdu.len(), "{request:?}");
            let params = &pdu[10..10 + params_len];
            match pdu[1] {
                ROSCTR_JOB => {
                    assert!(
                        matches!(
                            params[0],
                            FN_SETUP | FN_READ_VAR | FN_START_UPLOAD | FN_UPLOAD | FN_END_UPLOAD
                        ),
                        "{request:?} builds job function 0x{:02X}",
                        params[0]
                    );
                    assert_eq!(data_len, 0, "read-only jobs carry no data: {request:?}");
                }
                ROSCTR_USERDATA => {
                    assert_eq!(&params[..3], &[0x00, 0x01, 0x12]);
                    let (kind, group, sub) = (params[5] >> 4, params[5] & 0x0F, params[6]);
                    assert_eq!(kind, 0x4, "userdata requests only: {request:?}");
                    let allowed = match group {
                        GROUP_BLOCKS => matches!(sub, 0x01..=0x03),
                        GROUP_SZL => sub == 0x01,
                        GROUP_CLOCK => sub == 0x01,
                        _ => false,
                    };
                    assert!(
                        allowed,
                        "{request:?} builds group {group} subfunction {sub}"
                    );
                }
                other => panic!("{request:?} builds PDU type {other}"),
            }
        }
    }

    #[test]
    fn read_items_address_bits_and_numbers_as_ascii() {
        let pdu = Request::ReadVar {
            items: vec![ReadItem {
                db: 10,
                start: 3,
                len: 4,
            }],
        }
        .encode(1);
        assert_eq!(
            &pdu[10..],
            &[0x04, 1, 0x12, 0x0A, 0x10, 0x02, 0, 4, 0, 10, 0x84, 0, 0, 24]
        );
        let pdu = Request::BlockInfo {
            block: BlockType::Fb,
            number: 1234,
        }
        .encode(1);
        assert_eq!(&pdu[pdu.len() - 8..], b"0E01234A");
    }

    #[test]
    fn read_var_answers_are_checked_against_the_request() {
        let asked = [
            ReadItem {
                db: 1,
                start: 0,
                len: 3,
            },
            ReadItem {
                db: 2,
                start: 0,
                len: 2,
            },
            ReadItem {
                db: 3,
                start: 0,
                len: 2,
            },
        ];
        let data = [
            0xFF, 0x04, 0x00, 24, 1, 2, 3, 0, // 3 bytes + fill
            0x0A, 0x00, 0x00, 0x04, // error item (snap7 style length)
            0xFF, 0x09, 0x00, 2, 7, 8,
        ];
        let items = read_var_answer(&[0x04, 3], &data, &asked).expect("valid");
        assert_eq!(items, vec![Ok(vec![1, 2, 3]), Err(0x0A), Ok(vec![7, 8])]);
        // Short data: an error, not a panic or a short value.
        let err = read_var_answer(&[0x04, 3], &data[..data.len() - 1], &asked).expect_err("short");
        assert!(err.0.contains("announced"), "{err}");
        // Wrong length for what was asked.
        let err = read_var_answer(&[0x04, 1], &[0xFF, 0x04, 0x00, 16, 1, 2], &asked[..1])
            .expect_err("wrong length");
        assert!(err.0.contains("asked for 3 bytes, got 2"), "{err}");
    }

    #[test]
    fn answers_must_match_their_header_lengths() {
        let ok = [0x32, 0x03, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0x04, 0];
        assert!(parse_answer(&ok).is_ok());
        let mut long = ok.to_vec();
        long.push(0);
        assert!(parse_answer(&long).is_err());
        assert!(parse_answer(&ok[..13]).is_err());
        assert!(parse_answer(&[0x72, 0x03, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
