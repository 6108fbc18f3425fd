//! Where the API is served: the listening socket, its TLS (the self-signed
//! certificate generated here on first start), and the optional plain-HTTP
//! listener that answers every request with 308 to the same path over HTTPS.
//! Set up before the NVR starts, so a bad certificate or a taken port stops
//! the start instead of leaving a recorder nobody can reach.
//!
//! Must never serve anything but redirects on the plain listener (no route
//! of the API is reachable without TLS when TLS is on), and never build a
//! redirect from a `Host` that is not a plain host name or address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::server::{self, HttpStats, Limits};
use super::tls::{ServerTls, TlsError};
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// The API's sockets and TLS, ready to serve.
pub struct Endpoint {
    pub listener: tokio::net::TcpListener,
    pub tls: Option<ServerTls>,
    pub redirect: Option<tokio::net::TcpListener>,
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, EndpointError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| EndpointError::Bind { addr, source })
}

impl Endpoint {
    /// Binds `config.listen` (and `http.redirect_listen`) and prepares TLS.
    pub async fn bind(config: &Config) -> Result<Endpoint, EndpointError> {
        let listener = bind(config.listen).await?;
        let tls = match &config.http.tls {
            Some(source) => {
                let (source, dir, listen) = (source.clone(), config.storage.dir.clone(), config.listen);
                // Key generation and file syncs stay off the runtime's threads.
                let r = tokio::task::spawn_blocking(move || super::tls::server_tls(&source, &dir, listen))
                    .await
                    .map_err(|e| TlsError::Generate(e.to_string()))?;
                Some(r?)
            }
            None => None,
        };
        let redirect = match config.http.redirect_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        Ok(Endpoint {
            listener,
            tls,
            redirect,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves `router` (and the redirects) until `shutdown` resolves.
    pub async fn serve(
        self,
        router: Router,
        limits: Limits,
        stats: Arc<HttpStats>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use futures::FutureExt;
        let shutdown = shutdown.boxed().shared();
        let https_port = self.listener.local_addr()?.port();
        let redirect = self.redirect.map(|l| {
            if let Ok(a) = l.local_addr() {
                tracing::info!("redirecting plain HTTP at http://{a}/ to HTTPS");
            }
            // Its own small budget: redirects are cheap and must not take
            // the API's connections.
            let lim = Limits {
                max_connections: 64,
                ..limits.clone()
            };
            tokio::spawn(server::serve(
                l,
                redirect_router(https_port),
                lim,
                Arc::new(HttpStats::default()),
                None,
                shutdown.clone(),
            ))
        });
        let tls = self.tls.map(|t| t.config);
        let r = server::serve(self.listener, router, limits, stats, tls, shutdown).await;
        if let Some(task) = redirect {
            let _ = task.await;
        }
        r
    }
}

/// Serves `router` on `endpoint` until `shutdown`, following the running
/// configuration: when an apply changes `listen` or `[http]`, the new
/// address is bound (and its certificate loaded) first, then the old
/// listener stops accepting and finishes the requests under way. Only when
/// the address stays the same (new TLS settings) is the old socket closed
/// before the new one is bound. A new endpoint that cannot be set up is
/// logged and the old one goes on serving. Recording is never touched.
pub async fn serve_following(
    endpoint: Endpoint,
    router: Router,
    limits: Limits,
    stats: Arc<HttpStats>,
    mut configs: tokio::sync::watch::Receiver<Arc<Config>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    let start = |e: Endpoint| -> std::io::Result<Serving> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = shutdown.clone();
        let until = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stopped => {}
            }
        };
        Ok(Serving {
            addr: e.local_addr()?,
            stop,
            task: tokio::spawn(e.serve(router.clone(), limits.clone(), stats.clone(), until)),
        })
    };
    let mut current = configs.borrow_and_update().clone();
    let mut serving = start(endpoint)?;
    loop {
        let next = tokio::select! {
            r = &mut serving.task => return r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            changed = configs.changed() => match changed {
                Ok(()) => configs.borrow_and_update().clone(),
                // The NVR is gone: serve until shutdown.
                Err(_) => return serving.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            },
        };
        if (next.listen, &next.http) == (current.listen, &current.http) {
            continue;
        }
        let from = serving.addr;
        let kept_redirect =
            next.http.redirect_listen.is_some() && next.http.redirect_listen == current.http.redirect_listen;
        if next.listen == from || kept_redirect {
            // The same socket address cannot be bound twice: close, then bind.
            let _ = serving.stop.send(());
            let old = std::mem::replace(&mut serving.task, tokio::spawn(async { Ok(()) }));
            tokio::spawn(old);
            let e = match bind_retrying(&next).await {
                Ok(e) => e,
                Err(err) => {
                    tracing::error!("cannot serve the new HTTP settings at {from}: {err}; back to the previous ones");
                    bind_retrying(&current).await.map_err(std::io::Error::other)?
                }
            };
            serving = start(e)?;
        } else {
            match Endpoint::bind(&next).await {
                Ok(e) => {
                    let old = std::mem::replace(&mut serving, start(e)?);
                    let _ = old.stop.send(());
                    // The old listener finishes the requests under way on its own.
                    tokio::spawn(old.task);
                }
                Err(err) => {
                    tracing::error!(
                        "cannot move the HTTP listener to {}: {err}; still serving at {from}",
                        next.listen
                    );
                    current = next;
                    continue;
                }
            }
        }
        tracing::info!(from = %from, to = %serving.addr, tls = next.http.is_tls(), "HTTP listener moved");
        current = next;
    }
}

/// One listener serving, and how to stop it.
struct Serving {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `config`'s endpoint, trying for 2 s while the old socket closes.
async fn bind_retrying(config: &Config) -> Result<Endpoint, EndpointError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Endpoint::bind(config).await {
            Err(EndpointError::Bind { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            r => return r,
        }
    }
}

/// A router that answers everything with 308 to HTTPS on `https_port`.
pub fn redirect_router(https_port: u16) -> Router {
    Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        match location(host, path, https_port) {
            Some(to) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)]).into_response(),
            None => bad_host(),
        }
    })
}

fn bad_host() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "this address only redirects to HTTPS; send a Host header\n",
    )
        .into_response()
}

/// Pure: the HTTPS URL for a request to `host` (its `Host` header, port
/// dropped) and `path`, or `None` when the host is missing or not a plain
/// name or address.
pub fn location(host: Option<&str>, path: &str, https_port: u16) -> Option<String> {
    let host = host?.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        format!("[{v6}]")
    } else {
        let (name, port) = host.split_once(':').unwrap_or((host, ""));
        if !(port.is_empty() || is_port(port)) {
            return None;
        }
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return None;
        }
        name.to_string()
    };
    let path = if path.starts_with('/') { path } else { "/" };
    Some(if https_port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{https_port}{path}")
    })
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn redirects_keep_host_and_path_and_take_the_https_port() {
        assert_eq!(
            location(Some("nvr.local:8080"), "/api/v1/events?channel=1", 8443).as_deref(),
            Some("https://nvr.local:8443/api/v1/events?channel=1")
        );
        assert_eq!(
            location(Some("192.0.2.4"), "/", 443).as_deref(),
            Some("https://192.0.2.4/")
        );
        assert_eq!(
            location(Some("[::1]:80"), "/x", 8443).as_deref(),
            Some("https://[::1]:8443/x")
        );
        assert_eq!(location(Some("nvr"), "", 8443).as_deref(), Some("https://nvr:8443/"));
        // No host, or one that could smuggle another URL: refused.
        for bad in [
            None,
            Some(""),
            Some("evil.example/x"),
            Some("a@evil.example"),
            Some("nvr:80x"),
            Some("[::1"),
            Some("[nope]"),
            Some("nvr\r\nX: y"),
        ] {
            assert_eq!(location(bad, "/", 8443), None, "{bad:?}");
        }
    }
}
