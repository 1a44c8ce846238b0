//! Sinks against servers we did not write: a real rsyslog (UDP, TCP with octet counting, TLS
//! with a client certificate, RFC 5424 and CEF) and a real mosquitto broker (MQTT over TLS with
//! a client certificate and a password, QoS 1, retained status, last will), each started by the
//! test on loopback, with outages in the middle of a drift storm.
//!
//! rsyslog, mosquitto, mosquitto_sub and openssl come from the system (Debian packages
//! `rsyslog rsyslog-openssl mosquitto mosquitto-clients openssl`, which `.ci/run` installs);
//! where one is missing the check is skipped and listed, or fails under
//! `OTDRIFT_REQUIRE_PEERS=1`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use support::{Daemon, Sim, database, free_port, peers, wait_until};

/// A server process of the test, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the system tools are here; records a skip for `check` when not.
fn tools(check: &str, paths: &[&str]) -> bool {
    for p in paths {
        if !Path::new(p).exists() {
            peers::skip(
                check,
                &format!("{p} is not installed (Debian: see this file's header)"),
            );
            return false;
        }
    }
    true
}

/// Waits until something listens on the TCP port.
fn listening(port: u16) -> bool {
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// A press polled every second, and `sinks` (`[[sink]]` tables).
fn rig(dir: &Path, sinks: &str) -> (Sim, PathBuf) {
    support::press_every_second(dir, "gw-sinks", sinks)
}

/// Every outbox event, oldest first.
fn outbox(dir: &Path) -> Vec<otdrift_store::OutboxEvent> {
    let store = otdrift_store::Store::open_read_only(
        &database(&dir.join("data")),
        Arc::new(otdrift_core::SystemClock),
    )
    .expect("store");
    store.events_after(0, 100_000).expect("events")
}

fn acked(dir: &Path, destination: &str) -> (i64, i64) {
    let store = otdrift_store::Store::open_read_only(
        &database(&dir.join("data")),
        Arc::new(otdrift_core::SystemClock),
    )
    .expect("store");
    let d = store.delivery_state(destination).expect("state");
    (d.acked_seq, d.last_seq)
}

/// The outbox sequence numbers a sink's output carries, in the order it carries them.
fn seqs(lines: &[String], marker: &str) -> Vec<i64> {
    lines
        .iter()
        .filter_map(|l| {
            let at = l.find(marker)? + marker.len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Everything from the first sequence number received to `last` arrived, in order (repeats
/// allowed: at least once).
fn complete_and_in_order(got: &[i64], last: i64) -> Result<(), String> {
    let first = *got.first().ok_or("nothing received")?;
    let set: BTreeSet<i64> = got.iter().copied().collect();
    let missing: Vec<i64> = (first..=last).filter(|s| !set.contains(s)).collect();
    if !missing.is_empty() {
        return Err(format!("missing {missing:?} of {first}..={last}"));
    }
    let mut seen = BTreeSet::new();
    let mut previous = 0;
    for s in got {
        if seen.insert(*s) {
            if *s < previous {
                return Err(format!("{s} arrived after {previous}"));
            }
            previous = *s;
        }
    }
    Ok(())
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// rsyslog with an UDP, a TCP and a TLS input, each written raw to its own file.
fn rsyslog(dir: &Path, udp: u16, tcp: u16, tls: u16) -> Server {
    let d = dir.display();
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{d}")
module(load="imudp")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="raw") }}
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="raw") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="raw") }}
input(type="imudp" port="{udp}" address="127.0.0.1" ruleset="udp")
input(type="imtcp" port="{tcp}" address="127.0.0.1" ruleset="tcp")
input(type="imtcp" port="{tls}" address="127.0.0.1" ruleset="tls" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="x509/certvalid" streamDriver.CAFile="{d}/ca.pem" streamDriver.CertFile="{d}/srv.pem" streamDriver.KeyFile="{d}/srv.key")
"#
        ),
    )
    .expect("rsyslog.conf");
    let child = Command::new("/usr/sbin/rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("rsyslog.err")).expect("err"))
        .spawn()
        .expect("rsyslogd starts");
    let server = Server { child };
    assert!(listening(tcp) && listening(tls), "rsyslog did not listen");
    server
}

#[test]
fn a_siem_gets_every_event_over_tcp_and_tls_across_a_collector_restart() {
    if !tools(
        "rsyslog sink",
        &[
            "/usr/sbin/rsyslogd",
            "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so",
            "/usr/bin/openssl",
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = support::certificates(d);
    let (udp, tcp, tls) = (free_port(), free_port(), free_port());
    let (mut sim, cfg) = rig(
        d,
        &format!(
            r#"
[[sink]]
name = "siem-udp"
type = "syslog"
url = "udp://127.0.0.1:{udp}"

[[sink]]
name = "siem-tcp"
type = "syslog"
url = "tcp://127.0.0.1:{tcp}"
format = "cef"
facility = "security"
timeout_ms = 2000

[[sink]]
name = "siem-tls"
type = "syslog"
url = "tls://127.0.0.1:{tls}"
ca_file = "{ca}"
client_cert_file = "{d}/client.pem"
client_key_file = "{d}/client.key"
timeout_ms = 2000
"#,
            ca = ca.display(),
            d = d.display()
        ),
    );
    let check = support::run(&cfg, &["check-config"]);
    assert_eq!(check.code, 0, "{check:?}");
    let mut server = rsyslog(d, udp, tcp, tls);
    let daemon = Daemon::start(&cfg, &d.join("daemon.log"));

    // The first capture's baseline, then a drift: all three sinks.
    let has = |file: &str, what: &str| read_lines(&d.join(file)).iter().any(|l| l.contains(what));
    assert!(
        wait_until(Duration::from_secs(20), || {
            ["udp.log", "tcp.log", "tls.log"]
                .iter()
                .all(|f| has(f, "baseline.moved"))
        }),
        "the baseline did not reach every sink: {}",
        daemon.log()
    );
    sim.cmd("set holding 3 101");
    assert!(
        wait_until(Duration::from_secs(20), || {
            has("udp.log", "drift.detected")
                && has("tcp.log", "drift.detected")
                && has("tls.log", "drift.detected")
        }),
        "drift did not reach every sink: {}",
        daemon.log()
    );

    // RFC 5424 over TLS: header, structured data, the CloudEvent as the message.
    let tls_lines = read_lines(&d.join("tls.log"));
    let line = tls_lines
        .iter()
        .find(|l| l.contains(" drift.detected "))
        .expect("drift line");
    assert!(line.starts_with("<132>1 "), "local0, warning: {line}");
    assert!(line.contains(" gw-sinks otdrift "), "{line}");
    assert!(line.contains("[otdrift@32473 id=\""), "{line}");
    assert!(line.contains(" asset=\"press-7\""), "{line}");
    let event: Json =
        serde_json::from_str(&line[line.find("] {").expect("message") + 2..]).expect("json");
    assert_eq!(event["type"], "io.otdrift.drift.detected");
    assert_eq!(event["data"]["reason"], "device");
    // CEF over TCP: header fields and standard extension keys.
    let tcp_lines = read_lines(&d.join("tcp.log"));
    let cef = tcp_lines
        .iter()
        .find(|l| l.contains("|io.otdrift.drift.detected|"))
        .expect("cef");
    assert!(cef.starts_with("<108>1 "), "security (13), warning: {cef}");
    assert!(cef.contains(" - CEF:0|otdrift|otdrift|"), "{cef}");
    assert!(cef.contains("|drift detected|6|"), "{cef}");
    for key in [
        "rt=",
        "dvchost=gw-sinks",
        "dhost=press-7",
        "externalId=",
        "cat=io.otdrift.drift.detected",
        "cs1Label=baselineDigest",
        "cn1Label=outboxSeq",
        "reason=device",
    ] {
        assert!(cef.contains(key), "{key} in {cef}");
    }
    // UDP: the same RFC 5424 shape.
    assert!(
        read_lines(&d.join("udp.log"))
            .iter()
            .any(|l| l.starts_with("<1") && l.contains("[otdrift@32473"))
    );

    // The collector goes away in the middle of a drift storm; the agent is killed while the
    // events wait, and both come back: the cursors are durable, nothing is lost.
    // (Each step moves another register: one register moving on most polls would be muted as
    // flapping, which is not what this test is about.)
    server.stop();
    for r in 4..=7 {
        sim.cmd(&format!("set holding {r} 200"));
        std::thread::sleep(Duration::from_millis(1300));
    }
    daemon.kill();
    let _server = rsyslog(d, udp, tcp, tls);
    let daemon = Daemon::start(&cfg, &d.join("daemon-2.log"));
    for r in 1..=2 {
        sim.cmd(&format!("set holding {r} 200"));
        std::thread::sleep(Duration::from_millis(1300));
    }
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (tcp_acked, last) = acked(d, "sink:siem-tcp");
            let (tls_acked, _) = acked(d, "sink:siem-tls");
            tcp_acked == last && tls_acked == last
        }),
        "the sinks did not catch up: {}",
        daemon.log()
    );
    let last = outbox(d).last().map(|e| e.seq).expect("events");
    assert!(wait_until(Duration::from_secs(5), || {
        complete_and_in_order(&seqs(&read_lines(&d.join("tls.log")), "seq=\""), last).is_ok()
            && complete_and_in_order(&seqs(&read_lines(&d.join("tcp.log")), "cn1="), last).is_ok()
    }));
    complete_and_in_order(&seqs(&read_lines(&d.join("tls.log")), "seq=\""), last).expect("TLS");
    complete_and_in_order(&seqs(&read_lines(&d.join("tcp.log")), "cn1="), last).expect("TCP");
    let drifts = read_lines(&d.join("tls.log"))
        .iter()
        .filter(|l| l.contains(" drift.detected "))
        .count();
    assert!(drifts >= 7, "every drift update of the storm: {drifts}");
    drop(daemon);
    sim.assert_no_writes();
}

/// mosquitto with a plain listener (the test's subscriber) and a TLS one (the agent),
/// persistent sessions kept across its restarts.
fn mosquitto(dir: &Path, plain: u16, tls: u16) -> Server {
    let d = dir.display();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nper_listener_settings true\npersistence true\npersistence_location {d}/\nlistener {plain} 127.0.0.1\nallow_anonymous true\nlistener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/srv.pem\nkeyfile {d}/srv.key\nrequire_certificate true\nallow_anonymous false\npassword_file {d}/mosquitto.passwd\n"
        ),
    )
    .expect("mosquitto.conf");
    let child = Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("mosquitto.log"))
                .expect("log"),
        )
        .spawn()
        .expect("mosquitto starts");
    let server = Server { child };
    assert!(
        listening(plain) && listening(tls),
        "mosquitto did not listen"
    );
    server
}

/// One retained message of `topic`, read by a fresh mosquitto_sub.
fn retained(port: u16, topic: &str) -> Option<Json> {
    let out = Command::new("/usr/bin/mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "5",
        ])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn a_broker_restart_in_a_drift_storm_loses_nothing_and_the_will_says_offline() {
    if !tools(
        "mosquitto sink",
        &[
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto_sub",
            "/usr/bin/openssl",
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = support::certificates(d);
    let (plain, tls) = (free_port(), free_port());
    // The agent's listener wants a client certificate of the test CA and a password.
    let made = Command::new("/usr/bin/mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(d.join("mosquitto.passwd"))
        .args(["otdrift", "broker-secret-123"])
        .output()
        .expect("mosquitto_passwd runs");
    assert!(made.status.success(), "{made:?}");
    let password = d.join("mqtt.password");
    std::fs::write(&password, "broker-secret-123\n").expect("password");
    let (mut sim, cfg) = rig(
        d,
        &format!(
            r#"
[[sink]]
name = "broker"
type = "mqtt"
url = "mqtts://127.0.0.1:{tls}"
ca_file = "{ca}"
client_cert_file = "{d}/client.pem"
client_key_file = "{d}/client.key"
username = "otdrift"
password_file = "{pw}"
timeout_ms = 2000
"#,
            ca = ca.display(),
            d = d.display(),
            pw = password.display()
        ),
    );
    let mut broker = mosquitto(d, plain, tls);
    // An independent subscriber with a persistent session, QoS 1: what the plant's UNS sees.
    let received = d.join("received.txt");
    let _subscriber = Server {
        child: Command::new("/usr/bin/mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &plain.to_string(),
                "-i",
                "uns-tester",
                "-c",
                "-q",
                "1",
                "-t",
                "otdrift/#",
                "-v",
            ])
            .stdout(std::fs::File::create(&received).expect("file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub starts"),
    };
    std::thread::sleep(Duration::from_millis(500));
    let daemon = Daemon::start(&cfg, &d.join("daemon.log"));
    let lines = || read_lines(&received);
    assert!(
        wait_until(Duration::from_secs(20), || {
            lines()
                .iter()
                .any(|l| l.starts_with("otdrift/gw-sinks/press-7/io.otdrift.baseline.moved {"))
        }),
        "no event reached the subscriber: {}",
        daemon.log()
    );
    let online = lines()
        .into_iter()
        .find(|l| l.starts_with("otdrift/gw-sinks/status "))
        .expect("availability");
    assert!(online.contains("\"online\":true"), "{online}");

    // A drift storm, with the broker restarted in its middle.
    // (Each step moves another register, so none is muted as flapping.)
    let step = |sim: &mut Sim, r: u16| {
        sim.cmd(&format!("set holding {r} 200"));
        std::thread::sleep(Duration::from_millis(1200));
    };
    for r in 1..=3 {
        step(&mut sim, r);
    }
    broker.stop();
    for r in 4..=6 {
        step(&mut sim, r);
    }
    let _broker = mosquitto(d, plain, tls);
    step(&mut sim, 7);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (a, last) = acked(d, "sink:broker");
            a == last
        }),
        "the sink did not catch up: {}",
        daemon.log()
    );
    let events = outbox(d);
    let last = events.last().map(|e| e.seq).expect("events");
    let got = || {
        lines()
            .iter()
            .filter(|l| !l.contains("/status "))
            .filter_map(|l| serde_json::from_str::<Json>(l.split_once(' ')?.1).ok())
            .filter_map(|e| e["otdriftseq"].as_i64())
            .collect::<Vec<i64>>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || complete_and_in_order(
            &got(),
            last
        )
        .is_ok()),
        "{:?}",
        complete_and_in_order(&got(), last)
    );
    // Every event on its topic, as a structured CloudEvent.
    for l in lines()
        .iter()
        .filter(|l| l.contains("io.otdrift.drift.detected {"))
    {
        let (topic, body) = l.split_once(' ').expect("topic and payload");
        assert_eq!(topic, "otdrift/gw-sinks/press-7/io.otdrift.drift.detected");
        let e: Json = serde_json::from_str(body).expect("json");
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["subject"], "press-7");
    }
    let drifts = lines()
        .iter()
        .filter(|l| l.contains("io.otdrift.drift.detected {"))
        .count();
    assert!(drifts >= 7, "every drift update of the storm: {drifts}");
    // The retained status of the asset, for a dashboard that subscribes late.
    let status = retained(plain, "otdrift/gw-sinks/press-7/status").expect("retained status");
    assert_eq!(status["state"], "drift", "{status}");
    assert_eq!(status["open_drift"], 1);

    // The agent dies: the broker publishes its will.
    daemon.kill();
    assert!(
        wait_until(Duration::from_secs(10), || {
            retained(plain, "otdrift/gw-sinks/status").is_some_and(|s| s["online"] == false)
        }),
        "the will did not say offline"
    );
    sim.assert_no_writes();
}
