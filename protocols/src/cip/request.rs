//! The only requests the collector can send: its read-only boundary.
//!
//! Every CIP message the collector puts on the wire is built by [`Request::encode`] from a
//! [`Request`], and `Request` has a variant for each read, browse or identify service and
//! for opening and closing the explicit-messaging connection, and nothing else: there is no
//! way to express Write Tag (0x4D), Read-Modify-Write (0x4E on a tag), Write Tag Fragmented
//! (0x53), Set Attribute(s) (0x02/0x04/0x10) or a mode change (Reset 0x05, Start 0x06,
//! Stop 0x07). The unit test at the bottom encodes every variant and checks the service code
//! and the path of each message (and of each message inside a Multiple Service Packet).
//!
//! The encoding itself is rseip's: [`rseip::cip::MessageRequest`], [`EPath`] (symbolic,
//! logical, element and port segments), rseip's tag-path parser for configured tags, and its
//! `OpenOptions` / `ForwardCloseRequest` / `UnconnectedSend` encoders. What rseip lacks is
//! composed from those pieces here: Get Instance Attribute List (0x55) on a program's symbol
//! table (`Program:<name>` + class 0x6B, with 32-bit instance segments for paging), Get
//! Attribute List (0x03) on the Template (0x6C) and wall-clock (0x8B) objects, Read Template
//! (0x4C on class 0x6C), Get Attributes All (0x01) on the Identity (0x01) and program-name
//! (0x64) objects, and Multiple Service Packet (0x0A) with our own packing.

use bytes::{BufMut, Bytes, BytesMut};
use rseip::ClientError;
use rseip::cip::MessageRequest;
use rseip::cip::connection::{
    ConnectionParameters, ConnectionType, Direction, OpenOptions, Priority, TransportClass,
    TriggerType, VariableLength,
};
use rseip::cip::epath::{EPath, PortSegment, Segment};
use rseip::cip::service::request::UnconnectedSend;
use rseip::client::ab_eip::PathParser;
use rseip_core::codec::{Encode, Encoder};

/// Service codes (CIP Vol. 1 appendix A; Logix services from 1756-PM020).
pub(crate) const GET_ATTRIBUTES_ALL: u8 = 0x01;
pub(crate) const GET_ATTRIBUTE_LIST: u8 = 0x03;
pub(crate) const MULTIPLE_SERVICE_PACKET: u8 = 0x0A;
pub(crate) const READ_TAG: u8 = 0x4C;
pub(crate) const READ_TEMPLATE: u8 = 0x4C;
pub(crate) const FORWARD_CLOSE: u8 = 0x4E;
pub(crate) const UNCONNECTED_SEND: u8 = 0x52;
pub(crate) const READ_TAG_FRAGMENTED: u8 = 0x52;
pub(crate) const FORWARD_OPEN: u8 = 0x54;
pub(crate) const GET_INSTANCE_ATTRIBUTE_LIST: u8 = 0x55;
pub(crate) const LARGE_FORWARD_OPEN: u8 = 0x5B;

/// Object classes.
pub(crate) const CLASS_IDENTITY: u16 = 0x01;
pub(crate) const CLASS_MESSAGE_ROUTER: u16 = 0x02;
pub(crate) const CLASS_CONNECTION_MANAGER: u16 = 0x06;
/// The Logix "program name" object: Get Attributes All answers the controller's project
/// name as a STRING (Rockwell KB 23341, as used by pycomm3's `get_plc_name`).
pub(crate) const CLASS_PROGRAM_NAME: u16 = 0x64;
pub(crate) const CLASS_SYMBOL: u16 = 0x6B;
pub(crate) const CLASS_TEMPLATE: u16 = 0x6C;
/// The Logix WallClockTime object; attribute 0x0B is the controller's clock in microseconds
/// since 1970 (as pycomm3's `get_plc_time` reads it).
pub(crate) const CLASS_WALL_CLOCK: u16 = 0x8B;
pub(crate) const WALL_CLOCK_ATTRIBUTE: u16 = 0x0B;

/// Symbol attributes the browse asks for: 1 name, 2 type, 8 array dimensions.
pub(crate) const SYMBOL_ATTRIBUTES: [u16; 3] = [1, 2, 8];
/// Template attributes: 4 definition size (words), 5 structure size (bytes), 2 member
/// count, 1 structure handle; answered in this order.
pub(crate) const TEMPLATE_ATTRIBUTES: [u16; 4] = [4, 5, 2, 1];

/// Originator vendor id sent in Forward Open (0xFFFF is unassigned; we are no vendor).
const ORIGINATOR_VENDOR: u16 = 0xFFFF;
/// Requested packet interval of the explicit connection: 2 s.
const RPI_US: u32 = 2_000_000;
/// Timeout multiplier index 7 = ×512: the controller keeps an idle connection ~17 minutes.
const TIMEOUT_MULTIPLIER: u8 = 7;

/// A configured tag, checked and encoded once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TagAddress {
    /// The tag as configured, e.g. `Program:Main.Recipe[3].Temp`.
    pub text: String,
    /// The request path bytes (rseip's encoding of the parsed tag path).
    path: Vec<u8>,
}

impl TagAddress {
    /// Parses and encodes a tag path with rseip's Logix tag-path parser.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let epath = EPath::parse_tag(text).map_err(|e| format!("{e}"))?;
        let path = encode_path(&epath)?;
        Ok(TagAddress {
            text: text.to_owned(),
            path,
        })
    }
}

/// Raw, already encoded path bytes, so composed paths go through rseip's `MessageRequest`.
struct RawPath(Vec<u8>);

impl Encode for RawPath {
    fn encode_by_ref<A: Encoder>(&self, buf: &mut BytesMut, _: &mut A) -> Result<(), A::Error> {
        buf.put_slice(&self.0);
        Ok(())
    }

    fn bytes_count(&self) -> usize {
        self.0.len()
    }
}

/// rseip's encoders are generic over an `Encoder`; requests are little-endian throughout.
#[derive(Default)]
struct LittleEndian;

macro_rules! le_methods {
    ($($name:ident: $ty:ty => $put:ident),* $(,)?) => {
        $(fn $name(&mut self, item: $ty, buf: &mut BytesMut) -> Result<(), Self::Error> {
            buf.$put(item);
            Ok(())
        })*
    };
}

impl Encoder for LittleEndian {
    type Error = ClientError;

    fn encode_bool(&mut self, item: bool, buf: &mut BytesMut) -> Result<(), Self::Error> {
        buf.put_u8(if item { 0xFF } else { 0 });
        Ok(())
    }

    le_methods! {
        encode_i8: i8 => put_i8,
        encode_u8: u8 => put_u8,
        encode_i16: i16 => put_i16_le,
        encode_u16: u16 => put_u16_le,
        encode_i32: i32 => put_i32_le,
        encode_u32: u32 => put_u32_le,
        encode_i64: i64 => put_i64_le,
        encode_u64: u64 => put_u64_le,
        encode_f32: f32 => put_f32_le,
        encode_f64: f64 => put_f64_le,
        encode_i128: i128 => put_i128_le,
        encode_u128: u128 => put_u128_le,
    }
}

/// Longest request path accepted (the path size travels as a byte counting 16-bit words).
const MAX_PATH_BYTES: usize = 510;

fn encode_path(path: &EPath) -> Result<Vec<u8>, String> {
    let len = path.bytes_count();
    if len > MAX_PATH_BYTES || !len.is_multiple_of(2) {
        return Err(format!(
            "request path of {len} bytes does not fit a CIP path"
        ));
    }
    let mut buf = BytesMut::with_capacity(len);
    path.encode_by_ref(&mut buf, &mut LittleEndian)
        .map_err(|e| e.to_string())?;
    Ok(buf.to_vec())
}

fn encode<P: Encode, D: Encode>(message: MessageRequest<P, D>) -> Result<Vec<u8>, String> {
    if message.path.bytes_count() > MAX_PATH_BYTES {
        return Err("request path too long".to_owned());
    }
    let mut buf = BytesMut::with_capacity(message.bytes_count());
    message
        .encode(&mut buf, &mut LittleEndian)
        .map_err(|e| e.to_string())?;
    Ok(buf.to_vec())
}

/// A logical instance segment of the width the instance needs (8, 16 or 32 bits).
fn instance_segment(instance: u32) -> Vec<u8> {
    if let Ok(small) = u8::try_from(instance) {
        vec![0x24, small]
    } else if let Ok(mid) = u16::try_from(instance) {
        let [lo, hi] = mid.to_le_bytes();
        vec![0x25, 0, lo, hi]
    } else {
        let mut out = vec![0x26, 0];
        out.extend_from_slice(&instance.to_le_bytes());
        out
    }
}

fn class_instance(class: u16, instance: u16) -> EPath {
    EPath::from(vec![Segment::Class(class), Segment::Instance(instance)])
}

/// The Forward Open parameters the collector asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenParams {
    /// Large Forward Open (0x5B) rather than Forward Open (0x54).
    pub large: bool,
    /// Connection size in bytes (includes the 2-byte sequence count).
    pub size: u16,
    /// Our connection serial number.
    pub serial: u16,
    /// Our originator serial number.
    pub originator: u32,
    /// The T->O connection id we propose.
    pub t_o_id: u32,
}

/// The identification of an open connection, for Forward Close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseParams {
    /// Connection serial number from the Forward Open.
    pub serial: u16,
    /// Originator serial number from the Forward Open.
    pub originator: u32,
}

/// Every request the collector can send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Get Attributes All on Identity instance 1.
    Identity,
    /// Get Attributes All on the program-name object: the controller's project name.
    ControllerName,
    /// Get Attribute List on the wall-clock object: the controller's clock.
    WallClock,
    /// Get Instance Attribute List on the Symbol object, controller scope or one program's,
    /// from instance `start`.
    ListSymbols {
        /// `None` for controller scope, else the program name (without `Program:`).
        program: Option<String>,
        /// First instance to list.
        start: u32,
    },
    /// Get Attribute List on a Template instance (definition size, structure size, member
    /// count, handle).
    TemplateAttributes {
        /// Template instance (the low 12 bits of a structure's symbol type).
        instance: u16,
    },
    /// Read Template: `bytes` bytes of the definition from `offset`.
    ReadTemplate {
        /// Template instance.
        instance: u16,
        /// Byte offset into the definition.
        offset: u32,
        /// How many bytes to read.
        bytes: u16,
    },
    /// Read Tag: `count` elements of a tag.
    ReadTag {
        /// The tag.
        tag: TagAddress,
        /// Element count.
        count: u16,
    },
    /// Read Tag Fragmented: `count` elements from byte `offset`.
    ReadTagFragmented {
        /// The tag.
        tag: TagAddress,
        /// Element count.
        count: u16,
        /// Byte offset of this fragment.
        offset: u32,
    },
    /// Multiple Service Packet to the message router carrying the given requests.
    Multiple(Vec<Request>),
    /// (Large) Forward Open to the connection manager: opens the explicit connection.
    ForwardOpen(OpenParams),
    /// Forward Close to the connection manager: closes it.
    ForwardClose(CloseParams),
}

impl Request {
    /// A short description naming the service, for errors and logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Request::Identity => "Get Attributes All (0x01) on Identity (class 0x01)".to_owned(),
            Request::ControllerName => {
                "Get Attributes All (0x01) on the program-name object (class 0x64)".to_owned()
            }
            Request::WallClock => {
                "Get Attribute List (0x03) on WallClockTime (class 0x8B)".to_owned()
            }
            Request::ListSymbols { program, start } => format!(
                "Get Instance Attribute List (0x55) on Symbol (class 0x6B) of {} from instance {start}",
                program
                    .as_deref()
                    .map_or_else(|| "the controller".to_owned(), |p| format!("Program:{p}"))
            ),
            Request::TemplateAttributes { instance } => format!(
                "Get Attribute List (0x03) on Template (class 0x6C) instance 0x{instance:03x}"
            ),
            Request::ReadTemplate {
                instance, offset, ..
            } => format!(
                "Read Template (0x4C) on Template (class 0x6C) instance 0x{instance:03x} from byte {offset}"
            ),
            Request::ReadTag { tag, count } => {
                format!("Read Tag (0x4C) {} x{count}", tag.text)
            }
            Request::ReadTagFragmented { tag, count, offset } => format!(
                "Read Tag Fragmented (0x52) {} x{count} from byte {offset}",
                tag.text
            ),
            Request::Multiple(requests) => format!(
                "Multiple Service Packet (0x0A) with {} requests",
                requests.len()
            ),
            Request::ForwardOpen(p) if p.large => {
                format!("Large Forward Open (0x5B) for {} bytes", p.size)
            }
            Request::ForwardOpen(p) => format!("Forward Open (0x54) for {} bytes", p.size),
            Request::ForwardClose(_) => "Forward Close (0x4E)".to_owned(),
        }
    }

    /// Whether this request goes to the connection manager (always unconnected).
    pub(crate) fn is_connection_management(&self) -> bool {
        matches!(self, Request::ForwardOpen(_) | Request::ForwardClose(_))
    }

    /// The message-router request bytes. Read, browse, identify and connection services
    /// only: this match is the collector's read-only boundary.
    pub(crate) fn encode(&self, route: &[u8]) -> Result<Vec<u8>, String> {
        let empty: &[u8] = &[];
        match self {
            Request::Identity => encode(MessageRequest::new(
                GET_ATTRIBUTES_ALL,
                class_instance(CLASS_IDENTITY, 1),
                empty,
            )),
            Request::ControllerName => encode(MessageRequest::new(
                GET_ATTRIBUTES_ALL,
                class_instance(CLASS_PROGRAM_NAME, 1),
                empty,
            )),
            Request::WallClock => encode(MessageRequest::new(
                GET_ATTRIBUTE_LIST,
                class_instance(CLASS_WALL_CLOCK, 1),
                [1u16, WALL_CLOCK_ATTRIBUTE],
            )),
            Request::ListSymbols { program, start } => {
                let mut prefix = EPath::new();
                if let Some(program) = program {
                    prefix = prefix.with_symbol(format!("Program:{program}"));
                }
                let mut path = encode_path(&prefix.with_class(CLASS_SYMBOL))?;
                path.extend_from_slice(&instance_segment(*start));
                let mut data = Vec::with_capacity(2 + 2 * SYMBOL_ATTRIBUTES.len());
                data.extend_from_slice(&(SYMBOL_ATTRIBUTES.len() as u16).to_le_bytes());
                for attribute in SYMBOL_ATTRIBUTES {
                    data.extend_from_slice(&attribute.to_le_bytes());
                }
                encode(MessageRequest::new(
                    GET_INSTANCE_ATTRIBUTE_LIST,
                    RawPath(path),
                    Bytes::from(data),
                ))
            }
            Request::TemplateAttributes { instance } => {
                let mut data = Vec::with_capacity(2 + 2 * TEMPLATE_ATTRIBUTES.len());
                data.extend_from_slice(&(TEMPLATE_ATTRIBUTES.len() as u16).to_le_bytes());
                for attribute in TEMPLATE_ATTRIBUTES {
                    data.extend_from_slice(&attribute.to_le_bytes());
                }
                encode(MessageRequest::new(
                    GET_ATTRIBUTE_LIST,
                    class_instance(CLASS_TEMPLATE, *instance),
                    Bytes::from(data),
                ))
            }
            Request::ReadTemplate {
                instance,
                offset,
                bytes,
            } => encode(MessageRequest::new(
                READ_TEMPLATE,
                class_instance(CLASS_TEMPLATE, *instance),
                (*offset, *bytes),
            )),
            Request::ReadTag { tag, count } => encode(MessageRequest::new(
                READ_TAG,
                RawPath(tag.path.clone()),
                *count,
            )),
            Request::ReadTagFragmented { tag, count, offset } => encode(MessageRequest::new(
                READ_TAG_FRAGMENTED,
                RawPath(tag.path.clone()),
                (*count, *offset),
            )),
            Request::Multiple(requests) => {
                let parts = requests
                    .iter()
                    .map(|r| {
                        if r.is_connection_management() || matches!(r, Request::Multiple(_)) {
                            Err(format!(
                                "{} cannot travel in a Multiple Service Packet",
                                r.describe()
                            ))
                        } else {
                            r.encode(route)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let count = parts.len();
                let header = 2 + 2 * count;
                let mut data =
                    Vec::with_capacity(header + parts.iter().map(Vec::len).sum::<usize>());
                data.extend_from_slice(
                    &u16::try_from(count)
                        .map_err(|e| e.to_string())?
                        .to_le_bytes(),
                );
                let mut offset = header;
                for part in &parts {
                    data.extend_from_slice(
                        &u16::try_from(offset)
                            .map_err(|e| e.to_string())?
                            .to_le_bytes(),
                    );
                    offset += part.len();
                }
                for part in parts {
                    data.extend_from_slice(&part);
                }
                encode(MessageRequest::new(
                    MULTIPLE_SERVICE_PACKET,
                    class_instance(CLASS_MESSAGE_ROUTER, 1),
                    Bytes::from(data),
                ))
            }
            Request::ForwardOpen(p) => {
                let params = ConnectionParameters {
                    redundant_owner: false,
                    connection_type: ConnectionType::P2P,
                    variable_length: VariableLength::Variable,
                    priority: Priority::Low,
                    connection_size: p.size,
                };
                let mut connection_path = EPath::from(route_segments(route));
                connection_path = connection_path
                    .with_class(CLASS_MESSAGE_ROUTER)
                    .with_instance(1);
                let options = OpenOptions {
                    o_t_connection_id: 0,
                    t_o_connection_id: p.t_o_id,
                    priority_tick_time: 0x0A,
                    timeout_ticks: 0x0E,
                    connection_serial_number: p.serial,
                    vendor_id: ORIGINATOR_VENDOR,
                    originator_serial_number: p.originator,
                    o_t_rpi: RPI_US,
                    t_o_rpi: RPI_US,
                    timeout_multiplier: TIMEOUT_MULTIPLIER,
                    connection_path,
                    o_t_params: params.clone(),
                    t_o_params: params,
                    transport_direction: Direction::Server,
                    transport_class: TransportClass::Class3,
                    transport_trigger: TriggerType::Application,
                    large_open: p.large,
                };
                encode(MessageRequest::new(
                    if p.large {
                        LARGE_FORWARD_OPEN
                    } else {
                        FORWARD_OPEN
                    },
                    class_instance(CLASS_CONNECTION_MANAGER, 1),
                    options,
                ))
            }
            Request::ForwardClose(p) => {
                let mut connection_path = EPath::from(route_segments(route));
                connection_path = connection_path
                    .with_class(CLASS_MESSAGE_ROUTER)
                    .with_instance(1);
                let close = rseip::cip::connection::ForwardCloseRequest {
                    priority_time_ticks: 0x0A,
                    timeout_ticks: 0x0E,
                    connection_serial_number: p.serial,
                    originator_vendor_id: ORIGINATOR_VENDOR,
                    originator_serial_number: p.originator,
                    connection_path,
                };
                encode(MessageRequest::new(
                    FORWARD_CLOSE,
                    class_instance(CLASS_CONNECTION_MANAGER, 1),
                    close,
                ))
            }
        }
    }
}

/// The backplane route to the controller: port 1 (backplane), link = slot. Routes are kept
/// as hops encoded `port, link length, link bytes`, so a link can be a slot or an address.
pub(crate) fn backplane_route(slot: u8) -> Vec<u8> {
    vec![0x01, 1, slot]
}

/// A configured multi-hop route (`route = "1/2/2/10.0.0.5/1/0"`), encoded as hops.
pub(crate) fn configured_route(hops: &[(u8, otdrift_config::CipLink)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (port, link) in hops {
        let bytes = match link {
            otdrift_config::CipLink::Slot(slot) => vec![*slot],
            // An EtherNet/IP hop names the next node by its address as ASCII text, which the
            // port segment carries as an extended link address.
            otdrift_config::CipLink::Address(ip) => ip.to_string().into_bytes(),
        };
        out.push(*port);
        out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
        out.extend(bytes);
    }
    out
}

/// The route as an operator wrote it: "slot (backplane port 1, slot 2)" for the one-hop
/// backplane route, "route 1/2/2/10.0.0.5/1/0" for a configured one.
pub(crate) fn describe_route(route: &[u8]) -> String {
    let mut hops = Vec::new();
    let mut rest = route;
    while let [port, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let Some(link) = tail.get(..len) else {
            break;
        };
        let link = match link {
            [slot] => slot.to_string(),
            text => String::from_utf8_lossy(text).into_owned(),
        };
        hops.push((*port, link));
        rest = &tail[len..];
    }
    match hops.as_slice() {
        [(1, slot)] => format!("slot (backplane port 1, slot {slot})"),
        _ => format!(
            "route {}",
            hops.iter()
                .map(|(p, l)| format!("{p}/{l}"))
                .collect::<Vec<_>>()
                .join("/")
        ),
    }
}

fn route_segments(route: &[u8]) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut rest = route;
    while let [port, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let Some(link) = tail.get(..len) else {
            break;
        };
        segments.push(Segment::Port(PortSegment {
            port: u16::from(*port & 0x0F),
            link: Bytes::copy_from_slice(link),
        }));
        rest = &tail[len..];
    }
    segments
}

/// Wraps an encoded message-router request in an Unconnected Send to the connection manager
/// with the route to the controller. `timeout_ms` becomes the routing timeout.
pub(crate) fn unconnected_send(
    message: &[u8],
    route: &[u8],
    timeout_ms: u64,
) -> Result<Vec<u8>, String> {
    // Split our own encoding back into its parts so rseip's UnconnectedSend encoder (which
    // takes a MessageRequest) can carry it.
    let (service, rest) = message
        .split_first()
        .ok_or_else(|| "empty message".to_owned())?;
    let (words, rest) = rest
        .split_first()
        .ok_or_else(|| "message without a path".to_owned())?;
    let path_len = usize::from(*words) * 2;
    let path = rest
        .get(..path_len)
        .ok_or_else(|| "message path shorter than its size".to_owned())?;
    let data = rest.get(path_len..).unwrap_or(&[]);
    // Time tick 10 = 1024 ms per tick; at least one tick, at most 255.
    let ticks = u8::try_from(timeout_ms.div_ceil(1024).clamp(1, 255)).unwrap_or(255);
    let send = UnconnectedSend {
        priority_ticks: 0x0A,
        timeout_ticks: ticks,
        path: EPath::from(route_segments(route)),
        data: MessageRequest::new(
            *service,
            RawPath(path.to_vec()),
            Bytes::copy_from_slice(data),
        ),
    };
    encode(MessageRequest::new(
        UNCONNECTED_SEND,
        class_instance(CLASS_CONNECTION_MANAGER, 1),
        send,
    ))
}

/// The service code a request's reply answers.
pub(crate) fn request_service(request: &Request) -> u8 {
    match request {
        Request::Identity | Request::ControllerName => GET_ATTRIBUTES_ALL,
        Request::WallClock | Request::TemplateAttributes { .. } => GET_ATTRIBUTE_LIST,
        Request::ListSymbols { .. } => GET_INSTANCE_ATTRIBUTE_LIST,
        Request::ReadTemplate { .. } | Request::ReadTag { .. } => READ_TAG,
        Request::ReadTagFragmented { .. } => READ_TAG_FRAGMENTED,
        Request::Multiple(_) => MULTIPLE_SERVICE_PACKET,
        Request::ForwardOpen(p) if p.large => LARGE_FORWARD_OPEN,
        Request::ForwardOpen(_) => FORWARD_OPEN,
        Request::ForwardClose(_) => FORWARD_CLOSE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Service codes the collector may send, by the class they address.
    fn allowed(service: u8, path: &[u8]) -> bool {
        let cm = [0x20, 0x06, 0x24, 0x01];
        match service {
            GET_ATTRIBUTES_ALL
            | GET_ATTRIBUTE_LIST
            | GET_INSTANCE_ATTRIBUTE_LIST
            | MULTIPLE_SERVICE_PACKET
            | READ_TAG
            | READ_TAG_FRAGMENTED => {
                // 0x52 is Unconnected Send on the connection manager, Read Tag Fragmented
                // on a tag; both read-only.
                true
            }
            // Forward Open / Large Forward Open / Forward Close only to the connection
            // manager: 0x4E anywhere else would be Read-Modify-Write.
            FORWARD_OPEN | LARGE_FORWARD_OPEN | FORWARD_CLOSE => path == cm,
            _ => false,
        }
    }

    fn check(message: &[u8]) {
        let service = message[0];
        let words = usize::from(message[1]);
        let path = &message[2..2 + 2 * words];
        assert!(
            allowed(service, path),
            "service 0x{service:02x} path {path:02x?}"
        );
        assert!(
            ![0x02, 0x04, 0x05, 0x06, 0x07, 0x10, 0x4D, 0x53].contains(&service),
            "state-changing service 0x{service:02x}"
        );
        if service == MULTIPLE_SERVICE_PACKET {
            let data = &message[2 + 2 * words..];
            let count = usize::from(u16::from_le_bytes([data[0], data[1]]));
            for i in 0..count {
                let start = usize::from(u16::from_le_bytes([data[2 + 2 * i], data[3 + 2 * i]]));
                check(&data[start..]);
            }
        }
    }

    #[test]
    fn only_read_browse_identify_and_connection_services_can_be_built() {
        let tag = TagAddress::parse("Program:Main.Recipe[3].Temp").expect("tag");
        let route = backplane_route(2);
        let all = vec![
            Request::Identity,
            Request::ControllerName,
            Request::WallClock,
            Request::ListSymbols {
                program: None,
                start: 0,
            },
            Request::ListSymbols {
                program: Some("Main".into()),
                start: 70_000,
            },
            Request::TemplateAttributes { instance: 0x123 },
            Request::ReadTemplate {
                instance: 0x123,
                offset: 0,
                bytes: 100,
            },
            Request::ReadTag {
                tag: tag.clone(),
                count: 1,
            },
            Request::ReadTagFragmented {
                tag: tag.clone(),
                count: 1,
                offset: 400,
            },
            Request::ForwardOpen(OpenParams {
                large: true,
                size: 4002,
                serial: 1,
                originator: 2,
                t_o_id: 3,
            }),
            Request::ForwardOpen(OpenParams {
                large: false,
                size: 504,
                serial: 1,
                originator: 2,
                t_o_id: 3,
            }),
            Request::ForwardClose(CloseParams {
                serial: 1,
                originator: 2,
            }),
        ];
        let mut batch = Vec::new();
        for request in &all {
            let message = request.encode(&route).expect("encodes");
            check(&message);
            let wrapped = unconnected_send(&message, &route, 3000).expect("wraps");
            assert_eq!(wrapped[0], UNCONNECTED_SEND);
            if !request.is_connection_management() {
                batch.push(request.clone());
            }
        }
        let multiple = Request::Multiple(batch).encode(&route).expect("msp");
        check(&multiple);
        assert!(
            Request::Multiple(vec![Request::ForwardClose(CloseParams {
                serial: 1,
                originator: 1
            })])
            .encode(&route)
            .is_err()
        );
    }

    #[test]
    fn tag_paths_are_encoded_as_symbolic_and_element_segments() {
        let tag = TagAddress::parse("Program:Main.Oven_SP").expect("tag");
        let message = Request::ReadTag { tag, count: 1 }
            .encode(&[])
            .expect("encodes");
        assert_eq!(message[0], 0x4C);
        assert_eq!(message[2], 0x91);
        assert_eq!(usize::from(message[3]), "Program:Main".len());
        let tag = TagAddress::parse("Arr[300]").expect("tag");
        let message = Request::ReadTag { tag, count: 2 }
            .encode(&[])
            .expect("encodes");
        assert_eq!(
            &message[2..],
            &[0x91, 3, b'A', b'r', b'r', 0, 0x29, 0, 0x2C, 0x01, 2, 0]
        );
        assert!(TagAddress::parse("1bad").is_err());
        assert_eq!(instance_segment(70_000)[0], 0x26);
    }
}
