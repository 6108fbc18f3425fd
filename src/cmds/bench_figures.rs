//! What `bench ingest` reads from the recording NVR's own API: the cost of
//! a `/metrics` scrape, the writer's durability counters and histograms,
//! retention's deletions and ingest's drops, each as a difference over the
//! measured window; and what a recorder process, and the kernel's threads on
//! its behalf, spent in CPU and memory (`/proc`). Must never count anything the
//! NVR did not report, nor charge a recorder with another process's work.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What a Prometheus scrape of the recording NVR costs, as its client sees
/// it (issue 14: under 5 ms at 256 channels).
#[derive(serde::Serialize)]
pub(super) struct Scrape {
    pub(super) scrapes: usize,
    pub(super) p50_ms: f64,
    pub(super) max_ms: f64,
    pub(super) bytes: usize,
}

impl Scrape {
    pub(super) fn measure(base: &str, token: &str, n: usize) -> Result<Scrape> {
        let auth = format!("Bearer {token}");
        let mut ms = Vec::with_capacity(n);
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let r = tandem::httpc::request_with_timeout(
                "GET",
                &format!("{base}/metrics"),
                &[("Authorization", &auth)],
                b"",
                Duration::from_secs(10),
            )?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            if r.status != 200 {
                bail!("GET /metrics answered {}", r.status);
            }
            bytes = r.body.len();
            std::thread::sleep(Duration::from_millis(100));
        }
        ms.sort_by(f64::total_cmp);
        Ok(Scrape {
            scrapes: n,
            p50_ms: ms[n / 2],
            max_ms: ms[n - 1],
            bytes,
        })
    }
}

/// What retention deleted and what was lost by the NVR's own counting,
/// over the whole measured window (the audit sees only what the cap kept).
#[derive(serde::Serialize)]
pub(super) struct RetentionFigures {
    pub(super) segments_deleted: u64,
    pub(super) bytes_deleted: u64,
    pub(super) writer_frames_lost: u64,
    pub(super) ingest_frames_dropped: u64,
}

/// Frames all channels' ingest dropped because the write buffer was full.
pub(super) fn ingest_dropped(base: &str, token: &str) -> Result<u64> {
    let r = tandem::httpc::request_with_timeout(
        "GET",
        &format!("{base}/api/v1/channels"),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
        Duration::from_secs(10),
    )?;
    let v = r.json()?;
    let channels = v.as_array().context("GET /api/v1/channels is not a list")?;
    Ok(channels
        .iter()
        .map(|c| c["ingest"]["dropped_frames"].as_u64().unwrap_or(0))
        .sum())
}

/// The writer's counters read from `GET /api/v1/store`.
pub(super) struct WriterFigures {
    pub(super) fsyncs: u64,
    pub(super) fsync_bytes: u64,
    pub(super) frames_lost: u64,
    pub(super) retention_segments: u64,
    pub(super) retention_bytes: u64,
    pub(super) arrival: tandem::store::health::Histogram,
    pub(super) capture: tandem::store::health::Histogram,
    /// How long each flush round's fdatasyncs took.
    pub(super) flush: tandem::store::health::Histogram,
    /// How long the writer's index commits took (absent before they were timed).
    pub(super) commit: Option<tandem::store::health::Histogram>,
    /// The index log's checkpoints on their own thread (absent before it).
    pub(super) checkpoint: Option<tandem::store::health::Histogram>,
}

/// `GET /api/v1/store` as JSON (the writer's counters and histograms).
pub(super) fn store_status(base: &str, token: &str) -> Result<serde_json::Value> {
    let r = tandem::httpc::request_with_timeout(
        "GET",
        &format!("{base}/api/v1/store"),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
        Duration::from_secs(10),
    )?;
    Ok(r.json()?)
}

pub(super) fn writer_figures(base: &str, token: &str) -> Result<WriterFigures> {
    use tandem::store::health::Histogram;
    let v = store_status(base, token)?;
    let w = &v["writer"];
    Ok(WriterFigures {
        fsyncs: w["fsyncs"].as_u64().context("no writer.fsyncs in /api/v1/store")?,
        fsync_bytes: w["fsync_bytes"]
            .as_u64()
            .context("no writer.fsync_bytes in /api/v1/store")?,
        frames_lost: w["frames_lost"]
            .as_u64()
            .context("no writer.frames_lost in /api/v1/store")?,
        retention_segments: w["retention_segments"]
            .as_u64()
            .context("no writer.retention_segments in /api/v1/store")?,
        retention_bytes: w["retention_bytes"]
            .as_u64()
            .context("no writer.retention_bytes in /api/v1/store")?,
        arrival: Histogram::from_json(&w["arrival_durable"]).context("no writer.arrival_durable in /api/v1/store")?,
        capture: Histogram::from_json(&w["durable"]).context("no writer.durable in /api/v1/store")?,
        flush: Histogram::from_json(&w["flush"]).context("no writer.flush in /api/v1/store")?,
        commit: Histogram::from_json(&w["commit"]),
        checkpoint: Histogram::from_json(&w["checkpoint"]),
    })
}

/// The cost of durability over the measured window.
#[derive(serde::Serialize)]
pub(super) struct Durability {
    pub(super) fsyncs_per_second: f64,
    pub(super) bytes_per_fsync: f64,
    /// Upper bound of the p99's histogram bucket (50-ms steps near a second).
    pub(super) arrival_to_durable_p99_ms: Option<u32>,
    pub(super) capture_to_durable_p99_ms: Option<u32>,
    /// The flush rounds' fdatasyncs (bucket upper bound; max exact).
    pub(super) flush_round_p99_ms: Option<u32>,
    pub(super) flush_round_max_ms: u32,
    /// The writer's index commits (not timed by builds before flush rounds).
    pub(super) commit_p99_ms: Option<u32>,
    pub(super) commit_max_ms: Option<u32>,
    /// The index log's checkpoints on their own thread (builds before it: none).
    pub(super) checkpoint_p99_ms: Option<u32>,
    pub(super) checkpoint_max_ms: Option<u32>,
}

impl Durability {
    pub(super) fn between(before: &WriterFigures, after: &WriterFigures, seconds: f64) -> Durability {
        let fsyncs = after.fsyncs.saturating_sub(before.fsyncs);
        let bytes = after.fsync_bytes.saturating_sub(before.fsync_bytes);
        let since = |a: &Option<tandem::store::health::Histogram>, b: &Option<tandem::store::health::Histogram>| {
            a.as_ref().zip(b.as_ref()).map(|(a, b)| a.since(b))
        };
        let commits = since(&after.commit, &before.commit);
        let checkpoints = since(&after.checkpoint, &before.checkpoint);
        Durability {
            fsyncs_per_second: fsyncs as f64 / seconds.max(1e-3),
            bytes_per_fsync: if fsyncs == 0 { 0.0 } else { bytes as f64 / fsyncs as f64 },
            arrival_to_durable_p99_ms: after.arrival.since(&before.arrival).quantile_ms(0.99),
            capture_to_durable_p99_ms: after.capture.since(&before.capture).quantile_ms(0.99),
            flush_round_p99_ms: after.flush.since(&before.flush).quantile_ms(0.99),
            flush_round_max_ms: after.flush.since(&before.flush).max_ms(),
            commit_p99_ms: commits.as_ref().and_then(|c| c.quantile_ms(0.99)),
            commit_max_ms: commits.map(|c| c.max_ms()),
            checkpoint_p99_ms: checkpoints.as_ref().and_then(|c| c.quantile_ms(0.99)),
            checkpoint_max_ms: checkpoints.map(|c| c.max_ms()),
        }
    }
}

/// Kernel threads that do a recorder's storage work: workqueues (the
/// flusher's writeback, block completions), the ext4 journal, reclaim.
/// Others, like DAMON's `kdamond`, run on their own schedule, and their
/// noise would drown a figure of a few hundredths of a core.
const STORAGE_THREADS: [&str; 3] = ["kworker", "jbd2", "kswapd"];

/// The CPU seconds each storage kernel thread has used so far, by pid
/// (`/proc/PID/stat` flags with `PF_KTHREAD`, names in `STORAGE_THREADS`).
fn kernel_threads() -> HashMap<u32, f64> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A thread may exit between the listing and the read: skip it.
        let Some(stat) = ProcStat::read(pid) else {
            continue;
        };
        if !STORAGE_THREADS.iter().any(|p| stat.comm.starts_with(p)) || stat.flags() & PF_KTHREAD == 0 {
            continue;
        }
        out.insert(pid, stat.cpu_seconds());
    }
    out
}

/// What the kernel's own threads did for a recorder over a window.
/// `/proc/PID` charges a process only with what runs in its context:
/// Tandem's `fdatasync`s write its page cache back on its own threads, while
/// ffmpeg, which never syncs, has the kernel's flusher threads do the same
/// work for it, charged to no one. So each side is also measured with the
/// CPU of the storage kernel threads over its window, less their idle rate
/// measured before anything starts. Threads that exit inside the window are
/// missed; threads born in it count whole.
pub(super) struct KernelThreads {
    at_start: HashMap<u32, f64>,
    at: Instant,
}

impl KernelThreads {
    /// The kernel threads' CPU seconds per second on the idle machine.
    pub(super) fn background(span: Duration) -> f64 {
        let k = KernelThreads::start();
        std::thread::sleep(span);
        k.seconds(0.0) / span.as_secs_f64()
    }

    pub(super) fn start() -> KernelThreads {
        KernelThreads {
            at_start: kernel_threads(),
            at: Instant::now(),
        }
    }

    /// Kernel threads' CPU seconds since `start`, less `background_per_s`.
    pub(super) fn seconds(&self, background_per_s: f64) -> f64 {
        let used: f64 = kernel_threads()
            .iter()
            .map(|(pid, &now)| now - self.at_start.get(pid).copied().unwrap_or(0.0))
            .filter(|d| *d > 0.0)
            .sum();
        (used - background_per_s * self.at.elapsed().as_secs_f64()).max(0.0)
    }
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// One `/proc/PID/stat` line: the command name and the fields after it.
struct ProcStat {
    comm: String,
    /// Fields from the state on (field 3 of proc(5) is `fields[0]`).
    fields: Vec<u64>,
}

impl ProcStat {
    fn read(pid: u32) -> Option<ProcStat> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    fn parse(stat: &str) -> Option<ProcStat> {
        // The name may hold spaces and parentheses: it ends at the last ')'.
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        // The state is a letter, read as 0: it only keeps the numbering.
        let fields = stat
            .get(close + 2..)?
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>();
        Some(ProcStat {
            comm: stat[open + 1..close].to_owned(),
            fields,
        })
    }

    fn field(&self, proc5_number: usize) -> u64 {
        self.fields.get(proc5_number - 3).copied().unwrap_or(0)
    }

    fn flags(&self) -> u64 {
        self.field(9)
    }

    /// utime + stime (fields 14 and 15), seconds.
    fn cpu_seconds(&self) -> f64 {
        (self.field(14) + self.field(15)) as f64 / ticks_per_sec()
    }
}

/// User + system CPU seconds of a process so far.
pub(super) fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(ProcStat::read(pid)
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?
        .cpu_seconds())
}

/// `ffmpeg` reading `url` as the peer in every benchmark does: RTSP over
/// TCP, quiet, no console. The caller adds the output side.
pub(super) fn ffmpeg_reading(url: &str) -> std::process::Command {
    let mut c = std::process::Command::new("ffmpeg");
    c.args([
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-i",
        url,
    ]);
    c
}

/// User and system CPU seconds from `getrusage`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rusage {
    pub user_s: f64,
    pub sys_s: f64,
}

impl Rusage {
    fn of(who: libc::c_int) -> Rusage {
        // SAFETY: getrusage fills the struct we pass; a zeroed rusage is valid.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut r) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        Rusage {
            user_s: t(r.ru_utime),
            sys_s: t(r.ru_stime),
        }
    }

    /// The calling thread's.
    pub(super) fn thread() -> Rusage {
        Self::of(libc::RUSAGE_THREAD)
    }

    /// Every child process waited for so far.
    pub(super) fn children() -> Rusage {
        Self::of(libc::RUSAGE_CHILDREN)
    }

    pub(super) fn since(&self, earlier: &Rusage) -> Rusage {
        Rusage {
            user_s: self.user_s - earlier.user_s,
            sys_s: self.sys_s - earlier.sys_s,
        }
    }

    pub(super) fn total(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Peak resident memory (VmHWM) of a process, bytes.
pub(super) fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
    Ok(line.split_whitespace().nth(1).context("bad VmHWM")?.parse::<u64>()? * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_whose_name_holds_spaces_and_parentheses() {
        // proc(5): pid (comm) state ppid ... flags(9) ... utime(14) stime(15)
        let line = "42 (kworker/0:1 (x) y) I 2 0 0 0 -1 2097248 0 0 0 0 300 200 0 0 20 0 1 0";
        let s = ProcStat::parse(line).unwrap();
        assert_eq!(s.comm, "kworker/0:1 (x) y");
        assert_eq!(s.flags(), 2_097_248);
        assert_eq!(s.flags() & 0x0020_0000, 0x0020_0000, "PF_KTHREAD");
        assert!((s.cpu_seconds() - 500.0 / ticks_per_sec()).abs() < 1e-9);
        assert!(ProcStat::parse("no parentheses").is_none());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(std::process::id()).unwrap() > 0.0);
    }
}
