//! Tests of `run_days`: the recordings list from day summaries is the list
//! the segment-by-segment fold gave before summaries existed, on generated
//! footage with gaps, sample entry changes, overlaps, a segment across
//! midnight, segments being written, damage, holes, gap fill's marks and
//! garbage — before any summary, with all, and after changes of each kind.

use super::*;
use crate::store::index::{self, FrameEntry};
use crate::store::reader::{Overlap, RecordingRun};
use crate::store::runs::CONTIGUOUS;
use crate::store::segment_file::{Hole, RECORD_HEADER_LEN};
use crate::store::{header_len, Reader};

/// The recordings list exactly as `Reader::recordings` built it before day
/// summaries (schema 11), kept verbatim as the reference.
fn recordings_as_before(conn: &Connection, channel: u32, start: Time90k, end: Time90k) -> Vec<RecordingRun> {
    let entries = db::sample_entries(conn).unwrap();
    let mut runs: Vec<RecordingRun> = Vec::new();
    let mut last_entry = -1;
    let rows = db::segments_overlapping_for_runs(conn, channel, start, end).unwrap();
    let (lo, hi) = rows
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s.id), hi.max(s.id)));
    let filled = db::gapfill_segments_among(conn, lo, hi).unwrap();
    for s in rows {
        let e = entries.get(&s.sample_entry_id);
        let growing = s.state == db::WRITING;
        let origin = filled.contains(&s.id).then_some(crate::store::import::GAPFILL_ORIGIN);
        for (a, b, frames, bytes) in crate::store::reader::pieces(&s, e.map(|e| e.data.len()).unwrap_or(0)) {
            match runs.last_mut() {
                Some(r) if a - r.end_90k <= CONTIGUOUS && last_entry == s.sample_entry_id && r.origin == origin => {
                    if r.end_90k - a > CONTIGUOUS {
                        let o_end = r.end_90k.min(b);
                        r.overlaps.push(Overlap {
                            start: a.to_rfc3339(),
                            end: o_end.to_rfc3339(),
                            seconds: (o_end - a) as f64 / 90_000.0,
                        });
                    }
                    r.end_90k = r.end_90k.max(b);
                    r.frames += frames;
                    r.bytes += bytes;
                    r.segments += 1;
                    r.growing |= growing;
                }
                _ => runs.push(RecordingRun {
                    start: String::new(),
                    end: String::new(),
                    start_90k: a,
                    end_90k: b,
                    frames,
                    bytes,
                    codec: e.map(|e| e.codec.clone()).unwrap_or_default(),
                    width: e.map(|e| e.width).unwrap_or(0),
                    height: e.map(|e| e.height).unwrap_or(0),
                    segments: 1,
                    growing,
                    overlaps: Vec::new(),
                    origin,
                }),
            }
            last_entry = s.sample_entry_id;
        }
    }
    for r in &mut runs {
        r.start = r.start_90k.to_rfc3339();
        r.end = r.end_90k.to_rfc3339();
    }
    runs
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const MIN: i64 = 60 * 90_000;
/// 2024-09-13, in days since 1970.
const FIRST_DAY: i64 = 19_979;
const ENTRY_LEN: usize = 40;

struct Store {
    dir: tempfile::TempDir,
    conn: Connection,
    entries: [i64; 2],
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(&dir.path().join("index.db")).unwrap();
    db::migrate(&mut conn).unwrap();
    let entry = |c: u8| {
        let mut e = vec![c; ENTRY_LEN];
        e[4..8].copy_from_slice(b"avc1");
        db::upsert_sample_entry(&conn, &e, "h264", 640 * u32::from(c), 480).unwrap()
    };
    let entries = [entry(1), entry(2)];
    Store { dir, conn, entries }
}

/// A finished segment of `n` one-second frames of 100 bytes from `start`.
fn add(s: &Store, channel: u32, start: i64, n: u32, entry: i64) -> i64 {
    let frames: Vec<FrameEntry> = (0..n)
        .map(|i| FrameEntry {
            duration: 90_000,
            size: 100,
            key: i % 10 == 0,
        })
        .collect();
    let p = db::Progress {
        end: Time90k(start + i64::from(n) * 90_000),
        frames: n,
        key_frames: n.div_ceil(10),
        bytes: header_len(ENTRY_LEN) + u64::from(n) * (RECORD_HEADER_LEN + 100),
        media_bytes: u64::from(n) * 100,
    };
    db::insert_finished_segment(
        &s.conn,
        channel,
        Time90k(start),
        entry,
        &p,
        &index::encode(&frames),
        None,
    )
    .unwrap()
}

/// Four days of two channels' minute segments, with every irregularity the
/// fold handles. Returns the ids of channel 1's segments.
fn footage(s: &Store, rng: &mut Rng) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut t = FIRST_DAY * DAY + 7 * MIN;
    let end = (FIRST_DAY + 4) * DAY - 5 * MIN;
    let mut entry = s.entries[0];
    while t < end {
        let n = match rng.below(100) {
            0 => 600 * 60, // ten hours: reaches across midnight
            1 => 1,
            _ => 60,
        };
        if rng.below(50) == 0 {
            entry = s.entries[rng.below(2) as usize];
        }
        ids.push(add(s, 1, t, n, entry));
        add(s, 2, t + 17, 60, s.entries[0]);
        let len = i64::from(n) * 90_000;
        t += match rng.below(20) {
            0 => len + CONTIGUOUS + 1 + rng.below(30 * 90_000) as i64,
            1 => len - CONTIGUOUS - 1 - rng.below(20 * 90_000) as i64,
            2 => len + rng.below(CONTIGUOUS as u64) as i64,
            3 => len - rng.below(CONTIGUOUS as u64) as i64,
            _ => len,
        };
    }
    // A segment being written on the last day and one on the second (an
    // import in progress).
    db::insert_writing_segment(&s.conn, 1, Time90k(end + MIN), entry).unwrap();
    db::insert_writing_segment(&s.conn, 1, Time90k((FIRST_DAY + 1) * DAY + 3 * 3600 * 90_000), entry).unwrap();
    ids
}

/// Every kind of change the rows see after they were written.
fn damage_and_marks(s: &Store, ids: &[i64], rng: &mut Rng) {
    let pick = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize];
    for _ in 0..6 {
        db::mark_damaged(
            &s.conn,
            pick(rng),
            "file truncated",
            header_len(ENTRY_LEN) + 20 * (RECORD_HEADER_LEN + 100),
        )
        .unwrap();
    }
    for _ in 0..4 {
        let holes = [Hole {
            frames_before: 30,
            bytes: 500,
            ticks: 5 * 90_000,
        }];
        db::set_holes(&s.conn, pick(rng), &holes).unwrap();
    }
    for _ in 0..5 {
        db::mark_garbage(&s.conn, pick(rng)).unwrap();
    }
    for _ in 0..5 {
        db::delete_segment_row(&s.conn, pick(rng)).unwrap();
    }
    let job = db::gapfill_insert_job(&s.conn, 1, "cam", Time90k(0), Time90k(1), "test", 0).unwrap();
    let first = pick(rng);
    let row = db::segment(&s.conn, first).unwrap();
    if let Some(row) = row {
        db::gapfill_mark_segments(&s.conn, job, 1, first - 1, row.start, row.start + 20 * MIN).unwrap();
    }
    // Footage imported into the past, overlapping what is there.
    let t = (FIRST_DAY + 2) * DAY + 5 * 3600 * 90_000 + 12 * 90_000;
    add(s, 1, t, 90, s.entries[1]);
}

fn check(s: &Store, rng: &mut Rng, what: &str) {
    let reader = Reader::new(s.dir.path().to_path_buf());
    let mut ranges = vec![
        (FIRST_DAY * DAY - DAY, (FIRST_DAY + 5) * DAY),
        (FIRST_DAY * DAY, (FIRST_DAY + 4) * DAY),
        (FIRST_DAY * DAY + 1, (FIRST_DAY + 3) * DAY - 1),
    ];
    for _ in 0..40 {
        let a = FIRST_DAY * DAY - DAY / 2 + rng.below(5 * DAY as u64) as i64;
        let b = a + rng.below(4 * DAY as u64) as i64;
        ranges.push((a, b));
    }
    for (a, b) in ranges {
        for ch in [1, 2] {
            let want = recordings_as_before(&s.conn, ch, Time90k(a), Time90k(b));
            let got = reader.recordings(ch, Time90k(a), Time90k(b)).unwrap();
            assert_eq!(got, want, "{what}: channel {ch}, [{a}, {b})");
            let one_by_one = reader
                .recordings_segment_by_segment(ch, Time90k(a), Time90k(b))
                .unwrap();
            assert_eq!(one_by_one, want, "{what}: channel {ch}, [{a}, {b}), one by one");
        }
    }
}

fn stored(s: &Store) -> i64 {
    s.conn
        .query_row(
            "SELECT COUNT(*) FROM run_day WHERE summary_version = changes",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn recordings_from_summaries_are_the_recordings_of_the_segments() {
    for seed in 1..4u64 {
        let s = store();
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let ids = footage(&s, &mut rng);
        check(&s, &mut rng, "no summary yet");
        let pass = summarize(&s.conn, i64::MAX, || false).unwrap();
        // Two channels × five days (the first day's segments start before
        // it), less the two days holding a segment being written.
        assert!(pass.stored >= 6, "{pass:?}");
        assert_eq!(stored(&s), pass.stored as i64);
        check(&s, &mut rng, "every past day summarized");
        damage_and_marks(&s, &ids, &mut rng);
        assert!(stored(&s) < pass.stored as i64, "changes made summaries stale");
        check(&s, &mut rng, "after changes, some summaries stale");
        summarize(&s.conn, i64::MAX, || false).unwrap();
        check(&s, &mut rng, "summarized again");
        // Progress of a segment being written does not touch the counters,
        // and its day is never summarized meanwhile.
        let w = db::segments_in_state(&s.conn, db::WRITING).unwrap();
        let p = db::Progress {
            end: w[0].start + 30 * MIN,
            frames: 30,
            key_frames: 3,
            bytes: 3000,
            media_bytes: 2000,
        };
        let before = stored(&s);
        db::update_writing(&s.conn, w[0].id, &p).unwrap();
        assert_eq!(stored(&s), before);
        check(&s, &mut rng, "a segment being written grew");
        db::complete_segment(&s.conn, w[0].id, &p, b"", None).unwrap();
        check(&s, &mut rng, "a segment being written finished");
        summarize(&s.conn, i64::MAX, || false).unwrap();
        check(&s, &mut rng, "its day summarized");
    }
}

#[test]
fn a_summary_is_stored_only_for_the_counter_it_was_folded_at() {
    let s = store();
    add(&s, 1, FIRST_DAY * DAY + MIN, 60, s.entries[0]);
    let changes = |s: &Store| -> i64 {
        s.conn
            .query_row("SELECT changes FROM run_day WHERE channel = 1", [], |r| r.get(0))
            .unwrap()
    };
    let v = changes(&s);
    // A change between the fold and the store: the counter moved on, so
    // nothing is stored (`summarize` reads the counter before the rows).
    let entries = db::sample_entries(&s.conn).unwrap();
    let fold = fold_day(&s.conn, 1, FIRST_DAY, &entries).unwrap();
    add(&s, 1, FIRST_DAY * DAY + 2 * MIN, 60, s.entries[0]);
    let n = s
        .conn
        .execute(
            "UPDATE run_day SET summary = ?3, summary_version = ?2 WHERE channel = 1 AND day = ?1 AND changes = ?2",
            params![FIRST_DAY, v, serde_json::to_vec(&fold).unwrap()],
        )
        .unwrap();
    assert_eq!((n, changes(&s)), (0, v + 1));
    // Summaries only for days before the one given.
    assert_eq!(summarize(&s.conn, FIRST_DAY, || false).unwrap().stored, 0);
    assert_eq!(summarize(&s.conn, FIRST_DAY + 1, || false).unwrap().stored, 1);
}

#[test]
fn the_fold_reads_each_part_from_the_covering_index() {
    let s = store();
    let plan: String = s
        .conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN SELECT {RUN_COLS} FROM segment
             WHERE channel = ?1 AND end_90k > ?2 AND state < 2
               AND start_90k >= MAX(?4, ?2 - 324000000
                   - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = ?1), 0))
               AND start_90k < MIN(?3, ?5)
             ORDER BY start_90k, id"
        ))
        .unwrap()
        .query_map(params![1, 0, 1, 0, 1], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        plan.contains("COVERING INDEX segment_channel_start (channel=? AND start_90k>? AND start_90k<?)")
            && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
}

#[test]
fn a_version_11_store_gets_its_day_counters_and_the_same_recordings() {
    let mut s = store();
    let mut rng = Rng(99);
    footage(&s, &mut rng);
    // Back to schema 11: no run_day, no triggers (and none of 13's archive).
    s.conn
        .execute_batch(
            "DROP INDEX segment_archive_due; DROP INDEX segment_archived;
             ALTER TABLE segment DROP COLUMN archive_key; ALTER TABLE segment DROP COLUMN archive_sha256;
             DROP TRIGGER segment_day_insert; DROP TRIGGER segment_day_delete; DROP TRIGGER segment_day_update;
             DROP TRIGGER gapfill_segment_day_insert; DROP TRIGGER gapfill_segment_day_delete;
             DROP TABLE run_day; PRAGMA user_version = 11;",
        )
        .unwrap();
    db::migrate(&mut s.conn).unwrap();
    let days: i64 = s
        .conn
        .query_row("SELECT COUNT(*) FROM run_day WHERE summary IS NULL", [], |r| r.get(0))
        .unwrap();
    assert!(days >= 8, "{days} channel-days");
    check(&s, &mut rng, "upgraded, nothing summarized");
    assert!(summarize(&s.conn, i64::MAX, || false).unwrap().stored > 0);
    check(&s, &mut rng, "upgraded and summarized");
}

#[test]
fn a_pass_stops_between_batches_when_asked() {
    let s = store();
    for ch in 1..=3 {
        for d in 0..50 {
            add(&s, ch, (FIRST_DAY + d) * DAY + MIN, 60, s.entries[0]);
        }
    }
    let pass = summarize(&s.conn, i64::MAX, || true).unwrap();
    assert_eq!(pass.stored, BATCH);
    let pass = summarize(&s.conn, i64::MAX, || false).unwrap();
    assert_eq!(pass.stored, 150 - BATCH);
}
