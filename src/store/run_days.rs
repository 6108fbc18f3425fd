//! Day summaries of recording runs, so that `recordings` over a long range
//! costs a row per day instead of a row per segment (a year of a channel's
//! minute segments is 525,600 rows; its summaries are 365).
//!
//! `run_day` has a row per channel and day (by segment start) with a change
//! counter that triggers bump in the same transaction as every change to
//! the day's segments (insert, delete, state, times, sizes, entry, damage,
//! holes, gap fill's marks), whoever makes it: writer, importer, repair,
//! retention. A summary (the day's `RunFold`, JSON) is valid only while the
//! `summary_version` it was folded at equals the counter, so a stale one is
//! never used: the reader folds that day's segments instead. The summaries
//! are a cache, written by the `store-runs` thread for past days; the
//! recordings list is correct without any. A segment being written
//! changes every flush: those updates do not bump the counter (that would
//! cost the writer a row write per channel per flush), so a day holding a
//! segment being written is never summarized, and its completion bumps it.
//!
//! Must never write segment rows, and never store a summary folded from a
//! state other than the counter it records.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tracing::{info, warn};

use super::db::{self, SampleEntryRow};
use super::periodic::{self, Periodic, Schedule};
use super::runs::{interior_days, Piece, RunFold, DAY};
use crate::time::{Clock, Time90k};

/// Version 12 (issue 14, a year of `recordings`): `run_day` and the triggers
/// that keep its counters. Upgrading reads the (channel, start) index once;
/// the summaries are folded afterwards by the `store-runs` thread.
/// `7776000000` is `runs::DAY`.
pub const MIGRATION_12: &str = r#"
CREATE TABLE run_day (
  channel INTEGER NOT NULL,
  day INTEGER NOT NULL,          -- start_90k / 7776000000 of the day's segments
  changes INTEGER NOT NULL,      -- bumped with every change to the day's segments
  summary_version INTEGER,       -- `changes` the summary was folded at; else stale
  summary BLOB,                  -- JSON runs::RunFold of the day's segments
  PRIMARY KEY (channel, day)
) WITHOUT ROWID;
INSERT INTO run_day (channel, day, changes)
  SELECT channel, start_90k / 7776000000, 1 FROM segment GROUP BY 1, 2;
CREATE TRIGGER segment_day_insert AFTER INSERT ON segment BEGIN
  INSERT INTO run_day (channel, day, changes) VALUES (new.channel, new.start_90k / 7776000000, 1)
    ON CONFLICT (channel, day) DO UPDATE SET changes = changes + 1;
END;
CREATE TRIGGER segment_day_delete AFTER DELETE ON segment BEGIN
  UPDATE run_day SET changes = changes + 1 WHERE channel = old.channel AND day = old.start_90k / 7776000000;
END;
CREATE TRIGGER segment_day_update
  AFTER UPDATE OF channel, state, start_90k, end_90k, frames, bytes, sample_entry_id, damage, readable_bytes, holes
  ON segment WHEN old.state <> 0 OR new.state <> 0 BEGIN
  UPDATE run_day SET changes = changes + 1 WHERE channel = old.channel AND day = old.start_90k / 7776000000;
  INSERT INTO run_day (channel, day, changes) VALUES (new.channel, new.start_90k / 7776000000, 1)
    ON CONFLICT (channel, day) DO UPDATE SET changes = changes + 1;
END;
CREATE TRIGGER gapfill_segment_day_insert AFTER INSERT ON gapfill_segment BEGIN
  UPDATE run_day SET changes = changes + 1
    WHERE (channel, day) = (SELECT channel, start_90k / 7776000000 FROM segment WHERE id = new.segment_id);
END;
CREATE TRIGGER gapfill_segment_day_delete AFTER DELETE ON gapfill_segment BEGIN
  UPDATE run_day SET changes = changes + 1
    WHERE (channel, day) = (SELECT channel, start_90k / 7776000000 FROM segment WHERE id = old.segment_id);
END;
"#;

/// Columns for the fold, in `SEGMENT_COLS` order: the covering (channel,
/// start) index has them all but the frame index.
const RUN_COLS: &str = "id, channel, state, start_90k, end_90k, frames, 0, bytes, 0, sample_entry_id, NULL, damage, \
                        readable_bytes, holes";

/// The channel's segments overlapping [start, end) whose start is in
/// [starts.0, starts.1), in (start, id) order, with what the fold needs
/// (read from the covering index; rows with damage or holes whole, since
/// their frame index places what is still readable).
pub fn segments_for_runs(
    conn: &Connection,
    channel: u32,
    start: i64,
    end: i64,
    starts: (i64, i64),
) -> rusqlite::Result<Vec<db::SegmentRow>> {
    // One lower and one upper bound on the start (the look-back of
    // `db::segments_overlapping`, or the part's own), so that the index
    // range is the part's and never the channel's whole history.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM segment
         WHERE channel = ?1 AND end_90k > ?2 AND state <> 2
           AND start_90k >= MAX(?4, ?2 - 324000000
               - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = ?1), 0))
           AND start_90k < MIN(?3, ?5)
         ORDER BY start_90k, id"
    ))?;
    let mut rows = stmt
        .query_map(params![channel, start, end, starts.0, starts.1], db::segment_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for r in rows.iter_mut().filter(|r| r.damage.is_some() || !r.holes.is_empty()) {
        if let Some(whole) = db::segment(conn, r.id)? {
            *r = whole;
        }
    }
    Ok(rows)
}

/// Folds `rows` (in (start, id) order) onto `fold`: each row's readable
/// pieces, marked where gap fill merged it.
pub fn fold_rows(
    conn: &Connection,
    fold: &mut RunFold,
    rows: &[db::SegmentRow],
    entries: &HashMap<i64, SampleEntryRow>,
) -> rusqlite::Result<()> {
    let (lo, hi) = rows
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s.id), hi.max(s.id)));
    let filled = if rows.is_empty() {
        Default::default()
    } else {
        db::gapfill_segments_among(conn, lo, hi)?
    };
    for s in rows {
        let entry_len = entries.get(&s.sample_entry_id).map(|e| e.data.len()).unwrap_or(0);
        let gapfill = filled.contains(&s.id);
        for (a, b, frames, bytes) in super::reader::pieces(s, entry_len) {
            fold.push(Piece {
                start: a.0,
                end: b.0,
                frames,
                bytes,
                entry: s.sample_entry_id,
                gapfill,
                growing: s.state == db::WRITING,
            });
        }
    }
    Ok(())
}

/// The channel's segments starting on `day`, folded from the empty state:
/// what that day's summary holds.
pub fn fold_day(
    conn: &Connection,
    channel: u32,
    day: i64,
    entries: &HashMap<i64, SampleEntryRow>,
) -> rusqlite::Result<RunFold> {
    let mut fold = RunFold::default();
    fold_rows(conn, &mut fold, &day_segments(conn, channel, day)?, entries)?;
    Ok(fold)
}

/// The channel's segments starting on `day` (each overlaps [day start − 1,
/// day end), even one of no length yet), as the fold reads them.
fn day_segments(conn: &Connection, channel: u32, day: i64) -> rusqlite::Result<Vec<db::SegmentRow>> {
    let (a, b) = (day * DAY, (day + 1) * DAY);
    segments_for_runs(conn, channel, a - 1, b, (a, b))
}

/// Of days [first, last) of the channel, those with segments, each with its
/// summary if it is valid (`None`: stale, fold the day's segments).
fn days(conn: &Connection, channel: u32, first: i64, last: i64) -> rusqlite::Result<Vec<(i64, Option<RunFold>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT day, CASE WHEN summary_version = changes THEN summary END FROM run_day
         WHERE channel = ?1 AND day >= ?2 AND day < ?3 ORDER BY day",
    )?;
    let rows = stmt.query_map(params![channel, first, last], |r| {
        let summary: Option<Vec<u8>> = r.get(1)?;
        // A summary that does not parse is treated as stale: the day's
        // segments say the same, only slower.
        Ok((r.get(0)?, summary.and_then(|s| serde_json::from_slice(&s).ok())))
    })?;
    rows.collect()
}

/// The channel's runs over [start, end): the segments before and after the
/// range's whole days one by one, and each whole day from its summary when
/// it has a valid one (its segments otherwise). All in one read snapshot.
pub fn recordings(
    conn: &Connection,
    channel: u32,
    start: i64,
    end: i64,
    entries: &HashMap<i64, SampleEntryRow>,
) -> rusqlite::Result<RunFold> {
    let tx = conn.unchecked_transaction()?;
    let mut fold = RunFold::default();
    match interior_days(start, end) {
        None => {
            let rows = segments_for_runs(&tx, channel, start, end, (i64::MIN, i64::MAX))?;
            fold_rows(&tx, &mut fold, &rows, entries)?;
        }
        Some((first, last)) => {
            let rows = segments_for_runs(&tx, channel, start, end, (i64::MIN, first * DAY))?;
            fold_rows(&tx, &mut fold, &rows, entries)?;
            for (day, summary) in days(&tx, channel, first, last)? {
                if summary.is_some_and(|s| fold.append(&s)) {
                    continue;
                }
                fold_rows(&tx, &mut fold, &day_segments(&tx, channel, day)?, entries)?;
            }
            let rows = segments_for_runs(&tx, channel, start, end, (last * DAY, i64::MAX))?;
            fold_rows(&tx, &mut fold, &rows, entries)?;
        }
    }
    tx.commit()?;
    Ok(fold)
}

/// What one summarizing pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pass {
    /// Stale days folded, and how many of those got a summary (a day
    /// holding a segment being written, or changed meanwhile, gets none).
    pub days: usize,
    pub stored: usize,
    pub ms: u64,
}

/// Days summarized per write transaction: short, since the writer's commits
/// wait behind it.
const BATCH: usize = 64;

/// Folds and stores the summary of every stale day before `before_day`, a
/// batch per transaction. `stop` is asked between batches. A summary is
/// stored only if the day's counter is still the one read before its
/// segments: a change in between (the counter moves in the same transaction)
/// leaves it stale.
pub fn summarize(conn: &Connection, before_day: i64, mut stop: impl FnMut() -> bool) -> rusqlite::Result<Pass> {
    let t0 = Instant::now();
    let mut pass = Pass::default();
    let mut after = (i64::MIN, i64::MIN);
    loop {
        let entries = db::sample_entries(conn)?;
        let stale: Vec<(u32, i64, i64)> = conn
            .prepare_cached(
                "SELECT channel, day, changes FROM run_day
                 WHERE (channel, day) > (?1, ?2) AND day >= 1 AND day < ?3 AND summary_version IS NOT changes
                 ORDER BY channel, day LIMIT ?4",
            )?
            .query_map(params![after.0, after.1, before_day, BATCH as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let Some(&(ch, day, _)) = stale.last() else {
            break;
        };
        after = (i64::from(ch), day);
        let mut folded = Vec::with_capacity(stale.len());
        for &(channel, day, changes) in &stale {
            let fold = fold_day(conn, channel, day, &entries)?;
            pass.days += 1;
            if !fold.growing() {
                let json = serde_json::to_vec(&fold).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                folded.push((channel, day, changes, json));
            }
        }
        let tx = conn.unchecked_transaction()?;
        for (channel, day, changes, json) in &folded {
            pass.stored += tx
                .prepare_cached(
                    "UPDATE run_day SET summary = ?4, summary_version = ?3
                     WHERE channel = ?1 AND day = ?2 AND changes = ?3",
                )?
                .execute(params![channel, day, changes, json])?;
        }
        tx.commit()?;
        if stop() {
            break;
        }
    }
    pass.ms = t0.elapsed().as_millis() as u64;
    Ok(pass)
}

/// How often the `store-runs` thread looks for stale days.
const INTERVAL: Duration = Duration::from_secs(60);

/// Starts the `store-runs` thread: a pass over the days before today at
/// once (an upgraded store has none summarized), then every `INTERVAL`.
/// Dropping the handle stops it between batches.
pub fn spawn(db_path: PathBuf, clock: Arc<dyn Clock>) -> Option<Periodic> {
    let schedule = Schedule {
        name: "store-runs",
        interval: INTERVAL,
        at_start: true,
        at_stop: false,
    };
    // Without summaries `recordings` folds each day's segments: slower, not wrong.
    periodic::spawn(schedule, db_path, move |conn, stopped| {
        match summarize(conn, today(clock.now()), stopped) {
            Ok(p) if p.stored > 0 => {
                info!(days = p.days, stored = p.stored, ms = p.ms, "summarized recording runs")
            }
            Ok(_) => {}
            Err(e) => warn!("cannot summarize recording runs: {e}"),
        }
    })
}

/// The day `now` falls on (summaries are folded only for days before it).
pub fn today(now: Time90k) -> i64 {
    now.0.max(0) / DAY
}

#[cfg(test)]
#[path = "run_days_tests.rs"]
mod tests;
