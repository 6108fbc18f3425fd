//! Start-up repair: brings segment files and their index rows back into
//! agreement after a crash, and finds finished segments whose files were
//! damaged while Tandem was stopped. Before recording starts it looks only at
//! what a crash can leave unfinished (rows `writing` or `garbage`, files
//! above the last committed id: see `orphans`); whatever needs the whole
//! store runs afterwards on its own thread.
//!
//! Repair keeps every frame whose record verifies: a damaged stretch in the
//! middle of a segment is stepped over (`segment_file::scan`) and recorded as
//! a hole of known bytes and time, never a reason to cut what follows. The
//! start-up check of finished segments is cheap (one `stat` per file, a
//! header read only when the size is wrong) so that a year of segments is
//! checked in seconds; what it finds is marked in the index and logged by file
//! name, never deleted. Must never delete a file that may hold an intact frame.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use tracing::{info, warn};

use super::segment_file::{self, SegmentHeader};
use super::{db, index, orphans, segment_path, sync_video_dirs, SampleEntry};

#[derive(Debug, Default, serde::Serialize)]
pub struct RepairReport {
    pub segments_repaired: usize,
    pub segments_adopted: usize,
    pub segments_discarded: usize,
    pub garbage_collected: usize,
    pub bytes_truncated: u64,
    /// Damaged stretches stepped over inside repaired segments, and their bytes.
    pub stretches_skipped: usize,
    pub bytes_skipped: u64,
    /// Segments whose damaged header was rewritten from their index row.
    pub headers_rewritten: usize,
    /// Files with a damaged header and no row to rebuild it from, moved to
    /// `DIR/damaged/` rather than deleted.
    pub files_quarantined: usize,
    /// Finished segments checked at start-up, and those found damaged now.
    pub segments_checked: usize,
    pub segments_damaged: usize,
    /// The damaged files, as `path: what is wrong`.
    pub damaged_files: Vec<String>,
}

/// What the start-up check concludes about one finished segment's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileCheck {
    Intact,
    /// Longer than the row says: the frames the row lists are all there.
    Longer(u64),
    /// Damaged: what is wrong, and how many leading bytes are still usable.
    Damaged {
        why: String,
        readable: u64,
    },
}

/// Judges a finished segment's file from its length (`None`: missing) and,
/// when the length is wrong, whether its header is still this segment's.
/// Pure: the caller does the `stat` and the header read.
pub fn judge_file(expected: u64, actual: Option<u64>, header_ok: impl FnOnce() -> bool) -> FileCheck {
    match actual {
        None => FileCheck::Damaged {
            why: "file missing".into(),
            readable: 0,
        },
        Some(a) if a == expected => FileCheck::Intact,
        Some(a) if !header_ok() => FileCheck::Damaged {
            why: if a < expected {
                format!("file truncated or overwritten ({a} of {expected} bytes, and not this segment's header)")
            } else {
                format!("file overwritten ({a} bytes, not this segment's header; the index expects {expected})")
            },
            readable: 0,
        },
        Some(a) if a < expected => FileCheck::Damaged {
            why: format!("file truncated to {a} of {expected} bytes"),
            readable: a,
        },
        Some(a) => FileCheck::Longer(a),
    }
}

/// True if the file at `path` starts with the header of segment `id` of `channel`.
pub fn header_matches(path: &Path, channel: u32, id: i64) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut r = std::io::BufReader::new(f.take(2 << 20));
    matches!(SegmentHeader::read(&mut r), Ok((h, _)) if h.channel == channel && h.segment_id == id)
}

/// Brings files and index back into agreement after a crash (see the
/// invariant in `db`), then checks every finished segment's file. Keeps every
/// intact frame; logs each repair and each damaged file by name.
pub fn repair(conn: &rusqlite::Connection, dir: &Path) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    collect_garbage(conn, dir, &mut report)?;
    for row in db::segments_in_state(conn, db::WRITING)? {
        finish_from_file(conn, dir, row.channel, row.id, false, &mut report)?;
    }
    // Files whose row never committed; those whose row is gone for another
    // reason are the background check's (`orphans::adopt_unindexed`).
    orphans::adopt_above_last_id(conn, dir, &mut report)?;
    sync_video_dirs(dir);
    if report.segments_repaired + report.segments_adopted + report.segments_discarded + report.files_quarantined > 0 {
        info!(?report, "store repaired after an unclean stop");
    }
    Ok(report)
}

/// Finishes what retention started: unlinks the files of `garbage` rows,
/// makes the unlinks durable, then deletes the rows of the files that are
/// gone. A file that cannot be unlinked keeps its row (and is tried again at
/// the next start): deleting the row would leave a file no row describes,
/// which only the background listing finds.
fn collect_garbage(conn: &rusqlite::Connection, dir: &Path, report: &mut RepairReport) -> Result<()> {
    let mut gone = Vec::new();
    for row in db::segments_in_state(conn, db::GARBAGE)? {
        let path = segment_path(dir, row.channel, row.id);
        match std::fs::remove_file(&path) {
            Ok(()) => gone.push(row.id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(row.id),
            Err(e) => warn!(
                channel = row.channel,
                segment = row.id,
                file = %path.display(),
                "cannot delete a segment retention deleted: {e}; its row is kept to try again"
            ),
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    sync_video_dirs(dir);
    let tx = conn.unchecked_transaction()?;
    for id in &gone {
        db::delete_segment_row(&tx, *id)?;
    }
    tx.commit()?;
    report.garbage_collected += gone.len();
    Ok(())
}

/// The start-up check of finished segments: size against the row, the
/// header only when the size is wrong. `Store::open` runs it on its own
/// thread and connection after repair, so recording never waits for it (a
/// year of segments takes seconds); readers check the files they plan
/// meanwhile. Content is checked elsewhere: a file changed in place keeps its
/// size, and only reading it all against the SHA-256 the writer stored
/// (`store::integrity`) finds that — hours for a large store, so it is the
/// paced scrub's job (`[storage] scrub_interval`) and `tandem verify --data`'s,
/// never start-up's. Segments this module rebuilds get no hash (unhashed).
pub fn check_finished(conn: &rusqlite::Connection, dir: &Path, report: &mut RepairReport) -> Result<()> {
    let t0 = Instant::now();
    let rows = db::complete_segment_sizes(conn)?;
    let mut damaged = Vec::new();
    for &(id, channel, bytes) in &rows {
        let path = segment_path(dir, channel, id);
        let actual = match std::fs::metadata(&path) {
            // A FIFO or device in a segment's place would block or never end
            // a read: it is damage, and it is never opened.
            Ok(m) if !m.is_file() => {
                damaged.push((id, channel, path, "not a regular file".into(), 0));
                continue;
            }
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                damaged.push((id, channel, path, format!("file unreadable: {e}"), 0));
                continue;
            }
        };
        match judge_file(bytes, actual, || header_matches(&path, channel, id)) {
            FileCheck::Intact => {}
            FileCheck::Longer(len) => warn!(
                channel,
                segment = id,
                file = %path.display(),
                "segment file is {len} bytes, longer than the {bytes} its index lists; the extra bytes are ignored"
            ),
            FileCheck::Damaged { why, readable } => damaged.push((id, channel, path, why, readable)),
        }
    }
    report.segments_checked = rows.len();
    // Retention may have deleted a segment since the list was read (it marks
    // the row garbage before unlinking): only rows still finished are damage.
    let mut marked = Vec::new();
    if !damaged.is_empty() {
        let tx = conn.unchecked_transaction()?;
        for d in damaged {
            if db::mark_damaged(&tx, d.0, &d.3, d.4)? {
                marked.push(d);
            }
        }
        tx.commit()?;
    }
    for (id, channel, path, why, readable) in marked {
        warn!(
            channel,
            segment = id,
            file = %path.display(),
            readable_bytes = readable,
            "damaged segment: {why}; its missing footage is shown as a gap"
        );
        report.segments_damaged += 1;
        report.damaged_files.push(format!("{}: {why}", path.display()));
    }
    info!(
        segments = report.segments_checked,
        damaged = report.segments_damaged,
        ms = t0.elapsed().as_millis() as u64,
        "checked finished segments"
    );
    Ok(())
}

/// Indexes segment `id` of `channel` from its file alone (it has no row):
/// the frames it holds become a finished segment, or the file is moved aside
/// or removed as `repair` would (see `orphans`).
pub(super) fn adopt_file(
    conn: &rusqlite::Connection,
    dir: &Path,
    channel: u32,
    id: i64,
    report: &mut RepairReport,
) -> Result<()> {
    finish_from_file(conn, dir, channel, id, true, report)
}

fn finish_from_file(
    conn: &rusqlite::Connection,
    dir: &Path,
    channel: u32,
    id: i64,
    adopt: bool,
    report: &mut RepairReport,
) -> Result<()> {
    let path = segment_path(dir, channel, id);
    let discard = |report: &mut RepairReport, why: &str| -> Result<()> {
        warn!(
            channel,
            segment = id,
            file = %path.display(),
            "discarding segment with no complete frame: {why}"
        );
        let _ = std::fs::remove_file(&path);
        if !adopt {
            // The unlink must be durable before the row goes: a power cut
            // that brought the file back without its row would leave it to
            // the background listing instead of start-up.
            if let Some(parent) = path.parent() {
                let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
            }
            db::delete_segment_row(conn, id)?;
        }
        report.segments_discarded += 1;
        Ok(())
    };
    if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
        // Opening a FIFO or a device here could block start-up for ever;
        // whatever it is, it is not ours to delete.
        warn!(channel, segment = id, file = %path.display(), "not a regular file; left alone");
        if !adopt {
            db::delete_segment_row(conn, id)?;
            report.segments_discarded += 1;
        }
        return Ok(());
    }
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) => return discard(report, &format!("file unreadable: {e}")),
    };
    let len = file.metadata()?.len();
    let scan = match segment_file::scan(&mut file, len, true) {
        Ok(s) if !s.frames.is_empty() && s.header.segment_id == id && s.header.channel == channel => s,
        Ok(s) if s.frames.is_empty() => return discard(report, "no complete frame"),
        // Frames of another segment or channel under this name (a renamed or
        // copied file): not this row's, but not garbage either.
        Ok(s) => {
            let why = format!(
                "the file holds segment {} of channel {}",
                s.header.segment_id, s.header.channel
            );
            return quarantine(conn, dir, &path, channel, id, adopt, &why, report);
        }
        Err(e) => match rebuild_header(conn, &file, id, len, adopt) {
            // The row knows what the header said: keep the frames after it
            // and write the header back, so readers find the file whole.
            Some(s) => {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&s.header.encode(), 0)?;
                warn!(
                    channel,
                    segment = id,
                    file = %path.display(),
                    "segment header was damaged ({e}); rewritten from the index"
                );
                report.headers_rewritten += 1;
                s
            }
            None if len > 4096 => return quarantine(conn, dir, &path, channel, id, adopt, &e.to_string(), report),
            None => return discard(report, &e.to_string()),
        },
    };
    if scan.valid_len < len {
        report.bytes_truncated += len - scan.valid_len;
    }
    // Also gives back the space reserved past the end (`reserve`) that the
    // crash left: truncating to the size frees it.
    file.set_len(scan.valid_len)?;
    file.sync_all()?;
    let Some(entry) = SampleEntry::parse(scan.header.sample_entry.clone()) else {
        return discard(report, "unknown sample entry");
    };
    let entries = scan.entries(3000);
    let holes = scan.holes(3000);
    let end = scan.header.start
        + entries.iter().map(|e| i64::from(e.duration)).sum::<i64>()
        + holes.iter().map(|h| i64::from(h.ticks)).sum::<i64>();
    let progress = db::Progress {
        end,
        frames: entries.len() as u32,
        key_frames: entries.iter().filter(|e| e.key).count() as u32,
        bytes: scan.valid_len,
        media_bytes: entries.iter().map(|e| u64::from(e.size)).sum(),
    };
    let tx = conn.unchecked_transaction()?;
    let entry_id = db::upsert_sample_entry(&tx, &entry.data, entry.codec, entry.width, entry.height)?;
    if adopt {
        db::insert_adopted_segment(&tx, id, channel, scan.header.start, entry_id)?;
    }
    db::complete_segment(&tx, id, &progress, &index::encode(&entries), None)?;
    db::set_holes(&tx, id, &holes)?;
    tx.commit()?;
    for s in &scan.skips {
        let kept_after = scan.frames.len() - s.frames_before;
        warn!(
            channel,
            segment = id,
            file = %path.display(),
            offset = s.offset,
            bytes = s.bytes,
            frames_kept_after = kept_after,
            "skipped a damaged stretch ({}); the intact frames after it are kept",
            s.why
        );
        report.stretches_skipped += 1;
        report.bytes_skipped += s.bytes;
    }
    info!(
        channel,
        segment = id,
        file = %path.display(),
        frames = entries.len(),
        skipped_stretches = scan.skips.len(),
        truncated_bytes = len - scan.valid_len,
        tail = if scan.valid_len < len { scan.stopped.unwrap_or("clean") } else { "clean" },
        "segment repaired{}",
        if adopt { " (adopted from file)" } else { "" }
    );
    if adopt {
        report.segments_adopted += 1;
    } else {
        report.segments_repaired += 1;
    }
    Ok(())
}

/// Rebuilds the header of segment `id` from its `writing` row and scans the
/// file's records with it; `None` if there is no row to rebuild from (an
/// adopted file) or no record verifies.
fn rebuild_header(
    conn: &rusqlite::Connection,
    file: &std::fs::File,
    id: i64,
    len: u64,
    adopt: bool,
) -> Option<segment_file::Scan> {
    if adopt {
        return None;
    }
    let row = db::segment(conn, id).ok()??;
    let entry = db::sample_entries(conn).ok()?.remove(&row.sample_entry_id)?;
    let header = SegmentHeader {
        channel: row.channel,
        segment_id: id,
        start: row.start,
        sample_entry: entry.data,
    };
    let scan = segment_file::scan_with_header(file, header, len);
    (!scan.frames.is_empty()).then_some(scan)
}

/// Moves a file that may hold frames but cannot be indexed out of `video/`,
/// so that nothing is deleted that a person could still recover.
#[allow(clippy::too_many_arguments)]
fn quarantine(
    conn: &rusqlite::Connection,
    dir: &Path,
    path: &Path,
    channel: u32,
    id: i64,
    adopt: bool,
    why: &str,
    report: &mut RepairReport,
) -> Result<()> {
    let aside = dir.join("damaged");
    super::create_dir_durable(&aside)?;
    let to = aside.join(format!("ch{channel}-{id:016}.seg"));
    std::fs::rename(path, &to)?;
    // Both names must be durable before the row goes: a power cut after the
    // row's deletion must not bring the file back where startup would adopt
    // it again, nor lose it from both places.
    std::fs::File::open(&aside)?.sync_all()?;
    if let Some(from) = path.parent() {
        std::fs::File::open(from)?.sync_all()?;
    }
    if !adopt {
        db::delete_segment_row(conn, id)?;
    }
    warn!(
        channel,
        segment = id,
        file = %path.display(),
        moved_to = %to.display(),
        "segment file cannot be indexed ({why}); moved aside, not deleted"
    );
    report.files_quarantined += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Time90k;

    fn store_with_writing_segment(frames: u32) -> (tempfile::TempDir, rusqlite::Connection, i64, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db::open(&dir.path().join("index.db")).unwrap();
        db::migrate(&mut conn).unwrap();
        let mut entry = vec![0u8; 40];
        entry[4..8].copy_from_slice(b"avc1");
        let e = db::upsert_sample_entry(&conn, &entry, "h264", 0, 0).unwrap();
        let id = db::insert_writing_segment(&conn, 2, Time90k(5_000), e).unwrap();
        let mut file = SegmentHeader {
            channel: 2,
            segment_id: id,
            start: Time90k(5_000),
            sample_entry: entry,
        }
        .encode();
        for i in 0..frames {
            let data = vec![i as u8 + 1; 300];
            file.extend_from_slice(&segment_file::record_header(i * 3000, i % 5 == 0, &data));
            file.extend_from_slice(&data);
        }
        std::fs::create_dir_all(dir.path().join("video/ch2")).unwrap();
        (dir, conn, id, file)
    }

    #[test]
    fn a_damaged_header_is_rebuilt_from_the_row_and_every_frame_kept() {
        let (dir, conn, id, mut file) = store_with_writing_segment(20);
        let original = file.clone();
        file[20] ^= 0xff; // inside the header body: its checksum fails
        let path = segment_path(dir.path(), 2, id);
        std::fs::write(&path, &file).unwrap();
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.headers_rewritten, 1);
        assert_eq!(report.segments_repaired, 1);
        let row = db::segment(&conn, id).unwrap().unwrap();
        assert_eq!((row.state, row.frames), (db::COMPLETE, 20));
        assert_eq!(std::fs::read(&path).unwrap(), original);
    }

    #[test]
    fn an_unindexable_file_is_moved_aside_not_deleted() {
        let (dir, conn, id, mut file) = store_with_writing_segment(20);
        file[20] ^= 0xff;
        // An orphan (its row's insert never committed) with a damaged
        // header: nothing to rebuild from.
        db::delete_segment_row(&conn, id).unwrap();
        conn.execute("DELETE FROM sqlite_sequence", []).unwrap();
        let path = segment_path(dir.path(), 2, id);
        std::fs::write(&path, &file).unwrap();
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.files_quarantined, 1);
        assert!(!path.exists());
        let aside = dir.path().join("damaged").join(format!("ch2-{id:016}.seg"));
        assert_eq!(std::fs::read(aside).unwrap(), file);
        // Another segment's file under this name: moved aside too.
        let (_, _, other, file2) = store_with_writing_segment(3);
        let renamed = segment_path(dir.path(), 2, other + 1);
        std::fs::write(&renamed, &file2).unwrap();
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.files_quarantined, 1);
        assert!(!renamed.exists());
        assert!(dir
            .path()
            .join("damaged")
            .join(format!("ch2-{:016}.seg", other + 1))
            .exists());
        // A tiny file (a crash while the header was written) is just removed.
        std::fs::write(&path, &file[..30]).unwrap();
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!((report.files_quarantined, report.segments_discarded), (0, 1));
        assert!(!path.exists());
    }

    #[test]
    fn an_orphan_above_the_last_id_is_adopted_at_start_up_and_one_below_by_the_listing() {
        let (dir, conn, id, file) = store_with_writing_segment(10);
        // The row's insert never committed: the id is free again.
        db::delete_segment_row(&conn, id).unwrap();
        conn.execute("DELETE FROM sqlite_sequence", []).unwrap();
        std::fs::write(segment_path(dir.path(), 2, id), &file).unwrap();
        assert_eq!(orphans::last_committed_id(&conn).unwrap(), 0);
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.segments_adopted, 1);
        let row = db::segment(&conn, id).unwrap().unwrap();
        assert_eq!((row.state, row.frames), (db::COMPLETE, 10));

        // A finished segment whose row is gone while its file stayed (an
        // unlink that failed): at or below the last id, so start-up leaves
        // it to the listing, which adopts it.
        db::delete_segment_row(&conn, id).unwrap();
        let later = db::insert_writing_segment(&conn, 2, Time90k(900_000), 1).unwrap();
        db::delete_segment_row(&conn, later).unwrap();
        assert!(orphans::last_committed_id(&conn).unwrap() > id);
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.segments_adopted, 0);
        assert!(db::segment(&conn, id).unwrap().is_none());
        let mut report = RepairReport::default();
        let listing = orphans::adopt_unindexed(&conn, dir.path(), &mut report).unwrap();
        assert_eq!((listing.files, listing.orphans, report.segments_adopted), (1, 1, 1));
        assert_eq!(db::segment(&conn, id).unwrap().unwrap().frames, 10);
        // Listed again: every file has its row.
        let listing = orphans::adopt_unindexed(&conn, dir.path(), &mut RepairReport::default()).unwrap();
        assert_eq!((listing.files, listing.orphans), (1, 0));
    }

    #[test]
    fn a_file_above_the_snapshots_last_id_is_never_adopted_by_the_listing() {
        // The writer inserts a row, then creates its file: a file the listing
        // sees whose row came after its snapshot must be left alone.
        let (dir, conn, id, file) = store_with_writing_segment(4);
        let next = id + 1;
        std::fs::write(segment_path(dir.path(), 2, next), &file).unwrap();
        let listing = orphans::adopt_unindexed(&conn, dir.path(), &mut RepairReport::default()).unwrap();
        assert_eq!((listing.files, listing.orphans), (1, 0));
        assert!(db::segment(&conn, next).unwrap().is_none());
    }

    #[test]
    fn a_garbage_row_whose_file_cannot_be_unlinked_is_kept_for_the_next_start() {
        let (dir, conn, id, _) = store_with_writing_segment(1);
        db::mark_garbage(&conn, id).unwrap();
        let path = segment_path(dir.path(), 2, id);
        std::fs::create_dir_all(path.join("x")).unwrap();
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.garbage_collected, 0);
        assert_eq!(db::segment(&conn, id).unwrap().unwrap().state, db::GARBAGE);
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::write(&path, b"x").unwrap();
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.garbage_collected, 1);
        assert!(db::segment(&conn, id).unwrap().is_none() && !path.exists());
    }

    #[test]
    fn a_fifo_in_a_segments_place_never_blocks_start_up() {
        let (dir, conn, id, _) = store_with_writing_segment(1);
        let path = segment_path(dir.path(), 2, id);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let report = repair(&conn, dir.path()).unwrap();
        assert_eq!(report.segments_discarded, 1);
        assert!(path.exists(), "left alone");
        // The same FIFO in place of a finished segment: marked, never opened.
        let e = db::upsert_sample_entry(&conn, b"x", "h264", 0, 0).unwrap();
        let id2 = db::insert_writing_segment(&conn, 2, Time90k(0), e).unwrap();
        let p = db::Progress {
            end: Time90k(3000),
            frames: 1,
            key_frames: 1,
            bytes: 100,
            media_bytes: 10,
        };
        db::complete_segment(&conn, id2, &p, b"", None).unwrap();
        std::fs::rename(&path, segment_path(dir.path(), 2, id2)).unwrap();
        let mut r = RepairReport::default();
        check_finished(&conn, dir.path(), &mut r).unwrap();
        assert_eq!(r.segments_damaged, 1);
        assert!(r.damaged_files[0].contains("not a regular file"));
    }

    #[test]
    fn judging_a_finished_segment_file() {
        assert_eq!(
            judge_file(100, Some(100), || panic!("no header read needed")),
            FileCheck::Intact
        );
        assert_eq!(
            judge_file(100, None, || true),
            FileCheck::Damaged {
                why: "file missing".into(),
                readable: 0
            }
        );
        assert_eq!(
            judge_file(100, Some(60), || true),
            FileCheck::Damaged {
                why: "file truncated to 60 of 100 bytes".into(),
                readable: 60
            }
        );
        assert!(matches!(
            judge_file(100, Some(60), || false),
            FileCheck::Damaged { readable: 0, .. }
        ));
        assert!(matches!(
            judge_file(100, Some(7), || false),
            FileCheck::Damaged { ref why, readable: 0 } if why.contains("overwritten")
        ));
        assert_eq!(judge_file(100, Some(160), || true), FileCheck::Longer(160));
        assert!(matches!(
            judge_file(100, Some(160), || false),
            FileCheck::Damaged { readable: 0, .. }
        ));
    }

    /// A year of one-minute segments on two channels is about a million rows;
    /// this measures the start-up check over 100,000 (files present, sizes
    /// right, a few damaged) to keep it honest. Run with `--ignored`.
    #[test]
    #[ignore = "measurement: creates 100,000 files"]
    fn start_up_check_of_100k_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db::open(&dir.path().join("index.db")).unwrap();
        db::migrate(&mut conn).unwrap();
        let e = db::upsert_sample_entry(&conn, b"avc1", "h264", 1, 1).unwrap();
        std::fs::create_dir_all(dir.path().join("video/ch1")).unwrap();
        let n = 100_000;
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..n {
            let id = db::insert_writing_segment(&tx, 1, crate::time::Time90k(i * 5_400_000), e).unwrap();
            let p = db::Progress {
                end: crate::time::Time90k(i * 5_400_000 + 5_400_000),
                frames: 1,
                key_frames: 1,
                bytes: 3,
                media_bytes: 1,
            };
            db::complete_segment(&tx, id, &p, b"", None).unwrap();
            if i % 10_000 != 5 {
                std::fs::write(segment_path(dir.path(), 1, id), b"abc").unwrap();
            }
        }
        tx.commit().unwrap();
        let mut report = RepairReport::default();
        let t0 = Instant::now();
        check_finished(&conn, dir.path(), &mut report).unwrap();
        let took = t0.elapsed();
        eprintln!("start-up check of {n} segments: {took:?}");
        assert_eq!(report.segments_checked, n as usize);
        assert_eq!(report.segments_damaged, 10);
        let t0 = Instant::now();
        let mut again = RepairReport::default();
        check_finished(&conn, dir.path(), &mut again).unwrap();
        eprintln!("second start-up check (damage already marked): {:?}", t0.elapsed());
        assert_eq!(again.segments_damaged, 0);
        assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    }
}
