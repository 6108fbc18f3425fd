//! SMS alerts through every route a site may have: a real Kannel
//! (bearerbox + smsbox + its fake SMSC) behind a running NVR, a
//! Twilio-style API on a local listener (form, Basic auth, a 500 retried,
//! a gateway that never recovers given up after `retry_for`, over-long
//! texts split or truncated) and a
//! GSM modem simulated on a pseudo-terminal pair (PIN prompt, an ERROR that
//! must be retried, GSM and UCS-2 text).

#[path = "../common/mod.rs"]
mod common;
mod modem_sim;
use common::*;
use modem_sim::{modem, pty};

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::alerts::{Delivery, Message};
use tandem::config::{Secret, SecretSource, SmsOverflow, SmsProvider, SmsTarget};

fn message(body: &str) -> Message {
    Message {
        id: "tandem-test-1".into(),
        subject: "test".into(),
        body: body.into(),
        json: serde_json::json!({}),
        event_id: None,
    }
}

fn secret(v: &str) -> Secret {
    Secret {
        value: v.into(),
        source: SecretSource::Inline,
    }
}

fn target(provider: SmsProvider, max_segments: u32, overflow: SmsOverflow) -> SmsTarget {
    SmsTarget {
        provider,
        to: vec!["+4915112345678".into()],
        max_segments,
        overflow,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One request a gateway listener received.
#[derive(Clone, Debug)]
struct Heard {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Heard {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    fn form(&self, k: &str) -> Option<String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    }
}

/// A Twilio-style API on loopback: answers the n-th request (from 0) with
/// `status(n)` and records every request.
fn listener(status: impl Fn(usize) -> u16 + Send + 'static) -> (u16, Arc<Mutex<Vec<Heard>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    std::thread::spawn(move || {
        for (n, s) in l.incoming().enumerate() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let (head_end, len) = loop {
                let Ok(k) = s.read(&mut buf) else { break (0, 0) };
                if k == 0 {
                    break (0, 0);
                }
                raw.extend_from_slice(&buf[..k]);
                if let Some(e) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..e]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (e + 4, len);
                }
            };
            if head_end == 0 {
                continue;
            }
            while raw.len() < head_end + len {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => raw.extend_from_slice(&buf[..k]),
                }
            }
            let head = String::from_utf8_lossy(&raw[..head_end - 4]).to_string();
            let mut lines = head.split("\r\n");
            let first: Vec<String> = lines.next().unwrap_or("").split(' ').map(String::from).collect();
            h.lock().unwrap().push(Heard {
                method: first.first().cloned().unwrap_or_default(),
                path: first.get(1).cloned().unwrap_or_default(),
                headers: lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect(),
                body: String::from_utf8_lossy(&raw[head_end..]).to_string(),
            });
            let code = status(n);
            let body = match code {
                201 => r#"{"sid":"SM1","status":"queued"}"#,
                _ => r#"{"code":20500,"message":"Internal Server Error","status":500}"#,
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, heard)
}

fn twilio(port: u16) -> SmsProvider {
    SmsProvider::Twilio {
        url: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        account: "AC0123456789".into(),
        token: secret("tok-0123456789"),
        from: "+15550001111".into(),
    }
}

fn api_actions(base: &str) -> serde_json::Value {
    http_get(&format!("{base}/api/v1/actions")).unwrap().json().unwrap()
}

/// A door contact `source` closes for `seconds` on channel 1.
fn door_pulse(base: &str, seconds: u32, source: &str) {
    let body = format!(r#"{{"type":"door","action":"pulse","duration":{seconds},"source":"{source}"}}"#);
    let r = http_request(
        "POST",
        &format!("{base}/api/v1/channels/1/events"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

/// An NVR with one camera on channel 1 "Lobby" and `action` as its only
/// `[[action]]` table.
fn nvr_with_action(dir: &Path, action: &str) -> (Proc, Nvr) {
    let (cam, urls) = sim_camera(dir, 1, &["--fps", "10", "--gop", "10"]);
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"cam1\"\nurl = \"{}\"\n[[channel]]\nnumber = 1\nname = \"Lobby\"\ncamera = \"cam1\"\n\
         [[action]]\n{action}\n",
        dir.join("data").display(),
        urls[0]
    );
    let n = nvr(dir, "nvr", &cfg);
    (cam, n)
}

#[test]
fn twilio_gets_the_form_with_basic_auth_and_a_500_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (port, heard) = listener(|n| if n == 0 { 500 } else { 201 });
    let (_cam, nvr) = nvr_with_action(
        dir.path(),
        &format!(
            "name = \"sms\"\ntype = \"sms\"\nprovider = \"twilio\"\nurl = \"http://127.0.0.1:{port}\"\n\
             account = \"AC0123456789\"\ntoken = \"tok-0123456789\"\nfrom = \"+15550001111\"\n\
             to = [\"+15552223333\"]\nevents = [\"door\"]\ntemplate = \"{{type}} at channel {{channel}}\""
        ),
    );
    let t0 = Instant::now();
    door_pulse(&nvr.base, 30, "front");
    wait_for(Duration::from_secs(15), "the retried SMS request", || {
        heard.lock().unwrap().len() >= 2
    });
    let latency = t0.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 2, "one 500, one retry, nothing more: {heard:?}");
    for h in &heard {
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/2010-04-01/Accounts/AC0123456789/Messages.json");
        // base64("AC0123456789:tok-0123456789")
        assert_eq!(
            h.header("authorization"),
            Some("Basic QUMwMTIzNDU2Nzg5OnRvay0wMTIzNDU2Nzg5")
        );
        assert_eq!(h.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(h.form("To").as_deref(), Some("+15552223333"));
        assert_eq!(h.form("From").as_deref(), Some("+15550001111"));
        assert_eq!(h.form("Body").as_deref(), Some("door at channel 1"));
    }
    let a = api_actions(&nvr.base);
    assert_eq!(a["actions"][0]["delivered"], 1, "{a}");
    assert_eq!(a["actions"][0]["retries"], 1, "{a}");
    println!("twilio: event → second (retried) request in {latency:?}");
}

#[test]
fn a_gateway_that_always_answers_500_is_given_up_after_retry_for() {
    let dir = tempfile::tempdir().unwrap();
    let (port, heard) = listener(|_| 500);
    let (_cam, nvr) = nvr_with_action(
        dir.path(),
        &format!(
            "name = \"sms\"\ntype = \"sms\"\nprovider = \"twilio\"\nurl = \"http://127.0.0.1:{port}\"\n\
             account = \"AC0123456789\"\ntoken = \"tok-0123456789\"\nfrom = \"+15550001111\"\n\
             to = [\"+15552223333\"]\nevents = [\"door\"]\nretry_for = \"3s\""
        ),
    );
    door_pulse(&nvr.base, 60, "front");
    let mut a = serde_json::Value::Null;
    wait_for(Duration::from_secs(20), "the SMS given up", || {
        a = api_actions(&nvr.base)["actions"][0].clone();
        a["failed"] == 1
    });
    assert_eq!(a["delivered"], 0, "{a}");
    assert_eq!(a["outbox"]["failed"], 1, "{a}");
    assert!(a["retries"].as_u64() >= Some(1), "{a}");
    let err = a["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("HTTP 500"), "the gateway's answer is named: {a}");
    assert!(!err.contains("tok-0123456789"), "never the token: {a}");
    let tries = heard.lock().unwrap().len();
    assert!((2..=5).contains(&tries), "retried with backoff within 3 s: {tries}");
    // Given up means no more requests.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(heard.lock().unwrap().len(), tries);
    let ev = http_get(&format!("{}/api/v1/events?type=delivery_failed", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ev["events"].as_array().map(Vec::len), Some(1), "{ev}");
}

#[test]
fn a_failing_or_absent_gateway_is_retried_and_a_refused_token_fails() {
    // Each attempt's verdict is the transport's: a 500 is always worth
    // another try (the outbox gives up after `retry_for`, above).
    let (port, heard) = listener(|_| 500);
    let rt = runtime();
    let t = target(twilio(port), 1, SmsOverflow::Truncate);
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message("door at Lobby")));
    assert_eq!(
        d,
        Delivery::Retry("to +4915112345678: the SMS API answered HTTP 500: \"Internal Server Error\"".into())
    );
    assert_eq!(heard.lock().unwrap().len(), 1);
    // A gateway that is not there: retried, naming it.
    // A gateway that is not there: retried, naming it, and the second
    // recipient is not tried against it.
    let mut t = target(twilio(free_port()), 1, SmsOverflow::Truncate);
    t.to.push("+4915200000000".into());
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message("x")));
    assert!(
        matches!(&d, Delivery::Retry(e) if e.starts_with("to +4915112345678: the SMS API at 127.0.0.1 unreachable")
            && !e.contains("+4915200000000")),
        "{d:?}"
    );
    // Two recipients, both answered 500: both tried, both named.
    let (port, heard) = listener(|_| 500);
    let mut t = target(twilio(port), 1, SmsOverflow::Truncate);
    t.to.push("+4915200000000".into());
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message("x")));
    assert!(
        matches!(&d, Delivery::Retry(e) if e.contains("to +4915200000000: ")),
        "{d:?}"
    );
    assert_eq!(heard.lock().unwrap().len(), 2);
    // A 401 (wrong token) is permanent.
    let (port, _) = listener(|_| 401);
    let d = rt.block_on(tandem::alerts::sms::send(
        &target(twilio(port), 1, SmsOverflow::Truncate),
        &message("x"),
    ));
    assert!(matches!(&d, Delivery::Fail(e) if e.contains("HTTP 401")), "{d:?}");
}

#[test]
fn an_over_long_sms_is_split_or_truncated_as_configured() {
    let rt = runtime();
    let text = "Motion on Lobby ".repeat(25); // 400 characters, GSM-7
    let (port, heard) = listener(|_| 201);
    let d = rt.block_on(tandem::alerts::sms::send(
        &target(twilio(port), 1, SmsOverflow::Split),
        &message(&text),
    ));
    assert_eq!(d, Delivery::Delivered);
    let bodies: Vec<String> = heard.lock().unwrap().iter().map(|h| h.form("Body").unwrap()).collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(bodies
        .iter()
        .all(|b| b.chars().count() <= 160 && b.starts_with("Motion")));
    assert_eq!(bodies.join(" "), text.trim_end(), "cut at spaces, nothing lost");

    let (port, heard) = listener(|_| 201);
    let t = target(twilio(port), 2, SmsOverflow::Truncate);
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message(&text)));
    assert_eq!(d, Delivery::Delivered);
    let bodies: Vec<String> = heard.lock().unwrap().iter().map(|h| h.form("Body").unwrap()).collect();
    assert_eq!(bodies.len(), 1);
    assert!(
        bodies[0].ends_with("...") && bodies[0].chars().count() <= 306,
        "{bodies:?}"
    );
    assert!(bodies[0].chars().count() > 280, "cut near the limit: {bodies:?}");
}

// ---- Kannel -------------------------------------------------------------

const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";

/// bearerbox + smsbox + fakesmsc on free loopback ports; the sendsms URL.
fn kannel(dir: &Path) -> (Vec<Proc>, String, PathBuf) {
    let (admin, boxp, smsc, sendsms) = (free_port(), free_port(), free_port(), free_port());
    let conf = dir.join("kannel.conf");
    std::fs::write(
        &conf,
        format!(
            "group = core\nadmin-port = {admin}\nadmin-password = adm\nsmsbox-port = {boxp}\n\
             box-allow-ip = 127.0.0.1\nlog-file = \"{d}/bearerbox.log\"\nlog-level = 1\n\n\
             group = smsc\nsmsc = fake\nsmsc-id = fake\nport = {smsc}\nconnect-allow-ip = 127.0.0.1\n\n\
             group = smsbox\nbearerbox-host = 127.0.0.1\nbearerbox-port = {boxp}\nsendsms-port = {sendsms}\n\
             log-file = \"{d}/smsbox.log\"\nlog-level = 1\n\n\
             group = sendsms-user\nusername = tandem\npassword = kannel-secret\ndefault-sender = 4930123\n\
             max-messages = 10\nconcatenation = true\n\n\
             group = sms-service\nkeyword = default\ntext = \"unused\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let bearer = spawn("bearerbox", Command::new("bearerbox").arg(&conf), dir);
    wait_for(Duration::from_secs(10), "bearerbox", || {
        std::net::TcpStream::connect(("127.0.0.1", boxp)).is_ok()
    });
    let smsbox = spawn("smsbox", Command::new("smsbox").arg(&conf), dir);
    // `-m 0`: send nothing, print every message the bearerbox delivers.
    let fake = spawn(
        "fakesmsc",
        Command::new(FAKESMSC).args(["-H", "127.0.0.1", "-r", &smsc.to_string(), "-m", "0", "1 2 text unused"]),
        dir,
    );
    wait_for(Duration::from_secs(10), "smsbox's sendsms port", || {
        std::net::TcpStream::connect(("127.0.0.1", sendsms)).is_ok()
    });
    let received = fake.stderr_path.clone();
    (
        vec![fake, smsbox, bearer],
        format!("http://127.0.0.1:{sendsms}/cgi-bin/sendsms"),
        received,
    )
}

/// The messages fakesmsc printed: "from to text|ucs-2 TEXT".
fn delivered(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("Got message ").map(|(_, r)| r.to_string()))
        .filter_map(|r| r.split_once(": <").map(|(_, m)| m.trim_end_matches('>').to_string()))
        .collect()
}

#[test]
fn a_door_event_sends_one_sms_through_a_real_kannel() {
    let have = have_program("bearerbox") && have_program("smsbox") && Path::new(FAKESMSC).exists();
    if !prerequisite(have, "kannel and kannel-extras (bearerbox, smsbox, fakesmsc)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_kannel, url, log) = kannel(dir.path());
    let (_cam, nvr) = nvr_with_action(
        dir.path(),
        &format!(
            "name = \"sms\"\ntype = \"sms\"\nprovider = \"kannel\"\nurl = \"{url}\"\nusername = \"tandem\"\n\
             password = \"kannel-secret\"\nto = [\"+4915112345678\"]\nevents = [\"door\"]\nmin_interval = \"0s\"\n\
             template = \"Tandem: {{type}} {{phase}} on channel {{channel}}\""
        ),
    );
    // A long pulse: only its start is announced while the test watches.
    let first = sms_latency(&nvr.base, &log, "front", 1);
    std::thread::sleep(Duration::from_secs(3));
    let got = delivered(&log);
    assert_eq!(
        got,
        vec!["4930123 +4915112345678 text Tandem: door started on channel 1".to_string()],
        "exactly one SMS with the templated text"
    );
    let a = api_actions(&nvr.base);
    assert_eq!(a["actions"][0]["delivered"], 1, "{a}");
    // Alert latency: more doors (each its own event), one SMS each.
    let runs: Vec<(Duration, Duration)> = std::iter::once(first)
        .chain((2..=8).map(|n| sms_latency(&nvr.base, &log, &format!("door-{n}"), n)))
        .collect();
    let p50_max = |mut v: Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (p50, max) = p50_max(runs.iter().map(|r| r.0).collect());
    let (api50, api_max) = p50_max(runs.iter().map(|r| r.1).collect());
    println!(
        "kannel: event stored → SMS at the fake SMSC over {} events: p50 {p50:?}, max {max:?} \
         (the trigger call itself: p50 {api50:?}, max {api_max:?})",
        runs.len()
    );
    assert!(p50 < Duration::from_secs(1), "the target is ≤ 1 s: {runs:?}");
}

/// Pulses door `source` and waits until the fake SMSC has `count` SMS: how
/// long that took from the trigger call's return (the event is stored, as
/// `tandem bench alerts` measures) and the call's own duration.
fn sms_latency(base: &str, log: &Path, source: &str, count: usize) -> (Duration, Duration) {
    let t0 = Instant::now();
    door_pulse(base, 60, source);
    let stored = Instant::now();
    while delivered(log).len() < count {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "SMS {count} did not arrive: {:?}",
            delivered(log)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    (stored.elapsed(), stored - t0)
}

#[test]
fn kannel_with_wrong_credentials_fails_and_a_stopped_kannel_is_retried() {
    let have = have_program("bearerbox") && have_program("smsbox") && Path::new(FAKESMSC).exists();
    if !prerequisite(have, "kannel and kannel-extras (bearerbox, smsbox, fakesmsc)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, url, log) = kannel(dir.path());
    let rt = runtime();
    let route = |password: &str| {
        target(
            SmsProvider::Kannel {
                url: url::Url::parse(&url).unwrap(),
                username: "tandem".into(),
                password: secret(password),
            },
            1,
            SmsOverflow::Truncate,
        )
    };
    let d = rt.block_on(tandem::alerts::sms::send(&route("wrong"), &message("x")));
    assert!(matches!(&d, Delivery::Fail(e) if e.contains("HTTP 403")), "{d:?}");
    // UCS-2 text goes as coding 2 and arrives intact.
    let d = rt.block_on(tandem::alerts::sms::send(&route("kannel-secret"), &message("Tür 😀")));
    assert_eq!(d, Delivery::Delivered);
    wait_for(Duration::from_secs(10), "the UCS-2 SMS", || !delivered(&log).is_empty());
    assert_eq!(
        delivered(&log),
        vec!["4930123 +4915112345678 ucs-2 %00T%00%FC%00r%00+%D8%3D%DE%00".to_string()]
    );
    for p in &mut procs {
        p.kill();
    }
    let d = rt.block_on(tandem::alerts::sms::send(&route("kannel-secret"), &message("x")));
    assert!(matches!(&d, Delivery::Retry(e) if e.contains("unreachable")), "{d:?}");
}

// ---- GSM modem on a pseudo-terminal ---------------------------------------

fn modem_target(device: &Path, pin: Option<&str>) -> SmsTarget {
    target(
        SmsProvider::Modem {
            device: device.to_path_buf(),
            baud: 115_200,
            pin: pin.map(secret),
        },
        1,
        SmsOverflow::Split,
    )
}

#[test]
fn a_modem_on_a_pty_gets_the_pin_retries_an_error_and_sends_gsm_and_ucs2() {
    let (master, _slave, path) = pty();
    let sim = modem(master, 2, 0, 0);
    let rt = runtime();
    let t = modem_target(&path, Some("1234"));
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message("Door @ Lobby (channel 1)")));
    assert_eq!(d, Delivery::Delivered);
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message("Tür €5 😀")));
    assert_eq!(d, Delivery::Delivered);
    let log = sim.join().unwrap();
    assert_eq!(log.pin.as_deref(), Some("1234"));
    assert_eq!(
        log.commands.iter().filter(|c| *c == "AT+CMGF=1").count(),
        3,
        "the ERROR was retried, then the second dialogue set text mode again: {:?}",
        log.commands
    );
    assert_eq!(
        log.commands.iter().filter(|c| c.starts_with("AT+CPIN=")).count(),
        1,
        "the PIN is given once, while the SIM asks for it"
    );
    assert!(
        log.commands.iter().any(|c| c == "AT+CSCS=\"GSM\""),
        "{:?}",
        log.commands
    );
    assert!(
        log.commands.iter().any(|c| c == "AT+CSCS=\"UCS2\""),
        "{:?}",
        log.commands
    );
    // GSM 03.38: '@' is code 0.
    assert_eq!(log.sms[0].0, "+4915112345678");
    assert_eq!(log.sms[0].1, b"Door \x00 Lobby (channel 1)");
    // UCS-2: number and text in hex; € and the emoji force it on a modem.
    assert_eq!(log.sms[1].0, "002B0034003900310035003100310032003300340035003600370038");
    assert_eq!(
        String::from_utf8_lossy(&log.sms[1].1),
        "005400FC0072002020AC00350020D83DDE00"
    );
}

#[test]
fn a_modem_without_a_configured_pin_fails_and_a_missing_one_is_retried() {
    let (master, _slave, path) = pty();
    let sim = modem(master, 1, 0, 0);
    let rt = runtime();
    let d = rt.block_on(tandem::alerts::sms::send(&modem_target(&path, None), &message("x")));
    assert!(
        matches!(&d, Delivery::Fail(e) if e.contains("SIM wants a PIN")),
        "{d:?}"
    );
    let d = rt.block_on(tandem::alerts::sms::send(
        &modem_target(&path, Some("9999")),
        &message("x"),
    ));
    assert!(
        matches!(&d, Delivery::Fail(e) if e.contains("refused the PIN") && !e.contains("9999")),
        "{d:?}"
    );
    drop(sim);
    let gone = Path::new("/dev/ttyUSB-tandem-test-absent");
    let d = rt.block_on(tandem::alerts::sms::send(&modem_target(gone, None), &message("x")));
    assert_eq!(
        d,
        Delivery::Retry("modem /dev/ttyUSB-tandem-test-absent not present".into())
    );
}

#[test]
fn a_refused_sms_is_sent_again_and_two_senders_take_turns_on_one_modem() {
    let (master, _slave, path) = pty();
    // The first text refused once (sent again), then two alerts at once.
    let sim = modem(master, 3, 1, 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = modem_target(&path, Some("1234"));
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message("first")));
    assert_eq!(d, Delivery::Delivered);
    let (a, b) = rt.block_on(async {
        let (t1, t2) = (t.clone(), t.clone());
        let a = tokio::spawn(async move { tandem::alerts::sms::send(&t1, &message("second")).await });
        let b = tokio::spawn(async move { tandem::alerts::sms::send(&t2, &message("third")).await });
        (a.await.unwrap(), b.await.unwrap())
    });
    assert_eq!((a, b), (Delivery::Delivered, Delivery::Delivered));
    let log = sim.join().unwrap();
    let texts: Vec<&[u8]> = log.sms.iter().map(|(_, t)| &t[..]).collect();
    assert_eq!(texts[0], b"first");
    let rest = (texts[1], texts[2]);
    assert!(
        rest == (&b"second"[..], &b"third"[..]) || rest == (&b"third"[..], &b"second"[..]),
        "{texts:?}"
    );
    // One dialogue after another: each starts with AT and ends with its SMS
    // before the next AT.
    // Each dialogue first cancels a text entry a cancelled attempt may have
    // left open.
    assert_eq!(log.commands.iter().filter(|x| *x == "(escape)").count(), 3);
    let c: Vec<String> = log.commands.iter().filter(|x| *x != "(escape)").cloned().collect();
    let refused = c.iter().position(|x| x == "(refused text)").unwrap();
    assert!(
        c[refused + 1].starts_with("AT+CMGS="),
        "the refused text sent again: {c:?}"
    );
    let mut starts: Vec<usize> = c
        .iter()
        .enumerate()
        .filter(|(_, x)| *x == "AT")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 3, "{c:?}");
    starts.push(c.len());
    for w in starts.windows(2) {
        let one = &c[w[0]..w[1]];
        assert!(
            one.last().is_some_and(|x| x.starts_with("AT+CMGS=")),
            "interleaved: {c:?}"
        );
        let cmgf = if w[0] == 0 { 2 } else { 1 };
        assert_eq!(one.iter().filter(|x| *x == "AT+CMGF=1").count(), cmgf, "{c:?}");
    }
}

#[test]
fn a_modem_that_keeps_refusing_is_retried_later() {
    let (master, _slave, path) = pty();
    let _sim = modem(master, 1, usize::MAX, 0);
    let t = modem_target(&path, Some("1234"));
    let d = runtime().block_on(tandem::alerts::sms::send(&t, &message("x")));
    let device = path.display().to_string();
    assert!(
        matches!(&d, Delivery::Retry(e) if e.contains("answered +CMS ERROR: 500 3 times") && e.contains(&device)),
        "{d:?}"
    );
}

#[test]
fn an_attempt_cancelled_at_the_text_prompt_leaves_the_modem_usable() {
    let (master, _slave, path) = pty();
    let sim = modem(master, 1, 0, 1);
    let rt = runtime();
    let t = modem_target(&path, Some("1234"));
    // The outbox gives an attempt 30 s; here 3 s run out at the prompt.
    let cut = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), tandem::alerts::sms::send(&t, &message("lost"))).await
    });
    assert!(cut.is_err(), "the first attempt waits for a prompt that never comes");
    let d = rt.block_on(tandem::alerts::sms::send(&t, &message("again")));
    assert_eq!(d, Delivery::Delivered);
    let log = sim.join().unwrap();
    assert_eq!(log.sms, vec![("+4915112345678".to_string(), b"again".to_vec())]);
    let cancelled = log.commands.iter().position(|c| c == "(text cancelled)").unwrap();
    assert_eq!(log.commands[cancelled + 1], "AT", "{:?}", log.commands);
}

#[test]
fn alert_test_from_the_command_line_names_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tandem.toml");
    let (port, heard) = listener(|_| 201);
    std::fs::write(
        &cfg,
        format!(
            "[storage]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [[action]]\nname = \"pager\"\ntype = \"sms\"\nprovider = \"modem\"\ndevice = \"/dev/ttyUSB-tandem-test-absent\"\n\
             to = [\"+4915112345678\"]\n\
             [[action]]\nname = \"gateway\"\ntype = \"sms\"\nprovider = \"twilio\"\nurl = \"http://127.0.0.1:{port}\"\n\
             account = \"AC1\"\ntoken = \"t\"\nfrom = \"+1555\"\nto = [\"+4915112345678\"]\n",
            dir.path().join("data").display(),
            free_port()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let o = run_tandem(&["alert", "test", "pager", "--config", cfg]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("modem /dev/ttyUSB-tandem-test-absent not present"),
        "{err}"
    );
    let o = run_tandem(&["alert", "test", "gateway", "--config", cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 1);
    assert!(!heard[0].form("Body").unwrap_or_default().is_empty());
}

#[test]
fn an_https_gateway_whose_certificate_the_system_roots_refuse_is_failed_unsent() {
    use tandem::alerts::testpeers::{server_config, HttpPeer, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let files = TestCa::new("untrusted test CA")
        .unwrap()
        .write(dir.path(), "gw")
        .unwrap();
    let peer = HttpPeer::start(Some(server_config(&files).unwrap())).unwrap();
    let t = target(
        SmsProvider::Twilio {
            url: url::Url::parse(&format!("https://127.0.0.1:{}", peer.port)).unwrap(),
            account: "AC1".into(),
            token: secret("tok-secret"),
            from: "+1555".into(),
        },
        1,
        SmsOverflow::Truncate,
    );
    let d = runtime().block_on(tandem::alerts::sms::send(&t, &message("x")));
    assert!(
        matches!(&d, Delivery::Fail(e) if e.contains("certificate not trusted (the system roots)") && !e.contains("tok-secret")),
        "{d:?}"
    );
    assert!(
        peer.requests().is_empty(),
        "nothing sent before the certificate was checked"
    );
}
