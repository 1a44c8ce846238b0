//! The simulated PLCs this build carries, as `otdrift sim` lists and starts them: one entry per
//! protocol module (its `SIMULATOR`), so that the command line, its help and its defaults come
//! from the simulators themselves and a new simulator adds one line here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::process::RunOptions;

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
    /// An entry: `start` runs the protocol's `run` with these options.
    pub const fn new(
        name: &'static str,
        about: &'static str,
        default_port: u16,
        start: fn(RunOptions) -> Serving,
    ) -> Self {
        Simulator {
            name,
            about,
            default_port,
            start,
        }
    }

    /// Where it listens unless told otherwise: loopback, [`Simulator::default_port`].
    pub fn default_listen(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.default_port))
    }

    /// Runs the simulator process (see [`crate::process`]).
    pub fn run(&self, opts: RunOptions) -> Serving {
        (self.start)(opts)
    }
}

/// Every simulator compiled into this build, in the order the help lists them.
pub const SIMULATORS: &[Simulator] = &[
    #[cfg(feature = "s7")]
    crate::s7::SIMULATOR,
    #[cfg(feature = "ads")]
    crate::ads::SIMULATOR,
    #[cfg(feature = "cip")]
    crate::cip::SIMULATOR,
    crate::modbus::SIMULATOR,
    #[cfg(feature = "opcua")]
    crate::opcua::SIMULATOR,
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
