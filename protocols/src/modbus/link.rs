//! Modbus TCP transport, on tokio-modbus's client.

use std::io;

use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::{ExceptionCode, Response, Slave};

use super::request::Read;
use crate::driver::{Dial, Failure, Link};

/// The largest Modbus PDU (function code and data).
const MAX_PDU: usize = 253;

/// How to reach one Modbus device.
#[derive(Debug)]
pub(crate) struct ModbusLink {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) unit_id: u8,
}

impl Link for ModbusLink {
    type Conn = Context;
    type Request = Read;
    /// The device's answer, or its exception.
    type Answer = Result<Response, ExceptionCode>;

    async fn connect(&mut self, dial: &mut Dial<'_>) -> Result<Context, crate::CollectError> {
        let stream = dial.tcp(&self.host, self.port).await?;
        Ok(tokio_modbus::client::tcp::attach_slave(
            stream,
            Slave(self.unit_id),
        ))
    }

    async fn exchange(&self, conn: &mut Context, read: &Read) -> Result<Self::Answer, Failure> {
        match conn.call(read.request()).await {
            Ok(answer) => Ok(answer),
            // tokio-modbus's decoder refused the frame: the device sent garbage.
            Err(tokio_modbus::Error::Transport(e)) if e.kind() == io::ErrorKind::InvalidData => {
                Err(Failure::Malformed(e.to_string()))
            }
            // Devices drop idle clients: a pooled connection fails on first use.
            Err(tokio_modbus::Error::Transport(e)) => Err(Failure::Lost(e)),
            // Mismatched transaction id or function code: the stream is out of step.
            Err(tokio_modbus::Error::Protocol(e)) => Err(Failure::Malformed(e.to_string())),
        }
    }

    fn describe(&self, read: &Read) -> String {
        read.describe()
    }

    fn size(&self, answer: &Self::Answer) -> usize {
        match answer {
            Ok(Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits)) => bits.len(),
            Ok(Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words)) => {
                words.len().saturating_mul(2)
            }
            // Identification, or anything else: at most one PDU.
            Ok(_) => MAX_PDU,
            Err(_) => 1,
        }
    }

    fn timeout_hint(&self, read: &Read) -> &'static str {
        match read {
            Read::DeviceId { .. } => {
                "; if this device does not implement FC 43, set device_id = false for this asset"
            }
            Read::Table(_) => "",
        }
    }

    async fn close(&self, mut conn: Context) {
        let _ = conn.disconnect().await;
    }
}
