//! The lab's hands: the `tandem` processes it runs (simulated cameras, the
//! NVR, `audit`, `verify`, `user`) and a minimal HTTP/1.1 client for the
//! NVR's API on loopback.
//!
//! Must never talk to anything but 127.0.0.1, and never leave a child
//! running: every `Child` it starts is killed when its handle drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::LabError;

/// A child process, SIGKILLed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> Result<u16, LabError> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| LabError::Io("choosing a loopback port".into(), e))?
        .port())
}

fn spawn(cmd: &mut Command, log: &Path, what: &str) -> Result<Proc, LabError> {
    let err = std::fs::File::create(log).map_err(|e| LabError::Io(format!("creating {}", log.display()), e))?;
    let child = cmd
        .stderr(err)
        .stdin(Stdio::null())
        .env("NO_COLOR", "1")
        .spawn()
        .map_err(|e| LabError::Io(format!("starting {what}"), e))?;
    Ok(Proc {
        child,
        log: log.to_path_buf(),
    })
}

/// `tandem sim-camera` with `count` stamped cameras; returns it and their URLs.
pub fn sim_cameras(tandem: &Path, dir: &Path, count: u32, extra: &[&str]) -> Result<(Proc, Vec<String>), LabError> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(tandem);
    cmd.args(["sim-camera", "--listen", &listen, "--count", &count.to_string()])
        .args(extra)
        .stdout(Stdio::piped());
    let mut p = spawn(&mut cmd, &dir.join("sim-camera.log"), "tandem sim-camera")?;
    let out = p.child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(out).lines();
    let mut urls = Vec::new();
    for _ in 0..count {
        match lines.next() {
            Some(Ok(l)) => urls.push(l),
            _ => return Err(LabError::Nvr(format!("sim-camera did not start: {}", p.log_text()))),
        }
    }
    Ok((p, urls))
}

/// `tandem serve --config CFG`, its log in `log`.
pub fn serve(tandem: &Path, config: &Path, log: &Path) -> Result<Proc, LabError> {
    let mut cmd = Command::new(tandem);
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("TANDEM_LOG", "info")
        .stdout(Stdio::null());
    spawn(&mut cmd, log, "tandem serve")
}

/// Runs `tandem ARGS` to completion: (success, stdout, stderr).
pub fn run_tandem(tandem: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(bool, String, String), LabError> {
    let mut cmd = Command::new(tandem);
    cmd.args(args).env("TANDEM_LOG", "warn").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd
        .output()
        .map_err(|e| LabError::Io(format!("running tandem {}", args.join(" ")), e))?;
    Ok((
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

/// Creates an admin user in the store `config` names and returns an API
/// token for it, as an installer would (`tandem user add`, `user token`).
pub fn provision(tandem: &Path, config: &Path) -> Result<String, LabError> {
    let cfg = config.to_str().unwrap_or_default();
    let (ok, _, err) = run_tandem(
        tandem,
        &[
            "user",
            "add",
            "lab-admin",
            "--role",
            "admin",
            "--config",
            cfg,
            "--password-env",
            "LAB_PW",
        ],
        &[("LAB_PW", "power-cut-lab-password-0123")],
    )?;
    if !ok && !err.contains("already exists") {
        return Err(LabError::Nvr(format!("tandem user add: {err}")));
    }
    let (ok, out, err) = run_tandem(
        tandem,
        &[
            "user",
            "token",
            "lab-admin",
            "--config",
            cfg,
            "--token-name",
            "powercut-lab",
        ],
        &[],
    )?;
    if !ok {
        return Err(LabError::Nvr(format!("tandem user token: {err}")));
    }
    Ok(out.trim().to_string())
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port` (`Connection: close`), with a
/// bearer token if given. Answers are read up to 16 MiB.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/octet-stream\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

/// Status and body of a whole HTTP/1.1 response (chunked or not).
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[end + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..nl]).ok()?.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = out;
    }
    Some(Response { status, body })
}

/// Polls `f` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Frames written per channel in this NVR run (`GET /api/v1/channels`).
pub fn frames_written(port: u16, token: &str) -> Option<Vec<(u64, u64)>> {
    let r = http(
        port,
        "GET",
        "/api/v1/channels",
        Some(token),
        b"",
        Duration::from_secs(2),
    )
    .ok()?;
    if r.status != 200 {
        return None;
    }
    let v = r.json()?;
    Some(
        v.as_array()?
            .iter()
            .map(|c| {
                (
                    c["number"].as_u64().unwrap_or(0),
                    c["recording"]["frames_written"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]").unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"[]"[..]));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"abcde"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_none());
    }
}
