//! The S7 collector against the S7 simulator (snap7's server behind the simulator's front)
//! over loopback, against hostile peers, and against an independent peer (python-snap7's
//! pure-Python server) when it is installed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    LOOPBACK, SimulatedDevice, assert_collector_compliance, assert_reconnects_after_restart,
    asset_from, closed_address, collector_and_asset, connect_error, garbage, peers,
};
use otdrift_config::ProtocolConfig;
use otdrift_core::{Class, Diff, Value};
use otdrift_protocols::s7::S7Collector;
use otdrift_protocols::{Capture, Collector, ErrorKind};
use otdrift_simulators::s7::{Quirk, S7SimHandle, S7Simulator, S7State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The demo CPU without its tick task: tests tick by command.
fn demo_state() -> S7State {
    let mut state = S7State::demo();
    state.tick_ms = 0;
    state
}

async fn start(state: S7State) -> S7SimHandle {
    S7Simulator::start(LOOPBACK, state)
        .await
        .expect("simulator starts")
}

fn collector(address: &str, extra: &str, setpoints: &str) -> S7Collector {
    let rest = format!("timeout_ms = 1000\nrack = 0\nslot = 2\n{extra}\n{setpoints}");
    collector_and_asset!(S7, S7Collector::new, "s7", "filler-3", address, &rest).0
}

const RECIPE: &str = r#"
  [[asset.setpoints]]
  name = "recipe"
  db = 1
  start = 0
  size = 16
  [[asset.setpoints]]
  name = "limits"
  db = 3
  start = 0
  size = 8
"#;

fn value(capture: &Capture, path: &str) -> Option<Value> {
    capture.snapshot.get(path).map(|i| i.value().clone())
}

fn unavailable(capture: &Capture, path: &str) -> String {
    match value(capture, path) {
        Some(Value::Unavailable(reason)) => reason,
        other => panic!("expected {path} to be not available, got {other:?}"),
    }
}

struct Filler(S7SimHandle);

impl SimulatedDevice for Filler {
    fn change_a_setpoint(&self) -> String {
        self.0.set_db_bytes(1, 5, &[0x96]).expect("set");
        "s7/db1/5".to_owned()
    }
    fn restore_the_setpoint(&self) {
        self.0.set_db_bytes(1, 5, &[0x91]).expect("set");
    }
    fn stall(&self, on: bool) {
        self.0.set_quirk(Quirk::Stall, on);
    }
    fn tick_runtime(&self) {
        self.0.tick();
        self.0.set_running(false);
    }
    fn write_requests(&self) -> usize {
        self.0.request_log().writes() + self.0.snap7_writes()
    }
}

#[tokio::test]
async fn the_s7_collector_is_compliant() {
    let sim = start(demo_state()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    assert_collector_compliance(&mut c, &Filler(sim.clone())).await;
    c.close().await;
}

#[tokio::test]
async fn identity_program_and_setpoints_are_captured_with_types() {
    let sim = start(demo_state()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    let text = |s: &str| Some(Value::Text(s.to_owned()));
    assert_eq!(
        value(&capture, "s7/identity/module/order_number"),
        text("6ES7 315-2EH14-0AB0")
    );
    assert_eq!(
        value(&capture, "s7/identity/firmware/version"),
        text("V3.2.6")
    );
    assert_eq!(value(&capture, "s7/identity/hardware/version"), text("4"));
    assert_eq!(
        value(&capture, "s7/identity/serial_number"),
        text("S C-X4U421302009")
    );
    assert_eq!(
        value(&capture, "s7/identity/plant_id"),
        text("Line 3 filler")
    );
    assert_eq!(
        value(&capture, "s7/identity/module_name"),
        text("CPU 315-2 PN/DP")
    );
    assert_eq!(
        value(&capture, "s7/identity/protection_level"),
        Some(Value::UInt(1))
    );
    // Blocks: the demo's OBs, FB, FCs, DBs and SDBs, each with its block info.
    for block in [
        "OB1", "OB35", "OB100", "FB1", "FC1", "FC2", "DB1", "DB2", "DB3", "SDB0", "SDB1",
    ] {
        assert!(
            matches!(
                value(&capture, &format!("s7/block/{block}/checksum")),
                Some(Value::UInt(_))
            ),
            "{block}"
        );
    }
    assert_eq!(value(&capture, "s7/block/FB1/name"), text("FILLCTRL"));
    assert_eq!(value(&capture, "s7/block/FB1/language"), text("SCL"));
    assert_eq!(value(&capture, "s7/block/FB1/version"), text("1.4"));
    assert_eq!(
        value(&capture, "s7/block/FB1/mc7_size"),
        Some(Value::UInt(860))
    );
    assert_eq!(
        value(&capture, "s7/block/FB1/load_size"),
        Some(Value::UInt(952))
    );
    assert_eq!(
        value(&capture, "s7/block/FB1/code_time"),
        text("2024-02-12T09:18:55.500")
    );
    assert_eq!(
        value(&capture, "s7/block/DB1/mc7_size"),
        Some(Value::UInt(64))
    );
    assert!(
        value(&capture, "s7/block/FB1/code").is_none(),
        "no upload unless asked"
    );
    match value(&capture, "s7/blocks/count") {
        Some(Value::Map(counts)) => {
            assert_eq!(counts.get("OB"), Some(&Value::UInt(3)));
            assert_eq!(counts.get("DB"), Some(&Value::UInt(3)));
            assert_eq!(counts.get("SFC"), Some(&Value::UInt(72)));
        }
        other => panic!("block counts: {other:?}"),
    }
    // Setpoints: one typed byte per offset, classed as setpoints.
    assert_eq!(value(&capture, "s7/db1/5"), Some(Value::UInt(0x91)));
    assert_eq!(value(&capture, "s7/db3/1"), Some(Value::UInt(0x5A)));
    let setpoints = capture.snapshot.items_of(Class::Setpoint).count();
    assert_eq!(setpoints, 16 + 8);
    // Runtime: mode, PDU; never in the snapshot. The clock is not read (not state, and a
    // request every poll).
    assert_eq!(
        capture.operating_state.get("s7/cpu_mode"),
        Some(&Value::Text("RUN".into()))
    );
    assert_eq!(capture.runtime.get("s7/cpu_clock"), None);
    assert_eq!(capture.runtime.get("s7/pdu_size"), Some(&Value::UInt(960)));
    assert_eq!(
        capture.runtime.get("s7/mode_selector"),
        Some(&Value::Text("RUN-P".into()))
    );
    assert!(
        capture
            .snapshot
            .items()
            .all(|i| !i.path().contains("cpu_mode"))
    );

    // A mode change is runtime news, not drift.
    sim.command("mode stop").expect("stop");
    let stopped = c.capture().await.expect("capture in STOP");
    assert_eq!(
        stopped.operating_state.get("s7/cpu_mode"),
        Some(&Value::Text("STOP".into()))
    );
    assert_eq!(stopped.snapshot.digest(), capture.snapshot.digest());

    let identity = c.identify().await.expect("identify");
    assert!(identity.iter().all(|i| i.class() == Class::Identity));
    assert!(
        identity
            .iter()
            .any(|i| i.path() == "s7/identity/module/order_number")
    );
}

#[tokio::test]
async fn a_db_added_resized_or_a_block_recompiled_is_program_drift() {
    let sim = start(demo_state()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let base = c.capture().await.expect("capture");

    sim.command("db add 20 128").expect("add");
    let added = c.capture().await.expect("capture");
    let diff = Diff::between(&base.snapshot, &added.snapshot);
    assert!(
        diff.changes
            .iter()
            .any(|ch| ch.path == "s7/block/DB20/checksum"),
        "{diff:?}"
    );
    assert!(
        diff.changes.iter().all(|ch| ch.class == Class::Program),
        "{diff:?}"
    );
    sim.command("db delete 20").expect("delete");

    sim.command("db resize 3 32").expect("resize");
    let resized = c.capture().await.expect("capture");
    let diff = Diff::between(&base.snapshot, &resized.snapshot);
    let paths: Vec<&str> = diff.changes.iter().map(|ch| ch.path.as_str()).collect();
    assert!(paths.contains(&"s7/block/DB3/mc7_size"), "{paths:?}");
    assert!(paths.contains(&"s7/block/DB3/checksum"), "{paths:?}");
    sim.command("db resize 3 16").expect("resize back");
    let back = c.capture().await.expect("capture");
    assert_eq!(
        back.snapshot.digest(),
        base.snapshot.digest(),
        "put back, same digest"
    );

    sim.command("block change FC2").expect("recompile");
    let changed = c.capture().await.expect("capture");
    let diff = Diff::between(&base.snapshot, &changed.snapshot);
    let paths: Vec<&str> = diff.changes.iter().map(|ch| ch.path.as_str()).collect();
    assert!(paths.contains(&"s7/block/FC2/checksum"), "{paths:?}");
    assert!(paths.contains(&"s7/block/FC2/code_time"), "{paths:?}");
}

#[tokio::test]
async fn uploads_hash_code_blocks_and_repeat_only_when_a_block_changes() {
    let sim = start(demo_state()).await;
    let mut c = collector(
        &sim.local_addr().to_string(),
        "upload_blocks = true",
        RECIPE,
    );
    let first = c.capture().await.expect("capture");
    let code = |cap: &Capture, b: &str| value(cap, &format!("s7/block/{b}/code"));
    for block in ["OB1", "OB35", "OB100", "FB1", "FC1", "FC2", "SDB0", "SDB1"] {
        match code(&first, block) {
            Some(Value::Text(digest)) => assert!(digest.starts_with("blake3:"), "{digest}"),
            other => panic!("{block}: {other:?}"),
        }
    }
    assert_eq!(
        value(&first, "s7/block/FB1/code_size"),
        Some(Value::UInt(952))
    );
    assert!(
        code(&first, "DB1").is_none(),
        "DBs are judged by block info, not uploaded"
    );
    let uploads = |sim: &S7SimHandle| {
        sim.request_log()
            .entries()
            .iter()
            .filter(|e| e.name == "start_upload")
            .count()
    };
    assert_eq!(uploads(&sim), 8);

    // Nothing changed: nothing is uploaded again.
    sim.request_log().clear();
    let second = c.capture().await.expect("capture");
    assert_eq!(uploads(&sim), 0);
    assert_eq!(second.snapshot.digest(), first.snapshot.digest());

    // One block recompiled: only it is uploaded again, and its code digest changes.
    sim.command("block change FB1").expect("recompile");
    sim.request_log().clear();
    let third = c.capture().await.expect("capture");
    assert_eq!(uploads(&sim), 1);
    assert_ne!(code(&third, "FB1"), code(&first, "FB1"));
    assert_eq!(code(&third, "OB1"), code(&first, "OB1"));

    // Protection level 3 refuses uploads: a stable not-available item, not a failure.
    sim.command("protection 3").expect("protect");
    let protected = c.capture().await.expect("capture under protection");
    let reason = unavailable(&protected, "s7/block/FB1/code");
    assert!(reason.contains("0xD241"), "{reason}");
    let again = c.capture().await.expect("capture");
    assert_eq!(again.snapshot.digest(), protected.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn setpoints_take_the_fewest_read_requests_the_pdu_allows() {
    let mut state = demo_state();
    state.max_pdu = 240;
    let sim = start(state).await;
    sim.add_db(50, 4000).expect("a big DB");
    let big = r#"
  [[asset.setpoints]]
  name = "table"
  db = 50
  start = 0
  size = 4000
  [[asset.setpoints]]
  name = "recipe"
  db = 1
  start = 0
  size = 16
"#;
    let mut c = collector(&sim.local_addr().to_string(), "pdu_size = 960", big);
    sim.request_log().clear();
    let capture = c.capture().await.expect("capture");
    assert_eq!(
        capture.runtime.get("s7/pdu_size"),
        Some(&Value::UInt(240)),
        "the CPU granted 240"
    );
    let reads = sim
        .request_log()
        .entries()
        .iter()
        .filter(|e| e.name == "read_var")
        .count();
    assert_eq!(reads, c.planned_reads(240));
    assert_eq!(reads, c.minimum_reads(240));
    // 4016 bytes at 222 per PDU.
    assert_eq!(reads, 19);
    assert!(sim.request_log().entries().iter().all(|e| !e.write));
    assert_eq!(
        capture
            .snapshot
            .items()
            .filter(|i| i.path().starts_with("s7/db50/"))
            .count(),
        4000
    );
    // Every request is a read, an SZL read, a block function, the clock or the setup.
    for entry in sim.request_log().entries() {
        assert!(
            matches!(
                entry.name.as_str(),
                "cotp_connect"
                    | "setup_communication"
                    | "read_var"
                    | "read_szl"
                    | "list_blocks"
                    | "list_blocks_of_type"
                    | "block_info"
            ),
            "{entry:?}"
        );
    }
    // The SZL 0x001C list does not fit one 240-byte PDU: it came in parts.
    let szl_parts = sim
        .request_log()
        .entries()
        .iter()
        .filter(|e| e.name == "read_szl" && e.detail.contains("next part"))
        .count();
    assert!(szl_parts >= 1);
    assert_eq!(capture.stats.connects, 1);
}

#[tokio::test]
async fn stable_capability_refusals_become_stable_not_available_items() {
    let sim = start(demo_state()).await;
    let addr = sim.local_addr().to_string();
    let mut c = collector(&addr, "", RECIPE);
    let base = c.capture().await.expect("capture");

    let check = |quirk: Quirk| {
        let sim = sim.clone();
        async move {
            sim.set_quirk(quirk, true);
            let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
            let one = c.capture().await.unwrap_or_else(|e| panic!("{quirk}: {e}"));
            let two = c.capture().await.unwrap_or_else(|e| panic!("{quirk}: {e}"));
            assert_eq!(
                one.snapshot.digest(),
                two.snapshot.digest(),
                "{quirk}: the gap is stable"
            );
            sim.set_quirk(quirk, false);
            one
        }
    };

    // S7-1200/1500: no block functions (0x8104). The identity and setpoints are still captured.
    let refused = check(Quirk::RefuseBlocks).await;
    let reason = unavailable(&refused, "s7/blocks");
    assert_eq!(
        reason,
        "list blocks refused: error 0x8104 (service not implemented on the module (PUT/GET access off?))"
    );
    assert!(refused.snapshot.get("s7/block/OB1/checksum").is_none());
    assert_eq!(value(&refused, "s7/db1/5"), Some(Value::UInt(0x91)));

    // A device that drops the session on block functions: reconnect, record, go on.
    let dropped = check(Quirk::DropOnBlocks).await;
    let reason = unavailable(&dropped, "s7/blocks");
    assert!(reason.contains("closes the connection"), "{reason}");
    assert_eq!(value(&dropped, "s7/db1/5"), Some(Value::UInt(0x91)));

    // Firmware without SZL 0x0232: the protection level is a stable gap, named by its code.
    let no_protection = check(Quirk::NoProtectionSzl).await;
    let reason = unavailable(&no_protection, "s7/identity/protection_level");
    assert!(
        reason.contains("read SZL 0x0232") && reason.contains("0xD401"),
        "{reason}"
    );
    assert!(!no_protection.runtime.contains_key("s7/mode_selector"));

    // SZL answers without a record count: the records are still whole and taken.
    let no_count = check(Quirk::SzlNoCount).await;
    assert_eq!(no_count.snapshot.digest(), base.snapshot.digest());

    // Plain snap7: its own fixed identity, DB-only block functions with checksum 0.
    let snap7 = check(Quirk::Snap7Only).await;
    assert_eq!(
        value(&snap7, "s7/identity/module/order_number"),
        Some(Value::Text("6ES7 315-2EH14-0AB0".into()))
    );
    assert_eq!(
        value(&snap7, "s7/identity/serial_number"),
        Some(Value::Text("S C-C2UR28922012".into()))
    );
    assert_eq!(value(&snap7, "s7/block/DB1/checksum"), Some(Value::UInt(0)));
    assert_eq!(
        value(&snap7, "s7/block/DB1/code_time"),
        Some(Value::Text("1999-11-18T00:00:00.000".into()))
    );
    assert!(snap7.snapshot.get("s7/block/OB1/checksum").is_none());
    assert_eq!(value(&snap7, "s7/db1/5"), Some(Value::UInt(0x91)));
    assert_eq!(
        snap7.operating_state.get("s7/cpu_mode"),
        Some(&Value::Text("RUN".into()))
    );

    assert_eq!(sim.request_log().writes(), 0);
    assert_eq!(sim.snap7_writes(), 0);
}

/// One quirk that must fail the capture: the kind it must fail with, the request the error
/// must name, and a word of the device's answer the detail must carry.
struct Failing {
    quirk: Quirk,
    kind: fn(&ErrorKind) -> bool,
    request: &'static str,
    detail: &'static str,
}

fn refused(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Refused(_))
}
fn malformed(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Malformed(_))
}
fn busy(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Busy(_))
}

/// The field-truth rule against the simulator: every quirk below makes the CPU refuse what
/// it must answer, contradict its own block directory, answer something that does not add
/// up, or say it is busy. Each fails the capture with the right kind, naming the request;
/// with the quirk off, the same collector captures exactly the earlier state again.
#[tokio::test]
async fn refusals_contradictions_malformed_and_busy_answers_fail_the_capture() {
    let sim = start(demo_state()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let base = c.capture().await.expect("capture");
    let cases = [
        // PUT/GET off: a configured setpoint refused as a whole.
        Failing {
            quirk: Quirk::PutGetOff,
            kind: refused,
            request: "read var DB1.DBB0..16",
            detail: "error 0x8104",
        },
        // A DB the block list and block info still show, "does not exist": a contradiction.
        Failing {
            quirk: Quirk::RefuseDbRead,
            kind: refused,
            request: "read var DB1.DBB0..16",
            detail: "DB1: item return code 0x0A (object does not exist), yet the block list shows DB1",
        },
        Failing {
            quirk: Quirk::RefuseDbRange,
            kind: refused,
            request: "read var DB1.DBB0..16",
            detail: "DB1: item return code 0x05 (address out of range), yet the block list shows DB1",
        },
        Failing {
            quirk: Quirk::DenyDbRead,
            kind: refused,
            request: "read var DB1.DBB0..16",
            detail: "DB1: item return code 0x03",
        },
        // Identity is required.
        Failing {
            quirk: Quirk::RefuseIdentity,
            kind: refused,
            request: "read SZL 0x0011 index 0x0000",
            detail: "error 0xD401",
        },
        // Lists and block info refused for blocks the directory still counts or lists.
        Failing {
            quirk: Quirk::RefuseBlockList,
            kind: refused,
            request: "list blocks of type OB",
            detail: "list blocks counts 3 OB blocks",
        },
        Failing {
            quirk: Quirk::RefuseBlockInfo,
            kind: refused,
            request: "block info OB1",
            detail: "still lists OB1",
        },
        // Answers that do not add up or answer something else.
        Failing {
            quirk: Quirk::SzlOverclaim,
            kind: malformed,
            request: "read SZL 0x0011 index 0x0000",
            detail: "claims 4 records of 28 bytes",
        },
        Failing {
            quirk: Quirk::SzlNoHeader,
            kind: malformed,
            request: "read SZL 0x0011 index 0x0000",
            detail: "does not start with an SZL header",
        },
        Failing {
            quirk: Quirk::SzlPlaceholder,
            kind: malformed,
            request: "read SZL 0x001C index 0x0000",
            detail: "answered with SZL 0x0011",
        },
        Failing {
            quirk: Quirk::BlockinfoPlaceholder,
            kind: malformed,
            request: "block info OB1",
            detail: "describes block number 0",
        },
        // Busy: S7's "no resources available", and a congested connection request.
        Failing {
            quirk: Quirk::Busy,
            kind: busy,
            request: "read SZL 0x0011 index 0x0000",
            detail: "error 0x8302",
        },
        Failing {
            quirk: Quirk::Congested,
            kind: busy,
            request: "ISO connection request",
            detail: "disconnect reason 0x81",
        },
    ];
    for case in cases {
        let quirk = case.quirk;
        sim.set_quirk(quirk, true);
        if quirk == Quirk::Congested {
            // Only a new connection meets the congestion.
            c.close().await;
        }
        let error = match c.capture().await {
            Ok(capture) => panic!("{quirk}: captured {:?}", capture.snapshot),
            Err(e) => e,
        };
        assert!((case.kind)(&error.kind), "{quirk}: {error:?}");
        assert!(
            error.request.starts_with(case.request),
            "{quirk}: the error names {:?}: {error}",
            case.request
        );
        let text = error.to_string();
        assert!(text.contains("filler-3"), "{quirk}: {text}");
        assert!(text.contains(case.detail), "{quirk}: {text}");
        assert!(!error.is_unreachable(), "{quirk}: {error:?}");
        sim.set_quirk(quirk, false);
        let again = c
            .capture()
            .await
            .unwrap_or_else(|e| panic!("{quirk} off: {e}"));
        assert_eq!(
            again.snapshot.digest(),
            base.snapshot.digest(),
            "{quirk} off: the same state as before"
        );
    }
    assert_eq!(sim.request_log().writes(), 0);
    assert_eq!(sim.snap7_writes(), 0);
}

/// Absence is state only when the CPU's own directory agrees: a DB the block list does not
/// show and block info says does not exist, or a range beyond the size block info gives.
#[tokio::test]
async fn a_missing_or_shrunk_db_is_a_stable_not_available_range() {
    let sim = start(demo_state()).await;
    let setpoints = r#"
  [[asset.setpoints]]
  name = "ghost"
  db = 99
  start = 0
  size = 4
  [[asset.setpoints]]
  name = "limits"
  db = 3
  start = 0
  size = 8
"#;
    let mut c = collector(&sim.local_addr().to_string(), "", setpoints);
    sim.request_log().clear();
    let capture = c.capture().await.expect("capture");
    let reason = unavailable(&capture, "s7/db99/0..4");
    assert_eq!(
        reason,
        "DB99 does not exist: read var answered item return code 0x0A (object does not exist), \
         the block list does not show DB99, and block info DB99 refused: error 0xD209 (block not \
         found on the module)"
    );
    assert_eq!(value(&capture, "s7/db3/1"), Some(Value::UInt(0x5A)));
    // The confirmation costs one block info, only because the read was refused.
    let infos = |sim: &S7SimHandle| {
        sim.request_log()
            .entries()
            .iter()
            .filter(|e| e.name == "block_info" && e.detail == "DB99")
            .count()
    };
    assert_eq!(infos(&sim), 1);
    let again = c.capture().await.expect("capture");
    assert_eq!(again.snapshot.digest(), capture.snapshot.digest());

    // DB3 shrinks below the range: program drift in its block info, and the range is a stable
    // gap stating the size, not read at all.
    sim.command("db resize 3 4").expect("resize");
    sim.request_log().clear();
    let shrunk = c.capture().await.expect("capture");
    assert_eq!(
        unavailable(&shrunk, "s7/db3/0..8"),
        "DB3 holds 4 bytes (block info); bytes 0..8 are not all in it"
    );
    assert_eq!(
        value(&shrunk, "s7/block/DB3/mc7_size"),
        Some(Value::UInt(4))
    );
    assert!(
        sim.request_log()
            .entries()
            .iter()
            .all(|e| !(e.name == "read_var" && e.detail.contains("DB3"))),
        "nothing beyond DB3's end is asked for"
    );
    let again = c.capture().await.expect("capture");
    assert_eq!(again.snapshot.digest(), shrunk.snapshot.digest());
    // Grown again (bytes beyond the first 4 now 0, a new checksum): read again.
    sim.command("db resize 3 16").expect("resize back");
    let back = c.capture().await.expect("capture");
    assert!(back.snapshot.get("s7/db3/0..8").is_none());
    assert_eq!(value(&back, "s7/db3/1"), Some(Value::UInt(0x5A)));
    assert_eq!(value(&back, "s7/db3/7"), Some(Value::UInt(0)));

    let cfg = match &asset_from(&format!(
        "[agent]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\n[[asset]]\nid = \"a\"\nprotocol = \"s7\"\naddress = \"x\"\nrack = 0\nslot = 2\n{setpoints}"
    ))
    .protocol
    {
        ProtocolConfig::S7(cfg) => cfg.clone(),
        _ => panic!("s7"),
    };
    assert_eq!(
        otdrift_protocols::s7::setpoint_label(&cfg, "s7/db99/0..4").as_deref(),
        Some("ghost")
    );
    assert_eq!(sim.request_log().writes(), 0);
}

/// A CPU that lists no blocks (S7-1200/1500) cannot confirm a DB's absence: a refused
/// setpoint read fails the capture instead of becoming a gap.
#[tokio::test]
async fn without_a_block_directory_a_refused_db_read_fails() {
    let sim = start(demo_state()).await;
    sim.set_quirk(Quirk::RefuseBlocks, true);
    let setpoints = r#"
  [[asset.setpoints]]
  name = "ghost"
  db = 99
  start = 0
  size = 4
"#;
    let mut c = collector(&sim.local_addr().to_string(), "", setpoints);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Refused(_)) => {
            assert_eq!(e.request, "read var DB99.DBB0..4");
            let text = e.to_string();
            assert!(
                text.contains("0x0A") && text.contains("absence cannot be confirmed"),
                "{text}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A setpoint S7comm cannot address is the configuration's fault, said before any read.
#[tokio::test]
async fn a_range_beyond_what_s7comm_addresses_is_a_config_error() {
    // S7comm addresses 2 MiB of a DB: a range beyond it is refused when the config is read,
    // with its line, before any capture (the collector refuses it too, as a config error).
    let text = "[agent]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\n[[asset]]\nid = \"filler-3\"\nprotocol = \"s7\"\naddress = \"127.0.0.1:1\"\nrack = 0\nslot = 1\n  [[asset.setpoints]]\n  name = \"far\"\n  db = 1\n  start = 2097150\n  size = 4\n";
    let errors = otdrift_config::parse(text, std::path::Path::new("s7.toml"))
        .expect_err("a range beyond 2 MiB");
    let message = errors.to_string();
    assert!(
        message.contains("s7.toml:14:") && message.contains("size") && message.contains("2097152"),
        "{message}"
    );
}

#[tokio::test]
async fn a_wrong_slot_is_refused_by_the_cpu_with_a_clear_error() {
    let sim = start(demo_state()).await;
    let asset = asset_from(&format!(
        "[agent]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\n[[asset]]\nid = \"filler-3\"\nprotocol = \"s7\"\naddress = \"{}\"\ntimeout_ms = 1000\nrack = 0\nslot = 3\n",
        sim.local_addr()
    ));
    let ProtocolConfig::S7(cfg) = &asset.protocol else {
        panic!("s7")
    };
    let mut c = S7Collector::new(&asset, cfg);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Refused(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("filler-3") && text.contains("slot 3"),
                "{text}"
            );
            assert!(!e.is_unreachable());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_the_cpu_dropped_is_replaced_after_a_restart() {
    let first = start(demo_state()).await;
    let addr = first.local_addr();
    let mut c = collector(&addr.to_string(), "", RECIPE);
    // The CPU comes back on the same address.
    let second = assert_reconnects_after_restart(&mut c, first, |addr| {
        S7Simulator::start(addr, demo_state())
    })
    .await;
    assert_eq!(second.request_log().writes(), 0);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let mut c = collector(&closed_address().to_string(), "", RECIPE);
    let text = connect_error(&mut c).await;
    assert!(text.contains("filler-3"), "{text}");
}

/// A peer that confirms the ISO connection, answers setup properly, then answers every
/// following request with `answer` (a hostile device).
async fn hostile_peer(answer: Vec<u8>) -> SocketAddr {
    hostile_peer_echoing(answer, false).await
}

/// Like [`hostile_peer`]; with `echo_ref` the answer carries each request's PDU reference, so
/// the same answer fits every request (a device that repeats itself forever).
async fn hostile_peer_echoing(answer: Vec<u8>, echo_ref: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut n = 0usize;
                while let Ok(read) = stream.read(&mut buf).await {
                    if read == 0 {
                        break;
                    }
                    let reply: Vec<u8> = match n {
                        0 => vec![
                            3, 0, 0, 22, 17, 0xD0, 0, 1, 0, 1, 0, 0xC0, 1, 10, 0xC1, 2, 1, 0, 0xC2,
                            2, 1, 2,
                        ],
                        1 => {
                            let r = [
                                buf.get(11).copied().unwrap_or(0),
                                buf.get(12).copied().unwrap_or(0),
                            ];
                            vec![
                                3, 0, 0, 27, 2, 0xF0, 0x80, 0x32, 3, 0, 0, r[0], r[1], 0, 8, 0, 0,
                                0, 0, 0xF0, 0, 0, 1, 0, 1, 3, 0xC0,
                            ]
                        }
                        _ => {
                            let mut reply = answer.clone();
                            if echo_ref
                                && let (Some(to), Some(from)) =
                                    (reply.get_mut(11..13), buf.get(11..13))
                            {
                                to.copy_from_slice(from);
                            }
                            reply
                        }
                    };
                    n += 1;
                    if stream.write_all(&reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn hostile_answers_are_errors_or_gaps_never_panics_or_hangs() {
    let frame = |pdu: &[u8]| {
        let mut f = vec![3, 0];
        f.extend_from_slice(&((pdu.len() + 7) as u16).to_be_bytes());
        f.extend_from_slice(&[2, 0xF0, 0x80]);
        f.extend_from_slice(pdu);
        f
    };
    let mut answers: Vec<Vec<u8>> = vec![
        // A TPKT claiming 65535 bytes.
        vec![3, 0, 0xFF, 0xFF, 2, 0xF0, 0x80],
        // Not TPKT at all.
        b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        // An S7 header whose lengths exceed what arrived.
        frame(&[
            0x32, 7, 0, 0, 0, 2, 0, 12, 0x10, 0, 0, 1, 0x12, 8, 0x12, 0x84, 1, 0, 0, 0, 0, 0,
        ]),
        // A userdata answer whose data length field lies.
        frame(&[
            0x32, 7, 0, 0, 0, 2, 0, 12, 0, 8, 0, 1, 0x12, 8, 0x12, 0x84, 1, 0, 0, 0, 0, 0, 0xFF, 9,
            0x7F, 0xFF, 0, 0x11, 0, 0,
        ]),
        // An answer to another PDU reference.
        frame(&[
            0x32, 7, 0, 0, 0x99, 0x99, 0, 12, 0, 4, 0, 1, 0x12, 8, 0x12, 0x84, 1, 0, 0, 0, 0, 0,
            0xFF, 9, 0, 0,
        ]),
        // A COTP header length beyond the frame.
        vec![3, 0, 0, 8, 0x7F, 0xF0, 0x80, 0x32],
        // Fragments that never end (EOT never set) are bounded.
        {
            let mut f = Vec::new();
            for _ in 0..70 {
                f.extend_from_slice(&[3, 0, 0, 8, 2, 0xF0, 0x00, 0x32]);
            }
            f
        },
    ];
    answers.extend(
        garbage((0..60usize).step_by(7))
            .iter()
            .map(|bytes| frame(bytes)),
    );
    for answer in answers {
        let addr = hostile_peer(answer.clone()).await;
        let mut c = collector(&addr.to_string(), "", RECIPE);
        let result = tokio::time::timeout(Duration::from_secs(20), c.capture()).await;
        match result {
            Err(_) => panic!("capture hung on {answer:?}"),
            Ok(Ok(capture)) => {
                // Only acceptable if nothing in it came from the garbage.
                assert!(
                    capture
                        .snapshot
                        .items()
                        .all(|i| matches!(i.value(), Value::Unavailable(_))),
                    "garbage {answer:?} was accepted: {capture:?}"
                );
            }
            Ok(Err(e)) => {
                assert!(e.to_string().contains("filler-3"), "{e}");
            }
        }
    }
}

/// The python-snap7 peer checks: the interpreter and package must import.
const SNAP7: &[&str] = &["snap7.server", "snap7.client"];

/// python-snap7's server answers SZL 0x001C with a list header of record length 0 followed by
/// 206 bytes: an answer that does not add up, refused as malformed (field truth), not taken
/// as a gap.
#[tokio::test]
async fn python_snap7s_unframed_szl_is_refused_as_malformed() {
    let Some(server) =
        peers::PeerServer::start("s7 python-snap7 server", SNAP7, "s7_server.py", &[])
    else {
        return;
    };
    let mut c = collector(&server.addr.to_string(), "", "");
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Malformed(_)) => {
            assert_eq!(e.request, "read SZL 0x001C index 0x0000");
            assert!(e.to_string().contains("record length of 0"), "{e}");
        }
        other => panic!("expected a malformed SZL 0x001C, got {other:?}"),
    }
}

#[tokio::test]
async fn the_collector_reads_python_snap7s_server() {
    let Some(server) = peers::PeerServer::start(
        "s7 python-snap7 server (standard SZL 0x001C)",
        SNAP7,
        "s7_server.py",
        &["--standard-szl"],
    ) else {
        return;
    };
    let setpoints = r#"
  [[asset.setpoints]]
  name = "table"
  db = 7
  start = 0
  size = 64
"#;
    let mut c = collector(&server.addr.to_string(), "", setpoints);
    let capture = c
        .capture()
        .await
        .expect("capture from python-snap7's server");
    for offset in 0..64u64 {
        assert_eq!(
            value(&capture, &format!("s7/db7/{offset}")),
            Some(Value::UInt(offset))
        );
    }
    // Its other SZL answers are consistent but not Siemens-shaped: 26-byte 0x0011 records
    // without the version words, 1-byte 0x0232 records. Their own record length says the
    // fields are not there: what they do say is taken, the rest is a stable gap.
    assert_eq!(
        value(&capture, "s7/identity/module/order_number"),
        Some(Value::Text("6ES7 315-2EH14-0AB0".into()))
    );
    unavailable(&capture, "s7/identity/module/version");
    unavailable(&capture, "s7/identity/protection_level");
    assert_eq!(
        value(&capture, "s7/identity/serial_number"),
        Some(Value::Text("S C-C2UR28922012".into()))
    );
    let program: Vec<String> = capture
        .snapshot
        .items_of(Class::Program)
        .map(|i| format!("{}={:?}", i.path(), i.value()))
        .collect();
    assert_eq!(
        value(&capture, "s7/block/DB7/mc7_size"),
        Some(Value::UInt(64)),
        "{program:?}"
    );
    assert_eq!(
        value(&capture, "s7/block/DB7/author"),
        Some(Value::Text("SNAP7EMU".into()))
    );
    let again = c.capture().await.expect("second capture");
    assert_eq!(again.snapshot.digest(), capture.snapshot.digest());

    // The same DB with a layout: DB7's bytes are their own offsets.
    let typed = r#"
  [[asset.setpoints]]
  name = "table"
  db = 7
  start = 0
  size = 16
    [[asset.setpoints.field]]
    name = "word0"
    offset = 0
    type = "int"
    [[asset.setpoints.field]]
    name = "counter"
    offset = 4
    type = "udint"
    [[asset.setpoints.field]]
    name = "flag"
    offset = 8
    bit = 3
    type = "bool"
"#;
    let mut c = collector(&server.addr.to_string(), "", typed);
    let capture = c.capture().await.expect("typed capture from python-snap7");
    assert_eq!(value(&capture, "s7/db7/word0"), Some(Value::Int(1)));
    assert_eq!(
        value(&capture, "s7/db7/counter"),
        Some(Value::UInt(0x0405_0607))
    );
    assert_eq!(value(&capture, "s7/db7/flag"), Some(Value::Bool(true)));
    assert_eq!(value(&capture, "s7/db7/8.2"), Some(Value::Bool(false)));
    assert_eq!(value(&capture, "s7/db7/8"), None);
    assert_eq!(value(&capture, "s7/db7/9"), Some(Value::UInt(9)));
}

/// The demo recipe with its declared layout: the REAL fill temperature the demo story moves
/// is one typed item, and the change is one line of the diff, `72.5 -> 75.0`.
#[tokio::test]
async fn typed_fields_name_the_recipe_values() {
    let sim = start(demo_state()).await;
    let layout = r#"
  [[asset.setpoints]]
  name = "recipe"
  db = 1
  start = 0
  size = 16
    [[asset.setpoints.field]]
    name = "fill_pressure"
    offset = 0
    type = "int"
    [[asset.setpoints.field]]
    name = "fill_time"
    offset = 2
    type = "int"
    [[asset.setpoints.field]]
    name = "fill_temp"
    offset = 4
    type = "real"
    [[asset.setpoints.field]]
    name = "enabled"
    offset = 12
    bit = 0
    type = "bool"
"#;
    let mut c = collector(&sim.local_addr().to_string(), "", layout);
    let first = c.capture().await.expect("capture");
    assert_eq!(value(&first, "s7/db1/fill_pressure"), Some(Value::Int(500)));
    assert_eq!(value(&first, "s7/db1/fill_time"), Some(Value::Int(120)));
    assert_eq!(value(&first, "s7/db1/fill_temp"), Some(Value::F32(72.5)));
    assert_eq!(value(&first, "s7/db1/enabled"), Some(Value::Bool(false)));
    for gone in ["s7/db1/0", "s7/db1/4", "s7/db1/7", "s7/db1/12"] {
        assert_eq!(value(&first, gone), None, "{gone}");
    }
    assert_eq!(value(&first, "s7/db1/12.1"), Some(Value::Bool(false)));
    assert_eq!(value(&first, "s7/db1/8"), Some(Value::UInt(0)));
    sim.command("set db1 5 0x96").expect("75.0");
    let second = c.capture().await.expect("capture");
    let diff = Diff::between(&first.snapshot, &second.snapshot);
    assert_eq!(diff.changes.len(), 1, "{diff:?}");
    assert_eq!(diff.changes[0].path, "s7/db1/fill_temp");
    assert_eq!(diff.changes[0].after, Some(Value::F32(75.0)));
    assert_eq!(sim.request_log().writes(), 0);
}

/// The same recipe laid out from its STEP 7 source export instead of by hand.
#[tokio::test]
async fn a_db_source_export_lays_out_the_recipe() {
    let sim = start(demo_state()).await;
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("DB1_RECIPE.AWL");
    std::fs::write(
        &source,
        "DATA_BLOCK \"RECIPE\"\r\nTITLE = 'Filler recipe'\r\nAUTHOR : LINE3\r\nVERSION : 0.1\r\n\r\n  STRUCT \t\r\n   fill_pressure : INT  := 500;\t//bar * 100\r\n   fill_time : INT  := 120;\t//s\r\n   fill_temp : REAL  := 7.250000e+001;\t//degrees C\r\n   rinse : INT ;\r\n   ramp : INT ;\r\n   enabled : BOOL ;\r\n  END_STRUCT ;\t\r\nBEGIN\r\n   fill_pressure := 500; \r\nEND_DATA_BLOCK\r\n",
    )
    .expect("source");
    let setpoints = format!(
        "  [[asset.setpoints]]\n  name = \"recipe\"\n  db = 1\n  start = 0\n  size = 16\n  source = \"{}\"\n",
        source.display()
    );
    let mut c = collector(&sim.local_addr().to_string(), "", &setpoints);
    let capture = c.capture().await.expect("capture");
    assert_eq!(value(&capture, "s7/db1/fill_temp"), Some(Value::F32(72.5)));
    assert_eq!(value(&capture, "s7/db1/rinse"), Some(Value::Int(25)));
    assert_eq!(value(&capture, "s7/db1/ramp"), Some(Value::Int(350)));
    assert_eq!(value(&capture, "s7/db1/enabled"), Some(Value::Bool(false)));
    assert_eq!(value(&capture, "s7/db1/12.7"), Some(Value::Bool(false)));
    assert_eq!(value(&capture, "s7/db1/13"), Some(Value::UInt(0)));
}

#[tokio::test]
async fn python_snap7s_client_reads_the_simulator() {
    let sim = start(demo_state()).await;
    let port = sim.local_addr().port().to_string();
    let Some(out) = tokio::task::spawn_blocking(move || {
        peers::run(
            "s7 python-snap7 client",
            SNAP7,
            "s7_client.py",
            &["127.0.0.1", &port],
        )
    })
    .await
    .expect("join") else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python-snap7 client failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("order 6ES7 315-2EH14-0AB0 V3.2.6"),
        "{stdout}"
    );
    assert!(stdout.contains("obs [1, 35, 100]"), "{stdout}");
    assert!(stdout.contains("upload 952"), "{stdout}");
    assert!(stdout.contains("S C-X4U421302009"), "{stdout}");
    assert!(stdout.contains("blocks 3 1 2 3"), "{stdout}");
    assert!(stdout.contains("fb1 860"), "{stdout}");
    assert_eq!(sim.request_log().writes(), 0);
}

/// An SZL answer whose "more data follows" never ends stops at the part bound: `bound`,
/// naming the request where it stopped.
#[tokio::test]
async fn an_szl_that_never_ends_stops_at_a_bound() {
    let payload = [0x00, 0x11, 0x00, 0x00, 0x00, 0x1C, 0x00, 0x01];
    let mut pdu = vec![0x32, 7, 0, 0, 0, 0, 0, 12, 0, (4 + payload.len()) as u8];
    pdu.extend_from_slice(&[
        0x00, 0x01, 0x12, 0x08, 0x12, 0x84, 0x01, 0x01, 0x00, 0x01, 0, 0,
    ]);
    pdu.extend_from_slice(&[0xFF, 0x09, 0x00, payload.len() as u8]);
    pdu.extend_from_slice(&payload);
    let mut frame = vec![3, 0];
    frame.extend_from_slice(&((pdu.len() + 7) as u16).to_be_bytes());
    frame.extend_from_slice(&[2, 0xF0, 0x80]);
    frame.extend_from_slice(&pdu);
    let addr = hostile_peer_echoing(frame, true).await;
    let mut c = collector(&addr.to_string(), "", RECIPE);
    match tokio::time::timeout(Duration::from_secs(20), c.capture()).await {
        Ok(Err(e)) if matches!(e.kind, ErrorKind::Bound(_)) => {
            assert_eq!(e.request, "read SZL 0x0011 index 0x0000 (next part)");
            assert!(e.to_string().contains("after 64 parts"), "{e}");
        }
        other => panic!("expected a bound, got {other:?}"),
    }
}

/// A one-shot capture (connect, capture, close) asks the CPU no more than python-snap7 does to
/// read the same: identity and mode SZLs, block counts, block lists, block info of every
/// block, and the configured DB ranges.
#[tokio::test]
async fn a_one_shot_capture_costs_no_more_than_python_snap7_reading_the_same() {
    let sim = start(demo_state()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    c.close().await;
    let ours = sim.request_log().entries();
    assert_eq!(ours.len(), capture.stats.requests as usize, "{ours:?}");
    sim.request_log().clear();
    let port = sim.local_addr().port().to_string();
    let Some(out) = tokio::task::spawn_blocking(move || {
        peers::run(
            "s7 python-snap7 reading what a capture reads",
            SNAP7,
            "s7_same_capture.py",
            &["127.0.0.1", &port, "1:0:16", "3:0:8"],
        )
    })
    .await
    .expect("join") else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // python-snap7 saw the blocks otdrift captured and read the same bytes.
    let theirs: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let blocks = theirs["blocks"].as_array().map_or(0, Vec::len);
    let ours_blocks = ours.iter().filter(|e| e.name == "block_info").count();
    assert_eq!(blocks, ours_blocks, "{stdout}");
    assert_eq!(theirs["bytes"], serde_json::json!([16, 8]), "{stdout}");
    let snap7 = sim.request_log().entries();
    let name = |entries: &[otdrift_simulators::LoggedRequest]| {
        entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>()
    };
    eprintln!(
        "one-shot: otdrift {} requests, python-snap7 {} for the same",
        ours.len(),
        snap7.len()
    );
    assert!(
        ours.len() <= snap7.len(),
        "otdrift {} requests {:?}\npython-snap7 {} requests {:?}",
        ours.len(),
        name(&ours),
        snap7.len(),
        name(&snap7)
    );
    assert_eq!(sim.request_log().writes(), 0);
}

fn runtime_text(capture: &Capture, key: &str) -> String {
    match capture.runtime.get(key) {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("no {key} in the runtime record: {other:?}"),
    }
}

/// A capture and the block function requests (list blocks, list of type, block info) it
/// sent.
async fn with_block_requests(c: &mut S7Collector, sim: &S7SimHandle) -> (Capture, usize) {
    sim.request_log().clear();
    let capture = c.capture().await.expect("capture");
    let entries = sim.request_log().entries();
    let blocks = entries
        .iter()
        .filter(|e| {
            matches!(
                e.name.as_str(),
                "list_blocks" | "list_blocks_of_type" | "block_info"
            )
        })
        .count();
    (capture, blocks)
}

/// On a CPU whose configuration checksums (SZL 0x0232 index 4) moved with a block change, a
/// quiet poll skips the block lists and block info: identity, protection, mode and the
/// setpoints only. A download, a resized DB and every 60th poll still read them all, and
/// every capture's digest is the one a full read gives.
#[tokio::test]
async fn program_checksums_seen_to_move_let_quiet_polls_skip_block_info() {
    let sim = start(demo_state()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let first = c.capture().await.expect("capture");
    assert!(runtime_text(&first, "s7/configuration_checksums").starts_with("ken_rel 5656"));
    // Not proven yet: the checksums have not been seen to move.
    let (second, blocks) = with_block_requests(&mut c, &sim).await;
    assert!(blocks > 0);
    assert_eq!(runtime_text(&second, "s7/block_info"), "read");
    sim.command("block change FB1").expect("recompile");
    let (changed, blocks) = with_block_requests(&mut c, &sim).await;
    assert!(blocks > 0);
    assert_ne!(changed.snapshot.digest(), second.snapshot.digest());

    // Proven: a quiet poll is the 4 SZLs and the setpoint read.
    let (quiet, blocks) = with_block_requests(&mut c, &sim).await;
    assert_eq!(blocks, 0, "{:#?}", sim.request_log().entries());
    assert_eq!(
        runtime_text(&quiet, "s7/block_info"),
        "skipped (configuration checksums unchanged)"
    );
    assert_eq!(quiet.stats.requests, 4 + 1);
    assert_eq!(quiet.snapshot.digest(), changed.snapshot.digest());
    // Setpoint values are read every poll.
    sim.command("set db1 0 0x55").expect("set");
    let (moved, blocks) = with_block_requests(&mut c, &sim).await;
    assert_eq!(blocks, 0);
    let diff = Diff::between(&quiet.snapshot, &moved.snapshot);
    assert!(
        diff.changes.iter().all(|ch| ch.class == Class::Setpoint) && !diff.changes.is_empty(),
        "{diff:?}"
    );
    // A resized DB moves the program checksum: the same poll reads every block info.
    sim.command("db resize 3 32").expect("resize");
    let (resized, blocks) = with_block_requests(&mut c, &sim).await;
    assert!(blocks > 0);
    assert_eq!(
        value(&resized, "s7/block/DB3/mc7_size"),
        Some(Value::UInt(32))
    );
    // At most 60 polls in a row without block info.
    let mut full = 0;
    for _ in 0..60 {
        let (capture, blocks) = with_block_requests(&mut c, &sim).await;
        assert_eq!(capture.snapshot.digest(), resized.snapshot.digest());
        full += usize::from(blocks > 0);
    }
    assert_eq!(full, 1);
    assert_eq!(sim.request_log().writes(), 0);
}

/// A CPU whose checksums did not move with a block change is never trusted: every poll
/// reads block info.
#[tokio::test]
async fn program_checksums_that_do_not_move_are_never_trusted() {
    let sim = start(demo_state()).await;
    sim.set_quirk(Quirk::StaleProgramChecksum, true);
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    c.capture().await.expect("capture");
    sim.command("block change FB1").expect("recompile");
    let (_, blocks) = with_block_requests(&mut c, &sim).await;
    assert!(blocks > 0);
    // Honest again, it has still failed once.
    sim.set_quirk(Quirk::StaleProgramChecksum, false);
    sim.command("block change FC1").expect("recompile");
    for _ in 0..3 {
        let (capture, blocks) = with_block_requests(&mut c, &sim).await;
        assert!(blocks > 0);
        assert_eq!(runtime_text(&capture, "s7/block_info"), "read");
    }
}

/// A quiet poll on a kept connection costs what docs/protocols/README.md says: the identity
/// and mode SZLs, the block counts, one list per block type, block info of every block (the
/// CPU's configuration checksums have not been seen to move yet, and block counts alone never
/// prove that nothing changed), and the setpoint reads.
#[tokio::test]
async fn a_quiet_poll_costs_what_the_docs_say() {
    let sim = start(demo_state()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let first = c.capture().await.expect("capture");
    sim.request_log().clear();
    let quiet = c.capture().await.expect("quiet poll");
    assert_eq!(quiet.snapshot.digest(), first.snapshot.digest());
    assert_eq!(quiet.stats.connects, 0);
    let entries = sim.request_log().entries();
    let count = |name: &str| entries.iter().filter(|e| e.name == name).count();
    let blocks = first
        .snapshot
        .items()
        .filter(|i| i.path().starts_with("s7/block/") && i.path().ends_with("/checksum"))
        .count();
    assert_eq!(blocks, 11);
    assert_eq!(count("read_szl"), 4, "{entries:#?}");
    assert_eq!(count("list_blocks"), 1);
    assert_eq!(count("list_blocks_of_type"), 5);
    assert_eq!(count("block_info"), blocks);
    assert_eq!(count("read_var"), 1, "DB1 and DB3 ranges in one Read Var");
    assert_eq!(entries.len(), 4 + 1 + 5 + blocks + 1);
    assert_eq!(entries.len(), quiet.stats.requests as usize);
    assert_eq!(sim.request_log().writes(), 0);
}
