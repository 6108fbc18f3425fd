//! Rate limiting for repeated log lines: a camera that fails the same way on
//! every retry (every few seconds, for days), or a flood that makes the
//! writer end events for the same reason a hundred times a second, gets one
//! log line, then one a minute with a count, instead of a line per repeat.
//!
//! Owns only the decision, as a pure function of the message and an injected
//! `now`. Must never hold more than one message, and never suppress a message
//! that differs from the previous one (a changed failure is news).

use std::time::{Duration, Instant};

/// A repeated failure is logged again after this long, with a count.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    /// The last message's key, when it was last logged, and how many times
    /// it recurred unlogged since.
    last: Option<(String, Instant, u64)>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(REPEAT_EVERY)
    }
}

/// Two failures are "the same" when they differ only in numbers: ports,
/// byte offsets and times change from one attempt to the next.
fn key(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(512));
    let mut in_digits = false;
    for c in msg.chars().take(512) {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether to log `msg` now: `Some(n)` to log it, saying it recurred `n`
    /// times unlogged since it was last logged; `None` to stay quiet.
    pub fn check(&mut self, msg: &str, now: Instant) -> Option<u64> {
        let k = key(msg);
        match &mut self.last {
            Some((last, at, suppressed)) if *last == k => {
                if now.saturating_duration_since(*at) >= self.every {
                    let n = *suppressed;
                    *at = now;
                    *suppressed = 0;
                    Some(n)
                } else {
                    *suppressed += 1;
                    None
                }
            }
            _ => {
                self.last = Some((k, now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_logged_repeats_once_a_minute_with_a_count() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        assert_eq!(l.check("refused", t0), Some(0));
        for s in 1..60 {
            assert_eq!(l.check("refused", t0 + Duration::from_secs(s)), None, "at {s} s");
        }
        assert_eq!(l.check("refused", t0 + Duration::from_secs(60)), Some(59));
        assert_eq!(l.check("refused", t0 + Duration::from_secs(61)), None);
        assert_eq!(l.check("refused", t0 + Duration::from_secs(125)), Some(1));
    }

    #[test]
    fn a_different_failure_is_logged_at_once() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        assert_eq!(l.check("refused", t0), Some(0));
        assert_eq!(l.check("401 Unauthorized", t0), Some(0));
        // And going back to the first is a change too.
        assert_eq!(l.check("refused", t0), Some(0));
        assert_eq!(l.check("refused", t0), None);
    }

    #[test]
    fn failures_differing_only_in_numbers_are_the_same() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        assert_eq!(l.check("127.0.0.1:40112: byte 65601: head too large", t0), Some(0));
        assert_eq!(l.check("127.0.0.1:40188: byte 65577: head too large", t0), None);
        assert_eq!(key("a12b3"), "a#b#");
    }

    #[test]
    fn time_going_backwards_does_not_panic_or_log() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut l = LogLimiter::default();
        assert_eq!(l.check("x", t0), Some(0));
        assert_eq!(l.check("x", t0 - Duration::from_secs(5)), None);
    }
}
