//! `tandem bench auth`: what authentication costs, in one run against the
//! real binary recording a simulated camera. Prints requests per second and
//! latency (p50, p99) of a bearer-authenticated `recordings` call beside the
//! public health check (which the access layer lets through untouched), the
//! throughput of an authenticated clip download, and the time of one login
//! and of one Argon2id hash with the parameters `auth::password` uses. Writes
//! the figures as JSON.
//!
//! The token is obtained as a script would: `tandem user add`, then
//! `POST /api/v1/login` and `POST /api/v1/tokens` (`acquire_token`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use super::bench::{in_fresh_dir, one_camera_nvr, CameraArgs};
use anyhow::{bail, Context, Result};
use tandem::time::Time90k;

#[derive(clap::Args)]
pub struct AuthArgs {
    /// Seconds each request case is measured.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive clients per case.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Seconds of footage recorded before measuring (the downloaded clip's length).
    #[arg(long, default_value_t = 20)]
    footage_seconds: u64,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value_t = 25)]
    fps: u32,
    #[arg(long, default_value_t = 4000)]
    bitrate_kbps: u32,
    #[arg(long, default_value = "bench-data")]
    dir: PathBuf,
    #[arg(long, default_value = "bench-auth.json")]
    json: PathBuf,
}

const USER: &str = "bench";
const PASSWORD: &str = "bench-password-long-enough";

pub fn run(a: AuthArgs) -> Result<ExitCode> {
    in_fresh_dir(&a.dir, || run_in(&a))
}

/// A bearer token for `user`, obtained as a script would: log in (a session
/// cookie and its CSRF token), then create an API token with that session.
pub fn acquire_token(base: &str, user: &str, password: &str) -> Result<String> {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    let r = tandem::httpc::request(
        "POST",
        &format!("{base}/api/v1/login"),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )?;
    if r.status != 200 {
        bail!("login answered {}: {}", r.status, String::from_utf8_lossy(&r.body));
    }
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .context("login set no cookie")?
        .to_string();
    let csrf = r.json()?["csrf_token"]
        .as_str()
        .context("login answered no csrf_token")?
        .to_string();
    let body = serde_json::json!({ "name": "bench" }).to_string();
    let r = tandem::httpc::request(
        "POST",
        &format!("{base}/api/v1/tokens"),
        &[
            ("content-type", "application/json"),
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
        ],
        body.as_bytes(),
    )?;
    if r.status != 201 && r.status != 200 {
        bail!(
            "creating a token answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(r.json()?["token"]
        .as_str()
        .context("no token in the answer")?
        .to_string())
}

/// One keep-alive HTTP/1.1 connection that sends GETs and reads whole answers.
struct Client {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Client {
    fn connect(addr: &str) -> Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream: BufReader::with_capacity(256 * 1024, s),
            host: addr.to_string(),
        })
    }

    /// Sends one GET; returns the status and the body's length (read and dropped).
    fn get(&mut self, target: &str, bearer: Option<&str>) -> Result<(u16, u64)> {
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            self.stream.get_mut(),
            "GET {target} HTTP/1.1\r\nHost: {}\r\n{auth}\r\n",
            self.host
        )?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<u64>().ok();
                }
            }
        }
        let len = len.context("an answer without Content-Length")?;
        let copied = std::io::copy(&mut (&mut self.stream).take(len), &mut std::io::sink())?;
        if copied != len {
            bail!("the body ended after {copied} of {len} bytes");
        }
        Ok((status, len))
    }
}

#[derive(serde::Serialize, Clone, Debug)]
struct Case {
    name: String,
    requests: u64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    mib_per_s: f64,
}

/// `clients` connections GET `target` for `secs` seconds; every answer must be 200.
fn measure(name: &str, addr: &str, target: &str, bearer: Option<&str>, clients: u32, secs: u64) -> Result<Case> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let results: Vec<Result<(Vec<Duration>, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| -> Result<(Vec<Duration>, u64)> {
                    let mut c = Client::connect(addr)?;
                    let (mut lat, mut bytes) = (Vec::new(), 0u64);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let (status, n) = c.get(target, bearer)?;
                        lat.push(t.elapsed());
                        if status != 200 {
                            bail!("{target} answered {status}");
                        }
                        bytes += n;
                    }
                    Ok((lat, bytes))
                })
            })
            .collect();
        super::bench::join_clients(handles)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut lat, mut bytes) = (Vec::new(), 0u64);
    for r in results {
        let (l, b) = r?;
        lat.extend(l);
        bytes += b;
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Case {
        name: name.to_string(),
        requests: lat.len() as u64,
        requests_per_s: lat.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        mib_per_s: bytes as f64 / elapsed / 1048576.0,
    })
}

/// Median of `n` timings of `f`, milliseconds.
fn median_ms(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn run_in(a: &AuthArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    // The hash alone first, on a quiet machine: the login's floor.
    let hash_ms = median_ms(5, || {
        tandem::auth::password::hash(PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    })?;
    let camera = CameraArgs {
        width: a.width,
        height: a.height,
        fps: a.fps,
        bitrate_kbps: a.bitrate_kbps,
    };
    let one = one_camera_nvr(&exe, &a.dir, camera)?;
    let (mut guard, port, cfg_path) = (one.procs, one.port, one.config);
    let added = Command::new(&exe)
        .args([
            "user",
            "add",
            USER,
            "--role",
            "viewer",
            "--password-env",
            "TANDEM_BENCH_PASSWORD",
            "--config",
        ])
        .arg(&cfg_path)
        .env("TANDEM_BENCH_PASSWORD", PASSWORD)
        .env("TANDEM_LOG", "warn")
        .status()?;
    if !added.success() {
        bail!("tandem user add failed ({added})");
    }
    let nvr = Command::new(&exe)
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("TANDEM_LOG", "warn")
        .spawn()?;
    guard.0.push(nvr);
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");
    let t0 = Instant::now();
    while tandem::httpc::get(&format!("{base}/api/v1/health")).map_or(true, |r| r.status != 200) {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("the NVR did not answer /api/v1/health");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let login_ms = median_ms(3, || acquire_token(&base, USER, PASSWORD).map(drop))?;
    let token = acquire_token(&base, USER, PASSWORD)?;
    eprintln!("recording {} s of footage…", a.footage_seconds);
    let start = Time90k::from_system(std::time::SystemTime::now());
    std::thread::sleep(Duration::from_secs(a.footage_seconds + 2));
    let end = start + a.footage_seconds as i64 * tandem::time::TICKS_PER_SEC;
    let range = format!("start={}&end={}", start.to_rfc3339(), end.to_rfc3339());
    let mut c = Client::connect(&addr)?;
    let (status, clip_bytes) = c.get(&format!("/api/v1/channels/1/clip.mp4?{range}"), Some(&token))?;
    if status != 200 || clip_bytes == 0 {
        bail!("the clip answered {status} with {clip_bytes} bytes: nothing recorded?");
    }

    let (secs, n) = (a.seconds, a.clients);
    eprintln!("measuring each case for {secs} s with {n} clients…");
    let recordings = format!("/api/v1/channels/1/recordings?{range}");
    let cases = vec![
        measure("GET /api/v1/health (public)", &addr, "/api/v1/health", None, n, secs)?,
        // The same trivial answer behind the access layer: its cost alone.
        measure("GET /api/v1/me (bearer)", &addr, "/api/v1/me", Some(&token), n, secs)?,
        measure("GET …/recordings (bearer)", &addr, &recordings, Some(&token), n, secs)?,
        measure(
            "GET …/clip.mp4 (bearer)",
            &addr,
            &format!("/api/v1/channels/1/clip.mp4?{range}"),
            Some(&token),
            1,
            secs,
        )?,
    ];
    drop(guard);

    println!();
    println!(
        "auth benchmark: {n} keep-alive clients, {secs} s per case, clip of {} s ({:.1} MiB)",
        a.footage_seconds,
        clip_bytes as f64 / 1048576.0
    );
    println!(
        "{:<32} {:>10} {:>12} {:>9} {:>9} {:>9}",
        "case", "requests", "requests/s", "p50 ms", "p99 ms", "MiB/s"
    );
    for c in &cases {
        println!(
            "{:<32} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>9.1}",
            c.name, c.requests, c.requests_per_s, c.p50_ms, c.p99_ms, c.mib_per_s
        );
    }
    let per_s = |i: usize| cases[i].requests_per_s.max(f64::MIN_POSITIVE);
    let (layer, ratio) = (per_s(1) / per_s(0), per_s(2) / per_s(0));
    println!("me (bearer) / health (public) requests per second: {layer:.3} (the access layer's cost)");
    println!("recordings (bearer) / health (public) requests per second: {ratio:.3}");
    println!("one Argon2id hash (auth::password parameters): {hash_ms:.0} ms");
    println!("one login + token creation over HTTP: {login_ms:.0} ms");
    let json = serde_json::json!({
        "benchmark": "auth",
        "clients": n, "seconds": secs, "footage_seconds": a.footage_seconds,
        "clip_bytes": clip_bytes,
        "cases": cases,
        "me_over_health_rps": layer,
        "recordings_over_health_rps": ratio,
        "argon2id_hash_ms": hash_ms,
        "login_and_token_ms": login_ms,
        "argon2_params": {
            "memory_kib": tandem::auth::password::MEMORY_KIB,
            "iterations": tandem::auth::password::ITERATIONS,
        },
    });
    std::fs::write(&a.json, serde_json::to_string_pretty(&json)?)?;
    println!("\nwrote {}", a.json.display());
    Ok(ExitCode::SUCCESS)
}
