//! What every capture bench shares: its command line, its runtime, its exit code and the peak
//! memory it reports.

#![allow(dead_code)] // each bench uses a different subset

use otdrift_config::AssetConfig;

/// The number after `--captures` on the command line (`cargo bench ... -- --captures N`), or
/// `default` when there is none or it is not a number.
pub fn captures_arg(default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != "--captures")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The multi-thread tokio runtime a bench drives its collector and simulator on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Exits non-zero when a bench's check failed, so a regression cannot go unnoticed.
pub fn exit_unless(ok: bool) {
    if !ok {
        std::process::exit(1);
    }
}

/// The process's peak resident set (bench and in-process simulator), in KiB, where
/// `/proc/self/status` tells it.
pub fn max_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The bench config's one asset: `id`, speaking `protocol` at `address`, `rest` holding its
/// other keys and its setpoint tables.
pub fn bench_asset(
    id: &str,
    protocol: &str,
    address: impl std::fmt::Display,
    rest: &str,
) -> AssetConfig {
    let config = otdrift_config::parse(
        &format!(
            "[agent]\nid = \"bench\"\ndata_dir = \"/tmp/unused\"\n[[asset]]\nid = \"{id}\"\nprotocol = \"{protocol}\"\naddress = \"{address}\"\n{rest}"
        ),
        std::path::Path::new("bench.toml"),
    )
    .expect("bench config");
    config.assets.into_iter().next().expect("one asset")
}

/// The collector `$new` builds from `$asset` (an `&AssetConfig`) and its
/// `ProtocolConfig::$variant` settings.
macro_rules! collector_of {
    ($variant:ident, $new:path, $asset:expr) => {{
        let asset: &otdrift_config::AssetConfig = $asset;
        let otdrift_config::ProtocolConfig::$variant(cfg) = &asset.protocol else {
            unreachable!(concat!("a ", stringify!($variant), " asset"))
        };
        $new(asset, cfg)
    }};
}
pub(crate) use collector_of;

/// The median, 95th percentile and mean of capture times (sorting them).
pub fn median_p95_mean(
    times: &mut [std::time::Duration],
) -> (
    std::time::Duration,
    std::time::Duration,
    std::time::Duration,
) {
    times.sort();
    let median = times[times.len() / 2];
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    let mean = times.iter().sum::<std::time::Duration>() / u32::try_from(times.len()).unwrap_or(1);
    (median, p95, mean)
}
