//! Composing a message: an event notice and an action's templates become the
//! subject, body and JSON that a transport sends.
//!
//! Pure: the caller passes the NVR's name, the channel's name and time zone,
//! the links and the clock's value (through the notice). Must never read
//! the configuration, the store or the clock itself.

use jiff::tz::TimeZone;

use super::template::{Fields, Template};
use super::Message;
use crate::config::{ActionConfig, ActionTarget};
use crate::events::{Notice, Phase};
use crate::time::Time90k;

/// What a message needs beyond the notice and the action.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// The NVR's name as people read it (`[nvr] name`, else the host's name).
    pub nvr: &'a str,
    /// The NVR's stable id (as in its MQTT topics); the JSON's `nvr`. Empty:
    /// the name is used.
    pub nvr_id: &'a str,
    /// The channel's name, if the event has a channel.
    pub channel_name: Option<&'a str>,
    /// The channel's recording time zone; the action's `time_zone` wins.
    pub channel_tz: Option<&'a TimeZone>,
    /// The web client's base URL (`https://nvr.example.com`), if known.
    pub base_url: Option<&'a str>,
    /// The signed link to the event's snapshot, when there is one.
    pub snapshot_link: Option<String>,
}

/// `t` as a person in `tz` reads it: "2026-11-23 19:04:05 CET".
pub fn local_time(t: Time90k, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_microsecond(t.as_unix_micros()) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %Z").to_string(),
        Err(_) => t.to_rfc3339(),
    }
}

/// The template fields' values for notice `n`.
pub fn fields(a: &ActionConfig, n: &Notice, cx: &Context) -> Fields {
    let tz = a
        .time_zone
        .as_ref()
        .or(cx.channel_tz)
        .cloned()
        .unwrap_or_else(TimeZone::system);
    let link = match (cx.base_url, n.channel) {
        (Some(base), Some(ch)) => format!(
            "{}/#/playback?channel={ch}&t={}",
            base.trim_end_matches('/'),
            n.start.to_rfc3339()
        ),
        (Some(base), None) => format!("{}/#/events", base.trim_end_matches('/')),
        _ => String::new(),
    };
    Fields {
        nvr: cx.nvr.to_string(),
        channel: n.channel.map(|c| c.to_string()).unwrap_or_default(),
        channel_name: match (cx.channel_name, n.channel) {
            (Some(name), _) => name.to_string(),
            (None, Some(c)) => format!("channel {c}"),
            (None, None) => String::new(),
        },
        kind: n.kind.replace('_', " "),
        phase: match n.phase {
            Phase::Start => "started",
            Phase::End => "ended",
            Phase::Instant => "",
        }
        .to_string(),
        start: local_time(n.start, &tz),
        end: n.end.map(|e| local_time(e, &tz)).unwrap_or_default(),
        link,
        snapshot_link: cx.snapshot_link.clone().unwrap_or_default(),
    }
}

fn default_subject(f: &Fields) -> Template {
    let text = match f.channel_name.is_empty() {
        true => "{nvr}: {type} {phase}",
        false => "{nvr}: {type} {phase} on {channel_name}",
    };
    Template::parse(text).expect("the built-in subject parses")
}

fn default_body(target: &ActionTarget) -> Template {
    let text = match target {
        // One SMS segment holds 160 GSM characters: the essentials first.
        ActionTarget::Sms(_) => "{nvr}: {type} {phase} on {channel_name} at {start} {snapshot_link}",
        _ => {
            "{type} {phase} on {channel_name} (channel {channel}) of {nvr}.\n\n\
             Start: {start}\nEnd: {end}\n\nWatch: {link}\nPicture: {snapshot_link}\n"
        }
    };
    Template::parse(text).expect("the built-in body parses")
}

/// Collapses the runs of spaces an empty template field leaves ("motion  on")
/// and trims the ends, line by line.
fn tidy(s: &str) -> String {
    s.lines()
        .map(|l| l.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The message for notice `n` through action `a`, with outbox id `id`.
pub fn compose(a: &ActionConfig, n: &Notice, cx: &Context, id: String) -> Message {
    let f = fields(a, n, cx);
    let subject = tidy(&a.subject.clone().unwrap_or_else(|| default_subject(&f)).render(&f));
    let body = a.body.clone().unwrap_or_else(|| default_body(&a.target)).render(&f);
    let body = if a.body.is_some() { body } else { tidy(&body) };
    let mut json = serde_json::to_value(n).unwrap_or_default();
    json["nvr"] = serde_json::json!(if cx.nvr_id.is_empty() { cx.nvr } else { cx.nvr_id });
    json["nvr_name"] = serde_json::json!(cx.nvr);
    json["message_id"] = serde_json::json!(id);
    json["channel_name"] = serde_json::json!(f.channel_name);
    json["subject"] = serde_json::json!(subject);
    json["text"] = serde_json::json!(body);
    if !f.link.is_empty() {
        json["link"] = serde_json::json!(f.link);
    }
    if !f.snapshot_link.is_empty() {
        json["snapshot_link"] = serde_json::json!(f.snapshot_link);
    }
    Message {
        id,
        subject,
        body,
        json,
        event_id: Some(n.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SmsTarget;

    fn action(target: ActionTarget) -> ActionConfig {
        ActionConfig {
            time_zone: Some(TimeZone::get("Europe/Berlin").unwrap()),
            time_zone_name: Some("Europe/Berlin".into()),
            ..ActionConfig::new("a", target)
        }
    }

    fn notice() -> Notice {
        Notice {
            id: 7,
            channel: Some(3),
            kind: "motion".into(),
            phase: Phase::Start,
            // 2026-11-23T18:04:05Z
            start: Time90k::from_unix_micros(1_795_457_045_000_000),
            end: None,
            details: serde_json::json!({"area": 0.2}),
        }
    }

    fn cx() -> Context<'static> {
        Context {
            nvr: "nvr-a",
            nvr_id: "0f1e2d",
            channel_name: Some("Lobby"),
            channel_tz: None,
            base_url: Some("https://nvr.example.com/"),
            snapshot_link: Some("https://nvr.example.com/s.jpg".into()),
        }
    }

    #[test]
    fn the_built_in_texts_name_the_nvr_channel_and_local_time() {
        let m = compose(&action(ActionTarget::Mqtt), &notice(), &cx(), "tandem-x-1".into());
        assert_eq!(m.subject, "nvr-a: motion started on Lobby");
        assert!(m.body.contains("Start: 2026-11-23 19:04:05 CET"), "{}", m.body);
        assert!(
            m.body
                .contains("Watch: https://nvr.example.com/#/playback?channel=3&t=2026-11-23T18:04:05"),
            "{}",
            m.body
        );
        assert_eq!(m.json["message_id"], "tandem-x-1");
        assert_eq!(
            (m.json["nvr"].as_str(), m.json["nvr_name"].as_str()),
            (Some("0f1e2d"), Some("nvr-a"))
        );
        assert_eq!(m.json["snapshot_link"], "https://nvr.example.com/s.jpg");
        assert_eq!(m.json["type"], "motion");
        assert_eq!(m.event_id, Some(7));
    }

    #[test]
    fn an_sms_by_default_is_one_line_and_a_template_is_used_verbatim() {
        let sms = ActionTarget::Sms(SmsTarget {
            provider: crate::config::SmsProvider::Modem {
                device: "/dev/ttyUSB0".into(),
                baud: 115_200,
                pin: None,
            },
            to: vec!["+4915112345678".into()],
            max_segments: 1,
            overflow: crate::config::SmsOverflow::Truncate,
        });
        let mut a = action(sms);
        let m = compose(&a, &notice(), &cx(), "i".into());
        assert_eq!(
            m.body,
            "nvr-a: motion started on Lobby at 2026-11-23 19:04:05 CET https://nvr.example.com/s.jpg"
        );
        a.body = Some(Template::parse("{channel}|{end}|{type}").unwrap());
        assert_eq!(compose(&a, &notice(), &cx(), "i".into()).body, "3||motion");
    }

    #[test]
    fn an_nvr_wide_event_without_links_leaves_no_gaps() {
        let mut n = notice();
        n.channel = None;
        n.kind = "disk_full".into();
        n.phase = Phase::Instant;
        let c = Context {
            nvr: "nvr-a",
            ..Default::default()
        };
        let m = compose(&action(ActionTarget::Mqtt), &n, &c, "i".into());
        assert_eq!(m.subject, "nvr-a: disk full");
        assert!(m.json.get("link").is_none());
    }
}
