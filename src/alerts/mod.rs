//! Alerts: how the news of an event reaches a person — the message composed
//! from an action's templates, and the transports that carry it (SMS through
//! Kannel, a Twilio-style API or a GSM modem; e-mail over SMTP with TLS;
//! webhooks over HTTP(S)). `events::actions` decides *which* events go to
//! which action and keeps them in the durable outbox; this module only turns
//! one queued message into one delivery attempt.
//!
//! Must never block recording: every transport is async or runs on the
//! blocking pool with a timeout, and an attempt's outcome is a value
//! (`Delivery`), never a panic.

pub mod compose;
pub mod http;
pub mod link;
pub mod mail;
pub mod sms;
pub mod template;
pub mod testpeers;
pub mod trust;
pub mod webhook;

/// One message as the outbox stores it and a transport sends it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// Stable across retries and restarts (`tandem-{nvr}-{outbox id}`): a
    /// transport that can de-duplicate (Message-ID, MQTT payload id, webhook
    /// `Idempotency-Key`) uses it so that "at least once" becomes "once".
    pub id: String,
    /// The e-mail subject; the first line where a transport has no subject.
    pub subject: String,
    /// The e-mail body; the SMS text (before segmentation).
    pub body: String,
    /// The JSON a webhook posts and MQTT publishes (the event notice plus
    /// `nvr`, `link`, `snapshot_link`).
    pub json: serde_json::Value,
    /// The stored event it announces, if any (a test message has none).
    pub event_id: Option<i64>,
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Worth another try later (timeout, connection refused, HTTP 5xx, 429,
    /// SMTP 4xx, modem busy).
    Retry(String),
    /// Will never work as configured (HTTP 4xx other than 429, SMTP 5xx,
    /// an untrusted certificate, a wrong PIN): given up at once.
    Fail(String),
}

/// One attempt to deliver `msg` through `target` (MQTT is published by the
/// dispatcher's broker connection and is not handled here).
pub async fn send(target: &crate::config::ActionTarget, msg: &Message, snapshot: Option<&[u8]>) -> Delivery {
    use crate::config::ActionTarget;
    match target {
        ActionTarget::Mqtt => Delivery::Fail("MQTT is published by the broker connection".into()),
        ActionTarget::Webhook { url, ca_file } => webhook::send(url, ca_file.as_deref(), msg).await,
        ActionTarget::Email(e) => mail::send(e, msg, snapshot).await,
        ActionTarget::Sms(s) => sms::send(s, msg).await,
    }
}
