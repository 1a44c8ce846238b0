//! A change staged on a spare controller and approved before production is touched, as a
//! plant's runbook for a critical line requires: two `otdrift sim ads` processes that differ
//! only in identity (device name) and history (online-change counter), a tier-1 policy (two
//! approvers, staging first, reviewed diff), tokens minted by `otdrift sign-approval` with
//! `--content` and `--diff`, and the binary over loopback.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use support::{Sim, run, write_config};

/// The demo filler without its tick; the spare differs in name and online-change counter.
fn start_sim(dir: &Path, name: &str, device: &str, counter: u32) -> Sim {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("dir");
    let text = otdrift_simulators::ads::FILLER_DEMO_TOML
        .replace("tick_ms = 1000", "tick_ms = 0")
        .replace(
            "device_name = \"Plc30 App\"",
            &format!("device_name = \"{device}\""),
        )
        .replace(
            "online_change_count = 0",
            &format!("online_change_count = {counter}"),
        );
    let state = sub.join("state.toml");
    std::fs::write(&state, text).expect("state");
    Sim::start("ads", Some(&state), &sub)
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let prefix = dir.join(name);
    let out = support::otdrift()
        .args(["keygen", "--out"])
        .arg(&prefix)
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).expect("pub");
    (dir.join(format!("{name}.key")), public.trim().to_owned())
}

struct Rig {
    dir: tempfile::TempDir,
    production: Sim,
    spare: Sim,
    cfg: PathBuf,
    keys: [PathBuf; 2],
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let production = start_sim(dir.path(), "production", "Plc30 App", 41);
    let spare = start_sim(dir.path(), "spare", "Plc30 Spare", 7);
    let (key_a, pub_a) = keygen(dir.path(), "eng-a");
    let (key_b, pub_b) = keygen(dir.path(), "eng-b");
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
id = "gw-staging"
data_dir = "{data}"

[[approver]]
id = "eng-a"
public_key = "{pub_a}"

[[approver]]
id = "eng-b"
public_key = "{pub_b}"

[[policy]]
id = "tier-1"
approvals = 2
require_staging = true
diff_review = true

[[asset]]
id = "filler-3"
protocol = "ads"
address = "{prod}"
ams_net_id = "5.80.201.232.1.1"
policy = "tier-1"
  [[asset.setpoints]]
  name = "recipe"
  symbol = "GVL_Recipe.*"

[[asset]]
id = "filler-3-spare"
protocol = "ads"
address = "{spare}"
ams_net_id = "5.80.201.232.1.1"
staging_for = "filler-3"
  [[asset.setpoints]]
  name = "recipe"
  symbol = "GVL_Recipe.*"
"#,
            data = dir.path().join("data").display(),
            prod = production.addr,
            spare = spare.addr,
        ),
    );
    Rig {
        keys: [key_a, key_b],
        dir,
        production,
        spare,
        cfg,
    }
}

impl Rig {
    fn capture(&self, asset: &str) -> (i32, Json) {
        let r = run(&self.cfg, &["capture", asset, "--json"]);
        assert!(r.code == 0 || r.code == 3, "{r:?}");
        (r.code, r.json())
    }

    fn sign_and_approve(&self, who: usize, jti: &str, content: &str, diff: &str) -> Json {
        let out = self.dir.path().join(format!("{jti}.jwt"));
        let signed = run(
            &self.cfg,
            &[
                "sign-approval",
                "--key",
                &self.keys[who].display().to_string(),
                "--asset",
                "filler-3",
                "--change",
                "CHG-77",
                "--content",
                content,
                "--diff",
                diff,
                "--requestor",
                "Kim Oduya",
                "--jti",
                jti,
                "--out",
                &out.display().to_string(),
            ],
        );
        assert_eq!(signed.code, 0, "{signed:?}");
        let r = run(
            &self.cfg,
            &["approve", &out.display().to_string(), "--json"],
        );
        assert_eq!(r.code, 0, "{r:?}");
        r.json()
    }
}

#[test]
fn a_change_staged_on_a_spare_is_approved_before_production_and_applies_there() {
    let mut rig = rig();
    let (_, prod0) = rig.capture("filler-3");
    let (_, spare0) = rig.capture("filler-3-spare");
    // Same content, another device: identity and history differ, the change signature not.
    assert_ne!(prod0["digest"], spare0["digest"]);
    assert_eq!(prod0["change_signature"], spare0["change_signature"]);
    assert_ne!(prod0["classes"]["identity"], spare0["classes"]["identity"]);
    assert_ne!(prod0["classes"]["history"], spare0["classes"]["history"]);
    assert_eq!(prod0["classes"]["program"], spare0["classes"]["program"]);

    // The change is made on the spare first, and its signature learned there.
    rig.spare
        .cmd("online-change add GVL_Recipe.RinseTime TIME = 1500");
    let (code, staged) = rig.capture("filler-3-spare");
    assert_eq!(
        code, 3,
        "an unapproved change on the spare is drift there: {staged}"
    );
    let content = staged["change_signature"].as_str().expect("sig").to_owned();
    let staged_digest = staged["digest"].as_str().expect("digest").to_owned();
    // The reviewed diff: production's baseline to the staged state, content items only.
    let diff = run(
        &rig.cfg,
        &["diff", "filler-3", "--to", &staged_digest, "--json"],
    );
    assert_eq!(diff.code, 0, "{diff:?}");
    let diff_digest = diff.json()["diff_digest"]
        .as_str()
        .expect("diff")
        .to_owned();
    assert!(
        diff.json()["changes"].as_array().is_some_and(
            |c| c.len() > diff.json()["content_changes"].as_u64().unwrap_or(0) as usize
        ),
        "identity and history differences are in the diff but not in its digest"
    );

    // One approver signs: not enough for tier-1, and the change is not on production yet.
    let first = rig.sign_and_approve(0, "chg77-a", &content, &diff_digest);
    assert_eq!(first["status"], "pending");
    // The spare already ran the content: the change is linked to it, and the spare's
    // baseline follows the content approval on its next capture.
    let (code, spare_again) = rig.capture("filler-3-spare");
    assert_eq!(code, 0, "{spare_again}");
    assert_eq!(spare_again["baseline"]["digest"], spare_again["digest"]);

    // Production is changed with one approval: drift that names the unmet rule.
    rig.production
        .cmd("online-change add GVL_Recipe.RinseTime TIME = 1500");
    let (code, early) = rig.capture("filler-3");
    assert_eq!(code, 3);
    assert_eq!(early["change_signature"], Json::String(content.clone()));
    let reason = early["drift"]["policy_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("approvals 1 of 2"), "{early}");
    assert!(!reason.contains("not staged"), "{reason}");
    assert!(!reason.contains("diff not reviewed"), "{reason}");

    // The second approver signs while the state holds: applied at once.
    let second = rig.sign_and_approve(1, "chg77-b", &content, &diff_digest);
    assert_eq!(second["status"], "applied", "{second}");
    let (code, after) = rig.capture("filler-3");
    assert_eq!(code, 0, "{after}");
    assert_eq!(after["baseline"]["provisional"], false);
    assert_eq!(after["baseline"]["digest"], after["digest"]);

    // The evidence pack says where the change was validated, by whom, and what they reviewed.
    let out = rig.dir.path().join("evidence");
    let written = run(
        &rig.cfg,
        &["evidence", "CHG-77", "--out", &out.display().to_string()],
    );
    assert_eq!(written.code, 0, "{written:?}");
    let pack: Json =
        serde_json::from_str(&std::fs::read_to_string(out.join("evidence.json")).expect("pack"))
            .expect("json");
    let staging = &pack["pack"]["staging"][0];
    assert_eq!(staging["staging_asset"], "filler-3-spare");
    assert!(
        staging["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("validated on staging filler-3-spare at ")),
        "{staging}"
    );
    assert_eq!(
        pack["pack"]["changes"][0]["change_signature"],
        Json::String(content.clone())
    );
    assert_eq!(
        pack["pack"]["changes"][0]["diff_digest"],
        Json::String(diff_digest)
    );
    let html = std::fs::read_to_string(out.join("evidence.html")).expect("html");
    assert!(
        html.contains("validated on staging filler-3-spare"),
        "evidence.html"
    );
    let key = run(&rig.cfg, &["agent-key", "show"])
        .stdout
        .trim()
        .to_owned();
    assert_eq!(
        run(
            &rig.cfg,
            &[
                "evidence-verify",
                &out.join("evidence.json").display().to_string(),
                "--agent-key",
                &key
            ]
        )
        .code,
        0
    );
    rig.production.assert_no_writes();
    rig.spare.assert_no_writes();
}

/// Production changed before the spare ever ran the content: `require_staging` is not met,
/// whatever the approvals say.
#[test]
fn a_change_that_skipped_staging_is_not_applied() {
    let mut rig = rig();
    rig.capture("filler-3");
    rig.capture("filler-3-spare");
    rig.production
        .cmd("online-change add GVL_Recipe.RinseTime TIME = 1500");
    let (code, changed) = rig.capture("filler-3");
    assert_eq!(code, 3);
    let content = changed["change_signature"]
        .as_str()
        .expect("sig")
        .to_owned();
    let diff = run(&rig.cfg, &["diff", "filler-3", "--json"]).json()["diff_digest"]
        .as_str()
        .expect("diff")
        .to_owned();
    assert_eq!(
        rig.sign_and_approve(0, "skip-a", &content, &diff)["status"],
        "pending"
    );
    assert_eq!(
        rig.sign_and_approve(1, "skip-b", &content, &diff)["status"],
        "pending"
    );
    let (code, still) = rig.capture("filler-3");
    assert_eq!(code, 3);
    let reason = still["drift"]["policy_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not staged"), "{still}");
    // Staging it now is too late for this deployment: it reached production first.
    rig.spare
        .cmd("online-change add GVL_Recipe.RinseTime TIME = 1500");
    rig.capture("filler-3-spare");
    let (code, _) = rig.capture("filler-3");
    assert_eq!(code, 3);
    rig.production.assert_no_writes();
}
