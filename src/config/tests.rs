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
