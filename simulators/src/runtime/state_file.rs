//! State files, the same for every simulator: read from disk, parsed as TOML (unknown keys
//! refused, so typos do not go unnoticed), checked by the protocol.

use std::path::{Path, PathBuf};

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not have the expected shape (unknown keys are
    /// refused so that typos do not go unnoticed).
    #[error("invalid state file: {0}")]
    Toml(#[from] toml::de::Error),
    /// The TOML is well-formed but describes an impossible device (a block twice, a value out
    /// of range, a name that does not resolve).
    #[error("invalid state file: {0}")]
    Invalid(String),
}

/// A state file that describes an impossible device, and why.
pub(crate) fn invalid(text: impl Into<String>) -> StateError {
    StateError::Invalid(text.into())
}

/// Reads `path` and parses it with the protocol's `from_toml`.
///
/// # Errors
/// [`StateError::Io`] if the file cannot be read, else what `from_toml` says.
pub(crate) fn load<T>(
    path: &Path,
    from_toml: impl FnOnce(&str) -> Result<T, StateError>,
) -> Result<T, StateError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_toml(&text)
}
