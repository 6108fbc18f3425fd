//! Configuration of recording policy, motion detection and event triggers:
//! the `[channel.recording]`, `[channel.motion]`, `[mqtt]` and `[[trigger]]`
//! tables (`[[action]]` is in `actions`), checked with errors that name the
//! file, line and field.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{units, Checker, SizeOrNumber};
use crate::recording::schedule::{self, Mode, Window};
use crate::recording::{EventPolicy, RecordingPolicy};

/// A polygon in picture coordinates from (0, 0) top left to (1, 1) bottom right.
pub type Polygon = Vec<(f32, f32)>;

#[derive(Clone, Debug, PartialEq)]
pub struct MotionConfig {
    /// 1 (only large, strong changes) … 100 (the slightest change); default 50.
    pub sensitivity: u8,
    /// Share of the watched picture that must change, 0–1; default 0.01.
    pub min_area: f32,
    /// Where to look; empty = the whole picture.
    pub zones: Vec<Polygon>,
    /// Where never to look (a tree, a road outside the fence).
    pub masks: Vec<Polygon>,
    /// Motion ends after this long without any.
    pub hold: Duration,
    /// Motion triggers event recording (default true).
    pub record: bool,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            sensitivity: 50,
            min_area: 0.01,
            zones: Vec::new(),
            masks: Vec::new(),
            hold: Duration::from_secs(2),
            record: true,
        }
    }
}

/// An MQTT subscription that starts and stops events on a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerConfig {
    pub channel: u32,
    /// The event type stored and announced ("door", "alarm").
    pub kind: String,
    pub mqtt_topic: String,
    pub payload_start: String,
    pub payload_stop: String,
    /// For sensors that only say "now": each start payload is an event of
    /// this length.
    pub pulse: Option<Duration>,
}

#[derive(Clone, PartialEq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The environment variable `password` was read from, if it was.
    pub password_env: Option<String>,
    /// Topics are `{prefix}/{nvr}/…`; default "tandem".
    pub topic_prefix: String,
    /// Home Assistant discovery prefix; `None` turns discovery off.
    pub discovery_prefix: Option<String>,
    /// `mqtts://`: TLS to the broker (default port 8883).
    pub tls: Option<MqttTls>,
}

/// How the `mqtts://` connection is trusted and who the NVR is to the broker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MqttTls {
    /// Trust this CA (PEM) instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate chain and key (PEM) for a broker that asks for one.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecording {
    mode: Option<Spanned<String>>,
    time_zone: Option<Spanned<String>>,
    pre: Option<Spanned<SizeOrNumber>>,
    post: Option<Spanned<SizeOrNumber>>,
    max_event: Option<Spanned<SizeOrNumber>>,
    buffer_limit: Option<Spanned<SizeOrNumber>>,
    #[serde(default)]
    schedule: Vec<Spanned<RawWindow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMotion {
    enabled: Option<bool>,
    sensitivity: Option<Spanned<i64>>,
    min_area: Option<Spanned<f64>>,
    #[serde(default)]
    zones: Vec<Spanned<Vec<[f64; 2]>>>,
    #[serde(default)]
    masks: Vec<Spanned<Vec<[f64; 2]>>>,
    hold: Option<Spanned<SizeOrNumber>>,
    record: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    channel: Option<Spanned<i64>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    mqtt_topic: Option<Spanned<String>>,
    payload_start: Option<String>,
    payload_stop: Option<String>,
    pulse: Option<Spanned<SizeOrNumber>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqtt {
    broker: Option<Spanned<String>>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<Spanned<String>>,
    topic_prefix: Option<String>,
    discovery: Option<bool>,
    discovery_prefix: Option<String>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
}

/// Parses a duration field within [min, max] seconds, reporting errors.
pub(super) fn duration(
    c: &mut Checker,
    v: &Spanned<SizeOrNumber>,
    field: &str,
    min: f64,
    max: f64,
) -> Option<Duration> {
    match units::parse_duration(&v.get_ref().text()) {
        Ok(d) if (min..=max).contains(&d.as_secs_f64()) => Some(d),
        Ok(_) => {
            c.err(
                v.span().start,
                field,
                format!("must be between {min} and {max} seconds"),
            );
            None
        }
        Err(e) => {
            c.err(v.span().start, field, e);
            None
        }
    }
}

fn mode(c: &mut Checker, v: &Spanned<String>, field: &str) -> Option<Mode> {
    Mode::parse(v.get_ref())
        .map_err(|e| c.err(v.span().start, field, e))
        .ok()
}

pub(super) fn recording(c: &mut Checker, r: Option<&Spanned<RawRecording>>, prefix: &str) -> RecordingPolicy {
    let mut p = RecordingPolicy::default();
    let Some(r) = r else { return p };
    let f = |name: &str| format!("{prefix}.recording.{name}");
    let r = r.get_ref();
    if let Some(m) = &r.mode {
        p.schedule.default = mode(c, m, &f("mode")).unwrap_or(Mode::Continuous);
    }
    p.schedule.tz = match &r.time_zone {
        Some(z) => schedule::parse_tz(z.get_ref())
            .map_err(|e| c.err(z.span().start, f("time_zone"), e))
            .unwrap_or(jiff::tz::TimeZone::UTC),
        None => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
    };
    let mut ev = EventPolicy::default();
    for (field, val, target, max) in [
        ("pre", &r.pre, &mut ev.pre, 300.0),
        ("post", &r.post, &mut ev.post, 3600.0),
        ("max_event", &r.max_event, &mut ev.max_len, 86400.0),
    ] {
        if let Some(d) = val.as_ref().and_then(|v| duration(c, v, &f(field), 0.0, max)) {
            *target = crate::time::ticks_of(d);
        }
    }
    if let Some(b) = &r.buffer_limit {
        match units::parse_bytes(&b.get_ref().text()) {
            Ok(v) if (1 << 20..=4 << 30).contains(&v) => ev.buffer_limit = v as usize,
            Ok(_) => c.err(b.span().start, f("buffer_limit"), "must be between 1 MiB and 4 GiB"),
            Err(e) => c.err(b.span().start, f("buffer_limit"), e),
        }
    }
    if ev.max_len < ev.pre + 90_000 {
        if let Some(m) = &r.max_event {
            c.err(m.span().start, f("max_event"), "must be longer than `pre`");
        }
    }
    p.events = ev;
    for (i, w) in r.schedule.iter().enumerate() {
        let at = w.span().start;
        let w = w.get_ref();
        let wf = |name: &str| format!("{prefix}.recording.schedule[{i}].{name}");
        let times = window_times(c, at, [&w.days, &w.from, &w.to], &wf);
        let m = match &w.mode {
            Some(m) => mode(c, m, &wf("mode")),
            None => {
                c.err(at, wf("mode"), "is required");
                None
            }
        };
        if let (Some((days, from, to)), Some(mode)) = (times, m) {
            p.schedule.windows.push(Window { days, from, to, mode });
        }
    }
    p
}

/// A weekly window's `days` (default every day), `from` and `to` (both
/// required), each error reported under `wf(field)`: shared by recording
/// schedules and alert schedules.
pub(super) fn window_times(
    c: &mut Checker,
    at: usize,
    [days, from, to]: [&Option<Spanned<String>>; 3],
    wf: &dyn Fn(&str) -> String,
) -> Option<(u8, jiff::civil::Time, jiff::civil::Time)> {
    let days = match days {
        Some(d) => schedule::parse_days(d.get_ref())
            .map_err(|e| c.err(d.span().start, wf("days"), e))
            .ok(),
        None => Some(0x7f),
    };
    let mut time = |v: &Option<Spanned<String>>, name: &str| match v {
        Some(t) => schedule::parse_hhmm(t.get_ref())
            .map_err(|e| c.err(t.span().start, wf(name), e))
            .ok(),
        None => {
            c.err(at, wf(name), "is required");
            None
        }
    };
    let (from, to) = (time(from, "from"), time(to, "to"));
    Some((days?, from?, to?))
}

fn polygons(c: &mut Checker, raw: &[Spanned<Vec<[f64; 2]>>], field: &str) -> Vec<Polygon> {
    let mut out = Vec::new();
    for (i, poly) in raw.iter().enumerate() {
        let pts = poly.get_ref();
        if pts.len() < 3 {
            c.err(
                poly.span().start,
                format!("{field}[{i}]"),
                "a polygon needs at least 3 points",
            );
        } else if pts.iter().flatten().any(|v| !(0.0..=1.0).contains(v)) {
            c.err(
                poly.span().start,
                format!("{field}[{i}]"),
                "points are [x, y] with 0 ≤ x, y ≤ 1 (fractions of the picture)",
            );
        } else {
            out.push(pts.iter().map(|p| (p[0] as f32, p[1] as f32)).collect());
        }
    }
    out
}

pub(super) fn motion(c: &mut Checker, m: Option<&Spanned<RawMotion>>, prefix: &str) -> Option<MotionConfig> {
    let m = m?.get_ref();
    let f = |name: &str| format!("{prefix}.motion.{name}");
    let mut cfg = MotionConfig::default();
    if let Some(s) = &m.sensitivity {
        match u8::try_from(*s.get_ref()) {
            Ok(v) if (1..=100).contains(&v) => cfg.sensitivity = v,
            _ => c.err(s.span().start, f("sensitivity"), "must be between 1 and 100"),
        }
    }
    if let Some(a) = &m.min_area {
        if (0.0..=1.0).contains(a.get_ref()) {
            cfg.min_area = *a.get_ref() as f32;
        } else {
            c.err(a.span().start, f("min_area"), "must be a fraction between 0 and 1");
        }
    }
    if let Some(d) = m.hold.as_ref().and_then(|h| duration(c, h, &f("hold"), 0.1, 600.0)) {
        cfg.hold = d;
    }
    cfg.zones = polygons(c, &m.zones, &f("zones"));
    cfg.masks = polygons(c, &m.masks, &f("masks"));
    cfg.record = m.record.unwrap_or(true);
    m.enabled.unwrap_or(true).then_some(cfg)
}

pub(super) fn trigger(c: &mut Checker, t: &Spanned<RawTrigger>, i: usize, channels: &[u32]) -> Option<TriggerConfig> {
    let at = t.span().start;
    let t = t.get_ref();
    let f = |name: &str| format!("trigger[{i}].{name}");
    let channel = match &t.channel {
        Some(ch) if channels.contains(&(*ch.get_ref() as u32)) && *ch.get_ref() > 0 => Some(*ch.get_ref() as u32),
        Some(ch) => {
            c.err(ch.span().start, f("channel"), format!("no channel {}", ch.get_ref()));
            None
        }
        None => {
            c.err(at, f("channel"), "is required");
            None
        }
    };
    let kind = match &t.kind {
        Some(k) if is_reserved_kind(k.get_ref()) => {
            c.err(
                k.span().start,
                f("type"),
                format!(
                    "`{}` is an event type the NVR raises itself; choose another",
                    k.get_ref()
                ),
            );
            None
        }
        Some(k) if valid_kind(k.get_ref()) => Some(k.get_ref().clone()),
        Some(k) => {
            c.err(
                k.span().start,
                f("type"),
                "must be 1–32 characters of a-z, 0-9, _ and -",
            );
            None
        }
        None => Some("trigger".to_string()),
    };
    let topic = match &t.mqtt_topic {
        Some(tp) if !tp.get_ref().is_empty() && !tp.get_ref().contains(['+', '#']) => Some(tp.get_ref().clone()),
        Some(tp) => {
            c.err(
                tp.span().start,
                f("mqtt_topic"),
                "must be a topic name without wildcards",
            );
            None
        }
        None => {
            c.err(at, f("mqtt_topic"), "is required");
            None
        }
    };
    let pulse = t.pulse.as_ref().and_then(|p| duration(c, p, &f("pulse"), 0.1, 3600.0));
    Some(TriggerConfig {
        channel: channel?,
        kind: kind?,
        mqtt_topic: topic?,
        payload_start: t.payload_start.clone().unwrap_or_else(|| "ON".into()),
        payload_stop: t.payload_stop.clone().unwrap_or_else(|| "OFF".into()),
        pulse,
    })
}

/// Event types are used in MQTT topics and URLs: keep them plain.
/// Event types the NVR itself raises. Outside sources (the HTTP trigger,
/// MQTT triggers) may not use them: a forged `disk_full` or `camera_offline`
/// would raise real alerts.
pub const RESERVED_KINDS: &[&str] = &[
    "motion",
    "motion_decode_failed",
    "camera_online",
    "camera_offline",
    "disk_full",
    "fd_exhausted",
    "storage_error",
    "recording_resumed",
    "rule_state_changed",
    "no_capacity",
    "segment_damaged",
    "delivery_failed",
    "gapfill_done",
    "gapfill_lost",
];

pub fn is_reserved_kind(k: &str) -> bool {
    RESERVED_KINDS.contains(&k)
}

pub fn valid_kind(k: &str) -> bool {
    (1..=32).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(super) fn mqtt(c: &mut Checker, m: &Spanned<RawMqtt>, base: &std::path::Path) -> Option<MqttConfig> {
    let at = m.span().start;
    let m = m.get_ref();
    let (host, port, secure) = match &m.broker {
        Some(b) => match url::Url::parse(b.get_ref()) {
            Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts") && u.host_str().is_some() => {
                let secure = u.scheme() == "mqtts";
                let host = u.host_str().unwrap_or_default();
                // `mqtts://[::1]` names the host `[::1]`; the socket wants `::1`.
                let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                (host, u.port().unwrap_or(if secure { 8883 } else { 1883 }), secure)
            }
            _ => {
                c.err(
                    b.span().start,
                    "mqtt.broker",
                    "must be a URL like mqtt://host:1883 or mqtts://host:8883",
                );
                return None;
            }
        },
        None => {
            c.err(at, "mqtt.broker", "is required");
            return None;
        }
    };
    let password = match &m.password_env {
        Some(v) => match std::env::var(v.get_ref()) {
            Ok(p) => Some(p),
            Err(_) => {
                c.err(
                    v.span().start,
                    "mqtt.password_env",
                    format!("`{}` is not set", v.get_ref()),
                );
                None
            }
        },
        None => m.password.clone().or_else(|| c.secret("mqtt.password")),
    };
    let file = |c: &mut Checker, v: &Option<Spanned<String>>, field: &str| {
        let v = v.as_ref()?;
        let path = base.join(v.get_ref());
        if !path.is_file() {
            c.err(
                v.span().start,
                field,
                format!("`{}` is not a readable file", path.display()),
            );
        }
        Some(path)
    };
    let ca_file = file(c, &m.ca_file, "mqtt.ca_file");
    let client_cert = match (
        file(c, &m.client_cert, "mqtt.client_cert"),
        file(c, &m.client_key, "mqtt.client_key"),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            c.err(at, "mqtt.client_cert", "client_cert and client_key go together");
            None
        }
    };
    let tls = if secure {
        Some(MqttTls { ca_file, client_cert })
    } else {
        if ca_file.is_some() || client_cert.is_some() {
            c.err(
                at,
                "mqtt.broker",
                "ca_file, client_cert and client_key need an mqtts:// broker",
            );
        }
        None
    };
    Some(MqttConfig {
        host,
        port,
        client_id: m.client_id.clone(),
        username: m.username.clone(),
        password,
        password_env: m.password_env.as_ref().map(|v| v.get_ref().clone()),
        topic_prefix: m.topic_prefix.clone().unwrap_or_else(|| "tandem".into()),
        discovery_prefix: m
            .discovery
            .unwrap_or(true)
            .then(|| m.discovery_prefix.clone().unwrap_or_else(|| "homeassistant".into())),
        tls,
    })
}
