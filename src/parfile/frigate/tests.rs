use std::time::{Duration, Instant};

use super::geometry::{self, Refused};
use super::model::Coordinates;
use super::streams::{self, Secret};
use super::*;
use crate::recording::schedule::Mode;

const FIXTURE: &str = include_str!("../../../tests/data/frigate/config.yml");
const EXPECTED: &str = include_str!("../../../tests/data/frigate/config.expected.toml");

fn warnings_of(yaml: &str) -> Vec<String> {
    convert(yaml, "config.yml").unwrap().warnings
}

fn error_of(yaml: &str) -> ConfigError {
    let e = convert(yaml, "config.yml").unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    e.0.into_iter().next().unwrap()
}

const DAY: i64 = 86_400 * 90_000;

#[test]
fn fixture_converts_to_the_expected_tables_and_warnings() {
    let c = convert(FIXTURE, "config.yml").unwrap();
    assert_eq!(c.toml, EXPECTED);
    assert_eq!(
        c.warnings,
        [
            "mqtt.topic_prefix: Tandem publishes under its own topics (tandem/<nvr>/…); not imported",
            "detectors: object detection has no Tandem equivalent; not imported",
            "objects: object detection has no Tandem equivalent; not imported",
            "snapshots: Tandem takes snapshots on request, not per tracked object; not imported",
            "cameras.front.detect.fps: object detection has no Tandem equivalent; not imported",
            "cameras.front.zones.driveway.objects: Frigate's per-zone object settings have no Tandem equivalent; not imported",
            "cameras.front.objects: object detection has no Tandem equivalent; not imported",
            "cameras.garage.ffmpeg.inputs[0].input_args: Tandem reads RTSP itself: ffmpeg settings do not apply; not imported",
            "cameras.garage.snapshots: Tandem takes snapshots on request, not per tracked object; not imported",
            "cameras.front.zones: Frigate zones filter tracked objects; Tandem watches motion only inside its zones, so driveway became motion zones (their names and object filters are not imported)",
            "cameras.garage.zones: Frigate zones filter tracked objects; Tandem watches motion only inside its zones, so door became motion zones (their names and object filters are not imported)",
            "cameras.back.enabled: the camera is disabled; channel 3 `back` is imported without a camera",
        ]
    );
}

#[test]
fn fixture_output_is_a_configuration_tandem_accepts() {
    // The import writes references; `config::parse` resolves them.
    std::env::set_var("FRIGATE_RTSP_PASSWORD", "rtsp-secret");
    std::env::set_var("FRIGATE_MQTT_PASSWORD", "mqtt-secret");
    let c = convert(FIXTURE, "config.yml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::parse(&c.toml, "frigate.toml", dir.path()).unwrap();

    let names: Vec<_> = config.cameras.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["front", "garage", "back"]);
    let front = config.camera("front").unwrap();
    assert_eq!(
        front.url.as_str(),
        "rtsp://192.168.1.10:554/cam/realmonitor?channel=1&subtype=0"
    );
    assert_eq!(
        front.substream_url.as_ref().unwrap().as_str(),
        "rtsp://192.168.1.10:554/cam/realmonitor?channel=1&subtype=1"
    );
    let creds = front.credentials.as_ref().unwrap();
    assert_eq!(creds.username, "viewer");
    assert_eq!(
        creds.source,
        crate::config::SecretSource::Env("FRIGATE_RTSP_PASSWORD".into())
    );
    let garage = config.camera("garage").unwrap();
    assert_eq!(garage.url.as_str(), "rtsp://192.168.1.12:554/Streaming/Channels/101");
    let back = config.camera("back").unwrap();
    assert_eq!(back.credentials.as_ref().unwrap().password, "secret!");

    let numbers: Vec<_> = config
        .channels
        .iter()
        .map(|c| (c.number, c.name.as_str(), c.camera.as_deref()))
        .collect();
    assert_eq!(
        numbers,
        [
            (1, "front", Some("front")),
            (2, "garage", Some("garage")),
            (3, "back", None)
        ]
    );
    let [ch1, ch2, ch3] = &config.channels[..] else {
        panic!("three channels")
    };
    assert_eq!(ch1.recording.schedule.default, Mode::ContinuousEvents);
    assert_eq!(ch1.retention.max_age, Some(7 * DAY));
    assert_eq!(ch1.retention.event_max_age, Some(14 * DAY));
    assert_eq!(
        (ch1.recording.events.pre, ch1.recording.events.post),
        (10 * 90_000, 10 * 90_000)
    );
    assert_eq!(ch2.recording.schedule.default, Mode::Events);
    assert_eq!(ch2.retention.max_age, Some(30 * DAY));
    assert_eq!(
        (ch2.recording.events.pre, ch2.recording.events.post),
        (5 * 90_000, 10 * 90_000)
    );
    assert_eq!(ch3.retention.max_age, Some(3 * DAY));
    assert_eq!(ch3.retention.event_max_age, Some(14 * DAY));

    let m1 = ch1.motion.as_ref().unwrap();
    assert_eq!(m1.sensitivity, 46);
    assert_eq!(
        m1.masks,
        vec![vec![(0.0, 0.0), (1.0, 0.0), (1.0, 0.1389), (0.0, 0.1389)]]
    );
    assert_eq!(m1.zones, vec![vec![(0.0, 1.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0)]]);
    let m2 = ch2.motion.as_ref().unwrap();
    assert_eq!(m2.sensitivity, 50);
    assert_eq!(m2.masks, vec![vec![(0.0, 0.0), (1.0, 0.0), (1.0, 0.1), (0.0, 0.1)]]);
    assert_eq!(m2.zones, vec![vec![(0.1, 0.5), (0.4, 0.5), (0.4, 0.9)]]);

    let mqtt = config.mqtt.as_ref().unwrap();
    assert_eq!((mqtt.host.as_str(), mqtt.port), ("192.168.1.20", 1884));
    assert_eq!(mqtt.username.as_deref(), Some("frigate"));
    assert_eq!(mqtt.password_env.as_deref(), Some("FRIGATE_MQTT_PASSWORD"));
    assert_eq!(mqtt.topic_prefix, "tandem");
}

#[test]
fn the_output_never_holds_a_resolved_secret() {
    std::env::set_var("FRIGATE_RTSP_PASSWORD", "rtsp-secret");
    let c = convert(FIXTURE, "config.yml").unwrap();
    assert!(!c.toml.contains("rtsp-secret"));
    assert!(!c.toml.contains('{'), "no substitution left in:\n{}", c.toml);
}

/// Frigate ≥ 0.14: alerts/detections instead of events, continuous/motion
/// days, named masks with relative coordinates, merge keys.
const NEWER: &str = r#"
record:
  enabled: true
  continuous:
    days: 0
  motion:
    days: 2
  alerts:
    pre_capture: 3
    post_capture: 20
    retain:
      days: 0.5
      mode: motion
  detections:
    pre_capture: 8
    retain:
      days: 1
base: &base
  ffmpeg:
    inputs:
      - path: rtsp://10.0.0.5/main
        roles: [detect, record]
cameras:
  yard:
    <<: *base
    motion:
      threshold: 255
      contour_area: 40
      frame_height: 50
      mask:
        tree:
          coordinates: 0.1,0.1,0.2,0.1,0.2,0.2
        old:
          enabled: false
          coordinates: 0,0,0.5,0,0.5,0.5
  shed:
    <<: *base
    record:
      continuous:
        days: 1
    motion:
      enabled: false
"#;

#[test]
fn newer_frigate_alerts_detections_and_named_masks() {
    let c = convert(NEWER, "config.yml").unwrap();
    let yard = c.toml.split("[[channel]]").nth(1).unwrap();
    assert!(
        yard.contains(
            "mode = \"events\"\npre = \"8s\"\npost = \"20s\"\n\n[channel.retention]\nmax_age = \"2d\"\nevent_max_age = \"2d\""
        ),
        "{yard}"
    );
    assert!(yard.contains("sensitivity = 1\n"), "{yard}");
    // 40 px of a 50 × 89 motion picture (16:9 with no detect size).
    assert!(yard.contains(&format!("min_area = {}\n", geometry::min_area(40, Some(50), None))));
    assert!(
        yard.contains("masks = [\n    [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]],\n]"),
        "{yard}"
    );
    let shed = c.toml.split("[[channel]]").nth(2).unwrap();
    assert!(shed.contains("mode = \"continuous+events\"\npre = \"8s\""), "{shed}");
    assert!(shed.contains("max_age = \"1d\"\nevent_max_age = \"2d\""), "{shed}");
    assert!(!shed.contains("[channel.motion]"), "{shed}");
    assert_eq!(
        c.warnings,
        [
            "record.alerts.retain.mode: retention by tracked objects has no Tandem equivalent (Tandem keeps whole events); not imported",
            "base: has no Tandem equivalent; not imported",
            "cameras.yard.motion.mask.old: disabled; not imported",
            "cameras.shed.motion.enabled: motion detection is off, so the channel records events only from triggers",
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    crate::config::parse(&c.toml, "frigate.toml", dir.path()).unwrap();
}

#[test]
fn recording_off_or_keeping_nothing_is_mode_off_with_a_warning() {
    let yaml =
        "cameras:\n  a:\n    ffmpeg:\n      inputs:\n        - path: rtsp://10.0.0.1/s\n          roles: [record]\n";
    let c = convert(yaml, "config.yml").unwrap();
    assert!(c.toml.contains("[channel.recording]\nmode = \"off\"\n"), "{}", c.toml);
    assert_eq!(
        c.warnings,
        ["cameras.a.record.enabled: recording is off in Frigate (its default); the channel's recording mode is `off`"]
    );
    let nothing = format!("record:\n  enabled: true\n  events:\n    retain:\n      default: 0\n{yaml}");
    let c = convert(&nothing, "config.yml").unwrap();
    assert!(c.toml.contains("mode = \"off\""));
    assert_eq!(
        c.warnings,
        ["cameras.a.record: every retention is 0 days, so Frigate keeps nothing; the channel's recording mode is `off`"]
    );
}

#[test]
fn invalid_yaml_is_an_error_with_its_line() {
    let e = error_of("mqtt:\n  host: a\ncameras:\n  front: [\n    1, 2\n  bad: }\n");
    assert_eq!(e.file, "config.yml");
    assert_eq!(e.line, 6);
    assert!(e.to_string().starts_with("config.yml:6"), "{e}");
}

#[test]
fn a_wrong_type_names_its_line_and_key_path() {
    let yaml = "cameras:\n  front:\n    record:\n      enabled: true\n      retain:\n        days: seven\n";
    let e = error_of(yaml);
    assert_eq!(e.line, 6);
    assert_eq!(e.field, "cameras.front.record.retain.days");
    assert!(e.message.contains("invalid type"), "{e}");
    let e = error_of("mqtt:\n  port: 99999\ncameras:\n  a: {}\n");
    assert_eq!((e.line, e.field.as_str()), (2, "mqtt.port"));
    let e = error_of("record:\n  retain:\n    mode: sometimes\ncameras:\n  a: {}\n");
    assert_eq!((e.line, e.field.as_str()), (3, "record.retain.mode"));
}

#[test]
fn bad_coordinates_are_errors_naming_the_field() {
    let yaml = "cameras:\n  a:\n    zones:\n      z:\n        coordinates: 1,2,x,4,5,6\n";
    let e = convert(yaml, "config.yml").unwrap_err();
    assert_eq!(e.0[0].field, "cameras.a.zones.z.coordinates");
    assert!(e.0[0].message.contains("`x` is not a coordinate"), "{e}");
}

#[test]
fn no_cameras_is_an_error() {
    assert_eq!(error_of("mqtt:\n  host: a\n").field, "cameras");
    assert_eq!(error_of("").line, 1);
    assert_eq!(error_of("- a\n- b\n").line, 1);
}

#[test]
fn more_than_8_mib_is_refused_before_parsing() {
    let huge = format!("cameras:\n  a: {{}}\n#{}\n", "x".repeat(MAX_YAML));
    let e = error_of(&huge);
    assert!(e.message.contains("is refused"), "{e}");
    assert_eq!(e.line, 0);
}

#[test]
fn alias_bombs_are_refused_quickly() {
    // Nested: 9 levels of 9 aliases each, 9⁹ values once expanded.
    let mut nested = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        nested.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    nested.push_str("cameras:\n  front: {}\n");
    // Wide: one anchor of 2 000 values named 2 000 times passes
    // serde_yaml_ng's own jump limit (100 × events) yet expands to 4 000 000.
    let mut wide = String::from("big: &big [");
    wide.push_str(&vec!["1"; 2000].join(", "));
    wide.push_str("]\nmany: [");
    wide.push_str(&vec!["*big"; 2000].join(", "));
    wide.push_str("]\ncameras:\n  front: {}\n");
    // The nested one trips serde_yaml_ng's jump limit, the wide one ours.
    for (bomb, why) in [
        (nested, "aliases repeat too often"),
        (wide, "more than 200000 values once aliases are expanded"),
    ] {
        let started = Instant::now();
        let e = convert(&bomb, "config.yml").unwrap_err();
        let took = started.elapsed();
        println!("refused in {took:?}: {e}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn pixel_coordinates_become_fractions_of_the_detect_resolution() {
    let px = Coordinates::One("0,0,640,0,640,360,0,360".into());
    assert_eq!(
        geometry::polygon(&px, Some((1280, 720))),
        Ok(vec![[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]])
    );
    // Any value above 1 makes the polygon pixels, as in Frigate.
    let list = Coordinates::List(vec!["1,1".into(), "1280,1".into(), "1280,720".into()]);
    assert_eq!(
        geometry::polygon(&list, Some((1280, 720))),
        Ok(vec![[0.0008, 0.0014], [1.0, 0.0014], [1.0, 1.0]])
    );
    let rel = Coordinates::One("0.1,0.2,0.3,0.2,0.3,0.9".into());
    assert_eq!(
        geometry::polygon(&rel, None),
        Ok(vec![[0.1, 0.2], [0.3, 0.2], [0.3, 0.9]])
    );
    assert!(matches!(geometry::polygon(&px, None), Err(Refused::Skipped(_))));
    assert!(matches!(
        geometry::polygon(&px, Some((320, 240))),
        Err(Refused::Skipped(_))
    ));
    for bad in ["1,2,3", "0.1,0.2,0.3,0.4", "a,b,c,d,e,f", "-1,0,1,0,1,1"] {
        assert!(
            matches!(
                geometry::polygon(&Coordinates::One(bad.into()), None),
                Err(Refused::Invalid(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn pixel_masks_without_a_detect_size_are_skipped_with_a_warning() {
    let yaml = "cameras:\n  a:\n    motion:\n      mask: 0,0,100,0,100,100\n";
    assert_eq!(
        warnings_of(yaml),
        [
            "cameras.a: no RTSP stream could be imported; channel 1 `a` is imported without a camera",
            "cameras.a.record.enabled: recording is off in Frigate (its default); the channel's recording mode is `off`",
            "cameras.a.motion.mask: pixel coordinates need the camera's detect.width and detect.height to convert; not imported",
        ]
    );
}

#[test]
fn threshold_and_contour_area_map_onto_sensitivity_and_min_area() {
    assert_eq!(geometry::sensitivity(1), 100);
    assert_eq!(geometry::sensitivity(30), 50);
    assert_eq!(geometry::sensitivity(255), 1);
    assert_eq!(geometry::sensitivity(-5), 100);
    assert!(geometry::sensitivity(20) > geometry::sensitivity(40));
    assert_eq!(geometry::min_area(10, None, None), 0.000562);
    assert_eq!(geometry::min_area(100, Some(100), Some((100, 100))), 0.01);
    assert_eq!(geometry::min_area(1_000_000, None, None), 1.0);
}

#[test]
fn input_paths_give_address_user_and_password_reference() {
    let s = streams::split("rtsp://viewer:{FRIGATE_RTSP_PASSWORD}@10.0.10.10:554/cam?channel=1").unwrap();
    assert_eq!(s.url, "rtsp://10.0.10.10:554/cam?channel=1");
    assert_eq!(s.username.as_deref(), Some("viewer"));
    assert_eq!(s.password, Some(Secret::Env("FRIGATE_RTSP_PASSWORD".into())));
    let s = streams::split("RTSP://u%40x:p%3Aw@cam/live").unwrap();
    assert_eq!(
        (s.url.as_str(), s.username.as_deref()),
        ("rtsp://cam/live", Some("u@x"))
    );
    assert_eq!(s.password, Some(Secret::Literal("p:w".into())));
    let s = streams::split("rtsp://{FRIGATE_USER}:{FRIGATE_PASS}@cam/live").unwrap();
    assert_eq!(s.username_env.as_deref(), Some("FRIGATE_USER"));
    assert!(streams::split("rtsp://u:{FRIGATE_IP}@{FRIGATE_IP}/x").is_err());
    assert!(streams::split("rtsp://u:pre{FRIGATE_P}@cam/x").is_err());
    assert!(streams::split("http://cam/video.mjpg")
        .unwrap_err()
        .contains("not RTSP"));
    assert!(streams::split("/media/clip.mp4").is_err());
}

#[test]
fn go2rtc_restreams_resolve_to_their_rtsp_source() {
    assert_eq!(
        streams::restream_name("rtsp://127.0.0.1:8554/front"),
        Some("front".into())
    );
    assert_eq!(
        streams::restream_name("rtsp://localhost:8554/front?video=copy"),
        Some("front".into())
    );
    assert_eq!(streams::restream_name("rtsp://10.0.0.1:8554/front"), None);
    assert_eq!(streams::restream_name("rtsp://127.0.0.1:554/front"), None);
    let yaml = "go2rtc:\n  streams:\n    door: ffmpeg:rtsp://10.0.0.9/h264#video=copy\n    bell: [\"homekit://x\", \"onvif://y\"]\ncameras:\n  door:\n    ffmpeg:\n      inputs:\n        - path: rtsp://127.0.0.1:8554/door\n          roles: [record]\n  bell:\n    ffmpeg:\n      inputs:\n        - path: rtsp://127.0.0.1:8554/bell\n          roles: [record]\n  gone:\n    ffmpeg:\n      inputs:\n        - path: rtsp://127.0.0.1:8554/gone\n          roles: [record]\n";
    let c = convert(yaml, "config.yml").unwrap();
    assert!(
        c.toml.contains("name = \"door\"\nurl = \"rtsp://10.0.0.9/h264\"\n"),
        "{}",
        c.toml
    );
    assert_eq!(c.toml.matches("[[network_camera]]").count(), 1, "{}", c.toml);
    assert!(c.warnings.contains(
        &"cameras.bell.ffmpeg.inputs[0].path: restreams go2rtc stream `bell`, whose sources are not RTSP (homekit://x, onvif://y); not imported".to_string()
    ));
    assert!(c.warnings.contains(
        &"cameras.gone.ffmpeg.inputs[0].path: restreams go2rtc stream `gone`, which go2rtc.streams does not define; not imported".to_string()
    ));
    assert!(c.warnings.contains(
        &"cameras.gone: no RTSP stream could be imported; channel 3 `gone` is imported without a camera".to_string()
    ));
}

#[test]
fn mqtt_literal_password_disabled_and_substituted_user() {
    let cams = "cameras:\n  a: {}\n";
    let c = convert(
        &format!("mqtt:\n  host: broker.lan\n  user: nvr\n  password: 1234\n{cams}"),
        "f",
    )
    .unwrap();
    assert!(
        c.toml
            .ends_with("[mqtt]\nbroker = \"mqtt://broker.lan:1883\"\nusername = \"nvr\"\npassword = \"1234\"\n"),
        "{}",
        c.toml
    );
    let c = convert(&format!("mqtt:\n  enabled: false\n  host: b\n{cams}"), "f").unwrap();
    assert!(!c.toml.contains("[mqtt]"));
    assert!(c
        .warnings
        .contains(&"mqtt.enabled: MQTT is off in Frigate; [mqtt] not imported".to_string()));
    let c = convert(
        &format!("mqtt:\n  host: b\n  user: '{{FRIGATE_MQTT_USER}}'\n  password: '{{FRIGATE_MQTT_PASSWORD}}'\n{cams}"),
        "f",
    )
    .unwrap();
    assert!(
        !c.toml.contains("username") && !c.toml.contains("password"),
        "{}",
        c.toml
    );
    assert!(c
        .warnings
        .iter()
        .any(|w| w.starts_with("mqtt.user: `{FRIGATE_MQTT_USER}`")));
}

#[test]
fn a_camera_named_by_a_number_keeps_its_name() {
    let c = convert(
        "cameras:\n  1:\n    ffmpeg:\n      inputs:\n        - path: rtsp://10.0.0.1/s\n          roles: [record]\n",
        "config.yml",
    )
    .unwrap();
    assert!(c.toml.contains("[[network_camera]]\nname = \"1\"\n"), "{}", c.toml);
    assert!(
        c.toml.contains("number = 1\nname = \"1\"\ncamera = \"1\"\n"),
        "{}",
        c.toml
    );
    let dir = tempfile::tempdir().unwrap();
    crate::config::parse(&c.toml, "frigate.toml", dir.path()).unwrap();
}
