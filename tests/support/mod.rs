//! Shared helpers for the end-to-end tests: run the real `otdrift` binary, start a simulator
//! process on a free loopback port, talk to it over its stdin control channel.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub fn otdrift() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otdrift"));
    cmd.env_remove("OTDRIFT_CONFIG").env("OTDRIFT_LOG", "warn");
    cmd
}

/// A finished `otdrift` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `otdrift --config <config> <args>`.
pub fn run(config: &Path, args: &[&str]) -> Run {
    let out: Output = otdrift()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("otdrift runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A simulator process (`otdrift sim ...`), killed when dropped.
pub struct Sim {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
    pub addr: String,
    pub request_log: PathBuf,
}

impl Sim {
    /// Starts `otdrift sim <protocol>` on 127.0.0.1:0 and waits for its ready line.
    pub fn start(protocol: &str, state: Option<&Path>, dir: &Path) -> Sim {
        let request_log = dir.join(format!("{protocol}-requests.jsonl"));
        let mut cmd = otdrift();
        cmd.args(["sim", protocol, "--listen", "127.0.0.1:0", "--request-log"])
            .arg(&request_log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(state) = state {
            cmd.arg("--state").arg(state);
        }
        let mut child = cmd.spawn().expect("simulator starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("simulator prints its ready line");
        let addr = ready
            .rsplit(' ')
            .next()
            .expect("ready line ends with the address")
            .to_owned();
        assert!(
            ready.contains("listening on") && addr.starts_with("127.0.0.1:"),
            "unexpected ready line {ready:?}"
        );
        Sim {
            child,
            stdin,
            replies: rx,
            addr,
            request_log,
        }
    }

    /// Sends one control command and returns its reply (which must start with "ok").
    pub fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to simulator");
        self.stdin.flush().expect("flush simulator stdin");
        let reply = self
            .replies
            .recv_timeout(Duration::from_secs(10))
            .expect("simulator replies");
        assert!(reply.starts_with("ok"), "{line:?} -> {reply:?}");
        reply
    }

    /// Every request the simulator logged, one JSON object per line.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.request_log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("request log line is JSON"))
            .collect()
    }

    /// Asserts the simulator never received a state-changing request.
    pub fn assert_no_writes(&self) {
        let requests = self.requests();
        assert!(!requests.is_empty(), "the request log is empty");
        let writes: Vec<_> = requests
            .iter()
            .filter(|r| r["write"] == serde_json::json!(true))
            .collect();
        assert!(
            writes.is_empty(),
            "write requests reached the simulator: {writes:?}"
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config file and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("otdrift.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The database file the agent keeps in `data_dir`.
pub fn database(data_dir: &Path) -> PathBuf {
    data_dir.join("otdrift.db")
}

/// Runs an independent peer check (a Python script under `tests/peers/`). Returns `None` when
/// the peer cannot run here (no python3, or its packages are missing); CI sets
/// `OTDRIFT_REQUIRE_PEERS=1`, which turns that into a failure so the check always runs there.
pub fn peer(script: &str, args: &[&Path]) -> Option<bool> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers")
        .join(script);
    let required = std::env::var_os("OTDRIFT_REQUIRE_PEERS").is_some_and(|v| v == "1");
    let out = match Command::new("python3").arg(&path).args(args).output() {
        Ok(out) => out,
        Err(e) => {
            assert!(!required, "python3 is required for {script}: {e}");
            eprintln!("skipping the {script} peer check: no python3 ({e})");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        assert!(!required, "{script} needs its Python packages: {stderr}");
        eprintln!("skipping the {script} peer check: {stderr}");
        return None;
    }
    eprintln!("{script}: {}{stderr}", String::from_utf8_lossy(&out.stdout));
    Some(out.status.success())
}
