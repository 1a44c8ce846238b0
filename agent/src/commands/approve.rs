//! `otdrift keygen`, `otdrift sign-approval`, `otdrift approve`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use chrono::{TimeDelta, Utc};
use otdrift_core::{Digest, format_timestamp};
use serde_json::json;

use crate::approval::{self, Kind, Outcome};
use crate::context::Agent;
use crate::exit::{CmdResult, Exit, Failure};
use crate::keys;
use crate::render;

/// Writes a new key pair.
pub fn keygen(prefix: &Path) -> CmdResult {
    let key = keys::generate().map_err(Failure::runtime)?;
    let (private, public) = keys::write_pair(prefix, &key).map_err(Failure::usage)?;
    println!(
        "wrote {} (private, mode 0600) and {}\npublic key: {}\nadd it to the agent's config as\n  [[approver]]\n  id = \"<approver id>\"\n  public_key = \"{}\"",
        private.display(),
        public.display(),
        keys::public_key_text(&key.verifying_key()),
        keys::public_key_text(&key.verifying_key())
    );
    Ok(Exit::Ok)
}

/// What `sign-approval` was asked to sign.
pub struct SignArgs {
    /// Private key file.
    pub key: PathBuf,
    /// Asset id.
    pub asset: String,
    /// Change ticket.
    pub change: String,
    /// Approved state.
    pub to: String,
    /// Starting state.
    pub from: Option<String>,
    /// Approving person.
    pub approver: Option<String>,
    /// Requesting person.
    pub requestor: Option<String>,
    /// Change kind.
    pub kind: Kind,
    /// Validity, e.g. `24h`.
    pub valid: String,
    /// Approver id.
    pub kid: Option<String>,
    /// When the approval was given (RFC 3339).
    pub issued_at: Option<String>,
    /// Token id.
    pub jti: Option<String>,
    /// Output file.
    pub out: Option<PathBuf>,
}

/// Parses `90s`, `30m`, `24h`, `7d`.
pub fn parse_validity(text: &str) -> Result<TimeDelta, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: use s, m, h or d (e.g. 24h)"))?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use s, m, h or d"
            ));
        }
    };
    if seconds <= 0 || seconds > 366 * 86_400 {
        return Err(format!("{text:?}: a validity between 1s and 366d"));
    }
    Ok(TimeDelta::seconds(seconds))
}

/// Mints an approval token.
pub fn sign(config_path: &Path, args: &SignArgs) -> CmdResult {
    let key = keys::read_private_key(&args.key).map_err(Failure::usage)?;
    let to: Digest = args
        .to
        .parse()
        .map_err(|e| Failure::usage(anyhow!("--to {:?}: {e}", args.to)))?;
    let from: Option<Digest> = args
        .from
        .as_deref()
        .map(|f| {
            f.parse()
                .map_err(|e| Failure::usage(anyhow!("--from {f:?}: {e}")))
        })
        .transpose()?;
    let validity = parse_validity(&args.valid).map_err(|e| Failure::usage(anyhow!(e)))?;
    let kid = match &args.kid {
        Some(kid) => kid.clone(),
        None => {
            // The approver whose configured public key is this key's public half.
            let public = key.verifying_key().to_bytes();
            let config = otdrift_config::load(config_path).map_err(|e| {
                Failure::usage(anyhow!(
                    "give --kid, or a valid config listing this key as an [[approver]]: {e}"
                ))
            })?;
            config
                .approvers
                .iter()
                .find(|a| a.public_key == public)
                .map(|a| a.id.clone())
                .ok_or_else(|| {
                    Failure::usage(anyhow!(
                        "no [[approver]] in {} has the public key {}; give --kid",
                        config_path.display(),
                        keys::public_key_text(&key.verifying_key())
                    ))
                })?
        }
    };
    let approver = args.approver.clone().unwrap_or_else(|| kid.clone());
    if let Some(requestor) = &args.requestor
        && requestor.trim().eq_ignore_ascii_case(approver.trim())
    {
        return Err(Failure::usage(anyhow!(
            "the requestor ({requestor}) cannot approve their own change"
        )));
    }
    let now = match &args.issued_at {
        Some(text) => otdrift_core::parse_timestamp(text)
            .map_err(|e| Failure::usage(anyhow!("--issued-at {text:?}: {e}")))?,
        None => Utc::now(),
    };
    let mut claims = json!({
        "iss": kid,
        "sub": args.asset,
        "jti": args.jti.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": (now + validity).timestamp(),
        "change_id": args.change,
        "to": to,
        "approver": approver,
        "kind": args.kind.as_str(),
    });
    if let Some(from) = from {
        claims["from"] = json!(from);
    }
    if let Some(requestor) = &args.requestor {
        claims["requestor"] = json!(requestor);
    }
    let token = approval::token::sign(&claims, &kid, &key);
    match &args.out {
        Some(path) => {
            std::fs::write(path, format!("{token}\n"))
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Failure::runtime)?;
            eprintln!(
                "wrote an approval for change {} on {} (to {to}), valid until {}, to {}",
                args.change,
                args.asset,
                format_timestamp(now + validity),
                path.display()
            );
        }
        None => println!("{token}"),
    }
    Ok(Exit::Ok)
}

fn read_token(source: &str) -> Result<String, Failure> {
    let limit = approval::token::MAX_TOKEN_LEN as u64 + 1;
    let mut text = String::new();
    if source == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .context("cannot read the token from stdin")
            .map_err(Failure::usage)?;
    } else {
        std::fs::File::open(source)
            .and_then(|f| f.take(limit).read_to_string(&mut text))
            .with_context(|| format!("cannot read the token file {source}"))
            .map_err(Failure::usage)?;
    }
    Ok(text)
}

/// Submits a token; exit 0 when applied or pending, 4 when rejected.
pub fn approve(config_path: &Path, source: &str, json: bool) -> CmdResult {
    let raw = read_token(source)?;
    let mut agent = Agent::open(config_path)?;
    let outcome = approval::submit(&agent.config, &mut agent.store, &raw)
        .map_err(|e| Failure::runtime(anyhow!(e).context("cannot record the approval")))?;
    match outcome {
        Outcome::Applied { token, applied } => {
            let c = &token.claims;
            let drift = applied.drift.as_ref().map(|d| d.id);
            if json {
                render::print_json(&json!({
                    "status": "applied",
                    "asset": c.sub,
                    "change_id": c.change_id,
                    "kind": c.kind.as_str(),
                    "approver_id": c.iss,
                    "approver": c.approver,
                    "requestor": c.requestor,
                    "baseline": {
                        "digest": applied.baseline.digest,
                        "previous": applied.previous.as_ref().map(|b| b.digest),
                        "provisional": false,
                    },
                    "drift_id": drift,
                    "retroactive": applied.approval.retroactive,
                }));
            } else {
                println!(
                    "approved: change {} ({}) for {}\n  requested by {}, approved by {} (key {})",
                    c.change_id,
                    c.kind.as_str(),
                    c.sub,
                    c.requestor.as_deref().unwrap_or("(not named)"),
                    c.approver.as_deref().unwrap_or(&c.iss),
                    c.iss,
                );
                match &applied.previous {
                    Some(p) if p.digest == applied.baseline.digest => println!(
                        "  baseline {} approved (it was {})",
                        applied.baseline.digest,
                        if p.provisional {
                            "provisional"
                        } else {
                            "already approved"
                        }
                    ),
                    Some(p) => println!(
                        "  baseline moved: {} -> {}",
                        p.digest, applied.baseline.digest
                    ),
                    None => println!("  baseline set: {}", applied.baseline.digest),
                }
                if let Some(id) = drift {
                    println!("  drift #{id} approved");
                }
                if applied.approval.retroactive {
                    println!(
                        "  note: this approval was issued after the state was already running on the asset{}",
                        if c.kind == Kind::Emergency {
                            " (permitted for an emergency change)"
                        } else {
                            "; only an emergency change may be approved after implementation, and the evidence pack flags it"
                        }
                    );
                }
            }
            Ok(Exit::Ok)
        }
        Outcome::Pending { token, approval } => {
            let c = &token.claims;
            if json {
                render::print_json(&json!({
                    "status": "pending",
                    "asset": c.sub,
                    "change_id": c.change_id,
                    "kind": c.kind.as_str(),
                    "to": c.to,
                    "expires_at": format_timestamp(approval.expires_at),
                }));
            } else {
                println!(
                    "pending: change {} for {} is approved but not observed yet\n  the baseline moves to {} when a capture sees that state (until {})",
                    c.change_id,
                    c.sub,
                    c.to,
                    format_timestamp(approval.expires_at)
                );
            }
            Ok(Exit::Ok)
        }
        Outcome::Rejected { code, message } => {
            if json {
                render::print_json(&json!({
                    "status": "rejected",
                    "reason": code,
                    "message": message,
                }));
            }
            eprintln!("approval rejected ({code}): {message}");
            Ok(Exit::Rejected)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_validity;

    #[test]
    fn validity_units() {
        assert_eq!(parse_validity("90s").map(|d| d.num_seconds()), Ok(90));
        assert_eq!(parse_validity("24h").map(|d| d.num_seconds()), Ok(86_400));
        assert_eq!(parse_validity("7d").map(|d| d.num_seconds()), Ok(604_800));
        assert!(parse_validity("24").is_err());
        assert!(parse_validity("0h").is_err());
        assert!(parse_validity("5y").is_err());
    }
}
