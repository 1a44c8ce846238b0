//! End to end over loopback: the `otdrift` binary against the Logix (CIP) simulator process.

mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use support::{Sim, run, write_config};

/// The embedded demo controller, without its once-a-second tick (tests tick on command).
fn state(dir: &Path, extra: &str) -> PathBuf {
    let text = otdrift_simulators::cip::OVEN_DEMO_TOML.replace("tick_ms = 1000", "tick_ms = 0");
    assert!(text.contains("tick_ms = 0"), "the demo state sets tick_ms");
    let path = dir.join("cip-state.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).expect("write state");
    path
}

fn config(dir: &Path, address: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[agent]
id = "gw-test"
data_dir = "{data}"

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
            data = dir.join("data").display()
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
    let first = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let first = first.json();
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
    let ticked = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(ticked.code, 0, "{ticked:?}");
    assert_eq!(ticked.json()["digest"], first["digest"]);

    // A setpoint changes: drift naming the tag, typed before and after.
    sim.cmd("set Oven_SP 185.5");
    let drifted = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(drifted.code, 3, "{drifted:?}");
    let drifted = drifted.json();
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
    let back = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(back.json()["digest"], first["digest"]);

    // A download: a new program tag, a new audit value: program drift, high severity.
    sim.cmd("add-tag Program:Oven.Fan_Speed REAL");
    let download = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(download.code, 3, "{download:?}");
    let download = download.json();
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
    let udt = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(udt.code, 3, "{udt:?}");
    let udt = udt.json();
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
    let resolved = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(resolved.code, 0, "{resolved:?}");
    assert_eq!(resolved.json()["digest"], first["digest"]);
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
    let drifted = run(&cfg, &["capture", "oven-3", "--json"]);
    assert_eq!(drifted.code, 3, "{drifted:?}");
    let drifted = drifted.json();
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
