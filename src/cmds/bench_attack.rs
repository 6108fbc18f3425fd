//! `tandem bench attack`: N simulated cameras recorded by Tandem, first
//! undisturbed, then while the load harness attacks the NVR (trigger flood,
//! slow connections, a large import), in one run. Prints, per phase, frames
//! lost (from the cameras' stamps), the writer's frame-to-durable latency
//! (p50, p99) and how the attack fared; writes JSON. The undisturbed phase is
//! the peer the attacked one is compared with.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use super::bench::{free_port, in_fresh_dir, start_cameras, wait_connected, write_config};
use anyhow::{Context, Result};
use tandem::lab::attack::{self, Plan};
use tandem::lab::Procs;
use tandem::store::health::Histogram;
use tandem::time::Time90k;

#[derive(clap::Args)]
pub struct AttackArgs {
    #[arg(long, default_value_t = 16)]
    channels: u32,
    /// Seconds of each phase (undisturbed, attacked).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 1000)]
    trigger_rate: u32,
    #[arg(long, default_value_t = 16)]
    trigger_clients: u32,
    #[arg(long, default_value_t = 1000)]
    slow: u32,
    #[arg(long, default_value_t = 1024)]
    import_mb: u64,
    /// The NVR's descriptor limit (as a small appliance's), via prlimit.
    #[arg(long, default_value_t = 4096)]
    nofile: u32,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value_t = 25)]
    fps: u32,
    #[arg(long, default_value_t = 2000)]
    bitrate_kbps: u32,
    #[arg(long, default_value = "bench-data")]
    dir: PathBuf,
    #[arg(long, default_value = "bench-attack.json")]
    json: PathBuf,
}

fn durable(base: &str, token: &str) -> Result<Histogram> {
    Histogram::from_json(&super::bench::store_status(base, token)?["writer"]["durable"])
        .context("no latency histogram in /api/v1/store")
}

#[derive(serde::Serialize)]
struct Phase {
    name: &'static str,
    frames_found: u64,
    frames_lost: u64,
    p50_ms: Option<u32>,
    p99_ms: Option<u32>,
    attack: Option<attack::Report>,
}

pub fn run(a: AttackArgs) -> Result<ExitCode> {
    in_fresh_dir(&a.dir, || run_in(&a))
}

fn run_in(a: &AttackArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    eprintln!("starting {} simulated {}x{} cameras…", a.channels, a.width, a.height);
    let (sim, urls) = start_cameras(&exe, a.channels, a.width, a.height, a.fps, a.bitrate_kbps)?;
    let mut guard = Procs(vec![sim]);
    let data = std::path::absolute(a.dir.join("store"))?;
    let port = free_port()?;
    let token = "bench-attack-peer-token";
    let cfg_path = write_config(
        &a.dir,
        &data,
        port,
        &urls,
        &format!("[failover]\npeer_token = \"{token}\"\n"),
    )?;
    let mut cmd = if tandem::lab::have("prlimit") {
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={}:{}", a.nofile, a.nofile)).arg(&exe);
        c
    } else {
        eprintln!("prlimit not found: the NVR runs with this shell's descriptor limit");
        Command::new(&exe)
    };
    let api_token = tandem::auth::client::mint_admin_token(&data, "bench")?;
    let nvr = cmd
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("TANDEM_LOG", "warn")
        .spawn()?;
    guard.0.push(nvr);
    let base = format!("http://127.0.0.1:{port}");
    wait_connected(&base, &api_token, a.channels)?;
    std::thread::sleep(Duration::from_secs(5));
    let now = || Time90k::from_system(std::time::SystemTime::now());

    eprintln!("undisturbed for {} s…", a.seconds);
    let (h0, t0) = (durable(&base, &api_token)?, now());
    std::thread::sleep(Duration::from_secs(a.seconds));
    let (h1, t1) = (durable(&base, &api_token)?, now());

    eprintln!(
        "attacked for {} s: {} triggers/s, {} slow connections, {} MB import…",
        a.seconds, a.trigger_rate, a.slow, a.import_mb
    );
    let plan = Plan {
        target: format!("127.0.0.1:{port}").parse()?,
        channels: (1..=a.channels).collect(),
        trigger_rate: a.trigger_rate,
        trigger_clients: a.trigger_clients,
        duration: Duration::from_secs(a.seconds),
        slow_connections: a.slow,
        import_bytes: a.import_mb << 20,
        import_channel: 1,
        peer_token: Some(token.into()),
        bearer: Some(api_token.clone()),
    };
    let (h2, t2) = (durable(&base, &api_token)?, now());
    let report = attack::run(&plan);
    let (h3, t3) = (durable(&base, &api_token)?, now());
    std::thread::sleep(Duration::from_secs(3));

    let reader = tandem::store::Reader::new(data.clone());
    let audit = |from: Time90k, to: Time90k| -> Result<(u64, u64)> {
        let (mut found, mut lost) = (0, 0);
        for ch in 1..=a.channels {
            let r = tandem::audit::audit_store(&reader, ch, from + 45_000, to + -45_000)?;
            found += r.frames_found;
            lost += r.frames_lost;
        }
        Ok((found, lost))
    };
    let phase = |name, (found, lost): (u64, u64), h: Histogram, attack| Phase {
        name,
        frames_found: found,
        frames_lost: lost,
        p50_ms: h.quantile_ms(0.5),
        p99_ms: h.quantile_ms(0.99),
        attack,
    };
    let phases = [
        phase("undisturbed", audit(t0, t1)?, h1.since(&h0), None),
        phase("attacked", audit(t2, t3)?, h3.since(&h2), Some(report)),
    ];
    println!(
        "\n{} channels of {}x{} {} fps; attack: {} triggers/s from {} clients, {} slow connections, {} MB import\n",
        a.channels, a.width, a.height, a.fps, a.trigger_rate, a.trigger_clients, a.slow, a.import_mb
    );
    println!(
        "| phase | frames found | frames lost | frame→durable p50 | p99 | triggers sent / accepted / refused 429 | slow conns opened / closed by NVR | import |"
    );
    println!("|---|---:|---:|---:|---:|---|---|---|");
    for p in &phases {
        let ms = |v: Option<u32>| v.map(|v| format!("≤ {v} ms")).unwrap_or("-".into());
        let (trig, slow, imp) = match &p.attack {
            Some(r) => (
                format!(
                    "{} / {} / {}",
                    r.triggers_sent(),
                    r.triggers_accepted(),
                    r.triggers.get("429").copied().unwrap_or(0)
                ),
                format!("{} / {}", r.slow_opened, r.slow_closed_by_nvr),
                format!(
                    "{} MB sent, answer {}",
                    r.import_bytes_sent >> 20,
                    r.import_status.map(|s| s.to_string()).unwrap_or("-".into())
                ),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {} | {} | {trig} | {slow} | {imp} |",
            p.name,
            p.frames_found,
            p.frames_lost,
            ms(p.p50_ms),
            ms(p.p99_ms)
        );
    }
    let json = serde_json::json!({ "args": {
        "channels": a.channels, "seconds": a.seconds, "trigger_rate": a.trigger_rate,
        "trigger_clients": a.trigger_clients, "slow": a.slow, "import_mb": a.import_mb, "nofile": a.nofile,
    }, "phases": phases });
    std::fs::write(&a.json, serde_json::to_string_pretty(&json)?)?;
    eprintln!("\nwrote {}", a.json.display());
    drop(guard);
    Ok(ExitCode::SUCCESS)
}
