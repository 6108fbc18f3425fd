//! `tandem export`: one channel's footage of a time range as an .mp4, from a
//! store directory or a running Tandem. Says what the file lacks: holes in
//! the recording are notes; stored frames left out — overlapping footage
//! (`--allow-overlaps`) or damaged files (`--allow-damage`) — are warnings
//! that also make the exit status 3 (the file is still written), so that no
//! script mistakes an incomplete export for a complete one.
//!
//! `--evidence` writes an evidence archive instead (`tandem::evidence`): the
//! clip, a manifest and its Ed25519 signature in one zip that `tandem verify`
//! checks. A local evidence export is audited (actor `cli:$USER`) before it
//! is written, so the audit entry's id is in the signed manifest.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use indicatif::{ProgressBar, ProgressStyle};
use tandem::store::Reader;
use tandem::time::Time90k;

#[derive(clap::Args)]
pub struct Args {
    /// Read footage from a Tandem store directory (the NVR may be running).
    #[arg(long, conflicts_with_all = ["server", "config"], required_unless_present_any = ["server", "config"])]
    data: Option<PathBuf>,
    /// Read footage from the store of this configuration (which also names
    /// the channel and its camera in an evidence manifest).
    #[arg(long, conflicts_with = "server")]
    config: Option<PathBuf>,
    /// Fetch footage from a running Tandem, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: Option<String>,
    /// An API token for `--server` (from `tandem user token` or `POST /api/v1/tokens`).
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true, requires = "server")]
    token: Option<String>,
    /// For an `https://` server: trust the CA certificates in this PEM file
    /// (a self-signed NVR's `DATA/tls/cert.pem` serves as its own CA).
    #[arg(long, requires = "server", conflicts_with = "fingerprint")]
    cacert: Option<PathBuf>,
    /// For an `https://` server: accept exactly the certificate with this
    /// SHA-256 (`tandem tls fingerprint` on the NVR prints it).
    #[arg(long, requires = "server")]
    fingerprint: Option<String>,
    /// Write an evidence archive (.zip: the clip, a manifest and its
    /// signature) that `tandem verify` checks.
    #[arg(long)]
    evidence: bool,
    #[command(flatten)]
    range: ClipRange,
    /// Exit 0 even if stored frames were left out because footage overlaps
    /// (a camera clock stepped back); they are still listed on stderr.
    #[arg(long)]
    allow_overlaps: bool,
    /// Exit 0 even if stored footage in the range is damaged and unreadable;
    /// the damaged files are still listed on stderr.
    #[arg(long)]
    allow_damage: bool,
}

/// The channel, time range and output file of a clip: `export` and
/// `archive export` take the same arguments.
#[derive(clap::Args)]
pub struct ClipRange {
    #[arg(long)]
    pub channel: u32,
    /// Start of the clip, RFC 3339 (e.g. 2026-11-22T10:00:00Z).
    #[arg(long)]
    pub start: String,
    /// End of the clip, RFC 3339.
    #[arg(long)]
    pub end: String,
    /// Output file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

impl ClipRange {
    /// The range parsed, naming the argument that is wrong.
    pub fn times(&self) -> Result<(Time90k, Time90k)> {
        let start = Time90k::parse_rfc3339(&self.start).map_err(|e| anyhow::anyhow!("--start: {e}"))?;
        let end = Time90k::parse_rfc3339(&self.end).map_err(|e| anyhow::anyhow!("--end: {e}"))?;
        if end <= start {
            anyhow::bail!("--end ({}) must be after --start ({})", self.end, self.start);
        }
        Ok((start, end))
    }
}

/// Exit status of an export written without some stored frames.
const INCOMPLETE: u8 = 3;

/// What an export left out, as reported by the clip plan or the server's
/// headers. Each list holds the JSON objects of `mp4::clip`.
#[derive(Default)]
pub(super) struct Omissions {
    pub gaps: Vec<serde_json::Value>,
    pub overlaps: Vec<serde_json::Value>,
    pub frames_omitted: u64,
    pub damaged: Vec<serde_json::Value>,
}

impl Omissions {
    /// Prints what is missing; returns whether the export counts as incomplete.
    fn report(&self, allow_overlaps: bool, allow_damage: bool) -> bool {
        let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("?").to_string();
        for g in &self.gaps {
            let why = match g["damaged"].as_array() {
                Some(d) if !d.is_empty() => format!(
                    "; damaged: {}",
                    d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
                ),
                _ => String::new(),
            };
            eprintln!(
                "note: no footage from {} to {} ({:.1} s); the last frame is held{why}",
                s(g, "start"),
                s(g, "end"),
                g["seconds"].as_f64().unwrap_or(0.0)
            );
        }
        for o in &self.overlaps {
            eprintln!(
                "warning: {} stored frames from {} to {} (segment {}) left out: other footage covers the same time",
                o["frames_omitted"],
                s(o, "start"),
                s(o, "end"),
                o["segment"]
            );
        }
        for d in &self.damaged {
            eprintln!(
                "warning: stored footage from {} to {} is unreadable: {}: {}",
                s(d, "start"),
                s(d, "end"),
                s(d, "file"),
                s(d, "why")
            );
        }
        let mut incomplete = false;
        if self.frames_omitted > 0 && !allow_overlaps {
            eprintln!(
                "warning: {} stored frames are not in the export (overlapping footage); pass --allow-overlaps to accept",
                self.frames_omitted
            );
            incomplete = true;
        }
        if !self.damaged.is_empty() && !allow_damage {
            eprintln!("warning: damaged footage is not in the export; pass --allow-damage to accept");
            incomplete = true;
        }
        incomplete
    }
}

pub(super) fn to_json<T: serde::Serialize>(items: &[T]) -> Vec<serde_json::Value> {
    items.iter().filter_map(|x| serde_json::to_value(x).ok()).collect()
}

pub(super) fn progress(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

pub fn run(a: Args) -> Result<ExitCode> {
    let (start, end) = a.range.times()?;
    let mut tmp = a.range.output.clone().into_os_string();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let mut omissions = Omissions::default();
    let resource = if a.evidence { "evidence.zip" } else { "clip.mp4" };
    let result = match (super::store_of(a.data.as_deref(), a.config.as_deref()), &a.server) {
        (Ok(store), None) if a.evidence => {
            super::evidence::export_local(&store, a.range.channel, start, end, &tmp, &mut omissions)
        }
        (Ok(store), None) => export_local(&store.dir, a.range.channel, start, end, &tmp, &mut omissions),
        (_, Some(server)) => super::runtime()?.block_on(export_remote(
            server,
            a.token.as_deref(),
            resource,
            Remote {
                channel: a.range.channel,
                start: &a.range.start,
                end: &a.range.end,
                tls: server_trust(&a)?,
            },
            &tmp,
            &mut omissions,
        )),
        (Err(e), None) => Err(e),
    };
    match result {
        Ok(bytes) => {
            std::fs::rename(&tmp, &a.range.output).with_context(|| format!("writing {}", a.range.output.display()))?;
            eprintln!("wrote {} ({bytes} bytes)", a.range.output.display());
            if omissions.report(a.allow_overlaps, a.allow_damage) {
                return Ok(ExitCode::from(INCOMPLETE));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn export_local(
    dir: &std::path::Path,
    channel: u32,
    start: Time90k,
    end: Time90k,
    out: &std::path::Path,
    omissions: &mut Omissions,
) -> Result<u64> {
    let footage = Reader::new(dir.to_path_buf()).footage(channel, start, end)?;
    let clip = tandem::mp4::clip::build(&footage.segments, &footage.damaged, start, end)?;
    omissions.gaps = to_json(&clip.gaps);
    omissions.overlaps = to_json(&clip.overlaps);
    omissions.frames_omitted = clip.frames_omitted;
    omissions.damaged = to_json(&clip.damaged);
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
    let pb = progress(clip.len);
    tandem::export::write_clip(&clip, &mut f, |n| pb.inc(n as u64))?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    pb.finish_and_clear();
    Ok(clip.len)
}

/// What to fetch from a running NVR.
struct Remote<'a> {
    channel: u32,
    start: &'a str,
    end: &'a str,
    /// How to check an `https://` server's certificate.
    tls: Option<tandem::httpc::PeerTls>,
}

/// The trust `--cacert` or `--fingerprint` gives, checked the way the
/// failover peer client checks a peer (there is no unchecked mode).
fn server_trust(a: &Args) -> Result<Option<tandem::httpc::PeerTls>> {
    use tandem::httpc::{PeerTls, PeerTrust};
    let trust = match (&a.cacert, &a.fingerprint) {
        (Some(p), _) => PeerTrust::Ca {
            path: p.clone(),
            roots: tandem::web::tls::load_certs(p).map_err(|e| anyhow::anyhow!("--cacert: {e}"))?,
        },
        (None, Some(f)) => PeerTrust::Fingerprint(
            tandem::web::tls::parse_fingerprint(f).map_err(|e| anyhow::anyhow!("--fingerprint: {e}"))?,
        ),
        (None, None) => return Ok(None),
    };
    Ok(Some(PeerTls::new(&trust).map_err(anyhow::Error::msg)?))
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// One HTTP/1.1 connection to the server, over TLS when `tls` is given.
async fn connect(host: &str, port: u16, tls: Option<&tandem::httpc::PeerTls>) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let Some(tls) = tls else {
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        return Ok(sender);
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).context("--server host")?;
    let stream = tokio_rustls::TlsConnector::from(tls.client_config())
        .connect(name, stream)
        .await
        .with_context(|| format!("TLS with {host}:{port}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn export_remote(
    server: &str,
    token: Option<&str>,
    resource: &str,
    r: Remote<'_>,
    out: &std::path::Path,
    omissions: &mut Omissions,
) -> Result<u64> {
    let base = url::Url::parse(server).with_context(|| format!("--server `{server}` is not a URL"))?;
    let mut url = base.join(&format!("/api/v1/channels/{}/{resource}", r.channel))?;
    url.query_pairs_mut()
        .append_pair("start", r.start)
        .append_pair("end", r.end);
    let host = url.host_str().context("--server has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let tls = match (url.scheme(), &r.tls) {
        ("https", None) => bail!("an https:// server needs --cacert or --fingerprint to check its certificate"),
        ("https", Some(t)) => Some(t),
        (_, Some(_)) => bail!("--cacert and --fingerprint are for https:// servers"),
        _ => None,
    };
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    // A 503 means footage changed between the server's plan and its reply
    // (retention, damage): asking again gets a plan of what exists now.
    let mut attempt = 0;
    let resp = loop {
        let mut sender = connect(&host, port, tls).await?;
        let mut req = hyper::Request::get(path.as_str()).header("host", format!("{host}:{port}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        attempt += 1;
        if resp.status() != hyper::StatusCode::SERVICE_UNAVAILABLE || attempt == 3 {
            break resp;
        }
        let wait: u64 = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(1);
        tokio::time::sleep(std::time::Duration::from_secs(wait.clamp(1, 5))).await;
    };
    let status = resp.status();
    let len: u64 = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let list = |name: &str| -> Vec<serde_json::Value> {
        resp.headers()
            .get(name)
            .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
            .unwrap_or_default()
    };
    omissions.gaps = list("x-tandem-gaps");
    omissions.overlaps = list("x-tandem-overlaps");
    omissions.damaged = list("x-tandem-damaged");
    omissions.frames_omitted = resp
        .headers()
        .get("x-tandem-frames-omitted")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        bail!("server answered {status}: {}", String::from_utf8_lossy(&bytes));
    }
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
    let pb = progress(len);
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            f.write_all(&data)?;
            total += data.len() as u64;
            pb.inc(data.len() as u64);
        }
    }
    if len != 0 && total != len {
        bail!("connection ended after {total} of {len} bytes");
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    pb.finish_and_clear();
    Ok(total)
}
