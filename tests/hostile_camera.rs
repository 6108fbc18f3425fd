//! One hostile camera never takes the NVR down, nor costs another channel a
//! frame: with two good stamped cameras recording, every misbehaviour of
//! `tandem hostile-camera` runs at once on channels of its own, with the NVR
//! under a 512 MiB address-space limit and 1,024 open files. Each hostile
//! session ends with a short error (or records correctly), the good channels
//! lose nothing, a camera stepping its timestamps back leaves no overlapping
//! segments and loses no frame from exports, and a parameter-set storm
//! records into a bounded number of segment files that decode cleanly.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tandem::time::Time90k;

/// The failing modes and what their channel's error must say.
const FAILING: [(&str, &str); 8] = [
    ("huge-body", "message-too-large"),
    ("endless-header", "message-head-too-large"),
    ("header-flood", "too-many-headers"),
    ("huge-error", "500"),
    ("no-marker", "access unit exceeds"),
    ("endless-fua", "access unit exceeds"),
    // Still dribbling its header when the test looks: no error yet.
    ("slow-header", ""),
    // Played, then nothing: the stall timer ends the session after 10 s.
    ("silent", "no video for 10 s"),
];
/// Modes that stream (badly timed, or with odd parameters) and get recorded.
const RECORDED: [&str; 4] = ["huge-sdp", "step-back", "fast-clock", "param-storm"];

fn hostile_camera(logdir: &Path) -> (Proc, Vec<String>) {
    let mut cmd = Command::new(tandem());
    cmd.args(["hostile-camera", "--listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::piped());
    let mut p = spawn("hostile-camera", &mut cmd, logdir);
    let out = p.child.stdout.take().unwrap();
    let urls: Vec<String> = BufReader::new(out).lines().take(12).map_while(Result::ok).collect();
    assert_eq!(urls.len(), 12, "hostile-camera did not start: {}", p.stderr());
    (p, urls)
}

/// `tandem serve` under `prlimit --as=512MiB --nofile=1024`.
fn limited_nvr(logdir: &Path, config: &str) -> Nvr {
    let port = free_port();
    let path = logdir.join("nvr.toml");
    std::fs::write(&path, config.replace("{listen}", &format!("127.0.0.1:{port}"))).unwrap();
    start_nvr_under(
        logdir,
        "nvr",
        &path,
        port,
        &["prlimit", "--as=536870912", "--nofile=1024"],
    )
}

fn url_of<'a>(urls: &'a [String], mode: &str) -> &'a str {
    urls.iter().find(|u| u.ends_with(&format!("/{mode}"))).unwrap()
}

/// Segments of `ch` never overlap: each starts at or after the end of the
/// one before, and frame times increase within each.
fn assert_no_overlap(data: &Path, ch: u32) -> usize {
    let segs = tandem::store::Reader::new(data.to_path_buf())
        .segment_frames(ch, Time90k(0), Time90k(i64::MAX / 2))
        .unwrap();
    let mut prev_end: Option<Time90k> = None;
    for s in &segs {
        let Some(first) = s.frames.first() else { continue };
        if let Some(end) = prev_end {
            assert!(
                first.time >= end,
                "channel {ch}: segment {} starts before the last ended",
                s.id
            );
        }
        for w in s.frames.windows(2) {
            assert!(
                w[1].time > w[0].time,
                "channel {ch}: segment {} goes back in time",
                s.id
            );
        }
        let last = s.frames.last().unwrap();
        prev_end = Some(last.time + i64::from(last.duration));
    }
    segs.len()
}

#[test]
fn hostile_cameras_fail_alone_under_memory_and_file_limits() {
    if !prerequisite(have_program("prlimit"), "prlimit (util-linux)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_good, good) = sim_camera(dir.path(), 2, &[]);
    let (_bad, urls) = hostile_camera(dir.path());
    let data = dir.path().join("data");
    let mut cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n",
        data.display()
    );
    let modes: Vec<&str> = FAILING.iter().map(|(m, _)| *m).chain(RECORDED).collect();
    let cameras = [("good1", good[0].as_str()), ("good2", good[1].as_str())]
        .into_iter()
        .chain(modes.iter().map(|m| (*m, url_of(&urls, m))));
    for (i, (name, url)) in cameras.enumerate() {
        cfg += &format!(
            "[[network_camera]]\nname = \"{name}\"\nurl = \"{url}\"\n[[channel]]\nnumber = {}\ncamera = \"{name}\"\n",
            i + 1
        );
    }
    let ch = |mode: &str| modes.iter().position(|m| *m == mode).unwrap() as u32 + 3;
    let mut nvr = limited_nvr(dir.path(), &cfg);
    wait_for(Duration::from_secs(20), "good channels recording", || {
        frames_written(&nvr.base, 1) > 0 && frames_written(&nvr.base, 2) > 0
    });
    let from = rfc3339_offset(0.5);
    // The step back comes 4 s into its stream, the storm alternates every
    // frame: 22 s shows both well past their start.
    std::thread::sleep(Duration::from_secs(22));
    let until = rfc3339_offset(-1.0);

    assert!(
        nvr.proc.child.try_wait().unwrap().is_none(),
        "NVR died: {}",
        nvr.proc.stderr()
    );
    let log = nvr.proc.stderr();
    assert!(!log.contains("panicked"), "{log}");
    // Hostile text reaches the log only as excerpts.
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2_000, "a {longest}-byte log line");
    assert!(log.len() < 1 << 20, "{} bytes of log in 25 s", log.len());
    let listing = http_get(&format!("{}/api/v1/channels", nvr.base)).unwrap();
    assert!(
        listing.body.len() < 64 * 1024,
        "{} bytes of channel listing",
        listing.body.len()
    );

    for (mode, want) in FAILING {
        let v = channel_view(&nvr.base, ch(mode));
        assert_eq!(v["ingest"]["connected"], false, "{mode}: {v}");
        assert_eq!(v["recording"]["frames_written"].as_u64().unwrap_or(0), 0, "{mode}: {v}");
        if want.is_empty() {
            continue;
        }
        let err = v["ingest"]["last_error"].as_str().unwrap_or_default();
        assert!(err.contains(want), "{mode}: {err:?}");
        assert!(err.len() <= 300 && !err.contains('\n'), "{mode}: {err:?}");
        assert!(
            v["ingest"]["reconnects"].as_u64().unwrap() >= 1,
            "{mode} keeps retrying: {v}"
        );
    }
    for mode in RECORDED {
        let v = channel_view(&nvr.base, ch(mode));
        assert_eq!(v["ingest"]["connected"], true, "{mode}: {v}");
    }

    // Not a frame lost on the good channels.
    for n in [1, 2] {
        let a = audit_json(&[
            "--data",
            data.to_str().unwrap(),
            "--channel",
            &n.to_string(),
            "--start",
            &from,
            "--end",
            &until,
        ]);
        assert_eq!(a["frames_lost"], 0, "channel {n}: {a}");
        assert!(a["frames_found"].as_u64().unwrap() >= 450, "channel {n}: {a}");
    }

    // Timestamps stepping back (or a fast clock): no overlap, and every frame
    // the camera sent since the session began is in an export of the range.
    let (start, end) = (rfc3339_offset(-120.0), until.clone());
    for mode in ["step-back", "fast-clock"] {
        let n = ch(mode);
        let segments = assert_no_overlap(&data, n);
        if mode == "step-back" {
            assert!(segments >= 2, "the step back starts a new run");
        }
        let out = dir.path().join(format!("{mode}.mp4"));
        export("data", data.to_str().unwrap(), n, &start, &end, &out);
        let a = audit_json(&[out.to_str().unwrap()]);
        let cam = &a["cameras"][0];
        assert_eq!(a["frames_lost"], 0, "{mode}: {a}");
        assert_eq!(a["duplicates"], 0, "{mode}: {a}");
        assert_eq!(cam["first_seq"], 0, "{mode}: {a}");
        let sent = cam["last_seq"].as_u64().unwrap() + 1;
        assert_eq!(a["frames_found"].as_u64().unwrap(), sent, "{mode}: {a}");
        assert!(sent >= 500, "{mode}: {a}");
        let stored = audit_json(&[
            "--data",
            data.to_str().unwrap(),
            "--channel",
            &n.to_string(),
            "--start",
            &start,
            "--end",
            &end,
        ]);
        assert_eq!(
            stored["frames_found"], a["frames_found"],
            "{mode}: export keeps every stored frame"
        );
    }

    // A parameter-set storm: a few segment files, not one per frame, and
    // footage that decodes.
    let storm = ch("param-storm");
    let files = std::fs::read_dir(data.join("video").join(format!("ch{storm}")))
        .unwrap()
        .count();
    assert!(files <= 5, "{files} segment files for the parameter-set storm");
    let out = dir.path().join("storm.mp4");
    export("data", data.to_str().unwrap(), storm, &start, &end, &out);
    let a = audit_json(&[out.to_str().unwrap()]);
    assert_eq!(a["frames_lost"], 0, "{a}");
    assert!(a["frames_found"].as_u64().unwrap() >= 500, "{a}");
    if prerequisite(have_program("ffmpeg"), "ffmpeg") {
        assert_decodes_cleanly(&out, "parameter-set storm export");
    }

    // Shutdown does not wait for cameras that are still flooding.
    let t = Instant::now();
    let status = nvr.proc.terminate();
    assert!(status.success(), "{status}: {}", nvr.proc.stderr());
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown took {:?}", t.elapsed());
}
