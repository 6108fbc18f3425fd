//! Importing footage a peer recorded for one of our channels (failback): the
//! peer uploads its segment file as is (the format is self-describing and
//! checksummed) into the staging directory, and the importer thread merges it
//! into this store.
//!
//! Beside the recording, never in front of it: the importer has its own
//! thread and its own index connection, copies frames in bounded steps paced
//! to `merge_rate` with an fdatasync per step (so its dirty pages never make
//! the writer's fsyncs wait long), and holds at most `max_frames` frame
//! entries in memory. Staged uploads are bounded too (`Staging`): a quota, a
//! size per upload, an expiry, and a free-space margin above the retention
//! floor, so uploads can never make retention delete footage.
//!
//! Merging keeps our own footage where both exist: imported frames that
//! start within half a frame interval of a frame we hold (a segment being
//! written holds everything from its start on) are dropped, and each kept
//! run starts at a key frame, so the merged timeline has no duplicates and
//! every run decodes (the planning is `import_plan`'s). Footage dated
//! impossibly (before 2000, in the future, longer than `max_span`) is refused.
//! Idempotent: an (origin, segment) pair is imported once; a repeat answers
//! `already`. Must never modify or delete footage this NVR recorded.
//!
//! Judged by the camera's clock: an upload carries the sender's capture
//! offset (camera clock − sender's clock); with ours near that time, the
//! imported frames are shifted by `sender − ours` before the overlap is
//! judged (`capture_shift`), so NVRs whose clocks differ by seconds merge
//! with neither duplicates nor drops. Either offset unknown: no shift (the
//! clocks are taken as NTP-synced).

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use tracing::{info, warn};

pub use super::import_plan::{
    capture_shift, kept_capture_offset, plan_kept, plan_kept_continuing, retime, FrameSpan, Held, GAPFILL_ORIGIN,
    MAX_CAPTURE_OFFSET,
};
use super::writer::OpenSegment;
use super::{db, index, segment_file, SampleEntry};
use crate::time::{Clock, Time90k};

#[derive(Debug)]
pub struct ImportRequest {
    pub channel: u32,
    pub origin: String,
    pub origin_segment: i64,
    /// The complete uploaded segment file.
    pub staged: PathBuf,
    /// The sender's capture offset for this footage (camera clock − the
    /// sender's clock, 90 kHz ticks); `None` when unknown (no shift).
    pub capture_offset: Option<i64>,
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportOutcome {
    /// This segment had been imported before; nothing was stored.
    pub already: bool,
    pub segments: u32,
    pub frames_kept: u32,
    /// Frames dropped because this NVR had recorded that time itself.
    pub frames_dropped: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The upload is wrong and will stay wrong: it was removed.
    #[error("{0}")]
    Rejected(String),
    /// Too many merges queued: try again later.
    #[error("the importer is busy; try again later")]
    Busy,
    /// Our side failed (index, disk): the upload is kept for a retry.
    #[error("{0}")]
    Failed(String),
}

/// Bounds on what peers may stage and import.
#[derive(Clone, Debug)]
pub struct ImportLimits {
    /// Bytes staged at once, all uploads together.
    pub staging_quota: u64,
    /// The largest single upload.
    pub max_upload: u64,
    /// An upload untouched this long is removed.
    pub staging_expiry: Duration,
    /// Staging never takes free space below the retention floor plus this.
    pub free_margin: u64,
    /// The retention floor (`storage.min_free`).
    pub min_free_bytes: u64,
    /// Merge pace, bytes per second: the writer's fdatasyncs share the disk.
    pub merge_rate: u64,
    /// Pace of receiving one upload's pieces into staging, bytes per second
    /// (a peer's own sender paces itself far lower; this bounds a hostile one).
    pub receive_rate: u64,
    /// Frames one imported segment may hold (bounds the importer's memory).
    pub max_frames: u64,
    /// Time one imported segment may span, in 90 kHz ticks.
    pub max_span: i64,
    /// How far in the future (by our clock) imported footage may end: the
    /// peers' clocks differ a little, never by more.
    pub future_tolerance: i64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            staging_quota: 4 << 30,
            max_upload: 2 << 30,
            staging_expiry: Duration::from_secs(3600),
            free_margin: 256 << 20,
            min_free_bytes: 1 << 30,
            merge_rate: 24 << 20,
            receive_rate: 32 << 20,
            max_frames: 1_000_000,
            max_span: 4 * 3600 * 90_000,
            future_tolerance: 2 * 90_000,
        }
    }
}

/// No footage is dated before 2000-01-01 (an unset camera or peer clock).
const EARLIEST: Time90k = Time90k(946_684_800 * 90_000);
/// How far around an upload our own segments are looked up (a second: far
/// more than half the longest frame interval a camera sends at).
const HELD_MARGIN: i64 = 90_000;
/// Bytes copied between fdatasyncs (and pacing checks) while merging.
const STEP_BYTES: u64 = 1 << 20;

/// A segment row as footage we hold: its last frame's duration from its
/// frame index (a row being written has none yet and holds all after its start).
fn held_segment(s: &db::SegmentRow) -> Held {
    if s.state == db::WRITING {
        return Held::writing(s.start);
    }
    let last_duration = s
        .frame_index
        .as_deref()
        .and_then(|b| index::decode(b).ok())
        .and_then(|frames| frames.last().map(|f| f.duration));
    Held::complete(s.start, s.end, s.frames, last_duration)
}

/// Checks an upload's time range: a sane start, an end after it, not in the
/// future, not longer than `max_span`.
pub fn check_range(first: Time90k, end: Time90k, now: Time90k, limits: &ImportLimits) -> Result<(), String> {
    if first < EARLIEST {
        return Err(format!(
            "footage dated {} is before 2000: the peer's clock is wrong",
            first.to_rfc3339()
        ));
    }
    if end <= first {
        return Err("footage ends before it starts".into());
    }
    if end - first > limits.max_span {
        return Err(format!(
            "one segment may span at most {} s; this one spans {} s",
            limits.max_span / 90_000,
            (end - first) / 90_000
        ));
    }
    if end - now > limits.future_tolerance {
        return Err(format!(
            "footage ends at {}, {:.1} s in the future by this NVR's clock",
            end.to_rfc3339(),
            crate::time::secs_of(end - now)
        ));
    }
    Ok(())
}

/// Import counters, shown by `GET /api/v1/store`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImportStats {
    pub merged: u64,
    pub rejected: u64,
    pub bytes_merged: u64,
    pub frames_kept: u64,
    pub frames_dropped: u64,
    pub last_error: Option<String>,
}

type Job = (ImportRequest, SyncSender<Result<ImportOutcome, ImportError>>);

/// The importer thread's handle: merges run one at a time, at most a couple queued.
#[derive(Clone)]
pub struct Importer {
    tx: SyncSender<Job>,
    pub limits: ImportLimits,
    pub stats: Arc<Mutex<ImportStats>>,
}

impl Importer {
    pub fn start(dir: PathBuf, limits: ImportLimits, clock: Arc<dyn Clock>) -> anyhow::Result<Importer> {
        let (tx, rx) = sync_channel::<Job>(2);
        let stats = Arc::new(Mutex::new(ImportStats::default()));
        let mut worker = Worker {
            dir,
            limits: limits.clone(),
            clock,
            conn: None,
            stats: stats.clone(),
        };
        std::thread::Builder::new().name("store-import".into()).spawn(move || {
            for (req, done) in rx {
                let r = worker.merge(&req);
                let _ = done.send(r);
            }
        })?;
        Ok(Importer { tx, limits, stats })
    }

    /// Merges a staged upload; blocks until done. Call from a blocking thread.
    pub fn merge(&self, req: ImportRequest) -> Result<ImportOutcome, ImportError> {
        let (done, wait) = sync_channel(1);
        match self.tx.try_send((req, done)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ImportError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(ImportError::Failed("the importer stopped".into())),
        }
        wait.recv()
            .map_err(|_| ImportError::Failed("the importer stopped".into()))?
    }
}

struct Worker {
    dir: PathBuf,
    limits: ImportLimits,
    clock: Arc<dyn Clock>,
    /// Opened on first use; its own connection, beside the writer's.
    conn: Option<Connection>,
    stats: Arc<Mutex<ImportStats>>,
}

impl Worker {
    fn conn(&mut self) -> Result<&Connection, ImportError> {
        if self.conn.is_none() {
            let c = db::open(&self.dir.join("index.db")).map_err(|e| ImportError::Failed(e.to_string()))?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_ref().expect("opened above"))
    }

    fn merge(&mut self, req: &ImportRequest) -> Result<ImportOutcome, ImportError> {
        let r = self.merge_inner(req);
        if let Ok(mut s) = self.stats.lock() {
            match &r {
                Ok(o) if !o.already => {
                    s.merged += 1;
                    s.frames_kept += u64::from(o.frames_kept);
                    s.frames_dropped += u64::from(o.frames_dropped);
                }
                Ok(_) => {}
                Err(e) => {
                    s.rejected += u64::from(matches!(e, ImportError::Rejected(_)));
                    s.last_error = Some(crate::excerpt::short(&e.to_string()));
                }
            }
        }
        if let Err(ImportError::Rejected(why)) = &r {
            // A rejected upload never stays behind to fill the disk.
            let _ = std::fs::remove_file(&req.staged);
            warn!(channel = req.channel, origin = %req.origin, origin_segment = req.origin_segment, "import refused: {why}");
        }
        r
    }

    fn merge_inner(&mut self, req: &ImportRequest) -> Result<ImportOutcome, ImportError> {
        let failed = |e: &dyn std::fmt::Display| ImportError::Failed(e.to_string());
        let known: Option<i64> = self
            .conn()?
            .query_row(
                "SELECT frames_kept FROM import WHERE origin = ?1 AND origin_segment = ?2",
                params![req.origin, req.origin_segment],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| failed(&e))?;
        if known.is_some() {
            let _ = std::fs::remove_file(&req.staged);
            return Ok(ImportOutcome {
                already: true,
                ..Default::default()
            });
        }
        let reject = |m: String| ImportError::Rejected(m);
        let mut file = File::open(&req.staged).map_err(|e| failed(&format!("opening upload: {e}")))?;
        let len = file.metadata().map_err(|e| failed(&e))?.len();
        if len > self.limits.max_upload {
            return Err(reject(format!(
                "upload of {len} bytes is over the {} byte limit",
                self.limits.max_upload
            )));
        }
        // At most `max_frames` frame entries in memory, whatever the file holds.
        let max = usize::try_from(self.limits.max_frames).unwrap_or(usize::MAX);
        let scan = segment_file::scan_at_most(&mut file, len, true, max)
            .map_err(|e| reject(format!("upload is not a segment: {e}")))?;
        if scan.stopped == Some("too many frames") {
            return Err(reject(format!(
                "upload holds more than {} frames",
                self.limits.max_frames
            )));
        }
        if let Some(why) = scan.stopped {
            return Err(reject(format!("upload is damaged ({why}); send it again")));
        }
        let entry = Arc::new(
            SampleEntry::parse(scan.header.sample_entry.clone()).ok_or_else(|| reject("unsupported codec".into()))?,
        );
        let entries = scan.entries(3000);
        let mut spans: Vec<FrameSpan> = scan
            .frames
            .iter()
            .zip(&entries)
            .map(|(f, e)| (scan.header.start + i64::from(f.pts), e.duration, f.key))
            .collect();
        let Some(&(sent_first, _, _)) = spans.first() else {
            return Err(reject("upload holds no frames".into()));
        };
        // Into our time by the camera's clock, before anything is judged.
        let ours = db::capture_offset_near(self.conn()?, req.channel, sent_first).map_err(|e| failed(&e))?;
        let shift = capture_shift(req.capture_offset, ours);
        retime(&mut spans, shift);
        let kept_offset = kept_capture_offset(req.capture_offset, ours);
        let first = spans[0].0;
        let last = spans.last().map(|&(t, d, _)| t + i64::from(d)).unwrap_or(first);
        check_range(first, last, self.clock.now(), &self.limits).map_err(reject)?;
        let conn = self.conn()?;
        // Our own footage, by its frames' starts: a segment being written
        // holds everything from its start, since its row's end lags the file
        // by up to a flush; a complete one up to its last frame's start.
        // Looked up a margin wider than the upload: a frame of ours may hold
        // an imported frame up to half an interval away, and a segment's
        // row may end a tick after its last frame's start (a lone frame).
        let (near_first, near_last) = (first + -HELD_MARGIN, last + HELD_MARGIN);
        let held: Vec<Held> = db::segments_overlapping(conn, req.channel, near_first, near_last)
            .map_err(|e| failed(&e))?
            .iter()
            .map(held_segment)
            .chain(
                db::writing_starts_before(conn, req.channel, near_last)
                    .map_err(|e| failed(&e))?
                    .into_iter()
                    .map(Held::writing),
            )
            .collect();
        let runs = if req.origin == GAPFILL_ORIGIN {
            plan_kept_continuing(&spans, &held)
        } else {
            plan_kept(&spans, &held)
        };
        let entry_id = db::upsert_sample_entry(conn, &entry.data, entry.codec, entry.width, entry.height)
            .map_err(|e| failed(&e))?;
        let mut out = ImportOutcome::default();
        let mut pacer = Pacer::new(self.limits.merge_rate);
        for run in &runs {
            let conn = self.conn.as_ref().expect("opened above");
            let mut seg = OpenSegment::create(
                conn,
                &self.dir,
                req.channel,
                spans[run.start].0,
                (&entry, entry_id),
                0,
                true,
            )
            .map_err(|e| failed(&e))?;
            seg.capture_offset = kept_offset;
            let mut since_sync = 0u64;
            for i in run.clone() {
                let f = scan.frames[i];
                // A buffer of its own per frame: the segment keeps it until written.
                let mut data = vec![0; f.size as usize];
                let r = file
                    .seek(SeekFrom::Start(f.offset))
                    .and_then(|_| file.read_exact(&mut data))
                    .and_then(|_| seg.write_frame(spans[i].0, f.key, data.into()));
                if let Err(e) = r {
                    // What was written is a valid segment; keep it (a retry
                    // finds it as local footage and continues after it).
                    seg.finish(conn, &self.dir, req.channel, None);
                    return Err(failed(&e));
                }
                since_sync += u64::from(f.size);
                if since_sync >= STEP_BYTES {
                    // A bounded step: make it durable, then yield so the
                    // writer's own fsyncs never queue behind a large import.
                    // A failed fsync is never retried: the segment is closed
                    // at what the last good one covered (see `open_segment`).
                    if let Err(e) = seg.sync() {
                        seg.close_durable(conn, &self.dir, req.channel, &e);
                        return Err(failed(&e));
                    }
                    pacer.step(since_sync);
                    since_sync = 0;
                }
            }
            let end = spans[run.end - 1].0 + i64::from(spans[run.end - 1].1);
            let (_, bytes) = seg.written();
            if seg.finish(conn, &self.dir, req.channel, Some(end)).is_some() {
                return Err(failed(&std::io::Error::other("fsync failed while closing the segment")));
            }
            pacer.step(since_sync);
            if let Ok(mut s) = self.stats.lock() {
                s.bytes_merged += bytes;
            }
            out.segments += 1;
            out.frames_kept += run.len() as u32;
        }
        out.frames_dropped = spans.len() as u32 - out.frames_kept;
        let conn = self.conn.as_ref().expect("opened above");
        conn.execute(
            "INSERT INTO import (origin, origin_segment, channel, received_90k, frames_kept) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![req.origin, req.origin_segment, req.channel, self.clock.now().0, out.frames_kept],
        )
        .map_err(|e| failed(&e))?;
        let _ = std::fs::remove_file(&req.staged);
        info!(
            channel = req.channel,
            origin = %req.origin,
            origin_segment = req.origin_segment,
            kept = out.frames_kept,
            dropped = out.frames_dropped,
            shift_s = crate::time::secs_of(shift),
            "footage imported from peer"
        );
        Ok(out)
    }
}

/// Keeps a copy loop at or under `rate` bytes per second.
struct Pacer {
    rate: u64,
    start: Instant,
    bytes: u64,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            start: Instant::now(),
            bytes: 0,
        }
    }

    fn step(&mut self, bytes: u64) {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Why a piece of an upload is refused before a byte is written.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This upload would pass the per-upload limit.
    TooLarge { limit: u64 },
    /// All uploads together would pass the quota.
    OverQuota { quota: u64 },
    /// The volume would come too close to the retention floor.
    LowSpace,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge { limit } => write!(f, "an upload may hold at most {limit} bytes"),
            Refusal::OverQuota { quota } => write!(f, "staged uploads would pass their {quota} byte quota"),
            Refusal::LowSpace => f.write_str("the volume is too close to its free-space floor to stage uploads"),
        }
    }
}

/// Whether `piece` more bytes may be staged onto an upload of `upload` bytes,
/// with `staged` bytes staged in all and `free` bytes free on the volume.
pub fn admit(limits: &ImportLimits, upload: u64, piece: u64, staged: u64, free: u64) -> Result<(), Refusal> {
    if upload.saturating_add(piece) > limits.max_upload {
        return Err(Refusal::TooLarge {
            limit: limits.max_upload,
        });
    }
    if staged.saturating_add(piece) > limits.staging_quota {
        return Err(Refusal::OverQuota {
            quota: limits.staging_quota,
        });
    }
    if free
        < piece
            .saturating_add(limits.min_free_bytes)
            .saturating_add(limits.free_margin)
    {
        return Err(Refusal::LowSpace);
    }
    Ok(())
}

/// The staging directory's uploads: their sizes, and removal of those
/// untouched for longer than the expiry.
pub struct Staging {
    pub dir: PathBuf,
}

impl Staging {
    /// Bytes staged in all.
    pub fn staged_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    /// Removes uploads not written to for `expiry`; returns how many.
    pub fn expire(&self, expiry: Duration) -> usize {
        let mut n = 0;
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        for e in rd.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > expiry);
            if stale && std::fs::remove_file(e.path()).is_ok() {
                warn!(file = %e.path().display(), "removed an upload nobody completed");
                n += 1;
            }
        }
        n
    }
}

/// Per-upload locks: one PUT at a time may write a given staged file, so two
/// pieces sent at the same offset can never both be appended.
#[derive(Default)]
pub struct UploadLocks {
    busy: Mutex<HashSet<PathBuf>>,
}

/// Held while a piece is written; releases the upload on drop.
pub struct UploadGuard<'a> {
    locks: &'a UploadLocks,
    path: PathBuf,
}

impl UploadLocks {
    /// Takes the upload, or `None` if another request is writing it now.
    pub fn try_lock(&self, path: &Path) -> Option<UploadGuard<'_>> {
        let mut m = self.busy.lock().ok()?;
        if !m.insert(path.to_path_buf()) {
            return None;
        }
        Some(UploadGuard {
            locks: self,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.locks.busy.lock() {
            m.remove(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gapfill::store::{write_piece, PieceFrame};
    use crate::store::index::FrameEntry;
    use crate::time::SystemClock;

    /// The failover lab's duplicate through the real importer and index: our
    /// footage is frames 0..12 and then frame 12 (a key frame) alone in a
    /// segment, stored 1 tick long; a peer uploads frames 12..30 of the same
    /// camera, its stamps off ours by `err` ticks. Only frames we lack are
    /// stored (from key frame 24: a failback run starts at a key frame).
    #[test]
    fn a_peers_copy_of_our_lone_last_frame_is_not_stored_twice() {
        const F: i64 = 3600;
        for err in [0, 1, 500, 1700, -1, -500, -1700] {
            let dir = tempfile::tempdir().unwrap();
            let conn = db::open_dir(dir.path()).unwrap();
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let t0 = clock.now() + -600 * 90_000;
            let e = b"\0\0\0\x28avc1".iter().copied().chain([0u8; 32]).collect::<Vec<u8>>();
            let entry = SampleEntry::parse(e.clone()).unwrap();
            let eid = db::upsert_sample_entry(&conn, &entry.data, entry.codec, entry.width, entry.height).unwrap();
            let ours = |start: i64, durations: &[u32]| {
                let id = db::insert_writing_segment(&conn, 1, t0 + start * F, eid).unwrap();
                let index: Vec<FrameEntry> = durations
                    .iter()
                    .enumerate()
                    .map(|(i, &duration)| FrameEntry {
                        duration,
                        size: 10,
                        key: i == 0,
                    })
                    .collect();
                let p = db::Progress {
                    end: t0 + start * F + durations.iter().map(|&d| i64::from(d)).sum::<i64>(),
                    frames: durations.len() as u32,
                    key_frames: 1,
                    bytes: 10 * durations.len() as u64,
                    media_bytes: 10 * durations.len() as u64,
                };
                db::complete_segment(&conn, id, &p, &crate::store::index::encode(&index), None).unwrap();
            };
            ours(0, &[F as u32; 12]);
            ours(12, &[1]);
            drop(conn);
            let staged = dir.path().join("import").join("peer.part");
            let frames: Vec<PieceFrame> = (12..30)
                .map(|i| PieceFrame {
                    time: t0 + i * F + err,
                    key: i % 12 == 0,
                    data: vec![i as u8; 10],
                })
                .collect();
            write_piece(&staged, 1, 77, &e, &frames).unwrap();
            let importer = Importer::start(dir.path().to_path_buf(), ImportLimits::default(), clock).unwrap();
            let out = importer
                .merge(ImportRequest {
                    channel: 1,
                    origin: "peer".into(),
                    origin_segment: 77,
                    staged,
                    capture_offset: None,
                })
                .unwrap();
            assert_eq!((out.frames_kept, out.frames_dropped), (6, 12), "error {err}");
        }
    }

    #[test]
    fn impossible_ranges_are_refused() {
        let l = ImportLimits::default();
        let now = Time90k(1_800_000_000 * 90_000);
        let s = |x: i64| x * 90_000;
        assert!(check_range(now + s(-60), now + s(-30), now, &l).is_ok());
        assert!(
            check_range(now + s(-60), now + s(1), now, &l).is_ok(),
            "a peer's clock may be a little ahead"
        );
        // The review's cases: 1617, 2100, i64::MAX with the end before it, 13 h in 3 frames.
        let y1617 = Time90k(-11_000_000_000 * 90_000);
        assert!(check_range(y1617, y1617 + s(10), now, &l)
            .unwrap_err()
            .contains("before 2000"));
        let y2100 = Time90k(4_102_444_800 * 90_000);
        assert!(check_range(y2100, y2100 + s(10), now, &l)
            .unwrap_err()
            .contains("future"));
        assert!(check_range(Time90k(i64::MAX), Time90k(0), now, &l).is_err());
        assert!(check_range(now + s(-13 * 3600), now + s(-1), now, &l)
            .unwrap_err()
            .contains("span"));
        assert!(check_range(now + s(30), now + s(40), now, &l)
            .unwrap_err()
            .contains("future"));
        assert!(check_range(now, now, now, &l).is_err(), "an empty range");
    }

    #[test]
    fn staging_is_admitted_within_quota_size_and_free_space() {
        let l = ImportLimits {
            staging_quota: 100,
            max_upload: 60,
            min_free_bytes: 1000,
            free_margin: 100,
            ..Default::default()
        };
        assert_eq!(admit(&l, 0, 50, 0, 2000), Ok(()));
        assert_eq!(admit(&l, 50, 11, 50, 2000), Err(Refusal::TooLarge { limit: 60 }));
        assert_eq!(admit(&l, 0, 20, 90, 2000), Err(Refusal::OverQuota { quota: 100 }));
        // Free space must stay above floor + margin after the piece.
        assert_eq!(admit(&l, 0, 50, 0, 1150), Ok(()));
        assert_eq!(admit(&l, 0, 50, 0, 1149), Err(Refusal::LowSpace));
        assert_eq!(
            admit(&l, u64::MAX, 1, 0, u64::MAX),
            Err(Refusal::TooLarge { limit: 60 })
        );
    }

    #[test]
    fn one_writer_per_upload() {
        let locks = UploadLocks::default();
        let p = Path::new("/x/a.part");
        let g = locks.try_lock(p).expect("free");
        assert!(
            locks.try_lock(p).is_none(),
            "a second PUT of the same upload waits its turn"
        );
        assert!(locks.try_lock(Path::new("/x/b.part")).is_some());
        drop(g);
        assert!(locks.try_lock(p).is_some());
    }
}
