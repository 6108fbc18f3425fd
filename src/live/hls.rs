//! Live HLS for players without Media Source Extensions (iPhone Safari
//! before 17.1, VLC, ffplay): the last few GOPs of a stream as fMP4 segments
//! and the playlist naming them.
//!
//! One segment per GOP, so every segment starts with a key frame and a player
//! may start at any of them. Kept only while someone asks for the playlist
//! (`Hub` drops the ring a minute after the last request), so a site nobody
//! watches over HLS holds no extra copies of its video.
//!
//! Pure: frames and times in, bytes and text out. Must never hold more than
//! `KEEP` segments or `MAX_BYTES`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::LiveFrame;
use crate::mp4::fmp4;
use crate::store::SampleEntry;
use crate::time::Time90k;

/// Segments listed in the playlist.
const KEEP: usize = 6;
/// Bytes held in finished segments; the oldest go first beyond it.
const MAX_BYTES: usize = 48 << 20;
/// A GOP longer than this is cut into several segments (a camera sending one
/// key frame a minute must not make a player wait a minute).
const MAX_SEGMENT_FRAMES: usize = 300;
/// Frame spacing assumed for the newest frame of a segment when the camera's
/// is not known yet, and the bound on a step taken as the camera's spacing.
const DEFAULT_DURATION: u32 = 3_600;
const MAX_STEP: i64 = 90_000;

#[derive(Debug)]
pub struct Segment {
    pub sequence: u64,
    pub seconds: f64,
    /// Capture time of the segment's first frame.
    pub start: Time90k,
    pub data: bytes::Bytes,
}

#[derive(Debug, Default)]
pub struct Ring {
    segments: VecDeque<Segment>,
    bytes: usize,
    next_sequence: u64,
    /// Parameter changes so far: each replaced every segment listed.
    discontinuities: u64,
    current: Vec<Arc<LiveFrame>>,
    /// Media time of the current segment's first frame.
    decode: u64,
    last: Option<Time90k>,
    duration: u32,
    entry: Option<Arc<SampleEntry>>,
    init: Option<bytes::Bytes>,
}

impl Ring {
    /// Takes the next frame of the stream.
    pub fn push(&mut self, f: &Arc<LiveFrame>) {
        let changed = self.entry.as_ref().is_none_or(|e| !f.uses(e));
        if changed && !f.key {
            // New parameters begin at a key frame; until one comes the frames
            // cannot be decoded with either init segment.
            return;
        }
        if (f.key || self.current.len() >= MAX_SEGMENT_FRAMES) && !self.current.is_empty() {
            self.finish(Some(f.time));
        }
        if changed && f.key {
            if self.entry.is_some() {
                // The old segments cannot be decoded with the new init
                // segment: they go, and the sequence counts the boundary.
                self.discontinuities += 1;
                self.segments.clear();
                self.bytes = 0;
            }
            self.init = Some(bytes::Bytes::from(fmp4::init_segment(
                &f.entry.data,
                f.entry.width,
                f.entry.height,
            )));
            self.entry = Some(f.entry.clone());
        }
        if self.current.is_empty() && !f.key && self.segments.is_empty() {
            return; // start at a key frame
        }
        self.current.push(f.clone());
    }

    /// Ends the current segment; `next` is the capture time of the frame after
    /// it, which fixes the last frame's duration.
    fn finish(&mut self, next: Option<Time90k>) {
        let frames = std::mem::take(&mut self.current);
        let mut durations = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            let following = frames.get(i + 1).map(|n| n.time).or(next);
            let step = following.map(|n| n.0 - f.time.0).filter(|s| *s > 0 && *s <= MAX_STEP);
            if let Some(s) = step {
                self.duration = s as u32;
            }
            durations.push(step.map_or(self.duration.max(1), |s| s as u32));
        }
        if self.duration == 0 {
            self.duration = DEFAULT_DURATION;
        }
        let samples: Vec<fmp4::Sample> = frames
            .iter()
            .zip(&durations)
            .map(|(f, d)| fmp4::Sample {
                duration: *d,
                key: f.key,
                data: &f.data,
            })
            .collect();
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let data = fmp4::fragment(
            sequence as u32,
            self.decode,
            &samples,
            Some(frames[0].time.as_unix_micros()),
        );
        let total: u64 = durations.iter().map(|d| u64::from(*d)).sum();
        self.decode += total;
        self.last = frames.last().map(|f| f.time);
        self.bytes += data.len();
        self.segments.push_back(Segment {
            sequence,
            seconds: total as f64 / 90_000.0,
            start: frames[0].time,
            data: bytes::Bytes::from(data),
        });
        while self.segments.len() > KEEP || (self.bytes > MAX_BYTES && self.segments.len() > 1) {
            if let Some(s) = self.segments.pop_front() {
                self.bytes -= s.data.len();
            }
        }
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    pub fn init(&self) -> Option<bytes::Bytes> {
        self.init.clone()
    }

    pub fn segment(&self, sequence: u64) -> Option<bytes::Bytes> {
        self.segments
            .iter()
            .find(|s| s.sequence == sequence)
            .map(|s| s.data.clone())
    }

    /// The playlist; URIs are relative to `.../channels/{n}/live.m3u8` and
    /// carry `query` (the stream choice).
    pub fn playlist(&self, query: &str) -> Option<String> {
        let first = self.segments.front()?;
        let target = self
            .segments
            .iter()
            .map(|s| s.seconds.ceil() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut p = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"live/init.mp4?{query}\"\n",
            first.sequence, self.discontinuities
        );
        for s in &self.segments {
            p.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\nlive/{}.m4s?{query}\n",
                s.start.to_rfc3339(),
                s.seconds,
                s.sequence
            ));
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(w: u32) -> Arc<SampleEntry> {
        let mut data = vec![0u8; 40];
        data[4..8].copy_from_slice(b"avc1");
        data[32..34].copy_from_slice(&(w as u16).to_be_bytes());
        Arc::new(SampleEntry::parse(data).unwrap())
    }

    fn frame(i: i64, key: bool, e: &Arc<SampleEntry>) -> Arc<LiveFrame> {
        Arc::new(LiveFrame {
            time: Time90k(1_000_000_000 + i * 3_600),
            key,
            entry: e.clone(),
            data: bytes::Bytes::from(vec![7u8; 100]),
            received: std::time::Instant::now(),
        })
    }

    #[test]
    fn one_segment_per_gop_starting_at_key_frames() {
        let e = entry(640);
        let mut r = Ring::default();
        for i in 0..3 {
            r.push(&frame(i, false, &e)); // before any key frame: ignored
        }
        assert!(
            r.playlist("stream=main").is_none(),
            "nothing to list before a GOP is complete"
        );
        for i in 3..(3 + 25 * 9) {
            r.push(&frame(i, (i - 3) % 25 == 0, &e));
        }
        // 9 GOPs started, 8 finished, 6 kept.
        assert_eq!(r.segments(), 6);
        let p = r.playlist("stream=main").unwrap();
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{p}");
        assert!(p.contains("#EXT-X-TARGETDURATION:1\n"));
        assert!(p.contains("#EXTINF:1.000,\nlive/7.m4s?stream=main\n"));
        assert!(p.contains("#EXT-X-MAP:URI=\"live/init.mp4?stream=main\""));
        assert!(r.segment(1).is_none() && r.segment(7).is_some());
        let s = r.segment(7).unwrap();
        // Each segment's samples: 25, the first a key frame.
        let trun = s.windows(4).position(|w| w == b"trun").unwrap() + 4;
        assert_eq!(u32::from_be_bytes(s[trun + 4..trun + 8].try_into().unwrap()), 25);
        assert!(r.init().is_some());
    }

    #[test]
    fn a_parameter_change_restarts_with_a_discontinuity() {
        let (a, b) = (entry(640), entry(1280));
        let mut r = Ring::default();
        for i in 0..50 {
            r.push(&frame(i, i % 25 == 0, &a));
        }
        assert_eq!(r.segments(), 1);
        r.push(&frame(50, false, &b)); // new parameters before their key frame: dropped
        for i in 51..102 {
            r.push(&frame(i, (i - 51) % 25 == 0, &b));
        }
        let p = r.playlist("q").unwrap();
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{p}");
        assert_eq!(r.segments(), 2);
        let init = r.init().unwrap();
        let tkhd = init.windows(4).position(|w| w == b"tkhd").unwrap() + 4;
        // tkhd v1: the width follows 88 bytes of version, times, ids and matrix.
        assert_eq!(
            u32::from_be_bytes(init[tkhd + 88..tkhd + 92].try_into().unwrap()) >> 16,
            1280
        );
    }

    #[test]
    fn a_long_gop_is_cut_and_memory_is_bounded() {
        let e = entry(640);
        let mut r = Ring::default();
        r.push(&frame(0, true, &e));
        for i in 1..=(MAX_SEGMENT_FRAMES as i64 * 2) {
            r.push(&frame(i, false, &e));
        }
        assert_eq!(r.segments(), 2);
        assert!(r.bytes <= MAX_BYTES);
    }
}
