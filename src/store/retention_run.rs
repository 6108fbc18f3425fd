//! One retention pass carried out: each channel's usage read from the index,
//! the deletions planned (`retention::plan`), the planned segments marked
//! garbage, their files unlinked and the channel directories fsynced, then
//! their rows deleted — in that order, so a crash at any point leaves only
//! rows that start-up repair finishes. Times each step, because the writer
//! thread runs the marking and the row delete, and their length is how long
//! recording waits (the unlinks run on `deleter`'s thread).
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

use super::db;
use super::deleter::Doomed;
use super::retention::{self, Reason, RetentionPolicy};
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

/// Segments one pass deletes at most (the next passes take the rest):
/// marking 1,024 rows garbage is one short commit on the writer thread.
pub const BATCH: usize = 1024;

/// The writer's part of a pass: each channel's usage read, the deletions
/// planned, and at most `BATCH` of them marked garbage (one commit). Returns
/// the report so far and the files to unlink (`deleter`).
pub fn mark(
    conn: &Connection,
    dir: &Path,
    now: Time90k,
    policies: &HashMap<u32, RetentionPolicy>,
    min_free_bytes: u64,
) -> Result<(PassReport, Vec<Doomed>), RetentionRunError> {
    let mut r = PassReport::default();
    let t = Instant::now();
    let free = super::free_bytes(dir).map_err(|e| RetentionRunError::FreeSpace(dir.display().to_string(), e))?;
    let usage = db::channel_usage(conn, PASS_LIMIT).map_err(RetentionRunError::Usage)?;
    r.usage = t.elapsed();
    r.free_bytes = free;
    let t = Instant::now();
    let mut plan = retention::plan(now, &usage, policies, free, min_free_bytes);
    // Each channel's deletions are a prefix of its oldest segments in the
    // plan, so any prefix of the plan keeps that order.
    plan.truncate(BATCH);
    r.plan = t.elapsed();
    let Some(first) = plan.first() else {
        return Ok((r, Vec::new()));
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
    r.segments = plan.len();
    let batch = plan
        .iter()
        .map(|d| Doomed {
            channel: d.segment.channel,
            id: d.segment.id,
            bytes: d.segment.bytes,
        })
        .collect();
    Ok((r, batch))
}

/// The last step: the rows of segments whose files are gone, in one commit.
pub fn delete_rows(conn: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for id in ids {
        db::delete_segment_row(&tx, *id)?;
    }
    tx.commit()
}

/// Runs one whole pass inline over the store in `dir` whose index is `conn`
/// (a benchmark; the writer hands the unlinks to `deleter`'s thread).
pub fn run(
    conn: &Connection,
    dir: &Path,
    now: Time90k,
    policies: &HashMap<u32, RetentionPolicy>,
    min_free_bytes: u64,
) -> Result<PassReport, RetentionRunError> {
    let (mut r, batch) = mark(conn, dir, now, policies, min_free_bytes)?;
    if batch.is_empty() {
        return Ok(r);
    }
    let t = Instant::now();
    let done = super::deleter::delete(dir, &batch);
    r.freed_bytes = done.freed;
    r.unlink = t.elapsed();
    let t = Instant::now();
    let deleted = delete_rows(conn, &done.ids);
    r.rows = t.elapsed();
    if let Err(e) = deleted {
        warn!("cannot delete rows of deleted segments (startup will finish): {e}");
        r.rows_left = true;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::Progress;
    use crate::store::segment_path;

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
