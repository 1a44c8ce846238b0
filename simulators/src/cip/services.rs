//! The simulated controller's message router: CIP services on its objects and tags.
//!
//! Every request is parsed with bounds checks; anything malformed gets the CIP status a
//! Logix controller would give (path segment error, not enough data, ...), never a panic.

use super::path::{Fail, Rd, Seg, fail, parse_path, path_text};
use super::state::{CipState, Quirk};
use super::tags::{apply_write, list_symbols, read_tag, read_template, template_attributes};
use crate::request_log::Described;

/// Message size of unconnected messaging.
pub(crate) const UNCONNECTED_SIZE: usize = 504;
/// Largest connection size granted (Large Forward Open).
pub(crate) const MAX_CONNECTION_SIZE: u16 = 4002;

/// One logged CIP service and its outcome.
pub(crate) type Entry = (Described, String);

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

/// Services that change device state: what otdrift must never send.
pub(crate) fn is_write(service: u8, class: Option<u32>) -> bool {
    match service {
        0x4E => class != Some(0x06), // Forward Close on the connection manager, else Read-Modify-Write
        0x02 | 0x04 | 0x05 | 0x06 | 0x07 | 0x08 | 0x09 | 0x0D | 0x10 | 0x15 | 0x16 | 0x4D
        | 0x53 => true,
        _ => false,
    }
}

pub(crate) fn service_name(service: u8, class: Option<u32>, symbolic: bool) -> &'static str {
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

pub(crate) fn reply(service: u8, status: u8, ext: &[u16], data: &[u8]) -> Vec<u8> {
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

pub(crate) fn outcome(status: u8, ext: &[u16]) -> String {
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
        ctx.log.push((
            Described {
                service: 0,
                name: "malformed".into(),
                detail: format!("{} bytes", message.len()),
                address: None,
                count: None,
                write: false,
            },
            "status 0x04".into(),
        ));
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
        ctx.log.push((
            Described {
                service: u16::from(service),
                name: service_name(service, class, tag_path).into(),
                detail,
                address: class,
                count: None,
                write,
            },
            outcome,
        ));
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
    ctx.log.push((
        Described {
            service: u16::from(service),
            name: service_name(service, class, tag_path).into(),
            detail,
            address: class,
            count,
            write,
        },
        outcome(st, &ext),
    ));
    bytes
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn logged(
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
    ctx.log.push((
        Described {
            service: u16::from(service),
            name: service_name(service, class, false).into(),
            detail,
            address,
            count,
            write,
        },
        outcome(st, &[]),
    ));
    bytes
}

pub(crate) fn unconnected_send(ctx: &mut Ctx<'_>, data: &[u8]) -> Vec<u8> {
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
            ctx.log.push((
                Described {
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
                },
                "status 0x01 ext 0x0312".into(),
            ));
            return bytes;
        }
    }
    let saved = ctx.capacity;
    ctx.capacity = UNCONNECTED_SIZE;
    let out = handle(ctx, message, false);
    ctx.capacity = saved;
    out
}

pub(crate) fn multiple(ctx: &mut Ctx<'_>, segs: &[Seg], data: &[u8]) -> Vec<u8> {
    let entry = |ctx: &mut Ctx<'_>, n: Option<u32>, st: u8| {
        ctx.log.push((
            Described {
                service: 0x0A,
                name: "multiple_service_packet".into(),
                detail: format!("{} services", n.unwrap_or(0)),
                address: Some(0x02),
                count: n,
                write: false,
            },
            outcome(st, &[]),
        ));
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

pub(crate) fn identity(state: &CipState) -> Vec<u8> {
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

pub(crate) fn identity_attribute(state: &CipState, segs: &[Seg]) -> Result<Vec<u8>, Fail> {
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

pub(crate) fn wall_clock(data: &[u8]) -> Result<Vec<u8>, Fail> {
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

pub(crate) fn forward_open(ctx: &mut Ctx<'_>, service: u8, data: &[u8]) -> Result<Vec<u8>, Fail> {
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

pub(crate) fn forward_close(ctx: &mut Ctx<'_>, data: &[u8]) -> Result<Vec<u8>, Fail> {
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
