//! `tandem bench motion`: what motion detection costs per channel and how
//! quickly a motion event is stored.
//!
//! CPU: a scripted 640×360, 10 fps substream (the simulated camera's, encoded
//! once) is decoded and run through the detector as fast as the core allows,
//! on thread CPU time; the share of one core at real-time rate follows. The
//! peer in the same run is ffmpeg decoding the same bitstream single-threaded
//! (`ffmpeg -threads 1 -f h264 -i … -f null -`), i.e. the cost of decoding
//! alone in the most common tool. Latency: a simulated camera with scripted
//! crossings recorded by a real in-process NVR; from each crossing's first
//! frame (capture time) to the moment its motion event is readable in the
//! store.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tandem::config::{ChannelConfig, Config, MotionConfig, NetworkCamera, StorageConfig, Transport};
use tandem::motion::{MotionFrame, Pipeline};
use tandem::nvr::Nvr;
use tandem::recording::{EventPolicy, Mode, RecordingPolicy, Schedule};
use tandem::sim::script::{MotionScript, Player};
use tandem::sim::{self, SimOptions, VideoSpec};
use tandem::time::{Clock, SystemClock, Time90k};

#[derive(clap::Args)]
pub struct MotionArgs {
    /// Seconds of video for the CPU measurement.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Seconds of live recording for the latency measurement.
    #[arg(long, default_value_t = 60)]
    latency_seconds: u64,
    /// Where the latency run stores footage (removed afterwards).
    #[arg(long, default_value = "bench-motion-data")]
    dir: PathBuf,
    #[arg(long, default_value = "bench-motion.json")]
    json: PathBuf,
}

const SPEC: VideoSpec = VideoSpec {
    width: 640,
    height: 360,
    fps: 10,
    gop: 10,
    bitrate_kbps: 500,
};

fn thread_cpu() -> f64 {
    tandem::motion::thread_cpu().as_secs_f64()
}

fn children_cpu() -> f64 {
    super::bench_figures::Rusage::children().total()
}

/// The substream as a camera session delivers it (frames for the detector),
/// the same as one Annex B bitstream (for ffmpeg), and how many crossings it holds.
fn stream(seconds: u64) -> Result<(Vec<MotionFrame>, Vec<u8>, usize)> {
    let video = sim::encode_scripted(&SPEC, Duration::from_secs(30), Duration::from_secs(5))?;
    let mut player = Player::new(
        MotionScript {
            at: vec![10.0],
            every: Some(20.0),
        },
        &video,
    );
    let entry = Arc::new(
        tandem::motion::avc1_entry(&video.sps, &video.pps, SPEC.width as u16, SPEC.height as u16)
            .context("building the sample entry")?,
    );
    let (mut frames, mut annexb, mut crossings) = (Vec::new(), Vec::new(), 0);
    for n in 0..seconds * u64::from(SPEC.fps) {
        let (i, start) = player.advance();
        crossings += usize::from(start.is_some());
        let f = &video.frames[i];
        let mut data = Vec::new();
        for nal in &f.nals {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(nal);
            if !matches!(nal[0] & 0x1f, 7 | 8) {
                data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                data.extend_from_slice(nal);
            }
        }
        frames.push(MotionFrame {
            time: Time90k(n as i64 * 9_000),
            key: f.key,
            entry: entry.clone(),
            data: data.into(),
        });
    }
    Ok((frames, annexb, crossings))
}

#[derive(serde::Serialize)]
struct Results {
    video_seconds: u64,
    tandem_cpu_seconds: f64,
    tandem_core_percent: f64,
    tandem_events: usize,
    crossings: usize,
    ffmpeg_decode_cpu_seconds: Option<f64>,
    ffmpeg_decode_core_percent: Option<f64>,
    latency_ms: Vec<f64>,
    latency_mean_ms: f64,
    latency_max_ms: f64,
}

pub fn run(a: MotionArgs) -> Result<ExitCode> {
    println!("motion bench: 640x360 10 fps substream, {} s of video", a.seconds);
    let (frames, annexb, crossings) = stream(a.seconds)?;
    let mut p = Pipeline::new(MotionConfig::default()).map_err(anyhow::Error::msg)?;
    let c0 = thread_cpu();
    let mut events = 0;
    for f in &frames {
        events += usize::from(p.frame(f).map_err(anyhow::Error::msg)?.is_some());
    }
    let tandem_cpu = thread_cpu() - c0;
    let video_s = a.seconds as f64;

    let file = a.dir.with_extension("h264");
    std::fs::File::create(&file)?.write_all(&annexb)?;
    let before = children_cpu();
    let ff = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-threads",
            "1",
            "-f",
            "h264",
            "-i",
        ])
        .arg(&file)
        .args(["-f", "null", "-"])
        .stdin(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&file);
    let ffmpeg_cpu = match ff {
        Ok(s) if s.success() => Some(children_cpu() - before),
        Ok(s) => {
            eprintln!("ffmpeg failed ({s}); no peer figure");
            None
        }
        Err(e) => {
            eprintln!("ffmpeg not found ({e}); no peer figure");
            None
        }
    };

    println!("latency: a live simulated camera and NVR for {} s …", a.latency_seconds);
    let latency = super::runtime()?.block_on(latency(&a))?;
    let mean = latency.iter().sum::<f64>() / latency.len().max(1) as f64;
    let max = latency.iter().copied().fold(0.0, f64::max);
    let r = Results {
        video_seconds: a.seconds,
        tandem_cpu_seconds: tandem_cpu,
        tandem_core_percent: tandem_cpu / video_s * 100.0,
        tandem_events: events,
        crossings,
        ffmpeg_decode_cpu_seconds: ffmpeg_cpu,
        ffmpeg_decode_core_percent: ffmpeg_cpu.map(|c| c / video_s * 100.0),
        latency_ms: latency,
        latency_mean_ms: mean,
        latency_max_ms: max,
    };
    println!();
    println!("| per channel, 640x360 10 fps          | Tandem (decode + detect) | ffmpeg -threads 1 (decode only) | target |");
    println!("|--------------------------------------|--------------------------|---------------------------------|--------|");
    println!(
        "| CPU, % of one core at real time      | {:>24.2} | {:>31} | ≤ 3    |",
        r.tandem_core_percent,
        r.ffmpeg_decode_core_percent
            .map(|v| format!("{v:.2}"))
            .unwrap_or("-".into())
    );
    println!(
        "| motion events / scripted crossings   | {:>24} | {:>31} |        |",
        format!("{} / {}", r.tandem_events / 2, r.crossings),
        "-"
    );
    println!(
        "| latency crossing → event stored, ms  | {:>24} | {:>31} | ≤ 500  |",
        format!("mean {mean:.0}, max {max:.0} (n={})", r.latency_ms.len()),
        "-"
    );
    std::fs::write(&a.json, serde_json::to_string_pretty(&r)?)?;
    println!("\nwrote {}", a.json.display());
    Ok(ExitCode::SUCCESS)
}

async fn latency(a: &MotionArgs) -> Result<Vec<f64>> {
    if a.dir.exists() {
        anyhow::bail!("{} exists; give an empty --dir", a.dir.display());
    }
    let video =
        tokio::task::spawn_blocking(|| sim::encode_scripted(&SPEC, Duration::from_secs(4), Duration::from_secs(3)))
            .await??;
    let opts = SimOptions {
        count: 1,
        first_id: 1,
        setup_delay: Duration::ZERO,
        auth: None,
        switch: None,
        motion: Some(MotionScript {
            at: vec![5.0],
            every: Some(8.0),
        }),
        ignore_key_frame_requests: false,
    };
    let server = sim::start("127.0.0.1:0".parse()?, Arc::new(video), opts).await?;
    let config = Config {
        storage: StorageConfig {
            dir: a.dir.clone(),
            min_free_bytes: 0,
            ..Default::default()
        },
        listen: "127.0.0.1:0".parse()?,
        http: Default::default(),
        cameras: vec![NetworkCamera {
            name: "sim".into(),
            url: url::Url::parse(&server.url(1))?,
            substream_url: None,
            channel: None,
            transport: Transport::Tcp,
            credentials: None,
            edge_storage: false,
            replay_url: None,
            priority: Default::default(),
        }],
        channels: vec![ChannelConfig {
            number: 1,
            name: "bench".into(),
            camera: Some("sim".into()),
            retention: Default::default(),
            recording: RecordingPolicy {
                schedule: Schedule::always(Mode::Events),
                events: EventPolicy::default(),
            },
            motion: Some(MotionConfig::default()),
        }],
        rules: Vec::new(),
        failover: Default::default(),
        mqtt: None,
        triggers: Vec::new(),
        actions: Vec::new(),
        access: Default::default(),
        ..Default::default()
    };
    let nvr = Nvr::start(config, Arc::new(SystemClock))?;
    let clock = SystemClock;
    let reader = nvr.reader.clone();
    let mut seen: Vec<(Time90k, Time90k)> = Vec::new(); // (event start, when first readable)
    let until = Instant::now() + Duration::from_secs(a.latency_seconds);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let evs = reader.events(Some(1), Some("motion"), Time90k(0), Time90k(i64::MAX))?;
        let now = clock.now();
        for e in evs {
            let start = Time90k::parse_rfc3339(&e.start).map_err(anyhow::Error::msg)?;
            if !seen.iter().any(|s| s.0 == start) {
                seen.push((start, now));
            }
        }
    }
    nvr.shutdown().await;
    let _ = std::fs::remove_dir_all(&a.dir);
    let log = server.motion_log.lock().map(|l| l.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for c in &log {
        let m = seen.iter().find(|s| (s.0 - c.enters).abs() < 90_000);
        match m {
            Some((_, stored)) => out.push((*stored - c.enters) as f64 / 90.0),
            None if c.enters.0 + 2 * 90_000 < clock.now().0 - 90_000 => {
                eprintln!("crossing at {} was not detected", c.enters)
            }
            None => {}
        }
    }
    Ok(out)
}
