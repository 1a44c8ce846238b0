//! AMS/TCP answers, checked: the frame prefix, the AMS header against the request it
//! answers, and the little-endian [`Cursor`] every answer is read with. (Requests are built in
//! `request.rs`.)
//!
//! An AMS/TCP frame is a 6-byte prefix (2 reserved bytes, which are 0 for ADS commands, and
//! the little-endian length of what follows), a 32-byte AMS header (target and source AMS
//! address, command id, state flags, data length, error code, invoke id) and the command's
//! data. All integers are little-endian.

use std::fmt;

use super::request::{ReadSpec, Request};

/// Bytes before the AMS header: reserved u16 + length u32.
pub(crate) const AMS_TCP_PREFIX: usize = 6;
/// The AMS header.
pub(crate) const AMS_HEADER: usize = 32;

/// The "response" bit of the state flags.
const FLAG_RESPONSE: u16 = 0x0001;

/// An AMS address: net id and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AmsAddr {
    pub net_id: [u8; 6],
    pub port: u16,
}

impl AmsAddr {
    /// The address as the AMS header carries it.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
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

/// One sub-read's outcome: its bytes, or the ADS error the device gave for it.
pub(crate) type SubResult = Result<Vec<u8>, u32>;

/// The results of a sum-read (`ex`: 0xF083, with lengths; else 0xF080) of `reads`, from the
/// answer's data: each sub-read's result (and length), then the data, every length checked.
pub(crate) fn sum_read_results(
    body: &[u8],
    ex: bool,
    reads: &[ReadSpec],
) -> Result<Vec<SubResult>, String> {
    let n = reads.len();
    let per = if ex { 8 } else { 4 };
    let mut c = Cursor::new(body);
    let mut heads = Vec::with_capacity(n);
    for (i, spec) in reads.iter().enumerate() {
        let err = c
            .u32("sub-read result")
            .map_err(|e| format!("sub-read #{i}: {e}"))?;
        let len = if ex {
            c.u32("sub-read length")
                .map_err(|e| format!("sub-read #{i}: {e}"))?
        } else if err == 0 {
            spec.length
        } else {
            0
        };
        if len > spec.length {
            return Err(format!(
                "sub-read #{i} answers {len} bytes, {} were asked for",
                spec.length
            ));
        }
        heads.push((err, len));
    }
    let data_len = body.len().saturating_sub(per * n);
    let requested: usize = reads.iter().map(|r| r.length as usize).sum();
    let returned: usize = heads.iter().map(|&(_, len)| len as usize).sum();
    // TwinCAT keeps each sub-read's slot at its requested length; some servers pack the
    // data at the returned lengths. Anything else does not add up.
    let padded = data_len == requested;
    if !padded && data_len != returned {
        return Err(format!(
            "{data_len} data bytes follow the {n} sub-read results; {requested} (slots as asked) or {returned} (as returned) were expected"
        ));
    }
    let mut out = Vec::with_capacity(n);
    for (spec, &(err, len)) in reads.iter().zip(&heads) {
        let slot = if padded { spec.length } else { len } as usize;
        let bytes = c.take(slot, "sub-read data")?;
        out.push(if err != 0 {
            Err(err)
        } else {
            Ok(bytes.get(..len as usize).unwrap_or_default().to_vec())
        });
    }
    Ok(out)
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
