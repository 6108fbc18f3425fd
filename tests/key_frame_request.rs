//! Key frame requests at session start: Tandem sends an RTCP Picture Loss
//! Indication right after PLAY, so a takeover (or any reconnect) does not wait
//! up to a GOP for the camera's next key frame. Shown against the simulated
//! camera (which honours it, or ignores it with `--ignore-key-frame-requests`,
//! the control) and against a GStreamer camera (gst-rtsp-server with x264enc)
//! that another viewer already watches, joined mid-GOP.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

/// Both cameras start a 10-s GOP at once; the NVR joins about 2 s into it.
#[test]
fn the_first_key_frame_comes_at_once_from_a_camera_that_honours_requests() {
    let dir = tempfile::tempdir().unwrap();
    let small = [
        "--width",
        "320",
        "--height",
        "240",
        "--bitrate-kbps",
        "300",
        "--gop",
        "250",
    ];
    let (_honours, a) = sim_camera(dir.path(), 1, &small);
    let mut ignoring = small.to_vec();
    ignoring.push("--ignore-key-frame-requests");
    let (_ignores, b) = sim_camera(dir.path(), 1, &ignoring);
    std::thread::sleep(Duration::from_secs(2));
    let cfg = recorder_config(&dir.path().join("data"), &[("honours", &a[0]), ("ignores", &b[0])]);
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "both channels recording", || {
        frames_written(&nvr.base, 1) > 0 && frames_written(&nvr.base, 2) > 0
    });
    let honours = channel_view(&nvr.base, 1)["ingest"]["connect"].clone();
    let ignores = channel_view(&nvr.base, 2)["ingest"]["connect"].clone();
    eprintln!("honours: {honours}\nignores: {ignores}");
    for c in [&honours, &ignores] {
        assert_eq!(c["key_frame_requested"], true, "{c}");
    }
    let wait = |c: &serde_json::Value| c["first_key_frame_ms"].as_f64().unwrap();
    // One frame interval (40 ms) plus the round trip; a debug build on a busy
    // machine gets a generous bound, still far below the GOP.
    assert!(wait(&honours) < 1000.0, "{honours}");
    // The control: the same camera ignoring the request waits for its GOP.
    assert!(wait(&ignores) > 2000.0, "{ignores}");
    assert!(
        channel_view(&nvr.base, 1)["ingest"]["key_frame_requests"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

fn gst_rtsp_server_available() -> bool {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0'); \
             from gi.repository import Gst, GstRtspServer; Gst.init(None); \
             assert all(Gst.ElementFactory.find(e) for e in ('videotestsrc','x264enc','rtph264pay','rtspsrc','fakesink'))",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// gst-rtsp-server answers the PLI by forcing a key unit on its encoder: the
/// NVR records within a fraction of a second of PLAY, where the camera's 10-s
/// GOP (another viewer started it) would otherwise make it wait seconds.
#[test]
fn a_gstreamer_camera_answers_the_key_frame_request() {
    if !prerequisite(
        gst_rtsp_server_available(),
        "gst-rtsp-server with Python bindings and x264enc (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/gst_rtsp_server.py");
    // A 10-s GOP, started by the viewer; killed when the test ends.
    let camera = spawn(
        "gst-camera",
        Command::new("/usr/bin/python3")
            .args([script, &port.to_string(), "h264", "250", "--viewer"])
            .stdout(std::process::Stdio::null()),
        dir.path(),
    );
    wait_for(
        Duration::from_secs(30),
        "the GStreamer camera and its first viewer",
        || camera.stderr().contains("viewer ready"),
    );
    let url = format!("rtsp://127.0.0.1:{port}/test");
    let cfg = recorder_config(&dir.path().join("data"), &[("gst", &url)]);
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "the channel recording", || {
        frames_written(&nvr.base, 1) > 0
    });
    let c = channel_view(&nvr.base, 1)["ingest"]["connect"].clone();
    eprintln!("GStreamer camera: {c}");
    assert_eq!(c["key_frame_requested"], true, "{c}");
    // Without the request: the rest of a 10-s GOP, seconds (the camera's
    // viewer started it well before the NVR connected).
    assert!(c["first_key_frame_ms"].as_f64().unwrap() < 1000.0, "{c}");
    assert!(c["frames_before_key"].as_u64().unwrap() < 25, "{c}");
}
