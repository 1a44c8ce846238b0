//! Item-level differences between two snapshots.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::item::{Class, Item};
use crate::snapshot::Snapshot;
use crate::value::Value;

/// How an item differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Present only in the newer snapshot.
    Added,
    /// Present only in the older snapshot.
    Removed,
    /// Present in both with a different value or class.
    Changed,
}

impl ChangeKind {
    /// The kind's name, as events and `--json` output spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One item that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The item's path.
    pub path: String,
    /// The item's class (the newer one when an item changed class).
    pub class: Class,
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// The value before; `None` when added.
    pub before: Option<Value>,
    /// The value after; `None` when removed.
    pub after: Option<Value>,
}

/// How much a drift matters to the people who get the alert.
///
/// Identity and program changes (a swapped CPU, new firmware, a changed block) rank above
/// setpoint changes because they change what the machine is, not how it is tuned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Only setpoints changed.
    Medium,
    /// Program or identity items changed.
    High,
}

impl Severity {
    /// The severity a change of this class carries.
    pub const fn of(class: Class) -> Self {
        match class {
            Class::Setpoint => Severity::Medium,
            Class::Program | Class::Identity | Class::History => Severity::High,
        }
    }

    /// The severity's name, as in JSON and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            other => Err(format!("unknown severity {other:?}")),
        }
    }
}

/// The item-level difference from one snapshot to another, in path order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Every item that was added, removed or changed.
    pub changes: Vec<Change>,
}

impl Diff {
    /// Compares two snapshots with one ordered walk over both (they are kept in path order).
    pub fn between(before: &Snapshot, after: &Snapshot) -> Self {
        let mut changes = Vec::new();
        let mut old = before.items().peekable();
        let mut new = after.items().peekable();
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.path().cmp(b.path()),
            };
            match order {
                Ordering::Less => {
                    if let Some(a) = old.next() {
                        changes.push(removed(a));
                    }
                }
                Ordering::Greater => {
                    if let Some(b) = new.next() {
                        changes.push(added(b));
                    }
                }
                Ordering::Equal => {
                    if let (Some(a), Some(b)) = (old.next(), new.next())
                        && a != b
                    {
                        changes.push(Change {
                            path: b.path().to_owned(),
                            class: b.class(),
                            kind: ChangeKind::Changed,
                            before: Some(a.value().clone()),
                            after: Some(b.value().clone()),
                        });
                    }
                }
            }
        }
        Diff { changes }
    }

    /// The changes of content items (program and setpoint classes): what a change delivers.
    pub fn content_changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.class.is_content())
    }

    /// The digest of the content changes, in the diff encoding of [`crate::encoding`]: what an
    /// approver signs as `diff` to prove which changes they reviewed. Device facts and history
    /// (serial numbers, change counters) are left out, so the diff reviewed on a staging
    /// controller is the diff production will show.
    pub fn content_digest(&self) -> crate::Digest {
        let changes: Vec<(&str, Option<&Value>, Option<&Value>)> = self
            .content_changes()
            .map(|c| (c.path.as_str(), c.before.as_ref(), c.after.as_ref()))
            .collect();
        let mut out = Vec::new();
        crate::encoding::write_diff(&mut out, changes.into_iter());
        crate::Digest::of(&out)
    }

    /// Whether the snapshots are the same.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The highest severity among the changes; `None` when nothing changed.
    pub fn severity(&self) -> Option<Severity> {
        self.changes.iter().map(|c| Severity::of(c.class)).max()
    }

    /// How many changes fall in each class, in [`Class::ALL`] order.
    pub fn counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for change in &self.changes {
            let slot = match change.class {
                Class::Identity => 0,
                Class::Program => 1,
                Class::Setpoint => 2,
                Class::History => 3,
            };
            counts[slot] += 1;
        }
        counts
    }
}

fn removed(item: &Item) -> Change {
    Change {
        path: item.path().to_owned(),
        class: item.class(),
        kind: ChangeKind::Removed,
        before: Some(item.value().clone()),
        after: None,
    }
}

fn added(item: &Item) -> Change {
    Change {
        path: item.path().to_owned(),
        class: item.class(),
        kind: ChangeKind::Added,
        before: None,
        after: Some(item.value().clone()),
    }
}
