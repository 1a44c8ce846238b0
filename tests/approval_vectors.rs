//! The approval-token vectors made by an independent implementation (PyJWT + cryptography):
//! each gives the outcome its README names, at the verification layer, and `valid.jwt` is
//! refused the second time it is submitted (replay).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::TimeDelta;
use otdrift::approval::token::{Kind, VerifyContext, verify};
use otdrift::approval::{self, Outcome};
use otdrift_core::{ManualClock, parse_timestamp};
use otdrift_store::Store;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/approval")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(vectors().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn config() -> otdrift_config::Config {
    let text = format!(
        r#"
[agent]
id = "gw-vectors"
data_dir = "/tmp/otdrift-vectors-unused"
# The vectors are valid for ten years (2026-11-18 .. 2036-11-11); this agent's default cap of
# 30 days would refuse them (see `the_default_lifetime_cap_refuses_the_ten_year_vectors`).
max_token_lifetime = "3660d"

[[approver]]
id = "plant-eng-mgr"
public_key = "{}"

[[asset]]
id = "press-7"
protocol = "modbus"
address = "127.0.0.1:502"
"#,
        read("approver.pub").trim()
    );
    otdrift_config::parse(&text, Path::new("vectors.toml")).expect("vector config")
}

/// 2026-12-02: inside the good tokens' window (2026-11-18 .. 2036-11-11).
fn now() -> chrono::DateTime<chrono::Utc> {
    parse_timestamp("2026-12-02T12:00:00Z").expect("timestamp")
}

fn outcome(name: &str) -> Result<otdrift::approval::VerifiedToken, &'static str> {
    let config = config();
    let known = |id: &str| config.asset(id).is_some();
    let cx = VerifyContext {
        approvers: &config.approvers,
        asset_known: &known,
        now: now(),
        skew: TimeDelta::seconds(60),
        max_lifetime: TimeDelta::from_std(config.agent.max_token_lifetime).expect("lifetime"),
    };
    verify(&read(name), &cx).map_err(|r| r.code())
}

#[test]
fn valid_tokens_are_accepted() {
    for name in ["valid.jwt", "valid-emergency.jwt", "valid-no-from.jwt"] {
        let token = outcome(name).unwrap_or_else(|code| panic!("{name} refused: {code}"));
        assert_eq!(token.claims.iss, "plant-eng-mgr");
        assert_eq!(token.claims.sub, "press-7");
        assert_eq!(
            token.claims.to.map(|d| d.to_string()).unwrap_or_default(),
            "blake3:0a4c31b163bd004dc41e8e6cd327a88bed4a0d4021516ea1fa833745bffe035b"
        );
    }
    let emergency = outcome("valid-emergency.jwt").expect("accepted");
    assert_eq!(emergency.claims.kind, Kind::Emergency);
    assert_eq!(emergency.claims.change_id, "CHG-1043");
    assert!(
        outcome("valid-no-from.jwt")
            .expect("accepted")
            .claims
            .from
            .is_none()
    );
    assert_eq!(
        outcome("valid.jwt")
            .expect("accepted")
            .claims
            .from
            .map(|d| d.to_string())
            .as_deref(),
        Some("blake3:9fd0f68fa6f037a18e0b08cf61ac7bee9838cf4d674daaf1abe97f4ac9fcac7f")
    );
}

#[test]
fn every_bad_token_is_refused_for_the_readme_reason() {
    let expected = [
        ("expired.jwt", "expired"),
        ("not-yet-valid.jwt", "not-yet-valid"),
        ("bad-signature.jwt", "signature"),
        ("tampered-claims.jwt", "signature"),
        ("wrong-key.jwt", "signature"),
        ("unknown-kid.jwt", "unknown-approver"),
        ("iss-kid-mismatch.jwt", "issuer-mismatch"),
        ("self-approved.jwt", "self-approved"),
        ("missing-to.jwt", "missing-claim"),
        ("bad-digest.jwt", "bad-digest"),
        ("alg-hs256-raw.jwt", "algorithm"),
        ("alg-hs256-text.jwt", "algorithm"),
        ("alg-none.jwt", "algorithm"),
        ("garbage.jwt", "malformed"),
    ];
    for (name, code) in expected {
        match outcome(name) {
            Ok(_) => panic!("{name} was accepted"),
            Err(got) => assert_eq!(got, code, "{name}"),
        }
    }
    // The README lists 16 refusals in 15 files plus 3 accepted; nothing is left untested.
    let files = std::fs::read_dir(vectors())
        .expect("vectors")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "jwt"))
        .count();
    assert_eq!(files, expected.len() + 3);
}

#[test]
fn the_missing_claim_and_the_bad_digest_are_named() {
    let config = config();
    let known = |id: &str| config.asset(id).is_some();
    let cx = VerifyContext {
        approvers: &config.approvers,
        asset_known: &known,
        now: now(),
        skew: TimeDelta::seconds(60),
        max_lifetime: TimeDelta::from_std(config.agent.max_token_lifetime).expect("lifetime"),
    };
    let missing = verify(&read("missing-to.jwt"), &cx).expect_err("refused");
    assert_eq!(missing.to_string(), "the token has no `to` claim");
    let digest = verify(&read("bad-digest.jwt"), &cx).expect_err("refused");
    assert!(
        digest.to_string().contains("`to` is not a blake3 digest"),
        "{digest}"
    );
    let alg = verify(&read("alg-hs256-raw.jwt"), &cx).expect_err("refused");
    assert!(alg.to_string().contains("HS256"), "{alg}");
}

/// The independent vectors are valid for ten years. With this agent's default
/// `max_token_lifetime` (30 days) the same tokens are refused for their lifetime, whatever
/// else is right with them: a pre-approval that waits for years is how a stale approval rolls
/// a plant back.
#[test]
fn the_default_lifetime_cap_refuses_the_ten_year_vectors() {
    let config = config();
    let known = |id: &str| config.asset(id).is_some();
    let cx = VerifyContext {
        approvers: &config.approvers,
        asset_known: &known,
        now: now(),
        skew: TimeDelta::seconds(60),
        max_lifetime: TimeDelta::days(30),
    };
    for name in ["valid.jwt", "valid-emergency.jwt", "valid-no-from.jwt"] {
        let refused = verify(&read(name), &cx).expect_err("a ten-year token");
        assert_eq!(refused.code(), "lifetime", "{name}");
        assert!(refused.to_string().contains("30d"), "{refused}");
    }
}

#[test]
fn valid_jwt_is_refused_the_second_time() {
    let config = config();
    let clock = Arc::new(ManualClock::new(now()));
    let mut store = Store::open_in_memory(clock).expect("store");
    let token = read("valid.jwt");
    let first =
        approval::submit(&config, &mut store, &token, approval::COMMAND_LINE).expect("submitted");
    // It verifies; what it does then depends on the asset (here it has no baseline for
    // `from` to match), and either way its jti is now spent.
    match first {
        Outcome::Rejected { ref code, .. } => assert_eq!(code, "from-mismatch"),
        Outcome::Pending { .. }
        | Outcome::Applied { .. }
        | Outcome::Withdrawn { .. }
        | Outcome::Reviewed { .. } => {}
        Outcome::Assets { .. } => panic!("the vector names one asset"),
    }
    let second =
        approval::submit(&config, &mut store, &token, approval::COMMAND_LINE).expect("submitted");
    let Outcome::Rejected { code, message } = second else {
        panic!("a replayed token was not refused");
    };
    assert_eq!(code, "replay");
    assert!(message.contains("vec-valid-0001"), "{message}");

    // A token without `from` is held as pending until the asset shows its `to`.
    let no_from = approval::submit(
        &config,
        &mut store,
        &read("valid-no-from.jwt"),
        approval::COMMAND_LINE,
    )
    .expect("submitted");
    assert!(matches!(no_from, Outcome::Pending { .. }), "{no_from:?}");

    // Every refusal is in the audit log and the outbox.
    let rejected = store
        .events_after(0, 100)
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == otdrift_store::event_type::APPROVAL_REJECTED)
        .count();
    assert_eq!(rejected, 2);
    assert_eq!(store.audit_verify().expect("verify").first_break, None);
}

/// The vectors are kept byte for byte as their independent makers wrote them:
/// `tests/vectors/approval/BLAKE3SUMS` pins every file, so an edit here is a decision, not an
/// accident.
#[test]
fn the_vectors_are_the_independent_makers_bytes() {
    let sums = std::fs::read_to_string(vectors().join("BLAKE3SUMS")).expect("BLAKE3SUMS");
    let mut pinned = Vec::new();
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").expect("`digest  name` lines");
        let bytes = std::fs::read(vectors().join(name)).expect("a pinned vector");
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            digest,
            "{name} is not the vector its maker wrote"
        );
        pinned.push(name.to_owned());
    }
    let mut present: Vec<String> = std::fs::read_dir(vectors())
        .expect("vectors")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "BLAKE3SUMS")
        .collect();
    present.sort();
    pinned.sort();
    assert_eq!(present, pinned, "every vector is pinned, and only those");
}
