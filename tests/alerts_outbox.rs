//! The alert outbox with real peers: an alert queued while the mail server
//! is down survives a SIGKILL of the NVR and arrives exactly once when the
//! server comes up; a webhook that refuses is given up after `retry_for`
//! with a `delivery_failed` event while recording goes on; a stuck mail
//! server does not delay another action; the signed snapshot link shows
//! the event's first frame without a login; `tandem alert test` says what
//! happened.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request a webhook listener received: when, and its JSON body.
type Hooks = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

/// A webhook receiver: records each request body, answers 200.
fn webhook() -> (u16, Hooks) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Hooks = Arc::default();
    let got2 = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut len = 0;
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                got2.lock().unwrap().push((Instant::now(), v));
            }
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

/// A port where nothing listens (connections are refused).
fn refused_port() -> u16 {
    free_port()
}

/// A TCP server that accepts and never says a word (a hung SMTP server).
fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

fn have_aiosmtpd() -> bool {
    prerequisite(
        Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success()),
        "aiosmtpd (Debian package python3-aiosmtpd)",
    )
}

/// aiosmtpd on `port`, appending each message to `out`.
fn smtp_sink(dir: &Path, port: u16, out: &Path) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script).arg(port.to_string()).arg(out).stdout(Stdio::piped());
    let mut p = spawn("smtp-sink", &mut cmd, dir);
    let mut line = String::new();
    BufReader::new(p.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "smtp sink: {}", p.stderr());
    p
}

fn trigger(base: &str, body: &str) {
    let r = http_request(
        "POST",
        &format!("{base}/api/v1/channels/1/events"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "trigger: {}", String::from_utf8_lossy(&r.body));
}

fn action(base: &str, name: &str) -> serde_json::Value {
    let list = http_get(&format!("{base}/api/v1/actions")).unwrap().json().unwrap();
    list["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no action {name} in {list}"))
}

fn outbox(base: &str, name: &str) -> Vec<serde_json::Value> {
    let r = http_get(&format!("{base}/api/v1/actions/{name}/outbox")).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json().unwrap()["rows"].as_array().cloned().unwrap_or_default()
}

fn store_config(data: &Path, extra: &str) -> String {
    format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n{extra}",
        data.display()
    )
}

#[test]
fn an_alert_queued_while_the_mail_server_is_down_survives_a_crash_and_arrives_once() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sport = free_port();
    let cfg = store_config(
        &dir.path().join("data"),
        &format!(
            r#"
[[channel]]
number = 1
[[action]]
name = "mail"
type = "email"
smtp = "smtp://127.0.0.1:{sport}"
tls = "none"
from = "nvr@example.com"
to = ["guard@example.com"]
events = ["door"]
snapshot = false
"#
        ),
    );
    let mut n = nvr(dir.path(), "nvr", &cfg);
    trigger(&n.base, r#"{"type": "door", "action": "start"}"#);
    // Queued before the first attempt, which fails: the server is down.
    wait_for(Duration::from_secs(10), "a failed attempt on the queued alert", || {
        outbox(&n.base, "mail")
            .first()
            .is_some_and(|r| r["state"] == "pending" && r["attempts"].as_u64() >= Some(1))
    });
    let row = outbox(&n.base, "mail")[0].clone();
    assert!(row["last_error"].is_string(), "{row}");
    assert_eq!(action(&n.base, "mail")["pending"], 1);
    // The NVR dies; the mail server comes up; the NVR restarts.
    n.proc.kill();
    let mail = dir.path().join("mail.txt");
    let _smtp = smtp_sink(dir.path(), sport, &mail);
    let port: u16 = n.base.rsplit(':').next().unwrap().parse().unwrap();
    let n = start_nvr(dir.path(), "nvr-again", &n.config, port);
    wait_for(Duration::from_secs(30), "the alert delivered after the restart", || {
        outbox(&n.base, "mail")
            .first()
            .is_some_and(|r| r["state"] == "delivered")
    });
    // Nothing more arrives later: exactly once.
    std::thread::sleep(Duration::from_secs(3));
    let text = std::fs::read_to_string(&mail).unwrap();
    assert_eq!(text.matches("MAIL FROM").count(), 1, "{text}");
    assert!(text.contains("door started"), "{text}");
    let rows = outbox(&n.base, "mail");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], row["id"]);
    assert_eq!(rows[0]["message_id"], row["message_id"]);
    let a = action(&n.base, "mail");
    assert_eq!(
        (a["pending"].as_i64(), a["delivered"].as_u64()),
        (Some(0), Some(1)),
        "{a}"
    );
    assert!(a["last_delivered"].is_string(), "{a}");
}

#[test]
fn a_webhook_that_refuses_is_given_up_with_an_event_and_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "10", "--gop", "10"]);
    let (wport, hooks) = webhook();
    let dead = refused_port();
    let cfg = store_config(
        &dir.path().join("data"),
        &format!(
            r#"
[[network_camera]]
name = "lobby"
url = "{url}"
[[channel]]
number = 1
camera = "lobby"
[[action]]
name = "refused"
type = "webhook"
url = "http://127.0.0.1:{dead}/hook"
events = ["door"]
retry_for = "3s"
[[action]]
name = "watch"
type = "webhook"
url = "http://127.0.0.1:{wport}/hook"
events = ["delivery_failed"]
min_interval = "0s"
"#,
            url = urls[0]
        ),
    );
    let n = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "recording", || frames_written(&n.base, 1) > 10);
    trigger(&n.base, r#"{"type": "door", "action": "start"}"#);
    wait_for(Duration::from_secs(15), "the refused webhook given up", || {
        action(&n.base, "refused")["failed"] == 1
    });
    let before = frames_written(&n.base, 1);
    let a = action(&n.base, "refused");
    assert!(a["retries"].as_u64() >= Some(1), "{a}");
    assert_eq!(a["pending"], 0, "{a}");
    assert_eq!(a["outbox"]["failed"], 1, "{a}");
    assert!(a["last_error"].as_str().is_some_and(|e| e.contains("gave up")), "{a}");
    let rows = outbox(&n.base, "refused");
    assert_eq!(rows[0]["state"], "failed");
    // The failure is an event of the alert's channel, listed like any other…
    let url = format!("{}/api/v1/events?type=delivery_failed", n.base);
    let mut events = Vec::new();
    wait_for(Duration::from_secs(5), "the delivery_failed event", || {
        events = http_get(&url).unwrap().json().unwrap()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        !events.is_empty()
    });
    assert_eq!(events.len(), 1, "{events:?}");
    let details = &events[0]["details"];
    assert_eq!(details["action"], "refused", "{events:?}");
    assert_eq!(details["message_id"], rows[0]["message_id"]);
    assert_eq!(events[0]["channel"], 1, "{events:?}");
    // … announced to the other actions that want it.
    wait_for(Duration::from_secs(10), "delivery_failed announced", || {
        hooks
            .lock()
            .unwrap()
            .iter()
            .any(|(_, j)| j["type"] == "delivery_failed")
    });
    // Recording was not held up.
    wait_for(Duration::from_secs(10), "more frames", || {
        frames_written(&n.base, 1) > before + 10
    });
}

#[test]
fn a_stuck_mail_server_does_not_delay_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (wport, hooks) = webhook();
    let stuck = silent_server();
    let cfg = store_config(
        &dir.path().join("data"),
        &format!(
            r#"
[[channel]]
number = 1
[[action]]
name = "stuck"
type = "email"
smtp = "smtp://127.0.0.1:{stuck}"
tls = "none"
from = "nvr@example.com"
to = ["guard@example.com"]
min_interval = "0s"
[[action]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{wport}/hook"
events = ["door"]
min_interval = "0s"
"#
        ),
    );
    let n = nvr(dir.path(), "nvr", &cfg);
    let mut latencies = Vec::new();
    for i in 0..8 {
        let sent = Instant::now();
        trigger(
            &n.base,
            &format!(r#"{{"type": "door", "action": "pulse", "duration": 0.1, "source": "s{i}"}}"#),
        );
        wait_for(Duration::from_secs(5), "the webhook", || {
            hooks.lock().unwrap().iter().any(|(_, j)| {
                j["type"] == "door" && j["phase"] == "start" && j["details"]["source"] == format!("http:s{i}")
            })
        });
        let got = hooks
            .lock()
            .unwrap()
            .iter()
            .find(|(_, j)| j["phase"] == "start" && j["details"]["source"] == format!("http:s{i}"))
            .map(|(t, _)| *t)
            .unwrap();
        latencies.push(got.duration_since(sent));
        std::thread::sleep(Duration::from_millis(200));
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    println!(
        "BENCH alert latency (trigger → webhook received, loopback, beside a hung SMTP action): p50 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    assert!(max <= Duration::from_secs(1), "{latencies:?}");
    // The stuck action is still trying its own messages.
    let a = action(&n.base, "stuck");
    assert!(a["pending"].as_i64() >= Some(1), "{a}");
}

/// The RGB pixels ffmpeg decodes from `input` (its first frame), scaled to `w`×`h`.
fn rgb(input: &Path, w: u32, h: u32) -> Vec<u8> {
    rgb_nth(input, w, h, 0)
}

/// The RGB pixels of frame `n` of `input`, scaled to `w`×`h`.
fn rgb_nth(input: &Path, w: u32, h: u32, n: u32) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(input)
        .args([
            "-frames:v",
            "1",
            "-vf",
            &format!("select=eq(n\\,{n}),scale={w}:{h}"),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ffmpeg {}: {}",
        input.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout.len(), (w * h * 3) as usize, "{}", input.display());
    o.stdout
}

fn size(input: &Path) -> (u32, u32) {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=width,height", "-of", "json"])
        .arg(input)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffprobe: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["streams"][0];
    (
        s["width"].as_u64().unwrap() as u32,
        s["height"].as_u64().unwrap() as u32,
    )
}

#[test]
fn the_signed_snapshot_link_shows_the_events_first_frame_without_a_login() {
    if !prerequisite(have_program("ffmpeg"), "ffmpeg (Debian package ffmpeg)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "10", "--gop", "10"]);
    let (wport, hooks) = webhook();
    let cfg = store_config(
        &dir.path().join("data"),
        &format!(
            r#"
[[network_camera]]
name = "lobby"
url = "{url}"
[[channel]]
number = 1
name = "Lobby"
camera = "lobby"
[[action]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{wport}/hook"
events = ["door"]
snapshot_width = 320
"#,
            url = urls[0]
        ),
    );
    let n = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "recording", || frames_written(&n.base, 1) > 20);
    trigger(&n.base, r#"{"type": "door", "action": "start"}"#);
    wait_for(Duration::from_secs(10), "the webhook", || {
        !hooks.lock().unwrap().is_empty()
    });
    let msg = hooks.lock().unwrap()[0].1.clone();
    assert_eq!(msg["channel_name"], "Lobby", "{msg}");
    let link = msg["snapshot_link"]
        .as_str()
        .unwrap_or_else(|| panic!("no link in {msg}"))
        .to_string();
    assert!(link.starts_with(&format!("{}/api/v1/events/", n.base)), "{link}");
    assert!(link.ends_with("&width=320"), "{link}");
    // The link opens the picture with no token; the key frame may take a
    // moment to be stored after the event's start.
    let mut pic = None;
    wait_for(Duration::from_secs(10), "the picture", || {
        let r = http_anonymous("GET", &link, &[], b"").unwrap();
        let ok = r.status == 200;
        if ok {
            pic = Some(r);
        }
        ok
    });
    let pic = pic.unwrap();
    assert_eq!(pic.header("content-type"), Some("image/jpeg"));
    let frame_time = pic.header("x-tandem-frame-time").unwrap().to_string();
    let jpg = dir.path().join("snap.jpg");
    std::fs::write(&jpg, &pic.body).unwrap();
    let (w, h) = size(&jpg);
    assert_eq!(w, 320, "the action's snapshot_width");
    // An altered link is refused, and says why.
    let at = link.find("sig=").unwrap() + 4;
    let flipped = if &link[at..at + 1] == "0" { "1" } else { "0" };
    let bad_sig = format!("{}{flipped}{}", &link[..at], &link[at + 1..]);
    let r = http_anonymous("GET", &bad_sig, &[], b"").unwrap();
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("signature"));
    let (path, query) = link.split_once('?').unwrap();
    let other = path.replace("/events/", "/events/9");
    let r = http_anonymous("GET", &format!("{other}?{query}"), &[], b"").unwrap();
    assert_eq!(r.status, 403, "another event's picture with this signature");
    let r = http_anonymous("GET", path, &[], b"").unwrap();
    assert_eq!(r.status, 401, "no signature, no token");
    // The picture is the recording's frame at that time: export from the
    // key frame on, decode its first frame at the same size and compare.
    let start = tandem::time::Time90k::parse_rfc3339(&frame_time).unwrap();
    let end = start + 3 * 90_000;
    wait_for(Duration::from_secs(10), "footage after the key frame", || {
        let now = tandem::time::Time90k::parse_rfc3339(&rfc3339_offset(0.0)).unwrap();
        now > end + 90_000
    });
    let mp4 = dir.path().join("event.mp4");
    export("server", &n.base, 1, &start.to_rfc3339(), &end.to_rfc3339(), &mp4);
    let want = rgb(&mp4, w, h);
    let got = rgb(&jpg, w, h);
    let mad = |x: &[u8], y: &[u8]| {
        x.iter()
            .zip(y)
            .map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as u64)
            .sum::<u64>() as f64
            / x.len() as f64
    };
    let same = mad(&want, &got);
    // The scene moves: half a second later the frame differs more, so the
    // bound tells the right frame from a wrong one.
    let later = mad(&rgb_nth(&mp4, w, h, 5), &got);
    println!(
        "snapshot vs ffmpeg-decoded frame at {frame_time}: mean absolute difference {same:.2} of 255 \
         ({w}x{h}); vs the frame 0.5 s later {later:.2}"
    );
    assert!(same < 8.0, "mean absolute difference {same:.2}");
    assert!(
        same < later,
        "the picture matches its frame ({same:.2}) better than a later one ({later:.2})"
    );
    // The same picture is the API's, for a logged-in viewer.
    let r = http_get(&format!("{path}?width=320")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pic.body, "one cached picture for links and the web client");
    // The picture's cost: CPU of the NVR process per decoded picture (each
    // width is decoded once), less what recording alone takes meanwhile.
    let pid = n.proc.child.id();
    let t0 = (Instant::now(), cpu_ms(pid));
    let widths: Vec<u32> = (0..10).map(|i| 330 + 10 * i).collect();
    for w in &widths {
        let r = http_get(&format!("{path}?width={w}")).unwrap();
        assert_eq!(r.status, 200);
    }
    let (busy, used) = (t0.0.elapsed(), cpu_ms(pid) - t0.1);
    let idle0 = cpu_ms(pid);
    std::thread::sleep(busy);
    let idle = cpu_ms(pid) - idle0;
    let per = (used - idle).max(0.0) / widths.len() as f64;
    println!(
        "BENCH snapshot cost: {per:.1} CPU ms per event picture ({} decodes in {:.0} ms wall, {used:.0} CPU ms, {idle:.0} CPU ms of recording alone)",
        widths.len(),
        busy.as_secs_f64() * 1000.0
    );
    assert!(per < 500.0, "{per:.1} CPU ms per picture");
}

/// CPU time (user + system) the process `pid` has used, in ms.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1000.0 / hz
}

#[test]
fn tandem_alert_test_says_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let (wport, hooks) = webhook();
    let dead = refused_port();
    let cfg = store_config(
        &dir.path().join("data"),
        &format!(
            r#"
[[channel]]
number = 1
[[action]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{wport}/hook"
[[action]]
name = "dead"
type = "webhook"
url = "http://127.0.0.1:{dead}/hook"
"#
        ),
    );
    let n = nvr(dir.path(), "nvr", &cfg);
    let token = token_for(&n.base).unwrap();
    let cfg_path = n.config.to_str().unwrap().to_string();
    let o = run_tandem(&["alert", "test", "hook", "--server", &n.base, "--token", &token]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("hook: delivered"));
    wait_for(Duration::from_secs(5), "the test message", || {
        hooks.lock().unwrap().iter().any(|(_, j)| j["type"] == "test")
    });
    let o = run_tandem(&["alert", "test", "dead", "--server", &n.base, "--token", &token]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dead: not delivered") && err.contains("refused"), "{err}");
    // From the configuration file, without the server.
    let o = run_tandem(&["alert", "test", "hook", "--config", &cfg_path]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, j)| j["type"] == "test")
            .count(),
        2
    );
    let o = run_tandem(&["alert", "test", "nobody", "--config", &cfg_path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no action named `nobody`"));
    // The API itself: 502 with the error, 404 for an unknown action, and
    // the test went past the outbox.
    let r = http_request("POST", &format!("{}/api/v1/actions/dead/test", n.base), &[], b"").unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.json().unwrap()["retryable"], true);
    let r = http_request("POST", &format!("{}/api/v1/actions/nobody/test", n.base), &[], b"").unwrap();
    assert_eq!(r.status, 404);
    assert!(outbox(&n.base, "hook").is_empty());
}

/// p50 and max of `d`, as printed by the latency benchmarks.
fn p50_max(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    (ms(d[d.len() / 2]), ms(*d.last().unwrap()))
}

/// Benchmark case: event (trigger answered) → message received, through
/// the outbox, for e-mail (aiosmtpd) and a webhook on loopback; ≤ 1 s each.
#[test]
fn alert_latency_by_mail_and_webhook() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (wport, hooks) = webhook();
    let sport = free_port();
    let mail = dir.path().join("mail.txt");
    let _smtp = smtp_sink(dir.path(), sport, &mail);
    let cfg = store_config(
        &dir.path().join("data"),
        &format!(
            r#"
[[channel]]
number = 1
[[action]]
name = "mail"
type = "email"
smtp = "smtp://127.0.0.1:{sport}"
tls = "none"
from = "nvr@example.com"
to = ["guard@example.com"]
events = ["door"]
min_interval = "0s"
snapshot = false
[[action]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{wport}/hook"
events = ["door"]
min_interval = "0s"
"#
        ),
    );
    let n = nvr(dir.path(), "nvr", &cfg);
    let (mut by_mail, mut by_hook) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let sent = Instant::now();
        trigger(
            &n.base,
            &format!(r#"{{"type": "door", "action": "pulse", "duration": 0.1, "source": "m{i}"}}"#),
        );
        let source = format!("http:m{i}");
        let (mut mail_at, mut hook_at) = (None, None);
        wait_for(Duration::from_secs(5), "the mail and the webhook", || {
            if hook_at.is_none() {
                hook_at = hooks
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(_, j)| j["phase"] == "start" && j["details"]["source"] == source)
                    .map(|(t, _)| t.duration_since(sent));
            }
            // A mail counts when the sink has written it (start and end:
            // 2 per pulse); polled, so its latency is an upper bound.
            if mail_at.is_none() && std::fs::read_to_string(&mail).is_ok_and(|t| t.matches("MAIL FROM").count() > 2 * i)
            {
                mail_at = Some(sent.elapsed());
            }
            mail_at.is_some() && hook_at.is_some()
        });
        by_mail.push(mail_at.unwrap());
        by_hook.push(hook_at.unwrap());
        // Let the pulse's end go out too before the next.
        std::thread::sleep(Duration::from_millis(400));
    }
    let (mp50, mmax) = p50_max(by_mail.clone());
    let (hp50, hmax) = p50_max(by_hook.clone());
    println!(
        "BENCH alert latency, e-mail (aiosmtpd, loopback): p50 {mp50:.1} ms, max {mmax:.1} ms (polled every 100 ms)"
    );
    println!("BENCH alert latency, webhook (loopback): p50 {hp50:.1} ms, max {hmax:.1} ms");
    assert!(mmax <= 1000.0, "{by_mail:?}");
    assert!(hmax <= 1000.0, "{by_hook:?}");
}
