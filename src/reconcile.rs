//! Live apply: what must change to go from the running configuration to the
//! desired one, decided by a pure planner (`plan`, `problems`) that
//! `Nvr::apply` then carries out item by item.
//!
//! Owns the rules of what restarts: a channel's ingest restarts only when the
//! camera it pulls from (its binding, or that camera's URL, substream,
//! transport or credentials) or its motion settings change; schedule, pre/post
//! and retention go to the store writer with ingest untouched; a failover
//! rule whose check is unchanged keeps its state. Must never start, stop or
//! touch anything itself: it reads two configurations and answers.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{ChannelConfig, Config, ConfigError};
use crate::failover::rule::ConfiguredRule;

/// What an apply did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ApplyReport {
    /// One line per thing changed, for the operator ("channel 2: ingest restarted (camera sim2 → sim9)").
    pub steps: Vec<String>,
    /// Channels whose ingest was restarted.
    pub restarted: Vec<u32>,
    pub elapsed_ms: u64,
    /// The configuration this apply installed, the very `Arc` the NVR now
    /// serves until the next apply: a caller tells its own apply from any
    /// later one by pointer, with no window between applying and looking.
    #[serde(skip)]
    pub installed: Option<std::sync::Arc<Config>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Nothing was changed.
    #[error("{}", crate::config::ConfigErrors(.0.clone()))]
    Refused(Vec<ConfigError>),
}

/// What happens to one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelChange {
    /// Keeps recording as it is.
    Unchanged,
    /// Only the name differs: nothing stops.
    Renamed,
    /// Recording schedule, pre/post or retention changed (and perhaps the
    /// name): the store writer takes the new policy, ingest goes on.
    Policy {
        recording: bool,
        retention: bool,
    },
    /// Ingest (and motion, when `motion` says so) restarts, for the reasons given.
    Restart {
        reasons: Vec<String>,
        motion: bool,
    },
    Added,
    Removed,
}

/// What happens to one failover rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleChange {
    Unchanged,
    /// Its bindings, backup or release delay changed but not its check: it
    /// keeps its state (normal/failure) and the channels it holds.
    KeepState,
    /// Its check changed: it starts again from `normal`.
    Restart,
    Added,
    Removed,
}

/// Everything an apply must do, in the order `Nvr::apply` does it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every channel of either side, by number.
    pub channels: BTreeMap<u32, ChannelChange>,
    /// Every rule of either side, by name.
    pub rules: BTreeMap<String, RuleChange>,
    /// Network cameras whose URL, substream, transport or credentials changed
    /// (or that were removed): whatever is bound to them restarts, including
    /// a channel a failover rule bound to one.
    pub changed_cameras: BTreeSet<String>,
    /// Triggers, actions or MQTT changed: the event dispatcher restarts.
    pub events: bool,
    /// `[access]` settings changed (updated in place).
    pub access: bool,
    /// `listen` or `[http]` changed: the HTTP endpoint moves.
    pub listener: bool,
    /// Peer token, transfer rate, peer trust or a rule's backup changed: the
    /// failback transfer worker restarts with them.
    pub transfer: bool,
    /// `[nvr] name` changed (read live wherever it is used).
    pub name: bool,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.channels.values().all(|c| *c == ChannelChange::Unchanged)
            && self.rules.values().all(|r| *r == RuleChange::Unchanged)
            && self.changed_cameras.is_empty()
            && !(self.events || self.access || self.listener || self.transfer || self.name)
    }
}

/// What cannot change while the NVR runs; empty when `desired` can be applied.
pub fn problems(running: &Config, desired: &Config) -> Vec<ConfigError> {
    let (r, d) = (&running.storage, &desired.storage);
    let mut out = Vec::new();
    let mut refuse = |field: &str, changed: bool, why: &str| {
        if changed {
            out.push(ConfigError {
                file: "configuration".into(),
                line: 0,
                field: field.into(),
                message: format!("cannot change while the NVR runs: {why}; restart the NVR to change it"),
            });
        }
    };
    refuse(
        "storage.dir",
        // Compared absolute: an export writes `tandem-data` as /srv/…/tandem-data.
        std::path::absolute(&r.dir).ok() != std::path::absolute(&d.dir).ok(),
        "the running store (index, footage, signing key, users) lives there",
    );
    refuse(
        "storage.segment_duration",
        r.segment_duration != d.segment_duration,
        "the store writer sizes every open segment with it",
    );
    refuse(
        "storage.flush_interval",
        r.flush_interval != d.flush_interval,
        "the store writer's flush timer is set at start",
    );
    refuse(
        "storage.min_free",
        r.min_free_bytes != d.min_free_bytes,
        "the store writer and the importer reserve it at start",
    );
    refuse(
        "storage.write_buffer",
        r.write_buffer_bytes != d.write_buffer_bytes,
        "the store writer's queue is sized at start",
    );
    refuse(
        "storage.scrub_interval",
        r.scrub_interval != d.scrub_interval,
        "the integrity scrub thread is started with it",
    );
    refuse(
        "pool",
        running.pool != desired.pool,
        "the pool membership (lease, name, capacity) is started with it",
    );
    refuse(
        "archive",
        running.archive != desired.archive,
        "the archiver thread is started with it",
    );
    out
}

/// The plan that takes `running` to `desired`.
pub fn plan(running: &Config, desired: &Config) -> Plan {
    let changed_cameras: BTreeSet<String> = running
        .cameras
        .iter()
        .filter(|c| desired.camera(&c.name) != Some(*c))
        .map(|c| c.name.clone())
        .collect();
    let numbers: BTreeSet<u32> = running
        .channels
        .iter()
        .chain(&desired.channels)
        .map(|c| c.number)
        .collect();
    let channel = |cfg: &Config, n: u32| cfg.channels.iter().find(|c| c.number == n).cloned();
    let channels = numbers
        .into_iter()
        .map(|n| {
            let change = match (channel(running, n), channel(desired, n)) {
                (Some(r), Some(d)) => channel_change(&r, &d, &changed_cameras),
                (None, Some(_)) => ChannelChange::Added,
                _ => ChannelChange::Removed,
            };
            (n, change)
        })
        .collect();
    let names: BTreeSet<&str> = running
        .rules
        .iter()
        .chain(&desired.rules)
        .map(|r| r.rule.name.as_str())
        .collect();
    let rule = |cfg: &Config, n: &str| cfg.rules.iter().find(|r| r.rule.name == n).cloned();
    let rules = names
        .into_iter()
        .map(|n| {
            let change = match (rule(running, n), rule(desired, n)) {
                (Some(r), Some(d)) => rule_change(&r, &d),
                (None, Some(_)) => RuleChange::Added,
                _ => RuleChange::Removed,
            };
            (n.to_string(), change)
        })
        .collect();
    let backups = |c: &Config| {
        c.rules
            .iter()
            .map(|r| (r.rule.name.clone(), r.rule.backup.clone()))
            .collect::<Vec<_>>()
    };
    Plan {
        channels,
        rules,
        changed_cameras,
        events: running.triggers != desired.triggers
            || running.actions != desired.actions
            || running.mqtt != desired.mqtt,
        access: running.access != desired.access,
        listener: running.listen != desired.listen || running.http != desired.http,
        transfer: running.failover != desired.failover || backups(running) != backups(desired),
        name: running.name != desired.name,
    }
}

fn channel_change(r: &ChannelConfig, d: &ChannelConfig, changed_cameras: &BTreeSet<String>) -> ChannelChange {
    let mut reasons = Vec::new();
    if r.camera != d.camera {
        reasons.push(format!(
            "camera {} → {}",
            r.camera.as_deref().unwrap_or("none"),
            d.camera.as_deref().unwrap_or("none")
        ));
    } else if let Some(cam) = r.camera.as_ref().filter(|c| changed_cameras.contains(*c)) {
        reasons.push(format!("camera {cam} changed"));
    }
    let motion = r.motion != d.motion;
    if motion {
        reasons.push("motion settings changed".into());
    }
    if !reasons.is_empty() {
        return ChannelChange::Restart { reasons, motion };
    }
    let recording = r.recording != d.recording;
    let retention = r.retention != d.retention;
    match (recording || retention, r.name != d.name) {
        (true, _) => ChannelChange::Policy { recording, retention },
        (false, true) => ChannelChange::Renamed,
        (false, false) => ChannelChange::Unchanged,
    }
}

fn rule_change(r: &ConfiguredRule, d: &ConfiguredRule) -> RuleChange {
    // Where the rule is written (`source`, `line`) is not the rule.
    if r.rule == d.rule && r.normal == d.normal && r.failure == d.failure {
        RuleChange::Unchanged
    } else if r.rule.check == d.rule.check {
        RuleChange::KeepState
    } else {
        RuleChange::Restart
    }
}

#[cfg(test)]
mod tests;
