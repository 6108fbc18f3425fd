//! Recording runs: the fold that turns a channel's footage, in (start, id)
//! order, into the contiguous runs the recordings list shows, and how the
//! fold of one day's segments (a day summary, `run_days`) is spliced onto
//! the fold so far without reading that day's segments again.
//!
//! Pure: takes pieces of footage (a segment, or what is readable of a
//! damaged one) and day summaries, returns runs. A spliced summary gives
//! exactly the runs folding its segments one by one would (tested against
//! that on random footage); where it cannot — the run so far reaches past
//! the day's first piece, a large overlap — `append` says so and the caller
//! folds the day's segments instead. Must never read the index itself.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::db::SampleEntryRow;
use super::reader::{Overlap, RecordingRun};
use crate::time::Time90k;

/// Two pieces closer than this (a tenth of a second) count as one run.
pub const CONTIGUOUS: i64 = 9_000;

/// A day of 90-kHz ticks: the unit of `run_days`' summaries.
pub const DAY: i64 = 86_400 * 90_000;

/// A contiguous stretch of one segment's footage, as the fold takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub start: i64,
    pub end: i64,
    pub frames: u64,
    pub bytes: u64,
    /// The segment's sample entry: runs break where it changes.
    pub entry: i64,
    /// Footage gap fill merged: runs break where it meets ours.
    pub gapfill: bool,
    /// The segment is still being written.
    pub growing: bool,
}

/// A run as the fold keeps it (times in ticks, the entry as its id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub start: i64,
    pub end: i64,
    pub frames: u64,
    pub bytes: u64,
    /// Pieces folded into the run.
    pub segments: u32,
    pub growing: bool,
    /// (start, end) of stretches other footage of the run also covers.
    pub overlaps: Vec<(i64, i64)>,
    pub gapfill: bool,
    /// The sample entry of the run's first piece (its codec and size).
    pub entry: i64,
}

/// The fold's state: the runs so far, and what the next piece is judged
/// against. Serialized, a fold from the empty state over one day's segments
/// is that day's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFold {
    runs: Vec<Run>,
    /// The sample entry of the last piece folded.
    last_entry: Option<i64>,
    /// The end of the first piece folded: what `append` checks a summary's
    /// first run against.
    first_piece_end: Option<i64>,
}

impl RunFold {
    /// Folds the next piece in (start, id) order.
    pub fn push(&mut self, p: Piece) {
        self.first_piece_end.get_or_insert(p.end);
        match self.runs.last_mut() {
            Some(r) if p.start - r.end <= CONTIGUOUS && self.last_entry == Some(p.entry) && r.gapfill == p.gapfill => {
                // Less than this is the guessed duration of the previous
                // segment's last frame, not hidden footage.
                if r.end - p.start > CONTIGUOUS {
                    r.overlaps.push((p.start, r.end.min(p.end)));
                }
                r.end = r.end.max(p.end);
                r.frames += p.frames;
                r.bytes += p.bytes;
                r.segments += 1;
                r.growing |= p.growing;
            }
            _ => self.runs.push(Run {
                start: p.start,
                end: p.end,
                frames: p.frames,
                bytes: p.bytes,
                segments: 1,
                growing: p.growing,
                overlaps: Vec::new(),
                gapfill: p.gapfill,
                entry: p.entry,
            }),
        }
        self.last_entry = Some(p.entry);
    }

    /// Splices on `day`, the fold from the empty state of the pieces that
    /// follow, as if each had been pushed. False (and nothing changed) when
    /// that cannot be done exactly: the caller pushes the pieces instead.
    pub fn append(&mut self, day: &RunFold) -> bool {
        let Some(first) = day.runs.first() else {
            // No piece: folding nothing changes nothing.
            return true;
        };
        let Some(first_end) = day.first_piece_end else {
            return false;
        };
        match self.runs.last_mut() {
            Some(r)
                if first.start - r.end <= CONTIGUOUS
                    && self.last_entry == Some(first.entry)
                    && r.gapfill == first.gapfill =>
            {
                // The day's fold judged its later pieces against its own run
                // end; that is the joined run's end only if the run so far
                // ends within the day's first piece.
                if r.end > first_end {
                    return false;
                }
                if r.end - first.start > CONTIGUOUS {
                    r.overlaps.push((first.start, r.end));
                }
                r.end = r.end.max(first.end);
                r.frames += first.frames;
                r.bytes += first.bytes;
                r.segments += first.segments;
                r.growing |= first.growing;
                r.overlaps.extend_from_slice(&first.overlaps);
                self.runs.extend_from_slice(&day.runs[1..]);
            }
            _ => self.runs.extend_from_slice(&day.runs),
        }
        self.first_piece_end.get_or_insert(first_end);
        self.last_entry = day.last_entry;
        true
    }

    /// Whether any run holds a segment still being written.
    pub fn growing(&self) -> bool {
        self.runs.iter().any(|r| r.growing)
    }

    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The runs as the recordings list shows them.
    pub fn finish(self, entries: &HashMap<i64, SampleEntryRow>) -> Vec<RecordingRun> {
        self.runs
            .into_iter()
            .map(|r| {
                let e = entries.get(&r.entry);
                RecordingRun {
                    start: Time90k(r.start).to_rfc3339(),
                    end: Time90k(r.end).to_rfc3339(),
                    start_90k: Time90k(r.start),
                    end_90k: Time90k(r.end),
                    frames: r.frames,
                    bytes: r.bytes,
                    codec: e.map(|e| e.codec.clone()).unwrap_or_default(),
                    width: e.map(|e| e.width).unwrap_or(0),
                    height: e.map(|e| e.height).unwrap_or(0),
                    segments: r.segments,
                    growing: r.growing,
                    overlaps: r
                        .overlaps
                        .iter()
                        .map(|&(a, b)| Overlap {
                            start: Time90k(a).to_rfc3339(),
                            end: Time90k(b).to_rfc3339(),
                            seconds: crate::time::secs_of(b - a),
                        })
                        .collect(),
                    origin: r.gapfill.then_some(super::import::GAPFILL_ORIGIN),
                }
            })
            .collect()
    }
}

/// The days wholly inside [start, end) whose segments all overlap it: day
/// `d` covers starts in [d × DAY, (d + 1) × DAY), and only days after the
/// range's first tick qualify (a segment of no length yet starting exactly
/// at `start` does not overlap the range). Days before 1970-01-02 are never
/// summarized (SQLite's division rounds toward zero, like Rust's). `None`
/// when there are none.
pub fn interior_days(start: i64, end: i64) -> Option<(i64, i64)> {
    let first = (start.max(0) / DAY + 1).max(1);
    let last = end.div_euclid(DAY); // exclusive
    (first < last).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (no dependency needed for a test).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Pieces in (start) order over a few days: contiguous minutes, gaps,
    /// overlaps small and large (one reaching across midnight), entry
    /// changes, gap fill's footage, a growing last piece.
    fn footage(rng: &mut Rng) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut t = 3 * DAY - 40 * 5_400_000;
        let mut entry = 1;
        while t < 6 * DAY {
            let len = match rng.below(10) {
                0 => 90 * 5_400_000,
                1 => 10,
                _ => 5_400_000,
            };
            if rng.below(40) == 0 {
                entry = 1 + rng.below(2) as i64;
            }
            out.push(Piece {
                start: t,
                end: t + len,
                frames: 1 + rng.below(1500),
                bytes: 1 + rng.below(1 << 22),
                entry,
                gapfill: rng.below(30) == 0,
                growing: false,
            });
            t += match rng.below(12) {
                0 => len + 9_000 + rng.below(900_000) as i64,
                1 => len - 9_001 - rng.below(2_000_000) as i64,
                2 => len - rng.below(9_000) as i64,
                3 => len + rng.below(9_000) as i64,
                4 => len - 200 * 5_400_000,
                _ => len,
            };
            t = t.max(out.last().map(|p| p.start).unwrap_or(0));
        }
        out.sort_by_key(|p| p.start);
        if let Some(p) = out.last_mut() {
            p.growing = true;
        }
        out
    }

    fn fold_all(pieces: &[Piece]) -> RunFold {
        let mut f = RunFold::default();
        for p in pieces {
            f.push(*p);
        }
        f
    }

    #[test]
    fn spliced_days_give_the_runs_of_the_pieces_one_by_one() {
        let mut spliced_days = 0;
        let mut refused = 0;
        for seed in 1..200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let pieces = footage(&mut rng);
            let want = fold_all(&pieces);
            let (a, b) = interior_days(3 * DAY - 7, 6 * DAY).unwrap();
            let mut f = RunFold::default();
            for p in pieces.iter().filter(|p| p.start < a * DAY) {
                f.push(*p);
            }
            for d in a..b {
                let day: Vec<Piece> = pieces
                    .iter()
                    .filter(|p| p.start.div_euclid(DAY) == d)
                    .copied()
                    .collect();
                if f.append(&fold_all(&day)) {
                    spliced_days += 1;
                } else {
                    refused += 1;
                    for p in day {
                        f.push(p);
                    }
                }
            }
            for p in pieces.iter().filter(|p| p.start >= b * DAY) {
                f.push(*p);
            }
            assert_eq!(f.runs, want.runs, "seed {seed}");
            assert_eq!(f.last_entry, want.last_entry, "seed {seed}");
        }
        assert!(
            spliced_days > 300 && refused > 0,
            "{spliced_days} spliced, {refused} refused"
        );
    }

    #[test]
    fn a_day_joins_the_run_before_it_with_the_overlap_at_midnight() {
        let piece = |start, end, entry| Piece {
            start,
            end,
            frames: 10,
            bytes: 100,
            entry,
            gapfill: false,
            growing: false,
        };
        let mut day = RunFold::default();
        day.push(piece(DAY - 90_000, DAY + 5_400_000, 1));
        let mut f = RunFold::default();
        f.push(piece(0, DAY, 1));
        let mut want = f.clone();
        want.push(piece(DAY - 90_000, DAY + 5_400_000, 1));
        assert!(f.append(&day));
        assert_eq!(f, want);
        assert_eq!(f.runs[0].overlaps, vec![(DAY - 90_000, DAY)]);
        // A run so far reaching past the day's first piece: refused, untouched.
        let mut long = RunFold::default();
        long.push(piece(0, 2 * DAY, 1));
        let before = long.clone();
        assert!(!long.append(&day));
        assert_eq!(long, before);
        // Another sample entry, or no piece at all.
        let mut other = RunFold::default();
        other.push(piece(0, DAY, 2));
        assert!(other.append(&day));
        assert_eq!(other.runs.len(), 2);
        assert!(other.append(&RunFold::default()));
        assert_eq!(other.last_entry, Some(1));
    }

    #[test]
    fn interior_days_of_a_range() {
        assert_eq!(interior_days(10 * DAY, 12 * DAY), Some((11, 12)));
        assert_eq!(interior_days(10 * DAY - 1, 12 * DAY), Some((10, 12)));
        assert_eq!(interior_days(10 * DAY + 5, 12 * DAY - 1), None);
        assert_eq!(interior_days(-5 * DAY, 3 * DAY), Some((1, 3)));
        assert_eq!(interior_days(0, DAY), None);
        assert_eq!(interior_days(5, 2), None);
    }
}
