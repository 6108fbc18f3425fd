//! The other direction of parsing: a resolved `Config` written back as a
//! TOML document in the configuration file's own vocabulary, one function per
//! table, so that `parse(render(c)) == c` for every valid configuration (the
//! round trip the parameter file relies on; tested in `config::tests`).
//!
//! Secrets are written in clear here (`password`, `peer_token`, token
//! hashes) and secrets given by reference stay references (`password_env`,
//! `password_file`); sealing or omitting them is `parfile`'s job. Must never
//! read a file or the environment: it writes what the configuration holds.

use std::time::Duration;

use toml::{Table, Value};

use super::actions::{ActionConfig, ActionTarget, Secret, SmsOverflow, SmsProvider};
use super::events::{MotionConfig, MqttConfig, TriggerConfig};
use super::units::format_duration;
use super::{ChannelConfig, Config, NetworkCamera, SecretSource, Transport};
use crate::recording::schedule::Window;
use crate::recording::RecordingPolicy;

/// `config` as a TOML document (tables in the order a person writes them).
pub fn document(config: &Config) -> Table {
    let mut doc = Table::new();
    if let Some(name) = &config.name {
        doc.insert("nvr".into(), table([("name", name.as_str().into())]));
    }
    doc.insert("storage".into(), Value::Table(storage(config)));
    doc.insert("http".into(), Value::Table(http(config)));
    doc.insert("access".into(), Value::Table(access(&config.access)));
    array(&mut doc, "network_camera", config.cameras.iter().map(camera));
    array(&mut doc, "channel", config.channels.iter().map(channel));
    let failover = failover(&config.failover);
    if !failover.is_empty() {
        doc.insert("failover".into(), Value::Table(failover));
    }
    array(&mut doc, "rule", config.rules.iter().filter_map(|r| rule(&r.rule)));
    if let Some(m) = &config.mqtt {
        doc.insert("mqtt".into(), Value::Table(mqtt(m)));
    }
    array(&mut doc, "trigger", config.triggers.iter().map(trigger));
    array(&mut doc, "action", config.actions.iter().map(action));
    let gapfill = super::gapfill::render(&config.gapfill);
    if !gapfill.is_empty() {
        doc.insert("gapfill".into(), Value::Table(gapfill));
    }
    if let Some(p) = &config.pool {
        doc.insert("pool".into(), Value::Table(super::pool::render(p)));
    }
    if let Some(a) = &config.archive {
        doc.insert("archive".into(), Value::Table(super::archive::render(a)));
    }
    if let Some(a) = &config.accounts {
        super::accounts::render(a, &mut doc);
    }
    doc
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn array(doc: &mut Table, key: &str, items: impl Iterator<Item = Table>) {
    let items: Vec<Value> = items.map(Value::Table).collect();
    if !items.is_empty() {
        doc.insert(key.into(), Value::Array(items));
    }
}

fn dur(d: Duration) -> Value {
    Value::String(format_duration(d))
}

/// 90 kHz ticks as a duration, to the nanosecond (parsing rounds back to the tick).
fn ticks(t: i64) -> Value {
    dur(Duration::from_nanos((t.max(0) as u64 * 100_000 + 4) / 9))
}

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// An `f32` by its shortest decimal form, so `0.01` is written `0.01` and
/// reads back as the same `f32`.
fn float(v: f32) -> Value {
    Value::Float(v.to_string().parse().unwrap_or(f64::from(v)))
}

fn path(p: &std::path::Path) -> Value {
    // Absolute: the file is read on another machine or from another directory.
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    Value::String(p.display().to_string())
}

fn storage(c: &Config) -> Table {
    let s = &c.storage;
    let mut t = Table::new();
    t.insert("dir".into(), path(&s.dir));
    t.insert("min_free".into(), int(s.min_free_bytes));
    t.insert("flush_interval".into(), dur(s.flush_interval));
    t.insert("segment_duration".into(), dur(s.segment_duration));
    t.insert("write_buffer".into(), int(s.write_buffer_bytes));
    if let Some(i) = s.scrub_interval {
        t.insert("scrub_interval".into(), dur(i));
    }
    t
}

fn http(c: &Config) -> Table {
    use crate::web::tls::TlsSource;
    let mut t = Table::new();
    t.insert("listen".into(), c.listen.to_string().into());
    match &c.http.tls {
        Some(TlsSource::SelfSigned) => {
            t.insert("tls".into(), "self-signed".into());
        }
        Some(TlsSource::Files { cert, key }) => {
            t.insert("tls".into(), table([("cert", path(cert)), ("key", path(key))]));
        }
        None => {}
    }
    if let Some(r) = c.http.redirect_listen {
        t.insert("redirect_listen".into(), r.to_string().into());
    }
    if let Some(u) = &c.http.public_url {
        t.insert("public_url".into(), u.as_str().into());
    }
    t
}

fn access(a: &crate::auth::Settings) -> Table {
    let mut t = Table::new();
    t.insert("session_idle".into(), dur(a.session_idle));
    t.insert("audit_retention".into(), dur(a.audit_retention));
    t
}

fn camera(cam: &NetworkCamera) -> Table {
    let mut t = Table::new();
    t.insert("name".into(), cam.name.clone().into());
    t.insert("url".into(), cam.url.as_str().into());
    if let Some(u) = &cam.substream_url {
        t.insert("substream_url".into(), u.as_str().into());
    }
    if let Some(ch) = cam.channel {
        t.insert("channel".into(), int(ch.into()));
    }
    let transport = match cam.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    t.insert("transport".into(), transport.into());
    if let Some(cr) = &cam.credentials {
        t.insert("username".into(), cr.username.clone().into());
        match &cr.source {
            SecretSource::Inline if cr.password.is_empty() => {}
            SecretSource::Inline => {
                t.insert("password".into(), cr.password.clone().into());
            }
            SecretSource::Env(v) => {
                t.insert("password_env".into(), v.clone().into());
            }
            SecretSource::File(p) => {
                t.insert("password_file".into(), path(p));
            }
        }
    }
    if cam.edge_storage {
        t.insert("edge_storage".into(), true.into());
    }
    if let Some(u) = &cam.replay_url {
        t.insert("replay_url".into(), u.as_str().into());
    }
    if cam.priority != Default::default() {
        t.insert("priority".into(), cam.priority.as_str().into());
    }
    t
}

fn channel(ch: &ChannelConfig) -> Table {
    let mut t = Table::new();
    t.insert("number".into(), int(ch.number.into()));
    t.insert("name".into(), ch.name.clone().into());
    if let Some(cam) = &ch.camera {
        t.insert("camera".into(), cam.clone().into());
    }
    let r = &ch.retention;
    let mut ret = Table::new();
    let age = |a: Option<i64>| a.map(ticks).unwrap_or_else(|| "forever".into());
    ret.insert("max_age".into(), age(r.max_age));
    ret.insert("event_max_age".into(), age(r.event_max_age));
    if let Some(b) = r.max_bytes {
        ret.insert("max_bytes".into(), int(b));
    }
    t.insert("retention".into(), Value::Table(ret));
    t.insert("recording".into(), Value::Table(recording(&ch.recording)));
    if let Some(m) = &ch.motion {
        t.insert("motion".into(), Value::Table(motion(m)));
    }
    t
}

fn recording(p: &RecordingPolicy) -> Table {
    let mut t = Table::new();
    t.insert("mode".into(), p.schedule.default.as_str().into());
    if let Some(tz) = p.schedule.tz.iana_name() {
        t.insert("time_zone".into(), tz.into());
    }
    let e = &p.events;
    t.insert("pre".into(), ticks(e.pre));
    t.insert("post".into(), ticks(e.post));
    t.insert("max_event".into(), ticks(e.max_len));
    t.insert("buffer_limit".into(), int(e.buffer_limit as u64));
    let windows = p.schedule.windows.iter().map(|w| window(w, true));
    array(&mut t, "schedule", windows);
    t
}

/// One weekly window; an action's windows have no mode (they mean "on").
fn window(w: &Window, with_mode: bool) -> Table {
    let hhmm = |t: jiff::civil::Time, end: bool| match (t.hour(), t.minute()) {
        (0, 0) if end => "24:00".to_string(),
        (h, m) => format!("{h:02}:{m:02}"),
    };
    let mut s = Table::new();
    s.insert("days".into(), days(w.days).into());
    s.insert("from".into(), hhmm(w.from, false).into());
    s.insert("to".into(), hhmm(w.to, true).into());
    if with_mode {
        s.insert("mode".into(), w.mode.as_str().into());
    }
    s
}

/// Weekday bits (0 = Monday) as `schedule::parse_days` reads them.
fn days(bits: u8) -> String {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    if bits & 0x7f == 0x7f {
        return "daily".into();
    }
    (0..7)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| NAMES[i])
        .collect::<Vec<_>>()
        .join(",")
}

fn motion(m: &MotionConfig) -> Table {
    let polygons = |list: &[super::events::Polygon]| -> Value {
        list.iter()
            .map(|p| {
                p.iter()
                    .map(|(x, y)| Value::Array(vec![float(*x), float(*y)]))
                    .collect()
            })
            .map(Value::Array)
            .collect::<Vec<_>>()
            .into()
    };
    let mut t = Table::new();
    t.insert("sensitivity".into(), int(m.sensitivity.into()));
    t.insert("min_area".into(), float(m.min_area));
    if !m.zones.is_empty() {
        t.insert("zones".into(), polygons(&m.zones));
    }
    if !m.masks.is_empty() {
        t.insert("masks".into(), polygons(&m.masks));
    }
    t.insert("hold".into(), dur(m.hold));
    t.insert("record".into(), m.record.into());
    t
}

fn failover(f: &super::FailoverSettings) -> Table {
    use crate::httpc::PeerTrust;
    let mut t = Table::new();
    match (&f.peer_token_env, &f.peer_token) {
        (Some(var), _) => {
            t.insert("peer_token_env".into(), var.clone().into());
        }
        (None, Some(token)) => {
            t.insert("peer_token".into(), token.clone().into());
        }
        (None, None) => {}
    }
    if f.transfer_rate != super::DEFAULT_TRANSFER_RATE {
        t.insert("transfer_rate".into(), int(f.transfer_rate));
    }
    match &f.peer_trust {
        Some(PeerTrust::Ca { path: p, .. }) => {
            t.insert("peer_ca".into(), path(p));
        }
        Some(PeerTrust::Fingerprint(fp)) => {
            t.insert(
                "peer_fingerprint".into(),
                crate::web::tls::format_fingerprint(fp).into(),
            );
        }
        None => {}
    }
    t
}

fn rule(r: &crate::failover::rule::Rule) -> Option<Table> {
    match Value::try_from(r.to_value()) {
        Ok(Value::Table(t)) => Some(t),
        _ => None,
    }
}

fn mqtt(m: &MqttConfig) -> Table {
    let mut t = Table::new();
    let host = if m.host.contains(':') {
        format!("[{}]", m.host)
    } else {
        m.host.clone()
    };
    let scheme = if m.tls.is_some() { "mqtts" } else { "mqtt" };
    t.insert("broker".into(), format!("{scheme}://{host}:{}", m.port).into());
    if let Some(tls) = &m.tls {
        if let Some(ca) = &tls.ca_file {
            t.insert("ca_file".into(), path(ca));
        }
        if let Some((cert, key)) = &tls.client_cert {
            t.insert("client_cert".into(), path(cert));
            t.insert("client_key".into(), path(key));
        }
    }
    if let Some(id) = &m.client_id {
        t.insert("client_id".into(), id.clone().into());
    }
    if let Some(u) = &m.username {
        t.insert("username".into(), u.clone().into());
    }
    match (&m.password_env, &m.password) {
        (Some(var), _) => {
            t.insert("password_env".into(), var.clone().into());
        }
        (None, Some(p)) => {
            t.insert("password".into(), p.clone().into());
        }
        (None, None) => {}
    }
    t.insert("topic_prefix".into(), m.topic_prefix.clone().into());
    t.insert("discovery".into(), m.discovery_prefix.is_some().into());
    if let Some(p) = &m.discovery_prefix {
        t.insert("discovery_prefix".into(), p.clone().into());
    }
    t
}

fn trigger(tr: &TriggerConfig) -> Table {
    let mut t = Table::new();
    t.insert("channel".into(), int(tr.channel.into()));
    t.insert("type".into(), tr.kind.clone().into());
    t.insert("mqtt_topic".into(), tr.mqtt_topic.clone().into());
    t.insert("payload_start".into(), tr.payload_start.clone().into());
    t.insert("payload_stop".into(), tr.payload_stop.clone().into());
    if let Some(p) = tr.pulse {
        t.insert("pulse".into(), dur(p));
    }
    t
}

fn strings(v: &[String]) -> Value {
    v.iter().map(|s| Value::from(s.as_str())).collect::<Vec<_>>().into()
}

/// Writes `field` (inline), `field_env` or `field_file` as the secret came.
fn secret(t: &mut Table, field: &str, s: &Secret) {
    match &s.source {
        SecretSource::Inline => t.insert(field.into(), s.value.clone().into()),
        SecretSource::Env(v) => t.insert(format!("{field}_env"), v.clone().into()),
        SecretSource::File(p) => t.insert(format!("{field}_file"), path(p)),
    };
}

fn action(a: &ActionConfig) -> Table {
    let mut t = Table::new();
    t.insert("name".into(), a.name.clone().into());
    t.insert("type".into(), a.target.kind().into());
    match &a.target {
        ActionTarget::Mqtt => {}
        ActionTarget::Webhook { url, ca_file } => {
            t.insert("url".into(), url.as_str().into());
            if let Some(p) = ca_file {
                t.insert("ca_file".into(), path(p));
            }
        }
        ActionTarget::Email(e) => {
            t.insert("smtp".into(), format!("smtp://{}:{}", e.smtp_host, e.smtp_port).into());
            t.insert("tls".into(), e.tls.as_str().into());
            if let Some(u) = &e.username {
                t.insert("username".into(), u.clone().into());
            }
            if let Some(p) = &e.password {
                secret(&mut t, "password", p);
            }
            if let Some(p) = &e.ca_file {
                t.insert("ca_file".into(), path(p));
            }
            t.insert("from".into(), e.from.clone().into());
            t.insert("to".into(), strings(&e.to));
        }
        ActionTarget::Sms(s) => {
            t.insert("provider".into(), s.provider.name().into());
            match &s.provider {
                SmsProvider::Kannel {
                    url,
                    username,
                    password,
                } => {
                    t.insert("url".into(), url.as_str().into());
                    t.insert("username".into(), username.clone().into());
                    secret(&mut t, "password", password);
                }
                SmsProvider::Twilio {
                    url,
                    account,
                    token,
                    from,
                } => {
                    t.insert("url".into(), url.as_str().into());
                    t.insert("account".into(), account.clone().into());
                    secret(&mut t, "token", token);
                    t.insert("from".into(), from.clone().into());
                }
                SmsProvider::Modem { device, baud, pin } => {
                    t.insert("device".into(), path(device));
                    t.insert("baud".into(), int((*baud).into()));
                    if let Some(p) = pin {
                        secret(&mut t, "pin", p);
                    }
                }
            }
            t.insert("to".into(), strings(&s.to));
            t.insert("max_segments".into(), int(s.max_segments.into()));
            let overflow = match s.overflow {
                SmsOverflow::Truncate => "truncate",
                SmsOverflow::Split => "split",
            };
            t.insert("overflow".into(), overflow.into());
        }
    }
    if let Some(ch) = &a.channels {
        t.insert(
            "channels".into(),
            ch.iter().map(|n| int((*n).into())).collect::<Vec<_>>().into(),
        );
    }
    if let Some(k) = &a.kinds {
        t.insert("events".into(), strings(k));
    }
    t.insert("min_interval".into(), dur(a.min_interval));
    if let Some(s) = &a.subject {
        t.insert("subject".into(), s.source().into());
    }
    if let Some(b) = &a.body {
        t.insert("body".into(), b.source().into());
    }
    if let Some(z) = &a.time_zone_name {
        t.insert("time_zone".into(), z.clone().into());
    }
    if let Some(s) = &a.schedule {
        array(&mut t, "schedule", s.windows.iter().map(|w| window(w, false)));
    }
    t.insert("retry_for".into(), dur(a.retry_for));
    t.insert("offline_grace".into(), dur(a.offline_grace));
    t.insert("snapshot".into(), a.snapshot.into());
    t.insert("snapshot_width".into(), int(a.snapshot_width.into()));
    t
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// A configuration using every table and every kind of secret.
    pub(crate) const EVERY_TABLE: &str = r#"
[nvr]
name = "nvr-a"

[storage]
dir = "/var/lib/tandem"
min_free = "2 GiB"
flush_interval = "300ms"
segment_duration = "2m"
write_buffer = "32 MiB"
scrub_interval = "1d"

[http]
listen = "0.0.0.0:9443"
tls = "self-signed"
redirect_listen = "0.0.0.0:9080"
public_url = "https://nvr.example.com/"

[access]
session_idle = "2h"
audit_retention = "90d"

[[network_camera]]
name = "lobby"
url = "rtsp://admin:p%40ss@192.0.2.10/stream1"
substream_url = "rtsp://192.0.2.10/stream2"
channel = 1

[[network_camera]]
name = "dock"
url = "rtsp://192.0.2.11/h264"
transport = "udp"
username = "viewer"
password_env = "TANDEM_RENDER_TEST_PW"

[[network_camera]]
name = "gate"
url = "rtsp://192.0.2.12/live"
username = "ops"
password_file = "gate.pw"
edge_storage = true
replay_url = "rtsp://192.0.2.12/replay"
priority = "high"

[[channel]]
number = 1
name = "Lobby"
camera = "lobby"
retention = { max_age = "7d", event_max_age = "forever", max_bytes = "100 GiB" }
recording = { mode = "continuous+events", time_zone = "Europe/Paris", pre = "2.5s", post = "1m", max_event = "10m", buffer_limit = "64 MiB", schedule = [ { days = "mon-fri", from = "08:00", to = "18:30", mode = "events" }, { days = "sat", from = "22:00", to = "24:00", mode = "off" } ] }
motion = { sensitivity = 70, min_area = 0.013, zones = [ [[0.1, 0.1], [0.9, 0.1], [0.5, 0.95]] ], masks = [ [[0, 0], [0.2, 0], [0.2, 0.3]] ], hold = "1500ms", record = false }

[[channel]]
number = 2
camera = "dock"

[[channel]]
number = 3

[failover]
peer_token = "0123456789abcdef0123"
transfer_rate = "1 MB"
peer_fingerprint = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

[gapfill]
rate = "2 MB"
max_age = "7d"

[pool]
etcd = ["http://192.0.2.2:2379", "http://192.0.2.3:2379"]
name = "nvr-07"
capacity = { channels = 64, mbps = 400.5 }
lease_ttl = "5s"
prefix = "/site-a/"
address = "https://192.0.2.7:9000"

[archive]
url = "s3://cams/site-a"
endpoint = "https://s3.example.com:9000"
after = "3d"
max_age = "2y"
bandwidth = "10MiB/s"
credentials = "s3.creds"

[[rule]]
name = "for-a"
release_delay = 2.5
check = { address = "192.0.2.10", type = "http", port = 9443, tls = true, interval = 0.3, timeout = 0.25, failure_count = 3, normal_count = 1 }
states.normal = [ { camera = 1, address = "n/a" } ]
states.failure = [ { camera = 1, address = "192.0.2.10", channel = 1 } ]
backup = { address = "192.0.2.99", port = 9000, tls = true, cameras = [ { local = 1, remote = 4 } ] }
capacity = { channels = 4, mbps = 20.5 }

[mqtt]
broker = "mqtt://192.0.2.50:1884"
client_id = "nvr-a"
username = "tandem"
password = "mqtt-secret"
topic_prefix = "site"
discovery = false

[[trigger]]
channel = 2
type = "door"
mqtt_topic = "zigbee/door"
payload_start = "open"
payload_stop = "closed"
pulse = "5s"

[[action]]
name = "ops-mail"
type = "email"
smtp = "smtp://192.0.2.60:2525"
from = "nvr@example.org"
to = ["ops@example.org", "chief@example.org"]
channels = [1, 2]
events = ["door", "motion"]
min_interval = "30s"

[[action]]
type = "webhook"
url = "http://192.0.2.70/hook"

[[action]]
name = "announce"
type = "mqtt"

[[action]]
name = "provider-mail"
type = "email"
smtp = "smtp://mail.example.org:587"
username = "nvr@example.org"
password = "smtp-secret"
ca_file = "ca.pem"
from = "nvr@example.org"
to = ["guard@example.org"]
subject = "{nvr}: {type} on {channel_name}"
body = "Seen at {start}: {snapshot_link}"
time_zone = "Europe/Berlin"
schedule = [ { days = "mon-fri", from = "18:00", to = "08:00" }, { days = "sat,sun", from = "00:00", to = "24:00" } ]
retry_for = "2h"
snapshot_width = 320

[[action]]
name = "sms-kannel"
type = "sms"
provider = "kannel"
url = "http://192.0.2.80:13013/cgi-bin/sendsms"
username = "tandem"
password = "kannel-secret"
to = ["+4915112345678", "+4915187654321"]
template = "{type} on {channel_name}"
max_segments = 2
overflow = "split"
offline_grace = "2m"

[[action]]
name = "sms-twilio"
type = "sms"
provider = "twilio"
account = "AC0123456789"
token_env = "TANDEM_RENDER_TEST_PW"
from = "+15550001111"
to = ["+15552223333"]
snapshot = false

[[action]]
name = "sms-modem"
type = "sms"
provider = "modem"
device = "/dev/ttyUSB0"
baud = 9600
pin = "9081"
to = ["+4915112345678"]

[[user]]
name = "admin"
role = "admin"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

[[user]]
name = "guard"
role = "viewer"
channels = [1, 3]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$b3RoZXJvdGhlcm90aGVy"

[[token]]
name = "vms"
user = "admin"
role = "operator"
created_ms = 1700000000000
expires_ms = 1800000000000
secret_hash = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
"#;

    pub(crate) fn every_table(dir: &Path) -> Config {
        std::fs::write(dir.join("gate.pw"), "gate-secret\n").unwrap();
        std::fs::write(dir.join("ca.pem"), "").unwrap();
        // SAFETY: set once, to the same value, by every test that reads it.
        unsafe { std::env::set_var("TANDEM_RENDER_TEST_PW", "dock-secret") };
        super::super::parse(EVERY_TABLE, "every.toml", dir).unwrap()
    }

    #[test]
    fn every_table_reads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let c = every_table(dir.path());
        // The sample really uses what it claims to.
        assert_eq!(c.name.as_deref(), Some("nvr-a"));
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.actions.len(), 7);
        assert_eq!(c.accounts.as_ref().unwrap().tokens.as_ref().unwrap().len(), 1);
        assert_eq!(c.channels[0].retention.event_max_age, None);
        let archive = c.archive.as_ref().unwrap();
        assert_eq!(
            archive.credentials,
            super::super::archive::ArchiveCredentials::File(dir.path().join("s3.creds"))
        );
        let text = toml::to_string(&document(&c)).unwrap();
        let again = super::super::parse(&text, "rendered.toml", Path::new("/nowhere")).unwrap();
        assert_eq!(again, c, "{text}");
        // References stay references; nothing resolved from them is written.
        assert!(text.contains("password_env = \"TANDEM_RENDER_TEST_PW\""), "{text}");
        assert!(!text.contains("dock-secret") && !text.contains("gate-secret"), "{text}");
        assert!(text.contains("gate.pw"), "{text}");
        // Rendering is stable: a second pass writes the same text.
        assert_eq!(toml::to_string(&document(&again)).unwrap(), text);
    }

    #[test]
    fn an_mqtts_broker_reads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "nvr.pem", "nvr.key"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let text = "[mqtt]\nbroker = \"mqtts://[::1]\"\nca_file = \"ca.pem\"\nclient_cert = \"nvr.pem\"\nclient_key = \"nvr.key\"\n";
        let c = super::super::parse(text, "m.toml", dir.path()).unwrap();
        let m = c.mqtt.as_ref().unwrap();
        assert_eq!((m.host.as_str(), m.port), ("::1", 8883));
        let tls = m.tls.as_ref().unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(dir.path().join("ca.pem").as_path()));
        let rendered = toml::to_string(&document(&c)).unwrap();
        assert!(rendered.contains("broker = \"mqtts://[::1]:8883\""), "{rendered}");
        assert_eq!(
            super::super::parse(&rendered, "r.toml", Path::new("/nowhere"))
                .unwrap()
                .mqtt,
            c.mqtt
        );
        // Half a client pair, and TLS files on a plain broker, are errors naming the field.
        let e = super::super::parse(&text.replace("client_key = \"nvr.key\"\n", ""), "m.toml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mqtt.client_cert") && e.contains("go together"), "{e}");
        let e = super::super::parse(&text.replace("mqtts://", "mqtt://"), "m.toml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("need an mqtts:// broker"), "{e}");
    }

    #[test]
    fn defaults_read_back_equal() {
        let c = Config::default();
        let text = toml::to_string(&document(&c)).unwrap();
        let mut again = super::super::parse(&text, "rendered.toml", Path::new("")).unwrap();
        // The default directory is written absolute.
        assert_eq!(again.storage.dir, std::path::absolute(&c.storage.dir).unwrap());
        again.storage.dir = c.storage.dir.clone();
        assert_eq!(again, c, "{text}");
    }

    #[test]
    fn days_and_ticks_are_written_as_parsed() {
        for bits in 1..=0x7fu8 {
            assert_eq!(crate::recording::schedule::parse_days(&days(bits)).unwrap(), bits);
        }
        for t in [0i64, 1, 7, 90_000, 225_000, 2_700_000, 7 * 86_400 * 90_000] {
            let Value::String(s) = ticks(t) else { panic!() };
            let d = super::super::units::parse_duration(&s).unwrap();
            assert_eq!(crate::time::ticks_of(d), t, "{s}");
        }
    }
}
