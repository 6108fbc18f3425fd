//! Alerts over TLS against real peers on loopback, each with certificates
//! from a test CA: mail through aiosmtpd (STARTTLS + AUTH, implicit TLS, an
//! untrusted server, a server without STARTTLS), webhooks to an HTTPS
//! listener (trusted and untrusted), and an NVR whose MQTT, webhook and mail
//! actions all go over TLS for one event.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tandem::alerts::testpeers::{HttpPeer, MosquittoPeer, MqttSubscriber, SmtpMode, SmtpPeer, TestCa, TlsFiles};
use tandem::alerts::{mail, webhook, Delivery, Message};
use tandem::config::{EmailTarget, MailTls, Secret};

const USER: &str = "nvr-a";
const PASSWORD: &str = "s3cret-pw";

fn have_smtp() -> bool {
    prerequisite(SmtpPeer::available(), "aiosmtpd (Debian package python3-aiosmtpd)")
}

fn message() -> Message {
    Message {
        id: "tandem-test-1".into(),
        subject: "Motion on Yard".into(),
        body: "Motion on channel 1 (Yard)".into(),
        json: serde_json::json!({"type": "motion", "channel": 1}),
        event_id: Some(12),
    }
}

fn target(port: u16, tls: MailTls, ca: &Path) -> EmailTarget {
    EmailTarget {
        smtp_host: "127.0.0.1".into(),
        smtp_port: port,
        tls,
        username: Some(USER.into()),
        password: Some(Secret {
            value: PASSWORD.into(),
            source: tandem::config::SecretSource::Inline,
        }),
        ca_file: Some(ca.to_path_buf()),
        from: "nvr@example.org".into(),
        to: vec!["guard@example.org".into()],
    }
}

/// A small JPEG made the way event snapshots are.
fn jpeg() -> Vec<u8> {
    let (w, h) = (64usize, 48usize);
    let data = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    tandem::snapshot::encode_jpeg(&tandem::snapshot::Rgb {
        width: w,
        height: h,
        data,
    })
    .unwrap()
}

/// The MIME parts of a mail as Python's email module reads them:
/// (content type, file name, decoded payload).
fn parts(raw: &str) -> Vec<(String, Option<String>, Vec<u8>)> {
    let script = r#"
import base64, email, json, sys
m = email.message_from_string(sys.stdin.read())
print(json.dumps([[p.get_content_type(), p.get_filename(),
    base64.b64encode(p.get_payload(decode=True) or b"").decode()]
    for p in m.walk() if not p.is_multipart()]))
"#;
    let mut c = Command::new(tandem::alerts::testpeers::PYTHON)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), raw.as_bytes()).unwrap();
    drop(c.stdin.take());
    let out = c.wait_with_output().unwrap();
    let v: Vec<(String, Option<String>, String)> = serde_json::from_slice(&out.stdout).unwrap();
    use base64::Engine;
    v.into_iter()
        .map(|(t, n, b)| (t, n, base64::engine::general_purpose::STANDARD.decode(b).unwrap()))
        .collect()
}

/// Whether ffmpeg decodes `jpeg` without an error (skipped, true, without ffmpeg).
fn decodes(dir: &Path, jpeg: &[u8]) -> bool {
    if !have_program("ffmpeg") {
        eprintln!("ffmpeg missing: the JPEG is compared byte for byte only");
        return true;
    }
    let p = dir.join("got.jpg");
    std::fs::write(&p, jpeg).unwrap();
    Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&p)
        .args(["-f", "null", "-"])
        .status()
        .is_ok_and(|s| s.success())
}

fn ca_files(dir: &Path, name: &str) -> (TestCa, TlsFiles) {
    let ca = TestCa::new(&format!("{name} CA")).unwrap();
    let files = ca.write(dir, name).unwrap();
    (ca, files)
}

#[tokio::test]
async fn mail_over_starttls_with_auth_carries_the_snapshot() {
    if !have_smtp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_ca, files) = ca_files(dir.path(), "smtp");
    let smtp = SmtpPeer::start(
        dir.path(),
        "starttls",
        SmtpMode::StartTls,
        Some(&files),
        Some((USER, PASSWORD)),
    )
    .unwrap();
    let picture = jpeg();
    let t = target(smtp.port, MailTls::StartTls, &files.ca);
    assert_eq!(mail::send(&t, &message(), Some(&picture)).await, Delivery::Delivered);
    let got = smtp.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.auth.as_deref(), Some(USER), "AUTH was used");
    assert!(m.tls, "the message came over the encrypted connection");
    assert_eq!(m.rcpt, vec!["guard@example.org".to_string()]);
    assert!(m.data.contains("Message-ID: <tandem-test-1@tandem>"), "{}", m.data);
    let p = parts(&m.data);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].0, "text/plain");
    assert_eq!(String::from_utf8_lossy(&p[0].2).trim(), "Motion on channel 1 (Yard)");
    assert_eq!(
        (p[1].0.as_str(), p[1].1.as_deref()),
        ("image/jpeg", Some("snapshot-12.jpg"))
    );
    assert_eq!(p[1].2, picture, "the attachment is the snapshot, byte for byte");
    assert!(decodes(dir.path(), &p[1].2), "the attached JPEG decodes");

    // The wrong password: refused for good, with the server's reply.
    let mut wrong = t.clone();
    wrong.password.as_mut().unwrap().value = "nope".into();
    match mail::send(&wrong, &message(), None).await {
        Delivery::Fail(e) => assert!(
            e.contains("535") && e.contains(&format!("127.0.0.1:{}", smtp.port)),
            "{e}"
        ),
        d => panic!("a refused login must fail, not {d:?}"),
    }
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn mail_over_implicit_tls_is_delivered() {
    if !have_smtp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_ca, files) = ca_files(dir.path(), "smtps");
    let smtp = SmtpPeer::start(
        dir.path(),
        "implicit",
        SmtpMode::Implicit,
        Some(&files),
        Some((USER, PASSWORD)),
    )
    .unwrap();
    let t = target(smtp.port, MailTls::Implicit, &files.ca);
    assert_eq!(mail::send(&t, &message(), None).await, Delivery::Delivered);
    let got = smtp.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].tls && got[0].auth.as_deref() == Some(USER), "{:?}", got[0]);
    // Speaking STARTTLS to an SMTPS port gets no answer it understands:
    // not delivered (retried, the port may be misconfigured for a while).
    let plain = target(smtp.port, MailTls::StartTls, &files.ca);
    assert_ne!(mail::send(&plain, &message(), None).await, Delivery::Delivered);
}

#[tokio::test]
async fn a_mail_server_with_an_untrusted_certificate_is_refused() {
    if !have_smtp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_site, site) = ca_files(dir.path(), "site");
    let (_other, other) = ca_files(dir.path(), "other");
    // The server presents a certificate of another CA than the action trusts.
    let smtp = SmtpPeer::start(
        dir.path(),
        "rogue",
        SmtpMode::StartTls,
        Some(&other),
        Some((USER, PASSWORD)),
    )
    .unwrap();
    let t = target(smtp.port, MailTls::StartTls, &site.ca);
    match mail::send(&t, &message(), None).await {
        Delivery::Fail(e) => assert!(
            e.contains(&format!("certificate not trusted (ca_file {})", site.ca.display())),
            "{e}"
        ),
        d => panic!("an untrusted server must fail, not {d:?}"),
    }
    let implicit = SmtpPeer::start(dir.path(), "rogue-smtps", SmtpMode::Implicit, Some(&other), None).unwrap();
    let t = target(implicit.port, MailTls::Implicit, &site.ca);
    assert!(
        matches!(mail::send(&t, &message(), None).await, Delivery::Fail(e) if e.contains("certificate not trusted"))
    );
    assert!(smtp.messages().is_empty() && implicit.messages().is_empty());
}

#[tokio::test]
async fn starttls_required_refuses_a_server_that_does_not_offer_it() {
    if !have_smtp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_ca, files) = ca_files(dir.path(), "plain");
    let smtp = SmtpPeer::start(dir.path(), "plain", SmtpMode::Plain, None, Some((USER, PASSWORD))).unwrap();
    let t = target(smtp.port, MailTls::StartTls, &files.ca);
    match mail::send(&t, &message(), None).await {
        Delivery::Fail(e) => assert!(e.to_ascii_lowercase().contains("starttls"), "{e}"),
        d => panic!("{d:?}"),
    }
    assert!(
        smtp.messages().is_empty(),
        "no password or message went out in plain text"
    );
}

#[tokio::test]
async fn webhooks_over_https_carry_the_idempotency_key_and_refuse_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let (_site, site) = ca_files(dir.path(), "hook");
    let (_other, other) = ca_files(dir.path(), "stranger");
    let peer = HttpPeer::start(Some(tandem::alerts::testpeers::server_config(&site).unwrap())).unwrap();
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/hooks/nvr", peer.port)).unwrap();
    assert_eq!(
        webhook::send(&url, Some(&site.ca), &message()).await,
        Delivery::Delivered
    );
    // `localhost` is in the certificate as well.
    let by_name = url::Url::parse(&format!("https://localhost:{}/hooks/nvr", peer.port)).unwrap();
    assert_eq!(
        webhook::send(&by_name, Some(&site.ca), &message()).await,
        Delivery::Delivered
    );
    let got = peer.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("Idempotency-Key"), Some("tandem-test-1"));
    assert_eq!(got[0].header("Content-Type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(json, message().json);
    // A 503 is retried, a 404 is not.
    peer.answer_with(&[503, 404]);
    assert!(matches!(webhook::send(&url, Some(&site.ca), &message()).await, Delivery::Retry(e) if e.contains("503")));
    assert!(matches!(webhook::send(&url, Some(&site.ca), &message()).await, Delivery::Fail(e) if e.contains("404")));

    // A listener with a certificate of another CA: refused, nothing sent.
    let stranger = HttpPeer::start(Some(tandem::alerts::testpeers::server_config(&other).unwrap())).unwrap();
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/hooks/nvr", stranger.port)).unwrap();
    match webhook::send(&url, Some(&site.ca), &message()).await {
        Delivery::Fail(e) => assert!(e.contains("certificate not trusted (ca_file"), "{e}"),
        d => panic!("{d:?}"),
    }
    assert!(stranger.requests().is_empty());
}

/// One NVR, one event, three encrypted transports: MQTT to mosquitto's TLS
/// listener with a client certificate, a webhook over HTTPS, and mail over
/// STARTTLS with AUTH.
#[test]
fn an_nvr_sends_its_alerts_over_tls() {
    if !prerequisite(
        MosquittoPeer::available(),
        "the mosquitto MQTT broker (Debian package mosquitto)",
    ) || !have_smtp()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, files) = ca_files(dir.path(), "site");
    let (client_pem, client_key) = ca.issue(&["nvr-a"]).unwrap();
    let (ccert, ckey) = (dir.path().join("nvr.pem"), dir.path().join("nvr.key"));
    std::fs::write(&ccert, client_pem).unwrap();
    std::fs::write(&ckey, client_key).unwrap();
    let broker = MosquittoPeer::start(dir.path(), &files, true).unwrap();
    let smtp = SmtpPeer::start(
        dir.path(),
        "nvr",
        SmtpMode::StartTls,
        Some(&files),
        Some((USER, PASSWORD)),
    )
    .unwrap();
    let hook = HttpPeer::start(Some(tandem::alerts::testpeers::server_config(&files).unwrap())).unwrap();
    let sub = MqttSubscriber::start(broker.port, &files.ca, Some((&ccert, &ckey)), "tls-site/+/events").unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "10", "--gop", "10"]);
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[mqtt]
broker = "mqtts://localhost:{mport}"
ca_file = "{ca}"
client_cert = "{ccert}"
client_key = "{ckey}"
topic_prefix = "tls-site"
[[network_camera]]
name = "yard"
url = "{url}"
[[channel]]
number = 1
camera = "yard"
[[action]]
type = "mqtt"
min_interval = "0s"
events = ["doorbell"]
[[action]]
type = "webhook"
url = "https://127.0.0.1:{wport}/hook"
ca_file = "{ca}"
min_interval = "0s"
events = ["doorbell"]
[[action]]
type = "email"
smtp = "smtp://127.0.0.1:{sport}"
tls = "starttls"
ca_file = "{ca}"
username = "{USER}"
password = "{PASSWORD}"
from = "nvr@example.org"
to = ["guard@example.org"]
min_interval = "0s"
events = ["doorbell"]
"#,
        data = dir.path().join("data").display(),
        mport = broker.port,
        ca = files.ca.display(),
        ccert = ccert.display(),
        ckey = ckey.display(),
        url = urls[0],
        wport = hook.port,
        sport = smtp.port,
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "channel 1 recording", || {
        frames_written(&nvr.base, 1) > 20
    });
    let body = br#"{"type":"doorbell","action":"pulse","duration":1,"source":"front"}"#;
    let r = http_request(
        "POST",
        &format!("{}/api/v1/channels/1/events", nvr.base),
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    wait_for(Duration::from_secs(20), "the alerts over MQTT, HTTPS and SMTP", || {
        !sub.received.lock().unwrap().is_empty() && !hook.requests().is_empty() && !smtp.messages().is_empty()
    });
    let mqtt = sub.received.lock().unwrap()[0].clone();
    let status = http_get(&format!("{}/api/v1/status", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    let nvr_id = status["nvr_id"].as_str().unwrap();
    assert_eq!(mqtt.topic, format!("tls-site/{nvr_id}/events"));
    let json: serde_json::Value = serde_json::from_slice(&mqtt.payload).unwrap();
    assert_eq!(json["type"], "doorbell", "{json}");
    let h = &hook.requests()[0];
    assert!(h.header("Idempotency-Key").is_some_and(|k| !k.is_empty()), "{h:?}");
    let hj: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(hj["type"], "doorbell", "{hj}");
    let m = &smtp.messages()[0];
    assert!(m.tls && m.auth.as_deref() == Some(USER), "{m:?}");
    assert!(m.data.contains("@tandem>"), "{}", m.data);
}

/// The outbox hands the event's picture to the mail transport: the NVR's
/// mail carries it as a decodable `image/jpeg`.
#[test]
fn an_nvr_mail_carries_the_event_snapshot() {
    if !have_smtp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_ca, files) = ca_files(dir.path(), "site");
    let smtp = SmtpPeer::start(
        dir.path(),
        "snap",
        SmtpMode::StartTls,
        Some(&files),
        Some((USER, PASSWORD)),
    )
    .unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "10", "--gop", "10"]);
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[[network_camera]]
name = "yard"
url = "{url}"
[[channel]]
number = 1
camera = "yard"
[[action]]
type = "email"
smtp = "smtp://localhost:{sport}"
tls = "starttls"
ca_file = "{ca}"
username = "{USER}"
password = "{PASSWORD}"
from = "nvr@example.org"
to = ["guard@example.org"]
snapshot = true
events = ["doorbell"]
"#,
        data = dir.path().join("data").display(),
        url = urls[0],
        sport = smtp.port,
        ca = files.ca.display(),
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "channel 1 recording", || {
        frames_written(&nvr.base, 1) > 20
    });
    let body = br#"{"type":"doorbell","action":"pulse","duration":1,"source":"front"}"#;
    let r = http_request(
        "POST",
        &format!("{}/api/v1/channels/1/events", nvr.base),
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 202);
    wait_for(Duration::from_secs(30), "the mail", || !smtp.messages().is_empty());
    let m = &smtp.messages()[0];
    let p = parts(&m.data);
    let jpeg = p
        .iter()
        .find(|(t, _, _)| t == "image/jpeg")
        .unwrap_or_else(|| panic!("no image/jpeg part: {p:?}"));
    assert!(
        jpeg.1
            .as_deref()
            .is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".jpg")),
        "{jpeg:?}"
    );
    assert!(decodes(dir.path(), &jpeg.2), "the attached JPEG decodes");
}

/// A broker whose certificate the NVR's `ca_file` does not vouch for: no
/// connection, said once in the log in an operator's words.
#[test]
fn an_nvr_refuses_an_mqtt_broker_it_does_not_trust() {
    if !prerequisite(
        MosquittoPeer::available(),
        "the mosquitto MQTT broker (Debian package mosquitto)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_site, site) = ca_files(dir.path(), "site");
    let (_other, other) = ca_files(dir.path(), "other");
    let broker = MosquittoPeer::start(dir.path(), &other, false).unwrap();
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [mqtt]\nbroker = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\n",
        dir.path().join("data").display(),
        broker.port,
        site.ca.display()
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    let want = format!(
        "MQTT broker refused: certificate not trusted (ca_file {})",
        site.ca.display()
    );
    wait_for(Duration::from_secs(15), "the refusal in the log", || {
        nvr.proc.stderr().contains(&want)
    });
    // Reconnecting every 2 s does not repeat it.
    std::thread::sleep(Duration::from_secs(5));
    let log = nvr.proc.stderr();
    assert_eq!(log.matches(&want).count(), 1, "{log}");
    assert!(!log.contains("MQTT connected"), "{log}");
}

/// A `ca_file` that is a file but not a certificate: the MQTT client is not
/// started at all (never plain TCP instead), and the log names the file.
#[test]
fn an_unusable_mqtt_ca_file_starts_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("not-a-ca.pem");
    std::fs::write(&ca, "hello\n").unwrap();
    // A plain TCP listener where the broker would be: it must see no client.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [mqtt]\nbroker = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\n",
        dir.path().join("data").display(),
        l.local_addr().unwrap().port(),
        ca.display()
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    let want = format!("MQTT over TLS not started: ca_file {}", ca.display());
    wait_for(Duration::from_secs(10), "the reason in the log", || {
        nvr.proc.stderr().contains(&want)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(l.accept().is_err(), "the NVR connected to the broker without TLS");
}
