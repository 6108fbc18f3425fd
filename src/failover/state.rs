//! The rule state machine (paper §III): consecutive misses reaching
//! `failure_count` move `normal` → `failure`; consecutive answers reaching
//! `normal_count` move `failure` → `normal`.
//!
//! A pure function of probe outcomes in probe order. Probes are numbered when
//! sent; an outcome for a probe older than one already counted (a late answer
//! overtaken by a newer probe, possible when the timeout exceeds the interval)
//! is stale and ignored, so reordering never counts twice or backwards. Time
//! is never consulted for decisions, so a wall-clock jump cannot cause or
//! prevent a transition; callers stamp transitions with the time they pass in.
//! Must never perform I/O.

use crate::time::Time90k;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Normal,
    Failure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    /// No answer within the timeout, or an error (unreachable, refused).
    Missed,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub at: Time90k,
    /// The probe whose outcome completed the run.
    pub probe: u64,
}

/// Transitions kept for the API.
const HISTORY: usize = 100;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    #[serde(skip)]
    failure_count: u32,
    #[serde(skip)]
    normal_count: u32,
    pub state: State,
    /// Consecutive misses / answers ending at the last counted probe.
    pub consecutive_misses: u32,
    pub consecutive_answers: u32,
    pub probes_answered: u64,
    pub probes_missed: u64,
    pub probes_stale: u64,
    #[serde(skip)]
    last_probe: Option<u64>,
    pub history: std::collections::VecDeque<Transition>,
}

impl Machine {
    /// Starts in `normal`, as the paper's NVRs do.
    pub fn new(failure_count: u32, normal_count: u32) -> Machine {
        Machine {
            failure_count: failure_count.max(1),
            normal_count: normal_count.max(1),
            state: State::Normal,
            consecutive_misses: 0,
            consecutive_answers: 0,
            probes_answered: 0,
            probes_missed: 0,
            probes_stale: 0,
            last_probe: None,
            history: Default::default(),
        }
    }

    /// Counts the outcome of probe number `probe`; returns the transition it caused.
    pub fn observe(&mut self, probe: u64, outcome: Outcome, now: Time90k) -> Option<Transition> {
        if self.last_probe.is_some_and(|l| probe <= l) {
            self.probes_stale += 1;
            return None;
        }
        self.last_probe = Some(probe);
        match outcome {
            Outcome::Answered => {
                self.probes_answered += 1;
                self.consecutive_answers = self.consecutive_answers.saturating_add(1);
                self.consecutive_misses = 0;
            }
            Outcome::Missed => {
                self.probes_missed += 1;
                self.consecutive_misses = self.consecutive_misses.saturating_add(1);
                self.consecutive_answers = 0;
            }
        }
        let to = match self.state {
            State::Normal if self.consecutive_misses >= self.failure_count => State::Failure,
            State::Failure if self.consecutive_answers >= self.normal_count => State::Normal,
            _ => return None,
        };
        let t = Transition {
            from: self.state,
            to,
            at: now,
            probe,
        };
        self.state = to;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(t.clone());
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::{Answered as A, Missed as M};

    fn run(fc: u32, nc: u32, outcomes: &[Outcome]) -> (Machine, Vec<(usize, State)>) {
        let mut m = Machine::new(fc, nc);
        let mut changes = Vec::new();
        for (i, &o) in outcomes.iter().enumerate() {
            if let Some(t) = m.observe(i as u64, o, Time90k(i as i64)) {
                changes.push((i, t.to));
            }
        }
        (m, changes)
    }

    #[test]
    fn paper_parameters() {
        // interval 1 s, failure_count 3, normal_count 1.
        let (m, ch) = run(3, 1, &[A, A, M, M, M, M, A, A]);
        assert_eq!(ch, vec![(4, State::Failure), (6, State::Normal)]);
        assert_eq!(m.state, State::Normal);
        assert_eq!((m.probes_answered, m.probes_missed), (4, 4));
        assert_eq!(m.history.len(), 2);
    }

    #[test]
    fn every_transition_happens_exactly_at_its_threshold() {
        // Exhaustive over all outcome sequences up to length 12 and small counts.
        for fc in 1..=4u32 {
            for nc in 1..=3u32 {
                for len in 0..=12usize {
                    for bits in 0..(1u32 << len) {
                        let seq: Vec<Outcome> = (0..len).map(|i| if bits >> i & 1 == 1 { M } else { A }).collect();
                        let (m, changes) = run(fc, nc, &seq);
                        // Reference: walk the sequence tracking run lengths.
                        let mut state = State::Normal;
                        let mut run_len = 0u32;
                        let mut expect = Vec::new();
                        for (i, &o) in seq.iter().enumerate() {
                            run_len = if i > 0 && seq[i - 1] == o { run_len + 1 } else { 1 };
                            let next = match (state, o) {
                                (State::Normal, M) if run_len >= fc => State::Failure,
                                (State::Failure, A) if run_len >= nc => State::Normal,
                                _ => state,
                            };
                            if next != state {
                                expect.push((i, next));
                                state = next;
                            }
                        }
                        assert_eq!(changes, expect, "fc={fc} nc={nc} seq={seq:?}");
                        assert_eq!(m.state, state);
                        // States alternate, starting with a failure.
                        for (k, (_, s)) in changes.iter().enumerate() {
                            assert_eq!(*s, if k % 2 == 0 { State::Failure } else { State::Normal });
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn flapping_below_the_counts_never_fails_over() {
        // A link that loses every other probe, or two in three, never reaches 3 misses in a row.
        let alt: Vec<Outcome> = (0..1000).map(|i| if i % 2 == 0 { M } else { A }).collect();
        assert!(run(3, 1, &alt).1.is_empty());
        let two_in_three: Vec<Outcome> = (0..999).map(|i| if i % 3 == 2 { A } else { M }).collect();
        assert!(run(3, 1, &two_in_three).1.is_empty());
        // But three in a row does, and one answer brings it back with normal_count 1.
        let (_, ch) = run(3, 1, &[M, A, M, M, M, A]);
        assert_eq!(ch, vec![(4, State::Failure), (5, State::Normal)]);
        // With normal_count 3, a flapping recovery holds the failure state.
        let (m, ch) = run(3, 3, &[M, M, M, A, M, A, A, M, A, A]);
        assert_eq!(ch, vec![(2, State::Failure)]);
        assert_eq!(m.state, State::Failure);
    }

    #[test]
    fn late_and_reordered_outcomes_are_stale() {
        let mut m = Machine::new(2, 1);
        // Probe 1's miss arrives before probe 0's late answer.
        assert_eq!(m.observe(1, M, Time90k(1)), None);
        assert_eq!(m.observe(0, A, Time90k(2)), None);
        assert_eq!(m.probes_stale, 1);
        assert_eq!(m.consecutive_misses, 1, "a stale answer must not reset the run");
        let t = m.observe(2, M, Time90k(3)).unwrap();
        assert_eq!((t.to, t.probe), (State::Failure, 2));
        // A duplicate outcome for the same probe is stale too.
        assert_eq!(m.observe(2, A, Time90k(4)), None);
        assert_eq!(m.state, State::Failure);
    }

    #[test]
    fn wall_clock_jumps_do_not_affect_decisions() {
        let mut m = Machine::new(3, 1);
        let times = [Time90k(1_000_000), Time90k(-5), Time90k(i64::MAX / 2)];
        for (i, t) in times.iter().enumerate() {
            let r = m.observe(i as u64, M, *t);
            assert_eq!(r.is_some(), i == 2);
        }
        assert_eq!(m.history.back().unwrap().at, times[2]);
    }

    #[test]
    fn history_is_bounded() {
        let mut m = Machine::new(1, 1);
        for i in 0..1000u64 {
            m.observe(i, if i % 2 == 0 { M } else { A }, Time90k(i as i64));
        }
        assert_eq!(m.history.len(), HISTORY);
        assert_eq!(m.history.back().unwrap().probe, 999);
    }
}
