//! When the writer writes its segments' queued frames: a queue is written
//! when it is full (as a frame is queued), when its oldest frame has waited
//! `write_delay`, before every flush's fdatasyncs, and when its segment
//! closes (`OpenSegment::finish`).
//!
//! Owns only that schedule and what a failed write does to the channel (it
//! pauses, as a failed frame write always did). Must never leave a frame
//! queued past a flush: a flush that synced a file while frames of it were
//! still queued would claim them durable.

use std::time::Instant;

use tracing::error;

use super::open_segment::WriteFailed;
use super::writer::Writer;

impl Writer {
    /// Writes the queues whose oldest frame has waited `write_delay` by `now`.
    pub(super) fn write_out_due(&mut self, now: Instant) {
        match self.oldest_queued {
            Some(q) if now >= q + self.write_delay => {}
            _ => return,
        }
        let delay = self.write_delay;
        self.write_out_where(|o| o.write_due(now, delay));
    }

    /// Writes every queue (before a flush).
    pub(super) fn write_out_all(&mut self) {
        if self.oldest_queued.is_some() {
            self.write_out_where(|_| true);
        }
    }

    fn write_out_where(&mut self, due: impl Fn(&super::open_segment::OpenSegment) -> bool) {
        let mut failed = Vec::new();
        let mut oldest: Option<Instant> = None;
        for (&ch, st) in self.channels.iter_mut() {
            let Some(o) = st.open.as_mut() else { continue };
            if o.queued_since().is_some() && due(o) {
                if let Err(w) = o.write_out() {
                    failed.push((ch, w));
                }
            }
            if let Some(q) = o.queued_since() {
                oldest = Some(oldest.map_or(q, |a| a.min(q)));
            }
        }
        self.oldest_queued = oldest;
        for (ch, w) in failed {
            self.write_failed(ch, w);
        }
    }

    /// A write of queued frames failed: the segment was rolled back to what
    /// came before them (`OpenSegment::write_out`); count them lost and
    /// pause the channel, which closes the segment at its last written frame.
    pub(super) fn write_failed(&mut self, channel: u32, w: WriteFailed) {
        self.count_unwritten(channel, w.frames);
        self.pause(channel, "cannot write frames", w.error, true);
    }

    /// Counts queued frames that never reached their file.
    pub(super) fn count_unwritten(&mut self, channel: u32, frames: u32) {
        if frames == 0 {
            return;
        }
        error!(channel, frames, "frames lost: their write failed");
        if let Ok(mut s) = self.stats.lock() {
            s.frames_lost += u64::from(frames);
        }
        self.set_status(channel, |s| s.frames_lost += u64::from(frames));
    }
}
