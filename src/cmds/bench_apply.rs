//! `tandem bench apply`: what a live apply costs on a busy NVR. N simulated
//! cameras (one simulator, N paths) record on N channels; a configuration
//! where one channel changes camera is applied. Prints the time to apply,
//! the frames lost on the other channels (from the cameras' stamps; must be
//! 0), the time until the changed channel stores its new camera, and the
//! peer: the same change made by a full stop/start of the NVR.
//!
//! Must never leave its data behind (the directory it creates is removed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tandem::config::{ChannelConfig, Config, NetworkCamera, StorageConfig, Transport};
use tandem::nvr::Nvr;
use tandem::sim::{self, SimOptions, VideoSpec};
use tandem::time::{Clock, SystemClock, Time90k};

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Channels recording, each from its own simulated camera.
    #[arg(long, default_value_t = 64)]
    channels: u32,
    /// Seconds of recording before the change, and after it before the audit.
    #[arg(long, default_value_t = 3)]
    settle_seconds: u64,
    #[arg(long, default_value_t = 320)]
    width: u32,
    #[arg(long, default_value_t = 180)]
    height: u32,
    #[arg(long, default_value_t = 10)]
    fps: u32,
    #[arg(long, default_value_t = 300)]
    bitrate_kbps: u32,
    /// Where recordings go during the run (removed afterwards).
    #[arg(long, default_value = "bench-apply-data")]
    dir: PathBuf,
}

pub fn run(a: ApplyArgs) -> Result<ExitCode> {
    if a.channels < 2 {
        bail!("--channels: at least 2 (one changes, the others are audited)");
    }
    if a.dir.exists() {
        bail!("{} exists; give an empty --dir", a.dir.display());
    }
    let r = super::runtime()?.block_on(bench(&a));
    let _ = std::fs::remove_dir_all(&a.dir);
    let r = r?;
    println!("live apply, {} channels, one changes camera", a.channels);
    println!(
        "{:<44} {:>12} {:>18} {:>26}",
        "", "time (ms)", "frames lost (others)", "changed channel records (ms)"
    );
    println!(
        "{:<44} {:>12.0} {:>18} {:>26.0}",
        "tandem: Nvr::apply", r.apply_ms, r.apply_lost, r.apply_switch_ms
    );
    println!(
        "{:<44} {:>12.0} {:>18} {:>26.0}",
        "peer: full restart (shutdown + start)", r.restart_ms, r.restart_lost, r.restart_switch_ms
    );
    println!(
        "frames audited on the {} unchanged channels: {} across the apply, {} across the restart",
        a.channels - 1,
        r.apply_found,
        r.restart_found
    );
    Ok(if r.apply_lost == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("FAIL: the live apply lost frames on unchanged channels");
        ExitCode::FAILURE
    })
}

struct Measured {
    apply_ms: f64,
    apply_lost: u64,
    apply_found: u64,
    apply_switch_ms: f64,
    restart_ms: f64,
    restart_lost: u64,
    restart_found: u64,
    restart_switch_ms: f64,
}

/// `n` channels, channel `k` on camera `s{k}`, except the last on `last`.
fn config(a: &ApplyArgs, server: &sim::SimServer, last: u32) -> Result<Config> {
    let cameras = (1..=server.count)
        .map(|k| {
            Ok(NetworkCamera {
                name: format!("s{k}"),
                url: url::Url::parse(&server.url(k))?,
                substream_url: None,
                channel: None,
                transport: Transport::Tcp,
                credentials: None,
                edge_storage: false,
                replay_url: None,
                priority: Default::default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let channels = (1..=a.channels)
        .map(|k| ChannelConfig {
            number: k,
            name: format!("ch{k}"),
            camera: Some(format!("s{}", if k == a.channels { last } else { k })),
            retention: Default::default(),
            recording: Default::default(),
            motion: None,
        })
        .collect();
    Ok(Config {
        storage: StorageConfig {
            dir: std::path::absolute(&a.dir)?,
            min_free_bytes: 0,
            flush_interval: Duration::from_millis(200),
            ..Default::default()
        },
        listen: "127.0.0.1:0".parse()?,
        cameras,
        channels,
        ..Default::default()
    })
}

async fn wait_recording(nvr: &Nvr, channels: u32) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let views = nvr.channel_views();
        let recording = views.iter().filter(|v| v.recording.frames_written > 0).count();
        if recording == channels as usize {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("only {recording} of {channels} channels record after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sync(nvr: &Arc<Nvr>) -> Result<()> {
    let n = nvr.clone();
    tokio::task::spawn_blocking(move || n.sync()).await?;
    Ok(())
}

/// Waits until `channel` stores frames stamped by `camera` after `since`.
async fn wait_camera(nvr: &Arc<Nvr>, channel: u32, camera: u32, since: Time90k) -> Result<()> {
    let t0 = Instant::now();
    loop {
        sync(nvr).await?;
        let r = tandem::audit::audit_store(&nvr.reader, channel, since, Time90k(i64::MAX))?;
        if r.cameras.iter().any(|c| c.camera_id == camera && c.frames_found > 0) {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("channel {channel} has not recorded camera {camera} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Frames found and lost on channels 1..n-1 between `from` and `to`. A new
/// camera session starts a new run of stamps, which the audit reports as a
/// restart rather than a loss: the frames its gap spans are counted lost
/// here, since the camera itself never stopped.
fn audit(nvr: &Nvr, channels: u32, fps: u32, from: Time90k, to: Time90k) -> Result<(u64, u64)> {
    let (mut found, mut lost) = (0, 0);
    for ch in 1..channels {
        let r = tandem::audit::audit_store(&nvr.reader, ch, from, to)?;
        found += r.frames_found;
        lost += r.frames_lost;
        for c in &r.cameras {
            for gap in &c.restarts {
                lost += ((gap.seconds * f64::from(fps)).round() as u64).saturating_sub(1);
            }
        }
    }
    Ok((found, lost))
}

async fn bench(a: &ApplyArgs) -> Result<Measured> {
    let spec = VideoSpec {
        width: a.width,
        height: a.height,
        fps: a.fps,
        gop: a.fps,
        bitrate_kbps: a.bitrate_kbps,
    };
    spec.validate()?;
    let video = tokio::task::spawn_blocking(move || sim::encode_loop(&spec)).await??;
    // One spare camera for each change: the apply's, then the restart's.
    let opts = SimOptions {
        count: a.channels + 2,
        first_id: 1,
        setup_delay: Duration::ZERO,
        auth: None,
        switch: None,
        motion: None,
        ignore_key_frame_requests: false,
    };
    let server = sim::start("127.0.0.1:0".parse()?, Arc::new(video), opts).await?;
    let settle = Duration::from_secs(a.settle_seconds);
    let edge = 90_000 / i64::from(a.fps.max(1));
    let n = a.channels;

    eprintln!("starting {n} channels…");
    let nvr = Nvr::start(config(a, &server, n)?, Arc::new(SystemClock))?;
    wait_recording(&nvr, n).await?;
    // The audit window opens `settle` before the change: a loss shows as a
    // hole between frames stored before and after it.
    let window = SystemClock.now();
    tokio::time::sleep(settle).await;
    let from = SystemClock.now();
    let t = Instant::now();
    let report = nvr
        .apply(config(a, &server, n + 1)?)
        .await
        .context("applying the changed configuration")?;
    let apply_ms = t.elapsed().as_secs_f64() * 1000.0;
    if report.restarted != [n] {
        bail!("the apply restarted {:?}, not only channel {n}", report.restarted);
    }
    wait_camera(&nvr, n, n + 1, from).await?;
    let apply_switch_ms = t.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(settle).await;
    sync(&nvr).await?;
    let to = SystemClock.now();
    let (apply_found, apply_lost) = audit(&nvr, n, a.fps, window + edge, to + -edge)?;

    eprintln!("the peer: a full restart…");
    let window = SystemClock.now();
    tokio::time::sleep(settle).await;
    let from = SystemClock.now();
    let t = Instant::now();
    nvr.shutdown().await;
    drop(nvr);
    let nvr = Nvr::start(config(a, &server, n + 2)?, Arc::new(SystemClock))?;
    wait_recording(&nvr, n).await?;
    let restart_ms = t.elapsed().as_secs_f64() * 1000.0;
    wait_camera(&nvr, n, n + 2, from).await?;
    let restart_switch_ms = t.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(settle).await;
    sync(&nvr).await?;
    let to = SystemClock.now();
    let (restart_found, restart_lost) = audit(&nvr, n, a.fps, window + edge, to + -edge)?;
    nvr.shutdown().await;
    Ok(Measured {
        apply_ms,
        apply_lost,
        apply_found,
        apply_switch_ms,
        restart_ms,
        restart_lost,
        restart_found,
        restart_switch_ms,
    })
}
