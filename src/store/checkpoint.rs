//! The index's checkpointer: the `store-checkpoint` thread, which copies
//! SQLite's write-ahead log into the database file once a second, on its own
//! connection, and so makes every commit before it durable.
//!
//! Why it exists: the writer commits a flush round's progress, each new
//! segment's row and each finished segment with `synchronous = NORMAL`
//! (`db::set_writer_mode`), so none of those commits waits for an fsync of
//! the log on the writer thread — under another process's heavy writeback one
//! such fsync took 150 ms, and a rollover of 256 channels is 256 commits. The
//! files stay the truth: a round's fdatasyncs make the frames durable before
//! their progress is committed, and after a power cut repair rebuilds any row
//! whose commit the cut undid from its file (`repair`, `orphans`). What must
//! not be undone is committed with `synchronous = FULL` by the writer itself
//! (`db::synced`): retention's marks before their files are unlinked, events,
//! event footage marks, and an explicit sync. This thread bounds what a power cut can undo of the
//! rest to about a second, and keeps the log from growing: a passive
//! checkpoint syncs the log before it copies and the database file after.
//!
//! Must never take the write lock (passive checkpoints only), so the writer
//! never waits for it; the writer's own automatic checkpoint is kept only as
//! a backstop far above what this thread lets the log reach.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::health::SharedWriterStats;
use super::periodic::{self, Periodic, Schedule};

/// How often the log is checkpointed, and so made durable.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Starts the `store-checkpoint` thread on its own connection to `db_path`;
/// dropping the handle stops it after one last checkpoint.
pub fn spawn(db_path: PathBuf, stats: SharedWriterStats) -> Option<Periodic> {
    let schedule = Schedule {
        name: "store-checkpoint",
        interval: INTERVAL,
        at_start: false,
        at_stop: true,
    };
    periodic::spawn(schedule, db_path, move |conn, _| {
        let t = Instant::now();
        match passive(conn) {
            Ok((log, copied)) => {
                debug!(log_pages = log, copied_pages = copied, "index checkpointed");
                if let Ok(mut s) = stats.lock() {
                    s.checkpoint.record(t.elapsed());
                }
            }
            // The writer's own automatic checkpoint is the backstop.
            Err(e) => warn!("cannot checkpoint the index: {e}"),
        }
    })
}

/// One passive checkpoint: (pages in the log, pages copied into the
/// database). It syncs the log before copying and the database after.
pub fn passive(conn: &rusqlite::Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;

    fn synchronous(c: &rusqlite::Connection) -> i64 {
        c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_writer_commits_unsynced_except_inside_synced() {
        let dir = tempfile::tempdir().unwrap();
        let c = db::open(&dir.path().join("index.db")).unwrap();
        assert_eq!(synchronous(&c), 2, "every other connection commits synced (FULL)");
        db::set_writer_mode(&c).unwrap();
        assert_eq!(synchronous(&c), 1, "the writer's: NORMAL");
        let pages: i64 = c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
        assert_eq!(pages, 16_384, "the writer checkpoints only as a backstop");
        let inside = db::synced(&c, || Ok(synchronous(&c))).unwrap();
        assert_eq!(inside, 2, "FULL inside synced");
        assert_eq!(synchronous(&c), 1, "and NORMAL again after");
        let failed: rusqlite::Result<()> = db::synced(&c, || Err(rusqlite::Error::InvalidQuery));
        assert!(failed.is_err());
        assert_eq!(synchronous(&c), 1, "NORMAL again after a failure too");
    }

    #[test]
    fn the_thread_checkpoints_what_the_writer_committed_and_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let c = db::open(&path).unwrap();
        db::set_writer_mode(&c).unwrap();
        c.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        for _ in 0..50 {
            c.execute("INSERT INTO t VALUES (zeroblob(8000))", []).unwrap();
        }
        let stats = SharedWriterStats::default();
        let ck = spawn(path.clone(), stats.clone()).expect("the thread starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.lock().unwrap().checkpoint.count() == 0 {
            assert!(Instant::now() < deadline, "no checkpoint within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Everything the writer committed is in the database file now: a
        // checkpoint finds nothing left to copy.
        let (log, copied) = passive(&c).unwrap();
        assert_eq!(log, copied, "the log was copied whole");
        assert!(log > 0, "the writer's commits went through the log");
        drop(ck);
        // Dropping it ends the thread after its last checkpoint; the count
        // stops growing.
        std::thread::sleep(INTERVAL + Duration::from_millis(500));
        let n = stats.lock().unwrap().checkpoint.count();
        std::thread::sleep(INTERVAL + Duration::from_millis(300));
        assert_eq!(stats.lock().unwrap().checkpoint.count(), n, "the thread stopped");
    }
}
