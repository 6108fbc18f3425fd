//! Webhooks: the message's JSON POSTed to a URL over HTTP or HTTPS (rustls,
//! the action's `ca_file` or the system roots, see `trust`), with
//! `Idempotency-Key: {message id}` so that a receiver can drop a retried
//! duplicate.
//!
//! The request and its bounds are `alerts::http`'s. A 5xx or 429 is worth a retry, another 4xx is
//! not, and neither is a certificate the trust refuses.

use std::path::Path;

use super::http::{classify_http, request};
use super::{Delivery, Message};

pub async fn send(url: &url::Url, ca_file: Option<&Path>, msg: &Message) -> Delivery {
    let what = format!("webhook {}", redacted(url));
    let headers = vec![
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", "Tandem NVR".to_string()),
        ("Idempotency-Key", msg.id.clone()),
    ];
    let body = msg.json.to_string().into_bytes();
    match request(&what, "POST", url.to_string(), headers, body, ca_file).await {
        Ok(r) => classify_http(r.status, &what),
        Err(d) => d,
    }
}

/// The URL without credentials or query (a token in either must not reach
/// the log or the API's `last_error`).
fn redacted(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_queries_stay_out_of_errors() {
        let u = url::Url::parse("https://user:secret@hooks.example/x?token=abc").unwrap();
        assert_eq!(redacted(&u), "https://hooks.example/x");
    }

    #[tokio::test]
    async fn a_receiver_that_is_down_is_retried() {
        let msg = Message {
            id: "m1".into(),
            subject: String::new(),
            body: String::new(),
            json: serde_json::json!({}),
            event_id: None,
        };
        let u = url::Url::parse("http://127.0.0.1:1/hook").unwrap();
        assert!(matches!(send(&u, None, &msg).await, Delivery::Retry(_)));
        // A trust that cannot be read is final, and named.
        let u = url::Url::parse("https://127.0.0.1:1/hook").unwrap();
        match send(&u, Some(Path::new("/nonexistent/hook-ca.pem")), &msg).await {
            Delivery::Fail(e) => assert!(e.contains("/nonexistent/hook-ca.pem"), "{e}"),
            d => panic!("{d:?}"),
        }
    }
}
