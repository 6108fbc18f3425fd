//! Rate limits for what clients may ask of the NVR (event triggers now,
//! logins later): token buckets keyed by who asks (client address, source)
//! and what they touch (a channel), with the current time passed in.
//!
//! Pure: no clock, no I/O. Bounded: at most `max_keys` buckets are kept; when
//! more keys appear, buckets that have refilled completely (they remember
//! nothing worth keeping) are dropped first, then the least recently used.
//! Must never let a flood of distinct keys grow memory without limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One bucket's rule: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct Throttle {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
}

impl Throttle {
    pub fn new(rate: Rate, max_keys: usize) -> Throttle {
        Throttle {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let el = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + el * self.rate.per_second).min(self.rate.burst)
    }

    /// Whether `key` has a token now (taking it), or how long until it will.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        let tokens = match self.buckets.get(key) {
            Some(&b) => self.refilled(b, now),
            None => {
                self.make_room(now);
                self.rate.burst
            }
        };
        if tokens >= 1.0 {
            self.buckets.insert(
                key.to_string(),
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
            Ok(())
        } else {
            self.buckets.insert(key.to_string(), Bucket { tokens, at: now });
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate.per_second))
        }
    }

    /// Whether `key` has a token now, without taking it (or how long until it will).
    pub fn peek(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let tokens = self
            .buckets
            .get(key)
            .map_or(self.rate.burst, |&b| self.refilled(b, now));
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate.per_second))
        }
    }

    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.max_keys {
            return;
        }
        let burst = self.rate.burst;
        let full: Vec<String> = self
            .buckets
            .iter()
            .filter(|(_, &b)| self.refilled(b, now) >= burst)
            .map(|(k, _)| k.clone())
            .collect();
        for k in full {
            self.buckets.remove(&k);
        }
        if self.buckets.len() >= self.max_keys {
            // Everyone is busy: forget the one seen longest ago (it may get a
            // fresh burst, which costs at most `burst` requests).
            if let Some(k) = self.buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone()) {
                self.buckets.remove(&k);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Seconds to send in `Retry-After` for a wait: at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 2.0,
        burst: 4.0,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut t = Throttle::new(RATE, 100);
        for _ in 0..4 {
            assert!(t.check("a", t0).is_ok());
        }
        let wait = t.check("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        // Half a second later one token is back, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert!(t.check("a", t1).is_ok());
        assert!(t.check("a", t1).is_err());
        // Another key has its own bucket.
        assert!(t.check("b", t1).is_ok());
        // Refusals cost nothing extra: after 10 s of hammering, the rate holds.
        let mut ok = 0;
        for i in 0..10_000 {
            if t.check("a", t1 + Duration::from_millis(i)).is_ok() {
                ok += 1;
            }
        }
        assert!((19..=20).contains(&ok), "2 per second for 10 s: {ok}");
    }

    #[test]
    fn distinct_keys_never_grow_past_the_bound() {
        let t0 = Instant::now();
        let mut t = Throttle::new(RATE, 64);
        for i in 0..100_000 {
            let _ = t.check(&format!("source-{i}"), t0 + Duration::from_micros(i));
            assert!(t.len() <= 64);
        }
        // Buckets that refilled completely go first: a busy key keeps its debt.
        let mut t = Throttle::new(RATE, 2);
        t.check("old", t0).unwrap();
        let later = t0 + Duration::from_secs(100);
        for _ in 0..4 {
            t.check("busy", later).unwrap();
        }
        t.check("new", later).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.check("busy", later).is_err(), "the exhausted bucket was kept");
    }
}
