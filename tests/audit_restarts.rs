//! The loss auditor across camera restarts: a simulated camera's sequence
//! numbers start again at 0 whenever its process restarts, so a store
//! recorded across restarts must audit as several runs of one camera, with
//! the restarts listed apart — never as duplicates or lost frames.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn camera_restarts_are_runs_not_duplicates_or_losses() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut cam, urls) = sim_camera_at(dir.path(), &listen, 1, &[]);
    let cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
         [[network_camera]]\nname = \"c\"\nurl = \"{}\"\n[[channel]]\nnumber = 1\ncamera = \"c\"\n",
        dir.path().join("data").display(),
        urls[0]
    );
    let nvr = nvr(dir.path(), "nvr", &cfg);
    const RUNS: usize = 3;
    for run in 0..RUNS {
        let before = frames_written(&nvr.base, 1);
        wait_for(Duration::from_secs(30), "recording from this camera run", || {
            frames_written(&nvr.base, 1) > before + 30
        });
        if run + 1 < RUNS {
            // The camera process dies and comes back at the same address,
            // numbering its frames from 0 again.
            cam.kill();
            std::thread::sleep(Duration::from_millis(1500));
            cam = sim_camera_at(dir.path(), &listen, 1, &[]).0;
        }
    }
    let a = audit_json(&["--data", dir.path().join("data").to_str().unwrap(), "--channel", "1"]);
    assert_eq!(a["cameras"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a["duplicates"], 0, "a restart is not a duplicate: {a}");
    assert_eq!(a["frames_lost"], 0, "nothing lost inside a run: {a}");
    assert_eq!(a["restarts"], (RUNS - 1) as u64, "{a}");
    let c = &a["cameras"][0];
    let runs = c["runs"].as_array().unwrap();
    assert_eq!(runs.len(), RUNS, "{a}");
    let found: u64 = runs.iter().map(|r| r["frames_found"].as_u64().unwrap()).sum();
    assert_eq!(a["frames_found"], found);
    assert!(found >= 30 * RUNS as u64, "{a}");
    for r in c["restarts"].as_array().unwrap() {
        // The camera was down 1.5 s (plus its start-up): reported as the
        // time between the runs, not as a gap.
        let s = r["seconds"].as_f64().unwrap();
        assert!((1.0..30.0).contains(&s), "{r}");
        assert_ne!(r["before_boot_id"], r["after_boot_id"]);
    }
    assert!(c["gaps"].as_array().unwrap().is_empty(), "{a}");
}
