//! How much a capture costs the PLC: 10,000 holding registers against the Modbus simulator
//! over loopback.
//!
//! Run with `cargo bench -p otdrift-protocols --bench modbus_capture` (add `-- --captures N`
//! to change the number of captures, default 50). It prints the requests one capture sends,
//! by function code, next to the protocol's minimum (ceil(10,000 / 125) = 80 register reads),
//! and the wall time per capture. It exits non-zero if a capture uses more register reads than
//! the minimum, so a regression in batching cannot go unnoticed.

mod harness;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use otdrift_protocols::Collector;
use otdrift_protocols::modbus::ModbusCollector;
use otdrift_simulators::modbus::{ModbusSimulator, ModbusState};

const REGISTERS: u32 = 10_000;

fn main() {
    let captures: usize = harness::captures_arg(50);
    let runtime = harness::runtime();
    let ok = runtime.block_on(run(captures));
    harness::exit_unless(ok);
}

async fn run(captures: usize) -> bool {
    let state = ModbusState::from_toml(&format!(
        "unit_id = 1\ntick_ms = 0\n[identity]\nvendor_name = \"bench\"\nproduct_code = \"B\"\nrevision = \"1\"\n[[holding]]\nstart = 0\ncount = {REGISTERS}\nfill = 7\n"
    ))
    .expect("bench state");
    let sim = ModbusSimulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), state)
        .await
        .expect("simulator");
    let rest = format!(
        "[[asset.setpoints]]\nname = \"all\"\ntable = \"holding\"\nstart = 0\ncount = {REGISTERS}\n"
    );
    let asset = harness::bench_asset("bench", "modbus", sim.local_addr(), &rest);
    let mut collector = harness::collector_of!(Modbus, ModbusCollector::new, &asset);

    // Warm-up capture (connects), then measure.
    collector.capture().await.expect("warm-up capture");
    sim.request_log().clear();
    let mut times: Vec<Duration> = Vec::with_capacity(captures);
    let mut items = 0;
    for _ in 0..captures {
        let started = Instant::now();
        let capture = collector.capture().await.expect("capture");
        times.push(started.elapsed());
        items = capture.snapshot.len();
    }
    let by_fc = sim.request_log().count_by_function();
    let per = |fc: u8| by_fc.get(&fc).copied().unwrap_or(0) as f64 / captures as f64;
    let reads = per(3);
    let minimum = f64::from(REGISTERS.div_ceil(125));
    let (median, p95, mean) = harness::median_p95_mean(&mut times);

    println!("modbus capture of {REGISTERS} holding registers, {captures} captures over loopback");
    println!("  items per capture        {items}");
    println!("  FC 3 reads per capture   {reads} (minimum {minimum})");
    println!("  FC 43 per capture        {}", per(43));
    println!("  writes                   {}", sim.request_log().writes());
    println!(
        "  time per capture         median {:.2} ms, p95 {:.2} ms, mean {:.2} ms",
        median.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3
    );
    if let Some(kib) = harness::max_rss_kib() {
        println!("  peak RSS (bench + sim)   {:.1} MiB", kib as f64 / 1024.0);
    }
    collector.close().await;
    let ok = (reads - minimum).abs() < f64::EPSILON && sim.request_log().writes() == 0;
    if !ok {
        eprintln!("FAIL: {reads} register reads per capture, the minimum is {minimum}");
    }
    ok
}
