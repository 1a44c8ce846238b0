//! `otdrift sim PROTOCOL`: a simulated PLC for test rigs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;

use crate::exit::{CmdResult, Exit, Failure};

/// Runs a simulator until Ctrl-C or SIGTERM.
pub async fn run(
    protocol: String,
    listen: Option<SocketAddr>,
    state: Option<PathBuf>,
    request_log: Option<PathBuf>,
    control: Option<SocketAddr>,
) -> CmdResult {
    // clap accepts only the registry's names; a name it let through but the registry lacks
    // would be a bug, reported as a usage error rather than a panic.
    let sim = otdrift_simulators::simulator(&protocol).ok_or_else(|| {
        Failure::usage(anyhow!(
            "the {protocol} simulator is not part of this otdrift build"
        ))
    })?;
    let opts = otdrift_simulators::process::RunOptions {
        listen: listen.unwrap_or_else(|| sim.default_listen()),
        state,
        request_log,
        control,
    };
    sim.run(opts)
        .await
        .map_err(|e| Failure::runtime(anyhow!("{protocol} simulator: {e}")))?;
    Ok(Exit::Ok)
}
