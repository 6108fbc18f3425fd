//! When the writer flushes, and the fdatasyncs of one flush run side by side.
//!
//! The promise is about footage, not about a timer: a power cut loses at most
//! `flush_interval` (plus the frame in flight) counted back from the cut to
//! the capture of the last durable frame. A flush every `flush_interval`
//! does not keep it — a frame that arrives just after a flush waits the whole
//! interval, then the fdatasync's own time, on top of ingest's latency. So
//! the deadline follows the *oldest unflushed frame*: it must be durable
//! within the interval of its arrival, so the flush starts when it has
//! waited the interval less what a flush recently took and a margin.
//!
//! Must never sleep or touch a file in the schedule (a pure function of the
//! instants it is given); the parallel fdatasync never holds a lock, and
//! never moves a segment's durable point (the writer does, on success only).

use std::fs::File;
use std::time::{Duration, Instant};

/// Held back besides the flush's own recent duration: the writer's batch
/// pause (5 ms), a frame's wait in the queue behind its batch and the commit
/// of the index rows after the fdatasyncs.
pub const MARGIN: Duration = Duration::from_millis(25);
/// What a flush is assumed to take before one has been timed.
const PRIOR: Duration = Duration::from_millis(100);
/// Flush durations remembered; the slowest of them is the estimate.
const RECENT: usize = 8;
/// fdatasyncs run at once at most (the filesystem merges them into one
/// journal commit, so a flush costs about one fsync's time, not one per file).
const FSYNC_THREADS: usize = 8;

/// The flush deadline's state: the interval and the last flushes' durations.
#[derive(Clone, Debug)]
pub struct FlushSchedule {
    interval: Duration,
    recent: [Duration; RECENT],
    next: usize,
}

impl FlushSchedule {
    pub fn new(interval: Duration) -> FlushSchedule {
        let mut recent = [Duration::ZERO; RECENT];
        // Until flushes have been timed, assume a slow one: the first
        // frames must keep the promise too.
        recent[0] = PRIOR.min(interval / 4);
        FlushSchedule {
            interval,
            recent,
            next: 1,
        }
    }

    /// Records how long a flush took (fdatasyncs and commit).
    pub fn record(&mut self, took: Duration) {
        self.recent[self.next] = took;
        self.next = (self.next + 1) % RECENT;
    }

    /// How early a flush starts before a frame's interval is up: the slowest
    /// recent flush plus the margin, at most half the interval (a disk slower
    /// than that cannot keep the promise; flushing back to back would not
    /// help it and would starve the frames).
    pub fn lead(&self) -> Duration {
        let slowest = self.recent.iter().max().copied().unwrap_or_default();
        (slowest + MARGIN).min(self.interval / 2)
    }

    /// When the next flush is due: when the oldest unflushed frame (arrived
    /// at `oldest`) has waited the interval less the lead, and in any case
    /// one interval after the last flush (events, stale triggers) — but never
    /// sooner than a quarter interval after the last one: a writer behind
    /// (a backlog queued during a slow fsync, whose frames are all overdue)
    /// catches up in batches instead of one fsync per frame.
    pub fn due(&self, oldest: Option<Instant>, last_flush: Instant) -> Instant {
        let tick = last_flush + self.interval;
        match oldest {
            Some(a) => tick
                .min(a + self.interval.saturating_sub(self.lead()))
                .max(last_flush + self.interval / 4),
            None => tick,
        }
    }
}

/// fdatasyncs `files` side by side (up to `FSYNC_THREADS` threads), each
/// result in its file's place. Falls back to doing them in turn when a
/// thread cannot be started.
pub fn sync_files(files: &[&File]) -> Vec<std::io::Result<()>> {
    sync_files_with(files, &|f: &File| f.sync_data())
}

/// `sync_files` with the sync itself given (`flush_round` injects slow or
/// failing ones in its tests).
pub(super) fn sync_files_with(
    files: &[&File],
    sync: &(dyn Fn(&File) -> std::io::Result<()> + Sync),
) -> Vec<std::io::Result<()>> {
    if files.len() <= 1 {
        return files.iter().map(|f| sync(f)).collect();
    }
    let per = files.len().div_ceil(FSYNC_THREADS);
    std::thread::scope(|s| {
        let mut parts = Vec::new();
        for chunk in files.chunks(per) {
            let work = move || chunk.iter().map(|f| sync(f)).collect::<Vec<_>>();
            match std::thread::Builder::new()
                .name("store-fsync".into())
                .spawn_scoped(s, work)
            {
                Ok(h) => parts.push(Err(h)),
                Err(_) => parts.push(Ok(work())),
            }
        }
        parts
            .into_iter()
            .zip(files.chunks(per))
            .flat_map(|(p, chunk)| match p {
                Ok(done) => done,
                Err(h) => h.join().unwrap_or_else(|_| {
                    chunk
                        .iter()
                        .map(|_| Err(std::io::Error::other("the fsync thread failed")))
                        .collect()
                }),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_oldest_frame_sets_the_deadline() {
        let t0 = Instant::now();
        let mut s = FlushSchedule::new(S);
        assert_eq!(s.lead(), PRIOR + MARGIN, "an untimed flush is assumed slow");
        for _ in 0..8 {
            s.record(Duration::ZERO);
        }
        // Nothing waiting: one interval after the last flush.
        assert_eq!(s.due(None, t0), t0 + S);
        // A frame that arrived 300 ms after the flush is flushed one interval
        // after its arrival, less the margin.
        let a = t0 + Duration::from_millis(300);
        assert_eq!(s.due(Some(a), t0), t0 + S);
        let a = t0 + Duration::from_millis(10);
        assert_eq!(s.due(Some(a), t0), a + S - MARGIN);
        // A frame older than the last flush (it arrived while that flush ran)
        // pulls the deadline before the tick.
        let a = t0 - Duration::from_millis(200);
        assert_eq!(s.due(Some(a), t0), a + S - MARGIN);
        // Slow flushes move it earlier by the slowest of the recent ones.
        s.record(Duration::from_millis(120));
        s.record(Duration::from_millis(40));
        assert_eq!(s.lead(), Duration::from_millis(145));
        assert_eq!(s.due(Some(a), t0), a + S - Duration::from_millis(145));
        // ... and forget it after eight faster ones.
        for _ in 0..8 {
            s.record(Duration::from_millis(5));
        }
        assert_eq!(s.lead(), Duration::from_millis(30));
    }

    #[test]
    fn a_disk_slower_than_half_the_interval_does_not_make_flushes_back_to_back() {
        let t0 = Instant::now();
        let mut s = FlushSchedule::new(S);
        s.record(Duration::from_secs(10));
        assert_eq!(s.lead(), S / 2);
        assert_eq!(s.due(Some(t0), t0), t0 + S / 2);
    }

    #[test]
    fn a_backlog_is_flushed_in_batches_not_frame_by_frame() {
        // Frames queued for 10 s behind a slow fsync are all overdue: the
        // next flush still waits a quarter interval after the last one.
        let t0 = Instant::now();
        let s = FlushSchedule::new(S);
        let overdue = t0 - Duration::from_secs(10);
        assert_eq!(s.due(Some(overdue), t0), t0 + S / 4);
        assert_eq!(s.due(None, t0), t0 + S);
    }

    #[test]
    fn every_frame_of_a_steady_stream_is_durable_within_the_interval() {
        // 25 fps arriving for 10 s; the writer flushes when due, each flush
        // taking 30 ms; check every frame's arrival-to-durable wait.
        let t0 = Instant::now();
        let mut s = FlushSchedule::new(S);
        let period = Duration::from_millis(40);
        let took = Duration::from_millis(30);
        let mut last_flush = t0;
        let mut oldest: Option<Instant> = None;
        let mut waiting = Vec::new();
        let mut worst = Duration::ZERO;
        let mut flushes = 0;
        for i in 0..250u32 {
            let now = t0 + period * i;
            // Flushes due before this frame arrives.
            while s.due(oldest, last_flush) <= now {
                let at = s.due(oldest, last_flush);
                let done = at + took;
                for a in waiting.drain(..) {
                    worst = worst.max(done - a);
                }
                s.record(took);
                last_flush = done;
                oldest = None;
                flushes += 1;
            }
            waiting.push(now);
            oldest.get_or_insert(now);
        }
        assert!(worst <= S, "a frame waited {worst:?}");
        assert!(flushes <= 12, "{flushes} flushes in 10 s");
    }

    #[test]
    fn files_are_synced_side_by_side_each_with_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..20)
            .map(|i| File::create(dir.path().join(format!("{i}"))).unwrap())
            .collect();
        let refs: Vec<&File> = files.iter().collect();
        let r = sync_files(&refs);
        assert_eq!(r.len(), 20);
        assert!(r.iter().all(|r| r.is_ok()));
        // A read-only descriptor of a pipe cannot be synced: its error lands in its place.
        let (rd, _wr) = std::io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(rd));
        let mut refs: Vec<&File> = files.iter().collect();
        refs.insert(13, &pipe);
        let r = sync_files(&refs);
        assert_eq!(r.len(), 21);
        assert!(r[13].is_err());
        assert_eq!(r.iter().filter(|r| r.is_err()).count(), 1);
    }
}
