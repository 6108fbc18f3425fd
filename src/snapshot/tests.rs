use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::store::db::SampleEntryRow;

fn frame(t: i64, key: bool) -> FrameRef {
    FrameRef {
        time: Time90k(t),
        duration: 3000,
        offset: 0,
        size: 10,
        key,
    }
}

fn seg(id: i64, frames: Vec<FrameRef>) -> SegmentFrames {
    SegmentFrames {
        id,
        path: PathBuf::from(format!("/nonexistent/{id}.seg")),
        entry: Arc::new(SampleEntryRow {
            id: 1,
            data: Vec::new(),
            codec: "h264".into(),
            width: 640,
            height: 360,
        }),
        frames,
    }
}

/// Key frames every 10 ticks from `from`, P frames between.
fn gop_segment(id: i64, from: i64, n: i64) -> SegmentFrames {
    seg(id, (0..n).map(|i| frame(from + i * 5, i % 2 == 0)).collect())
}

#[test]
fn key_frame_after_is_the_earliest_key_at_or_after() {
    let s = vec![gop_segment(1, 100, 10), gop_segment(2, 150, 10)];
    // Exactly on a key frame: that one.
    assert_eq!(
        choose_key_frame(&s, Time90k(120), true).map(|(_, f)| f.time),
        Some(Time90k(120))
    );
    // On a P frame (125): the next key frame, not the previous.
    assert_eq!(
        choose_key_frame(&s, Time90k(125), true).map(|(_, f)| f.time),
        Some(Time90k(130))
    );
    // Crossing into the next segment.
    assert_eq!(choose_key_frame(&s, Time90k(141), true), Some((1, frame(150, true))));
    // Past the last key frame: nothing.
    assert_eq!(choose_key_frame(&s, Time90k(191), true), None);
}

#[test]
fn key_frame_before_is_the_latest_key_at_or_before() {
    let s = vec![gop_segment(1, 100, 10), gop_segment(2, 150, 10)];
    assert_eq!(
        choose_key_frame(&s, Time90k(120), false).map(|(_, f)| f.time),
        Some(Time90k(120))
    );
    assert_eq!(
        choose_key_frame(&s, Time90k(129), false).map(|(_, f)| f.time),
        Some(Time90k(120))
    );
    assert_eq!(choose_key_frame(&s, Time90k(1000), false), Some((1, frame(190, true))));
    assert_eq!(choose_key_frame(&s, Time90k(99), false), None);
}

#[test]
fn key_frame_choice_compares_times_across_overlapping_segments() {
    // A camera clock stepped back: segment 2 starts before segment 1 ends.
    let s = vec![gop_segment(1, 100, 10), gop_segment(2, 112, 4)];
    // After 111: segment 2's key at 112 beats segment 1's at 120.
    assert_eq!(choose_key_frame(&s, Time90k(111), true), Some((1, frame(112, true))));
    // Before 121: segment 1's 120 beats segment 2's 122? No: 122 > 121; 120 it is.
    assert_eq!(choose_key_frame(&s, Time90k(121), false), Some((0, frame(120, true))));
    // Equal times: the first stored wins on both sides.
    let twins = vec![seg(1, vec![frame(50, true)]), seg(2, vec![frame(50, true)])];
    assert_eq!(choose_key_frame(&twins, Time90k(50), true).map(|c| c.0), Some(0));
    assert_eq!(choose_key_frame(&twins, Time90k(50), false).map(|c| c.0), Some(0));
}

#[test]
fn no_key_frames_means_no_choice() {
    let s = vec![seg(1, (0..5).map(|i| frame(i * 10, false)).collect())];
    assert_eq!(choose_key_frame(&s, Time90k(0), true), None);
    assert_eq!(choose_key_frame(&s, Time90k(100), false), None);
    assert_eq!(choose_key_frame(&[], Time90k(0), true), None);
}

#[test]
fn search_window_includes_the_asked_time_and_saturates() {
    assert_eq!(
        search_window(Time90k(1000), true),
        (Time90k(1000), Time90k(1000 + SEARCH))
    );
    assert_eq!(
        search_window(Time90k(1000), false),
        (Time90k(1000 - SEARCH), Time90k(1001))
    );
    assert_eq!(search_window(Time90k(i64::MAX), true).1, Time90k(i64::MAX));
    assert_eq!(search_window(Time90k(i64::MIN), false).0, Time90k(i64::MIN));
}

#[test]
fn widths_outside_the_bounds_are_refused() {
    assert!(check_width(MIN_WIDTH).is_ok());
    assert!(check_width(MAX_WIDTH).is_ok());
    for w in [0, MIN_WIDTH - 1, MAX_WIDTH + 1, u32::MAX] {
        let e = check_width(w).unwrap_err();
        assert!(e.to_string().contains("`width`"), "{e}");
    }
}

#[test]
fn scaled_size_keeps_the_aspect() {
    assert_eq!(scaled_size(1920, 1080, 640), (640, 360));
    assert_eq!(scaled_size(1920, 1080, 1920), (1920, 1080));
    assert_eq!(scaled_size(1080, 1920, 640), (640, 1138));
    // Rounded to the nearest row, never zero.
    assert_eq!(scaled_size(641, 361, 64), (64, 36));
    assert_eq!(scaled_size(4000, 10, 64), (64, 1));
    assert_eq!(scaled_size(0, 10, 64), (64, 1));
}

fn solid(w: usize, h: usize, px: [u8; 3]) -> Rgb {
    Rgb {
        width: w,
        height: h,
        data: px.iter().copied().cycle().take(w * h * 3).collect(),
    }
}

#[test]
fn scaling_a_solid_picture_keeps_its_colour() {
    let p = solid(1920, 1080, [10, 200, 99]);
    let s = scale(&p, 640, 360);
    assert_eq!((s.width, s.height, s.data.len()), (640, 360, 640 * 360 * 3));
    assert_eq!(s, solid(640, 360, [10, 200, 99]));
    // Uneven ratios too.
    assert_eq!(scale(&p, 333, 187), solid(333, 187, [10, 200, 99]));
}

#[test]
fn shrinking_averages_what_each_pixel_covers() {
    // A 1-pixel checkerboard of black and white shrinks to grey, not to
    // whichever of the two a point sampler would hit.
    let mut p = solid(64, 64, [0, 0, 0]);
    for y in 0..64 {
        for x in 0..64 {
            if (x + y) % 2 == 0 {
                p.data[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
    }
    let s = scale(&p, 32, 32);
    assert!(s.data.iter().all(|&v| v == 128), "{:?}", &s.data[..6]);
    // Left half red, right half blue: the halves stay apart.
    let mut q = solid(8, 2, [0, 0, 255]);
    for y in 0..2 {
        for x in 0..4 {
            q.data[(y * 8 + x) * 3..(y * 8 + x) * 3 + 3].copy_from_slice(&[255, 0, 0]);
        }
    }
    let s = scale(&q, 2, 1);
    assert_eq!(s.data, vec![255, 0, 0, 0, 0, 255]);
}

#[test]
fn enlarging_repeats_the_nearest_pixel() {
    let p = Rgb {
        width: 2,
        height: 1,
        data: vec![1, 2, 3, 4, 5, 6],
    };
    let s = scale(&p, 4, 2);
    assert_eq!(s.data, [[1, 2, 3], [1, 2, 3], [4, 5, 6], [4, 5, 6]].concat().repeat(2));
}

/// (width, height) from a baseline JPEG's SOF0, checking SOI and EOI.
pub fn jpeg_size(j: &[u8]) -> Option<(u16, u16)> {
    if j.get(..2)? != [0xff, 0xd8] || j.get(j.len() - 2..)? != [0xff, 0xd9] {
        return None;
    }
    let mut p = 2;
    while p + 4 <= j.len() {
        if j[p] != 0xff {
            return None;
        }
        let marker = j[p + 1];
        let len = usize::from(u16::from_be_bytes([j[p + 2], j[p + 3]]));
        if marker == 0xc0 {
            let h = u16::from_be_bytes([*j.get(p + 5)?, *j.get(p + 6)?]);
            let w = u16::from_be_bytes([*j.get(p + 7)?, *j.get(p + 8)?]);
            return Some((w, h));
        }
        p += 2 + len;
    }
    None
}

#[test]
fn encoded_jpeg_has_the_picture_size() {
    let j = encode_jpeg(&solid(100, 57, [128, 64, 32])).unwrap();
    assert_eq!(jpeg_size(&j), Some((100, 57)));
    assert!(j.len() < 100 * 57 * 3 / 4, "{} bytes", j.len());
}

/// A key frame (slice NAL units only, length-prefixed as stored) and its
/// sample entry, from the simulated camera's encoder.
fn encoded_key_frame(w: u32, h: u32) -> (Arc<SampleEntry>, Vec<u8>) {
    let spec = crate::sim::VideoSpec {
        width: w,
        height: h,
        fps: 10,
        gop: 2,
        bitrate_kbps: 2000,
    };
    let l = crate::sim::encode_loop(&spec).unwrap();
    let entry = crate::motion::avc1_entry(&l.sps, &l.pps, w as u16, h as u16).unwrap();
    let key = &l.frames[0];
    assert!(key.key);
    let mut data = Vec::new();
    // The parameter sets come from the sample entry, as for stored footage.
    for nal in key.nals.iter().filter(|n| !matches!(n[0] & 0x1f, 7 | 8)) {
        data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        data.extend_from_slice(nal);
    }
    (Arc::new(entry), data)
}

#[test]
fn a_stored_key_frame_decodes_scales_and_encodes() {
    let (entry, data) = encoded_key_frame(320, 180);
    let pic = decode_key_frame(entry, Time90k(0), data).unwrap();
    assert_eq!((pic.width, pic.height), (320, 180));
    // The synthetic scene is textured, not a blank (all-equal) picture.
    assert!(pic.data.iter().any(|&v| v != pic.data[0]));
    let (w, h) = scaled_size(pic.width, pic.height, 64);
    let j = encode_jpeg(&scale(&pic, w, h)).unwrap();
    assert_eq!(jpeg_size(&j), Some((64, 36)));
}

#[test]
fn h265_and_garbage_are_typed_errors_not_panics() {
    let (entry, data) = encoded_key_frame(160, 96);
    let mut hevc = entry.data.clone();
    hevc[4..8].copy_from_slice(b"hvc1");
    let hevc = SampleEntry::parse(hevc).unwrap();
    assert!(matches!(
        decode_key_frame(Arc::new(hevc), Time90k(0), data.clone()),
        Err(SnapshotError::Unsupported("h265"))
    ));
    assert!(decodable("h265").is_err_and(|e| e.to_string().contains("h265")));
    // A frame cut in half, then pure noise: errors (or no picture), never a panic.
    let half = data[..data.len() / 2].to_vec();
    let noise: Vec<u8> = (0..2000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for bad in [half, noise, Vec::new()] {
        if let Err(e) = decode_key_frame(entry.clone(), Time90k(0), bad) {
            assert!(matches!(e, SnapshotError::Decode(_)), "{e}");
        }
    }
}

#[test]
fn oversized_frames_are_refused_before_reading() {
    let mut f = frame(0, true);
    f.size = (crate::ingest::MAX_FRAME_BYTES + 1) as u32;
    let e = read_frame(std::path::Path::new("/nonexistent"), &f).unwrap_err();
    assert!(matches!(e, SnapshotError::Decode(ref m) if m.contains("bound")), "{e}");
}

/// One 1080p key frame through decode, scale to 640 and JPEG, timed
/// (`cargo test --lib snapshot -- --ignored --nocapture`); figures in docs/snapshots.md.
#[test]
#[ignore]
fn time_a_1080p_snapshot() {
    let (entry, data) = encoded_key_frame(1920, 1080);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        let pic = decode_key_frame(entry.clone(), Time90k(0), data.clone()).unwrap();
        let t1 = t0.elapsed();
        let small = scale(&pic, 640, 360);
        let t2 = t0.elapsed();
        let j = encode_jpeg(&small).unwrap();
        let t3 = t0.elapsed();
        assert_eq!(jpeg_size(&j), Some((640, 360)));
        times.push((t1, t2 - t1, t3 - t2, t3, j.len()));
    }
    for (d, s, e, all, n) in &times {
        println!("decode {d:?} scale {s:?} encode {e:?} total {all:?} ({n} bytes)");
    }
}
