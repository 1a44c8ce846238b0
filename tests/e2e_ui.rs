//! The status page: login, session cookie, read-only pages, over HTTPS with curl (not our
//! HTTP code) and in a real headless Chromium driven by Selenium (`tests/peers/ui_check.py`),
//! which keeps a screenshot of every page in `target/ui-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{Daemon, Sim, free_port, peers, secret, wait_until, write_config};

const TOKEN: &str = "ui-read-token-0123456789abcdef";

/// A press polled every second and the API with the status page on loopback, `tls` extra
/// keys of `[api]`.
fn rig(dir: &Path, tls: &str) -> (Sim, PathBuf, u16) {
    let token = secret(dir, "api.token", TOKEN);
    let port = free_port();
    let (sim, cfg) = support::press_every_second(
        dir,
        "gw-ui",
        &format!(
            "\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\nui = true\n{tls}\n",
            token.display()
        ),
    );
    (sim, cfg, port)
}

/// A press with a baseline and an open drift on `modbus/holding/3`.
fn drifted(sim: &mut Sim, cfg: &Path, dir: &Path) -> Daemon {
    let daemon = Daemon::start(cfg, &dir.join("daemon.log"));
    let status = |cfg: &Path| support::run(cfg, &["status", "--json"]).json();
    assert!(wait_until(Duration::from_secs(15), || {
        !status(cfg)["assets"][0]["baseline"].is_null()
    }));
    sim.cmd("set holding 3 777");
    assert!(wait_until(Duration::from_secs(15), || {
        status(cfg)["assets"][0]["open_drift"] == 1
    }));
    daemon
}

/// `curl` against the HTTPS listener; returns (status, headers, body).
fn curl(ca: &Path, args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-D", "-", "-o", "-"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn the_status_page_over_https_needs_the_token_sets_a_strict_cookie_and_changes_nothing() {
    for tool in ["/usr/bin/curl", "/usr/bin/openssl"] {
        if !Path::new(tool).exists() {
            peers::skip(
                "status page over HTTPS",
                &format!("{tool} is not installed"),
            );
            return;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = support::certificates(d);
    secret(
        d,
        "srv.key",
        &std::fs::read_to_string(d.join("srv.key")).expect("key"),
    );
    let (mut sim, cfg, port) = rig(
        d,
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            d.join("srv.pem").display(),
            d.join("srv.key").display()
        ),
    );
    let daemon = drifted(&mut sim, &cfg, d);
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");

    // No session: the login form.
    let (status, head, _) = curl(&ca, &[&url("/ui")]);
    assert_eq!(status, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/ui/login"));
    let (status, head, body) = curl(&ca, &[&url("/ui/login")]);
    assert_eq!(status, 200);
    assert!(body.contains("type=\"password\""), "{body}");
    assert!(
        header(&head, "content-security-policy").is_some_and(|c| c.contains("default-src 'none'"))
    );
    // A wrong token: refused, no cookie.
    let (status, head, body) = curl(&ca, &["-d", "token=guess", &url("/ui/login")]);
    assert_eq!(status, 401, "{head}");
    assert!(header(&head, "set-cookie").is_none());
    assert!(body.contains("not the read token"));
    // The read token: a session cookie, HttpOnly, SameSite=Strict, Secure.
    let (status, head, _) = curl(&ca, &["-d", &format!("token={TOKEN}"), &url("/ui/login")]);
    assert_eq!(status, 303, "{head}");
    let cookie = header(&head, "set-cookie").expect("cookie").to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/ui"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let session = cookie.split(';').next().expect("name=value").to_owned();
    let with = |path: &str| curl(&ca, &["-H", &format!("Cookie: {session}"), &url(path)]);
    let (status, _, body) = with("/ui");
    assert_eq!(status, 200);
    assert!(
        body.contains("press-7") && body.contains("1 with open drift"),
        "{body}"
    );
    assert!(!body.contains("<script"), "no script on the page");
    let (status, _, body) = with("/ui/drift");
    assert_eq!(status, 200);
    let id = body
        .split("href=\"/ui/drift/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a drift link")
        .to_owned();
    let (status, _, body) = with(&format!("/ui/drift/{id}"));
    assert_eq!(status, 200);
    assert!(
        body.contains("modbus/holding/3") && body.contains("777"),
        "{body}"
    );
    let (status, _, body) = with("/ui/audit");
    assert_eq!(status, 200);
    assert!(body.contains("The hash chain holds"), "{body}");
    let (status, _, _) = with("/ui/approvals");
    assert_eq!(status, 200);
    // Nothing writes: no other method on the pages, and the session is no API credential.
    let (status, _, _) = curl(
        &ca,
        &[
            "-X",
            "POST",
            "-H",
            &format!("Cookie: {session}"),
            &url("/ui"),
        ],
    );
    assert_eq!(status, 405);
    let (status, _, _) = curl(
        &ca,
        &[
            "-H",
            &format!("Cookie: {session}"),
            "-d",
            "x",
            &url("/v1/approvals"),
        ],
    );
    assert_eq!(status, 401, "a session cookie is not a bearer token");
    // The API itself answers over TLS only.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/healthz"),
        ])
        .output()
        .expect("curl");
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "plain HTTP was served"
    );
    // Logging out ends the session.
    let (status, _, _) = curl(
        &ca,
        &[
            "-X",
            "POST",
            "-H",
            &format!("Cookie: {session}"),
            &url("/ui/logout"),
        ],
    );
    assert_eq!(status, 303);
    let (status, _, _) = with("/ui");
    assert_eq!(status, 303);
    drop(daemon);
    sim.assert_no_writes();
}

#[test]
fn a_person_reads_the_status_page_in_headless_chromium() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(tool).exists() {
            peers::skip(
                "status page in Chromium",
                &format!("{tool} is not installed"),
            );
            return;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // On loopback the page may be served without TLS (the browser test needs no CA).
    let (mut sim, cfg, port) = rig(d, "");
    let daemon = drifted(&mut sim, &cfg, d);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
    let base = format!("http://127.0.0.1:{port}");
    let shots_text = shots.display().to_string();
    let ran = peers::run(
        "status page in Chromium",
        &["selenium"],
        "ui_check.py",
        &[&base, TOKEN, &shots_text, "press-7", "modbus/holding/3"],
    );
    drop(daemon);
    let Some(out) = ran else { return };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shots.join("05-drift-diff.png").exists());
    sim.assert_no_writes();
}

#[test]
fn the_page_on_a_network_address_needs_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = secret(dir.path(), "api.token", TOKEN);
    let cfg = write_config(
        dir.path(),
        &format!(
            "[agent]\nid = \"gw-ui\"\ndata_dir = \"{}\"\n\n[api]\nlisten = \"0.0.0.0:8410\"\ntoken_file = \"{}\"\nui = true\n",
            dir.path().join("data").display(),
            token.display()
        ),
    );
    let out = support::run(&cfg, &["check-config"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("needs tls_cert and tls_key")
            || out.stdout.contains("needs tls_cert and tls_key"),
        "{out:?}"
    );
}
