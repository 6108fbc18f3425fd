//! Ingest: one task per bound stream pulls frames from a network camera over
//! RTSP (retina) and hands them to the store writer, reconnecting forever with
//! capped exponential backoff.
//!
//! Owns the RTSP session, the mapping from camera timestamps to wall-clock
//! time (`timeline`), the camera's capture clock from RTCP sender reports
//! (`capture`), parameter-set flapping (`params`), and the per-stream
//! statistics the API shows. Must never block: the writer queue is fed with
//! `try_send`, and a full queue drops frames (then waits for a key frame)
//! rather than stalling the connection. Every await of a session is under the
//! stop signal, so shutdown never waits for a camera. A failure here —
//! garbage, a stall, a wrong password, a buffer bound exceeded — ends only this
//! channel's session, and the camera's text is quoted only as a short excerpt.

pub mod capture;
pub mod key_request;
pub mod params;
pub mod timeline;
pub mod timing;
pub mod warm;

use crate::log_limiter::LogLimiter;
pub use timeline::{Placed, Reanchor, Timeline};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use retina::client::{PlayOptions, Session, SetupOptions};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::{NetworkCamera, Transport};
use crate::motion::{MotionFrame, SharedMotionStats};
use crate::store::{Command, Frame, SampleEntry, WriterTx};
use crate::time::{Clock, Time90k};

/// No video frame for this long means the camera stalled: reconnect (RTCP or
/// other streams' packets do not keep a session alive).
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// DESCRIBE, SETUP and PLAY together may take this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one access unit (retina's `max_frame_bytes`): a 4K key frame is
/// rarely above 2 MiB; a camera whose frame never ends (no marker bit,
/// endless FU-A fragments) gets its session closed here instead of growing
/// memory. A constant rather than a per-camera setting until a camera needs
/// more.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Kept short: retrying a camera is cheap, and after an outage the NVR must
/// find its cameras again within seconds (a failback waits for it).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

fn new_run() -> u64 {
    NEXT_RUN.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StreamStats {
    pub camera: Option<String>,
    pub url: Option<String>,
    pub connected: bool,
    pub codec: Option<String>,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub bitrate_kbps: f64,
    pub last_frame: Option<Time90k>,
    pub frames: u64,
    pub bytes: u64,
    pub reconnects: u64,
    /// Frames dropped because the write buffer was full: the refused frame
    /// and the rest of its GOP.
    pub dropped_frames: u64,
    /// GOPs cut short by a full write buffer (each one gap in the footage).
    pub dropped_gops: u64,
    /// RTCP key frame requests sent to the camera (`key_request`), over all
    /// sessions.
    pub key_frame_requests: u64,
    /// The camera's clock minus this NVR's, in seconds, from its RTCP
    /// sender reports (`None`: no report yet).
    pub capture_offset_s: Option<f64>,
    /// How the last session's start went, step by step (`timing`).
    pub connect: Option<timing::ConnectTiming>,
    pub last_error: Option<String>,
    #[serde(skip)]
    window: Option<(Instant, u64, u64)>,
}

impl StreamStats {
    fn on_frame(&mut self, now: Instant, time: Time90k, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
        self.last_frame = Some(time);
        let (start, f0, b0) = *self.window.get_or_insert((now, self.frames, self.bytes));
        let el = now.duration_since(start).as_secs_f64();
        if el >= 2.0 {
            self.fps = (self.frames - f0) as f64 / el;
            self.bitrate_kbps = (self.bytes - b0) as f64 * 8.0 / 1000.0 / el;
            self.window = Some((now, self.frames, self.bytes));
        }
    }
}

pub type SharedStats = Arc<Mutex<StreamStats>>;

/// A running ingest task; dropping the handle does not stop it, `stop` does.
pub struct IngestHandle {
    stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl IngestHandle {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Where a session's frames go besides statistics.
#[derive(Clone)]
pub struct Feeds {
    /// Hand frames to the store writer (false for a substream used only
    /// for motion detection).
    pub record: bool,
    pub motion: Option<(SyncSender<MotionFrame>, SharedMotionStats)>,
    /// Live viewers of this stream (`live::Hub`), fed before the store.
    pub live: Option<Arc<crate::live::Hub>>,
    /// Warm paths (`warm`): a described session of this camera kept ready,
    /// taken instead of a fresh DESCRIBE (main streams of rule-bound cameras).
    pub warm: Option<Arc<warm::WarmPool>>,
}

pub fn spawn(
    channel: u32,
    camera: NetworkCamera,
    writer: WriterTx,
    stats: SharedStats,
    clock: Arc<dyn Clock>,
    feeds: Feeds,
) -> IngestHandle {
    let (stop, stop_rx) = watch::channel(false);
    if let Ok(mut s) = stats.lock() {
        *s = StreamStats {
            camera: Some(camera.name.clone()),
            url: Some(camera.url.to_string()),
            ..Default::default()
        };
    }
    let span = tracing::info_span!("ingest", channel, camera = %camera.name);
    let task = tokio::spawn(tracing::Instrument::instrument(
        run(channel, camera, writer, stats, clock, feeds, stop_rx),
        span,
    ));
    IngestHandle { stop, task }
}

async fn run(
    channel: u32,
    camera: NetworkCamera,
    writer: WriterTx,
    stats: SharedStats,
    clock: Arc<dyn Clock>,
    feeds: Feeds,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut online = false;
    let mut first = true;
    // Both outlive sessions: a new session's frames must not overlap the
    // last one's, and a failure repeated on every retry is logged once a minute.
    let mut timeline = Timeline::default();
    let mut capture = capture::CaptureClock::default();
    let mut limiter = LogLimiter::default();
    loop {
        let ctx = Ctx {
            channel,
            camera: &camera,
            writer: &writer,
            stats: &stats,
            clock: &*clock,
            feeds: &feeds,
        };
        timeline.new_session();
        capture.new_session();
        let result = session(&ctx, &mut stop, &mut online, &mut timeline, &mut capture).await;
        if feeds.record {
            let _ = writer.try_send(Command::EndRun { channel });
        }
        let err = match result {
            Ok(()) => {
                if let Some(h) = &feeds.live {
                    h.set_state(false, Some("the camera is not bound to this channel now".into()));
                }
                return; // stopped
            }
            Err(e) => describe_error(&e),
        };
        if let Some(h) = &feeds.live {
            h.set_state(false, Some(err.clone()));
        }
        if let Ok(mut s) = stats.lock() {
            s.connected = false;
            s.last_error = Some(err.clone());
            // Every ended or failed session is followed by another attempt.
            s.reconnects += 1;
        }
        let news = online || first;
        if !news {
            if let Some(n) = limiter.check(&err, Instant::now()) {
                if n > 0 {
                    warn!("camera still failing ({n} more times in the last minute): {err}");
                } else {
                    warn!("camera still failing: {err}");
                }
            }
        } else if !feeds.record {
            limiter.check(&err, Instant::now());
            // The substream only feeds motion detection: no channel event.
            warn!("substream offline: {err}");
        } else {
            limiter.check(&err, Instant::now());
            warn!("camera offline: {err}");
            let _ = writer.try_send(Command::Event {
                channel: Some(channel),
                kind: "camera_offline",
                time: clock.now(),
                details: serde_json::json!({ "camera": camera.name, "error": err }),
            });
        }
        // Back off on repeated failures to connect; a session that delivered
        // video (a camera that rebooted) is retried at once.
        if online {
            backoff = BACKOFF_MIN;
        }
        online = false;
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A session's error as the API, the log and events quote it: the first line
/// of the error chain (retina appends connection details on further lines),
/// as a short escaped excerpt, since its text comes from the camera.
pub fn describe_error(e: &anyhow::Error) -> String {
    let full = format!("{e:#}");
    let first = full.lines().next().unwrap_or_default();
    // retina's framing errors end their first line before a hex dump.
    crate::excerpt::short(first.trim_end_matches("; buffered:"))
}

/// What one session works with.
struct Ctx<'a> {
    channel: u32,
    camera: &'a NetworkCamera,
    writer: &'a WriterTx,
    stats: &'a SharedStats,
    clock: &'a dyn Clock,
    feeds: &'a Feeds,
}

async fn session(
    ctx: &Ctx<'_>,
    stop: &mut watch::Receiver<bool>,
    online: &mut bool,
    timeline: &mut Timeline,
    capture: &mut capture::CaptureClock,
) -> Result<()> {
    let Ctx {
        channel,
        camera,
        writer,
        stats,
        clock,
        feeds,
    } = *ctx;
    // While this session runs, the camera needs no warm path of its own.
    let _in_use = feeds.warm.as_ref().map(|w| w.in_use(&camera.url));
    let connect = async {
        let start = Instant::now();
        // A warm session saves the TCP connect and DESCRIBE; one the camera
        // has closed meanwhile fails at SETUP, and a fresh one follows at once.
        if let Some(session) = feeds.warm.as_ref().and_then(|w| w.take(&camera.url)) {
            match setup_and_play(camera, session, start, start).await {
                Ok(r) => {
                    info!("took over on the warm path (DESCRIBE answered in advance)");
                    return Ok(r);
                }
                Err(e) => warn!("warm path failed ({}); describing afresh", describe_error(&e)),
            }
        }
        let start = Instant::now();
        let session = Session::describe(camera.url.clone(), warm::session_options(camera)).await?;
        setup_and_play(camera, session, start, Instant::now()).await
    };
    let (mut demuxed, stream_i, marks) = tokio::select! {
        r = tokio::time::timeout(SETUP_TIMEOUT, connect) => r.map_err(|_| anyhow!("RTSP setup timed out after {} s", SETUP_TIMEOUT.as_secs()))??,
        _ = stop.changed() => return Ok(()),
    };
    let mut run = new_run();
    let mut need_key = true;
    // Ask for the first key frame before any frame arrives: a camera that
    // answers (GStreamer's rtsp-server, the simulated camera) sends one within
    // a frame or two instead of up to a GOP later. Without the SSRC from SETUP
    // the request waits for the first frame.
    let mut ask = key_request::KeyFrameAsk::default();
    ask_key_frame(&mut demuxed, stream_i, &mut ask, stats);
    // Frames before the session's first key frame (for `timing`).
    let mut before_key: Option<u64> = Some(0);
    // The rest of a GOP whose frame the full write buffer refused: dropped
    // too (it cannot be decoded without it), and counted.
    let mut dropping_gop = false;
    // What the store gets: the camera's sample entry, or its in-band
    // variant while parameter sets flap.
    let mut entry: Option<Arc<SampleEntry>> = None;
    // The camera's current parameters, out of band, and their NAL units.
    let mut camera_entry: Option<Arc<SampleEntry>> = None;
    let mut sets: Vec<Vec<u8>> = Vec::new();
    let mut watch = params::ParamWatch::default();
    // Viewers are told the camera is online at the session's first frame.
    let mut live_online = false;
    // One stall timer and one wait for `stop` serve the whole session. Made
    // afresh for every frame (a `timeout` around each read), they registered
    // and cancelled an entry in the runtime's timer wheel and in the watch
    // channel's waiter list 25 times a second per camera. The timer now
    // fires once per `STALL_TIMEOUT` at most and looks at when video last came.
    let mut last_video = tokio::time::Instant::now();
    let stall = tokio::time::sleep_until(last_video + STALL_TIMEOUT);
    tokio::pin!(stall);
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let item = tokio::select! {
            // The stream first: it is ready at every frame, the other two
            // almost never, and a fixed order spares drawing a random one.
            // A stream that is always ready still lets them in: tokio's
            // cooperative budget makes its socket pending after 128 reads.
            biased;
            item = demuxed.next() => item,
            () = &mut stall => {
                let due = last_video + STALL_TIMEOUT;
                if tokio::time::Instant::now() >= due {
                    bail!("no video for {} s", STALL_TIMEOUT.as_secs());
                }
                stall.as_mut().reset(due);
                continue;
            }
            _ = &mut stopped => return Ok(()),
        };
        let frame = match item {
            None => bail!("camera closed the stream"),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(CodecItem::VideoFrame(f))) => f,
            Some(Ok(CodecItem::Rtcp(rtcp))) => {
                if rtcp.stream_id() == stream_i {
                    on_rtcp(&rtcp, capture);
                }
                continue;
            }
            Some(Ok(_)) => continue,
        };
        last_video = tokio::time::Instant::now();
        let new_parameters = frame.has_new_parameters() || camera_entry.is_none();
        if new_parameters {
            let Some(ParametersRef::Video(p)) = demuxed.streams()[stream_i].parameters() else {
                continue;
            };
            let e = sample_entry_of(p).map_err(|e| anyhow!(e))?;
            if let Ok(mut s) = stats.lock() {
                s.codec = Some(p.rfc6381_codec().to_string());
                (s.width, s.height) = (e.width, e.height);
            }
            let flapping = watch.on_parameters(&e.data, clock.now());
            if flapping {
                warn!("camera alternates between parameter sets; recording them in-band in one segment");
            } else if camera_entry.is_some() && !watch.inband() {
                info!(
                    width = e.width,
                    height = e.height,
                    codec = p.rfc6381_codec(),
                    "camera changed codec parameters"
                );
            }
            sets = params::parameter_sets(&e).unwrap_or_default();
            let e = Arc::new(e);
            if !watch.inband() {
                entry = Some(e.clone());
            } else if flapping || entry.is_none() {
                let ib = params::inband_entry(&e).ok_or_else(|| anyhow!("unsupported sample entry"))?;
                entry = Some(Arc::new(ib));
            }
            camera_entry = Some(e);
        }
        if frame.loss() > 0 {
            // Lost packets corrupt the frames that follow until the next key frame.
            need_key = true;
            run = new_run();
        }
        if need_key && !frame.is_random_access_point() {
            if let Some(n) = &mut before_key {
                *n += 1;
            }
            ask_key_frame(&mut demuxed, stream_i, &mut ask, stats);
            if dropping_gop {
                if let Ok(mut s) = stats.lock() {
                    s.dropped_frames += 1;
                }
            }
            continue;
        }
        need_key = false;
        dropping_gop = false;
        let now = clock.now();
        let key = frame.is_random_access_point();
        if key && watch.leave_inband(now) {
            info!("camera parameter sets stable again; recording them out of band");
            entry = camera_entry.clone();
        }
        let placed = timeline.place(frame.timestamp().elapsed(), now);
        let time = placed.time;
        if let Some(why) = placed.reanchored {
            warn!("{why}; re-anchoring on the local clock");
            run = new_run();
            capture.reanchored();
        }
        let had_offset = capture.offset().is_some();
        // The raw RTP timestamp: retina extends it by whole wraps.
        let observed = capture.on_frame(frame.timestamp().timestamp() as u32, time);
        match observed {
            capture::Observed::Stepped { offset, by } => warn!(
                offset_s = crate::time::secs_of(offset),
                "camera clock stepped {:+.3} s against this NVR's (RTCP sender reports)",
                crate::time::secs_of(by)
            ),
            capture::Observed::Offset(offset) if !had_offset => info!(
                offset_s = crate::time::secs_of(offset),
                "camera clock measured {:+.3} s from this NVR's (RTCP sender reports)",
                crate::time::secs_of(offset)
            ),
            _ => {}
        }
        let capture_offset = observed.offset();
        let connect_timing = before_key.take().map(|n| timing::ConnectTiming {
            key_frame_requested: ask.count > 0,
            ..marks.timing(Instant::now(), n)
        });
        if let (Some(t), Ok(mut s)) = (connect_timing, stats.lock()) {
            s.connect = Some(t);
        }
        if !*online {
            *online = true;
            let e = entry.as_ref().expect("entry set above");
            let t = connect_timing.unwrap_or_default();
            info!(
                width = e.width,
                height = e.height,
                codec = e.codec,
                describe_ms = timing::whole_ms(t.describe_ms),
                setup_ms = timing::whole_ms(t.setup_ms),
                play_ms = timing::whole_ms(t.play_ms),
                first_key_frame_ms = timing::whole_ms(t.first_key_frame_ms),
                key_frame_requested = t.key_frame_requested,
                frames_before_key = t.frames_before_key,
                "camera connected"
            );
            if let Ok(mut s) = stats.lock() {
                s.connected = true;
                s.last_error = None;
            }
            if feeds.record {
                let _ = writer.try_send(Command::Event {
                    channel: Some(channel),
                    kind: "camera_online",
                    time: now,
                    details: serde_json::json!({ "camera": camera.name }),
                });
            }
        }
        let size = frame.data().len();
        let received = Instant::now();
        if let Ok(mut s) = stats.lock() {
            s.on_frame(received, time, size);
            s.capture_offset_s = capture_offset.map(crate::time::secs_of);
        }
        let sample_entry = entry.clone().expect("entry set above");
        // One allocation shared by the store, live viewers and motion: each
        // holds a reference, none copies. Holding a frame in the live hub's
        // GOP keeps its memory, never the writer (whose queue bound counts
        // its own frames' bytes).
        let data = bytes::Bytes::from(if watch.inband() && (key || new_parameters) {
            params::with_parameter_sets(&sets, frame.into_data())
        } else {
            frame.into_data()
        });
        if let Some(h) = &feeds.live {
            if !live_online {
                live_online = true;
                h.set_state(true, None);
            }
            h.publish(crate::live::LiveFrame {
                time,
                key,
                entry: sample_entry.clone(),
                data: data.clone(),
                received,
            });
        }
        let detect = |data: bytes::Bytes| {
            if let Some((tx, mstats)) = &feeds.motion {
                let f = MotionFrame {
                    time,
                    key,
                    entry: sample_entry.clone(),
                    data,
                };
                crate::motion::offer(tx, f, mstats);
            }
        };
        if !feeds.record {
            detect(data);
            continue;
        }
        if feeds.motion.is_some() {
            detect(data.clone());
        }
        let f = Frame {
            channel,
            run,
            time,
            key,
            sample_entry,
            data,
            capture_offset,
        };
        match writer.try_send(Command::Frame(f)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                need_key = true;
                dropping_gop = true;
                run = new_run();
                if let Ok(mut s) = stats.lock() {
                    s.dropped_frames += 1;
                    s.dropped_gops += 1;
                }
            }
            Err(TrySendError::Disconnected(_)) => bail!("store writer stopped"),
        }
    }
}

/// SETUP of the first H.264/H.265 video stream, then PLAY: the demuxed
/// stream, its index, and when each step ended.
async fn setup_and_play(
    camera: &NetworkCamera,
    mut session: Session<retina::client::Described>,
    start: Instant,
    described: Instant,
) -> Result<(retina::client::Demuxed, usize, timing::Marks)> {
    let i = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
        .ok_or_else(|| anyhow!("camera offers no H.264 or H.265 video stream"))?;
    let transport = match camera.transport {
        Transport::Tcp => retina::client::Transport::Tcp(Default::default()),
        Transport::Udp => retina::client::Transport::Udp(Default::default()),
    };
    session
        .setup(
            i,
            SetupOptions::default()
                .transport(transport)
                .frame_format(FrameFormat::MP4),
        )
        .await?;
    let set_up = Instant::now();
    let playing = session.play(PlayOptions::default()).await?;
    let marks = timing::Marks {
        start,
        described,
        set_up,
        playing: Instant::now(),
    };
    Ok((playing.demuxed()?, i, marks))
}

/// Sends an RTCP key frame request if `ask` says one is due; one that could
/// not be made (SSRC unknown yet) is retried at the next frame.
fn ask_key_frame(
    demuxed: &mut retina::client::Demuxed,
    stream_i: usize,
    ask: &mut key_request::KeyFrameAsk,
    stats: &Mutex<StreamStats>,
) {
    let now = Instant::now();
    if !ask.due(now) {
        return;
    }
    match demuxed.request_key_frame(stream_i) {
        Ok(true) => {
            ask.asked(now);
            debug!("asked the camera for a key frame (RTCP PLI)");
            if let Ok(mut s) = stats.lock() {
                s.key_frame_requests += 1;
            }
        }
        Ok(false) => {}
        Err(e) => debug!("key frame request failed: {e}"),
    }
}

/// Feeds the sender reports of an RTCP compound packet to the estimator;
/// anything else in it (receiver reports, SDES, BYE) is not ours to read.
fn on_rtcp(pkt: &retina::rtcp::ReceivedCompoundPacket, capture: &mut capture::CaptureClock) {
    for p in pkt.pkts() {
        if let Ok(Some(sr)) = p.as_sender_report() {
            capture.on_sender_report(sr.rtp_timestamp(), sr.ntp_timestamp().0);
        }
    }
}

/// The sample entry the writer stores for a stream's video parameters; live
/// ingest and edge-storage replay (`replay::client`) both build it here, so
/// replayed footage merges with live footage under the same entry.
pub(crate) fn sample_entry_of(p: &retina::codec::VideoParameters) -> Result<SampleEntry, String> {
    let data = p
        .mp4_sample_entry()
        .build()
        .map_err(|e| format!("building sample entry: {}", crate::excerpt::short(&e.to_string())))?;
    SampleEntry::parse(data).ok_or_else(|| "unsupported sample entry".into())
}

#[cfg(test)]
mod tests;
