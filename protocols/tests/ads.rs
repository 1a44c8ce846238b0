//! The ADS collector against the TwinCAT simulator over loopback, hostile peers, and
//! independent ADS implementations (the `ads` crate, pyads through `tests/peers/ads_*.py`)
//! as peers.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::{
    LOOPBACK, SimulatedDevice, assert_collector_compliance, assert_reconnects_after_restart,
    asset_from, closed_address, collector_and_asset, connect_error, peers,
};
use otdrift_config::ProtocolConfig;
use otdrift_core::{ChangeKind, Class, Diff, Value};
use otdrift_protocols::ads::AdsCollector;
use otdrift_protocols::{Capture, Collector, ErrorKind};
use otdrift_simulators::ads::{
    APP_INFO_SYMBOL, AdsSimHandle, AdsSimulator, AdsState, MEMORY_GROUP, Quirk,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NET_ID: &str = "5.80.201.232.1.1";

/// The demo filler, without the background tick (tests tick explicitly).
fn filler() -> AdsState {
    let mut state = AdsState::demo();
    state.tick_ms = 0;
    state
}

async fn start(state: AdsState) -> AdsSimHandle {
    AdsSimulator::start(LOOPBACK, state)
        .await
        .expect("simulator starts")
}

fn collector(address: &str, extra: &str, setpoints: &str) -> AdsCollector {
    let rest = format!("ams_net_id = \"{NET_ID}\"\ntimeout_ms = 500\n{extra}\n{setpoints}");
    collector_and_asset!(Ads, AdsCollector::new, "ads", "filler-3", address, &rest).0
}

const RECIPE: &str = r#"
  [[asset.setpoints]]
  name = "recipe"
  symbol = "GVL_Recipe.*"
  [[asset.setpoints]]
  name = "max speed"
  symbol = "GVL_Config.MaxSpeed"
"#;

struct Filler(AdsSimHandle);

impl SimulatedDevice for Filler {
    fn change_a_setpoint(&self) -> String {
        self.0.set("GVL_Recipe.FillVolume", 520.0).expect("set");
        "ads/value/GVL_Recipe.FillVolume".to_owned()
    }
    fn restore_the_setpoint(&self) {
        self.0.set("GVL_Recipe.FillVolume", 500.0).expect("set");
    }
    fn stall(&self, on: bool) {
        self.0.set_quirk(Quirk::Stall, on);
    }
    fn tick_runtime(&self) {
        self.0.tick();
        self.0.tick();
    }
    fn write_requests(&self) -> usize {
        self.0.request_log().writes()
    }
}

fn get(capture: &Capture, path: &str) -> Option<Value> {
    capture.snapshot.get(path).map(|i| i.value().clone())
}

fn field(value: &Value, key: &str) -> Value {
    match value {
        Value::Map(m) => m.get(key).cloned().unwrap_or(Value::Null),
        other => panic!("expected a map, got {other:?}"),
    }
}

/// Requests per ADS command id since the last clear.
fn by_command(sim: &AdsSimHandle) -> BTreeMap<u16, usize> {
    sim.request_log().count_by_service()
}

/// Requests to an index group since the last clear: plain Reads and ReadWrites are logged
/// with their group in `address` (a sum-read under 0xF080/0xF083, its sub-reads not
/// itemized).
fn reads_of(sim: &AdsSimHandle, group: u32) -> usize {
    sim.request_log()
        .entries()
        .iter()
        .filter(|e| e.address == Some(group))
        .count()
}

#[tokio::test]
async fn the_ads_collector_is_compliant() {
    let sim = start(filler()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    assert_collector_compliance(&mut c, &Filler(sim.clone())).await;
    c.close().await;
}

#[tokio::test]
async fn identity_program_setpoints_and_runtime_are_typed() {
    let sim = start(filler()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    let g = |p: &str| get(&capture, p);

    assert_eq!(g("ads/device/name"), Some(Value::from("Plc30 App")));
    assert_eq!(g("ads/device/version"), Some(Value::from("3.1.4024")));
    assert_eq!(
        capture.snapshot.get("ads/device/name").map(|i| i.class()),
        Some(Class::Identity)
    );

    let fill = g("ads/symbol/GVL_Recipe.FillVolume").expect("symbol item");
    assert_eq!(field(&fill, "type"), Value::from("T_Millilitre"));
    assert_eq!(field(&fill, "size"), Value::UInt(4));
    assert_eq!(field(&fill, "group"), Value::UInt(u64::from(MEMORY_GROUP)));
    assert_eq!(field(&fill, "persistent"), Value::Bool(true));
    assert_eq!(
        field(
            &g("ads/symbol/MAIN.nBottleCount").expect("runtime symbol"),
            "persistent"
        ),
        Value::Bool(false)
    );
    let valve = g("ads/datatype/ST_Valve").expect("datatype item");
    assert_eq!(field(&valve, "size"), Value::UInt(12));
    let Value::List(fields) = field(&valve, "fields") else {
        panic!("fields")
    };
    assert_eq!(field(&fields[2], "name"), Value::from("Enabled"));
    assert_eq!(field(&fields[2], "offset"), Value::UInt(8));
    assert!(g("ads/datatype/ARRAY [1..4] OF ST_Nozzle").is_some());

    assert_eq!(g("ads/app/online_change_count"), Some(Value::UInt(0)));
    assert_eq!(
        g("ads/app/timestamp"),
        Some(Value::from("DT#2025-03-01-10:22:05"))
    );
    assert_eq!(g("ads/app/project_name"), Some(Value::from("Filler_L3")));
    assert_eq!(g("ads/app/app_name"), Some(Value::from("Port_851")));
    assert_eq!(g("ads/app/task_count"), Some(Value::UInt(2)));

    // Setpoints, typed; structures as one item per field, arrays as lists.
    assert_eq!(
        g("ads/value/GVL_Recipe.FillVolume"),
        Some(Value::F32(500.0))
    );
    assert_eq!(g("ads/value/GVL_Recipe.CapTorque"), Some(Value::F64(1.8)));
    assert_eq!(
        g("ads/value/GVL_Recipe.Product"),
        Some(Value::from("Sparkling 0.5l"))
    );
    assert_eq!(g("ads/value/GVL_Recipe.Mode"), Some(Value::Int(0)));
    assert_eq!(
        g("ads/value/GVL_Recipe.BottlesPerMinute"),
        Some(Value::UInt(240))
    );
    assert_eq!(
        g("ads/value/GVL_Recipe.CipInterval"),
        Some(Value::UInt(28_800_000))
    );
    assert_eq!(
        g("ads/value/GVL_Recipe.Valve.OpenDelay"),
        Some(Value::UInt(120))
    );
    assert_eq!(
        g("ads/value/GVL_Recipe.Valve.Enabled"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        g("ads/value/GVL_Recipe.TempLimits"),
        Some(Value::List(vec![Value::F64(4.0), Value::F64(12.0)]))
    );
    let Some(Value::List(nozzles)) = g("ads/value/GVL_Recipe.Nozzles") else {
        panic!("nozzles")
    };
    assert_eq!(field(&nozzles[1], "Offset"), Value::F32(0.5));
    assert_eq!(field(&nozzles[3], "Enabled"), Value::Bool(false));
    assert_eq!(g("ads/value/GVL_Config.MaxSpeed"), Some(Value::UInt(300)));
    assert!(
        g("ads/value/MAIN.nBottleCount").is_none(),
        "not a configured setpoint"
    );
    assert_eq!(
        capture
            .snapshot
            .get("ads/value/GVL_Recipe.Product")
            .map(|i| i.class()),
        Some(Class::Setpoint)
    );

    assert_eq!(
        capture.operating_state.get("ads_state"),
        Some(&Value::from("RUN"))
    );
    assert_eq!(capture.runtime.get("symbol_version"), Some(&Value::UInt(3)));
    assert_eq!(
        capture.runtime.get("sum_read"),
        Some(&Value::from("0xF083"))
    );
    assert_eq!(
        capture.runtime.get("source_ams_net_id"),
        Some(&Value::from("127.0.0.1.1.1"))
    );

    // STOP is news, not drift.
    sim.set_ads_state(6);
    let stopped = c.capture().await.expect("capture in STOP");
    assert_eq!(stopped.snapshot.digest(), capture.snapshot.digest());
    assert_eq!(
        stopped.operating_state.get("ads_state"),
        Some(&Value::from("STOP"))
    );
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn change_signals_decide_when_the_tables_are_uploaded_again() {
    let sim = start(filler()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let first = c.capture().await.expect("first capture");
    assert_eq!(
        first.runtime.get("symbol_table"),
        Some(&Value::from("uploaded"))
    );
    assert_eq!(reads_of(&sim, 0xF00B), 1);
    assert_eq!(reads_of(&sim, 0xF00E), 1);

    // Steady state: ReadDeviceInfo, ReadState, one sum-read of the change signals, one
    // sum-read of the setpoints. No upload.
    sim.request_log().clear();
    let steady = c.capture().await.expect("steady capture");
    assert_eq!(
        steady.runtime.get("symbol_table"),
        Some(&Value::from("unchanged"))
    );
    assert_eq!(by_command(&sim), BTreeMap::from([(1, 1), (4, 1), (9, 2)]));
    assert_eq!(steady.stats.requests, 4);
    assert_eq!(steady.stats.connects, 0);
    assert_eq!(reads_of(&sim, 0xF00B), 0);

    // An online change adds a symbol: the symbol version stays, OnlineChangeCnt and
    // AppTimestamp move; the tables are uploaded again and the drift names the symbol.
    sim.command("online-change add GVL_Recipe.RinseTime TIME = 1500")
        .expect("online change");
    sim.request_log().clear();
    let changed = c.capture().await.expect("capture after the online change");
    assert_eq!(changed.runtime.get("symbol_version"), Some(&Value::UInt(3)));
    assert_eq!(
        changed.runtime.get("symbol_table"),
        Some(&Value::from("uploaded"))
    );
    assert_eq!(reads_of(&sim, 0xF00B), 1);
    let diff = Diff::between(&first.snapshot, &changed.snapshot);
    let added: Vec<&str> = diff
        .changes
        .iter()
        .filter(|ch| ch.kind == ChangeKind::Added)
        .map(|ch| ch.path.as_str())
        .collect();
    assert_eq!(
        added,
        vec![
            "ads/symbol/GVL_Recipe.RinseTime",
            "ads/value/GVL_Recipe.RinseTime"
        ],
        "{diff:?}"
    );
    let changed_paths: Vec<&str> = diff
        .changes
        .iter()
        .filter(|ch| ch.kind == ChangeKind::Changed)
        .map(|ch| ch.path.as_str())
        .collect();
    assert_eq!(
        changed_paths,
        vec!["ads/app/online_change_count", "ads/app/timestamp"]
    );

    // A restart moves only the symbol version: the tables are read again, nothing drifts.
    sim.restart();
    let restarted = c.capture().await.expect("capture after a restart");
    assert_eq!(
        restarted.runtime.get("symbol_version"),
        Some(&Value::UInt(4))
    );
    assert_eq!(
        restarted.runtime.get("symbol_table"),
        Some(&Value::from("uploaded"))
    );
    assert_eq!(restarted.snapshot.digest(), changed.snapshot.digest());

    // A download of the approved project puts everything back.
    sim.download().expect("download");
    let back = c.capture().await.expect("capture after the download");
    assert_eq!(back.snapshot.digest(), first.snapshot.digest());
    assert_eq!(back.runtime.get("symbol_version"), Some(&Value::UInt(5)));
    assert_eq!(sim.request_log().writes(), 0);
}

/// A PLC with `n` REAL setpoints in GVL_Bench.
fn bench_state(n: usize) -> AdsState {
    let mut text = String::from(
        "ams_net_id = \"5.80.201.232.1.1\"\ntick_ms = 0\n[app]\nproject_name = \"Bench\"\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[symbol]]\nname = \"GVL_Bench.r{i:04}\"\ntype = \"REAL\"\nvalue = {i}.5\npersistent = true\n"
        ));
    }
    AdsState::from_toml(&text).expect("bench state")
}

#[tokio::test]
async fn a_thousand_setpoints_cost_two_sum_reads() {
    let sim = start(bench_state(1000)).await;
    let setpoints = "[[asset.setpoints]]\nname = \"bench\"\nsymbol = \"GVL_Bench.*\"\n";
    let mut c = collector(&sim.local_addr().to_string(), "", setpoints);
    let first = c.capture().await.expect("capture");
    assert_eq!(
        first
            .snapshot
            .items_of(Class::Setpoint)
            .filter(|i| i.path().starts_with("ads/value/GVL_Bench."))
            .count(),
        1000
    );
    assert_eq!(
        get(&first, "ads/value/GVL_Bench.r0999"),
        Some(Value::F32(999.5))
    );
    sim.request_log().clear();
    let steady = c.capture().await.expect("capture");
    let sum_reads: Vec<Option<u32>> = sim
        .request_log()
        .entries()
        .iter()
        .filter(|e| e.address == Some(0xF083))
        .map(|e| e.count)
        .collect();
    // The change signals (3 sub-reads), then 1000 symbols in two batches of 500.
    assert_eq!(sum_reads, vec![Some(3), Some(500), Some(500)]);
    assert_eq!(steady.stats.requests, 3 + 1000u32.div_ceil(500));
}

#[tokio::test]
async fn a_device_without_sum_read_ex_gets_the_plain_sum_read() {
    let sim = start(filler()).await;
    let mut reference = collector(&sim.local_addr().to_string(), "", RECIPE);
    let expected = reference
        .capture()
        .await
        .expect("reference")
        .snapshot
        .digest();
    sim.set_quirk(Quirk::NoSumReadEx, true);
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture with 0xF080");
    assert_eq!(capture.snapshot.digest(), expected);
    assert_eq!(
        capture.runtime.get("sum_read"),
        Some(&Value::from("0xF080"))
    );
    // The choice is remembered: no second refusal.
    sim.request_log().clear();
    c.capture().await.expect("capture");
    assert_eq!(reads_of(&sim, 0xF083), 0);
    assert_eq!(reads_of(&sim, 0xF080), 2);

    sim.set_quirk(Quirk::NoSum, true);
    let mut single = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = single.capture().await.expect("capture with single reads");
    assert_eq!(capture.snapshot.digest(), expected);
    assert_eq!(
        capture.runtime.get("sum_read"),
        Some(&Value::from("single reads"))
    );
}

/// A small controller without a symbol upload (both upload infos answer "service not
/// supported"): what it cannot give is recorded as stable not-available items; what its
/// by-name directory (0xF009) says it does not have is absent; what it has is read.
#[tokio::test]
async fn stable_capability_gaps_are_recorded_and_stay_stable() {
    let sim = start(filler()).await;
    sim.set_quirk(Quirk::NoUpload, true);
    sim.set_quirk(Quirk::SymverPlaceholder, true);
    let setpoints = r#"
  [[asset.setpoints]]
  name = "fill"
  symbol = "GVL_Recipe.FillVolume"
  [[asset.setpoints]]
  name = "recipe"
  symbol = "GVL_Recipe.*"
  [[asset.setpoints]]
  name = "missing"
  symbol = "GVL_Recipe.Nope"
"#;
    let mut c = collector(&sim.local_addr().to_string(), "", setpoints);
    let capture = c.capture().await.expect("capture what the device gives");
    let gap = |p: &str| match get(&capture, p) {
        Some(Value::Unavailable(reason)) => reason,
        other => panic!("{p}: expected not available, got {other:?}"),
    };
    assert!(gap("ads/symbols").contains("service not supported"));
    assert!(gap("ads/datatypes").contains("symbol upload"));
    assert!(gap("ads/app").contains("no symbol table"));
    assert!(gap("ads/value/GVL_Recipe.*").contains("prefix"));
    let nope = gap("ads/value/GVL_Recipe.Nope");
    assert!(nope.contains("0x710") && nope.contains("0xF009"), "{nope}");
    // Identity is never a gap.
    assert_eq!(
        get(&capture, "ads/device/name"),
        Some(Value::from("Plc30 App"))
    );
    // Exact names are still found, one by one, with symbol info by name (0xF009).
    assert_eq!(
        get(&capture, "ads/value/GVL_Recipe.FillVolume"),
        Some(Value::F32(500.0))
    );
    assert_eq!(capture.runtime.get("symbol_version"), Some(&Value::UInt(0)));
    let again = c.capture().await.expect("capture");
    assert_eq!(
        again.snapshot.digest(),
        capture.snapshot.digest(),
        "gaps are stable"
    );
    sim.set("GVL_Recipe.FillVolume", 505.0).expect("set");
    let moved = c.capture().await.expect("capture");
    let diff = Diff::between(&capture.snapshot, &moved.snapshot);
    assert_eq!(diff.changes.len(), 1);
    assert_eq!(diff.changes[0].path, "ads/value/GVL_Recipe.FillVolume");
    assert_eq!(sim.request_log().writes(), 0);
}

/// One way a device can answer that is not its state, and what the collector must say.
struct Refusal {
    quirk: &'static str,
    on: fn(&AdsSimHandle),
    off: fn(&AdsSimHandle),
    /// The failure reason (`refused`, `busy`, `malformed`, `bound`).
    reason: &'static str,
    /// What the error's request must name.
    request: &'static [&'static str],
    /// What the device's words (the error's detail) must contain.
    detail: &'static str,
    /// Whether a collector that already knows the program must fail too (a quirk on the
    /// table upload does not touch a poll whose change signals did not move).
    warm: bool,
}

fn refusals() -> Vec<Refusal> {
    vec![
        Refusal {
            quirk: "refuse-all 0x701",
            on: |s| s.refuse_all(Some(0x701)),
            off: |s| s.refuse_all(None),
            reason: "refused",
            request: &["ReadDeviceInfo"],
            detail: "0x701: service not supported",
            warm: true,
        },
        Refusal {
            quirk: "refuse-all 0x710",
            on: |s| s.refuse_all(Some(0x710)),
            off: |s| s.refuse_all(None),
            reason: "refused",
            request: &["ReadDeviceInfo"],
            detail: "0x710: symbol not found",
            warm: true,
        },
        Refusal {
            quirk: "busy",
            on: |s| s.set_quirk(Quirk::Busy, true),
            off: |s| s.set_quirk(Quirk::Busy, false),
            reason: "busy",
            request: &["ReadDeviceInfo"],
            detail: "0x708",
            warm: true,
        },
        Refusal {
            quirk: "no-device-info",
            on: |s| s.set_quirk(Quirk::NoDeviceInfo, true),
            off: |s| s.set_quirk(Quirk::NoDeviceInfo, false),
            reason: "refused",
            request: &["ReadDeviceInfo"],
            detail: "0x701",
            warm: true,
        },
        Refusal {
            quirk: "no-read-state",
            on: |s| s.set_quirk(Quirk::NoReadState, true),
            off: |s| s.set_quirk(Quirk::NoReadState, false),
            reason: "refused",
            request: &["ReadState"],
            detail: "0x701",
            warm: true,
        },
        Refusal {
            quirk: "refuse-symbol GVL_Recipe.FillVolume",
            on: |s| {
                s.refuse_symbol("GVL_Recipe.FillVolume", 0x710)
                    .expect("quirk")
            },
            off: |s| s.set_quirk(Quirk::RefuseSymbol, false),
            reason: "refused",
            request: &["0x4040", "GVL_Recipe.FillVolume"],
            detail: "0x710: symbol not found, although the symbol table (0xF00B) lists GVL_Recipe.FillVolume",
            warm: true,
        },
        Refusal {
            quirk: "refuse-symbol GVL_Config.MaxSpeed 0x708",
            on: |s| {
                s.refuse_symbol("GVL_Config.MaxSpeed", 0x708)
                    .expect("quirk")
            },
            off: |s| s.set_quirk(Quirk::RefuseSymbol, false),
            reason: "busy",
            request: &["GVL_Config.MaxSpeed"],
            detail: "0x708",
            warm: true,
        },
        Refusal {
            quirk: "refuse-symbol _AppInfo 0x701",
            on: |s| s.refuse_symbol(APP_INFO_SYMBOL, 0x701).expect("quirk"),
            off: |s| s.set_quirk(Quirk::RefuseSymbol, false),
            reason: "refused",
            request: &[APP_INFO_SYMBOL],
            detail: "0x701",
            warm: true,
        },
        Refusal {
            quirk: "no-table-upload",
            on: |s| s.set_quirk(Quirk::NoTableUpload, true),
            off: |s| s.set_quirk(Quirk::NoTableUpload, false),
            reason: "refused",
            request: &["0xF00B"],
            detail: "although the upload info announced this table",
            warm: false,
        },
        Refusal {
            quirk: "upload-info-mismatch",
            on: |s| s.set_quirk(Quirk::UploadInfoMismatch, true),
            off: |s| s.set_quirk(Quirk::UploadInfoMismatch, false),
            reason: "malformed",
            request: &["0xF00B"],
            detail: "the table holds",
            warm: true,
        },
        Refusal {
            quirk: "self-referencing-type",
            on: |s| s.set_quirk(Quirk::SelfReferencingType, true),
            off: |s| s.set_quirk(Quirk::SelfReferencingType, false),
            reason: "malformed",
            request: &["0xF00E"],
            detail: "ST_Loop contains itself (ST_Loop -> ST_Loop)",
            warm: true,
        },
    ]
}

/// The field-truth rule for ADS: every refusal, contradiction, malformed table and busy
/// answer fails the capture with its reason, naming the request, both on a first capture
/// (no provisional baseline of refusals) and on a collector that knows the program; with
/// the quirk off, the same collector captures exactly the earlier state again.
#[tokio::test]
async fn refusals_contradictions_and_malformed_tables_fail_the_capture() {
    let sim = start(filler()).await;
    let addr = sim.local_addr().to_string();
    let baseline = collector(&addr, "", RECIPE)
        .capture()
        .await
        .expect("baseline")
        .snapshot
        .digest();
    let mut warm = collector(&addr, "", RECIPE);
    warm.capture().await.expect("warm up");
    for case in refusals() {
        let mut fresh = collector(&addr, "", RECIPE);
        (case.on)(&sim);
        let mut failed = vec![("first capture", fresh.capture().await)];
        if case.warm {
            failed.push(("known program", warm.capture().await));
        }
        for (which, result) in failed {
            let e = match result {
                Err(e) => e,
                Ok(c) => panic!(
                    "{} ({which}): the capture succeeded: {:?}",
                    case.quirk,
                    c.snapshot
                        .items()
                        .filter(|i| matches!(i.value(), Value::Unavailable(_)))
                        .collect::<Vec<_>>()
                ),
            };
            eprintln!("{} ({which}): {e}", case.quirk);
            assert_eq!(
                e.reason().as_str(),
                case.reason,
                "{} ({which}): {e}",
                case.quirk
            );
            for needle in case.request {
                assert!(
                    e.request.contains(needle),
                    "{} ({which}): request {:?}",
                    case.quirk,
                    e.request
                );
            }
            assert!(
                e.detail().contains(case.detail),
                "{} ({which}): detail {:?}",
                case.quirk,
                e.detail()
            );
            assert!(e.to_string().contains("filler-3"), "{e}");
            assert!(!e.is_unreachable());
        }
        (case.off)(&sim);
        for c in [&mut fresh, &mut warm] {
            let again = c.capture().await.expect("capture with the quirk off");
            assert_eq!(again.snapshot.digest(), baseline, "{} off", case.quirk);
        }
    }
    assert_eq!(sim.request_log().writes(), 0);
}

/// A sum-read that fails some of its sub-reads is not the device refusing the symbols:
/// each is read again alone (the same index group, offset and length), and the digest is
/// exactly the device's state. A symbol refused alone too is a contradiction.
#[tokio::test]
async fn a_sub_read_refused_in_a_sum_read_is_read_again_alone() {
    let sim = start(filler()).await;
    let addr = sim.local_addr().to_string();
    let baseline = collector(&addr, "", RECIPE)
        .capture()
        .await
        .expect("baseline");
    sim.set_quirk(Quirk::SumReadSubError, true);
    let mut c = collector(&addr, "", RECIPE);
    sim.request_log().clear();
    let capture = c.capture().await.expect("capture through single reads");
    assert_eq!(capture.snapshot.digest(), baseline.snapshot.digest());
    let single_memory_reads = sim
        .request_log()
        .entries()
        .iter()
        .filter(|e| e.service == 2 && e.address == Some(MEMORY_GROUP))
        .count();
    let planned = baseline
        .snapshot
        .items_of(Class::Setpoint)
        .map(|i| i.path().split('.').take(2).collect::<Vec<_>>().join("."))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    // Every setpoint symbol and _AppInfo, each alone once.
    assert_eq!(single_memory_reads, planned + 1);
    assert_eq!(
        capture.runtime.get("sum_read"),
        Some(&Value::from("0xF083"))
    );

    sim.refuse_symbol("GVL_Recipe.Product", 0x710)
        .expect("quirk");
    let e = c.capture().await.expect_err("refused alone too");
    assert!(matches!(e.kind, ErrorKind::Refused(_)), "{e}");
    assert!(e.request.contains("GVL_Recipe.Product"), "{e}");
    assert_eq!(sim.request_log().writes(), 0);
}

/// Without a symbol table, the device's by-name lookup (0xF009) is its directory: "symbol
/// not found" from it is absence (state, which the agent holds against the baseline), any
/// other refusal fails; and a symbol it found whose read is refused is a contradiction.
#[tokio::test]
async fn without_a_symbol_table_the_by_name_lookup_is_the_directory() {
    let sim = start(filler()).await;
    sim.set_quirk(Quirk::NoUpload, true);
    let addr = sim.local_addr().to_string();
    let fill = "[[asset.setpoints]]\nname = \"fill\"\nsymbol = \"GVL_Recipe.FillVolume\"\n";
    let baseline = collector(&addr, "", fill)
        .capture()
        .await
        .expect("baseline");

    sim.refuse_symbol("GVL_Recipe.FillVolume", 0x710)
        .expect("quirk");
    let absent = collector(&addr, "", fill)
        .capture()
        .await
        .expect("absence is state");
    match get(&absent, "ads/value/GVL_Recipe.FillVolume") {
        Some(Value::Unavailable(reason)) => {
            assert!(
                reason.contains("no symbol GVL_Recipe.FillVolume"),
                "{reason}"
            );
        }
        other => panic!("expected absence, got {other:?}"),
    }

    sim.refuse_symbol("GVL_Recipe.FillVolume", 0x701)
        .expect("quirk");
    let e = collector(&addr, "", fill)
        .capture()
        .await
        .expect_err("a refused lookup fails");
    assert!(matches!(e.kind, ErrorKind::Refused(_)), "{e}");
    assert!(
        e.request.contains("0xF009") && e.request.contains("GVL_Recipe.FillVolume"),
        "{e}"
    );

    // A collector that found the symbol by name, then has its read refused.
    sim.set_quirk(Quirk::RefuseSymbol, false);
    let mut c = collector(&addr, "", fill);
    c.capture().await.expect("found by name");
    sim.refuse_symbol("GVL_Recipe.FillVolume", 0x710)
        .expect("quirk");
    let e = c.capture().await.expect_err("a contradiction");
    assert!(
        e.detail()
            .contains("although symbol info by name (0xF009) lists GVL_Recipe.FillVolume"),
        "{e}"
    );
    sim.set_quirk(Quirk::RefuseSymbol, false);
    let back = c.capture().await.expect("capture");
    assert_eq!(back.snapshot.digest(), baseline.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
}

/// A setpoint whose type nests deeper than the collector follows, or whose value is larger
/// than it reads, is a bound on that setpoint: the capture fails, it is never recorded as
/// bytes or as a gap.
#[tokio::test]
async fn types_nested_too_deep_and_values_too_large_are_bounds() {
    let mut text = String::from("tick_ms = 0\n");
    for i in 0..18 {
        let target = if i == 17 {
            "REAL".to_owned()
        } else {
            format!("T_{}", i + 1)
        };
        text.push_str(&format!(
            "[[type]]\nname = \"T_{i}\"\nalias = \"{target}\"\n"
        ));
    }
    text.push_str(
        "[[symbol]]\nname = \"GVL_Deep.x\"\ntype = \"T_0\"\n\
         [[symbol]]\nname = \"GVL_Deep.shallow\"\ntype = \"T_5\"\nvalue = 1.5\n\
         [[symbol]]\nname = \"GVL_Big.a\"\ntype = \"ARRAY [1..140000] OF LREAL\"\n",
    );
    let sim = start(AdsState::from_toml(&text).expect("state")).await;
    let addr = sim.local_addr().to_string();
    let net_id = "ams_net_id = \"127.0.0.1.1.1\"";
    let one = |symbol: &str| format!("[[asset.setpoints]]\nname = \"x\"\nsymbol = \"{symbol}\"\n");
    let sim_collector = |setpoints: &str| {
        let asset = asset_from(&format!(
            "[agent]\nid = \"gw\"\ndata_dir = \"/tmp/unused\"\n[[asset]]\nid = \"deep-1\"\nprotocol = \"ads\"\naddress = \"{addr}\"\n{net_id}\ntimeout_ms = 500\n{setpoints}"
        ));
        let ProtocolConfig::Ads(cfg) = &asset.protocol else {
            panic!("ads")
        };
        AdsCollector::new(&asset, cfg)
    };
    let shallow = sim_collector(&one("GVL_Deep.shallow"))
        .capture()
        .await
        .expect("12 levels are followed");
    assert_eq!(
        get(&shallow, "ads/value/GVL_Deep.shallow"),
        Some(Value::F32(1.5))
    );
    for (symbol, detail) in [
        ("GVL_Deep.x", "levels deep"),
        ("GVL_Big.a", "1120000 bytes"),
    ] {
        let e = sim_collector(&one(symbol))
            .capture()
            .await
            .expect_err("a bound");
        assert!(matches!(e.kind, ErrorKind::Bound(_)), "{symbol}: {e}");
        assert!(e.request.contains(symbol), "{e}");
        assert!(e.detail().contains(detail), "{e}");
    }
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn a_device_with_only_the_legacy_upload_info_gives_symbols_without_types() {
    let sim = start(filler()).await;
    sim.set_quirk(Quirk::LegacyUploadInfo, true);
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    match get(&capture, "ads/datatypes") {
        Some(Value::Unavailable(reason)) => assert!(reason.contains("0xF00C"), "{reason}"),
        other => panic!("expected no data-type table, got {other:?}"),
    }
    assert!(get(&capture, "ads/symbol/GVL_Recipe.FillVolume").is_some());
    // Without the data-type table, scalars still decode by their base type; a structure
    // shows as its bytes, and _AppInfo's layout is unknown.
    assert_eq!(
        get(&capture, "ads/value/GVL_Recipe.FillVolume"),
        Some(Value::F32(500.0))
    );
    assert!(
        matches!(get(&capture, "ads/value/GVL_Recipe.Valve"), Some(Value::Bytes(b)) if b.len() == 12)
    );
    assert!(matches!(
        get(&capture, "ads/app"),
        Some(Value::Unavailable(_))
    ));
    sim.request_log().clear();
    let again = c.capture().await.expect("capture");
    assert_eq!(again.snapshot.digest(), capture.snapshot.digest());
    assert_eq!(
        again.runtime.get("symbol_table"),
        Some(&Value::from("unchanged"))
    );
    // The refusal is remembered: no second attempt at 0xF00F and no extra plain Read of
    // 0xF00C, just the usual four round trips.
    assert_eq!(again.stats.requests, 4);
    assert_eq!(reads_of(&sim, 0xF00C), 0);
}

#[tokio::test]
async fn a_placeholder_symbol_version_does_not_hide_an_online_change() {
    let sim = start(filler()).await;
    sim.set_quirk(Quirk::SymverPlaceholder, true);
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let first = c.capture().await.expect("capture");
    sim.online_change_add("GVL_Recipe.Speed2", "UINT", Some("7"))
        .expect("online change");
    let changed = c.capture().await.expect("capture");
    assert_eq!(
        changed.runtime.get("symbol_table"),
        Some(&Value::from("uploaded"))
    );
    assert!(
        changed
            .snapshot
            .get("ads/symbol/GVL_Recipe.Speed2")
            .is_some()
    );
    assert_ne!(changed.snapshot.digest(), first.snapshot.digest());
}

#[tokio::test]
async fn malformed_answers_are_typed_errors_naming_the_request() {
    let sim = start(filler()).await;
    sim.set_quirk(Quirk::BadSymbolEntry, true);
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Malformed(_)) => {
            let text = e.to_string();
            assert!(text.contains("filler-3"), "{text}");
            assert!(text.contains("0xF00B"), "{text}");
            assert!(text.contains("symbol entry #1"), "{text}");
            assert!(!e.is_unreachable());
        }
        other => panic!("expected a malformed symbol table, got {other:?}"),
    }
    sim.set_quirk(Quirk::BadSymbolEntry, false);
    sim.set_quirk(Quirk::SumReadNoResults, true);
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Malformed(_)) => {
            let text = e.to_string();
            assert!(text.contains("0xF083"), "{text}");
        }
        other => panic!("expected a malformed sum-read, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dropped_session_is_replaced_within_the_capture() {
    let sim = start(filler()).await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let before = c.capture().await.expect("capture");
    sim.set_quirk(Quirk::DropSession, true);
    let after = c.capture().await.expect("capture across a dropped session");
    assert_eq!(after.snapshot.digest(), before.snapshot.digest());
    assert_eq!(after.stats.connects, 1);
}

#[tokio::test]
async fn a_connection_the_device_dropped_is_replaced_after_a_restart() {
    let first = start(filler()).await;
    let addr = first.local_addr();
    let mut c = collector(&addr.to_string(), "", RECIPE);
    let second =
        assert_reconnects_after_restart(&mut c, first, |addr| AdsSimulator::start(addr, filler()))
            .await;
    assert_eq!(second.request_log().writes(), 0);
}

#[tokio::test]
async fn routing_mistakes_are_named() {
    let sim = start(filler()).await;
    let wrong_net = asset_from(&format!(
        "[agent]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\n[[asset]]\nid = \"filler-3\"\nprotocol = \"ads\"\naddress = \"{}\"\nams_net_id = \"1.2.3.4.1.1\"\n",
        sim.local_addr()
    ));
    let ProtocolConfig::Ads(cfg) = &wrong_net.protocol else {
        panic!("ads")
    };
    let mut c = AdsCollector::new(&wrong_net, cfg);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Refused(_)) => {
            let text = e.to_string();
            assert!(text.contains("target machine not found"), "{text}");
            assert!(text.contains("1.2.3.4.1.1:851"), "{text}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A PLC with a route for one source Net Id only.
    let mut routed = filler();
    routed.routes = vec![[10, 0, 3, 5, 1, 1]];
    let sim = start(routed).await;
    let mut without = collector(&sim.local_addr().to_string(), "", RECIPE);
    let err = without.capture().await.expect_err("no route");
    assert!(err.is_unreachable(), "{err}");
    let mut with = collector(
        &sim.local_addr().to_string(),
        "source_ams_net_id = \"10.0.3.5.1.1\"",
        RECIPE,
    );
    let capture = with
        .capture()
        .await
        .expect("capture with the routed Net Id");
    assert_eq!(
        capture.runtime.get("source_ams_net_id"),
        Some(&Value::from("10.0.3.5.1.1"))
    );
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let closed = closed_address();
    let mut c = collector(&closed.to_string(), "", RECIPE);
    let text = connect_error(&mut c).await;
    assert!(text.contains(&closed.to_string()), "{text}");
}

/// What a hostile peer answers to one request frame (`None`: close the connection).
type Answerer = fn(&[u8]) -> Option<Vec<u8>>;

/// A peer that reads each request frame and answers what `answer` makes of it.
async fn hostile_peer(answer: Answerer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    let mut prefix = [0u8; 6];
                    if stream.read_exact(&mut prefix).await.is_err() {
                        break;
                    }
                    let len = u32::from_le_bytes([prefix[2], prefix[3], prefix[4], prefix[5]]);
                    let mut body = vec![0u8; len.min(1 << 20) as usize];
                    if stream.read_exact(&mut body).await.is_err() {
                        break;
                    }
                    let mut request = prefix.to_vec();
                    request.extend(body);
                    match answer(&request) {
                        Some(bytes) => {
                            if stream.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    }
                }
            });
        }
    });
    addr
}

/// A well-formed answer header for `request` with `data`.
fn answer_to(request: &[u8], error: u32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&((32 + data.len()) as u32).to_le_bytes());
    out.extend_from_slice(&request[14..22]);
    out.extend_from_slice(&request[6..14]);
    out.extend_from_slice(&request[22..24]);
    out.extend_from_slice(&5u16.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&error.to_le_bytes());
    out.extend_from_slice(&request[34..38]);
    out.extend_from_slice(data);
    out
}

fn command_of(request: &[u8]) -> u16 {
    u16::from_le_bytes([request[22], request[23]])
}

/// Answers ReadDeviceInfo and ReadState properly, everything else with `rest`.
fn plausible(request: &[u8], rest: fn(&[u8]) -> Vec<u8>) -> Option<Vec<u8>> {
    Some(match command_of(request) {
        1 => {
            let mut d = vec![0, 0, 0, 0, 3, 1, 0xB8, 0x0F];
            d.extend_from_slice(b"Plc30 App\0\0\0\0\0\0\0");
            answer_to(request, 0, &d)
        }
        4 => answer_to(request, 0, &[0, 0, 0, 0, 5, 0, 0, 0]),
        _ => rest(request),
    })
}

#[tokio::test]
async fn hostile_answers_are_errors_never_panics() {
    let answers: Vec<Answerer> = vec![
        // Announces 4 GiB: refused before anything is allocated.
        |_| Some(vec![0, 0, 0xff, 0xff, 0xff, 0xff]),
        // Shorter than an AMS header.
        |_| Some(vec![0, 0, 3, 0, 0, 0, 1, 2, 3]),
        // A well-formed header with another invoke id.
        |r| {
            let mut a = answer_to(r, 0, &[0; 24]);
            a[34] ^= 0xff;
            Some(a)
        },
        // ReadDeviceInfo with 3 data bytes.
        |r| Some(answer_to(r, 0, &[0, 0, 0])),
        // A header announcing more data than the frame carries.
        |r| {
            let mut a = answer_to(r, 0, &[0; 24]);
            a[26] = 200;
            Some(a)
        },
        // Router frames forever.
        |_| Some([vec![0, 0x10, 8, 0, 0, 0], vec![0; 8]].concat().repeat(8)),
        // A Read answer whose length field exceeds what was asked.
        |r| {
            plausible(r, |r| {
                answer_to(r, 0, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f])
            })
        },
        // A sum-read answer with sub-read lengths larger than asked.
        |r| {
            plausible(r, |r| {
                let mut d = vec![0u8; 8];
                d[4..8].copy_from_slice(&24u32.to_le_bytes());
                for _ in 0..2 {
                    d.extend_from_slice(&[0, 0, 0, 0, 0xff, 0, 0, 0]);
                }
                d.extend_from_slice(&[0; 8]);
                answer_to(r, 0, &d)
            })
        },
        // Upload info announcing two billion symbols.
        |r| {
            plausible(r, |r| {
                let mut sub = vec![0u8; 8 + 16 + 1 + 64];
                sub[8 + 12..8 + 16].copy_from_slice(&64u32.to_le_bytes());
                sub[8 + 16 + 1..8 + 16 + 5].copy_from_slice(&2_000_000_000u32.to_le_bytes());
                sub[8 + 16 + 5..8 + 16 + 9].copy_from_slice(&u32::MAX.to_le_bytes());
                let len = (sub.len() - 8) as u32;
                sub[4..8].copy_from_slice(&len.to_le_bytes());
                answer_to(r, 0, &sub)
            })
        },
        // Closes after the identity.
        |r| match command_of(r) {
            1 | 4 => plausible(r, |_| Vec::new()),
            _ => None,
        },
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        let addr = hostile_peer(answer).await;
        let mut c = collector(&addr.to_string(), "", RECIPE);
        let result = c.capture().await;
        assert!(result.is_err(), "answer #{i} was accepted: {result:?}");
    }
    // Pseudo-random garbage after a valid-looking prefix.
    for seed in 1..20u64 {
        let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut bytes = vec![0, 0, 60, 0, 0, 0];
                for _ in 0..60 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    bytes.push((x & 0xff) as u8);
                }
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&bytes).await;
                let _ = s.read(&mut buf).await;
            }
        });
        let mut c = collector(&addr.to_string(), "", RECIPE);
        assert!(
            c.capture().await.is_err(),
            "garbage with seed {seed} was accepted"
        );
    }
}

// --- Peers: independent ADS implementations ---

/// The `ads` crate (an ADS client we did not write) reads the simulator: its own decoders
/// parse our symbol and data-type tables, its sum-read (0xF083) reads values.
#[tokio::test]
async fn the_ads_crate_reads_the_simulator() {
    let sim = start(filler()).await;
    let addr = sim.local_addr();
    let fill_offset = sim
        .state()
        .symbol_offset("GVL_Recipe.FillVolume")
        .expect("symbol offset");
    let result = tokio::task::spawn_blocking(move || {
        use ads::{AmsAddr, AmsNetId, Client, Source, Timeouts};
        let client = Client::new(
            addr,
            Timeouts::new(std::time::Duration::from_secs(3)),
            Source::Auto,
        )
        .map_err(|e| e.to_string())?;
        let dev = client.device(AmsAddr::new(AmsNetId::new(5, 80, 201, 232, 1, 1), 851));
        let info = dev.get_info().map_err(|e| e.to_string())?;
        let (state, _) = dev.get_state().map_err(|e| e.to_string())?;
        let (symbols, types) = ads::symbol::get_symbol_info(dev).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        let mut symver = [0u8; 1];
        let mut reqs = [
            ads::client::ReadRequest::new(MEMORY_GROUP, fill_offset, &mut buf),
            ads::client::ReadRequest::new(0xF008, 0, &mut symver),
        ];
        dev.read_multi(&mut reqs).map_err(|e| e.to_string())?;
        let fill = f32::from_le_bytes(
            reqs[0]
                .data()
                .map_err(|e| e.to_string())?
                .try_into()
                .map_err(|_| "4 bytes")?,
        );
        let version = reqs[1].data().map_err(|e| e.to_string())?.to_vec();
        Ok::<_, String>((
            info.name,
            (info.major, info.minor, info.version),
            state,
            symbols
                .iter()
                .map(|s| (s.name.clone(), s.typ.clone(), s.size, s.flags))
                .collect::<Vec<_>>(),
            types.get("ST_Valve").map(|t| {
                t.fields
                    .iter()
                    .map(|f| (f.name.clone(), f.offset))
                    .collect::<Vec<_>>()
            }),
            fill,
            version,
        ))
    })
    .await
    .expect("peer thread");
    let (name, version, state, symbols, valve, fill, symver) =
        result.expect("the ads crate talks to the simulator");
    assert_eq!(name, "Plc30 App");
    assert_eq!(version, (3, 1, 4024));
    assert_eq!(state, ads::AdsState::Run);
    assert!(symbols.contains(&(
        "GVL_Recipe.FillVolume".to_owned(),
        "T_Millilitre".to_owned(),
        4,
        1
    )));
    assert!(
        symbols
            .iter()
            .any(|s| s.0 == "TwinCAT_SystemInfoVarList._AppInfo")
    );
    assert_eq!(
        valve,
        Some(vec![
            ("OpenDelay".to_owned(), Some(0)),
            ("CloseDelay".to_owned(), Some(4)),
            ("Enabled".to_owned(), Some(8)),
        ])
    );
    assert_eq!(fill, 500.0);
    assert_eq!(symver, vec![3]);
    assert_eq!(sim.request_log().writes(), 0);
}

/// And the simulator logs the `ads` crate's Write as a write: the log really catches them.
#[tokio::test]
async fn a_write_from_a_peer_is_logged_as_a_write() {
    let sim = start(filler()).await;
    let addr = sim.local_addr();
    let offset = sim
        .state()
        .symbol_offset("GVL_Recipe.BottlesPerMinute")
        .expect("offset");
    tokio::task::spawn_blocking(move || {
        use ads::{AmsAddr, AmsNetId, Client, Source, Timeouts};
        let client = Client::new(
            addr,
            Timeouts::new(std::time::Duration::from_secs(3)),
            Source::Auto,
        )
        .expect("connect");
        let dev = client.device(AmsAddr::new(AmsNetId::new(5, 80, 201, 232, 1, 1), 851));
        // The one place a write is sent: to prove the simulator records it.
        #[allow(clippy::disallowed_methods)]
        dev.write(MEMORY_GROUP, offset, &250u16.to_le_bytes())
            .expect("write");
    })
    .await
    .expect("peer thread");
    assert_eq!(sim.request_log().writes(), 1);
    assert_eq!(
        sim.get("GVL_Recipe.BottlesPerMinute"),
        Some(serde_json::json!(250))
    );
}

/// pyads (Beckhoff's AdsLib underneath, not our code) reads the simulator: identity, state,
/// symbol info by name with a plain sum-read (0xF080), the symbol upload, a plain Read.
#[tokio::test]
async fn pyads_reads_the_simulator() {
    let sim = start(filler()).await;
    let addr = sim.local_addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        peers::run(
            "pyads reads the ADS simulator",
            &["pyads"],
            "ads_client.py",
            &[&addr, NET_ID],
        )
    })
    .await
    .expect("peer thread");
    let Some(out) = out else { return };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pyads failed: {stdout}");
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).expect("pyads JSON");
    assert_eq!(doc["name"], "Plc30 App");
    assert_eq!(doc["version"], serde_json::json!([3, 1, 4024]));
    assert_eq!(doc["ads_state"], 5);
    assert_eq!(doc["values"]["GVL_Recipe.FillVolume"], 500.0);
    assert_eq!(doc["values"]["GVL_Recipe.BottlesPerMinute"], 240);
    assert_eq!(doc["values"]["GVL_Recipe.Product"], "Sparkling 0.5l");
    assert_eq!(doc["values"]["GVL_Config.MaxSpeed"], 300);
    assert_eq!(doc["torque"], 1.8);
    let names = doc["symbols"].as_array().expect("symbol names");
    assert_eq!(names.len(), sim.state().symbol_names().len());
    assert!(names.contains(&serde_json::json!("GVL_Recipe.Valve")));
    assert!(reads_of(&sim, 0xF080) >= 1, "pyads used the plain sum-read");
    assert_eq!(sim.request_log().writes(), 0);
}

/// Our collector against pyads's ADS test server (an ADS server we did not write): its
/// framing of ReadDeviceInfo and ReadState answers.
#[tokio::test]
async fn the_collector_identifies_pyads_test_server() {
    let server = tokio::task::spawn_blocking(|| {
        peers::PeerServer::start(
            "pyads test server",
            &["pyads.testserver"],
            "ads_server.py",
            &[],
        )
    })
    .await
    .expect("peer thread");
    let Some(server) = server else { return };
    let mut c = collector(&server.addr.to_string(), "", RECIPE);
    let identity = c.identify().await;
    c.close().await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("peer stops");
    let items = identity.expect("identify against pyads's test server");
    let get = |p: &str| {
        items
            .iter()
            .find(|i| i.path() == p)
            .map(|i| i.value().clone())
    };
    assert_eq!(get("ads/device/name"), Some(Value::from("TestServer")));
    assert_eq!(get("ads/device/version"), Some(Value::from("1.2.3")));
}
