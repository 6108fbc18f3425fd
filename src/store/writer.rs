//! The writer thread: the only code that appends to segment files, commits
//! index rows of recording segments or deletes footage that exists nowhere
//! else. (The S3 archiver, `archive::task`, unlinks the local copy of a
//! segment only after its object was read back and verified and its row
//! marked `archived` — a closed segment the writer no longer touches; the
//! footage then lives in the bucket.)
//!
//! Frames from every channel arrive on one bounded queue (the write buffer,
//! `queue`). The thread appends each frame as one record (so a SIGKILL loses
//! nothing already handed to the kernel), and before any frame has waited a
//! flush interval it starts a flush round: the files written since the last
//! one are fdatasynced side by side on the round's own thread while the
//! writer goes on, and their captured progress is committed in one
//! transaction when it answers — fsyncs batched across channels, so a power
//! cut loses at most one interval (`flush`, `flush_round`, `writer_round`). It
//! also runs retention, closes a segment whose fsync failed at its last
//! durable frame (`open_segment`), and handles a full disk or a failing one
//! by closing the segment at its last complete frame and pausing that channel
//! until writes work again.
//!
//! Must never run on the async runtime, never hold a segment open across a
//! change of codec parameters, never delete a segment being written, and
//! never retry an fsync that failed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::{error, info, warn};

use super::boundary::{decide, Decision};
use super::db;
use super::deleter::{Deleted, Deleter};
pub(super) use super::open_segment::OpenSegment;
use super::open_segment::{Lost, Unflushed};
use super::retention::RetentionPolicy;
use super::{segment_path, SampleEntry};
use crate::media::Frame;
use crate::time::{Clock, Time90k};

/// Pause between batches of queued commands (see `run`).
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// Events handled per batch at most: frames come first, and a flood of events
/// waits on its own queue (and is refused there) instead of delaying them.
const EVENT_BUDGET: usize = 256;
/// Queued events are committed at most this often between flushes: a lone
/// event is stored (and announced) at once, a flood costs ten commits a second.
const EVENT_COMMIT: Duration = Duration::from_millis(100);
/// A channel paused by a full or failing disk tries again this often.
const DISK_RETRY: Duration = Duration::from_secs(1);

pub enum Command {
    Frame(Frame),
    /// The channel's stream ended (disconnect, unbind): close its segment.
    EndRun {
        channel: u32,
    },
    /// An instant event (camera online, rule state changed): stored, announced.
    Event {
        channel: Option<u32>,
        kind: &'static str,
        time: Time90k,
        details: serde_json::Value,
    },
    /// The start or end of an event with duration; may trigger recording.
    EventEdge(crate::events::Edge),
    /// Flush everything now and answer (tests, shutdown, exports of the last second).
    Sync(std::sync::mpsc::Sender<()>),
    /// Events are waiting on the event queue (see `queue`).
    Wake,
    /// A live apply changed the channel's recording policy or retention:
    /// taken between two frames, so ingest goes on (`Nvr::apply`).
    Policy(Box<PolicyUpdate>),
    Shutdown,
}

/// A channel's new recording policy and retention (`Command::Policy`).
#[derive(Clone, Debug)]
pub struct PolicyUpdate {
    pub channel: u32,
    pub recording: crate::recording::RecordingPolicy,
    pub retention: RetentionPolicy,
}

/// What the writer does with a channel's frames, as the API and a peer's
/// status show it (`snake_case` names on the wire). A type, not a string, so
/// that every place a new state must be handled is one the compiler finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// No open segment: no footage comes, or the policy lets none through.
    #[default]
    Idle,
    Recording,
    /// Recording, but the newest frame is over a second old: a reconnecting
    /// link delivers late frames. Only the status a peer probes says this
    /// (`GET /api/v1/status`); failback does not count it as recording.
    CatchingUp,
    /// Paused: the disk is full (see `health::Cause`).
    DiskFull,
    /// Paused: no file descriptor is left.
    NoFileDescriptors,
    /// Paused: the disk answers with errors.
    StorageError,
    /// A state a newer peer named that this version does not know.
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecordingStatus {
    pub state: RecordingState,
    pub segment_id: Option<i64>,
    pub frames_written: u64,
    pub bytes_written: u64,
    pub segments_written: u64,
    pub last_error: Option<String>,
    /// Frames written and then lost because an fsync failed (see `open_segment`).
    pub frames_lost: u64,
}

pub type StatusMap = Arc<Mutex<HashMap<u32, RecordingStatus>>>;

#[derive(Default)]
pub(super) struct ChannelState {
    pub(super) open: Option<OpenSegment>,
    /// Set while a full or failing disk keeps this channel from writing.
    paused_until: Option<Instant>,
    /// The cause of the pause, for the resume's log line.
    paused_for: Option<super::health::Cause>,
}

pub struct WriterConfig {
    pub dir: PathBuf,
    pub recording: HashMap<u32, crate::recording::RecordingPolicy>,
    pub flush_interval: Duration,
    pub segment_len: i64,
    pub min_free_bytes: u64,
    pub policies: HashMap<u32, RetentionPolicy>,
    pub retention_interval: Duration,
}

pub struct Writer {
    pub(super) cfg: WriterConfig,
    pub(super) conn: Connection,
    clock: Arc<dyn Clock>,
    pub(super) channels: HashMap<u32, ChannelState>,
    entries: HashMap<Vec<u8>, i64>,
    status: StatusMap,
    pub(super) policy: HashMap<u32, super::events::ChannelPolicy>,
    /// Scratch space for the gate's output, reused across frames.
    pub(super) gate_out: Vec<(Frame, bool)>,
    pub(super) gate_stats: super::events::GateStatsMap,
    pub(super) notifier: Option<crate::events::Notifier>,
    pub(super) event_log: super::events::EventLog,
    /// Frame-to-durable latency and other counters the API shows.
    pub(super) stats: super::health::SharedWriterStats,
    /// Descriptors held back for the writer (see `health::FdReserve`).
    pub(super) fd_reserve: super::health::FdReserve,
    /// Keeps a flood's repeated warnings (events evicted) to a line a minute.
    pub(super) repeated: crate::log_limiter::LogLimiter,
    /// When the next flush round is due (`flush::FlushSchedule`).
    pub(super) schedule: super::flush::FlushSchedule,
    /// Arrival of the oldest frame written since the last round started.
    pub(super) oldest_unflushed: Option<Instant>,
    /// When the last round answered (or found nothing to sync).
    pub(super) last_flush: Instant,
    /// The flush round's thread (`flush_round`).
    pub(super) flusher: super::flush_round::Flusher,
    /// The round in flight, if any (`writer_round`).
    pub(super) round: Option<super::writer_round::Round>,
    /// Segments closed and sealed whose rows wait for a round to make them
    /// durable (`writer_round`).
    pub(super) closing: Vec<(u32, OpenSegment)>,
    /// Arrival of the frame being handled (what the frames it releases are
    /// counted from: a pre-event buffer's frames count from their trigger).
    arrival: Instant,
    /// Retention's unlinks, started at the first deletion.
    deleter: Option<Deleter>,
    /// How long a frame may wait in its segment's queue (`open_segment::write_delay`).
    pub(super) write_delay: Duration,
    /// When the oldest queued frame of any segment was queued (`write_queue`).
    pub(super) oldest_queued: Option<Instant>,
}

impl Writer {
    pub fn new(
        cfg: WriterConfig,
        conn: Connection,
        clock: Arc<dyn Clock>,
        status: StatusMap,
        gate_stats: super::events::GateStatsMap,
        notifier: Option<crate::events::Notifier>,
        stats: super::health::SharedWriterStats,
    ) -> rusqlite::Result<Self> {
        let event_log = super::events::EventLog::new(&conn)?;
        let cfg_interval = cfg.flush_interval;
        Ok(Writer {
            cfg,
            conn,
            clock,
            channels: HashMap::new(),
            entries: HashMap::new(),
            status,
            policy: HashMap::new(),
            gate_out: Vec::new(),
            gate_stats,
            notifier,
            event_log,
            stats,
            fd_reserve: super::health::FdReserve::new(),
            repeated: Default::default(),
            schedule: super::flush::FlushSchedule::new(cfg_interval),
            oldest_unflushed: None,
            last_flush: Instant::now(),
            flusher: super::flush_round::Flusher::spawn(super::flush_round::fdatasync()),
            round: None,
            closing: Vec::new(),
            arrival: Instant::now(),
            deleter: None,
            write_delay: super::open_segment::write_delay(cfg_interval),
            oldest_queued: None,
        })
    }

    pub fn run(mut self, rx: super::queue::WriterRx) {
        let mut next_retention = Instant::now();
        let mut next_event_commit = Instant::now();
        'outer: loop {
            let now = Instant::now();
            self.poll_round();
            if now >= next_event_commit && !self.event_log.is_empty() {
                let _ = self.commit(Vec::new(), Vec::new());
                next_event_commit = now + EVENT_COMMIT;
            }
            if self.flush_due(now) {
                let clock_now = self.clock.now();
                self.apply_stale_triggers(clock_now, 2 * 90_000);
                self.start_round();
            }
            self.write_out_due(now);
            self.retention_finished();
            if now >= next_retention {
                self.run_retention();
                next_retention = now + self.cfg.retention_interval;
            }
            let mut due = self.next_flush().min(next_retention);
            if let Some(q) = self.oldest_queued {
                due = due.min(q + self.write_delay);
            }
            if !self.event_log.is_empty() {
                due = due.min(next_event_commit);
            }
            let wait = due.saturating_duration_since(Instant::now());
            let mut next = match rx.recv_timeout(wait) {
                Ok(q) => Some(q),
                Err(RecvTimeoutError::Timeout) => {
                    rx.drained();
                    self.take_events(&rx, EVENT_BUDGET);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Handle everything queued, then pause briefly so that frames from
            // all channels accumulate: the thread wakes at most ~200 times a
            // second however many streams there are, instead of once per frame.
            let mut behind = false;
            while let Some(q) = next.take() {
                self.arrival = q.at;
                match q.cmd {
                    Command::Frame(f) => self.on_frame(f),
                    Command::EndRun { channel } => self.end_run(channel),
                    c @ (Command::Event { .. } | Command::EventEdge(_)) => self.on_event(c),
                    Command::Sync(done) => {
                        self.take_events(&rx, usize::MAX);
                        let chans: Vec<u32> = self.policy.keys().copied().collect();
                        for ch in chans {
                            self.apply_triggers(ch, None);
                        }
                        self.sync_all();
                        let _ = done.send(());
                    }
                    Command::Wake => rx.wake.store(false, std::sync::atomic::Ordering::Release),
                    Command::Policy(p) => self.set_policy(p.channel, p.recording, p.retention),
                    Command::Shutdown => break 'outer,
                }
                // Events interleave with frames a few at a time, so neither
                // queue starves the other; their effect on recording is
                // ordered by time anyway (`apply_triggers`).
                self.take_events(&rx, 4);
                // A round's answer is taken between frames (its segments'
                // progress is committed); a round falling due ends the batch:
                // under a heavy load the queue may never empty, and no frame
                // may wait past its deadline.
                self.poll_round();
                if self.flush_due(Instant::now()) {
                    behind = true;
                    break;
                }
                next = rx.try_recv();
            }
            if !behind {
                rx.drained();
            }
            self.write_out_due(Instant::now());
            self.take_events(&rx, EVENT_BUDGET);
            if !behind {
                std::thread::sleep(BATCH_PAUSE);
            }
        }
        self.take_events(&rx, usize::MAX);
        let chans: Vec<u32> = self.channels.keys().copied().collect();
        for ch in chans {
            self.end_run(ch);
        }
        self.sync_all();
        info!("store writer stopped; all segments closed");
    }

    /// Handles up to `budget` queued events.
    fn take_events(&mut self, rx: &super::queue::WriterRx, budget: usize) {
        for cmd in rx.events.try_iter().take(budget) {
            self.on_event(cmd);
        }
    }

    fn on_event(&mut self, cmd: Command) {
        match cmd {
            Command::Event {
                channel,
                kind,
                time,
                details,
            } => self.event(channel, kind, time, details),
            Command::EventEdge(e) => self.on_edge(e),
            _ => error!("a non-event command on the event queue was ignored"),
        }
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn set_status(&self, channel: u32, f: impl FnOnce(&mut RecordingStatus)) {
        if let Ok(mut m) = self.status.lock() {
            f(m.entry(channel).or_default());
        }
    }

    /// The channel has no open segment any more: a recording channel goes
    /// idle (a paused one keeps saying why).
    pub(super) fn segment_closed(&self, channel: u32) {
        self.set_status(channel, |s| {
            if s.state == RecordingState::Recording {
                s.state = RecordingState::Idle;
            }
            s.segment_id = None;
        });
    }

    /// Writes a frame the channel's policy lets through; returns whether it
    /// opened a segment.
    pub(super) fn record(&mut self, f: Frame) -> bool {
        let ch = f.channel;
        let st = self.channels.entry(ch).or_default();
        let open = st
            .open
            .as_ref()
            .map(|o| (o.run, o.start, o.last_time(), o.last_duration, &*o.entry));
        let decision = decide(open, f.run, f.time, f.key, &f.sample_entry, self.cfg.segment_len);
        match decision {
            Decision::Append => {}
            // The next segment opens with this frame: the channel goes on
            // recording, and its status must not say `idle` meanwhile (a
            // dashboard, `/metrics` or a peer's failback would read a
            // stop at every rollover). A failed open says why below.
            Decision::Rollover => {
                self.finish_open(ch, Some(f.time));
            }
            Decision::Break { .. } => self.close(ch, None),
            Decision::Start | Decision::Drop => {}
        }
        let starts = matches!(
            decision,
            Decision::Rollover | Decision::Start | Decision::Break { start: true }
        );
        if starts {
            let st = self.channels.entry(ch).or_default();
            let paused = st.paused_until.is_some_and(|until| Instant::now() < until);
            let opened = if paused { None } else { Some(self.open(&f)) };
            if !matches!(opened, Some(Ok(()))) {
                if decision == Decision::Rollover {
                    // No segment follows the one closed above after all.
                    self.segment_closed(ch);
                }
                if let Some(Err(e)) = opened {
                    self.pause(ch, "cannot start a segment", e, true);
                }
                return false;
            }
        } else if decision != Decision::Append {
            return false;
        }
        if let Err(e) = self.append(&f) {
            self.pause(ch, "cannot write frame", e, true);
        }
        starts
    }

    fn open(&mut self, f: &Frame) -> std::io::Result<()> {
        // A channel paused by a failing disk probes it: the segment's header
        // and name are made durable now, so a disk that still fails keeps
        // the channel paused without writing frames only to lose them.
        let probe = self
            .channels
            .get(&f.channel)
            .is_some_and(|st| st.paused_until.is_some());
        let seg = self.create_segment(f.channel, f.time, &f.sample_entry, f.run, probe)?;
        let id = seg.id;
        let st = self.channels.entry(f.channel).or_default();
        if st.paused_until.take().is_some() {
            let cause = st.paused_for.take().unwrap_or(super::health::Cause::Io);
            super::ensure_reserve(&self.cfg.dir);
            info!(
                channel = f.channel,
                after = cause.event_kind(),
                "recording resumed: {}",
                cause.resumed()
            );
            self.event(
                Some(f.channel),
                "recording_resumed",
                f.time,
                serde_json::json!({ "after": cause.event_kind() }),
            );
        }
        self.channels.entry(f.channel).or_default().open = Some(seg);
        self.set_status(f.channel, |s| {
            s.state = RecordingState::Recording;
            s.segment_id = Some(id);
            s.segments_written += 1;
            s.last_error = None;
        });
        Ok(())
    }

    /// Creates a segment (see `OpenSegment::create`), spending the
    /// descriptor reserve if the process has run out.
    pub(super) fn create_segment(
        &mut self,
        channel: u32,
        start: Time90k,
        entry: &Arc<SampleEntry>,
        run: u64,
        sync_now: bool,
    ) -> std::io::Result<OpenSegment> {
        let entry_id = match self.entries.get(&entry.data) {
            Some(&id) => id,
            None => {
                let id = db::upsert_sample_entry(&self.conn, &entry.data, entry.codec, entry.width, entry.height)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                self.entries.insert(entry.data.clone(), id);
                id
            }
        };
        let create = || {
            OpenSegment::create(
                &self.conn,
                &self.cfg.dir,
                channel,
                start,
                (entry, entry_id),
                run,
                sync_now,
            )
        };
        match create() {
            // Out of descriptors (clients, a leak): spend the reserve, so
            // recording goes on, and say so.
            Err(e)
                if super::health::Cause::of(&e) == super::health::Cause::NoDescriptors && self.fd_reserve.release() =>
            {
                warn!(
                    channel,
                    "the process is out of file descriptors; the writer used its reserve"
                );
                if let Ok(mut s) = self.stats.lock() {
                    s.fd_reserve_used += 1;
                }
                create()
            }
            r => r,
        }
    }

    fn append(&mut self, f: &Frame) -> std::io::Result<()> {
        let st = self.channels.get_mut(&f.channel).expect("channel state exists");
        let o = st.open.as_mut().expect("a segment is open");
        // Queued, not written: see `open_segment` (the frame shares ingest's buffer).
        o.queue_frame(f.time, f.key, f.data.clone(), self.arrival)?;
        if o.capture_offset.is_none() {
            o.capture_offset = f.capture_offset;
        }
        o.unflushed.push((f.time, self.arrival));
        self.oldest_unflushed = Some(self.oldest_unflushed.map_or(self.arrival, |a| a.min(self.arrival)));
        if o.write_due(self.arrival, self.write_delay) {
            if let Err(w) = o.write_out() {
                self.write_failed(f.channel, w);
                return Ok(());
            }
        }
        if let Some(q) = o.queued_since() {
            self.oldest_queued = Some(self.oldest_queued.map_or(q, |o| o.min(q)));
        }
        let n = f.data.len() as u64;
        self.set_status(f.channel, |s| {
            s.frames_written += 1;
            s.bytes_written += n;
        });
        Ok(())
    }

    /// Closes the channel's open segment. `end` is where the next frame starts
    /// when the timeline continues; otherwise the last frame keeps the previous
    /// frame's duration.
    fn close(&mut self, channel: u32, end: Option<Time90k>) {
        if self.finish_open(channel, end) {
            self.segment_closed(channel);
        }
    }

    /// Finishes the channel's open segment, if it has one (whether it had),
    /// leaving its status as it is: a rollover opens the next at once (see
    /// `record`), `close` says the channel went idle.
    fn finish_open(&mut self, channel: u32, end: Option<Time90k>) -> bool {
        let Some(o) = self.channels.get_mut(&channel).and_then(|st| st.open.take()) else {
            return false;
        };
        self.finish_segment(channel, o, end);
        true
    }

    /// Ends a live segment without waiting for an fsync: its last frames
    /// are written and it waits for the next flush round, which makes it
    /// durable before its row is finished (or closes it at its durable
    /// point if that fsync fails; `writer_round`).
    pub(super) fn finish_segment(&mut self, channel: u32, mut o: OpenSegment, end: Option<Time90k>) {
        let unwritten = o.seal_for_close(channel, end);
        self.count_unwritten(channel, unwritten);
        self.closed_pending(channel, o);
    }

    /// Counts fsyncs that succeeded and the frames they made durable.
    pub(super) fn count_durable(&mut self, fsyncs: u64, bytes: u64, durable: Vec<Unflushed>) {
        let now = self.clock.now();
        let at = Instant::now();
        if let Ok(mut s) = self.stats.lock() {
            s.fsyncs += fsyncs;
            s.fsync_bytes += bytes;
            for (t, arrived) in durable {
                s.durable.record_90k(now - t);
                s.arrival_durable.record_ms(
                    at.saturating_duration_since(arrived)
                        .as_millis()
                        .min(u128::from(u32::MAX)) as u32,
                );
            }
        }
    }

    /// A segment's fsync failed and it was closed at its durable point
    /// (`OpenSegment::close_durable`): say so (event, status, counters).
    /// The next key frame opens a new segment; if that fails too, the
    /// channel pauses (`pause`).
    pub(super) fn fsync_failed(&mut self, channel: u32, segment: i64, lost: Lost, what: &str) {
        if let Ok(mut s) = self.stats.lock() {
            s.fsync_errors += 1;
            s.frames_lost += u64::from(lost.frames);
        }
        let file = segment_path(&self.cfg.dir, channel, segment);
        let why = format!("{what}: segment {segment} closed at its last durable frame");
        self.set_status(channel, |s| {
            s.frames_lost += u64::from(lost.frames);
            s.last_error = Some(why.clone());
        });
        let now = self.clock.now();
        self.event(
            Some(channel),
            super::health::Cause::Io.event_kind(),
            now,
            serde_json::json!({
                "error": why,
                "segment": segment,
                "file": file.display().to_string(),
                "frames_kept": lost.kept,
                "frames_lost": lost.frames,
                "bytes_lost": lost.bytes,
            }),
        );
    }

    pub(super) fn end_run(&mut self, channel: u32) {
        self.close(channel, None);
    }

    /// Closes the channel's segment where a frame at `time` begins the next.
    pub(super) fn close_at(&mut self, channel: u32, time: Time90k) {
        self.close(channel, Some(time));
    }

    /// Stops the channel's recording for a moment after a write failed, and
    /// says why in the words that fit the cause.
    pub(super) fn pause(&mut self, channel: u32, what: &str, e: std::io::Error, announce: bool) {
        let cause = super::health::Cause::of(&e);
        let why = format!("{what}: {e}");
        if cause == super::health::Cause::DiskFull {
            // Free the reserve first so that closing the segment and recording
            // the event can still reach the index on a full disk.
            super::release_reserve(&self.cfg.dir);
        }
        self.close(channel, None);
        let st = self.channels.entry(channel).or_default();
        let first = st.paused_until.is_none();
        st.paused_until = Some(Instant::now() + DISK_RETRY);
        st.paused_for = Some(cause);
        if first {
            error!(channel, cause = cause.event_kind(), "recording paused: {why}");
            let now = self.clock.now();
            if announce {
                self.event(
                    Some(channel),
                    cause.event_kind(),
                    now,
                    serde_json::json!({ "error": why }),
                );
            }
            self.set_status(channel, |s| {
                s.state = cause.state();
                s.last_error = Some(why);
            });
            if cause == super::health::Cause::DiskFull {
                self.run_retention();
            }
        }
    }

    fn run_retention(&mut self) {
        self.retention_finished();
        if self.deleter.as_ref().is_some_and(|d| d.busy()) {
            return;
        }
        // Synced: the retention thread unlinks the files once the marks
        // are committed, and a power cut must never bring back a
        // `complete` row whose file is gone.
        let (r, batch) = match db::synced(&self.conn, || {
            Ok(super::retention_run::mark(
                &self.conn,
                &self.cfg.dir,
                self.clock.now(),
                &self.cfg.policies,
                self.cfg.min_free_bytes,
            ))
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                warn!("{e}");
                return;
            }
        };
        if batch.is_empty() {
            return;
        }
        info!(
            segments = batch.len(),
            free_bytes = r.free_bytes,
            reason = ?r.reason,
            ms = r.total().as_millis() as u64,
            "retention deleting footage"
        );
        if self.deleter.is_none() {
            self.deleter = Deleter::spawn(self.cfg.dir.clone())
                .map_err(|e| warn!("cannot start the retention thread, deleting on the writer: {e}"))
                .ok();
        }
        let left = match &mut self.deleter {
            Some(d) => d.start(batch).err(),
            None => Some(batch),
        };
        if let Some(batch) = left {
            let done = super::deleter::delete(&self.cfg.dir, &batch);
            self.rows_deleted(done);
        }
    }

    /// Deletes the rows of a batch the retention thread has finished.
    fn retention_finished(&mut self) {
        if let Some(done) = self.deleter.as_mut().and_then(|d| d.finished()) {
            self.rows_deleted(done);
        }
    }

    fn rows_deleted(&mut self, done: Deleted) {
        if let Err(e) = super::retention_run::delete_rows(&self.conn, &done.ids) {
            warn!("cannot delete rows of deleted segments (startup will finish): {e}");
        }
        if let Ok(mut s) = self.stats.lock() {
            s.retention_segments += done.ids.len() as u64;
            s.retention_bytes += done.freed;
        }
        info!(
            segments = done.ids.len(),
            freed_bytes = done.freed,
            "retention deleted footage"
        );
    }
}
