//! The pool lab's figures: what `GET /api/v1/pool` says about placement
//! (members over capacity, cameras not yet recorded by their owner, moves
//! between two assignments), what the merged timeline says about holes (the
//! longest time a camera went unrecorded, frames no NVR stored), and the
//! JSON document and table built from them.
//!
//! Pure: takes pool views, audits and rows; must never measure, sleep or
//! touch a process.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::audit::{AuditReport, GapReport};

/// Camera → member, from a view's stored assignment.
pub fn assignment(view: &Value) -> BTreeMap<String, String> {
    view["view"]["assignment"]["cameras"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(c, n)| (c.clone(), n.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `member` lists `camera` as recorded now, in a list that answers
/// to the stored assignment (as `PoolView::records` decides a handover: a
/// list from before it may name a camera the member has let go since).
pub fn records(view: &Value, member: &str, camera: &str) -> bool {
    let v = &view["view"];
    let stored = v["assignment_revision"].as_i64().unwrap_or(0);
    crate::pool::records::list_answers_to(v["recording_as_of"][member].as_i64(), stored)
        && v["recording"][member]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c.as_str() == Some(camera)))
}

/// The cameras of `cameras` that are not, right now, assigned to a
/// registered member outside `excluded` and recorded by it.
pub fn unrecorded<'a>(view: &Value, cameras: &'a [String], excluded: &[String]) -> Vec<&'a str> {
    let owners = assignment(view);
    let members = &view["view"]["members"];
    cameras
        .iter()
        .filter(|c| {
            !owners
                .get(*c)
                .is_some_and(|m| !excluded.contains(m) && members.get(m).is_some() && records(view, m, c))
        })
        .map(String::as_str)
        .collect()
}

/// Members holding more cameras than their registered capacity, either in
/// the stored assignment or in what they say they record (a member still
/// recording cameras it handed over counts too: that is real load).
pub fn over_capacity(view: &Value, kbps_per_camera: u64) -> u32 {
    let owners = assignment(view);
    let mut over = 0;
    for (name, m) in view["view"]["members"].as_object().into_iter().flatten() {
        let channels = m["channels"].as_u64().unwrap_or(0);
        let kbps = m["kbps"].as_u64().unwrap_or(0);
        let assigned = owners.values().filter(|o| *o == name).count() as u64;
        let recorded = view["view"]["recording"][name].as_array().map_or(0, |a| a.len() as u64);
        let load = assigned.max(recorded);
        if load > channels || load * kbps_per_camera > kbps {
            over += 1;
        }
    }
    over
}

/// Cameras whose member differs between two assignments (a camera that
/// appears or disappears counts as moved).
pub fn moves(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> usize {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names.into_iter().filter(|c| before.get(*c) != after.get(*c)).count()
}

/// The holes of the merged timeline that end after `from_us` (camera clock):
/// the longest, in seconds, and the frames missing in all of them. Holes
/// that closed before the fault (start-up) are not the fault's.
pub fn holes_since(audit: &AuditReport, from_us: i64) -> (f64, u64) {
    gaps_since(audit, from_us).fold((0.0, 0), |(longest, lost), (_, g)| {
        (f64::max(longest, g.seconds), lost + g.frames_missing)
    })
}

/// The first `max` of those holes, each with its camera: where a loss was,
/// so that a rare one can be traced in the NVRs' logs (which member let the
/// camera go, which took it) without running the lab again.
pub fn holes_listed(audit: &AuditReport, from_us: i64, max: usize) -> Vec<Value> {
    gaps_since(audit, from_us)
        .take(max)
        .map(|(camera, g)| json!({ "camera": camera, "gap": g }))
        .collect()
}

fn gaps_since(audit: &AuditReport, from_us: i64) -> impl Iterator<Item = (u32, &GapReport)> {
    audit
        .cameras
        .iter()
        .flat_map(|c| c.gaps.iter().map(move |g| (c.camera_id, g)))
        .filter(move |(_, g)| g.first_after_us >= from_us)
}

/// The run's document: the rows and their summary (the worst of each figure).
pub fn assemble(setup: Value, rows: Vec<Value>, elapsed_s: f64) -> Value {
    let worst = |k: &str| rows.iter().filter_map(|r| r[k].as_f64()).reduce(f64::max);
    let sum = |k: &str| rows.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
    let summary = json!({
        "max_unrecorded_s": worst("max_unrecorded_s"),
        "over_capacity": worst("over_capacity").map(|v| v as u64),
        "frames_lost_after_merge": sum("frames_lost_after_merge"),
        "unrecovered": sum("unrecovered"),
    });
    json!({ "setup": setup, "scenarios": rows, "summary": summary, "elapsed_s": elapsed_s })
}

fn cell(v: &Value, p: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:>9.p$}"),
        None => format!("{:>9}", "-"),
    }
}

/// One line per scenario, then the summary.
pub fn print_table(doc: &Value) {
    let s = &doc["setup"];
    println!(
        "pool lab: {} NVRs, {} cameras, lease TTL {} s, capacity {} channels per NVR",
        s["nvrs"], s["cameras"], s["lease_ttl_s"], s["capacity_channels"]
    );
    println!(
        "{:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "affected", "unrec s", "again s", "over cap", "lost", "moved"
    );
    for r in doc["scenarios"].as_array().into_iter().flatten() {
        println!(
            "{:<13} {} {} {} {} {} {}",
            r["scenario"].as_str().unwrap_or("?"),
            cell(&r["cameras_affected"], 0),
            cell(&r["max_unrecorded_s"], 2),
            cell(&r["recorded_again_s"], 2),
            cell(&r["over_capacity"], 0),
            cell(&r["frames_lost_after_merge"], 0),
            cell(&r["moved"], 0),
        );
    }
    let sm = &doc["summary"];
    println!(
        "worst: {} s unrecorded, {} NVRs over capacity, {} frames lost after merge, {} cameras never recorded again",
        sm["max_unrecorded_s"], sm["over_capacity"], sm["frames_lost_after_merge"], sm["unrecovered"]
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::CameraAudit;

    fn view() -> Value {
        json!({ "view": {
            "members": {
                "a": { "channels": 2, "kbps": 8000 },
                "b": { "channels": 2, "kbps": 4000 },
            },
            "assignment": { "cameras": { "c1": "a", "c2": "a", "c3": "b", "c4": "gone" } },
            "recording": { "a": ["c1"], "b": ["c3", "c2"] },
        }})
    }

    fn cams(n: u32) -> Vec<String> {
        (1..=n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn a_camera_counts_as_recorded_only_on_its_registered_owner() {
        let v = view();
        // c2: its owner a does not record it (b does: not the owner);
        // c4: its owner is not a member; c5: not assigned.
        assert_eq!(unrecorded(&v, &cams(5), &[]), vec!["c2", "c4", "c5"]);
        // An excluded member (killed, partitioned) does not count.
        assert_eq!(unrecorded(&v, &cams(3), &["a".into()]), vec!["c1", "c2"]);
        assert!(unrecorded(&json!({}), &[], &[]).is_empty());
        // b's list answers to an assignment older than the stored one.
        let mut w = v.clone();
        w["view"]["assignment_revision"] = json!(9);
        w["view"]["recording_as_of"] = json!({ "b": 8 });
        assert_eq!(unrecorded(&w, &cams(3), &[]), vec!["c2", "c3"]);
        w["view"]["recording_as_of"]["b"] = json!(9);
        assert_eq!(unrecorded(&w, &cams(3), &[]), vec!["c2"]);
    }

    #[test]
    fn over_capacity_counts_channels_bitrate_and_what_is_recorded() {
        let v = view();
        // a: 2 cameras, 2 channels, 8000 kbit/s: fits at 4000 each, not at 4001.
        // b: 1 assigned but records 2: at 4000 kbit/s over its 4000.
        assert_eq!(over_capacity(&v, 2000), 0);
        assert_eq!(over_capacity(&v, 2001), 1);
        assert_eq!(over_capacity(&v, 4001), 2);
        let mut w = v.clone();
        w["view"]["recording"]["b"] = json!(["c1", "c2", "c3"]);
        assert_eq!(over_capacity(&w, 1), 1, "three recorded on two channels");
        assert_eq!(over_capacity(&json!({}), 1), 0);
    }

    #[test]
    fn moves_count_changed_appeared_and_gone_cameras() {
        let a = assignment(&view());
        let mut b = a.clone();
        assert_eq!(moves(&a, &b), 0);
        b.insert("c1".into(), "b".into());
        b.remove("c4");
        b.insert("c9".into(), "a".into());
        assert_eq!(moves(&a, &b), 3);
    }

    fn gap(first_after_us: i64, seconds: f64, frames_missing: u64) -> GapReport {
        GapReport {
            after_seq: 0,
            before_seq: 0,
            frames_missing,
            last_before: String::new(),
            first_after: String::new(),
            seconds,
            last_before_us: first_after_us - 1,
            first_after_us,
        }
    }

    #[test]
    fn holes_before_the_fault_are_not_counted() {
        let audit = AuditReport {
            cameras: vec![
                CameraAudit {
                    camera_id: 1,
                    gaps: vec![gap(100, 5.0, 125), gap(2_000, 0.8, 20)],
                    ..Default::default()
                },
                CameraAudit {
                    camera_id: 2,
                    gaps: vec![gap(3_000, 1.2, 30)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(holes_since(&audit, 1_000), (1.2, 50));
        assert_eq!(holes_since(&audit, 0), (5.0, 175));
        assert_eq!(holes_since(&audit, 5_000), (0.0, 0));
        let listed = holes_listed(&audit, 1_000, 10);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["camera"], 1);
        assert_eq!(listed[0]["gap"]["frames_missing"], 20);
        assert_eq!(listed[1]["camera"], 2);
        assert_eq!(holes_listed(&audit, 0, 1).len(), 1, "at most max");
        assert!(holes_listed(&audit, 5_000, 10).is_empty());
    }

    #[test]
    fn the_summary_is_the_worst_of_each_figure() {
        let rows = vec![
            json!({ "scenario": "kill", "max_unrecorded_s": 1.5, "over_capacity": 0, "frames_lost_after_merge": 40, "unrecovered": 0 }),
            json!({ "scenario": "partition", "max_unrecorded_s": 0.0, "over_capacity": 1, "frames_lost_after_merge": 0, "unrecovered": 2 }),
        ];
        let doc = assemble(json!({ "nvrs": 3 }), rows, 12.0);
        assert_eq!(doc["summary"]["max_unrecorded_s"], 1.5);
        assert_eq!(doc["summary"]["over_capacity"], 1);
        assert_eq!(doc["summary"]["frames_lost_after_merge"], 40);
        assert_eq!(doc["summary"]["unrecovered"], 2);
        let empty = assemble(json!({}), vec![], 0.0);
        assert!(empty["summary"]["max_unrecorded_s"].is_null());
    }
}
