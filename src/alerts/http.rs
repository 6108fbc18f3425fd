//! One HTTP(S) request for a transport (a webhook, an SMS gateway): made on
//! the blocking pool with `httpc`, over rustls checked against `ca_file` or
//! the system roots for an `https://` URL, and its failure judged the same
//! way for every transport.
//!
//! Must never follow a redirect, wait longer than `TIMEOUT`, read more than
//! `MAX_ANSWER` bytes of the answer, or send to an `https://` URL without
//! checking the certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{trust, Delivery};

/// How long one request may take (connect, send, answer).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A receiver answers "ok", "Sent." or a small JSON; nothing it says is kept.
pub const MAX_ANSWER: u64 = 64 << 10;

/// Why no answer came: the trust could not be built (final), or the request failed.
enum Failed {
    Trust(String),
    Io(std::io::Error),
}

/// Sends one request; `what` names the receiver in errors (never with a
/// credential). `Err` is the attempt's outcome: a receiver that cannot be
/// reached is retried, a trust that cannot be read or a refused certificate
/// failed. An answer, whatever its status, is `Ok`: the caller judges it.
pub async fn request(
    what: &str,
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    ca_file: Option<&Path>,
) -> Result<crate::httpc::Response, Delivery> {
    let secure = url.starts_with("https://");
    let ca: Option<PathBuf> = ca_file.map(Path::to_path_buf);
    // The trust is read (files) and the request made on the blocking pool.
    let r = tokio::task::spawn_blocking(move || {
        let tls = if secure {
            let c = trust::client_config(ca.as_deref(), None).map_err(Failed::Trust)?;
            Some(crate::httpc::PeerTls::from_config(&c, trust::describe(ca.as_deref())))
        } else {
            None
        };
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::httpc::request_bounded(method, &url, &h, &body, TIMEOUT, tls.as_ref(), MAX_ANSWER).map_err(Failed::Io)
    })
    .await;
    match r {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(Failed::Trust(e))) => Err(Delivery::Fail(format!("{what}: {e}"))),
        Ok(Err(Failed::Io(e))) => Err(classify_io(&e, what, ca_file)),
        Err(e) => Err(Delivery::Retry(format!("{what}: {e}"))),
    }
}

/// A failed request: a refused certificate is final, anything on the way
/// (refused connection, timeout, reset) is worth another try.
pub fn classify_io(e: &std::io::Error, what: &str, ca_file: Option<&Path>) -> Delivery {
    // `httpc` marks a refused certificate as PermissionDenied.
    if e.kind() == std::io::ErrorKind::PermissionDenied || trust::is_certificate_error(&e.to_string()) {
        return Delivery::Fail(format!("{what}: {}", trust::not_trusted(ca_file, &e.to_string())));
    }
    Delivery::Retry(format!("{what} unreachable: {e}"))
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

    #[tokio::test]
    async fn an_unreachable_receiver_is_retried() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = request(
            "gateway",
            "GET",
            format!("http://127.0.0.1:{port}/"),
            vec![],
            vec![],
            None,
        )
        .await;
        assert!(
            matches!(&r, Err(Delivery::Retry(e)) if e.starts_with("gateway unreachable")),
            "{r:?}"
        );
    }
}
