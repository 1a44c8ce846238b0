//! README.md's "The operator's first hour", command by command, against a simulated press.
//!
//! The test reads the README between `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->`
//! and runs every command of its `sh` blocks in order, so the README cannot drift from what
//! the product does. To run as an unprivileged test it
//! - rewrites `/etc/otdrift`, `/var/lib/otdrift` and `/var/backups` into a temporary root and
//!   points `OTDRIFT_CONFIG` there; drops `sudo`/`sudo -u otdrift` and `otdrift` ownership;
//! - plays `systemctl enable --now|start|restart|stop otdrift` with a real `otdrift run`;
//! - leaves `dpkg -i` to CI's packaging check (which installs and upgrades the real package);
//! - writes the `toml` blocks marked `walkthrough:config` / `walkthrough:append-config`
//!   (with the simulator's and receiver's addresses), and performs `walkthrough:sim` steps on
//!   the simulator;
//! - fills `<signature>` with the last signature a capture printed and `<baseline>` with the
//!   asset's current baseline;
//! - expects exit code 0, or N where the README says `# exits N`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::receiver::Receiver;
use support::{Daemon, Sim, free_port};

enum Step {
    Run {
        line: String,
        expect: i32,
    },
    Config {
        toml: String,
        append: bool,
        public_key: Option<String>,
    },
    Sim(String),
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md")
}

fn steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find("<!-- walkthrough:begin -->")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walkthrough end marker");
    let mut steps = Vec::new();
    let mut pending_config: Option<(bool, Option<String>)> = None;
    let mut block: Option<String> = None;
    let mut continued = String::new();
    for raw in readme[start..end].lines() {
        let line = raw.trim_end();
        if let Some(lang) = &block {
            if line.starts_with("```") {
                block = None;
                continue;
            }
            if lang == "toml" {
                if let Some(Step::Config { toml, .. }) = steps.last_mut() {
                    toml.push_str(line);
                    toml.push('\n');
                }
                continue;
            }
            if lang != "sh" {
                continue;
            }
            if let Some(stripped) = line.strip_suffix('\\') {
                continued.push_str(stripped);
                continue;
            }
            let full = format!("{continued}{line}");
            continued.clear();
            let command = full.trim();
            if command.is_empty() || command.starts_with('#') {
                continue;
            }
            let (command, comment) = match command.find("  #") {
                Some(at) => (command[..at].trim(), &command[at..]),
                None => (command, ""),
            };
            let expect = comment
                .split("exits ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            steps.push(Step::Run {
                line: command.to_owned(),
                expect,
            });
            continue;
        }
        if let Some(lang) = line.strip_prefix("```") {
            if lang == "toml" {
                let (append, public_key) = pending_config.take().unwrap_or((true, None));
                steps.push(Step::Config {
                    toml: String::new(),
                    append,
                    public_key,
                });
            }
            block = Some(lang.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("<!-- walkthrough:") {
            let rest = rest.trim_end_matches("-->").trim();
            if rest == "config" {
                pending_config = Some((false, None));
            } else if let Some(args) = rest.strip_prefix("append-config") {
                let file = args.trim();
                pending_config = Some((true, (!file.is_empty()).then(|| file.to_owned())));
            } else if let Some(cmd) = rest.strip_prefix("sim ") {
                steps.push(Step::Sim(cmd.to_owned()));
            }
        }
    }
    steps
}

struct World {
    root: PathBuf,
    home: PathBuf,
    config: PathBuf,
    sim_addr: String,
    receiver_url: String,
    api: String,
    daemon: Option<Daemon>,
    signatures: Vec<String>,
}

impl World {
    fn rewrite(&self, text: &str) -> String {
        let root = self.root.display().to_string();
        text.replace("/etc/otdrift", &format!("{root}/etc/otdrift"))
            .replace("/var/lib/otdrift", &format!("{root}/var/lib/otdrift"))
            .replace("/var/backups", &format!("{root}/var/backups"))
            .replace("10.0.3.17:502", &self.sim_addr)
            .replace("https://central.example/otdrift/events", &self.receiver_url)
            .replace("127.0.0.1:8410", &self.api)
    }

    fn otdrift(&self) -> Command {
        let mut cmd = support::otdrift();
        cmd.env("OTDRIFT_CONFIG", &self.config);
        cmd
    }

    fn baseline(&self) -> String {
        let out = self
            .otdrift()
            .args(["status", "--json"])
            .output()
            .expect("status");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        doc["assets"][0]["baseline"]["digest"]
            .as_str()
            .expect("a baseline")
            .to_owned()
    }

    fn start_daemon(&mut self) {
        if self.daemon.is_none() {
            self.daemon = Some(Daemon::start(&self.config, &self.root.join("daemon.log")));
        }
    }

    fn stop_daemon(&mut self) {
        if let Some(d) = self.daemon.take() {
            assert_eq!(d.terminate(), Some(0), "the agent stops cleanly");
        }
    }

    fn systemctl(&mut self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let action = match words.as_slice() {
            ["systemctl", "enable", "--now", "otdrift"] | ["systemctl", "start", "otdrift"] => {
                "start"
            }
            ["systemctl", "restart", "otdrift"] => "restart",
            ["systemctl", "stop", "otdrift"] => "stop",
            _ => return false,
        };
        match action {
            "start" => self.start_daemon(),
            "restart" => {
                self.stop_daemon();
                self.start_daemon();
            }
            _ => self.stop_daemon(),
        }
        true
    }

    fn run(&mut self, line: &str, expect: i32) -> String {
        if line.starts_with("curl ")
            && Command::new("curl").arg("--version").output().is_err()
            && std::env::var_os("OTDRIFT_REQUIRE_PEERS").is_none_or(|v| v != "1")
        {
            eprintln!("skipping `{line}`: curl is not installed here");
            return String::new();
        }
        let mut command = line.replace("sudo -u otdrift ", "").replace("sudo ", "");
        command = command
            .replace(" -o otdrift -g otdrift", "")
            .replace("chown otdrift:otdrift", "chown \"$(id -u):$(id -g)\"");
        if command.contains("<signature>") {
            let last = self
                .signatures
                .last()
                .expect("a signature printed earlier")
                .clone();
            command = command.replace("<signature>", &last);
        }
        if command.contains("<baseline>") {
            command = command.replace("<baseline>", &self.baseline());
        }
        let command = self.rewrite(&command);
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_otdrift"))
            .parent()
            .expect("bin dir")
            .to_owned();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&self.home)
            .env("PATH", path)
            .env("OTDRIFT_CONFIG", &self.config)
            .env("OTDRIFT_LOG", "warn")
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(expect),
            "README command `{line}`\n(ran as `{command}`)\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        for l in stdout.lines() {
            if let Some(sig) = l.trim().strip_prefix("signature") {
                self.signatures.push(sig.trim().to_owned());
            }
        }
        stdout
    }
}

#[test]
fn the_readme_operator_walkthrough_runs_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let home = dir.path().join("home");
    for d in ["etc/otdrift", "var/lib", "var/backups"] {
        std::fs::create_dir_all(root.join(d)).expect("dirs");
    }
    std::fs::create_dir_all(&home).expect("home");
    let mut sim = Sim::start("modbus", None, dir.path());
    let receiver = Receiver::start("");
    let mut world = World {
        config: root.join("etc/otdrift/otdrift.toml"),
        root,
        home,
        sim_addr: sim.addr.clone(),
        receiver_url: receiver.url(),
        api: format!("127.0.0.1:{}", free_port()),
        daemon: None,
        signatures: Vec::new(),
    };

    let all = steps(&readme());
    let mut ran = 0;
    let mut skipped = Vec::new();
    for step in all {
        match step {
            Step::Config {
                toml,
                append,
                public_key,
            } => {
                let mut text = world.rewrite(&toml);
                if let Some(file) = public_key {
                    let key = std::fs::read_to_string(world.home.join(&file))
                        .unwrap_or_else(|e| panic!("{file}: {e}"));
                    text = text.replace("ed25519:...", key.trim());
                }
                let mut current = if append {
                    std::fs::read_to_string(&world.config).expect("config so far")
                } else {
                    String::new()
                };
                current.push('\n');
                current.push_str(&text);
                std::fs::write(&world.config, current).expect("config");
            }
            Step::Sim(cmd) => {
                sim.cmd(&cmd);
            }
            Step::Run { line, expect } => {
                let bare = line.replace("sudo ", "");
                if bare.starts_with("dpkg ") {
                    skipped.push(line);
                    continue;
                }
                if world.systemctl(&bare) {
                    ran += 1;
                    continue;
                }
                world.run(&line, expect);
                ran += 1;
            }
        }
    }
    // The README left the agent running with [upstream] set: its events reach the receiver.
    assert!(
        world.daemon.is_some(),
        "the walkthrough ends with the agent running"
    );
    assert!(
        support::wait_until(std::time::Duration::from_secs(20), || !receiver
            .received
            .unique()
            .is_empty()),
        "the README's [upstream] received nothing; refused {}, bad {}; daemon log:\n{}",
        receiver
            .received
            .refused
            .load(std::sync::atomic::Ordering::SeqCst),
        receiver
            .received
            .bad
            .load(std::sync::atomic::Ordering::SeqCst),
        world.daemon.as_ref().map(|d| d.log()).unwrap_or_default()
    );
    world.stop_daemon();
    assert!(ran >= 30, "only {ran} README commands ran");
    assert_eq!(
        skipped,
        [
            "sudo dpkg -i otdrift_0.1.0-1_amd64.deb",
            "sudo dpkg -i otdrift_0.1.0-1_amd64.deb"
        ],
        "only the package installs are left to CI"
    );
    sim.assert_no_writes();
}
