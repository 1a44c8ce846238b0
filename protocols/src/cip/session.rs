//! One EtherNet/IP session over TCP: register, (Large) Forward Open, request/reply.
//!
//! No deadlines here: the collector runs every call under the asset's timeout and drops the
//! session after a timeout, so a late answer can never be taken for the next one.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::{self, CloseParams, OpenParams, Request};
use super::wire::{
    self, CMD_REGISTER_SESSION, CMD_SEND_RR_DATA, CMD_SEND_UNIT_DATA, CMD_UNREGISTER_SESSION,
    Cursor, ENCAP_HEADER_LEN, EncapHeader, MrReply, WireError, bad,
};

/// The message size of unconnected messaging (UCMM), request and reply.
pub(crate) const UNCONNECTED_SIZE: usize = 504;
/// The connection size asked for with Large Forward Open (what Logix v20+ grants).
pub(crate) const LARGE_CONNECTION_SIZE: u16 = 4002;
/// The connection size asked for with the standard Forward Open.
pub(crate) const STANDARD_CONNECTION_SIZE: u16 = 504;

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum SessionError {
    /// The connection broke or closed.
    Io(io::Error),
    /// The answer does not fit the protocol.
    Wire(WireError),
    /// The encapsulation layer refused (non-zero encapsulation status).
    Encapsulation(u32),
}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> Self {
        SessionError::Io(e)
    }
}

impl From<WireError> for SessionError {
    fn from(e: WireError) -> Self {
        SessionError::Wire(e)
    }
}

/// An owned message-router reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// Reply service code.
    pub service: u8,
    /// Status.
    pub status: wire::Status,
    /// Data.
    pub data: Vec<u8>,
}

impl Answer {
    fn from_reply(reply: MrReply<'_>) -> Self {
        Answer {
            service: reply.service,
            status: reply.status,
            data: reply.data.to_vec(),
        }
    }
}

/// An open explicit-messaging connection.
#[derive(Clone, Copy, Debug)]
struct Connection {
    /// O->T connection id (what we address our messages to).
    o_t_id: u32,
    /// T->O connection id (what the target addresses its replies to).
    t_o_id: u32,
    close: CloseParams,
    /// Negotiated connection size.
    size: u16,
    sequence: u16,
}

impl Connection {
    /// Checks the connection id a connected reply carries.
    ///
    /// CIP Vol. 2 has the target address its replies with the T->O id, which Logix does.
    /// Other targets (cpppo) copy the O->T id of the request into the reply. Either id names
    /// *this* connection, as the Forward Open reply granted it, so both are accepted: the
    /// check exists to catch a reply that belongs to another connection (or to nobody), and
    /// any other id still fails, naming both ids it could have been.
    fn check_reply_id(&self, connection: u32) -> Result<(), WireError> {
        if connection == self.t_o_id || connection == self.o_t_id {
            return Ok(());
        }
        Err(bad(format!(
            "connected reply on connection 0x{connection:08x}, ours is 0x{:08x} (T->O) or 0x{:08x} (O->T)",
            self.t_o_id, self.o_t_id
        )))
    }
}

/// One registered session.
pub(crate) struct Session {
    stream: TcpStream,
    handle: u32,
    context: u64,
    connection: Option<Connection>,
    route: Vec<u8>,
    timeout_ms: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("handle", &self.handle)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl Session {
    /// Connects and registers a session.
    pub(crate) async fn open(
        addr: SocketAddr,
        route: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<Session, SessionError> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let mut session = Session {
            stream,
            handle: 0,
            context: 0,
            connection: None,
            route,
            timeout_ms,
        };
        let (header, data) = session
            .exchange(CMD_REGISTER_SESSION, &wire::register_session_data())
            .await?;
        wire::check_register_reply(&data)?;
        if header.session == 0 {
            return Err(bad("RegisterSession answered session handle 0").into());
        }
        session.handle = header.session;
        Ok(session)
    }

    /// The largest message-router request or reply this session can carry.
    pub(crate) fn capacity(&self) -> usize {
        match self.connection {
            Some(c) => usize::from(c.size).saturating_sub(2),
            None => UNCONNECTED_SIZE,
        }
    }

    /// The negotiated connection size, if connected.
    pub(crate) fn connection_size(&self) -> Option<u16> {
        self.connection.map(|c| c.size)
    }

    /// Sends one frame and reads the matching reply frame.
    async fn exchange(
        &mut self,
        command: u16,
        data: &[u8],
    ) -> Result<(EncapHeader, Vec<u8>), SessionError> {
        self.context = self.context.wrapping_add(1);
        let context = self.context.to_le_bytes();
        let frame = wire::encap_frame(command, self.handle, context, data);
        self.stream.write_all(&frame).await?;
        let mut head = [0u8; ENCAP_HEADER_LEN];
        self.stream.read_exact(&mut head).await?;
        let header = EncapHeader::parse(&head)?;
        let mut body = vec![0u8; header.length];
        self.stream.read_exact(&mut body).await?;
        if header.command != command {
            return Err(bad(format!(
                "answer to encapsulation command 0x{command:04x} is command 0x{:04x}",
                header.command
            ))
            .into());
        }
        if header.status != 0 {
            return Err(SessionError::Encapsulation(header.status));
        }
        if self.handle != 0 && header.session != self.handle {
            return Err(bad(format!(
                "answer carries session 0x{:08x}, ours is 0x{:08x}",
                header.session, self.handle
            ))
            .into());
        }
        if command != CMD_SEND_UNIT_DATA && header.context != context {
            return Err(bad("answer does not echo our sender context").into());
        }
        Ok((header, body))
    }

    /// Sends one request (connected when a connection is open and the request is not
    /// connection management, else unconnected with the route) and returns the reply.
    pub(crate) async fn send(&mut self, request: &Request) -> Result<Answer, SessionError> {
        let message = request.encode(&self.route).map_err(WireError)?;
        match self.connection {
            Some(mut c) if !request.is_connection_management() => {
                c.sequence = c.sequence.wrapping_add(1);
                self.connection = Some(c);
                let data = wire::send_unit_data(c.o_t_id, c.sequence, &message);
                let (_, body) = self.exchange(CMD_SEND_UNIT_DATA, &data).await?;
                let (connection, sequence, reply) = wire::unit_data_reply(&body)?;
                c.check_reply_id(connection)?;
                if sequence != c.sequence {
                    return Err(bad(format!(
                        "connected reply has sequence {sequence}, we sent {}",
                        c.sequence
                    ))
                    .into());
                }
                Ok(Answer::from_reply(wire::mr_reply(reply)?))
            }
            _ => {
                // Connection management goes to the local connection manager as is; every
                // other request is routed to the controller by an Unconnected Send.
                let message = if request.is_connection_management() || self.route.is_empty() {
                    message
                } else {
                    request::unconnected_send(&message, &self.route, self.timeout_ms)
                        .map_err(WireError)?
                };
                let data = wire::send_rr_data(&message);
                let (_, body) = self.exchange(CMD_SEND_RR_DATA, &data).await?;
                let reply = wire::rr_data_reply(&body)?;
                Ok(Answer::from_reply(wire::mr_reply(reply)?))
            }
        }
    }

    /// Tries to open an explicit connection; returns the device's answer when it refused
    /// (the session stays usable, unconnected).
    pub(crate) async fn forward_open(
        &mut self,
        large: bool,
        serial: u16,
    ) -> Result<Option<Answer>, SessionError> {
        let params = OpenParams {
            large,
            size: if large {
                LARGE_CONNECTION_SIZE
            } else {
                STANDARD_CONNECTION_SIZE
            },
            serial,
            originator: 0x4F54_4452, // "OTDR"
            t_o_id: 0x4F54_0000 | u32::from(serial),
        };
        let answer = self.send(&Request::ForwardOpen(params)).await?;
        let expected = if large {
            request::LARGE_FORWARD_OPEN
        } else {
            request::FORWARD_OPEN
        } | 0x80;
        if answer.service != expected {
            return Err(bad(format!(
                "Forward Open answered with service 0x{:02x}",
                answer.service
            ))
            .into());
        }
        if !answer.status.is_ok() {
            return Ok(Some(answer));
        }
        let mut c = Cursor::new(&answer.data, "Forward Open reply");
        let o_t_id = c.u32()?;
        let t_o_id = c.u32()?;
        let echoed_serial = c.u16()?;
        let _vendor = c.u16()?;
        let _originator = c.u32()?;
        let _o_t_api = c.u32()?;
        let _t_o_api = c.u32()?;
        let app_words = usize::from(c.u8()?);
        let _reserved = c.u8()?;
        c.take(app_words.saturating_mul(2))?;
        if echoed_serial != serial {
            return Err(bad(format!(
                "Forward Open reply names connection serial {echoed_serial}, we asked for {serial}"
            ))
            .into());
        }
        self.connection = Some(Connection {
            o_t_id,
            t_o_id,
            close: CloseParams {
                serial,
                originator: params.originator,
            },
            size: params.size,
            sequence: 0,
        });
        Ok(None)
    }

    /// Closes the connection (Forward Close) and the session (UnRegisterSession), best
    /// effort: a device that already forgot us is not an error.
    pub(crate) async fn close(mut self) {
        if let Some(c) = self.connection.take() {
            let _ = self.send(&Request::ForwardClose(c.close)).await;
        }
        let frame = wire::encap_frame(CMD_UNREGISTER_SESSION, self.handle, [0; 8], &[]);
        let _ = self.stream.write_all(&frame).await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(o_t_id: u32, t_o_id: u32) -> Connection {
        Connection {
            o_t_id,
            t_o_id,
            close: CloseParams {
                serial: 1,
                originator: 2,
            },
            size: 504,
            sequence: 0,
        }
    }

    #[test]
    fn a_connected_reply_may_name_either_id_of_this_connection_and_no_other() {
        let c = connection(0x5100_0001, 0x4F54_0001);
        // Logix: the T->O id; cpppo: the O->T id it granted.
        assert!(c.check_reply_id(0x4F54_0001).is_ok());
        assert!(c.check_reply_id(0x5100_0001).is_ok());
        for other in [0, 0x5100_0002, 0x4F54_0002, u32::MAX] {
            let e = c
                .check_reply_id(other)
                .expect_err("another connection's reply");
            assert!(e.0.contains(&format!("0x{other:08x}")), "{e}");
            assert!(e.0.contains("0x4f540001 (T->O)"), "{e}");
            assert!(e.0.contains("0x51000001 (O->T)"), "{e}");
        }
    }
}
