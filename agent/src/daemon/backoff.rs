//! Exponential backoff with jitter, for unreachable devices and a failing upstream.
//!
//! The n-th consecutive failure waits `min(base * 2^(n-1), max)`, scaled by a random factor in
//! `[0.8, 1.2)` so that many assets that went down together (a switch reboot) do not come back
//! in lockstep.

use std::time::Duration;

/// The delay after `failures` consecutive failures (`failures >= 1`), for a jitter draw
/// `unit` in `[0, 1)`.
pub fn delay(failures: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let raw = base.saturating_mul(1u32 << exponent).min(max);
    let factor = 0.8 + 0.4 * unit.clamp(0.0, 1.0);
    raw.mul_f64(factor).min(max.mul_f64(1.2))
}

/// A uniform draw in `[0, 1)` from the OS's random source (0.5 if it has none).
pub fn unit() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// Backoff state for one thing that can fail repeatedly.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    until: Option<tokio::time::Instant>,
}

impl Backoff {
    /// No failures yet.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            failures: 0,
            until: None,
        }
    }

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: tokio::time::Instant) -> bool {
        self.until.is_none_or(|until| now >= until)
    }

    /// Records a failure at `now`; returns how long to wait.
    pub fn failed(&mut self, now: tokio::time::Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = delay(self.failures, self.base, self.max, unit());
        self.until = Some(now + wait);
        wait
    }

    /// Records a success: the next failure starts from `base` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter_band() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        assert_eq!(delay(1, base, max, 0.5), Duration::from_secs(1));
        assert_eq!(delay(2, base, max, 0.5), Duration::from_secs(2));
        assert_eq!(delay(5, base, max, 0.5), Duration::from_secs(16));
        assert_eq!(delay(20, base, max, 0.5), Duration::from_secs(300));
        assert_eq!(delay(u32::MAX, base, max, 0.5), Duration::from_secs(300));
        assert_eq!(delay(3, base, max, 0.0), Duration::from_millis(3200));
        assert!(delay(3, base, max, 0.999_999) < Duration::from_millis(4800));
        for _ in 0..100 {
            let u = unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_gates_attempts_until_it_expires() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
        let now = tokio::time::Instant::now();
        assert!(b.ready(now));
        let wait = b.failed(now);
        assert!(wait >= Duration::from_secs(8) && wait < Duration::from_secs(12));
        assert!(!b.ready(now + Duration::from_secs(5)));
        tokio::time::advance(wait).await;
        assert!(b.ready(tokio::time::Instant::now()));
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert!(b.ready(now));
    }
}
