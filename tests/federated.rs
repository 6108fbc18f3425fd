//! One timeline across a pair of NVRs (loopback): the standby records a
//! stretch the primary lacks (the primary was down) and the failback transfer
//! has not brought it back yet (a tiny `transfer_rate`). The primary's
//! `recordings` lists that stretch `held_by` the standby — which it learned
//! from the standby's own probes, with nothing configured on the primary —
//! and its `clip.mp4` over the stretch plays, streamed from the standby.
//! With the standby down, the primary still answers for its own footage.

mod common;
use common::*;
use std::time::Duration;

const TOKEN: &str = "site-secret-0123456789";

fn get_json(url: &str) -> serde_json::Value {
    let r = http_get(url).unwrap();
    assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
    r.json().unwrap()
}

fn t(v: &serde_json::Value) -> tandem::time::Time90k {
    tandem::time::Time90k::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

#[test]
fn the_primary_shows_and_plays_footage_the_standby_still_holds() {
    if !prerequisite(have_program("ffprobe"), "ffprobe (Debian package ffmpeg)") {
        return;
    }
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
    let standby_cfg = standby_config(
        &dir.path().join("standby-data"),
        TOKEN,
        &urls[0],
        primary_port,
        5,
        "transfer_rate = \"10 kB\"",
    );
    let standby = nvr(dir.path(), "standby", &standby_cfg);
    let standby_name = standby.base.trim_start_matches("http://").to_string();
    wait_for(Duration::from_secs(20), "primary recording", || {
        frames_written(&primary.base, 1) > 20
    });

    // The primary dies; the standby records for a while; the primary returns.
    primary.proc.kill();
    wait_for(Duration::from_secs(10), "standby recording", || {
        frames_written(&standby.base, 1) > 0
    });
    std::thread::sleep(Duration::from_secs(4));
    primary = start_nvr(dir.path(), "primary-2", &primary_cfg, primary_port);
    wait_for(Duration::from_secs(20), "primary recording again", || {
        frames_written(&primary.base, 1) > 10
    });

    let start = rfc3339_offset(-60.0);
    let end = rfc3339_offset(0.0);
    let q = format!("start={}&end={}", enc(&start), enc(&end));
    // The stretch the standby holds, as the primary's federated timeline shows it.
    let mut held = serde_json::Value::Null;
    wait_for(Duration::from_secs(10), "held_by in the primary's recordings", || {
        let v = get_json(&format!(
            "{}/api/v1/channels/1/recordings?{q}&federated=1",
            primary.base
        ));
        match v["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["held_by"] == standby_name.as_str())
        {
            Some(r) => {
                held = r.clone();
                true
            }
            None => false,
        }
    });
    let transfers = get_json(&format!("{}/api/v1/transfers", standby.base));
    assert!(
        transfers["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] != "done"),
        "the transfer must not have landed yet for this test to mean anything: {transfers}"
    );
    let (hs, he) = (t(&held["start"]), t(&held["end"]));
    assert!(he.0 - hs.0 > 2 * 90_000, "the held stretch is seconds long: {held}");
    assert!(held["frames"].as_u64().unwrap() > 0, "{held}");
    // It lies in the primary's own hole: no local run overlaps it.
    let local = get_json(&format!(
        "{}/api/v1/channels/1/recordings?{q}&federated=0",
        primary.base
    ));
    for r in local["recordings"].as_array().unwrap() {
        assert!(r["held_by"].is_null(), "{local}");
        // A run being written covers what arrives after it.
        let r_end = if r["growing"] == true {
            t(&serde_json::json!(end))
        } else {
            t(&r["end"])
        };
        assert!(r_end <= hs || t(&r["start"]) >= he, "{r} overlaps {held}");
    }
    // By default too, for a channel with a backup peer.
    let timed = |url: &str| {
        let t0 = std::time::Instant::now();
        let v = get_json(url);
        (v, t0.elapsed().as_secs_f64() * 1000.0)
    };
    let (dflt, fed_ms) = timed(&format!("{}/api/v1/channels/1/recordings?{q}", primary.base));
    let (_, local_ms) = timed(&format!(
        "{}/api/v1/channels/1/recordings?{q}&federated=0",
        primary.base
    ));
    eprintln!("recordings: federated {fed_ms:.1} ms, local only {local_ms:.1} ms");
    assert!(
        dflt["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["held_by"].is_string()),
        "{dflt}"
    );

    // The clip over the held stretch plays, streamed from the standby.
    let (cs, ce) = (
        tandem::time::Time90k(hs.0 + 45_000),
        tandem::time::Time90k(he.0 - 45_000),
    );
    let clip_q = format!("start={}&end={}", enc(&cs.to_rfc3339()), enc(&ce.to_rfc3339()));
    let t0 = std::time::Instant::now();
    let r = http_get(&format!("{}/api/v1/channels/1/clip.mp4?{clip_q}", primary.base)).unwrap();
    eprintln!(
        "clip held by the standby: {} bytes in {:.1} ms",
        r.body.len(),
        t0.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-tandem-held-by"), Some(standby_name.as_str()));
    let path = dir.path().join("held.mp4");
    std::fs::write(&path, &r.body).unwrap();
    let p = ffprobe(&path);
    let frames: u64 = p["streams"][0]["nb_read_frames"].as_str().unwrap().parse().unwrap();
    let seconds = (ce.0 - cs.0) as f64 / 90_000.0;
    eprintln!("clip held by the standby: {frames} frames over {seconds:.1} s");
    assert!(frames as f64 > seconds * 5.0, "{p}");
    // A byte range of it, as a player seeks.
    let part = http_request(
        "GET",
        &format!("{}/api/v1/channels/1/clip.mp4?{clip_q}", primary.base),
        &[("Range", "bytes=100-1099")],
        b"",
    )
    .unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(part.body, r.body[100..1100].to_vec());
    // Off: this NVR's footage only.
    let r = http_get(&format!(
        "{}/api/v1/channels/1/clip.mp4?{clip_q}&federated=0",
        primary.base
    ))
    .unwrap();
    assert_eq!(r.status, 404);

    // The standby goes down: the primary answers for its own footage, and
    // says which peer did not answer.
    drop(standby);
    let (v, down_ms) = timed(&format!("{}/api/v1/channels/1/recordings?{q}", primary.base));
    eprintln!("recordings with the standby down: {down_ms:.1} ms");
    assert!(!v["recordings"].as_array().unwrap().is_empty(), "{v}");
    assert!(
        v["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["held_by"].is_null()),
        "{v}"
    );
    assert!(v["peers"][0]["error"].is_string(), "{v}");
    let r = http_get(&format!("{}/api/v1/channels/1/clip.mp4?{clip_q}", primary.base)).unwrap();
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    // The primary's own first run, from before the failure.
    let first = local["recordings"][0].clone();
    let (ls, le) = (t(&first["start"]), t(&first["end"]));
    assert!(le.0 - ls.0 > 27_000, "{first}");
    let mid = tandem::time::Time90k((ls.0 + le.0) / 2);
    let own = format!(
        "{}/api/v1/channels/1/clip.mp4?start={}&end={}",
        primary.base,
        enc(&ls.to_rfc3339()),
        enc(&mid.to_rfc3339())
    );
    let r = http_get(&own).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
