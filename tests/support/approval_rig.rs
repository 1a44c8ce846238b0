//! The approval rig shared by the approval tests: a Modbus simulator process, an approver key
//! made by `otdrift keygen`, a config naming both, and helpers to capture, sign, approve and
//! verify evidence through the `otdrift` binary.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::{Run, Sim, run, write_config};

pub const STATE: &str = r#"
unit_id = 1
tick_ms = 0

[identity]
vendor_name = "otdrift test"
product_code = "E2E-2"
revision = "3.0"

[[holding]]
start = 0
count = 64
fill = 500
"#;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
    pub cfg: PathBuf,
    pub key: PathBuf,
}

/// The rig's setpoints: the whole recipe range as registers.
pub const SETPOINTS: &str = r#"
  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 64
"#;

pub fn config_text(dir: &Path, data: &str, address: &str, public_key: &str) -> String {
    config_text_with(dir, data, address, public_key, SETPOINTS)
}

/// [`config_text`] with other `[[asset.setpoints]]` tables.
pub fn config_text_with(
    dir: &Path,
    data: &str,
    address: &str,
    public_key: &str,
    setpoints: &str,
) -> String {
    format!(
        r#"
[agent]
id = "gw-approvals"
data_dir = "{data}"

[[approver]]
id = "plant-eng-mgr"
public_key = "{public_key}"

[[asset]]
id = "press-7"
protocol = "modbus"
address = "{address}"
timeout_ms = 3000
{setpoints}"#,
        data = dir.join(data).display()
    )
}

pub fn rig() -> Rig {
    rig_with(SETPOINTS)
}

/// The rig with its asset's setpoints as `setpoints` (`[[asset.setpoints]]` tables) says.
pub fn rig_with(setpoints: &str) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.toml");
    std::fs::write(&state, STATE).expect("state");
    let sim = Sim::start("modbus", Some(&state), dir.path());
    let prefix = dir.path().join("approver");
    let keygen = super::otdrift()
        .args(["keygen", "--out"])
        .arg(&prefix)
        .output()
        .expect("keygen runs");
    assert!(keygen.status.success(), "{keygen:?}");
    let public = std::fs::read_to_string(dir.path().join("approver.pub")).expect("pub");
    assert!(public.starts_with("ed25519:"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("approver.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cfg = write_config(
        dir.path(),
        &config_text_with(dir.path(), "data", &sim.addr, public.trim(), setpoints),
    );
    Rig {
        key: dir.path().join("approver.key"),
        dir,
        sim,
        cfg,
    }
}

impl Rig {
    pub fn run(&self, args: &[&str]) -> Run {
        run(&self.cfg, args)
    }

    pub fn capture(&self, extra: &[&str]) -> (i32, Json) {
        let mut args = vec!["capture", "press-7", "--json"];
        args.extend_from_slice(extra);
        let r = self.run(&args);
        assert!(r.code == 0 || r.code == 3, "{r:?}");
        (r.code, r.json())
    }

    /// Mints a token with `sign-approval` into a file and returns its path.
    pub fn sign(&self, name: &str, args: &[&str]) -> PathBuf {
        let out = self.dir.path().join(name);
        let mut full = vec!["sign-approval", "--key"];
        let key = self.key.display().to_string();
        full.push(&key);
        full.extend_from_slice(&["--asset", "press-7", "--approver", "Dana Okafor"]);
        full.extend_from_slice(args);
        let out_text = out.display().to_string();
        full.extend_from_slice(&["--out", &out_text]);
        let r = self.run(&full);
        assert_eq!(r.code, 0, "{r:?}");
        out
    }

    pub fn approve(&self, token: &Path) -> Run {
        self.run(&["approve", &token.display().to_string(), "--json"])
    }

    /// The agent's public key, as an auditor pins it (`agent-key show`).
    pub fn agent_key(&self) -> String {
        let r = self.run(&["agent-key", "show"]);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.trim().to_owned()
    }

    /// `evidence-verify` against the pinned agent key.
    pub fn verify_pack(&self, pack: &Path, extra: &[&str]) -> Run {
        let key = self.agent_key();
        let pack = pack.display().to_string();
        let mut args = vec!["evidence-verify", &pack, "--agent-key", &key];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

pub fn plus_seconds(ts: &str, secs: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(ts).expect("timestamp");
    (t + chrono::TimeDelta::seconds(secs)).to_rfc3339()
}
