//! The control state around the model: the power switch, the armed cut
//! trigger, the injected faults, the trace and the counters. `Control::begin`
//! decides, before an operation touches the model, whether it happens at all
//! (power off, cut before), whether a fault answers instead, and whether the
//! power goes right after it.
//!
//! Owns: matching operations against triggers and faults, and counting.
//! Must never touch FUSE or sleep; the caller holds the lock around
//! `begin`, the model operation and `finish`, which is what makes a cut
//! atomic with respect to every operation.

use std::time::Duration;

use crate::model::Model;
use crate::{Match, OpKind, OpRecord, Stats, When};

struct Trigger {
    at: Match,
    nth: u64,
    when: When,
    seen: u64,
}

/// What `begin` decided for an operation that may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) struct Verdict {
    /// An injected error to answer instead of doing the operation.
    pub fault: Option<i32>,
    /// The armed trigger fired with `When::After`: cut once the operation
    /// took effect.
    cut_after: bool,
}

pub(crate) struct Control {
    pub model: Model,
    cut_time_us: Option<i64>,
    trigger: Option<Trigger>,
    fail_fsync: Vec<(String, u64)>,
    slow_fsync: Duration,
    enospc: Vec<String>,
    fail_reads: Vec<String>,
    trace: Vec<OpRecord>,
    stats: Stats,
}

fn traced(op: OpKind) -> bool {
    !matches!(op, OpKind::Write | OpKind::Read)
}

impl Control {
    pub(crate) fn new(model: Model) -> Control {
        Control {
            model,
            cut_time_us: None,
            trigger: None,
            fail_fsync: Vec::new(),
            slow_fsync: Duration::ZERO,
            enospc: Vec::new(),
            fail_reads: Vec::new(),
            trace: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Decides whether operation `op` on `paths` (for a rename: source, then
    /// destination) happens. `Err(errno)`: it fails without effect.
    pub(crate) fn begin(&mut self, op: OpKind, paths: &[&str], now_us: i64) -> Result<Verdict, i32> {
        if self.cut_time_us.is_some() {
            return Err(libc::EIO);
        }
        match op {
            OpKind::Write => self.stats.writes += 1,
            OpKind::Fsync => self.stats.fsyncs += 1,
            OpKind::FsyncDir => self.stats.dir_fsyncs += 1,
            _ => {}
        }
        if traced(op) {
            let seq = self.trace.len() as u64 + 1;
            let path = paths.last().copied().unwrap_or_default().to_owned();
            self.trace.push(OpRecord { seq, op, path });
        }
        let matches = |pattern: &str| paths.iter().any(|p| p.contains(pattern));
        let mut cut_after = false;
        if let Some(t) = &mut self.trigger {
            if t.at.op == op && matches(&t.at.path_contains) {
                t.seen += 1;
                if t.seen == t.nth {
                    let when = t.when;
                    self.trigger = None;
                    match when {
                        When::Before => {
                            self.cut(now_us);
                            return Err(libc::EIO);
                        }
                        When::After => cut_after = true,
                    }
                }
            }
        }
        let fault = match op {
            OpKind::Fsync | OpKind::FsyncDir => {
                let hit = self.fail_fsync.iter_mut().find(|(p, left)| *left > 0 && matches(p));
                hit.map(|(_, left)| {
                    if *left != u64::MAX {
                        *left -= 1;
                    }
                    libc::EIO
                })
            }
            OpKind::Create | OpKind::Mkdir | OpKind::Write => {
                self.enospc.iter().any(|p| matches(p)).then_some(libc::ENOSPC)
            }
            OpKind::Read => self.fail_reads.iter().any(|p| matches(p)).then_some(libc::EIO),
            _ => None,
        };
        if fault.is_some() {
            self.stats.injected_errors += 1;
        }
        Ok(Verdict { fault, cut_after })
    }

    /// Ends an operation that `begin` let through (cuts if it was the trigger).
    pub(crate) fn finish(&mut self, v: Verdict, now_us: i64) {
        if v.cut_after {
            self.cut(now_us);
        }
    }

    pub(crate) fn powered(&self) -> bool {
        self.cut_time_us.is_none()
    }

    /// The power goes: live := durable; a second cut while off changes nothing.
    /// An armed trigger is disarmed (it belonged to the run that ended).
    pub(crate) fn cut(&mut self, now_us: i64) {
        if self.cut_time_us.is_some() {
            return;
        }
        self.model.cut();
        self.cut_time_us = Some(now_us);
        self.trigger = None;
        self.stats.cuts += 1;
    }

    pub(crate) fn cut_at(&mut self, at: Match, nth: u64, when: When) {
        self.trigger = Some(Trigger { at, nth, when, seen: 0 });
    }

    pub(crate) fn cut_time_us(&self) -> Option<i64> {
        self.cut_time_us
    }

    pub(crate) fn power_on(&mut self) {
        self.cut_time_us = None;
    }

    pub(crate) fn fail_fsync(&mut self, p: &str, count: u64) {
        self.fail_fsync.push((p.to_owned(), count));
    }

    pub(crate) fn slow_fsync(&mut self, d: Duration) {
        self.slow_fsync = d;
    }

    pub(crate) fn fsync_delay(&self) -> Duration {
        self.slow_fsync
    }

    pub(crate) fn enospc(&mut self, p: &str) {
        self.enospc.push(p.to_owned());
    }

    pub(crate) fn fail_reads(&mut self, p: &str) {
        self.fail_reads.push(p.to_owned());
    }

    pub(crate) fn clear_faults(&mut self) {
        self.fail_fsync.clear();
        self.slow_fsync = Duration::ZERO;
        self.enospc.clear();
        self.fail_reads.clear();
    }

    pub(crate) fn trace(&self) -> Vec<OpRecord> {
        self.trace.clone()
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            unsynced_bytes: self.model.unsynced_bytes(),
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn ctl() -> Control {
        Control::new(Model::new(1 << 20, UNIX_EPOCH))
    }

    fn m(op: OpKind, p: &str) -> Match {
        Match {
            op,
            path_contains: p.into(),
        }
    }

    #[test]
    fn cut_at_the_nth_matching_op_before() {
        let mut c = ctl();
        c.cut_at(m(OpKind::Fsync, "seg"), 2, When::Before);
        assert!(c.begin(OpKind::Fsync, &["db"], 1).is_ok());
        assert!(c.begin(OpKind::FsyncDir, &["seg"], 1).is_ok());
        assert!(c.begin(OpKind::Fsync, &["seg1"], 1).is_ok());
        assert_eq!(c.begin(OpKind::Fsync, &["seg2"], 7), Err(libc::EIO));
        assert_eq!(c.cut_time_us(), Some(7));
        assert_eq!(
            c.begin(OpKind::Read, &["x"], 8),
            Err(libc::EIO),
            "everything fails after a cut"
        );
        c.power_on();
        assert!(c.begin(OpKind::Fsync, &["seg3"], 9).is_ok(), "the trigger fired once");
        assert_eq!(c.stats().cuts, 1);
    }

    #[test]
    fn cut_at_after_lets_the_op_happen_first() {
        let mut c = ctl();
        c.cut_at(m(OpKind::Rename, "b"), 1, When::After);
        let v = c.begin(OpKind::Rename, &["a", "b"], 1).unwrap();
        assert_eq!(v.fault, None);
        assert!(c.powered());
        c.finish(v, 2);
        assert_eq!(c.cut_time_us(), Some(2));
        let t = c.trace();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].seq, t[0].op, t[0].path.as_str()), (1, OpKind::Rename, "b"));
    }

    #[test]
    fn faults_match_paths_and_count_down() {
        let mut c = ctl();
        c.fail_fsync("video/", 2);
        c.enospc("full/");
        c.fail_reads("bad");
        let f = |c: &mut Control, op, p| c.begin(op, &[p], 0).unwrap().fault;
        assert_eq!(f(&mut c, OpKind::Fsync, "db"), None);
        assert_eq!(f(&mut c, OpKind::Fsync, "video/1"), Some(libc::EIO));
        assert_eq!(f(&mut c, OpKind::FsyncDir, "video/"), Some(libc::EIO));
        assert_eq!(f(&mut c, OpKind::Fsync, "video/1"), None, "count used up");
        assert_eq!(f(&mut c, OpKind::Write, "full/x"), Some(libc::ENOSPC));
        assert_eq!(f(&mut c, OpKind::Create, "full/y"), Some(libc::ENOSPC));
        assert_eq!(f(&mut c, OpKind::Read, "full/x"), None);
        assert_eq!(f(&mut c, OpKind::Read, "a/bad"), Some(libc::EIO));
        assert_eq!(c.stats().injected_errors, 5);
        c.fail_fsync("", u64::MAX);
        for _ in 0..3 {
            assert_eq!(f(&mut c, OpKind::Fsync, "any"), Some(libc::EIO));
        }
        c.clear_faults();
        assert_eq!(f(&mut c, OpKind::Fsync, "any"), None);
        assert_eq!(f(&mut c, OpKind::Read, "a/bad"), None);
    }
}
