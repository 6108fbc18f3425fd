//! A damaged store: segment files truncated, deleted or overwritten while the
//! NVR was stopped (or deleted while it runs), a corrupt record in the
//! segment a crash left open, and a segment longer than any query window.
//! With the real `tandem` binary: restart reports each damaged file by name,
//! `recordings` shows the gaps, exports keep what exists and say what they
//! lack, no clip answers `200` and then sends less than it promised, `audit`
//! names the files, and repair keeps every intact frame. Also stores holding
//! overlapping segments (a camera clock that stepped back): `recordings`
//! lists the overlapped time and exports report every frame they omit.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tandem::store::{db, segment_file};
use tandem::time::Time90k;

fn config(data: &Path, camera: Option<&str>, segment: &str) -> String {
    let (cam, bind) = match camera {
        Some(u) => (
            format!("[[network_camera]]\nname = \"c\"\nurl = \"{u}\"\n"),
            "camera = \"c\"\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\nsegment_duration = \"{segment}\"\nflush_interval = \"1s\"\n\
         [http]\nlisten = \"{{listen}}\"\n{cam}[[channel]]\nnumber = 1\n{bind}",
        data.display()
    )
}

/// Channel 1's segment rows, oldest first.
fn rows(data: &Path) -> Vec<db::SegmentRow> {
    let c = db::open_readonly(&data.join("index.db")).unwrap();
    db::segments_overlapping(&c, 1, Time90k(0), Time90k(i64::MAX / 2)).unwrap()
}

fn seg_file(data: &Path, id: i64) -> PathBuf {
    tandem::store::segment_path(data, 1, id)
}

fn export_status(data: &Path, start: Time90k, end: Time90k, out: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(tandem())
        .args(["export", "--data", data.to_str().unwrap()])
        .args(clip_args(1, &start.to_rfc3339(), &end.to_rfc3339(), out))
        .args(extra)
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn clip(base: &str, a: Time90k, b: Time90k) -> HttpResponse {
    http_get(&format!(
        "{base}/api/v1/channels/1/clip.mp4?start={}&end={}",
        a.to_rfc3339(),
        b.to_rfc3339()
    ))
    .unwrap()
}

/// A `200` must carry exactly the bytes its Content-Length promised.
fn assert_honest(r: &HttpResponse, what: &str) {
    if r.status == 200 {
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        assert_eq!(
            r.body.len(),
            len,
            "{what}: 200 promised {len} bytes, sent {}",
            r.body.len()
        );
        assert!(len > 0, "{what}");
    }
}

/// Whole seconds `secs` ago.
fn now_minus(secs: f64) -> Time90k {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    Time90k::from_secs_f64((now - secs).floor())
}

/// Writes segment `id` of channel 1 with frames at the given (pts, key),
/// without an index row: start-up adopts it from its self-describing file.
fn write_orphan(data: &Path, id: i64, start: Time90k, frames: impl Iterator<Item = (u32, bool)>) {
    let mut entry = vec![0u8; 86];
    entry[0..4].copy_from_slice(&86u32.to_be_bytes());
    entry[4..8].copy_from_slice(b"avc1");
    entry[32..34].copy_from_slice(&320u16.to_be_bytes());
    entry[34..36].copy_from_slice(&240u16.to_be_bytes());
    let header = segment_file::SegmentHeader {
        channel: 1,
        segment_id: id,
        start,
        sample_entry: entry,
    };
    let mut file = header.encode();
    for (i, (pts, key)) in frames.enumerate() {
        let frame = vec![0x40 + (i % 64) as u8; 200];
        file.extend_from_slice(&segment_file::record_header(pts, key, &frame));
        file.extend_from_slice(&frame);
    }
    std::fs::create_dir_all(data.join("video/ch1")).unwrap();
    std::fs::write(seg_file(data, id), &file).unwrap();
}

#[test]
fn damaged_segments_are_reported_shown_as_gaps_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "25", "--gop", "5"]);
    let mut n = nvr(dir.path(), "record", &config(&data, Some(&urls[0]), "1s"));
    wait_for(Duration::from_secs(20), "recording", || frames_written(&n.base, 1) > 0);
    std::thread::sleep(Duration::from_secs(14));
    assert!(n.proc.terminate().success());
    let all = rows(&data);
    assert!(all.len() >= 9, "{} segments", all.len());
    let before = audit_json(&["--data", data.to_str().unwrap(), "--channel", "1"]);

    // Truncate one, delete one, overwrite one (each with intact neighbours).
    let (cut, gone, over) = (&all[2], &all[4], &all[6]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg_file(&data, cut.id))
        .unwrap();
    f.set_len(cut.bytes / 2).unwrap();
    std::fs::remove_file(seg_file(&data, gone.id)).unwrap();
    std::fs::write(seg_file(&data, over.id), b"overwritten by someone").unwrap();
    // Overwritten with as many bytes as it had: the start-up check (sizes
    // only) cannot see it, but every read checks the header of what it plans.
    let same = &all[0];
    std::fs::write(seg_file(&data, same.id), vec![0u8; same.bytes as usize]).unwrap();

    // Restart without a camera: only what was stored is served.
    let n = nvr(dir.path(), "restart", &config(&data, None, "1s"));
    // The check runs beside recording, not before it: wait for its summary.
    wait_for(Duration::from_secs(20), "the check of finished segments", || {
        n.proc.stderr().contains("checked finished segments")
    });
    let log = n.proc.stderr();
    for r in [cut, gone, over] {
        let name = seg_file(&data, r.id).display().to_string();
        assert!(
            log.lines().any(|l| l.contains("damaged segment") && l.contains(&name)),
            "restart does not name {name}: {log}"
        );
    }
    assert!(
        log.contains("file missing") && log.contains("truncated") && log.contains("overwritten"),
        "{log}"
    );

    // `recordings` shows the gaps: no run covers the deleted or overwritten
    // segment, and the truncated one's run ends before that segment's end.
    let (first, last) = (all[0].start, all[all.len() - 1].end);
    let r = http_get(&format!(
        "{}/api/v1/channels/1/recordings?start={}&end={}",
        n.base,
        first.to_rfc3339(),
        last.to_rfc3339()
    ))
    .unwrap()
    .json()
    .unwrap();
    let runs: Vec<(Time90k, Time90k)> = r["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                Time90k::parse_rfc3339(x["start"].as_str().unwrap()).unwrap(),
                Time90k::parse_rfc3339(x["end"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert!(runs.len() >= 4, "{r}");
    let mid = |s: &db::SegmentRow| s.start + (s.end - s.start) / 2;
    for s in [gone, over] {
        assert!(!runs.iter().any(|&(a, b)| a <= mid(s) && mid(s) < b), "{r}");
    }
    assert!(
        !runs.iter().any(|&(a, b)| a <= cut.end + -900 && cut.end + -900 < b),
        "{r}"
    );

    // Exports over the damage keep what exists, name what is missing and
    // exit 3 unless told the damage is acceptable.
    let out = dir.path().join("all.mp4");
    let (code, err) = export_status(&data, first, last, &out, &[]);
    assert_eq!(code, 3, "{err}");
    for s in [same, cut, gone, over] {
        assert!(err.contains(&seg_file(&data, s.id).display().to_string()), "{err}");
    }
    assert!(out.metadata().unwrap().len() > 0);
    let (code, err) = export_status(&data, first, last, &out, &["--allow-damage"]);
    assert_eq!(code, 0, "{err}");
    let exported = tandem::audit::audit_mp4(&out).unwrap();
    assert!(exported.frames_found > 0 && exported.frames_found < before["frames_found"].as_u64().unwrap());
    // A range inside the deleted segment has nothing to export: an error naming it.
    let (code, err) = export_status(&data, gone.start + 900, gone.end + -900, &out, &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(&seg_file(&data, gone.id).display().to_string()), "{err}");

    // HTTP: the deleted range alone is a 404 naming the file, never 200-then-nothing.
    let r = clip(&n.base, gone.start + 900, gone.end + -900);
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains(&seg_file(&data, gone.id).display().to_string()));
    // Across the damage: every promised byte arrives and the damage is listed.
    let r = clip(&n.base, all[1].start, all[7].end);
    assert_eq!(r.status, 200);
    assert_honest(&r, "clip across damaged segments");
    let damaged = r.header("x-tandem-damaged").unwrap_or_default();
    assert!(
        damaged.contains(&seg_file(&data, gone.id).display().to_string()),
        "{damaged}"
    );

    // A file deleted while the NVR runs (after the start-up check): found at
    // planning, so the clip is a 404 or a complete 200, never a broken one.
    let late = &all[8];
    std::fs::remove_file(seg_file(&data, late.id)).unwrap();
    let r = clip(&n.base, late.start + 900, late.end + -900);
    assert_eq!(r.status, 404);
    let r = clip(&n.base, all[7].start, late.end + 9000);
    assert_honest(&r, "clip across a file deleted while running");
    let r = clip(&n.base, all[7].start, late.end);
    assert_honest(&r, "clip ending in a file deleted while running");

    // `audit --data` names every damaged file and audits the rest.
    let o = run_tandem(&["audit", "--data", data.to_str().unwrap(), "--channel", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files = a["damaged_files"].to_string();
    for s in [same, cut, gone, over, late] {
        assert!(files.contains(&seg_file(&data, s.id).display().to_string()), "{files}");
    }
    assert!(a["frames_found"].as_u64().unwrap() > 0);
}

#[test]
fn repair_keeps_every_intact_frame_after_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--fps", "25", "--gop", "12"]);
    // Long segments: everything is in the one segment a crash leaves open.
    let mut n = nvr(dir.path(), "record", &config(&data, Some(&urls[0]), "600s"));
    wait_for(Duration::from_secs(20), "recording", || frames_written(&n.base, 1) > 0);
    std::thread::sleep(Duration::from_secs(6));
    n.proc.kill();
    let open: Vec<_> = rows(&data).into_iter().filter(|r| r.state == db::WRITING).collect();
    assert_eq!(open.len(), 1);
    let path = seg_file(&data, open[0].id);
    let audit = |what: &str| {
        let a = audit_json(&["--data", data.to_str().unwrap(), "--channel", "1"]);
        eprintln!("{what}: {a}");
        a
    };
    let before = audit("before damage");
    let found = before["frames_found"].as_u64().unwrap();

    // Corrupt two records in the middle: one frame's data, and another
    // frame's record header zeroed.
    let mut f = std::fs::File::open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    let scan = segment_file::scan(&mut f, len, true).unwrap();
    let n_frames = scan.frames.len();
    assert!(n_frames > 100, "{n_frames} frames");
    let mut bytes = std::fs::read(&path).unwrap();
    let a = scan.frames[n_frames / 3];
    bytes[(a.offset + u64::from(a.size) / 2) as usize] ^= 0x5a;
    let b = scan.frames[2 * n_frames / 3];
    let h = (b.offset - segment_file::RECORD_HEADER_LEN) as usize;
    bytes[h..h + 16].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let mut n = nvr(dir.path(), "repair", &config(&data, None, "600s"));
    let log = n.proc.stderr();
    let skips: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("skipped a damaged stretch"))
        .collect();
    assert_eq!(skips.len(), 2, "{log}");
    for l in &skips {
        assert!(l.contains(&path.display().to_string()), "{l}");
    }
    assert!(n.proc.terminate().success());

    // Exactly the two damaged frames are gone: audit finds every other one
    // and counts two single-frame losses.
    let after = audit("after repair");
    assert_eq!(after["frames_found"].as_u64().unwrap(), found - 2, "{after}");
    assert_eq!(
        after["frames_lost"].as_u64().unwrap(),
        before["frames_lost"].as_u64().unwrap() + 2,
        "{after}"
    );
    let row = rows(&data).into_iter().find(|r| r.id == open[0].id).unwrap();
    assert_eq!(row.state, db::COMPLETE);
    assert_eq!(row.frames as usize, n_frames - 2);
    assert_eq!(row.holes.len(), 2);
    // The timeline is unchanged: the segment ends where the frames say.
    let last = scan.frames[n_frames - 1];
    let durations = scan.entries(3000);
    assert_eq!(
        row.end,
        scan.header.start + i64::from(last.pts) + i64::from(durations[n_frames - 1].duration)
    );
    // An export of the whole segment names the skipped records and, allowed, succeeds.
    let out = dir.path().join("seg.mp4");
    let (code, err) = export_status(&data, row.start, row.end, &out, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("damaged records skipped by repair"), "{err}");
    let (code, err) = export_status(&data, row.start, row.end, &out, &["--allow-damage"]);
    assert_eq!(code, 0, "{err}");
    let exported = tandem::audit::audit_mp4(&out).unwrap();
    assert_eq!(exported.frames_found, found - 2);
}

#[test]
fn a_two_hour_segment_is_found_from_its_middle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A two-hour segment (as an import or a long-lived camera writes it),
    // left without an index row so that start-up adopts it from its file.
    let start = now_minus(4.0 * 3600.0);
    let step = 600 * 90_000u32; // a key frame every ten minutes
    write_orphan(&data, 1, start, (0..=12).map(|i| (i * step, true)));
    let n = nvr(dir.path(), "serve", &config(&data, None, "60s"));
    let row = &rows(&data)[0];
    assert!(row.end - row.start >= 2 * 3600 * 90_000, "{row:?}");
    let (a, b) = (start + 3600 * 90_000 + 90_000, start + 3600 * 90_000 + 2 * 90_000);
    let r = http_get(&format!(
        "{}/api/v1/channels/1/recordings?start={}&end={}",
        n.base,
        a.to_rfc3339(),
        b.to_rfc3339()
    ))
    .unwrap()
    .json()
    .unwrap();
    let runs = r["recordings"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{r}");
    assert_eq!(runs[0]["start"], start.to_rfc3339());
    let c = clip(&n.base, a, b);
    assert_eq!(c.status, 200, "{}", String::from_utf8_lossy(&c.body));
    assert_honest(&c, "clip from the middle of a two-hour segment");
    let (code, err) = export_status(&data, a, b, &dir.path().join("mid.mp4"), &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn overlapping_footage_is_listed_and_exports_say_what_they_omit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A store holding what a camera clock stepping back 10 frames leaves
    // behind: the second segment starts 10 frames before the first ends.
    let start = now_minus(600.0);
    let frames = |n: u32| (0..n).map(|i| (i * 3600, i % 10 == 0));
    write_orphan(&data, 1, start, frames(30));
    write_orphan(&data, 2, start + 20 * 3600, frames(30));
    let n = nvr(dir.path(), "serve", &config(&data, None, "60s"));
    let end = start + 50 * 3600;

    let r = http_get(&format!(
        "{}/api/v1/channels/1/recordings?start={}&end={}",
        n.base,
        start.to_rfc3339(),
        end.to_rfc3339()
    ))
    .unwrap()
    .json()
    .unwrap();
    let runs = r["recordings"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{r}");
    assert_eq!(runs[0]["frames"], 60, "{r}");
    assert_eq!(runs[0]["overlaps"][0]["seconds"], 0.4, "{r}");

    let c = clip(&n.base, start, end);
    assert_eq!(c.status, 200);
    assert_honest(&c, "clip over overlapping segments");
    assert_eq!(c.header("x-tandem-frames-omitted"), Some("10"));
    assert!(c.header("x-tandem-overlaps").unwrap().contains("\"segment\":2"));

    let out = dir.path().join("o.mp4");
    let (code, err) = export_status(&data, start, end, &out, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("10 stored frames") && err.contains("--allow-overlaps"),
        "{err}"
    );
    let (code, err) = export_status(&data, start, end, &out, &["--allow-overlaps"]);
    assert_eq!(code, 0, "{err}");
    let mut f = std::fs::File::open(&out).unwrap();
    let t = tandem::mp4::reader::read_track_file(&mut f).unwrap();
    assert_eq!(t.samples.len() + 10, 60, "every stored frame is exported or reported");
    // Over HTTP, `tandem export --server` reads the same report.
    let clip = clip_args(1, &start.to_rfc3339(), &end.to_rfc3339(), &out);
    let token = token_for(&n.base).unwrap();
    let mut args = vec!["export", "--server", &n.base];
    args.extend(clip.iter().map(String::as_str));
    args.extend(["--token", &token]);
    let o = run_tandem(&args);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
}
