//! The executor of a live apply: carries out `reconcile::plan` on the running
//! NVR one item at a time — channels (policy to the writer, ingest restarted
//! only where the camera or motion changed, added, removed), failover rules
//! (kept in their state when their check is unchanged), the event dispatcher,
//! access settings and the transfer worker. The HTTP endpoint follows on its
//! own through `Nvr::subscribe_config`.
//!
//! Must never touch a channel the plan leaves unchanged (its ingest session
//! goes on, not a frame lost), never hold a lock across an await, and never
//! change anything when the plan has problems (refused whole).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::{new_channel, new_dispatcher, start_transfer, Nvr};
use crate::config::{ChannelConfig, Config};
use crate::ingest::IngestHandle;
use crate::reconcile::{self, ApplyError, ApplyReport, ChannelChange, Plan, RuleChange};

/// Channels whose binding a failover rule or the pool decides.
fn ruled(config: &Config) -> HashSet<u32> {
    super::governed_channels(config)
}

fn channel(config: &Config, n: u32) -> Option<&ChannelConfig> {
    config.channels.iter().find(|c| c.number == n)
}

pub(super) async fn apply(nvr: &Arc<Nvr>, desired: Config) -> Result<ApplyReport, ApplyError> {
    let _one_at_a_time = nvr.applying.lock().await;
    let started = Instant::now();
    let running = nvr.config();
    let problems = reconcile::problems(&running, &desired);
    if !problems.is_empty() {
        warn!(problems = problems.len(), "configuration refused; nothing changed");
        return Err(ApplyError::Refused(problems));
    }
    let plan = reconcile::plan(&running, &desired);
    let desired = Arc::new(desired);
    // First, so that bindings made below find the new cameras.
    nvr.config.send_replace(desired.clone());
    let mut report = ApplyReport {
        installed: Some(desired.clone()),
        ..ApplyReport::default()
    };
    let mut stopping = Vec::new();
    channels(nvr, &plan, &running, &desired, &mut report, &mut stopping).await;
    rules(nvr, &plan, &running, &desired, &mut report, &mut stopping);
    for h in stopping {
        h.stop().await;
    }
    if plan.events {
        let next = new_dispatcher(
            &desired,
            &nvr.nvr_id,
            &nvr.writer,
            &nvr.clock,
            &nvr.actions,
            &nvr.outbox,
        );
        let old = nvr.dispatcher.send_replace(Arc::new(next));
        if let Some(m) = &old.mqtt {
            m.stop();
        }
        step(&mut report, "triggers, actions and MQTT restarted".into());
    }
    if plan.access {
        nvr.access.set_settings(desired.access.clone());
        step(&mut report, "access settings updated".into());
    }
    if plan.listener {
        nvr.access
            .secure_cookies
            .store(desired.is_tls(), std::sync::atomic::Ordering::Relaxed);
        step(
            &mut report,
            format!("HTTP listener moves to {} ({})", desired.listen, desired.http.scheme()),
        );
    }
    if plan.transfer {
        match start_transfer(&desired, &nvr.nvr_id) {
            // The old worker's thread ends when its sender is dropped here.
            Ok(w) => {
                *nvr.transfer_wake.lock().expect("wake lock") = w;
                step(&mut report, "failback transfer worker restarted".into());
            }
            Err(e) => warn!("cannot restart the failback transfer worker: {e:#}"),
        }
    }
    if plan.name {
        step(
            &mut report,
            format!("NVR name is now {}", desired.name.as_deref().unwrap_or("(none)")),
        );
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    info!(
        steps = report.steps.len(),
        restarted = ?report.restarted,
        elapsed_ms = report.elapsed_ms,
        "configuration applied"
    );
    Ok(report)
}

fn step(report: &mut ApplyReport, line: String) {
    info!("apply: {line}");
    report.steps.push(line);
}

/// Hands a channel's new recording policy and retention to the store writer.
async fn send_policy(nvr: &Nvr, c: &ChannelConfig) {
    let cmd = crate::store::Command::Policy(Box::new(crate::store::writer::PolicyUpdate {
        channel: c.number,
        recording: c.recording.clone(),
        retention: c.retention,
    }));
    let w = nvr.writer.clone();
    // Behind the frames already queued, like any command: a blocking send,
    // off the runtime.
    let sent = tokio::task::spawn_blocking(move || w.send(cmd).is_ok()).await;
    if !matches!(sent, Ok(true)) {
        warn!(channel = c.number, "the store writer did not take the new policy");
    }
}

async fn channels(
    nvr: &Arc<Nvr>,
    plan: &Plan,
    running: &Config,
    desired: &Config,
    report: &mut ApplyReport,
    stopping: &mut Vec<IngestHandle>,
) {
    let ruled = ruled(desired);
    for (&n, change) in &plan.channels {
        let (old, new) = (channel(running, n), channel(desired, n));
        if let (Some(o), Some(d)) = (old, new) {
            if o.recording != d.recording || o.retention != d.retention {
                send_policy(nvr, d).await;
            }
        }
        match (change, new) {
            (ChannelChange::Unchanged, _) => {}
            (ChannelChange::Renamed | ChannelChange::Policy { .. }, Some(d)) => {
                if let Some(rt) = nvr.channels.lock().expect("channels lock").get_mut(&n) {
                    rt.config = d.clone();
                }
                let what = match change {
                    ChannelChange::Renamed => format!("renamed to {}", d.name),
                    _ => "recording policy or retention updated; ingest goes on".into(),
                };
                step(report, format!("channel {n}: {what}"));
            }
            (ChannelChange::Restart { reasons, motion }, Some(d)) => {
                let fresh = match motion {
                    true => match new_channel(d, &nvr.writer) {
                        Ok(rt) => Some(rt.motion),
                        Err(e) => {
                            warn!(channel = n, "cannot start motion detection: {e:#}");
                            Some(None)
                        }
                    },
                    false => None,
                };
                let current = {
                    let mut chans = nvr.channels.lock().expect("channels lock");
                    let Some(rt) = chans.get_mut(&n) else { continue };
                    rt.config = d.clone();
                    if let Some(m) = fresh {
                        rt.motion = m;
                    }
                    rt.binding.clone()
                };
                // A rule decides a ruled channel's camera; it stays unless removed.
                let target = match ruled.contains(&n) {
                    true => current.filter(|c| desired.camera(c).is_some()),
                    false => d.camera.clone(),
                };
                restart(nvr, n, target.as_deref()).await;
                report.restarted.push(n);
                step(
                    report,
                    format!("channel {n}: ingest restarted ({})", reasons.join(", ")),
                );
            }
            (ChannelChange::Added, Some(d)) => {
                match new_channel(d, &nvr.writer) {
                    Ok(rt) => {
                        nvr.channels.lock().expect("channels lock").insert(n, rt);
                    }
                    Err(e) => {
                        warn!(channel = n, "cannot start the channel: {e:#}");
                        continue;
                    }
                }
                if let Some(cam) = d.camera.as_deref().filter(|_| !ruled.contains(&n)) {
                    match nvr.bind_now(n, Some(cam)) {
                        Ok((a, b)) => stopping.extend(a.into_iter().chain(b)),
                        Err(e) => warn!(channel = n, "cannot bind: {e:#}"),
                    }
                }
                step(report, format!("channel {n}: added"));
            }
            (ChannelChange::Removed, _) => {
                let rt = nvr.channels.lock().expect("channels lock").remove(&n);
                if let Some(mut rt) = rt {
                    stopping.extend(rt.ingest.take().into_iter().chain(rt.sub_ingest.take()));
                    stopping.extend(rt.live_sub.take());
                    // Its motion thread ends with the last sender (the ingest's, once stopped).
                }
                step(report, format!("channel {n}: removed (its footage stays)"));
            }
            (_, None) => {}
        }
    }
    // Channels a rule bound to a camera whose settings changed, which the
    // channel's own configuration does not name.
    let bound: Vec<(u32, String)> = nvr
        .channels
        .lock()
        .expect("channels lock")
        .iter()
        .filter(|(n, _)| !report.restarted.contains(n))
        .filter_map(|(n, rt)| rt.binding.clone().map(|b| (*n, b)))
        .filter(|(_, b)| plan.changed_cameras.contains(b))
        .collect();
    for (n, cam) in bound {
        let target = desired.camera(&cam).map(|c| c.name.clone());
        restart(nvr, n, target.as_deref()).await;
        report.restarted.push(n);
        step(report, format!("channel {n}: ingest restarted (camera {cam} changed)"));
    }
}

/// Stops the channel's sessions, then opens a new one on `camera`: never two
/// sessions recording the same channel at once.
async fn restart(nvr: &Nvr, n: u32, camera: Option<&str>) {
    match nvr.bind_inner(n, None, false) {
        Ok((a, b)) => {
            for h in a.into_iter().chain(b) {
                h.stop().await;
            }
        }
        Err(e) => warn!(channel = n, "cannot unbind: {e:#}"),
    }
    if let Some(cam) = camera {
        if let Err(e) = nvr.bind_inner(n, Some(cam), true) {
            warn!(channel = n, camera = cam, "cannot bind: {e:#}");
        }
    }
}

/// Replaces the rules when any changed; rules whose check did not change
/// carry their state machine over, so they resume where they were.
fn rules(
    nvr: &Arc<Nvr>,
    plan: &Plan,
    running: &Config,
    desired: &Config,
    report: &mut ApplyReport,
    stopping: &mut Vec<IngestHandle>,
) {
    if plan.rules.values().all(|r| *r == RuleChange::Unchanged) {
        return;
    }
    for a in nvr.agents.lock().expect("agents lock").drain(..) {
        a.abort();
    }
    let kept: HashMap<String, crate::failover::state::Machine> = nvr
        .rules()
        .iter()
        .filter_map(|r| {
            let st = r.lock().ok()?;
            matches!(
                plan.rules.get(&st.name),
                Some(RuleChange::Unchanged | RuleChange::KeepState)
            )
            .then(|| (st.name.clone(), st.machine.clone()))
        })
        .collect();
    for (name, change) in &plan.rules {
        let state = kept.get(name).map(|m| format!("{:?}", m.state).to_lowercase());
        let line = match change {
            RuleChange::Unchanged => format!("rule {name}: unchanged, kept in state {}", state.unwrap_or_default()),
            RuleChange::KeepState => format!(
                "rule {name}: changed, same check: kept in state {}",
                state.unwrap_or_default()
            ),
            RuleChange::Restart => format!("rule {name}: check changed: restarted from normal"),
            RuleChange::Added => format!("rule {name}: added"),
            RuleChange::Removed => format!("rule {name}: removed"),
        };
        step(report, line);
    }
    *nvr.rules.write().expect("rules lock") = crate::failover::agent::kept_statuses(&desired.rules, kept);
    nvr.warm.set_wanted(crate::ingest::warm::failure_cameras(desired));
    // A channel no rule governs any more takes the camera its own
    // configuration names.
    let now_ruled = ruled(desired);
    for n in ruled(running).difference(&now_ruled) {
        if let Some(d) = channel(desired, *n) {
            match nvr.bind_now(*n, d.camera.as_deref()) {
                Ok((a, b)) => stopping.extend(a.into_iter().chain(b)),
                Err(e) => warn!(channel = n, "cannot bind: {e:#}"),
            }
        }
    }
    nvr.start_agents();
}
