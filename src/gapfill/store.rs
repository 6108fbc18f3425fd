//! Gap fill's side of the index: typed jobs and binding history over the
//! statements in `store::db`, and the staged piece files handed to the
//! importer. Must never decide what to fetch (that is `plan`) or run on the
//! async runtime: every function here blocks.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::job::{Job, Reason, State};
use super::plan::BindingSpan;
use crate::store::db;
use crate::store::segment_file::{record_header, SegmentHeader};
use crate::time::Time90k;

/// 90 kHz ticks as whole milliseconds (the job table's clock columns).
pub fn ms(t: Time90k) -> i64 {
    t.0 / 90
}

fn from_ms(ms: i64) -> Time90k {
    Time90k(ms.saturating_mul(90))
}

/// A stored row as a typed job; a row with an unknown state or reason
/// (written by a newer Tandem) reads as failed/manual rather than failing
/// the whole list.
pub fn job(r: db::GapfillJobRow) -> Job {
    Job {
        id: r.id,
        channel: r.channel,
        camera: r.camera,
        start: r.start,
        end: r.end,
        reason: Reason::parse(&r.reason).unwrap_or(Reason::Manual),
        state: State::parse(&r.state).unwrap_or(State::Failed),
        created: from_ms(r.created_ms),
        updated: from_ms(r.updated_ms),
        attempts: r.attempts,
        next_attempt: from_ms(r.next_attempt_ms),
        filled_to: r.filled_to,
        frames: r.frames,
        bytes: r.bytes,
        lost_90k: r.lost_90k,
        last_error: r.last_error,
    }
}

pub fn jobs(conn: &Connection, channel: Option<u32>, limit: usize) -> rusqlite::Result<Vec<Job>> {
    Ok(db::gapfill_jobs(conn, channel, limit)?.into_iter().map(job).collect())
}

pub fn due(conn: &Connection, now: Time90k) -> rusqlite::Result<Vec<Job>> {
    Ok(db::gapfill_due_jobs(conn, ms(now))?.into_iter().map(job).collect())
}

pub fn bindings(conn: &Connection, channel: u32, since: Time90k) -> rusqlite::Result<Vec<BindingSpan>> {
    Ok(db::gapfill_bindings(conn, channel, since)?
        .into_iter()
        .map(|(camera, start, end, ended_by_restart)| BindingSpan {
            camera,
            start,
            end,
            ended_by_restart,
        })
        .collect())
}

/// One frame of a staged piece, in this NVR's time.
pub struct PieceFrame {
    pub time: Time90k,
    pub key: bool,
    pub data: Vec<u8>,
}

/// Writes `frames` (strictly increasing times, at most `u32::MAX` ticks
/// after the first) as a segment file at `path`, synced: the form the
/// importer takes. Returns the file's length.
pub fn write_piece(
    path: &Path,
    channel: u32,
    origin_segment: i64,
    sample_entry: &[u8],
    frames: &[PieceFrame],
) -> std::io::Result<u64> {
    let start = frames.first().map(|f| f.time).unwrap_or(Time90k(0));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(file);
    let header = SegmentHeader {
        channel,
        segment_id: origin_segment,
        start,
        sample_entry: sample_entry.to_vec(),
    };
    w.write_all(&header.encode())?;
    for f in frames {
        let pts = u32::try_from(f.time - start)
            .map_err(|_| std::io::Error::other("a staged piece may span at most 13 hours"))?;
        w.write_all(&record_header(pts, f.key, &f.data))?;
        w.write_all(&f.data)?;
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_data()?;
    Ok(file.metadata()?.len())
}

/// Where piece `origin_segment` of a job is staged.
pub fn piece_path(staging: &Path, origin_segment: i64) -> PathBuf {
    staging.join(format!("gapfill-{origin_segment}.part"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment_file;

    #[test]
    fn a_piece_reads_back_as_the_segment_the_importer_takes() {
        let dir = tempfile::tempdir().unwrap();
        let p = piece_path(dir.path(), 7 << 32);
        let frames: Vec<PieceFrame> = (0..5)
            .map(|i| PieceFrame {
                time: Time90k(1_000_000 + i * 3000),
                key: i == 0,
                data: vec![i as u8; 10 + i as usize],
            })
            .collect();
        let len = write_piece(&p, 3, 7 << 32, b"entry", &frames).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        let scan = segment_file::scan(&mut f, len, true).unwrap();
        assert_eq!(scan.stopped, None);
        assert_eq!(scan.header.channel, 3);
        assert_eq!(scan.header.start, Time90k(1_000_000));
        assert_eq!(scan.header.sample_entry, b"entry");
        let pts: Vec<u32> = scan.frames.iter().map(|f| f.pts).collect();
        assert_eq!(pts, vec![0, 3000, 6000, 9000, 12000]);
        assert!(scan.frames[0].key && !scan.frames[1].key);
        assert_eq!(scan.frames[4].size, 14);
        // A piece spanning more than a u32 of ticks is refused, not wrapped.
        let far = [
            PieceFrame {
                time: Time90k(0),
                key: true,
                data: vec![1],
            },
            PieceFrame {
                time: Time90k(1 << 33),
                key: false,
                data: vec![1],
            },
        ];
        assert!(write_piece(&p, 3, 1, b"e", &far).is_err());
    }

    #[test]
    fn jobs_bindings_and_pieces_round_trip_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let c = db::open_dir(dir.path()).unwrap();
        let s = 90_000;
        db::gapfill_note_binding(&c, 1, Some("cam"), Time90k(10 * s)).unwrap();
        db::gapfill_note_binding(&c, 1, None, Time90k(20 * s)).unwrap();
        db::gapfill_note_binding(&c, 1, Some("cam"), Time90k(30 * s)).unwrap();
        db::gapfill_note_binding(&c, 2, Some("other"), Time90k(30 * s)).unwrap();
        assert_eq!(db::gapfill_end_bindings_at_start(&c, Time90k(40 * s)).unwrap(), 2);
        let b = bindings(&c, 1, Time90k(0)).unwrap();
        assert_eq!(
            b.iter()
                .map(|b| (b.start.0 / s, b.end.map(|e| e.0 / s), b.ended_by_restart))
                .collect::<Vec<_>>(),
            vec![(10, Some(20), false), (30, Some(40), true)]
        );
        assert_eq!(bindings(&c, 1, Time90k(25 * s)).unwrap().len(), 1);
        let id = db::gapfill_insert_job(&c, 1, "cam", Time90k(5 * s), Time90k(6 * s), "startup", 1000).unwrap();
        let j = &jobs(&c, None, 10).unwrap()[0];
        assert_eq!(
            (j.id, j.state, j.reason, j.attempts),
            (id, State::Pending, Reason::Startup, 0)
        );
        assert_eq!(due(&c, Time90k(1000 * 90)).unwrap().len(), 1);
        assert!(due(&c, Time90k(999 * 90)).unwrap().is_empty());
        db::gapfill_start_attempt(&c, id, 2000).unwrap();
        assert!(
            due(&c, Time90k(5000 * 90)).unwrap().is_empty(),
            "running jobs are not due"
        );
        db::gapfill_progress(&c, id, Time90k(5 * s + 100), 3, 300, 2100).unwrap();
        db::gapfill_progress(&c, id, Time90k(5 * s + 50), 4, 400, 2200).unwrap();
        let j = &jobs(&c, Some(1), 10).unwrap()[0];
        assert_eq!((j.filled_to, j.frames, j.bytes), (Some(Time90k(5 * s + 100)), 4, 400));
        assert_eq!(db::gapfill_requeue_running(&c, 3000).unwrap(), 1);
        assert_eq!(due(&c, Time90k(3000 * 90)).unwrap()[0].id, id);
        db::gapfill_end_attempt(&c, id, "lost", 1, 3000, 900, Some("gone"), 3000).unwrap();
        let j = &jobs(&c, Some(1), 10).unwrap()[0];
        assert_eq!(
            (j.state, j.lost_90k, j.last_error.as_deref()),
            (State::Lost, 900, Some("gone"))
        );
        assert!(jobs(&c, Some(2), 10).unwrap().is_empty());
        assert_eq!(
            db::gapfill_job_spans(&c, 1, Time90k(0)).unwrap(),
            vec![(Time90k(5 * s), Time90k(6 * s))]
        );
        // Piece numbers continue after the pieces already imported.
        assert_eq!(db::gapfill_next_piece(&c, id, "gapfill").unwrap(), id << 32);
        c.execute(
            "INSERT INTO import (origin, origin_segment, channel, received_90k, frames_kept) VALUES ('gapfill', ?1, 1, 0, 0)",
            [(id << 32) + 4],
        )
        .unwrap();
        assert_eq!(db::gapfill_next_piece(&c, id, "gapfill").unwrap(), (id << 32) + 5);
        assert_eq!(db::gapfill_next_piece(&c, id + 1, "gapfill").unwrap(), (id + 1) << 32);
        // Merged segments are marked, and unmarked when retention deletes them.
        let e = db::upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
        let before = db::last_segment_id(&c).unwrap();
        let live = db::insert_writing_segment(&c, 1, Time90k(100 * s), e).unwrap();
        let merged = db::insert_writing_segment(&c, 1, Time90k(5 * s), e).unwrap();
        let p = db::Progress {
            end: Time90k(6 * s),
            frames: 1,
            key_frames: 1,
            bytes: 1,
            media_bytes: 1,
        };
        db::complete_segment(&c, merged, &p, b"", None).unwrap();
        assert_eq!(
            db::gapfill_mark_segments(&c, id, 1, before, Time90k(5 * s), Time90k(6 * s)).unwrap(),
            1
        );
        let ids = db::gapfill_segment_ids(&c, 1, Time90k(0), Time90k(200 * s)).unwrap();
        assert!(ids.contains(&merged) && !ids.contains(&live));
        db::delete_segment_row(&c, merged).unwrap();
        assert!(db::gapfill_segment_ids(&c, 1, Time90k(0), Time90k(200 * s))
            .unwrap()
            .is_empty());
        assert_eq!(
            db::gapfill_runs(&c, 1, Time90k(0)).unwrap(),
            vec![(Time90k(100 * s), Time90k(100 * s))]
        );
    }
}
