//! Maintenance windows: while one is open for an asset, its unreachable, failed-collection and
//! stale alarms are held back (and recorded in the audit log); drift is still raised. A window
//! is either opened on the command line (`otdrift maintenance ASSET --for 2h`, kept in the
//! store) or recurring in the config (`[[asset]] maintenance`).

use otdrift_config::AssetConfig;
use otdrift_store::{Store, StoreError};

/// Why alarms of `asset` are held back now, if they are: the window's description.
pub fn active(asset: &AssetConfig, store: &Store) -> Result<Option<String>, StoreError> {
    let now = store.clock().now();
    if let Some(w) = store.maintenance_now(&asset.id)? {
        return Ok(Some(format!(
            "maintenance until {} ({})",
            otdrift_core::format_timestamp(w.ends_at),
            w.reason
        )));
    }
    Ok(asset.maintenance.iter().find(|w| w.contains(now)).map(|w| {
        format!(
            "maintenance window {:?} for {}",
            w.start,
            otdrift_config::format_duration(w.duration)
        )
    }))
}
