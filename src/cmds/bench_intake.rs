//! `tandem bench intake`: the RTSP intake alone — retina's parsing and
//! depacketising of one TCP-interleaved H.264 stream, and the TCP receive
//! under it — against `ffmpeg -c copy -f null` reading the same bytes, in the
//! same run. No storage, no pacing: a server thread of this benchmark replays
//! a pre-encoded loop as fast as the client reads, so the figures are CPU per
//! frame and per MB with nothing else on the path, and vary little between
//! runs (issue 14: "where retina itself is the cost, measure it in isolation").
//!
//! Owns the replay server and the two clients' measurements. Must never pace
//! the stream (the figure is CPU per frame, not per second) or measure the
//! server's own CPU: retina runs on a thread of its own and is measured with
//! that thread's `getrusage`, ffmpeg as a child process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use retina::client::{PlayOptions, Session, SetupOptions};
use retina::codec::{CodecItem, FrameFormat};
use tandem::sim::{self, rtsp, EncodedLoop, VideoSpec};

use super::bench::CameraArgs;
use super::bench_figures::{ffmpeg_reading, Rusage};

#[derive(clap::Args)]
pub struct IntakeArgs {
    /// Frames each client reads per run (100,000 is about 67 minutes of
    /// 25 fps and 2 GB at 4 Mbit/s: retina reads it in under a second, long
    /// against the 4-ms resolution of the CPU clock of a thread).
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// Runs of each client; the table gives the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[command(flatten)]
    camera: CameraArgs,
    /// Only measure retina.
    #[arg(long)]
    skip_ffmpeg: bool,
    /// Write the results here as JSON.
    #[arg(long, default_value = "bench-intake.json")]
    json: PathBuf,
}

/// RTP payloads of one loop frame.
type FramePayloads = Vec<Vec<u8>>;

/// One client's run: CPU and wall time over `frames` frames of `bytes`.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Run {
    frames: u64,
    bytes: u64,
    user_s: f64,
    sys_s: f64,
    wall_s: f64,
}

impl Run {
    fn us_per_frame(&self) -> f64 {
        (self.user_s + self.sys_s) * 1e6 / self.frames as f64
    }
    fn ms_per_mb(&self) -> f64 {
        (self.user_s + self.sys_s) * 1e3 / (self.bytes as f64 / 1e6)
    }
}

pub fn run(a: IntakeArgs) -> Result<ExitCode> {
    let c = a.camera;
    let spec = VideoSpec {
        width: c.width,
        height: c.height,
        fps: c.fps,
        gop: c.fps,
        bitrate_kbps: c.bitrate_kbps,
    };
    spec.validate()?;
    if a.frames == 0 || a.runs == 0 {
        bail!("--frames and --runs must be at least 1");
    }
    println!("encoding the {}x{} loop…", c.width, c.height);
    let video = Arc::new(sim::encode_loop(&spec)?);
    let payloads: Arc<Vec<FramePayloads>> = Arc::new(
        video
            .frames
            .iter()
            .map(|f| {
                let nals: Vec<&[u8]> = f.nals.iter().map(|n| n.as_slice()).collect();
                let mut out = Vec::new();
                rtsp::packetize_h264(&nals, &mut out);
                out
            })
            .collect(),
    );

    let mut retina_runs = Vec::new();
    let mut ffmpeg_runs = Vec::new();
    for i in 0..a.runs {
        println!("run {} of {}: retina…", i + 1, a.runs);
        retina_runs.push(retina_run(&video, &payloads, a.frames)?);
        if !a.skip_ffmpeg {
            println!("run {} of {}: ffmpeg…", i + 1, a.runs);
            ffmpeg_runs.push(ffmpeg_run(&video, &payloads, a.frames)?);
        }
    }
    let r = median(&retina_runs);
    let f = (!ffmpeg_runs.is_empty()).then(|| median(&ffmpeg_runs));

    println!(
        "\nintake benchmark: one {}x{} @ {} fps, {} kbit/s stream over RTSP/TCP, {} frames per run, median of {}",
        c.width, c.height, c.fps, c.bitrate_kbps, a.frames, a.runs
    );
    println!(
        "{:<32} {:>14} {:>22} {:>8}",
        "metric", "retina", "ffmpeg -c copy -f null", "ratio"
    );
    let row = |name: &str, v: f64, p: Option<f64>| {
        let (ps, ratio) = match p {
            Some(p) => (format!("{p:.2}"), format!("{:.3}", v / p)),
            None => ("-".into(), "-".into()),
        };
        println!("{name:<32} {v:>14.2} {ps:>22} {ratio:>8}");
    };
    row("CPU µs per frame", r.us_per_frame(), f.map(|f| f.us_per_frame()));
    row(
        "  of it user µs",
        r.user_s * 1e6 / r.frames as f64,
        f.map(|f| f.user_s * 1e6 / f.frames as f64),
    );
    row(
        "  of it system µs",
        r.sys_s * 1e6 / r.frames as f64,
        f.map(|f| f.sys_s * 1e6 / f.frames as f64),
    );
    row("CPU ms per MB", r.ms_per_mb(), f.map(|f| f.ms_per_mb()));
    row(
        "MB/s (one core, unpaced)",
        r.bytes as f64 / 1e6 / r.wall_s,
        f.map(|f| f.bytes as f64 / 1e6 / f.wall_s),
    );
    println!("(ffmpeg's figures are the difference between a run of 2N frames and one of N, so its start-up cancels)");
    let json = serde_json::json!({
        "width": c.width, "height": c.height, "fps": c.fps, "bitrate_kbps": c.bitrate_kbps,
        "frames": a.frames, "runs": a.runs,
        "retina": { "median": r, "runs": retina_runs, "cpu_us_per_frame": r.us_per_frame() },
        "ffmpeg": f.map(|f| serde_json::json!({ "median": f, "runs": ffmpeg_runs, "cpu_us_per_frame": f.us_per_frame() })),
        "cpu_ratio_retina_over_ffmpeg": f.map(|f| r.us_per_frame() / f.us_per_frame()),
    });
    std::fs::write(&a.json, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", a.json.display()))?;
    println!("\nwrote {}", a.json.display());
    Ok(ExitCode::SUCCESS)
}

/// The run with the median CPU per frame.
fn median(runs: &[Run]) -> Run {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.us_per_frame().total_cmp(&b.us_per_frame()));
    v[v.len() / 2]
}

/// Serves one client on a fresh port: answers its setup, then sends `frames`
/// frames back to back and half-closes. Returns the URL and the server
/// thread, which yields the bytes of video it sent.
fn serve_once(
    video: &Arc<EncodedLoop>,
    payloads: &Arc<Vec<FramePayloads>>,
    frames: u64,
) -> Result<(String, std::thread::JoinHandle<Result<u64>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("rtsp://{}/intake", listener.local_addr()?);
    let (video, payloads) = (video.clone(), payloads.clone());
    let h = std::thread::Builder::new()
        .name("intake-server".into())
        .spawn(move || {
            let (mut sock, _) = listener.accept()?;
            sock.set_nodelay(true)?;
            answer_setup(&mut sock, &video)?;
            let sent = send_frames(&mut sock, &payloads, video.spec.fps, frames)?;
            // Half-close: ffmpeg ends at the end of the stream; retina's client
            // has stopped reading by then and closes its side.
            sock.shutdown(Shutdown::Write)?;
            let mut sink = [0u8; 4096];
            sock.set_read_timeout(Some(Duration::from_secs(30)))?;
            while sock.read(&mut sink).unwrap_or(0) > 0 {}
            Ok(sent)
        })?;
    Ok((url, h))
}

/// Answers requests until PLAY (OPTIONS, DESCRIBE, SETUP, PLAY).
fn answer_setup(sock: &mut TcpStream, video: &EncodedLoop) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let (req, used) = loop {
            match rtsp::parse(&buf) {
                rtsp::Parsed::Request(r, n) => break (r, n),
                rtsp::Parsed::Interleaved(n) => {
                    buf.drain(..n);
                }
                rtsp::Parsed::Garbage(e) => bail!("client sent garbage: {e}"),
                rtsp::Parsed::Incomplete => {
                    let n = sock.read(&mut chunk)?;
                    if n == 0 {
                        bail!("client closed during setup");
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        buf.drain(..used);
        let cseq = req.cseq().to_owned();
        let answer = match req.method.as_str() {
            "OPTIONS" => rtsp::response(
                "200 OK",
                &cseq,
                &[("Public", "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN".into())],
                b"",
            ),
            "DESCRIBE" => rtsp::response(
                "200 OK",
                &cseq,
                &[
                    ("Content-Base", format!("{}/", req.uri)),
                    ("Content-Type", "application/sdp".into()),
                ],
                sim::server::sdp(video, 0, "127.0.0.1").as_bytes(),
            ),
            "SETUP" => rtsp::response(
                "200 OK",
                &cseq,
                &[
                    ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1".into()),
                    ("Session", "intake;timeout=60".into()),
                ],
                b"",
            ),
            "PLAY" => rtsp::response("200 OK", &cseq, &[("Session", "intake".into())], b""),
            m => bail!("unexpected {m} during setup"),
        };
        sock.write_all(&answer)?;
        if req.method == "PLAY" {
            return Ok(());
        }
    }
}

/// Sends `frames` frames of the loop as interleaved RTP on channel 0, with
/// continuous sequence numbers and timestamps; returns the RTP payload bytes.
fn send_frames(sock: &mut TcpStream, payloads: &[FramePayloads], fps: u32, frames: u64) -> Result<u64> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut seq = 0u16;
    let mut bytes = 0u64;
    let tick = 90_000 / fps;
    for n in 0..frames {
        let packets = &payloads[(n % payloads.len() as u64) as usize];
        for (i, p) in packets.iter().enumerate() {
            let len = (12 + p.len()) as u16;
            out.extend_from_slice(&[b'$', 0]);
            out.extend_from_slice(&len.to_be_bytes());
            rtsp::rtp_packet(
                &mut out,
                i + 1 == packets.len(),
                seq,
                (n as u32).wrapping_mul(tick),
                0x1a7e,
                p,
            );
            seq = seq.wrapping_add(1);
            bytes += p.len() as u64;
        }
        if out.len() >= 512 << 10 {
            sock.write_all(&out)?;
            out.clear();
        }
    }
    sock.write_all(&out)?;
    Ok(bytes)
}

/// retina reads `frames` frames as Tandem's ingest does (its session
/// options, TCP, MP4 framing), on a current-thread runtime on a thread of
/// its own, measured from PLAY to the last frame.
fn retina_run(video: &Arc<EncodedLoop>, payloads: &Arc<Vec<FramePayloads>>, frames: u64) -> Result<Run> {
    let (url, server) = serve_once(video, payloads, frames)?;
    let client = std::thread::Builder::new()
        .name("intake-retina".into())
        .spawn(move || -> Result<Run> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let opts = tandem::ingest::warm::base_session_options();
                let mut session = Session::describe(url.parse()?, opts).await?;
                session
                    .setup(
                        0,
                        SetupOptions::default()
                            .transport(retina::client::Transport::Tcp(Default::default()))
                            .frame_format(FrameFormat::MP4),
                    )
                    .await?;
                let mut demuxed = session.play(PlayOptions::default()).await?.demuxed()?;
                let (t0, c0) = (Instant::now(), Rusage::thread());
                let mut n = 0u64;
                while n < frames {
                    match demuxed.next().await {
                        Some(Ok(CodecItem::VideoFrame(f))) => {
                            n += 1;
                            // Taken as ingest takes it.
                            std::hint::black_box(f.into_data());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => bail!("retina: {e}"),
                        None => bail!("the stream ended after {n} of {frames} frames"),
                    }
                }
                let c = Rusage::thread().since(&c0);
                Ok(Run {
                    frames: n,
                    bytes: 0,
                    user_s: c.user_s,
                    sys_s: c.sys_s,
                    wall_s: t0.elapsed().as_secs_f64(),
                })
            })
        })?;
    let r = client
        .join()
        .map_err(|_| anyhow::anyhow!("the retina client panicked"))??;
    // The bytes as sent (RTP payloads), the same measure as ffmpeg's.
    let bytes = server.join().map_err(|_| anyhow::anyhow!("the server panicked"))??;
    Ok(Run { bytes, ..r })
}

/// ffmpeg's marginal cost per frame: a run of 2N frames less a run of N, so
/// that its start-up (probing, the RTSP setup) cancels out.
fn ffmpeg_run(video: &Arc<EncodedLoop>, payloads: &Arc<Vec<FramePayloads>>, frames: u64) -> Result<Run> {
    let one = ffmpeg_once(video, payloads, frames)?;
    let two = ffmpeg_once(video, payloads, 2 * frames)?;
    Ok(Run {
        frames,
        bytes: two.bytes - one.bytes,
        user_s: (two.user_s - one.user_s).max(0.0),
        sys_s: (two.sys_s - one.sys_s).max(0.0),
        wall_s: (two.wall_s - one.wall_s).max(1e-3),
    })
}

fn ffmpeg_once(video: &Arc<EncodedLoop>, payloads: &Arc<Vec<FramePayloads>>, frames: u64) -> Result<Run> {
    let (url, server) = serve_once(video, payloads, frames)?;
    let (t0, c0) = (Instant::now(), Rusage::children());
    let status = ffmpeg_reading(&url)
        .args(["-map", "0:v", "-c", "copy", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running ffmpeg (Debian package ffmpeg)")?;
    let c = Rusage::children().since(&c0);
    let wall_s = t0.elapsed().as_secs_f64();
    if !status.success() {
        bail!("ffmpeg failed: {status}");
    }
    let bytes = server.join().map_err(|_| anyhow::anyhow!("the server panicked"))??;
    Ok(Run {
        frames,
        bytes,
        user_s: c.user_s,
        sys_s: c.sys_s,
        wall_s,
    })
}
