//! One AMS/TCP connection: sends a [`Request`], reads exactly one bounded answer.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{
    AMS_HEADER, AMS_TCP_PREFIX, AmsAddr, Answer, Request, check_answer, parse_prefix,
};

/// AMS/TCP frames with a non-zero reserved word are router messages (port open/close, "router
/// state changed"); they are skipped, but only this many in a row and only this small.
const MAX_ROUTER_FRAMES: usize = 4;
const MAX_ROUTER_FRAME: u32 = 1024;

/// Why a call failed below the ADS level.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The connection broke (or closed).
    Io(io::Error),
    /// The answer does not fit the request; the stream can no longer be trusted.
    Malformed(String),
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> Self {
        CallError::Io(e)
    }
}

/// An open connection to one ADS device.
pub(crate) struct Connection {
    stream: TcpStream,
    pub target: AmsAddr,
    pub source: AmsAddr,
    invoke_id: u32,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, target: AmsAddr, source: AmsAddr) -> Self {
        Connection {
            stream,
            target,
            source,
            invoke_id: 0,
        }
    }

    /// Sends `request` and returns its checked answer. Not cancellation-safe: after a
    /// timeout the caller drops the connection.
    pub(crate) async fn call(&mut self, request: &Request) -> Result<Answer, CallError> {
        self.invoke_id = self.invoke_id.wrapping_add(1);
        let frame = request.encode(self.target, self.source, self.invoke_id);
        self.stream.write_all(&frame).await?;
        let max_body = AMS_HEADER.saturating_add(request.max_answer_data());
        let mut router_frames = 0usize;
        loop {
            let mut prefix = [0u8; AMS_TCP_PREFIX];
            self.stream.read_exact(&mut prefix).await?;
            let (reserved, length) = parse_prefix(prefix);
            if reserved != 0 {
                router_frames += 1;
                if router_frames > MAX_ROUTER_FRAMES || length > MAX_ROUTER_FRAME {
                    return Err(CallError::Malformed(format!(
                        "AMS/TCP frame with reserved word 0x{reserved:04X} and {length} bytes instead of an ADS answer"
                    )));
                }
                let mut skip = vec![0u8; length as usize];
                self.stream.read_exact(&mut skip).await?;
                continue;
            }
            let length = length as usize;
            if length < AMS_HEADER {
                return Err(CallError::Malformed(format!(
                    "AMS/TCP length {length} is shorter than the {AMS_HEADER}-byte AMS header"
                )));
            }
            if length > max_body {
                return Err(CallError::Malformed(format!(
                    "answer announces {length} bytes; at most {max_body} fit this request"
                )));
            }
            let mut body = vec![0u8; length];
            self.stream.read_exact(&mut body).await?;
            return check_answer(&body, request, self.target, self.source, self.invoke_id)
                .map_err(CallError::Malformed);
        }
    }

    /// Closes the connection politely.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stream.shutdown().await;
    }
}
