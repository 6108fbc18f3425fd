//! Tandem's configuration: the typed model every other module reads, loading it
//! from TOML, and validating it with errors that name the file, line and field
//! — all problems at once, not just the first — plus warnings for settings
//! that work but that an operator must know about. One file per table:
//! `cameras`, `channels`, `rules` (failover), `events` (recording policy,
//! motion, triggers, actions); `source` reads files with a bound and maps
//! offsets to lines. Reporting N errors costs O(N log lines).
//!
//! Must never start anything or open a camera, and never read a file without
//! a bound: a configuration is data, and `tandem check` runs exactly this
//! code. Its only look at the host is the storage volume's size (statvfs)
//! and this host's interface addresses.

mod access;
pub mod accounts;
pub mod actions;
#[cfg(test)]
mod actions_tests;
pub mod archive;
mod cameras;
mod channels;
pub mod events;
pub mod gapfill;
mod http;
pub mod pool;
pub mod render;
mod rules;
pub mod source;
pub mod units;

pub use source::Checker;

pub use http::HttpSettings;
pub use render::document;

pub use actions::{ActionConfig, ActionTarget, EmailTarget, MailTls, Secret, SmsOverflow, SmsProvider, SmsTarget};
pub use events::{MotionConfig, MqttConfig, MqttTls, TriggerConfig};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::store::retention::RetentionPolicy;
use cameras::RawCamera;
use channels::RawChannel;
use rules::RawFailover;

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
    /// Where the password came from: an export writes a reference back as
    /// the reference, never as the value it resolved to.
    pub source: SecretSource,
}

/// Where a secret in the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the file (or in the camera's URL), or opened from a
    /// parameter file's sealed `[secrets]`.
    Inline,
    /// `password_env = "VAR"`.
    Env(String),
    /// `password_file = "path"` (resolved against the configuration's directory).
    File(PathBuf),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <redacted>, source: {:?} }}",
            self.username, self.source
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
    /// The camera records to its own card and can replay it (ONVIF Profile
    /// G): gap fill asks it for the holes in its channels' timelines.
    pub edge_storage: bool,
    /// Where to ask for a replay (`rtsp://`, no credentials); `None`: `url`.
    pub replay_url: Option<url::Url>,
    /// Which cameras a standby takes first when it lacks room (`never`: not
    /// taken over); see `failover::capacity`.
    pub priority: crate::failover::capacity::Priority,
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
    /// How often the scrub rereads every segment against its hash; None: off.
    pub scrub_interval: Option<Duration>,
    /// Bytes of video queued for the store writer at most (`write_buffer`):
    /// beyond it, whole GOPs are dropped and counted.
    pub write_buffer_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// This NVR's name among its peers (`[nvr] name`), which `config push`
    /// matches `[[override]]` tables against; `None` when not set.
    pub name: Option<String>,
    pub storage: StorageConfig,
    pub listen: SocketAddr,
    /// TLS and the redirect listener (`[http]`).
    pub http: HttpSettings,
    pub cameras: Vec<NetworkCamera>,
    pub channels: Vec<ChannelConfig>,
    /// Failover rules, from `[failover] rules = "FILE.json"` and `[[rule]]` tables.
    pub rules: Vec<crate::failover::rule::ConfiguredRule>,
    pub failover: FailoverSettings,
    pub mqtt: Option<MqttConfig>,
    pub triggers: Vec<TriggerConfig>,
    pub actions: Vec<ActionConfig>,
    /// Sessions and the audit log (`[access]`).
    pub access: crate::auth::Settings,
    /// Users and tokens (`[[user]]`, `[[token]]`); `None`: the file does not
    /// manage them and the stored ones stay.
    pub accounts: Option<accounts::Accounts>,
    /// Gap fill from the cameras' edge storage (`[gapfill]`).
    pub gapfill: gapfill::GapfillSettings,
    /// Membership of a recorder pool (`[pool]`); `None`: not in a pool.
    pub pool: Option<pool::PoolSettings>,
    /// The S3 archive tier (`[archive]`); `None`: nothing is archived.
    pub archive: Option<archive::ArchiveSettings>,
}

impl Default for Config {
    /// Nothing configured: the defaults of every table, no camera, no channel.
    fn default() -> Self {
        Config {
            name: None,
            storage: StorageConfig::default(),
            listen: DEFAULT_LISTEN.parse().expect("default address parses"),
            http: Default::default(),
            cameras: Vec::new(),
            channels: Vec::new(),
            rules: Vec::new(),
            failover: Default::default(),
            mqtt: None,
            triggers: Vec::new(),
            actions: Vec::new(),
            access: Default::default(),
            accounts: None,
            gapfill: Default::default(),
            pool: None,
            archive: None,
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct FailoverSettings {
    /// Shared secret between the site's NVRs: required to import footage and
    /// sent when transferring it. `None` disables the import endpoint.
    pub peer_token: Option<String>,
    /// The environment variable `peer_token` was read from, if it was.
    pub peer_token_env: Option<String>,
    /// Bytes per second a failback transfer may use, so it never crowds out
    /// live video on the network.
    pub transfer_rate: u64,
    /// How `tls = true` checks and backups trust the peer's certificate.
    pub peer_trust: Option<crate::httpc::PeerTrust>,
}

impl fmt::Debug for FailoverSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverSettings")
            .field("peer_token", &self.peer_token.as_ref().map(|_| "<redacted>"))
            .field("transfer_rate", &self.transfer_rate)
            .field("peer_trust", &self.peer_trust.as_ref().map(|t| t.describe()))
            .finish()
    }
}

/// 20 Mbit/s.
pub const DEFAULT_TRANSFER_RATE: u64 = 2_500_000;

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            peer_token: None,
            peer_token_env: None,
            transfer_rate: DEFAULT_TRANSFER_RATE,
            peer_trust: None,
        }
    }
}

impl Config {
    pub fn camera(&self, name: &str) -> Option<&NetworkCamera> {
        self.cameras.iter().find(|c| c.name == name)
    }

    /// Whether the API is served over TLS.
    pub fn is_tls(&self) -> bool {
        self.http.is_tls()
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// `[storage] write_buffer` at least: a few key frames of a 4K camera.
pub const WRITE_BUFFER_MIN: u64 = 256 << 10;
/// `[storage] write_buffer` at most: the NVR is meant to run in 512 MiB.
pub const WRITE_BUFFER_MAX: u64 = 256 << 20;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: PathBuf::from("tandem-data"),
            min_free_bytes: 1 << 30,
            flush_interval: Duration::from_secs(1),
            segment_duration: Duration::from_secs(60),
            scrub_interval: None,
            write_buffer_bytes: crate::store::queue::DEFAULT_WRITE_BUFFER,
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
        if self.line == 0 && self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else if self.line == 0 {
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
    http: Option<Spanned<http::RawHttp>>,
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
    action: Vec<Spanned<actions::RawAction>>,
    access: Option<Spanned<access::RawAccess>>,
    nvr: Option<Spanned<RawNvr>>,
    #[serde(default)]
    user: Vec<Spanned<accounts::RawUser>>,
    #[serde(default)]
    token: Vec<Spanned<accounts::RawToken>>,
    gapfill: Option<Spanned<gapfill::RawGapfill>>,
    pool: Option<Spanned<pool::RawPool>>,
    archive: Option<Spanned<archive::RawArchive>>,
    // The parameter file's own tables, read by `parfile` (header, sealed
    // secrets, per-NVR overrides); a configuration carrying them is valid.
    #[allow(dead_code)]
    parameter_file: Option<toml::Value>,
    secrets: Option<toml::Value>,
    #[allow(dead_code)]
    #[serde(default, rename = "override")]
    overrides: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNvr {
    name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    dir: Option<Spanned<String>>,
    min_free: Option<Spanned<SizeOrNumber>>,
    flush_interval: Option<Spanned<SizeOrNumber>>,
    segment_duration: Option<Spanned<SizeOrNumber>>,
    scrub_interval: Option<Spanned<SizeOrNumber>>,
    write_buffer: Option<Spanned<SizeOrNumber>>,
}

/// Sizes and durations may be written as strings with units or bare numbers.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum SizeOrNumber {
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

/// Reads and validates a configuration file; warnings are logged.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let (config, warnings) = load_checked(path)?;
    for w in warnings {
        tracing::warn!("configuration: {w}");
    }
    Ok(config)
}

/// Reads and validates a configuration file, returning the configuration and
/// the warnings (accepted settings an operator must know about) apart.
pub fn load_checked(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    load_checked_with(path, |_| Ok(SecretValues::new()))
}

/// `load_checked` for a file whose secrets `open` finds (a parameter file's
/// sealed `[secrets]`, given the text).
pub fn load_checked_with(
    path: &Path,
    open: impl FnOnce(&str) -> Result<SecretValues, ConfigErrors>,
) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    let file = path.display().to_string();
    let text = source::read_bounded_at_most(path, source::MAX_CONFIG_FILE).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let secrets = open(&text)?;
    let (config, mut warnings) = parse_with_secrets(&text, &file, base, secrets)?;
    if let Some(w) = storage_volume_warning(&config.storage) {
        warnings.push(ConfigError {
            file: file.clone(),
            line: 0,
            field: "storage.min_free".into(),
            message: w,
        });
    }
    Ok((config, warnings))
}

/// Secret values by where they go (`network_camera.NAME.password`,
/// `mqtt.password`, `failover.peer_token`, `token.USER.NAME.secret_hash`):
/// a parameter file's sealed `[secrets]`, opened. A field written in the
/// text wins over the same secret given here.
pub type SecretValues = std::collections::BTreeMap<String, String>;

/// Parses and validates configuration text; `base` resolves relative paths.
pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
    parse_checked(text, file, base).map(|(c, _)| c)
}

/// `parse`, returning the warnings too.
pub fn parse_checked(text: &str, file: &str, base: &Path) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    parse_with_secrets(text, file, base, SecretValues::new())
}

/// `parse_checked` with secrets that are not in the text.
pub fn parse_with_secrets(
    text: &str,
    file: &str,
    base: &Path,
    secrets: SecretValues,
) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    let mut c = Checker::new(file, text);
    c.secrets = secrets;
    let raw: RawConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let off = e.span().map(|s| s.start).unwrap_or(0);
            let field = if e.span().is_some() {
                c.field_at(off)
            } else {
                String::new()
            };
            let msg = e.message().trim().to_string();
            c.err(off, field, msg);
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
        if let Some(v) = &s.write_buffer {
            match units::parse_bytes(&v.get_ref().text()) {
                Ok(b) if (WRITE_BUFFER_MIN..=WRITE_BUFFER_MAX).contains(&b) => storage.write_buffer_bytes = b,
                Ok(_) => c.err(
                    v.span().start,
                    "storage.write_buffer",
                    format!(
                        "must be between {} and {}",
                        units::format_bytes(WRITE_BUFFER_MIN),
                        units::format_bytes(WRITE_BUFFER_MAX)
                    ),
                ),
                Err(e) => c.err(v.span().start, "storage.write_buffer", e),
            }
        }
        if let Some(v) = &s.scrub_interval {
            match units::parse_duration(&v.get_ref().text()) {
                Ok(d) if d >= Duration::from_secs(1) => storage.scrub_interval = Some(d),
                Ok(_) => c.err(v.span().start, "storage.scrub_interval", "must be at least 1 s"),
                Err(e) => c.err(v.span().start, "storage.scrub_interval", e),
            }
        }
    }
    let default_listen = DEFAULT_LISTEN.parse().expect("default address parses");
    let (listen, http) = http::http(&mut c, raw.http.as_ref(), base, default_listen);
    let (cameras, names) = cameras::network_cameras(&mut c, &raw.network_camera, base);
    let mut channels = channels::channels(&mut c, &raw.channel, &names);
    let rules = rules::load_rules(&mut c, &raw, base, &cameras, &channels);
    let failover = rules::failover_settings(&mut c, raw.failover.as_ref(), &rules, base);
    rules::check_shared_channels(&mut c, &rules);
    rules::check_backup_is_not_self(&mut c, &rules, listen);
    let mqtt = raw.mqtt.as_ref().and_then(|m| events::mqtt(&mut c, m, base));
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
        .filter_map(|(i, a)| actions::action(&mut c, a, i, mqtt.is_some(), base))
        .collect();
    // The floor checked against the volume whether written or the default
    // (1 GiB is more than a small appliance's card).
    if let Some(e) = min_free_error(storage.min_free_bytes, volume_size(&storage.dir)) {
        match raw
            .storage
            .as_ref()
            .map(|s| (s.span().start, s.get_ref().min_free.as_ref()))
        {
            Some((_, Some(v))) => c.err(v.span().start, "storage.min_free", e),
            Some((at, None)) => c.err(at, "storage.min_free", format!("the default {e}; set a lower min_free")),
            None => c.err(
                0,
                "storage.min_free",
                format!("the default {e}; add [storage] with a lower min_free"),
            ),
        }
    }
    let access = access::parse(&mut c, raw.access.as_ref());
    let gapfill = gapfill::parse(&mut c, raw.gapfill.as_ref());
    let archive = archive::parse(&mut c, raw.archive.as_ref(), base);
    if let (Some(a), Some(raw)) = (&archive, &raw.archive) {
        for w in archive::unarchived_channels(a, &channels) {
            c.warn(raw.span().start, "archive.after", w);
        }
    }
    let accounts = accounts::parse(&mut c, &raw.user, &raw.token, raw.secrets.is_some());
    let name = raw.nvr.as_ref().and_then(|n| n.get_ref().name.as_ref()).and_then(|n| {
        let v = n.get_ref();
        let ok = (1..=64).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            c.err(
                n.span().start,
                "nvr.name",
                "use 1 to 64 letters, digits, `-`, `_` or `.`",
            );
        }
        ok.then(|| v.clone())
    });
    let pool = pool::parse(&mut c, raw.pool.as_ref(), name.as_deref());
    if !c.errors.is_empty() {
        c.errors.sort_by_key(|e| e.line);
        return Err(ConfigErrors(c.errors));
    }
    channels.sort_by_key(|c| c.number);
    c.warnings.sort_by_key(|e| e.line);
    let config = Config {
        name,
        accounts,
        access,
        storage,
        listen,
        http,
        cameras,
        channels,
        rules,
        failover,
        mqtt,
        triggers,
        actions,
        gapfill,
        pool,
        archive,
    };
    Ok((config, c.warnings))
}

/// Why `min_free` cannot work on a volume of `volume` bytes: retention keeps
/// that much free by deleting footage, so a floor at or above the volume's
/// size deletes every segment as soon as it closes.
pub fn min_free_error(min_free: u64, volume: Option<u64>) -> Option<String> {
    let v = volume?;
    (min_free >= v).then(|| {
        format!(
            "{} is not below the size of the storage volume ({}): every segment would be deleted as soon as it closes",
            units::format_bytes(min_free),
            units::format_bytes(v)
        )
    })
}

/// A floor above half the volume leaves less room for footage than for nothing.
fn storage_volume_warning(s: &StorageConfig) -> Option<String> {
    let v = volume_size(&s.dir)?;
    (s.min_free_bytes > v / 2 && s.min_free_bytes < v).then(|| {
        format!(
            "{} is more than half the storage volume ({}): less than half of it can hold footage",
            units::format_bytes(s.min_free_bytes),
            units::format_bytes(v)
        )
    })
}

/// The size of the volume holding `dir` (or its nearest existing ancestor,
/// since the directory may not exist before the first start).
pub fn volume_size(dir: &Path) -> Option<u64> {
    let dir = dir.ancestors().find(|a| a.exists())?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass from a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_blocks as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests;
