//! HTTPS, end to end with real processes on loopback: a self-signed NVR
//! answers `curl --cacert` over HTTP/2 and HTTP/1.1 with HSTS, its
//! fingerprint is the same in the log, the CLI and `openssl s_client`, and
//! survives a restart; an operator's own certificate is served; the plain
//! listener only redirects; a login over HTTP/2 gets the same Origin check as
//! over HTTP/1.1; the peer client accepts the pinned certificate or the
//! configured CA and refuses any other (and a failover probe says why); a
//! failback transfer reaches only the pinned peer, over TLS.
//! Needs `curl` and `openssl` (skipped outside CI without them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tandem::failover::probe::{probe, ProbeResult};
use tandem::failover::rule::{Check, CheckKind};
use tandem::httpc::{PeerTls, PeerTrust};

fn tools() -> bool {
    prerequisite(have_program("curl"), "curl") && prerequisite(have_program("openssl"), "openssl")
}

struct TlsNvr {
    proc: Proc,
    port: u16,
    config: PathBuf,
}

/// Starts `tandem serve` with `[http]` extra lines and waits until it serves.
fn start(dir: &Path, name: &str, http: &str) -> TlsNvr {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!("[storage]\ndir = \"{name}-data\"\nmin_free = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n{http}\n"),
    )
    .unwrap();
    let mut cmd = Command::new(tandem());
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env("TANDEM_LOG", "info")
        .stdout(Stdio::null());
    let proc = spawn(name, &mut cmd, dir);
    wait_for(Duration::from_secs(30), "the HTTPS API", || {
        proc.stderr().contains("serving the API at https://")
    });
    TlsNvr { proc, port, config }
}

/// `curl` with `args`; returns (stdout, stderr, success).
fn curl(args: &[&str]) -> (String, String, bool) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
}

/// `sha256:` and lowercase hex, from any of the forms tools print.
fn normal_fingerprint(s: &str) -> String {
    let hex: String = s
        .rsplit(['=', ' '])
        .next()
        .unwrap()
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    format!("sha256:{}", hex.to_ascii_lowercase())
}

/// The fingerprint `openssl s_client` sees on `port`.
fn openssl_fingerprint(port: u16) -> String {
    let s = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut x = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x.stdin.take().unwrap().write_all(&s.stdout).unwrap();
    let out = x.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Fingerprint="), "openssl saw no certificate: {text}");
    normal_fingerprint(text.trim())
}

fn cli_fingerprint(args: &[&str]) -> String {
    let mut a = vec!["tls", "fingerprint"];
    a.extend_from_slice(args);
    let o = run_tandem(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn self_signed_https_serves_http2_with_hsts_and_one_fingerprint_everywhere() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rport = free_port();
    let http = format!("tls = \"self-signed\"\nredirect_listen = \"127.0.0.1:{rport}\"");
    let mut nvr = start(dir.path(), "nvr", &http);
    let data = dir.path().join("nvr-data");
    let cert = data.join("tls/cert.pem");
    let cacert = cert.to_str().unwrap();
    let url = format!("https://localhost:{}/", nvr.port);

    // HTTP/2 negotiated by ALPN, the public page, HSTS.
    let (out, err, ok) = curl(&[
        "--http2",
        "--cacert",
        cacert,
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        &url,
    ]);
    assert!(ok, "curl: {err}");
    assert!(out.ends_with("200 2"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
    // HTTP/1.1 too, with HSTS.
    let (out, err, ok) = curl(&[
        "--http1.1",
        "--cacert",
        cacert,
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        &url,
    ]);
    assert!(ok, "curl: {err}");
    assert!(out.ends_with("200 1.1"), "{out}");
    assert!(out.to_ascii_lowercase().contains("strict-transport-security"), "{out}");
    // Without the certificate, curl refuses: nothing is trusted by accident.
    let (_, _, ok) = curl(&["-o", "/dev/null", &url]);
    assert!(!ok, "curl trusted a self-signed certificate it was not given");

    // One fingerprint: the log, the CLI (both ways), and what openssl sees.
    let log = nvr.proc.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("serving HTTPS"))
        .expect("the fingerprint is logged at start");
    let at = line.find("sha256:").expect("a sha256 fingerprint in the log line");
    let logged = line[at..at + 7 + 64].to_string();
    assert_eq!(cli_fingerprint(&["--data", data.to_str().unwrap()]), logged);
    assert_eq!(cli_fingerprint(&["--config", nvr.config.to_str().unwrap()]), logged);
    assert_eq!(openssl_fingerprint(nvr.port), logged);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.join("tls/key.pem")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // The plain listener only redirects, to the same path over HTTPS.
    let (out, err, ok) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{rport}/api/v1/events?channel=1"),
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains(&format!(
            "location: https://127.0.0.1:{}/api/v1/events?channel=1",
            nvr.port
        )),
        "{out}"
    );

    login_over_http2_checks_the_origin(&data, cacert, nvr.port);
    export_checks_the_servers_certificate(nvr.port, cacert, &logged);

    // The peer client: the pinned certificate is accepted, any other refused.
    let fp = tandem::web::tls::parse_fingerprint(&logged).unwrap();
    let page = format!("https://127.0.0.1:{}/", nvr.port);
    let get = |trust: PeerTrust, url: &str| {
        let tls = PeerTls::new(&trust).unwrap();
        tandem::httpc::request_via("GET", url, &[], b"", Duration::from_secs(5), Some(&tls))
    };
    let r = get(PeerTrust::Fingerprint(fp), &page).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000"));
    let mut wrong = fp;
    wrong[31] ^= 0xff;
    let e = get(PeerTrust::Fingerprint(wrong), &page).unwrap_err().to_string();
    assert!(e.contains("does not match failover.peer_fingerprint"), "{e}");
    // Its certificate as the CA (name checked: it covers localhost and 127.0.0.1).
    let roots = tandem::web::tls::load_certs(&cert).unwrap();
    let ca = PeerTrust::Ca {
        path: cert.clone(),
        roots,
    };
    assert_eq!(
        get(ca.clone(), &format!("https://localhost:{}/", nvr.port))
            .unwrap()
            .status,
        200
    );
    // Another NVR's certificate as the CA: refused.
    let (other, _) = tandem::web::tls::generate_self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("other.pem"), other).unwrap();
    let other = PeerTrust::Ca {
        path: dir.path().join("other.pem"),
        roots: tandem::web::tls::load_certs(&dir.path().join("other.pem")).unwrap(),
    };
    let e = get(other, &page).unwrap_err().to_string();
    assert!(e.contains("does not match failover.peer_ca"), "{e}");

    // A failover probe over HTTPS: a wrong pin is a miss that says why; the
    // right one is not refused.
    let check = Check {
        kind: CheckKind::Http,
        address: "127.0.0.1".into(),
        port: Some(nvr.port),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        failure_count: 1,
        normal_count: 1,
        tls: true,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bad = PeerTls::new(&PeerTrust::Fingerprint(wrong)).unwrap();
    match rt.block_on(probe(&check, 0, None, Some(&bad))) {
        ProbeResult::Missed(e) => assert!(e.contains("does not match"), "{e}"),
        r => panic!("a wrong certificate answered: {r:?}"),
    }
    let good = PeerTls::new(&PeerTrust::Fingerprint(fp)).unwrap();
    // Without the peer token the peer answers 401: alive, channels unknown.
    match rt.block_on(probe(&check, 1, None, Some(&good))) {
        ProbeResult::Answered { .. } => {}
        ProbeResult::Missed(e) => panic!("the right certificate was refused: {e}"),
    }
    // Never plain HTTP for a TLS check without a trust.
    match rt.block_on(probe(&check, 2, None, None)) {
        ProbeResult::Missed(e) => assert!(e.contains("https needs"), "{e}"),
        r => panic!("{r:?}"),
    }

    // A restart keeps the certificate (peers pin it).
    assert!(nvr.proc.terminate().success());
    let nvr2 = start(dir.path(), "nvr", &http);
    assert_eq!(openssl_fingerprint(nvr2.port), logged);
    assert!(!nvr2.proc.stderr().contains("generated a self-signed"));
}

/// Over HTTP/2 the host travels as `:authority`; the server gives it to the
/// access layer as `Host`, so a browser login from a foreign page is refused
/// and one from this origin works, and its cookie's state changes pass.
fn login_over_http2_checks_the_origin(data: &Path, cacert: &str, port: u16) {
    let o = Command::new(tandem())
        .args([
            "user",
            "add",
            "admin",
            "--role",
            "admin",
            "--password-env",
            "TLS_TEST_PW",
            "--data",
        ])
        .arg(data)
        .env("TLS_TEST_PW", "correct horse battery staple")
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "user add: {}", String::from_utf8_lossy(&o.stderr));
    let base = format!("https://localhost:{port}");
    let jar = data.join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let login = |origin: &str| {
        let (out, err, ok) = curl(&[
            "--http2",
            "--cacert",
            cacert,
            "-c",
            jar,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("Origin: {origin}"),
            "--data",
            r#"{"username":"admin","password":"correct horse battery staple"}"#,
            &format!("{base}/api/v1/login"),
        ]);
        assert!(ok, "{err}");
        out
    };
    assert_eq!(
        login("https://evil.example"),
        "403 2",
        "a foreign page's login over HTTP/2"
    );
    assert_eq!(login(&base), "200 2");
    // The session cookie is marked Secure under TLS (curl's jar: "TRUE" in the secure column).
    let cookie = std::fs::read_to_string(jar).unwrap();
    let line = cookie
        .lines()
        .find(|l| l.contains("tandem_session"))
        .unwrap_or_else(|| panic!("no session cookie: {cookie}"));
    assert_eq!(line.split('\t').nth(3), Some("TRUE"), "not Secure: {line}");
    let (out, err, ok) = curl(&[
        "--http2",
        "--cacert",
        cacert,
        "-b",
        jar,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        &format!("Origin: {base}"),
        &format!("{base}/api/v1/logout"),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with('2'),
        "logout with this origin's cookie over HTTP/2: {out}"
    );
}

#[test]
fn an_operators_certificate_is_served_and_a_wrong_key_is_refused() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gen = |name: &str| {
        let o = Command::new("openssl")
            .current_dir(d)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args([
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}-cert.pem"),
            ])
            .args(["-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    gen("site");
    gen("other");
    let nvr = start(d, "own", "tls = { cert = \"site-cert.pem\", key = \"site-key.pem\" }");
    let (out, err, ok) = curl(&[
        "--cacert",
        d.join("site-cert.pem").to_str().unwrap(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://localhost:{}/", nvr.port),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "200");
    let fp = cli_fingerprint(&["--config", nvr.config.to_str().unwrap()]);
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(d.join("site-cert.pem"))
        .output()
        .unwrap();
    assert_eq!(normal_fingerprint(String::from_utf8_lossy(&o.stdout).trim()), fp);
    assert_eq!(openssl_fingerprint(nvr.port), fp);
    assert!(
        !d.join("own-data/tls").exists(),
        "no certificate generated beside the operator's"
    );

    // Another certificate's key: `check` and `serve` refuse, naming the file.
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        "[storage]\ndir = \"bad-data\"\nmin_free = 0\n[http]\ntls = { cert = \"site-cert.pem\", key = \"other-key.pem\" }\n",
    )
    .unwrap();
    for cmd in ["check", "serve"] {
        let o = run_tandem(&[cmd, "--config", bad.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("bad.toml:5: http.tls.key:")
                && err.contains("other-key.pem")
                && err.contains("does not match"),
            "{cmd}: {err}"
        );
    }
}

/// Failback over HTTPS: a transfer to a peer whose certificate is not the
/// pinned one is refused (the job stays pending with the reason), and with
/// the right pin every frame arrives — also for a job queued with a plain
/// target that the configuration marks as TLS (never sent in plain text).
#[test]
fn failback_transfers_reach_only_the_pinned_peer_over_tls() {
    use tandem::failover::transfer::{self, Job, Worker};
    use tandem::time::Time90k;
    const TOKEN: &str = "peer-token-for-tls-tests-01";
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--bitrate-kbps", "1000"]);
    let a_dir = record_in_short_segments(dir.path(), "a", &urls[0], 100);
    let b = start(
        dir.path(),
        "b",
        &format!("tls = \"self-signed\"\n[failover]\npeer_token = \"{TOKEN}\"\n[[channel]]\nnumber = 3"),
    );
    let fp = tandem::web::tls::parse_fingerprint(
        &tandem::web::tls::file_fingerprint(&dir.path().join("b-data/tls/cert.pem")).unwrap(),
    )
    .unwrap();
    let origin = tandem::store::db::nvr_id(&tandem::store::db::open(&a_dir.join("index.db")).unwrap()).unwrap();
    let peer = format!("127.0.0.1:{}", b.port);
    let job = |target: String| Job {
        rule: "tls".into(),
        local_channel: 1,
        remote_channel: 3,
        target,
        start: Time90k(0),
        end: Time90k(i64::MAX / 2),
    };
    let worker = |pin: [u8; 32]| Worker {
        dir: a_dir.clone(),
        origin: origin.clone(),
        token: TOKEN.into(),
        rate: 50_000_000,
        tls: Some(PeerTls::new(&PeerTrust::Fingerprint(pin)).unwrap()),
        tls_targets: vec![peer.clone()],
    };
    transfer::queue(&a_dir, &job(format!("https://{peer}"))).unwrap();

    // The wrong pin: refused, nothing sent, the reason kept on the job.
    let mut wrong = fp;
    wrong[0] ^= 0x80;
    let (wake, rx) = std::sync::mpsc::channel::<()>();
    let w = worker(wrong);
    let t = std::thread::spawn(move || w.run(rx));
    wait_for(Duration::from_secs(20), "the refusal", || {
        transfer::list(&a_dir).unwrap()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not match failover.peer_fingerprint"))
    });
    drop(wake);
    t.join().unwrap();
    let jobs = transfer::list(&a_dir).unwrap();
    assert_eq!(
        (jobs[0].state, jobs[0].bytes_sent),
        (transfer::TransferState::Pending, 0)
    );

    // The right pin: both jobs done (the plain-target one over TLS too), every frame there once.
    transfer::queue(&a_dir, &job(peer.clone())).unwrap();
    let (wake, rx) = std::sync::mpsc::channel::<()>();
    let w = worker(fp);
    let t = std::thread::spawn(move || w.run(rx));
    wait_for(Duration::from_secs(60), "both transfers done", || {
        transfer::list(&a_dir)
            .unwrap()
            .iter()
            .all(|j| j.state == transfer::TransferState::Done)
    });
    drop(wake);
    t.join().unwrap();
    let a_frames: u64 = tandem::store::Reader::new(a_dir.clone())
        .segment_frames(1, Time90k(0), Time90k(i64::MAX / 2))
        .unwrap()
        .iter()
        .map(|s| s.frames.len() as u64)
        .sum();
    let audit = audit_json(&["--data", dir.path().join("b-data").to_str().unwrap(), "--channel", "3"]);
    assert_eq!(audit["frames_found"], a_frames, "{audit}");
    assert_eq!(audit["duplicates"], 0, "{audit}");
}

/// `tandem export --server https://…` reaches the NVR only through a trust
/// it was given: the NVR's answer (401: no token) proves the TLS connection,
/// a wrong pin or no trust at all stops it before any request.
fn export_checks_the_servers_certificate(port: u16, cacert: &str, fingerprint: &str) {
    let export = |trust: &[&str]| {
        let server = format!("https://localhost:{port}");
        let (start, end) = ("2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z");
        let clip = clip_args(1, start, end, Path::new("/dev/null"));
        let mut args = vec!["export", "--server", &server];
        args.extend(clip.iter().map(String::as_str));
        args.extend_from_slice(trust);
        let o = run_tandem(&args);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    for trust in [["--cacert", cacert], ["--fingerprint", fingerprint]] {
        let err = export(&trust);
        assert!(
            err.contains("answered 401"),
            "the NVR answered over TLS with {trust:?}: {err}"
        );
    }
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let err = export(&["--fingerprint", &wrong]);
    assert!(
        err.contains("TLS with") && err.contains("NotPinned") && !err.contains("answered"),
        "a wrong pin is refused: {err}"
    );
    let err = export(&[]);
    assert!(err.contains("needs --cacert or --fingerprint"), "{err}");
}
