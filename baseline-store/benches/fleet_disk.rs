//! Disk use of a 500-asset fleet over hours of injected time: it must stay flat after the
//! first hour. The store is driven directly (no network), with a [`ManualClock`], so hours
//! pass in minutes of real time.
//!
//! `cargo bench -p otdrift-store --bench fleet_disk` (add `-- --assets N --hours N --period
//! SECS --items N --flapping N --changes N --seen-flush SECS` to change the defaults: 500
//! assets, 4 hours, a 60 s schedule, 200 setpoints each, 50 assets with a process value read
//! as a setpoint, 0 real changes per hour, quiet polls written every 60 s as the daemon does
//! by default; `--seen-flush 0` writes every poll, as one-shot commands do). Every asset is polled once per period; a flapping asset's first
//! register is new on every poll; each real change opens a drift that resolves half an hour
//! later. Every hour the upstream acknowledges everything and retention runs as the daemon
//! runs it. Reported per hour: the database and WAL file sizes, the pages in use, rows per
//! table, and the bytes this process wrote (`/proc/self/io`). The bench fails when the
//! database grows by more than 64 KiB plus 64 KiB per real change after the first hour.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::TimeDelta;
use otdrift_core::{Class, Item, ManualClock, Snapshot, Value, parse_timestamp};
use otdrift_store::{CaptureRecord, ChangeRules, Retention, Store, UPSTREAM};

fn arg(name: &str, default: u64) -> u64 {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn snapshot(asset: &str, items: u64, first: u64, changed: bool) -> Snapshot {
    let mut all = vec![
        Item::new(
            "modbus/identity/serial",
            Class::Identity,
            Value::from(asset),
        )
        .expect("item"),
        Item::new(
            "modbus/identity/vendor",
            Class::Identity,
            Value::from("otdrift bench"),
        )
        .expect("item"),
        Item::new(
            "modbus/identity/revision",
            Class::Identity,
            Value::from("2.1"),
        )
        .expect("item"),
    ];
    for i in 0..items {
        let value = match i {
            0 => first,
            1 if changed => 9999,
            _ => 500 + i,
        };
        all.push(
            Item::new(
                format!("modbus/holding/{i}"),
                Class::Setpoint,
                Value::UInt(value),
            )
            .expect("item"),
        );
    }
    Snapshot::from_items(all).expect("unique paths")
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find(|l| l.starts_with("write_bytes:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap_or(-1)
}

fn main() {
    let assets = arg("--assets", 500);
    let hours = arg("--hours", 4);
    let period = arg("--period", 60).max(1);
    let items = arg("--items", 200).max(2);
    let flapping = arg("--flapping", 50).min(assets);
    let changes = arg("--changes", 0);
    let seen_flush = arg("--seen-flush", 60);

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("otdrift.db");
    let wal = dir.path().join("otdrift.db-wal");
    let clock = Arc::new(ManualClock::new(
        parse_timestamp("2026-12-01T00:00:00Z").expect("timestamp"),
    ));
    let mut store = Store::open(&db, clock.clone()).expect("store");
    store.defer_seen(seen_flush > 0).expect("defer seen");
    let mut since_flush = 0u64;
    let mut flushes = 0u64;
    let retention = Retention {
        outbox: TimeDelta::days(30),
        captures: TimeDelta::days(90),
        destinations: vec![UPSTREAM.to_owned()],
        batch: 500,
    };
    let ids: Vec<String> = (0..assets).map(|a| format!("press-{a:04}")).collect();
    let rules = ChangeRules::default();
    let runtime = serde_json::json!({});
    let polls_per_hour = 3600 / period;
    println!(
        "fleet_disk: {assets} assets x {items} setpoints, a poll every {period} s, {flapping} flapping, {changes} real change(s) per hour, {hours} h, seen flush {}",
        if seen_flush > 0 {
            format!("every {seen_flush} s")
        } else {
            "off (every poll written)".to_owned()
        }
    );
    println!(
        "hour  db KiB  wal KiB  used KiB  captures  snapshots  outbox  audit  written KiB  wall s"
    );
    let started = Instant::now();
    let mut used_after_first = 0u64;
    let mut last_used = 0u64;
    let mut tick = 0u64;
    for hour in 1..=hours {
        let written = write_bytes();
        let hour_started = Instant::now();
        for poll in 0..polls_per_hour {
            tick += 1;
            for (a, id) in ids.iter().enumerate() {
                let a = a as u64;
                let first = if a < flapping { tick } else { 500 };
                // Real changes: `changes` assets a hour, drifted for the middle half hour.
                let steady = assets - flapping;
                let changed = steady > 0
                    && a >= flapping
                    && ((a - flapping) + steady - ((hour - 1) * changes) % steady) % steady
                        < changes
                    && (polls_per_hour / 4..polls_per_hour * 3 / 4).contains(&poll);
                let s = snapshot(id, items, first, changed);
                store
                    .record_capture(&CaptureRecord {
                        asset: id,
                        protocol: "modbus",
                        address: "127.0.0.1:502",
                        snapshot: &s,
                        runtime: &runtime,
                        operating_state: &serde_json::json!({}),
                        change_id: None,
                        phase: None,
                        duration_ms: 5,
                        requests: 3,
                        label: &|_| None,
                        rules: &rules,
                        capture_spec: None,
                    })
                    .expect("recorded");
            }
            clock.advance(TimeDelta::seconds(period as i64));
            since_flush += period;
            if seen_flush > 0 && since_flush >= seen_flush {
                since_flush = 0;
                flushes += u64::from(store.flush_seen().expect("flushed") > 0);
            }
        }
        // The upstream took everything; retention runs as the daemon runs it.
        let last = store.last_event_seq().expect("seq");
        if last > 0 {
            store.acknowledge(UPSTREAM, last).expect("acknowledged");
        }
        let mut pruned = otdrift_store::Pruned::default();
        loop {
            let step = store.prune_step(&retention).expect("prune");
            if step.is_empty() {
                break;
            }
            pruned.add(step);
        }
        store.record_pruned(pruned).expect("audited");

        let conn = rusqlite::Connection::open(&db).expect("db");
        let page: u64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        let pages: u64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("pages");
        let free: u64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .expect("free");
        let used = (pages - free) * page;
        println!(
            "{hour:>4}  {:>6}  {:>7}  {:>8}  {:>8}  {:>9}  {:>6}  {:>5}  {:>11}  {:>6.1}",
            file_size(&db) / 1024,
            file_size(&wal) / 1024,
            used / 1024,
            count(&conn, "captures"),
            count(&conn, "snapshots"),
            count(&conn, "outbox"),
            count(&conn, "audit_log"),
            write_bytes().saturating_sub(written) / 1024,
            hour_started.elapsed().as_secs_f64(),
        );
        if hour == 1 {
            used_after_first = used;
        }
        last_used = used;
    }
    if seen_flush > 0 {
        println!(
            "{flushes} seen flushes ({:.1} an hour)",
            flushes as f64 / hours.max(1) as f64
        );
    }
    let grew = last_used.saturating_sub(used_after_first);
    let allowed = 64 * 1024 * (1 + changes * hours.saturating_sub(1));
    println!(
        "after the first hour the database grew by {} KiB (allowed {} KiB); {:.0} s wall, {:.2} ms per poll",
        grew / 1024,
        allowed / 1024,
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1000.0 / (tick * assets).max(1) as f64
    );
    if grew > allowed {
        eprintln!("FAIL: disk use is not flat after the first hour");
        std::process::exit(1);
    }
}
