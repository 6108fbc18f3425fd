//! Segment files without an index row ("orphans", case 4 of the invariant in
//! `db`): finding them, in two places, so that start-up does only work
//! bounded by what a crash can leave unfinished.
//!
//! Every path that creates a segment file (the writer, the importer, gap
//! fill through the importer: all `OpenSegment::create`) commits the row
//! first, with an id from SQLite's AUTOINCREMENT sequence, and only then
//! creates the file. A crash can therefore leave a file without a row only
//! where the row's insert never committed: its id is above the last
//! committed one, and a rolled-back insert hands its id to the next one, so
//! such ids follow the last committed id with no long gap. Start-up
//! (`adopt_above_last_id`) probes those names in every channel directory —
//! a few hundred `stat`s whatever the store's size.
//!
//! A file whose row is gone but whose id is at or below the last one is not
//! a crash's leftover: an unlink that failed, an unlink a power cut undid
//! after the row's deletion committed, or a file put there by hand. The
//! background check (`adopt_unindexed`, on the `store-check` thread) finds
//! those by listing every channel directory — seconds for a year of
//! segments, which recording must not wait for.
//!
//! Must never adopt a file whose row exists or might still be inserted, and
//! never delete a file that may hold an intact frame (adoption goes through
//! `repair`, which keeps or moves aside).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension};
use tracing::info;

use super::repair::{adopt_file, RepairReport};

/// Ids probed past the last one found (or the last committed one) before
/// start-up concludes there are no more orphans above it. A rolled-back
/// insert's id is reused by the next insert, so crash leftovers follow the
/// last committed id directly; the window tolerates a few ids that were
/// handed out but whose file was never created.
pub const PROBE_WINDOW: i64 = 64;

/// The highest segment id SQLite has committed: the AUTOINCREMENT sequence
/// (which remembers ids whose rows were since deleted), or the largest id
/// present if that is higher (a row adopted with an explicit id).
pub fn last_committed_id(conn: &Connection) -> rusqlite::Result<i64> {
    let seq: Option<i64> = conn
        .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'segment'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let max: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM segment", [], |r| r.get(0))?;
    Ok(seq.unwrap_or(0).max(max))
}

/// The channel directories under `DIR/video`, by channel number.
pub fn channel_dirs(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir.join("video"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let ch = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("ch")?.parse::<u32>().ok())?;
            Some((ch, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn file_name(id: i64) -> String {
    format!("{id:016}.seg")
}

/// The ids to probe above `last`, given which of them were found so far:
/// pure, so the window's rule is tested alone. `found(id)` says whether any
/// channel directory holds a file of that id (and adopts it).
pub fn probe_above(last: i64, mut found: impl FnMut(i64) -> anyhow::Result<bool>) -> anyhow::Result<Vec<i64>> {
    let mut hits = Vec::new();
    let (mut id, mut misses) = (last + 1, 0);
    while misses < PROBE_WINDOW {
        if found(id)? {
            hits.push(id);
            misses = 0;
        } else {
            misses += 1;
        }
        id += 1;
    }
    Ok(hits)
}

/// Start-up: adopts every segment file whose id is above the last committed
/// one (a crash between a row's insert and its commit). Bounded: about
/// `PROBE_WINDOW` × channel directories `stat`s, whatever the store holds.
pub fn adopt_above_last_id(conn: &Connection, dir: &Path, report: &mut RepairReport) -> anyhow::Result<()> {
    let last = last_committed_id(conn)?;
    let channels = channel_dirs(dir);
    probe_above(last, |id| {
        let mut any = false;
        for (ch, path) in &channels {
            if path.join(file_name(id)).symlink_metadata().is_err() {
                continue;
            }
            any = true;
            // The same id under two channels (a copied file): the first is
            // adopted, the other has a row of another channel and is left
            // for an operator, as the full listing always did.
            if super::db::segment(conn, id)?.is_none() {
                adopt_file(conn, dir, *ch, id, report)?;
            }
        }
        Ok(any)
    })?;
    Ok(())
}

/// What the background listing found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    /// Segment files listed, and how long the ids and the listing took.
    pub files: usize,
    pub ms: u64,
    /// Files without a row that were adopted (or moved aside, or removed for
    /// holding no frame: see `repair`).
    pub orphans: usize,
}

/// The background check: lists every channel directory and adopts each file
/// whose row is gone. Runs beside the writer and retention, so the order
/// matters: the ids and the last committed id are read in one snapshot
/// *before* the listing. A file listed afterwards whose id is at or below
/// that last id and that has no row in the snapshot had its row deleted (or
/// never committed) before the snapshot — and whoever deletes a row unlinks
/// its file first (retention, a failed create, repair), so the file is one
/// they failed to remove. Files above the last id may belong to rows being
/// inserted now: never touched here (start-up's probe owns those). A row
/// inserted or deleted after the snapshot cannot make a file look orphaned.
pub fn adopt_unindexed(conn: &Connection, dir: &Path, report: &mut RepairReport) -> anyhow::Result<Listing> {
    let t0 = Instant::now();
    let (known, last) = {
        let tx = conn.unchecked_transaction()?;
        let known = all_ids(&tx)?;
        let last = last_committed_id(&tx)?;
        tx.commit()?;
        (known, last)
    };
    let mut listing = Listing::default();
    let mut orphans = Vec::new();
    for (ch, path) in channel_dirs(dir) {
        for f in std::fs::read_dir(&path)?.flatten() {
            let name = f.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")?.parse::<i64>().ok()) else {
                continue;
            };
            listing.files += 1;
            if id <= last && !known.contains(&id) {
                orphans.push((ch, id));
            }
        }
    }
    for (ch, id) in orphans {
        // Only this thread and start-up (done) insert rows with a chosen id,
        // so a row present now was adopted under another channel's name.
        if super::db::segment(conn, id)?.is_some() {
            continue;
        }
        let before = report.segments_adopted + report.files_quarantined + report.segments_discarded;
        adopt_file(conn, dir, ch, id, report)?;
        listing.orphans += report.segments_adopted + report.files_quarantined + report.segments_discarded - before;
    }
    listing.ms = t0.elapsed().as_millis() as u64;
    info!(
        files = listing.files,
        orphans = listing.orphans,
        ms = listing.ms,
        "listed segment files for ones without an index row"
    );
    Ok(listing)
}

fn all_ids(conn: &Connection) -> rusqlite::Result<HashSet<i64>> {
    let mut stmt = conn.prepare("SELECT id FROM segment")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_goes_a_window_past_the_last_file_found() {
        let files = [101, 102, 140, 240];
        let mut asked = Vec::new();
        let hits = probe_above(100, |id| {
            asked.push(id);
            Ok(files.contains(&id))
        })
        .unwrap();
        // 240 is more than a window past 140: a file a crash cannot leave.
        assert_eq!(hits, vec![101, 102, 140]);
        assert_eq!(asked.last(), Some(&(140 + PROBE_WINDOW)));
        assert_eq!(probe_above(7, |_| Ok(false)).unwrap().len(), 0);
    }
}
