//! The `otdrift` binary: command line, daemon and demo.
//!
//! This is the only crate that knows the command line, JSON output shapes and (later) HTTP.
//! Errors are `anyhow` here and only here, printed with their whole cause chain, and mapped to
//! the exit codes of SPEC.md.

mod capture;
mod cli;
mod commands;
mod context;
mod exit;
mod render;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, LogFormat};
use crate::exit::Failure;

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("OTDRIFT_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(cli.command, Command::Sim { .. });
    init_logging(cli.log_format, if long_running { "info" } else { "warn" });

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_the_specs() {
        use crate::exit::Exit;
        assert_eq!(Exit::Ok.code(), 0);
        assert_eq!(Exit::Drift.code(), 3);
        assert_eq!(Exit::VerificationFailed.code(), 5);
    }
}
