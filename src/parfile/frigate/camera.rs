//! One Frigate camera → one Tandem network camera and one channel: its
//! inputs by role, its `record` retention and capture times as a recording
//! mode, retention and pre/post times, its motion settings, masks and zones.
//! Pure (takes the camera with Frigate's global sections already merged in);
//! must never carry a resolved secret.

use std::fmt::Write;

use super::geometry::{self, Polygon, Refused};
use super::model::{Camera, Coordinates, Masks, Ordered, Record, RetainMode, Sources};
use super::streams::{self, Secret, Stream};
use super::toml_str;

/// Frigate's defaults where the file says nothing.
const DEFAULT_CAPTURE_S: u32 = 5;
const DEFAULT_EVENT_DAYS: f64 = 10.0;
/// Tandem's bounds on `recording.pre` and `recording.post`.
const MAX_PRE_S: u32 = 300;
const MAX_POST_S: u32 = 3600;

/// What a camera became, in TOML.
pub(super) struct Imported {
    pub network_camera: Option<String>,
    pub channel: String,
}

/// A problem that makes the file wrong (not merely untranslatable).
pub(super) struct Invalid {
    pub field: String,
    pub message: String,
}

pub(super) struct Ctx<'a> {
    pub streams: Option<&'a Ordered<Sources>>,
    pub warnings: &'a mut Vec<String>,
    pub errors: &'a mut Vec<Invalid>,
}

pub(super) fn import(ctx: &mut Ctx, number: u32, name: &str, cam: &Camera) -> Imported {
    let prefix = format!("cameras.{name}");
    let network_camera = network_camera(ctx, &prefix, name, cam);
    let enabled = cam.enabled.unwrap_or(true);
    let bound = enabled && network_camera.is_some();
    if !enabled {
        ctx.warnings.push(format!(
            "{prefix}.enabled: the camera is disabled; channel {number} `{name}` is imported without a camera"
        ));
    } else if network_camera.is_none() {
        ctx.warnings.push(format!(
            "{prefix}: no RTSP stream could be imported; channel {number} `{name}` is imported without a camera"
        ));
    }
    let mut ch = String::new();
    let _ = writeln!(ch, "[[channel]]\nnumber = {number}\nname = {}", toml_str(name));
    if bound {
        let _ = writeln!(ch, "camera = {}", toml_str(name));
    }
    let size = cam.detect.as_ref().and_then(|d| Some((d.width?, d.height?)));
    let events = recording(ctx, &prefix, cam.record.as_ref().cloned().unwrap_or_default(), &mut ch);
    motion(ctx, &prefix, cam, size, events, &mut ch);
    Imported {
        network_camera,
        channel: ch,
    }
}

fn network_camera(ctx: &mut Ctx, prefix: &str, name: &str, cam: &Camera) -> Option<String> {
    let inputs = cam.ffmpeg.as_ref().map(|f| f.inputs.as_slice()).unwrap_or_default();
    let has = |role: &str| inputs.iter().position(|i| i.roles.iter().any(|r| r == role));
    for (k, input) in inputs.iter().enumerate() {
        if !input.roles.iter().any(|r| r == "record" || r == "detect") {
            ctx.warnings.push(format!(
                "{prefix}.ffmpeg.inputs[{k}]: an input with roles [{}] (no record or detect) is not imported",
                input.roles.join(", ")
            ));
        }
    }
    let main = match (has("record"), has("detect")) {
        (Some(r), _) => r,
        (None, Some(d)) => {
            ctx.warnings.push(format!(
                "{prefix}.ffmpeg.inputs: no input has the record role; the detect input is the camera's stream"
            ));
            d
        }
        (None, None) => return None,
    };
    let mut resolve = |k: usize| -> Option<Stream> {
        let path = &inputs[k].path;
        let source = match streams::restream_name(path) {
            Some(stream) => streams::go2rtc_source(ctx.streams, &stream),
            None => Ok(path.clone()),
        };
        match source.and_then(|s| streams::split(&s)) {
            Ok(s) => Some(s),
            Err(why) => {
                ctx.warnings
                    .push(format!("{prefix}.ffmpeg.inputs[{k}].path: {why}; not imported"));
                None
            }
        }
    };
    let main_stream = resolve(main)?;
    let sub_stream = has("detect")
        .filter(|d| *d != main && inputs[*d].path.trim() != inputs[main].path.trim())
        .and_then(&mut resolve)
        .filter(|s| s.url != main_stream.url);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "[[network_camera]]\nname = {}\nurl = {}",
        toml_str(name),
        toml_str(&main_stream.url)
    );
    if let Some(s) = &sub_stream {
        let _ = writeln!(t, "substream_url = {}", toml_str(&s.url));
    }
    let has_creds = |s: &Stream| s.username.is_some() || s.password.is_some() || s.username_env.is_some();
    let creds = match &sub_stream {
        Some(sub) if !has_creds(&main_stream) => sub.clone(),
        Some(sub)
            if has_creds(sub)
                && (sub.username != main_stream.username
                    || sub.password != main_stream.password
                    || sub.username_env != main_stream.username_env) =>
        {
            ctx.warnings.push(format!(
                "{prefix}.ffmpeg.inputs: the detect input's credentials differ from the record input's; Tandem uses one set per camera, the record input's"
            ));
            main_stream.clone()
        }
        _ => main_stream.clone(),
    };
    if let Some(var) = &creds.username_env {
        ctx.warnings.push(format!(
            "{prefix}.ffmpeg.inputs: the user name is `{{{var}}}`, which Tandem cannot read from the environment; credentials not imported, set network_camera `{name}` username and password_env by hand"
        ));
    } else if let Some(user) = &creds.username {
        let _ = writeln!(t, "username = {}", toml_str(user));
        match &creds.password {
            Some(Secret::Env(var)) => {
                let _ = writeln!(t, "password_env = {}", toml_str(var));
            }
            Some(Secret::Literal(p)) => {
                let _ = writeln!(t, "password = {}", toml_str(p));
            }
            None => {}
        }
    } else if creds.password.is_some() {
        ctx.warnings.push(format!(
            "{prefix}.ffmpeg.inputs: a password without a user name is not imported (Tandem needs both)"
        ));
    }
    Some(t)
}

/// `days` as a Tandem duration, at least the minute Tandem requires.
fn age(days: f64) -> String {
    let minutes = ((days * 1440.0).round() as u64).max(1);
    if minutes % 1440 == 0 {
        format!("\"{}d\"", minutes / 1440)
    } else if minutes % 60 == 0 {
        format!("\"{}h\"", minutes / 60)
    } else {
        format!("\"{minutes}m\"")
    }
}

/// Writes `[channel.recording]` and `[channel.retention]`; whether the
/// channel records events (so motion matters).
fn recording(ctx: &mut Ctx, prefix: &str, r: Record, ch: &mut String) -> bool {
    let mut check = |field: &str, days: Option<f64>| -> f64 {
        match days {
            Some(d) if d.is_finite() && d >= 0.0 => d,
            Some(d) => {
                ctx.errors.push(Invalid {
                    field: format!("{prefix}.record.{field}"),
                    message: format!("{d} is not a number of days ≥ 0"),
                });
                0.0
            }
            None => 0.0,
        }
    };
    let retain = r.retain.clone().unwrap_or_default();
    let retain_days = check("retain.days", retain.days);
    let mode = retain.mode.unwrap_or(RetainMode::All);
    let continuous = match &r.continuous {
        Some(c) => check("continuous.days", c.days),
        None if mode == RetainMode::All => retain_days,
        None => 0.0,
    };
    let motion = match &r.motion {
        Some(m) => check("motion.days", m.days),
        None if mode != RetainMode::All => retain_days,
        None => 0.0,
    };
    if mode == RetainMode::ActiveObjects && r.motion.is_none() && retain_days > 0.0 {
        ctx.warnings.push(format!(
            "{prefix}.record.retain.mode: `active_objects` needs object detection, which Tandem has not; segments with motion are kept instead"
        ));
    }
    let newer = r.alerts.is_some() || r.detections.is_some();
    let (mut pre, mut post, events_days) = if newer {
        let sides = [("alerts", &r.alerts), ("detections", &r.detections)];
        let mut days = 0.0f64;
        let (mut pre, mut post) = (0, 0);
        for (side, c) in sides {
            let Some(c) = c else { continue };
            pre = pre.max(c.pre_capture.unwrap_or(DEFAULT_CAPTURE_S));
            post = post.max(c.post_capture.unwrap_or(DEFAULT_CAPTURE_S));
            let d = c.retain.as_ref().and_then(|r| r.days);
            days = days.max(check(&format!("{side}.retain.days"), d.or(Some(DEFAULT_EVENT_DAYS))));
        }
        (pre, post, days)
    } else {
        let e = r.events.clone().unwrap_or_default();
        let days = check(
            "events.retain.default",
            Some(e.retain.and_then(|r| r.default).unwrap_or(DEFAULT_EVENT_DAYS)),
        );
        (
            e.pre_capture.unwrap_or(DEFAULT_CAPTURE_S),
            e.post_capture.unwrap_or(DEFAULT_CAPTURE_S),
            days,
        )
    };
    let capture_field = if newer {
        "alerts.pre_capture"
    } else {
        "events.pre_capture"
    };
    if pre > MAX_PRE_S {
        ctx.warnings.push(format!(
            "{prefix}.record.{capture_field}: {pre} s is more than Tandem's {MAX_PRE_S} s; {MAX_PRE_S} s imported"
        ));
        pre = MAX_PRE_S;
    }
    if post > MAX_POST_S {
        ctx.warnings.push(format!(
            "{prefix}.record.{}: {post} s is more than Tandem's {MAX_POST_S} s; {MAX_POST_S} s imported",
            capture_field.replace("pre_", "post_")
        ));
        post = MAX_POST_S;
    }
    let event_days = events_days.max(motion);
    if !r.enabled.unwrap_or(false) {
        ctx.warnings.push(format!(
            "{prefix}.record.enabled: recording is off in Frigate (its default); the channel's recording mode is `off`"
        ));
        let _ = writeln!(ch, "\n[channel.recording]\nmode = \"off\"");
        return false;
    }
    let (mode, max_age, event_max_age) = if continuous > 0.0 && event_days > continuous {
        ("continuous+events", continuous, Some(event_days))
    } else if continuous > 0.0 {
        ("continuous", continuous, None)
    } else if event_days > 0.0 {
        ("events", event_days, Some(event_days))
    } else {
        ctx.warnings.push(format!(
            "{prefix}.record: every retention is 0 days, so Frigate keeps nothing; the channel's recording mode is `off`"
        ));
        let _ = writeln!(ch, "\n[channel.recording]\nmode = \"off\"");
        return false;
    };
    let events = mode != "continuous";
    let _ = writeln!(ch, "\n[channel.recording]\nmode = \"{mode}\"");
    if events {
        let _ = writeln!(ch, "pre = \"{pre}s\"\npost = \"{post}s\"");
    }
    let _ = writeln!(ch, "\n[channel.retention]\nmax_age = {}", age(max_age));
    if let Some(e) = event_max_age {
        let _ = writeln!(ch, "event_max_age = {}", age(e));
    }
    events
}

fn motion(ctx: &mut Ctx, prefix: &str, cam: &Camera, size: Option<(u32, u32)>, events: bool, ch: &mut String) {
    let m = cam.motion.clone().unwrap_or_default();
    if m.enabled == Some(false) {
        if events {
            ctx.warnings.push(format!(
                "{prefix}.motion.enabled: motion detection is off, so the channel records events only from triggers"
            ));
        }
        return;
    }
    let _ = writeln!(ch, "\n[channel.motion]");
    if let Some(t) = m.threshold {
        if !(1..=255).contains(&t) {
            ctx.warnings.push(format!(
                "{prefix}.motion.threshold: {t} is outside Frigate's 1–255; {} imported",
                t.clamp(1, 255)
            ));
        }
        let _ = writeln!(ch, "sensitivity = {}", geometry::sensitivity(t));
    }
    if let Some(a) = m.contour_area {
        let share = geometry::min_area(a, m.frame_height, size);
        let _ = writeln!(ch, "min_area = {}", toml::Value::Float(share));
    }
    let mut masks = Vec::new();
    let add = |ctx: &mut Ctx, field: String, c: &Coordinates, out: &mut Vec<Polygon>| match geometry::polygon(c, size) {
        Ok(p) => out.push(p),
        Err(Refused::Invalid(message)) => ctx.errors.push(Invalid { field, message }),
        Err(Refused::Skipped(why)) => ctx.warnings.push(format!("{field}: {why}; not imported")),
    };
    match &m.mask {
        None => {}
        Some(Masks::One(s)) => add(
            ctx,
            format!("{prefix}.motion.mask"),
            &Coordinates::One(s.clone()),
            &mut masks,
        ),
        Some(Masks::List(v)) => {
            for (k, s) in v.iter().enumerate() {
                add(
                    ctx,
                    format!("{prefix}.motion.mask[{k}]"),
                    &Coordinates::One(s.clone()),
                    &mut masks,
                );
            }
        }
        Some(Masks::Named(named)) => {
            for (n, z) in &named.0 {
                if z.enabled == Some(false) {
                    ctx.warnings
                        .push(format!("{prefix}.motion.mask.{n}: disabled; not imported"));
                } else {
                    add(
                        ctx,
                        format!("{prefix}.motion.mask.{n}.coordinates"),
                        &z.coordinates,
                        &mut masks,
                    );
                }
            }
        }
    }
    let mut zones = Vec::new();
    let mut names = Vec::new();
    for (n, z) in cam.zones.as_ref().map(|z| z.0.as_slice()).unwrap_or_default() {
        if z.enabled == Some(false) {
            ctx.warnings.push(format!("{prefix}.zones.{n}: disabled; not imported"));
            continue;
        }
        let before = zones.len();
        add(
            ctx,
            format!("{prefix}.zones.{n}.coordinates"),
            &z.coordinates,
            &mut zones,
        );
        if zones.len() > before {
            names.push(n.as_str());
        }
    }
    if !names.is_empty() {
        ctx.warnings.push(format!(
            "{prefix}.zones: Frigate zones filter tracked objects; Tandem watches motion only inside its zones, so {} became motion zones (their names and object filters are not imported)",
            names.join(", ")
        ));
    }
    for (key, polys) in [("masks", &masks), ("zones", &zones)] {
        if polys.is_empty() {
            continue;
        }
        let list: Vec<String> = polys
            .iter()
            .map(|p| {
                let pts: Vec<String> = p
                    .iter()
                    .map(|[x, y]| format!("[{}, {}]", toml::Value::Float(*x), toml::Value::Float(*y)))
                    .collect();
                format!("[{}]", pts.join(", "))
            })
            .collect();
        let _ = writeln!(ch, "{key} = [\n    {},\n]", list.join(",\n    "));
    }
}
