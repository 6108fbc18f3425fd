//! The paper's pair — a primary recording two cameras, a standby watching it
//! with one rule — and the faults injected into it: the primary's link cut
//! (the paper's experiment), SIGKILL and restart, a partition between the NVRs,
//! a camera's link down while it records to its card, a flapping link, and the
//! same pair with the standby's clock 3 s ahead (clock-skew).
//!
//! Owns the rounds' sequencing and timing. Must never wait without a bound: a
//! fault the rule cannot see (SIGKILL under the paper's ICMP check, the host
//! still answering) is reported as undetected and the run goes on.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::merge::{self, Span};
use super::report::Outcome;
use super::topology::{CamSpec, NetCam, NvrSpec, Site};
use super::{check_interrupt, get, now_us, wait_until, LabOptions, Scenario};
use crate::failover::rule::tests_fixture::PAPER_FIG6;
use crate::time::Time90k;

pub const PRIMARY: &str = "192.168.1.1";
pub const STANDBY: &str = "192.168.1.2";
pub const CAMS: [&str; 2] = ["192.168.2.1", "192.168.2.2"];

/// The clock-skew scenario's standby runs this far ahead.
pub const SKEW_MS: i64 = 3000;

/// Tandem's recommended rule: probe the primary Tandem itself over HTTP every
/// 100 ms; three misses in a row (0.3 s) is a failure — one lost packet is
/// not — and two answers in a row bring it back, so a flapping link does not
/// bounce cameras. Failback waits for the primary to record again.
pub const RECOMMENDED_RULE: &str = r#"{ "name": "tandem-defaults",
  "check": { "address": "192.168.1.1", "type": "http", "port": 8080, "interval": 0.1, "timeout": 0.1,
             "failure_count": 3, "normal_count": 2 },
  "release_delay": 30,
  "states": {
    "normal":  [ { "camera": 1, "address": "n/a" }, { "camera": 2, "address": "n/a" } ],
    "failure": [ { "camera": 1, "address": "192.168.2.1" }, { "camera": 2, "address": "192.168.2.2" } ] },
  "backup": { "address": "192.168.1.1",
              "cameras": [ { "local": 1, "remote": 1 }, { "local": 2, "remote": 2 } ] } }"#;

/// Longest the lab waits for a rule to see a fault before calling it undetected.
const DETECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest the lab waits for transfers and gap fill to complete a round's timeline.
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(60);

const PRI: usize = 0;
const STB: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Cut,
    Kill,
    Partition,
    CameraOutage,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Cut => "cut",
            Fault::Kill => "kill",
            Fault::Partition => "partition",
            Fault::CameraOutage => "camera-outage",
        }
    }
}

/// One round as measured live; the merged timeline's figures come after the run.
pub struct Measured {
    pub label: String,
    pub span: Span,
    pub takeover_s: Option<f64>,
    pub transfer_bytes: u64,
    pub transfer_s: Option<f64>,
    pub time_to_complete_s: Option<f64>,
    /// The rule that did not see the fault (`icmp` for a SIGKILL under the paper's rule).
    pub undetected_by: Option<&'static str>,
    /// Where the standby's takeover sessions spent their time, mean over its
    /// channels: the RTSP round trips (DESCRIBE, SETUP, PLAY) and PLAY → the
    /// first key frame, in ms (`ingest.connect`).
    pub connect_ms: Option<(f64, f64)>,
}

/// The mean RTSP and first-key-frame milliseconds of the channels' last
/// sessions, from `GET /api/v1/channels`.
pub fn connect_ms(channels: &Value) -> Option<(f64, f64)> {
    let c: Vec<(f64, f64)> = channels
        .as_array()?
        .iter()
        .filter_map(|ch| {
            let c = &ch["ingest"]["connect"];
            let rtsp = ["describe_ms", "setup_ms", "play_ms"]
                .iter()
                .map(|k| c[*k].as_f64())
                .sum::<Option<f64>>()?;
            Some((rtsp, c["first_key_frame_ms"].as_f64()?))
        })
        .collect();
    let n = c.len() as f64;
    (!c.is_empty()).then(|| {
        (
            c.iter().map(|x| x.0).sum::<f64>() / n,
            c.iter().map(|x| x.1).sum::<f64>() / n,
        )
    })
}

fn network_cams() -> Vec<NetCam> {
    CAMS.iter()
        .enumerate()
        .map(|(i, a)| NetCam {
            name: format!("cam{}", i + 1),
            url: format!("rtsp://{a}:554/cam1"),
            channel: None,
            priority: None,
        })
        .collect()
}

/// Builds the pair; `tag` names its files, `skew_ms` shifts the standby's clock.
fn build(opts: &LabOptions, tag: &str, skew_ms: i64) -> Result<Site> {
    let mut site = Site::new(opts, tag)?;
    for (i, cam) in CAMS.iter().enumerate() {
        site.add_cameras(&CamSpec::paper(&format!("cam{}", i + 1), cam, i as u32 + 1))?;
    }
    let channels = |bound: bool| -> Vec<(u32, Option<String>)> {
        (1..=2).map(|i| (i, bound.then(|| format!("cam{i}")))).collect()
    };
    site.add_nvr(NvrSpec {
        name: "pri".into(),
        addr: PRIMARY.into(),
        cameras: network_cams(),
        channels: channels(true),
        rules: None,
        clock_offset_ms: 0,
    })?;
    site.add_nvr(NvrSpec {
        name: "stb".into(),
        addr: STANDBY.into(),
        cameras: network_cams(),
        channels: channels(false),
        rules: Some(if opts.paper { PAPER_FIG6 } else { RECOMMENDED_RULE }.into()),
        clock_offset_ms: skew_ms,
    })?;
    site.start_nvr(PRI)?;
    site.start_nvr(STB)?;
    site.wait_recording(PRI, Duration::from_secs(60))?;
    site.wait_api(STB)?;
    // Footage before the first fault: a round's timeline is judged from a
    // second before the fault, which must not predate the recording.
    std::thread::sleep(Duration::from_secs(2));
    Ok(site)
}

/// Runs the pair's scenarios (`tag` "pair") or the clock-skew round (`skew_ms` ≠ 0).
pub fn run(opts: &LabOptions, tag: &str, skew_ms: i64) -> Result<Outcome> {
    let mut site = build(opts, tag, skew_ms)?;
    let mut extra = serde_json::Map::new();
    let mut faults: Vec<(Fault, String)> = Vec::new();
    if skew_ms != 0 {
        faults.push((Fault::Cut, Scenario::ClockSkew.name().into()));
    } else {
        if opts.has(Scenario::Cut) {
            // In normal state the standby pulls no video: measure what it receives.
            let (rx0, t0) = (site.net.rx_bytes("stb")?, Instant::now());
            std::thread::sleep(Duration::from_secs(5));
            let rx = (site.net.rx_bytes("stb")? - rx0) as f64 / t0.elapsed().as_secs_f64();
            eprintln!("standby in normal state receives {rx:.0} B/s (probes only; one camera sends ~125000 B/s)");
            extra.insert("standby_normal_rx_bytes_per_s".into(), json!(rx));
            faults.extend((0..opts.rounds).map(|_| (Fault::Cut, "cut".to_string())));
        }
        for (s, f) in [
            (Scenario::Kill, Fault::Kill),
            (Scenario::Partition, Fault::Partition),
            (Scenario::CameraOutage, Fault::CameraOutage),
        ] {
            if opts.has(s) {
                faults.push((f, f.name().into()));
            }
        }
    }
    let mut measured = Vec::new();
    for (i, (fault, label)) in faults.iter().enumerate() {
        check_interrupt()?;
        let m = round(&mut site, opts, *fault, label, skew_ms)?;
        eprintln!(
            "{tag} round {} ({label}): takeover {}, transfer {} B, complete after {}",
            i + 1,
            fmt_s(m.takeover_s),
            m.transfer_bytes,
            fmt_s(m.time_to_complete_s)
        );
        measured.push(m);
    }
    if skew_ms == 0 && opts.has(Scenario::Flapping) {
        extra.insert("flapping".into(), flapping(&site)?);
    }
    // Stop every NVR cleanly so every segment is closed, then read the merged timeline.
    site.stop_nvrs();
    let audit = merge::audit_site(&site.stores())?;
    let rounds = rows(&measured, &audit);
    Ok(Outcome {
        rounds,
        duplicates: audit.duplicates,
        listed: audit.listed,
        extra,
    })
}

fn fmt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{s:.2} s"))
}

/// The rounds' JSON rows: what was measured live plus each round's share of
/// the merged timeline's holes — the site's (the union of every store) and
/// the primary's own after the transfers landed. Frames the site has but the
/// primary's timeline lacks are `merge_drops`: footage a merge or transfer
/// left out (with a standby keeping its copy, the union alone cannot see them).
pub fn rows(measured: &[Measured], audit: &merge::SiteAudit) -> Vec<Value> {
    let spans: Vec<Span> = measured.iter().map(|m| m.span).collect();
    let losses = merge::attribute(&audit.union, &spans);
    let primary = merge::attribute(&audit.first, &spans);
    measured
        .iter()
        .zip(losses)
        .zip(primary)
        .enumerate()
        .map(|(i, ((m, l), p))| {
            let loss: serde_json::Map<String, Value> =
                l.loss_s.iter().map(|(id, s)| (format!("cam{id}"), json!(s))).collect();
            let mut row = json!({
                "round": i + 1, "fault": m.label, "takeover_s": m.takeover_s, "loss_s": loss,
                "frames_lost_after_merge": l.frames_lost, "failback_frames_lost": l.failback_frames_lost,
                "transfer_bytes": m.transfer_bytes, "transfer_s": m.transfer_s,
                "time_to_complete_s": m.time_to_complete_s,
                "primary_frames_lost": p.frames_lost,
                "merge_drops": p.frames_lost.saturating_sub(l.frames_lost),
            });
            if let Some((rtsp, key)) = m.connect_ms {
                row["rtsp_ms"] = json!(rtsp);
                row["first_key_frame_ms"] = json!(key);
            }
            if let Some(rule) = m.undetected_by {
                row["undetected_by"] = json!(rule);
            }
            row
        })
        .collect()
}

fn transfers(site: &Site) -> Result<Vec<Value>> {
    Ok(get(&format!("{}/api/v1/transfers", site.base(STB)))?["transfers"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The standby's rule entered `failure` (its history's last entry), as
/// seconds after `cut` by the lab's clock; the standby's own clock runs
/// `skew_ms` ahead.
fn takeover_after(site: &Site, cut: i64, skew_ms: i64) -> Result<Option<f64>> {
    let m = site.rule_state(STB, 0)?;
    let failed_at = m["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|t| t["at"].as_str())
        .and_then(|s| Time90k::parse_rfc3339(s).ok());
    Ok(failed_at.map(|t| (t.as_unix_micros() - skew_ms * 1000 - cut) as f64 / 1e6))
}

fn round(site: &mut Site, opts: &LabOptions, fault: Fault, label: &str, skew_ms: i64) -> Result<Measured> {
    let transfers_before = transfers(site)?.len();
    let cut = now_us();
    match fault {
        Fault::Cut => site.net.set_link("pri", false)?,
        Fault::Kill => site.kill_nvr(PRI),
        Fault::Partition => site.net.partition(("pri", PRIMARY), ("stb", STANDBY), true)?,
        Fault::CameraOutage => site.net.set_link("cam1", false)?,
    }
    let mut m = Measured {
        label: label.into(),
        span: Span {
            start_us: cut,
            end_us: cut,
        },
        takeover_s: None,
        transfer_bytes: 0,
        transfer_s: None,
        time_to_complete_s: None,
        undetected_by: None,
        connect_ms: None,
    };
    let hold = match fault {
        // The camera keeps recording to its card meanwhile.
        Fault::CameraOutage => opts.outage.unwrap_or(Duration::from_secs(30)),
        _ => opts.hold,
    };
    let detected = if fault == Fault::CameraOutage {
        // The standby watches the primary, not the cameras: nothing to take over.
        false
    } else {
        let r = wait_until("the standby's rule to enter failure", DETECT_TIMEOUT, || {
            Ok(site.rule_state(STB, 0)?["state"] == "failure")
        });
        match (r, fault) {
            (Ok(()), _) => true,
            (Err(_), Fault::Kill) => {
                // The dead NVR's host still answers ICMP: the paper's check
                // cannot see this fault (Tandem's http check can).
                let rule = if opts.paper { "icmp" } else { "http" };
                eprintln!("SIGKILL of the primary undetected by the standby's {rule} check after {DETECT_TIMEOUT:?}");
                m.undetected_by = Some(rule);
                false
            }
            (Err(e), _) => return Err(e),
        }
    };
    if detected {
        m.takeover_s = takeover_after(site, cut, skew_ms)?;
        site.wait_recording(STB, Duration::from_secs(60))?;
        m.connect_ms = connect_ms(&get(&format!("{}/api/v1/channels", site.base(STB)))?);
    }
    std::thread::sleep(hold);
    let restore = now_us();
    m.span.end_us = restore;
    match fault {
        Fault::Cut => site.net.set_link("pri", true)?,
        Fault::Kill => site.start_nvr(PRI)?,
        Fault::Partition => site.net.partition(("pri", PRIMARY), ("stb", STANDBY), false)?,
        Fault::CameraOutage => site.net.set_link("cam1", true)?,
    }
    if detected {
        wait_until("failback", Duration::from_secs(120), || {
            let ch = get(&format!("{}/api/v1/channels", site.base(STB)))?;
            Ok(site.rule_state(STB, 0)?["state"] == "normal"
                && ch.as_array().is_some_and(|a| a.iter().all(|c| c["binding"].is_null())))
        })?;
        let released = Instant::now();
        let mut bytes = 0u64;
        wait_until("the failback transfer", Duration::from_secs(180), || {
            let new: Vec<Value> = transfers(site)?.into_iter().skip(transfers_before).collect();
            bytes = new.iter().filter_map(|j| j["bytes_sent"].as_u64()).sum();
            Ok(new.len() == 2 && new.iter().all(|j| j["state"] == "done"))
        })?;
        m.transfer_bytes = bytes;
        m.transfer_s = Some(released.elapsed().as_secs_f64());
    }
    site.wait_recording(PRI, Duration::from_secs(60))?;
    m.time_to_complete_s = time_to_complete(site, opts, &[1, 2], cut, restore)?;
    std::thread::sleep(Duration::from_secs(2));
    Ok(m)
}

/// Fault cleared (`restore`) → the site's merged timeline complete: every NVR
/// idle (transfers done, no gap fill job left) and the union of their stores
/// holding every frame each camera captured from a second before the fault to
/// a second after it cleared. Without edge storage the footage of the hole
/// exists nowhere, so the timeline never completes: `None`, after waiting
/// for the NVRs to go idle.
pub fn time_to_complete(
    site: &Site,
    opts: &LabOptions,
    cameras: &[u32],
    cut: i64,
    restore: i64,
) -> Result<Option<f64>> {
    let (from, to) = (cut - 1_000_000, restore + 1_000_000);
    let stores = site.stores();
    // Read a wider span by the NVRs' clocks: theirs may differ from the cameras' by seconds.
    let (a, b) = (
        Time90k::from_unix_micros(from - 10_000_000),
        Time90k::from_unix_micros(to + 10_000_000),
    );
    let nvrs = stores.len();
    let all_idle = || -> Result<bool> {
        for i in 0..nvrs {
            if !site.idle(i)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    if !opts.edge_storage {
        wait_until("transfers to finish", COMPLETE_TIMEOUT, all_idle)?;
        return Ok(None);
    }
    let r = wait_until("the merged timeline to be complete", COMPLETE_TIMEOUT, || {
        if now_us() < to + 500_000 || !all_idle()? {
            return Ok(false);
        }
        let stamps = merge::site_stamps(&stores, a, b)?;
        Ok(merge::window_complete(&stamps, cameras, from, to, 80_000))
    });
    match r {
        Ok(()) => Ok(Some(((now_us() - restore) as f64 / 1e6).max(0.0))),
        Err(e) => {
            // The audit after the run counts what is missing; the run goes on.
            eprintln!("{e}");
            Ok(None)
        }
    }
}

/// A flapping link: 150-ms drops every half second never make three 100-ms
/// probes in a row fail, so the standby must not take over. (The link is
/// toggled rather than shaped with `tc netem`: this machine's kernel has no
/// netem qdisc.)
fn flapping(site: &Site) -> Result<Value> {
    let transitions = |v: Value| v["history"].as_array().map_or(0, |h| h.len());
    let before = transitions(site.rule_state(STB, 0)?);
    for _ in 0..20 {
        check_interrupt()?;
        site.net.set_link("pri", false)?;
        std::thread::sleep(Duration::from_millis(150));
        site.net.set_link("pri", true)?;
        std::thread::sleep(Duration::from_millis(350));
    }
    std::thread::sleep(Duration::from_secs(1));
    let n = transitions(site.rule_state(STB, 0)?) - before;
    eprintln!("flapping link: {n} rule transitions");
    Ok(json!({ "drops": 20, "drop_ms": 150, "rule_transitions": n }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_ms_is_the_mean_over_channels_that_have_a_session() {
        let channels = json!([
            {"ingest": {"connect": {"describe_ms": 0.0, "setup_ms": 2.0, "play_ms": 2.0, "first_key_frame_ms": 20.0}}},
            {"ingest": {"connect": {"describe_ms": 4.0, "setup_ms": 2.0, "play_ms": 2.0, "first_key_frame_ms": 60.0}}},
            {"ingest": {"connect": null}},
        ]);
        assert_eq!(connect_ms(&channels), Some((6.0, 40.0)));
        assert_eq!(connect_ms(&json!([{"ingest": {}}])), None);
        assert_eq!(connect_ms(&json!({"error": "x"})), None);
    }
}
