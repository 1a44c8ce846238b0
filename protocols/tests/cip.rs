//! The Logix collector against the CIP simulator over loopback.

mod common;

use std::net::SocketAddr;

use common::{
    LOOPBACK, SimulatedDevice, assert_collector_compliance, assert_reconnects_after_restart,
    collector_and_asset, one_asset,
};
use otdrift_config::ProtocolConfig;
use otdrift_core::{ChangeKind, Diff, Value};
use otdrift_protocols::cip::{CipCollector, REBROWSE_EVERY, setpoint_label};
use otdrift_protocols::{CollectError, Collector, ErrorKind};
use otdrift_simulators::cip::{CipSimHandle, CipSimulator, CipState, Quirk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Service codes in the simulator's request log.
const SEND_RR_DATA: u16 = 0x16F;
const SEND_UNIT_DATA: u16 = 0x170;
const MSP: u16 = 0x0A;
const READ_TAG: u16 = 0x4C;
const READ_FRAGMENTED: u16 = 0x52;
const LIST_SYMBOLS: u16 = 0x55;

async fn oven() -> CipSimHandle {
    start(CipState::demo()).await
}

async fn start(state: CipState) -> CipSimHandle {
    CipSimulator::start(LOOPBACK, state.with_tick_ms(0))
        .await
        .expect("simulator starts")
}

fn config(address: &str, extra: &str, setpoints: &str) -> otdrift_config::AssetConfig {
    one_asset(
        "cip",
        "oven-3",
        address,
        &format!("timeout_ms = 500\n{extra}\n{setpoints}"),
    )
}

fn collector(address: &str, extra: &str, setpoints: &str) -> CipCollector {
    let rest = format!("timeout_ms = 500\n{extra}\n{setpoints}");
    collector_and_asset!(Cip, CipCollector::new, "cip", "oven-3", address, &rest).0
}

const RECIPE: &str = r#"
  [[asset.setpoints]]
  name = "oven setpoint"
  tag = "Oven_SP"
  [[asset.setpoints]]
  name = "recipe"
  tag = "Recipe"
  [[asset.setpoints]]
  name = "ramp rate"
  tag = "Program:Oven.Ramp_Rate"
  [[asset.setpoints]]
  name = "zone temperatures"
  tag = "Program:Oven.Zone_Temp"
  [[asset.setpoints]]
  name = "zone 2 setpoint"
  tag = "Zones[1].SP"
  [[asset.setpoints]]
  name = "second ramp"
  tag = "Recipe.Ramp[1]"
  [[asset.setpoints]]
  name = "interlocks"
  tag = "Interlock_Mask"
  [[asset.setpoints]]
  name = "note"
  tag = "Program:MainProgram.Operator_Note"
  [[asset.setpoints]]
  name = "line speed"
  tag = "Line_Speed"
"#;

const SETPOINT_COUNT: usize = 9;

struct Oven(CipSimHandle);

impl SimulatedDevice for Oven {
    fn change_a_setpoint(&self) -> String {
        self.0.set_tag("Oven_SP", "185.5").expect("set");
        "cip/value/Oven_SP".to_owned()
    }
    fn restore_the_setpoint(&self) {
        self.0.set_tag("Oven_SP", "180").expect("set");
    }
    fn stall(&self, on: bool) {
        self.0.set_quirk(Quirk::Stall, on);
    }
    fn tick_runtime(&self) {
        for _ in 0..5 {
            self.0.tick();
        }
    }
    fn write_requests(&self) -> usize {
        self.0.request_log().writes()
    }
}

fn value(capture: &otdrift_protocols::Capture, path: &str) -> Value {
    capture
        .snapshot
        .get(path)
        .map(|i| i.value().clone())
        .unwrap_or_else(|| panic!("no item {path}"))
}

fn unavailable(capture: &otdrift_protocols::Capture, path: &str) -> String {
    match value(capture, path) {
        Value::Unavailable(reason) => reason,
        other => panic!("{path} should be not available, is {other:?}"),
    }
}

#[tokio::test]
async fn the_cip_collector_is_compliant() {
    let sim = oven().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    assert_collector_compliance(&mut c, &Oven(sim.clone())).await;
    c.close().await;
}

#[tokio::test]
async fn identity_program_structure_and_typed_setpoints_are_captured() {
    let sim = oven().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    assert_eq!(value(&capture, "cip/identity/vendor_id"), Value::UInt(1));
    assert_eq!(
        value(&capture, "cip/identity/revision"),
        Value::from("33.11")
    );
    assert_eq!(
        value(&capture, "cip/identity/serial_number"),
        Value::from("60C0FFEE")
    );
    assert_eq!(
        value(&capture, "cip/identity/product_name"),
        Value::from("1769-L33ER/A LOGIX5333ER")
    );
    assert_eq!(
        value(&capture, "cip/controller/name"),
        Value::from("Line3_Oven")
    );
    let audit = format!("16#{:016x}", sim.audit_value());
    let Value::Text(seen) = value(&capture, "cip/controller/audit_value") else {
        panic!("audit value is text");
    };
    assert_eq!(seen.replace('_', ""), audit);
    // Programs, tasks, tags in both scopes, UDTs by member.
    let Value::Map(oven) = value(&capture, "cip/program/Oven") else {
        panic!("program map");
    };
    assert_eq!(
        oven.get("routines"),
        Some(&Value::List(vec![
            "MainRoutine".into(),
            "Ramp".into(),
            "Zones".into()
        ]))
    );
    assert_eq!(value(&capture, "cip/task/MainTask"), Value::Null);
    let Value::Map(zone_temp) = value(&capture, "cip/tag/Program:Oven.Zone_Temp") else {
        panic!("tag map");
    };
    assert_eq!(zone_temp.get("type"), Some(&Value::from("REAL")));
    assert_eq!(
        zone_temp.get("dims"),
        Some(&Value::List(vec![Value::UInt(4)]))
    );
    let Value::Map(recipe) = value(&capture, "cip/tag/Recipe") else {
        panic!("tag map");
    };
    assert_eq!(recipe.get("type"), Some(&Value::from("Recipe_t")));
    let Value::Map(enable) = value(&capture, "cip/template/Recipe_t/Enable") else {
        panic!("member map");
    };
    assert_eq!(enable.get("type"), Some(&Value::from("BOOL")));
    assert!(enable.contains_key("bit"), "packed BOOL: {enable:?}");
    assert!(
        capture
            .snapshot
            .items()
            .all(|i| !i.path().contains("ZZZZZZZZZZ") && !i.path().contains("__")),
        "hidden members and internal symbols are not items"
    );
    // System and internal symbols are filtered out; process-value tags are structure only.
    assert!(capture.snapshot.get("cip/tag/Map:Local").is_none());
    assert!(capture.snapshot.get("cip/value/Batch_Count").is_none());
    // Typed setpoints.
    assert_eq!(value(&capture, "cip/value/Oven_SP"), Value::F32(180.0));
    assert_eq!(value(&capture, "cip/value/Line_Speed"), Value::Int(1200));
    assert_eq!(
        value(&capture, "cip/value/Program:Oven.Ramp_Rate"),
        Value::F32(2.5)
    );
    assert_eq!(
        value(&capture, "cip/value/Program:Oven.Zone_Temp"),
        Value::List(vec![
            Value::F32(180.0),
            Value::F32(182.0),
            Value::F32(184.0),
            Value::F32(180.0)
        ])
    );
    assert_eq!(value(&capture, "cip/value/Recipe.Ramp[1]"), Value::F32(2.5));
    assert_eq!(value(&capture, "cip/value/Zones[1].SP"), Value::F32(0.0));
    assert_eq!(
        value(&capture, "cip/value/Program:MainProgram.Operator_Note"),
        Value::from("night shift: check vent 2")
    );
    let Value::Map(recipe) = value(&capture, "cip/value/Recipe") else {
        panic!("a UDT is a map");
    };
    assert_eq!(recipe.get("Name"), Some(&Value::from("Epoxy cure A")));
    assert_eq!(recipe.get("Temp"), Some(&Value::F32(182.5)));
    assert_eq!(recipe.get("Soak_Time"), Some(&Value::Int(1800)));
    assert_eq!(recipe.get("Enable"), Some(&Value::Bool(true)));
    assert_eq!(recipe.get("Vent"), Some(&Value::Bool(false)));
    let Value::List(bits) = value(&capture, "cip/value/Interlock_Mask") else {
        panic!("BOOL[32] is a list");
    };
    assert_eq!(bits.len(), 32);
    assert_eq!(bits[2], Value::Bool(false));
    assert_eq!(bits[3], Value::Bool(true));
    // Runtime: recorded, never hashed.
    assert!(matches!(
        capture.runtime.get("cip/wall_clock_us"),
        Some(Value::UInt(_))
    ));
    assert!(capture.operating_state.contains_key("cip/identity_status"));
    assert_eq!(
        capture.runtime.get("cip/connection"),
        Some(&Value::from("Large Forward Open, 4002 bytes"))
    );
    assert!(
        capture
            .snapshot
            .items()
            .all(|i| !i.path().contains("wall_clock"))
    );
    // The identity alone.
    let identity = c.identify().await.expect("identify");
    assert!(
        identity
            .iter()
            .any(|i| i.path() == "cip/identity/product_code")
    );
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn steady_polls_take_two_round_trips_and_batch_the_setpoints() {
    let sim = oven().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let first = c.capture().await.expect("first capture browses");
    assert!(
        matches!(first.runtime.get("cip/tag_list"), Some(Value::Text(t)) if t.starts_with("browsed")),
        "{:?}",
        first.runtime
    );
    sim.request_log().clear();
    let steady = c.capture().await.expect("steady capture");
    let by = sim.request_log().count_by_service();
    // One Multiple Service Packet with identity, name, clock and audit values; one with the
    // nine setpoints; nothing browsed.
    assert_eq!(by.get(&SEND_UNIT_DATA), Some(&2), "{by:?}");
    assert_eq!(by.get(&SEND_RR_DATA), None, "{by:?}");
    assert_eq!(by.get(&MSP), Some(&2), "{by:?}");
    assert_eq!(by.get(&READ_TAG), Some(&(SETPOINT_COUNT + 2)), "{by:?}");
    assert_eq!(by.get(&LIST_SYMBOLS), None, "{by:?}");
    assert_eq!(steady.stats.requests, 2);
    assert_eq!(steady.stats.connects, 0);
    assert_eq!(
        steady.runtime.get("cip/tag_list"),
        Some(&Value::from("reused: audit value unchanged"))
    );
    assert_eq!(steady.snapshot.digest(), first.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn a_download_changes_the_audit_value_and_the_structure_is_rebrowsed() {
    let sim = oven().await;
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let before = c.capture().await.expect("capture");
    sim.add_tag("Program:Oven.Fan_Speed", "REAL[2]")
        .expect("download");
    sim.request_log().clear();
    let after = c.capture().await.expect("capture after the download");
    assert!(
        sim.request_log()
            .count_by_service()
            .contains_key(&LIST_SYMBOLS)
    );
    let diff = Diff::between(&before.snapshot, &after.snapshot);
    let paths: Vec<&str> = diff.changes.iter().map(|c| c.path.as_str()).collect();
    assert!(paths.contains(&"cip/controller/audit_value"), "{paths:?}");
    assert!(
        paths.contains(&"cip/tag/Program:Oven.Fan_Speed"),
        "{paths:?}"
    );
    assert_eq!(diff.changes.len(), 2, "{diff:?}");
    // A UDT member added: template items change, the UDT value gains a member.
    sim.command("add-member Zone_t Offset REAL")
        .expect("download");
    let udt = c.capture().await.expect("capture");
    assert!(udt.snapshot.get("cip/template/Zone_t/Offset").is_some());
    // Put back: the same structure, the same digest.
    sim.command("remove-member Zone_t Offset")
        .expect("download");
    sim.remove_tag("Program:Oven.Fan_Speed").expect("download");
    let back = c.capture().await.expect("capture");
    assert_eq!(back.snapshot.digest(), before.snapshot.digest());
    // A logic edit changes only the audit value.
    sim.command("logic 1").expect("online edit");
    let edited = c.capture().await.expect("capture");
    let diff = Diff::between(&before.snapshot, &edited.snapshot);
    assert_eq!(diff.changes.len(), 1, "{diff:?}");
    assert_eq!(diff.changes[0].path, "cip/controller/audit_value");
    assert_eq!(diff.changes[0].kind, ChangeKind::Changed);
}

#[tokio::test]
async fn without_an_audit_value_the_gap_is_recorded_and_the_tag_list_rebrowsed_every_nth_poll() {
    let sim = oven().await;
    sim.set_quirk(Quirk::NoAudit, true);
    let mut c = collector(&sim.local_addr().to_string(), "", RECIPE);
    let first = c.capture().await.expect("capture");
    let reason = unavailable(&first, "cip/controller/audit_value");
    assert!(
        reason.contains("no controller-scoped tag AuditValue"),
        "{reason}"
    );
    assert!(reason.contains("v20"), "{reason}");
    sim.request_log().clear();
    let mut browses = 0;
    for poll in 1..=REBROWSE_EVERY {
        let capture = c.capture().await.expect("capture");
        assert_eq!(
            capture.snapshot.digest(),
            first.snapshot.digest(),
            "poll {poll}"
        );
        if let Some(Value::Text(how)) = capture.runtime.get("cip/tag_list")
            && how.starts_with("browsed")
        {
            browses += 1;
        }
    }
    assert_eq!(
        browses, 1,
        "one periodic re-browse in {REBROWSE_EVERY} polls"
    );
    // A download is still caught by that re-browse.
    sim.add_tag("Spare", "DINT").expect("download");
    let mut seen = false;
    for _ in 0..REBROWSE_EVERY {
        let capture = c.capture().await.expect("capture");
        if capture.snapshot.get("cip/tag/Spare").is_some() {
            seen = true;
            break;
        }
    }
    assert!(seen, "the new tag shows within {REBROWSE_EVERY} polls");
}

#[tokio::test]
async fn values_larger_than_a_packet_are_read_fragmented() {
    let mut state = CipState::from_toml(
        r#"
tick_ms = 0
[[tag]]
name = "Profile"
type = "REAL"
dims = [2000]
[[tag]]
name = "Small"
type = "DINT"
value = 7
"#,
    )
    .expect("state");
    state = state.with_tick_ms(0);
    let sim = start(state).await;
    sim.set_tag("Profile[1999]", "42.5").expect("set");
    let setpoints = r#"
  [[asset.setpoints]]
  name = "profile"
  tag = "Profile"
  [[asset.setpoints]]
  name = "small"
  tag = "Small"
"#;
    let mut c = collector(&sim.local_addr().to_string(), "", setpoints);
    c.capture().await.expect("first");
    sim.request_log().clear();
    let capture = c.capture().await.expect("capture");
    let Value::List(profile) = value(&capture, "cip/value/Profile") else {
        panic!("a list");
    };
    assert_eq!(profile.len(), 2000);
    assert_eq!(profile[1999], Value::F32(42.5));
    let fragments = sim
        .request_log()
        .count_by_service()
        .get(&READ_FRAGMENTED)
        .copied()
        .unwrap_or(0);
    // 8000 bytes through a 4002-byte connection: three fragments.
    assert_eq!(fragments, 3);
    assert_eq!(value(&capture, "cip/value/Small"), Value::Int(7));
}

#[tokio::test]
async fn each_quirk_gives_the_documented_item_or_a_typed_error() {
    let sim = oven().await;
    let address = sim.local_addr().to_string();
    let mut reference = collector(&address, "", RECIPE);
    let baseline = reference.capture().await.expect("reference capture");

    // Old firmware without Large Forward Open: Forward Open with 504 bytes, same state.
    for (quirk, connection) in [
        (Quirk::NoLargeForwardOpen, "Forward Open, 504 bytes"),
        (Quirk::NoConnections, "unconnected, 504 bytes"),
    ] {
        sim.set_quirk(quirk, true);
        let mut c = collector(&address, "", RECIPE);
        let capture = c.capture().await.expect("capture");
        assert_eq!(
            capture.runtime.get("cip/connection"),
            Some(&Value::from(connection))
        );
        assert_eq!(
            capture.snapshot.digest(),
            baseline.snapshot.digest(),
            "{quirk:?}"
        );
        sim.set_quirk(quirk, false);
    }

    // Multiple Service Packet refused, or answered without count and offsets: one request
    // per service, the same state.
    for quirk in [Quirk::NoMultiService, Quirk::MspNoHeader] {
        sim.set_quirk(quirk, true);
        let mut c = collector(&address, "", RECIPE);
        let capture = c.capture().await.expect("capture");
        assert_eq!(
            capture.snapshot.digest(),
            baseline.snapshot.digest(),
            "{quirk:?}"
        );
        assert!(
            matches!(capture.runtime.get("cip/multiple_service_packet"), Some(Value::Text(t)) if t.starts_with("not used")),
            "{quirk:?}: {:?}",
            capture.runtime
        );
        sim.request_log().clear();
        let steady = c.capture().await.expect("capture");
        assert_eq!(steady.snapshot.digest(), baseline.snapshot.digest());
        assert_eq!(
            sim.request_log().count_by_service().get(&MSP),
            None,
            "{quirk:?}: not tried again"
        );
        sim.set_quirk(quirk, false);
    }

    // Partial transfers of three symbols per page: more pages, the same state.
    sim.set_quirk(Quirk::PartialPaging, true);
    sim.request_log().clear();
    let mut c = collector(&address, "", RECIPE);
    let capture = c.capture().await.expect("capture");
    assert_eq!(capture.snapshot.digest(), baseline.snapshot.digest());
    let pages = sim
        .request_log()
        .count_by_service()
        .get(&LIST_SYMBOLS)
        .copied();
    assert!(pages.is_some_and(|p| p >= 6), "{pages:?}");
    sim.set_quirk(Quirk::PartialPaging, false);

    // The tag list refused, or the session dropped on it: a stable gap, values still read.
    for (quirk, needle) in [
        (
            Quirk::NoBrowse,
            "refused Get Instance Attribute List (0x55)",
        ),
        (Quirk::BrowseDropsSession, "closes the session"),
    ] {
        sim.set_quirk(quirk, true);
        let mut c = collector(&address, "", RECIPE);
        let capture = c.capture().await.expect("capture");
        let reason = unavailable(&capture, "cip/tags");
        assert!(reason.contains(needle), "{quirk:?}: {reason}");
        assert_eq!(value(&capture, "cip/value/Oven_SP"), Value::F32(180.0));
        assert!(matches!(
            value(&capture, "cip/value/Recipe"),
            Value::Bytes(_)
        ));
        let again = c.capture().await.expect("capture");
        assert_eq!(
            again.snapshot.digest(),
            capture.snapshot.digest(),
            "{quirk:?}: stable"
        );
        sim.set_quirk(quirk, false);
    }

    // A placeholder identity is not taken for one: a refusal of what every device has.
    sim.set_quirk(Quirk::PlaceholderIdentity, true);
    let mut c = collector(&address, "", RECIPE);
    let e = c.capture().await.expect_err("a placeholder is no identity");
    assert!(matches!(e.kind, ErrorKind::Refused(_)), "{e}");
    assert!(e.to_string().contains("placeholder"), "{e}");
    sim.set_quirk(Quirk::PlaceholderIdentity, false);

    // A dropped session is reopened transparently.
    let mut c = collector(&address, "", RECIPE);
    c.capture().await.expect("capture");
    sim.set_quirk(Quirk::DropSession, true);
    let capture = c
        .capture()
        .await
        .expect("capture after the controller dropped the session");
    assert_eq!(capture.stats.connects, 1);
    assert_eq!(capture.snapshot.digest(), baseline.snapshot.digest());

    // Lying lengths: malformed, naming the asset and the request.
    sim.set_quirk(Quirk::Malformed, true);
    let mut c = collector(&address, "", RECIPE);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Malformed(_)) => {
            let text = e.to_string();
            assert!(text.contains("oven-3"), "{text}");
            assert!(text.contains("announces"), "{text}");
            assert!(!e.is_unreachable());
        }
        other => panic!("expected a malformed answer, got {other:?}"),
    }
    sim.set_quirk(Quirk::Malformed, false);
    assert_eq!(sim.request_log().writes(), 0);
}

/// A fresh collector's first capture, and the error it must fail with.
async fn first_capture_fails(address: &str, setpoints: &str) -> CollectError {
    let mut c = collector(address, "", setpoints);
    let result = c.capture().await;
    c.close().await;
    result.expect_err("the capture fails")
}

#[tokio::test]
async fn every_refusal_fails_the_capture_and_the_healthy_capture_is_the_same_state() {
    let sim = oven().await;
    let address = sim.local_addr().to_string();
    let mut steady = collector(&address, "", RECIPE);
    let baseline = steady.capture().await.expect("baseline");
    // (switch on, switch off, failure reason, the request it names, also in a steady poll)
    let cases = [
        (
            "quirk refuse-all on 0x04",
            "quirk refuse-all off",
            "refused",
            "Identity",
            true,
        ),
        (
            "quirk refuse-all on 0x05",
            "quirk refuse-all off",
            "refused",
            "Identity",
            true,
        ),
        (
            "quirk refuse-all on 0x08",
            "quirk refuse-all off",
            "refused",
            "Identity",
            true,
        ),
        (
            "quirk busy on",
            "quirk busy off",
            "busy",
            "Multiple Service Packet",
            true,
        ),
        // A listed tag refused, whatever the status: a contradiction, never absence.
        (
            "quirk refuse-tag on Oven_SP",
            "quirk refuse-tag off",
            "refused",
            "Oven_SP",
            true,
        ),
        (
            "quirk refuse-tag on Program:Oven.Ramp_Rate 0x04",
            "quirk refuse-tag off",
            "refused",
            "Program:Oven.Ramp_Rate",
            true,
        ),
        (
            "quirk refuse-tag on Recipe 0x08",
            "quirk refuse-tag off",
            "refused",
            "Recipe",
            true,
        ),
        (
            "quirk refuse-tag on Recipe 0x02",
            "quirk refuse-tag off",
            "busy",
            "Recipe",
            true,
        ),
        // Templates are read when the tag list is browsed, not in steady polls.
        (
            "quirk refuse-template on",
            "quirk refuse-template off",
            "refused",
            "Template",
            false,
        ),
        (
            "quirk placeholder-identity on",
            "quirk placeholder-identity off",
            "refused",
            "Identity",
            true,
        ),
    ];
    for (on, off, reason, request, steady_too) in cases {
        sim.command(on).expect(on);
        let e = first_capture_fails(&address, RECIPE).await;
        assert_eq!(e.reason().as_str(), reason, "{on}: {e}");
        assert!(e.request.contains(request), "{on}: {e}");
        assert!(e.to_string().contains("oven-3"), "{on}: {e}");
        assert!(!e.is_unreachable(), "{on}: {e}");
        if steady_too {
            let e = steady.capture().await.expect_err(on);
            assert_eq!(e.reason().as_str(), reason, "{on}, steady poll: {e}");
        }
        sim.command(off).expect(off);
        let healthy = steady.capture().await.expect("healthy again");
        assert_eq!(
            healthy.snapshot.digest(),
            baseline.snapshot.digest(),
            "{on}: {:?}",
            Diff::between(&baseline.snapshot, &healthy.snapshot)
        );
        let mut fresh = collector(&address, "", RECIPE);
        let again = fresh.capture().await.expect("a fresh healthy capture");
        assert_eq!(again.snapshot.digest(), baseline.snapshot.digest(), "{on}");
        fresh.close().await;
    }
    // identify() alone applies the same rule.
    sim.command("quirk refuse-all on 0x05").expect("on");
    let mut c = collector(&address, "", RECIPE);
    let e = c.identify().await.expect_err("identity refused");
    assert!(matches!(e.kind, ErrorKind::Refused(_)), "{e}");
    sim.command("quirk refuse-all off").expect("off");
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn stable_capabilities_and_honest_retries_keep_the_state_exact() {
    let sim = oven().await;
    let address = sim.local_addr().to_string();
    let mut reference = collector(&address, "", RECIPE);
    let baseline = reference.capture().await.expect("baseline");

    // Replies on the O->T id (cpppo's way), a Multiple Service Packet whose offsets do not
    // add up (re-read item by item), a clock answered without its count (runtime only): the
    // same state, exactly.
    for quirk in [
        Quirk::ForeignConnectionId,
        Quirk::BrokenMsp,
        Quirk::GarbledClock,
    ] {
        sim.set_quirk(quirk, true);
        let mut c = collector(&address, "", RECIPE);
        let first = c.capture().await.expect("capture");
        let second = c.capture().await.expect("steady capture");
        for capture in [&first, &second] {
            assert_eq!(
                capture.snapshot.digest(),
                baseline.snapshot.digest(),
                "{quirk:?}: {:?}",
                Diff::between(&baseline.snapshot, &capture.snapshot)
            );
        }
        match quirk {
            Quirk::BrokenMsp => assert!(
                matches!(first.runtime.get("cip/multiple_service_packet"), Some(Value::Text(t)) if t.contains("outside")),
                "{:?}",
                first.runtime
            ),
            Quirk::GarbledClock => assert!(
                matches!(first.runtime.get("cip/wall_clock_us"), Some(Value::Unavailable(r)) if r.contains("does not fit")),
                "{:?}",
                first.runtime
            ),
            _ => assert!(matches!(
                first.runtime.get("cip/wall_clock_us"),
                Some(Value::UInt(_))
            )),
        }
        sim.set_quirk(quirk, false);
        let after = c.capture().await.expect("quirk off");
        assert_eq!(after.snapshot.digest(), baseline.snapshot.digest());
    }

    // No program-name object: one stable not-available item, nothing else differs.
    sim.set_quirk(Quirk::NoProgramName, true);
    let mut c = collector(&address, "", RECIPE);
    let first = c.capture().await.expect("capture");
    assert_eq!(
        unavailable(&first, "cip/controller/name"),
        "the device has no Logix program-name object (class 0x64)"
    );
    let diff = Diff::between(&baseline.snapshot, &first.snapshot);
    assert_eq!(diff.changes.len(), 1, "{diff:?}");
    let second = c.capture().await.expect("capture");
    assert_eq!(second.snapshot.digest(), first.snapshot.digest());
    sim.set_quirk(Quirk::NoProgramName, false);

    // The tag list unsupported as cpppo says it (encapsulation status 0x0008, connection
    // closed): a stable gap, values still read, and the absent tag is absent.
    sim.set_quirk(Quirk::BrowseEncapUnsupported, true);
    let with_ghost =
        format!("{RECIPE}\n  [[asset.setpoints]]\n  name = \"ghost\"\n  tag = \"Ghost\"\n");
    let mut c = collector(&address, "", &with_ghost);
    let first = c.capture().await.expect("capture");
    assert!(
        unavailable(&first, "cip/tags").contains("encapsulation status 0x00000008"),
        "{:?}",
        first.snapshot.get("cip/tags")
    );
    assert_eq!(
        first.stats.connects, 2,
        "reconnected after the closed connection"
    );
    assert_eq!(value(&first, "cip/value/Oven_SP"), Value::F32(180.0));
    assert_eq!(
        unavailable(&first, "cip/value/Ghost"),
        "the controller has no such tag (its tag list cannot be read, and Read Tag answers path unknown)"
    );
    let second = c.capture().await.expect("capture");
    assert_eq!(second.snapshot.digest(), first.snapshot.digest());
    assert_eq!(second.stats.connects, 0);
    sim.set_quirk(Quirk::BrowseEncapUnsupported, false);

    // Without a tag list, "path unknown" is the controller's directory speaking; "service
    // not supported" (or any other refusal) for a configured tag fails.
    sim.set_quirk(Quirk::NoBrowse, true);
    for (status, outcome) in [("0x05", None), ("0x04", None), ("0x08", Some("refused"))] {
        sim.command(&format!("quirk refuse-tag on Oven_SP {status}"))
            .expect("refuse-tag");
        let mut c = collector(&address, "", RECIPE);
        let result = c.capture().await;
        match (outcome, result) {
            (None, Ok(capture)) => {
                assert!(unavailable(&capture, "cip/value/Oven_SP").contains("no such tag"));
            }
            (Some(reason), Err(e)) => {
                assert_eq!(e.reason().as_str(), reason, "{e}");
                assert!(e.request.contains("Oven_SP"), "{e}");
            }
            (outcome, result) => panic!("{status}: expected {outcome:?}, got {result:?}"),
        }
        sim.command("quirk refuse-tag off").expect("off");
    }
    sim.set_quirk(Quirk::NoBrowse, false);
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test]
async fn unknown_setpoints_and_a_wrong_slot_are_clear() {
    let sim = oven().await;
    let setpoints = r#"
  [[asset.setpoints]]
  name = "ghost"
  tag = "Program:Oven.No_Such_Tag"
  [[asset.setpoints]]
  name = "too far"
  tag = "Program:Oven.Zone_Temp[9]"
"#;
    let mut c = collector(&sim.local_addr().to_string(), "", setpoints);
    let capture = c.capture().await.expect("capture");
    assert!(
        unavailable(&capture, "cip/value/Program:Oven.No_Such_Tag")
            .contains("not in the controller's tag list")
    );
    assert!(unavailable(&capture, "cip/value/Program:Oven.Zone_Temp[9]").contains("beyond 4"));

    let mut wrong = collector(&sim.local_addr().to_string(), "slot = 3", setpoints);
    match wrong.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Refused(_)) => {
            let text = e.to_string();
            assert!(text.contains("slot 3"), "{text}");
        }
        other => panic!("expected a refusal naming the slot, got {other:?}"),
    }
}

#[tokio::test]
async fn a_restarted_controller_is_reconnected() {
    let first = oven().await;
    let addr = first.local_addr();
    let mut c = collector(&addr.to_string(), "", RECIPE);
    let second = assert_reconnects_after_restart(&mut c, first, |addr| {
        CipSimulator::start(addr, CipState::demo().with_tick_ms(0))
    })
    .await;
    drop(second);
}

/// A peer that answers RegisterSession properly, then `reply` to every request.
async fn hostile_peer(reply: Vec<u8>, register_reply: Option<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            let register_reply = register_reply.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 24];
                let mut first = true;
                while stream.read_exact(&mut head).await.is_ok() {
                    let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
                    let mut data = vec![0u8; len];
                    if stream.read_exact(&mut data).await.is_err() {
                        break;
                    }
                    let out = if first {
                        first = false;
                        register_reply.clone().unwrap_or_else(|| {
                            let mut r = head.to_vec();
                            r[2..4].copy_from_slice(&4u16.to_le_bytes());
                            r[4..8].copy_from_slice(&7u32.to_le_bytes());
                            r.extend_from_slice(&[1, 0, 0, 0]);
                            r
                        })
                    } else {
                        let mut r = reply.clone();
                        if r.len() >= 24 {
                            // Echo the command, session and context so only the body lies.
                            r[0..2].copy_from_slice(&head[0..2]);
                            r[4..8].copy_from_slice(&7u32.to_le_bytes());
                            r[12..20].copy_from_slice(&head[12..20]);
                        }
                        r
                    };
                    if stream.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn frame(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 24];
    f[2..4].copy_from_slice(&(data.len() as u16).to_le_bytes());
    f.extend_from_slice(data);
    f
}

#[tokio::test]
async fn hostile_answers_are_errors_never_panics() {
    let cpf = |items: &[(u16, &[u8])]| {
        let mut d = vec![0u8; 6];
        d.extend_from_slice(&(items.len() as u16).to_le_bytes());
        for (kind, body) in items {
            d.extend_from_slice(&kind.to_le_bytes());
            d.extend_from_slice(&(body.len() as u16).to_le_bytes());
            d.extend_from_slice(body);
        }
        d
    };
    let cases: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
        // Short SendRRData bodies (rseip's send_rrdata would slice out of range here).
        (frame(&[]), None),
        (frame(&[0, 0, 0]), None),
        // Items that announce more than arrives.
        (
            frame(&[
                0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xB2, 0, 0xFF, 0x7F, 0xD4,
            ]),
            None,
        ),
        // A reply with 200 extended status words and no data.
        (frame(&cpf(&[(0, &[]), (0xB2, &[0xD4, 0, 1, 200])])), None),
        // Forward Open "success" with its application reply size past the end.
        (
            frame(&cpf(&[
                (0, &[]),
                (
                    0xB2,
                    &[
                        0xDB, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                        18, 19, 20, 21, 22, 23, 24, 0xFF, 0,
                    ],
                ),
            ])),
            None,
        ),
        // A header announcing more than the protocol allows.
        (
            {
                let mut f = vec![0u8; 24];
                f[2..4].copy_from_slice(&u16::MAX.to_le_bytes());
                f
            },
            None,
        ),
        // Garbage for RegisterSession.
        (vec![], Some(vec![0x65, 0, 2, 0, 0, 0, 0, 0])),
        (vec![], Some(frame(&[9, 9]))),
    ];
    for (reply, register) in cases {
        let addr = hostile_peer(reply.clone(), register.clone()).await;
        let mut c = collector(&addr.to_string(), "", RECIPE);
        let result = c.capture().await;
        match result {
            Err(ref e) if matches!(e.kind, ErrorKind::Malformed(_)) => {
                assert_eq!(e.asset, "oven-3")
            }
            Err(CollectError {
                kind: ErrorKind::Timeout { .. } | ErrorKind::Transport(_) | ErrorKind::Refused(_),
                ..
            }) => {}
            other => panic!(
                "reply {reply:02x?} / register {register:02x?}: expected an error, got {other:?}"
            ),
        }
    }
}

#[test]
fn setpoint_labels_follow_the_config() {
    let asset = config("127.0.0.1", "", RECIPE);
    let ProtocolConfig::Cip(cfg) = &asset.protocol else {
        panic!("cip");
    };
    assert_eq!(
        setpoint_label(cfg, "cip/value/Program:Oven.Ramp_Rate").as_deref(),
        Some("ramp rate")
    );
    assert_eq!(
        setpoint_label(cfg, "cip/value/oven_sp").as_deref(),
        Some("oven setpoint")
    );
    assert_eq!(setpoint_label(cfg, "cip/tag/Oven_SP"), None);
    assert_eq!(setpoint_label(cfg, "modbus/holding/1"), None);
}

/// Runs peer `script` (an independent Python client in `tests/peers/`) against `addr` off
/// the async runtime; its JSON output, or `None` when the peer cannot run here (see
/// `common::peers`).
async fn peer_json(
    check: &'static str,
    module: &'static str,
    script: &'static str,
    addr: SocketAddr,
) -> Option<serde_json::Value> {
    let args = [addr.ip().to_string(), addr.port().to_string()];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::peers::run(check, &[module], script, &args)
    })
    .await
    .expect("peer thread")?;
    assert!(out.status.success(), "{check} failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Some(serde_json::from_str(stdout.trim()).expect("peer prints JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pycomm3_reads_the_simulator_like_the_collector_does() {
    let sim = oven().await;
    let addr = sim.local_addr();
    let Some(json) = peer_json("cip pycomm3", "pycomm3", "cip_pycomm3.py", addr).await else {
        return;
    };
    assert_eq!(json["name"], "Line3_Oven");
    assert_eq!(json["programs"], serde_json::json!(["MainProgram", "Oven"]));
    assert_eq!(json["Oven_SP"], 180.0);
    assert_eq!(json["Line_Speed"], 1200);
    assert_eq!(
        json["Program:Oven.Zone_Temp"],
        serde_json::json!([180.0, 182.0, 184.0, 180.0])
    );
    assert_eq!(
        json["Program:MainProgram.Operator_Note"],
        "night shift: check vent 2"
    );
    assert_eq!(json["Recipe"]["Name"], "Epoxy cure A");
    assert_eq!(json["Recipe"]["Enable"], true);
    assert_eq!(json["Recipe"]["Soak_Time"], 1800);
    // The same values through otdrift.
    let mut c = collector(&addr.to_string(), "", RECIPE);
    let capture = c.capture().await.expect("capture");
    assert_eq!(value(&capture, "cip/value/Oven_SP"), Value::F32(180.0));
    assert_eq!(
        value(&capture, "cip/controller/name"),
        Value::from("Line3_Oven")
    );
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylogix_reads_the_simulator_like_the_collector_does() {
    let sim = oven().await;
    let addr = sim.local_addr();
    let Some(json) = peer_json("cip pylogix", "pylogix", "cip_pylogix.py", addr).await else {
        return;
    };
    let tags: Vec<String> = serde_json::from_value(json["tags"].clone()).expect("tags");
    for tag in ["Oven_SP", "Recipe", "Program:Oven.Zone_Temp"] {
        assert!(tags.iter().any(|t| t == tag), "{tag} in {tags:?}");
    }
    assert_eq!(
        json["programs"],
        serde_json::json!(["Program:MainProgram", "Program:Oven"])
    );
    assert_eq!(json["Oven_SP"], 180.0);
    assert_eq!(json["Line_Speed"], 1200);
    assert_eq!(json["Program:Oven.Ramp_Rate"], 2.5);
    assert_eq!(
        json["Program:MainProgram.Operator_Note"],
        "night shift: check vent 2"
    );
    assert_eq!(
        json["zone"],
        serde_json::json!([180.0, 182.0, 184.0, 180.0])
    );
    assert_eq!(json["time"], "Success");
    assert_eq!(sim.request_log().writes(), 0);
}

/// cpppo's tags for the peer checks (`tests/peers/cip_server.py`): the values the collector
/// must read, an array read by element, and a tag cpppo refuses with "service not
/// supported" on every read.
const CPPPO_TAGS: &str = r#"{
  "Oven_SP": {"type": "REAL", "value": 180.0},
  "Line_Speed": {"type": "DINT", "value": 1200},
  "Zones": {"type": "REAL", "count": 4, "value": [180.0, 182.0, 184.0, 186.0]},
  "Locked": {"type": "DINT", "value": 7, "error": 8},
  "identity": {"vendor": 1, "device_type": 14, "product_code": 108, "revision": "33.11",
               "serial": 1623261166, "product_name": "1769-L33ER/A LOGIX5333ER"}
}"#;

/// A file removed when dropped (the tag set handed to cpppo's wrapper).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("otdrift-cip-{}-{nanos}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write the temporary file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts cpppo (an independent EtherNet/IP server) with `tags`; `None` when it cannot run
/// here. The server exits when the returned handle is dropped (its stdin closes).
async fn cpppo(tags: &TempFile) -> Option<common::peers::PeerServer> {
    let path = tags.0.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        common::peers::PeerServer::start(
            "cip cpppo server",
            &["cpppo"],
            "cip_server.py",
            &["--tags", &path],
        )
    })
    .await
    .expect("peer thread")
}

fn cpppo_collector(addr: SocketAddr, setpoints: &str) -> CipCollector {
    // cpppo is Python: a wider timeout than the simulator's, still well under a poll.
    let rest = format!("timeout_ms = 5000\n{setpoints}");
    collector_and_asset!(
        Cip,
        CipCollector::new,
        "cip",
        "cpppo-1",
        &addr.to_string(),
        &rest
    )
    .0
}

const CPPPO_SETPOINTS: &str = r#"
  [[asset.setpoints]]
  name = "oven setpoint"
  tag = "Oven_SP"
  [[asset.setpoints]]
  name = "line speed"
  tag = "Line_Speed"
  [[asset.setpoints]]
  name = "zone 3"
  tag = "Zones[2]"
  [[asset.setpoints]]
  name = "ghost"
  tag = "Ghost"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpppo_an_independent_server_is_captured_exactly_and_stably() {
    let tags = TempFile::new("tags.json", CPPPO_TAGS);
    let Some(server) = cpppo(&tags).await else {
        return;
    };
    let mut c = cpppo_collector(server.addr, CPPPO_SETPOINTS);
    let first = c.capture().await.expect("cpppo is captured");
    // Identity, as configured in cpppo.
    assert_eq!(value(&first, "cip/identity/vendor_id"), Value::UInt(1));
    assert_eq!(value(&first, "cip/identity/device_type"), Value::UInt(14));
    assert_eq!(value(&first, "cip/identity/product_code"), Value::UInt(108));
    assert_eq!(value(&first, "cip/identity/revision"), Value::from("33.11"));
    assert_eq!(
        value(&first, "cip/identity/serial_number"),
        Value::from("60C0FFEE")
    );
    assert_eq!(
        value(&first, "cip/identity/product_name"),
        Value::from("1769-L33ER/A LOGIX5333ER")
    );
    // The setpoints, read by the type cpppo answers (it has no tag list).
    assert_eq!(value(&first, "cip/value/Oven_SP"), Value::F32(180.0));
    assert_eq!(value(&first, "cip/value/Line_Speed"), Value::Int(1200));
    assert_eq!(value(&first, "cip/value/Zones[2]"), Value::F32(184.0));
    assert!(unavailable(&first, "cip/value/Ghost").contains("no such tag"));
    // cpppo's deviations, as documented in docs/protocols/cip.md: no tag list (encapsulation
    // status 0x0008, then it closes the connection), its tag values where the project name
    // should be, a clock reply without its count.
    assert!(unavailable(&first, "cip/tags").contains("encapsulation status 0x00000008"));
    assert_eq!(
        unavailable(&first, "cip/controller/name"),
        "the device's answer for the program-name object (class 0x64) is not a Logix project name"
    );
    assert!(matches!(
        first.runtime.get("cip/wall_clock_us"),
        Some(Value::Unavailable(_))
    ));
    assert!(
        matches!(first.runtime.get("cip/connection"), Some(Value::Text(t)) if t.starts_with("Large Forward Open")),
        "the connected path: {:?}",
        first.runtime
    );
    // Stable: the same digest on the next poll, on the same connection.
    let second = c.capture().await.expect("second capture");
    assert_eq!(
        second.snapshot.digest(),
        first.snapshot.digest(),
        "{:?}",
        Diff::between(&first.snapshot, &second.snapshot)
    );
    assert_eq!(second.stats.connects, 0);
    c.close().await;

    // A tag cpppo refuses with "service not supported": without a tag list, only "path
    // unknown" is absence; this fails the capture.
    let locked = "\n  [[asset.setpoints]]\n  name = \"locked\"\n  tag = \"Locked\"\n";
    let mut c = cpppo_collector(server.addr, locked);
    let e = c.capture().await.expect_err("a refused read is no state");
    assert!(matches!(e.kind, ErrorKind::Refused(_)), "{e}");
    assert!(e.request.contains("Locked"), "{e}");
    c.close().await;
    drop(server);
}
