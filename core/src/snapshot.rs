//! Snapshots: the set of items one capture found.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::encoding::{self, DecodeError};
use crate::item::{Class, Item};

/// The items of one capture, keyed by path.
///
/// Items are held in path order from the start, so no collector can make the encoding depend
/// on the order a device answered in.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    items: BTreeMap<String, Item>,
    /// The digests, computed once: hashing a large snapshot is the heaviest step of
    /// recording it, so the agent computes them before it takes the store's lock, and the
    /// store's calls find them ready. Cleared by every change to the items.
    digests: OnceLock<SnapshotDigests>,
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl Eq for Snapshot {}

/// A path was captured twice; a collector bug, reported rather than silently overwritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item path {0:?} appears twice in one capture")]
pub struct DuplicatePath(pub String);

/// The digests of one snapshot: its signature and one digest per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDigests {
    /// The signature: BLAKE3 of the whole canonical encoding.
    pub overall: Digest,
    /// Identity items only.
    pub identity: Digest,
    /// Program items only.
    pub program: Digest,
    /// Setpoint items only.
    pub setpoint: Digest,
    /// History items only (change counters, audit values, download times).
    pub history: Digest,
    /// The change signature: content items only (program and setpoint).
    pub content: Digest,
}

impl SnapshotDigests {
    /// The digest of one class.
    pub fn class(&self, class: Class) -> Digest {
        match class {
            Class::Identity => self.identity,
            Class::Program => self.program,
            Class::Setpoint => self.setpoint,
            Class::History => self.history,
        }
    }
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Snapshot::default()
    }

    /// Builds a snapshot from items in any order.
    pub fn from_items(items: impl IntoIterator<Item = Item>) -> Result<Self, DuplicatePath> {
        let mut snapshot = Snapshot::new();
        for item in items {
            snapshot.insert(item)?;
        }
        Ok(snapshot)
    }

    /// Adds an item; a path already present is an error.
    pub fn insert(&mut self, item: Item) -> Result<(), DuplicatePath> {
        match self.items.entry(item.path().to_owned()) {
            std::collections::btree_map::Entry::Occupied(e) => Err(DuplicatePath(e.key().clone())),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(item);
                self.digests = OnceLock::new();
                Ok(())
            }
        }
    }

    /// Adds an item, replacing any item at the same path; for tests and mutations.
    pub fn replace(&mut self, item: Item) -> Option<Item> {
        self.digests = OnceLock::new();
        self.items.insert(item.path().to_owned(), item)
    }

    /// Removes the item at `path`.
    pub fn remove(&mut self, path: &str) -> Option<Item> {
        self.digests = OnceLock::new();
        self.items.remove(path)
    }

    /// The item at `path`.
    pub fn get(&self, path: &str) -> Option<&Item> {
        self.items.get(path)
    }

    /// All items in canonical (path) order.
    pub fn items(&self) -> impl ExactSizeIterator<Item = &Item> + DoubleEndedIterator {
        self.items.values()
    }

    /// The items of one class, in path order.
    pub fn items_of(&self, class: Class) -> impl Iterator<Item = &Item> {
        self.items.values().filter(move |i| i.class() == class)
    }

    /// How many items the snapshot holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the snapshot holds no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The canonical encoding (see [`crate::encoding`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encoding::write_snapshot(&mut out, self.items.values());
        out
    }

    /// Decodes a canonical encoding, refusing anything the encoder would not have written.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        encoding::read_snapshot(bytes)
    }

    /// The signature: BLAKE3 of the canonical encoding.
    pub fn digest(&self) -> Digest {
        self.digests().overall
    }

    /// The digest of one class's items, encoded as a snapshot of their own.
    pub fn class_digest(&self, class: Class) -> Digest {
        let items: Vec<&Item> = self.items_of(class).collect();
        let mut out = Vec::new();
        encoding::write_snapshot(&mut out, items.into_iter());
        Digest::of(&out)
    }

    /// The change signature: the digest of the content items (program and setpoint),
    /// encoded as a snapshot of their own.
    pub fn content_digest(&self) -> Digest {
        self.digests().content
    }

    /// The signature, the class digests and the change signature (computed once).
    pub fn digests(&self) -> SnapshotDigests {
        *self.digests.get_or_init(|| {
            // Every poll hashes its capture: one encoding pass serves all six digests.
            let [overall, identity, program, setpoint, history, content] = encoding::subset_digests(
                self.items.values(),
                [
                    |_| true,
                    |c| c == Class::Identity,
                    |c| c == Class::Program,
                    |c| c == Class::Setpoint,
                    |c| c == Class::History,
                    Class::is_content,
                ],
            );
            SnapshotDigests {
                overall,
                identity,
                program,
                setpoint,
                history,
                content,
            }
        })
    }
}
