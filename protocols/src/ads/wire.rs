//! AMS/TCP framing and the only ADS requests the collector can build.
//!
//! An AMS/TCP frame is a 6-byte prefix (2 reserved bytes, which are 0 for ADS commands, and
//! the little-endian length of what follows), a 32-byte AMS header (target and source AMS
//! address, command id, state flags, data length, error code, invoke id) and the command's
//! data. All integers are little-endian.
//!
//! [`Request`] is the read-only boundary: [`Request::command_and_payload`] can only produce
//! ReadDeviceInfo (1), Read (2), ReadState (4) and ReadWrite (9) with the read-only index
//! groups symbol-info-by-name (0xF009) and sum-read (0xF080, 0xF083). Write (3), WriteControl
//! (5), AddDeviceNotification (6) and DeleteDeviceNotification (7) have no variant here.

use std::fmt;

/// Bytes before the AMS header: reserved u16 + length u32.
pub(crate) const AMS_TCP_PREFIX: usize = 6;
/// The AMS header.
pub(crate) const AMS_HEADER: usize = 32;

/// ADS command ids (Beckhoff ADS specification).
pub(crate) mod command {
    /// ReadDeviceInfo: device name and version.
    pub const DEVICE_INFO: u16 = 1;
    /// Read: bytes at an index group/offset.
    pub const READ: u16 = 2;
    /// ReadState: ADS state and device state.
    pub const READ_STATE: u16 = 4;
    /// ReadWrite: send a parameter block, read an answer (used by the read-only services
    /// below; the collector never sends data to a value area).
    pub const READ_WRITE: u16 = 9;
}

/// Index groups the collector reads.
pub(crate) mod group {
    /// Symbol version (one byte; moves on a download or restart).
    pub const SYM_VERSION: u32 = 0xF008;
    /// Symbol entry by name (ReadWrite; the written data is the name).
    pub const SYM_INFO_BY_NAME_EX: u32 = 0xF009;
    /// The symbol table.
    pub const SYM_UPLOAD: u32 = 0xF00B;
    /// Legacy upload info: symbol count and table size (8 bytes).
    pub const SYM_UPLOAD_INFO: u32 = 0xF00C;
    /// The data-type table.
    pub const SYM_DT_UPLOAD: u32 = 0xF00E;
    /// Upload info 2: symbol and data-type counts and table sizes (24 or 64 bytes).
    pub const SYM_UPLOAD_INFO2: u32 = 0xF00F;
    /// Sum read: results, then each sub-read's data at its requested length.
    pub const SUMUP_READ: u32 = 0xF080;
    /// Sum read with lengths: (result, length) pairs, then the data.
    pub const SUMUP_READ_EX: u32 = 0xF083;
}

/// State flags of a request over TCP: "ADS command".
const FLAGS_REQUEST: u16 = 0x0004;
/// The "response" bit of the state flags.
const FLAG_RESPONSE: u16 = 0x0001;

/// An AMS address: net id and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AmsAddr {
    pub net_id: [u8; 6],
    pub port: u16,
}

impl AmsAddr {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.net_id);
        out.extend_from_slice(&self.port.to_le_bytes());
    }
}

impl fmt::Display for AmsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.net_id;
        write!(f, "{a}.{b}.{c}.{d}.{e}.{g}:{}", self.port)
    }
}

/// One sub-read of a sum-read, or a plain Read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadSpec {
    pub group: u32,
    pub offset: u32,
    pub length: u32,
}

/// The requests the collector can send. Reads only.
#[derive(Clone, Debug)]
pub(crate) enum Request {
    /// ReadDeviceInfo (command 1).
    DeviceInfo,
    /// ReadState (command 4).
    ReadState,
    /// Read (command 2).
    Read(ReadSpec),
    /// ReadWrite 0xF009: the symbol entry of one name, at most `max` bytes back.
    SymbolInfoByName { name: String, max: u32 },
    /// ReadWrite 0xF083 (`ex`) or 0xF080: several reads in one round trip.
    SumRead { ex: bool, reads: Vec<ReadSpec> },
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A short name for an index group in messages.
pub(crate) fn group_name(group: u32) -> Option<&'static str> {
    Some(match group {
        group::SYM_VERSION => "symbol version",
        group::SYM_INFO_BY_NAME_EX => "symbol info by name",
        group::SYM_UPLOAD => "symbol upload",
        group::SYM_UPLOAD_INFO => "upload info",
        group::SYM_DT_UPLOAD => "data-type upload",
        group::SYM_UPLOAD_INFO2 => "upload info 2",
        group::SUMUP_READ => "sum-read",
        group::SUMUP_READ_EX => "sum-read with lengths",
        _ => return None,
    })
}

impl Request {
    /// The command id and the data block. This match is the collector's read-only
    /// boundary: it produces commands 1, 2, 4 and 9 only, and command 9 only with index
    /// groups 0xF009, 0xF080 and 0xF083, whose written part is a name or a list of reads.
    fn command_and_payload(&self) -> (u16, Vec<u8>) {
        match self {
            Request::DeviceInfo => (command::DEVICE_INFO, Vec::new()),
            Request::ReadState => (command::READ_STATE, Vec::new()),
            Request::Read(spec) => {
                let mut data = Vec::with_capacity(12);
                put_u32(&mut data, spec.group);
                put_u32(&mut data, spec.offset);
                put_u32(&mut data, spec.length);
                (command::READ, data)
            }
            Request::SymbolInfoByName { name, max } => {
                // The name is sent with a terminating NUL, as TwinCAT's own clients do.
                let write_len = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
                let mut data = Vec::with_capacity(16 + name.len() + 1);
                put_u32(&mut data, group::SYM_INFO_BY_NAME_EX);
                put_u32(&mut data, 0);
                put_u32(&mut data, *max);
                put_u32(&mut data, write_len);
                data.extend_from_slice(name.as_bytes());
                data.push(0);
                (command::READ_WRITE, data)
            }
            Request::SumRead { ex, reads } => {
                let count = u32::try_from(reads.len()).unwrap_or(u32::MAX);
                let mut data = Vec::with_capacity(16 + 12 * reads.len());
                put_u32(
                    &mut data,
                    if *ex {
                        group::SUMUP_READ_EX
                    } else {
                        group::SUMUP_READ
                    },
                );
                put_u32(&mut data, count);
                put_u32(&mut data, self.expected_read_length());
                put_u32(&mut data, count.saturating_mul(12));
                for spec in reads {
                    put_u32(&mut data, spec.group);
                    put_u32(&mut data, spec.offset);
                    put_u32(&mut data, spec.length);
                }
                (command::READ_WRITE, data)
            }
        }
    }

    /// What a sum-read asks back: per sub-read a result (and, with lengths, a length) plus
    /// its data.
    fn expected_read_length(&self) -> u32 {
        match self {
            Request::SumRead { ex, reads } => {
                let per = if *ex { 8u64 } else { 4u64 };
                let total: u64 = reads.iter().map(|r| per + u64::from(r.length)).sum();
                u32::try_from(total).unwrap_or(u32::MAX)
            }
            Request::Read(spec) => spec.length,
            Request::SymbolInfoByName { max, .. } => *max,
            Request::DeviceInfo | Request::ReadState => 0,
        }
    }

    /// The largest data block a well-formed answer can carry; a frame announcing more is
    /// refused before anything is allocated for it.
    pub(crate) fn max_answer_data(&self) -> usize {
        match self {
            Request::DeviceInfo => 24,
            Request::ReadState => 8,
            Request::Read(_) | Request::SymbolInfoByName { .. } | Request::SumRead { .. } => {
                8usize.saturating_add(self.expected_read_length() as usize)
            }
        }
    }

    /// The whole frame, prefix included.
    pub(crate) fn encode(&self, target: AmsAddr, source: AmsAddr, invoke_id: u32) -> Vec<u8> {
        let (cmd, data) = self.command_and_payload();
        let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(AMS_TCP_PREFIX + AMS_HEADER + data.len());
        out.extend_from_slice(&[0, 0]);
        put_u32(&mut out, data_len.saturating_add(AMS_HEADER as u32));
        target.write(&mut out);
        source.write(&mut out);
        out.extend_from_slice(&cmd.to_le_bytes());
        out.extend_from_slice(&FLAGS_REQUEST.to_le_bytes());
        put_u32(&mut out, data_len);
        put_u32(&mut out, 0);
        put_u32(&mut out, invoke_id);
        out.extend_from_slice(&data);
        out
    }

    /// The command id this request is sent with.
    pub(crate) fn command(&self) -> u16 {
        self.command_and_payload().0
    }

    /// What the request is, for error messages and logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Request::DeviceInfo => "ReadDeviceInfo (command 1)".to_owned(),
            Request::ReadState => "ReadState (command 4)".to_owned(),
            Request::Read(spec) => match group_name(spec.group) {
                Some(name) => format!(
                    "Read 0x{:04X}:{} ({name}, {} bytes)",
                    spec.group, spec.offset, spec.length
                ),
                None => format!(
                    "Read 0x{:04X}:0x{:X} ({} bytes)",
                    spec.group, spec.offset, spec.length
                ),
            },
            Request::SymbolInfoByName { name, .. } => {
                format!("ReadWrite 0xF009 (symbol info by name {name:?})")
            }
            Request::SumRead { ex, reads } => format!(
                "ReadWrite 0x{:04X} ({} of {} reads)",
                if *ex {
                    group::SUMUP_READ_EX
                } else {
                    group::SUMUP_READ
                },
                if *ex {
                    "sum-read with lengths"
                } else {
                    "sum-read"
                },
                reads.len()
            ),
        }
    }
}

/// A checked answer: the AMS header matched the request; `error` is the header's error
/// code (0 = none) and `data` the command's data block.
#[derive(Debug)]
pub(crate) struct Answer {
    pub error: u32,
    pub data: Vec<u8>,
}

/// A little-endian cursor over device bytes that never panics: every read says how many
/// bytes it needed.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.pos..e).map(|s| (e, s))) {
            Some((e, slice)) => {
                self.pos = e;
                Ok(slice)
            }
            None => Err(format!(
                "{what}: needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            )),
        }
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, String> {
        let b = self.take(1, what)?;
        b.first().copied().ok_or_else(|| format!("{what}: empty"))
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        let arr: [u8; 2] = b.try_into().map_err(|_| format!("{what}: short"))?;
        Ok(u16::from_le_bytes(arr))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| format!("{what}: short"))?;
        Ok(u32::from_le_bytes(arr))
    }

    pub(crate) fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| format!("{what}: short"))?;
        Ok(i32::from_le_bytes(arr))
    }
}

/// The prefix of a frame: reserved word and length.
pub(crate) fn parse_prefix(prefix: [u8; AMS_TCP_PREFIX]) -> (u16, u32) {
    let [r0, r1, l0, l1, l2, l3] = prefix;
    (
        u16::from_le_bytes([r0, r1]),
        u32::from_le_bytes([l0, l1, l2, l3]),
    )
}

/// Checks an AMS header and data block (everything after the prefix) against the request
/// that was sent.
pub(crate) fn check_answer(
    body: &[u8],
    request: &Request,
    target: AmsAddr,
    source: AmsAddr,
    invoke_id: u32,
) -> Result<Answer, String> {
    let mut c = Cursor::new(body);
    let answer_target = c.take(8, "AMS header")?;
    let answer_source = c.take(8, "AMS header")?;
    let cmd = c.u16("AMS header command id")?;
    let flags = c.u16("AMS header state flags")?;
    let data_len = c.u32("AMS header data length")?;
    let error = c.u32("AMS header error code")?;
    let invoke = c.u32("AMS header invoke id")?;
    let mut expected_target = Vec::with_capacity(8);
    source.write(&mut expected_target);
    let mut expected_source = Vec::with_capacity(8);
    target.write(&mut expected_source);
    if answer_target != expected_target.as_slice() {
        return Err(format!(
            "answer addressed to {}, not to this agent's {source}",
            describe_addr(answer_target)
        ));
    }
    if answer_source != expected_source.as_slice() {
        return Err(format!(
            "answer comes from {}, not from the asked {target}",
            describe_addr(answer_source)
        ));
    }
    if cmd != request.command() {
        return Err(format!(
            "answer is for command {cmd}, the request was command {}",
            request.command()
        ));
    }
    if flags & FLAG_RESPONSE == 0 {
        return Err(format!("state flags 0x{flags:04X} lack the response bit"));
    }
    if invoke != invoke_id {
        return Err(format!(
            "answer carries invoke id {invoke}, the request had {invoke_id}"
        ));
    }
    if data_len as usize != c.remaining() {
        return Err(format!(
            "AMS header announces {data_len} data bytes, the frame carries {}",
            c.remaining()
        ));
    }
    let data = c.take(c.remaining(), "data")?.to_vec();
    Ok(Answer { error, data })
}

fn describe_addr(bytes: &[u8]) -> String {
    match bytes {
        [a, b, c, d, e, f, p0, p1] => {
            format!("{a}.{b}.{c}.{d}.{e}.{f}:{}", u16::from_le_bytes([*p0, *p1]))
        }
        other => format!("{other:02x?}"),
    }
}

/// A readable name for an ADS return code (Beckhoff "ADS Return Codes").
pub(crate) fn error_text(code: u32) -> String {
    let name = match code {
        0x001 => "internal error",
        0x006 => "target port not found (is the PLC runtime on this AMS port running?)",
        0x007 => "target machine not found (no AMS route for this agent on the target)",
        0x008 => "unknown command id",
        0x00E => "invalid AMS length",
        0x700 => "general device error",
        0x701 => "service not supported",
        0x702 => "invalid index group",
        0x703 => "invalid index offset",
        0x704 => "reading or writing not permitted",
        0x705 => "parameter size not correct",
        0x706 => "invalid parameter value",
        0x707 => "device not ready",
        0x708 => "device busy",
        0x709 => "invalid context (must be in RUN mode?)",
        0x70A => "out of memory",
        0x710 => "symbol not found",
        0x711 => "symbol version invalid",
        0x719 => "device timeout",
        0x71A => "unknown ADS error",
        _ => "",
    };
    if name.is_empty() {
        format!("ADS error 0x{code:X}")
    } else {
        format!("ADS error 0x{code:X}: {name}")
    }
}

/// ADS return codes the collector tells apart (Beckhoff "ADS Return Codes"); every other
/// code is a refusal.
pub(crate) mod code {
    /// The device does not offer this service.
    pub const SERVICE_NOT_SUPPORTED: u32 = 0x701;
    /// The device does not serve this index group.
    pub const INVALID_GROUP: u32 = 0x702;
    /// Parameter size not correct: how some devices refuse a sum-read.
    pub const INVALID_SIZE: u32 = 0x705;
    /// The device is busy: the only code that is `ErrorKind::Busy`.
    pub const BUSY: u32 = 0x708;
    /// The device knows no symbol of that name.
    pub const SYMBOL_NOT_FOUND: u32 = 0x710;
}

/// Whether `code` says the device does not offer a service at all (0x701, or 0x702 for an
/// index group it does not serve), as opposed to refusing one particular request: the only
/// answer that makes the symbol upload a stable capability gap.
pub(crate) fn is_service_not_supported(code: u32) -> bool {
    matches!(code, code::SERVICE_NOT_SUPPORTED | code::INVALID_GROUP)
}

/// Whether a refused sum-read means "use another sum-read service" (0x701-0x705): the
/// collector then reads the same objects another way, which changes nothing in the digest.
pub(crate) fn is_sum_read_refused(code: u32) -> bool {
    matches!(code, code::SERVICE_NOT_SUPPORTED..=code::INVALID_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: AmsAddr = AmsAddr {
        net_id: [5, 1, 2, 3, 1, 1],
        port: 851,
    };
    const S: AmsAddr = AmsAddr {
        net_id: [10, 0, 0, 9, 1, 1],
        port: 32905,
    };

    fn every_request() -> Vec<Request> {
        let spec = ReadSpec {
            group: 0x4040,
            offset: 8,
            length: 4,
        };
        vec![
            Request::DeviceInfo,
            Request::ReadState,
            Request::Read(spec),
            Request::SymbolInfoByName {
                name: "MAIN.x".into(),
                max: 1024,
            },
            Request::SumRead {
                ex: true,
                reads: vec![spec, spec],
            },
            Request::SumRead {
                ex: false,
                reads: vec![spec],
            },
        ]
    }

    #[test]
    fn only_read_requests_can_be_built() {
        for request in every_request() {
            let frame = request.encode(T, S, 7);
            let cmd = u16::from_le_bytes([frame[22], frame[23]]);
            assert!(
                matches!(cmd, 1 | 2 | 4 | 9),
                "{} built command {cmd}",
                request.describe()
            );
            assert!(!matches!(cmd, 3 | 5 | 6 | 7 | 8));
            if cmd == 9 {
                let group = u32::from_le_bytes([frame[38], frame[39], frame[40], frame[41]]);
                assert!(
                    matches!(group, 0xF009 | 0xF080 | 0xF083),
                    "ReadWrite to 0x{group:X}"
                );
            }
            // The frame is self-consistent.
            let len = u32::from_le_bytes([frame[2], frame[3], frame[4], frame[5]]) as usize;
            assert_eq!(len + AMS_TCP_PREFIX, frame.len());
            let data_len = u32::from_le_bytes([frame[26], frame[27], frame[28], frame[29]]);
            assert_eq!(data_len as usize + AMS_HEADER + AMS_TCP_PREFIX, frame.len());
        }
    }

    #[test]
    fn a_sum_read_asks_for_results_and_data() {
        let reads = vec![
            ReadSpec {
                group: 0x4040,
                offset: 0,
                length: 4,
            },
            ReadSpec {
                group: 0x4040,
                offset: 4,
                length: 80,
            },
        ];
        let ex = Request::SumRead {
            ex: true,
            reads: reads.clone(),
        };
        assert_eq!(ex.max_answer_data(), 8 + 2 * 8 + 84);
        let plain = Request::SumRead { ex: false, reads };
        assert_eq!(plain.max_answer_data(), 8 + 2 * 4 + 84);
    }

    fn answer_frame(cmd: u16, flags: u16, invoke: u32, data: &[u8], extra: i32) -> Vec<u8> {
        let mut body = Vec::new();
        S.write(&mut body);
        T.write(&mut body);
        body.extend_from_slice(&cmd.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
        body.extend_from_slice(&((data.len() as i32 + extra) as u32).to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&invoke.to_le_bytes());
        body.extend_from_slice(data);
        body
    }

    #[test]
    fn answers_are_checked_against_the_request() {
        let req = Request::ReadState;
        let good = answer_frame(4, 5, 9, &[0, 0, 0, 0, 5, 0, 0, 0], 0);
        let answer = check_answer(&good, &req, T, S, 9).expect("well formed");
        assert_eq!(answer.data.len(), 8);
        for (frame, needle) in [
            (answer_frame(2, 5, 9, &[0; 8], 0), "command 2"),
            (answer_frame(4, 4, 9, &[0; 8], 0), "response bit"),
            (answer_frame(4, 5, 8, &[0; 8], 0), "invoke id 8"),
            (answer_frame(4, 5, 9, &[0; 8], 3), "announces 11"),
            (good[..20].to_vec(), "needs"),
        ] {
            let err = check_answer(&frame, &req, T, S, 9).expect_err("refused");
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_cursor_never_reads_past_the_end() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16("a"), Ok(0x0201));
        assert!(c.u32("b").is_err());
        assert_eq!(c.u8("c"), Ok(3));
        assert!(c.u8("d").is_err());
        assert!(c.take(usize::MAX, "e").is_err());
    }
}
