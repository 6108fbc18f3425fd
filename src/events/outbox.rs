//! The outbox's policy: when a queued alert is tried again, when it is given
//! up, which rows a worker starts now, what is pruned, and the offline grace
//! (a `camera_offline` held back in case the camera returns at once).
//!
//! Pure: every function takes `now` (Unix milliseconds, or 90 kHz time for
//! the grace) and its inputs, and returns a decision. Must never read a
//! clock, the store or the configuration; `events::actions` and
//! `store::outbox` do the I/O.

use std::collections::{BTreeMap, HashSet};

use super::{Notice, Phase};
use crate::alerts::Delivery;
use crate::time::Time90k;

/// The first retry comes this long after a failed attempt; each later one
/// twice as long, up to `MAX_BACKOFF_MS`.
pub const FIRST_BACKOFF_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 60_000;
/// Attempts of one action running at once: enough that one slow message does
/// not hold the next, few enough that a slow gateway is not flooded.
pub const IN_FLIGHT: usize = 4;
/// Pending rows the outbox holds, all actions together; past that the
/// oldest pending rows of the action that overflows are failed ("outbox full").
pub const MAX_PENDING: i64 = 10_000;
/// Delivered and failed rows are kept this long (for `GET
/// /api/v1/actions/{name}/outbox` and de-duplication) …
pub const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
/// … and at most this many of them.
pub const KEEP_ROWS: i64 = 10_000;

/// Where a row stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Delivered,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [State::Pending, State::Delivered, State::Failed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// The wait after the `attempts`-th failed attempt: 1, 2, 4 … 60 s.
pub fn backoff_ms(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
}

/// What to do with a row after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Delivered,
    /// Try again at this time, remembering the error.
    RetryAt {
        at_ms: i64,
        error: String,
    },
    /// Given up: a permanent error, or the retry horizon passed.
    Failed {
        error: String,
    },
}

/// The row's next step after its `attempts`-th attempt (counting this one)
/// ended with `outcome` at `now_ms`. A transient failure is retried with
/// backoff, the last retry falling on `give_up_ms` itself; one at or after
/// `give_up_ms` fails the row.
pub fn after_attempt(outcome: Delivery, attempts: u32, give_up_ms: i64, now_ms: i64) -> Step {
    match outcome {
        Delivery::Delivered => Step::Delivered,
        Delivery::Fail(error) => Step::Failed { error },
        Delivery::Retry(error) if now_ms >= give_up_ms => Step::Failed {
            error: format!("gave up after {attempts} attempts: {error}"),
        },
        Delivery::Retry(error) => Step::RetryAt {
            at_ms: (now_ms + backoff_ms(attempts)).min(give_up_ms),
            error,
        },
    }
}

/// A pending row as a worker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub id: i64,
    pub next_attempt_ms: i64,
}

/// Which of `pending` (in the order the store lists them: next attempt,
/// then id) to start now, given those already `in_flight`, and when to look
/// again if nothing else wakes the worker. Rows are started oldest first and
/// at most `IN_FLIGHT` at once.
pub fn plan(pending: &[Due], in_flight: &HashSet<i64>, now_ms: i64) -> (Vec<i64>, Option<i64>) {
    let mut start = Vec::new();
    let mut wake = None;
    let mut slots = IN_FLIGHT.saturating_sub(in_flight.len());
    for r in pending.iter().filter(|r| !in_flight.contains(&r.id)) {
        if r.next_attempt_ms <= now_ms && slots > 0 {
            start.push(r.id);
            slots -= 1;
        } else if r.next_attempt_ms > now_ms {
            wake = Some(wake.map_or(r.next_attempt_ms, |w: i64| w.min(r.next_attempt_ms)));
        }
    }
    (start, wake)
}

/// Finished rows created before this are pruned at `now_ms`.
pub fn prune_before(now_ms: i64) -> i64 {
    now_ms - KEEP_MS
}

/// How many of an action's oldest pending rows to fail so the outbox holds
/// at most `MAX_PENDING` pending rows in all, the action having
/// `action_pending` of them.
pub fn overflow(total_pending: i64, action_pending: i64) -> i64 {
    (total_pending - MAX_PENDING).clamp(0, action_pending.max(0))
}

/// `camera_offline` notices held back per (action, channel) until their
/// action's grace passes: a camera that returns within it (a reboot, a
/// dropped link) sends neither the offline nor the online alert.
#[derive(Default)]
pub struct Grace {
    held: BTreeMap<(usize, u32), (Time90k, Notice)>,
}

/// What the grace makes of a notice for one action.
#[derive(Debug, PartialEq, Eq)]
pub enum Hold {
    /// Announce it now.
    Pass,
    /// Held back until its grace passes (`release`).
    Held,
    /// Dropped: the online that ends a withheld offline.
    Dropped,
}

impl Grace {
    /// Offers notice `n` for action `action`, whose grace is `grace` ticks.
    pub fn offer(&mut self, action: usize, grace: i64, n: &Notice, now: Time90k) -> Hold {
        let Some(ch) = n.channel else { return Hold::Pass };
        match n.kind.as_str() {
            "camera_offline" if grace > 0 => {
                // A second offline while one is held changes nothing: the
                // first one's deadline stands.
                self.held.entry((action, ch)).or_insert((now + grace, n.clone()));
                Hold::Held
            }
            "camera_online" => {
                if self.held.remove(&(action, ch)).is_some() {
                    Hold::Dropped
                } else {
                    Hold::Pass
                }
            }
            _ => Hold::Pass,
        }
    }

    /// The held notices whose grace has passed at `now`, oldest first.
    pub fn release(&mut self, now: Time90k) -> Vec<(usize, Notice)> {
        let due: Vec<(usize, u32)> = self
            .held
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| *k)
            .collect();
        let mut out: Vec<(Time90k, usize, Notice)> = due
            .into_iter()
            .filter_map(|k| self.held.remove(&k).map(|(at, n)| (at, k.0, n)))
            .collect();
        out.sort_by_key(|(at, a, n)| (*at, *a, n.id));
        out.into_iter().map(|(_, a, n)| (a, n)).collect()
    }

    /// When the next held notice is due.
    pub fn next_deadline(&self) -> Option<Time90k> {
        self.held.values().map(|(at, _)| *at).min()
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Whether `n` is an instant or start worth a picture on MQTT's snapshot
/// topic (an end's picture is its start's).
pub fn wants_picture(n: &Notice) -> bool {
    n.channel.is_some() && n.phase != Phase::End && n.kind != "delivery_failed"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<i64> = (1..=9).map(backoff_ms).collect();
        assert_eq!(
            waits,
            vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(u32::MAX), 60_000);
    }

    #[test]
    fn transient_errors_are_retried_until_the_horizon_then_failed() {
        let give_up = 10_000;
        let r = |e: &str| Delivery::Retry(e.into());
        assert_eq!(after_attempt(Delivery::Delivered, 3, give_up, 99_999), Step::Delivered);
        assert_eq!(
            after_attempt(r("refused"), 1, give_up, 0),
            Step::RetryAt {
                at_ms: 1_000,
                error: "refused".into()
            }
        );
        assert_eq!(
            after_attempt(r("refused"), 4, give_up, 1_000),
            Step::RetryAt {
                at_ms: 9_000,
                error: "refused".into()
            }
        );
        // The backoff would pass the horizon: the last try is at the horizon.
        assert_eq!(
            after_attempt(r("refused"), 5, give_up, 9_000),
            Step::RetryAt {
                at_ms: give_up,
                error: "refused".into()
            }
        );
        assert_eq!(
            after_attempt(r("refused"), 6, give_up, give_up),
            Step::Failed {
                error: "gave up after 6 attempts: refused".into()
            }
        );
        // A permanent error fails at once, whatever the horizon.
        assert_eq!(
            after_attempt(Delivery::Fail("HTTP 404".into()), 1, give_up, 0),
            Step::Failed {
                error: "HTTP 404".into()
            }
        );
    }

    #[test]
    fn a_whole_retry_horizon_follows_the_schedule() {
        // retry_for = 3 s, every attempt refused: tries at 0, 1, 3 s (the
        // third capped to the horizon), then failed.
        let give_up = 3_000;
        let mut now = 0;
        let mut tries = vec![];
        for attempts in 1.. {
            tries.push(now);
            match after_attempt(Delivery::Retry("x".into()), attempts, give_up, now) {
                Step::RetryAt { at_ms, .. } => now = at_ms,
                Step::Failed { .. } => break,
                Step::Delivered => unreachable!(),
            }
        }
        assert_eq!(tries, vec![0, 1_000, 3_000]);
    }

    fn due(id: i64, at: i64) -> Due {
        Due {
            id,
            next_attempt_ms: at,
        }
    }

    #[test]
    fn plan_starts_due_rows_oldest_first_up_to_the_limit() {
        let rows = [
            due(1, 0),
            due(2, 5),
            due(3, 10),
            due(4, 10),
            due(5, 10),
            due(6, 50),
            due(7, 20),
        ];
        let none = HashSet::new();
        let (start, wake) = plan(&rows, &none, 10);
        assert_eq!(start, vec![1, 2, 3, 4]);
        assert_eq!(wake, Some(20));
        // Rows in flight are not started again and take slots.
        let flying: HashSet<i64> = [1, 2, 3].into();
        let (start, wake) = plan(&rows, &flying, 10);
        assert_eq!(start, vec![4]);
        assert_eq!(wake, Some(20));
        // All slots taken: nothing starts; a due row waits for a slot (the
        // worker wakes when an attempt ends), not for a timer.
        let full: HashSet<i64> = [1, 2, 3, 4].into();
        assert_eq!(plan(&rows, &full, 10), (vec![], Some(20)));
        // Nothing pending, nothing to wake for.
        assert_eq!(plan(&[], &none, 10), (vec![], None));
        // Nothing due yet.
        assert_eq!(plan(&[due(9, 100)], &none, 10), (vec![], Some(100)));
    }

    #[test]
    fn overflow_fails_only_past_the_bound_and_only_the_actions_own() {
        assert_eq!(overflow(MAX_PENDING, 10), 0);
        assert_eq!(overflow(MAX_PENDING + 3, 10), 3);
        assert_eq!(overflow(MAX_PENDING + 30, 10), 10);
        assert_eq!(overflow(0, 0), 0);
        assert_eq!(prune_before(KEEP_MS + 5), 5);
    }

    fn notice(id: i64, ch: u32, kind: &str) -> Notice {
        Notice {
            id,
            channel: Some(ch),
            kind: kind.into(),
            phase: Phase::Instant,
            start: Time90k(0),
            end: None,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn an_offline_camera_that_returns_within_the_grace_sends_nothing() {
        let mut g = Grace::default();
        let grace = 30 * 90_000;
        let t = |s: i64| Time90k(s * 90_000);
        assert_eq!(g.offer(0, grace, &notice(1, 1, "camera_offline"), t(0)), Hold::Held);
        assert_eq!(g.next_deadline(), Some(t(30)));
        assert!(g.release(t(29)).is_empty());
        // Back after 10 s: neither the offline nor the online is announced.
        assert_eq!(g.offer(0, grace, &notice(2, 1, "camera_online"), t(10)), Hold::Dropped);
        assert!(g.release(t(60)).is_empty());
        assert_eq!(g.held(), 0);
        // An online with nothing withheld is announced.
        assert_eq!(g.offer(0, grace, &notice(3, 1, "camera_online"), t(70)), Hold::Pass);
    }

    #[test]
    fn an_offline_camera_still_offline_after_the_grace_is_announced_once() {
        let mut g = Grace::default();
        let grace = 30 * 90_000;
        let t = |s: i64| Time90k(s * 90_000);
        assert_eq!(g.offer(0, grace, &notice(1, 1, "camera_offline"), t(0)), Hold::Held);
        // A repeated offline keeps the first deadline.
        assert_eq!(g.offer(0, grace, &notice(2, 1, "camera_offline"), t(20)), Hold::Held);
        // Another channel and another action have their own.
        assert_eq!(g.offer(0, grace, &notice(3, 2, "camera_offline"), t(5)), Hold::Held);
        assert_eq!(
            g.offer(1, 10 * 90_000, &notice(1, 1, "camera_offline"), t(0)),
            Hold::Held
        );
        let out: Vec<(usize, i64)> = g.release(t(30)).into_iter().map(|(a, n)| (a, n.id)).collect();
        assert_eq!(out, vec![(1, 1), (0, 1)]);
        let out: Vec<(usize, i64)> = g.release(t(35)).into_iter().map(|(a, n)| (a, n.id)).collect();
        assert_eq!(out, vec![(0, 3)]);
        // The online after an announced offline is announced.
        assert_eq!(g.offer(0, grace, &notice(4, 1, "camera_online"), t(40)), Hold::Pass);
        // Zero grace, other kinds and NVR-wide events pass at once.
        assert_eq!(g.offer(2, 0, &notice(5, 1, "camera_offline"), t(0)), Hold::Pass);
        assert_eq!(g.offer(0, grace, &notice(6, 1, "motion"), t(0)), Hold::Pass);
        let mut wide = notice(7, 1, "camera_offline");
        wide.channel = None;
        assert_eq!(g.offer(0, grace, &wide, t(0)), Hold::Pass);
        assert_eq!(g.next_deadline(), None);
    }

    #[test]
    fn states_round_trip_and_pictures_are_for_starts_on_channels() {
        for s in [State::Pending, State::Delivered, State::Failed] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("lost"), None);
        let mut n = notice(1, 1, "motion");
        assert!(wants_picture(&n));
        n.phase = Phase::End;
        assert!(!wants_picture(&n));
        n.phase = Phase::Start;
        n.channel = None;
        assert!(!wants_picture(&n));
        assert!(!wants_picture(&notice(2, 1, "delivery_failed")));
    }
}
