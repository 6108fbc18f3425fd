//! How a pool member waits between attempts to reach etcd, and which of its
//! state changes are worth a log line: a doubling delay between a floor and
//! a ceiling, reset by a session that lasted, and a record of the last state
//! logged so that an etcd outage gives one line, not one per retry. Must
//! never sleep, log or read a clock itself: the caller does, with these
//! answers.

use std::time::Duration;

/// Delays between attempts: `min`, doubling up to `max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let max = max.max(min);
        Backoff { min, max, next: min }
    }
    /// An attempt failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    /// A session was established: the next failure waits `min` again.
    pub fn succeeded(&mut self) {
        self.next = self.min;
    }
}

/// Where a member stands with the pool, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Registered under its lease; not the scheduler.
    Member,
    /// Registered and elected scheduler.
    Scheduler,
    /// etcd unreachable or the session lost; the last assignment is kept.
    Unreachable(String),
}

/// Remembers the last phase logged.
#[derive(Clone, Debug, Default)]
pub struct PhaseLog {
    last: Option<Phase>,
}

impl PhaseLog {
    /// Records `p`; true when it should be logged: a different phase from
    /// the last one. Two failures in a row are one state however their
    /// messages differ (a refused connection, then a timeout).
    pub fn enter(&mut self, p: Phase) -> bool {
        let same = matches!((&self.last, &p), (Some(Phase::Unreachable(_)), Phase::Unreachable(_)))
            || self.last.as_ref() == Some(&p);
        self.last = Some(p);
        !same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let got: Vec<_> = (0..6).map(|_| b.failed()).collect();
        assert_eq!(got, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]);
        b.succeeded();
        assert_eq!(b.failed(), 100 * MS);
    }

    #[test]
    fn ceiling_below_floor_is_the_floor() {
        let mut b = Backoff::new(500 * MS, 100 * MS);
        assert_eq!(b.failed(), 500 * MS);
        assert_eq!(b.failed(), 500 * MS);
    }

    #[test]
    fn logs_once_per_change() {
        let mut l = PhaseLog::default();
        assert!(l.enter(Phase::Unreachable("refused".into())));
        assert!(!l.enter(Phase::Unreachable("timeout".into())));
        assert!(l.enter(Phase::Member));
        assert!(!l.enter(Phase::Member));
        assert!(l.enter(Phase::Scheduler));
        assert!(l.enter(Phase::Unreachable("lease expired".into())));
        assert!(l.enter(Phase::Member));
    }
}
