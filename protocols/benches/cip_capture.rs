//! What a Logix capture costs the controller: 500 setpoint tags against the CIP simulator
//! over loopback.
//!
//! Run with `cargo bench -p otdrift-protocols --bench cip_capture` (add `-- --captures N`
//! to change the number of steady-state captures, default 50). For each connection the
//! controller grants (Large Forward Open 4002 bytes, and unconnected 504 bytes when Forward
//! Open is refused) it prints the round trips of the first capture (which browses the tag
//! list and templates) and of a steady-state capture, next to the minimum for that packet
//! size, and the wall time per capture. It exits non-zero when a steady capture takes more
//! round trips than the minimum.
//!
//! The minimum, from the wire format (CIP Vol. 1 and 1756-PM020):
//! - one Multiple Service Packet for identity, project name, clock and audit value;
//! - the 500 Read Tag requests packed into Multiple Service Packets. A message carries at
//!   most `capacity` bytes (connection size − 2 for the sequence count; 504 unconnected).
//!   A packet costs 8 bytes (service, path size, 4-byte path to the message router, count)
//!   plus, per request, a 2-byte offset and the request itself: 1 service + 1 path size +
//!   the symbolic segment (2 + name, padded to even) + 2 for the element count. Its reply
//!   costs 6 bytes plus, per tag, a 2-byte offset, 4 bytes of reply header, 2 of type and
//!   the value (4 for DINT and REAL). So `k = min((capacity − 8) / (4 + 2 + seg + 2),
//!   (capacity − 6) / (2 + 4 + 2 + 4))` tags share a round trip, and the minimum is
//!   `1 + ceil(500 / k)`.

mod harness;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use otdrift_protocols::Collector;
use otdrift_protocols::cip::CipCollector;
use otdrift_simulators::cip::{CipSimulator, CipState, Quirk};

const TAGS: usize = 500;

fn tag_name(i: usize) -> String {
    format!("SP_{i:03}")
}

fn minimum(capacity: usize) -> usize {
    let name = tag_name(0).len();
    let segment = 2 + name + name % 2;
    let per_request = 2 + 1 + 1 + segment + 2;
    let per_reply = 2 + 4 + 2 + 4;
    let k = ((capacity - 8) / per_request).min((capacity - 6) / per_reply);
    1 + TAGS.div_ceil(k)
}

fn main() {
    let captures: usize = harness::captures_arg(50);
    let runtime = harness::runtime();
    let ok = runtime.block_on(async {
        let large = run("Large Forward Open, 4002 bytes", None, 4000, captures).await;
        let unconnected = run(
            "unconnected, 504 bytes (Forward Open refused)",
            Some(Quirk::NoConnections),
            504,
            captures,
        )
        .await;
        large && unconnected
    });
    harness::exit_unless(ok);
}

async fn run(label: &str, quirk: Option<Quirk>, capacity: usize, captures: usize) -> bool {
    let mut state_text = String::from("tick_ms = 0\n");
    let mut setpoints = String::new();
    for i in 0..TAGS {
        let (ty, value) = if i % 2 == 0 {
            ("DINT", format!("{i}"))
        } else {
            ("REAL", format!("{i}.5"))
        };
        state_text.push_str(&format!(
            "[[tag]]\nname = \"{}\"\ntype = \"{ty}\"\nvalue = {value}\n",
            tag_name(i)
        ));
        setpoints.push_str(&format!(
            "[[asset.setpoints]]\nname = \"sp {i}\"\ntag = \"{}\"\n",
            tag_name(i)
        ));
    }
    let state = CipState::from_toml(&state_text).expect("bench state");
    let sim = CipSimulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), state)
        .await
        .expect("simulator");
    if let Some(q) = quirk {
        sim.set_quirk(q, true);
    }
    let asset = harness::bench_asset("bench", "cip", sim.local_addr(), &setpoints);
    let mut collector = harness::collector_of!(Cip, CipCollector::new, &asset);

    let started = Instant::now();
    let first = collector.capture().await.expect("first capture");
    let first_time = started.elapsed();
    let mut times: Vec<Duration> = Vec::with_capacity(captures);
    let mut requests = 0;
    let mut items = 0;
    sim.request_log().clear();
    for _ in 0..captures {
        let started = Instant::now();
        let capture = collector.capture().await.expect("capture");
        times.push(started.elapsed());
        requests = capture.stats.requests;
        items = capture.snapshot.len();
    }
    collector.close().await;
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let total: Duration = times.iter().sum();
    let by = sim.request_log().count_by_service();
    let minimum = minimum(capacity);
    println!("cip capture, {TAGS} setpoint tags, {label}");
    println!(
        "  first capture (browse + templates + values): {} round trips, {:.2} ms, {} connect",
        first.stats.requests,
        first_time.as_secs_f64() * 1000.0,
        first.stats.connects
    );
    println!(
        "  steady capture: {requests} round trips (minimum {minimum}), {items} items; Multiple Service Packets per capture {}, Read Tag per capture {}",
        by.get(&0x0A).copied().unwrap_or(0) / captures.max(1),
        by.get(&0x4C).copied().unwrap_or(0) / captures.max(1),
    );
    println!(
        "  time per steady capture: median {:.3} ms, mean {:.3} ms over {captures}",
        median.as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0 / captures.max(1) as f64
    );
    if sim.request_log().writes() > 0 {
        println!("  FAIL: write requests reached the controller");
        return false;
    }
    if requests as usize > minimum {
        println!("  FAIL: {requests} round trips, more than the minimum {minimum}");
        return false;
    }
    true
}
