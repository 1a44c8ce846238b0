//! Beckhoff ADS collector: being written.
//!
//! Placeholder so the workspace builds while the collector is written; it refuses every
//! capture with a clear error rather than pretending.

use async_trait::async_trait;
use otdrift_config::{AdsConfig, AssetConfig, Protocol};
use otdrift_core::Item;

use crate::{Capture, CollectError, Collector};

/// The Beckhoff ADS collector for one asset.
pub struct AdsCollector {
    asset: String,
}

impl AdsCollector {
    /// A collector for `asset`.
    pub fn new(asset: &AssetConfig, _cfg: &AdsConfig) -> Self {
        AdsCollector {
            asset: asset.id.clone(),
        }
    }

    fn unsupported(&self) -> CollectError {
        CollectError::Unsupported {
            asset: self.asset.clone(),
            protocol: Protocol::Ads,
        }
    }
}

#[async_trait]
impl Collector for AdsCollector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::Ads
    }

    async fn connect(&mut self) -> Result<(), CollectError> {
        Err(self.unsupported())
    }

    async fn identify(&mut self) -> Result<Vec<Item>, CollectError> {
        Err(self.unsupported())
    }

    async fn capture(&mut self) -> Result<Capture, CollectError> {
        Err(self.unsupported())
    }

    async fn close(&mut self) {}
}

/// The setpoint entry covering an item path.
pub fn setpoint_label(_cfg: &AdsConfig, _path: &str) -> Option<String> {
    None
}
