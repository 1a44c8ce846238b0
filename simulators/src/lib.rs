//! Simulated PLCs for otdrift's tests, `otdrift demo` and test rigs.
//!
//! otdrift reads PLC state read-only, hashes it and detects drift. To prove
//! that it works (and that it never writes) it is run against simulated
//! devices that behave like real ones: state from a file, mutations while
//! running (to create drift on demand), quirks (to exercise error handling)
//! and a log of every request received.
//!
//! - [`modbus`]: a Modbus TCP device ([`modbus::ModbusSimulator`],
//!   `otdrift sim modbus` through the [`registry`]).
//! - [`registry`]: the simulators this build carries, for `otdrift sim`.
//! - [`request_log`]: the protocol-neutral request log all simulators share.
//! - [`control`]: the line-based command channel all simulators share.
//! - [`runtime`]: what every simulator is built on: shared state, the handle, quirks and the
//!   shared verbs (`help`, `tick`, `quirk`, `log`); a protocol supplies its services and its
//!   own commands.

#[cfg(feature = "ads")]
pub mod ads;
#[cfg(feature = "cip")]
pub mod cip;
pub mod control;
pub mod modbus;
#[cfg(feature = "opcua")]
pub mod opcua;
pub mod process;
pub mod registry;
pub mod request_log;
pub mod runtime;
#[cfg(feature = "s7")]
pub mod s7;
mod tasks;

pub use modbus::{ModbusSimHandle, ModbusSimulator, ModbusState};
pub use registry::{SIMULATORS, Simulator, simulator};
pub use request_log::{LoggedRequest, RequestLog};
