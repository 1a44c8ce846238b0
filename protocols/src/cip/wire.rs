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

use otdrift_core::Value;

use super::request::WALL_CLOCK_ATTRIBUTE;
use super::types::STRUCT_REPLY;

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

/// The encapsulation status cpppo answers (then closing the connection) for a request it
/// cannot serve at all; EtherNet/IP does not define it (its CIP meaning is "service not
/// supported", put in the wrong layer).
pub(crate) const ENCAP_UNSUPPORTED: u32 = 0x0008;

/// The Identity object's attributes (Get Attributes All on class 0x01, instance 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdentityRecord {
    pub(crate) vendor: u16,
    pub(crate) device_type: u16,
    pub(crate) product_code: u16,
    pub(crate) major: u8,
    pub(crate) minor: u8,
    /// The status word (owned, configured, extended device status, faults).
    pub(crate) status: u16,
    pub(crate) serial: u32,
    /// The product name's bytes (a SHORT_STRING).
    pub(crate) name: Vec<u8>,
}

/// The Identity object's answer, every length checked.
pub(crate) fn identity_record(data: &[u8]) -> Result<IdentityRecord, WireError> {
    let mut c = Cursor::new(data, "Identity");
    Ok(IdentityRecord {
        vendor: c.u16()?,
        device_type: c.u16()?,
        product_code: c.u16()?,
        major: c.u8()?,
        minor: c.u8()?,
        status: c.u16()?,
        serial: c.u32()?,
        name: {
            let len = usize::from(c.u8()?);
            c.take(len)?.to_vec()
        },
    })
}

/// A Read Tag reply's type word (and structure handle), then the value bytes.
pub(crate) fn split_typed(data: &[u8]) -> Result<(u16, Option<u16>, &[u8]), WireError> {
    let mut c = Cursor::new(data, "Read Tag reply");
    let type_word = c.u16()?;
    if type_word == STRUCT_REPLY {
        let handle = c.u16()?;
        Ok((type_word, Some(handle), c.rest()))
    } else {
        Ok((type_word, None, c.rest()))
    }
}

/// The audit value from a Read Tag reply, as Rockwell shows it: `16#xxxx_xxxx_xxxx_xxxx`.
pub(crate) fn audit_from_reply(data: &[u8], dint_pair: bool) -> Result<Value, WireError> {
    let (type_word, _, bytes) = split_typed(data)?;
    let mut c = Cursor::new(bytes, "audit value");
    let value = if dint_pair {
        if type_word != 0xC4 {
            return Err(bad(format!(
                "answered type 0x{type_word:04x}, expected DINT"
            )));
        }
        let low = c.u32()?;
        let high = c.u32()?;
        (u64::from(high) << 32) | u64::from(low)
    } else {
        if type_word != 0xC5 {
            return Err(bad(format!(
                "answered type 0x{type_word:04x}, expected LINT"
            )));
        }
        c.u64()?
    };
    if !c.is_empty() {
        return Err(bad("audit value longer than asked"));
    }
    let hex = format!("{value:016x}");
    let groups: Vec<&str> = (0..4).filter_map(|i| hex.get(i * 4..i * 4 + 4)).collect();
    Ok(Value::Text(format!("16#{}", groups.join("_"))))
}

/// The longest Logix name (tags, programs, the controller's project).
const MAX_LOGIX_NAME: usize = 40;

/// The project name from a Get Attributes All reply on the program-name object: a STRING
/// (UINT length, characters) that must be a Logix name (1 to 40 letters, digits or `_`, not
/// starting with a digit), followed by bytes Logix does not document (ignored). `None` when
/// the reply is not that: too short for its length, empty, or not a name.
pub(crate) fn parse_project_name(data: &[u8]) -> Option<String> {
    let mut c = Cursor::new(data, "STRING");
    let len = usize::from(c.u16().ok()?);
    if len == 0 || len > MAX_LOGIX_NAME {
        return None;
    }
    let bytes = c.take(len).ok()?;
    let name = std::str::from_utf8(bytes).ok()?;
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_');
    (first_ok && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')).then(|| name.to_owned())
}

/// The clock from a Get Attribute List reply on WallClockTime: exactly one attribute, 0x0B,
/// status 0, a ULINT of microseconds, nothing after it.
pub(crate) fn parse_wall_clock(data: &[u8]) -> Result<u64, WireError> {
    let mut c = Cursor::new(data, "wall clock");
    let count = c.u16()?;
    if count != 1 {
        return Err(bad(format!("{count} attributes answered, 1 asked")));
    }
    let attribute = c.u16()?;
    if attribute != WALL_CLOCK_ATTRIBUTE {
        return Err(bad(format!(
            "attribute {attribute} answered, {} asked",
            WALL_CLOCK_ATTRIBUTE
        )));
    }
    let status = c.u16()?;
    if status != 0 {
        return Err(bad(format!("attribute status 0x{status:04x}")));
    }
    let us = c.u64()?;
    if !c.is_empty() {
        return Err(bad(format!("{} bytes after the clock", c.remaining())));
    }
    Ok(us)
}

/// A status for a not-available reason: general status only, so the reason (and the
/// digest) stays stable whatever extended words a firmware adds.
pub(crate) fn stable_status(status: &Status) -> String {
    format!(
        "CIP status 0x{:02x}, {}",
        status.general,
        status_text(status.general)
    )
}

pub(crate) fn encap_status(status: u32) -> &'static str {
    match status {
        0x0001 => "invalid or unsupported command",
        0x0002 => "no resources",
        0x0003 => "incorrect data",
        ENCAP_UNSUPPORTED => {
            "not an EtherNet/IP status: the CIP \"service not supported\" in the encapsulation header"
        }
        0x0064 => "invalid session handle",
        0x0065 => "invalid length",
        0x0069 => "unsupported protocol version",
        _ => "unknown",
    }
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

    fn cip_string(text: &[u8], trailer: &[u8]) -> Vec<u8> {
        let mut out = (text.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(text);
        out.extend_from_slice(trailer);
        out
    }

    #[test]
    fn a_project_name_is_a_logix_name_followed_by_bytes_nobody_documents() {
        assert_eq!(
            parse_project_name(&cip_string(b"Line3_Oven", &[])).as_deref(),
            Some("Line3_Oven")
        );
        // Logix follows the name with more bytes: ignored.
        assert_eq!(
            parse_project_name(&cip_string(b"_Press7", &[1, 2, 3, 4, 5])).as_deref(),
            Some("_Press7")
        );
        let forty = "A".repeat(40);
        assert_eq!(
            parse_project_name(&cip_string(forty.as_bytes(), &[])).as_deref(),
            Some(forty.as_str())
        );
    }

    #[test]
    fn an_answer_that_is_no_project_name_is_detected() {
        // cpppo answers its tag values for a class it does not have: REAL 180.0 then DINT 1200
        // reads as an empty STRING; DINT 1200 first as a STRING far longer than the reply.
        let cpppo_real_first = [0x00, 0x00, 0x34, 0x43, 0xB0, 0x04, 0x00, 0x00];
        let cpppo_dint_first = [0xB0, 0x04, 0x00, 0x00, 0x00, 0x00, 0x34, 0x43];
        for data in [
            &cpppo_real_first[..],
            &cpppo_dint_first[..],
            &[],
            &[5],
            &cip_string(b"", &[])[..],
            &cip_string("A".repeat(41).as_bytes(), &[])[..],
            &cip_string(b"3Line", &[])[..],
            &cip_string(b"Line 3", &[])[..],
            &cip_string(b"Line\x003", &[])[..],
            &cip_string(&[0xC3, 0x28], &[])[..],
        ] {
            assert_eq!(parse_project_name(data), None, "{data:02x?}");
        }
    }

    #[test]
    fn the_wall_clock_is_exactly_one_attribute_0x0b_and_its_microseconds() {
        let mut good = vec![1, 0, 0x0B, 0, 0, 0];
        good.extend_from_slice(&1_700_000_000_000_000u64.to_le_bytes());
        assert_eq!(parse_wall_clock(&good), Ok(1_700_000_000_000_000));
        // cpppo: no count, attribute 0x0B "object does not exist".
        let err = parse_wall_clock(&[0x0B, 0, 0x16, 0]).expect_err("cpppo");
        assert!(err.0.contains("11 attributes answered"), "{err}");
        let mut refused = vec![1, 0, 0x0B, 0, 0x14, 0];
        refused.extend_from_slice(&[0; 8]);
        assert!(parse_wall_clock(&refused).is_err(), "attribute status 0x14");
        let mut other = vec![1, 0, 0x0A, 0, 0, 0];
        other.extend_from_slice(&[0; 8]);
        assert!(parse_wall_clock(&other).is_err(), "another attribute");
        let mut long = good.clone();
        long.push(0);
        assert!(parse_wall_clock(&long).is_err(), "a byte too many");
        assert!(
            parse_wall_clock(&good[..good.len() - 1]).is_err(),
            "a byte short"
        );
    }

    #[test]
    fn the_audit_value_is_a_lint_or_a_dint_pair_shown_as_rockwell_does() {
        let mut lint = vec![0xC5, 0];
        lint.extend_from_slice(&0x0123_4567_89AB_CDEFu64.to_le_bytes());
        assert_eq!(
            audit_from_reply(&lint, false),
            Ok(Value::Text("16#0123_4567_89ab_cdef".to_owned()))
        );
        let mut pair = vec![0xC4, 0];
        pair.extend_from_slice(&0x89AB_CDEFu32.to_le_bytes());
        pair.extend_from_slice(&0x0123_4567u32.to_le_bytes());
        assert_eq!(
            audit_from_reply(&pair, true),
            Ok(Value::Text("16#0123_4567_89ab_cdef".to_owned()))
        );
        assert!(
            audit_from_reply(&lint, true).is_err(),
            "LINT read as a pair"
        );
        assert!(
            audit_from_reply(&pair, false).is_err(),
            "pair read as a LINT"
        );
        let mut long = lint.clone();
        long.push(0);
        assert!(audit_from_reply(&long, false).is_err(), "longer than asked");
        assert!(audit_from_reply(&lint[..6], false).is_err(), "shorter");
    }

    #[test]
    fn read_tag_replies_split_into_type_handle_and_value() {
        assert_eq!(
            split_typed(&[0xCA, 0, 0, 0, 0x34, 0x43]),
            Ok((0x00CA, None, &[0, 0, 0x34, 0x43][..]))
        );
        assert_eq!(
            split_typed(&[0xA0, 0x02, 0xCD, 0x9E, 1, 2]),
            Ok((0x02A0, Some(0x9ECD), &[1, 2][..]))
        );
        assert!(split_typed(&[0xCA]).is_err());
        assert!(
            split_typed(&[0xA0, 0x02, 0xCD]).is_err(),
            "structure without handle"
        );
    }

    #[test]
    fn encapsulation_statuses_are_named_including_cpppos() {
        assert_eq!(encap_status(0x0064), "invalid session handle");
        assert!(encap_status(ENCAP_UNSUPPORTED).contains("service not supported"));
        assert_eq!(encap_status(0x1234), "unknown");
    }

    #[test]
    fn not_available_reasons_name_the_general_status_only() {
        let status = Status {
            general: 0x05,
            extended: vec![0x1234],
        };
        let text = stable_status(&status);
        assert!(text.contains("0x05"), "{text}");
        assert!(
            !text.contains("1234"),
            "extended words vary by firmware: {text}"
        );
    }
}
