//! Crash safety: SIGKILL the NVR at random moments while it records, 20 times.
//! After every restart the store must be consistent (repair keeps every
//! complete frame), and the footage lost per kill — frames captured before the
//! kill that were not stored — must stay under one second.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn sigkill_twenty_times_loses_at_most_a_second_each() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "25", "--gop", "12"]);
    let data = dir.path().join("data");
    let port = free_port();
    let cfg_path = dir.path().join("nvr.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\nsegment_duration = \"3s\"\nflush_interval = \"1s\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n[[network_camera]]\nname = \"c\"\nurl = \"{}\"\n\
             [[channel]]\nnumber = 1\ncamera = \"c\"\n",
            data.display(),
            urls[0]
        ),
    )
    .unwrap();
    let mut kills_us = Vec::new();
    // A fixed seed keeps failures reproducible while still spreading kills
    // over every phase of the segment and flush cycles.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..20 {
        let mut n = start_nvr(dir.path(), &format!("nvr-{round}"), &cfg_path, port);
        wait_for(Duration::from_secs(20), "recording after restart", || {
            frames_written(&n.base, 1) > 0
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let ms = 200 + rng % 4300;
        std::thread::sleep(Duration::from_millis(ms));
        kills_us.push(now_unix_us());
        n.proc.kill();
        let log = n.proc.stderr();
        assert!(!log.contains("panicked"), "round {round}: {log}");
    }
    // A last start repairs what the 20th kill left; then a clean stop.
    let mut n = start_nvr(dir.path(), "nvr-final", &cfg_path, port);
    wait_for(Duration::from_secs(20), "recording", || frames_written(&n.base, 1) > 0);
    std::thread::sleep(Duration::from_secs(1));
    assert!(n.proc.terminate().success());
    let log = n.proc.stderr();
    assert!(log.contains("shutdown complete"), "{log}");

    let a = audit_json(&["--data", data.to_str().unwrap(), "--channel", "1"]);
    for (i, k) in kills_us.iter().enumerate() {
        eprintln!("kill {i} at {}", tandem::time::Time90k::from_unix_micros(*k));
    }
    assert_eq!(a["duplicates"], 0, "{a}");
    assert_eq!(a["frames_unstamped"], 0, "{a}");
    let gaps = a["cameras"][0]["gaps"].as_array().unwrap().clone();
    let gap_us = |g: &serde_json::Value, k: &str| {
        tandem::time::Time90k::parse_rfc3339(g[k].as_str().unwrap())
            .unwrap()
            .as_unix_micros()
    };
    for (i, &k) in kills_us.iter().enumerate() {
        // A restart can be quick enough that the camera's next key frame is
        // also the next frame: then no gap spans the kill and nothing was lost.
        let Some(g) = gaps
            .iter()
            .find(|g| gap_us(g, "last_before") <= k && k <= gap_us(g, "first_after"))
        else {
            eprintln!("kill {i}: no frame lost");
            continue;
        };
        let lost_ms = (k - gap_us(g, "last_before")) / 1000;
        eprintln!("kill {i}: last stored frame captured {lost_ms} ms before the kill");
        assert!(lost_ms <= 1000, "kill {i} lost {lost_ms} ms of footage before the kill");
    }
    // Every hole in the timeline is explained by a kill.
    for g in &gaps {
        assert!(
            kills_us
                .iter()
                .any(|&k| gap_us(g, "last_before") <= k && k <= gap_us(g, "first_after")),
            "a gap no kill explains: {g}"
        );
    }

    // Every stored frame is readable: the whole timeline exports and decodes.
    if prerequisite(have_program("ffprobe"), "ffprobe (Debian package ffmpeg)") {
        let runs = tandem::store::Reader::new(data.clone())
            .recordings(1, tandem::time::Time90k(0), tandem::time::Time90k(i64::MAX))
            .unwrap();
        assert!(
            !runs.is_empty() && runs.len() <= gaps.len() + 1,
            "{} runs for {} gaps",
            runs.len(),
            gaps.len()
        );
        let out = dir.path().join("all.mp4");
        export(
            "data",
            data.to_str().unwrap(),
            1,
            &runs[0].start,
            &runs.last().unwrap().end,
            &out,
        );
        let p = ffprobe(&out);
        let frames: u64 = p["streams"][0]["nb_read_frames"].as_str().unwrap().parse().unwrap();
        let stored = a["frames_found"].as_u64().unwrap();
        assert!(frames + 1 >= stored, "decoded {frames} of {stored} stored frames");
    }
}
