//! The segment-boundary policy: where one segment ends and the next begins,
//! as a pure function of the open segment and the arriving frame. The writer
//! applies it; it never touches files or the index.
//!
//! Must never let a segment span a change of codec parameters, a camera
//! clock stepping back, a reconnect or a hole longer than a few frames.

use super::SampleEntry;
use crate::time::Time90k;

/// A gap between consecutive frames of one run longer than four frame
/// intervals (at least 0.2 s, at most 5 s) ends the segment, so that holes
/// show in the index instead of being folded into one frame's duration.
fn max_frame_gap(last_duration: u32) -> i64 {
    if last_duration == 0 {
        return 5 * 90_000;
    }
    (4 * i64::from(last_duration)).clamp(18_000, 5 * 90_000)
}

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
