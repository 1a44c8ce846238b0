//! End to end over loopback: the `otdrift` binary against the Modbus simulator process.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Run, Sim, capture_json, database, run, write_agent_config, write_config};

const STATE: &str = r#"
unit_id = 1
tick_ms = 0

[identity]
vendor_name = "otdrift test"
product_code = "E2E-1"
revision = "2.1"

[[holding]]
start = 0
count = 100
fill = 500

[[input]]
start = 0
values = [1, 2, 3, 4]
tick = "counter"

[[coil]]
start = 0
values = [true, false, true, true]
"#;

fn config(dir: &Path, address: &str, timeout_ms: u64) -> std::path::PathBuf {
    write_agent_config(
        dir,
        &format!(
            r#"
[[asset]]
id = "press-7"
protocol = "modbus"
address = "{address}"
timeout_ms = {timeout_ms}

  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 100

  [[asset.setpoints]]
  name = "interlocks"
  table = "coil"
  start = 0
  count = 4
"#,
        ),
    )
}

fn start_sim(dir: &Path) -> Sim {
    let state = dir.join("state.toml");
    std::fs::write(&state, STATE).expect("write state");
    Sim::start("modbus", Some(&state), dir)
}

#[test]
fn baseline_then_drift_then_resolution_with_an_intact_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000);

    // First capture: the provisional baseline.
    let first = capture_json(&cfg, "press-7", 0);
    assert_eq!(first["asset"], "press-7");
    assert_eq!(first["baseline"]["provisional"], true);
    assert_eq!(first["baseline"]["digest"], first["digest"]);
    assert_eq!(first["drift"], serde_json::Value::Null);
    assert!(
        first["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("blake3:"))
    );
    for class in ["identity", "program", "setpoint"] {
        assert!(
            first["classes"][class]
                .as_str()
                .is_some_and(|d| d.len() == 71)
        );
    }
    assert_eq!(first["item_count"], 100 + 4 + 4);

    // Process values tick: no drift.
    sim.cmd("tick");
    sim.cmd("tick");
    let ticked = capture_json(&cfg, "press-7", 0);
    assert_eq!(ticked["digest"], first["digest"]);

    // A holding register changes: drift, exit 3, the change named with before and after.
    sim.cmd("set holding 40 1300");
    let drifted = capture_json(&cfg, "press-7", 3);
    assert_eq!(drifted["drift"]["severity"], "medium");
    assert_eq!(
        drifted["drift"]["changes"],
        json!([{
            "path": "modbus/holding/40",
            "class": "setpoint",
            "kind": "changed",
            "before": 500,
            "after": 1300,
            "setpoint": "recipe",
        }])
    );
    assert_ne!(drifted["digest"], first["digest"]);

    // Seeing it again keeps one open event.
    let again = run(&cfg, &["capture", "press-7", "--json"]);
    assert_eq!(again.code, 3, "{again:?}");
    let open = run(&cfg, &["drift", "--open", "--json"]);
    assert_eq!(open.code, 0, "{open:?}");
    let open = open.json();
    assert_eq!(open["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(open["events"][0]["status"], "open");
    assert_eq!(open["events"][0]["baseline_digest"], first["digest"]);
    assert_eq!(open["events"][0]["observed_digest"], drifted["digest"]);

    let diff = run(&cfg, &["diff", "press-7", "--json"]);
    assert_eq!(diff.code, 0, "{diff:?}");
    assert_eq!(diff.json()["changes"][0]["path"], "modbus/holding/40");

    // Back to the baseline: resolved.
    sim.cmd("set holding 40 500");
    let back = capture_json(&cfg, "press-7", 0);
    assert_eq!(back["digest"], first["digest"]);
    let all = run(&cfg, &["drift", "--json"]).json();
    assert_eq!(all["events"][0]["status"], "resolved");
    assert_eq!(
        run(&cfg, &["drift", "--open", "--json"]).json()["events"],
        json!([])
    );

    let status = run(&cfg, &["status", "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["assets"][0]["id"], "press-7");
    assert_eq!(status["assets"][0]["reachable"], true);
    assert_eq!(status["assets"][0]["open_drift"], 0);
    assert_eq!(status["assets"][0]["baseline"]["provisional"], true);

    // The audit log verifies, and stops verifying once a row is edited behind its back.
    let verified = run(&cfg, &["audit-verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let db = rusqlite::Connection::open(database(&dir.path().join("data"))).expect("open db");
    db.execute(
        "UPDATE audit_log SET body = replace(body, '\"press-7\"', '\"press-9\"') WHERE seq = 3",
        [],
    )
    .expect("tamper");
    let broken = run(&cfg, &["audit-verify"]);
    assert_eq!(broken.code, 5, "{broken:?}");
    assert!(broken.stdout.contains("#3"), "{broken:?}");
    let broken_json = run(&cfg, &["audit-verify", "--json"]);
    assert_eq!(broken_json.code, 5, "{broken_json:?}");
    assert_eq!(broken_json.json()["first_break"]["seq"], 3);

    sim.assert_no_writes();
}

#[test]
fn a_technicians_before_and_after_captures_are_kept_with_the_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000);
    assert_eq!(run(&cfg, &["capture", "press-7"]).code, 0);

    let before = run(
        &cfg,
        &[
            "capture", "press-7", "--change", "CHG-1042", "--phase", "before", "--json",
        ],
    );
    assert_eq!(before.code, 0, "{before:?}");
    let before = before.json();
    assert_eq!(before["change_id"], "CHG-1042");
    assert_eq!(before["phase"], "before");

    sim.cmd("set holding 7 612");
    let after = run(
        &cfg,
        &[
            "capture", "press-7", "--change", "CHG-1042", "--phase", "after",
        ],
    );
    // The new state is not approved yet: it is drift, and the output names the signature an
    // approval token must carry.
    assert_eq!(after.code, 3, "{after:?}");
    assert!(after.stdout.contains("signature  blake3:"), "{after:?}");
    assert!(
        after.stdout.contains("after signature of change CHG-1042"),
        "{after:?}"
    );

    let usage = run(&cfg, &["capture", "press-7", "--change", "CHG-1"]);
    assert_eq!(usage.code, 2, "{usage:?}");
    sim.assert_no_writes();
}

#[test]
fn an_unreachable_device_fails_with_exit_1_naming_asset_and_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let cfg = config(dir.path(), &closed.to_string(), 500);
    let failed = run(&cfg, &["capture", "press-7"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("press-7"), "{failed:?}");
    assert!(failed.stderr.contains(&closed.to_string()), "{failed:?}");

    let drift = run(&cfg, &["drift", "--json"]).json();
    assert_eq!(drift["events"], json!([]));
    let status = run(&cfg, &["status", "--json"]).json();
    assert_eq!(status["assets"][0]["reachable"], false);
    assert_eq!(status["assets"][0]["baseline"], serde_json::Value::Null);
}

#[test]
fn a_device_that_stops_answering_fails_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 300);
    assert_eq!(run(&cfg, &["capture", "press-7"]).code, 0);
    sim.cmd("quirk stall on");
    let started = Instant::now();
    let failed = run(&cfg, &["capture", "press-7", "--json"]);
    let took = started.elapsed();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("press-7"), "{failed:?}");
    assert!(failed.stderr.contains("within 300 ms"), "{failed:?}");
    assert_eq!(failed.json()["error"]["kind"], "unreachable");
    // A deadline check, not a performance measurement: the process must not hang.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let drift = run(&cfg, &["drift", "--json"]).json();
    assert_eq!(drift["events"], json!([]));
    sim.assert_no_writes();
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        r#"[agent]
id = "gw"
data_dir = "/tmp/x"

[[asset]]
id = "press-7"
protocol = "modbus"
address = "127.0.0.1:502"
colour = "red"
"#,
    );
    let checked = run(&cfg, &["check-config"]);
    assert_eq!(checked.code, 2, "{checked:?}");
    assert!(checked.stdout.contains("otdrift.toml:9:"), "{checked:?}");
    assert!(checked.stdout.contains("colour"), "{checked:?}");
    let as_json = run(&cfg, &["check-config", "--json"]);
    assert_eq!(as_json.code, 2);
    let doc = as_json.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"][0]["line"], 9);

    // Any other command refuses to run on a broken config, with the same errors.
    let capture = run(&cfg, &["capture", "press-7"]);
    assert_eq!(capture.code, 2, "{capture:?}");
    assert!(capture.stderr.contains("colour"), "{capture:?}");

    let missing = run(&dir.path().join("nope.toml"), &["check-config"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stdout.contains("nope.toml"), "{missing:?}");
}

#[test]
fn the_demo_tells_the_whole_story() {
    let out = support::otdrift().arg("demo").output().expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "PROVISIONAL",
        "APPROVED",
        "DRIFT #1",
        "RESOLVED",
        "holds it as pending",
        "the pending approval applies",
        "(0 violations)",
        "hash chain intact",
        "0 of them writes",
        "Siemens S7",
        "s7/db1/fill_temp [recipe]  72.5 -> 75.0",
        "Beckhoff TwinCAT",
        "CompactLogix",
        "OPC UA server",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

/// The field-truth rule for Modbus: after a baseline, a device that refuses the configured
/// reads, answers "busy", or stops telling its identity fails the capture (exit 1, no
/// snapshot, no drift); once it behaves again the capture matches the baseline.
#[test]
fn refusals_are_failed_collections_never_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    let cfg = config(dir.path(), &sim.addr, 3000);
    let first = run(&cfg, &["capture", "press-7", "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let baseline = first.json()["digest"].clone();

    sim.cmd("quirk refuse-reads on");
    let error = support::assert_collection_fails(&cfg, "press-7", "refused");
    assert_eq!(error["request"], "read holding registers 0..100 (FC 3)");
    sim.cmd("quirk refuse-reads off");

    sim.cmd("quirk busy on");
    support::assert_collection_fails(&cfg, "press-7", "busy");
    sim.cmd("quirk busy off");

    // The baseline holds the identity; a device that now refuses FC 43 is refusing, not
    // changing state: the agent's baseline check turns the `not available` item into a
    // failed collection naming the item.
    sim.cmd("identity off");
    let error = support::assert_collection_fails(&cfg, "press-7", "refused");
    assert_eq!(error["request"], "modbus/identity");
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|d| d.contains("exception 0x01") && d.contains("approve signature")),
        "{error}"
    );
    sim.cmd("identity on");

    let again = capture_json(&cfg, "press-7", 0);
    assert_eq!(again["digest"], baseline);
    let status = run(&cfg, &["status", "--json"]);
    assert!(status.json()["assets"][0]["collection"].is_null());
    sim.assert_no_writes();
}

/// The whole-capture deadline holds for a one-shot capture too: a device that answers every
/// request in time (50 ms, under `timeout_ms`) but 100 of them take longer than
/// `capture_timeout_ms` ends with `bound`, not with a hang or "unreachable".
#[test]
fn a_one_shot_capture_keeps_the_capture_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start_sim(dir.path());
    sim.cmd("quirk slow on");
    let cfg = write_agent_config(
        dir.path(),
        &format!(
            r#"
[[asset]]
id = "press-7"
protocol = "modbus"
address = "{addr}"
timeout_ms = 3000
capture_timeout_ms = 500
max_registers = 1

  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 100
"#,
            addr = sim.addr,
        ),
    );
    let started = Instant::now();
    let failed = run(&cfg, &["capture", "press-7", "--json"]);
    let took = started.elapsed();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert_eq!(failed.json()["error"]["kind"], "bound", "{failed:?}");
    assert_eq!(failed.json()["error"]["request"], "the whole capture");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// Runs `otdrift --config CONFIG capture ASSET [ARGS]` under GNU time and returns the run with
/// the child's own peak resident set size in KiB (`/usr/bin/time -f %M`, the `ru_maxrss` of that
/// one child), or `None` when GNU time is not installed.
fn capture_with_peak_rss(config: &Path, asset: &str, args: &[&str]) -> Option<(Run, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("rss");
    let out = std::process::Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_otdrift"))
        .arg("--config")
        .arg(config)
        .args(["capture", asset])
        .args(args)
        .env_remove("OTDRIFT_CONFIG")
        .env("OTDRIFT_LOG", "warn")
        .output()
        .expect("/usr/bin/time runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let text = std::fs::read_to_string(&report).expect("GNU time wrote its report");
    let kib = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS in {text:?}"));
    Some((run, kib))
}

#[test]
fn capture_json_streams_its_items() {
    // 12,000 holding registers in one setpoint range: 12,000 items. `capture --json` writes them
    // one by one, so its peak RSS stays within 2 MiB of the same capture printed for humans.
    const ITEMS: usize = 12_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.toml");
    std::fs::write(
        &state,
        format!(
            "unit_id = 1\ntick_ms = 0\n\n[[holding]]\nstart = 0\ncount = {ITEMS}\nfill = 500\n"
        ),
    )
    .expect("write state");
    let sim = Sim::start("modbus", Some(&state), dir.path());
    let cfg = write_agent_config(
        dir.path(),
        &format!(
            r#"
[[asset]]
id = "press-7"
protocol = "modbus"
address = "{addr}"
timeout_ms = 5000
capture_timeout_ms = 120000
max_requests_per_sec = 10000

  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = {ITEMS}
"#,
            addr = sim.addr,
        ),
    );
    // The first capture sets the provisional baseline; the measured two match it.
    let first = capture_json(&cfg, "press-7", 0);
    let setpoints = |doc: &serde_json::Value| {
        doc["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["class"] == "setpoint")
            .count()
    };
    assert_eq!(setpoints(&first), ITEMS);

    let Some((plain, plain_kib)) = capture_with_peak_rss(&cfg, "press-7", &[]) else {
        support::peers::skip(
            "capture --json peak RSS",
            "/usr/bin/time (GNU time) is missing",
        );
        return;
    };
    assert_eq!(plain.code, 0, "{plain:?}");
    let (json, json_kib) =
        capture_with_peak_rss(&cfg, "press-7", &["--json"]).expect("GNU time is still there");
    assert_eq!(json.code, 0, "{json:?}");
    let doc = json.json();
    assert_eq!(setpoints(&doc), ITEMS);
    assert_eq!(
        doc["item_count"],
        json!(doc["items"].as_array().map(Vec::len))
    );
    assert_eq!(doc["items"], first["items"]);
    // Written as it always was: pretty-printed, keys in order, one trailing newline.
    let pretty = serde_json::to_string_pretty(&doc).expect("render");
    assert!(
        json.stdout == format!("{pretty}\n"),
        "the streamed document differs"
    );
    assert_eq!(doc["digest"], first["digest"]);
    eprintln!("peak RSS for {ITEMS} items: plain {plain_kib} KiB, --json {json_kib} KiB");
    assert!(
        json_kib <= plain_kib + 2048,
        "capture --json peaked at {json_kib} KiB, the plain capture at {plain_kib} KiB"
    );
    sim.assert_no_writes();
}
