//! The simulated camera's RTSP server: one clock task per camera that stamps and
//! packetizes each frame once, and one task per client connection that frames
//! those packets for TCP-interleaved or UDP delivery.
//!
//! Owns sockets and timing for the simulated cameras: live sessions (with
//! RTCP sender reports tying RTP time to the camera's capture clock) and ONVIF
//! replay of edge storage (`edge`, `replay`). Must never encode video (that
//! happened once in `video`) and never let one client's slowness stall a
//! camera or another client: slow clients lag on a broadcast channel and skip
//! to the next key frame, as a real camera's encoder would drop them; a replay
//! is paced by its own socket's backpressure.

use super::edge::{EdgeFrame, EdgeRing, Source};
use super::replay::Identity;
use super::rtsp::{self, Auth};
use super::video::EncodedLoop;
use crate::nal::FrameStamp;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tracing::{debug, info, warn, Instrument};

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub count: u32,
    /// Camera id stamped into the first camera's frames; the others count up.
    pub first_id: u32,
    /// Total time the camera takes to answer DESCRIBE, SETUP and PLAY, split
    /// evenly: mimics cameras that need seconds to start a session.
    pub setup_delay: Duration,
    pub auth: Option<Auth>,
    /// After this long, switch every camera to another encoding (as when an
    /// installer changes a camera's resolution): new SPS/PPS arrive in-band.
    pub switch: Option<(Arc<EncodedLoop>, Duration)>,
    /// When objects cross a scripted scene (`encode_scripted`).
    pub motion: Option<super::script::MotionScript>,
    /// Ignore RTCP key frame requests (PLI/FIR), like a camera whose encoder
    /// cannot be told to start a GOP: a new client then waits for the next one.
    pub ignore_key_frame_requests: bool,
}

/// One frame as the camera sends it, shared by every client.
pub(super) struct SentFrame {
    pub key: bool,
    pub rtp_ts: u32,
    pub capture_unix_micros: i64,
    pub payloads: Vec<Vec<u8>>,
}

/// The camera's edge storage, shared by its clock (writer) and replays.
pub(super) type SharedRing = Arc<Mutex<EdgeRing>>;

pub(super) struct Camera {
    pub tx: broadcast::Sender<Arc<SentFrame>>,
    pub identity: Identity,
    pub edge: Option<SharedRing>,
    /// Set by a client's RTCP key frame request; the clock makes its next
    /// frame a key frame and clears it.
    pub key_request: Arc<AtomicBool>,
}

/// Sender reports go out right after PLAY and then this often.
pub(super) const SR_INTERVAL: Duration = Duration::from_secs(1);

/// How many RTSP sessions are PLAY-ing each camera, so a test can prove that
/// many viewers share one camera session. Logged on every change (`tandem
/// sim-camera` runs as a separate process in tests).
#[derive(Debug, Default)]
pub struct SessionCount {
    playing: Vec<AtomicUsize>,
}

impl SessionCount {
    fn new(cameras: u32) -> SessionCount {
        SessionCount {
            playing: (0..cameras).map(|_| AtomicUsize::new(0)).collect(),
        }
    }
    /// Sessions PLAY-ing camera `camera` (1-based); 0 for an unknown camera.
    pub fn of(&self, camera: u32) -> usize {
        (camera as usize)
            .checked_sub(1)
            .and_then(|i| self.playing.get(i))
            .map_or(0, |n| n.load(Ordering::SeqCst))
    }
    pub fn total(&self) -> usize {
        self.playing.iter().map(|n| n.load(Ordering::SeqCst)).sum()
    }
}

/// One client's PLAY-ing session; counts itself out when the client goes.
pub(super) struct Playing {
    counts: Arc<SessionCount>,
    pub index: usize,
    peer: SocketAddr,
}

impl Playing {
    pub(super) fn begin(counts: Arc<SessionCount>, index: usize, peer: SocketAddr) -> Playing {
        counts.playing[index].fetch_add(1, Ordering::SeqCst);
        let p = Playing { counts, index, peer };
        p.log("started");
        p
    }
    fn log(&self, what: &str) {
        info!(
            peer = %self.peer,
            camera = self.index + 1,
            sessions = self.counts.of(self.index as u32 + 1),
            total = self.counts.total(),
            "simulated camera session {what}"
        );
    }
}

impl Drop for Playing {
    fn drop(&mut self) {
        self.counts.playing[self.index].fetch_sub(1, Ordering::SeqCst);
        self.log("ended");
    }
}

pub struct SimServer {
    pub addr: SocketAddr,
    pub count: u32,
    /// Ground truth of scripted motion: every crossing each camera played.
    pub motion_log: super::script::MotionLog,
    sessions: Arc<SessionCount>,
}

impl SimServer {
    pub fn url(&self, camera: u32) -> String {
        format!("rtsp://{}/cam{camera}", self.addr)
    }
    /// Sessions PLAY-ing camera `camera` (1-based) right now.
    pub fn sessions(&self, camera: u32) -> usize {
        self.sessions.of(camera)
    }
    /// Sessions PLAY-ing any of this server's cameras.
    pub fn total_sessions(&self) -> usize {
        self.sessions.total()
    }
}

/// Binds the listener and starts the cameras; they run until the runtime stops.
pub async fn start(listen: SocketAddr, video: Arc<EncodedLoop>, opts: SimOptions) -> Result<SimServer> {
    start_with_edge(listen, video, opts, None).await
}

/// Like `start`, each camera keeping the last `edge_storage` seconds of its
/// frames (at most `edge::MAX_SECONDS`) for ONVIF replay.
pub async fn start_with_edge(
    listen: SocketAddr,
    video: Arc<EncodedLoop>,
    opts: SimOptions,
    edge_storage: Option<u32>,
) -> Result<SimServer> {
    if let Some(s) = edge_storage {
        anyhow::ensure!(
            (1..=super::edge::MAX_SECONDS).contains(&s),
            "--edge-storage must be between 1 and {} seconds (got {s})",
            super::edge::MAX_SECONDS
        );
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let mut cameras = Vec::new();
    let motion_log = super::script::MotionLog::default();
    for i in 0..opts.count {
        let (tx, _) = broadcast::channel(video.spec.fps as usize * 2);
        let id = opts.first_id + i;
        let video = video.clone();
        let tx2 = tx.clone();
        // Tasks are named through their tracing span (tokio's task names need tokio_unstable).
        let switch = opts.switch.clone();
        let script = opts.motion.clone().map(|m| (m, motion_log.clone()));
        // Sequence numbers restart with the clock; the boot id tells runs apart.
        let identity = Identity {
            camera_id: id,
            boot_id: rand::random::<u64>().max(1),
        };
        let edge = edge_storage.map(|s| Arc::new(Mutex::new(EdgeRing::new(s, video.spec.fps))));
        let key_request = Arc::new(AtomicBool::new(false));
        let clock = CameraClock {
            identity,
            video,
            switch,
            script,
            tx: tx2,
            edge: edge.clone(),
            key_request: key_request.clone(),
        };
        tokio::spawn(
            clock
                .run()
                .instrument(tracing::info_span!("sim_camera", camera = i + 1)),
        );
        cameras.push(Camera {
            tx,
            identity,
            edge,
            key_request,
        });
    }
    let count = opts.count;
    let sessions = Arc::new(SessionCount::new(count));
    let sessions2 = sessions.clone();
    let cameras = Arc::new(cameras);
    let video2 = video.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    let cameras = cameras.clone();
                    let opts = opts.clone();
                    let video = video2.clone();
                    let sessions = sessions2.clone();
                    tokio::spawn(async move {
                        if let Err(e) = super::session::serve_client(sock, peer, cameras, video, opts, sessions).await {
                            debug!(%peer, "simulated camera client ended: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    warn!("simulated camera accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(SimServer {
        addr,
        count,
        motion_log,
        sessions,
    })
}

struct CameraClock {
    identity: Identity,
    video: Arc<EncodedLoop>,
    switch: Option<(Arc<EncodedLoop>, Duration)>,
    script: Option<(super::script::MotionScript, super::script::MotionLog)>,
    tx: broadcast::Sender<Arc<SentFrame>>,
    edge: Option<SharedRing>,
    key_request: Arc<AtomicBool>,
}

/// Where a loop's frame `n` is once key frame requests have moved it on: a
/// request skips the loop forward to its next key frame (a jump in the scene,
/// which a real encoder would not make, but frame numbers and capture times go
/// on unbroken, and those are what the audit checks). Returns the index and
/// the new skip.
fn loop_index(frames: &[super::video::EncodedFrame], n: u64, skip: u64, key_requested: bool) -> (usize, u64) {
    let len = frames.len() as u64;
    let i = ((n + skip) % len) as usize;
    if !key_requested || frames[i].key {
        return (i, skip);
    }
    match (1..len as usize)
        .map(|d| (i + d) % len as usize)
        .find(|&k| frames[k].key)
    {
        Some(k) => (k, skip + ((k + len as usize - i) % len as usize) as u64),
        None => (i, skip),
    }
}

impl CameraClock {
    /// Emits frame n at start + n/fps forever, whether or not anyone watches, so
    /// sequence numbers and capture times follow the wall clock like a real camera,
    /// and records each one in edge storage (the link's state does not matter:
    /// the card is in the camera).
    async fn run(self) {
        let CameraClock {
            identity,
            video,
            switch,
            script,
            tx,
            edge,
            key_request,
        } = self;
        let Identity { camera_id: id, boot_id } = identity;
        // Loop frames skipped to answer key frame requests, per loop (the
        // switched-to loop must still start at its own IDR).
        let (mut skip_main, mut skip_alt) = (0u64, 0u64);
        let fps = video.spec.fps as u64;
        let switch = switch.map(|(alt, after)| (alt, (after.as_secs_f64() * fps as f64) as u64));
        let start = Instant::now();
        let wall0 = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        let ts_base: u32 = rand::random();
        let mut n: u64 = 0;
        let mut player = script.map(|(s, log)| (super::script::Player::new(s, &video), log));
        loop {
            let due = start + Duration::from_micros(n * 1_000_000 / fps);
            tokio::time::sleep_until(due.into()).await;
            let capture_unix_micros = wall0 + (n * 1_000_000 / fps) as i64;
            // The script advances whether or not anyone watches, like the scene.
            let scripted = player.as_mut().map(|(p, log)| {
                let (i, crossing) = p.advance();
                if let Some(c) = crossing {
                    let c = c.at(id, capture_unix_micros);
                    info!(enters = %c.enters, leaves = %c.leaves, "scripted motion: an object crosses the scene");
                    if let Ok(mut l) = log.lock() {
                        l.push(c);
                    }
                }
                i
            });
            // A scripted scene plays its crossings on cue and ignores requests.
            let asked = scripted.is_none() && key_request.swap(false, Ordering::Relaxed);
            let (source, index) = match (&switch, scripted) {
                (_, Some(i)) => (Source::Main, i),
                // The other loop starts with its IDR, carrying the new SPS/PPS.
                (Some((alt, at)), _) if n >= *at => {
                    let (i, s) = loop_index(&alt.frames, n - at, skip_alt, asked);
                    skip_alt = s;
                    (Source::Switched, i)
                }
                _ => {
                    let (i, s) = loop_index(&video.frames, n, skip_main, asked);
                    skip_main = s;
                    (Source::Main, i)
                }
            };
            if asked {
                debug!(frame = n, "key frame requested; this frame is one");
            }
            let frame = match (source, &switch) {
                (Source::Switched, Some((alt, _))) => &alt.frames[index],
                _ => &video.frames[index],
            };
            if let Some(ring) = &edge {
                if let Ok(mut r) = ring.lock() {
                    r.push(EdgeFrame {
                        n,
                        capture_unix_micros,
                        source,
                        index: index as u32,
                        key: frame.key,
                    });
                }
            }
            if tx.receiver_count() > 0 {
                let stamp = FrameStamp {
                    camera_id: id,
                    seq: n,
                    capture_unix_micros,
                    boot_id,
                }
                .to_h264_sei();
                let payloads = frame.payloads_with_sei(&stamp);
                let rtp_ts = ts_base.wrapping_add((n * 90_000 / fps) as u32);
                let _ = tx.send(Arc::new(SentFrame {
                    key: frame.key,
                    rtp_ts,
                    capture_unix_micros,
                    payloads,
                }));
            }
            n += 1;
        }
    }
}

pub(super) fn camera_index(uri: &str, count: u32) -> Option<usize> {
    let n: u32 = rtsp::first_path_segment(uri)?.strip_prefix("cam")?.parse().ok()?;
    (1..=count).contains(&n).then(|| (n - 1) as usize)
}

pub fn sdp(video: &EncodedLoop, camera: usize, host: &str) -> String {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    format!(
        "v=0\r\no=- 0 0 IN IP4 {host}\r\ns=Tandem simulated camera {cam}\r\nt=0 0\r\n\
         m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={sps},{pps}\r\n\
         a=framerate:{fps}\r\na=control:trackID=0\r\n",
        cam = camera + 1,
        pli = video.profile_level_id(),
        sps = b64.encode(&video.sps),
        pps = b64.encode(&video.pps),
        fps = video.spec.fps,
    )
}

#[cfg(test)]
mod tests {
    use super::camera_index;
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A bare RTSP client: DESCRIBE, SETUP (TCP interleaved) and PLAY of `cam`.
    async fn play(addr: SocketAddr, cam: u32) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let url = format!("rtsp://{addr}/cam{cam}");
        for (cseq, req) in [
            format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            format!(
                "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            ),
            format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\n\r\n"),
        ]
        .into_iter()
        .enumerate()
        {
            s.write_all(req.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 4096];
            // Each answer ends its head with a blank line (DESCRIBE adds an SDP body, read with it or ignored).
            while !String::from_utf8_lossy(&got).contains(&format!("CSeq: {}", cseq + 1)) {
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0, "camera closed during {req}");
                got.extend_from_slice(&b[..n]);
            }
            assert!(got.starts_with(b"RTSP/1.0 200"), "{}", String::from_utf8_lossy(&got));
        }
        s
    }

    async fn wait_count(server: &SimServer, camera: u32, want: usize) {
        for _ in 0..200 {
            if server.sessions(camera) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("camera {camera}: {} sessions, want {want}", server.sessions(camera));
    }

    #[tokio::test]
    async fn sessions_are_counted_per_camera_while_playing() {
        let spec = super::super::VideoSpec {
            width: 64,
            height: 64,
            fps: 25,
            gop: 5,
            bitrate_kbps: 100,
        };
        let video = Arc::new(super::super::encode_loop(&spec).unwrap());
        let opts = SimOptions {
            count: 2,
            first_id: 1,
            setup_delay: Duration::ZERO,
            auth: None,
            switch: None,
            motion: None,
            ignore_key_frame_requests: false,
        };
        let server = start("127.0.0.1:0".parse().unwrap(), video, opts).await.unwrap();
        assert_eq!((server.sessions(1), server.total_sessions()), (0, 0));
        let a = play(server.addr, 1).await;
        let b = play(server.addr, 1).await;
        let c = play(server.addr, 2).await;
        assert_eq!((server.sessions(1), server.sessions(2)), (2, 1));
        assert_eq!(server.total_sessions(), 3);
        assert_eq!(server.sessions(3), 0);
        assert_eq!(server.sessions(0), 0);
        drop(a);
        wait_count(&server, 1, 1).await;
        drop((b, c));
        wait_count(&server, 1, 0).await;
        wait_count(&server, 2, 0).await;
        // A connection that only asks DESCRIBE holds no session.
        let mut d = TcpStream::connect(server.addr).await.unwrap();
        d.write_all(format!("DESCRIBE rtsp://{}/cam1 RTSP/1.0\r\nCSeq: 1\r\n\r\n", server.addr).as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        assert!(d.read(&mut buf).await.unwrap() > 0);
        assert_eq!(server.total_sessions(), 0);
    }

    #[test]
    fn a_key_frame_request_skips_the_loop_to_its_next_key_frame() {
        use super::super::video::EncodedFrame;
        let frames: Vec<EncodedFrame> = (0..10)
            .map(|i| EncodedFrame {
                nals: vec![],
                key: i % 5 == 0,
            })
            .collect();
        // No request: the loop plays in order, wrapping.
        assert_eq!(loop_index(&frames, 3, 0, false), (3, 0));
        assert_eq!(loop_index(&frames, 13, 0, false), (3, 0));
        // A request on a key frame changes nothing.
        assert_eq!(loop_index(&frames, 5, 0, true), (5, 0));
        // Mid-GOP: jump to the next key frame and keep the skip afterwards.
        assert_eq!(loop_index(&frames, 3, 0, true), (5, 2));
        assert_eq!(loop_index(&frames, 4, 2, false), (6, 2));
        // Across the loop's end.
        assert_eq!(loop_index(&frames, 7, 0, true), (0, 3));
        assert_eq!(loop_index(&frames, 8, 3, false), (1, 3));
        // A loop without key frames (never produced, but no panic): unchanged.
        let none: Vec<EncodedFrame> = (0..3)
            .map(|_| EncodedFrame {
                nals: vec![],
                key: false,
            })
            .collect();
        assert_eq!(loop_index(&none, 1, 0, true), (1, 0));
    }

    #[test]
    fn camera_paths() {
        assert_eq!(camera_index("rtsp://h:554/cam1", 2), Some(0));
        assert_eq!(camera_index("rtsp://h/cam2/trackID=0", 2), Some(1));
        assert_eq!(camera_index("rtsp://h/cam3", 2), None);
        assert_eq!(camera_index("rtsp://h/other", 2), None);
        assert_eq!(camera_index("/cam1", 1), Some(0));
    }
}
