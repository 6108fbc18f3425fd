//! Live apply on a running NVR (in process, simulated stamped cameras): a
//! channel whose configuration did not change loses no frame (audited from
//! the cameras' stamps), a channel given a new camera records it within 2 s,
//! a schedule change reaches the writer without restarting ingest, a refused
//! apply changes nothing, and a failover rule changed but with the same check
//! keeps its state and binding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::config::Config;
use tandem::nvr::Nvr;
use tandem::reconcile::ApplyError;
use tandem::sim::{self, SimOptions, VideoSpec};
use tandem::time::{Clock, SystemClock, Time90k};

const SPEC: VideoSpec = VideoSpec {
    width: 160,
    height: 96,
    fps: 10,
    gop: 10,
    bitrate_kbps: 100,
};

async fn cameras(count: u32) -> sim::SimServer {
    let video = tokio::task::spawn_blocking(|| sim::encode_loop(&SPEC))
        .await
        .unwrap()
        .unwrap();
    let opts = SimOptions {
        count,
        first_id: 1,
        setup_delay: Duration::ZERO,
        auth: None,
        switch: None,
        motion: None,
        ignore_key_frame_requests: false,
    };
    sim::start("127.0.0.1:0".parse().unwrap(), Arc::new(video), opts)
        .await
        .unwrap()
}

/// Cameras `s1…sN` at the simulator (camera ids 1…N), each with its
/// `channel = k` for failover rules, then `rest`.
fn config(dir: &std::path::Path, server: &sim::SimServer, rest: &str) -> Config {
    let mut text = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"1 MB\"\nflush_interval = \"100ms\"\n",
        dir.join("data").display()
    );
    for k in 1..=server.count {
        text += &format!(
            "[[network_camera]]\nname = \"s{k}\"\nurl = \"{}\"\nchannel = {k}\n",
            server.url(k)
        );
    }
    text += rest;
    tandem::config::parse(&text, "live.toml", dir).unwrap()
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

fn frames_written(nvr: &Nvr, ch: u32) -> u64 {
    nvr.channel_views()
        .into_iter()
        .find(|v| v.number == ch)
        .map_or(0, |v| v.recording.frames_written)
}

fn view(nvr: &Nvr, ch: u32) -> tandem::nvr::ChannelView {
    nvr.channel_views().into_iter().find(|v| v.number == ch).unwrap()
}

async fn sync(nvr: &Arc<Nvr>) {
    let n = nvr.clone();
    tokio::task::spawn_blocking(move || n.sync()).await.unwrap();
}

const THREE: &str = "[[channel]]\nnumber = 1\ncamera = \"s1\"\n\
                     [[channel]]\nnumber = 2\ncamera = \"s2\"\n\
                     [[channel]]\nnumber = 3\ncamera = \"s3\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_channels_switch_and_unchanged_ones_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = cameras(4).await;
    let running = config(dir.path(), &server, THREE);
    let nvr = Nvr::start(running.clone(), Arc::new(SystemClock)).unwrap();
    for ch in 1..=3 {
        wait_until("recording on every channel", Duration::from_secs(20), || {
            frames_written(&nvr, ch) > 20
        })
        .await;
    }
    let t_before = SystemClock.now();
    let reconnects1 = view(&nvr, 1).ingest.reconnects;
    let reconnects3 = view(&nvr, 3).ingest.reconnects;
    let frames3 = view(&nvr, 3).ingest.frames;

    // A refused apply changes nothing.
    let mut moved = running.clone();
    moved.storage.dir = dir.path().join("elsewhere");
    moved.channels[1].camera = Some("s4".into());
    match nvr.apply(moved).await {
        Err(ApplyError::Refused(e)) => {
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].field, "storage.dir");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(*nvr.config(), running);
    assert_eq!(view(&nvr, 2).binding.as_deref(), Some("s2"));

    // Channel 2 gets camera 4; channel 3 records on events only.
    let desired = config(
        dir.path(),
        &server,
        &THREE
            .replace("number = 2\ncamera = \"s2\"", "number = 2\ncamera = \"s4\"")
            .replace(
                "number = 3\ncamera = \"s3\"\n",
                "number = 3\ncamera = \"s3\"\nrecording = { mode = \"events\" }\n",
            ),
    );
    assert_ne!(desired, running);
    let applied_at = Instant::now();
    let report = nvr.apply(desired.clone()).await.unwrap();
    assert_eq!(report.restarted, vec![2], "{report:?}");
    assert_eq!(*nvr.config(), desired);
    assert_eq!(view(&nvr, 2).binding.as_deref(), Some("s4"));

    // Channel 2 stores frames stamped by camera 4 within 2 s of the apply.
    let reader = nvr.reader.clone();
    let mut switched = None;
    while applied_at.elapsed() < Duration::from_secs(2) {
        sync(&nvr).await;
        let a = tandem::audit::audit_store(&reader, 2, t_before, Time90k(i64::MAX)).unwrap();
        if a.cameras.iter().any(|c| c.camera_id == 4 && c.frames_found > 0) {
            switched = Some(applied_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched = switched.expect("channel 2 recorded camera 4 within 2 s");
    eprintln!("channel 2 recorded its new camera {switched:?} after the apply");

    // Channel 3's policy changed; its camera session went on.
    wait_until("channel 3 in events mode", Duration::from_secs(5), || {
        view(&nvr, 3).policy.and_then(|p| p.mode) == Some("events")
    })
    .await;
    let v3 = view(&nvr, 3);
    assert_eq!(v3.ingest.reconnects, reconnects3, "channel 3's ingest restarted");
    assert!(v3.ingest.frames > frames3, "channel 3's ingest stopped");
    assert_eq!(server.sessions(3), 1);

    // Channel 1 lost nothing across the apply.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sync(&nvr).await;
    let a1 = tandem::audit::audit_store(&reader, 1, Time90k(0), Time90k(i64::MAX)).unwrap();
    assert_eq!(a1.frames_lost, 0, "{a1:?}");
    assert_eq!(a1.restarts, 0, "{a1:?}");
    assert_eq!(a1.cameras.len(), 1);
    assert_eq!(a1.cameras[0].camera_id, 1);
    assert!(a1.frames_found > 30, "{a1:?}");
    assert_eq!(view(&nvr, 1).ingest.reconnects, reconnects1);

    // Applying the same configuration again does nothing.
    let again = nvr.apply(desired).await.unwrap();
    assert!(again.steps.is_empty() && again.restarted.is_empty(), "{again:?}");
    nvr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_added_and_removed_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = cameras(2).await;
    let one = "[[channel]]\nnumber = 1\ncamera = \"s1\"\n";
    let nvr = Nvr::start(config(dir.path(), &server, one), Arc::new(SystemClock)).unwrap();
    wait_until("channel 1 recording", Duration::from_secs(20), || {
        frames_written(&nvr, 1) > 5
    })
    .await;
    let two = config(dir.path(), &server, "[[channel]]\nnumber = 2\ncamera = \"s2\"\n");
    let report = nvr.apply(two).await.unwrap();
    assert!(!nvr.has_channel(1));
    assert!(nvr.has_channel(2));
    assert!(
        report.steps.iter().any(|s| s.contains("channel 1: removed")),
        "{report:?}"
    );
    wait_until("channel 2 recording", Duration::from_secs(10), || {
        frames_written(&nvr, 2) > 5
    })
    .await;
    wait_until("camera 1's session closed", Duration::from_secs(5), || {
        server.sessions(1) == 0
    })
    .await;
    // The removed channel's footage stays.
    sync(&nvr).await;
    let a1 = tandem::audit::audit_store(&nvr.reader, 1, Time90k(0), Time90k(i64::MAX)).unwrap();
    assert!(a1.frames_found > 5, "{a1:?}");
    nvr.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_changed_with_the_same_check_keeps_its_state_and_binding() {
    let dir = tempfile::tempdir().unwrap();
    let server = cameras(2).await;
    // Nothing listens on the checked port: the rule fails over to camera 2.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let rule = |delay: u32| {
        format!(
            "[[channel]]\nnumber = 1\n\
             [[rule]]\nname = \"r\"\nrelease_delay = {delay}\n\
             check = {{ address = \"127.0.0.1\", type = \"tcp\", port = {port}, interval = 0.1, timeout = 0.1, failure_count = 2, normal_count = 2 }}\n\
             states.normal = [ {{ camera = 1, address = \"127.0.0.1\" }} ]\n\
             states.failure = [ {{ camera = 1, address = \"127.0.0.1\", channel = 2 }} ]\n"
        )
    };
    let nvr = Nvr::start(config(dir.path(), &server, &rule(5)), Arc::new(SystemClock)).unwrap();
    let state = |nvr: &Nvr| {
        let r = nvr.rules();
        let st = r[0].lock().unwrap();
        format!("{:?}", st.machine.state)
    };
    wait_until("the rule in failure", Duration::from_secs(10), || {
        state(&nvr) == "Failure"
    })
    .await;
    wait_until("channel 1 recording camera 2", Duration::from_secs(10), || {
        view(&nvr, 1).binding.as_deref() == Some("s2") && view(&nvr, 1).ingest.frames > 5
    })
    .await;
    let frames = view(&nvr, 1).ingest.frames;
    let report = nvr.apply(config(dir.path(), &server, &rule(9))).await.unwrap();
    assert!(
        report
            .steps
            .iter()
            .any(|s| s == "rule r: changed, same check: kept in state failure"),
        "{report:?}"
    );
    assert!(report.restarted.is_empty(), "{report:?}");
    assert_eq!(state(&nvr), "Failure");
    let r = nvr.rules();
    assert_eq!(r[0].lock().unwrap().rule.rule.release_delay, Duration::from_secs(9));
    drop(r);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = view(&nvr, 1);
    assert_eq!(v.binding.as_deref(), Some("s2"));
    assert!(v.ingest.frames > frames, "the session on camera 2 went on");
    assert_eq!(v.ingest.reconnects, 0);
    assert_eq!(server.sessions(2), 1);

    // A changed check starts the rule again from normal.
    let report = nvr
        .apply(config(
            dir.path(),
            &server,
            &rule(9).replace("failure_count = 2", "failure_count = 50"),
        ))
        .await
        .unwrap();
    assert!(
        report
            .steps
            .iter()
            .any(|s| s == "rule r: check changed: restarted from normal"),
        "{report:?}"
    );
    wait_until("channel 1 back on camera 1", Duration::from_secs(5), || {
        view(&nvr, 1).binding.as_deref() == Some("s1")
    })
    .await;
    nvr.shutdown().await;
}

/// The status line of `GET /` at `addr`, or the connection error.
async fn status_line(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /api/v1/channels HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = vec![0; 64];
    let n = s.read(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_moves_and_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = cameras(1).await;
    // Both held while the second is chosen: a port freed at once can be
    // handed out again, and a move to the same address changes nothing.
    let (la, lb) = (
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (a, b) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    drop((la, lb));
    let one =
        |addr: std::net::SocketAddr| format!("[http]\nlisten = \"{addr}\"\n[[channel]]\nnumber = 1\ncamera = \"s1\"\n");
    let running = config(dir.path(), &server, &one(a));
    let endpoint = tandem::web::endpoint::Endpoint::bind(&running).await.unwrap();
    let nvr = Nvr::start(running, Arc::new(SystemClock)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let web = tokio::spawn(tandem::web::serve(endpoint, nvr.clone(), async {
        let _ = stopped.await;
    }));
    wait_until("channel 1 recording", Duration::from_secs(20), || {
        frames_written(&nvr, 1) > 5
    })
    .await;
    assert!(status_line(a).await.unwrap().starts_with("HTTP/1.1"));
    let reconnects = view(&nvr, 1).ingest.reconnects;
    let report = nvr.apply(config(dir.path(), &server, &one(b))).await.unwrap();
    assert!(report.restarted.is_empty(), "{report:?}");
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.contains(&format!("HTTP listener moves to {b}"))),
        "{report:?}"
    );
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(line) = status_line(b).await {
            answered = Some(line);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = answered.expect("the new address answers");
    assert!(line.starts_with("HTTP/1.1 "), "{line}");
    wait_until("the old address closed", Duration::from_secs(5), || {
        std::net::TcpStream::connect(a).is_err()
    })
    .await;
    let frames = view(&nvr, 1).ingest.frames;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = view(&nvr, 1);
    assert!(v.ingest.frames > frames, "recording goes on");
    assert_eq!(v.ingest.reconnects, reconnects);
    let _ = stop.send(());
    web.await.unwrap().unwrap();
    nvr.shutdown().await;
}
