//! Exit codes: 0 done, 1 runtime failure, 2 usage or config error, 3 capture found drift,
//! 4 approval token rejected, 5 a verification failed ([`EXIT_CODES`], in
//! `docs/reference/cli.md`).

/// Every exit code and what it means, as the command-line reference lists them.
pub const EXIT_CODES: [(u8, &str); 6] = [
    (0, "done; for `capture`, the asset matches its baseline"),
    (
        1,
        "runtime failure: a device unreachable or failing, I/O, the store",
    ),
    (
        2,
        "usage or config error (the message names the file, line and key)",
    ),
    (3, "`capture` found drift"),
    (
        4,
        "an approval token was rejected (the message names the reason)",
    ),
    (
        5,
        "a verification failed (`audit-verify`, `evidence-verify`)",
    ),
];

/// A command that finished and says how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done; for `capture`, the asset matches its baseline.
    Ok,
    /// `capture` found drift.
    Drift,
    /// An approval token was rejected.
    Rejected,
    /// `audit-verify` or `evidence-verify` found tampering.
    VerificationFailed,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Drift => 3,
            Exit::Rejected => 4,
            Exit::VerificationFailed => 5,
        }
    }
}

/// A command that could not do its job.
#[derive(Debug)]
pub struct Failure {
    /// 1 for runtime failures, 2 for usage and config errors.
    pub code: u8,
    /// What went wrong, with its causes.
    pub error: anyhow::Error,
}

impl Failure {
    /// A runtime failure (device unreachable, I/O): exit 1.
    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 1,
            error: error.into(),
        }
    }

    /// A usage or config error: exit 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: error.into(),
        }
    }
}

/// The result of a command.
pub type CmdResult = Result<Exit, Failure>;

/// Shorthand: turn any error into a runtime failure with context.
pub trait RuntimeContext<T> {
    /// Adds `context` and marks the failure as a runtime failure (exit 1).
    fn runtime(self, context: &str) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> RuntimeContext<T> for Result<T, E> {
    fn runtime(self, context: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure::runtime(e.into().context(context.to_owned())))
    }
}
