use super::*;
use crate::store::segment_file::Hole;
use crate::time::Time90k;
use std::collections::HashMap;

#[test]
fn capture_offset_near_finds_the_nearest_segment_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(&dir.path().join("db")).unwrap();
    migrate(&mut c).unwrap();
    let e = upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
    let seg = |start: i64, end: i64, offset: Option<i64>| {
        let id = insert_writing_segment(&c, 1, Time90k(start), e).unwrap();
        let p = Progress {
            end: Time90k(end),
            frames: 1,
            key_frames: 1,
            bytes: 1,
            media_bytes: 1,
        };
        complete_segment(&c, id, &p, b"i", None).unwrap();
        if let Some(o) = offset {
            set_capture_offset(&c, id, o).unwrap();
        }
        id
    };
    assert_eq!(capture_offset_near(&c, 1, Time90k(500)).unwrap(), None);
    let a = seg(100, 200, Some(11));
    seg(200, 300, None);
    seg(1000, 1100, Some(22));
    // Inside, before, between (nearer to each side), after.
    assert_eq!(capture_offset_near(&c, 1, Time90k(150)).unwrap(), Some(11));
    assert_eq!(capture_offset_near(&c, 1, Time90k(0)).unwrap(), Some(11));
    assert_eq!(capture_offset_near(&c, 1, Time90k(500)).unwrap(), Some(11));
    assert_eq!(capture_offset_near(&c, 1, Time90k(700)).unwrap(), Some(22));
    assert_eq!(capture_offset_near(&c, 1, Time90k(5000)).unwrap(), Some(22));
    // Another channel's offsets are not ours.
    assert_eq!(capture_offset_near(&c, 2, Time90k(150)).unwrap(), None);
    assert_eq!(capture_offset_of(&c, a).unwrap(), Some(11));
    assert_eq!(capture_offset_of(&c, a + 1).unwrap(), None);
    assert_eq!(capture_offset_of(&c, 12345).unwrap(), None);
    // A segment keeps its first known offset.
    set_capture_offset(&c, a, 99).unwrap();
    assert_eq!(capture_offset_near(&c, 1, Time90k(150)).unwrap(), Some(11));
}

#[test]
fn fresh_schema_migrates_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let mut c = open(&p).unwrap();
    migrate(&mut c).unwrap();
    migrate(&mut c).unwrap();
    let e = upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
    assert_eq!(upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap(), e);
    let id = insert_writing_segment(&c, 1, Time90k(100), e).unwrap();
    let p2 = Progress {
        end: Time90k(200),
        frames: 2,
        key_frames: 1,
        bytes: 10,
        media_bytes: 5,
    };
    complete_segment(&c, id, &p2, b"idx", None).unwrap();
    let rows = segments_overlapping(&c, 1, Time90k(150), Time90k(300)).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].frames, 2);
    assert!(segments_overlapping(&c, 1, Time90k(200), Time90k(300))
        .unwrap()
        .is_empty());
    // A version-1 database migrates to exactly the fresh schema.
    let p1 = dir.path().join("v1");
    let mut old = open(&p1).unwrap();
    old.execute_batch(SCHEMA).unwrap();
    old.pragma_update(None, "user_version", 1).unwrap();
    migrate(&mut old).unwrap();
    let schema = |c: &Connection| -> Vec<String> {
        let mut st = c
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    assert_eq!(schema(&old), schema(&c));
    let id = nvr_id(&c).unwrap();
    assert_eq!(nvr_id(&c).unwrap(), id);
    c.pragma_update(None, "user_version", 99).unwrap();
    assert!(migrate(&mut c).unwrap_err().contains("newer"));
}

#[test]
fn events_end_search_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(&dir.path().join("db")).unwrap();
    migrate(&mut c).unwrap();
    let d = serde_json::json!({ "area": 0.1 });
    let a = insert_event(&c, Some(1), "motion", Time90k(100), None, &d).unwrap();
    end_event(&c, a, Time90k(200), Some(&serde_json::json!({ "region": "r" }))).unwrap();
    let b = insert_event(&c, Some(2), "door", Time90k(150), None, &d).unwrap();
    assert_eq!(event_place(&c, b).unwrap(), Some((Some(2), Time90k(150))));
    assert_eq!(event_place(&c, b + 100).unwrap(), None);
    // Overlap search: motion [100, 200] is found from 180 on; by type; by channel.
    assert_eq!(events(&c, None, None, Time90k(180), Time90k(300)).unwrap().len(), 2);
    assert_eq!(
        events(&c, None, Some("door"), Time90k(0), Time90k(300)).unwrap()[0].id,
        b
    );
    assert!(events(&c, Some(1), None, Time90k(201), Time90k(300))
        .unwrap()
        .is_empty());
    let m = &events(&c, Some(1), None, Time90k(0), Time90k(300)).unwrap()[0];
    assert_eq!(m.details, serde_json::json!({ "area": 0.1, "region": "r" }));
    // The door was still open when the process stopped.
    assert_eq!(close_interrupted_events(&c).unwrap(), 1);
    let door = &events(&c, Some(2), None, Time90k(0), Time90k(300)).unwrap()[0];
    assert_eq!(door.end.as_deref(), Some(door.start.as_str()));
    assert_eq!(door.details["interrupted"], true);
}

fn fresh() -> (tempfile::TempDir, Connection, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(&dir.path().join("db")).unwrap();
    migrate(&mut c).unwrap();
    let e = upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
    (dir, c, e)
}

fn add(c: &Connection, e: i64, channel: u32, start: i64, end: i64) -> i64 {
    let id = insert_writing_segment(c, channel, Time90k(start), e).unwrap();
    let p = Progress {
        end: Time90k(end),
        frames: 1,
        key_frames: 1,
        bytes: 10,
        media_bytes: 5,
    };
    complete_segment(c, id, &p, b"idx", None).unwrap();
    id
}

const HOUR: i64 = 3600 * 90_000;

#[test]
fn footage_figures_prorate_segments_over_the_rate_window() {
    let (_d, c, e) = fresh();
    // Channel 1: one segment wholly before the window, one half inside it.
    add(&c, e, 1, 0, HOUR);
    add(&c, e, 1, 2 * HOUR, 4 * HOUR);
    add(&c, e, 2, 3 * HOUR, 3 * HOUR + 90_000);
    let f = footage_figures(&c, Time90k(3 * HOUR), Time90k(4 * HOUR)).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].channel, f[0].bytes, f[0].oldest), (1, 20, Some(Time90k(0))));
    assert_eq!(f[0].recent_bytes, 5, "half of a 10-byte segment lies in the window");
    assert_eq!((f[1].channel, f[1].bytes, f[1].recent_bytes), (2, 10, 10));
    assert_eq!(f[1].oldest, Some(Time90k(3 * HOUR)));
}

#[test]
fn long_segments_are_found_from_their_middle() {
    let (_d, c, e) = fresh();
    // Minute segments around a 2-hour and a 30-hour one, and another channel.
    let mut t = 0;
    for _ in 0..100 {
        add(&c, e, 1, t, t + 60 * 90_000);
        t += 60 * 90_000;
    }
    let two = add(&c, e, 1, t, t + 2 * HOUR);
    let thirty = add(&c, e, 1, t + 3 * HOUR, t + 33 * HOUR);
    add(&c, e, 2, 0, 50 * HOUR);
    let ids = |a: i64, b: i64| -> Vec<i64> {
        let got: Vec<i64> = segments_overlapping(&c, 1, Time90k(a), Time90k(b))
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            got,
            segments_overlapping_scan(&c, 1, Time90k(a), Time90k(b)),
            "{a}..{b}"
        );
        got
    };
    assert_eq!(ids(t + HOUR, t + HOUR + 90_000), vec![two]);
    assert_eq!(ids(t + 18 * HOUR, t + 18 * HOUR + 1), vec![thirty]);
    assert_eq!(ids(t + 2 * HOUR, t + 3 * HOUR), Vec::<i64>::new());
    assert_eq!(ids(t - 30 * 90_000, t + 1).len(), 2);
    // Every query the scan answers, the index answers the same.
    for a in (0..40).map(|k| k * HOUR / 2) {
        for len in [1, 90_000, HOUR, 10 * HOUR] {
            ids(a, a + len);
        }
    }
    // The look-back follows the longest segment only, and the query uses
    // the (channel, start) index rather than scanning the table.
    let span: i64 = c
        .query_row("SELECT max_ticks FROM channel_span WHERE channel = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(span, 30 * HOUR);
    let plan: Vec<String> = c
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM segment WHERE channel = 1 AND start_90k < 5 AND end_90k > 2
             AND state < 2 AND start_90k >= 2 - 324000000
             - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = 1), 0) ORDER BY start_90k, id",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(plan.iter().any(|l| l.contains("segment_channel_start")), "{plan:?}");
}

/// Each query plan's lines, for checking which index a statement uses.
fn query_plan(c: &Connection, sql: &str) -> String {
    c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn channel_bytes_follow_every_change_to_the_rows() {
    let (_d, c, e) = fresh();
    let summed = |c: &Connection| -> HashMap<u32, u64> {
        let mut st = c
            .prepare(concat!(
                "SELECT channel, SUM(",
                stored_bytes!(),
                ") FROM segment WHERE state < 2 GROUP BY channel"
            ))
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let kept = |c: &Connection| -> HashMap<u32, u64> {
        channel_usage(c, 10)
            .unwrap()
            .into_iter()
            .map(|(ch, u)| (ch, u.total_bytes))
            .collect()
    };
    let progress = |bytes| Progress {
        end: Time90k(2 * HOUR),
        frames: 3,
        key_frames: 1,
        bytes,
        media_bytes: bytes / 2,
    };
    let check = |step: &str| assert_eq!(kept(&c), summed(&c), "after {step}");
    add(&c, e, 1, 0, HOUR);
    check("a finished segment");
    add(&c, e, 2, 0, HOUR);
    check("another channel's");
    let w = insert_writing_segment(&c, 1, Time90k(HOUR), e).unwrap();
    check("a segment being written");
    update_writing(&c, w, &progress(500)).unwrap();
    check("its progress");
    assert!(mark_damaged(&c, 1, "file truncated", 3).unwrap());
    check("damage");
    set_holes(&c, w, &[]).unwrap();
    check("holes");
    mark_garbage(&c, 2).unwrap();
    check("garbage");
    delete_segment_row(&c, 2).unwrap();
    check("a deleted garbage row");
    insert_finished_segment(&c, 3, Time90k(0), e, &progress(70), b"idx", None).unwrap();
    check("a segment inserted finished");
    complete_segment(&c, w, &progress(700), b"idx", None).unwrap();
    check("completion");
    assert!(mark_damaged(&c, w, "file missing", 0).unwrap());
    check("a missing file");
    delete_segment_row(&c, 1).unwrap();
    check("a deleted finished row");
    assert_eq!(kept(&c), HashMap::from([(1, 0), (3, 70)]));
}

#[test]
fn frequent_queries_stay_on_their_indexes() {
    let (_d, c, e) = fresh();
    for i in 0..50 {
        add(&c, e, 1 + i % 2, i64::from(i) * HOUR, i64::from(i + 1) * HOUR);
    }
    // Retention's oldest finished segments of a kind.
    let p = query_plan(
        &c,
        "SELECT id, channel, start_90k, end_90k, bytes, event FROM segment
         WHERE channel = 1 AND state = 1 AND event = 0 ORDER BY start_90k LIMIT 5",
    );
    assert!(
        p.contains("COVERING INDEX segment_finished_oldest") && !p.contains("TEMP B-TREE"),
        "{p}"
    );
    // Start-up's check of every finished segment.
    let p = query_plan(
        &c,
        "SELECT id, channel, bytes FROM segment WHERE state = 1 AND damage IS NULL ORDER BY channel, start_90k",
    );
    assert!(
        p.contains("COVERING INDEX segment_channel_start") && !p.contains("TEMP B-TREE"),
        "{p}"
    );
    // Start-up's rows being written or deleted.
    let p = query_plan(&c, "SELECT id FROM segment WHERE state = 2 AND state <> 1 ORDER BY id");
    assert!(p.contains("segment_unfinished"), "{p}");
    // The recordings list: the covering index alone.
    let p = query_plan(
        &c,
        "SELECT id, channel, state, start_90k, end_90k, frames, 0, bytes, 0, sample_entry_id, NULL, damage,
           readable_bytes, holes FROM segment
         WHERE channel = 1 AND start_90k < 5 AND end_90k > 2 AND state < 2
           AND start_90k >= 2 - 324000000 - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = 1), 0)
         ORDER BY start_90k, id",
    );
    assert!(p.contains("COVERING INDEX segment_channel_start"), "{p}");
    // Gap fill's marks: a bounded range of the channel, not its history.
    let p = query_plan(
        &c,
        "SELECT g.segment_id FROM gapfill_segment g JOIN segment s ON s.id = g.segment_id
         WHERE s.channel = 1 AND s.start_90k < 5 AND s.end_90k > 2
           AND s.start_90k >= 2 - 324000000 - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = 1), 0)",
    );
    assert!(p.contains("start_90k>? AND start_90k<?") || p.contains("SCAN g"), "{p}");
    // The rows for runs are the overlapping rows; only damaged ones carry their frame index.
    assert!(mark_damaged(&c, 3, "file truncated", 5).unwrap());
    let all = segments_overlapping(&c, 2, Time90k(0), Time90k(50 * HOUR)).unwrap();
    let runs = segments_overlapping_for_runs(&c, 2, Time90k(0), Time90k(50 * HOUR)).unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.id, r.start, r.end, r.frames, r.bytes))
            .collect::<Vec<_>>(),
        runs.iter()
            .map(|r| (r.id, r.start, r.end, r.frames, r.bytes))
            .collect::<Vec<_>>()
    );
    for r in &runs {
        assert_eq!(r.frame_index.is_some(), r.id == 3, "segment {}", r.id);
    }
}

#[test]
fn version_3_store_migrates_with_its_long_segments_and_marks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v3");
    let mut old = open(&p).unwrap();
    old.execute_batch(SCHEMA).unwrap();
    old.execute_batch(MIGRATION_2).unwrap();
    old.execute_batch(MIGRATION_3).unwrap();
    old.pragma_update(None, "user_version", 3).unwrap();
    old.execute_batch(
        "INSERT INTO sample_entry (id, data, codec, width, height) VALUES (1, x'00', 'h264', 1, 1);
         INSERT INTO segment (channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes,
           sample_entry_id) VALUES (4, 1, 0, 648000000, 1, 1, 10, 5, 1);",
    )
    .unwrap();
    migrate(&mut old).unwrap();
    let rows = segments_overlapping(&old, 4, Time90k(HOUR), Time90k(HOUR + 1)).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].damage, None);
    assert!(rows[0].holes.is_empty());
    assert_eq!(complete_segment_sizes(&old).unwrap(), vec![(rows[0].id, 4, 10)]);
    assert!(mark_damaged(&old, rows[0].id, "file missing", 0).unwrap());
    // A row retention has just marked garbage is not damage.
    let deleted = insert_writing_segment(&old, 4, Time90k(0), 1).unwrap();
    mark_garbage(&old, deleted).unwrap();
    assert!(!mark_damaged(&old, deleted, "file missing", 0).unwrap());
    let holes = [Hole {
        frames_before: 3,
        bytes: 99,
        ticks: 3000,
    }];
    set_holes(&old, rows[0].id, &holes).unwrap();
    let r = segment(&old, rows[0].id).unwrap().unwrap();
    assert_eq!(r.damage.as_deref(), Some("file missing"));
    assert_eq!(r.readable_bytes, Some(0));
    assert_eq!(r.holes, holes);
    assert!(complete_segment_sizes(&old).unwrap().is_empty());
    // Retention counts only what is left of a damaged file.
    assert_eq!(channel_usage(&old, 10).unwrap()[&4].total_bytes, 0);
}

/// Segments of a channel overlapping [start, end) found by scanning every
/// row: the reference `segments_overlapping` is tested against.
fn segments_overlapping_scan(conn: &Connection, channel: u32, start: Time90k, end: Time90k) -> Vec<i64> {
    let mut stmt = conn
        .prepare(
            "SELECT id FROM segment WHERE channel = ?1 AND start_90k < ?3 AND end_90k > ?2 AND state <> 2
             ORDER BY start_90k, id",
        )
        .unwrap();
    let rows = stmt.query_map(params![channel, start.0, end.0], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}
