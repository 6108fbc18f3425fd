//! Motion detection against ground truth: the simulated camera's scripted
//! scene, encoded with openh264 exactly as the camera sends it, decoded and
//! run through the detector frame by frame on simulated time.

use std::sync::Arc;
use std::time::Duration;

use tandem::config::MotionConfig;
use tandem::motion::{MotionEvent, MotionFrame, Pipeline};
use tandem::sim::script::{MotionScript, Player};
use tandem::sim::{encode_scripted, VideoSpec};
use tandem::time::Time90k;

const FPS: u32 = 10;

fn spec() -> VideoSpec {
    VideoSpec {
        width: 640,
        height: 360,
        fps: FPS,
        gop: FPS,
        bitrate_kbps: 600,
    }
}

/// Plays `secs` of the script through the detector; returns the crossings
/// sent and the events detected.
fn play(script: MotionScript, still: Duration, secs: u64) -> (Vec<(Time90k, Time90k)>, Vec<MotionEvent>, u64) {
    let video = encode_scripted(&spec(), still, Duration::from_secs(5)).unwrap();
    let entry = Arc::new(tandem::motion::avc1_entry(&video.sps, &video.pps, 640, 360).unwrap());
    let mut player = Player::new(script, &video);
    let mut p = Pipeline::new(MotionConfig::default()).unwrap();
    let (mut truth, mut events) = (Vec::new(), Vec::new());
    let t0 = 1_800_000_000_000_000i64; // µs
    for n in 0..secs * u64::from(FPS) {
        let us = t0 + (n * 1_000_000 / u64::from(FPS)) as i64;
        let (i, start) = player.advance();
        if let Some(s) = start {
            let c = s.at(1, us);
            truth.push((c.enters, c.leaves));
        }
        let f = &video.frames[i];
        let mut data = Vec::new();
        for nal in &f.nals {
            if matches!(nal[0] & 0x1f, 7 | 8) {
                continue; // in the sample entry, as from a real camera session
            }
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(nal);
        }
        let mf = MotionFrame {
            time: Time90k::from_unix_micros(us),
            key: f.key,
            entry: entry.clone(),
            data: data.into(),
        };
        if let Some(ev) = p.frame(&mf).unwrap() {
            events.push(ev);
        }
    }
    (truth, events, p.detector.pictures)
}

#[test]
fn scripted_crossings_are_detected_within_a_second() {
    let script = MotionScript {
        at: vec![12.0, 31.0],
        every: Some(25.0),
    };
    let (truth, events, pictures) = play(script, Duration::from_secs(4), 100);
    assert_eq!(pictures, 1000, "every frame decoded");
    assert_eq!(truth.len(), 4, "{truth:?}");
    assert_eq!(
        events.len(),
        2 * truth.len(),
        "one start and one end per crossing: {events:?}"
    );
    for (k, (enters, leaves)) in truth.iter().enumerate() {
        let MotionEvent::Start { time, region, .. } = &events[2 * k] else {
            panic!("expected a start: {:?}", events[2 * k])
        };
        let lag = (*time - *enters) as f64 / 90_000.0;
        assert!(lag.abs() <= 1.0, "crossing {k}: start {lag:+.2} s from the truth");
        assert!(region.y > 0.25 && region.y + region.h < 0.8, "{region:?}");
        let MotionEvent::End { time, .. } = &events[2 * k + 1] else {
            panic!("expected an end: {:?}", events[2 * k + 1])
        };
        let lag = (*time - *leaves) as f64 / 90_000.0;
        assert!(lag.abs() <= 1.0, "crossing {k}: end {lag:+.2} s from the truth");
    }
}

#[test]
fn a_still_scene_with_sensor_noise_gives_no_motion_in_ten_minutes() {
    // 30 s of distinct noisy frames, looped for 10 minutes of video.
    let script = MotionScript {
        at: vec![],
        every: None,
    };
    let (truth, events, pictures) = play(script, Duration::from_secs(30), 600);
    assert!(truth.is_empty());
    assert_eq!(pictures, 6000);
    assert!(events.is_empty(), "false motion: {events:?}");
}
