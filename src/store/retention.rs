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
    /// Keep footage at most this long (90 kHz ticks); `None` keeps it forever.
    pub max_age: Option<i64>,
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
}

/// What the planner knows of one channel: its total bytes on disk and its
/// oldest finished segments in ascending start order (a bounded prefix is
/// enough; what is not listed is planned on the next pass).
#[derive(Clone, Debug, Default)]
pub struct ChannelUsage {
    pub total_bytes: u64,
    pub oldest: Vec<SegmentInfo>,
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

pub fn plan(
    now: Time90k,
    usage: &HashMap<u32, ChannelUsage>,
    policies: &HashMap<u32, RetentionPolicy>,
    free_bytes: u64,
    min_free_bytes: u64,
) -> Vec<Deletion> {
    let mut out = Vec::new();
    // Per channel, the index of the first segment not yet planned for deletion.
    let mut next: HashMap<u32, usize> = HashMap::new();
    let mut channels: Vec<&u32> = usage.keys().collect();
    channels.sort();
    for &ch in &channels {
        let u = &usage[ch];
        let p = policies.get(ch).copied().unwrap_or_default();
        let mut i = 0;
        let mut total = u.total_bytes;
        while let Some(s) = u.oldest.get(i) {
            let reason = if p.max_age.is_some_and(|age| s.end.0 <= now.0 - age) {
                Reason::Age
            } else if p.max_bytes.is_some_and(|max| total > max) {
                Reason::ChannelBytes
            } else {
                break;
            };
            out.push(Deletion { segment: *s, reason });
            total = total.saturating_sub(s.bytes);
            i += 1;
        }
        next.insert(*ch, i);
    }
    let mut free = free_bytes + out.iter().map(|d| d.segment.bytes).sum::<u64>();
    while free < min_free_bytes {
        // The oldest remaining segment of any channel goes first.
        let pick = channels
            .iter()
            .filter_map(|&ch| usage[ch].oldest.get(next[ch]).map(|s| (s.start, *ch)))
            .min();
        let Some((_, ch)) = pick else { break };
        let s = usage[&ch].oldest[next[&ch]];
        *next.get_mut(&ch).expect("channel present") += 1;
        free += s.bytes;
        out.push(Deletion {
            segment: s,
            reason: Reason::FreeSpaceFloor,
        });
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
            })
            .collect();
        ChannelUsage {
            total_bytes: bytes * n as u64,
            oldest,
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
}
