//! EtherNet/IP encapsulation, the Common Packet Format and CIP message-router replies, parsed
//! with every length checked.
//!
//! Requests are encoded by rseip (see [`super::request`]); answers are parsed here because
//! rseip's decoders trust the wire: `EipContext::send_rrdata` slices `data[0..4]` and
//! `data.slice(6..)` without a length check (panic on a short SendRRData reply),
//! `register_session` has `debug_assert`s on the protocol version, the message-router status
//! decoder multiplies an attacker-chosen `u8` by two (overflow panic in debug builds), the
//! Forward Open reply decoder reads one byte past what it checked, and `list_tag` builds a
//! `&str` with `from_utf8_unchecked` from device bytes. Nothing here indexes or slices
//! without a check, and every error is a [`WireError`] naming what did not fit.

use std::fmt;

/// Length of the encapsulation header.
pub(crate) const ENCAP_HEADER_LEN: usize = 24;
/// The largest data length an encapsulation header may announce (CIP Vol. 2, 2-3.1).
pub(crate) const MAX_ENCAP_DATA: usize = 65_511;

/// Encapsulation commands used by the collector (CIP Vol. 2, table 2-3.2).
pub(crate) const CMD_REGISTER_SESSION: u16 = 0x0065;
pub(crate) const CMD_UNREGISTER_SESSION: u16 = 0x0066;
pub(crate) const CMD_SEND_RR_DATA: u16 = 0x006F;
pub(crate) const CMD_SEND_UNIT_DATA: u16 = 0x0070;

/// Common Packet Format item types.
const CPF_NULL_ADDRESS: u16 = 0x0000;
const CPF_CONNECTED_ADDRESS: u16 = 0x00A1;
const CPF_CONNECTED_DATA: u16 = 0x00B1;
const CPF_UNCONNECTED_DATA: u16 = 0x00B2;

/// A device answer that does not fit the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shorthand for building a [`WireError`].
pub(crate) fn bad(detail: impl Into<String>) -> WireError {
    WireError(detail.into())
}

/// A bounds-checked little-endian reader over device bytes.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    /// Reads `buf`; `what` names the structure in error messages.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, pos: 0, what }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Whether everything was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Where the cursor stands.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| bad("length overflow"))?;
        let slice = self.buf.get(self.pos..end).ok_or_else(|| {
            bad(format!(
                "{}: needs {n} more bytes at offset {}, only {} left",
                self.what,
                self.pos,
                self.remaining()
            ))
        })?;
        self.pos = end;
        Ok(slice)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        rest
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian u16.
    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A fixed number of bytes.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
}

/// A parsed encapsulation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EncapHeader {
    /// The command.
    pub command: u16,
    /// Length of the data that follows.
    pub length: usize,
    /// Session handle.
    pub session: u32,
    /// Encapsulation status (0 = success).
    pub status: u32,
    /// Sender context, echoed by the target.
    pub context: [u8; 8],
}

impl EncapHeader {
    /// Parses the 24-byte header, refusing lengths beyond the protocol's limit.
    pub(crate) fn parse(bytes: &[u8; ENCAP_HEADER_LEN]) -> Result<Self, WireError> {
        let mut c = Cursor::new(bytes, "encapsulation header");
        let command = c.u16()?;
        let length = usize::from(c.u16()?);
        let session = c.u32()?;
        let status = c.u32()?;
        let context = c.array::<8>()?;
        let _options = c.u32()?;
        if length > MAX_ENCAP_DATA {
            return Err(bad(format!(
                "encapsulation length {length} exceeds {MAX_ENCAP_DATA}"
            )));
        }
        Ok(EncapHeader {
            command,
            length,
            session,
            status,
            context,
        })
    }
}

/// One encapsulation frame: header and data.
pub(crate) fn encap_frame(command: u16, session: u32, context: [u8; 8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCAP_HEADER_LEN + data.len());
    out.extend_from_slice(&command.to_le_bytes());
    // Callers never build more than a few KiB; the cast is checked anyway.
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&context);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The data of a RegisterSession request: protocol version 1, no options.
pub(crate) fn register_session_data() -> [u8; 4] {
    [1, 0, 0, 0]
}

/// Checks a RegisterSession reply's data (protocol version 1, options 0).
pub(crate) fn check_register_reply(data: &[u8]) -> Result<(), WireError> {
    let mut c = Cursor::new(data, "RegisterSession reply");
    let version = c.u16()?;
    let _options = c.u16()?;
    if !c.is_empty() {
        return Err(bad(format!(
            "RegisterSession reply carries {} bytes, expected 4",
            data.len()
        )));
    }
    if version != 1 {
        return Err(bad(format!(
            "RegisterSession reply has protocol version {version}, expected 1"
        )));
    }
    Ok(())
}

/// The data of a SendRRData request carrying one unconnected message.
pub(crate) fn send_rr_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + message.len());
    out.extend_from_slice(&0u32.to_le_bytes()); // interface handle: CIP
    out.extend_from_slice(&0u16.to_le_bytes()); // timeout: the Unconnected Send carries one
    out.extend_from_slice(&2u16.to_le_bytes()); // item count
    out.extend_from_slice(&CPF_NULL_ADDRESS.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&CPF_UNCONNECTED_DATA.to_le_bytes());
    out.extend_from_slice(
        &u16::try_from(message.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(message);
    out
}

/// The data of a SendUnitData request on a connection.
pub(crate) fn send_unit_data(connection_id: u32, sequence: u16, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + message.len());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&CPF_CONNECTED_ADDRESS.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&connection_id.to_le_bytes());
    out.extend_from_slice(&CPF_CONNECTED_DATA.to_le_bytes());
    let len = message.len().saturating_add(2);
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(message);
    out
}

/// Reads the CPF items of a SendRRData / SendUnitData reply: interface handle, timeout, then
/// exactly two items whose lengths add up to what arrived.
fn cpf_items(data: &[u8]) -> Result<[(u16, &[u8]); 2], WireError> {
    let mut c = Cursor::new(data, "common packet format");
    let _interface = c.u32()?;
    let _timeout = c.u16()?;
    let count = c.u16()?;
    if count != 2 {
        return Err(bad(format!(
            "common packet format has {count} items, expected 2"
        )));
    }
    let mut items = [(0u16, &[][..]); 2];
    for item in &mut items {
        let kind = c.u16()?;
        let len = usize::from(c.u16()?);
        if len > c.remaining() {
            return Err(bad(format!(
                "common packet item 0x{kind:04x} announces {len} bytes, only {} arrived",
                c.remaining()
            )));
        }
        *item = (kind, c.take(len)?);
    }
    if !c.is_empty() {
        return Err(bad(format!(
            "{} bytes after the common packet items",
            c.remaining()
        )));
    }
    Ok(items)
}

/// The message-router reply inside a SendRRData reply.
pub(crate) fn rr_data_reply(data: &[u8]) -> Result<&[u8], WireError> {
    let [(addr_kind, addr), (data_kind, message)] = cpf_items(data)?;
    if addr_kind != CPF_NULL_ADDRESS || !addr.is_empty() {
        return Err(bad(format!(
            "unconnected reply address item is 0x{addr_kind:04x} with {} bytes, expected a null address",
            addr.len()
        )));
    }
    if data_kind != CPF_UNCONNECTED_DATA {
        return Err(bad(format!(
            "unconnected reply data item is 0x{data_kind:04x}, expected 0x00b2"
        )));
    }
    Ok(message)
}

/// The sequence number and message-router reply inside a SendUnitData reply.
pub(crate) fn unit_data_reply(data: &[u8]) -> Result<(u32, u16, &[u8]), WireError> {
    let [(addr_kind, addr), (data_kind, payload)] = cpf_items(data)?;
    if addr_kind != CPF_CONNECTED_ADDRESS || addr.len() != 4 {
        return Err(bad(format!(
            "connected reply address item is 0x{addr_kind:04x} with {} bytes, expected 0x00a1 with 4",
            addr.len()
        )));
    }
    if data_kind != CPF_CONNECTED_DATA {
        return Err(bad(format!(
            "connected reply data item is 0x{data_kind:04x}, expected 0x00b1"
        )));
    }
    let connection = Cursor::new(addr, "connected address").u32()?;
    let mut c = Cursor::new(payload, "connected data item");
    let sequence = c.u16()?;
    Ok((connection, sequence, c.rest()))
}

/// A CIP general status with its extended status words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// General status (0 = success, 0x06 = partial transfer, ...).
    pub general: u8,
    /// Extended status words.
    pub extended: Vec<u16>,
}

impl Status {
    /// Success.
    pub(crate) fn is_ok(&self) -> bool {
        self.general == 0
    }

    /// "Partial transfer": more data follows (paged or fragmented answers).
    pub(crate) fn is_partial(&self) -> bool {
        self.general == 0x06
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CIP status 0x{:02x} ({})",
            self.general,
            status_text(self.general)
        )?;
        for word in &self.extended {
            write!(f, ", extended 0x{word:04x}")?;
        }
        Ok(())
    }
}

/// Names of the CIP general status codes (CIP Vol. 1, appendix B).
pub(crate) fn status_text(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0x01 => "connection failure",
        0x02 => "resource unavailable",
        0x03 => "invalid parameter value",
        0x04 => "path segment error",
        0x05 => "path destination unknown",
        0x06 => "partial transfer",
        0x07 => "connection lost",
        0x08 => "service not supported",
        0x09 => "invalid attribute value",
        0x0A => "attribute list error",
        0x0B => "already in requested mode/state",
        0x0C => "object state conflict",
        0x0D => "object already exists",
        0x0E => "attribute not settable",
        0x0F => "privilege violation",
        0x10 => "device state conflict",
        0x11 => "reply data too large",
        0x13 => "not enough data",
        0x14 => "attribute not supported",
        0x15 => "too much data",
        0x16 => "object does not exist",
        0x1E => "embedded service error",
        0x1F => "vendor specific error",
        0x20 => "invalid parameter",
        0x26 => "path size invalid",
        _ => "other error",
    }
}

/// A parsed message-router reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MrReply<'a> {
    /// The reply service code (request service | 0x80).
    pub service: u8,
    /// The status.
    pub status: Status,
    /// The reply data.
    pub data: &'a [u8],
}

/// Parses a message-router reply: service, reserved, general status, extended status size
/// (in words, bounded by what arrived), extended status, data.
pub(crate) fn mr_reply(bytes: &[u8]) -> Result<MrReply<'_>, WireError> {
    let mut c = Cursor::new(bytes, "message router reply");
    let service = c.u8()?;
    let _reserved = c.u8()?;
    let general = c.u8()?;
    let words = usize::from(c.u8()?);
    if service & 0x80 == 0 {
        return Err(bad(format!(
            "reply service 0x{service:02x} lacks the reply bit"
        )));
    }
    if words.saturating_mul(2) > c.remaining() {
        return Err(bad(format!(
            "reply announces {words} extended status words, only {} bytes follow",
            c.remaining()
        )));
    }
    let mut extended = Vec::with_capacity(words);
    for _ in 0..words {
        extended.push(c.u16()?);
    }
    Ok(MrReply {
        service,
        status: Status { general, extended },
        data: c.rest(),
    })
}

/// Splits a Multiple Service Packet reply's data into the embedded replies, checking the
/// count against what was asked and every offset against what arrived.
pub(crate) fn multiple_service_replies(
    data: &[u8],
    expected: usize,
) -> Result<Vec<&[u8]>, WireError> {
    let mut c = Cursor::new(data, "Multiple Service Packet reply");
    let count = usize::from(c.u16()?);
    if count != expected {
        return Err(bad(format!(
            "Multiple Service Packet reply holds {count} replies, {expected} were asked"
        )));
    }
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        offsets.push(usize::from(c.u16()?));
    }
    let header = c.position();
    let mut replies = Vec::with_capacity(count);
    for (i, start) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).copied().unwrap_or(data.len());
        if *start < header || end < *start || end > data.len() {
            return Err(bad(format!(
                "Multiple Service Packet reply {i} spans {start}..{end}, outside the {} bytes after a {header}-byte header",
                data.len()
            )));
        }
        replies.push(
            data.get(*start..end)
                .ok_or_else(|| bad("reply offset out of range"))?,
        );
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_lying_frames_are_errors_not_panics() {
        assert!(rr_data_reply(&[]).is_err());
        assert!(rr_data_reply(&[0, 0, 0, 0, 0]).is_err());
        // Two items, the second claims 200 bytes but carries 2.
        let lying = [0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xB2, 0, 200, 0, 0xCC, 0];
        assert!(rr_data_reply(&lying).is_err());
        assert!(mr_reply(&[0xCC, 0, 0, 200]).is_err());
        assert!(mr_reply(&[0x4C, 0, 0, 0]).is_err(), "no reply bit");
        assert!(multiple_service_replies(&[2, 0, 6, 0, 0xFF, 0x7F], 2).is_err());
        assert!(multiple_service_replies(&[5, 0], 2).is_err());
        assert!(check_register_reply(&[1, 0]).is_err());
        assert!(unit_data_reply(&[0; 3]).is_err());
    }

    #[test]
    fn a_well_formed_reply_round_trips() {
        let message = [0xCC, 0, 0, 1, 0x34, 0x12, 0xC4, 0, 1, 0, 0, 0];
        let data = send_rr_data(&message);
        let reply = rr_data_reply(&data).expect("parses");
        let mr = mr_reply(reply).expect("mr");
        assert_eq!(mr.service, 0xCC);
        assert_eq!(mr.status.extended, vec![0x1234]);
        assert_eq!(mr.data, &[0xC4, 0, 1, 0, 0, 0]);
        let unit = send_unit_data(7, 9, &message);
        let (conn, seq, body) = unit_data_reply(&unit).expect("unit");
        assert_eq!((conn, seq, body), (7, 9, &message[..]));
    }
}
