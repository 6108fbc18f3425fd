//! `tandem bench serve`: playback serving beside recording. N simulated
//! cameras record on N channels; once a stretch of footage is stored (and in
//! the page cache), C concurrent clients download `clip.mp4` of it in a loop
//! for S seconds while recording goes on. Measures the bytes per second in
//! total, the NVR's CPU (from /proc) and so the bytes per second per core,
//! and the frames recording lost meanwhile (from the cameras' stamps, as
//! `bench ingest` counts them; must be 0). Then the transport's ceiling: the
//! same client against `python3 -m http.server` serving one of those clips
//! as a file (and nginx, when installed), with its CPU.
//!
//! The machine's cores are shared by the clients, the cameras and the
//! server: the client's own CPU is reported so the figures can be read
//! honestly. Must never leave its data behind (its directory is removed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tandem::lab::Procs;
use tandem::time::Time90k;

use super::bench::{cpu_seconds, free_port, in_fresh_dir, start_cameras, wait_connected, write_config, CameraArgs};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Cameras recording throughout (1080p25 4 Mbit/s unless told otherwise).
    #[arg(long, default_value_t = 4)]
    cameras: u32,
    #[command(flatten)]
    camera: CameraArgs,
    /// Concurrent downloading clients.
    #[arg(long, default_value_t = 32)]
    clients: u32,
    /// Seconds of footage each downloaded clip holds.
    #[arg(long, default_value_t = 20)]
    clip_seconds: u64,
    /// Seconds each server is measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Where recordings go during the run (removed afterwards).
    #[arg(long, default_value = "bench-serve-data")]
    dir: PathBuf,
    #[arg(long, default_value = "bench-serve.json")]
    json: PathBuf,
}

/// One HTTP/1.1 connection that GETs and reads (and drops) whole answers,
/// opened again when the server closes it (HTTP/1.0, `Connection: close`).
struct Downloader {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    scratch: Vec<u8>,
}

impl Downloader {
    fn new(addr: &str) -> Downloader {
        Downloader {
            addr: addr.to_string(),
            stream: None,
            scratch: vec![0; 1 << 20],
        }
    }

    /// GETs `target`, writing the body to `keep` if given; the status and
    /// the body's length.
    fn get(&mut self, target: &str, bearer: Option<&str>, mut keep: Option<&mut Vec<u8>>) -> Result<(u16, u64)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.stream = Some(BufReader::with_capacity(64 * 1024, s));
        }
        let r = self.stream.as_mut().context("connection")?;
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            r.get_mut(),
            "GET {target} HTTP/1.1\r\nHost: {}\r\n{auth}\r\n",
            self.addr
        )?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status: u16 = line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut close = line.starts_with("HTTP/1.0");
        let mut len = None;
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<u64>().ok();
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        let len = len.context("an answer without Content-Length")?;
        // What the reader buffered, then straight from the socket in large reads.
        let mut left = len;
        while left > 0 {
            let buffered = r.buffer().len();
            let n = if buffered > 0 {
                let n = buffered.min(left as usize);
                if let Some(k) = keep.as_deref_mut() {
                    k.extend_from_slice(&r.buffer()[..n]);
                }
                r.consume(n);
                n
            } else {
                let want = (left as usize).min(self.scratch.len());
                let n = r.get_mut().read(&mut self.scratch[..want])?;
                if let Some(k) = keep.as_deref_mut() {
                    k.extend_from_slice(&self.scratch[..n]);
                }
                n
            };
            if n == 0 {
                bail!("the body ended after {} of {len} bytes", len - left);
            }
            left -= n as u64;
        }
        if close {
            self.stream = None;
        }
        Ok((status, len))
    }
}

/// What one server delivered to the clients.
#[derive(serde::Serialize, Clone, Debug, Default)]
struct Delivered {
    server: String,
    requests: u64,
    /// Requests whose connection was refused or reset (tried again).
    failed: u64,
    bytes: u64,
    seconds: f64,
    bytes_per_s: f64,
    /// The server's CPU over the window, in cores (1.0: one core busy).
    server_cores: f64,
    bytes_per_s_per_server_core: f64,
    /// The clients' own CPU (this process), in cores.
    client_cores: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `clients` connections download `targets[i % len]` in a loop for `secs`;
/// every answer must be 200.
fn download(
    server: &str,
    addr: &str,
    targets: &[String],
    bearer: Option<&str>,
    clients: u32,
    secs: u64,
    server_pid: u32,
) -> Result<Delivered> {
    let (c0, s0) = (cpu_seconds(server_pid)?, cpu_seconds(std::process::id())?);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let results: Vec<Result<(Vec<Duration>, u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients as usize)
            .map(|i| {
                s.spawn(move || -> Result<(Vec<Duration>, u64, u64)> {
                    let mut d = Downloader::new(addr);
                    let target = &targets[i % targets.len()];
                    let (mut lat, mut bytes, mut failed) = (Vec::new(), 0u64, 0u64);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        match d.get(target, bearer, None) {
                            Ok((200, n)) => {
                                lat.push(t.elapsed());
                                bytes += n;
                            }
                            Ok((status, _)) => bail!("{target} answered {status}"),
                            // A refused or reset connection (a server's full
                            // accept queue) is counted and tried again.
                            Err(_) => {
                                d.stream = None;
                                failed += 1;
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                    Ok((lat, bytes, failed))
                })
            })
            .collect();
        super::bench::join_clients(handles)
    });
    let seconds = started.elapsed().as_secs_f64();
    let (c1, s1) = (cpu_seconds(server_pid)?, cpu_seconds(std::process::id())?);
    let (mut lat, mut bytes, mut failed) = (Vec::new(), 0u64, 0u64);
    for r in results {
        let (l, b, f) = r?;
        lat.extend(l);
        bytes += b;
        failed += f;
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let server_cores = (c1 - c0) / seconds;
    let bytes_per_s = bytes as f64 / seconds;
    Ok(Delivered {
        server: server.to_string(),
        requests: lat.len() as u64,
        failed,
        bytes,
        seconds,
        bytes_per_s,
        server_cores,
        bytes_per_s_per_server_core: bytes_per_s / server_cores.max(1e-6),
        client_cores: (s1 - s0) / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

/// Waits (up to 20 s) until something accepts connections on `addr`.
fn wait_listening(addr: &str) -> Result<()> {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    in_fresh_dir(&a.dir, || run_in(&a))
}

/// Recording, the clip downloads beside it, the audit of what recording lost.
struct Measured {
    tandem: Delivered,
    clip_bytes: Vec<u64>,
    frames_found: u64,
    frames_lost: u64,
}

fn run_in(a: &ServeArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let ceiling_dir = std::path::absolute(a.dir.join("ceiling"))?;
    std::fs::create_dir_all(&ceiling_dir)?;
    let m = tandem_side(a, &exe, &ceiling_dir.join("clip.mp4"))?;
    let mut ceilings = vec![python_side(a, &ceiling_dir)?];
    if let Some(n) = nginx_side(a, &ceiling_dir)? {
        ceilings.push(n);
    }
    report(a, &m, &ceilings)
}

fn tandem_side(a: &ServeArgs, exe: &Path, clip_file: &Path) -> Result<Measured> {
    let c = a.camera;
    eprintln!(
        "starting {} simulated {}x{} {} fps {} kbit/s cameras…",
        a.cameras, c.width, c.height, c.fps, c.bitrate_kbps
    );
    let (sim, urls) = start_cameras(exe, a.cameras, c.width, c.height, c.fps, c.bitrate_kbps)?;
    let mut guard = Procs(vec![sim]);
    let data = std::path::absolute(a.dir.join("store"))?;
    let port = free_port()?;
    let cfg = write_config(&a.dir, &data, port, &urls, "")?;
    let token = tandem::auth::client::mint_admin_token(&data, "bench")?;
    let nvr = Command::new(exe)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("TANDEM_LOG", "warn")
        .spawn()?;
    let nvr_pid = nvr.id();
    guard.0.push(nvr);
    let addr = format!("127.0.0.1:{port}");
    wait_connected(&format!("http://{addr}"), &token, a.cameras)?;
    let start = Time90k::from_system(std::time::SystemTime::now()) + 90_000;
    eprintln!("recording {} s of footage…", a.clip_seconds);
    std::thread::sleep(Duration::from_secs(a.clip_seconds + 3));
    let end = start + a.clip_seconds as i64 * tandem::time::TICKS_PER_SEC;
    let range = format!("start={}&end={}", start.to_rfc3339(), end.to_rfc3339());
    let targets: Vec<String> = (1..=a.cameras)
        .map(|ch| format!("/api/v1/channels/{ch}/clip.mp4?{range}"))
        .collect();
    // Each clip once (into the page cache), the first kept as the file the
    // transport ceiling serves.
    let mut clip_bytes = Vec::new();
    let mut d = Downloader::new(&addr);
    let mut first = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let keep = (i == 0).then_some(&mut first);
        let (status, n) = d.get(t, Some(&token), keep)?;
        if status != 200 || n == 0 {
            bail!("{t} answered {status} with {n} bytes: nothing recorded?");
        }
        clip_bytes.push(n);
    }
    std::fs::write(clip_file, &first)?;
    eprintln!(
        "{} clients downloading {} s clips from Tandem for {} s while it records…",
        a.clients, a.clip_seconds, a.seconds
    );
    let t0 = Time90k::from_system(std::time::SystemTime::now());
    let tandem = download(
        "tandem clip.mp4",
        &addr,
        &targets,
        Some(&token),
        a.clients,
        a.seconds,
        nvr_pid,
    )?;
    let t1 = Time90k::from_system(std::time::SystemTime::now());
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut guard)?;
    let reader = tandem::store::Reader::new(data);
    let (mut frames_found, mut frames_lost) = (0, 0);
    for ch in 1..=a.cameras {
        // The edges skipped: a frame in flight at t0/t1 is not a loss.
        let r = tandem::audit::audit_store(&reader, ch, t0 + 45_000, t1 + -45_000)?;
        frames_found += r.frames_found;
        frames_lost += r.frames_lost;
    }
    drop(guard);
    Ok(Measured {
        tandem,
        clip_bytes,
        frames_found,
        frames_lost,
    })
}

/// Stops the NVR (the last process) cleanly, so its last frames are stored.
fn stop(guard: &mut Procs) -> Result<()> {
    let mut nvr: Child = guard.0.pop().context("the NVR's process")?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(nvr.id() as i32, libc::SIGTERM) };
    nvr.wait()?;
    Ok(())
}

fn python_side(a: &ServeArgs, dir: &Path) -> Result<Delivered> {
    let port = free_port()?;
    let py = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running python3 -m http.server")?;
    let pid = py.id();
    let _guard = Procs(vec![py]);
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr)?;
    eprintln!("the same clients against python3 -m http.server for {} s…", a.seconds);
    download(
        "python3 -m http.server",
        &addr,
        &["/clip.mp4".to_string()],
        None,
        a.clients,
        a.seconds,
        pid,
    )
}

/// nginx serving the same file with sendfile, if nginx is installed.
fn nginx_side(a: &ServeArgs, dir: &Path) -> Result<Option<Delivered>> {
    if Command::new("nginx").arg("-v").stderr(Stdio::null()).status().is_err() {
        eprintln!("nginx is not installed; python3 -m http.server is the only ceiling");
        return Ok(None);
    }
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; worker_processes 1; pid {0}/nginx.pid; error_log {0}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {0};\n\
             server {{ listen 127.0.0.1:{port}; root {0}; }} }}\n",
            dir.display()
        ),
    )?;
    let ng = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = ng.id();
    let _guard = Procs(vec![ng]);
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr)?;
    eprintln!("the same clients against nginx (sendfile) for {} s…", a.seconds);
    Ok(Some(download(
        "nginx (sendfile)",
        &addr,
        &["/clip.mp4".to_string()],
        None,
        a.clients,
        a.seconds,
        pid,
    )?))
}

fn report(a: &ServeArgs, m: &Measured, ceilings: &[Delivered]) -> Result<ExitCode> {
    let mib = |b: f64| b / 1048576.0;
    println!();
    println!(
        "serve benchmark: {} clients downloading {} s clips ({:.1} MiB each) for {} s; {} cameras ({}x{} {} fps {} kbit/s) recording",
        a.clients,
        a.clip_seconds,
        mib(m.clip_bytes.iter().sum::<u64>() as f64 / m.clip_bytes.len().max(1) as f64),
        a.seconds,
        a.cameras,
        a.camera.width,
        a.camera.height,
        a.camera.fps,
        a.camera.bitrate_kbps
    );
    println!(
        "{:<26} {:>10} {:>7} {:>10} {:>12} {:>16} {:>12} {:>9} {:>9}",
        "server", "requests", "failed", "MiB/s", "server cores", "MiB/s per core", "client cores", "p50 ms", "p99 ms"
    );
    for d in std::iter::once(&m.tandem).chain(ceilings) {
        println!(
            "{:<26} {:>10} {:>7} {:>10.0} {:>12.2} {:>16.0} {:>12.2} {:>9.1} {:>9.1}",
            d.server,
            d.requests,
            d.failed,
            mib(d.bytes_per_s),
            d.server_cores,
            mib(d.bytes_per_s_per_server_core),
            d.client_cores,
            d.p50_ms,
            d.p99_ms
        );
    }
    println!(
        "recording meanwhile: {} frames found, {} lost (target 0); total target ≥ 1 GB/s: {:.2} GB/s",
        m.frames_found,
        m.frames_lost,
        m.tandem.bytes_per_s / 1e9
    );
    for c in ceilings {
        println!(
            "tandem / {}: {:.2}× the bytes per second, {:.2}× the bytes per second per core",
            c.server,
            m.tandem.bytes_per_s / c.bytes_per_s.max(1.0),
            m.tandem.bytes_per_s_per_server_core / c.bytes_per_s_per_server_core.max(1.0)
        );
    }
    let json = serde_json::json!({
        "benchmark": "serve",
        "cameras": a.cameras, "width": a.camera.width, "height": a.camera.height, "fps": a.camera.fps,
        "bitrate_kbps": a.camera.bitrate_kbps, "clients": a.clients, "clip_seconds": a.clip_seconds,
        "seconds": a.seconds, "clip_bytes": m.clip_bytes,
        "tandem": m.tandem,
        "recording": { "frames_found": m.frames_found, "frames_lost": m.frames_lost },
        "ceilings": ceilings,
    });
    std::fs::write(&a.json, serde_json::to_string_pretty(&json)?)?;
    println!("\nwrote {}", a.json.display());
    Ok(ExitCode::SUCCESS)
}
