//! The only requests the S7 collector can build: setup, reads, SZL and clock reads, block
//! list/info and upload (which copies a block *from* the CPU), and the ISO-on-TCP frames that
//! carry them. This file is the collector's read-only boundary: [`Request`] has no variant for
//! a write, a download, a PI service (start, stop, compress, delete) or a password, and a unit
//! test asserts what [`Request::encode`] can produce.

use super::wire::{ROSCTR_JOB, ROSCTR_USERDATA, S7_PROTOCOL_ID, TPKT_HEADER};

/// Our own TSAP: a PG-type connection from a "local rack 0 slot 0", as snap7 and STEP 7 use.
pub(crate) const LOCAL_TSAP: u16 = 0x0100;

/// The CPU's remote TSAP for a PG connection to `rack`/`slot` (snap7 and STEP 7 use the same:
/// connection type 1 in the high byte, rack * 32 + slot in the low byte).
pub fn remote_tsap(rack: u16, slot: u16) -> u16 {
    0x0100 | ((rack & 0x07) * 0x20 + (slot & 0x1F))
}

/// Job functions the collector may send.
pub(crate) const FN_SETUP: u8 = 0xF0;
pub(crate) const FN_READ_VAR: u8 = 0x04;
pub(crate) const FN_START_UPLOAD: u8 = 0x1D;
pub(crate) const FN_UPLOAD: u8 = 0x1E;
pub(crate) const FN_END_UPLOAD: u8 = 0x1F;

/// Userdata function groups the collector may use.
pub(crate) const GROUP_BLOCKS: u8 = 0x3;
pub(crate) const GROUP_SZL: u8 = 0x4;

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
    /// The item as errors name it (`DB1.DBB0..16`).
    pub(crate) fn describe(&self) -> String {
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
    /// groups 3 (block list/info) and 4 (read SZL) exist here.
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
    fn tsaps_follow_rack_and_slot() {
        assert_eq!(remote_tsap(0, 2), 0x0102);
        assert_eq!(remote_tsap(0, 3), 0x0103);
        assert_eq!(remote_tsap(1, 1), 0x0121);
    }
}
