//! Modbus answers as items.

use otdrift_core::{Class, Item, Value};

use std::collections::BTreeMap;

use otdrift_config::{ModbusField, ModbusFieldType, ModbusTable, WordOrder};

use crate::{CollectError, Scope};

/// Names of the basic and regular identification objects (Modbus Application Protocol
/// v1.1b3, 6.21).
pub(crate) fn object_name(id: u8) -> String {
    match id {
        0x00 => "vendor_name".to_owned(),
        0x01 => "product_code".to_owned(),
        0x02 => "revision".to_owned(),
        0x03 => "vendor_url".to_owned(),
        0x04 => "product_name".to_owned(),
        0x05 => "model_name".to_owned(),
        0x06 => "user_application_name".to_owned(),
        other => format!("object_0x{other:02x}"),
    }
}

/// An identity item (`modbus/identity/<name>`).
pub(crate) fn identity(scope: &Scope, name: &str, value: Value) -> Result<Item, CollectError> {
    scope.new_item(format!("modbus/identity/{name}"), Class::Identity, value)
}

/// The setpoint items: one per typed field (`modbus/<table>/<name>`), decoded from its
/// registers, and one per register or bit outside every field (`modbus/<table>/<address>`).
pub(crate) fn setpoints(
    scope: &Scope,
    mut read: BTreeMap<(ModbusTable, u16), Value>,
    fields: &[(ModbusTable, ModbusField)],
) -> Result<Vec<Item>, CollectError> {
    let mut out = Vec::with_capacity(read.len());
    for (table, field) in fields {
        let words: Option<Vec<u16>> = (0..field.kind.registers())
            .map(|i| {
                let addr = field.offset.checked_add(i)?;
                match read.remove(&(*table, addr)) {
                    Some(Value::UInt(w)) => u16::try_from(w).ok(),
                    _ => None,
                }
            })
            .collect();
        // The config keeps every field inside a register range that is read whole; a gap
        // here is a bug of ours, reported as such rather than as a partial value.
        let Some(words) = words else {
            return Err(scope.malformed(
                format!("field {} of the {} table", field.name, table.as_str()),
                "its registers were not all read".to_owned(),
            ));
        };
        let path = format!("modbus/{}/{}", table.as_str(), field.name);
        out.push(scope.new_item(path, Class::Setpoint, decode(field, &words))?);
    }
    for ((table, addr), value) in read {
        let path = format!("modbus/{}/{addr}", table.as_str());
        out.push(scope.new_item(path, Class::Setpoint, value)?);
    }
    Ok(out)
}

/// A field's value from its registers (as many as its type spans, in address order).
pub(crate) fn decode(field: &ModbusField, words: &[u16]) -> Value {
    let mut ordered: Vec<u16> = words.to_vec();
    if field.word_order == WordOrder::Little {
        ordered.reverse();
    }
    let wide = ordered
        .iter()
        .fold(0u64, |acc, w| (acc << 16) | u64::from(*w));
    match field.kind {
        ModbusFieldType::U16 | ModbusFieldType::U32 => Value::UInt(wide),
        ModbusFieldType::I16 => Value::Int(i64::from(wide as u16 as i16)),
        ModbusFieldType::I32 => Value::Int(i64::from(wide as u32 as i32)),
        ModbusFieldType::F32 => Value::F32(f32::from_bits(wide as u32)),
        ModbusFieldType::F64 => Value::F64(f64::from_bits(wide)),
    }
}

/// The setpoint entry covering `path` (`modbus/<table>/<address>`).
pub fn setpoint_label(cfg: &otdrift_config::ModbusConfig, path: &str) -> Option<String> {
    let mut parts = path.split('/');
    if parts.next() != Some("modbus") {
        return None;
    }
    let table = parts.next()?;
    let last = parts.next()?;
    let Ok(addr) = last.parse::<u32>() else {
        // A typed field: `modbus/<table>/<name>`.
        return cfg
            .setpoints
            .iter()
            .find(|s| s.table.as_str() == table && s.fields.iter().any(|f| f.name == last))
            .map(|s| s.name.clone());
    };
    cfg.setpoints
        .iter()
        .find(|s| {
            s.table.as_str() == table
                && addr >= u32::from(s.start)
                && addr < u32::from(s.start) + u32::from(s.count)
        })
        .map(|s| s.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: ModbusFieldType, word_order: WordOrder) -> ModbusField {
        ModbusField {
            name: "f".into(),
            offset: 0,
            kind,
            word_order,
        }
    }

    #[test]
    fn fields_decode_in_both_word_orders() {
        use ModbusFieldType as T;
        use WordOrder::{Big, Little};
        // 72.5 as f32 is 0x4291_0000.
        assert_eq!(
            decode(&field(T::F32, Big), &[0x4291, 0x0000]),
            Value::F32(72.5)
        );
        assert_eq!(
            decode(&field(T::F32, Little), &[0x0000, 0x4291]),
            Value::F32(72.5)
        );
        assert_eq!(decode(&field(T::I16, Big), &[0xFFFE]), Value::Int(-2));
        assert_eq!(decode(&field(T::U16, Big), &[0xFFFE]), Value::UInt(65_534));
        assert_eq!(
            decode(&field(T::I32, Big), &[0xFFFF, 0xFFFD]),
            Value::Int(-3)
        );
        assert_eq!(
            decode(&field(T::U32, Little), &[0x0002, 0x0001]),
            Value::UInt(0x0001_0002)
        );
        let bits = 1234.5678f64.to_bits();
        let words = [
            (bits >> 48) as u16,
            (bits >> 32) as u16,
            (bits >> 16) as u16,
            bits as u16,
        ];
        assert_eq!(decode(&field(T::F64, Big), &words), Value::F64(1234.5678));
        let mut swapped = words;
        swapped.reverse();
        assert_eq!(
            decode(&field(T::F64, Little), &swapped),
            Value::F64(1234.5678)
        );
    }
}
