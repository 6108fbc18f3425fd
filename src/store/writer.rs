//! The writer thread: the only code that appends to segment files, commits
//! index rows or deletes footage.
//!
//! Frames from every channel arrive on one bounded queue. The thread appends
//! each frame as one record (so a SIGKILL loses nothing already handed to the
//! kernel), and every flush interval it fdatasyncs all files written since the
//! last flush and commits their progress in one transaction — fsyncs batched
//! across channels, so a power cut loses at most one interval. It also runs
//! retention and handles a full disk by closing the segment at its last
//! complete frame and pausing that channel until space returns.
//!
//! Must never run on the async runtime, never hold a segment open across a
//! change of codec parameters, and never delete a segment being written.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::db::{self, Progress};
use super::index::{FrameEntry, IndexEncoder};
use super::retention::{self, RetentionPolicy};
use super::segment_file::{record_header, SegmentHeader, RECORD_HEADER_LEN};
use super::{segment_path, SampleEntry};
use crate::time::{Clock, Time90k};

/// A gap between consecutive frames of one run longer than four frame
/// intervals (at least 0.2 s, at most 5 s) ends the segment, so that holes
/// show in the index instead of being folded into one frame's duration.
fn max_frame_gap(last_duration: u32) -> i64 {
    if last_duration == 0 {
        return 5 * 90_000;
    }
    (4 * i64::from(last_duration)).clamp(18_000, 5 * 90_000)
}
/// Pause between batches of queued commands (see `run`).
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// Events handled per batch at most: frames come first, and a flood of events
/// waits on its own queue (and is refused there) instead of delaying them.
const EVENT_BUDGET: usize = 256;
/// Queued events are committed at most this often between flushes: a lone
/// event is stored (and announced) at once, a flood costs ten commits a second.
const EVENT_COMMIT: Duration = Duration::from_millis(100);
/// A channel paused by a full disk tries again this often.
const DISK_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Frame {
    pub channel: u32,
    /// Changes whenever ingest reconnects or drops a frame: a new run never
    /// continues the previous segment.
    pub run: u64,
    pub time: Time90k,
    pub key: bool,
    pub sample_entry: Arc<SampleEntry>,
    pub data: Vec<u8>,
}

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

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecordingStatus {
    /// "recording", "idle", or why the channel is paused: "disk_full",
    /// "no_file_descriptors", "storage_error" (see `health::Cause`).
    pub state: &'static str,
    pub segment_id: Option<i64>,
    pub frames_written: u64,
    pub bytes_written: u64,
    pub segments_written: u64,
    pub last_error: Option<String>,
}

pub type StatusMap = Arc<Mutex<HashMap<u32, RecordingStatus>>>;

/// What the writer does with an arriving frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Add to the open segment.
    Append,
    /// Close the open segment where this frame starts and open a new one with it.
    Rollover,
    /// Close the open segment at its own last frame (a gap follows); then, if
    /// this is a key frame, open a new segment with it, else drop it.
    Break { start: bool },
    /// No segment is open: open one with this key frame.
    Start,
    /// No segment is open and this frame cannot start one.
    Drop,
}

/// The segment-boundary policy, as a pure function.
pub fn decide(
    open: Option<(u64, Time90k, Time90k, u32, &SampleEntry)>,
    run: u64,
    time: Time90k,
    key: bool,
    entry: &SampleEntry,
    segment_len: i64,
) -> Decision {
    let Some((open_run, start, last, last_duration, open_entry)) = open else {
        return if key { Decision::Start } else { Decision::Drop };
    };
    if run != open_run || time <= last || time - last > max_frame_gap(last_duration) {
        return Decision::Break { start: key };
    }
    if open_entry != entry {
        return if key {
            Decision::Rollover
        } else {
            Decision::Break { start: false }
        };
    }
    if key && time - start >= segment_len {
        return Decision::Rollover;
    }
    Decision::Append
}

pub(super) struct OpenSegment {
    id: i64,
    file: File,
    run: u64,
    start: Time90k,
    entry: Arc<SampleEntry>,
    index: IndexEncoder,
    /// The last frame written; its duration is known only when the next arrives.
    pending: Option<(Time90k, u32, bool)>,
    last_duration: u32,
    frames: u32,
    key_frames: u32,
    len: u64,
    media_bytes: u64,
    dirty: bool,
    /// SHA-256 of the file's first `len` bytes, fed as they are written
    /// (never by reading back), stored with the finished row.
    hash: Sha256,
    /// Times of the frames written since the last fdatasync, for the
    /// frame-to-durable latency (live segments only; empty for imports).
    unflushed: Vec<Time90k>,
}

impl OpenSegment {
    /// Creates a segment: row first (`writing`), then the file with its header,
    /// fsynced with its directory. Undoes both on failure. Used by the writer
    /// for live footage and by the importer for a peer's.
    pub(super) fn create(
        conn: &Connection,
        dir: &std::path::Path,
        channel: u32,
        start: Time90k,
        entry: &Arc<SampleEntry>,
        entry_id: i64,
        run: u64,
    ) -> std::io::Result<OpenSegment> {
        let id = db::insert_writing_segment(conn, channel, start, entry_id)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let path = segment_path(dir, channel, id);
        let result = (|| {
            let dir = path.parent().expect("segment path has a parent");
            std::fs::create_dir_all(dir)?;
            let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
            let header = SegmentHeader {
                channel,
                segment_id: id,
                start,
                sample_entry: entry.data.clone(),
            }
            .encode();
            file.write_all(&header)?;
            file.sync_data()?;
            File::open(dir)?.sync_all()?;
            Ok::<_, std::io::Error>((file, header))
        })();
        let (file, header) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let _ = db::delete_segment_row(conn, id);
                return Err(e);
            }
        };
        Ok(OpenSegment {
            id,
            file,
            run,
            start,
            entry: entry.clone(),
            index: IndexEncoder::default(),
            pending: None,
            last_duration: 0,
            frames: 0,
            key_frames: 0,
            len: header.len() as u64,
            media_bytes: 0,
            dirty: true,
            hash: Sha256::new_with_prefix(&header),
            unflushed: Vec::new(),
        })
    }

    /// fsyncs the segment and marks it complete with its frame index (or
    /// removes it if it holds no frame). Returns the times of the frames this
    /// fsync made durable.
    pub(super) fn finish(
        mut self,
        conn: &Connection,
        dir: &std::path::Path,
        channel: u32,
        end: Option<Time90k>,
    ) -> Vec<Time90k> {
        if let Some((t, size, key)) = self.pending.take() {
            let duration = match end {
                Some(e) if e > t => (e - t) as u32,
                _ => self.last_duration.max(1),
            };
            self.index.push(FrameEntry { duration, size, key });
            self.last_duration = duration;
        }
        let end_time = self.last_time_after_close();
        let durable = match self.file.sync_data() {
            Ok(()) => std::mem::take(&mut self.unflushed),
            Err(e) => {
                error!(channel, segment = self.id, "fsync failed while closing segment: {e}");
                Vec::new()
            }
        };
        let progress = self.progress(end_time);
        if self.frames == 0 {
            let _ = std::fs::remove_file(segment_path(dir, channel, self.id));
            let _ = db::delete_segment_row(conn, self.id);
        } else if let Err(e) = db::complete_segment(
            conn,
            self.id,
            &progress,
            self.index.blob(),
            Some(&self.hash.finalize().into()),
        ) {
            // The row stays `writing`; startup repair will rebuild it from the file.
            error!(channel, segment = self.id, "could not commit finished segment: {e}");
        }
        durable
    }

    /// Frames written so far and the file's length.
    pub(super) fn written(&self) -> (u32, u64) {
        (self.frames, self.len)
    }

    /// fdatasyncs what was written so far (imports, in steps).
    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Appends one frame record. On error the file is cut back to its last
    /// complete record so it stays valid.
    pub(super) fn write_frame(&mut self, time: Time90k, key: bool, data: &[u8]) -> std::io::Result<()> {
        let pts = u32::try_from(time - self.start).map_err(|_| std::io::Error::other("segment too long"))?;
        let header = record_header(pts, key, data);
        // One vectored write, no user-space buffer: once it returns, a SIGKILL
        // cannot lose the frame. A torn record is cut off by startup repair.
        if let Err(e) = write_all_vectored(&mut self.file, &header, data) {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        if let Some((t, size, k)) = self.pending.take() {
            let duration = (time - t) as u32;
            self.index.push(FrameEntry { duration, size, key: k });
            self.last_duration = duration;
        }
        self.hash.update(header);
        self.hash.update(data);
        self.pending = Some((time, data.len() as u32, key));
        self.frames += 1;
        self.key_frames += u32::from(key);
        self.len += RECORD_HEADER_LEN + data.len() as u64;
        self.media_bytes += data.len() as u64;
        self.dirty = true;
        Ok(())
    }

    fn progress(&self, end: Time90k) -> Progress {
        Progress {
            end,
            frames: self.frames,
            key_frames: self.key_frames,
            bytes: self.len,
            media_bytes: self.media_bytes,
        }
    }
    fn last_time(&self) -> Time90k {
        self.pending.map(|p| p.0).unwrap_or(self.start)
    }
}

#[derive(Default)]
struct ChannelState {
    open: Option<OpenSegment>,
    /// Set while a full disk keeps this channel from writing.
    paused_until: Option<Instant>,
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
    conn: Connection,
    clock: Arc<dyn Clock>,
    channels: HashMap<u32, ChannelState>,
    entries: HashMap<Vec<u8>, i64>,
    status: StatusMap,
    pub(super) policy: HashMap<u32, super::events::ChannelPolicy>,
    /// Scratch space for the gate's output, reused across frames.
    pub(super) gate_out: Vec<(Frame, bool)>,
    pub(super) gate_stats: super::events::GateStatsMap,
    pub(super) notifier: Option<crate::events::Notifier>,
    pub(super) event_log: super::events::EventLog,
    /// Frame-to-durable latency and other counters the API shows.
    stats: super::health::SharedWriterStats,
    /// Descriptors held back for the writer (see `health::FdReserve`).
    fd_reserve: super::health::FdReserve,
    /// Keeps a flood's repeated warnings (events evicted) to a line a minute.
    pub(super) repeated: crate::log_limiter::LogLimiter,
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
        })
    }

    pub fn run(mut self, rx: super::queue::WriterRx) {
        let mut next_flush = Instant::now() + self.cfg.flush_interval;
        let mut next_retention = Instant::now();
        let mut next_event_commit = Instant::now();
        'outer: loop {
            let now = Instant::now();
            if now >= next_event_commit && !self.event_log.is_empty() {
                self.commit(Vec::new());
                next_event_commit = now + EVENT_COMMIT;
            }
            if now >= next_flush {
                let clock_now = self.clock.now();
                self.apply_stale_triggers(clock_now, 2 * 90_000);
                self.flush();
                next_flush = now + self.cfg.flush_interval;
            }
            if now >= next_retention {
                self.run_retention();
                next_retention = now + self.cfg.retention_interval;
            }
            let mut due = next_flush.min(next_retention);
            if !self.event_log.is_empty() {
                due = due.min(next_event_commit);
            }
            let wait = due.saturating_duration_since(Instant::now());
            let mut next = match rx.frames.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => {
                    self.take_events(&rx, EVENT_BUDGET);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Handle everything queued, then pause briefly so that frames from
            // all channels accumulate: the thread wakes at most ~200 times a
            // second however many streams there are, instead of once per frame.
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Frame(f) => self.on_frame(f),
                    Command::EndRun { channel } => self.end_run(channel),
                    c @ (Command::Event { .. } | Command::EventEdge(_)) => self.on_event(c),
                    Command::Sync(done) => {
                        self.take_events(&rx, usize::MAX);
                        let chans: Vec<u32> = self.policy.keys().copied().collect();
                        for ch in chans {
                            self.apply_triggers(ch, None);
                        }
                        self.flush();
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
                next = rx.frames.try_recv().ok();
            }
            self.take_events(&rx, EVENT_BUDGET);
            std::thread::sleep(BATCH_PAUSE);
        }
        self.take_events(&rx, usize::MAX);
        let chans: Vec<u32> = self.channels.keys().copied().collect();
        for ch in chans {
            self.end_run(ch);
        }
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

    fn set_status(&self, channel: u32, f: impl FnOnce(&mut RecordingStatus)) {
        if let Ok(mut m) = self.status.lock() {
            f(m.entry(channel).or_insert_with(|| RecordingStatus {
                state: "idle",
                ..Default::default()
            }));
        }
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
            Decision::Rollover => self.close(ch, Some(f.time)),
            Decision::Break { .. } => self.close(ch, None),
            Decision::Start | Decision::Drop => {}
        }
        let starts = matches!(
            decision,
            Decision::Rollover | Decision::Start | Decision::Break { start: true }
        );
        if starts {
            let st = self.channels.entry(ch).or_default();
            if let Some(until) = st.paused_until {
                if Instant::now() < until {
                    return false;
                }
            }
            if let Err(e) = self.open(&f) {
                self.pause(ch, "cannot start a segment", e);
                return false;
            }
        } else if decision != Decision::Append {
            return false;
        }
        if let Err(e) = self.append(&f) {
            self.pause(ch, "cannot write frame", e);
        }
        starts
    }

    fn open(&mut self, f: &Frame) -> std::io::Result<()> {
        let seg = self.create_segment(f.channel, f.time, &f.sample_entry, f.run)?;
        let id = seg.id;
        let st = self.channels.entry(f.channel).or_default();
        if st.paused_until.take().is_some() {
            super::ensure_reserve(&self.cfg.dir);
            info!(channel = f.channel, "recording resumed: disk has space again");
            self.event(Some(f.channel), "recording_resumed", f.time, serde_json::json!({}));
        }
        self.channels.entry(f.channel).or_default().open = Some(seg);
        self.set_status(f.channel, |s| {
            s.state = "recording";
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
        let create = || OpenSegment::create(&self.conn, &self.cfg.dir, channel, start, entry, entry_id, run);
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
        o.write_frame(f.time, f.key, &f.data)?;
        o.unflushed.push(f.time);
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
        let Some(st) = self.channels.get_mut(&channel) else {
            return;
        };
        let Some(o) = st.open.take() else { return };
        self.finish_segment(channel, o, end);
        self.set_status(channel, |s| {
            if s.state == "recording" {
                s.state = "idle";
            }
            s.segment_id = None;
        });
    }

    /// Finishes a live segment and counts its last frames as durable.
    pub(super) fn finish_segment(&mut self, channel: u32, o: OpenSegment, end: Option<Time90k>) {
        let durable = o.finish(&self.conn, &self.cfg.dir, channel, end);
        if !durable.is_empty() {
            let now = self.clock.now();
            if let Ok(mut s) = self.stats.lock() {
                for t in durable {
                    s.durable.record_90k(now - t);
                }
            }
        }
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
    fn pause(&mut self, channel: u32, what: &str, e: std::io::Error) {
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
        if first {
            error!(channel, cause = cause.event_kind(), "recording paused: {why}");
            let now = self.clock.now();
            self.event(
                Some(channel),
                cause.event_kind(),
                now,
                serde_json::json!({ "error": why }),
            );
            self.set_status(channel, |s| {
                s.state = cause.state();
                s.last_error = Some(why);
            });
            if cause == super::health::Cause::DiskFull {
                self.run_retention();
            }
        }
    }

    /// fdatasyncs every file written since the last flush, then records their
    /// progress in one transaction.
    fn flush(&mut self) {
        if !self.fd_reserve.is_full() {
            self.fd_reserve.refill();
        }
        let mut updates = Vec::new();
        let mut written = Vec::new();
        for (&ch, st) in self.channels.iter_mut() {
            if let Some(o) = st.open.as_mut().filter(|o| o.dirty) {
                if let Err(e) = o.file.sync_data() {
                    error!(channel = ch, segment = o.id, "fsync failed: {e}");
                    continue;
                }
                o.dirty = false;
                written.append(&mut o.unflushed);
                let end = o
                    .pending
                    .map(|(t, _, _)| t + i64::from(o.last_duration))
                    .unwrap_or(o.start);
                updates.push((o.id, o.progress(end)));
            }
        }
        if !written.is_empty() {
            let now = self.clock.now();
            if let Ok(mut s) = self.stats.lock() {
                for t in written {
                    s.durable.record_90k(now - t);
                }
            }
        }
        self.commit(updates);
    }

    /// Commits segment progress and queued events in one transaction, then
    /// announces the events.
    fn commit(&mut self, updates: Vec<(i64, Progress)>) {
        if updates.is_empty() && self.event_log.is_empty() {
            return;
        }
        let r = (|| {
            let tx = self.conn.unchecked_transaction()?;
            for (id, p) in &updates {
                db::update_writing(&tx, *id, p)?;
            }
            db::apply_event_ops(&tx, self.event_log.ops())?;
            tx.commit()
        })();
        match r {
            Ok(()) => {
                let events = self.event_log.ops().len() as u64;
                for n in self.event_log.committed() {
                    self.notify(n);
                }
                if let Ok(mut s) = self.stats.lock() {
                    s.events_stored += events;
                    s.events_dropped = self.event_log.dropped;
                }
            }
            // Progress rows are rewritten at the next flush; queued events stay queued.
            Err(e) => warn!("could not record flush progress: {e}"),
        }
    }

    fn run_retention(&mut self) {
        let free = match super::free_bytes(&self.cfg.dir) {
            Ok(f) => f,
            Err(e) => {
                warn!("cannot read free space of {}: {e}", self.cfg.dir.display());
                return;
            }
        };
        let usage = match db::channel_usage(&self.conn, 500) {
            Ok(u) => u,
            Err(e) => {
                warn!("cannot read channel usage: {e}");
                return;
            }
        };
        let plan = retention::plan(
            self.clock.now(),
            &usage,
            &self.cfg.policies,
            free,
            self.cfg.min_free_bytes,
        );
        if plan.is_empty() {
            return;
        }
        let r = (|| {
            let tx = self.conn.unchecked_transaction()?;
            for d in &plan {
                db::mark_garbage(&tx, d.segment.id)?;
            }
            tx.commit()
        })();
        if let Err(e) = r {
            warn!("cannot mark segments for deletion: {e}");
            return;
        }
        let mut freed = 0;
        for d in &plan {
            let p = segment_path(&self.cfg.dir, d.segment.channel, d.segment.id);
            match std::fs::remove_file(&p) {
                Ok(()) => freed += d.segment.bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!("cannot delete {}: {e}", p.display()),
            }
        }
        super::sync_video_dirs(&self.cfg.dir);
        let r = (|| {
            let tx = self.conn.unchecked_transaction()?;
            for d in &plan {
                db::delete_segment_row(&tx, d.segment.id)?;
            }
            tx.commit()
        })();
        if let Err(e) = r {
            warn!("cannot delete rows of deleted segments (startup will finish): {e}");
        }
        info!(segments = plan.len(), freed_bytes = freed, free_bytes = free, reason = ?plan[0].reason, "retention deleted footage");
    }
}

/// Writes `a` then `b` with as few `writev` calls as the kernel allows.
fn write_all_vectored(file: &mut File, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    use std::io::IoSlice;
    let total = a.len() + b.len();
    let mut done = 0;
    while done < total {
        let n = if done < a.len() {
            file.write_vectored(&[IoSlice::new(&a[done..]), IoSlice::new(b)])?
        } else {
            file.write(&b[done - a.len()..])?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

impl OpenSegment {
    fn last_time_after_close(&self) -> Time90k {
        // After close, every frame's duration is in the index; the end is the
        // start plus their sum, which equals last frame time + its duration.
        let total: i64 = super::index::decode(self.index.blob())
            .map(|v| v.iter().map(|e| i64::from(e.duration)).sum())
            .unwrap_or(0);
        self.start + total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> SampleEntry {
        SampleEntry {
            data: vec![n],
            codec: "h264",
            width: 1,
            height: 1,
        }
    }

    #[test]
    fn decisions_cover_every_boundary() {
        let e1 = entry(1);
        let e2 = entry(2);
        let len = 60 * 90_000;
        let open = Some((7u64, Time90k(0), Time90k(3000), 3000u32, &e1));
        assert_eq!(decide(None, 7, Time90k(0), true, &e1, len), Decision::Start);
        assert_eq!(decide(None, 7, Time90k(0), false, &e1, len), Decision::Drop);
        assert_eq!(decide(open, 7, Time90k(6000), false, &e1, len), Decision::Append);
        assert_eq!(decide(open, 7, Time90k(6000), true, &e1, len), Decision::Append);
        let late = Some((7u64, Time90k(0), Time90k(len - 3000), 3000u32, &e1));
        assert_eq!(decide(late, 7, Time90k(len), true, &e1, len), Decision::Rollover);
        assert_eq!(decide(late, 7, Time90k(len), false, &e1, len), Decision::Append);
        assert_eq!(
            decide(open, 8, Time90k(6000), true, &e1, len),
            Decision::Break { start: true }
        );
        assert_eq!(
            decide(open, 8, Time90k(6000), false, &e1, len),
            Decision::Break { start: false }
        );
        assert_eq!(
            decide(open, 7, Time90k(3000), true, &e1, len),
            Decision::Break { start: true }
        );
        assert_eq!(
            decide(open, 7, Time90k(1000), false, &e1, len),
            Decision::Break { start: false }
        );
        // A hole of more than four frame intervals (at least 0.2 s) ends the segment.
        assert_eq!(
            decide(open, 7, Time90k(3000 + 18_000), false, &e1, len),
            Decision::Append
        );
        assert_eq!(
            decide(open, 7, Time90k(3000 + 18_001), true, &e1, len),
            Decision::Break { start: true }
        );
        let slow = Some((7u64, Time90k(0), Time90k(90_000), 90_000u32, &e1));
        assert_eq!(decide(slow, 7, Time90k(90_000 * 4), false, &e1, len), Decision::Append);
        assert_eq!(
            decide(slow, 7, Time90k(90_000 * 6), false, &e1, len),
            Decision::Break { start: false }
        );
        let first = Some((7u64, Time90k(0), Time90k(0), 0u32, &e1));
        assert_eq!(decide(first, 7, Time90k(4 * 90_000), false, &e1, len), Decision::Append);
        assert_eq!(decide(open, 7, Time90k(6000), true, &e2, len), Decision::Rollover);
        assert_eq!(
            decide(open, 7, Time90k(6000), false, &e2, len),
            Decision::Break { start: false }
        );
    }
}
