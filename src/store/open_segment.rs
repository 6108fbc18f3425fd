//! A segment being written: its file, its row, the frames appended to it, and
//! what the last *successful* fsync made durable.
//!
//! The durable point is the whole answer to "fsyncgate": after a failed
//! fsync Linux forgets the dirty pages it could not write, so a retried fsync
//! that succeeds proves nothing about them. A segment whose fsync fails is
//! therefore closed at its durable point — the row completed with exactly the
//! frames, bytes and hash the last good fsync covered, the file cut back to
//! that length — and never synced again.
//!
//! Frames are gathered before they are written (`queue_frame`): one `writev`
//! of a channel's last ~200 ms costs the kernel about 40 % less than one per
//! frame (ext4's per-call and partial-page work; `docs/performance.md`), and
//! a flush writes everything queued before its fdatasync, so the power-cut
//! promise is unchanged. What it costs: a SIGKILL can now lose the queued
//! frames (at most `write_delay`), not only a frame in flight.
//!
//! Must never complete a row with a frame written after its last successful
//! fsync, never claim a queued frame durable, and never read the file back
//! (the hash is fed as bytes are written).

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::record_digest::RecordDigest;
use super::reserve::Reserve;
use rusqlite::Connection;
use tracing::error;

use super::db::{self, Progress};
use super::index::{self, FrameEntry, IndexEncoder, IndexError, IndexMark};
use super::segment_file::{record_header, SegmentHeader, RECORD_HEADER_LEN};
use super::{segment_path, SampleEntry};
use crate::time::Time90k;

/// A frame written and not yet durable: its capture time and when the
/// writer was handed it (for the two latencies `GET /api/v1/store` shows).
pub(super) type Unflushed = (Time90k, Instant);

/// A channel's queued frames are written once they hold this many bytes…
const QUEUE_BYTES: usize = 256 << 10;
/// …or this many frames (two `iovec`s each, far below `IOV_MAX`)…
const QUEUE_FRAMES: usize = 128;
/// …or once the oldest has waited this long (`write_delay`), whichever is first.
const QUEUE_DELAY: Duration = Duration::from_millis(200);

/// How long a frame may wait in a segment's queue before it is written:
/// 200 ms, or a quarter of the flush interval if that is shorter (so a
/// short interval's flushes still find most frames written already).
pub(super) fn write_delay(flush_interval: Duration) -> Duration {
    QUEUE_DELAY.min(flush_interval / 4)
}

/// A write of queued frames that failed: the segment was rolled back to
/// the state before them, and the file cut back to its last whole record.
#[derive(Debug)]
pub(super) struct WriteFailed {
    pub error: std::io::Error,
    /// Queued frames that were never written.
    pub frames: u32,
}

/// Everything a queued frame changes, as it was before the first of the
/// queue: what a failed write rolls back to.
struct QueueMark {
    frames: u32,
    key_frames: u32,
    len: u64,
    media_bytes: u64,
    hash: RecordDigest,
    index: IndexMark,
    pending: Option<(Time90k, u32, bool)>,
    last_duration: u32,
    indexed_ticks: i64,
    unflushed: usize,
    dirty: bool,
}

impl QueueMark {
    /// The file as it was before the queue: what a round may prove durable
    /// while frames are queued but not yet written.
    fn point(&self, start: Time90k) -> DurablePoint {
        DurablePoint {
            frames: self.frames,
            key_frames: self.key_frames,
            len: self.len,
            media_bytes: self.media_bytes,
            end: end_of(start, self.pending, self.last_duration, self.indexed_ticks),
            hash: self.hash.clone(),
        }
    }
}

/// What a successful fsync covered; a failed one leaves it as it was.
#[derive(Clone)]
struct DurablePoint {
    frames: u32,
    key_frames: u32,
    len: u64,
    media_bytes: u64,
    end: Time90k,
    /// SHA-256 of the first `len` bytes (a clone of the running state: ~100 bytes).
    hash: RecordDigest,
}

/// Frames a failed fsync took with it.
#[derive(Debug)]
pub(super) struct Lost {
    pub frames: u32,
    pub bytes: u64,
    /// Frames the row keeps.
    pub kept: u32,
}

pub(super) struct OpenSegment {
    pub(super) id: i64,
    /// Shared with a flush round's thread while it fdatasyncs (`flush_round`).
    file: Arc<File>,
    pub(super) run: u64,
    pub(super) start: Time90k,
    pub(super) entry: Arc<SampleEntry>,
    index: IndexEncoder,
    /// The last frame written; its duration is known only when the next arrives.
    pending: Option<(Time90k, u32, bool)>,
    pub(super) last_duration: u32,
    /// Sum of the durations in `index`.
    indexed_ticks: i64,
    frames: u32,
    key_frames: u32,
    /// Bytes of the segment, queued frames included.
    len: u64,
    media_bytes: u64,
    pub(super) dirty: bool,
    /// Frames queued for the next write: record header and data (shared
    /// with ingest, never copied).
    queued: Vec<([u8; RECORD_HEADER_LEN as usize], Bytes)>,
    queued_bytes: usize,
    /// When the first queued frame was queued.
    queued_since: Option<Instant>,
    /// The state before the queue (set while it holds a frame).
    before_queue: Option<QueueMark>,
    /// Bytes in the file: `len` less the queued frames.
    file_len: u64,
    /// Digest of the first `len` bytes, fed as frames are queued (never
    /// by reading back), stored with the finished row.
    hash: RecordDigest,
    durable: DurablePoint,
    /// Frames written since the last fdatasync (live segments only; empty for imports).
    pub(super) unflushed: Vec<Unflushed>,
    /// The directory, while the file's name is not yet durable (created
    /// without waiting: its first fsync makes header and name durable).
    dir_unsynced: Option<PathBuf>,
    /// The segment's capture offset (camera clock − ours): the first known
    /// value of its frames, or the importer's own.
    pub(super) capture_offset: Option<i64>,
    /// Whether a committed flush has written `capture_offset` to the row.
    pub(super) capture_offset_stored: bool,
    /// Space allocated ahead of the bytes written, until sealed.
    reserve: Reserve,
}

impl OpenSegment {
    /// Creates a segment: row first (`writing`), then the file with its
    /// header — fsynced with its directory at once if `sync_now` (the
    /// importer; a channel probing a disk that failed), else by the next
    /// flush, side by side with the other channels' (a rollover of many
    /// channels at once must not stall the writer on three serial fsyncs
    /// each). Undoes both on failure.
    pub(super) fn create(
        conn: &Connection,
        dir: &Path,
        channel: u32,
        start: Time90k,
        (entry, entry_id): (&Arc<SampleEntry>, i64),
        run: u64,
        sync_now: bool,
    ) -> std::io::Result<OpenSegment> {
        let id = db::insert_writing_segment(conn, channel, start, entry_id)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let path = segment_path(dir, channel, id);
        let mut reserve = Reserve::default();
        let result = (|| {
            let dir = path.parent().expect("segment path has a parent");
            super::create_dir_durable(dir)?;
            let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
            let header = SegmentHeader {
                channel,
                segment_id: id,
                start,
                sample_entry: entry.data.clone(),
            }
            .encode();
            reserve.before_write(&file, header.len() as u64);
            file.write_all(&header)?;
            if sync_now {
                // A failed fsync here leaves nothing to keep: the file is removed
                // and the row deleted, whatever the page cache still holds.
                file.sync_data()?;
                File::open(dir)?.sync_all()?;
            }
            Ok::<_, std::io::Error>((file, header))
        })();
        let (file, header) = match result {
            Ok(v) => v,
            Err(e) => {
                discard(conn, &path, id);
                return Err(e);
            }
        };
        let hash = RecordDigest::new(&header);
        let len = header.len() as u64;
        // Until the header is durable, nothing is: a failure closes the
        // segment with no frame, which removes it.
        let durable_len = if sync_now { len } else { 0 };
        let dir_unsynced = (!sync_now).then(|| path.parent().expect("segment path has a parent").to_path_buf());
        Ok(OpenSegment {
            id,
            file: Arc::new(file),
            run,
            start,
            entry: entry.clone(),
            index: IndexEncoder::default(),
            pending: None,
            last_duration: 0,
            indexed_ticks: 0,
            frames: 0,
            key_frames: 0,
            len,
            media_bytes: 0,
            dirty: false,
            queued: Vec::new(),
            queued_bytes: 0,
            queued_since: None,
            before_queue: None,
            file_len: len,
            durable: DurablePoint {
                frames: 0,
                key_frames: 0,
                len: durable_len,
                media_bytes: 0,
                end: start,
                hash: hash.clone(),
            },
            hash,
            unflushed: Vec::new(),
            dir_unsynced,
            capture_offset: None,
            capture_offset_stored: false,
            reserve,
        })
    }

    /// The capture offset, if known and not yet on the row.
    pub(super) fn unstored_capture_offset(&self) -> Option<i64> {
        self.capture_offset.filter(|_| !self.capture_offset_stored)
    }

    /// Writes a known capture offset the row does not have yet (a segment
    /// that closes before a flush recorded it). Best effort: the offset is
    /// a hint for merges, never a condition for keeping footage.
    fn store_capture_offset(&self, conn: &Connection) {
        if let Some(o) = self.unstored_capture_offset() {
            if let Err(e) = db::set_capture_offset(conn, self.id, o) {
                tracing::warn!(segment = self.id, "could not record the segment's capture offset: {e}");
            }
        }
    }

    /// Frames written so far and the file's length.
    pub(super) fn written(&self) -> (u32, u64) {
        (self.frames, self.len)
    }

    /// fdatasyncs what was written so far and moves the durable point there;
    /// returns the bytes it made durable. After an error the segment must be
    /// closed with `close_durable` (a retried fsync would prove nothing).
    pub(super) fn sync(&mut self) -> std::io::Result<u64> {
        self.write_out().map_err(|f| f.error)?;
        self.file.sync_data()?;
        if let Some(d) = &self.dir_unsynced {
            File::open(d)?.sync_all()?;
        }
        Ok(self.synced())
    }

    /// The file, shared with a flush round's thread (`flush_round`), which
    /// fdatasyncs it while the writer goes on appending.
    pub(super) fn shared_file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Moves the durable point to what is written now, after an fdatasync
    /// of `file()` succeeded; returns the bytes it made durable.
    fn synced(&mut self) -> u64 {
        debug_assert!(self.queued.is_empty(), "queued frames are not durable");
        self.dir_unsynced = None;
        let bytes = self.len - self.durable.len;
        self.durable = self.point_now();
        self.dirty = false;
        bytes
    }

    /// Everything written to the file so far, as a durable point.
    fn point_now(&self) -> DurablePoint {
        DurablePoint {
            frames: self.frames,
            key_frames: self.key_frames,
            len: self.len,
            media_bytes: self.media_bytes,
            end: self.end(),
            hash: self.hash.clone(),
        }
    }

    /// What a flush round starting now would prove durable if its fdatasync
    /// succeeds: everything written to the file so far. Queued frames are not
    /// in the file, so a queue is left out (its mark is the state before it);
    /// the writer writes every queue first, so normally nothing is. Clears
    /// `dirty`: frames appended from now on are the next round's.
    pub(super) fn capture(&mut self) -> Capture {
        let point = match &self.before_queue {
            None => self.point_now(),
            Some(m) => m.point(self.start),
        };
        let unflushed = match &self.before_queue {
            None => self.unflushed.len(),
            Some(m) => m.unflushed,
        };
        self.dirty = self.before_queue.is_some();
        Capture {
            id: self.id,
            point,
            unflushed,
            dir: self.dir_unsynced.clone(),
        }
    }

    /// A round's fdatasync of what `c` captured succeeded: the durable point
    /// moves there (never back: an older capture proves less than is already
    /// proven) and the captured frames are durable; frames appended after the
    /// capture stay unflushed. Returns the bytes it made durable and those
    /// frames. Pure: touches neither the file nor the index.
    pub(super) fn captured_durable(&mut self, c: &Capture) -> (u64, Vec<Unflushed>) {
        if c.dir.is_some() {
            // The round fsynced the directory after the file.
            self.dir_unsynced = None;
        }
        if c.point.len <= self.durable.len {
            return (0, Vec::new());
        }
        let bytes = c.point.len - self.durable.len;
        self.durable = c.point.clone();
        let n = c.unflushed.min(self.unflushed.len());
        (bytes, self.unflushed.drain(..n).collect())
    }

    /// Whether everything the segment holds is durable, its name included.
    pub(super) fn all_durable(&self) -> bool {
        self.queued.is_empty() && self.durable.len == self.len && self.dir_unsynced.is_none()
    }

    /// Frames the segment holds (queued ones included).
    pub(super) fn frames(&self) -> u32 {
        self.frames
    }

    /// Ends a live segment without an fsync: writes its queue and gives the
    /// last frame its duration. The writer keeps it until a flush round has
    /// made it durable, then `complete`s it (or `close_durable`s it if that
    /// round's fsync failed). Returns the queued frames whose write failed.
    pub(super) fn seal_for_close(&mut self, channel: u32, end: Option<Time90k>) -> u32 {
        let unwritten = self.write_last(channel);
        self.reserve.release(&self.file, self.file_len);
        self.seal(end);
        unwritten
    }

    /// Writes the queue at a close; a failed write loses only the queue (the
    /// row keeps what came before). Returns the frames lost.
    fn write_last(&mut self, channel: u32) -> u32 {
        match self.write_out() {
            Ok(()) => 0,
            Err(f) => {
                error!(
                    channel,
                    segment = self.id,
                    frames = f.frames,
                    "could not write the segment's last frames: {}",
                    f.error
                );
                f.frames
            }
        }
    }

    /// The finished row of a sealed segment whose every byte is durable
    /// (`all_durable`): committed by the writer with its round's progress.
    pub(super) fn completion(&self) -> Completion {
        Completion {
            id: self.id,
            progress: self.progress(),
            index: self.index.blob().to_vec(),
            hash: self.hash.clone().finish(),
            capture_offset: self.unstored_capture_offset(),
        }
    }

    /// Removes a sealed segment that never held a frame (file, then row).
    pub(super) fn discard(self, conn: &Connection, dir: &Path, channel: u32) {
        discard(conn, &segment_path(dir, channel, self.id), self.id);
    }

    /// The last frame's time (the start while there is none).
    pub(super) fn last_time(&self) -> Time90k {
        self.pending.map(|p| p.0).unwrap_or(self.start)
    }

    /// The segment's end as the index would have it now: the last frame
    /// lasts as long as the one before it until the next arrives.
    pub(super) fn end(&self) -> Time90k {
        end_of(self.start, self.pending, self.last_duration, self.indexed_ticks)
    }

    /// Appends one frame record and writes it (and anything queued) now.
    /// On error the segment is as it was before the queue, and the file cut
    /// back to its last complete record so it stays valid.
    pub(super) fn write_frame(&mut self, time: Time90k, key: bool, data: Bytes) -> std::io::Result<()> {
        self.queue_frame(time, key, data, Instant::now())?;
        self.write_out().map_err(|f| f.error)
    }

    /// Appends one frame record to the queue (see the module's note); the
    /// segment counts it from now on, the file holds it after `write_out`.
    /// Fails only for a frame the segment cannot hold (too late after its
    /// start), leaving the segment unchanged.
    pub(super) fn queue_frame(&mut self, time: Time90k, key: bool, data: Bytes, now: Instant) -> std::io::Result<()> {
        let pts = u32::try_from(time - self.start).map_err(|_| std::io::Error::other("segment too long"))?;
        let header = record_header(pts, key, &data);
        if self.before_queue.is_none() {
            self.before_queue = Some(QueueMark {
                frames: self.frames,
                key_frames: self.key_frames,
                len: self.len,
                media_bytes: self.media_bytes,
                hash: self.hash.clone(),
                index: self.index.mark(),
                pending: self.pending,
                last_duration: self.last_duration,
                indexed_ticks: self.indexed_ticks,
                unflushed: self.unflushed.len(),
                dirty: self.dirty,
            });
            self.queued_since = Some(now);
        }
        if let Some((t, size, k)) = self.pending.take() {
            self.push_index((time - t) as u32, size, k);
        }
        self.hash.record(&header);
        self.pending = Some((time, data.len() as u32, key));
        self.frames += 1;
        self.key_frames += u32::from(key);
        self.len += RECORD_HEADER_LEN + data.len() as u64;
        self.media_bytes += data.len() as u64;
        self.dirty = true;
        self.queued_bytes += header.len() + data.len();
        self.queued.push((header, data));
        Ok(())
    }

    /// Whether the queue is due to be written: full, or its oldest frame
    /// has waited `delay` by `now`.
    pub(super) fn write_due(&self, now: Instant, delay: Duration) -> bool {
        self.queued_bytes >= QUEUE_BYTES
            || self.queued.len() >= QUEUE_FRAMES
            || self
                .queued_since
                .is_some_and(|t| now.saturating_duration_since(t) >= delay)
    }

    /// When the oldest queued frame was queued.
    pub(super) fn queued_since(&self) -> Option<Instant> {
        self.queued_since
    }

    /// Writes the queued frames with as few `writev` calls as the kernel
    /// allows. On error the file is cut back to what it held before and the
    /// segment rolled back to the state before the queue: its frames are
    /// lost, everything before them stays (in the page cache, made durable
    /// by the next fsync as before).
    pub(super) fn write_out(&mut self) -> Result<(), WriteFailed> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.queued);
        self.reserve.before_write(&self.file, self.len);
        let r = write_all_records(&self.file, &queued);
        self.queued_bytes = 0;
        self.queued_since = None;
        let mark = self.before_queue.take().expect("a queue has its mark");
        match r {
            Ok(()) => {
                self.file_len = self.len;
                Ok(())
            }
            Err(error) => {
                let _ = self.reserve.cut(&self.file, self.file_len);
                self.frames = mark.frames;
                self.key_frames = mark.key_frames;
                self.len = mark.len;
                self.media_bytes = mark.media_bytes;
                self.hash = mark.hash;
                self.index.rewind(mark.index);
                self.pending = mark.pending;
                self.last_duration = mark.last_duration;
                self.indexed_ticks = mark.indexed_ticks;
                self.unflushed.truncate(mark.unflushed);
                self.dirty = mark.dirty;
                Err(WriteFailed {
                    error,
                    frames: queued.len() as u32,
                })
            }
        }
    }

    fn push_index(&mut self, duration: u32, size: u32, key: bool) {
        self.index.push(FrameEntry { duration, size, key });
        self.last_duration = duration;
        self.indexed_ticks += i64::from(duration);
    }

    /// Gives the last frame its duration: up to `end` when the timeline
    /// continues there, else the previous frame's.
    fn seal(&mut self, end: Option<Time90k>) {
        if let Some((t, size, key)) = self.pending.take() {
            let duration = match end {
                Some(e) if e > t => (e - t) as u32,
                _ => self.last_duration.max(1),
            };
            self.push_index(duration, size, key);
        }
    }

    pub(super) fn progress(&self) -> Progress {
        Progress {
            end: self.end(),
            frames: self.frames,
            key_frames: self.key_frames,
            bytes: self.len,
            media_bytes: self.media_bytes,
        }
    }

    /// Progress as of the last successful fsync (what a `writing` row may claim).
    pub(super) fn durable_progress(&self) -> Progress {
        let d = &self.durable;
        Progress {
            end: d.end,
            frames: d.frames,
            key_frames: d.key_frames,
            bytes: d.len,
            media_bytes: d.media_bytes,
        }
    }

    /// fsyncs the segment and marks it complete with its frame index (or
    /// removes it if it holds no frame). If the fsync fails, the segment is
    /// closed at its durable point instead (`close_durable`), and what it
    /// lost is returned. For the importer, which waits for its fsyncs; live
    /// segments are closed with `seal_for_close` and finished by a round.
    pub(super) fn finish(mut self, conn: &Connection, dir: &Path, channel: u32, end: Option<Time90k>) -> Option<Lost> {
        self.write_last(channel);
        self.reserve.release(&self.file, self.file_len);
        self.seal(end);
        if let Err(e) = self.sync() {
            return Some(self.close_durable(conn, dir, channel, &e));
        }
        if self.frames == 0 {
            discard(conn, &segment_path(dir, channel, self.id), self.id);
        } else if let Err(e) = db::complete_segment(
            conn,
            self.id,
            &self.progress(),
            self.index.blob(),
            Some(&self.hash.clone().finish()),
        ) {
            // The row stays `writing`; startup repair will rebuild it from the file.
            error!(channel, segment = self.id, "could not commit finished segment: {e}");
        } else {
            self.store_capture_offset(conn);
        }
        None
    }

    /// Closes the segment at its last durable point after an fsync failed:
    /// the row is completed with exactly the frames that fsync covered (its
    /// index and hash re-made for that prefix), the file is cut back to that
    /// length (best effort: its durable state is that length already), and
    /// the frames after it are reported lost.
    pub(super) fn close_durable(mut self, conn: &Connection, dir: &Path, channel: u32, e: &std::io::Error) -> Lost {
        // Queued frames were never written: they are lost with the rest
        // after the durable point (`frames` counts them).
        self.queued.clear();
        self.seal(None);
        let path = segment_path(dir, channel, self.id);
        let d = self.durable.clone();
        let lost = Lost {
            frames: self.frames - d.frames,
            bytes: self.len - d.len,
            kept: d.frames,
        };
        error!(
            channel,
            segment = self.id,
            file = %path.display(),
            frames_kept = lost.kept,
            frames_lost = lost.frames,
            "fsync failed: {e}; closing the segment at its last durable frame (a retried fsync would not bring the rest back)"
        );
        let _ = self.reserve.cut(&self.file, d.len);
        if d.frames == 0 {
            discard(conn, &path, self.id);
            return lost;
        }
        let blob = match durable_prefix(self.index.blob(), d.frames, d.end - self.start) {
            Ok(b) => b,
            Err(err) => {
                // Cannot happen for an index this writer built; the row then
                // stays `writing` at its durable progress and startup repair
                // rebuilds it from the file.
                error!(channel, segment = self.id, "cannot cut the frame index back: {err}");
                let _ = db::update_writing(conn, self.id, &self.durable_progress());
                return lost;
            }
        };
        let p = self.durable_progress();
        if let Err(err) = db::complete_segment(conn, self.id, &p, &blob, Some(&d.hash.finish())) {
            error!(
                channel,
                segment = self.id,
                "could not commit the segment's durable prefix: {err}"
            );
        } else {
            self.store_capture_offset(conn);
        }
        lost
    }
}

/// A segment's end as the index has it: the last frame lasts as long as the
/// one before it until the next arrives.
fn end_of(start: Time90k, pending: Option<(Time90k, u32, bool)>, last_duration: u32, indexed_ticks: i64) -> Time90k {
    match pending {
        Some((t, _, _)) => t + i64::from(last_duration),
        None => start + indexed_ticks,
    }
}

/// What a flush round captured of a segment as it started (`capture`).
#[derive(Clone)]
pub(super) struct Capture {
    pub id: i64,
    point: DurablePoint,
    /// How many of the segment's unflushed frames the capture covers.
    unflushed: usize,
    /// The directory to fsync after the file, while the name is not durable.
    dir: Option<PathBuf>,
}

impl Capture {
    /// What the segment's `writing` row may claim once the round succeeded.
    pub(super) fn progress(&self) -> Progress {
        let d = &self.point;
        Progress {
            end: d.end,
            frames: d.frames,
            key_frames: d.key_frames,
            bytes: d.len,
            media_bytes: d.media_bytes,
        }
    }

    pub(super) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

/// A finished segment's row, committed in its round's transaction.
pub(super) struct Completion {
    pub id: i64,
    pub progress: Progress,
    pub index: Vec<u8>,
    pub hash: [u8; 32],
    pub capture_offset: Option<i64>,
}

/// Removes a segment that holds no durable frame: file first, then its row
/// (a cut in between leaves a row without a file, which repair discards).
/// Best effort: whatever remains is found and finished by startup repair.
fn discard(conn: &Connection, path: &Path, id: i64) {
    let _ = std::fs::remove_file(path);
    let _ = db::delete_segment_row(conn, id);
}

/// The frame index of the first `frames` frames of `blob`, re-encoded, the
/// last of them lasting up to `ticks` after the segment's start (the end
/// the durable point recorded) when that is later than its own start.
pub fn durable_prefix(blob: &[u8], frames: u32, ticks: i64) -> Result<Vec<u8>, IndexError> {
    let entries = index::decode(blob)?;
    let n = frames as usize;
    if n > entries.len() {
        return Err(IndexError::Truncated(blob.len()));
    }
    let mut enc = IndexEncoder::default();
    let before: i64 = entries[..n.saturating_sub(1)]
        .iter()
        .map(|e| i64::from(e.duration))
        .sum();
    for (i, e) in entries[..n].iter().enumerate() {
        let mut e = *e;
        if i + 1 == n {
            if let Ok(d) = u32::try_from(ticks - before) {
                if d > 0 {
                    e.duration = d;
                }
            }
        }
        enc.push(e);
    }
    Ok(enc.blob().to_vec())
}

/// Writes the records (header, then data, each) with as few `writev` calls
/// as the kernel allows.
fn write_all_records(mut file: &File, records: &[([u8; RECORD_HEADER_LEN as usize], Bytes)]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice> = records
        .iter()
        .flat_map(|(h, d)| [IoSlice::new(h), IoSlice::new(d)])
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = file.write_vectored(rest)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

#[cfg(test)]
#[path = "open_segment_tests.rs"]
mod tests;
