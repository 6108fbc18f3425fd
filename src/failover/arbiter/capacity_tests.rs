//! The arbiter with a capacity: N+M scenarios driven through transitions
//! and releases, checking bindings, decisions and what the API shows.

use std::collections::BTreeMap;

use super::*;
use crate::failover::capacity::{Capacity, Priority, Reason};
use crate::failover::rule::{self, ConfiguredRule};

/// A standby's rule for primary `name`: its channels idle in normal, bound
/// to the primary's cameras in failure.
fn primary(name: &str, chans: &[(u32, &str)], cap: Option<Capacity>) -> ConfiguredRule {
    let json = serde_json::json!({
        "name": name,
        "check": {"address": "192.0.2.1", "interval": 1, "failure_count": 3, "normal_count": 1},
        "states": {
            "normal": [{"camera": 1, "address": "n/a"}],
            "failure": [{"camera": 1, "address": "n/a"}],
        }
    });
    let mut r = rule::rules_from_values(&[(0, json)]).unwrap().remove(0);
    r.capacity = cap;
    ConfiguredRule {
        rule: r,
        normal: chans.iter().map(|(ch, _)| (*ch, None)).collect(),
        failure: chans.iter().map(|(ch, cam)| (*ch, Some(cam.to_string()))).collect(),
        source: None,
        line: 0,
    }
}

struct Site {
    arb: Arbiter,
    bound: BTreeMap<u32, Option<String>>,
    releasing: Vec<u32>,
}

impl Site {
    fn new(rules: &[ConfiguredRule], priorities: &[(&str, Priority)]) -> Site {
        let mut arb = Arbiter::new(rules);
        arb.set_cameras(priorities.iter().map(|(c, p)| (c.to_string(), *p, None)));
        let mut s = Site {
            arb,
            bound: BTreeMap::new(),
            releasing: Vec::new(),
        };
        let ds = s.arb.start(0, Time90k(0));
        s.apply(&ds);
        s
    }
    fn apply(&mut self, ds: &[Decision]) {
        for d in ds {
            match &d.effect {
                Effect::Keep => {}
                Effect::Bind(c) => {
                    self.bound.insert(d.channel, c.clone());
                }
                Effect::ReleaseLater => self.releasing.push(d.channel),
            }
        }
    }
    fn go(&mut self, rule: RuleId, to: State, at: i64) -> Vec<Decision> {
        let ds = self.arb.transition(rule, to, Time90k(at));
        self.apply(&ds);
        ds
    }
    fn release(&mut self, rule: RuleId, ch: u32, at: i64) -> Vec<Decision> {
        self.releasing.retain(|c| *c != ch);
        let ds = self.arb.release(rule, ch, Time90k(at));
        self.apply(&ds);
        ds
    }
    fn recording(&self) -> Vec<&str> {
        self.bound.values().filter_map(|c| c.as_deref()).collect()
    }
}

fn left(ds: &[Decision]) -> Vec<(u32, Reason)> {
    ds.iter()
        .filter_map(|d| match &d.action {
            Action::Left { reason, .. } => Some((d.channel, *reason)),
            _ => None,
        })
        .collect()
}

/// The lab's N+M scenario, then a third failure and a failback.
#[test]
fn three_primaries_one_standby_for_four_cameras() {
    let cap = Some(Capacity {
        channels: Some(4),
        mbps: None,
    });
    let rules = vec![
        primary("a", &[(1, "a1"), (2, "a2")], cap),
        primary("b", &[(3, "b1"), (4, "b2")], None),
        primary("c", &[(5, "c1"), (6, "c2")], None),
    ];
    let prio = [("a1", Priority::Low), ("b1", Priority::High)];
    let mut s = Site::new(&rules, &prio);
    assert!(s.recording().is_empty(), "a standby records nothing in normal");
    // Two primaries fail together: room for both.
    s.go(0, State::Failure, 1);
    let ds = s.go(1, State::Failure, 1);
    assert!(left(&ds).is_empty(), "{ds:?}");
    assert_eq!(s.recording(), vec!["a1", "a2", "b1", "b2"]);
    // A third: its medium cameras displace the low one, not the medium ones.
    let ds = s.go(2, State::Failure, 2);
    assert_eq!(left(&ds), vec![(6, Reason::NoCapacity), (1, Reason::NoCapacity)]);
    assert_eq!(s.recording(), vec!["a2", "b1", "b2", "c1"]);
    let v = s.arb.view(0);
    assert_eq!(v.holds, vec![1, 2], "a still holds its channel, unrecorded");
    assert_eq!(
        v.left,
        vec![LeftCamera {
            channel: 1,
            camera: "a1".into(),
            reason: Reason::NoCapacity
        }]
    );
    assert_eq!(s.arb.view(2).left.len(), 1);
    // The API shows the decisions.
    let json = serde_json::to_value(s.arb.view(2)).unwrap();
    assert!(
        json["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["action"] == "left" && d["reason"] == "no_capacity" && d["camera"] == "c2"),
        "{json}"
    );
    // A repeated decision does not report the same camera again.
    let ds = s.arb.transition(2, State::Failure, Time90k(3));
    assert!(left(&ds).is_empty(), "{ds:?}");
    // Primary b returns: its cameras are kept (and use room) until released.
    let ds = s.go(1, State::Normal, 4);
    assert!(ds
        .iter()
        .all(|d| d.action == Action::Return && d.effect == Effect::ReleaseLater));
    assert_eq!(s.recording(), vec!["a2", "b1", "b2", "c1"]);
    // One release frees one place: the medium camera before the low one.
    let ds = s.release(1, 3, 5);
    assert!(ds.iter().any(|d| d.action == Action::Admit && d.channel == 6), "{ds:?}");
    assert_eq!(s.recording(), vec!["a2", "b2", "c1", "c2"]);
    assert_eq!(
        s.arb.held_since(2, 6),
        Some(Time90k(5)),
        "owed from when it was recorded"
    );
    let ds = s.release(1, 4, 6);
    assert!(ds.iter().any(|d| d.action == Action::Admit && d.channel == 1), "{ds:?}");
    assert_eq!(s.recording(), vec!["a1", "a2", "c1", "c2"]);
    assert!(s.arb.view(0).left.is_empty());
    assert_eq!(
        s.arb.held_since(0, 1),
        Some(Time90k(1)),
        "first recorded at the failure"
    );
}

#[test]
fn never_is_not_taken_and_owes_nothing() {
    let rules = vec![primary("a", &[(1, "a1"), (2, "a2")], None)];
    let mut s = Site::new(&rules, &[("a2", Priority::Never)]);
    let ds = s.go(0, State::Failure, 1);
    assert_eq!(left(&ds), vec![(2, Reason::PriorityNever)]);
    assert_eq!(s.recording(), vec!["a1"]);
    assert_eq!(s.arb.held_since(0, 2), None);
    // Failback: only the recorded channel waits for its delayed release.
    let ds = s.go(0, State::Normal, 2);
    let eff: Vec<(u32, Effect)> = ds.iter().map(|d| (d.channel, d.effect.clone())).collect();
    assert_eq!(eff, vec![(1, Effect::ReleaseLater), (2, Effect::Bind(None))]);
}

#[test]
fn a_bitrate_limit_uses_measures_and_assumptions() {
    let cap = Some(Capacity {
        channels: None,
        mbps: Some(10.0),
    });
    let rules = vec![primary("a", &[(1, "a1"), (2, "a2"), (3, "a3")], cap)];
    let mut s = Site::new(&rules, &[]);
    // Measured figures for two; the third is assumed at 4 Mbit/s.
    s.arb.set_cameras([
        ("a1".to_string(), Priority::Medium, Some(5.0)),
        ("a2".to_string(), Priority::Medium, Some(2.0)),
    ]);
    s.go(0, State::Failure, 1);
    assert_eq!(s.recording(), vec!["a1", "a2"]);
    // A later call without a measure keeps the last one.
    s.arb.set_cameras([("a1".to_string(), Priority::Medium, None)]);
    s.arb.set_cameras([("a2".to_string(), Priority::Medium, Some(1.0))]);
    let ds = s.go(0, State::Failure, 2);
    assert!(ds.iter().any(|d| d.action == Action::Admit && d.channel == 3), "{ds:?}");
    assert_eq!(s.recording(), vec!["a1", "a2", "a3"]);
}

#[test]
fn a_shared_channel_handed_over_respects_capacity() {
    let cap = Some(Capacity {
        channels: Some(1),
        mbps: None,
    });
    // Both rules name channel 1; rule b also has channel 2.
    let rules = vec![
        primary("a", &[(1, "a1")], cap),
        primary("b", &[(1, "b1"), (2, "b2")], None),
    ];
    let mut s = Site::new(&rules, &[("b2", Priority::High)]);
    s.go(0, State::Failure, 1);
    assert_eq!(s.recording(), vec!["a1"]);
    // b fails: its high camera displaces a1; b waits for channel 1.
    let ds = s.go(1, State::Failure, 2);
    assert_eq!(left(&ds), vec![(1, Reason::NoCapacity)]);
    assert_eq!(s.recording(), vec!["b2"]);
    // a returns: channel 1 is handed to b, but there is no room for b1.
    let ds = s.go(0, State::Normal, 3);
    assert!(ds.iter().any(|d| matches!(d.action, Action::HandOver { .. })), "{ds:?}");
    assert_eq!(left(&ds), vec![(1, Reason::NoCapacity)]);
    assert_eq!(s.recording(), vec!["b2"]);
    assert_eq!(s.arb.holder(1), Some(1));
}
