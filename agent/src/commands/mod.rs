//! One module per subcommand.

mod agent_key;
mod approve;
mod audit;
mod capture;
mod check_config;
#[cfg(feature = "sim")]
mod demo;
mod evidence;
mod inspect;
mod outbox;
#[cfg(feature = "sim")]
mod sim;

use crate::cli::{Cli, Command};
use crate::exit::CmdResult;

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> CmdResult {
    let config = cli.config;
    match cli.command {
        #[cfg(feature = "sim")]
        Command::Demo => demo::run().await,
        Command::Run => crate::daemon::run(&config).await,
        Command::CheckConfig { json } => check_config::run(&config, json),
        Command::Capture {
            asset,
            change,
            phase,
            json,
        } => {
            let change = change.zip(phase.map(|p| p.to_phase()));
            capture::run(&config, &asset, change, json).await
        }
        Command::Status { json } => inspect::status(&config, json),
        Command::Drift { asset, open, json } => inspect::drift(&config, asset, open, json),
        Command::Diff {
            asset,
            from,
            to,
            json,
        } => inspect::diff(&config, &asset, from.as_deref(), to.as_deref(), json),
        Command::AuditVerify { json } => audit::verify(&config, json),
        Command::Outbox {
            parked,
            all,
            retry,
            retry_all,
            json,
        } => {
            let action = match (retry, retry_all, parked) {
                (Some(seq), _, _) => outbox::Action::Retry(otdrift_store::RetryTarget::Seq(seq)),
                (None, true, _) => outbox::Action::Retry(otdrift_store::RetryTarget::All),
                (None, false, true) => outbox::Action::Parked { all },
                (None, false, false) => outbox::Action::Status,
            };
            outbox::run(&config, action, json)
        }
        Command::Backup { out } => audit::backup(&config, &out),
        Command::Maintenance {
            asset,
            duration,
            reason,
            end,
        } => inspect::maintenance(&config, &asset, duration.as_deref(), &reason, end),
        Command::AgentKey { action } => match action {
            crate::cli::AgentKeyAction::Show { json } => agent_key::show(&config, json),
            crate::cli::AgentKeyAction::Rotate { json } => agent_key::rotate(&config, json),
        },
        Command::Keygen { out } => approve::keygen(&out),
        Command::SignApproval(args) => approve::sign(&config, &args),
        Command::Approve { token, json } => approve::approve(&config, &token, json),
        Command::Evidence { change, out } => evidence::write(&config, &change, &out),
        Command::Report { format, out, since } => {
            evidence::report(&config, &format, out.as_deref(), &since)
        }
        Command::EvidenceVerify {
            file,
            agent_key,
            agent_key_file,
            trust_embedded_key,
            json,
        } => {
            let source = match (agent_key, agent_key_file, trust_embedded_key) {
                (Some(key), _, _) => evidence::KeySource::Key(key),
                (None, Some(file), _) => evidence::KeySource::File(file),
                (None, None, true) => evidence::KeySource::Embedded,
                (None, None, false) => evidence::KeySource::None,
            };
            evidence::verify(&file, &source, json)
        }
        #[cfg(feature = "sim")]
        Command::Sim {
            protocol,
            listen,
            state,
            request_log,
            control,
        } => sim::run(protocol, listen, state, request_log, control).await,
    }
}
