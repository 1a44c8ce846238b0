//! The approval path played as an attacker and checked as an auditor would: every hole the
//! approvals-as-a-state-machine issue names, end to end through the `otdrift` binary against a
//! Modbus simulator, with tokens minted both by `otdrift sign-approval` and by hand (raw JWS
//! with exactly the bytes an attacker would send).

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use serde_json::{Value as Json, json};
use support::approval_rig::{Rig, config_text, rig};
use support::{Sim, run};

/// Signs `header` and `claims` exactly as given (raw JSON text: duplicates and escapes stay).
fn raw_token(rig: &Rig, header: &str, claims: &str) -> String {
    let key = otdrift::keys::read_private_key(&rig.key).expect("approver key");
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Signs claims (a JSON object) with the rig's approver key, header `kid` = `plant-eng-mgr`.
fn token(rig: &Rig, claims: &Json) -> String {
    let key = otdrift::keys::read_private_key(&rig.key).expect("approver key");
    otdrift::approval::token::sign(claims, "plant-eng-mgr", &key)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(to: &str, jti: &str) -> Json {
    json!({
        "iss": "plant-eng-mgr",
        "sub": "press-7",
        "jti": jti,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "change_id": "CHG-ATTACK",
        "to": to,
        "approver": "Ada Quist",
        "requestor": "Lee Brandt",
        "kind": "normal",
    })
}

/// Submits a token text; returns the `approve --json` run.
fn submit(rig: &Rig, text: &str, name: &str) -> support::Run {
    let path = rig.dir.path().join(name);
    std::fs::write(&path, text).expect("token file");
    rig.approve(&path)
}

fn audit_kinds(rig: &Rig) -> Vec<String> {
    let store = otdrift_store::Store::open(
        &support::database(&rig.dir.path().join("data")),
        std::sync::Arc::new(otdrift_core::SystemClock),
    )
    .expect("store");
    store
        .audit_entries(0, 10_000)
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Change X is pre-approved without `from`; the team deploys X' instead under its own approval;
/// months later someone loads X. The stale approval was superseded when the baseline moved, so
/// X is drift, not an approved change.
#[test]
fn a_stale_pre_approval_cannot_roll_the_plant_back() {
    let mut rig = rig();
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    let confirm = rig.sign(
        "b0.jwt",
        &[
            "--change",
            "CHG-0",
            "--to",
            &b0,
            "--requestor",
            "Lee Brandt",
        ],
    );
    assert_eq!(rig.approve(&confirm).json()["status"], "applied");

    // Change X, learned on a twin and pre-approved without `from`.
    let twin_dir = rig.dir.path().join("twin");
    std::fs::create_dir_all(&twin_dir).expect("twin dir");
    let mut twin = Sim::start(
        "modbus",
        Some(&rig.dir.path().join("state.toml")),
        &twin_dir,
    );
    twin.cmd("set holding 41 777");
    let public = std::fs::read_to_string(rig.dir.path().join("approver.pub")).expect("pub");
    let twin_cfg = twin_dir.join("otdrift.toml");
    std::fs::write(
        &twin_cfg,
        config_text(&twin_dir, "data", &twin.addr, public.trim()),
    )
    .expect("cfg");
    let x = run(&twin_cfg, &["capture", "press-7", "--json"]).json()["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let pre = rig.sign(
        "x.jwt",
        &["--change", "CHG-X", "--to", &x, "--requestor", "Lee Brandt"],
    );
    assert_eq!(rig.approve(&pre).json()["status"], "pending");
    assert_eq!(
        rig.run(&["status", "--json"]).json()["assets"][0]["pending_approvals"],
        1
    );

    // The team deploys X' instead, under its own approval: the baseline moves to X'.
    rig.sim.cmd("set holding 41 888");
    let (code, deployed) = rig.capture(&[]);
    assert_eq!(code, 3);
    let x2 = deployed["digest"].as_str().expect("digest").to_owned();
    let chg = rig.sign(
        "x2.jwt",
        &[
            "--change",
            "CHG-X2",
            "--to",
            &x2,
            "--from",
            &b0,
            "--requestor",
            "Lee Brandt",
        ],
    );
    assert_eq!(rig.approve(&chg).json()["status"], "applied");
    assert_eq!(
        rig.run(&["status", "--json"]).json()["assets"][0]["pending_approvals"],
        0,
        "the pre-approval of X is no longer pending"
    );
    let out = rig.dir.path().join("evidence-x");
    assert_eq!(
        rig.run(&["evidence", "CHG-X", "--out", &out.display().to_string()])
            .code,
        0
    );
    let pack: Json =
        serde_json::from_str(&std::fs::read_to_string(out.join("evidence.json")).expect("pack"))
            .expect("json");
    assert_eq!(pack["pack"]["approvals"][0]["status"], "superseded");

    // Later, someone loads X: drift, and the baseline stays X'.
    rig.sim.cmd("set holding 41 777");
    let (code, loaded) = rig.capture(&[]);
    assert_eq!(code, 3, "X is drift now: {loaded}");
    assert_eq!(loaded["baseline"]["digest"], json!(x2));
    assert!(audit_kinds(&rig).contains(&"approval.superseded".to_owned()));
    rig.sim.assert_no_writes();
    twin.assert_no_writes();
}

/// Separation of duties holds under every spelling of one person's name, against the
/// `approver` claim, the issuer and the approver's configured id; `standard` and `normal`
/// changes must name a requestor.
#[test]
fn a_requestor_cannot_approve_their_own_change_under_another_spelling() {
    let rig = rig();
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    let spellings = [
        ("approver", "Ada Quist", "Ａｄａ Ｑｕｉｓｔ"),
        ("approver", "Ada Quist", "Ada\u{a0}Quist"),
        ("approver", "Ada Quist", "Ada  Quist"),
        ("approver", "José Martín", "Jose\u{301} Marti\u{301}n"),
        ("approver", "Émile Roux", "ÉMILE ROUX"),
        ("iss", "Dana Okafor", "PLANT-ENG-MGR"),
    ];
    for (i, (field, approver, requestor)) in spellings.iter().enumerate() {
        let mut c = claims(&b0, &format!("sod-{i}"));
        c["approver"] = json!(approver);
        c["requestor"] = json!(requestor);
        let r = submit(&rig, &token(&rig, &c), &format!("sod-{i}.jwt"));
        assert_eq!(r.code, 4, "{requestor:?} approving {approver:?}: {r:?}");
        assert_eq!(r.json()["reason"], "self-approved", "{r:?}");
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{r:?}"
        );
    }
    // A normal change without a requestor: refused; an emergency may name none.
    let mut c = claims(&b0, "sod-none");
    c.as_object_mut().expect("object").remove("requestor");
    let r = submit(&rig, &token(&rig, &c), "sod-none.jwt");
    assert_eq!(r.json()["reason"], "missing-claim", "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("requestor")
    );
    c["kind"] = json!("emergency");
    c["jti"] = json!("sod-emergency");
    let r = submit(&rig, &token(&rig, &c), "sod-emergency.jwt");
    assert_eq!(r.code, 0, "{r:?}");
    // sign-approval refuses to mint a self-approval in the first place.
    let minted = rig.run(&[
        "sign-approval",
        "--key",
        &rig.key.display().to_string(),
        "--asset",
        "press-7",
        "--change",
        "CHG-1",
        "--to",
        &b0,
        "--approver",
        "Ada Quist",
        "--requestor",
        "ada\u{a0}QUIST",
    ]);
    assert_eq!(minted.code, 2, "{minted:?}");
    let kinds = audit_kinds(&rig);
    assert_eq!(
        kinds.iter().filter(|k| *k == "approval.rejected").count(),
        spellings.len() + 1
    );
}

/// A member twice in the header or the claims, also when spelled with an escape, is refused
/// as `duplicate-member` (a reader that takes the first member would see another token), and
/// recorded; an evidence pack with a duplicate member fails verification.
#[test]
fn duplicate_members_are_refused_at_every_position() {
    let rig = rig();
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    let other = "blake3:".to_owned() + &"0".repeat(64);
    let good_header = r#"{"alg":"EdDSA","kid":"plant-eng-mgr","typ":"JWT"}"#;
    let body = |extra: &str, jti: &str| {
        format!(
            r#"{{"iss":"plant-eng-mgr","sub":"press-7","jti":"{jti}","iat":{n},"nbf":{n},"exp":{e},"change_id":"CHG-D","to":"{b0}","approver":"Dana Okafor","requestor":"Lee Brandt","kind":"normal"{extra}}}"#,
            n = now(),
            e = now() + 3600
        )
    };
    let cases: Vec<(&str, String, String)> = vec![
        (
            "header kid",
            r#"{"alg":"EdDSA","kid":"plant-eng-mgr","kid":"someone-else"}"#.to_owned(),
            body("", "dup-1"),
        ),
        (
            "header alg",
            r#"{"alg":"EdDSA","alg":"none","kid":"plant-eng-mgr"}"#.to_owned(),
            body("", "dup-2"),
        ),
        (
            "header escaped kid",
            r#"{"alg":"EdDSA","k\u0069d":"plant-eng-mgr","kid":"plant-eng-mgr"}"#.to_owned(),
            body("", "dup-3"),
        ),
        (
            "claims to",
            good_header.to_owned(),
            body(&format!(r#","to":"{other}""#), "dup-4"),
        ),
        (
            "claims escaped to",
            good_header.to_owned(),
            body(&format!(r#","t\u006f":"{other}""#), "dup-5"),
        ),
        (
            "claims sub",
            good_header.to_owned(),
            body(r#","sub":"oven-3""#, "dup-6"),
        ),
        (
            "claims exp",
            good_header.to_owned(),
            body(r#","exp":9999999999"#, "dup-7"),
        ),
        (
            "claims kind",
            good_header.to_owned(),
            body(r#","kind":"emergency""#, "dup-8"),
        ),
        (
            "claims jti",
            good_header.to_owned(),
            body(r#","jti":"dup-other""#, "dup-9"),
        ),
    ];
    for (i, (what, header, claims)) in cases.iter().enumerate() {
        let r = submit(
            &rig,
            &raw_token(&rig, header, claims),
            &format!("dup-{i}.jwt"),
        );
        assert_eq!(r.code, 4, "{what}: {r:?}");
        assert_eq!(r.json()["reason"], "duplicate-member", "{what}: {r:?}");
    }
    // The same token without the duplicate is fine, so the test proves what it says.
    let clean = submit(
        &rig,
        &raw_token(&rig, good_header, &body("", "clean-1")),
        "clean.jwt",
    );
    assert_eq!(clean.code, 0, "{clean:?}");
    let kinds = audit_kinds(&rig);
    assert_eq!(
        kinds.iter().filter(|k| *k == "approval.rejected").count(),
        cases.len()
    );

    // An evidence pack with a member twice fails, whatever its signature says.
    let out = rig.dir.path().join("evidence-d");
    assert_eq!(
        rig.run(&["evidence", "CHG-D", "--out", &out.display().to_string()])
            .code,
        0
    );
    let text = std::fs::read_to_string(out.join("evidence.json")).expect("pack");
    assert_eq!(rig.verify_pack(&out.join("evidence.json"), &[]).code, 0);
    let doubled = text.replacen(
        "\"change_id\": \"CHG-D\"",
        "\"change_id\": \"CHG-D\", \"change_id\": \"CHG-OTHER\"",
        1,
    );
    assert_ne!(doubled, text);
    let tampered = rig.dir.path().join("doubled.json");
    std::fs::write(&tampered, doubled).expect("write");
    let r = rig.verify_pack(&tampered, &["--json"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stdout.contains("duplicate-member"), "{r:?}");
    rig.sim.assert_no_writes();
}

/// Time claims beyond year 9999, `nbf` after `exp`, and a lifetime beyond
/// `max_token_lifetime` are rejections with a reason, recorded like every other (not internal
/// errors).
#[test]
fn time_claims_out_of_range_are_rejected_and_recorded() {
    let rig = rig();
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    let mut far = claims(&b0, "time-1");
    far["exp"] = json!(253_402_300_800_i64); // 10000-01-01
    let mut inverted = claims(&b0, "time-2");
    inverted["nbf"] = json!(now() + 7200);
    let mut long = claims(&b0, "time-3");
    long["exp"] = json!(now() + 31 * 86_400);
    let mut negative = claims(&b0, "time-4");
    negative["iat"] = json!(-1);
    for (c, reason) in [
        (far, "bad-claim"),
        (inverted, "time-window"),
        (long, "lifetime"),
        (negative, "bad-claim"),
    ] {
        let jti = c["jti"].as_str().unwrap_or_default().to_owned();
        let r = submit(&rig, &token(&rig, &c), &format!("{jti}.jwt"));
        assert_eq!(r.code, 4, "{jti}: {r:?}");
        assert_eq!(r.json()["reason"], reason, "{jti}: {r:?}");
    }
    let kinds = audit_kinds(&rig);
    assert_eq!(
        kinds.iter().filter(|k| *k == "approval.rejected").count(),
        4,
        "{kinds:?}"
    );
    assert_eq!(rig.run(&["audit-verify"]).code, 0);
}

/// An approver withdraws a pending approval with a signed `withdraw` token: it is refused and
/// the state it named, when it arrives, is drift.
#[test]
fn a_pending_approval_can_be_withdrawn() {
    let mut rig = rig();
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    rig.sim.cmd("set holding 20 123");
    let (_, changed) = rig.capture(&[]);
    let planned = changed["digest"].as_str().expect("digest").to_owned();
    rig.sim.cmd("set holding 20 500");
    assert_eq!(rig.capture(&[]).0, 0, "back at the baseline");
    let plan = rig.sign(
        "plan.jwt",
        &[
            "--change",
            "CHG-W",
            "--to",
            &planned,
            "--from",
            &b0,
            "--requestor",
            "Lee Brandt",
            "--jti",
            "plan-1",
        ],
    );
    assert_eq!(rig.approve(&plan).json()["status"], "pending");
    let withdraw = rig.sign(
        "withdraw.jwt",
        &["--change", "CHG-W", "--withdraw", "plan-1"],
    );
    let r = rig.approve(&withdraw);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["status"], "withdrawn");
    assert_eq!(r.json()["approval_status"], "refused");
    // Withdrawing it again is refused: it is no longer pending.
    let again = rig.sign("again.jwt", &["--change", "CHG-W", "--withdraw", "plan-1"]);
    let r = rig.approve(&again);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(r.json()["reason"], "not-pending");
    rig.sim.cmd("set holding 20 123");
    let (code, reached) = rig.capture(&[]);
    assert_eq!(code, 3, "a withdrawn approval applies nothing: {reached}");
    assert!(audit_kinds(&rig).contains(&"approval.refused".to_owned()));
}

/// The agent key is anchored: the database remembers it, so a deleted or swapped key file
/// stops the agent (restored from the backup, it runs again), and a rotation is a signed,
/// recorded statement after which packs verify only with the new pinned key.
#[test]
fn the_agent_key_is_anchored_and_rotated_on_purpose() {
    let rig = rig();
    assert_eq!(rig.capture(&[]).0, 0);
    let k1 = rig.agent_key();
    let data = rig.dir.path().join("data");
    let backup = rig.dir.path().join("backup");
    let r = rig.run(&["backup", "--out", &backup.display().to_string()]);
    assert_eq!(r.code, 0, "{r:?}");

    std::fs::remove_file(data.join("agent.key")).expect("delete the key");
    let r = rig.run(&["status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("restore agent.key from the backup") && r.stderr.contains(&k1),
        "{r:?}"
    );
    assert!(!data.join("agent.key").exists(), "no new key was made");
    // Another key in its place is refused too.
    let other = rig.dir.path().join("intruder");
    assert!(
        support::otdrift()
            .args(["keygen", "--out"])
            .arg(&other)
            .output()
            .expect("keygen")
            .status
            .success()
    );
    std::fs::copy(rig.dir.path().join("intruder.key"), data.join("agent.key")).expect("swap");
    let r = rig.run(&["status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("agent-key rotate"), "{r:?}");
    std::fs::copy(backup.join("agent.key"), data.join("agent.key")).expect("restore");
    assert_eq!(rig.run(&["status"]).code, 0);
    assert_eq!(rig.agent_key(), k1);

    // A deliberate rotation: recorded, announced, the statement signed by the old key.
    let rotated = rig.run(&["agent-key", "rotate", "--json"]);
    assert_eq!(rotated.code, 0, "{rotated:?}");
    let body = rotated.json();
    let k2 = rig.agent_key();
    assert_ne!(k1, k2);
    assert_eq!(body["previous_key"], json!(k1));
    assert_eq!(body["public_key"], json!(k2));
    let statement = body["statement"].as_str().expect("statement").to_owned();
    let old = otdrift::keys::parse_public_key(&k1).expect("k1");
    let (signed, signature) = statement.rsplit_once('.').expect("jws");
    let signature =
        ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).expect("b64"))
            .expect("signature");
    old.verify_strict(signed.as_bytes(), &signature)
        .expect("the old key signed the new one");
    if let Some(out) = support::peers::run(
        "PyJWT verifies the key rotation statement",
        &["jwt", "cryptography"],
        "verify_jws.py",
        &[&statement, &k1],
    ) {
        assert!(out.status.success(), "PyJWT refused the statement");
        let claims: Json = serde_json::from_slice(&out.stdout).expect("claims");
        assert_eq!(claims["public_key"], json!(k2));
    }
    let history = rig.run(&["agent-key", "show", "--json"]).json();
    assert_eq!(history["history"].as_array().map(Vec::len), Some(2));
    assert!(audit_kinds(&rig).contains(&"agent.key_rotated".to_owned()));

    // A pack made now is signed by the new key: the old pin refuses it, the new one accepts.
    let b0 = rig.run(&["status", "--json"]).json()["assets"][0]["baseline"]["digest"]
        .as_str()
        .expect("baseline")
        .to_owned();
    let confirm = rig.sign(
        "b0.jwt",
        &[
            "--change",
            "CHG-K",
            "--to",
            &b0,
            "--requestor",
            "Lee Brandt",
        ],
    );
    assert_eq!(rig.approve(&confirm).code, 0);
    let out = rig.dir.path().join("evidence-k");
    assert_eq!(
        rig.run(&["evidence", "CHG-K", "--out", &out.display().to_string()])
            .code,
        0
    );
    let pack = out.join("evidence.json").display().to_string();
    assert_eq!(
        rig.run(&["evidence-verify", &pack, "--agent-key", &k1])
            .code,
        5
    );
    assert_eq!(
        rig.run(&["evidence-verify", &pack, "--agent-key", &k2])
            .code,
        0
    );
    assert_eq!(rig.run(&["audit-verify"]).code, 0);
}
