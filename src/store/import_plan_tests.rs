use proptest::prelude::*;

use super::*;

const FRAME: i64 = 3600;

fn frames(n: usize, key_every: usize) -> Vec<FrameSpan> {
    (0..n)
        .map(|i| (Time90k(i as i64 * FRAME), FRAME as u32, i % key_every == 0))
        .collect()
}

/// A complete segment of ours holding frames `a..b` of `frames()`, its last
/// frame stored with a full interval.
fn ours(a: i64, b: i64) -> Held {
    Held::complete(
        Time90k(a * FRAME),
        Time90k(b * FRAME),
        (b - a) as u32,
        Some(FRAME as u32),
    )
}

#[test]
fn keeps_everything_without_local_footage() {
    assert_eq!(plan_kept(&frames(20, 5), &[]), vec![0..20]);
}

#[test]
fn drops_overlap_and_restarts_at_a_key_frame() {
    // We hold frames 7..=9.
    let held = [ours(7, 10)];
    // After the overlap, frame 10 is a key frame (key every 5).
    assert_eq!(plan_kept(&frames(20, 5), &held), vec![0..7, 10..20]);
    // With key frames every 4, the run after the overlap waits for frame 12.
    assert_eq!(plan_kept(&frames(20, 4), &held), vec![0..7, 12..20]);
}

#[test]
fn failback_overlap_at_the_end_is_trimmed() {
    // The primary resumed during frame 15 (its clock 100 ticks late) and is
    // still writing: the standby's frames from 15 on are the primary's too.
    let held = [Held::writing(Time90k(15 * FRAME + 100))];
    assert_eq!(plan_kept(&frames(20, 5), &held), vec![0..15]);
    // Its clock early by most of half a frame: frame 14 is still the standby's.
    let held = [Held::writing(Time90k(15 * FRAME - 1700))];
    assert_eq!(plan_kept(&frames(20, 5), &held), vec![0..15]);
    // Everything held: nothing kept.
    assert!(plan_kept(&frames(20, 5), &[Held::writing(Time90k(0))]).is_empty());
}

#[test]
fn a_lone_last_frame_we_hold_is_not_stored_twice() {
    // The lab's duplicate (standby, channel 1): the writer rotated at key
    // frame 10, then the channel was unbound; that segment's only frame has
    // no successor and was stored with a duration of 1 tick. Gap fill then
    // replayed from that frame on (the same time, give or take an offset
    // error of a tick).
    let held = [
        ours(0, 10),
        Held::complete(Time90k(10 * FRAME), Time90k(10 * FRAME + 1), 1, Some(1)),
    ];
    for err in [-1, 0, 1, 1799, -1799] {
        let mut replayed: Vec<FrameSpan> = frames(20, 5)[10..].to_vec();
        retime(&mut replayed, err);
        // Frame 10 is ours; gap fill continues after it with frame 11.
        assert_eq!(plan_kept_continuing(&replayed, &held), vec![1..10], "error {err}");
        // A failback transfer of the same frames waits for key frame 15.
        assert_eq!(plan_kept(&replayed, &held), vec![5..10], "error {err}");
    }
    // Judging its middle against the segment's end (the old rule) kept it:
    // 10 × FRAME + 1800 is past the end, 10 × FRAME + 1.
    let lone = held[1];
    assert_eq!(lone.last, Some(Time90k(10 * FRAME)));
}

#[test]
fn a_held_segment_is_judged_by_its_last_frames_start() {
    let s = Time90k(1_000_000);
    // From the frame index: 10 frames, the last one 1 tick long.
    let h = Held::complete(s, s + (9 * FRAME + 1), 10, Some(1));
    assert_eq!(h.last, Some(s + 9 * FRAME));
    // Without a readable index: the mean interval.
    assert_eq!(Held::complete(s, s + 10 * FRAME, 10, None).last, Some(s + 9 * FRAME));
    // A row claiming less than its last frame's duration stays inside itself.
    assert_eq!(Held::complete(s, s + 5, 1, Some(3600)).last, Some(s));
    assert_eq!(Held::complete(s, s, 0, None).last, Some(s));
    assert_eq!(Held::writing(s).last, None);
}

#[test]
fn replayed_footage_continues_our_own_mid_gop() {
    // Ours ends inside a GOP (frames 0..7, a crash) and starts again at key
    // frame 15 (still being written): frames 7..15 are kept though 7 is no
    // key frame.
    let held = [ours(0, 7), Held::writing(Time90k(15 * FRAME))];
    assert_eq!(plan_kept_continuing(&frames(20, 5), &held), vec![7..15]);
    assert_eq!(
        plan_kept(&frames(20, 5), &held),
        vec![10..15],
        "failback waits for a key frame"
    );
    // Nothing of ours before it: still from a key frame only.
    let mut f = frames(10, 5);
    f[0].2 = false;
    assert_eq!(plan_kept_continuing(&f, &[]), vec![5..10]);
    // Every split of 12 frames (key every 4) between ours and theirs:
    // continuing keeps exactly the frames we lack after our first frame.
    for cut in 0..=12i64 {
        let held: Vec<Held> = (cut > 0).then(|| ours(0, cut)).into_iter().collect();
        let kept: usize = plan_kept_continuing(&frames(12, 4), &held)
            .iter()
            .map(|r| r.len())
            .sum();
        assert_eq!(kept, 12 - cut as usize, "cut {cut}");
    }
}

#[test]
fn leading_non_key_frames_are_dropped() {
    let mut f = frames(10, 5);
    f[0].2 = false;
    assert_eq!(plan_kept(&f, &[]), vec![5..10]);
}

#[test]
fn a_hole_in_the_import_does_not_widen_the_tolerance() {
    // Frames 0..5, then (after a 2 s hole in what the camera kept) 55..60;
    // we hold from 5 on: the frame after the hole is judged by its 3600-tick
    // neighbour, not by the hole, so it is not taken for ours.
    let f: Vec<FrameSpan> = (0..5)
        .chain(55..60)
        .map(|i| (Time90k(i * FRAME), FRAME as u32, i % 5 == 0))
        .collect();
    assert_eq!(plan_kept(&f, &[ours(5, 54)]), vec![0..10]);
    // A single imported frame is judged by its own duration.
    let one = [(Time90k(10 * FRAME + 1700), FRAME as u32, true)];
    assert!(plan_kept(&one, &[ours(0, 11)]).is_empty());
    assert_eq!(plan_kept(&one, &[ours(0, 10)]), vec![0..1]);
}

#[test]
fn capture_shift_moves_peer_frames_into_our_time() {
    let s = 90_000;
    // The sender's clock is 3 s behind the camera's, ours is right: its
    // frames are stamped 3 s early by our clock.
    assert_eq!(capture_shift(Some(3 * s), Some(0)), 3 * s);
    // Ours 3 s ahead of the sender's (the clock-skew lab): its offset is
    // 3 s larger than ours.
    assert_eq!(capture_shift(Some(0), Some(-3 * s)), 3 * s);
    assert_eq!(capture_shift(Some(-s), Some(-s)), 0);
    // Unknown on either side: no shift.
    assert_eq!(capture_shift(None, Some(s)), 0);
    assert_eq!(capture_shift(Some(s), None), 0);
    assert_eq!(capture_shift(None, None), 0);
    // An unset clock is not a skew.
    assert_eq!(capture_shift(Some(MAX_CAPTURE_OFFSET + 1), Some(0)), 0);
    assert_eq!(capture_shift(Some(0), Some(-MAX_CAPTURE_OFFSET - 1)), 0);
    // What the kept runs are stored with.
    assert_eq!(kept_capture_offset(Some(3 * s), Some(s)), Some(s));
    assert_eq!(kept_capture_offset(Some(s), Some(s)), Some(s));
    assert_eq!(kept_capture_offset(Some(2 * s), None), Some(2 * s));
    assert_eq!(kept_capture_offset(None, Some(s)), Some(s));
    assert_eq!(kept_capture_offset(None, None), None);
    assert_eq!(kept_capture_offset(Some(MAX_CAPTURE_OFFSET + 1), None), None);
}

#[test]
fn shifted_peer_footage_merges_without_duplicates_or_drops() {
    // The camera sends frames every 3600 ticks. We (clock 3 s ahead of
    // the peer's) recorded frames 0..10 and 30..40 of the camera; the
    // peer recorded 5..35 and stamped them 3 s earlier than we would.
    let s = 90_000;
    let ours_at = |n: i64| Time90k(10 * s + n * FRAME);
    let held = [
        Held::complete(ours_at(0), ours_at(10), 10, Some(FRAME as u32)),
        Held::complete(ours_at(30), ours_at(40), 10, Some(FRAME as u32)),
    ];
    let mut peer: Vec<FrameSpan> = (5..35).map(|n| (ours_at(n) + -3 * s, 3600, n % 5 == 0)).collect();
    // Unshifted, the peer's frames fall 3 s early: nothing overlaps, so
    // frames 5..10 and 30..35 would be stored twice.
    assert_eq!(plan_kept(&peer, &held), vec![0..30]);
    retime(&mut peer, capture_shift(Some(-3 * s), Some(-6 * s)));
    assert_eq!(peer[0].0, ours_at(5));
    // Shifted: exactly the camera's frames 10..30 are kept.
    let kept = plan_kept(&peer, &held);
    assert_eq!(kept, vec![5..25]);
    assert_eq!(peer[kept[0].start].0, ours_at(10));
    assert_eq!(peer[kept[0].end - 1].0 + 3600, ours_at(30));
}

/// What a merge must keep, from the frames' identities alone: every frame
/// we lack that decodes (a key frame, or — when continuing — our own frame
/// or a kept one before it in the same GOP).
fn oracle(key: &[bool], held: &[bool], continuing: bool) -> Vec<bool> {
    let mut decodes = false;
    key.iter()
        .zip(held)
        .map(|(&k, &h)| {
            if h {
                decodes = continuing;
                return false;
            }
            decodes |= k;
            decodes
        })
        .collect()
}

proptest! {
    /// Merging a copy of the camera's frames — some of which we hold in
    /// segments whose last frame has any stored duration (1 tick included),
    /// the copy shifted by an offset error below half a frame interval (less
    /// the intervals' jitter: a frame at the copy's edge has one neighbour to
    /// judge the interval by) — stores no frame twice and drops no decodable
    /// frame we lack.
    #[test]
    fn a_shifted_copy_is_never_stored_twice_nor_dropped(
        base in 2400i64..4800,
        jitter in proptest::collection::vec(-100i64..=100, 2..120),
        key_every in 1usize..30,
        key_phase in 0usize..30,
        held_bits in proptest::collection::vec(any::<bool>(), 120),
        splits in proptest::collection::vec(any::<bool>(), 120),
        last_durations in proptest::collection::vec(1u32..6000, 120),
        writing in any::<bool>(),
        window in (0usize..120, 0usize..120),
        err_frac in -0.999f64..0.999,
        continuing in any::<bool>(),
    ) {
        // Frame intervals within ±10 % of the stream's.
        let intervals: Vec<i64> = jitter.iter().map(|j| base + base * j / 1000).collect();
        let n = intervals.len() + 1;
        let mut times = vec![Time90k(1_700_000_000 * 90_000)];
        for d in &intervals {
            let last = *times.last().unwrap();
            times.push(last + *d);
        }
        let key: Vec<bool> = (0..n).map(|i| (i + key_phase) % key_every == 0).collect();
        let mut held: Vec<bool> = held_bits[..n].to_vec();
        // Our segments: runs of held frames, split anywhere; the last run
        // may still be being written (then we hold everything after it too).
        let mut segs: Vec<Held> = Vec::new();
        let mut i = 0;
        while i < n {
            if !held[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < n && held[i + 1] && !splits[i + 1] {
                i += 1;
            }
            let first = times[start];
            let end = times[i] + i64::from(last_durations[i]);
            segs.push(Held::complete(first, end, (i - start + 1) as u32, Some(last_durations[i])));
            i += 1;
        }
        if writing {
            if let Some(w) = segs.pop() {
                let from = times.iter().position(|t| *t == w.first).unwrap();
                held[from..].iter_mut().for_each(|h| *h = true);
                segs.push(Held::writing(w.first));
            }
        }
        let (a, b) = (window.0 % n, window.1 % n);
        let (a, b) = (a.min(b), a.max(b) + 1);
        let (min, max) = (*intervals.iter().min().unwrap(), *intervals.iter().max().unwrap());
        let err = (err_frac * (min - max / 2) as f64) as i64;
        let copy: Vec<FrameSpan> = (a..b).map(|i| (times[i] + err, 3000, key[i])).collect();
        let runs = if continuing {
            plan_kept_continuing(&copy, &segs)
        } else {
            plan_kept(&copy, &segs)
        };
        let mut kept = vec![false; copy.len()];
        for r in &runs {
            prop_assert!(copy[r.start].2 || (continuing && r.start > 0 && held[a + r.start - 1]),
                "run {r:?} starts where it cannot decode");
            kept[r.clone()].iter_mut().for_each(|k| *k = true);
        }
        let want = oracle(&key[a..b], &held[a..b], continuing);
        prop_assert_eq!(kept, want, "held {:?} err {}", &held[a..b], err);
    }
}
