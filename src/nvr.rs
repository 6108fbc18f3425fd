//! The running NVR: the store, one ingest task per bound channel, and the
//! bindings between channels and network cameras, which can change at run time
//! (the failover agent rebinds; recording follows automatically).
//!
//! Owns start-up order (store and repair first, then ingest) and shutdown order
//! (ingest stopped, then every segment closed and synced). Must never hold a
//! lock across an await: bindings are swapped under a short lock and the old
//! task is stopped after.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use tracing::{info, warn};

use crate::config::{ChannelConfig, Config};
use crate::events::actions::{Dispatcher, SharedActionStats, Site};
use crate::events::delivery::{Outbox, PictureError, PictureFuture, Pictures};
use crate::ingest::{self, Feeds, IngestHandle, SharedStats, StreamStats};
use crate::live::Stream;

/// A substream opened only for live viewers closes this long after the last
/// viewer leaves (a viewer flipping between grid pages keeps it).
const LIVE_SUB_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
use crate::motion::{MotionFrame, MotionStats, SharedMotionStats};
use crate::recording::GateStats;
use crate::store::{Reader, RecordingStatus, Store, StoreConfig};
use crate::time::Clock;

mod apply;
mod pool;
pub use pool::{MemberStatus, PoolStatus};

struct ChannelRuntime {
    config: ChannelConfig,
    binding: Option<String>,
    stats: SharedStats,
    ingest: Option<IngestHandle>,
    /// The substream session feeding motion detection, when the camera has one.
    sub_ingest: Option<IngestHandle>,
    /// A substream session opened for live viewers only (no motion on the
    /// channel), closed a while after the last viewer leaves.
    live_sub: Option<IngestHandle>,
    motion: Option<(std::sync::mpsc::SyncSender<MotionFrame>, SharedMotionStats)>,
}

pub struct Nvr {
    /// The configuration running now: replaced whole by `apply`, read with
    /// `config()`; `subscribe_config()` tells listeners (the HTTP endpoint)
    /// that it changed.
    config: tokio::sync::watch::Sender<Arc<Config>>,
    pub reader: Reader,
    pub clock: Arc<dyn Clock>,
    pub started: std::time::Instant,
    store: Mutex<Option<Store>>,
    writer: crate::store::WriterTx,
    writer_stats: crate::store::health::SharedWriterStats,
    /// Merges footage from peers beside the writer.
    pub importer: crate::store::import::Importer,
    /// One PUT at a time per staged upload.
    pub uploads: crate::store::import::UploadLocks,
    /// Imports served at once (`web::import::gate`).
    pub import_slots: Arc<tokio::sync::Semaphore>,
    /// Event triggers per (client, channel) and per channel.
    trigger_throttle: Mutex<(crate::web::throttle::Throttle, crate::web::throttle::Throttle)>,
    /// What the HTTP server allows each client, and its counters.
    pub http_limits: crate::web::server::Limits,
    pub http: Arc<crate::web::server::HttpStats>,
    /// Requests handled at once (`web::concurrency`).
    pub requests: Arc<tokio::sync::Semaphore>,
    status: crate::store::StatusMap,
    channels: Mutex<BTreeMap<u32, ChannelRuntime>>,
    /// Failover rules (`rules()`), replaced whole by an apply that changes
    /// any; their agent tasks, in the same order.
    rules: std::sync::RwLock<Vec<crate::failover::agent::SharedRule>>,
    agents: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The action dispatcher (and its MQTT client) taking the store's
    /// notices; an apply that changes triggers, actions or MQTT replaces it.
    dispatcher: tokio::sync::watch::Sender<Arc<Dispatcher>>,
    /// One apply at a time.
    applying: tokio::sync::Mutex<()>,
    /// This NVR's identity among its peers (the origin of footage it sends).
    pub nvr_id: String,
    /// Wakes the failback transfer worker; dropped at shutdown to stop it.
    transfer_wake: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// Delivery counters of the configured actions.
    pub actions: SharedActionStats,
    /// The durable alert outbox the dispatchers queue in.
    pub outbox: Arc<Outbox>,
    gate_stats: crate::store::events::GateStatsMap,
    /// Signs evidence exports (`DATA/signing-key`, created on first start).
    pub signing_key: ed25519_dalek::SigningKey,
    /// The segment scrub's counters; its thread stops when `scrub_stop` is dropped.
    pub scrub: crate::store::integrity::SharedScrubStats,
    scrub_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// Users, sessions, tokens and the audit log (`web::access`).
    pub access: Arc<crate::web::access::Access>,
    /// Live view: one hub per (channel, stream) that ingest feeds.
    pub live: crate::live::Registry,
    /// Standbys that announced, through their probes, that they back this
    /// NVR's channels up (the federated timeline asks them).
    pub peers: crate::failover::peer::Directory,
    /// Fills holes from the cameras' edge storage; told of every binding.
    pub gapfill: Arc<crate::gapfill::Gapfill>,
    /// Described sessions kept ready for the cameras the rules bind in
    /// failure (`ingest::warm`).
    pub warm: Arc<ingest::warm::WarmPool>,
    /// The S3 archive tier's thread (`[archive]`); stops when taken.
    archiver: Mutex<Option<crate::archive::task::ArchiverThread>>,
    /// This NVR's part in a recorder pool (`[pool]`), which binds the
    /// channels of the pool's cameras.
    pool: Mutex<Option<pool::PoolRuntime>>,
}

/// Channels some failover rule of `config` binds.
pub(crate) fn rule_channels(config: &Config) -> std::collections::HashSet<u32> {
    config
        .rules
        .iter()
        .flat_map(|r| r.normal.iter().chain(&r.failure).map(|(ch, _)| *ch))
        .collect()
}

/// Channels whose binding is decided at run time, not by their own
/// configuration: a failover rule's, and in a pool every channel of a pool
/// camera.
pub(crate) fn governed_channels(config: &Config) -> std::collections::HashSet<u32> {
    let mut out = rule_channels(config);
    out.extend(pool::pool_channels(config).into_values());
    out
}

/// A channel's runtime before it is bound: its motion thread, when the
/// channel has motion detection. Used by `start` and by an apply that adds a
/// channel or changes its motion settings.
fn new_channel(c: &ChannelConfig, writer: &crate::store::WriterTx) -> Result<ChannelRuntime> {
    let motion = match &c.motion {
        Some(m) => {
            let stats = SharedMotionStats::default();
            let tx = crate::motion::spawn(c.number, m.clone(), writer.clone(), stats.clone())?;
            Some((tx, stats))
        }
        None => None,
    };
    Ok(ChannelRuntime {
        config: c.clone(),
        binding: None,
        stats: Arc::new(Mutex::new(StreamStats::default())),
        ingest: None,
        sub_ingest: None,
        live_sub: None,
        motion,
    })
}

/// The action dispatcher for `config`, connecting to its MQTT broker if it has one.
fn new_dispatcher(
    config: &Config,
    nvr_id: &str,
    writer: &crate::store::WriterTx,
    clock: &Arc<dyn Clock>,
    stats: &SharedActionStats,
    outbox: &Arc<Outbox>,
) -> Dispatcher {
    let mut sensors: crate::events::mqtt::Sensors = config
        .channels
        .iter()
        .filter(|c| c.motion.is_some())
        .map(|c| (c.number, "motion".to_string()))
        .collect();
    sensors.extend(config.triggers.iter().map(|t| (t.channel, t.kind.clone())));
    let mqtt = config.mqtt.as_ref().map(|m| {
        crate::events::mqtt::Mqtt::start(
            m,
            nvr_id,
            config.triggers.clone(),
            sensors,
            writer.clone(),
            clock.clone(),
        )
    });
    Dispatcher::new(
        config.actions.clone(),
        mqtt,
        Site::of(config, nvr_id),
        clock.clone(),
        stats.clone(),
        outbox.clone(),
    )
}

/// Event pictures for the alerts, from the running NVR's snapshot cache.
struct NvrPictures(std::sync::Weak<Nvr>);

impl Pictures for NvrPictures {
    fn picture(&self, event: i64, width: u32) -> PictureFuture {
        let nvr = self.0.clone();
        Box::pin(async move {
            let Some(nvr) = nvr.upgrade() else {
                return Err(PictureError::Never("the NVR is shutting down".into()));
            };
            match crate::web::snapshot::event_picture(&nvr, event, width, None).await {
                Ok((_, snap)) => Ok(snap.jpeg.clone()),
                // Right after the start the key frame may not be stored yet;
                // 503: the decoders are busy.
                Err(e) if matches!(e.status_code().as_u16(), 404 | 503) => {
                    Err(PictureError::NotYet(e.message().to_string()))
                }
                Err(e) => Err(PictureError::Never(e.message().to_string())),
            }
        })
    }
}

/// The failback transfer worker for `config`, when a rule has a backup; its
/// thread ends when the returned sender is dropped.
fn start_transfer(config: &Config, nvr_id: &str) -> Result<Option<std::sync::mpsc::Sender<()>>> {
    match &config.failover.peer_token {
        Some(token) if config.rules.iter().any(|r| r.rule.backup.is_some()) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let w = crate::failover::transfer::Worker {
                dir: config.storage.dir.clone(),
                origin: nvr_id.to_string(),
                token: token.clone(),
                rate: config.failover.transfer_rate,
                tls: crate::failover::transfer::peer_tls(&config.failover),
                tls_targets: crate::failover::transfer::tls_targets(&config.rules),
            };
            std::thread::Builder::new()
                .name("backup-transfer".into())
                .spawn(move || w.run(rx))?;
            Ok(Some(tx))
        }
        _ => Ok(None),
    }
}

#[derive(Debug, serde::Serialize)]
pub struct ChannelView {
    pub number: u32,
    pub name: String,
    /// The network camera the channel pulls from now, or null when idle.
    pub binding: Option<String>,
    pub ingest: StreamStats,
    pub recording: RecordingStatus,
    /// Mode now, pre-event buffer use, event windows.
    pub policy: Option<GateStats>,
    pub motion: Option<MotionStats>,
    /// The store's write buffer, shared by every channel: its bound and fill
    /// (this channel's frames dropped for a full buffer: `ingest.dropped_frames`).
    pub write_buffer: crate::store::queue::BufferFigures,
}

impl Nvr {
    /// The configuration running now (a snapshot: a later apply replaces it
    /// without changing this value).
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The action dispatcher running now (`POST /api/v1/actions/{name}/test`).
    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        self.dispatcher.borrow().clone()
    }

    /// Tells of every configuration applied from now on.
    pub fn subscribe_config(&self) -> tokio::sync::watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    /// Opens (and repairs) the store, then starts ingest for every bound channel.
    pub fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Nvr>> {
        let policies = config.channels.iter().map(|c| (c.number, c.retention)).collect();
        // Always a dispatcher, even with nothing to announce: an apply may add
        // actions or MQTT later, and the writer's notifier is set at start.
        let (notifier, notices) = tokio::sync::mpsc::channel(1024);
        let (store, report) = Store::open(
            StoreConfig {
                dir: config.storage.dir.clone(),
                flush_interval: config.storage.flush_interval,
                segment_duration: config.storage.segment_duration,
                min_free_bytes: config.storage.min_free_bytes,
                policies,
                recording: config
                    .channels
                    .iter()
                    .map(|c| (c.number, c.recording.clone()))
                    .collect(),
                notifier: Some(notifier),
                import: crate::store::import::ImportLimits {
                    min_free_bytes: config.storage.min_free_bytes,
                    ..Default::default()
                },
                write_buffer: config.storage.write_buffer_bytes,
            },
            clock.clone(),
        )?;
        info!(dir = %config.storage.dir.display(), ?report, "store opened");
        let nvr_id = crate::store::db::open(&config.storage.dir.join("index.db"))
            .and_then(|c| crate::store::db::nvr_id(&c))
            .map_err(|e| anyhow::anyhow!("reading the NVR id: {e}"))?;
        let transfer_wake = start_transfer(&config, &nvr_id)?;
        let (signing_key, created) = crate::evidence::key::load_or_create(&config.storage.dir)?;
        info!(
            fingerprint = %crate::evidence::fingerprint(&signing_key.verifying_key()),
            created,
            "evidence signing key ready"
        );
        let scrub = crate::store::integrity::SharedScrubStats::default();
        let scrub_stop = match config.storage.scrub_interval {
            Some(interval) => {
                let (tx, rx) = std::sync::mpsc::channel();
                crate::store::integrity::spawn_scrub(
                    config.storage.dir.clone(),
                    interval,
                    crate::store::integrity::SCRUB_RATE,
                    scrub.clone(),
                    rx,
                )?;
                Some(tx)
            }
            None => None,
        };
        let mut channels = BTreeMap::new();
        for c in &config.channels {
            channels.insert(c.number, new_channel(c, &store.sender())?);
        }
        let actions = SharedActionStats::default();
        let gate_stats = store.gate_stats.clone();
        let outbox = Outbox::open(
            &config.storage.dir.join("index.db"),
            Some(store.sender()),
            clock.clone(),
        )
        .map_err(|e| anyhow::anyhow!("opening the alert outbox: {e}"))?;
        let dispatcher = tokio::sync::watch::Sender::new(Arc::new(new_dispatcher(
            &config,
            &nvr_id,
            &store.sender(),
            &clock,
            &actions,
            &outbox,
        )));
        let http_limits = crate::web::server::Limits::for_process(config.channels.len(), 1024);
        let access = crate::web::access::Access::open(&config.storage.dir, config.access.clone())?;
        access
            .secure_cookies
            .store(config.is_tls(), std::sync::atomic::Ordering::Relaxed);
        let access = Arc::new(access);
        match crate::store::db::open(&config.storage.dir.join("index.db")).and_then(|c| crate::auth::users::count(&c)) {
            Ok(0) => warn!(
                "no user exists yet, so the API lets nobody in (recording goes on); create the first with: \
                 tandem user add NAME --role admin --data {}",
                config.storage.dir.display()
            ),
            Ok(n) => info!(users = n, "access control on"),
            Err(e) => warn!("cannot count users: {e}"),
        }
        let config_tx = tokio::sync::watch::Sender::new(Arc::new(config.clone()));
        // Before any binding: it ends the spans the last process left open.
        let gapfill = crate::gapfill::Gapfill::start(
            &config.storage.dir,
            config.storage.dir.join("import"),
            store.importer.clone(),
            clock.clone(),
            config_tx.subscribe(),
            crate::gapfill::onvif::replayer(),
            store.sender(),
        )?;
        let archiver = match &config.archive {
            Some(a) => Some(crate::archive::task::spawn(
                config.storage.dir.clone(),
                a.clone(),
                clock.clone(),
                crate::archive::task::INTERVAL,
            )?),
            None => None,
        };
        let nvr = Arc::new(Nvr {
            reader: store.reader(),
            writer: store.sender(),
            writer_stats: store.writer_stats.clone(),
            importer: store.importer.clone(),
            uploads: Default::default(),
            import_slots: Arc::new(tokio::sync::Semaphore::new(crate::web::IMPORT_SLOTS)),
            trigger_throttle: Mutex::new((
                crate::web::throttle::Throttle::new(crate::web::TRIGGER_RATE, 4096),
                crate::web::throttle::Throttle::new(crate::web::CHANNEL_TRIGGER_RATE, 4096),
            )),
            http_limits,
            http: Default::default(),
            requests: Arc::new(tokio::sync::Semaphore::new(crate::web::server::MAX_IN_FLIGHT)),
            status: store.status.clone(),
            store: Mutex::new(Some(store)),
            channels: Mutex::new(channels),
            clock,
            started: std::time::Instant::now(),
            rules: std::sync::RwLock::new(crate::failover::agent::new_statuses(&config.rules)),
            agents: Mutex::new(Vec::new()),
            dispatcher,
            applying: Default::default(),
            nvr_id,
            transfer_wake: Mutex::new(transfer_wake),
            peers: Default::default(),
            actions,
            outbox,
            gate_stats,
            signing_key,
            scrub,
            scrub_stop: Mutex::new(scrub_stop),
            access,
            live: Default::default(),
            gapfill,
            warm: Default::default(),
            pool: Mutex::new(None),
            archiver: Mutex::new(archiver),
            config: config_tx,
        });
        tokio::spawn(crate::web::access::housekeeping(nvr.clone()));
        // The outbox's workers start with the dispatcher, once pictures can be had.
        nvr.outbox.set_pictures(Arc::new(NvrPictures(Arc::downgrade(&nvr))));
        tokio::spawn(Dispatcher::serve(notices, nvr.dispatcher.subscribe()));
        // Channels a rule governs take their binding from the rule's state.
        let config = nvr.config();
        nvr.warm.set_wanted(ingest::warm::failure_cameras(&config));
        let governed = governed_channels(&config);
        for c in &config.channels {
            if let Some(cam) = c.camera.as_ref().filter(|_| !governed.contains(&c.number)) {
                nvr.bind_now(c.number, Some(cam))?;
            }
        }
        if let Some(p) = &config.pool {
            *nvr.pool.lock().expect("pool lock") = Some(pool::start(&nvr, p));
        }
        nvr.start_agents();
        nvr.start_staging_janitor();
        Ok(nvr)
    }

    /// The failover rules now (an apply may replace them).
    pub fn rules(&self) -> Vec<crate::failover::agent::SharedRule> {
        self.rules.read().expect("rules lock").clone()
    }

    /// Starts one agent task per rule (at start, and after an apply replaced them).
    fn start_agents(self: &Arc<Self>) {
        let agents = self
            .rules()
            .into_iter()
            .map(|r| {
                let name = r.lock().map(|s| s.name.clone()).unwrap_or_default();
                let span = tracing::info_span!("rule", rule = %name);
                tokio::spawn(tracing::Instrument::instrument(
                    crate::failover::agent::run(self.clone(), r),
                    span,
                ))
            })
            .collect();
        *self.agents.lock().expect("agents lock") = agents;
    }

    /// Swaps the binding and returns the task to stop (outside the lock).
    pub(crate) fn bind_now(
        &self,
        channel: u32,
        camera: Option<&str>,
    ) -> Result<(Option<IngestHandle>, Option<IngestHandle>)> {
        self.bind_inner(channel, camera, false)
    }

    /// `bind_now`; with `restart`, a new session even when the binding is the
    /// same (its camera's settings or the channel's motion changed).
    fn bind_inner(
        &self,
        channel: u32,
        camera: Option<&str>,
        restart: bool,
    ) -> Result<(Option<IngestHandle>, Option<IngestHandle>)> {
        let cam = match camera {
            Some(name) => match self.config().camera(name) {
                Some(c) => Some(c.clone()),
                None => bail!("no network camera named `{name}`"),
            },
            None => None,
        };
        let mut chans = self.channels.lock().expect("channels lock");
        let Some(rt) = chans.get_mut(&channel) else {
            bail!("no channel {channel}")
        };
        if rt.binding.as_deref() == camera && !restart {
            return Ok((None, None));
        }
        let old = (rt.ingest.take(), rt.sub_ingest.take());
        if let Some(h) = rt.live_sub.take() {
            tokio::spawn(h.stop());
        }
        info!(channel, from = ?rt.binding, to = ?camera, "binding changed");
        rt.binding = camera.map(str::to_string);
        self.gapfill.note_binding(channel, camera, self.clock.now());
        if let Some(cam) = cam {
            // Motion is detected on the substream when the camera has one.
            let sub = cam.substream_url.clone().filter(|_| rt.motion.is_some());
            let main_feeds = Feeds {
                record: true,
                motion: rt.motion.clone().filter(|_| sub.is_none()),
                live: Some(self.live.hub(channel, Stream::Main)),
                warm: Some(self.warm.clone()),
            };
            if let Some(url) = sub {
                let sub_cam = crate::config::NetworkCamera { url, ..cam.clone() };
                let feeds = Feeds {
                    record: false,
                    motion: rt.motion.clone(),
                    live: Some(self.live.hub(channel, Stream::Sub)),
                    warm: None,
                };
                let stats = SharedStats::default();
                rt.sub_ingest = Some(ingest::spawn(
                    channel,
                    sub_cam,
                    self.writer.clone(),
                    stats,
                    self.clock.clone(),
                    feeds,
                ));
            }
            rt.ingest = Some(ingest::spawn(
                channel,
                cam,
                self.writer.clone(),
                rt.stats.clone(),
                self.clock.clone(),
                main_feeds,
            ));
        } else if let Ok(mut s) = rt.stats.lock() {
            *s = StreamStats::default();
        }
        Ok(old)
    }

    /// The hub a live viewer of `channel` reads and the stream it really
    /// carries: the substream when one is asked for and the bound camera has
    /// one — from the motion session when it runs, else from a session opened
    /// now for viewers and closed `LIVE_SUB_IDLE` after the last leaves —
    /// and the main stream otherwise.
    pub fn live_source(self: &Arc<Self>, channel: u32, want: Stream) -> Arc<crate::live::Hub> {
        let mut chans = self.channels.lock().expect("channels lock");
        let Some(rt) = chans.get_mut(&channel) else {
            return self.live.hub(channel, Stream::Main);
        };
        let config = self.config();
        let cam = rt.binding.as_deref().and_then(|b| config.camera(b));
        let sub_url = cam.and_then(|c| c.substream_url.clone());
        let (Stream::Sub, Some(url), Some(cam)) = (want, sub_url, cam) else {
            return self.live.hub(channel, Stream::Main);
        };
        let hub = self.live.hub(channel, Stream::Sub);
        if rt.sub_ingest.is_some() || rt.live_sub.is_some() {
            return hub;
        }
        info!(channel, camera = %cam.name, "opening the substream for live viewers");
        let sub_cam = crate::config::NetworkCamera { url, ..cam.clone() };
        let feeds = Feeds {
            record: false,
            motion: None,
            live: Some(hub.clone()),
            warm: None,
        };
        rt.live_sub = Some(ingest::spawn(
            channel,
            sub_cam,
            self.writer.clone(),
            SharedStats::default(),
            self.clock.clone(),
            feeds,
        ));
        let (nvr, watched) = (Arc::downgrade(self), hub.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LIVE_SUB_IDLE / 3).await;
                let Some(nvr) = nvr.upgrade() else { return };
                if watched.in_use(LIVE_SUB_IDLE, std::time::Instant::now()) {
                    continue;
                }
                let h = {
                    let mut chans = nvr.channels.lock().expect("channels lock");
                    chans.get_mut(&channel).and_then(|rt| rt.live_sub.take())
                };
                if let Some(h) = h {
                    info!(
                        channel,
                        "closing the substream: no live viewer for {} s",
                        LIVE_SUB_IDLE.as_secs()
                    );
                    h.stop().await;
                }
                return;
            }
        });
        hub
    }

    /// Reconciles the running NVR with `desired` (accounts aside): refused
    /// whole, changing nothing, when something cannot change while running.
    pub async fn apply(
        self: &Arc<Self>,
        desired: Config,
    ) -> Result<crate::reconcile::ApplyReport, crate::reconcile::ApplyError> {
        apply::apply(self, desired).await
    }

    /// Binds `channel` to a network camera (or to nothing). Recording follows.
    pub async fn bind(&self, channel: u32, camera: Option<&str>) -> Result<()> {
        let (main, sub) = self.bind_now(channel, camera)?;
        for h in [main, sub].into_iter().flatten() {
            h.stop().await;
        }
        Ok(())
    }

    pub fn channel_views(&self) -> Vec<ChannelView> {
        let status = self.status.lock().map(|m| m.clone()).unwrap_or_default();
        let gates = self.gate_stats.lock().map(|m| m.clone()).unwrap_or_default();
        let buffer = self.writer.buffer();
        let chans = self.channels.lock().expect("channels lock");
        chans
            .values()
            .map(|rt| ChannelView {
                number: rt.config.number,
                name: rt.config.name.clone(),
                binding: rt.binding.clone(),
                ingest: rt.stats.lock().map(|s| s.clone()).unwrap_or_default(),
                recording: status.get(&rt.config.number).cloned().unwrap_or_default(),
                policy: gates.get(&rt.config.number).cloned(),
                motion: rt.motion.as_ref().and_then(|(_, s)| s.lock().ok().map(|s| s.clone())),
                write_buffer: buffer.clone(),
            })
            .collect()
    }

    /// Whether channel `n` pulls from a network camera now.
    pub fn is_bound(&self, n: u32) -> bool {
        self.channels
            .lock()
            .expect("channels lock")
            .get(&n)
            .is_some_and(|rt| rt.binding.is_some())
    }

    pub fn has_channel(&self, n: u32) -> bool {
        self.channels.lock().map(|c| c.contains_key(&n)).unwrap_or(false)
    }

    /// Flushes all recorded frames to disk (blocking).
    pub fn sync(&self) {
        if let Some(s) = self.store.lock().expect("store lock").as_ref() {
            s.sync();
        }
    }

    /// Removes uploads nobody completed, at start and then every minute.
    fn start_staging_janitor(self: &Arc<Self>) {
        let staging = crate::store::import::Staging {
            dir: self.staging_dir(),
        };
        let expiry = self.importer.limits.staging_expiry;
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let staging = Arc::new(staging);
            loop {
                let s = staging.clone();
                let _ = tokio::task::spawn_blocking(move || s.expire(expiry)).await;
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                if me.strong_count() == 0 {
                    return;
                }
            }
        });
    }

    /// Whether an HTTP event trigger from `client` for `channel` is within its
    /// rates; otherwise how long until it would be.
    pub fn admit_trigger(&self, client: std::net::IpAddr, channel: u32) -> Result<(), std::time::Duration> {
        let now = std::time::Instant::now();
        let mut t = self.trigger_throttle.lock().expect("throttle lock");
        t.0.check(&format!("{client}/{channel}"), now)?;
        t.1.check(&channel.to_string(), now)
    }

    /// The writer thread's health.
    /// The store's write buffer: bound, fill, frames refused, slow episodes.
    pub fn write_buffer(&self) -> crate::store::queue::BufferFigures {
        self.writer.buffer()
    }

    pub fn writer_stats(&self) -> crate::store::health::WriterStats {
        self.writer_stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn http_stats(&self) -> serde_json::Value {
        self.http.to_json()
    }

    /// Records a failback transfer owed to a peer and wakes the sender.
    pub async fn queue_transfer(&self, job: crate::failover::transfer::Job) {
        let dir = self.config().storage.dir.clone();
        let local = job.local_channel;
        let r = tokio::task::spawn_blocking(move || crate::failover::transfer::queue(&dir, &job)).await;
        match r {
            Ok(Ok(id)) => {
                info!(job = id, channel = local, "failback transfer queued");
                if let Some(w) = self.transfer_wake.lock().expect("wake lock").as_ref() {
                    let _ = w.send(());
                }
            }
            Ok(Err(e)) => tracing::error!("cannot queue failback transfer: {e:#}"),
            Err(e) => tracing::error!("cannot queue failback transfer: {e}"),
        }
    }

    /// Where uploads from peers are staged until complete.
    pub fn staging_dir(&self) -> std::path::PathBuf {
        self.config().storage.dir.join("import")
    }

    /// Records an event (through the writer; never blocks).
    pub fn record_event(&self, channel: Option<u32>, kind: &'static str, details: serde_json::Value) {
        let _ = self.writer.try_send(crate::store::Command::Event {
            channel,
            kind,
            time: self.clock.now(),
            details,
        });
    }

    /// Starts or ends an event on a channel (HTTP trigger); never blocks on
    /// anything but the writer's queue.
    pub fn event_edge(&self, edge: crate::events::Edge) -> Result<(), String> {
        self.writer
            .try_send(crate::store::Command::EventEdge(edge))
            .map_err(|e| format!("the store writer is not taking events: {e}"))
    }

    /// The NVRs that may hold footage of `channel` this NVR lacks: its
    /// failover peers, and in a pool the other members with a channel for
    /// the same camera (`failover::federation`'s one timeline).
    pub fn federation_peers(&self, channel: u32) -> Vec<crate::failover::federation::PeerRef> {
        let config = self.config();
        let mut out = crate::failover::federation::peers_of(&config, &self.peers, channel, std::time::Instant::now());
        if let Some(p) = self.pool.lock().expect("pool lock").as_ref() {
            for peer in p.peers(&config, channel) {
                if !out
                    .iter()
                    .any(|o| o.base_url == peer.base_url && o.channel == peer.channel)
                {
                    out.push(peer);
                }
            }
        }
        out
    }

    /// The archive's settings and its latest pass; `None` without `[archive]`.
    pub fn archive_status(&self) -> Option<(crate::config::archive::ArchiveSettings, crate::archive::task::LastPass)> {
        let settings = self.config().archive.clone()?;
        let last = self
            .archiver
            .lock()
            .expect("archiver lock")
            .as_ref()
            .map(|a| a.last_pass())
            .unwrap_or_default();
        Some((settings, last))
    }

    /// The pool as this NVR sees it; `None` without `[pool]`.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        let config = self.config();
        self.pool.lock().expect("pool lock").as_ref().map(|p| p.status(&config))
    }

    /// For the pool's cameras (`channels`: camera → channel): those bound
    /// now, and those whose channel got a frame within `RECORDING_WINDOW`
    /// (`seen` keeps each channel's frame count and when it last grew).
    fn pool_state(
        &self,
        channels: &BTreeMap<String, u32>,
        seen: &mut std::collections::HashMap<u32, (u64, std::time::Instant)>,
        now: std::time::Instant,
    ) -> (std::collections::BTreeSet<String>, std::collections::BTreeSet<String>) {
        let (mut bound, mut live) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
        let chans = self.channels.lock().expect("channels lock");
        for (cam, ch) in channels {
            let Some(rt) = chans.get(ch) else { continue };
            if rt.binding.as_deref() != Some(cam.as_str()) {
                seen.remove(ch);
                continue;
            }
            bound.insert(cam.clone());
            let frames = rt.stats.lock().map(|s| s.frames).unwrap_or(0);
            let e = seen.entry(*ch).or_insert((frames, now - pool::RECORDING_WINDOW));
            if frames > e.0 {
                *e = (frames, now);
            }
            if now.duration_since(e.1) < pool::RECORDING_WINDOW {
                live.insert(cam.clone());
            }
        }
        (bound, live)
    }

    /// Stops the failover agents, then ingest, then closes every segment.
    pub async fn shutdown(&self) {
        // First: a pool member hands its cameras over while it still records them.
        let pool = self.pool.lock().expect("pool lock").take();
        if let Some(p) = pool {
            info!("shutdown: leaving the pool");
            p.leave(pool::LEAVE_WAIT).await;
        }
        info!("shutdown: stopping failover agents");
        for a in self.agents.lock().expect("agents lock").drain(..) {
            a.abort();
        }
        self.transfer_wake.lock().expect("wake lock").take();
        self.gapfill.stop();
        self.archiver.lock().expect("archiver lock").take();
        self.scrub_stop.lock().expect("scrub lock").take();
        self.live.close();
        info!("shutdown: stopping ingest");
        let handles: Vec<IngestHandle> = {
            let mut chans = self.channels.lock().expect("channels lock");
            let mut v = Vec::new();
            for rt in chans.values_mut() {
                v.extend(rt.ingest.take());
                v.extend(rt.sub_ingest.take());
                v.extend(rt.live_sub.take());
                // The last sender gone ends the channel's motion thread.
                rt.motion = None;
            }
            v
        };
        for h in handles {
            h.stop().await;
        }
        info!("shutdown: closing segments");
        let store = self.store.lock().expect("store lock").take();
        if let Some(store) = store {
            let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
        }
        info!("shutdown complete");
    }
}
