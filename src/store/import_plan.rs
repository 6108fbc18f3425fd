//! What a merge keeps (`store::import`'s pure core): which imported frames
//! this NVR already holds, judged frame by frame against our own footage, the
//! runs of the rest that start where they decode, and the move of a peer's
//! frames into our time by the camera's clock.
//!
//! Our own footage is described by its frames' *start times* (`Held`), never
//! by a segment's end: a segment's last frame has no successor to measure its
//! duration by, so the writer gives it the previous interval, or 1 tick when
//! it is the segment's only frame. Judging an imported frame's middle against
//! such an end kept a second copy of that lone frame (the lab's duplicates).
//! An imported frame is ours when it starts within half a frame interval of a
//! frame we hold, which tolerates any offset error below that half interval.
//!
//! Pure: no index, no files, no clock. Must never keep a frame we hold nor
//! drop a decodable one we lack.

use std::ops::Range;

use crate::time::Time90k;

/// One imported frame: time, duration, key flag.
pub type FrameSpan = (Time90k, u32, bool);

/// The largest capture offset believed, either way (a day): anything beyond
/// is a camera or NVR clock that was never set, not a skew to correct.
pub const MAX_CAPTURE_OFFSET: i64 = 24 * 3600 * 90_000;

/// The origin gap fill merges under (`crate::gapfill`): footage replayed
/// from the camera's own recording, the same stream this NVR recorded.
pub const GAPFILL_ORIGIN: &str = "gapfill";

/// How far to move a peer's frames into our time: a frame the sender stamped
/// `t` was captured at `t + sender`, which is `t + sender − ours` by our
/// clock. Unknown on either side (or beyond belief): 0.
pub fn capture_shift(sender: Option<i64>, ours: Option<i64>) -> i64 {
    match (sender, ours) {
        (Some(s), Some(o)) if s.abs() <= MAX_CAPTURE_OFFSET && o.abs() <= MAX_CAPTURE_OFFSET => s - o,
        _ => 0,
    }
}

/// The capture offset the merged runs are stored with: ours when known
/// (the frames were moved into our time, or neither side's skew is known),
/// else the sender's (their times are still the sender's), else unknown.
pub fn kept_capture_offset(sender: Option<i64>, ours: Option<i64>) -> Option<i64> {
    let believable = |o: Option<i64>| o.filter(|o| o.abs() <= MAX_CAPTURE_OFFSET);
    believable(ours).or(believable(sender))
}

/// Moves every frame by `shift` ticks.
pub fn retime(frames: &mut [FrameSpan], shift: i64) {
    for f in frames {
        f.0 = f.0 + shift;
    }
}

/// A stretch of footage this NVR holds (one segment), by its frames' starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Start of its first frame.
    pub first: Time90k,
    /// Start of its last frame; `None` for a segment being written (its row
    /// lags the file by up to a flush): it holds everything from `first` on.
    pub last: Option<Time90k>,
}

impl Held {
    /// A complete segment [start, end) of `frames` frames whose last frame
    /// lasts `last_duration` ticks (from its frame index; `None` when the
    /// index is unreadable: the segment's mean interval stands in).
    pub fn complete(start: Time90k, end: Time90k, frames: u32, last_duration: Option<u32>) -> Held {
        let d = match last_duration {
            Some(d) => i64::from(d),
            None => (end - start) / i64::from(frames.max(1)),
        };
        Held {
            first: start,
            last: Some(Time90k((end.0 - d).clamp(start.0, end.0.max(start.0)))),
        }
    }

    /// A segment still being written from `start`.
    pub fn writing(start: Time90k) -> Held {
        Held {
            first: start,
            last: None,
        }
    }

    /// Whether a frame starting at `t` is one of ours, give or take `half`
    /// (half the imported stream's frame interval there).
    fn holds(&self, t: Time90k, half: i64) -> bool {
        self.first.0 - half <= t.0 && self.last.is_none_or(|l| t.0 < l.0 + half)
    }
}

/// Half the interval around each imported frame: the smaller of its gaps to
/// its neighbours (a hole on one side must not widen it), or half its own
/// duration when it has no neighbour. Times are the imported frames' own, so
/// a constant shift (an offset error) leaves these unchanged.
fn half_intervals(frames: &[FrameSpan]) -> Vec<i64> {
    (0..frames.len())
        .map(|i| {
            let before = i.checked_sub(1).map(|p| frames[i].0 - frames[p].0);
            let after = frames.get(i + 1).map(|n| n.0 - frames[i].0);
            let gap = match (before, after) {
                (Some(b), Some(a)) => b.min(a),
                (Some(g), None) | (None, Some(g)) => g,
                (None, None) => i64::from(frames[i].1),
            };
            gap.max(0) / 2
        })
        .collect()
}

fn held_flags(frames: &[FrameSpan], held: &[Held]) -> Vec<bool> {
    half_intervals(frames)
        .into_iter()
        .zip(frames)
        .map(|(half, f)| held.iter().any(|h| h.holds(f.0, half)))
        .collect()
}

/// Which frames to keep: those we do not hold, grouped in runs that each
/// start at a key frame (what a failback transfer merges).
pub fn plan_kept(frames: &[FrameSpan], held: &[Held]) -> Vec<Range<usize>> {
    plan(frames, held, false)
}

/// `plan_kept` for footage of the very stream we recorded (a camera's edge
/// storage): a run may also start right after a frame we hold ourselves,
/// since our copy of that frame's group of pictures decodes it. A hole that
/// begins mid-GOP (a crash cut the recording anywhere) is then filled from
/// its first missing frame, not from the next key frame; a run with no frame
/// of ours before it still starts at a key frame.
pub fn plan_kept_continuing(frames: &[FrameSpan], held: &[Held]) -> Vec<Range<usize>> {
    plan(frames, held, true)
}

fn plan(frames: &[FrameSpan], held: &[Held], continuing: bool) -> Vec<Range<usize>> {
    let ours = held_flags(frames, held);
    let mut runs = Vec::new();
    let mut cur: Option<Range<usize>> = None;
    let mut after_ours = false;
    for (i, f) in frames.iter().enumerate() {
        if ours[i] {
            runs.extend(cur.take());
            after_ours = continuing;
            continue;
        }
        match &mut cur {
            Some(r) => r.end = i + 1,
            None if f.2 || after_ours => cur = Some(i..i + 1),
            None => {}
        }
        after_ours = false;
    }
    runs.extend(cur);
    runs
}

#[cfg(test)]
#[path = "import_plan_tests.rs"]
mod tests;
