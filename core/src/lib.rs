//! otdrift's shared vocabulary.
//!
//! Every other crate speaks in these terms: a controller's state is a [`Snapshot`] of
//! [`Item`]s, each with a path, a [`Class`] and a typed [`Value`]; the [canonical
//! encoding](encoding) turns a snapshot into bytes that are the same on every machine, and
//! [`Digest`]s of those bytes are the controller's signature. A [`Diff`] says which items
//! differ between two snapshots.
//!
//! This crate depends on nothing else of otdrift's and does no I/O, so the encoding and the
//! digests can be checked by anyone (an auditor's tool, a central system) without the agent.

pub mod clock;
pub mod diff;
pub mod digest;
pub mod encoding;
pub mod envelope;
pub mod item;
pub mod snapshot;
pub mod value;

pub use clock::{Clock, ManualClock, SystemClock, format_timestamp, parse_timestamp};
pub use diff::{Change, ChangeKind, Diff, Severity};
pub use digest::{Digest, DigestParseError};
pub use encoding::{DecodeError, ENCODING_VERSION};
pub use envelope::{Adjustment, Bound, BoundError, Envelope, Judged, Literal};
pub use item::{Class, Item, ItemError, path_matches};
pub use snapshot::{Snapshot, SnapshotDigests};
pub use value::Value;
