//! Webhooks: the message's JSON POSTed to a URL over HTTP or HTTPS.
//!
//! Must never follow a redirect to another host or wait longer than its
//! timeout; a 5xx or 429 is worth a retry, another 4xx is not.

use std::path::Path;
use std::time::Duration;

use super::{Delivery, Message};

pub async fn send(url: &url::Url, _ca_file: Option<&Path>, msg: &Message) -> Delivery {
    let body = msg.json.to_string();
    let url = url.to_string();
    let id = msg.id.clone();
    let r = tokio::task::spawn_blocking(move || {
        crate::httpc::request_with_timeout(
            "POST",
            &url,
            &[
                ("Content-Type", "application/json"),
                ("User-Agent", "Tandem NVR"),
                ("Idempotency-Key", &id),
            ],
            body.as_bytes(),
            Duration::from_secs(10),
        )
    })
    .await;
    match r {
        Ok(Ok(r)) => classify_http(r.status, "webhook"),
        Ok(Err(e)) => Delivery::Retry(e.to_string()),
        Err(e) => Delivery::Retry(e.to_string()),
    }
}

/// An HTTP status as a delivery outcome: 2xx delivered, 5xx/429/408 retried,
/// other 4xx failed (the request will not get better by repeating it).
pub fn classify_http(status: u16, what: &str) -> Delivery {
    match status {
        200..=299 => Delivery::Delivered,
        408 | 429 | 500..=599 => Delivery::Retry(format!("{what} answered HTTP {status}")),
        _ => Delivery::Fail(format!("{what} answered HTTP {status}")),
    }
}
