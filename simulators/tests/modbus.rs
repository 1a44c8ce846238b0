//! The Modbus simulator seen from the outside: tokio-modbus's client (what
//! otdrift uses) and raw frames (for malformed traffic) against a simulator
//! on 127.0.0.1:0.

// This file plays a Modbus master against the simulator, writes included: the simulator must
// apply and log them. The workspace bans these client calls everywhere else (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::{net::SocketAddr, time::Duration};

use otdrift_simulators::{
    RequestLog,
    modbus::{CommandError, ModbusSimHandle, ModbusSimulator, ModbusState, Quirk},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tokio_modbus::{
    ExceptionCode, Slave,
    client::{Context, Reader, Writer, tcp},
    prelude::ReadCode,
};

const STATE: &str = r#"
unit_id = 1
tick_ms = 0

[identity]
vendor_name = "ACME"
product_code = "PLC-1"
revision = "2.0"
product_name = "Test PLC"

[[holding]]
start = 0
values = [100, 200, 300]
[[holding]]
start = 1000
count = 200
fill = 7

[[input]]
start = 0
values = [5, 65535]
tick = "counter"
[[input]]
start = 2
values = [42]
[[input]]
start = 3
count = 2
tick = "sine"

[[coil]]
start = 0
values = [true, false, true]

[[discrete]]
start = 0
count = 16
"#;

/// Generous bound for anything that should answer; never reached when the
/// simulator works.
const ANSWER: Duration = Duration::from_secs(10);

async fn start(state: &str) -> ModbusSimHandle {
    let state = ModbusState::from_toml(state).expect("test state parses");
    ModbusSimulator::start(local(), state)
        .await
        .expect("simulator starts on 127.0.0.1:0")
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

async fn client(sim: &ModbusSimHandle) -> Context {
    tcp::connect(sim.local_addr())
        .await
        .expect("client connects")
}

async fn client_for_unit(sim: &ModbusSimHandle, unit: u8) -> Context {
    tcp::connect_slave(sim.local_addr(), Slave(unit))
        .await
        .expect("client connects")
}

/// Unwraps the transport layer of a tokio-modbus result, keeping the
/// Modbus-level result (values or exception).
async fn answered<T>(
    call: impl Future<Output = tokio_modbus::Result<T>>,
) -> Result<T, ExceptionCode> {
    timeout(ANSWER, call)
        .await
        .expect("the simulator answers")
        .expect("no transport or protocol error")
}

async fn raw_connect(sim: &ModbusSimHandle) -> TcpStream {
    TcpStream::connect(sim.local_addr())
        .await
        .expect("raw connect")
}

fn frame(transaction: u16, protocol: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = transaction.to_be_bytes().to_vec();
    out.extend(protocol.to_be_bytes());
    out.extend(
        u16::try_from(pdu.len() + 1)
            .expect("small PDU")
            .to_be_bytes(),
    );
    out.push(unit);
    out.extend(pdu);
    out
}

/// Reads one response frame; returns (transaction id, unit, PDU).
async fn raw_response(stream: &mut TcpStream) -> (u16, u8, Vec<u8>) {
    let mut header = [0u8; 7];
    timeout(ANSWER, stream.read_exact(&mut header))
        .await
        .expect("the simulator answers")
        .expect("response header");
    assert_eq!(&header[2..4], &[0, 0], "protocol id");
    let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let mut pdu = vec![0u8; len - 1];
    timeout(ANSWER, stream.read_exact(&mut pdu))
        .await
        .expect("the simulator answers")
        .expect("response PDU");
    (u16::from_be_bytes([header[0], header[1]]), header[6], pdu)
}

async fn raw_call(stream: &mut TcpStream, transaction: u16, pdu: &[u8]) -> Vec<u8> {
    stream
        .write_all(&frame(transaction, 0, 1, pdu))
        .await
        .expect("send raw request");
    let (tid, unit, pdu) = raw_response(stream).await;
    assert_eq!(tid, transaction, "transaction id echoed");
    assert_eq!(unit, 1, "unit id echoed");
    pdu
}

#[tokio::test]
async fn reads_return_the_state_file_values() {
    let sim = start(STATE).await;
    let mut ctx = client(&sim).await;
    assert_eq!(
        answered(ctx.read_holding_registers(0, 3)).await,
        Ok(vec![100, 200, 300])
    );
    assert_eq!(
        answered(ctx.read_holding_registers(1000, 125)).await,
        Ok(vec![7; 125])
    );
    assert_eq!(
        answered(ctx.read_input_registers(0, 3)).await,
        Ok(vec![5, 65535, 42])
    );
    assert_eq!(
        answered(ctx.read_coils(0, 3)).await,
        Ok(vec![true, false, true])
    );
    assert_eq!(
        answered(ctx.read_discrete_inputs(0, 16)).await,
        Ok(vec![false; 16])
    );
    assert_eq!(sim.holding(2), Some(300));
    assert_eq!(sim.holding(3), None);
}

#[tokio::test]
async fn undefined_addresses_and_bad_quantities_are_refused() {
    let sim = start(STATE).await;
    let mut ctx = client(&sim).await;
    let address = Err(ExceptionCode::IllegalDataAddress);
    let value = Err(ExceptionCode::IllegalDataValue);
    assert_eq!(answered(ctx.read_holding_registers(3, 1)).await, address);
    assert_eq!(answered(ctx.read_holding_registers(2, 2)).await, address);
    assert_eq!(
        answered(ctx.read_holding_registers(1100, 101)).await,
        address
    );
    assert_eq!(answered(ctx.read_input_registers(5, 1)).await, address);
    assert_eq!(
        answered(ctx.read_coils(3, 1)).await,
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(answered(ctx.read_holding_registers(1000, 126)).await, value);
    assert_eq!(answered(ctx.read_holding_registers(1000, 0)).await, value);
    assert_eq!(
        answered(ctx.read_discrete_inputs(0, 2001)).await,
        Err(ExceptionCode::IllegalDataValue)
    );
    // Quantity is checked before the address, as the specification says.
    assert_eq!(
        answered(ctx.read_holding_registers(60000, 126)).await,
        value
    );
    // The connection survives exceptions.
    assert_eq!(
        answered(ctx.read_holding_registers(0, 1)).await,
        Ok(vec![100])
    );
}

#[tokio::test]
async fn unit_ids_like_a_gateway() {
    let sim = start(STATE).await;
    for unit in [1, 0, 255] {
        let mut ctx = client_for_unit(&sim, unit).await;
        assert_eq!(
            answered(ctx.read_holding_registers(0, 1)).await,
            Ok(vec![100]),
            "unit {unit}"
        );
    }
    let mut ctx = client_for_unit(&sim, 7).await;
    assert_eq!(
        answered(ctx.read_holding_registers(0, 1)).await,
        Err(ExceptionCode::GatewayTargetDevice)
    );
    let unit_ids: Vec<_> = sim
        .request_log()
        .entries()
        .iter()
        .map(|e| e.unit_id)
        .collect();
    assert_eq!(unit_ids, [Some(1), Some(0), Some(255), Some(7)]);
}

#[tokio::test]
async fn device_identification() {
    let sim = start(STATE).await;
    let mut ctx = client(&sim).await;
    let basic = answered(ctx.read_device_identification(ReadCode::Basic, 0))
        .await
        .expect("basic identification");
    let objects: Vec<(u8, &str)> = basic
        .device_id_objects
        .iter()
        .map(|o| (o.id, o.value_as_str().expect("utf-8")))
        .collect();
    assert_eq!(objects, [(0, "ACME"), (1, "PLC-1"), (2, "2.0")]);
    assert!(!basic.more_follows);
    assert_eq!(basic.conformity_level.value(), 0x82);

    let regular = answered(ctx.read_device_identification(ReadCode::Regular, 0))
        .await
        .expect("regular identification");
    assert_eq!(regular.device_id_objects.len(), 4);

    let specific = answered(ctx.read_device_identification(ReadCode::Specific, 4))
        .await
        .expect("specific object");
    assert_eq!(specific.device_id_objects.len(), 1);
    assert_eq!(
        specific.device_id_objects[0].value_as_str(),
        Some("Test PLC")
    );
    assert_eq!(
        answered(ctx.read_device_identification(ReadCode::Specific, 5)).await,
        Err(ExceptionCode::IllegalDataAddress)
    );

    // Objects too large for one PDU stream with more_follows/next_object_id.
    sim.command(&format!("identity model_name {}", "M".repeat(200)))
        .expect("set model name");
    sim.command(&format!("identity 0x80 {}", "S".repeat(100)))
        .expect("set extended object");
    let first = answered(ctx.read_device_identification(ReadCode::Extended, 0))
        .await
        .expect("extended identification, first part");
    assert!(first.more_follows);
    assert_eq!(first.next_object_id, 0x80);
    let ids: Vec<u8> = first.device_id_objects.iter().map(|o| o.id).collect();
    assert_eq!(ids, [0, 1, 2, 4, 5]);
    assert_eq!(first.conformity_level.value(), 0x83);
    let rest = answered(ctx.read_device_identification(ReadCode::Extended, first.next_object_id))
        .await
        .expect("extended identification, second part");
    assert!(!rest.more_follows);
    let ids: Vec<u8> = rest.device_id_objects.iter().map(|o| o.id).collect();
    assert_eq!(ids, [0x80]);

    sim.command("identity off").expect("identity off");
    assert_eq!(
        answered(ctx.read_device_identification(ReadCode::Basic, 0)).await,
        Err(ExceptionCode::IllegalFunction)
    );
    sim.command("identity revision 2.1")
        .expect("change revision while off");
    sim.command("identity on").expect("identity on");
    let basic = answered(ctx.read_device_identification(ReadCode::Basic, 0))
        .await
        .expect("basic identification again");
    assert_eq!(basic.device_id_objects[2].value_as_str(), Some("2.1"));
}

#[tokio::test]
async fn no_identity_table_refuses_fc43() {
    let sim = start("[[holding]]\nstart = 0\nvalues = [1]\n").await;
    let mut ctx = client(&sim).await;
    assert_eq!(
        answered(ctx.read_device_identification(ReadCode::Basic, 0)).await,
        Err(ExceptionCode::IllegalFunction)
    );
    assert!(sim.command("identity on").is_err(), "nothing to switch on");
}

#[tokio::test]
async fn writes_are_applied_and_logged() {
    let sim = start(STATE).await;
    let mut ctx = client(&sim).await;
    answered(ctx.read_holding_registers(0, 3))
        .await
        .expect("read");
    answered(ctx.read_coils(0, 3)).await.expect("read");
    answered(ctx.write_single_register(0, 111))
        .await
        .expect("FC 6");
    answered(ctx.write_multiple_registers(1000, &[1, 2, 3]))
        .await
        .expect("FC 16");
    answered(ctx.write_single_coil(1, true))
        .await
        .expect("FC 5");
    answered(ctx.write_multiple_coils(0, &[false, false]))
        .await
        .expect("FC 15");
    answered(ctx.masked_write_register(2, 0x00FF, 0x0100))
        .await
        .expect("FC 22");
    let read = answered(ctx.read_write_multiple_registers(1000, 3, 1001, &[9]))
        .await
        .expect("FC 23");
    assert_eq!(read, [1, 9, 3]);
    assert_eq!(
        answered(ctx.write_single_register(3, 1)).await,
        Err(ExceptionCode::IllegalDataAddress)
    );

    assert_eq!(sim.holding(0), Some(111));
    assert_eq!(sim.holding(2), Some((300 & 0x00FF) | 0x0100));
    assert_eq!(
        answered(ctx.read_coils(0, 3)).await,
        Ok(vec![false, false, true])
    );

    let log = sim.request_log();
    let entries = log.entries();
    let summary: Vec<(u16, &str, bool)> = entries
        .iter()
        .map(|e| (e.service, e.name.as_str(), e.write))
        .collect();
    assert_eq!(
        summary,
        [
            (3, "read_holding_registers", false),
            (1, "read_coils", false),
            (6, "write_single_register", true),
            (16, "write_multiple_registers", true),
            (5, "write_single_coil", true),
            (15, "write_multiple_coils", true),
            (22, "mask_write_register", true),
            (23, "read_write_multiple_registers", true),
            (6, "write_single_register", true),
            (1, "read_coils", false),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|e| e.protocol == "modbus" && e.unit_id == Some(255))
    );
    assert_eq!(entries[0].detail, "address=0 count=3");
    assert_eq!((entries[0].address, entries[0].count), (Some(0), Some(3)));
    assert_eq!(entries[8].outcome, "exception 0x02 (illegal data address)");
    assert_eq!(log.total(), 10);
    assert_eq!(log.writes(), 7);
    let by_function = log.count_by_function();
    assert_eq!(by_function.get(&1), Some(&2));
    assert_eq!(by_function.get(&6), Some(&2));
    assert_eq!(by_function.get(&4), None);

    let reply = sim.command("log").expect("log command");
    let json: serde_json::Value = serde_json::from_str(&reply).expect("log reply is JSON");
    assert_eq!(json["total"], 10);
    assert_eq!(json["writes"], 7);
    assert_eq!(json["by_function"]["6"], 2);
    sim.command("log clear").expect("log clear");
    assert_eq!(log.total(), 0);
    assert!(log.entries().is_empty());
}

#[tokio::test]
async fn set_and_tick_change_what_clients_read() {
    let sim = start(STATE).await;
    let mut ctx = client(&sim).await;
    sim.command("set holding 1 222 -1 ").expect("set holding");
    assert_eq!(
        answered(ctx.read_holding_registers(0, 3)).await,
        Ok(vec![100, 222, 0xFFFF])
    );
    sim.command("set coil 1 1").expect("set coil");
    assert_eq!(
        answered(ctx.read_coils(0, 3)).await,
        Ok(vec![true, true, true])
    );
    sim.command("set discrete 15 true").expect("set discrete");
    assert_eq!(
        answered(ctx.read_discrete_inputs(15, 1)).await,
        Ok(vec![true])
    );
    sim.command("set input 2 43").expect("set input");
    sim.set_holding(1000, &[5, 6]).expect("typed set");
    assert_eq!(
        answered(ctx.read_holding_registers(1000, 2)).await,
        Ok(vec![5, 6])
    );
    assert_eq!(
        sim.command("get holding 0 3").as_deref(),
        Ok("[100,222,65535]")
    );

    // Outside the defined blocks nothing is written.
    assert_eq!(
        sim.command("set holding 2 1 2"),
        Err(CommandError::Address {
            table: "holding",
            address: 3
        })
    );
    assert_eq!(sim.holding(2), Some(0xFFFF));
    assert!(sim.set_coils(2, &[true, true]).is_err());
    assert!(sim.command("set holding 0 65536").is_err());
    assert!(sim.command("set coil 0 2").is_err());
    assert!(sim.command("set registers 0 1").is_err());

    let before = answered(ctx.read_input_registers(0, 5))
        .await
        .expect("read inputs");
    assert_eq!(&before[..3], &[5, 65535, 43]);
    sim.command("tick").expect("tick");
    let after = answered(ctx.read_input_registers(0, 5))
        .await
        .expect("read inputs");
    assert_eq!(
        &after[..3],
        &[6, 0, 43],
        "counters move (wrapping), static stays"
    );
    assert_eq!(&after[3..], &[1105, 1208], "sine pattern, tick 1");
    sim.tick();
    sim.command("tick 2").expect("tick 2");
    assert_eq!(sim.state().input(0), Some(9));
    assert_eq!(
        answered(ctx.read_holding_registers(0, 1)).await,
        Ok(vec![100])
    );
    // Commands are not Modbus requests.
    assert!(sim.request_log().entries().iter().all(|e| !e.write));
}

#[tokio::test]
async fn stall_quirk_makes_reads_time_out() {
    let sim = start(STATE).await;
    let mut ctx = client(&sim).await;
    sim.command("quirk stall on").expect("stall on");
    let stalled = timeout(Duration::from_millis(200), ctx.read_holding_registers(0, 1)).await;
    assert!(stalled.is_err(), "no answer while stalled");
    sim.set_quirk(Quirk::Stall, false);
    assert_eq!(
        answered(ctx.read_holding_registers(0, 1)).await,
        Ok(vec![100])
    );
    let outcomes: Vec<String> = sim
        .request_log()
        .entries()
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["no answer (stall quirk)", "ok"]);
}

#[tokio::test]
async fn short_read_quirk_answers_one_element_fewer() {
    let sim = start(STATE).await;
    let mut raw = raw_connect(&sim).await;
    sim.command("quirk short-read on").expect("short-read on");
    // FC 3, 3 registers: byte count 4, two registers.
    assert_eq!(
        raw_call(&mut raw, 1, &[0x03, 0, 0, 0, 3]).await,
        [0x03, 4, 0, 100, 0, 200]
    );
    // FC 1, 3 coils: needs one data byte, gets none.
    assert_eq!(raw_call(&mut raw, 2, &[0x01, 0, 0, 0, 3]).await, [0x01, 0]);
    // FC 2, 16 inputs: needs two data bytes, gets one.
    assert_eq!(
        raw_call(&mut raw, 3, &[0x02, 0, 0, 0, 16]).await,
        [0x02, 1, 0]
    );
    sim.command("quirk short-read off").expect("short-read off");
    assert_eq!(
        raw_call(&mut raw, 4, &[0x03, 0, 0, 0, 1]).await,
        [0x03, 2, 0, 100]
    );
}

#[tokio::test]
async fn limit_64_quirk_refuses_65_registers() {
    let sim = start(STATE).await;
    let mut ctx = client(&sim).await;
    assert!(answered(ctx.read_holding_registers(1000, 65)).await.is_ok());
    sim.command("quirk limit-64 on").expect("limit-64 on");
    assert_eq!(
        answered(ctx.read_holding_registers(1000, 64)).await,
        Ok(vec![7; 64])
    );
    assert_eq!(
        answered(ctx.read_holding_registers(1000, 65)).await,
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(
        sim.command("quirk").as_deref(),
        Ok(
            r#"{"busy":false,"conformity-83":false,"limit-64":true,"refuse-reads":false,"short-read":false,"slow":false,"stall":false}"#
        )
    );
    assert!(sim.command("quirk wobble on").is_err());
}

#[tokio::test]
async fn quirks_from_the_state_file() {
    let sim = start("[quirks]\nlimit_64 = true\n[[holding]]\nstart = 0\ncount = 100\n").await;
    let mut ctx = client(&sim).await;
    assert_eq!(
        answered(ctx.read_holding_registers(0, 65)).await,
        Err(ExceptionCode::IllegalDataValue)
    );
}

#[tokio::test]
async fn json_lines_log_has_one_line_per_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("requests.jsonl");
    let sim = start(STATE).await;
    sim.log_to_file(&path).expect("log to file");
    let mut ctx = client(&sim).await;
    answered(ctx.read_holding_registers(0, 3))
        .await
        .expect("read");
    answered(ctx.read_input_registers(0, 1))
        .await
        .expect("read");
    answered(ctx.write_single_register(0, 1))
        .await
        .expect("write");
    let _ = answered(ctx.read_holding_registers(3, 1)).await;

    let text = std::fs::read_to_string(&path).expect("read log file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let first: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON line");
    assert_eq!(first["protocol"], "modbus");
    assert_eq!(first["service"], 3);
    assert_eq!(first["name"], "read_holding_registers");
    assert_eq!(first["detail"], "address=0 count=3");
    assert_eq!(first["write"], false);
    assert!(first["time"].is_string() && first["peer"].is_string());
    let entries = RequestLog::read_json_lines(&path).expect("parse log file");
    assert_eq!(entries, sim.request_log().entries());
    assert_eq!(entries.iter().filter(|e| e.write).count(), 1);
}

#[tokio::test]
async fn press_demo_is_served() {
    let state = ModbusState::press_demo().with_tick_ms(0);
    assert_eq!(state.unit_id(), 1);
    let sim = ModbusSimulator::start(local(), state)
        .await
        .expect("start press demo");
    let mut ctx = client(&sim).await;
    let recipe = answered(ctx.read_holding_registers(0, 50))
        .await
        .expect("recipe");
    assert_eq!(recipe[0], 42);
    assert_eq!(recipe[2], 1850);
    assert_eq!(
        answered(ctx.read_holding_registers(50, 1)).await,
        Err(ExceptionCode::IllegalDataAddress)
    );
    let live = answered(ctx.read_input_registers(0, 10))
        .await
        .expect("live values");
    sim.tick();
    let moved = answered(ctx.read_input_registers(0, 10))
        .await
        .expect("live values");
    assert!(
        live.iter().zip(&moved).all(|(a, b)| a != b),
        "every input register ticks"
    );
    assert_eq!(
        answered(ctx.read_coils(0, 16)).await.expect("coils").len(),
        16
    );
    assert_eq!(
        answered(ctx.read_discrete_inputs(0, 16))
            .await
            .expect("inputs")
            .len(),
        16
    );
    let id = answered(ctx.read_device_identification(ReadCode::Regular, 0))
        .await
        .expect("identity");
    assert_eq!(id.device_id_objects[1].value_as_str(), Some("SIM-PRESS"));
}

#[tokio::test]
async fn hostile_frames_get_exceptions_not_panics() {
    let sim = start(STATE).await;
    let mut raw = raw_connect(&sim).await;
    // FC 15 claiming 2000 coils with a single data byte.
    assert_eq!(
        raw_call(&mut raw, 1, &[0x0F, 0, 0, 0x07, 0xD0, 1, 0xFF]).await,
        [0x8F, 3]
    );
    // FC 16 whose doubled quantity overflows 16 bits.
    assert_eq!(
        raw_call(&mut raw, 2, &[0x10, 0, 0, 0x80, 0x01, 2, 0, 1]).await,
        [0x90, 3]
    );
    // Coil value that is neither ON nor OFF.
    assert_eq!(
        raw_call(&mut raw, 3, &[0x05, 0, 0, 0x12, 0x34]).await,
        [0x85, 3]
    );
    // Unknown function code, other MEI type, truncated request.
    assert_eq!(raw_call(&mut raw, 4, &[0x41, 1, 2, 3]).await, [0xC1, 1]);
    assert_eq!(raw_call(&mut raw, 5, &[0x2B, 0x0D, 0, 0]).await, [0xAB, 1]);
    assert_eq!(raw_call(&mut raw, 6, &[0x03, 0]).await, [0x83, 3]);
    // Invalid Read Device ID code.
    assert_eq!(raw_call(&mut raw, 7, &[0x2B, 0x0E, 9, 0]).await, [0xAB, 3]);
    // A frame with a foreign protocol id is ignored; the next one answered.
    raw.write_all(&frame(8, 0x1234, 1, &[0x03, 0, 0, 0, 1]))
        .await
        .expect("send");
    assert_eq!(
        raw_call(&mut raw, 9, &[0x03, 0, 0, 0, 1]).await,
        [0x03, 2, 0, 100]
    );
    assert_eq!(sim.holding(0), Some(100), "no malformed write was applied");
    assert_eq!(
        sim.request_log().writes(),
        3,
        "malformed writes are still writes"
    );

    // An impossible MBAP length closes that connection only.
    raw.write_all(&[0, 10, 0, 0, 0, 0, 1]).await.expect("send");
    let mut rest = Vec::new();
    let closed = timeout(ANSWER, raw.read_to_end(&mut rest))
        .await
        .expect("server closes");
    assert!(closed.is_ok() && rest.is_empty());
    // Garbage then hang-up.
    let mut junk = raw_connect(&sim).await;
    junk.write_all(&[0xFF; 5]).await.expect("send junk");
    drop(junk);
    let mut ctx = client(&sim).await;
    assert_eq!(
        answered(ctx.read_holding_registers(0, 1)).await,
        Ok(vec![100])
    );
}

#[tokio::test]
async fn connections_are_independent_and_share_state() {
    let sim = start(STATE).await;
    let mut a = client(&sim).await;
    let mut b = client(&sim).await;
    answered(a.write_single_register(0, 4242))
        .await
        .expect("write on a");
    assert_eq!(
        answered(b.read_holding_registers(0, 1)).await,
        Ok(vec![4242])
    );
    let peers: Vec<SocketAddr> = sim.request_log().entries().iter().map(|e| e.peer).collect();
    assert_ne!(peers[0], peers[1]);
}

#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    let sim = start("max_connections = 1\n[[holding]]\nstart = 0\nvalues = [1]\n").await;
    let mut first = client(&sim).await;
    assert_eq!(
        answered(first.read_holding_registers(0, 1)).await,
        Ok(vec![1])
    );
    let mut second = raw_connect(&sim).await;
    let mut rest = Vec::new();
    let closed = timeout(ANSWER, second.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(
        closed.map(|n| n == 0).unwrap_or(true),
        "second connection closed"
    );
    assert_eq!(
        answered(first.read_holding_registers(0, 1)).await,
        Ok(vec![1])
    );
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_accepting() {
    let sim = start(STATE).await;
    let addr = sim.local_addr();
    let mut raw = raw_connect(&sim).await;
    assert_eq!(
        raw_call(&mut raw, 1, &[0x03, 0, 0, 0, 1]).await,
        [0x03, 2, 0, 100]
    );
    sim.shutdown();
    timeout(ANSWER, sim.stopped()).await.expect("stops");
    let mut rest = Vec::new();
    let read = timeout(ANSWER, raw.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(read.map(|n| n == 0).unwrap_or(true));
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_simulator() {
    let sim = start(STATE).await;
    let clone = sim.clone();
    drop(sim);
    let mut raw = raw_connect(&clone).await;
    assert_eq!(
        raw_call(&mut raw, 1, &[0x03, 0, 0, 0, 1]).await,
        [0x03, 2, 0, 100],
        "a clone keeps it running"
    );
    drop(clone);
    let mut rest = Vec::new();
    let read = timeout(ANSWER, raw.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(read.map(|n| n == 0).unwrap_or(true), "connection closed");
}

#[tokio::test]
async fn command_language() {
    let sim = start(STATE).await;
    assert!(sim.command("help").expect("help").contains("quirk"));
    assert_eq!(sim.command("# comment").as_deref(), Ok(""));
    assert!(matches!(
        sim.command("frobnicate"),
        Err(CommandError::Unknown(_))
    ));
    assert!(sim.command("set holding").is_err());
    assert!(sim.command("tick 0").is_err());
    assert!(sim.command("log rotate").is_err());
    assert!(sim.command("identity colour red").is_err());
    assert!(sim.command("identity product_name").is_err());
    sim.command("identity product_name  Press  two ")
        .expect("value is the rest of the line");
    let identity: serde_json::Value =
        serde_json::from_str(&sim.command("identity").expect("identity")).expect("JSON");
    assert_eq!(identity["objects"]["product_name"], "Press  two");
    assert_eq!(identity["enabled"], true);
    assert_eq!(
        sim.command("get coil 0 3").as_deref(),
        Ok("[true,false,true]")
    );
    assert!(sim.command("get coil 0 4").is_err());
}
