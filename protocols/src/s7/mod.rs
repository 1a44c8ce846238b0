//! Siemens S7 collector: being written.
//!
//! Placeholder so the workspace builds while the collector is written; it refuses every
//! capture with a clear error rather than pretending.

use async_trait::async_trait;
use otdrift_config::{AssetConfig, Protocol, S7Config};
use otdrift_core::Item;

use crate::{Capture, CollectError, Collector};

/// The Siemens S7 collector for one asset.
pub struct S7Collector {
    asset: String,
}

impl S7Collector {
    /// A collector for `asset`.
    pub fn new(asset: &AssetConfig, _cfg: &S7Config) -> Self {
        S7Collector {
            asset: asset.id.clone(),
        }
    }

    fn unsupported(&self) -> CollectError {
        CollectError::Unsupported {
            asset: self.asset.clone(),
            protocol: Protocol::S7,
        }
    }
}

#[async_trait]
impl Collector for S7Collector {
    fn asset(&self) -> &str {
        &self.asset
    }

    fn protocol(&self) -> Protocol {
        Protocol::S7
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
pub fn setpoint_label(_cfg: &S7Config, _path: &str) -> Option<String> {
    None
}
