//! `tandem bench ingest` with its disturbances at a tiny size (two streams,
//! a few seconds): another writer loading the store's filesystem
//! (`--disk-load`) and pre-loaded footage that retention deletes while the
//! cameras record (`--preload-day`, `--preload-minutes`). The JSON has their figures, the load
//! wrote, retention deleted footage, and nothing recorded was lost. Smoke
//! check only: no timing is asserted.

mod common;

/// `bench ingest` of two small Tandem-only streams recorded into `data`.
fn two_small_streams(dir: &std::path::Path, data: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "ingest",
        "--streams",
        "2",
        "--skip-ffmpeg",
        "--width",
        "320",
        "--height",
        "240",
    ];
    args.extend(["--bitrate-kbps", "500", "--dir", data.to_str().unwrap()]);
    args.extend(extra);
    common::bench_json(dir, &args)
}

#[test]
fn a_loaded_disk_and_a_preloaded_day_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let r = two_small_streams(
        t.path(),
        &data,
        &["--seconds", "4", "--disk-load", "4", "--preload-day"],
    );
    assert_eq!(r["preloaded_segments"], 2 * 1440);
    let load = &r["disk_load"];
    assert_eq!(load["target_mib_per_s"], 4);
    assert!(load["mib_per_s"].as_f64().unwrap() > 0.0, "{load}");
    // Retention began on the pre-loaded day (it may have started before
    // the measured window, and a pass deletes at most 500 per channel).
    let deleted = r["retention"]["segments_deleted"].as_u64().unwrap();
    assert!(deleted <= 2 * 1440, "{deleted}");
    assert_eq!(r["retention"]["writer_frames_lost"], 0);
    assert!(r["durability"]["flush_round_max_ms"].is_u64());
    assert_eq!(r["tandem"]["frames_lost"], 0, "{}", r["tandem"]);
    assert!(!data.exists(), "the benchmark's directory is removed");
}

/// `--preload-minutes`: files with real blocks, retention shortened by
/// SIGHUP once the window starts, so they are deleted while the cameras
/// record; and the kernel's storage threads are reported beside each
/// recorder's own CPU.
#[test]
fn preloaded_real_files_are_deleted_inside_the_window() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let r = two_small_streams(t.path(), &data, &["--seconds", "8", "--preload-minutes", "2"]);
    assert_eq!(r["preloaded_segments"], 4);
    assert_eq!(r["preloaded_files"], "Allocated");
    // Started with 30 days, shortened to one after the window began: every
    // pre-loaded segment goes inside it (a pass every 5 s of the 8).
    assert_eq!(r["retention"]["segments_deleted"], 4, "{}", r["retention"]);
    assert!(r["retention"]["bytes_deleted"].as_u64().unwrap() > 4 * 10_000_000);
    assert_eq!(r["retention"]["writer_frames_lost"], 0);
    assert_eq!(r["tandem"]["frames_lost"], 0, "{}", r["tandem"]);
    let own = r["tandem"]["cpu_s_per_stream_minute"].as_f64().unwrap();
    let with_kernel = r["tandem"]["with_kernel_cpu_s_per_stream_minute"].as_f64().unwrap();
    assert!(with_kernel >= own, "{with_kernel} < {own}");
    assert!(!data.exists(), "the benchmark's directory is removed");
}

/// Alternated windows against ffmpeg (`--rounds 2`): each recorder has two
/// windows, the JSON gives each round's ratio and sums both sides over their
/// windows, and neither recorder lost a frame. The NVR is started again on
/// the same store for the second round.
#[test]
fn alternated_rounds_sum_both_recorders_windows() {
    if !common::prerequisite(common::have_program("ffmpeg"), "ffmpeg (Debian package ffmpeg)") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let r = common::bench_json(
        t.path(),
        &[
            "ingest",
            "--streams",
            "2",
            "--width",
            "320",
            "--height",
            "240",
            "--bitrate-kbps",
            "500",
            "--seconds",
            "10",
            "--rounds",
            "2",
            "--dir",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(r["rounds"], 2);
    let per_window = r["cpu_ratio_per_window"].as_array().unwrap();
    assert_eq!(per_window.len(), 2, "{r}");
    assert!(per_window.iter().all(|v| v.as_f64().unwrap() > 0.0), "{r}");
    for side in ["tandem", "ffmpeg"] {
        let s = &r[side];
        assert_eq!(s["windows"], 2, "{s}");
        assert_eq!(s["frames_lost"], 0, "{side}: {s}");
        // Two 5-s windows (a little more: the figures are read after the
        // sleep) of 2 cameras at 25 fps, less the trimmed second of each.
        let expected = s["frames_expected"].as_u64().unwrap();
        assert!((400..=440).contains(&expected), "{side}: {s}");
        assert!(s["frames_found"].as_u64().unwrap() + 4 >= expected, "{side}: {s}");
    }
    let ratio = r["cpu_ratio_tandem_over_ffmpeg"].as_f64().unwrap();
    assert!(ratio > 0.0, "{r}");
    assert!(!data.exists(), "the benchmark's directory is removed");
}
