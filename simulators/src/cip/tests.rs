//! The simulator's own tests: the process entry point, the command language, hostile bytes,
//! and that state-changing services are logged as writes.

use super::*;
use crate::process::testing::{Process, assert_refuses_a_missing_state_file};
use tokio::io::AsyncWriteExt;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// A minimal client for these tests: register, then unconnected requests.
struct Raw {
    stream: TcpStream,
    session: u32,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&encap(0x65, 0, 0, &[0; 8], &[1, 0, 0, 0]))
            .await
            .expect("register");
        let (head, _) = read_frame(&mut stream).await.expect("register reply");
        let session = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        Raw { stream, session }
    }

    async fn request(&mut self, message: &[u8]) -> Vec<u8> {
        self.stream
            .write_all(&send_rr_data(self.session, message))
            .await
            .expect("send");
        let (_, body) = read_frame(&mut self.stream).await.expect("reply");
        body[16..].to_vec()
    }
}

async fn read_frame(stream: &mut TcpStream) -> io::Result<([u8; 24], Vec<u8>)> {
    let mut head = [0u8; 24];
    stream.read_exact(&mut head).await?;
    let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok((head, body))
}

fn symbolic(service: u8, tag: &str, data: &[u8]) -> Vec<u8> {
    let mut path = vec![0x91, tag.len() as u8];
    path.extend_from_slice(tag.as_bytes());
    if tag.len() % 2 == 1 {
        path.push(0);
    }
    let mut m = vec![service, (path.len() / 2) as u8];
    m.extend_from_slice(&path);
    m.extend_from_slice(data);
    m
}

#[tokio::test]
async fn run_prints_ready_lines_and_serves_the_control_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("requests.jsonl");
    let mut process = Process::<CipSimulator>::start(log_path.clone()).await;
    assert_eq!(
        process.send(&["set Oven_SP 185.5", "get Oven_SP"]).await,
        ["ok", "ok 185.5"]
    );

    let mut raw = Raw::connect(process.served).await;
    let reply = raw.request(&symbolic(0x4C, "Oven_SP", &[1, 0])).await;
    assert_eq!(&reply[..4], &[0xCC, 0, 0, 0]);
    assert_eq!(&reply[4..6], &[0xCA, 0]);
    assert_eq!(
        f32::from_le_bytes([reply[6], reply[7], reply[8], reply[9]]),
        185.5
    );

    process.stop().await;
    let logged =
        crate::request_log::RequestLog::read_json_lines(&log_path).expect("request log file");
    assert!(
        logged
            .iter()
            .any(|e| e.service == 0x4C && e.name == "read_tag")
    );
    assert!(logged.iter().all(|e| !e.write));
}

#[tokio::test]
async fn run_refuses_a_bad_state_file() {
    assert_refuses_a_missing_state_file::<CipSimulator>().await;
}

#[tokio::test]
async fn writes_are_applied_and_logged_as_writes() {
    let sim = CipSimulator::start(loopback(), CipState::demo().with_tick_ms(0))
        .await
        .expect("start");
    let mut raw = Raw::connect(sim.local_addr()).await;
    // Write Tag: REAL, 1 element, 200.0.
    let mut data = vec![0xCA, 0, 1, 0];
    data.extend_from_slice(&200.0f32.to_le_bytes());
    let reply = raw.request(&symbolic(0x4D, "Oven_SP", &data)).await;
    assert_eq!(&reply[..4], &[0xCD, 0, 0, 0]);
    assert_eq!(sim.tag("Oven_SP").expect("value"), serde_json::json!(200.0));
    // Set Attribute Single on Identity: refused, still a write.
    let reply = raw
        .request(&[0x10, 3, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07, b'x'])
        .await;
    assert_eq!(reply[2], 0x0E);
    // Reset: refused.
    let reply = raw.request(&[0x05, 2, 0x20, 0x01, 0x24, 0x01]).await;
    assert_eq!(reply[2], 0x0C);
    assert_eq!(sim.request_log().writes(), 3);
    // Forward Close on the connection manager is not a write (0x4E only writes on tags).
    assert!(!services::is_write(0x4E, Some(0x06)));
    assert!(services::is_write(0x4E, None));
}

#[tokio::test]
async fn hostile_bytes_get_statuses_or_a_closed_session_never_a_panic() {
    let sim = CipSimulator::start(loopback(), CipState::demo().with_tick_ms(0))
        .await
        .expect("start");
    let mut raw = Raw::connect(sim.local_addr()).await;
    for message in [
        vec![],
        vec![0x4C],
        vec![0x4C, 200, 0x91],
        vec![0x4C, 1, 0x91, 9],
        vec![0x0A, 2, 0x20, 0x02, 0x24, 0x01, 5, 0, 0xFF, 0xFF],
        vec![0x55, 2, 0x20, 0x6B, 0x24, 0x00, 0xFF],
        vec![0x52, 2, 0x20, 0x06, 0x24, 0x01, 1, 1, 0xFF, 0xFF],
        vec![0x4C, 2, 0x20, 0x6C, 0x24, 0x01, 1],
        symbolic(0x52, "Recipe", &[1, 0, 0xFF, 0xFF, 0xFF, 0xFF]),
        symbolic(0x4C, "Oven_SP", &[0xFF, 0xFF]),
    ] {
        let reply = raw.request(&message).await;
        assert!(reply.len() >= 4, "{message:02x?} -> {reply:02x?}");
        assert_ne!(reply[2], 0, "{message:02x?} must not succeed");
    }
    // Garbage framing: the connection closes, the simulator keeps serving.
    let mut junk = TcpStream::connect(sim.local_addr()).await.expect("connect");
    junk.write_all(&[0x6F, 0, 0xFF, 0xFF]).await.expect("send");
    junk.write_all(&[0u8; 64]).await.expect("send");
    drop(junk);
    let mut again = Raw::connect(sim.local_addr()).await;
    let reply = again.request(&symbolic(0x4C, "Line_Speed", &[1, 0])).await;
    assert_eq!(&reply[..6], &[0xCC, 0, 0, 0, 0xC4, 0]);
}

#[test]
fn commands_change_structure_and_the_audit_value() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = CipSimulator::start(loopback(), CipState::demo().with_tick_ms(0))
            .await
            .expect("start");
        let before = sim.audit_value();
        sim.set_tag("Oven_SP", "190").expect("set");
        assert_eq!(sim.audit_value(), before, "a value is not a download");
        sim.add_tag("Program:Oven.Fan_Speed", "REAL").expect("add");
        assert_ne!(sim.audit_value(), before);
        sim.remove_tag("Program:Oven.Fan_Speed").expect("remove");
        assert_eq!(sim.audit_value(), before, "putting it back restores it");
        sim.command("add-member Recipe_t Hold_Time DINT")
            .expect("add member");
        assert_eq!(
            sim.tag("Recipe.Hold_Time").expect("member"),
            serde_json::json!(0)
        );
        assert_eq!(
            sim.tag("Recipe.Temp").expect("kept"),
            serde_json::json!(182.5)
        );
        assert!(sim.command("set Nope 1").is_err());
        assert!(sim.command("add-tag 1x DINT").is_err());
        assert!(sim.command("quirk bogus on").is_err());
        assert!(sim.command("quirk no-audit on").is_ok());
        assert!(sim.command("frobnicate").is_err());
        let help = sim.command("help").expect("help");
        assert!(help.contains("add-tag"));
    });
}

/// An unconnected request: a SendRRData frame (interface 0, timeout 0) with a null address
/// item and an unconnected data item (0xB2) carrying `message`.
fn send_rr_data(session: u32, message: &[u8]) -> Vec<u8> {
    let mut data = vec![0u8; 6];
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&[0, 0, 0, 0]);
    data.extend_from_slice(&0xB2u16.to_le_bytes());
    data.extend_from_slice(&(message.len() as u16).to_le_bytes());
    data.extend_from_slice(message);
    encap(0x6F, session, 0, &[0; 8], &data)
}

/// Reads a SendRRData reply frame's header status and CPF body, or `None` once the
/// simulator closed the connection.
async fn request_raw(raw: &mut Raw, message: &[u8]) -> Option<(u32, Vec<u8>)> {
    raw.stream
        .write_all(&send_rr_data(raw.session, message))
        .await
        .ok()?;
    let (head, body) = read_frame(&mut raw.stream).await.ok()?;
    Some((
        u32::from_le_bytes([head[8], head[9], head[10], head[11]]),
        body,
    ))
}

fn multiple(messages: &[Vec<u8>]) -> Vec<u8> {
    let n = messages.len();
    let mut data = (n as u16).to_le_bytes().to_vec();
    let mut offset = 2 + 2 * n;
    for m in messages {
        data.extend_from_slice(&(offset as u16).to_le_bytes());
        offset += m.len();
    }
    for m in messages {
        data.extend_from_slice(m);
    }
    let mut out = vec![0x0A, 2, 0x20, 0x02, 0x24, 0x01];
    out.extend_from_slice(&data);
    out
}

const IDENTITY: [u8; 6] = [0x01, 2, 0x20, 0x01, 0x24, 0x01];

#[tokio::test]
async fn refusing_quirks_answer_their_status_and_take_parameters() {
    let sim = CipSimulator::start(loopback(), CipState::demo().with_tick_ms(0))
        .await
        .expect("start");
    let mut raw = Raw::connect(sim.local_addr()).await;

    // refuse-all: every service, embedded ones too, with the chosen status (0x08 default).
    for (command, status, ext) in [
        ("quirk refuse-all on", 0x08, 0),
        ("quirk refuse-all on 0x05", 0x05, 1),
        ("quirk refuse-all on 4", 0x04, 1),
    ] {
        sim.command(command).expect(command);
        let reply = raw.request(&IDENTITY).await;
        assert_eq!(&reply[..4], &[0x81, 0, status, ext], "{command}");
        let reply = raw
            .request(&multiple(&[
                IDENTITY.to_vec(),
                symbolic(0x4C, "Oven_SP", &[1, 0]),
            ]))
            .await;
        assert_eq!(
            &reply[..4],
            &[0x8A, 0, 0x1E, 0],
            "{command}: embedded refusals"
        );
    }
    sim.command("quirk refuse-all off").expect("off");
    assert!(
        sim.command("quirk refuse-all on 0").is_err(),
        "never success"
    );
    assert!(sim.command("quirk refuse-all on 0x1FF").is_err());
    assert!(sim.command("quirk no-audit on 5").is_err(), "no argument");

    // refuse-tag: that tag only, controller or program scope, status 0x05 unless set.
    sim.command("quirk refuse-tag on Oven_SP").expect("on");
    sim.command("quirk refuse-tag on Program:Oven.Ramp_Rate 0x08")
        .expect("on");
    assert!(sim.command("quirk refuse-tag on").is_err(), "needs a tag");
    let reply = raw.request(&symbolic(0x4C, "oven_sp", &[1, 0])).await;
    assert_eq!(&reply[..4], &[0xCC, 0, 0x05, 1]);
    let mut program = vec![0x4C, 0];
    for name in ["Program:Oven", "Ramp_Rate"] {
        program.push(0x91);
        program.push(name.len() as u8);
        program.extend_from_slice(name.as_bytes());
        if name.len() % 2 == 1 {
            program.push(0);
        }
    }
    program[1] = ((program.len() - 2) / 2) as u8;
    program.extend_from_slice(&[1, 0]);
    let reply = raw.request(&program).await;
    assert_eq!(&reply[..4], &[0xCC, 0, 0x08, 0]);
    let reply = raw.request(&symbolic(0x4C, "Line_Speed", &[1, 0])).await;
    assert_eq!(&reply[..4], &[0xCC, 0, 0, 0], "other tags are read");
    sim.command("quirk refuse-tag off").expect("off");
    let reply = raw.request(&symbolic(0x4C, "Oven_SP", &[1, 0])).await;
    assert_eq!(
        &reply[..4],
        &[0xCC, 0, 0, 0],
        "off forgets every refused tag"
    );

    // busy: every message-router service, the Multiple Service Packet as a whole too.
    sim.set_quirk(Quirk::Busy, true);
    let reply = raw.request(&IDENTITY).await;
    assert_eq!(&reply[..4], &[0x81, 0, 0x02, 0]);
    let reply = raw.request(&multiple(&[IDENTITY.to_vec()])).await;
    assert_eq!(&reply[..4], &[0x8A, 0, 0x02, 0]);
    sim.set_quirk(Quirk::Busy, false);

    // no-program-name, garbled-clock, refuse-template.
    sim.set_quirk(Quirk::NoProgramName, true);
    let reply = raw.request(&[0x01, 2, 0x20, 0x64, 0x24, 0x01]).await;
    assert_eq!(&reply[..4], &[0x81, 0, 0x08, 0]);
    sim.set_quirk(Quirk::GarbledClock, true);
    let reply = raw
        .request(&[0x03, 2, 0x20, 0x8B, 0x24, 0x01, 1, 0, 0x0B, 0])
        .await;
    assert_eq!(reply, vec![0x83, 0, 0, 0, 0x0B, 0, 0x16, 0]);
    sim.set_quirk(Quirk::RefuseTemplate, true);
    let reply = raw
        .request(&[0x4C, 3, 0x20, 0x6C, 0x25, 0, 0x23, 0x01, 0, 0, 0, 0, 10, 0])
        .await;
    assert_eq!(&reply[..4], &[0xCC, 0, 0x05, 1]);
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn broken_multiple_service_packets_and_cpppos_refusals_are_what_they_say() {
    let sim = CipSimulator::start(loopback(), CipState::demo().with_tick_ms(0))
        .await
        .expect("start");
    let mut raw = Raw::connect(sim.local_addr()).await;

    // broken-msp: the last offset points past the end of the reply.
    sim.set_quirk(Quirk::BrokenMsp, true);
    let reply = raw
        .request(&multiple(&[
            IDENTITY.to_vec(),
            symbolic(0x4C, "Oven_SP", &[1, 0]),
        ]))
        .await;
    assert_eq!(&reply[..4], &[0x8A, 0, 0, 0]);
    let data = &reply[4..];
    let last = usize::from(u16::from_le_bytes([data[4], data[5]]));
    assert!(last > data.len(), "offset {last} of {} bytes", data.len());
    sim.set_quirk(Quirk::BrokenMsp, false);

    // browse-encap-unsupported: encapsulation status 0x0008, no reply, connection closed.
    sim.set_quirk(Quirk::BrowseEncapUnsupported, true);
    let list = [0x55, 2, 0x20, 0x6B, 0x24, 0x00, 1, 0, 1, 0];
    let (status, body) = request_raw(&mut raw, &list).await.expect("an answer");
    assert_eq!((status, body.len()), (8, 0));
    assert!(
        request_raw(&mut raw, &IDENTITY).await.is_none(),
        "the connection is closed"
    );
    // The simulator itself keeps serving.
    let mut again = Raw::connect(sim.local_addr()).await;
    let reply = again.request(&IDENTITY).await;
    assert_eq!(&reply[..4], &[0x81, 0, 0, 0]);
    assert_eq!(sim.request_log().writes(), 0);
}

#[test]
fn state_files_switch_parameterised_quirks() {
    let state = CipState::from_toml(
        "[quirks]\nrefuse-all = 5\nrefuse-tag = [\"Oven_SP\", \"Program:Oven.Ramp_Rate\"]\nbusy = false\n",
    )
    .expect("valid");
    let quirks = state.quirks();
    assert_eq!(quirks.refuse_all_status(), Some(0x05));
    assert_eq!(quirks.refused_tag("OVEN_SP"), Some(0x05));
    assert_eq!(quirks.refused_tag("program:oven.ramp_rate"), Some(0x05));
    assert_eq!(quirks.refused_tag("Line_Speed"), None);
    assert!(!quirks.get(Quirk::Busy));
    for bad in [
        "[quirks]\nrefuse-all = 300\n",
        "[quirks]\nbusy = 2\n",
        "[quirks]\nrefuse-tag = [1]\n",
    ] {
        assert!(CipState::from_toml(bad).is_err(), "{bad}");
    }
}
