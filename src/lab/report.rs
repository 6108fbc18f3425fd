//! The lab's report: the rounds of every topology assembled into one JSON
//! document (link cuts as `rounds` with their means, every other fault as a
//! row of `scenarios`) and printed as a table in the shape of the paper's
//! Table 1, with a line per fault a rule could not see.
//!
//! Pure: takes the measured rows, prints or returns; never measures anything.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::LabOptions;

/// What one topology's run produced.
pub struct Outcome {
    /// One JSON row per round (see `pair::rows`).
    pub rounds: Vec<Value>,
    /// Frames stored twice within one NVR's store, over the topology's NVRs.
    pub duplicates: u64,
    /// Where those frames' copies are (the first `merge::MAX_LISTED` per topology).
    pub listed: Vec<super::merge::Duplicate>,
    /// Topology-wide figures (standby traffic, flapping, mass, n-plus-m).
    pub extra: Map<String, Value>,
}

fn mean_of(rows: &[Value], f: impl Fn(&Value) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = rows.iter().filter_map(f).filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Seconds of recording loss per camera in a row, averaged over its cameras.
fn loss_mean(r: &Value) -> Option<f64> {
    let v: Vec<f64> = r["loss_s"].as_object()?.values().filter_map(Value::as_f64).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn loss_max(r: &Value) -> Option<f64> {
    r["loss_s"]
        .as_object()?
        .values()
        .filter_map(Value::as_f64)
        .reduce(f64::max)
}

/// The whole run's JSON document.
pub fn assemble(
    opts: &LabOptions,
    rounds: Vec<Value>,
    mut extra: Map<String, Value>,
    duplicates: u64,
    elapsed: Duration,
) -> Value {
    let (cuts, others): (Vec<Value>, Vec<Value>) = rounds.into_iter().partition(|r| r["fault"] == "cut");
    let cuts: Vec<Value> = cuts
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r["round"] = json!(i + 1);
            r
        })
        .collect();
    let summary = json!({
        "takeover_s": mean_of(&cuts, |r| r["takeover_s"].as_f64()),
        "loss_s": mean_of(&cuts, loss_mean),
        "loss_max_s": cuts.iter().filter_map(loss_max).reduce(f64::max),
        "frames_lost_after_merge": mean_of(&cuts, |r| r["frames_lost_after_merge"].as_f64()),
        "failback_frames_lost": mean_of(&cuts, |r| r["failback_frames_lost"].as_f64()),
        "transfer_bytes": mean_of(&cuts, |r| r["transfer_bytes"].as_f64()),
        "transfer_s": mean_of(&cuts, |r| r["transfer_s"].as_f64()),
        "time_to_complete_s": mean_of(&cuts, |r| r["time_to_complete_s"].as_f64()),
        "rtsp_ms": mean_of(&cuts, |r| r["rtsp_ms"].as_f64()),
        "first_key_frame_ms": mean_of(&cuts, |r| r["first_key_frame_ms"].as_f64()),
        "standby_normal_rx_bytes_per_s": extra.remove("standby_normal_rx_bytes_per_s"),
    });
    let undetected: Vec<Value> = others
        .iter()
        .filter_map(|r| {
            let rule = r["undetected_by"].as_str()?;
            Some(json!({ "fault": r["fault"], "rule": rule }))
        })
        .collect();
    let mut doc = json!({
        "mode": if opts.paper { "paper" } else { "tandem-defaults" },
        "edge_storage": opts.edge_storage,
        "cameras_ignore_key_frame_requests": opts.ignore_key_frame_requests,
        "scenarios_run": opts.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "rounds_requested": opts.rounds, "hold_s": opts.hold.as_secs_f64(),
        "rounds": cuts, "summary": summary,
        "scenarios": others,
        "undetected": undetected,
        "duplicates_after_merge": duplicates,
        "elapsed_s": elapsed.as_secs_f64(),
    });
    for (k, v) in extra {
        doc[k] = v;
    }
    doc
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// A figure right-aligned in `w` columns with `p` decimals, or `-` when not measured.
fn cell(v: f64, w: usize, p: usize) -> String {
    if v.is_finite() {
        format!("{v:>w$.p$}")
    } else {
        format!("{:>w$}", "-")
    }
}

/// Prints the report in the shape of the paper's Table 1, one row per round
/// and per other fault, then the lines the table cannot hold.
pub fn print_table(report: &Value) {
    println!(
        "\nfailover lab ({}{}{}), hold {} s",
        report["mode"].as_str().unwrap_or("?"),
        if report["edge_storage"] == true {
            ", edge storage"
        } else {
            ""
        },
        if report["cameras_ignore_key_frame_requests"] == true {
            ", cameras ignore key frame requests"
        } else {
            ""
        },
        report["hold_s"]
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>12} {:>9} {:>11} {:>7} {:>11}",
        "round",
        "takeover s",
        "loss mean",
        "loss max",
        "lost frames",
        "failback",
        "transfer MB",
        "xfer s",
        "complete s"
    );
    let row = |label: &str, r: &Value, loss: (f64, f64)| {
        println!(
            "{:<14} {} {} {} {} {} {} {} {}",
            label,
            cell(f(&r["takeover_s"]), 10, 2),
            cell(loss.0, 10, 2),
            cell(loss.1, 10, 2),
            cell(f(&r["frames_lost_after_merge"]), 12, 1),
            cell(f(&r["failback_frames_lost"]), 9, 1),
            cell(r["transfer_bytes"].as_f64().unwrap_or(0.0) / 1e6, 11, 2),
            cell(f(&r["transfer_s"]), 7, 1),
            cell(f(&r["time_to_complete_s"]), 11, 1),
        );
    };
    let losses = |r: &Value| (loss_mean(r).unwrap_or(f64::NAN), loss_max(r).unwrap_or(f64::NAN));
    for r in report["rounds"].as_array().into_iter().flatten() {
        row(&r["round"].to_string(), r, losses(r));
    }
    if report["rounds"].as_array().is_some_and(|a| !a.is_empty()) {
        let s = &report["summary"];
        row("mean", s, (f(&s["loss_s"]), f(&s["loss_max_s"])));
    }
    for r in report["scenarios"].as_array().into_iter().flatten() {
        row(r["fault"].as_str().unwrap_or("?"), r, losses(r));
    }
    for u in report["undetected"].as_array().into_iter().flatten() {
        println!(
            "{}: undetected by this rule ({} check: the host still answers while its NVR is dead; \
             Tandem's http check of the NVR itself detects it)",
            u["fault"].as_str().unwrap_or("?"),
            u["rule"].as_str().unwrap_or("?")
        );
    }
    let s = &report["summary"];
    if let (Some(t), Some(rtsp), Some(key)) = (
        s["takeover_s"].as_f64(),
        s["rtsp_ms"].as_f64(),
        s["first_key_frame_ms"].as_f64(),
    ) {
        println!(
            "where a cut's loss goes (mean): detection {t:.2} s, RTSP session {rtsp:.0} ms, \
             PLAY → first key frame {key:.0} ms, loss {:.2} s",
            f(&s["loss_s"])
        );
    }
    println!("paper (Table 1): takeover 3.3–4.2 s, mean 3.9 s; recording loss 8.3–9.3 s, mean 8.9 s");
    if let Some(rx) = report["summary"]["standby_normal_rx_bytes_per_s"].as_f64() {
        println!("standby in normal state receives {rx:.0} B/s");
    }
    if let Some(n) = report["flapping"]["rule_transitions"].as_u64() {
        println!("flapping link: {n} rule transitions");
    }
    println!(
        "duplicates after merge (within each NVR's store): {}",
        report["duplicates_after_merge"]
    );
    for d in report["duplicate_frames"].as_array().into_iter().flatten() {
        let copies: Vec<String> = d["copies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "segment {} at {} for {} ticks{}{}",
                    c["segment"],
                    c["time_90k"],
                    c["duration"],
                    if c["key"] == true { ", key" } else { "" },
                    if c["gapfill"] == true { ", gap fill" } else { "" }
                )
            })
            .collect();
        println!(
            "  twice in {} channel {}: camera {} frame {}: {}",
            d["store"].as_str().unwrap_or("?"),
            d["channel"],
            d["camera"],
            d["seq"],
            copies.join("; ")
        );
    }
    if let Some(d) = report.get("clock_skew_duplicates") {
        println!(
            "clock skew (standby 3 s ahead): {d} duplicates, {} frames dropped by the merge",
            report["clock_skew_merge_drops"]
        );
    }
    if let Some(m) = report.get("mass") {
        let d = &m["recording_after_cut_s"];
        println!(
            "mass takeover ({} cameras): recording on the standby after the cut: min {:.2} s, median {:.2} s, p90 {:.2} s, max {:.2} s; {} of {} within {} s",
            m["cameras"],
            f(&d["min"]),
            f(&d["p50"]),
            f(&d["p90"]),
            f(&d["max"]),
            m["within_target"],
            m["cameras"],
            m["target_s"]
        );
    }
    if let Some(n) = report.get("n_plus_m") {
        let list = |v: &Value| -> String {
            let items: Vec<String> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("ch{} {}", c["channel"], c["priority"].as_str().unwrap_or("?")))
                .collect();
            if items.is_empty() {
                "none".into()
            } else {
                items.join(", ")
            }
        };
        println!(
            "n+m ({} of {} primaries failed, {} cameras, room for {}): taken {}; left (no_capacity) {}; never taken {}; \
             capacity respected: {}; priorities honoured: {}",
            n["failed_primaries"],
            n["primaries"],
            n["cameras_failed"],
            n["capacity_channels"],
            list(&n["taken"]),
            list(&n["no_capacity"]),
            list(&n["priority_never"]),
            n["capacity_respected"],
            n["priorities_honoured"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Scenario;

    fn opts() -> LabOptions {
        LabOptions {
            rounds: 2,
            hold: Duration::from_secs(4),
            paper: true,
            edge_storage: false,
            ignore_key_frame_requests: false,
            scenarios: vec![Scenario::Cut, Scenario::Kill],
            outage: None,
            binary: "tandem".into(),
            workdir: "/nonexistent".into(),
        }
    }

    #[test]
    fn cuts_become_rounds_with_means_and_undetected_faults_are_listed() {
        let rows = vec![
            json!({"round": 1, "fault": "cut", "takeover_s": 3.0, "loss_s": {"cam1": 8.0, "cam2": 9.0},
                   "frames_lost_after_merge": 400, "failback_frames_lost": 0, "transfer_bytes": 10,
                   "transfer_s": 4.0, "time_to_complete_s": null}),
            json!({"round": 2, "fault": "kill", "takeover_s": null, "loss_s": {"cam1": 0.0},
                   "frames_lost_after_merge": 500, "failback_frames_lost": 0, "transfer_bytes": 0,
                   "transfer_s": null, "time_to_complete_s": null, "undetected_by": "icmp"}),
            json!({"round": 3, "fault": "cut", "takeover_s": 4.0, "loss_s": {"cam1": 10.0, "cam2": 11.0},
                   "frames_lost_after_merge": 600, "failback_frames_lost": 2, "transfer_bytes": 30,
                   "transfer_s": 6.0, "time_to_complete_s": 2.0}),
        ];
        let mut extra = Map::new();
        extra.insert("standby_normal_rx_bytes_per_s".into(), json!(58.0));
        extra.insert("flapping".into(), json!({"rule_transitions": 0}));
        let r = assemble(&opts(), rows, extra, 3, Duration::from_secs(9));
        let cuts = r["rounds"].as_array().unwrap();
        assert_eq!(cuts.len(), 2);
        assert_eq!(cuts[1]["round"], 2, "cut rounds are numbered among themselves");
        let s = &r["summary"];
        assert_eq!(s["takeover_s"], 3.5);
        assert_eq!(s["loss_s"], 9.5);
        assert_eq!(s["loss_max_s"], 11.0);
        assert_eq!(s["frames_lost_after_merge"], 500.0);
        assert_eq!(
            s["time_to_complete_s"], 2.0,
            "rounds that never complete are left out of the mean"
        );
        assert_eq!(s["standby_normal_rx_bytes_per_s"], 58.0);
        assert_eq!(r["scenarios"].as_array().unwrap().len(), 1);
        assert_eq!(r["undetected"], json!([{"fault": "kill", "rule": "icmp"}]));
        assert_eq!(r["duplicates_after_merge"], 3);
        assert_eq!(r["flapping"]["rule_transitions"], 0);
        assert_eq!(r["mode"], "paper");
        assert_eq!(r["scenarios_run"], json!(["cut", "kill"]));
        assert_eq!(cell(f64::NAN, 4, 1), "   -");
        assert_eq!(cell(1.26, 6, 1), "   1.3");
        // Printing a report never panics, whatever is missing.
        print_table(&r);
        print_table(&json!({}));
    }
}
