//! Simulated Beckhoff ADS PLC: being written.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What `otdrift sim ads` passes in.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// State file.
    pub state: Option<PathBuf>,
    /// Append every request as JSON lines to this file.
    pub request_log: Option<PathBuf>,
    /// Also accept commands on this TCP address.
    pub control: Option<SocketAddr>,
}

/// Why the simulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Not written yet.
    #[error("the Beckhoff ADS simulator is not part of this build yet")]
    NotYet,
}

/// Runs the simulator until Ctrl-C or SIGTERM.
pub async fn run(_opts: RunOptions) -> Result<(), SimError> {
    Err(SimError::NotYet)
}
