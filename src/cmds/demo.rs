//! `tandem demo`: simulated cameras with an object crossing the scene once a
//! minute, recorded under the seed's example policy — channel 1
//! `continuous+events` with motion detection, channel 2 `events` only (30 s
//! before, 2 minutes after) — with no configuration at all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tandem::config::{ChannelConfig, Config, MotionConfig, NetworkCamera, StorageConfig, Transport};
use tandem::recording::{EventPolicy, Mode, RecordingPolicy, Schedule};
use tandem::sim::{self, MotionScript, SimOptions, VideoSpec};
use tandem::store::retention::RetentionPolicy;

#[derive(clap::Args)]
pub struct Args {
    /// Where to store footage.
    #[arg(long, default_value = "tandem-data")]
    data: PathBuf,
    /// HTTP address of the API and web page.
    #[arg(long, default_value = tandem::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Number of simulated cameras (one channel each; odd channels record
    /// continuous+events, even ones events only).
    #[arg(long, default_value_t = 2)]
    cameras: u32,
    /// Seconds between the object's crossings.
    #[arg(long, default_value_t = 60.0)]
    motion_every: f64,
}

const DAY: i64 = 86_400 * 90_000;

pub fn run(a: Args) -> Result<ExitCode> {
    super::runtime()?.block_on(async move {
        // Each camera has a main stream (recorded) and a substream (motion
        // detection), both showing the same scripted scene.
        let main = VideoSpec {
            width: 1280,
            height: 720,
            fps: 25,
            gop: 25,
            bitrate_kbps: 2000,
        };
        let sub = VideoSpec {
            width: 640,
            height: 360,
            fps: 10,
            gop: 10,
            bitrate_kbps: 500,
        };
        let crossing = Duration::from_secs(6);
        let still = Duration::from_secs(4);
        let (main_video, sub_video) = tokio::try_join!(
            tokio::task::spawn_blocking(move || sim::encode_scripted(&main, still, crossing)),
            tokio::task::spawn_blocking(move || sim::encode_scripted(&sub, still, crossing)),
        )?;
        let opts = SimOptions {
            count: a.cameras,
            first_id: 1,
            setup_delay: Duration::ZERO,
            auth: None,
            switch: None,
            motion: Some(MotionScript {
                at: vec![20.0],
                every: Some(a.motion_every.max(10.0)),
            }),
            ignore_key_frame_requests: false,
        };
        let sub_opts = SimOptions {
            first_id: 101,
            ..opts.clone()
        };
        let server = sim::start("127.0.0.1:0".parse()?, Arc::new(main_video?), opts).await?;
        let sub_server = sim::start("127.0.0.1:0".parse()?, Arc::new(sub_video?), sub_opts).await?;
        let cameras: Vec<NetworkCamera> = (1..=a.cameras)
            .map(|i| NetworkCamera {
                name: format!("sim{i}"),
                url: url::Url::parse(&server.url(i)).expect("simulated camera URL parses"),
                substream_url: Some(url::Url::parse(&sub_server.url(i)).expect("substream URL parses")),
                channel: None,
                transport: Transport::Tcp,
                credentials: None,
                edge_storage: false,
                replay_url: None,
                priority: Default::default(),
            })
            .collect();
        let channels = (1..=a.cameras)
            .map(|i| {
                let mode = if i % 2 == 1 {
                    Mode::ContinuousEvents
                } else {
                    Mode::Events
                };
                ChannelConfig {
                    number: i,
                    name: format!("Simulated camera {i} ({})", mode.as_str()),
                    camera: Some(format!("sim{i}")),
                    retention: RetentionPolicy {
                        max_age: Some(7 * DAY),
                        event_max_age: Some(30 * DAY),
                        max_bytes: Some(2 << 30),
                    },
                    recording: RecordingPolicy {
                        schedule: Schedule::always(mode),
                        events: EventPolicy::default(),
                    },
                    motion: Some(MotionConfig::default()),
                }
            })
            .collect();
        let config = Config {
            storage: StorageConfig {
                dir: a.data.clone(),
                ..Default::default()
            },
            listen: a.listen,
            http: Default::default(),
            cameras,
            channels,
            rules: Vec::new(),
            failover: Default::default(),
            mqtt: None,
            triggers: Vec::new(),
            actions: Vec::new(),
            access: Default::default(),
            ..Default::default()
        };
        let password = demo_admin(&a.data)?;
        super::run_nvr(config, None, |addr| {
            println!("Tandem demo");
            for i in 1..=a.cameras {
                println!(
                    "  simulated camera {i}: {} (substream {})  → channel {i}",
                    server.url(i),
                    sub_server.url(i)
                );
            }
            println!("  an object crosses every scene 20 s after start, then every {} s", a.motion_every.max(10.0));
            println!("  channel 1: continuous+events, motion detection on; channel 2: events only (30 s before, 2 min after)");
            println!("  recording into:   {}", a.data.display());
            match &password {
                Some(pw) => println!("  login: admin  password: {pw}"),
                None => println!(
                    "  login: admin (its password was changed; reset it with `tandem user passwd admin --data {}`)",
                    a.data.display()
                ),
            }
            println!("  web page:         http://{addr}/");
            println!("  channels (JSON):  http://{addr}/api/v1/channels");
            println!("  events:           http://{addr}/api/v1/events?channel=1");
            println!("  recordings:       http://{addr}/api/v1/channels/2/recordings?start=…&end=…");
            println!("  clip:             http://{addr}/api/v1/channels/1/clip.mp4?start=…&end=…");
            println!("  an API token:     TOKEN=$(tandem user token admin --data {})", a.data.display());
            println!("  trigger an event: curl -X POST http://{addr}/api/v1/channels/2/events -H \"Authorization: Bearer $TOKEN\" -d '{{\"type\":\"door\",\"action\":\"pulse\",\"duration\":5}}' -H 'Content-Type: application/json'");
            println!("Press Ctrl-C to stop.");
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The demo's way in: on the first start of a data directory, an `admin`
/// user with a random password kept in `DATA/demo-admin-password` (mode 0600)
/// so a later start can print it again. `None` when the admin's password no
/// longer matches the file (someone changed it).
fn demo_admin(data: &std::path::Path) -> Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let conn = tandem::store::db::open_dir(data).map_err(anyhow::Error::msg)?;
    let file = data.join("demo-admin-password");
    if tandem::auth::users::count(&conn)? > 0 {
        let kept = std::fs::read_to_string(&file).ok().map(|s| s.trim().to_string());
        let still = match (&kept, tandem::auth::users::get(&conn, "admin")?) {
            (Some(pw), Some((_, hash))) => tandem::auth::password::verify(pw, &hash),
            _ => false,
        };
        return Ok(kept.filter(|_| still));
    }
    // 18 random bytes: 24 characters, well past the 12-character minimum.
    let pw = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    std::io::Write::write_all(&mut f, format!("{pw}\n").as_bytes())?;
    f.sync_all()?;
    tandem::auth::users::add(
        &conn,
        "admin",
        tandem::auth::Role::Admin,
        None,
        &pw,
        tandem::web::access::now_ms(),
    )?;
    Ok(Some(pw))
}
