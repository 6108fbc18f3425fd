//! Shared helpers for the integration tests: real processes (the `tandem`
//! binary, GStreamer, ffprobe), a minimal HTTP client, and prerequisite checks
//! that skip with a printed reason outside CI and fail inside it (CI=true).
#![allow(dead_code)]

pub mod browser;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn tandem() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Returns false (after printing why) when a prerequisite is missing outside
/// CI; panics inside CI, where a missing prerequisite is a failure.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("missing prerequisite in CI: {what}");
    }
    eprintln!("SKIPPED: {what} (run scripts/test as root to install it)");
    false
}

pub fn have_program(p: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {p}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub stderr_path: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn spawn(name: &str, cmd: &mut Command, logdir: &Path) -> Proc {
    let stderr_path = logdir.join(format!("{name}.stderr"));
    let err = std::fs::File::create(&stderr_path).unwrap();
    let child = cmd
        .stderr(err)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
    Proc {
        child,
        name: name.into(),
        stderr_path,
    }
}

/// Starts `tandem sim-camera` and waits until it prints its camera URLs.
pub fn sim_camera(logdir: &Path, count: u32, extra: &[&str]) -> (Proc, Vec<String>) {
    sim_camera_at(logdir, &format!("127.0.0.1:{}", free_port()), count, extra)
}

/// Like `sim_camera`, at a given address (to restart a camera where it was).
pub fn sim_camera_at(logdir: &Path, listen: &str, count: u32, extra: &[&str]) -> (Proc, Vec<String>) {
    let port = listen.rsplit(':').next().unwrap_or_default();
    let mut cmd = Command::new(tandem());
    cmd.args(["sim-camera", "--listen", listen, "--count", &count.to_string()])
        .args(extra)
        .stdout(Stdio::piped());
    // Small pictures keep the suite light; `extra` may override each default.
    for (flag, default) in [("--width", "640"), ("--height", "360"), ("--bitrate-kbps", "800")] {
        if !extra.contains(&flag) {
            cmd.args([flag, default]);
        }
    }

    let mut p = spawn(&format!("sim-camera-{port}"), &mut cmd, logdir);
    let out = p.child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let mut urls = Vec::new();
    for _ in 0..count {
        match lines.next() {
            Some(Ok(l)) => urls.push(l),
            _ => panic!("sim-camera did not start: {}", p.stderr()),
        }
    }
    (p, urls)
}

pub struct Nvr {
    pub proc: Proc,
    pub base: String,
    pub config: PathBuf,
}

/// Writes `config` (with `{listen}` replaced) and starts `tandem serve`.
pub fn nvr(logdir: &Path, name: &str, config: &str) -> Nvr {
    let port = free_port();
    let text = config.replace("{listen}", &format!("127.0.0.1:{port}"));
    let path = logdir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    start_nvr(logdir, name, &path, port)
}

/// The password of the admin user `provision` creates in each test store.
pub const ADMIN_PASSWORD: &str = "ci-admin-password-0123";

static TOKENS: tandem::auth::client::Bearers = tandem::auth::client::Bearers::new();

/// Creates the admin user `ci-admin` in the store `config` names (once) and
/// an API token for it, the way an installer would; returns the token.
pub fn provision(config: &Path) -> String {
    let cfg = config.to_str().unwrap();
    let o = Command::new(tandem())
        .args([
            "user",
            "add",
            "ci-admin",
            "--role",
            "admin",
            "--config",
            cfg,
            "--password-env",
            "CI_ADMIN_PW",
        ])
        .env("CI_ADMIN_PW", ADMIN_PASSWORD)
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() || err.contains("already exists"), "user add: {err}");
    let o = run_tandem(&["user", "token", "ci-admin", "--config", cfg, "--token-name", "tests"]);
    assert!(o.status.success(), "user token: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// Remembers the token to send to the NVR at `base` (`http://host:port`).
pub fn remember_token(base: &str, token: &str) {
    TOKENS.remember(base, token)
}

/// The token remembered for the NVR that serves `url`, if any.
pub fn token_for(url: &str) -> Option<String> {
    TOKENS.for_url(url)
}

pub fn start_nvr(logdir: &Path, name: &str, config: &Path, port: u16) -> Nvr {
    start_nvr_under(logdir, name, config, port, &[])
}

/// `tandem serve` run by `wrapper` (e.g. `["prlimit", "--nofile=1024"]`),
/// with an admin token provisioned and remembered for its API.
pub fn start_nvr_under(logdir: &Path, name: &str, config: &Path, port: u16, wrapper: &[&str]) -> Nvr {
    let base = format!("http://127.0.0.1:{port}");
    remember_token(&base, &provision(config));
    let mut cmd = match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(tandem());
            c
        }
        None => Command::new(tandem()),
    };
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("TANDEM_LOG", "info")
        .stdout(Stdio::null());
    let proc = spawn(name, &mut cmd, logdir);
    let n = Nvr {
        proc,
        base,
        config: config.to_path_buf(),
    };
    wait_for(Duration::from_secs(30), "NVR API", || {
        http_get(&format!("{}/api/v1/status", n.base)).is_ok_and(|r| r.status == 200)
    });
    n
}

/// Records `url` on channel 1 of an NVR named `name` in 2-s segments until
/// more than `frames` frames are stored, then stops it cleanly; its store.
pub fn record_in_short_segments(dir: &Path, name: &str, url: &str, frames: u64) -> PathBuf {
    let data = dir.join(format!("{name}-data"));
    let mut n = nvr(
        dir,
        name,
        &format!(
            "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\nsegment_duration = \"2s\"\n[http]\nlisten = \"{{listen}}\"\n\
             [[network_camera]]\nname = \"c\"\nurl = \"{url}\"\n[[channel]]\nnumber = 1\ncamera = \"c\"\n",
            data.display()
        ),
    );
    wait_for(Duration::from_secs(20), "recording", || {
        frames_written(&n.base, 1) > frames
    });
    assert!(n.proc.terminate().success());
    data
}

pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

pub use tandem::httpc::Response as HttpResponse;

/// GET with the remembered token of the NVR, as a logged-in client.
pub fn http_get(url: &str) -> std::io::Result<HttpResponse> {
    http_request("GET", url, &[], b"")
}

/// A request with the remembered token of the NVR unless `headers` carry an
/// `Authorization` of their own.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<HttpResponse> {
    let bearer = token_for(url).map(|t| format!("Bearer {t}"));
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(b) = &bearer {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            h.push(("Authorization", b));
        }
    }
    tandem::httpc::request(method, url, &h, body)
}

/// A request with exactly these headers: no remembered token.
pub fn http_anonymous(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<HttpResponse> {
    tandem::httpc::request(method, url, headers, body)
}

/// RFC 3339 text for "now + offset seconds".
/// A query parameter's value, percent-encoded (RFC 3339 times carry `+` and `:`).
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn rfc3339_offset(offset_s: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + offset_s;
    tandem::time::Time90k::from_secs_f64(now).to_rfc3339()
}

pub fn now_unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

pub fn run_tandem(args: &[&str]) -> std::process::Output {
    Command::new(tandem())
        .args(args)
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap()
}

pub fn audit_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["audit"];
    a.extend_from_slice(args);
    let out = run_tandem(&a);
    assert!(
        out.status.success(),
        "audit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// ffprobe's view of a file's first video stream, with frames counted.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,duration:format=duration",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Channel `n`'s entry from /api/v1/channels.
pub fn channel_view(base: &str, n: u32) -> serde_json::Value {
    let v = http_get(&format!("{base}/api/v1/channels")).unwrap().json().unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|c| c["number"] == n)
        .cloned()
        .unwrap()
}

pub fn frames_written(base: &str, n: u32) -> u64 {
    channel_view(base, n)["recording"]["frames_written"]
        .as_u64()
        .unwrap_or(0)
}

/// Decodes the whole file with ffmpeg and fails on any decoder complaint.
pub fn assert_decodes_cleanly(path: &Path, what: &str) {
    let d = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        d.status.success() && d.stderr.is_empty(),
        "{what}: {}",
        String::from_utf8_lossy(&d.stderr)
    );
}

/// `--channel N --start S --end E -o OUT`: the clip an export command writes.
pub fn clip_args(channel: u32, start: &str, end: &str, out: &Path) -> Vec<String> {
    let (channel, out) = (channel.to_string(), out.to_str().unwrap());
    ["--channel", &channel, "--start", start, "--end", end, "-o", out]
        .map(String::from)
        .to_vec()
}

/// `tandem export --{from} SOURCE --channel N --start S --end E -o OUT`, which must succeed.
pub fn export(from: &str, source: &str, channel: u32, start: &str, end: &str, out: &Path) {
    let token = if from == "server" { token_for(source) } else { None };
    let fromflag = format!("--{from}");
    let clip = clip_args(channel, start, end, out);
    let mut args = vec!["export", &fromflag, source];
    args.extend(clip.iter().map(String::as_str));
    if let Some(t) = &token {
        args.extend(["--token", t.as_str()]);
    }
    let o = run_tandem(&args);
    assert!(
        o.status.success(),
        "export of channel {channel}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A store in `dir` recording channel 1 in `mode`, as the tests that feed
/// it frames on simulated time open it: 20-s segments flushed every 0.2 s,
/// no free-space floor, no retention, the default write buffer.
pub fn store_config(dir: &Path, mode: tandem::recording::Mode) -> tandem::store::StoreConfig {
    use tandem::recording::{RecordingPolicy, Schedule};
    tandem::store::StoreConfig {
        dir: dir.to_path_buf(),
        flush_interval: Duration::from_millis(200),
        segment_duration: Duration::from_secs(20),
        min_free_bytes: 0,
        policies: Default::default(),
        recording: [(
            1,
            RecordingPolicy {
                schedule: Schedule::always(mode),
                events: Default::default(),
            },
        )]
        .into(),
        notifier: None,
        import: Default::default(),
        write_buffer: tandem::store::queue::DEFAULT_WRITE_BUFFER,
    }
}

/// One NVR recording each `(name, url)` camera on its own channel (1, 2, …),
/// its store under `data`: the configuration most single-NVR tests need.
pub fn recorder_config(data: &Path, cameras: &[(&str, &str)]) -> String {
    let mut cfg = format!(
        "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n",
        data.display()
    );
    for (i, (name, url)) in cameras.iter().enumerate() {
        cfg.push_str(&format!(
            "[[network_camera]]\nname = \"{name}\"\nurl = \"{url}\"\n[[channel]]\nnumber = {}\ncamera = \"{name}\"\n",
            i + 1
        ));
    }
    cfg
}

/// The standby of a loopback pair of NVRs: one channel, bound to
/// `camera_url` only while the primary Tandem on `primary_port` fails its
/// `http` check (every 0.2 s, two misses), the footage sent back to it.
/// `failover_extra`: more `[failover]` lines (e.g. a transfer rate).
pub fn standby_config(
    data: &Path,
    token: &str,
    camera_url: &str,
    primary_port: u16,
    release_delay: u32,
    failover_extra: &str,
) -> String {
    format!(
        r#"
[storage]
dir = "{data}"
min_free = "10 MB"
[http]
listen = "{{listen}}"
[failover]
peer_token = "{token}"
{failover_extra}
[[network_camera]]
name = "cam"
url = "{camera_url}"
[[channel]]
number = 1
[[rule]]
name = "watch-primary"
release_delay = {release_delay}
check = {{ address = "127.0.0.1", type = "http", port = {primary_port}, interval = 0.2, timeout = 0.15, failure_count = 2, normal_count = 1 }}
states.normal = [ {{ camera = 1, address = "n/a" }} ]
states.failure = [ {{ camera = 1, address = "127.0.0.1" }} ]
backup = {{ address = "127.0.0.1", port = {primary_port}, cameras = [ {{ local = 1, remote = 1 }} ] }}
"#,
        data = data.display(),
    )
}

/// `etcd` serving clients on `client_port` of loopback, a one-member
/// cluster with short timings (heartbeat 50 ms, election 250 ms) and its
/// data under `dir/etcd`; its log in `dir`.
pub fn start_etcd(dir: &Path, client_port: u16, peer_port: u16) -> Proc {
    let (c, p) = (client_port, peer_port);
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", "lab", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{p}")])
        .args(["--initial-cluster", &format!("lab=http://127.0.0.1:{p}")])
        .args(["--heartbeat-interval", "50", "--election-timeout", "250"])
        .stdout(Stdio::null());
    spawn("etcd", &mut cmd, dir)
}

/// Runs `tandem bench ARGS --json FILE` (in `dir`'s FILE) and returns the
/// JSON it wrote; fails the test with its stderr if it failed.
pub fn bench_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let json = dir.join("bench.json");
    let out = Command::new(tandem())
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("TANDEM_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// Runs `tandem LAB ARGS --json … --workdir …` (`failover-lab`,
/// `pool-lab`) and returns its report, after checking it exited well and
/// left no network namespace of its own behind.
pub fn lab_report(lab: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("lab.json");
    let child = Command::new(tandem())
        .arg(lab)
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .env("TANDEM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("tdmlab{}-", child.id() % 10000);
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the {lab} failed");
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains(&prefix),
        "namespaces left behind"
    );
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}
