//! Approved envelopes, end to end: `sign-approval --envelope` writes the claim, `approve`
//! checks it against the asset's setpoints, and the `otdrift` binary then judges captures of a
//! Modbus simulator (a typed f32 recipe temperature) inside and outside it.

mod support;

use std::sync::Arc;

use serde_json::{Value as Json, json};
use support::approval_rig::rig_with;
use support::database;

/// The recipe range with a typed f32 at registers 10..11 (big-endian words).
const SETPOINTS: &str = r#"
  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 16

    [[asset.setpoints.field]]
    name = "fill_temp"
    offset = 10
    type = "f32"
"#;

/// The two registers of a big-endian f32.
fn set_temp(rig: &mut support::approval_rig::Rig, value: f32) {
    let bits = value.to_bits();
    rig.sim.cmd(&format!("set holding 10 {}", bits >> 16));
    rig.sim.cmd(&format!("set holding 11 {}", bits & 0xffff));
}

fn events_of(rig: &support::approval_rig::Rig, kind: &str) -> Vec<Json> {
    let store = otdrift_store::Store::open_read_only(
        &database(&rig.dir.path().join("data")),
        Arc::new(otdrift_core::SystemClock),
    )
    .expect("store");
    store
        .events_after(0, 10_000)
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == kind)
        .map(|e| e.data)
        .collect()
}

#[test]
fn an_operator_moves_a_setpoint_inside_its_envelope_without_drift_and_outside_with_drift() {
    let mut rig = rig_with(SETPOINTS);
    set_temp(&mut rig, 72.5);
    let (code, first) = rig.capture(&[]);
    assert_eq!(code, 0);
    let b0 = first["digest"].as_str().expect("digest").to_owned();

    // The approver signs the state and the range the HMI may move the temperature in.
    let token = rig.sign(
        "envelope.jwt",
        &[
            "--change",
            "CHG-0001",
            "--to",
            &b0,
            "--requestor",
            "Lee Brandt",
            "--envelope",
            "modbus/holding/fill_temp=70..75",
        ],
    );
    let approved = rig.approve(&token);
    assert_eq!(approved.code, 0, "{approved:?}");
    let status = rig.run(&["status", "--json"]).json();
    assert_eq!(
        status["assets"][0]["baseline"]["envelope"],
        json!({"modbus/holding/fill_temp": {"min": 70, "max": 75}})
    );
    let human = rig.run(&["status"]);
    assert!(
        human.stdout.contains("press-7: modbus/holding/fill_temp  70..75"),
        "{human:?}"
    );

    // Inside, and at the bound: matches (exit 0), judged as the baseline, reported.
    for value in [74.0, 75.0] {
        set_temp(&mut rig, value);
        let (code, inside) = rig.capture(&[]);
        assert_eq!(code, 0, "{value} is inside: {inside}");
        assert_ne!(inside["digest"], json!(b0));
        assert_eq!(inside["judged_digest"], json!(b0));
        assert_eq!(inside["inside_envelopes"][0]["path"], "modbus/holding/fill_temp");
        assert_eq!(inside["drift"], Json::Null);
    }
    let adjusted = events_of(&rig, "io.otdrift.setpoint.adjusted");
    assert!(!adjusted.is_empty(), "a move inside is reported");
    assert_eq!(adjusted[0]["before"], json!(72.5));
    assert_eq!(adjusted[0]["after"], json!(74.0));
    assert_eq!(adjusted[0]["envelope"]["pattern"], "modbus/holding/fill_temp");
    let diff = rig.run(&["diff", "press-7"]);
    assert!(diff.stdout.contains("(inside its envelope 70..75)"), "{diff:?}");

    // Outside: drift, naming the envelope it broke.
    set_temp(&mut rig, 76.0);
    let (code, outside) = rig.capture(&[]);
    assert_eq!(code, 3, "{outside}");
    let change = &outside["drift"]["changes"][0];
    assert_eq!(change["path"], "modbus/holding/fill_temp");
    assert_eq!(change["after"], json!(76.0));
    assert_eq!(change["envelope"], json!({"pattern": "modbus/holding/fill_temp", "min": 70, "max": 75}));
    let drift = rig.run(&["drift"]);
    assert!(drift.stdout.contains("(outside its envelope 70..75)"), "{drift:?}");

    // The report lists the envelope in force.
    let report = rig.run(&["report"]).json();
    assert_eq!(
        report["report"]["assets"][0]["envelopes"],
        json!([{"pattern": "modbus/holding/fill_temp", "min": 70, "max": 75}])
    );
    rig.sim.assert_no_writes();
}

#[test]
fn an_envelope_on_anything_but_a_setpoint_or_on_nothing_is_refused() {
    let rig = rig_with(SETPOINTS);
    let (_, first) = rig.capture(&[]);
    let b0 = first["digest"].as_str().expect("digest").to_owned();
    for (i, (envelope, says)) in [
        (
            "modbus/identity/vendor_name=one|two",
            "envelopes cover setpoints only",
        ),
        ("modbus/holding/fill_tmp=1..2", "matches no setpoint"),
        ("modbus/*=1..2", "envelopes cover setpoints only"),
    ]
    .into_iter()
    .enumerate()
    {
        let token = rig.sign(
            &format!("bad-{i}.jwt"),
            &[
                "--change",
                "CHG-0002",
                "--to",
                &b0,
                "--requestor",
                "Lee Brandt",
                "--envelope",
                envelope,
            ],
        );
        let refused = rig.approve(&token);
        assert_eq!(refused.code, 4, "{envelope}: {refused:?}");
        let doc = refused.json();
        assert_eq!(doc["reason"], "envelope", "{doc}");
        assert!(doc["message"].as_str().unwrap_or_default().contains(says), "{doc}");
    }
    // A min above its max never becomes a token.
    let key = rig.key.display().to_string();
    let inverted = rig.run(&[
        "sign-approval",
        "--key",
        &key,
        "--asset",
        "press-7",
        "--change",
        "CHG-0003",
        "--to",
        &b0,
        "--requestor",
        "Lee Brandt",
        "--envelope",
        "modbus/holding/fill_temp=75..70",
    ]);
    assert_eq!(inverted.code, 2, "{inverted:?}");
    assert!(inverted.stderr.contains("min 75 is above max 70"), "{inverted:?}");
    // ... and a token another tool signed with one is refused by the agent, as is any other
    // malformed claim, each with its reason.
    let key = otdrift::keys::read_private_key(&rig.key).expect("approver key");
    let now = chrono::Utc::now().timestamp();
    for (i, (envelope, says)) in [
        (json!({"modbus/holding/fill_temp": {"min": 75, "max": 70}}), "min 75 is above max 70"),
        (json!({"modbus/holding/fill_temp": {"min": 70}}), "a bound is exactly"),
        (json!({"modbus/holding/fill_temp": {"one_of": []}}), "one_of lists no value"),
        (json!(["modbus/holding/fill_temp"]), "must be an object"),
    ]
    .into_iter()
    .enumerate()
    {
        let claims = json!({
            "iss": "plant-eng-mgr", "sub": "press-7", "jti": format!("raw-{i}"),
            "iat": now, "nbf": now, "exp": now + 3600, "change_id": "CHG-0004",
            "to": b0, "approver": "Dana Okafor", "requestor": "Lee Brandt", "kind": "normal",
            "envelope": envelope,
        });
        let path = rig.dir.path().join(format!("raw-{i}.jwt"));
        std::fs::write(&path, otdrift::approval::token::sign(&claims, "plant-eng-mgr", &key))
            .expect("token file");
        let refused = rig.approve(&path);
        assert_eq!(refused.code, 4, "{refused:?}");
        let doc = refused.json();
        assert_eq!(doc["reason"], "bad-claim", "{doc}");
        let message = doc["message"].as_str().unwrap_or_default();
        assert!(message.contains("envelope") && message.contains(says), "{doc}");
    }
    let status = rig.run(&["status", "--json"]).json();
    assert_eq!(status["assets"][0]["baseline"]["provisional"], true);
}
