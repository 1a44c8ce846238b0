//! What an S7 capture costs the PLC: a 64 KiB DB (65535 bytes, the most snap7's server holds
//! in one DB) read at PDU 240 and at PDU 960 from the S7 simulator over loopback.
//!
//! Run with `cargo bench -p otdrift-protocols --bench s7_capture` (add `-- --captures N` to
//! change the number of captures per PDU size, default 20). For each PDU size it prints the
//! requests one capture sends by service, the Read Var requests next to the minimum number of
//! PDUs (each answer carries at most `pdu - 18` data bytes: ceil(65535 / 222) = 296 at 240,
//! ceil(65535 / 942) = 70 at 960), and the wall time per capture. It exits non-zero if a
//! capture uses more Read Var requests than that minimum, or if anything wrote.

mod harness;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use otdrift_protocols::Collector;
use otdrift_protocols::s7::S7Collector;
use otdrift_simulators::s7::{S7Simulator, S7State};

const DB_SIZE: usize = 65_535;

fn main() {
    let captures: usize = harness::captures_arg(20).max(1);
    let runtime = harness::runtime();
    let mut ok = true;
    for pdu in [240u16, 960] {
        ok &= runtime.block_on(run(pdu, captures));
    }
    harness::exit_unless(ok);
}

async fn run(pdu: u16, captures: usize) -> bool {
    let state = S7State::from_toml(&format!(
        "tick_ms = 0\nmax_pdu = 960\n[[db]]\nnumber = 1\nsize = {DB_SIZE}\nfill = 7\n"
    ))
    .expect("bench state");
    let sim = S7Simulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), state)
        .await
        .expect("simulator");
    let rest = format!(
        "rack = 0\nslot = 2\npdu_size = {pdu}\n[[asset.setpoints]]\nname = \"all\"\ndb = 1\nstart = 0\nsize = {DB_SIZE}\n"
    );
    let asset = harness::bench_asset("bench", "s7", sim.local_addr(), &rest);
    let mut collector = harness::collector_of!(S7, S7Collector::new, &asset);

    // Warm-up capture (connects), then measure.
    let warm = collector.capture().await.expect("warm-up capture");
    let granted = collector.negotiated_pdu().unwrap_or(0);
    sim.request_log().clear();
    let mut times: Vec<Duration> = Vec::with_capacity(captures);
    let mut requests = 0;
    for _ in 0..captures {
        let started = Instant::now();
        let capture = collector.capture().await.expect("capture");
        times.push(started.elapsed());
        requests += capture.stats.requests;
        assert_eq!(capture.snapshot.digest(), warm.snapshot.digest());
    }
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    for entry in sim.request_log().entries() {
        *by_service.entry(entry.name).or_insert(0) += 1;
    }
    let per = |n: usize| n as f64 / captures as f64;
    let reads = per(by_service.get("read_var").copied().unwrap_or(0));
    let minimum = DB_SIZE.div_ceil(usize::from(granted).saturating_sub(18).max(1));
    times.sort();
    let median = times[times.len() / 2];
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];

    println!(
        "s7 capture of a {DB_SIZE}-byte DB at PDU {pdu} (granted {granted}), {captures} captures over loopback"
    );
    println!("  items per capture          {}", warm.snapshot.len());
    println!("  read var per capture       {reads} (minimum {minimum} PDUs)");
    for (service, count) in &by_service {
        if service != "read_var" {
            println!("  {service:<26} {}", per(*count));
        }
    }
    println!("  round trips per capture    {}", per(requests as usize));
    println!(
        "  writes                     {}",
        sim.request_log().writes()
    );
    println!(
        "  time per capture           median {:.2} ms, p95 {:.2} ms",
        median.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3
    );
    collector.close().await;
    let ok = reads <= minimum as f64
        && collector.minimum_reads(granted) == minimum
        && sim.request_log().writes() == 0
        && sim.snap7_writes() == 0;
    if !ok {
        eprintln!(
            "FAIL: {reads} read var requests per capture at PDU {granted}, the minimum is {minimum}"
        );
    }
    ok
}
