//! The failover lab: the paper's test bed (§IV) and issue 11's faults, on one
//! machine. NVRs and simulated cameras are the real `tandem` binary, each in its
//! own network namespace on one bridge, with the paper's addresses (192.168.1.1
//! primary, 192.168.1.2 standby, cameras on 192.168.2.x) so its Fig. 6 rule
//! runs unchanged. Each scenario builds the topology it needs (`topology`),
//! injects its fault, and measures takeover, recording loss, the frames no NVR
//! of the site stored after transfers and gap fill (`merge`), and the time to a
//! complete merged timeline; `report` prints the table.
//!
//! Owns the experiment. Must never leave namespaces or processes behind: both
//! are owned by guards dropped on every exit path (including Ctrl-C, which is
//! turned into an error), and must never touch the root namespace.

pub mod attack;
pub mod merge;
pub mod netns;
mod nplusm;
mod pair;
pub mod pool;
pub mod pool_report;
pub mod report;
mod scale;
pub mod topology;

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::time::Time90k;

pub use report::print_table;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns Ctrl-C into an error at the next `check_interrupt`, so every
/// guard (processes, namespaces) is dropped on the way out.
fn catch_interrupts() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// One fault the lab can inject, each in the topology it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// The paper's experiment: the primary's cable pulled, `--rounds` times.
    Cut,
    /// The primary NVR killed with SIGKILL, then restarted.
    Kill,
    /// The two NVRs cannot reach each other; both still reach the cameras.
    Partition,
    /// Short drops of the primary's link that must not cause a takeover.
    Flapping,
    /// A camera's link down 30 s; it keeps recording to its card.
    CameraOutage,
    /// A single NVR with no standby SIGKILLed, restarted after 20 s.
    SingleCrash,
    /// 64 cameras taken over at once.
    Mass,
    /// Three primaries, one standby with capacity for two primaries' cameras.
    NPlusM,
    /// The standby's clock 3 s ahead of the primary's.
    ClockSkew,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::Cut,
        Scenario::Kill,
        Scenario::Partition,
        Scenario::Flapping,
        Scenario::CameraOutage,
        Scenario::SingleCrash,
        Scenario::Mass,
        Scenario::NPlusM,
        Scenario::ClockSkew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cut => "cut",
            Scenario::Kill => "kill",
            Scenario::Partition => "partition",
            Scenario::Flapping => "flapping",
            Scenario::CameraOutage => "camera-outage",
            Scenario::SingleCrash => "single-crash",
            Scenario::Mass => "mass",
            Scenario::NPlusM => "n-plus-m",
            Scenario::ClockSkew => "clock-skew",
        }
    }

    /// Parses `--scenario`'s comma-separated list, naming a bad entry.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(sc) = Scenario::ALL.iter().copied().find(|x| x.name() == name) else {
                let known: Vec<&str> = Scenario::ALL.iter().map(|x| x.name()).collect();
                bail!("--scenario: unknown scenario {name:?} (known: {})", known.join(", "));
            };
            if !out.contains(&sc) {
                out.push(sc);
            }
        }
        if out.is_empty() {
            bail!("--scenario: no scenario named");
        }
        out.sort();
        Ok(out)
    }

    /// The scenarios run when none are named: the paper's mode keeps to the
    /// paper's faults (its ICMP rule has no capacity and its timings make a
    /// flapping test meaningless); Tandem's mode runs them all.
    pub fn defaults(paper: bool) -> Vec<Scenario> {
        if paper {
            vec![Scenario::Cut, Scenario::Kill, Scenario::Partition]
        } else {
            Scenario::ALL.to_vec()
        }
    }
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub rounds: u32,
    pub hold: Duration,
    /// The paper's parameters (Fig. 6 rule, cameras taking 5 s to connect)
    /// instead of Tandem's recommended defaults.
    pub paper: bool,
    /// Cameras keep `EDGE_SECONDS` of footage on their card and the NVRs fill
    /// holes from it (`edge_storage = true`).
    pub edge_storage: bool,
    /// Cameras ignore RTCP key frame requests, as cameras whose encoder
    /// cannot be told to start a GOP: each takeover then waits for the next
    /// key frame (up to the 1-s GOP).
    pub ignore_key_frame_requests: bool,
    /// Sorted, without repeats.
    pub scenarios: Vec<Scenario>,
    /// How long a camera's link stays down in `camera-outage` and a single
    /// NVR stays dead in `single-crash` (the 30 s and 20 s by default).
    pub outage: Option<Duration>,
    pub binary: PathBuf,
    pub workdir: PathBuf,
}

impl LabOptions {
    fn has(&self, s: Scenario) -> bool {
        self.scenarios.contains(&s)
    }
}

/// Seconds of footage each simulated camera keeps on its card with `--edge-storage`.
pub const EDGE_SECONDS: u32 = 120;

/// Child processes killed (and reaped) when dropped: nothing outlives a run.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now_us() -> i64 {
    Time90k::from_system(std::time::SystemTime::now()).as_unix_micros()
}

/// The lab's tokens for its NVRs, minted into their stores before they start.
static TOKENS: crate::auth::client::Bearers = crate::auth::client::Bearers::new();

fn get(url: &str) -> Result<Value> {
    let auth = TOKENS.header_for(url).unwrap_or_default();
    let r = crate::httpc::request_with_timeout("GET", url, &[("Authorization", &auth)], b"", Duration::from_secs(5))?;
    Ok(r.json()?)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        check_interrupt()?;
        if f().unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// Runs the selected scenarios, each topology in turn, and returns the JSON report.
pub fn run(opts: &LabOptions) -> Result<Value> {
    catch_interrupts();
    std::fs::create_dir_all(&opts.workdir)?;
    let started = Instant::now();
    let mut rounds: Vec<Value> = Vec::new();
    let mut extra = serde_json::Map::new();
    let pair_faults = [
        Scenario::Cut,
        Scenario::Kill,
        Scenario::Partition,
        Scenario::CameraOutage,
        Scenario::Flapping,
    ];
    let mut duplicates = 0u64;
    let mut listed = Vec::new();
    if pair_faults.iter().any(|s| opts.has(*s)) {
        let mut r = pair::run(opts, "pair", 0)?;
        duplicates += r.duplicates;
        listed.extend(std::mem::take(&mut r.listed));
        rounds.extend(r.rounds);
        extra.extend(r.extra);
    }
    if opts.has(Scenario::ClockSkew) {
        let mut r = pair::run(opts, "clock-skew", pair::SKEW_MS)?;
        duplicates += r.duplicates;
        listed.extend(std::mem::take(&mut r.listed));
        let drops: u64 = r.rounds.iter().filter_map(|x| x["merge_drops"].as_u64()).sum();
        rounds.extend(r.rounds);
        extra.insert("clock_skew_duplicates".into(), json!(r.duplicates));
        extra.insert("clock_skew_merge_drops".into(), json!(drops));
    }
    if opts.has(Scenario::SingleCrash) {
        let mut r = scale::single_crash(opts)?;
        duplicates += r.duplicates;
        listed.extend(std::mem::take(&mut r.listed));
        rounds.extend(r.rounds);
    }
    if opts.has(Scenario::Mass) {
        let mut r = scale::mass(opts)?;
        duplicates += r.duplicates;
        listed.extend(std::mem::take(&mut r.listed));
        rounds.extend(r.rounds);
        extra.extend(r.extra);
    }
    if opts.has(Scenario::NPlusM) {
        let mut r = nplusm::run(opts)?;
        duplicates += r.duplicates;
        listed.extend(std::mem::take(&mut r.listed));
        rounds.extend(r.rounds);
        extra.extend(r.extra);
    }
    if !listed.is_empty() {
        extra.insert("duplicate_frames".into(), json!(listed));
    }
    Ok(report::assemble(opts, rounds, extra, duplicates, started.elapsed()))
}

/// Where the lab's files go when not told.
pub fn default_workdir() -> PathBuf {
    std::env::temp_dir().join(format!("tandem-lab-{}", std::process::id()))
}

pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the failover lab needs root (network namespaces)");
    }
    which("ip").context("the failover lab needs `ip` (Debian package iproute2)")
}

/// Whether a program is on the PATH.
pub fn have(p: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
}

fn which(p: &str) -> Result<()> {
    if !have(p) {
        bail!("{p} not found");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_lists_parse_sorted_without_repeats() {
        assert_eq!(
            Scenario::parse_list("clock-skew, cut,cut").unwrap(),
            vec![Scenario::Cut, Scenario::ClockSkew]
        );
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse_list(s.name()).unwrap(), vec![s]);
        }
        let e = Scenario::parse_list("cut,meteor").unwrap_err().to_string();
        assert!(e.contains("\"meteor\"") && e.contains("camera-outage"), "{e}");
        assert!(Scenario::parse_list(" , ").is_err());
    }

    #[test]
    fn the_paper_mode_defaults_to_the_papers_faults() {
        assert_eq!(
            Scenario::defaults(true),
            vec![Scenario::Cut, Scenario::Kill, Scenario::Partition]
        );
        assert_eq!(Scenario::defaults(false), Scenario::ALL.to_vec());
    }
}
