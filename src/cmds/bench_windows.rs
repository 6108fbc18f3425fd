//! `bench ingest`'s measured windows: what one recorder used and kept over a
//! stretch of wall-clock time (its CPU, the kernel's storage threads' CPU,
//! its peak memory, the frames found and lost), and the sum of a run's
//! windows per recorder.
//!
//! A run alternates its windows, Tandem then ffmpeg, as many rounds as asked
//! (`--rounds`). Both recorders' figures move with the machine: the same
//! build has measured 0.059 and 0.074 CPU-s per stream-minute an hour apart
//! here. One window each, taken one after the other, put any drift between
//! them wholly on one side of the ratio; alternated windows put it on both.
//!
//! Owns each recorder's windows (start, warm-up, measure, stop, audit) and
//! the arithmetic of windows into a side; never the configuration Tandem is
//! given or the table (`bench.rs`). Only one recorder runs in any window.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tandem::lab::Procs;
use tandem::time::Time90k;

use super::bench::{free_port, signal, wait_connected, write_config_retained, IngestArgs};
use super::bench_figures::{cpu_seconds, ffmpeg_reading, peak_rss, KernelThreads};

/// What one recorder's window measured, before normalising per stream.
pub(super) struct Measured {
    /// The window's nominal length, seconds (CPU is normalised by it).
    pub secs: f64,
    pub cpu: f64,
    pub kernel: f64,
    pub rss: u64,
    pub found: u64,
    pub lost: u64,
    /// The stretch of wall-clock time the audit read.
    pub audited: (Time90k, Time90k),
}

/// The CPU a recorder and the kernel's storage threads used over one window.
pub(super) struct Span {
    pub secs: f64,
    pub cpu: f64,
    pub kernel: f64,
    pub t0: Time90k,
    pub t1: Time90k,
}

/// Sleeps through a window of `secs`, reading `cpu` (the recorder's
/// processes, CPU-s so far) and the kernel threads at either end.
pub(super) fn measure(secs: Duration, background: f64, cpu: impl Fn() -> Result<f64>) -> Result<Span> {
    let c0 = cpu()?;
    let k0 = KernelThreads::start();
    let t0 = Time90k::from_system(std::time::SystemTime::now());
    std::thread::sleep(secs);
    let c1 = cpu()?;
    let kernel = k0.seconds(background);
    let t1 = Time90k::from_system(std::time::SystemTime::now());
    Ok(Span {
        secs: secs.as_secs_f64(),
        cpu: c1 - c0,
        kernel,
        t0,
        t1,
    })
}

impl Measured {
    /// A window's figures: its span, the recorder's peak memory, and what
    /// the audit of `audited` found and lost.
    pub(super) fn of(span: &Span, rss: u64, (audited, found, lost): ((Time90k, Time90k), u64, u64)) -> Measured {
        Measured {
            secs: span.secs,
            cpu: span.cpu,
            kernel: span.kernel,
            rss,
            found,
            lost,
            audited,
        }
    }
}

/// One recorder's figures over all of its windows.
#[derive(serde::Serialize, Default, Clone)]
pub(super) struct Side {
    /// Measured windows summed here (one per round).
    pub windows: usize,
    pub cpu_seconds: f64,
    pub cpu_s_per_stream_minute: f64,
    pub cpu_percent_of_one_core: f64,
    /// The kernel threads' CPU over the windows, less their idle rate
    /// (`KernelThreads`): writeback the kernel did for the recorder.
    pub kernel_threads_cpu_seconds: f64,
    /// The recorder's CPU and the kernel threads' together.
    pub with_kernel_cpu_s_per_stream_minute: f64,
    /// The highest of the windows' peaks.
    pub peak_rss_bytes_per_stream: f64,
    pub peak_rss_bytes_total: u64,
    pub frames_expected: u64,
    pub frames_found: u64,
    pub frames_lost: u64,
}

/// Frames `streams` cameras at `fps` sent in an audited stretch, less the
/// half second the audit trims at each edge (a frame in flight there is not
/// a loss).
fn expected(audited: (Time90k, Time90k), streams: u32, fps: u32) -> u64 {
    let secs = tandem::time::secs_of(audited.1 - audited.0 - 90_000);
    (secs.max(0.0) * fps as f64) as u64 * streams as u64
}

/// Sums a recorder's windows into its side of the table.
pub(super) fn side(windows: &[Measured], streams: u32, fps: u32) -> Side {
    let secs: f64 = windows.iter().map(|m| m.secs).sum();
    let cpu: f64 = windows.iter().map(|m| m.cpu).sum();
    let kernel: f64 = windows.iter().map(|m| m.kernel).sum();
    let rss = windows.iter().map(|m| m.rss).max().unwrap_or(0);
    let stream_minutes = streams as f64 * secs / 60.0;
    Side {
        windows: windows.len(),
        cpu_seconds: cpu,
        cpu_s_per_stream_minute: cpu / stream_minutes,
        cpu_percent_of_one_core: cpu / secs * 100.0,
        kernel_threads_cpu_seconds: kernel,
        with_kernel_cpu_s_per_stream_minute: (cpu + kernel) / stream_minutes,
        peak_rss_bytes_per_stream: rss as f64 / streams as f64,
        peak_rss_bytes_total: rss,
        frames_expected: windows.iter().map(|m| expected(m.audited, streams, fps)).sum(),
        frames_found: windows.iter().map(|m| m.found).sum(),
        frames_lost: windows.iter().map(|m| m.lost).sum(),
    }
}

/// Tandem's CPU over ffmpeg's, window by window (the rounds' spread).
pub(super) fn ratios(tandem: &[Measured], ffmpeg: &[Measured]) -> Vec<f64> {
    tandem
        .iter()
        .zip(ffmpeg)
        .filter(|(_, f)| f.cpu > 0.0)
        .map(|(t, f)| (t.cpu / t.secs) / (f.cpu / f.secs))
        .collect()
}

/// One ffmpeg `-c copy` per camera, copying into one-minute mp4 segments in
/// `out` (which must not exist yet), measured for `secs` after a warm-up,
/// then stopped and audited by the stamps in the frames it kept.
pub(super) fn ffmpeg_window(
    urls: &[String],
    out: &Path,
    secs: Duration,
    warmup: Duration,
    background: f64,
) -> Result<Measured> {
    if out.exists() {
        bail!("{} exists", out.display());
    }
    std::fs::create_dir_all(out)?;
    let mut procs: Vec<Child> = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let c = ffmpeg_reading(u)
            .args([
                "-c",
                "copy",
                "-f",
                "segment",
                "-segment_time",
                "60",
                "-segment_format",
                "mp4",
                "-reset_timestamps",
                "1",
            ])
            .arg(out.join(format!("cam{i}-%03d.mp4")))
            .stdin(Stdio::null())
            .spawn()
            .context("running ffmpeg (Debian package ffmpeg)")?;
        procs.push(c);
    }
    let pids: Vec<u32> = procs.iter().map(|c| c.id()).collect();
    let mut ff = Procs(procs);
    std::thread::sleep(warmup);
    let span = measure(secs, background, || {
        Ok(pids.iter().map(|&p| cpu_seconds(p).unwrap_or(0.0)).sum())
    })?;
    let (t0, t1) = (span.t0, span.t1);
    let rss: u64 = pids.iter().map(|&p| peak_rss(p).unwrap_or(0)).sum();
    for c in &ff.0 {
        signal(c, libc::SIGINT); // ffmpeg finishes its mp4 on SIGINT
    }
    for c in &mut ff.0 {
        let _ = c.wait();
    }
    let (mut found, mut lost) = (0, 0);
    // The audit skips the edges, as `expected` does.
    let (w0, w1) = ((t0 + 45_000).as_unix_micros(), (t1 + -45_000).as_unix_micros());
    for i in 0..urls.len() {
        let mut stamps = Vec::new();
        for e in std::fs::read_dir(out)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("cam{i}-")) {
                stamps.extend(tandem::audit::stamps_mp4(&e.path()).unwrap_or_default());
            }
        }
        let window = stamps
            .into_iter()
            .filter(|s| s.is_some_and(|s| (w0..w1).contains(&s.capture_unix_micros)));
        let r = tandem::audit::audit_stamps(window);
        found += r.frames_found;
        lost += r.frames_lost;
    }
    // What was audited is all this window needs; the next round's files go
    // into a directory of their own.
    let _ = std::fs::remove_dir_all(out);
    Ok(Measured::of(&span, rss, ((t0, t1), found, lost)))
}

/// `tandem serve` on `config`, quiet.
pub(super) fn start_nvr(exe: &Path, config: &Path) -> Result<Child> {
    Ok(Command::new(exe)
        .args(["serve", "--config"])
        .arg(config)
        .env("TANDEM_LOG", "warn")
        .spawn()?)
}

/// SIGTERM, and waits for the NVR's orderly shutdown.
pub(super) fn stop_nvr(nvr: &mut Child) {
    signal(nvr, libc::SIGTERM);
    let _ = nvr.wait();
}

/// A later round's Tandem window: the NVR started again on the same store
/// (and on a fresh port: the last one may linger), connected and warmed up
/// for `warmup`, measured for `secs`, stopped and audited.
#[allow(clippy::too_many_arguments)]
pub(super) fn tandem_window(
    a: &IngestArgs,
    exe: &Path,
    data: &Path,
    urls: &[String],
    (retention, storage): (Option<&str>, &str),
    token: &str,
    (warmup, secs): (Duration, Duration),
    background: f64,
) -> Result<Measured> {
    let port = free_port()?;
    let config = write_config_retained(&a.dir, data, port, urls, "", retention, storage)?;
    let mut nvr = Procs(vec![start_nvr(exe, &config)?]);
    let pid = nvr.0[0].id();
    wait_connected(&format!("http://127.0.0.1:{port}"), token, a.streams)?;
    std::thread::sleep(warmup);
    let span = measure(secs, background, || cpu_seconds(pid))?;
    let rss = peak_rss(pid)?;
    stop_nvr(&mut nvr.0[0]);
    Ok(Measured::of(&span, rss, audit_tandem(a, data, (span.t0, span.t1))?))
}

/// The frames found and lost in Tandem's store over a window (as much of it
/// as `audit_window` reads), the edges skipped: a frame in flight at either
/// is not a loss. The NVR has stopped.
pub(super) fn audit_tandem(
    a: &IngestArgs,
    data: &Path,
    window: (Time90k, Time90k),
) -> Result<((Time90k, Time90k), u64, u64)> {
    let audited = audit_window(a, window)?;
    let reader = tandem::store::Reader::new(data.to_path_buf());
    let (mut found, mut lost) = (0, 0);
    for ch in 1..=a.streams {
        let r = tandem::audit::audit_store(&reader, ch, audited.0 + 45_000, audited.1 + -45_000)?;
        found += r.frames_found;
        lost += r.frames_lost;
    }
    Ok((audited, found, lost))
}

/// The stretch of the measured window the audit reads: all of it, or under
/// `--retain-mib` the newest footage the cap surely keeps (the cap less one
/// one-minute segment, which retention deletes whole, and 30 s of slack).
fn audit_window(a: &IngestArgs, (t0, t1): (Time90k, Time90k)) -> Result<(Time90k, Time90k)> {
    let Some(mib) = a.retain_mib else {
        return Ok((t0, t1));
    };
    let bytes_per_s = f64::from(a.camera.bitrate_kbps) * 1000.0 / 8.0;
    let kept_s = (mib << 20) as f64 / bytes_per_s - 90.0;
    if kept_s < 20.0 {
        bail!(
            "--retain-mib {mib} keeps about {:.0} s per channel at {} kbit/s; \
             the audit needs at least 110 s (one segment, slack and 20 s to audit)",
            kept_s + 90.0,
            a.camera.bitrate_kbps
        );
    }
    let start = Time90k(t0.0.max(t1.0 - (kept_s * 90_000.0) as i64));
    Ok((start, t1))
}

#[cfg(test)]
mod tests {
    use super::super::bench::CameraArgs;
    use super::*;

    fn window(secs: f64, cpu: f64, rss: u64, lost: u64, start_s: i64) -> Measured {
        let t0 = Time90k(start_s * 90_000);
        Measured {
            secs,
            cpu,
            kernel: cpu / 10.0,
            rss,
            found: 1000,
            lost,
            audited: (t0, t0 + (secs * 90_000.0) as i64),
        }
    }

    #[test]
    fn windows_sum_into_one_side() {
        let w = [window(10.0, 0.5, 100 << 20, 0, 0), window(10.0, 0.7, 120 << 20, 3, 100)];
        let s = side(&w, 64, 25);
        assert_eq!(s.windows, 2);
        assert!((s.cpu_seconds - 1.2).abs() < 1e-12);
        // 1.2 CPU-s over 64 streams × 20 s.
        assert!((s.cpu_s_per_stream_minute - 1.2 / (64.0 * 20.0 / 60.0)).abs() < 1e-12);
        assert!((s.cpu_percent_of_one_core - 6.0).abs() < 1e-9);
        assert!((s.with_kernel_cpu_s_per_stream_minute - 1.32 / (64.0 * 20.0 / 60.0)).abs() < 1e-12);
        assert_eq!(s.peak_rss_bytes_total, 120 << 20, "the highest peak, not the sum");
        // Each window less its trimmed second: 2 × 9 s × 25 fps × 64.
        assert_eq!(s.frames_expected, 2 * 9 * 25 * 64);
        assert_eq!((s.frames_found, s.frames_lost), (2000, 3));
    }

    #[test]
    fn the_ratio_is_taken_window_by_window() {
        let t = [window(10.0, 0.5, 0, 0, 0), window(10.0, 0.6, 0, 0, 40)];
        let f = [window(10.0, 2.5, 0, 0, 20), window(10.0, 0.0, 0, 0, 60)];
        assert_eq!(
            ratios(&t, &f),
            vec![0.2],
            "a window ffmpeg used no CPU in gives no ratio"
        );
        assert!(ratios(&t, &[]).is_empty());
    }

    #[test]
    fn an_audit_shorter_than_its_trim_expects_nothing() {
        let t0 = Time90k(0);
        assert_eq!(expected((t0, t0 + 45_000), 64, 25), 0);
    }

    fn args(retain_mib: Option<u64>) -> IngestArgs {
        IngestArgs {
            streams: 1,
            seconds: 600,
            camera: CameraArgs {
                width: 1920,
                height: 1080,
                fps: 25,
                bitrate_kbps: 4000,
            },
            dir: "d".into(),
            json: "j".into(),
            skip_ffmpeg: true,
            rounds: None,
            retain_mib,
            disk_load: None,
            preload_day: false,
            preload_minutes: None,
            nvr: None,
            write_buffer_mib: None,
        }
    }

    #[test]
    fn the_audit_reads_only_what_the_retention_cap_surely_keeps() {
        let (t0, t1) = (Time90k(0), Time90k(600 * 90_000));
        assert_eq!(audit_window(&args(None), (t0, t1)).unwrap(), (t0, t1));
        // 80 MiB at 500 kB/s is 167.8 s; less a segment and slack, 77.8 s.
        let (start, end) = audit_window(&args(Some(80)), (t0, t1)).unwrap();
        assert_eq!(end, t1);
        assert_eq!((t1.0 - start.0) / 90_000, 77);
        // A cap longer than the run audits all of it.
        assert_eq!(audit_window(&args(Some(1 << 20)), (t0, t1)).unwrap(), (t0, t1));
        // A cap that keeps less than a segment and the slack is refused, by name.
        let e = audit_window(&args(Some(40)), (t0, t1)).unwrap_err().to_string();
        assert!(e.contains("--retain-mib 40"), "{e}");
    }
}
