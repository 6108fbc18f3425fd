//! `tandem bench intake` at a small size (5,000 frames of 360p, one run): retina
//! reads every frame the server sent through the same session options as
//! ingest, ffmpeg reads the same stream, and the JSON carries both figures.
//! Smoke check only: no timing or ratio is asserted.

mod common;

#[test]
fn retina_and_ffmpeg_read_the_same_unpaced_stream() {
    if !common::prerequisite(common::have_program("ffmpeg"), "ffmpeg (Debian package ffmpeg)") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let r = common::bench_json(
        t.path(),
        &[
            "intake",
            "--frames",
            "5000",
            "--runs",
            "1",
            "--width",
            "640",
            "--height",
            "360",
            "--bitrate-kbps",
            "1000",
        ],
    );
    assert_eq!(r["frames"], 5000);
    let retina = &r["retina"]["median"];
    assert_eq!(retina["frames"], 5000, "retina read every frame");
    assert!(retina["bytes"].as_u64().unwrap() > 5000 * 100, "{retina}");
    assert!(r["retina"]["cpu_us_per_frame"].as_f64().unwrap() > 0.0, "{r}");
    let ffmpeg = &r["ffmpeg"]["median"];
    // ffmpeg's figure is a run of 2N frames less one of N: N frames' bytes.
    assert_eq!(ffmpeg["bytes"], retina["bytes"], "both read the same stream");
    assert!(r["cpu_ratio_retina_over_ffmpeg"].as_f64().unwrap() > 0.0, "{r}");
}
