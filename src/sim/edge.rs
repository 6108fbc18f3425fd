//! The simulated camera's edge storage (its "SD card"): a ring of the last
//! SECONDS of frames the camera clock produced, recorded whether or not anyone
//! watches and whether or not the link is up, and the replay plan for a
//! requested clock range.
//!
//! Owns metadata only — which frame of the pre-encoded loop was sent as frame
//! `n`, when it was captured, whether it was a key frame — so an hour of
//! footage costs a few MB, not a copy of the payloads. The SEI stamp is
//! rebuilt on replay from the same fields it had live. Pure: never reads a
//! clock, never touches a socket.

use std::collections::VecDeque;

use crate::replay::ReplayFlags;

/// Longest edge storage the simulated camera keeps (`--edge-storage`).
pub const MAX_SECONDS: u32 = 3600;

/// Which pre-encoded loop a recorded frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The camera's loop (or its scripted scene).
    Main,
    /// The loop switched to after `--switch-after-s`.
    Switched,
}

/// One recorded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeFrame {
    /// The camera's frame number: its SEI `seq`.
    pub n: u64,
    pub capture_unix_micros: i64,
    pub source: Source,
    /// Index into the source loop's frames.
    pub index: u32,
    pub key: bool,
}

/// A frame of a replay plan with the flags it goes out with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedFrame {
    pub frame: EdgeFrame,
    pub flags: ReplayFlags,
}

/// Why a range cannot be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Nothing recorded at all yet.
    Empty,
    /// The range lies wholly outside what is recorded: `[first, last]`
    /// capture times (Unix µs) of what is.
    Outside { first: i64, last: i64 },
}

#[derive(Debug)]
pub struct EdgeRing {
    capacity: usize,
    frames: VecDeque<EdgeFrame>,
}

impl EdgeRing {
    /// A ring for `seconds` of video at `fps` (at least one frame).
    pub fn new(seconds: u32, fps: u32) -> EdgeRing {
        let capacity = (seconds.min(MAX_SECONDS) as usize * fps as usize).max(1);
        EdgeRing {
            capacity,
            frames: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    pub fn push(&mut self, f: EdgeFrame) {
        if self.frames.len() == self.capacity {
            self.frames.pop_front();
        }
        self.frames.push_back(f);
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Capture times (Unix µs) of the oldest and newest recorded frame.
    pub fn available(&self) -> Option<(i64, i64)> {
        Some((
            self.frames.front()?.capture_unix_micros,
            self.frames.back()?.capture_unix_micros,
        ))
    }

    /// The frames to send for `[start, end)` (Unix µs; `None` = open): from
    /// the key frame at or before `start` (or the first key frame recorded,
    /// when the ring begins later) to the last frame captured before `end`.
    /// Frame numbers that do not follow on each other mark a hole: E on the
    /// frame before it, D on the frame after; T on the last frame.
    pub fn plan(&self, start: Option<i64>, end: Option<i64>) -> Result<Vec<PlannedFrame>, PlanError> {
        let (first, last) = self.available().ok_or(PlanError::Empty)?;
        let outside = PlanError::Outside { first, last };
        // Frames before `end` (exclusive) …
        let stop = match end {
            Some(e) => self.frames.partition_point(|f| f.capture_unix_micros < e),
            None => self.frames.len(),
        };
        // … from the last frame at or before `start` on.
        let from = match start {
            Some(s) => self
                .frames
                .partition_point(|f| f.capture_unix_micros <= s)
                .saturating_sub(1),
            None => 0,
        };
        let empty_range = matches!((start, end), (Some(s), Some(e)) if e <= s);
        if stop == 0 || empty_range || start.is_some_and(|s| s > last) {
            return Err(outside);
        }
        // Back to the key frame at or before it; forward to the first key
        // frame when the ring starts inside a GOP.
        let key_from = (0..=from)
            .rev()
            .find(|&i| self.frames[i].key)
            .or_else(|| (from..stop).find(|&i| self.frames[i].key));
        let Some(key_from) = key_from.filter(|&k| k < stop) else {
            return Err(outside);
        };
        let picked: Vec<EdgeFrame> = self.frames.range(key_from..stop).copied().collect();
        let mut out: Vec<PlannedFrame> = Vec::with_capacity(picked.len());
        for (i, f) in picked.iter().enumerate() {
            let hole_before = i > 0 && picked[i - 1].n + 1 != f.n;
            let hole_after = picked.get(i + 1).is_some_and(|next| f.n + 1 != next.n);
            out.push(PlannedFrame {
                frame: *f,
                flags: ReplayFlags {
                    clean_point: f.key,
                    end_of_run: hole_after,
                    discontinuity: hole_before,
                    terminal: i + 1 == picked.len(),
                },
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 fps, GOP of 5 frames, frame n captured at n × 100 ms.
    fn frame(n: u64) -> EdgeFrame {
        EdgeFrame {
            n,
            capture_unix_micros: n as i64 * 100_000,
            source: Source::Main,
            index: (n % 10) as u32,
            key: n % 5 == 0,
        }
    }

    fn ring(ns: impl IntoIterator<Item = u64>) -> EdgeRing {
        let mut r = EdgeRing::new(100, 10);
        for n in ns {
            r.push(frame(n));
        }
        r
    }

    fn ns(p: &[PlannedFrame]) -> Vec<u64> {
        p.iter().map(|f| f.frame.n).collect()
    }

    #[test]
    fn bounded_to_its_seconds() {
        let mut r = EdgeRing::new(2, 10);
        for n in 0..50 {
            r.push(frame(n));
        }
        assert_eq!(r.len(), 20);
        assert_eq!(r.available(), Some((30 * 100_000, 49 * 100_000)));
        assert_eq!(EdgeRing::new(MAX_SECONDS * 10, 1).capacity, MAX_SECONDS as usize);
    }

    #[test]
    fn plan_starts_at_the_key_frame_at_or_before_start() {
        let r = ring(0..100);
        // Start at frame 12 (key at 10), end before frame 20.
        let p = r.plan(Some(1_200_000), Some(2_000_000)).unwrap();
        assert_eq!(ns(&p), (10..20).collect::<Vec<_>>());
        assert!(p[0].flags.clean_point && !p[1].flags.clean_point);
        assert!(p[5].flags.clean_point);
        assert!(p.last().unwrap().flags.terminal);
        assert_eq!(p.iter().filter(|f| f.flags.terminal).count(), 1);
        assert!(p.iter().all(|f| !f.flags.discontinuity && !f.flags.end_of_run));
        // Start exactly on a key frame; start between frames.
        assert_eq!(ns(&r.plan(Some(1_000_000), Some(1_100_001)).unwrap()), vec![10, 11]);
        assert_eq!(ns(&r.plan(Some(1_050_000), Some(1_100_000)).unwrap()), vec![10]);
        // Open ends.
        assert_eq!(r.plan(None, Some(300_000)).map(|p| ns(&p)), Ok(vec![0, 1, 2]));
        assert_eq!(
            ns(&r.plan(Some(9_700_000), None).unwrap()),
            (95..100).collect::<Vec<_>>()
        );
    }

    #[test]
    fn partly_outside_returns_what_is_there() {
        let r = ring(23..60);
        // Before the ring: starts at its first key frame (25).
        let p = r.plan(Some(0), Some(3_000_000)).unwrap();
        assert_eq!(ns(&p), (25..30).collect::<Vec<_>>());
        // After the ring: up to its last frame.
        let p = r.plan(Some(5_500_000), Some(9_000_000)).unwrap();
        assert_eq!(ns(&p), (55..60).collect::<Vec<_>>());
    }

    #[test]
    fn wholly_outside_or_empty_is_an_error() {
        let r = ring(20..60);
        let outside = PlanError::Outside {
            first: 2_000_000,
            last: 5_900_000,
        };
        assert_eq!(r.plan(Some(0), Some(1_000_000)), Err(outside));
        assert_eq!(r.plan(Some(0), Some(2_000_000)), Err(outside));
        assert_eq!(r.plan(Some(6_000_000), Some(7_000_000)), Err(outside));
        assert_eq!(ring([]).plan(None, None), Err(PlanError::Empty));
        // An empty or reversed range.
        assert_eq!(r.plan(Some(3_000_000), Some(3_000_000)), Err(outside));
        assert_eq!(r.plan(Some(3_000_000), Some(2_500_000)), Err(outside));
        // Inside the ring but with no key frame to start from.
        let r = ring(21..24);
        assert!(matches!(r.plan(Some(2_100_000), None), Err(PlanError::Outside { .. })));
    }

    #[test]
    fn holes_get_e_and_d() {
        let r = ring((0..13).chain(20..30));
        let p = r.plan(Some(0), Some(3_000_000)).unwrap();
        let at = |n: u64| p.iter().find(|f| f.frame.n == n).unwrap().flags;
        assert!(at(12).end_of_run && !at(12).discontinuity);
        assert!(at(20).discontinuity && !at(20).end_of_run && at(20).clean_point);
        assert_eq!(
            p.iter().filter(|f| f.flags.end_of_run || f.flags.discontinuity).count(),
            2
        );
        assert!(at(29).terminal);
    }
}
