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
