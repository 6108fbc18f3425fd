use std::sync::Arc;

use super::*;
use crate::store::SampleEntry;

/// 10 fps, a key frame every second, `secs` seconds from t = 0.
fn frames(secs: i64) -> impl Iterator<Item = Frame> {
    let entry = Arc::new(SampleEntry {
        data: vec![0; 40],
        codec: "h264",
        width: 640,
        height: 360,
    });
    (0..secs * 10).map(move |i| Frame {
        channel: 1,
        run: 1,
        time: Time90k(i * SEC / 10),
        key: i % 10 == 0,
        sample_entry: entry.clone(),
        data: vec![0; 1000].into(),
        capture_offset: None,
    })
}

type Trigger<'a> = (i64, &'a str, bool);

/// Feeds `secs` seconds of frames, applying triggers (time in tenths of a
/// second, key, start?) just before the frame of that time; returns the
/// times written, in tenths of a second, with their in-window flags.
fn run(policy: EventPolicy, mode: Mode, secs: i64, triggers: &[Trigger]) -> Vec<(i64, bool)> {
    let mut g = Gate::new(policy);
    let mut out = Vec::new();
    for f in frames(secs) {
        let tenth = f.time.0 * 10 / SEC;
        for &(t, key, start) in triggers.iter().filter(|t| t.0 == tenth) {
            let time = Time90k(t * SEC / 10);
            if start {
                g.start(key, time, mode, &mut out);
            } else {
                g.stop(key, time);
            }
        }
        g.frame(f, mode, &mut out);
        assert!(g.stats.buffer_bytes <= policy.buffer_limit);
    }
    out.iter().map(|(f, w)| (f.time.0 * 10 / SEC, *w)).collect()
}

fn policy(pre: i64, post: i64) -> EventPolicy {
    EventPolicy {
        pre: pre * SEC,
        post: post * SEC,
        max_len: 3600 * SEC,
        buffer_limit: 64 << 20,
    }
}

fn range(a: i64, b: i64) -> Vec<(i64, bool)> {
    (a..=b).map(|t| (t, true)).collect()
}

#[test]
fn seed_policy_writes_exactly_pre_to_post() {
    // Event from 100.0 s to 105.0 s, 30 s before, 2 min after.
    let got = run(
        policy(30, 120),
        Mode::Events,
        400,
        &[(1000, "door", true), (1050, "door", false)],
    );
    // From the key frame at 70.0 s to the frame at 225.0 s inclusive.
    assert_eq!(got, range(700, 2250));
}

#[test]
fn start_between_key_frames_rounds_back_to_the_gop() {
    let got = run(
        policy(30, 120),
        Mode::Events,
        400,
        &[(1004, "m", true), (1006, "m", false)],
    );
    // 100.4 − 30 = 70.4 → key frame at 70.0; end 100.6 + 120 = 220.6.
    assert_eq!(got, range(700, 2206));
}

#[test]
fn zero_pre_starts_at_the_key_frame_at_or_before_the_event() {
    let got = run(policy(0, 2), Mode::Events, 60, &[(305, "m", true), (310, "m", false)]);
    assert_eq!(got, range(300, 330));
}

#[test]
fn buffer_reaches_back_only_as_far_as_it_has_seen() {
    // An event 5 s after start with 30 s of pre: everything since the first key frame.
    let got = run(policy(30, 1), Mode::Events, 20, &[(50, "m", true), (60, "m", false)]);
    assert_eq!(got, range(0, 70));
}

#[test]
fn overlapping_and_back_to_back_events_merge_into_one_window() {
    let t = [
        (1000, "a", true),
        (1100, "b", true),
        (1200, "a", false),
        (1300, "b", false),
        // Starts before b's post time runs out: same window.
        (1400, "a", true),
        (1450, "a", false),
    ];
    let got = run(policy(10, 20), Mode::Events, 300, &t);
    assert_eq!(got, range(900, 1650));
}

#[test]
fn separate_events_make_separate_windows() {
    let t = [
        (500, "a", true),
        (510, "a", false),
        (1500, "a", true),
        (1510, "a", false),
    ];
    let got = run(policy(5, 5), Mode::Events, 200, &t);
    let mut want = range(450, 560);
    want.extend(range(1450, 1560));
    assert_eq!(got, want);
}

#[test]
fn max_len_caps_a_runaway_event_until_it_stops() {
    let mut p = policy(2, 5);
    p.max_len = 20 * SEC;
    // Motion stuck on from 10 s; stops at 100 s; starts again at 120 s.
    let t = [
        (100, "m", true),
        (1000, "m", false),
        (1200, "m", true),
        (1210, "m", false),
    ];
    let got = run(p, Mode::Events, 150, &t);
    let mut want = range(80, 280); // 8 s + 20 s cap
    want.extend(range(1180, 1260));
    assert_eq!(got, want);
}

#[test]
fn buffer_memory_is_bounded_by_dropping_whole_gops() {
    let mut p = policy(30, 1);
    p.buffer_limit = 25_000; // 2.5 s of 1000-byte frames
    let mut g = Gate::new(p);
    let mut out = Vec::new();
    for f in frames(60) {
        g.frame(f, Mode::Events, &mut out);
        assert!(g.stats.buffer_bytes <= 25_000);
    }
    assert!(out.is_empty());
    assert!(g.stats.buffer_overflows > 0);
    // What is left starts at a key frame: an event now writes whole GOPs.
    g.start("m", Time90k(60 * SEC), Mode::Events, &mut out);
    assert!(out[0].0.key);
    assert!(out.len() <= 25);
}

#[test]
fn continuous_writes_everything_and_marks_nothing() {
    let got = run(
        policy(30, 120),
        Mode::Continuous,
        20,
        &[(50, "m", true), (60, "m", false)],
    );
    assert_eq!(got, (0..200).map(|t| (t, false)).collect::<Vec<_>>());
}

#[test]
fn continuous_events_writes_everything_and_marks_the_window() {
    let got = run(
        policy(2, 3),
        Mode::ContinuousEvents,
        20,
        &[(50, "m", true), (60, "m", false)],
    );
    assert_eq!(got.len(), 200);
    let marked: Vec<i64> = got.iter().filter(|g| g.1).map(|g| g.0).collect();
    // From the event's arrival (earlier footage was already written) to end + post.
    assert_eq!(marked, (50..=90).collect::<Vec<_>>());
}

#[test]
fn off_writes_nothing() {
    assert!(run(policy(2, 3), Mode::Off, 20, &[(50, "m", true), (60, "m", false)]).is_empty());
}

#[test]
fn unknown_stop_is_ignored_and_output_always_starts_at_a_key_frame() {
    // Exhaustive over small trigger patterns: every window starts at a key frame
    // and windows never overlap or run backwards.
    let times = [0, 7, 15, 33, 34, 80, 95];
    for a in times {
        for b in times {
            for c in times {
                let t = [(a, "x", true), (b, "y", false), (c, "x", false), (b + 3, "y", true)];
                let mut g = Gate::new(policy(1, 1));
                let mut out = Vec::new();
                let mut last = -1;
                let mut prev_written: Option<i64> = None;
                for f in frames(12) {
                    let tenth = f.time.0 * 10 / SEC;
                    for &(tt, key, start) in t.iter().filter(|x| x.0 == tenth) {
                        if start {
                            g.start(key, Time90k(tt * SEC / 10), Mode::Events, &mut out);
                        } else {
                            g.stop(key, Time90k(tt * SEC / 10));
                        }
                    }
                    g.frame(f, Mode::Events, &mut out);
                    for (f, _) in out.drain(..) {
                        let t = f.time.0 * 10 / SEC;
                        assert!(t > last, "out of order at {t}");
                        if prev_written != Some(t - 1) {
                            assert!(f.key, "run starting at {t} is not at a key frame ({a},{b},{c})");
                        }
                        prev_written = Some(t);
                        last = t;
                    }
                }
            }
        }
    }
}

#[test]
fn a_new_policy_takes_effect_at_the_next_event_and_keeps_the_buffer() {
    let mut g = Gate::new(policy(1, 1));
    let mut out = Vec::new();
    let mut all = frames(20);
    for f in all.by_ref().take(100) {
        g.frame(f, Mode::Events, &mut out);
    }
    assert!(out.is_empty());
    // Live apply: 5 s before each event instead of 1. The buffer then grows
    // to hold 5 s, so an event 6 s later reaches 5 s back (to the key frame
    // at 10.0 s), where the old policy would have reached to 14.0 s.
    g.set_policy(policy(5, 1));
    for f in all.by_ref().take(60) {
        g.frame(f, Mode::Events, &mut out);
    }
    assert!(out.is_empty());
    g.start("m", Time90k(159 * SEC / 10), Mode::Events, &mut out);
    let first = out.first().map(|(f, _)| f.time.0 * 10 / SEC);
    assert_eq!(first, Some(100));
    // A smaller buffer limit shows at once in the statistics.
    g.set_policy(EventPolicy {
        buffer_limit: 1 << 20,
        ..policy(5, 1)
    });
    assert_eq!(g.stats.buffer_limit_bytes, 1 << 20);
}
