//! `tandem bench index` at a tiny size (two channels, two days: about a
//! second): the generated index is whole — every segment listed, every file
//! the size its row says, one run a day, each past day summarized — and the
//! writer's retention passes
//! delete exactly the first day of every channel. Smoke check only: no
//! timing is asserted.

mod common;

#[test]
fn a_tiny_generated_index_is_whole_and_retention_deletes_its_first_day() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let r = common::bench_json(
        t.path(),
        &[
            "index",
            "--channels",
            "2",
            "--days",
            "2",
            "--samples",
            "3",
            "--dir",
            data.to_str().unwrap(),
        ],
    );
    let per_channel = 2 * 1440;
    assert_eq!(r["segments"], 2 * per_channel);
    assert_eq!(r["recordings_whole_range_segments"], per_channel);
    assert_eq!(r["startup_checked"], 2 * per_channel);
    assert_eq!(r["startup_damaged"], 0);
    assert_eq!(r["background_listing_files"], 2 * per_channel);
    // Each channel's past days (the range starts in one and covers the
    // next) got a summary; the whole range's runs from them equal the runs
    // of the segments (the benchmark fails otherwise).
    assert_eq!(r["runs_summarized_days"], 2 * 2);
    // Each channel's first day: 1440 minutes less the one straddling its end
    // (minute boundaries are offset within the first second).
    let deleted = r["retention_day_segments"].as_u64().unwrap();
    assert!((2 * 1439..=2 * 1440).contains(&deleted), "{deleted}");
    // An hour's moov lists each of its 90,000 frames' sizes (4 bytes each).
    assert!(r["clip_moov_bytes"].as_u64().unwrap() > 3600 * 25 * 4);
    // The generated store is removed.
    assert!(!t.path().join("data").exists());
}
