//! Which of Frigate's keys the import reads; every other key present in the
//! file becomes one warning naming its path and why it has no Tandem
//! equivalent, so nothing is dropped silently. Pure.

use serde_yaml_ng::Value;

/// Key paths the import maps; `*` is any name (a camera, zone, mask or
/// stream). Sections that may be global or per camera are listed once
/// without the `cameras.*.` prefix.
const READ: &[&str] = &[
    "mqtt",
    "mqtt.enabled",
    "mqtt.host",
    "mqtt.port",
    "mqtt.user",
    "mqtt.password",
    "mqtt.client_id",
    "go2rtc",
    "go2rtc.streams",
    "go2rtc.streams.*",
    "cameras",
    "cameras.*",
    "cameras.*.enabled",
    "cameras.*.ffmpeg",
    "cameras.*.ffmpeg.inputs",
    "cameras.*.zones",
    "cameras.*.zones.*",
    "cameras.*.zones.*.coordinates",
    "cameras.*.zones.*.enabled",
];

/// Read globally and per camera (the camera's merged over the global one).
const SECTIONS: &[&str] = &[
    "detect",
    "detect.width",
    "detect.height",
    "record",
    "record.enabled",
    "record.retain",
    "record.retain.days",
    "record.retain.mode",
    "record.continuous",
    "record.continuous.days",
    "record.motion",
    "record.motion.days",
    "record.events",
    "record.events.pre_capture",
    "record.events.post_capture",
    "record.events.retain",
    "record.events.retain.default",
    "record.alerts",
    "record.alerts.pre_capture",
    "record.alerts.post_capture",
    "record.alerts.retain",
    "record.alerts.retain.days",
    "record.detections",
    "record.detections.pre_capture",
    "record.detections.post_capture",
    "record.detections.retain",
    "record.detections.retain.days",
    "motion",
    "motion.enabled",
    "motion.threshold",
    "motion.contour_area",
    "motion.frame_height",
    "motion.mask",
    "motion.mask.*",
    "motion.mask.*.coordinates",
    "motion.mask.*.enabled",
];

fn is_read(pattern: &str) -> bool {
    READ.contains(&pattern)
        || SECTIONS.contains(&pattern)
        || pattern
            .strip_prefix("cameras.*.")
            .is_some_and(|p| SECTIONS.contains(&p))
}

/// The path with names replaced by `*` where the schema takes any name.
fn pattern(path: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::with_capacity(path.len());
    for (i, key) in path.iter().enumerate() {
        let any = match (i, path[0]) {
            (1, "cameras") => true,
            (2, "go2rtc") => path[1] == "streams",
            (3, "cameras") => path[2] == "zones",
            _ => false,
        } || (i >= 2 && path[i - 2] == "motion" && path[i - 1] == "mask");
        out.push(if any { "*" } else { key });
    }
    out.join(".")
}

/// Why a key Frigate knows has no place in Tandem.
fn reason(path: &[&str]) -> &'static str {
    let key = match path {
        ["cameras", _, key, ..] => *key,
        [key, ..] => *key,
        [] => "",
    };
    let sub = match path {
        ["cameras", _, _, sub, ..] => Some(*sub),
        [_, sub, ..] if path[0] != "cameras" => Some(*sub),
        _ => None,
    };
    match (key, sub) {
        ("objects" | "detectors" | "model" | "detect" | "review" | "semantic_search", _) => {
            "object detection has no Tandem equivalent"
        }
        ("face_recognition" | "lpr" | "classification" | "genai", _) => {
            "recognition and classification have no Tandem equivalent"
        }
        ("snapshots", _) => "Tandem takes snapshots on request, not per tracked object",
        ("audio" | "audio_transcription", _) => "audio detection has no Tandem equivalent",
        ("birdseye" | "ui" | "live" | "camera_groups", _) => "Frigate's own user interface settings do not apply",
        ("ffmpeg", _) => "Tandem reads RTSP itself: ffmpeg settings do not apply",
        ("go2rtc", _) => "Tandem reads cameras directly: restream settings do not apply",
        ("onvif", _) => "PTZ control has no Tandem equivalent",
        ("mqtt", Some("topic_prefix")) => "Tandem publishes under its own topics (tandem/<nvr>/…)",
        ("mqtt", _) => "this MQTT setting has no Tandem equivalent",
        ("record", Some("export" | "preview" | "expire_interval" | "sync_recordings")) => {
            "Tandem's exports and retention work differently"
        }
        ("record", _) => "retention by tracked objects has no Tandem equivalent (Tandem keeps whole events)",
        ("motion", _) => "this motion detector setting has no Tandem equivalent",
        ("zones", _) => "Frigate's per-zone object settings have no Tandem equivalent",
        ("auth" | "tls" | "proxy" | "networking", _) => "set Tandem's [http] and [access] tables by hand",
        _ => "has no Tandem equivalent",
    }
}

/// One warning per key of `doc` the import does not read, outermost only.
pub(super) fn unread(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// A mapping key as Frigate (Python) would name it: YAML reads a camera
/// called `1` or `yes` as a number or a boolean.
pub(super) fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
    let Value::Mapping(m) = v else { return };
    for (k, child) in m {
        let Some(key) = key_text(k) else {
            let at = if path.is_empty() {
                "the top level".to_string()
            } else {
                path.join(".")
            };
            out.push(format!("{at}: a key that is not a name ({k:?}); not imported"));
            continue;
        };
        path.push(key);
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let pat = pattern(&parts);
        if pat == "cameras.*.ffmpeg.inputs" {
            inputs(child, &path.join("."), out);
        } else if is_read(&pat) {
            walk(child, path, out);
        } else {
            out.push(format!("{}: {}; not imported", path.join("."), reason(&parts)));
        }
        path.pop();
    }
}

/// An input's `path` and `roles` are read; its ffmpeg arguments are not.
fn inputs(v: &Value, at: &str, out: &mut Vec<String>) {
    let Value::Sequence(items) = v else { return };
    for (i, item) in items.iter().enumerate() {
        let Value::Mapping(m) = item else { continue };
        for k in m.keys() {
            let key = k.as_str().unwrap_or("?");
            if key != "path" && key != "roles" {
                out.push(format!(
                    "{at}[{i}].{key}: Tandem reads RTSP itself: ffmpeg settings do not apply; not imported"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_any_camera_zone_mask_and_stream() {
        assert_eq!(
            pattern(&["cameras", "front", "zones", "steps", "coordinates"]),
            "cameras.*.zones.*.coordinates"
        );
        assert_eq!(
            pattern(&["cameras", "front", "motion", "mask", "tree", "enabled"]),
            "cameras.*.motion.mask.*.enabled"
        );
        assert_eq!(pattern(&["motion", "mask", "m1"]), "motion.mask.*");
        assert_eq!(pattern(&["go2rtc", "streams", "front"]), "go2rtc.streams.*");
        assert!(is_read("cameras.*.record.alerts.retain.days"));
        assert!(!is_read("cameras.*.objects"));
        assert!(!is_read("record.alerts.retain.mode"));
    }

    #[test]
    fn unread_keys_are_named_once_at_their_outermost_path() {
        let doc: Value = serde_yaml_ng::from_str(
            "objects:\n  track: [person]\ncameras:\n  front:\n    objects:\n      track: [car]\n    detect:\n      width: 1280\n      fps: 5\n",
        )
        .unwrap();
        assert_eq!(
            unread(&doc),
            vec![
                "objects: object detection has no Tandem equivalent; not imported".to_string(),
                "cameras.front.objects: object detection has no Tandem equivalent; not imported".to_string(),
                "cameras.front.detect.fps: object detection has no Tandem equivalent; not imported".to_string(),
            ]
        );
    }
}
