//! `otdrift keygen`, `otdrift sign-approval`, `otdrift approve`.

use std::io::Read as _;
use std::path::Path;

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

pub use crate::cli::SignArgs;

/// Parses a token's validity (`90s`, `30m`, `24h`, `7d`), the config's duration syntax.
pub fn parse_validity(text: &str) -> Result<TimeDelta, String> {
    let d = otdrift_config::parse_duration(text)?;
    if d.as_secs() == 0 || d.as_secs() > 3660 * 86_400 {
        return Err(format!("{text:?}: a validity between 1s and 3660d"));
    }
    TimeDelta::from_std(d).map_err(|e| format!("{text:?}: {e}"))
}

/// Mints an approval token.
pub fn sign(config_path: &Path, args: &SignArgs) -> CmdResult {
    let key = keys::read_private_key(&args.key).map_err(Failure::usage)?;
    let to: Option<Digest> = args
        .to
        .as_deref()
        .map(|t| {
            t.parse()
                .map_err(|e| Failure::usage(anyhow!("--to {t:?}: {e}")))
        })
        .transpose()?;
    let content: Option<Digest> = args
        .content
        .as_deref()
        .map(|t| {
            t.parse()
                .map_err(|e| Failure::usage(anyhow!("--content {t:?}: {e}")))
        })
        .transpose()?;
    let diff: Option<Digest> = args
        .diff
        .as_deref()
        .map(|t| {
            t.parse()
                .map_err(|e| Failure::usage(anyhow!("--diff {t:?}: {e}")))
        })
        .transpose()?;
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
        && (approval::names::same_person(requestor, &approver)
            || approval::names::same_person(requestor, &kid))
    {
        return Err(Failure::usage(anyhow!(
            "the requestor ({requestor}) cannot approve their own change"
        )));
    }
    let kind = if args.withdraw.is_some() {
        Kind::Withdraw
    } else {
        args.kind.to_kind()
    };
    if kind == Kind::Review && args.from.is_some() {
        return Err(Failure::usage(anyhow!("a review names no --from")));
    }
    if matches!(kind, Kind::Standard | Kind::Normal) && args.requestor.is_none() {
        return Err(Failure::usage(anyhow!(
            "a {} change needs --requestor (separation of duties); only an emergency change may name none",
            kind.as_str()
        )));
    }
    let now = match &args.issued_at {
        Some(text) => otdrift_core::parse_timestamp(text)
            .map_err(|e| Failure::usage(anyhow!("--issued-at {text:?}: {e}")))?,
        None => Utc::now(),
    };
    let mut claims = json!({
        "iss": kid,
        "sub": args.asset.as_deref().unwrap_or(approval::token::ALL_ASSETS),
        "jti": args.jti.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": (now + validity).timestamp(),
        "change_id": args.change,
        "approver": approver,
        "kind": kind.as_str(),
    });
    match (&to, &content, &args.withdraw) {
        (None, None, None) if !args.assets.is_empty() => {
            let mut list = serde_json::Map::new();
            for entry in &args.assets {
                let parsed = entry.split_once('=').and_then(|(asset, digest)| {
                    digest.parse::<Digest>().ok().map(|d| (asset.to_owned(), d))
                });
                let Some((asset, digest)) = parsed else {
                    return Err(Failure::usage(anyhow!(
                        "--assets {entry:?}: write ASSET=SIGNATURE (a blake3: digest)"
                    )));
                };
                if list.insert(asset.clone(), json!(digest)).is_some() {
                    return Err(Failure::usage(anyhow!("--assets names {asset:?} twice")));
                }
            }
            claims["assets"] = serde_json::Value::Object(list);
        }
        (Some(to), None, None) => claims["to"] = json!(to),
        (None, Some(content), None) => claims["content"] = json!(content),
        (None, None, Some(target)) => claims["withdraws"] = json!(target),
        _ => {
            return Err(Failure::usage(anyhow!(
                "give one of --to DIGEST, --content DIGEST or --withdraw JTI"
            )));
        }
    }
    if kind == Kind::Review && to.is_none() {
        return Err(Failure::usage(anyhow!(
            "a review names the state the emergency change applied: give --to DIGEST"
        )));
    }
    if let Some(diff) = diff {
        claims["diff"] = json!(diff);
    }
    if let Some(from) = from {
        claims["from"] = json!(from);
    }
    if let Some(requestor) = &args.requestor {
        claims["requestor"] = json!(requestor);
    }
    if !args.envelope.is_empty() {
        if !kind.approves() {
            return Err(Failure::usage(anyhow!(
                "--envelope belongs to an approval, not to a {} token",
                kind.as_str()
            )));
        }
        claims["envelope"] = envelope_claim(&args.envelope).map_err(Failure::usage)?;
    }
    let token = approval::token::sign(&claims, &kid, &key);
    match &args.out {
        Some(path) => {
            std::fs::write(path, format!("{token}\n"))
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Failure::runtime)?;
            let what = match (&to, &content, &args.withdraw) {
                (Some(to), _, _) if kind == Kind::Review => format!("a review (of {to})"),
                (Some(to), _, _) => format!("an approval (to {to})"),
                (None, Some(content), _) => format!("an approval (content {content})"),
                (None, None, None) => format!(
                    "an approval of a capture change on {} asset(s)",
                    args.assets.len()
                ),
                (None, None, target) => format!(
                    "a withdrawal of approval {}",
                    target.as_deref().unwrap_or_default()
                ),
            };
            eprintln!(
                "wrote {what} for change {} on {}, valid until {}, to {}",
                args.change,
                args.asset.as_deref().unwrap_or("the listed assets"),
                format_timestamp(now + validity),
                path.display()
            );
        }
        None => println!("{token}"),
    }
    Ok(Exit::Ok)
}

/// The `envelope` claim from `--envelope PATH=MIN..MAX` / `PATH=A|B|C` arguments (checked the
/// way the agent checks the claim, so a bad range fails here, not at the agent).
fn envelope_claim(args: &[String]) -> anyhow::Result<serde_json::Value> {
    let mut claim = serde_json::Map::new();
    for arg in args {
        let (path, bound) = arg
            .split_once('=')
            .ok_or_else(|| anyhow!("--envelope {arg:?}: write PATH=MIN..MAX or PATH=A|B|C"))?;
        let bound = match bound.split_once("..") {
            Some((min, max)) => {
                let number = |t: &str| {
                    t.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| anyhow!("--envelope {arg:?}: {t:?} is not a number"))
                };
                json!({"min": number(min)?, "max": number(max)?})
            }
            None => {
                let values: Vec<serde_json::Value> = bound
                    .split('|')
                    .map(|v| match v.trim() {
                        "true" => json!(true),
                        "false" => json!(false),
                        t => t
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite())
                            .map_or_else(|| json!(t), |n| json!(n)),
                    })
                    .collect();
                json!({"one_of": values})
            }
        };
        if claim.insert(path.to_owned(), bound).is_some() {
            return Err(anyhow!("--envelope names {path:?} twice"));
        }
    }
    let claim = serde_json::Value::Object(claim);
    let parsed = otdrift_store::envelope::parse(&claim).map_err(|e| anyhow!("--envelope {e}"))?;
    // Numbers written as the agent reads them back (5 rather than 5.0).
    Ok(otdrift_store::envelope::to_json(&parsed))
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
    let outcome = approval::submit(
        &agent.config,
        &mut agent.store,
        &raw,
        approval::COMMAND_LINE,
    )
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
                    "content": c.content,
                    "expires_at": format_timestamp(approval.expires_at),
                    "waiting_for": approval.reason,
                }));
            } else {
                println!(
                    "pending: change {} for {} is approved but not observed yet (or not recently)\n  the baseline moves to {} when a capture sees that state and the change policy is met (until {})",
                    c.change_id,
                    c.sub,
                    match (approval.to, approval.content) {
                        (Some(to), _) => to.to_string(),
                        (None, Some(content)) =>
                            format!("the state with change signature {content}"),
                        (None, None) => String::new(),
                    },
                    format_timestamp(approval.expires_at)
                );
                if let Some(reason) = &approval.reason {
                    println!("  {reason}");
                }
            }
            Ok(Exit::Ok)
        }
        Outcome::Reviewed { token, review } => {
            let c = &token.claims;
            let change = &review.change;
            if json {
                render::print_json(&json!({
                    "status": "reviewed",
                    "asset": c.sub,
                    "change_id": c.change_id,
                    "counted": review.counted,
                    "reviewers": review.reviewers,
                    "needed": change.review_approvals,
                    "change_status": change.status,
                }));
            } else {
                println!(
                    "review of change {} on {}: {} ({} of {} reviewer(s)); the change is {}",
                    c.change_id,
                    c.sub,
                    if review.counted {
                        "counted"
                    } else {
                        "recorded, not counted (the emergency's own approver, or without the reviewed diff)"
                    },
                    review.reviewers,
                    change.review_approvals,
                    change.status
                );
            }
            Ok(Exit::Ok)
        }
        Outcome::Withdrawn { token, approval } => {
            let c = &token.claims;
            if json {
                render::print_json(&json!({
                    "status": "withdrawn",
                    "asset": c.sub,
                    "change_id": c.change_id,
                    "withdrawn": approval.jti,
                    "approval_status": approval.status.as_str(),
                }));
            } else {
                println!(
                    "withdrawn: approval {:?} (change {}) for {} is refused and can no longer move the baseline",
                    approval.jti, approval.change_id, c.sub
                );
            }
            Ok(Exit::Ok)
        }
        Outcome::Assets { token, results } => {
            let rejected = results
                .iter()
                .any(|(_, o)| matches!(o, Outcome::Rejected { .. }));
            if json {
                render::print_json(&json!({
                    "status": "assets",
                    "change_id": token.claims.change_id,
                    "results": results
                        .iter()
                        .map(|(asset, o)| approval::asset_result_json(asset, o))
                        .collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "change {} for {} asset(s):",
                    token.claims.change_id,
                    results.len()
                );
                for (asset, o) in &results {
                    let line = match o {
                        Outcome::Applied { applied, .. } => {
                            format!("approved: baseline {}", applied.baseline.digest)
                        }
                        Outcome::Pending { .. } => {
                            "pending: applies when a capture sees the approved state".to_owned()
                        }
                        Outcome::Rejected { code, message } => {
                            format!("REJECTED ({code}): {message}")
                        }
                        _ => String::new(),
                    };
                    println!("  {asset}: {line}");
                }
            }
            Ok(if rejected { Exit::Rejected } else { Exit::Ok })
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
        assert!(parse_validity("5y").is_ok_and(|d| d.num_days() > 1800));
        assert!(parse_validity("20y").is_err());
    }
}
