//! Strict JSON for signed documents (approval tokens, evidence packs, reports).
//!
//! RFC 8259 only says member names *should* be unique, and parsers disagree on duplicates:
//! serde_json keeps the last, many others the first. A document signed once and read by two
//! parsers could then say two different things (a token whose `to` the agent applied is not the
//! `to` an auditor's tool shows). So signed documents are parsed here, and a member name that
//! appears twice in one object, also when the two differ only by escapes (`"k\u0069d"` and
//! `"kid"` are the same name once unescaped), is an error naming it.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

/// Why a document is not strict JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    /// A member name appears twice in one object.
    #[error("the member {0:?} appears more than once in one object")]
    DuplicateMember(String),
    /// Not JSON at all (or nested beyond serde_json's limit of 128 levels).
    #[error("{0}")]
    Syntax(String),
}

/// Marks the error message of a duplicate, so it survives serde_json's error type.
const DUPLICATE: &str = "\u{0}otdrift-duplicate-member\u{0}";

struct Strict(Json);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = Map::new();
        // The keys arrive unescaped, so escaped spellings of one name collide here.
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{key}{DUPLICATE}")));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Json::Object(out))
    }
}

/// Parses `bytes` as one JSON document, refusing duplicate member names at any depth.
pub fn parse(bytes: &[u8]) -> Result<Json, StrictJsonError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(v)) => Ok(v),
        Err(e) => {
            let text = e.to_string();
            match text.split(DUPLICATE).nth(1) {
                Some(name) => Err(StrictJsonError::DuplicateMember(name.to_owned())),
                None => Err(StrictJsonError::Syntax(text)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_every_depth_and_spelling() {
        for doc in [
            r#"{"kid":"a","kid":"b"}"#,
            r#"{"k\u0069d":"a","kid":"b"}"#,
            r#"{"x":{"to":1,"t\u006f":2}}"#,
            r#"{"x":[{"a":1},{"a":1,"a":1}]}"#,
            r#"{"\ud83d\ude00":1,"😀":2}"#,
        ] {
            assert!(
                matches!(
                    parse(doc.as_bytes()),
                    Err(StrictJsonError::DuplicateMember(_))
                ),
                "{doc}"
            );
        }
        assert_eq!(
            parse(br#"{"k\u0069d":"a","kid":"b"}"#),
            Err(StrictJsonError::DuplicateMember("kid".to_owned()))
        );
    }

    #[test]
    fn ordinary_documents_parse_as_serde_json_does() {
        let doc = r#"{"a":[1,2.5,-3,"x",null,true],"b":{"c":{}},"d":18446744073709551615}"#;
        assert_eq!(
            parse(doc.as_bytes()).expect("valid"),
            serde_json::from_str::<Json>(doc).expect("valid")
        );
        // The same name in sibling objects is not a duplicate.
        assert!(parse(br#"{"a":{"k":1},"b":{"k":2}}"#).is_ok());
        assert!(matches!(parse(b"{"), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse(b"{} {}"), Err(StrictJsonError::Syntax(_))));
    }
}
