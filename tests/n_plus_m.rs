//! N+M on a real standby (loopback): two rules, one per primary, share a
//! capacity of one channel. Both primaries are unreachable from the start
//! (their checks probe closed ports), so both rules enter failure; the
//! standby records only the `high` camera, leaves the other with a
//! `no_capacity` event, and shows it in `/api/v1/rules`.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn a_full_standby_records_the_higher_priority_camera_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 2, &["--gop", "10"]);
    // Ports nobody listens on: every probe misses at once.
    let (dead_a, dead_b) = (free_port(), free_port());
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[[network_camera]]
name = "lobby"
url = "{lobby}"
priority = "low"
[[network_camera]]
name = "gate"
url = "{gate}"
channel = 2
priority = "high"
[[channel]]
number = 1
[[channel]]
number = 2
[[rule]]
name = "primary-a"
capacity = {{ channels = 1 }}
check = {{ address = "127.0.0.1", type = "tcp", port = {dead_a}, interval = 0.2, timeout = 0.1, failure_count = 2, normal_count = 1 }}
states.normal = [ {{ camera = 1, address = "n/a" }} ]
states.failure = [ {{ camera = 1, address = "127.0.0.1" }} ]
[[rule]]
name = "primary-b"
capacity = {{ channels = 1 }}
check = {{ address = "127.0.0.1", type = "tcp", port = {dead_b}, interval = 0.2, timeout = 0.1, failure_count = 4, normal_count = 1 }}
states.normal = [ {{ camera = 2, address = "n/a" }} ]
states.failure = [ {{ camera = 2, address = "127.0.0.1", channel = 2 }} ]
"#,
        data = dir.path().join("standby-data").display(),
        lobby = urls[0],
        gate = urls[1],
    );
    let standby = nvr(dir.path(), "standby", &cfg);
    // Rule b fails after rule a (4 misses against 2) with a higher-priority
    // camera: it takes the one place.
    wait_for(Duration::from_secs(15), "the high camera recorded", || {
        frames_written(&standby.base, 2) > 0
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(channel_view(&standby.base, 2)["binding"], "gate");
    assert!(
        channel_view(&standby.base, 1)["binding"].is_null(),
        "capacity of one channel respected"
    );
    let rules = http_get(&format!("{}/api/v1/rules", standby.base))
        .unwrap()
        .json()
        .unwrap();
    let a = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "primary-a")
        .unwrap();
    assert_eq!(a["machine"]["state"], "failure", "{rules}");
    assert_eq!(a["arbitration"]["left"][0]["channel"], 1, "{rules}");
    assert_eq!(a["arbitration"]["left"][0]["camera"], "lobby");
    assert_eq!(a["arbitration"]["left"][0]["reason"], "no_capacity");
    // The event, and the operator's log line.
    wait_for(Duration::from_secs(5), "a no_capacity event", || {
        let e = http_get(&format!("{}/api/v1/events?type=no_capacity", standby.base))
            .unwrap()
            .json()
            .unwrap();
        let list = e
            .as_array()
            .or_else(|| e["events"].as_array())
            .cloned()
            .unwrap_or_default();
        list.iter().any(|ev| ev.to_string().contains("lobby"))
    });
    assert!(standby.proc.stderr().contains("capacity: no room for the camera"));
}
