//! `otdrift demo`: simulators and the agent together, the whole story, no config to write.
//!
//! Everything runs for real: the simulator is a Modbus TCP server on a free loopback port, the
//! config is a TOML file in a temporary data dir loaded like any other, captures go through the
//! same code as `otdrift capture`, and the store is a real SQLite file. The demo checks each
//! step's outcome and fails (exit 1) naming the step if the agent did not behave, so it is
//! also a smoke test of an installed binary.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::anyhow;
use otdrift_config::AssetConfig;
use otdrift_simulators::modbus::{ModbusSimHandle, ModbusSimulator, ModbusState};
use otdrift_store::DriftOutcome;

use crate::capture::{CaptureReport, capture_asset};
use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure, RuntimeContext};
use crate::render;

/// The demo's config; `{DATA_DIR}` and `{MODBUS}` are filled in at run time.
const DEMO_CONFIG: &str = include_str!("demo.toml");

/// The recipe register the demo changes: the upper platen temperature setpoint (0.1 °C).
const DEMO_REGISTER: u16 = 2;

fn step_failed(step: &str, what: impl std::fmt::Display) -> Failure {
    Failure::runtime(anyhow!("demo step {step:?} did not go as expected: {what}"))
}

async fn capture(
    agent: &mut Agent,
    asset: &AssetConfig,
    step: &str,
) -> Result<CaptureReport, Failure> {
    let mut collector = otdrift_protocols::build(asset).map_err(|e| step_failed(step, e))?;
    let report = capture_asset(&mut agent.store, asset, collector.as_mut(), None)
        .await
        .map_err(|e| step_failed(step, Failure::from(e).error))?;
    collector.close().await;
    Ok(report)
}

fn say(text: &str) {
    println!("{text}");
}

/// Runs the demo.
pub async fn run() -> CmdResult {
    let sim: ModbusSimHandle = ModbusSimulator::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ModbusState::press_demo(),
    )
    .await
    .runtime("cannot start the Modbus simulator")?;
    let result = story(&sim).await;
    sim.shutdown();
    result
}

async fn story(sim: &ModbusSimHandle) -> CmdResult {
    let dir = tempfile::Builder::new()
        .prefix("otdrift-demo-")
        .tempdir()
        .runtime("cannot create a temporary data dir")?;
    let config_path = dir.path().join("otdrift.toml");
    let config_text = DEMO_CONFIG
        .replace("{DATA_DIR}", &dir.path().join("data").display().to_string())
        .replace("{MODBUS}", &sim.local_addr().to_string());
    std::fs::write(&config_path, config_text).runtime("cannot write the demo config")?;
    let mut agent = Agent::open(&config_path)?;
    let asset = agent.asset("press-7")?.clone();

    say("otdrift demo: a simulated press on Modbus TCP, and the agent watching it.\n");
    say(&format!(
        "1. A Modbus TCP press simulator listens on {} (recipe in holding registers 0-49,\n   interlock coils 0-15, process values ticking in input registers).\n   The agent's config and database live in {} (removed at the end).\n",
        sim.local_addr(),
        dir.path().display()
    ));

    // 2. First capture: provisional baseline.
    let first = capture(&mut agent, &asset, "first capture").await?;
    if !first.outcome.baseline_created {
        return Err(step_failed(
            "first capture",
            "no provisional baseline was created",
        ));
    }
    say(&format!(
        "2. First capture ({} items, {} requests). The press has no baseline yet, so this state\n   becomes its PROVISIONAL baseline until an approver signs it:\n   signature {}\n",
        first.capture.snapshot.len(),
        first.capture.stats.requests,
        first.outcome.digests.overall
    ));

    // 3. Runtime values move; the signature must not.
    sim.tick();
    sim.tick();
    let second = capture(&mut agent, &asset, "capture while process values tick").await?;
    if second.outcome.drift != DriftOutcome::None
        || second.outcome.digests.overall != first.outcome.digests.overall
    {
        return Err(step_failed(
            "capture while process values tick",
            "ticking input registers changed the signature",
        ));
    }
    say(
        "3. Process values tick (input registers change) and the agent captures again:\n   same signature, no drift. Runtime values are never part of the signature.\n",
    );

    // 4. An unapproved setpoint change.
    let before = sim.holding(DEMO_REGISTER).ok_or_else(|| {
        step_failed(
            "setpoint change",
            "the demo register is not in the simulator",
        )
    })?;
    let after = before.wrapping_add(150);
    sim.set_holding(DEMO_REGISTER, &[after])
        .map_err(|e| step_failed("setpoint change", e))?;
    let drifted = capture(&mut agent, &asset, "capture after the setpoint change").await?;
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
        "4. Someone changes the upper platen temperature setpoint (holding register {DEMO_REGISTER}) from {before} to {after}\n   without an approval. The next capture sees it (`otdrift capture` exits 3):\n   DRIFT #{} severity {}, observed {}",
        event.id, event.severity, event.observed_digest
    ));
    for line in render::change_lines(&event.changes, 10) {
        say(&format!("     {line}"));
    }
    say("");

    // 5. Put it back.
    sim.set_holding(DEMO_REGISTER, &[before])
        .map_err(|e| step_failed("setpoint restore", e))?;
    let back = capture(&mut agent, &asset, "capture after the restore").await?;
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
        "5. The setpoint is put back to {before}. The device matches its baseline again:\n   drift #{} is RESOLVED.\n",
        resolved.id
    ));

    // 6. The record.
    let report = agent
        .store
        .audit_verify()
        .runtime("cannot read the audit log")?;
    if let Some(b) = &report.first_break {
        return Err(step_failed(
            "audit",
            format!("chain broken at #{}: {}", b.seq, b.reason),
        ));
    }
    let events = agent
        .store
        .events_after(0, 1000)
        .runtime("cannot read the outbox")?;
    let log = sim.request_log();
    say(&format!(
        "6. The record: {} audit-log entries, hash chain intact (head {}).\n   {} events queued for the central system: {}.\n   The simulator received {} requests from the agent, {} of them writes.\n",
        report.entries,
        report.head.map(|(_, h)| h.short()).unwrap_or_default(),
        events.len(),
        events
            .iter()
            .map(|e| e.event_type.trim_start_matches("io.otdrift."))
            .collect::<Vec<_>>()
            .join(", "),
        log.total(),
        log.writes()
    ));
    if log.writes() != 0 {
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
