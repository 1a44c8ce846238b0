//! Shared helpers for the end-to-end tests: run the real `otdrift` binary, start a simulator
//! process on a free loopback port, talk to it over its stdin control channel.

#![allow(dead_code)] // each test binary uses a different subset

pub mod receiver;

pub mod approval_rig;
pub mod peers;

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

/// Writes a config whose `[agent]` is `gw-test` with its data under `dir/data`, followed by
/// `rest` (the `[[asset]]` tables), and returns its path.
pub fn write_agent_config(dir: &Path, rest: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "\n[agent]\nid = \"gw-test\"\ndata_dir = \"{}\"\n{rest}",
            dir.join("data").display()
        ),
    )
}

/// Runs `otdrift capture ASSET --json`, asserts it exits with `code`, and returns its report.
#[track_caller]
pub fn capture_json(config: &Path, asset: &str, code: i32) -> serde_json::Value {
    let out = run(config, &["capture", asset, "--json"]);
    assert_eq!(out.code, code, "{out:?}");
    out.json()
}

/// The database file the agent keeps in `data_dir`.
pub fn database(data_dir: &Path) -> PathBuf {
    data_dir.join("otdrift.db")
}

/// Runs an independent peer check (a Python script under `tests/peers/`) to completion;
/// `None` when it cannot run here (see [`peers`] for how a skip is kept visible).
pub fn peer(script: &str, args: &[&str]) -> Option<bool> {
    peers::run(script, &["blake3", "cryptography"], script, args).map(|out| out.status.success())
}

/// What the store held before a capture that must fail: compared after it by
/// [`assert_collection_fails`].
pub struct StoreView {
    baseline: serde_json::Value,
    drift: serde_json::Value,
}

impl StoreView {
    /// The asset's baseline (from `status --json`) and every drift event (`drift --json`).
    pub fn of(config: &Path, asset: &str) -> StoreView {
        let status = run(config, &["status", "--json"]);
        assert_eq!(status.code, 0, "{status:?}");
        let row = status.json()["assets"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == asset).cloned())
            .unwrap_or_else(|| panic!("{asset} in status"));
        let drift = run(config, &["drift", "--asset", asset, "--json"]);
        assert_eq!(drift.code, 0, "{drift:?}");
        StoreView {
            baseline: row["baseline"].clone(),
            drift: drift.json(),
        }
    }
}

/// The field-truth rule, end to end: `otdrift capture ASSET --json` fails with exit 1 and
/// error kind `reason`, the baseline and every drift event stay exactly as they were (nothing
/// stored as state, no drift), and `status` shows the failing collection. Returns the error
/// object (kind, request, detail, message) for further checks.
pub fn assert_collection_fails(config: &Path, asset: &str, reason: &str) -> serde_json::Value {
    let before = StoreView::of(config, asset);
    let failed = run(config, &["capture", asset, "--json"]);
    assert_eq!(failed.code, 1, "a failed collection exits 1: {failed:?}");
    let error = failed.json()["error"].clone();
    assert_eq!(error["kind"], reason, "{failed:?}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(asset),
        "the message names the asset: {message}"
    );
    let after = StoreView::of(config, asset);
    assert_eq!(before.baseline, after.baseline, "the baseline did not move");
    assert_eq!(
        before.drift, after.drift,
        "no drift event was opened or changed"
    );
    let status = run(config, &["status", "--json"]);
    let row = status.json()["assets"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == asset).cloned())
        .unwrap_or_default();
    if reason != "unreachable" {
        assert!(
            row["collection"]["failing_since"].is_string(),
            "status shows the failing collection: {row}"
        );
    }
    error
}

/// A port that was free a moment ago on 127.0.0.1, for configs that need a fixed one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `cond` every 50 ms until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `otdrift run`, killed when dropped.
pub struct Daemon {
    child: Child,
    pub stderr_log: PathBuf,
}

impl Daemon {
    /// Starts `otdrift --config CFG run` and waits for its ready line.
    pub fn start(config: &Path, log: &Path) -> Daemon {
        Daemon::start_with_env(config, log, &[])
    }

    /// [`Daemon::start`] with extra environment variables (fault injection in debug builds).
    pub fn start_with_env(config: &Path, log: &Path, env: &[(&str, &str)]) -> Daemon {
        let stderr = std::fs::File::create(log).expect("log file");
        let mut cmd = otdrift();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .env("OTDRIFT_LOG", "info")
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("daemon starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(30));
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        let ready = ready.unwrap_or_else(|_| panic!("the daemon did not start:\n{log_text}"));
        assert!(ready.starts_with("otdrift running"), "{ready}\n{log_text}");
        Daemon {
            child,
            stderr_log: log.to_owned(),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response as the tests need it.
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client over loopback (one request per connection).
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> HttpResponse {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    match body {
        Some((content_type, text)) => request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )),
        None => request.push_str("\r\n"),
    }
    // A server that sheds load may close (reset) the connection before reading the request:
    // that is an answer too (status 0 when nothing readable came back).
    let _ = stream.write_all(request.as_bytes());
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse { status, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A test CA, a server certificate for 127.0.0.1 and localhost (`srv.pem`, `srv.key`) and a
/// client certificate (`client.pem`, `client.key`), made with openssl in `dir`.
pub fn certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=otdrift-test-ca",
        "-days",
        "2",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    // A client certificate (CN otdrift-gw) for servers that authenticate their clients.
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=otdrift-gw",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("client-ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .expect("client-ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.pem",
        "-days",
        "2",
        "-extfile",
        "client-ext",
    ]);
    dir.join("ca.pem")
}

/// Writes a secret file (a token, a password) readable by its owner only, as the agent wants.
pub fn secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value).expect("secret file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

/// A Modbus simulator with 16 holding registers of 100, and a config in `dir` whose agent
/// `agent_id` polls it every second as `press-7` (registers 0..8 its `recipe` setpoints), with
/// `tables` (`[api]`, `[[sink]]`, ...) before the asset. Returns the simulator and the config.
pub fn press_every_second(dir: &Path, agent_id: &str, tables: &str) -> (Sim, PathBuf) {
    let state = dir.join("state.toml");
    std::fs::write(
        &state,
        "unit_id = 1\ntick_ms = 0\n\n[identity]\nvendor_name = \"otdrift test\"\nproduct_code = \"PRESS\"\nrevision = \"1.0\"\n\n[[holding]]\nstart = 0\ncount = 16\nfill = 100\n",
    )
    .expect("state");
    let sim = Sim::start("modbus", Some(&state), dir);
    let cfg = write_config(
        dir,
        &format!(
            r#"
[agent]
id = "{agent_id}"
data_dir = "{data}"
{tables}

[[asset]]
id = "press-7"
protocol = "modbus"
address = "{sim}"
schedule = "* * * * * *"
timeout_ms = 1000

  [[asset.setpoints]]
  name = "recipe"
  table = "holding"
  start = 0
  count = 8
"#,
            data = dir.join("data").display(),
            sim = sim.addr,
        ),
    );
    (sim, cfg)
}
