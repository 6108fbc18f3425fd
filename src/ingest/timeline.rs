//! The mapping from a camera's RTP timestamps to wall-clock frame times, as a
//! pure function of the frame's camera time and the local clock's `now`.
//!
//! Owns the invariant that the times ingest hands the store for one channel
//! never go backwards and never fall inside a frame already placed, whatever
//! the camera's clock does: a step back, a step forward, a clock running fast
//! or slow. Frames keep their camera-derived times while those stay within
//! bounds of the local clock (so frames a link delivers late, after it comes
//! back, keep the times they were captured at); a backward step or drift
//! beyond a bound re-anchors the mapping on the local clock and starts a new
//! run. Must never look at a clock itself or drop a frame: every frame gets a
//! time.

use crate::time::Time90k;

/// Camera time running this far ahead of the local clock re-anchors the
/// mapping (a camera clock stepped forward, or running fast).
pub const MAX_AHEAD: i64 = 2 * 90_000;
/// Frames may arrive late (a link that comes back delivers what TCP
/// buffered); their camera-derived times are right. Only a lag beyond this is
/// taken for a camera clock that stepped back or runs slow, and re-anchors.
pub const MAX_BEHIND: i64 = 30 * 90_000;

/// Why the mapping was re-anchored on the local clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reanchor {
    /// The camera's timestamps went backwards (or repeated) by this many ticks.
    SteppedBack(i64),
    /// The camera's time ran this far ahead of the local clock.
    Ahead(i64),
    /// The camera's time fell this far behind the local clock.
    Behind(i64),
}

impl std::fmt::Display for Reanchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = crate::time::secs_of;
        match *self {
            Reanchor::SteppedBack(t) => write!(f, "camera timestamps stepped back {:.3} s", s(t)),
            Reanchor::Ahead(t) => write!(f, "camera clock {:.3} s ahead of the local clock", s(t)),
            Reanchor::Behind(t) => write!(f, "camera clock {:.3} s behind the local clock", s(t)),
        }
    }
}

/// Where one frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub time: Time90k,
    /// Set when this frame re-anchored the mapping: it must start a new run,
    /// since the time between it and the previous frame is not the camera's.
    pub reanchored: Option<Reanchor>,
}

#[derive(Clone, Copy, Debug)]
struct Last {
    /// Camera time of the last frame of this session (`None` after
    /// `new_session`: a new session's timestamps start anywhere).
    elapsed: Option<i64>,
    time: Time90k,
    /// Time between the last two frames placed: the writer gives a closing
    /// segment's last frame this duration, so a new run starts no earlier
    /// than `time + interval`.
    interval: i64,
}

/// One channel's timestamp mapping; lives as long as the ingest task, across
/// sessions, so that a new session never overlaps the last one's frames.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// (camera time, wall time) of the frame the mapping was anchored on.
    anchor: Option<(i64, Time90k)>,
    last: Option<Last>,
}

impl Timeline {
    /// A new RTSP session: its timestamps have a new origin.
    pub fn new_session(&mut self) {
        self.anchor = None;
        if let Some(l) = &mut self.last {
            l.elapsed = None;
        }
    }

    /// Places a frame with camera time `elapsed` (RTP ticks since the
    /// session's first, at 90 kHz) that arrived at `now`.
    pub fn place(&mut self, elapsed: i64, now: Time90k) -> Placed {
        let mut reanchored = None;
        let mut time = match self.anchor {
            Some((e0, w0)) => w0 + (elapsed - e0),
            None => now,
        };
        if self.anchor.is_some() {
            let back = self.last.and_then(|l| l.elapsed).map(|le| le - elapsed);
            reanchored = match back {
                Some(b) if b >= 0 => Some(Reanchor::SteppedBack(b)),
                _ if time - now > MAX_AHEAD => Some(Reanchor::Ahead(time - now)),
                _ if now - time > MAX_BEHIND => Some(Reanchor::Behind(now - time)),
                _ => None,
            };
            if reanchored.is_some() {
                time = now;
            }
        }
        let fresh = self.anchor.is_none() || reanchored.is_some();
        if fresh {
            self.anchor = Some((elapsed, now));
        }
        if let Some(l) = self.last {
            let floor = if fresh {
                // A new run: after the whole of the last frame.
                l.time + l.interval.max(1)
            } else {
                // Same run, catching up after a re-anchor that could not go
                // back as far as the local clock: frames play at up to twice
                // their speed until the mapping reaches the local clock again.
                let camera_interval = l.elapsed.map_or(1, |le| elapsed - le);
                l.time + (camera_interval / 2).max(1)
            };
            time = Time90k(time.0.max(floor.0));
        }
        self.last = Some(Last {
            elapsed: Some(elapsed),
            time,
            interval: self.last.map_or(0, |l| time - l.time),
        });
        Placed { time, reanchored }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Time90k = Time90k(1_000_000 * 90_000);
    const FRAME: i64 = 3_600; // 25 fps

    /// Feeds `frames` (camera time, arrival time) and checks the invariants:
    /// times strictly increase; a re-anchored frame starts after the whole
    /// previous frame.
    fn run(tl: &mut Timeline, frames: &[(i64, Time90k)]) -> Vec<Placed> {
        let mut out: Vec<Placed> = Vec::new();
        for &(e, now) in frames {
            let p = tl.place(e, now);
            if let Some(prev) = out.last() {
                assert!(p.time > prev.time, "time went back: {prev:?} then {p:?}");
                if p.reanchored.is_some() && out.len() >= 2 {
                    let interval = prev.time - out[out.len() - 2].time;
                    assert!(p.time - prev.time >= interval, "new run overlaps: {out:?} {p:?}");
                }
            }
            out.push(p);
        }
        out
    }

    fn steady(from: i64, n: i64, arrive: impl Fn(i64) -> Time90k) -> Vec<(i64, Time90k)> {
        (0..n).map(|i| (from + i * FRAME, arrive(i))).collect()
    }

    #[test]
    fn steady_stream_keeps_camera_times() {
        let mut tl = Timeline::default();
        // Arrival jitter does not move frames: their spacing is the camera's.
        let frames = steady(5_000, 100, |i| T0 + i * FRAME + (i % 3) * 500);
        let out = run(&mut tl, &frames);
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.time, T0 + i as i64 * FRAME);
            assert_eq!(p.reanchored, None);
        }
    }

    #[test]
    fn step_back_reanchors_after_the_last_frame() {
        let mut tl = Timeline::default();
        let mut frames = steady(0, 50, |i| T0 + i * FRAME);
        // The camera's clock steps back 10 s; frames keep arriving in real time.
        frames.extend(steady(50 * FRAME - 10 * 90_000, 50, |i| T0 + (50 + i) * FRAME));
        let out = run(&mut tl, &frames);
        assert_eq!(out[50].reanchored, Some(Reanchor::SteppedBack(10 * 90_000 - FRAME)));
        assert_eq!(out[50].time, T0 + 50 * FRAME);
        assert!(out[51..].iter().all(|p| p.reanchored.is_none()));
        assert_eq!(out[99].time, T0 + 99 * FRAME);
    }

    #[test]
    fn any_backward_or_repeated_timestamp_reanchors() {
        for back in [0, 1, FRAME, 90_000] {
            let mut tl = Timeline::default();
            let mut frames = steady(0, 3, |i| T0 + i * FRAME);
            frames.push((2 * FRAME - back, T0 + 3 * FRAME));
            let out = run(&mut tl, &frames);
            assert_eq!(out[3].reanchored, Some(Reanchor::SteppedBack(back)), "back {back}");
            assert_eq!(out[3].time, T0 + 3 * FRAME);
        }
    }

    #[test]
    fn step_back_while_ahead_never_overlaps() {
        let mut tl = Timeline::default();
        // The camera runs 1.5 s ahead (within bounds), then steps back: the
        // local clock is behind the frames already placed.
        let mut frames = vec![(0, T0)];
        frames.extend(steady(FRAME, 40, |i| T0 + ((i + 1) * FRAME - 135_000)));
        frames.extend(steady(0, 120, |i| T0 + ((41 + i) * FRAME - 135_000)));
        let out = run(&mut tl, &frames);
        let re = out.iter().position(|p| p.reanchored.is_some()).unwrap();
        assert_eq!(re, 41);
        // Catching up, the frames after the step play faster until the local
        // clock is reached, then follow the camera again.
        assert!(out[re + 1].time - out[re].time < FRAME);
        assert_eq!(out[160].time - out[159].time, FRAME);
        assert_eq!(out[160].time, frames[160].1);
    }

    #[test]
    fn step_forward_reanchors_on_the_local_clock() {
        let mut tl = Timeline::default();
        let mut frames = steady(0, 10, |i| T0 + i * FRAME);
        frames.extend(steady(10 * FRAME + 3600 * 90_000, 10, |i| T0 + (10 + i) * FRAME));
        let out = run(&mut tl, &frames);
        assert!(matches!(out[10].reanchored, Some(Reanchor::Ahead(_))));
        assert_eq!(out[10].time, T0 + 10 * FRAME);
        assert_eq!(out[19].time, T0 + 19 * FRAME);
    }

    #[test]
    fn fast_clock_reanchors_rarely_and_stays_near_the_local_clock() {
        let mut tl = Timeline::default();
        // A camera clock 5 % fast for 10 minutes at 25 fps.
        let frames: Vec<_> = (0..15_000).map(|i| (i * FRAME * 105 / 100, T0 + i * FRAME)).collect();
        let out = run(&mut tl, &frames);
        let reanchors = out.iter().filter(|p| p.reanchored.is_some()).count();
        // Drift of 30 s over the run, re-anchored each time it passes 2 s.
        assert!((10..=20).contains(&reanchors), "{reanchors} re-anchors");
        for (p, (_, now)) in out.iter().zip(&frames) {
            assert!(p.time - *now <= MAX_AHEAD + FRAME, "{p:?} at {now:?}");
            assert!(*now - p.time <= FRAME, "{p:?} at {now:?}");
        }
    }

    #[test]
    fn slow_clock_reanchors_beyond_the_lag_bound() {
        let mut tl = Timeline::default();
        // A camera clock 10 % slow for 10 minutes.
        let frames: Vec<_> = (0..15_000).map(|i| (i * FRAME * 9 / 10, T0 + i * FRAME)).collect();
        let out = run(&mut tl, &frames);
        let reanchors: Vec<_> = out.iter().filter_map(|p| p.reanchored).collect();
        assert!(!reanchors.is_empty() && reanchors.len() <= 2, "{reanchors:?}");
        assert!(reanchors.iter().all(|r| matches!(r, Reanchor::Behind(_))));
    }

    #[test]
    fn late_frames_after_a_link_returns_keep_camera_times() {
        let mut tl = Timeline::default();
        let mut frames = steady(0, 25, |i| T0 + i * FRAME);
        // The link stalls 8 s; TCP then delivers the buffered 8 s at once.
        frames.extend(steady(25 * FRAME, 200, |_| T0 + 25 * FRAME + 8 * 90_000));
        frames.extend(steady(225 * FRAME, 25, |i| T0 + (225 + i) * FRAME));
        let out = run(&mut tl, &frames);
        assert!(out.iter().all(|p| p.reanchored.is_none()));
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.time, T0 + i as i64 * FRAME);
        }
    }

    #[test]
    fn new_session_starts_after_the_last_sessions_frames() {
        let mut tl = Timeline::default();
        // The first frame was delivered 1.8 s late, so the camera's frames
        // were placed up to 1.8 s ahead; it reconnects with new timestamps.
        let mut frames = vec![(0, T0 + 162_000)];
        frames.extend(steady(FRAME, 9, |i| T0 + (i + 1) * FRAME));
        let first = run(&mut tl, &frames);
        let last = first.last().unwrap().time;
        tl.new_session();
        let p = tl.place(123_456_789, T0 + 10 * FRAME);
        assert_eq!(p.reanchored, None);
        assert_eq!(p.time, last + FRAME);
        // And without a lead, a new session starts at the local clock.
        let mut tl = Timeline::default();
        run(&mut tl, &steady(0, 10, |i| T0 + i * FRAME));
        tl.new_session();
        assert_eq!(tl.place(7, T0 + 100 * FRAME).time, T0 + 100 * FRAME);
    }

    #[test]
    fn first_frame_is_placed_at_the_local_clock() {
        let mut tl = Timeline::default();
        let p = tl.place(-5, T0);
        assert_eq!(
            p,
            Placed {
                time: T0,
                reanchored: None
            }
        );
    }
}
