//! End to end over loopback: the `otdrift` binary against `otdrift sim s7` processes (snap7's
//! server behind the simulator's front).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Sim, run, write_agent_config};

/// A small S7-315 with a recipe DB, a ticking process DB, a limits DB and a few blocks; no
/// tick task (the tests tick by command).
const STATE: &str = r#"
rack = 0
slot = 2
tick_ms = 0

[identity]
order_number = "6ES7 315-2EH14-0AB0"
firmware = "V3.2.6"
serial_number = "S C-E2E000001"
plant_id = "e2e rig"

[[db]]
number = 1
size = 64
values = [0x01, 0xF4, 0x00, 0x78, 0x42, 0x91, 0x00, 0x00]
name = "RECIPE"

[[db]]
number = 2
size = 32
tick = "counter"
name = "PROCESS"

[[db]]
number = 3
size = 16
name = "LIMITS"

[[block]]
type = "OB"
number = 1
size = 200

[[block]]
type = "FB"
number = 1
size = 300
name = "FILLCTRL"

[[block]]
type = "FC"
number = 1
size = 100
"#;

fn config(dir: &Path, address: &str, timeout_ms: u64, extra: &str) -> PathBuf {
    write_agent_config(
        dir,
        &format!(
            r#"
[[asset]]
id = "filler-3"
protocol = "s7"
address = "{address}"
timeout_ms = {timeout_ms}
rack = 0
slot = 2
{extra}

  [[asset.setpoints]]
  name = "recipe"
  db = 1
  start = 0
  size = 16
"#,
        ),
    )
}

fn start_sim(dir: &Path) -> Sim {
    let state = dir.join("state.toml");
    std::fs::write(&state, STATE).expect("write state");
    Sim::start("s7", Some(&state), dir)
}

fn capture(cfg: &Path) -> (i32, serde_json::Value) {
    let out = run(cfg, &["capture", "filler-3", "--json"]);
    assert!(matches!(out.code, 0 | 3), "{out:?}");
    (out.code, out.json())
}

/// Only reads, SZL reads, block list/info, uploads, the clock and the session set-up
/// reached the simulator.
fn assert_only_reads(sim: &Sim) {
    for request in sim.requests() {
        let name = request["name"].as_str().unwrap_or_default();
        assert!(
            matches!(
                name,
                "cotp_connect"
                    | "setup_communication"
                    | "read_var"
                    | "read_szl"
                    | "list_blocks"
                    | "list_blocks_of_type"
                    | "block_info"
                    | "start_upload"
                    | "upload"
                    | "end_upload"
            ),
            "unexpected request {request}"
        );
    }
    sim.assert_no_writes();
}

#[test]
fn baseline_ticks_setpoint_and_program_drift_and_resolution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000, "");

    // Baseline: provisional, with identity, program and setpoint items.
    let (code, first) = capture(&cfg);
    assert_eq!(code, 0);
    assert_eq!(first["baseline"]["provisional"], true);
    assert_eq!(first["drift"], serde_json::Value::Null);
    assert_eq!(first["runtime"]["s7/cpu_mode"], "RUN");
    let items = first["items"].as_array().cloned().unwrap_or_default();
    let has = |path: &str| items.iter().any(|i| i["path"] == path);
    assert!(has("s7/identity/module/order_number"), "{items:?}");
    assert!(has("s7/block/FB1/checksum"));
    assert!(has("s7/block/DB2/checksum"));
    assert!(has("s7/db1/15") && !has("s7/db1/16"));

    // The process DB ticks and the CPU goes to STOP: no drift (runtime only).
    sim.cmd("tick 5");
    sim.cmd("mode stop");
    let (code, ticked) = capture(&cfg);
    assert_eq!(code, 0, "{ticked}");
    assert_eq!(ticked["digest"], first["digest"]);
    assert_eq!(ticked["runtime"]["s7/cpu_mode"], "STOP");
    // The mode change is reported as its own field (and event), not as drift.
    assert_eq!(
        ticked["state_changes"],
        serde_json::json!([{"key": "s7/cpu_mode", "before": "RUN", "after": "STOP"}])
    );
    assert_eq!(ticked["drift"], serde_json::Value::Null);
    sim.cmd("mode run");

    // A recipe byte changes (the REAL at 4 goes 72.5 -> 75.0): setpoint drift, named.
    sim.cmd("set db1 5 0x96");
    let (code, drifted) = capture(&cfg);
    assert_eq!(code, 3, "{drifted}");
    assert_eq!(drifted["drift"]["severity"], "medium");
    assert_eq!(
        drifted["drift"]["changes"],
        json!([{
            "path": "s7/db1/5",
            "class": "setpoint",
            "kind": "changed",
            "before": 145,
            "after": 150,
            "setpoint": "recipe",
        }])
    );
    // Put back: resolved.
    sim.cmd("set db1 5 0x91");
    let (code, back) = capture(&cfg);
    assert_eq!(code, 0, "{back}");
    assert_eq!(back["digest"], first["digest"]);
    assert_eq!(
        run(&cfg, &["drift", "--json"]).json()["events"][0]["status"],
        "resolved"
    );

    // A DB is added: program drift, high severity.
    sim.cmd("db add 20 64");
    let (code, added) = capture(&cfg);
    assert_eq!(code, 3, "{added}");
    assert_eq!(added["drift"]["severity"], "high");
    let changes = added["drift"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        changes.iter().all(|c| c["class"] == "program"),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "s7/block/DB20/checksum" && c["kind"] == "added"),
        "{changes:?}"
    );
    sim.cmd("db delete 20");
    let (code, _) = capture(&cfg);
    assert_eq!(code, 0);

    // A DB is resized: program drift naming its sizes and checksum; put back, resolved.
    sim.cmd("db resize 3 32");
    let (code, resized) = capture(&cfg);
    assert_eq!(code, 3, "{resized}");
    let changes = resized["drift"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "s7/block/DB3/mc7_size" && c["before"] == 16 && c["after"] == 32),
        "{changes:?}"
    );
    assert!(changes.iter().any(|c| c["path"] == "s7/block/DB3/checksum"));
    sim.cmd("db resize 3 16");
    let (code, restored) = capture(&cfg);
    assert_eq!(code, 0, "{restored}");
    assert_eq!(restored["digest"], first["digest"]);
    let events = run(&cfg, &["drift", "--json"]).json();
    assert!(
        events["events"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["status"] == "resolved")),
        "{events}"
    );

    assert_only_reads(&sim);
}

#[test]
fn uploaded_block_contents_drift_when_a_block_is_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000, "upload_blocks = true");
    let (code, first) = capture(&cfg);
    assert_eq!(code, 0, "{first}");
    sim.cmd("block change FB1");
    let (code, changed) = capture(&cfg);
    assert_eq!(code, 3, "{changed}");
    let changes = changed["drift"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        changes.iter().any(|c| c["path"] == "s7/block/FB1/code"),
        "{changes:?}"
    );
    let uploads = sim
        .requests()
        .iter()
        .filter(|r| r["name"] == "start_upload")
        .count();
    // Each `otdrift capture` is a new process with an empty upload cache: both uploaded the
    // three code blocks (the daemon keeps its collector and uploads only changed blocks; the
    // protocol tests show that).
    assert_eq!(uploads, 3 + 3);
    assert_only_reads(&sim);
}

#[test]
fn a_cpu_that_stops_answering_fails_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 300, "");
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
    assert_eq!(run(&cfg, &["capture", "filler-3"]).code, 0);
    assert_only_reads(&sim);
}

#[test]
fn an_s7_1500_without_block_functions_is_captured_with_a_visible_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    sim.cmd("quirk refuse-blocks on");
    let cfg = config(dir.path(), &sim.addr, 3000, "");
    let (code, first) = capture(&cfg);
    assert_eq!(code, 0, "{first}");
    let items = first["items"].as_array().cloned().unwrap_or_default();
    let blocks = items
        .iter()
        .find(|i| i["path"] == "s7/blocks")
        .expect("a not-available item for the block functions");
    assert!(blocks.to_string().contains("0x8104"), "{blocks}");
    let (code, again) = capture(&cfg);
    assert_eq!(code, 0);
    assert_eq!(again["digest"], first["digest"]);
    assert_only_reads(&sim);
}

/// The field-truth rule end to end: for each way a CPU can refuse what it must answer,
/// contradict its own block directory, answer something that does not add up or say it is
/// busy, `otdrift capture` fails (exit 1, the reason, the request), stores nothing as state
/// (baseline and drift untouched) and `status` shows the failing collection; with the quirk
/// off the next capture exits 0 and matches the baseline.
#[test]
fn refusals_contradictions_malformed_and_busy_answers_fail_the_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000, "");
    let (code, baseline) = capture(&cfg);
    assert_eq!(code, 0, "{baseline}");
    for (quirk, reason, request, detail) in [
        ("put-get-off", "refused", "read var DB1.DBB0..16", "0x8104"),
        (
            "refuse-db-read",
            "refused",
            "read var DB1.DBB0..16",
            "item return code 0x0A",
        ),
        (
            "refuse-db-range",
            "refused",
            "read var DB1.DBB0..16",
            "item return code 0x05",
        ),
        (
            "deny-db-read",
            "refused",
            "read var DB1.DBB0..16",
            "item return code 0x03",
        ),
        (
            "refuse-identity",
            "refused",
            "read SZL 0x0011 index 0x0000",
            "0xD401",
        ),
        (
            "refuse-block-list",
            "refused",
            "list blocks of type OB",
            "counts 1 OB blocks",
        ),
        (
            "refuse-block-info",
            "refused",
            "block info OB1",
            "still lists OB1",
        ),
        (
            "szl-overclaim",
            "malformed",
            "read SZL 0x0011 index 0x0000",
            "claims 4 records",
        ),
        (
            "szl-no-header",
            "malformed",
            "read SZL 0x0011 index 0x0000",
            "SZL header",
        ),
        (
            "szl-placeholder",
            "malformed",
            "read SZL 0x001C index 0x0000",
            "SZL 0x0011",
        ),
        (
            "blockinfo-placeholder",
            "malformed",
            "block info OB1",
            "describes block number 0",
        ),
        ("busy", "busy", "read SZL 0x0011 index 0x0000", "0x8302"),
        ("congested", "busy", "ISO connection request", "reason 0x81"),
        // A stable capability the baseline does not agree with: the CPU stops offering
        // SZL 0x0232 (say, after a firmware change). The collector records the gap; the
        // agent refuses it against the baseline's protection level.
        (
            "no-protection-szl",
            "refused",
            "",
            "s7/identity/protection_level",
        ),
    ] {
        sim.cmd(&format!("quirk {quirk} on"));
        let error = support::assert_collection_fails(&cfg, "filler-3", reason);
        assert!(
            error["request"]
                .as_str()
                .is_some_and(|r| r.starts_with(request)),
            "{quirk}: {error}"
        );
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(detail)),
            "{quirk}: {error}"
        );
        sim.cmd(&format!("quirk {quirk} off"));
        let (code, again) = capture(&cfg);
        assert_eq!(code, 0, "{quirk} off: {again}");
        assert_eq!(again["digest"], baseline["digest"], "{quirk} off");
    }
    assert_only_reads(&sim);
}
