//! Gap fill: the holes in the timelines of channels bound to cameras with
//! edge storage, fetched from the camera's own recording (ONVIF Profile G
//! replay) and merged into the store. See `docs/gapfill.md`.
//!
//! Owns the `gapfill_job` table (through `store::db`), the channels' binding
//! history that decides whose hole a stretch is, the planner thread
//! (`gapfill-plan`: binding notes, requests, finding holes every
//! `PLAN_EVERY`), and the fetch tasks: one replay per camera at a time, all
//! under one token bucket (`[gapfill] rate`), retried with backoff, given up
//! as `failed` or reported `lost` (what the camera no longer had).
//!
//! Must never overwrite or delete footage this NVR recorded (every merge
//! goes through the importer, which keeps ours), never hold a piece larger
//! than `fetch::PIECE_BYTES`, never block the async runtime on the index,
//! and never make a job twice for the same stretch.

pub mod fetch;
pub mod job;
pub mod onvif;
pub mod pace;
pub mod plan;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::{info, warn};

pub use fetch::{FrameStream, Replayer};
pub use job::{Job, Reason, State};

use crate::config::Config;
use crate::store::db;
use crate::time::{Clock, Time90k};

/// How often the planner looks for new holes.
pub const PLAN_EVERY: Duration = Duration::from_secs(2);
/// How often the scheduler looks for due jobs (it is also woken at once).
const SCHEDULE_EVERY: Duration = Duration::from_secs(1);
/// Binding notes and requests waiting for the planner, at most.
const NOTES: usize = 4096;
/// Jobs `GET /api/v1/gapfill` lists at most.
pub const LIST_LIMIT: usize = 500;

enum Note {
    Binding {
        channel: u32,
        camera: Option<String>,
        at: Time90k,
    },
    Request {
        channel: u32,
        start: Time90k,
        end: Time90k,
        reason: Reason,
    },
}

/// The running gap fill: held by the NVR, shared with its tasks.
pub struct Gapfill {
    notes: Mutex<Option<SyncSender<Note>>>,
    wake: tokio::sync::Notify,
    stopped: AtomicBool,
    /// Cameras with a replay under way.
    busy: Mutex<HashSet<String>>,
    config: tokio::sync::watch::Receiver<Arc<Config>>,
    /// Where `gapfill_done` / `gapfill_lost` events go.
    events: crate::store::WriterTx,
    ctx: fetch::Ctx,
}

impl Gapfill {
    /// Ends the binding spans the last process left open (it stopped while
    /// they held: the time since is a hole of theirs), requeues the jobs it
    /// was running, and starts the planner thread and the scheduler task.
    /// Call before the channels are bound.
    pub fn start(
        store_dir: &std::path::Path,
        staging: std::path::PathBuf,
        importer: crate::store::import::Importer,
        clock: Arc<dyn Clock>,
        config: tokio::sync::watch::Receiver<Arc<Config>>,
        replayer: Arc<dyn Replayer>,
        events: crate::store::WriterTx,
    ) -> anyhow::Result<Arc<Gapfill>> {
        let index = store_dir.join("index.db");
        let conn = db::open(&index)?;
        let now = clock.now();
        let ended = db::gapfill_end_bindings_at_start(&conn, now)?;
        let requeued = db::gapfill_requeue_running(&conn, store::ms(now))?;
        if ended > 0 || requeued > 0 {
            info!(
                bindings = ended,
                jobs = requeued,
                "gap fill: the last process stopped while channels were bound"
            );
        }
        let rate = config.borrow().gapfill.rate;
        let (tx, rx) = sync_channel(NOTES);
        let g = Arc::new(Gapfill {
            notes: Mutex::new(Some(tx)),
            wake: tokio::sync::Notify::new(),
            stopped: AtomicBool::new(false),
            busy: Mutex::new(HashSet::new()),
            config: config.clone(),
            events,
            ctx: fetch::Ctx {
                staging,
                store_dir: store_dir.to_path_buf(),
                importer,
                bucket: Arc::new(Mutex::new(pace::TokenBucket::new(rate, rate, Duration::ZERO))),
                origin: Instant::now(),
                replayer,
                db: Arc::new(Mutex::new(db::open(&index)?)),
                clock: clock.clone(),
            },
        });
        let planner = Planner {
            conn,
            config,
            clock,
            settled: HashMap::new(),
            wake: Arc::downgrade(&g),
        };
        std::thread::Builder::new()
            .name("gapfill-plan".into())
            .spawn(move || planner.run(rx))?;
        tokio::spawn(schedule(Arc::downgrade(&g)));
        Ok(g)
    }

    /// `channel` is bound to `camera` (or to nothing) from `at` on. Never
    /// blocks; a note that finds the planner's queue full is logged.
    pub fn note_binding(&self, channel: u32, camera: Option<&str>, at: Time90k) {
        self.send(Note::Binding {
            channel,
            camera: camera.map(str::to_string),
            at,
        });
    }

    /// Asks for `[start, end)` of `channel` from the camera it is bound to,
    /// for a caller that knows of a hole the segment rows cannot show (a
    /// takeover's lead-in). Parts some job already covers are not asked twice.
    pub fn request(&self, channel: u32, start: Time90k, end: Time90k, reason: Reason) {
        self.send(Note::Request {
            channel,
            start,
            end,
            reason,
        });
    }

    fn send(&self, n: Note) {
        let tx = self.notes.lock().ok().and_then(|t| t.clone());
        if let Some(tx) = tx {
            if tx.try_send(n).is_err() {
                warn!("gap fill: the planner is behind; a binding change or request was dropped");
            }
        }
    }

    /// The newest jobs (of one channel, or all), newest first.
    pub async fn jobs(&self, channel: Option<u32>, limit: usize) -> anyhow::Result<Vec<Job>> {
        let db = self.ctx.db.clone();
        tokio::task::spawn_blocking(move || {
            let c = db
                .lock()
                .map_err(|_| anyhow::anyhow!("gap fill's index connection is poisoned"))?;
            Ok(store::jobs(&c, channel, limit)?)
        })
        .await?
    }

    /// One channel's jobs overlapping [start, end), by start.
    pub async fn overlapping(&self, channel: u32, start: Time90k, end: Time90k) -> anyhow::Result<Vec<Job>> {
        let db = self.ctx.db.clone();
        tokio::task::spawn_blocking(move || {
            let c = db
                .lock()
                .map_err(|_| anyhow::anyhow!("gap fill's index connection is poisoned"))?;
            Ok(db::gapfill_jobs_overlapping(&c, channel, start, end)?
                .into_iter()
                .map(store::job)
                .collect())
        })
        .await?
    }

    /// Stops the scheduler and the planner; replays under way end at their
    /// next frame and are resumed by the next start.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notes.lock().map(|mut t| t.take()).ok();
        self.wake.notify_waiters();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// The planner thread: binding notes, requests, and new holes.
struct Planner {
    conn: Connection,
    config: tokio::sync::watch::Receiver<Arc<Config>>,
    clock: Arc<dyn Clock>,
    /// Per channel: holes before this time have all been planned (the start
    /// of the channel's latest run when it was last looked at).
    settled: HashMap<u32, Time90k>,
    wake: std::sync::Weak<Gapfill>,
}

impl Planner {
    fn run(mut self, rx: Receiver<Note>) {
        let mut last_plan: Option<Instant> = None;
        loop {
            match rx.recv_timeout(PLAN_EVERY) {
                Ok(n) => self.note(n),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if last_plan.is_none_or(|l| l.elapsed() >= PLAN_EVERY) {
                last_plan = Some(Instant::now());
                match self.plan() {
                    Ok(0) => {}
                    Ok(_) => {
                        if let Some(g) = self.wake.upgrade() {
                            g.wake.notify_one();
                        }
                    }
                    Err(e) => warn!("gap fill: planning failed: {e}"),
                }
            }
        }
    }

    fn note(&mut self, n: Note) {
        let r = match n {
            Note::Binding { channel, camera, at } => {
                db::gapfill_note_binding(&self.conn, channel, camera.as_deref(), at)
            }
            Note::Request {
                channel,
                start,
                end,
                reason,
            } => self.requested(channel, start, end, reason),
        };
        if let Err(e) = r {
            warn!("gap fill: cannot record a binding change or request: {e}");
        }
    }

    fn requested(&mut self, channel: u32, start: Time90k, end: Time90k, reason: Reason) -> rusqlite::Result<()> {
        let config = self.config.borrow().clone();
        let bound = store::bindings(&self.conn, channel, end)?
            .into_iter()
            .filter(|b| b.start <= end)
            .max_by_key(|b| b.start);
        let Some(camera) = bound
            .map(|b| b.camera)
            .filter(|c| config.camera(c).is_some_and(|c| c.edge_storage))
        else {
            info!(
                channel,
                "gap fill: request ignored: the channel is not bound to a camera with edge storage"
            );
            return Ok(());
        };
        let jobs = db::gapfill_job_spans(&self.conn, channel, start)?;
        let mut made = 0;
        for (a, b) in plan::subtract(start, end, &jobs) {
            if b - a >= plan::MIN_HOLE {
                self.insert(&plan::Hole {
                    channel,
                    camera: camera.clone(),
                    start: a,
                    end: b,
                    reason,
                })?;
                made += 1;
            }
        }
        if made > 0 {
            if let Some(g) = self.wake.upgrade() {
                g.wake.notify_one();
            }
        }
        Ok(())
    }

    fn insert(&self, h: &plan::Hole) -> rusqlite::Result<i64> {
        let now = self.clock.now();
        let id = db::gapfill_insert_job(
            &self.conn,
            h.channel,
            &h.camera,
            h.start,
            h.end,
            h.reason.as_str(),
            store::ms(now),
        )?;
        info!(
            job = id,
            channel = h.channel,
            camera = %h.camera,
            start = %h.start.to_rfc3339(),
            seconds = crate::time::secs_of(h.end - h.start),
            reason = h.reason.as_str(),
            "gap fill: job pending"
        );
        Ok(id)
    }

    /// Plans every channel; returns the jobs made.
    fn plan(&mut self) -> rusqlite::Result<usize> {
        let config = self.config.borrow().clone();
        let edge: HashSet<String> = config
            .cameras
            .iter()
            .filter(|c| c.edge_storage)
            .map(|c| c.name.clone())
            .collect();
        if edge.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let oldest = config.gapfill.max_age.map(|a| now + -crate::time::ticks_of(a));
        let mut made = 0;
        for ch in &config.channels {
            let bindings = store::bindings(&self.conn, ch.number, oldest.unwrap_or(Time90k(i64::MIN)))?;
            let Some(first) = bindings
                .iter()
                .filter(|b| edge.contains(&b.camera))
                .map(|b| b.start)
                .min()
            else {
                continue;
            };
            let since = self
                .settled
                .get(&ch.number)
                .copied()
                .unwrap_or(first)
                .max(oldest.unwrap_or(first));
            let runs = db::gapfill_runs(&self.conn, ch.number, since)?;
            let jobs = db::gapfill_job_spans(&self.conn, ch.number, since)?;
            let schedule = &ch.recording.schedule;
            let continuous = |t: Time90k| {
                matches!(
                    schedule.mode_at(t),
                    crate::recording::Mode::Continuous | crate::recording::Mode::ContinuousEvents
                )
            };
            let holes = plan::holes(&plan::ChannelInput {
                channel: ch.number,
                runs: &runs,
                bindings: &bindings,
                edge_cameras: &edge,
                jobs: &jobs,
                oldest,
                continuous: &continuous,
            });
            for h in &holes {
                self.insert(h)?;
                made += 1;
            }
            if let Some(latest) = runs.iter().map(|r| r.0).max() {
                self.settled.insert(ch.number, latest.max(since));
            }
        }
        Ok(made)
    }
}

/// The scheduler: starts due jobs, one replay per camera at a time.
async fn schedule(g: std::sync::Weak<Gapfill>) {
    loop {
        let Some(me) = g.upgrade() else { return };
        if me.is_stopped() {
            return;
        }
        if let Err(e) = me.start_due().await {
            warn!("gap fill: cannot read due jobs: {e}");
        }
        tokio::select! {
            _ = me.wake.notified() => {}
            _ = tokio::time::sleep(SCHEDULE_EVERY) => {}
        }
    }
}

impl Gapfill {
    async fn start_due(self: &Arc<Self>) -> anyhow::Result<()> {
        let rate = self.config.borrow().gapfill.rate;
        if let Ok(mut b) = self.ctx.bucket.lock() {
            if b.rate() != rate {
                b.set_rate(rate, self.ctx.origin.elapsed());
            }
        }
        let db = self.ctx.db.clone();
        let now = self.ctx.clock.now();
        let due = tokio::task::spawn_blocking(move || {
            let c = db
                .lock()
                .map_err(|_| anyhow::anyhow!("gap fill's index connection is poisoned"))?;
            Ok::<_, anyhow::Error>(store::due(&c, now)?)
        })
        .await??;
        for job in due {
            if !self
                .busy
                .lock()
                .map(|mut b| b.insert(job.camera.clone()))
                .unwrap_or(false)
            {
                continue;
            }
            let me = self.clone();
            // Named after the camera it serves, so logs read like the site.
            let span = tracing::info_span!("gapfill", camera = %job.camera, job = job.id);
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let camera = job.camera.clone();
                    me.run_job(job).await;
                    if let Ok(mut b) = me.busy.lock() {
                        b.remove(&camera);
                    }
                    me.wake.notify_one();
                },
                span,
            ));
        }
        Ok(())
    }

    async fn run_job(&self, job: Job) {
        let config = self.config.borrow().clone();
        let src = config
            .camera(&job.camera)
            .filter(|c| c.edge_storage)
            .map(|c| crate::replay::ReplaySource {
                url: c.replay_url.clone().unwrap_or_else(|| c.url.clone()),
                credentials: c.credentials.clone(),
                max_frame_bytes: crate::ingest::MAX_FRAME_BYTES,
            });
        let now = self.ctx.clock.now();
        let outcome = match src {
            None => job::Outcome::Unsupported(format!(
                "network camera `{}` is no longer configured with edge_storage",
                job.camera
            )),
            Some(src) => {
                let db = self.ctx.db.clone();
                let (id, channel, at) = (job.id, job.channel, job.filled_to.unwrap_or(job.start));
                let offset = tokio::task::spawn_blocking(move || {
                    let c = db.lock().ok()?;
                    db::gapfill_start_attempt(&c, id, store::ms(now)).ok()?;
                    capture_offset(&c, channel, at)
                })
                .await
                .ok()
                .flatten()
                .unwrap_or(0);
                info!(
                    channel = job.channel,
                    attempt = job.attempts + 1,
                    offset_s = crate::time::secs_of(offset),
                    "gap fill: job running"
                );
                self.ctx.attempt(&job, src, offset, &|| self.is_stopped()).await
            }
        };
        let now = self.ctx.clock.now();
        let t = job::after_attempt(&job, &outcome, now);
        let db = self.ctx.db.clone();
        let t2 = t.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let c = db.lock().map_err(|_| "poisoned".to_string())?;
            db::gapfill_end_attempt(
                &c,
                job.id,
                t2.state.as_str(),
                t2.attempts,
                store::ms(t2.next_attempt),
                t2.lost_90k,
                t2.last_error.as_deref(),
                store::ms(now),
            )
            .map_err(|e| e.to_string())
        })
        .await;
        if let Err(e) = saved.map_err(|e| e.to_string()).and_then(|r| r) {
            warn!(job = job.id, "gap fill: cannot record the attempt's outcome: {e}");
        }
        let lost_s = crate::time::secs_of(t.lost_90k);
        let kind = match t.state {
            State::Done => Some("gapfill_done"),
            State::Lost => Some("gapfill_lost"),
            _ => None,
        };
        if let Some(kind) = kind {
            let details = serde_json::json!({
                "job": job.id,
                "camera": job.camera,
                "start": job.start.to_rfc3339(),
                "end": job.end.to_rfc3339(),
                "lost_s": lost_s,
            });
            let _ = self.events.try_send(crate::store::Command::Event {
                channel: Some(job.channel),
                kind,
                time: now,
                details,
            });
        }
        match t.state {
            State::Done => info!(job = job.id, channel = job.channel, "gap fill: job done"),
            State::Lost => warn!(
                job = job.id,
                channel = job.channel,
                lost_s,
                "gap fill: job lost: the camera no longer had part of the hole"
            ),
            State::Failed => warn!(
                job = job.id,
                channel = job.channel,
                attempts = t.attempts,
                error = t.last_error.as_deref().unwrap_or(""),
                "gap fill: job failed"
            ),
            State::Pending => info!(
                job = job.id,
                channel = job.channel,
                retry_in_s = crate::time::secs_of(t.next_attempt - now),
                error = t.last_error.as_deref().unwrap_or(""),
                "gap fill: attempt failed; retrying"
            ),
            State::Running => {}
        }
    }
}

/// The camera's clock minus ours near `t` on `channel` (measured by ingest
/// and stored on the segment rows); `None` when unknown, taken as 0 (camera
/// and NVR NTP-synced).
fn capture_offset(conn: &Connection, channel: u32, t: Time90k) -> Option<i64> {
    db::capture_offset_near(conn, channel, t).ok().flatten()
}
