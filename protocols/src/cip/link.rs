//! EtherNet/IP transport: one registered session over TCP with its explicit connection
//! (Large Forward Open, Forward Open, or none), one message-router request and reply at a
//! time; and the services over it (refusals judged, Multiple Service Packet packing).
//!
//! No deadlines here: the driver runs every exchange under the asset's timeout and drops the
//! session after a timeout, so a late answer can never be taken for the next one.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BUSY;
use super::request::{self, CloseParams, OpenParams, Request, request_service};
use super::wire::{
    self, CMD_REGISTER_SESSION, CMD_SEND_RR_DATA, CMD_SEND_UNIT_DATA, CMD_UNREGISTER_SESSION,
    Cursor, ENCAP_HEADER_LEN, EncapHeader, MrReply, Status, WireError, bad, encap_status,
};
use crate::driver::{Dial, Driver, Failure, Link, Verdict};
use crate::{CollectError, Scope};

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

/// What a request got back: a message-router reply, or a refusal at the encapsulation layer
/// (non-zero encapsulation status, no CIP reply at all; the device may close the session
/// after it, as cpppo does).
#[derive(Debug)]
pub(crate) enum Reply {
    /// The controller's reply (which may be a refusal).
    Answer(Answer),
    /// The encapsulation status.
    Encapsulation(u32),
}

/// Whether `answer` is the connection manager's "routing failed" reply to `request`
/// (Unconnected Send's reply service; Read Tag Fragmented shares its code).
fn routing_failed(request: &Request, answer: &Answer) -> bool {
    answer.service == request::UNCONNECTED_SEND | 0x80
        && request_service(request) != request::READ_TAG_FRAGMENTED
}

/// A failure below the CIP reply as the capture's error.
pub(crate) fn session_error(scope: &Scope, request: &str, e: SessionError) -> CollectError {
    match e {
        SessionError::Io(source) => scope.transport(request, source),
        SessionError::Wire(w) => scope.malformed(request, w),
        SessionError::Encapsulation(status) => scope.refused(
            request,
            format!(
                "encapsulation status 0x{status:08x} ({})",
                encap_status(status)
            ),
        ),
    }
}

/// How to reach one Logix controller, and what the collector learnt of it across sessions.
#[derive(Debug)]
pub(crate) struct CipLink {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The route from the address to the controller.
    pub(crate) route: Vec<u8>,
    /// Learned: the controller answers Large Forward Open.
    pub(crate) large_open: bool,
    pub(crate) connection_serial: u16,
    /// The explicit connection of the last session opened, as the runtime shows it.
    pub(crate) connection: Option<String>,
    /// Learned: the controller answers Multiple Service Packet.
    pub(crate) multi_service: bool,
    /// Learned: the most services the controller accepts in one Multiple Service Packet.
    pub(crate) max_batch: usize,
    /// Why Multiple Service Packet is not used, once it was given up.
    pub(crate) msp_note: Option<String>,
}

impl Link for CipLink {
    type Conn = Session;
    type Request = Request;
    type Answer = Reply;

    /// Connects, registers a session and opens the explicit connection (Large Forward
    /// Open, then Forward Open, then none).
    async fn connect(&mut self, dial: &mut Dial<'_>) -> Result<Session, CollectError> {
        let addrs = dial.resolve(&self.host, self.port).await?;
        let mut last = Dial::no_address(&self.host);
        let mut session = None;
        let timeout_ms = dial.timeout_ms();
        for addr in addrs {
            let opened = Session::open(addr, self.route.clone(), timeout_ms);
            match dial.step("connect and RegisterSession", "", opened).await? {
                Ok(s) => {
                    session = Some(s);
                    break;
                }
                Err(SessionError::Io(e)) => last = e,
                Err(e) => return Err(session_error(dial.scope(), "RegisterSession", e)),
            }
        }
        let Some(mut session) = session else {
            return Err(dial.scope().connect(last));
        };
        for large in [true, false] {
            if large && !self.large_open {
                continue;
            }
            self.connection_serial = self.connection_serial.wrapping_add(1).max(1);
            let what = if large {
                "Large Forward Open (0x5B)"
            } else {
                "Forward Open (0x54)"
            };
            let opened = session.forward_open(large, self.connection_serial);
            match dial.step(what, "", opened).await? {
                Err(e) => return Err(session_error(dial.scope(), what, e)),
                Ok(None) => break,
                Ok(Some(refusal)) => {
                    tracing::debug!(status = %refusal.status, what, "forward open refused");
                    if large && refusal.status.general == 0x08 {
                        // Firmware without Large Forward Open (before v20): never ask again.
                        self.large_open = false;
                    }
                }
            }
        }
        self.connection = Some(match session.connection_size() {
            Some(size) if size > 511 => format!("Large Forward Open, {size} bytes"),
            Some(size) => format!("Forward Open, {size} bytes"),
            None => format!("unconnected, {UNCONNECTED_SIZE} bytes"),
        });
        Ok(session)
    }

    async fn exchange(&self, session: &mut Session, request: &Request) -> Result<Reply, Failure> {
        match session.send(request).await {
            Ok(answer) => {
                let expected = request_service(request) | 0x80;
                if answer.service != expected
                    && answer.status.is_ok()
                    && !routing_failed(request, &answer)
                {
                    return Err(Failure::Malformed(format!(
                        "reply service 0x{:02x}, expected 0x{expected:02x}",
                        answer.service
                    )));
                }
                Ok(Reply::Answer(answer))
            }
            // A pooled session the controller dropped since the last capture fails on first
            // use.
            Err(SessionError::Io(e)) => Err(Failure::Lost(e)),
            Err(SessionError::Wire(e)) => Err(Failure::Malformed(e.0)),
            Err(SessionError::Encapsulation(status)) => Ok(Reply::Encapsulation(status)),
        }
    }

    fn describe(&self, request: &Request) -> String {
        request.describe()
    }

    fn size(&self, reply: &Reply) -> usize {
        match reply {
            Reply::Answer(answer) => answer.data.len(),
            Reply::Encapsulation(_) => 4,
        }
    }

    fn judge(&self, reply: &Reply) -> Verdict {
        match reply {
            // The device may close the session after it (cpppo does).
            Reply::Encapsulation(_) => Verdict::Close,
            // 0x01/0x0107: the controller no longer knows our connection (it timed out while
            // we were idle): same as a dropped session.
            Reply::Answer(a)
                if a.status.general == 0x01 && a.status.extended.first() == Some(&0x0107) =>
            {
                Verdict::Stale
            }
            Reply::Answer(_) => Verdict::Keep,
        }
    }

    async fn close(&self, session: Session) {
        session.close().await;
    }
}

/// The CIP services over the driver.
impl Driver<CipLink> {
    /// The largest request or reply the open session carries.
    pub(crate) fn capacity(&self) -> usize {
        self.conn().map_or(UNCONNECTED_SIZE, Session::capacity)
    }

    /// The error for a request the controller answered with a non-success `status`:
    /// [`ErrorKind::Busy`](crate::ErrorKind::Busy) for general status 0x02 (resource
    /// unavailable), the only status that means "later"; otherwise a refusal, `why` saying what
    /// the refusal means here (a contradiction with the tag list, a must-have object).
    pub(crate) fn refusal(&self, request: &str, why: &str, status: &Status) -> CollectError {
        if status.general == BUSY {
            self.scope().busy(request, status)
        } else {
            self.scope().refused(request, format!("{why} ({status})"))
        }
    }

    /// Sends one request and returns the controller's answer (which may be a refusal).
    pub(crate) async fn call(&mut self, request: &Request) -> Result<Answer, CollectError> {
        match self.call_or_encapsulation(request).await? {
            Ok(answer) => Ok(answer),
            Err(status) => Err(session_error(
                self.scope(),
                &request.describe(),
                SessionError::Encapsulation(status),
            )),
        }
    }

    /// [`Self::call`], except that an answer refused at the encapsulation layer comes back as
    /// `Ok(Err(status))` for the caller to judge (the session is dropped).
    pub(crate) async fn call_or_encapsulation(
        &mut self,
        request: &Request,
    ) -> Result<Result<Answer, u32>, CollectError> {
        match self.exchange(request).await? {
            Reply::Encapsulation(status) => Ok(Err(status)),
            Reply::Answer(answer) if routing_failed(request, &answer) => {
                // The connection manager could not route to the controller.
                Err(self.scope().refused(
                    request.describe(),
                    format!(
                        "routing to the controller failed ({}); check the asset's {}",
                        answer.status,
                        request::describe_route(&self.link.route)
                    ),
                ))
            }
            Reply::Answer(answer) => Ok(Ok(answer)),
        }
    }

    /// Sends requests, packed into Multiple Service Packets as far as the connection size
    /// allows (request and reply sizes both), and returns one answer per request.
    pub(crate) async fn batch(
        &mut self,
        requests: Vec<(Request, usize)>,
    ) -> Result<Vec<Answer>, CollectError> {
        self.connect().await?;
        let mut answers = Vec::with_capacity(requests.len());
        let mut i = 0;
        while i < requests.len() {
            let capacity = self.capacity();
            let mut group: Vec<Request> = Vec::new();
            let mut request_bytes = 8; // service, path size, path (4), count
            let mut reply_bytes = 6; // reply header (4), count
            while let Some((request, reply)) = requests.get(i + group.len()) {
                let size = request
                    .encode(&self.link.route)
                    .map_err(|e| self.scope().malformed(request.describe(), e))?
                    .len();
                let more_request = request_bytes + 2 + size;
                let more_reply = reply_bytes + 2 + reply;
                if !group.is_empty()
                    && (more_request > capacity
                        || more_reply > capacity
                        || group.len() >= self.link.max_batch)
                {
                    break;
                }
                request_bytes = more_request;
                reply_bytes = more_reply;
                group.push(request.clone());
                if !self.link.multi_service {
                    break;
                }
            }
            let n = group.len();
            if n == 1 || !self.link.multi_service {
                for request in &group {
                    let answer = self.call(request).await?;
                    answers.push(answer);
                }
            } else {
                let multiple = Request::Multiple(group.clone());
                let answer = self.call(&multiple).await?;
                if answer.status.general == BUSY {
                    return Err(self.scope().busy(multiple.describe(), &answer.status));
                }
                if !answer.status.is_ok()
                    && !matches!(answer.status.general, 0x08 | 0x1E)
                    && answer.data.is_empty()
                {
                    // Refused as a whole (too many services, too large): pack fewer from
                    // now on and send these again.
                    tracing::debug!(status = %answer.status, n, "multiple service packet refused, packing fewer");
                    self.link.max_batch = (n / 2).max(1);
                    if self.link.max_batch == 1 {
                        self.link.multi_service = false;
                        self.link.msp_note = Some(format!("not used: {}", answer.status));
                    }
                    continue;
                }
                match split_multiple(&answer, &group) {
                    Ok(parts) => answers.extend(parts),
                    Err(reason) => {
                        // Service refused, or answered without its standard count/offsets (or
                        // with offsets that do not add up): send these one by one, and never
                        // pack again on this controller. The honest retry of the field-truth
                        // rule: the very same requests, so the capture is exactly the device's
                        // state, or fails on what the single answers say.
                        tracing::debug!(%reason, "multiple service packet unusable");
                        self.link.multi_service = false;
                        self.link.msp_note = Some(format!("not used: {reason}"));
                        for request in &group {
                            let answer = self.call(request).await?;
                            answers.push(answer);
                        }
                    }
                }
            }
            i += n;
        }
        Ok(answers)
    }
}

/// Splits a Multiple Service Packet answer into one answer per request; `Err` when the
/// service is unusable on this controller (refused, or answered without its standard
/// count and offsets).
pub(crate) fn split_multiple(answer: &Answer, group: &[Request]) -> Result<Vec<Answer>, String> {
    if !answer.status.is_ok() && answer.status.general != 0x1E {
        return Err(format!(
            "Multiple Service Packet refused ({})",
            answer.status
        ));
    }
    let parts = wire::multiple_service_replies(&answer.data, group.len()).map_err(|e| e.0)?;
    let mut out = Vec::with_capacity(parts.len());
    for (part, request) in parts.into_iter().zip(group) {
        let reply = wire::mr_reply(part).map_err(|e| e.0)?;
        let expected = request_service(request) | 0x80;
        if reply.service != expected {
            return Err(format!(
                "embedded reply service 0x{:02x}, expected 0x{expected:02x}",
                reply.service
            ));
        }
        out.push(Answer {
            service: reply.service,
            status: reply.status,
            data: reply.data.to_vec(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cip::request::TagAddress;

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

    /// A Multiple Service Packet answer holding `replies`, with its offsets as a Logix sets
    /// them, or with `shift` added to the last one.
    fn msp_answer(replies: &[Vec<u8>], shift: usize) -> Answer {
        let n = replies.len();
        let mut data = (n as u16).to_le_bytes().to_vec();
        let mut offset = 2 + 2 * n;
        for (i, r) in replies.iter().enumerate() {
            let shown = if i + 1 == n { offset + shift } else { offset };
            data.extend_from_slice(&(shown as u16).to_le_bytes());
            offset += r.len();
        }
        for r in replies {
            data.extend_from_slice(r);
        }
        Answer {
            service: 0x8A,
            status: Status {
                general: 0,
                extended: vec![],
            },
            data,
        }
    }

    fn read_sp() -> Request {
        Request::ReadTag {
            tag: TagAddress::parse("Oven_SP").expect("tag"),
            count: 1,
        }
    }

    #[test]
    fn a_multiple_service_packet_answer_splits_into_one_answer_per_request() {
        let identity = vec![0x81, 0, 0, 0, 1, 0];
        let refused = vec![0xCC, 0, 0x05, 1, 0, 0];
        let answer = msp_answer(&[identity, refused], 0);
        let parts = split_multiple(&answer, &[Request::Identity, read_sp()]).expect("splits");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, vec![1, 0]);
        assert_eq!(parts[1].status.general, 0x05);
        assert_eq!(parts[1].status.extended, vec![0]);
    }

    #[test]
    fn a_broken_multiple_service_packet_answer_is_unusable_not_state() {
        let identity = vec![0x81, 0, 0, 0, 1, 0];
        let read = vec![0xCC, 0, 0, 0, 0xCA, 0, 0, 0, 0x34, 0x43];
        let group = [Request::Identity, read_sp()];
        // The last offset points past the end (the simulator's broken-msp quirk).
        let err = split_multiple(
            &msp_answer(&[identity.clone(), read.clone()], 0x100),
            &group,
        )
        .expect_err("offsets do not add up");
        assert!(err.contains("outside"), "{err}");
        // cpppo: an unsupported embedded service empties the whole answer.
        let empty = Answer {
            data: vec![0, 0],
            ..msp_answer(&[], 0)
        };
        assert!(split_multiple(&empty, &group).is_err());
        // Replies in the wrong order: an embedded service that is not the one asked.
        let err = split_multiple(&msp_answer(&[read, identity], 0), &group).expect_err("order");
        assert!(err.contains("embedded reply service"), "{err}");
        // Refused as a whole.
        let whole = Answer {
            status: Status {
                general: 0x08,
                extended: vec![],
            },
            data: vec![],
            service: 0x8A,
        };
        assert!(split_multiple(&whole, &group).is_err());
    }
}
