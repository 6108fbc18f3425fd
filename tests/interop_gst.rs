//! Interoperability: cameras served by GStreamer's RTSP server (x264enc and
//! x265enc, an implementation independent of Tandem's) are recorded and
//! exported correctly.

mod common;
use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

fn gst_available() -> bool {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer','1.0'); from gi.repository import Gst; Gst.init(None); \
                      assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('x265enc')",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn record_and_export(codec: &str, ffprobe_codec: &str) {
    if !prerequisite(gst_available(), "GStreamer RTSP server with x264enc/x265enc (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly/bad)")
        || !prerequisite(have_program("ffprobe"), "ffprobe (Debian package ffmpeg)")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/gst_rtsp_server.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([script, &port.to_string(), codec]).stdout(Stdio::piped());
    let mut gst = spawn(&format!("gst-{codec}"), &mut cmd, dir.path());
    let url = std::io::BufReader::new(gst.child.stdout.take().unwrap())
        .lines()
        .next()
        .and_then(|l| l.ok())
        .unwrap_or_else(|| panic!("GStreamer server did not start: {}", gst.stderr()));
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"gst\"\nurl = \"{url}\"\n[[channel]]\nnumber = 1\ncamera = \"gst\"\n",
        dir.path().join("data").display()
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(30), "GStreamer camera recording", || {
        frames_written(&nvr.base, 1) > 0
    });
    std::thread::sleep(Duration::from_secs(7));
    let v = channel_view(&nvr.base, 1);
    assert_eq!(v["ingest"]["width"], 640, "{v}");
    let out = dir.path().join("clip.mp4");
    let (start, end) = (rfc3339_offset(-6.0), rfc3339_offset(-1.0));
    export("server", &nvr.base, 1, &start, &end, &out);
    let p = ffprobe(&out);
    let s = &p["streams"][0];
    assert_eq!(s["codec_name"], ffprobe_codec, "{p}");
    assert_eq!(s["width"], 640);
    assert_eq!(s["height"], 360);
    let frames: i64 = s["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(
        (frames - 125).abs() <= 3,
        "{codec}: decoded {frames} frames, want about 125"
    );
    let dur: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((dur - 5.0).abs() <= 0.1, "{codec}: duration {dur}");
    // Decoding the whole file produces no errors.
    assert_decodes_cleanly(&out, codec);
}

#[test]
fn records_gstreamer_h264() {
    record_and_export("h264", "h264");
}

#[test]
fn records_gstreamer_h265() {
    record_and_export("h265", "hevc");
}
