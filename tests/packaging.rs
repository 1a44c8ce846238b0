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
