//! S7comm transport: TCP, the ISO connection (COTP) and the S7 session (Setup
//! Communication), one PDU exchanged at a time; and the S7 services over it (jobs, userdata,
//! SZL lists), each answer checked and each refusal kept as the device coded it ([`Denied`]).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::decode::{self, SzlList};
use super::request::{LOCAL_TSAP, Request, connect_request, data_frame, remote_tsap};
use super::wire::{self, Refusal, WireError};
use crate::driver::{Dial, Driver, Failure, Link};
use crate::{CollectError, Scope};

/// The smallest PDU the collector works with; every S7 CPU grants at least 240.
const MIN_PDU: u16 = 128;
/// The most parts a "more data follows" answer may take (SZL, block lists).
pub(crate) const MAX_PARTS: usize = 64;

/// How to reach one S7 CPU.
#[derive(Debug)]
pub(crate) struct S7Link {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) rack: u16,
    pub(crate) slot: u16,
    /// The PDU size asked for in Setup Communication.
    pub(crate) pdu_wanted: u16,
}

/// An open ISO-on-TCP connection with its negotiated PDU size.
pub(crate) struct Conn {
    stream: TcpStream,
    /// The PDU size the CPU granted.
    pub(crate) pdu: u16,
    next_ref: u16,
}

/// Why an exchange failed at the transport level.
enum IoFail {
    Io(io::Error),
    Wire(WireError),
}

impl From<io::Error> for IoFail {
    fn from(e: io::Error) -> Self {
        IoFail::Io(e)
    }
}

impl From<WireError> for IoFail {
    fn from(e: WireError) -> Self {
        IoFail::Wire(e)
    }
}

/// Whether an I/O error means the device closed the connection.
fn is_drop(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Reads one TPKT frame and returns its COTP TPDU.
async fn read_tpdu(stream: &mut TcpStream) -> Result<Vec<u8>, IoFail> {
    let mut header = [0u8; wire::TPKT_HEADER];
    stream.read_exact(&mut header).await?;
    let len = wire::tpkt_length(header)?;
    let mut tpdu = vec![0u8; len - wire::TPKT_HEADER];
    stream.read_exact(&mut tpdu).await?;
    Ok(tpdu)
}

/// Reads one S7 PDU, reassembling COTP data fragments (bounded in number and size).
async fn read_pdu(stream: &mut TcpStream) -> Result<Vec<u8>, IoFail> {
    let mut pdu = Vec::new();
    for _ in 0..wire::MAX_FRAGMENTS {
        let tpdu = read_tpdu(stream).await?;
        match wire::parse_cotp(&tpdu)? {
            wire::Cotp::Data { last, payload } => {
                if pdu.len() + payload.len() > wire::MAX_S7_PDU {
                    return Err(WireError(format!(
                        "reassembled PDU exceeds {} bytes",
                        wire::MAX_S7_PDU
                    ))
                    .into());
                }
                pdu.extend_from_slice(payload);
                if last {
                    return Ok(pdu);
                }
            }
            wire::Cotp::Disconnect { reason } => {
                return Err(IoFail::Io(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the device sent a COTP disconnect request (reason 0x{reason:02X})"),
                )));
            }
            wire::Cotp::ConnectConfirm => {
                return Err(
                    WireError("a connection confirm where data was expected".into()).into(),
                );
            }
            wire::Cotp::Other { code } => {
                return Err(WireError(format!(
                    "COTP TPDU type 0x{code:02X} where data was expected"
                ))
                .into());
            }
        }
    }
    Err(WireError(format!(
        "PDU still incomplete after {} COTP fragments",
        wire::MAX_FRAGMENTS
    ))
    .into())
}

/// Sends `request` and returns the answer PDU, checked to answer this request's reference.
async fn send(conn: &mut Conn, request: &Request) -> Result<Vec<u8>, IoFail> {
    let pdu_ref = conn.next_ref;
    conn.next_ref = conn.next_ref.wrapping_add(1).max(1);
    let frame = data_frame(&request.encode(pdu_ref));
    conn.stream.write_all(&frame).await?;
    let pdu = read_pdu(&mut conn.stream).await?;
    let answer = wire::parse_answer(&pdu)?;
    if answer.pdu_ref != pdu_ref {
        return Err(WireError(format!(
            "answer carries PDU reference {} where {pdu_ref} was sent",
            answer.pdu_ref
        ))
        .into());
    }
    Ok(pdu)
}

impl S7Link {
    /// The ISO connection for our rack and slot: a connect request answered by a confirm.
    async fn iso_connect(
        &self,
        dial: &mut Dial<'_>,
        stream: &mut TcpStream,
    ) -> Result<(), CollectError> {
        let tsap = remote_tsap(self.rack, self.slot);
        let what = format!(
            "ISO connection request (remote TSAP 0x{tsap:04X}, rack {} slot {})",
            self.rack, self.slot
        );
        let confirm = async {
            stream.write_all(&connect_request(LOCAL_TSAP, tsap)).await?;
            read_tpdu(stream).await
        };
        let scope = dial.scope().clone();
        let tpdu = match dial
            .step(
                &what,
                "; check that this is an S7 CPU and its rack and slot",
                confirm,
            )
            .await?
        {
            Err(IoFail::Wire(e)) => return Err(scope.malformed(what, e)),
            Err(IoFail::Io(e)) if is_drop(&e) => {
                return Err(scope.refused(
                    what,
                    "the device closed the connection instead of confirming it; check rack and slot",
                ));
            }
            Err(IoFail::Io(e)) => return Err(scope.transport(what, e)),
            Ok(tpdu) => tpdu,
        };
        match wire::parse_cotp(&tpdu) {
            Ok(wire::Cotp::ConnectConfirm) => Ok(()),
            // ISO 8073 disconnect reasons 0x01 (congestion at TSAP) and 0x81 (remote transport
            // entity congestion at connect request time): the CPU has no connection resource
            // free now.
            Ok(wire::Cotp::Disconnect {
                reason: reason @ (0x01 | 0x81),
            }) => Err(scope.busy(
                what,
                format!(
                    "the device refused the connection for congestion (disconnect reason 0x{reason:02X}); its connection resources are in use"
                ),
            )),
            Ok(wire::Cotp::Disconnect { reason }) => Err(scope.refused(
                what,
                format!(
                    "the device refused the connection (disconnect reason 0x{reason:02X}); no CPU answers at rack {} slot {}",
                    self.rack, self.slot
                ),
            )),
            Ok(other) => Err(scope.malformed(
                what,
                format!("{other:?} where a connection confirm was expected"),
            )),
            Err(e) => Err(scope.malformed(what, e)),
        }
    }

    /// Setup Communication: the PDU size the CPU grants.
    async fn setup(&self, dial: &mut Dial<'_>, conn: &mut Conn) -> Result<u16, CollectError> {
        let setup = Request::Setup {
            pdu: self.pdu_wanted,
        };
        let what = setup.describe();
        let scope = dial.scope().clone();
        let pdu = match dial.step(&what, "", send(conn, &setup)).await? {
            Err(IoFail::Wire(e)) => return Err(scope.malformed(what, e)),
            Err(IoFail::Io(e)) => return Err(scope.transport(what, e)),
            Ok(pdu) => pdu,
        };
        let answer = wire::parse_answer(&pdu).map_err(|e| scope.malformed(&what, e))?;
        let params = match wire::job_answer(&answer, super::request::FN_SETUP) {
            Err(e) => return Err(scope.malformed(what, e)),
            Ok(Err(refusal)) => {
                let denied = Denied {
                    request: what,
                    denial: Denial::Code(refusal),
                };
                return Err(denied.fail(&scope, ""));
            }
            Ok(Ok(params)) => params,
        };
        let granted = wire::setup_answer(params).map_err(|e| scope.malformed(&what, e))?;
        if granted < MIN_PDU {
            return Err(scope.malformed(
                what,
                format!("the CPU granted a PDU of {granted} bytes; at least {MIN_PDU} are needed"),
            ));
        }
        Ok(granted.min(self.pdu_wanted))
    }
}

impl Link for S7Link {
    type Conn = Conn;
    type Request = Request;
    /// The answer PDU, its header checked.
    type Answer = Vec<u8>;

    /// Opens TCP, the ISO connection (COTP) and the S7 session (Setup Communication), each
    /// under the asset's timeout.
    async fn connect(&mut self, dial: &mut Dial<'_>) -> Result<Conn, CollectError> {
        let mut stream = dial.tcp(&self.host, self.port).await?;
        self.iso_connect(dial, &mut stream).await?;
        let mut conn = Conn {
            stream,
            pdu: self.pdu_wanted,
            next_ref: 1,
        };
        conn.pdu = self.setup(dial, &mut conn).await?;
        Ok(conn)
    }

    async fn exchange(&self, conn: &mut Conn, request: &Request) -> Result<Vec<u8>, Failure> {
        match send(conn, request).await {
            Ok(pdu) => Ok(pdu),
            Err(IoFail::Wire(e)) => Err(Failure::Malformed(e.0)),
            Err(IoFail::Io(e)) if is_drop(&e) => Err(Failure::Lost(e)),
            Err(IoFail::Io(e)) => Err(Failure::Io(e)),
        }
    }

    fn describe(&self, request: &Request) -> String {
        request.describe()
    }

    fn size(&self, pdu: &Vec<u8>) -> usize {
        pdu.len()
    }

    async fn close(&self, mut conn: Conn) {
        let _ = conn.stream.shutdown().await;
    }
}

/// What a device did instead of answering a request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Denial {
    /// An error code.
    Code(Refusal),
    /// It closed a fresh connection in answer to the request.
    Dropped,
}

/// A request the device would not answer, and how it said so. Each caller decides whether
/// that is a stable capability (a "not available" item) or fails the capture
/// ([`Denied::fail`]).
#[derive(Debug)]
pub(crate) struct Denied {
    pub(crate) request: String,
    pub(crate) denial: Denial,
}

impl Denied {
    /// The device's error code, if it gave one.
    pub(crate) fn code(&self) -> Option<Refusal> {
        match self.denial {
            Denial::Code(refusal) => Some(refusal),
            Denial::Dropped => None,
        }
    }

    /// Whether the device said it lacks the resources now.
    pub(crate) fn is_busy(&self) -> bool {
        self.code().is_some_and(Refusal::is_busy)
    }

    /// What the device said, in its own terms (the code and its meaning).
    fn said(&self) -> String {
        match self.denial {
            Denial::Code(refusal) => refusal.to_string(),
            Denial::Dropped => "the CPU closed the connection in answer to it".to_owned(),
        }
    }

    /// A stable "not available" reason naming the request: the same every poll for the same
    /// device, because it holds only the request and the device's code.
    pub(crate) fn reason(&self) -> String {
        match self.denial {
            Denial::Code(refusal) => format!("{} refused: {refusal}", self.request),
            Denial::Dropped => format!("the CPU closes the connection on {}", self.request),
        }
    }

    /// The capture fails because the device would not answer: `busy` when it said it lacks
    /// the resources, `refused` otherwise. `context` says why this refusal is not a gap (what
    /// the device's own directory still shows, or why the object is required).
    pub(crate) fn fail(&self, scope: &Scope, context: &str) -> CollectError {
        let detail = format!("{}{context}", self.said());
        if self.is_busy() {
            scope.busy(&self.request, detail)
        } else {
            scope.refused(&self.request, detail)
        }
    }
}

/// The S7 services over the driver: each answer checked against its request, each refusal a
/// [`Denied`] for the caller to judge.
impl Driver<S7Link> {
    /// The PDU size the CPU granted on the open connection, if any.
    pub(crate) fn pdu(&self) -> Option<u16> {
        self.conn().map(|c| c.pdu)
    }

    /// Sends `request`; `Ok(Err(..))` when the device closes a fresh session in answer to it.
    async fn answer_pdu(
        &mut self,
        request: &Request,
    ) -> Result<Result<Vec<u8>, Denied>, CollectError> {
        Ok(self
            .exchange_or_dropped(request)
            .await?
            .map_err(|_| Denied {
                request: request.describe(),
                denial: Denial::Dropped,
            }))
    }

    /// A userdata request: `(sequence, more follows, payload)`. `Ok(Err(..))` for what the
    /// device refuses (an error code, or dropping a fresh session in answer to it); the
    /// caller decides what that means.
    pub(crate) async fn userdata(
        &mut self,
        request: &Request,
        group: u8,
        subfunction: u8,
    ) -> Result<Result<(u8, bool, Vec<u8>), Denied>, CollectError> {
        self.answer_with(request, |answer| {
            let part = wire::userdata_answer(answer, group, subfunction)?;
            Ok(part.map(|part| (part.seq, part.more, part.payload.to_vec())))
        })
        .await
    }

    /// A job (ack-data) request: `(parameters, data)`. `Ok(Err(..))` for a refusal or a
    /// dropped session.
    pub(crate) async fn job(
        &mut self,
        request: &Request,
        function: u8,
    ) -> Result<Result<(Vec<u8>, Vec<u8>), Denied>, CollectError> {
        self.answer_with(request, |answer| {
            let params = wire::job_answer(answer, function)?;
            Ok(params.map(|params| (params.to_vec(), answer.data.to_vec())))
        })
        .await
    }

    /// Sends `request` and reads its answer with `read`: a refusal the device states is
    /// `Ok(Err(..))`; an answer `read` cannot make sense of drops the connection (the stream
    /// may be out of step) and fails the request as malformed.
    async fn answer_with<T>(
        &mut self,
        request: &Request,
        read: impl FnOnce(&wire::Answer<'_>) -> Result<Result<T, wire::Refusal>, wire::WireError>,
    ) -> Result<Result<T, Denied>, CollectError> {
        let pdu = match self.answer_pdu(request).await? {
            Ok(pdu) => pdu,
            Err(denied) => return Ok(Err(denied)),
        };
        let what = request.describe();
        let answer = wire::parse_answer(&pdu).map_err(|e| self.scope().malformed(&what, e))?;
        match read(&answer) {
            Err(e) => {
                self.drop_connection();
                Err(self.scope().malformed(what, e))
            }
            Ok(Err(refusal)) => Ok(Err(Denied {
                request: what,
                denial: Denial::Code(refusal),
            })),
            Ok(Ok(value)) => Ok(Ok(value)),
        }
    }

    /// Reads the bytes of a whole SZL list, following "more data follows" for at most
    /// [`MAX_PARTS`] parts and [`decode::MAX_SZL_BYTES`] bytes (a `bound`). `Ok(Err(..))` when
    /// the CPU refuses a part.
    pub(crate) async fn read_szl(
        &mut self,
        id: u16,
        index: u16,
    ) -> Result<Result<Vec<u8>, Denied>, CollectError> {
        let first = Request::ReadSzl { id, index };
        let (mut seq, mut more, mut bytes) = match self
            .userdata(&first, super::request::GROUP_SZL, 0x01)
            .await?
        {
            Ok(part) => part,
            Err(denied) => return Ok(Err(denied)),
        };
        let mut parts = 1;
        while more {
            let next = Request::ReadSzlNext { id, index, seq };
            if parts >= MAX_PARTS || bytes.len() > decode::MAX_SZL_BYTES {
                self.drop_connection();
                return Err(self.scope().bound(
                    next.describe(),
                    format!(
                        "more data still follows after {parts} parts and {} bytes (at most {MAX_PARTS} parts and {} bytes are read)",
                        bytes.len(),
                        decode::MAX_SZL_BYTES
                    ),
                ));
            }
            match self
                .userdata(&next, super::request::GROUP_SZL, 0x01)
                .await?
            {
                Ok((s, m, payload)) => {
                    bytes.extend_from_slice(&payload);
                    (seq, more) = (s, m);
                }
                Err(denied) => return Ok(Err(denied)),
            }
            parts += 1;
        }
        Ok(Ok(bytes))
    }

    /// Reads SZL `id`/`index` and checks its header and records against each other: an
    /// answer that does not add up is `malformed`, naming the request. `Ok(Err(..))` when the
    /// CPU refuses it.
    pub(crate) async fn szl(
        &mut self,
        id: u16,
        index: u16,
    ) -> Result<Result<SzlList, Denied>, CollectError> {
        let bytes = match self.read_szl(id, index).await? {
            Ok(bytes) => bytes,
            Err(denied) => return Ok(Err(denied)),
        };
        decode::szl_list(id, index, &bytes).map(Ok).map_err(|e| {
            self.scope()
                .malformed(Request::ReadSzl { id, index }.describe(), e)
        })
    }
}
