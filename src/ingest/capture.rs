//! The capture offset of one channel: how far the camera's clock (the NTP
//! time its RTCP sender reports give each RTP timestamp) is from this NVR's
//! time for the same frame, in 90 kHz ticks: `offset = camera − nvr`.
//!
//! Two NVRs recording the same camera judge a frame by the camera's capture
//! time (`nvr_time + offset`), not by their own clocks, so footage merged
//! from a peer (failback) or from the camera's card (gap fill) lines up even
//! when the NVRs' clocks are seconds apart.
//!
//! Owns the NTP↔RTP mapping of the latest sender report, the smoothing of
//! the per-report offsets (median of the last few), and the detection of a
//! camera clock step. Pure: the caller passes each report and each frame's
//! RTP timestamp and stored time. Must never look at a clock, never hold
//! more than `HISTORY` samples, and never report an offset before a sender
//! report has been seen (no report ever: unknown, not 0).

use std::collections::VecDeque;

use crate::time::{Time90k, TICKS_PER_SEC};

/// Offsets of this many recent sender reports are smoothed (median).
pub const HISTORY: usize = 5;
/// A report whose offset is this far from the smoothed one is a step of the
/// camera's (or this NVR's) clock, not jitter: 0.5 s is far above what
/// network delay moves a frame's arrival, far below a clock set by hand.
pub const STEP: i64 = TICKS_PER_SEC / 2;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX: u64 = 2_208_988_800;

/// An NTP timestamp (32.32 fixed point, seconds since 1900) as wall time.
/// Era 0 ends in 2036; seconds below the Unix epoch's are taken as era 1,
/// the only reading that is not decades in the past.
pub fn ntp_to_time90k(ntp: u64) -> Time90k {
    let secs = ntp >> 32;
    let frac = ntp & 0xffff_ffff;
    let secs = if secs < NTP_UNIX { secs + (1 << 32) } else { secs };
    let unix = (secs - NTP_UNIX) as i64;
    Time90k(unix * TICKS_PER_SEC + ((frac * TICKS_PER_SEC as u64) >> 32) as i64)
}

/// What a frame told the estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// No sender report yet (or none that maps this frame): offset unknown.
    Unknown,
    /// The smoothed offset, unchanged in kind.
    Offset(i64),
    /// The offset stepped by `by` ticks (a clock was set): the new offset is
    /// used from this frame on. Worth a log line.
    Stepped { offset: i64, by: i64 },
}

impl Observed {
    pub fn offset(self) -> Option<i64> {
        match self {
            Observed::Unknown => None,
            Observed::Offset(o) | Observed::Stepped { offset: o, .. } => Some(o),
        }
    }
}

/// One channel's estimator; lives across sessions (each session's first
/// report replaces the mapping, since RTP timestamps restart).
#[derive(Clone, Debug)]
pub struct CaptureClock {
    clock_rate: u32,
    /// (RTP timestamp, camera time) of the latest sender report.
    report: Option<(u32, Time90k)>,
    /// The latest report has not been sampled by a frame yet.
    unsampled: bool,
    /// Offsets measured at the first frame after each recent report.
    samples: VecDeque<i64>,
    /// A sample beyond `STEP` of the median, waiting for a second one that
    /// agrees before it is believed (one bogus report moves nothing).
    pending_step: Option<i64>,
    smoothed: Option<i64>,
}

impl Default for CaptureClock {
    fn default() -> Self {
        CaptureClock::new(90_000)
    }
}

impl CaptureClock {
    /// `clock_rate`: the stream's RTP clock (90 kHz for H.264/H.265).
    pub fn new(clock_rate: u32) -> CaptureClock {
        CaptureClock {
            clock_rate: clock_rate.max(1),
            report: None,
            unsampled: false,
            samples: VecDeque::with_capacity(HISTORY),
            pending_step: None,
            smoothed: None,
        }
    }

    /// A new RTSP session: its RTP timestamps have a new origin, so the old
    /// mapping no longer applies; the smoothed offset stays (the clocks did
    /// not change) until the new session's first report.
    pub fn new_session(&mut self) {
        self.report = None;
        self.unsampled = false;
    }

    /// The timeline re-anchored this channel's frames on the local clock:
    /// their times moved against the camera's, so past offsets no longer
    /// describe them. The next frame is measured afresh against the latest
    /// report (if any).
    pub fn reanchored(&mut self) {
        self.samples.clear();
        self.pending_step = None;
        self.smoothed = None;
        self.unsampled = self.report.is_some();
    }

    /// A sender report: RTP timestamp `rtp` was captured at NTP time `ntp`
    /// by the camera's clock.
    pub fn on_sender_report(&mut self, rtp: u32, ntp: u64) {
        self.report = Some((rtp, ntp_to_time90k(ntp)));
        self.unsampled = true;
    }

    /// The camera's capture time of RTP timestamp `rtp`, by the latest report.
    /// RTP timestamps wrap every 2^32 ticks; a frame within 2^31 ticks of the
    /// report (6.6 hours at 90 kHz) on either side maps correctly.
    pub fn capture_time(&self, rtp: u32) -> Option<Time90k> {
        let (r0, t0) = self.report?;
        let delta = i64::from(rtp.wrapping_sub(r0) as i32);
        Some(t0 + delta * TICKS_PER_SEC / i64::from(self.clock_rate))
    }

    /// A frame with RTP timestamp `rtp`, stored at `time` (this NVR's time):
    /// the offset to store with it.
    pub fn on_frame(&mut self, rtp: u32, time: Time90k) -> Observed {
        if !self.unsampled {
            return self.smoothed.map_or(Observed::Unknown, Observed::Offset);
        }
        self.unsampled = false;
        let Some(capture) = self.capture_time(rtp) else {
            return Observed::Unknown;
        };
        let sample = capture - time;
        let Some(current) = self.smoothed else {
            self.samples.push_back(sample);
            self.smoothed = Some(sample);
            return Observed::Offset(sample);
        };
        if (sample - current).abs() > STEP {
            match self.pending_step {
                Some(p) if (p - sample).abs() <= STEP => {
                    // Two reports agree: the clock stepped. Follow it now
                    // rather than waiting for the median to come round.
                    self.pending_step = None;
                    self.samples.clear();
                    self.samples.push_back(p);
                    self.samples.push_back(sample);
                    let offset = median(&self.samples);
                    self.smoothed = Some(offset);
                    return Observed::Stepped {
                        offset,
                        by: offset - current,
                    };
                }
                _ => {
                    self.pending_step = Some(sample);
                    return Observed::Offset(current);
                }
            }
        }
        self.pending_step = None;
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        let offset = median(&self.samples);
        self.smoothed = Some(offset);
        Observed::Offset(offset)
    }

    /// The current smoothed offset, if any report was seen.
    pub fn offset(&self) -> Option<i64> {
        self.smoothed
    }
}

fn median(v: &VecDeque<i64>) -> i64 {
    let mut s: Vec<i64> = v.iter().copied().collect();
    s.sort_unstable();
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u32 = 3_600; // 25 fps
    const T0: Time90k = Time90k(1_800_000_000 * 90_000);

    /// The NTP timestamp of wall time `t`.
    fn ntp(t: Time90k) -> u64 {
        let secs = t.0.div_euclid(90_000) as u64 + NTP_UNIX;
        let ticks = t.0.rem_euclid(90_000) as u64;
        (secs << 32) | ((ticks << 32) / 90_000 + 1)
    }

    #[test]
    fn ntp_converts_to_unix_time() {
        assert_eq!(ntp_to_time90k(NTP_UNIX << 32), Time90k(0));
        assert_eq!(ntp_to_time90k(ntp(T0)), T0);
        assert_eq!(ntp_to_time90k(ntp(T0 + 45_000)), T0 + 45_000);
        // After 2036 (era 1): seconds wrap below the Unix epoch's.
        let y2040 = Time90k(2_208_988_800 * 90_000);
        let wrapped = 2 * NTP_UNIX - (1 << 32);
        assert_eq!(ntp_to_time90k((wrapped << 32) | (1 << 31)), y2040 + 45_000);
    }

    #[test]
    fn no_report_ever_means_unknown() {
        let mut c = CaptureClock::default();
        for i in 0..100 {
            assert_eq!(c.on_frame(i * FRAME, T0 + i64::from(i * FRAME)), Observed::Unknown);
        }
        assert_eq!(c.offset(), None);
    }

    #[test]
    fn offset_is_camera_minus_nvr() {
        let mut c = CaptureClock::default();
        // The camera's clock is 3 s ahead of this NVR's.
        let camera = |rtp: u32| T0 + 3 * 90_000 + i64::from(rtp - 1000);
        c.on_sender_report(1000, ntp(camera(1000)));
        let o = c.on_frame(1000 + 5 * FRAME, T0 + i64::from(5 * FRAME));
        assert_eq!(o, Observed::Offset(3 * 90_000));
        assert_eq!(o.offset(), Some(270_000));
        // Frames between reports keep the smoothed offset.
        assert_eq!(
            c.on_frame(1000 + 6 * FRAME, T0 + i64::from(6 * FRAME)),
            Observed::Offset(270_000)
        );
    }

    #[test]
    fn a_report_before_any_frame_maps_the_frames_that_follow() {
        let mut c = CaptureClock::default();
        // Sent right after PLAY, for an RTP time ahead of the first frame's.
        c.on_sender_report(50_000, ntp(T0 + 50_000));
        assert_eq!(c.capture_time(10_000), Some(T0 + 10_000));
        assert_eq!(c.on_frame(10_000, T0 + (10_000 - 900)), Observed::Offset(900));
    }

    #[test]
    fn rtp_timestamps_wrap() {
        let mut c = CaptureClock::default();
        let r0 = u32::MAX - 2 * FRAME + 1;
        c.on_sender_report(r0, ntp(T0));
        // Three frames later the RTP clock has wrapped past zero.
        let rtp = r0.wrapping_add(3 * FRAME);
        assert!(rtp < r0);
        assert_eq!(c.capture_time(rtp), Some(T0 + i64::from(3 * FRAME)));
        // A frame before the report, across the wrap the other way.
        let mut c = CaptureClock::default();
        c.on_sender_report(FRAME, ntp(T0));
        assert_eq!(c.capture_time(u32::MAX - FRAME + 1), Some(T0 + -2 * i64::from(FRAME)));
    }

    #[test]
    fn non_video_clock_rates_scale_to_90k() {
        let mut c = CaptureClock::new(8_000);
        c.on_sender_report(0, ntp(T0));
        assert_eq!(c.capture_time(8_000), Some(T0 + 90_000));
    }

    #[test]
    fn jitter_is_smoothed_by_the_median() {
        let mut c = CaptureClock::default();
        let mut last = None;
        // Reports whose NTP times wobble by up to ±2 ms around a 1 s offset.
        for (i, wobble) in [0i64, 180, -120, 90, -180, 30, 0].iter().enumerate() {
            let rtp = i as u32 * 25 * FRAME;
            let t = T0 + i64::from(rtp);
            c.on_sender_report(rtp, ntp(t + (90_000 + wobble)));
            last = c.on_frame(rtp, t).offset();
        }
        let o = last.unwrap();
        assert!((o - 90_000).abs() <= 90, "{o}");
        assert!(c.samples.len() <= HISTORY);
    }

    #[test]
    fn one_bogus_report_moves_nothing_and_a_step_is_followed() {
        let mut c = CaptureClock::default();
        let report = |c: &mut CaptureClock, i: u32, offset: i64| {
            let rtp = i * 25 * FRAME;
            let t = T0 + i64::from(rtp);
            c.on_sender_report(rtp, ntp(t + offset));
            c.on_frame(rtp, t)
        };
        for i in 0..3 {
            assert_eq!(report(&mut c, i, 0), Observed::Offset(0));
        }
        // A single report 10 s off: ignored.
        assert_eq!(report(&mut c, 3, 900_000), Observed::Offset(0));
        assert_eq!(report(&mut c, 4, 0), Observed::Offset(0));
        // The camera's clock is set 2 s back: the second report confirms it.
        assert_eq!(report(&mut c, 5, -180_000), Observed::Offset(0));
        assert_eq!(
            report(&mut c, 6, -180_000),
            Observed::Stepped {
                offset: -180_000,
                by: -180_000
            }
        );
        assert_eq!(report(&mut c, 7, -180_000), Observed::Offset(-180_000));
        assert_eq!(c.offset(), Some(-180_000));
    }

    #[test]
    fn a_reanchor_measures_afresh_at_the_next_frame() {
        let mut c = CaptureClock::default();
        c.on_sender_report(0, ntp(T0));
        assert_eq!(c.on_frame(0, T0), Observed::Offset(0));
        // The timeline moved frames 10 s later than the camera's RTP says.
        c.reanchored();
        assert_eq!(
            c.on_frame(FRAME, T0 + i64::from(FRAME) + 900_000),
            Observed::Offset(-900_000)
        );
        // Without a report, a re-anchor leaves the offset unknown.
        let mut c = CaptureClock::default();
        c.reanchored();
        assert_eq!(c.on_frame(0, T0), Observed::Unknown);
    }

    #[test]
    fn a_new_session_needs_its_own_report_but_keeps_the_offset() {
        let mut c = CaptureClock::default();
        c.on_sender_report(0, ntp(T0 + 450));
        assert_eq!(c.on_frame(0, T0), Observed::Offset(450));
        c.new_session();
        // The new session's RTP origin differs; the old mapping is gone.
        assert_eq!(c.capture_time(123), None);
        assert_eq!(c.on_frame(777_777, T0 + 90_000), Observed::Offset(450));
        c.on_sender_report(777_777, ntp(T0 + 90_000 + 500));
        assert_eq!(c.on_frame(777_777, T0 + 90_000), Observed::Offset(475));
    }
}
