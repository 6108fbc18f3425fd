//! Rate limiting of actions, so that a flapping sensor cannot flood a phone,
//! a mailbox or a webhook.
//!
//! Pure: per action, channel and event type, at most one start (or instant)
//! per `min_interval`; an end is announced only if its start was. Must never
//! read a clock: callers pass the time.

use std::collections::{HashMap, HashSet};

use super::{Notice, Phase};
use crate::time::Time90k;

#[derive(Default)]
pub struct RateLimiter {
    last: HashMap<(usize, Option<u32>, String), Time90k>,
    /// (action, event id) of starts that were announced.
    announced: HashSet<(usize, i64)>,
    pub suppressed: u64,
}

impl RateLimiter {
    /// Whether action `action` (with its `min_interval` in 90 kHz ticks) may
    /// announce `n` at `now`.
    pub fn admit(&mut self, action: usize, min_interval: i64, n: &Notice, now: Time90k) -> bool {
        match n.phase {
            Phase::End => self.announced.remove(&(action, n.id)),
            Phase::Start | Phase::Instant => {
                let key = (action, n.channel, n.kind.clone());
                if let Some(&t) = self.last.get(&key) {
                    if now - t < min_interval {
                        self.suppressed += 1;
                        return false;
                    }
                }
                self.last.insert(key, now);
                if n.phase == Phase::Start {
                    self.announced.insert((action, n.id));
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: i64, ch: u32, kind: &str, phase: Phase) -> Notice {
        Notice {
            id,
            channel: Some(ch),
            kind: kind.into(),
            phase,
            start: Time90k(0),
            end: None,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_flapping_sensor_is_announced_once_per_interval() {
        let mut r = RateLimiter::default();
        let min = 60 * 90_000;
        let mut admitted = Vec::new();
        // A door contact flapping every second for two minutes.
        for s in 0..120i64 {
            let t = Time90k(s * 90_000);
            let id = s;
            if r.admit(0, min, &notice(id, 1, "door", Phase::Start), t) {
                admitted.push((s, "start"));
            }
            if r.admit(0, min, &notice(id, 1, "door", Phase::End), t + 45_000) {
                admitted.push((s, "end"));
            }
        }
        assert_eq!(admitted, vec![(0, "start"), (0, "end"), (60, "start"), (60, "end")]);
        assert_eq!(r.suppressed, 118);
        // Other channels, types and actions have their own allowance.
        assert!(r.admit(0, min, &notice(500, 2, "door", Phase::Start), Time90k(0)));
        assert!(r.admit(0, min, &notice(501, 1, "motion", Phase::Start), Time90k(0)));
        assert!(r.admit(1, min, &notice(502, 1, "door", Phase::Start), Time90k(0)));
        // Zero interval lets everything through.
        assert!(r.admit(2, 0, &notice(503, 1, "door", Phase::Instant), Time90k(0)));
        assert!(r.admit(2, 0, &notice(504, 1, "door", Phase::Instant), Time90k(0)));
    }
}
