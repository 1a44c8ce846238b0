//! Independent implementations (peers) that the tests run otdrift against: Python clients and
//! servers we did not write (pymodbus, python-snap7, pyads, cpppo, pylogix, pycomm3, asyncua,
//! PyJWT), started from the scripts in `tests/peers/`.
//!
//! A peer check that cannot run here must never look passed. So:
//! - with `OTDRIFT_REQUIRE_PEERS=1` (CI, and `tests/run`, the README's test command), a missing
//!   interpreter or package is a test failure;
//! - otherwise the check returns early, and the skip is written to stderr *and* appended to
//!   the ledger file (`OTDRIFT_PEER_LEDGER`, default `target/peer-skips.txt`), which
//!   `tests/run` prints at the end of the run, so nobody reads "all passed" without seeing it.
//!
//! The interpreter is `OTDRIFT_PYTHON` (`tests/run` points it at a virtualenv built from
//! `.ci/peers.txt`), else `python3`.
//!
//! This file is shared by the test targets of several crates (`#[path]` includes), so it only
//! uses the standard library.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The folder of the peer scripts (`tests/peers/`).
pub fn scripts_dir() -> PathBuf {
    workspace_root().join("tests").join("peers")
}

/// The path of one peer script.
pub fn script(name: &str) -> PathBuf {
    scripts_dir().join(name)
}

fn workspace_root() -> PathBuf {
    // Every crate of the workspace is one folder below the root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Whether a missing peer fails the test (`OTDRIFT_REQUIRE_PEERS=1`).
pub fn required() -> bool {
    std::env::var_os("OTDRIFT_REQUIRE_PEERS").is_some_and(|v| v == "1")
}

/// The Python interpreter for peers.
pub fn python() -> PathBuf {
    std::env::var_os("OTDRIFT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Records that `check` could not run, or fails the test when peers are required.
pub fn skip(check: &str, why: &str) {
    assert!(
        !required(),
        "peer check {check:?} cannot run (OTDRIFT_REQUIRE_PEERS=1): {why}"
    );
    eprintln!("SKIPPED peer check {check}: {why}");
    let ledger = std::env::var_os("OTDRIFT_PEER_LEDGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("peer-skips.txt"));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ledger)
    {
        let why = why.lines().last().unwrap_or(why);
        let _ = writeln!(f, "{check}: {why}");
    }
}

/// Whether the Python `modules` import here; records a skip for `check` when not.
pub fn available(check: &str, modules: &[&str]) -> bool {
    let probe = format!("import {}", modules.join(", "));
    match Command::new(python()).args(["-c", &probe]).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            skip(
                check,
                &format!(
                    "Python module(s) {} missing (pip install -r .ci/peers.txt): {}",
                    modules.join(", "),
                    err.trim()
                ),
            );
            false
        }
        Err(e) => {
            skip(check, &format!("no Python interpreter {:?}: {e}", python()));
            false
        }
    }
}

/// Runs peer `script` (a file in `tests/peers/`) with `args` to completion, after checking
/// `modules` import; `None` when it cannot run here (see [`skip`]). The caller asserts on the
/// output, including its exit status.
pub fn run(check: &str, modules: &[&str], script_name: &str, args: &[&str]) -> Option<Output> {
    if !available(check, modules) {
        return None;
    }
    let out = Command::new(python())
        .arg(script(script_name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{check}: cannot run {script_name}: {e}"));
    eprintln!(
        "{check}: {script_name} exited {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}

/// Runs Python source `code` (for short probes that do not deserve a file) like [`run`].
pub fn run_inline(check: &str, modules: &[&str], code: &str, args: &[&str]) -> Option<Output> {
    if !available(check, modules) {
        return None;
    }
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{check}: cannot run python: {e}"));
    Some(out)
}

/// A peer server process: it printed `listening HOST:PORT` and serves until dropped (its
/// stdin is closed, which every peer server takes as the signal to exit, then it is killed).
pub struct PeerServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl PeerServer {
    /// Starts peer server `script_name` with `args`; `None` when it cannot run here.
    pub fn start(
        check: &str,
        modules: &[&str],
        script_name: &str,
        args: &[&str],
    ) -> Option<PeerServer> {
        if !available(check, modules) {
            return None;
        }
        let mut child = Command::new(python())
            .arg(script(script_name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{check}: cannot start {script_name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Keep draining so the peer never blocks on a full pipe.
            for _ in lines {}
        });
        let started = Instant::now();
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .unwrap_or_default();
        let addr = line
            .strip_prefix("listening ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "{check}: {script_name} did not say `listening HOST:PORT` within {:?} (said {line:?})",
                    started.elapsed()
                )
            });
        Some(PeerServer { child, stdin, addr })
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
