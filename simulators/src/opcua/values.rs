//! The value types a simulated variable can have, and their values from TOML and to OPC UA
//! variants.

use opcua_types::{
    ByteString, DateTime, LocalizedText, UAString, Variant, VariantScalarTypeId, array::Array,
};

use super::state::MAX_ARRAY_LEN;

/// The scalar types a simulated variable can have (OPC UA built-in types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Boolean (i=1).
    Boolean,
    /// SByte (i=2).
    SByte,
    /// Byte (i=3).
    Byte,
    /// Int16 (i=4).
    Int16,
    /// UInt16 (i=5).
    UInt16,
    /// Int32 (i=6).
    Int32,
    /// UInt32 (i=7).
    UInt32,
    /// Int64 (i=8).
    Int64,
    /// UInt64 (i=9).
    UInt64,
    /// Float (i=10).
    Float,
    /// Double (i=11).
    Double,
    /// String (i=12).
    String,
    /// DateTime (i=13).
    DateTime,
    /// ByteString (i=15).
    ByteString,
    /// LocalizedText (i=21).
    LocalizedText,
}

impl ValueType {
    /// Every type, for messages.
    pub const ALL: [ValueType; 15] = [
        ValueType::Boolean,
        ValueType::SByte,
        ValueType::Byte,
        ValueType::Int16,
        ValueType::UInt16,
        ValueType::Int32,
        ValueType::UInt32,
        ValueType::Int64,
        ValueType::UInt64,
        ValueType::Float,
        ValueType::Double,
        ValueType::String,
        ValueType::DateTime,
        ValueType::ByteString,
        ValueType::LocalizedText,
    ];

    /// The type's name as written in state files and commands.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Boolean => "Boolean",
            ValueType::SByte => "SByte",
            ValueType::Byte => "Byte",
            ValueType::Int16 => "Int16",
            ValueType::UInt16 => "UInt16",
            ValueType::Int32 => "Int32",
            ValueType::UInt32 => "UInt32",
            ValueType::Int64 => "Int64",
            ValueType::UInt64 => "UInt64",
            ValueType::Float => "Float",
            ValueType::Double => "Double",
            ValueType::String => "String",
            ValueType::DateTime => "DateTime",
            ValueType::ByteString => "ByteString",
            ValueType::LocalizedText => "LocalizedText",
        }
    }

    /// Parses a type name (ASCII case ignored).
    pub fn parse(text: &str) -> Option<ValueType> {
        ValueType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(text))
    }

    /// The variant type, which is also the numeric id of the DataType node in namespace 0.
    pub fn scalar_type(self) -> VariantScalarTypeId {
        match self {
            ValueType::Boolean => VariantScalarTypeId::Boolean,
            ValueType::SByte => VariantScalarTypeId::SByte,
            ValueType::Byte => VariantScalarTypeId::Byte,
            ValueType::Int16 => VariantScalarTypeId::Int16,
            ValueType::UInt16 => VariantScalarTypeId::UInt16,
            ValueType::Int32 => VariantScalarTypeId::Int32,
            ValueType::UInt32 => VariantScalarTypeId::UInt32,
            ValueType::Int64 => VariantScalarTypeId::Int64,
            ValueType::UInt64 => VariantScalarTypeId::UInt64,
            ValueType::Float => VariantScalarTypeId::Float,
            ValueType::Double => VariantScalarTypeId::Double,
            ValueType::String => VariantScalarTypeId::String,
            ValueType::DateTime => VariantScalarTypeId::DateTime,
            ValueType::ByteString => VariantScalarTypeId::ByteString,
            ValueType::LocalizedText => VariantScalarTypeId::LocalizedText,
        }
    }

    /// The numeric id of the type's DataType node (namespace 0).
    pub fn data_type_id(self) -> u32 {
        self.scalar_type() as u32
    }

    pub(crate) fn is_float(self) -> bool {
        matches!(self, ValueType::Float | ValueType::Double)
    }

    pub(crate) fn is_integer(self) -> bool {
        matches!(
            self,
            ValueType::SByte
                | ValueType::Byte
                | ValueType::Int16
                | ValueType::UInt16
                | ValueType::Int32
                | ValueType::UInt32
                | ValueType::Int64
                | ValueType::UInt64
        )
    }

    /// Converts a TOML value (a scalar of this type, or an array of them) to a variant.
    pub fn convert(self, value: &toml::Value) -> Result<Variant, String> {
        if let toml::Value::Array(items) = value {
            if items.len() > MAX_ARRAY_LEN {
                return Err(format!(
                    "array of {} elements; at most {MAX_ARRAY_LEN}",
                    items.len()
                ));
            }
            let values = items
                .iter()
                .map(|item| match item {
                    toml::Value::Array(_) => Err("nested arrays are not supported".to_owned()),
                    scalar => self.scalar(scalar),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let array = Array::new(self.scalar_type(), values).map_err(|e| format!("{e:?}"))?;
            return Ok(Variant::Array(Box::new(array)));
        }
        self.scalar(value)
    }

    pub(crate) fn scalar(self, value: &toml::Value) -> Result<Variant, String> {
        let wrong = || format!("{value} is not a {} value", self.name());
        match (self, value) {
            (ValueType::Boolean, toml::Value::Boolean(b)) => Ok(Variant::Boolean(*b)),
            (t, toml::Value::Integer(n)) if t.is_integer() => {
                let n = *n;
                let out_of_range = || format!("{n} is out of range for {}", t.name());
                Ok(match t {
                    ValueType::SByte => {
                        Variant::SByte(i8::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::Byte => Variant::Byte(u8::try_from(n).map_err(|_| out_of_range())?),
                    ValueType::Int16 => {
                        Variant::Int16(i16::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::UInt16 => {
                        Variant::UInt16(u16::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::Int32 => {
                        Variant::Int32(i32::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::UInt32 => {
                        Variant::UInt32(u32::try_from(n).map_err(|_| out_of_range())?)
                    }
                    ValueType::Int64 => Variant::Int64(n),
                    _ => Variant::UInt64(u64::try_from(n).map_err(|_| out_of_range())?),
                })
            }
            (ValueType::Float, toml::Value::Float(f)) => Ok(Variant::Float(*f as f32)),
            (ValueType::Float, toml::Value::Integer(n)) => Ok(Variant::Float(*n as f32)),
            (ValueType::Double, toml::Value::Float(f)) => Ok(Variant::Double(*f)),
            (ValueType::Double, toml::Value::Integer(n)) => Ok(Variant::Double(*n as f64)),
            (ValueType::String, toml::Value::String(s)) => {
                Ok(Variant::String(UAString::from(s.as_str())))
            }
            (ValueType::LocalizedText, toml::Value::String(s)) => {
                Ok(Variant::LocalizedText(Box::new(LocalizedText::new("", s))))
            }
            (ValueType::DateTime, toml::Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|d| Variant::DateTime(Box::new(d)))
                .map_err(|e| format!("{s:?} is not an RFC 3339 date and time: {e}")),
            (ValueType::DateTime, toml::Value::Datetime(d)) => {
                DateTime::parse_from_rfc3339(&d.to_string())
                    .map(|d| Variant::DateTime(Box::new(d)))
                    .map_err(|e| format!("{d} is not a full date and time with offset: {e}"))
            }
            (ValueType::ByteString, toml::Value::String(s)) => parse_hex(s)
                .map(|bytes| Variant::ByteString(ByteString::from(bytes)))
                .ok_or_else(|| format!("{s:?} is not hex bytes (e.g. \"0a1b2c\")")),
            _ => Err(wrong()),
        }
    }
}

pub(crate) fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}
