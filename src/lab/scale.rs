//! The lab's other topologies: a single NVR with no standby that crashes
//! (single-crash), and a pair recording 64 low-bitrate cameras from one
//! `sim-camera --count 64` whose primary's link is cut (mass).
//!
//! Owns those scenarios' sequencing and their figures (the distribution of
//! the standby's start of recording over the 64 cameras). Must never wait
//! without a bound.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::merge::{self, Span};
use super::pair::{rows, time_to_complete, Measured, PRIMARY, STANDBY};
use super::report::Outcome;
use super::topology::{CamSpec, NetCam, NvrSpec, Site};
use super::{get, now_us, wait_until, LabOptions, Scenario};
use crate::time::Time90k;

/// How many cameras the mass takeover moves, and how soon all must record.
pub const MASS_CAMERAS: u32 = 64;
pub const MASS_TARGET_S: f64 = 1.5;

const CAM_HOST: &str = "192.168.2.1";

/// The rule's check: the paper's ICMP probe, or Tandem's http check of the NVR.
pub fn check_json(paper: bool, address: &str) -> String {
    if paper {
        format!(r#"{{ "address": "{address}", "interval": 1, "failure_count": 3, "normal_count": 1 }}"#)
    } else {
        format!(
            r#"{{ "address": "{address}", "type": "http", "port": 8080, "interval": 0.1, "timeout": 0.1, "failure_count": 3, "normal_count": 2 }}"#
        )
    }
}

/// A standby rule taking over `channels` (local = the network camera's
/// channel at `CAM_HOST`) from the NVR at `primary`, with extra top-level
/// fields (`capacity`).
pub fn rule_json(paper: bool, name: &str, primary: &str, channels: &[u32], extra: &str) -> String {
    let normal: Vec<String> = channels
        .iter()
        .map(|c| format!(r#"{{ "camera": {c}, "address": "n/a" }}"#))
        .collect();
    let failure: Vec<String> = channels
        .iter()
        .map(|c| format!(r#"{{ "camera": {c}, "address": "{CAM_HOST}", "channel": {c} }}"#))
        .collect();
    let backup: Vec<String> = channels
        .iter()
        .map(|c| format!(r#"{{ "local": {c}, "remote": {c} }}"#))
        .collect();
    format!(
        r#"{{ "name": "{name}", "check": {}, "release_delay": 30,{extra}
  "states": {{ "normal": [{}], "failure": [{}] }},
  "backup": {{ "address": "{primary}", "cameras": [{}] }} }}"#,
        check_json(paper, primary),
        normal.join(", "),
        failure.join(", "),
        backup.join(", ")
    )
}

/// The network cameras 1..=n of one `sim-camera --count n` at `CAM_HOST`.
pub fn many_cams(n: u32, priority: impl Fn(u32) -> Option<&'static str>) -> Vec<NetCam> {
    (1..=n)
        .map(|i| NetCam {
            name: format!("cam{i}"),
            url: format!("rtsp://{CAM_HOST}:554/cam{i}"),
            channel: Some(i),
            priority: priority(i),
        })
        .collect()
}

/// Low-bitrate cameras, so dozens fit on this machine.
pub fn small_cams(count: u32) -> CamSpec {
    CamSpec {
        host: "cams".into(),
        addr: CAM_HOST.into(),
        count,
        first_id: 1,
        width: 320,
        height: 180,
        kbps: 200,
    }
}

/// One NVR, no standby: SIGKILLed, restarted after the outage; with edge
/// storage its gap fill asks the cameras for what it missed.
pub fn single_crash(opts: &LabOptions) -> Result<Outcome> {
    let mut site = Site::new(opts, "single")?;
    let cams = super::pair::CAMS;
    for (i, cam) in cams.iter().enumerate() {
        site.add_cameras(&CamSpec::paper(&format!("cam{}", i + 1), cam, i as u32 + 1))?;
    }
    site.add_nvr(NvrSpec {
        name: "pri".into(),
        addr: PRIMARY.into(),
        cameras: cams
            .iter()
            .enumerate()
            .map(|(i, a)| NetCam {
                name: format!("cam{}", i + 1),
                url: format!("rtsp://{a}:554/cam1"),
                channel: None,
                priority: None,
            })
            .collect(),
        channels: (1..=2).map(|i| (i, Some(format!("cam{i}")))).collect(),
        rules: None,
        clock_offset_ms: 0,
    })?;
    site.start_nvr(0)?;
    site.wait_recording(0, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(2));
    let cut = now_us();
    site.kill_nvr(0);
    std::thread::sleep(opts.outage.unwrap_or(Duration::from_secs(20)));
    let restore = now_us();
    site.start_nvr(0)?;
    site.wait_recording(0, Duration::from_secs(60))?;
    let complete = time_to_complete(&site, opts, &[1, 2], cut, restore)?;
    eprintln!(
        "single-crash: complete after {}",
        complete.map_or("-".into(), |s| format!("{s:.2} s"))
    );
    std::thread::sleep(Duration::from_secs(2));
    site.stop_nvrs();
    let audit = merge::audit_site(&site.stores())?;
    let measured = [Measured {
        label: Scenario::SingleCrash.name().into(),
        span: Span {
            start_us: cut,
            end_us: restore,
        },
        takeover_s: None,
        transfer_bytes: 0,
        transfer_s: None,
        time_to_complete_s: complete,
        undetected_by: None,
        connect_ms: None,
    }];
    Ok(Outcome {
        rounds: rows(&measured, &audit),
        duplicates: audit.duplicates,
        listed: audit.listed,
        extra: Default::default(),
    })
}

/// Quantiles of a sorted slice (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// The 64-camera pair: the primary's link cut; when each standby channel
/// starts recording (the standby's channel list polled every 20 ms, before
/// any gap fill), then failback, transfers and the merged timeline.
pub fn mass(opts: &LabOptions) -> Result<Outcome> {
    let mut site = Site::new(opts, "mass")?;
    site.add_cameras(&small_cams(MASS_CAMERAS))?;
    let all: Vec<u32> = (1..=MASS_CAMERAS).collect();
    site.add_nvr(NvrSpec {
        name: "pri".into(),
        addr: PRIMARY.into(),
        cameras: many_cams(MASS_CAMERAS, |_| None),
        channels: all.iter().map(|&i| (i, Some(format!("cam{i}")))).collect(),
        rules: None,
        clock_offset_ms: 0,
    })?;
    site.add_nvr(NvrSpec {
        name: "stb".into(),
        addr: STANDBY.into(),
        cameras: many_cams(MASS_CAMERAS, |_| None),
        channels: all.iter().map(|&i| (i, None)).collect(),
        rules: Some(rule_json(opts.paper, "mass", PRIMARY, &all, "")),
        clock_offset_ms: 0,
    })?;
    site.start_nvr(0)?;
    site.start_nvr(1)?;
    site.wait_recording(0, Duration::from_secs(120))?;
    site.wait_api(1)?;
    std::thread::sleep(Duration::from_secs(2));
    let transfers_before = transfers(&site)?.len();
    let cut = now_us();
    site.net.set_link("pri", false)?;
    let mut first: Vec<Option<f64>> = vec![None; all.len()];
    let _ = wait_until(
        "all 64 cameras to record on the standby",
        Duration::from_secs(30),
        || {
            let ch = get(&format!("{}/api/v1/channels", site.base(1)))?;
            let t = (now_us() - cut) as f64 / 1e6;
            for c in ch.as_array().into_iter().flatten() {
                let n = c["number"].as_u64().unwrap_or(0) as usize;
                if c["recording"]["state"] == "recording" && (1..=first.len()).contains(&n) && first[n - 1].is_none() {
                    first[n - 1] = Some(t);
                }
            }
            Ok(first.iter().all(Option::is_some))
        },
    );
    let takeover = site.rule_state(1, 0)?["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|t| t["at"].as_str())
        .and_then(|s| Time90k::parse_rfc3339(s).ok())
        .map(|t| (t.as_unix_micros() - cut) as f64 / 1e6);
    let mut times: Vec<f64> = first.iter().flatten().copied().collect();
    times.sort_by(f64::total_cmp);
    let within = times.iter().filter(|t| **t <= MASS_TARGET_S).count();
    eprintln!(
        "mass: {} of {} recording on the standby, {within} within {MASS_TARGET_S} s of the cut (max {:?})",
        times.len(),
        all.len(),
        times.last()
    );
    std::thread::sleep(opts.hold);
    let restore = now_us();
    site.net.set_link("pri", true)?;
    wait_until("failback", Duration::from_secs(120), || {
        let ch = get(&format!("{}/api/v1/channels", site.base(1)))?;
        Ok(site.rule_state(1, 0)?["state"] == "normal"
            && ch.as_array().is_some_and(|a| a.iter().all(|c| c["binding"].is_null())))
    })?;
    let released = Instant::now();
    let mut bytes = 0u64;
    wait_until("the failback transfers", Duration::from_secs(300), || {
        let new: Vec<Value> = transfers(&site)?.into_iter().skip(transfers_before).collect();
        bytes = new.iter().filter_map(|j| j["bytes_sent"].as_u64()).sum();
        Ok(new.len() == all.len() && new.iter().all(|j| j["state"] == "done"))
    })?;
    let transfer_s = released.elapsed().as_secs_f64();
    site.wait_recording(0, Duration::from_secs(60))?;
    let complete = time_to_complete(&site, opts, &all, cut, restore)?;
    std::thread::sleep(Duration::from_secs(2));
    site.stop_nvrs();
    let audit = merge::audit_site(&site.stores())?;
    let measured = [Measured {
        label: Scenario::Mass.name().into(),
        span: Span {
            start_us: cut,
            end_us: restore,
        },
        takeover_s: takeover,
        transfer_bytes: bytes,
        transfer_s: Some(transfer_s),
        time_to_complete_s: complete,
        undetected_by: None,
        connect_ms: None,
    }];
    let mut extra = serde_json::Map::new();
    extra.insert(
        "mass".into(),
        json!({
            "cameras": all.len(),
            "recording": times.len(),
            "target_s": MASS_TARGET_S,
            "within_target": within,
            "recording_after_cut_s": {
                "min": quantile(&times, 0.0), "p50": quantile(&times, 0.5),
                "p90": quantile(&times, 0.9), "max": quantile(&times, 1.0),
            },
        }),
    );
    Ok(Outcome {
        rounds: rows(&measured, &audit),
        duplicates: audit.duplicates,
        listed: audit.listed,
        extra,
    })
}

fn transfers(site: &Site) -> Result<Vec<Value>> {
    Ok(get(&format!("{}/api/v1/transfers", site.base(1)))?["transfers"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rules_parse_as_the_agent_reads_them() {
        for paper in [false, true] {
            let text = rule_json(paper, "mass", PRIMARY, &[1, 2, 64], "");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["states"]["failure"][2]["channel"], 64);
            assert_eq!(v["states"]["normal"][1]["address"], "n/a");
            assert_eq!(v["backup"]["cameras"][2]["remote"], 64);
            assert_eq!(v["check"]["type"].as_str(), (!paper).then_some("http"));
            let rules = crate::failover::rule::parse_rules(&text).unwrap();
            assert_eq!(rules.len(), 1);
            let capped = rule_json(paper, "n", PRIMARY, &[1], r#" "capacity": { "channels": 4 },"#);
            let rules = crate::failover::rule::parse_rules(&capped).unwrap();
            assert_eq!(rules[0].capacity.and_then(|c| c.channels), Some(4));
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
        assert_eq!(quantile(&v, 0.0), Some(0.1));
        assert_eq!(quantile(&v, 0.5), Some(0.5));
        assert_eq!(quantile(&v, 0.9), Some(0.9));
        assert_eq!(quantile(&v, 1.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
