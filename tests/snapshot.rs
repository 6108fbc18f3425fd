//! Event and timeline snapshots from a real NVR recording the simulated
//! camera: an HTTP-triggered event's picture is a real JPEG of the asked
//! width (checked by its SOF0 header and by ffprobe), served again from the
//! cache byte for byte; a viewer without rights on the event's channel gets
//! 403, an unknown event 404, a bad width 400 naming `width`; the timeline
//! picture at or before a time likewise.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

/// (width, height) from a baseline JPEG's SOF0, checking SOI and EOI.
fn jpeg_size(j: &[u8]) -> Option<(u16, u16)> {
    if j.len() < 4 || j[..2] != [0xff, 0xd8] || j[j.len() - 2..] != [0xff, 0xd9] {
        return None;
    }
    let mut p = 2;
    while p + 9 <= j.len() && j[p] == 0xff {
        let len = usize::from(u16::from_be_bytes([j[p + 2], j[p + 3]]));
        if j[p + 1] == 0xc0 {
            let h = u16::from_be_bytes([j[p + 5], j[p + 6]]);
            let w = u16::from_be_bytes([j[p + 7], j[p + 8]]);
            return Some((w, h));
        }
        p += 2 + len;
    }
    None
}

fn add_viewer(data: &Path, name: &str, channels: &str, pw: &str) {
    let o = std::process::Command::new(tandem())
        .args([
            "user",
            "add",
            name,
            "--role",
            "viewer",
            "--channels",
            channels,
            "--password-env",
            "PW",
        ])
        .arg("--data")
        .arg(data)
        .env("PW", pw)
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "user add: {}", String::from_utf8_lossy(&o.stderr));
}

fn login_cookie(base: &str, user: &str, pw: &str) -> String {
    let body = serde_json::json!({ "username": user, "password": pw }).to_string();
    let r = http_anonymous(
        "POST",
        &format!("{base}/api/v1/login"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "login: {}", String::from_utf8_lossy(&r.body));
    r.header("set-cookie").unwrap().split(';').next().unwrap().to_string()
}

fn text(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).into_owned()
}

#[test]
fn event_and_timeline_snapshots_are_jpegs_of_the_asked_size_for_those_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 2, &[]);
    let data = dir.path().join("data");
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = 0\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"a\"\nurl = \"{}\"\n[[network_camera]]\nname = \"b\"\nurl = \"{}\"\n\
         [[channel]]\nnumber = 1\ncamera = \"a\"\n[[channel]]\nnumber = 2\ncamera = \"b\"\n",
        data.display(),
        urls[0],
        urls[1]
    );
    let nvr = common::nvr(dir.path(), "nvr", &cfg);
    let base = nvr.base.clone();
    wait_for(Duration::from_secs(20), "both channels recording", || {
        frames_written(&base, 1) > 25 && frames_written(&base, 2) > 25
    });

    // A door pulse on channel 1, as a sensor sends it.
    let r = http_request(
        "POST",
        &format!("{base}/api/v1/channels/1/events"),
        &[("Content-Type", "application/json")],
        br#"{"type":"door","action":"pulse","duration":1}"#,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", text(&r));
    let trigger_time = r.json().unwrap()["time"].as_str().unwrap().to_string();
    // The writer stores the event shortly after.
    let mut events = serde_json::Value::Null;
    wait_for(Duration::from_secs(5), "the event stored", || {
        events = http_get(&format!("{base}/api/v1/events?channel=1&type=door"))
            .unwrap()
            .json()
            .unwrap();
        events["events"][0].is_object()
    });
    let ev = &events["events"][0];
    assert_eq!(ev["start"], trigger_time.as_str(), "{events}");
    let id = ev["id"].as_i64().unwrap();

    // The picture exists once the first key frame after the start is stored
    // (the camera sends one a second).
    let url = format!("{base}/api/v1/events/{id}/snapshot.jpg?width=320");
    let mut got = None;
    wait_for(Duration::from_secs(10), "the event's snapshot", || {
        let r = http_get(&url).unwrap();
        assert!(r.status == 200 || r.status == 404, "{}: {}", r.status, text(&r));
        let ok = r.status == 200;
        got = Some(r);
        ok
    });
    let r = got.unwrap();
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.header("cache-control"), Some("private, max-age=86400"));
    assert_eq!(jpeg_size(&r.body), Some((320, 180)), "640x360 camera at width 320");
    let frame_time = tandem::time::Time90k::parse_rfc3339(r.header("x-tandem-frame-time").unwrap()).unwrap();
    let start = tandem::time::Time90k::parse_rfc3339(&trigger_time).unwrap();
    assert!(
        frame_time >= start && frame_time.0 - start.0 <= 2 * 90_000,
        "key frame {frame_time:?} for an event at {start:?}"
    );
    if prerequisite(have_program("ffprobe"), "ffprobe (Debian package ffmpeg)") {
        let f = dir.path().join("event.jpg");
        std::fs::write(&f, &r.body).unwrap();
        let p = ffprobe(&f);
        let s = &p["streams"][0];
        assert_eq!(
            (s["codec_name"].as_str(), s["width"].as_u64(), s["height"].as_u64()),
            (Some("mjpeg"), Some(320), Some(180)),
            "{p}"
        );
    }
    // Again, from the cache: the same bytes.
    let again = http_get(&url).unwrap();
    assert_eq!((again.status, &again.body), (200, &r.body));
    // The default width.
    let d = http_get(&format!("{base}/api/v1/events/{id}/snapshot.jpg")).unwrap();
    assert_eq!(jpeg_size(&d.body), Some((640, 360)), "{}", text(&d));

    // Bad input and unknown events.
    for (path, want, names) in [
        (format!("/api/v1/events/{id}/snapshot.jpg?width=63"), 400, "`width`"),
        (format!("/api/v1/events/{id}/snapshot.jpg?width=1921"), 400, "`width`"),
        (format!("/api/v1/events/{id}/snapshot.jpg?width=wide"), 400, "`width`"),
        ("/api/v1/events/0/snapshot.jpg".into(), 400, "`id`"),
        ("/api/v1/events/x/snapshot.jpg".into(), 400, "`id`"),
        ("/api/v1/events/99999999/snapshot.jpg".into(), 404, "no event 99999999"),
        ("/api/v1/channels/1/snapshot.jpg".into(), 400, "`time`"),
        (
            "/api/v1/channels/1/snapshot.jpg?time=2001-01-01T00:00:00Z".into(),
            404,
            "no stored key frame",
        ),
        (
            "/api/v1/channels/9/snapshot.jpg?time=2001-01-01T00:00:00Z".into(),
            404,
            "no channel 9",
        ),
    ] {
        let r = http_get(&format!("{base}{path}")).unwrap();
        assert_eq!(r.status, want, "{path}: {}", text(&r));
        let e = r.json().unwrap()["error"].as_str().unwrap().to_string();
        assert!(e.contains(names), "{path}: {e}");
    }

    // The timeline picture: the key frame at or before now.
    let now = rfc3339_offset(0.0);
    let t = http_get(&format!("{base}/api/v1/channels/2/snapshot.jpg?time={now}&width=64")).unwrap();
    assert_eq!(t.status, 200, "{}", text(&t));
    assert_eq!(jpeg_size(&t.body), Some((64, 36)));
    let tt = tandem::time::Time90k::parse_rfc3339(t.header("x-tandem-frame-time").unwrap()).unwrap();
    let now_t = tandem::time::Time90k::parse_rfc3339(&now).unwrap();
    assert!(tt <= now_t && now_t.0 - tt.0 <= 2 * 90_000, "{tt:?} for {now_t:?}");
    // Near the live edge a newer key frame may come: browsers must not keep it.
    assert_eq!(t.header("cache-control"), Some("private, no-cache"));

    // A viewer of channel 2 only: not channel 1's event, cached or not,
    // nor channel 1's timeline; channel 2's pictures are theirs.
    add_viewer(&data, "vic", "2", "vic-password-1");
    let c = login_cookie(&base, "vic", "vic-password-1");
    let as_vic = |path: &str| http_anonymous("GET", &format!("{base}{path}"), &[("Cookie", c.as_str())], b"").unwrap();
    for path in [
        format!("/api/v1/events/{id}/snapshot.jpg?width=320"),
        format!("/api/v1/events/{id}/snapshot.jpg?width=500"),
        format!("/api/v1/channels/1/snapshot.jpg?time={now}"),
    ] {
        let r = as_vic(&path);
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
    }
    let r = as_vic(&format!("/api/v1/channels/2/snapshot.jpg?time={now}&width=64"));
    assert_eq!((r.status, jpeg_size(&r.body)), (200, Some((64, 36))), "{}", text(&r));
    // No credentials at all: 401 before anything is decoded.
    let r = http_anonymous("GET", &url, &[], b"").unwrap();
    assert_eq!(r.status, 401);
}
