use super::*;
use crate::failover::rule::{self, ConfiguredRule};

/// A configured rule binding channel 1 to `failure_cam` in failure and to
/// `normal_cam` in normal (None = n/a).
fn rule_for(name: &str, normal_cam: Option<&str>, failure_cam: &str) -> ConfiguredRule {
    let json = serde_json::json!({
        "name": name,
        "check": {"address": "192.0.2.1", "interval": 1, "failure_count": 3, "normal_count": 1},
        "states": {
            "normal": [{"camera": 1, "address": "n/a"}],
            "failure": [{"camera": 1, "address": "n/a"}],
        }
    });
    let r = rule::rules_from_values(&[(0, json)]).unwrap().remove(0);
    ConfiguredRule {
        rule: r,
        normal: vec![(1, normal_cam.map(str::to_string))],
        failure: vec![(1, Some(failure_cam.to_string()))],
        source: None,
        line: 0,
    }
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    /// Rule i's state machine transitions (alternately to failure and normal).
    T(usize),
    /// Rule i's delayed release comes due.
    R(usize),
}

/// The agents' side, simulated: applies decisions to the channel's binding.
struct Model {
    arb: Arbiter,
    binding: Option<String>,
    state: [State; 2],
    /// When each rule last entered failure (event index).
    entered: [usize; 2],
    pending: [bool; 2],
}

impl Model {
    fn new(rules: &[ConfiguredRule]) -> Model {
        let mut m = Model {
            arb: Arbiter::new(rules),
            binding: Some("stale".into()),
            state: [State::Normal; 2],
            entered: [0; 2],
            pending: [false; 2],
        };
        let ds = m.arb.start(0, Time90k(0));
        assert!(m.arb.start(1, Time90k(0)).is_empty(), "start happens once");
        m.apply(&ds);
        m
    }
    fn apply(&mut self, ds: &[Decision]) {
        for d in ds {
            assert_eq!(d.channel, 1);
            match &d.effect {
                Effect::Keep => {}
                Effect::Bind(cam) => self.binding = cam.clone(),
                Effect::ReleaseLater => {
                    let id = self.arb.id(&d.rule).unwrap();
                    self.pending[id] = true;
                }
            }
        }
    }
    fn step(&mut self, i: usize, ev: Ev) -> bool {
        match ev {
            Ev::T(r) => {
                let to = match self.state[r] {
                    State::Normal => State::Failure,
                    State::Failure => State::Normal,
                };
                self.state[r] = to;
                if to == State::Failure {
                    self.entered[r] = i + 1;
                }
                // The agent aborts the rule's pending release on any transition.
                self.pending[r] = false;
                let ds = self.arb.transition(r, to, Time90k(i as i64));
                for d in &ds {
                    // Who may move the binding: the rule now holding the channel,
                    // or anyone returning it to rest when nobody holds it.
                    match (&d.action, &d.effect) {
                        (_, Effect::Keep) => {}
                        (Action::Take | Action::HandOver { .. }, _) => {
                            assert_eq!(self.arb.holder(1), self.arb.id(&d.rule), "{d:?}")
                        }
                        (Action::Return, _) => assert_eq!(self.arb.holder(1), None, "{d:?}"),
                        other => panic!("unexpected decision on a transition: {other:?}"),
                    }
                }
                self.apply(&ds);
                true
            }
            Ev::R(r) => {
                if !self.pending[r] {
                    return false;
                }
                self.pending[r] = false;
                let mut ds = self.arb.release(r, 1, Time90k(i as i64));
                assert_eq!(ds.len(), 1, "{ds:?}");
                let d = ds.remove(0);
                match (&d.action, &d.effect) {
                    (Action::Release, Effect::Bind(_)) => assert_eq!(self.arb.holder(1), None),
                    (Action::ReleaseSkipped { .. }, Effect::Keep) => assert!(self.arb.holder(1).is_some()),
                    other => panic!("unexpected release decision {other:?}"),
                }
                self.apply(&[d]);
                true
            }
        }
    }
    fn check(&self, rules: &[ConfiguredRule], resting: Option<&str>, seq: &[Ev]) {
        let in_failure: Vec<usize> = (0..2).filter(|r| self.state[*r] == State::Failure).collect();
        match in_failure.iter().min_by_key(|r| self.entered[**r]) {
            Some(&first) => {
                // The earliest rule still in failure holds the channel and its camera records.
                assert_eq!(self.arb.holder(1), Some(first), "{seq:?}");
                assert_eq!(self.binding, rules[first].failure[0].1, "{seq:?}");
                assert!(self.arb.held_since(first, 1).is_some(), "{seq:?}");
                let v = self.arb.view(first);
                assert_eq!(v.holds, vec![1]);
                for &other in in_failure.iter().filter(|r| **r != first) {
                    let w = self.arb.view(other);
                    assert_eq!(w.waits.len(), 1, "{seq:?}");
                    assert_eq!(w.waits[0].holder, rules[first].rule.name);
                    assert!(w.holds.is_empty());
                }
            }
            None => {
                assert_eq!(self.arb.holder(1), None, "{seq:?}");
                match resting {
                    Some(cam) => assert_eq!(self.binding.as_deref(), Some(cam), "{seq:?}"),
                    // Idle at rest, or kept until a pending release comes due.
                    None => assert!(
                        self.binding.is_none() || self.pending.iter().any(|p| *p),
                        "{seq:?}: {:?}",
                        self.binding
                    ),
                }
                for r in 0..2 {
                    let v = self.arb.view(r);
                    assert!(v.holds.is_empty() && v.waits.is_empty(), "{seq:?}");
                }
            }
        }
    }
}

/// Every interleaving of two rules' transitions and their delayed releases,
/// up to 8 events, for an idle resting binding and for a camera at rest.
#[test]
fn every_interleaving_of_two_rules_sharing_a_channel() {
    for resting in [None, Some("main")] {
        let rules = vec![rule_for("a", resting, "cam-a"), rule_for("b", None, "cam-b")];
        let alphabet = [Ev::T(0), Ev::T(1), Ev::R(0), Ev::R(1)];
        let mut checked = 0u64;
        for len in 0..=8u32 {
            'seq: for code in 0..4u32.pow(len) {
                let seq: Vec<Ev> = (0..len).map(|k| alphabet[(code / 4u32.pow(k) % 4) as usize]).collect();
                let mut m = Model::new(&rules);
                m.check(&rules, resting, &[]);
                for (i, ev) in seq.iter().enumerate() {
                    if !m.step(i, *ev) {
                        continue 'seq;
                    }
                    m.check(&rules, resting, &seq[..=i]);
                }
                checked += 1;
            }
        }
        // The 511 transition-only sequences, plus (with an idle resting
        // binding) those where delayed releases come due.
        match resting {
            None => assert!(checked > 511 * 2, "{checked}"),
            Some(_) => assert_eq!(checked, 511),
        }
    }
}

#[test]
fn the_scenario_from_the_review() {
    // Both primaries down: the first failure records, the second waits; the
    // first primary returns: the second takes the channel, never released.
    let rules = vec![rule_for("a", None, "cam-a"), rule_for("b", None, "cam-b")];
    let mut m = Model::new(&rules);
    m.step(0, Ev::T(0));
    m.step(1, Ev::T(1));
    assert_eq!(m.binding.as_deref(), Some("cam-a"));
    let ds = m.arb.transition(0, State::Normal, Time90k(3));
    m.state[0] = State::Normal;
    assert_eq!(
        ds,
        vec![Decision {
            channel: 1,
            rule: "b".into(),
            action: Action::HandOver { from: "a".into() },
            effect: Effect::Bind(Some("cam-b".into())),
            at: Time90k(3),
        }]
    );
    m.apply(&ds);
    assert_eq!(m.binding.as_deref(), Some("cam-b"));
    // Each rule owes its backup only what its own camera recorded.
    assert_eq!(m.arb.held_since(0, 1), Some(Time90k(0)));
    assert_eq!(
        m.arb.held_since(1, 1),
        Some(Time90k(3)),
        "b holds from the hand-over, not its failure"
    );
    // The API shows the hand-over to both rules, and who holds what.
    let a = m.arb.view(0);
    assert!(a.holds.is_empty());
    assert!(a
        .decisions
        .iter()
        .any(|d| matches!(&d.action, Action::HandOver { from } if from == "a")));
    let b = m.arb.view(1);
    assert_eq!(b.holds, vec![1]);
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["decisions"][0]["action"], "wait");
    assert_eq!(json["decisions"][0]["holder"], "a");
    assert_eq!(json["decisions"][1]["action"], "hand_over");
    assert_eq!(json["decisions"][1]["from"], "a");
    assert_eq!(json["holds"][0], 1);
}

#[test]
fn unshared_rules_behave_as_before() {
    // One rule alone: failure binds its camera, failback returns to rest.
    let rules = vec![rule_for("solo", Some("main"), "spare")];
    let mut a = Arbiter::new(&rules);
    let s = a.start(0, Time90k(0));
    assert_eq!(s[0].effect, Effect::Bind(Some("main".into())));
    let f = a.transition(0, State::Failure, Time90k(1));
    assert_eq!(
        (f[0].action.clone(), f[0].effect.clone()),
        (Action::Take, Effect::Bind(Some("spare".into())))
    );
    let n = a.transition(0, State::Normal, Time90k(2));
    assert_eq!(
        (n[0].action.clone(), n[0].effect.clone()),
        (Action::Return, Effect::Bind(Some("main".into())))
    );
    let idle = vec![rule_for("standby", None, "peer-cam")];
    let mut a = Arbiter::new(&idle);
    a.start(0, Time90k(0));
    a.transition(0, State::Failure, Time90k(1));
    assert_eq!(
        a.transition(0, State::Normal, Time90k(2))[0].effect,
        Effect::ReleaseLater
    );
    assert_eq!(a.release(0, 1, Time90k(3))[0].effect, Effect::Bind(None));
}

#[test]
fn a_camera_at_rest_beats_n_a_whatever_the_order() {
    // A standby rule (n/a in normal) listed before a camera-redundancy rule:
    // at rest the channel records the redundancy rule's main camera.
    let rules = vec![
        rule_for("standby", None, "peer-cam"),
        rule_for("redundancy", Some("main"), "spare"),
    ];
    let mut a = Arbiter::new(&rules);
    assert_eq!(a.start(1, Time90k(0))[0].effect, Effect::Bind(Some("main".into())));
    a.transition(0, State::Failure, Time90k(1));
    assert_eq!(
        a.transition(0, State::Normal, Time90k(2))[0].effect,
        Effect::Bind(Some("main".into()))
    );
    let rules = vec![
        rule_for("one", Some("first"), "x"),
        rule_for("two", Some("second"), "y"),
    ];
    assert_eq!(
        Arbiter::new(&rules).start(0, Time90k(0))[0].effect,
        Effect::Bind(Some("first".into()))
    );
}

#[test]
fn decision_log_is_bounded() {
    let rules = vec![rule_for("a", None, "cam-a"), rule_for("b", None, "cam-b")];
    let mut a = Arbiter::new(&rules);
    for i in 0..1000 {
        let to = if i % 2 == 0 { State::Failure } else { State::Normal };
        a.transition(0, to, Time90k(i as i64));
    }
    assert_eq!(a.log.len(), LOG);
}
