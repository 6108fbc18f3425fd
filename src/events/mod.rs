//! Events: what happened on a channel (motion, a door contact, a camera going
//! offline, a failover), where they come from and where they are sent.
//!
//! Every event passes through the store writer, which stores it (start, end,
//! details), feeds recording triggers to the channel's event gate and then
//! hands a `Notice` to the action dispatcher. Sources live in `motion`,
//! `web` (HTTP trigger), `mqtt` (subscription trigger), `ingest` and
//! `failover`; actions (MQTT publish, webhook, e-mail, SMS) in `actions`,
//! their durable outbox's policy in `outbox` and its workers in `delivery`.
//! Nothing here may block recording: notices are offered with `try_send`.

pub mod actions;
pub mod delivery;
pub mod mqtt;
pub mod outbox;
pub mod rate;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::time::Time90k;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Something began that will end (motion, an open door).
    Start,
    /// The matching end.
    End,
    /// A moment (camera online, rule state changed).
    Instant,
}

/// An event as it is announced to actions, after it has been stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Notice {
    /// The stored event's id (`GET /api/v1/events`).
    pub id: i64,
    pub channel: Option<u32>,
    #[serde(rename = "type")]
    pub kind: String,
    pub phase: Phase,
    pub start: Time90k,
    pub end: Option<Time90k>,
    pub details: serde_json::Value,
}

/// Where the writer sends notices; bounded, offered without waiting.
pub type Notifier = tokio::sync::mpsc::Sender<Notice>;

/// One edge of an event with duration, from any source.
#[derive(Clone, Debug)]
pub struct Edge {
    pub channel: u32,
    pub kind: String,
    /// Identifies the event among others of the channel, so that the end
    /// finds its start ("motion", "http:door-3", "mqtt:site/door1").
    pub key: String,
    pub start: bool,
    pub time: Time90k,
    pub details: serde_json::Value,
    /// Whether the event triggers recording (the channel's event gate).
    pub trigger: bool,
}

static PULSE: AtomicU64 = AtomicU64::new(0);
/// Pulses whose end is still to be sent.
static PENDING_PULSES: AtomicUsize = AtomicUsize::new(0);
/// Pulses pending at once, all sources together: each holds a timer task,
/// and no source may make the NVR hold more.
pub const MAX_PENDING_PULSES: usize = 4096;

/// A sensor that only says "now" (an HTTP or MQTT pulse): sends `start` (an
/// event starting now) and, after `d`, its end, which is dated `start.time +
/// d`. Each pulse gets its own key, so overlapping pulses stay separate events
/// and the gate merges their windows. Needs a tokio runtime for the timer.
/// Refused (nothing sent) when `MAX_PENDING_PULSES` are pending.
pub fn pulse<E: std::fmt::Display>(
    mut start: Edge,
    d: Duration,
    send: impl Fn(Edge) -> Result<(), E> + Send + 'static,
) -> Result<(), String> {
    if PENDING_PULSES.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_PULSES {
        PENDING_PULSES.fetch_sub(1, Ordering::AcqRel);
        return Err(format!("{MAX_PENDING_PULSES} pulses are pending already"));
    }
    start.key = format!("{}#{}", start.key, PULSE.fetch_add(1, Ordering::Relaxed));
    start.start = true;
    let stop = Edge {
        start: false,
        time: start.time + crate::time::ticks_of(d),
        ..start.clone()
    };
    if let Err(e) = send(start) {
        PENDING_PULSES.fetch_sub(1, Ordering::AcqRel);
        return Err(e.to_string());
    }
    tokio::spawn(async move {
        tokio::time::sleep(d).await;
        let _ = send(stop);
        PENDING_PULSES.fetch_sub(1, Ordering::AcqRel);
    });
    Ok(())
}
