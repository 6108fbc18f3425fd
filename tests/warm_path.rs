//! The warm path on loopback: a standby whose rule binds a slow camera (500
//! ms per RTSP request, as cameras that take seconds to start a session)
//! keeps a described session of it while all is well — pulling no video —
//! and takes over with SETUP and PLAY only: the DESCRIBE round trip is not
//! in the takeover.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn takeover_skips_describe_on_a_warm_path() {
    let dir = tempfile::tempdir().unwrap();
    // 1.5 s split over DESCRIBE, SETUP and PLAY.
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--setup-delay-ms", "1500", "--gop", "10"]);
    let watched = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = watched.local_addr().unwrap().port();
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"cam\"\nurl = \"{}\"\n[[channel]]\nnumber = 1\n\
         [[rule]]\nname = \"watch\"\nrelease_delay = 60\n\
         check = {{ address = \"127.0.0.1\", type = \"tcp\", port = {port}, interval = 0.1, timeout = 0.1, failure_count = 2, normal_count = 1 }}\n\
         states.normal = [ {{ camera = 1, address = \"n/a\" }} ]\n\
         states.failure = [ {{ camera = 1, address = \"127.0.0.1\" }} ]\n",
        dir.path().join("data").display(),
        urls[0]
    );
    let nvr = nvr(dir.path(), "standby", &cfg);
    wait_for(Duration::from_secs(10), "the warm path", || {
        nvr.proc.stderr().contains("warm path ready")
    });
    std::thread::sleep(Duration::from_millis(500));
    // Warm, not pulling video.
    let v = channel_view(&nvr.base, 1);
    assert!(v["binding"].is_null(), "{v}");
    assert_eq!(frames_written(&nvr.base, 1), 0);

    drop(watched);
    wait_for(Duration::from_secs(10), "the standby recording", || {
        frames_written(&nvr.base, 1) > 0
    });
    let connect = channel_view(&nvr.base, 1)["ingest"]["connect"].clone();
    eprintln!("takeover on the warm path: {connect}");
    let log = nvr.proc.stderr();
    let warm: Vec<&str> = log.lines().filter(|l| l.contains("warm")).collect();
    assert!(log.contains("took over on the warm path"), "{warm:#?}");
    // DESCRIBE was answered before the fault; SETUP and PLAY remain (500 ms each).
    assert!(connect["describe_ms"].as_f64().unwrap() < 50.0, "{connect}");
    let rtsp = connect["setup_ms"].as_f64().unwrap() + connect["play_ms"].as_f64().unwrap();
    assert!((900.0..1400.0).contains(&rtsp), "{connect}");
}
