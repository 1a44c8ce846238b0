//! `otdrift demo`: simulators and the agent together, the whole story, no config to write.
//!
//! Everything runs for real: the simulator is a Modbus TCP server on a free loopback port, the
//! config is a TOML file in a temporary data dir loaded like any other, captures go through the
//! same code as `otdrift capture`, approvals through the same code as `otdrift approve`, and
//! the store is a real SQLite file. The demo checks each step's outcome and fails (exit 1)
//! naming the step if the agent did not behave, so it is also a smoke test of an installed
//! binary.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::anyhow;
use chrono::{TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use otdrift_config::{AssetConfig, ProtocolConfig};
use otdrift_core::Digest;
use otdrift_protocols::Collector as _;
use otdrift_simulators::modbus::{ModbusSimHandle, ModbusSimulator, ModbusState};
use otdrift_store::{DriftOutcome, Phase};
use serde_json::json;

use crate::approval::{self, Outcome};
use crate::capture::{CaptureReport, capture_asset};
use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure, RuntimeContext};
use crate::{evidence, keys, render};

/// The demo's config; `{DATA_DIR}`, `{MODBUS}` and `{APPROVER_KEY}` are filled in at run time.
const DEMO_CONFIG: &str = include_str!("demo.toml");

/// The recipe register of the unapproved change: the upper platen temperature setpoint.
const DRIFT_REGISTER: u16 = 2;

/// The recipe register of the approved change: the clamp pressure setpoint (bar).
const CHANGE_REGISTER: u16 = 6;

fn step_failed(step: &str, what: impl std::fmt::Display) -> Failure {
    Failure::runtime(anyhow!("demo step {step:?} did not go as expected: {what}"))
}

async fn capture(
    agent: &mut Agent,
    asset: &AssetConfig,
    change: Option<(&str, Phase)>,
    step: &str,
) -> Result<CaptureReport, Failure> {
    let mut collector = otdrift_protocols::build(asset, &agent.config.agent.data_dir)
        .map_err(|e| step_failed(step, e))?;
    let rules = crate::rules::change_rules(&agent.config, asset);
    let report = capture_asset(&mut agent.store, asset, &rules, collector.as_mut(), change)
        .await
        .map_err(|e| step_failed(step, Failure::from(e).error))?;
    collector.close().await;
    Ok(report)
}

fn say(text: &str) {
    println!("{text}");
}

/// An approval token as the approver's change system would mint it.
fn token(key: &SigningKey, change: &str, to: &Digest, from: Option<&Digest>) -> String {
    let now = Utc::now();
    let mut claims = json!({
        "iss": "plant-eng-mgr",
        "sub": "press-7",
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": (now + TimeDelta::hours(8)).timestamp(),
        "change_id": change,
        "to": to,
        "approver": "Dana Okafor",
        "requestor": "Lee Brandt",
        "kind": "normal",
    });
    if let Some(from) = from {
        claims["from"] = json!(from);
    }
    approval::token::sign(&claims, "plant-eng-mgr", key)
}

/// Runs the demo.
pub async fn run() -> CmdResult {
    let sim: ModbusSimHandle = ModbusSimulator::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ModbusState::press_demo(),
    )
    .await
    .runtime("cannot start the Modbus simulator")?;
    let extras = extra_controllers().await?;
    let result = story(&sim, &extras).await;
    sim.shutdown();
    for e in &extras {
        (e.shutdown)();
    }
    result
}

/// Another simulated controller the demo watches: how it is configured, how its setpoint is
/// changed and put back.
struct Extra {
    /// What it is, for the story.
    title: &'static str,
    /// Its asset id.
    asset: &'static str,
    /// Its `[[asset]]` table, address filled in.
    config: String,
    /// The change, in words.
    what: &'static str,
    /// Makes the change on the simulator.
    change: Box<dyn Fn() -> Result<(), String>>,
    /// Puts it back.
    restore: Box<dyn Fn() -> Result<(), String>>,
    /// Requests its simulator has received, and how many of them wrote (must stay 0).
    requests: Box<dyn Fn() -> (usize, usize)>,
    /// Stops the simulator.
    shutdown: Box<dyn Fn()>,
}

#[allow(dead_code)] // unused in a build with no protocol beyond Modbus
fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A closure sending one control command to a simulator, for `Extra::change`/`restore`.
#[allow(dead_code)]
fn send(
    command: impl Fn(&str) -> Result<String, String> + 'static,
    line: &'static str,
) -> Box<dyn Fn() -> Result<(), String>> {
    Box::new(move || command(line).map(|_| ()))
}

/// Starts a simulator for every other protocol in this build.
async fn extra_controllers() -> Result<Vec<Extra>, Failure> {
    #[allow(unused_mut)]
    let mut extras: Vec<Extra> = Vec::new();
    #[cfg(feature = "s7")]
    {
        use otdrift_simulators::s7::{S7SimHandle, S7Simulator, S7State};
        let sim: S7SimHandle = S7Simulator::start(loopback(), S7State::demo())
            .await
            .runtime("cannot start the S7 simulator")?;
        let (a, b, c, d) = (sim.clone(), sim.clone(), sim.clone(), sim.clone());
        extras.push(Extra {
            title: "a Siemens S7-315 (S7comm; the simulator is snap7's own server)",
            asset: "filler-s7",
            config: format!(
                "[[asset]]\nid = \"filler-s7\"\nprotocol = \"s7\"\naddress = \"{}\"\nrack = 0\nslot = 2\n  [[asset.setpoints]]\n  name = \"recipe\"\n  db = 1\n  start = 0\n  size = 16\n    [[asset.setpoints.field]]\n    name = \"fill_pressure\"\n    offset = 0\n    type = \"int\"\n    [[asset.setpoints.field]]\n    name = \"fill_time\"\n    offset = 2\n    type = \"int\"\n    [[asset.setpoints.field]]\n    name = \"fill_temp\"\n    offset = 4\n    type = \"real\"\n",
                sim.local_addr()
            ),
            what: "the fill temperature REAL in DB1 (field fill_temp at DBD 4) goes from 72.5 to 75.0 °C",
            change: Box::new(move || a.set_db_bytes(1, 5, &[0x96]).map_err(|e| e.to_string())),
            restore: Box::new(move || b.set_db_bytes(1, 5, &[0x91]).map_err(|e| e.to_string())),
            requests: Box::new(move || (d.request_log().total(), d.request_log().writes())),
            shutdown: Box::new(move || c.shutdown()),
        });
    }
    #[cfg(feature = "ads")]
    {
        use otdrift_simulators::ads::{AdsSimHandle, AdsSimulator, AdsState};
        let sim: AdsSimHandle = AdsSimulator::start(loopback(), AdsState::demo())
            .await
            .runtime("cannot start the ADS simulator")?;
        let (a, b, c, d) = (sim.clone(), sim.clone(), sim.clone(), sim.clone());
        extras.push(Extra {
            title: "a Beckhoff TwinCAT 3 PLC (ADS over AMS/TCP)",
            asset: "filler-ads",
            config: format!(
                "[[asset]]\nid = \"filler-ads\"\nprotocol = \"ads\"\naddress = \"{}\"\nams_net_id = \"5.80.201.232.1.1\"\n  [[asset.setpoints]]\n  name = \"recipe\"\n  symbol = \"GVL_Recipe.*\"\n",
                sim.local_addr()
            ),
            what: "GVL_Recipe.FillVolume goes from 500.0 to 520.0 ml",
            change: Box::new(move || {
                a.command("set GVL_Recipe.FillVolume 520")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
            restore: Box::new(move || {
                b.command("set GVL_Recipe.FillVolume 500")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
            requests: Box::new(move || (d.request_log().total(), d.request_log().writes())),
            shutdown: Box::new(move || c.shutdown()),
        });
    }
    #[cfg(feature = "cip")]
    {
        use otdrift_simulators::cip::{CipSimHandle, CipSimulator, CipState};
        let sim: CipSimHandle = CipSimulator::start(loopback(), CipState::demo())
            .await
            .runtime("cannot start the CIP simulator")?;
        let (a, b, c, d) = (sim.clone(), sim.clone(), sim.clone(), sim.clone());
        extras.push(Extra {
            title: "an Allen-Bradley CompactLogix (EtherNet/IP CIP)",
            asset: "oven-cip",
            config: format!(
                "[[asset]]\nid = \"oven-cip\"\nprotocol = \"cip\"\naddress = \"{}\"\nslot = 0\n  [[asset.setpoints]]\n  name = \"oven setpoint\"\n  tag = \"Oven_SP\"\n",
                sim.local_addr()
            ),
            what: "the REAL tag Oven_SP goes from 180.0 to 185.5 °C",
            change: send(move |l| a.command(l).map_err(|e| e.to_string()), "set Oven_SP 185.5"),
            restore: send(move |l| b.command(l).map_err(|e| e.to_string()), "set Oven_SP 180.0"),
            requests: Box::new(move || (d.request_log().total(), d.request_log().writes())),
            shutdown: Box::new(move || c.shutdown()),
        });
    }
    #[cfg(feature = "opcua")]
    {
        use otdrift_simulators::opcua::{OpcuaSimHandle, OpcuaSimulator, OpcuaState};
        let sim: OpcuaSimHandle = OpcuaSimulator::start(loopback(), OpcuaState::demo())
            .await
            .map_err(|e| {
                Failure::runtime(anyhow!(e).context("cannot start the OPC UA simulator"))
            })?;
        let (a, b, c, d) = (sim.clone(), sim.clone(), sim.clone(), sim.clone());
        extras.push(Extra {
            title: "an OPC UA server (a mixer)",
            asset: "mixer-opcua",
            config: format!(
                "[[asset]]\nid = \"mixer-opcua\"\nprotocol = \"opcua\"\naddress = \"{}\"\n  [[asset.setpoints]]\n  name = \"recipe\"\n  node = \"ns=2;s=Mixer.Setpoints\"\n",
                sim.endpoint_url()
            ),
            what: "the Double variable Mixer.Setpoints.MixSpeed goes from 72.5 to 75.0",
            change: send(
                move |l| a.command(l).map_err(|e| e.to_string()),
                "set Mixer.Setpoints.MixSpeed 75.0",
            ),
            restore: send(
                move |l| b.command(l).map_err(|e| e.to_string()),
                "set Mixer.Setpoints.MixSpeed 72.5",
            ),
            requests: Box::new(move || (d.request_log().total(), d.request_log().writes())),
            shutdown: Box::new(move || c.shutdown()),
        });
    }
    Ok(extras)
}

/// Baseline, change, drift, put back, resolved: the same story on another controller.
async fn extra_story(agent: &mut Agent, n: usize, extra: &Extra) -> Result<(), Failure> {
    let asset = agent.asset(extra.asset)?.clone();
    let step = extra.asset;
    let first = capture(agent, &asset, None, step).await?;
    if !first.outcome.baseline_created {
        return Err(step_failed(step, "no provisional baseline was created"));
    }
    (extra.change)().map_err(|e| step_failed(step, e))?;
    let drifted = capture(agent, &asset, None, step).await?;
    let DriftOutcome::Opened(event) = &drifted.outcome.drift else {
        return Err(step_failed(
            step,
            format!(
                "expected a new drift event, got {:?}",
                drifted.outcome.drift
            ),
        ));
    };
    (extra.restore)().map_err(|e| step_failed(step, e))?;
    let back = capture(agent, &asset, None, step).await?;
    let DriftOutcome::Resolved(_) = &back.outcome.drift else {
        return Err(step_failed(
            step,
            format!(
                "expected the drift to resolve, got {:?}",
                back.outcome.drift
            ),
        ));
    };
    say(&format!(
        "{n}. The same watch on {}: a {}-item baseline ({} requests per capture);\n   {}: DRIFT #{} severity {}",
        extra.title,
        first.capture.snapshot.len(),
        first.capture.stats.requests,
        extra.what,
        event.id,
        event.severity
    ));
    for line in render::change_lines(&event.changes, 4) {
        say(&format!("     {line}"));
    }
    say("   Put back: RESOLVED.\n");
    Ok(())
}

async fn story(sim: &ModbusSimHandle, extras: &[Extra]) -> CmdResult {
    let dir = tempfile::Builder::new()
        .prefix("otdrift-demo-")
        .tempdir()
        .runtime("cannot create a temporary data dir")?;
    let approver_key = keys::generate().runtime("cannot make the demo approver's key")?;
    let config_path = dir.path().join("otdrift.toml");
    let mut config_text = DEMO_CONFIG
        .replace("{DATA_DIR}", &dir.path().join("data").display().to_string())
        .replace("{MODBUS}", &sim.local_addr().to_string())
        .replace(
            "{APPROVER_KEY}",
            &keys::public_key_text(&approver_key.verifying_key()),
        );
    for extra in extras {
        config_text.push('\n');
        config_text.push_str(&extra.config);
    }
    std::fs::write(&config_path, config_text).runtime("cannot write the demo config")?;
    let mut agent = Agent::open(&config_path)?;
    let asset = agent.asset("press-7")?.clone();

    say("otdrift demo: a simulated press on Modbus TCP, and the agent watching it.\n");
    say(&format!(
        "1. A Modbus TCP press simulator listens on {} (recipe in holding registers 0-49,\n   interlock coils 0-15, process values ticking in input registers).\n   The agent's config, database and key live in {} (removed at the end).\n",
        sim.local_addr(),
        dir.path().display()
    ));

    // 2. First capture: provisional baseline, then approved by a signed token.
    let first = capture(&mut agent, &asset, None, "first capture").await?;
    if !first.outcome.baseline_created {
        return Err(step_failed(
            "first capture",
            "no provisional baseline was created",
        ));
    }
    let b0 = first.outcome.digests.overall;
    say(&format!(
        "2. First capture ({} items, {} requests). The press has no baseline yet, so this state\n   becomes its PROVISIONAL baseline:\n   signature {b0}",
        first.capture.snapshot.len(),
        first.capture.stats.requests,
    ));
    let approved = approval::submit(
        &agent.config,
        &mut agent.store,
        &token(&approver_key, "CHG-1000", &b0, None),
        approval::COMMAND_LINE,
    )
    .runtime("cannot record the approval")?;
    let Outcome::Applied { .. } = approved else {
        return Err(step_failed(
            "baseline approval",
            format!("expected the token to apply, got {approved:?}"),
        ));
    };
    say(
        "   The plant engineer (Dana Okafor) signs an Ed25519 approval token naming that signature;\n   the agent verifies it and the baseline is APPROVED.\n",
    );

    // 3. Runtime values move; the signature must not.
    sim.tick();
    sim.tick();
    let second = capture(
        &mut agent,
        &asset,
        None,
        "capture while process values tick",
    )
    .await?;
    if second.outcome.drift != DriftOutcome::None || second.outcome.digests.overall != b0 {
        return Err(step_failed(
            "capture while process values tick",
            "ticking input registers changed the signature",
        ));
    }
    say(
        "3. Process values tick (input registers change) and the agent captures again:\n   same signature, no drift. Runtime values are never part of the signature.\n",
    );

    // 4. An unapproved setpoint change, then put back.
    let before = sim.holding(DRIFT_REGISTER).ok_or_else(|| {
        step_failed(
            "setpoint change",
            "the demo register is not in the simulator",
        )
    })?;
    let after = before.wrapping_add(150);
    sim.set_holding(DRIFT_REGISTER, &[after])
        .map_err(|e| step_failed("setpoint change", e))?;
    let drifted = capture(
        &mut agent,
        &asset,
        None,
        "capture after the setpoint change",
    )
    .await?;
    let DriftOutcome::Opened(event) = &drifted.outcome.drift else {
        return Err(step_failed(
            "capture after the setpoint change",
            format!(
                "expected a new drift event, got {:?}",
                drifted.outcome.drift
            ),
        ));
    };
    say(&format!(
        "4. Someone changes the upper platen temperature setpoint (holding register {DRIFT_REGISTER}) from {before}\n   to {after} without an approval. The next capture sees it (`otdrift capture` exits 3):\n   DRIFT #{} severity {}, observed {}",
        event.id, event.severity, event.observed_digest
    ));
    for line in render::change_lines(&event.changes, 10) {
        say(&format!("     {line}"));
    }
    sim.set_holding(DRIFT_REGISTER, &[before])
        .map_err(|e| step_failed("setpoint restore", e))?;
    let back = capture(&mut agent, &asset, None, "capture after the restore").await?;
    let DriftOutcome::Resolved(resolved) = &back.outcome.drift else {
        return Err(step_failed(
            "capture after the restore",
            format!(
                "expected the drift to resolve, got {:?}",
                back.outcome.drift
            ),
        ));
    };
    say(&format!(
        "   The setpoint is put back to {before}; the press matches its baseline again: drift #{} RESOLVED.\n",
        resolved.id
    ));

    // 5. An approved change: planned on a twin, approved before it is made, applied on sight.
    let old_pressure = sim.holding(CHANGE_REGISTER).ok_or_else(|| {
        step_failed(
            "planned change",
            "the demo register is not in the simulator",
        )
    })?;
    let new_pressure = old_pressure.wrapping_add(20);
    let planned = planned_signature(&asset, CHANGE_REGISTER, new_pressure).await?;
    let pending = approval::submit(
        &agent.config,
        &mut agent.store,
        &token(&approver_key, "CHG-1042", &planned, Some(&b0)),
        approval::COMMAND_LINE,
    )
    .runtime("cannot record the approval")?;
    let Outcome::Pending { .. } = pending else {
        return Err(step_failed(
            "planned change",
            format!("expected a pending approval, got {pending:?}"),
        ));
    };
    say(&format!(
        "5. Change CHG-1042 raises the clamp pressure (holding register {CHANGE_REGISTER}) from {old_pressure} to {new_pressure} bar.\n   Engineering tries it on a twin of the press to learn its signature ({}),\n   and the approver signs a token for it BEFORE anyone touches the press: the agent holds it as pending.",
        planned.short()
    ));
    capture(
        &mut agent,
        &asset,
        Some(("CHG-1042", Phase::Before)),
        "technician's before capture",
    )
    .await?;
    sim.set_holding(CHANGE_REGISTER, &[new_pressure])
        .map_err(|e| step_failed("planned change", e))?;
    let done = capture(
        &mut agent,
        &asset,
        Some(("CHG-1042", Phase::After)),
        "technician's after capture",
    )
    .await?;
    if done.outcome.approval.is_none() || done.outcome.baseline.digest != planned {
        return Err(step_failed(
            "technician's after capture",
            "the pending approval did not move the baseline",
        ));
    }
    say(
        "   The technician captures before and after the change. The after capture sees exactly\n   the approved state, so the pending approval applies: the baseline moves, no drift.\n",
    );

    // 6. The evidence pack.
    let pack = evidence::build(&agent.store, &agent.config, &agent.key, "CHG-1042")
        .map_err(|e| step_failed("evidence pack", e))?;
    let out = dir.path().join("evidence-CHG-1042");
    std::fs::create_dir_all(&out).runtime("cannot create the evidence dir")?;
    let text = serde_json::to_string_pretty(&pack).runtime("cannot render the pack")?;
    std::fs::write(out.join("evidence.json"), &text).runtime("cannot write the pack")?;
    std::fs::write(out.join("evidence.html"), evidence::html::render(&pack))
        .runtime("cannot write the pack")?;
    let agent_public = crate::keys::public_key_text(&agent.key.verifying_key());
    let report = evidence::verify(&text, evidence::KeyTrust::Pinned(&agent_public));
    if !report.ok() {
        return Err(step_failed("evidence pack", report.problems.join("; ")));
    }
    let violations = pack
        .pointer("/pack/flags")
        .and_then(|f| f.as_array())
        .map(|f| f.iter().filter(|f| f["level"] == "violation").count())
        .unwrap_or(0);
    say(&format!(
        "6. `otdrift evidence CHG-1042` writes evidence.json and evidence.html: request, approval,\n   before/after signatures, the diff, the baseline move and the audit entries, signed by the\n   agent's key. `otdrift evidence-verify` checks it offline ({violations} violations):\n   {}.\n",
        report.checked.join(", ")
    ));

    // 7.. The other controllers of this build.
    let mut n = 7;
    for extra in extras {
        extra_story(&mut agent, n, extra).await?;
        n += 1;
    }

    // The record.
    let audit = agent
        .store
        .audit_verify()
        .runtime("cannot read the audit log")?;
    if let Some(b) = &audit.first_break {
        return Err(step_failed(
            "audit",
            format!("chain broken at #{}: {}", b.seq, b.reason),
        ));
    }
    let events = agent
        .store
        .events_after(0, 1000)
        .runtime("cannot read the outbox")?;
    let mut by_type: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &events {
        *by_type
            .entry(e.event_type.trim_start_matches("io.otdrift."))
            .or_default() += 1;
    }
    let (mut total, mut writes) = (sim.request_log().total(), sim.request_log().writes());
    for e in extras {
        let (t, w) = (e.requests)();
        total += t;
        writes += w;
    }
    say(&format!(
        "{n}. The record: {} audit-log entries, hash chain intact (head {}).\n   {} events queued for the central system ({}).\n   The simulators received {total} requests from the agent, {writes} of them writes.\n",
        audit.entries,
        audit.head.map(|(_, h)| h.short()).unwrap_or_default(),
        events.len(),
        by_type
            .iter()
            .map(|(t, n)| format!("{n} {t}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    if writes != 0 {
        return Err(step_failed(
            "read-only check",
            "the agent sent a write request",
        ));
    }
    say(
        "Try it on your own devices: write /etc/otdrift/otdrift.toml (see README.md), then\n`otdrift check-config` and `otdrift capture <asset>`.",
    );
    Ok(Exit::Ok)
}

/// The signature the press will have after the change, learned on a twin: a second simulator
/// from the same state with the change applied, read by a collector outside the store.
async fn planned_signature(
    asset: &AssetConfig,
    register: u16,
    value: u16,
) -> Result<Digest, Failure> {
    let step = "planned change on the twin";
    let twin = ModbusSimulator::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ModbusState::press_demo(),
    )
    .await
    .map_err(|e| step_failed(step, e))?;
    twin.set_holding(register, &[value])
        .map_err(|e| step_failed(step, e))?;
    let mut twin_asset = asset.clone();
    twin_asset.address = twin.local_addr().to_string();
    twin_asset.host = twin.local_addr().ip().to_string();
    twin_asset.port = twin.local_addr().port();
    let ProtocolConfig::Modbus(cfg) = &twin_asset.protocol else {
        return Err(step_failed(step, "the demo asset is not Modbus"));
    };
    let mut collector = otdrift_protocols::modbus::ModbusCollector::new(&twin_asset, cfg);
    let capture = collector
        .capture()
        .await
        .map_err(|e| step_failed(step, e))?;
    collector.close().await;
    twin.shutdown();
    Ok(capture.snapshot.digest())
}
