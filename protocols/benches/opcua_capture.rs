//! What an OPC UA capture costs the server: 2,000 setpoint variables in one folder against
//! the OPC UA simulator over loopback.
//!
//! Run with `cargo bench -p otdrift-protocols --bench opcua_capture` (add `-- --captures N`
//! to change the number of pooled captures per configuration, default 10). For two server
//! limits (MaxNodesPerRead 1000 / MaxNodesPerBrowse 500, and 250 / 100) it prints the
//! requests one pooled capture sends, by service, next to the minimum the collector's
//! documented plan needs at those limits:
//!
//! - Read: 1 (identity) + ⌈(6 + 4·n) / MaxNodesPerRead⌉ (the folder's class, name and 4
//!   attributes, then data type, value rank, array dimensions and value of each variable);
//!   the values alone would need ⌈n / MaxNodesPerRead⌉, shown for comparison;
//! - Browse: 1 (the folder) + ⌈n / MaxNodesPerBrowse⌉ (the variables, for properties);
//! - BrowseNext: ⌈n / 1000⌉ − 1 (1000 references per answer);
//!
//! and the wall time per capture. It exits non-zero if a capture sends more requests of any
//! service than that minimum, so a regression in batching cannot go unnoticed.
//!
//! Then one-shot captures (`otdrift capture`: a new client, one capture, a polite close) of
//! 1,000 variables with security none, counted as the wire carries them (every Hello,
//! OpenSecureChannel, service request and CloseSecureChannel the simulator's front door
//! saw): the first contact with a server (a discovery channel, then the session's) and every
//! later one (the kept endpoint: one channel). The later one must need exactly
//!
//! - 2 to open the channel (Hello, OpenSecureChannel), 3 for the session (CreateSession,
//!   ActivateSession, async-opcua's keep-alive Read) and 1 GetEndpoints on that channel (the
//!   server's identity and certificate, checked against the pin);
//! - 1 Read for identity and operation limits, Browse and Read as above;
//! - 2 to close (CloseSession, CloseSecureChannel);
//!
//! and the first contact 3 more (the discovery channel's Hello, OpenSecureChannel and
//! CloseSecureChannel).

mod harness;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use otdrift_protocols::Collector;
use otdrift_protocols::opcua::{MAX_BATCH, OpcuaCollector};
use otdrift_simulators::opcua::{OpcuaSimHandle, OpcuaSimulator, OpcuaState};

const VARIABLES: usize = 2_000;
const REFERENCES_PER_ANSWER: usize = 1_000;

fn main() {
    let captures: usize = harness::captures_arg(10);
    let runtime = harness::runtime();
    let mut ok = true;
    for (read, browse) in [(1000, 500), (250, 100)] {
        ok &= runtime.block_on(run(captures, read, browse));
    }
    for (read, browse) in [(MAX_BATCH, MAX_BATCH), (1000, 500)] {
        ok &= runtime.block_on(one_shot(read, browse));
    }
    harness::exit_unless(ok);
}

/// A simulator serving `variables` Double variables in one folder at the given limits (0 =
/// no limit), and the asset capturing that folder.
async fn folder_server(
    variables: usize,
    max_read: usize,
    max_browse: usize,
) -> (OpcuaSimHandle, otdrift_config::AssetConfig) {
    let mut text = format!(
        "tick_ms = 0\nnamespace_uri = \"urn:bench\"\n[limits]\nmax_nodes_per_read = {max_read}\nmax_nodes_per_browse = {max_browse}\nmax_references_per_node = {REFERENCES_PER_ANSWER}\n[[folder]]\nid = \"Recipe\"\n"
    );
    for i in 0..variables {
        text.push_str(&format!(
            "[[variable]]\nid = \"Recipe.P{i:04}\"\ntype = \"Double\"\nvalue = {i}.25\n"
        ));
    }
    let state = OpcuaState::from_toml(&text).expect("bench state");
    let sim = OpcuaSimulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), state)
        .await
        .expect("simulator");
    let rest =
        "timeout_ms = 10000\n[[asset.setpoints]]\nname = \"recipe\"\nnode = \"ns=2;s=Recipe\"\n";
    let asset = harness::bench_asset("bench-opcua", "opcua", sim.endpoint_url(), rest);
    (sim, asset)
}

/// One-shot captures of 1,000 variables, counted on the wire (see the module's docs).
async fn one_shot(max_read: usize, max_browse: usize) -> bool {
    const ONE_SHOT: usize = 1_000;
    let (sim, asset) = folder_server(ONE_SHOT, max_read, max_browse).await;
    let pki = std::env::temp_dir().join(format!(
        "otdrift-opcua-one-shot-{}-{max_read}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&pki);
    let mut counts = Vec::new();
    for _ in 0..2 {
        let before = sim.wire_messages();
        let mut collector =
            harness::collector_of!(Opcua, OpcuaCollector::new, &asset).with_pki_dir(pki.clone());
        let capture = collector.capture().await.expect("one-shot capture");
        collector.close().await;
        // The close is sent before close() returns; the proxy counts it as it relays it:
        // wait until every channel opened is closed.
        let mut after = sim.wire_messages();
        for _ in 0..100 {
            let wire = after - before;
            if wire.close >= wire.open {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            after = sim.wire_messages();
        }
        counts.push((after - before, capture.stats.requests));
    }
    let _ = std::fs::remove_dir_all(&pki);
    let browses = 1 + ONE_SHOT.div_ceil(max_browse);
    let nexts = ONE_SHOT.div_ceil(REFERENCES_PER_ANSWER) - 1;
    let reads = 1 + (6 + 4 * ONE_SHOT).div_ceil(max_read);
    let minimum = (2 + 3 + 1 + reads + browses + nexts + 2) as u64;
    println!(
        "opcua one-shot capture: {ONE_SHOT} variables, security none, MaxNodesPerRead {max_read}, MaxNodesPerBrowse {max_browse}"
    );
    let mut ok = counts.len() == 2;
    for ((wire, requests), (what, expected)) in counts
        .iter()
        .zip([("first contact", minimum + 3), ("kept endpoint", minimum)])
    {
        println!(
            "  {what:<14} {:>3} messages (minimum {expected}): {} Hello, {} OpenSecureChannel, {} requests, {} CloseSecureChannel; collector's count {requests}",
            wire.total(),
            wire.hello,
            wire.open,
            wire.requests,
            wire.close,
        );
        ok &= wire.total() <= expected;
    }
    ok &= sim.request_log().writes() == 0;
    if !ok {
        eprintln!("opcua_capture: a one-shot capture sent more messages than its minimum");
    }
    ok
}

async fn run(captures: usize, max_read: usize, max_browse: usize) -> bool {
    let (sim, asset) = folder_server(VARIABLES, max_read, max_browse).await;
    let pki = std::env::temp_dir().join(format!("otdrift-opcua-bench-{}", std::process::id()));
    let mut collector =
        harness::collector_of!(Opcua, OpcuaCollector::new, &asset).with_pki_dir(pki.clone());

    let started = Instant::now();
    let first = collector.capture().await.expect("first capture");
    let first_time = started.elapsed();
    let values = first
        .snapshot
        .items()
        .filter(|i| i.path().starts_with("opcua/value/"))
        .count();
    sim.request_log().clear();
    let mut times: Vec<Duration> = Vec::with_capacity(captures);
    let mut requests = 0;
    for _ in 0..captures {
        let started = Instant::now();
        let capture = collector.capture().await.expect("capture");
        times.push(started.elapsed());
        requests = capture.stats.requests;
        assert_eq!(capture.snapshot.digest(), first.snapshot.digest());
    }
    collector.close().await;
    let _ = std::fs::remove_dir_all(&pki);
    let per = |name: &str| {
        sim.request_log()
            .entries()
            .iter()
            .filter(|e| e.name == name)
            .count()
            / captures.max(1)
    };
    let (reads, browses, nexts) = (per("read"), per("browse"), per("browse_next"));
    let min_reads = 1 + (6 + 4 * VARIABLES).div_ceil(max_read);
    let values_only = VARIABLES.div_ceil(max_read);
    let min_browses = 1 + VARIABLES.div_ceil(max_browse);
    let min_nexts = VARIABLES.div_ceil(REFERENCES_PER_ANSWER) - 1;
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let worst = times.last().copied().unwrap_or_default();
    println!(
        "opcua_capture: {VARIABLES} variables ({values} values captured), MaxNodesPerRead {max_read}, MaxNodesPerBrowse {max_browse}"
    );
    println!(
        "  Read        {reads:>4} per capture (minimum {min_reads}: 1 identity + {} attributes; values alone {values_only})",
        min_reads - 1
    );
    println!("  Browse      {browses:>4} per capture (minimum {min_browses})");
    println!("  BrowseNext  {nexts:>4} per capture (minimum {min_nexts})");
    println!("  requests    {requests:>4} per pooled capture (collector's count)");
    println!(
        "  time        first capture (connect + certificate) {:.1} ms; pooled median {:.1} ms, worst {:.1} ms over {captures}",
        first_time.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    let ok = values == VARIABLES
        && reads <= min_reads
        && browses <= min_browses
        && nexts <= min_nexts
        && sim.request_log().writes() == 0;
    if !ok {
        eprintln!("opcua_capture: more requests than the minimum (or a write)");
    }
    ok
}
