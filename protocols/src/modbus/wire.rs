//! Modbus answers checked against what was asked: tokio-modbus decodes the frames, this file
//! checks that they answer the request (counts, categories, progress).

use otdrift_config::ModbusTable;
use otdrift_core::Value;
use tokio_modbus::prelude::{ExceptionCode, ReadCode, ReadDeviceIdentificationResponse, Response};

use super::plan::ReadOp;

/// The most FC 43 requests one identification may take; a device whose "more follows" never
/// ends is answering nonsense.
pub(crate) const MAX_DEVICE_ID_REQUESTS: u32 = 16;

/// An exception as errors name it.
pub(crate) fn exception_text(e: ExceptionCode) -> String {
    format!("exception 0x{:02x} ({e})", u8::from(e))
}

/// Whether an exception says "not implemented" (1, 2 or 3): a stable capability refusal.
pub(crate) fn is_not_implemented(e: ExceptionCode) -> bool {
    matches!(
        e,
        ExceptionCode::IllegalFunction
            | ExceptionCode::IllegalDataAddress
            | ExceptionCode::IllegalDataValue
    )
}

/// The values of a table read: exactly the registers asked for, or the bits in exactly
/// ceil(count / 8) bytes.
pub(crate) fn table_values(op: ReadOp, answer: Response) -> Result<Vec<Value>, String> {
    let wanted = usize::from(op.count);
    match (op.table, answer) {
        (ModbusTable::Holding, Response::ReadHoldingRegisters(words))
        | (ModbusTable::Input, Response::ReadInputRegisters(words)) => {
            if words.len() != wanted {
                return Err(format!("asked for {wanted} registers, got {}", words.len()));
            }
            Ok(words.into_iter().map(Value::from).collect())
        }
        (ModbusTable::Coil, Response::ReadCoils(bits))
        | (ModbusTable::Discrete, Response::ReadDiscreteInputs(bits)) => {
            // Bits arrive in whole bytes: the answer must carry ceil(count / 8) bytes.
            if bits.len() < wanted || bits.len() >= wanted + 8 {
                return Err(format!(
                    "asked for {wanted} bits ({} bytes), got {} bytes",
                    wanted.div_ceil(8),
                    bits.len() / 8
                ));
            }
            Ok(bits.into_iter().take(wanted).map(Value::Bool).collect())
        }
        (_, other) => Err(format!("unexpected answer {other:?}")),
    }
}

/// The object ids a stream of `code` carries (6.21: basic 0x00-0x02; regular adds
/// 0x03-0x7F; extended is 0x80-0xFF).
pub(crate) fn id_category(code: ReadCode) -> std::ops::RangeInclusive<u8> {
    match code {
        ReadCode::Basic => 0x00..=0x02,
        ReadCode::Extended => 0x80..=0xFF,
        ReadCode::Regular | ReadCode::Specific => 0x00..=0x7F,
    }
}

/// One identification stream (basic, regular or extended objects) as its answers arrive.
///
/// The Modbus application protocol (v1.1b3, 6.21) tells a device that does not know the
/// object id it was asked for to answer "as if object 0 were pointed out": asked for the
/// extended stream from 0x80, a device without extended objects (pymodbus's server among
/// them) restarts at object 0 and sends the regular objects again. So only objects of the
/// requested category count; others are ignored, and a "next object" outside the category
/// ends the stream. An object sent twice with the same value is a harmless repeat; with
/// another value the device contradicts itself.
#[derive(Debug)]
pub(crate) struct IdStream {
    category: std::ops::RangeInclusive<u8>,
    /// The object to ask for next.
    pub(crate) next: u8,
    /// The objects so far, in the order received.
    pub(crate) objects: Vec<(u8, Value)>,
    /// The conformity level of the first answer.
    pub(crate) conformity: Option<u8>,
}

impl IdStream {
    /// A stream of `code`, starting at its first object.
    pub(crate) fn new(code: ReadCode) -> Self {
        let category = id_category(code);
        IdStream {
            next: *category.start(),
            category,
            objects: Vec::new(),
            conformity: None,
        }
    }

    /// Takes one answer; `Ok(true)` when the stream is complete.
    pub(crate) fn take(&mut self, answer: Response) -> Result<bool, String> {
        let Response::ReadDeviceIdentification(answer) = answer else {
            return Err(format!("unexpected answer {answer:?}"));
        };
        let ReadDeviceIdentificationResponse {
            conformity_level,
            more_follows,
            next_object_id,
            device_id_objects,
            ..
        } = answer;
        self.conformity.get_or_insert(conformity_level.value());
        for object in device_id_objects {
            if !self.category.contains(&object.id) {
                continue;
            }
            let value = match object.value_as_str() {
                Some(text) => Value::Text(text.trim_end_matches('\0').to_owned()),
                None => Value::Bytes(object.value.to_vec()),
            };
            match self.objects.iter().find(|(id, _)| *id == object.id) {
                Some((_, seen)) if *seen == value => {}
                Some((_, seen)) => {
                    return Err(format!(
                        "object 0x{:02x} sent twice with different values ({seen} and {value})",
                        object.id
                    ));
                }
                None => self.objects.push((object.id, value)),
            }
        }
        if !more_follows || !self.category.contains(&next_object_id) {
            // Done, or the device restarted at object 0 of another category: nothing more of
            // this one.
            return Ok(true);
        }
        if next_object_id <= self.next {
            return Err(format!(
                "more follows, but the next object 0x{next_object_id:02x} does not advance past 0x{:02x}",
                self.next
            ));
        }
        self.next = next_object_id;
        Ok(false)
    }
}
