//! Cameras that change under the recorder: a resolution switch mid-stream
//! starts a new segment with the new parameters (never a corrupt one), and a
//! camera that restarts again and again is reconnected every time without the
//! NVR leaking file handles. Also covers HTTP Basic authentication.

mod common;
use common::*;
use std::time::Duration;

fn config(dir: &std::path::Path, url: &str) -> String {
    format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"c\"\nurl = \"{url}\"\n[[channel]]\nnumber = 1\ncamera = \"c\"\n",
        dir.join("data").display()
    )
}

#[test]
fn resolution_change_mid_stream_starts_a_new_segment() {
    if !prerequisite(have_program("ffprobe"), "ffprobe (Debian package ffmpeg)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(
        dir.path(),
        1,
        &["--switch-resolution", "320x180", "--switch-after-s", "6"],
    );
    let nvr = nvr(dir.path(), "nvr", &config(dir.path(), &urls[0]));
    wait_for(Duration::from_secs(30), "the switch to 320x180", || {
        channel_view(&nvr.base, 1)["ingest"]["width"] == 320
    });
    std::thread::sleep(Duration::from_secs(3));
    let url = format!(
        "{}/api/v1/channels/1/recordings?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
        nvr.base
    );
    let runs = http_get(&url).unwrap().json().unwrap()["recordings"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(runs.len(), 2, "one run per resolution: {runs:?}");
    assert_eq!(
        (runs[0]["width"].as_u64(), runs[1]["width"].as_u64()),
        (Some(640), Some(320))
    );
    // The two runs meet without a hole: the switch happened at a key frame.
    let end0 = tandem::time::Time90k::parse_rfc3339(runs[0]["end"].as_str().unwrap()).unwrap();
    let start1 = tandem::time::Time90k::parse_rfc3339(runs[1]["start"].as_str().unwrap()).unwrap();
    assert!((start1 - end0).abs() <= 3600, "{runs:?}");
    // A clip across the switch has two sample entries and decodes cleanly.
    let out = dir.path().join("switch.mp4");
    export(
        "server",
        &nvr.base,
        1,
        runs[0]["start"].as_str().unwrap(),
        runs[1]["end"].as_str().unwrap(),
        &out,
    );
    let mut f = std::fs::File::open(&out).unwrap();
    let track = tandem::mp4::reader::read_track_file(&mut f).unwrap();
    assert_eq!(track.entry_count, 2);
    assert_decodes_cleanly(&out, "resolution switch");
    let a = audit_json(&[out.to_str().unwrap()]);
    assert_eq!(a["frames_lost"], 0, "{a}");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn restarting_camera_is_reconnected_without_leaking_handles() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cam_args = |id: &str| -> Vec<String> {
        [
            "--user",
            "viewer",
            "--password",
            "pw",
            "--auth",
            "basic",
            "--first-id",
            id,
        ]
        .map(String::from)
        .to_vec()
    };
    let args0 = cam_args("1");
    let (mut cam, urls) = sim_camera_at(
        dir.path(),
        &listen,
        1,
        &args0.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    let url = urls[0].replace("rtsp://", "rtsp://viewer:pw@");
    let nvr = nvr(dir.path(), "nvr", &config(dir.path(), &url));
    wait_for(Duration::from_secs(20), "recording", || {
        frames_written(&nvr.base, 1) > 0
    });
    let pid = nvr.proc.child.id();
    let baseline = open_fds(pid);
    for round in 0..8 {
        cam.kill();
        wait_for(Duration::from_secs(20), "the NVR to notice", || {
            channel_view(&nvr.base, 1)["ingest"]["connected"] == false
        });
        // A new id per camera process: its sequence numbers start again at 0.
        let args = cam_args(&(round + 2).to_string());
        (cam, _) = sim_camera_at(
            dir.path(),
            &listen,
            1,
            &args.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        );
        let before = frames_written(&nvr.base, 1);
        wait_for(Duration::from_secs(30), &format!("reconnect {round}"), || {
            frames_written(&nvr.base, 1) > before + 10
        });
    }
    let v = channel_view(&nvr.base, 1);
    assert!(v["ingest"]["reconnects"].as_u64().unwrap() >= 8, "{v}");
    let fds = open_fds(pid);
    assert!(
        fds <= baseline + 2,
        "file handles grew from {baseline} to {fds} over 8 reconnects"
    );
    let a = audit_json(&["--data", dir.path().join("data").to_str().unwrap(), "--channel", "1"]);
    assert_eq!(a["duplicates"], 0, "{a}");
    // Each restart is a new camera process (sequence numbers restart), so
    // every stamp run must be complete.
    for c in a["cameras"].as_array().unwrap() {
        assert!(c["gaps"].as_array().unwrap().is_empty(), "{c}");
    }
}
