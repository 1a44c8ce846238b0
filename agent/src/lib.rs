//! The `otdrift` agent: command line, approvals, evidence packs, demo, and (later) the daemon.
//!
//! This is the only crate that knows the command line, JSON output shapes and HTTP. Errors are
//! `anyhow` here and only here, printed with their whole cause chain, and mapped to the exit
//! codes of `docs/reference/cli.md`. The binary (`src/main.rs`) only parses arguments and calls [`run`].

pub mod approval;
pub mod audit_head;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod context;
pub mod daemon;
pub mod events;
pub mod evidence;
pub mod exit;
pub mod keys;
pub mod maintenance;
pub mod preflight;
pub mod render;
pub mod report;
pub mod rules;
pub mod strict_json;

use crate::cli::{Cli, LogFormat};
use crate::exit::Failure;

fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    // async-opcua's client warns about its normal operation (an empty endpoint list in a config we connect without,
    // "Transport disconnected: Good" on every orderly close): noise for an operator. The
    // collectors report real failures themselves, naming the asset. OTDRIFT_LOG overrides.
    let filter = EnvFilter::try_from_env("OTDRIFT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},opcua_client=error")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The runtime's worker threads (see [`run`]).
const WORKER_THREADS: usize = 1;

/// The most blocking threads the runtime starts.
const BLOCKING_THREADS: usize = 8;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let long_running = cli.command.is_long_running();
    init_logging(cli.log_format, if long_running { "info" } else { "warn" });

    // One worker thread: polling is waiting on sockets, and a second worker mostly wakes the
    // first and steals its tasks (500 Modbus assets on a 10 s cycle, daemon_scale: 0.19-0.25 ms
    // of CPU per quiet poll with one worker, 0.28-0.31 ms with one per core). Work that would
    // hold the worker runs on blocking threads: SQLite (one writer behind a lock, one
    // reader), hashing of large snapshots and file I/O; a handful is all they can use, and
    // each idle one keeps a stack and a malloc arena for seconds (tokio's default allows 512).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(exit) => exit.code(),
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            code
        }
    }
}

#[cfg(test)]
mod reference_check;
