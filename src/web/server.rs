//! The HTTP server loop: accepts connections and serves the router on each,
//! within limits that no client can lift — a connection cap computed from
//! the process's descriptor limit (so recording always keeps the descriptors
//! it needs), a deadline for request headers that also ends idle keep-alive
//! connections, a deadline for bodies (idle and total), a deadline for a
//! client that stops reading a response, and a bound on header size.
//!
//! Connections over the cap wait in the kernel's accept queue, costing the
//! process nothing. Must never let a client hold a descriptor or a buffer
//! without sending or receiving within its deadline, and never spin on
//! accept errors (descriptor exhaustion is logged, rate limited, and waited out).
//!
//! With TLS (`tls` in `serve`) the handshake runs in the connection's task
//! under the header deadline, then HTTP/1.1 or HTTP/2 (ALPN `h2`) is served
//! with hyper-util's auto builder: HTTP/2 with at most `H2_MAX_STREAMS`
//! streams, the header bound as its header-list bound, keep-alive pings, and
//! the connection closed once it has had no request in flight for the header
//! deadline (HTTP/2's equivalent of the idle keep-alive bound). Every answer
//! over TLS carries `Strict-Transport-Security`; an HTTP/2 request without a
//! `Host` header gets one from its `:authority`, so Host checks work alike.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;
use tracing::{info, warn};

/// What the server allows each client.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// From the start of waiting for a request (a new connection, or an idle
    /// keep-alive one) to its last header byte.
    pub header_timeout: Duration,
    /// Longest pause while a request body is being received.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a whole request body.
    pub body_total_timeout: Duration,
    /// Longest time a response may wait for the client to take more bytes.
    pub write_timeout: Duration,
    /// Request line and headers, bytes.
    pub max_header_bytes: usize,
}

/// Descriptors kept out of the connection budget: the store (index, WAL,
/// open segments, the writer's reserve), the importer, logs, listeners.
const BASE_RESERVE_FDS: u64 = 128;
/// Per channel: segment file, camera sockets (RTSP, RTP/RTCP pairs for main and sub streams).
const PER_CHANNEL_FDS: u64 = 16;
/// Per request being handled beyond its socket: an index connection (3
/// descriptors with WAL) and a segment file.
const PER_REQUEST_FDS: u64 = 4;
/// Requests handled at once (see `web::concurrency`).
pub const MAX_IN_FLIGHT: usize = 64;

impl Limits {
    /// Limits for a process with `channels` channels, the connection cap
    /// under both `wanted` and what the descriptor limit leaves after the
    /// recording's share.
    pub fn for_process(channels: usize, wanted: usize) -> Limits {
        let nofile = nofile_limit();
        let cap = connection_cap(nofile, channels as u64, wanted as u64);
        Limits {
            max_connections: cap,
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            body_total_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// The connection cap for a descriptor limit of `nofile`: what is left after
/// the recording's reserve and the in-flight requests' files, at least 16.
pub fn connection_cap(nofile: u64, channels: u64, wanted: u64) -> usize {
    let reserved = BASE_RESERVE_FDS + PER_CHANNEL_FDS * channels + PER_REQUEST_FDS * MAX_IN_FLIGHT as u64;
    nofile.saturating_sub(reserved).clamp(16, wanted.max(16)) as usize
}

/// The soft descriptor limit, first raised to the hard limit (as most
/// servers do: the default soft limit of 1024 is a relic).
pub fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid out-pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max.min(1 << 20),
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = want.rlim_cur;
            }
        }
    }
    r.rlim_cur
}

/// Counters shown in `GET /api/v1/store`.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    /// Connections closed by a deadline (headers, body, a client not reading).
    pub timed_out: AtomicU64,
    pub accept_errors: AtomicU64,
    pub max_connections: AtomicUsize,
    /// TLS handshakes that failed or did not finish within the header deadline.
    pub tls_handshake_failures: AtomicU64,
}

impl HttpStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "open_connections": self.open.load(Ordering::Relaxed),
            "max_connections": self.max_connections.load(Ordering::Relaxed),
            "accepted": self.accepted.load(Ordering::Relaxed),
            "timed_out": self.timed_out.load(Ordering::Relaxed),
            "accept_errors": self.accept_errors.load(Ordering::Relaxed),
            "tls_handshake_failures": self.tls_handshake_failures.load(Ordering::Relaxed),
        })
    }
}

/// HTTP/2 streams one connection may have open at once.
pub const H2_MAX_STREAMS: u32 = 32;
/// HSTS sent on every answer over TLS: one year.
pub const HSTS: &str = "max-age=31536000";

/// Serves `router` on `listener` until `shutdown`; over TLS with `tls`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<HttpStats>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    stats.max_connections.store(limits.max_connections, Ordering::Relaxed);
    info!(
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        "HTTP limits"
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64)
        .keep_alive(true);
    let auto = tls_builder(&limits);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // Tells every connection to finish its request under way and close.
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning; the
                    // connection stays queued in the kernel.
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!("cannot accept HTTP connections: {e}");
                        last_accept_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        if let Some(acceptor) = &acceptor {
            let conn = TlsConn {
                acceptor: acceptor.clone(),
                builder: auto.clone(),
                router: router.clone(),
                limits: limits.clone(),
                stats: stats.clone(),
                closing: closing_rx.clone(),
                addr,
            };
            tokio::spawn(async move {
                let stats = conn.stats.clone();
                conn.run(stream).await;
                stats.open.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
            continue;
        }
        let router = router.clone();
        let lim = limits.clone();
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(|b| Body::new(TimedBody::new(b, lim.body_idle_timeout, lim.body_total_timeout)));
            req.extensions_mut().insert(ConnectInfo(addr));
            router.clone().oneshot(req)
        });
        let io = TokioIo::new(StallGuard::new(stream, limits.write_timeout));
        let conn = http.serve_connection(io, svc).with_upgrades();
        let stats = stats.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { let _ = closing.wait_for(|c| *c).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                if e.is_timeout() || is_stall(&e) {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    // Requests under way get a moment to finish; idle connections close now.
    let _ = closing.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(all))
        .await
        .is_err()
    {
        warn!("HTTP connections still open after 5 s of shutdown were dropped");
    }
    Ok(())
}

/// The HTTP/1.1-or-HTTP/2 builder for TLS connections, with the same bounds
/// as plain HTTP/1.1 plus HTTP/2's own.
fn tls_builder(limits: &Limits) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut b = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// One TLS connection: handshake, then HTTP/1.1 or HTTP/2 until the client
/// leaves, idles past the header deadline, or the server shuts down.
struct TlsConn {
    acceptor: tokio_rustls::TlsAcceptor,
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    router: Router,
    limits: Limits,
    stats: Arc<HttpStats>,
    closing: tokio::sync::watch::Receiver<bool>,
    addr: std::net::SocketAddr,
}

impl TlsConn {
    async fn run(mut self, stream: tokio::net::TcpStream) {
        let lim = self.limits.clone();
        let handshake = tokio::time::timeout(
            lim.header_timeout,
            self.acceptor.accept(StallGuard::new(stream, lim.write_timeout)),
        );
        let tls = tokio::select! {
            r = handshake => r,
            _ = closed(&mut self.closing) => return,
        };
        let tls = match tls {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %self.addr, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                self.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let (active, active_rx) = tokio::sync::watch::channel(Activity::default());
        let active = Arc::new(active);
        let (router, addr) = (self.router.clone(), self.addr);
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(|b| Body::new(TimedBody::new(b, lim.body_idle_timeout, lim.body_total_timeout)));
            req.extensions_mut().insert(ConnectInfo(addr));
            host_from_authority(&mut req);
            let guard = InFlight::new(active.clone());
            let answer = router.clone().oneshot(req);
            async move { Ok::<_, Infallible>(secure_response(answer.await?, guard)) }
        });
        let conn = self.builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
        let mut conn = std::pin::pin!(conn);
        let idle = idle_for(active_rx, self.limits.header_timeout);
        let r = tokio::select! {
            r = conn.as_mut() => r,
            _ = closed(&mut self.closing) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            _ = idle => {
                // Nothing in flight: a client that ignores the goodbye is dropped.
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(Duration::from_secs(2), conn).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        if let Err(e) = r {
            if is_deadline(e.as_ref()) {
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// HTTP/2 carries the host in `:authority`, not in a `Host` header; handlers
/// and the access layer's Origin/Host check read `Host`, so it is filled in
/// from the authority when absent (as HTTP/1.1 requires it to be sent).
fn host_from_authority<B>(req: &mut hyper::Request<B>) {
    if req.headers().contains_key(hyper::header::HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| hyper::header::HeaderValue::from_str(a.as_str()).ok());
    if let Some(h) = host {
        req.headers_mut().insert(hyper::header::HOST, h);
    }
}

/// Resolves when the server starts closing.
async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Resolves once no request has been in flight for `limit` (counted by
/// `InFlight` guards, which live until a response's last byte is sent).
async fn idle_for(mut active: tokio::sync::watch::Receiver<Activity>, limit: Duration) {
    loop {
        let started = match active.wait_for(|a| a.in_flight == 0).await {
            Ok(a) => a.started,
            Err(_) => return,
        };
        // `started` catches a request that began and ended between two looks.
        let busy = active.wait_for(|a| a.in_flight > 0 || a.started != started);
        match tokio::time::timeout(limit, busy).await {
            Err(_) => return,
            Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection's requests: in flight now, and started ever.
#[derive(Clone, Copy, Debug, Default)]
struct Activity {
    in_flight: usize,
    started: u64,
}

/// Counts one request in flight on a connection until dropped.
struct InFlight(Arc<tokio::sync::watch::Sender<Activity>>);

impl InFlight {
    fn new(active: Arc<tokio::sync::watch::Sender<Activity>>) -> InFlight {
        active.send_modify(|a| {
            a.in_flight += 1;
            a.started += 1;
        });
        InFlight(active)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| a.in_flight = a.in_flight.saturating_sub(1));
    }
}

/// An answer over TLS: HSTS added, and the connection's in-flight count held
/// until its body is sent.
fn secure_response(r: axum::response::Response, guard: InFlight) -> axum::response::Response {
    let (mut parts, body) = r.into_parts();
    parts.headers.insert(
        hyper::header::STRICT_TRANSPORT_SECURITY,
        hyper::header::HeaderValue::from_static(HSTS),
    );
    axum::response::Response::from_parts(
        parts,
        Body::new(Tracked {
            inner: body,
            _guard: guard,
        }),
    )
}

/// A response body carrying its request's `InFlight` guard.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a connection ended by one of our deadlines (hyper's header
/// timeout, or `StallGuard`'s TimedOut).
fn is_deadline(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_timeout()) {
            return true;
        }
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn is_stall(e: &hyper::Error) -> bool {
    use std::error::Error;
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        src = s.source();
    }
    false
}

/// A request body that fails once it pauses longer than `idle` or takes
/// longer than `total`: a client trickling a body cannot hold a handler.
pub struct TimedBody {
    inner: Incoming,
    idle: Duration,
    deadline: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(inner: Incoming, idle: Duration, total: Duration) -> TimedBody {
        let now = tokio::time::Instant::now();
        let deadline = now + total;
        TimedBody {
            inner,
            idle,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline.min(now + idle))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body was not received in time")]
    Timeout,
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let next = (tokio::time::Instant::now() + this.idle).min(this.deadline);
                this.timer.as_mut().reset(next);
                Poll::Ready(r.map(|f| f.map_err(BodyError::from)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Timeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail once the client has taken nothing for
/// `timeout`: a client that stops reading a clip frees its connection.
pub struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        StallGuard {
            inner,
            timeout,
            stalled: None,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let timeout = self.timeout;
        let t = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match t.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.check(cx).map(|r| r.map(|_| 0)),
            r => {
                self.stalled = None;
                r
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.check(cx).map(|r| r.map(|_| 0)),
            r => {
                self.stalled = None;
                r
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check(cx),
            r => {
                self.stalled = None;
                r
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_over_tls_carry_hsts_and_hold_the_connection_busy_until_sent() {
        let (tx, rx) = tokio::sync::watch::channel(Activity::default());
        let tx = Arc::new(tx);
        let r = axum::response::Response::new(Body::from("hello"));
        let r = secure_response(r, InFlight::new(tx.clone()));
        assert_eq!(r.headers()[hyper::header::STRICT_TRANSPORT_SECURITY], HSTS);
        assert_eq!(rx.borrow().in_flight, 1, "in flight while the body is unsent");
        drop(r);
        assert_eq!(rx.borrow().in_flight, 0);
    }

    #[test]
    fn http2_requests_get_a_host_header_from_their_authority() {
        let mut r = hyper::Request::builder()
            .version(hyper::Version::HTTP_2)
            .uri("https://nvr.local:8443/api/v1/login")
            .body(())
            .unwrap();
        host_from_authority(&mut r);
        assert_eq!(r.headers()[hyper::header::HOST], "nvr.local:8443");
        // A Host that was sent is kept; a request without authority gets none.
        let mut r = hyper::Request::builder()
            .uri("https://a.example/")
            .header(hyper::header::HOST, "b.example")
            .body(())
            .unwrap();
        host_from_authority(&mut r);
        assert_eq!(r.headers()[hyper::header::HOST], "b.example");
        let mut r = hyper::Request::builder().uri("/x").body(()).unwrap();
        host_from_authority(&mut r);
        assert!(!r.headers().contains_key(hyper::header::HOST));
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_after_the_limit_with_nothing_in_flight() {
        let (tx, rx) = tokio::sync::watch::channel(Activity::default());
        let tx = Arc::new(tx);
        let ms = Duration::from_millis;
        let busy = InFlight::new(tx.clone());
        let idle = tokio::spawn(idle_for(rx, ms(1000)));
        tokio::time::sleep(ms(1500)).await;
        assert!(!idle.is_finished(), "a long request is not idleness");
        drop(busy);
        tokio::time::sleep(ms(500)).await;
        drop(InFlight::new(tx.clone()));
        tokio::time::sleep(ms(600)).await;
        assert!(!idle.is_finished(), "a request restarts the idle clock");
        tokio::time::sleep(ms(1500)).await;
        assert!(idle.is_finished());
    }

    #[tokio::test]
    async fn failed_and_silent_tls_handshakes_are_counted_and_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let d = tempfile::tempdir().unwrap();
        let tls = crate::web::tls::server_tls(
            &crate::web::tls::TlsSource::SelfSigned,
            d.path(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let stats = Arc::new(HttpStats::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let server = tokio::spawn(serve(
            listener,
            router,
            limits,
            stats.clone(),
            Some(tls.config),
            async {
                let _ = stopped.await;
            },
        ));
        // Plain HTTP to the TLS port: the handshake fails and the connection closes.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut sink)).await;
        assert!(r.is_ok(), "closed");
        assert!(!String::from_utf8_lossy(&sink).contains("hi"));
        // A client that connects and says nothing loses its slot at the header deadline.
        let started = Instant::now();
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut [0u8; 16])).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "closed by the server: {r:?}");
        assert!(started.elapsed() >= Duration::from_millis(250));
        // The tasks count after closing; give them a moment.
        for _ in 0..100 {
            if stats.open.load(Ordering::Relaxed) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.tls_handshake_failures.load(Ordering::Relaxed), 2);
        assert_eq!(stats.timed_out.load(Ordering::Relaxed), 1);
        assert_eq!(stats.open.load(Ordering::Relaxed), 0, "both slots returned");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[test]
    fn the_connection_cap_leaves_the_recording_its_descriptors() {
        // The review's 1,024-descriptor process with two channels.
        let cap = connection_cap(1024, 2, 4096);
        assert_eq!(cap, 1024 - 128 - 32 - 256);
        assert!(cap + 128 + 32 + 4 * MAX_IN_FLIGHT <= 1024);
        // A generous limit: the configured cap rules.
        assert_eq!(connection_cap(1 << 20, 64, 1024), 1024);
        // A tiny limit still serves a few clients.
        assert_eq!(connection_cap(256, 64, 1024), 16);
    }
}
