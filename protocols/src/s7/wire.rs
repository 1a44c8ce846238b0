//! S7comm answers on the wire, client side: ISO-on-TCP framing (RFC 1006 TPKT + ISO 8073
//! COTP) and the checked parsing of S7 answers (the requests are built in `request.rs`).
//!
//! Everything here is pure (no I/O) so that every parser can be fed random and mutated frames
//! by property tests. Parsers return [`WireError`] with a human-readable detail; the collector
//! turns it into `CollectError::Malformed` naming the asset and the request.

use std::fmt;

use super::request::ReadItem;

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

    mod hostile {
        //! Every parser against random and mutated frames: never a panic, and an error
        //! names what was wrong.
        use crate::s7::decode;
        use crate::s7::request::{
            BlockType, FN_READ_VAR, FN_SETUP, FN_START_UPLOAD, FN_UPLOAD, ReadItem,
        };
        use crate::s7::wire;
        use proptest::prelude::*;

        /// Valid answers of every kind, to mutate.
        fn samples() -> Vec<Vec<u8>> {
            let userdata = |group: u8, sub: u8, payload: &[u8]| {
                let mut data = vec![0xFF, 0x09];
                data.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                data.extend_from_slice(payload);
                let params = [
                    0x00,
                    0x01,
                    0x12,
                    0x08,
                    0x12,
                    0x80 | group,
                    sub,
                    1,
                    0,
                    0,
                    0,
                    0,
                ];
                let mut pdu = vec![0x32, 0x07, 0, 0, 0, 1, 0, 12];
                pdu.extend_from_slice(&(data.len() as u16).to_be_bytes());
                pdu.extend_from_slice(&params);
                pdu.extend_from_slice(&data);
                pdu
            };
            let mut szl = vec![0x00, 0x11, 0x00, 0x00, 0x00, 0x1C, 0x00, 0x01, 0x00, 0x01];
            szl.extend_from_slice(b"6ES7 315-2EH14-0AB0 ");
            szl.extend_from_slice(&[0x00, 0xC0, b'V', 3, 2, 6]);
            let mut info = vec![0u8; decode::BLOCK_INFO_LEN];
            info[11] = 0x0E;
            info[13] = 1;
            vec![
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0xF0, 0, 0, 1, 0, 1, 3, 0xC0,
                ],
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 2, 0, 9, 0, 0, 0x04, 1, 0xFF, 0x04, 0, 40, 1, 2, 3,
                    4, 5,
                ],
                userdata(4, 1, &szl),
                userdata(3, 1, &[0x30, 0x38, 0, 2, 0x30, 0x41, 0, 5]),
                userdata(3, 2, &[0, 1, 0x22, 5, 0, 2, 0x22, 5]),
                userdata(3, 3, &info),
                userdata(
                    7,
                    1,
                    &[0, 0x20, 0x24, 0x03, 0x01, 0x12, 0x34, 0x56, 0x78, 0x91],
                ),
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 16, 0, 0, 0, 0, 0x1D, 0, 0, 0, 0, 0, 0, 7, 7, b'0',
                    b'0', b'0', b'0', b'1', b'2', b'8',
                ],
                vec![
                    0x32, 0x03, 0, 0, 0, 1, 0, 2, 0, 6, 0, 0, 0x1E, 0, 0, 2, 0, 0xFB, 9, 9,
                ],
            ]
        }

        fn every_parser(pdu: &[u8]) {
            let asked = [
                ReadItem {
                    db: 1,
                    start: 0,
                    len: 5,
                },
                ReadItem {
                    db: 2,
                    start: 0,
                    len: 1,
                },
            ];
            if let Ok(header) = <[u8; 4]>::try_from(pdu.get(..4).unwrap_or(&[0, 0, 0, 0])) {
                let _ = wire::tpkt_length(header);
            }
            let _ = wire::parse_cotp(pdu);
            let _ = wire::setup_answer(pdu);
            let _ = wire::read_var_answer(pdu, pdu, &asked);
            let _ = wire::read_var_answer(
                pdu.get(..2).unwrap_or_default(),
                pdu.get(2..).unwrap_or_default(),
                &asked,
            );
            for id in [0x0011, 0x001C, 0x0232, 0x0424] {
                if let Ok(list) = decode::szl_list(id, 0, pdu) {
                    let _ = decode::module_identity(&list);
                    let _ = decode::component_identity(&list);
                    let _ = decode::protection(&list);
                    let _ = decode::cpu_mode(&list);
                }
            }
            let _ = decode::block_counts(pdu);
            let _ = decode::block_list(pdu);
            let _ = decode::block_info(pdu, BlockType::Fb, 1);
            let _ = decode::start_upload(pdu);
            let _ = decode::upload_part(pdu, pdu);
            let _ = decode::upload_part(
                pdu.get(..2).unwrap_or_default(),
                pdu.get(2..).unwrap_or_default(),
            );
            if let Ok(answer) = wire::parse_answer(pdu) {
                for f in [FN_SETUP, FN_READ_VAR, FN_START_UPLOAD, FN_UPLOAD] {
                    if let Ok(Ok(params)) = wire::job_answer(&answer, f) {
                        let _ = wire::setup_answer(params);
                        let _ = wire::read_var_answer(params, answer.data, &asked);
                        let _ = decode::start_upload(params);
                        let _ = decode::upload_part(params, answer.data);
                    }
                }
                for (group, sub) in [(4, 1), (3, 1), (3, 2), (3, 3)] {
                    if let Ok(Ok(part)) = wire::userdata_answer(&answer, group, sub) {
                        let _ = decode::szl_list(0x0011, 0, part.payload);
                        let _ = decode::block_counts(part.payload);
                        let _ = decode::block_list(part.payload);
                        let _ = decode::block_info(part.payload, BlockType::Fb, 1);
                    }
                }
            }
        }

        #[test]
        fn the_samples_parse() {
            for sample in samples() {
                let answer = wire::parse_answer(&sample).expect("a valid sample");
                assert_eq!(answer.pdu_ref, 1);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                every_parser(&bytes);
            }

            #[test]
            fn mutated_answers_never_panic(
                which in 0usize..9,
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                cut in any::<prop::sample::Index>(),
                extra in prop::collection::vec(any::<u8>(), 0..8),
            ) {
                let samples = samples();
                let mut pdu = samples[which % samples.len()].clone();
                for (at, byte) in flips {
                    let i = at.index(pdu.len());
                    pdu[i] = byte;
                }
                every_parser(&pdu);
                let cut = cut.index(pdu.len() + 1);
                every_parser(&pdu[..cut]);
                pdu.extend_from_slice(&extra);
                every_parser(&pdu);
            }
        }
    }
}
