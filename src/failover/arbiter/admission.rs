//! The arbiter's second step: of the channels held by rules in failure, which
//! failure cameras are recorded within the standby's capacity
//! (`failover::capacity::plan`), applied to the batch of decisions the first
//! step made. With unlimited capacity and no `never` camera it changes
//! nothing but its bookkeeping. Pure, like the arbiter.

use super::{Action, Arbiter, Decision, Effect, RuleId};
use crate::failover::capacity::{self, Candidate, Priority, ASSUMED_MBPS};
use crate::time::Time90k;

impl Arbiter {
    /// Each network camera's priority and, when known, its measured bitrate;
    /// a camera without a new measure keeps the last one.
    pub fn set_cameras(&mut self, cameras: impl IntoIterator<Item = (String, Priority, Option<f64>)>) {
        for (name, priority, mbps) in cameras {
            let e = self.cameras.entry(name).or_insert((priority, None));
            e.0 = priority;
            if mbps.is_some() {
                e.1 = mbps;
            }
        }
    }

    fn camera_info(&self, name: &str) -> (Priority, f64) {
        self.cameras
            .get(name)
            .map(|(p, m)| (*p, m.unwrap_or(ASSUMED_MBPS)))
            .unwrap_or((Priority::default(), ASSUMED_MBPS))
    }

    /// Applies capacity to a batch of first-step decisions and returns the
    /// batch with the capacity's own decisions added.
    pub(super) fn admit(&mut self, mut out: Vec<Decision>, now: Time90k) -> Vec<Decision> {
        // A channel returned after failback keeps recording (and using room)
        // until its delayed release; one never recorded has nothing to keep.
        for d in out.iter_mut().filter(|d| d.action == Action::Return) {
            match self.admitted.remove(&d.channel) {
                Some(cam) if d.effect == Effect::ReleaseLater => {
                    let rule = self.id(&d.rule).unwrap_or_default();
                    self.releasing.insert(d.channel, (rule, cam));
                }
                Some(_) => {}
                None => {
                    let resting = self.slots.get(&d.channel).and_then(|s| s.resting.clone());
                    d.effect = Effect::Bind(resting);
                }
            }
        }
        // A channel another rule takes is no longer being released.
        let held: Vec<u32> = self
            .releasing
            .keys()
            .copied()
            .filter(|ch| self.holder(*ch).is_some())
            .collect();
        for ch in held {
            self.releasing.remove(&ch);
        }
        let mut failed: Vec<(u64, RuleId)> = self.failed_seq.iter().map(|(r, s)| (*s, *r)).collect();
        failed.sort_unstable();
        // (candidate, holder) — releasing channels first: they are recorded.
        let mut cands: Vec<(Candidate, Option<RuleId>)> = Vec::new();
        for (ch, (_, cam)) in &self.releasing {
            let (priority, mbps) = self.camera_info(cam);
            let c = Candidate {
                channel: *ch,
                camera: cam.clone(),
                failed: 0,
                priority,
                mbps,
                recording: true,
            };
            cands.push((c, None));
        }
        for (i, &(_, r)) in failed.iter().enumerate() {
            for (ch, cam) in &self.rules[r].failure {
                let Some(cam) = cam else { continue };
                if self.holder(*ch) != Some(r) {
                    continue;
                }
                let (priority, mbps) = self.camera_info(cam);
                let c = Candidate {
                    channel: *ch,
                    camera: cam.clone(),
                    failed: i + 1,
                    priority,
                    mbps,
                    recording: self.admitted.get(ch) == Some(cam),
                };
                cands.push((c, Some(r)));
            }
        }
        // Channels no rule wants any more are neither recorded nor left.
        self.admitted
            .retain(|ch, _| cands.iter().any(|(c, h)| h.is_some() && c.channel == *ch));
        self.left
            .retain(|ch, _| cands.iter().any(|(c, h)| h.is_some() && c.channel == *ch));
        let only: Vec<Candidate> = cands.iter().map(|(c, _)| c.clone()).collect();
        let plan = capacity::plan(&only, self.capacity);
        for ch in plan.take {
            let Some((c, Some(r))) = cands.iter().find(|(c, _)| c.channel == ch) else {
                continue;
            };
            if self.admitted.get(&ch) == Some(&c.camera) {
                continue;
            }
            self.admitted.insert(ch, c.camera.clone());
            self.hold_start.entry((*r, ch)).or_insert(now);
            self.left.remove(&ch);
            let want = Effect::Bind(Some(c.camera.clone()));
            if !out.iter().any(|d| d.channel == ch && d.effect == want) {
                out.push(Decision {
                    channel: ch,
                    rule: self.rules[*r].name.clone(),
                    action: Action::Admit,
                    effect: want,
                    at: now,
                });
            }
        }
        for (ch, reason) in plan.leave {
            let Some((c, holder)) = cands.iter().find(|(c, _)| c.channel == ch) else {
                continue;
            };
            let resting = self.slots.get(&ch).and_then(|s| s.resting.clone());
            let released_by = self.releasing.remove(&ch).map(|(r, _)| r);
            let recording = self.admitted.remove(&ch).is_some() || released_by.is_some();
            // A decision of this batch that would bind the left camera binds
            // the resting one instead.
            let mut rebound = false;
            for d in out
                .iter_mut()
                .filter(|d| d.channel == ch && d.effect == Effect::Bind(Some(c.camera.clone())))
            {
                d.effect = Effect::Bind(resting.clone());
                rebound = true;
            }
            let rule = holder
                .or(released_by)
                .map(|r| self.rules[r].name.clone())
                .unwrap_or_default();
            let known = holder.is_some_and(|r| {
                self.left
                    .get(&ch)
                    .is_some_and(|(lr, cam, why)| *lr == r && *cam == c.camera && *why == reason)
            });
            if let Some(r) = holder {
                self.left.insert(ch, (*r, c.camera.clone(), reason));
            }
            if known && !recording && !rebound {
                continue;
            }
            let effect = if recording && !rebound {
                Effect::Bind(resting)
            } else {
                Effect::Keep
            };
            out.push(Decision {
                channel: ch,
                rule,
                action: Action::Left {
                    camera: c.camera.clone(),
                    reason,
                },
                effect,
                at: now,
            });
        }
        out
    }
}
