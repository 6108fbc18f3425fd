//! One client connection of the simulated camera: RTSP requests, then either
//! the live stream (frames from the camera's broadcast, RTCP sender reports
//! every second) or an ONVIF replay of edge storage (frames rebuilt from the
//! ring, real time or as fast as the socket takes them).
//!
//! Owns one connection's state. Must never buffer more than one frame ahead of
//! the socket: a replay waits on `write_all`, so TCP backpressure paces it and
//! a slow reader costs no memory.

use super::edge::PlannedFrame;
use super::replay::{self as sim_replay, PlayRequest, Require, RtpParams};
use super::rtsp::{self, Parsed};
use super::server::{camera_index, sdp, Camera, Playing, SentFrame, SessionCount, SimOptions, SR_INTERVAL};
use super::video::EncodedLoop;
use crate::replay::onvif;
use crate::time::Time90k;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::broadcast;
use tracing::{debug, info};

pub(super) enum Delivery {
    Tcp {
        channel: u8,
    },
    Udp {
        socket: UdpSocket,
        dest: SocketAddr,
        /// RTCP: the socket on the server port + 1, and the client's RTCP port.
        rtcp: UdpSocket,
        rtcp_dest: SocketAddr,
    },
}

impl Delivery {
    /// Sends RTP packets (already `$`-framed for TCP).
    async fn send_rtp(&self, sock: &mut TcpStream, tcp_bytes: &[u8], packets: &[Vec<u8>]) -> Result<()> {
        match self {
            Delivery::Tcp { .. } => sock.write_all(tcp_bytes).await?,
            Delivery::Udp { socket, dest, .. } => {
                for p in packets {
                    // A full socket buffer drops the packet, as UDP would on the wire.
                    let _ = socket.send_to(p, dest).await;
                }
            }
        }
        Ok(())
    }

    async fn send_rtcp(&self, sock: &mut TcpStream, pkt: &[u8]) -> Result<()> {
        match self {
            Delivery::Tcp { channel } => {
                let mut framed = Vec::with_capacity(pkt.len() + 4);
                framed.push(b'$');
                framed.push(channel.wrapping_add(1));
                framed.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
                framed.extend_from_slice(pkt);
                sock.write_all(&framed).await?;
            }
            Delivery::Udp { rtcp, rtcp_dest, .. } => {
                let _ = rtcp.send_to(pkt, rtcp_dest).await;
            }
        }
        Ok(())
    }

    fn tcp_channel(&self) -> Option<u8> {
        match self {
            Delivery::Tcp { channel } => Some(*channel),
            Delivery::Udp { .. } => None,
        }
    }
}

/// Packet and octet counts for sender reports (RFC 3550 §6.4.1).
#[derive(Default)]
struct SrCounts {
    packets: u32,
    octets: u32,
    last: Option<Instant>,
}

impl SrCounts {
    fn add(&mut self, packets: usize, octets: usize) {
        self.packets = self.packets.wrapping_add(packets as u32);
        self.octets = self.octets.wrapping_add(octets as u32);
    }
    fn report(&self, ssrc: u32, capture_unix_micros: i64, rtp_ts: u32) -> Vec<u8> {
        let ntp = onvif::ntp_from_time(Time90k::from_unix_micros(capture_unix_micros));
        let mut v = Vec::with_capacity(36);
        rtsp::rtcp_sender_report(&mut v, ssrc, ntp, rtp_ts, self.packets, self.octets);
        v
    }
}

/// A replay under way: the plan, where it is, and how fast it goes.
struct ReplaySend {
    camera: usize,
    frames: Vec<PlannedFrame>,
    pos: usize,
    /// Real time: frame k is due at `started` + (its capture − the first's).
    real_time: bool,
    started: Instant,
    ts_base: u32,
    cseq: u8,
    counts: SrCounts,
}

impl ReplaySend {
    fn first_capture(&self) -> i64 {
        self.frames.first().map_or(0, |f| f.frame.capture_unix_micros)
    }
    fn rtp_ts(&self, capture_unix_micros: i64) -> u32 {
        let ticks = Time90k::from_unix_micros(capture_unix_micros - self.first_capture()).0;
        self.ts_base.wrapping_add(ticks as u32)
    }
    fn due(&self) -> Option<tokio::time::Instant> {
        let f = self.frames.get(self.pos)?;
        if !self.real_time {
            return None;
        }
        let after = (f.frame.capture_unix_micros - self.first_capture()).max(0) as u64;
        Some((self.started + std::time::Duration::from_micros(after)).into())
    }
    fn done(&self) -> bool {
        self.pos >= self.frames.len()
    }
}

/// Waits until the replay's next frame is due (at once without rate control).
async fn replay_due(r: &Option<ReplaySend>) {
    if let Some(due) = r.as_ref().and_then(ReplaySend::due) {
        tokio::time::sleep_until(due).await;
    }
}

pub(super) async fn serve_client(
    mut sock: TcpStream,
    peer: SocketAddr,
    cameras: Arc<Vec<Camera>>,
    video: Arc<EncodedLoop>,
    opts: SimOptions,
    sessions: Arc<SessionCount>,
) -> Result<()> {
    let local = sock.local_addr()?;
    let session_id = format!("{:016x}", rand::random::<u64>());
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut buf = Vec::with_capacity(4096);
    let mut camera: Option<usize> = None;
    let mut delivery: Option<Delivery> = None;
    let mut rx: Option<broadcast::Receiver<Arc<SentFrame>>> = None;
    let mut waiting_key = true;
    let mut live_counts = SrCounts::default();
    let mut replay: Option<ReplaySend> = None;
    // Dropped (counted out) on TEARDOWN, disconnect or error: every return below.
    let mut playing: Option<Playing> = None;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let step_delay = opts.setup_delay / 3;
    let switched = opts.switch.as_ref().map(|(alt, _)| alt.clone());
    loop {
        // Handle every complete request already buffered.
        loop {
            match rtsp::parse(&buf) {
                Parsed::Incomplete => break,
                Parsed::Interleaved(n) => {
                    // RTCP from the client on the stream's odd channel: only a
                    // key frame request matters to a camera; receiver reports
                    // and the rest are read and dropped.
                    let rtcp_channel = delivery
                        .as_ref()
                        .and_then(|d| d.tcp_channel())
                        .map(|c| c.wrapping_add(1));
                    if Some(buf[1]) == rtcp_channel && rtsp::is_key_frame_request(&buf[4..n]) {
                        key_frame_requested(&cameras, camera, rx.is_some(), &opts, peer);
                    }
                    buf.drain(..n);
                }
                Parsed::Garbage(why) => anyhow::bail!("{peer}: {why}"),
                Parsed::Request(req, n) => {
                    buf.drain(..n);
                    debug!(%peer, method = %req.method, uri = %req.uri, headers = ?req.headers, "RTSP request");
                    let cseq = req.cseq().to_string();
                    if req.method != "OPTIONS" {
                        if let Some(auth) = &opts.auth {
                            if !auth.check(&req) {
                                let r = rtsp::response(
                                    "401 Unauthorized",
                                    &cseq,
                                    &[("WWW-Authenticate", auth.challenge())],
                                    b"",
                                );
                                sock.write_all(&r).await?;
                                continue;
                            }
                        }
                    }
                    let wants_replay = match sim_replay::require(&req) {
                        Require::Unsupported(tag) => {
                            let r = rtsp::response("551 Option not supported", &cseq, &[("Unsupported", tag)], b"");
                            sock.write_all(&r).await?;
                            continue;
                        }
                        Require::Replay => true,
                        // GStreamer's rtspsrc (1.22, ONVIF mode) asks for a
                        // recording with a clock Range but no Require.
                        Require::None => req.method == "PLAY" && sim_replay::clock_range(&req),
                    };
                    let reply = match req.method.as_str() {
                        "OPTIONS" => rtsp::response(
                            "200 OK",
                            &cseq,
                            &[(
                                "Public",
                                "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER".into(),
                            )],
                            b"",
                        ),
                        "DESCRIBE" => match camera_index(&req.uri, opts.count) {
                            Some(i) => {
                                tokio::time::sleep(step_delay).await;
                                let base = format!("rtsp://{local}/cam{}/", i + 1);
                                rtsp::response(
                                    "200 OK",
                                    &cseq,
                                    &[("Content-Base", base), ("Content-Type", "application/sdp".into())],
                                    sdp(&video, i, &local.ip().to_string()).as_bytes(),
                                )
                            }
                            None => rtsp::response("404 Not Found", &cseq, &[], b""),
                        },
                        "SETUP" => match camera_index(&req.uri, opts.count) {
                            Some(i) => {
                                tokio::time::sleep(step_delay).await;
                                camera = Some(i);
                                let t = req.header("Transport").unwrap_or_default().to_string();
                                match setup_transport(&t, peer, local, ssrc).await {
                                    Ok((d, reply_t)) => {
                                        delivery = Some(d);
                                        rtsp::response(
                                            "200 OK",
                                            &cseq,
                                            &[("Transport", reply_t), ("Session", format!("{session_id};timeout=60"))],
                                            b"",
                                        )
                                    }
                                    Err(e) => {
                                        debug!(%peer, "unsupported transport {t:?}: {e}");
                                        rtsp::response("461 Unsupported Transport", &cseq, &[], b"")
                                    }
                                }
                            }
                            None => rtsp::response("404 Not Found", &cseq, &[], b""),
                        },
                        "PLAY" if wants_replay => match (camera, &delivery) {
                            (Some(i), Some(_)) => {
                                // A replay ends any live stream of this session.
                                rx = None;
                                drop(playing.take());
                                match start_replay(&req, &cameras[i], i, &video) {
                                    Ok((r, headers)) => {
                                        let mut headers = headers;
                                        headers.push(("Session", session_id.clone()));
                                        headers.push((
                                            "RTP-Info",
                                            format!(
                                                "url=rtsp://{local}/cam{}/trackID=0;seq={seq};rtptime={}",
                                                i + 1,
                                                r.ts_base
                                            ),
                                        ));
                                        info!(
                                            %peer,
                                            camera = i + 1,
                                            frames = r.frames.len(),
                                            rate_control = r.real_time,
                                            "simulated camera replay started"
                                        );
                                        replay = Some(r);
                                        rtsp::response("200 OK", &cseq, &headers, b"")
                                    }
                                    Err((status, headers)) => {
                                        replay = None;
                                        rtsp::response(status, &cseq, &headers, b"")
                                    }
                                }
                            }
                            _ => rtsp::response("455 Method Not Valid in This State", &cseq, &[], b""),
                        },
                        "PLAY" => match (camera, &delivery) {
                            (Some(i), Some(_)) => {
                                tokio::time::sleep(step_delay).await;
                                replay = None;
                                rx = Some(cameras[i].tx.subscribe());
                                waiting_key = true;
                                live_counts.last = None;
                                if playing.as_ref().map(|p| p.index) != Some(i) {
                                    drop(playing.take());
                                    playing = Some(Playing::begin(sessions.clone(), i, peer));
                                }
                                rtsp::response(
                                    "200 OK",
                                    &cseq,
                                    &[("Session", session_id.clone()), ("Range", "npt=0.000-".into())],
                                    b"",
                                )
                            }
                            _ => rtsp::response("455 Method Not Valid in This State", &cseq, &[], b""),
                        },
                        "PAUSE" => {
                            // Stops sending; the next PLAY says what to send.
                            rx = None;
                            replay = None;
                            drop(playing.take());
                            rtsp::response("200 OK", &cseq, &[("Session", session_id.clone())], b"")
                        }
                        "GET_PARAMETER" | "SET_PARAMETER" => {
                            rtsp::response("200 OK", &cseq, &[("Session", session_id.clone())], b"")
                        }
                        "TEARDOWN" => {
                            let r = rtsp::response("200 OK", &cseq, &[], b"");
                            sock.write_all(&r).await?;
                            return Ok(());
                        }
                        _ => rtsp::response("501 Not Implemented", &cseq, &[], b""),
                    };
                    sock.write_all(&reply).await?;
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let mut rtcp_in = [0u8; 1500];
        let replaying = replay.as_ref().is_some_and(|r| !r.done());
        let udp_rtcp = match &delivery {
            Some(Delivery::Udp { rtcp, .. }) => Some(rtcp),
            _ => None,
        };
        tokio::select! {
            r = async { udp_rtcp.unwrap().recv_from(&mut rtcp_in).await }, if udp_rtcp.is_some() => {
                // Only the client's own RTCP counts, as on the TCP channel.
                if let Ok((n, from)) = r {
                    if from.ip() == peer.ip() && rtsp::is_key_frame_request(&rtcp_in[..n]) {
                        key_frame_requested(&cameras, camera, rx.is_some(), &opts, peer);
                    }
                }
            }
            r = sock.read(&mut chunk) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            _ = replay_due(&replay), if replaying => {
                let (Some(r), Some(d)) = (replay.as_mut(), delivery.as_ref()) else { continue };
                let planned = r.frames[r.pos];
                let cam = &cameras[r.camera];
                let payloads = sim_replay::payloads(&planned.frame, &video, switched.as_deref(), cam.identity);
                let params = RtpParams {
                    ssrc,
                    timestamp: r.rtp_ts(planned.frame.capture_unix_micros),
                    cseq: r.cseq,
                };
                packets.clear();
                let channel = d.tcp_channel();
                let bytes = sim_replay::packetize(&planned, &payloads, params, &mut seq, |v, len| {
                    if let Some(ch) = channel {
                        v.push(b'$');
                        v.push(ch);
                        v.extend_from_slice(&(len as u16).to_be_bytes());
                    }
                }, &mut packets);
                out.clear();
                if channel.is_some() {
                    for p in &packets {
                        out.extend_from_slice(p);
                    }
                }
                d.send_rtp(&mut sock, &out, &packets).await?;
                r.counts.add(packets.len(), bytes);
                r.pos += 1;
                if r.done() {
                    // The end of the range: a sender report and BYE, then the
                    // session stays for TEARDOWN (or the client hangs up).
                    let mut rtcp = r.counts.report(ssrc, planned.frame.capture_unix_micros, params.timestamp);
                    rtsp::rtcp_bye(&mut rtcp, ssrc);
                    d.send_rtcp(&mut sock, &rtcp).await?;
                    info!(%peer, camera = r.camera + 1, frames = r.frames.len(),
                        ms = r.started.elapsed().as_millis() as u64, "simulated camera replay finished");
                }
            }
            f = async { rx.as_mut().unwrap().recv().await }, if rx.is_some() => {
                let frame = match f {
                    Ok(f) => f,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        debug!(%peer, "client lagged by {n} frames; resuming at next key frame");
                        waiting_key = true;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                };
                if waiting_key && !frame.key {
                    continue;
                }
                waiting_key = false;
                let Some(d) = delivery.as_ref() else { continue };
                let last = frame.payloads.len().saturating_sub(1);
                out.clear();
                packets.clear();
                let mut bytes = 0;
                for (k, p) in frame.payloads.iter().enumerate() {
                    let mut pkt = Vec::with_capacity(p.len() + 16);
                    if let Some(ch) = d.tcp_channel() {
                        pkt.push(b'$');
                        pkt.push(ch);
                        pkt.extend_from_slice(&((p.len() + 12) as u16).to_be_bytes());
                    }
                    rtsp::rtp_packet(&mut pkt, k == last, seq, frame.rtp_ts, ssrc, p);
                    seq = seq.wrapping_add(1);
                    bytes += p.len() + 12;
                    if d.tcp_channel().is_some() {
                        out.extend_from_slice(&pkt);
                    }
                    packets.push(pkt);
                }
                d.send_rtp(&mut sock, &out, &packets).await?;
                live_counts.add(packets.len(), bytes);
                // Right after PLAY (the first frame sent) and every second:
                // the capture time of this very frame, by the camera's clock.
                if live_counts.last.is_none_or(|t| t.elapsed() >= SR_INTERVAL) {
                    live_counts.last = Some(Instant::now());
                    let sr = live_counts.report(ssrc, frame.capture_unix_micros, frame.rtp_ts);
                    d.send_rtcp(&mut sock, &sr).await?;
                }
            }
        }
    }
}

/// Answers a replay PLAY: the plan and the 200's headers, or the error
/// status and its headers (457 with the recorded range when the request lies
/// wholly outside it; 551 when this camera keeps no edge storage).
#[allow(clippy::type_complexity)]
fn start_replay(
    req: &rtsp::Request,
    cam: &Camera,
    index: usize,
    video: &EncodedLoop,
) -> Result<(ReplaySend, Vec<(&'static str, String)>), (&'static str, Vec<(&'static str, String)>)> {
    let Some(ring) = &cam.edge else {
        return Err((
            "551 Option not supported",
            vec![("Unsupported", sim_replay::ONVIF_REPLAY.to_string())],
        ));
    };
    let play = PlayRequest::parse(req).map_err(|e| {
        debug!("bad replay PLAY: {e}");
        ("457 Invalid Range", Vec::new())
    })?;
    let planned = {
        let ring = ring.lock().map_err(|_| ("500 Internal Server Error", Vec::new()))?;
        play.plan(&ring)
    };
    let frames = planned.map_err(|available| {
        let headers = available.map(|r| vec![("Range", r.format())]).unwrap_or_default();
        ("457 Invalid Range", headers)
    })?;
    let range = sim_replay::answered_range(&frames, video.spec.fps);
    let mut headers = vec![("Range", range.format())];
    if !play.rate_control {
        headers.push(("Rate-Control", "no".into()));
    }
    Ok((
        ReplaySend {
            camera: index,
            frames,
            pos: 0,
            real_time: play.rate_control,
            started: Instant::now(),
            ts_base: rand::random(),
            cseq: play.cseq,
            counts: SrCounts::default(),
        },
        headers,
    ))
}

/// A client's key frame request for the camera this session plays live: the
/// camera's clock makes its next frame a key frame (every client of the camera
/// gets it, as from a real encoder). Ignored before PLAY, during a replay
/// (recorded frames cannot change) and when the camera is set to ignore them.
fn key_frame_requested(cameras: &[Camera], camera: Option<usize>, live: bool, opts: &SimOptions, peer: SocketAddr) {
    let Some(i) = camera.filter(|_| live) else { return };
    if opts.ignore_key_frame_requests {
        debug!(%peer, camera = i + 1, "key frame request ignored (--ignore-key-frame-requests)");
        return;
    }
    debug!(%peer, camera = i + 1, "key frame requested (RTCP)");
    cameras[i].key_request.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Answers SETUP's `Transport`: interleaved TCP or UDP, naming the session's
/// `ssrc` so a client can address RTCP feedback to it before the first packet.
pub(super) async fn setup_transport(
    t: &str,
    peer: SocketAddr,
    local: SocketAddr,
    ssrc: u32,
) -> Result<(Delivery, String)> {
    let param = |name: &str| {
        t.split(';').find_map(|p| {
            p.trim()
                .strip_prefix(name)
                .map(|v| v.trim_start_matches('=').to_string())
        })
    };
    if t.contains("RTP/AVP/TCP") {
        let ch: u8 = param("interleaved")
            .and_then(|v| v.split('-').next().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        return Ok((
            Delivery::Tcp { channel: ch },
            format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={ssrc:08X}",
                ch,
                ch.wrapping_add(1)
            ),
        ));
    }
    let ports = param("client_port").context("UDP transport without client_port")?;
    let mut split = ports.split('-');
    let rtp_port: u16 = split.next().unwrap_or_default().parse().context("bad client_port")?;
    let rtcp_port: u16 = match split.next() {
        Some(p) => p.parse().context("bad client_port")?,
        None => rtp_port.wrapping_add(1),
    };
    // RTP and RTCP on adjacent ports, as the Transport answer promises.
    let (socket, rtcp) = bind_pair(local).await?;
    let server_port = socket.local_addr()?.port();
    let dest = SocketAddr::new(peer.ip(), rtp_port);
    info!(%peer, "simulated camera streaming over UDP to {dest}");
    Ok((
        Delivery::Udp {
            socket,
            dest,
            rtcp,
            rtcp_dest: SocketAddr::new(peer.ip(), rtcp_port),
        },
        format!(
            "RTP/AVP;unicast;client_port={ports};server_port={server_port}-{};ssrc={ssrc:08X}",
            server_port + 1
        ),
    ))
}

async fn bind_pair(local: SocketAddr) -> Result<(UdpSocket, UdpSocket)> {
    for _ in 0..32 {
        let a = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
        let port = a.local_addr()?.port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(SocketAddr::new(local.ip(), port + 1)).await {
            return Ok((a, b));
        }
    }
    anyhow::bail!("no two adjacent UDP ports free for RTP and RTCP")
}
