//! The simulated PLCs this build carries, as `otdrift sim` lists and starts them: one entry per
//! protocol, run by the one process runner ([`crate::process`]), so that the command line, its
//! help and its defaults come from the simulators themselves and a new simulator adds one line
//! here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

pub use crate::process::RunOptions;
use crate::runtime::Commands;

/// A simulator process's future: it serves until Ctrl-C or SIGTERM, or fails to start
/// (the error rendered, since each protocol has its own state-file error).
pub type Serving = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// One simulated PLC.
pub struct Simulator {
    /// Its name on the command line (`otdrift sim <name>`).
    pub name: &'static str,
    /// One line for the help text.
    pub about: &'static str,
    /// The loopback port it listens on unless told otherwise (unprivileged, so that a test rig
    /// needs no root).
    pub default_port: u16,
    start: fn(RunOptions) -> Serving,
}

impl Simulator {
    /// The entry of simulator `Sim`, under its protocol name.
    pub const fn of<Sim: Commands>(about: &'static str, default_port: u16) -> Self {
        Simulator {
            name: Sim::NAME,
            about,
            default_port,
            start: start::<Sim>,
        }
    }

    /// Where it listens unless told otherwise: loopback, [`Simulator::default_port`].
    pub fn default_listen(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.default_port))
    }

    /// Runs the simulator as a process until Ctrl-C or SIGTERM (see [`crate::process`]): the
    /// state file or the built-in demo, request log, ready lines, stdin and control-port
    /// commands. It fails before the ready line when the state cannot be loaded, an address
    /// cannot be bound, the log file cannot be opened or stdout is closed.
    pub fn run(&self, opts: RunOptions) -> Serving {
        (self.start)(opts)
    }
}

fn start<Sim: Commands>(opts: RunOptions) -> Serving {
    Box::pin(async move {
        crate::process::run::<Sim>(opts)
            .await
            .map_err(|e| e.to_string())
    })
}

/// Every simulator compiled into this build, in the order the help lists them.
pub const SIMULATORS: &[Simulator] = &[
    #[cfg(feature = "s7")]
    Simulator::of::<crate::s7::S7Simulator>("Siemens S7 (S7comm on ISO-on-TCP)", 1102),
    #[cfg(feature = "ads")]
    Simulator::of::<crate::ads::AdsSimulator>("Beckhoff ADS (AMS/TCP)", 48898),
    #[cfg(feature = "cip")]
    Simulator::of::<crate::cip::CipSimulator>("Allen-Bradley Logix (EtherNet/IP CIP)", 44818),
    Simulator::of::<crate::modbus::ModbusSimulator>("Modbus TCP", 5020),
    #[cfg(feature = "opcua")]
    Simulator::of::<crate::opcua::OpcuaSimulator>("OPC UA (opc.tcp)", 4840),
];

/// The simulator called `name`, when this build carries it.
pub fn simulator(name: &str) -> Option<&'static Simulator> {
    SIMULATORS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_are_unique() {
        for (i, a) in SIMULATORS.iter().enumerate() {
            for b in &SIMULATORS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.default_port, b.default_port);
            }
            assert_eq!(simulator(a.name).map(|s| s.name), Some(a.name));
        }
        assert!(simulator("profinet").is_none());
    }
}
