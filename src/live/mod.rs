//! Live view: one hub per (channel, stream) that the stream's ingest session
//! feeds and every viewer of it reads — WebSocket viewers (`web::live`) and
//! the live HLS ring (`hls`). Opening twenty tabs opens no extra camera
//! session: the frames are fanned out here.
//!
//! The hub keeps the frames since the last key frame (the current GOP) so a
//! new viewer's picture appears at once, then hands every viewer each new
//! frame through its own bounded queue. A viewer whose queue is full skips to
//! the next key frame and is told how many frames it missed (`Msg::Skipped`),
//! as Moonfire NVR's `drop` message does — it never makes the hub, the
//! camera's session or another viewer wait.
//!
//! Must never block or await in `publish` (it runs in the ingest task, in
//! front of the recording of the frame), and never hold more than
//! `MAX_GOP_FRAMES`/`MAX_GOP_BYTES` per stream plus `QUEUE` frames per viewer.

pub mod client;
pub mod hls;
pub mod packager;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::store::health::Histogram;
use crate::store::SampleEntry;
use crate::time::Time90k;

/// Frames queued per viewer (about 2.5 s at 25 fps) before it skips.
pub const QUEUE: usize = 64;
/// Bounds on the cached GOP; beyond them the cache is dropped until the next
/// key frame (new viewers then wait for it).
const MAX_GOP_FRAMES: usize = 600;
const MAX_GOP_BYTES: usize = 16 << 20;
/// The HLS ring is kept this long after the last playlist request.
const HLS_IDLE: Duration = Duration::from_secs(60);
/// HLS viewers remembered per stream (beyond it each request is audited).
const MAX_HLS_VIEWERS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Main,
    Sub,
}

impl Stream {
    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "main" => Some(Stream::Main),
            "sub" => Some(Stream::Sub),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Main => "main",
            Stream::Sub => "sub",
        }
    }
}

/// One frame as ingest received it, shared by every viewer.
#[derive(Debug)]
pub struct LiveFrame {
    /// Capture time: the NVR's wall-clock time for the frame, as stored.
    pub time: Time90k,
    pub key: bool,
    pub entry: Arc<SampleEntry>,
    pub data: bytes::Bytes,
    /// When ingest had it: the start of the server-added latency.
    pub received: Instant,
}

impl LiveFrame {
    /// Whether the frame decodes with `entry`'s parameters (usually the very
    /// same allocation; equal bytes from a new session count too).
    pub fn uses(&self, entry: &Arc<SampleEntry>) -> bool {
        Arc::ptr_eq(&self.entry, entry) || self.entry.data == entry.data
    }
}

/// What a viewer's queue carries.
#[derive(Debug)]
pub enum Msg {
    Frame(Arc<LiveFrame>),
    /// This many frames were skipped because the viewer fell behind; the next
    /// frame is a key frame.
    Skipped(u64),
}

/// The camera session's state as viewers are told it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CameraState {
    pub online: bool,
    pub error: Option<String>,
}

/// Counters over every hub (`GET /api/v1/store`'s `live`, `bench live`).
#[derive(Debug, Default)]
pub struct LiveStats {
    pub viewers: AtomicU64,
    pub viewers_total: AtomicU64,
    pub fragments_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub frames_skipped: AtomicU64,
    pub skips: AtomicU64,
    /// Frame received from the camera → its fragment written to the socket.
    pub added_latency: Mutex<Histogram>,
}

impl LiveStats {
    pub fn snapshot(&self) -> serde_json::Value {
        let h = self.added_latency.lock().map(|h| h.clone()).unwrap_or_default();
        serde_json::json!({
            "viewers": self.viewers.load(Ordering::Relaxed),
            "viewers_total": self.viewers_total.load(Ordering::Relaxed),
            "fragments_sent": self.fragments_sent.load(Ordering::Relaxed),
            "bytes_sent": self.bytes_sent.load(Ordering::Relaxed),
            "frames_skipped": self.frames_skipped.load(Ordering::Relaxed),
            "skips": self.skips.load(Ordering::Relaxed),
            "added_latency_ms": h,
        })
    }
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Msg>,
    /// Frames skipped since the viewer's queue was last full.
    skipping: Option<u64>,
}

#[derive(Default)]
struct Inner {
    gop: Vec<Arc<LiveFrame>>,
    gop_bytes: usize,
    /// The cache overflowed: wait for the next key frame.
    gop_broken: bool,
    viewers: Vec<Slot>,
    next_id: u64,
    hls: Option<hls::Ring>,
    hls_until: Option<Instant>,
    /// Last time a viewer left or HLS was asked for (on-demand sessions close
    /// a while after it).
    last_use: Option<Instant>,
    /// Who polled the HLS playlist and when: one audit entry per viewing.
    hls_viewers: HashMap<String, Instant>,
}

pub struct Hub {
    pub channel: u32,
    pub stream: Stream,
    inner: Mutex<Inner>,
    state: watch::Sender<CameraState>,
    stats: Arc<LiveStats>,
}

/// A viewer's end of a hub: the cached GOP to send first, then the queue.
pub struct Subscription {
    pub backlog: Vec<Arc<LiveFrame>>,
    pub rx: mpsc::Receiver<Msg>,
    pub state: watch::Receiver<CameraState>,
    _guard: ViewerGuard,
}

struct ViewerGuard {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        if let Ok(mut g) = self.hub.inner.lock() {
            g.viewers.retain(|s| s.id != self.id);
            g.last_use = Some(Instant::now());
        }
        self.hub.stats.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    fn new(channel: u32, stream: Stream, stats: Arc<LiveStats>) -> Hub {
        let (state, _) = watch::channel(CameraState {
            online: false,
            error: Some("no camera session yet".into()),
        });
        Hub {
            channel,
            stream,
            inner: Mutex::new(Inner::default()),
            state,
            stats,
        }
    }

    /// Hands a frame to every viewer; never waits.
    pub fn publish(&self, f: LiveFrame) {
        let f = Arc::new(f);
        let Ok(mut g) = self.inner.lock() else { return };
        let g = &mut *g;
        if f.key {
            g.gop.clear();
            g.gop_bytes = 0;
            g.gop_broken = false;
        }
        if !g.gop_broken && (f.key || !g.gop.is_empty()) {
            if g.gop.len() < MAX_GOP_FRAMES && g.gop_bytes + f.data.len() <= MAX_GOP_BYTES {
                g.gop_bytes += f.data.len();
                g.gop.push(f.clone());
            } else {
                g.gop.clear();
                g.gop_bytes = 0;
                g.gop_broken = true;
            }
        }
        let stats = &self.stats;
        g.viewers.retain_mut(|s| deliver(s, &f, stats));
        let now = Instant::now();
        if g.hls_until.is_some_and(|u| u < now) {
            g.hls = None;
            g.hls_until = None;
        }
        if let Some(r) = &mut g.hls {
            r.push(&f);
        }
    }

    /// The camera session came up or went down.
    pub fn set_state(&self, online: bool, error: Option<String>) {
        let s = CameraState { online, error };
        self.state.send_if_modified(|old| {
            let changed = *old != s;
            *old = s;
            changed
        });
        if !online {
            // A GOP from before an outage is not live any more.
            if let Ok(mut g) = self.inner.lock() {
                g.gop.clear();
                g.gop_bytes = 0;
            }
        }
    }

    pub fn state(&self) -> CameraState {
        self.state.borrow().clone()
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut g = self.inner.lock().expect("hub lock");
        let id = g.next_id;
        g.next_id += 1;
        g.viewers.push(Slot { id, tx, skipping: None });
        let backlog = g.gop.clone();
        drop(g);
        self.stats.viewers.fetch_add(1, Ordering::Relaxed);
        self.stats.viewers_total.fetch_add(1, Ordering::Relaxed);
        Subscription {
            backlog,
            rx,
            state: self.state.subscribe(),
            _guard: ViewerGuard { hub: self.clone(), id },
        }
    }

    pub fn viewers(&self) -> usize {
        self.inner.lock().map(|g| g.viewers.len()).unwrap_or(0)
    }

    /// Whether anyone watched within `idle` (WebSocket viewers now, HLS or a
    /// viewer that left recently).
    pub fn in_use(&self, idle: Duration, now: Instant) -> bool {
        let Ok(g) = self.inner.lock() else { return false };
        !g.viewers.is_empty()
            || g.hls_until.is_some_and(|u| u > now)
            || g.last_use.is_some_and(|t| now.duration_since(t) < idle)
    }

    /// Runs `f` on the HLS ring, starting it (seeded with the cached GOP) if
    /// nobody asked for HLS within the last minute.
    pub fn with_hls<T>(&self, f: impl FnOnce(&hls::Ring) -> T) -> T {
        let mut g = self.inner.lock().expect("hub lock");
        let now = Instant::now();
        g.hls_until = Some(now + HLS_IDLE);
        g.last_use = Some(now);
        if g.hls.is_none() {
            let mut r = hls::Ring::default();
            for fr in &g.gop {
                r.push(fr);
            }
            g.hls = Some(r);
        }
        f(g.hls.as_ref().expect("set above"))
    }

    /// Whether `actor` starts watching over HLS now (no playlist request
    /// from them within the last minute).
    pub fn hls_viewer_is_new(&self, actor: &str) -> bool {
        let Ok(mut g) = self.inner.lock() else { return true };
        let now = Instant::now();
        g.hls_viewers.retain(|_, t| now.duration_since(*t) < HLS_IDLE);
        if g.hls_viewers.len() >= MAX_HLS_VIEWERS {
            return true;
        }
        g.hls_viewers.insert(actor.to_string(), now).is_none()
    }

    /// Counts a fragment written to a viewer's socket; `live` is its frame
    /// when it was sent as it arrived (not from the cached GOP), whose age is
    /// the server-added latency.
    pub fn record_sent(&self, live: Option<&LiveFrame>, bytes: usize) {
        let s = &self.stats;
        s.fragments_sent.fetch_add(1, Ordering::Relaxed);
        s.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(f) = live {
            let ms = f.received.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
            if let Ok(mut h) = s.added_latency.lock() {
                h.record_ms(ms);
            }
        }
    }
}

/// Offers `f` to one viewer; false when the viewer has gone.
fn deliver(s: &mut Slot, f: &Arc<LiveFrame>, stats: &LiveStats) -> bool {
    if let Some(n) = s.skipping {
        // Resume only at a key frame, and only with room for the notice too.
        if !f.key || s.tx.capacity() < 2 {
            s.skipping = Some(n + 1);
            stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
            return !s.tx.is_closed();
        }
        s.skipping = None;
        if s.tx.try_send(Msg::Skipped(n)).is_err() {
            return !s.tx.is_closed();
        }
    }
    match s.tx.try_send(Msg::Frame(f.clone())) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            s.skipping = Some(1);
            stats.skips.fetch_add(1, Ordering::Relaxed);
            stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Every hub of the NVR, created on first use.
#[derive(Default)]
pub struct Registry {
    hubs: Mutex<HashMap<(u32, Stream), Arc<Hub>>>,
    pub stats: Arc<LiveStats>,
    /// Set at shutdown: viewers close their sockets.
    closing: Mutex<Option<watch::Sender<bool>>>,
}

impl Registry {
    pub fn hub(&self, channel: u32, stream: Stream) -> Arc<Hub> {
        self.hubs
            .lock()
            .expect("hubs lock")
            .entry((channel, stream))
            .or_insert_with(|| Arc::new(Hub::new(channel, stream, self.stats.clone())))
            .clone()
    }

    /// Resolves when the NVR shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing
            .lock()
            .expect("closing lock")
            .get_or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    pub fn close(&self) {
        if let Some(tx) = self.closing.lock().expect("closing lock").as_ref() {
            let _ = tx.send(true);
        }
    }

    /// Live viewers of `channel` now, over its streams; creates no hub
    /// (a scrape must not make hubs appear in `overview`).
    pub fn viewers(&self, channel: u32) -> usize {
        // Like `overview`: no hub's lock is taken under the registry's.
        let hubs: Vec<Arc<Hub>> = {
            let g = self.hubs.lock().expect("hubs lock");
            g.iter()
                .filter(|((c, _), _)| *c == channel)
                .map(|(_, h)| h.clone())
                .collect()
        };
        hubs.iter().map(|h| h.viewers()).sum()
    }

    /// Per hub: channel, stream, viewers, camera state.
    pub fn overview(&self) -> Vec<serde_json::Value> {
        let hubs: Vec<Arc<Hub>> = self.hubs.lock().expect("hubs lock").values().cloned().collect();
        let mut v: Vec<serde_json::Value> = hubs
            .iter()
            .map(|h| {
                serde_json::json!({
                    "channel": h.channel,
                    "stream": h.stream,
                    "viewers": h.viewers(),
                    "camera": h.state(),
                })
            })
            .collect();
        v.sort_by_key(|h| (h["channel"].as_u64(), h["stream"].as_str().map(str::to_string)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<SampleEntry> {
        let mut data = vec![0u8; 40];
        data[4..8].copy_from_slice(b"avc1");
        Arc::new(SampleEntry::parse(data).unwrap())
    }

    fn frame(i: i64, key: bool) -> LiveFrame {
        LiveFrame {
            time: Time90k(i * 3_600),
            key,
            entry: entry(),
            data: bytes::Bytes::from(vec![0u8; 10]),
            received: Instant::now(),
        }
    }

    fn times(sub: &mut Subscription) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(m) = sub.rx.try_recv() {
            out.push(match m {
                Msg::Frame(f) => format!("{}{}", f.time.0 / 3_600, if f.key { "k" } else { "" }),
                Msg::Skipped(n) => format!("skip{n}"),
            });
        }
        out
    }

    #[test]
    fn a_new_viewer_starts_at_the_cached_gop_then_gets_every_frame() {
        let r = Registry::default();
        let hub = r.hub(1, Stream::Main);
        hub.publish(frame(0, false)); // no key frame yet: not cached
        hub.publish(frame(1, true));
        hub.publish(frame(2, false));
        let mut s = hub.subscribe();
        let backlog: Vec<i64> = s.backlog.iter().map(|f| f.time.0 / 3_600).collect();
        assert_eq!(backlog, [1, 2]);
        hub.publish(frame(3, false));
        hub.publish(frame(4, true));
        assert_eq!(times(&mut s), ["3", "4k"]);
        let s2 = hub.subscribe();
        assert_eq!(s2.backlog.len(), 1, "the cache restarts at each key frame");
        assert_eq!(hub.viewers(), 2);
        assert_eq!(r.stats.viewers.load(Ordering::Relaxed), 2);
        drop(s2);
        assert_eq!(hub.viewers(), 1);
        assert!(hub.in_use(Duration::from_secs(30), Instant::now()));
    }

    #[test]
    fn a_slow_viewer_skips_to_the_next_key_frame_and_is_told() {
        let r = Registry::default();
        let hub = r.hub(1, Stream::Main);
        let mut slow = hub.subscribe();
        let mut fast = hub.subscribe();
        hub.publish(frame(0, true));
        let mut fast_got = times(&mut fast).len();
        for i in 1..(QUEUE as i64 + 10) {
            hub.publish(frame(i, false));
            fast_got += times(&mut fast).len();
        }
        // The fast viewer missed nothing; the slow one's queue is full.
        assert_eq!(fast_got, QUEUE + 10);
        let first = times(&mut slow);
        assert_eq!(first.len(), QUEUE);
        // Until a key frame nothing more reaches it; then the notice, then the key frame.
        hub.publish(frame(100, false));
        assert!(times(&mut slow).is_empty());
        hub.publish(frame(101, true));
        assert_eq!(times(&mut slow), ["skip11", "101k"]);
        assert_eq!(r.stats.frames_skipped.load(Ordering::Relaxed), 11);
        assert_eq!(r.stats.skips.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn offline_clears_the_cache_and_viewers_see_the_state() {
        let r = Registry::default();
        let hub = r.hub(2, Stream::Sub);
        let s = hub.subscribe();
        hub.set_state(true, None);
        hub.publish(frame(0, true));
        hub.set_state(false, Some("no video for 10 s".into()));
        assert!(!s.state.borrow().online);
        assert!(hub.subscribe().backlog.is_empty());
        assert!(Arc::ptr_eq(&hub, &r.hub(2, Stream::Sub)));
        assert_eq!(r.overview().len(), 1);
    }

    #[test]
    fn the_gop_cache_is_bounded() {
        let r = Registry::default();
        let hub = r.hub(1, Stream::Main);
        hub.publish(frame(0, true));
        for i in 1..=MAX_GOP_FRAMES as i64 {
            hub.publish(frame(i, false));
        }
        assert!(
            hub.subscribe().backlog.is_empty(),
            "overflowed: wait for the next key frame"
        );
        hub.publish(frame(1_000, true));
        assert_eq!(hub.subscribe().backlog.len(), 1);
    }

    #[test]
    fn hls_starts_from_the_cached_gop_on_demand() {
        let r = Registry::default();
        let hub = r.hub(1, Stream::Main);
        for i in 0..30 {
            hub.publish(frame(i, i % 25 == 0));
        }
        assert_eq!(hub.with_hls(|h| h.segments()), 0);
        for i in 30..51 {
            hub.publish(frame(i, i % 25 == 0));
        }
        assert_eq!(
            hub.with_hls(|h| h.segments()),
            1,
            "the GOP from 25 became a segment at 50"
        );
        assert!(hub.with_hls(|h| h.playlist("stream=main")).is_some());
    }
}
