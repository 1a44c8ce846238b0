//! `otdrift sim PROTOCOL`: a simulated PLC for test rigs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::ValueEnum;

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
    let opts = otdrift_simulators::process::RunOptions {
        listen,
        state,
        request_log,
        control,
    };
    let served = match protocol {
        SimProtocol::Modbus => otdrift_simulators::modbus::run(opts)
            .await
            .map_err(|e| e.to_string()),
        #[cfg(feature = "s7")]
        SimProtocol::S7 => otdrift_simulators::s7::run(opts)
            .await
            .map_err(|e| e.to_string()),
        #[cfg(feature = "ads")]
        SimProtocol::Ads => otdrift_simulators::ads::run(opts)
            .await
            .map_err(|e| e.to_string()),
        #[cfg(feature = "cip")]
        SimProtocol::Cip => otdrift_simulators::cip::run(opts)
            .await
            .map_err(|e| e.to_string()),
        #[cfg(feature = "opcua")]
        SimProtocol::Opcua => otdrift_simulators::opcua::run(opts)
            .await
            .map_err(|e| e.to_string()),
        #[allow(unreachable_patterns)]
        other => {
            return Err(Failure::usage(anyhow!(
                "the {other:?} simulator is not part of this otdrift build"
            )));
        }
    };
    served.map_err(|e| {
        let name = protocol
            .to_possible_value()
            .map_or_else(|| format!("{protocol:?}"), |v| v.get_name().to_owned());
        Failure::runtime(anyhow!("{name} simulator: {e}"))
    })?;
    Ok(Exit::Ok)
}
