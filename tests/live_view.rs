//! Live view with real peers: plain WebSocket viewers of a real `tandem serve`
//! recording simulated cameras get an init segment and a fragment per frame
//! from the most recent key frame on, within a second; the substream is
//! served from one on-demand camera session; a camera outage is announced and
//! the same socket plays again when the camera returns; live HLS is read by
//! ffprobe with a bearer token; watching is written to the audit log; a
//! WebSocket opened from another site's page is refused.

mod common;
use common::*;

use std::time::Duration;

use tandem::live::client::{watch, Watched};

fn ws_url(base: &str, ch: u32, stream: &str) -> String {
    format!(
        "{}/api/v1/channels/{ch}/live?stream={stream}",
        base.replace("http://", "ws://")
    )
}

/// Sends a WebSocket handshake by hand; the status line of the answer.
fn raw_upgrade(base: &str, token: &str, origin: Option<&str>) -> String {
    use std::io::{BufRead, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET /api/v1/channels/1/live HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n{origin}\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line
}

fn watch_blocking(url: &str, token: &str, secs: f64) -> Watched {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(watch(url, token, Duration::from_secs_f64(secs))).unwrap()
}

#[test]
fn live_view_over_websocket_and_hls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listen = format!("127.0.0.1:{}", free_port());
    let (sim, urls) = sim_camera_at(d, &listen, 1, &["--gop", "25"]);
    let (_sub_sim, sub_urls) = sim_camera(d, 1, &["--width", "320", "--height", "180", "--gop", "25"]);
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"100 MiB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"door\"\nurl = \"{}\"\nsubstream_url = \"{}\"\n\
         [[channel]]\nnumber = 1\nname = \"Door\"\ncamera = \"door\"\n",
        d.join("store").display(),
        urls[0],
        sub_urls[0]
    );
    let nvr = nvr(d, "nvr", &cfg);
    let token = token_for(&nvr.base).unwrap();
    wait_for(Duration::from_secs(20), "channel 1 recording", || {
        frames_written(&nvr.base, 1) > 30
    });

    // The main stream: an init, then a fragment per frame starting at a key
    // frame, the first within a second.
    let w = watch_blocking(&ws_url(&nvr.base, 1, "main"), &token, 3.0);
    assert_eq!(w.inits, 1, "{w:?}");
    assert_eq!(w.stream.as_deref(), Some("main"));
    assert!(w.fragments >= 60, "3 s at 25 fps (plus the cached GOP): {w:?}");
    assert!(w.key_fragments >= 2, "{w:?}");
    let first = w.first_fragment_ms.unwrap();
    assert!(
        first < 1000.0,
        "the picture starts from the cached GOP at once: {first} ms"
    );
    let mut lat = w.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let p50 = lat[lat.len() / 2];
    println!("live view: first fragment after {first:.0} ms, capture→arrival p50 {p50:.0} ms");
    assert!(
        p50 < 500.0,
        "live frames arrive within half a second of capture: p50 {p50} ms"
    );

    // The substream: one on-demand session for several viewers.
    let viewers: Vec<_> = (0..5)
        .map(|_| {
            let (u, t) = (ws_url(&nvr.base, 1, "sub"), token.clone());
            std::thread::spawn(move || watch_blocking(&u, &t, 4.0))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let store = http_get(&format!("{}/api/v1/store", nvr.base)).unwrap().json().unwrap();
    let streams = store["live"]["streams"].as_array().unwrap().clone();
    let sub = streams.iter().find(|s| s["stream"] == "sub").expect("a substream hub");
    assert_eq!(sub["viewers"], 5, "{streams:?}");
    for v in viewers {
        let w = v.join().unwrap();
        assert_eq!(w.stream.as_deref(), Some("sub"));
        assert!(w.fragments >= 40, "{w:?}");
    }
    let log = nvr.proc.stderr();
    assert_eq!(
        log.matches("opening the substream for live viewers").count(),
        1,
        "five viewers share one substream session: {log}"
    );

    // A camera outage is announced on the open socket, and the same socket
    // plays again when the camera comes back.
    let (u, t) = (ws_url(&nvr.base, 1, "main"), token.clone());
    let long = std::thread::spawn(move || watch_blocking(&u, &t, 24.0));
    std::thread::sleep(Duration::from_secs(2));
    drop(sim);
    std::thread::sleep(Duration::from_secs(4));
    let (_sim2, _) = sim_camera_at(d, &listen, 1, &["--gop", "25"]);
    let w = long.join().unwrap();
    assert!(w.states.first().is_some_and(|s| s == "offline"), "{:?}", w.states);
    assert_eq!(w.states.last().map(String::as_str), Some("online"), "{:?}", w.states);
    // Before the outage ~2 s, after it the rest: frames flowed again.
    assert!(w.fragments >= 25 * 6, "{w:?}");

    // Live HLS, read by ffprobe with the bearer token.
    if prerequisite(have_program("ffprobe"), "ffprobe (Debian package ffmpeg)") {
        let o = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-headers"])
            .arg(format!("Authorization: Bearer {token}\r\n"))
            .args(["-show_entries", "stream=codec_name,width", "-of", "json"])
            .arg(format!("{}/api/v1/channels/1/live.m3u8", nvr.base))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("h264") && out.contains("640"),
            "{out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let p = http_anonymous("GET", &format!("{}/api/v1/channels/1/live.m3u8", nvr.base), &[], b"").unwrap();
    assert_eq!(p.status, 401, "live HLS needs a login or token");

    // Another site's page cannot open the socket with the user's cookie.
    let status = raw_upgrade(&nvr.base, &token, Some("https://evil.example"));
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    let status = raw_upgrade(&nvr.base, &token, Some(&nvr.base));
    assert!(status.starts_with("HTTP/1.1 101"), "the NVR's own page may: {status}");
    let r = http_get(&format!("{}/api/v1/channels/1/live.m3u8?stream=hd", nvr.base)).unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("stream"));

    // Watching is audited: who, which channel and stream, and for how long.
    let audit = http_get(&format!("{}/api/v1/audit?action=live_view", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    let text = audit.to_string();
    assert!(
        text.contains("channel 1 main") && text.contains("channel 1 sub"),
        "{text}"
    );
    assert!(text.contains("ended by the viewer after"), "{text}");
}
