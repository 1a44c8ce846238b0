//! What a protocol module gives the framework ([`Module`]), the one [`Collector`]
//! implementation built from it, and the registry `build` and `setpoint_label` look
//! protocols up in.
//!
//! A module answers: which config is its own, how to make its collector, which setpoint a
//! path belongs to, where its [`Driver`] is, and how to read a capture and the identity. The
//! framework does the rest the same way for every protocol: the capture's span and timing,
//! fresh counters per capture, the whole-capture rerun of a session-level protocol
//! ([`Driver::may_rerun`]), charging the capture's memory lease, assembling the [`Capture`],
//! and closing.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use async_trait::async_trait;
use otdrift_config::{AssetConfig, Protocol, ProtocolConfig};
use otdrift_core::{Item, Snapshot, Value};
use tracing::Instrument;

use crate::budget::{ITEM_BYTES, Lease};
use crate::driver::{Driver, Link};
use crate::{Capture, CollectError, Collector};

/// What one capture observed, before it becomes a [`Capture`].
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// The hashed items.
    pub(crate) snapshot: Snapshot,
    /// Runtime facts: never hashed.
    pub(crate) runtime: BTreeMap<String, Value>,
    /// The controller's operating state: never hashed, compared from capture to capture.
    pub(crate) operating_state: BTreeMap<String, Value>,
}

/// One protocol module, as the framework sees it (implemented by the module's collector, in
/// its `mod.rs`).
pub(crate) trait Module: Send + Sized + 'static {
    /// The protocol.
    const PROTOCOL: Protocol;
    /// The protocol's settings in the config.
    type Config;
    /// The protocol's transport.
    type Link: Link;

    /// This protocol's settings, when the asset speaks it.
    fn config(protocol: &ProtocolConfig) -> Option<&Self::Config>;

    /// The collector for `asset`; nothing is sent until the first capture. `data_dir` is the
    /// agent's data directory, for collectors that keep state on disk.
    fn build(asset: &AssetConfig, cfg: &Self::Config, data_dir: &Path) -> Self;

    /// The name of the config's setpoint entry that covers an item path.
    fn setpoint_label(cfg: &Self::Config, path: &str) -> Option<String>;

    /// The version of what this collector reads from a device: bump it when a release reads
    /// more or differently (new identity facts, another item layout), so that every asset's
    /// next capture is drift with reason `capture_changed`, not a device change.
    const READER: u32;

    /// What the config asks this collector to capture, one line per fact (its setpoint areas
    /// and layouts, and the options that add or remove items), in any order: names for
    /// people, timeouts and credentials are left out, since they change no item.
    fn capture_spec(cfg: &Self::Config) -> Vec<String>;

    /// The fewest requests a capture of this asset sends, when the config alone says so
    /// (`check-config` compares it with `max_requests_per_sec` and `capture_timeout_ms`);
    /// `None` when it depends on what the device answers (its PDU size, its symbol table).
    fn planned_requests(_cfg: &Self::Config) -> Option<u64> {
        None
    }

    /// The collector's driver.
    fn driver(&self) -> &Driver<Self::Link>;

    /// The collector's driver, to send requests.
    fn driver_mut(&mut self) -> &mut Driver<Self::Link>;

    /// Reads everything the digest covers, and the facts that are not hashed.
    fn read(&mut self) -> impl Future<Output = Result<Observed, CollectError>> + Send;

    /// Reads only the identity items: who the controller is.
    fn read_identity(&mut self) -> impl Future<Output = Result<Vec<Item>, CollectError>> + Send;
}

#[async_trait]
impl<M: Module> Collector for M {
    fn asset(&self) -> &str {
        &self.driver().scope().asset
    }

    fn protocol(&self) -> Protocol {
        M::PROTOCOL
    }

    async fn identify(&mut self) -> Result<Vec<Item>, CollectError> {
        let span = tracing::info_span!(
            "identify",
            asset = %self.asset(),
            protocol = M::PROTOCOL.as_str()
        );
        self.read_identity().instrument(span).await
    }

    async fn capture_in(&mut self, lease: Lease) -> Result<Capture, CollectError> {
        let span = tracing::info_span!(
            "capture",
            asset = %self.asset(),
            protocol = M::PROTOCOL.as_str()
        );
        crate::timed_capture(span, async {
            self.driver_mut().begin(lease.meter());
            let pooled = self.driver().is_connected();
            let mut result = self.read().await;
            if result.is_err() && self.driver().may_rerun(pooled) {
                tracing::debug!("pooled session lost, capturing again on a fresh one");
                self.driver_mut().drop_connection();
                // What the lost attempt held is gone with it.
                self.driver().meter().release_all();
                result = self.read().await;
            }
            self.driver_mut().end();
            let observed = result?;
            // The items, once assembled, are charged too: they outlive the answers they came
            // from, through hashing, the diff and the store.
            let entries = observed
                .snapshot
                .len()
                .saturating_add(observed.runtime.len())
                .saturating_add(observed.operating_state.len());
            let bytes = u64::try_from(entries)
                .unwrap_or(u64::MAX)
                .saturating_mul(ITEM_BYTES);
            lease
                .charge(bytes)
                .await
                .map_err(|refusal| self.driver().scope().budget(ITEMS, refusal))?;
            Ok(Capture {
                snapshot: observed.snapshot,
                runtime: observed.runtime,
                operating_state: observed.operating_state,
                stats: self.driver().stats(),
                lease,
            })
        })
        .await
    }

    async fn close(&mut self) {
        self.driver_mut().close().await;
    }
}

/// The request a capture's item charge names when the memory budget refuses it.
const ITEMS: &str = "the captured items";

/// One compiled-in protocol, as the registry holds it.
pub(crate) struct Entry {
    build: fn(&AssetConfig, &Path) -> Option<Box<dyn Collector>>,
    setpoint_label: fn(&AssetConfig, &str) -> Option<String>,
    planned_requests: fn(&AssetConfig) -> Option<Option<u64>>,
    capture_spec: fn(&AssetConfig) -> Option<String>,
}

impl Entry {
    /// The entry of module `M`.
    pub(crate) const fn of<M: Module>() -> Entry {
        Entry {
            build: build::<M>,
            setpoint_label: setpoint_label::<M>,
            planned_requests: planned_requests::<M>,
            capture_spec: capture_spec::<M>,
        }
    }

    /// What `asset`'s captures are read by, as text, when it speaks this protocol.
    pub(crate) fn capture_spec(&self, asset: &AssetConfig) -> Option<String> {
        (self.capture_spec)(asset)
    }

    /// The collector for `asset`, when it speaks this protocol.
    pub(crate) fn build(&self, asset: &AssetConfig, data_dir: &Path) -> Option<Box<dyn Collector>> {
        (self.build)(asset, data_dir)
    }

    /// The fewest requests a capture of `asset` sends, when it speaks this protocol
    /// (`Some(None)`: this protocol cannot tell from the config).
    pub(crate) fn planned_requests(&self, asset: &AssetConfig) -> Option<Option<u64>> {
        (self.planned_requests)(asset)
    }

    /// The setpoint entry covering `path`, when `asset` speaks this protocol.
    pub(crate) fn setpoint_label(&self, asset: &AssetConfig, path: &str) -> Option<String> {
        (self.setpoint_label)(asset, path)
    }
}

fn build<M: Module>(asset: &AssetConfig, data_dir: &Path) -> Option<Box<dyn Collector>> {
    let cfg = M::config(&asset.protocol)?;
    Some(Box::new(M::build(asset, cfg, data_dir)))
}

fn setpoint_label<M: Module>(asset: &AssetConfig, path: &str) -> Option<String> {
    M::setpoint_label(M::config(&asset.protocol)?, path)
}

fn planned_requests<M: Module>(asset: &AssetConfig) -> Option<Option<u64>> {
    Some(M::planned_requests(M::config(&asset.protocol)?))
}

fn capture_spec<M: Module>(asset: &AssetConfig) -> Option<String> {
    let mut lines = M::capture_spec(M::config(&asset.protocol)?);
    // Config order changes nothing that is captured: the snapshot sorts its items.
    lines.sort();
    lines.dedup();
    Some(format!(
        "{} reader {}\n{}",
        M::PROTOCOL.as_str(),
        M::READER,
        lines.join("\n")
    ))
}
