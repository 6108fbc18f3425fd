use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tandem::config::{ChannelConfig, Config, NetworkCamera, StorageConfig, Transport};
use tandem::sim::{self, SimOptions, VideoSpec};
use tandem::store::retention::RetentionPolicy;

#[derive(clap::Args)]
pub struct Args {
    /// Where to store footage.
    #[arg(long, default_value = "tandem-data")]
    data: PathBuf,
    /// HTTP address of the API and web page.
    #[arg(long, default_value = tandem::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Number of simulated cameras (one channel each).
    #[arg(long, default_value_t = 2)]
    cameras: u32,
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::runtime()?.block_on(async move {
        let spec = VideoSpec {
            width: 1280,
            height: 720,
            fps: 25,
            gop: 25,
            bitrate_kbps: 2000,
        };
        let video = Arc::new(tokio::task::spawn_blocking(move || sim::encode_loop(&spec)).await??);
        let opts = SimOptions {
            count: a.cameras,
            first_id: 1,
            setup_delay: Duration::ZERO,
            auth: None,
            switch: None,
            motion: None,
        };
        let server = sim::start("127.0.0.1:0".parse()?, video, opts).await?;
        let cameras: Vec<NetworkCamera> = (1..=a.cameras)
            .map(|i| NetworkCamera {
                name: format!("sim{i}"),
                url: url::Url::parse(&server.url(i)).expect("simulated camera URL parses"),
                substream_url: None,
                channel: None,
                transport: Transport::Tcp,
                credentials: None,
            })
            .collect();
        let channels = (1..=a.cameras)
            .map(|i| ChannelConfig {
                number: i,
                name: format!("Simulated camera {i}"),
                camera: Some(format!("sim{i}")),
                recording: Default::default(),
                motion: None,
                retention: RetentionPolicy {
                    max_age: Some(7 * 86400 * 90_000),
                    max_bytes: Some(2 << 30),
                    ..Default::default()
                },
            })
            .collect();
        let config = Config {
            storage: StorageConfig {
                dir: a.data.clone(),
                ..Default::default()
            },
            listen: a.listen,
            cameras,
            channels,
            rules: Vec::new(),
            failover: Default::default(),
            mqtt: None,
            triggers: Vec::new(),
            actions: Vec::new(),
        };
        super::run_nvr(config, |addr| {
            println!("Tandem demo");
            for i in 1..=a.cameras {
                println!("  simulated camera {i}: {}  → channel {i}", server.url(i));
            }
            println!("  recording into:   {}", a.data.display());
            println!("  web page:         http://{addr}/");
            println!("  channels (JSON):  http://{addr}/api/v1/channels");
            println!("  recordings:       http://{addr}/api/v1/channels/1/recordings?start=…&end=…");
            println!("  clip:             http://{addr}/api/v1/channels/1/clip.mp4?start=…&end=…");
            println!("Press Ctrl-C to stop.");
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
