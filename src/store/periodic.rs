//! The store's periodic background threads (`store-checkpoint`,
//! `store-runs`): each works on its own index connection, once per interval,
//! until the handle returned by `spawn` is dropped.
//!
//! Must never run on the writer's connection or block the writer: a thread
//! that cannot open its connection warns and ends, and the store goes on
//! without it (each caller says what covers for it).

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::Duration;

use rusqlite::Connection;
use tracing::warn;

use super::db;

/// When a periodic thread works.
pub struct Schedule {
    /// The thread's name, also used in its warnings.
    pub name: &'static str,
    pub interval: Duration,
    /// Work once at once, before the first interval.
    pub at_start: bool,
    /// Work once more when stopped (a last checkpoint), instead of ending
    /// straight away.
    pub at_stop: bool,
}

/// Keeps a periodic thread alive; dropping it stops the thread, which ends
/// after the work in progress (and the last run, if `at_stop`).
pub struct Periodic {
    _stop: SyncSender<()>,
}

/// Starts a thread that opens `db_path` and calls `work(conn, stopped)` on
/// `schedule`. `stopped()` says whether the handle has been dropped, so long
/// work can end early between steps.
pub fn spawn<F>(schedule: Schedule, db_path: PathBuf, mut work: F) -> Option<Periodic>
where
    F: FnMut(&Connection, &dyn Fn() -> bool) + Send + 'static,
{
    // Nothing is ever sent: dropping the sender is the stop signal, which
    // both the timed wait and `stopped()` see as a disconnection.
    let (tx, rx) = sync_channel::<()>(0);
    let name = schedule.name;
    let r = std::thread::Builder::new().name(name.into()).spawn(move || {
        let conn = match db::open(&db_path) {
            Ok(c) => c,
            Err(e) => {
                warn!(thread = name, "cannot open the index: {e}");
                return;
            }
        };
        let stopped = || !matches!(rx.try_recv(), Err(TryRecvError::Empty));
        if schedule.at_start {
            work(&conn, &stopped);
        }
        loop {
            let stop = !matches!(rx.recv_timeout(schedule.interval), Err(RecvTimeoutError::Timeout));
            if stop && !schedule.at_stop {
                return;
            }
            work(&conn, &stopped);
            if stop {
                return;
            }
        }
    });
    match r {
        Ok(_) => Some(Periodic { _stop: tx }),
        Err(e) => {
            warn!(thread = name, "cannot start: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    fn counting(interval: Duration, at_start: bool, at_stop: bool) -> (Periodic, Arc<AtomicUsize>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let schedule = Schedule {
            name: "test-periodic",
            interval,
            at_start,
            at_stop,
        };
        let p = spawn(schedule, dir.path().join("index.db"), move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .expect("the thread starts");
        (p, runs, dir)
    }

    fn wait_for_runs(runs: &AtomicUsize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "fewer than {n} runs in 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn settle(runs: &AtomicUsize) -> usize {
        // A dropped handle wakes the thread at once; after its last run
        // the count no longer moves.
        std::thread::sleep(Duration::from_millis(300));
        let n = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(runs.load(Ordering::SeqCst), n, "the thread stopped");
        n
    }

    #[test]
    fn works_every_interval_and_stops_when_dropped() {
        let (p, runs, _dir) = counting(Duration::from_millis(100), false, false);
        wait_for_runs(&runs, 3);
        drop(p);
        settle(&runs);
    }

    #[test]
    fn at_start_works_at_once_and_at_stop_once_more() {
        let (p, runs, _dir) = counting(Duration::from_secs(3600), true, true);
        wait_for_runs(&runs, 1);
        // Dropped inside the first (hour-long) interval: only the last run follows.
        drop(p);
        assert_eq!(settle(&runs), 2, "one run at start and one at stop");
    }

    #[test]
    fn without_at_stop_a_drop_ends_it_without_another_run() {
        let (p, runs, _dir) = counting(Duration::from_secs(3600), true, false);
        wait_for_runs(&runs, 1);
        drop(p);
        assert_eq!(settle(&runs), 1, "only the run at start");
    }

    #[test]
    fn stopped_tells_long_work_that_the_handle_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let schedule = Schedule {
            name: "test-periodic",
            interval: Duration::from_secs(3600),
            at_start: true,
            at_stop: false,
        };
        let p = spawn(schedule, dir.path().join("index.db"), move |_, stopped| {
            let before = stopped();
            std::thread::sleep(Duration::from_millis(300));
            let _ = seen_tx.send((before, stopped()));
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(p);
        let (before, after) = seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!before, "not stopped while the handle was held");
        assert!(after, "stopped once it was dropped");
    }
}
