//! Delivering the outbox: one worker per action takes its due rows (oldest
//! first, at most `outbox::IN_FLIGHT` at once), makes one attempt each
//! through the action's transport, and records the outcome the policy
//! (`events::outbox`) decides; a row given up raises a `delivery_failed`
//! event through the store writer.
//!
//! Owns the outbox's index connection (used on the blocking pool only) and
//! the wait for an event's picture. Must never hold a row longer than one
//! attempt's timeout, never let one action's stuck transport delay another
//! (each worker is its own task), and never block the async runtime.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::Connection;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::actions::Dispatcher;
use super::outbox::{self as policy, Step};
use crate::alerts::{Delivery, Message};
use crate::config::ActionTarget;
use crate::store::outbox::{self as rows, NewRow, OutboxError, Row};
use crate::store::{Command, WriterTx};
use crate::time::Clock;

/// One attempt's limit, whatever the transport: an SMTP server that accepts
/// and never answers costs this, then the row is retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an attempt waits for the event's key frame to be stored (right
/// after an event starts it may not be yet); then the message goes without.
pub const PICTURE_WAIT: Duration = Duration::from_secs(3);

/// Why there is no picture.
#[derive(Debug)]
pub enum PictureError {
    /// The key frame is not stored yet: worth asking again shortly.
    NotYet(String),
    /// There will be none (no channel, H.265, undecodable).
    Never(String),
}

pub type PictureFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, PictureError>> + Send>>;

/// Where event pictures come from (`web::snapshot::event_picture` in the
/// running NVR): a seam, so that the outbox needs no web server to exist.
pub trait Pictures: Send + Sync {
    fn picture(&self, event: i64, width: u32) -> PictureFuture;
}

/// The durable outbox as the dispatchers and workers use it; one per
/// process, outliving the dispatchers a live apply replaces.
pub struct Outbox {
    db: PathBuf,
    conn: Mutex<Option<Connection>>,
    /// Where `delivery_failed` events go; `None` in tests without a store.
    events: Option<WriterTx>,
    clock: Arc<dyn Clock>,
    pictures: OnceLock<Arc<dyn Pictures>>,
    link_key: Option<String>,
}

impl Outbox {
    /// Opens the outbox in the index at `db` (migrated to the current schema).
    pub fn open(db: &Path, events: Option<WriterTx>, clock: Arc<dyn Clock>) -> Result<Arc<Outbox>, OutboxError> {
        let mut conn = crate::store::db::open(db)?;
        crate::store::db::migrate(&mut conn).map_err(OutboxError::Schema)?;
        let link_key = Some(crate::store::db::link_key(&conn)?);
        let (pending, _) = rows::pending_counts(&conn, "")?;
        if pending > 0 {
            info!(pending, "alert outbox: resuming the alerts queued before the restart");
        }
        Ok(Arc::new(Outbox {
            db: db.to_path_buf(),
            conn: Mutex::new(Some(conn)),
            events,
            clock,
            pictures: OnceLock::new(),
            link_key,
        }))
    }

    /// Where pictures come from, once the NVR exists.
    pub fn set_pictures(&self, p: Arc<dyn Pictures>) {
        let _ = self.pictures.set(p);
    }

    /// The key that signs snapshot links.
    pub fn link_key(&self) -> Option<&str> {
        self.link_key.as_deref()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now().as_unix_micros() / 1000
    }

    /// Runs `f` (reads and writes) on the outbox's connection on the blocking pool.
    pub async fn with_conn<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rows::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = me
                .conn
                .lock()
                .map_err(|_| "alert outbox: connection lock poisoned".to_string())?;
            if slot.is_none() {
                *slot = Some(crate::store::db::open(&me.db).map_err(|e| format!("alert outbox: {e}"))?);
            }
            let conn = slot.as_ref().expect("opened above");
            let r = f(conn).map_err(|e| e.to_string());
            if r.is_err() {
                // A broken connection is reopened next time.
                *slot = None;
            }
            r
        })
        .await
        .map_err(|e| format!("alert outbox: {e}"))?
    }

    /// Stores a message (committed before this returns) and returns its row
    /// id; fails the oldest pending rows of the action if the outbox is full.
    pub async fn queue(
        self: &Arc<Self>,
        row: NewRow,
        make: impl FnOnce(i64) -> Message + Send + 'static,
    ) -> Result<i64, String> {
        let action = row.action.clone();
        let (id, dropped) = self
            .with_conn(move |c| {
                let r = rows::insert(c, &row, make)?;
                let (total, mine) = rows::pending_counts(c, &action)?;
                let dropped = match policy::overflow(total, mine) {
                    0 => Vec::new(),
                    n => rows::fail_oldest(c, &action, n)?,
                };
                Ok((r.id, dropped))
            })
            .await?;
        for r in &dropped {
            self.report_failure(r, "the outbox is full: the oldest pending alerts were dropped");
        }
        Ok(id)
    }

    /// Prunes finished rows and fails those of actions no longer configured.
    pub async fn housekeeping(self: &Arc<Self>, actions: Vec<String>) {
        let before = policy::prune_before(self.now_ms());
        let r = self
            .with_conn(move |c| {
                let orphans = rows::fail_orphans(c, &actions)?;
                let pruned = rows::prune(c, before, policy::KEEP_ROWS)?;
                Ok((orphans, pruned))
            })
            .await;
        match r {
            Ok((orphans, pruned)) => {
                for o in &orphans {
                    self.report_failure(o, "the action was removed from the configuration");
                }
                if pruned > 0 {
                    info!(pruned, "alert outbox: old delivered and failed alerts pruned");
                }
            }
            Err(e) => warn!("alert outbox housekeeping: {e}"),
        }
    }

    /// Event `event`'s picture, `width` wide, waiting up to `wait` for its
    /// key frame to be stored; `None` if there is none by then.
    pub async fn picture(&self, event: i64, width: u32, wait: Duration) -> Option<Vec<u8>> {
        let p = self.pictures.get()?.clone();
        let until = tokio::time::Instant::now() + wait;
        loop {
            match p.picture(event, width).await {
                Ok(jpeg) => return Some(jpeg),
                Err(PictureError::NotYet(e)) if tokio::time::Instant::now() < until => {
                    tracing::debug!(event, "picture not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(PictureError::NotYet(e) | PictureError::Never(e)) => {
                    info!(event, "alert sent without a picture: {e}");
                    return None;
                }
            }
        }
    }

    /// Stores a `delivery_failed` event (on the alert's channel, or NVR-wide).
    fn report_failure(&self, r: &Row, error: &str) {
        warn!(
            action = r.action,
            outbox = r.id,
            message = r.message.id,
            "alert given up: {error}"
        );
        let Some(w) = &self.events else { return };
        let details = serde_json::json!({
            "action": r.action,
            "message_id": r.message.id,
            "event_id": r.message.event_id,
            "attempts": r.attempts,
            "error": crate::excerpt::short(error),
        });
        let c = Command::Event {
            channel: r.channel,
            kind: "delivery_failed",
            time: self.clock.now(),
            details,
        };
        if let Err(e) = w.try_send(c) {
            warn!("delivery_failed event not stored: the store is not taking events ({e})");
        }
    }
}

/// Action `i`'s worker: runs until `stop` (its dispatcher was replaced).
pub(super) async fn work(d: Arc<Dispatcher>, i: usize, mut stop: tokio::sync::watch::Receiver<bool>) {
    let name = d.actions[i].name.clone();
    let wake = d.wakes[i].clone();
    let mut flying: HashSet<i64> = HashSet::new();
    let mut attempts: JoinSet<i64> = JoinSet::new();
    loop {
        let now = d.outbox.now_ms();
        let limit = flying.len() + policy::IN_FLIGHT;
        let n2 = name.clone();
        let wait = match d.outbox.with_conn(move |c| rows::pending(c, &n2, limit)).await {
            Ok(due) => {
                let (start, wake_at) = policy::plan(&due, &flying, now);
                for id in start {
                    flying.insert(id);
                    attempts.spawn(attempt(d.clone(), i, id));
                }
                wake_at.map(|w| Duration::from_millis((w - now).max(0) as u64))
            }
            Err(e) => {
                warn!("alert outbox unreadable, retrying in 5 s: {e}");
                Some(Duration::from_secs(5))
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = wake.notified() => {}
            Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                if let Ok(id) = done {
                    flying.remove(&id);
                } else {
                    // A panicked attempt: forget every finished one by
                    // reading the table again with nothing assumed in flight.
                    flying.retain(|_| false);
                    attempts.abort_all();
                }
            }
            _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600))), if wait.is_some() => {}
        }
    }
}

/// One attempt at row `id` through action `i`; returns the row's id.
async fn attempt(d: Arc<Dispatcher>, i: usize, id: i64) -> i64 {
    let a = &d.actions[i];
    let row = match d.outbox.with_conn(move |c| rows::get(c, id)).await {
        Ok(Some(r)) if r.state == policy::State::Pending => r,
        Ok(_) => return id,
        Err(e) => {
            warn!(outbox = id, "cannot read the queued alert: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return id;
        }
    };
    // Only e-mail carries the picture itself; the others link it.
    let wants_picture = a.snapshot && matches!(a.target, ActionTarget::Email(_)) && row.channel.is_some();
    // The first attempt waits for a key frame not stored yet; a retry does
    // not wait again (by then it is stored, or there will be none).
    let wait = if row.attempts == 0 {
        PICTURE_WAIT
    } else {
        Duration::ZERO
    };
    let picture = match (wants_picture, row.message.event_id) {
        (true, Some(event)) => d.outbox.picture(event, a.snapshot_width, wait).await,
        _ => None,
    };
    let outcome = tokio::time::timeout(
        ATTEMPT_TIMEOUT,
        super::actions::send(a, d.mqtt.as_ref(), &row.message, picture.as_deref()),
    )
    .await
    .unwrap_or_else(|_| Delivery::Retry(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())));
    let now = d.outbox.now_ms();
    let tries = row.attempts + 1;
    let step = policy::after_attempt(outcome, tries, row.give_up_ms, now);
    let s2 = step.clone();
    if let Err(e) = d.outbox.with_conn(move |c| rows::record(c, id, &s2, now)).await {
        // The row is still due: without a pause it would be sent again at once.
        warn!(outbox = id, "cannot record the alert's attempt: {e}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    match &step {
        Step::Delivered => {
            info!(outbox = id, message = row.message.id, event = ?row.message.event_id, attempts = tries, "alert delivered");
            d.count(i, |s| s.delivered += 1);
        }
        Step::RetryAt { at_ms, error } => {
            warn!(
                outbox = id,
                attempt = tries,
                retry_in_ms = at_ms - now,
                "alert not delivered, will retry: {error}"
            );
            d.count(i, |s| {
                s.retries += 1;
                s.last_error = Some(error.clone());
            });
        }
        Step::Failed { error } => {
            d.count(i, |s| {
                s.failed += 1;
                s.last_error = Some(error.clone());
            });
            let row = Row { attempts: tries, ..row };
            d.outbox.report_failure(&row, error);
        }
    }
    id
}
