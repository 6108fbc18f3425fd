//! Webhooks: the message's JSON POSTed to a URL over HTTP or HTTPS (rustls,
//! the action's `ca_file` or the system roots, see `trust`), with
//! `Idempotency-Key: {message id}` so that a receiver can drop a retried
//! duplicate.
//!
//! Must never follow a redirect, wait longer than `TIMEOUT`, read more than
//! `MAX_ANSWER` bytes of the answer, or send to an `https://` URL without
//! checking the certificate; a 5xx or 429 is worth a retry, another 4xx is
//! not, and neither is a certificate the trust refuses.

use std::path::Path;
use std::time::Duration;

use super::{trust, Delivery, Message};

pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A receiver answers "ok" or a small JSON; nothing it says is kept.
pub const MAX_ANSWER: u64 = 64 << 10;

pub async fn send(url: &url::Url, ca_file: Option<&Path>, msg: &Message) -> Delivery {
    let secure = url.scheme() == "https";
    let ca = ca_file.map(Path::to_path_buf);
    let body = msg.json.to_string();
    let target = url.to_string();
    let id = msg.id.clone();
    // The trust is read (files) and the request made on the blocking pool.
    let r = tokio::task::spawn_blocking(move || {
        let tls = if secure {
            let c = trust::client_config(ca.as_deref(), None).map_err(Failed::Trust)?;
            Some(crate::httpc::PeerTls::from_config(&c, trust::describe(ca.as_deref())))
        } else {
            None
        };
        crate::httpc::request_bounded(
            "POST",
            &target,
            &[
                ("Content-Type", "application/json"),
                ("User-Agent", "Tandem NVR"),
                ("Idempotency-Key", &id),
            ],
            body.as_bytes(),
            TIMEOUT,
            tls.as_ref(),
            MAX_ANSWER,
        )
        .map_err(Failed::Io)
    })
    .await;
    let what = format!("webhook {}", redacted(url));
    match r {
        Ok(Ok(r)) => classify_http(r.status, &what),
        Ok(Err(Failed::Trust(e))) => Delivery::Fail(format!("{what}: {e}")),
        Ok(Err(Failed::Io(e))) => classify_io(&e, &what, ca_file),
        Err(e) => Delivery::Retry(format!("{what}: {e}")),
    }
}

/// Why no answer came: the trust could not be built (final), or the request failed.
enum Failed {
    Trust(String),
    Io(std::io::Error),
}

/// A failed request: a refused certificate is final, anything on the way
/// (refused connection, timeout, reset) is worth another try.
fn classify_io(e: &std::io::Error, what: &str, ca_file: Option<&Path>) -> Delivery {
    // `httpc` marks a refused certificate as PermissionDenied.
    if e.kind() == std::io::ErrorKind::PermissionDenied || trust::is_certificate_error(&e.to_string()) {
        return Delivery::Fail(format!("{what}: {}", trust::not_trusted(ca_file, &e.to_string())));
    }
    Delivery::Retry(format!("{what}: {e}"))
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

/// An HTTP status as a delivery outcome: 2xx delivered, 5xx/429/408 retried,
/// other 4xx failed (the request will not get better by repeating it).
pub fn classify_http(status: u16, what: &str) -> Delivery {
    match status {
        200..=299 => Delivery::Delivered,
        408 | 429 | 500..=599 => Delivery::Retry(format!("{what} answered HTTP {status}")),
        _ => Delivery::Fail(format!("{what} answered HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_io_errors_are_classified() {
        assert_eq!(classify_http(204, "w"), Delivery::Delivered);
        assert!(matches!(classify_http(503, "w"), Delivery::Retry(_)));
        assert!(matches!(classify_http(429, "w"), Delivery::Retry(_)));
        assert!(matches!(classify_http(404, "w"), Delivery::Fail(_)));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert!(matches!(classify_io(&refused, "w", None), Delivery::Retry(_)));
        let cert = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "invalid peer certificate: UnknownIssuer",
        );
        match classify_io(&cert, "w", Some(Path::new("/x/ca.pem"))) {
            Delivery::Fail(e) => assert!(e.contains("certificate not trusted (ca_file /x/ca.pem)"), "{e}"),
            d => panic!("{d:?}"),
        }
    }

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
