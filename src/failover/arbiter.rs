//! Arbitration of channels between failover rules: which rule's binding a
//! channel follows when several rules name it.
//!
//! The rule, stated once (docs/failover.md): **the first rule to enter
//! failure holds the channel**; a rule that enters failure while another
//! holds it waits, in the order rules entered failure; when the holder leaves
//! failure the longest-waiting rule still in failure takes the channel at
//! once; when no rule in failure wants it, the channel returns to its resting
//! binding — the first camera a rule binds it to in `normal` (configuration
//! order; a camera beats `n/a`, which only says the rule does not need the
//! channel), or idle, released after the failback delay, when every rule
//! says `n/a`. A rule
//! never binds or releases a channel another rule holds, and a delayed
//! release that finds the channel taken does nothing.
//!
//! N+M capacity is a second step after the holders are decided
//! (`admission.rs`): of the channels held by rules in failure, only those
//! `super::capacity::plan` takes are bound to the failure camera; a channel
//! left keeps its resting binding and is reported (`Action::Left`).
//!
//! Pure: decisions are returned, with the time passed in, for the agent to
//! apply and log. Must never perform I/O or consult a clock.

use std::collections::{BTreeMap, VecDeque};

use super::capacity::{Capacity, Priority, Reason};
use super::rule::ConfiguredRule;
use super::state::State;
use crate::time::Time90k;

/// A rule, by its position in the configuration.
pub type RuleId = usize;

/// What to do with the channel's binding now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Leave the binding as it is.
    Keep,
    /// Bind to this network camera (or to nothing) now.
    Bind(Option<String>),
    /// Release after the failback delay (confirmed through `Arbiter::release`).
    ReleaseLater,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Start-up: the channel takes its resting binding.
    Rest,
    /// The rule entered failure and the channel was free: it holds it now.
    Take,
    /// The rule entered failure while another rule holds the channel.
    Wait { holder: String },
    /// The holder left failure; the longest-waiting rule in failure takes over.
    HandOver { from: String },
    /// The holder left failure and no rule in failure waits: back to rest.
    Return,
    /// The rule left failure while still waiting: it stops waiting.
    StopWaiting { holder: String },
    /// A delayed release found the channel free and released it.
    Release,
    /// A delayed release found the channel held by another rule: no change.
    ReleaseSkipped { holder: String },
    /// Capacity freed: the holder's failure camera is recorded now.
    Admit,
    /// The holder's failure camera is not recorded (the standby's capacity
    /// is used by cameras that come first, or its priority is `never`).
    Left { camera: String, reason: Reason },
}

/// One arbitration decision, logged and shown in `/api/v1/rules`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub channel: u32,
    /// The rule whose transition (or release) caused the decision.
    pub rule: String,
    #[serde(flatten)]
    pub action: Action,
    pub effect: Effect,
    pub at: Time90k,
}

struct Sides {
    name: String,
    normal: Vec<(u32, Option<String>)>,
    failure: Vec<(u32, Option<String>)>,
}

#[derive(Default)]
struct Slot {
    resting: Option<String>,
    holder: Option<RuleId>,
    waiting: VecDeque<RuleId>,
}

/// Decisions kept for the API.
const LOG: usize = 200;

pub struct Arbiter {
    rules: Vec<Sides>,
    slots: BTreeMap<u32, Slot>,
    started: bool,
    log: VecDeque<Decision>,
    /// When each rule last began to hold each channel: footage a rule owes
    /// its backup NVR starts there, never before (another rule's camera may
    /// have recorded the channel until then).
    hold_start: BTreeMap<(RuleId, u32), Time90k>,
    /// The standby's room for failed primaries' cameras.
    capacity: Capacity,
    /// Priority and bitrate (measured when known) per network camera.
    cameras: BTreeMap<String, (Priority, Option<f64>)>,
    /// When each rule in failure entered it (a counter: failure order).
    failed_seq: BTreeMap<RuleId, u64>,
    next_seq: u64,
    /// Channels recording their holder's failure camera.
    admitted: BTreeMap<u32, String>,
    /// Channels kept after failback until released, with their camera:
    /// they still use capacity.
    releasing: BTreeMap<u32, (RuleId, String)>,
    /// Channels held but not recorded, with the camera and why.
    left: BTreeMap<u32, (RuleId, String, Reason)>,
}

/// A camera left unrecorded by a rule in failure, for the API.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeftCamera {
    pub channel: u32,
    pub camera: String,
    pub reason: Reason,
}

/// One rule's view of the arbitration, for the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleArbitration {
    /// Channels this rule holds (its failure binding applies).
    pub holds: Vec<u32>,
    /// Channels this rule waits for, with the rule holding each.
    pub waits: Vec<Waiting>,
    /// Channels this rule holds whose camera is not recorded (capacity).
    pub left: Vec<LeftCamera>,
    /// The latest decisions that concern this rule (oldest first).
    pub decisions: Vec<Decision>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Waiting {
    pub channel: u32,
    pub holder: String,
}

impl Arbiter {
    pub fn new(rules: &[ConfiguredRule]) -> Arbiter {
        let mut slots: BTreeMap<u32, Slot> = BTreeMap::new();
        for r in rules {
            for (ch, _) in &r.failure {
                slots.entry(*ch).or_default();
            }
        }
        // The first camera a rule binds the channel to in `normal` rests on it.
        for r in rules {
            for (ch, cam) in &r.normal {
                let slot = slots.entry(*ch).or_default();
                if slot.resting.is_none() {
                    slot.resting = cam.clone();
                }
            }
        }
        Arbiter {
            rules: rules
                .iter()
                .map(|r| Sides {
                    name: r.rule.name.clone(),
                    normal: r.normal.clone(),
                    failure: r.failure.clone(),
                })
                .collect(),
            slots,
            started: false,
            log: VecDeque::new(),
            hold_start: BTreeMap::new(),
            capacity: super::capacity::of_rules(rules),
            cameras: BTreeMap::new(),
            failed_seq: BTreeMap::new(),
            next_seq: 0,
            admitted: BTreeMap::new(),
            releasing: BTreeMap::new(),
            left: BTreeMap::new(),
        }
    }

    /// The rule's id by name.
    pub fn id(&self, name: &str) -> Option<RuleId> {
        self.rules.iter().position(|r| r.name == name)
    }

    /// Start-up: every channel a rule names takes its resting binding (once,
    /// whichever agent asks first). Rules start in `normal`.
    pub fn start(&mut self, rule: RuleId, now: Time90k) -> Vec<Decision> {
        if std::mem::replace(&mut self.started, true) {
            return Vec::new();
        }
        let name = self.rules[rule].name.clone();
        let listed: Vec<(u32, Option<String>)> = self
            .slots
            .iter()
            .filter(|(ch, _)| self.rules.iter().any(|r| r.normal.iter().any(|(n, _)| n == *ch)))
            .map(|(ch, s)| (*ch, s.resting.clone()))
            .collect();
        let out = listed
            .into_iter()
            .map(|(channel, cam)| Decision {
                channel,
                rule: name.clone(),
                action: Action::Rest,
                effect: Effect::Bind(cam),
                at: now,
            })
            .collect();
        self.record(out)
    }

    /// The rule's state machine moved to `to`.
    pub fn transition(&mut self, rule: RuleId, to: State, now: Time90k) -> Vec<Decision> {
        let name = self.rules[rule].name.clone();
        let mut out = Vec::new();
        let d = |channel, action, effect| Decision {
            channel,
            rule: name.clone(),
            action,
            effect,
            at: now,
        };
        match to {
            State::Failure => {
                // A new failure episode: earlier holds are owed for already.
                if !self.failed_seq.contains_key(&rule) {
                    self.hold_start.retain(|(r, _), _| *r != rule);
                    self.failed_seq.insert(rule, self.next_seq);
                    self.next_seq += 1;
                }
                for (ch, cam) in self.rules[rule].failure.clone() {
                    let slot = self.slots.entry(ch).or_default();
                    match slot.holder {
                        None => {
                            slot.holder = Some(rule);
                            out.push(d(ch, Action::Take, Effect::Bind(cam)));
                        }
                        // Already held (a repeated transition): nothing changes.
                        Some(h) if h == rule => {}
                        Some(h) => {
                            if !slot.waiting.contains(&rule) {
                                slot.waiting.push_back(rule);
                            }
                            let holder = self.rules[h].name.clone();
                            out.push(d(ch, Action::Wait { holder }, Effect::Keep));
                        }
                    }
                }
            }
            State::Normal => {
                self.failed_seq.remove(&rule);
                let chans: Vec<u32> = self.slots.keys().copied().collect();
                for ch in chans {
                    let slot = self.slots.get_mut(&ch).expect("listed channel");
                    if slot.holder == Some(rule) {
                        match slot.waiting.pop_front() {
                            Some(w) => {
                                slot.holder = Some(w);
                                let cam = self.rules[w]
                                    .failure
                                    .iter()
                                    .find(|(n, _)| *n == ch)
                                    .and_then(|(_, c)| c.clone());
                                let to_rule = self.rules[w].name.clone();
                                out.push(Decision {
                                    channel: ch,
                                    rule: to_rule,
                                    action: Action::HandOver { from: name.clone() },
                                    effect: Effect::Bind(cam),
                                    at: now,
                                });
                            }
                            None => {
                                slot.holder = None;
                                let effect = match &slot.resting {
                                    Some(cam) => Effect::Bind(Some(cam.clone())),
                                    None => Effect::ReleaseLater,
                                };
                                out.push(d(ch, Action::Return, effect));
                            }
                        }
                    } else if let Some(i) = slot.waiting.iter().position(|w| *w == rule) {
                        slot.waiting.remove(i);
                        let holder = slot.holder.map(|h| self.rules[h].name.clone()).unwrap_or_default();
                        out.push(d(ch, Action::StopWaiting { holder }, Effect::Keep));
                    }
                }
            }
        }
        let out = self.admit(out, now);
        self.record(out)
    }

    /// A delayed release by `rule` comes due: the channel returns to its
    /// resting binding only if no rule holds it meanwhile.
    pub fn release(&mut self, rule: RuleId, channel: u32, now: Time90k) -> Vec<Decision> {
        let name = self.rules[rule].name.clone();
        let slot = self.slots.entry(channel).or_default();
        let (action, effect) = match slot.holder {
            None => (Action::Release, Effect::Bind(slot.resting.clone())),
            Some(h) => (
                Action::ReleaseSkipped {
                    holder: self.rules[h].name.clone(),
                },
                Effect::Keep,
            ),
        };
        let d = Decision {
            channel,
            rule: name,
            action,
            effect,
            at: now,
        };
        if d.action == Action::Release {
            self.releasing.remove(&channel);
        }
        // The freed room may let a left camera in.
        let out = self.admit(vec![d], now);
        self.record(out)
    }

    /// When `rule` began to hold `channel` in its current (or just ended)
    /// failure episode — its failure camera recorded the channel from then.
    pub fn held_since(&self, rule: RuleId, channel: u32) -> Option<Time90k> {
        self.hold_start.get(&(rule, channel)).copied()
    }

    /// The rule holding `channel`, if any.
    pub fn holder(&self, channel: u32) -> Option<RuleId> {
        self.slots.get(&channel).and_then(|s| s.holder)
    }

    pub fn view(&self, rule: RuleId) -> RuleArbitration {
        let name = &self.rules[rule].name;
        RuleArbitration {
            holds: self
                .slots
                .iter()
                .filter(|(_, s)| s.holder == Some(rule))
                .map(|(ch, _)| *ch)
                .collect(),
            waits: self
                .slots
                .iter()
                .filter(|(_, s)| s.waiting.contains(&rule))
                .map(|(ch, s)| Waiting {
                    channel: *ch,
                    holder: s.holder.map(|h| self.rules[h].name.clone()).unwrap_or_default(),
                })
                .collect(),
            left: self
                .left
                .iter()
                .filter(|(_, (r, _, _))| *r == rule)
                .map(|(ch, (_, camera, reason))| LeftCamera {
                    channel: *ch,
                    camera: camera.clone(),
                    reason: *reason,
                })
                .collect(),
            decisions: self
                .log
                .iter()
                .filter(|d| &d.rule == name || concerns(&d.action, name))
                .cloned()
                .collect(),
        }
    }

    fn record(&mut self, out: Vec<Decision>) -> Vec<Decision> {
        for d in &out {
            if self.log.len() == LOG {
                self.log.pop_front();
            }
            self.log.push_back(d.clone());
        }
        out
    }
}

fn concerns(a: &Action, name: &str) -> bool {
    match a {
        Action::Wait { holder } | Action::StopWaiting { holder } | Action::ReleaseSkipped { holder } => holder == name,
        Action::HandOver { from } => from == name,
        Action::Left { .. } | Action::Admit => false,
        _ => false,
    }
}

mod admission;
#[cfg(test)]
mod capacity_tests;
#[cfg(test)]
mod tests;
