//! The site-wide bandwidth cap of gap fill: one token bucket that every
//! replay draws from, so that however many cameras replay at once, together
//! they fetch at most `[gapfill] rate` bytes per second (plus one burst).
//!
//! Pure: time is passed in as the monotonic time since an origin the caller
//! keeps. Must never sleep or read a clock itself; the caller sleeps for
//! what `take` answers, and TCP's flow control slows the camera down.

use std::time::Duration;

/// A token bucket in bytes that may run into debt: a frame is taken whole
/// (a 600 kB key frame is never split), and the debt is paid by waiting.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Bytes available now; negative while in debt.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Duration,
}

impl TokenBucket {
    /// A full bucket of `burst` bytes refilled at `rate` bytes per second.
    pub fn new(rate: u64, burst: u64, now: Duration) -> TokenBucket {
        TokenBucket {
            rate: rate.max(1),
            burst,
            tokens: burst as f64,
            at: now,
        }
    }

    /// The cap now, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// A new cap (a live configuration change); the bytes owed so far stay owed.
    pub fn set_rate(&mut self, rate: u64, now: Duration) {
        self.refill(now);
        self.rate = rate.max(1);
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst as f64);
        self.at = self.at.max(now);
    }

    /// Takes `bytes` and says how long the taker must wait before taking
    /// more: zero while within the burst, else until the debt is repaid.
    pub fn take(&mut self, bytes: u64, now: Duration) -> Duration {
        self.refill(now);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn within_the_burst_nothing_waits() {
        let mut b = TokenBucket::new(1000, 1000, MS(0));
        assert_eq!(b.take(400, MS(0)), Duration::ZERO);
        assert_eq!(b.take(600, MS(0)), Duration::ZERO);
        // The bucket is empty: 100 bytes more cost 0.1 s.
        assert_eq!(b.take(100, MS(0)), MS(100));
    }

    #[test]
    fn a_frame_larger_than_the_burst_is_taken_whole_and_paid_for() {
        let mut b = TokenBucket::new(1000, 100, MS(0));
        assert_eq!(b.take(2100, MS(0)), MS(2000));
        // Half the wait later, half the debt is left.
        assert_eq!(b.take(0, MS(1000)), MS(1000));
        assert_eq!(b.take(0, MS(2000)), Duration::ZERO);
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let mut b = TokenBucket::new(1000, 500, MS(0));
        assert_eq!(b.take(500, MS(0)), Duration::ZERO);
        // An hour idle refills only the burst.
        let hour = Duration::from_secs(3600);
        assert_eq!(b.take(500, hour), Duration::ZERO);
        assert_eq!(b.take(1000, hour), MS(1000));
    }

    #[test]
    fn the_long_run_rate_is_the_cap_whatever_the_frame_sizes() {
        // Exhaustive over small frame sizes: a taker that waits what it is
        // told fetches at most rate * t + burst bytes by any time t.
        for size in [1u64, 7, 100, 999, 1000, 5000] {
            let mut b = TokenBucket::new(1000, 1000, MS(0));
            let (mut now, mut taken) = (Duration::ZERO, 0u64);
            while now < Duration::from_secs(20) {
                let wait = b.take(size, now);
                taken += size;
                // Once the wait is served, the total is within the cap.
                let done = now + wait;
                assert!(
                    taken as f64 <= 1000.0 * done.as_secs_f64() + 1000.0 + 1e-6,
                    "size {size}: {taken} bytes by {done:?}"
                );
                now = done.max(now + MS(1));
            }
            assert!(taken >= 19_000, "size {size}: the cap is also reached ({taken})");
        }
    }

    #[test]
    fn several_takers_share_one_cap() {
        let mut b = TokenBucket::new(1000, 0, MS(0));
        // Two replays alternate 250-byte frames: each waits for both.
        let w1 = b.take(250, MS(0));
        let w2 = b.take(250, MS(0));
        assert_eq!((w1, w2), (MS(250), MS(500)));
    }

    #[test]
    fn a_new_rate_applies_to_the_debt_left() {
        let mut b = TokenBucket::new(1000, 0, MS(0));
        assert_eq!(b.take(1000, MS(0)), MS(1000));
        b.set_rate(2000, MS(500));
        assert_eq!(b.rate(), 2000);
        // 500 bytes still owed at 2000/s: 0.25 s.
        assert_eq!(b.take(0, MS(500)), MS(250));
        b.set_rate(0, MS(500));
        assert_eq!(b.rate(), 1, "a zero rate is taken as the least");
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut b = TokenBucket::new(1000, 0, MS(1000));
        assert_eq!(b.take(100, MS(500)), MS(100));
    }
}
