//! The simulator's front: the port clients connect to. It reads every request, logs it, and
//! either answers it from the state (identity SZLs, block functions, uploads, quirks) or
//! relays it to snap7's server and relays snap7's answer back.

use std::{
    collections::BTreeMap,
    io,
    net::{SocketAddr, TcpStream as StdTcpStream},
    sync::Arc,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{
    Shared, answers,
    answers::Parsed,
    backend,
    state::{Quirk, Quirks},
};
use crate::request_log::Described;

/// The largest TPKT frame accepted from a client.
const MAX_FRAME: usize = 8192;
/// The largest reassembled S7 PDU accepted from a client.
const MAX_PDU: usize = 8192;

/// A request described for the log.
fn service(code: u16, name: &str, write: bool, detail: String) -> Described {
    Described {
        write,
        ..Described::new(code, name, detail)
    }
}

fn block_name(code: u8) -> &'static str {
    match code {
        0x38 => "OB",
        0x41 => "DB",
        0x42 => "SDB",
        0x43 => "FC",
        0x44 => "SFC",
        0x45 => "FB",
        0x46 => "SFB",
        _ => "?",
    }
}

/// A block named `0<type><5 digits>` in ASCII, as block info and upload requests carry it.
fn ascii_block(bytes: &[u8]) -> Option<(u8, u16)> {
    let [b'0', kind, d @ ..] = bytes else {
        return None;
    };
    let digits = d.get(..5)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    Some((*kind, u16::try_from(number).ok()?))
}

/// Classifies a request: service code, name, and whether it asks to change state. Anything
/// not known to be read-only is logged as a write.
pub(crate) fn classify(req: &Parsed) -> Described {
    if let Some(function) = req.function() {
        let p = &req.params;
        return match function {
            0xF0 => {
                let pdu = p.get(6..8).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                service(0xF0, "setup_communication", false, format!("pdu={pdu}"))
            }
            0x04 | 0x05 => {
                let write = function == 0x05;
                let count = usize::from(p.get(1).copied().unwrap_or(0));
                let mut items = Vec::new();
                let mut address = None;
                let mut total = 0u32;
                for i in 0..count.min(64) {
                    let Some(item) = p.get(2 + 12 * i..14 + 12 * i) else {
                        break;
                    };
                    let len = u32::from(u16::from_be_bytes([item[4], item[5]]));
                    let db = u16::from_be_bytes([item[6], item[7]]);
                    let start = u32::from_be_bytes([0, item[9], item[10], item[11]]) >> 3;
                    address.get_or_insert(start);
                    total += len;
                    items.push(if item[8] == 0x84 {
                        format!("DB{db}.DBB{start}[{len}]")
                    } else {
                        format!("area 0x{:02X}.{start}[{len}]", item[8])
                    });
                }
                Described {
                    service: u16::from(function),
                    name: if write { "write_var" } else { "read_var" }.to_owned(),
                    write,
                    detail: format!("items={count} {}", items.join(" ")),
                    address,
                    count: Some(total),
                }
            }
            0x1A => service(0x1A, "request_download", true, String::new()),
            0x1B => service(0x1B, "download_block", true, String::new()),
            0x1C => service(0x1C, "download_ended", true, String::new()),
            0x1D => {
                let detail = p
                    .get(10..17)
                    .and_then(ascii_block)
                    .map_or_else(String::new, |(k, n)| format!("{}{n}", block_name(k)));
                service(0x1D, "start_upload", false, detail)
            }
            0x1E => service(0x1E, "upload", false, String::new()),
            0x1F => service(0x1F, "end_upload", false, String::new()),
            0x28 => {
                let name = String::from_utf8_lossy(
                    p.get(p.len().saturating_sub(12)..).unwrap_or_default(),
                )
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .collect::<String>();
                service(0x28, "pi_service", true, name)
            }
            0x29 => service(0x29, "plc_stop", true, String::new()),
            other => service(
                u16::from(other),
                &format!("job_0x{other:02x}"),
                true,
                String::new(),
            ),
        };
    }
    let Some((group, sub, _, next)) = req.userdata() else {
        return service(0, "unknown", true, format!("pdu type 0x{:02x}", req.rosctr));
    };
    let code = 0x7000 | (u16::from(group) << 8) | u16::from(sub);
    let suffix = if next { " (next part)" } else { "" };
    match (group, sub) {
        (3, 1) => service(code, "list_blocks", false, String::new()),
        (3, 2) => {
            let detail = req
                .data
                .get(5)
                .map_or_else(String::new, |k| format!("type={}{suffix}", block_name(*k)));
            service(code, "list_blocks_of_type", false, detail)
        }
        (3, 3) => {
            let detail = req
                .data
                .get(4..11)
                .and_then(ascii_block)
                .map_or_else(String::new, |(k, n)| format!("{}{n}", block_name(k)));
            service(code, "block_info", false, detail)
        }
        (4, 1) | (4, 2) => {
            let detail = match req.data.get(4..8) {
                Some(b) if !next => format!(
                    "id=0x{:04X} index=0x{:04X}",
                    u16::from_be_bytes([b[0], b[1]]),
                    u16::from_be_bytes([b[2], b[3]])
                ),
                _ => suffix.trim().to_owned(),
            };
            service(code, "read_szl", false, detail)
        }
        (7, 1) => service(code, "read_clock", false, String::new()),
        (7, 2) => service(code, "set_clock", true, String::new()),
        (5, 1) => service(code, "enter_password", true, String::new()),
        (5, 2) => service(code, "cancel_password", true, String::new()),
        (g, s) => service(code, &format!("userdata_g{g}_s{s}"), true, String::new()),
    }
}

/// A multi-part answer in progress.
struct Pending {
    group: u8,
    sub: u8,
    rest: Vec<u8>,
    unit: usize,
}

/// One client connection's state.
struct Session {
    backend: Option<StdTcpStream>,
    pdu: usize,
    pending: Option<Pending>,
    uploads: BTreeMap<[u8; 4], Vec<u8>>,
    next_id: u32,
    next_seq: u8,
}

/// What to do with a request.
enum Action {
    /// Send this S7 PDU back.
    Answer(Vec<u8>, String),
    /// Relay to snap7 (possibly rewritten).
    Forward(Vec<u8>),
    /// Close the session (quirk).
    Drop(String),
    /// Say nothing (stall).
    Silence(String),
}

async fn read_tpkt(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    if stream.read(&mut header[..1]).await? == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut header[1..]).await?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[0] != 3 || !(7..=MAX_FRAME).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad TPKT header",
        ));
    }
    let mut frame = vec![0u8; len];
    frame[..4].copy_from_slice(&header);
    stream.read_exact(&mut frame[4..]).await?;
    Ok(Some(frame))
}

/// Runs a blocking exchange with snap7 on the session's backend connection.
async fn forward(
    shared: &Arc<Shared>,
    session: &mut Session,
    frame: Vec<u8>,
) -> io::Result<Vec<u8>> {
    let Some(mut stream) = session.backend.take() else {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "no snap7 session",
        ));
    };
    let shared = Arc::clone(shared);
    let (stream, result) = tokio::task::spawn_blocking(move || {
        let result = shared.extra.lock_backend().exchange(&mut stream, &frame);
        (stream, result)
    })
    .await
    .map_err(io::Error::other)?;
    if result.is_ok() {
        session.backend = Some(stream);
    }
    result
}

/// Serves one client until it closes, a quirk drops it, or the simulator stops.
pub(crate) async fn serve(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut stop = shared.stop_for(peer);
    let mut session = Session {
        backend: None,
        pdu: 240,
        pending: None,
        uploads: BTreeMap::new(),
        next_id: 1,
        next_seq: 1,
    };
    let mut assembling: Vec<u8> = Vec::new();
    loop {
        let Some(frame) = stop.or(read_tpkt(&mut client)).await else {
            break;
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(%peer, %err, "closing s7 connection");
                break;
            }
        };
        let tpdu = &frame[4..];
        let li = usize::from(tpdu.first().copied().unwrap_or(0));
        let Some(kind) = tpdu.get(1).map(|b| b & 0xF0) else {
            break;
        };
        if li < 2 || li > tpdu.len() {
            break;
        }
        match kind {
            0xE0 if !connect(&shared, &mut session, &mut client, peer, &frame).await => break,
            0xE0 => {}
            0xF0 => {
                let last = tpdu.get(2).is_some_and(|b| b & 0x80 != 0);
                assembling.extend_from_slice(tpdu.get(li + 1..).unwrap_or_default());
                if assembling.len() > MAX_PDU {
                    break;
                }
                if !last {
                    continue;
                }
                let pdu = std::mem::take(&mut assembling);
                if !request(&shared, &mut session, &mut client, peer, &pdu).await {
                    break;
                }
            }
            0x80 => break,
            _ => {}
        }
    }
    let _ = client.shutdown().await;
}

/// The COTP connection request: checks the called TSAP like a CPU, then opens snap7.
async fn connect(
    shared: &Arc<Shared>,
    session: &mut Session,
    client: &mut TcpStream,
    peer: SocketAddr,
    frame: &[u8],
) -> bool {
    let (quirks, expected) = {
        let state = shared.lock_state();
        (state.quirks.clone(), state.rack * 0x20 + state.slot)
    };
    // Parameters after the fixed part: code, length, value.
    let mut called = None;
    let mut params = frame.get(11..).unwrap_or_default();
    while let [code, len, rest @ ..] = params {
        let len = usize::from(*len);
        let Some(value) = rest.get(..len) else { break };
        if *code == 0xC2 && len == 2 {
            called = Some(u16::from_be_bytes([value[0], value[1]]));
        }
        params = rest.get(len..).unwrap_or_default();
    }
    let detail = called.map_or_else(
        || "no called TSAP".to_owned(),
        |t| format!("called TSAP 0x{t:04X}"),
    );
    let connect = service(0x00E0, "cotp_connect", false, detail);
    if quirks.get(Quirk::Stall) {
        shared.record(peer, connect, "no answer (stall quirk)");
        return true;
    }
    if quirks.get(Quirk::Congested) {
        shared.record(
            peer,
            connect,
            "refused: disconnect reason 0x81, congestion (congested quirk)",
        );
        let _ = client.write_all(&answers::disconnect(0x81)).await;
        return false;
    }
    if !quirks.get(Quirk::Snap7Only)
        && let Some(tsap) = called
        && (tsap & 0xFF != expected || !(1..=3).contains(&(tsap >> 8)))
    {
        shared.record(peer, connect, "refused: no CPU at this rack/slot");
        let _ = client.write_all(&answers::disconnect(0x80)).await;
        return false;
    }
    let addr = shared.extra.backend_addr;
    let opened = tokio::task::spawn_blocking(move || backend::connect(addr)).await;
    let Ok(Ok(stream)) = opened else {
        shared.record(peer, connect, "failed: snap7 server not reachable");
        return false;
    };
    session.backend = Some(stream);
    match forward(shared, session, frame.to_vec()).await {
        Ok(answer) => {
            shared.record(peer, connect, "ok");
            client.write_all(&answer).await.is_ok()
        }
        Err(err) => {
            tracing::debug!(%peer, %err, "snap7 refused the connection");
            shared.record(peer, connect, "failed: snap7 did not confirm");
            false
        }
    }
}

/// Handles one S7 PDU; false closes the connection.
async fn request(
    shared: &Arc<Shared>,
    session: &mut Session,
    client: &mut TcpStream,
    peer: SocketAddr,
    pdu: &[u8],
) -> bool {
    let Some(req) = Parsed::parse(pdu) else {
        shared.record(
            peer,
            service(0, "malformed", false, format!("{} bytes", pdu.len())),
            "closed: malformed PDU",
        );
        return false;
    };
    let svc = classify(&req);
    let quirks = shared.lock_state().quirks.clone();
    let action = decide(shared, session, &req, &quirks);
    match action {
        Action::Silence(outcome) => {
            shared.record(peer, svc, &outcome);
            true
        }
        Action::Drop(outcome) => {
            shared.record(peer, svc, &outcome);
            false
        }
        Action::Answer(answer, outcome) => {
            shared.record(peer, svc, &outcome);
            client.write_all(&answers::frame(&answer)).await.is_ok()
        }
        Action::Forward(pdu) => {
            let is_setup = req.function() == Some(0xF0);
            match forward(shared, session, answers::frame(&pdu)).await {
                Ok(answer) => {
                    if is_setup && let Some(b) = answer.get(7 + 12 + 6..7 + 12 + 8) {
                        session.pdu = usize::from(u16::from_be_bytes([b[0], b[1]])).clamp(240, 960);
                    }
                    shared.record(peer, svc, "answered by snap7");
                    client.write_all(&answer).await.is_ok()
                }
                Err(err) => {
                    tracing::debug!(%peer, %err, "snap7 exchange failed");
                    shared.record(peer, svc, "closed: snap7 did not answer");
                    false
                }
            }
        }
    }
}

fn refusal(req: &Parsed, group: u8, sub: u8, code: u16, why: &str) -> Action {
    Action::Answer(
        answers::userdata_answer(req.pdu_ref, group, sub, 0, false, Err(code)),
        format!("refused 0x{code:04X} ({why})"),
    )
}

/// Decides how to answer one request.
fn decide(shared: &Arc<Shared>, session: &mut Session, req: &Parsed, quirks: &Quirks) -> Action {
    if quirks.get(Quirk::Stall) {
        return Action::Silence("no answer (stall quirk)".into());
    }
    if quirks.get(Quirk::Busy) && req.function() != Some(0xF0) {
        const TOO_FEW_RESOURCES: u16 = 0x8302;
        let outcome = "refused 0x8302 (busy quirk)".to_owned();
        return match req.userdata() {
            Some((group, sub, _, _)) => Action::Answer(
                answers::userdata_answer(req.pdu_ref, group, sub, 0, false, Err(TOO_FEW_RESOURCES)),
                outcome,
            ),
            None => Action::Answer(answers::job_error(req.pdu_ref, TOO_FEW_RESOURCES), outcome),
        };
    }
    if quirks.get(Quirk::Snap7Only) {
        return Action::Forward(rewrite_setup(shared, req));
    }
    if let Some(function) = req.function() {
        let item_refusal = if quirks.get(Quirk::RefuseDbRead) {
            Some((0x0A, "refuse-db-read"))
        } else if quirks.get(Quirk::RefuseDbRange) {
            Some((0x05, "refuse-db-range"))
        } else if quirks.get(Quirk::DenyDbRead) {
            Some((0x03, "deny-db-read"))
        } else {
            None
        };
        return match function {
            0xF0 => Action::Forward(rewrite_setup(shared, req)),
            0x04 | 0x05 if quirks.get(Quirk::PutGetOff) => Action::Answer(
                answers::job_error(req.pdu_ref, 0x8104),
                "refused 0x8104 (put-get-off quirk)".into(),
            ),
            // snap7 trusts the item count of a read/write; a request whose items do not add
            // up is refused here, as a CPU would.
            0x04 if !items_add_up(req, false) => Action::Answer(
                answers::job_error(req.pdu_ref, 0x8500),
                "refused 0x8500 (malformed item list)".into(),
            ),
            0x05 if !items_add_up(req, true) => Action::Answer(
                answers::job_error(req.pdu_ref, 0x8500),
                "refused 0x8500 (malformed item list)".into(),
            ),
            0x04 if let Some((code, quirk)) = item_refusal => Action::Answer(
                answers::read_var_refused(
                    req.pdu_ref,
                    req.params.get(1).copied().unwrap_or(0),
                    code,
                ),
                format!("every item refused with return code 0x{code:02X} ({quirk} quirk)"),
            ),
            0x1D..=0x1F => upload(shared, session, req, function),
            _ => Action::Forward(rebuild(req)),
        };
    }
    let Some((group, sub, _seq, next)) = req.userdata() else {
        return Action::Forward(rebuild(req));
    };
    match group {
        3 => {
            if quirks.get(Quirk::DropOnBlocks) {
                return Action::Drop("dropped the session (drop-on-blocks quirk)".into());
            }
            if quirks.get(Quirk::RefuseBlocks) {
                return refusal(req, 3, sub, 0x8104, "refuse-blocks quirk");
            }
            blocks(shared, session, req, sub, next, quirks)
        }
        4 if sub == 1 => {
            if next {
                return continuation(session, req, 4, 1);
            }
            let Some(b) = req.data.get(4..8) else {
                return refusal(req, 4, 1, 0xD401, "no SZL id");
            };
            let (id, index) = (
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            );
            if quirks.get(Quirk::RefuseIdentity) && matches!(id, 0x0011 | 0x001C) {
                return refusal(req, 4, 1, 0xD401, "refuse-identity quirk");
            }
            if quirks.get(Quirk::NoProtectionSzl) && id == 0x0232 {
                return refusal(req, 4, 1, 0xD401, "no-protection-szl quirk");
            }
            let list = {
                let state = shared.lock_state();
                if quirks.get(Quirk::SzlPlaceholder) {
                    answers::szl_list(&state, 0x0011, 0)
                } else {
                    answers::szl_list(&state, id, index)
                }
            };
            let Some(mut list) = list else {
                return Action::Forward(rebuild(req));
            };
            if quirks.get(Quirk::SzlNoCount)
                && let Some(count) = list.get_mut(6..8)
            {
                count.copy_from_slice(&[0, 0]);
            }
            if quirks.get(Quirk::SzlOverclaim)
                && let Some(count) = list.get_mut(6..8)
            {
                let claimed = u16::from_be_bytes([count[0], count[1]]).saturating_add(1);
                count.copy_from_slice(&claimed.to_be_bytes());
            }
            if quirks.get(Quirk::SzlNoHeader) {
                list.drain(..8.min(list.len()));
            }
            first_part(session, req, 4, 1, list, 1)
        }
        _ => Action::Forward(rebuild(req)),
    }
}

/// Whether a Read/Write Var request's parameters hold exactly its 1..=20 items of 12 bytes
/// (and, for a write, at least a data header per item).
fn items_add_up(req: &Parsed, write: bool) -> bool {
    let count = usize::from(req.params.get(1).copied().unwrap_or(0));
    (1..=20).contains(&count)
        && req.params.len() == 2 + 12 * count
        && (!write || req.data.len() >= 4 * count)
}

/// Rebuilds a parsed request as a PDU (it was parsed from exactly these bytes).
fn rebuild(req: &Parsed) -> Vec<u8> {
    let mut out = vec![0x32, req.rosctr, 0, 0];
    out.extend_from_slice(&req.pdu_ref.to_be_bytes());
    out.extend_from_slice(&(req.params.len() as u16).to_be_bytes());
    out.extend_from_slice(&(req.data.len() as u16).to_be_bytes());
    out.extend_from_slice(&req.params);
    out.extend_from_slice(&req.data);
    out
}

/// A setup request with the PDU capped at the CPU's `max_pdu`.
fn rewrite_setup(shared: &Arc<Shared>, req: &Parsed) -> Vec<u8> {
    let mut pdu = rebuild(req);
    if req.function() == Some(0xF0) {
        let max = shared.lock_state().max_pdu;
        if let Some(field) = pdu.get_mut(16..18) {
            let asked = u16::from_be_bytes([field[0], field[1]]);
            field.copy_from_slice(&asked.min(max).to_be_bytes());
        }
    }
    pdu
}

/// Sends the first part of a (possibly) multi-part userdata answer; keeps the rest.
fn first_part(
    session: &mut Session,
    req: &Parsed,
    group: u8,
    sub: u8,
    bytes: Vec<u8>,
    unit: usize,
) -> Action {
    session.pending = Some(Pending {
        group,
        sub,
        rest: bytes,
        unit,
    });
    next_part(session, req)
}

fn next_part(session: &mut Session, req: &Parsed) -> Action {
    let Some(mut pending) = session.pending.take() else {
        return refusal(req, 4, 1, 0xD402, "nothing pending");
    };
    let room = session.pdu.saturating_sub(26);
    let room = room - room % pending.unit.max(1);
    let take = pending.rest.len().min(room);
    let chunk: Vec<u8> = pending.rest.drain(..take).collect();
    let more = !pending.rest.is_empty();
    let seq = session.next_seq;
    session.next_seq = session.next_seq.wrapping_add(1).max(1);
    let answer = answers::userdata_answer(
        req.pdu_ref,
        pending.group,
        pending.sub,
        seq,
        more,
        Ok(&chunk),
    );
    if more {
        session.pending = Some(pending);
    }
    Action::Answer(answer, if more { "ok (more follows)" } else { "ok" }.into())
}

fn continuation(session: &mut Session, req: &Parsed, group: u8, sub: u8) -> Action {
    match &session.pending {
        Some(p) if p.group == group && p.sub == sub => next_part(session, req),
        _ => refusal(req, group, sub, 0xD402, "no answer in progress"),
    }
}

fn blocks(
    shared: &Arc<Shared>,
    session: &mut Session,
    req: &Parsed,
    sub: u8,
    next: bool,
    quirks: &Quirks,
) -> Action {
    let state = shared.lock_state();
    match sub {
        1 => Action::Answer(
            answers::userdata_answer(
                req.pdu_ref,
                3,
                1,
                0,
                false,
                Ok(&answers::block_counts(&state)),
            ),
            "ok".into(),
        ),
        2 if next => {
            drop(state);
            continuation(session, req, 3, 2)
        }
        2 if quirks.get(Quirk::RefuseBlockList) => {
            refusal(req, 3, 2, 0x8104, "refuse-block-list quirk")
        }
        3 if quirks.get(Quirk::RefuseBlockInfo) => {
            refusal(req, 3, 3, 0xD209, "refuse-block-info quirk")
        }
        2 => {
            let Some(&kind) = req.data.get(5) else {
                return refusal(req, 3, 2, 0xD20E, "no block type");
            };
            match answers::block_list(&state, kind) {
                Some(list) => {
                    drop(state);
                    first_part(session, req, 3, 2, list, 4)
                }
                None => refusal(req, 3, 2, 0xD20E, "no block of this type"),
            }
        }
        3 => {
            let Some((kind, number)) = req.data.get(4..11).and_then(ascii_block) else {
                return refusal(req, 3, 3, 0xD201, "bad block name");
            };
            let info = if quirks.get(Quirk::BlockinfoPlaceholder) {
                Some(answers::placeholder_info())
            } else {
                answers::block_info(&state, kind, number)
            };
            match info {
                Some(record) => Action::Answer(
                    answers::userdata_answer(req.pdu_ref, 3, 3, 0, false, Ok(&record)),
                    "ok".into(),
                ),
                None => refusal(req, 3, 3, 0xD209, "no such block"),
            }
        }
        _ => refusal(req, 3, sub, 0x8104, "unknown block function"),
    }
}

fn upload(shared: &Arc<Shared>, session: &mut Session, req: &Parsed, function: u8) -> Action {
    let error = |code: u16, why: &str| {
        Action::Answer(
            answers::job_error(req.pdu_ref, code),
            format!("refused 0x{code:04X} ({why})"),
        )
    };
    match function {
        0x1D => {
            let Some((kind, number)) = req.params.get(10..17).and_then(ascii_block) else {
                return error(0xD201, "bad block name");
            };
            let image = {
                let state = shared.lock_state();
                if state.effective_protection() >= 3 {
                    return error(0xD241, "protection level 3");
                }
                let db = if kind == 0x41 {
                    shared.extra.lock_backend().db(number).map(<[u8]>::to_vec)
                } else {
                    None
                };
                answers::upload_image(&state, kind, number, db.as_deref())
            };
            let Some(image) = image else {
                return error(0xD209, "no such block");
            };
            let id = session.next_id.to_be_bytes();
            session.next_id = session.next_id.wrapping_add(1).max(1);
            let mut params = vec![0x1D, 0x00, 0x01, 0x00];
            params.extend_from_slice(&id);
            let length = format!("{:07}", image.len());
            params.push(length.len() as u8);
            params.extend_from_slice(length.as_bytes());
            session.uploads.clear();
            session.uploads.insert(id, image);
            Action::Answer(answers::job_answer(req.pdu_ref, &params, &[]), "ok".into())
        }
        0x1E => {
            let Some(id) = req
                .params
                .get(4..8)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
            else {
                return error(0x8401, "no upload id");
            };
            let room = session.pdu.saturating_sub(18);
            let Some(rest) = session.uploads.get_mut(&id) else {
                return error(0x8401, "unknown upload id");
            };
            let take = rest.len().min(room);
            let chunk: Vec<u8> = rest.drain(..take).collect();
            let more = !rest.is_empty();
            let mut data = (chunk.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&[0x00, 0xFB]);
            data.extend_from_slice(&chunk);
            Action::Answer(
                answers::job_answer(req.pdu_ref, &[0x1E, u8::from(more)], &data),
                "ok".into(),
            )
        }
        _ => {
            let known = req
                .params
                .get(4..8)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .is_some_and(|id| session.uploads.remove(&id).is_some());
            if known {
                Action::Answer(answers::job_answer(req.pdu_ref, &[0x1F], &[]), "ok".into())
            } else {
                error(0x8401, "unknown upload id")
            }
        }
    }
}
