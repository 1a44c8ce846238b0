//! The syslog sink: RFC 5424 messages (or ArcSight CEF in the message part) over UDP
//! (RFC 5426), TCP with octet counting (RFC 6587) or TLS (RFC 5425).
//!
//! Written by hand (decision 0011): the crates on the registry frame TCP syslog by newlines
//! (an event with a newline in a value would split), or have no TLS; framing is a few lines.

use std::fmt::Write as _;
use std::pin::Pin;

use otdrift_config::{SinkConfig, SinkKind, SyslogFormat, SyslogTransport};
use otdrift_core::format_timestamp;
use otdrift_store::OutboxEvent;
use serde_json::Value as Json;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::{Sink, SinkError, importance};

/// The structured-data id of our element. 32473 is the private enterprise number RFC 5424
/// reserves for documentation: otdrift has none registered, and a SIEM keys on the name.
pub const SD_ID: &str = "otdrift@32473";

/// The longest UDP datagram sent (RFC 5426 section 3.2 asks receivers to take 2048 bytes);
/// longer events are cut there.
pub const UDP_MAX: usize = 2048;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A syslog destination and its connection.
pub(super) struct Syslog {
    host: String,
    port: u16,
    transport: SyslogTransport,
    format: SyslogFormat,
    facility: u8,
    /// The agent's id: the HOSTNAME of every message, and the CloudEvents source.
    agent: String,
    tls: Option<tokio_rustls::TlsConnector>,
    stream: Option<Pin<Box<dyn Stream>>>,
    udp: Option<UdpSocket>,
}

impl Syslog {
    pub(super) fn new(cfg: &SinkConfig, agent_id: &str) -> Result<Self, SinkError> {
        let SinkKind::Syslog {
            transport,
            format,
            facility,
        } = cfg.kind
        else {
            return Err(SinkError::Setup("not a syslog sink".into()));
        };
        let tls = match transport {
            SyslogTransport::Tls => Some(tokio_rustls::TlsConnector::from(
                crate::daemon::tls::client_config(
                    cfg.ca_file.as_deref(),
                    cfg.client_cert.as_ref(),
                )?,
            )),
            _ => None,
        };
        Ok(Self {
            host: cfg.host.clone(),
            port: cfg.port,
            transport,
            format,
            facility,
            agent: agent_id.to_owned(),
            tls,
            stream: None,
            udp: None,
        })
    }

    /// The connection, made if there is none or the server closed it.
    async fn stream(&mut self) -> Result<&mut Pin<Box<dyn Stream>>, SinkError> {
        if let Some(s) = self.stream.as_mut() {
            // A server that went away closed the connection: see it before writing into it,
            // so a restarted collector gets the batch again instead of a dead socket.
            let mut byte = [0u8; 1];
            match tokio::time::timeout(std::time::Duration::ZERO, s.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => self.stream = None,
                _ => {}
            }
        }
        if self.stream.is_none() {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| {
                    SinkError::Connection(format!("connect {}:{}: {e}", self.host, self.port))
                })?;
            let _ = tcp.set_nodelay(true);
            let stream: Pin<Box<dyn Stream>> = match &self.tls {
                Some(connector) => Box::pin(
                    connector
                        .connect(crate::daemon::tls::server_name(&self.host)?, tcp)
                        .await
                        .map_err(|e| {
                            SinkError::Connection(format!("TLS with {}: {e}", self.host))
                        })?,
                ),
                None => Box::pin(tcp),
            };
            self.stream = Some(stream);
        }
        self.stream
            .as_mut()
            .ok_or_else(|| SinkError::Connection("no connection".into()))
    }

    fn message(&self, e: &OutboxEvent) -> String {
        match self.format {
            SyslogFormat::Rfc5424 => rfc5424(e, &self.agent, self.facility),
            SyslogFormat::Cef => cef_message(e, &self.agent, self.facility),
        }
    }
}

impl Sink for Syslog {
    async fn deliver(&mut self, batch: &[OutboxEvent]) -> Result<(), SinkError> {
        match self.transport {
            SyslogTransport::Udp => {
                if self.udp.is_none() {
                    let bind = if self.host.contains(':') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    };
                    let socket = UdpSocket::bind(bind)
                        .await
                        .map_err(|e| SinkError::Connection(format!("UDP socket: {e}")))?;
                    socket
                        .connect((self.host.as_str(), self.port))
                        .await
                        .map_err(|e| {
                            SinkError::Connection(format!("{}:{}: {e}", self.host, self.port))
                        })?;
                    self.udp = Some(socket);
                }
                for e in batch {
                    let message = self.message(e);
                    let cut = cut_at_char(&message, UDP_MAX);
                    if let Some(socket) = &self.udp {
                        socket
                            .send(cut.as_bytes())
                            .await
                            .map_err(|e| SinkError::Connection(format!("UDP send: {e}")))?;
                    }
                }
                Ok(())
            }
            SyslogTransport::Tcp | SyslogTransport::Tls => {
                // RFC 6587 octet counting (RFC 5425 frames TLS the same way): no message can
                // split another, whatever its values hold.
                let mut frames = Vec::new();
                for e in batch {
                    let message = self.message(e);
                    frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    frames.extend_from_slice(message.as_bytes());
                }
                let stream = self.stream().await?;
                stream
                    .write_all(&frames)
                    .await
                    .map_err(|e| SinkError::Connection(format!("write: {e}")))?;
                stream
                    .flush()
                    .await
                    .map_err(|e| SinkError::Connection(format!("flush: {e}")))?;
                Ok(())
            }
        }
    }

    async fn reset(&mut self) {
        if let Some(mut s) = self.stream.take() {
            let _ = s.shutdown().await;
        }
        self.udp = None;
    }
}

/// The longest prefix of `s` within `max` bytes that ends at a character boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The RFC 5424 severity (0 emergency .. 7 debug) of an event.
fn severity(e: &OutboxEvent) -> u8 {
    match importance(e) {
        8.. => 2,
        6 | 7 => 4,
        4 | 5 => 5,
        _ => 6,
    }
}

/// The RFC 5424 header up to and without the structured data.
fn header(e: &OutboxEvent, facility: u8, hostname: &str) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity(e));
    let msgid: String = e
        .event_type
        .strip_prefix("io.otdrift.")
        .unwrap_or(&e.event_type)
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    format!(
        "<{pri}>1 {} {} otdrift {} {msgid}",
        format_timestamp(e.time),
        printable(hostname, 255),
        std::process::id()
    )
}

/// Only printable US-ASCII, at most `max` characters, `-` when nothing is left (a header
/// field's grammar).
fn printable(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// An RFC 5424 message (HOSTNAME: the agent's id): the event's key fields as structured
/// data (`[otdrift@32473 ...]`) and the whole CloudEvent as JSON in the message.
pub fn rfc5424(e: &OutboxEvent, agent_id: &str, facility: u8) -> String {
    let mut sd = format!("[{SD_ID}");
    let mut param = |name: &str, value: &str| {
        let _ = write!(sd, " {name}=\"{}\"", sd_escape(value));
    };
    param("id", &e.id);
    param("seq", &e.seq.to_string());
    param("type", &e.event_type);
    if let Some(asset) = &e.asset {
        param("asset", asset);
    }
    for key in [
        "severity",
        "reason",
        "drift_id",
        "change_id",
        "digest",
        "observed_digest",
    ] {
        match e.data.get(key) {
            Some(Json::String(s)) => param(key, s),
            Some(v @ Json::Number(_)) => param(key, &v.to_string()),
            _ => {}
        }
    }
    sd.push(']');
    let body = crate::events::cloud_event(agent_id, e).to_string();
    format!("{} {sd} {body}", header(e, facility, agent_id))
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 section 6.3.3).
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An RFC 5424 message whose message part is ArcSight CEF.
pub fn cef_message(e: &OutboxEvent, agent_id: &str, facility: u8) -> String {
    format!("{} - {}", header(e, facility, agent_id), cef(e, agent_id))
}

/// The CEF record of an event: `CEF:0|otdrift|otdrift|<version>|<type>|<name>|<severity>|`
/// and standard extension keys (rt, dvchost, dhost, externalId, cat, msg, reason, cs1..cs4,
/// cn1, cn2, suser, duser), severity 0-10 from what the event means.
pub fn cef(e: &OutboxEvent, agent_id: &str) -> String {
    let kind = e
        .event_type
        .strip_prefix("io.otdrift.")
        .unwrap_or(&e.event_type);
    let name = kind.replace(['.', '_'], " ");
    let text = |key: &str| -> Option<String> {
        match e.data.get(key)? {
            Json::String(s) => Some(s.clone()),
            Json::Null => None,
            other => Some(other.to_string()),
        }
    };
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", e.time.timestamp_millis().to_string()),
        ("dvchost", agent_id.to_owned()),
        ("externalId", e.id.clone()),
        ("cat", e.event_type.clone()),
        ("cn1Label", "outboxSeq".into()),
        ("cn1", e.seq.to_string()),
    ];
    if let Some(asset) = &e.asset {
        ext.push(("dhost", asset.clone()));
    }
    let mut labelled = |n: u8, label: &str, key: &str| {
        if let Some(v) = text(key) {
            ext.push((LABELS[usize::from(n)].0, label.to_owned()));
            ext.push((LABELS[usize::from(n)].1, v));
        }
    };
    labelled(1, "baselineDigest", "baseline_digest");
    labelled(2, "observedDigest", "observed_digest");
    labelled(3, "changeId", "change_id");
    labelled(4, "severity", "severity");
    if let Some(n) = e.data.get("changes_total").and_then(Json::as_u64) {
        ext.push(("cn2Label", "changedItems".into()));
        ext.push(("cn2", n.to_string()));
    }
    if let Some(r) = text("reason") {
        ext.push(("reason", r));
    }
    if let Some(m) = text("message") {
        ext.push(("msg", m));
    } else if kind == "drift.detected" {
        let n = e
            .data
            .get("changes_total")
            .and_then(Json::as_u64)
            .unwrap_or(0);
        ext.push((
            "msg",
            format!("{n} item(s) differ from the approved baseline"),
        ));
    }
    if let Some(a) = e.data.pointer("/approval/approver").and_then(Json::as_str) {
        ext.push(("suser", a.to_owned()));
    }
    if let Some(r) = e.data.pointer("/approval/requestor").and_then(Json::as_str) {
        ext.push(("duser", r.to_owned()));
    }
    let mut out = format!(
        "CEF:0|otdrift|otdrift|{}|{}|{}|{}|",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(&e.event_type),
        cef_header(&name),
        importance(e)
    );
    let body: Vec<String> = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", cef_value(v)))
        .collect();
    out.push_str(&body.join(" "));
    out
}

/// The custom string fields (`csN`, `csNLabel`), index 1..=4.
const LABELS: [(&str, &str); 5] = [
    ("", ""),
    ("cs1Label", "cs1"),
    ("cs2Label", "cs2"),
    ("cs3Label", "cs3"),
    ("cs4Label", "cs4"),
];

/// A CEF header field: `\` and `|` escaped, line breaks as spaces.
fn cef_header(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// A CEF extension value: `\` and `=` escaped, line breaks as `\n` / `\r`.
fn cef_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, data: Json) -> OutboxEvent {
        OutboxEvent {
            seq: 42,
            id: "0a6c8b4e-1111-4222-8333-944455556666".into(),
            event_type: kind.into(),
            asset: Some("press-7".into()),
            time: otdrift_core::parse_timestamp("2026-12-06T08:00:00Z").expect("time"),
            data,
        }
    }

    #[test]
    fn rfc5424_carries_priority_header_structured_data_and_the_cloud_event() {
        let e = event(
            "io.otdrift.drift.detected",
            json!({"severity": "high", "reason": "device", "drift_id": 7, "note": "a]\"b\\"}),
        );
        let m = rfc5424(&e, "gw-1", 16);
        // local0 (16) * 8 + critical (2) = 130.
        assert!(
            m.starts_with("<130>1 2026-12-06T08:00:00.000Z gw-1 otdrift "),
            "{m}"
        );
        assert!(m.contains(" drift.detected [otdrift@32473 id=\"0a6c8b4e-1111-4222-8333-944455556666\" seq=\"42\" type=\"io.otdrift.drift.detected\" asset=\"press-7\" severity=\"high\" reason=\"device\" drift_id=\"7\"] {"), "{m}");
        let json: Json = serde_json::from_str(&m[m.find("] {").expect("msg") + 2..]).expect("json");
        assert_eq!(json["type"], "io.otdrift.drift.detected");
        assert_eq!(sd_escape("a]\"b\\"), "a\\]\\\"b\\\\");
    }

    #[test]
    fn cef_escapes_and_maps_fields_to_standard_keys() {
        let e = event(
            "io.otdrift.approval.rejected",
            json!({"reason": "signature", "message": "a=b\nc\\d", "severity": null}),
        );
        let c = cef(&e, "gw|1");
        assert!(c.starts_with("CEF:0|otdrift|otdrift|"), "{c}");
        assert!(
            c.contains("|io.otdrift.approval.rejected|approval rejected|6|"),
            "{c}"
        );
        assert!(
            c.contains("rt=1796544000000 dvchost=gw|1 externalId="),
            "{c}"
        );
        assert!(c.contains("reason=signature msg=a\\=b\\nc\\\\d"), "{c}");
        assert!(c.contains("dhost=press-7"), "{c}");
        assert_eq!(cef_header("a|b\\c"), "a\\|b\\\\c");
    }

    #[test]
    fn udp_cuts_at_a_character_boundary() {
        let s = "é".repeat(2000);
        let cut = cut_at_char(&s, UDP_MAX);
        assert!(cut.len() <= UDP_MAX && cut.len() >= UDP_MAX - 1);
        assert!(s.starts_with(cut));
    }
}
