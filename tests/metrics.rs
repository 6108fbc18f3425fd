//! `GET /metrics` as Prometheus scrapes it: an operator's bearer token gets
//! the OpenMetrics text with the recording channel's figures; no token, a
//! wrong one or a viewer's is refused.

mod common;
use common::*;
use std::time::Duration;

/// The value of the first sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_scrapes_the_nvr_with_an_operator_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(
        dir.path(),
        1,
        &["--width", "320", "--height", "240", "--bitrate-kbps", "300"],
    );
    let cfg = recorder_config(&dir.path().join("data"), &[("gate", &urls[0])]);
    let nvr = nvr(dir.path(), "nvr", &cfg);
    wait_for(Duration::from_secs(20), "the channel recording", || {
        frames_written(&nvr.base, 1) > 0
    });
    // A flush has made frames durable (the flush interval is 1 s).
    std::thread::sleep(Duration::from_millis(1500));
    let url = format!("{}/metrics", nvr.base);
    let r = http_get(&url).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers
    );
    let text = String::from_utf8(r.body).unwrap();
    let ch = r#"{channel="1",camera="gate"}"#;
    assert!(
        sample(&text, &format!("tandem_channel_frames_total{ch}")).unwrap() > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, &format!("tandem_channel_frames_written_total{ch}")).unwrap() > 0.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("tandem_channel_recording{ch}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("tandem_channel_connected{ch}")),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "tandem_fsyncs_total").unwrap() > 0.0, "{text}");
    assert!(sample(&text, "tandem_flush_seconds_count").unwrap() > 0.0, "{text}");
    assert!(
        sample(&text, "tandem_frame_durable_seconds_count").unwrap() > 0.0,
        "{text}"
    );
    assert!(sample(&text, "tandem_disk_free_bytes").unwrap() > 0.0, "{text}");
    // Nothing has expired in this short run: the counter is there, at zero.
    assert_eq!(
        sample(&text, "tandem_retention_deleted_segments_total"),
        Some(0.0),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // Refused without a valid operator credential.
    let r = http_request("GET", &url, &[("Authorization", "Bearer not-a-token")], b"").unwrap();
    assert_eq!(r.status, 401);
    let created = http_request(
        "POST",
        &format!("{}/api/v1/tokens", nvr.base),
        &[("Content-Type", "application/json")],
        br#"{"name":"dashboard","role":"viewer"}"#,
    )
    .unwrap();
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let viewer = created.json().unwrap()["token"].as_str().unwrap().to_string();
    let r = http_request("GET", &url, &[("Authorization", &format!("Bearer {viewer}"))], b"").unwrap();
    assert_eq!(r.status, 403);
}
