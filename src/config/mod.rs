//! Tandem's configuration: the typed model every other module reads, loading it
//! from TOML, and validating it with errors that name the file, line and field
//! — all problems at once, not just the first.
//!
//! Must never start anything or open a camera: a configuration is data, and
//! `tandem check` runs exactly this code.

pub mod events;
pub mod units;

pub use events::{ActionConfig, ActionTarget, MotionConfig, MqttConfig, TriggerConfig};

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::store::retention::RetentionPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// A video source on the network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkCamera {
    pub name: String,
    /// RTSP URL without credentials.
    pub url: url::Url,
    pub substream_url: Option<url::Url>,
    /// The camera's channel at its address (the paper's network camera list);
    /// failover rules name cameras by address and channel.
    pub channel: Option<u32>,
    pub transport: Transport,
    pub credentials: Option<Credentials>,
}

/// A local camera of this NVR: a numbered recording slot.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    pub number: u32,
    pub name: String,
    /// The network camera this channel is bound to at start; `None` is idle.
    pub camera: Option<String>,
    pub retention: RetentionPolicy,
    pub recording: crate::recording::RecordingPolicy,
    /// Motion detection on the channel's substream (or main stream); `None` = off.
    pub motion: Option<MotionConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    pub dir: PathBuf,
    pub min_free_bytes: u64,
    pub flush_interval: Duration,
    pub segment_duration: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub storage: StorageConfig,
    pub listen: SocketAddr,
    pub cameras: Vec<NetworkCamera>,
    pub channels: Vec<ChannelConfig>,
    /// Failover rules, from `[failover] rules = "FILE.json"` and `[[rule]]` tables.
    pub rules: Vec<crate::failover::rule::ConfiguredRule>,
    pub failover: FailoverSettings,
    pub mqtt: Option<MqttConfig>,
    pub triggers: Vec<TriggerConfig>,
    pub actions: Vec<ActionConfig>,
}

#[derive(Clone, PartialEq)]
pub struct FailoverSettings {
    /// Shared secret between the site's NVRs: required to import footage and
    /// sent when transferring it. `None` disables the import endpoint.
    pub peer_token: Option<String>,
    /// Bytes per second a failback transfer may use, so it never crowds out
    /// live video on the network.
    pub transfer_rate: u64,
}

impl fmt::Debug for FailoverSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverSettings")
            .field("peer_token", &self.peer_token.as_ref().map(|_| "<redacted>"))
            .field("transfer_rate", &self.transfer_rate)
            .finish()
    }
}

/// 20 Mbit/s.
pub const DEFAULT_TRANSFER_RATE: u64 = 2_500_000;

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            peer_token: None,
            transfer_rate: DEFAULT_TRANSFER_RATE,
        }
    }
}

impl Config {
    pub fn camera(&self, name: &str) -> Option<&NetworkCamera> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: PathBuf::from("tandem-data"),
            min_free_bytes: 1 << 30,
            flush_interval: Duration::from_secs(1),
            segment_duration: Duration::from_secs(60),
        }
    }
}

/// One problem found in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        } else if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.file, self.line, self.field, self.message)
        }
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    storage: Option<Spanned<RawStorage>>,
    http: Option<Spanned<RawHttp>>,
    #[serde(default)]
    network_camera: Vec<Spanned<RawCamera>>,
    #[serde(default)]
    channel: Vec<Spanned<RawChannel>>,
    failover: Option<Spanned<RawFailover>>,
    #[serde(default)]
    rule: Vec<Spanned<toml::Value>>,
    mqtt: Option<Spanned<events::RawMqtt>>,
    #[serde(default)]
    trigger: Vec<Spanned<events::RawTrigger>>,
    #[serde(default)]
    action: Vec<Spanned<events::RawAction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    /// A JSON rules file in the paper's form.
    rules: Option<Spanned<String>>,
    peer_token: Option<Spanned<String>>,
    peer_token_env: Option<Spanned<String>>,
    transfer_rate: Option<Spanned<SizeOrNumber>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    dir: Option<Spanned<String>>,
    min_free: Option<Spanned<SizeOrNumber>>,
    flush_interval: Option<Spanned<SizeOrNumber>>,
    segment_duration: Option<Spanned<SizeOrNumber>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    name: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    substream_url: Option<Spanned<String>>,
    channel: Option<Spanned<i64>>,
    transport: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    number: Option<Spanned<i64>>,
    name: Option<Spanned<String>>,
    camera: Option<Spanned<String>>,
    retention: Option<Spanned<RawRetention>>,
    recording: Option<Spanned<events::RawRecording>>,
    motion: Option<Spanned<events::RawMotion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<Spanned<SizeOrNumber>>,
    event_max_age: Option<Spanned<SizeOrNumber>>,
    max_bytes: Option<Spanned<SizeOrNumber>>,
}

/// Sizes and durations may be written as strings with units or bare numbers.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum SizeOrNumber {
    Number(f64),
    Text(String),
}

impl SizeOrNumber {
    fn text(&self) -> String {
        match self {
            SizeOrNumber::Number(n) => n.to_string(),
            SizeOrNumber::Text(s) => s.clone(),
        }
    }
}

/// Collects errors against one source text.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }
    fn err(&mut self, offset: usize, field: impl Into<String>, message: impl Into<String>) {
        let line = self.line_of(offset);
        self.errors.push(ConfigError {
            file: self.file.into(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &file, base)
}

/// Parses and validates configuration text; `base` resolves relative paths.
pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Checker {
        file,
        text,
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let off = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().to_string();
            c.err(off, "", msg);
            return Err(ConfigErrors(c.errors));
        }
    };
    let mut storage = StorageConfig::default();
    if let Some(s) = &raw.storage {
        let s = s.get_ref();
        if let Some(d) = &s.dir {
            if d.get_ref().trim().is_empty() {
                c.err(d.span().start, "storage.dir", "must not be empty");
            }
            storage.dir = base.join(d.get_ref());
        }
        if let Some(v) = &s.min_free {
            match units::parse_bytes(&v.get_ref().text()) {
                Ok(b) => storage.min_free_bytes = b,
                Err(e) => c.err(v.span().start, "storage.min_free", e),
            }
        }
        for (field, val, target, min, max) in [
            (
                "storage.flush_interval",
                &s.flush_interval,
                &mut storage.flush_interval,
                0.05,
                60.0,
            ),
            (
                "storage.segment_duration",
                &s.segment_duration,
                &mut storage.segment_duration,
                1.0,
                3600.0,
            ),
        ] {
            if let Some(v) = val {
                match units::parse_duration(&v.get_ref().text()) {
                    Ok(d) if (min..=max).contains(&d.as_secs_f64()) => *target = d,
                    Ok(_) => c.err(v.span().start, field, format!("must be between {min} s and {max} s")),
                    Err(e) => c.err(v.span().start, field, e),
                }
            }
        }
    }
    let mut listen: SocketAddr = DEFAULT_LISTEN.parse().expect("default address parses");
    if let Some(h) = &raw.http {
        if let Some(l) = &h.get_ref().listen {
            match l.get_ref().parse() {
                Ok(a) => listen = a,
                Err(_) => c.err(
                    l.span().start,
                    "http.listen",
                    format!("`{}` is not an address like 127.0.0.1:8080", l.get_ref()),
                ),
            }
        }
    }
    let mut cameras = Vec::new();
    let mut names = HashSet::new();
    for (i, cam) in raw.network_camera.iter().enumerate() {
        let at = cam.span().start;
        let cam = cam.get_ref();
        let prefix = format!("network_camera[{i}]");
        let name = match &cam.name {
            Some(n) if !n.get_ref().trim().is_empty() => {
                if !names.insert(n.get_ref().clone()) {
                    c.err(
                        n.span().start,
                        format!("{prefix}.name"),
                        format!("duplicate camera name `{}`", n.get_ref()),
                    );
                }
                n.get_ref().clone()
            }
            Some(n) => {
                c.err(n.span().start, format!("{prefix}.name"), "must not be empty");
                continue;
            }
            None => {
                c.err(at, format!("{prefix}.name"), "is required");
                continue;
            }
        };
        let prefix = format!("network_camera `{name}`");
        let mut url_creds = None;
        let mut parse_url = |c: &mut Checker, field: &str, v: &Spanned<String>| -> Option<url::Url> {
            match url::Url::parse(v.get_ref()) {
                Ok(mut u) if u.scheme() == "rtsp" || u.scheme() == "rtsps" => {
                    if u.host_str().is_none_or(|h| h.is_empty()) {
                        c.err(v.span().start, format!("{prefix}.{field}"), "URL has no host");
                        return None;
                    }
                    if !u.username().is_empty() {
                        let user = percent(u.username());
                        let pass = percent(u.password().unwrap_or(""));
                        url_creds.get_or_insert(Credentials {
                            username: user,
                            password: pass,
                        });
                        let _ = u.set_username("");
                        let _ = u.set_password(None);
                    }
                    Some(u)
                }
                Ok(u) => {
                    c.err(
                        v.span().start,
                        format!("{prefix}.{field}"),
                        format!("scheme `{}` is not rtsp", u.scheme()),
                    );
                    None
                }
                Err(e) => {
                    c.err(
                        v.span().start,
                        format!("{prefix}.{field}"),
                        format!("`{}` is not a URL: {e}", v.get_ref()),
                    );
                    None
                }
            }
        };
        let url = match &cam.url {
            Some(u) => parse_url(&mut c, "url", u),
            None => {
                c.err(at, format!("{prefix}.url"), "is required");
                None
            }
        };
        let substream_url = cam
            .substream_url
            .as_ref()
            .and_then(|u| parse_url(&mut c, "substream_url", u));
        let transport = match cam.transport.as_ref().map(|t| (t.get_ref().as_str(), t.span().start)) {
            None | Some(("tcp", _)) => Transport::Tcp,
            Some(("udp", _)) => Transport::Udp,
            Some((other, off)) => {
                c.err(
                    off,
                    format!("{prefix}.transport"),
                    format!("`{other}` is not `tcp` or `udp`"),
                );
                Transport::Tcp
            }
        };
        let password_sources = [&cam.password, &cam.password_env, &cam.password_file]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if password_sources > 1 {
            c.err(
                at,
                format!("{prefix}.password"),
                "give only one of password, password_env, password_file",
            );
        }
        let password = if let Some(p) = &cam.password {
            Some(p.get_ref().clone())
        } else if let Some(v) = &cam.password_env {
            match std::env::var(v.get_ref()) {
                Ok(p) => Some(p),
                Err(_) => {
                    c.err(
                        v.span().start,
                        format!("{prefix}.password_env"),
                        format!("environment variable `{}` is not set", v.get_ref()),
                    );
                    None
                }
            }
        } else if let Some(f) = &cam.password_file {
            match std::fs::read_to_string(base.join(f.get_ref())) {
                Ok(p) => Some(p.trim_end_matches(['\n', '\r']).to_string()),
                Err(e) => {
                    c.err(
                        f.span().start,
                        format!("{prefix}.password_file"),
                        format!("cannot read `{}`: {e}", f.get_ref()),
                    );
                    None
                }
            }
        } else {
            None
        };
        let credentials = match (&cam.username, password) {
            (Some(u), p) => Some(Credentials {
                username: u.get_ref().clone(),
                password: p.unwrap_or_default(),
            }),
            (None, _) if password_sources > 0 => {
                c.err(at, format!("{prefix}.username"), "is required when a password is given");
                None
            }
            (None, _) => url_creds,
        };
        let channel = match &cam.channel {
            Some(c2) if (1..=256).contains(c2.get_ref()) => Some(*c2.get_ref() as u32),
            Some(c2) => {
                c.err(
                    c2.span().start,
                    format!("{prefix}.channel"),
                    "must be between 1 and 256",
                );
                None
            }
            None => None,
        };
        if let Some(url) = url {
            cameras.push(NetworkCamera {
                name,
                url,
                substream_url,
                channel,
                transport,
                credentials,
            });
        }
    }
    let mut channels = Vec::new();
    let mut numbers = BTreeMap::new();
    for (i, ch) in raw.channel.iter().enumerate() {
        let at = ch.span().start;
        let ch = ch.get_ref();
        let number = match &ch.number {
            Some(n) if (1..=4096).contains(n.get_ref()) => {
                let num = *n.get_ref() as u32;
                if numbers.insert(num, ()).is_some() {
                    c.err(
                        n.span().start,
                        format!("channel[{i}].number"),
                        format!("duplicate channel number {num}"),
                    );
                }
                num
            }
            Some(n) => {
                c.err(
                    n.span().start,
                    format!("channel[{i}].number"),
                    "must be between 1 and 4096",
                );
                continue;
            }
            None => {
                c.err(at, format!("channel[{i}].number"), "is required");
                continue;
            }
        };
        let prefix = format!("channel {number}");
        if let Some(cam) = &ch.camera {
            if !names.contains(cam.get_ref()) {
                c.err(
                    cam.span().start,
                    format!("{prefix}.camera"),
                    format!("no network_camera is named `{}`", cam.get_ref()),
                );
            }
        }
        let mut retention = RetentionPolicy::default();
        if let Some(r) = &ch.retention {
            let r = r.get_ref();
            for (name, val, target) in [
                ("max_age", &r.max_age, &mut retention.max_age),
                ("event_max_age", &r.event_max_age, &mut retention.event_max_age),
            ] {
                let Some(a) = val else { continue };
                match units::parse_duration(&a.get_ref().text()) {
                    Ok(d) if d.as_secs() >= 60 => *target = Some((d.as_secs_f64() * 90_000.0) as i64),
                    Ok(_) => c.err(
                        a.span().start,
                        format!("{prefix}.retention.{name}"),
                        "must be at least 1 minute",
                    ),
                    Err(e) => c.err(a.span().start, format!("{prefix}.retention.{name}"), e),
                }
            }
            if r.event_max_age.is_none() {
                // Unless told otherwise, event footage is kept as long as continuous.
                retention.event_max_age = retention.max_age;
            }
            if let Some(b) = &r.max_bytes {
                match units::parse_bytes(&b.get_ref().text()) {
                    Ok(v) if v >= 1 << 20 => retention.max_bytes = Some(v),
                    Ok(_) => c.err(
                        b.span().start,
                        format!("{prefix}.retention.max_bytes"),
                        "must be at least 1 MiB",
                    ),
                    Err(e) => c.err(b.span().start, format!("{prefix}.retention.max_bytes"), e),
                }
            }
        }
        channels.push(ChannelConfig {
            number,
            name: ch
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or_else(|| format!("Channel {number}")),
            camera: ch.camera.as_ref().map(|c| c.get_ref().clone()),
            retention,
            recording: events::recording(&mut c, ch.recording.as_ref(), &prefix),
            motion: events::motion(&mut c, ch.motion.as_ref(), &prefix),
        });
    }
    let rules = load_rules(&mut c, &raw, base, &cameras, &channels);
    let mut failover = FailoverSettings::default();
    if let Some(f) = &raw.failover {
        let f = f.get_ref();
        match (&f.peer_token, &f.peer_token_env) {
            (Some(t), None) if t.get_ref().len() >= 16 => failover.peer_token = Some(t.get_ref().clone()),
            (Some(t), None) => c.err(t.span().start, "failover.peer_token", "must be at least 16 characters"),
            (None, Some(v)) => match std::env::var(v.get_ref()) {
                Ok(t) if t.len() >= 16 => failover.peer_token = Some(t),
                Ok(_) => c.err(
                    v.span().start,
                    "failover.peer_token_env",
                    "the token must be at least 16 characters",
                ),
                Err(_) => c.err(
                    v.span().start,
                    "failover.peer_token_env",
                    format!("environment variable `{}` is not set", v.get_ref()),
                ),
            },
            (Some(t), Some(_)) => c.err(
                t.span().start,
                "failover.peer_token",
                "give peer_token or peer_token_env, not both",
            ),
            (None, None) => {}
        }
        if let Some(r) = &f.transfer_rate {
            match units::parse_bytes(&r.get_ref().text()) {
                Ok(b) if b >= 10_000 => failover.transfer_rate = b,
                Ok(_) => c.err(
                    r.span().start,
                    "failover.transfer_rate",
                    "must be at least 10 kB (per second)",
                ),
                Err(e) => c.err(r.span().start, "failover.transfer_rate", e),
            }
        }
    }
    if rules.iter().any(|r| r.rule.backup.is_some()) && failover.peer_token.is_none() && c.errors.is_empty() {
        c.err(
            0,
            "failover.peer_token",
            "rules with `backup` need a peer token to send footage back",
        );
    }
    let mqtt = raw.mqtt.as_ref().and_then(|m| events::mqtt(&mut c, m));
    let numbers: Vec<u32> = channels.iter().map(|ch| ch.number).collect();
    let triggers: Vec<TriggerConfig> = raw
        .trigger
        .iter()
        .enumerate()
        .filter_map(|(i, t)| events::trigger(&mut c, t, i, &numbers))
        .collect();
    if let (Some(t), None) = (raw.trigger.first(), &mqtt) {
        c.err(t.span().start, "trigger", "MQTT triggers need an [mqtt] broker");
    }
    let actions = raw
        .action
        .iter()
        .enumerate()
        .filter_map(|(i, a)| events::action(&mut c, a, i, mqtt.is_some()))
        .collect();
    if !c.errors.is_empty() {
        c.errors.sort_by_key(|e| e.line);
        return Err(ConfigErrors(c.errors));
    }
    channels.sort_by_key(|c| c.number);
    Ok(Config {
        storage,
        listen,
        cameras,
        channels,
        rules,
        failover,
        mqtt,
        triggers,
        actions,
    })
}

/// Loads rules from the JSON file named in `[failover]` and from `[[rule]]`
/// tables, then resolves them against the cameras and channels.
fn load_rules(
    c: &mut Checker<'_>,
    raw: &RawConfig,
    base: &Path,
    cameras: &[NetworkCamera],
    channels: &[ChannelConfig],
) -> Vec<crate::failover::rule::ConfiguredRule> {
    use crate::failover::rule::{self as r, CameraRef};
    let push_errors = |c: &mut Checker<'_>, file: &str, line: usize, errs: Vec<r::RuleError>| {
        for e in errs {
            c.errors.push(ConfigError {
                file: file.to_string(),
                line,
                field: format!("rule {}: {}", e.rule, e.field),
                message: e.message,
            });
        }
    };
    // (source file, line, rule), for reporting.
    let mut parsed: Vec<(String, usize, r::Rule)> = Vec::new();
    if let Some(f) = raw.failover.as_ref().and_then(|f| f.get_ref().rules.as_ref()) {
        let path = base.join(f.get_ref());
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match r::parse_rules(&text) {
                Ok(rules) => parsed.extend(rules.into_iter().map(|x| (shown.clone(), 0, x))),
                Err(errs) => push_errors(c, &shown, 0, errs),
            },
            Err(e) => c.err(
                f.span().start,
                "failover.rules",
                format!("cannot read `{}`: {e}", f.get_ref()),
            ),
        }
    }
    let file = c.file.to_string();
    for (i, t) in raw.rule.iter().enumerate() {
        let line = c.line_of(t.span().start);
        let json = match serde_json::to_value(t.get_ref()) {
            Ok(v) => v,
            Err(e) => {
                c.err(t.span().start, format!("rule[{i}]"), e.to_string());
                continue;
            }
        };
        match r::rules_from_values(&[(i, json)]) {
            Ok(mut rules) => parsed.push((file.clone(), line, rules.remove(0))),
            Err(errs) => push_errors(c, &file, line, errs),
        }
    }
    let refs: Vec<CameraRef<'_>> = cameras
        .iter()
        .map(|cam| CameraRef {
            name: &cam.name,
            host: cam.url.host_str().unwrap_or(""),
            channel: cam.channel,
        })
        .collect();
    let numbers: Vec<u32> = channels.iter().map(|ch| ch.number).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (file, line, rule) in parsed {
        if !seen.insert(rule.name.clone()) {
            let e = r::RuleError {
                rule: format!("`{}`", rule.name),
                field: "name".into(),
                message: "another rule has the same name".into(),
            };
            push_errors(c, &file, line, vec![e]);
            continue;
        }
        match r::resolve(&rule, &refs, &numbers) {
            Ok(cr) => out.push(cr),
            Err(errs) => push_errors(c, &file, line, errs),
        }
    }
    out
}

fn percent(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests;
