use super::*;

fn p(text: &str) -> Result<Config, ConfigErrors> {
    parse(text, "site.toml", Path::new("/etc/tandem"))
}

const GOOD: &str = r#"
[storage]
dir = "/var/lib/tandem"
min_free = "2 GiB"
flush_interval = "500ms"

[http]
listen = "0.0.0.0:9000"

[[network_camera]]
name = "lobby"
url = "rtsp://admin:p%40ss@192.0.2.10/stream1"
substream_url = "rtsp://192.0.2.10/stream2"

[[network_camera]]
name = "dock"
url = "rtsp://192.0.2.11/h264"
transport = "udp"
username = "viewer"
password = "pw"

[[channel]]
number = 2
camera = "dock"
retention = { max_age = "7d", max_bytes = "100 GiB" }

[[channel]]
number = 1
name = "Lobby"
camera = "lobby"
"#;

#[test]
fn good_config_loads() {
    let c = p(GOOD).unwrap();
    assert_eq!(c.storage.dir, PathBuf::from("/var/lib/tandem"));
    assert_eq!(c.storage.min_free_bytes, 2 << 30);
    assert_eq!(c.storage.flush_interval, Duration::from_millis(500));
    assert_eq!(c.listen.port(), 9000);
    let lobby = c.camera("lobby").unwrap();
    assert_eq!(lobby.url.as_str(), "rtsp://192.0.2.10/stream1");
    assert_eq!(
        lobby.credentials,
        Some(Credentials {
            username: "admin".into(),
            password: "p@ss".into()
        })
    );
    assert_eq!(c.camera("dock").unwrap().transport, Transport::Udp);
    assert_eq!(c.channels[0].number, 1);
    assert_eq!(c.channels[1].retention.max_age, Some(7 * 86400 * 90_000));
    assert_eq!(c.channels[1].retention.max_bytes, Some(100 << 30));
    assert!(!format!("{:?}", lobby.credentials).contains("p@ss"));
}

#[test]
fn every_problem_is_reported_with_line_and_field() {
    let text = r#"
[storage]
min_free = "lots"

[[network_camera]]
name = "a"
url = "http://x/y"
transport = "carrier-pigeon"

[[network_camera]]
name = "a"
url = "rtsp://h/s"
password_env = "TANDEM_TEST_SURELY_UNSET_VAR"

[[channel]]
number = 1
camera = "nope"

[[channel]]
number = 1
retention = { max_age = "forever" }
"#;
    let errs = p(text).unwrap_err().0;
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (3, "storage.min_free"),
            (7, "network_camera `a`.url"),
            (8, "network_camera `a`.transport"),
            (10, "network_camera `a`.username"),
            (11, "network_camera[1].name"),
            (13, "network_camera `a`.password_env"),
            (17, "channel 1.camera"),
            (20, "channel[1].number"),
            (21, "channel 1.retention.max_age"),
        ],
        "{errs:#?}"
    );
    let shown = ConfigErrors(errs).to_string();
    assert!(
        shown.contains("site.toml:8: network_camera `a`.transport: `carrier-pigeon` is not `tcp` or `udp`"),
        "{shown}"
    );
}

#[test]
fn syntax_and_unknown_fields_name_the_line() {
    let e = p("[storage]\ndir = \"x\"\nflavour = 3\n").unwrap_err().0;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 3);
    assert!(e[0].message.contains("flavour"), "{:?}", e[0]);
    let e = p("[[channel]]\nnumber = \n").unwrap_err().0;
    assert_eq!(e[0].line, 2);
    let e = p("[[channel]]\nnumber = \"one\"\n").unwrap_err().0;
    assert_eq!(e[0].line, 2);
}

#[test]
fn missing_required_fields() {
    let e = p("[[network_camera]]\nurl = \"rtsp://h/\"\n[[channel]]\nname = \"x\"\n")
        .unwrap_err()
        .0;
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["network_camera[0].name", "channel[0].number"]);
}

#[test]
fn empty_config_is_valid_and_idle() {
    let c = p("").unwrap();
    assert!(c.cameras.is_empty() && c.channels.is_empty());
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
}

#[test]
fn rules_from_a_json_file_and_inline_tables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.json"),
        crate::failover::rule::tests_fixture::PAPER_FIG6,
    )
    .unwrap();
    let text = r#"
[failover]
rules = "rules.json"
peer_token = "0123456789abcdef0123"
transfer_rate = "1 MB"

[[network_camera]]
name = "east"
url = "rtsp://192.168.2.1/h264"
[[network_camera]]
name = "west"
url = "rtsp://192.168.2.2/h264"
channel = 1

[[channel]]
number = 1
[[channel]]
number = 2

[[rule]]
name = "cam-redundancy"
release_delay = 0
check = { address = "192.168.2.254", type = "tcp", port = 554, interval = 0.5, failure_count = 2, normal_count = 2 }
states.normal = [ { camera = 2, address = "192.168.2.2" } ]
states.failure = [ { camera = 2, address = "192.168.2.1" } ]
"#;
    let c = parse(text, "nvr.toml", dir.path()).unwrap();
    assert_eq!(c.rules.len(), 2);
    assert_eq!(
        c.rules[0].failure,
        vec![(1, Some("east".into())), (2, Some("west".into()))]
    );
    assert_eq!(c.rules[1].rule.name, "cam-redundancy");
    assert_eq!(c.rules[1].normal, vec![(2, Some("west".into()))]);
    assert_eq!(c.failover.transfer_rate, 1_000_000);
    assert!(!format!("{:?}", c.failover).contains("0123456789"));
    let no_token = text.replace("peer_token = \"0123456789abcdef0123\"\n", "");
    let e = parse(&no_token, "nvr.toml", dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("failover.peer_token: rules with `backup` need a peer token"),
        "{e}"
    );

    // Errors name the file, the rule and the field.
    let bad = text
        .replace("failure_count = 2", "failure_count = 0")
        .replace("192.168.2.1\" } ]\n", "10.9.9.9\" } ]\n");
    let errs = parse(&bad, "nvr.toml", dir.path()).unwrap_err();
    let shown = errs.to_string();
    assert!(
        shown.contains("nvr.toml:20: rule `cam-redundancy`: check.failure_count: must be a positive integer"),
        "{shown}"
    );
    std::fs::write(dir.path().join("rules.json"), "{ \"check\": 5 }").unwrap();
    let errs = parse(text, "nvr.toml", dir.path()).unwrap_err().to_string();
    assert!(
        errs.contains("rules.json: rule `#1`: check: is required and must be an object"),
        "{errs}"
    );
}

const EVENTS: &str = r#"
[[network_camera]]
name = "gate"
url = "rtsp://192.0.2.20/main"
substream_url = "rtsp://192.0.2.20/sub"

[[channel]]
number = 1
camera = "gate"
retention = { max_age = "7d", event_max_age = "30d" }
[channel.recording]
mode = "events"
time_zone = "Europe/Berlin"
pre = "45s"
post = "3m"
max_event = "20m"
buffer_limit = "32 MiB"
[[channel.recording.schedule]]
days = "mon-fri"
from = "08:00"
to = "18:00"
mode = "continuous+events"
[channel.motion]
sensitivity = 70
min_area = 0.02
zones = [[[0, 0.3], [1, 0.3], [1, 1], [0, 1]]]
masks = [[[0.8, 0.3], [1, 0.3], [1, 0.5]]]

[mqtt]
broker = "mqtt://192.0.2.5:1883"

[[trigger]]
channel = 1
type = "door"
mqtt_topic = "site/gate/contact"
payload_start = "open"
payload_stop = "closed"

[[action]]
type = "email"
smtp = "smtp://192.0.2.6:25"
from = "nvr@example.com"
to = ["guard@example.com"]
events = ["door", "motion"]
min_interval = "5m"

[[action]]
type = "webhook"
url = "http://192.0.2.7/hook"
channels = [1]
"#;

#[test]
fn recording_policy_motion_triggers_and_actions_load() {
    let c = p(EVENTS).unwrap();
    let ch = &c.channels[0];
    let r = &ch.recording;
    assert_eq!(r.schedule.default, crate::recording::Mode::Events);
    assert_eq!(r.schedule.windows.len(), 1);
    assert_eq!(r.schedule.windows[0].mode, crate::recording::Mode::ContinuousEvents);
    assert_eq!(r.events.pre, 45 * 90_000);
    assert_eq!(r.events.post, 180 * 90_000);
    assert_eq!(r.events.max_len, 1200 * 90_000);
    assert_eq!(r.events.buffer_limit, 32 << 20);
    assert_eq!(ch.retention.event_max_age, Some(30 * 86400 * 90_000));
    let m = ch.motion.as_ref().unwrap();
    assert_eq!((m.sensitivity, m.zones.len(), m.masks.len()), (70, 1, 1));
    assert_eq!(c.mqtt.as_ref().unwrap().port, 1883);
    assert_eq!(c.triggers[0].payload_start, "open");
    assert_eq!(c.actions.len(), 2);
    assert_eq!(c.actions[0].min_interval, Duration::from_secs(300));
    assert_eq!(c.actions[1].min_interval, Duration::from_secs(60));
    // Without an explicit event retention, event footage follows max_age.
    let c = p(GOOD).unwrap();
    assert_eq!(c.channels[1].retention.event_max_age, c.channels[1].retention.max_age);
    assert!(c.channels[0].motion.is_none());
}

#[test]
fn bad_event_settings_name_field_and_line() {
    let text = r#"
[[channel]]
number = 1
[channel.recording]
mode = "sometimes"
time_zone = "Mars/Olympus"
pre = "10m"
[[channel.recording.schedule]]
days = "funday"
from = "25:00"
mode = "events"
[channel.motion]
sensitivity = 0
zones = [[[0, 0], [2, 0], [1, 1]]]

[[trigger]]
channel = 9
mqtt_topic = "site/#"

[[action]]
type = "email"
smtp = "smtp://h"
from = "not an address"
to = ["guard@example.com"]

[[action]]
type = "pager"
"#;
    let errs = p(text).unwrap_err().0;
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (5, "channel 1.recording.mode"),
            (6, "channel 1.recording.time_zone"),
            (7, "channel 1.recording.pre"),
            (8, "channel 1.recording.schedule[0].to"),
            (9, "channel 1.recording.schedule[0].days"),
            (10, "channel 1.recording.schedule[0].from"),
            (13, "channel 1.motion.sensitivity"),
            (14, "channel 1.motion.zones[0]"),
            (16, "trigger"),
            (17, "trigger[0].channel"),
            (18, "trigger[0].mqtt_topic"),
            (23, "action[0].from"),
            (27, "action[1].type"),
        ],
        "{errs:#?}"
    );
}
