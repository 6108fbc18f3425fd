//! N+M in the lab: three primaries with three cameras each, one standby with
//! one rule per primary and room for four channels, cameras of mixed
//! priorities. Two primaries' links are cut together: the standby must not
//! exceed its capacity, must take higher priorities first, must never take a
//! `never` camera, and must report what it left (`arbitration.left`,
//! `no_capacity`).
//!
//! Owns the scenario and its verdicts (`judge`, pure). Must never wait without
//! a bound.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::merge::{self, Span};
use super::pair::{rows, time_to_complete, Measured, STANDBY};
use super::report::Outcome;
use super::scale::{many_cams, rule_json, small_cams};
use super::topology::{NvrSpec, Site};
use super::{get, now_us, wait_until, LabOptions, Scenario};
use crate::failover::capacity::Priority;

/// The standby's room: fewer channels than the six cameras that fail.
pub const CAPACITY_CHANNELS: usize = 4;
const PRIMARIES: [&str; 3] = ["192.168.1.1", "192.168.1.3", "192.168.1.4"];
const PER_PRIMARY: u32 = 3;
const STB: usize = 3;

/// Camera `i`'s priority (1-based): each failing primary mixes them, and one
/// camera may never be taken over.
pub fn priority(i: u32) -> Priority {
    match i {
        1 | 4 => Priority::High,
        3 | 5 => Priority::Low,
        6 => Priority::Never,
        _ => Priority::Medium,
    }
}

/// The scenario's verdicts from what the standby bound and what it left.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    pub capacity_respected: bool,
    /// No camera left for room has a higher priority than one taken, no
    /// `never` camera taken, and nothing of a primary that did not fail taken.
    pub priorities_honoured: bool,
    /// Every failed camera is either taken or reported left.
    pub all_accounted: bool,
}

pub fn judge(failed: &[u32], taken: &[u32], no_capacity: &[u32], never: &[u32]) -> Verdict {
    let lowest_taken = taken.iter().map(|&c| priority(c)).min();
    let highest_left = no_capacity.iter().map(|&c| priority(c)).max();
    let order_ok = match (lowest_taken, highest_left) {
        (Some(t), Some(l)) => t >= l,
        _ => true,
    };
    let never_ok =
        taken.iter().all(|&c| priority(c) != Priority::Never) && never.iter().all(|&c| priority(c) == Priority::Never);
    let only_failed = taken.iter().chain(no_capacity).all(|c| failed.contains(c));
    Verdict {
        capacity_respected: taken.len() <= CAPACITY_CHANNELS,
        priorities_honoured: order_ok && never_ok && only_failed,
        all_accounted: failed
            .iter()
            .all(|c| taken.contains(c) || no_capacity.contains(c) || never.contains(c)),
    }
}

fn channels_of(p: usize) -> Vec<u32> {
    let first = p as u32 * PER_PRIMARY + 1;
    (first..first + PER_PRIMARY).collect()
}

pub fn run(opts: &LabOptions) -> Result<Outcome> {
    let mut site = Site::new(opts, "n-plus-m")?;
    let n = PER_PRIMARY * PRIMARIES.len() as u32;
    site.add_cameras(&small_cams(n))?;
    let cams = many_cams(n, |i| Some(priority(i).as_str()));
    for (p, addr) in PRIMARIES.iter().enumerate() {
        site.add_nvr(NvrSpec {
            name: format!("pr{}", p + 1),
            addr: (*addr).into(),
            cameras: cams.clone(),
            channels: channels_of(p)
                .into_iter()
                .map(|c| (c, Some(format!("cam{c}"))))
                .collect(),
            rules: None,
            clock_offset_ms: 0,
        })?;
    }
    let capacity = format!(r#" "capacity": {{ "channels": {CAPACITY_CHANNELS} }},"#);
    let rules: Vec<String> = PRIMARIES
        .iter()
        .enumerate()
        .map(|(p, addr)| {
            rule_json(
                opts.paper,
                &format!("primary-{}", p + 1),
                addr,
                &channels_of(p),
                &capacity,
            )
        })
        .collect();
    site.add_nvr(NvrSpec {
        name: "stb".into(),
        addr: STANDBY.into(),
        cameras: cams,
        channels: (1..=n).map(|c| (c, None)).collect(),
        rules: Some(format!("[{}]", rules.join(",\n"))),
        clock_offset_ms: 0,
    })?;
    for i in 0..=STB {
        site.start_nvr(i)?;
    }
    for i in 0..PRIMARIES.len() {
        site.wait_recording(i, Duration::from_secs(60))?;
    }
    site.wait_api(STB)?;
    std::thread::sleep(Duration::from_secs(2));
    let transfers_before = transfers(&site)?.len();
    let cut = now_us();
    for host in ["pr1", "pr2"] {
        site.net.set_link(host, false)?;
    }
    wait_until(
        "the standby's rules for both primaries to enter failure",
        Duration::from_secs(15),
        || Ok(site.rule_state(STB, 0)?["state"] == "failure" && site.rule_state(STB, 1)?["state"] == "failure"),
    )?;
    // Both rules in failure: the later one's entry is the takeover of both.
    let takeover = (0..2)
        .filter_map(|r| {
            let m = site.rule_state(STB, r).ok()?;
            let at = m["history"].as_array()?.last()?["at"].as_str()?.to_string();
            crate::time::Time90k::parse_rfc3339(&at).ok()
        })
        .map(|t| (t.as_unix_micros() - cut) as f64 / 1e6)
        .reduce(f64::max);
    let failed: Vec<u32> = channels_of(0).into_iter().chain(channels_of(1)).collect();
    let recording_channels = || -> Result<Vec<u32>> {
        let ch = get(&format!("{}/api/v1/channels", site.base(STB)))?;
        let mut v: Vec<u32> = ch
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| !c["binding"].is_null() && c["recording"]["state"] == "recording")
            .filter_map(|c| c["number"].as_u64().map(|n| n as u32))
            .collect();
        v.sort_unstable();
        Ok(v)
    };
    // Until every camera it may take records (or room runs out).
    let _ = wait_until(
        "the standby to record what it has room for",
        Duration::from_secs(20),
        || Ok(recording_channels()?.len() >= CAPACITY_CHANNELS),
    );
    // A later decision would show here: give the arbiter a moment.
    std::thread::sleep(Duration::from_secs(1));
    let taken = recording_channels()?;
    let (mut no_capacity, mut never) = (Vec::new(), Vec::new());
    for r in 0..2 {
        let state = get(&format!("{}/api/v1/rules", site.base(STB)))?;
        for l in state["rules"][r]["arbitration"]["left"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let ch = l["channel"].as_u64().unwrap_or(0) as u32;
            match l["reason"].as_str() {
                Some("no_capacity") => no_capacity.push(ch),
                Some("priority_never") => never.push(ch),
                _ => {}
            }
        }
    }
    let verdict = judge(&failed, &taken, &no_capacity, &never);
    eprintln!("n+m: taken {taken:?}, left for room {no_capacity:?}, never {never:?}: {verdict:?}");
    std::thread::sleep(opts.hold);
    let restore = now_us();
    for host in ["pr1", "pr2"] {
        site.net.set_link(host, true)?;
    }
    wait_until("failback", Duration::from_secs(120), || {
        let ch = get(&format!("{}/api/v1/channels", site.base(STB)))?;
        Ok(site.rule_state(STB, 0)?["state"] == "normal"
            && site.rule_state(STB, 1)?["state"] == "normal"
            && ch.as_array().is_some_and(|a| a.iter().all(|c| c["binding"].is_null())))
    })?;
    let released = Instant::now();
    let mut bytes = 0u64;
    wait_until("the failback transfers", Duration::from_secs(180), || {
        let new: Vec<Value> = transfers(&site)?.into_iter().skip(transfers_before).collect();
        bytes = new.iter().filter_map(|j| j["bytes_sent"].as_u64()).sum();
        Ok(new.len() >= taken.len() && new.iter().all(|j| j["state"] == "done"))
    })?;
    let transfer_s = released.elapsed().as_secs_f64();
    for i in 0..2 {
        site.wait_recording(i, Duration::from_secs(60))?;
    }
    let complete = time_to_complete(&site, opts, &failed, cut, restore)?;
    std::thread::sleep(Duration::from_secs(2));
    site.stop_nvrs();
    let audit = merge::audit_site(&site.stores())?;
    let measured = [Measured {
        label: Scenario::NPlusM.name().into(),
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
    let named = |v: &[u32]| -> Vec<Value> {
        v.iter()
            .map(|&c| json!({ "channel": c, "priority": priority(c).as_str() }))
            .collect()
    };
    let mut extra = serde_json::Map::new();
    extra.insert(
        "n_plus_m".into(),
        json!({
            "primaries": PRIMARIES.len(), "failed_primaries": 2, "cameras_failed": failed.len(),
            "capacity_channels": CAPACITY_CHANNELS,
            "taken": named(&taken), "no_capacity": named(&no_capacity), "priority_never": named(&never),
            "capacity_respected": verdict.capacity_respected,
            "priorities_honoured": verdict.priorities_honoured,
            "all_accounted": verdict.all_accounted,
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
    Ok(get(&format!("{}/api/v1/transfers", site.base(STB)))?["transfers"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let failed = [1, 2, 3, 4, 5, 6];
        // The right choice: both highs, the medium, one low; the other low left; never left.
        let good = judge(&failed, &[1, 2, 3, 4], &[5], &[6]);
        assert_eq!(
            good,
            Verdict {
                capacity_respected: true,
                priorities_honoured: true,
                all_accounted: true
            }
        );
        // Over capacity.
        assert!(!judge(&failed, &[1, 2, 3, 4, 5], &[], &[6]).capacity_respected);
        // A high camera left while a low one was taken.
        assert!(!judge(&failed, &[2, 3, 4, 5], &[1], &[6]).priorities_honoured);
        // The never camera taken.
        assert!(!judge(&failed, &[1, 2, 4, 6], &[3, 5], &[]).priorities_honoured);
        // A camera of the primary that did not fail taken.
        assert!(!judge(&failed, &[1, 2, 4, 7], &[3, 5], &[6]).priorities_honoured);
        // A failed camera neither taken nor reported.
        assert!(!judge(&failed, &[1, 2, 3, 4], &[], &[6]).all_accounted);
    }

    #[test]
    fn the_failing_primaries_need_more_room_than_the_standby_has() {
        let takeable = (1..=6).filter(|&c| priority(c) != Priority::Never).count();
        assert!(takeable > CAPACITY_CHANNELS);
        assert_eq!(channels_of(1), vec![4, 5, 6]);
    }
}
