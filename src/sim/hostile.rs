//! The hostile camera: an RTSP server that misbehaves the ways real (broken or
//! malicious) cameras do, one way per path, so tests and load harnesses can
//! check that one such camera ends only its own session. Valid parts of the
//! stream reuse the simulated camera's encoder and stamps, so frames that do
//! get recorded can be counted by `audit`.
//!
//! Owns the catalogue of misbehaviours (`Mode`), the replies and packets for
//! each as pure functions, and a thin socket loop. Must never serve anything
//! but loopback tests and harnesses asked for it, and never let one client's
//! endless stream starve the others (each client is its own task, writes
//! yield).

use super::rtsp::{self, Parsed};
use super::video::EncodedLoop;
use crate::nal::FrameStamp;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// One way to misbehave; the camera at `rtsp://ADDR/<mode>` does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// DESCRIBE answered with `Content-Length: 999999999`, then bytes forever.
    HugeBody,
    /// DESCRIBE answered with one header line that never ends.
    EndlessHeader,
    /// DESCRIBE answered with header lines, short and new, forever.
    HeaderFlood,
    /// DESCRIBE answered with a header line dribbled at 200 bytes/s.
    SlowHeader,
    /// DESCRIBE answered `500` with a 48 kB reason phrase and a 900 kB body.
    HugeError,
    /// A valid stream whose SDP carries a 400 kB `sprop-parameter-sets`.
    HugeSdp,
    /// After PLAY, RTP packets of one timestamp whose marker bit never comes.
    NoMarker,
    /// After PLAY, an FU-A fragment start, then middle fragments forever.
    EndlessFua,
    /// A valid stream whose RTP timestamps step back 10 s after 4 s.
    StepBack,
    /// A valid stream whose RTP clock runs 5 % fast.
    FastClock,
    /// A valid stream alternating between two parameter sets every frame.
    ParamStorm,
    /// A valid session that sends nothing after PLAY and keeps the
    /// connection open (a frozen encoder): only a stall timer ends it.
    Silent,
}

impl Mode {
    pub const ALL: [Mode; 12] = [
        Mode::HugeBody,
        Mode::EndlessHeader,
        Mode::HeaderFlood,
        Mode::SlowHeader,
        Mode::HugeError,
        Mode::HugeSdp,
        Mode::NoMarker,
        Mode::EndlessFua,
        Mode::StepBack,
        Mode::FastClock,
        Mode::ParamStorm,
        Mode::Silent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::HugeBody => "huge-body",
            Mode::EndlessHeader => "endless-header",
            Mode::HeaderFlood => "header-flood",
            Mode::SlowHeader => "slow-header",
            Mode::HugeError => "huge-error",
            Mode::HugeSdp => "huge-sdp",
            Mode::NoMarker => "no-marker",
            Mode::EndlessFua => "endless-fua",
            Mode::StepBack => "step-back",
            Mode::FastClock => "fast-clock",
            Mode::ParamStorm => "param-storm",
            Mode::Silent => "silent",
        }
    }

    /// The mode a request URI names (`rtsp://h/<mode>/trackID=0`).
    pub fn from_uri(uri: &str) -> Option<Mode> {
        rtsp::first_path_segment(uri)?.parse().ok()
    }

    /// Whether the camera plays a stream (the others fail before PLAY).
    fn streams(self) -> bool {
        matches!(
            self,
            Mode::HugeSdp
                | Mode::NoMarker
                | Mode::EndlessFua
                | Mode::StepBack
                | Mode::FastClock
                | Mode::ParamStorm
                | Mode::Silent
        )
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<_> = Mode::ALL.iter().map(|m| m.name()).collect();
            format!("unknown hostile mode {s:?}; one of {}", names.join(", "))
        })
    }
}

/// How the camera answers DESCRIBE.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// These bytes, then carry on.
    Reply(Vec<u8>),
    /// These bytes, then `filler` repeated until the client hangs up, at most
    /// `rate` bytes per second (`None`: as fast as the socket takes them).
    Endless {
        head: Vec<u8>,
        filler: Vec<u8>,
        rate: Option<u32>,
    },
}

fn sdp(video: &EncodedLoop, host: &str, huge: bool) -> String {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let sets = if huge {
        // 300 kB of "SPS", 400 kB once in base64: no camera needs this.
        let junk: Vec<u8> = std::iter::once(0x67)
            .chain((0..300_000u32).map(|i| (i % 251) as u8))
            .collect();
        format!("{},{}", b64.encode(junk), b64.encode(&video.pps))
    } else {
        format!("{},{}", b64.encode(&video.sps), b64.encode(&video.pps))
    };
    format!(
        "v=0\r\no=- 0 0 IN IP4 {host}\r\ns=Tandem hostile camera\r\nt=0 0\r\n\
         m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={sets}\r\n\
         a=control:trackID=0\r\n",
        pli = video.profile_level_id(),
    )
}

/// The answer to DESCRIBE of `mode`'s camera.
pub fn describe(mode: Mode, cseq: &str, base: &str, video: &EncodedLoop, host: &str) -> Answer {
    let head = |extra: &str| format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}").into_bytes();
    match mode {
        Mode::HugeBody => Answer::Endless {
            head: head("Content-Type: application/sdp\r\nContent-Length: 999999999\r\n\r\n"),
            filler: (0..65_536u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            rate: None,
        },
        Mode::EndlessHeader => Answer::Endless {
            head: head("X-Endless: "),
            filler: vec![b'a'; 65_536],
            rate: None,
        },
        Mode::HeaderFlood => Answer::Endless {
            head: head(""),
            filler: b"X-Flood: yes\r\n".repeat(4096),
            rate: None,
        },
        Mode::SlowHeader => Answer::Endless {
            head: head("X-Slow: "),
            filler: vec![b's'; 20],
            rate: Some(200),
        },
        Mode::HugeError => {
            let reason = "Internal Error \u{1b}[31m ".repeat(2_000);
            let body = "error text that never ends\n".repeat(32_000);
            Answer::Reply(
                format!(
                    "RTSP/1.0 500 {reason}\r\nCSeq: {cseq}\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            )
        }
        _ => Answer::Reply(rtsp::response(
            "200 OK",
            cseq,
            &[
                ("Content-Base", base.to_string()),
                ("Content-Type", "application/sdp".into()),
            ],
            sdp(video, host, mode == Mode::HugeSdp).as_bytes(),
        )),
    }
}

/// The RTP timestamp offset of frame `n` at `fps` in `mode` (90 kHz).
pub fn rtp_offset(mode: Mode, n: u64, fps: u32) -> u32 {
    let fps = u64::from(fps.max(1));
    let t = n * 90_000 / fps;
    let t = match mode {
        Mode::FastClock => t * 105 / 100,
        // From frame 4 s on, 10 s earlier than it should be.
        Mode::StepBack if n >= 4 * fps => t.wrapping_sub(10 * 90_000),
        _ => t,
    };
    t as u32
}

/// The RTP payloads (and marker bits) of frame `n` of a streaming mode.
/// `videos` holds one loop, or two for `ParamStorm` (alternated per frame).
pub fn frame_payloads(mode: Mode, n: u64, videos: &[Arc<EncodedLoop>], stamp: FrameStamp) -> Vec<(Vec<u8>, bool)> {
    match mode {
        Mode::NoMarker => {
            // A non-IDR slice NAL unit per packet, all one access unit.
            let mut p = vec![0x41];
            p.extend((0..1400u32).map(|i| (i % 200 + 1) as u8));
            vec![(p, false); 64]
        }
        Mode::EndlessFua => {
            let mut out = Vec::with_capacity(64);
            for k in 0..64 {
                let fu_header = if n == 0 && k == 0 { 0x80 | 5 } else { 5 };
                let mut p = vec![0x7c, fu_header];
                p.extend((0..1400u32).map(|i| (i % 200 + 1) as u8));
                out.push((p, false));
            }
            out
        }
        _ => {
            let (video, i) = if mode == Mode::ParamStorm && videos.len() > 1 {
                (&videos[(n % 2) as usize], n / 2)
            } else {
                (&videos[0], n)
            };
            let frame = &video.frames[(i % video.frames.len() as u64) as usize];
            let payloads = frame.payloads_with_sei(&stamp.to_h264_sei());
            let last = payloads.len().saturating_sub(1);
            payloads.into_iter().enumerate().map(|(k, p)| (p, k == last)).collect()
        }
    }
}

/// A running hostile camera server.
pub struct HostileServer {
    pub addr: SocketAddr,
}

impl HostileServer {
    pub fn url(&self, mode: Mode) -> String {
        format!("rtsp://{}/{}", self.addr, mode.name())
    }
}

/// What the valid parts of the streams are made of.
#[derive(Clone)]
pub struct HostileVideo {
    /// The picture every streaming mode sends.
    pub main: Arc<EncodedLoop>,
    /// `ParamStorm`'s two loops: key frames only, two parameter sets.
    pub storm: [Arc<EncodedLoop>; 2],
    /// Camera id stamped into frames; mode `i` of `Mode::ALL` stamps `first_id + i`.
    pub first_id: u32,
}

/// Binds the listener and serves every mode until the runtime stops.
pub async fn start(listen: SocketAddr, video: HostileVideo) -> Result<HostileServer> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let _ = sock.set_nodelay(true);
            let video = video.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_client(sock, video).await {
                    debug!(%peer, "hostile camera client ended: {e:#}");
                }
            });
        }
    });
    Ok(HostileServer { addr })
}

/// Writes `head`, then `filler` forever (or until the client hangs up).
async fn endless(sock: &mut TcpStream, head: &[u8], filler: &[u8], rate: Option<u32>) -> Result<()> {
    sock.write_all(head).await?;
    loop {
        match rate {
            Some(r) => {
                sock.write_all(filler).await?;
                tokio::time::sleep(Duration::from_secs_f64(filler.len() as f64 / f64::from(r.max(1)))).await;
            }
            None => {
                sock.write_all(filler).await?;
                tokio::task::yield_now().await;
            }
        }
    }
}

async fn serve_client(mut sock: TcpStream, video: HostileVideo) -> Result<()> {
    let local = sock.local_addr()?;
    let session_id = format!("{:016x}", rand::random::<u64>());
    let mut buf = Vec::with_capacity(4096);
    let mut mode: Option<Mode> = None;
    let mut channel = 0u8;
    let mut playing: Option<Instant> = None;
    let mut n: u64 = 0;
    let mut seq: u16 = rand::random();
    let ts_base: u32 = rand::random();
    let ssrc: u32 = rand::random();
    // Each session numbers its frames from 0: its own camera run for `audit`.
    let boot_id: u64 = rand::random::<u64>().max(1);
    let fps = video.main.spec.fps;
    let wall0 = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    let mut out = Vec::with_capacity(128 * 1024);
    loop {
        loop {
            let (req, used) = match rtsp::parse(&buf) {
                Parsed::Incomplete => break,
                Parsed::Interleaved(k) => {
                    buf.drain(..k);
                    continue;
                }
                Parsed::Garbage(why) => anyhow::bail!("{why}"),
                Parsed::Request(r, k) => (r, k),
            };
            buf.drain(..used);
            let cseq = req.cseq().to_string();
            let m = Mode::from_uri(&req.uri).or(mode);
            let reply = match (req.method.as_str(), m) {
                ("OPTIONS", _) => rtsp::response(
                    "200 OK",
                    &cseq,
                    &[(
                        "Public",
                        "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER".into(),
                    )],
                    b"",
                ),
                ("DESCRIBE", Some(m)) => {
                    mode = Some(m);
                    let base = format!("rtsp://{local}/{}/", m.name());
                    match describe(m, &cseq, &base, &video.main, &local.ip().to_string()) {
                        Answer::Reply(r) => r,
                        Answer::Endless { head, filler, rate } => {
                            return endless(&mut sock, &head, &filler, rate).await
                        }
                    }
                }
                ("SETUP", Some(m)) if m.streams() => {
                    let t = req.header("Transport").unwrap_or_default();
                    if !t.contains("RTP/AVP/TCP") {
                        rtsp::response("461 Unsupported Transport", &cseq, &[], b"")
                    } else {
                        channel = t
                            .split(';')
                            .find_map(|p| p.trim().strip_prefix("interleaved="))
                            .and_then(|v| v.split('-').next()?.parse().ok())
                            .unwrap_or(0);
                        rtsp::response(
                            "200 OK",
                            &cseq,
                            &[
                                (
                                    "Transport",
                                    format!(
                                        "RTP/AVP/TCP;unicast;interleaved={}-{}",
                                        channel,
                                        channel.wrapping_add(1)
                                    ),
                                ),
                                ("Session", format!("{session_id};timeout=60")),
                            ],
                            b"",
                        )
                    }
                }
                ("PLAY", Some(_)) => {
                    playing = Some(Instant::now());
                    rtsp::response(
                        "200 OK",
                        &cseq,
                        &[("Session", session_id.clone()), ("Range", "npt=0.000-".into())],
                        b"",
                    )
                }
                ("GET_PARAMETER" | "SET_PARAMETER", _) => {
                    rtsp::response("200 OK", &cseq, &[("Session", session_id.clone())], b"")
                }
                ("TEARDOWN", _) => {
                    sock.write_all(&rtsp::response("200 OK", &cseq, &[], b"")).await?;
                    return Ok(());
                }
                (_, None) => rtsp::response("404 Not Found", &cseq, &[], b""),
                _ => rtsp::response("455 Method Not Valid in This State", &cseq, &[], b""),
            };
            sock.write_all(&reply).await?;
        }
        if buf.len() > 64 * 1024 {
            anyhow::bail!("client request too long");
        }
        // While playing, frame n is due at start + n/fps; endless modes send
        // as fast as the socket takes their packets.
        let due = match (playing, mode) {
            (_, Some(Mode::Silent)) => None,
            (Some(start), Some(Mode::NoMarker | Mode::EndlessFua)) => Some(start),
            (Some(start), _) => Some(start + Duration::from_micros(n * 1_000_000 / u64::from(fps.max(1)))),
            _ => None,
        };
        let mut chunk = [0u8; 4096];
        tokio::select! {
            r = sock.read(&mut chunk) => {
                let k = r?;
                if k == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()).await }, if due.is_some() => {
                let m = mode.expect("playing implies a mode");
                let stamp = FrameStamp {
                    camera_id: video.first_id + Mode::ALL.iter().position(|x| *x == m).unwrap_or(0) as u32,
                    seq: n,
                    capture_unix_micros: wall0 + (n * 1_000_000 / u64::from(fps.max(1))) as i64,
                    boot_id,
                };
                let videos: Vec<Arc<EncodedLoop>> = if m == Mode::ParamStorm {
                    video.storm.to_vec()
                } else {
                    vec![video.main.clone()]
                };
                let ts = if matches!(m, Mode::NoMarker | Mode::EndlessFua) {
                    ts_base
                } else {
                    ts_base.wrapping_add(rtp_offset(m, n, fps))
                };
                out.clear();
                for (p, marker) in frame_payloads(m, n, &videos, stamp) {
                    out.push(b'$');
                    out.push(channel);
                    out.extend_from_slice(&((p.len() + 12) as u16).to_be_bytes());
                    rtsp::rtp_packet(&mut out, marker, seq, ts, ssrc, &p);
                    seq = seq.wrapping_add(1);
                }
                sock.write_all(&out).await?;
                n += 1;
                tokio::task::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_loop(gop: u32, w: u32, h: u32) -> Arc<EncodedLoop> {
        let spec = super::super::VideoSpec {
            width: w,
            height: h,
            fps: 25,
            gop,
            bitrate_kbps: 200,
        };
        Arc::new(super::super::encode_loop(&spec).unwrap())
    }

    #[test]
    fn modes_round_trip_through_their_paths() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_uri(&format!("rtsp://127.0.0.1:5/{}", m.name())), Some(m));
            assert_eq!(Mode::from_uri(&format!("rtsp://h/{}/trackID=0", m.name())), Some(m));
        }
        assert_eq!(Mode::from_uri("rtsp://h/cam1"), None);
        assert!("nope".parse::<Mode>().unwrap_err().contains("param-storm"));
    }

    #[test]
    fn timestamps_step_back_and_run_fast() {
        assert_eq!(rtp_offset(Mode::StepBack, 99, 25), 99 * 3600);
        assert_eq!(
            rtp_offset(Mode::StepBack, 100, 25),
            (100 * 3600u32).wrapping_sub(900_000)
        );
        assert_eq!(rtp_offset(Mode::FastClock, 100, 25), 100 * 3600 * 105 / 100);
        assert_eq!(rtp_offset(Mode::ParamStorm, 7, 25), 7 * 3600);
    }

    #[test]
    fn describe_answers_are_hostile() {
        let v = tiny_loop(25, 64, 48);
        let big = |m| match describe(m, "2", "rtsp://h/x/", &v, "127.0.0.1") {
            Answer::Reply(r) => r.len(),
            Answer::Endless { head, .. } => {
                assert!(head.starts_with(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n"));
                usize::MAX
            }
        };
        assert_eq!(big(Mode::HugeBody), usize::MAX);
        assert_eq!(big(Mode::EndlessHeader), usize::MAX);
        assert!(big(Mode::HugeSdp) > 400_000);
        assert!(big(Mode::HugeError) > 900_000);
        assert!(big(Mode::StepBack) < 2_000);
    }

    #[test]
    fn broken_streams_never_end_a_frame_and_storms_alternate() {
        let v = tiny_loop(25, 64, 48);
        let stamp = FrameStamp {
            camera_id: 1,
            seq: 0,
            capture_unix_micros: 0,
            boot_id: 1,
        };
        for m in [Mode::NoMarker, Mode::EndlessFua] {
            for n in 0..3 {
                let p = frame_payloads(m, n, std::slice::from_ref(&v), stamp);
                assert!(p.iter().all(|(_, marker)| !marker), "{m:?}");
            }
        }
        // Only the first FU-A fragment has the start bit; none has the end bit.
        let first = frame_payloads(Mode::EndlessFua, 0, std::slice::from_ref(&v), stamp);
        assert_eq!(first[0].0[1] & 0xc0, 0x80);
        assert!(first[1..].iter().all(|(p, _)| p[1] & 0xc0 == 0));
        // A valid frame ends with the marker, carries its stamp.
        let ok = frame_payloads(Mode::StepBack, 0, std::slice::from_ref(&v), stamp);
        assert!(ok.last().unwrap().1);
        assert!(ok.iter().any(|(p, _)| FrameStamp::from_h264_nal(p) == Some(stamp)));
        // The storm's frames carry alternating parameter sets.
        let a = tiny_loop(1, 64, 48);
        let b = tiny_loop(1, 32, 24);
        let sps = |n| {
            frame_payloads(Mode::ParamStorm, n, &[a.clone(), b.clone()], stamp)
                .into_iter()
                .find(|(p, _)| p[0] & 0x1f == 7)
                .map(|(p, _)| p)
        };
        assert_eq!(sps(0).as_deref(), Some(a.sps.as_slice()));
        assert_eq!(sps(1).as_deref(), Some(b.sps.as_slice()));
        assert_ne!(a.sps, b.sps);
        assert_eq!(sps(2), sps(0));
    }
}
