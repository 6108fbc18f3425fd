//! Mass takeover on loopback: one NVR with a rule that binds 64 channels to
//! 64 simulated cameras (low bitrate) when its check fails. Binding is not
//! serial: every channel records within 1.5 s of the rule's decision. The
//! test prints where the time goes (RTSP round trips, the wait for the
//! first key frame), as `ingest.connect` reports it per channel.

mod common;
use common::*;
use std::fmt::Write as _;
use std::time::Duration;
use tandem::time::Time90k;

const N: u32 = 64;

#[test]
fn sixty_four_channels_record_within_1_5_s_of_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(
        dir.path(),
        N,
        &[
            "--width",
            "160",
            "--height",
            "90",
            "--bitrate-kbps",
            "64",
            "--fps",
            "25",
            "--gop",
            "25",
        ],
    );
    // The watched "primary": a port that accepts while it is alive.
    let watched = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let watched_port = watched.local_addr().unwrap().port();
    let mut cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n",
        dir.path().join("data").display()
    );
    for (i, url) in urls.iter().enumerate() {
        let n = i + 1;
        writeln!(
            cfg,
            "[[network_camera]]\nname = \"cam{n}\"\nurl = \"{url}\"\nchannel = {n}"
        )
        .unwrap();
        writeln!(cfg, "[[channel]]\nnumber = {n}").unwrap();
    }
    let normal: Vec<String> = (1..=N)
        .map(|n| format!("{{ camera = {n}, address = \"n/a\" }}"))
        .collect();
    let failure: Vec<String> = (1..=N)
        .map(|n| format!("{{ camera = {n}, address = \"127.0.0.1\", channel = {n} }}"))
        .collect();
    writeln!(
        cfg,
        "[[rule]]\nname = \"mass\"\nrelease_delay = 60\n\
         check = {{ address = \"127.0.0.1\", type = \"tcp\", port = {watched_port}, interval = 0.1, timeout = 0.1, failure_count = 2, normal_count = 1 }}\n\
         states.normal = [ {} ]\nstates.failure = [ {} ]",
        normal.join(", "),
        failure.join(", ")
    )
    .unwrap();
    let nvr = nvr(dir.path(), "standby", &cfg);
    let rules_url = format!("{}/api/v1/rules", nvr.base);
    let state = || {
        http_get(&rules_url).unwrap().json().unwrap()["rules"][0]["machine"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_for(Duration::from_secs(10), "the rule in normal", || state() == "normal");

    // The primary dies: every channel at once.
    drop(watched);
    let channels_url = format!("{}/api/v1/channels", nvr.base);
    wait_for(Duration::from_secs(20), "every channel recording", || {
        let v = http_get(&channels_url).unwrap().json().unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .all(|c| c["recording"]["frames_written"].as_u64().unwrap_or(0) > 0)
    });
    let rules = http_get(&rules_url).unwrap().json().unwrap();
    let last = rules["rules"][0]["machine"]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["to"], "failure", "{rules}");
    let decided = Time90k::parse_rfc3339(last["at"].as_str().unwrap()).unwrap();
    // Each channel's first stored frame, stamped by the NVR's clock on
    // arrival (the same clock as the decision): no polling delay in it.
    let (from, to) = (
        (decided + -10 * 90_000).to_rfc3339(),
        (decided + 60 * 90_000).to_rfc3339(),
    );
    let after: Vec<f64> = (1..=N)
        .map(|n| {
            let url = format!("{}/api/v1/channels/{n}/recordings?start={from}&end={to}", nvr.base);
            let v = http_get(&url).unwrap().json().unwrap();
            let first = v["recordings"][0]["start"]
                .as_str()
                .unwrap_or_else(|| panic!("channel {n}: {v}"));
            (Time90k::parse_rfc3339(first).unwrap() - decided) as f64 / 90_000.0
        })
        .collect();
    let worst = after.iter().cloned().fold(0.0, f64::max);
    let mean = after.iter().sum::<f64>() / after.len() as f64;

    // Where the time went, per step, over the 64 sessions.
    let v = http_get(&channels_url).unwrap().json().unwrap();
    let steps = ["describe_ms", "setup_ms", "play_ms", "first_key_frame_ms", "total_ms"];
    let mut line = String::new();
    for step in steps {
        let xs: Vec<f64> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["ingest"]["connect"][step].as_f64())
            .collect();
        assert_eq!(xs.len(), N as usize, "{step} of every session");
        let max = xs.iter().cloned().fold(0.0, f64::max);
        let avg = xs.iter().sum::<f64>() / xs.len() as f64;
        write!(line, " {step} mean {avg:.0} max {max:.0};").unwrap();
    }
    eprintln!("64 channels recording after the decision: mean {mean:.2} s, worst {worst:.2} s;{line}");
    assert!(
        worst <= 1.5,
        "the last channel recorded {worst:.2} s after the decision"
    );
}
