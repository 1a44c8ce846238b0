//! Signed approvals and evidence packs, end to end: the `otdrift` binary, keys made by
//! `otdrift keygen`, tokens minted by `otdrift sign-approval`, against Modbus simulator
//! processes over loopback.

mod support;

use serde_json::{Value as Json, json};
use support::approval_rig::{config_text, plus_seconds, rig};
use support::{Sim, run};

#[test]
fn an_approved_change_moves_the_baseline_and_leaves_a_verifiable_evidence_pack() {
    let mut rig = rig();

    // First capture: provisional baseline, approved with a token naming its own digest.
    let (code, first) = rig.capture(&[]);
    assert_eq!(code, 0);
    assert_eq!(first["baseline"]["provisional"], true);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    let token = rig.sign(
        "baseline.jwt",
        &[
            "--change",
            "CHG-0001",
            "--to",
            &b0,
            "--requestor",
            "Lee Brandt",
        ],
    );
    let approved = rig.approve(&token);
    assert_eq!(approved.code, 0, "{approved:?}");
    assert_eq!(approved.json()["status"], "applied");
    let status = rig.run(&["status", "--json"]).json();
    assert_eq!(status["assets"][0]["baseline"]["provisional"], false);
    assert_eq!(status["assets"][0]["baseline"]["digest"], json!(b0));

    // The technician's before capture, the change, the after capture.
    let (code, before) = rig.capture(&["--change", "CHG-1042", "--phase", "before"]);
    assert_eq!(code, 0);
    assert_eq!(before["digest"], json!(b0));
    rig.sim.cmd("set holding 40 1300");
    let (code, after) = rig.capture(&["--change", "CHG-1042", "--phase", "after"]);
    assert_eq!(code, 3, "unapproved until the token arrives");
    let b1 = after["digest"].as_str().expect("digest").to_owned();
    let drift_id = after["drift"]["id"].clone();

    // The approval names the after digest; it is signed after the change ran.
    let issued = plus_seconds(after["captured_at"].as_str().expect("time"), 2);
    let token = rig.sign(
        "chg-1042.jwt",
        &[
            "--change",
            "CHG-1042",
            "--to",
            &b1,
            "--from",
            &b0,
            "--requestor",
            "Lee Brandt",
            "--issued-at",
            &issued,
        ],
    );
    let approved = rig.approve(&token);
    assert_eq!(approved.code, 0, "{approved:?}");
    let approved = approved.json();
    assert_eq!(approved["status"], "applied");
    assert_eq!(approved["baseline"]["digest"], json!(b1));
    assert_eq!(approved["baseline"]["previous"], json!(b0));
    assert_eq!(approved["drift_id"], drift_id);
    assert_eq!(approved["retroactive"], true);
    let drift = rig.run(&["drift", "--json"]).json();
    assert_eq!(drift["events"][0]["status"], "approved");
    assert_eq!(drift["events"][0]["change_id"], "CHG-1042");
    let (code, again) = rig.capture(&[]);
    assert_eq!(code, 0, "the approved state is the baseline now: {again}");

    // The same token again: replay.
    let replay = rig.approve(&token);
    assert_eq!(replay.code, 4, "{replay:?}");
    assert_eq!(replay.json()["reason"], "replay");

    // The evidence pack.
    let out = rig.dir.path().join("evidence");
    let written = rig.run(&["evidence", "CHG-1042", "--out", &out.display().to_string()]);
    assert_eq!(written.code, 0, "{written:?}");
    assert!(written.stdout.contains("VIOLATION"), "{written:?}");
    let pack_path = out.join("evidence.json");
    let verified = rig.verify_pack(&pack_path, &[]);
    assert_eq!(verified.code, 0, "{verified:?}");
    // Without a pinned key nothing is verified: anyone can sign a pack with a key of their own.
    let unpinned = rig.run(&["evidence-verify", &pack_path.display().to_string()]);
    assert_eq!(unpinned.code, 5, "{unpinned:?}");
    assert!(
        unpinned.stdout.contains("no agent key is pinned"),
        "{unpinned:?}"
    );
    let embedded = rig.run(&[
        "evidence-verify",
        &pack_path.display().to_string(),
        "--trust-embedded-key",
    ]);
    assert_eq!(embedded.code, 0, "{embedded:?}");
    assert!(embedded.stdout.contains("WARNING"), "{embedded:?}");
    // An implementation that shares no code with otdrift agrees.
    let agent_key = rig.agent_key();
    assert_ne!(
        support::peer(
            "verify_evidence.py",
            &[&pack_path.display().to_string(), &agent_key]
        ),
        Some(false),
        "the independent verifier refused the pack"
    );

    let doc: Json =
        serde_json::from_str(&std::fs::read_to_string(&pack_path).expect("pack")).expect("json");
    let pack = &doc["pack"];
    assert_eq!(pack["change_id"], "CHG-1042");
    assert_eq!(pack["signatures"]["before"], json!(b0));
    assert_eq!(pack["signatures"]["after"], json!(b1));
    assert_eq!(pack["approvals"][0]["requestor"], "Lee Brandt");
    assert_eq!(pack["approvals"][0]["approver"], "Dana Okafor");
    assert_eq!(pack["diff"]["changes"][0]["path"], "modbus/holding/40");
    assert_eq!(pack["diff"]["changes"][0]["before"], 500);
    assert_eq!(pack["diff"]["changes"][0]["after"], 1300);
    assert_eq!(pack["baseline_moves"][0]["digest"], json!(b1));
    let flags: Vec<&str> = pack["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .filter(|f| f["level"] == "violation")
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert_eq!(flags, ["approved_after_implementation"]);
    let kinds: Vec<&str> = pack["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "capture.recorded",
        "approval.accepted",
        "approval.applied",
        "baseline.moved",
        "drift.approved",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }

    // The page an auditor reads, without a browser.
    let html = std::fs::read_to_string(out.join("evidence.html")).expect("html");
    for needle in [
        "CHG-1042",
        &b0,
        &b1,
        "Dana Okafor",
        "Lee Brandt",
        "modbus/holding/40",
        "APPROVED AFTER IMPLEMENTATION",
    ] {
        assert!(html.contains(needle), "evidence.html lacks {needle:?}");
    }

    // Tampering: one byte of a diff value, then one byte of a digest.
    let text = std::fs::read_to_string(&pack_path).expect("pack");
    let value_flipped = text.replacen("\"after\": 1300", "\"after\": 1301", 1);
    assert_ne!(value_flipped, text);
    let tampered = rig.dir.path().join("tampered-value.json");
    std::fs::write(&tampered, value_flipped).expect("write");
    let r = rig.verify_pack(&tampered, &[]);
    assert_eq!(r.code, 5, "{r:?}");
    assert_ne!(
        support::peer(
            "verify_evidence.py",
            &[&tampered.display().to_string(), &agent_key]
        ),
        Some(true),
        "the independent verifier accepted a tampered pack"
    );

    let hex = &b1[7..];
    let mut flipped_hex: Vec<u8> = hex.as_bytes().to_vec();
    flipped_hex[10] = if flipped_hex[10] == b'0' { b'1' } else { b'0' };
    let flipped_digest = format!("blake3:{}", String::from_utf8(flipped_hex).expect("ascii"));
    let digest_flipped = text.replacen(
        &format!("\"after\": \"{b1}\""),
        &format!("\"after\": \"{flipped_digest}\""),
        1,
    );
    assert_ne!(digest_flipped, text);
    let tampered = rig.dir.path().join("tampered-digest.json");
    std::fs::write(&tampered, digest_flipped).expect("write");
    let r = rig.verify_pack(&tampered, &["--json"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(r.json()["ok"], false);

    // A pinned agent key that is not the signer's is refused too.
    let other = rig.dir.path().join("other");
    assert!(
        support::otdrift()
            .args(["keygen", "--out"])
            .arg(&other)
            .output()
            .expect("keygen")
            .status
            .success()
    );
    let other_pub = std::fs::read_to_string(rig.dir.path().join("other.pub")).expect("pub");
    let r = rig.run(&[
        "evidence-verify",
        &pack_path.display().to_string(),
        "--agent-key",
        other_pub.trim(),
    ]);
    assert_eq!(r.code, 5, "{r:?}");

    assert!(rig.run(&["audit-verify"]).code == 0);
    rig.sim.assert_no_writes();
}

#[test]
fn a_token_minted_before_the_change_is_applied_by_the_first_capture_that_reaches_it() {
    let mut rig = rig();
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();

    // Engineering tries the change on a twin (a second simulator from the same state file)
    // to learn the signature the change will produce, before touching the real press.
    let twin_dir = rig.dir.path().join("twin");
    std::fs::create_dir_all(&twin_dir).expect("twin dir");
    let state = rig.dir.path().join("state.toml");
    let mut twin = Sim::start("modbus", Some(&state), &twin_dir);
    twin.cmd("set holding 41 777");
    let public = std::fs::read_to_string(rig.dir.path().join("approver.pub")).expect("pub");
    let twin_cfg = twin_dir.join("otdrift.toml");
    std::fs::write(
        &twin_cfg,
        config_text(&twin_dir, "data", &twin.addr, public.trim()),
    )
    .expect("cfg");
    let twin_capture = run(&twin_cfg, &["capture", "press-7", "--json"]);
    assert_eq!(twin_capture.code, 0, "{twin_capture:?}");
    let planned = twin_capture.json()["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert_ne!(planned, b0);

    // Approved before implementation: pending.
    let token = rig.sign(
        "chg-2001.jwt",
        &[
            "--change",
            "CHG-2001",
            "--to",
            &planned,
            "--from",
            &b0,
            "--requestor",
            "Lee Brandt",
        ],
    );
    let pending = rig.approve(&token);
    assert_eq!(pending.code, 0, "{pending:?}");
    assert_eq!(pending.json()["status"], "pending");

    // A token for a state the press never reaches is held too, and changes nothing.
    let twin_other = {
        twin.cmd("set holding 41 999");
        run(&twin_cfg, &["capture", "press-7", "--json"]).json()["digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    };
    let other = rig.sign(
        "chg-2002.jwt",
        &[
            "--change",
            "CHG-2002",
            "--to",
            &twin_other,
            "--requestor",
            "Lee Brandt",
        ],
    );
    assert_eq!(rig.approve(&other).json()["status"], "pending");

    // Someone makes a different change first: drift, which the pending approvals do not cover.
    rig.sim.cmd("set holding 41 600");
    let (code, drifted) = rig.capture(&[]);
    assert_eq!(code, 3, "{drifted}");
    assert_eq!(
        rig.run(&["drift", "--open", "--json"]).json()["events"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // The approved change is made: the first capture that sees it applies the approval.
    rig.sim.cmd("set holding 41 777");
    let (code, reached) = rig.capture(&[]);
    assert_eq!(code, 0, "{reached}");
    assert_eq!(reached["digest"], json!(planned));
    assert_eq!(reached["baseline"]["digest"], json!(planned));
    assert_eq!(reached["approval_applied"]["change_id"], "CHG-2001");
    let drift = rig.run(&["drift", "--json"]).json();
    assert_eq!(drift["events"][0]["status"], "approved");
    assert_eq!(drift["events"][0]["change_id"], "CHG-2001");

    // Approved before it was implemented: no violation in the pack.
    let out = rig.dir.path().join("evidence-2001");
    assert_eq!(
        rig.run(&["evidence", "CHG-2001", "--out", &out.display().to_string()])
            .code,
        0
    );
    let doc: Json =
        serde_json::from_str(&std::fs::read_to_string(out.join("evidence.json")).expect("pack"))
            .expect("json");
    assert!(
        doc["pack"]["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .all(|f| f["level"] != "violation"),
        "{}",
        doc["pack"]["flags"]
    );
    assert_eq!(doc["pack"]["approvals"][0]["retroactive"], false);
    assert_eq!(rig.verify_pack(&out.join("evidence.json"), &[]).code, 0);

    rig.sim.assert_no_writes();
    twin.assert_no_writes();
}

#[test]
fn an_emergency_approval_after_the_fact_is_permitted_but_noted() {
    let mut rig = rig();
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    rig.sim.cmd("set holding 3 42");
    let (code, after) = rig.capture(&[]);
    assert_eq!(code, 3);
    let b1 = after["digest"].as_str().expect("digest").to_owned();
    let issued = plus_seconds(after["captured_at"].as_str().expect("time"), 5);
    let token = rig.sign(
        "emg.jwt",
        &[
            "--change",
            "CHG-EMG-7",
            "--to",
            &b1,
            "--from",
            &b0,
            "--kind",
            "emergency",
            "--requestor",
            "Night Shift Lead",
            "--issued-at",
            &issued,
        ],
    );
    assert_eq!(rig.approve(&token).json()["status"], "applied");
    let out = rig.dir.path().join("evidence-emg");
    assert_eq!(
        rig.run(&["evidence", "CHG-EMG-7", "--out", &out.display().to_string()])
            .code,
        0
    );
    let doc: Json =
        serde_json::from_str(&std::fs::read_to_string(out.join("evidence.json")).expect("pack"))
            .expect("json");
    let flags = doc["pack"]["flags"].as_array().expect("flags");
    assert!(flags.iter().all(|f| f["level"] != "violation"), "{flags:?}");
    assert!(
        flags
            .iter()
            .any(|f| f["code"] == "approved_after_implementation" && f["level"] == "warning"),
        "{flags:?}"
    );

    // Rejections are exit 4 with the reason, and are recorded.
    let expired = rig.sign(
        "old.jwt",
        &[
            "--change",
            "CHG-OLD",
            "--to",
            &b1,
            "--valid",
            "1h",
            "--issued-at",
            "2020-01-01T00:00:00Z",
            "--requestor",
            "Lee Brandt",
        ],
    );
    let r = rig.approve(&expired);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(r.json()["reason"], "expired");
    assert!(r.stderr.contains("expired"), "{r:?}");
    let garbage = rig.dir.path().join("garbage.jwt");
    std::fs::write(&garbage, "not.a.token").expect("write");
    let r = rig.approve(&garbage);
    assert_eq!(r.code, 4);
    assert_eq!(r.json()["reason"], "malformed");
    rig.sim.assert_no_writes();
}

/// `otdrift report`: every asset of a small fleet (a Modbus press approved and verified, an
/// S7 CPU with a provisional baseline) with its baseline, approvers, last verification and
/// drift; the JSON verifies with the pinned agent key and is refused after one byte changes;
/// HTML and CSV say the same.
#[test]
fn the_compliance_report_lists_the_fleet_and_its_signature_holds() {
    let mut rig = rig();
    let s7 = Sim::start("s7", None, rig.dir.path());
    let mut text = std::fs::read_to_string(&rig.cfg).expect("config");
    text.push_str(&format!(
        "\n[[asset]]\nid = \"filler-3\"\nprotocol = \"s7\"\naddress = \"{}\"\nrack = 0\nslot = 2\ntimeout_ms = 3000\n  [[asset.setpoints]]\n  name = \"recipe\"\n  db = 1\n  start = 0\n  size = 16\n",
        s7.addr
    ));
    std::fs::write(&rig.cfg, text).expect("config");

    let (code, first) = rig.capture(&[]);
    assert_eq!(code, 0);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    let token = rig.sign(
        "baseline.jwt",
        &[
            "--change",
            "CHG-0001",
            "--to",
            &b0,
            "--requestor",
            "Lee Brandt",
        ],
    );
    assert_eq!(rig.approve(&token).code, 0);
    // The approval set the baseline; the next matching capture verifies it.
    let (code, _) = rig.capture(&[]);
    assert_eq!(code, 0);
    let filler = rig.run(&["capture", "filler-3", "--json"]);
    assert_eq!(filler.code, 0, "{filler:?}");

    let out = rig.dir.path().join("report.json");
    let written = rig.run(&["report", "--out", &out.display().to_string()]);
    assert_eq!(written.code, 0, "{written:?}");
    assert!(
        written.stdout.contains("report of 2 asset(s)"),
        "{written:?}"
    );
    let doc: Json =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("json");
    let report = &doc["report"];
    assert_eq!(report["schema"], "otdrift.report/v1");
    assert_eq!(report["summary"]["assets"], 2);
    assert_eq!(report["summary"]["verified"], 1);
    assert_eq!(report["summary"]["provisional_baseline"], 1);
    let press = &report["assets"][0];
    assert_eq!(press["id"], "press-7");
    assert_eq!(press["standing"], "verified");
    assert_eq!(press["baseline"]["digest"], json!(b0));
    assert_eq!(press["baseline"]["change_id"], "CHG-0001");
    assert_eq!(
        press["baseline"]["approvers"][0]["approver_id"],
        "plant-eng-mgr"
    );
    assert!(press["last_verified"].is_string(), "{press}");
    assert!(press["verification_due"].is_string(), "{press}");
    let filler = &report["assets"][1];
    assert_eq!(filler["standing"], "provisional baseline");
    assert_eq!(filler["last_verified"], Json::Null);

    // Signed like an evidence pack: verifies with the pinned key, refused after one byte.
    let verified = rig.verify_pack(&out, &[]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stdout.contains("the compliance report verifies"),
        "{verified:?}"
    );
    let original = std::fs::read_to_string(&out).expect("report");
    let tampered_text = original.replacen("\"provisional baseline\"", "\"verified\"", 1);
    assert_ne!(tampered_text, original);
    let tampered = rig.dir.path().join("tampered-report.json");
    std::fs::write(&tampered, tampered_text).expect("write");
    let refused = rig.verify_pack(&tampered, &["--json"]);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert_eq!(refused.json()["ok"], false);

    // A failed collection (the device answers garbage) is in the window's record.
    rig.sim.cmd("quirk short-read on");
    let failed = rig.run(&["capture", "press-7", "--json"]);
    assert_ne!(failed.code, 0, "{failed:?}");
    rig.sim.cmd("quirk short-read off");
    let again = rig.run(&["report"]);
    assert_eq!(again.code, 0, "{again:?}");
    let doc = again.json();
    let failures = &doc["report"]["assets"][0]["failed_collections"];
    assert_eq!(failures[0]["kind"], "asset.collection_failed", "{failures}");
    assert_eq!(failures[0]["reason"], "malformed", "{failures}");
    assert!(failures[0]["audit_seq"].is_i64(), "{failures}");
    assert_eq!(doc["report"]["summary"]["failed_collections"], 1);

    // Drift shows in the next report, in every format.
    rig.sim.cmd("set holding 40 1300");
    let (code, _) = rig.capture(&[]);
    assert_eq!(code, 3);
    let html = rig.run(&["report", "--format", "html"]);
    assert_eq!(html.code, 0, "{html:?}");
    assert!(html.stdout.starts_with("<!DOCTYPE html>"));
    assert!(html.stdout.contains("drift open"), "{}", html.stdout);
    assert!(!html.stdout.contains("<script"));
    let csv = rig.run(&["report", "--format", "csv"]);
    assert_eq!(csv.code, 0, "{csv:?}");
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", csv.stdout);
    assert!(lines[0].starts_with("asset,protocol,address,standing,"));
    assert!(lines[1].starts_with("press-7,modbus,"), "{}", lines[1]);
    assert!(lines[1].contains(",drift open,"), "{}", lines[1]);
    assert!(lines[2].contains(",provisional baseline,"), "{}", lines[2]);
    let bad = rig.run(&["report", "--since", "soon"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    rig.sim.assert_no_writes();
}
