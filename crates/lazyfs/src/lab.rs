//! The power-cut lab: cuts the power under a recording Tandem NVR again and
//! again and holds its store to the durability promise — after every cut
//! the store opens, start-up repair says what it did, no segment the index
//! references is missing or short, every indexed frame passes its checksum,
//! and the footage lost before the cut is at most the flush interval plus a
//! frame (from the simulated cameras' stamps).
//!
//! It drives the `tandem` binary it is given (cameras, NVR, `audit`,
//! `verify`, `user`) over a `LazyFs` mount and never links the tandem
//! crate. Each cycle costs one NVR start: the NVR restarted after cut n
//! records until cut n + 1. Some cuts are aimed (armed with `cut_at` on the
//! first segment create, unlink or import write after a random wait) so that
//! cuts land inside rollovers, retention deletions and failback imports, not
//! only between them. Gap-fill merges (issue 11) do not exist yet and are
//! not exercised.
//!
//! Owns: the cycle and its report. Must never touch anything outside its
//! work directory and loopback, and never leave a process or mount behind.

mod boundaries;
mod import;
mod judge;
mod procs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use boundaries::{segment_life, Boundary, BoundaryRun, BoundarySetup};
pub use judge::{format_rfc3339_us, lost_before_cut_s, parse_rfc3339_us, phases, repair_from_log, RepairSeen, Rng};

use crate::{LazyFs, Match, OpKind, OpRecord, When};
use import::Importer;
use procs::Proc;

/// The channel failback imports are merged into (no camera of its own).
pub const IMPORT_CHANNEL: u32 = 9;
const PEER_TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[derive(Clone, Debug, serde::Serialize)]
pub struct LabConfig {
    /// The `tandem` binary to drive.
    pub tandem: PathBuf,
    pub cuts: u32,
    pub seed: u64,
    /// Recorded channels, one stamped simulated camera each.
    pub channels: u32,
    pub flush_interval_s: u32,
    pub segment_duration_s: u32,
    /// Per-channel retention cap: small, so retention deletes every few seconds.
    pub max_bytes_per_channel: u64,
    /// Every how many cuts one lands in a failback import (0: never).
    pub import_every: u32,
    /// Random wait after recording resumed and before the cut, ms.
    pub wait_ms: (u64, u64),
    pub capacity: u64,
    pub camera_bitrate_kbps: u32,
    /// Where to keep the mount, configuration and logs (a new temporary
    /// directory if unset). Kept when a cut fails; removed otherwise.
    pub work_dir: Option<PathBuf>,
    /// Print one line per cut on stderr as the lab goes.
    pub progress: bool,
}

impl LabConfig {
    pub fn new(tandem: PathBuf, cuts: u32) -> LabConfig {
        LabConfig {
            tandem,
            cuts,
            seed: 0x5eed_c0de,
            channels: 4,
            flush_interval_s: 1,
            segment_duration_s: 2,
            max_bytes_per_channel: 1 << 20,
            import_every: 5,
            wait_ms: (200, 3000),
            capacity: 2 << 30,
            camera_bitrate_kbps: 800,
            work_dir: None,
            progress: false,
        }
    }

    /// The promise: flush interval plus one frame at 25 fps.
    pub fn promise_s(&self) -> f64 {
        f64::from(self.flush_interval_s) + 0.04
    }
}

#[derive(Debug)]
pub enum LabError {
    /// FUSE cannot be mounted here (not root, no /dev/fuse).
    Unavailable(String),
    Io(String, std::io::Error),
    /// The NVR or a tandem command did not do what the lab needs to go on.
    Nvr(String),
}

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabError::Unavailable(w) => write!(f, "the lazy filesystem cannot be mounted here: {w}"),
            LabError::Io(what, e) => write!(f, "{what}: {e}"),
            LabError::Nvr(w) => f.write_str(w),
        }
    }
}

impl std::error::Error for LabError {}

/// One cut and what the restart after it found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CutReport {
    pub n: u32,
    /// What the cut aimed at: `random`, `rollover`, `retention` or `import`.
    pub aim: String,
    /// The cut instant (RFC 3339) and the wait before it after recording resumed.
    pub cut_at: String,
    pub wait_ms: u64,
    /// Footage lost before the cut, seconds: the worst channel.
    pub lost_s: f64,
    pub lost_s_by_channel: Vec<f64>,
    pub repaired: bool,
    pub repair_summary: String,
    pub consistent: bool,
    /// Why not, or "" when consistent.
    pub reason: String,
    /// The phases the last durability operations before the cut belong to.
    pub phases: Vec<String>,
    /// Whether an import request was in flight at the cut.
    pub import_in_flight: bool,
    pub trace_tail: Vec<OpRecord>,
    /// The restarted NVR's start until all channels recorded again, seconds.
    pub restart_s: f64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub cuts: u32,
    pub inconsistent: u32,
    /// Cuts that lost more than the promise (flush interval plus a frame).
    pub over_promise: u32,
    pub max_lost_s: f64,
    pub mean_lost_s: f64,
    pub flush_interval_s: u32,
    pub promise_s: f64,
    pub seed: u64,
    /// Cuts whose trace tail fell in each phase.
    pub in_rollover: u32,
    pub in_retention: u32,
    pub in_import: u32,
    pub seconds: f64,
    pub gap_fill_merges: String,
    /// Set when the lab could not go on (the NVR did not come back).
    pub stopped_early: Option<String>,
    /// The kept work directory (logs) when a cut failed.
    pub kept: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct LabReport {
    pub cuts: Vec<CutReport>,
    pub summary: Summary,
}

/// The lab's work directory: the mount point, configuration and logs.
pub(crate) struct Work {
    pub dir: PathBuf,
    pub mnt: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Work {
    pub fn new(given: Option<&Path>, name: &str) -> Result<Work, LabError> {
        let dir = match given {
            Some(d) => d.to_path_buf(),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                std::env::temp_dir().join(format!("{name}-{}-{nanos}", std::process::id()))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| LabError::Io(format!("creating {}", dir.display()), e))?;
        let mnt = dir.join("mnt");
        Ok(Work {
            data: mnt.join("data"),
            config: dir.join("nvr.toml"),
            mnt,
            dir,
        })
    }
}

impl Work {
    /// Creates the storage directory on the fresh mount and makes its name
    /// durable, as an installer does before the NVR first runs; everything
    /// under it is the store's to make durable.
    pub fn install(&self) -> Result<(), LabError> {
        std::fs::create_dir_all(&self.data)
            .and_then(|_| std::fs::File::open(&self.mnt)?.sync_all())
            .map_err(|e| LabError::Io(format!("creating {} durably", self.data.display()), e))
    }
}

/// The NVR's configuration: the store on the mount, short segments, a 1-MiB
/// (the least allowed) retention cap per channel, the peer token for imports.
pub(crate) fn nvr_config(
    data: &Path,
    port: u16,
    urls: &[String],
    flush_s: u32,
    segment_s: u32,
    max_bytes: u64,
    import_channel: Option<u32>,
) -> String {
    let mut s = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\nsegment_duration = \"{segment_s}s\"\nflush_interval = \"{flush_s}s\"\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n[failover]\npeer_token = \"{PEER_TOKEN}\"\n",
        data.display()
    );
    for (i, u) in urls.iter().enumerate() {
        s.push_str(&format!("[[network_camera]]\nname = \"c{}\"\nurl = \"{u}\"\n", i + 1));
    }
    for i in 1..=urls.len() {
        s.push_str(&format!(
            "[[channel]]\nnumber = {i}\ncamera = \"c{i}\"\nretention = {{ max_bytes = {max_bytes} }}\n"
        ));
    }
    if let Some(c) = import_channel {
        s.push_str(&format!(
            "[[channel]]\nnumber = {c}\nretention = {{ max_bytes = {max_bytes} }}\n"
        ));
    }
    s
}

/// A running NVR and the port of its API.
pub(crate) struct Nvr {
    pub proc: Proc,
    pub started: Instant,
    /// Per channel (in the order asked), a wall-clock instant before this
    /// run's first frame arrived: the poll before the one that saw it.
    pub since_us: Vec<i64>,
}

/// Starts the NVR and waits until every channel in `channels` has written a
/// frame in this run; the error carries the log's tail.
pub(crate) fn start_recording(
    tandem: &Path,
    work: &Work,
    port: u16,
    token: &str,
    channels: &[u32],
    log: &Path,
) -> Result<Nvr, String> {
    let started = Instant::now();
    let mut since_us = vec![now_us(); channels.len()];
    let mut seen = vec![false; channels.len()];
    let mut proc = procs::serve(tandem, &work.config, log).map_err(|e| e.to_string())?;
    let ok = procs::wait_until(Duration::from_secs(30), || {
        if !proc.alive() {
            return true;
        }
        let polled = now_us();
        let Some(v) = procs::frames_written(port, token) else {
            return false;
        };
        for (i, c) in channels.iter().enumerate() {
            if v.iter().any(|&(n, f)| n == u64::from(*c) && f > 0) {
                seen[i] = true;
            } else if !seen[i] {
                since_us[i] = polled;
            }
        }
        seen.iter().all(|s| *s)
    });
    if !ok || !proc.alive() {
        let log = proc.log_text();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "the NVR did not record on every channel within 30 s (alive: {}): {}",
            proc.alive(),
            tail.join("\n")
        ));
    }
    Ok(Nvr {
        proc,
        started,
        since_us,
    })
}

/// Cuts, kills the NVR, and remounts the surviving state. `arm` aims the cut
/// at an operation; it falls back to a cut by time after `patience`.
/// Returns the cut instant, whether the aimed trigger fired, and whether
/// `busy` was set when the power went (an import request in flight).
pub(crate) fn cut_and_remount(
    fs: &LazyFs,
    mount: &mut Option<crate::Mount>,
    mnt: &Path,
    nvr: &mut Nvr,
    arm: Option<(Match, u64, When)>,
    patience: Duration,
    busy: Option<&AtomicBool>,
) -> Result<(i64, bool, bool), LabError> {
    let mut fired = true;
    if let Some((m, nth, when)) = arm {
        fs.cut_at(m, nth, when);
        fired = procs::wait_until(patience, || fs.cut_time_us().is_some());
        if !fired {
            fs.cut();
        }
    } else {
        fs.cut();
    }
    let cut_us = fs.cut_time_us().unwrap_or_else(now_us);
    // Sampled before the kill, which ends any request in flight.
    let was_busy = busy.is_some_and(|b| b.load(Ordering::SeqCst));
    nvr.proc.kill();
    drop(mount.take());
    fs.power_on();
    *mount = Some(
        fs.mount(mnt)
            .map_err(|e| LabError::Io(format!("mounting at {}", mnt.display()), e))?,
    );
    Ok((cut_us, fired, was_busy))
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// How far before a cut the checks look, seconds: enough for any loss
/// worth measuring, and well inside what retention keeps (about 40 s per
/// channel at the lab's bitrate), so no file is deleted under an audit.
const WINDOW_S: f64 = 20.0;

/// Checks the store after a restart: the restart's log (repair, alarms),
/// `tandem audit` of each channel around the cut (damaged files, checksums,
/// duplicates, footage lost before the cut) and `tandem verify` of the
/// segments' hashes. Returns (lost per channel, repair, problems).
pub(crate) fn check_after(
    tandem: &Path,
    data: &Path,
    log: &Path,
    cut_us: i64,
    channels: &[u32],
    since_us: &[i64],
    extra_channels: &[u32],
) -> (Vec<f64>, RepairSeen, Vec<String>) {
    // Repair runs before recording resumes; the check of finished segments
    // runs beside it and says when it is done.
    let mut seen = RepairSeen::default();
    procs::wait_until(Duration::from_secs(10), || {
        seen = repair_from_log(&std::fs::read_to_string(log).unwrap_or_default());
        seen.check_done
    });
    let mut problems: Vec<String> = seen.alarms.iter().map(|a| format!("NVR log: {a}")).collect();
    if !seen.check_done {
        problems.push("the check of finished segments did not finish within 10 s".into());
    }
    let from = format_rfc3339_us(cut_us - (WINDOW_S * 1e6) as i64);
    let d = data.to_string_lossy();
    let mut lost = Vec::new();
    for &ch in channels.iter().chain(extra_channels) {
        let c = ch.to_string();
        let args = ["audit", "--data", &d, "--channel", &c, "--start", &from];
        let a = match procs::run_tandem(tandem, &args, &[]) {
            Ok((true, out, _)) => serde_json::from_str::<serde_json::Value>(&out).ok(),
            Ok((false, _, err)) => {
                problems.push(format!("channel {ch}: audit failed: {}", err.trim()));
                None
            }
            Err(e) => {
                problems.push(format!("channel {ch}: {e}"));
                None
            }
        };
        let Some(a) = a else { continue };
        if let Some(d) = a["damaged_files"].as_array().filter(|d| !d.is_empty()) {
            problems.push(format!(
                "channel {ch}: damaged files {}",
                serde_json::Value::from(d.clone())
            ));
        }
        if !channels.contains(&ch) {
            continue;
        }
        if a["duplicates"].as_u64().unwrap_or(0) > 0 {
            problems.push(format!("channel {ch}: {} duplicate frames", a["duplicates"]));
        }
        let since = channels
            .iter()
            .position(|c| *c == ch)
            .and_then(|i| since_us.get(i))
            .copied()
            .unwrap_or(0);
        match lost_before_cut_s(&a, cut_us, since) {
            Ok(l) => lost.push(l),
            Err(e) => {
                problems.push(format!("channel {ch}: {e}"));
                lost.push(WINDOW_S);
            }
        }
    }
    match procs::run_tandem(tandem, &["verify", "--data", &d, "--start", &from], &[]) {
        Ok((true, _, _)) => {}
        Ok((false, out, err)) => problems.push(format!(
            "verify --data: {}",
            format!("{}{}", out.trim(), err.trim())
                .chars()
                .take(600)
                .collect::<String>()
        )),
        Err(e) => problems.push(e.to_string()),
    }
    (lost, seen, problems)
}

/// What cut `n` aims at, and the trigger that makes it land there.
fn aim(n: u32, import_every: u32, rng: &mut Rng) -> (&'static str, Option<(Match, u64, When)>) {
    let m = |op, p: &str| Match {
        op,
        path_contains: p.into(),
    };
    let when = if rng.next_u64() % 2 == 0 {
        When::Before
    } else {
        When::After
    };
    if import_every > 0 && n % import_every == 0 {
        return match (n / import_every) % 3 {
            0 => ("import", None),
            1 => ("import", Some((m(OpKind::Fsync, "import/"), 1, When::After))),
            _ => (
                "import",
                Some((m(OpKind::Fsync, "video/ch9/"), rng.range(1, 4), When::After)),
            ),
        };
    }
    match n % 10 {
        3 => ("rollover", Some((m(OpKind::Create, "video/ch"), 1, when))),
        8 => ("rollover", Some((m(OpKind::FsyncDir, "video/ch"), 1, When::After))),
        7 => ("retention", Some((m(OpKind::Unlink, "video/ch"), 1, when))),
        _ => ("random", None),
    }
}

/// Runs the lab: `cfg.cuts` power cuts under a recording NVR.
pub fn run(cfg: &LabConfig) -> Result<LabReport, LabError> {
    crate::available().map_err(LabError::Unavailable)?;
    let t0 = Instant::now();
    let work = Work::new(cfg.work_dir.as_deref(), "powercut-lab")?;
    let fs = LazyFs::new(cfg.capacity);
    let mut mount = Some(
        fs.mount(&work.mnt)
            .map_err(|e| LabError::Io(format!("mounting at {}", work.mnt.display()), e))?,
    );
    work.install()?;
    let gop = "10".to_string();
    let br = cfg.camera_bitrate_kbps.to_string();
    let cam_args = [
        "--fps",
        "25",
        "--gop",
        &gop,
        "--width",
        "320",
        "--height",
        "180",
        "--bitrate-kbps",
        &br,
    ];
    let (_cams, urls) = procs::sim_cameras(&cfg.tandem, &work.dir, cfg.channels, &cam_args)?;
    let port = procs::free_port()?;
    let cfg_text = nvr_config(
        &work.data,
        port,
        &urls,
        cfg.flush_interval_s,
        cfg.segment_duration_s,
        cfg.max_bytes_per_channel,
        (cfg.import_every > 0).then_some(IMPORT_CHANNEL),
    );
    std::fs::write(&work.config, cfg_text).map_err(|e| LabError::Io("writing the NVR's configuration".into(), e))?;
    let token = procs::provision(&cfg.tandem, &work.config)?;
    let channels: Vec<u32> = (1..=cfg.channels).collect();
    let extra: Vec<u32> = if cfg.import_every > 0 {
        vec![IMPORT_CHANNEL]
    } else {
        Vec::new()
    };
    let log0 = work.dir.join("nvr-0.log");
    let mut nvr = start_recording(&cfg.tandem, &work, port, &token, &channels, &log0).map_err(LabError::Nvr)?;

    let mut rng = Rng::new(cfg.seed);
    let mut cuts = Vec::new();
    let mut summary = Summary {
        flush_interval_s: cfg.flush_interval_s,
        promise_s: cfg.promise_s(),
        seed: cfg.seed,
        gap_fill_merges: "not exercised: gap-fill merges do not exist yet (issue 11)".into(),
        ..Summary::default()
    };
    let mut failed = false;
    for n in 1..=cfg.cuts {
        let wait = rng.range(cfg.wait_ms.0, cfg.wait_ms.1 + 1);
        let (what, arm) = aim(n, cfg.import_every, &mut rng);
        let importer = (what == "import").then(|| Importer::start(port, work.data.clone(), Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(wait));
        let in_flight = importer.as_ref().map(|i| i.in_flight.clone());
        if let (Some(f), None) = (&in_flight, &arm) {
            // A cut by time during an import: when the next upload is under
            // way (one per rollover), a few milliseconds into it.
            let start = Instant::now();
            while !f.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(rng.range(0, 5)));
        }
        let since_us = nvr.since_us.clone();
        let (cut_us, fired, import_in_flight) = cut_and_remount(
            &fs,
            &mut mount,
            &work.mnt,
            &mut nvr,
            arm,
            Duration::from_secs(8),
            in_flight.as_deref(),
        )?;
        if let Some(i) = importer {
            i.finish();
        }
        let trace = fs.trace();
        let ph = phases(&trace, "video/ch9/", 3);
        let mut phase_names: Vec<String> = ph.iter().map(|p| p.to_string()).collect();
        if import_in_flight && !phase_names.iter().any(|p| p == "import") {
            phase_names.push("import".into());
        }
        let tail = trace[trace.len().saturating_sub(8)..].to_vec();
        let log = work.dir.join(format!("nvr-{n}.log"));
        let mut r = CutReport {
            n,
            aim: if fired {
                what.into()
            } else {
                format!("{what} (trigger did not fire; cut by time)")
            },
            cut_at: format_rfc3339_us(cut_us),
            wait_ms: wait,
            lost_s: 0.0,
            lost_s_by_channel: Vec::new(),
            repaired: false,
            repair_summary: String::new(),
            consistent: false,
            reason: String::new(),
            phases: phase_names,
            import_in_flight,
            trace_tail: tail,
            restart_s: 0.0,
        };
        match start_recording(&cfg.tandem, &work, port, &token, &channels, &log) {
            Ok(next) => {
                r.restart_s = next.started.elapsed().as_secs_f64();
                nvr = next;
                let (lost, seen, problems) =
                    check_after(&cfg.tandem, &work.data, &log, cut_us, &channels, &since_us, &extra);
                r.lost_s = lost.iter().cloned().fold(0.0, f64::max);
                r.lost_s_by_channel = lost.iter().map(|l| (l * 1000.0).round() / 1000.0).collect();
                r.repaired = seen.repaired;
                r.repair_summary = seen.summary;
                r.consistent = problems.is_empty();
                r.reason = problems.join("; ");
            }
            Err(e) => {
                r.reason = e.clone();
                summary.stopped_early = Some(format!("cut {n}: {e}"));
            }
        }
        r.lost_s = (r.lost_s * 1000.0).round() / 1000.0;
        failed |= !r.consistent || r.lost_s > cfg.promise_s();
        if cfg.progress {
            eprintln!("{}", row(&r));
        }
        let stop = summary.stopped_early.is_some();
        cuts.push(r);
        if stop {
            break;
        }
    }
    nvr.proc.kill();
    drop(mount.take());
    summarize(&mut summary, &cuts, cfg.promise_s());
    summary.seconds = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    if failed {
        summary.kept = Some(work.dir.display().to_string());
    } else if cfg.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work.dir);
    }
    Ok(LabReport { cuts, summary })
}

fn summarize(s: &mut Summary, cuts: &[CutReport], promise: f64) {
    let lost: Vec<f64> = cuts.iter().map(|c| c.lost_s).collect();
    let (mean, max) = judge::mean_max(&lost);
    s.cuts = cuts.len() as u32;
    s.inconsistent = cuts.iter().filter(|c| !c.consistent).count() as u32;
    s.over_promise = cuts.iter().filter(|c| c.lost_s > promise).count() as u32;
    s.mean_lost_s = (mean * 1000.0).round() / 1000.0;
    s.max_lost_s = max;
    let count = |p: &str| cuts.iter().filter(|c| c.phases.iter().any(|x| x == p)).count() as u32;
    s.in_rollover = count("rollover");
    s.in_retention = count("retention");
    s.in_import = count("import");
}

/// The header of the lab's table.
pub const TABLE_HEADER: &str = "   n  aim        wait_ms  lost_s  restart_s  repaired  consistent  phases";

/// One line of the lab's table.
pub fn row(c: &CutReport) -> String {
    let mut s = format!(
        "{:>4}  {:<9}  {:>7}  {:>6.3}  {:>9.2}  {:<8}  {:<10}  {}",
        c.n,
        c.aim.split(' ').next().unwrap_or(""),
        c.wait_ms,
        c.lost_s,
        c.restart_s,
        c.repaired,
        c.consistent,
        c.phases.join(",")
    );
    if !c.consistent {
        let why: String = c.reason.chars().take(400).collect();
        s.push_str(&format!(
            "\n      why: {why}{}",
            if why.len() < c.reason.len() { " …" } else { "" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aims_cover_every_phase_and_imports_every_fifth() {
        let mut rng = Rng::new(1);
        let aims: Vec<&str> = (1..=20).map(|n| aim(n, 5, &mut rng).0).collect();
        for a in ["random", "rollover", "retention", "import"] {
            assert!(aims.contains(&a), "{aims:?}");
        }
        assert_eq!(aims.iter().filter(|a| **a == "import").count(), 4);
        let mut rng = Rng::new(1);
        assert!((1..=20).all(|n| aim(n, 0, &mut rng).0 != "import"));
    }

    #[test]
    fn the_config_puts_the_store_on_the_mount_with_small_caps() {
        let c = nvr_config(
            Path::new("/m/data"),
            8080,
            &["rtsp://a".into(), "rtsp://b".into()],
            1,
            2,
            1 << 20,
            Some(9),
        );
        assert!(c.contains("dir = \"/m/data\""));
        assert!(c.contains("flush_interval = \"1s\"") && c.contains("segment_duration = \"2s\""));
        assert_eq!(c.matches("max_bytes = 1048576").count(), 3);
        assert!(c.contains("number = 9\nretention"));
        assert!(c.contains("peer_token"));
    }

    #[test]
    fn the_summary_counts_what_failed() {
        let cut = |n, lost: f64, ok: bool, ph: &[&str]| CutReport {
            n,
            aim: "random".into(),
            cut_at: String::new(),
            wait_ms: 0,
            lost_s: lost,
            lost_s_by_channel: vec![lost],
            repaired: true,
            repair_summary: String::new(),
            consistent: ok,
            reason: String::new(),
            phases: ph.iter().map(|s| s.to_string()).collect(),
            import_in_flight: false,
            trace_tail: Vec::new(),
            restart_s: 1.0,
        };
        let mut s = Summary::default();
        let cuts = [
            cut(1, 0.5, true, &["rollover"]),
            cut(2, 1.5, true, &["import", "retention"]),
            cut(3, 0.1, false, &[]),
        ];
        summarize(&mut s, &cuts, 1.04);
        assert_eq!((s.cuts, s.inconsistent, s.over_promise), (3, 1, 1));
        assert_eq!((s.max_lost_s, s.mean_lost_s), (1.5, 0.7));
        assert_eq!((s.in_rollover, s.in_retention, s.in_import), (1, 1, 1));
        assert!(row(&cuts[2]).contains("why:"));
    }
}
