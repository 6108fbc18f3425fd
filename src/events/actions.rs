//! Actions: announcing stored events by MQTT, webhook and e-mail.
//!
//! One dispatcher task receives every notice from the store writer, filters it
//! per action (channels, event types), applies the rate limiter and starts a
//! delivery task, which retries with backoff and logs the outcome. Must never
//! block recording or another delivery: the writer offers notices with
//! `try_send`, and each delivery runs on its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use tracing::{info, warn};

use super::rate::RateLimiter;
use super::{mqtt::Mqtt, Notice, Phase};
use crate::config::{ActionConfig, ActionTarget};
use crate::time::Clock;

/// Attempts per delivery, with backoff 1, 2, 4, 8 s between them.
const ATTEMPTS: u32 = 5;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ActionStats {
    pub name: String,
    pub delivered: u64,
    pub failed: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub last_error: Option<String>,
}

pub type SharedActionStats = Arc<Mutex<Vec<ActionStats>>>;

pub struct Dispatcher {
    pub actions: Vec<ActionConfig>,
    pub mqtt: Option<Mqtt>,
    pub nvr_id: String,
    pub clock: Arc<dyn Clock>,
    pub stats: SharedActionStats,
}

fn matches(a: &ActionConfig, n: &Notice) -> bool {
    let ch_ok = match (&a.channels, n.channel) {
        (None, _) => true,
        (Some(list), Some(ch)) => list.contains(&ch),
        (Some(_), None) => false,
    };
    ch_ok && a.kinds.as_ref().is_none_or(|k| k.contains(&n.kind))
}

impl Dispatcher {
    pub async fn run(self, rx: Receiver<Notice>) {
        let (_keep, current) = tokio::sync::watch::channel(Arc::new(self));
        Self::serve(rx, current).await
    }

    /// Hands every notice to the dispatcher `current` holds now: a live
    /// apply replaces it (new actions, triggers or MQTT) without losing the
    /// store's notice queue. The rate limits start afresh with the new one.
    pub async fn serve(mut rx: Receiver<Notice>, mut current: tokio::sync::watch::Receiver<Arc<Dispatcher>>) {
        let mut me = current.borrow_and_update().clone();
        me.reset_stats();
        let mut limiter = RateLimiter::default();
        let mut watching = true;
        loop {
            let n = tokio::select! {
                n = rx.recv() => match n {
                    Some(n) => n,
                    None => return,
                },
                changed = current.changed(), if watching => {
                    match changed {
                        Ok(()) => {
                            me = current.borrow_and_update().clone();
                            me.reset_stats();
                            limiter = RateLimiter::default();
                        }
                        Err(_) => watching = false,
                    }
                    continue;
                }
            };
            // Home Assistant state topics follow every event, unthrottled:
            // they are state, not alerts.
            if let Some(m) = &me.mqtt {
                m.publish_state(&n);
            }
            let now = me.clock.now();
            for (i, a) in me.actions.iter().enumerate() {
                if !matches(a, &n) {
                    continue;
                }
                let min = (a.min_interval.as_secs_f64() * 90_000.0) as i64;
                if !limiter.admit(i, min, &n, now) {
                    if n.phase != Phase::End {
                        me.count(i, |s| s.rate_limited += 1);
                    }
                    continue;
                }
                let me2 = me.clone();
                let n2 = n.clone();
                tokio::spawn(async move { me2.deliver(i, n2).await });
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

    fn count(&self, i: usize, f: impl FnOnce(&mut ActionStats)) {
        if let Some(s) = self.stats.lock().ok().as_mut().and_then(|v| v.get_mut(i)) {
            f(s);
        }
    }

    async fn deliver(&self, i: usize, n: Notice) {
        let a = &self.actions[i];
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            let msg = crate::alerts::compose::compose(
                a,
                &n,
                &crate::alerts::compose::Context {
                    nvr: &self.nvr_id,
                    ..Default::default()
                },
                format!("tandem-{}-{}", self.nvr_id, n.id),
            );
            let r = match &a.target {
                ActionTarget::Mqtt => match &self.mqtt {
                    Some(m) => m.publish_event(&msg.json).await,
                    None => Err("no MQTT broker".into()),
                },
                t => match crate::alerts::send(t, &msg, None).await {
                    crate::alerts::Delivery::Delivered => Ok(()),
                    crate::alerts::Delivery::Retry(e) | crate::alerts::Delivery::Fail(e) => Err(e),
                },
            };
            match r {
                Ok(()) => {
                    info!(action = a.name, event = n.id, kind = n.kind, phase = ?n.phase, "event delivered");
                    self.count(i, |s| s.delivered += 1);
                    return;
                }
                Err(e) if attempt < ATTEMPTS => {
                    warn!(
                        action = a.name,
                        event = n.id,
                        attempt,
                        "delivery failed, will retry: {e}"
                    );
                    self.count(i, |s| {
                        s.retries += 1;
                        s.last_error = Some(e);
                    });
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    warn!(action = a.name, event = n.id, "delivery failed for good: {e}");
                    self.count(i, |s| {
                        s.failed += 1;
                        s.last_error = Some(e);
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod serve_tests {
    use super::*;
    use crate::config::ActionTarget;
    use crate::time::{SystemClock, Time90k};

    fn dispatcher(actions: Vec<ActionConfig>, stats: &SharedActionStats) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            actions,
            mqtt: None,
            nvr_id: "nvr".into(),
            clock: Arc::new(SystemClock),
            stats: stats.clone(),
        })
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
        let (current, watched) = tokio::sync::watch::channel(dispatcher(vec![hook("old")], &stats));
        let task = tokio::spawn(Dispatcher::serve(rx, watched));
        // Two starts within min_interval: the second is rate limited.
        tx.send(start("door")).await.unwrap();
        tx.send(start("door")).await.unwrap();
        limited("old", 1).await;
        // The new dispatcher has its own counters and limiter: again one of two.
        current.send_replace(dispatcher(vec![hook("new")], &stats));
        limited("new", 0).await;
        tx.send(start("door")).await.unwrap();
        tx.send(start("door")).await.unwrap();
        limited("new", 1).await;
        drop(tx);
        task.await.unwrap();
    }
}
