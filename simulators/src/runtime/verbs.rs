//! The command language's verbs every simulator shares, dispatched once:
//!
//! | command | effect |
//! |---|---|
//! | `help` (or `?`) | the protocol's one-line summary |
//! | `tick [N]` | moves the process N times (1..=1000000, default 1) |
//! | `quirk` | `{"name":true\|false,...}` for every quirk |
//! | `quirk NAME on\|off [ARGS]` | switches a quirk (`on`/`true`/`1`, `off`/`false`/`0`); ARGS only for a quirk that takes them |
//! | `log` | `{"total":N,"writes":W,"<by>":{...}}` and what the protocol adds |
//! | `log clear` | resets the in-memory log and its counters |
//!
//! Verbs are matched ignoring case; blank lines and `#` comments do nothing. Every other verb
//! (`get`, `set`, and each protocol's own) goes to the protocol.

use super::{Commands, QuirkName, Shared};
use crate::control::CommandError;

/// The most ticks one `tick` command moves.
const MAX_TICKS: u64 = 1_000_000;

/// `usage: <text>` as a command error.
pub(crate) fn usage(text: &str) -> CommandError {
    CommandError::Usage(format!("usage: {text}"))
}

/// The first word of `text` and the rest, trimmed.
pub(crate) fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(at) => (
            text.get(..at).unwrap_or(text),
            text.get(at..).unwrap_or("").trim(),
        ),
        None => (text, ""),
    }
}

/// A number written decimal or `0x` hexadecimal, as every simulator's commands take them.
pub(crate) fn number<T: TryFrom<u64>>(text: &str, what: &str) -> Result<T, CommandError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse::<u64>().ok(),
    };
    parsed
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| CommandError::Usage(format!("bad {what} {text:?}")))
}

/// `on`/`off` (also `true`/`false`, `1`/`0`, any case).
pub(crate) fn on_off(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Some(true),
        "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Executes one command line.
pub(crate) fn execute<P: Commands>(shared: &Shared<P>, line: &str) -> Result<String, CommandError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(String::new());
    }
    let (word, rest) = split_word(line);
    let verb = word.to_ascii_lowercase();
    match verb.as_str() {
        "help" | "?" => Ok(P::HELP.to_owned()),
        "tick" => tick(shared, rest),
        "quirk" | "quirks" => quirk(shared, rest),
        "log" => log(shared, rest),
        _ => match P::command(shared, &verb, rest) {
            Err(CommandError::Unknown(_)) => Err(CommandError::Unknown(word.to_owned())),
            other => other,
        },
    }
}

fn tick<P: Commands>(shared: &Shared<P>, rest: &str) -> Result<String, CommandError> {
    let n: u64 = match rest {
        "" => 1,
        n => number(n, "tick count")
            .ok()
            .filter(|n| (1..=MAX_TICKS).contains(n))
            .ok_or_else(|| usage(&format!("tick [N] (1..={MAX_TICKS})")))?,
    };
    for _ in 0..n {
        P::tick(shared);
    }
    Ok(String::new())
}

fn quirk<P: Commands>(shared: &Shared<P>, rest: &str) -> Result<String, CommandError> {
    if rest.is_empty() {
        return Ok(P::quirks(&mut shared.lock_state()).listing());
    }
    let (name, rest) = split_word(rest);
    let (switch, args) = split_word(rest);
    let quirk = P::Quirk::parse(name).ok_or_else(|| {
        let names: Vec<&str> = P::Quirk::ALL.iter().map(|q| q.name()).collect();
        CommandError::Usage(format!(
            "unknown quirk {name:?}; one of {}",
            names.join(", ")
        ))
    })?;
    let on = on_off(switch).ok_or_else(|| usage("quirk NAME on|off"))?;
    {
        let mut state = shared.lock_state();
        match on {
            true => P::quirk_on(&mut state, quirk, args)?,
            false if args.is_empty() => P::quirks(&mut state).set(quirk, false),
            false => return Err(usage(&format!("quirk {} off", quirk.name()))),
        }
    }
    P::quirk_switched(shared, quirk, on);
    Ok(String::new())
}

fn log<P: Commands>(shared: &Shared<P>, rest: &str) -> Result<String, CommandError> {
    match rest {
        "" => Ok(format!(
            "{{\"total\":{},\"writes\":{}{}}}",
            shared.log().total(),
            shared.log().writes(),
            P::log_summary(shared)
        )),
        "clear" => {
            shared.log().clear();
            P::log_cleared(shared);
            Ok(String::new())
        }
        _ => Err(usage("log [clear]")),
    }
}

/// The `log` summary member counting requests by `key`: `,"<LOG_KEY>":{"<key>":n,...}`.
pub(crate) fn log_counts<P: Commands, K: serde::Serialize + Ord>(
    counts: std::collections::BTreeMap<K, usize>,
) -> String {
    format!(
        ",\"{}\":{}",
        P::LOG_KEY,
        serde_json::to_string(&counts).unwrap_or_default()
    )
}

/// Requests counted by their logged name (`read_szl`, `Browse`).
pub(crate) fn counts_by_name(
    log: &crate::request_log::RequestLog,
) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for entry in log.entries() {
        *out.entry(entry.name).or_insert(0) += 1;
    }
    out
}

/// Applies a state file's `[quirks]` table to `state`, through the same hook the `quirk`
/// command uses: `true` is `quirk NAME on`, `false` is `quirk NAME off`, another value is
/// `quirk NAME on ARG` (a list: once per element).
///
/// # Errors
/// An unknown quirk, or a value the quirk does not take.
pub(crate) fn apply_file_quirks<P: Commands>(
    state: &mut P::State,
    table: &std::collections::BTreeMap<String, toml::Value>,
) -> Result<(), String> {
    for (quirk, value) in super::quirks::from_table::<P::Quirk>(table)? {
        let fail = |e: &dyn std::fmt::Display| format!("quirk {}: {e}", quirk.name());
        let args: Vec<String> = match value {
            toml::Value::Boolean(false) => {
                P::quirks(state).set(quirk, false);
                continue;
            }
            toml::Value::Boolean(true) => vec![String::new()],
            toml::Value::Array(items) => items
                .iter()
                .map(|item| P::file_arg(quirk, item))
                .collect::<Result<_, _>>()
                .map_err(|e| fail(&e))?,
            other => vec![P::file_arg(quirk, other).map_err(|e| fail(&e))?],
        };
        for arg in args {
            P::quirk_on(state, quirk, &arg).map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}
