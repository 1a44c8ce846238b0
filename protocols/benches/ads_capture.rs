//! What an ADS capture costs the PLC: 1,000 setpoint symbols (REAL, in `GVL_Bench`) against
//! the TwinCAT simulator over loopback.
//!
//! Run with `cargo bench -p otdrift-protocols --bench ads_capture` (add `-- --captures N` to
//! change the number of measured captures, default 50). It prints the round trips of the
//! first capture (which uploads the symbol and data-type tables) and of a steady-state capture
//! by ADS command, next to the documented minimum for a steady-state capture:
//! ReadDeviceInfo + ReadState + one sum-read of the change signals + ceil(1,000 / 500)
//! sum-reads of setpoints = 5 round trips; and the wall time per capture. It exits non-zero
//! if a steady-state capture uses more round trips than that minimum, or re-uploads a table
//! that did not change.

mod harness;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use otdrift_protocols::Collector;
use otdrift_protocols::ads::{AdsCollector, MAX_SUM_READS};
use otdrift_simulators::ads::{AdsSimulator, AdsState};

const SYMBOLS: usize = 1_000;

fn main() {
    let captures: usize = harness::captures_arg(50).max(1);
    let runtime = harness::runtime();
    harness::exit_unless(runtime.block_on(run(captures)));
}

fn by_command(counts: &BTreeMap<u16, usize>) -> String {
    counts
        .iter()
        .map(|(cmd, n)| {
            let name = match cmd {
                1 => "ReadDeviceInfo",
                2 => "Read",
                4 => "ReadState",
                9 => "ReadWrite",
                _ => "other",
            };
            format!("{name} ({cmd}): {n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run(captures: usize) -> bool {
    let mut text = String::from(
        "ams_net_id = \"5.80.201.232.1.1\"\ntick_ms = 0\n[app]\nproject_name = \"Bench\"\n",
    );
    for i in 0..SYMBOLS {
        text.push_str(&format!(
            "[[symbol]]\nname = \"GVL_Bench.r{i:04}\"\ntype = \"REAL\"\nvalue = {i}.25\npersistent = true\n"
        ));
    }
    let state = AdsState::from_toml(&text).expect("bench state");
    let sim = AdsSimulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), state)
        .await
        .expect("simulator");
    let rest = "ams_net_id = \"5.80.201.232.1.1\"\n[[asset.setpoints]]\nname = \"all\"\nsymbol = \"GVL_Bench.*\"\n";
    let asset = harness::bench_asset("bench", "ads", sim.local_addr(), rest);
    let mut collector = harness::collector_of!(Ads, AdsCollector::new, &asset);

    let started = Instant::now();
    let first = collector.capture().await.expect("first capture");
    let first_time = started.elapsed();
    let first_counts = sim.request_log().count_by_service();
    sim.request_log().clear();

    let mut times: Vec<Duration> = Vec::with_capacity(captures);
    let mut requests = 0u32;
    let mut items = 0;
    for _ in 0..captures {
        let started = Instant::now();
        let capture = collector.capture().await.expect("capture");
        times.push(started.elapsed());
        requests = requests.max(capture.stats.requests);
        items = capture.snapshot.len();
    }
    let counts = sim.request_log().count_by_service();
    let uploads = sim
        .request_log()
        .entries()
        .iter()
        .filter(|e| matches!(e.address, Some(0xF00B | 0xF00E)))
        .count();
    let per: BTreeMap<u16, usize> = counts.iter().map(|(cmd, n)| (*cmd, n / captures)).collect();
    let minimum = 3 + SYMBOLS.div_ceil(MAX_SUM_READS) as u32;
    let (median, p95, mean) = harness::median_p95_mean(&mut times);

    println!("ads capture of {SYMBOLS} REAL setpoint symbols, {captures} captures over loopback");
    println!("  items per capture          {items}");
    println!(
        "  first capture              {} round trips ({}), {:.2} ms (uploads the tables)",
        first.stats.requests,
        by_command(&first_counts),
        first_time.as_secs_f64() * 1e3
    );
    println!(
        "  steady-state capture       {requests} round trips ({}), minimum {minimum}",
        by_command(&per)
    );
    println!("  table uploads (steady)     {uploads}");
    println!(
        "  writes                     {}",
        sim.request_log().writes()
    );
    println!(
        "  time per capture           median {:.2} ms, p95 {:.2} ms, mean {:.2} ms",
        median.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3
    );
    if let Some(kib) = harness::max_rss_kib() {
        println!(
            "  peak RSS (bench + sim)     {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    collector.close().await;
    let ok = requests <= minimum && uploads == 0 && sim.request_log().writes() == 0;
    if !ok {
        eprintln!(
            "FAIL: {requests} round trips per capture (minimum {minimum}), {uploads} table uploads, {} writes",
            sim.request_log().writes()
        );
    }
    ok
}
