//! Segment rows: the writer's inserts and progress, the reader's and
//! retention's queries, repair's marks. Never touches a segment file (see
//! the invariant in `db`).

use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

use super::COMPLETE;
use crate::store::capacity::ChannelFootage;
use crate::store::retention::{ChannelUsage, SegmentInfo};
use crate::store::segment_file::Hole;
use crate::time::Time90k;

#[derive(Clone, Debug)]
pub struct SegmentRow {
    pub id: i64,
    pub channel: u32,
    pub state: i64,
    pub start: Time90k,
    pub end: Time90k,
    pub frames: u32,
    pub key_frames: u32,
    pub bytes: u64,
    pub media_bytes: u64,
    pub sample_entry_id: i64,
    pub frame_index: Option<Vec<u8>>,
    /// What is wrong with the file, if the start-up check found it damaged.
    pub damage: Option<String>,
    /// With `damage`: how many leading bytes of the file are still usable.
    pub readable_bytes: Option<u64>,
    /// Damaged stretches inside the file that repair stepped over.
    pub holes: Vec<Hole>,
}

const SEGMENT_COLS: &str = "id, channel, state, start_90k, end_90k, frames, key_frames, bytes, \
                            media_bytes, sample_entry_id, frame_index, damage, readable_bytes, holes";

pub(crate) fn segment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SegmentRow> {
    Ok(SegmentRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        state: r.get(2)?,
        start: Time90k(r.get(3)?),
        end: Time90k(r.get(4)?),
        frames: r.get(5)?,
        key_frames: r.get(6)?,
        bytes: r.get::<_, i64>(7)? as u64,
        media_bytes: r.get::<_, i64>(8)? as u64,
        sample_entry_id: r.get(9)?,
        frame_index: r.get(10)?,
        damage: r.get(11)?,
        readable_bytes: r.get::<_, Option<i64>>(12)?.map(|b| b.max(0) as u64),
        // A hole list that does not parse is treated as none: the frame index
        // alone still places every frame before the first hole correctly.
        holes: r
            .get::<_, Option<String>>(13)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleEntryRow {
    pub id: i64,
    pub data: Vec<u8>,
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

pub fn upsert_sample_entry(conn: &Connection, data: &[u8], codec: &str, w: u32, h: u32) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT OR IGNORE INTO sample_entry (data, codec, width, height) VALUES (?1, ?2, ?3, ?4)",
        params![data, codec, w, h],
    )?;
    conn.query_row("SELECT id FROM sample_entry WHERE data = ?1", params![data], |r| {
        r.get(0)
    })
}

pub fn sample_entries(conn: &Connection) -> rusqlite::Result<HashMap<i64, SampleEntryRow>> {
    let mut stmt = conn.prepare_cached("SELECT id, data, codec, width, height FROM sample_entry")?;
    let rows = stmt.query_map([], |r| {
        Ok(SampleEntryRow {
            id: r.get(0)?,
            data: r.get(1)?,
            codec: r.get(2)?,
            width: r.get(3)?,
            height: r.get(4)?,
        })
    })?;
    rows.map(|r| r.map(|s| (s.id, s))).collect()
}

pub fn insert_writing_segment(conn: &Connection, channel: u32, start: Time90k, entry: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO segment (channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes, sample_entry_id)
         VALUES (?1, 0, ?2, ?2, 0, 0, 0, 0, ?3)",
        params![channel, start.0, entry],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Inserts a segment adopted from a file whose row was never committed.
pub fn insert_adopted_segment(
    conn: &Connection,
    id: i64,
    channel: u32,
    start: Time90k,
    entry: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO segment (id, channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes, sample_entry_id)
         VALUES (?1, ?2, 0, ?3, ?3, 0, 0, 0, 0, ?4)",
        params![id, channel, start.0, entry],
    )?;
    Ok(())
}

pub struct Progress {
    pub end: Time90k,
    pub frames: u32,
    pub key_frames: u32,
    pub bytes: u64,
    pub media_bytes: u64,
}

pub fn update_writing(conn: &Connection, id: i64, p: &Progress) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE segment SET end_90k = ?2, frames = ?3, key_frames = ?4, bytes = ?5, media_bytes = ?6
         WHERE id = ?1 AND state = 0",
        params![
            id,
            p.end.0,
            p.frames,
            p.key_frames,
            p.bytes as i64,
            p.media_bytes as i64
        ],
    )?;
    Ok(())
}

/// Marks a segment finished. `record_sha256` is the record digest
/// (`record_digest`) of the file's first `p.bytes` bytes; `None` when it
/// was not made as they were written (repair).
pub fn complete_segment(
    conn: &Connection,
    id: i64,
    p: &Progress,
    index: &[u8],
    record_sha256: Option<&[u8; 32]>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE segment SET state = 1, end_90k = ?2, frames = ?3, key_frames = ?4, bytes = ?5,
         media_bytes = ?6, frame_index = ?7, record_sha256 = ?8 WHERE id = ?1",
        params![
            id,
            p.end.0,
            p.frames,
            p.key_frames,
            p.bytes as i64,
            p.media_bytes as i64,
            index,
            record_sha256.map(|h| h.as_slice())
        ],
    )?;
    Ok(())
}

/// Inserts a segment that is already finished, as `insert_writing_segment`
/// followed by `complete_segment` would leave it, in one statement: for
/// generators of large synthetic indexes (`tandem bench index`), which must
/// produce exactly the rows the writer does.
pub fn insert_finished_segment(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    entry: i64,
    p: &Progress,
    index: &[u8],
    record_sha256: Option<&[u8; 32]>,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO segment (channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes,
           sample_entry_id, frame_index, record_sha256)
         VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        channel,
        start.0,
        p.end.0,
        p.frames,
        p.key_frames,
        p.bytes as i64,
        p.media_bytes as i64,
        entry,
        index,
        record_sha256.map(|h| h.as_slice())
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Turns off the rollback journal and fsyncs on `conn` for a bulk load of
/// generated rows: a crash during the load leaves a corrupt index, so this is
/// only for indexes that are thrown away (benchmarks); `open` turns WAL and
/// FULL back on for the next connection.
pub fn bulk_load_mode(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)
}

/// A finished segment as the integrity check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedSegment {
    pub id: i64,
    pub channel: u32,
    pub start: Time90k,
    pub bytes: u64,
    /// The SHA-256 of the whole file: segments finished at schemas 6 to 9.
    pub sha256: Option<Vec<u8>>,
    /// The record digest: segments finished since schema 10. Both None:
    /// finished before schema 6 or rebuilt by repair.
    pub record_sha256: Option<Vec<u8>>,
    /// Damage the start-up check already recorded.
    pub damage: Option<String>,
}

/// Finished segments (optionally of one channel) overlapping [start, end),
/// in id order, for `tandem verify --data` and the scrub.
/// `version`: the index's schema (an older one, not yet opened by this
/// Tandem, lacks the hash columns: its segments are unhashed).
pub fn finished_segments_for_check(
    conn: &Connection,
    channel: Option<u32>,
    start: Time90k,
    end: Time90k,
    version: i32,
) -> rusqlite::Result<Vec<HashedSegment>> {
    let hash = if version >= 6 { "sha256" } else { "NULL" };
    let records = if version >= 11 { "record_sha256" } else { "NULL" };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, channel, start_90k, bytes, {hash}, damage, {records} FROM segment
         WHERE state = 1 AND (?1 IS NULL OR channel = ?1) AND start_90k < ?3 AND end_90k > ?2
         ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![channel, start.0, end.0], |r| {
        Ok(HashedSegment {
            id: r.get(0)?,
            channel: r.get(1)?,
            start: Time90k(r.get(2)?),
            bytes: r.get::<_, i64>(3)?.max(0) as u64,
            sha256: r.get(4)?,
            damage: r.get(5)?,
            record_sha256: r.get(6)?,
        })
    })?;
    rows.collect()
}

pub fn segment(conn: &Connection, id: i64) -> rusqlite::Result<Option<SegmentRow>> {
    conn.query_row(
        &format!("SELECT {SEGMENT_COLS} FROM segment WHERE id = ?1"),
        params![id],
        segment_row,
    )
    .optional()
}

pub fn segments_in_state(conn: &Connection, state: i64) -> rusqlite::Result<Vec<SegmentRow>> {
    // `state <> 1` lets the rows being written or deleted come from their
    // partial index; finished rows are asked for elsewhere.
    debug_assert_ne!(state, COMPLETE);
    let mut stmt = conn.prepare(&format!(
        "SELECT {SEGMENT_COLS} FROM segment WHERE state = ?1 AND state <> 1 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![state], segment_row)?;
    rows.collect()
}

pub fn all_segment_ids(conn: &Connection) -> rusqlite::Result<std::collections::HashSet<i64>> {
    let mut stmt = conn.prepare("SELECT id FROM segment")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Segments of a channel overlapping [start, end), in time order, excluding
/// garbage (archived ones included: their footage is served from the bucket).
pub fn segments_overlapping(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<Vec<SegmentRow>> {
    overlapping(conn, channel, start, end, SEGMENT_COLS)
}

/// As `segments_overlapping`, for the recordings list: read from the
/// covering index `segment_channel_start` alone, so `frame_index` is `None` and
/// `key_frames`, `media_bytes` are 0 — except for rows with damage or holes,
/// read whole because their frame index places what is still readable. A
/// year of rows with their frame indexes is gigabytes; this is megabytes.
pub fn segments_overlapping_for_runs(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<Vec<SegmentRow>> {
    let mut rows = overlapping(
        conn,
        channel,
        start,
        end,
        "id, channel, state, start_90k, end_90k, frames, 0, bytes, 0, sample_entry_id, NULL, damage, \
         readable_bytes, holes",
    )?;
    for r in rows.iter_mut().filter(|r| r.damage.is_some() || !r.holes.is_empty()) {
        if let Some(whole) = segment(conn, r.id)? {
            *r = whole;
        }
    }
    Ok(rows)
}

/// `cols`: `SEGMENT_COLS` or columns in the same order (for `segment_row`).
fn overlapping(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
    cols: &str,
) -> rusqlite::Result<Vec<SegmentRow>> {
    // A segment overlapping `start` began at most the channel's longest
    // segment before it (`channel_span`), so bounding the start from below
    // lets the (channel, start) index do the work for segments of any length.
    // The extra hour covers a segment being written, whose row end lags.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols} FROM segment
         WHERE channel = ?1 AND start_90k < ?3 AND end_90k > ?2 AND state <> 2
           AND start_90k >= ?2 - 324000000
               - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = ?1), 0)
         ORDER BY start_90k, id"
    ))?;
    let rows = stmt.query_map(params![channel, start.0, end.0], segment_row)?;
    rows.collect()
}

/// Starts of the channel's segments being written that began before `before`.
pub fn writing_starts_before(conn: &Connection, channel: u32, before: Time90k) -> rusqlite::Result<Vec<Time90k>> {
    let mut stmt =
        conn.prepare_cached("SELECT start_90k FROM segment WHERE channel = ?1 AND state = 0 AND start_90k < ?2")?;
    let rows = stmt.query_map(params![channel, before.0], |r| Ok(Time90k(r.get(0)?)))?;
    rows.collect()
}

/// Records a segment's capture offset (camera clock − this NVR's, 90 kHz
/// ticks) unless it has one: a segment keeps its first known value.
pub fn set_capture_offset(conn: &Connection, id: i64, offset: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE segment SET capture_offset_90k = ?2 WHERE id = ?1 AND capture_offset_90k IS NULL",
        params![id, offset],
    )?;
    Ok(())
}

/// A segment's own capture offset, if it has one.
pub fn capture_offset_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT capture_offset_90k FROM segment WHERE id = ?1",
        params![id],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

/// The capture offset of the channel's segment nearest to `t` that has one
/// (a segment containing `t` is nearest); `None` when no segment of the
/// channel has one. Garbage rows are not asked.
pub fn capture_offset_near(conn: &Connection, channel: u32, t: Time90k) -> rusqlite::Result<Option<i64>> {
    // Two walks of the (channel, start) index from `t`, each stopping at its
    // first row with an offset.
    let before: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT end_90k, capture_offset_90k FROM segment
             WHERE channel = ?1 AND start_90k <= ?2 AND state < 2 AND capture_offset_90k IS NOT NULL
             ORDER BY start_90k DESC LIMIT 1",
        )?
        .query_row(params![channel, t.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let after: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT start_90k, capture_offset_90k FROM segment
             WHERE channel = ?1 AND start_90k > ?2 AND state < 2 AND capture_offset_90k IS NOT NULL
             ORDER BY start_90k LIMIT 1",
        )?
        .query_row(params![channel, t.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match (before, after) {
        (Some((end, a)), Some((start, b))) => {
            // A segment being written has a row end that lags; it still
            // counts as reaching `t` when it is the last one before it.
            let gap_before = (t.0 - end).max(0);
            let gap_after = start - t.0;
            Some(if gap_before <= gap_after { a } else { b })
        }
        (Some((_, a)), None) => Some(a),
        (None, Some((_, b))) => Some(b),
        (None, None) => None,
    })
}

/// Whether a peer's segment has been imported already.
pub fn imported(conn: &Connection, origin: &str, origin_segment: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM import WHERE origin = ?1 AND origin_segment = ?2",
        params![origin, origin_segment],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Every finished, not yet damaged segment, with just what the start-up check
/// needs, by channel and start: read from the (channel, start) index alone,
/// which covers these columns (the rows, with their frame indexes, are ~100
/// times larger), and in the order the files were created.
pub fn complete_segment_sizes(conn: &Connection) -> rusqlite::Result<Vec<(i64, u32, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT id, channel, bytes FROM segment WHERE state = 1 AND damage IS NULL ORDER BY channel, start_90k",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)))?;
    rows.collect()
}

/// Records that a finished segment's file is damaged: only its first
/// `readable_bytes` bytes can be served. False if the row is no longer a
/// finished segment (retention got there first).
pub fn mark_damaged(conn: &Connection, id: i64, why: &str, readable_bytes: u64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE segment SET damage = ?2, readable_bytes = ?3 WHERE id = ?1 AND state = 1",
        params![id, why, readable_bytes as i64],
    )?;
    Ok(n == 1)
}

/// Stores the damaged stretches repair stepped over in a segment's file.
pub fn set_holes(conn: &Connection, id: i64, holes: &[Hole]) -> rusqlite::Result<()> {
    let json = if holes.is_empty() {
        None
    } else {
        serde_json::to_string(holes).ok()
    };
    conn.execute("UPDATE segment SET holes = ?2 WHERE id = ?1", params![id, json])?;
    Ok(())
}

pub fn mark_garbage(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE segment SET state = 2 WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn delete_segment_row(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM segment WHERE id = ?1", params![id])?;
    Ok(())
}

/// Per channel: total bytes of all segments and the `limit` oldest complete
/// ones of each kind (continuous footage, event footage).
pub fn channel_usage(conn: &Connection, limit: usize) -> rusqlite::Result<HashMap<u32, ChannelUsage>> {
    let mut out: HashMap<u32, ChannelUsage> = HashMap::new();
    // Kept by triggers (schema 10): summing the table here cost a full scan
    // of it on every retention pass.
    let mut stmt = conn.prepare_cached(
        "SELECT c.channel, c.bytes FROM channel_bytes c
         WHERE EXISTS (SELECT 1 FROM segment s WHERE s.channel = c.channel AND s.state < 2)",
    )?;
    for r in stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))? {
        let (ch, total) = r?;
        out.entry(ch).or_default().total_bytes = total as u64;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, start_90k, end_90k, bytes, event FROM segment
         WHERE channel = ?1 AND state = 1 AND event = ?2 ORDER BY start_90k LIMIT ?3",
    )?;
    for (ch, u) in out.iter_mut() {
        for event in [false, true] {
            let rows = stmt.query_map(params![ch, event, limit as i64], |r| {
                Ok(SegmentInfo {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    start: Time90k(r.get(2)?),
                    end: Time90k(r.get(3)?),
                    bytes: r.get::<_, i64>(4)? as u64,
                    event: r.get(5)?,
                })
            })?;
            *u.oldest_mut(event) = rows.collect::<rusqlite::Result<_>>()?;
        }
    }
    Ok(out)
}

/// Per channel: bytes stored, the oldest segment's start, and the bytes
/// recorded in [since, now) with each segment prorated by its overlap (the
/// storage report's rate, `store::capacity`).
pub fn footage_figures(conn: &Connection, since: Time90k, now: Time90k) -> rusqlite::Result<Vec<ChannelFootage>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT channel, SUM(",
        stored_bytes!(),
        "),
                MIN(start_90k),
                SUM(CASE WHEN end_90k > ?1 AND start_90k < ?2
                         THEN bytes * 1.0 * (MIN(end_90k, ?2) - MAX(start_90k, ?1)) / MAX(end_90k - start_90k, 1)
                         ELSE 0 END)
         FROM segment WHERE state < 2 GROUP BY channel ORDER BY channel"
    ))?;
    let rows = stmt.query_map(params![since.0, now.0], |r| {
        Ok(ChannelFootage {
            channel: r.get(0)?,
            bytes: r.get::<_, i64>(1)?.max(0) as u64,
            oldest: r.get::<_, Option<i64>>(2)?.map(Time90k),
            recent_bytes: r.get::<_, f64>(3)?.max(0.0) as u64,
        })
    })?;
    rows.collect()
}

/// Marks the channel's segments overlapping [start, ∞) as event footage.
/// Rows still being written (the open segment, and closed ones whose
/// completion waits for the next flush round) have an `end_90k` brought up
/// to date only by that round: the writer names those that reach past
/// `start` by their end in memory (`unsettled`), and only those.
pub fn mark_event_footage(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    unsettled: &[i64],
) -> rusqlite::Result<usize> {
    let ids = serde_json::to_string(unsettled).expect("a list of integers serializes");
    conn.execute(
        "UPDATE segment SET event = 1
         WHERE channel = ?1 AND state < 2 AND event = 0
           AND ((end_90k > ?2 AND state <> 0) OR id IN (SELECT value FROM json_each(?3)))",
        params![channel, start.0, ids],
    )
}
