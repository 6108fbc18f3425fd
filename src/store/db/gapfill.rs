//! Gap fill (`crate::gapfill`): jobs, binding history, merged segments.

use rusqlite::{params, Connection};

use crate::time::Time90k;

/// One `gapfill_job` row; `gapfill::store` turns it into a typed job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapfillJobRow {
    pub id: i64,
    pub channel: u32,
    pub camera: String,
    pub start: Time90k,
    pub end: Time90k,
    pub reason: String,
    pub state: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub filled_to: Option<Time90k>,
    pub frames: u64,
    pub bytes: u64,
    pub lost_90k: i64,
    pub last_error: Option<String>,
}

const GAPFILL_JOB_COLS: &str = "id, channel, camera, start_90k, end_90k, reason, state, created_ms, updated_ms, \
                                attempts, next_attempt_ms, filled_to_90k, frames, bytes, lost_90k, last_error";

fn gapfill_job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GapfillJobRow> {
    Ok(GapfillJobRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        camera: r.get(2)?,
        start: Time90k(r.get(3)?),
        end: Time90k(r.get(4)?),
        reason: r.get(5)?,
        state: r.get(6)?,
        created_ms: r.get(7)?,
        updated_ms: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_ms: r.get(10)?,
        filled_to: r.get::<_, Option<i64>>(11)?.map(Time90k),
        frames: r.get::<_, i64>(12)?.max(0) as u64,
        bytes: r.get::<_, i64>(13)?.max(0) as u64,
        lost_90k: r.get(14)?,
        last_error: r.get(15)?,
    })
}

/// Records a new hole to fill; returns its id.
#[allow(clippy::too_many_arguments)]
pub fn gapfill_insert_job(
    conn: &Connection,
    channel: u32,
    camera: &str,
    start: Time90k,
    end: Time90k,
    reason: &str,
    now_ms: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO gapfill_job (channel, camera, start_90k, end_90k, reason, state, created_ms, updated_ms, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?6)",
        params![channel, camera, start.0, end.0, reason, now_ms],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The newest `limit` jobs (of one channel, or all), newest first.
pub fn gapfill_jobs(conn: &Connection, channel: Option<u32>, limit: usize) -> rusqlite::Result<Vec<GapfillJobRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GAPFILL_JOB_COLS} FROM gapfill_job WHERE (?1 IS NULL OR channel = ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![channel, limit as i64], gapfill_job_row)?;
    rows.collect()
}

/// One channel's jobs overlapping [start, end), by start.
pub fn gapfill_jobs_overlapping(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<Vec<GapfillJobRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GAPFILL_JOB_COLS} FROM gapfill_job WHERE channel = ?1 AND start_90k < ?3 AND end_90k > ?2
         ORDER BY start_90k LIMIT 10000"
    ))?;
    let rows = stmt.query_map(params![channel, start.0, end.0], gapfill_job_row)?;
    rows.collect()
}

/// Jobs waiting for an attempt whose time has come, oldest first.
pub fn gapfill_due_jobs(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<GapfillJobRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GAPFILL_JOB_COLS} FROM gapfill_job WHERE state = 'pending' AND next_attempt_ms <= ?1
         ORDER BY id LIMIT 1000"
    ))?;
    let rows = stmt.query_map(params![now_ms], gapfill_job_row)?;
    rows.collect()
}

/// A job's attempt begins.
pub fn gapfill_start_attempt(conn: &Connection, id: i64, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_job SET state = 'running', updated_ms = ?2 WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(())
}

/// A piece of a job merged: its progress so far.
pub fn gapfill_progress(
    conn: &Connection,
    id: i64,
    filled_to: Time90k,
    frames: u64,
    bytes: u64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_job SET filled_to_90k = MAX(COALESCE(filled_to_90k, ?2), ?2), frames = ?3, bytes = ?4,
         updated_ms = ?5 WHERE id = ?1",
        params![id, filled_to.0, frames as i64, bytes as i64, now_ms],
    )?;
    Ok(())
}

/// A job's attempt ended: its new state, attempts, next attempt, loss and error.
#[allow(clippy::too_many_arguments)]
pub fn gapfill_end_attempt(
    conn: &Connection,
    id: i64,
    state: &str,
    attempts: u32,
    next_attempt_ms: i64,
    lost_90k: i64,
    last_error: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_job SET state = ?2, attempts = ?3, next_attempt_ms = ?4, lost_90k = ?5, last_error = ?6,
         updated_ms = ?7 WHERE id = ?1",
        params![id, state, attempts, next_attempt_ms, lost_90k, last_error, now_ms],
    )?;
    Ok(())
}

/// At start-up: jobs the last process was running wait for a new attempt.
pub fn gapfill_requeue_running(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE gapfill_job SET state = 'pending', next_attempt_ms = ?1 WHERE state = 'running'",
        params![now_ms],
    )
}

/// The stretches of a channel any job covers, ending after `since`.
pub fn gapfill_job_spans(conn: &Connection, channel: u32, since: Time90k) -> rusqlite::Result<Vec<(Time90k, Time90k)>> {
    let mut stmt =
        conn.prepare_cached("SELECT start_90k, end_90k FROM gapfill_job WHERE channel = ?1 AND end_90k > ?2")?;
    let rows = stmt.query_map(params![channel, since.0], |r| {
        Ok((Time90k(r.get(0)?), Time90k(r.get(1)?)))
    })?;
    rows.collect()
}

/// A channel's recorded stretches (start, end of each segment row that is
/// not garbage) ending after `since`: what the planner reads, without the
/// frame indexes.
pub fn gapfill_runs(conn: &Connection, channel: u32, since: Time90k) -> rusqlite::Result<Vec<(Time90k, Time90k)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT start_90k, end_90k FROM segment WHERE channel = ?1 AND state < 2 AND (end_90k > ?2 OR state = 0)
         ORDER BY start_90k",
    )?;
    let rows = stmt.query_map(params![channel, since.0], |r| {
        Ok((Time90k(r.get(0)?), Time90k(r.get(1)?)))
    })?;
    rows.collect()
}

/// A channel bound to `camera` from `at` on (ends any binding it had).
pub fn gapfill_note_binding(
    conn: &Connection,
    channel: u32,
    camera: Option<&str>,
    at: Time90k,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_binding SET end_90k = MAX(?2, start_90k) WHERE channel = ?1 AND end_90k IS NULL",
        params![channel, at.0],
    )?;
    if let Some(cam) = camera {
        conn.execute(
            "INSERT INTO gapfill_binding (channel, camera, start_90k) VALUES (?1, ?2, ?3)",
            params![channel, cam, at.0],
        )?;
    }
    Ok(())
}

/// At start-up: bindings the last process left open end now, marked as
/// ended by a restart (the process stopped while they held).
pub fn gapfill_end_bindings_at_start(conn: &Connection, at: Time90k) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE gapfill_binding SET end_90k = MAX(?1, start_90k), ended_by_restart = 1 WHERE end_90k IS NULL",
        params![at.0],
    )
}

/// A channel's binding spans ending after `since` (or open):
/// (camera, start, end, ended by a restart).
pub type BindingRow = (String, Time90k, Option<Time90k>, bool);

pub fn gapfill_bindings(conn: &Connection, channel: u32, since: Time90k) -> rusqlite::Result<Vec<BindingRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT camera, start_90k, end_90k, ended_by_restart FROM gapfill_binding
         WHERE channel = ?1 AND (end_90k IS NULL OR end_90k > ?2) ORDER BY start_90k",
    )?;
    let rows = stmt.query_map(params![channel, since.0], |r| {
        Ok((
            r.get(0)?,
            Time90k(r.get(1)?),
            r.get::<_, Option<i64>>(2)?.map(Time90k),
            r.get::<_, i64>(3)? != 0,
        ))
    })?;
    rows.collect()
}

/// The highest segment id handed out so far (ids are never reused).
pub fn last_segment_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM segment", [], |r| r.get(0))
}

/// Marks the channel's segments created after `after_id` that start in
/// [start, end) as merged by gap-fill job `job`: a merge's own segments
/// (live recording starts at the present, never inside a past hole).
pub fn gapfill_mark_segments(
    conn: &Connection,
    job: i64,
    channel: u32,
    after_id: i64,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO gapfill_segment (segment_id, job)
         SELECT id, ?1 FROM segment WHERE channel = ?2 AND id > ?3 AND start_90k >= ?4 AND start_90k < ?5 AND state < 2",
        params![job, channel, after_id, start.0, end.0],
    )
}

/// The next unused piece number of gap-fill job `job` (the `origin_segment`
/// of its merges is `job << 32 | piece`, unique across attempts and restarts).
pub fn gapfill_next_piece(conn: &Connection, job: i64, origin: &str) -> rusqlite::Result<i64> {
    let base = job << 32;
    conn.query_row(
        "SELECT COALESCE(MAX(origin_segment) + 1, ?2) FROM import
         WHERE origin = ?1 AND origin_segment >= ?2 AND origin_segment < ?3",
        params![origin, base, base + (1i64 << 32)],
        |r| r.get(0),
    )
}

/// Of the segments with ids in [lo, hi], those gap fill merged (of any
/// channel: callers keep the ids they hold). A range of the table's key,
/// for lists that already have their rows: `gapfill_segment_ids` walks the
/// (channel, start) range again.
pub fn gapfill_segments_among(conn: &Connection, lo: i64, hi: i64) -> rusqlite::Result<std::collections::HashSet<i64>> {
    let mut stmt = conn.prepare_cached("SELECT segment_id FROM gapfill_segment WHERE segment_id BETWEEN ?1 AND ?2")?;
    let rows = stmt.query_map(params![lo, hi], |r| r.get(0))?;
    rows.collect()
}

/// Of a channel's segments overlapping [start, end), those gap fill merged.
pub fn gapfill_segment_ids(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<std::collections::HashSet<i64>> {
    // Bounded from below as in `segments_overlapping`: without it the
    // (channel, start) index was walked from the channel's first segment.
    let mut stmt = conn.prepare_cached(
        "SELECT g.segment_id FROM gapfill_segment g JOIN segment s ON s.id = g.segment_id
         WHERE s.channel = ?1 AND s.start_90k < ?3 AND s.end_90k > ?2
           AND s.start_90k >= ?2 - 324000000
               - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = ?1), 0)",
    )?;
    let rows = stmt.query_map(params![channel, start.0, end.0], |r| r.get(0))?;
    rows.collect()
}
