//! What every capture bench shares: its command line, its runtime, its exit code and the peak
//! memory it reports.

#![allow(dead_code)] // each bench uses a different subset

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
