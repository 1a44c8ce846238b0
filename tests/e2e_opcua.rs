//! End to end over loopback: the `otdrift` binary against the OPC UA simulator process
//! (`otdrift sim opcua`).

mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use support::{Sim, run, write_agent_config};

const PLC: &str = "urn:otdrift:sim:mixer-m2:program";

/// The demo mixer without its clock (runtime values move only on `tick`), plus `extra`
/// top-level keys.
fn state(dir: &Path, extra: &str) -> PathBuf {
    let text = otdrift_simulators::opcua::MIXER_DEMO_TOML
        .replace("tick_ms = 1000", &format!("tick_ms = 0\n{extra}"));
    let path = dir.join("mixer.toml");
    std::fs::write(&path, text).expect("write state");
    path
}

/// An asset id of its own per test run: until the agent hands the collector its data
/// directory, the agent's OPC UA certificate and pins live in a temp folder named after the
/// asset, and two tests (or two runs) must not share pins.
fn asset_id(dir: &Path) -> String {
    let suffix: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("mixer-{suffix}")
}

/// Removes the collector's default PKI folder of `asset` (the temp folder above).
struct PkiCleanup(String);

impl Drop for PkiCleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("otdrift-opcua-pki-{}", self.0)),
        );
    }
}

fn config(dir: &Path, asset: &str, addr: &str, extra: &str) -> PathBuf {
    write_agent_config(
        dir,
        &format!(
            r#"
[[asset]]
id = "{asset}"
protocol = "opcua"
address = "opc.tcp://{addr}/"
timeout_ms = 5000
{extra}

  [[asset.setpoints]]
  name = "recipe"
  node = "ns=2;s=Mixer.Setpoints"
"#,
        ),
    )
}

fn assert_no_state_changing_service(sim: &Sim) {
    sim.assert_no_writes();
    for request in sim.requests() {
        let name = request["name"].as_str().unwrap_or_default();
        assert!(
            !matches!(
                name,
                "write"
                    | "call"
                    | "add_nodes"
                    | "delete_nodes"
                    | "add_references"
                    | "delete_references"
                    | "history_update"
            ),
            "{request}"
        );
    }
}

/// Baseline; ticking runtime → no drift; a setpoint changed → typed drift naming the node; a
/// node added → program drift; put back → resolved.
fn drift_story(extra: &str, dir: &Path) {
    let asset = asset_id(dir);
    let _cleanup = PkiCleanup(asset.clone());
    let mut sim = Sim::start("opcua", Some(&state(dir, "")), dir);
    let cfg = config(dir, &asset, &sim.addr, extra);

    let first = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let first = first.json();
    assert_eq!(first["baseline"]["provisional"], true);
    assert_eq!(first["drift"], serde_json::Value::Null);

    sim.cmd("tick");
    sim.cmd("tick 5");
    let ticked = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(ticked.code, 0, "{ticked:?}");
    assert_eq!(ticked.json()["digest"], first["digest"]);

    sim.cmd("set Mixer.Setpoints.MixSpeed 75.0");
    let drifted = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(drifted.code, 3, "{drifted:?}");
    let drifted = drifted.json();
    assert_eq!(drifted["drift"]["severity"], "medium");
    assert_eq!(
        drifted["drift"]["changes"],
        json!([{
            "path": format!("opcua/value/nsu={PLC};s=Mixer.Setpoints.MixSpeed"),
            "class": "setpoint",
            "kind": "changed",
            "before": 72.5,
            "after": 75.0,
            "setpoint": "recipe",
        }])
    );

    sim.cmd("set Mixer.Setpoints.MixSpeed 72.5");
    let back = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(back.json()["digest"], first["digest"]);

    sim.cmd("add variable Mixer.Setpoints.Viscosity UInt16 12");
    let grown = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(grown.code, 3, "{grown:?}");
    let grown = grown.json();
    assert_eq!(grown["drift"]["severity"], "high");
    let changes = grown["drift"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let node = format!("nsu={PLC};s=Mixer.Setpoints.Viscosity");
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == format!("opcua/node/{node}/data_type")
                && c["class"] == "program"
                && c["kind"] == "added"
                && c["after"] == "UInt16"),
        "{changes:#?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == format!("opcua/value/{node}")
                && c["class"] == "setpoint"
                && c["after"] == 12),
        "{changes:#?}"
    );
    assert!(changes.iter().all(|c| c["kind"] == "added"), "{changes:#?}");

    sim.cmd("remove Mixer.Setpoints.Viscosity");
    let restored = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(restored.json()["digest"], first["digest"]);
    let events = run(&cfg, &["drift", "--json"]).json();
    assert!(
        events["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["status"] == "resolved")),
        "{events}"
    );
    assert_eq!(run(&cfg, &["audit-verify"]).code, 0);
    assert_no_state_changing_service(&sim);
}

#[test]
fn baseline_drift_structure_change_and_resolution() {
    let dir = tempfile::tempdir().expect("tempdir");
    drift_story("", dir.path());
}

#[test]
fn the_same_with_sign_and_encrypt_and_a_user_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("opcua.password");
    std::fs::write(&password, "otdrift-demo\n").expect("write password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    drift_story(
        &format!(
            "security = \"sign-and-encrypt\"\nsecurity_policy = \"Basic256Sha256\"\nusername = \"otdrift\"\npassword_file = \"{}\"",
            password.display()
        ),
        dir.path(),
    );
    // The simulator saw an encrypted session of that user.
    let log = std::fs::read_to_string(dir.path().join("opcua-requests.jsonl")).expect("log");
    assert!(log.contains("user=otdrift mode=SignAndEncrypt"), "{log}");
}

#[test]
fn a_changed_server_certificate_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let asset = asset_id(dir.path());
    let _cleanup = PkiCleanup(asset.clone());
    // A server that keeps its certificate across restarts: no false alarm.
    let kept = state(dir.path(), "pki_dir = \"sim-pki\"");
    let sim = Sim::start("opcua", Some(&kept), dir.path());
    let cfg = config(dir.path(), &asset, &sim.addr, "");
    let first = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let first = first.json();
    assert_no_state_changing_service(&sim);
    drop(sim);
    let sim = Sim::start("opcua", Some(&kept), dir.path());
    let cfg = config(dir.path(), &asset, &sim.addr, "");
    let same = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(same.code, 0, "{same:?}");
    assert_eq!(same.json()["digest"], first["digest"]);
    drop(sim);

    // A server whose certificate was swapped: identity drift, and a warning that names both.
    let sim = Sim::start("opcua", Some(&state(dir.path(), "")), dir.path());
    let cfg = config(dir.path(), &asset, &sim.addr, "");
    let swapped = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(swapped.code, 3, "{swapped:?}");
    let json = swapped.json();
    assert_eq!(json["drift"]["severity"], "high");
    let changes = json["drift"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["path"], "opcua/server/certificate_thumbprint");
    assert_eq!(changes[0]["class"], "identity");
    assert_ne!(changes[0]["before"], changes[0]["after"]);
    assert!(
        swapped
            .stderr
            .contains("different certificate than the pinned one"),
        "{swapped:?}"
    );
    // Still reported on the next capture: the new certificate was not silently trusted.
    let again = run(&cfg, &["capture", &asset]);
    assert_eq!(again.code, 3, "{again:?}");
    assert!(again.stderr.contains("pinned"), "{again:?}");
    assert_no_state_changing_service(&sim);
}

#[test]
fn an_unreachable_server_fails_with_exit_1_naming_the_asset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let asset = asset_id(dir.path());
    let _cleanup = PkiCleanup(asset.clone());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let cfg = config(dir.path(), &asset, &closed.to_string(), "");
    let failed = run(&cfg, &["capture", &asset]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains(&asset), "{failed:?}");
}

/// Peak resident memory (KiB) of `otdrift capture ASSET --json` under GNU time, with its exit
/// code; `None` where /usr/bin/time is missing (the bounds are then only checked for time).
fn capture_peak_rss(config: &Path, asset: &str) -> Option<(i32, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("no /usr/bin/time: peak memory of the capture not measured");
        return None;
    }
    let out = std::process::Command::new(time)
        .args(["-f", "peak-rss-kib %M"])
        .arg(env!("CARGO_BIN_EXE_otdrift"))
        .env_remove("OTDRIFT_CONFIG")
        .env("OTDRIFT_LOG", "warn")
        .arg("--config")
        .arg(config)
        .args(["capture", asset, "--json"])
        .output()
        .expect("otdrift runs under time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("GNU time printed no peak: {stderr}"));
    // time exits with the command's code.
    Some((out.status.code().unwrap_or(-1), kib))
}

/// The memory budget of one capture, whatever the server sends.
const PEAK_RSS_BUDGET_KIB: u64 = 256 * 1024;

/// Field truth end to end, quirk by quirk: a baseline; the quirk on → `otdrift capture` exits
/// 1 with the reason, the baseline and drift untouched, the failure in `status` (and, for the
/// bounds, under the memory budget); the quirk off → exit 0 at the baseline's digest.
#[test]
fn every_quirk_fails_the_capture_and_the_next_healthy_capture_matches_the_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let asset = asset_id(dir.path());
    let _cleanup = PkiCleanup(asset.clone());
    let mut sim = Sim::start("opcua", Some(&state(dir.path(), "")), dir.path());
    let cfg = config(dir.path(), &asset, &sim.addr, "capture_timeout_ms = 20000");
    let baseline = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(baseline.code, 0, "{baseline:?}");
    let digest = baseline.json()["digest"].clone();
    for (quirk, reason, request) in [
        ("bad-values", "refused", "Read of Value of"),
        ("uncertain-values", "refused", "Read of Value of"),
        ("no-buildinfo", "malformed", "BuildInfo"),
        ("endless-continuation", "bound", "BrowseNext of"),
        ("deep-nesting", "bound", "Browse of"),
        ("million-refs", "bound", "Mixer.Setpoints"),
        ("huge-string", "bound", "Mixer.Setpoints.RecipeName"),
        ("busy", "busy", "Read of Server/NamespaceArray"),
        ("unknown-on-read", "refused", "Mixer.Setpoints."),
        ("unreadable-values", "refused", "Read of Value of"),
    ] {
        sim.cmd(&format!("quirk {quirk} on"));
        let started = std::time::Instant::now();
        let error = support::assert_collection_fails(&cfg, &asset, reason);
        assert!(
            error["request"]
                .as_str()
                .is_some_and(|r| r.contains(request)),
            "{quirk}: {error}"
        );
        if quirk == "huge-string" {
            // A fresh process, so a fresh Hello that the simulator rewrote to "no limits": the
            // server sent the 10 MiB answer and the client cut it off by chunk count.
            assert!(
                error["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("BadEncodingLimitsExceeded")),
                "{error}"
            );
        }
        // assert_collection_fails runs `status` and `drift` four times besides the capture.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{quirk}: {:?}",
            started.elapsed()
        );
        if reason == "bound"
            && let Some((code, kib)) = capture_peak_rss(&cfg, &asset)
        {
            eprintln!("{quirk}: peak RSS of otdrift capture {kib} KiB");
            assert_eq!(code, 1, "{quirk}");
            assert!(kib < PEAK_RSS_BUDGET_KIB, "{quirk}: {kib} KiB");
        }
        sim.cmd(&format!("quirk {quirk} off"));
        let healthy = run(&cfg, &["capture", &asset, "--json"]);
        assert_eq!(healthy.code, 0, "{quirk}: {healthy:?}");
        assert_eq!(healthy.json()["digest"], digest, "{quirk}");
    }
    assert_no_state_changing_service(&sim);
}

/// A capture slower than `capture_timeout_ms` stops there: `otdrift capture` ends at the
/// deadline with reason `bound` and request `the whole capture`.
#[test]
fn a_slow_server_is_stopped_at_the_capture_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let asset = asset_id(dir.path());
    let _cleanup = PkiCleanup(asset.clone());
    let mut sim = Sim::start("opcua", Some(&state(dir.path(), "")), dir.path());
    // The first capture makes the agent's certificate (an RSA key): not under a tight deadline.
    let cfg = config(dir.path(), &asset, &sim.addr, "");
    let baseline = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(baseline.code, 0, "{baseline:?}");
    let cfg = config(dir.path(), &asset, &sim.addr, "capture_timeout_ms = 1000");
    sim.cmd("quirk slow on");
    let started = std::time::Instant::now();
    let slow = run(&cfg, &["capture", &asset, "--json"]);
    let elapsed = started.elapsed();
    assert_eq!(slow.code, 1, "{slow:?}");
    assert_eq!(slow.json()["error"]["kind"], "bound", "{slow:?}");
    assert_eq!(slow.json()["error"]["request"], "the whole capture");
    // The deadline plus the process's own start and store work, not a request timeout more.
    assert!(
        elapsed < std::time::Duration::from_millis(1000 + 1500),
        "{elapsed:?}"
    );
    let error = support::assert_collection_fails(&cfg, &asset, "bound");
    assert_eq!(error["request"], "the whole capture");
    sim.cmd("quirk slow off");
    let cfg = config(dir.path(), &asset, &sim.addr, "");
    let healthy = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(healthy.code, 0, "{healthy:?}");
    assert_eq!(healthy.json()["digest"], baseline.json()["digest"]);
    assert_no_state_changing_service(&sim);
}

/// BuildInfo is mandatory in the Server object: a first capture of a fresh asset against a
/// server without it fails (no provisional baseline of a broken identity).
#[test]
fn a_first_capture_without_buildinfo_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let asset = asset_id(dir.path());
    let _cleanup = PkiCleanup(asset.clone());
    let mut sim = Sim::start("opcua", Some(&state(dir.path(), "")), dir.path());
    sim.cmd("quirk no-buildinfo on");
    let cfg = config(dir.path(), &asset, &sim.addr, "");
    let first = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(first.code, 1, "{first:?}");
    let error = first.json()["error"].clone();
    assert_eq!(error["kind"], "malformed", "{error}");
    assert!(
        error["request"]
            .as_str()
            .is_some_and(|r| r.contains("Server/ServerStatus/BuildInfo/")),
        "{error}"
    );
    let status = run(&cfg, &["status", "--json"]);
    let row = status.json()["assets"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == asset.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(row["baseline"], serde_json::Value::Null, "{row}");
    assert!(row["collection"]["failing_since"].is_string(), "{row}");
    sim.cmd("quirk no-buildinfo off");
    let healthy = run(&cfg, &["capture", &asset, "--json"]);
    assert_eq!(healthy.code, 0, "{healthy:?}");
    assert_eq!(healthy.json()["baseline"]["provisional"], true);
    assert_no_state_changing_service(&sim);
}
