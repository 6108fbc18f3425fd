//! The upload's bandwidth cap: a token bucket. Pure — it is told the time
//! and answers how long to wait — so the cap is tested without a clock.
//! Must never sleep or read a clock itself.

use std::time::Duration;

/// Tokens are bytes; the bucket refills at `rate` bytes per second and holds
/// at most `burst` bytes, so an idle archiver cannot save up and then send
/// minutes of footage at line rate.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    /// Seconds (of the caller's clock) at the last refill.
    at: f64,
}

impl TokenBucket {
    /// Full at `now` (seconds on any monotonic clock of the caller's).
    pub fn new(rate: u64, burst: u64, now: f64) -> TokenBucket {
        let burst = burst.max(1) as f64;
        TokenBucket {
            rate: rate.max(1) as f64,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: f64) {
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) * self.rate).min(self.burst);
            self.at = now;
        }
    }

    /// Takes `bytes` at `now` and says how long to wait before sending them:
    /// zero while the bucket holds enough, else the time the refill needs.
    /// A request larger than the burst is allowed (the balance goes negative)
    /// and paid for by waiting, so a part of any size passes at the rate.
    pub fn take(&mut self, bytes: u64, now: f64) -> Duration {
        self.refill(now);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` pieces of `size` bytes, sleeping as told; returns the time taken.
    fn run(b: &mut TokenBucket, n: usize, size: u64) -> f64 {
        let mut now = 0.0;
        for _ in 0..n {
            now += b.take(size, now).as_secs_f64();
        }
        now
    }

    #[test]
    fn long_runs_go_at_the_rate() {
        let mut b = TokenBucket::new(1_000_000, 100_000, 0.0);
        // 10 MB at 1 MB/s after a 100 kB burst: 9.9 s.
        let t = run(&mut b, 100, 100_000);
        assert!((t - 9.9).abs() < 1e-6, "{t}");
    }

    #[test]
    fn a_burst_passes_at_once_and_no_more() {
        let mut b = TokenBucket::new(1000, 5000, 0.0);
        assert_eq!(b.take(5000, 0.0), Duration::ZERO);
        assert_eq!(b.take(1000, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let mut b = TokenBucket::new(1000, 2000, 0.0);
        assert_eq!(b.take(2000, 0.0), Duration::ZERO);
        // An hour idle saves 2000 bytes, not 3.6 MB.
        assert_eq!(b.take(2000, 3600.0), Duration::ZERO);
        assert_eq!(b.take(500, 3600.0), Duration::from_millis(500));
    }

    #[test]
    fn a_piece_larger_than_the_burst_waits_its_share() {
        let mut b = TokenBucket::new(1000, 100, 0.0);
        assert_eq!(b.take(1100, 0.0), Duration::from_secs(1));
        // Paid for: after the wait the balance is zero, and refills from there.
        assert_eq!(b.take(1000, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let mut b = TokenBucket::new(1000, 1000, 10.0);
        assert_eq!(b.take(1000, 10.0), Duration::ZERO);
        assert_eq!(b.take(1000, 5.0), Duration::from_secs(1));
    }
}
