//! `tandem bench ingest`: N simulated cameras recorded by Tandem, then the same
//! streams recorded by one `ffmpeg -c copy -f segment` per camera, in the same
//! run on the same machine, in alternated windows (`bench_windows`). Prints a
//! table and writes JSON. Measures whole processes from /proc (CPU ticks,
//! peak resident memory) so neither side is helped by in-process
//! accounting. Tandem's side also reports the cost of durability from its
//! own counters (`GET /api/v1/store` before and after the measured window):
//! fdatasyncs per second, bytes per fdatasync, and the p99 time from a
//! frame's arrival to its being durable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tandem::lab::Procs;

use super::bench_figures::peak_rss;
pub(super) use super::bench_figures::{cpu_seconds, store_status};
use super::bench_figures::{ingest_dropped, writer_figures, Durability, KernelThreads, RetentionFigures, Scrape};
use super::bench_windows::{
    audit_tandem, ffmpeg_window, measure, ratios, side, start_nvr, stop_nvr, tandem_window, Measured,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand)]
enum Which {
    /// Recording CPU, memory and loss per stream: Tandem vs ffmpeg -c copy.
    Ingest(IngestArgs),
    /// Motion detection CPU per channel (vs ffmpeg decoding the same stream)
    /// and the latency from scripted motion to a stored event.
    Motion(super::bench_motion::MotionArgs),
    /// Recording under attack (trigger flood, slow connections, a large
    /// import) against the same NVR undisturbed: frames lost, writer p99.
    Attack(super::bench_attack::AttackArgs),
    /// What authentication costs: bearer-authenticated recordings vs the
    /// public health check (requests/s, p99), clip download MiB/s, login and
    /// Argon2id hash time.
    Auth(super::bench_auth::AuthArgs),
    /// Live view: CPU, memory and skipped frames per WebSocket viewer, time to
    /// the first picture and added latency, vs one ffmpeg -c copy per viewer.
    Live(super::bench_live::LiveArgs),
    /// Live apply on N recording channels where one changes camera: time to
    /// apply, frames lost on the others (must be 0), time until the changed
    /// channel records, vs a full stop/start of the NVR.
    Apply(super::bench_apply::ApplyArgs),
    /// Alert latency per transport (mail STARTTLS, MQTT TLS, HTTPS webhook,
    /// Twilio-style SMS), event stored → message received, p50 and max, and
    /// the snapshot's CPU per event.
    Alerts(super::bench_alerts::AlertsArgs),
    /// A year of index (64 channels of minute segments, per-frame entries,
    /// generated into SQLite): size on disk, recordings for a day and a
    /// year, a one-hour clip's moov, start-up, retention of a day.
    Index(super::bench_index::IndexArgs),
    /// Playback serving: C concurrent clip downloads while N cameras record
    /// (bytes/s, per core, frames lost), vs python3 -m http.server (and
    /// nginx if installed) serving one clip as a file.
    Serve(super::bench_serve::ServeArgs),
    /// The pool scheduler's placement simulated (no processes): M members,
    /// C cameras, random failures and returns: decision time and moves per
    /// failure, members over capacity (must be 0), cameras left out.
    Placement(super::bench_placement::PlacementArgs),
    /// The S3 archive tier: upload rate (multipart, read back and checked)
    /// under bandwidth caps vs the rate new footage arrives, frames lost
    /// across both tiers (must be 0).
    Archive(super::bench_archive::ArchiveArgs),
    /// The RTSP intake alone: retina's parsing and depacketising of one
    /// unpaced RTSP/TCP stream (CPU per frame and per MB), vs ffmpeg -c copy
    /// -f null reading the same bytes.
    Intake(super::bench_intake::IntakeArgs),
}

/// The simulated cameras' picture: 1080p25 at 4 Mbit/s unless told otherwise.
#[derive(clap::Args, Clone, Copy, Debug)]
pub(super) struct CameraArgs {
    #[arg(long, default_value_t = 1920)]
    pub width: u32,
    #[arg(long, default_value_t = 1080)]
    pub height: u32,
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    #[arg(long, default_value_t = 4000)]
    pub bitrate_kbps: u32,
}

#[derive(clap::Args)]
pub(super) struct IngestArgs {
    #[arg(long, default_value_t = 16)]
    pub(super) streams: u32,
    /// Measured seconds per recorder (after a warm-up), split evenly over
    /// the rounds.
    #[arg(long, default_value_t = 60)]
    pub(super) seconds: u64,
    /// Windows per recorder, alternated (Tandem, ffmpeg, Tandem, …), so that
    /// the machine's drift during the run falls on both sides of the ratio
    /// (`bench_windows`). Default: one per 30 measured seconds; shorter
    /// windows carry part of each recorder's start into its figure. Tandem's
    /// durability, retention, disk-load and `/metrics` figures are its first
    /// window's. One with `--skip-ffmpeg`.
    #[arg(long)]
    pub(super) rounds: Option<u32>,
    #[command(flatten)]
    pub(super) camera: CameraArgs,
    /// Where recordings go during the run (removed afterwards).
    #[arg(long, default_value = "bench-data")]
    pub(super) dir: PathBuf,
    /// Write the results here as JSON.
    #[arg(long, default_value = "bench-ingest.json")]
    pub(super) json: PathBuf,
    /// Only measure Tandem.
    #[arg(long)]
    pub(super) skip_ffmpeg: bool,
    /// Keep at most this many MiB per channel (`retention.max_bytes`): a long
    /// run at 1 Gbit/s then fits the disk, and measures retention deleting
    /// at the rate footage arrives. The audit covers the newest footage the
    /// cap keeps; the writer's and ingest's own loss counters cover the rest.
    #[arg(long)]
    pub(super) retain_mib: Option<u64>,
    /// Load the store's filesystem meanwhile: another writer (a thread of
    /// this benchmark, not the NVR) writes this many MiB/s into new 1-GiB
    /// files beside the store, each fdatasynced when full (`bench_load`).
    #[arg(long)]
    pub(super) disk_load: Option<u64>,
    /// Before recording, generate a day of finished one-minute segments per
    /// channel, two days old, and record with `max_age = "1d"`: retention
    /// deletes that day while the cameras record.
    #[arg(long)]
    pub(super) preload_day: bool,
    /// Like `--preload-day`, but N minutes per channel of real files, each
    /// with its blocks allocated (`fallocate`): retention's unlinks free
    /// real blocks, and trim them on a `discard` mount, as a full disk's do.
    /// 64 channels × 10 minutes is about 19 GB.
    #[arg(long, conflicts_with = "preload_day")]
    pub(super) preload_minutes: Option<u64>,
    /// The tandem binary that records (default: this one), to compare builds.
    #[arg(long)]
    pub(super) nvr: Option<PathBuf>,
    /// `[storage] write_buffer` in MiB (default: the NVR's, 128 MiB). A
    /// buffer shorter than a slow flush round shows what the round costs
    /// ingest on a disk (or at a rate) the default buffer covers.
    #[arg(long)]
    pub(super) write_buffer_mib: Option<u64>,
}

impl IngestArgs {
    /// Old footage to generate before recording: minutes per channel, and
    /// what stands for the files.
    fn preload(&self) -> Option<(u64, super::bench_index::Files)> {
        use super::bench_index::Files;
        match (self.preload_day, self.preload_minutes) {
            (true, _) => Some((1440, Files::SparseLinks)),
            (false, Some(m)) => Some((m, Files::Allocated)),
            (false, None) => None,
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    match a.which {
        Which::Ingest(i) => ingest(i),
        Which::Motion(m) => super::bench_motion::run(m),
        Which::Attack(a) => super::bench_attack::run(a),
        Which::Auth(a) => super::bench_auth::run(a),
        Which::Live(a) => super::bench_live::run(a),
        Which::Apply(a) => super::bench_apply::run(a),
        Which::Alerts(a) => super::bench_alerts::run(a),
        Which::Index(a) => super::bench_index::run(a),
        Which::Serve(a) => super::bench_serve::run(a),
        Which::Placement(a) => super::bench_placement::run(a),
        Which::Archive(a) => super::bench_archive::run(a),
        Which::Intake(a) => super::bench_intake::run(a),
    }
}

pub(super) fn signal(c: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(c.id() as i32, sig) };
}

fn ingest(a: IngestArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    if a.dir.exists() {
        bail!("{} exists; give an empty --dir", a.dir.display());
    }
    std::fs::create_dir_all(&a.dir)?;
    let result = run_ingest(&a, &exe);
    let _ = std::fs::remove_dir_all(&a.dir);
    result
}

pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Each client thread's result, a panic counted as that client's error.
pub(super) fn join_clients<T>(handles: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>) -> Vec<Result<T>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
        })
        .collect()
}

/// Starts `count` simulated cameras (GOP of one second) and returns the
/// process with their URLs.
pub(super) fn start_cameras(
    exe: &Path,
    count: u32,
    width: u32,
    height: u32,
    fps: u32,
    kbps: u32,
) -> Result<(Child, Vec<String>)> {
    let port = free_port()?;
    let mut sim = Command::new(exe)
        .args(["sim-camera", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--count", &count.to_string(), "--fps", &fps.to_string()])
        .args(["--width", &width.to_string(), "--height", &height.to_string()])
        .args(["--bitrate-kbps", &kbps.to_string(), "--gop", &fps.to_string()])
        .env("TANDEM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let out = sim.stdout.take().context("sim-camera stdout")?;
    let urls: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(out))
        .take(count as usize)
        .collect::<Result<_, _>>()?;
    if urls.len() != count as usize {
        let _ = sim.kill();
        bail!("sim-camera did not start");
    }
    Ok((sim, urls))
}

/// One simulated camera and the configuration of an NVR recording it.
pub(super) struct OneCamera {
    /// The camera's process (the NVR's is pushed after it).
    pub procs: Procs,
    pub url: String,
    /// The NVR's store, `DIR/store`.
    pub data: PathBuf,
    pub port: u16,
    pub config: PathBuf,
}

/// Starts one simulated camera and writes the configuration of an NVR that
/// records it into `DIR/store` and serves on a free port.
pub(super) fn one_camera_nvr(exe: &Path, dir: &Path, c: CameraArgs) -> Result<OneCamera> {
    eprintln!("starting a simulated {}x{} camera…", c.width, c.height);
    let (sim, urls) = start_cameras(exe, 1, c.width, c.height, c.fps, c.bitrate_kbps)?;
    let procs = Procs(vec![sim]);
    let data = std::path::absolute(dir.join("store"))?;
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let config = write_config(dir, &data, port, &urls, "")?;
    Ok(OneCamera {
        procs,
        url: urls[0].clone(),
        data,
        port,
        config,
    })
}

/// One network camera and one channel (numbered from 1) per URL, as TOML.
/// Runs a benchmark in `dir`, which must not exist yet (a benchmark never
/// mixes its store with older footage), and removes it afterwards.
pub(super) fn in_fresh_dir(dir: &Path, f: impl FnOnce() -> Result<ExitCode>) -> Result<ExitCode> {
    if dir.exists() {
        bail!("{} exists; give an empty --dir", dir.display());
    }
    std::fs::create_dir_all(dir)?;
    let r = f();
    let _ = std::fs::remove_dir_all(dir);
    r
}

/// Writes `DIR/bench.toml`: an NVR storing into `data`, serving on `port`,
/// recording `urls` on channels 1…, with `extra` TOML sections; its path.
pub(super) fn write_config(dir: &Path, data: &Path, port: u16, urls: &[String], extra: &str) -> Result<PathBuf> {
    write_config_retained(dir, data, port, urls, extra, None, "")
}

/// `write_config` with a `retention = …` line for every channel.
pub(super) fn write_config_retained(
    dir: &Path,
    data: &Path,
    port: u16,
    urls: &[String],
    extra: &str,
    retention: Option<&str>,
    storage: &str,
) -> Result<PathBuf> {
    let mut cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"1 GiB\"\n{storage}[http]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
        data.display()
    );
    cfg.push_str(&channels_config(urls, retention.unwrap_or("")));
    let path = dir.join("bench.toml");
    std::fs::write(&path, cfg)?;
    Ok(path)
}

/// `[[network_camera]]` and `[[channel]]` tables for `urls`, each channel
/// followed by `channel_extra`.
fn channels_config(urls: &[String], channel_extra: &str) -> String {
    urls.iter()
        .enumerate()
        .map(|(i, u)| {
            format!(
                "[[network_camera]]\nname = \"c{i}\"\nurl = \"{u}\"\n[[channel]]\nnumber = {}\ncamera = \"c{i}\"\n{channel_extra}",
                i + 1
            )
        })
        .collect()
}

/// Waits (up to a minute) until `n` channels of the NVR at `base` are connected.
pub(super) fn wait_connected(base: &str, token: &str, n: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let auth = format!("Bearer {token}");
        let connected = tandem::httpc::request(
            "GET",
            &format!("{base}/api/v1/channels"),
            &[("Authorization", &auth)],
            b"",
        )
        .ok()
        .and_then(|r| r.json().ok())
        .and_then(|v| {
            v.as_array()
                .map(|a| a.iter().filter(|c| c["ingest"]["connected"] == true).count())
        })
        .unwrap_or(0);
        if connected == n as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {connected} of {n} channels connected");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The default length of one measured window: 10-s windows measured 0.251
/// of ffmpeg's CPU where 30-s windows of the same build measured 0.207, as
/// each restart's first seconds weigh more in a short window.
const WINDOW_SECS: u64 = 30;

fn run_ingest(a: &IngestArgs, exe: &Path) -> Result<ExitCode> {
    let warmup = Duration::from_secs(5);
    let rounds = match (a.skip_ffmpeg, a.rounds) {
        (true, _) => 1,
        (false, Some(r)) => r.max(1),
        (false, None) => (a.seconds / WINDOW_SECS).max(1) as u32,
    };
    let win = Duration::from_secs(a.seconds) / rounds;
    if rounds > 1 && win < Duration::from_secs(5) {
        bail!(
            "--seconds {} over --rounds {rounds} leaves windows under 5 s; give more seconds or fewer rounds",
            a.seconds
        );
    }
    eprintln!("measuring the kernel threads' idle CPU for 3 s…");
    let background = KernelThreads::background(Duration::from_secs(3));
    eprintln!(
        "starting {} simulated {}x{} {} fps {} kbit/s cameras…",
        a.streams, a.camera.width, a.camera.height, a.camera.fps, a.camera.bitrate_kbps
    );
    let (sim, urls) = start_cameras(
        exe,
        a.streams,
        a.camera.width,
        a.camera.height,
        a.camera.fps,
        a.camera.bitrate_kbps,
    )?;
    let mut guard = Procs(vec![sim]);

    // Tandem.
    let data = std::path::absolute(a.dir.join("tandem"))?;
    let http_port = free_port()?;
    let preloaded = match a.preload() {
        Some((minutes, files)) => {
            eprintln!(
                "generating {minutes} minutes of old segments for {} channels ({files:?})…",
                a.streams
            );
            super::bench_load::preload(&data, a.streams, minutes, files)?
        }
        None => 0,
    };
    let retention = retention_config(a, true);
    let storage = a
        .write_buffer_mib
        .map(|m| format!("write_buffer = \"{m} MiB\"\n"))
        .unwrap_or_default();
    let cfg_path = write_config_retained(&a.dir, &data, http_port, &urls, "", retention.as_deref(), &storage)?;
    eprintln!(
        "recording with Tandem for {} s (+{} s warm-up), round 1/{rounds}…",
        win.as_secs_f64(),
        warmup.as_secs()
    );
    let token = tandem::auth::client::mint_admin_token(&data, "bench")?;
    let nvr_exe = a.nvr.as_deref().unwrap_or(exe);
    let nvr = start_nvr(nvr_exe, &cfg_path)?;
    let nvr_pid = nvr.id();
    guard.0.push(nvr);
    let base = format!("http://127.0.0.1:{http_port}");
    wait_connected(&base, &token, a.streams)?;
    let load = a
        .disk_load
        .map(|mib| super::bench_load::DiskLoad::start(&a.dir, mib))
        .transpose()?;
    std::thread::sleep(warmup);
    let w0 = writer_figures(&base, &token)?;
    let later = retention_config(a, false);
    if later != retention {
        eprintln!("shortening retention to a day (SIGHUP): the pre-loaded footage goes now…");
        write_config_retained(&a.dir, &data, http_port, &urls, "", later.as_deref(), &storage)?;
        if let Some(nvr) = guard.0.last() {
            signal(nvr, libc::SIGHUP);
        }
    }
    let dropped0 = ingest_dropped(&base, &token)?;
    let span = measure(win, background, || cpu_seconds(nvr_pid))?;
    let (t0, t1) = (span.t0, span.t1);
    let w1 = writer_figures(&base, &token)?;
    let dropped = ingest_dropped(&base, &token)?.saturating_sub(dropped0);
    let load = load.map(|l| l.finish()).transpose()?;
    let durability = Durability::between(&w0, &w1, tandem::time::secs_of(t1 - t0));
    let retention = RetentionFigures {
        segments_deleted: w1.retention_segments.saturating_sub(w0.retention_segments),
        bytes_deleted: w1.retention_bytes.saturating_sub(w0.retention_bytes),
        writer_frames_lost: w1.frames_lost.saturating_sub(w0.frames_lost),
        ingest_frames_dropped: dropped,
    };
    // After the CPU window, so that the scrapes do not count in it, while
    // every channel still records.
    let scrape = Scrape::measure(&base, &token, 20)?;
    let rss = peak_rss(nvr_pid)?;
    if let Some(nvr) = guard.0.last_mut() {
        stop_nvr(nvr);
    }
    let mut tandem_windows = vec![Measured::of(&span, rss, audit_tandem(a, &data, (t0, t1))?)];

    // ffmpeg, one process per camera, copying into one-minute mp4 segments;
    // from the second round on, Tandem again before each of its windows.
    let mut ffmpeg_windows = Vec::new();
    if !a.skip_ffmpeg {
        for r in 0..rounds {
            if r > 0 {
                eprintln!(
                    "recording with Tandem for {} s (+{} s warm-up), round {}/{rounds}…",
                    win.as_secs_f64(),
                    warmup.as_secs(),
                    r + 1
                );
                let w = tandem_window(
                    a,
                    nvr_exe,
                    &data,
                    &urls,
                    (later.as_deref(), &storage),
                    &token,
                    (warmup, win),
                    background,
                )?;
                tandem_windows.push(w);
            }
            eprintln!(
                "recording with ffmpeg -c copy for {} s (+{} s warm-up), round {}/{rounds}…",
                win.as_secs_f64(),
                warmup.as_secs() + 2,
                r + 1
            );
            let out = a.dir.join(format!("ffmpeg-{r}"));
            ffmpeg_windows.push(ffmpeg_window(
                &urls,
                &out,
                win,
                warmup + Duration::from_secs(2),
                background,
            )?);
        }
    }
    drop(guard);
    let (streams, fps) = (a.streams, a.camera.fps);
    let tandem_side = side(&tandem_windows, streams, fps);
    let ffmpeg_side = (!a.skip_ffmpeg).then(|| side(&ffmpeg_windows, streams, fps));
    let per_window = ratios(&tandem_windows, &ffmpeg_windows);
    let audited_seconds: f64 = tandem_windows
        .iter()
        .map(|m| tandem::time::secs_of(m.audited.1 - m.audited.0))
        .sum();

    let t = &tandem_side;
    println!();
    println!(
        "ingest benchmark: {} streams of {}x{} @ {} fps, {} kbit/s, {} s measured",
        a.streams, a.camera.width, a.camera.height, a.camera.fps, a.camera.bitrate_kbps, a.seconds
    );
    println!(
        "{:<36} {:>14} {:>14} {:>10}",
        "metric", "tandem", "ffmpeg -c copy", "ratio"
    );
    let row = |name: &str, tv: f64, fv: Option<f64>, prec: usize| {
        let f = fv.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "-".into());
        let r = fv
            .filter(|v| *v > 0.0)
            .map(|v| format!("{:.3}", tv / v))
            .unwrap_or_else(|| "-".into());
        println!("{name:<36} {tv:>14.prec$} {f:>14} {r:>10}");
    };
    let f = ffmpeg_side.as_ref();
    row(
        "CPU s per stream-minute",
        t.cpu_s_per_stream_minute,
        f.map(|s| s.cpu_s_per_stream_minute),
        4,
    );
    row(
        "CPU s per stream-minute + kernel (*)",
        t.with_kernel_cpu_s_per_stream_minute,
        f.map(|s| s.with_kernel_cpu_s_per_stream_minute),
        4,
    );
    row(
        "CPU % of one core (all streams)",
        t.cpu_percent_of_one_core,
        f.map(|s| s.cpu_percent_of_one_core),
        1,
    );
    row(
        "peak RSS MiB per stream",
        t.peak_rss_bytes_per_stream / 1048576.0,
        f.map(|s| s.peak_rss_bytes_per_stream / 1048576.0),
        2,
    );
    row(
        "frames expected",
        t.frames_expected as f64,
        f.map(|s| s.frames_expected as f64),
        0,
    );
    row(
        "frames found",
        t.frames_found as f64,
        f.map(|s| s.frames_found as f64),
        0,
    );
    row("frames lost", t.frames_lost as f64, f.map(|s| s.frames_lost as f64), 0);
    let d = &durability;
    row("fsyncs per second", d.fsyncs_per_second, None, 1);
    row("KiB per fsync", d.bytes_per_fsync / 1024.0, None, 1);
    row(
        "arrival-to-durable p99 ms",
        d.arrival_to_durable_p99_ms.map_or(f64::NAN, f64::from),
        None,
        0,
    );
    row(
        "capture-to-durable p99 ms",
        d.capture_to_durable_p99_ms.map_or(f64::NAN, f64::from),
        None,
        0,
    );
    if let Some(l) = &load {
        row("disk load: MiB/s written", l.mib_per_s, None, 1);
        row("disk load: fsync p99 ms", l.fsync_p99_ms, None, 0);
        row("disk load: fsync max ms", l.fsync_max_ms, None, 0);
        if a.retain_mib.is_none() && a.preload().is_none() {
            let dropped = retention.ingest_frames_dropped as f64;
            row("ingest frames dropped (whole window)", dropped, None, 0);
        }
    }
    row(
        "flush round p99 ms",
        d.flush_round_p99_ms.map_or(f64::NAN, f64::from),
        None,
        0,
    );
    row("flush round max ms", f64::from(d.flush_round_max_ms), None, 0);
    row(
        "index commit p99 ms",
        d.commit_p99_ms.map_or(f64::NAN, f64::from),
        None,
        0,
    );
    row(
        "index commit max ms",
        d.commit_max_ms.map_or(f64::NAN, f64::from),
        None,
        0,
    );
    row(
        "index checkpoint max ms (own thread)",
        d.checkpoint_max_ms.map_or(f64::NAN, f64::from),
        None,
        0,
    );
    if a.retain_mib.is_some() || a.preload().is_some() {
        let r = &retention;
        row("retention: segments deleted", r.segments_deleted as f64, None, 0);
        row(
            "retention: GiB deleted",
            r.bytes_deleted as f64 / (1u64 << 30) as f64,
            None,
            2,
        );
        row(
            "writer frames lost (whole window)",
            r.writer_frames_lost as f64,
            None,
            0,
        );
        row(
            "ingest frames dropped (whole window)",
            r.ingest_frames_dropped as f64,
            None,
            0,
        );
    }
    row("GET /metrics p50 ms (20 scrapes)", scrape.p50_ms, None, 2);
    row("GET /metrics max ms", scrape.max_ms, None, 2);
    row("GET /metrics KiB", scrape.bytes as f64 / 1024.0, None, 0);
    if !per_window.is_empty() {
        let each: Vec<String> = per_window.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "{rounds} alternated windows of {} s per recorder; CPU ratio per window: {}",
            win.as_secs_f64(),
            each.join(" · ")
        );
    }
    println!(
        "(*) with the CPU of the kernel's storage threads (kworker, jbd2, kswapd) in the \
         window, less their idle rate ({background:.4} CPU-s/s)"
    );
    let json = serde_json::json!({
        "benchmark": "ingest",
        "metrics_scrape": scrape,
        "streams": a.streams, "width": a.camera.width, "height": a.camera.height, "fps": a.camera.fps,
        "bitrate_kbps": a.camera.bitrate_kbps, "seconds": a.seconds,
        "tandem": tandem_side,
        "durability": durability,
        "retain_mib": a.retain_mib,
        "audited_seconds": audited_seconds,
        "rounds": rounds,
        "cpu_ratio_per_window": per_window,
        "retention": retention,
        "disk_load": load,
        "preloaded_segments": preloaded,
        "preloaded_files": a.preload().map(|(_, f)| format!("{f:?}")),
        "write_buffer_mib": a.write_buffer_mib,
        "ffmpeg": ffmpeg_side,
        "cpu_ratio_tandem_over_ffmpeg": ffmpeg_side.as_ref().map(|f| t.cpu_s_per_stream_minute / f.cpu_s_per_stream_minute),
        "kernel_threads_idle_cpu_s_per_s": background,
        "with_kernel_cpu_ratio_tandem_over_ffmpeg": ffmpeg_side.as_ref().map(|f| t.with_kernel_cpu_s_per_stream_minute / f.with_kernel_cpu_s_per_stream_minute),
    });
    std::fs::write(&a.json, serde_json::to_string_pretty(&json)?)?;
    println!("\nwrote {}", a.json.display());
    Ok(ExitCode::SUCCESS)
}

/// The retention of every channel: `--retain-mib`'s cap, and with
/// `--preload-day` or `--preload-minutes` a day's age, so the pre-loaded
/// footage goes during the run. `--preload-minutes` starts at 30 days and
/// is shortened to one once the window starts (`at_start`: false), as an
/// operator would: its few hundred segments would otherwise all go in the
/// first pass, before any camera records.
fn retention_config(a: &IngestArgs, at_start: bool) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(m) = a.retain_mib {
        parts.push(format!("max_bytes = \"{m} MiB\""));
    }
    match a.preload() {
        Some((_, super::bench_index::Files::Allocated)) if at_start => parts.push("max_age = \"30d\"".to_string()),
        Some(_) => parts.push("max_age = \"1d\"".to_string()),
        None => {}
    }
    (!parts.is_empty()).then(|| format!("retention = {{ {} }}\n", parts.join(", ")))
}
