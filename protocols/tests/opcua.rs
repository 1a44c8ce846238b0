//! The OPC UA collector against the OPC UA simulator over loopback.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use std::time::{Duration, Instant};

use common::{
    LOOPBACK, SimulatedDevice, assert_collector_compliance, asset_from, collector_and_asset, peers,
};
use otdrift_config::{AssetConfig, ProtocolConfig};
use otdrift_core::{ChangeKind, Class, Diff, Value};
use otdrift_protocols::opcua::OpcuaCollector;
use otdrift_protocols::{
    Capture, Collector, ErrorKind, FailureReason, MemoryBudget, capture_within,
};
use otdrift_simulators::opcua::{
    OpcuaSimHandle, OpcuaSimulator, OpcuaState, Quirk, ValueType, WireCount,
};

const PLC: &str = "urn:otdrift:sim:mixer-m2:program";

fn value_path(id: &str) -> String {
    format!("opcua/value/nsu={PLC};s={id}")
}

fn node_path(id: &str, attribute: &str) -> String {
    format!("opcua/node/nsu={PLC};s={id}/{attribute}")
}

/// A fresh PKI folder per collector (removed when the guard drops).
struct Pki(PathBuf);

impl Pki {
    fn new() -> Pki {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "otdrift-opcua-test-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Pki(dir)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn mixer() -> OpcuaSimHandle {
    OpcuaSimulator::start(LOOPBACK, OpcuaState::demo().with_tick_ms(0))
        .await
        .expect("simulator starts")
}

fn collector(endpoint: &str, extra: &str, setpoints: &str, pki: &Pki) -> OpcuaCollector {
    collector_for(endpoint, extra, setpoints, pki).0
}

/// A collector and its asset (for its `capture_timeout_ms`).
fn collector_for(
    endpoint: &str,
    extra: &str,
    setpoints: &str,
    pki: &Pki,
) -> (OpcuaCollector, AssetConfig) {
    let rest = format!("timeout_ms = 2000\n{extra}\n{setpoints}");
    let (collector, asset) = collector_and_asset!(
        Opcua,
        OpcuaCollector::new,
        "opcua",
        "mixer-2",
        endpoint,
        &rest
    );
    (collector.with_pki_dir(pki.0.clone()), asset)
}

const RECIPE: &str = r#"
  [[asset.setpoints]]
  name = "recipe"
  node = "ns=2;s=Mixer.Setpoints"
"#;

struct Mixer(OpcuaSimHandle);

impl SimulatedDevice for Mixer {
    fn change_a_setpoint(&self) -> String {
        self.0
            .set_value("Mixer.Setpoints.MixSpeed", "75.0")
            .expect("set");
        value_path("Mixer.Setpoints.MixSpeed")
    }
    fn restore_the_setpoint(&self) {
        self.0
            .set_value("Mixer.Setpoints.MixSpeed", "72.5")
            .expect("set");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opcua_collector_is_compliant() {
    let sim = mixer().await;
    let pki = Pki::new();
    let mut c = collector(&sim.endpoint_url(), "", RECIPE, &pki);
    assert_collector_compliance(&mut c, &Mixer(sim.clone())).await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_structure_and_typed_values_are_captured() {
    let sim = mixer().await;
    let pki = Pki::new();
    let mut c = collector(&sim.endpoint_url(), "", RECIPE, &pki);
    let capture = c.capture().await.expect("capture");
    let get = |p: &str| capture.snapshot.get(p).map(|i| i.value().clone());
    assert_eq!(
        get("opcua/server/build_info/manufacturer_name"),
        Some(Value::from("otdrift (simulated)"))
    );
    assert_eq!(
        get("opcua/server/build_info/software_version"),
        Some(Value::from("V3.1.2"))
    );
    assert!(
        matches!(get("opcua/server/build_info/build_date"), Some(Value::Text(t)) if t.starts_with("2024-02-01T00:00:00"))
    );
    assert_eq!(
        get("opcua/server/application_uri"),
        Some(Value::from("urn:otdrift:sim:mixer-m2"))
    );
    assert_eq!(
        get("opcua/server/certificate_thumbprint"),
        Some(Value::Text(sim.certificate_thumbprint()))
    );
    assert_eq!(get("opcua/namespace/2"), Some(Value::from(PLC)));
    assert_eq!(
        get(&value_path("Mixer.Setpoints.MixSpeed")),
        Some(Value::F64(72.5))
    );
    assert_eq!(
        get(&value_path("Mixer.Setpoints.TargetTemp")),
        Some(Value::F32(65.0))
    );
    assert_eq!(
        get(&value_path("Mixer.Setpoints.MixTime")),
        Some(Value::UInt(180))
    );
    assert_eq!(
        get(&value_path("Mixer.Setpoints.MaxTorque")),
        Some(Value::Int(420))
    );
    assert_eq!(
        get(&value_path("Mixer.Setpoints.AgitatorEnabled")),
        Some(Value::Bool(true))
    );
    assert_eq!(
        get(&value_path("Mixer.Setpoints.RecipeName")),
        Some(Value::from("Batch-B12"))
    );
    assert_eq!(
        get(&value_path("Mixer.Setpoints.RampProfile")),
        Some(Value::List([10, 25, 50, 75, 100].map(Value::Int).to_vec()))
    );
    assert_eq!(
        get(&value_path("Mixer.Setpoints.Dosing.Water")),
        Some(Value::F64(120.0))
    );
    assert_eq!(
        get(&node_path("Mixer.Setpoints.MixSpeed", "data_type")),
        Some(Value::from("Double"))
    );
    assert_eq!(
        get(&node_path("Mixer.Setpoints.RampProfile", "value_rank")),
        Some(Value::Int(1))
    );
    assert_eq!(
        get(&node_path(
            "Mixer.Setpoints.RampProfile",
            "array_dimensions"
        )),
        Some(Value::List(vec![Value::UInt(5)]))
    );
    assert_eq!(
        get(&node_path("Mixer.Setpoints.MixSpeed", "array_dimensions")),
        Some(Value::Null)
    );
    assert_eq!(
        get(&node_path("Mixer.Setpoints.Dosing", "node_class")),
        Some(Value::from("Object"))
    );
    assert_eq!(
        get(&node_path("Mixer.Setpoints", "browse_name")),
        Some(Value::Text(format!("nsu={PLC};Setpoints")))
    );
    assert_eq!(
        get(&node_path("Mixer.Setpoints.Dosing.Sugar", "parents")),
        Some(Value::List(vec![Value::Text(format!(
            "nsu={PLC};s=Mixer.Setpoints.Dosing"
        ))]))
    );
    // Runtime values are not captured unless configured, and status is not hashed.
    assert!(get(&value_path("Mixer.Runtime.Speed")).is_none());
    assert!(capture.runtime.contains_key("opcua/server/current_time"));
    assert_eq!(
        capture.runtime.get("opcua/security/mode"),
        Some(&Value::from("None"))
    );
    assert_eq!(capture.snapshot.items_of(Class::Setpoint).count(), 9);
    assert_eq!(sim.request_log().writes(), 0);
    c.close().await;
}

fn changes(
    before: &otdrift_core::Snapshot,
    after: &otdrift_core::Snapshot,
) -> Vec<(String, ChangeKind)> {
    Diff::between(before, after)
        .changes
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_is_program_drift_and_removing_it_restores_the_digest() {
    let sim = mixer().await;
    let pki = Pki::new();
    let mut c = collector(&sim.endpoint_url(), "", RECIPE, &pki);
    let before = c.capture().await.expect("capture");
    sim.add_variable("Mixer.Setpoints.Viscosity", ValueType::UInt16, "12")
        .expect("add");
    let after = c.capture().await.expect("capture");
    let diff = Diff::between(&before.snapshot, &after.snapshot);
    let added: Vec<&str> = diff
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Added)
        .map(|c| c.path.as_str())
        .collect();
    assert!(
        added.contains(&node_path("Mixer.Setpoints.Viscosity", "data_type").as_str()),
        "{added:?}"
    );
    assert!(
        added.contains(&value_path("Mixer.Setpoints.Viscosity").as_str()),
        "{added:?}"
    );
    assert!(
        diff.changes.iter().all(|c| c.kind == ChangeKind::Added),
        "{diff:?}"
    );
    assert!(
        after.snapshot.class_digest(Class::Program) != before.snapshot.class_digest(Class::Program)
    );
    sim.remove("Mixer.Setpoints.Viscosity").expect("remove");
    let back = c.capture().await.expect("capture");
    assert_eq!(back.snapshot.digest(), before.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_does_not_depend_on_answer_order_batching_or_namespace_indexes() {
    let pki = Pki::new();
    let sim = mixer().await;
    let mut c = collector(&sim.endpoint_url(), "", RECIPE, &pki);
    let plain = c.capture().await.expect("capture");
    c.close().await;

    // The same PLC listing references backwards, with tiny limits (many small requests and
    // continuation points), behind a server that publishes an extra namespace first (the
    // PLC namespace moves from index 2 to 3).
    let text = opcua_demo_with(
        "extra_namespaces = [\"urn:vendor:extras\"]",
        "[quirks]\nreverse-order = true\ntiny-limits = true",
    );
    let state = OpcuaState::from_toml(&text).expect("state").with_tick_ms(0);
    let moved = OpcuaSimulator::start(LOOPBACK, state)
        .await
        .expect("simulator");
    let pki2 = Pki::new();
    let setpoints = r#"
  [[asset.setpoints]]
  name = "recipe"
  node = "nsu=urn:otdrift:sim:mixer-m2:program;s=Mixer.Setpoints"
"#;
    let mut c2 = collector(&moved.endpoint_url(), "", setpoints, &pki2);
    let other = c2.capture().await.expect("capture");
    // Only identity differs: the namespace array and the certificate of another start.
    for (path, _) in changes(&plain.snapshot, &other.snapshot) {
        assert!(
            path.starts_with("opcua/namespace/") || path.starts_with("opcua/server/"),
            "{path}"
        );
    }
    assert_eq!(
        plain.snapshot.class_digest(Class::Program),
        other.snapshot.class_digest(Class::Program)
    );
    assert_eq!(
        plain.snapshot.class_digest(Class::Setpoint),
        other.snapshot.class_digest(Class::Setpoint)
    );
    // Batches respect MaxNodesPerRead = 5 and MaxNodesPerBrowse = 5 once the session knows
    // them: only the session's first Read (identity and the limits themselves, 12 nodes) may
    // ask for more, and is refused and sent again in halves (12, 6, then 3 + 3 ...).
    let entries = moved.request_log().entries();
    let refused: Vec<_> = entries
        .iter()
        .filter(|e| e.outcome.contains("BadTooManyOperations"))
        .collect();
    assert!(
        refused.len() == 2
            && refused.iter().all(|e| e.name == "read"
                && e.detail
                    .starts_with(&format!("nodes={} [i=2255,", e.count.unwrap_or(0)))),
        "{refused:?}"
    );
    for entry in &entries {
        if matches!(entry.name.as_str(), "read" | "browse" | "browse_next") && entry.outcome == "ok"
        {
            assert!(entry.count.unwrap_or(0) <= 5, "{entry:?}");
        }
    }
    assert!(
        moved
            .request_log()
            .entries()
            .iter()
            .any(|e| e.name == "browse_next"),
        "3 references per answer need BrowseNext"
    );
    assert_eq!(moved.request_log().writes(), 0);
}

/// The demo state's text with `top` keys before its first table and `tables` after it.
fn opcua_demo_with(top: &str, tables: &str) -> String {
    let demo = otdrift_simulators::opcua::MIXER_DEMO_TOML;
    let at = demo.find("\n[").map_or(demo.len(), |i| i + 1);
    let (head, tail) = demo.split_at(at);
    format!("{head}{top}\n{tail}\n{tables}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_batched_to_the_servers_limits() {
    let mut text = String::from(
        "tick_ms = 0\nnamespace_uri = \"urn:bulk\"\n[limits]\nmax_nodes_per_read = 100\nmax_nodes_per_browse = 50\nmax_references_per_node = 40\n[[folder]]\nid = \"Bulk\"\n",
    );
    for i in 0..120 {
        text.push_str(&format!(
            "[[variable]]\nid = \"Bulk.V{i:03}\"\ntype = \"Double\"\nvalue = {i}.5\n"
        ));
    }
    let sim = OpcuaSimulator::start(LOOPBACK, OpcuaState::from_toml(&text).expect("state"))
        .await
        .expect("simulator");
    let pki = Pki::new();
    let setpoints = "  [[asset.setpoints]]\n  name = \"bulk\"\n  node = \"ns=2;s=Bulk\"\n";
    let mut c = collector(&sim.endpoint_url(), "", setpoints, &pki);
    let first = c.capture().await.expect("capture");
    assert_eq!(first.snapshot.items_of(Class::Setpoint).count(), 120);
    assert_eq!(first.stats.connects, 1);
    sim.request_log().clear();
    let second = c.capture().await.expect("capture");
    assert_eq!(second.stats.connects, 0);
    let entries = sim.request_log().entries();
    let count = |name: &str| entries.iter().filter(|e| e.name == name).count();
    // Identity: 1 read. Attributes: 6 for the root + 4 × 120 = 486 operations → 5 reads of
    // at most 100. Browse: the root (1 request, 40 references, then 2 BrowseNext), then the
    // 120 variables (3 requests of at most 50 nodes).
    assert_eq!(count("read"), 1 + 5, "{entries:#?}");
    assert_eq!(count("browse"), 1 + 3);
    assert_eq!(count("browse_next"), 2, "{entries:#?}");
    assert_eq!(second.stats.requests as usize, entries.len());
    assert!(entries.iter().all(|e| e.count.unwrap_or(0) <= 100));
    assert_eq!(sim.request_log().writes(), 0);
}

/// How a capture walked (`opcua/walk` in its runtime record).
fn walk(capture: &Capture) -> String {
    match capture.runtime.get("opcua/walk") {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("no walk recorded: {other:?}"),
    }
}

/// A capture, with the Browse and Read requests it cost the simulator.
async fn counted(c: &mut OpcuaCollector, sim: &OpcuaSimHandle) -> (Capture, usize, usize) {
    sim.request_log().clear();
    let capture = c.capture().await.expect("capture");
    let entries = sim.request_log().entries();
    let count = |name: &str| entries.iter().filter(|e| e.name == name).count();
    if capture.stats.connects == 0 {
        assert_eq!(capture.stats.requests as usize, entries.len());
    }
    (capture, count("browse"), count("read"))
}

/// On a server whose NodeVersion moved with a structure change, a quiet poll reads the values
/// alone (one Read after identity, no Browse); a node added or removed, a value changed, and
/// every `full_browse_every`-th poll still take the full walk, and every capture's digest is
/// the one a full walk gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_versions_seen_to_move_let_quiet_polls_read_values_only() {
    let state = OpcuaState::from_toml(&opcua_demo_with("node_version = true", ""))
        .expect("state")
        .with_tick_ms(0);
    let sim = OpcuaSimulator::start(LOOPBACK, state)
        .await
        .expect("simulator");
    let pki = Pki::new();
    let mut c = collector(&sim.endpoint_url(), "full_browse_every = 4", RECIPE, &pki);
    let (first, _, _) = counted(&mut c, &sim).await;
    assert!(
        first
            .snapshot
            .get(&value_path("Mixer.Setpoints#NodeVersion"))
            .is_some(),
        "the folder's NodeVersion is captured like any property"
    );
    // Not proven yet: the NodeVersion has not been seen to move.
    let (second, browses, _) = counted(&mut c, &sim).await;
    assert_eq!((walk(&second).as_str(), browses > 0), ("full", true));
    assert_eq!(second.snapshot.digest(), first.snapshot.digest());
    sim.add_variable("Mixer.Setpoints.Viscosity", ValueType::UInt16, "12")
        .expect("add");
    let (grown, browses, _) = counted(&mut c, &sim).await;
    assert_eq!((walk(&grown).as_str(), browses > 0), ("full", true));
    assert!(
        grown
            .snapshot
            .get(&value_path("Mixer.Setpoints.Viscosity"))
            .is_some()
    );

    // Proven: quiet polls read identity and values, nothing else.
    let (quiet, browses, reads) = counted(&mut c, &sim).await;
    assert_eq!(walk(&quiet), "values only (NodeVersion unchanged)");
    assert_eq!((browses, reads), (0, 2));
    assert_eq!(quiet.snapshot.digest(), grown.snapshot.digest());
    // A value change is seen by a values-only poll.
    sim.set_value("Mixer.Setpoints.MixSpeed", "75.0")
        .expect("set");
    let (moved, browses, _) = counted(&mut c, &sim).await;
    assert_eq!(browses, 0);
    assert_eq!(
        changes(&quiet.snapshot, &moved.snapshot),
        vec![(value_path("Mixer.Setpoints.MixSpeed"), ChangeKind::Changed)]
    );
    // A node added moves the folder's NodeVersion: the same capture walks in full.
    sim.add_variable("Mixer.Setpoints.Density", ValueType::Double, "1.1")
        .expect("add");
    let (added, browses, _) = counted(&mut c, &sim).await;
    assert_eq!((walk(&added).as_str(), browses > 0), ("full", true));
    assert!(
        added
            .snapshot
            .get(&node_path("Mixer.Setpoints.Density", "data_type"))
            .is_some()
    );
    // At most full_browse_every polls in a row without a Browse: three quiet, then full.
    let mut walks = Vec::new();
    for _ in 0..4 {
        let (capture, _, _) = counted(&mut c, &sim).await;
        assert_eq!(capture.snapshot.digest(), added.snapshot.digest());
        walks.push(walk(&capture));
    }
    let quiet_walk = "values only (NodeVersion unchanged)";
    assert_eq!(walks, [quiet_walk, quiet_walk, quiet_walk, "full"]);
    // A node removed: its value read answers BadNodeIdUnknown, the capture walks in full.
    sim.remove("Mixer.Setpoints.Viscosity").expect("remove");
    let (removed, browses, _) = counted(&mut c, &sim).await;
    assert_eq!((walk(&removed).as_str(), browses > 0), ("full", true));
    assert!(
        removed
            .snapshot
            .get(&value_path("Mixer.Setpoints.Viscosity"))
            .is_none()
    );
    // A new session (the server dropped us) walks in full before trusting anything again.
    let (_, _, _) = counted(&mut c, &sim).await;
    sim.drop_connections();
    let (reconnected, browses, _) = counted(&mut c, &sim).await;
    assert_eq!((walk(&reconnected).as_str(), browses > 0), ("full", true));
    assert_eq!(reconnected.snapshot.digest(), removed.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
}

/// A server whose NodeVersion does not move when the structure changes is never trusted:
/// every poll browses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_version_that_does_not_move_is_never_trusted() {
    let state = OpcuaState::from_toml(&opcua_demo_with("node_version = true", ""))
        .expect("state")
        .with_tick_ms(0)
        .with_quirk(Quirk::FrozenNodeVersion, true);
    let sim = OpcuaSimulator::start(LOOPBACK, state)
        .await
        .expect("simulator");
    let pki = Pki::new();
    let mut c = collector(&sim.endpoint_url(), "", RECIPE, &pki);
    c.capture().await.expect("capture");
    sim.add_variable("Mixer.Setpoints.Viscosity", ValueType::UInt16, "12")
        .expect("add");
    let (grown, _, _) = counted(&mut c, &sim).await;
    assert!(
        grown
            .snapshot
            .get(&value_path("Mixer.Setpoints.Viscosity"))
            .is_some()
    );
    for _ in 0..3 {
        let (capture, browses, _) = counted(&mut c, &sim).await;
        assert_eq!((walk(&capture).as_str(), browses > 0), ("full", true));
    }
    // Unfrozen later, it has still lied once: never trusted in this process.
    sim.set_quirk(Quirk::FrozenNodeVersion, false);
    sim.add_variable("Mixer.Setpoints.Density", ValueType::Double, "1.1")
        .expect("add");
    counted(&mut c, &sim).await;
    let (capture, browses, _) = counted(&mut c, &sim).await;
    assert_eq!((walk(&capture).as_str(), browses > 0), ("full", true));
}

/// 70 folders of two variables each under one folder; `page` references per Browse answer.
fn many_folders(page: u32) -> OpcuaState {
    let mut text = format!(
        "tick_ms = 0\nnamespace_uri = \"urn:many\"\n[limits]\nmax_references_per_node = {page}\n[[folder]]\nid = \"Many\"\n"
    );
    for f in 0..70 {
        text.push_str(&format!("[[folder]]\nid = \"Many.F{f:02}\"\n"));
        for v in 0..2 {
            text.push_str(&format!(
                "[[variable]]\nid = \"Many.F{f:02}.V{v}\"\ntype = \"Int16\"\nvalue = {v}\n"
            ));
        }
    }
    OpcuaState::from_toml(&text).expect("state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_refused_a_continuation_point_are_browsed_again() {
    // One reference per answer: each of the 70 folders needs a continuation point, and the
    // simulator gives a session 64; the other 6 answer BadNoContinuationPoints and are
    // browsed again once the first 64 are done. The result is the same as with no
    // continuation points at all.
    let setpoints = "  [[asset.setpoints]]\n  name = \"many\"\n  node = \"ns=2;s=Many\"\n";
    let paged = OpcuaSimulator::start(LOOPBACK, many_folders(1))
        .await
        .expect("simulator");
    let mut c = collector(&paged.endpoint_url(), "", setpoints, &Pki::new());
    let capture = c
        .capture()
        .await
        .expect("capture despite too few continuation points");
    assert_eq!(capture.snapshot.items_of(Class::Setpoint).count(), 140);
    // The root, the 70 folders, the 6 of them again, the 140 variables.
    let browses = paged
        .request_log()
        .entries()
        .iter()
        .filter(|e| e.name == "browse")
        .map(|e| e.count.unwrap_or(0))
        .collect::<Vec<_>>();
    assert_eq!(browses, vec![1, 70, 6, 140]);
    let whole = OpcuaSimulator::start(LOOPBACK, many_folders(1000))
        .await
        .expect("simulator");
    let mut w = collector(&whole.endpoint_url(), "", setpoints, &Pki::new());
    let reference = w.capture().await.expect("capture");
    for class in [Class::Program, Class::Setpoint] {
        assert_eq!(
            capture.snapshot.class_digest(class),
            reference.snapshot.class_digest(class)
        );
    }
    assert_eq!(paged.request_log().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_and_encrypt_with_a_user_name() {
    let sim = mixer().await;
    let pki = Pki::new();
    let dir = Pki::new();
    std::fs::create_dir_all(&dir.0).expect("dir");
    let password = dir.0.join("password");
    std::fs::write(&password, "otdrift-demo\n").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let mut plain = collector(&sim.endpoint_url(), "", RECIPE, &Pki::new());
    let reference = plain.capture().await.expect("capture");
    for (security, policy) in [
        ("sign", "Basic256Sha256"),
        ("sign-and-encrypt", "Aes256Sha256RsaPss"),
        ("sign-and-encrypt", "Aes128Sha256RsaOaep"),
    ] {
        let extra = format!(
            // `sign` alone does not hide the password: the config demands the opt-out.
            "security = \"{security}\"\nsecurity_policy = \"{policy}\"\nusername = \"otdrift\"\npassword_file = \"{}\"\nallow_unencrypted_password = {}",
            password.display(),
            security == "sign"
        );
        sim.request_log().clear();
        let mut c = collector(&sim.endpoint_url(), &extra, RECIPE, &pki);
        let capture = c.capture().await.expect("secure capture");
        assert_eq!(
            capture.snapshot.digest(),
            reference.snapshot.digest(),
            "{security}"
        );
        let mode = if security == "sign" {
            "Sign"
        } else {
            "SignAndEncrypt"
        };
        assert_eq!(
            capture.runtime.get("opcua/security/mode"),
            Some(&Value::from(mode))
        );
        let activations: Vec<_> = sim
            .request_log()
            .entries()
            .into_iter()
            .filter(|e| e.name == "activate_session")
            .collect();
        assert_eq!(activations.len(), 1, "{activations:?}");
        assert!(
            activations[0].detail.contains("user=otdrift"),
            "{:?}",
            activations[0]
        );
        assert!(
            sim.request_log()
                .entries()
                .iter()
                .filter(|e| e.name == "read")
                .all(|e| e.detail.ends_with(&format!("mode={mode}"))),
        );
        c.close().await;
    }
    // The agent made its own certificate, with a private key only it can read.
    assert!(pki.0.join("own/cert.der").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.0.join("private/private.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    // A wrong password is a refusal, not a panic or a silent anonymous session.
    std::fs::write(&password, "wrong").expect("write");
    let extra = format!(
        "security = \"sign-and-encrypt\"\nusername = \"otdrift\"\npassword_file = \"{}\"",
        password.display()
    );
    let mut c = collector(&sim.endpoint_url(), &extra, RECIPE, &pki);
    match c.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Refused(_)) => {
            assert!(e.to_string().contains("mixer-2"), "{e}");
            assert!(!e.is_unreachable());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A world-readable password file is refused before anything is sent.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut c = collector(&sim.endpoint_url(), &extra, RECIPE, &pki);
        let err = c.capture().await.expect_err("refused");
        assert!(
            err.to_string().contains("readable by group or others"),
            "{err}"
        );
    }
    // A mode the server does not offer names what it offers.
    let none_only = OpcuaState::from_toml(&opcua_demo_with("", "").replace(
        "modes = [\"none\", \"sign\", \"sign-and-encrypt\"]",
        "modes = [\"none\"]",
    ))
    .expect("state")
    .with_tick_ms(0);
    let plain_sim = OpcuaSimulator::start(LOOPBACK, none_only)
        .await
        .expect("sim");
    let mut c = collector(
        &plain_sim.endpoint_url(),
        "security = \"sign\"",
        RECIPE,
        &Pki::new(),
    );
    let err = c.capture().await.expect_err("no such endpoint");
    assert!(err.to_string().contains("offers None/None"), "{err}");
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_server_certificate_is_reported_not_trusted() {
    let pki = Pki::new();
    let state = OpcuaState::demo().with_tick_ms(0);
    let first = OpcuaSimulator::start(LOOPBACK, state.clone())
        .await
        .expect("sim");
    let addr = first.local_addr();
    let mut c = collector(&first.endpoint_url(), "", RECIPE, &pki);
    let before = c.capture().await.expect("capture");
    assert_eq!(
        before.runtime.get("opcua/security/certificate_pin"),
        Some(&Value::from("pinned on first use"))
    );
    first.shutdown();
    first.stopped().await;

    // Restarted with the same certificate: nothing to report.
    let same = OpcuaSimulator::start(addr, first.state())
        .await
        .expect("restart");
    let again = c.capture().await.expect("capture after restart");
    assert_eq!(again.snapshot.digest(), before.snapshot.digest());
    assert_eq!(
        again.runtime.get("opcua/security/certificate_pin"),
        Some(&Value::from("matches the pinned certificate"))
    );
    same.shutdown();
    same.stopped().await;

    // Restarted with a new certificate: identity drift, the pin is kept.
    let swapped = OpcuaSimulator::start(addr, state.with_quirk(Quirk::NewCertificate, true))
        .await
        .expect("restart with a new certificate");
    assert_ne!(
        swapped.certificate_thumbprint(),
        first.certificate_thumbprint()
    );
    let after = c.capture().await.expect("capture after the swap");
    let diff = changes(&before.snapshot, &after.snapshot);
    assert_eq!(
        diff,
        vec![(
            "opcua/server/certificate_thumbprint".to_owned(),
            ChangeKind::Changed
        )]
    );
    match after.runtime.get("opcua/security/certificate_pin") {
        Some(Value::Text(t)) => {
            assert!(t.starts_with("CHANGED"), "{t}");
            assert!(t.contains(&first.certificate_thumbprint()), "{t}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read(pki.0.join("pinned/mixer-2.der"))
            .map(|d| d.len() > 100)
            .ok(),
        Some(true)
    );
    assert!(
        pki.0
            .join(format!(
                "rejected/mixer-2-{}.der",
                swapped.certificate_thumbprint()
            ))
            .exists()
    );
    // With a user name, no password goes to the unpinned certificate.
    let dir = Pki::new();
    std::fs::create_dir_all(&dir.0).expect("dir");
    let password = dir.0.join("pw");
    std::fs::write(&password, "otdrift-demo").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    swapped.request_log().clear();
    let extra = format!(
        "username = \"otdrift\"\npassword_file = \"{}\"\nallow_unencrypted_password = true",
        password.display()
    );
    let mut with_user = collector(&swapped.endpoint_url(), &extra, RECIPE, &pki);
    let err = with_user.capture().await.expect_err("refused");
    assert!(
        err.to_string().contains("server certificate changed"),
        "{err}"
    );
    assert!(
        !swapped
            .request_log()
            .entries()
            .iter()
            .any(|e| e.name == "activate_session"),
        "no session was activated"
    );
}

/// One capture by a new collector (a one-shot `otdrift capture`), closed, and what it cost
/// the server on the wire.
async fn one_shot(sim: &OpcuaSimHandle, extra: &str, pki: &Pki) -> (Capture, WireCount) {
    let before = sim.wire_messages();
    let mut c = collector(&sim.endpoint_url(), extra, RECIPE, pki);
    let capture = c.capture().await.expect("one-shot capture");
    c.close().await;
    // The proxy counts CloseSecureChannel as it relays it, just after close() returns: wait
    // until every channel opened is closed.
    for _ in 0..200 {
        let wire = sim.wire_messages() - before;
        if wire.close >= wire.open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (capture, sim.wire_messages() - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_endpoint_opens_one_channel_and_a_new_certificate_is_still_found() {
    let pki = Pki::new();
    let state = OpcuaState::demo().with_tick_ms(0);
    let sim = OpcuaSimulator::start(LOOPBACK, state.clone())
        .await
        .expect("sim");
    let addr = sim.local_addr();
    let secured = "security = \"sign-and-encrypt\"";
    // First contact: a discovery channel, then the session's.
    let (first, wire) = one_shot(&sim, secured, &pki).await;
    assert_eq!((wire.hello, wire.open, wire.close), (2, 2, 2), "{wire:?}");
    assert!(pki.0.join("pinned/mixer-2.endpoint").exists());
    // Every later session: one channel, and the same capture.
    let (second, wire) = one_shot(&sim, secured, &pki).await;
    assert_eq!((wire.hello, wire.open, wire.close), (1, 1, 1), "{wire:?}");
    // Every service request the wire carried is one the collector counted (CreateSession,
    // ActivateSession, the keep-alive, GetEndpoints, the capture's), plus CloseSession.
    assert_eq!(
        wire.requests,
        u64::from(second.stats.requests) + 1,
        "{wire:?}"
    );
    assert_eq!(second.snapshot.digest(), first.snapshot.digest());
    assert_eq!(
        second.runtime.get("opcua/security/certificate_pin"),
        Some(&Value::from("matches the pinned certificate"))
    );
    // Another configuration (security none) does not use the kept sign-and-encrypt endpoint.
    let (_, wire) = one_shot(&sim, "security = \"none\"", &pki).await;
    assert_eq!(wire.hello, 2, "{wire:?}");
    sim.shutdown();
    sim.stopped().await;

    // A new certificate: the kept channel is refused (it was made for the old one), discovery
    // runs and the change is reported as identity drift, exactly as without a kept endpoint.
    let swapped = OpcuaSimulator::start(addr, state.with_quirk(Quirk::NewCertificate, true))
        .await
        .expect("restart with a new certificate");
    let (after, wire) = one_shot(&swapped, "security = \"none\"", &pki).await;
    assert_eq!(
        wire.hello, 1,
        "security none keeps its own endpoint: {wire:?}"
    );
    assert_eq!(
        changes(&first.snapshot, &after.snapshot)
            .into_iter()
            .map(|(path, _)| path)
            .filter(|p| !p.starts_with("opcua/security/"))
            .collect::<Vec<_>>(),
        vec!["opcua/server/certificate_thumbprint".to_owned()]
    );
    let before_secured = swapped.wire_messages();
    let mut c = collector(&swapped.endpoint_url(), secured, RECIPE, &pki);
    let secured_after = c.capture().await.expect("capture after the swap");
    c.close().await;
    assert!(
        (swapped.wire_messages() - before_secured).hello >= 2,
        "the refused kept channel is followed by discovery"
    );
    match secured_after.runtime.get("opcua/security/certificate_pin") {
        Some(Value::Text(t)) => assert!(t.starts_with("CHANGED"), "{t}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(swapped.request_log().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_server_answers_is_recorded_what_it_refuses_fails_the_capture() {
    let sim = mixer().await;
    let pki = Pki::new();
    let mut c = collector(&sim.endpoint_url(), "", RECIPE, &pki);
    let normal = c.capture().await.expect("capture");
    let get = |s: &otdrift_core::Snapshot, p: &str| s.get(p).map(|i| i.value().clone());

    // Empty or placeholder BuildInfo is what the server answers: recorded as it is.
    sim.set_quirk(Quirk::EmptyBuildInfo, true);
    let empty = c.capture().await.expect("capture");
    assert_eq!(
        get(&empty.snapshot, "opcua/server/build_info/product_name"),
        Some(Value::from(""))
    );
    assert_eq!(
        get(&empty.snapshot, "opcua/server/build_info/build_date"),
        Some(Value::Null)
    );
    let empty_again = c.capture().await.expect("capture");
    assert_eq!(empty.snapshot.digest(), empty_again.snapshot.digest());
    sim.set_quirk(Quirk::EmptyBuildInfo, false);
    sim.set_quirk(Quirk::PlaceholderBuildInfo, true);
    let placeholder = c.capture().await.expect("capture");
    assert_eq!(
        get(
            &placeholder.snapshot,
            "opcua/server/build_info/product_name"
        ),
        Some(Value::from("OPC UA Server"))
    );
    sim.set_quirk(Quirk::PlaceholderBuildInfo, false);

    // Identity refused: the capture fails, naming the field and the status.
    sim.set_quirk(Quirk::RefuseIdentity, true);
    let err = c.capture().await.expect_err("identity refused");
    assert_eq!(err.reason(), FailureReason::Refused, "{err}");
    assert!(err.request.contains("BuildInfo/"), "{err}");
    assert!(err.detail().contains("BadUserAccessDenied"), "{err}");
    sim.set_quirk(Quirk::RefuseIdentity, false);

    // Continuation points a server will not continue, or does not honour: the node's children
    // would be incomplete, so the capture fails.
    sim.set_quirk(Quirk::NoBrowseNext, true);
    sim.set_quirk(Quirk::TinyLimits, true);
    let mut tiny = collector(&sim.endpoint_url(), "", RECIPE, &Pki::new());
    let err = tiny.capture().await.expect_err("BrowseNext refused");
    assert_eq!(err.reason(), FailureReason::Refused, "{err}");
    assert!(err.request.starts_with("BrowseNext"), "{err}");
    assert!(err.detail().contains("BadServiceUnsupported"), "{err}");
    sim.set_quirk(Quirk::NoBrowseNext, false);
    sim.set_quirk(Quirk::BrowseNextRestarts, true);
    let err = tiny.capture().await.expect_err("BrowseNext restarts");
    assert_eq!(err.reason(), FailureReason::Malformed, "{err}");
    assert!(
        err.detail().contains("does not honour continuation points"),
        "{err}"
    );
    sim.set_quirk(Quirk::BrowseNextRestarts, false);
    sim.set_quirk(Quirk::TinyLimits, false);
    let healthy = tiny.capture().await.expect("capture");
    assert_eq!(healthy.snapshot.digest(), normal.snapshot.digest());
    tiny.close().await;

    // Unpublished limits are not state: the defaults are used.
    sim.set_quirk(Quirk::HiddenLimits, true);
    let mut hidden = collector(&sim.endpoint_url(), "", RECIPE, &Pki::new());
    let defaults = hidden.capture().await.expect("capture");
    assert_eq!(defaults.snapshot.digest(), normal.snapshot.digest());
    assert_eq!(
        defaults.runtime.get("opcua/limits/source"),
        Some(&Value::from("default"))
    );
    sim.set_quirk(Quirk::HiddenLimits, false);
    hidden.close().await;

    // A value the server's own model says this user may not read (UserAccessLevel without
    // CurrentRead) is a stable capability refusal: the same "not available" every poll.
    let text = otdrift_simulators::opcua::MIXER_DEMO_TOML.replace(
        "id = \"Mixer.Setpoints.MaxTorque\"         # Nm\ntype = \"Int32\"\nvalue = 420",
        "id = \"Mixer.Setpoints.MaxTorque\"\ntype = \"Int32\"\nvalue = 420\nreadable = false",
    );
    let hiding = OpcuaState::from_toml(&text).expect("state").with_tick_ms(0);
    let hider = OpcuaSimulator::start(LOOPBACK, hiding).await.expect("sim");
    let mut h = collector(&hider.endpoint_url(), "", RECIPE, &Pki::new());
    let hidden_value = h.capture().await.expect("capture");
    let again = h.capture().await.expect("capture");
    assert_eq!(
        get(
            &hidden_value.snapshot,
            &value_path("Mixer.Setpoints.MaxTorque")
        ),
        Some(Value::unavailable(
            "the server does not let this user read it (UserAccessLevel without CurrentRead)"
        ))
    );
    assert_eq!(hidden_value.snapshot.digest(), again.snapshot.digest());
    // ...but configured directly, the same node is a setpoint the config asks for: refused.
    let direct = "  [[asset.setpoints]]\n  name = \"torque\"\n  node = \"ns=2;s=Mixer.Setpoints.MaxTorque\"\n";
    let mut d = collector(&hider.endpoint_url(), "", direct, &Pki::new());
    let err = d.capture().await.expect_err("a configured node refused");
    assert_eq!(err.reason(), FailureReason::Refused, "{err}");
    assert!(err.request.contains("Mixer.Setpoints.MaxTorque"), "{err}");
    assert!(err.detail().contains("BadNotReadable"), "{err}");

    // A configured node the server does not have, as its address space says: absent (state,
    // so removing a configured folder is drift, not a failure).
    let missing = "  [[asset.setpoints]]\n  name = \"gone\"\n  node = \"ns=2;s=Mixer.Nowhere\"\n";
    let mut m = collector(&sim.endpoint_url(), "", missing, &Pki::new());
    let capture = m.capture().await.expect("capture");
    assert_eq!(
        get(
            &capture.snapshot,
            &format!("opcua/node/nsu={PLC};s=Mixer.Nowhere/node_class")
        ),
        Some(Value::from("absent (not in the server's address space)"))
    );
    let unknown_ns = "  [[asset.setpoints]]\n  name = \"gone\"\n  node = \"nsu=urn:nope;s=X\"\n";
    let mut u = collector(&sim.endpoint_url(), "", unknown_ns, &Pki::new());
    let capture = u.capture().await.expect("capture");
    assert_eq!(
        get(&capture.snapshot, "opcua/node/nsu=urn:nope;s=X/node_class"),
        Some(Value::from(
            "absent (namespace not in the server's NamespaceArray)"
        ))
    );
    assert!(
        capture
            .snapshot
            .items()
            .all(|i| !matches!(i.value(), Value::Unavailable(_))),
        "nothing the server answered is recorded as not available"
    );

    // A session the server drops is replaced once, transparently.
    sim.drop_connections();
    let after_drop = c
        .capture()
        .await
        .expect("capture after the server dropped the session");
    assert_eq!(after_drop.stats.connects, 1);
    assert_eq!(after_drop.snapshot.digest(), normal.snapshot.digest());
    // A server that drops every session on reads is a typed transport error.
    sim.set_quirk(Quirk::DropSession, true);
    match c.capture().await {
        Err(e) => {
            assert!(e.is_unreachable(), "{e:?}");
            assert!(e.to_string().contains("mixer-2"), "{e}");
        }
        Ok(_) => panic!("a server dropping every session cannot be captured"),
    }
    sim.set_quirk(Quirk::DropSession, false);
    let recovered = c.capture().await.expect("capture");
    assert_eq!(recovered.snapshot.digest(), normal.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
    assert_eq!(hider.request_log().writes(), 0);
}

/// One quirk, the field-truth way: a healthy capture; the quirk on → the capture fails with
/// `reason`, naming the request (`request` is part of it) and the server's words (`detail`),
/// well inside the asset's capture deadline; the quirk off → a capture equal to the first.
async fn quirk_fails_then_recovers(
    quirk: Quirk,
    extra: &str,
    reason: FailureReason,
    request: &str,
    detail: &str,
) {
    let sim = mixer().await;
    let pki = Pki::new();
    let (mut c, asset) = collector_for(&sim.endpoint_url(), extra, RECIPE, &pki);
    // The healthy captures around the quirk are not what is timed: a first contact on a
    // loaded CI machine (a debug build, every test at once) may take longer than a deadline
    // chosen to stop the quirk quickly, so they run under a generous one.
    let mut unhurried = asset.clone();
    unhurried.capture_timeout_ms = unhurried.capture_timeout_ms.max(60_000);
    let before = capture_within(&mut c, &unhurried, &MemoryBudget::default())
        .await
        .expect("healthy capture");
    sim.set_quirk(quirk, true);
    let started = Instant::now();
    let err = capture_within(&mut c, &asset, &MemoryBudget::default())
        .await
        .expect_err("the quirk fails the capture");
    let elapsed = started.elapsed();
    assert_eq!(err.reason(), reason, "{err}");
    assert!(
        err.request.contains(request),
        "request {:?}: {err}",
        err.request
    );
    assert!(
        err.detail().contains(detail),
        "detail {:?}: {err}",
        err.detail()
    );
    assert!(err.to_string().contains("mixer-2"), "{err}");
    // The whole-capture deadline itself may be what stops it (the `slow` quirk): allow the
    // time it takes to notice.
    let deadline = Duration::from_millis(asset.capture_timeout_ms) + Duration::from_millis(500);
    assert!(elapsed < deadline, "{quirk:?} took {elapsed:?}");
    sim.set_quirk(quirk, false);
    if err.poisons_connection() {
        // What the daemon and the CLI do after an abandoned capture.
        c.close().await;
        c = collector_for(&sim.endpoint_url(), extra, RECIPE, &pki).0;
    }
    let after = capture_within(&mut c, &unhurried, &MemoryBudget::default())
        .await
        .expect("healthy again");
    assert_eq!(after.snapshot.digest(), before.snapshot.digest());
    assert_eq!(sim.request_log().writes(), 0);
    c.close().await;
}

const DEADLINE: &str = "capture_timeout_ms = 20000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_fail_the_capture_naming_the_node() {
    quirk_fails_then_recovers(
        Quirk::BadValues,
        DEADLINE,
        FailureReason::Refused,
        &format!("Read of Value of nsu={PLC};s=Mixer.Setpoints."),
        "BadOutOfService",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertain_values_fail_the_capture() {
    quirk_fails_then_recovers(
        Quirk::UncertainValues,
        DEADLINE,
        FailureReason::Refused,
        "Read of Value of",
        "UncertainLastUsableValue",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_object_without_buildinfo_is_malformed() {
    quirk_fails_then_recovers(
        Quirk::NoBuildInfo,
        DEADLINE,
        FailureReason::Malformed,
        "Server/ServerStatus/BuildInfo/",
        "BadNodeIdUnknown",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_points_that_never_end_hit_a_bound() {
    quirk_fails_then_recovers(
        Quirk::EndlessContinuation,
        DEADLINE,
        FailureReason::Bound,
        &format!("BrowseNext of nsu={PLC};s=Mixer.Setpoints"),
        "BrowseNext rounds",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_nested_folders_hit_the_depth_bound() {
    quirk_fails_then_recovers(
        Quirk::DeepNesting,
        DEADLINE,
        FailureReason::Bound,
        "Browse of",
        "more than 64 levels",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_with_a_million_references_hits_the_width_bound_quickly() {
    quirk_fails_then_recovers(
        Quirk::MillionRefs,
        DEADLINE,
        FailureReason::Bound,
        &format!("of nsu={PLC};s=Mixer.Setpoints"),
        "more than 10000 references from one node",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_mebibyte_string_is_refused_by_size() {
    quirk_fails_then_recovers(
        Quirk::HugeString,
        DEADLINE,
        FailureReason::Bound,
        "Read of Value of ns=2;s=Mixer.Setpoints.RecipeName",
        "server answered BadResponseTooLarge: the answer is larger than the 2097152 bytes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_busy_not_refused() {
    quirk_fails_then_recovers(
        Quirk::Busy,
        DEADLINE,
        FailureReason::Busy,
        "Read of Server/NamespaceArray",
        "BadServerTooBusy",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_node_that_reads_as_unknown_is_a_contradiction() {
    quirk_fails_then_recovers(
        Quirk::UnknownOnRead,
        DEADLINE,
        FailureReason::Refused,
        &format!("of nsu={PLC};s=Mixer.Setpoints."),
        "its own Browse lists (a contradiction)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_refused_although_its_access_level_grants_reading_is_a_contradiction() {
    quirk_fails_then_recovers(
        Quirk::UnreadableValues,
        DEADLINE,
        FailureReason::Refused,
        &format!("Read of Value of nsu={PLC};s=Mixer.Setpoints."),
        "UserAccessLevel grants CurrentRead (a contradiction)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_slower_than_its_deadline_stops_at_the_deadline() {
    quirk_fails_then_recovers(
        Quirk::Slow,
        "capture_timeout_ms = 1000",
        FailureReason::Bound,
        otdrift_protocols::WHOLE_CAPTURE,
        "capture_timeout_ms (1000 ms)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts_on_the_same_address() {
    let first = mixer().await;
    let addr = first.local_addr();
    let pki = Pki::new();
    let mut c = collector(&first.endpoint_url(), "", RECIPE, &pki);
    let before = c.capture().await.expect("capture");
    first.shutdown();
    first.stopped().await;
    let down = c.capture().await.expect_err("nothing listens");
    assert!(down.is_unreachable(), "{down:?}");
    let second = OpcuaSimulator::start(addr, first.state())
        .await
        .expect("restart");
    let after = c.capture().await.expect("capture after restart");
    assert_eq!(after.snapshot.digest(), before.snapshot.digest());
    assert_eq!(after.stats.connects, 1);
    assert_eq!(second.request_log().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setpoint_labels_name_the_configured_node() {
    let asset = asset_from(&format!(
        "[agent]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\n[[asset]]\nid = \"m\"\nprotocol = \"opcua\"\naddress = \"opc.tcp://127.0.0.1:4840/\"\n{RECIPE}\n  [[asset.setpoints]]\n  name = \"dosing\"\n  node = \"nsu={PLC};s=Mixer.Setpoints.Dosing\"\n"
    ));
    let label = |p: &str| otdrift_protocols::setpoint_label(&asset, p);
    assert_eq!(
        label(&value_path("Mixer.Setpoints.MixSpeed")).as_deref(),
        Some("recipe")
    );
    assert_eq!(
        label(&value_path("Mixer.Setpoints.Dosing.Water")).as_deref(),
        Some("dosing")
    );
    assert_eq!(
        label(&node_path("Mixer.Setpoints", "browse_name")).as_deref(),
        Some("recipe")
    );
    assert_eq!(label(&value_path("Mixer.Runtime.Speed")), None);
    assert_eq!(label("opcua/server/build_info/product_name"), None);
}

/// A raw TCP peer that answers every chunk it reads with the next scripted reply (then
/// closes, or keeps quiet when the script runs out).
async fn hostile_peer(script: Vec<Vec<u8>>, close_after: bool) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                for reply in script {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
                if close_after {
                    return;
                }
                // Swallow whatever comes next without answering.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn chunk(kind: &[u8; 3], body: &[u8]) -> Vec<u8> {
    let mut out = kind.to_vec();
    out.push(b'F');
    out.extend_from_slice(&u32::try_from(8 + body.len()).expect("size").to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn ack() -> Vec<u8> {
    let mut body = Vec::new();
    for v in [0u32, 65535, 65535, 0, 0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    chunk(b"ACK", &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_from_a_raw_peer_never_panic() {
    let mut huge_size = b"ACKF".to_vec();
    huge_size.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_size.extend_from_slice(&[0; 20]);
    let mut err_huge_reason = 0x8007_0000u32.to_le_bytes().to_vec();
    err_huge_reason.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    err_huge_reason.extend_from_slice(b"short");
    let mut opn_garbage = 1u32.to_le_bytes().to_vec(); // channel id
    opn_garbage.extend_from_slice(&0x7fff_fff0u32.to_le_bytes()); // policy URI length
    opn_garbage.extend_from_slice(b"http://opcfoundation.org/UA/SecurityPolicy#None");
    let mut msg_garbage = 1u32.to_le_bytes().to_vec();
    msg_garbage.extend_from_slice(&[0xff; 64]);
    let noise: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let scripts: Vec<(&str, Vec<Vec<u8>>, bool)> = vec![
        ("garbage", vec![b"garbage!garbage!garbage!".to_vec()], false),
        ("ack with a 4 GiB size", vec![huge_size], false),
        ("ack too short", vec![chunk(b"ACK", &[1, 2, 3])], false),
        (
            "error with a 2 GiB reason",
            vec![chunk(b"ERR", &err_huge_reason)],
            false,
        ),
        (
            "open answered with an absurd policy length",
            vec![ack(), chunk(b"OPN", &opn_garbage)],
            false,
        ),
        (
            "open answered with a message chunk",
            vec![ack(), chunk(b"MSG", &msg_garbage)],
            false,
        ),
        ("64 KiB of noise", vec![noise], false),
        ("closed after hello", vec![], true),
        ("hello never answered", vec![], false),
    ];
    for (what, script, close) in scripts {
        let addr = hostile_peer(script, close).await;
        let pki = Pki::new();
        let asset = asset_from(&format!(
            "[agent]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\n[[asset]]\nid = \"hostile-1\"\nprotocol = \"opcua\"\naddress = \"opc.tcp://{addr}/\"\ntimeout_ms = 500\n{RECIPE}"
        ));
        let ProtocolConfig::Opcua(cfg) = &asset.protocol else {
            panic!("opcua");
        };
        let mut c = OpcuaCollector::new(&asset, cfg).with_pki_dir(pki.0.clone());
        let started = std::time::Instant::now();
        let result = c.capture().await;
        let err = result.expect_err(what);
        assert!(err.to_string().contains("hostile-1"), "{what}: {err}");
        // A deadline check, not a measurement: nothing hangs past a few timeouts.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{what}"
        );
    }
}

// ------------------------------------------------------------------ peers (asyncua)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_asyncua_client_reads_the_simulator() {
    let sim = mixer().await;
    let url = sim.endpoint_url();
    for (user, password) in [("", ""), ("otdrift", "otdrift-demo")] {
        let url = url.clone();
        let check = "the asyncua client against the OPC UA simulator";
        // The peer blocks on its own network calls: run it off the runtime the simulator
        // needs.
        let out = tokio::task::spawn_blocking(move || {
            peers::run(
                check,
                &["asyncua"],
                "opcua_client.py",
                &[&url, user, password],
            )
        })
        .await
        .expect("peer task");
        let Some(out) = out else { return };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "asyncua client failed:\n{stdout}");
        let doc: serde_json::Value =
            serde_json::from_str(stdout.trim()).expect("one JSON document");
        assert_eq!(doc["namespaces"][2], PLC);
        assert_eq!(
            doc["product_name"],
            "Simulated CPU 1516-3 PN/DP OPC UA server"
        );
        assert_eq!(doc["software_version"], "V3.1.2");
        assert_eq!(doc["max_nodes_per_read"], 1000);
        assert_eq!(
            doc["children"],
            serde_json::json!([
                "AgitatorEnabled",
                "Dosing",
                "MaxTorque",
                "MixSpeed",
                "MixTime",
                "RampProfile",
                "RecipeName",
                "TargetTemp"
            ])
        );
        assert_eq!(doc["speed"], 72.5);
        assert_eq!(doc["speed_type"], "Double");
        assert_eq!(doc["ramp"], serde_json::json!([10, 25, 50, 75, 100]));
        assert_eq!(doc["recipe"], "Batch-B12");
    }
    let log = sim.request_log().entries();
    assert!(
        log.iter()
            .any(|e| e.name == "activate_session" && e.detail.contains("user=otdrift"))
    );
    assert!(log.iter().any(|e| e.name == "browse"));
    assert_eq!(sim.request_log().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_asyncua_server_is_captured() {
    let check = "the collector against an asyncua server";
    let port = std::net::TcpListener::bind(LOOPBACK)
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let Some(server) = tokio::task::spawn_blocking(move || {
        peers::PeerServer::start(check, &["asyncua"], "opcua_server.py", &[&port])
    })
    .await
    .expect("peer task") else {
        return;
    };
    let url = format!("opc.tcp://{}/peer/", server.addr);
    let pki = Pki::new();
    let setpoints =
        "  [[asset.setpoints]]\n  name = \"recipe\"\n  node = \"nsu=urn:peer:plant;s=Recipe\"\n";
    let mut c = collector(&url, "", setpoints, &pki);
    let first = c.capture().await.expect("capture of the asyncua server");
    let value = |s: &otdrift_core::Snapshot, id: &str| {
        s.get(&format!("opcua/value/nsu=urn:peer:plant;s={id}"))
            .map(|i| i.value().clone())
    };
    assert_eq!(
        value(&first.snapshot, "Recipe.Speed"),
        Some(Value::F64(72.5))
    );
    assert_eq!(
        value(&first.snapshot, "Recipe.Count"),
        Some(Value::UInt(12))
    );
    assert_eq!(
        value(&first.snapshot, "Recipe.Name"),
        Some(Value::from("B12"))
    );
    assert_eq!(
        value(&first.snapshot, "Recipe.Enabled"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        value(&first.snapshot, "Recipe.Profile"),
        Some(Value::List(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(3)
        ]))
    );
    assert_eq!(
        first
            .snapshot
            .get("opcua/node/nsu=urn:peer:plant;s=Recipe.Count/data_type")
            .map(|i| i.value().clone()),
        Some(Value::from("UInt32"))
    );
    assert!(
        first
            .snapshot
            .get("opcua/server/build_info/product_name")
            .is_some()
    );
    let second = c.capture().await.expect("second capture");
    assert_eq!(second.snapshot.digest(), first.snapshot.digest());
    assert_eq!(second.stats.connects, 0);
    // A new collector (a one-shot `otdrift capture`) opens its session on the kept endpoint
    // and asks asyncua's server for its endpoints on that channel: the same capture.
    assert!(pki.0.join("pinned/mixer-2.endpoint").exists());
    let mut one_shot = collector(&url, "", setpoints, &pki);
    let kept = one_shot
        .capture()
        .await
        .expect("capture on the kept endpoint");
    one_shot.close().await;
    assert_eq!(kept.snapshot.digest(), first.snapshot.digest());
    assert_eq!(
        kept.runtime.get("opcua/security/certificate_pin"),
        second.runtime.get("opcua/security/certificate_pin")
    );

    let write_url = url.clone();
    let written = tokio::task::spawn_blocking(move || {
        peers::run(
            check,
            &["asyncua"],
            "opcua_write.py",
            &[&write_url, "ns=2;s=Recipe.Speed", "75.0"],
        )
    })
    .await
    .expect("peer task")
    .expect("asyncua ran for the server, so it runs for the client");
    assert!(written.status.success(), "the peer write failed");
    let changed = c.capture().await.expect("capture after the change");
    let diff = changes(&first.snapshot, &changed.snapshot);
    assert_eq!(
        diff,
        vec![(
            "opcua/value/nsu=urn:peer:plant;s=Recipe.Speed".to_owned(),
            ChangeKind::Changed
        )]
    );
    c.close().await;
    drop(server);
}
