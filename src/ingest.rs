//! Ingest: one task per bound stream pulls frames from a network camera over
//! RTSP (retina) and hands them to the store writer, reconnecting forever with
//! capped exponential backoff.
//!
//! Owns the RTSP session, the mapping from camera timestamps to wall-clock
//! time, and the per-stream statistics the API shows. Must never block: the
//! writer queue is fed with `try_send`, and a full queue drops frames (then
//! waits for a key frame) rather than stalling the connection. A failure here —
//! garbage, a stall, a wrong password — ends only this channel's session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{NetworkCamera, Transport};
use crate::motion::{MotionFrame, SharedMotionStats};
use crate::store::{Command, Frame, SampleEntry, WriterTx};
use crate::time::{Clock, Time90k};

/// No frame for this long means the camera stalled: reconnect.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Kept short: retrying a camera is cheap, and after an outage the NVR must
/// find its cameras again within seconds (a failback waits for it).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Camera time running this far ahead of the local clock re-anchors the run.
const MAX_AHEAD: i64 = 2 * 90_000;
/// Frames may arrive late (a link that comes back delivers what TCP buffered);
/// their camera-derived times are right. Only a lag beyond this is taken for a
/// camera clock jump and re-anchors the run.
const MAX_BEHIND: i64 = 30 * 90_000;

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
    #[serde(serialize_with = "ser_time")]
    pub last_frame: Option<Time90k>,
    pub frames: u64,
    pub bytes: u64,
    pub reconnects: u64,
    /// Frames dropped because the writer queue was full.
    pub dropped_frames: u64,
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

fn ser_time<S: serde::Serializer>(t: &Option<Time90k>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
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
    loop {
        let ctx = Ctx {
            channel,
            camera: &camera,
            writer: &writer,
            stats: &stats,
            clock: &*clock,
            feeds: &feeds,
        };
        let result = session(&ctx, &mut stop, &mut online).await;
        if feeds.record {
            let _ = writer.try_send(Command::EndRun { channel });
        }
        let err = match result {
            Ok(()) => return, // stopped
            Err(e) => format!("{e:#}"),
        };
        if let Ok(mut s) = stats.lock() {
            s.connected = false;
            s.last_error = Some(err.clone());
            // Every ended or failed session is followed by another attempt.
            s.reconnects += 1;
        }
        if (online || first) && !feeds.record {
            // The substream only feeds motion detection: no channel event.
            warn!("substream offline: {err}");
        } else if online || first {
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

/// What one session works with.
struct Ctx<'a> {
    channel: u32,
    camera: &'a NetworkCamera,
    writer: &'a WriterTx,
    stats: &'a SharedStats,
    clock: &'a dyn Clock,
    feeds: &'a Feeds,
}

async fn session(ctx: &Ctx<'_>, stop: &mut watch::Receiver<bool>, online: &mut bool) -> Result<()> {
    let Ctx {
        channel,
        camera,
        writer,
        stats,
        clock,
        feeds,
    } = *ctx;
    let creds = camera.credentials.as_ref().map(|c| retina::client::Credentials {
        username: c.username.clone(),
        password: c.password.clone(),
    });
    let opts = SessionOptions::default().creds(creds).user_agent("Tandem NVR".into());
    let connect = async {
        let mut session = Session::describe(camera.url.clone(), opts).await?;
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
        let playing = session.play(PlayOptions::default()).await?;
        Ok::<_, anyhow::Error>((playing.demuxed()?, i))
    };
    let (mut demuxed, stream_i) = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(30), connect) => r.context("RTSP setup timed out")??,
        _ = stop.changed() => return Ok(()),
    };
    let mut run = new_run();
    let mut need_key = true;
    let mut entry: Option<Arc<SampleEntry>> = None;
    let mut anchor: Option<(i64, Time90k)> = None;
    loop {
        let item = tokio::select! {
            r = tokio::time::timeout(STALL_TIMEOUT, demuxed.next()) => r.map_err(|_| anyhow!("no video for {} s", STALL_TIMEOUT.as_secs()))?,
            _ = stop.changed() => return Ok(()),
        };
        let frame = match item {
            None => bail!("camera closed the stream"),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(CodecItem::VideoFrame(f))) => f,
            Some(Ok(_)) => continue,
        };
        if frame.has_new_parameters() || entry.is_none() {
            let Some(ParametersRef::Video(p)) = demuxed.streams()[stream_i].parameters() else {
                continue;
            };
            let data = p
                .mp4_sample_entry()
                .build()
                .map_err(|e| anyhow!("building sample entry: {e}"))?;
            let e = SampleEntry::parse(data).ok_or_else(|| anyhow!("unsupported sample entry"))?;
            if let Ok(mut s) = stats.lock() {
                s.codec = Some(p.rfc6381_codec().to_string());
                (s.width, s.height) = (e.width, e.height);
            }
            if entry.is_some() {
                info!(
                    width = e.width,
                    height = e.height,
                    codec = p.rfc6381_codec(),
                    "camera changed codec parameters"
                );
            }
            entry = Some(Arc::new(e));
        }
        if frame.loss() > 0 {
            // Lost packets corrupt the frames that follow until the next key frame.
            need_key = true;
            run = new_run();
        }
        if need_key && !frame.is_random_access_point() {
            continue;
        }
        need_key = false;
        let now = clock.now();
        let elapsed = frame.timestamp().elapsed();
        let (e0, w0) = *anchor.get_or_insert((elapsed, now));
        let mut time = w0 + (elapsed - e0);
        if time - now > MAX_AHEAD || now - time > MAX_BEHIND {
            warn!(
                drift_s = (time - now) as f64 / 90_000.0,
                "camera clock jumped; re-anchoring"
            );
            anchor = Some((elapsed, now));
            time = now;
            run = new_run();
        }
        if !*online {
            *online = true;
            let e = entry.as_ref().expect("entry set above");
            info!(width = e.width, height = e.height, codec = e.codec, "camera connected");
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
        if let Ok(mut s) = stats.lock() {
            s.on_frame(Instant::now(), time, size);
        }
        let key = frame.is_random_access_point();
        let sample_entry = entry.clone().expect("entry set above");
        let data = frame.into_data();
        let detect = |data: Vec<u8>| {
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
        };
        match writer.try_send(Command::Frame(f)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                need_key = true;
                run = new_run();
                if let Ok(mut s) = stats.lock() {
                    s.dropped_frames += 1;
                }
            }
            Err(TrySendError::Disconnected(_)) => bail!("store writer stopped"),
        }
    }
}
