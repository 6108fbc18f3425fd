//! One attempt at a job: ask the camera for exactly the hole (in its own
//! clock), read its frames under the site-wide cap, convert them to this
//! NVR's time, stage them in pieces (at most `PIECE_TICKS` or `PIECE_BYTES`
//! each, so progress shows and memory stays bounded) and merge each piece
//! through the importer the failback transfer uses (origin `gapfill`), which
//! keeps our own footage wherever both exist.
//!
//! Must never write a segment itself (only the importer does) and never
//! hold more than one piece and one frame in memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rusqlite::Connection;
use tracing::debug;

use super::job::{Job, LossTracker, Outcome};
use super::pace::TokenBucket;
use super::store::{self as gstore, PieceFrame};
use crate::replay::{ReplayError, ReplayFrame, ReplaySource};
use crate::store::import::{admit, ImportError, ImportRequest, Importer, Staging, GAPFILL_ORIGIN};
use crate::store::{db, SampleEntry};
use crate::time::{Clock, Time90k};

/// A staged piece spans at most this much time…
pub const PIECE_TICKS: i64 = 10 * 90_000;
/// …and holds at most this many bytes of frames.
pub const PIECE_BYTES: usize = 8 << 20;
/// A camera silent this long mid-replay has dropped it.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Opening the replay session (connect, DESCRIBE, SETUP, PLAY).
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// The importer busy (a failback merging): ask again this often, this long.
const BUSY_RETRY: Duration = Duration::from_millis(250);
const BUSY_FOR: Duration = Duration::from_secs(60);

/// A replay session's frames, read one at a time (the reader's pace is the
/// camera's, through TCP's flow control).
pub trait FrameStream: Send {
    fn next_frame(&mut self) -> BoxFuture<'_, Option<Result<ReplayFrame, ReplayError>>>;
}

/// Opens replays: the ONVIF client in production, scripted streams in tests.
pub trait Replayer: Send + Sync + 'static {
    /// `start`/`end` are the camera's clock.
    fn open(
        &self,
        src: ReplaySource,
        start: Time90k,
        end: Time90k,
    ) -> BoxFuture<'static, Result<Box<dyn FrameStream>, ReplayError>>;
}

/// What every attempt shares.
pub struct Ctx {
    pub staging: std::path::PathBuf,
    pub store_dir: std::path::PathBuf,
    pub importer: Importer,
    pub bucket: Arc<Mutex<TokenBucket>>,
    /// The bucket's time origin.
    pub origin: Instant,
    pub replayer: Arc<dyn Replayer>,
    pub db: Arc<Mutex<Connection>>,
    pub clock: Arc<dyn Clock>,
}

/// Progress of an attempt, merged piece by piece.
#[derive(Debug, Default)]
struct Progress {
    frames: u64,
    bytes: u64,
}

/// The frames of the piece being gathered.
struct Piece {
    entry: Option<Arc<SampleEntry>>,
    frames: Vec<PieceFrame>,
    bytes: usize,
    /// The previous piece's last frame: staged again at the head of the next
    /// piece, where the importer finds it ours and lets the next frame
    /// continue it (pieces split mid-GOP lose nothing).
    carry: Option<PieceFrame>,
}

impl Ctx {
    /// Runs one attempt of `job` (whose progress so far is `job.filled_to`)
    /// with the camera's clock `offset` ticks ahead of ours.
    pub async fn attempt(
        &self,
        job: &Job,
        src: ReplaySource,
        offset: i64,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Outcome {
        let from = job.filled_to.unwrap_or(job.start).clamp(job.start, job.end);
        let (cam_start, cam_end) = (from + offset, job.end + offset);
        let url = src.url.to_string();
        let stream = match tokio::time::timeout(OPEN_TIMEOUT, self.replayer.open(src, cam_start, cam_end)).await {
            Ok(Ok(s)) => s,
            // None of the hole is on the card any more: all of it is lost.
            Ok(Err(ReplayError::NotAvailable { .. })) => {
                return Outcome::Complete {
                    lost_90k: cam_end - cam_start,
                }
            }
            Ok(Err(e)) => return error_outcome(&e),
            Err(_) => return Outcome::Transient(format!("{url}: no answer to the replay request in {OPEN_TIMEOUT:?}")),
        };
        let mut progress = Progress {
            frames: job.frames,
            bytes: job.bytes,
        };
        let mut piece = Piece {
            entry: None,
            frames: Vec::new(),
            bytes: 0,
            carry: None,
        };
        let r = self
            .read(job, stream, offset, cam_start, cam_end, &mut piece, &mut progress, stop)
            .await;
        // What was read before an error is merged all the same.
        let flushed = self.flush(job, &mut piece, &mut progress).await;
        match (r, flushed) {
            (Ok(lost), Ok(())) => Outcome::Complete { lost_90k: lost },
            (Err(o), _) => o,
            (Ok(_), Err(e)) => Outcome::Transient(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        job: &Job,
        mut stream: Box<dyn FrameStream>,
        offset: i64,
        cam_start: Time90k,
        cam_end: Time90k,
        piece: &mut Piece,
        progress: &mut Progress,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<i64, Outcome> {
        let mut loss = LossTracker::new(cam_start, cam_end);
        let mut last: Option<Time90k> = None;
        loop {
            if stop() {
                return Err(Outcome::Transient("the NVR is stopping".into()));
            }
            let f = match tokio::time::timeout(FRAME_TIMEOUT, stream.next_frame()).await {
                Err(_) => return Err(Outcome::Transient(format!("no frame for {FRAME_TIMEOUT:?}"))),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(error_outcome(&e)),
                Ok(Some(Ok(f))) => f,
            };
            let terminal = f.flags.terminal;
            if f.capture < cam_end {
                loss.frame(f.capture);
                let wait = self
                    .bucket
                    .lock()
                    .map(|mut b| b.take(f.data.len() as u64, self.origin.elapsed()))
                    .unwrap_or_default();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                progress.bytes += f.data.len() as u64;
                let t = Time90k(f.capture.0 - offset);
                // Times must increase within a segment; a repeat is dropped.
                if last.is_none_or(|l| t > l) {
                    last = Some(t);
                    let same = piece.entry.as_ref().is_none_or(|e| e.data == f.sample_entry.data);
                    if !same {
                        self.flush(job, piece, progress).await.map_err(Outcome::Transient)?;
                        piece.carry = None;
                    }
                    piece.entry = Some(f.sample_entry.clone());
                    piece.bytes += f.data.len();
                    piece.frames.push(PieceFrame {
                        time: t,
                        key: f.key,
                        data: f.data,
                    });
                    let span = piece.frames.last().map(|l| l.time).unwrap_or(t) - piece.frames[0].time;
                    if span >= PIECE_TICKS || piece.bytes >= PIECE_BYTES {
                        self.flush(job, piece, progress).await.map_err(Outcome::Transient)?;
                    }
                }
            }
            if terminal {
                break;
            }
        }
        Ok(loss.finish())
    }

    /// Stages and merges the gathered frames (with the carried frame first).
    async fn flush(&self, job: &Job, piece: &mut Piece, progress: &mut Progress) -> Result<(), String> {
        if piece.frames.is_empty() {
            return Ok(());
        }
        let Some(entry) = piece.entry.clone() else {
            return Ok(());
        };
        let mut frames = std::mem::take(&mut piece.frames);
        piece.bytes = 0;
        let own = frames.len();
        if let Some(c) = piece.carry.take() {
            frames.insert(0, c);
        }
        let first = frames[0].time;
        let last = frames[frames.len() - 1].time;
        let interval = if frames.len() > 1 {
            last - frames[frames.len() - 2].time
        } else {
            3000
        };
        let (db, importer, staging, store_dir) = (
            self.db.clone(),
            self.importer.clone(),
            self.staging.clone(),
            self.store_dir.clone(),
        );
        let (channel, id) = (job.channel, job.id);
        let (kept, frames) = tokio::task::spawn_blocking(move || -> Result<(u32, Vec<PieceFrame>), String> {
            let (piece_no, before) = {
                let c = db
                    .lock()
                    .map_err(|_| "gap fill's index connection is poisoned".to_string())?;
                (
                    db::gapfill_next_piece(&c, id, GAPFILL_ORIGIN).map_err(|e| e.to_string())?,
                    db::last_segment_id(&c).map_err(|e| e.to_string())?,
                )
            };
            let size: u64 = frames.iter().map(|f| f.data.len() as u64 + 16).sum::<u64>() + 4096;
            let staged = Staging { dir: staging.clone() }.staged_bytes();
            let free = crate::store::free_bytes(&store_dir).unwrap_or(0);
            admit(&importer.limits, 0, size, staged, free).map_err(|r| r.to_string())?;
            let path = gstore::piece_path(&staging, piece_no);
            gstore::write_piece(&path, channel, piece_no, &entry.data, &frames)
                .map_err(|e| format!("staging {}: {e}", path.display()))?;
            let busy_until = Instant::now() + BUSY_FOR;
            let out = loop {
                let req = ImportRequest {
                    channel,
                    origin: GAPFILL_ORIGIN.to_string(),
                    origin_segment: piece_no,
                    staged: path.clone(),
                    // Already in our time (converted with our own offset).
                    capture_offset: None,
                };
                match importer.merge(req) {
                    Err(ImportError::Busy) if Instant::now() < busy_until => std::thread::sleep(BUSY_RETRY),
                    r => break r,
                }
            };
            let out = out.map_err(|e| {
                let _ = std::fs::remove_file(&path);
                format!("merging: {e}")
            })?;
            let c = db
                .lock()
                .map_err(|_| "gap fill's index connection is poisoned".to_string())?;
            db::gapfill_mark_segments(&c, id, channel, before, first, last + 1).map_err(|e| e.to_string())?;
            Ok((out.frames_kept, frames))
        })
        .await
        .map_err(|e| e.to_string())??;
        // The carried frame was ours already; the rest are this piece's.
        progress.frames += u64::from(kept).min(own as u64);
        piece.carry = frames.into_iter().last();
        let filled_to = last + interval;
        let now = gstore::ms(self.clock.now());
        let (db, frames_n, bytes) = (self.db.clone(), progress.frames, progress.bytes);
        let _ = tokio::task::spawn_blocking(move || {
            db.lock()
                .ok()
                .map(|c| db::gapfill_progress(&c, id, filled_to, frames_n, bytes, now))
        })
        .await;
        debug!(job = id, channel, kept, to = %filled_to, "gap fill: piece merged");
        Ok(())
    }
}

fn error_outcome(e: &ReplayError) -> Outcome {
    if e.is_transient() {
        Outcome::Transient(e.to_string())
    } else {
        Outcome::Unsupported(e.to_string())
    }
}
