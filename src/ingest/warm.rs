//! Warm paths to the cameras a failover rule of this NVR would bind in
//! failure: for each, a described RTSP session (TCP open, DESCRIBE answered,
//! SDP parsed) kept ready, so a takeover costs SETUP and PLAY on an open
//! connection instead of TCP connect + DESCRIBE + SETUP + PLAY. A camera
//! that needs seconds per request (the paper's took 5 s to start a session)
//! saves a third of it; on a LAN the saving is a round trip or two.
//!
//! The standby still pulls no video: a described session has no RTP stream.
//! Each kept session is replaced every `REFRESH` (a new connection, then the
//! old one dropped): well inside the idle timeouts cameras put on
//! connections without a session (typically 60 s), and a camera that went
//! away is noticed then, not at takeover.
//!
//! Owns the pool and one refresher task per wanted camera. Must never hold
//! more than one session per camera, never describe a camera while this NVR
//! records it (the session in use is the warm path), and never make a
//! takeover wait: `take` returns at once, and a stale or dead session only
//! costs the fresh DESCRIBE the takeover would have done anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use retina::client::{Described, Session, SessionOptions};
use tracing::{debug, info};

use crate::config::NetworkCamera;

/// A kept session is replaced this often.
pub const REFRESH: Duration = Duration::from_secs(20);
/// A session older than this is not handed out (a refresh is overdue: the
/// camera may have closed it).
pub const MAX_AGE: Duration = Duration::from_secs(40);
/// DESCRIBE may take this long before the refresher gives up on this round.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
/// After a failed DESCRIBE the refresher tries again after this long.
const RETRY: Duration = Duration::from_secs(5);

struct Slot {
    camera: NetworkCamera,
    session: Option<(Session<Described>, Instant)>,
    /// Ingest sessions of this camera running now: no warm session meanwhile.
    in_use: usize,
    task: tokio::task::JoinHandle<()>,
}

/// The pool; one per NVR.
#[derive(Default)]
pub struct WarmPool {
    slots: Mutex<HashMap<String, Slot>>,
}

/// Marks a camera in use while an ingest session of it runs.
pub struct InUse {
    pool: Arc<WarmPool>,
    url: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Ok(mut m) = self.pool.slots.lock() {
            if let Some(s) = m.get_mut(&self.url) {
                s.in_use = s.in_use.saturating_sub(1);
            }
        }
    }
}

/// The session options every warm and cold session uses for `camera`.
pub fn session_options(camera: &NetworkCamera) -> SessionOptions {
    let creds = camera.credentials.as_ref().map(|c| retina::client::Credentials {
        username: c.username.clone(),
        password: c.password.clone(),
    });
    base_session_options().creds(creds)
}

/// The session options of every camera, before its credentials
/// (`bench intake` measures retina with exactly these).
pub fn base_session_options() -> SessionOptions {
    SessionOptions::default()
        .user_agent("Tandem NVR".into())
        .max_frame_bytes(super::MAX_FRAME_BYTES)
}

/// The cameras the rules bind in failure, each once, in configuration order.
pub fn failure_cameras(config: &crate::config::Config) -> Vec<NetworkCamera> {
    let mut out: Vec<NetworkCamera> = Vec::new();
    for name in config
        .rules
        .iter()
        .flat_map(|r| r.failure.iter().filter_map(|(_, cam)| cam.as_deref()))
    {
        if let Some(c) = config.cameras.iter().find(|c| c.name == name) {
            if !out.iter().any(|o| o.url == c.url) {
                out.push(c.clone());
            }
        }
    }
    out
}

impl WarmPool {
    /// Keeps warm paths to exactly `cameras` (by URL): starts a refresher
    /// for each new one, stops those no longer wanted. Call within the
    /// runtime.
    pub fn set_wanted(self: &Arc<Self>, cameras: Vec<NetworkCamera>) {
        let Ok(mut m) = self.slots.lock() else { return };
        let wanted: Vec<String> = cameras.iter().map(|c| c.url.to_string()).collect();
        m.retain(|url, slot| {
            let keep = wanted.contains(url) && cameras.iter().any(|c| c.url.as_str() == url && *c == slot.camera);
            if !keep {
                slot.task.abort();
                info!(camera = %slot.camera.name, "no rule binds this camera in failure now: warm path closed");
            }
            keep
        });
        for cam in cameras {
            let url = cam.url.to_string();
            if m.contains_key(&url) {
                continue;
            }
            let span = tracing::info_span!("warm", camera = %cam.name);
            let task = tokio::spawn(tracing::Instrument::instrument(
                refresher(Arc::downgrade(self), url.clone()),
                span,
            ));
            m.insert(
                url,
                Slot {
                    camera: cam,
                    session: None,
                    in_use: 0,
                    task,
                },
            );
        }
    }

    /// The camera's warm session, if one is fresh; the caller owns it (the
    /// refresher makes a new one after the camera is released).
    pub fn take(&self, url: &url::Url) -> Option<Session<Described>> {
        let mut m = self.slots.lock().ok()?;
        let slot = m.get_mut(url.as_str())?;
        let (s, at) = slot.session.take()?;
        (at.elapsed() < MAX_AGE).then_some(s)
    }

    /// Marks the camera in use until the guard drops.
    pub fn in_use(self: &Arc<Self>, url: &url::Url) -> InUse {
        if let Ok(mut m) = self.slots.lock() {
            if let Some(s) = m.get_mut(url.as_str()) {
                s.in_use += 1;
            }
        }
        InUse {
            pool: self.clone(),
            url: url.to_string(),
        }
    }

    /// Cameras with a warm session now (for tests and the log).
    pub fn warm_count(&self) -> usize {
        self.slots
            .lock()
            .map(|m| m.values().filter(|s| s.session.is_some()).count())
            .unwrap_or(0)
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        if let Ok(m) = self.slots.get_mut() {
            for s in m.values() {
                s.task.abort();
            }
        }
    }
}

/// Keeps one described session of `url` fresh while the pool wants it.
async fn refresher(pool: std::sync::Weak<WarmPool>, url: String) {
    let mut announced = false;
    loop {
        let job = {
            let Some(p) = pool.upgrade() else { return };
            let Ok(m) = p.slots.lock() else { return };
            let Some(slot) = m.get(&url) else { return };
            let fresh = slot.session.as_ref().is_some_and(|(_, at)| at.elapsed() < REFRESH);
            (slot.in_use == 0 && !fresh).then(|| slot.camera.clone())
        };
        let Some(camera) = job else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let opts = session_options(&camera);
        let wait = match tokio::time::timeout(DESCRIBE_TIMEOUT, Session::describe(camera.url.clone(), opts)).await {
            Ok(Ok(session)) => {
                let Some(p) = pool.upgrade() else { return };
                if let Ok(mut m) = p.slots.lock() {
                    if let Some(slot) = m.get_mut(&url).filter(|s| s.in_use == 0) {
                        // The old session (if any) is dropped here: its connection closes.
                        slot.session = Some((session, Instant::now()));
                    }
                }
                if !announced {
                    announced = true;
                    info!("warm path ready: DESCRIBE answered, kept for a takeover");
                }
                REFRESH
            }
            Ok(Err(e)) => {
                debug!("warm path: DESCRIBE failed: {}", crate::excerpt::short(&e.to_string()));
                RETRY
            }
            Err(_) => RETRY,
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;

    fn camera(name: &str, url: &str) -> NetworkCamera {
        NetworkCamera {
            name: name.into(),
            url: url.parse().unwrap(),
            substream_url: None,
            channel: None,
            transport: Transport::Tcp,
            credentials: None,
            edge_storage: false,
            replay_url: None,
            priority: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wanted_camera_is_described_once_and_handed_out_once() {
        let spec = crate::sim::VideoSpec {
            width: 32,
            height: 32,
            fps: 25,
            gop: 25,
            bitrate_kbps: 50,
        };
        let video = Arc::new(crate::sim::encode_loop(&spec).unwrap());
        let opts = crate::sim::server::SimOptions {
            count: 1,
            first_id: 1,
            setup_delay: Duration::ZERO,
            auth: None,
            switch: None,
            motion: None,
            ignore_key_frame_requests: false,
        };
        let server = crate::sim::server::start("127.0.0.1:0".parse().unwrap(), video, opts)
            .await
            .unwrap();
        let cam = camera("cam", &server.url(1));
        let pool = Arc::new(WarmPool::default());
        pool.set_wanted(vec![cam.clone()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.warm_count() == 0 {
            assert!(Instant::now() < deadline, "no warm session");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The standby pulls no video: nobody is playing the camera.
        assert_eq!(server.sessions(1), 0);
        let s = pool.take(&cam.url).expect("a fresh session");
        assert!(pool.take(&cam.url).is_none(), "handed out once");
        assert!(s.streams().iter().any(|s| s.media() == "video"));
        // In use: no new warm session while the camera is recorded.
        let guard = pool.in_use(&cam.url);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(pool.warm_count(), 0);
        drop(guard);
        // No longer wanted: the refresher stops and nothing is handed out.
        pool.set_wanted(Vec::new());
        assert!(pool.take(&cam.url).is_none());
    }
}
