//! The Modbus collector against the Modbus simulator over loopback.

mod common;

use std::net::SocketAddr;

use common::{
    LOOPBACK, SimulatedDevice, assert_collector_compliance, assert_reconnects_after_restart,
    closed_address, collector_and_asset, connect_error, garbage,
};
use otdrift_core::{Diff, Value};
use otdrift_protocols::modbus::ModbusCollector;
use otdrift_protocols::{Collector, ErrorKind, FailureReason, MemoryBudget, capture_within};
use otdrift_simulators::modbus::{ModbusSimHandle, ModbusSimulator, ModbusState, Quirk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn press() -> ModbusSimHandle {
    ModbusSimulator::start(LOOPBACK, ModbusState::press_demo())
        .await
        .expect("simulator starts")
}

fn collector(address: &str, extra: &str, setpoints: &str) -> ModbusCollector {
    let rest = format!("timeout_ms = 300\n{extra}\n{setpoints}");
    collector_and_asset!(
        Modbus,
        ModbusCollector::new,
        "modbus",
        "press-7",
        address,
        &rest
    )
    .0
}

const RECIPE: &str = r#"
  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 50
  [[asset.setpoints]]
  name = "interlocks"
  table = "coil"
  start = 0
  count = 16
"#;

struct Press(ModbusSimHandle);

impl SimulatedDevice for Press {
    fn change_a_setpoint(&self) -> String {
        self.0.set_holding(6, &[275]).expect("set");
        "modbus/holding/6".to_owned()
    }
    fn restore_the_setpoint(&self) {
        self.0.set_holding(6, &[250]).expect("set");
    }
    fn stall(&self, on: bool) {
        self.0.set_quirk(Quirk::Stall, on);
    }
    fn tick_runtime(&self) {
        self.0.tick();
    }
    fn write_requests(&self) -> usize {
        self.0.request_log().writes()
    }
}

#[tokio::test]
async fn the_modbus_collector_is_compliant() {
    let sim = press().await;
    assert_eq!(
        sim.holding(6),
        Some(250),
        "the press's clamp pressure setpoint"
    );
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    assert_collector_compliance(&mut c, &Press(sim.clone())).await;
    c.close().await;
}

#[tokio::test]
async fn identity_is_read_and_its_absence_recorded() {
    let sim = press().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    let get = |p: &str| capture.snapshot.get(p).map(|i| i.value().clone());
    assert_eq!(
        get("modbus/identity/vendor_name"),
        Some(Value::from("otdrift"))
    );
    assert_eq!(
        get("modbus/identity/product_code"),
        Some(Value::from("SIM-PRESS"))
    );
    assert_eq!(get("modbus/identity/revision"), Some(Value::from("1.4")));
    assert_eq!(get("modbus/holding/6"), Some(Value::UInt(250)));
    assert!(matches!(get("modbus/coil/0"), Some(Value::Bool(_))));
    assert_eq!(capture.snapshot.len(), 50 + 16 + 8);

    sim.command("identity off").expect("identity off");
    let refused = c.capture().await.expect("capture without identity");
    match refused.snapshot.get("modbus/identity").map(|i| i.value()) {
        Some(Value::Unavailable(reason)) => {
            assert!(reason.contains("exception 0x01"), "{reason}")
        }
        other => panic!("expected a not-available identity item, got {other:?}"),
    }
    assert!(
        refused
            .snapshot
            .get("modbus/identity/vendor_name")
            .is_none()
    );
    // The same refusal twice gives the same digest: the gap is stable.
    let again = c.capture().await.expect("capture");
    assert_eq!(again.snapshot.digest(), refused.snapshot.digest());
}

#[tokio::test]
async fn setpoints_take_the_fewest_requests() {
    let sim = press().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    sim.request_log().clear();
    let capture = c.capture().await.expect("capture");
    let by_fc = sim.request_log().count_by_function();
    // One identification request (all objects fit one answer), one holding read for 50
    // registers, one coil read for 16 bits.
    assert_eq!(by_fc.get(&43), Some(&1), "{by_fc:?}");
    assert_eq!(by_fc.get(&3), Some(&1), "{by_fc:?}");
    assert_eq!(by_fc.get(&1), Some(&1), "{by_fc:?}");
    assert_eq!(capture.stats.requests, 3);
    assert_eq!(sim.request_log().writes(), 0);

    // Without device identification, FC 43 is never sent.
    let mut quiet = collector(&sim.local_addr().to_string(), "device_id = false", RECIPE);
    sim.request_log().clear();
    let capture = quiet.capture().await.expect("capture");
    assert!(
        capture
            .snapshot
            .get("modbus/identity/vendor_name")
            .is_none()
    );
    assert_eq!(sim.request_log().count_by_function().get(&43), None);
}

#[tokio::test]
async fn a_smaller_device_limit_is_respected_when_configured() {
    let state = ModbusState::from_toml(
        "unit_id = 1\ntick_ms = 0\n[[holding]]\nstart = 0\ncount = 200\nfill = 1\n",
    )
    .expect("state");
    let sim = ModbusSimulator::start(LOOPBACK, state)
        .await
        .expect("simulator starts");
    sim.set_quirk(Quirk::Limit64, true);
    let setpoints = r#"
  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 100
"#;
    let mut default = collector(&sim.local_addr().to_string(), "", setpoints);
    match default.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Refused(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("read holding registers 0..100 (FC 3)"),
                "{text}"
            );
            assert!(text.contains("exception 0x03"), "{text}");
            assert!(!e.is_unreachable());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut limited = collector(
        &sim.local_addr().to_string(),
        "max_registers = 64",
        setpoints,
    );
    sim.request_log().clear();
    let capture = limited
        .capture()
        .await
        .expect("capture within the device's limit");
    assert_eq!(sim.request_log().count_by_function().get(&3), Some(&2));
    assert_eq!(
        capture
            .snapshot
            .items()
            .filter(|i| i.path().starts_with("modbus/holding/"))
            .count(),
        100
    );
}

#[tokio::test]
async fn an_undefined_address_is_a_refusal_naming_the_request() {
    let sim = press().await;
    let setpoints = r#"
  [[asset.setpoints]]
  name = "nowhere"
  table = "holding"
  start = 5000
  count = 10
"#;
    let mut c = collector(&sim.local_addr().to_string(), "", setpoints);
    let err = c.capture().await.expect_err("the device refuses");
    let text = err.to_string();
    assert!(text.contains("press-7"), "{text}");
    assert!(
        text.contains("read holding registers 5000..5010 (FC 3)"),
        "{text}"
    );
    assert!(text.contains("exception 0x02"), "{text}");
}

#[tokio::test]
async fn a_short_answer_is_malformed_not_accepted() {
    let sim = press().await;
    sim.set_quirk(Quirk::ShortRead, true);
    let mut c = collector(&sim.local_addr().to_string(), "device_id = false", RECIPE);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Malformed(_)) => {
            let text = e.to_string();
            assert!(text.contains("press-7"), "{text}");
            assert!(text.contains("asked for 50 registers, got 49"), "{text}");
        }
        other => panic!("expected a malformed answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_the_device_dropped_is_replaced_without_an_error() {
    let first = press().await;
    let addr = first.local_addr();
    let mut c = collector(&addr.to_string(), "", RECIPE);
    // The device comes back on the same address (a PLC restart).
    let second = assert_reconnects_after_restart(&mut c, first, |addr| {
        ModbusSimulator::start(addr, ModbusState::press_demo())
    })
    .await;
    assert_eq!(second.request_log().writes(), 0);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let closed = closed_address();
    let mut c = collector(&closed.to_string(), "", RECIPE);
    let text = connect_error(&mut c).await;
    assert!(
        text.contains("press-7") && text.contains(&closed.to_string()),
        "{text}"
    );
}

/// A peer that answers every request with the given bytes: not a simulator (it speaks no
/// Modbus), a hostile device.
async fn hostile_peer(answer: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 260];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn hostile_answers_are_errors_never_panics() {
    let mut answers: Vec<Vec<u8>> = vec![
        // Right transaction id 0, but a byte count of 200 for 50 registers.
        vec![0, 0, 0, 0, 0, 4, 1, 3, 200, 0],
        // A length field of zero.
        vec![0, 0, 0, 0, 0, 0, 1, 3],
        // A wrong protocol id.
        vec![0, 0, 0, 9, 0, 3, 1, 3, 0],
        // An FC 43 answer whose object claims more bytes than arrive.
        vec![
            0, 0, 0, 0, 0, 12, 1, 0x2b, 0x0e, 2, 0x82, 0, 0, 1, 0, 200, b'x', b'y',
        ],
        // An exception for a function we did not call.
        vec![0, 0, 0, 0, 0, 3, 1, 0x86, 2],
        // A different transaction id.
        vec![0, 7, 0, 0, 0, 5, 1, 3, 2, 0, 1],
    ];
    // And pseudo-random garbage of lengths up to 40 bytes.
    answers.extend(garbage((0..40usize).step_by(3)));
    for answer in answers {
        let addr = hostile_peer(answer.clone()).await;
        let mut c = collector(&addr.to_string(), "", RECIPE);
        let result = c.capture().await;
        assert!(
            result.is_err(),
            "garbage {answer:?} was accepted: {result:?}"
        );
    }
}

// ------------------------------------------------------------------ field truth

/// A device that claims extended identification objects it does not have (conformity 0x83,
/// like pymodbus's server) restarts the extended stream at object 0, as the specification
/// tells it to: the regular objects come again, and they are not duplicates of anything.
#[tokio::test]
async fn an_identification_restarted_at_object_0_is_understood() {
    let sim = press().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let plain = c.capture().await.expect("capture");
    sim.set_quirk(Quirk::Conformity83, true);
    let restarted = c.capture().await.expect("capture with conformity 0x83");
    let get =
        |cap: &otdrift_protocols::Capture, p: &str| cap.snapshot.get(p).map(|i| i.value().clone());
    assert_eq!(
        get(&restarted, "modbus/identity/conformity_level"),
        Some(Value::UInt(0x83))
    );
    // Everything but the conformity level is what the device said without the quirk, and no
    // object below 0x80 arrived as an "extended" object.
    for item in plain.snapshot.items() {
        if item.path() != "modbus/identity/conformity_level" {
            assert_eq!(
                get(&restarted, item.path()).as_ref(),
                Some(item.value()),
                "{}",
                item.path()
            );
        }
    }
    assert_eq!(restarted.snapshot.len(), plain.snapshot.len());
    // The collector asked for the extended stream once: 2 identification requests in all.
    let fc43 = sim
        .request_log()
        .entries()
        .iter()
        .filter(|r| r.name == "read_device_identification")
        .count();
    assert_eq!(fc43, 1 + 2, "one plain capture, then regular + extended");
}

#[tokio::test]
async fn a_busy_device_is_busy_not_state() {
    let sim = press().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let before = c.capture().await.expect("capture");
    sim.set_quirk(Quirk::Busy, true);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Busy(_)) => {
            assert_eq!(e.reason().as_str(), "busy");
            assert!(e.to_string().contains("exception 0x06"), "{e}");
            assert!(!e.is_unreachable());
        }
        other => panic!("expected busy, got {other:?}"),
    }
    sim.set_quirk(Quirk::Busy, false);
    let after = c.capture().await.expect("capture once the device is idle");
    assert_eq!(after.snapshot.digest(), before.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn refused_reads_fail_the_capture_naming_the_request() {
    let sim = press().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let before = c.capture().await.expect("capture");
    sim.set_quirk(Quirk::RefuseReads, true);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Refused(_)) => {
            assert_eq!(e.request, "read holding registers 0..50 (FC 3)");
            assert!(e.detail().contains("exception 0x02"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    sim.set_quirk(Quirk::RefuseReads, false);
    let after = c.capture().await.expect("capture");
    assert_eq!(after.snapshot.digest(), before.snapshot.digest());
}

/// The press's recipe with typed fields: a REAL fill temperature in two registers, a signed
/// speed offset, a word-swapped counter.
const TYPED_RECIPE: &str = r#"
  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 50
    [[asset.setpoints.field]]
    name = "fill_temp"
    offset = 10
    type = "f32"
    [[asset.setpoints.field]]
    name = "speed_offset"
    offset = 12
    type = "i16"
    [[asset.setpoints.field]]
    name = "batches"
    offset = 20
    type = "u32"
    word_order = "little"
"#;

/// Typed fields become named items with typed values; the registers outside every field
/// stay one item each; a float written in two registers is one change in the diff.
#[tokio::test]
async fn typed_fields_are_named_typed_items() {
    let sim = press().await;
    sim.set_holding(10, &[0x4291, 0x0000]).expect("72.5");
    sim.set_holding(12, &[0xFFF6]).expect("-10");
    sim.set_holding(20, &[0x0002, 0x0001]).expect("65538");
    let rest = format!("timeout_ms = 300\ndevice_id = false\n{TYPED_RECIPE}");
    let (mut c, asset) = collector_and_asset!(
        Modbus,
        ModbusCollector::new,
        "modbus",
        "press-7",
        &sim.local_addr().to_string(),
        &rest
    );
    let first = c.capture().await.expect("capture");
    let get = |p: &str| first.snapshot.get(p).map(|i| i.value().clone());
    assert_eq!(get("modbus/holding/fill_temp"), Some(Value::F32(72.5)));
    assert_eq!(get("modbus/holding/speed_offset"), Some(Value::Int(-10)));
    assert_eq!(get("modbus/holding/batches"), Some(Value::UInt(65_538)));
    for covered in [10, 11, 12, 20, 21] {
        assert_eq!(get(&format!("modbus/holding/{covered}")), None, "{covered}");
    }
    assert!(get("modbus/holding/13").is_some());
    assert_eq!(first.snapshot.len(), 50 - 5 + 3);
    // The same two reads as without fields.
    assert_eq!(first.stats.requests, 1);
    assert_eq!(
        otdrift_protocols::setpoint_label(&asset, "modbus/holding/fill_temp"),
        Some("recipe".to_owned())
    );

    sim.set_holding(10, &[0x4296, 0x0000]).expect("75.0");
    let second = c.capture().await.expect("capture");
    let diff = Diff::between(&first.snapshot, &second.snapshot);
    let changes: Vec<(&str, String, String)> = diff
        .changes
        .iter()
        .map(|ch| {
            (
                ch.path.as_str(),
                format!("{:?}", ch.before),
                format!("{:?}", ch.after),
            )
        })
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].0, "modbus/holding/fill_temp");
    assert!(
        changes[0].1.contains("72.5") && changes[0].2.contains("75.0"),
        "{changes:?}"
    );
    assert_eq!(sim.request_log().writes(), 0);
}

// ------------------------------------------------------------------ peers (pymodbus)

/// The pymodbus server's state: the press's recipe and interlocks, and an identity.
const PYMODBUS_STATE: &str = r#"{
  "unit_id": 1,
  "holding": {"0": 500, "6": 250, "12": 90, "49": 7},
  "coils": {"3": true, "15": true},
  "identity": {
    "vendor_name": "pymodbus peer", "product_code": "PM-1", "revision": "3.16",
    "vendor_url": "https://example.invalid", "product_name": "Peer press",
    "model_name": "PP-7", "user_application_name": "line 3"
  }
}"#;

/// The collector against pymodbus's server, a Modbus TCP implementation we did not write: its
/// framing, its exceptions and its FC 43 (conformity 0x83 without extended objects, so the
/// extended stream restarts at object 0).
#[tokio::test]
async fn the_collector_reads_a_pymodbus_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.json");
    std::fs::write(&state, PYMODBUS_STATE).expect("state");
    let log = dir.path().join("requests.jsonl");
    let (state, log) = (state.display().to_string(), log.display().to_string());
    let Some(server) = common::peers::PeerServer::start(
        "pymodbus server read by the collector",
        &["pymodbus"],
        "modbus_server.py",
        &["--state", &state, "--request-log", &log],
    ) else {
        return;
    };
    let mut c = collector(&server.addr.to_string(), "", RECIPE);
    let first = c.capture().await.expect("capture from pymodbus");
    let get = |p: &str| first.snapshot.get(p).map(|i| i.value().clone());
    assert_eq!(
        get("modbus/identity/vendor_name"),
        Some(Value::from("pymodbus peer"))
    );
    assert_eq!(
        get("modbus/identity/user_application_name"),
        Some(Value::from("line 3"))
    );
    assert_eq!(
        get("modbus/identity/conformity_level"),
        Some(Value::UInt(0x83))
    );
    assert_eq!(get("modbus/holding/0"), Some(Value::UInt(500)));
    assert_eq!(get("modbus/holding/6"), Some(Value::UInt(250)));
    assert_eq!(get("modbus/holding/1"), Some(Value::UInt(0)));
    assert_eq!(get("modbus/coil/3"), Some(Value::Bool(true)));
    assert_eq!(get("modbus/coil/4"), Some(Value::Bool(false)));
    // 7 regular objects + conformity, 50 registers, 16 coils.
    assert_eq!(first.snapshot.len(), 8 + 50 + 16);
    let second = c.capture().await.expect("second capture");
    assert_eq!(second.snapshot.digest(), first.snapshot.digest());
    c.close().await;
    drop(server);
    // pymodbus logged every request it decoded: reads and FC 43 only.
    let logged = std::fs::read_to_string(&log).expect("request log");
    let codes: Vec<u64> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fc"].as_u64())
        .collect();
    assert!(!codes.is_empty(), "pymodbus logged the requests");
    assert!(
        codes.iter().all(|c| matches!(c, 1..=4 | 43)),
        "only read function codes: {codes:?}"
    );

    // The same server read with typed fields: values decoded from pymodbus's registers.
    let server = common::peers::PeerServer::start(
        "pymodbus server read with typed fields",
        &["pymodbus"],
        "modbus_server.py",
        &["--state", &state],
    )
    .expect("started once already");
    let typed = r#"
  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 50
    [[asset.setpoints.field]]
    name = "fill_pressure"
    offset = 0
    type = "u16"
    [[asset.setpoints.field]]
    name = "dose"
    offset = 6
    type = "i32"
    word_order = "little"
    [[asset.setpoints.field]]
    name = "limit"
    offset = 48
    type = "f32"
"#;
    let mut c = collector(&server.addr.to_string(), "device_id = false", typed);
    let capture = c.capture().await.expect("typed capture from pymodbus");
    let get = |p: &str| capture.snapshot.get(p).map(|i| i.value().clone());
    assert_eq!(get("modbus/holding/fill_pressure"), Some(Value::UInt(500)));
    assert_eq!(get("modbus/holding/dose"), Some(Value::Int(250)));
    // Registers 48 and 49 = 0x0000 0x0007: a denormal float, decoded bit for bit.
    assert_eq!(
        get("modbus/holding/limit"),
        Some(Value::F32(f32::from_bits(7)))
    );
    assert_eq!(capture.snapshot.len(), 50 - 5 + 3);
}

/// pymodbus's client reads the simulator: values and identification as the collector sees
/// them, so the simulator is checked against a reading that is not ours.
#[tokio::test]
async fn pymodbus_reads_the_simulator_like_the_collector_does() {
    let sim = press().await;
    let addr = sim.local_addr();
    let mut c = collector(&addr.to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let out = tokio::task::spawn_blocking(move || {
        common::peers::run(
            "pymodbus client reads the simulator",
            &["pymodbus"],
            "modbus_client.py",
            &[
                &host,
                &port,
                "--unit",
                "1",
                "--holding",
                "0",
                "50",
                "--coils",
                "0",
                "16",
                "--device-id",
            ],
        )
    })
    .await
    .expect("peer thread");
    let Some(out) = out else { return };
    assert!(out.status.success(), "pymodbus client failed");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the peer prints JSON");
    let holding = doc["holding"]["values"].as_array().expect("holding values");
    assert_eq!(holding.len(), 50);
    for (i, v) in holding.iter().enumerate() {
        let ours = capture
            .snapshot
            .get(&format!("modbus/holding/{i}"))
            .map(|item| item.value().clone());
        assert_eq!(ours, v.as_u64().map(Value::UInt), "holding {i}");
    }
    let coils = doc["coils"]["values"].as_array().expect("coil values");
    for (i, v) in coils.iter().enumerate() {
        let ours = capture
            .snapshot
            .get(&format!("modbus/coil/{i}"))
            .map(|item| item.value().clone());
        assert_eq!(ours, v.as_bool().map(Value::Bool), "coil {i}");
    }
    assert_eq!(doc["device_id"]["0x00"], "otdrift");
    assert_eq!(doc["device_id"]["0x01"], "SIM-PRESS");
    assert_eq!(sim.request_log().writes(), 0);
}

/// A Modbus asset for the memory-budget tests: the press, read as the daemon reads it.
fn budgeted(address: &str) -> (otdrift_config::AssetConfig, ModbusCollector) {
    let rest = format!("timeout_ms = 300\ncapture_timeout_ms = 5000\n{RECIPE}");
    let (c, asset) = collector_and_asset!(
        Modbus,
        ModbusCollector::new,
        "modbus",
        "press-7",
        address,
        &rest
    );
    (asset, c)
}

#[tokio::test]
async fn a_capture_too_big_for_the_whole_memory_pool_fails_as_a_bound() {
    let sim = press().await;
    let (asset, mut c) = budgeted(&sim.local_addr().to_string());

    // Smaller than the first answer (the identification): stopped at that very request.
    let tiny = MemoryBudget::new(64);
    let e = capture_within(&mut c, &asset, &tiny)
        .await
        .expect_err("cannot fit");
    assert_eq!(e.reason(), FailureReason::Bound, "{e}");
    assert!(e.request.contains("FC 43"), "names the request: {e}");
    assert_eq!(
        e.detail(),
        "memory budget: the capture needs more than the 64 bytes pool (at least 253 bytes)"
    );
    assert!(!e.poisons_connection(), "the answer arrived whole: {e}");
    assert_eq!(tiny.in_use(), 0, "a failed capture holds nothing");

    // Room for every answer, not for the 74 items assembled from them.
    let small = MemoryBudget::new(16 * 1024);
    let e = capture_within(&mut c, &asset, &small)
        .await
        .expect_err("the items do not fit");
    assert_eq!(e.reason(), FailureReason::Bound, "{e}");
    assert_eq!(e.request, "the captured items");
    assert!(
        e.to_string()
            .contains("needs more than the 16 KiB pool (at least "),
        "{e}"
    );
    assert_eq!(small.in_use(), 0);

    // The same capture in a pool that fits holds its share until the capture is dropped.
    let fits = MemoryBudget::new(1024 * 1024);
    let capture = capture_within(&mut c, &asset, &fits).await.expect("fits");
    assert_eq!(capture.snapshot.len(), 74);
    let held = fits.in_use();
    assert_eq!(held, capture.lease.held());
    assert!(held >= 74 * otdrift_protocols::budget::ITEM_BYTES, "{held}");
    let copy = capture.clone();
    drop(capture);
    assert_eq!(fits.in_use(), held, "a clone still holds it");
    drop(copy);
    assert_eq!(fits.in_use(), 0);

    assert!(sim.request_log().total() > 0);
    assert_eq!(sim.request_log().writes(), 0, "only reads were sent");
    c.close().await;
}

#[tokio::test]
async fn a_capture_gives_way_while_a_larger_one_waits_for_the_pool() {
    let sim = press().await;
    let (asset, mut c) = budgeted(&sim.local_addr().to_string());
    let pool = MemoryBudget::new(64 * 1024);
    let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    // One large capture holds most of the pool, another waits for more of it.
    let large = pool.lease(Some(far));
    large.charge(60 * 1024).await.expect("granted");
    let waiter = pool.lease(Some(far));
    let waiting = tokio::spawn(async move { waiter.charge(10 * 1024).await });
    let e = loop {
        // Until the waiter has registered, the press's capture may still fit and succeed.
        match capture_within(&mut c, &asset, &pool).await {
            Err(e) => break e,
            Ok(_) => tokio::task::yield_now().await,
        }
    };
    assert!(e.is_deferred(), "{e}");
    assert!(matches!(e.kind, ErrorKind::Deferred(_)));
    assert_eq!(e.reason(), FailureReason::Deferred);
    assert!(!e.poisons_connection());
    assert!(e.detail().contains("another capture waits"), "{e}");
    assert!(!waiting.is_finished(), "the waiter still waits");

    // The large capture ends: the waiter proceeds, and the press fits again.
    drop(large);
    waiting
        .await
        .expect("joined")
        .expect("the waiter got its share");
    let capture = capture_within(&mut c, &asset, &pool)
        .await
        .expect("fits once nobody waits");
    assert_eq!(capture.snapshot.len(), 74);
    assert_eq!(sim.request_log().writes(), 0, "only reads were sent");
    c.close().await;
}
