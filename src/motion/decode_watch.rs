//! Decode-failure episodes for one channel's motion detection: a stream
//! whose frames stop decoding (an unsupported resolution, a broken encoder,
//! garbage) is an event of its own, `motion_decode_failed`, that starts at the
//! first failure and ends when a picture decodes again — once per episode,
//! never once per frame.
//!
//! Pure: takes each frame's outcome and its time; returns the edges. Must
//! never perform I/O.

use crate::time::Time90k;

/// Frames fed to the decoder in a row without a picture (and without an
/// error) before that counts as a failure: openh264 gives a picture per
/// frame for the streams Tandem records, so this is far past any delay.
pub const NO_PICTURE_FRAMES: u32 = 25;

#[derive(Clone, Debug, PartialEq)]
pub enum DecodeEdge {
    /// Decoding started failing at `time`.
    Failed { time: Time90k, error: String },
    /// A picture decoded again at `time`; the episode began at `since`.
    Recovered { time: Time90k, since: Time90k, frames: u64 },
}

#[derive(Debug, Default)]
pub struct DecodeWatch {
    /// Start of the current episode.
    failing_since: Option<Time90k>,
    /// Frames that failed in the current episode.
    failed_frames: u64,
    /// Frames decoded in a row without a picture.
    empty: u32,
    pub episodes: u64,
}

impl DecodeWatch {
    pub fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    /// The decoder refused a frame.
    pub fn failed(&mut self, time: Time90k, error: &str) -> Option<DecodeEdge> {
        self.empty = 0;
        self.failed_frames += 1;
        if self.failing_since.is_some() {
            return None;
        }
        self.failing_since = Some(time);
        self.episodes += 1;
        Some(DecodeEdge::Failed {
            time,
            error: error.to_string(),
        })
    }

    /// The decoder took a frame and gave no picture.
    pub fn empty(&mut self, time: Time90k) -> Option<DecodeEdge> {
        self.empty = self.empty.saturating_add(1);
        if self.failing_since.is_some() {
            self.failed_frames += 1;
            return None;
        }
        if self.empty < NO_PICTURE_FRAMES {
            return None;
        }
        self.failed(time, &format!("no picture from {NO_PICTURE_FRAMES} frames in a row"))
    }

    /// A picture decoded.
    pub fn picture(&mut self, time: Time90k) -> Option<DecodeEdge> {
        self.empty = 0;
        let since = self.failing_since.take()?;
        let frames = std::mem::take(&mut self.failed_frames);
        Some(DecodeEdge::Recovered { time, since, frames })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum O {
        Pic,
        Err,
        Empty,
    }

    fn feed(w: &mut DecodeWatch, n: i64, o: O) -> Option<DecodeEdge> {
        match o {
            O::Pic => w.picture(Time90k(n)),
            O::Err => w.failed(Time90k(n), "bad"),
            O::Empty => w.empty(Time90k(n)),
        }
    }

    #[test]
    fn one_event_per_episode_whatever_the_frames() {
        // Exhaustive over outcome sequences of length 8: edges alternate
        // Failed/Recovered, a Failed comes exactly at the first error after a
        // picture (or start), a Recovered at the first picture after it.
        let all = [O::Pic, O::Err, O::Empty];
        for code in 0..3u32.pow(8) {
            let seq: Vec<O> = (0..8).map(|k| all[(code / 3u32.pow(k) % 3) as usize]).collect();
            let mut w = DecodeWatch::default();
            let mut failing = false;
            for (n, &o) in seq.iter().enumerate() {
                let e = feed(&mut w, n as i64, o);
                match (o, failing) {
                    (O::Err, false) => {
                        assert!(matches!(e, Some(DecodeEdge::Failed { .. })), "{seq:?}");
                        failing = true;
                    }
                    (O::Pic, true) => {
                        assert!(matches!(e, Some(DecodeEdge::Recovered { .. })), "{seq:?}");
                        failing = false;
                    }
                    // Fewer than NO_PICTURE_FRAMES empties never start an episode.
                    _ => assert_eq!(e, None, "{seq:?} at {n}"),
                }
                assert_eq!(w.failing(), failing);
            }
        }
    }

    #[test]
    fn a_decoder_that_goes_silent_is_a_failure() {
        let mut w = DecodeWatch::default();
        assert_eq!(w.picture(Time90k(0)), None);
        for n in 1..NO_PICTURE_FRAMES as i64 {
            assert_eq!(w.empty(Time90k(n)), None);
        }
        let Some(DecodeEdge::Failed { time, error }) = w.empty(Time90k(99)) else {
            panic!()
        };
        assert_eq!(time, Time90k(99));
        assert!(error.contains("no picture"), "{error}");
        for n in 100..200 {
            assert_eq!(w.empty(Time90k(n)), None, "once per episode");
        }
        let Some(DecodeEdge::Recovered { since, frames, .. }) = w.picture(Time90k(300)) else {
            panic!()
        };
        assert_eq!((since, frames), (Time90k(99), 101));
        assert_eq!(w.episodes, 1);
    }
}
