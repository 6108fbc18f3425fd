//! Carries the pool's assignment out on this NVR (issue 13): with `[pool]`,
//! every channel that names a camera no failover rule governs records that
//! camera only while the pool gives it to this NVR. A task follows the
//! membership's view of the pool and this NVR's channels, publishes which
//! cameras it records now, and binds and unbinds channels as
//! `pool::handover` decides (make-before-break).
//!
//! A second task applies the pool's shared parameter file when a new one is
//! pushed (`pool::shared_config`) and reports the outcome to the pool.
//!
//! Must never unbind a camera because etcd is unreachable (the view then
//! stops changing, and so do the bindings), and never bind a channel a
//! failover rule governs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::info;

use super::Nvr;
use crate::config::pool::PoolSettings;
use crate::config::Config;
use crate::failover::capacity::ASSUMED_MBPS;
use crate::failover::federation::PeerRef;
use crate::parfile::{
    self,
    apply::{Request, Source},
};
use crate::pool::handover::{self, Waiting};
use crate::pool::membership::{MemberConfig, Membership, Status};
use crate::pool::records::{self, AssignmentDoc, RecordingList};
use crate::pool::shared_config::{self, AppliedDoc, PoolConfigDoc};
use crate::pool::view::PoolView;
use crate::pool::Camera;

/// How often the task looks at the channels (and so how soon a new owner
/// publishes that it records a camera it took).
const TICK: Duration = Duration::from_millis(200);
/// A camera counts as recorded here while its channel got a frame this recently.
pub(super) const RECORDING_WINDOW: Duration = Duration::from_secs(2);

/// How long a stopping NVR keeps recording the pool's cameras for their new
/// owners to take them (`PoolRuntime::leave`).
pub(super) const LEAVE_WAIT: Duration = Duration::from_secs(10);

/// The pool's side of a running NVR; dropping it ends the membership like
/// a crash (the pool moves the cameras when the lease expires). `leave` is
/// the graceful stop.
pub(super) struct PoolRuntime {
    membership: Membership,
    name: String,
    task: tokio::task::JoinHandle<()>,
    /// Follows the pool's shared parameter file.
    shared: tokio::task::JoinHandle<()>,
    /// How many of the pool's cameras this NVR has bound now.
    holding: watch::Receiver<usize>,
    leaving: watch::Sender<bool>,
}

impl Drop for PoolRuntime {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.abort();
    }
}

/// Camera → the channel that records it, for every channel whose binding
/// the pool decides (the lowest channel when two name the same camera).
pub(crate) fn pool_channels(config: &Config) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    if config.pool.is_none() {
        return out;
    }
    let ruled = super::rule_channels(config);
    for c in config.channels.iter().filter(|c| !ruled.contains(&c.number)) {
        if let Some(cam) = &c.camera {
            out.entry(cam.clone()).or_insert(c.number);
        }
    }
    out
}

/// The pool's cameras as the scheduler places them. Bitrates are not
/// declared per camera, so each counts `ASSUMED_MBPS`, as failover does.
fn pool_cameras(config: &Config) -> Vec<Camera> {
    pool_channels(config)
        .keys()
        .filter_map(|name| config.camera(name))
        .map(|c| Camera {
            id: c.name.clone(),
            kbps: (ASSUMED_MBPS * 1000.0) as u64,
            priority: c.priority,
        })
        .collect()
}

pub(super) fn start(nvr: &Arc<Nvr>, settings: &PoolSettings) -> PoolRuntime {
    let config = nvr.config();
    let scheme = if config.is_tls() { "https" } else { "http" };
    let address = format!("{scheme}://{}", config.listen);
    let (cameras_tx, cameras) = watch::channel(pool_cameras(&config));
    let (recording_tx, recording) = watch::channel(RecordingList::default());
    let (applied_tx, applied) = watch::channel(None);
    let mut member = MemberConfig::new(settings, &address, cameras, recording, applied);
    let kept = config.storage.dir.join(LAST_ASSIGNMENT);
    member.last_assignment = read_last_assignment(&kept);
    let (channels_of_tx, channels_of) = watch::channel(pool_channels(&config));
    member.channels_of = channels_of;
    let membership = Membership::start(member);
    let shared = tokio::spawn(follow_shared_config(
        Arc::downgrade(nvr),
        settings.name.clone(),
        membership.view(),
        applied_tx,
    ));
    let (holding_tx, holding) = watch::channel(0);
    let (leaving, leaving_rx) = watch::channel(false);
    let task = tokio::spawn(run(
        Arc::downgrade(nvr),
        settings.name.clone(),
        membership.view(),
        Outputs {
            cameras: cameras_tx,
            recording: recording_tx,
            holding: holding_tx,
            kept,
            channels_of: channels_of_tx,
        },
        leaving_rx,
    ));
    PoolRuntime {
        membership,
        name: settings.name.clone(),
        task,
        shared,
        holding,
        leaving,
    }
}

/// Applies the pool's shared parameter file (`config push --pool`) each
/// time a new push appears in the view — once per push, at start too —
/// through the same pipeline as any live apply, and reports the outcome
/// for the pusher to read. A push that fails here changes nothing here.
/// The pool's file governs the tables it carries: when the running
/// configuration is changed by another route (SIGHUP, the API), the file is
/// laid over it again, so those tables do not drift from the pool's.
async fn follow_shared_config(
    nvr: Weak<Nvr>,
    member: String,
    mut view: watch::Receiver<PoolView>,
    applied: watch::Sender<Option<AppliedDoc>>,
) {
    let Some(mut configs) = nvr.upgrade().map(|n| n.subscribe_config()) else {
        return;
    };
    let mut last: Option<String> = None;
    // The configuration as this task's last apply left it.
    let mut ours: Option<Arc<Config>> = None;
    loop {
        let doc = view.borrow_and_update().config.clone();
        let current = configs.borrow_and_update().clone();
        let changed_elsewhere = ours.as_ref().is_some_and(|o| !Arc::ptr_eq(o, &current));
        if let Some(doc) = doc.filter(|d| changed_elsewhere || last.as_deref() != Some(&d.id())) {
            let Some(nvr) = nvr.upgrade() else { return };
            if changed_elsewhere && last.as_deref() == Some(&doc.id()) {
                info!(push = %doc.id(), "pool: the configuration changed here; laying the pool's file over it again");
            }
            last = Some(doc.id());
            let before = nvr.config();
            let (report, installed) = apply_shared(&nvr, &member, &doc).await;
            // What this apply installed, by the apply's own word: a change
            // made here right after it is then told apart. Without one
            // (unchanged, refused), the configuration it was laid over; if
            // that moved meanwhile, the next pass lays the file again, which
            // changes nothing.
            ours = Some(installed.unwrap_or(before));
            // The apply's own change notification is left unread: the loop
            // wakes once more and finds the configuration is `ours`. Reading
            // it here would also swallow a change made right after the
            // apply, which then waited for the next push to be overlaid.
            if report.ok {
                info!(push = %report.id, file = %doc.file, "pool: shared configuration: {}", report.result);
            } else {
                tracing::warn!(push = %report.id, file = %doc.file, "pool: shared configuration refused: {}", report.result);
            }
            applied.send_replace(Some(report));
        }
        tokio::select! {
            r = view.changed() => if r.is_err() { return },
            r = configs.changed() => if r.is_err() { return },
        }
    }
}

/// Lays the pool's file over this NVR's configuration: the report, and the
/// configuration the apply installed if it changed anything.
async fn apply_shared(nvr: &Arc<Nvr>, member: &str, doc: &PoolConfigDoc) -> (AppliedDoc, Option<Arc<Config>>) {
    let running = nvr.config();
    // Overrides name the NVR by its `[nvr] name`, which is the member's by default.
    let name = running.name.clone().unwrap_or_else(|| member.to_string());
    let outcome = match shared_config::text_for(doc, &name, &running) {
        Err(e) => Err(e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()),
        Ok(text) => {
            let req = Request {
                source: Source::Text {
                    text,
                    file: doc.file.clone(),
                },
                passphrase: None,
                // The merged text carries no checksum (its header was removed).
                accept_edited: true,
                dry_run: false,
                actor: "pool".into(),
                origin: "pool".into(),
                base: std::env::current_dir().unwrap_or_default(),
                expect_version: None,
            };
            parfile::apply::apply(nvr, req).await.map_err(|f| f.errors())
        }
    };
    let installed = outcome
        .as_ref()
        .ok()
        .and_then(|o| o.report.as_ref())
        .and_then(|r| r.installed.clone());
    let (ok, result) = match outcome {
        Ok(o) if o.unchanged => (true, "unchanged".to_string()),
        Ok(o) => (
            true,
            format!(
                "applied (version {}): {}",
                o.version.map_or("-".into(), |v| v.to_string()),
                parfile::apply::summary(&o.diff)
            ),
        ),
        Err(errors) => (false, crate::excerpt::short(&errors.join("; "))),
    };
    let applied = AppliedDoc {
        id: doc.id(),
        ok,
        result,
    };
    (applied, installed)
}

/// What the task keeps current for the membership and for `leave`.
struct Outputs {
    cameras: watch::Sender<Vec<Camera>>,
    recording: watch::Sender<RecordingList>,
    holding: watch::Sender<usize>,
    /// Where the last assignment read is kept (`LAST_ASSIGNMENT` in the store).
    kept: PathBuf,
    /// Camera → channel here, published in the member record.
    channels_of: watch::Sender<BTreeMap<String, u32>>,
}

/// The pool's assignment as last read, in the store's directory, so that an
/// NVR started while etcd is down records what it was given.
const LAST_ASSIGNMENT: &str = "pool-assignment.json";

/// The kept assignment; a file missing or unreadable is no assignment (etcd
/// then decides, as on a first start).
fn read_last_assignment(path: &Path) -> Option<AssignmentDoc> {
    let bytes = std::fs::read(path).ok()?;
    match records::decode_assignment(&bytes) {
        Ok(doc) => Some(doc),
        Err(e) => {
            tracing::warn!(file = %path.display(), "pool: ignoring the kept assignment: {e}");
            None
        }
    }
}

/// Keeps `doc` in `path`, whole or not at all (a temporary file renamed).
/// Not fsynced: after a power cut an older assignment is as good a hint.
fn keep_assignment(path: &Path, doc: &AssignmentDoc) {
    let tmp = path.with_extension("json.tmp");
    let r = std::fs::write(&tmp, records::encode(doc)).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        tracing::warn!(file = %path.display(), "pool: cannot keep the assignment on disk: {e}");
    }
}

async fn run(
    nvr: Weak<Nvr>,
    me: String,
    mut view: watch::Receiver<PoolView>,
    out: Outputs,
    leaving: watch::Receiver<bool>,
) {
    let Outputs {
        cameras,
        recording,
        holding,
        kept,
        channels_of,
    } = out;
    let mut kept_doc = read_last_assignment(&kept);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Channel → (frames seen, when that count last grew).
    let mut seen: HashMap<u32, (u64, Instant)> = HashMap::new();
    let mut logged: BTreeMap<String, Waiting> = BTreeMap::new();
    // The stored assignment's revision whose binds and releases are all
    // done: what the recording list, taken after them, answers to.
    let mut acted_on = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = view.changed() => if r.is_err() { return },
        }
        let Some(nvr) = nvr.upgrade() else { return };
        let config = nvr.config();
        let channels = pool_channels(&config);
        channels_of.send_if_modified(|cur| (*cur != channels).then(|| *cur = channels.clone()).is_some());
        let list = pool_cameras(&config);
        cameras.send_if_modified(|cur| (*cur != list).then(|| *cur = list).is_some());
        let now = Instant::now();
        let (bound, live) = nvr.pool_state(&channels, &mut seen, now);
        let published = RecordingList {
            cameras: live,
            assignment: acted_on,
        };
        recording.send_if_modified(|cur| (*cur != published).then(|| *cur = published).is_some());
        let v = view.borrow_and_update().clone();
        if v.assignment.is_some() && v.assignment != kept_doc {
            if let Some(doc) = &v.assignment {
                keep_assignment(&kept, doc);
            }
            kept_doc = v.assignment.clone();
        }
        let pool: BTreeSet<String> = channels.keys().cloned().collect();
        let h = if *leaving.borrow() {
            handover::leaving(&me, &pool, &v, &bound)
        } else {
            handover::decide(&me, &pool, &v, &bound)
        };
        holding.send_replace(bound.len().saturating_sub(h.release.len()));
        for c in &h.bind {
            let ch = channels[c];
            info!(camera = %c, channel = ch, "pool: recording the camera assigned here");
            if let Err(e) = nvr.bind(ch, Some(c)).await {
                tracing::warn!(camera = %c, channel = ch, "pool: cannot bind: {e:#}");
            }
        }
        for (c, why) in &h.release {
            let ch = channels[c];
            info!(camera = %c, channel = ch, why = ?why, "pool: released the camera");
            if let Err(e) = nvr.bind(ch, None).await {
                tracing::warn!(camera = %c, channel = ch, "pool: cannot unbind: {e:#}");
            }
        }
        for (c, w) in &h.waiting {
            if logged.get(c) != Some(w) {
                info!(camera = %c, waiting = ?w, "pool: keeps recording until its new owner does");
            }
        }
        logged = h.waiting;
        acted_on = v.assignment_revision;
    }
}

/// What `GET /api/v1/pool` shows.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PoolStatus {
    /// This NVR's name in the pool.
    pub member: String,
    pub status: MemberStatus,
    /// The elected scheduler, as this NVR last saw the election.
    pub scheduler: Option<String>,
    pub view: PoolView,
    /// The pool's cameras this NVR has a channel for and the assignment
    /// leaves out (no member has room).
    pub unassigned: Vec<String>,
    /// Each member's capacity and what the assignment gives it.
    pub capacity_used: BTreeMap<String, crate::pool::view::MemberLoad>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberStatus {
    pub registered: bool,
    pub scheduler: bool,
    pub lease: Option<i64>,
}

impl From<Status> for MemberStatus {
    fn from(s: Status) -> MemberStatus {
        MemberStatus {
            registered: s.registered,
            scheduler: s.scheduler,
            lease: s.lease,
        }
    }
}

/// The other members that have a channel for the camera `channel` records
/// here, with that channel: where the one timeline asks for the footage
/// they hold (`failover::federation`). Members are reached at the address
/// in their record, with the failover peer token.
pub(super) fn pool_peers(view: &PoolView, me: &str, config: &Config, channel: u32) -> Vec<PeerRef> {
    let Some(camera) = pool_channels(config)
        .into_iter()
        .find(|(_, ch)| *ch == channel)
        .map(|(c, _)| c)
    else {
        return Vec::new();
    };
    view.members
        .iter()
        .filter(|(name, _)| name.as_str() != me)
        .filter_map(|(_, m)| {
            let theirs = *m.record.cameras.get(&camera)?;
            let base = m.record.address.trim_end_matches('/').to_string();
            let name = base.split_once("://").map_or(base.as_str(), |(_, h)| h).to_string();
            Some(PeerRef {
                name,
                base_url: base,
                channel: theirs,
            })
        })
        .collect()
}

impl PoolRuntime {
    /// See `pool_peers`.
    pub(super) fn peers(&self, config: &Config, channel: u32) -> Vec<PeerRef> {
        pool_peers(&self.membership.view().borrow(), &self.name, config, channel)
    }

    /// Leaves the pool gracefully: the lease is revoked so the others take
    /// this NVR's cameras at once, and each camera stays recorded here until
    /// its new owner records it (make-before-break), for at most `wait`
    /// (etcd unreachable, or no member with room). Returns how many cameras
    /// were still held when it gave up.
    pub(super) async fn leave(self, wait: Duration) -> usize {
        self.leaving.send_replace(true);
        self.membership.leave();
        let mut holding = self.holding.clone();
        let start = Instant::now();
        let left = tokio::time::timeout(wait, holding.wait_for(|n| *n == 0))
            .await
            .map(|_| ());
        let held = *holding.borrow();
        match left {
            Ok(_) => info!(
                member = %self.name,
                after_ms = start.elapsed().as_millis() as u64,
                "pool: left; every camera is recorded by another member"
            ),
            Err(_) => tracing::warn!(
                member = %self.name,
                cameras = held,
                "pool: left after {wait:?} with cameras no other member took yet"
            ),
        }
        held
    }

    pub(super) fn status(&self, config: &Config) -> PoolStatus {
        let view = self.membership.view().borrow().clone();
        let unassigned = match &view.assignment {
            Some(doc) => pool_channels(config)
                .into_keys()
                .filter(|c| !doc.cameras.contains_key(c))
                .collect(),
            None => Vec::new(),
        };
        PoolStatus {
            member: self.name.clone(),
            status: self.membership.status().borrow().clone().into(),
            scheduler: view.scheduler().map(str::to_string),
            capacity_used: view.loads((ASSUMED_MBPS * 1000.0) as u64),
            view,
            unassigned,
        }
    }
}
