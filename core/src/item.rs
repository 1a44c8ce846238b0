//! Items: one captured fact about a controller.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::encoding;
use crate::value::Value;

/// The longest item path accepted, in bytes. Paths are built from names a device reports, so
/// they are bounded like any other device data.
pub const MAX_PATH_LEN: usize = 4096;

/// What kind of state an item belongs to. The class decides a drift's severity (identity,
/// program and history changes rank above setpoint changes) and whether an item is *content*
/// (what a change delivers: program and setpoint items) or a *device fact* (identity and
/// history: what makes this controller this controller, and what happened to it). The change
/// signature covers content only, so a change staged on a spare controller has the same change
/// signature there as on production.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Who the controller is: vendor, model, serial number, firmware.
    Identity,
    /// What it runs: blocks and their checksums, symbols, tags, types.
    Program,
    /// The configured parameter areas an operator names in the config.
    Setpoint,
    /// The controller's own record of what happened to it: change counters, audit values,
    /// download times. Two controllers running the same program never share it.
    History,
}

impl Class {
    /// Every class, in the order the encoding numbers them.
    pub const ALL: [Class; 4] = [
        Class::Identity,
        Class::Program,
        Class::Setpoint,
        Class::History,
    ];

    /// Whether the class is content (program, setpoint), as opposed to device facts and
    /// history (identity, history).
    pub const fn is_content(self) -> bool {
        matches!(self, Class::Program | Class::Setpoint)
    }

    /// The class's name as written in paths, JSON and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Identity => "identity",
            Class::Program => "program",
            Class::Setpoint => "setpoint",
            Class::History => "history",
        }
    }

    /// The class's byte in the canonical encoding.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Class::Identity => 1,
            Class::Program => 2,
            Class::Setpoint => 3,
            Class::History => 4,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Class::Identity),
            2 => Some(Class::Program),
            3 => Some(Class::Setpoint),
            4 => Some(Class::History),
            _ => None,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Class {
    type Err = ItemError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "identity" => Ok(Class::Identity),
            "program" => Ok(Class::Program),
            "setpoint" => Ok(Class::Setpoint),
            "history" => Ok(Class::History),
            other => Err(ItemError::UnknownClass(other.to_owned())),
        }
    }
}

/// Whether an item path matches a pattern: the exact path, or, for a pattern ending in `*`,
/// every path that starts with what comes before the `*` (`s7/db10/*`). Used by the config's
/// `safety` patterns and by approval envelopes.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// Why an item could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// Paths identify items; an empty one identifies nothing.
    #[error("an item path must not be empty")]
    EmptyPath,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("item path is {0} bytes long, the limit is {MAX_PATH_LEN}")]
    PathTooLong(usize),
    /// A class name other than identity, program or setpoint.
    #[error("unknown item class {0:?} (expected identity, program or setpoint)")]
    UnknownClass(String),
}

/// One captured fact: a path unique within the asset, its class and its typed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    path: String,
    class: Class,
    value: Value,
}

impl Item {
    /// Makes an item, checking the path (devices name things; names are bounded).
    pub fn new(path: impl Into<String>, class: Class, value: Value) -> Result<Self, ItemError> {
        let path = path.into();
        if path.is_empty() {
            return Err(ItemError::EmptyPath);
        }
        if path.len() > MAX_PATH_LEN {
            return Err(ItemError::PathTooLong(path.len()));
        }
        Ok(Item { path, class, value })
    }

    /// The item's path, e.g. `modbus/holding/40`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The item's class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// The item's value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The item's canonical bytes (see [`crate::encoding`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encoding::write_item(&mut out, self);
        out
    }

    /// BLAKE3 of the item's canonical bytes: lets two captures be compared item by item
    /// without decoding values.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.encode())
    }
}
