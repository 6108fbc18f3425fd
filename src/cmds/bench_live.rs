//! `tandem bench live`: what live view costs, in one run against the real
//! binary recording one simulated 1080p camera. N plain WebSocket viewers
//! (`live::client`) watch the main stream for a while; the table gives the
//! NVR's CPU and memory per viewer (against the same NVR with no viewer),
//! fragments received and skipped, the time to the first picture, the
//! server-added latency (frame received from the camera → fragment written
//! to the socket, measured inside the NVR) and capture → arrival at the
//! client. Beside it, the peer: the naive way to serve a viewer — one
//! `ffmpeg -c copy` remuxing the camera's RTSP into fragmented MP4 per
//! viewer — measured in the same run. Writes the figures as JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tandem::lab::Procs;
use tandem::live::client::watch;
use tandem::store::health::Histogram;

use super::bench::{cpu_seconds, in_fresh_dir, one_camera_nvr, wait_connected, CameraArgs};

#[derive(clap::Args)]
pub struct LiveArgs {
    /// WebSocket viewers of the one stream.
    #[arg(long, default_value_t = 100)]
    viewers: u32,
    /// Measured seconds with the viewers (and the same without them).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// ffmpeg processes for the peer (one per viewer); 0 skips the peer.
    #[arg(long, default_value_t = 4)]
    ffmpeg_viewers: u32,
    #[command(flatten)]
    camera: CameraArgs,
    /// Seconds of glass-to-glass measurement in headless Chromium; 0 skips it.
    #[arg(long, default_value_t = 20)]
    browser_seconds: u64,
    #[arg(long, default_value = "bench-data")]
    dir: PathBuf,
    #[arg(long, default_value = "bench-live.json")]
    json: PathBuf,
}

pub fn run(a: LiveArgs) -> Result<ExitCode> {
    in_fresh_dir(&a.dir, || run_in(&a))
}

/// Resident memory now (VmRSS), bytes.
fn rss_now(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("bad VmRSS")?.parse::<u64>()? * 1024)
}

/// The NVR's server-added latency histogram so far.
fn added_latency(base: &str, token: &str) -> Result<Histogram> {
    let auth = format!("Bearer {token}");
    let r = tandem::httpc::request("GET", &format!("{base}/api/v1/store"), &[("Authorization", &auth)], b"")?;
    let v = r.json()?;
    Histogram::from_json(&v["live"]["totals"]["added_latency_ms"]).context("no live latency in /api/v1/store")
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN)
}

fn run_in(a: &LiveArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let one = one_camera_nvr(&exe, &a.dir, a.camera)?;
    let (mut guard, data, port, cfg_path) = (one.procs, one.data, one.port, one.config);
    let token = tandem::auth::client::mint_admin_token(&data, "bench")?;
    let nvr = Command::new(&exe)
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("TANDEM_LOG", "warn")
        .spawn()?;
    let pid = nvr.id();
    // Stopped before the camera, so its end is not logged as an outage.
    guard.0.insert(0, nvr);
    let base = format!("http://127.0.0.1:{port}");
    wait_connected(&base, &token, 1)?;
    std::thread::sleep(Duration::from_secs(3));
    let secs = a.seconds;

    eprintln!("recording with no viewer for {secs} s…");
    let rss0 = rss_now(pid)?;
    let c0 = cpu_seconds(pid)?;
    std::thread::sleep(Duration::from_secs(secs));
    let idle_cpu = cpu_seconds(pid)? - c0;

    eprintln!("recording with {} WebSocket viewers for {secs} s…", a.viewers);
    let h0 = added_latency(&base, &token)?;
    let url = format!("ws://127.0.0.1:{port}/api/v1/channels/1/live?stream=main");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // The viewers connect first; the CPU window starts when all are in.
    let warm = Duration::from_secs(3);
    let (watched, peak_rss, busy_cpu) = rt.block_on(async {
        let tasks: Vec<_> = (0..a.viewers)
            .map(|_| {
                let (url, token) = (url.clone(), token.clone());
                tokio::spawn(async move { watch(&url, &token, warm + Duration::from_secs(secs)).await })
            })
            .collect();
        tokio::time::sleep(warm).await;
        let c1 = cpu_seconds(pid)?;
        let mut peak_rss = 0;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            peak_rss = peak_rss.max(rss_now(pid)?);
        }
        let busy_cpu = cpu_seconds(pid)? - c1;
        let mut watched = Vec::new();
        for t in tasks {
            watched.push(t.await??);
        }
        Ok::<_, anyhow::Error>((watched, peak_rss, busy_cpu))
    })?;
    let h = added_latency(&base, &token)?.since(&h0);
    drop(rt);

    let n = watched.len().max(1) as f64;
    let fragments: u64 = watched.iter().map(|w| w.fragments).sum();
    let skipped: u64 = watched.iter().map(|w| w.frames_skipped).sum();
    let drops: u64 = watched.iter().map(|w| w.drops).sum();
    let mut firsts: Vec<f64> = watched.iter().filter_map(|w| w.first_fragment_ms).collect();
    let mut lat: Vec<f64> = watched.iter().flat_map(|w| w.latencies_ms.iter().copied()).collect();
    if fragments == 0 {
        bail!("the viewers received no fragment");
    }
    let cpu_per_viewer = (busy_cpu - idle_cpu).max(0.0) / secs as f64 / n;
    let rss_per_viewer = peak_rss.saturating_sub(rss0) as f64 / n;
    let expected = (a.camera.fps as u64 * secs) as f64;

    let peer = if a.ffmpeg_viewers > 0 {
        eprintln!(
            "the peer: {} × ffmpeg -c copy to fragmented MP4 for {secs} s…",
            a.ffmpeg_viewers
        );
        Some(ffmpeg_viewers(&one.url, a.ffmpeg_viewers, secs, &a.dir)?)
    } else {
        None
    };
    let glass = (a.browser_seconds > 0).then(|| {
        eprintln!("glass to glass in headless Chromium for {} s…", a.browser_seconds);
        super::bench_live_browser::glass_to_glass(&base, &token, 1, a.browser_seconds)
            .inspect_err(|e| eprintln!("glass to glass not measured: {e:#}"))
            .ok()
    });
    drop(guard);

    println!();
    println!(
        "live benchmark: one {}x{} {} fps {} kbit/s stream, {} WebSocket viewers, {secs} s",
        a.camera.width, a.camera.height, a.camera.fps, a.camera.bitrate_kbps, a.viewers
    );
    println!("{:<52} {:>14}", "figure", "value");
    let row = |k: &str, v: String| println!("{k:<52} {v:>14}");
    row(
        "NVR CPU, recording only (% of one core)",
        format!("{:.1}", idle_cpu / secs as f64 * 100.0),
    );
    row(
        "NVR CPU, recording + viewers (% of one core)",
        format!("{:.1}", busy_cpu / secs as f64 * 100.0),
    );
    row(
        "CPU per viewer (% of one core)",
        format!("{:.3}", cpu_per_viewer * 100.0),
    );
    row(
        "memory per viewer (KiB, peak RSS growth / viewers)",
        format!("{:.0}", rss_per_viewer / 1024.0),
    );
    row(
        "fragments received per viewer per second",
        format!("{:.1}", fragments as f64 / n / (secs as f64 + 3.0)),
    );
    row(
        "frames skipped (all viewers) / drop notices",
        format!("{skipped} / {drops}"),
    );
    row(
        "frames skipped, share of frames sent",
        format!("{:.4}", skipped as f64 / (expected * n)),
    );
    row(
        "first picture after connect, p50 / p99 (ms)",
        format!("{:.0} / {:.0}", pct(&mut firsts, 0.5), pct(&mut firsts, 0.99)),
    );
    row(
        "server-added latency p50 / p99 (ms, bucket bound)",
        format!(
            "{} / {}",
            h.quantile_ms(0.5).unwrap_or(0),
            h.quantile_ms(0.99).unwrap_or(0)
        ),
    );
    row(
        "capture → client arrival p50 / p99 (ms)",
        format!("{:.1} / {:.1}", pct(&mut lat, 0.5), pct(&mut lat, 0.99)),
    );
    if let Some(p) = &peer {
        row(
            "peer: CPU per ffmpeg -c copy viewer (% of one core)",
            format!("{:.3}", p * 100.0),
        );
        row(
            "Tandem viewer CPU / ffmpeg viewer CPU",
            format!("{:.3}", cpu_per_viewer / p.max(f64::MIN_POSITIVE)),
        );
    }
    if let Some(Some(g)) = &glass {
        row(
            "glass to glass in Chromium p50 / p99 (ms)",
            format!("{:.0} / {:.0}", g.p50_ms, g.p99_ms),
        );
        row(
            "Chromium: frames measured / dropped",
            format!("{} / {}", g.frames, g.dropped_frames),
        );
    }
    let json = serde_json::json!({
        "benchmark": "live",
        "viewers": a.viewers, "seconds": secs,
        "stream": { "width": a.camera.width, "height": a.camera.height, "fps": a.camera.fps, "bitrate_kbps": a.camera.bitrate_kbps },
        "nvr_cpu_recording_only": idle_cpu / secs as f64,
        "nvr_cpu_with_viewers": busy_cpu / secs as f64,
        "cpu_per_viewer": cpu_per_viewer,
        "rss_per_viewer_bytes": rss_per_viewer,
        "fragments": fragments, "frames_skipped": skipped, "drops": drops,
        "first_fragment_ms_p50": pct(&mut firsts, 0.5),
        "server_added_latency_ms": h,
        "capture_to_arrival_ms_p50": pct(&mut lat, 0.5),
        "capture_to_arrival_ms_p99": pct(&mut lat, 0.99),
        "ffmpeg_cpu_per_viewer": peer,
        "glass_to_glass": glass.flatten(),
    });
    std::fs::write(&a.json, serde_json::to_string_pretty(&json)?)?;
    println!("\nwrote {}", a.json.display());
    Ok(ExitCode::SUCCESS)
}

/// CPU per process per second of `n` concurrent `ffmpeg -c copy` remuxes of
/// `url` into fragmented MP4 (what serving each viewer with its own remux
/// costs; each also opens its own camera session).
fn ffmpeg_viewers(url: &str, n: u32, secs: u64, dir: &Path) -> Result<f64> {
    let mut procs = Procs(Vec::new());
    for i in 0..n {
        let log = std::fs::File::create(dir.join(format!("ffmpeg-{i}.log")))?;
        let c = super::bench_figures::ffmpeg_reading(url)
            .args([
                "-c",
                "copy",
                "-f",
                "mp4",
                "-movflags",
                "frag_keyframe+empty_moov+default_base_moof",
            ])
            .arg("pipe:1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("running ffmpeg (Debian package ffmpeg)")?;
        procs.0.push(c);
    }
    std::thread::sleep(Duration::from_secs(3));
    let pids: Vec<u32> = procs.0.iter().map(|c| c.id()).collect();
    let before: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_secs(secs));
    let after: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<_>>()
        .context("an ffmpeg viewer exited early (see its log in the bench directory)")?;
    let total: f64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    Ok(total / n as f64 / secs as f64)
}
