//! The writer's two inboxes and the write buffer's bound. Frames (and the
//! commands that must stay in order with them: end of run, sync, shutdown)
//! travel on one bounded queue; events from every source (HTTP and MQTT
//! triggers, motion, cameras, rules) on a second one. A flood of events
//! therefore fills only its own queue and is refused there: it can never take
//! the place of a frame.
//!
//! The frame queue is the write buffer: bounded by frames and by the bytes of
//! video it holds (`[storage] write_buffer`), so a slow disk costs at most that
//! much memory. A frame that does not fit is refused at once (the sender drops
//! it and waits for the next key frame); the first refusal of an episode logs
//! a warning and queues a `storage_slow` event, and the episode ends when the
//! writer has emptied the buffer.
//!
//! The writer sleeps on the frame queue; an event that arrives while no frame
//! does pokes it with a single `Wake` (at most one is ever queued, so pokes
//! cannot crowd out frames either). Must never block a sender that used
//! `try_send`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SendError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::writer::Command;

/// Frames queued for the writer before ingest starts dropping, whatever their
/// size: about 2.5 s of 256 streams at 25 fps. The byte bound
/// (`write_buffer`) is usually the one that holds.
pub const FRAME_QUEUE_DEPTH: usize = 16_384;
/// Events queued for the writer before sources are refused (an HTTP trigger answers 503).
pub const EVENT_QUEUE_DEPTH: usize = 1024;
/// The default `[storage] write_buffer`: 128 MiB holds 4 s of 64 streams at
/// 4 Mbit/s (`bench ingest`'s load), 30 s of 16 streams at 2 Mbit/s — a disk
/// stalling for a few seconds (a slow fsync, a busy journal, 64 segments
/// rolling over at once) loses nothing. 64 MiB (2 s of that load) dropped
/// frames at start-up in `bench ingest --streams 64`. It is memory only
/// while the disk is behind, and stays well inside the 512 MiB the NVR is
/// meant to run in.
pub const DEFAULT_WRITE_BUFFER: u64 = 128 << 20;

/// A command as queued: when it was handed over (arrival, for the
/// arrival-to-durable latency and the flush deadline) and the bytes of video
/// it holds against the buffer's bound.
pub struct Queued {
    pub cmd: Command,
    pub at: Instant,
    bytes: u64,
}

/// The write buffer's bound and fill, shared by every sender and the writer.
#[derive(Debug)]
pub struct WriteBuffer {
    capacity: u64,
    used: AtomicU64,
    frames: AtomicU64,
    dropped: AtomicU64,
    episodes: AtomicU64,
    /// Frames have been refused since the buffer was last empty.
    slow: AtomicBool,
}

/// The write buffer as `GET /api/v1/channels` and `GET /api/v1/store` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BufferFigures {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub capacity_frames: u64,
    pub queued_frames: u64,
    /// Frames refused because the buffer was full (all channels; per channel
    /// in each channel's `ingest.dropped_frames`).
    pub dropped_frames: u64,
    /// Times the writer fell behind (one `storage_slow` event each).
    pub slow_episodes: u64,
    /// Frames are being refused now.
    pub slow: bool,
}

impl WriteBuffer {
    fn new(capacity: u64) -> WriteBuffer {
        WriteBuffer {
            capacity,
            used: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            episodes: AtomicU64::new(0),
            slow: AtomicBool::new(false),
        }
    }

    /// Takes `n` bytes of room, or says there is none. A frame larger than
    /// the whole buffer is let in when the buffer is empty, so that one huge
    /// key frame cannot stop a channel for good.
    fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u == 0 || u.saturating_add(n) <= self.capacity).then_some(u + n)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Counts a refused frame; true for the first of an episode.
    fn refused(&self) -> bool {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        let first = !self.slow.swap(true, Ordering::AcqRel);
        if first {
            self.episodes.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    pub fn figures(&self) -> BufferFigures {
        BufferFigures {
            capacity_bytes: self.capacity,
            used_bytes: self.used.load(Ordering::Acquire),
            capacity_frames: FRAME_QUEUE_DEPTH as u64,
            queued_frames: self.frames.load(Ordering::Acquire),
            dropped_frames: self.dropped.load(Ordering::Relaxed),
            slow_episodes: self.episodes.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Acquire),
        }
    }
}

/// The sending side, cloned into every producer.
#[derive(Clone)]
pub struct WriterTx {
    frames: SyncSender<Queued>,
    events: SyncSender<Command>,
    /// A `Wake` is queued and not yet handled.
    wake: Arc<AtomicBool>,
    buffer: Arc<WriteBuffer>,
}

/// The writer's side.
pub struct WriterRx {
    frames: Receiver<Queued>,
    pub(super) events: Receiver<Command>,
    pub(super) wake: Arc<AtomicBool>,
    buffer: Arc<WriteBuffer>,
}

/// The two queues, the frame queue bounded to `write_buffer` bytes of video.
pub fn channel(write_buffer: u64) -> (WriterTx, WriterRx) {
    let (ftx, frx) = std::sync::mpsc::sync_channel(FRAME_QUEUE_DEPTH);
    let (etx, erx) = std::sync::mpsc::sync_channel(EVENT_QUEUE_DEPTH);
    let wake = Arc::new(AtomicBool::new(false));
    let buffer = Arc::new(WriteBuffer::new(write_buffer));
    (
        WriterTx {
            frames: ftx,
            events: etx,
            wake: wake.clone(),
            buffer: buffer.clone(),
        },
        WriterRx {
            frames: frx,
            events: erx,
            wake,
            buffer,
        },
    )
}

fn is_event(c: &Command) -> bool {
    matches!(c, Command::Event { .. } | Command::EventEdge(_))
}

fn video_bytes(c: &Command) -> u64 {
    match c {
        Command::Frame(f) => f.data.len() as u64,
        _ => 0,
    }
}

impl WriterTx {
    /// Queues without waiting; a full queue (or a full write buffer) hands
    /// the command back.
    pub fn try_send(&self, c: Command) -> Result<(), TrySendError<Command>> {
        if is_event(&c) {
            self.events.try_send(c)?;
            self.poke();
            return Ok(());
        }
        let bytes = video_bytes(&c);
        if bytes > 0 && !self.buffer.reserve(bytes) {
            self.refused(&c);
            return Err(TrySendError::Full(c));
        }
        self.buffer.frames.fetch_add(1, Ordering::AcqRel);
        let q = Queued {
            cmd: c,
            at: Instant::now(),
            bytes,
        };
        self.frames.try_send(q).map_err(|e| {
            let (q, full) = match e {
                TrySendError::Full(q) => (q, true),
                TrySendError::Disconnected(q) => (q, false),
            };
            self.buffer.release(q.bytes);
            self.buffer.frames.fetch_sub(1, Ordering::AcqRel);
            if full {
                self.refused(&q.cmd);
                TrySendError::Full(q.cmd)
            } else {
                TrySendError::Disconnected(q.cmd)
            }
        })
    }

    /// Queues, waiting for room in the queue (not for the byte bound). Only
    /// for threads that may wait (shutdown, tests); never from a task that
    /// serves a camera or a client.
    pub fn send(&self, c: Command) -> Result<(), SendError<Command>> {
        if is_event(&c) {
            self.events.send(c)?;
            self.poke();
            return Ok(());
        }
        let bytes = video_bytes(&c);
        self.buffer.used.fetch_add(bytes, Ordering::AcqRel);
        self.buffer.frames.fetch_add(1, Ordering::AcqRel);
        self.frames
            .send(Queued {
                cmd: c,
                at: Instant::now(),
                bytes,
            })
            .map_err(|SendError(q)| {
                self.buffer.release(q.bytes);
                self.buffer.frames.fetch_sub(1, Ordering::AcqRel);
                SendError(q.cmd)
            })
    }

    /// The write buffer's bound and fill.
    pub fn buffer(&self) -> BufferFigures {
        self.buffer.figures()
    }

    /// A frame was refused for want of room: the first of an episode is
    /// told (a warning, and a `storage_slow` event on the event queue, which
    /// a full frame queue does not hold up).
    fn refused(&self, c: &Command) {
        let Command::Frame(f) = c else { return };
        if !self.buffer.refused() {
            return;
        }
        let b = self.buffer.figures();
        warn!(
            channel = f.channel,
            used_bytes = b.used_bytes,
            capacity_bytes = b.capacity_bytes,
            queued_frames = b.queued_frames,
            "the disk is not keeping up: the write buffer is full, dropping frames to the next key frame"
        );
        let _ = self.try_send(Command::Event {
            channel: Some(f.channel),
            kind: "storage_slow",
            time: f.time,
            details: serde_json::json!({
                "buffer_bytes": b.capacity_bytes,
                "used_bytes": b.used_bytes,
                "queued_frames": b.queued_frames,
            }),
        });
    }

    fn poke(&self) {
        if self.wake.swap(true, Ordering::AcqRel) {
            return;
        }
        let q = Queued {
            cmd: Command::Wake,
            at: Instant::now(),
            bytes: 0,
        };
        self.buffer.frames.fetch_add(1, Ordering::AcqRel);
        if self.frames.try_send(q).is_err() {
            // The frame queue is full, so the writer is busy and will look at
            // the events after this batch anyway; let a later event poke again.
            self.buffer.frames.fetch_sub(1, Ordering::AcqRel);
            self.wake.store(false, Ordering::Release);
        }
    }
}

impl WriterRx {
    fn took(&self, q: &Queued) {
        self.buffer.release(q.bytes);
        self.buffer.frames.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn recv_timeout(&self, wait: Duration) -> Result<Queued, RecvTimeoutError> {
        let q = self.frames.recv_timeout(wait)?;
        self.took(&q);
        Ok(q)
    }

    pub(super) fn try_recv(&self) -> Option<Queued> {
        let q = self.frames.try_recv().ok()?;
        self.took(&q);
        Some(q)
    }

    /// The writer has taken everything queued: a slow-disk episode, if one
    /// was on, is over.
    pub(super) fn drained(&self) {
        if self.buffer.frames.load(Ordering::Acquire) == 0 && self.buffer.slow.swap(false, Ordering::AcqRel) {
            info!("the write buffer has drained; recording has caught up with the disk");
        }
    }

    pub fn buffer(&self) -> BufferFigures {
        self.buffer.figures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Frame, SampleEntry};
    use crate::time::Time90k;

    fn ev() -> Command {
        Command::Event {
            channel: Some(1),
            kind: "camera_online",
            time: Time90k(0),
            details: serde_json::json!({}),
        }
    }

    fn frame(n: usize, key: bool) -> Command {
        Command::Frame(Frame {
            channel: 1,
            run: 1,
            time: Time90k(0),
            key,
            sample_entry: Arc::new(SampleEntry {
                data: vec![1],
                codec: "h264",
                width: 1,
                height: 1,
            }),
            data: vec![0; n].into(),
            capture_offset: None,
        })
    }

    #[test]
    fn an_event_flood_never_takes_a_frame_slot() {
        let (tx, rx) = channel(DEFAULT_WRITE_BUFFER);
        for _ in 0..EVENT_QUEUE_DEPTH {
            tx.try_send(ev()).unwrap();
        }
        assert!(matches!(tx.try_send(ev()), Err(TrySendError::Full(_))));
        // Exactly one wake was queued for all those events.
        let mut wakes = 0;
        while let Some(q) = rx.try_recv() {
            assert!(matches!(q.cmd, Command::Wake));
            wakes += 1;
        }
        assert_eq!(wakes, 1);
        // Frames still have the whole queue but for that one wake.
        for _ in 0..FRAME_QUEUE_DEPTH {
            tx.try_send(Command::EndRun { channel: 1 }).unwrap();
        }
        assert!(matches!(
            tx.try_send(Command::EndRun { channel: 1 }),
            Err(TrySendError::Full(_))
        ));
    }

    #[test]
    fn a_handled_wake_lets_the_next_event_poke_again() {
        let (tx, rx) = channel(DEFAULT_WRITE_BUFFER);
        tx.try_send(ev()).unwrap();
        assert!(matches!(rx.try_recv().map(|q| q.cmd), Some(Command::Wake)));
        tx.try_send(ev()).unwrap();
        assert!(rx.try_recv().is_none(), "no second wake while the first is unhandled");
        rx.wake.store(false, Ordering::Release);
        tx.try_send(ev()).unwrap();
        assert!(matches!(rx.try_recv().map(|q| q.cmd), Some(Command::Wake)));
        assert_eq!(rx.events.try_iter().count(), 3);
        assert_eq!(rx.buffer().queued_frames, 0);
    }

    #[test]
    fn the_byte_bound_refuses_frames_and_counts_one_episode() {
        let (tx, rx) = channel(1000);
        tx.try_send(frame(600, true)).unwrap();
        tx.try_send(frame(400, false)).unwrap();
        let b = tx.buffer();
        assert_eq!((b.used_bytes, b.queued_frames, b.capacity_bytes), (1000, 2, 1000));
        assert!(matches!(tx.try_send(frame(1, false)), Err(TrySendError::Full(_))));
        assert!(matches!(tx.try_send(frame(1, false)), Err(TrySendError::Full(_))));
        let b = tx.buffer();
        assert_eq!((b.dropped_frames, b.slow_episodes, b.slow), (2, 1, true));
        // One storage_slow event for the episode, on the event queue.
        let slow: Vec<_> = rx
            .events
            .try_iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Event {
                        kind: "storage_slow",
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(slow.len(), 1);
        // Taking one frame makes room, but the episode lasts until the buffer is empty.
        assert!(rx.try_recv().is_some());
        rx.drained();
        assert!(tx.buffer().slow);
        tx.try_send(frame(500, false)).unwrap();
        while let Some(q) = rx.try_recv() {
            let _ = q.at;
        }
        rx.drained();
        let b = tx.buffer();
        assert_eq!((b.used_bytes, b.queued_frames, b.slow), (0, 0, false));
        // A new episode is a new event.
        tx.try_send(frame(1000, true)).unwrap();
        assert!(tx.try_send(frame(1, true)).is_err());
        assert_eq!(tx.buffer().slow_episodes, 2);
    }

    #[test]
    fn a_frame_larger_than_the_buffer_passes_when_it_is_empty() {
        let (tx, rx) = channel(100);
        tx.try_send(frame(5000, true)).unwrap();
        assert!(tx.try_send(frame(10, false)).is_err());
        assert_eq!(rx.try_recv().map(|q| q.bytes), Some(5000));
        assert_eq!(tx.buffer().used_bytes, 0);
    }
}
