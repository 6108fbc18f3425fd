//! The `[[channel]]` tables: numbers, bindings, retention, and (through
//! `events`) recording policy and motion detection. Must never open the store.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use toml::Spanned;

use super::{events, units, ChannelConfig, Checker, SizeOrNumber};
use crate::store::retention::RetentionPolicy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    pub(super) number: Option<Spanned<i64>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) camera: Option<Spanned<String>>,
    pub(super) retention: Option<Spanned<RawRetention>>,
    pub(super) recording: Option<Spanned<events::RawRecording>>,
    pub(super) motion: Option<Spanned<events::RawMotion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) max_age: Option<Spanned<SizeOrNumber>>,
    pub(super) event_max_age: Option<Spanned<SizeOrNumber>>,
    pub(super) max_bytes: Option<Spanned<SizeOrNumber>>,
}

/// Checks every channel; `names` are the network cameras configured.
pub(super) fn channels(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawChannel>],
    names: &HashSet<String>,
) -> Vec<ChannelConfig> {
    let mut channels = Vec::new();
    let mut numbers = BTreeMap::new();
    for (i, ch) in raw.iter().enumerate() {
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
                if a.get_ref().text() == "forever" {
                    *target = None;
                    continue;
                }
                match units::parse_duration(&a.get_ref().text()) {
                    Ok(d) if d.as_secs() >= 60 => *target = Some(crate::time::ticks_of(d)),
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
            recording: events::recording(c, ch.recording.as_ref(), &prefix),
            motion: events::motion(c, ch.motion.as_ref(), &prefix),
        });
    }
    channels
}
