//! The only requests the Modbus collector can build: the read-only boundary.

use otdrift_config::ModbusTable;
use tokio_modbus::prelude::{ReadCode, Request};

use super::plan::ReadOp;

/// A request the collector may send.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Read {
    /// FC 1, 2, 3 or 4.
    Table(ReadOp),
    /// FC 43 / MEI 14.
    DeviceId { code: ReadCode, object: u8 },
}

impl Read {
    /// The request as errors name it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Read::Table(op) => op.describe(),
            Read::DeviceId { code, object } => format!(
                "Read Device Identification (FC 43/14, read code {}, object 0x{object:02x})",
                code.value()
            ),
        }
    }

    /// The tokio-modbus request. Read functions only: this match is the collector's
    /// read-only boundary.
    pub(crate) fn request(&self) -> Request<'static> {
        match *self {
            Read::Table(op) => match op.table {
                ModbusTable::Holding => Request::ReadHoldingRegisters(op.start, op.count),
                ModbusTable::Input => Request::ReadInputRegisters(op.start, op.count),
                ModbusTable::Coil => Request::ReadCoils(op.start, op.count),
                ModbusTable::Discrete => Request::ReadDiscreteInputs(op.start, op.count),
            },
            Read::DeviceId { code, object } => Request::ReadDeviceIdentification(code, object),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_requests_can_be_built() {
        use tokio_modbus::FunctionCode;
        for table in [
            ModbusTable::Holding,
            ModbusTable::Input,
            ModbusTable::Coil,
            ModbusTable::Discrete,
        ] {
            let read = Read::Table(ReadOp {
                table,
                start: 0,
                count: 1,
            });
            let fc = read.request().function_code();
            assert!(
                matches!(
                    fc,
                    FunctionCode::ReadCoils
                        | FunctionCode::ReadDiscreteInputs
                        | FunctionCode::ReadHoldingRegisters
                        | FunctionCode::ReadInputRegisters
                ),
                "{fc:?}"
            );
        }
        let id = Read::DeviceId {
            code: ReadCode::Basic,
            object: 0,
        };
        assert_eq!(
            id.request().function_code(),
            FunctionCode::EncapsulatedInterfaceTransport
        );
    }
}
