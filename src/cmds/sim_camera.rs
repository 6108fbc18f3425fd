use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tandem::sim::rtsp::{Auth, AuthScheme};
use tandem::sim::{self, MotionScript, SimOptions, VideoSpec};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Address to serve RTSP on; cameras are rtsp://ADDR/cam1 … camN.
    #[arg(long, default_value = "127.0.0.1:8554")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Camera id stamped into cam1's frames; the others count up from it.
    #[arg(long, default_value_t = 1)]
    pub first_id: u32,
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Frames per group of pictures (key frame interval).
    #[arg(long, default_value_t = 25)]
    pub gop: u32,
    #[arg(long, default_value_t = 4000)]
    pub bitrate_kbps: u32,
    #[arg(long, default_value_t = 1920)]
    pub width: u32,
    #[arg(long, default_value_t = 1080)]
    pub height: u32,
    #[arg(long, default_value = "h264", value_parser = ["h264"])]
    pub codec: String,
    /// Total time the camera takes to answer DESCRIBE, SETUP and PLAY.
    #[arg(long, default_value_t = 0)]
    pub setup_delay_ms: u64,
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// Switch every camera to this resolution (WxH) after --switch-after-s.
    #[arg(long, requires = "switch_after_s", value_parser = parse_size)]
    pub switch_resolution: Option<(u32, u32)>,
    #[arg(long, requires = "switch_resolution")]
    pub switch_after_s: Option<f64>,
    /// Scripted motion: seconds after start at which an object crosses the
    /// (otherwise still) scene, e.g. `10,70.5`.
    #[arg(long, value_delimiter = ',')]
    pub motion_at: Vec<f64>,
    /// Scripted motion: after the --motion-at times, a crossing every this many seconds.
    #[arg(long)]
    pub motion_every: Option<f64>,
    /// How long one crossing takes, seconds (rounded up to whole GOPs).
    #[arg(long, default_value_t = 5.0)]
    pub motion_duration: f64,
    /// Authentication scheme demanded when --user is given.
    #[arg(long, default_value = "digest", value_parser = ["digest", "basic"])]
    pub auth: String,
    /// Edge storage: each camera keeps its last SECONDS of frames (1 to 3600;
    /// memory, not a copy of the video) and replays them ONVIF-style on its
    /// live URL to a PLAY with `Require: onvif-replay` and `Range: clock=…`.
    /// It records whether or not anyone watches, also while its link is down.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub edge_storage: Option<u32>,
    /// Ignore RTCP key frame requests (PLI/FIR) from clients, like a camera
    /// whose encoder cannot be told to start a GOP: a new session then waits
    /// up to a GOP for its first key frame.
    #[arg(long)]
    pub ignore_key_frame_requests: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT, e.g. 320x180")?;
    Ok((
        w.parse().map_err(|_| "bad width")?,
        h.parse().map_err(|_| "bad height")?,
    ))
}

impl Args {
    pub fn spec(&self) -> VideoSpec {
        VideoSpec {
            width: self.width,
            height: self.height,
            fps: self.fps,
            gop: self.gop,
            bitrate_kbps: self.bitrate_kbps,
        }
    }
    pub fn options(&self) -> SimOptions {
        SimOptions {
            count: self.count,
            first_id: self.first_id,
            setup_delay: Duration::from_millis(self.setup_delay_ms),
            auth: self.user.as_ref().map(|u| Auth {
                scheme: if self.auth == "basic" {
                    AuthScheme::Basic
                } else {
                    AuthScheme::Digest
                },
                user: u.clone(),
                password: self.password.clone().unwrap_or_default(),
                realm: "Tandem simulated camera".into(),
                nonce: format!("{:016x}", rand::random::<u64>()),
            }),
            switch: None,
            ignore_key_frame_requests: self.ignore_key_frame_requests,
            motion: self.scripted().then(|| MotionScript {
                at: self.motion_at.clone(),
                every: self.motion_every,
            }),
        }
    }
    fn scripted(&self) -> bool {
        !self.motion_at.is_empty() || self.motion_every.is_some()
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let started = std::time::Instant::now();
        let video = Arc::new(
            tokio::task::spawn_blocking({
                let spec = a.spec();
                let scripted = a.scripted();
                let crossing = Duration::from_secs_f64(a.motion_duration.clamp(0.1, 600.0));
                move || {
                    if scripted {
                        sim::encode_scripted(&spec, Duration::from_secs(4), crossing)
                    } else {
                        sim::encode_loop(&spec)
                    }
                }
            })
            .await??,
        );
        tracing::info!(
            frames = video.frames.len(),
            kbps = format!("{:.0}", video.mean_bitrate_kbps()),
            encode_ms = started.elapsed().as_millis() as u64,
            "simulated video encoded"
        );
        let mut opts = a.options();
        if let (Some((w, h)), Some(after)) = (a.switch_resolution, a.switch_after_s) {
            let spec = VideoSpec {
                width: w,
                height: h,
                ..a.spec()
            };
            let alt = Arc::new(tokio::task::spawn_blocking(move || sim::encode_loop(&spec)).await??);
            opts.switch = Some((alt, Duration::from_secs_f64(after)));
        }
        let server = sim::start_with_edge(a.listen, video, opts, a.edge_storage).await?;
        for i in 1..=a.count {
            println!("{}", server.url(i));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        super::shutdown_signal().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
