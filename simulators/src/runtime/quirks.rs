//! Quirks, one type for every simulator: which of a protocol's quirks are on, and the
//! arguments of those that take one. The same set is filled by the state file's `[quirks]`
//! table and by the `quirk NAME on|off [ARGS]` command, through the same protocol hook
//! ([`Protocol::quirk_on`](super::Protocol::quirk_on)), so the two cannot disagree.

use std::collections::BTreeMap;
use std::fmt;

/// A protocol's quirk names (its `Quirk` enum).
pub trait QuirkName: Copy + Ord + fmt::Debug + Send + Sync + 'static {
    /// Every quirk, in the order `help` lists them.
    const ALL: &'static [Self];

    /// The name in the `quirk` command; the state file's key is the same, or with `_` for
    /// `-`.
    fn name(self) -> &'static str;

    /// Looks a quirk up by its command name or state-file key (`_` for `-`, any case).
    #[must_use]
    fn parse(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase().replace('_', "-");
        Self::ALL.iter().copied().find(|q| q.name() == name)
    }
}

/// The quirks in force: each on, with the arguments it was switched on with (an error code,
/// a tag and a status: whatever the protocol's quirk takes; `A = ()` for protocols whose
/// quirks take none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuirkSet<Q: Ord, A = ()> {
    on: BTreeMap<Q, Vec<A>>,
}

impl<Q: Ord, A> Default for QuirkSet<Q, A> {
    fn default() -> Self {
        QuirkSet {
            on: BTreeMap::new(),
        }
    }
}

impl<Q: QuirkName, A> QuirkSet<Q, A> {
    /// Whether `quirk` is on.
    #[must_use]
    pub fn get(&self, quirk: Q) -> bool {
        self.on.contains_key(&quirk)
    }

    /// Switches `quirk` on (keeping its arguments) or off (forgetting them).
    pub fn set(&mut self, quirk: Q, on: bool) {
        if on {
            self.on.entry(quirk).or_default();
        } else {
            self.on.remove(&quirk);
        }
    }

    /// Switches `quirk` on with one more argument.
    pub fn push(&mut self, quirk: Q, arg: A) {
        self.on.entry(quirk).or_default().push(arg);
    }

    /// Switches `quirk` on with this argument only.
    pub fn replace(&mut self, quirk: Q, arg: A) {
        self.on.insert(quirk, vec![arg]);
    }

    /// The arguments of `quirk` (none when it is off or takes none).
    #[must_use]
    pub fn args(&self, quirk: Q) -> &[A] {
        self.on.get(&quirk).map_or(&[], Vec::as_slice)
    }

    /// The last argument of `quirk`, if it is on with one.
    #[must_use]
    pub fn arg(&self, quirk: Q) -> Option<&A> {
        self.args(quirk).last()
    }

    /// `{"name":true|false,...}` for every quirk, by name: the `quirk` command's listing.
    #[must_use]
    pub fn listing(&self) -> String {
        let map: BTreeMap<&str, bool> = Q::ALL.iter().map(|q| (q.name(), self.get(*q))).collect();
        serde_json::to_string(&map).unwrap_or_default()
    }
}

/// Reads a state file's `[quirks]` table into its quirks and their values: every key a quirk
/// name (`-` or `_`), every value `true`/`false` or the quirk's argument (what the protocol
/// takes there: [`Protocol::file_arg`](super::Protocol::file_arg)).
///
/// # Errors
/// An unknown quirk.
pub fn from_table<Q: QuirkName>(
    table: &BTreeMap<String, toml::Value>,
) -> Result<Vec<(Q, &toml::Value)>, String> {
    table
        .iter()
        .map(|(key, value)| {
            let quirk = Q::parse(key).ok_or_else(|| {
                let names: Vec<&str> = Q::ALL.iter().map(|q| q.name()).collect();
                format!(
                    "unknown quirk {key:?}: an unknown field in [quirks]; one of {}",
                    names.join(", ")
                )
            })?;
            Ok((quirk, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Q {
        Stall,
        RefuseAll,
    }

    impl QuirkName for Q {
        const ALL: &'static [Q] = &[Q::Stall, Q::RefuseAll];
        fn name(self) -> &'static str {
            match self {
                Q::Stall => "stall",
                Q::RefuseAll => "refuse-all",
            }
        }
    }

    #[test]
    fn a_quirk_is_on_with_its_arguments_and_off_without_them() {
        let mut set: QuirkSet<Q, u8> = QuirkSet::default();
        assert!(!set.get(Q::Stall));
        set.set(Q::Stall, true);
        set.push(Q::RefuseAll, 5);
        set.push(Q::RefuseAll, 8);
        assert_eq!(set.args(Q::RefuseAll), &[5, 8]);
        assert_eq!(set.arg(Q::RefuseAll), Some(&8));
        set.replace(Q::RefuseAll, 2);
        assert_eq!(set.args(Q::RefuseAll), &[2]);
        set.set(Q::RefuseAll, false);
        assert!(set.args(Q::RefuseAll).is_empty() && !set.get(Q::RefuseAll));
        assert_eq!(set.listing(), r#"{"refuse-all":false,"stall":true}"#);
        assert_eq!(Q::parse("REFUSE_ALL"), Some(Q::RefuseAll));
    }

    #[test]
    fn the_state_file_names_quirks_like_the_command() {
        let table: BTreeMap<String, toml::Value> =
            toml::from_str("stall = true\nrefuse_all = 5\n").expect("toml");
        let entries = from_table::<Q>(&table).expect("known quirks");
        assert_eq!(
            entries,
            vec![
                (Q::RefuseAll, &toml::Value::Integer(5)),
                (Q::Stall, &toml::Value::Boolean(true)),
            ]
        );
        let table: BTreeMap<String, toml::Value> = toml::from_str("flying = true").expect("toml");
        let err = from_table::<Q>(&table).expect_err("unknown");
        assert!(
            err.contains("unknown quirk") && err.contains("unknown field"),
            "{err}"
        );
    }
}
