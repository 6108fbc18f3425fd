//! A minimal blocking HTTP/1.1 client (one request per connection): the
//! NVR's peer calls (failover `http` probes, failback transfers), webhook
//! actions, and the command-line tools and tests that poll a running Tandem.
//! `https://` URLs go over rustls with a `PeerTls` (a configured CA or a
//! pinned fingerprint, see `tls`).
//!
//! Must never send a request for an `https://` URL in plain text or without
//! checking the certificate, never buffer more than `MAX_RESPONSE` bytes of
//! an answer, and never accept an answer cut short of its Content-Length.

pub mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use tls::{PeerTls, PeerTrust};

/// The largest answer read (a clip a test downloads fits; a peer cannot
/// make the NVR buffer more).
pub const MAX_RESPONSE: u64 = 256 << 20;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> std::io::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(std::io::Error::other)
    }
}

pub fn get(url: &str) -> std::io::Result<Response> {
    request("GET", url, &[], b"")
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Response> {
    request_with_timeout(method, url, headers, body, Duration::from_secs(60))
}

/// Like `request`, giving up on connecting or reading after `timeout`.
/// Plain `http://` only: `https://` needs `request_via` with a trust.
pub fn request_with_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    request_via(method, url, headers, body, timeout, None)
}

/// Like `request_with_timeout`, over TLS with `tls` for `https://` URLs.
pub fn request_via(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    tls: Option<&PeerTls>,
) -> std::io::Result<Response> {
    request_bounded(method, url, headers, body, timeout, tls, MAX_RESPONSE)
}

/// Like `request_via`, reading at most `max` bytes of the answer (a webhook
/// receiver has nothing large to say).
pub fn request_bounded(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    tls: Option<&PeerTls>,
    max: u64,
) -> std::io::Result<Response> {
    let (secure, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(std::io::Error::other(format!(
            "`{url}` is not an http:// or https:// URL"
        )));
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let tls = match (secure, tls) {
        (true, Some(t)) => Some((t, server_name(host)?)),
        (true, None) => {
            return Err(std::io::Error::other(format!(
                "{url}: https needs failover.peer_ca or failover.peer_fingerprint to check the peer's certificate"
            )))
        }
        (false, _) => None,
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let raw = match tls {
        None => exchange(&mut s, req.as_bytes(), body, max)?,
        Some((t, name)) => {
            let conn = rustls::ClientConnection::new(t.config.clone(), name).map_err(std::io::Error::other)?;
            let mut stream = rustls::StreamOwned::new(conn, s);
            // The handshake first, so that a refused certificate is named as such.
            while stream.conn.is_handshaking() {
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .map_err(|e| refused(e, &t.what))?;
            }
            exchange(&mut stream, req.as_bytes(), body, max)?
        }
    };
    parse_response(&raw)
}

/// The TLS name to check: a DNS name or an IP address (`[::1]:8443` → `::1`).
fn server_name(host: &str) -> std::io::Result<rustls::pki_types::ServerName<'static>> {
    let h = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(h.to_string())
        .map_err(|e| std::io::Error::other(format!("`{h}` is not a name a certificate can carry: {e}")))
}

/// Names a handshake failure caused by the peer's certificate as a refusal.
fn refused(e: std::io::Error, what: &str) -> std::io::Error {
    let cert = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    if cert {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("refused the peer's certificate: it does not match {what}: {e}"),
        )
    } else {
        std::io::Error::new(e.kind(), format!("TLS handshake with the peer failed: {e}"))
    }
}

/// Sends the request and reads the answer to its end, at most `max` bytes.
fn exchange(s: &mut (impl Read + Write), head: &[u8], body: &[u8], max: u64) -> std::io::Result<Vec<u8>> {
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    match s.take(max + 1).read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the Content-Length
        // check in `parse_response` catches an answer cut short.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    if raw.len() as u64 > max {
        return Err(std::io::Error::other(format!("the answer is larger than {max} bytes")));
    }
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let r = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if r.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body);
    } else if let Some(n) = r.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the answer was cut short: {} of {n} bytes", body.len()),
            ));
        }
        body.truncate(n);
    }
    Ok(Response { body, ..r })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(e) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..e]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < e + 2 + n {
            break;
        }
        out.extend_from_slice(&b[e + 2..e + 2 + n]);
        b = &b[(e + 4 + n).min(b.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks() {
        assert_eq!(super::dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(super::dechunk(b"9\r\nab"), b"");
    }
}
