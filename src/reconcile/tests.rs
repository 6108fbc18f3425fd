use super::*;
use crate::config::parse;
use crate::recording::schedule::{Mode, Schedule};
use std::time::Duration;

const BASE: &str = r#"
[storage]
dir = "/var/lib/tandem"

[failover]
peer_token = "0123456789abcdef0123"

[[network_camera]]
name = "a"
url = "rtsp://192.0.2.1/h264"
[[network_camera]]
name = "b"
url = "rtsp://192.0.2.2/h264"
channel = 1
[[network_camera]]
name = "c"
url = "rtsp://192.0.2.3/h264"

[[channel]]
number = 1
camera = "a"
[[channel]]
number = 2
camera = "b"
[[channel]]
number = 3
camera = "c"
motion = { sensitivity = 50 }

[[rule]]
name = "r1"
check = { address = "192.0.2.10", interval = 1, failure_count = 3, normal_count = 1 }
states.normal = [ { camera = 1, address = "192.0.2.2" } ]
states.failure = [ { camera = 1, address = "192.0.2.1" } ]
[[rule]]
name = "r2"
check = { address = "192.0.2.11", interval = 1, failure_count = 3, normal_count = 1 }
states.normal = [ { camera = 1, address = "192.0.2.2" } ]
states.failure = [ { camera = 1, address = "192.0.2.2" } ]
"#;

fn base() -> Config {
    let dir = tempfile::tempdir().unwrap();
    parse(BASE, "site.toml", dir.path()).unwrap()
}

fn ch(c: &mut Config, n: u32) -> &mut ChannelConfig {
    c.channels.iter_mut().find(|c| c.number == n).unwrap()
}

/// The plan of `edit` applied to the base, with everything else unchanged.
fn plan_of(edit: impl FnOnce(&mut Config)) -> Plan {
    let r = base();
    let mut d = r.clone();
    edit(&mut d);
    plan(&r, &d)
}

fn only_channel(p: &Plan, n: u32) -> ChannelChange {
    for (k, v) in &p.channels {
        if *k != n {
            assert_eq!(*v, ChannelChange::Unchanged, "channel {k} in {p:?}");
        }
    }
    p.channels[&n].clone()
}

#[test]
fn the_same_configuration_plans_nothing() {
    let p = plan_of(|_| {});
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(p.channels.len(), 3);
    assert_eq!(p.rules.len(), 2);
    assert!(problems(&base(), &base()).is_empty());
}

#[test]
fn a_rename_stops_nothing() {
    let p = plan_of(|c| ch(c, 2).name = "dock".into());
    assert_eq!(only_channel(&p, 2), ChannelChange::Renamed);
    assert!(!p.is_empty());
}

#[test]
fn schedule_and_pre_post_are_a_recording_policy_change() {
    let p = plan_of(|c| ch(c, 3).recording.schedule = Schedule::always(Mode::Events));
    assert_eq!(
        only_channel(&p, 3),
        ChannelChange::Policy {
            recording: true,
            retention: false
        }
    );
    let p = plan_of(|c| ch(c, 3).recording.events.pre = 5 * 90_000);
    assert_eq!(
        only_channel(&p, 3),
        ChannelChange::Policy {
            recording: true,
            retention: false
        }
    );
}

#[test]
fn retention_is_a_policy_change_even_with_a_rename() {
    let p = plan_of(|c| {
        ch(c, 1).retention.max_bytes = Some(1 << 30);
        ch(c, 1).name = "lobby".into();
    });
    assert_eq!(
        only_channel(&p, 1),
        ChannelChange::Policy {
            recording: false,
            retention: true
        }
    );
}

#[test]
fn a_new_camera_restarts_the_channel_and_wins_over_a_policy_change() {
    let p = plan_of(|c| {
        ch(c, 2).camera = Some("c".into());
        ch(c, 2).retention.max_age = Some(90_000);
    });
    assert_eq!(
        only_channel(&p, 2),
        ChannelChange::Restart {
            reasons: vec!["camera b → c".into()],
            motion: false
        }
    );
    let p = plan_of(|c| ch(c, 1).camera = None);
    assert_eq!(
        only_channel(&p, 1),
        ChannelChange::Restart {
            reasons: vec!["camera a → none".into()],
            motion: false
        }
    );
}

#[test]
fn every_camera_field_that_ingest_uses_restarts_its_channels() {
    type Edit = Box<dyn Fn(&mut crate::config::NetworkCamera)>;
    let edits: Vec<Edit> = vec![
        Box::new(|c| c.url = url::Url::parse("rtsp://192.0.2.9/h264").unwrap()),
        Box::new(|c| c.substream_url = Some(url::Url::parse("rtsp://192.0.2.1/sub").unwrap())),
        Box::new(|c| c.transport = crate::config::Transport::Udp),
        Box::new(|c| {
            c.credentials = Some(crate::config::Credentials {
                username: "u".into(),
                password: "p".into(),
                source: crate::config::SecretSource::Inline,
            })
        }),
    ];
    for edit in edits {
        let p = plan_of(|c| edit(&mut c.cameras[0]));
        assert_eq!(p.changed_cameras, BTreeSet::from(["a".to_string()]));
        assert_eq!(
            only_channel(&p, 1),
            ChannelChange::Restart {
                reasons: vec!["camera a changed".into()],
                motion: false
            }
        );
    }
}

#[test]
fn a_removed_camera_is_a_changed_one_and_an_added_camera_changes_nothing() {
    let p = plan_of(|c| {
        c.cameras.retain(|k| k.name != "c");
        ch(c, 3).camera = None;
    });
    assert_eq!(p.changed_cameras, BTreeSet::from(["c".to_string()]));
    let p = plan_of(|c| {
        let mut k = c.cameras[0].clone();
        k.name = "new".into();
        c.cameras.push(k);
    });
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn motion_settings_restart_the_channel_with_its_motion() {
    let p = plan_of(|c| ch(c, 3).motion.as_mut().unwrap().sensitivity = 80);
    assert_eq!(
        only_channel(&p, 3),
        ChannelChange::Restart {
            reasons: vec!["motion settings changed".into()],
            motion: true
        }
    );
    let p = plan_of(|c| {
        ch(c, 3).motion = None;
        ch(c, 3).camera = Some("a".into());
    });
    assert_eq!(
        only_channel(&p, 3),
        ChannelChange::Restart {
            reasons: vec!["camera c → a".into(), "motion settings changed".into()],
            motion: true
        }
    );
}

#[test]
fn channels_added_and_removed() {
    let p = plan_of(|c| {
        c.channels.retain(|c| c.number != 1);
        let mut n = c.channels[0].clone();
        n.number = 9;
        c.channels.push(n);
    });
    assert_eq!(p.channels[&1], ChannelChange::Removed);
    assert_eq!(p.channels[&9], ChannelChange::Added);
    assert_eq!(p.channels[&2], ChannelChange::Unchanged);
    assert_eq!(p.channels[&3], ChannelChange::Unchanged);
}

#[test]
fn rules_keep_their_state_unless_their_check_changes() {
    let p = plan_of(|c| c.rules[0].rule.release_delay = Duration::from_secs(3));
    assert_eq!(p.rules["r1"], RuleChange::KeepState);
    assert_eq!(p.rules["r2"], RuleChange::Unchanged);
    let p = plan_of(|c| c.rules[1].failure = vec![(1, Some("c".into()))]);
    assert_eq!(p.rules["r2"], RuleChange::KeepState);
    let p = plan_of(|c| c.rules[0].rule.check.failure_count = 5);
    assert_eq!(p.rules["r1"], RuleChange::Restart);
    // Where a rule is written is not part of it.
    let p = plan_of(|c| {
        c.rules[0].line += 10;
        c.rules[0].source = Some("elsewhere.toml".into());
    });
    assert_eq!(p.rules["r1"], RuleChange::Unchanged);
    assert!(p.is_empty());
}

#[test]
fn rules_added_and_removed() {
    let p = plan_of(|c| {
        c.rules[1].rule.name = "r3".into();
    });
    assert_eq!(p.rules["r1"], RuleChange::Unchanged);
    assert_eq!(p.rules["r2"], RuleChange::Removed);
    assert_eq!(p.rules["r3"], RuleChange::Added);
}

#[test]
fn triggers_actions_and_mqtt_restart_the_dispatcher() {
    assert!(
        plan_of(|c| c.triggers.push(crate::config::TriggerConfig {
            channel: 1,
            kind: "door".into(),
            mqtt_topic: "site/door".into(),
            payload_start: "open".into(),
            payload_stop: "closed".into(),
            pulse: None,
        }))
        .events
    );
    assert!(
        plan_of(|c| c.mqtt = Some(crate::config::MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: None,
            username: None,
            password: None,
            password_env: None,
            topic_prefix: "tandem".into(),
            discovery_prefix: None,
            tls: None,
        }))
        .events
    );
    let p = plan_of(|c| c.access.session_idle = Duration::from_secs(60));
    assert!(p.access && !p.events && !p.listener, "{p:?}");
}

#[test]
fn listener_transfer_and_name() {
    let p = plan_of(|c| c.listen = "127.0.0.1:9999".parse().unwrap());
    assert!(p.listener && !p.transfer);
    let p = plan_of(|c| c.http.redirect_listen = Some("127.0.0.1:9998".parse().unwrap()));
    assert!(p.listener);
    let p = plan_of(|c| c.failover.transfer_rate = 1);
    assert!(p.transfer && !p.listener);
    let p = plan_of(|c| c.name = Some("nvr-b".into()));
    assert!(p.name && !p.is_empty());
    assert!(p.channels.values().all(|c| *c == ChannelChange::Unchanged));
}

#[test]
fn storage_changes_are_refused_naming_each_field() {
    let r = base();
    let mut d = r.clone();
    assert!(problems(&r, &d).is_empty());
    // The same directory written absolute (as an export writes it) is no change.
    d.storage.dir = std::path::absolute(&r.storage.dir).unwrap();
    assert!(problems(&r, &d).is_empty());
    d.storage.dir = "/elsewhere".into();
    d.storage.segment_duration = Duration::from_secs(7);
    d.storage.flush_interval = Duration::from_millis(7);
    d.storage.min_free_bytes += 1;
    d.storage.scrub_interval = Some(Duration::from_secs(7));
    let fields: Vec<String> = problems(&r, &d).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "storage.dir",
            "storage.segment_duration",
            "storage.flush_interval",
            "storage.min_free",
            "storage.scrub_interval"
        ]
    );
    let text = ApplyError::Refused(problems(&r, &d)).to_string();
    assert!(text.contains("storage.dir: cannot change while the NVR runs"), "{text}");
}

#[test]
fn an_archive_change_is_refused_until_a_restart() {
    let r = base();
    let mut d = r.clone();
    d.archive = Some(crate::config::archive::ArchiveSettings {
        bucket: "b".into(),
        prefix: String::new(),
        endpoint: None,
        region: "us-east-1".into(),
        after: Duration::from_secs(60),
        max_age: None,
        bandwidth: 1 << 20,
        credentials: crate::config::archive::ArchiveCredentials::Env,
        virtual_hosted: false,
    });
    let fields: Vec<String> = problems(&r, &d).into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["archive"]);
}
