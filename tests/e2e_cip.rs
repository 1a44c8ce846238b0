//! End to end over loopback: the `otdrift` binary against the Logix (CIP) simulator process.

mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use support::{Sim, capture_json, run, write_agent_config};

/// The embedded demo controller, without its once-a-second tick (tests tick on command).
fn state(dir: &Path, extra: &str) -> PathBuf {
    let text = otdrift_simulators::cip::OVEN_DEMO_TOML.replace("tick_ms = 1000", "tick_ms = 0");
    assert!(text.contains("tick_ms = 0"), "the demo state sets tick_ms");
    let path = dir.join("cip-state.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).expect("write state");
    path
}

fn config(dir: &Path, address: &str) -> PathBuf {
    write_agent_config(
        dir,
        &format!(
            r#"
[[asset]]
id = "oven-3"
protocol = "cip"
address = "{address}"
timeout_ms = 3000

  [[asset.setpoints]]
  name = "oven setpoint"
  tag = "Oven_SP"

  [[asset.setpoints]]
  name = "recipe"
  tag = "Recipe"

  [[asset.setpoints]]
  name = "zone temperatures"
  tag = "Program:Oven.Zone_Temp"
"#,
        ),
    )
}

fn start(dir: &Path, extra: &str) -> Sim {
    let state = state(dir, extra);
    Sim::start("cip", Some(&state), dir)
}

#[test]
fn baseline_ticks_setpoint_drift_download_drift_and_resolution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start(dir.path(), "");
    let cfg = config(dir.path(), &sim.addr);

    // First capture: the provisional baseline.
    let first = capture_json(&cfg, "oven-3", 0);
    assert_eq!(first["asset"], "oven-3");
    assert_eq!(first["baseline"]["provisional"], true);
    assert_eq!(first["drift"], serde_json::Value::Null);
    for class in ["identity", "program", "setpoint"] {
        assert!(
            first["classes"][class]
                .as_str()
                .is_some_and(|d| d.starts_with("blake3:")),
            "{class}: {first}"
        );
    }

    // Process values tick: no drift.
    sim.cmd("tick 5");
    let ticked = capture_json(&cfg, "oven-3", 0);
    assert_eq!(ticked["digest"], first["digest"]);

    // A setpoint changes: drift naming the tag, typed before and after.
    sim.cmd("set Oven_SP 185.5");
    let drifted = capture_json(&cfg, "oven-3", 3);
    assert_eq!(drifted["drift"]["severity"], "medium");
    assert_eq!(
        drifted["drift"]["changes"],
        json!([{
            "path": "cip/value/Oven_SP",
            "class": "setpoint",
            "kind": "changed",
            "before": 180.0,
            "after": 185.5,
            "setpoint": "oven setpoint",
        }])
    );

    // Back to the baseline: resolved.
    sim.cmd("set Oven_SP 180");
    let back = capture_json(&cfg, "oven-3", 0);
    assert_eq!(back["digest"], first["digest"]);

    // A download: a new program tag, a new audit value: program drift, high severity.
    sim.cmd("add-tag Program:Oven.Fan_Speed REAL");
    let download = capture_json(&cfg, "oven-3", 3);
    assert_eq!(download["drift"]["severity"], "high");
    let changes = download["drift"]["changes"].as_array().expect("changes");
    let find = |path: &str| changes.iter().find(|c| c["path"] == path).cloned();
    let added = find("cip/tag/Program:Oven.Fan_Speed").expect("the new tag is named");
    assert_eq!(added["kind"], "added");
    assert_eq!(added["class"], "program");
    assert_eq!(added["after"], json!({"type": "REAL"}));
    let audit = find("cip/controller/audit_value").expect("the audit value changed");
    assert_eq!(audit["kind"], "changed");
    assert!(
        audit["before"]
            .as_str()
            .is_some_and(|v| v.starts_with("16#"))
    );

    // A UDT member added (another download) is a template change.
    sim.cmd("add-member Recipe_t Hold_Time DINT");
    let udt = capture_json(&cfg, "oven-3", 3);
    let paths: Vec<&str> = udt["drift"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"cip/template/Recipe_t/Hold_Time"),
        "{paths:?}"
    );
    assert!(paths.contains(&"cip/value/Recipe"), "{paths:?}");

    // Put back: resolved, one drift event in the history.
    sim.cmd("remove-member Recipe_t Hold_Time");
    sim.cmd("remove-tag Program:Oven.Fan_Speed");
    let resolved = capture_json(&cfg, "oven-3", 0);
    assert_eq!(resolved["digest"], first["digest"]);
    let events = run(&cfg, &["drift", "--json"]).json();
    let events = events["events"].as_array().expect("events").clone();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["status"] == "resolved"),
        "{events:?}"
    );
    assert_eq!(
        run(&cfg, &["drift", "--open", "--json"]).json()["events"],
        json!([])
    );

    sim.assert_no_writes();
}

#[test]
fn without_change_detection_the_gap_is_visible_and_a_download_still_drifts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start(dir.path(), "[quirks]\nno-audit = true\n");
    let cfg = config(dir.path(), &sim.addr);
    let first = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let diff_before = first.json();

    sim.cmd("add-tag Spare_Counter DINT");
    let drifted = capture_json(&cfg, "oven-3", 3);
    assert_eq!(drifted["drift"]["severity"], "high");
    assert_eq!(
        drifted["drift"]["changes"],
        json!([{
            "path": "cip/tag/Spare_Counter",
            "class": "program",
            "kind": "added",
            "before": null,
            "after": {"type": "DINT"},
        }])
    );
    assert_ne!(drifted["digest"], diff_before["digest"]);

    let diff = run(&cfg, &["diff", "oven-3", "--json"]);
    assert_eq!(diff.code, 0, "{diff:?}");
    sim.assert_no_writes();
}

#[test]
fn the_request_log_shows_only_read_browse_and_connection_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start(dir.path(), "");
    let cfg = config(dir.path(), &sim.addr);
    assert_eq!(run(&cfg, &["capture", "oven-3"]).code, 0);
    assert_eq!(run(&cfg, &["capture", "oven-3"]).code, 0);
    let requests = sim.requests();
    for r in &requests {
        let service = r["service"].as_u64().expect("service");
        let name = r["name"].as_str().unwrap_or("");
        let allowed = matches!(
            name,
            "register_session"
                | "unregister_session"
                | "send_rr_data"
                | "send_unit_data"
                | "get_attributes_all"
                | "get_attribute_list"
                | "multiple_service_packet"
                | "get_instance_attribute_list"
                | "read_template"
                | "read_tag"
                | "read_tag_fragmented"
                | "forward_open"
                | "large_forward_open"
                | "forward_close"
        );
        assert!(allowed, "unexpected service 0x{service:x} {name}: {r}");
        assert!(
            ![0x4D, 0x53, 0x02, 0x04, 0x10, 0x05, 0x06, 0x07].contains(&service),
            "{r}"
        );
    }
    assert!(requests.iter().any(|r| r["name"] == "large_forward_open"));
    assert!(
        requests.iter().any(|r| r["name"] == "forward_close"),
        "the connection is closed"
    );
    sim.assert_no_writes();
}

#[test]
fn an_unreachable_controller_is_exit_1_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = support::free_port();
    let cfg = config(dir.path(), &format!("127.0.0.1:{port}"));
    let failed = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("oven-3"), "{failed:?}");
    let status = run(&cfg, &["status", "--json"]).json();
    assert_eq!(status["assets"][0]["reachable"], false);
}

/// The capture's digest, from `otdrift capture --json` that must exit 0.
fn healthy_digest(cfg: &Path) -> serde_json::Value {
    let capture = run(cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(capture.code, 0, "{capture:?}");
    capture.json()["digest"].clone()
}

#[test]
fn each_refusal_fails_the_collection_and_the_healthy_capture_matches_the_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start(dir.path(), "");
    let cfg = config(dir.path(), &sim.addr);
    let baseline = healthy_digest(&cfg);

    // (switch on, switch off, failure reason, what the failing request names)
    let cases = [
        (
            "quirk refuse-all on 0x04",
            "quirk refuse-all off",
            "refused",
            Some("Identity"),
        ),
        (
            "quirk refuse-all on 0x05",
            "quirk refuse-all off",
            "refused",
            Some("Identity"),
        ),
        (
            "quirk refuse-all on 0x08",
            "quirk refuse-all off",
            "refused",
            Some("Identity"),
        ),
        (
            "quirk busy on",
            "quirk busy off",
            "busy",
            Some("Multiple Service Packet"),
        ),
        // A tag the tag list lists, refused: a contradiction, not an absence.
        (
            "quirk refuse-tag on Oven_SP",
            "quirk refuse-tag off",
            "refused",
            Some("Oven_SP"),
        ),
        (
            "quirk refuse-tag on Recipe 0x08",
            "quirk refuse-tag off",
            "refused",
            Some("Recipe"),
        ),
        (
            "quirk refuse-template on",
            "quirk refuse-template off",
            "refused",
            Some("Template"),
        ),
        (
            "quirk placeholder-identity on",
            "quirk placeholder-identity off",
            "refused",
            Some("Identity"),
        ),
        // A stable capability the collector records as not available, but the baseline has
        // the project name: the agent's baseline check refuses it.
        (
            "quirk no-program-name on",
            "quirk no-program-name off",
            "refused",
            None,
        ),
    ];
    for (on, off, reason, request) in cases {
        sim.cmd(on);
        let error = support::assert_collection_fails(&cfg, "oven-3", reason);
        if let Some(request) = request {
            assert!(
                error["request"]
                    .as_str()
                    .is_some_and(|r| r.contains(request)),
                "{on}: {error}"
            );
        }
        sim.cmd(off);
        assert_eq!(healthy_digest(&cfg), baseline, "{on}: healthy again");
    }

    // Honest retries and runtime-only gaps: the same state, exit 0.
    for quirk in ["broken-msp", "foreign-connection-id", "garbled-clock"] {
        sim.cmd(&format!("quirk {quirk} on"));
        assert_eq!(healthy_digest(&cfg), baseline, "{quirk}");
        sim.cmd(&format!("quirk {quirk} off"));
    }
    let events = run(&cfg, &["drift", "--json"]).json();
    assert_eq!(events["events"], json!([]), "no refusal ever became drift");
    sim.assert_no_writes();
}

#[test]
fn the_first_capture_of_a_controller_that_refuses_everything_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = start(dir.path(), "[quirks]\nrefuse-all = 5\n");
    let cfg = config(dir.path(), &sim.addr);
    let error = support::assert_collection_fails(&cfg, "oven-3", "refused");
    assert!(
        error["detail"].as_str().is_some_and(|d| d.contains("0x05")),
        "{error}"
    );
    let status = run(&cfg, &["status", "--json"]).json();
    assert_eq!(
        status["assets"][0]["baseline"],
        serde_json::Value::Null,
        "no provisional baseline of refusals: {status}"
    );
    sim.cmd("quirk refuse-all off");
    let first = capture_json(&cfg, "oven-3", 0);
    assert_eq!(first["baseline"]["provisional"], true);
    sim.assert_no_writes();
}

/// A cpppo tag set (see `tests/peers/cip_server.py`) with `Oven_SP` at `oven_sp`.
fn cpppo_tags(dir: &Path, oven_sp: f64) -> PathBuf {
    let path = dir.join("cpppo-tags.json");
    let tags = json!({
        "Oven_SP": {"type": "REAL", "value": oven_sp},
        "Line_Speed": {"type": "DINT", "value": 1200},
        "identity": {"vendor": 1, "device_type": 14, "product_code": 108,
                     "revision": "33.11", "serial": 1623261166,
                     "product_name": "1769-L33ER/A LOGIX5333ER"},
    });
    std::fs::write(&path, tags.to_string()).expect("write tags");
    path
}

fn cpppo_config(dir: &Path, address: &str) -> PathBuf {
    write_agent_config(
        dir,
        &format!(
            r#"
[[asset]]
id = "oven-3"
protocol = "cip"
address = "{address}"
timeout_ms = 5000

  [[asset.setpoints]]
  name = "oven setpoint"
  tag = "Oven_SP"

  [[asset.setpoints]]
  name = "line speed"
  tag = "Line_Speed"
"#,
        ),
    )
}

/// cpppo serving `tags` on `port` (0: any free one); `None` when it cannot run here.
fn cpppo(tags: &Path, port: u16) -> Option<support::peers::PeerServer> {
    let tags = tags.to_string_lossy().into_owned();
    let port = port.to_string();
    support::peers::PeerServer::start(
        "cip cpppo server (end to end)",
        &["cpppo"],
        "cip_server.py",
        &["--tags", &tags, "--port", &port],
    )
}

#[test]
fn cpppo_is_captured_by_the_binary_and_a_changed_value_drifts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = cpppo(&cpppo_tags(dir.path(), 180.0), 0) else {
        return;
    };
    let port = server.addr.port();
    let cfg = cpppo_config(dir.path(), &server.addr.to_string());
    let first = capture_json(&cfg, "oven-3", 0);
    assert_eq!(first["baseline"]["provisional"], true);
    let again = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        again.json()["digest"],
        first["digest"],
        "the same signature"
    );

    // cpppo cannot be written (and otdrift never writes): restart it with another value.
    drop(server);
    let Some(server) = cpppo(&cpppo_tags(dir.path(), 185.5), port) else {
        return;
    };
    let drifted = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(drifted.code, 3, "{drifted:?}");
    assert_eq!(
        drifted.json()["drift"]["changes"],
        json!([{
            "path": "cip/value/Oven_SP",
            "class": "setpoint",
            "kind": "changed",
            "before": 180.0,
            "after": 185.5,
            "setpoint": "oven setpoint",
        }])
    );
    drop(server);
}
