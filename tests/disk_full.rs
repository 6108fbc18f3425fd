//! Disk full, on a small tmpfs: the free-space floor deletes the oldest
//! footage and recording goes on; when something else fills the disk, writing
//! pauses cleanly with an event, nothing crashes, and recording resumes on its
//! own once space returns. Needs root (mount).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let s = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(s.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(p: &Path) -> u64 {
    tandem::store::free_bytes(p).unwrap()
}

fn recordings(base: &str, ch: u32) -> Vec<serde_json::Value> {
    let url = format!("{base}/api/v1/channels/{ch}/recordings?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z");
    http_get(&url).unwrap().json().unwrap()["recordings"]
        .as_array()
        .unwrap()
        .clone()
}

fn events(base: &str) -> Vec<String> {
    let v = http_get(&format!("{base}/api/v1/events")).unwrap().json().unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

fn config(data: &Path, urls: &[String], min_free: &str) -> String {
    format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"{min_free}\"\nsegment_duration = \"2s\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"a\"\nurl = \"{}\"\n[[network_camera]]\nname = \"b\"\nurl = \"{}\"\n\
         [[channel]]\nnumber = 1\ncamera = \"a\"\n[[channel]]\nnumber = 2\ncamera = \"b\"\n",
        data.display(),
        urls[0],
        urls[1]
    )
}

#[test]
fn free_space_floor_deletes_oldest_and_full_disk_pauses_then_resumes() {
    if !prerequisite(is_root(), "root, to mount a small tmpfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 2, &["--bitrate-kbps", "4000"]);

    // 1. The floor: 40 MiB volume, keep 24 MiB free; two ~4 Mbit/s cameras
    //    reach the floor in about 15 s.
    let vol = Tmpfs::mount(&dir.path().join("vol1"), "40m");
    let nvr1 = nvr(dir.path(), "nvr1", &config(&vol.0, &urls, "24 MiB"));
    wait_for(Duration::from_secs(20), "recording", || {
        frames_written(&nvr1.base, 1) > 0
    });
    let first_start = recordings(&nvr1.base, 1)[0]["start"].as_str().unwrap().to_string();
    wait_for(
        Duration::from_secs(60),
        "retention to delete the oldest footage",
        || {
            recordings(&nvr1.base, 1)
                .first()
                .is_some_and(|r| r["start"].as_str().unwrap() > first_start.as_str())
        },
    );
    std::thread::sleep(Duration::from_secs(6));
    let free = free_bytes(&vol.0);
    // Retention runs every 5 s; at ~1 MB/s the volume may dip below the floor by that much.
    assert!(
        free >= (24 << 20) - (8 << 20),
        "free space {free} fell far below the floor"
    );
    for ch in [1, 2] {
        assert_eq!(channel_view(&nvr1.base, ch)["recording"]["state"], "recording");
    }
    assert!(nvr1.proc.stderr().contains("retention deleted footage"));
    drop(nvr1);

    // 2. A full disk: something else takes all the space.
    let vol = Tmpfs::mount(&dir.path().join("vol2"), "40m");
    let nvr2 = nvr(dir.path(), "nvr2", &config(&vol.0, &urls, "0"));
    wait_for(Duration::from_secs(20), "recording", || {
        frames_written(&nvr2.base, 1) > 0 && frames_written(&nvr2.base, 2) > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    let filler = vol.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x55u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        let mut small = vec![0x55u8; 4096];
        while f.write_all(&small).is_ok() {}
        small.truncate(1);
        while f.write_all(&small).is_ok() {}
    }
    wait_for(Duration::from_secs(20), "channels to pause on the full disk", || {
        [1, 2]
            .iter()
            .all(|&ch| channel_view(&nvr2.base, ch)["recording"]["state"] == "disk_full")
    });
    let log = nvr2.proc.stderr();
    assert!(log.contains("recording paused"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(events(&nvr2.base).iter().any(|k| k == "disk_full"));
    // Ingest stays connected while writing is paused.
    assert_eq!(channel_view(&nvr2.base, 1)["ingest"]["connected"], true);

    std::fs::remove_file(&filler).unwrap();
    let before = frames_written(&nvr2.base, 1);
    wait_for(Duration::from_secs(20), "recording to resume", || {
        [1, 2]
            .iter()
            .all(|&ch| channel_view(&nvr2.base, ch)["recording"]["state"] == "recording")
            && frames_written(&nvr2.base, 1) > before + 25
    });
    assert!(events(&nvr2.base).iter().any(|k| k == "recording_resumed"));
    assert!(nvr2.proc.stderr().contains("recording resumed"));
    // The footage on either side of the pause is intact.
    let a = audit_json(&["--data", vol.0.to_str().unwrap(), "--channel", "1"]);
    assert_eq!(a["duplicates"], 0, "{a}");
    assert!(
        !a["cameras"][0]["gaps"].as_array().unwrap().is_empty(),
        "the pause shows as a gap: {a}"
    );
    assert_eq!(
        recordings(&nvr2.base, 1).len(),
        a["cameras"][0]["gaps"].as_array().unwrap().len() + 1
    );
}
