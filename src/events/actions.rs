//! Actions: which stored events become alerts, through which action.
//!
//! One dispatcher task receives every notice from the store writer and, per
//! action, filters it (channels, event types), checks the action's weekly
//! schedule, holds a `camera_offline` for the action's offline grace,
//! applies the rate limiter, composes the message and queues it in the
//! durable outbox (`store::outbox`, committed before any attempt); the
//! action's worker (`events::delivery`) then sends it. Must never block
//! recording or another action: the writer offers notices with `try_send`,
//! and each action has its own worker, so a stuck transport only delays its
//! own messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::tz::TimeZone;
use tokio::sync::mpsc::Receiver;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::delivery::Outbox;
use super::outbox::{Grace, Hold};
use super::rate::RateLimiter;
use super::{mqtt::Mqtt, Notice, Phase};
use crate::alerts::compose::{compose, Context};
use crate::alerts::{Delivery, Message};
use crate::config::{ActionConfig, ActionTarget, Config};
use crate::store::outbox::NewRow;
use crate::time::{Clock, Time90k, TICKS_PER_SEC};

/// Counters of one action since the dispatcher started (a live apply starts
/// them afresh); the outbox's own counts are in `store::outbox::Summary`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ActionStats {
    pub name: String,
    pub delivered: u64,
    pub failed: u64,
    pub retries: u64,
    pub rate_limited: u64,
    /// Notices not sent because the action's schedule was off.
    pub unscheduled: u64,
    /// `camera_offline` alerts withheld because the camera returned within
    /// the offline grace.
    pub within_grace: u64,
    pub last_error: Option<String>,
}

pub type SharedActionStats = Arc<Mutex<Vec<ActionStats>>>;

/// What messages say about the site: the NVR's name, how people reach its
/// web client, and each channel's name and time zone.
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// The name people read (`{nvr}`).
    pub nvr: String,
    /// The stable id, as in the MQTT topics (the JSON's `nvr`).
    pub nvr_id: String,
    pub base_url: Option<String>,
    pub channels: HashMap<u32, (String, TimeZone)>,
}

impl Site {
    /// The site as `config` describes it: `[nvr] name` (else this host's
    /// name, else the NVR id — a person reads it in an SMS), `http.public_url`
    /// (else the listen address, or this host's name when it listens on every
    /// address).
    pub fn of(config: &Config, nvr_id: &str) -> Site {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty());
        let base_url = match &config.http.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => {
                let ip = config.listen.ip();
                let host = if ip.is_unspecified() {
                    hostname.clone().unwrap_or_else(|| "localhost".into())
                } else if ip.is_ipv6() {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                format!("{}://{host}:{}", config.http.scheme(), config.listen.port())
            }
        };
        Site {
            nvr: config.name.clone().or(hostname).unwrap_or_else(|| nvr_id.to_string()),
            nvr_id: nvr_id.to_string(),
            base_url: Some(base_url),
            channels: config
                .channels
                .iter()
                .map(|c| (c.number, (c.name.clone(), c.recording.schedule.tz.clone())))
                .collect(),
        }
    }

    /// The message action `a` sends for `n`, with message id `id` and, when
    /// the action links pictures and `link_key` is known, a signed link.
    pub fn message(
        &self,
        a: &ActionConfig,
        n: &Notice,
        link_key: Option<&str>,
        id: String,
        now_unix_s: i64,
    ) -> Message {
        let ch = n.channel.and_then(|c| self.channels.get(&c));
        let snapshot_link = match (a.snapshot, n.channel, link_key, &self.base_url) {
            // The width is not signed: any width of the one picture is fine.
            (true, Some(_), Some(key), Some(base)) if n.id > 0 => Some(format!(
                "{}&width={}",
                crate::alerts::link::snapshot_link(base, key, n.id, now_unix_s),
                a.snapshot_width
            )),
            _ => None,
        };
        let cx = Context {
            nvr: &self.nvr,
            nvr_id: &self.nvr_id,
            channel_name: ch.map(|(name, _)| name.as_str()),
            channel_tz: ch.map(|(_, tz)| tz),
            base_url: self.base_url.as_deref(),
            snapshot_link,
        };
        compose(a, n, &cx, id)
    }
}

/// The notice a test message announces: an instant `test` event of no
/// channel, now.
pub fn test_notice(now: Time90k) -> Notice {
    Notice {
        id: 0,
        channel: None,
        kind: "test".into(),
        phase: Phase::Instant,
        start: now,
        end: Some(now),
        details: serde_json::json!({ "test": true }),
    }
}

/// One attempt at `msg` through `a` (MQTT through `mqtt`), with the picture.
pub async fn send(a: &ActionConfig, mqtt: Option<&Mqtt>, msg: &Message, picture: Option<&[u8]>) -> Delivery {
    match &a.target {
        ActionTarget::Mqtt => match mqtt {
            Some(m) => match m.publish_event(&msg.json).await {
                Ok(()) => Delivery::Delivered,
                Err(e) => Delivery::Retry(format!("MQTT broker: {e}")),
            },
            None => Delivery::Fail("no [mqtt] broker is configured".into()),
        },
        t => crate::alerts::send(t, msg, picture).await,
    }
}

pub struct Dispatcher {
    pub actions: Vec<ActionConfig>,
    pub mqtt: Option<Mqtt>,
    pub site: Site,
    pub clock: Arc<dyn Clock>,
    pub stats: SharedActionStats,
    /// The durable outbox, shared by every dispatcher of the process.
    pub outbox: Arc<Outbox>,
    /// Wakes each action's worker (a message was queued).
    pub(super) wakes: Vec<Arc<Notify>>,
    /// Ends this dispatcher's workers when it is replaced.
    stop: tokio::sync::watch::Sender<bool>,
}

/// Whether action `a` announces notice `n` at all (before schedule, grace
/// and rate). A `delivery_failed` about an action never goes to that action:
/// a failing transport must not feed itself.
pub fn matches(a: &ActionConfig, n: &Notice) -> bool {
    let ch_ok = match (&a.channels, n.channel) {
        (None, _) => true,
        (Some(list), Some(ch)) => list.contains(&ch),
        (Some(_), None) => false,
    };
    let own_failure = n.kind == "delivery_failed" && n.details.get("action").and_then(|v| v.as_str()) == Some(&a.name);
    ch_ok && !own_failure && a.kinds.as_ref().is_none_or(|k| k.contains(&n.kind))
}

impl Dispatcher {
    pub fn new(
        actions: Vec<ActionConfig>,
        mqtt: Option<Mqtt>,
        site: Site,
        clock: Arc<dyn Clock>,
        stats: SharedActionStats,
        outbox: Arc<Outbox>,
    ) -> Dispatcher {
        Dispatcher {
            wakes: actions.iter().map(|_| Arc::new(Notify::new())).collect(),
            actions,
            mqtt,
            site,
            clock,
            stats,
            outbox,
            stop: tokio::sync::watch::channel(false).0,
        }
    }

    /// Hands every notice to the dispatcher `current` holds now: a live
    /// apply replaces it (new actions, triggers or MQTT) without losing the
    /// store's notice queue. The rate limits and the offline grace start
    /// afresh with the new one; queued messages stay in the outbox and the
    /// new dispatcher's workers take them over.
    pub async fn serve(mut rx: Receiver<Notice>, mut current: tokio::sync::watch::Receiver<Arc<Dispatcher>>) {
        let mut me = current.borrow_and_update().clone();
        me.begin();
        let mut limiter = RateLimiter::default();
        let mut grace = Grace::default();
        let mut watching = true;
        let mut housekeeping = tokio::time::interval(Duration::from_secs(3600));
        loop {
            let until_grace = grace.next_deadline().map(|t| {
                let ms = (t - me.clock.now()).max(0) * 1000 / TICKS_PER_SEC;
                Duration::from_millis(ms as u64)
            });
            let n = tokio::select! {
                n = rx.recv() => match n {
                    Some(n) => n,
                    None => {
                        me.end();
                        return;
                    }
                },
                changed = current.changed(), if watching => {
                    match changed {
                        Ok(()) => {
                            me.end();
                            me = current.borrow_and_update().clone();
                            me.begin();
                            limiter = RateLimiter::default();
                            grace = Grace::default();
                            // Rows of actions the new configuration lacks fail now.
                            me.outbox.housekeeping(me.actions.iter().map(|a| a.name.clone()).collect()).await;
                        }
                        Err(_) => watching = false,
                    }
                    continue;
                }
                _ = tokio::time::sleep(until_grace.unwrap_or(Duration::from_secs(3600))), if until_grace.is_some() => {
                    let now = me.clock.now();
                    for (i, n) in grace.release(now) {
                        me.admit(i, &n, &mut limiter, now).await;
                    }
                    continue;
                }
                _ = housekeeping.tick() => {
                    me.outbox.housekeeping(me.actions.iter().map(|a| a.name.clone()).collect()).await;
                    continue;
                }
            };
            // Home Assistant state topics follow every event, unthrottled:
            // they are state, not alerts.
            if let Some(m) = &me.mqtt {
                m.publish_state(&n);
                if super::outbox::wants_picture(&n) {
                    let (m, outbox, id, ch) = (m.clone(), me.outbox.clone(), n.id, n.channel.unwrap_or(0));
                    tokio::spawn(async move {
                        if let Some(jpeg) = outbox
                            .picture(id, crate::snapshot::DEFAULT_WIDTH, super::delivery::PICTURE_WAIT)
                            .await
                        {
                            m.publish_snapshot(ch, jpeg);
                        }
                    });
                }
            }
            let now = me.clock.now();
            for (i, a) in me.actions.iter().enumerate() {
                if !matches(a, &n) {
                    continue;
                }
                if !a.scheduled_at(now) {
                    debug!(action = a.name, event = n.id, "not sent: outside the action's schedule");
                    me.count(i, |s| s.unscheduled += 1);
                    continue;
                }
                match grace.offer(i, crate::time::ticks_of(a.offline_grace), &n, now) {
                    Hold::Pass => me.admit(i, &n, &mut limiter, now).await,
                    Hold::Held => {
                        info!(action = a.name, channel = ?n.channel, grace_s = a.offline_grace.as_secs_f64(),
                              "camera offline: alert held for the offline grace");
                    }
                    Hold::Dropped => {
                        info!(action = a.name, channel = ?n.channel,
                              "camera back within the offline grace: no alert");
                        me.count(i, |s| s.within_grace += 1);
                    }
                }
            }
        }
    }

    /// Starts this dispatcher's workers (it became current).
    fn begin(self: &Arc<Self>) {
        self.reset_stats();
        for i in 0..self.actions.len() {
            let span = tracing::info_span!("action", action = %self.actions[i].name);
            let task = super::delivery::work(self.clone(), i, self.stop.subscribe());
            tokio::spawn(tracing::Instrument::instrument(task, span));
        }
    }

    /// Stops its workers (it was replaced); their rows stay queued.
    fn end(&self) {
        self.stop.send_replace(true);
    }

    /// Rate-limits, composes and queues notice `n` for action `i`.
    async fn admit(self: &Arc<Self>, i: usize, n: &Notice, limiter: &mut RateLimiter, now: Time90k) {
        let a = &self.actions[i];
        if !limiter.admit(i, crate::time::ticks_of(a.min_interval), n, now) {
            if n.phase != Phase::End {
                self.count(i, |s| s.rate_limited += 1);
            }
            return;
        }
        let now_ms = now.as_unix_micros() / 1000;
        let row = NewRow {
            action: a.name.clone(),
            channel: n.channel,
            created_ms: now_ms,
            give_up_ms: now_ms + a.retry_for.as_millis() as i64,
        };
        let me = self.clone();
        let (n2, name) = (n.clone(), a.name.clone());
        let queued = self
            .outbox
            .queue(row, move |id| {
                me.site.message(
                    &me.actions[i],
                    &n2,
                    me.outbox.link_key(),
                    format!("tandem-{}-{id}", me.site.nvr_id),
                    now_ms / 1000,
                )
            })
            .await;
        match queued {
            Ok(id) => {
                debug!(action = name, event = n.id, outbox = id, "alert queued");
                self.wakes[i].notify_one();
            }
            Err(e) => {
                warn!(action = name, event = n.id, "alert not queued: {e}");
                self.count(i, |s| {
                    s.failed += 1;
                    s.last_error = Some(e);
                });
            }
        }
    }

    fn reset_stats(&self) {
        if let Ok(mut s) = self.stats.lock() {
            *s = self
                .actions
                .iter()
                .map(|a| ActionStats {
                    name: a.name.clone(),
                    ..Default::default()
                })
                .collect();
        }
    }

    pub(super) fn count(&self, i: usize, f: impl FnOnce(&mut ActionStats)) {
        if let Some(s) = self.stats.lock().ok().as_mut().and_then(|v| v.get_mut(i)) {
            f(s);
        }
    }

    /// Sends a test message through action `name` now, past the outbox,
    /// schedule and rate limit; `None` when there is no such action.
    pub async fn test(&self, name: &str) -> Option<Delivery> {
        let a = self.actions.iter().find(|a| a.name == name)?;
        let outcome = send_test(a, &self.site, self.mqtt.as_ref(), self.clock.now()).await;
        info!(action = name, ?outcome, "test message sent");
        Some(outcome)
    }
}

/// Sends a test message (an instant `test` event, no picture) through `a`
/// at `now`, within the attempt timeout (`tandem alert test`, the API).
pub async fn send_test(a: &ActionConfig, site: &Site, mqtt: Option<&Mqtt>, now: Time90k) -> Delivery {
    let msg = site.message(
        a,
        &test_notice(now),
        None,
        format!("tandem-{}-test-{}", site.nvr_id, now.as_unix_micros()),
        now.as_unix_micros() / 1_000_000,
    );
    let timeout = super::delivery::ATTEMPT_TIMEOUT;
    tokio::time::timeout(timeout, send(a, mqtt, &msg, None))
        .await
        .unwrap_or_else(|_| Delivery::Retry(format!("no answer within {} s", timeout.as_secs())))
}

#[cfg(test)]
mod serve_tests {
    use super::*;
    use crate::config::ActionTarget;
    use crate::time::SystemClock;

    fn dispatcher(actions: Vec<ActionConfig>, stats: &SharedActionStats, outbox: &Arc<Outbox>) -> Arc<Dispatcher> {
        Arc::new(Dispatcher::new(
            actions,
            None,
            Site {
                nvr_id: "nvr".into(),
                ..Default::default()
            },
            Arc::new(SystemClock),
            stats.clone(),
            outbox.clone(),
        ))
    }

    fn start(kind: &str) -> Notice {
        Notice {
            id: 1,
            channel: Some(1),
            kind: kind.into(),
            phase: Phase::Start,
            start: Time90k(0),
            end: None,
            details: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn a_replaced_dispatcher_takes_the_next_notices_with_fresh_counters() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("index.db"), None, Arc::new(SystemClock)).unwrap();
        let stats = SharedActionStats::default();
        let hook = |name: &str| ActionConfig {
            kinds: Some(vec!["door".into()]),
            min_interval: std::time::Duration::from_secs(3600),
            // Nothing listens on port 1: delivery fails, which is not the point.
            ..ActionConfig::new(
                name,
                ActionTarget::Webhook {
                    url: url::Url::parse("http://127.0.0.1:1/").unwrap(),
                    ca_file: None,
                },
            )
        };
        let limited = |name: &'static str, n: u64| {
            let stats = stats.clone();
            async move {
                let t0 = std::time::Instant::now();
                loop {
                    let s = stats.lock().unwrap().clone();
                    if s.len() == 1 && s[0].name == name && s[0].rate_limited == n {
                        return;
                    }
                    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{s:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (current, watched) = tokio::sync::watch::channel(dispatcher(vec![hook("old")], &stats, &outbox));
        let task = tokio::spawn(Dispatcher::serve(rx, watched));
        // Two starts within min_interval: the second is rate limited.
        tx.send(start("door")).await.unwrap();
        tx.send(start("door")).await.unwrap();
        limited("old", 1).await;
        // The first was queued in the outbox before any attempt.
        let rows = outbox
            .with_conn(|c| crate::store::outbox::recent(c, "old", 10))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].message.id, format!("tandem-nvr-{}", rows[0].id));
        // The new dispatcher has its own counters and limiter: again one of two.
        current.send_replace(dispatcher(vec![hook("new")], &stats, &outbox));
        limited("new", 0).await;
        tx.send(start("door")).await.unwrap();
        tx.send(start("door")).await.unwrap();
        limited("new", 1).await;
        drop(tx);
        task.await.unwrap();
    }

    fn instant(id: i64, kind: &str) -> Notice {
        Notice {
            id,
            phase: Phase::Instant,
            ..start(kind)
        }
    }

    /// The serve loop applies the schedule and the offline grace before
    /// anything is queued: an action whose schedule is off queues nothing, a
    /// camera back within the grace queues nothing, one still offline after
    /// it queues its offline alert once.
    #[tokio::test]
    async fn schedule_and_offline_grace_decide_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("index.db"), None, Arc::new(SystemClock)).unwrap();
        let stats = SharedActionStats::default();
        let hook = |name: &str| ActionConfig {
            min_interval: Duration::ZERO,
            offline_grace: Duration::from_millis(300),
            ..ActionConfig::new(
                name,
                ActionTarget::Webhook {
                    url: url::Url::parse("http://127.0.0.1:1/").unwrap(),
                    ca_file: None,
                },
            )
        };
        let off = ActionConfig {
            schedule: Some(crate::recording::schedule::Schedule::always(
                crate::recording::schedule::Mode::Off,
            )),
            ..hook("off")
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (_current, watched) = tokio::sync::watch::channel(dispatcher(vec![hook("on"), off], &stats, &outbox));
        let task = tokio::spawn(Dispatcher::serve(rx, watched));
        let rows = |name: &'static str| {
            let outbox = outbox.clone();
            async move {
                outbox
                    .with_conn(move |c| crate::store::outbox::recent(c, name, 10))
                    .await
                    .unwrap()
            }
        };
        // Offline, back 100 ms later: nothing, for either action.
        tx.send(instant(1, "camera_offline")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(instant(2, "camera_online")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(rows("on").await.is_empty());
        let s = stats.lock().unwrap().clone();
        assert_eq!((s[0].within_grace, s[1].unscheduled), (1, 2), "{s:?}");
        // Offline for good: queued once the grace has passed, not before.
        tx.send(instant(3, "camera_offline")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rows("on").await.is_empty());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queued = rows("on").await;
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].message.event_id, Some(3));
        // The action whose schedule is off queued nothing at all.
        assert!(rows("off").await.is_empty());
        assert_eq!(stats.lock().unwrap()[1].unscheduled, 3);
        drop(tx);
        task.await.unwrap();
    }

    fn action_for(kinds: &[&str], channels: Option<Vec<u32>>) -> ActionConfig {
        ActionConfig {
            kinds: Some(kinds.iter().map(|k| k.to_string()).collect()),
            channels,
            ..ActionConfig::new("hook", ActionTarget::Mqtt)
        }
    }

    #[test]
    fn matching_by_channel_and_type_never_feeds_an_action_its_own_failure() {
        let a = action_for(&["motion", "delivery_failed"], Some(vec![1]));
        assert!(matches(&a, &start("motion")));
        assert!(!matches(&a, &start("door")));
        let mut other = start("motion");
        other.channel = Some(2);
        assert!(!matches(&a, &other));
        other.channel = None;
        assert!(!matches(&a, &other));
        let mut failed = start("delivery_failed");
        failed.details = serde_json::json!({ "action": "hook" });
        assert!(!matches(&a, &failed));
        failed.details = serde_json::json!({ "action": "mail" });
        assert!(matches(&a, &failed));
    }

    #[test]
    fn a_message_names_the_site_and_links_a_signed_picture() {
        let mut site = Site {
            nvr: "gate".into(),
            base_url: Some("http://10.0.0.5:8080".into()),
            ..Default::default()
        };
        site.channels.insert(1, ("Lobby".into(), TimeZone::UTC));
        let a = ActionConfig::new("hook", ActionTarget::Mqtt);
        let m = site.message(&a, &start("motion"), Some("k"), "tandem-x-5".into(), 1_000);
        assert_eq!(m.subject, "gate: motion started on Lobby");
        let link = m.json["snapshot_link"].as_str().unwrap();
        assert!(
            link.starts_with("http://10.0.0.5:8080/api/v1/events/1/snapshot.jpg?expires="),
            "{link}"
        );
        // No key, no picture wanted, or no channel: no link.
        assert!(site
            .message(&a, &start("motion"), None, "i".into(), 0)
            .json
            .get("snapshot_link")
            .is_none());
        let quiet = ActionConfig {
            snapshot: false,
            ..a.clone()
        };
        assert!(site
            .message(&quiet, &start("motion"), Some("k"), "i".into(), 0)
            .json
            .get("snapshot_link")
            .is_none());
        let t = site.message(&a, &test_notice(Time90k(0)), Some("k"), "i".into(), 0);
        assert!(t.json.get("snapshot_link").is_none());
        assert_eq!(t.subject, "gate: test");
    }

    #[test]
    fn the_base_url_comes_from_public_url_or_the_listen_address() {
        let mut c = Config {
            listen: "127.0.0.1:8080".parse().unwrap(),
            ..Default::default()
        };
        assert_eq!(Site::of(&c, "id").base_url.as_deref(), Some("http://127.0.0.1:8080"));
        // No `[nvr] name`: the host's name, as a person would call the box.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(Site::of(&c, "id").nvr, host.trim());
        assert_eq!(Site::of(&c, "id").nvr_id, "id");
        c.name = Some("gate".into());
        c.http.public_url = Some(url::Url::parse("https://nvr.example.com/").unwrap());
        let s = Site::of(&c, "id");
        assert_eq!(
            (s.nvr.as_str(), s.base_url.as_deref()),
            ("gate", Some("https://nvr.example.com"))
        );
        c.http.public_url = None;
        c.listen = "0.0.0.0:9000".parse().unwrap();
        let b = Site::of(&c, "id").base_url.unwrap();
        assert!(
            b.starts_with("http://") && b.ends_with(":9000") && !b.contains("0.0.0.0"),
            "{b}"
        );
    }
}
