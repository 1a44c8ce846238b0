//! The compliance checks every collector must pass against its simulator (one
//! shared test helper every collector test calls).

#![allow(dead_code)] // each protocol's test binary uses what it needs

#[path = "../../../tests/support/peers.rs"]
pub mod peers;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use otdrift_config::{AssetConfig, Config};
use otdrift_core::{ChangeKind, Diff};
use otdrift_protocols::{Collector, ErrorKind};
use otdrift_simulators::runtime::{Protocol, SimHandle};

/// Loopback, any free port: where the simulators listen.
pub const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// What the compliance checks need from a simulated device.
pub trait SimulatedDevice {
    /// Changes one configured setpoint and returns the item path that must show in the diff.
    fn change_a_setpoint(&self) -> String;
    /// Undoes [`SimulatedDevice::change_a_setpoint`].
    fn restore_the_setpoint(&self);
    /// Makes the device stop answering (or answer again).
    fn stall(&self, on: bool);
    /// Moves runtime values (process values, clocks) that must not affect the digest.
    fn tick_runtime(&self);
    /// How many state-changing requests the device has received.
    fn write_requests(&self) -> usize;
}

/// Parses a config and returns its first asset: collectors are tested through the same
/// config path operators use.
pub fn asset_from(toml: &str) -> AssetConfig {
    let config: Config = otdrift_config::parse(toml, std::path::Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config is valid: {e}"));
    config.assets.into_iter().next().expect("one asset")
}

/// The asset of a config with one `protocol` asset `id` at `address`; `rest` holds its
/// other keys and its setpoint tables.
pub fn one_asset(protocol: &str, id: &str, address: &str, rest: &str) -> AssetConfig {
    asset_from(&format!(
        r#"
[agent]
id = "gw"
data_dir = "/tmp/unused"

[[asset]]
id = "{id}"
protocol = "{protocol}"
address = "{address}"
{rest}
"#
    ))
}

/// The collector of a config with one `$protocol` asset `$id` at `$address` (`$rest`: its
/// other keys and setpoint tables), with that asset: `$new` builds it from the asset and its
/// `ProtocolConfig::$variant` settings. Each protocol's test calls it from its `collector`.
macro_rules! collector_and_asset {
    ($variant:ident, $new:path, $protocol:literal, $id:literal, $address:expr, $rest:expr) => {{
        let asset = crate::common::one_asset($protocol, $id, $address, $rest);
        let otdrift_config::ProtocolConfig::$variant(cfg) = &asset.protocol else {
            panic!(concat!($id, " is not a ", $protocol, " asset"));
        };
        ($new(&asset, cfg), asset)
    }};
}
pub(crate) use collector_and_asset;

/// Pseudo-random garbage for hostile-peer tests: one byte string per length in `lengths`,
/// from one xorshift sequence with a fixed seed (every run sends the same bytes).
pub fn garbage(lengths: impl IntoIterator<Item = usize>) -> Vec<Vec<u8>> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed & 0xff) as u8
    };
    lengths
        .into_iter()
        .map(|len| (0..len).map(|_| next()).collect())
        .collect()
}

/// An address nothing listens on (a port bound and let go).
pub fn closed_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// A capture of a device nothing answers for: a typed connect error, unreachable; returns
/// its text.
pub async fn connect_error(collector: &mut dyn Collector) -> String {
    match collector.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Connect(_)) => {
            assert!(e.is_unreachable());
            e.to_string()
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// A device restarted on the same address between two captures: `first` is shut down (and
/// let go) and `restart` starts it again on its address, returning the new handle. The
/// pooled connection is dead, and the next capture reconnects by itself (one connect) and
/// sees the same state.
pub async fn assert_reconnects_after_restart<P, E, F>(
    collector: &mut dyn Collector,
    first: SimHandle<P>,
    restart: impl FnOnce(SocketAddr) -> F,
) -> SimHandle<P>
where
    P: Protocol,
    E: std::fmt::Debug,
    F: Future<Output = Result<SimHandle<P>, E>>,
{
    let before = collector.capture().await.expect("capture");
    let addr = first.local_addr();
    first.shutdown();
    first.stopped().await;
    drop(first);
    let second = restart(addr)
        .await
        .expect("simulator restarts on the same port");
    let after = collector
        .capture()
        .await
        .expect("capture after the restart");
    assert_eq!(after.snapshot.digest(), before.snapshot.digest());
    assert_eq!(after.stats.connects, 1);
    second
}

/// Runs the shared checks:
/// - identical state gives an identical digest, and runtime values do not count;
/// - the second capture reuses the connection;
/// - a changed setpoint shows in the diff as exactly that item, and restoring it restores
///   the digest;
/// - a device that stops answering gives a typed timeout naming the asset, and the
///   collector recovers once it answers again;
/// - no write request ever reached the device.
pub async fn assert_collector_compliance(
    collector: &mut dyn Collector,
    device: &dyn SimulatedDevice,
) {
    let asset = collector.asset().to_owned();
    let first = collector.capture().await.expect("first capture");
    assert!(!first.snapshot.is_empty(), "a capture holds items");
    device.tick_runtime();
    let second = collector.capture().await.expect("second capture");
    assert_eq!(
        first.snapshot.digest(),
        second.snapshot.digest(),
        "identical state, identical digest: {:?}",
        Diff::between(&first.snapshot, &second.snapshot)
    );
    assert_eq!(second.stats.connects, 0, "the connection is reused");

    let path = device.change_a_setpoint();
    let changed = collector.capture().await.expect("capture after a change");
    let diff = Diff::between(&first.snapshot, &changed.snapshot);
    assert_eq!(diff.changes.len(), 1, "exactly the changed item: {diff:?}");
    assert_eq!(diff.changes[0].path, path);
    assert_eq!(diff.changes[0].kind, ChangeKind::Changed);
    device.restore_the_setpoint();
    let restored = collector.capture().await.expect("capture after restoring");
    assert_eq!(restored.snapshot.digest(), first.snapshot.digest());

    device.stall(true);
    match collector.capture().await {
        Err(e) if matches!(e.kind, ErrorKind::Timeout { .. }) => {
            assert!(e.is_unreachable());
            assert!(e.to_string().contains(&asset), "{e}");
        }
        other => panic!("expected a timeout naming {asset}, got {other:?}"),
    }
    device.stall(false);
    let recovered = collector
        .capture()
        .await
        .expect("capture after the device recovers");
    assert_eq!(recovered.snapshot.digest(), first.snapshot.digest());
    assert_eq!(
        recovered.stats.connects, 1,
        "a timed-out connection is replaced"
    );

    assert_eq!(device.write_requests(), 0, "no write reached the device");
}
