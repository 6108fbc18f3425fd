//! What the storage volume holds and how long it can keep footage at the
//! rate it is being recorded now: per channel its bytes, oldest footage and
//! recent rate, and how many days of footage the volume, the channel's
//! `max_age` or its `max_bytes` allow — whichever bites first.
//!
//! A pure function of figures the reader gathers (`Reader::footage_figures`)
//! and the volume's size; it never touches the disk or the index, and never
//! decides anything retention does (that is `retention`'s planner).

use std::collections::HashMap;

use serde::Serialize;

use super::retention::RetentionPolicy;
use crate::time::Time90k;

const DAY_S: f64 = 86_400.0;

/// One channel's stored footage, as the index has it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChannelFootage {
    pub channel: u32,
    /// Bytes of every stored segment (what remains of damaged ones).
    pub bytes: u64,
    /// The start of the oldest stored segment.
    pub oldest: Option<Time90k>,
    /// Bytes recorded in the rate window (segments prorated by overlap).
    pub recent_bytes: u64,
}

/// The volume the store lives on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Volume {
    pub path: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Kept free by retention (`storage.min_free`).
    pub min_free_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VolumeReport {
    pub path: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    /// Bytes of footage stored on it.
    pub used_bytes: u64,
    pub oldest: Option<String>,
    /// All channels together, bytes per second over the rate window.
    pub rate_bytes_per_s: f64,
    /// Days of footage the volume holds at that rate (footage now plus the
    /// free space above `min_free`); null while nothing is recorded.
    pub days_at_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelReport {
    pub channel: u32,
    pub bytes: u64,
    pub oldest: Option<String>,
    pub rate_bytes_per_s: f64,
    /// Days of footage kept at the current rate: the least of what the
    /// volume, `max_age` and `max_bytes` allow; null when nothing bounds it.
    pub retention_days: Option<f64>,
    /// `disk`, `max_age` or `max_bytes`.
    pub limited_by: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StorageReport {
    pub volume: VolumeReport,
    /// The window the rates are measured over, in seconds.
    pub rate_window_s: f64,
    pub channels: Vec<ChannelReport>,
}

/// Bytes per second of `f` over the window ending at `now`, counting only
/// the part of the window since its oldest footage (a channel recording for
/// five minutes is not diluted over an hour).
fn rate(f: &ChannelFootage, now: Time90k, window: i64) -> f64 {
    let since = Time90k(now.0 - window);
    let from = f.oldest.map_or(since, |o| o.max(since));
    let span_s = crate::time::secs_of(now - from);
    if span_s < 1.0 {
        return 0.0;
    }
    f.recent_bytes as f64 / span_s
}

/// The report for `footage` on `volume` at `now`, rates measured over the
/// last `window` ticks.
pub fn report(
    volume: &Volume,
    footage: &[ChannelFootage],
    policies: &HashMap<u32, RetentionPolicy>,
    now: Time90k,
    window: i64,
) -> StorageReport {
    let used: u64 = footage.iter().map(|f| f.bytes).sum();
    let rates: Vec<f64> = footage.iter().map(|f| rate(f, now, window)).collect();
    let total_rate: f64 = rates.iter().sum();
    // The volume fills at the sum of the channels' rates; retention deletes
    // the oldest footage, so every channel reaches back the same number of days.
    let room = (used + volume.free_bytes).saturating_sub(volume.min_free_bytes) as f64;
    let disk_days = (total_rate > 0.0).then(|| room / (total_rate * DAY_S));
    let channels = footage
        .iter()
        .zip(&rates)
        .map(|(f, &r)| {
            let p = policies.get(&f.channel).copied().unwrap_or_default();
            let mut limits: Vec<(f64, &'static str)> = Vec::new();
            if let Some(d) = disk_days.filter(|_| r > 0.0) {
                limits.push((d, "disk"));
            }
            if let Some(a) = p.max_age {
                limits.push((crate::time::secs_of(a) / DAY_S, "max_age"));
            }
            if let Some(b) = p.max_bytes.filter(|_| r > 0.0) {
                limits.push((b as f64 / (r * DAY_S), "max_bytes"));
            }
            let least = limits.into_iter().min_by(|a, b| a.0.total_cmp(&b.0));
            ChannelReport {
                channel: f.channel,
                bytes: f.bytes,
                oldest: f.oldest.map(Time90k::to_rfc3339),
                rate_bytes_per_s: r,
                retention_days: least.map(|l| l.0),
                limited_by: least.map(|l| l.1),
            }
        })
        .collect();
    StorageReport {
        volume: VolumeReport {
            path: volume.path.clone(),
            total_bytes: volume.total_bytes,
            free_bytes: volume.free_bytes,
            min_free_bytes: volume.min_free_bytes,
            used_bytes: used,
            oldest: footage.iter().filter_map(|f| f.oldest).min().map(Time90k::to_rfc3339),
            rate_bytes_per_s: total_rate,
            days_at_rate: disk_days,
        },
        rate_window_s: crate::time::secs_of(window),
        channels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = crate::time::TICKS_PER_SEC;
    const HOUR: i64 = 3600 * S;
    const GIB: u64 = 1 << 30;

    fn volume(free: u64, min_free: u64) -> Volume {
        Volume {
            path: "/data".into(),
            total_bytes: 100 * GIB,
            free_bytes: free,
            min_free_bytes: min_free,
        }
    }

    fn ch(channel: u32, bytes: u64, oldest_ago: i64, recent: u64, now: Time90k) -> ChannelFootage {
        ChannelFootage {
            channel,
            bytes,
            oldest: Some(Time90k(now.0 - oldest_ago)),
            recent_bytes: recent,
        }
    }

    #[test]
    fn the_disk_bounds_every_channel_alike_at_the_summed_rate() {
        let now = Time90k(1_000_000 * S);
        // 1 MB/s and 3 MB/s over the last hour: 4 MB/s, 345.6 GB a day.
        let f = [
            ch(1, 10 * GIB, 48 * HOUR, 3_600_000_000, now),
            ch(2, 30 * GIB, 48 * HOUR, 3 * 3_600_000_000, now),
        ];
        let r = report(&volume(60 * GIB, 10 * GIB), &f, &HashMap::new(), now, HOUR);
        assert_eq!(r.volume.used_bytes, 40 * GIB);
        assert_eq!(r.volume.rate_bytes_per_s, 4_000_000.0);
        let want = (90 * GIB) as f64 / (4_000_000.0 * DAY_S);
        assert!((r.volume.days_at_rate.unwrap() - want).abs() < 1e-9);
        for c in &r.channels {
            assert_eq!(c.limited_by, Some("disk"));
            assert!((c.retention_days.unwrap() - want).abs() < 1e-9);
        }
        assert_eq!(r.volume.oldest, Some(Time90k(now.0 - 48 * HOUR).to_rfc3339()));
        assert_eq!(r.rate_window_s, 3600.0);
    }

    #[test]
    fn max_age_and_max_bytes_bite_before_the_disk() {
        let now = Time90k(1_000_000 * S);
        let f = [
            ch(1, GIB, 48 * HOUR, 3_600_000_000, now),
            ch(2, GIB, 48 * HOUR, 3_600_000_000, now),
        ];
        let mut p = HashMap::new();
        p.insert(
            1,
            RetentionPolicy {
                max_age: Some(24 * HOUR),
                ..Default::default()
            },
        );
        p.insert(
            2,
            RetentionPolicy {
                max_bytes: Some(43_200_000_000),
                ..Default::default()
            },
        );
        let r = report(&volume(1000 * GIB, 0), &f, &p, now, HOUR);
        assert_eq!(r.channels[0].limited_by, Some("max_age"));
        assert_eq!(r.channels[0].retention_days, Some(1.0));
        // 43.2 GB at 1 MB/s is half a day.
        assert_eq!(r.channels[1].limited_by, Some("max_bytes"));
        assert!((r.channels[1].retention_days.unwrap() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_young_recording_is_measured_over_its_own_life_and_an_idle_one_has_no_rate() {
        let now = Time90k(1_000_000 * S);
        // Five minutes old, 300 MB: 1 MB/s, not 300 MB over an hour.
        let young = ch(1, 300_000_000, 300 * S, 300_000_000, now);
        let idle = ch(2, GIB, 48 * HOUR, 0, now);
        let r = report(&volume(10 * GIB, GIB), &[young, idle], &HashMap::new(), now, HOUR);
        assert_eq!(r.channels[0].rate_bytes_per_s, 1_000_000.0);
        assert_eq!(r.channels[1].rate_bytes_per_s, 0.0);
        assert_eq!(
            r.channels[1].retention_days, None,
            "nothing bounds an idle channel without policy"
        );
        assert_eq!(r.channels[1].limited_by, None);
        assert_eq!(r.channels[0].limited_by, Some("disk"));
    }

    #[test]
    fn nothing_recorded_means_no_rate_and_free_space_below_the_reserve_is_no_room() {
        let now = Time90k(1_000_000 * S);
        let r = report(&volume(GIB, 2 * GIB), &[], &HashMap::new(), now, HOUR);
        assert_eq!(r.volume.days_at_rate, None);
        assert_eq!(r.volume.oldest, None);
        assert!(r.channels.is_empty());
        let f = [ch(1, 0, 10 * S, 10_000_000, now)];
        let r = report(&volume(GIB, 2 * GIB), &f, &HashMap::new(), now, HOUR);
        assert_eq!(r.volume.days_at_rate, Some(0.0));
        // Less than a second of footage has no measurable rate.
        let f = [ch(1, 10, 0, 10, now)];
        assert_eq!(
            report(&volume(GIB, 0), &f, &HashMap::new(), now, HOUR)
                .volume
                .rate_bytes_per_s,
            0.0
        );
    }
}
