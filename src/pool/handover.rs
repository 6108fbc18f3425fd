//! What this NVR does with the pool's cameras, given the pool as it sees it:
//! which to start recording (assigned here, not recorded yet) and which to
//! stop. Stopping is make-before-break: a camera assigned elsewhere is
//! released only once its new owner lists it as recorded, in a list that
//! answers to the stored assignment as read here (`PoolView::records`), so
//! a camera moved between two live NVRs is recorded twice for a moment and
//! never by none — also when it moves away and straight back.
//!
//! Pure: must never perform I/O, and must never release a camera on a view
//! it has not read from etcd (no stored assignment seen yet) or because etcd
//! is unreachable — then the view simply stops changing and so does this
//! decision (a duplicate recording is harmless, a hole is not).

use std::collections::{BTreeMap, BTreeSet};

use super::view::PoolView;

/// Why a camera still recorded here keeps being recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Assigned to this member, which does not record it yet.
    ForOwner(String),
    /// No assignment has been read yet.
    NoAssignment,
}

/// Why a camera recorded here stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Its new owner records it now.
    RecordedBy(String),
    /// The scheduler left it out: no member has room for it.
    Unassigned,
    /// This NVR is leaving and no other member is registered to take it
    /// (the whole pool is stopping).
    NoMemberLeft,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handover {
    /// Cameras to start recording here.
    pub bind: BTreeSet<String>,
    /// Cameras to stop recording here, and why.
    pub release: BTreeMap<String, Release>,
    /// Cameras assigned elsewhere that keep recording here until released.
    pub waiting: BTreeMap<String, Waiting>,
}

/// `me`: this member's name; `pool`: the pool's cameras this NVR can record
/// (it has a channel for each); `bound`: those it records now.
pub fn decide(me: &str, pool: &BTreeSet<String>, view: &PoolView, bound: &BTreeSet<String>) -> Handover {
    let assigned: BTreeSet<String> = view.assigned_to(me).intersection(pool).cloned().collect();
    let mut out = Handover {
        bind: assigned.difference(bound).cloned().collect(),
        ..Handover::default()
    };
    for c in bound.difference(&assigned).filter(|c| pool.contains(*c)) {
        let Some(doc) = &view.assignment else {
            out.waiting.insert(c.clone(), Waiting::NoAssignment);
            continue;
        };
        match doc.cameras.get(c) {
            None => {
                out.release.insert(c.clone(), Release::Unassigned);
            }
            Some(owner) if view.records(owner, c) => {
                out.release.insert(c.clone(), Release::RecordedBy(owner.clone()));
            }
            Some(owner) => {
                out.waiting.insert(c.clone(), Waiting::ForOwner(owner.clone()));
            }
        }
    }
    out
}

/// The same decision for an NVR that is leaving the pool (a graceful stop,
/// its lease revoked): it binds nothing, hands each camera over as `decide`
/// does (still assigned to it, a camera waits for the scheduler to place it
/// elsewhere), and lets everything go when no other member is registered —
/// nobody is left to take over, so waiting would only delay the stop.
pub fn leaving(me: &str, pool: &BTreeSet<String>, view: &PoolView, bound: &BTreeSet<String>) -> Handover {
    let mut h = decide(me, pool, view, bound);
    h.bind.clear();
    if view.members.keys().all(|m| m == me) {
        for c in bound.iter().filter(|c| pool.contains(*c)) {
            h.release.entry(c.clone()).or_insert(Release::NoMemberLeft);
            h.waiting.remove(c);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::records::AssignmentDoc;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn view(assign: &[(&str, &str)], recording: &[(&str, &[&str])]) -> PoolView {
        let mut v = PoolView::default();
        v.assignment = Some(AssignmentDoc {
            scheduler: "a".into(),
            cameras: assign.iter().map(|(c, m)| (c.to_string(), m.to_string())).collect(),
        });
        v.recording = recording.iter().map(|(m, cs)| (m.to_string(), set(cs))).collect();
        v
    }

    #[test]
    fn binds_what_is_assigned_here_and_not_recorded() {
        let v = view(&[("c1", "a"), ("c2", "a"), ("c3", "b")], &[]);
        let h = decide("a", &set(&["c1", "c2", "c3"]), &v, &set(&["c2"]));
        assert_eq!(h.bind, set(&["c1"]));
        assert!(h.release.is_empty() && h.waiting.is_empty());
    }

    #[test]
    fn a_camera_without_a_channel_here_is_not_bound() {
        let v = view(&[("c1", "a"), ("c9", "a")], &[]);
        assert_eq!(decide("a", &set(&["c1"]), &v, &set(&[])).bind, set(&["c1"]));
    }

    #[test]
    fn make_before_break() {
        // c1 moved from a to b: a keeps it until b records it.
        let before = view(&[("c1", "b")], &[("b", &[])]);
        let h = decide("a", &set(&["c1"]), &before, &set(&["c1"]));
        assert!(h.release.is_empty());
        assert_eq!(h.waiting["c1"], Waiting::ForOwner("b".into()));
        // Another member recording it does not count: only the owner.
        let other = view(&[("c1", "b")], &[("c", &["c1"])]);
        assert!(decide("a", &set(&["c1"]), &other, &set(&["c1"])).release.is_empty());
        let after = view(&[("c1", "b")], &[("b", &["c1"])]);
        let h = decide("a", &set(&["c1"]), &after, &set(&["c1"]));
        assert_eq!(h.release["c1"], Release::RecordedBy("b".into()));
        assert!(h.waiting.is_empty());
    }

    /// The pool lab's partition: `v` returns, lets c1 go to `b` (which took
    /// it meanwhile), and the scheduler's rebalance gives c1 straight back
    /// to `v`. `v`'s list still names c1 from before it let go; `b` must not
    /// take that for `v` recording it again, or nobody records c1 until
    /// `v`'s new session starts.
    #[test]
    fn a_list_from_before_the_assignment_does_not_release() {
        let mut back = view(&[("c1", "v")], &[("v", &["c1"])]);
        back.assignment_revision = 20;
        back.recording_as_of.insert("v".into(), 17);
        let h = decide("b", &set(&["c1"]), &back, &set(&["c1"]));
        assert!(h.release.is_empty(), "{h:?}");
        assert_eq!(h.waiting["c1"], Waiting::ForOwner("v".into()));
        // `v` acted on revision 20 and lists c1: it records it under it.
        back.recording_as_of.insert("v".into(), 20);
        let h = decide("b", &set(&["c1"]), &back, &set(&["c1"]));
        assert_eq!(h.release["c1"], Release::RecordedBy("v".into()));
    }

    #[test]
    fn no_assignment_read_yet_releases_nothing() {
        let v = PoolView::default();
        let h = decide("a", &set(&["c1"]), &v, &set(&["c1"]));
        assert!(h.bind.is_empty() && h.release.is_empty());
        assert_eq!(h.waiting["c1"], Waiting::NoAssignment);
    }

    #[test]
    fn a_camera_left_out_by_the_scheduler_is_released() {
        let v = view(&[("c2", "a")], &[]);
        let h = decide("a", &set(&["c1", "c2"]), &v, &set(&["c1", "c2"]));
        assert_eq!(h.release["c1"], Release::Unassigned);
        assert!(h.bind.is_empty());
    }

    #[test]
    fn cameras_outside_the_pool_are_not_this_decision() {
        let v = view(&[], &[]);
        let h = decide("a", &set(&["c1"]), &v, &set(&["x"]));
        assert_eq!(h, Handover::default());
    }

    /// Every combination over two members and two cameras: the invariants
    /// (never both bind and release; release only when the owner records it
    /// or nobody owns it; every assigned camera ends up bound).
    #[test]
    fn exhaustive_invariants() {
        let owners = [None, Some("a"), Some("b")];
        for o1 in owners {
            for o2 in owners {
                for rec_mask in 0..16u32 {
                    for bound_mask in 0..4u32 {
                        let mut assign = Vec::new();
                        if let Some(o) = o1 {
                            assign.push(("c1", o));
                        }
                        if let Some(o) = o2 {
                            assign.push(("c2", o));
                        }
                        let cams = ["c1", "c2"];
                        let rec_a: Vec<&str> = (0..2).filter(|i| rec_mask & (1 << i) != 0).map(|i| cams[i]).collect();
                        let rec_b: Vec<&str> = (0..2).filter(|i| rec_mask & (4 << i) != 0).map(|i| cams[i]).collect();
                        let v = view(&assign, &[("a", &rec_a), ("b", &rec_b)]);
                        let bound: BTreeSet<String> = (0..2)
                            .filter(|i| bound_mask & (1 << i) != 0)
                            .map(|i| cams[i].to_string())
                            .collect();
                        let pool = set(&cams);
                        let h = decide("a", &pool, &v, &bound);
                        for c in &h.bind {
                            assert!(!bound.contains(c) && v.assigned_to("a").contains(c));
                            assert!(!h.release.contains_key(c));
                        }
                        for (c, why) in &h.release {
                            assert!(bound.contains(c));
                            match why {
                                Release::RecordedBy(o) => {
                                    assert_ne!(o, "a");
                                    assert!(v.records(o, c));
                                }
                                Release::Unassigned => {
                                    assert!(!v.assignment.as_ref().unwrap().cameras.contains_key(c))
                                }
                                Release::NoMemberLeft => panic!("only when leaving"),
                            }
                        }
                        // After carrying it out, exactly the assigned cameras
                        // plus the waiting ones are recorded here.
                        let after: BTreeSet<String> = bound
                            .union(&h.bind)
                            .filter(|c| !h.release.contains_key(*c))
                            .cloned()
                            .collect();
                        let expect: BTreeSet<String> = v
                            .assigned_to("a")
                            .union(&h.waiting.keys().cloned().collect())
                            .cloned()
                            .collect();
                        assert_eq!(after, expect);
                    }
                }
            }
        }
    }

    #[test]
    fn a_leaving_member_binds_nothing_and_hands_over_make_before_break() {
        use crate::pool::records::MemberRecord;
        use crate::pool::view::MemberEntry;
        let member = |name: &str| {
            (
                name.to_string(),
                MemberEntry {
                    record: MemberRecord {
                        channels: 4,
                        kbps: 16_000,
                        address: String::new(),
                        version: String::new(),
                        cameras: Default::default(),
                    },
                    lease: 1,
                },
            )
        };
        let pool = set(&["c1", "c2", "c3"]);
        // Still assigned here (the scheduler has not moved it yet), moved to
        // b and recorded there, moved to b not yet recorded, and c3 assigned
        // here but not bound: it is not taken up while leaving.
        let mut v = view(&[("c1", "a"), ("c2", "b"), ("c3", "a")], &[("b", &["c2"])]);
        v.members = [member("b")].into();
        let h = leaving("a", &pool, &v, &set(&["c1", "c2"]));
        assert!(h.bind.is_empty());
        assert_eq!(h.release.len(), 1);
        assert_eq!(h.release["c2"], Release::RecordedBy("b".into()));
        assert!(!h.release.contains_key("c1"), "c1 waits to be placed elsewhere");
        // c2 assigned to b, which does not record it yet: it waits.
        let mut w = view(&[("c1", "b"), ("c2", "b")], &[]);
        w.members = [member("b")].into();
        let h = leaving("a", &pool, &w, &set(&["c1", "c2"]));
        assert!(h.release.is_empty() && h.waiting.len() == 2, "{h:?}");
        // Nobody else registered (the whole pool stops): everything goes.
        w.members = [member("a")].into();
        let h = leaving("a", &pool, &w, &set(&["c1", "c2"]));
        assert_eq!(h.release.len(), 2);
        assert!(h.release.values().all(|r| *r == Release::NoMemberLeft));
        assert!(h.waiting.is_empty());
    }
}
