//! The pool lab (issue 13): a real etcd and N `tandem serve` NVRs in a
//! `[pool]`, each in its own network namespace on the lab's bridge, sharing
//! the low-bitrate cameras of one `sim-camera`. Each scenario gets a fresh
//! site, waits until every camera is recorded by the member the scheduler
//! gave it, injects its fault, follows the pool through a surviving member's
//! `GET /api/v1/pool` (when each affected camera is recorded again, members
//! over capacity at every look), then stops the NVRs and judges the holes in
//! the merged timeline from the cameras' frame stamps (`merge`).
//!
//! Scenarios: `kill` (SIGKILL the members holding the most cameras, 3 by
//! default, all at once), `stop` (the busiest member stopped gracefully,
//! SIGTERM: it hands its cameras over before it exits), `partition` (blackhole routes between the busiest
//! member and etcd only; it still reaches its cameras), `etcd-restart`
//! (etcd killed, started again on its data 3 s later), `add` (two more NVRs
//! join a settled pool).
//!
//! Owns the sequencing. Must never wait without a bound, and never leave a
//! process or a namespace behind: etcd is dropped before the site, the site
//! kills its NVRs and cameras and removes the namespaces.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::merge;
use super::pool_report::{self as report, assignment};
use super::scale::{many_cams, small_cams};
use super::topology::{NvrSpec, Site};
use super::{check_interrupt, get, now_us, LabOptions, Procs};
use crate::failover::capacity::ASSUMED_MBPS;

const ETCD_HOST: &str = "etcd";
const ETCD_ADDR: &str = "192.168.3.1";
/// The lab's lease: the issue's ≤ 1 s.
const LEASE_TTL_S: u32 = 1;
/// How long the lab waits for a pool to settle or recover before it
/// reports the cameras still unrecorded.
const SETTLE: Duration = Duration::from_secs(120);
const RECOVER: Duration = Duration::from_secs(30);
/// Holes listed per scenario in the report (each also printed).
const MAX_HOLES_LISTED: usize = 10;

/// One fault of the pool lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PoolScenario {
    Kill,
    Stop,
    Partition,
    EtcdRestart,
    Add,
}

impl PoolScenario {
    pub const ALL: [PoolScenario; 5] = [Self::Kill, Self::Stop, Self::Partition, Self::EtcdRestart, Self::Add];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Partition => "partition",
            Self::EtcdRestart => "etcd-restart",
            Self::Add => "add",
        }
    }

    /// A comma-separated list, sorted, without repeats.
    pub fn parse_list(s: &str) -> Result<Vec<PoolScenario>> {
        let mut out = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match Self::ALL.iter().find(|x| x.name() == word) {
                Some(x) => out.push(*x),
                None => {
                    let known: Vec<&str> = Self::ALL.iter().map(|x| x.name()).collect();
                    bail!("unknown pool scenario {word:?} (known: {})", known.join(", "))
                }
            }
        }
        if out.is_empty() {
            bail!("no pool scenario named");
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[derive(Clone, Debug)]
pub struct PoolLabOptions {
    pub nvrs: u32,
    pub cameras: u32,
    /// Members killed at once in `kill`.
    pub kill: u32,
    /// How long a partition or an etcd outage lasts.
    pub hold: Duration,
    pub scenarios: Vec<PoolScenario>,
    pub binary: PathBuf,
    pub workdir: PathBuf,
}

impl PoolLabOptions {
    /// Channels per NVR: just enough for every camera once `kill` members
    /// are gone, so the lab also tests that nobody goes over.
    pub fn capacity_channels(&self) -> u32 {
        let left = self.nvrs.saturating_sub(self.kill).max(1);
        self.cameras.div_ceil(left)
    }
}

fn nvr_name(i: usize) -> String {
    format!("nvr-{:02}", i + 1)
}

fn nvr_addr(i: usize) -> String {
    format!("192.168.1.{}", i + 1)
}

/// One scenario's pool. Field order matters: etcd goes before the site
/// (whose namespace it lives in).
struct PoolSite {
    etcd: Procs,
    site: Site,
    cameras: Vec<String>,
    names: Vec<String>,
    kbps_per_camera: u64,
    /// Members over capacity, the worst seen at any look.
    over_capacity: u32,
}

impl PoolSite {
    /// Namespaces, etcd, the cameras and `nvrs` NVRs configured (started
    /// only by `start`).
    fn new(opts: &PoolLabOptions, lab: &LabOptions, tag: &str, nvrs: usize) -> Result<PoolSite> {
        let mut site = Site::new(lab, tag)?;
        site.net.add_host(ETCD_HOST, &format!("{ETCD_ADDR}/16"))?;
        site.add_cameras(&small_cams(opts.cameras))?;
        let channels = opts.capacity_channels();
        let mbps = (f64::from(channels) * ASSUMED_MBPS).ceil() as u64;
        let all: Vec<u32> = (1..=opts.cameras).collect();
        for i in 0..nvrs {
            let pool = format!(
                "[pool]\netcd = [\"http://{ETCD_ADDR}:2379\"]\nname = \"{}\"\n\
                 capacity = {{ channels = {channels}, mbps = {mbps} }}\nlease_ttl = \"{LEASE_TTL_S}s\"\nprefix = \"/lab/\"\n",
                nvr_name(i)
            );
            site.add_nvr_with(
                NvrSpec {
                    name: nvr_name(i),
                    addr: nvr_addr(i),
                    cameras: many_cams(opts.cameras, |_| None),
                    channels: all.iter().map(|&c| (c, Some(format!("cam{c}")))).collect(),
                    rules: None,
                    clock_offset_ms: 0,
                },
                &pool,
            )?;
        }
        let mut p = PoolSite {
            etcd: Procs(Vec::new()),
            site,
            cameras: all.iter().map(|c| format!("cam{c}")).collect(),
            names: (0..nvrs).map(nvr_name).collect(),
            kbps_per_camera: (ASSUMED_MBPS * 1000.0) as u64,
            over_capacity: 0,
        };
        p.start_etcd()?;
        Ok(p)
    }

    /// etcd with the short timings of the tests, on its own data directory
    /// (kept across a restart).
    fn start_etcd(&mut self) -> Result<()> {
        let dir = self.site.work.join("etcd-data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.site.work.join("etcd.log"))?;
        let (c, p) = (format!("http://{ETCD_ADDR}:2379"), format!("http://{ETCD_ADDR}:2380"));
        let child = self
            .site
            .net
            .command(ETCD_HOST, Path::new("etcd"))
            .args(["--name", "lab", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
            .args(["--initial-cluster", &format!("lab={p}")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "250"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian package etcd-server)")?;
        self.etcd.0.push(child);
        super::wait_until("etcd to answer", Duration::from_secs(30), || {
            let r =
                crate::httpc::request_with_timeout("GET", &format!("{c}/health"), &[], b"", Duration::from_secs(1))?;
            Ok(r.status == 200)
        })
    }

    fn kill_etcd(&mut self) {
        for mut c in self.etcd.0.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The pool as member `i` sees it; every look also counts members over capacity.
    fn look(&mut self, i: usize) -> Result<Value> {
        let v = get(&format!("{}/api/v1/pool", self.site.base(i)))?;
        self.over_capacity = self.over_capacity.max(report::over_capacity(&v, self.kbps_per_camera));
        Ok(v)
    }

    /// Waits until `members` are registered and every camera is recorded by
    /// its owner, as member `observer` sees the pool.
    fn settle(&mut self, observer: usize, members: usize, timeout: Duration) -> Result<Value> {
        let start = Instant::now();
        let mut last = String::from("no answer");
        while start.elapsed() < timeout {
            check_interrupt()?;
            if let Ok(v) = self.look(observer) {
                let registered = v["view"]["members"].as_object().map_or(0, |m| m.len());
                let missing = report::unrecorded(&v, &self.cameras, &[]);
                if registered == members && missing.is_empty() {
                    return Ok(v);
                }
                last = format!(
                    "{registered} of {members} members, {} cameras unrecorded",
                    missing.len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the pool did not settle in {timeout:?}: {last}")
    }

    /// Follows the pool from `observer` until each camera of `affected` is
    /// recorded by a member outside `excluded`; returns when each was
    /// (seconds after `since_us`), `None` for those never recorded again.
    fn follow(
        &mut self,
        observer: usize,
        affected: &[String],
        excluded: &[String],
        since_us: i64,
        timeout: Duration,
    ) -> Result<Vec<Option<f64>>> {
        let mut again: Vec<Option<f64>> = vec![None; affected.len()];
        let start = Instant::now();
        while start.elapsed() < timeout && again.iter().any(Option::is_none) {
            check_interrupt()?;
            if let Ok(v) = self.look(observer) {
                let t = (now_us() - since_us) as f64 / 1e6;
                let missing = report::unrecorded(&v, affected, excluded);
                for (i, c) in affected.iter().enumerate() {
                    if again[i].is_none() && !missing.contains(&c.as_str()) {
                        again[i] = Some(t);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(again)
    }

    /// The `n` members holding the most cameras (ties by name).
    fn busiest(&self, view: &Value, n: usize) -> Vec<usize> {
        let owners = assignment(view);
        let mut load: Vec<(usize, usize)> = (0..self.names.len())
            .map(|i| (owners.values().filter(|m| **m == self.names[i]).count(), i))
            .collect();
        load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        load.into_iter().take(n).map(|(_, i)| i).collect()
    }

    fn cameras_of(&self, view: &Value, members: &[usize]) -> Vec<String> {
        let names: Vec<&String> = members.iter().map(|&i| &self.names[i]).collect();
        assignment(view)
            .into_iter()
            .filter(|(_, m)| names.contains(&m))
            .map(|(c, _)| c)
            .collect()
    }

    /// Stops every NVR (SIGTERM, so segments close) and judges the merged
    /// timeline's holes since `fault_us` (less a second: a hole that began
    /// just before the fault is the fault's).
    fn finish(mut self, fault_us: i64, row: &mut Value) -> Result<()> {
        self.site.stop_nvrs();
        let audit = merge::audit_site(&self.site.stores())?;
        let from_us = fault_us - 1_000_000;
        let (longest, lost) = report::holes_since(&audit.union, from_us);
        let holes = report::holes_listed(&audit.union, from_us, MAX_HOLES_LISTED);
        for h in &holes {
            eprintln!("  hole: {h}");
        }
        row["max_unrecorded_s"] = json!(longest);
        row["frames_lost_after_merge"] = json!(lost);
        row["holes"] = json!(holes);
        row["duplicates_within_a_store"] = json!(audit.duplicates);
        Ok(())
    }
}

/// The worst of the "recorded again" times, and how many never were.
fn again_figures(again: &[Option<f64>]) -> (Option<f64>, usize) {
    let worst = again.iter().flatten().copied().reduce(f64::max);
    (worst, again.iter().filter(|a| a.is_none()).count())
}

fn run_one(opts: &PoolLabOptions, lab: &LabOptions, s: PoolScenario) -> Result<Value> {
    let n = opts.nvrs as usize;
    let joining = if s == PoolScenario::Add { 2 } else { 0 };
    let mut p = PoolSite::new(opts, lab, s.name(), n + joining)?;
    for i in 0..n {
        p.site.start_nvr(i)?;
    }
    let settled = p.settle(0, n, SETTLE)?;
    std::thread::sleep(Duration::from_secs(2));
    let before = assignment(&settled);
    let mut row = json!({ "scenario": s.name() });
    let fault_us = now_us();
    match s {
        PoolScenario::Kill => {
            let victims = p.busiest(&settled, opts.kill.min(opts.nvrs - 1) as usize);
            let affected = p.cameras_of(&settled, &victims);
            let observer = (0..n).find(|i| !victims.contains(i)).unwrap_or(0);
            for &v in &victims {
                p.site.kill_nvr(v);
            }
            let excluded: Vec<String> = victims.iter().map(|&i| p.names[i].clone()).collect();
            let again = p.follow(observer, &affected, &excluded, fault_us, RECOVER)?;
            let (worst, never) = again_figures(&again);
            eprintln!(
                "kill: {} killed with {} cameras; recorded again after at most {worst:?} s, {never} never",
                excluded.join(", "),
                affected.len()
            );
            std::thread::sleep(Duration::from_secs(2));
            let after = assignment(&p.look(observer)?);
            row["killed"] = json!(excluded);
            row["cameras_affected"] = json!(affected.len());
            row["recorded_again_s"] = json!(worst);
            row["unrecovered"] = json!(never);
            row["moved"] = json!(report::moves(&before, &after));
        }
        PoolScenario::Stop => {
            let victim = p.busiest(&settled, 1)[0];
            let observer = usize::from(victim == 0);
            let affected = p.cameras_of(&settled, &[victim]);
            let name = p.names[victim].clone();
            let stopping = Instant::now();
            p.site.stop_nvr(victim);
            let exit_s = stopping.elapsed().as_secs_f64();
            let again = p.follow(observer, &affected, std::slice::from_ref(&name), fault_us, RECOVER)?;
            let (worst, never) = again_figures(&again);
            eprintln!(
                "stop: {name} stopped with {} cameras, exited after {exit_s:.2} s; recorded by others after {worst:?} s",
                affected.len()
            );
            std::thread::sleep(Duration::from_secs(2));
            row["stopped"] = json!(name);
            row["exit_s"] = json!(exit_s);
            row["cameras_affected"] = json!(affected.len());
            row["recorded_again_s"] = json!(worst);
            row["unrecovered"] = json!(never);
            row["moved"] = json!(report::moves(&before, &assignment(&p.look(observer)?)));
        }
        PoolScenario::Partition => {
            let victim = p.busiest(&settled, 1)[0];
            let observer = usize::from(victim == 0);
            let affected = p.cameras_of(&settled, &[victim]);
            let host = (p.names[victim].clone(), p.site.addr(victim).to_string());
            p.site.net.partition((&host.0, &host.1), (ETCD_HOST, ETCD_ADDR), true)?;
            let again = p.follow(observer, &affected, std::slice::from_ref(&host.0), fault_us, RECOVER)?;
            let (worst, never) = again_figures(&again);
            // The partitioned member keeps recording (a duplicate is harmless).
            let remaining = opts
                .hold
                .saturating_sub(Duration::from_micros((now_us() - fault_us).max(0) as u64));
            std::thread::sleep(remaining);
            let recording_cut_off = recorded_channels(&p.site.base(victim))?;
            p.site
                .net
                .partition((&host.0, &host.1), (ETCD_HOST, ETCD_ADDR), false)?;
            let healed = Instant::now();
            // Make-before-break: once back, it hands over what the others took.
            let released = super::wait_until("the partitioned member to release", RECOVER, || {
                let v = p.look(observer)?;
                let mine: Vec<String> = assignment(&v)
                    .into_iter()
                    .filter(|(_, m)| *m == host.0)
                    .map(|(c, _)| c)
                    .collect();
                let listed = v["view"]["recording"][&host.0]
                    .as_array()
                    .map_or(usize::MAX, |a| a.len());
                Ok(listed == mine.len() && report::unrecorded(&v, &p.cameras, &[]).is_empty())
            })
            .is_ok()
            .then(|| healed.elapsed().as_secs_f64());
            eprintln!(
                "partition: {} cut from etcd with {} cameras ({recording_cut_off} channels recording while cut); \
                 recorded by others after {worst:?} s; released {released:?} s after healing",
                host.0,
                affected.len()
            );
            std::thread::sleep(Duration::from_secs(2));
            row["partitioned"] = json!(host.0);
            row["cameras_affected"] = json!(affected.len());
            row["recorded_again_s"] = json!(worst);
            row["unrecovered"] = json!(never);
            row["recording_while_cut"] = json!(recording_cut_off);
            row["released_after_heal_s"] = json!(released);
            row["moved"] = json!(report::moves(&before, &assignment(&p.look(observer)?)));
        }
        PoolScenario::EtcdRestart => {
            p.kill_etcd();
            std::thread::sleep(opts.hold);
            p.start_etcd()?;
            let restarted = Instant::now();
            let v = p.settle(0, n, RECOVER);
            let settled_s = v.is_ok().then(|| restarted.elapsed().as_secs_f64());
            eprintln!(
                "etcd-restart: etcd down {:?}; the pool settled {settled_s:?} s after it came back",
                opts.hold
            );
            std::thread::sleep(Duration::from_secs(2));
            row["cameras_affected"] = json!(0);
            row["settled_after_restart_s"] = json!(settled_s);
            row["unrecovered"] = json!(report::unrecorded(&p.look(0)?, &p.cameras, &[]).len());
            row["moved"] = json!(report::moves(&before, &assignment(&p.look(0)?)));
        }
        PoolScenario::Add => {
            for i in n..n + joining {
                p.site.start_nvr(i)?;
            }
            let joined = p.settle(0, n + joining, RECOVER)?;
            std::thread::sleep(Duration::from_secs(3));
            let after = assignment(&p.look(0)?);
            let on_new = after.values().filter(|m| p.names[n..].contains(m)).count();
            eprintln!(
                "add: {joining} NVRs joined; {} cameras moved, {on_new} on the new members",
                report::moves(&before, &after)
            );
            drop(joined);
            row["cameras_affected"] = json!(0);
            row["unrecovered"] = json!(report::unrecorded(&p.look(0)?, &p.cameras, &[]).len());
            row["moved"] = json!(report::moves(&before, &after));
            row["cameras_on_new_members"] = json!(on_new);
        }
    }
    row["over_capacity"] = json!(p.over_capacity);
    p.finish(fault_us, &mut row)?;
    Ok(row)
}

/// How many of an NVR's channels record now (asked inside the lab network).
fn recorded_channels(base: &str) -> Result<usize> {
    let v = get(&format!("{base}/api/v1/channels"))?;
    Ok(v.as_array().map_or(0, |a| {
        a.iter().filter(|c| c["recording"]["state"] == "recording").count()
    }))
}

/// Runs the selected scenarios, each on a fresh pool, and returns the JSON report.
pub fn run(opts: &PoolLabOptions) -> Result<Value> {
    super::catch_interrupts();
    if opts.nvrs < 2 || opts.cameras == 0 {
        bail!("the pool lab needs at least 2 NVRs and 1 camera");
    }
    if opts.nvrs > 200 {
        bail!("the pool lab puts NVRs on 192.168.1.x: at most 200");
    }
    if !super::have("etcd") {
        bail!("the pool lab needs etcd (Debian package etcd-server)");
    }
    std::fs::create_dir_all(&opts.workdir)?;
    let lab = LabOptions {
        rounds: 1,
        hold: opts.hold,
        paper: false,
        edge_storage: false,
        ignore_key_frame_requests: false,
        scenarios: Vec::new(),
        outage: None,
        binary: opts.binary.clone(),
        workdir: opts.workdir.clone(),
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    for &s in &opts.scenarios {
        rows.push(run_one(opts, &lab, s).with_context(|| format!("pool scenario {}", s.name()))?);
    }
    let setup = json!({
        "nvrs": opts.nvrs, "cameras": opts.cameras, "killed_at_once": opts.kill,
        "lease_ttl_s": LEASE_TTL_S, "capacity_channels": opts.capacity_channels(),
        "hold_s": opts.hold.as_secs_f64(),
        "scenarios_run": opts.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
    });
    Ok(report::assemble(setup, rows, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_lists_parse_sorted_without_repeats() {
        assert_eq!(
            PoolScenario::parse_list("add, kill,stop,kill").unwrap(),
            vec![PoolScenario::Kill, PoolScenario::Stop, PoolScenario::Add]
        );
        for s in PoolScenario::ALL {
            assert_eq!(PoolScenario::parse_list(s.name()).unwrap(), vec![s]);
        }
        let e = PoolScenario::parse_list("kill,flood").unwrap_err().to_string();
        assert!(e.contains("\"flood\"") && e.contains("etcd-restart"), "{e}");
        assert!(PoolScenario::parse_list(",").is_err());
    }

    #[test]
    fn capacity_leaves_room_for_every_camera_after_the_kill() {
        let o = |nvrs, cameras, kill| PoolLabOptions {
            nvrs,
            cameras,
            kill,
            hold: Duration::from_secs(1),
            scenarios: vec![],
            binary: PathBuf::new(),
            workdir: PathBuf::new(),
        };
        assert_eq!(o(10, 100, 3).capacity_channels(), 15);
        assert_eq!(o(5, 30, 3).capacity_channels(), 15);
        assert_eq!(o(2, 7, 3).capacity_channels(), 7);
        for (n, c, k) in [(10, 100, 3), (5, 30, 3), (12, 101, 3), (3, 10, 1)] {
            assert!(o(n, c, k).capacity_channels() * (n - k) >= c);
        }
    }
}
