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
//! Must never hold a lock across an await and never block the runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::probe::{self, ProbeResult};
use super::rule::{CheckKind, ConfiguredRule};
use super::state::{Machine, Outcome, State};
use crate::nvr::Nvr;

#[derive(Debug, serde::Serialize)]
pub struct RuleStatus {
    pub name: String,
    pub rule: ConfiguredRule,
    pub machine: Machine,
    pub last_rtt_ms: Option<f64>,
    pub last_error: Option<String>,
    /// Channels kept bound after failback until the primary records them.
    pub pending_release: Vec<u32>,
    /// The peer's recording channels from the last `http` probe.
    #[serde(skip)]
    peer_recording: Option<Vec<u32>>,
}

pub type SharedRule = Arc<Mutex<RuleStatus>>;

pub fn new_status(rule: ConfiguredRule) -> SharedRule {
    let m = Machine::new(rule.rule.check.failure_count, rule.rule.check.normal_count);
    Arc::new(Mutex::new(RuleStatus {
        name: rule.rule.name.clone(),
        rule,
        machine: m,
        last_rtt_ms: None,
        last_error: None,
        pending_release: Vec::new(),
        peer_recording: None,
    }))
}

/// Runs a rule until the task is aborted.
pub async fn run(nvr: Arc<Nvr>, status: SharedRule) {
    let rule = status.lock().expect("rule lock").rule.clone();
    let name = rule.rule.name.clone();
    let check = rule.rule.check.clone();
    // Start in `normal`, with its bindings.
    apply(&nvr, &rule, State::Normal, &status, true).await;
    let (tx, mut rx) = mpsc::channel::<(u64, ProbeResult)>(64);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    let mut release: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let (tx, check, s) = (tx.clone(), check.clone(), seq);
                seq += 1;
                tokio::spawn(async move {
                    let r = probe::probe(&check, s).await;
                    let _ = tx.send((s, r)).await;
                });
            }
            Some((s, result)) = rx.recv() => {
                let now = nvr.clock.now();
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
                if let Some(h) = apply(&nvr, &rule, t.to, &status, false).await {
                    release = Some(h);
                }
            }
        }
    }
}

/// Binds the channels of `state`. Channels to be released on failback are
/// released later by the returned task.
async fn apply(
    nvr: &Arc<Nvr>,
    rule: &ConfiguredRule,
    state: State,
    status: &SharedRule,
    initial: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    let bindings = match state {
        State::Normal => &rule.normal,
        State::Failure => &rule.failure,
    };
    let mut to_release = Vec::new();
    for (ch, cam) in bindings {
        if cam.is_none() && state == State::Normal && !initial {
            to_release.push(*ch);
            continue;
        }
        if let Err(e) = nvr.bind(*ch, cam.as_deref()).await {
            warn!(rule = %rule.rule.name, channel = ch, "cannot bind: {e:#}");
        }
    }
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
    let owed: Vec<(u32, u32)> = match (failed_at, &rule.rule.backup) {
        (Some(_), Some(b)) => b.cameras.iter().map(|m| (m.local, m.remote)).collect(),
        _ => Vec::new(),
    };
    for &(local, remote) in owed.iter().filter(|(l, _)| !to_release.contains(l)) {
        queue(nvr, rule, local, remote, failed_at.unwrap_or_default()).await;
    }
    if to_release.is_empty() {
        return None;
    }
    status.lock().expect("rule lock").pending_release = to_release.clone();
    let (nvr, rule, status) = (nvr.clone(), rule.clone(), status.clone());
    Some(tokio::spawn(async move {
        release_when_safe(&nvr, &rule, &status, to_release.clone()).await;
        // Released channels have closed their last segment: send the footage.
        for &(local, remote) in owed.iter().filter(|(l, _)| to_release.contains(l)) {
            queue(&nvr, &rule, local, remote, failed_at.unwrap_or_default()).await;
        }
    }))
}

async fn queue(nvr: &Nvr, rule: &ConfiguredRule, local: u32, remote: u32, since: crate::time::Time90k) {
    let Some(b) = &rule.rule.backup else { return };
    let job = crate::failover::transfer::Job {
        rule: rule.rule.name.clone(),
        local_channel: local,
        remote_channel: remote,
        target: format!("{}:{}", b.address, b.port.unwrap_or(8080)),
        start: since,
        end: nvr.clock.now(),
    };
    nvr.queue_transfer(job).await;
}

/// Releases each channel once the primary records its mapped channel (http
/// checks), or after `release_delay` (every check, as the upper bound).
async fn release_when_safe(nvr: &Nvr, rule: &ConfiguredRule, status: &SharedRule, mut channels: Vec<u32>) {
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
                if let Err(e) = nvr.bind(ch, None).await {
                    warn!(channel = ch, "cannot release: {e:#}");
                }
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
