//! The daemon end to end: `otdrift run` against a Modbus simulator process, an in-test
//! upstream receiver and the HTTP API, all over loopback.

mod support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::receiver::{Answer, Receiver};
use support::{Daemon, Sim, free_port, http, run, secret, wait_until, write_config};

const STATE: &str = r#"
unit_id = 1
tick_ms = 0

[identity]
vendor_name = "otdrift test"
product_code = "E2E-4"
revision = "1.0"

[[holding]]
start = 0
count = REGISTERS
fill = 500

[[input]]
start = 0
count = 8
tick = "counter"
"#;

const UPSTREAM_TOKEN: &str = "upstream-token-0123456789abcdef";
const API_TOKEN: &str = "api-token-0123456789abcdef-xyz";
const APPROVE_TOKEN: &str = "approve-token-9876543210fedcba-xyz";

/// Every schedule in these tests: every second.
const EVERY_SECOND: &str = "* * * * * *";

struct Rig {
    dir: tempfile::TempDir,
    sim: Sim,
    cfg: PathBuf,
    api: String,
}

fn rig(upstream: Option<&str>, extra_agent: &str) -> Rig {
    rig_with(upstream, extra_agent, "", 64)
}

/// A rig whose `[upstream]` gets `extra_upstream` and whose press has `registers` holding
/// registers, all of them setpoints.
fn rig_with(
    upstream: Option<&str>,
    extra_agent: &str,
    extra_upstream: &str,
    registers: u16,
) -> Rig {
    let state = STATE.replace("REGISTERS", &registers.to_string());
    rig_from(&state, upstream, extra_agent, extra_upstream, registers)
}

/// [`rig_with`] on a simulator state of the test's own.
fn rig_from(
    state_text: &str,
    upstream: Option<&str>,
    extra_agent: &str,
    extra_upstream: &str,
    registers: u16,
) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.toml");
    std::fs::write(&state, state_text).expect("state");
    let sim = Sim::start("modbus", Some(&state), dir.path());
    let api_token = secret(dir.path(), "api.token", API_TOKEN);
    let up_token = secret(dir.path(), "upstream.token", UPSTREAM_TOKEN);
    let api = format!("127.0.0.1:{}", free_port());
    let upstream = upstream
        .map(|url| {
            format!(
                "[upstream]\nurl = \"{url}\"\ntoken_file = \"{}\"\nbatch_size = 20\ntimeout_ms = 2000\nallow_insecure_http = true\n{extra_upstream}\n",
                up_token.display()
            )
        })
        .unwrap_or_default();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[agent]
id = "gw-daemon"
data_dir = "{data}"
{extra_agent}

[api]
listen = "{api}"
token_file = "{api_token}"

{upstream}

[[asset]]
id = "press-7"
protocol = "modbus"
address = "{sim}"
schedule = "{EVERY_SECOND}"
timeout_ms = 1000

  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = {registers}
"#,
            data = dir.path().join("data").display(),
            api_token = api_token.display(),
            sim = sim.addr,
        ),
    );
    Rig { dir, sim, cfg, api }
}

impl Rig {
    fn daemon(&self) -> Daemon {
        Daemon::start(&self.cfg, &self.dir.path().join("daemon.log"))
    }

    /// The sum of a counter family's samples whose labels contain `filter`.
    fn metric(&self, name: &str, filter: &str) -> u64 {
        let r = http("GET", &self.api, "/metrics", Some(API_TOKEN), None);
        r.body
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits until the daemon's first capture set the baseline, so a mutation after this is
    /// drift and not part of the baseline.
    fn wait_for_baseline(&self) {
        assert!(
            wait_until(
                Duration::from_secs(15),
                || self.api_get("/v1/assets")["assets"][0]["baseline"] != Json::Null
            ),
            "no baseline"
        );
    }

    /// Waits up to 10 s until the press has `n` open drift events; whether it got there.
    fn open_drift_becomes(&self, n: u64) -> bool {
        wait_until(Duration::from_secs(10), || {
            self.api_get("/v1/assets")["assets"][0]["open_drift"] == n
        })
    }

    fn api_get(&self, path: &str) -> Json {
        let r = http("GET", &self.api, path, Some(API_TOKEN), None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    }

    /// Every event the agent holds, oldest first, paged through the API.
    fn all_events(&self) -> Vec<Json> {
        let mut after = 0;
        let mut out = Vec::new();
        loop {
            let page = self.api_get(&format!("/v1/events?after={after}&limit=100"));
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return out;
            }
            after = page["next"].as_i64().expect("next");
            out.extend(events);
        }
    }
}

fn types(events: &[Json]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

/// The events of type `t`, in their order.
fn of_type<'a>(events: &'a [Json], t: &str) -> Vec<&'a Json> {
    events.iter().filter(|e| e["type"] == t).collect()
}

#[test]
fn drift_reaches_the_upstream_within_a_period_and_resolves() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let mut rig = rig(Some(&receiver.url()), "");
    let daemon = rig.daemon();
    let got = &receiver.received;
    assert!(
        wait_until(Duration::from_secs(15), || got
            .types()
            .contains(&"io.otdrift.baseline.moved".to_owned())),
        "no baseline event upstream; daemon log:\n{}",
        daemon.log()
    );
    // Process values tick across two more polls: no drift.
    rig.sim.cmd("tick 3");
    let polls = rig.metric("otdrift_captures_total", "press-7");
    assert!(wait_until(Duration::from_secs(10), || rig
        .metric("otdrift_captures_total", "press-7")
        >= polls + 2));
    assert_eq!(rig.metric("otdrift_captures_total", "outcome=\"drift\""), 0);
    assert!(
        !got.types()
            .iter()
            .any(|t| t.starts_with("io.otdrift.drift."))
    );

    let changed = Instant::now();
    rig.sim.cmd("set holding 40 1300");
    assert!(
        wait_until(Duration::from_secs(10), || got
            .types()
            .contains(&"io.otdrift.drift.detected".to_owned())),
        "no drift upstream; log:\n{}",
        daemon.log()
    );
    let took = changed.elapsed();
    // The README's promise: one schedule period (1 s) plus 2 s.
    assert!(
        took <= Duration::from_secs(3),
        "drift arrived after {took:?}"
    );

    let drift = got
        .unique()
        .into_iter()
        .find(|e| e["type"] == "io.otdrift.drift.detected")
        .expect("drift event");
    assert_eq!(drift["specversion"], "1.0");
    assert_eq!(drift["source"], "otdrift://gw-daemon/press-7");
    assert_eq!(drift["data"]["asset"], "press-7");
    assert_eq!(drift["data"]["severity"], "medium");
    assert_eq!(drift["data"]["changes"][0]["path"], "modbus/holding/40");
    assert_eq!(drift["data"]["changes"][0]["before"], 500);
    assert_eq!(drift["data"]["changes"][0]["after"], 1300);
    assert!(
        drift["data"]["baseline_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("blake3:"))
    );

    rig.sim.cmd("set holding 40 500");
    assert!(
        wait_until(Duration::from_secs(10), || got
            .types()
            .contains(&"io.otdrift.drift.resolved".to_owned())),
        "no resolution upstream"
    );
    assert_eq!(got.bad.load(Ordering::SeqCst), 0, "malformed pushes");
    assert_eq!(daemon.terminate(), Some(0));
    rig.sim.assert_no_writes();
}

#[test]
fn an_outage_upstream_loses_nothing_and_keeps_the_order() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    receiver.received.down.store(true, Ordering::SeqCst);
    let mut rig = rig(Some(&receiver.url()), "audit_head_interval_secs = 1");
    let daemon = rig.daemon();
    // Events pile up while the receiver is down: a drift and its resolution, audit heads.
    assert!(wait_until(Duration::from_secs(10), || receiver
        .received
        .refused
        .load(Ordering::SeqCst)
        >= 2));
    rig.wait_for_baseline();
    rig.sim.cmd("set holding 10 42");
    assert!(rig.open_drift_becomes(1));
    rig.sim.cmd("set holding 10 500");
    assert!(rig.open_drift_becomes(0));
    assert!(receiver.received.events.lock().expect("lock").is_empty());

    receiver.received.down.store(false, Ordering::SeqCst);
    // Everything the agent holds arrives, in order.
    let complete = wait_until(Duration::from_secs(30), || {
        let held = rig.all_events();
        let got = receiver.received.unique();
        got.len() >= held.len() && held.iter().zip(&got).all(|(a, b)| a["id"] == b["id"])
    });
    let held = rig.all_events();
    let got = receiver.received.unique();
    assert!(complete, "held {:?}\ngot {:?}", types(&held), types(&got));
    let seqs: Vec<i64> = got
        .iter()
        .filter_map(|e| e["otdriftseq"].as_i64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
    for t in [
        "io.otdrift.drift.detected",
        "io.otdrift.drift.resolved",
        "io.otdrift.audit.head",
    ] {
        assert!(types(&got).contains(&t), "{t} missing: {:?}", types(&got));
    }
    // Duplicates, if any, are exact retries: same id, same content.
    let all = receiver.received.events.lock().expect("lock").clone();
    for e in &all {
        let first = got.iter().find(|g| g["id"] == e["id"]).expect("known id");
        assert_eq!(first, e, "a retry differs from the original");
    }
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn a_killed_daemon_delivers_everything_after_a_restart() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    receiver.received.down.store(true, Ordering::SeqCst);
    let mut rig = rig(Some(&receiver.url()), "");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    rig.sim.cmd("set holding 5 77");
    assert!(rig.open_drift_becomes(1));
    let before_kill = rig.all_events().len();
    assert!(before_kill >= 2);
    daemon.kill();

    // Undelivered events survive the SIGKILL; the restarted daemon delivers them.
    receiver.received.down.store(false, Ordering::SeqCst);
    let daemon = rig.daemon();
    let delivered = wait_until(Duration::from_secs(30), || {
        receiver.received.unique().len() >= rig.all_events().len()
    });
    assert!(delivered, "log:\n{}", daemon.log());
    let held: Vec<Json> = rig.all_events();
    let got = receiver.received.unique();
    let held_ids: Vec<&Json> = held.iter().map(|e| &e["id"]).collect();
    let got_ids: Vec<&Json> = got.iter().map(|e| &e["id"]).collect();
    assert_eq!(got_ids[..held_ids.len()], held_ids[..]);
    assert_eq!(daemon.terminate(), Some(0));
    let verified = run(&rig.cfg, &["audit-verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
}

/// `last_capture` of press-7 as `otdrift status --json` reads it from the database.
fn stored_status(rig: &Rig) -> Json {
    let r = run(&rig.cfg, &["status", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    r.json()
}

#[test]
fn a_killed_daemon_loses_only_the_seen_times_of_quiet_polls() {
    // A window longer than the test: every quiet poll waits in memory.
    let rig = rig(None, "seen_flush = \"1h\"");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    // Past the poll that wrote the day's `asset.verified`, then quiet.
    let seen = polls(&rig);
    assert!(wait_until(Duration::from_secs(15), || polls(&rig) >= seen + 4));
    assert_eq!(
        rig.metric("otdrift_seen_pending", ""),
        1,
        "{}",
        daemon.log()
    );
    let stored = stored_status(&rig);
    let stored_last = stored["assets"][0]["last_capture"].clone();
    // The API shows the polls kept in memory: its last capture moves, the database's not.
    let api = rig.api_get("/v1/assets");
    let api_last = api["assets"][0]["last_capture"].clone();
    assert!(
        api_last.as_str() > stored_last.as_str(),
        "{api_last} vs {stored_last}"
    );
    let seq = api["delivery"]["last_seq"].clone();
    let baseline = api["assets"][0]["baseline"].clone();
    daemon.kill();

    // What the kill lost: the seen-times since the last write, nothing else.
    let after = stored_status(&rig);
    assert_eq!(after["assets"][0]["last_capture"], stored_last);
    assert_eq!(after["assets"][0]["baseline"], baseline);
    assert_eq!(after["delivery"]["last_seq"], seq);
    let verified = run(&rig.cfg, &["audit-verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
}

#[test]
fn a_stopped_daemon_writes_its_last_seen_times() {
    let rig = rig(None, "seen_flush = \"1h\"");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    let seen = polls(&rig);
    assert!(wait_until(Duration::from_secs(15), || polls(&rig) >= seen + 4));
    let api_last = rig.api_get("/v1/assets")["assets"][0]["last_capture"].clone();
    assert_eq!(daemon.terminate(), Some(0));
    let after = stored_status(&rig)["assets"][0]["last_capture"].clone();
    assert!(after.as_str() >= api_last.as_str(), "{after} vs {api_last}");
}

#[test]
fn the_api_authenticates_pages_and_approves() {
    let rig = rig(None, "");
    // A database with a thousand events in it before the daemon starts.
    {
        let clock = std::sync::Arc::new(otdrift_core::SystemClock);
        std::fs::create_dir_all(rig.dir.path().join("data")).expect("data dir");
        let mut store =
            otdrift_store::Store::open(&support::database(&rig.dir.path().join("data")), clock)
                .expect("store");
        for i in 0..1000 {
            store
                .enqueue_event(
                    otdrift_store::event_type::AUDIT_HEAD,
                    None,
                    &serde_json::json!({"filler": i}),
                )
                .expect("enqueue");
        }
    }
    let daemon = rig.daemon();

    assert_eq!(http("GET", &rig.api, "/healthz", None, None).status, 200);
    for path in ["/v1/events", "/v1/assets", "/metrics"] {
        assert_eq!(
            http("GET", &rig.api, path, None, None).status,
            401,
            "{path}"
        );
        assert_eq!(
            http("GET", &rig.api, path, Some("not-the-token-at-all"), None).status,
            401,
            "{path}"
        );
    }
    assert_eq!(
        http(
            "POST",
            &rig.api,
            "/v1/approvals",
            None,
            Some(("application/jwt", "x.y.z"))
        )
        .status,
        401
    );

    // Paging: every event once, in order, no gaps.
    rig.wait_for_baseline();
    let events = rig.all_events();
    assert!(events.len() >= 1001, "{}", events.len());
    let seqs: Vec<i64> = events
        .iter()
        .filter_map(|e| e["otdriftseq"].as_i64())
        .collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "gaps or repeats");
    let page = rig.api_get("/v1/events?after=990&limit=5");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(5));
    assert_eq!(page["next"], 995);
    assert_eq!(
        rig.api_get("/v1/events?after=999999")["events"],
        Json::Array(vec![])
    );

    let metrics = http("GET", &rig.api, "/metrics", Some(API_TOKEN), None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("otdrift_captures_total{"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("otdrift_outbox_depth"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("otdrift_capture_duration_seconds_bucket"),
        "{}",
        metrics.body
    );

    // Approvals over HTTP are off until a second, stronger token is configured.
    let off = http(
        "POST",
        &rig.api,
        "/v1/approvals",
        Some(API_TOKEN),
        Some(("application/jwt", "x.y.z")),
    );
    assert_eq!(off.status, 403, "{}", off.body);
    assert_eq!(off.json()["error"], "approvals-disabled");

    // An approval over the API moves the baseline like the CLI.
    let assets = rig.api_get("/v1/assets");
    assert!(
        assets["agent_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("ed25519:")),
        "{assets}"
    );
    let digest = assets["assets"][0]["baseline"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert_eq!(assets["assets"][0]["baseline"]["provisional"], true);
    let prefix = rig.dir.path().join("approver");
    assert!(
        support::otdrift()
            .args(["keygen", "--out"])
            .arg(&prefix)
            .output()
            .expect("keygen")
            .status
            .success()
    );
    let public = std::fs::read_to_string(rig.dir.path().join("approver.pub")).expect("pub");
    // The approver must be configured, and the approval token: add both and restart, as an
    // operator would.
    let approve_token = secret(rig.dir.path(), "approve.token", APPROVE_TOKEN);
    let cfg_text = std::fs::read_to_string(&rig.cfg).expect("cfg");
    std::fs::write(
        &rig.cfg,
        cfg_text.replace(
            "[api]",
            &format!(
                "[[approver]]\nid = \"plant-eng-mgr\"\npublic_key = \"{}\"\n\n[api]\napprove_token_file = \"{}\"",
                public.trim(),
                approve_token.display()
            ),
        ),
    )
    .expect("cfg");
    assert_eq!(daemon.terminate(), Some(0));
    let daemon = rig.daemon();
    let token = run(
        &rig.cfg,
        &[
            "sign-approval",
            "--key",
            &rig.dir.path().join("approver.key").display().to_string(),
            "--asset",
            "press-7",
            "--change",
            "CHG-API-1",
            "--to",
            &digest,
            "--requestor",
            "Lee Brandt",
        ],
    );
    assert_eq!(token.code, 0, "{token:?}");
    let token = token.stdout.trim().to_owned();
    // The read token cannot approve.
    let read_only = http(
        "POST",
        &rig.api,
        "/v1/approvals",
        Some(API_TOKEN),
        Some(("application/jwt", &token)),
    );
    assert_eq!(read_only.status, 403, "{}", read_only.body);
    assert_eq!(read_only.json()["error"], "read-only-token");
    let posted = http(
        "POST",
        &rig.api,
        "/v1/approvals",
        Some(APPROVE_TOKEN),
        Some(("application/jwt", &token)),
    );
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.json()["status"], "applied");
    assert_eq!(
        rig.api_get("/v1/assets")["assets"][0]["baseline"]["provisional"],
        false
    );
    let replay = http(
        "POST",
        &rig.api,
        "/v1/approvals",
        Some(APPROVE_TOKEN),
        Some(("application/jwt", &token)),
    );
    assert_eq!(replay.status, 409, "{}", replay.body);
    assert_eq!(replay.json()["reason"], "replay");
    let garbage = http(
        "POST",
        &rig.api,
        "/v1/approvals",
        Some(APPROVE_TOKEN),
        Some(("application/jwt", "garbage")),
    );
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    let huge = "a".repeat(64 * 1024);
    let too_big = http(
        "POST",
        &rig.api,
        "/v1/approvals",
        Some(APPROVE_TOKEN),
        Some(("application/jwt", &huge)),
    );
    assert_eq!(too_big.status, 413);
    assert!(types(&rig.all_events()).contains(&"io.otdrift.approval.rejected"));
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn a_technician_can_capture_while_the_daemon_runs() {
    let rig = rig(None, "");
    let daemon = rig.daemon();
    for _ in 0..5 {
        let r = run(&rig.cfg, &["capture", "press-7", "--json"]);
        assert!(r.code == 0 || r.code == 3, "{r:?}");
        assert!(!r.stderr.to_lowercase().contains("locked"), "{r:?}");
    }
    assert_eq!(daemon.terminate(), Some(0));
    assert_eq!(run(&rig.cfg, &["audit-verify"]).code, 0);
}

#[test]
fn a_readable_token_file_stops_the_daemon_from_starting() {
    let rig = rig(None, "");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            rig.dir.path().join("api.token"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let r = run(&rig.cfg, &["run"]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("readable by group or others"), "{r:?}");
        assert!(r.stderr.contains("chmod 600"), "{r:?}");
        // check-config makes the same checks (one function): no surprise at start.
        let checked = run(&rig.cfg, &["check-config"]);
        assert_eq!(checked.code, 2, "{checked:?}");
        assert!(
            checked.stdout.contains("api.token_file")
                && checked.stdout.contains("readable by group or others"),
            "{checked:?}"
        );
        let checked = run(&rig.cfg, &["check-config", "--json"]);
        assert_eq!(checked.code, 2, "{checked:?}");
        let doc = checked.json();
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["problems"][0]["key"], "api.token_file");
        assert_eq!(doc["problems"][0]["fatal"], true);
    }
}

#[test]
fn an_unreachable_asset_is_announced_once_and_again_when_back() {
    let mut rig = rig(None, "backoff_max_secs = 1");
    let daemon = rig.daemon();
    assert!(wait_until(Duration::from_secs(10), || rig
        .api_get("/v1/assets")["assets"][0]["reachable"]
        == true));
    rig.sim.cmd("quirk stall on");
    // Several failed polls: one announcement.
    assert!(
        wait_until(Duration::from_secs(20), || rig
            .metric("otdrift_captures_total", "outcome=\"unreachable\"")
            + rig.metric("otdrift_captures_total", "outcome=\"timeout\"")
            >= 3),
        "log:\n{}",
        daemon.log()
    );
    assert_eq!(rig.api_get("/v1/assets")["assets"][0]["reachable"], false);
    let unreachable = |rig: &Rig| {
        rig.all_events()
            .iter()
            .filter(|e| e["type"] == "io.otdrift.asset.unreachable")
            .count()
    };
    assert_eq!(unreachable(&rig), 1);
    rig.sim.cmd("quirk stall off");
    assert!(
        wait_until(Duration::from_secs(15), || rig
            .all_events()
            .iter()
            .any(|e| e["type"] == "io.otdrift.asset.reachable")),
        "log:\n{}",
        daemon.log()
    );
    assert_eq!(unreachable(&rig), 1);
    assert_eq!(daemon.terminate(), Some(0));
    rig.sim.assert_no_writes();
}

/// A device that answers, but whose answers are not state (here it refuses every read, then
/// is busy), is announced upstream once per failure streak as `asset.collection_failed`,
/// counted per reason in the metrics, shown in `/v1/assets`, and never raises drift; the first
/// good capture after it is `asset.collection_recovered`.
#[test]
fn a_failed_collection_is_an_event_once_per_streak_and_never_drift() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let mut rig = rig(Some(&receiver.url()), "");
    let daemon = rig.daemon();
    let got = &receiver.received;
    rig.wait_for_baseline();
    rig.sim.cmd("quirk refuse-reads on");
    assert!(
        wait_until(Duration::from_secs(15), || rig
            .metric("otdrift_collection_failures_total", "reason=\"refused\"")
            >= 3),
        "log:\n{}",
        daemon.log()
    );
    // A second reason inside the same streak is counted, not announced again.
    rig.sim.cmd("quirk refuse-reads off");
    rig.sim.cmd("quirk busy on");
    assert!(
        wait_until(Duration::from_secs(15), || rig
            .metric("otdrift_collection_failures_total", "reason=\"busy\"")
            >= 2),
        "log:\n{}",
        daemon.log()
    );
    let asset = &rig.api_get("/v1/assets")["assets"][0];
    assert_eq!(asset["collection"]["reason"], "refused", "{asset}");
    assert_eq!(asset["reachable"], true, "a refusing device is reachable");
    assert!(
        wait_until(Duration::from_secs(10), || got
            .types()
            .contains(&"io.otdrift.asset.collection_failed".to_owned())),
        "no collection_failed upstream"
    );
    rig.sim.cmd("quirk busy off");
    assert!(
        wait_until(Duration::from_secs(15), || got
            .types()
            .contains(&"io.otdrift.asset.collection_recovered".to_owned())),
        "no collection_recovered upstream; log:\n{}",
        daemon.log()
    );
    let events = got.unique();
    let failed = of_type(&events, "io.otdrift.asset.collection_failed");
    assert_eq!(failed.len(), 1, "one event per streak: {failed:?}");
    let data = &failed[0]["data"];
    assert_eq!(data["asset"], "press-7");
    assert_eq!(data["reason"], "refused");
    assert_eq!(data["request"], "read holding registers 0..64 (FC 3)");
    assert!(
        data["detail"]
            .as_str()
            .is_some_and(|d| d.contains("exception 0x02")),
        "{data}"
    );
    let recovered = events
        .iter()
        .find(|e| e["type"] == "io.otdrift.asset.collection_recovered")
        .expect("recovered");
    assert!(
        recovered["data"]["failures"]
            .as_u64()
            .is_some_and(|n| n >= 5)
    );
    assert!(
        !types(&events)
            .iter()
            .any(|t| t.starts_with("io.otdrift.drift.")),
        "a refusal is never drift: {:?}",
        types(&events)
    );
    assert!(rig.api_get("/v1/assets")["assets"][0]["collection"].is_null());
    assert_eq!(daemon.terminate(), Some(0));
    // Both announcements are in the audit log too, and the chain holds.
    let audit = run(&rig.cfg, &["audit-verify"]);
    assert_eq!(audit.code, 0, "{audit:?}");
    rig.sim.assert_no_writes();
}

/// The agent publishes its key at start and signs the audit chain's head at start, every
/// interval and at shutdown; a JWT library that shares no code with otdrift (PyJWT) verifies
/// the heads with the published key, and the last head names the log's last entry.
#[test]
fn audit_heads_are_signed_and_verify_with_the_published_key() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let rig = rig(Some(&receiver.url()), "audit_head_interval_secs = 1");
    let daemon = rig.daemon();
    let got = &receiver.received;
    assert!(
        wait_until(Duration::from_secs(15), || got
            .types()
            .iter()
            .filter(|t| *t == "io.otdrift.audit.head")
            .count()
            >= 2),
        "log:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.terminate(), Some(0));
    let events = got.unique();
    let key_event = events
        .iter()
        .find(|e| e["type"] == "io.otdrift.agent.key")
        .expect("the agent announces its key at start");
    let key = key_event["data"]["public_key"]
        .as_str()
        .expect("public key")
        .to_owned();
    assert_eq!(key_event["source"], "otdrift://gw-daemon");
    let status = run(&rig.cfg, &["status", "--json"]);
    assert_eq!(status.json()["agent_key"], Json::String(key.clone()));

    let heads: Vec<&Json> = events
        .iter()
        .filter(|e| e["type"] == "io.otdrift.audit.head")
        .collect();
    // The first event of all is the key, the second the head at start; the last is the head
    // written at shutdown.
    assert_eq!(
        types(&events)[..2],
        ["io.otdrift.agent.key", "io.otdrift.audit.head"]
    );
    assert_eq!(
        types(&events).last().copied(),
        Some("io.otdrift.audit.head"),
        "the head at shutdown is delivered before the agent stops"
    );
    let last = heads.last().expect("heads");
    for head in [heads[0], *last] {
        let jws = head["data"]["jws"].as_str().expect("a signed head");
        let Some(out) = support::peers::run(
            "PyJWT verifies a signed audit head",
            &["jwt", "cryptography"],
            "verify_jws.py",
            &[jws, &key],
        ) else {
            return;
        };
        assert!(out.status.success(), "PyJWT refused the audit head");
        let claims: Json = serde_json::from_slice(&out.stdout).expect("claims");
        assert_eq!(claims["iss"], "gw-daemon");
        assert_eq!(claims["sub"], "audit-head");
        assert_eq!(claims["seq"], head["data"]["seq"]);
        assert_eq!(claims["hash"], head["data"]["hash"]);
    }
    // The last head is the log's head: nothing was appended after it.
    let audit = run(&rig.cfg, &["audit-verify", "--json"]).json();
    assert_eq!(audit["head"]["seq"], last["data"]["seq"], "{audit}");
    // A head signed by another key does not verify with the published one.
    let forged = heads[0]["data"]["jws"]
        .as_str()
        .expect("jws")
        .rsplit_once('.')
        .map(|(signed, _)| format!("{signed}.{}", "A".repeat(86)))
        .expect("jws");
    if let Some(out) = support::peers::run(
        "PyJWT refuses a forged audit head",
        &["jwt", "cryptography"],
        "verify_jws.py",
        &[&forged, &key],
    ) {
        assert!(!out.status.success(), "PyJWT accepted a forged head");
    }
}

/// A collector that panics (injected in this debug build) fails its capture as `internal`,
/// once per streak, and the asset keeps being polled: the next captures succeed and recover.
#[test]
fn a_panicking_collector_is_caught_and_its_asset_keeps_being_polled() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let rig = rig(Some(&receiver.url()), "");
    let daemon = Daemon::start_with_env(
        &rig.cfg,
        &rig.dir.path().join("daemon.log"),
        &[("OTDRIFT_TEST_PANIC", "press-7:3")],
    );
    let got = &receiver.received;
    assert!(
        wait_until(Duration::from_secs(20), || got
            .types()
            .contains(&"io.otdrift.asset.collection_recovered".to_owned())),
        "log:\n{}",
        daemon.log()
    );
    let events = got.unique();
    let failed = of_type(&events, "io.otdrift.asset.collection_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["data"]["reason"], "internal");
    assert!(
        failed[0]["data"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("panicked")),
        "{}",
        failed[0]["data"]
    );
    assert_eq!(
        rig.metric("otdrift_collection_failures_total", "reason=\"internal\""),
        3
    );
    assert!(types(&events).contains(&"io.otdrift.baseline.moved"));
    assert_eq!(daemon.terminate(), Some(0));
}

/// `otdrift maintenance ASSET --for 2h` holds an outage's alarm back (audited); drift is still
/// raised; ending the window lets the alarm out while the outage lasts.
#[test]
fn a_maintenance_window_holds_outage_alarms_back_but_not_drift() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let mut rig = rig(Some(&receiver.url()), "backoff_max_secs = 1");
    let opened = run(
        &rig.cfg,
        &[
            "maintenance",
            "press-7",
            "--for",
            "2h",
            "--reason",
            "panel swap",
        ],
    );
    assert_eq!(opened.code, 0, "{opened:?}");
    let daemon = rig.daemon();
    let got = &receiver.received;
    rig.wait_for_baseline();
    assert_eq!(
        rig.api_get("/v1/assets")["assets"][0]["maintenance"]["reason"],
        "panel swap"
    );
    rig.sim.cmd("set holding 40 1300");
    assert!(
        wait_until(Duration::from_secs(10), || got
            .types()
            .contains(&"io.otdrift.drift.detected".to_owned())),
        "drift is raised inside a maintenance window"
    );
    rig.sim.cmd("quirk stall on");
    assert!(wait_until(Duration::from_secs(15), || rig
        .api_get("/v1/assets")["assets"][0]["reachable"]
        == false));
    assert!(
        !got.types()
            .contains(&"io.otdrift.asset.unreachable".to_owned())
    );
    let ended = run(&rig.cfg, &["maintenance", "press-7", "--end"]);
    assert_eq!(ended.code, 0, "{ended:?}");
    assert!(
        wait_until(Duration::from_secs(15), || got
            .types()
            .contains(&"io.otdrift.asset.unreachable".to_owned())),
        "the outage outlasts the window: announced; log:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.terminate(), Some(0));
}

/// The types of events, the `otdriftseq` of each.
fn seqs_of(events: &[Json], types: &[&str]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| types.is_empty() || types.contains(&e["type"].as_str().unwrap_or_default()))
        .filter_map(|e| e["otdriftseq"].as_i64())
        .collect()
}

#[test]
fn a_redirect_is_a_failure_and_delivers_nothing() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let target = receiver.moved_url();
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(303));
    {
        let status = status.clone();
        receiver.received.set_script(Some(Box::new(move |_| {
            Some(Answer::status(status.load(Ordering::SeqCst)).with("location", target.clone()))
        })));
    }
    let rig = rig(Some(&receiver.url()), "");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    for code in [303, 301, 307] {
        status.store(code, Ordering::SeqCst);
        let seen = receiver.received.requests().len();
        assert!(
            wait_until(Duration::from_secs(20), || receiver
                .received
                .requests()
                .iter()
                .skip(seen)
                .any(|r| r.status == code)),
            "no {code} answered"
        );
    }
    // Nothing was taken for delivered: the cursor has not moved, the target was never asked.
    let outbox = rig.api_get("/v1/outbox");
    assert_eq!(outbox["acked_seq"], 0, "{outbox}");
    assert!(outbox["depth"].as_u64().unwrap_or(0) >= 2, "{outbox}");
    assert_eq!(receiver.received.redirected_gets.load(Ordering::SeqCst), 0);
    assert!(receiver.received.events.lock().expect("lock").is_empty());
    // The log says where the receiver wanted to send us.
    assert!(
        daemon.log().contains(&receiver.moved_url()) && daemon.log().contains("not followed"),
        "{}",
        daemon.log()
    );

    receiver.received.set_script(None);
    assert!(
        wait_until(Duration::from_secs(90), || {
            let o = rig.api_get("/v1/outbox");
            o["acked_seq"].as_i64().unwrap_or(0) >= 2
        }),
        "log:\n{}",
        daemon.log()
    );
    let got = receiver.received.unique();
    assert_eq!(seqs_of(&got, &[])[..2], [1, 2]);
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn refused_events_are_parked_announced_and_retried_while_the_rest_flows_on() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    receiver.received.down.store(true, Ordering::SeqCst);
    let mut rig = rig(Some(&receiver.url()), "audit_head_interval_secs = 1");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    rig.sim.cmd("set holding 10 42");
    assert!(rig.open_drift_becomes(1));
    rig.sim.cmd("set holding 10 500");
    assert!(rig.open_drift_becomes(0));
    // The receiver takes at most 5 events a request, refuses the drift even alone (413) and
    // its resolution as unprocessable (422).
    receiver.received.set_script(Some(Box::new(|batch| {
        let has = |t: &str| batch.iter().any(|e| e["type"] == t);
        if batch.len() > 5 || has("io.otdrift.drift.detected") {
            Some(Answer::status(413))
        } else if has("io.otdrift.drift.resolved") {
            Some(Answer::status(422))
        } else {
            None
        }
    })));
    receiver.received.down.store(false, Ordering::SeqCst);

    let announced = || seqs_of(&receiver.received.unique(), &["io.otdrift.outbox.parked"]);
    assert!(
        wait_until(Duration::from_secs(60), || announced().len() >= 2),
        "log:\n{}",
        daemon.log()
    );
    let held = rig.all_events();
    let parked = seqs_of(
        &held,
        &["io.otdrift.drift.detected", "io.otdrift.drift.resolved"],
    );
    assert_eq!(parked.len(), 2, "{:?}", types(&held));
    // Everything up to the cursor arrived, in order, but the two parked events.
    let acked = rig.api_get("/v1/outbox")["acked_seq"]
        .as_i64()
        .expect("acked");
    let expected: Vec<i64> = seqs_of(&held, &[])
        .into_iter()
        .filter(|s| *s <= acked && !parked.contains(s))
        .collect();
    let got: Vec<i64> = seqs_of(&receiver.received.unique(), &[])
        .into_iter()
        .filter(|s| *s <= acked)
        .collect();
    assert_eq!(got, expected, "in order, nothing missing");
    for r in receiver.received.requests() {
        if r.status == 200 {
            assert!(
                r.seqs.len() <= 5,
                "a batch of {} was accepted",
                r.seqs.len()
            );
        }
    }
    // Each refused event is announced once, with the receiver's status.
    let announcements: Vec<Json> = receiver
        .received
        .unique()
        .into_iter()
        .filter(|e| e["type"] == "io.otdrift.outbox.parked")
        .collect();
    assert_eq!(announcements.len(), 2);
    assert_eq!(announcements[0]["data"]["seq"], parked[0]);
    assert_eq!(announcements[0]["data"]["http_status"], 413);
    assert_eq!(announcements[0]["data"]["reason"], "too-large");
    assert_eq!(announcements[1]["data"]["seq"], parked[1]);
    assert_eq!(announcements[1]["data"]["http_status"], 422);
    // Listed by the command line and the API, counted in the metrics.
    let cli = run(&rig.cfg, &["outbox", "--parked", "--json"]);
    assert_eq!(cli.code, 0, "{cli:?}");
    let listed: Vec<i64> = cli.json()["parked"]
        .as_array()
        .expect("parked")
        .iter()
        .filter_map(|p| p["seq"].as_i64())
        .collect();
    assert_eq!(listed, parked);
    let api: Vec<i64> = rig.api_get("/v1/outbox/parked")["parked"]
        .as_array()
        .expect("parked")
        .iter()
        .filter_map(|p| p["event"]["otdriftseq"].as_i64())
        .collect();
    assert_eq!(api, parked);
    assert!(wait_until(Duration::from_secs(10), || rig
        .metric("otdrift_outbox_parked", "")
        == 2));
    let human = run(&rig.cfg, &["outbox", "--parked"]);
    assert!(human.stdout.contains("too-large"), "{human:?}");

    // Once the receiver takes them, a retry delivers both (out of their original order).
    receiver.received.set_script(None);
    let retry = run(&rig.cfg, &["outbox", "--retry-all"]);
    assert_eq!(retry.code, 0, "{retry:?}");
    assert!(
        retry.stdout.contains("out of their original order"),
        "{retry:?}"
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            let got = seqs_of(&receiver.received.unique(), &[]);
            parked.iter().all(|p| got.contains(p))
        }),
        "log:\n{}",
        daemon.log()
    );
    let open = run(&rig.cfg, &["outbox", "--parked", "--json"]).json();
    assert_eq!(open["parked"].as_array().map(Vec::len), Some(0));
    let all = run(&rig.cfg, &["outbox", "--parked", "--all", "--json"]).json();
    assert!(
        all["parked"]
            .as_array()
            .expect("all")
            .iter()
            .all(|p| p["status"] == "delivered" && p["retries"] == 1),
        "{all}"
    );
    let nothing = run(&rig.cfg, &["outbox", "--retry", "999999"]);
    assert_eq!(nothing.code, 2, "{nothing:?}");
    assert_eq!(daemon.terminate(), Some(0));
    assert_eq!(run(&rig.cfg, &["audit-verify"]).code, 0);
}

#[test]
fn a_401_pauses_delivery_until_it_is_accepted_again() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    receiver
        .received
        .set_script(Some(Box::new(|_| Some(Answer::status(401)))));
    let rig = rig(Some(&receiver.url()), "");
    let daemon = rig.daemon();
    assert!(
        wait_until(
            Duration::from_secs(15),
            || rig.api_get("/v1/outbox")["paused"]["http_status"] == 401
        ),
        "log:\n{}",
        daemon.log()
    );
    assert_eq!(rig.metric("otdrift_upstream_paused", ""), 1);
    let status = run(&rig.cfg, &["outbox"]);
    assert!(status.stdout.contains("PAUSED"), "{status:?}");
    let status = run(&rig.cfg, &["status"]);
    assert!(status.stdout.contains("upstream: PAUSED"), "{status:?}");
    assert_eq!(
        rig.api_get("/v1/assets")["delivery"]["paused"]["http_status"],
        401
    );
    // Paused is quiet: no more requests until the re-check (every 5 minutes) or a restart.
    let asked = receiver.received.requests().len();
    assert!(asked <= 2, "{asked} requests before the pause");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(receiver.received.requests().len(), asked);
    assert!(receiver.received.unique().is_empty());
    assert_eq!(daemon.terminate(), Some(0));

    // The credentials were fixed: the next start checks at once and delivers everything.
    receiver.received.set_script(None);
    let daemon = rig.daemon();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let o = rig.api_get("/v1/outbox");
            o["paused"].is_null() && o["acked_seq"].as_i64() >= Some(3)
        }),
        "log:\n{}",
        daemon.log()
    );
    assert!(!receiver.received.unique().is_empty());
    assert_eq!(rig.metric("otdrift_upstream_paused", ""), 0);
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn a_429_is_retried_no_sooner_than_retry_after() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let answered = answered.clone();
        receiver.received.set_script(Some(Box::new(move |_| {
            (answered.fetch_add(1, Ordering::SeqCst) == 0)
                .then(|| Answer::status(429).with("retry-after", "3"))
        })));
    }
    let rig = rig(Some(&receiver.url()), "");
    let daemon = rig.daemon();
    assert!(wait_until(Duration::from_secs(20), || receiver
        .received
        .requests()
        .len()
        >= 2));
    let r = receiver.received.requests();
    assert_eq!((r[0].status, r[1].status), (429, 200));
    let waited = r[1].at - r[0].at;
    assert!(
        waited >= Duration::from_millis(2900),
        "retried after {waited:?}"
    );
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn a_drift_beyond_max_event_bytes_is_cut_and_its_changes_are_paged() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let mut rig = rig_with(Some(&receiver.url()), "", "max_event_bytes = 16384", 2000);
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    let values = vec!["7"; 2000].join(" ");
    rig.sim.cmd(&format!("set holding 0 {values}"));
    let drift = || {
        receiver
            .received
            .unique()
            .into_iter()
            .find(|e| e["type"] == "io.otdrift.drift.detected")
    };
    assert!(
        wait_until(Duration::from_secs(20), || drift().is_some()),
        "log:\n{}",
        daemon.log()
    );
    let event = drift().expect("drift");
    let size = serde_json::to_vec(&event).expect("json").len();
    assert!(size <= 16384, "the event is {size} bytes");
    let data = &event["data"];
    assert_eq!(data["truncated"], true);
    assert_eq!(data["changes_total"], 2000);
    assert_eq!(data["changes_by_class"]["setpoint"], 2000);
    let mut changes: Vec<Json> = data["changes"].as_array().expect("changes").clone();
    assert!(!changes.is_empty() && changes.len() < 2000);
    // The pull link pages the rest (read token), in order, until `next` is null.
    let mut link = data["changes_link"].as_str().expect("link").to_owned();
    assert!(link.starts_with(&format!("/v1/drift/{}/changes?", data["drift_id"])));
    loop {
        let page = rig.api_get(&format!("{link}&limit=300"));
        assert_eq!(page["changes_total"], 2000);
        assert_eq!(page["observed_digest"], data["observed_digest"]);
        changes.extend(page["changes"].as_array().expect("changes").iter().cloned());
        match page["next"].as_u64() {
            Some(next) => {
                link = link.replace(
                    &format!("after={}", page["after"]),
                    &format!("after={next}"),
                )
            }
            None => break,
        }
    }
    let paths: std::collections::BTreeSet<String> = changes
        .iter()
        .filter_map(|c| c["path"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(changes.len(), 2000);
    assert_eq!(paths.len(), 2000, "no change twice");
    // The pull API serves the same event the push delivered.
    let held = rig.all_events();
    let same = held.iter().find(|e| e["id"] == event["id"]).expect("held");
    assert_eq!(same, &event);
    // Without a token the pages are closed like every other route.
    let closed = http("GET", &rig.api, &link, None, None);
    assert_eq!(closed.status, 401);
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn three_thousand_slow_connections_neither_take_the_descriptors_nor_stop_captures() {
    use std::io::Write as _;
    // Captures are watched in the database, past the API: quiet polls written every second.
    let rig = rig(None, "seen_flush = \"1s\"");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    let pid = daemon.pid();
    let fds = move || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let last_capture = || {
        run(&rig.cfg, &["status", "--json"]).json()["assets"][0]["last_capture"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let before = fds();
    let mut slow = Vec::with_capacity(3000);
    let mut refused = 0;
    for _ in 0..3000 {
        match std::net::TcpStream::connect(&rig.api) {
            Ok(mut s) => {
                // A request line and one header, never finished.
                let _ = s.write_all(b"GET /v1/assets HTTP/1.1\r\nHost: gw\r\n");
                slow.push(s);
            }
            Err(_) => refused += 1,
        }
    }
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(fds());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The limit holds: at most 256 connections beyond what the daemon had open before.
    assert!(
        peak <= before + 256 + 16,
        "{peak} descriptors open under 3000 slow connections ({before} before)"
    );
    // A normal client gets its answer while the slow ones are still held.
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || http(
            "GET",
            &rig.api,
            "/v1/assets",
            Some(API_TOKEN),
            None
        )
        .status
            == 200),
        "the API never answered"
    );
    let answered_in = started.elapsed();
    // Not after the slow ones time out (10 s): the oldest silent connection made room for it.
    assert!(
        answered_in < Duration::from_secs(3),
        "answered only after {answered_in:?}"
    );
    // Captures go on meanwhile.
    let seen = last_capture();
    assert!(
        wait_until(Duration::from_secs(10), || last_capture() != seen),
        "no capture while the slow connections were held"
    );
    let rejected = rig.metric("otdrift_api_connections_rejected", "");
    let evicted = rig.metric("otdrift_api_connections_evicted", "");
    assert!(
        rejected > 0 && evicted > 0,
        "rejected {rejected}, evicted {evicted}"
    );
    eprintln!(
        "3000 slow connections ({refused} refused at connect): daemon fds {before} before, peak {peak}; {rejected} connections closed at once, {evicted} silent ones closed to make room; a normal client answered after {answered_in:?}"
    );
    drop(slow);
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn failed_authentications_are_throttled_per_client() {
    let rig = rig(None, "");
    let daemon = rig.daemon();
    for _ in 0..20 {
        let r = http("GET", &rig.api, "/v1/assets", Some("wrong-token"), None);
        assert_eq!(r.status, 401);
    }
    // Throttled now: even the right token is not looked at for a minute.
    let r = http("GET", &rig.api, "/v1/assets", Some(API_TOKEN), None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("too-many-failures"), "{}", r.body);
    // The health check stays open (no token involved).
    assert_eq!(http("GET", &rig.api, "/healthz", None, None).status, 200);
    assert_eq!(daemon.terminate(), Some(0));
}

/// Captures of press-7 so far, from the daemon's metrics.
fn polls(rig: &Rig) -> u64 {
    rig.metric("otdrift_captures_total", "press-7")
}

/// Sets a register and waits for two captures after it, so that one poll surely saw it.
fn set_and_poll(rig: &mut Rig, register: u16, value: u32) {
    let seen = polls(rig);
    rig.sim.cmd(&format!("set holding {register} {value}"));
    assert!(
        wait_until(Duration::from_secs(10), || polls(rig) >= seen + 2),
        "no capture after set holding {register} {value}"
    );
}

#[test]
fn a_flapping_setpoint_is_reported_once_then_muted_while_other_changes_still_raise_drift() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    // Register 40 really holds a process value: the simulator moves it every 300 ms, so it
    // is new on every poll (once a second).
    let state = r#"
unit_id = 1
tick_ms = 300

[identity]
vendor_name = "otdrift test"
product_code = "E2E-4"
revision = "1.0"

[[holding]]
start = 0
count = 40
fill = 500

[[holding]]
start = 40
count = 1
tick = "counter"

[[holding]]
start = 41
count = 23
fill = 500
"#;
    let mut rig = rig_from(state, Some(&receiver.url()), "", "", 64);
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    let got = &receiver.received;
    let count = |t: &str| got.types().iter().filter(|e| *e == t).count();
    assert!(
        wait_until(Duration::from_secs(20), || count(
            "io.otdrift.drift.flapping"
        ) == 1),
        "flapping reported once; got {:?}",
        got.types()
    );
    let muted = rig.api_get("/v1/assets")["assets"][0]["muted_items"].clone();
    assert_eq!(muted.as_array().map(Vec::len), Some(1), "{muted}");
    assert!(
        muted[0].as_str().unwrap_or_default().ends_with("/40"),
        "{muted}"
    );
    let detected = count("io.otdrift.drift.detected");
    assert!(detected <= 6, "{detected} drift events before the mute");
    let seen = polls(&rig);
    assert!(wait_until(Duration::from_secs(15), || polls(&rig) >= seen + 5));
    assert_eq!(
        count("io.otdrift.drift.detected"),
        detected,
        "no drift event per poll while muted"
    );
    assert_eq!(count("io.otdrift.drift.flapping"), 1);
    // Another setpoint on the same asset still raises drift at once.
    set_and_poll(&mut rig, 41, 4242);
    assert!(
        wait_until(Duration::from_secs(10), || count(
            "io.otdrift.drift.detected"
        ) > detected),
        "a change of another item is drift"
    );
    let last = got
        .events
        .lock()
        .expect("lock")
        .iter()
        .rfind(|e| e["type"] == "io.otdrift.drift.detected")
        .cloned()
        .expect("drift event");
    let changes = last["data"]["changes"].to_string();
    assert!(changes.contains("4242"), "{changes}");
    // `status` names the muted item.
    let status = run(&rig.cfg, &["status"]);
    assert!(
        status.stdout.contains("flapping item(s) muted"),
        "{status:?}"
    );
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn a_pull_client_asking_for_pruned_events_gets_410_and_where_to_resume() {
    let mut rig = rig(None, "");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    rig.sim.cmd("set holding 40 1300");
    assert!(wait_until(Duration::from_secs(10), || rig
        .all_events()
        .iter()
        .any(|e| e["type"] == "io.otdrift.drift.detected")));
    assert_eq!(daemon.terminate(), Some(0));
    // Every event, including those written at shutdown.
    let db = rig.dir.path().join("data").join("otdrift.db");
    let last = otdrift_store::Store::open(&db, std::sync::Arc::new(otdrift_core::SystemClock))
        .expect("store")
        .last_event_seq()
        .expect("seq");
    // Sixty days on, retention as the daemon runs it (pull only: no destination to wait for).
    let later = chrono::Utc::now() + chrono::TimeDelta::days(60);
    let clock = std::sync::Arc::new(otdrift_core::ManualClock::new(later));
    let mut store = otdrift_store::Store::open(&db, clock).expect("store");
    let retention = otdrift_store::Retention {
        outbox: chrono::TimeDelta::days(30),
        captures: chrono::TimeDelta::days(90),
        destinations: Vec::new(),
        batch: 2,
    };
    let mut pruned = 0;
    while let step = store.prune_step(&retention).expect("prune")
        && !step.is_empty()
    {
        pruned += step.outbox;
    }
    assert_eq!(pruned as i64, last, "every event was old enough");
    drop(store);

    let daemon = rig.daemon();
    let gone = http("GET", &rig.api, "/v1/events?after=0", Some(API_TOKEN), None);
    assert_eq!(gone.status, 410, "{}", gone.body);
    let body = gone.json();
    assert_eq!(body["pruned_through"], last, "{body}");
    assert!(body["oldest_seq"].as_i64().unwrap_or(0) > last, "{body}");
    // Resuming where it says works, and nothing after the pruned range is lost.
    let resumed = http(
        "GET",
        &rig.api,
        &format!("/v1/events?after={last}"),
        Some(API_TOKEN),
        None,
    );
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(
        resumed.json()["events"][0]["otdriftseq"],
        body["oldest_seq"],
        "{}",
        resumed.body
    );
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn a_busy_device_is_backed_off_and_announced_once_each_way() {
    let receiver = Receiver::start(UPSTREAM_TOKEN);
    let mut rig = rig(Some(&receiver.url()), "backoff_max_secs = 4");
    let daemon = rig.daemon();
    rig.wait_for_baseline();
    let got = &receiver.received;
    rig.sim.cmd("quirk busy on");
    assert!(wait_until(Duration::from_secs(10), || rig
        .metric("otdrift_captures_total", "outcome=\"busy\"")
        >= 1));
    let start = rig.metric("otdrift_captures_total", "outcome=\"busy\"");
    std::thread::sleep(Duration::from_secs(8));
    let during = rig.metric("otdrift_captures_total", "outcome=\"busy\"") - start;
    // Every second without a backoff would be 8 polls; 1 + 2 + 4 s of backoff leave at most 4.
    assert!(during <= 4, "{during} polls of a busy device in 8 s");
    rig.sim.cmd("quirk busy off");
    assert!(
        wait_until(Duration::from_secs(15), || got
            .types()
            .contains(&"io.otdrift.asset.collection_recovered".to_owned())),
        "recovered; log:\n{}",
        daemon.log()
    );
    let types = got.types();
    let failed: Vec<_> = types
        .iter()
        .filter(|t| *t == "io.otdrift.asset.collection_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{types:?}");
    let event = got
        .events
        .lock()
        .expect("lock")
        .iter()
        .find(|e| e["type"] == "io.otdrift.asset.collection_failed")
        .cloned()
        .expect("event");
    assert_eq!(event["data"]["reason"], "busy", "{event}");
    assert_eq!(daemon.terminate(), Some(0));
}
