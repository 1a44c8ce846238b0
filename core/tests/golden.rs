//! Encoding version 1 pinned byte for byte.
//!
//! A digest recorded today must be reproducible by every later build that claims encoding
//! version 1; if this test fails, the change broke every stored baseline and approval token.

use std::collections::BTreeMap;

use expect_test::expect;
use otdrift_core::{Class, Item, Snapshot, Value};

fn sample() -> Snapshot {
    let mut recipe = BTreeMap::new();
    recipe.insert("temp".to_owned(), Value::F32(72.5));
    recipe.insert("enabled".to_owned(), Value::Bool(true));
    Snapshot::from_items([
        Item::new("modbus/holding/40", Class::Setpoint, Value::UInt(1234)).expect("valid"),
        Item::new("id/vendor", Class::Identity, Value::Text("ACME".into())).expect("valid"),
        Item::new("prog/OB1", Class::Program, Value::Bytes(vec![0xca, 0xfe])).expect("valid"),
        Item::new("set/recipe", Class::Setpoint, Value::Map(recipe)).expect("valid"),
        Item::new("set/nan", Class::Setpoint, Value::F64(-f64::NAN)).expect("valid"),
        Item::new("set/neg", Class::Setpoint, Value::Int(-2)).expect("valid"),
        Item::new(
            "id/serial",
            Class::Identity,
            Value::unavailable("refused (0x8104)"),
        )
        .expect("valid"),
        Item::new(
            "prog/list",
            Class::Program,
            Value::List(vec![Value::Null, Value::F32(-0.0)]),
        )
        .expect("valid"),
    ])
    .expect("unique paths")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn version_1_bytes_are_pinned() {
    expect!["4f5444524946540001000000080000000969642f73657269616c010a00000010726566757365642028307838313034290000000969642f76656e646f7201060000000441434d45000000116d6f646275732f686f6c64696e672f3430030300000000000004d20000000870726f672f4f4231020700000002cafe0000000970726f672f6c697374020800000002000400000000000000077365742f6e616e03057ff8000000000000000000077365742f6e65670302fffffffffffffffe0000000a7365742f72656369706503090000000200000007656e61626c656401010000000474656d700442910000"].assert_eq(&hex(&sample().encode()));
}

#[test]
fn version_1_digests_are_pinned() {
    let s = sample();
    let d = s.digests();
    expect!["blake3:c3bc9081ee815bd31cdbf82005394a5ba3cfe8d9630c0a09a7f84b81424db5cc"]
        .assert_eq(&d.overall.to_string());
    expect!["blake3:b39d77285b0870a0956edaeaf530258cfa9f3c0b0ef9e9f3176e63d8940d908a"]
        .assert_eq(&d.identity.to_string());
    expect!["blake3:8bb3b6b3969debdb86ab3f109258007147bf07935e16bed2ceeef028be7c9dbe"]
        .assert_eq(&d.program.to_string());
    expect!["blake3:c5f465b76f6ec317d0f73496b8632f7023bd7ec368e9b651d98b2497ca09305a"]
        .assert_eq(&d.setpoint.to_string());
    let item = s.get("modbus/holding/40").expect("present");
    expect!["blake3:bfe5f55521b9e2a4be3110110b6b6be469ccb848399eec3708c7df80cdeec116"]
        .assert_eq(&item.digest().to_string());
}

/// The history class (0x04) and the change signature: content items only, so a serial number
/// or a change counter never moves it. Checked against an independent BLAKE3 (Python's
/// `blake3`) over the bytes pinned here.
#[test]
fn history_and_the_change_signature_are_pinned() {
    let mut s = sample();
    s.replace(Item::new("hist/changes", Class::History, Value::UInt(7)).expect("valid"));
    let bytes = s.encode();
    let history_item = hex(&s.get("hist/changes").expect("present").encode());
    expect!["0000000c686973742f6368616e67657304030000000000000007"].assert_eq(&history_item);
    assert!(hex(&bytes).contains(&history_item));
    let d = s.digests();
    expect!["blake3:c5f465b76f6ec317d0f73496b8632f7023bd7ec368e9b651d98b2497ca09305a"]
        .assert_eq(&d.setpoint.to_string());
    let content_before = d.content;
    // Device facts and history move the signature, never the change signature.
    s.replace(Item::new("hist/changes", Class::History, Value::UInt(8)).expect("valid"));
    s.replace(Item::new("id/vendor", Class::Identity, Value::Text("OTHER".into())).expect("valid"));
    assert_ne!(s.digests().overall, d.overall);
    assert_eq!(s.digests().content, content_before);
    expect!["blake3:4607e50a8bee38d31db6722ca73e0426103d5186463d4f4404aef2341f95f90e"]
        .assert_eq(&content_before.to_string());
}

/// The diff encoding (what `diff` claims in approval tokens sign): content changes only.
#[test]
fn the_content_diff_encoding_is_pinned() {
    let before = sample();
    let mut after = sample();
    after.replace(
        Item::new("modbus/holding/40", Class::Setpoint, Value::UInt(1300)).expect("valid"),
    );
    after.replace(Item::new("prog/OB2", Class::Program, Value::Bytes(vec![1])).expect("valid"));
    after.replace(
        Item::new("id/vendor", Class::Identity, Value::Text("OTHER".into())).expect("valid"),
    );
    let diff = otdrift_core::Diff::between(&before, &after);
    assert_eq!(diff.changes.len(), 3);
    assert_eq!(diff.content_changes().count(), 2);
    expect!["blake3:6648102a29db2312deefbbc8ef5565a71ed7ea26febe77bb503a5259778d14c0"]
        .assert_eq(&diff.content_digest().to_string());
}
