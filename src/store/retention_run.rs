//! One retention pass carried out: each channel's usage read from the index,
//! the deletions planned (`retention::plan`), the planned segments marked
//! garbage, their files unlinked and the channel directories fsynced, then
//! their rows deleted — in that order, so a crash at any point leaves only
//! rows that start-up repair finishes. Times each step, because the pass runs
//! inline on the writer thread and its length is how long recording waits.
//!
//! Must run only where the writer would (the writer thread, or a benchmark
//! working on an index no writer has open), and never decide what to delete
//! itself: that is the planner's.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use thiserror::Error;
use tracing::warn;

use super::retention::{self, Reason, RetentionPolicy};
use super::{db, segment_path};
use crate::time::Time90k;

/// Segments per channel and kind one pass looks at: a longer backlog is
/// deleted over the following passes.
pub const PASS_LIMIT: usize = 500;

#[derive(Debug, Error)]
pub enum RetentionRunError {
    #[error("cannot read free space of {0}: {1}")]
    FreeSpace(String, std::io::Error),
    #[error("cannot read channel usage: {0}")]
    Usage(rusqlite::Error),
    #[error("cannot mark segments for deletion: {0}")]
    Mark(rusqlite::Error),
}

/// What one pass did and how long each step took.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PassReport {
    pub segments: usize,
    pub freed_bytes: u64,
    pub free_bytes: u64,
    /// The first deletion's reason (`None`: nothing was due).
    #[serde(skip)]
    pub reason: Option<Reason>,
    /// Reading each channel's usage and oldest segments.
    pub usage: Duration,
    pub plan: Duration,
    /// The transaction marking the planned rows garbage.
    pub mark: Duration,
    /// Unlinking the files and fsyncing the channel directories.
    pub unlink: Duration,
    /// The transaction deleting the rows.
    pub rows: Duration,
    /// The rows could not be deleted (start-up repair will).
    pub rows_left: bool,
}

impl PassReport {
    pub fn total(&self) -> Duration {
        self.usage + self.plan + self.mark + self.unlink + self.rows
    }
}

/// Runs one pass over the store in `dir` whose index is `conn`.
pub fn run(
    conn: &Connection,
    dir: &Path,
    now: Time90k,
    policies: &HashMap<u32, RetentionPolicy>,
    min_free_bytes: u64,
) -> Result<PassReport, RetentionRunError> {
    let mut r = PassReport::default();
    let t = Instant::now();
    let free = super::free_bytes(dir).map_err(|e| RetentionRunError::FreeSpace(dir.display().to_string(), e))?;
    let usage = db::channel_usage(conn, PASS_LIMIT).map_err(RetentionRunError::Usage)?;
    r.usage = t.elapsed();
    r.free_bytes = free;
    let t = Instant::now();
    let plan = retention::plan(now, &usage, policies, free, min_free_bytes);
    r.plan = t.elapsed();
    let Some(first) = plan.first() else {
        return Ok(r);
    };
    r.reason = Some(first.reason);
    let t = Instant::now();
    let marked = (|| {
        let tx = conn.unchecked_transaction()?;
        for d in &plan {
            db::mark_garbage(&tx, d.segment.id)?;
        }
        tx.commit()
    })();
    r.mark = t.elapsed();
    marked.map_err(RetentionRunError::Mark)?;
    let t = Instant::now();
    for d in &plan {
        let p = segment_path(dir, d.segment.channel, d.segment.id);
        match std::fs::remove_file(&p) {
            Ok(()) => r.freed_bytes += d.segment.bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot delete {}: {e}", p.display()),
        }
    }
    super::sync_video_dirs(dir);
    r.unlink = t.elapsed();
    let t = Instant::now();
    let deleted = (|| {
        let tx = conn.unchecked_transaction()?;
        for d in &plan {
            db::delete_segment_row(&tx, d.segment.id)?;
        }
        tx.commit()
    })();
    r.rows = t.elapsed();
    if let Err(e) = deleted {
        warn!("cannot delete rows of deleted segments (startup will finish): {e}");
        r.rows_left = true;
    }
    r.segments = plan.len();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::Progress;

    #[test]
    fn a_pass_deletes_expired_files_and_rows_and_keeps_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let mut c = db::open(&t.path().join("index.db")).unwrap();
        db::migrate(&mut c).unwrap();
        let e = db::upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
        let min = 60 * 90_000;
        let mut ids = Vec::new();
        for i in 0..4 {
            let p = Progress {
                end: Time90k((i + 1) * min),
                frames: 1,
                key_frames: 1,
                bytes: 10,
                media_bytes: 5,
            };
            let id = db::insert_finished_segment(&c, 3, Time90k(i * min), e, &p, b"idx", None).unwrap();
            let path = segment_path(t.path(), 3, id);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, [0u8; 10]).unwrap();
            ids.push(id);
        }
        let policies = HashMap::from([(
            3,
            RetentionPolicy {
                max_age: Some(2 * min),
                ..Default::default()
            },
        )]);
        // At minute 4, the segments ending at minutes 1 and 2 are expired.
        let r = run(&c, t.path(), Time90k(4 * min), &policies, 0).unwrap();
        assert_eq!((r.segments, r.freed_bytes, r.reason), (2, 20, Some(Reason::Age)));
        assert!(!r.rows_left);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(segment_path(t.path(), 3, *id).exists(), i >= 2);
            assert_eq!(db::segment(&c, *id).unwrap().is_some(), i >= 2);
        }
        // Nothing more is due: the pass only reads.
        let r = run(&c, t.path(), Time90k(4 * min), &policies, 0).unwrap();
        assert_eq!((r.segments, r.reason), (0, None));
    }
}
