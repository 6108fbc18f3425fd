//! Scripted motion for the simulated camera: when an object crosses the scene,
//! so that motion detection can be tested against ground truth.
//!
//! `Player` is pure: it picks, frame by frame, which frame of a scripted loop
//! (`video::encode_scripted`) to send. Crossings start only at a GOP start of
//! the still scene, so the stream stays decodable; each start is reported with
//! its exact capture times. Must never read a clock.

use std::sync::{Arc, Mutex};

use super::video::EncodedLoop;
use crate::time::Time90k;

#[derive(Clone, Debug, PartialEq)]
pub struct MotionScript {
    /// Seconds after the camera starts at which crossings begin.
    pub at: Vec<f64>,
    /// After the listed times, a crossing every this many seconds.
    pub every: Option<f64>,
}

/// One crossing as it was sent: the capture times of its first and last frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    pub camera_id: u32,
    pub enters: Time90k,
    pub leaves: Time90k,
}

pub type MotionLog = Arc<Mutex<Vec<Crossing>>>;

/// A crossing about to start: its length in frames and the frame interval.
pub struct Start {
    frames: u64,
    fps: u64,
}

impl Start {
    pub fn at(&self, camera_id: u32, capture_unix_micros: i64) -> Crossing {
        let last = capture_unix_micros + ((self.frames - 1) * 1_000_000 / self.fps) as i64;
        Crossing {
            camera_id,
            enters: Time90k::from_unix_micros(capture_unix_micros),
            leaves: Time90k::from_unix_micros(last),
        }
    }
}

pub struct Player {
    script: MotionScript,
    gop: usize,
    still: usize,
    crossing: usize,
    fps: u64,
    n: u64,
    /// Crossings started so far.
    started: usize,
    still_i: usize,
    /// Index into the crossing while one plays.
    playing: Option<usize>,
}

impl Player {
    pub fn new(script: MotionScript, video: &EncodedLoop) -> Player {
        let still = video.still.unwrap_or(video.frames.len());
        Player {
            script,
            gop: video.spec.gop as usize,
            still,
            crossing: video.frames.len() - still,
            fps: u64::from(video.spec.fps),
            n: 0,
            started: 0,
            still_i: 0,
            playing: None,
        }
    }

    /// The frame number (in frames since start) at which crossing k is due.
    fn due(&self, k: usize) -> Option<u64> {
        let secs = match self.script.at.get(k) {
            Some(&s) => s,
            None => {
                let every = self.script.every.filter(|e| *e > 0.0)?;
                let last = self.script.at.last().copied().unwrap_or(0.0 - every);
                last + every * (k + 1 - self.script.at.len()) as f64
            }
        };
        Some((secs.max(0.0) * self.fps as f64).round() as u64)
    }

    /// The index of the next frame to send, and the crossing it begins, if any.
    pub fn advance(&mut self) -> (usize, Option<Start>) {
        let n = self.n;
        self.n += 1;
        if let Some(k) = self.playing {
            if k + 1 < self.crossing {
                self.playing = Some(k + 1);
                return (self.still + k + 1, None);
            }
            self.playing = None;
        }
        let due = self.crossing > 0 && self.due(self.started).is_some_and(|d| d <= n);
        if due && self.still_i % self.gop == 0 {
            self.started += 1;
            self.playing = Some(0);
            let start = Start {
                frames: self.crossing as u64,
                fps: self.fps,
            };
            return (self.still, Some(start));
        }
        let i = self.still_i;
        self.still_i = (self.still_i + 1) % self.still;
        (i, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::video::{EncodedFrame, VideoSpec};

    fn video(still: usize, crossing: usize, gop: u32) -> EncodedLoop {
        EncodedLoop {
            spec: VideoSpec {
                width: 64,
                height: 64,
                fps: 10,
                gop,
                bitrate_kbps: 100,
            },
            sps: vec![],
            pps: vec![],
            frames: (0..still + crossing)
                .map(|i| EncodedFrame {
                    nals: vec![],
                    key: i % gop as usize == 0,
                })
                .collect(),
            still: Some(still),
        }
    }

    #[test]
    fn crossings_start_at_gop_starts_and_play_whole() {
        let v = video(20, 30, 10);
        let script = MotionScript {
            at: vec![2.5, 3.0],
            every: Some(10.0),
        };
        let mut p = Player::new(script, &v);
        let mut starts = Vec::new();
        let mut seq = Vec::new();
        for n in 0..300u64 {
            let (i, s) = p.advance();
            if s.is_some() {
                starts.push(n);
            }
            seq.push(i);
        }
        // Due at 25 → next GOP start 30; the second (due 30) waits for the first
        // to end (frame 60); then every 10 s after 3.0 s: due 130, 230.
        assert_eq!(starts, vec![30, 60, 130, 230]);
        // Every crossing plays frames 20..50 in order; key frames stay key frames.
        for &s in &starts {
            let got: Vec<usize> = seq[s as usize..s as usize + 30].to_vec();
            assert_eq!(got, (20..50).collect::<Vec<_>>());
            assert_ne!(seq[s as usize + 30], 20 + 29 + 1);
        }
        // Still frames between crossings continue at a GOP start.
        assert_eq!(seq[90] % 10, 0);
    }

    #[test]
    fn crossing_times_are_reported_exactly() {
        let s = Start { frames: 30, fps: 10 };
        let c = s.at(3, 1_000_000);
        assert_eq!(c.enters, Time90k::from_unix_micros(1_000_000));
        assert_eq!(c.leaves, Time90k::from_unix_micros(3_900_000));
    }
}
