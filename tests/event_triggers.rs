//! Event triggers and actions with real peers: a sensor's HTTP pulse and an
//! MQTT door contact (through a real mosquitto broker) start event
//! recordings; every event is published over MQTT (JSON, Home Assistant
//! state and discovery), POSTed to a webhook and mailed through a real SMTP
//! server (aiosmtpd), with rate limiting holding back a flapping door.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

fn mosquitto(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let p = spawn(
        "mosquitto",
        Command::new("/usr/sbin/mosquitto").arg("-c").arg(&conf),
        dir,
    );
    wait_for(Duration::from_secs(10), "mosquitto", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (p, port)
}

fn smtp_sink(dir: &Path) -> (Proc, u16, std::path::PathBuf) {
    let port = free_port();
    let out = dir.join("mail.txt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script).arg(port.to_string()).arg(&out).stdout(Stdio::piped());
    let mut p = spawn("smtp-sink", &mut cmd, dir);
    let mut line = String::new();
    BufReader::new(p.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "smtp sink: {}", p.stderr());
    (p, port, out)
}

/// A webhook receiver: records each request body, answers 200.
fn webhook() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
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
                got2.lock().unwrap().push(v);
            }
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

/// (topic, payload) of every message heard, in order.
type Heard = Arc<Mutex<Vec<(String, String)>>>;

/// Subscribes to everything; returns what arrives.
fn mqtt_listener(port: u16) -> (Client, Heard) {
    let mut o = MqttOptions::new("test-listener", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    // The channels' snapshot topics carry JPEGs.
    o.set_max_packet_size(2 << 20, 10 * 1024);
    let (client, mut conn) = Client::new(o, 64);
    client.subscribe("#", QoS::AtLeastOnce).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => got2
                    .lock()
                    .unwrap()
                    .push((p.topic.clone(), String::from_utf8_lossy(&p.payload).to_string())),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    (client, got)
}

fn recordings(base: &str, ch: u32) -> Vec<serde_json::Value> {
    let url = format!(
        "{base}/api/v1/channels/{ch}/recordings?start={}&end={}",
        rfc3339_offset(-600.0),
        rfc3339_offset(600.0)
    );
    http_get(&url).unwrap().json().unwrap()["recordings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn run_seconds(r: &serde_json::Value) -> f64 {
    let t = |k: &str| {
        tandem::time::Time90k::parse_rfc3339(r[k].as_str().unwrap())
            .unwrap()
            .as_secs_f64()
    };
    t("end") - t("start")
}

#[test]
fn triggers_start_recordings_and_every_action_delivers() {
    let have_broker = prerequisite(
        Path::new("/usr/sbin/mosquitto").exists(),
        "the mosquitto MQTT broker (Debian package mosquitto)",
    );
    let have_smtp = prerequisite(
        Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success()),
        "aiosmtpd (Debian package python3-aiosmtpd)",
    );
    if !have_broker || !have_smtp {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_broker, mport) = mosquitto(dir.path());
    let (_smtp, sport, mail) = smtp_sink(dir.path());
    let (wport, hooks) = webhook();
    let (listener, heard) = mqtt_listener(mport);
    let (_cam, urls) = sim_camera(dir.path(), 2, &["--fps", "10", "--gop", "10"]);
    let data = dir.path().join("data");
    let cfg = format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[mqtt]
broker = "mqtt://127.0.0.1:{mport}"
[[network_camera]]
name = "lobby"
url = "{u1}"
[[network_camera]]
name = "back-door"
url = "{u2}"
[[channel]]
number = 1
camera = "lobby"
[channel.recording]
mode = "events"
pre = "2s"
post = "3s"
[[channel]]
number = 2
camera = "back-door"
[channel.recording]
mode = "events"
pre = "2s"
post = "3s"
[[trigger]]
channel = 2
type = "door"
mqtt_topic = "site/back-door"
payload_start = "open"
payload_stop = "closed"
[[action]]
type = "mqtt"
min_interval = "0s"
[[action]]
type = "webhook"
url = "http://127.0.0.1:{wport}/hook"
events = ["door", "doorbell"]
[[action]]
type = "email"
smtp = "smtp://127.0.0.1:{sport}"
from = "nvr@example.com"
to = ["guard@example.com"]
events = ["door"]
min_interval = "10m"
"#,
        data = data.display(),
        u1 = urls[0],
        u2 = urls[1],
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    let status = http_get(&format!("{}/api/v1/status", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    let nvr_id = status["nvr_id"].as_str().unwrap().to_string();
    // Let the pre-event buffers fill; nothing is recorded without an event.
    std::thread::sleep(Duration::from_secs(4));
    assert!(recordings(&nvr.base, 1).is_empty() && recordings(&nvr.base, 2).is_empty());
    let status = http_get(&format!("{}/api/v1/status", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["channels"][0]["mode"], "events");
    assert_eq!(
        status["channels"][0]["live"], true,
        "events mode counts as live for failback"
    );

    // HTTP: a doorbell pulses channel 1 for one second.
    let body = br#"{"type":"doorbell","action":"pulse","duration":1,"source":"front"}"#;
    let r = http_request(
        "POST",
        &format!("{}/api/v1/channels/1/events", nvr.base),
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    wait_for(Duration::from_secs(5), "channel 1 recording", || {
        !recordings(&nvr.base, 1).is_empty()
    });

    // MQTT: the back door opens for 2 s, then flaps three times.
    let publish = |p: &str| {
        listener.publish("site/back-door", QoS::AtLeastOnce, false, p).unwrap();
    };
    publish("open");
    wait_for(Duration::from_secs(5), "channel 2 recording", || {
        !recordings(&nvr.base, 2).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    publish("closed");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        publish("open");
        std::thread::sleep(Duration::from_millis(300));
        publish("closed");
    }
    publish("garbage");
    // Post time (3 s) runs out on both channels.
    std::thread::sleep(Duration::from_secs(6));

    // Channel 1: one run of ≈ pre (up to one GOP more) + 1 s pulse + 3 s post.
    let r1 = recordings(&nvr.base, 1);
    assert_eq!(r1.len(), 1, "{r1:?}");
    let secs = run_seconds(&r1[0]);
    assert!((5.0..=7.2).contains(&secs), "channel 1 run of {secs:.2} s");
    // Channel 2: the door's events merged into one run ending 3 s after the last close.
    let r2 = recordings(&nvr.base, 2);
    assert_eq!(r2.len(), 1, "{r2:?}");
    let secs = run_seconds(&r2[0]);
    assert!((8.5..=12.0).contains(&secs), "channel 2 run of {secs:.2} s");

    // Events are searchable by channel and type.
    let ev = http_get(&format!("{}/api/v1/events?channel=2&type=door", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    let ev = ev["events"].as_array().unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(ev
        .iter()
        .all(|e| e["end"].is_string() && e["details"]["topic"] == "site/back-door"));
    let ev1 = http_get(&format!("{}/api/v1/events?type=doorbell", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ev1["events"].as_array().unwrap().len(), 1);
    assert_eq!(ev1["events"][0]["channel"], 1);

    // MQTT publishing: JSON events, Home Assistant state and discovery.
    wait_for(Duration::from_secs(10), "MQTT deliveries", || {
        heard
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == format!("tandem/{nvr_id}/events"))
            .count()
            >= 10
    });
    let heard = heard.lock().unwrap().clone();
    let events: Vec<serde_json::Value> = heard
        .iter()
        .filter(|(t, _)| *t == format!("tandem/{nvr_id}/events"))
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect();
    assert!(events
        .iter()
        .any(|e| e["type"] == "door" && e["phase"] == "start" && e["channel"] == 2));
    assert!(events.iter().any(|e| e["type"] == "doorbell" && e["phase"] == "end"));
    let state: Vec<&str> = heard
        .iter()
        .filter(|(t, _)| *t == format!("tandem/{nvr_id}/channel/2/door"))
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(state.first(), Some(&"ON"));
    assert_eq!(state.last(), Some(&"OFF"));
    assert!(heard.iter().any(|(t, p)| t.starts_with("homeassistant/binary_sensor/")
        && t.ends_with("_ch2_door/config")
        && p.contains("\"device_class\":\"door\"")));
    assert!(heard
        .iter()
        .any(|(t, p)| *t == format!("tandem/{nvr_id}/status") && p == "online"));

    // Webhook: the doorbell and the first door event (start and end); the
    // flapping is rate limited (default 60 s per channel and type).
    let hooks = hooks.lock().unwrap().clone();
    let kinds: Vec<(String, String)> = hooks
        .iter()
        .map(|h| (h["type"].as_str().unwrap().into(), h["phase"].as_str().unwrap().into()))
        .collect();
    assert_eq!(hooks.len(), 4, "{kinds:?}");
    assert!(hooks.iter().all(|h| h["nvr"] == nvr_id.as_str()));
    // E-mail: exactly one message, for the first door opening.
    let text = std::fs::read_to_string(&mail).unwrap();
    assert_eq!(text.matches("----").count(), 2, "one start and its end: {text}");
    // Named by the NVR (no `[nvr] name`: this host's name) and the channel's name.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        text.contains(&format!("Subject: {}: door started on Channel 2", host.trim())),
        "{text}"
    );
    assert!(text.contains("RCPT TO guard@example.com"));
    let actions = http_get(&format!("{}/api/v1/actions", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    let email = &actions["actions"][2];
    assert_eq!(email["rate_limited"], 3, "{actions}");
    assert_eq!(email["failed"], 0);
    assert!(nvr.proc.stderr().contains("neither start nor stop"));
}
