//! Ed25519 key files.
//!
//! - A private key is a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`), the form OpenSSL,
//!   Python's `cryptography` and most JWT libraries read and write, so an approver's key made
//!   by `otdrift keygen` works in their change system and the other way round. A file holding
//!   the 32-byte seed as 64 hex digits is also read (the interoperability vectors use it).
//! - A public key is written `ed25519:<standard base64 of the 32 bytes>`, as in the config.
//! - The agent's own identity key, which signs evidence packs, lives in `data_dir/agent.key`
//!   (mode 0600) and is made on first start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// The agent key's file name inside `data_dir`.
pub const AGENT_KEY_FILE: &str = "agent.key";

/// The `ed25519:<base64>` text of a public key.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", STANDARD.encode(key.to_bytes()))
}

/// Parses `ed25519:<base64>` into a public key.
pub fn parse_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let b64 = text
        .trim()
        .strip_prefix("ed25519:")
        .ok_or_else(|| anyhow!("a public key starts with \"ed25519:\""))?;
    let bytes = STANDARD
        .decode(b64)
        .context("the public key is not standard base64")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow!("an Ed25519 public key has 32 bytes, not {}", b.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow!("not a valid Ed25519 public key: {e}"))
}

/// A new key from the operating system's random source.
pub fn generate() -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a private key file (PKCS#8 PEM, or a 64-hex-digit seed).
pub fn read_private_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    parse_private_key(&text).with_context(|| format!("{} holds no usable key", path.display()))
}

/// Parses a private key (PKCS#8 PEM, or a 64-hex-digit seed).
pub fn parse_private_key(text: &str) -> anyhow::Result<SigningKey> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        return SigningKey::from_pkcs8_pem(trimmed)
            .map_err(|e| anyhow!("not an Ed25519 PKCS#8 private key: {e}"));
    }
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut seed = [0u8; 32];
        for (i, slot) in seed.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&trimmed[2 * i..2 * i + 2], 16)
                .map_err(|e| anyhow!("bad hex in the seed: {e}"))?;
        }
        return Ok(SigningKey::from_bytes(&seed));
    }
    bail!("expected a PKCS#8 PEM private key or a 64-hex-digit Ed25519 seed")
}

/// Writes `contents` to a new file readable only by its owner; refuses to overwrite.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Writes `PREFIX.key` (PKCS#8 PEM, mode 0600) and `PREFIX.pub` (`ed25519:<base64>`).
pub fn write_pair(prefix: &Path, key: &SigningKey) -> anyhow::Result<(PathBuf, PathBuf)> {
    let private = with_suffix(prefix, "key");
    let public = with_suffix(prefix, "pub");
    if public.exists() {
        bail!("{} already exists; not overwriting a key", public.display());
    }
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| anyhow!("cannot encode the key: {e}"))?;
    write_private(&private, pem.as_bytes())?;
    std::fs::write(
        &public,
        format!("{}\n", public_key_text(&key.verifying_key())),
    )
    .with_context(|| format!("cannot write {}", public.display()))?;
    Ok((private, public))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Where a rotation leaves the new key until the database has recorded it.
pub const AGENT_KEY_NEW_FILE: &str = "agent.key.new";

/// A short, stable name of a public key for JWS `kid` headers and logs:
/// `otdrift-agent:` + the first 16 hex digits of the BLAKE3 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = otdrift_core::Digest::of(&key.to_bytes()).hex();
    format!("otdrift-agent:{}", &digest[..16])
}

/// Loads the agent's identity key from `data_dir`. `recorded` is the public key the
/// database's audit log last recorded for this agent (`agent.key_created` or
/// `agent.key_rotated`), `None` for a database without history.
///
/// The key is made on first start only. Once the database holds history, a missing or
/// different key file is refused: the evidence packs and audit heads already signed name the
/// recorded key, and a silently new key would let anyone with write access to `data_dir`
/// re-sign history. The operator restores the key from the backup, or replaces it on purpose
/// with `otdrift agent-key rotate`. A rotation interrupted between recording the new key and
/// renaming its file is completed here. Returns the key and whether it was just created.
pub fn agent_key(data_dir: &Path, recorded: Option<&str>) -> anyhow::Result<(SigningKey, bool)> {
    let path = data_dir.join(AGENT_KEY_FILE);
    let pending = data_dir.join(AGENT_KEY_NEW_FILE);
    if rotation_interrupted(&pending, recorded)? {
        std::fs::rename(&pending, &path).with_context(|| {
            format!(
                "cannot finish the key rotation: rename {} to {}",
                pending.display(),
                path.display()
            )
        })?;
        tracing::info!("finished an interrupted agent key rotation");
    }
    if path.exists() {
        let key = existing_key(&path, recorded)?;
        return Ok((key, false));
    }
    if let Some(recorded) = recorded {
        return Err(missing_key(&path, recorded));
    }
    let key = generate()?;
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| anyhow!("cannot encode the agent key: {e}"))?;
    write_private(&path, pem.as_bytes())?;
    Ok((key, true))
}

/// Checks, without creating, renaming or writing anything, that [`agent_key`] would load a
/// key: the same refusals (group- or world-readable, unreadable, another key than the
/// recorded one, missing for a database with history), for `otdrift check-config`.
pub fn check_agent_key(data_dir: &Path, recorded: Option<&str>) -> anyhow::Result<()> {
    let path = data_dir.join(AGENT_KEY_FILE);
    let pending = data_dir.join(AGENT_KEY_NEW_FILE);
    if rotation_interrupted(&pending, recorded)? {
        // `run` finishes this interrupted rotation by renaming the file.
        return Ok(());
    }
    if path.exists() {
        existing_key(&path, recorded)?;
        return Ok(());
    }
    if let Some(recorded) = recorded {
        return Err(missing_key(&path, recorded));
    }
    Ok(())
}

/// Whether `pending` (`agent.key.new`, owner-only) holds the key the database already records:
/// a rotation interrupted between recording the new key and renaming its file.
fn rotation_interrupted(pending: &Path, recorded: Option<&str>) -> anyhow::Result<bool> {
    let Some(recorded) = recorded else {
        return Ok(false);
    };
    if !pending.exists() {
        return Ok(false);
    }
    check_private_mode(pending)?;
    let new = read_private_key(pending)?;
    Ok(public_key_text(&new.verifying_key()) == recorded)
}

/// Reads the agent key at `path` (owner-only), refusing another key than the one the
/// database's history is signed by.
fn existing_key(path: &Path, recorded: Option<&str>) -> anyhow::Result<SigningKey> {
    check_private_mode(path)?;
    let key = read_private_key(path)?;
    if let Some(recorded) = recorded {
        let actual = public_key_text(&key.verifying_key());
        if actual != recorded {
            bail!(
                "{} holds the key {actual}, but this database's history is signed by {recorded}: \
                 put the agent.key back from the backup that holds it (README: Backup and \
                 restore); a key is replaced on purpose with `otdrift agent-key rotate`, never by \
                 swapping the file",
                path.display()
            );
        }
    }
    Ok(key)
}

/// The refusal when the agent key is gone but the database's history is signed by one.
fn missing_key(path: &Path, recorded: &str) -> anyhow::Error {
    anyhow!(
        "the agent key {} is missing, but this database's history is signed by {recorded}: \
         restore agent.key from the backup made with `otdrift backup` (README: Backup and \
         restore). otdrift will not make a new key for a database with history; if the key is \
         lost for good, keep this data_dir as evidence and start the gateway on a new, empty one",
        path.display()
    )
}

/// Writes a new agent key as `agent.key.new` (mode 0600), the first step of a rotation.
pub fn write_pending_agent_key(data_dir: &Path, key: &SigningKey) -> anyhow::Result<PathBuf> {
    let pending = data_dir.join(AGENT_KEY_NEW_FILE);
    if pending.exists() {
        bail!(
            "{} exists: a rotation was interrupted before the database recorded it; remove the file and rotate again",
            pending.display()
        );
    }
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| anyhow!("cannot encode the agent key: {e}"))?;
    write_private(&pending, pem.as_bytes())?;
    Ok(pending)
}

/// Replaces `agent.key` with `agent.key.new` (after the database recorded the new key).
pub fn commit_pending_agent_key(data_dir: &Path) -> anyhow::Result<()> {
    let pending = data_dir.join(AGENT_KEY_NEW_FILE);
    let path = data_dir.join(AGENT_KEY_FILE);
    std::fs::rename(&pending, &path)
        .with_context(|| format!("cannot rename {} to {}", pending.display(), path.display()))?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Refuses a private key file that others can read: a leaked agent key lets anyone forge
/// evidence packs.
fn check_private_mode(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by group or others (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_files_round_trip_with_owner_only_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = generate().expect("key");
        let (private, public) = write_pair(&dir.path().join("approver"), &key).expect("written");
        assert_eq!(
            private.file_name().and_then(|n| n.to_str()),
            Some("approver.key")
        );
        let back = read_private_key(&private).expect("read back");
        assert_eq!(back.to_bytes(), key.to_bytes());
        let pub_text = std::fs::read_to_string(&public).expect("pub");
        assert_eq!(
            parse_public_key(&pub_text).expect("parses"),
            key.verifying_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            write_pair(&dir.path().join("approver"), &key).is_err(),
            "no overwrite"
        );
    }

    #[test]
    fn the_vector_seed_gives_the_vector_public_key() {
        let seed = "cc09c4501f16992fb146ac60d01cb907bfb199b54a9499036eb8f45d993c9b4f";
        let key = parse_private_key(seed).expect("seed");
        assert_eq!(
            public_key_text(&key.verifying_key()),
            "ed25519:IhJ+t2OkRcIcvk4nCuPIixMdwD4nAmeo1wEyASvupw0="
        );
    }

    #[test]
    fn the_agent_key_is_made_once_and_guarded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, created) = agent_key(dir.path(), None).expect("made");
        assert!(created);
        let (second, created) = agent_key(dir.path(), None).expect("loaded");
        assert!(!created);
        assert_eq!(first.to_bytes(), second.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(AGENT_KEY_FILE);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = agent_key(dir.path(), None).expect_err("world-readable key refused");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }
}
