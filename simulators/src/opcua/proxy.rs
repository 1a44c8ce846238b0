//! The simulator's front door: clients connect here and every connection is relayed to the
//! async-opcua server on an internal loopback port. Relaying lets the simulator drop
//! connections on command (the `drop` command, the `drop-session` quirk), log connections, and
//! learn which client owns which secure channel (the channel id is plaintext in every chunk
//! header, even with SignAndEncrypt) so that logged requests name their peer.

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
};

use super::{Shared, state::Quirk};
use crate::request_log::Described;

/// Largest chunk relayed from the server (async-opcua's default buffer is 64 KiB; anything
/// far beyond is not OPC UA).
const MAX_CHUNK: usize = 16 * 1024 * 1024;

/// Logs a client's connect and returns the task relaying it to the internal server.
pub(crate) fn accept(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    shared.record(peer, Described::new(0, "connect", ""), "ok");
    relay(shared, client, peer, upstream)
}

async fn relay(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, upstream: SocketAddr) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(err) => {
            tracing::warn!(%err, "cannot reach the internal OPC UA server");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut stop = shared.shutdown_watch();
    let mut drops = shared.extra.drops.subscribe();
    drops.mark_unchanged();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let channels_seen = std::sync::Mutex::new(Vec::new());
    let ignore_limits = shared.lock_state().quirks.get(Quirk::HugeString);
    tokio::select! {
        _ = stop.wait_for(|stop| *stop) => {}
        _ = drops.changed() => tracing::debug!(%peer, "dropping connection"),
        _ = upstream_copy(&shared, client_read, server_write, ignore_limits) => {}
        _ = downstream(&shared, server_read, client_write, peer, &channels_seen) => {}
    }
    let seen = channels_seen.lock().map(|v| v.clone()).unwrap_or_default();
    let mut map = shared
        .extra
        .channels
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for id in seen {
        map.remove(&id);
    }
}

/// Relays client → server chunk by chunk, counting the client's messages (see
/// [`WireCount`](super::WireCount)). With `ignore_limits` (the `huge-string` quirk when the
/// connection opened), the client's Hello is forwarded with MaxMessageSize and MaxChunkCount
/// set to 0 ("no limit"), so the server sends answers larger than the client accepts, as a
/// broken PLC stack would: the client's own limits are then all that stands between it and
/// the answer.
async fn upstream_copy(
    shared: &Shared,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    ignore_limits: bool,
) {
    let mut header = [0u8; 8];
    let mut body = Vec::new();
    loop {
        if from.read_exact(&mut header).await.is_err() {
            return;
        }
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if !(8..=MAX_CHUNK).contains(&size) {
            return;
        }
        body.resize(size - 8, 0);
        if from.read_exact(&mut body).await.is_err() {
            return;
        }
        let kind = [header[0], header[1], header[2]];
        shared.count_message(&kind, header[3]);
        if ignore_limits
            && &kind == b"HEL"
            && let Some(limits) = body.get_mut(HELLO_LIMITS_START - 8..HELLO_LIMITS_END - 8)
        {
            limits.fill(0);
        }
        if to.write_all(&header).await.is_err() || to.write_all(&body).await.is_err() {
            return;
        }
    }
}

/// Where a Hello carries MaxMessageSize and MaxChunkCount (after the 8-byte header,
/// ProtocolVersion, ReceiveBufferSize and SendBufferSize).
const HELLO_LIMITS_START: usize = 20;
const HELLO_LIMITS_END: usize = 28;

/// Relays server → client chunk by chunk, noting the secure channel id of each chunk.
async fn downstream(
    shared: &Shared,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    peer: SocketAddr,
    seen: &std::sync::Mutex<Vec<u32>>,
) {
    let mut header = [0u8; 8];
    let mut body = Vec::new();
    loop {
        if from.read_exact(&mut header).await.is_err() {
            break;
        }
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if !(8..=MAX_CHUNK).contains(&size) {
            break;
        }
        body.resize(size - 8, 0);
        if from.read_exact(&mut body).await.is_err() {
            break;
        }
        if matches!(&header[..3], b"OPN" | b"MSG" | b"CLO")
            && let Some(id) = body.get(..4)
        {
            let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            let mut map = shared
                .extra
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.insert(id, peer).is_none()
                && let Ok(mut seen) = seen.lock()
            {
                seen.push(id);
            }
        }
        if to.write_all(&header).await.is_err() || to.write_all(&body).await.is_err() {
            break;
        }
    }
}
