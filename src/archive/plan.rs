//! The archiver's planner: which closed segments to upload next and which
//! archived ones to expire. A pure function of the segments, the time and
//! the settings; the task (`archive::task`) gathers the inputs and carries
//! the plan out. Must never see a segment still being written (callers pass
//! closed segments only), and never plan an upload of footage the archive
//! would expire at once, nor an expiry of footage younger than `max_age`.

use std::collections::HashSet;

use crate::time::Time90k;

/// A closed segment still on the local disk only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub id: i64,
    pub channel: u32,
    pub end: Time90k,
    pub bytes: u64,
}

/// A segment whose footage is in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub id: i64,
    pub channel: u32,
    pub end: Time90k,
    pub key: String,
}

/// What to do next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Oldest end first: the footage closest to local retention goes first.
    pub upload: Vec<Local>,
    /// Archived footage past `max_age`: its object and row go.
    pub expire: Vec<Archived>,
}

/// The settings the plan depends on, in 90 kHz ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Upload once a segment ended this long ago.
    pub after: i64,
    /// Expire archived footage that ended this long ago; `None`: never.
    pub max_age: Option<i64>,
    /// Uploads planned at most per pass.
    pub batch: usize,
}

pub fn plan(local: &[Local], archived: &[Archived], now: Time90k, limits: Limits, in_flight: &HashSet<i64>) -> Plan {
    let expired = |end: Time90k| limits.max_age.is_some_and(|m| end.0 <= now.0.saturating_sub(m));
    let due = now.0.saturating_sub(limits.after);
    let mut upload: Vec<Local> = local
        .iter()
        .filter(|s| s.end.0 <= due && !in_flight.contains(&s.id) && !expired(s.end))
        .copied()
        .collect();
    upload.sort_by_key(|s| (s.end, s.id));
    upload.truncate(limits.batch);
    let mut expire: Vec<Archived> = archived
        .iter()
        .filter(|a| expired(a.end) && !in_flight.contains(&a.id))
        .cloned()
        .collect();
    expire.sort_by_key(|a| (a.end, a.id));
    Plan { upload, expire }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 90_000;
    const DAY: i64 = 86_400 * S;

    fn local(id: i64, end_days_ago: i64) -> Local {
        Local {
            id,
            channel: 1,
            end: Time90k(100 * DAY - end_days_ago * DAY),
            bytes: 10,
        }
    }

    fn archived(id: i64, end_days_ago: i64) -> Archived {
        Archived {
            id,
            channel: 1,
            end: Time90k(100 * DAY - end_days_ago * DAY),
            key: format!("k{id}"),
        }
    }

    const NOW: Time90k = Time90k(100 * DAY);
    const LIMITS: Limits = Limits {
        after: 2 * DAY,
        max_age: Some(30 * DAY),
        batch: 10,
    };

    #[test]
    fn uploads_what_ended_longer_ago_than_after_oldest_first() {
        let segs = [local(1, 1), local(2, 3), local(3, 2), local(4, 5)];
        let p = plan(&segs, &[], NOW, LIMITS, &HashSet::new());
        let ids: Vec<i64> = p.upload.iter().map(|s| s.id).collect();
        // Exactly `after` ago is due; a day ago is not.
        assert_eq!(ids, [4, 2, 3]);
        assert!(p.expire.is_empty());
    }

    #[test]
    fn in_flight_segments_are_not_planned_twice() {
        let segs = [local(1, 3), local(2, 4)];
        let p = plan(&segs, &[archived(9, 40)], NOW, LIMITS, &HashSet::from([2, 9]));
        assert_eq!(p.upload, vec![local(1, 3)]);
        assert!(p.expire.is_empty());
    }

    #[test]
    fn archived_footage_expires_after_max_age_only() {
        let a = [archived(1, 29), archived(2, 30), archived(3, 400)];
        let p = plan(&[], &a, NOW, LIMITS, &HashSet::new());
        assert_eq!(p.expire, vec![archived(3, 400), archived(2, 30)]);
        let forever = Limits {
            max_age: None,
            ..LIMITS
        };
        assert!(plan(&[], &a, NOW, forever, &HashSet::new()).expire.is_empty());
    }

    #[test]
    fn footage_already_past_max_age_is_not_uploaded() {
        let p = plan(&[local(1, 31), local(2, 10)], &[], NOW, LIMITS, &HashSet::new());
        assert_eq!(p.upload, vec![local(2, 10)]);
    }

    #[test]
    fn the_batch_bounds_a_pass() {
        let segs: Vec<Local> = (0..50).map(|i| local(i, 3 + i % 7)).collect();
        let p = plan(&segs, &[], NOW, Limits { batch: 4, ..LIMITS }, &HashSet::new());
        assert_eq!(p.upload.len(), 4);
        assert!(p.upload.windows(2).all(|w| (w[0].end, w[0].id) <= (w[1].end, w[1].id)));
        assert!(p.upload.iter().all(|s| s.end == local(0, 9).end));
    }

    #[test]
    fn times_near_the_epoch_do_not_overflow() {
        let p = plan(&[local(1, 3)], &[], Time90k(0), LIMITS, &HashSet::new());
        assert!(p.upload.is_empty());
        let huge = Limits {
            after: i64::MAX,
            max_age: Some(i64::MAX),
            batch: 1,
        };
        assert!(plan(&[local(1, 3)], &[], NOW, huge, &HashSet::new()).upload.is_empty());
    }
}
