//! Where a session's start goes: the RTSP round trips (DESCRIBE, SETUP,
//! PLAY) and the wait for the first key frame after PLAY. A takeover's
//! recording loss is detection plus these; the API shows the last session's
//! (`ingest.connect` of a channel) and the "camera connected" line logs them.
//!
//! Owns only the arithmetic over instants the session records; must never
//! read a clock itself.

use std::time::{Duration, Instant};

/// One session's start, in milliseconds per step.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ConnectTiming {
    /// TCP connect + DESCRIBE answered.
    pub describe_ms: f64,
    pub setup_ms: f64,
    pub play_ms: f64,
    /// PLAY answered → the first key frame (recording starts there).
    pub first_key_frame_ms: f64,
    /// Frames the camera sent before that key frame (undecodable alone).
    pub frames_before_key: u64,
    /// Whether the session asked the camera for that key frame
    /// (`key_request`); the camera may or may not have answered.
    pub key_frame_requested: bool,
    pub total_ms: f64,
}

/// The instants a session passes, in order.
#[derive(Clone, Copy, Debug)]
pub struct Marks {
    pub start: Instant,
    pub described: Instant,
    pub set_up: Instant,
    pub playing: Instant,
}

impl Marks {
    /// The timing once the first key frame arrived at `key`.
    pub fn timing(&self, key: Instant, frames_before_key: u64) -> ConnectTiming {
        let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1000.0;
        ConnectTiming {
            describe_ms: ms(self.start, self.described),
            setup_ms: ms(self.described, self.set_up),
            play_ms: ms(self.set_up, self.playing),
            first_key_frame_ms: ms(self.playing, key),
            frames_before_key,
            key_frame_requested: false,
            total_ms: ms(self.start, key),
        }
    }
}

/// A whole number of milliseconds, for log lines.
pub fn whole_ms(ms: f64) -> u64 {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0).as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_to_the_total() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let m = Marks {
            start,
            described: at(4),
            set_up: at(6),
            playing: at(9),
        };
        let t = m.timing(at(509), 12);
        assert_eq!(
            (t.describe_ms, t.setup_ms, t.play_ms, t.first_key_frame_ms, t.total_ms),
            (4.0, 2.0, 3.0, 500.0, 509.0)
        );
        assert_eq!(t.frames_before_key, 12);
        // A key frame "before" PLAY (clock granularity) counts as none.
        assert_eq!(m.timing(at(1), 0).first_key_frame_ms, 0.0);
        assert_eq!(whole_ms(t.total_ms), 509);
    }
}
