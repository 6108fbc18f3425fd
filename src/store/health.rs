//! What the writer reports about its own health, and what it holds back so
//! that nothing outside can starve it: the frame-to-durable latency histograms
//! (`GET /api/v1/store`, `bench attack`, `bench ingest`), fsync counters, a small reserve of file descriptors
//! for opening segments when the process runs out, and the classification of
//! I/O errors into what an operator should be told (a full disk is not the
//! same as running out of descriptors).
//!
//! Must never allocate per frame: the histogram is a fixed array.

use std::sync::{Arc, Mutex};

/// Upper bounds (milliseconds) of the latency histogram's buckets; the last
/// bucket holds everything slower. 50-ms steps around the flush interval
/// (a frame is durable at the first fdatasync after it), so a 10 % change
/// of a p99 near one second shows.
const BOUNDS_MS: [u32; 51] = [
    1, 2, 5, 10, 20, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 600, 650, 700, 750, 800, 850, 900, 950,
    1000, 1050, 1100, 1150, 1200, 1250, 1300, 1350, 1400, 1450, 1500, 1550, 1600, 1650, 1700, 1750, 1800, 1850, 1900,
    1950, 2000, 2500, 3000, 4000, 5000, 10_000, 30_000,
];

/// A fixed-size latency histogram whose counts can be subtracted (a
/// benchmark compares the histogram before and after an attack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BOUNDS_MS.len() + 1],
    max_ms: u32,
    /// Sum of every recorded latency (Prometheus's `_sum`).
    sum_ms: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BOUNDS_MS.len() + 1],
            max_ms: 0,
            sum_ms: 0,
        }
    }
}

impl Histogram {
    pub fn record_ms(&mut self, ms: u32) {
        let i = BOUNDS_MS.partition_point(|&b| b < ms);
        self.counts[i] += 1;
        self.max_ms = self.max_ms.max(ms);
        self.sum_ms = self.sum_ms.saturating_add(u64::from(ms));
    }

    /// Records a duration (the flush round's fdatasyncs).
    pub fn record(&mut self, d: std::time::Duration) {
        self.record_ms(d.as_millis().min(u128::from(u32::MAX)) as u32);
    }

    /// The largest latency recorded (of a difference: its bucket's bound).
    pub fn max_ms(&self) -> u32 {
        self.max_ms
    }

    /// The sum of the recorded latencies, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ms as f64 / 1000.0
    }

    /// `(upper bound in seconds, count)` per bucket, not cumulative, the last
    /// bound infinite: what a Prometheus histogram is encoded from.
    pub fn seconds_buckets(&self) -> Vec<(f64, u64)> {
        self.buckets()
            .into_iter()
            .map(|(b, c)| (b.map_or(f64::INFINITY, |ms| f64::from(ms) / 1000.0), c))
            .collect()
    }

    /// Records a latency given in 90 kHz ticks (negative counts as zero).
    pub fn record_90k(&mut self, ticks: i64) {
        let ms = (ticks.max(0) / 90).min(i64::from(u32::MAX)) as u32;
        self.record_ms(ms);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket holding the `q` quantile (0..=1), in ms:
    /// an upper estimate, never below the true value.
    pub fn quantile_ms(&self, q: f64) -> Option<u32> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BOUNDS_MS.get(i).copied().unwrap_or(self.max_ms).min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }

    /// `(upper bound ms, count)` per bucket; the last bound is `null` (slower).
    pub fn buckets(&self) -> Vec<(Option<u32>, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (BOUNDS_MS.get(i).copied(), c))
            .collect()
    }

    /// Reads back what `Serialize` wrote (`GET /api/v1/store`), for a client
    /// that compares two readings.
    pub fn from_json(v: &serde_json::Value) -> Option<Histogram> {
        let buckets = v.get("buckets")?.as_array()?;
        let mut h = Histogram::default();
        if buckets.len() != h.counts.len() {
            return None;
        }
        for (i, b) in buckets.iter().enumerate() {
            h.counts[i] = b.get(1)?.as_u64()?;
        }
        h.max_ms = v.get("max_ms")?.as_u64()?.try_into().ok()?;
        h.sum_ms = v.get("sum_ms").and_then(|s| s.as_u64()).unwrap_or(0);
        Some(h)
    }

    /// Counts recorded since `earlier` (a copy taken before).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut h = Histogram {
            max_ms: 0,
            sum_ms: self.sum_ms.saturating_sub(earlier.sum_ms),
            ..Default::default()
        };
        for (i, c) in h.counts.iter_mut().enumerate() {
            *c = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        // The maximum of a difference is not known; the highest non-empty bucket bounds it.
        h.max_ms = h
            .counts
            .iter()
            .rposition(|&c| c > 0)
            .map(|i| BOUNDS_MS.get(i).copied().unwrap_or(self.max_ms))
            .unwrap_or(0);
        h
    }
}

impl serde::Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("count", &self.count())?;
        m.serialize_entry("p50_ms", &self.quantile_ms(0.5))?;
        m.serialize_entry("p99_ms", &self.quantile_ms(0.99))?;
        m.serialize_entry("max_ms", &self.max_ms)?;
        m.serialize_entry("sum_ms", &self.sum_ms)?;
        m.serialize_entry("buckets", &self.buckets())?;
        m.end()
    }
}

/// Counters of the writer thread, shown by `GET /api/v1/store`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WriterStats {
    /// From a frame's capture (its wall-clock time) to the fdatasync that made it durable.
    pub durable: Histogram,
    /// From a frame's arrival (ingest handed it to the write buffer) to the
    /// fdatasync that made it durable: what the flush schedule bounds.
    pub arrival_durable: Histogram,
    /// How long each flush round's fdatasyncs took (all dirty segments,
    /// side by side): the disk's answer time as the writer sees it.
    pub flush: Histogram,
    /// How long the writer's index commits took (a round's progress and
    /// finished rows, events). Most are not synced on the writer thread
    /// (`store::checkpoint`); those that must be (events, retention's marks,
    /// an explicit sync) include SQLite's WAL fsync.
    pub commit: Histogram,
    /// How long each checkpoint of the index's log took on the
    /// `store-checkpoint` thread (its two fsyncs included).
    pub checkpoint: Histogram,
    /// fdatasyncs of segment files that succeeded (flush rounds).
    pub fsyncs: u64,
    /// Bytes those fdatasyncs made durable (`fsync_bytes / fsyncs` per fsync).
    pub fsync_bytes: u64,
    /// fdatasyncs that failed (each closed its segment at its durable point).
    pub fsync_errors: u64,
    /// Frames written and then lost to a failed fdatasync.
    pub frames_lost: u64,
    pub events_stored: u64,
    /// Events lost because the index could not be written for too long.
    pub events_dropped: u64,
    /// Times the writer had to use its descriptor reserve.
    pub fd_reserve_used: u64,
    /// Segments retention deleted (age, size caps, the free-space floor) and
    /// the bytes their files held.
    pub retention_segments: u64,
    pub retention_bytes: u64,
}

pub type SharedWriterStats = Arc<Mutex<WriterStats>>;

/// Why the writer could not write, as an operator should hear it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    DiskFull,
    /// The process (EMFILE) or the system (ENFILE) has no file descriptor left.
    NoDescriptors,
    Io,
}

impl Cause {
    pub fn of(e: &std::io::Error) -> Cause {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Cause::DiskFull,
            Some(libc::EMFILE) | Some(libc::ENFILE) => Cause::NoDescriptors,
            _ if e.kind() == std::io::ErrorKind::StorageFull => Cause::DiskFull,
            _ => Cause::Io,
        }
    }

    /// The event stored when a channel pauses for this cause.
    pub fn event_kind(self) -> &'static str {
        match self {
            Cause::DiskFull => "disk_full",
            Cause::NoDescriptors => "fd_exhausted",
            Cause::Io => "storage_error",
        }
    }

    /// What the resume's log line says is working again.
    pub fn resumed(self) -> &'static str {
        match self {
            Cause::DiskFull => "the disk has space again",
            Cause::NoDescriptors => "a file descriptor was free again",
            Cause::Io => "the disk accepts writes and fsyncs again",
        }
    }

    /// The channel's recording state while paused.
    pub fn state(self) -> super::RecordingState {
        match self {
            Cause::DiskFull => super::RecordingState::DiskFull,
            Cause::NoDescriptors => super::RecordingState::NoFileDescriptors,
            Cause::Io => super::RecordingState::StorageError,
        }
    }
}

/// Descriptors the writer opens at start and closes only when opening a
/// segment fails for want of descriptors, so that recording can go on while
/// something else (too many clients, a leak) holds the rest; re-taken when
/// descriptors are free again. The same trick servers use to answer accept()
/// under EMFILE.
pub struct FdReserve {
    held: Vec<std::fs::File>,
}

const RESERVE_FDS: usize = 8;

impl FdReserve {
    pub fn new() -> FdReserve {
        let mut r = FdReserve { held: Vec::new() };
        r.refill();
        r
    }

    /// Gives the descriptors back to the process; true if there were any.
    pub fn release(&mut self) -> bool {
        let had = !self.held.is_empty();
        self.held.clear();
        had
    }

    /// Takes descriptors back up to the reserve size, as far as there are free ones.
    pub fn refill(&mut self) {
        while self.held.len() < RESERVE_FDS {
            match std::fs::File::open("/dev/null") {
                Ok(f) => self.held.push(f),
                Err(_) => break,
            }
        }
    }

    pub fn is_full(&self) -> bool {
        self.held.len() == RESERVE_FDS
    }
}

impl Default for FdReserve {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_upper_bounds_of_their_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.99), None);
        for _ in 0..98 {
            h.record_ms(3);
        }
        h.record_ms(180);
        h.record_ms(4000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_ms(0.5), Some(5));
        assert_eq!(h.quantile_ms(0.98), Some(5));
        assert_eq!(h.quantile_ms(0.99), Some(200));
        assert_eq!(h.quantile_ms(1.0), Some(4000));
        h.record_ms(90_000);
        assert_eq!(
            h.quantile_ms(1.0),
            Some(90_000),
            "the overflow bucket reports the maximum"
        );
    }

    #[test]
    fn a_difference_counts_only_what_came_after() {
        let mut h = Histogram::default();
        h.record_ms(1);
        h.record_ms(700);
        let before = h.clone();
        h.record_ms(40);
        h.record_ms(45);
        let d = h.since(&before);
        assert_eq!(d.count(), 2);
        assert_eq!(d.quantile_ms(0.99), Some(50));
        assert_eq!(d.max_ms, 50);
    }

    #[test]
    fn a_histogram_survives_its_json() {
        let mut h = Histogram::default();
        for ms in [0, 3, 3, 250, 7000, 99_999] {
            h.record_ms(ms);
        }
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["p99_ms"], 99_999);
        assert_eq!(Histogram::from_json(&v), Some(h));
        assert_eq!(Histogram::from_json(&serde_json::json!({"buckets": []})), None);
    }

    #[test]
    fn ticks_convert_to_milliseconds() {
        let mut h = Histogram::default();
        h.record_90k(-5);
        h.record_90k(90_000);
        assert_eq!(h.buckets()[0], (Some(1), 1));
        assert_eq!(h.quantile_ms(1.0), Some(1000));
    }

    #[test]
    fn causes_are_told_apart() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert_eq!(Cause::of(&e(libc::ENOSPC)), Cause::DiskFull);
        assert_eq!(Cause::of(&e(libc::EMFILE)), Cause::NoDescriptors);
        assert_eq!(Cause::of(&e(libc::ENFILE)), Cause::NoDescriptors);
        assert_eq!(Cause::of(&e(libc::EIO)), Cause::Io);
        assert_eq!(Cause::NoDescriptors.event_kind(), "fd_exhausted");
    }

    #[test]
    fn the_reserve_gives_back_and_takes_again() {
        let mut r = FdReserve::new();
        assert!(r.is_full());
        assert!(r.release());
        assert!(!r.release());
        r.refill();
        assert!(r.is_full());
    }
}
