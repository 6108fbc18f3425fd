//! Motion detection for one channel: a thread that decodes the channel's
//! substream (or main stream) with openh264 and runs the detector on each
//! picture, turning motion starts and ends into events.
//!
//! Frames that give no picture still tell the detector that time passed, so
//! motion ends `hold` after it was last seen even when decoding stops; a
//! decoding failure is its own event (`motion_decode_failed`, one per
//! episode, ended when pictures return).
//!
//! Owns the decoder and the detector. Must never slow ingest down: frames
//! arrive on a short bounded queue offered with `try_send`, and when the
//! thread falls behind it drops frames up to the next key frame (counted).

pub mod decode_watch;
pub mod detector;

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use tracing::{info, warn};

pub use decode_watch::{DecodeEdge, DecodeWatch};
pub use detector::{Detector, MotionEvent, Region};

/// The event kind of a decode-failure episode.
pub const DECODE_FAILED_KIND: &str = "motion_decode_failed";

use crate::config::MotionConfig;
use crate::events::Edge;
use crate::store::{Command, SampleEntry, WriterTx};
use crate::time::Time90k;

/// Frames waiting for the decoder before new ones are dropped (~3 s at 10 fps).
const QUEUE: usize = 32;
/// No frame for this long: the stream stopped; the background is forgotten.
const STALL: Duration = Duration::from_secs(5);
/// How often the detector is told that time passes while no frame comes.
const TICK: Duration = Duration::from_millis(250);

/// One frame for the detector, as ingest delivers it (length-prefixed NALs).
pub struct MotionFrame {
    pub time: Time90k,
    pub key: bool,
    pub entry: Arc<SampleEntry>,
    pub data: bytes::Bytes,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MotionStats {
    pub active: bool,
    pub pictures: u64,
    pub width: usize,
    pub height: usize,
    /// Frames dropped because detection fell behind.
    pub dropped_frames: u64,
    pub decode_errors: u64,
    /// Episodes of frames that would not decode (each a `motion_decode_failed` event).
    pub decode_failures: u64,
    /// Decoding fails now: motion cannot be seen.
    pub decode_failing: bool,
    pub lighting_changes: u64,
    /// Share of one core the decoder and detector used over the last window.
    pub cpu_percent: f64,
    pub last_error: Option<String>,
}

pub type SharedMotionStats = Arc<Mutex<MotionStats>>;

/// Starts the channel's detector thread; frames go to the returned sender.
pub fn spawn(
    channel: u32,
    cfg: MotionConfig,
    writer: WriterTx,
    stats: SharedMotionStats,
) -> std::io::Result<SyncSender<MotionFrame>> {
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name(format!("motion-{channel}"))
        .spawn(move || run(channel, cfg, writer, stats, rx))?;
    Ok(tx)
}

/// Offers a frame; a full queue drops it and the detector resumes at the next
/// key frame (see `run`).
pub fn offer(tx: &SyncSender<MotionFrame>, f: MotionFrame, stats: &SharedMotionStats) {
    if tx.try_send(f).is_err() {
        if let Ok(mut s) = stats.lock() {
            s.dropped_frames += 1;
        }
    }
}

/// SPS and PPS NAL units from an `avc1` sample entry's `avcC` box.
pub fn avcc_parameter_sets(entry: &[u8]) -> Option<Vec<&[u8]>> {
    let at = entry.windows(4).position(|w| w == b"avcC")? + 4;
    let c = entry.get(at..)?;
    let mut out = Vec::new();
    let mut p = 5;
    for _ in 0..2 {
        let count = usize::from(*c.get(p)? & if out.is_empty() { 0x1f } else { 0xff });
        p += 1;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*c.get(p)?, *c.get(p + 1)?]));
            out.push(c.get(p + 2..p + 2 + len)?);
            p += 2 + len;
        }
    }
    Some(out)
}

/// A minimal `avc1` sample entry carrying `sps` and `pps`, as a camera
/// session yields (for feeding encoded loops to the detector directly).
pub fn avc1_entry(sps: &[u8], pps: &[u8], width: u16, height: u16) -> Option<SampleEntry> {
    let mut avcc = vec![1, *sps.get(1)?, *sps.get(2)?, *sps.get(3)?, 0xff, 0xe1];
    avcc.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    avcc.extend_from_slice(sps);
    avcc.push(1);
    avcc.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    avcc.extend_from_slice(pps);
    let mut data = vec![0u8; 86];
    data[4..8].copy_from_slice(b"avc1");
    data[32..34].copy_from_slice(&width.to_be_bytes());
    data[34..36].copy_from_slice(&height.to_be_bytes());
    data.extend_from_slice(&(avcc.len() as u32 + 8).to_be_bytes());
    data.extend_from_slice(b"avcC");
    data.extend_from_slice(&avcc);
    let len = data.len() as u32;
    data[0..4].copy_from_slice(&len.to_be_bytes());
    SampleEntry::parse(data)
}

/// Converts a length-prefixed access unit to Annex B, with the parameter sets
/// in front of key frames.
pub fn annex_b(f: &MotionFrame, out: &mut Vec<u8>) {
    out.clear();
    if f.key {
        for ps in avcc_parameter_sets(&f.entry.data).unwrap_or_default() {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(ps);
        }
    }
    for nal in crate::nal::iter_length_prefixed(&f.data) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Decodes and detects; `None` when the frame gave no picture.
pub struct Pipeline {
    decoder: Decoder,
    pub detector: Detector,
    pub decode: DecodeWatch,
    buf: Vec<u8>,
    need_key: bool,
    pub size: (usize, usize),
}

/// What one frame did.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    pub motion: Option<MotionEvent>,
    pub decode: Option<DecodeEdge>,
    /// The decoder's error for this frame, if it refused it.
    pub error: Option<String>,
}

impl Pipeline {
    pub fn new(cfg: MotionConfig) -> Result<Pipeline, String> {
        Ok(Pipeline {
            decoder: Decoder::new().map_err(|e| format!("creating the H.264 decoder: {e}"))?,
            detector: Detector::new(cfg),
            decode: DecodeWatch::default(),
            buf: Vec::new(),
            need_key: true,
            size: (0, 0),
        })
    }

    /// Restart decoding at the next key frame (frames were dropped).
    pub fn resync(&mut self) {
        self.need_key = true;
    }

    /// One frame: a motion start or end, a decode-failure edge, or nothing.
    /// Err only when the frame failed to decode and ended no motion.
    pub fn frame(&mut self, f: &MotionFrame) -> Result<Option<MotionEvent>, String> {
        let s = self.step(f);
        match (s.motion, s.error) {
            (Some(ev), _) => Ok(Some(ev)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    /// One frame, with everything it caused.
    pub fn step(&mut self, f: &MotionFrame) -> Step {
        let mut s = Step::default();
        if f.entry.codec != "h264" {
            let e = format!("motion detection decodes H.264 only; this stream is {}", f.entry.codec);
            s.decode = self.decode.failed(f.time, &e);
            s.motion = self.detector.no_picture(f.time);
            s.error = Some(e);
            return s;
        }
        if self.need_key && !f.key {
            // Waiting for a key frame: time passes without a picture.
            s.motion = self.detector.no_picture(f.time);
            return s;
        }
        self.need_key = false;
        annex_b(f, &mut self.buf);
        match self.decoder.decode(&self.buf) {
            Ok(Some(pic)) => {
                let (w, h) = pic.dimensions();
                let (stride, _, _) = pic.strides();
                self.size = (w, h);
                s.motion = self.detector.picture(f.time, pic.y(), w, h, stride);
                s.decode = self.decode.picture(f.time);
            }
            Ok(None) => {
                s.decode = self.decode.empty(f.time);
                s.motion = self.detector.no_picture(f.time);
            }
            Err(e) => {
                self.need_key = true;
                let e = crate::excerpt::short(&format!("decoding: {e}"));
                s.decode = self.decode.failed(f.time, &e);
                s.motion = self.detector.no_picture(f.time);
                s.error = Some(e);
            }
        }
        s
    }
}

fn run(channel: u32, cfg: MotionConfig, writer: WriterTx, stats: SharedMotionStats, rx: Receiver<MotionFrame>) {
    let record = cfg.record;
    let mut p = match Pipeline::new(cfg) {
        Ok(p) => p,
        Err(e) => {
            warn!(channel, "motion detection off: {e}");
            if let Ok(mut s) = stats.lock() {
                s.last_error = Some(e);
            }
            return;
        }
    };
    let send_decode = |edge: DecodeEdge| {
        let (start, time, details) = match edge {
            DecodeEdge::Failed { time, error } => {
                warn!(channel, "motion detection: frames stopped decoding: {error}");
                (true, time, serde_json::json!({ "error": error }))
            }
            DecodeEdge::Recovered { time, since, frames } => {
                info!(channel, frames, "motion detection: pictures decode again");
                let secs = crate::time::secs_of(time - since);
                (false, time, serde_json::json!({ "frames": frames, "seconds": secs }))
            }
        };
        // A failure to see is reported, never a reason to record.
        let _ = writer.send(Command::EventEdge(Edge {
            channel,
            kind: DECODE_FAILED_KIND.into(),
            key: DECODE_FAILED_KIND.into(),
            start,
            time,
            details,
            trigger: false,
        }));
    };
    let send = |ev: MotionEvent| {
        let (start, time, region, area) = match ev {
            MotionEvent::Start { time, region, area } => (true, time, region, Some(area)),
            MotionEvent::End { time, region } => (false, time, region, None),
        };
        info!(channel, start, "motion {}", if start { "started" } else { "ended" });
        let mut details = serde_json::json!({ "region": region });
        if let Some(a) = area {
            details["area"] = serde_json::json!(a);
        }
        // Blocking send: an event must not be lost, and the writer drains fast.
        let _ = writer.send(Command::EventEdge(Edge {
            channel,
            kind: "motion".into(),
            key: "motion".into(),
            start,
            time,
            details,
            trigger: record,
        }));
    };
    let mut window = (Instant::now(), thread_cpu());
    let mut dropped_seen = 0;
    // The last frame's time and when it came: with no frames at all, the
    // detector is still told that time passes, so motion ends after `hold`
    // (not only when the stream is declared stopped).
    let mut last: Option<(Time90k, Instant)> = None;
    let mut stalled = false;
    loop {
        let f = match rx.recv_timeout(TICK) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => {
                let Some((t, at)) = last else { continue };
                let since = at.elapsed();
                let now = t + crate::time::ticks_of(since);
                if let Some(ev) = p.detector.no_picture(now) {
                    send(ev);
                }
                if since >= STALL && !stalled {
                    stalled = true;
                    if let Some(ev) = p.detector.stop() {
                        send(ev);
                    }
                    p.resync();
                }
                if let Ok(mut s) = stats.lock() {
                    s.active = p.detector.active();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        last = Some((f.time, Instant::now()));
        stalled = false;
        let dropped = stats.lock().map(|s| s.dropped_frames).unwrap_or(0);
        if dropped != dropped_seen {
            dropped_seen = dropped;
            p.resync();
        }
        let step = p.step(&f);
        if let Some(ev) = step.motion {
            send(ev);
        }
        if let Some(edge) = step.decode {
            send_decode(edge);
        }
        if let Some(e) = step.error {
            if let Ok(mut s) = stats.lock() {
                s.decode_errors += 1;
                s.last_error = Some(e);
            }
        }
        let el = window.0.elapsed();
        if let Ok(mut s) = stats.lock() {
            s.active = p.detector.active();
            s.decode_failures = p.decode.episodes;
            s.decode_failing = p.decode.failing();
            s.pictures = p.detector.pictures;
            s.lighting_changes = p.detector.lighting_changes;
            (s.width, s.height) = p.size;
            if el >= Duration::from_secs(5) {
                let cpu = thread_cpu();
                s.cpu_percent = (cpu - window.1).as_secs_f64() / el.as_secs_f64() * 100.0;
                window = (Instant::now(), cpu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameter_sets_round_trip_through_avcc() {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let e = super::avc1_entry(&sps, &pps, 640, 360).unwrap();
        assert_eq!((e.width, e.height, e.codec), (640, 360, "h264"));
        assert_eq!(super::avcc_parameter_sets(&e.data).unwrap(), vec![&sps[..], &pps[..]]);
        assert!(super::avcc_parameter_sets(b"avc1 no config").is_none());
    }
}
