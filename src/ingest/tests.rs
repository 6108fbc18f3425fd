//! Ingest against the hostile camera, in process: stopping a session returns
//! promptly whatever the camera is doing, and each misbehaviour ends the
//! session with a short error.

use super::*;
use crate::config::Transport;
use crate::sim::hostile::{self, HostileServer, HostileVideo, Mode};
use crate::time::SystemClock;

async fn server() -> HostileServer {
    let spec = crate::sim::VideoSpec {
        width: 32,
        height: 32,
        fps: 25,
        gop: 25,
        bitrate_kbps: 50,
    };
    let v = Arc::new(crate::sim::encode_loop(&spec).unwrap());
    let video = HostileVideo {
        main: v.clone(),
        storm: [v.clone(), v],
        first_id: 1,
    };
    hostile::start("127.0.0.1:0".parse().unwrap(), video).await.unwrap()
}

fn camera(server: &HostileServer, mode: Mode) -> NetworkCamera {
    NetworkCamera {
        name: mode.name().into(),
        url: server.url(mode).parse().unwrap(),
        substream_url: None,
        channel: None,
        transport: Transport::Tcp,
        credentials: None,
        edge_storage: false,
        replay_url: None,
        priority: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_returns_promptly_whatever_the_camera_does() {
    let server = server().await;
    let modes = [
        Mode::HeaderFlood,
        Mode::SlowHeader,
        Mode::EndlessHeader,
        Mode::HugeBody,
        Mode::NoMarker,
        Mode::EndlessFua,
    ];
    for mode in modes {
        for delay in [Duration::from_millis(100), Duration::from_millis(600)] {
            let (tx, _rx) = crate::store::queue::channel(crate::store::queue::DEFAULT_WRITE_BUFFER);
            let stats = SharedStats::default();
            let feeds = Feeds {
                record: true,
                motion: None,
                live: None,
                warm: None,
            };
            let h = spawn(1, camera(&server, mode), tx, stats, Arc::new(SystemClock), feeds);
            tokio::time::sleep(delay).await;
            let t = Instant::now();
            tokio::time::timeout(Duration::from_secs(5), h.stop())
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: stop hung"));
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{mode:?}: stop took {:?} after {delay:?}",
                t.elapsed()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaviour_ends_the_session_with_a_short_error() {
    let server = server().await;
    let cases = [
        (Mode::HugeBody, "message-too-large"),
        (Mode::EndlessHeader, "message-head-too-large"),
        (Mode::HeaderFlood, "too-many-headers"),
        (Mode::HugeError, "500"),
        (Mode::NoMarker, "access unit exceeds"),
        (Mode::EndlessFua, "access unit exceeds"),
    ];
    let mut handles = Vec::new();
    for (mode, _) in cases {
        let (tx, rx) = crate::store::queue::channel(crate::store::queue::DEFAULT_WRITE_BUFFER);
        let stats = SharedStats::default();
        let feeds = Feeds {
            record: true,
            motion: None,
            live: None,
            warm: None,
        };
        let h = spawn(
            1,
            camera(&server, mode),
            tx,
            stats.clone(),
            Arc::new(SystemClock),
            feeds,
        );
        handles.push((h, stats, rx));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for ((mode, want), (_, stats, _)) in cases.iter().zip(&handles) {
        let err = loop {
            let e = stats.lock().unwrap().last_error.clone();
            if let Some(e) = e {
                break e;
            }
            assert!(Instant::now() < deadline, "{mode:?}: no error after 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(err.contains(want), "{mode:?}: {err}");
        assert!(err.len() <= 300 && !err.contains('\n'), "{mode:?}: {err:?}");
    }
    for (h, _, _) in handles {
        h.stop().await;
    }
}
