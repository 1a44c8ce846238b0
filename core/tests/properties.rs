//! Properties the canonical encoding and the diff must keep for any snapshot.

use std::collections::BTreeMap;

use otdrift_core::{ChangeKind, Class, Diff, Item, Snapshot, Value};
use proptest::prelude::*;
use proptest::sample::Index;

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Identity),
        Just(Class::Program),
        Just(Class::Setpoint)
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        ".{0,12}".prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        "[a-z ]{0,12}".prop_map(Value::Unavailable),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::btree_map(".{0,6}", inner, 0..4).prop_map(Value::Map),
        ]
    })
}

/// Items with unique paths, in arbitrary order.
fn items() -> impl Strategy<Value = Vec<Item>> {
    proptest::collection::btree_map(
        "[a-z]{1,3}(/[a-zA-Z0-9.:]{1,6}){0,2}",
        (class(), value()),
        1..24,
    )
    .prop_map(|m: BTreeMap<String, (Class, Value)>| {
        m.into_iter()
            .map(|(path, (class, value))| {
                Item::new(path, class, value).expect("generated paths are valid")
            })
            .collect()
    })
    .prop_shuffle()
}

/// A value guaranteed to differ from `v` under canonical equality.
fn different(v: &Value) -> Value {
    match v {
        Value::UInt(n) => Value::UInt(n.wrapping_add(1)),
        Value::Text(t) => Value::Text(format!("{t}!")),
        _ => Value::UInt(7),
    }
}

proptest! {
    /// The one-pass digests are the BLAKE3 of each subset's own canonical encoding.
    #[test]
    fn every_digest_hashes_its_subsets_encoding(items in items()) {
        let all = Snapshot::from_items(items.clone()).expect("unique paths");
        let subset = |keep: fn(Class) -> bool| {
            let kept = items.iter().filter(|i| keep(i.class())).cloned();
            let s = Snapshot::from_items(kept).expect("unique paths");
            otdrift_core::Digest::from_bytes(*blake3::hash(&s.encode()).as_bytes())
        };
        let d = all.digests();
        prop_assert_eq!(d.overall, otdrift_core::Digest::from_bytes(*blake3::hash(&all.encode()).as_bytes()));
        prop_assert_eq!(d.identity, subset(|c| c == Class::Identity));
        prop_assert_eq!(d.program, subset(|c| c == Class::Program));
        prop_assert_eq!(d.setpoint, subset(|c| c == Class::Setpoint));
        prop_assert_eq!(d.history, subset(|c| c == Class::History));
        prop_assert_eq!(d.content, subset(Class::is_content));
    }

    #[test]
    fn encoding_is_independent_of_insertion_order(items in items(), seed in any::<u64>()) {
        let forward = Snapshot::from_items(items.clone()).expect("unique paths");
        let mut shuffled = items;
        // A deterministic permutation driven by the seed.
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = usize::try_from(seed.rotate_left(u32::try_from(i % 64).unwrap_or(0)) % (i as u64 + 1)).unwrap_or(0);
            shuffled.swap(i, j);
        }
        shuffled.reverse();
        let backward = Snapshot::from_items(shuffled).expect("unique paths");
        prop_assert_eq!(forward.encode(), backward.encode());
        prop_assert_eq!(forward.digests(), backward.digests());
    }

    #[test]
    fn any_single_item_change_changes_the_signature_and_shows_alone(items in items(), pick in any::<Index>()) {
        let before = Snapshot::from_items(items.clone()).expect("unique paths");
        let target = pick.get(&items);
        let mut after = before.clone();
        let changed = Item::new(target.path(), target.class(), different(target.value())).expect("valid");
        after.replace(changed);

        prop_assert_ne!(before.digest(), after.digest());
        prop_assert_ne!(before.class_digest(target.class()), after.class_digest(target.class()));
        for other in Class::ALL.into_iter().filter(|c| *c != target.class()) {
            prop_assert_eq!(before.class_digest(other), after.class_digest(other));
        }
        let diff = Diff::between(&before, &after);
        prop_assert_eq!(diff.changes.len(), 1);
        prop_assert_eq!(&diff.changes[0].path, target.path());
        prop_assert_eq!(diff.changes[0].kind, ChangeKind::Changed);
        prop_assert_eq!(diff.changes[0].before.as_ref(), Some(target.value()));
    }

    #[test]
    fn removing_or_adding_one_item_shows_alone(items in items(), pick in any::<Index>()) {
        let full = Snapshot::from_items(items.clone()).expect("unique paths");
        let target = pick.get(&items);
        let mut less = full.clone();
        less.remove(target.path());
        prop_assert_ne!(full.digest(), less.digest());

        let removed = Diff::between(&full, &less);
        prop_assert_eq!(removed.changes.len(), 1);
        prop_assert_eq!(removed.changes[0].kind, ChangeKind::Removed);
        prop_assert_eq!(&removed.changes[0].path, target.path());

        let added = Diff::between(&less, &full);
        prop_assert_eq!(added.changes.len(), 1);
        prop_assert_eq!(added.changes[0].kind, ChangeKind::Added);
        prop_assert_eq!(added.changes[0].after.as_ref(), Some(target.value()));
    }

    #[test]
    fn encode_decode_round_trips(items in items()) {
        let snapshot = Snapshot::from_items(items).expect("unique paths");
        let bytes = snapshot.encode();
        let decoded = Snapshot::decode(&bytes).expect("own encoding decodes");
        prop_assert_eq!(&decoded, &snapshot);
        prop_assert_eq!(decoded.encode(), bytes);
        prop_assert!(Diff::between(&snapshot, &decoded).is_empty());
    }

    #[test]
    fn decoding_hostile_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Snapshot::decode(&bytes);
        let mut prefixed = b"OTDRIFT\0\x01".to_vec();
        prefixed.extend_from_slice(&bytes);
        if let Ok(s) = Snapshot::decode(&prefixed) {
            // Whatever the strict decoder accepts is canonical.
            prop_assert_eq!(s.encode(), prefixed);
        }
    }

    #[test]
    fn flipping_any_byte_is_refused_or_changes_the_signature(items in items(), pick in any::<Index>(), flip in 1u8..=255) {
        let snapshot = Snapshot::from_items(items).expect("unique paths");
        let mut bytes = snapshot.encode();
        let at = pick.index(bytes.len());
        bytes[at] ^= flip;
        if let Ok(other) = Snapshot::decode(&bytes) {
            prop_assert_ne!(other.digest(), snapshot.digest());
        }
    }
}
