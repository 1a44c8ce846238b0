//! Error types: every problem in a config file becomes one [`ConfigError`] that an operator can
//! find in the file (file, line, column, key); [`ConfigErrors`] carries all of them at once.

use std::fmt;
use std::path::PathBuf;

/// Every problem found in one config file, sorted by position, so an operator can fix them
/// all in one edit instead of one restart per mistake.
///
/// `Display` writes one error per line, in the form of [`ConfigError`]'s `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// True when no error is held; lets callers treat an empty list as success.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many errors were found, for summaries like "3 errors in otdrift.toml".
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Walks the errors without reaching into the public field.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One problem, located so an operator can jump to it in an editor.
///
/// `Display` is `{file}:{line}:{column}: {key}: {message}`, the form editors and CI logs
/// recognise. When there is no position (`line == 0`, I/O errors) the `:{line}:{column}` part is
/// left out, and when there is no key (I/O errors, some syntax errors) the `{key}: ` part is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, as given to [`crate::load`] / [`crate::parse`].
    pub file: PathBuf,
    /// 1-based line; 0 when the error has no position (I/O).
    pub line: usize,
    /// 1-based column, counted in characters (not bytes); 0 when `line` is 0.
    pub column: usize,
    /// Path of the offending key, e.g. `asset[2].setpoints[0].table` (indexes are 0-based in
    /// order of appearance); empty when no key applies.
    pub key: String,
    /// Machine-readable class, so callers and tests need not match on message text.
    pub kind: ConfigErrorKind,
    /// Human explanation, saying what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Class of a [`ConfigError`], so programs (and tests) can react without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A key no section (and no protocol) knows; usually a typo.
    UnknownKey,
    /// A required key or table is absent.
    MissingKey,
    /// A value has the wrong type, is out of range or malformed.
    InvalidValue,
    /// `protocol` is not one otdrift speaks.
    BadProtocol,
    /// An asset's `address` cannot be a target for its protocol.
    BadAddress,
    /// An id (asset, approver) or setpoint name is used twice.
    DuplicateId,
    /// A key that belongs to another protocol than the asset's.
    WrongProtocolKey,
    /// A `schedule` the cron scheduler would reject.
    BadCron,
}

impl ConfigErrorKind {
    /// Stable lower-case name, for JSON output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigErrorKind::Io => "io",
            ConfigErrorKind::Syntax => "syntax",
            ConfigErrorKind::UnknownKey => "unknown_key",
            ConfigErrorKind::MissingKey => "missing_key",
            ConfigErrorKind::InvalidValue => "invalid_value",
            ConfigErrorKind::BadProtocol => "bad_protocol",
            ConfigErrorKind::BadAddress => "bad_address",
            ConfigErrorKind::DuplicateId => "duplicate_id",
            ConfigErrorKind::WrongProtocolKey => "wrong_protocol_key",
            ConfigErrorKind::BadCron => "bad_cron",
        }
    }
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
