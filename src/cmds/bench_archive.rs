//! `tandem bench archive`: how fast the archiver moves footage to an
//! S3-compatible server against how fast new footage arrives. N channels of
//! stamped frames at a bitrate are recorded through the real store on
//! simulated time, then the archiver's passes upload every closed segment
//! (multipart, read back and checked), once per bandwidth cap. Per cap: the
//! upload rate (upload and verification, wall clock), the rate footage of
//! those channels arrives in real time, their ratio (how many such sites
//! one archiver keeps up with), and an audit of both tiers (frames lost,
//! must be 0). Starts moto's S3 server itself unless given `--endpoint`.
//! Prints a table and writes JSON.
//!
//! Must never judge its own results by timing in tests: the smoke test
//! checks the counts only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tandem::archive::task::Archiver;
use tandem::config::archive::{ArchiveCredentials, ArchiveSettings};
use tandem::nal::FrameStamp;
use tandem::recording::{Mode, RecordingPolicy, Schedule};
use tandem::store::{Command as StoreCommand, Frame, SampleEntry, Store, StoreConfig};
use tandem::time::{SystemClock, Time90k};

#[derive(clap::Args)]
pub struct ArchiveArgs {
    #[arg(long, default_value_t = 4)]
    channels: u32,
    /// Seconds of footage per channel.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    #[arg(long, default_value_t = 4000)]
    bitrate_kbps: u32,
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// `storage.segment_duration`: at 4 Mbit/s a minute is 30 MB, four
    /// multipart parts.
    #[arg(long, default_value_t = 60)]
    segment_seconds: u32,
    /// Bandwidth caps to measure, comma-separated ("0" is uncapped).
    #[arg(long, default_value = "0,20MiB,8MiB", value_delimiter = ',')]
    caps: Vec<String>,
    /// An S3-compatible server whose bucket `--url` exists; default: start
    /// moto's server (`--moto`) on a free port.
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, default_value = "s3://bench/tandem")]
    url: String,
    /// Credentials file for `--endpoint` (default: the environment).
    #[arg(long)]
    credentials: Option<PathBuf>,
    #[arg(long, default_value = "/opt/tandem-test/moto/bin/moto_server")]
    moto: PathBuf,
    /// Where the stores go during the run (removed afterwards).
    #[arg(long, default_value = "bench-archive-data")]
    dir: PathBuf,
    #[arg(long, default_value = "bench-archive.json")]
    json: PathBuf,
}

#[derive(serde::Serialize)]
struct CapResult {
    cap_bytes_per_s: Option<u64>,
    segments: usize,
    bytes: u64,
    seconds: f64,
    upload_mib_per_s: f64,
    arrival_mib_per_s: f64,
    /// Upload rate ÷ arrival rate: ≥ 1 keeps up.
    ratio: f64,
    frames_recorded: u64,
    frames_found: u64,
    frames_lost: u64,
    errors: Vec<String>,
}

#[derive(serde::Serialize)]
struct Report {
    channels: u32,
    seconds: u32,
    bitrate_kbps: u32,
    fps: u32,
    segment_seconds: u32,
    server: String,
    part_bytes: usize,
    results: Vec<CapResult>,
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto(bin: &Path, bucket: &str) -> Result<(Moto, String)> {
    if !bin.exists() {
        bail!(
            "{} not found: give --endpoint, or install moto (scripts/test as root does)",
            bin.display()
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match tandem::httpc::request("PUT", &format!("{endpoint}/{bucket}"), &[], b"") {
            Ok(r) if r.status == 200 => return Ok((moto, endpoint)),
            _ if Instant::now() < until => std::thread::sleep(Duration::from_millis(200)),
            Ok(r) => bail!("moto answered {} to creating the bucket", r.status),
            Err(e) => bail!("moto did not answer: {e}"),
        }
    }
}

fn frame_data(channel: u32, n: u64, size: usize, t_us: i64) -> Vec<u8> {
    let sei = FrameStamp {
        camera_id: channel,
        seq: n,
        capture_unix_micros: t_us,
        boot_id: 1,
    }
    .to_h264_sei();
    let pad = size.saturating_sub(sei.len() + 12).max(8);
    let mut slice = vec![0x65, 0x88, 0x84];
    slice.extend((0..pad).map(|i| (i as u64 * 131 + n) as u8 | 1));
    let mut data = Vec::with_capacity(size + 16);
    for nal in [&sei[..], &slice[..]] {
        data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        data.extend_from_slice(nal);
    }
    data
}

const T0_US: i64 = 1_800_000_000_000_000;

/// Records the channels on simulated time; returns the store and the end.
fn record(dir: &Path, a: &ArchiveArgs) -> Result<(Store, Time90k, u64)> {
    let mut entry = vec![0u8; 86];
    entry[4..8].copy_from_slice(b"avc1");
    let entry = Arc::new(SampleEntry::parse(entry).context("sample entry")?);
    let recording = (1..=a.channels)
        .map(|c| {
            (
                c,
                RecordingPolicy {
                    schedule: Schedule::always(Mode::Continuous),
                    events: Default::default(),
                },
            )
        })
        .collect();
    let (store, _) = Store::open(
        StoreConfig {
            dir: dir.to_path_buf(),
            flush_interval: Duration::from_secs(1),
            segment_duration: Duration::from_secs(u64::from(a.segment_seconds.max(1))),
            min_free_bytes: 0,
            policies: HashMap::new(),
            recording,
            notifier: None,
            import: Default::default(),
            write_buffer: 128 << 20,
        },
        Arc::new(SystemClock),
    )?;
    let tx = store.sender();
    let fps = u64::from(a.fps.max(1));
    let frames = u64::from(a.seconds) * fps;
    let size = (u64::from(a.bitrate_kbps) * 1000 / 8 / fps) as usize;
    for n in 0..frames {
        let t_us = T0_US + (n * 1_000_000 / fps) as i64;
        for c in 1..=a.channels {
            tx.send(StoreCommand::Frame(Frame {
                channel: c,
                run: 1,
                time: Time90k::from_unix_micros(t_us),
                key: n % fps == 0,
                sample_entry: entry.clone(),
                data: frame_data(c, n, size, t_us).into(),
                capture_offset: None,
            }))
            .map_err(|_| anyhow::anyhow!("the store writer stopped"))?;
        }
        if n % fps == fps - 1 {
            store.sync();
        }
    }
    store.sync();
    let end = Time90k::from_unix_micros(T0_US + (frames * 1_000_000 / fps) as i64);
    Ok((store, end, frames * u64::from(a.channels)))
}

pub fn run(a: ArchiveArgs) -> Result<ExitCode> {
    let (bucket, prefix) = tandem::config::archive::parse_url(&a.url).map_err(|e| anyhow::anyhow!("--url: {e}"))?;
    let mut caps = Vec::new();
    for c in &a.caps {
        let t = c.trim().trim_end_matches("/s");
        let b = tandem::config::units::parse_bytes(t).map_err(|e| anyhow::anyhow!("--caps: {e}"))?;
        caps.push((b > 0).then_some(b));
    }
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir)?;
    let (moto, endpoint, credentials) = match &a.endpoint {
        Some(e) => (
            None,
            e.clone(),
            a.credentials
                .clone()
                .map_or(ArchiveCredentials::Env, ArchiveCredentials::File),
        ),
        None => {
            let (m, e) = start_moto(&a.moto, &bucket)?;
            let creds = a.dir.join("credentials");
            std::fs::write(&creds, "aws_access_key_id = bench\naws_secret_access_key = bench\n")?;
            (Some(m), e, ArchiveCredentials::File(creds))
        }
    };
    let mut results = Vec::new();
    for (i, cap) in caps.iter().enumerate() {
        let dir = a.dir.join(format!("store-{i}"));
        let (store, end, recorded) = record(&dir, &a)?;
        let settings = ArchiveSettings {
            bucket: bucket.clone(),
            prefix: format!("{prefix}/run-{i}").trim_start_matches('/').to_string(),
            endpoint: Some(endpoint.clone()),
            region: "us-east-1".into(),
            after: Duration::from_secs(1),
            max_age: None,
            bandwidth: cap.unwrap_or(1 << 40),
            credentials: credentials.clone(),
            virtual_hosted: false,
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut archiver = Archiver::open(&dir, &settings)?;
        let (mut bytes, mut segments, mut errors) = (0u64, 0usize, Vec::new());
        let started = Instant::now();
        loop {
            let r = rt.block_on(archiver.pass(end + 3600 * 90_000))?;
            bytes += r.bytes;
            segments += r.uploaded;
            errors.extend(r.errors);
            if r.uploaded == 0 || !errors.is_empty() {
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let mut found = 0;
        let mut lost = 0;
        for c in 1..=a.channels {
            let audit = tandem::audit::audit_store(&store.reader(), c, Time90k(0), end)?;
            found += audit.frames_found;
            lost += audit.cameras.iter().map(|c| c.frames_lost).sum::<u64>();
        }
        store.shutdown();
        let arrival = f64::from(a.channels) * f64::from(a.bitrate_kbps) * 1000.0 / 8.0;
        let rate = bytes as f64 / seconds.max(1e-9);
        results.push(CapResult {
            cap_bytes_per_s: *cap,
            segments,
            bytes,
            seconds,
            upload_mib_per_s: rate / (1 << 20) as f64,
            arrival_mib_per_s: arrival / (1 << 20) as f64,
            ratio: rate / arrival,
            frames_recorded: recorded,
            frames_found: found,
            frames_lost: lost,
            errors,
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(moto);
    let server = if a.endpoint.is_some() {
        endpoint
    } else {
        "moto_server (loopback)".to_string()
    };
    let report = Report {
        channels: a.channels,
        seconds: a.seconds,
        bitrate_kbps: a.bitrate_kbps,
        fps: a.fps,
        segment_seconds: a.segment_seconds,
        server,
        part_bytes: tandem::archive::task::DEFAULT_PART_SIZE,
        results,
    };
    print(&report);
    std::fs::write(&a.json, serde_json::to_string_pretty(&report)?)?;
    println!("\nwrote {}", a.json.display());
    let _ = std::fs::remove_dir_all(&a.dir);
    let bad = report.results.iter().any(|r| r.frames_lost > 0 || !r.errors.is_empty());
    Ok(if bad { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn print(r: &Report) {
    println!(
        "archive upload: {} channels × {} kbit/s × {} s ({} fps, {}-s segments, {} MiB parts), {}; read back and checked",
        r.channels,
        r.bitrate_kbps,
        r.seconds,
        r.fps,
        r.segment_seconds,
        r.part_bytes >> 20,
        r.server
    );
    println!(
        "{:>10} {:>9} {:>10} {:>8} {:>12} {:>12} {:>7} {:>12} {:>6}",
        "cap MiB/s", "segments", "MiB", "s", "upload MiB/s", "arrive MiB/s", "ratio", "frames found", "lost"
    );
    for x in &r.results {
        let cap = x
            .cap_bytes_per_s
            .map_or("none".to_string(), |c| format!("{:.1}", c as f64 / (1 << 20) as f64));
        println!(
            "{:>10} {:>9} {:>10.1} {:>8.2} {:>12.2} {:>12.2} {:>7.1} {:>12} {:>6}",
            cap,
            x.segments,
            x.bytes as f64 / (1 << 20) as f64,
            x.seconds,
            x.upload_mib_per_s,
            x.arrival_mib_per_s,
            x.ratio,
            x.frames_found,
            x.frames_lost
        );
        for e in &x.errors {
            println!("{:>10} error: {e}", "");
        }
    }
}
