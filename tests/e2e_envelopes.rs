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
        human
            .stdout
            .contains("press-7: modbus/holding/fill_temp  70..75"),
        "{human:?}"
    );

    // Inside, and at the bound: matches (exit 0), judged as the baseline, reported.
    for value in [74.0, 75.0] {
        set_temp(&mut rig, value);
        let (code, inside) = rig.capture(&[]);
        assert_eq!(code, 0, "{value} is inside: {inside}");
        assert_ne!(inside["digest"], json!(b0));
        assert_eq!(inside["judged_digest"], json!(b0));
        assert_eq!(
            inside["inside_envelopes"][0]["path"],
            "modbus/holding/fill_temp"
        );
        assert_eq!(inside["drift"], Json::Null);
    }
    let adjusted = events_of(&rig, "io.otdrift.setpoint.adjusted");
    assert!(!adjusted.is_empty(), "a move inside is reported");
    assert_eq!(adjusted[0]["before"], json!(72.5));
    assert_eq!(adjusted[0]["after"], json!(74.0));
    assert_eq!(
        adjusted[0]["envelope"]["pattern"],
        "modbus/holding/fill_temp"
    );
    let diff = rig.run(&["diff", "press-7"]);
    assert!(
        diff.stdout.contains("(inside its envelope 70..75)"),
        "{diff:?}"
    );

    // Outside: drift, naming the envelope it broke.
    set_temp(&mut rig, 76.0);
    let (code, outside) = rig.capture(&[]);
    assert_eq!(code, 3, "{outside}");
    let change = &outside["drift"]["changes"][0];
    assert_eq!(change["path"], "modbus/holding/fill_temp");
    assert_eq!(change["after"], json!(76.0));
    assert_eq!(
        change["envelope"],
        json!({"pattern": "modbus/holding/fill_temp", "min": 70, "max": 75})
    );
    let drift = rig.run(&["drift"]);
    assert!(
        drift.stdout.contains("(outside its envelope 70..75)"),
        "{drift:?}"
    );

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
        assert!(
            doc["message"].as_str().unwrap_or_default().contains(says),
            "{doc}"
        );
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
    assert!(
        inverted.stderr.contains("min 75 is above max 70"),
        "{inverted:?}"
    );
    // ... and a token another tool signed with one is refused by the agent, as is any other
    // malformed claim, each with its reason.
    let key = otdrift::keys::read_private_key(&rig.key).expect("approver key");
    let now = chrono::Utc::now().timestamp();
    for (i, (envelope, says)) in [
        (
            json!({"modbus/holding/fill_temp": {"min": 75, "max": 70}}),
            "min 75 is above max 70",
        ),
        (
            json!({"modbus/holding/fill_temp": {"min": 70}}),
            "a bound is exactly",
        ),
        (
            json!({"modbus/holding/fill_temp": {"one_of": []}}),
            "one_of lists no value",
        ),
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
        std::fs::write(
            &path,
            otdrift::approval::token::sign(&claims, "plant-eng-mgr", &key),
        )
        .expect("token file");
        let refused = rig.approve(&path);
        assert_eq!(refused.code, 4, "{refused:?}");
        let doc = refused.json();
        assert_eq!(doc["reason"], "bad-claim", "{doc}");
        let message = doc["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("envelope") && message.contains(says),
            "{doc}"
        );
    }
    let status = rig.run(&["status", "--json"]).json();
    assert_eq!(status["assets"][0]["baseline"]["provisional"], true);
}

/// Two presses polled from one simulator, press-7 on registers 0..15 and press-8 on 16..31,
/// each with an f32 temperature at its range's offset 10 when `layout` is set.
fn two_presses(dir: &std::path::Path, addr: &str, public_key: &str, layout: bool) -> String {
    let asset = |id: &str, start: u16| {
        let fields = if layout {
            format!(
                "\n    [[asset.setpoints.field]]\n    name = \"fill_temp\"\n    offset = {}\n    type = \"f32\"\n",
                start + 10
            )
        } else {
            String::new()
        };
        format!(
            r#"
[[asset]]
id = "{id}"
protocol = "modbus"
address = "{addr}"
timeout_ms = 3000

  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = {start}
  count = 16
{fields}"#
        )
    };
    format!(
        "\n[agent]\nid = \"gw-layout\"\ndata_dir = \"{}\"\n\n[[approver]]\nid = \"plant-eng-mgr\"\npublic_key = \"{public_key}\"\n{}{}",
        dir.join("data").display(),
        asset("press-7", 0),
        asset("press-8", 16)
    )
}

/// A new layout (or an agent that reads more) changes what is captured, not the device: the
/// drift says `capture_changed`, and one token re-baselines every asset it names, but only
/// where the drift is a capture change.
#[test]
fn a_new_layout_is_a_capture_change_approved_for_many_assets_with_one_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.toml");
    std::fs::write(&state, support::approval_rig::STATE).expect("state");
    let mut sim = support::Sim::start("modbus", Some(&state), dir.path());
    let keygen = support::otdrift()
        .args(["keygen", "--out"])
        .arg(dir.path().join("approver"))
        .output()
        .expect("keygen runs");
    assert!(keygen.status.success(), "{keygen:?}");
    let public = std::fs::read_to_string(dir.path().join("approver.pub")).expect("pub");
    let cfg = support::write_config(
        dir.path(),
        &two_presses(dir.path(), &sim.addr, public.trim(), false),
    );
    for press in ["press-7", "press-8"] {
        support::capture_json(&cfg, press, 0);
    }

    // A device change under the same capture spec is a device change.
    sim.cmd("set holding 3 501");
    let device = support::capture_json(&cfg, "press-7", 3);
    assert_eq!(device["drift"]["reason"], "device");
    sim.cmd("set holding 3 500");
    support::capture_json(&cfg, "press-7", 0);

    // The engineer lays the temperature out as an f32: both presses are read differently.
    support::write_config(
        dir.path(),
        &two_presses(dir.path(), &sim.addr, public.trim(), true),
    );
    let mut signatures = Vec::new();
    for press in ["press-7", "press-8"] {
        let changed = support::capture_json(&cfg, press, 3);
        assert_eq!(changed["drift"]["reason"], "capture_changed", "{changed}");
        signatures.push(format!(
            "{press}={}",
            changed["digest"].as_str().expect("digest")
        ));
    }
    let shown = support::run(&cfg, &["drift"]);
    assert!(shown.stdout.contains("reason capture_changed"), "{shown:?}");

    // press-8 also changed on the device meanwhile: its part waits for the state it names.
    sim.cmd("set holding 19 777");
    let both = support::capture_json(&cfg, "press-8", 3);
    assert_eq!(
        both["drift"]["reason"], "capture_changed",
        "read differently and changed"
    );
    let key = dir.path().join("approver.key").display().to_string();
    let token = dir.path().join("layout.jwt").display().to_string();
    let mut args = vec![
        "sign-approval",
        "--key",
        &key,
        "--change",
        "CHG-LAYOUT",
        "--requestor",
        "Lee Brandt",
        "--out",
        &token,
    ];
    for s in &signatures {
        args.extend(["--assets", s.as_str()]);
    }
    let signed = support::run(&cfg, &args);
    assert_eq!(signed.code, 0, "{signed:?}");
    let approved = support::run(&cfg, &["approve", &token, "--json"]);
    assert_eq!(approved.code, 0, "{approved:?}");
    let results = approved.json()["results"].clone();
    assert_eq!(results[0]["asset"], "press-7");
    assert_eq!(results[0]["status"], "applied", "{results}");
    assert_eq!(results[1]["asset"], "press-8");
    assert_eq!(results[1]["status"], "pending", "{results}");
    support::capture_json(&cfg, "press-7", 0);
    support::capture_json(&cfg, "press-8", 3);

    // The device change undone, press-8 reaches the approved state: the part applies.
    sim.cmd("set holding 19 500");
    let reached = support::capture_json(&cfg, "press-8", 0);
    assert_eq!(
        reached["approval_applied"]["change_id"], "CHG-LAYOUT",
        "{reached}"
    );

    // A device drift (same spec) cannot be approved by a token for a list of assets.
    sim.cmd("set holding 4 1");
    let device = support::capture_json(&cfg, "press-7", 3);
    assert_eq!(device["drift"]["reason"], "device");
    let second = dir.path().join("device.jwt").display().to_string();
    let d7 = format!("press-7={}", device["digest"].as_str().expect("digest"));
    let signed = support::run(
        &cfg,
        &[
            "sign-approval",
            "--key",
            &key,
            "--change",
            "CHG-SNEAK",
            "--requestor",
            "Lee Brandt",
            "--assets",
            &d7,
            "--out",
            &second,
        ],
    );
    assert_eq!(signed.code, 0, "{signed:?}");
    let refused = support::run(&cfg, &["approve", &second, "--json"]);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert_eq!(refused.json()["results"][0]["reason"], "not-capture-change");
    sim.assert_no_writes();
}
