//! Simulated camera → NVR → export (over HTTP and from the store) → ffprobe
//! and audit: the recording path end to end, with real processes.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn records_and_exports_a_clip_that_ffprobe_and_audit_accept() {
    if !prerequisite(have_program("ffprobe"), "ffprobe (Debian package ffmpeg)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 2, &["--fps", "25", "--gop", "25"]);
    let data = dir.path().join("data");
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
segment_duration = "4s"
[http]
listen = "{{listen}}"
[[network_camera]]
name = "tcp-cam"
url = "{u1}"
[[network_camera]]
name = "udp-cam"
url = "{u2}"
transport = "udp"
[[channel]]
number = 1
camera = "tcp-cam"
[[channel]]
number = 2
camera = "udp-cam"
"#,
        data = data.display(),
        u1 = urls[0],
        u2 = urls[1]
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "both channels recording", || {
        frames_written(&nvr.base, 1) > 0 && frames_written(&nvr.base, 2) > 0
    });
    // Record long enough to span several 4 s segments.
    std::thread::sleep(Duration::from_secs(11));
    let start = rfc3339_offset(-9.0);
    let end = rfc3339_offset(-1.0);

    // The recordings list covers the range as one contiguous run.
    let r = http_get(&format!(
        "{}/api/v1/channels/1/recordings?start={start}&end={end}",
        nvr.base
    ))
    .unwrap()
    .json()
    .unwrap();
    let runs = r["recordings"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{r}");
    assert_eq!(runs[0]["codec"], "h264");
    assert_eq!(runs[0]["width"], 640);
    assert!(runs[0]["segments"].as_u64().unwrap() >= 2, "{r}");

    for (ch, how) in [(1, "server"), (2, "data")] {
        let out = dir.path().join(format!("ch{ch}.mp4"));
        let src = if how == "server" {
            nvr.base.clone()
        } else {
            data.display().to_string()
        };
        export(how, &src, ch, &start, &end, &out);
        let p = ffprobe(&out);
        let s = &p["streams"][0];
        assert_eq!(s["codec_name"], "h264");
        assert_eq!(s["width"], 640);
        assert_eq!(s["height"], 360);
        // 8 s at 25 fps = 200 frames after the edit list trims to the exact start.
        let frames: i64 = s["nb_read_frames"].as_str().unwrap().parse().unwrap();
        assert!((frames - 200).abs() <= 1, "ch{ch}: {frames} frames decoded, want 200±1");
        let dur: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
        assert!(
            (dur - 8.0).abs() <= 0.04,
            "ch{ch}: duration {dur}, want 8.0 ± one frame"
        );
        let a = audit_json(&[out.to_str().unwrap()]);
        assert_eq!(a["frames_lost"], 0, "ch{ch}: {a}");
        assert_eq!(a["duplicates"], 0, "ch{ch}: {a}");
        assert!(a["frames_found"].as_u64().unwrap() >= 200, "{a}");
    }

    // The whole stored timeline of channel 1 has no loss either.
    let a = audit_json(&["--data", data.to_str().unwrap(), "--channel", "1"]);
    assert_eq!(a["frames_lost"], 0, "{a}");
    assert_eq!(a["cameras"].as_array().unwrap().len(), 1);
}

#[test]
fn clip_endpoint_supports_range_etag_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &[]);
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"c\"\nurl = \"{}\"\n[[channel]]\nnumber = 1\ncamera = \"c\"\n",
        dir.path().join("data").display(),
        urls[0]
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "recording", || {
        frames_written(&nvr.base, 1) > 75
    });
    let start = rfc3339_offset(-2.5);
    let end = rfc3339_offset(-0.5);
    let url = format!("{}/api/v1/channels/1/clip.mp4?start={start}&end={end}", nvr.base);
    let full = http_get(&url).unwrap();
    assert_eq!(full.status, 200);
    assert_eq!(full.header("content-type"), Some("video/mp4"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let len = full.body.len();
    assert_eq!(full.header("content-length").unwrap().parse::<usize>().unwrap(), len);
    // moov before mdat.
    let moov = full.body.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = full.body.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat);
    let etag = full.header("etag").unwrap().to_string();

    let part = http_request("GET", &url, &[("Range", "bytes=100-1099")], b"").unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-1099/{len}").as_str())
    );
    assert_eq!(part.body, full.body[100..1100]);
    let tail = http_request("GET", &url, &[("Range", "bytes=-500")], b"").unwrap();
    assert_eq!(tail.body, full.body[len - 500..]);
    let bad = http_request("GET", &url, &[("Range", &format!("bytes={len}-"))], b"").unwrap();
    assert_eq!(bad.status, 416);
    let cached = http_request("GET", &url, &[("If-None-Match", &etag)], b"").unwrap();
    assert_eq!(cached.status, 304);
    let stale = http_request("GET", &url, &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")], b"").unwrap();
    assert_eq!(stale.status, 200);

    // Errors name the problem.
    let e = http_get(&format!(
        "{}/api/v1/channels/1/clip.mp4?start=yesterday&end={end}",
        nvr.base
    ))
    .unwrap();
    assert_eq!(e.status, 400);
    assert!(e.json().unwrap()["error"].as_str().unwrap().contains("`start`"));
    let e = http_get(&format!(
        "{}/api/v1/channels/9/clip.mp4?start={start}&end={end}",
        nvr.base
    ))
    .unwrap();
    assert_eq!(e.status, 404);
    let e = http_get(&format!(
        "{}/api/v1/channels/1/clip.mp4?start=2001-01-01T00:00:00Z&end=2001-01-01T00:01:00Z",
        nvr.base
    ))
    .unwrap();
    assert_eq!(e.status, 404);
    assert!(e.json().unwrap()["error"].as_str().unwrap().contains("no footage"));
}
