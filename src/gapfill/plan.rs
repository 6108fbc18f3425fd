//! Finding holes: which stretches of a channel's timeline gap fill must ask
//! a camera for. A hole is a stretch between two recorded runs of the channel
//! while it was bound, throughout, to one network camera with edge storage
//! (reconnects, camera or network outages, this NVR's own crash and restart),
//! found from the segment rows once the later run has started.
//!
//! Pure: the runs, the binding history, the jobs already made and `now` are
//! passed in. Must never make a job for a stretch before the channel was
//! bound to the camera, for a stretch some job already covers (jobs are
//! never made twice for the same time), for a stretch the channel's schedule
//! did not record continuously, or for one older than `max_age`.

use std::collections::HashSet;

use super::job::Reason;
use crate::time::Time90k;

/// Shorter gaps between runs are the jitter of a frame's guessed duration
/// (a closing segment's last frame), not missing frames: a tenth of a
/// second is under three frames at 25 fps.
pub const MIN_HOLE: i64 = 9_000;
/// Binding spans of one camera this close together are one stretch: the
/// start-up closes the last process's span just before binding again.
pub const BIND_SLACK: i64 = 10 * 90_000;

/// One stretch of a channel's binding history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingSpan {
    pub camera: String,
    pub start: Time90k,
    /// `None` while the binding holds.
    pub end: Option<Time90k>,
    /// Ended by this NVR's start-up (the process before it stopped or
    /// crashed while bound), not by an unbind.
    pub ended_by_restart: bool,
}

/// A hole to make a job of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hole {
    pub channel: u32,
    pub camera: String,
    pub start: Time90k,
    pub end: Time90k,
    pub reason: Reason,
}

/// Everything the planner looks at for one channel.
pub struct ChannelInput<'a> {
    pub channel: u32,
    /// The channel's recorded stretches (segment rows: start, end), any order.
    pub runs: &'a [(Time90k, Time90k)],
    /// Its binding history, any order.
    pub bindings: &'a [BindingSpan],
    /// Cameras configured with `edge_storage = true`.
    pub edge_cameras: &'a HashSet<String>,
    /// Stretches of this channel some job already covers.
    pub jobs: &'a [(Time90k, Time90k)],
    /// Holes ending before this are too old to ask for.
    pub oldest: Option<Time90k>,
    /// Whether the channel's schedule records continuously at a time.
    pub continuous: &'a dyn Fn(Time90k) -> bool,
}

/// Gaps between the runs: stretches no run covers, between the first run's
/// start and the last run's start.
pub fn gaps(runs: &[(Time90k, Time90k)]) -> Vec<(Time90k, Time90k)> {
    let mut sorted: Vec<(Time90k, Time90k)> = runs.iter().copied().filter(|(a, b)| b >= a).collect();
    sorted.sort();
    let mut out = Vec::new();
    let mut covered: Option<Time90k> = None;
    for (a, b) in sorted {
        if let Some(c) = covered {
            if a - c >= MIN_HOLE {
                out.push((c, a));
            }
        }
        covered = Some(covered.map_or(b, |c| c.max(b)));
    }
    out
}

/// One camera's binding spans merged into stretches, with the restarts
/// inside each: (start, end or None, times a restart ended a span).
fn stretches(bindings: &[BindingSpan], camera: &str) -> Vec<(Time90k, Option<Time90k>, Vec<Time90k>)> {
    let mut spans: Vec<&BindingSpan> = bindings.iter().filter(|b| b.camera == camera).collect();
    spans.sort_by_key(|b| b.start);
    let mut out: Vec<(Time90k, Option<Time90k>, Vec<Time90k>)> = Vec::new();
    for b in spans {
        if let Some(last) = out.last_mut() {
            match last.1 {
                None => continue,
                Some(e) if b.start - e <= BIND_SLACK => {
                    last.1 = b.end.map(|be| be.max(e));
                    if b.ended_by_restart {
                        last.2.extend(b.end);
                    }
                    continue;
                }
                Some(_) => {}
            }
        }
        let restarts = if b.ended_by_restart {
            b.end.into_iter().collect()
        } else {
            Vec::new()
        };
        out.push((b.start, b.end, restarts));
    }
    out
}

/// `[a, b)` less every interval of `taken`.
pub fn subtract(a: Time90k, b: Time90k, taken: &[(Time90k, Time90k)]) -> Vec<(Time90k, Time90k)> {
    let mut taken: Vec<(Time90k, Time90k)> = taken.iter().copied().filter(|(x, y)| y > x).collect();
    taken.sort();
    let mut out = Vec::new();
    let mut from = a;
    for (x, y) in taken {
        if y <= from || x >= b {
            continue;
        }
        if x > from {
            out.push((from, x));
        }
        from = from.max(y);
    }
    if from < b {
        out.push((from, b));
    }
    out
}

/// The holes of one channel that need a new job.
pub fn holes(input: &ChannelInput<'_>) -> Vec<Hole> {
    let mut out = Vec::new();
    for (a, b) in gaps(input.runs) {
        if input.oldest.is_some_and(|o| b <= o) {
            continue;
        }
        let a = input.oldest.map_or(a, |o| a.max(o));
        // The camera bound throughout the gap, with edge storage.
        let found = input
            .edge_cameras
            .iter()
            .filter_map(|cam| {
                stretches(input.bindings, cam)
                    .into_iter()
                    .find(|(s, e, _)| *s <= a && e.is_none_or(|e| e >= b))
                    .map(|(_, _, restarts)| (cam, restarts))
            })
            .min_by(|x, y| x.0.cmp(y.0));
        let Some((camera, restarts)) = found else { continue };
        let mid = Time90k(a.0 + (b - a) / 2);
        if ![a, mid, b].iter().all(|&t| (input.continuous)(t)) {
            continue;
        }
        let reason = if restarts.iter().any(|&r| r >= a && r <= b) {
            Reason::Startup
        } else {
            Reason::Reconnect
        };
        for (x, y) in subtract(a, b, input.jobs) {
            if y - x >= MIN_HOLE {
                out.push(Hole {
                    channel: input.channel,
                    camera: camera.clone(),
                    start: x,
                    end: y,
                    reason,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 90_000;

    fn t(s: i64) -> Time90k {
        Time90k(s * S)
    }

    fn span(camera: &str, a: i64, b: Option<i64>, restart: bool) -> BindingSpan {
        BindingSpan {
            camera: camera.into(),
            start: t(a),
            end: b.map(t),
            ended_by_restart: restart,
        }
    }

    fn edge(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn plan(
        runs: &[(i64, i64)],
        bindings: &[BindingSpan],
        edge: &HashSet<String>,
        jobs: &[(i64, i64)],
        oldest: Option<i64>,
    ) -> Vec<(i64, i64, Reason)> {
        let runs: Vec<_> = runs.iter().map(|&(a, b)| (t(a), t(b))).collect();
        let jobs: Vec<_> = jobs.iter().map(|&(a, b)| (t(a), t(b))).collect();
        let always = |_: Time90k| true;
        holes(&ChannelInput {
            channel: 3,
            runs: &runs,
            bindings,
            edge_cameras: edge,
            jobs: &jobs,
            oldest: oldest.map(t),
            continuous: &always,
        })
        .into_iter()
        .map(|h| {
            assert_eq!(h.channel, 3);
            (h.start.0 / S, h.end.0 / S, h.reason)
        })
        .collect()
    }

    #[test]
    fn gaps_ignore_jitter_and_overlaps() {
        let r = |v: &[(i64, i64)]| -> Vec<(i64, i64)> {
            let runs: Vec<_> = v.iter().map(|&(a, b)| (Time90k(a), Time90k(b))).collect();
            gaps(&runs).into_iter().map(|(a, b)| (a.0, b.0)).collect()
        };
        assert_eq!(r(&[]), vec![]);
        assert_eq!(r(&[(0, 100)]), vec![]);
        // Back to back, a few ticks apart, or overlapping: no gap.
        assert_eq!(r(&[(0, 100), (100, 200), (205, 300), (250, 280)]), vec![]);
        // Any order; a long segment covering a later short one.
        assert_eq!(
            r(&[(50_000, 60_000), (0, 20_000), (5_000, 6_000)]),
            vec![(20_000, 50_000)]
        );
        assert_eq!(r(&[(0, 10_000), (10_000 + MIN_HOLE - 1, 30_000)]), vec![]);
        assert_eq!(
            r(&[(0, 10_000), (10_000 + MIN_HOLE, 30_000)]),
            vec![(10_000, 10_000 + MIN_HOLE)]
        );
        // A row whose end is before its start is ignored.
        assert_eq!(r(&[(0, 100), (500, 400)]), vec![]);
    }

    #[test]
    fn a_reconnect_while_bound_is_a_hole() {
        let b = [span("cam", 0, None, false)];
        let got = plan(&[(10, 70), (75, 100)], &b, &edge(&["cam"]), &[], None);
        assert_eq!(got, vec![(70, 75, Reason::Reconnect)]);
        // No later run yet: nothing (the outage may still be going on).
        assert!(plan(&[(10, 70)], &b, &edge(&["cam"]), &[], None).is_empty());
    }

    #[test]
    fn only_cameras_with_edge_storage() {
        let b = [span("cam", 0, None, false)];
        assert!(plan(&[(10, 70), (75, 100)], &b, &edge(&["other"]), &[], None).is_empty());
        assert!(plan(&[(10, 70), (75, 100)], &b, &edge(&[]), &[], None).is_empty());
    }

    #[test]
    fn never_before_the_channel_was_bound_nor_while_unbound() {
        // Footage from before the binding history (or another NVR's import)
        // and a run after binding: the stretch before binding is not ours.
        let b = [span("cam", 50, None, false)];
        assert!(plan(&[(10, 20), (55, 100)], &b, &edge(&["cam"]), &[], None).is_empty());
        // A standby bound twice (two failovers): the stretch between, when
        // the primary recorded, is not a hole of the standby.
        let b = [span("cam", 0, Some(60), false), span("cam", 200, None, false)];
        assert!(plan(&[(1, 60), (201, 260)], &b, &edge(&["cam"]), &[], None).is_empty());
        // Bound to another camera in between: no single camera had it all.
        let b = [
            span("cam", 0, Some(60), false),
            span("other", 60, Some(200), false),
            span("cam", 200, None, false),
        ];
        assert!(plan(&[(1, 60), (201, 260)], &b, &edge(&["cam", "other"]), &[], None).is_empty());
    }

    #[test]
    fn a_crash_and_restart_is_a_startup_hole() {
        // The process crashed at 60 while bound; the next one started at 80,
        // ended the old span there and bound again a moment later.
        let b = [span("cam", 0, Some(80), true), span("cam", 81, None, false)];
        let got = plan(&[(1, 60), (82, 120)], &b, &edge(&["cam"]), &[], None);
        assert_eq!(got, vec![(60, 82, Reason::Startup)]);
        // A restart long before the hole does not make it a startup hole.
        let got = plan(&[(1, 60), (82, 120), (130, 140)], &b, &edge(&["cam"]), &[], None);
        assert_eq!(got, vec![(60, 82, Reason::Startup), (120, 130, Reason::Reconnect)]);
        // Started again much later than the slack: the stretches do not join.
        let b = [span("cam", 0, Some(80), true), span("cam", 80 + 11, None, false)];
        assert!(plan(&[(1, 60), (92, 120)], &b, &edge(&["cam"]), &[], None).is_empty());
    }

    #[test]
    fn never_twice_for_the_same_time() {
        let b = [span("cam", 0, None, false)];
        let e = edge(&["cam"]);
        let runs = [(10, 70), (80, 100)];
        assert!(plan(&runs, &b, &e, &[(70, 80)], None).is_empty());
        assert!(plan(&runs, &b, &e, &[(60, 90)], None).is_empty());
        // Part of it covered: only the rest.
        assert_eq!(
            plan(&runs, &b, &e, &[(70, 75)], None),
            vec![(75, 80, Reason::Reconnect)]
        );
        assert_eq!(
            plan(&runs, &b, &e, &[(72, 74), (76, 78)], None),
            vec![
                (70, 72, Reason::Reconnect),
                (74, 76, Reason::Reconnect),
                (78, 80, Reason::Reconnect)
            ]
        );
        // A filled hole (merged runs inside it) leaves nothing to plan.
        assert!(plan(&[(10, 70), (70, 80), (80, 100)], &b, &e, &[], None).is_empty());
    }

    #[test]
    fn too_old_holes_are_not_asked_for_and_old_parts_are_cut() {
        let b = [span("cam", 0, None, false)];
        let e = edge(&["cam"]);
        assert!(plan(&[(10, 70), (80, 100)], &b, &e, &[], Some(90)).is_empty());
        assert!(plan(&[(10, 70), (80, 100)], &b, &e, &[], Some(80)).is_empty());
        assert_eq!(
            plan(&[(10, 70), (80, 100)], &b, &e, &[], Some(75)),
            vec![(75, 80, Reason::Reconnect)]
        );
    }

    #[test]
    fn only_where_the_schedule_records_continuously() {
        let b = [span("cam", 0, None, false)];
        let e = edge(&["cam"]);
        let runs = [(t(10), t(70)), (t(80), t(100))];
        let events_after_75 = |x: Time90k| x < t(75);
        let got = holes(&ChannelInput {
            channel: 1,
            runs: &runs,
            bindings: &b,
            edge_cameras: &e,
            jobs: &[],
            oldest: None,
            continuous: &events_after_75,
        });
        assert!(got.is_empty());
    }

    #[test]
    fn exhaustive_small_timelines_never_plan_covered_or_unbound_time() {
        // Every run layout on a 6-slot line (each slot recorded or not), with
        // the camera bound from slot `bound` on and a job over slot `job`:
        // every planned hole is unrecorded, bound, unjobbed, and planning
        // again with the new jobs finds nothing more.
        let e = edge(&["cam"]);
        for mask in 0u32..64 {
            for bound in 0..6i64 {
                for job in [None, Some(2i64), Some(4)] {
                    let runs: Vec<(i64, i64)> = (0..6)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| (i as i64 * 10, i as i64 * 10 + 10))
                        .collect();
                    let b = [span("cam", bound * 10, None, false)];
                    let jobs: Vec<(i64, i64)> = job.iter().map(|&j| (j * 10, j * 10 + 10)).collect();
                    let got = plan(&runs, &b, &e, &jobs, None);
                    for &(a, z, _) in &got {
                        assert!(a >= bound * 10, "{mask:06b} bound {bound}: {a}");
                        for &(x, y) in runs.iter().chain(&jobs) {
                            assert!(z <= x || a >= y, "{mask:06b}: ({a},{z}) overlaps ({x},{y})");
                        }
                        // A run before and after it.
                        assert!(runs.iter().any(|&(_, y)| y <= a) && runs.iter().any(|&(x, _)| x >= z));
                    }
                    let mut all = jobs.clone();
                    all.extend(got.iter().map(|&(a, z, _)| (a, z)));
                    assert!(plan(&runs, &b, &e, &all, None).is_empty(), "{mask:06b}");
                    // Every unrecorded slot between the first and the last
                    // run, after binding and not jobbed, is planned.
                    let first = runs.first().map(|r| r.0);
                    let last = runs.last().map(|r| r.0);
                    for i in 0..6i64 {
                        let (a, z) = (i * 10, i * 10 + 10);
                        let hole = mask & (1 << i) == 0
                            && first.is_some_and(|f| f < a)
                            && last.is_some_and(|l| l >= z)
                            && a >= bound * 10
                            && runs.iter().any(|&(_, y)| y <= a && y >= bound * 10)
                            && job != Some(i);
                        let planned = got.iter().any(|&(x, y, _)| x <= a && y >= z);
                        assert_eq!(hole, planned, "{mask:06b} bound {bound} job {job:?} slot {i}");
                    }
                }
            }
        }
    }
}
