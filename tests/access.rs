//! Secure access with a real NVR process: sessions (login, use, logout,
//! expiry, wrong passwords, throttling, CSRF), API tokens (create, use,
//! revoke), a viewer limited to one channel, the peer token confined to
//! NVR-to-NVR calls, and the audit log recording it all and naming an edited
//! entry.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

struct Site {
    _dir: tempfile::TempDir,
    _cam: Proc,
    nvr: Nvr,
    data: std::path::PathBuf,
}

const PEER_TOKEN: &str = "peer-token-0123456789";

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let (cam, urls) = sim_camera(dir.path(), 2, &[]);
    let data = dir.path().join("data");
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = 0\n[http]\nlisten = \"{{listen}}\"\n\
         [failover]\npeer_token = \"{PEER_TOKEN}\"\n\
         [[network_camera]]\nname = \"a\"\nurl = \"{}\"\n[[network_camera]]\nname = \"b\"\nurl = \"{}\"\n\
         [[channel]]\nnumber = 1\ncamera = \"a\"\n[[channel]]\nnumber = 2\ncamera = \"b\"\n",
        data.display(),
        urls[0],
        urls[1]
    );
    let nvr = common::nvr(dir.path(), "nvr", &cfg);
    Site {
        _dir: dir,
        _cam: cam,
        nvr,
        data,
    }
}

fn add_user(data: &Path, name: &str, role: &str, channels: Option<&str>, pw: &str) {
    let d = data.to_str().unwrap();
    let mut args = vec!["user", "add", name, "--role", role, "--data", d, "--password-env", "PW"];
    if let Some(c) = channels {
        args.extend(["--channels", c]);
    }
    let o = std::process::Command::new(tandem())
        .args(&args)
        .env("PW", pw)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn anon(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    http_anonymous(method, url, headers, body.as_bytes()).unwrap()
}

fn login(base: &str, user: &str, pw: &str) -> HttpResponse {
    let body = serde_json::json!({ "username": user, "password": pw }).to_string();
    anon(
        "POST",
        &format!("{base}/api/v1/login"),
        &[("Content-Type", "application/json")],
        &body,
    )
}

/// The `tandem_session=…` pair of a login answer.
fn cookie(r: &HttpResponse) -> String {
    let c = r.header("set-cookie").expect("a session cookie");
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
    c.split(';').next().unwrap().to_string()
}

#[test]
fn sessions_tokens_throttling_and_csrf() {
    let s = site();
    let base = s.nvr.base.clone();
    add_user(&s.data, "olga", "operator", None, "olga-password-1");

    // Wrong password and unknown user: the same answer.
    let wrong = login(&base, "olga", "not-her-password");
    let unknown = login(&base, "nobody-here", "not-her-password");
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(
        wrong.body, unknown.body,
        "the answer must not reveal whether a user exists"
    );
    assert!(wrong.header("set-cookie").is_none());

    let ok = login(&base, "olga", "olga-password-1");
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let csrf = ok.json().unwrap()["csrf_token"].as_str().unwrap().to_string();
    let c = cookie(&ok);
    fn headers<'a>(c: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![("Cookie", c), ("Content-Type", "application/json")];
        h.extend_from_slice(extra);
        h
    }
    let r = anon("GET", &format!("{base}/api/v1/channels"), &headers(&c, &[]), "");
    assert_eq!(r.status, 200);
    assert_eq!(
        anon("GET", &format!("{base}/api/v1/me"), &headers(&c, &[]), "")
            .json()
            .unwrap()["role"],
        "operator"
    );

    // CSRF: a cookie POST from a foreign page, or with no origin at all, is refused.
    let tokens = format!("{base}/api/v1/tokens");
    let body = r#"{"name":"script"}"#;
    let foreign = anon(
        "POST",
        &tokens,
        &headers(&c, &[("Origin", "http://evil.example")]),
        body,
    );
    assert_eq!(foreign.status, 403, "{}", String::from_utf8_lossy(&foreign.body));
    assert_eq!(anon("POST", &tokens, &headers(&c, &[]), body).status, 403);
    let own = base.clone();
    let r = anon("POST", &tokens, &headers(&c, &[("Origin", &own)]), body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = anon(
        "POST",
        &tokens,
        &headers(&c, &[("X-CSRF-Token", &csrf)]),
        r#"{"name":"vms","role":"viewer","channels":[2]}"#,
    );
    assert_eq!(r.status, 201);
    let t = r.json().unwrap();
    let (token, id) = (t["token"].as_str().unwrap().to_string(), t["id"].as_i64().unwrap());
    assert_eq!(t["role"], "viewer");
    // A token is never wider than its creator.
    let r = anon(
        "POST",
        &tokens,
        &headers(&c, &[("Origin", &own)]),
        r#"{"name":"x","role":"admin"}"#,
    );
    assert_eq!(r.status, 403);

    // Bearer: no CSRF check, narrowed to what it was made for.
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let chans = anon("GET", &format!("{base}/api/v1/channels"), &auth, "")
        .json()
        .unwrap();
    assert_eq!(chans.as_array().unwrap().len(), 1);
    assert_eq!(chans[0]["number"], 2);
    assert_eq!(
        anon(
            "GET",
            &format!("{base}/api/v1/channels/1/recordings?start=2020-01-01T00:00:00Z&end=2030-01-01T00:00:00Z"),
            &auth,
            ""
        )
        .status,
        403
    );
    let listed = anon("GET", &tokens, &headers(&c, &[]), "").json().unwrap();
    assert!(
        listed.to_string().contains("\"vms\"") && !listed.to_string().contains(&token),
        "secrets are shown once"
    );
    let r = anon(
        "DELETE",
        &format!("{tokens}/{id}"),
        &headers(&c, &[("Origin", &own)]),
        "",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        anon("GET", &format!("{base}/api/v1/channels"), &auth, "").status,
        401,
        "revoked at once"
    );

    // Garbage credentials: 401, never 500.
    for h in [
        ("Authorization", "Bearer "),
        ("Authorization", "Basic b2xnYTpvbGdh"),
        ("Cookie", "tandem_session=%%%%; other=1"),
        ("Cookie", "tandem_session="),
    ] {
        let r = anon("GET", &format!("{base}/api/v1/channels"), &[h], "");
        assert_eq!(r.status, 401, "{h:?}");
    }
    // A control character is refused by the HTTP layer itself (400).
    let r = anon(
        "GET",
        &format!("{base}/api/v1/channels"),
        &[("Authorization", "Bearer \u{1}")],
        "",
    );
    assert!(r.status == 400 || r.status == 401, "{}", r.status);
    let long = format!("tandem_session={}", "x".repeat(4000));
    assert_eq!(
        anon("GET", &format!("{base}/api/v1/channels"), &[("Cookie", &long)], "").status,
        401
    );

    // Logout ends the session.
    let r = anon(
        "POST",
        &format!("{base}/api/v1/logout"),
        &headers(&c, &[("Origin", &own)]),
        "",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        anon("GET", &format!("{base}/api/v1/channels"), &headers(&c, &[]), "").status,
        401
    );

    // An idle session expires: age it in the index, past the 5-s cache.
    let ok = login(&base, "olga", "olga-password-1");
    let c2 = cookie(&ok);
    assert_eq!(
        anon("GET", &format!("{base}/api/v1/me"), &[("Cookie", &c2)], "").status,
        200
    );
    let conn = rusqlite::Connection::open(s.data.join("index.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute("UPDATE session SET last_seen_ms = 0", []).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        anon("GET", &format!("{base}/api/v1/me"), &[("Cookie", &c2)], "").status,
        401
    );

    // Throttling: at most five failures (two were spent above, from this
    // address), then 429 with Retry-After even with the right password.
    let mut failures = 2;
    loop {
        let r = login(&base, "olga", "guess-guess-guess");
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 401);
        failures += 1;
        assert!(failures <= 5, "a sixth failure was let through");
    }
    assert_eq!(failures, 5);
    let r = login(&base, "olga", "olga-password-1");
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[test]
fn a_viewer_sees_only_their_channels_and_the_peer_token_only_imports() {
    let s = site();
    let base = s.nvr.base.clone();
    add_user(&s.data, "vic", "viewer", Some("1"), "vic-password-1");
    let c = cookie(&login(&base, "vic", "vic-password-1"));
    let h = [
        ("Cookie", c.as_str()),
        ("Origin", base.as_str()),
        ("Content-Type", "application/json"),
    ];
    // Let both channels record a little, and put an event on each.
    std::thread::sleep(Duration::from_secs(4));
    for ch in [1, 2] {
        let r = http_request(
            "POST",
            &format!("{base}/api/v1/channels/{ch}/events"),
            &[("Content-Type", "application/json")],
            br#"{"type":"door","action":"pulse","duration":1}"#,
        )
        .unwrap();
        assert_eq!(r.status, 202, "admin trigger on {ch}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let (start, end) = (rfc3339_offset(-30.0), rfc3339_offset(0.0));
    let q = format!("start={start}&end={end}");
    for (path, want) in [
        (format!("/api/v1/channels/1/recordings?{q}"), 200),
        (format!("/api/v1/channels/2/recordings?{q}"), 403),
        (format!("/api/v1/channels/%32/recordings?{q}"), 403),
        (format!("/api/v1/channels/1/clip.mp4?{q}"), 200),
        (format!("/api/v1/channels/2/clip.mp4?{q}"), 403),
        (format!("/api/v1/events?channel=2&{q}"), 403),
        ("/api/v1/users".into(), 403),
        ("/api/v1/audit".into(), 403),
        ("/api/v1/rules".into(), 403),
    ] {
        let r = anon("GET", &format!("{base}{path}"), &h, "");
        assert_eq!(
            r.status,
            want,
            "{path}: {}",
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        );
    }
    let chans = anon("GET", &format!("{base}/api/v1/channels"), &h, "").json().unwrap();
    assert_eq!(
        chans
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["number"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1]
    );
    let ev = anon("GET", &format!("{base}/api/v1/events?{q}"), &h, "")
        .json()
        .unwrap();
    let chs: Vec<u64> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["channel"].as_u64().unwrap())
        .collect();
    assert!(
        chs.contains(&1) && !chs.contains(&2),
        "events filtered to channel 1: {chs:?}"
    );
    // A viewer may not trigger events, even on their channel.
    let r = anon(
        "POST",
        &format!("{base}/api/v1/channels/1/events"),
        &h,
        r#"{"action":"start"}"#,
    );
    assert_eq!(r.status, 403);

    // The peer token: import routes only.
    let peer = format!("Bearer {PEER_TOKEN}");
    let r = anon(
        "GET",
        &format!("{base}/api/v1/channels"),
        &[("Authorization", &peer)],
        "",
    );
    assert_eq!(r.status, 401, "the peer token opens no user route");
    let r = anon("GET", &format!("{base}/api/v1/status"), &[("Authorization", &peer)], "");
    assert_eq!(r.status, 200, "the failover probe's status call");
    let r = anon(
        "GET",
        &format!("{base}/api/v1/import/abc/1"),
        &[("Authorization", &peer)],
        "",
    );
    assert_ne!(r.status, 401);
    let r = anon("GET", &format!("{base}/api/v1/import/abc/1"), &h, "");
    assert_eq!(r.status, 401, "a user's session opens no import route");
}

#[test]
fn the_audit_log_records_and_names_an_edited_entry() {
    let s = site();
    let base = s.nvr.base.clone();
    add_user(&s.data, "ann", "admin", None, "ann-password-12");
    assert_eq!(login(&base, "ann", "wrong-password-1").status, 401);
    let c = cookie(&login(&base, "ann", "ann-password-12"));
    let h = [
        ("Cookie", c.as_str()),
        ("Origin", base.as_str()),
        ("Content-Type", "application/json"),
    ];
    std::thread::sleep(Duration::from_secs(3));
    let q = format!("start={}&end={}", rfc3339_offset(-20.0), rfc3339_offset(0.0));
    assert_eq!(
        anon("GET", &format!("{base}/api/v1/channels/1/clip.mp4?{q}"), &h, "").status,
        200
    );
    let r = anon(
        "POST",
        &format!("{base}/api/v1/channels/1/events"),
        &h,
        r#"{"type":"door","action":"pulse","duration":1}"#,
    );
    assert_eq!(r.status, 202);
    let r = anon(
        "POST",
        &format!("{base}/api/v1/users"),
        &h,
        r#"{"name":"vic","role":"viewer","password":"vic-password-1","channels":[1]}"#,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        anon("POST", &format!("{base}/api/v1/tokens"), &h, r#"{"name":"t"}"#).status,
        201
    );
    assert_eq!(anon("POST", &format!("{base}/api/v1/logout"), &h, "").status, 204);

    let a = http_get(&format!("{base}/api/v1/audit")).unwrap().json().unwrap();
    let entries = a["entries"].as_array().unwrap();
    let has = |action: &str, actor: &str| entries.iter().any(|e| e["action"] == action && e["actor"] == actor);
    for (action, actor) in [
        ("login_failed", "ann"),
        ("login", "ann"),
        ("clip_export", "ann"),
        ("event_trigger", "ann"),
        ("user_change", "ann"),
        ("token_change", "ann"),
        ("logout", "ann"),
    ] {
        assert!(has(action, actor), "no {action} by {actor} in {a}");
    }
    let only = http_get(&format!("{base}/api/v1/audit?action=clip_export"))
        .unwrap()
        .json()
        .unwrap();
    assert!(only["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] == "clip_export"));
    assert_eq!(
        http_get(&format!("{base}/api/v1/audit?action=bogus")).unwrap().status,
        400
    );

    let d = s.data.to_str().unwrap();
    let o = run_tandem(&["verify", "--audit", "--data", d]);
    assert!(
        o.status.success(),
        "an untouched log verifies: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Someone with the database edits an entry (removing the guard first).
    let conn = rusqlite::Connection::open(s.data.join("index.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let id: i64 = conn
        .query_row("SELECT id FROM audit WHERE action = 'clip_export' LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        conn.execute("UPDATE audit SET actor = 'someone-else' WHERE id = ?1", [id])
            .is_err(),
        "updates are refused"
    );
    conn.execute_batch("DROP TRIGGER audit_append_only").unwrap();
    conn.execute("UPDATE audit SET actor = 'someone-else' WHERE id = ?1", [id])
        .unwrap();
    let o = run_tandem(&["verify", "--audit", "--data", d]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "an edited log verified: {out}");
    assert!(out.contains(&format!("entry {id}")), "the edited entry is named: {out}");
}

#[test]
fn a_store_without_users_records_but_lets_nobody_in() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &[]);
    let data = dir.path().join("data");
    let port = free_port();
    let cfg = dir.path().join("nvr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\ndir = \"{}\"\nmin_free = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[network_camera]]\nname = \"a\"\nurl = \"{}\"\n[[channel]]\nnumber = 1\ncamera = \"a\"\n",
            data.display(),
            urls[0]
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(tandem());
    cmd.args(["serve", "--config"]).arg(&cfg).env("TANDEM_LOG", "info");
    let p = spawn("nvr", &mut cmd, dir.path());
    let base = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "health", || {
        http_anonymous("GET", &format!("{base}/api/v1/health"), &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(anon("GET", &format!("{base}/api/v1/channels"), &[], "").status, 401);
    assert_eq!(login(&base, "admin", "any-password-at-all").status, 401);
    assert!(
        p.stderr().contains("tandem user add"),
        "start-up says how to create the first user"
    );
    // Recording goes on regardless.
    std::thread::sleep(Duration::from_secs(3));
    let r = tandem::store::Reader::new(data.clone());
    let runs = r
        .recordings(1, tandem::time::Time90k(0), tandem::time::Time90k(i64::MAX))
        .unwrap();
    assert!(!runs.is_empty(), "channel 1 records with no user");
}
