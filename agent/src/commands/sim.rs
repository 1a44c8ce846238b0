//! `otdrift sim PROTOCOL`: a simulated PLC for test rigs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;

use crate::cli::SimProtocol;
use crate::exit::{CmdResult, Exit, Failure};

/// Runs a simulator until Ctrl-C or SIGTERM.
pub async fn run(
    protocol: SimProtocol,
    listen: Option<SocketAddr>,
    state: Option<PathBuf>,
    request_log: Option<PathBuf>,
    control: Option<SocketAddr>,
) -> CmdResult {
    let listen = listen.unwrap_or_else(|| protocol.default_listen());
    let fail =
        |what: &str, e: &dyn std::fmt::Display| Failure::runtime(anyhow!("{what} simulator: {e}"));
    match protocol {
        SimProtocol::Modbus => {
            otdrift_simulators::modbus::run(otdrift_simulators::modbus::RunOptions {
                listen,
                state,
                request_log,
                control,
            })
            .await
            .map_err(|e| fail("modbus", &e))?;
        }
        #[cfg(feature = "s7")]
        SimProtocol::S7 => {
            otdrift_simulators::s7::run(otdrift_simulators::s7::RunOptions {
                listen,
                state,
                request_log,
                control,
            })
            .await
            .map_err(|e| fail("s7", &e))?;
        }
        #[cfg(feature = "ads")]
        SimProtocol::Ads => {
            otdrift_simulators::ads::run(otdrift_simulators::ads::RunOptions {
                listen,
                state,
                request_log,
                control,
            })
            .await
            .map_err(|e| fail("ads", &e))?;
        }
        #[cfg(feature = "cip")]
        SimProtocol::Cip => {
            otdrift_simulators::cip::run(otdrift_simulators::cip::RunOptions {
                listen,
                state,
                request_log,
                control,
            })
            .await
            .map_err(|e| fail("cip", &e))?;
        }
        #[cfg(feature = "opcua")]
        SimProtocol::Opcua => {
            otdrift_simulators::opcua::run(otdrift_simulators::opcua::RunOptions {
                listen,
                state,
                request_log,
                control,
            })
            .await
            .map_err(|e| fail("opcua", &e))?;
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(Failure::usage(anyhow!(
                "the {other:?} simulator is not part of this otdrift build"
            )));
        }
    }
    Ok(Exit::Ok)
}
