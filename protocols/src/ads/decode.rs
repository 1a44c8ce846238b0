//! Typed decoding of symbol values by their layout ([`Shape`], from `types.rs`): the bytes a
//! Read returned to an [`otdrift_core::Value`], so diffs show `72.5 -> 75.0`, not bytes.

use otdrift_core::Value;

use super::tables::windows_1252;
use super::types::Shape;

/// A decoded value: structures stay apart so the collector can make one item per field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decoded {
    Leaf(Value),
    Struct(Vec<(String, Decoded)>),
}

impl Decoded {
    /// As a single value (structures as maps).
    pub(crate) fn into_value(self) -> Value {
        match self {
            Decoded::Leaf(v) => v,
            Decoded::Struct(fields) => Value::Map(
                fields
                    .into_iter()
                    .map(|(name, d)| (name, d.into_value()))
                    .collect(),
            ),
        }
    }

    /// One `(path suffix, value)` per leaf: `""` for a plain value, `.Field.Sub` for
    /// structure fields. Arrays stay one value.
    pub(crate) fn flatten(self, prefix: String, out: &mut Vec<(String, Value)>) {
        match self {
            Decoded::Leaf(v) => out.push((prefix, v)),
            Decoded::Struct(fields) => {
                for (name, d) in fields {
                    d.flatten(format!("{prefix}.{name}"), out);
                }
            }
        }
    }
}

/// Decodes `bytes` (exactly the value's size) as `shape`.
pub(crate) fn decode(shape: &Shape, bytes: &[u8]) -> Decoded {
    match shape {
        Shape::Prim(p) => Decoded::Leaf(
            p.decode(bytes)
                .unwrap_or_else(|| Value::Bytes(bytes.to_vec())),
        ),
        Shape::Str { wide: false } => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            Decoded::Leaf(Value::Text(windows_1252(
                bytes.get(..end).unwrap_or_default(),
            )))
        }
        Shape::Str { wide: true } => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| {
                    u16::from_le_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .take_while(|&u| u != 0)
                .collect();
            Decoded::Leaf(match String::from_utf16(&units) {
                Ok(s) => Value::Text(s),
                Err(_) => Value::Bytes(bytes.to_vec()),
            })
        }
        Shape::Array {
            dims,
            elem,
            elem_size,
        } => Decoded::Leaf(decode_dims(dims, elem, *elem_size, bytes)),
        Shape::Struct(fields) => Decoded::Struct(
            fields
                .iter()
                .map(|(name, offset, size, shape)| {
                    let start = *offset as usize;
                    let end = start.saturating_add(*size as usize);
                    let part = bytes.get(start..end).unwrap_or_default();
                    (name.clone(), decode(shape, part))
                })
                .collect(),
        ),
        Shape::Bytes => Decoded::Leaf(Value::Bytes(bytes.to_vec())),
    }
}

fn decode_dims(dims: &[(i32, u32)], elem: &Shape, elem_size: u32, bytes: &[u8]) -> Value {
    let Some((&(_, count), inner)) = dims.split_first() else {
        return decode(elem, bytes).into_value();
    };
    let count = count as usize;
    if count == 0 {
        return Value::List(Vec::new());
    }
    let stride = bytes.len() / count;
    if stride == 0 || inner.is_empty() && stride != elem_size as usize {
        return Value::Bytes(bytes.to_vec());
    }
    Value::List(
        bytes
            .chunks_exact(stride)
            .take(count)
            .map(|chunk| decode_dims(inner, elem, elem_size, chunk))
            .collect(),
    )
}

/// Formats seconds since 1970 as an IEC `DT#` literal (`DT#2025-03-01-10:22:05`), for the
/// application timestamp item.
pub(crate) fn dt_literal(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "DT#{year:04}-{month:02}-{day:02}-{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ads::types::Types;

    #[test]
    fn values_decode_by_type() {
        let table = BTreeMap::new();
        let t = Types { table: &table };
        let d = |name: &str, size: u32, base: u32, bytes: &[u8]| {
            decode(&t.shape(name, size, base).expect("shape"), bytes).into_value()
        };
        assert_eq!(d("REAL", 4, 4, &72.5f32.to_le_bytes()), Value::F32(72.5));
        assert_eq!(d("INT", 2, 2, &(-3i16).to_le_bytes()), Value::Int(-3));
        assert_eq!(d("BOOL", 1, 33, &[1]), Value::Bool(true));
        assert_eq!(
            d("STRING(10)", 11, 30, b"Cola\0xxxxxx"),
            Value::from("Cola")
        );
        assert_eq!(
            d("WSTRING(3)", 8, 31, &[0x41, 0, 0xe9, 0, 0, 0, 0, 0]),
            Value::from("Aé")
        );
        assert_eq!(
            d("ARRAY [1..2, 0..1] OF INT", 8, 2, &[1, 0, 2, 0, 3, 0, 4, 0]),
            Value::List(vec![
                Value::List(vec![Value::Int(1), Value::Int(2)]),
                Value::List(vec![Value::Int(3), Value::Int(4)])
            ])
        );
        // A size that does not fit the type is shown as bytes, not misread.
        assert_eq!(d("DINT", 2, 3, &[1, 2]), Value::Bytes(vec![1, 2]));
        assert_eq!(d("POINTER TO BYTE", 8, 21, &[0; 8]), Value::UInt(0));
        assert_eq!(
            d("FB_Unknown", 3, 65, &[1, 2, 3]),
            Value::Bytes(vec![1, 2, 3])
        );
    }

    #[test]
    fn dt_literals() {
        assert_eq!(dt_literal(0), "DT#1970-01-01-00:00:00");
        assert_eq!(dt_literal(1_740_824_525), "DT#2025-03-01-10:22:05");
    }
}
