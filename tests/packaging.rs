//! What ships in `packaging/` works as shipped.

mod support;

use std::path::Path;

fn packaged_config() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/otdrift.toml"))
        .expect("packaging/otdrift.toml")
}

#[test]
fn the_default_config_passes_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = support::write_config(dir.path(), &packaged_config());
    let checked = support::run(&cfg, &["check-config"]);
    assert_eq!(checked.code, 0, "{checked:?}");
}

/// Every commented asset example is itself valid once uncommented, so an operator who
/// uncomments one starts from a config that checks.
#[test]
fn every_commented_asset_example_is_valid() {
    let text = packaged_config();
    let assets_start = text.find("# Assets:").expect("assets section");
    let mut out = String::from(&text[..assets_start]);
    for line in text[assets_start..].lines() {
        let code = line.strip_prefix("# ").unwrap_or(line);
        let trimmed = code.trim_start();
        let is_code = trimmed.starts_with("[[")
            || trimmed
                .split_once(" = ")
                .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        if is_code {
            out.push_str(code);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let config = otdrift_config::parse(&out, Path::new("uncommented.toml"))
        .unwrap_or_else(|e| panic!("uncommented examples:\n{e}\n---\n{out}"));
    let protocols: Vec<&str> = config
        .assets
        .iter()
        .map(|a| a.protocol.kind().as_str())
        .collect();
    assert_eq!(protocols, ["modbus", "s7", "ads", "cip", "opcua"]);
}

fn unit() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/otdrift.service"),
    )
    .expect("packaging/otdrift.service")
}

/// Every `Key=value` of the unit's [Service] section (a key may repeat).
fn service_keys(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

#[test]
fn the_unit_is_hardened() {
    let keys = service_keys(&unit());
    let get = |k: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |k: &str| -> &str {
        let values = get(k);
        assert_eq!(
            values.len(),
            1,
            "{k} should be set exactly once: {values:?}"
        );
        values[0]
    };
    assert_eq!(one("Type"), "notify", "readiness is signalled");
    assert_eq!(one("User"), "otdrift");
    assert_eq!(one("Group"), "otdrift");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ReadWritePaths"), "/var/lib/otdrift");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "", "no capabilities at all");
    assert_eq!(one("AmbientCapabilities"), "");
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, ["AF_INET", "AF_INET6", "AF_UNIX"]);
    assert!(one("MemoryMax").ends_with('M'), "a memory cap");
    assert_eq!(one("UMask"), "0077");
    assert_eq!(one("ProtectHome"), "yes");
    assert!(
        one("ExecStart").starts_with("/usr/bin/otdrift --config /etc/otdrift/otdrift.toml")
            && one("ExecStart").ends_with(" run")
    );
}

/// `systemd-analyze verify` (and its offline security score) on the unit, with ExecStart
/// pointed at the binary under test, since /usr/bin/otdrift is not installed here.
#[test]
fn systemd_analyze_accepts_the_unit() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("skipping: systemd-analyze is not available on this machine");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otdrift.service");
    std::fs::write(
        &path,
        unit().replace("/usr/bin/otdrift", env!("CARGO_BIN_EXE_otdrift")),
    )
    .expect("unit copy");
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");

    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    assert!(
        score <= 2.0,
        "exposure {score} (systemd's scale: 0 safe .. 10 exposed)"
    );
}

/// The package metadata cargo-deb builds from: the gateway package without the simulators,
/// the test-rig package (variant `sim`) with them under its own name, each with its SBOM.
#[test]
fn the_gateway_package_carries_no_simulator() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("agent/Cargo.toml");
    let manifest: toml::Table = toml::from_str(&manifest).expect("agent/Cargo.toml parses");
    let features = &manifest["features"];
    let default: Vec<&str> = features["default"]
        .as_array()
        .expect("default features")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(default, ["gateway", "sim"]);
    let gateway = features["gateway"].to_string();
    assert!(
        !gateway.contains("sim"),
        "feature gateway pulls the simulators: {gateway}"
    );
    assert_eq!(features["sim"].to_string(), r#"["dep:otdrift-simulators"]"#);
    assert_eq!(
        manifest["dependencies"]["otdrift-simulators"]["optional"].as_bool(),
        Some(true),
        "the simulators are an optional dependency"
    );

    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(deb["name"].as_str(), Some("otdrift"));
    assert_eq!(deb["default-features"].as_bool(), Some(false));
    assert_eq!(deb["features"].to_string(), r#"["gateway"]"#);
    let assets = deb["assets"].to_string();
    assert!(
        assets.contains("usr/share/doc/otdrift/sbom.cdx.json"),
        "{assets}"
    );

    let sim = &deb["variants"]["sim"];
    assert_eq!(sim["name"].as_str(), Some("otdrift-sim"));
    assert_eq!(sim["default-features"].as_bool(), Some(true));
    let sim_assets = sim["assets"].to_string();
    assert!(sim_assets.contains("usr/bin/otdrift-sim"), "{sim_assets}");
    assert!(
        sim_assets.contains("usr/share/doc/otdrift-sim/sbom.cdx.json"),
        "{sim_assets}"
    );
    assert!(
        !sim_assets.contains("otdrift.service"),
        "the test-rig package has no service"
    );
    assert_eq!(sim["conf-files"].as_array().map(Vec::len), Some(0));
}
