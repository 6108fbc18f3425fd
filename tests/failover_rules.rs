//! One NVR running several rules at once: IP-camera redundancy (probe the
//! main camera; on failure bind the channel to the spare camera, and back when
//! the main camera returns) beside a standby rule for a peer that is down.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn camera_redundancy_and_a_second_rule_run_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let main_port = free_port();
    let main_listen = format!("127.0.0.1:{main_port}");
    let (mut main_cam, _) = sim_camera_at(dir.path(), &main_listen, 1, &["--first-id", "1"]);
    let (_spare, spare_urls) = sim_camera_at(
        dir.path(),
        &format!("127.0.0.2:{}", free_port()),
        1,
        &["--first-id", "2"],
    );
    let dead_peer = free_port();
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[[network_camera]]
name = "main"
url = "rtsp://{main_listen}/cam1"
[[network_camera]]
name = "spare"
url = "{spare}"
[[channel]]
number = 1
[[channel]]
number = 2

[[rule]]
name = "camera-redundancy"
check = {{ address = "127.0.0.1", type = "tcp", port = {main_port}, interval = 0.1, timeout = 0.1, failure_count = 3, normal_count = 2 }}
states.normal = [ {{ camera = 1, address = "127.0.0.1" }} ]
states.failure = [ {{ camera = 1, address = "127.0.0.2" }} ]

[[rule]]
name = "standby-for-dead-peer"
check = {{ address = "127.0.0.1", type = "http", port = {dead_peer}, interval = 0.1, failure_count = 2, normal_count = 1 }}
states.normal = [ {{ camera = 2, address = "n/a" }} ]
states.failure = [ {{ camera = 2, address = "127.0.0.2" }} ]
"#,
        data = dir.path().join("data").display(),
        spare = spare_urls[0]
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    let rule_state = |i: usize| {
        http_get(&format!("{}/api/v1/rules", nvr.base)).unwrap().json().unwrap()["rules"][i]["machine"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The main camera records on channel 1; the dead peer's channel 2 is taken over.
    wait_for(Duration::from_secs(20), "channel 1 on the main camera", || {
        frames_written(&nvr.base, 1) > 25
    });
    assert_eq!(channel_view(&nvr.base, 1)["binding"], "main");
    wait_for(Duration::from_secs(20), "channel 2 taken over", || {
        frames_written(&nvr.base, 2) > 25
    });
    assert_eq!(rule_state(1), "failure");
    assert_eq!(channel_view(&nvr.base, 2)["binding"], "spare");

    // The main camera dies: channel 1 moves to the spare and keeps recording.
    main_cam.kill();
    wait_for(Duration::from_secs(10), "channel 1 on the spare", || {
        channel_view(&nvr.base, 1)["binding"] == "spare"
    });
    assert_eq!(rule_state(0), "failure");
    let before = frames_written(&nvr.base, 1);
    wait_for(Duration::from_secs(10), "recording from the spare", || {
        frames_written(&nvr.base, 1) > before + 25
    });

    // It returns: channel 1 goes back to it.
    let (_main_again, _) = sim_camera_at(dir.path(), &main_listen, 1, &["--first-id", "3"]);
    wait_for(Duration::from_secs(10), "channel 1 back on the main camera", || {
        channel_view(&nvr.base, 1)["binding"] == "main"
    });
    let before = frames_written(&nvr.base, 1);
    wait_for(Duration::from_secs(10), "recording from the main camera", || {
        frames_written(&nvr.base, 1) > before + 25
    });
    assert_eq!(rule_state(1), "failure", "the other rule ran on undisturbed");

    // Channel 1's footage came from all three camera sessions in turn.
    let a = audit_json(&["--data", dir.path().join("data").to_str().unwrap(), "--channel", "1"]);
    let ids: Vec<u64> = a["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["camera_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "{a}");
    assert_eq!(a["duplicates"], 0);
}

/// Two rules bind the same channel. The first to enter failure holds it; the
/// second waits, and takes the channel the moment the first returns to
/// `normal` — the first never releases a channel the second still needs.
/// `check` warns about the sharing, and `/api/v1/rules` shows who holds what.
#[test]
fn a_channel_shared_by_two_rules_is_handed_over_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam_a, a_urls) = sim_camera_at(
        dir.path(),
        &format!("127.0.0.2:{}", free_port()),
        1,
        &["--first-id", "2"],
    );
    let (_cam_b, b_urls) = sim_camera_at(
        dir.path(),
        &format!("127.0.0.3:{}", free_port()),
        1,
        &["--first-id", "3"],
    );
    let (port_a, port_b) = (free_port(), free_port());
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[[network_camera]]
name = "cam-a"
url = "{a}"
[[network_camera]]
name = "cam-b"
url = "{b}"
[[channel]]
number = 1

[[rule]]
name = "a"
release_delay = 0.5
check = {{ address = "127.0.0.1", type = "tcp", port = {port_a}, interval = 0.1, timeout = 0.1, failure_count = 2, normal_count = 2 }}
states.normal = [ {{ camera = 1, address = "n/a" }} ]
states.failure = [ {{ camera = 1, address = "127.0.0.2" }} ]

[[rule]]
name = "b"
release_delay = 0.5
check = {{ address = "127.0.0.1", type = "tcp", port = {port_b}, interval = 0.1, timeout = 0.1, failure_count = 15, normal_count = 2 }}
states.normal = [ {{ camera = 1, address = "n/a" }} ]
states.failure = [ {{ camera = 1, address = "127.0.0.3" }} ]
"#,
        data = dir.path().join("data").display(),
        a = a_urls[0],
        b = b_urls[0],
    );
    // `check` accepts it with a warning that names the rules and the file and line.
    let path = dir.path().join("check.toml");
    std::fs::write(&path, cfg.replace("{listen}", "127.0.0.1:1")).unwrap();
    let o = run_tandem(&["check", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("warning: {}:", path.display()))
            && err.contains("channel 1 is bound by rules `a`, `b`: the first rule to enter failure holds it"),
        "{err}"
    );

    let nvr = nvr(dir.path(), "nvr", &cfg);
    let rules = || http_get(&format!("{}/api/v1/rules", nvr.base)).unwrap().json().unwrap()["rules"].clone();
    // Both primaries are down: rule a fails first and holds the channel; b waits.
    wait_for(Duration::from_secs(20), "rule b in failure, waiting", || {
        rules()[1]["machine"]["state"] == "failure"
    });
    let r = rules();
    assert_eq!(r[0]["arbitration"]["holds"], serde_json::json!([1]), "{r}");
    assert_eq!(r[1]["arbitration"]["waits"][0]["holder"], "a", "{r}");
    assert_eq!(channel_view(&nvr.base, 1)["binding"], "cam-a");
    wait_for(Duration::from_secs(20), "recording from cam-a", || {
        frames_written(&nvr.base, 1) > 25
    });

    // A's primary returns: the channel goes straight to b, still in failure.
    let _primary_a = std::net::TcpListener::bind(("127.0.0.1", port_a)).unwrap();
    wait_for(Duration::from_secs(20), "rule a back to normal", || {
        rules()[0]["machine"]["state"] == "normal"
    });
    wait_for(Duration::from_secs(10), "channel 1 on cam-b", || {
        channel_view(&nvr.base, 1)["binding"] == "cam-b"
    });
    // Well past a's release delay, a has not released b's channel.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(channel_view(&nvr.base, 1)["binding"], "cam-b");
    let before = frames_written(&nvr.base, 1);
    wait_for(Duration::from_secs(20), "recording from cam-b", || {
        frames_written(&nvr.base, 1) > before + 25
    });
    let r = rules();
    assert_eq!(r[1]["arbitration"]["holds"], serde_json::json!([1]), "{r}");
    let handed = r[1]["arbitration"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["action"] == "hand_over" && d["from"] == "a");
    assert!(handed, "{r}");
    assert!(
        nvr.proc
            .stderr()
            .contains("arbitration: holder left failure; channel handed to the waiting rule"),
        "the hand-over is logged"
    );

    // Footage from both cameras, nothing duplicated.
    let a = audit_json(&["--data", dir.path().join("data").to_str().unwrap(), "--channel", "1"]);
    let ids: Vec<u64> = a["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["camera_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![2, 3], "{a}");
    assert_eq!(a["duplicates"], 0, "{a}");
}

#[test]
fn check_refuses_a_backup_that_is_this_nvr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("self.toml");
    std::fs::write(
        &path,
        r#"[http]
listen = "0.0.0.0:8088"
[failover]
peer_token = "0123456789abcdef0123"
[[network_camera]]
name = "c"
url = "rtsp://192.0.2.1/s"
[[channel]]
number = 1
[[rule]]
name = "standby"
check = { address = "192.0.2.9", interval = 1, failure_count = 3, normal_count = 1 }
states.normal = [ { camera = 1, address = "n/a" } ]
states.failure = [ { camera = 1, address = "192.0.2.1" } ]
backup = { address = "127.0.0.1", port = 8088, cameras = [ { local = 1, remote = 1 } ] }
"#,
    )
    .unwrap();
    let o = run_tandem(&["check", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:10: rule `standby`: backup.address: 127.0.0.1:8088 is this NVR's own HTTP listener",
            path.display()
        )),
        "{err}"
    );
}
