//! The store on a failing disk: the NVR's data directory on the lazy
//! filesystem (`crates/lazyfs`), two stamped cameras recording, and faults
//! injected under it — an fsync that fails once ("fsyncgate": the index must
//! never claim the frames it took), fsyncs that always fail (the channel
//! pauses with a clear status and recovers), slow fsyncs (the bounded write
//! buffer holds, then drops whole GOPs and says so), ENOSPC from the
//! filesystem (today's disk-full handling) and unreadable files during
//! playback (a clean error, recording unaffected). Each test has its own
//! filesystem and mount, so they run side by side. Needs root and /dev/fuse.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lazy filesystem's size: far more than a test writes (it lives in memory).
const CAPACITY: u64 = 4 << 30;

/// A lazy filesystem mounted under a test's directory.
struct Disk {
    fs: lazyfs::LazyFs,
    mount: Option<lazyfs::Mount>,
    at: PathBuf,
}

impl Disk {
    /// None (after printing why) when FUSE cannot be mounted outside CI.
    fn new(dir: &Path) -> Option<Disk> {
        let r = lazyfs::available();
        let why = format!(
            "mounting the lazy filesystem: {}",
            r.as_ref().err().map(String::as_str).unwrap_or("")
        );
        if !prerequisite(r.is_ok(), &why) {
            return None;
        }
        let fs = lazyfs::LazyFs::new(CAPACITY);
        let at = dir.join("disk");
        let mount = fs.mount(&at).expect("mounting the lazy filesystem");
        Some(Disk {
            fs,
            mount: Some(mount),
            at,
        })
    }

    fn data(&self) -> PathBuf {
        self.at.join("data")
    }

    /// After a cut (and the NVR killed): unmount, power on, mount again.
    fn remount(&mut self) {
        self.mount = None;
        self.fs.power_on();
        self.mount = Some(self.fs.mount(&self.at).expect("mounting the lazy filesystem again"));
    }
}

fn config(data: &Path, urls: &[String], extra: &str) -> String {
    format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"16 MiB\"\nsegment_duration = \"3s\"\n{extra}\n\
         [http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"a\"\nurl = \"{}\"\n[[network_camera]]\nname = \"b\"\nurl = \"{}\"\n\
         [[channel]]\nnumber = 1\ncamera = \"a\"\n[[channel]]\nnumber = 2\ncamera = \"b\"\n",
        data.display(),
        urls[0],
        urls[1]
    )
}

/// Two stamped cameras and an NVR recording them onto the lazy filesystem.
fn recording(dir: &Path, disk: &Disk, extra: &str) -> (Proc, Nvr) {
    let (cam, urls) = sim_camera(dir, 2, &["--fps", "25", "--gop", "12"]);
    std::fs::create_dir_all(disk.data()).unwrap();
    // Made durable as an installer would (the NVR makes what it creates durable).
    std::fs::File::open(&disk.at).unwrap().sync_all().unwrap();
    let n = nvr(dir, "nvr", &config(&disk.data(), &urls, extra));
    wait_for(Duration::from_secs(30), "both channels recording", || {
        frames_written(&n.base, 1) > 25 && frames_written(&n.base, 2) > 25
    });
    (cam, n)
}

/// Stored events: (kind, channel, details).
fn events(base: &str) -> Vec<(String, Option<u64>, serde_json::Value)> {
    let v = http_get(&format!("{base}/api/v1/events")).unwrap().json().unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["channel"].as_u64(),
                e["details"].clone(),
            )
        })
        .collect()
}

fn has_event(base: &str, kind: &str, ch: u64) -> bool {
    events(base).iter().any(|(k, c, _)| k == kind && *c == Some(ch))
}

fn state(base: &str, ch: u32) -> String {
    channel_view(base, ch)["recording"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Audits a channel of a store (the NVR stopped): the report and the files it found damaged.
fn audit(data: &Path, ch: u32) -> serde_json::Value {
    audit_json(&["--data", data.to_str().unwrap(), "--channel", &ch.to_string()])
}

#[test]
fn an_fsync_that_fails_once_closes_the_segment_at_its_last_durable_frame() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut disk) = Disk::new(dir.path()) else { return };
    let (_cam, mut n) = recording(dir.path(), &disk, "");
    let before = channel_view(&n.base, 1)["recording"]["segment_id"].as_i64().unwrap();

    // The next fsync of one of channel 1's segment files fails; its unsynced
    // writes are forgotten by the filesystem (they stay readable until the cut).
    disk.fs.fail_fsync("video/ch1/0", 1);
    wait_for(Duration::from_secs(15), "a storage_error event on channel 1", || {
        has_event(&n.base, "storage_error", 1)
    });
    let (_, _, details) = events(&n.base)
        .into_iter()
        .find(|(k, c, _)| k == "storage_error" && *c == Some(1))
        .unwrap();
    assert!(
        details["file"].as_str().unwrap_or_default().contains("video/ch1/"),
        "the event names the file: {details}"
    );
    assert!(details["frames_lost"].as_u64().unwrap_or(0) > 0, "{details}");
    wait_for(Duration::from_secs(15), "a new segment on channel 1", || {
        let v = channel_view(&n.base, 1);
        v["recording"]["state"] == "recording" && v["recording"]["segment_id"].as_i64().is_some_and(|id| id > before)
    });
    let log = n.proc.stderr();
    assert!(log.contains("closing the segment at its last durable frame"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(state(&n.base, 2), "recording", "the other channel never noticed");
    let store: serde_json::Value = http_get(&format!("{}/api/v1/store", n.base)).unwrap().json().unwrap();
    assert_eq!(store["writer"]["fsync_errors"], 1, "{store}");

    // Power cut, restart on what survived: every frame the index lists is
    // there (a row claiming the forgotten frames would be a damaged file).
    std::thread::sleep(Duration::from_secs(2));
    disk.fs.cut();
    n.proc.kill();
    disk.remount();
    let port: u16 = n.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut n = start_nvr(dir.path(), "nvr-after-cut", &n.config, port);
    wait_for(Duration::from_secs(30), "recording after the restart", || {
        frames_written(&n.base, 1) > 0
    });
    assert!(n.proc.terminate().success());
    for ch in [1, 2] {
        let a = audit(&disk.data(), ch);
        assert_eq!(a["damaged_files"], serde_json::json!([]), "channel {ch}: {a}");
        assert!(a["frames_found"].as_u64().unwrap() > 50, "channel {ch}: {a}");
        assert_eq!(a["duplicates"], 0, "channel {ch}: {a}");
    }
}

#[test]
fn fsyncs_that_always_fail_pause_the_channels_until_the_disk_works() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Disk::new(dir.path()) else { return };
    let (_cam, n) = recording(dir.path(), &disk, "");

    disk.fs.fail_fsync("video/", u64::MAX);
    let t = Instant::now();
    wait_for(Duration::from_secs(10), "both channels in storage_error", || {
        state(&n.base, 1) == "storage_error" && state(&n.base, 2) == "storage_error"
    });
    eprintln!("storage_error after {:?}", t.elapsed());
    let v = channel_view(&n.base, 1);
    assert!(
        v["recording"]["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "the status says why: {v}"
    );
    assert_eq!(v["ingest"]["connected"], true, "ingest stays connected: {v}");
    // Still paused a few retries later, and the API keeps answering.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&n.base, 1), "storage_error");

    disk.fs.clear_faults();
    let before = frames_written(&n.base, 1);
    wait_for(Duration::from_secs(15), "recording to resume", || {
        state(&n.base, 1) == "recording" && state(&n.base, 2) == "recording" && frames_written(&n.base, 1) > before + 25
    });
    wait_for(Duration::from_secs(10), "recording_resumed events", || {
        has_event(&n.base, "recording_resumed", 1) && has_event(&n.base, "recording_resumed", 2)
    });
    let log = n.proc.stderr();
    assert!(log.contains("recording paused"), "{log}");
    assert!(log.contains("recording resumed"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_disk_slow_for_two_seconds_loses_nothing_with_the_default_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Disk::new(dir.path()) else { return };
    let (_cam, mut n) = recording(dir.path(), &disk, "");

    disk.fs.slow_fsync(Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(8));
    disk.fs.clear_faults();
    let before = frames_written(&n.base, 1);
    wait_for(Duration::from_secs(15), "recording to go on", || {
        frames_written(&n.base, 1) > before + 50
    });
    for ch in [1, 2] {
        let v = channel_view(&n.base, ch);
        assert_eq!(v["ingest"]["dropped_frames"], 0, "channel {ch}: {v}");
        assert_eq!(v["write_buffer"]["slow_episodes"], 0, "channel {ch}: {v}");
    }
    assert!(n.proc.terminate().success());
    for ch in [1, 2] {
        let a = audit(&disk.data(), ch);
        assert_eq!(a["frames_lost"], 0, "channel {ch}: {a}");
        assert_eq!(a["cameras"][0]["gaps"], serde_json::json!([]), "channel {ch}: {a}");
    }
}

#[test]
fn a_disk_slow_for_ten_seconds_drops_whole_gops_beyond_a_small_buffer_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Disk::new(dir.path()) else { return };
    // 256 KiB holds about a second of two 800-kbit/s cameras.
    let (_cam, n) = recording(dir.path(), &disk, "write_buffer = \"256 KiB\"");
    assert_eq!(channel_view(&n.base, 1)["write_buffer"]["capacity_bytes"], 256 << 10);

    disk.fs.slow_fsync(Duration::from_secs(10));
    wait_for(Duration::from_secs(15), "frames dropped for a full buffer", || {
        let v = channel_view(&n.base, 1);
        v["write_buffer"]["slow"] == true && v["ingest"]["dropped_gops"].as_u64().unwrap_or(0) > 0
    });
    // The API answers while the writer hangs in its fsync.
    let t = Instant::now();
    let r = http_get(&format!("{}/api/v1/channels", n.base)).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "GET /api/v1/channels took {:?}",
        t.elapsed()
    );
    let v = channel_view(&n.base, 1);
    assert!(
        v["write_buffer"]["used_bytes"].as_u64().unwrap() <= 256 << 10,
        "the buffer holds its bound: {v}"
    );
    let log = n.proc.stderr();
    assert!(log.contains("the disk is not keeping up"), "{log}");

    disk.fs.clear_faults();
    let before = frames_written(&n.base, 1);
    wait_for(Duration::from_secs(30), "recording to catch up", || {
        let v = channel_view(&n.base, 1);
        v["write_buffer"]["slow"] == false && frames_written(&n.base, 1) > before + 50
    });
    wait_for(Duration::from_secs(15), "the storage_slow event", || {
        events(&n.base).iter().any(|(k, _, _)| k == "storage_slow")
    });
    // One event per episode, not one per dropped frame.
    let slow = events(&n.base).iter().filter(|(k, _, _)| k == "storage_slow").count() as u64;
    let episodes = channel_view(&n.base, 1)["write_buffer"]["slow_episodes"]
        .as_u64()
        .unwrap();
    assert!(slow >= 1 && slow <= episodes, "{slow} events for {episodes} episodes");
    let dropped: u64 = [1, 2]
        .iter()
        .map(|&ch| channel_view(&n.base, ch)["ingest"]["dropped_frames"].as_u64().unwrap())
        .sum();
    assert!(dropped > 25, "whole GOPs dropped: {dropped}");
    assert!(!n.proc.stderr().contains("panicked"));
}

#[test]
fn enospc_from_the_filesystem_pauses_like_a_full_disk_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Disk::new(dir.path()) else { return };
    let (_cam, n) = recording(dir.path(), &disk, "");

    disk.fs.enospc("video/");
    wait_for(Duration::from_secs(10), "both channels paused on disk_full", || {
        state(&n.base, 1) == "disk_full" && state(&n.base, 2) == "disk_full"
    });
    wait_for(Duration::from_secs(10), "a disk_full event", || {
        has_event(&n.base, "disk_full", 1)
    });
    assert_eq!(channel_view(&n.base, 1)["ingest"]["connected"], true);

    disk.fs.clear_faults();
    let before = frames_written(&n.base, 1);
    wait_for(Duration::from_secs(15), "recording to resume", || {
        state(&n.base, 1) == "recording" && state(&n.base, 2) == "recording" && frames_written(&n.base, 1) > before + 25
    });
    assert!(has_event(&n.base, "recording_resumed", 1));
    let log = n.proc.stderr();
    assert!(log.contains("recording paused"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn unreadable_footage_fails_a_clip_cleanly_while_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Disk::new(dir.path()) else { return };
    let (_cam, n) = recording(dir.path(), &disk, "");
    // Some finished segments (3 s each) to play back.
    std::thread::sleep(Duration::from_secs(7));

    disk.fs.fail_reads("video/ch1/");
    let clip = |ch: u32| {
        http_get(&format!(
            "{}/api/v1/channels/{ch}/clip.mp4?start={}&end={}",
            n.base,
            rfc3339_offset(-8.0),
            rfc3339_offset(-2.0)
        ))
    };
    let r = clip(1).expect("an answer, not a dropped connection");
    let damaged = r.header("x-tandem-damaged").unwrap_or_default().to_string();
    eprintln!("a clip over unreadable footage: {} {damaged}", r.status);
    if r.status == 200 {
        assert!(!damaged.is_empty(), "a clip over unreadable footage marks it");
    } else {
        assert!(r.status >= 400, "status {}", r.status);
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(body.contains("error"), "the error says why: {body}");
    }
    // The other channel plays; recording goes on on both.
    assert_eq!(clip(2).unwrap().status, 200);
    let before = (frames_written(&n.base, 1), frames_written(&n.base, 2));
    wait_for(Duration::from_secs(10), "recording to go on", || {
        frames_written(&n.base, 1) > before.0 + 50 && frames_written(&n.base, 2) > before.1 + 50
    });
    assert_eq!(state(&n.base, 1), "recording");
    disk.fs.clear_faults();
    assert!(!n.proc.stderr().contains("panicked"));
}
