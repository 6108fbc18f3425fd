//! The failover agent: one task per rule that probes on the rule's interval,
//! feeds outcomes to the state machine, and on a transition rebinds channels —
//! unbinding the old state's cameras and binding the new state's — so that
//! ingest and recording follow.
//!
//! Failback without a hole: when a rule returns to `normal`, a channel the
//! standby must release (bound to nothing in `normal`) is kept until the
//! primary records it again — confirmed through the `http` check's status
//! (the backup map names the primary's channel) — or, for `icmp`/`tcp` checks,
//! for `release_delay`. A new failure cancels a pending release.
//!
//! Channels named by several rules are arbitrated (`super::arbiter`): every
//! binding goes through the one arbiter, decided and applied under its lock
//! so that decisions reach the channels in the order they were made; each
//! decision is logged and shown in `/api/v1/rules`.
//! Must never hold a lock across an await and never block the runtime; never
//! takes a rule's status lock while holding the arbiter's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::arbiter::{Action, Arbiter, Decision, Effect, RuleId};
use super::capacity::Reason;
use super::handle::NvrHandle;
use super::probe::{self, ProbeResult};
use super::rule::{CheckKind, ConfiguredRule};
use super::state::{Machine, Outcome, State};
use crate::time::Time90k;

#[derive(Debug, serde::Serialize)]
pub struct RuleStatus {
    pub name: String,
    pub rule: ConfiguredRule,
    pub machine: Machine,
    pub last_rtt_ms: Option<f64>,
    pub last_error: Option<String>,
    /// Channels kept bound after failback until the primary records them.
    pub pending_release: Vec<u32>,
    /// Channels held, channels waited for, and the arbitration decisions
    /// that concern this rule.
    pub arbitration: ArbiterHandle,
    /// The peer's recording channels from the last `http` probe.
    #[serde(skip)]
    peer_recording: Option<Vec<u32>>,
}

pub type SharedRule = Arc<Mutex<RuleStatus>>;

/// The NVR's one arbiter, seen from one rule.
#[derive(Clone)]
pub struct ArbiterHandle {
    arbiter: Arc<Mutex<Arbiter>>,
    id: RuleId,
}

impl std::fmt::Debug for ArbiterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArbiterHandle({})", self.id)
    }
}

impl serde::Serialize for ArbiterHandle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let view = self.arbiter.lock().map(|a| a.view(self.id)).unwrap_or_default();
        view.serialize(s)
    }
}

/// The status of every rule, sharing one arbiter for their channels; a
/// rule given a machine in `kept` (by name: a live apply kept its state)
/// starts from it instead of `normal`.
pub fn kept_statuses(
    rules: &[ConfiguredRule],
    mut kept: std::collections::HashMap<String, Machine>,
) -> Vec<SharedRule> {
    let statuses = new_statuses(rules);
    for s in &statuses {
        let mut st = s.lock().expect("rule lock");
        if let Some(m) = kept.remove(&st.name) {
            st.machine = m;
        }
    }
    statuses
}

/// The status of every rule, sharing one arbiter for their channels.
pub fn new_statuses(rules: &[ConfiguredRule]) -> Vec<SharedRule> {
    let arbiter = Arc::new(Mutex::new(Arbiter::new(rules)));
    rules
        .iter()
        .enumerate()
        .map(|(id, rule)| {
            let m = Machine::new(rule.rule.check.failure_count, rule.rule.check.normal_count);
            Arc::new(Mutex::new(RuleStatus {
                name: rule.rule.name.clone(),
                rule: rule.clone(),
                machine: m,
                last_rtt_ms: None,
                last_error: None,
                pending_release: Vec::new(),
                arbitration: ArbiterHandle {
                    arbiter: arbiter.clone(),
                    id,
                },
                peer_recording: None,
            }))
        })
        .collect()
}

/// Decides under the arbiter's lock and applies the bindings in the same
/// section (binding itself is synchronous; stopping old sessions is awaited
/// after), so two rules' decisions reach a channel in the order made.
async fn arbitrate(
    nvr: &dyn NvrHandle,
    handle: &ArbiterHandle,
    decide: impl FnOnce(&mut Arbiter) -> Vec<Decision>,
) -> Vec<Decision> {
    let cameras = nvr.cameras();
    let mut stopping = Vec::new();
    let decisions = {
        let mut a = handle.arbiter.lock().expect("arbiter lock");
        a.set_cameras(cameras);
        let ds = decide(&mut a);
        // Only a channel's last binding in one batch (a rule resumed in
        // `failure` binds `normal` then `failure`): the session is not
        // restarted for a binding that lasts no time.
        let last_bind = |i: usize, ch: u32| {
            !ds[i + 1..]
                .iter()
                .any(|l| l.channel == ch && matches!(l.effect, Effect::Bind(_)))
        };
        for (i, d) in ds.iter().enumerate() {
            if let (Effect::Bind(cam), true) = (&d.effect, last_bind(i, d.channel)) {
                match nvr.bind(d.channel, cam.as_deref()) {
                    Ok(replaced) => stopping.push(replaced),
                    Err(e) => warn!(rule = %d.rule, channel = d.channel, "cannot bind: {e:#}"),
                }
            }
        }
        ds
    };
    for d in &decisions {
        log_decision(d);
        if let Action::Left {
            camera,
            reason: Reason::NoCapacity,
        } = &d.action
        {
            nvr.record_event(
                Some(d.channel),
                "no_capacity",
                serde_json::json!({ "rule": d.rule, "channel": d.channel, "camera": camera }),
            );
        }
    }
    for h in stopping {
        h.stop().await;
    }
    decisions
}

fn log_decision(d: &Decision) {
    let ch = d.channel;
    match &d.action {
        Action::Rest => {
            info!(rule = %d.rule, channel = ch, effect = ?d.effect, "arbitration: channel takes its resting binding")
        }
        Action::Take => {
            info!(rule = %d.rule, channel = ch, effect = ?d.effect, "arbitration: rule in failure takes the free channel")
        }
        Action::Wait { holder } => {
            info!(rule = %d.rule, channel = ch, holder = %holder, "arbitration: channel held by another rule in failure; waiting")
        }
        Action::HandOver { from } => {
            info!(rule = %d.rule, channel = ch, from = %from, effect = ?d.effect, "arbitration: holder left failure; channel handed to the waiting rule")
        }
        Action::Return => {
            info!(rule = %d.rule, channel = ch, effect = ?d.effect, "arbitration: no rule in failure wants the channel; returning it to rest")
        }
        Action::StopWaiting { holder } => {
            info!(rule = %d.rule, channel = ch, holder = %holder, "arbitration: rule left failure; no longer waiting")
        }
        Action::Release => info!(rule = %d.rule, channel = ch, effect = ?d.effect, "arbitration: delayed release done"),
        Action::ReleaseSkipped { holder } => {
            info!(rule = %d.rule, channel = ch, holder = %holder, "arbitration: delayed release skipped; another rule holds the channel")
        }
        Action::Admit => {
            info!(rule = %d.rule, channel = ch, effect = ?d.effect, "capacity: room freed; the rule's camera is recorded now")
        }
        Action::Left {
            camera,
            reason: Reason::NoCapacity,
        } => {
            warn!(rule = %d.rule, channel = ch, camera = %camera, effect = ?d.effect, "capacity: no room for the camera; not recorded (no_capacity)")
        }
        Action::Left {
            camera,
            reason: Reason::PriorityNever,
        } => {
            info!(rule = %d.rule, channel = ch, camera = %camera, "capacity: camera has priority `never`; not taken over")
        }
    }
}

/// The client TLS for a rule whose check asks over HTTPS. The configuration
/// check guarantees a trust when one is needed; a trust that cannot be
/// built leaves `None`, so every probe misses saying why (never plain HTTP).
fn peer_tls(nvr: &dyn NvrHandle, rule: &str, wanted: bool) -> Option<crate::httpc::PeerTls> {
    let trust = nvr.peer_trust().filter(|_| wanted)?;
    match crate::httpc::PeerTls::new(&trust) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(rule = %rule, "cannot check the peer's TLS certificate: {e}");
            None
        }
    }
}

/// What an `http` probe tells the primary it watches: the channels this
/// rule backs up, when the probe goes to the backup NVR itself.
fn backup_offer(nvr: &dyn NvrHandle, rule: &ConfiguredRule) -> crate::failover::peer::StatusQuery {
    let r = &rule.rule;
    match &r.backup {
        Some(b) if r.check.kind == CheckKind::Http && b.address == r.check.address => {
            let (port, tls) = nvr.listener();
            let pairs: Vec<(u32, u32)> = b.cameras.iter().map(|m| (m.remote, m.local)).collect();
            crate::failover::peer::StatusQuery::offer(port, tls, &pairs)
        }
        _ => Default::default(),
    }
}

/// Runs a rule until the task is aborted.
pub async fn run(nvr: Arc<dyn NvrHandle>, status: SharedRule) {
    let rule = status.lock().expect("rule lock").rule.clone();
    let name = rule.rule.name.clone();
    let check = rule.rule.check.clone();
    let tls = peer_tls(&*nvr, &name, check.tls);
    // Start in `normal`, with its bindings; a rule an apply kept resumes in
    // the state it had, keeping the channels it held.
    let resumed = status.lock().expect("rule lock").machine.state;
    apply(&nvr, &rule, resumed, &status, true, None).await;
    let (tx, mut rx) = mpsc::channel::<(u64, ProbeResult)>(64);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    let mut release: Option<tokio::task::JoinHandle<()>> = None;
    let mut last_answer: Option<Time90k> = None;
    let offer = backup_offer(&*nvr, &rule);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let (tx, check, s, tls, offer) = (tx.clone(), check.clone(), seq, tls.clone(), offer.clone());
                let token = nvr.peer_token();
                seq += 1;
                tokio::spawn(async move {
                    let r = probe::probe_offering(&check, s, token, tls.as_ref(), &offer).await;
                    let _ = tx.send((s, r)).await;
                });
            }
            Some((s, result)) = rx.recv() => {
                let now = nvr.now();
                if matches!(result, ProbeResult::Answered { .. }) {
                    // The primary was known well until here: a takeover's
                    // lead-in starts here.
                    last_answer = Some(now);
                }
                let transition = {
                    let mut st = status.lock().expect("rule lock");
                    let outcome = match &result {
                        ProbeResult::Answered { rtt, recording } => {
                            st.last_rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                            st.last_error = None;
                            if recording.is_some() {
                                st.peer_recording = recording.clone();
                            }
                            Outcome::Answered
                        }
                        ProbeResult::Missed(e) => {
                            st.last_error = Some(e.clone());
                            Outcome::Missed
                        }
                    };
                    st.machine.observe(s, outcome, now)
                };
                let Some(t) = transition else { continue };
                info!(rule = %name, from = ?t.from, to = ?t.to, probe = t.probe, "rule state changed");
                nvr.record_event(None, "rule_state_changed", serde_json::json!({
                    "rule": name, "from": t.from, "to": t.to, "probe": t.probe,
                }));
                if let Some(r) = release.take() {
                    r.abort();
                }
                status.lock().expect("rule lock").pending_release.clear();
                if let Some(h) = apply(&nvr, &rule, t.to, &status, false, last_answer).await {
                    release = Some(h);
                }
            }
        }
    }
}

/// Binds the channels of `state`, through the arbiter. Channels to be
/// released on failback are released later by the returned task.
async fn apply(
    nvr: &Arc<dyn NvrHandle>,
    rule: &ConfiguredRule,
    state: State,
    status: &SharedRule,
    initial: bool,
    last_answer: Option<Time90k>,
) -> Option<tokio::task::JoinHandle<()>> {
    let handle = status.lock().expect("rule lock").arbitration.clone();
    let now = nvr.now();
    let decisions = arbitrate(&**nvr, &handle, |a| {
        if initial {
            let mut ds = a.start(handle.id, now);
            if state == State::Failure {
                ds.extend(a.transition(handle.id, State::Failure, now));
            }
            ds
        } else {
            a.transition(handle.id, state, now)
        }
    })
    .await;
    if state == State::Failure {
        fill_lead_in(&**nvr, rule, &decisions, last_answer, now);
    }
    let to_release: Vec<u32> = decisions
        .iter()
        .filter(|d| d.effect == Effect::ReleaseLater)
        .map(|d| d.channel)
        .collect();
    // Footage recorded since the failure began is owed to the backup NVR.
    let failed_at = (state == State::Normal && !initial)
        .then(|| {
            let st = status.lock().expect("rule lock");
            st.machine
                .history
                .iter()
                .rev()
                .find(|t| t.to == State::Failure)
                .map(|t| t.at)
        })
        .flatten();
    // Only channels this rule held during the failure, from when it took
    // them: a shared channel may have recorded another rule's camera.
    let owed: Vec<(u32, u32, crate::time::Time90k)> = match (failed_at, &rule.rule.backup) {
        (Some(_), Some(b)) => {
            let a = handle.arbiter.lock().expect("arbiter lock");
            b.cameras
                .iter()
                .filter_map(|m| {
                    let since = a.held_since(handle.id, m.local);
                    if since.is_none() {
                        info!(rule = %rule.rule.name, channel = m.local, "nothing owed to the backup: another rule held the channel");
                    }
                    since.map(|t| (m.local, m.remote, t))
                })
                .collect()
        }
        _ => Vec::new(),
    };
    for &(local, remote, since) in owed.iter().filter(|(l, _, _)| !to_release.contains(l)) {
        queue(&**nvr, rule, local, remote, since).await;
    }
    if to_release.is_empty() {
        return None;
    }
    status.lock().expect("rule lock").pending_release = to_release.clone();
    let (nvr, rule, status) = (nvr.clone(), rule.clone(), status.clone());
    Some(tokio::spawn(async move {
        release_when_safe(&*nvr, &rule, &status, to_release.clone()).await;
        // Released channels have closed their last segment: send the footage.
        for &(local, remote, since) in owed.iter().filter(|(l, _, _)| to_release.contains(l)) {
            queue(&*nvr, &rule, local, remote, since).await;
        }
    }))
}

/// Every channel that starts recording a failure camera missed the time
/// from when the primary was last known well to now: gap fill asks the
/// camera for it (a camera without edge storage has nothing to give).
fn fill_lead_in(
    nvr: &dyn NvrHandle,
    rule: &ConfiguredRule,
    ds: &[Decision],
    last_answer: Option<Time90k>,
    now: Time90k,
) {
    for d in ds {
        let takes = matches!(d.action, Action::Take | Action::HandOver { .. } | Action::Admit);
        if !(takes && matches!(d.effect, Effect::Bind(Some(_)))) {
            continue;
        }
        match last_answer {
            Some(since) if since < now => nvr.fill_gap(d.channel, since, now),
            _ => info!(rule = %rule.rule.name, channel = d.channel, "no lead-in to fill: the primary never answered"),
        }
    }
}

async fn queue(nvr: &dyn NvrHandle, rule: &ConfiguredRule, local: u32, remote: u32, since: crate::time::Time90k) {
    let Some(b) = &rule.rule.backup else { return };
    let job = crate::failover::transfer::Job {
        rule: rule.rule.name.clone(),
        local_channel: local,
        remote_channel: remote,
        target: crate::failover::transfer::target(&b.address, b.port.unwrap_or(8080), b.tls),
        start: since,
        end: nvr.now(),
    };
    nvr.queue_transfer(job).await;
}

/// Releases each channel once the primary records its mapped channel (http
/// checks), or after `release_delay` (every check, as the upper bound).
async fn release_when_safe(nvr: &dyn NvrHandle, rule: &ConfiguredRule, status: &SharedRule, mut channels: Vec<u32>) {
    let delay = rule.rule.release_delay;
    let deadline = tokio::time::Instant::now() + delay;
    let remote_of = |local: u32| {
        rule.rule
            .backup
            .as_ref()
            .and_then(|b| b.cameras.iter().find(|m| m.local == local))
            .map(|m| m.remote)
    };
    while !channels.is_empty() {
        let expired = tokio::time::Instant::now() >= deadline;
        let peer = status.lock().expect("rule lock").peer_recording.clone();
        let mut kept = Vec::new();
        for ch in channels {
            let confirmed = rule.rule.check.kind == CheckKind::Http
                && peer.as_ref().is_some_and(|p| p.contains(&remote_of(ch).unwrap_or(ch)));
            if confirmed || expired {
                let why = if confirmed {
                    "primary records it again"
                } else {
                    "release delay elapsed"
                };
                info!(rule = %rule.rule.name, channel = ch, "releasing channel after failback: {why}");
                let handle = status.lock().expect("rule lock").arbitration.clone();
                let now = nvr.now();
                arbitrate(nvr, &handle, |a| a.release(handle.id, ch, now)).await;
            } else {
                kept.push(ch);
            }
        }
        channels = kept;
        status.lock().expect("rule lock").pending_release = channels.clone();
        if !channels.is_empty() {
            tokio::time::sleep(Duration::from_millis(50).min(delay)).await;
        }
    }
}
