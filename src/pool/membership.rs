//! This NVR's membership of a recorder pool, through etcd: it registers under
//! a lease kept alive, campaigns for the scheduler role (etcd's election
//! API), and, elected, recomputes `placement::place` on every membership
//! change (`placement::rebalance` toward a member that joined) and stores the assignment with a compare-and-swap that only lands
//! while it still holds the election; every member watches the stored
//! assignment and publishes "the cameras assigned to me" on a
//! `tokio::sync::watch` channel. Leases, election and watches are etcd's:
//! nothing here is a consensus or heartbeat protocol of its own.
//!
//! Thin I/O around `records` (keys, documents, the scheduler's step) and
//! `backoff` (retries, what to log). Must never clear or shrink the
//! published cameras because etcd is unreachable or the lease was lost: only
//! a stored assignment that says so changes them (a duplicate recording is
//! harmless, a hole is not). Must never start or stop a camera itself.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::watch;

use super::backoff::{Backoff, Phase, PhaseLog};
use super::placement::Camera;
use super::records::{self, AssignmentDoc, Keys, MemberRecord, RecordError, RecordingList};
use super::shared_config::AppliedDoc;
use super::view::{KeyEvent, PoolView};
use crate::config::pool::PoolSettings;

/// First retry after a failure; doubles up to a third of the lease time, so
/// that when etcd comes back (it extends the leases it had by about a TTL)
/// every member renews its record before the old lease expires, and the
/// scheduler sees no member leave.
const RETRY_MIN: Duration = Duration::from_millis(50);

/// What a member needs to join: its settings, the pool's cameras (the same
/// list on every NVR; only the elected scheduler uses it; it follows live
/// configuration changes) and the cameras this NVR records now (published
/// for make-before-break handovers).
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub endpoints: Vec<String>,
    pub name: String,
    pub record: MemberRecord,
    /// Whole seconds, at least 1 (etcd's unit).
    pub lease_ttl: Duration,
    pub keys: Keys,
    pub cameras: watch::Receiver<Vec<Camera>>,
    pub recording: watch::Receiver<RecordingList>,
    /// This NVR's report of applying the pool's shared file (published
    /// under `config-applied/<name>` on the lease).
    pub applied: watch::Receiver<Option<AppliedDoc>>,
    /// The assignment last read from etcd before this start (kept on disk by
    /// the NVR): the view holds it until etcd answers, so an NVR started
    /// while etcd is down records the cameras it had.
    pub last_assignment: Option<AssignmentDoc>,
    /// Camera → the channel recording it here (`MemberRecord::cameras`);
    /// the record is written again when it changes.
    pub channels_of: watch::Receiver<BTreeMap<String, u32>>,
}

impl MemberConfig {
    /// From `[pool]`; `address` is used when `[pool] address` is not set
    /// (this NVR's HTTP API as the others reach it).
    pub fn new(
        settings: &PoolSettings,
        address: &str,
        cameras: watch::Receiver<Vec<Camera>>,
        recording: watch::Receiver<RecordingList>,
        applied: watch::Receiver<Option<AppliedDoc>>,
    ) -> MemberConfig {
        MemberConfig {
            endpoints: settings
                .etcd
                .iter()
                .map(|u| u.as_str().trim_end_matches('/').to_string())
                .collect(),
            name: settings.name.clone(),
            record: MemberRecord {
                channels: settings.capacity.channels,
                kbps: settings.capacity.kbps,
                address: settings.address.clone().unwrap_or_else(|| address.to_string()),
                version: env!("CARGO_PKG_VERSION").to_string(),
                cameras: Default::default(),
            },
            lease_ttl: settings.lease_ttl,
            keys: Keys::new(&settings.prefix),
            cameras,
            recording,
            applied,
            last_assignment: None,
            channels_of: watch::channel(BTreeMap::new()).1,
        }
    }

    /// The member record as published now: the fixed part and the cameras.
    fn record_now(&self, cameras: &BTreeMap<String, u32>) -> MemberRecord {
        MemberRecord {
            cameras: cameras.clone(),
            ..self.record.clone()
        }
    }

    fn ttl_secs(&self) -> i64 {
        self.lease_ttl.as_secs().max(1) as i64
    }
}

/// Where this member stands now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Registered under a live lease (false while etcd is unreachable).
    pub registered: bool,
    /// Elected scheduler and storing assignments.
    pub scheduler: bool,
    /// The lease of the current session.
    pub lease: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the lease expired before it was renewed")]
    LeaseExpired,
    #[error("etcd ended a watch or keep-alive stream")]
    StreamEnded,
    #[error("etcd cancelled the watch of {0:?}")]
    WatchCancelled(String),
    #[error("the election answered without a leader key")]
    NoLeaderKey,
    #[error("no longer the scheduler: the assignment write was refused")]
    Deposed,
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// A running membership. Dropping it (or `stop`) ends it at once, like a
/// crash: nothing is revoked, and the pool notices when the lease expires.
/// `leave` is the graceful way out: the lease is revoked, the pool moves the
/// cameras at once, and the view is still followed so the NVR can keep
/// recording each camera until its new owner does.
pub struct Membership {
    task: tokio::task::JoinHandle<()>,
    leave: watch::Sender<bool>,
    assigned: watch::Receiver<BTreeSet<String>>,
    status: watch::Receiver<Status>,
    view: watch::Receiver<PoolView>,
}

impl Membership {
    /// Joins the pool in a task of its own (retrying until etcd answers).
    pub fn start(config: MemberConfig) -> Membership {
        let (assigned_tx, assigned) = watch::channel(BTreeSet::new());
        let (status_tx, status) = watch::channel(Status::default());
        let mut first = PoolView::default();
        first.assignment = config.last_assignment.clone();
        let (view_tx, view) = watch::channel(first);
        let (leave, leaving) = watch::channel(false);
        let out = Publish {
            assigned: assigned_tx,
            status: status_tx,
            view: view_tx,
        };
        // The span names the task after the member in every line it logs.
        let span = tracing::info_span!("pool", member = %config.name);
        let task = tokio::spawn(tracing::Instrument::instrument(run(config, out, leaving), span));
        Membership {
            task,
            leave,
            assigned,
            status,
            view,
        }
    }

    /// The cameras the stored assignment gives this NVR; kept as they were
    /// while etcd is unreachable.
    pub fn assigned(&self) -> watch::Receiver<BTreeSet<String>> {
        self.assigned.clone()
    }

    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The pool as last read from etcd (kept as it was while etcd is
    /// unreachable).
    pub fn view(&self) -> watch::Receiver<PoolView> {
        self.view.clone()
    }

    /// Ends the membership without revoking anything (see the type's doc).
    pub fn stop(self) {}

    /// Leaves the pool: stops campaigning and scheduling, revokes the lease
    /// (the record, the recording list and the election key go with it, so
    /// the scheduler places this member's cameras elsewhere at once), and
    /// goes on following the view until dropped. Never registers again.
    pub fn leave(&self) {
        self.leave.send_replace(true);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Publish {
    assigned: watch::Sender<BTreeSet<String>>,
    status: watch::Sender<Status>,
    view: watch::Sender<PoolView>,
}

async fn run(config: MemberConfig, out: Publish, mut leaving: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(RETRY_MIN, config.lease_ttl / 3);
    let mut log = PhaseLog::default();
    // The previous session's lease, revoked (best effort) once the next one
    // holds the record: after an etcd restart it lives on for a TTL and
    // would keep this member's old election key ahead of everyone.
    let mut stale: Option<i64> = None;
    let left = async {
        // A sender gone (the membership dropped) aborts this task anyway.
        let _ = leaving.wait_for(|l| *l).await;
    };
    tokio::pin!(left);
    loop {
        let e = tokio::select! {
            Err(e) = session(&config, &out, &mut stale, &mut log, &mut backoff) => e,
            () = &mut left => break,
        };
        out.status.send_modify(|s| {
            s.registered = false;
            s.scheduler = false;
        });
        if log.enter(Phase::Unreachable(e.to_string())) {
            tracing::warn!(
                member = %config.name,
                "pool: {e}; keeping the {} cameras assigned here and retrying",
                out.assigned.borrow().len()
            );
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.failed()) => {}
            () = &mut left => break,
        }
    }
    leave_and_follow(&config, &out, stale, &mut backoff).await;
}

/// Revokes this member's lease (best effort: unrevoked, it expires after a
/// TTL), then follows the pool's view until the task is dropped, so that
/// the NVR sees which cameras their new owners record.
async fn leave_and_follow(config: &MemberConfig, out: &Publish, mut lease: Option<i64>, backoff: &mut Backoff) {
    out.status.send_modify(|s| {
        s.registered = false;
        s.scheduler = false;
        s.lease = None;
    });
    loop {
        let r: Result<Never, MembershipError> = async {
            let mut client = connect(config).await?;
            if let Some(l) = lease.take() {
                // Once: a lease etcd no longer has (expired, or from a
                // session that failed) is as good as revoked, and one that
                // cannot be revoked now expires after its TTL anyway.
                match within(config.lease_ttl, client.lease_revoke(l)).await {
                    Ok(_) => tracing::info!(member = %config.name, "pool: left the pool (lease revoked); following it until the cameras are taken"),
                    Err(e) => tracing::info!(member = %config.name, "pool: left the pool (the lease could not be revoked: {e}; it expires after its TTL)"),
                }
            }
            follow_pool(client, config, out).await
        }
        .await;
        let Err(e) = r;
        tracing::debug!(member = %config.name, "pool: leaving: {e}");
        tokio::time::sleep(backoff.failed()).await;
    }
}

async fn connect(config: &MemberConfig) -> Result<Client, MembershipError> {
    let limit = config.lease_ttl;
    let options = ConnectOptions::new()
        .with_connect_timeout(limit)
        .with_keep_alive(limit / 2, limit);
    within(limit, Client::connect(&config.endpoints, Some(options))).await
}

/// Bounds a unary request: etcd that does not answer is treated as down.
async fn within<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, MembershipError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(MembershipError::Timeout(limit)),
    }
}

enum Never {}

/// One session: a lease, the member record, and the three duties until one
/// of them fails.
async fn session(
    config: &MemberConfig,
    out: &Publish,
    stale: &mut Option<i64>,
    log: &mut PhaseLog,
    backoff: &mut Backoff,
) -> Result<Never, MembershipError> {
    let limit = config.lease_ttl;
    let mut client = connect(config).await?;
    let lease = within(limit, client.lease_grant(config.ttl_secs(), None)).await?.id();
    let record = records::encode(&config.record_now(&config.channels_of.borrow()));
    // The record moves to the new lease in one put, so the scheduler never
    // sees this member leave and come back (which would move its cameras).
    within(
        limit,
        client.put(
            config.keys.member(&config.name),
            record,
            Some(PutOptions::new().with_lease(lease)),
        ),
    )
    .await?;
    if let Some(old) = stale.replace(lease) {
        // Now only its old election key hangs on it. Gone already (expired)
        // is as good as revoked.
        let _ = within(limit, client.lease_revoke(old)).await;
    }
    backoff.succeeded();
    out.status.send_modify(|s| {
        s.registered = true;
        s.lease = Some(lease);
    });
    if log.enter(Phase::Member) {
        tracing::info!(member = %config.name, lease, "pool: registered");
    }
    tokio::select! {
        r = keep_alive(client.clone(), lease, config.lease_ttl) => r,
        r = follow_pool(client.clone(), config, out) => r,
        r = publish_on_lease(client.clone(), lease, config, config.keys.recording(&config.name), config.recording.clone(), |l| Some(records::encode(l))) => r,
        r = publish_on_lease(client.clone(), lease, config, config.keys.member(&config.name), config.channels_of.clone(), |m| Some(records::encode(&config.record_now(m)))) => r,
        r = publish_on_lease(client.clone(), lease, config, config.keys.applied(&config.name), config.applied.clone(), |a| a.as_ref().map(records::encode)) => r,
        r = campaign_and_schedule(client.clone(), lease, config, out, log) => r,
    }
}

/// Renews the lease three times per TTL; an unanswered renewal ends the session.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration) -> Result<Never, MembershipError> {
    let (mut keeper, mut responses) = within(ttl, client.lease_keep_alive(lease)).await?;
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        within(ttl, keeper.keep_alive()).await?;
        match within(ttl, responses.message()).await? {
            Some(r) if r.ttl() > 0 => {}
            Some(_) => return Err(MembershipError::LeaseExpired),
            None => return Err(MembershipError::StreamEnded),
        }
    }
}

/// Reads every key of the pool, then follows their changes: the members,
/// the stored assignment, the recording lists and the election, folded into
/// the published `PoolView`, and this member's cameras from it.
async fn follow_pool(mut client: Client, config: &MemberConfig, out: &Publish) -> Result<Never, MembershipError> {
    let prefix = config.keys.prefix().to_string();
    let got = within(
        config.lease_ttl,
        client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = got.header().map_or(0, |h| h.revision());
    let mut view = PoolView::default();
    for kv in got.kvs() {
        fold(config, &mut view, kv, true);
    }
    view.revision = revision;
    publish(config, out, view.clone());
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = within(config.lease_ttl, client.watch(prefix.clone(), Some(options))).await?;
    loop {
        let Some(resp) = stream.message().await? else {
            return Err(MembershipError::StreamEnded);
        };
        if resp.canceled() {
            return Err(MembershipError::WatchCancelled(prefix));
        }
        for ev in resp.events() {
            if let Some(kv) = ev.kv() {
                fold(config, &mut view, kv, ev.event_type() == EventType::Put);
            }
        }
        if let Some(h) = resp.header() {
            view.revision = h.revision();
        }
        publish(config, out, view.clone());
    }
}

/// Folds one key into `view`. A value that cannot be read is logged and
/// does not end the session: the scheduler, whose session this also is,
/// replaces an unreadable assignment, and until then the cameras stay.
fn fold(config: &MemberConfig, view: &mut PoolView, kv: &etcd_client::KeyValue, put: bool) {
    let ev = KeyEvent {
        key: kv.key(),
        value: put.then(|| kv.value()),
        lease: kv.lease(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    };
    if let Err(e) = view.apply(&config.keys, ev) {
        tracing::warn!(member = %config.name, "pool: {e}");
    }
}

/// Publishes the view, and this member's cameras when they changed.
fn publish(config: &MemberConfig, out: &Publish, view: PoolView) {
    let mine = view.assigned_to(&config.name);
    let have_doc = view.assignment.is_some();
    out.view.send_replace(view);
    // Without a stored assignment nothing is assigned yet, and nothing
    // already published is taken back.
    if !have_doc {
        return;
    }
    out.assigned.send_if_modified(|cur| {
        let changes = records::diff(cur, &mine);
        if changes.is_empty() {
            return false;
        }
        tracing::info!(
            member = %config.name,
            start = changes.start.len(),
            stop = changes.stop.len(),
            total = mine.len(),
            "pool: assignment changed"
        );
        *cur = mine.clone();
        true
    });
}

/// Keeps `key` (on this session's lease) equal to the latest value of `rx`
/// as `encode` renders it (`None`: nothing to publish yet): the cameras this
/// NVR records now, so that the NVR each came from can let them go
/// (`handover`), and its report of applying the pool's shared file.
async fn publish_on_lease<T>(
    mut client: Client,
    lease: i64,
    config: &MemberConfig,
    key: String,
    mut rx: watch::Receiver<T>,
    encode: impl Fn(&T) -> Option<Vec<u8>>,
) -> Result<Never, MembershipError> {
    loop {
        let value = encode(&rx.borrow_and_update());
        if let Some(v) = value {
            within(
                config.lease_ttl,
                client.put(key.clone(), v, Some(PutOptions::new().with_lease(lease))),
            )
            .await?;
        }
        changed_or_never(&mut rx).await;
    }
}

/// Waits for the next value; a sender that is gone (a fixed input) never
/// changes again.
async fn changed_or_never<T>(rx: &mut watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Campaigns (waits until elected), then stores a new assignment on every
/// membership change for as long as this member holds the election.
async fn campaign_and_schedule(
    mut client: Client,
    lease: i64,
    config: &MemberConfig,
    out: &Publish,
    log: &mut PhaseLog,
) -> Result<Never, MembershipError> {
    let elected = client
        .campaign(config.keys.scheduler(), config.name.clone(), lease)
        .await?;
    let leader = elected.leader().ok_or(MembershipError::NoLeaderKey)?;
    let (leader_key, leader_rev) = (leader.key().to_vec(), leader.rev());
    out.status.send_modify(|s| s.scheduler = true);
    if log.enter(Phase::Scheduler) {
        tracing::info!(member = %config.name, "pool: elected scheduler");
    }

    let limit = config.lease_ttl;
    let prefix = config.keys.members();
    let got = within(limit, client.get(prefix.clone(), Some(GetOptions::new().with_prefix()))).await?;
    let mut members = BTreeMap::new();
    for kv in got.kvs() {
        member_event(config, &mut members, kv.key(), Some(kv.value()));
    }
    let revision = got.header().map_or(0, |h| h.revision());
    let stored = within(limit, client.get(config.keys.assignment(), None)).await?;
    // An unreadable stored assignment is replaced: the scheduler owns it.
    let mut stored = match stored.kvs().first() {
        Some(kv) => records::decode_assignment(kv.value())
            .inspect_err(|e| tracing::warn!(member = %config.name, "pool: {e}; replacing it"))
            .ok(),
        None => None,
    };
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = within(limit, client.watch(prefix.clone(), Some(options))).await?;
    let mut cameras = config.cameras.clone();
    // A member joined since the last step: rebalance toward it (not on the
    // first step: a scheduler newly elected moves nothing it need not).
    let mut joined = false;
    loop {
        let list = cameras.borrow_and_update().clone();
        let rebalance = std::mem::take(&mut joined).then_some(records::JOIN_REBALANCE);
        let (placement, write) = records::schedule(&config.name, &members, &list, stored.as_ref(), rebalance)?;
        if let Some(doc) = write {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    leader_key.clone(),
                    CompareOp::Equal,
                    leader_rev,
                )])
                .and_then([TxnOp::put(config.keys.assignment(), records::encode(&doc), None)]);
            if !within(limit, client.txn(txn)).await?.succeeded() {
                return Err(MembershipError::Deposed);
            }
            tracing::info!(
                member = %config.name,
                members = members.len(),
                moves = placement.moves.len(),
                unassigned = placement.unassigned.len(),
                "pool: stored a new assignment"
            );
            stored = Some(doc);
        }
        // The pool's cameras changed (a configuration applied live): place again.
        let resp = tokio::select! {
            r = stream.message() => r?,
            () = changed_or_never(&mut cameras) => continue,
        };
        let Some(resp) = resp else {
            return Err(MembershipError::StreamEnded);
        };
        if resp.canceled() {
            return Err(MembershipError::WatchCancelled(prefix));
        }
        for ev in resp.events() {
            if let Some(kv) = ev.kv() {
                let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                joined |= member_event(config, &mut members, kv.key(), value);
            }
        }
    }
}

/// Applies one member key's new value (`None`: deleted, its lease expired).
/// A record that cannot be read is left out, not fatal: that member takes
/// no cameras until it writes a readable one. Returns whether a member
/// joined (a name not registered before; a record rewritten on a new lease
/// is not a join).
fn member_event(
    config: &MemberConfig,
    members: &mut BTreeMap<String, MemberRecord>,
    key: &[u8],
    value: Option<&[u8]>,
) -> bool {
    let Some(name) = std::str::from_utf8(key).ok().and_then(|k| config.keys.member_name(k)) else {
        return false;
    };
    match value.map(|v| records::decode_member(name, v)) {
        Some(Ok(r)) => members.insert(name.to_string(), r).is_none(),
        Some(Err(e)) => {
            tracing::warn!(member = %config.name, "pool: {e}");
            members.remove(name);
            false
        }
        None => {
            members.remove(name);
            false
        }
    }
}
