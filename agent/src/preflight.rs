//! What `otdrift run` checks before it starts, as one function that `check-config` calls too,
//! so a config that `check-config` accepts never surprises the operator at start (a
//! world-readable token file, two scopes sharing one token, a data dir the service user
//! cannot write, a missing agent key for a database with history).
//!
//! Not checked here: whether `[api] listen` can be bound (the running agent holds that port
//! while `check-config` runs next to it) and whether the devices answer; `run` reports both
//! at start or per capture.
//!
//! Every check runs, and every problem is reported, like the config's own errors. A problem
//! is *fatal* when `run` refuses to start over it; the others (an OPC UA password file that
//! group can read: only that asset's captures fail) are warnings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use otdrift_config::{Config, ProtocolConfig};

/// Tokens shorter than this are refused: they can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// One thing that is wrong before the agent starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The config key it concerns (`api.token_file`, `agent.data_dir`, `asset[2].password_file`).
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
    /// Whether `otdrift run` refuses to start over it.
    pub fatal: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = if self.fatal { "error" } else { "warning" };
        write!(f, "{level}: {}: {}", self.key, self.message)
    }
}

/// The secrets `run` needs, read once the checks passed.
#[derive(Default)]
pub struct Secrets {
    /// The API's read token.
    pub api_token: Option<String>,
    /// The API's approval token.
    pub approve_token: Option<String>,
    /// The upstream's bearer token.
    pub upstream_token: Option<String>,
    /// The API's TLS acceptor (`[api] tls_cert`, `tls_key`).
    pub api_tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// It cannot be read.
    #[error("cannot read the {what} token file {path}: {source}")]
    Read {
        /// Which token.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// Group or others can read it.
    #[error(
        "the {what} token file {path} is readable by group or others (mode {mode:03o}); refusing to start: run `chmod 600 {path}`"
    )]
    Readable {
        /// Which token.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It holds nothing.
    #[error("the {what} token file {path} is empty")]
    Empty {
        /// Which token.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// It holds too short a token.
    #[error(
        "the {what} token in {path} is shorter than {MIN_TOKEN_LEN} characters; use a long random token"
    )]
    Short {
        /// Which token.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// Reads a secret token file, refusing one that group or others can read, an empty one and
/// a short one.
pub fn read_secret(path: &Path, what: &'static str) -> Result<String, SecretError> {
    let read = |source| SecretError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SecretError::Readable {
                what,
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    let token = std::fs::read_to_string(path).map_err(read)?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(SecretError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(SecretError::Short {
            what,
            path: path.to_owned(),
        });
    }
    Ok(token)
}

/// Every check `run` makes before it starts. Returns the secrets (those that could be read)
/// and every problem found.
pub fn check(config: &Config) -> (Secrets, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut secrets = Secrets::default();
    let secret = |key: &str, path: &Path, what: &'static str, problems: &mut Vec<Problem>| {
        match read_secret(path, what) {
            Ok(token) => Some(token),
            Err(e) => {
                problems.push(Problem {
                    key: key.to_owned(),
                    message: e.to_string(),
                    fatal: true,
                });
                None
            }
        }
    };
    if let Some(api) = &config.api {
        secrets.api_token = secret("api.token_file", &api.token_file, "API", &mut problems);
        if let Some(path) = &api.approve_token_file {
            secrets.approve_token = secret(
                "api.approve_token_file",
                path,
                "API approval",
                &mut problems,
            );
        }
        if let Some((cert, key)) = &api.tls {
            match private_file(key) {
                Err(message) => problems.push(Problem {
                    key: "api.tls_key".into(),
                    message: format!("[api] tls_key {}: {message}", key.display()),
                    fatal: true,
                }),
                Ok(()) => match crate::daemon::tls::acceptor(cert, key) {
                    Ok(acceptor) => secrets.api_tls = Some(acceptor),
                    Err(message) => problems.push(Problem {
                        key: "api.tls_cert".into(),
                        message,
                        fatal: true,
                    }),
                },
            }
        }
        if secrets.approve_token.is_some() && secrets.approve_token == secrets.api_token {
            problems.push(Problem {
                key: "api.approve_token_file".into(),
                message: "[api] token_file and approve_token_file hold the same token: the approval token must be a second secret".into(),
                fatal: true,
            });
        }
    }
    if let Some(up) = &config.upstream {
        if let Some(path) = &up.token_file {
            secrets.upstream_token = secret("upstream.token_file", path, "upstream", &mut problems);
        } else if up
            .url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        {
            problems.push(Problem {
                key: "upstream.url".into(),
                message: format!(
                    "events are pushed to {} without TLS: anyone on the path can read and alter them",
                    up.url
                ),
                fatal: false,
            });
        }
    }
    data_dir(config, &mut problems);
    for (i, asset) in config.assets.iter().enumerate() {
        if let ProtocolConfig::Opcua(ua) = &asset.protocol
            && let Some(path) = &ua.password_file
            && let Err(message) = private_file(path)
        {
            problems.push(Problem {
                key: format!("asset[{i}].password_file"),
                message: format!(
                    "asset {:?}: {message}; its captures will fail until this is fixed",
                    asset.id
                ),
                fatal: false,
            });
        }
        if let Some(problem) = request_budget(asset) {
            problems.push(Problem {
                key: format!("asset[{i}].max_requests_per_sec"),
                message: problem,
                fatal: false,
            });
        }
    }
    (secrets, problems)
}

/// Why `asset`'s planned requests cannot fit its capture deadline at its request rate, when
/// its protocol can tell the requests from the config alone (every capture would end at the
/// deadline with `reason = bound` otherwise).
fn request_budget(asset: &otdrift_config::AssetConfig) -> Option<String> {
    let planned = otdrift_protocols::planned_requests(asset)?;
    let rate = u64::from(asset.max_requests_per_sec.max(1));
    // The first second's worth goes out at once; every further `rate` requests wait a second.
    let waits_ms = planned.saturating_sub(1) / rate * 1000;
    (waits_ms >= asset.capture_timeout_ms).then(|| {
        format!(
            "asset {:?}: a capture sends at least {planned} requests, which at \
             max_requests_per_sec = {rate} take at least {} s, not less than its \
             capture_timeout_ms ({} ms); raise one or read less",
            asset.id,
            waits_ms / 1000,
            asset.capture_timeout_ms
        )
    })
}

/// A file only its owner can read, or why not.
fn private_file(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by group or others (mode {:03o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    let _ = meta;
    Ok(())
}

/// The data dir: writable (or creatable), and the database and agent key in it usable as
/// `run` would use them. Nothing is created or changed: the database is opened read-only.
fn data_dir(config: &Config, problems: &mut Vec<Problem>) {
    let dir = &config.agent.data_dir;
    let mut fatal = |message: String| {
        problems.push(Problem {
            key: "agent.data_dir".into(),
            message,
            fatal: true,
        });
    };
    if dir.exists() {
        if !dir.is_dir() {
            fatal(format!("{} exists but is not a directory", dir.display()));
            return;
        }
        if let Err(e) = tempfile::Builder::new()
            .prefix(".otdrift-check-")
            .tempfile_in(dir)
        {
            fatal(format!(
                "cannot write to {} ({e}); on an installed gateway run this as the agent's user: sudo -u otdrift otdrift ...",
                dir.display()
            ));
            return;
        }
    } else {
        // `run` creates it: the nearest existing ancestor must let us.
        let mut parent = dir.parent();
        while let Some(p) = parent {
            if p.as_os_str().is_empty() || p.exists() {
                break;
            }
            parent = p.parent();
        }
        let parent = match parent {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if let Err(e) = tempfile::Builder::new()
            .prefix(".otdrift-check-")
            .tempfile_in(&parent)
        {
            fatal(format!(
                "{} does not exist and cannot be created in {} ({e})",
                dir.display(),
                parent.display()
            ));
        }
        return;
    }
    let db = dir.join(crate::context::DB_FILE);
    let recorded = if db.exists() {
        match otdrift_store::Store::open_read_only(&db, Arc::new(otdrift_core::SystemClock)) {
            Ok(store) => match crate::context::recorded_agent_key(&store) {
                Ok(key) => key,
                Err(e) => {
                    fatal(format!("{}: {:#}", db.display(), e.error));
                    return;
                }
            },
            Err(e) => {
                fatal(format!("{}: {e}", db.display()));
                return;
            }
        }
    } else {
        None
    };
    if let Err(e) = crate::keys::check_agent_key(dir, recorded.as_deref()) {
        problems.push(Problem {
            key: "agent.data_dir".into(),
            message: format!("{e:#}"),
            fatal: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        #[cfg(not(unix))]
        let _ = mode;
        path
    }

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "[agent]\nid = \"gw\"\ndata_dir = \"{}\"\n{extra}",
            dir.join("data").display()
        );
        otdrift_config::parse(&text, Path::new("otdrift.toml")).expect("valid config")
    }

    /// A config whose API reads with `read` and approves with `approve`.
    fn api_config(dir: &Path, read: &Path, approve: &Path) -> Config {
        config(
            dir,
            &format!(
                "[api]\nlisten = \"127.0.0.1:8410\"\ntoken_file = \"{}\"\napprove_token_file = \"{}\"\n",
                read.display(),
                approve.display()
            ),
        )
    }

    /// A Modbus asset reading 10,000 holding registers: 80 reads of 125 and one Read Device
    /// Identification, 81 requests.
    fn big_modbus(dir: &Path, rate: u32, capture_timeout_ms: u64) -> Config {
        config(
            dir,
            &format!(
                "[[asset]]\nid = \"press\"\nprotocol = \"modbus\"\naddress = \"127.0.0.1:5020\"\n\
                 schedule = \"0 * * * * *\"\nmax_requests_per_sec = {rate}\n\
                 capture_timeout_ms = {capture_timeout_ms}\n[[asset.setpoints]]\nname = \"all\"\n\
                 table = \"holding\"\nstart = 0\ncount = 10000\n"
            ),
        )
    }

    #[test]
    fn a_rate_too_low_for_the_capture_deadline_is_a_warning() {
        let dir = tempfile::tempdir().expect("dir");
        // 81 requests at 10 a second wait 8 s: fits 60 s, not 5 s.
        let (_, fits) = check(&big_modbus(dir.path(), 10, 60_000));
        assert!(fits.is_empty(), "{fits:?}");
        let (_, slow) = check(&big_modbus(dir.path(), 10, 5_000));
        assert_eq!(slow.len(), 1, "{slow:?}");
        assert_eq!(slow[0].key, "asset[0].max_requests_per_sec");
        assert!(!slow[0].fatal, "a warning: run still starts");
        assert!(
            slow[0].message.contains("at least 81 requests")
                && slow[0].message.contains("at least 8 s"),
            "{}",
            slow[0]
        );
        // At the default rate the same capture waits one second.
        let (_, default) = check(&big_modbus(dir.path(), 50, 5_000));
        assert!(default.is_empty(), "{default:?}");
    }

    #[test]
    fn a_good_setup_has_no_problems_and_yields_the_secrets() {
        let dir = tempfile::tempdir().expect("dir");
        let read = secret_file(dir.path(), "api.token", "read-token-0123456789", 0o600);
        let approve = secret_file(
            dir.path(),
            "approve.token",
            "approve-token-0123456789",
            0o600,
        );
        let cfg = api_config(dir.path(), &read, &approve);
        let (secrets, problems) = check(&cfg);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(secrets.api_token.as_deref(), Some("read-token-0123456789"));
        assert!(secrets.approve_token.is_some());
        assert!(!dir.path().join("data").exists(), "nothing is created");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let read = secret_file(dir.path(), "api.token", "same-token-0123456789", 0o644);
        let approve = secret_file(dir.path(), "approve.token", "short", 0o600);
        let up = secret_file(dir.path(), "up.token", "", 0o600);
        let cfg = config(
            dir.path(),
            &format!(
                "[api]\nlisten = \"127.0.0.1:8410\"\ntoken_file = \"{}\"\napprove_token_file = \"{}\"\n[upstream]\nurl = \"https://c.example/e\"\ntoken_file = \"{}\"\n",
                read.display(),
                approve.display(),
                up.display()
            ),
        );
        let (_, problems) = check(&cfg);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "api.token_file",
                "api.approve_token_file",
                "upstream.token_file"
            ],
            "{problems:#?}"
        );
        assert!(problems.iter().all(|p| p.fatal));
        assert!(problems[0].message.contains("chmod 600"), "{}", problems[0]);
        assert!(problems[1].message.contains("shorter"), "{}", problems[1]);
        assert!(problems[2].message.contains("empty"), "{}", problems[2]);
    }

    #[test]
    fn the_same_token_for_both_scopes_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let read = secret_file(dir.path(), "api.token", "same-token-0123456789", 0o600);
        let approve = secret_file(
            dir.path(),
            "approve.token",
            "same-token-0123456789\n",
            0o600,
        );
        let cfg = api_config(dir.path(), &read, &approve);
        let (_, problems) = check(&cfg);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("same token"));
    }

    #[cfg(unix)]
    #[test]
    fn a_data_dir_that_is_a_file_or_unwritable_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("data"), "not a dir").expect("file");
        let (_, problems) = check(&config(dir.path(), ""));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("not a directory"));
    }

    #[test]
    fn a_missing_agent_key_for_a_database_with_history_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("dir");
        {
            let mut store = otdrift_store::Store::open(
                &data.join(crate::context::DB_FILE),
                Arc::new(otdrift_core::SystemClock),
            )
            .expect("store");
            store
                .audit_append(
                    "agent.key_created",
                    None,
                    &serde_json::json!({"agent": "gw", "public_key": "ed25519:AAAA"}),
                )
                .expect("audit");
        }
        let (_, problems) = check(&config(dir.path(), ""));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("is missing"),
            "{}",
            problems[0]
        );
    }
}
