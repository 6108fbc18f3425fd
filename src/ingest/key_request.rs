//! When a session asks its camera for a key frame (an RTCP Picture Loss
//! Indication): right after PLAY, so that a takeover does not wait up to a GOP
//! for the camera's next one, and again whenever the session waits for a key
//! frame (after packet loss) — at most once per interval, because one key
//! frame answers every request and a camera that ignores them must not be
//! flooded.
//!
//! Owns only that decision over instants it is given; must never read a
//! clock or touch a socket.

use std::time::{Duration, Instant};

/// The least time between two requests of one session.
pub const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, Default)]
pub struct KeyFrameAsk {
    last: Option<Instant>,
    /// Requests made in this session.
    pub count: u64,
}

impl KeyFrameAsk {
    /// Whether to ask now, given that the session waits for a key frame.
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|t| now.saturating_duration_since(t) >= INTERVAL)
    }

    /// The request went out at `now`.
    pub fn asked(&mut self, now: Instant) {
        self.last = Some(now);
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_at_once_then_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut a = KeyFrameAsk::default();
        assert!(a.due(t0), "the first request is never held back");
        a.asked(t0);
        for ms in [0, 1, 40, 500, 999] {
            assert!(!a.due(t0 + Duration::from_millis(ms)), "{ms} ms after the last");
        }
        assert!(a.due(t0 + INTERVAL));
        a.asked(t0 + INTERVAL);
        assert!(!a.due(t0 + INTERVAL + Duration::from_millis(10)));
        assert_eq!(a.count, 2);
        // A clock that went backwards never makes a request due early.
        assert!(!a.due(t0));
    }

    #[test]
    fn a_request_that_could_not_be_sent_is_retried_at_the_next_chance() {
        let t0 = Instant::now();
        let a = KeyFrameAsk::default();
        // `asked` is called only for a request that went out.
        assert!(a.due(t0));
        assert!(a.due(t0 + Duration::from_millis(1)));
        assert_eq!(a.count, 0);
    }
}
