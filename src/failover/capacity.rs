//! N+M capacity: which of the failed primaries' cameras a standby records
//! when it cannot record them all.
//!
//! The standby's capacity (`capacity = { channels = N, mbps = X }`, see
//! docs/failover.md) is one budget for the whole NVR, shared by every rule
//! in failure. The choice, stated once:
//!
//! 1. A camera of priority `never` is not taken over, whatever the room.
//! 2. Higher priority first (`high` > `medium` > `low`), across all failed
//!    primaries.
//! 3. Within one priority, a camera already being recorded before one that
//!    is not (minimal churn: a recorded camera is dropped only for one of
//!    strictly higher priority), then the order the rules entered failure,
//!    then the rule's own order of channels.
//! 4. Each camera in that order is taken if it fits in what remains of both
//!    limits, and left otherwise (a large camera that does not fit does not
//!    stop a smaller one after it from being taken).
//!
//! Pure: the arbiter asks and applies. Must never perform I/O, consult a
//! clock, or take more than the capacity.

use std::cmp::Reverse;

/// A network camera's importance when a standby lacks room (Nx Witness's
/// scheme). Ordered: `Never` < `Low` < `Medium` < `High`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Never taken over by a standby.
    Never,
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "never" => Some(Priority::Never),
            "low" => Some(Priority::Low),
            "medium" => Some(Priority::Medium),
            "high" => Some(Priority::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Never => "never",
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }
}

/// What a standby can record for failed primaries, on top of what it records
/// in `normal`. `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Capacity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mbps: Option<f64>,
}

impl Capacity {
    pub fn is_unlimited(&self) -> bool {
        self.channels.is_none() && self.mbps.is_none()
    }
}

/// The NVR's capacity: the first rule that states it (the configuration
/// checks that the others agree).
pub fn of_rules(rules: &[super::rule::ConfiguredRule]) -> Capacity {
    rules.iter().find_map(|r| r.rule.capacity).unwrap_or_default()
}

/// Bitrate assumed for a camera never recorded here (a 1080p H.264 stream).
pub const ASSUMED_MBPS: f64 = 4.0;

/// One camera a rule in failure wants recorded on one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub channel: u32,
    pub camera: String,
    /// Position of the camera's rule in the order rules entered failure.
    pub failed: usize,
    pub priority: Priority,
    /// Measured when known, else `ASSUMED_MBPS`.
    pub mbps: f64,
    /// Being recorded now (taken at the previous decision).
    pub recording: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The standby's capacity is used by cameras that come first.
    NoCapacity,
    /// The camera's priority is `never`.
    PriorityNever,
}

/// The choice: channels to record, and channels left with the reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub take: Vec<u32>,
    pub leave: Vec<(u32, Reason)>,
}

/// Mbit/s compared with a little slack: declared figures like 0.1 do not
/// add up exactly in binary.
const EPS: f64 = 1e-9;

/// Decides which candidates are recorded (see the module doc). Candidates
/// come in the rules' own channel order; the result lists channels in the
/// order they were considered.
pub fn plan(candidates: &[Candidate], cap: Capacity) -> Plan {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // A stable sort keeps the rule's channel order as the last key.
    order.sort_by_key(|&i| {
        let c = &candidates[i];
        (Reverse(c.priority), !c.recording, c.failed)
    });
    let mut out = Plan::default();
    let (mut channels, mut mbps) = (0u32, 0.0f64);
    for i in order {
        let c = &candidates[i];
        if c.priority == Priority::Never {
            out.leave.push((c.channel, Reason::PriorityNever));
            continue;
        }
        let fits_channels = cap.channels.is_none_or(|n| channels < n);
        let fits_mbps = cap.mbps.is_none_or(|m| mbps + c.mbps <= m + EPS);
        if fits_channels && fits_mbps {
            channels += 1;
            mbps += c.mbps;
            out.take.push(c.channel);
        } else {
            out.leave.push((c.channel, Reason::NoCapacity));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(channel: u32, failed: usize, priority: Priority, mbps: f64, recording: bool) -> Candidate {
        Candidate {
            channel,
            camera: format!("cam{channel}"),
            failed,
            priority,
            mbps,
            recording,
        }
    }

    fn chans(n: u32) -> Capacity {
        Capacity {
            channels: Some(n),
            mbps: None,
        }
    }

    #[test]
    fn unlimited_takes_all_but_never() {
        let cs = [
            cand(1, 0, Priority::Low, 4.0, false),
            cand(2, 0, Priority::Never, 4.0, false),
            cand(3, 1, Priority::High, 4.0, false),
        ];
        let p = plan(&cs, Capacity::default());
        assert_eq!(p.take, vec![3, 1]);
        assert_eq!(p.leave, vec![(2, Reason::PriorityNever)]);
    }

    #[test]
    fn higher_priority_of_a_later_failure_first() {
        // Rule 0 failed first with two medium cameras; rule 1 later with a high one.
        let cs = [
            cand(1, 0, Priority::Medium, 4.0, false),
            cand(2, 0, Priority::Medium, 4.0, false),
            cand(3, 1, Priority::High, 4.0, false),
        ];
        let p = plan(&cs, chans(2));
        assert_eq!(p.take, vec![3, 1]);
        assert_eq!(p.leave, vec![(2, Reason::NoCapacity)]);
    }

    #[test]
    fn a_recorded_camera_stays_against_an_equal_priority() {
        // Channel 2 (later failure) is recorded; channel 1 (earlier) is not: no churn.
        let cs = [
            cand(1, 0, Priority::Medium, 4.0, false),
            cand(2, 1, Priority::Medium, 4.0, true),
        ];
        let p = plan(&cs, chans(1));
        assert_eq!(p.take, vec![2]);
        assert_eq!(p.leave, vec![(1, Reason::NoCapacity)]);
    }

    #[test]
    fn a_recorded_camera_yields_to_a_strictly_higher_priority() {
        let cs = [
            cand(1, 0, Priority::Low, 4.0, true),
            cand(2, 1, Priority::Medium, 4.0, false),
        ];
        let p = plan(&cs, chans(1));
        assert_eq!(p.take, vec![2]);
        assert_eq!(p.leave, vec![(1, Reason::NoCapacity)]);
    }

    #[test]
    fn mbps_limit_skips_a_large_camera_for_smaller_ones() {
        let cs = [
            cand(1, 0, Priority::High, 6.0, false),
            cand(2, 0, Priority::Medium, 5.0, false),
            cand(3, 1, Priority::Medium, 2.0, false),
            cand(4, 1, Priority::Low, 2.0, false),
        ];
        let cap = Capacity {
            channels: None,
            mbps: Some(10.0),
        };
        let p = plan(&cs, cap);
        assert_eq!(p.take, vec![1, 3, 4]);
        assert_eq!(p.leave, vec![(2, Reason::NoCapacity)]);
    }

    #[test]
    fn both_limits_apply() {
        let cs = [
            cand(1, 0, Priority::Medium, 1.0, false),
            cand(2, 0, Priority::Medium, 1.0, false),
            cand(3, 0, Priority::Medium, 1.0, false),
        ];
        let cap = Capacity {
            channels: Some(2),
            mbps: Some(0.3 + 0.7 + 1.0),
        };
        assert_eq!(plan(&cs, cap).take, vec![1, 2]);
        let cap = Capacity {
            channels: Some(3),
            mbps: Some(1.5),
        };
        assert_eq!(plan(&cs, cap).take, vec![1]);
    }

    #[test]
    fn zero_capacity_takes_nothing() {
        let cs = [cand(1, 0, Priority::High, 1.0, true)];
        let p = plan(&cs, chans(0));
        assert!(p.take.is_empty());
        assert_eq!(p.leave, vec![(1, Reason::NoCapacity)]);
    }

    #[test]
    fn priorities_parse_and_order() {
        for p in [Priority::Never, Priority::Low, Priority::Medium, Priority::High] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("urgent"), None);
        assert!(Priority::High > Priority::Medium && Priority::Medium > Priority::Low);
        assert!(Priority::Low > Priority::Never);
        assert_eq!(Priority::default(), Priority::Medium);
    }

    const PRIORITIES: [Priority; 4] = [Priority::Never, Priority::Low, Priority::Medium, Priority::High];

    /// Every choice over up to three cameras is checked against the stated
    /// properties, exhaustively for small figures.
    #[test]
    fn exhaustive_small_cases() {
        let mut cases = 0;
        for n in 0..=3usize {
            // Per camera: priority (4) × recording (2) × failure order (2) × mbps (2).
            let per = 32usize;
            for code in 0..per.pow(n as u32) {
                let mut cs = Vec::new();
                let mut c = code;
                for i in 0..n {
                    let k = c % per;
                    c /= per;
                    cs.push(cand(
                        i as u32 + 1,
                        (k >> 3) & 1,
                        PRIORITIES[k & 3],
                        if (k >> 4) & 1 == 1 { 6.0 } else { 2.0 },
                        (k >> 2) & 1 == 1,
                    ));
                }
                for ch in [None, Some(0), Some(1), Some(2), Some(3)] {
                    for mb in [None, Some(4.0), Some(8.0)] {
                        let cap = Capacity { channels: ch, mbps: mb };
                        check_properties(&cs, cap, &plan(&cs, cap));
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, (1 + 32 + 32 * 32 + 32 * 32 * 32) * 15);
    }

    fn check_properties(cs: &[Candidate], cap: Capacity, p: &Plan) {
        let by = |ch: u32| cs.iter().find(|c| c.channel == ch).unwrap();
        // Every candidate decided once.
        let mut all: Vec<u32> = p.take.iter().copied().chain(p.leave.iter().map(|l| l.0)).collect();
        all.sort_unstable();
        let mut want: Vec<u32> = cs.iter().map(|c| c.channel).collect();
        want.sort_unstable();
        assert_eq!(all, want, "{cs:?}");
        // Never over capacity.
        let used: f64 = p.take.iter().map(|&ch| by(ch).mbps).sum();
        assert!(cap.channels.is_none_or(|n| p.take.len() as u32 <= n), "{cs:?} {cap:?}");
        assert!(cap.mbps.is_none_or(|m| used <= m + EPS), "{cs:?} {cap:?}");
        for &(ch, why) in &p.leave {
            let l = by(ch);
            match why {
                Reason::PriorityNever => assert_eq!(l.priority, Priority::Never),
                Reason::NoCapacity => {
                    assert_ne!(l.priority, Priority::Never);
                    // It did not fit beside what was taken...
                    let fits_ch = cap.channels.is_none_or(|n| (p.take.len() as u32) < n);
                    let fits_mb = cap.mbps.is_none_or(|m| used + l.mbps <= m + EPS);
                    assert!(!(fits_ch && fits_mb), "left with room: {cs:?} {cap:?} {p:?}");
                    // ...and nothing taken comes after it in the order: a taken
                    // camera of lower priority, or of equal priority with a
                    // worse claim, must have been needed for a smaller fit.
                    for &t in &p.take {
                        let t = by(t);
                        assert!(t.priority != Priority::Never);
                        if t.priority < l.priority {
                            assert!(l.mbps > t.mbps, "lower priority taken instead: {cs:?} {cap:?} {p:?}");
                        }
                        if t.priority == l.priority && l.recording && !t.recording {
                            assert!(l.mbps > t.mbps, "churn for an equal priority: {cs:?} {cap:?} {p:?}");
                        }
                    }
                }
            }
        }
        // A `never` camera is never taken.
        assert!(p.take.iter().all(|&ch| by(ch).priority != Priority::Never));
    }

    proptest! {
        #[test]
        fn never_over_capacity_and_priorities_honoured(
            cams in proptest::collection::vec((0usize..4, any::<bool>(), 0usize..4, 1u32..80), 0..12),
            ch in proptest::option::of(0u32..8),
            mb in proptest::option::of(0u32..200),
        ) {
            let cs: Vec<Candidate> = cams
                .iter()
                .enumerate()
                .map(|(i, &(p, rec, failed, tenths))| cand(i as u32 + 1, failed, PRIORITIES[p], f64::from(tenths) / 10.0, rec))
                .collect();
            let cap = Capacity { channels: ch, mbps: mb.map(|m| f64::from(m) / 10.0) };
            let p = plan(&cs, cap);
            check_properties(&cs, cap, &p);
            // Deterministic, and independent of the order candidates are given in.
            let mut rev = cs.clone();
            rev.reverse();
            let mut a = p.take.clone();
            let mut b = plan(&rev, cap).take;
            a.sort_unstable();
            b.sort_unstable();
            // Equal keys may swap places, which changes what fits only for mbps.
            if cap.mbps.is_none() {
                let keys = |v: &[u32]| -> Vec<(Priority, bool, usize)> {
                    let mut k: Vec<_> = v.iter().map(|&c| { let x = cs.iter().find(|y| y.channel == c).unwrap(); (x.priority, x.recording, x.failed) }).collect();
                    k.sort_unstable();
                    k
                };
                prop_assert_eq!(keys(&a), keys(&b));
            }
        }
    }
}
