//! Device data → otdrift values and item paths: typed values, node keys with namespace
//! URIs, data type names, and the config's NodeId strings.

use std::str::FromStr;

use opcua::types::{DataValue, Identifier, NodeId, QualifiedName, StatusCode, Variant};
use otdrift_core::Value;

use super::{MAX_BYTES_VALUE, MAX_TEXT_VALUE};

/// A value too large to keep: the capture stops at a bound (never a cut value, which would
/// hide a change in its tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Oversize(pub(crate) String);

/// The stable text of a status code, e.g. `BadNotReadable`.
pub(crate) fn status_text(status: StatusCode) -> String {
    status.sub_code().name().to_owned()
}

/// A runtime fact from an attribute read (never hashed): the typed value, or "not available"
/// with the server's status, or with the bound a value exceeded.
pub(crate) fn runtime_value(dv: &DataValue) -> Value {
    let status = dv.status();
    if !status.is_good() {
        return Value::unavailable(format!("server answered {}", status_text(status)));
    }
    match &dv.value {
        None => Value::Null,
        Some(v) => variant(v).unwrap_or_else(|Oversize(why)| Value::unavailable(why)),
    }
}

/// Text from the device, refused beyond [`MAX_TEXT_VALUE`] bytes.
pub(crate) fn text(s: &str) -> Result<String, Oversize> {
    if s.len() > MAX_TEXT_VALUE {
        return Err(Oversize(format!(
            "a text of {} bytes, more than the {MAX_TEXT_VALUE} bytes kept per value",
            s.len()
        )));
    }
    Ok(s.to_owned())
}

/// A variant as a typed value: integers, floats, booleans, text and bytes keep their type;
/// DateTime is RFC 3339 text; LocalizedText its text; arrays lists; other types their string
/// form. Text beyond [`MAX_TEXT_VALUE`] or bytes beyond [`MAX_BYTES_VALUE`] are
/// [`Oversize`].
pub(crate) fn variant(v: &Variant) -> Result<Value, Oversize> {
    Ok(match v {
        Variant::Empty => Value::Null,
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(n) => Value::Int(i64::from(*n)),
        Variant::Int16(n) => Value::Int(i64::from(*n)),
        Variant::Int32(n) => Value::Int(i64::from(*n)),
        Variant::Int64(n) => Value::Int(*n),
        Variant::Byte(n) => Value::UInt(u64::from(*n)),
        Variant::UInt16(n) => Value::UInt(u64::from(*n)),
        Variant::UInt32(n) => Value::UInt(u64::from(*n)),
        Variant::UInt64(n) => Value::UInt(*n),
        Variant::Float(f) => Value::F32(*f),
        Variant::Double(f) => Value::F64(*f),
        Variant::String(s) => match s.value() {
            None => Value::Null,
            Some(s) => Value::Text(text(s)?),
        },
        Variant::ByteString(b) => match &b.value {
            None => Value::Null,
            Some(bytes) if bytes.len() > MAX_BYTES_VALUE => {
                return Err(Oversize(format!(
                    "a byte string of {} bytes, more than the {MAX_BYTES_VALUE} bytes kept per value",
                    bytes.len()
                )));
            }
            Some(bytes) => Value::Bytes(bytes.clone()),
        },
        Variant::DateTime(d) => {
            if d.is_null() {
                Value::Null
            } else {
                Value::Text(d.to_rfc3339())
            }
        }
        Variant::LocalizedText(t) => match t.text.value() {
            None => Value::Null,
            Some(s) => Value::Text(text(s)?),
        },
        Variant::QualifiedName(q) => Value::Text(text(&qualified_plain(q))?),
        Variant::NodeId(id) => Value::Text(text(&id.to_string())?),
        Variant::StatusCode(s) => Value::Text(status_text(*s)),
        Variant::Array(array) => Value::List(
            array
                .values
                .iter()
                .map(variant)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Variant::Variant(inner) => variant(inner)?,
        other => Value::Text(text(&other.to_string())?),
    })
}

fn qualified_plain(q: &QualifiedName) -> String {
    format!("{}:{}", q.namespace_index, q.name.as_ref())
}

/// A node's key in item paths: `i=2253` for namespace 0, `nsu=<uri>;s=...` when the
/// namespace's URI is known (indexes may change between server restarts, URIs do not), else
/// `ns=<index>;...`.
pub(crate) fn node_key(id: &NodeId, namespaces: &[String]) -> String {
    let ident = identifier_text(&id.identifier);
    if id.namespace == 0 {
        return ident;
    }
    match namespaces.get(usize::from(id.namespace)) {
        Some(uri) => format!("nsu={uri};{ident}"),
        None => format!("ns={};{ident}", id.namespace),
    }
}

/// An identifier as text, whole: a long one makes a long item path, which the snapshot refuses
/// (a bound), rather than being cut into a key another node could share.
fn identifier_text(id: &Identifier) -> String {
    id.to_string()
}

/// A browse name with its namespace as a URI (namespace 0 names stand alone).
pub(crate) fn browse_name(q: &QualifiedName, namespaces: &[String]) -> String {
    let name = q.name.as_ref().to_owned();
    if q.namespace_index == 0 {
        return name;
    }
    match namespaces.get(usize::from(q.namespace_index)) {
        Some(uri) => format!("nsu={uri};{name}"),
        None => format!("ns={};{name}", q.namespace_index),
    }
}

/// A DataType node id as people read it: built-in types by name.
pub(crate) fn data_type_name(id: &NodeId, namespaces: &[String]) -> String {
    if id.namespace == 0
        && let Identifier::Numeric(n) = id.identifier
    {
        let name = match n {
            1 => "Boolean",
            2 => "SByte",
            3 => "Byte",
            4 => "Int16",
            5 => "UInt16",
            6 => "Int32",
            7 => "UInt32",
            8 => "Int64",
            9 => "UInt64",
            10 => "Float",
            11 => "Double",
            12 => "String",
            13 => "DateTime",
            14 => "Guid",
            15 => "ByteString",
            16 => "XmlElement",
            17 => "NodeId",
            18 => "ExpandedNodeId",
            19 => "StatusCode",
            20 => "QualifiedName",
            21 => "LocalizedText",
            22 => "Structure",
            23 => "DataValue",
            24 => "BaseDataType",
            25 => "DiagnosticInfo",
            26 => "Number",
            27 => "Integer",
            28 => "UInteger",
            29 => "Enumeration",
            290 => "Duration",
            294 => "UtcTime",
            295 => "LocaleId",
            _ => "",
        };
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    node_key(id, namespaces)
}

/// A NodeId string from the config (`[ns=<n>;|nsu=<uri>;]i=|s=|g=|b=...`), split into its
/// namespace part and identifier text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigNode {
    /// `None`: namespace 0 (no prefix).
    pub(crate) namespace: Option<NamespaceRef>,
    /// `i=85`, `s=Mixer.Setpoints`...
    pub(crate) identifier: String,
}

/// How the config names a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NamespaceRef {
    /// `ns=<index>`.
    Index(u16),
    /// `nsu=<uri>`.
    Uri(String),
}

impl ConfigNode {
    /// Splits a NodeId string (the config crate validated its form).
    pub(crate) fn parse(text: &str) -> Option<ConfigNode> {
        let (namespace, identifier) = if let Some(rest) = text.strip_prefix("ns=") {
            let (ns, ident) = rest.split_once(';')?;
            (Some(NamespaceRef::Index(ns.parse().ok()?)), ident)
        } else if let Some(rest) = text.strip_prefix("nsu=") {
            let (uri, ident) = rest.split_once(';')?;
            (Some(NamespaceRef::Uri(uri.to_owned())), ident)
        } else {
            (None, text)
        };
        Identifier::from_str(identifier).ok()?;
        Some(ConfigNode {
            namespace,
            identifier: identifier.to_owned(),
        })
    }

    /// The NodeId on this server, given its NamespaceArray; `Err` says why it cannot be.
    pub(crate) fn resolve(&self, namespaces: &[String]) -> Result<NodeId, String> {
        let index = match &self.namespace {
            None => 0,
            Some(NamespaceRef::Index(n)) => *n,
            Some(NamespaceRef::Uri(uri)) => namespaces
                .iter()
                .position(|u| u == uri)
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| format!("namespace {uri} is not in the server's NamespaceArray"))?,
        };
        let identifier = Identifier::from_str(&self.identifier)
            .map_err(|()| format!("{:?} is not a NodeId identifier", self.identifier))?;
        Ok(NodeId {
            namespace: index,
            identifier,
        })
    }

    /// Whether an item's node key (see [`node_key`]) is this node or, for string
    /// identifiers, a node whose identifier extends this one with a separator (`.`, `/`,
    /// `"`, `[`): how PLC servers name the members of a folder or structure.
    fn covers(&self, key: &str) -> Option<usize> {
        let (key_ns, key_ident) = split_key(key);
        match (&self.namespace, key_ns) {
            (None, KeyNs::Zero) => {}
            (Some(NamespaceRef::Uri(a)), KeyNs::Uri(b)) if a == b => {}
            (Some(NamespaceRef::Index(a)), KeyNs::Index(b)) if *a == b => {}
            // A config index against a key URI: the mapping is only known to the device, so
            // the identifier decides.
            (Some(NamespaceRef::Index(a)), KeyNs::Uri(_)) if *a != 0 => {}
            _ => return None,
        }
        if key_ident == self.identifier {
            return Some(self.identifier.len());
        }
        let root = self.identifier.strip_prefix("s=")?;
        let rest = key_ident.strip_prefix("s=")?.strip_prefix(root)?;
        rest.starts_with(['.', '/', '"', '['])
            .then_some(self.identifier.len())
    }
}

enum KeyNs<'a> {
    Zero,
    Index(u16),
    Uri(&'a str),
}

fn split_key(key: &str) -> (KeyNs<'_>, &str) {
    if let Some(rest) = key.strip_prefix("nsu=") {
        // The identifier starts after the last ";i=", ";s=", ";g=" or ";b=" that follows the
        // URI; URIs do not contain ";x=" in practice, identifiers may, so take the first.
        let cut = ["s=", "i=", "g=", "b="]
            .iter()
            .filter_map(|p| rest.find(&format!(";{p}")))
            .min();
        if let Some(at) = cut {
            return (
                KeyNs::Uri(rest.get(..at).unwrap_or_default()),
                rest.get(at + 1..).unwrap_or_default(),
            );
        }
        return (KeyNs::Uri(rest), "");
    }
    if let Some(rest) = key.strip_prefix("ns=")
        && let Some((ns, ident)) = rest.split_once(';')
        && let Ok(ns) = ns.parse()
    {
        return (KeyNs::Index(ns), ident);
    }
    (KeyNs::Zero, key)
}

/// The node key inside an item path: `opcua/value/<key>` or `opcua/node/<key>/<attribute>`.
pub(crate) fn key_of_path(path: &str) -> Option<&str> {
    if let Some(key) = path.strip_prefix("opcua/value/") {
        return Some(key);
    }
    let rest = path.strip_prefix("opcua/node/")?;
    Some(rest.rsplit_once('/').map_or(rest, |(key, _)| key))
}

/// The config's setpoint entry covering an item path: the most specific root that is the
/// node itself or, for string identifiers, a prefix of its identifier.
pub(crate) fn label(setpoints: &[(String, String)], path: &str) -> Option<String> {
    let key = key_of_path(path)?;
    setpoints
        .iter()
        .filter_map(|(name, node)| {
            let root = ConfigNode::parse(node)?;
            root.covers(key).map(|len| (len, name))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, name)| name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::{Array, ByteString, DateTime, LocalizedText, UAString, VariantScalarTypeId};

    #[test]
    fn values_keep_their_types() {
        let variant = |v: &Variant| variant(v).expect("within bounds");
        assert_eq!(variant(&Variant::Double(72.5)), Value::F64(72.5));
        assert_eq!(variant(&Variant::Float(65.0)), Value::F32(65.0));
        assert_eq!(variant(&Variant::Int16(-3)), Value::Int(-3));
        assert_eq!(variant(&Variant::UInt32(180)), Value::UInt(180));
        assert_eq!(variant(&Variant::Boolean(true)), Value::Bool(true));
        assert_eq!(
            variant(&Variant::String(UAString::from("Batch"))),
            Value::Text("Batch".into())
        );
        assert_eq!(variant(&Variant::String(UAString::null())), Value::Null);
        assert_eq!(
            variant(&Variant::ByteString(ByteString::from(vec![1u8, 2]))),
            Value::Bytes(vec![1, 2])
        );
        assert_eq!(
            variant(&Variant::LocalizedText(Box::new(LocalizedText::new(
                "en", "Hi"
            )))),
            Value::Text("Hi".into())
        );
        let date = DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z").expect("date");
        assert!(
            matches!(variant(&Variant::DateTime(Box::new(date))), Value::Text(t) if t.starts_with("2024-02-01T00:00:00"))
        );
        let array = Array::new(
            VariantScalarTypeId::Int16,
            vec![Variant::Int16(1), Variant::Int16(2)],
        )
        .expect("array");
        assert_eq!(
            variant(&Variant::Array(Box::new(array))),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        let bad = DataValue {
            status: Some(StatusCode::BadNotReadable),
            ..Default::default()
        };
        assert_eq!(
            runtime_value(&bad),
            Value::unavailable("server answered BadNotReadable")
        );
        // Never cut: a value beyond the bound is refused whole.
        let long = "x".repeat(MAX_TEXT_VALUE + 1);
        assert!(super::variant(&Variant::String(UAString::from(long))).is_err());
        let exact = "x".repeat(MAX_TEXT_VALUE);
        assert!(super::variant(&Variant::String(UAString::from(exact))).is_ok());
        let bytes = ByteString::from(vec![0u8; MAX_BYTES_VALUE + 1]);
        assert!(super::variant(&Variant::ByteString(bytes)).is_err());
    }

    #[test]
    fn node_keys_use_namespace_uris() {
        let ns = vec![
            "http://opcfoundation.org/UA/".to_owned(),
            "urn:server".to_owned(),
            "urn:plc".to_owned(),
        ];
        assert_eq!(node_key(&NodeId::new(0, 2253u32), &ns), "i=2253");
        assert_eq!(
            node_key(&NodeId::new(2, "Mixer.Speed"), &ns),
            "nsu=urn:plc;s=Mixer.Speed"
        );
        assert_eq!(node_key(&NodeId::new(7, 5u32), &ns), "ns=7;i=5");
        assert_eq!(data_type_name(&NodeId::new(0, 11u32), &ns), "Double");
        assert_eq!(
            browse_name(&QualifiedName::new(2, "Speed"), &ns),
            "nsu=urn:plc;Speed"
        );
    }

    #[test]
    fn config_nodes_resolve_and_label() {
        let ns = vec![
            "http://opcfoundation.org/UA/".to_owned(),
            "urn:server".to_owned(),
            "urn:plc".to_owned(),
        ];
        let by_uri = ConfigNode::parse("nsu=urn:plc;s=Mixer.Setpoints").expect("parses");
        assert_eq!(by_uri.resolve(&ns), Ok(NodeId::new(2, "Mixer.Setpoints")));
        let by_index = ConfigNode::parse("ns=2;s=Mixer.Setpoints").expect("parses");
        assert_eq!(by_index.resolve(&ns), Ok(NodeId::new(2, "Mixer.Setpoints")));
        assert!(
            ConfigNode::parse("nsu=urn:other;i=1")
                .expect("parses")
                .resolve(&ns)
                .is_err()
        );
        assert_eq!(
            ConfigNode::parse("i=85").expect("parses").resolve(&ns),
            Ok(NodeId::new(0, 85u32))
        );
        let setpoints = vec![
            ("recipe".to_owned(), "ns=2;s=Mixer.Setpoints".to_owned()),
            (
                "dosing".to_owned(),
                "nsu=urn:plc;s=Mixer.Setpoints.Dosing".to_owned(),
            ),
            ("speed".to_owned(), "ns=2;i=7".to_owned()),
        ];
        assert_eq!(
            label(
                &setpoints,
                "opcua/value/nsu=urn:plc;s=Mixer.Setpoints.MixSpeed"
            )
            .as_deref(),
            Some("recipe")
        );
        assert_eq!(
            label(
                &setpoints,
                "opcua/value/nsu=urn:plc;s=Mixer.Setpoints.Dosing.Water"
            )
            .as_deref(),
            Some("dosing")
        );
        assert_eq!(
            label(
                &setpoints,
                "opcua/node/nsu=urn:plc;s=Mixer.Setpoints/browse_name"
            )
            .as_deref(),
            Some("recipe")
        );
        assert_eq!(
            label(&setpoints, "opcua/value/nsu=urn:plc;i=7").as_deref(),
            Some("speed")
        );
        assert_eq!(
            label(&setpoints, "opcua/value/nsu=urn:plc;s=Mixer.SetpointsX"),
            None
        );
        assert_eq!(label(&setpoints, "opcua/server/application_uri"), None);
    }
}
