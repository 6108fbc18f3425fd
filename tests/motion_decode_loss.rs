//! Motion detection when frames stop decoding: a stream that turns into
//! frames openh264 cannot decode (here: slices of garbage after the camera's
//! own parameter sets) must end motion in progress `hold` after it was last
//! seen — not when pictures return — and report the failure once, as a
//! `motion_decode_failed` episode that ends when pictures decode again.

use std::sync::Arc;
use std::time::Duration;

use tandem::config::MotionConfig;
use tandem::motion::{DecodeEdge, MotionEvent, MotionFrame, Pipeline};
use tandem::sim::script::{MotionScript, Player};
use tandem::sim::{encode_scripted, VideoSpec};
use tandem::time::Time90k;

const FPS: u64 = 10;

fn garbage(n: u64, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ n;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn undecodable_frames_end_motion_after_hold_and_are_one_event() {
    let spec = VideoSpec {
        width: 640,
        height: 360,
        fps: FPS as u32,
        gop: FPS as u32,
        bitrate_kbps: 600,
    };
    let video = encode_scripted(&spec, Duration::from_secs(4), Duration::from_secs(5)).unwrap();
    let entry = Arc::new(tandem::motion::avc1_entry(&video.sps, &video.pps, 640, 360).unwrap());
    let script = MotionScript {
        at: vec![12.0],
        every: None,
    };
    let mut player = Player::new(script, &video);
    let cfg = MotionConfig::default();
    let hold = cfg.hold;
    let mut p = Pipeline::new(cfg).unwrap();
    let t0 = 1_800_000_000_000_000i64;
    let at = |n: u64| Time90k::from_unix_micros(t0 + (n * 1_000_000 / FPS) as i64);
    // Frames from 13 s to 30 s do not decode; from 30 s the camera's own
    // frames return (decoding resumes at their next key frame).
    let (bad_from, bad_to) = (13 * FPS, 30 * FPS);
    let mut motion = Vec::new();
    let mut decode = Vec::new();
    let mut errors = 0;
    for n in 0..40 * FPS {
        let (i, _) = player.advance();
        let f = &video.frames[i];
        let mut data = Vec::new();
        let bad = (bad_from..bad_to).contains(&n);
        if bad {
            // An IDR slice header the decoder cannot parse, then noise.
            let mut nal = vec![0x65, 0xff, 0xff, 0xff];
            nal.extend(garbage(n, 2000));
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(&nal);
        } else {
            for nal in f.nals.iter().filter(|nal| !matches!(nal[0] & 0x1f, 7 | 8)) {
                data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                data.extend_from_slice(nal);
            }
        }
        let mf = MotionFrame {
            time: at(n),
            key: bad || f.key,
            entry: entry.clone(),
            data: data.into(),
        };
        let s = p.step(&mf);
        errors += usize::from(s.error.is_some());
        if let Some(ev) = s.motion {
            motion.push((n, ev));
        }
        if let Some(e) = s.decode {
            decode.push((n, e));
        }
    }
    // Motion started with the crossing at 12 s, before decoding broke.
    let Some((_, MotionEvent::Start { time: started, .. })) = motion.first() else {
        panic!("no motion detected: {motion:?}")
    };
    assert!(*started >= at(12 * FPS) && *started < at(bad_from), "{motion:?}");
    // It ended `hold` after the last picture, not when pictures came back.
    let Some((ended_at, MotionEvent::End { time: last_seen, .. })) = motion.get(1) else {
        panic!("motion never ended: {motion:?}")
    };
    assert!(*last_seen < at(bad_from), "{motion:?}");
    let hold_frames = hold.as_secs() * FPS;
    assert!(
        *ended_at <= bad_from + hold_frames,
        "ended at frame {ended_at}: {motion:?}"
    );
    // The failure is one episode: one start when frames stopped decoding,
    // one end when pictures returned, however many frames failed.
    assert!(
        errors > 0 || matches!(decode.first(), Some((_, DecodeEdge::Failed { .. }))),
        "{decode:?}"
    );
    assert_eq!(decode.len(), 2, "{decode:?}");
    let (failed_at, DecodeEdge::Failed { error, .. }) = &decode[0] else {
        panic!("{decode:?}")
    };
    assert!(
        (bad_from..bad_from + 30).contains(failed_at),
        "failure reported at frame {failed_at}: {error}"
    );
    let (recovered_at, DecodeEdge::Recovered { since, .. }) = &decode[1] else {
        panic!("{decode:?}")
    };
    assert!(
        *recovered_at >= bad_to && *recovered_at < bad_to + 2 * FPS,
        "{decode:?}"
    );
    assert_eq!(*since, at(*failed_at));
    assert_eq!(p.decode.episodes, 1);
    assert!(!p.decode.failing());
    assert!(!p.detector.active());
}
