//! `tandem bench alerts`: how long an alert takes from a stored event to the
//! receiver, per transport, and what the event's snapshot costs.
//!
//! One simulated camera recorded by the real binary, whose actions send
//! every `doorbell` event by mail (aiosmtpd, STARTTLS + AUTH), MQTT
//! (mosquitto's TLS listener), an HTTPS webhook and a Twilio-style SMS API,
//! all on loopback with certificates of a test CA (`alerts::testpeers`, the
//! same receivers the tests use). Events are triggered one at a time through
//! `POST /api/v1/channels/1/events`; the latency of a transport is from the
//! moment that call returned (the event is stored) to the receiver's own
//! timestamp of the message. Transports whose peer is not installed are
//! listed as skipped. The snapshot's cost is the thread CPU of
//! `snapshot::snapshot_at` (the first key frame at or after each event's
//! start, decoded, scaled to 640 px, encoded) on the stored footage.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use tandem::alerts::testpeers::{HttpPeer, MosquittoPeer, MqttSubscriber, SmtpMode, SmtpPeer, TestCa};
use tandem::time::Time90k;

use super::bench::{free_port, in_fresh_dir, start_cameras, wait_connected, write_config};

#[derive(clap::Args)]
pub struct AlertsArgs {
    /// Events triggered (one at a time).
    #[arg(long, default_value_t = 20)]
    events: u32,
    /// Where the run keeps its store, certificates and receivers' files (removed afterwards).
    #[arg(long, default_value = "bench-alerts-data")]
    dir: PathBuf,
    #[arg(long, default_value = "bench-alerts.json")]
    json: PathBuf,
}

const USER: &str = "bench";
const PASSWORD: &str = "bench-smtp-password";
/// How long one event's messages are waited for before it counts as lost.
const WAIT: Duration = Duration::from_secs(10);

#[derive(serde::Serialize)]
struct Row {
    transport: &'static str,
    delivered: usize,
    events: u32,
    latency_ms: Vec<f64>,
    p50_ms: f64,
    max_ms: f64,
}

#[derive(serde::Serialize)]
struct Results {
    transports: Vec<Row>,
    skipped: Vec<String>,
    snapshot_cpu_ms: Vec<f64>,
    snapshot_cpu_ms_p50: f64,
    snapshot_cpu_ms_max: f64,
}

/// What each receiver has received so far, as arrival times (Unix seconds).
struct Receivers {
    smtp: Option<SmtpPeer>,
    mqtt: Option<(MosquittoPeer, MqttSubscriber)>,
    hook: HttpPeer,
    twilio: HttpPeer,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Receivers {
    fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.smtp.is_some() {
            v.push("mail (STARTTLS)");
        }
        if self.mqtt.is_some() {
            v.push("MQTT (TLS)");
        }
        v.extend(["webhook (HTTPS)", "SMS (Twilio API)"]);
        v
    }

    /// Arrival times per transport, in `names` order.
    fn arrivals(&self) -> Vec<Vec<f64>> {
        let mut v = Vec::new();
        if let Some(s) = &self.smtp {
            v.push(s.messages().iter().map(|m| m.t).collect());
        }
        if let Some((_, sub)) = &self.mqtt {
            v.push(
                sub.received
                    .lock()
                    .map(|r| r.iter().map(|p| unix(p.time)).collect())
                    .unwrap_or_default(),
            );
        }
        for h in [&self.hook, &self.twilio] {
            v.push(h.requests().iter().map(|r| unix(r.time)).collect());
        }
        v
    }
}

pub fn run(a: AlertsArgs) -> Result<ExitCode> {
    let dir = std::path::absolute(&a.dir)?;
    in_fresh_dir(&dir.clone(), || run_in(&a, &dir))
}

fn actions(r: &Receivers, ca: &Path) -> String {
    let common = "events = [\"doorbell\"]\nmin_interval = \"0s\"\nsnapshot = false\n";
    let mut s = String::new();
    if let Some(smtp) = &r.smtp {
        s.push_str(&format!(
            "[[action]]\ntype = \"email\"\nsmtp = \"smtp://localhost:{}\"\ntls = \"starttls\"\nca_file = \"{}\"\n\
             username = \"{USER}\"\npassword = \"{PASSWORD}\"\nfrom = \"nvr@example.org\"\nto = [\"guard@example.org\"]\n{common}",
            smtp.port,
            ca.display()
        ));
    }
    if r.mqtt.is_some() {
        s.push_str(&format!("[[action]]\ntype = \"mqtt\"\n{common}"));
    }
    s.push_str(&format!(
        "[[action]]\ntype = \"webhook\"\nurl = \"https://localhost:{}/hook\"\nca_file = \"{}\"\n{common}",
        r.hook.port,
        ca.display()
    ));
    s.push_str(&format!(
        "[[action]]\ntype = \"sms\"\nprovider = \"twilio\"\nurl = \"http://127.0.0.1:{}\"\naccount = \"AC0123\"\n\
         token = \"bench-token\"\nfrom = \"+15550001111\"\nto = [\"+15552223333\"]\n{common}",
        r.twilio.port
    ));
    s
}

fn run_in(a: &AlertsArgs, dir: &Path) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let ca = TestCa::new("Bench CA").map_err(anyhow::Error::msg)?;
    let files = ca.write(dir, "peer").map_err(anyhow::Error::msg)?;
    let mut skipped = Vec::new();
    let smtp = if SmtpPeer::available() {
        Some(
            SmtpPeer::start(dir, "bench", SmtpMode::StartTls, Some(&files), Some((USER, PASSWORD)))
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        skipped.push(format!(
            "mail: {} has no aiosmtpd (Debian python3-aiosmtpd)",
            tandem::alerts::testpeers::PYTHON
        ));
        None
    };
    let mqtt = if MosquittoPeer::available() {
        let broker = MosquittoPeer::start(dir, &files, false).map_err(anyhow::Error::msg)?;
        let sub = MqttSubscriber::start(broker.port, &files.ca, None, "bench/+/events").map_err(anyhow::Error::msg)?;
        Some((broker, sub))
    } else {
        skipped.push("MQTT: no mosquitto (Debian mosquitto)".into());
        None
    };
    let hook = HttpPeer::start(Some(
        tandem::alerts::testpeers::server_config(&files).map_err(anyhow::Error::msg)?,
    ))?;
    let twilio = HttpPeer::start(None)?;
    skipped.push("SMS via Kannel: measured by the SMS tests' Kannel harness, not started here".into());
    let r = Receivers {
        smtp,
        mqtt,
        hook,
        twilio,
    };

    eprintln!("starting a simulated 640x360 camera and the NVR…");
    let (sim, urls) = start_cameras(&exe, 1, 640, 360, 10, 800)?;
    let mut procs = tandem::lab::Procs(vec![sim]);
    let data = dir.join("store");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let mut extra = String::new();
    if let Some((broker, _)) = &r.mqtt {
        extra.push_str(&format!(
            "[mqtt]\nbroker = \"mqtts://localhost:{}\"\nca_file = \"{}\"\ntopic_prefix = \"bench\"\ndiscovery = false\n",
            broker.port,
            files.ca.display()
        ));
    }
    extra.push_str(&actions(&r, &files.ca));
    let config = write_config(dir, &data, port, &urls, &extra)?;
    let token = tandem::auth::client::mint_admin_token(&data, "bench")?;
    let nvr = Command::new(&exe)
        .args(["serve", "--config"])
        .arg(&config)
        .env("TANDEM_LOG", "warn")
        .spawn()?;
    procs.0.insert(0, nvr);
    let base = format!("http://127.0.0.1:{port}");
    wait_connected(&base, &token, 1)?;
    // A few key frames stored before the first event, and the broker
    // connection up.
    std::thread::sleep(Duration::from_secs(3));

    let names = r.names();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut starts = Vec::new();
    let auth = format!("Bearer {token}");
    for i in 0..a.events {
        let before: Vec<usize> = r.arrivals().iter().map(Vec::len).collect();
        let body = br#"{"type":"doorbell","action":"pulse","duration":0.5,"source":"bench"}"#;
        let resp = tandem::httpc::request(
            "POST",
            &format!("{base}/api/v1/channels/1/events"),
            &[("Content-Type", "application/json"), ("Authorization", &auth)],
            body,
        )?;
        let stored = SystemTime::now();
        if resp.status != 202 {
            bail!(
                "event {i}: the NVR answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        starts.push(stored);
        let t = Instant::now();
        loop {
            let now = r.arrivals();
            if now.iter().zip(&before).all(|(v, n)| v.len() > *n) || t.elapsed() > WAIT {
                for (k, (v, n)) in now.iter().zip(&before).enumerate() {
                    if let Some(at) = v.get(*n) {
                        latencies[k].push(((at - unix(stored)) * 1000.0).max(0.0));
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprint!("\revent {}/{}", i + 1, a.events);
        // The pulse ends, and whatever its end sends arrives, before the next.
        std::thread::sleep(Duration::from_millis(1200));
    }
    eprintln!();
    drop(procs);

    let reader = tandem::store::Reader::new(data.clone());
    let mut snapshot_ms = Vec::new();
    for s in &starts {
        let c0 = tandem::motion::thread_cpu();
        tandem::snapshot::snapshot_at(&reader, 1, Time90k::from_system(*s), true, 640)
            .with_context(|| format!("the snapshot of the event at {}", Time90k::from_system(*s).to_rfc3339()))?;
        snapshot_ms.push((tandem::motion::thread_cpu() - c0).as_secs_f64() * 1000.0);
    }

    let rows: Vec<Row> = names
        .iter()
        .zip(latencies)
        .map(|(n, mut l)| Row {
            transport: n,
            delivered: l.len(),
            events: a.events,
            p50_ms: pct(&mut l, 0.5),
            max_ms: pct(&mut l, 1.0),
            latency_ms: l,
        })
        .collect();
    let mut snap = snapshot_ms.clone();
    let results = Results {
        snapshot_cpu_ms_p50: pct(&mut snap, 0.5),
        snapshot_cpu_ms_max: pct(&mut snap, 1.0),
        snapshot_cpu_ms: snapshot_ms,
        transports: rows,
        skipped,
    };
    print(&results);
    std::fs::write(&a.json, serde_json::to_string_pretty(&results)?)?;
    println!("wrote {}", a.json.display());
    let all = results.transports.iter().all(|r| r.delivered as u32 == r.events);
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN)
}

fn print(r: &Results) {
    println!("alert latency, event stored → message received (loopback, target ≤ 1000 ms):");
    println!(
        "{:<20} {:>10} {:>9} {:>9}",
        "transport", "delivered", "p50 ms", "max ms"
    );
    for t in &r.transports {
        println!(
            "{:<20} {:>10} {:>9.1} {:>9.1}",
            t.transport,
            format!("{}/{}", t.delivered, t.events),
            t.p50_ms,
            t.max_ms
        );
    }
    for s in &r.skipped {
        println!("skipped: {s}");
    }
    println!(
        "snapshot (decode key frame, scale to 640 px, JPEG): p50 {:.1} ms CPU, max {:.1} ms CPU per event",
        r.snapshot_cpu_ms_p50, r.snapshot_cpu_ms_max
    );
}
