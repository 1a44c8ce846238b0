//! `otdrift sim PROTOCOL`: a simulated PLC for test rigs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;

use crate::cli::SimProtocol;
use crate::exit::{CmdResult, Exit, Failure};

/// Runs a simulator until Ctrl-C or SIGTERM.
pub async fn run(
    protocol: SimProtocol,
    listen: SocketAddr,
    state: Option<PathBuf>,
    request_log: Option<PathBuf>,
    control: Option<SocketAddr>,
) -> CmdResult {
    match protocol {
        SimProtocol::Modbus => {
            otdrift_simulators::modbus::run(otdrift_simulators::modbus::RunOptions {
                listen,
                state,
                request_log,
                control,
            })
            .await
            .map_err(|e| Failure::runtime(anyhow!(e).context("modbus simulator")))?;
        }
    }
    Ok(Exit::Ok)
}
