//! The web client in a real headless Chromium (Debian's chromium and
//! chromium-driver over WebDriver) against a real `tandem serve` recording two
//! simulated cameras — issue 9's browser tests, in one NVR to keep the run
//! short: log in through the form (a wrong password shows the server's error,
//! a viewer sees only their channel); the live grid plays both channels
//! within 3 s and shows its latency; a camera stopped for 20 s turns its tile
//! offline and plays again when it returns, without a reload; 20 WebSocket
//! viewers share the one camera session; the outage is drawn as a gap at the
//! right place and a click after it plays footage stamped with the clicked
//! time; an event in the list plays from its pre-roll; the range download is
//! a clip ffprobe reads at the requested length; a 390×844 phone scrolls
//! nothing sideways; and the console stays clean throughout.
//!
//! Screenshots go to the test's directory, and to `docs/` when
//! `TANDEM_SCREENSHOTS=1`.

mod common;
use common::browser::{assert_clean_console, browser, chromium_available, sessions_in_log, sim_sessions, Browser};
use common::*;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tandem::time::Time90k;

const VIEWER: &str = "watcher";
const VIEWER_PASSWORD: &str = "watcher-password-0123";
/// The outage the playback test looks for on the timeline.
const OUTAGE: Duration = Duration::from_secs(20);
/// Small, quick cameras; a key frame every 0.4 s so a clip starting at any
/// time opens within 0.4 s of it.
const CAMERA: &[&str] = &["--fps", "25", "--gop", "10", "--width", "640", "--height", "360"];

/// What Chromium logs for the 401 a wrong password answers (on purpose).
const EXPECTED_401: &[&str] = &["/api/v1/login - Failed to load resource: the server responded with a status of 401"];

struct Site {
    dir: tempfile::TempDir,
    cam_a: Proc,
    cam_a_listen: String,
    cam_b: Proc,
    nvr: Nvr,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let cam_a_listen = format!("127.0.0.1:{}", free_port());
    let (cam_a, a) = sim_camera_at(dir.path(), &cam_a_listen, 1, &[CAMERA, &["--first-id", "1"]].concat());
    let (cam_b, b) = sim_camera(dir.path(), 1, &[CAMERA, &["--first-id", "2"]].concat());
    let data = dir.path().join("data");
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = 0\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"gate\"\nurl = \"{}\"\n[[network_camera]]\nname = \"yard\"\nurl = \"{}\"\n\
         [[channel]]\nnumber = 1\ncamera = \"gate\"\n[[channel]]\nnumber = 2\ncamera = \"yard\"\n",
        data.display(),
        a[0],
        b[0]
    );
    let nvr = common::nvr(dir.path(), "nvr", &cfg);
    let o = std::process::Command::new(tandem())
        .args(["user", "add", VIEWER, "--role", "viewer", "--channels", "2", "--data"])
        .arg(&data)
        .args(["--password-env", "PW"])
        .env("PW", VIEWER_PASSWORD)
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "user add: {}", String::from_utf8_lossy(&o.stderr));
    for ch in [1, 2] {
        wait_for(Duration::from_secs(20), "both channels recording", || {
            frames_written(&nvr.base, ch) > 0
        });
    }
    Site {
        dir,
        cam_a,
        cam_a_listen,
        cam_b,
        nvr,
    }
}

fn now_ms() -> i64 {
    now_unix_us() / 1000
}

fn iso(ms: i64) -> String {
    Time90k::from_unix_micros(ms * 1000).to_rfc3339()
}

fn ms_of(rfc3339: &str) -> i64 {
    Time90k::parse_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("`{rfc3339}`: {e}"))
        .as_unix_micros()
        / 1000
}

fn query(s: &str) -> String {
    s.replace('+', "%2B")
}

/// Fills in and submits the login form.
fn log_in(b: &Browser, base: &str, user: &str, password: &str) {
    if !b.current_url().unwrap().starts_with(base) {
        b.goto(&format!("{base}/")).unwrap();
    }
    b.wait_for("#login:not([hidden]) input[name=username]", Duration::from_secs(10))
        .unwrap();
    for (field, text) in [("username", user), ("password", password)] {
        let e = b.find(&format!("#login input[name={field}]")).unwrap();
        b.clear(&e).unwrap();
        b.send_keys(&e, text).unwrap();
    }
    b.click(&b.find("#login button").unwrap()).unwrap();
}

/// Each live tile's channel, state, latency and its video's progress.
fn tiles(b: &Browser) -> Vec<Value> {
    let v = b
        .execute(
            "return [...document.querySelectorAll('#live-grid .tile')].map(t => {
               const v = t.querySelector('video');
               const q = v ? v.getVideoPlaybackQuality() : {totalVideoFrames: 0};
               return {channel: Number(t.dataset.channel), state: t.dataset.state,
                       latency: t.dataset.latencyMs === undefined ? null : Number(t.dataset.latencyMs),
                       frames: q.totalVideoFrames, time: v ? v.currentTime : 0};
             });",
            vec![],
        )
        .unwrap();
    v.as_array().cloned().unwrap_or_default()
}

fn tile(b: &Browser, channel: u32) -> Value {
    tiles(b)
        .into_iter()
        .find(|t| t["channel"] == channel)
        .unwrap_or_else(|| panic!("no live tile for channel {channel}"))
}

/// Waits (at most `within`) until `channel`'s video shows frames past `than`.
fn advances(b: &Browser, channel: u32, than: &Value, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        let t = tile(b, channel);
        if t["frames"].as_u64() > than["frames"].as_u64() && t["time"].as_f64() > than["time"].as_f64() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_state(b: &Browser, channel: u32, state: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let t = tile(b, channel);
        if t["state"] == state {
            return;
        }
        assert!(
            start.elapsed() < within,
            "channel {channel}'s tile did not turn {state} within {within:?}: {t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `innerWidth`, `scrollWidth`: the page must not scroll sideways.
fn assert_no_sideways_scroll(b: &Browser, what: &str) {
    let v = b
        .execute("return [innerWidth, document.documentElement.scrollWidth];", vec![])
        .unwrap();
    let (inner, scroll) = (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
    assert!(scroll <= inner, "{what}: scrollWidth {scroll} > innerWidth {inner}");
}

/// Saves a screenshot in the test's directory; the two the docs show also in
/// `docs/` when `TANDEM_SCREENSHOTS=1`.
fn screenshot(b: &Browser, dir: &Path, name: &str) {
    let png = b.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(name), &png).unwrap();
    let for_docs = ["screenshot-desktop.png", "screenshot-phone.png"].contains(&name);
    if for_docs && std::env::var("TANDEM_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs").join(name);
        std::fs::write(&docs, &png).unwrap();
        println!("wrote {}", docs.display());
    }
}

/// The capture time stamped into the first frame of `channel`'s footage
/// from `start` (a one-second clip), Unix ms.
fn stamp_at(base: &str, dir: &Path, channel: u32, start: &str) -> i64 {
    let end = iso(ms_of(start) + 1000);
    let url = format!(
        "{base}/api/v1/channels/{channel}/clip.mp4?start={}&end={}",
        query(start),
        query(&end)
    );
    let r = http_get(&url).unwrap();
    assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
    let path = dir.join(format!("at-{channel}-{}.mp4", ms_of(start)));
    std::fs::write(&path, &r.body).unwrap();
    let stamps = tandem::audit::stamps_mp4(&path).unwrap();
    let first = stamps
        .first()
        .copied()
        .flatten()
        .expect("the clip's first frame carries a stamp");
    first.capture_unix_micros / 1000
}

/// The playback view's shown time once its master video has a picture.
fn shown_time(b: &Browser, what: &str) -> i64 {
    // The page refreshes `#pb-time` every 100 ms: let a seek just made show.
    std::thread::sleep(Duration::from_millis(150));
    let v = b
        .poll(
            what,
            Duration::from_secs(15),
            "const v = document.querySelector('.pb-video video');
             const t = document.getElementById('pb-time');
             return v && v.readyState >= 2 && !v.seeking && t && t.dataset.time ? t.dataset.time : null;",
            vec![],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    ms_of(v.as_str().unwrap())
}

/// Whether the playback view's master video advances (plays).
fn playback_advances(b: &Browser) -> bool {
    let t0 = b
        .execute("return document.querySelector('.pb-video video').currentTime;", vec![])
        .unwrap();
    b.poll(
        "the playback video to advance",
        Duration::from_secs(5),
        "return document.querySelector('.pb-video video').currentTime > arguments[0];",
        vec![t0],
    )
    .is_ok()
}

#[test]
fn the_web_client_in_chromium() {
    if !chromium_available() {
        return;
    }
    let t_begin = Instant::now();
    let mut s = site();
    let base = s.nvr.base.clone();
    let dir = s.dir.path().to_path_buf();
    let desktop = browser(&dir, 1280, 800).unwrap();

    // Log in through the form: a wrong password shows the server's error.
    log_in(&desktop, &base, "ci-admin", "not-the-password");
    let error = desktop
        .poll(
            "the login error",
            Duration::from_secs(10),
            "return document.getElementById('login-error').textContent;",
            vec![],
        )
        .unwrap();
    println!("wrong password shows: {error}");
    assert_eq!(
        desktop
            .execute("return document.getElementById('login').hidden;", vec![])
            .unwrap(),
        false,
        "the form stays after a wrong password"
    );
    log_in(&desktop, &base, "ci-admin", ADMIN_PASSWORD);
    desktop
        .poll(
            "the live grid with two tiles",
            Duration::from_secs(10),
            "return location.hash.startsWith('#/live') && document.querySelectorAll('#live-grid .tile video').length === 2;",
            vec![],
        )
        .unwrap();
    assert_clean_console(&desktop, "login", EXPECTED_401);

    // The live grid: within 3 s both videos advance.
    let grid_at = Instant::now();
    let before = tiles(&desktop);
    for ch in [1, 2] {
        let t0 = before.iter().find(|t| t["channel"] == ch).unwrap().clone();
        let left = Duration::from_secs(3).saturating_sub(grid_at.elapsed());
        assert!(
            advances(&desktop, ch, &t0, left),
            "channel {ch} did not play within 3 s of the grid: {:?}",
            tile(&desktop, ch)
        );
    }
    println!(
        "both live tiles playing {:?} after the grid appeared",
        grid_at.elapsed()
    );
    desktop
        .poll(
            "the latency on both tiles",
            Duration::from_secs(10),
            "return [...document.querySelectorAll('#live-grid .tile')].every(t => t.dataset.latencyMs);",
            vec![],
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    for t in tiles(&desktop) {
        let l = t["latency"].as_f64().unwrap_or(f64::NAN);
        println!("live latency shown on channel {}: {l:.0} ms", t["channel"]);
        assert!((0.0..3000.0).contains(&l), "channel {}: latency {l} ms", t["channel"]);
        assert_eq!(t["state"], "playing");
    }
    screenshot(&desktop, &dir, "screenshot-desktop.png");
    assert_clean_console(&desktop, "live grid", &[]);

    // 20 WebSocket viewers of channel 1 (besides the grid): one camera session.
    assert_eq!(sim_sessions(&s.cam_a, 1), 1, "the recording's session");
    let token = token_for(&base).unwrap();
    let url = format!("{}/api/v1/channels/1/live?stream=main", base.replacen("http", "ws", 1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (watched, during) = rt.block_on(async {
        let viewers: Vec<_> = (0..20)
            .map(|_| {
                let (url, token) = (url.clone(), token.clone());
                tokio::spawn(async move { tandem::live::client::watch(&url, &token, Duration::from_secs(4)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = sim_sessions(&s.cam_a, 1);
        let mut watched = Vec::new();
        for v in viewers {
            watched.push(v.await.unwrap().unwrap());
        }
        (watched, during)
    });
    assert_eq!(during, 1, "20 viewers and a grid opened more camera sessions");
    assert!(
        watched.iter().all(|w| w.fragments > 10),
        "every viewer gets frames: {:?}",
        watched.iter().map(|w| w.fragments).collect::<Vec<_>>()
    );
    assert_eq!(sim_sessions(&s.cam_a, 1), 1);
    assert_eq!(sim_sessions(&s.cam_b, 1), 1);
    println!("20 WebSocket viewers: 1 camera session");

    // Camera 1 goes away: its tile says offline, the other plays on.
    desktop
        .execute("window.__sameDocument = 42; return null;", vec![])
        .unwrap();
    let t_stop = now_ms();
    s.cam_a.kill();
    wait_state(&desktop, 1, "offline", Duration::from_secs(10));
    println!(
        "channel 1 offline on its tile {} ms after the camera stopped",
        now_ms() - t_stop
    );
    let t2 = tile(&desktop, 2);
    assert!(advances(&desktop, 2, &t2, Duration::from_secs(3)), "channel 2 plays on");

    // Meanwhile, on a phone: a viewer sees only their channel, nothing scrolls sideways.
    {
        let phone = browser(&dir, 390, 844).unwrap();
        log_in(&phone, &base, VIEWER, VIEWER_PASSWORD);
        phone
            .poll(
                "the viewer's live grid",
                Duration::from_secs(10),
                "return location.hash.startsWith('#/live') && document.querySelectorAll('#live-grid .tile').length > 0;",
                vec![],
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let channels: Vec<Value> = tiles(&phone).iter().map(|t| t["channel"].clone()).collect();
        assert_eq!(channels, vec![json!(2)], "the viewer sees only channel 2");
        let t = tile(&phone, 2);
        assert!(
            advances(&phone, 2, &t, Duration::from_secs(5)),
            "the phone plays channel 2"
        );
        assert_no_sideways_scroll(&phone, "phone live grid");
        screenshot(&phone, &dir, "screenshot-phone.png");
        phone.goto(&format!("{base}/#/playback?channel=2")).unwrap();
        phone
            .poll(
                "the phone's timeline",
                Duration::from_secs(10),
                "return document.querySelectorAll('#timeline .tl-run').length > 0;",
                vec![],
            )
            .unwrap();
        let picker = phone
            .execute(
                "return [...document.querySelectorAll('.pb-channels input')].map(i => Number(i.value));",
                vec![],
            )
            .unwrap();
        assert_eq!(picker, json!([2]), "the viewer's playback offers only channel 2");
        assert_no_sideways_scroll(&phone, "phone timeline");
        screenshot(&phone, &dir, "screenshot-phone-timeline.png");
        assert_clean_console(&phone, "phone", EXPECTED_401);
    }

    // After the outage camera 1 returns; its tile plays again, no reload.
    let left = OUTAGE.saturating_sub(Duration::from_millis((now_ms() - t_stop) as u64));
    std::thread::sleep(left);
    let t_restart = now_ms();
    s.cam_a = sim_camera_at(&dir, &s.cam_a_listen, 1, &[CAMERA, &["--first-id", "1"]].concat()).0;
    wait_for(Duration::from_secs(15), "channel 1 reconnected", || {
        channel_view(&base, 1)["ingest"]["connected"] == true
    });
    let t_back = now_ms();
    println!(
        "camera 1 out for {} ms; NVR recording again {} ms after its restart",
        t_restart - t_stop,
        t_back - t_restart
    );
    wait_state(&desktop, 1, "playing", Duration::from_secs(15));
    let t1 = tile(&desktop, 1);
    assert!(
        advances(&desktop, 1, &t1, Duration::from_secs(5)),
        "channel 1 plays again"
    );
    assert_eq!(
        desktop.execute("return window.__sameDocument;", vec![]).unwrap(),
        json!(42),
        "the page was not reloaded"
    );
    assert_clean_console(&desktop, "camera outage on the live grid", &[]);

    // An event on channel 2, for the event list.
    let r = http_request(
        "POST",
        &format!("{base}/api/v1/channels/2/events"),
        &[("Content-Type", "application/json")],
        br#"{"type":"door","action":"pulse","duration":1,"source":"web-client test"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    // Footage after the gap to click on.
    std::thread::sleep(Duration::from_millis((t_back + 12000 - now_ms()).max(0) as u64));

    // Playback: the outage is a gap at the right place.
    desktop
        .goto(&format!("{base}/#/playback?channel=1&t={}", query(&iso(t_back + 4000))))
        .unwrap();
    let gaps = desktop
        .poll(
            "a gap on channel 1's timeline",
            Duration::from_secs(10),
            "const g = [...document.querySelectorAll('.tl-gap[data-channel=\"1\"]')];
             return g.length ? g.map(e => [e.dataset.start, e.dataset.end]) : null;",
            vec![],
        )
        .unwrap();
    let gaps: Vec<(i64, i64)> = gaps
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (ms_of(g[0].as_str().unwrap()), ms_of(g[1].as_str().unwrap())))
        .collect();
    let gap = gaps
        .iter()
        .copied()
        .find(|(a, b)| (a - t_stop).abs() <= 2000 && (b - t_back).abs() <= 2000)
        .unwrap_or_else(|| {
            panic!(
                "no gap within 2 s of the outage {} – {}: {:?}",
                iso(t_stop),
                iso(t_back),
                gaps.iter().map(|(a, b)| (iso(*a), iso(*b))).collect::<Vec<_>>()
            )
        });
    println!(
        "gap drawn {} – {} for the outage {} – {}",
        iso(gap.0),
        iso(gap.1),
        iso(t_stop),
        iso(t_back)
    );

    // Zoom in until the gap is wide enough to click beside with precision.
    // The zoom button zooms around the playhead, which sits 4 s after the
    // gap: early in the day (the view starts at midnight) the gap can leave
    // the view on the left, so pan as a person would to keep it in sight.
    // The page re-reads the recordings every 15 s and re-renders the
    // timeline, so the gap is found again each time (by where it starts,
    // within the test's tolerance) rather than held as one element.
    let zoom_in = desktop.find(".tl-tools button[title=\"zoom in\"]").unwrap();
    let pan_left = desktop.find(".tl-tools button[title=\"pan left\"]").unwrap();
    let pan_right = desktop.find(".tl-tools button[title=\"pan right\"]").unwrap();
    let rect_script = "const track = document.querySelector('.tl-row[data-channel=\"1\"] .tl-track');
        if (!track) return null;
        const t = track.getBoundingClientRect();
        const g = [...document.querySelectorAll('.tl-gap[data-channel=\"1\"]')]
          .find(e => Math.abs(Date.parse(e.dataset.start) - arguments[0]) <= 2000);
        if (!g) return [null, null, null, t.left, t.right];
        const r = g.getBoundingClientRect();
        return [r.left, r.width, r.top + r.height / 2, t.left, t.right];";
    let mut rect = Value::Null;
    for _ in 0..40 {
        rect = desktop
            .poll(
                "channel 1's timeline",
                Duration::from_secs(5),
                rect_script,
                vec![json!(gap.0)],
            )
            .unwrap();
        let (track_left, track_right) = (rect[3].as_f64().unwrap(), rect[4].as_f64().unwrap());
        let Some(left) = rect[0].as_f64() else {
            // Out of view: the playhead is after the gap, so it lies to the left.
            desktop.click(&pan_left).unwrap();
            continue;
        };
        let width = rect[1].as_f64().unwrap();
        // Room for the click 3 s after the gap's end.
        let after = width / (gap.1 - gap.0) as f64 * 3500.0;
        if left < track_left {
            desktop.click(&pan_left).unwrap();
        } else if left + width + after > track_right {
            desktop.click(&pan_right).unwrap();
        } else if width > 100.0 {
            break;
        } else {
            desktop.click(&zoom_in).unwrap();
        }
    }
    let (left, width, y) = (
        rect[0].as_f64().unwrap_or(0.0),
        rect[1].as_f64().unwrap_or(0.0),
        rect[2].as_f64().unwrap_or(0.0),
    );
    assert!(width > 20.0, "the gap stays too narrow to click beside: {rect}");
    let px_per_ms = width / (gap.1 - gap.0) as f64;
    let click_ms = gap.1 + 3000;
    desktop
        .click_at(left + (click_ms - gap.0) as f64 * px_per_ms, y)
        .unwrap();
    let shown = shown_time(&desktop, "a picture after the click");
    let stamp = stamp_at(&base, &dir, 1, &iso(shown));
    println!(
        "clicked {}, shown {}, camera stamp there {}",
        iso(click_ms),
        iso(shown),
        iso(stamp)
    );
    assert!(
        (shown - click_ms).abs() <= 1000,
        "shown time {} for a click at {}",
        iso(shown),
        iso(click_ms)
    );
    assert!(
        (stamp - click_ms).abs() <= 1000,
        "camera stamp {} for a click at {}",
        iso(stamp),
        iso(click_ms)
    );
    assert!(playback_advances(&desktop), "playback after the click plays");

    // Export: mark a range while it plays, download it as .mp4, ffprobe reads its length.
    desktop
        .click(&desktop.find_xpath("//button[text()='Mark in']").unwrap())
        .unwrap();
    // The range's end: where playback is 4 s later.
    std::thread::sleep(Duration::from_secs(4));
    desktop
        .click(&desktop.find_xpath("//button[text()='Mark out']").unwrap())
        .unwrap();
    let href = desktop
        .poll(
            "the range's download link",
            Duration::from_secs(5),
            "const a = document.getElementById('pb-download'); return a && !a.hidden && a.getAttribute('href');",
            vec![],
        )
        .unwrap();
    let href = href.as_str().unwrap().to_string();
    let q: std::collections::HashMap<String, String> = url::Url::parse(&format!("{base}{href}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let asked = (ms_of(&q["end"]) - ms_of(&q["start"])) as f64 / 1000.0;
    let r = http_get(&format!("{base}{href}")).unwrap();
    assert_eq!(r.status, 200, "{href}");
    let file = dir.join("range.mp4");
    std::fs::write(&file, &r.body).unwrap();
    let probe = ffprobe(&file);
    let got: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    println!("range download {href}: {asked:.2} s asked, ffprobe reads {got:.2} s");
    assert!(asked >= 3.0, "the marked range is {asked} s");
    assert!((got - asked).abs() <= 0.5, "asked {asked} s, got {got} s");
    assert_clean_console(&desktop, "playback and export", &[]);

    // Events: the door event plays from its pre-roll.
    desktop.goto(&format!("{base}/#/events")).unwrap();
    let link = desktop
        .wait_for(
            ".ev-item[data-channel=\"2\"][data-type=\"door\"] .ev-link",
            Duration::from_secs(10),
        )
        .unwrap();
    let item = desktop
        .find(".ev-item[data-channel=\"2\"][data-type=\"door\"]")
        .unwrap();
    let event_start = ms_of(&desktop.attr(&item, "data-start").unwrap().unwrap());
    desktop.click(&link).unwrap();
    let shown = shown_time(&desktop, "the event's clip");
    println!(
        "event at {} plays from {} ({} ms before)",
        iso(event_start),
        iso(shown),
        event_start - shown
    );
    assert!(
        (5000..=11000).contains(&(event_start - shown)),
        "the event's clip starts {} ms before it",
        event_start - shown
    );
    let stamp = stamp_at(&base, &dir, 2, &iso(shown));
    assert!(
        (stamp - shown).abs() <= 1000,
        "camera 2's stamp {} at {}",
        iso(stamp),
        iso(shown)
    );
    assert!(playback_advances(&desktop), "the event's clip plays");
    assert_clean_console(&desktop, "events", &[]);

    println!("web client scenarios took {:?}", t_begin.elapsed());
}

#[test]
fn sim_session_lines_are_read_per_camera() {
    let log = "\
        INFO tandem::sim::server: simulated camera session started peer=127.0.0.1:5 camera=1 sessions=1 total=1\n\
        INFO tandem::sim::server: simulated camera session started peer=127.0.0.1:6 camera=12 sessions=4 total=5\n\
        \u{1b}[32m INFO\u{1b}[0m simulated camera session started \u{1b}[3mcamera\u{1b}[0m\u{1b}[2m=\u{1b}[0m1 \u{1b}[3msessions\u{1b}[0m\u{1b}[2m=\u{1b}[0m2 total=6\n\
        INFO tandem::sim::server: simulated camera session ended peer=127.0.0.1:5 camera=1 sessions=1 total=5\n\
        INFO tandem::sim::server: simulated camera session started peer=127.0.0.1:8 camera=1 sessions=2 total=6\n";
    assert_eq!(sessions_in_log(log, 1), 2);
    assert_eq!(sessions_in_log(log, 12), 4);
    assert_eq!(sessions_in_log(log, 2), 0);
    assert_eq!(
        sessions_in_log(&log[..log.find("ended").unwrap()], 1),
        2,
        "through ANSI colours"
    );
}

/// The WebDriver client itself, on a page of its own: what the scenarios
/// above rely on works, and nothing is left behind.
#[test]
fn the_webdriver_client_drives_chromium_and_cleans_up() {
    if !chromium_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = browser(dir.path(), 390, 844).unwrap();
    let page = "<!doctype html><meta name=viewport content='width=device-width'><body style=margin:0>\
        <input id=name><button id=go style='position:absolute;left:100px;top:200px;width:80px;height:40px' \
        onclick=\"document.body.dataset.clicked=document.getElementById('name').value\">Go</button>\
        <div id=spot style='position:absolute;left:0;top:300px;width:390px;height:50px' \
        onpointerup=\"this.dataset.x=event.clientX\"></div></body>";
    b.goto(&format!("data:text/html,{}", page.replace('#', "%23"))).unwrap();
    assert_eq!(b.execute("return innerWidth;", vec![]).unwrap(), json!(390));
    let name = b.find("#name").unwrap();
    b.send_keys(&name, "gate").unwrap();
    b.click(&b.find_xpath("//button[text()='Go']").unwrap()).unwrap();
    assert_eq!(
        b.execute("return document.body.dataset.clicked;", vec![]).unwrap(),
        json!("gate")
    );
    assert_eq!(b.attr(&name, "id").unwrap().as_deref(), Some("name"));
    assert_eq!(b.attr(&name, "data-missing").unwrap(), None);
    b.click_at(123.0, 320.0).unwrap();
    assert_eq!(
        b.attr(&b.find("#spot").unwrap(), "data-x").unwrap().as_deref(),
        Some("123")
    );
    assert!(b.find("#absent").is_err());
    assert!(b.wait_for("#absent", Duration::from_millis(300)).is_err());
    let v = b
        .execute_async(
            "const done = arguments[arguments.length - 1]; setTimeout(() => done(arguments[0] * 2), 50);",
            vec![json!(21)],
        )
        .unwrap();
    assert_eq!(v, json!(42));
    b.execute("console.error('deliberate'); return null;", vec![]).unwrap();
    let log = b.console().unwrap();
    assert!(
        log.iter().any(|e| e.is_problem() && e.message.contains("deliberate")),
        "{log:?}"
    );
    let png = b.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let pids = |what: &str| {
        let o = std::process::Command::new("pgrep").args(["-f", what]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let driver_log = std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap();
    let profile_dir = driver_log
        .split("--user-data-dir=")
        .nth(1)
        .and_then(|s| s.split(['"', ' ', ',']).next())
        .expect("chromedriver logs the profile directory")
        .to_string();
    assert!(Path::new(&profile_dir).exists());
    assert!(pids(&profile_dir) > 0, "Chromium runs with its profile");
    drop(b);
    assert!(
        !Path::new(&profile_dir).exists(),
        "the profile {profile_dir} is removed"
    );
    assert_eq!(pids(&profile_dir), 0, "no Chromium is left running");
}
