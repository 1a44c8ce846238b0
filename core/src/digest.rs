//! BLAKE3 digests in their one textual form, `blake3:<64 lowercase hex>`.
//!
//! Digests travel through approval tokens, events, evidence packs and the command line, where
//! they are compared as strings by other systems. Only one spelling is accepted so that two
//! systems can never disagree about whether two digests are equal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The textual prefix of every digest; it names the hash so that a later algorithm can be
/// told apart without guessing from the length.
pub const DIGEST_PREFIX: &str = "blake3:";

/// A 32-byte BLAKE3 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Hashes `bytes` with plain (unkeyed) BLAKE3, so that anyone can recompute the digest of a
    /// canonical encoding with a stock tool such as `b3sum`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps raw hash bytes, e.g. when read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The raw hash bytes, for chaining into further hashes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The lowercase hex of the hash without the prefix.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// A short form (`blake3:` and the first 12 hex digits) for tables meant for people; never
    /// used where a digest is compared.
    pub fn short(&self) -> String {
        let hex = self.hex();
        format!("{DIGEST_PREFIX}{}", &hex[..12])
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DIGEST_PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The text does not start with `blake3:`.
    #[error("a digest starts with \"blake3:\"")]
    MissingPrefix,
    /// The hex part has the wrong length.
    #[error("a digest has 64 hex digits after \"blake3:\", this one has {0}")]
    Length(usize),
    /// The hex part holds something other than lowercase hex digits.
    #[error("a digest's hex digits are lowercase 0-9a-f")]
    NotLowercaseHex,
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix(DIGEST_PREFIX)
            .ok_or(DigestParseError::MissingPrefix)?;
        if hex.len() != 64 {
            return Err(DigestParseError::Length(hex.len()));
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let hi = nibble(pair[0]).ok_or(DigestParseError::NotLowercaseHex)?;
            let lo = nibble(pair[1]).ok_or(DigestParseError::NotLowercaseHex)?;
            *slot = (hi << 4) | lo;
        }
        Ok(Digest(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let d = Digest::of(b"otdrift");
        let text = d.to_string();
        assert!(text.starts_with("blake3:"));
        assert_eq!(text.len(), 7 + 64);
        assert_eq!(text.parse::<Digest>(), Ok(d));
    }

    #[test]
    fn only_one_spelling_is_accepted() {
        let d = Digest::of(b"x").to_string();
        assert_eq!(
            d.to_uppercase().parse::<Digest>(),
            Err(DigestParseError::MissingPrefix)
        );
        let upper_hex = format!("blake3:{}", d[7..].to_uppercase());
        assert_eq!(
            upper_hex.parse::<Digest>(),
            Err(DigestParseError::NotLowercaseHex)
        );
        assert_eq!(
            "blake3:abcd".parse::<Digest>(),
            Err(DigestParseError::Length(4))
        );
        assert_eq!(
            format!("sha256:{}", &d[7..]).parse::<Digest>(),
            Err(DigestParseError::MissingPrefix)
        );
    }

    #[test]
    fn matches_the_reference_blake3() {
        // BLAKE3 of the empty input, from the BLAKE3 reference test vectors.
        assert_eq!(
            Digest::of(b"").to_string(),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
