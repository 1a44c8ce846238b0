//! The OPC UA collector against the OPC UA simulator over loopback.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{SimulatedDevice, assert_collector_compliance, asset_from};
use otdrift_config::ProtocolConfig;
use otdrift_core::{ChangeKind, Class, Diff, Value};
use otdrift_protocols::opcua::OpcuaCollector;
use otdrift_protocols::{Collector, ErrorKind};
use otdrift_simulators::opcua::{OpcuaSimHandle, OpcuaSimulator, OpcuaState, Quirk, ValueType};

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
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
    let asset = asset_from(&format!(
        r#"
[agent]
id = "gw"
data_dir = "/tmp/unused"

[[asset]]
id = "mixer-2"
protocol = "opcua"
address = "{endpoint}"
timeout_ms = 2000
{extra}
{setpoints}
"#
    ));
    let ProtocolConfig::Opcua(cfg) = &asset.protocol else {
        panic!("an opcua asset");
    };
    OpcuaCollector::new(&asset, cfg).with_pki_dir(pki.0.clone())
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
    // Batches respect MaxNodesPerRead = 5 and MaxNodesPerBrowse = 5.
    for entry in moved.request_log().entries() {
        if matches!(entry.name.as_str(), "read" | "browse" | "browse_next") {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quirks_become_not_available_items_or_typed_errors() {
    let sim = mixer().await;
    let pki = Pki::new();
    let mut c = collector(&sim.endpoint_url(), "", RECIPE, &pki);
    let normal = c.capture().await.expect("capture");
    let unavailable = |s: &otdrift_core::Snapshot, p: &str| match s.get(p).map(|i| i.value()) {
        Some(Value::Unavailable(reason)) => reason.clone(),
        other => panic!("{p}: expected not available, got {other:?}"),
    };

    sim.set_quirk(Quirk::EmptyBuildInfo, true);
    let empty = c.capture().await.expect("capture");
    assert_eq!(
        unavailable(&empty.snapshot, "opcua/server/build_info/product_name"),
        "server reports an empty product_name"
    );
    assert_eq!(
        unavailable(&empty.snapshot, "opcua/server/build_info/build_date"),
        "server reports no build_date"
    );
    let empty_again = c.capture().await.expect("capture");
    assert_eq!(empty.snapshot.digest(), empty_again.snapshot.digest());
    sim.set_quirk(Quirk::EmptyBuildInfo, false);

    sim.set_quirk(Quirk::PlaceholderBuildInfo, true);
    let placeholder = c.capture().await.expect("capture");
    assert_eq!(
        placeholder
            .snapshot
            .get("opcua/server/build_info/product_name")
            .map(|i| i.value().clone()),
        Some(Value::from("OPC UA Server"))
    );
    sim.set_quirk(Quirk::PlaceholderBuildInfo, false);

    sim.set_quirk(Quirk::RefuseIdentity, true);
    let refused = c.capture().await.expect("capture");
    assert_eq!(
        unavailable(
            &refused.snapshot,
            "opcua/server/build_info/software_version"
        ),
        "server answered BadUserAccessDenied"
    );
    assert_eq!(
        refused.snapshot.class_digest(Class::Setpoint),
        normal.snapshot.class_digest(Class::Setpoint)
    );
    sim.set_quirk(Quirk::RefuseIdentity, false);

    sim.set_quirk(Quirk::NoBrowseNext, true);
    sim.set_quirk(Quirk::TinyLimits, true);
    let mut tiny = collector(&sim.endpoint_url(), "", RECIPE, &Pki::new());
    let no_next = tiny.capture().await.expect("capture");
    assert!(
        unavailable(&no_next.snapshot, &node_path("Mixer.Setpoints", "children"))
            .contains("BadServiceUnsupported")
    );
    let no_next_again = tiny.capture().await.expect("capture");
    assert_eq!(no_next.snapshot.digest(), no_next_again.snapshot.digest());
    sim.set_quirk(Quirk::NoBrowseNext, false);
    sim.set_quirk(Quirk::BrowseNextRestarts, true);
    let restarts = tiny.capture().await.expect("capture");
    assert!(
        unavailable(
            &restarts.snapshot,
            &node_path("Mixer.Setpoints", "children")
        )
        .contains("does not honour continuation points")
    );
    sim.set_quirk(Quirk::BrowseNextRestarts, false);
    sim.set_quirk(Quirk::TinyLimits, false);
    tiny.close().await;

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

    // A node the server hides.
    let mut hiding = OpcuaState::demo().with_tick_ms(0);
    let text = otdrift_simulators::opcua::MIXER_DEMO_TOML.replace(
        "id = \"Mixer.Setpoints.MaxTorque\"         # Nm\ntype = \"Int32\"\nvalue = 420",
        "id = \"Mixer.Setpoints.MaxTorque\"\ntype = \"Int32\"\nvalue = 420\nreadable = false",
    );
    hiding = OpcuaState::from_toml(&text)
        .unwrap_or(hiding)
        .with_tick_ms(0);
    let hider = OpcuaSimulator::start(LOOPBACK, hiding).await.expect("sim");
    let mut h = collector(&hider.endpoint_url(), "", RECIPE, &Pki::new());
    let hidden_value = h.capture().await.expect("capture");
    assert_eq!(
        unavailable(
            &hidden_value.snapshot,
            &value_path("Mixer.Setpoints.MaxTorque")
        ),
        "server answered BadNotReadable"
    );

    // A configured node the server does not have.
    let missing = "  [[asset.setpoints]]\n  name = \"gone\"\n  node = \"ns=2;s=Mixer.Nowhere\"\n";
    let mut m = collector(&sim.endpoint_url(), "", missing, &Pki::new());
    let capture = m.capture().await.expect("capture");
    assert_eq!(
        unavailable(
            &capture.snapshot,
            &format!("opcua/node/nsu={PLC};s=Mixer.Nowhere")
        ),
        "server answered BadNodeIdUnknown"
    );
    let unknown_ns = "  [[asset.setpoints]]\n  name = \"gone\"\n  node = \"nsu=urn:nope;s=X\"\n";
    let mut u = collector(&sim.endpoint_url(), "", unknown_ns, &Pki::new());
    let capture = u.capture().await.expect("capture");
    assert!(
        unavailable(&capture.snapshot, "opcua/node/nsu=urn:nope;s=X").contains("NamespaceArray")
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

/// Whether the independent peer (asyncua, `pip install asyncua==2.1.0`) can run here. CI sets
/// `OTDRIFT_REQUIRE_PEERS=1`, which turns "missing" into a failure so the check always runs
/// there (the same rule as `tests/support::peer`).
fn asyncua_available(check: &str) -> bool {
    let required = std::env::var_os("OTDRIFT_REQUIRE_PEERS").is_some_and(|v| v == "1");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import asyncua"])
        .output();
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                !required,
                "{check} needs asyncua (pip install asyncua==2.1.0): {why}"
            );
            eprintln!("skipping {check}: asyncua is not installed ({why})");
            false
        }
        Err(e) => {
            assert!(!required, "{check} needs python3: {e}");
            eprintln!("skipping {check}: no python3 ({e})");
            false
        }
    }
}

fn write_script(name: &str, text: &str) -> (Pki, PathBuf) {
    let dir = Pki::new();
    std::fs::create_dir_all(&dir.0).expect("dir");
    let path = dir.0.join(name);
    std::fs::write(&path, text).expect("write script");
    (dir, path)
}

const ASYNCUA_CLIENT: &str = r#"
import asyncio, json, sys
from asyncua import Client, ua

async def main(url, user, password):
    client = Client(url=url, timeout=10)
    if user:
        client.set_user(user)
        client.set_password(password)
    async with client:
        ns = await client.get_namespace_array()
        idx = ns.index("urn:otdrift:sim:mixer-m2:program")
        out = {"namespaces": ns}
        for name, nid in [
            ("product_name", ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName),
            ("software_version", ua.ObjectIds.Server_ServerStatus_BuildInfo_SoftwareVersion),
            ("max_nodes_per_read", ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead),
        ]:
            out[name] = await client.get_node(nid).read_value()
        folder = client.get_node(f"ns={idx};s=Mixer.Setpoints")
        names = []
        for child in await folder.get_children():
            names.append((await child.read_browse_name()).Name)
        out["children"] = sorted(names)
        speed = client.get_node(f"ns={idx};s=Mixer.Setpoints.MixSpeed")
        out["speed"] = await speed.read_value()
        out["speed_type"] = (await speed.read_data_type_as_variant_type()).name
        out["ramp"] = await client.get_node(f"ns={idx};s=Mixer.Setpoints.RampProfile").read_value()
        out["recipe"] = await client.get_node(f"ns={idx};s=Mixer.Setpoints.RecipeName").read_value()
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_asyncua_client_reads_the_simulator() {
    if !asyncua_available("the asyncua client against the simulator") {
        return;
    }
    let sim = mixer().await;
    let (_dir, script) = write_script("client.py", ASYNCUA_CLIENT);
    for (user, password) in [("", ""), ("otdrift", "otdrift-demo")] {
        let out = tokio::process::Command::new("python3")
            .arg(&script)
            .args([sim.endpoint_url().as_str(), user, password])
            .output()
            .await
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "asyncua client failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
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

const ASYNCUA_SERVER: &str = r#"
import asyncio, sys
from asyncua import Server, ua

async def main(port):
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/peer/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:peer:plant")
    recipe = await server.nodes.objects.add_folder(ua.NodeId("Recipe", idx), "Recipe")
    speed = await recipe.add_variable(ua.NodeId("Recipe.Speed", idx), "Speed", 72.5)
    await recipe.add_variable(ua.NodeId("Recipe.Count", idx), "Count", ua.Variant(12, ua.VariantType.UInt32))
    await recipe.add_variable(ua.NodeId("Recipe.Name", idx), "Name", "B12")
    await recipe.add_variable(ua.NodeId("Recipe.Enabled", idx), "Enabled", True)
    await recipe.add_variable(ua.NodeId("Recipe.Profile", idx), "Profile", ua.Variant([1, 2, 3], ua.VariantType.Int16))
    async with server:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if line.startswith("set "):
                await speed.write_value(float(line.split()[1]))
                print("ok", flush=True)

asyncio.run(main(sys.argv[1]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_asyncua_server_is_captured() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    if !asyncua_available("the collector against an asyncua server") {
        return;
    }
    let port = std::net::TcpListener::bind(LOOPBACK)
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (_dir, script) = write_script("server.py", ASYNCUA_SERVER);
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("asyncua server starts in time")
        .expect("read");
    assert_eq!(ready.as_deref(), Some("ready"));

    let pki = Pki::new();
    let setpoints =
        "  [[asset.setpoints]]\n  name = \"recipe\"\n  node = \"nsu=urn:peer:plant;s=Recipe\"\n";
    let mut c = collector(
        &format!("opc.tcp://127.0.0.1:{port}/peer/"),
        "",
        setpoints,
        &pki,
    );
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

    stdin.write_all(b"set 75.0\n").await.expect("send");
    let ack = lines.next_line().await.expect("read");
    assert_eq!(ack.as_deref(), Some("ok"));
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
    drop(stdin);
    let _ = child.kill().await;
}
