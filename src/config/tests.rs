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
            password: "p@ss".into(),
            source: crate::config::SecretSource::Inline,
        })
    );
    assert_eq!(c.camera("dock").unwrap().transport, Transport::Udp);
    assert_eq!(c.channels[0].number, 1);
    assert_eq!(c.channels[1].retention.max_age, Some(7 * 86400 * 90_000));
    assert_eq!(c.channels[1].retention.max_bytes, Some(100 << 30));
    assert!(!format!("{:?}", lobby.credentials).contains("p@ss"));
}

#[test]
fn the_write_buffer_is_a_bounded_size() {
    let with = |v: &str| p(&format!("[storage]\nmin_free = \"1 MiB\"\nwrite_buffer = {v}\n"));
    assert_eq!(p("").unwrap().storage.write_buffer_bytes, 128 << 20, "the default");
    assert_eq!(with("\"8 MB\"").unwrap().storage.write_buffer_bytes, 8_000_000);
    assert_eq!(with("1048576").unwrap().storage.write_buffer_bytes, 1 << 20);
    for (bad, says) in [
        ("\"100 KiB\"", "must be between 256.0 KiB and 256.0 MiB"),
        ("\"1 GiB\"", "must be between"),
        ("\"lots\"", ""),
    ] {
        let errs = with(bad).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert_eq!((errs[0].line, errs[0].field.as_str()), (3, "storage.write_buffer"));
        assert!(errs[0].message.contains(says), "{bad}: {}", errs[0].message);
    }
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
retention = { max_age = "someday" }
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

#[test]
fn endless_and_special_files_are_refused_with_the_field_named() {
    // /dev/zero never ends and /dev/urandom never ends either: both must be
    // refused at once, naming the field, instead of being read until memory
    // runs out.
    let text = r#"
[failover]
rules = "/dev/urandom"

[[network_camera]]
name = "a"
url = "rtsp://192.0.2.1/s"
username = "u"
password_file = "/dev/zero"
"#;
    let errs = p(text).unwrap_err().0;
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![(3, "failover.rules"), (9, "network_camera `a`.password_file")],
        "{errs:#?}"
    );
    assert!(
        errs.iter().all(|e| e.message.contains("not a regular file")),
        "{errs:#?}"
    );
    // A regular file over the bound is refused too, and so is the
    // configuration file itself.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; (source::MAX_FILE + 1) as usize]).unwrap();
    let e = parse("[failover]\nrules = \"big.json\"\n", "nvr.toml", dir.path()).unwrap_err();
    assert!(
        e.to_string()
            .contains("nvr.toml:2: failover.rules: cannot read `big.json`: is larger than 1024 KiB"),
        "{e}"
    );
    let e = load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn thirty_two_thousand_errors_are_all_reported_on_their_lines() {
    // Each line lookup is a binary search over a line index built once (see
    // source::LineIndex's step-counting test); this checks the result at scale.
    const N: usize = 32_768;
    let text = "[[channel]]\nnumber = 0\n".repeat(N);
    let errs = p(&text).unwrap_err().0;
    assert_eq!(errs.len(), N);
    for (i, e) in errs.iter().enumerate() {
        assert_eq!(
            (e.line, e.field.as_str()),
            (2 * i + 2, format!("channel[{i}].number").as_str())
        );
    }
    // The checker's own lookups stay logarithmic.
    let mut c = Checker::new("f", &text);
    for i in 0..N {
        c.err(text.len() / N * i, "x", "y");
    }
    assert!(c.lines.steps() <= (N as u64) * 17, "{} steps", c.lines.steps());
}

#[test]
fn out_of_range_integers_name_their_field_and_line() {
    let e = p("[[channel]]\nname = \"x\"\nnumber = 9223372036854775808\n")
        .unwrap_err()
        .0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].field.as_str()), (3, "channel.number"), "{e:?}");
    let e = p("[[network_camera]]\nname = \"a\"\nurl = \"rtsp://h/\"\nchannel = -99999999999999999999\n")
        .unwrap_err()
        .0;
    assert_eq!((e[0].line, e[0].field.as_str()), (4, "network_camera.channel"), "{e:?}");
    // Inside an inline table, the key nearest the value.
    let e = p("[[channel]]\nnumber = 1\nretention = { max_age = \"7d\", max_bytes = 99999999999999999999 }\n")
        .unwrap_err()
        .0;
    assert_eq!(e[0].line, 3, "{e:?}");
    assert_eq!(e[0].field, "channel.retention.max_bytes", "{e:?}");
    let shown = ConfigErrors(e).to_string();
    assert!(
        shown.starts_with("site.toml:3: channel.retention.max_bytes: "),
        "{shown}"
    );
}

#[test]
fn min_free_at_or_above_the_volume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume_size(dir.path()).expect("statvfs works on a temp dir");
    let text = |min: u64| format!("[storage]\ndir = \"data\"\nmin_free = {min}\n");
    let e = parse(&text(vol), "nvr.toml", dir.path()).unwrap_err().0;
    assert_eq!((e[0].line, e[0].field.as_str()), (3, "storage.min_free"), "{e:?}");
    assert!(e[0].message.contains("every segment would be deleted"), "{e:?}");
    assert!(parse(&text(vol.saturating_mul(3)), "nvr.toml", dir.path()).is_err());
    let ok = parse(&text(1 << 20), "nvr.toml", dir.path()).unwrap();
    assert_eq!(ok.storage.min_free_bytes, 1 << 20);
    // The pure rule, for any volume.
    assert!(min_free_error(10, Some(10)).is_some());
    assert!(min_free_error(9, Some(10)).is_none());
    assert!(min_free_error(u64::MAX, None).is_none(), "unknown volume: no claim");
    // Over half the volume is accepted with a warning from `load_checked`.
    std::fs::write(dir.path().join("nvr.toml"), text(vol / 4 * 3)).unwrap();
    let (_, w) = load_checked(&dir.path().join("nvr.toml")).unwrap();
    assert!(w.iter().any(|w| w.field == "storage.min_free"), "{w:?}");
}

const TWO_RULES: &str = r#"
[http]
listen = "127.0.0.1:9000"
[failover]
peer_token = "0123456789abcdef0123"
[[network_camera]]
name = "a"
url = "rtsp://192.0.2.1/s"
[[network_camera]]
name = "b"
url = "rtsp://192.0.2.2/s"
[[channel]]
number = 1
[[channel]]
number = 2

[[rule]]
name = "for-a"
check = { address = "192.0.2.10", interval = 1, failure_count = 3, normal_count = 1 }
states.normal = [ { camera = 1, address = "n/a" } ]
states.failure = [ { camera = 1, address = "192.0.2.1" } ]
backup = { address = "BACKUP", port = 9000, cameras = [ { local = 1, remote = 1 } ] }

[[rule]]
name = "for-b"
check = { address = "192.0.2.11", interval = 1, failure_count = 3, normal_count = 1 }
states.normal = [ { camera = 2, address = "n/a" } ]
states.failure = [ { camera = 2, address = "192.0.2.2" } ]
"#;

#[test]
fn channels_shared_by_rules_are_a_warning_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let apart = TWO_RULES.replace("BACKUP", "192.0.2.99");
    let (_, w) = parse_checked(&apart, "nvr.toml", dir.path()).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let shared = apart.replace(
        "camera = 2, address = \"192.0.2.2\"",
        "camera = 1, address = \"192.0.2.2\"",
    );
    let (c, w) = parse_checked(&shared, "nvr.toml", dir.path()).unwrap();
    assert_eq!(c.rules.len(), 2);
    let first = &w[0];
    assert_eq!(first.line, 24, "{w:?}");
    assert!(first.field.contains("channel 1"), "{first:?}");
    assert!(
        first.message.contains("`for-a`, `for-b`") && first.message.contains("first rule to enter failure holds it"),
        "{first:?}"
    );
    // A camera in `normal` beats `n/a`: nothing disagrees.
    let camera_at_rest = shared.replace(
        "states.normal = [ { camera = 2, address = \"n/a\" } ]",
        "states.normal = [ { camera = 1, address = \"192.0.2.2\" } ]",
    );
    let (c, w) = parse_checked(&camera_at_rest, "nvr.toml", dir.path()).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(c.rules[1].normal, vec![(1, Some("b".into()))]);
    // Two different cameras at rest: the second is named, the first used.
    let both = camera_at_rest.replace(
        "states.normal = [ { camera = 1, address = \"n/a\" } ]",
        "states.normal = [ { camera = 1, address = \"192.0.2.1\" } ]",
    );
    let (_, w) = parse_checked(&both, "nvr.toml", dir.path()).unwrap();
    assert!(
        w.iter().any(|w| w.field == "rule `for-b`: states.normal (channel 1)"
            && w.message
                .contains("binds channel 1 to `b` in `normal`, but rule `for-a` (listed first) binds it to `a`")),
        "{w:?}"
    );
}

#[test]
fn a_backup_that_is_this_nvr_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (addr, refused) in [
        ("127.0.0.1", true),
        ("localhost", true),
        ("127.0.0.2", false),
        ("192.0.2.99", false),
        ("nvr-b.example", false),
    ] {
        let text = TWO_RULES.replace("BACKUP", addr);
        let r = parse(&text, "nvr.toml", dir.path());
        assert_eq!(r.is_err(), refused, "{addr}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.0.len(), 1);
            assert_eq!(
                (e.0[0].line, e.0[0].field.as_str()),
                (17, "rule `for-a`: backup.address"),
                "{e}"
            );
            assert!(e.0[0].message.contains("import its own footage as duplicates"), "{e}");
        }
    }
    // The same address on another port is another NVR (tests run several on loopback).
    let other_port = TWO_RULES
        .replace("BACKUP", "127.0.0.1")
        .replace("port = 9000", "port = 9001");
    assert!(parse(&other_port, "nvr.toml", dir.path()).is_ok());
}

#[test]
fn backup_is_self_covers_wildcard_and_interface_addresses() {
    use rules::backup_is_self;
    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let own = ["192.0.2.5".parse().unwrap()];
    assert!(backup_is_self("127.0.0.2", 8080, any, &own));
    assert!(backup_is_self("192.0.2.5", 8080, any, &own));
    assert!(backup_is_self("[::1]", 8080, any, &own));
    assert!(!backup_is_self("192.0.2.6", 8080, any, &own));
    assert!(!backup_is_self("192.0.2.5", 8081, any, &own));
    let one: SocketAddr = "192.0.2.5:8080".parse().unwrap();
    assert!(backup_is_self("192.0.2.5", 8080, one, &own));
    assert!(
        !backup_is_self("127.0.0.1", 8080, one, &own),
        "not listening on loopback"
    );
}

#[test]
fn access_settings_load_and_bad_ones_name_field_and_line() {
    let c = p("[access]\nsession_idle = \"8h\"\naudit_retention = \"2y\"\n").unwrap();
    assert_eq!(c.access.session_idle, Duration::from_secs(8 * 3600));
    assert_eq!(c.access.audit_retention, Duration::from_secs(2 * 365 * 86400));
    assert_eq!(p("").unwrap().access, crate::auth::Settings::default());
    let e = p("[access]\nsession_idle = \"5s\"\naudit_retention = \"forever\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("site.toml:2") && e.contains("access.session_idle"), "{e}");
    assert!(e.contains("site.toml:3") && e.contains("access.audit_retention"), "{e}");
    let e = p("[access]\nsessions = 1\n").unwrap_err().to_string();
    assert!(e.contains("site.toml:2") && e.contains("sessions"), "{e}");
}

#[test]
fn scrub_interval_is_off_by_default_and_checked() {
    assert_eq!(p(GOOD).unwrap().storage.scrub_interval, None);
    let c = p("[storage]\ndir = \"x\"\nscrub_interval = \"7d\"\n").unwrap();
    assert_eq!(c.storage.scrub_interval, Some(Duration::from_secs(7 * 86400)));
    for bad in ["\"0.5s\"", "\"soon\"", "-3"] {
        let e = p(&format!("[storage]\ndir = \"x\"\nscrub_interval = {bad}\n"))
            .unwrap_err()
            .0;
        assert_eq!(
            (e[0].line, e[0].field.as_str()),
            (3, "storage.scrub_interval"),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn priorities_and_the_standbys_capacity_load_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = TWO_RULES.replace("BACKUP", "192.0.2.99");
    let text = base
        .replace(
            "url = \"rtsp://192.0.2.2/s\"",
            "url = \"rtsp://192.0.2.2/s\"\npriority = \"never\"",
        )
        .replace(
            "name = \"for-b\"",
            "name = \"for-b\"\ncapacity = { channels = 2, mbps = 12.5 }",
        );
    let (c, _) = parse_checked(&text, "nvr.toml", dir.path()).unwrap();
    use crate::failover::capacity::{self, Capacity, Priority};
    assert_eq!(c.cameras[0].priority, Priority::Medium);
    assert_eq!(c.cameras[1].priority, Priority::Never);
    assert_eq!(
        capacity::of_rules(&c.rules),
        Capacity {
            channels: Some(2),
            mbps: Some(12.5)
        }
    );
    // The same figures on both rules are one capacity; different ones are refused.
    let both = text.replace(
        "name = \"for-a\"",
        "name = \"for-a\"\ncapacity = { channels = 2, mbps = 12.5 }",
    );
    assert!(parse_checked(&both, "nvr.toml", dir.path()).is_ok());
    let differ = text.replace("name = \"for-a\"", "name = \"for-a\"\ncapacity = { channels = 3 }");
    let e = parse_checked(&differ, "nvr.toml", dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("rule `for-b`: capacity") && e.contains("rule `for-a`"),
        "{e}"
    );
    // Bad values name the field.
    let bad = base.replace(
        "url = \"rtsp://192.0.2.2/s\"",
        "url = \"rtsp://192.0.2.2/s\"\npriority = \"urgent\"",
    );
    let e = parse_checked(&bad, "nvr.toml", dir.path()).unwrap_err().to_string();
    assert!(e.contains("network_camera `b`.priority") && e.contains("urgent"), "{e}");
    for (cap, field) in [
        ("{ channels = -1 }", "capacity.channels"),
        ("{ mbps = 0 }", "capacity.mbps"),
        ("{ cameras = 2 }", "capacity.cameras"),
        ("{ }", "capacity"),
        ("3", "capacity"),
    ] {
        let t = base.replace("name = \"for-b\"", &format!("name = \"for-b\"\ncapacity = {cap}"));
        let e = parse_checked(&t, "nvr.toml", dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("rule `for-b`: {field}")), "{cap}: {e}");
    }
}

#[test]
fn pool_table_parses_with_defaults() {
    let c = p(&format!("{GOOD}\n[pool]\netcd = [\"http://10.0.0.2:2379\"]\nname = \"nvr-07\"\ncapacity = {{ channels = 64, mbps = 400 }}\n")).unwrap();
    let pool = c.pool.expect("[pool] given");
    assert_eq!(pool.etcd[0].as_str(), "http://10.0.0.2:2379/");
    assert_eq!(pool.name, "nvr-07");
    assert_eq!(
        pool.capacity,
        crate::pool::Capacity {
            channels: 64,
            kbps: 400_000
        }
    );
    assert_eq!(pool.lease_ttl, pool::DEFAULT_LEASE_TTL);
    assert_eq!(pool.prefix, "/tandem/");
    assert_eq!(pool.address, None);
    assert!(p(GOOD).unwrap().pool.is_none(), "without [pool] no pool");
}

#[test]
fn pool_name_defaults_to_the_nvr_name() {
    let text = format!("{GOOD}\n[nvr]\nname = \"nvr-3\"\n[pool]\netcd = [\"http://e:2379\"]\ncapacity = {{ channels = 1, mbps = 1.5 }}\nlease_ttl = 1\n");
    let pool = p(&text).unwrap().pool.unwrap();
    assert_eq!(pool.name, "nvr-3");
    assert_eq!(pool.capacity.kbps, 1500);
    assert_eq!(pool.lease_ttl, Duration::from_secs(1));
}

#[test]
fn pool_errors_name_field_and_line() {
    let base = GOOD.lines().count() + 1;
    let cases: &[(&str, &str)] = &[
        ("[pool]\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\n", "pool.etcd"),
        ("[pool]\netcd = []\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\n", "pool.etcd"),
        ("[pool]\netcd = [\"https://e:2379\"]\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\n", "pool.etcd"),
        ("[pool]\netcd = [\"e:2379\"]\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\n", "pool.etcd"),
        ("[pool]\netcd = [\"http://e:2379\"]\ncapacity = { channels = 1, mbps = 1 }\n", "pool.name"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a/b\"\ncapacity = { channels = 1, mbps = 1 }\n", "pool.name"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\n", "pool.capacity"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = { channels = -1, mbps = 1 }\n", "pool.capacity.channels"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = { channels = 1 }\n", "pool.capacity.mbps"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = { channels = 1, mbps = -2 }\n", "pool.capacity.mbps"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\nlease_ttl = \"500ms\"\n", "pool.lease_ttl"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\nlease_ttl = \"1.5s\"\n", "pool.lease_ttl"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\nprefix = \"tandem\"\n", "pool.prefix"),
        ("[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = { channels = 1, mbps = 1 }\naddress = \"nowhere\"\n", "pool.address"),
    ];
    for (table, field) in cases {
        let errs = p(&format!("{GOOD}{table}")).expect_err(table).0;
        assert_eq!(errs.len(), 1, "{table}: {errs:?}");
        assert_eq!(errs[0].field, *field, "{table}");
        // The table starts on line `base`; the error points into it.
        assert!(errs[0].line >= base, "{table}: line {}", errs[0].line);
    }
    let errs = p(&format!(
        "{GOOD}[pool]\netcd = [\"http://e:2379\"]\nname = \"a\"\ncapacity = {{ channels = 1, mbps = 1 }}\nttl = 1\n"
    ))
    .expect_err("unknown field")
    .0;
    assert!(errs[0].message.contains("ttl"), "{errs:?}");
}
