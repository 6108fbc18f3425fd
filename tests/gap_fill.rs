//! Gap fill: an NVR recording a simulated camera with edge storage is
//! SIGKILLed and started again ~5 s later; the hole its absence left is
//! fetched from the camera's card and merged, so the store's audit finds no
//! frame missing across the outage and none twice, and `GET /api/v1/gapfill`
//! shows the job done. A camera without edge storage refuses the replay: the
//! job is reported failed (or lost) and recording goes on unharmed.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(data: &Path, port: u16, url: &str) -> String {
    format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\nsegment_duration = \"3s\"\nflush_interval = \"500ms\"\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n[[network_camera]]\nname = \"c\"\nurl = \"{url}\"\nedge_storage = true\n\
         [[channel]]\nnumber = 1\ncamera = \"c\"\n[gapfill]\nrate = \"4 MB\"\n",
        data.display()
    )
}

/// The NVR's gap-fill jobs.
fn jobs(base: &str) -> Vec<serde_json::Value> {
    http_get(&format!("{base}/api/v1/gapfill"))
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .and_then(|v| v["jobs"].as_array().cloned())
        .unwrap_or_default()
}

/// Records, is SIGKILLed, waits `outage`, starts again: the restarted NVR.
fn kill_and_restart(dir: &Path, cfg: &Path, port: u16, outage: Duration) -> Nvr {
    let mut n = start_nvr(dir, "nvr-before", cfg, port);
    wait_for(Duration::from_secs(15), "recording", || frames_written(&n.base, 1) > 50);
    std::thread::sleep(Duration::from_secs(1));
    n.proc.kill();
    std::thread::sleep(outage);
    let n = start_nvr(dir, "nvr-after", cfg, port);
    wait_for(Duration::from_secs(15), "recording after restart", || {
        frames_written(&n.base, 1) > 0
    });
    n
}

#[test]
fn a_crash_hole_is_filled_from_the_cameras_card_with_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "25", "--gop", "25", "--edge-storage", "60"]);
    let data = dir.path().join("data");
    let port = free_port();
    let cfg = dir.path().join("nvr.toml");
    std::fs::write(&cfg, config(&data, port, &urls[0])).unwrap();
    let mut n = kill_and_restart(dir.path(), &cfg, port, Duration::from_secs(5));
    let restarted = Instant::now();
    wait_for(Duration::from_secs(25), "the gap-fill job to finish", || {
        let j = jobs(&n.base);
        j.iter().any(|j| j["state"] != "pending" && j["state"] != "running")
            && j.iter().all(|j| j["state"] != "pending" && j["state"] != "running")
    });
    let took = restarted.elapsed();
    let j = jobs(&n.base);
    eprintln!("jobs after {took:?}: {}", serde_json::to_string_pretty(&j).unwrap());
    assert_eq!(j.len(), 1, "one hole, one job: {j:?}");
    assert_eq!(j[0]["state"], "done", "{}", j[0]);
    assert_eq!(j[0]["reason"], "startup", "{}", j[0]);
    assert_eq!(j[0]["camera"], "c");
    assert!(j[0]["seconds"].as_f64().unwrap() > 4.0, "{}", j[0]);
    assert!(j[0]["frames"].as_u64().unwrap() > 100, "{}", j[0]);
    assert_eq!(j[0]["lost_s"], 0.0);
    // The timeline marks the filled stretch.
    let rec = http_get(&format!(
        "{}/api/v1/channels/1/recordings?start={}&end={}",
        n.base,
        rfc3339_offset(-120.0),
        rfc3339_offset(5.0)
    ))
    .unwrap();
    let rec: serde_json::Value = serde_json::from_slice(&rec.body).unwrap();
    assert!(
        rec["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["origin"] == "gapfill"),
        "{rec}"
    );
    assert_eq!(rec["gapfill"][0]["state"], "done", "{rec}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(n.proc.terminate().success());
    let a = audit_json(&["--data", data.to_str().unwrap(), "--channel", "1"]);
    assert_eq!(a["duplicates"], 0, "{a}");
    assert_eq!(a["frames_lost"], 0, "{a}");
    assert_eq!(a["frames_unstamped"], 0, "{a}");
    assert!(a["frames_found"].as_u64().unwrap() > 250, "{a}");
}

#[test]
fn a_camera_without_edge_storage_fails_the_job_and_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "25", "--gop", "25"]);
    let data = dir.path().join("data");
    let port = free_port();
    let cfg = dir.path().join("nvr.toml");
    std::fs::write(&cfg, config(&data, port, &urls[0])).unwrap();
    let n = kill_and_restart(dir.path(), &cfg, port, Duration::from_secs(3));
    wait_for(Duration::from_secs(25), "the gap-fill job to give up", || {
        jobs(&n.base)
            .iter()
            .any(|j| j["state"] == "failed" || j["state"] == "lost")
    });
    let j = jobs(&n.base);
    eprintln!("{}", serde_json::to_string_pretty(&j).unwrap());
    let j = &j[0];
    assert!(j["state"] == "failed" || j["state"] == "lost", "{j}");
    if j["state"] == "failed" {
        assert!(j["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{j}");
    } else {
        assert!(j["lost_s"].as_f64().unwrap() > 2.0, "{j}");
    }
    // Recording is unaffected.
    let before = frames_written(&n.base, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert!(frames_written(&n.base, 1) >= before + 25, "recording stalled");
    assert!(!n.proc.stderr().contains("panicked"));
}
