//! End to end over loopback: the `otdrift` binary against `otdrift sim ads` processes (a
//! simulated TwinCAT 3 bottle filler).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Sim, capture_json, run, write_agent_config, write_config};

/// The demo filler without its background tick: the test ticks explicitly.
fn start_sim(dir: &Path) -> Sim {
    let state = dir.join("filler.toml");
    let text = otdrift_simulators::ads::FILLER_DEMO_TOML.replace("tick_ms = 1000", "tick_ms = 0");
    assert!(text.contains("tick_ms = 0"));
    std::fs::write(&state, text).expect("write state");
    Sim::start("ads", Some(&state), dir)
}

fn config(dir: &Path, address: &str, timeout_ms: u64) -> PathBuf {
    write_agent_config(
        dir,
        &format!(
            r#"
[[asset]]
id = "filler-3"
protocol = "ads"
address = "{address}"
ams_net_id = "5.80.201.232.1.1"
timeout_ms = {timeout_ms}

  [[asset.setpoints]]
  name = "recipe"
  symbol = "GVL_Recipe.*"

  [[asset.setpoints]]
  name = "max speed"
  symbol = "GVL_Config.MaxSpeed"
"#,
        ),
    )
}

/// A small controller (a BC9191): no _AppInfo, no symbol upload, no sum-read, one REAL
/// setpoint at 480.0; and a config that watches it as `bc-1`.
fn start_bc9191(dir: &Path) -> (Sim, PathBuf) {
    let state = dir.join("bc.toml");
    std::fs::write(
        &state,
        r#"
ams_net_id = "5.80.201.232.1.1"
ams_port = 800
device_name = "BC9191"
version = "2.11.2300"
tick_ms = 0
[[symbol]]
name = "GVL_Recipe.FillVolume"
type = "REAL"
value = 480.0
[quirks]
no_upload = true
no_sum = true
"#,
    )
    .expect("state");
    let sim = Sim::start("ads", Some(&state), dir);
    let cfg = write_agent_config(
        dir,
        &format!(
            r#"
[[asset]]
id = "bc-1"
protocol = "ads"
address = "{addr}"
ams_net_id = "5.80.201.232.1.1"
ams_port = 800

  [[asset.setpoints]]
  name = "fill"
  symbol = "GVL_Recipe.FillVolume"
"#,
            addr = sim.addr
        ),
    );
    (sim, cfg)
}

/// Asserts no Write (3), WriteControl (5) or AddNotification (6) reached the PLC, and no
/// request the simulator flags as state-changing.
fn assert_read_only(sim: &Sim) {
    sim.assert_no_writes();
    let forbidden: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| matches!(r["service"].as_u64(), Some(3 | 5 | 6 | 7)))
        .collect();
    assert!(
        forbidden.is_empty(),
        "state-changing commands: {forbidden:?}"
    );
}

#[test]
fn baseline_runtime_setpoint_drift_online_change_and_put_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000);

    // First capture: the provisional baseline.
    let first = capture_json(&cfg, "filler-3", 0);
    assert_eq!(first["baseline"]["provisional"], true);
    assert_eq!(first["drift"], serde_json::Value::Null);
    for class in ["identity", "program", "setpoint"] {
        assert!(
            first["classes"][class]
                .as_str()
                .is_some_and(|d| d.starts_with("blake3:"))
        );
    }

    // Runtime symbols tick and the PLC goes to STOP and back: no drift.
    sim.cmd("tick 5");
    sim.cmd("state STOP");
    let ticked = capture_json(&cfg, "filler-3", 0);
    assert_eq!(ticked["digest"], first["digest"]);
    // RUN -> STOP is reported as a state change, not as drift.
    let changes = ticked["state_changes"].clone();
    assert!(
        changes.as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["key"] == "ads_state" && c["after"] == "STOP")),
        "{changes}"
    );
    sim.cmd("state RUN");

    // A recipe setpoint changes: drift naming the symbol, typed before and after.
    sim.cmd("set GVL_Recipe.FillVolume 520");
    let drifted = capture_json(&cfg, "filler-3", 3);
    assert_eq!(drifted["drift"]["severity"], "medium");
    assert_eq!(
        drifted["drift"]["changes"],
        json!([{
            "path": "ads/value/GVL_Recipe.FillVolume",
            "class": "setpoint",
            "kind": "changed",
            "before": 500.0,
            "after": 520.0,
            "setpoint": "recipe",
        }])
    );
    sim.cmd("set GVL_Recipe.FillVolume 500");
    let back = capture_json(&cfg, "filler-3", 0);
    assert_eq!(back["digest"], first["digest"]);

    // An online change adds a symbol: program drift naming it (the symbol version does not
    // move; _AppInfo's counters do).
    sim.cmd("online-change add GVL_Recipe.RinseTime TIME = 1500");
    let changed = capture_json(&cfg, "filler-3", 3);
    assert_eq!(changed["drift"]["severity"], "high");
    let changes = changed["drift"]["changes"].as_array().expect("changes");
    let find = |path: &str| changes.iter().find(|c| c["path"] == path).cloned();
    let added = find("ads/symbol/GVL_Recipe.RinseTime").expect("the added symbol is named");
    assert_eq!(added["kind"], "added");
    assert_eq!(added["class"], "program");
    assert_eq!(added["after"]["type"], "TIME");
    let counter = find("ads/app/online_change_count").expect("the online change counter");
    assert_eq!(
        (counter["before"].clone(), counter["after"].clone()),
        (json!(0), json!(1))
    );
    let value = find("ads/value/GVL_Recipe.RinseTime").expect("the new recipe value");
    assert_eq!(value["after"], 1500);
    assert_eq!(value["setpoint"], "recipe");

    // The approved project is downloaded again: resolved.
    sim.cmd("download");
    let put_back = capture_json(&cfg, "filler-3", 0);
    assert_eq!(put_back["digest"], first["digest"]);
    let all = run(&cfg, &["drift", "--json"]).json();
    let statuses: Vec<&str> = all["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == "resolved"),
        "{all}"
    );
    assert_eq!(
        run(&cfg, &["drift", "--open", "--json"]).json()["events"],
        json!([])
    );

    let verified = run(&cfg, &["audit-verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert_read_only(&sim);
}

#[test]
fn a_stalled_plc_fails_within_the_timeout_and_a_wrong_net_id_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 300);
    assert_eq!(run(&cfg, &["capture", "filler-3"]).code, 0);
    sim.cmd("quirk stall on");
    let started = Instant::now();
    let failed = run(&cfg, &["capture", "filler-3", "--json"]);
    let took = started.elapsed();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("filler-3"), "{failed:?}");
    assert!(failed.stderr.contains("within 300 ms"), "{failed:?}");
    assert_eq!(failed.json()["error"]["kind"], "unreachable");
    // A deadline check, not a performance measurement: the process must not hang.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    sim.cmd("quirk stall off");

    let wrong = dir.path().join("wrong");
    std::fs::create_dir_all(&wrong).expect("dir");
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("5.80.201.232.1.1", "5.80.201.99.1.1");
    let wrong_cfg = write_config(&wrong, &text);
    let refused = run(&wrong_cfg, &["capture", "filler-3"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("target machine not found"),
        "{refused:?}"
    );
    assert_read_only(&sim);
}

#[test]
fn a_plc_without_upload_or_app_info_is_captured_with_visible_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sim, cfg) = start_bc9191(dir.path());
    let first = capture_json(&cfg, "bc-1", 0);
    sim.cmd("set GVL_Recipe.FillVolume 490");
    let drifted = capture_json(&cfg, "bc-1", 3);
    assert_eq!(
        drifted["drift"]["changes"][0]["path"],
        "ads/value/GVL_Recipe.FillVolume"
    );
    assert_eq!(drifted["drift"]["changes"][0]["before"], 480.0);
    assert_eq!(drifted["drift"]["changes"][0]["after"], 490.0);
    assert_ne!(drifted["digest"], first["digest"]);
    assert_read_only(&sim);
}

/// Every way the simulator can answer that is not the PLC's state, end to end: the capture
/// fails with its reason (nothing stored, no drift, the failing collection in `status`), and
/// with the quirk off the next capture matches the baseline again.
#[test]
fn refusals_contradictions_malformed_tables_and_busy_fail_the_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000);
    let baseline = run(&cfg, &["capture", "filler-3", "--json"]);
    assert_eq!(baseline.code, 0, "{baseline:?}");
    let digest = baseline.json()["digest"].clone();
    // (quirk on, quirk off, reason, what the request names)
    let cases = [
        (
            "quirk refuse-all on",
            "quirk refuse-all off",
            "refused",
            "ReadDeviceInfo",
        ),
        (
            "quirk refuse-all on 0x710",
            "quirk refuse-all off",
            "refused",
            "ReadDeviceInfo",
        ),
        ("quirk busy on", "quirk busy off", "busy", "ReadDeviceInfo"),
        (
            "quirk no-device-info on",
            "quirk no-device-info off",
            "refused",
            "ReadDeviceInfo",
        ),
        (
            "quirk no-read-state on",
            "quirk no-read-state off",
            "refused",
            "ReadState",
        ),
        (
            "quirk refuse-symbol on GVL_Recipe.FillVolume",
            "quirk refuse-symbol off",
            "refused",
            "GVL_Recipe.FillVolume",
        ),
        (
            "quirk refuse-symbol on GVL_Config.MaxSpeed 0x708",
            "quirk refuse-symbol off",
            "busy",
            "GVL_Config.MaxSpeed",
        ),
        (
            "quirk refuse-symbol on TwinCAT_SystemInfoVarList._AppInfo",
            "quirk refuse-symbol off",
            "refused",
            "_AppInfo",
        ),
        (
            "quirk no-table-upload on",
            "quirk no-table-upload off",
            "refused",
            "0xF00B",
        ),
        (
            "quirk upload-info-mismatch on",
            "quirk upload-info-mismatch off",
            "malformed",
            "0xF00B",
        ),
        (
            "quirk self-referencing-type on",
            "quirk self-referencing-type off",
            "malformed",
            "0xF00E",
        ),
        (
            "quirk bad-symbol-entry on",
            "quirk bad-symbol-entry off",
            "malformed",
            "0xF00B",
        ),
    ];
    for (on, off, reason, request) in cases {
        sim.cmd(on);
        let error = support::assert_collection_fails(&cfg, "filler-3", reason);
        assert!(
            error["request"]
                .as_str()
                .is_some_and(|r| r.contains(request)),
            "{on}: {error}"
        );
        sim.cmd(off);
        let healthy = run(&cfg, &["capture", "filler-3", "--json"]);
        assert_eq!(healthy.code, 0, "{off}: {healthy:?}");
        assert_eq!(healthy.json()["digest"], digest, "{off}");
    }
    // The contradiction names the symbol and the device's own words.
    sim.cmd("quirk refuse-symbol on GVL_Recipe.FillVolume");
    let error = support::assert_collection_fails(&cfg, "filler-3", "refused");
    let detail = error["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("0x710")
            && detail.contains("symbol table (0xF00B) lists GVL_Recipe.FillVolume"),
        "{error}"
    );
    sim.cmd("quirk refuse-symbol off");

    // A sum-read that fails its sub-reads is read again alone: the same state, no failure.
    sim.cmd("quirk sum-read-sub-error on");
    let retried = capture_json(&cfg, "filler-3", 0);
    assert_eq!(retried["digest"], digest);
    sim.cmd("quirk sum-read-sub-error off");

    let drift = run(&cfg, &["drift", "--json"]).json();
    assert_eq!(drift["events"], json!([]), "no refusal ever became drift");
    assert_read_only(&sim);
}

/// A PLC that refuses everything from the start: its first capture fails, so no provisional
/// baseline of refusals is ever recorded; once it answers, the first good capture becomes the
/// baseline.
#[test]
fn a_first_capture_against_a_refusing_plc_fails_and_records_no_baseline() {
    for code in ["0x701", "0x710"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sim = start_sim(dir.path());
        let cfg = config(dir.path(), &sim.addr, 3000);
        sim.cmd(&format!("quirk refuse-all on {code}"));
        let error = support::assert_collection_fails(&cfg, "filler-3", "refused");
        assert!(
            error["detail"].as_str().is_some_and(|d| d.contains(code)),
            "{error}"
        );
        let status = run(&cfg, &["status", "--json"]).json();
        let row = status["assets"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == "filler-3").cloned())
            .expect("the asset in status");
        assert!(row["baseline"].is_null(), "no baseline of refusals: {row}");
        sim.cmd("quirk refuse-all off");
        let first = capture_json(&cfg, "filler-3", 0);
        assert_eq!(first["baseline"]["provisional"], true);
        assert_read_only(&sim);
    }
}

/// A small controller without a symbol upload: its by-name lookup (0xF009) is its directory.
/// When it stops finding a setpoint the baseline holds, the collector records the absence it
/// reports and the agent refuses to take it as state (it is not in the baseline); a lookup
/// refused for any other reason fails in the collector itself.
#[test]
fn a_controller_without_upload_losing_a_setpoint_fails_instead_of_drifting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sim, cfg) = start_bc9191(dir.path());
    let first = run(&cfg, &["capture", "bc-1", "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let digest = first.json()["digest"].clone();
    // 0x710: the device's directory says the symbol is gone; the agent holds that against
    // the baseline (the request is the item). 0x701: the lookup itself is refused.
    for (code, request) in [
        ("0x710", "ads/value/GVL_Recipe.FillVolume"),
        ("0x701", "ReadWrite 0xF009"),
    ] {
        sim.cmd(&format!(
            "quirk refuse-symbol on GVL_Recipe.FillVolume {code}"
        ));
        let error = support::assert_collection_fails(&cfg, "bc-1", "refused");
        assert!(
            error["request"]
                .as_str()
                .is_some_and(|r| r.contains(request)),
            "{code}: {error}"
        );
        sim.cmd("quirk refuse-symbol off");
        let back = capture_json(&cfg, "bc-1", 0);
        assert_eq!(back["digest"], digest);
    }
    assert_read_only(&sim);
}
