//! Bad input never takes other cameras down: an invalid configuration is
//! rejected with every problem named; an unreachable camera, a wrong password
//! and a server that speaks garbage each fail only their own channel while a
//! good channel keeps recording without loss.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn check_lists_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[storage]\nmin_free = \"a lot\"\n\n[[network_camera]]\nname = \"x\"\nurl = \"ftp://h/\"\n\n\
         [[channel]]\nnumber = 0\n\n[[channel]]\nnumber = 2\ncamera = \"ghost\"\n",
    )
    .unwrap();
    let o = run_tandem(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let f = p.display().to_string();
    for want in [
        format!("{f}:2: storage.min_free:"),
        format!("{f}:6: network_camera `x`.url: scheme `ftp` is not rtsp"),
        format!("{f}:9: channel[0].number: must be between 1 and 4096"),
        format!("{f}:13: channel 2.camera: no network_camera is named `ghost`"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("4 problem(s) found"), "{err}");
    // `serve` refuses the same file and starts nothing.
    let o = run_tandem(&["serve", "--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    // A syntax error names its line too.
    std::fs::write(&p, "[http]\nlisten = \n").unwrap();
    let o = run_tandem(&["check", "--config", p.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{f}:2:")));
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[network_camera]]\nname = \"a\"\nurl = \"rtsp://h/s\"\n[[channel]]\nnumber = 1\ncamera = \"a\"\n",
    )
    .unwrap();
    let o = run_tandem(&["check", "--config", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A TCP server that answers every connection with bytes that are not RTSP.
fn garbage_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.read(&mut buf);
                let junk: Vec<u8> = (0..4096u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect();
                let _ = s.write_all(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 99999999999\r\n\r\n");
                let _ = s.write_all(&junk);
            });
        }
    });
    port
}

#[test]
fn broken_cameras_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--user", "admin", "--password", "right"]);
    let good = urls[0].replace("rtsp://", "rtsp://admin:right@");
    let wrong = urls[0].replace("rtsp://", "rtsp://admin:wrong@");
    let closed = free_port();
    let junk = garbage_server();
    let data = dir.path().join("data");
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[[network_camera]]
name = "good"
url = "{good}"
[[network_camera]]
name = "unreachable"
url = "rtsp://127.0.0.1:{closed}/cam1"
[[network_camera]]
name = "wrong-password"
url = "{wrong}"
[[network_camera]]
name = "garbage"
url = "rtsp://127.0.0.1:{junk}/cam1"
[[channel]]
number = 1
camera = "good"
[[channel]]
number = 2
camera = "unreachable"
[[channel]]
number = 3
camera = "wrong-password"
[[channel]]
number = 4
camera = "garbage"
"#,
        data = data.display()
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "good channel recording", || {
        frames_written(&nvr.base, 1) > 0
    });
    std::thread::sleep(Duration::from_secs(8));
    assert!(nvr.proc.stderr().find("panicked").is_none());
    let ch1 = channel_view(&nvr.base, 1);
    assert_eq!(ch1["ingest"]["connected"], true, "{ch1}");
    assert_eq!(ch1["recording"]["state"], "recording");
    assert!(ch1["ingest"]["fps"].as_f64().unwrap() > 20.0, "{ch1}");
    for (n, expect) in [(2, "refused"), (3, "401"), (4, "")] {
        let v = channel_view(&nvr.base, n);
        assert_eq!(v["ingest"]["connected"], false, "{v}");
        assert_ne!(v["recording"]["state"], "recording", "{v}");
        let err = v["ingest"]["last_error"]
            .as_str()
            .unwrap_or_else(|| panic!("channel {n} has no error: {v}"));
        assert!(err.to_lowercase().contains(expect), "channel {n}: {err}");
        assert!(
            v["ingest"]["reconnects"].as_u64().unwrap() >= 1,
            "channel {n} keeps retrying: {v}"
        );
    }
    // The good channel lost nothing while the others failed.
    let a = audit_json(&[
        "--data",
        data.to_str().unwrap(),
        "--channel",
        "1",
        "--start",
        &rfc3339_offset(-7.0),
        "--end",
        &rfc3339_offset(-1.0),
    ]);
    assert_eq!(a["frames_lost"], 0, "{a}");
    assert!(a["frames_found"].as_u64().unwrap() >= 140, "{a}");
    let ev = http_get(&format!("{}/api/v1/events?channel=3", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "camera_offline"),
        "{ev}"
    );
}
