//! Allen-Bradley CIP collector: being written.
//!
//! Placeholder so the workspace builds while the collector is written; it refuses every
//! capture with a clear error rather than pretending.

use async_trait::async_trait;
use otdrift_config::{AssetConfig, CipConfig, Protocol};
use otdrift_core::Item;

use crate::{Capture, CollectError, Collector};

/// The Allen-Bradley CIP collector for one asset.
pub struct CipCollector {
    asset: String,
}

impl CipCollector {
    /// A collector for `asset`.
    pub fn new(asset: &AssetConfig, _cfg: &CipConfig) -> Self {
        CipCollector {
            asset: asset.id.clone(),
        }
    }

    fn unsupported(&self) -> CollectError {
        CollectError::Unsupported {
            asset: self.asset.clone(),
            protocol: Protocol::Cip,
        }
    }
}

#[async_trait]
impl Collector for CipCollector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::Cip
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
pub fn setpoint_label(_cfg: &CipConfig, _path: &str) -> Option<String> {
    None
}
