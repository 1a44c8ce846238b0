//! The command line. `docs/reference/cli.md` is generated from these definitions
//! ([`reference`]); a test keeps it current.

#[cfg(feature = "sim")]
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// otdrift: proves a plant's PLCs still run the state someone approved.
#[derive(Debug, Parser)]
#[command(name = "otdrift", version, about, long_about = None)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "OTDRIFT_CONFIG",
        default_value = "/etc/otdrift/otdrift.toml"
    )]
    pub config: PathBuf,

    /// Log format on stderr: human for a terminal, json for journald or a SIEM.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Before or after the change, for a technician's capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    /// Before implementing the change.
    Before,
    /// After implementing it.
    After,
}

/// Change kinds for `sign-approval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A pre-approved routine change.
    Standard,
    /// A change through the normal process.
    Normal,
    /// An emergency change.
    Emergency,
    /// A review of an emergency change (`--to` = the state it applied).
    Review,
}

impl KindArg {
    /// The token's kind.
    pub fn to_kind(self) -> crate::approval::Kind {
        match self {
            KindArg::Standard => crate::approval::Kind::Standard,
            KindArg::Normal => crate::approval::Kind::Normal,
            KindArg::Emergency => crate::approval::Kind::Emergency,
            KindArg::Review => crate::approval::Kind::Review,
        }
    }
}

/// The simulated PLCs `otdrift sim` can run: those this build carries, as their registry
/// (`otdrift_simulators::SIMULATORS`) names and describes them.
#[cfg(feature = "sim")]
fn sim_protocols() -> clap::builder::PossibleValuesParser {
    use clap::builder::PossibleValue;
    clap::builder::PossibleValuesParser::new(otdrift_simulators::SIMULATORS.iter().map(|sim| {
        PossibleValue::new(sim.name).help(format!(
            "{}; default listen {}",
            sim.about,
            sim.default_listen()
        ))
    }))
}

/// The subcommands.
// Parsed once per process: the size of the largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run simulators and the agent together and tell the whole story; needs no config.
    #[cfg(feature = "sim")]
    Demo,
    /// The daemon: scheduled captures, drift events pushed upstream, the HTTP API.
    Run,
    /// Check the config file and print every error with its file, line and key.
    CheckConfig {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Capture an asset now and compare it with its baseline (exit 3 on drift).
    Capture {
        /// The asset id from the config.
        asset: String,
        /// The change ticket this capture documents.
        #[arg(long, requires = "phase")]
        change: Option<String>,
        /// Before or after the change.
        #[arg(long, value_enum, requires = "change")]
        phase: Option<PhaseArg>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Every asset: reachability, last capture, baseline, open drift.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Drift events, newest first.
    Drift {
        /// Only this asset.
        #[arg(long)]
        asset: Option<String>,
        /// Only open events.
        #[arg(long)]
        open: bool,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Item-level difference between two states of an asset (default: baseline to latest).
    Diff {
        /// The asset id.
        asset: String,
        /// The older state (default: the current baseline).
        #[arg(long)]
        from: Option<String>,
        /// The newer state (default: the latest capture).
        #[arg(long)]
        to: Option<String>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Write an Ed25519 key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix for the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Mint a signed approval token (JWS, EdDSA) for approvers without a change system.
    SignApproval(SignArgs),
    /// Submit a signed approval token (a file, or - for stdin); exit 4 when rejected.
    Approve {
        /// The token file, or `-` for stdin.
        token: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Write the evidence pack of a change: evidence.json and evidence.html.
    Evidence {
        /// The change ticket.
        change: String,
        /// The directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// The compliance report: every asset's approved baseline, when it was last verified
    /// against it, open drift, and the drift and failed collections of the window.
    ///
    /// `json` is signed with the agent key like an evidence pack (`evidence-verify` checks
    /// it); `html` is one self-contained page to open offline or print; `csv` is one row per
    /// asset. Without `--out` it is written to standard output.
    Report {
        /// json, html or csv.
        #[arg(long, default_value = "json", value_parser = ["json", "html", "csv"])]
        format: String,
        /// The file to write (created or replaced).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The reporting window: drift and failed collections since this long ago, a
        /// duration such as 35d or 12h.
        #[arg(long, value_name = "DURATION", default_value = "35d")]
        since: String,
    },
    /// Check an evidence pack or a signed report offline (exit 5 on any tampering).
    EvidenceVerify {
        /// The evidence.json file.
        file: PathBuf,
        /// The agent's public key (`ed25519:...`) the pack must be signed with, as the agent
        /// published it (`io.otdrift.agent.key`, `otdrift status --json`).
        #[arg(long, conflicts_with_all = ["agent_key_file", "trust_embedded_key"])]
        agent_key: Option<String>,
        /// A file holding that key (`ed25519:...`).
        #[arg(long, conflicts_with = "trust_embedded_key")]
        agent_key_file: Option<PathBuf>,
        /// Accept the key inside the pack: proves the pack is intact, not who signed it.
        /// Without a pinned key or this flag, verification fails (exit 5).
        #[arg(long)]
        trust_embedded_key: bool,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Open (or end) a maintenance window: unreachable, failed-collection and stale alarms of
    /// the asset are held back (and audited) until it ends; drift is still raised.
    Maintenance {
        /// The asset.
        asset: String,
        /// How long, a duration such as 2h or 30m.
        #[arg(
            long = "for",
            value_name = "DURATION",
            conflicts_with = "end",
            required_unless_present = "end"
        )]
        duration: Option<String>,
        /// Why (shown in status and recorded in the audit log).
        #[arg(long, default_value = "maintenance")]
        reason: String,
        /// End the asset's open window now.
        #[arg(long)]
        end: bool,
    },
    /// The agent's own identity key (signs evidence packs, reports and audit heads).
    AgentKey {
        /// What to do.
        #[command(subcommand)]
        action: AgentKeyAction,
    },
    /// Copy the database and the agent key to a directory, consistently, while the agent runs.
    Backup {
        /// The directory to create (it must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// Delivery upstream: where it stands, the events the receiver refused (parked), retries.
    ///
    /// Without options: the cursor, what waits, what is parked, and whether delivery is paused
    /// (the receiver refused our credentials). A parked event is one the receiver refused on
    /// its own (413, 422, 400); it is kept, and `--retry` queues it to be sent again, out of
    /// its original order, by the running agent. Each `[[sink]]` is listed with its own cursor
    /// (`--json`: `sinks`, each `name`, `destination`, `acked_seq`, `last_seq`, `depth`).
    Outbox {
        /// List the parked events (with `--all`, also those a retry delivered).
        #[arg(long, conflicts_with_all = ["retry", "retry_all"])]
        parked: bool,
        /// With `--parked`: also list parked events a retry delivered.
        #[arg(long, requires = "parked")]
        all: bool,
        /// Queue the parked event with this sequence number (`otdriftseq`) for another try.
        #[arg(long, value_name = "SEQ", conflicts_with = "retry_all")]
        retry: Option<i64>,
        /// Queue every parked event for another try.
        #[arg(long)]
        retry_all: bool,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Check the audit log's hash chain (exit 5 on a break).
    AuditVerify {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Run a simulated PLC for test rigs.
    #[cfg(feature = "sim")]
    Sim {
        /// Which protocol to simulate.
        #[arg(value_parser = sim_protocols())]
        protocol: String,
        /// Where to listen (default: loopback on the protocol's simulator port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The state file (default: the protocol's built-in demo device).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Append every request received to this file as JSON lines.
        #[arg(long)]
        request_log: Option<PathBuf>,
        /// Also accept control commands on this TCP address.
        #[arg(long)]
        control: Option<SocketAddr>,
    },
}

impl Command {
    /// A command that runs until stopped (it logs at info, the others only warnings).
    pub fn is_long_running(&self) -> bool {
        #[cfg(feature = "sim")]
        if matches!(self, Command::Sim { .. }) {
            return true;
        }
        matches!(self, Command::Run)
    }
}

/// What `sign-approval` is asked to sign: its command-line arguments, used as they are by
/// `commands::approve::sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The approver's private key (PKCS#8 PEM from `keygen`, or a 64-hex-digit seed).
    #[arg(long)]
    pub key: PathBuf,
    /// The asset the change is for.
    #[arg(long, required_unless_present = "assets", conflicts_with = "assets")]
    pub asset: Option<String>,
    /// Approve a capture change on several assets with one token (repeatable): each asset
    /// with its exact new signature, as `ASSET=SIGNATURE` (`otdrift drift` shows both). The
    /// agent accepts it only where the asset's open drift has reason `capture_changed`.
    #[arg(
        long,
        value_name = "ASSET=SIGNATURE",
        conflicts_with_all = ["to", "content", "from", "diff", "envelope", "withdraw"]
    )]
    pub assets: Vec<String>,
    /// The change ticket.
    #[arg(long)]
    pub change: String,
    /// The signature of the approved state (from `otdrift capture`).
    #[arg(long, required_unless_present_any = ["withdraw", "content", "assets"], conflicts_with_all = ["withdraw", "content"])]
    pub to: Option<String>,
    /// Approve a change signature instead of a full signature: any controller running this
    /// content, with its identity unchanged (`otdrift capture` prints it as
    /// `change signature`; learn it on a staging controller).
    #[arg(long, conflicts_with = "withdraw")]
    pub content: Option<String>,
    /// The digest of the content changes you reviewed (`otdrift diff ASSET --to ... --json`
    /// prints it as `diff_digest`), for assets whose policy has `diff_review`.
    #[arg(long, conflicts_with = "withdraw")]
    pub diff: Option<String>,
    /// Instead of approving a state, withdraw the pending approval whose token id (`jti`)
    /// this is: a `withdraw` token.
    #[arg(long, conflicts_with_all = ["from", "kind"])]
    pub withdraw: Option<String>,
    /// The baseline the change starts from; if given, it must be the current baseline.
    #[arg(long)]
    pub from: Option<String>,
    /// The approving person (default: the approver id).
    #[arg(long)]
    pub approver: Option<String>,
    /// The requesting person; must not be the approver.
    #[arg(long)]
    pub requestor: Option<String>,
    /// An approved envelope (repeatable): `PATH=MIN..MAX` (inclusive) or `PATH=A|B|C`, where
    /// PATH is a setpoint item path or a prefix ending in `*`. The setpoint may then move
    /// inside it without drift. Without it the baseline's envelopes carry over.
    #[arg(long, value_name = "PATH=MIN..MAX", conflicts_with = "withdraw")]
    pub envelope: Vec<String>,
    /// The change kind; only an emergency change may be approved after implementation.
    #[arg(long, value_enum, default_value_t = KindArg::Normal)]
    pub kind: KindArg,
    /// How long the token is valid (a duration: 90s, 30m, 24h, 7d); the agent refuses
    /// tokens valid longer than its `[agent] max_token_lifetime` (default 30d).
    #[arg(long, default_value = "24h")]
    pub valid: String,
    /// The approver id (`kid`); by default the config's approver whose public key matches.
    #[arg(long)]
    pub kid: Option<String>,
    /// When the approval was given (RFC 3339; default now); also the start of validity.
    #[arg(long)]
    pub issued_at: Option<String>,
    /// The token id (default: a random UUID).
    #[arg(long)]
    pub jti: Option<String>,
    /// Write the token to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `otdrift agent-key` actions.
#[derive(Debug, Subcommand)]
pub enum AgentKeyAction {
    /// Print the public key (`ed25519:...`), to pin it for `evidence-verify --agent-key`.
    Show {
        /// Print one JSON document, with the key's history.
        #[arg(long)]
        json: bool,
    },
    /// Replace the key on purpose: the new key is announced in a statement signed by the old
    /// one, recorded in the audit log and published as `io.otdrift.agent.key`.
    Rotate {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

impl PhaseArg {
    /// The store's phase.
    pub fn to_phase(self) -> otdrift_store::Phase {
        match self {
            PhaseArg::Before => otdrift_store::Phase::Before,
            PhaseArg::After => otdrift_store::Phase::After,
        }
    }
}

/// The command-line reference, `docs/reference/cli.md`: the exit codes and every command's
/// long help, as clap renders it at a fixed width. `OTDRIFT_BLESS=1 cargo test -p otdrift
/// --lib cli_reference` rewrites the file after a change here.
pub fn reference() -> String {
    use clap::CommandFactory;
    let mut root = Cli::command().term_width(100).max_term_width(100);
    root.build();
    let mut out = String::from(
        "# Command line\n\n\
         Generated from the command definitions (`agent/src/cli.rs`); edit those, then run\n\
         `OTDRIFT_BLESS=1 cargo test -p otdrift --lib cli_reference`. A test fails while this\n\
         file differs from what the code would print.\n\n\
         `demo` and `sim` exist only in builds with the `sim` feature: `cargo run -p otdrift` \
         (default features) and the test-rig package `otdrift-sim` (`otdrift-sim demo`). The \
         gateway package `otdrift` is built without the simulators and has neither.\n\n## Exit codes\n\n| code | meaning |\n|---|---|\n",
    );
    for (code, meaning) in crate::exit::EXIT_CODES {
        out.push_str(&format!("| {code} | {meaning} |\n"));
    }
    out.push_str(&format!(
        "\n## otdrift\n\n```text\n{}\n```\n",
        root.render_long_help().to_string().trim_end()
    ));
    for sub in root.get_subcommands_mut() {
        let name = sub.get_name().to_owned();
        if name == "help" {
            continue;
        }
        let help = sub.render_long_help().to_string();
        out.push_str(&format!(
            "\n## otdrift {name}\n\n```text\n{}\n```\n",
            help.trim_end()
        ));
    }
    // clap pads blank lines inside a help text; Markdown files keep no trailing spaces.
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    /// `docs/reference/cli.md` is what the code prints (with the simulators, as documented).
    #[cfg(feature = "sim")]
    #[test]
    fn cli_reference_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/cli.md");
        let now = super::reference();
        if std::env::var_os("OTDRIFT_BLESS").is_some() {
            std::fs::write(&path, &now).expect("write docs/reference/cli.md");
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            written == now,
            "docs/reference/cli.md is out of date: run OTDRIFT_BLESS=1 cargo test -p otdrift --lib cli_reference"
        );
    }
}
