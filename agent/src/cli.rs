//! The command line of SPEC.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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

/// The simulated PLCs `otdrift sim` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimProtocol {
    /// Modbus TCP.
    Modbus,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run simulators and the agent together and tell the whole story; needs no config.
    Demo,
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
    /// Check the audit log's hash chain (exit 5 on a break).
    AuditVerify {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Run a simulated PLC for test rigs.
    Sim {
        /// Which protocol to simulate.
        #[arg(value_enum)]
        protocol: SimProtocol,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:5020")]
        listen: SocketAddr,
        /// The state file (default: the built-in demo press).
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

impl PhaseArg {
    /// The store's phase.
    pub fn to_phase(self) -> otdrift_store::Phase {
        match self {
            PhaseArg::Before => otdrift_store::Phase::Before,
            PhaseArg::After => otdrift_store::Phase::After,
        }
    }
}
