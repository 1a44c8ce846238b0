//! AMS/TCP transport: one connection to one ADS device, a request sent and exactly one
//! bounded answer read; and the read services over it (Read-shaped answers, sum-reads).

use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::plan::batches;
use super::request::{ReadSpec, Request};
use super::wire::{
    AMS_HEADER, AMS_TCP_PREFIX, AmsAddr, Answer, Cursor, SubResult, check_answer, code, error_text,
    is_sum_read_refused, parse_prefix,
};
use crate::CollectError;
use crate::driver::{Dial, Driver, Failure, Link};

/// The AMS port otdrift uses as its own (source) port: a client port, not a service.
pub const SOURCE_AMS_PORT: u16 = 32905;

/// AMS/TCP frames with a non-zero reserved word are router messages (port open/close, "router
/// state changed"); they are skipped, but only this many in a row and only this small.
const MAX_ROUTER_FRAMES: usize = 4;
const MAX_ROUTER_FRAME: u32 = 1024;

/// Why a call failed below the ADS level.
#[derive(Debug)]
enum CallError {
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
    fn new(stream: TcpStream, target: AmsAddr, source: AmsAddr) -> Self {
        Connection {
            stream,
            target,
            source,
            invoke_id: 0,
        }
    }

    /// Sends `request` and returns its checked answer. Not cancellation-safe: after a
    /// timeout the caller drops the connection.
    async fn call(&mut self, request: &Request) -> Result<Answer, CallError> {
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
}

/// Which sum-read the device takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SumMode {
    /// 0xF083: results and lengths.
    WithLengths,
    /// 0xF080: results only.
    Plain,
    /// No sum-read: one Read per value.
    Single,
}

impl SumMode {
    /// The name runtime facts and logs use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SumMode::WithLengths => "0xF083",
            SumMode::Plain => "0xF080",
            SumMode::Single => "single reads",
        }
    }
}

/// How to reach one ADS device, and which sum-read it takes (learnt once, kept across
/// connections).
#[derive(Debug)]
pub(crate) struct AdsLink {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) target: AmsAddr,
    /// Our own AMS Net Id; by default the gateway's IPv4 address plus `.1.1`.
    pub(crate) source_net_id: Option<[u8; 6]>,
    pub(crate) sum_mode: SumMode,
}

impl Link for AdsLink {
    type Conn = Connection;
    type Request = Request;
    type Answer = Answer;

    async fn connect(&mut self, dial: &mut Dial<'_>) -> Result<Connection, CollectError> {
        let stream = dial.tcp(&self.host, self.port).await?;
        let source_net_id = match self.source_net_id {
            Some(id) => id,
            None => {
                let local = stream
                    .local_addr()
                    .map_err(|source| dial.scope().connect(source))?;
                let v4 = match local.ip() {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(v6) => v6.to_ipv4_mapped(),
                };
                let Some(v4) = v4 else {
                    return Err(dial.scope().connect(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "connected over IPv6, so no AMS Net Id can be derived from the gateway's address; set source_ams_net_id for this asset",
                    )));
                };
                let [a, b, c, d] = v4.octets();
                [a, b, c, d, 1, 1]
            }
        };
        let source = AmsAddr {
            net_id: source_net_id,
            port: SOURCE_AMS_PORT,
        };
        tracing::debug!(source = %source, target = %self.target, "AMS addresses");
        Ok(Connection::new(stream, self.target, source))
    }

    /// TwinCAT drops a client when another connects from the same IP, and on router
    /// restarts: a pooled connection then fails on first use.
    async fn exchange(&self, conn: &mut Connection, request: &Request) -> Result<Answer, Failure> {
        conn.call(request).await.map_err(|e| match e {
            CallError::Io(e) => Failure::Lost(e),
            CallError::Malformed(detail) => Failure::Malformed(detail),
        })
    }

    fn describe(&self, request: &Request) -> String {
        request.describe()
    }

    fn size(&self, answer: &Answer) -> usize {
        answer.data.len()
    }

    fn timeout_hint(&self, _request: &Request) -> &'static str {
        "; check the AMS route on the PLC (without one TwinCAT may stay silent) and the ams_net_id/ams_port"
    }

    async fn close(&self, mut conn: Connection) {
        let _ = conn.stream.shutdown().await;
    }
}

/// The read services over the driver.
impl Driver<AdsLink> {
    /// The source address of the open connection, if any.
    pub(crate) fn source(&self) -> Option<AmsAddr> {
        self.conn().map(|c| c.source)
    }

    fn malformed(&self, request: &Request, detail: impl Into<String>) -> CollectError {
        self.scope().malformed(request.describe(), detail.into())
    }

    /// A Read-shaped answer (`result, length, data`): the data, or the device's error.
    pub(crate) async fn call_data(&mut self, request: &Request) -> Result<SubResult, CollectError> {
        let answer = self.exchange(request).await?;
        if answer.error != 0 {
            return Ok(Err(answer.error));
        }
        let mut c = Cursor::new(&answer.data);
        let result = c.u32("result").map_err(|e| self.malformed(request, e))?;
        if result != 0 {
            return Ok(Err(result));
        }
        let length = c.u32("length").map_err(|e| self.malformed(request, e))?;
        let asked = request.max_answer_data().saturating_sub(8);
        if length as usize > asked {
            return Err(self.malformed(
                request,
                format!("answer length {length} is more than the {asked} bytes asked for"),
            ));
        }
        if length as usize != c.remaining() {
            return Err(self.malformed(
                request,
                format!(
                    "answer length field says {length} bytes, {} arrived",
                    c.remaining()
                ),
            ));
        }
        let data = c
            .take(length as usize, "data")
            .map_err(|e| self.malformed(request, e))?;
        Ok(Ok(data.to_vec()))
    }

    /// One plain Read.
    pub(crate) async fn read(&mut self, spec: ReadSpec) -> Result<SubResult, CollectError> {
        self.call_data(&Request::Read(spec)).await
    }

    /// One sum-read; `Err(code)` when the device refused the sum-read as a whole.
    pub(crate) async fn sum_read(
        &mut self,
        ex: bool,
        reads: &[ReadSpec],
    ) -> Result<Result<Vec<SubResult>, u32>, CollectError> {
        let request = Request::SumRead {
            ex,
            reads: reads.to_vec(),
        };
        let body = match self.call_data(&request).await? {
            Ok(body) => body,
            Err(code) => return Ok(Err(code)),
        };
        super::wire::sum_read_results(&body, ex, reads)
            .map(Ok)
            .map_err(|e| self.malformed(&request, e))
    }

    /// The device answered `request` with ADS error `code`: busy (0x708) is
    /// [`ErrorKind::Busy`](crate::ErrorKind::Busy), every other code a refusal. `why` says
    /// what makes the refusal a failure when that is not obvious (a contradiction).
    pub(crate) fn ads_error(&self, request: String, code: u32, why: &str) -> CollectError {
        let request = format!("{request} at {}", self.link.target);
        if code == code::BUSY {
            self.scope().busy(request, error_text(code))
        } else {
            self.scope()
                .refused(request, format!("{}{why}", error_text(code)))
        }
    }

    /// Reads many values in as few round trips as the device allows; each result says
    /// whether a sum-read carried it.
    async fn read_many(
        &mut self,
        specs: &[ReadSpec],
    ) -> Result<Vec<(SubResult, bool)>, CollectError> {
        let mut out = Vec::with_capacity(specs.len());
        for batch in batches(specs) {
            loop {
                let ex = match self.link.sum_mode {
                    SumMode::Single => {
                        for spec in batch {
                            out.push((self.read(*spec).await?, false));
                        }
                        break;
                    }
                    SumMode::WithLengths => true,
                    SumMode::Plain => false,
                };
                match self.sum_read(ex, batch).await? {
                    Ok(results) => {
                        out.extend(results.into_iter().map(|r| (r, true)));
                        break;
                    }
                    Err(code) if is_sum_read_refused(code) => {
                        let next = if ex { SumMode::Plain } else { SumMode::Single };
                        tracing::debug!(
                            refused = self.link.sum_mode.name(),
                            reason = %error_text(code),
                            next = next.name(),
                            "sum-read refused, falling back"
                        );
                        self.link.sum_mode = next;
                    }
                    Err(code) => {
                        let request = Request::SumRead {
                            ex,
                            reads: batch.to_vec(),
                        };
                        return Err(self.ads_error(request.describe(), code, ""));
                    }
                }
            }
        }
        Ok(out)
    }

    /// [`read_many`](Self::read_many), and every sub-read a sum-read refused (other than
    /// busy) read again alone, once, with a plain Read of exactly the same index group,
    /// offset and length: an honest retry (a sum-read can fail a sub-read for reasons of its
    /// own), so what comes back is exactly the device's value. A read refused alone too is
    /// returned as refused, for the caller to judge.
    pub(crate) async fn read_values(
        &mut self,
        specs: &[ReadSpec],
    ) -> Result<Vec<SubResult>, CollectError> {
        let tagged = self.read_many(specs).await?;
        let mut out = Vec::with_capacity(tagged.len());
        for (spec, (result, summed)) in specs.iter().zip(tagged) {
            out.push(match result {
                Err(code) if summed && code != code::BUSY => {
                    tracing::debug!(
                        group = spec.group,
                        offset = spec.offset,
                        reason = %error_text(code),
                        "sub-read refused inside a sum-read, reading it alone"
                    );
                    self.read(*spec).await?
                }
                other => other,
            });
        }
        Ok(out)
    }
}
