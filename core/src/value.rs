//! Typed item values.
//!
//! Values keep the type the controller gave them (a REAL stays a 32-bit float, a register an
//! unsigned integer) so that a diff shows `72.5 -> 75.0`, not two byte strings. Equality is
//! defined by the canonical encoding: all NaNs are one NaN and `-0.0` equals `0.0`, because a
//! setpoint that reads back as negative zero has not drifted.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// A typed value as captured from a controller.
#[derive(Clone, Debug)]
pub enum Value {
    /// No value (e.g. an empty optional field in an identity record).
    Null,
    /// A boolean: coils, BOOL tags, flags.
    Bool(bool),
    /// A signed integer of any width up to 64 bits (INT, DINT, LINT).
    Int(i64),
    /// An unsigned integer of any width up to 64 bits (registers, UDINT, sizes, counters).
    UInt(u64),
    /// A 32-bit float (REAL), kept at its own width so it prints as the PLC shows it.
    F32(f32),
    /// A 64-bit float (LREAL).
    F64(f64),
    /// Text. Strings from a device that are not UTF-8 are captured as [`Value::Bytes`].
    Text(String),
    /// Raw bytes (block bodies, unknown types); shown as hex.
    Bytes(Vec<u8>),
    /// An ordered sequence (arrays).
    List(Vec<Value>),
    /// Named fields (structures); keys are kept sorted so order never depends on the device.
    Map(BTreeMap<String, Value>),
    /// The device would not or could not say. Recorded with a stable reason so that the digest
    /// stays stable while the gap stays visible.
    Unavailable(String),
}

impl Value {
    /// A stable "not available" marker with a reason.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Value::Unavailable(reason.into())
    }

    /// A short type name for messages and for the JSON rendering of a change.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::UInt(_) => "uint",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Unavailable(_) => "unavailable",
        }
    }
}

/// The canonical bit pattern of a 32-bit float: one NaN, and zero without a sign.
pub(crate) fn canonical_f32_bits(v: f32) -> u32 {
    if v.is_nan() {
        0x7fc0_0000
    } else if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

/// The canonical bit pattern of a 64-bit float: one NaN, and zero without a sign.
pub(crate) fn canonical_f64_bits(v: f64) -> u64 {
    if v.is_nan() {
        0x7ff8_0000_0000_0000
    } else if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (UInt(a), UInt(b)) => a == b,
            (F32(a), F32(b)) => canonical_f32_bits(*a) == canonical_f32_bits(*b),
            (F64(a), F64(b)) => canonical_f64_bits(*a) == canonical_f64_bits(*b),
            (Text(a), Text(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (List(a), List(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Unavailable(a), Unavailable(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::UInt(u64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::UInt(u64::from(v))
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::UInt(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// The human rendering used in terminal output and evidence pages.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::UInt(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Text(v) => write!(f, "{v:?}"),
            Value::Bytes(v) => {
                f.write_str("0x")?;
                write_hex(f, v)
            }
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(fields) => {
                f.write_str("{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Unavailable(reason) => write!(f, "<not available: {reason}>"),
        }
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.0)
    }
}

fn serialize_float<S: Serializer>(v: f64, serializer: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        serializer.serialize_str("NaN")
    } else if v.is_infinite() {
        serializer.serialize_str(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        serializer.serialize_f64(v)
    }
}

/// The typed JSON rendering of values in events and `--json` output: numbers as numbers, text as strings, bytes as hex,
/// structures as objects. NaN and infinities, which JSON lacks, become the strings `"NaN"`,
/// `"inf"` and `"-inf"`; an unavailable value becomes `"not available: <reason>"`. The
/// rendering is for people and other systems; it is lossy and is never hashed.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(v) => serializer.serialize_bool(*v),
            Value::Int(v) => serializer.serialize_i64(*v),
            Value::UInt(v) => serializer.serialize_u64(*v),
            Value::F32(v) => {
                if v.is_finite() {
                    serializer.serialize_f32(*v)
                } else {
                    serialize_float(f64::from(*v), serializer)
                }
            }
            Value::F64(v) => serialize_float(*v, serializer),
            Value::Text(v) => serializer.serialize_str(v),
            Value::Bytes(v) => serializer.collect_str(&Hex(v)),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Unavailable(reason) => {
                serializer.collect_str(&format_args!("not available: {reason}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_equality_is_canonical() {
        assert_eq!(Value::F64(f64::NAN), Value::F64(-f64::NAN));
        assert_eq!(Value::F32(0.0), Value::F32(-0.0));
        assert_ne!(Value::F32(1.0), Value::F64(1.0));
        assert_ne!(Value::Int(1), Value::UInt(1));
    }

    #[test]
    fn json_rendering_is_typed() {
        let mut fields = BTreeMap::new();
        fields.insert("b".to_owned(), Value::F32(72.5));
        fields.insert("a".to_owned(), Value::Bytes(vec![0xde, 0xad]));
        let v = Value::List(vec![
            Value::UInt(7),
            Value::Text("x".into()),
            Value::Map(fields),
            Value::F64(f64::NAN),
            Value::unavailable("refused"),
        ]);
        assert_eq!(
            serde_json::to_string(&v).ok().as_deref(),
            Some(r#"[7,"x",{"a":"dead","b":72.5},"NaN","not available: refused"]"#)
        );
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(Value::F32(1.1).to_string(), "1.1");
        assert_eq!(Value::Text("a\"b".into()).to_string(), r#""a\"b""#);
        assert_eq!(Value::Bytes(vec![1, 255]).to_string(), "0x01ff");
    }
}
