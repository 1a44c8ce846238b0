//! The simulated controller's message router: CIP services on its objects and tags.
//!
//! Every request is parsed with bounds checks; anything malformed gets the CIP status a
//! Logix controller would give (path segment error, not enough data, ...), never a panic.

use std::collections::BTreeMap;

use super::state::{CipState, Quirk, Tag, Ty, Val, element_count};

/// Message size of unconnected messaging.
pub(crate) const UNCONNECTED_SIZE: usize = 504;
/// Largest connection size granted (Large Forward Open).
pub(crate) const MAX_CONNECTION_SIZE: u16 = 4002;

/// One logged CIP service.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub service: u8,
    pub name: String,
    pub detail: String,
    pub address: Option<u32>,
    pub count: Option<u32>,
    pub write: bool,
    pub outcome: String,
}

/// An open explicit connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conn {
    pub o_t_id: u32,
    pub t_o_id: u32,
    pub serial: u16,
    pub vendor: u16,
    pub originator: u32,
    pub size: u16,
}

/// What one message needs and produces.
pub(crate) struct Ctx<'a> {
    pub state: &'a mut CipState,
    pub capacity: usize,
    pub log: Vec<Entry>,
    /// Close the session instead of answering.
    pub close: bool,
    /// Answer with this encapsulation status and no reply, then close the session.
    pub encap_status: Option<u32>,
    pub conns: &'a mut Vec<Conn>,
    pub next_conn_id: &'a mut u32,
}

/// A path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Class(u32),
    Instance(u32),
    Attribute(u32),
    Element(u32),
    Symbol(String),
    Port(u8, u8),
}

type Fail = (u8, Vec<u16>);

fn fail(general: u8) -> Fail {
    (general, Vec::new())
}

struct Rd<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Rd<'a> {
    fn new(b: &'a [u8]) -> Self {
        Rd { b, p: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        let end = self.p.checked_add(n).ok_or_else(|| fail(0x13))?;
        let s = self.b.get(self.p..end).ok_or_else(|| fail(0x13))?;
        self.p = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Fail> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Fail> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, Fail> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn rest(&mut self) -> &'a [u8] {
        let r = self.b.get(self.p..).unwrap_or(&[]);
        self.p = self.b.len();
        r
    }
    fn left(&self) -> usize {
        self.b.len().saturating_sub(self.p)
    }
}

fn parse_path(bytes: &[u8]) -> Result<Vec<Seg>, Fail> {
    let mut r = Rd::new(bytes);
    let mut out = Vec::new();
    let bad = || (0x04, vec![0]);
    while r.left() > 0 {
        let kind = r.u8().map_err(|_| bad())?;
        let seg = match kind {
            0x01..=0x0F => Seg::Port(kind, r.u8().map_err(|_| bad())?),
            0x20 => Seg::Class(u32::from(r.u8().map_err(|_| bad())?)),
            0x21 => {
                r.u8().map_err(|_| bad())?;
                Seg::Class(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x24 => Seg::Instance(u32::from(r.u8().map_err(|_| bad())?)),
            0x25 => {
                r.u8().map_err(|_| bad())?;
                Seg::Instance(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x26 => {
                r.u8().map_err(|_| bad())?;
                Seg::Instance(r.u32().map_err(|_| bad())?)
            }
            0x30 => Seg::Attribute(u32::from(r.u8().map_err(|_| bad())?)),
            0x31 => {
                r.u8().map_err(|_| bad())?;
                Seg::Attribute(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x28 => Seg::Element(u32::from(r.u8().map_err(|_| bad())?)),
            0x29 => {
                r.u8().map_err(|_| bad())?;
                Seg::Element(u32::from(r.u16().map_err(|_| bad())?))
            }
            0x2A => {
                r.u8().map_err(|_| bad())?;
                Seg::Element(r.u32().map_err(|_| bad())?)
            }
            0x91 => {
                let len = usize::from(r.u8().map_err(|_| bad())?);
                let name = r.take(len).map_err(|_| bad())?;
                if len % 2 == 1 {
                    r.u8().map_err(|_| bad())?;
                }
                let name = std::str::from_utf8(name).map_err(|_| bad())?;
                Seg::Symbol(name.to_owned())
            }
            _ => return Err(bad()),
        };
        out.push(seg);
    }
    Ok(out)
}

fn path_text(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Symbol(n) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(n);
            }
            Seg::Element(e) => out.push_str(&format!("[{e}]")),
            Seg::Class(c) => out.push_str(&format!("class=0x{c:02x} ")),
            Seg::Instance(i) => out.push_str(&format!("instance={i} ")),
            Seg::Attribute(a) => out.push_str(&format!("attribute={a} ")),
            Seg::Port(p, l) => out.push_str(&format!("port={p}/{l} ")),
        }
    }
    out.trim_end().to_owned()
}

/// Services that change device state: what otdrift must never send.
pub(crate) fn is_write(service: u8, class: Option<u32>) -> bool {
    match service {
        0x4E => class != Some(0x06), // Forward Close on the connection manager, else Read-Modify-Write
        0x02 | 0x04 | 0x05 | 0x06 | 0x07 | 0x08 | 0x09 | 0x0D | 0x10 | 0x15 | 0x16 | 0x4D
        | 0x53 => true,
        _ => false,
    }
}

fn service_name(service: u8, class: Option<u32>, symbolic: bool) -> &'static str {
    match (service, class, symbolic) {
        (0x01, _, _) => "get_attributes_all",
        (0x02, _, _) => "set_attributes_all",
        (0x03, _, _) => "get_attribute_list",
        (0x04, _, _) => "set_attribute_list",
        (0x05, _, _) => "reset",
        (0x06, _, _) => "start",
        (0x07, _, _) => "stop",
        (0x0A, _, _) => "multiple_service_packet",
        (0x0E, _, _) => "get_attribute_single",
        (0x10, _, _) => "set_attribute_single",
        (0x4C, Some(0x6C), false) => "read_template",
        (0x4C, _, _) => "read_tag",
        (0x4D, _, _) => "write_tag",
        (0x4E, Some(0x06), _) => "forward_close",
        (0x4E, _, _) => "read_modify_write_tag",
        (0x52, Some(0x06), false) => "unconnected_send",
        (0x52, _, _) => "read_tag_fragmented",
        (0x53, _, _) => "write_tag_fragmented",
        (0x54, _, _) => "forward_open",
        (0x55, _, _) => "get_instance_attribute_list",
        (0x5B, _, _) => "large_forward_open",
        _ => "unknown_service",
    }
}

fn reply(service: u8, status: u8, ext: &[u16], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 2 * ext.len() + data.len());
    out.push(service | 0x80);
    out.push(0);
    out.push(status);
    out.push(ext.len() as u8);
    for e in ext {
        out.extend_from_slice(&e.to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn outcome(status: u8, ext: &[u16]) -> String {
    if status == 0 {
        "ok".to_owned()
    } else if let Some(e) = ext.first() {
        format!("status 0x{status:02x} ext 0x{e:04x}")
    } else {
        format!("status 0x{status:02x}")
    }
}

/// Handles one message-router request and returns the reply bytes (empty when the
/// session must be closed instead).
pub(crate) fn handle(ctx: &mut Ctx<'_>, message: &[u8], nested: bool) -> Vec<u8> {
    let mut r = Rd::new(message);
    let (Ok(service), Ok(words)) = (r.u8(), r.u8()) else {
        ctx.log.push(Entry {
            service: 0,
            name: "malformed".into(),
            detail: format!("{} bytes", message.len()),
            address: None,
            count: None,
            write: false,
            outcome: "status 0x04".into(),
        });
        return reply(0, 0x04, &[], &[]);
    };
    let path_bytes = match r.take(usize::from(words) * 2) {
        Ok(p) => p,
        Err(_) => {
            return logged(
                ctx,
                service,
                None,
                false,
                "short path".into(),
                None,
                None,
                reply(service, 0x04, &[0], &[]),
            );
        }
    };
    let data = r.rest();
    let segs = match parse_path(path_bytes) {
        Ok(s) => s,
        Err((st, ext)) => {
            return logged(
                ctx,
                service,
                None,
                false,
                "bad path".into(),
                None,
                None,
                reply(service, st, &ext, &[]),
            );
        }
    };
    let class = segs.iter().find_map(|s| match s {
        Seg::Class(c) => Some(*c),
        _ => None,
    });
    let symbolic = matches!(segs.first(), Some(Seg::Symbol(_)));
    // A tag path: symbolic, or a Symbol-instance path for the tag services.
    let tag_path = (symbolic && service != 0x55)
        || (class == Some(0x6B) && matches!(service, 0x4C | 0x4D | 0x4E | 0x52 | 0x53));
    let write = is_write(service, if tag_path { None } else { class });
    let detail = path_text(&segs);

    // Unconnected Send: unwrap and route.
    if service == 0x52 && class == Some(0x06) && !tag_path {
        return unconnected_send(ctx, data);
    }
    let connection_manager = class == Some(0x06) && !tag_path;
    if ctx.state.quirks.get(Quirk::Busy) && !connection_manager {
        return logged(
            ctx,
            service,
            class,
            write,
            format!("{detail} (busy quirk)"),
            class,
            None,
            reply(service, 0x02, &[], &[]),
        );
    }
    if service == 0x0A && !nested {
        return multiple(ctx, &segs, data);
    }
    if let Some(status) = ctx.state.quirks.refuse_all_status()
        && !connection_manager
    {
        // Logix adds one extended status word (0) to its path errors.
        let ext: &[u16] = if matches!(status, 0x04 | 0x05) {
            &[0]
        } else {
            &[]
        };
        return logged(
            ctx,
            service,
            class,
            write,
            format!("{detail} (refuse-all quirk)"),
            class,
            None,
            reply(service, status, ext, &[]),
        );
    }
    let result: Result<(Vec<u8>, Option<u8>), Fail> = if write {
        apply_write(ctx, service, &segs, data, tag_path).map(|d| (d, None))
    } else {
        match (service, class, symbolic) {
            (0x55, Some(0x6B), _) => {
                list_symbols(ctx, &segs, data).map(|(d, st)| (d, (st != 0).then_some(st)))
            }
            (0x4C, _, _) if tag_path => read_tag(ctx, &segs, data, false),
            (0x52, _, _) if tag_path => read_tag(ctx, &segs, data, true),
            (0x54 | 0x5B, Some(0x06), false) => forward_open(ctx, service, data).map(|d| (d, None)),
            (0x4E, Some(0x06), false) => forward_close(ctx, data).map(|d| (d, None)),
            (0x01, Some(0x01), false) => Ok((identity(ctx.state), None)),
            (0x0E, Some(0x01), false) => identity_attribute(ctx.state, &segs).map(|d| (d, None)),
            (0x01, Some(0x64), false) if ctx.state.quirks.get(Quirk::NoProgramName) => {
                Err(fail(0x08))
            }
            (0x01, Some(0x64), false) => {
                let name = ctx.state.name.as_bytes();
                let mut d = (name.len() as u16).to_le_bytes().to_vec();
                d.extend_from_slice(name);
                Ok((d, None))
            }
            // cpppo's shape: attribute 0x0B, status 0x16 (object does not exist), no count.
            (0x03, Some(0x8B), false) if ctx.state.quirks.get(Quirk::GarbledClock) => {
                Ok((vec![0x0B, 0, 0x16, 0], None))
            }
            (0x03, Some(0x8B), false) => wall_clock(data).map(|d| (d, None)),
            (0x03, Some(0x6C), false) => {
                template_attributes(ctx.state, &segs, data).map(|d| (d, None))
            }
            (0x4C, Some(0x6C), false) if ctx.state.quirks.get(Quirk::RefuseTemplate) => {
                Err((0x05, vec![0]))
            }
            (0x4C, Some(0x6C), false) => read_template(ctx, &segs, data),
            (0x0A, _, _) => Err(fail(0x08)),
            (_, Some(0x01 | 0x02 | 0x06 | 0x64 | 0x6B | 0x6C | 0x8B), _) => Err(fail(0x08)),
            _ => Err(fail(0x05)),
        }
    };
    if ctx.close {
        let outcome = match ctx.encap_status {
            Some(status) => format!("encapsulation status 0x{status:04x}, session closed (quirk)"),
            None => "session closed (quirk)".to_owned(),
        };
        ctx.log.push(Entry {
            service,
            name: service_name(service, class, tag_path).into(),
            detail,
            address: class,
            count: None,
            write,
            outcome,
        });
        return Vec::new();
    }
    let count = data
        .get(..2)
        .filter(|_| matches!(service, 0x4C | 0x52) && tag_path)
        .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])));
    let bytes = match result {
        Ok((d, Some(st))) => reply(service, st, &[], &d),
        Ok((d, None)) => reply(service, 0, &[], &d),
        Err((st, ext)) => reply(service, st, &ext, &[]),
    };
    let st = bytes.get(2).copied().unwrap_or(0);
    let ext: Vec<u16> = if bytes.get(3).copied().unwrap_or(0) > 0 {
        bytes
            .get(4..6)
            .map(|b| vec![u16::from_le_bytes([b[0], b[1]])])
            .unwrap_or_default()
    } else {
        vec![]
    };
    ctx.log.push(Entry {
        service,
        name: service_name(service, class, tag_path).into(),
        detail,
        address: class,
        count,
        write,
        outcome: outcome(st, &ext),
    });
    bytes
}

#[allow(clippy::too_many_arguments)]
fn logged(
    ctx: &mut Ctx<'_>,
    service: u8,
    class: Option<u32>,
    write: bool,
    detail: String,
    address: Option<u32>,
    count: Option<u32>,
    bytes: Vec<u8>,
) -> Vec<u8> {
    let st = bytes.get(2).copied().unwrap_or(0);
    ctx.log.push(Entry {
        service,
        name: service_name(service, class, false).into(),
        detail,
        address,
        count,
        write,
        outcome: outcome(st, &[]),
    });
    bytes
}

fn unconnected_send(ctx: &mut Ctx<'_>, data: &[u8]) -> Vec<u8> {
    let parsed = (|| -> Result<(&[u8], Vec<Seg>), Fail> {
        let mut r = Rd::new(data);
        let _priority = r.u8()?;
        let _ticks = r.u8()?;
        let size = usize::from(r.u16()?);
        let message = r.take(size)?;
        if size % 2 == 1 {
            r.u8()?;
        }
        let words = usize::from(r.u8()?);
        let _reserved = r.u8()?;
        let route = parse_path(r.take(words * 2)?)?;
        Ok((message, route))
    })();
    let (message, route) = match parsed {
        Ok(p) => p,
        Err((st, ext)) => {
            return logged(
                ctx,
                0x52,
                Some(0x06),
                false,
                "unconnected send".into(),
                None,
                None,
                reply(0x52, st, &ext, &[]),
            );
        }
    };
    match route.as_slice() {
        [] => {}
        [Seg::Port(1, link)] if *link == ctx.state.slot => {}
        _ => {
            // No controller at that address: the routing failure comes back from the
            // connection manager as an Unconnected Send reply.
            let bytes = reply(0x52, 0x01, &[0x0312], &[0]);
            ctx.log.push(Entry {
                service: 0x52,
                name: "unconnected_send".into(),
                detail: format!(
                    "route {} does not reach the controller in slot {}",
                    path_text(&route),
                    ctx.state.slot
                ),
                address: Some(0x06),
                count: None,
                write: false,
                outcome: "status 0x01 ext 0x0312".into(),
            });
            return bytes;
        }
    }
    let saved = ctx.capacity;
    ctx.capacity = UNCONNECTED_SIZE;
    let out = handle(ctx, message, false);
    ctx.capacity = saved;
    out
}

fn multiple(ctx: &mut Ctx<'_>, segs: &[Seg], data: &[u8]) -> Vec<u8> {
    let entry = |ctx: &mut Ctx<'_>, n: Option<u32>, st: u8| {
        ctx.log.push(Entry {
            service: 0x0A,
            name: "multiple_service_packet".into(),
            detail: format!("{} services", n.unwrap_or(0)),
            address: Some(0x02),
            count: n,
            write: false,
            outcome: outcome(st, &[]),
        });
    };
    if segs != [Seg::Class(0x02), Seg::Instance(1)] {
        entry(ctx, None, 0x05);
        return reply(0x0A, 0x05, &[], &[]);
    }
    if ctx.state.quirks.get(Quirk::NoMultiService) {
        entry(ctx, None, 0x08);
        return reply(0x0A, 0x08, &[], &[]);
    }
    let parsed = (|| -> Result<Vec<&[u8]>, Fail> {
        let mut r = Rd::new(data);
        let count = usize::from(r.u16()?);
        if count == 0 || 2 + 2 * count > data.len() {
            return Err(fail(0x13));
        }
        let mut offsets = Vec::with_capacity(count);
        for _ in 0..count {
            offsets.push(usize::from(r.u16()?));
        }
        let header = 2 + 2 * count;
        let mut parts = Vec::with_capacity(count);
        for (i, start) in offsets.iter().enumerate() {
            let end = offsets.get(i + 1).copied().unwrap_or(data.len());
            if *start < header || end < *start || end > data.len() {
                return Err(fail(0x13));
            }
            parts.push(data.get(*start..end).ok_or_else(|| fail(0x13))?);
        }
        Ok(parts)
    })();
    let parts = match parsed {
        Ok(p) => p,
        Err((st, _)) => {
            entry(ctx, None, st);
            return reply(0x0A, st, &[], &[]);
        }
    };
    let n = parts.len();
    entry(ctx, Some(n as u32), 0);
    let mut replies = Vec::with_capacity(n);
    let mut used = 4 + 2 + 2 * n;
    for part in parts {
        let mut one = handle(ctx, part, true);
        if ctx.close {
            return Vec::new();
        }
        if used + one.len() > ctx.capacity {
            let service = part.first().copied().unwrap_or(0);
            one = reply(service, 0x11, &[], &[]);
        }
        used += one.len();
        replies.push(one);
    }
    let failed = replies.iter().any(|r| r.get(2).copied().unwrap_or(0) != 0);
    let mut body = Vec::new();
    if !ctx.state.quirks.get(Quirk::MspNoHeader) {
        body.extend_from_slice(&(n as u16).to_le_bytes());
        let mut offset = 2 + 2 * n;
        let broken = ctx.state.quirks.get(Quirk::BrokenMsp);
        for (i, r) in replies.iter().enumerate() {
            // broken-msp: the last offset points past the end of the reply.
            let shown = if broken && i + 1 == n {
                offset + 0x100
            } else {
                offset
            };
            body.extend_from_slice(&(shown as u16).to_le_bytes());
            offset += r.len();
        }
    }
    for r in replies {
        body.extend_from_slice(&r);
    }
    reply(0x0A, if failed { 0x1E } else { 0 }, &[], &body)
}

fn identity(state: &CipState) -> Vec<u8> {
    let id = &state.identity;
    if state.quirks.get(Quirk::PlaceholderIdentity) {
        let mut d = vec![0u8; 14];
        d.push(0);
        return d;
    }
    let mut d = Vec::new();
    d.extend_from_slice(&id.vendor_id.to_le_bytes());
    d.extend_from_slice(&id.device_type.to_le_bytes());
    d.extend_from_slice(&id.product_code.to_le_bytes());
    d.push(id.major);
    d.push(id.minor);
    d.extend_from_slice(&id.status.to_le_bytes());
    d.extend_from_slice(&id.serial.to_le_bytes());
    let name = id.product_name.as_bytes();
    d.push(name.len().min(255) as u8);
    d.extend_from_slice(&name[..name.len().min(255)]);
    d
}

fn identity_attribute(state: &CipState, segs: &[Seg]) -> Result<Vec<u8>, Fail> {
    let attr = segs.iter().find_map(|s| match s {
        Seg::Attribute(a) => Some(*a),
        _ => None,
    });
    let id = &state.identity;
    Ok(match attr {
        Some(1) => id.vendor_id.to_le_bytes().to_vec(),
        Some(2) => id.device_type.to_le_bytes().to_vec(),
        Some(3) => id.product_code.to_le_bytes().to_vec(),
        Some(4) => vec![id.major, id.minor],
        Some(5) => id.status.to_le_bytes().to_vec(),
        Some(6) => id.serial.to_le_bytes().to_vec(),
        Some(7) => {
            let name = id.product_name.as_bytes();
            let mut d = vec![name.len().min(255) as u8];
            d.extend_from_slice(&name[..name.len().min(255)]);
            d
        }
        _ => return Err(fail(0x14)),
    })
}

fn wall_clock(data: &[u8]) -> Result<Vec<u8>, Fail> {
    let mut r = Rd::new(data);
    let count = r.u16()?;
    let mut out = count.to_le_bytes().to_vec();
    for _ in 0..count.min(16) {
        let id = r.u16()?;
        out.extend_from_slice(&id.to_le_bytes());
        if id == 0x0B {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&us.to_le_bytes());
        } else {
            out.extend_from_slice(&0x14u16.to_le_bytes());
        }
    }
    Ok(out)
}

/// A symbol entry as the Symbol object lists it.
struct SymbolEntry {
    instance: u32,
    name: String,
    kind: u16,
    dims: [u32; 3],
    size: u16,
}

fn scope_entries(state: &CipState, program: Option<&str>) -> Result<Vec<SymbolEntry>, Fail> {
    let mut out = Vec::new();
    let tag_entry = |t: &Tag| -> SymbolEntry {
        let mut dims = [0u32; 3];
        for (i, d) in t.dims.iter().take(3).enumerate() {
            dims[i] = *d;
        }
        let size = state
            .size_align(&t.ty, 0)
            .map(|(s, _)| s as u16)
            .unwrap_or(0);
        SymbolEntry {
            instance: t.instance,
            name: t.name.clone(),
            kind: state.symbol_type(t),
            dims,
            size,
        }
    };
    match program {
        None => {
            out.push(SymbolEntry {
                instance: 3,
                name: "__CIP_Internal".into(),
                kind: 0x10C4,
                dims: [0; 3],
                size: 4,
            });
            out.push(SymbolEntry {
                instance: 4,
                name: "Map:Local".into(),
                kind: 0x1069,
                dims: [0; 3],
                size: 0,
            });
            if state.has_audit_tags() {
                out.push(SymbolEntry {
                    instance: 8,
                    name: super::AUDIT_TAG.into(),
                    kind: 0x00C5,
                    dims: [0; 3],
                    size: 8,
                });
                out.push(SymbolEntry {
                    instance: 9,
                    name: super::CHANGES_TAG.into(),
                    kind: 0x00C5,
                    dims: [0; 3],
                    size: 8,
                });
            }
            for (i, task) in state.tasks.iter().enumerate() {
                out.push(SymbolEntry {
                    instance: 0x10 + i as u32,
                    name: format!("Task:{task}"),
                    kind: 0x1070,
                    dims: [0; 3],
                    size: 0,
                });
            }
            for p in &state.programs {
                out.push(SymbolEntry {
                    instance: p.instance,
                    name: format!("Program:{}", p.name),
                    kind: 0x1068,
                    dims: [0; 3],
                    size: 0,
                });
            }
            for t in state.tags.iter().filter(|t| t.scope.is_none()) {
                out.push(tag_entry(t));
            }
        }
        Some(name) => {
            let idx = state.find_program(name).ok_or_else(|| (0x05, vec![0]))?;
            let p = &state.programs[idx];
            for (i, r) in p.routines.iter().enumerate() {
                out.push(SymbolEntry {
                    instance: 0x0100_0000 + p.instance * 0x100 + i as u32,
                    name: format!("Routine:{r}"),
                    kind: 0x106D,
                    dims: [0; 3],
                    size: 0,
                });
            }
            for t in state.tags.iter().filter(|t| {
                t.scope
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(name))
            }) {
                out.push(tag_entry(t));
            }
        }
    }
    out.sort_by_key(|e| e.instance);
    Ok(out)
}

fn list_symbols(ctx: &mut Ctx<'_>, segs: &[Seg], data: &[u8]) -> Result<(Vec<u8>, u8), Fail> {
    if ctx.state.quirks.get(Quirk::BrowseDropsSession) {
        ctx.close = true;
        return Err(fail(0x08));
    }
    if ctx.state.quirks.get(Quirk::BrowseEncapUnsupported) {
        ctx.close = true;
        ctx.encap_status = Some(0x0008);
        return Err(fail(0x08));
    }
    if ctx.state.quirks.get(Quirk::NoBrowse) {
        return Err(fail(0x08));
    }
    let (program, rest) = match segs {
        [Seg::Symbol(p), rest @ ..] => {
            let name = p
                .get(..8)
                .filter(|h| h.eq_ignore_ascii_case("Program:"))
                .and_then(|_| p.get(8..))
                .ok_or_else(|| (0x05, vec![0]))?;
            (Some(name.to_owned()), rest)
        }
        rest => (None, rest),
    };
    let start = match rest {
        [Seg::Class(0x6B), Seg::Instance(i)] => *i,
        [Seg::Class(0x6B)] => 0,
        _ => return Err((0x04, vec![0])),
    };
    let mut r = Rd::new(data);
    let count = usize::from(r.u16()?);
    if count == 0 || count > 16 {
        return Err(fail(0x0A));
    }
    let mut attrs = Vec::with_capacity(count);
    for _ in 0..count {
        let a = r.u16()?;
        if ![1, 2, 3, 5, 6, 7, 8, 10].contains(&a) {
            return Err(fail(0x14));
        }
        attrs.push(a);
    }
    let entries = scope_entries(ctx.state, program.as_deref())?;
    let page_limit = if ctx.state.quirks.get(Quirk::PartialPaging) {
        3
    } else {
        usize::MAX
    };
    let budget = ctx.capacity.saturating_sub(4);
    let mut out = Vec::new();
    let mut more = false;
    for (listed, e) in entries.iter().filter(|e| e.instance >= start).enumerate() {
        let mut one = e.instance.to_le_bytes().to_vec();
        for a in &attrs {
            match a {
                1 => {
                    one.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
                    one.extend_from_slice(e.name.as_bytes());
                }
                2 => one.extend_from_slice(&e.kind.to_le_bytes()),
                3 => one.extend_from_slice(&(0x1000 + e.instance).to_le_bytes()),
                5 => one.extend_from_slice(&(e.instance * 16).to_le_bytes()),
                6 => one.extend_from_slice(&(1u32 << 26).to_le_bytes()),
                7 => one.extend_from_slice(&e.size.to_le_bytes()),
                8 => {
                    for d in e.dims {
                        one.extend_from_slice(&d.to_le_bytes());
                    }
                }
                _ => one.push(0),
            }
        }
        if listed >= page_limit || out.len() + one.len() > budget {
            more = true;
            break;
        }
        out.extend_from_slice(&one);
    }
    Ok((out, if more { 0x06 } else { 0 }))
}

fn template_attributes(state: &CipState, segs: &[Seg], data: &[u8]) -> Result<Vec<u8>, Fail> {
    let instance = match segs {
        [Seg::Class(0x6C), Seg::Instance(i)] => *i,
        _ => return Err((0x04, vec![0])),
    };
    let layout = u16::try_from(instance)
        .ok()
        .and_then(|i| state.layout_by_instance(i))
        .ok_or_else(|| fail(0x05))?;
    let mut r = Rd::new(data);
    let count = r.u16()?;
    if count == 0 || count > 16 {
        return Err(fail(0x0A));
    }
    // The definition (padded to words) is (words * 4 - 23) bytes rounded up to a word:
    // pylogix reads exactly that; pycomm3 asks for (words * 4 - 21) and takes what comes.
    let words = (layout.definition.len() as u32 + 20) / 4;
    let mut out = count.to_le_bytes().to_vec();
    for _ in 0..count {
        let id = r.u16()?;
        out.extend_from_slice(&id.to_le_bytes());
        match id {
            1 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&layout.handle.to_le_bytes());
            }
            2 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&(layout.members.len() as u16).to_le_bytes());
            }
            3 => {
                // Undocumented by Rockwell; pylogix asks for it and reads a UINT.
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&((layout.size / 4) as u16).to_le_bytes());
            }
            4 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&words.to_le_bytes());
            }
            5 => {
                out.extend_from_slice(&0u16.to_le_bytes());
                out.extend_from_slice(&layout.size.to_le_bytes());
            }
            _ => out.extend_from_slice(&0x14u16.to_le_bytes()),
        }
    }
    Ok(out)
}

fn read_template(
    ctx: &mut Ctx<'_>,
    segs: &[Seg],
    data: &[u8],
) -> Result<(Vec<u8>, Option<u8>), Fail> {
    let instance = match segs {
        [Seg::Class(0x6C), Seg::Instance(i)] => *i,
        _ => return Err((0x04, vec![0])),
    };
    let layout = u16::try_from(instance)
        .ok()
        .and_then(|i| ctx.state.layout_by_instance(i))
        .ok_or_else(|| fail(0x05))?;
    let mut r = Rd::new(data);
    let offset = r.u32()? as usize;
    let bytes = usize::from(r.u16()?);
    let def = &layout.definition;
    if offset > def.len() {
        return Err(fail(0x03));
    }
    let wanted_end = offset.saturating_add(bytes).min(def.len());
    let room = ctx.capacity.saturating_sub(4);
    let end = wanted_end.min(offset + room);
    let chunk = def.get(offset..end).unwrap_or(&[]).to_vec();
    if end < wanted_end {
        Ok((chunk, Some(0x06)))
    } else {
        Ok((chunk, None))
    }
}

/// Where a tag path leads.
struct Target {
    ty: Ty,
    /// The elements from the addressed one to the end of its array (one for a scalar).
    elements: Vec<Val>,
    /// A tag-level BOOL array: elements are bits, read as DWORDs.
    bool_array: bool,
    /// Index of the first addressed element inside the BOOL array.
    bool_start: usize,
}

enum Step {
    Tag(usize),
    Audit,
    Index(usize),
    Member(String),
}

fn resolve(state: &CipState, segs: &[Seg]) -> Result<(Target, Vec<Step>), Fail> {
    let unknown = || (0x05, vec![0]);
    let mut it = segs.iter().peekable();
    // The base tag: by name, or (as clients do on v21+ firmware) by Symbol instance.
    enum Base<'s> {
        Name(&'s str),
        Instance(u32),
    }
    let by_instance =
        |it: &mut std::iter::Peekable<std::slice::Iter<'_, Seg>>| -> Result<u32, Fail> {
            match it.next() {
                Some(Seg::Instance(i)) => Ok(*i),
                _ => Err((0x04, vec![0])),
            }
        };
    let (scope, base): (Option<&str>, Base<'_>) = match it.next() {
        Some(Seg::Symbol(first)) => {
            let program = first
                .get(..8)
                .filter(|h| h.eq_ignore_ascii_case("Program:"))
                .and_then(|_| first.get(8..));
            match program {
                Some(p) => {
                    state.find_program(p).ok_or_else(unknown)?;
                    match it.next() {
                        Some(Seg::Symbol(n)) => (Some(p), Base::Name(n.as_str())),
                        Some(Seg::Class(0x6B)) => (Some(p), Base::Instance(by_instance(&mut it)?)),
                        _ => return Err((0x04, vec![0])),
                    }
                }
                None => (None, Base::Name(first.as_str())),
            }
        }
        Some(Seg::Class(0x6B)) => (None, Base::Instance(by_instance(&mut it)?)),
        _ => return Err((0x04, vec![0])),
    };
    let mut steps = Vec::new();
    let audit = |name: &str, instance: u32| match base {
        Base::Name(n) => n.eq_ignore_ascii_case(name),
        Base::Instance(i) => i == instance,
    };
    let (mut ty, mut dims, mut val): (Ty, Vec<u32>, Val) = {
        if scope.is_none() && state.has_audit_tags() && audit(super::AUDIT_TAG, 8) {
            steps.push(Step::Audit);
            (
                Ty::Atomic(0xC5),
                vec![],
                Val::Int(i128::from(state.audit_value())),
            )
        } else if scope.is_none() && state.has_audit_tags() && audit(super::CHANGES_TAG, 9) {
            steps.push(Step::Audit);
            (
                Ty::Atomic(0xC5),
                vec![],
                Val::Int(i128::from(state.changes_to_detect)),
            )
        } else {
            let idx = match base {
                Base::Name(name) => state.find_tag(scope, name),
                Base::Instance(i) => state.tags.iter().position(|t| {
                    t.instance == i
                        && match (&t.scope, scope) {
                            (None, None) => true,
                            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                            _ => false,
                        }
                }),
            }
            .ok_or_else(unknown)?;
            steps.push(Step::Tag(idx));
            let t = &state.tags[idx];
            (t.ty.clone(), t.dims.clone(), t.value.clone())
        }
    };
    let tag_level_bools = ty == Ty::Atomic(0xC1) && !dims.is_empty();
    let mut bool_start = 0;
    loop {
        let mut indices = Vec::new();
        while let Some(Seg::Element(e)) = it.peek() {
            indices.push(*e);
            it.next();
        }
        let mut start = 0usize;
        if !indices.is_empty() {
            if dims.is_empty() || indices.len() != dims.len() {
                return Err((0x04, vec![0]));
            }
            let mut flat = 0usize;
            for (i, d) in indices.iter().zip(&dims) {
                if i >= d {
                    return Err((0x05, vec![0]));
                }
                flat = flat * (*d as usize) + *i as usize;
            }
            start = flat;
        }
        match it.next() {
            None => {
                let elements = match (&val, dims.is_empty()) {
                    (Val::List(items), false) => {
                        items.get(start..).map(<[Val]>::to_vec).unwrap_or_default()
                    }
                    (v, _) => vec![v.clone()],
                };
                if tag_level_bools {
                    bool_start = start;
                }
                if !dims.is_empty() {
                    steps.push(Step::Index(start));
                }
                return Ok((
                    Target {
                        ty,
                        elements,
                        bool_array: tag_level_bools,
                        bool_start,
                    },
                    steps,
                ));
            }
            Some(Seg::Symbol(member)) => {
                if !dims.is_empty() && indices.is_empty() {
                    return Err((0x04, vec![0]));
                }
                let element = match (&val, dims.is_empty()) {
                    (Val::List(items), false) => {
                        steps.push(Step::Index(start));
                        items.get(start).cloned().ok_or_else(unknown)?
                    }
                    (v, _) => v.clone(),
                };
                let Ty::Udt(_) = &ty else {
                    return Err(unknown());
                };
                let layout = state.layout_of(&ty).ok_or_else(unknown)?;
                let m = layout
                    .members
                    .iter()
                    .find(|m| m.ty.is_some() && m.name.eq_ignore_ascii_case(member))
                    .ok_or_else(unknown)?;
                let Val::Struct(map) = element else {
                    return Err(unknown());
                };
                steps.push(Step::Member(m.name.clone()));
                val = map.get(&m.name).cloned().ok_or_else(unknown)?;
                ty = m.ty.clone().ok_or_else(unknown)?;
                dims = if m.dims > 0 {
                    vec![u32::from(m.dims)]
                } else {
                    vec![]
                };
            }
            Some(_) => return Err((0x04, vec![0])),
        }
    }
}

fn read_tag(
    ctx: &mut Ctx<'_>,
    segs: &[Seg],
    data: &[u8],
    fragmented: bool,
) -> Result<(Vec<u8>, Option<u8>), Fail> {
    let mut r = Rd::new(data);
    let count = usize::from(r.u16()?);
    let offset = if fragmented { r.u32()? as usize } else { 0 };
    if count == 0 {
        return Err(fail(0x03));
    }
    if let Some(status) = ctx.state.quirks.refused_tag(&base_tag_name(segs)) {
        let ext = if matches!(status, 0x04 | 0x05) {
            vec![0]
        } else {
            vec![]
        };
        return Err((status, ext));
    }
    let (target, _) = resolve(ctx.state, segs)?;
    let state = &*ctx.state;
    let mut header = Vec::new();
    let mut body = Vec::new();
    if target.bool_array {
        header.extend_from_slice(&0x00D3u16.to_le_bytes());
        // Bits travel in DWORDs; the addressed element picks its DWORD.
        let (_, steps) = resolve(state, segs)?;
        let all = match steps.first() {
            Some(Step::Tag(i)) => match &state.tags[*i].value {
                Val::List(items) => items.clone(),
                _ => vec![],
            },
            _ => vec![],
        };
        let first_word = target.bool_start / 32;
        let words_total = all.len().div_ceil(32);
        if first_word + count > words_total {
            return Err((0xFF, vec![0x2105]));
        }
        for w in first_word..first_word + count {
            let mut word = 0u32;
            for bit in 0..32 {
                if let Some(Val::Bool(true)) = all.get(w * 32 + bit) {
                    word |= 1 << bit;
                }
            }
            body.extend_from_slice(&word.to_le_bytes());
        }
    } else {
        if count > target.elements.len() {
            return Err((0xFF, vec![0x2105]));
        }
        match &target.ty {
            Ty::Atomic(code) => header.extend_from_slice(&u16::from(*code).to_le_bytes()),
            other => {
                let layout = state.layout_of(other).ok_or_else(|| fail(0x05))?;
                header.extend_from_slice(&0x02A0u16.to_le_bytes());
                header.extend_from_slice(&layout.handle.to_le_bytes());
            }
        }
        for v in target.elements.iter().take(count) {
            state
                .encode(&target.ty, v, &mut body)
                .map_err(|_| fail(0x09))?;
        }
    }
    let room = ctx.capacity.saturating_sub(4 + header.len());
    if offset > body.len() {
        return Err(fail(0x03));
    }
    let end = body.len().min(offset + room);
    let mut out = header;
    out.extend_from_slice(body.get(offset..end).unwrap_or(&[]));
    if end < body.len() {
        Ok((out, Some(0x06)))
    } else {
        Ok((out, None))
    }
}

/// The tag a symbolic path starts with, as `refuse-tag` names it: `Oven_SP`, or
/// `Program:Oven.Zone_Temp` for a program's tag.
fn base_tag_name(segs: &[Seg]) -> String {
    let mut symbols = segs.iter().filter_map(|s| match s {
        Seg::Symbol(name) => Some(name.as_str()),
        _ => None,
    });
    match symbols.next() {
        Some(first)
            if first
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("Program:")) =>
        {
            format!("{first}.{}", symbols.next().unwrap_or(""))
        }
        Some(first) => first.to_owned(),
        None => String::new(),
    }
}

fn forward_open(ctx: &mut Ctx<'_>, service: u8, data: &[u8]) -> Result<Vec<u8>, Fail> {
    let large = service == 0x5B;
    if large && ctx.state.quirks.get(Quirk::NoLargeForwardOpen) {
        return Err(fail(0x08));
    }
    if ctx.state.quirks.get(Quirk::NoConnections) {
        return Err((0x01, vec![0x0113]));
    }
    let mut r = Rd::new(data);
    let _priority = r.u8()?;
    let _ticks = r.u8()?;
    let _o_t = r.u32()?;
    let t_o_id = r.u32()?;
    let serial = r.u16()?;
    let vendor = r.u16()?;
    let originator = r.u32()?;
    let _multiplier = r.u8()?;
    r.take(3)?;
    let o_t_rpi = r.u32()?;
    let o_t_params = if large { r.u32()? } else { u32::from(r.u16()?) };
    let t_o_rpi = r.u32()?;
    let _t_o_params = if large { r.u32()? } else { u32::from(r.u16()?) };
    let _transport = r.u8()?;
    let words = usize::from(r.u8()?);
    let path = parse_path(r.take(words * 2)?)?;
    let size = if large {
        o_t_params & 0xFFFF
    } else {
        o_t_params & 0x01FF
    } as u16;
    match path.as_slice() {
        [Seg::Port(1, link), Seg::Class(2), Seg::Instance(1)] if *link == ctx.state.slot => {}
        [Seg::Class(2), Seg::Instance(1)] => {}
        [Seg::Port(..), ..] => return Err((0x01, vec![0x0312])),
        _ => return Err((0x01, vec![0x0315])),
    }
    if !(16..=MAX_CONNECTION_SIZE).contains(&size) || (!large && size > 511) {
        return Err((0x01, vec![0x0109]));
    }
    if ctx
        .conns
        .iter()
        .any(|c| c.serial == serial && c.vendor == vendor && c.originator == originator)
    {
        return Err((0x01, vec![0x0100]));
    }
    *ctx.next_conn_id = ctx.next_conn_id.wrapping_add(1);
    let conn = Conn {
        o_t_id: 0x5100_0000 | (*ctx.next_conn_id & 0xFFFF),
        t_o_id,
        serial,
        vendor,
        originator,
        size,
    };
    ctx.conns.push(conn);
    let mut d = Vec::new();
    d.extend_from_slice(&conn.o_t_id.to_le_bytes());
    d.extend_from_slice(&t_o_id.to_le_bytes());
    d.extend_from_slice(&serial.to_le_bytes());
    d.extend_from_slice(&vendor.to_le_bytes());
    d.extend_from_slice(&originator.to_le_bytes());
    d.extend_from_slice(&o_t_rpi.to_le_bytes());
    d.extend_from_slice(&t_o_rpi.to_le_bytes());
    d.push(0);
    d.push(0);
    Ok(d)
}

fn forward_close(ctx: &mut Ctx<'_>, data: &[u8]) -> Result<Vec<u8>, Fail> {
    let mut r = Rd::new(data);
    let _priority = r.u8()?;
    let _ticks = r.u8()?;
    let serial = r.u16()?;
    let vendor = r.u16()?;
    let originator = r.u32()?;
    let before = ctx.conns.len();
    ctx.conns
        .retain(|c| !(c.serial == serial && c.vendor == vendor && c.originator == originator));
    if ctx.conns.len() == before {
        return Err((0x01, vec![0x0107]));
    }
    let mut d = Vec::new();
    d.extend_from_slice(&serial.to_le_bytes());
    d.extend_from_slice(&vendor.to_le_bytes());
    d.extend_from_slice(&originator.to_le_bytes());
    d.push(0);
    d.push(0);
    Ok(d)
}

/// State-changing services: answered (and for tags applied) like a Logix controller would.
fn apply_write(
    ctx: &mut Ctx<'_>,
    service: u8,
    segs: &[Seg],
    data: &[u8],
    symbolic: bool,
) -> Result<Vec<u8>, Fail> {
    match service {
        0x4D | 0x53 if symbolic => {
            let mut r = Rd::new(data);
            let type_word = r.u16()?;
            if type_word == 0x02A0 {
                r.u16()?;
            }
            let count = usize::from(r.u16()?);
            if service == 0x53 {
                let offset = r.u32()?;
                if offset != 0 {
                    return Err(fail(0x08));
                }
            }
            let payload = r.rest();
            write_elements(ctx.state, segs, count, payload)?;
            Ok(Vec::new())
        }
        0x4E if symbolic => {
            let mut r = Rd::new(data);
            let size = usize::from(r.u16()?);
            let or = r.take(size)?.to_vec();
            let and = r.take(size)?.to_vec();
            let (target, _) = resolve(ctx.state, segs)?;
            let Ty::Atomic(code) = target.ty else {
                return Err(fail(0x08));
            };
            let mut current = Vec::new();
            if let Some(v) = target.elements.first() {
                ctx.state
                    .encode(&target.ty, v, &mut current)
                    .map_err(|_| fail(0x09))?;
            }
            if current.len() != size || code == 0xCA || code == 0xCB {
                return Err(fail(0x13));
            }
            for (i, byte) in current.iter_mut().enumerate() {
                *byte = (*byte | or[i]) & and[i];
            }
            write_elements(ctx.state, segs, 1, &current)?;
            Ok(Vec::new())
        }
        0x4D | 0x53 | 0x4E => Err(fail(0x08)),
        // Identity, wall clock, templates: attributes a client cannot set; mode changes
        // refused (the keyswitch is not in REMOTE).
        0x02 | 0x04 | 0x10 => Err(fail(0x0E)),
        0x05..=0x07 => Err(fail(0x0C)),
        _ => Err(fail(0x08)),
    }
}

fn write_elements(
    state: &mut CipState,
    segs: &[Seg],
    count: usize,
    payload: &[u8],
) -> Result<(), Fail> {
    let (target, steps) = resolve(state, segs)?;
    if target.bool_array || matches!(steps.first(), Some(Step::Audit)) {
        return Err(fail(0x0E));
    }
    let (size, _) = state.size_align(&target.ty, 0).map_err(|_| fail(0x09))?;
    let size = size as usize;
    if count == 0 || count > target.elements.len() || payload.len() != size * count {
        return Err(fail(0x13));
    }
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let chunk = payload
            .get(i * size..(i + 1) * size)
            .ok_or_else(|| fail(0x13))?;
        values.push(state.decode(&target.ty, chunk).map_err(|_| fail(0x09))?);
    }
    let Some(Step::Tag(idx)) = steps.first() else {
        return Err(fail(0x05));
    };
    let mut slot: &mut Val = &mut state.tags[*idx].value;
    let rest = &steps[1..];
    for (k, step) in rest.iter().enumerate() {
        let last = k + 1 == rest.len();
        match step {
            Step::Index(i) if last => {
                let Val::List(items) = slot else {
                    return Err(fail(0x05));
                };
                for (j, v) in values.iter().enumerate() {
                    if let Some(e) = items.get_mut(i + j) {
                        *e = v.clone();
                    }
                }
                return Ok(());
            }
            Step::Index(i) => {
                let Val::List(items) = slot else {
                    return Err(fail(0x05));
                };
                slot = items.get_mut(*i).ok_or_else(|| fail(0x05))?;
            }
            Step::Member(m) => {
                let Val::Struct(map) = slot else {
                    return Err(fail(0x05));
                };
                slot = map.get_mut(m).ok_or_else(|| fail(0x05))?;
            }
            Step::Tag(_) | Step::Audit => return Err(fail(0x05)),
        }
    }
    match (slot, values.into_iter().next()) {
        (Val::List(items), Some(v)) => {
            if let Some(first) = items.first_mut() {
                *first = v;
            }
        }
        (slot, Some(v)) => *slot = v,
        _ => {}
    }
    Ok(())
}

/// Sets a value by a tag path written as text (`Program:Oven.Zone_Temp[2]`, `Recipe.Temp`):
/// the `set` command.
pub(crate) fn set_by_text(state: &mut CipState, path: &str, text: &str) -> Result<(), String> {
    let segs = text_path(path)?;
    let (target, _) = resolve(state, &segs).map_err(|(st, _)| match st {
        0x05 => format!("no tag {path}"),
        _ => format!("{path} is not a valid tag path"),
    })?;
    if target.bool_array {
        return Err(format!("{path}: index the BOOL array, e.g. {path}[0]"));
    }
    if target.elements.len() != 1
        && !matches!(segs.last(), Some(Seg::Element(_)))
        && target.elements.len() > 1
    {
        return Err(format!(
            "{path} is an array: set one element, e.g. {path}[0]"
        ));
    }
    let value = state.value_from_text(&target.ty, text)?;
    let mut payload = Vec::new();
    state.encode(&target.ty, &value, &mut payload)?;
    write_elements(state, &segs, 1, &payload)
        .map_err(|(st, _)| format!("cannot set {path} (0x{st:02x})"))
}

/// Reads a value by text path as JSON (the `get` command).
pub(crate) fn get_by_text(state: &CipState, path: &str) -> Result<serde_json::Value, String> {
    let segs = text_path(path)?;
    let (target, _) = resolve(state, &segs).map_err(|_| format!("no tag {path}"))?;
    let whole = matches!(segs.last(), Some(Seg::Symbol(_)));
    if target.bool_array {
        let (_, steps) = resolve(state, &segs).map_err(|_| format!("no tag {path}"))?;
        if let Some(Step::Tag(i)) = steps.first()
            && let Val::List(items) = &state.tags[*i].value
        {
            if whole {
                return Ok(serde_json::Value::Array(
                    items.iter().map(to_json).collect(),
                ));
            }
            return Ok(items
                .get(target.bool_start)
                .map(to_json)
                .unwrap_or_default());
        }
    }
    if whole && target.elements.len() > 1 {
        return Ok(serde_json::Value::Array(
            target.elements.iter().map(to_json).collect(),
        ));
    }
    Ok(target.elements.first().map(to_json).unwrap_or_default())
}

pub(crate) fn to_json(v: &Val) -> serde_json::Value {
    match v {
        Val::Bool(b) => serde_json::Value::Bool(*b),
        Val::Int(i) => i64::try_from(*i)
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(*i as u64)),
        Val::Real(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Val::Str(s) => serde_json::Value::String(s.clone()),
        Val::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Val::Struct(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

/// Parses `Program:P.Tag[1,2].Member` into path segments.
fn text_path(text: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    let rest = match text.get(..8).filter(|h| h.eq_ignore_ascii_case("Program:")) {
        Some(_) => {
            let (program, rest) = text
                .split_once('.')
                .ok_or_else(|| format!("{text}: Program:<program>.<tag>"))?;
            out.push(Seg::Symbol(program.to_owned()));
            rest
        }
        None => text,
    };
    for piece in rest.split('.') {
        let (name, idx) = match piece.split_once('[') {
            Some((n, i)) => (
                n,
                Some(
                    i.strip_suffix(']')
                        .ok_or_else(|| format!("{text}: unclosed ["))?,
                ),
            ),
            None => (piece, None),
        };
        if name.is_empty() {
            return Err(format!("{text}: empty name"));
        }
        out.push(Seg::Symbol(name.to_owned()));
        if let Some(idx) = idx {
            for n in idx.split(',') {
                out.push(Seg::Element(
                    n.trim()
                        .parse()
                        .map_err(|_| format!("{text}: bad index {n:?}"))?,
                ));
            }
        }
    }
    Ok(out)
}

/// All values of the controller, for `get` without arguments (debugging a test rig).
pub(crate) fn dump(state: &CipState) -> BTreeMap<String, serde_json::Value> {
    state
        .tags
        .iter()
        .map(|t| {
            let name = match &t.scope {
                Some(p) => format!("Program:{p}.{}", t.name),
                None => t.name.clone(),
            };
            (name, to_json(&t.value))
        })
        .collect()
}

/// Checks that a `dims` list fits: used by commands that add tags.
pub(crate) fn check_dims(dims: &[u32]) -> Result<usize, String> {
    if dims.len() > 3 {
        return Err("at most 3 dimensions".to_owned());
    }
    if dims.is_empty() {
        return Ok(1);
    }
    element_count(dims)
}
