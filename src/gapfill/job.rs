//! A gap-fill job and its state machine: what an attempt's outcome does to
//! the job (done, lost, retried with backoff, failed), and how much of the
//! hole the camera no longer had (`LossTracker`).
//!
//! Pure: times are passed in. Must never touch the store or the network.

use crate::time::Time90k;

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its camera (or for its next attempt).
    Pending,
    /// A replay is under way.
    Running,
    /// Everything the camera had of the hole is merged; nothing was missing.
    Done,
    /// Merged what the camera had; `lost_90k` of the hole it no longer had.
    Lost,
    /// Given up: the camera cannot replay, or every attempt failed.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Lost => "lost",
            State::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "running" => State::Running,
            "done" => State::Done,
            "lost" => State::Lost,
            "failed" => State::Failed,
            _ => return None,
        })
    }

    /// No attempt will be made any more.
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Lost | State::Failed)
    }
}

/// Why the hole is there (as far as this NVR can tell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The channel's session dropped and came back (camera or network outage).
    Reconnect,
    /// This NVR stopped (crash, restart) while the channel was bound.
    Startup,
    /// The lead-in of a takeover: footage before the standby's first frame.
    Takeover,
    /// The failure window around a failback.
    Failback,
    /// Asked for by an operator or another component.
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reconnect => "reconnect",
            Reason::Startup => "startup",
            Reason::Takeover => "takeover",
            Reason::Failback => "failback",
            Reason::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Some(match s {
            "reconnect" => Reason::Reconnect,
            "startup" => Reason::Startup,
            "takeover" => Reason::Takeover,
            "failback" => Reason::Failback,
            "manual" => Reason::Manual,
            _ => return None,
        })
    }
}

/// One job as stored in `gapfill_job` and shown by `GET /api/v1/gapfill`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub channel: u32,
    /// The `[[network_camera]]` asked for the footage.
    pub camera: String,
    /// The hole, in this NVR's time.
    pub start: Time90k,
    pub end: Time90k,
    pub reason: Reason,
    pub state: State,
    pub created: Time90k,
    pub updated: Time90k,
    pub attempts: u32,
    pub next_attempt: Time90k,
    /// Footage merged up to here (this NVR's time).
    pub filled_to: Option<Time90k>,
    pub frames: u64,
    pub bytes: u64,
    /// Of the hole, what the camera no longer had.
    pub lost_90k: i64,
    pub last_error: Option<String>,
}

/// Attempts before a job whose replays keep failing is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// The first retry waits this long; each further one twice as long.
pub const FIRST_BACKOFF: i64 = 90_000;
/// Retries never wait longer than this.
pub const MAX_BACKOFF: i64 = 60 * 90_000;

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The replay ran to its end; `lost_90k` of the hole was not on the camera.
    Complete { lost_90k: i64 },
    /// It broke off (network, camera busy, our disk): worth another try.
    Transient(String),
    /// The camera cannot replay at all: retrying will not help.
    Unsupported(String),
}

/// What an outcome changes in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub state: State,
    pub attempts: u32,
    pub next_attempt: Time90k,
    pub lost_90k: i64,
    pub last_error: Option<String>,
}

/// The wait before retry number `attempts` (1 s, 2 s, 4 s, … at most 60 s).
pub fn backoff(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_BACKOFF << doublings).min(MAX_BACKOFF)
}

/// The job after an attempt that ended with `outcome` at `now`.
pub fn after_attempt(job: &Job, outcome: &Outcome, now: Time90k) -> Transition {
    let attempts = job.attempts.saturating_add(1);
    match outcome {
        Outcome::Complete { lost_90k } => Transition {
            state: if *lost_90k > 0 { State::Lost } else { State::Done },
            attempts,
            next_attempt: now,
            lost_90k: (*lost_90k).clamp(0, job.end - job.start),
            last_error: job.last_error.clone(),
        },
        Outcome::Transient(why) if attempts < MAX_ATTEMPTS => Transition {
            state: State::Pending,
            attempts,
            next_attempt: now + backoff(attempts),
            lost_90k: job.lost_90k,
            last_error: Some(why.clone()),
        },
        Outcome::Transient(why) | Outcome::Unsupported(why) => Transition {
            state: State::Failed,
            attempts,
            next_attempt: now,
            lost_90k: job.lost_90k,
            last_error: Some(why.clone()),
        },
    }
}

/// Counts the parts of `[start, end)` (camera time) a replay did not cover:
/// before its first frame, after its last, and between frames further apart
/// than a few frame intervals (the camera's own holes, marked D).
#[derive(Clone, Debug)]
pub struct LossTracker {
    start: Time90k,
    end: Time90k,
    /// Covered up to here (the end of the last frame seen).
    covered_to: Time90k,
    last: Option<Time90k>,
    /// The last interval between two frames: a later frame's duration.
    interval: i64,
    lost: i64,
}

/// Gaps between frames up to this many intervals are jitter, not loss.
const JITTER_INTERVALS: i64 = 3;
/// The interval assumed before two frames were seen (25 fps).
const DEFAULT_INTERVAL: i64 = 3600;

impl LossTracker {
    pub fn new(start: Time90k, end: Time90k) -> LossTracker {
        LossTracker {
            start,
            end,
            covered_to: start,
            last: None,
            interval: DEFAULT_INTERVAL,
            lost: 0,
        }
    }

    /// One replayed frame captured at `t`.
    pub fn frame(&mut self, t: Time90k) {
        if let Some(prev) = self.last {
            if t > prev {
                self.interval = (t - prev).min(90_000);
            }
        }
        let allowed = if self.last.is_some() {
            self.interval * (JITTER_INTERVALS - 1)
        } else {
            // Before the first frame only the camera's frame spacing is
            // allowed: frames start at a key frame at or before `start`.
            DEFAULT_INTERVAL.max(self.interval)
        };
        let from = self.covered_to.max(self.start);
        let to = t.min(self.end);
        if to - from > allowed {
            self.lost += to - from;
        }
        self.last = Some(t);
        self.covered_to = self.covered_to.max(t + self.interval);
    }

    /// The total not covered once the replay ended.
    pub fn finish(&self) -> i64 {
        let from = self.covered_to.max(self.start);
        let tail = self.end - from;
        let tail = if tail > self.interval * (JITTER_INTERVALS - 1) {
            tail
        } else {
            0
        };
        (self.lost + tail).clamp(0, self.end - self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: 1,
            channel: 1,
            camera: "cam".into(),
            start: Time90k(1_000_000),
            end: Time90k(1_000_000 + 30 * 90_000),
            reason: Reason::Reconnect,
            state: State::Running,
            created: Time90k(0),
            updated: Time90k(0),
            attempts: 0,
            next_attempt: Time90k(0),
            filled_to: None,
            frames: 0,
            bytes: 0,
            lost_90k: 0,
            last_error: None,
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let secs: Vec<i64> = (1..=9).map(|a| backoff(a) / 90_000).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), 90_000);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn every_outcome_from_every_attempt_count() {
        let now = Time90k(5_000_000);
        for attempts in 0..=MAX_ATTEMPTS + 1 {
            let j = Job { attempts, ..job() };
            // A complete replay ends the job, lost or done, whatever came before.
            let t = after_attempt(&j, &Outcome::Complete { lost_90k: 0 }, now);
            assert_eq!((t.state, t.attempts, t.lost_90k), (State::Done, attempts + 1, 0));
            let t = after_attempt(&j, &Outcome::Complete { lost_90k: 90_000 }, now);
            assert_eq!((t.state, t.lost_90k), (State::Lost, 90_000));
            // More lost than the hole is clamped to the hole.
            let t = after_attempt(&j, &Outcome::Complete { lost_90k: i64::MAX }, now);
            assert_eq!(t.lost_90k, j.end - j.start);
            // A camera that cannot replay fails the job at once.
            let t = after_attempt(&j, &Outcome::Unsupported("no".into()), now);
            assert_eq!((t.state, t.last_error.as_deref()), (State::Failed, Some("no")));
            // A transient failure retries with backoff until the attempts run out.
            let t = after_attempt(&j, &Outcome::Transient("reset".into()), now);
            if attempts + 1 < MAX_ATTEMPTS {
                assert_eq!(t.state, State::Pending);
                assert_eq!(t.next_attempt, now + backoff(attempts + 1));
            } else {
                assert_eq!(t.state, State::Failed, "attempt {}", attempts + 1);
            }
            assert_eq!(t.last_error.as_deref(), Some("reset"));
        }
    }

    #[test]
    fn states_and_reasons_round_trip_their_names() {
        for s in [State::Pending, State::Running, State::Done, State::Lost, State::Failed] {
            assert_eq!(State::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(State::Done.is_final() && State::Lost.is_final() && State::Failed.is_final());
        assert!(!State::Pending.is_final() && !State::Running.is_final());
        for r in [
            Reason::Reconnect,
            Reason::Startup,
            Reason::Takeover,
            Reason::Failback,
            Reason::Manual,
        ] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(State::parse("finished"), None);
        assert_eq!(Reason::parse(""), None);
    }

    /// Frames every `step` ticks over [from, to).
    fn feed(l: &mut LossTracker, from: i64, to: i64, step: i64) {
        let mut t = from;
        while t < to {
            l.frame(Time90k(t));
            t += step;
        }
    }

    #[test]
    fn a_complete_replay_loses_nothing() {
        let mut l = LossTracker::new(Time90k(36_000), Time90k(360_000));
        // Frames from the key frame before the start to past the end.
        feed(&mut l, 0, 400_000, 3600);
        assert_eq!(l.finish(), 0);
        // Also when the replay stops exactly at the end.
        let mut l = LossTracker::new(Time90k(36_000), Time90k(360_000));
        feed(&mut l, 0, 360_000, 3600);
        assert_eq!(l.finish(), 0);
    }

    #[test]
    fn what_the_camera_no_longer_has_is_counted_once() {
        let s = 90_000;
        // The card starts 10 s into a 30 s hole: 10 s lost at the head.
        let mut l = LossTracker::new(Time90k(0), Time90k(30 * s));
        feed(&mut l, 10 * s, 30 * s, 3600);
        assert_eq!(l.finish(), 10 * s);
        // Its recording ends 5 s early: the tail.
        let mut l = LossTracker::new(Time90k(0), Time90k(30 * s));
        feed(&mut l, 0, 25 * s, 3600);
        assert_eq!(l.finish(), 5 * s);
        // A 4 s hole of its own in the middle (a D flag).
        let mut l = LossTracker::new(Time90k(0), Time90k(30 * s));
        feed(&mut l, 0, 10 * s, 3600);
        feed(&mut l, 14 * s, 30 * s, 3600);
        assert_eq!(l.finish(), 4 * s);
        // Nothing at all: the whole hole.
        assert_eq!(LossTracker::new(Time90k(0), Time90k(30 * s)).finish(), 30 * s);
        // A gap of two frame intervals is jitter, not loss.
        let mut l = LossTracker::new(Time90k(0), Time90k(s));
        feed(&mut l, 0, 36_000, 3600);
        feed(&mut l, 36_000 + 3600, s, 3600);
        assert_eq!(l.finish(), 0);
    }
}
