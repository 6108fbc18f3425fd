//! `tandem hostile-camera`: serves the hostile camera (`sim::hostile`) for
//! tests and load harnesses; prints one URL per misbehaviour.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use tandem::sim::hostile::{self, HostileVideo, Mode};
use tandem::sim::{self, VideoSpec};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Address to serve RTSP on; each misbehaviour is at rtsp://ADDR/<mode>.
    #[arg(long, default_value = "127.0.0.1:8555")]
    pub listen: SocketAddr,
    /// Camera id stamped into the first mode's valid frames; the others
    /// count up in the order the URLs are printed.
    #[arg(long, default_value_t = 900)]
    pub first_id: u32,
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    #[arg(long, default_value_t = 320)]
    pub width: u32,
    #[arg(long, default_value_t = 180)]
    pub height: u32,
    #[arg(long, default_value_t = 400)]
    pub bitrate_kbps: u32,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let spec = VideoSpec {
            width: a.width,
            height: a.height,
            fps: a.fps,
            gop: a.fps,
            bitrate_kbps: a.bitrate_kbps,
        };
        spec.validate()?;
        // Key frames only, at two sizes: two parameter sets that both decode.
        let storm = |w: u32, h: u32| VideoSpec {
            width: (w / 2).max(16) & !1,
            height: (h / 2).max(16) & !1,
            gop: 1,
            ..spec.clone()
        };
        let (main, a1, a2) = tokio::task::spawn_blocking({
            let (spec, s1, s2) = (
                spec.clone(),
                VideoSpec { gop: 1, ..spec.clone() },
                storm(a.width, a.height),
            );
            move || Ok::<_, anyhow::Error>((sim::encode_loop(&spec)?, sim::encode_loop(&s1)?, sim::encode_loop(&s2)?))
        })
        .await??;
        let video = HostileVideo {
            main: Arc::new(main),
            storm: [Arc::new(a1), Arc::new(a2)],
            first_id: a.first_id,
        };
        let server = hostile::start(a.listen, video).await?;
        for m in Mode::ALL {
            println!("{}", server.url(m));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        super::shutdown_signal().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
