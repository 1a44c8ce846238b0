//! What most commands need first: the config, checked, and the store, open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use otdrift_config::{AssetConfig, Config};
use otdrift_core::{Digest, SystemClock};
use otdrift_store::Store;

use crate::exit::Failure;

/// The database file inside `data_dir`.
pub const DB_FILE: &str = "otdrift.db";

/// Loads and validates the config; every error is listed, and the failure exits 2.
pub fn load_config(path: &Path) -> Result<(Config, Digest), Failure> {
    let config = otdrift_config::load(path).map_err(|errors| {
        Failure::usage(anyhow!(
            "{} in {}:\n{errors}",
            plural(errors.0.len(), "config error"),
            path.display()
        ))
    })?;
    // The digest of the file as read, for the audit log's config-change entries.
    let digest = std::fs::read(path)
        .map(|bytes| Digest::of(&bytes))
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failure::usage)?;
    Ok((config, digest))
}

/// "1 config error", "3 config errors".
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Opens the store in `data_dir`, creating the directory (owner-only) if needed.
pub fn open_store(data_dir: &Path) -> Result<Store, Failure> {
    create_private_dir(data_dir).map_err(Failure::runtime)?;
    let path: PathBuf = data_dir.join(DB_FILE);
    Store::open(&path, Arc::new(SystemClock)).map_err(|e| {
        let text = e.to_string();
        if text.contains("unable to open") || text.contains("readonly") {
            // The usual cause on a gateway: the data dir belongs to the service user.
            Failure::runtime(anyhow!(e).context(format!(
                "cannot write to {}; on an installed gateway run this as the agent's user: sudo -u otdrift otdrift ...",
                data_dir.display()
            )))
        } else {
            Failure::runtime(anyhow!(e))
        }
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create data_dir {}", dir.display()))
}

/// The public key the audit log last recorded for this agent (`agent.key_created`, then every
/// `agent.key_rotated`), `None` for a database without history.
pub fn recorded_agent_key(store: &Store) -> Result<Option<String>, Failure> {
    let entries = store
        .audit_entries_of_kind(&["agent.key_created", "agent.key_rotated"])
        .map_err(|e| Failure::runtime(anyhow!(e).context("cannot read the agent key's history")))?;
    Ok(entries.last().and_then(|e| {
        serde_json::from_str::<serde_json::Value>(&e.body)
            .ok()?
            .get("public_key")?
            .as_str()
            .map(str::to_owned)
    }))
}

/// The config, the store and the agent's identity key, ready; the config's change (if any)
/// already audited.
pub struct Agent {
    /// The validated config.
    pub config: Config,
    /// The open store.
    pub store: Store,
    /// The agent's own Ed25519 key (signs evidence packs), made on first start.
    pub key: ed25519_dalek::SigningKey,
}

impl Agent {
    /// Loads the config from `path` and opens its store.
    pub fn open(path: &Path) -> Result<Self, Failure> {
        let (config, digest) = load_config(path)?;
        Self::with_config(config, &digest)
    }

    /// Opens the store for an already loaded config.
    pub fn with_config(config: Config, config_digest: &Digest) -> Result<Self, Failure> {
        let mut store = open_store(&config.agent.data_dir)?;
        // Every event written by this process (a technician's capture too) keeps the cap.
        store.set_max_event_bytes(
            config
                .upstream
                .as_ref()
                .map_or(otdrift_config::DEFAULT_MAX_EVENT_BYTES, |u| {
                    u.max_event_bytes
                }),
        );
        store
            .note_config(&config.path.display().to_string(), config_digest)
            .map_err(|e| Failure::runtime(anyhow!(e).context("cannot record the config")))?;
        let recorded = recorded_agent_key(&store)?;
        let (key, created) = crate::keys::agent_key(&config.agent.data_dir, recorded.as_deref())
            .map_err(|e| Failure::runtime(e.context("cannot load the agent key")))?;
        if created {
            let public = crate::keys::public_key_text(&key.verifying_key());
            store
                .audit_append(
                    "agent.key_created",
                    None,
                    &serde_json::json!({"agent": config.agent.id, "public_key": public}),
                )
                .map_err(|e| Failure::runtime(anyhow!(e).context("cannot record the agent key")))?;
            tracing::info!(public_key = %public, "agent identity key created");
        }
        Ok(Agent { config, store, key })
    }

    /// The agent's public key, `ed25519:...`.
    pub fn public_key(&self) -> String {
        crate::keys::public_key_text(&self.key.verifying_key())
    }

    /// The asset with this id, or a usage error that lists the configured ones.
    pub fn asset(&self, id: &str) -> Result<&AssetConfig, Failure> {
        self.config.asset(id).ok_or_else(|| {
            let known: Vec<&str> = self.config.assets.iter().map(|a| a.id.as_str()).collect();
            Failure::usage(anyhow!(
                "no asset {id:?} in {} (configured: {})",
                self.config.path.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}
