//! The failover test bed's short run (network namespaces, root): the paper's
//! experiment with Tandem's recommended defaults, asserting the targets —
//! mean takeover ≤ 0.5 s, mean recording loss ≤ 1.5 s, no frames lost during
//! failback, and a standby that receives only probes while all is well — plus
//! a SIGKILLed primary, a partition between the NVRs, and a flapping link.

mod common;
use common::*;

#[test]
fn lab_short_run_meets_the_targets() {
    if !prerequisite(
        is_root() && have_program("ip"),
        "root and iproute2, for network namespaces",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("lab.json");
    let out = std::process::Command::new(tandem())
        .args(["failover-lab", "--rounds", "5", "--hold", "4", "--json"])
        .arg(&json)
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the lab failed");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 5);
    for round in rounds {
        assert!(round["takeover_s"].as_f64().unwrap() > 0.0, "{round}");
        assert_eq!(round["failback_frames_lost"], 0, "frames lost during failback: {round}");
        assert!(
            round["transfer_bytes"].as_u64().unwrap() > 0,
            "footage went back: {round}"
        );
    }
    let s = &r["summary"];
    let takeover = s["takeover_s"].as_f64().unwrap();
    let loss = s["loss_s"].as_f64().unwrap();
    assert!(takeover <= 0.5, "mean takeover {takeover} s");
    assert!(loss <= 1.5, "mean recording loss {loss} s");
    // One camera alone sends ~125 000 B/s; probes are a few kB/s.
    let rx = s["standby_normal_rx_bytes_per_s"].as_f64().unwrap();
    assert!(rx < 20_000.0, "standby received {rx} B/s in normal state");
    // SIGKILL of the primary and a partition between the NVRs: no frames lost
    // at failback; the partition loses nothing at all (both recorded).
    let sc = r["scenarios"].as_array().unwrap();
    assert_eq!(sc.len(), 2, "{r}");
    for s in sc {
        assert_eq!(s["failback_frames_lost"], 0, "{s}");
    }
    let partition = sc.iter().find(|s| s["fault"] == "partition").unwrap();
    assert_eq!(partition["frames_lost_after_merge"], 0, "{partition}");
    let kill = sc.iter().find(|s| s["fault"] == "kill").unwrap();
    assert!(kill["loss_s"]["cam1"].as_f64().unwrap() <= 1.5, "{kill}");
    assert_eq!(r["duplicates_after_merge"], 0, "{r}");
    // A flapping link whose drops never reach failure_count causes no takeover.
    assert_eq!(r["flapping"]["rule_transitions"], 0, "{r}");
    // Nothing is left behind.
    let ns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("tdmlab"),
        "namespaces left behind"
    );
}
