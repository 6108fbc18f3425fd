//! One attempt end to end against a real importer and index, with the camera
//! scripted behind the `Replayer` trait: pieces, continuation of our own
//! footage mid-GOP, progress, resuming after a broken replay, and errors.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::fetch::{Ctx, FrameStream, Replayer};
use super::job::Outcome;
use super::pace::TokenBucket;
use super::store;
use crate::replay::{ReplayError, ReplayFlags, ReplayFrame, ReplaySource};
use crate::store::import::{ImportLimits, Importer};
use crate::store::{db, SampleEntry};
use crate::time::{Clock, SystemClock, Time90k};

const FRAME: i64 = 3600;
const GOP: usize = 12;

fn entry() -> Arc<SampleEntry> {
    let mut d = vec![0u8; 40];
    d[4..8].copy_from_slice(b"avc1");
    Arc::new(SampleEntry::parse(d).unwrap())
}

struct Script(VecDeque<Result<ReplayFrame, ReplayError>>);

impl FrameStream for Script {
    fn next_frame(&mut self) -> BoxFuture<'_, Option<Result<ReplayFrame, ReplayError>>> {
        let f = self.0.pop_front();
        Box::pin(async move { f })
    }
}

/// A camera whose card holds frames `[0, count)` from `t0`, key every GOP;
/// each replay breaks off after `break_after` frames if set (then clears).
struct Camera {
    t0: Time90k,
    count: usize,
    break_after: Mutex<Option<usize>>,
    refuse: bool,
    asked: Mutex<Vec<(Time90k, Time90k)>>,
}

impl Replayer for Camera {
    fn open(
        &self,
        src: ReplaySource,
        start: Time90k,
        end: Time90k,
    ) -> BoxFuture<'static, Result<Box<dyn FrameStream>, ReplayError>> {
        self.asked.lock().unwrap().push((start, end));
        if self.refuse {
            let e = ReplayError::Unsupported {
                url: src.url.to_string(),
                reason: "551 Option not supported".into(),
            };
            return Box::pin(async move { Err(e) });
        }
        // From the key frame at or before `start` to the last before `end`.
        let first = (((start - self.t0).max(0) / FRAME) as usize / GOP) * GOP;
        let last = (((end - self.t0 + FRAME - 1) / FRAME).max(0) as usize).min(self.count);
        let stop = self.break_after.lock().unwrap().take();
        let mut q: VecDeque<_> = (first..last)
            .map(|i| {
                Ok(ReplayFrame {
                    capture: self.t0 + i as i64 * FRAME,
                    key: i % GOP == 0,
                    flags: ReplayFlags {
                        clean_point: i % GOP == 0,
                        terminal: i + 1 == last,
                        ..Default::default()
                    },
                    sample_entry: entry(),
                    data: vec![(i % 251) as u8; 100 + i % 7],
                })
            })
            .collect();
        if let Some(n) = stop {
            q.truncate(n);
            q.push_back(Err(ReplayError::Stream {
                url: src.url.to_string(),
                reason: "connection reset".into(),
            }));
        }
        Box::pin(async move { Ok(Box::new(Script(q)) as Box<dyn FrameStream>) })
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    ctx: Ctx,
    cam: Arc<Camera>,
    job: i64,
}

/// Our footage: frames [0, 7) recorded, then the live session again from
/// frame `7 + hole`; the camera has everything.
fn setup(hole: usize, break_after: Option<usize>, refuse: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let conn = db::open_dir(dir.path()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let t0 = clock.now() + -120 * 90_000;
    let e = entry();
    let eid = db::upsert_sample_entry(&conn, &e.data, e.codec, e.width, e.height).unwrap();
    let a = db::insert_writing_segment(&conn, 1, t0, eid).unwrap();
    let p = db::Progress {
        end: t0 + 7 * FRAME,
        frames: 7,
        key_frames: 1,
        bytes: 700,
        media_bytes: 700,
    };
    db::complete_segment(&conn, a, &p, b"", None).unwrap();
    let b_start = t0 + (7 + hole) as i64 * FRAME;
    db::insert_writing_segment(&conn, 1, b_start, eid).unwrap();
    let job = db::gapfill_insert_job(&conn, 1, "cam", t0 + 7 * FRAME, b_start, "startup", 0).unwrap();
    let limits = ImportLimits {
        min_free_bytes: 0,
        free_margin: 0,
        ..Default::default()
    };
    let importer = Importer::start(dir.path().to_path_buf(), limits, clock.clone()).unwrap();
    let cam = Arc::new(Camera {
        t0,
        count: 7 + hole + 50,
        break_after: Mutex::new(break_after),
        refuse,
        asked: Mutex::new(Vec::new()),
    });
    let ctx = Ctx {
        staging: dir.path().join("import"),
        store_dir: dir.path().to_path_buf(),
        importer,
        bucket: Arc::new(Mutex::new(TokenBucket::new(1 << 30, 1 << 30, Duration::ZERO))),
        origin: Instant::now(),
        replayer: cam.clone(),
        db: Arc::new(Mutex::new(conn)),
        clock,
    };
    Setup {
        _dir: dir,
        ctx,
        cam,
        job,
    }
}

fn source() -> ReplaySource {
    ReplaySource {
        url: url::Url::parse("rtsp://127.0.0.1:1/cam1").unwrap(),
        credentials: None,
        max_frame_bytes: 1 << 20,
    }
}

fn job(s: &Setup) -> super::Job {
    let c = s.ctx.db.lock().unwrap();
    store::jobs(&c, Some(1), 10)
        .unwrap()
        .into_iter()
        .find(|j| j.id == s.job)
        .unwrap()
}

/// Frames stored in the segments gap fill merged, and how many segments.
fn merged(s: &Setup) -> (u64, usize) {
    let c = s.ctx.db.lock().unwrap();
    let ids = db::gapfill_segment_ids(&c, 1, Time90k(0), Time90k(i64::MAX)).unwrap();
    let frames = ids
        .iter()
        .map(|&id| u64::from(db::segment(&c, id).unwrap().unwrap().frames))
        .sum();
    (frames, ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_is_merged_whole_from_its_first_missing_frame_in_pieces() {
    // 32 s: four pieces, each split in the middle of a GOP.
    let hole = 800;
    let s = setup(hole, None, false);
    let j = job(&s);
    let out = s.ctx.attempt(&j, source(), 0, &|| false).await;
    assert_eq!(out, Outcome::Complete { lost_90k: 0 });
    // Exactly the missing frames: from frame 7 (mid-GOP, continuing ours)
    // to the frame before the live session's first; none twice.
    assert_eq!(merged(&s).0, hole as u64);
    assert!(merged(&s).1 >= 4, "pieces: {}", merged(&s).1);
    let j = job(&s);
    assert_eq!(j.frames, hole as u64);
    assert!(j.filled_to.unwrap() >= j.end);
    assert_eq!(
        s.cam.asked.lock().unwrap()[0],
        (j.start, j.end),
        "asked for exactly the hole"
    );
    // Asked again (a job made twice would be): nothing more is stored.
    let again = s
        .ctx
        .attempt(&super::Job { filled_to: None, ..j }, source(), 0, &|| false)
        .await;
    assert_eq!(again, Outcome::Complete { lost_90k: 0 });
    assert_eq!(merged(&s).0, hole as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_replay_keeps_its_pieces_and_the_retry_resumes_after_them() {
    let hole = 600;
    let s = setup(hole, Some(400), false);
    let j = job(&s);
    let out = s.ctx.attempt(&j, source(), 0, &|| false).await;
    assert!(
        matches!(out, Outcome::Transient(ref e) if e.contains("connection reset")),
        "{out:?}"
    );
    let j = job(&s);
    let kept = merged(&s).0;
    assert!(kept > 300 && kept < hole as u64, "{kept}");
    let resume = j.filled_to.unwrap();
    assert!(resume > j.start && resume < j.end);
    let out = s.ctx.attempt(&j, source(), 0, &|| false).await;
    assert_eq!(out, Outcome::Complete { lost_90k: 0 });
    assert_eq!(
        s.cam.asked.lock().unwrap()[1].0,
        resume,
        "the retry asks from where it stopped"
    );
    assert_eq!(merged(&s).0, hole as u64, "every missing frame once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_camera_lacks_is_lost_and_a_refusal_is_unsupported() {
    let s = setup(100, None, false);
    let j = job(&s);
    // The camera's clock runs 50 frames (2 s) behind ours: asked for
    // [start - 2 s, end - 2 s), of which its card lacks the first 43 frames
    // (it begins at frame 0): those are lost; the rest is merged, moved
    // back into our time.
    let out = s.ctx.attempt(&j, source(), -50 * FRAME, &|| false).await;
    assert_eq!(out, Outcome::Complete { lost_90k: 43 * FRAME });
    assert_eq!(merged(&s).0, 57);
    assert_eq!(
        s.cam.asked.lock().unwrap()[0],
        (j.start + -50 * FRAME, j.end + -50 * FRAME)
    );
    let r = setup(100, None, true);
    let out = r.ctx.attempt(&job(&r), source(), 0, &|| false).await;
    assert!(
        matches!(out, Outcome::Unsupported(ref e) if e.contains("551")),
        "{out:?}"
    );
    assert_eq!(merged(&r).0, 0);
}
