//! Recording never waits on clients: with two stamped simulated cameras
//! recording on two channels, under a 1,024-descriptor limit and a 512-MiB
//! address-space limit, a trigger flood, a thousand idle half-sent
//! connections, unauthenticated and oversized imports, concurrent pieces of
//! one upload and a large import all leave `audit` at 0 frames lost, and each
//! attack gets the answer it deserves (429, timeouts, 401, 409, 422).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tandem::lab::attack::{self, Plan, SegmentSource};
use tandem::time::Time90k;

const TOKEN: &str = "hostile-http-peer-token";

/// Starts `tandem serve` under prlimit (descriptors and address space) with
/// two channels of the given cameras; returns the NVR, its port and store.
fn limited_nvr(dir: &Path, urls: &[String]) -> (Nvr, u16, std::path::PathBuf) {
    let port = free_port();
    let store = dir.join("store");
    let cfg = format!(
        r#"[storage]
dir = "{}"
min_free = "64 MiB"
segment_duration = "10s"
[http]
listen = "127.0.0.1:{port}"
[failover]
peer_token = "{TOKEN}"
[[network_camera]]
name = "c1"
url = "{}"
[[network_camera]]
name = "c2"
url = "{}"
[[channel]]
number = 1
camera = "c1"
[[channel]]
number = 2
camera = "c2"
"#,
        store.display(),
        urls[0],
        urls[1]
    );
    let path = dir.join("nvr.toml");
    std::fs::write(&path, cfg).unwrap();
    let n = start_nvr_under(
        dir,
        "nvr",
        &path,
        port,
        &["prlimit", "--nofile=1024:1024", "--as=536870912"],
    );
    let base = n.base.clone();
    wait_for(Duration::from_secs(30), "both channels recording", || {
        frames_written(&base, 1) > 25 && frames_written(&base, 2) > 25
    });
    (n, port, store)
}

fn lost(store: &Path, ch: u32, start: &str, end: &str) -> u64 {
    let a = audit_json(&[
        "--data",
        store.to_str().unwrap(),
        "--channel",
        &ch.to_string(),
        "--start",
        start,
        "--end",
        end,
    ]);
    assert!(
        a["frames_found"].as_u64().unwrap() > 0,
        "channel {ch} recorded nothing: {a}"
    );
    a["frames_lost"].as_u64().unwrap()
}

fn rss_mib(pid: u32) -> u64 {
    // prlimit execs tandem in place: the pid is the NVR's.
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn ready() -> bool {
    prerequisite(
        have_program("prlimit"),
        "prlimit (util-linux) to limit the NVR's descriptors and memory",
    )
}

#[test]
fn trigger_flood_and_idle_connections_lose_no_frame() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 2, &[]);
    let (mut nvr, port, store) = limited_nvr(dir.path(), &urls);
    let t0 = rfc3339_offset(-1.0);

    // 16 clients, each request opening a new event from a new source.
    let flood = attack::run(&Plan {
        target: format!("127.0.0.1:{port}").parse().unwrap(),
        channels: vec![1, 2],
        trigger_rate: 2000,
        trigger_clients: 16,
        duration: Duration::from_secs(10),
        slow_connections: 0,
        import_bytes: 0,
        import_channel: 1,
        peer_token: None,
        bearer: token_for(&nvr.base),
    });
    assert!(flood.triggers_sent() > 2000, "the flood ran: {flood:?}");
    let accepted = flood.triggers_accepted();
    let refused = flood.triggers.get("429").copied().unwrap_or(0);
    assert!(refused > accepted, "a flood is mostly refused: {flood:?}");
    // Two channels at 20/s (burst 40) for ~10 s, whatever the number of clients.
    assert!(
        accepted <= 2 * (20 * 11 + 40),
        "accepted {accepted}: the channel rate holds"
    );
    assert!(
        accepted >= 2 * 20 * 5,
        "accepted {accepted}: triggers within the rate still work"
    );
    let r = http_get(&format!("{}/api/v1/store", nvr.base)).unwrap();
    let r = r.json().unwrap();
    assert_eq!(r["writer"]["events_dropped"], 0, "{r}");

    // 1,100 idle, half-sent connections for 15 s: the NVR serves others, closes the idle.
    let slow = std::thread::spawn(move || {
        attack::run(&Plan {
            target: format!("127.0.0.1:{port}").parse().unwrap(),
            channels: vec![],
            trigger_rate: 0,
            trigger_clients: 0,
            duration: Duration::from_secs(15),
            slow_connections: 1100,
            import_bytes: 0,
            import_channel: 1,
            peer_token: None,
            bearer: None,
        })
    });
    std::thread::sleep(Duration::from_secs(12));
    let auth = format!("Bearer {}", token_for(&nvr.base).unwrap());
    let st = tandem::httpc::request_with_timeout(
        "GET",
        &format!("{}/api/v1/status", nvr.base),
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(12),
    );
    let slow = slow.join().unwrap();
    // The NVR takes up to its cap; the kernel's accept queue holds a few more;
    // the rest cannot even connect. None of them costs the recording.
    let cap = http_get(&format!("{}/api/v1/store", nvr.base)).unwrap().json().unwrap()["http"]["max_connections"]
        .as_u64()
        .unwrap();
    assert!(cap < 1024 - 64, "the cap leaves descriptors for recording: {cap}");
    assert!(slow.slow_opened >= cap, "{slow:?}");
    assert!(
        slow.slow_closed_by_nvr >= 500,
        "idle connections are closed by the header deadline: {slow:?}"
    );
    assert!(
        st.is_ok_and(|r| r.status == 200),
        "the API answered during the idle flood"
    );

    std::thread::sleep(Duration::from_secs(3));
    let t1 = rfc3339_offset(-2.0);
    assert!(nvr.proc.child.try_wait().unwrap().is_none(), "the NVR is up");
    let stats = http_get(&format!("{}/api/v1/store", nvr.base)).unwrap().json().unwrap();
    assert!(stats["http"]["timed_out"].as_u64().unwrap() > 0, "{stats}");
    for ch in [1, 2] {
        assert_eq!(
            lost(&store, ch, &t0, &t1),
            0,
            "channel {ch} lost frames; NVR log: {}",
            nvr.proc.stderr()
        );
        assert_ne!(channel_view(&nvr.base, ch)["recording"]["state"], "no_file_descriptors");
    }
    let log = nvr.proc.stderr();
    assert!(
        !log.contains("disk_full"),
        "descriptor trouble is never called a full disk"
    );
    let stored = http_get(&format!("{}/api/v1/events?type=door", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    assert!(
        stored["events"].as_array().unwrap().len() as u64 <= accepted,
        "only accepted triggers were stored"
    );
    nvr.proc.terminate();
}

/// Sends a request head and `body_part` bytes of a body on a raw socket.
fn raw(port: u16, head: &str, body_part: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body_part);
    s
}

fn status_of(s: &mut TcpStream) -> u16 {
    let mut b = [0u8; 512];
    let n = s.read(&mut b).unwrap_or(0);
    String::from_utf8_lossy(&b[..n])
        .split(' ')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn put(base: &str, origin: &str, seg: i64, offset: u64, body: &[u8]) -> u16 {
    http_request(
        "PUT",
        &format!("{base}/api/v1/import/{origin}/{seg}?offset={offset}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        body,
    )
    .unwrap()
    .status
}

fn complete(base: &str, origin: &str, seg: i64, len: u64) -> tandem::httpc::Response {
    http_request(
        "POST",
        &format!("{base}/api/v1/import/{origin}/{seg}/complete?channel=1&length={len}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .unwrap()
}

fn whole(src: &mut SegmentSource) -> Vec<u8> {
    src.piece(usize::MAX)
}

#[test]
fn hostile_imports_cost_the_sender_not_the_recording() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 2, &[]);
    let (mut nvr, port, store) = limited_nvr(dir.path(), &urls);
    let base = nvr.base.clone();
    let pid = nvr.proc.child.id();
    let t0 = rfc3339_offset(-1.0);
    let now = Time90k::from_system(std::time::SystemTime::now());

    // 200 unauthenticated 8-MiB pieces: refused from the headers, nothing buffered.
    let head = |seg: usize| {
        format!("PUT /api/v1/import/ab/{seg}?offset=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n")
    };
    let mut socks: Vec<TcpStream> = (0..200).map(|i| raw(port, &head(i), &[0u8; 65536])).collect();
    let unauthorized = socks.iter_mut().map(status_of).filter(|&s| s == 401).count();
    assert_eq!(unauthorized, 200);
    drop(socks);
    assert!(
        rss_mib(pid) < 200,
        "memory after the unauthenticated flood: {} MiB",
        rss_mib(pid)
    );
    assert!(!dir.path().join("store/import").exists() || std::fs::read_dir(store.join("import")).unwrap().count() == 0);

    // Two pieces at the same offset at once: one is written, the other refused.
    let mut src = SegmentSource::new(1, now + -600 * 90_000, 50, 20_000);
    let file = whole(&mut src);
    let half = file.len() / 2;
    let auth_head = format!(
        "PUT /api/v1/import/cc/1?offset=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {half}\r\n\r\n"
    );
    let mut first = raw(port, &auth_head, &file[..half / 2]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        put(&base, "cc", 1, 0, &file[..half]),
        409,
        "a concurrent piece is refused"
    );
    first.write_all(&file[half / 2..half]).unwrap();
    assert_eq!(status_of(&mut first), 200);
    assert_eq!(put(&base, "cc", 1, half as u64, &file[half..]), 200);
    let r = complete(&base, "cc", 1, file.len() as u64);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["frames_kept"], 50);

    // A sender that lost track can start over.
    assert_eq!(put(&base, "cc", 2, 0, &file[..1000]), 200);
    let del = http_request(
        "DELETE",
        &format!("{base}/api/v1/import/cc/2"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .unwrap();
    assert_eq!(del.status, 204);
    assert_eq!(
        put(&base, "cc", 2, 0, &file[..1000]),
        200,
        "offset 0 again after the reset"
    );

    // Footage from the future, or from before 2000, is refused and not kept.
    for (seg, start) in [(3, now + 3600 * 90_000), (4, Time90k(-11_000_000_000 * 90_000))] {
        let body = whole(&mut SegmentSource::new(seg, start, 10, 1000));
        assert_eq!(put(&base, "dd", seg, 0, &body), 200);
        let r = complete(&base, "dd", seg, body.len() as u64);
        assert_eq!(r.status, 422, "segment {seg}: {}", String::from_utf8_lossy(&r.body));
        assert!(
            !store.join(format!("import/dd-{seg}.part")).exists(),
            "a refused upload is removed"
        );
    }

    // A piece larger than allowed is refused before it is read.
    let mut big = raw(
        port,
        &format!("PUT /api/v1/import/ee/1?offset=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1073741824\r\n\r\n"),
        &[0u8; 1024],
    );
    assert_eq!(status_of(&mut big), 413);

    // A large import (300 MB) merges beside the recording.
    let started = Instant::now();
    let imp = attack::run(&Plan {
        target: format!("127.0.0.1:{port}").parse().unwrap(),
        channels: vec![],
        trigger_rate: 0,
        trigger_clients: 0,
        duration: Duration::from_secs(1),
        slow_connections: 0,
        import_bytes: 300 << 20,
        import_channel: 1,
        peer_token: Some(TOKEN.into()),
        bearer: token_for(&nvr.base),
    });
    assert_eq!(imp.import_status, Some(200), "{imp:?}");
    assert!(rss_mib(pid) < 300, "memory after a 300-MB import: {} MiB", rss_mib(pid));
    eprintln!("300-MB import merged in {:.1} s", started.elapsed().as_secs_f64());

    std::thread::sleep(Duration::from_secs(2));
    let t1 = rfc3339_offset(-2.0);
    for ch in [1, 2] {
        assert_eq!(
            lost(&store, ch, &t0, &t1),
            0,
            "channel {ch} lost frames; NVR log: {}",
            nvr.proc.stderr()
        );
    }
    assert!(nvr.proc.child.try_wait().unwrap().is_none(), "the NVR is up");
    nvr.proc.terminate();
}
