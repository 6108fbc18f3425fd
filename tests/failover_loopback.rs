//! Failover on one host (loopback): a standby NVR with an `http` rule watching
//! the primary takes over the primary's camera when the primary is killed,
//! records it, and releases it only after the restarted primary reports that
//! channel recording again. (The network-namespace test bed with cut links is
//! `scripts/failover-lab`.)

mod common;
use common::*;
use std::time::{Duration, Instant};

const TOKEN: &str = "site-secret-0123456789";

#[test]
fn standby_takes_over_when_the_primary_dies_and_hands_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--gop", "10"]);
    let primary_port = free_port();
    let primary_cfg = dir.path().join("primary.toml");
    std::fs::write(
        &primary_cfg,
        format!(
            "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"127.0.0.1:{primary_port}\"\n\
             [failover]\npeer_token = \"{TOKEN}\"\n\
             [[network_camera]]\nname = \"cam\"\nurl = \"{}\"\n[[channel]]\nnumber = 1\ncamera = \"cam\"\n",
            dir.path().join("primary-data").display(),
            urls[0]
        ),
    )
    .unwrap();
    let mut primary = start_nvr(dir.path(), "primary", &primary_cfg, primary_port);
    wait_for(Duration::from_secs(20), "primary recording", || {
        frames_written(&primary.base, 1) > 0
    });

    let standby_cfg = standby_config(&dir.path().join("standby-data"), TOKEN, &urls[0], primary_port, 5, "");
    let standby = nvr(dir.path(), "standby", &standby_cfg);
    std::thread::sleep(Duration::from_secs(2));
    // Normal state: the standby pulls no video.
    let v = channel_view(&standby.base, 1);
    assert_eq!(v["binding"], serde_json::Value::Null, "{v}");
    assert_eq!(v["ingest"]["frames"], 0);
    let rules = http_get(&format!("{}/api/v1/rules", standby.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rules["rules"][0]["machine"]["state"], "normal", "{rules}");

    // The primary dies.
    let killed = Instant::now();
    let kill_us = now_unix_us();
    primary.proc.kill();
    wait_for(Duration::from_secs(10), "standby recording", || {
        frames_written(&standby.base, 1) > 0
    });
    let takeover = killed.elapsed();
    eprintln!("standby recording {:.2} s after the kill", takeover.as_secs_f64());
    assert!(takeover < Duration::from_secs(3), "took {takeover:?}");
    std::thread::sleep(Duration::from_secs(2));

    // The primary returns; the standby keeps the camera until the primary records it.
    primary = start_nvr(dir.path(), "primary-2", &primary_cfg, primary_port);
    wait_for(Duration::from_secs(20), "primary recording again", || {
        frames_written(&primary.base, 1) > 0
    });
    wait_for(Duration::from_secs(10), "standby release", || {
        channel_view(&standby.base, 1)["binding"].is_null()
    });
    let rules = http_get(&format!("{}/api/v1/rules", standby.base))
        .unwrap()
        .json()
        .unwrap();
    let history = rules["rules"][0]["machine"]["history"].as_array().unwrap().clone();
    let states: Vec<&str> = history.iter().map(|t| t["to"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["failure", "normal"], "{rules}");
    assert!(
        standby.proc.stderr().contains("primary records it again"),
        "released on confirmation, not on the delay"
    );

    // The footage recorded during the failure goes back to the primary.
    wait_for(Duration::from_secs(30), "failback transfer", || {
        let t = http_get(&format!("{}/api/v1/transfers", standby.base))
            .unwrap()
            .json()
            .unwrap();
        t["transfers"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["state"] == "done")
    });
    assert!(primary.proc.stderr().contains("footage imported from peer"));

    // The primary's merged timeline: one hole, from its last frame before the
    // kill to the standby's first frame; nothing lost at failback, no duplicates.
    let p = audit_json(&[
        "--data",
        dir.path().join("primary-data").to_str().unwrap(),
        "--channel",
        "1",
    ]);
    assert_eq!(p["duplicates"], 0, "{p}");
    let cam = &p["cameras"][0];
    let gaps = cam["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "only the takeover hole remains: {p}");
    let us = |v: &serde_json::Value| {
        tandem::time::Time90k::parse_rfc3339(v.as_str().unwrap())
            .unwrap()
            .as_unix_micros()
    };
    let last_primary = us(&gaps[0]["last_before"]);
    assert!(last_primary <= kill_us + 100_000);
    let loss = gaps[0]["seconds"].as_f64().unwrap();
    eprintln!(
        "recording loss after merge {loss:.2} s ({} frames)",
        gaps[0]["frames_missing"]
    );
    assert!(loss < 2.0, "recording loss {loss} s");
    // The standby's own copy agrees on where it started.
    let s = audit_json(&[
        "--data",
        dir.path().join("standby-data").to_str().unwrap(),
        "--channel",
        "1",
    ]);
    assert_eq!(us(&s["cameras"][0]["first_capture"]), us(&gaps[0]["first_after"]));
}
