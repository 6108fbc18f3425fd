//! Retention planning: which finished segments to delete, and why.
//!
//! A pure function of the channels' oldest segments, their policies, the
//! volume's free space and the current time. The writer thread gathers the
//! inputs and carries out the plan. This module must never see a segment that
//! is still being written — callers pass finished segments only — and never
//! delete a segment newer than one it keeps on the same channel.

use std::collections::HashMap;

use crate::time::Time90k;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep continuous footage at most this long (90 kHz ticks); `None` keeps it forever.
    pub max_age: Option<i64>,
    /// Keep event footage at most this long; `None` keeps it forever.
    pub event_max_age: Option<i64>,
    /// Keep at most this many bytes for the channel.
    pub max_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub id: i64,
    pub channel: u32,
    pub start: Time90k,
    pub end: Time90k,
    pub bytes: u64,
    /// Event footage (lies in an event window) rather than continuous.
    pub event: bool,
}

/// What the planner knows of one channel: its total bytes on disk and its
/// oldest finished segments of each kind in ascending start order (a bounded
/// prefix is enough; what is not listed is planned on the next pass).
#[derive(Clone, Debug, Default)]
pub struct ChannelUsage {
    pub total_bytes: u64,
    pub oldest: Vec<SegmentInfo>,
    pub oldest_event: Vec<SegmentInfo>,
}

impl ChannelUsage {
    pub fn oldest(&self, event: bool) -> &[SegmentInfo] {
        if event {
            &self.oldest_event
        } else {
            &self.oldest
        }
    }
    pub fn oldest_mut(&mut self, event: bool) -> &mut Vec<SegmentInfo> {
        if event {
            &mut self.oldest_event
        } else {
            &mut self.oldest
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Age,
    ChannelBytes,
    FreeSpaceFloor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub segment: SegmentInfo,
    pub reason: Reason,
}

/// Plans deletions. Per channel and kind, deletions are always a prefix of
/// that kind's oldest segments. Continuous footage goes before event footage
/// when a byte cap or the free-space floor forces deletion: event footage is
/// what users keep recordings for.
pub fn plan(
    now: Time90k,
    usage: &HashMap<u32, ChannelUsage>,
    policies: &HashMap<u32, RetentionPolicy>,
    free_bytes: u64,
    min_free_bytes: u64,
) -> Vec<Deletion> {
    let mut out = Vec::new();
    // Per channel and kind, the index of the first segment not yet planned.
    let mut next: HashMap<(u32, bool), usize> = HashMap::new();
    let mut channels: Vec<&u32> = usage.keys().collect();
    channels.sort();
    for &ch in &channels {
        let u = &usage[ch];
        let p = policies.get(ch).copied().unwrap_or_default();
        let mut total = u.total_bytes;
        for event in [false, true] {
            let age = if event { p.event_max_age } else { p.max_age };
            let list = u.oldest(event);
            let mut i = 0;
            while let Some(s) = list.get(i).filter(|s| age.is_some_and(|a| s.end.0 <= now.0 - a)) {
                out.push(Deletion {
                    segment: *s,
                    reason: Reason::Age,
                });
                total = total.saturating_sub(s.bytes);
                i += 1;
            }
            next.insert((*ch, event), i);
        }
        for event in [false, true] {
            let list = u.oldest(event);
            let i = next.get_mut(&(*ch, event)).expect("set above");
            while p.max_bytes.is_some_and(|max| total > max) {
                let Some(s) = list.get(*i) else { break };
                out.push(Deletion {
                    segment: *s,
                    reason: Reason::ChannelBytes,
                });
                total = total.saturating_sub(s.bytes);
                *i += 1;
            }
        }
    }
    let mut free = free_bytes + out.iter().map(|d| d.segment.bytes).sum::<u64>();
    for event in [false, true] {
        while free < min_free_bytes {
            // The oldest remaining segment of this kind on any channel goes first.
            let pick = channels
                .iter()
                .filter_map(|&ch| usage[ch].oldest(event).get(next[&(*ch, event)]).map(|s| (s.start, *ch)))
                .min();
            let Some((_, ch)) = pick else { break };
            let i = next.get_mut(&(ch, event)).expect("channel present");
            let s = usage[&ch].oldest(event)[*i];
            *i += 1;
            free += s.bytes;
            out.push(Deletion {
                segment: s,
                reason: Reason::FreeSpaceFloor,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * 90_000;

    fn segs(ch: u32, n: i64, bytes: u64) -> ChannelUsage {
        let oldest: Vec<_> = (0..n)
            .map(|i| SegmentInfo {
                id: i64::from(ch) * 1000 + i,
                channel: ch,
                start: Time90k(i * MIN + i64::from(ch)),
                end: Time90k((i + 1) * MIN + i64::from(ch)),
                bytes,
                event: false,
            })
            .collect();
        ChannelUsage {
            total_bytes: bytes * n as u64,
            oldest,
            oldest_event: Vec::new(),
        }
    }

    fn ids(d: &[Deletion]) -> Vec<i64> {
        d.iter().map(|d| d.segment.id).collect()
    }

    #[test]
    fn nothing_to_do() {
        let usage = HashMap::from([(1, segs(1, 10, 100))]);
        let pol = HashMap::from([(
            1,
            RetentionPolicy {
                max_age: Some(60 * MIN),
                max_bytes: Some(10_000),
                ..Default::default()
            },
        )]);
        assert!(plan(Time90k(10 * MIN), &usage, &pol, 1 << 30, 1 << 20).is_empty());
    }

    #[test]
    fn age_deletes_only_fully_expired_segments() {
        let usage = HashMap::from([(1, segs(1, 10, 100))]);
        let pol = HashMap::from([(
            1,
            RetentionPolicy {
                max_age: Some(5 * MIN),
                max_bytes: None,
                ..Default::default()
            },
        )]);
        // now = 10 min: segments ending at or before 5 min go (ids 0..4 end at 1..5 min + 1 tick).
        let d = plan(Time90k(10 * MIN + 1), &usage, &pol, 1 << 30, 0);
        assert_eq!(ids(&d), vec![1000, 1001, 1002, 1003, 1004]);
        assert!(d.iter().all(|d| d.reason == Reason::Age));
    }

    #[test]
    fn bytes_cap_deletes_oldest_until_under() {
        let usage = HashMap::from([(2, segs(2, 10, 100))]);
        let pol = HashMap::from([(
            2,
            RetentionPolicy {
                max_age: None,
                max_bytes: Some(750),
                ..Default::default()
            },
        )]);
        let d = plan(Time90k(0), &usage, &pol, 1 << 30, 0);
        assert_eq!(ids(&d), vec![2000, 2001, 2002]);
        assert!(d.iter().all(|d| d.reason == Reason::ChannelBytes));
    }

    #[test]
    fn free_space_floor_takes_globally_oldest_first() {
        let usage = HashMap::from([(1, segs(1, 3, 100)), (2, segs(2, 3, 100))]);
        let d = plan(Time90k(0), &usage, &HashMap::new(), 50, 300);
        // Need 250 more bytes: three segments, alternating channels by start time.
        assert_eq!(ids(&d), vec![1000, 2000, 1001]);
        assert!(d.iter().all(|d| d.reason == Reason::FreeSpaceFloor));
    }

    #[test]
    fn floor_counts_what_policies_already_freed() {
        let usage = HashMap::from([(1, segs(1, 5, 100)), (2, segs(2, 5, 100))]);
        let pol = HashMap::from([(
            2,
            RetentionPolicy {
                max_age: None,
                max_bytes: Some(300),
                ..Default::default()
            },
        )]);
        let d = plan(Time90k(0), &usage, &pol, 0, 250);
        // Channel 2's cap frees 200; the floor needs 50 more: channel 1's oldest.
        assert_eq!(ids(&d), vec![2000, 2001, 1000]);
    }

    #[test]
    fn floor_stops_when_nothing_is_left() {
        let usage = HashMap::from([(1, segs(1, 2, 100))]);
        let d = plan(Time90k(0), &usage, &HashMap::new(), 0, 1 << 40);
        assert_eq!(ids(&d), vec![1000, 1001]);
    }

    #[test]
    fn never_deletes_out_of_order_within_a_channel() {
        // Exhaustive over small parameter grids: deletions per channel are a prefix.
        for n in 0..6 {
            for cap in [None, Some(0), Some(250), Some(10_000)] {
                for age in [None, Some(2 * MIN), Some(100 * MIN)] {
                    for free in [0, 150, 1000] {
                        let usage = HashMap::from([(1, segs(1, n, 100)), (2, segs(2, n, 100))]);
                        let pol = HashMap::from([(
                            1,
                            RetentionPolicy {
                                max_age: age,
                                max_bytes: cap,
                                ..Default::default()
                            },
                        )]);
                        let d = plan(Time90k(5 * MIN), &usage, &pol, free, 400);
                        for ch in [1u32, 2] {
                            let got: Vec<i64> = d
                                .iter()
                                .filter(|d| d.segment.channel == ch)
                                .map(|d| d.segment.id)
                                .collect();
                            let want: Vec<i64> = (0..got.len() as i64).map(|i| i64::from(ch) * 1000 + i).collect();
                            assert_eq!(got, want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn event_footage_has_its_own_age_and_goes_last_under_pressure() {
        let mut u = segs(1, 4, 100);
        let mut ev = segs(1, 4, 100).oldest;
        for (i, s) in ev.iter_mut().enumerate() {
            s.id = 5000 + i as i64;
            s.event = true;
        }
        u.oldest_event = ev;
        u.total_bytes = 800;
        let usage = HashMap::from([(1, u)]);
        let pol = |max_age, event_max_age, max_bytes| {
            HashMap::from([(
                1,
                RetentionPolicy {
                    max_age,
                    event_max_age,
                    max_bytes,
                },
            )])
        };
        // Continuous kept 2 min, events 3 min: at 4 min, continuous 0–1 and event 0 expire.
        let d = plan(
            Time90k(4 * MIN + 1),
            &usage,
            &pol(Some(2 * MIN), Some(3 * MIN), None),
            1 << 30,
            0,
        );
        assert_eq!(ids(&d), vec![1000, 1001, 5000]);
        // A byte cap takes every continuous segment before any event segment.
        let d = plan(Time90k(0), &usage, &pol(None, None, Some(250)), 1 << 30, 0);
        assert_eq!(ids(&d), vec![1000, 1001, 1002, 1003, 5000, 5001]);
        // So does the free-space floor.
        let d = plan(Time90k(0), &usage, &pol(None, None, None), 0, 450);
        assert_eq!(ids(&d), vec![1000, 1001, 1002, 1003, 5000]);
    }
}
