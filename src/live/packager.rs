//! One live viewer's media timeline: turns the frames the hub hands it into
//! what goes on its WebSocket — an `init` (JSON + init segment) whenever the
//! codec parameters change, then one fMP4 fragment per frame.
//!
//! Decode times start at 0 for the connection's first frame and follow the
//! camera's frame spacing. A jump in capture time (a camera outage, frames
//! this viewer skipped, a camera clock step) does not become a hole in the
//! viewer's buffer — a browser would stall at it — but one frame's step; every
//! fragment's `prft` still carries the true capture time, so latency and the
//! wall clock shown stay right.
//!
//! Pure: frames in, messages out. Must never drop a frame it is given except
//! the non-key frames before the first key frame (they cannot be decoded).

use std::sync::Arc;

use super::{LiveFrame, Stream};
use crate::mp4::fmp4;
use crate::store::SampleEntry;

/// The largest step between two frames taken as the camera's own spacing;
/// anything longer is a discontinuity.
const MAX_STEP: i64 = 90_000;
/// Frame spacing assumed until two frames have been seen (25 fps).
const DEFAULT_DURATION: u32 = 3_600;

/// What to send, in order.
#[derive(Debug, PartialEq)]
pub enum Out {
    /// A text message (`init`) then a binary one (the init segment).
    Init { json: String, segment: Vec<u8> },
    /// A binary message: one fragment.
    Media(Vec<u8>),
}

#[derive(Debug)]
pub struct Packager {
    stream: Stream,
    entry: Option<Arc<SampleEntry>>,
    /// Fragments sent (the `mfhd` sequence number).
    sequence: u32,
    /// Media time of the next frame.
    next_decode: u64,
    last: Option<crate::time::Time90k>,
    /// The camera's frame spacing as last seen: the duration written for the
    /// newest frame, whose successor has not arrived yet.
    duration: u32,
    need_key: bool,
}

impl Packager {
    pub fn new(stream: Stream) -> Packager {
        Packager {
            stream,
            entry: None,
            sequence: 0,
            next_decode: 0,
            last: None,
            duration: DEFAULT_DURATION,
            need_key: true,
        }
    }

    /// The viewer skipped frames: wait for a key frame again.
    pub fn skipped(&mut self) {
        self.need_key = true;
    }

    /// Whether frames are being discarded until a key frame.
    pub fn waiting_for_key(&self) -> bool {
        self.need_key
    }

    /// Appends what `f` turns into (nothing while waiting for a key frame).
    pub fn frame(&mut self, f: &LiveFrame, out: &mut Vec<Out>) {
        if self.need_key && !f.key {
            return;
        }
        let changed = self.entry.as_ref().is_none_or(|e| !f.uses(e));
        if changed {
            if !f.key {
                // New parameters take effect at a key frame.
                self.need_key = true;
                return;
            }
            out.push(self.init(&f.entry));
            self.entry = Some(f.entry.clone());
        }
        self.need_key = false;
        if let Some(last) = self.last {
            let step = f.time.0 - last.0;
            if step > 0 && step <= MAX_STEP {
                // The previous frame's real duration: its successor is here.
                self.next_decode += step as u64;
                self.duration = step as u32;
            } else {
                self.next_decode += u64::from(self.duration);
            }
        }
        self.last = Some(f.time);
        self.sequence = self.sequence.wrapping_add(1);
        let sample = fmp4::Sample {
            duration: self.duration,
            key: f.key,
            data: &f.data,
        };
        out.push(Out::Media(fmp4::fragment(
            self.sequence,
            self.next_decode,
            &[sample],
            Some(f.time.as_unix_micros()),
        )));
    }

    fn init(&self, e: &SampleEntry) -> Out {
        let codec = fmp4::rfc6381_codec(&e.data).unwrap_or_else(|| e.codec.to_string());
        let json = serde_json::json!({
            "type": "init",
            "stream": self.stream.as_str(),
            "codec": codec,
            "mime": format!("video/mp4; codecs=\"{codec}\""),
            "width": e.width,
            "height": e.height,
        });
        Out::Init {
            json: json.to_string(),
            segment: fmp4::init_segment(&e.data, e.width, e.height),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Time90k;

    fn entry(w: u32) -> Arc<SampleEntry> {
        let mut data = vec![0u8; 86];
        data[4..8].copy_from_slice(b"avc1");
        data[32..34].copy_from_slice(&(w as u16).to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 12, b'a', b'v', b'c', b'C', 1, 0x4d, 0, 0x1f]);
        let n = data.len() as u32;
        data[..4].copy_from_slice(&n.to_be_bytes());
        Arc::new(SampleEntry::parse(data).unwrap())
    }

    fn frame(t: i64, key: bool, e: &Arc<SampleEntry>) -> LiveFrame {
        LiveFrame {
            time: Time90k(t),
            key,
            entry: e.clone(),
            data: bytes::Bytes::from(vec![key as u8; 10]),
            received: std::time::Instant::now(),
        }
    }

    /// (tfdt, sample duration) of a fragment.
    fn timing(f: &[u8]) -> (u64, u32) {
        let at = |name: &[u8]| f.windows(4).position(|w| w == name).unwrap() + 4;
        let tfdt = at(b"tfdt");
        let trun = at(b"trun");
        (
            u64::from_be_bytes(f[tfdt + 4..tfdt + 12].try_into().unwrap()),
            u32::from_be_bytes(f[trun + 12..trun + 16].try_into().unwrap()),
        )
    }

    fn media(out: &[Out]) -> Vec<(u64, u32)> {
        out.iter()
            .filter_map(|o| match o {
                Out::Media(m) => Some(timing(m)),
                Out::Init { .. } => None,
            })
            .collect()
    }

    #[test]
    fn starts_at_a_key_frame_with_an_init_and_follows_frame_spacing() {
        let e = entry(640);
        let mut p = Packager::new(Stream::Sub);
        let mut out = Vec::new();
        p.frame(&frame(1_000, false, &e), &mut out);
        assert!(out.is_empty(), "a frame before the first key frame cannot decode");
        for (i, t) in [10_000, 13_000, 16_600, 20_200].into_iter().enumerate() {
            p.frame(&frame(t, i == 0, &e), &mut out);
        }
        match &out[0] {
            Out::Init { json, segment } => {
                let v: serde_json::Value = serde_json::from_str(json).unwrap();
                assert_eq!(v["codec"], "avc1.4d001f");
                assert_eq!(v["stream"], "sub");
                assert_eq!(v["width"], 640);
                assert!(segment.windows(4).any(|w| w == b"mvex"));
            }
            o => panic!("first is {o:?}"),
        }
        assert_eq!(
            media(&out),
            [(0, 3_600), (3_000, 3_000), (6_600, 3_600), (10_200, 3_600)],
            "decode times follow capture times; the newest frame carries the last spacing"
        );
    }

    #[test]
    fn an_outage_or_skip_is_one_frame_step_not_a_hole() {
        let e = entry(640);
        let mut p = Packager::new(Stream::Main);
        let mut out = Vec::new();
        p.frame(&frame(0, true, &e), &mut out);
        p.frame(&frame(3_600, false, &e), &mut out);
        p.skipped();
        assert!(p.waiting_for_key());
        p.frame(&frame(7_200, false, &e), &mut out);
        // 20 s later, after an outage.
        p.frame(&frame(1_807_200, true, &e), &mut out);
        // A camera clock stepping back.
        p.frame(&frame(1_000, false, &e), &mut out);
        assert_eq!(
            media(&out),
            [(0, 3_600), (3_600, 3_600), (7_200, 3_600), (10_800, 3_600)]
        );
        assert_eq!(out.iter().filter(|o| matches!(o, Out::Init { .. })).count(), 1);
    }

    #[test]
    fn new_parameters_send_a_new_init_at_the_next_key_frame() {
        let (a, b) = (entry(640), entry(1280));
        let same_as_a = Arc::new((*a).clone());
        let mut p = Packager::new(Stream::Main);
        let mut out = Vec::new();
        p.frame(&frame(0, true, &a), &mut out);
        // Equal parameters in another allocation are not a change.
        p.frame(&frame(3_600, false, &same_as_a), &mut out);
        p.frame(&frame(7_200, false, &b), &mut out);
        p.frame(&frame(10_800, true, &b), &mut out);
        let kinds: Vec<&str> = out
            .iter()
            .map(|o| match o {
                Out::Init { .. } => "init",
                Out::Media(_) => "media",
            })
            .collect();
        assert_eq!(kinds, ["init", "media", "media", "init", "media"]);
    }
}
