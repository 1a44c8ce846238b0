//! Request PDU handling: decode, validate in the order the Modbus
//! Application Protocol specification (V1.1b3) prescribes, apply to the
//! state, encode the answer. Pure and synchronous, so it can be tested
//! without a network; the server only frames it.
//!
//! Decoding is done here rather than by tokio-modbus's server because a real
//! device answers malformed or unsupported requests with an exception
//! (0x01/0x03) and keeps the connection, while tokio-modbus's server codec
//! drops the connection (and panics on some malformed FC 15 frames).

use super::state::{ModbusState, Quirk, TableKind};
use crate::request_log::Described;

/// Exception 0x01: the function (or MEI type) is not supported.
pub(crate) const ILLEGAL_FUNCTION: u8 = 0x01;
/// Exception 0x02: an address is not inside a defined block.
pub(crate) const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
/// Exception 0x03: a quantity, byte count or value is out of range.
pub(crate) const ILLEGAL_DATA_VALUE: u8 = 0x03;
/// Exception 0x06: the device is busy with a long command (the `busy` quirk).
pub(crate) const SERVER_DEVICE_BUSY: u8 = 0x06;
/// Exception 0x0B: the addressed unit does not answer (gateway behaviour).
pub(crate) const GATEWAY_TARGET_FAILED: u8 = 0x0B;

/// Spec limits.
const MAX_READ_REGISTERS: u16 = 125;
const MAX_READ_BITS: u16 = 2000;
const MAX_WRITE_REGISTERS: u16 = 123;
const MAX_WRITE_BITS: u16 = 1968;
const MAX_RW_WRITE_REGISTERS: u16 = 121;
/// Register read limit under the `limit-64` quirk.
const QUIRK_READ_LIMIT: u16 = 64;
/// Maximum PDU size (function code included).
const MAX_PDU: usize = 253;
const MEI_READ_DEVICE_ID: u8 = 0x0E;

/// What the device sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A normal response PDU (function code first).
    Pdu(Vec<u8>),
    /// An exception response with this code.
    Exception(u8),
    /// Nothing (the `stall` quirk).
    Silent,
}

impl Answer {
    /// The response PDU to send for a request with function code `fc`.
    pub(crate) fn response_pdu(&self, fc: u8) -> Option<Vec<u8>> {
        match self {
            Self::Pdu(pdu) => Some(pdu.clone()),
            Self::Exception(code) => Some(vec![fc | 0x80, *code]),
            Self::Silent => None,
        }
    }

    /// The `outcome` text for the request log.
    pub(crate) fn outcome(&self) -> String {
        match self {
            Self::Pdu(_) => "ok".to_string(),
            Self::Exception(code) => format!("exception 0x{code:02X} ({})", exception_name(*code)),
            Self::Silent => "no answer (stall quirk)".to_string(),
        }
    }
}

fn exception_name(code: u8) -> &'static str {
    match code {
        ILLEGAL_FUNCTION => "illegal function",
        ILLEGAL_DATA_ADDRESS => "illegal data address",
        ILLEGAL_DATA_VALUE => "illegal data value",
        0x04 => "server device failure",
        GATEWAY_TARGET_FAILED => "gateway target device failed to respond",
        _ => "other",
    }
}

#[derive(Debug)]
enum Req<'a> {
    ReadBits {
        kind: TableKind,
        addr: u16,
        qty: u16,
    },
    ReadRegisters {
        kind: TableKind,
        addr: u16,
        qty: u16,
    },
    WriteCoil {
        addr: u16,
        raw: u16,
    },
    WriteRegister {
        addr: u16,
        value: u16,
    },
    WriteCoils {
        addr: u16,
        qty: u16,
        byte_count: u8,
        data: &'a [u8],
    },
    WriteRegisters {
        addr: u16,
        qty: u16,
        byte_count: u8,
        data: &'a [u8],
    },
    MaskWrite {
        addr: u16,
        and_mask: u16,
        or_mask: u16,
    },
    ReadWrite {
        read_addr: u16,
        read_qty: u16,
        write_addr: u16,
        write_qty: u16,
        byte_count: u8,
        data: &'a [u8],
    },
    DeviceId {
        read_code: u8,
        object_id: u8,
    },
    Diagnostics {
        sub_function: u16,
    },
    OtherMei {
        mei_type: u8,
    },
    Unsupported,
    Malformed(&'static str),
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn decode(fc: u8, body: &[u8]) -> Req<'_> {
    let fixed = |len: usize| body.len() == len;
    match fc {
        0x01..=0x04 => {
            if !fixed(4) {
                return Req::Malformed("expected address and quantity (4 bytes)");
            }
            let (addr, qty) = (be16(body, 0), be16(body, 2));
            match fc {
                0x01 => Req::ReadBits {
                    kind: TableKind::Coil,
                    addr,
                    qty,
                },
                0x02 => Req::ReadBits {
                    kind: TableKind::Discrete,
                    addr,
                    qty,
                },
                0x03 => Req::ReadRegisters {
                    kind: TableKind::Holding,
                    addr,
                    qty,
                },
                _ => Req::ReadRegisters {
                    kind: TableKind::Input,
                    addr,
                    qty,
                },
            }
        }
        0x05 | 0x06 => {
            if !fixed(4) {
                return Req::Malformed("expected address and value (4 bytes)");
            }
            let (addr, value) = (be16(body, 0), be16(body, 2));
            if fc == 0x05 {
                Req::WriteCoil { addr, raw: value }
            } else {
                Req::WriteRegister { addr, value }
            }
        }
        0x0F | 0x10 => {
            if body.len() < 5 {
                return Req::Malformed("too short");
            }
            let (addr, qty, byte_count) = (be16(body, 0), be16(body, 2), body[4]);
            let data = &body[5..];
            if data.len() != usize::from(byte_count) {
                return Req::Malformed("byte count does not match the data");
            }
            if fc == 0x0F {
                Req::WriteCoils {
                    addr,
                    qty,
                    byte_count,
                    data,
                }
            } else {
                Req::WriteRegisters {
                    addr,
                    qty,
                    byte_count,
                    data,
                }
            }
        }
        0x16 => {
            if !fixed(6) {
                return Req::Malformed("expected address, AND mask and OR mask (6 bytes)");
            }
            Req::MaskWrite {
                addr: be16(body, 0),
                and_mask: be16(body, 2),
                or_mask: be16(body, 4),
            }
        }
        0x17 => {
            if body.len() < 9 {
                return Req::Malformed("too short");
            }
            let data = &body[9..];
            if data.len() != usize::from(body[8]) {
                return Req::Malformed("byte count does not match the data");
            }
            Req::ReadWrite {
                read_addr: be16(body, 0),
                read_qty: be16(body, 2),
                write_addr: be16(body, 4),
                write_qty: be16(body, 6),
                byte_count: body[8],
                data,
            }
        }
        0x2B => match body.first() {
            None => Req::Malformed("missing MEI type"),
            Some(&MEI_READ_DEVICE_ID) if body.len() == 3 => Req::DeviceId {
                read_code: body[1],
                object_id: body[2],
            },
            Some(&MEI_READ_DEVICE_ID) => {
                Req::Malformed("expected MEI type, read code and object id (3 bytes)")
            }
            Some(&mei_type) => Req::OtherMei { mei_type },
        },
        0x08 => Req::Diagnostics {
            sub_function: if body.len() >= 2 { be16(body, 0) } else { 0 },
        },
        _ => Req::Unsupported,
    }
}

fn function_name(fc: u8, req: &Req<'_>) -> String {
    let name = match fc {
        0x01 => "read_coils",
        0x02 => "read_discrete_inputs",
        0x03 => "read_holding_registers",
        0x04 => "read_input_registers",
        0x05 => "write_single_coil",
        0x06 => "write_single_register",
        0x07 => "read_exception_status",
        0x08 => "diagnostics",
        0x0B => "get_comm_event_counter",
        0x0C => "get_comm_event_log",
        0x0F => "write_multiple_coils",
        0x10 => "write_multiple_registers",
        0x11 => "report_server_id",
        0x14 => "read_file_record",
        0x15 => "write_file_record",
        0x16 => "mask_write_register",
        0x17 => "read_write_multiple_registers",
        0x18 => "read_fifo_queue",
        0x2B if matches!(req, Req::OtherMei { .. }) => "encapsulated_interface_transport",
        0x2B => "read_device_identification",
        _ => return format!("function_0x{fc:02x}"),
    };
    name.to_string()
}

/// Function codes whose purpose is to change device state.
fn is_write(fc: u8, req: &Req<'_>) -> bool {
    match fc {
        0x05 | 0x06 | 0x0F | 0x10 | 0x15 | 0x16 | 0x17 => true,
        // Diagnostics other than "return query data" restart or clear things.
        0x08 => !matches!(req, Req::Diagnostics { sub_function: 0 }),
        _ => false,
    }
}

fn read_code_name(code: u8) -> &'static str {
    match code {
        1 => "basic",
        2 => "regular",
        3 => "extended",
        4 => "specific",
        _ => "invalid",
    }
}

fn describe(fc: u8, req: &Req<'_>, body_len: usize) -> Described {
    let (detail, address, count) = match *req {
        Req::ReadBits { addr, qty, .. } | Req::ReadRegisters { addr, qty, .. } => {
            (format!("address={addr} count={qty}"), Some(addr), Some(qty))
        }
        Req::WriteCoil { addr, raw } => {
            let value = match raw {
                0xFF00 => "true".to_string(),
                0x0000 => "false".to_string(),
                other => format!("0x{other:04X} (invalid)"),
            };
            (format!("address={addr} value={value}"), Some(addr), Some(1))
        }
        Req::WriteRegister { addr, value } => {
            (format!("address={addr} value={value}"), Some(addr), Some(1))
        }
        Req::WriteCoils { addr, qty, .. } | Req::WriteRegisters { addr, qty, .. } => {
            (format!("address={addr} count={qty}"), Some(addr), Some(qty))
        }
        Req::MaskWrite {
            addr,
            and_mask,
            or_mask,
        } => (
            format!("address={addr} and_mask=0x{and_mask:04X} or_mask=0x{or_mask:04X}"),
            Some(addr),
            Some(1),
        ),
        Req::ReadWrite {
            read_addr,
            read_qty,
            write_addr,
            write_qty,
            ..
        } => (
            format!(
                "read_address={read_addr} read_count={read_qty} write_address={write_addr} write_count={write_qty}"
            ),
            Some(read_addr),
            Some(read_qty),
        ),
        Req::DeviceId {
            read_code,
            object_id,
        } => (
            format!(
                "read_code={} object_id=0x{object_id:02X}",
                read_code_name(read_code)
            ),
            None,
            None,
        ),
        Req::Diagnostics { sub_function } => {
            (format!("sub_function=0x{sub_function:04X}"), None, None)
        }
        Req::OtherMei { mei_type } => (format!("mei_type=0x{mei_type:02X}"), None, None),
        Req::Unsupported => (format!("{body_len} data bytes"), None, None),
        Req::Malformed(reason) => (
            format!("malformed: {reason} ({body_len} data bytes)"),
            None,
            None,
        ),
    };
    Described {
        service: u16::from(fc),
        name: function_name(fc, req),
        detail,
        address: address.map(u32::from),
        count: count.map(u32::from),
        write: is_write(fc, req),
    }
}

/// Handles one request PDU addressed to `unit`: describes it for the log and
/// computes the answer, applying writes to `state`.
pub(crate) fn handle(state: &mut ModbusState, unit: u8, pdu: &[u8]) -> (Described, Answer) {
    let Some((&fc, body)) = pdu.split_first() else {
        return (
            Described::new(0, "empty", "malformed: empty PDU"),
            Answer::Silent,
        );
    };
    let req = decode(fc, body);
    let described = describe(fc, &req, body.len());
    if state.quirks.get(Quirk::Stall) {
        return (described, Answer::Silent);
    }
    if unit != state.unit_id && unit != 0 && unit != 0xFF {
        return (described, Answer::Exception(GATEWAY_TARGET_FAILED));
    }
    if state.quirks.get(Quirk::Busy) {
        return (described, Answer::Exception(SERVER_DEVICE_BUSY));
    }
    if state.quirks.get(Quirk::RefuseReads)
        && matches!(req, Req::ReadBits { .. } | Req::ReadRegisters { .. })
    {
        return (described, Answer::Exception(ILLEGAL_DATA_ADDRESS));
    }
    let answer = match execute(state, fc, body, req) {
        Ok(pdu) => Answer::Pdu(pdu),
        Err(code) => Answer::Exception(code),
    };
    (described, answer)
}

fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

fn unpack_bits(bytes: &[u8], count: usize) -> Vec<bool> {
    (0..count)
        .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect()
}

fn registers_response(fc: u8, values: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + values.len() * 2);
    out.push(fc);
    out.push((values.len() * 2) as u8);
    for value in values {
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

fn addr_qty_response(fc: u8, addr: u16, qty: u16) -> Vec<u8> {
    let mut out = vec![fc];
    out.extend_from_slice(&addr.to_be_bytes());
    out.extend_from_slice(&qty.to_be_bytes());
    out
}

fn register_read_limit(state: &ModbusState) -> u16 {
    if state.quirks.get(Quirk::Limit64) {
        QUIRK_READ_LIMIT
    } else {
        MAX_READ_REGISTERS
    }
}

fn read_registers(
    state: &ModbusState,
    kind: TableKind,
    addr: u16,
    qty: u16,
) -> Result<Vec<u16>, u8> {
    let table = if kind == TableKind::Input {
        &state.input
    } else {
        &state.holding
    };
    let mut values = table
        .read(addr, usize::from(qty))
        .ok_or(ILLEGAL_DATA_ADDRESS)?;
    if state.quirks.get(Quirk::ShortRead) {
        values.pop();
    }
    Ok(values)
}

fn execute(state: &mut ModbusState, fc: u8, body: &[u8], req: Req<'_>) -> Result<Vec<u8>, u8> {
    match req {
        Req::ReadBits { kind, addr, qty } => {
            if !(1..=MAX_READ_BITS).contains(&qty) {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let table = if kind == TableKind::Coil {
                &state.coils
            } else {
                &state.discrete
            };
            let mut bits = table
                .read(addr, usize::from(qty))
                .ok_or(ILLEGAL_DATA_ADDRESS)?;
            if state.quirks.get(Quirk::ShortRead) {
                // One data byte fewer than the quantity needs.
                bits.truncate((bits.len().div_ceil(8) - 1) * 8);
            }
            let packed = pack_bits(&bits);
            let mut out = vec![fc, packed.len() as u8];
            out.extend_from_slice(&packed);
            Ok(out)
        }
        Req::ReadRegisters { kind, addr, qty } => {
            if !(1..=register_read_limit(state)).contains(&qty) {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let values = read_registers(state, kind, addr, qty)?;
            Ok(registers_response(fc, &values))
        }
        Req::WriteCoil { addr, raw } => {
            let value = match raw {
                0xFF00 => true,
                0x0000 => false,
                _ => return Err(ILLEGAL_DATA_VALUE),
            };
            state
                .coils
                .write(addr, &[value])
                .map_err(|_| ILLEGAL_DATA_ADDRESS)?;
            Ok(echo(fc, body))
        }
        Req::WriteRegister { addr, value } => {
            state
                .holding
                .write(addr, &[value])
                .map_err(|_| ILLEGAL_DATA_ADDRESS)?;
            Ok(echo(fc, body))
        }
        Req::WriteCoils {
            addr,
            qty,
            byte_count,
            data,
        } => {
            if !(1..=MAX_WRITE_BITS).contains(&qty)
                || usize::from(byte_count) != usize::from(qty).div_ceil(8)
            {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let bits = unpack_bits(data, usize::from(qty));
            state
                .coils
                .write(addr, &bits)
                .map_err(|_| ILLEGAL_DATA_ADDRESS)?;
            Ok(addr_qty_response(fc, addr, qty))
        }
        Req::WriteRegisters {
            addr,
            qty,
            byte_count,
            data,
        } => {
            if !(1..=MAX_WRITE_REGISTERS).contains(&qty)
                || usize::from(byte_count) != usize::from(qty) * 2
            {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let values: Vec<u16> = data.chunks_exact(2).map(|c| be16(c, 0)).collect();
            state
                .holding
                .write(addr, &values)
                .map_err(|_| ILLEGAL_DATA_ADDRESS)?;
            Ok(addr_qty_response(fc, addr, qty))
        }
        Req::MaskWrite {
            addr,
            and_mask,
            or_mask,
        } => {
            let current = state.holding.get(addr).ok_or(ILLEGAL_DATA_ADDRESS)?;
            let value = (current & and_mask) | (or_mask & !and_mask);
            state
                .holding
                .write(addr, &[value])
                .map_err(|_| ILLEGAL_DATA_ADDRESS)?;
            Ok(echo(fc, body))
        }
        Req::ReadWrite {
            read_addr,
            read_qty,
            write_addr,
            write_qty,
            byte_count,
            data,
        } => {
            if !(1..=register_read_limit(state)).contains(&read_qty)
                || !(1..=MAX_RW_WRITE_REGISTERS).contains(&write_qty)
                || usize::from(byte_count) != usize::from(write_qty) * 2
            {
                return Err(ILLEGAL_DATA_VALUE);
            }
            if state
                .holding
                .first_missing(read_addr, usize::from(read_qty))
                .is_some()
            {
                return Err(ILLEGAL_DATA_ADDRESS);
            }
            // The write happens before the read (spec).
            let values: Vec<u16> = data.chunks_exact(2).map(|c| be16(c, 0)).collect();
            state
                .holding
                .write(write_addr, &values)
                .map_err(|_| ILLEGAL_DATA_ADDRESS)?;
            let values = read_registers(state, TableKind::Holding, read_addr, read_qty)?;
            Ok(registers_response(fc, &values))
        }
        Req::DeviceId {
            read_code,
            object_id,
        } => device_identification(state, read_code, object_id),
        Req::Diagnostics { .. } | Req::OtherMei { .. } | Req::Unsupported => Err(ILLEGAL_FUNCTION),
        // A device without FC 43 refuses it whatever its content.
        Req::Malformed(_) if fc == 0x2B && !state.identity.enabled => Err(ILLEGAL_FUNCTION),
        Req::Malformed(_) => {
            if matches!(fc, 0x01..=0x06 | 0x0F | 0x10 | 0x16 | 0x17 | 0x2B) {
                Err(ILLEGAL_DATA_VALUE)
            } else {
                Err(ILLEGAL_FUNCTION)
            }
        }
    }
}

fn echo(fc: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(fc);
    out.extend_from_slice(body);
    out
}

/// FC 43 / MEI 14, with the stream access (`more_follows`/`next_object_id`)
/// and individual access of the specification.
fn device_identification(state: &ModbusState, read_code: u8, object_id: u8) -> Result<Vec<u8>, u8> {
    let identity = &state.identity;
    if !identity.enabled {
        return Err(ILLEGAL_FUNCTION);
    }
    let conformity = if state.quirks.get(Quirk::Conformity83) {
        0x83
    } else {
        identity.conformity_level()
    };
    let header = |more_follows: bool, next: u8, count: usize| {
        vec![
            0x2B,
            MEI_READ_DEVICE_ID,
            read_code,
            conformity,
            if more_follows { 0xFF } else { 0x00 },
            next,
            count as u8,
        ]
    };
    let push_object = |out: &mut Vec<u8>, id: u8, value: &[u8]| {
        out.push(id);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    };
    let last_id = match read_code {
        1 => 0x02,
        2 => 0x7F,
        3 => 0xFF,
        4 => {
            let value = identity
                .objects
                .get(&object_id)
                .ok_or(ILLEGAL_DATA_ADDRESS)?;
            let mut out = header(false, 0, 1);
            push_object(&mut out, object_id, value);
            return Ok(out);
        }
        _ => return Err(ILLEGAL_DATA_VALUE),
    };
    let objects: Vec<(u8, &Vec<u8>)> = identity
        .objects
        .range(..=last_id)
        .map(|(id, value)| (*id, value))
        .collect();
    // An object id that is not in the category restarts the stream at its
    // first object ("as if object 0 were pointed out").
    let start = objects
        .iter()
        .position(|(id, _)| *id == object_id)
        .unwrap_or(0);
    let mut size = 7;
    let mut end = start;
    while end < objects.len() && size + 2 + objects[end].1.len() <= MAX_PDU {
        size += 2 + objects[end].1.len();
        end += 1;
    }
    let (more_follows, next) = match objects.get(end) {
        Some((id, _)) => (true, *id),
        None => (false, 0),
    };
    let mut out = header(more_follows, next, end - start);
    for (id, value) in &objects[start..end] {
        push_object(&mut out, *id, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ModbusState {
        ModbusState::from_toml(
            "unit_id = 7\n[[holding]]\nstart = 0\nvalues = [1, 2, 3]\n\
             [[coil]]\nstart = 0\ncount = 20\n\
             [identity]\nvendor_name = \"v\"\nproduct_code = \"p\"\nrevision = \"1\"\n",
        )
        .expect("state parses")
    }

    #[test]
    fn malformed_and_unsupported_get_exceptions() {
        let mut s = state();
        // FC 15 claiming 2000 coils with one data byte.
        let (_, answer) = handle(&mut s, 7, &[0x0F, 0, 0, 0x07, 0xD0, 1, 0xFF]);
        assert_eq!(answer, Answer::Exception(ILLEGAL_DATA_VALUE));
        // FC 16 quantity overflow when doubled.
        let (_, answer) = handle(&mut s, 7, &[0x10, 0, 0, 0x80, 0x01, 2, 0, 1]);
        assert_eq!(answer, Answer::Exception(ILLEGAL_DATA_VALUE));
        // FC 5 with a value other than 0x0000/0xFF00.
        let (d, answer) = handle(&mut s, 7, &[0x05, 0, 0, 0x12, 0x34]);
        assert_eq!(answer, Answer::Exception(ILLEGAL_DATA_VALUE));
        assert!(d.write);
        // Unknown function, other MEI type, truncated read.
        assert_eq!(
            handle(&mut s, 7, &[0x41, 1, 2]).1,
            Answer::Exception(ILLEGAL_FUNCTION)
        );
        assert_eq!(
            handle(&mut s, 7, &[0x2B, 0x0D, 0]).1,
            Answer::Exception(ILLEGAL_FUNCTION)
        );
        assert_eq!(
            handle(&mut s, 7, &[0x03, 0]).1,
            Answer::Exception(ILLEGAL_DATA_VALUE)
        );
        assert_eq!(
            handle(&mut s, 7, &[0xFF]).1.response_pdu(0xFF),
            Some(vec![0xFF, 1])
        );
        // Wrong unit.
        assert_eq!(
            handle(&mut s, 3, &[0x03, 0, 0, 0, 1]).1,
            Answer::Exception(GATEWAY_TARGET_FAILED)
        );
        assert_eq!(
            handle(&mut s, 0, &[0x03, 0, 0, 0, 1]).1,
            Answer::Pdu(vec![0x03, 2, 0, 1])
        );
    }

    #[test]
    fn writes_apply() {
        let mut s = state();
        let (d, a) = handle(&mut s, 7, &[0x16, 0, 1, 0x00, 0xF0, 0x00, 0x05]);
        assert_eq!(a, Answer::Pdu(vec![0x16, 0, 1, 0x00, 0xF0, 0x00, 0x05]));
        assert!(d.write);
        assert_eq!(s.holding.get(1), Some(5), "(2 & 0x00F0) | (5 & !0x00F0)");
        let (_, a) = handle(&mut s, 7, &[0x17, 0, 0, 0, 3, 0, 2, 0, 1, 2, 0x12, 0x34]);
        assert_eq!(a, Answer::Pdu(vec![0x17, 6, 0, 1, 0, 5, 0x12, 0x34]));
        let (_, a) = handle(&mut s, 7, &[0x0F, 0, 8, 0, 10, 2, 0xFF, 0x01]);
        assert_eq!(a, Answer::Pdu(vec![0x0F, 0, 8, 0, 10]));
        let mut expected = vec![false];
        expected.extend([true; 9]);
        expected.extend([false, false]);
        assert_eq!(s.coils.read(7, 12), Some(expected));
        let (_, a) = handle(&mut s, 7, &[0x01, 0, 8, 0, 10]);
        assert_eq!(a, Answer::Pdu(vec![0x01, 2, 0xFF, 0x01]));
    }

    #[test]
    fn device_id_streams() {
        let mut s = state();
        let long = vec![b'x'; 200];
        s.identity.objects.insert(0x04, long.clone());
        s.identity.objects.insert(0x80, vec![b'y'; 100]);
        // Regular: objects 0..=2 (1 byte each) + 0x04 (200) fit: 7 + 9 + 202 = 218.
        let Ok(pdu) = device_identification(&s, 2, 0) else {
            panic!("regular stream answered")
        };
        assert_eq!(&pdu[..7], &[0x2B, 0x0E, 2, 0x83, 0, 0, 4]);
        // Extended: 0x80 does not fit any more.
        let Ok(pdu) = device_identification(&s, 3, 0) else {
            panic!("extended stream answered")
        };
        assert_eq!(&pdu[..7], &[0x2B, 0x0E, 3, 0x83, 0xFF, 0x80, 4]);
        let Ok(pdu) = device_identification(&s, 3, 0x80) else {
            panic!("extended continuation answered")
        };
        assert_eq!(&pdu[..9], &[0x2B, 0x0E, 3, 0x83, 0, 0, 1, 0x80, 100]);
        // Unknown start restarts at the first object; specific access.
        let Ok(pdu) = device_identification(&s, 1, 0x55) else {
            panic!("basic stream answered")
        };
        assert_eq!(&pdu[..9], &[0x2B, 0x0E, 1, 0x83, 0, 0, 3, 0x00, 1]);
        assert_eq!(
            device_identification(&s, 4, 0x05),
            Err(ILLEGAL_DATA_ADDRESS)
        );
        assert_eq!(device_identification(&s, 5, 0), Err(ILLEGAL_DATA_VALUE));
        s.identity.enabled = false;
        assert_eq!(device_identification(&s, 1, 0), Err(ILLEGAL_FUNCTION));
    }
}
