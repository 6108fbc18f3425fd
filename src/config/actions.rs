//! Configuration of alert actions: the `[[action]]` tables (MQTT, webhook,
//! e-mail and SMS), with their templates, schedules, retry horizon and TLS
//! trust, checked with errors that name the file, line and field.
//!
//! Must never open a connection or read a secret's value into an error
//! message: it only checks and resolves what the file says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::events::duration;
use super::{Checker, SecretSource, SizeOrNumber};
use crate::alerts::template::Template;
use crate::recording::schedule::{self, Mode, Schedule, Window};

/// A secret an action needs (an SMTP password, an SMS gateway's token) and
/// where it came from, so that an export writes the reference back.
#[derive(Clone, PartialEq)]
pub struct Secret {
    pub value: String,
    pub source: SecretSource,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<redacted>, {:?})", self.source)
    }
}

/// How an SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailTls {
    /// Plain SMTP (a relay on the site's own network).
    None,
    /// Plain connection upgraded with STARTTLS before anything is sent;
    /// refused if the server does not offer it.
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
}

impl MailTls {
    pub fn as_str(self) -> &'static str {
        match self {
            MailTls::None => "none",
            MailTls::StartTls => "starttls",
            MailTls::Implicit => "implicit",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EmailTarget {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: MailTls,
    /// AUTH (PLAIN or LOGIN, whichever the server offers) when set.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Trust this CA (PEM) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SmsProvider {
    /// Kannel's `sendsms` HTTP interface (smsbox), e.g.
    /// `http://127.0.0.1:13013/cgi-bin/sendsms`.
    Kannel {
        url: url::Url,
        username: String,
        password: Secret,
    },
    /// A Twilio-compatible REST API: `POST {url}/2010-04-01/Accounts/{account}/Messages.json`.
    Twilio {
        url: url::Url,
        account: String,
        token: Secret,
        from: String,
    },
    /// A GSM modem on a serial port, AT commands in text mode.
    Modem {
        device: PathBuf,
        baud: u32,
        pin: Option<Secret>,
    },
}

impl SmsProvider {
    pub fn name(&self) -> &'static str {
        match self {
            SmsProvider::Kannel { .. } => "kannel",
            SmsProvider::Twilio { .. } => "twilio",
            SmsProvider::Modem { .. } => "modem",
        }
    }
}

/// What happens to a text longer than `max_segments` SMS segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsOverflow {
    /// Cut to fit, ending with "…".
    Truncate,
    /// Sent as several separate messages of at most `max_segments` each.
    Split,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SmsTarget {
    pub provider: SmsProvider,
    /// E.164 numbers ("+4915…").
    pub to: Vec<String>,
    /// Segments one message may take (a concatenated SMS); default 1.
    pub max_segments: u32,
    pub overflow: SmsOverflow,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ActionTarget {
    /// Publish to the `[mqtt]` broker.
    Mqtt,
    Webhook {
        url: url::Url,
        /// Trust this CA (PEM) for an `https://` URL instead of the system roots.
        ca_file: Option<PathBuf>,
    },
    Email(EmailTarget),
    Sms(SmsTarget),
}

impl ActionTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            ActionTarget::Mqtt => "mqtt",
            ActionTarget::Webhook { .. } => "webhook",
            ActionTarget::Email(_) => "email",
            ActionTarget::Sms(_) => "sms",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionConfig {
    pub name: String,
    pub target: ActionTarget,
    /// Only these channels; `None` = all (and NVR-wide events).
    pub channels: Option<Vec<u32>>,
    /// Only these event types; `None` = all.
    pub kinds: Option<Vec<String>>,
    /// At most one start per channel and event type per this interval.
    pub min_interval: Duration,
    /// The subject (e-mail) or first line; `None` = the built-in text.
    pub subject: Option<Template>,
    /// The body (e-mail, SMS text); `None` = the built-in text.
    pub body: Option<Template>,
    /// When the action may send; `None` = always. A window's mode is
    /// `Continuous` ("on"); outside every window the default is `Off`.
    pub schedule: Option<Schedule>,
    /// The time zone `{start}` and `{end}` are written in (and the schedule's);
    /// `None` = the channel's recording time zone.
    pub time_zone: Option<jiff::tz::TimeZone>,
    /// The name `time_zone` was given by, for export.
    pub time_zone_name: Option<String>,
    /// How long a message is retried before it is given up as failed.
    pub retry_for: Duration,
    /// A `camera_offline` alert is sent only if the camera is still offline
    /// after this long (a reconnect within it sends nothing).
    pub offline_grace: Duration,
    /// Attach (e-mail) or link (others) the event's snapshot.
    pub snapshot: bool,
    /// The snapshot's width in pixels (aspect kept); default 640.
    pub snapshot_width: u32,
}

impl ActionConfig {
    /// An action with every optional setting at its default (as a
    /// `[[action]]` with only `name`, `type` and its target's fields).
    pub fn new(name: &str, target: ActionTarget) -> ActionConfig {
        ActionConfig {
            name: name.to_string(),
            target,
            channels: None,
            kinds: None,
            min_interval: Duration::from_secs(60),
            subject: None,
            body: None,
            schedule: None,
            time_zone: None,
            time_zone_name: None,
            retry_for: DEFAULT_RETRY_FOR,
            offline_grace: DEFAULT_OFFLINE_GRACE,
            snapshot: true,
            snapshot_width: crate::snapshot::DEFAULT_WIDTH,
        }
    }

    /// Whether the schedule lets the action send at `t`.
    pub fn scheduled_at(&self, t: crate::time::Time90k) -> bool {
        self.schedule.as_ref().is_none_or(|s| s.mode_at(t) != Mode::Off)
    }
}

/// Default retry horizon: long enough to ride out a mail server's restart or
/// a night-long internet outage is not the goal; an hour is what a guard
/// still wants to hear about.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(3600);
pub const DEFAULT_OFFLINE_GRACE: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    smtp: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    #[serde(default)]
    to: Vec<Spanned<String>>,
    provider: Option<Spanned<String>>,
    account: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    device: Option<Spanned<String>>,
    baud: Option<Spanned<i64>>,
    pin: Option<Spanned<String>>,
    pin_env: Option<Spanned<String>>,
    max_segments: Option<Spanned<i64>>,
    overflow: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    /// `body`, or `template` as the SMS issue calls it.
    #[serde(alias = "template")]
    body: Option<Spanned<String>>,
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    schedule: Vec<Spanned<RawWindow>>,
    retry_for: Option<Spanned<SizeOrNumber>>,
    offline_grace: Option<Spanned<SizeOrNumber>>,
    snapshot: Option<bool>,
    snapshot_width: Option<Spanned<i64>>,
    channels: Option<Vec<u32>>,
    events: Option<Vec<String>>,
    min_interval: Option<Spanned<SizeOrNumber>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
}

/// The secret key of an action's secret in a parameter file's `[secrets]`.
pub fn secret_key(action: &str, field: &str) -> String {
    format!("action.{action}.{field}")
}

struct Ctx<'a> {
    base: &'a Path,
    index: usize,
    name: String,
    at: usize,
}

impl Ctx<'_> {
    fn f(&self, field: &str) -> String {
        format!("action[{}].{field}", self.index)
    }
}

/// Reads a secret given inline, by environment variable or from a file
/// (at most one), or from a parameter file's sealed secrets.
fn secret(
    c: &mut Checker,
    x: &Ctx,
    field: &str,
    inline: &Option<Spanned<String>>,
    env: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
) -> Option<Secret> {
    let given = if inline.is_none() && env.is_none() && file.is_none() {
        c.secret(&secret_key(&x.name, field)).map(|v| (v, SecretSource::Inline))
    } else {
        c.given_secret(
            x.base,
            x.at,
            &format!("action[{}]", x.index),
            field,
            [inline, env, file],
        )
    };
    given.map(|(value, source)| Secret { value, source })
}

fn required<'a>(c: &mut Checker, x: &Ctx, v: &'a Option<Spanned<String>>, field: &str, why: &str) -> Option<&'a str> {
    match v {
        Some(v) if !v.get_ref().is_empty() => Some(v.get_ref()),
        Some(v) => {
            c.err(v.span().start, x.f(field), "must not be empty");
            None
        }
        None => {
            c.err(x.at, x.f(field), format!("is required {why}"));
            None
        }
    }
}

fn http_url(c: &mut Checker, x: &Ctx, v: &Spanned<String>, field: &str) -> Option<url::Url> {
    match url::Url::parse(v.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        Ok(_) => {
            c.err(v.span().start, x.f(field), "must be an http:// or https:// URL");
            None
        }
        Err(e) => {
            c.err(v.span().start, x.f(field), format!("`{}`: {e}", v.get_ref()));
            None
        }
    }
}

fn ca_file(c: &mut Checker, x: &Ctx, v: &Option<Spanned<String>>) -> Option<PathBuf> {
    let v = v.as_ref()?;
    let path = x.base.join(v.get_ref());
    if !path.is_file() {
        c.err(
            v.span().start,
            x.f("ca_file"),
            format!("`{}` is not a readable file", path.display()),
        );
    }
    Some(path)
}

fn template(c: &mut Checker, x: &Ctx, v: &Option<Spanned<String>>, field: &str) -> Option<Template> {
    let v = v.as_ref()?;
    Template::parse(v.get_ref())
        .map_err(|e| c.err(v.span().start, x.f(field), e))
        .ok()
}

/// An E.164 number: "+", then 6 to 15 digits.
pub fn valid_phone(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (6..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn email(c: &mut Checker, x: &Ctx, a: &RawAction) -> Option<EmailTarget> {
    let smtp = a.smtp.as_ref();
    let Some(smtp) = smtp else {
        c.err(x.at, x.f("smtp"), "is required for e-mail");
        return None;
    };
    let (host, port, implied) = match url::Url::parse(smtp.get_ref()) {
        Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some() => {
            let smtps = u.scheme() == "smtps";
            let port = u.port().unwrap_or(if smtps { 465 } else { 25 });
            // Submission (587) speaks STARTTLS; 465 and smtps:// speak TLS
            // from the first byte; anything else is a site relay in clear.
            let implied = match (smtps, port) {
                (true, _) | (_, 465) => MailTls::Implicit,
                (_, 587) => MailTls::StartTls,
                _ => MailTls::None,
            };
            (u.host_str().unwrap_or_default().to_string(), port, implied)
        }
        _ => {
            c.err(
                smtp.span().start,
                x.f("smtp"),
                "must be a URL like smtp://host:587 or smtps://host:465",
            );
            return None;
        }
    };
    let tls = match &a.tls {
        None => implied,
        Some(t) => match t.get_ref().as_str() {
            "none" => MailTls::None,
            "starttls" => MailTls::StartTls,
            "implicit" => MailTls::Implicit,
            other => {
                c.err(
                    t.span().start,
                    x.f("tls"),
                    format!("`{other}` is not a TLS mode (starttls, implicit, none)"),
                );
                return None;
            }
        },
    };
    let password = secret(c, x, "password", &a.password, &a.password_env, &a.password_file);
    let username = a.username.as_ref().map(|u| u.get_ref().clone());
    if password.is_some() && username.is_none() {
        c.err(x.at, x.f("username"), "is required with a password");
    }
    if username.is_some() && tls == MailTls::None {
        // A password in clear over the network is what the TLS modes are for.
        c.warn(
            x.at,
            x.f("tls"),
            "AUTH without TLS sends the password in clear; use starttls or implicit",
        );
    }
    let mut ok = true;
    let mut addr = |c: &mut Checker, s: &Spanned<String>, name: &str| {
        if s.get_ref().parse::<lettre::Address>().is_err() {
            c.err(
                s.span().start,
                x.f(name),
                format!("`{}` is not an e-mail address", s.get_ref()),
            );
            ok = false;
        }
    };
    match &a.from {
        Some(fr) => addr(c, fr, "from"),
        None => {
            c.err(x.at, x.f("from"), "is required for e-mail");
            return None;
        }
    }
    for t in &a.to {
        addr(c, t, "to");
    }
    if a.to.is_empty() {
        c.err(x.at, x.f("to"), "needs at least one address");
        return None;
    }
    let ca_file = ca_file(c, x, &a.ca_file);
    ok.then(|| EmailTarget {
        smtp_host: host,
        smtp_port: port,
        tls,
        username,
        password,
        ca_file,
        from: a.from.as_ref().map(|s| s.get_ref().clone()).unwrap_or_default(),
        to: a.to.iter().map(|t| t.get_ref().clone()).collect(),
    })
}

fn sms(c: &mut Checker, x: &Ctx, a: &RawAction) -> Option<SmsTarget> {
    let mut ok = true;
    for t in &a.to {
        if !valid_phone(t.get_ref()) {
            c.err(
                t.span().start,
                x.f("to"),
                format!("`{}` is not a phone number in international form (+4915…)", t.get_ref()),
            );
            ok = false;
        }
    }
    if a.to.is_empty() {
        c.err(x.at, x.f("to"), "needs at least one phone number");
        ok = false;
    }
    let provider = match a.provider.as_ref() {
        None => {
            c.err(x.at, x.f("provider"), "is required for SMS (kannel, twilio or modem)");
            return None;
        }
        Some(p) => match p.get_ref().as_str() {
            "kannel" => {
                let url = required(c, x, &a.url, "url", "for Kannel (its sendsms URL)")
                    .and(a.url.as_ref())
                    .and_then(|u| http_url(c, x, u, "url"));
                let username = required(c, x, &a.username, "username", "for Kannel").map(str::to_string);
                let password = secret(c, x, "password", &a.password, &a.password_env, &a.password_file);
                if password.is_none() && a.password_env.is_none() && a.password_file.is_none() {
                    c.err(x.at, x.f("password"), "is required for Kannel");
                }
                match (url, username, password) {
                    (Some(url), Some(username), Some(password)) => SmsProvider::Kannel {
                        url,
                        username,
                        password,
                    },
                    _ => return None,
                }
            }
            "twilio" => {
                let url = match &a.url {
                    Some(u) => http_url(c, x, u, "url"),
                    None => url::Url::parse("https://api.twilio.com").ok(),
                };
                let account = required(c, x, &a.account, "account", "for Twilio").map(str::to_string);
                let from = required(c, x, &a.from, "from", "for Twilio (the sending number)").map(str::to_string);
                let token = secret(c, x, "token", &a.token, &a.token_env, &a.token_file);
                if token.is_none() && a.token_env.is_none() && a.token_file.is_none() {
                    c.err(x.at, x.f("token"), "is required for Twilio");
                }
                match (url, account, token, from) {
                    (Some(url), Some(account), Some(token), Some(from)) => SmsProvider::Twilio {
                        url,
                        account,
                        token,
                        from,
                    },
                    _ => return None,
                }
            }
            "modem" => {
                let device =
                    required(c, x, &a.device, "device", "for a modem (e.g. /dev/ttyUSB0)").map(|d| x.base.join(d));
                let baud = match &a.baud {
                    None => 115_200,
                    Some(b) => match u32::try_from(*b.get_ref()) {
                        Ok(v) if crate::alerts::sms::valid_baud(v) => v,
                        _ => {
                            c.err(
                                b.span().start,
                                x.f("baud"),
                                format!(
                                    "{} is not a serial speed (9600, 19200, 38400, 57600, 115200, 230400, 460800)",
                                    b.get_ref()
                                ),
                            );
                            return None;
                        }
                    },
                };
                let pin = secret(c, x, "pin", &a.pin, &a.pin_env, &None);
                if let Some(p) = &pin {
                    if !(4..=8).contains(&p.value.len()) || !p.value.bytes().all(|b| b.is_ascii_digit()) {
                        c.err(x.at, x.f("pin"), "a SIM PIN is 4 to 8 digits");
                        return None;
                    }
                }
                SmsProvider::Modem {
                    device: device?,
                    baud,
                    pin,
                }
            }
            other => {
                c.err(
                    p.span().start,
                    x.f("provider"),
                    format!("`{other}` is not an SMS provider (kannel, twilio, modem)"),
                );
                return None;
            }
        },
    };
    let max_segments = match &a.max_segments {
        None => 1,
        Some(m) => match u32::try_from(*m.get_ref()) {
            Ok(v @ 1..=10) => v,
            _ => {
                c.err(m.span().start, x.f("max_segments"), "must be between 1 and 10");
                return None;
            }
        },
    };
    let overflow = match a.overflow.as_ref().map(|o| (o, o.get_ref().as_str())) {
        None | Some((_, "truncate")) => SmsOverflow::Truncate,
        Some((_, "split")) => SmsOverflow::Split,
        Some((o, other)) => {
            c.err(
                o.span().start,
                x.f("overflow"),
                format!("`{other}` is not an overflow rule (truncate, split)"),
            );
            return None;
        }
    };
    ok.then(|| SmsTarget {
        provider,
        to: a.to.iter().map(|t| t.get_ref().clone()).collect(),
        max_segments,
        overflow,
    })
}

fn windows(c: &mut Checker, x: &Ctx, raw: &[Spanned<RawWindow>], tz: jiff::tz::TimeZone) -> Option<Schedule> {
    if raw.is_empty() {
        return None;
    }
    let mut s = Schedule {
        tz,
        default: Mode::Off,
        windows: Vec::new(),
    };
    for (i, w) in raw.iter().enumerate() {
        let at = w.span().start;
        let w = w.get_ref();
        let wf = |name: &str| x.f(&format!("schedule[{i}].{name}"));
        let times = super::events::window_times(c, at, [&w.days, &w.from, &w.to], &wf);
        if let Some((days, from, to)) = times {
            s.windows.push(Window {
                days,
                from,
                to,
                mode: Mode::Continuous,
            });
        }
    }
    Some(s)
}

pub(super) fn action(
    c: &mut Checker,
    a: &Spanned<RawAction>,
    i: usize,
    have_mqtt: bool,
    base: &Path,
) -> Option<ActionConfig> {
    let at = a.span().start;
    let a = a.get_ref();
    let Some(kind) = &a.kind else {
        c.err(
            at,
            format!("action[{i}].type"),
            "is required (mqtt, webhook, email or sms)",
        );
        return None;
    };
    let x = Ctx {
        base,
        index: i,
        name: a.name.clone().unwrap_or_else(|| format!("{}-{i}", kind.get_ref())),
        at,
    };
    let target = match kind.get_ref().as_str() {
        "mqtt" if have_mqtt => ActionTarget::Mqtt,
        "mqtt" => {
            c.err(kind.span().start, x.f("type"), "needs an [mqtt] broker");
            return None;
        }
        "webhook" => {
            let url = match &a.url {
                Some(u) => http_url(c, &x, u, "url")?,
                None => {
                    c.err(at, x.f("url"), "is required for a webhook");
                    return None;
                }
            };
            ActionTarget::Webhook {
                ca_file: ca_file(c, &x, &a.ca_file),
                url,
            }
        }
        "email" => ActionTarget::Email(email(c, &x, a)?),
        "sms" => ActionTarget::Sms(sms(c, &x, a)?),
        other => {
            c.err(
                kind.span().start,
                x.f("type"),
                format!("`{other}` is not an action (mqtt, webhook, email, sms)"),
            );
            return None;
        }
    };
    let min_interval = a
        .min_interval
        .as_ref()
        .and_then(|m| duration(c, m, &x.f("min_interval"), 0.0, 86400.0))
        .unwrap_or(Duration::from_secs(60));
    let retry_for = a
        .retry_for
        .as_ref()
        .and_then(|m| duration(c, m, &x.f("retry_for"), 0.0, 7.0 * 86400.0))
        .unwrap_or(DEFAULT_RETRY_FOR);
    let offline_grace = a
        .offline_grace
        .as_ref()
        .and_then(|m| duration(c, m, &x.f("offline_grace"), 0.0, 86400.0))
        .unwrap_or(DEFAULT_OFFLINE_GRACE);
    let snapshot_width = match &a.snapshot_width {
        None => crate::snapshot::DEFAULT_WIDTH,
        Some(w) => match u32::try_from(*w.get_ref()).map(crate::snapshot::check_width) {
            Ok(Ok(w)) => w,
            _ => {
                c.err(
                    w.span().start,
                    x.f("snapshot_width"),
                    format!(
                        "must be between {} and {} pixels",
                        crate::snapshot::MIN_WIDTH,
                        crate::snapshot::MAX_WIDTH
                    ),
                );
                crate::snapshot::DEFAULT_WIDTH
            }
        },
    };
    let time_zone = a.time_zone.as_ref().and_then(|z| {
        schedule::parse_tz(z.get_ref())
            .map_err(|e| c.err(z.span().start, x.f("time_zone"), e))
            .ok()
    });
    let schedule = windows(
        c,
        &x,
        &a.schedule,
        time_zone.clone().unwrap_or_else(jiff::tz::TimeZone::system),
    );
    Some(ActionConfig {
        subject: template(c, &x, &a.subject, "subject"),
        body: template(c, &x, &a.body, "body"),
        name: x.name,
        target,
        channels: a.channels.clone(),
        kinds: a.events.clone(),
        min_interval,
        schedule,
        time_zone,
        time_zone_name: a.time_zone.as_ref().map(|z| z.get_ref().clone()),
        retry_for,
        offline_grace,
        snapshot: a.snapshot.unwrap_or(true),
        snapshot_width,
    })
}
