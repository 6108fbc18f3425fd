//! `tandem bench placement` at a small size (30 members, 600 cameras, a
//! fraction of a second): the JSON has its fields, no decision left a member
//! over capacity, with room to spare every failure moved exactly the failed
//! members' cameras, and a returning member took nothing back. Smoke check
//! only: no timing is asserted.

mod common;

#[test]
fn a_small_simulated_pool_stays_within_capacity_through_failures() {
    let t = tempfile::tempdir().unwrap();
    let r = common::bench_json(
        t.path(),
        &[
            "placement",
            "--members",
            "30",
            "--cameras",
            "600",
            "--single",
            "12",
            "--triple",
            "4",
            "--max-dead",
            "3",
            "--rebalance-moves",
            "100",
        ],
    );
    assert_eq!(r["benchmark"], "placement");
    assert_eq!(r["members"], 30);
    assert_eq!(r["cameras"], 600);
    assert_eq!(r["over_capacity"], 0);
    assert_eq!(r["unassigned_max"], 0);
    assert_eq!(r["moves_on_return"], 0);
    for (kind, n) in [("single", 12), ("triple", 4)] {
        let f = &r[kind];
        assert_eq!(f["decision_ms"]["n"], n, "{kind}");
        assert!(f["decision_ms"]["max"].as_f64().unwrap() >= 0.0, "{kind}");
        assert_eq!(f["failures_with_more_moves_than_failed_cameras"], 0, "{kind}");
        assert_eq!(f["moves_of_other_cameras"], 0, "{kind}");
        // Every camera of a failed member found room, so moves equal them.
        assert_eq!(f["moves_total"], f["failed_cameras_total"], "{kind}");
        assert!(f["moves_total"].as_u64().unwrap() > 0, "{kind}");
    }
    assert_eq!(r["failure_decision_ms"]["n"], 16);
    let moves = r["rebalance_moves"].as_u64().unwrap();
    assert!(moves <= 100, "{moves}");
    let (before, after) = (
        r["load_spread_before_rebalance"].as_f64().unwrap(),
        r["load_spread_after_rebalance"].as_f64().unwrap(),
    );
    assert!(after <= before, "{before} → {after}");
}
