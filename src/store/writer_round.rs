//! The writer's side of a flush round (`flush_round`): what it captures at
//! a round's start, what it does with the answer, the segments it closed
//! that wait for a round before their rows are finished, and the commit of
//! progress, finished rows and events in one transaction.
//!
//! Owns the order the power-cut promise rests on: a row claims only what a
//! round's fdatasync proved (the captured progress, never what was written
//! during the round); a closed segment's row is finished only once every
//! byte of it, and its name, is durable; a segment whose fsync failed is
//! closed at its last durable frame and never synced again. Must never
//! start a round while one is in flight, never truncate, finish or unlink a
//! segment a round in flight holds (it is settled only with no round in
//! flight), and never block on an fsync except when asked to (`sync_all`).

use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::db::{self, Progress};
use super::flush_round::{Answer, RoundFile};
use super::open_segment::{Capture, Completion, OpenSegment};
use super::writer::Writer;

/// How often the writer looks for a round's answer while it has nothing
/// else to do.
pub(super) const ROUND_POLL: Duration = Duration::from_millis(5);

/// The round in flight: what it captured of each segment, in the order of
/// the files handed to it.
pub(super) struct Round {
    captured: Vec<(u32, Capture)>,
    started: Instant,
}

impl Round {
    pub(super) fn holds(&self, id: i64) -> bool {
        self.captured.iter().any(|(_, c)| c.id == id)
    }
}

impl Writer {
    /// Whether a round should start now.
    pub(super) fn flush_due(&self, now: Instant) -> bool {
        !self.flusher.in_flight() && now >= self.schedule.due(self.oldest_unflushed, self.last_flush)
    }

    /// When the writer must look again: the next round's deadline, or soon
    /// while one is in flight (its answer is awaited).
    pub(super) fn next_flush(&self) -> Instant {
        if self.flusher.in_flight() {
            Instant::now() + ROUND_POLL
        } else {
            self.schedule.due(self.oldest_unflushed, self.last_flush)
        }
    }

    /// Handles the round's answer if it has come.
    pub(super) fn poll_round(&mut self) {
        if let Some(a) = self.flusher.answer(Duration::ZERO) {
            self.round_answered(a);
        }
    }

    /// Makes everything written so far durable and committed; blocks (tests,
    /// shutdown, exports of the last second).
    pub(super) fn sync_all(&mut self) {
        if let Some(a) = self.flusher.wait() {
            self.round_answered(a);
        }
        self.start_round();
        if let Some(a) = self.flusher.wait() {
            self.round_answered(a);
        }
        // The writer's commits are not synced (`store::checkpoint`): sync
        // the log itself, which makes every commit in it durable. (A commit
        // no longer in it was copied into the database file by a checkpoint
        // that synced the file before SQLite let the log restart.)
        let log = self.cfg.dir.join("index.db-wal");
        match std::fs::File::open(&log).and_then(|f| f.sync_data()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(file = %log.display(), "cannot make the index durable: {e}"),
        }
    }

    /// Writes every queue, captures every segment with bytes not yet
    /// durable, and hands their files to the round thread. With nothing to
    /// sync it settles closed segments and commits at once.
    pub(super) fn start_round(&mut self) {
        if self.flusher.in_flight() {
            return;
        }
        if !self.fd_reserve.is_full() {
            self.fd_reserve.refill();
        }
        self.oldest_unflushed = None;
        // Everything queued goes to the files before their fdatasyncs.
        self.write_out_all();
        let started = Instant::now();
        let mut files = Vec::new();
        let mut captured = Vec::new();
        let mut take = |ch: u32, o: &mut OpenSegment| {
            let c = o.capture();
            files.push(RoundFile {
                file: o.shared_file(),
                dir: c.dir().map(|d| d.to_path_buf()),
            });
            captured.push((ch, c));
        };
        for (&ch, st) in self.channels.iter_mut() {
            if let Some(o) = st.open.as_mut().filter(|o| o.dirty) {
                take(ch, o);
            }
        }
        for (ch, o) in self.closing.iter_mut() {
            if o.frames() > 0 && !o.all_durable() {
                take(*ch, o);
            }
        }
        if captured.is_empty() {
            let done = self.settle_closing();
            self.commit(Vec::new(), done);
            self.last_flush = Instant::now();
            self.schedule.record(self.last_flush - started);
            return;
        }
        match self.flusher.start(files) {
            Ok(()) => self.round = Some(Round { captured, started }),
            // Cannot happen (checked above); the segments stay dirty for the next.
            Err(e) => warn!("{e}"),
        }
    }

    /// A round answered: captured progress becomes durable (and is
    /// committed), failed segments are closed at their durable point, and
    /// closed segments now wholly durable are finished.
    pub(super) fn round_answered(&mut self, a: Answer) {
        let Some(round) = self.round.take() else { return };
        if let Ok(mut s) = self.stats.lock() {
            s.flush.record(a.took);
        }
        let mut updates = Vec::new();
        let mut written = Vec::new();
        let (mut fsyncs, mut bytes) = (0, 0);
        let mut failed = Vec::new();
        for ((ch, cap), r) in round.captured.into_iter().zip(a.results) {
            let Some(o) = self.segment_mut(ch, cap.id) else {
                continue;
            };
            match r {
                Ok(()) => {
                    let (b, durable) = o.captured_durable(&cap);
                    bytes += b;
                    fsyncs += 1;
                    written.extend(durable);
                    updates.push((cap.id, cap.progress(), o.unstored_capture_offset()));
                }
                Err(e) => failed.push((ch, cap.id, e)),
            }
        }
        for (ch, id, e) in failed {
            let Some((o, was_open)) = self.take_segment(ch, id) else {
                continue;
            };
            // Frames appended after the capture are lost with the rest:
            // the durable point is still the one before this round.
            let lost = o.close_durable(&self.conn, &self.cfg.dir, ch, &e);
            let never_durable = lost.kept == 0;
            self.fsync_failed(ch, id, lost, &format!("fsync failed: {e}"));
            if was_open {
                if never_durable {
                    // Not even the new segment's header became durable: the
                    // disk is failing, not blinking. Pause and probe it each
                    // second (already announced by `fsync_failed`).
                    self.pause(ch, "cannot make a new segment durable", e, false);
                }
                self.segment_closed(ch);
            }
        }
        if fsyncs > 0 {
            self.count_durable(fsyncs, bytes, written);
        }
        let done = self.settle_closing();
        let offsets: Vec<i64> = updates.iter().filter(|u| u.2.is_some()).map(|u| u.0).collect();
        if self.commit(updates, done) && !offsets.is_empty() {
            for o in self.channels.values_mut().filter_map(|st| st.open.as_mut()) {
                if offsets.contains(&o.id) {
                    o.capture_offset_stored = true;
                }
            }
        }
        self.last_flush = Instant::now();
        self.schedule.record(self.last_flush - round.started);
    }

    /// Keeps a closed segment until a round has made it durable.
    pub(super) fn closed_pending(&mut self, channel: u32, o: OpenSegment) {
        self.closing.push((channel, o));
    }

    /// Finishes the closed segments no round holds: one that never held a
    /// frame is removed; one wholly durable gets its finished row (returned,
    /// for the round's commit). The rest wait for the next round.
    fn settle_closing(&mut self) -> Vec<Completion> {
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for (ch, o) in std::mem::take(&mut self.closing) {
            if self.round.as_ref().is_some_and(|r| r.holds(o.id)) {
                keep.push((ch, o));
            } else if o.frames() == 0 {
                o.discard(&self.conn, &self.cfg.dir, ch);
            } else if o.all_durable() {
                done.push(o.completion());
            } else {
                keep.push((ch, o));
            }
        }
        self.closing = keep;
        done
    }

    /// The live or closed segment `id` of `channel`.
    fn segment_mut(&mut self, channel: u32, id: i64) -> Option<&mut OpenSegment> {
        let open = self
            .channels
            .get(&channel)
            .and_then(|st| st.open.as_ref())
            .is_some_and(|o| o.id == id);
        if open {
            return self.channels.get_mut(&channel).and_then(|st| st.open.as_mut());
        }
        self.closing.iter_mut().find(|(_, o)| o.id == id).map(|(_, o)| o)
    }

    /// Removes segment `id` from the writer; says whether it was live.
    fn take_segment(&mut self, channel: u32, id: i64) -> Option<(OpenSegment, bool)> {
        if let Some(st) = self.channels.get_mut(&channel) {
            if st.open.as_ref().is_some_and(|o| o.id == id) {
                return st.open.take().map(|o| (o, true));
            }
        }
        let i = self.closing.iter().position(|(_, o)| o.id == id)?;
        Some((self.closing.swap_remove(i).1, false))
    }

    /// Commits segment progress (with a capture offset not yet stored),
    /// finished segments and queued events in one transaction, then
    /// announces the events. Returns whether the commit succeeded.
    pub(super) fn commit(&mut self, updates: Vec<(i64, Progress, Option<i64>)>, done: Vec<Completion>) -> bool {
        if updates.is_empty() && done.is_empty() && self.event_log.is_empty() {
            return true;
        }
        let started = Instant::now();
        let transaction = || {
            let tx = self.conn.unchecked_transaction()?;
            for (id, p, offset) in &updates {
                db::update_writing(&tx, *id, p)?;
                if let Some(o) = offset {
                    db::set_capture_offset(&tx, *id, *o)?;
                }
            }
            for c in &done {
                complete(&tx, c)?;
            }
            db::apply_event_ops(&tx, self.event_log.ops())?;
            tx.commit()
        };
        // Progress and finished rows need no sync here: the round already
        // made their frames durable, and repair rebuilds a row a power cut
        // rolled back from its file (`store::checkpoint`). Events are
        // announced once committed, so they are synced first.
        let r = if self.event_log.is_empty() {
            transaction()
        } else {
            db::synced(&self.conn, transaction)
        };
        if let Ok(mut s) = self.stats.lock() {
            s.commit.record(started.elapsed());
        }
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
                true
            }
            // Progress rows are rewritten at the next round; queued events
            // stay queued; finished rows are tried one by one.
            Err(e) => {
                warn!("could not record flush progress: {e}");
                for c in &done {
                    if let Err(e) = complete(&self.conn, c) {
                        // The row stays `writing`; startup repair rebuilds it from the file.
                        error!(segment = c.id, "could not commit finished segment: {e}");
                    }
                }
                false
            }
        }
    }
}

/// Marks a durable segment's row complete with its frame index and digest.
fn complete(conn: &rusqlite::Connection, c: &Completion) -> rusqlite::Result<()> {
    db::complete_segment(conn, c.id, &c.progress, &c.index, Some(&c.hash))?;
    if let Some(o) = c.capture_offset {
        db::set_capture_offset(conn, c.id, o)?;
    }
    Ok(())
}
