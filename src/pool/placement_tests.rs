use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn member(name: &str, channels: u32, kbps: u64, alive: bool) -> Member {
    Member {
        name: name.into(),
        capacity: Capacity { channels, kbps },
        alive,
    }
}

fn camera(id: &str, kbps: u64, priority: Priority) -> Camera {
    Camera {
        id: id.into(),
        kbps,
        priority,
    }
}

fn assignment(pairs: &[(&str, &str)]) -> Assignment {
    pairs.iter().map(|(c, m)| (c.to_string(), m.to_string())).collect()
}

/// What each member's cameras use in `a`, per priority level.
fn usage(cameras: &[Camera], a: &Assignment) -> HashMap<String, [(u32, u64); 4]> {
    let mut u: HashMap<String, [(u32, u64); 4]> = HashMap::new();
    for c in cameras {
        if let Some(m) = a.get(&c.id) {
            let e = &mut u.entry(m.clone()).or_default()[c.priority as usize];
            e.0 += 1;
            e.1 += c.kbps;
        }
    }
    u
}

fn fits(cap: Capacity, used: (u32, u64), c: &Camera) -> bool {
    used.0 < cap.channels && used.1 + c.kbps <= cap.kbps
}

/// Every invariant of the module doc, for `p` decided from `current`.
/// `rebalanced`: `p` came from `rebalance`, whose moves break stability.
fn check(members: &[Member], cameras: &[Camera], current: &Assignment, p: &Placement, rebalanced: bool) {
    let by_name: HashMap<&str, &Member> = members.iter().map(|m| (m.name.as_str(), m)).collect();
    let alive = |n: &str| by_name.get(n).is_some_and(|m| m.alive);
    let left: HashMap<&str, &Unassigned> = p.unassigned.iter().map(|u| (u.camera.as_str(), u)).collect();
    let moves: HashMap<&str, &Move> = p.moves.iter().map(|m| (m.camera.as_str(), m)).collect();
    assert_eq!(p.assignment.len() + left.len(), cameras.len(), "{p:?}");
    assert_eq!(moves.len(), p.moves.len(), "a camera moved twice");
    let usage_now = usage(cameras, &p.assignment);
    for (m, levels) in &usage_now {
        assert!(alive(m), "camera on {m}, not an alive member");
        let (ch, kb) = levels.iter().fold((0, 0), |a, l| (a.0 + l.0, a.1 + l.1));
        let cap = by_name[m.as_str()].capacity;
        assert!(
            ch <= cap.channels && kb <= cap.kbps,
            "{m} over capacity: {ch}/{kb} of {cap:?}"
        );
    }
    let usage_before = usage(cameras, current);
    for c in cameras {
        let was = current.get(&c.id);
        let now = p.assignment.get(&c.id);
        match now {
            Some(now) if Some(now) != was => {
                let mv = moves
                    .get(c.id.as_str())
                    .unwrap_or_else(|| panic!("{} moved without a Move", c.id));
                assert_eq!((mv.from.as_ref(), &mv.to), (was, now));
                let expected_from_reason = match mv.reason {
                    Reason::New => was.is_none(),
                    Reason::Orphaned => was.is_some_and(|w| !alive(w)),
                    Reason::Shed | Reason::Preempted | Reason::Rebalance => was.is_some_and(|w| alive(w)),
                };
                assert!(expected_from_reason, "{mv:?}");
                assert!(rebalanced || mv.reason != Reason::Rebalance);
            }
            Some(_) => assert!(!moves.contains_key(c.id.as_str())),
            None => {
                assert!(left.contains_key(c.id.as_str()), "{} neither placed nor left out", c.id);
                // Lowest priority left out first: not even by removing every
                // camera of lower priority could an alive member take it.
                for m in members.iter().filter(|m| m.alive) {
                    let l = usage_now.get(&m.name).copied().unwrap_or_default();
                    let higher = l[c.priority as usize..]
                        .iter()
                        .fold((0, 0), |a, l| (a.0 + l.0, a.1 + l.1));
                    assert!(
                        !fits(m.capacity, higher, c),
                        "{} left out but {} has room",
                        c.id,
                        m.name
                    );
                }
            }
        }
        // Stability: on an alive member whose cameras fitted, a camera stays
        // unless preempted (or rebalanced).
        if let Some(w) = was.filter(|w| alive(w)) {
            let l = usage_before.get(w).copied().unwrap_or_default();
            let (ch, kb) = l.iter().fold((0, 0), |a, l| (a.0 + l.0, a.1 + l.1));
            let cap = by_name[w.as_str()].capacity;
            if ch <= cap.channels && kb <= cap.kbps && now != Some(w) {
                let reason = moves
                    .get(c.id.as_str())
                    .map(|m| m.reason)
                    .or(left.get(c.id.as_str()).map(|u| u.reason));
                assert!(
                    matches!(reason, Some(Reason::Preempted | Reason::Rebalance)),
                    "{} left {w} (within capacity): {reason:?}",
                    c.id
                );
            }
        }
    }
}

/// The loads of the members that can take cameras, highest − lowest.
fn spread(members: &[Member], cameras: &[Camera], a: &Assignment) -> u64 {
    let u = usage(cameras, a);
    let loads: Vec<u64> = members
        .iter()
        .filter(|m| m.alive && m.capacity.channels > 0)
        .map(|m| {
            let l = u.get(&m.name).copied().unwrap_or_default();
            let (ch, kb) = l.iter().fold((0, 0), |a, l| (a.0 + l.0, a.1 + l.1));
            load(m.capacity, ch, kb)
        })
        .collect();
    loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0)
}

#[test]
fn a_failure_moves_exactly_its_cameras_to_the_least_loaded() {
    let members = [
        member("a", 4, 100, true),
        member("b", 4, 100, false),
        member("c", 4, 100, true),
    ];
    let cams: Vec<Camera> = (0..5).map(|i| camera(&format!("k{i}"), 10, Priority::Medium)).collect();
    let cur = assignment(&[("k0", "a"), ("k1", "a"), ("k2", "b"), ("k3", "b"), ("k4", "c")]);
    let p = place(&members, &cams, &cur).unwrap();
    check(&members, &cams, &cur, &p, false);
    assert!(p.unassigned.is_empty());
    // k2 (placed first, by id) goes to c (1 camera, less loaded than a);
    // k3 then ties a and c at 2 cameras and goes to a (by name).
    let moved: Vec<(&str, &str)> = p.moves.iter().map(|m| (m.camera.as_str(), m.to.as_str())).collect();
    assert_eq!(moved, [("k2", "c"), ("k3", "a")]);
    assert!(p
        .moves
        .iter()
        .all(|m| m.reason == Reason::Orphaned && m.from.as_deref() == Some("b")));
}

#[test]
fn a_lowered_capacity_sheds_the_fewest_lowest_priority_cameras() {
    let members = [member("a", 10, 20, true), member("b", 10, 100, true)];
    let cams = [
        camera("hi", 8, Priority::High),
        camera("lo-big", 9, Priority::Low),
        camera("lo-small", 2, Priority::Low),
        camera("mid", 5, Priority::Medium),
    ];
    let cur = assignment(&[("hi", "a"), ("lo-big", "a"), ("lo-small", "a"), ("mid", "a")]);
    // 24 kbit/s on a 20 kbit/s member: shedding lo-big (the larger of the
    // lowest priority) is enough; lo-small stays.
    let p = place(&members, &cams, &cur).unwrap();
    check(&members, &cams, &cur, &p, false);
    assert_eq!(p.moves.len(), 1);
    assert_eq!(
        (p.moves[0].camera.as_str(), p.moves[0].reason),
        ("lo-big", Reason::Shed)
    );
    assert_eq!(p.moves[0].to, "b");
}

#[test]
fn a_returning_member_gets_nothing_back_but_takes_new_cameras() {
    let members = [member("a", 10, 100, true), member("b", 10, 100, true)];
    let cams = [camera("x", 10, Priority::Low), camera("y", 10, Priority::Low)];
    let cur = assignment(&[("x", "a"), ("y", "a")]);
    let p = place(&members, &cams, &cur).unwrap();
    assert!(p.moves.is_empty() && p.unassigned.is_empty());
    let more = [cams[0].clone(), cams[1].clone(), camera("z", 10, Priority::Low)];
    let p = place(&members, &more, &cur).unwrap();
    assert_eq!(p.moves.len(), 1);
    assert_eq!((p.moves[0].to.as_str(), p.moves[0].reason), ("b", Reason::New));
}

#[test]
fn a_high_priority_orphan_preempts_a_low_one_when_nothing_else_has_room() {
    let members = [member("a", 2, 100, true), member("b", 2, 100, false)];
    let cams = [
        camera("a1", 10, Priority::Medium),
        camera("a2", 10, Priority::Low),
        camera("b1", 10, Priority::High),
        camera("b2", 10, Priority::Never),
    ];
    let cur = assignment(&[("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")]);
    let p = place(&members, &cams, &cur).unwrap();
    check(&members, &cams, &cur, &p, false);
    assert_eq!(p.assignment, assignment(&[("a1", "a"), ("b1", "a")]));
    let left: Vec<(&str, Reason)> = p.unassigned.iter().map(|u| (u.camera.as_str(), u.reason)).collect();
    assert_eq!(left, [("a2", Reason::Preempted), ("b2", Reason::Orphaned)]);
}

#[test]
fn unknown_members_orphan_and_unknown_cameras_drop() {
    let members = [member("a", 4, 100, true)];
    let cams = [camera("x", 10, Priority::Medium)];
    let cur = assignment(&[("x", "gone"), ("removed", "a")]);
    let p = place(&members, &cams, &cur).unwrap();
    assert_eq!(p.assignment, assignment(&[("x", "a")]));
    assert_eq!(p.moves[0].reason, Reason::Orphaned);
    assert_eq!(p.moves[0].from.as_deref(), Some("gone"));
}

#[test]
fn zero_capacity_members_take_nothing() {
    let members = [member("z", 0, 0, true), member("k", 1, 0, true)];
    let cams = [camera("x", 5, Priority::High), camera("free", 0, Priority::Low)];
    let p = place(&members, &cams, &Assignment::new()).unwrap();
    check(&members, &cams, &Assignment::new(), &p, false);
    assert_eq!(p.assignment, assignment(&[("free", "k")]));
    assert_eq!(p.unassigned.len(), 1);
}

#[test]
fn duplicates_are_errors_and_tolerance_must_be_a_fraction() {
    let m = member("a", 1, 1, true);
    let c = camera("x", 1, Priority::Low);
    let none = Assignment::new();
    assert_eq!(
        place(&[m.clone(), m.clone()], &[], &none),
        Err(PlacementError::DuplicateMember("a".into()))
    );
    assert_eq!(
        place(std::slice::from_ref(&m), &[c.clone(), c.clone()], &none),
        Err(PlacementError::DuplicateCamera("x".into()))
    );
    let limits = RebalanceLimits {
        max_moves: 1,
        tolerance: f64::NAN,
    };
    assert!(matches!(
        rebalance(&[m], &[c], &none, limits),
        Err(PlacementError::BadTolerance(_))
    ));
}

#[test]
fn rebalance_moves_from_the_most_loaded_within_its_limits() {
    let members = [member("a", 10, 1000, true), member("b", 10, 1000, true)];
    let cams: Vec<Camera> = (0..8).map(|i| camera(&format!("k{i}"), 10, Priority::Medium)).collect();
    let cur: Assignment = cams.iter().map(|c| (c.id.clone(), "a".to_string())).collect();
    let limits = |max_moves| RebalanceLimits {
        max_moves,
        tolerance: 0.0,
    };
    let p = rebalance(&members, &cams, &cur, limits(100)).unwrap();
    check(&members, &cams, &cur, &p, true);
    assert_eq!(p.moves.len(), 4);
    assert!(p.moves.iter().all(|m| m.reason == Reason::Rebalance && m.to == "b"));
    assert_eq!(spread(&members, &cams, &p.assignment), 0);
    let p = rebalance(&members, &cams, &cur, limits(3)).unwrap();
    assert_eq!(p.moves.len(), 3);
    // Within 30 %: moves until a is at 50 %, b at 30 %.
    let p = rebalance(
        &members,
        &cams,
        &cur,
        RebalanceLimits {
            max_moves: 100,
            tolerance: 0.3,
        },
    )
    .unwrap();
    assert_eq!(p.moves.len(), 3);
}

#[test]
fn rebalance_passes_over_a_member_that_can_take_nothing() {
    // "tiny" is the least loaded but has room for no camera's bitrate.
    let members = [
        member("a", 10, 1000, true),
        member("b", 10, 1000, true),
        member("tiny", 10, 1, true),
    ];
    let cams: Vec<Camera> = (0..8).map(|i| camera(&format!("k{i}"), 10, Priority::Medium)).collect();
    let cur: Assignment = cams.iter().map(|c| (c.id.clone(), "a".to_string())).collect();
    let limits = RebalanceLimits {
        max_moves: 100,
        tolerance: 0.0,
    };
    let p = rebalance(&members, &cams, &cur, limits).unwrap();
    check(&members, &cams, &cur, &p, true);
    assert_eq!(p.moves.len(), 4);
    assert!(p.moves.iter().all(|m| m.to == "b"));
}

/// All assignments (unassigned, each member, an unknown member) of the
/// first n ≤ 5 cameras over m ≤ 3 members, for every combination of
/// capacity profiles (ascending, for three members) and liveness.
#[test]
fn every_small_pool_and_assignment_keeps_the_invariants() {
    let caps = [(0, 0), (1, 4), (2, 6), (3, 20)];
    let pool = [
        camera("c0", 3, Priority::Low),
        camera("c1", 2, Priority::High),
        camera("c2", 4, Priority::Medium),
        camera("c3", 1, Priority::Never),
        camera("c4", 3, Priority::High),
    ];
    let names = ["m0", "m1", "m2"];
    let mut cases = 0u64;
    for nm in 1..=3usize {
        for capset in 0..caps.len().pow(nm as u32) {
            let profile: Vec<usize> = (0..nm)
                .map(|i| capset / caps.len().pow(i as u32) % caps.len())
                .collect();
            // Three members: capacities in ascending order of name only
            // (20 of the 64 combinations), to keep the test to seconds.
            if nm == 3 && profile.windows(2).any(|w| w[0] > w[1]) {
                continue;
            }
            for alive_bits in 0..(1u32 << nm) {
                let members: Vec<Member> = (0..nm)
                    .map(|i| {
                        let (ch, kb) = caps[profile[i]];
                        member(names[i], ch, kb, alive_bits & (1 << i) != 0)
                    })
                    .collect();
                // Fewer cameras only with the smallest pools, to keep it quick.
                let ncs: &[usize] = if nm == 3 { &[5] } else { &[0, 1, 2, 3, 4, 5] };
                for &nc in ncs {
                    let cams = &pool[..nc];
                    let choices = nm + 2;
                    for code in 0..choices.pow(nc as u32) {
                        let mut cur = Assignment::new();
                        for (j, c) in cams.iter().enumerate() {
                            match code / choices.pow(j as u32) % choices {
                                0 => {}
                                k if k <= nm => {
                                    cur.insert(c.id.clone(), names[k - 1].into());
                                }
                                _ => {
                                    cur.insert(c.id.clone(), "ghost".into());
                                }
                            }
                        }
                        let p = place(&members, cams, &cur).unwrap();
                        check(&members, cams, &cur, &p, false);
                        if code % 7 == 0 {
                            let (mut rm, mut rc) = (members.clone(), cams.to_vec());
                            rm.reverse();
                            rc.reverse();
                            assert_eq!(place(&rm, &rc, &cur).unwrap(), p, "order changed the result");
                            let r = rebalance(
                                &members,
                                cams,
                                &cur,
                                RebalanceLimits {
                                    max_moves: 2,
                                    tolerance: 0.1,
                                },
                            )
                            .unwrap();
                            check(&members, cams, &cur, &r, true);
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases > 100_000, "{cases}");
}

/// A random pool: `members` NVRs, `cameras` cameras; capacity about
/// `room` times the demand, some members of zero capacity.
fn random_pool(seed: u64, members: usize, cameras: usize, room: f64) -> (Vec<Member>, Vec<Camera>) {
    let mut r = StdRng::seed_from_u64(seed);
    let cams: Vec<Camera> = (0..cameras)
        .map(|i| {
            let priority = [Priority::Never, Priority::Low, Priority::Medium, Priority::High][r.gen_range(0..4)];
            camera(&format!("cam{i:05}"), r.gen_range(500..8000), priority)
        })
        .collect();
    let demand_ch = cameras as f64 * room / members as f64;
    let demand_kb = cams.iter().map(|c| c.kbps).sum::<u64>() as f64 * room / members as f64;
    let ms = (0..members)
        .map(|i| {
            let zero = r.gen_ratio(1, 30);
            let f = r.gen_range(0.5..1.5);
            let ch = if zero { 0 } else { (demand_ch * f).ceil() as u32 };
            member(&format!("nvr{i:03}"), ch, (demand_kb * f) as u64, true)
        })
        .collect();
    (ms, cams)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Place, fail k members, return them, rebalance, lower a capacity: the
    /// invariants hold at every step; with room to spare a failure moves
    /// exactly the failed members' cameras and a return moves nothing.
    #[test]
    fn large_random_pools_through_failures_returns_and_rebalance(
        seed in any::<u64>(),
        members in 5usize..60,
        cameras in 0usize..3000,
        k in 1usize..5,
        room in prop_oneof![Just(0.8), Just(1.05), Just(1.6)],
    ) {
        let (mut ms, cams) = random_pool(seed, members, cameras, room);
        let none = Assignment::new();
        let p0 = place(&ms, &cams, &none).unwrap();
        check(&ms, &cams, &none, &p0, false);

        let mut r = StdRng::seed_from_u64(seed ^ 1);
        let mut failed = HashSet::new();
        while failed.len() < k.min(members) {
            failed.insert(ms[r.gen_range(0..members)].name.clone());
        }
        for m in ms.iter_mut().filter(|m| failed.contains(&m.name)) {
            m.alive = false;
        }
        let p1 = place(&ms, &cams, &p0.assignment).unwrap();
        check(&ms, &cams, &p0.assignment, &p1, false);
        let on_failed: HashSet<&str> = p0.assignment.iter().filter(|(_, m)| failed.contains(*m)).map(|(c, _)| c.as_str()).collect();
        let preempted = p1.moves.iter().any(|m| m.reason == Reason::Preempted)
            || p1.unassigned.iter().any(|u| u.reason == Reason::Preempted);
        for mv in &p1.moves {
            prop_assert!(on_failed.contains(mv.camera.as_str()) || mv.reason == Reason::Preempted || mv.from.is_none());
        }
        if !preempted {
            // Moves are the failed members' cameras that found room; those
            // that did not are left out; nothing else changes.
            let moved: HashSet<&str> = p1.moves.iter().filter(|m| m.from.is_some()).map(|m| m.camera.as_str()).collect();
            let left: HashSet<&str> = p1.unassigned.iter().filter(|u| u.from.is_some()).map(|u| u.camera.as_str()).collect();
            prop_assert_eq!(moved.union(&left).copied().collect::<HashSet<_>>(), on_failed);
        }

        // Same sets in another order: the same decision.
        let (mut rm, mut rc) = (ms.clone(), cams.clone());
        rm.reverse();
        rc.reverse();
        prop_assert_eq!(&place(&rm, &rc, &p0.assignment).unwrap(), &p1);

        for m in &mut ms {
            m.alive = true;
        }
        let p2 = place(&ms, &cams, &p1.assignment).unwrap();
        check(&ms, &cams, &p1.assignment, &p2, false);
        // A return moves nothing back; only cameras left out before are placed.
        prop_assert!(p2.moves.iter().all(|m| m.from.is_none()));

        let limits = RebalanceLimits { max_moves: 200, tolerance: 0.05 };
        let p3 = rebalance(&ms, &cams, &p2.assignment, limits).unwrap();
        check(&ms, &cams, &p2.assignment, &p3, true);
        prop_assert!(p3.moves.len() <= 200);
        prop_assert!(spread(&ms, &cams, &p3.assignment) <= spread(&ms, &cams, &p2.assignment));

        // Halve one member's capacity: it sheds, nobody is over.
        let i = r.gen_range(0..members);
        ms[i].capacity.channels /= 2;
        ms[i].capacity.kbps /= 2;
        let p4 = place(&ms, &cams, &p3.assignment).unwrap();
        check(&ms, &cams, &p3.assignment, &p4, false);
        for mv in &p4.moves {
            prop_assert!(mv.from.is_none() || mv.from.as_deref() == Some(ms[i].name.as_str()) || mv.reason == Reason::Preempted);
        }
    }
}
