//! The `[http]` table: the listen address, TLS (`tls = "self-signed"` or
//! `tls = { cert = "…", key = "…" }`, paths relative to the configuration
//! file) and the optional plain-HTTP listener that only redirects to HTTPS.
//!
//! An operator's certificate and key are loaded and matched here, so
//! `tandem check` finds a wrong path or a key of another certificate before
//! a start does. Must never generate a certificate or open a socket: the
//! self-signed certificate is made by `web::tls` when the server starts.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use crate::web::tls::{TlsError, TlsSource};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<String>>,
    tls: Option<Spanned<toml::Value>>,
    redirect_listen: Option<Spanned<String>>,
}

/// How the API is served, beyond its address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// `None`: plain HTTP.
    pub tls: Option<TlsSource>,
    /// A plain-HTTP listener answering every request with 308 to the same
    /// path over HTTPS (only with `tls`).
    pub redirect_listen: Option<SocketAddr>,
}

impl HttpSettings {
    /// Whether the API is served over TLS (session cookies are `Secure` then).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `https` or `http`, for URLs shown to the operator.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }
}

fn address(c: &mut Checker<'_>, v: &Spanned<String>, field: &str) -> Option<SocketAddr> {
    match v.get_ref().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.err(
                v.span().start,
                field,
                format!("`{}` is not an address like 127.0.0.1:8080", v.get_ref()),
            );
            None
        }
    }
}

/// Checks `[http]`: the listen address (or `default`) and the settings.
pub(super) fn http(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawHttp>>,
    base: &Path,
    default: SocketAddr,
) -> (SocketAddr, HttpSettings) {
    let mut settings = HttpSettings::default();
    let Some(h) = raw.map(Spanned::get_ref) else {
        return (default, settings);
    };
    let listen = h
        .listen
        .as_ref()
        .and_then(|l| address(c, l, "http.listen"))
        .unwrap_or(default);
    if let Some(t) = &h.tls {
        settings.tls = tls(c, t, base);
    }
    if let Some(r) = &h.redirect_listen {
        let at = r.span().start;
        match address(c, r, "http.redirect_listen") {
            Some(_) if h.tls.is_none() => c.err(at, "http.redirect_listen", "redirects to HTTPS, so it needs `tls`"),
            Some(a) if a == listen && a.port() != 0 => c.err(
                at,
                "http.redirect_listen",
                format!("{a} is `http.listen` itself; give the redirect its own port (80, for example)"),
            ),
            Some(a) => settings.redirect_listen = Some(a),
            None => {}
        }
    }
    (listen, settings)
}

const TLS_FORMS: &str = "must be \"self-signed\" or { cert = \"cert.pem\", key = \"key.pem\" }";

fn tls(c: &mut Checker<'_>, t: &Spanned<toml::Value>, base: &Path) -> Option<TlsSource> {
    let at = t.span().start;
    match t.get_ref() {
        toml::Value::String(s) if s == "self-signed" => Some(TlsSource::SelfSigned),
        toml::Value::Table(tab) => {
            for k in tab.keys().filter(|k| !matches!(k.as_str(), "cert" | "key")) {
                c.err(at, format!("http.tls.{k}"), "unknown field; expected `cert` and `key`");
            }
            let mut path = |name: &str| match tab.get(name) {
                Some(toml::Value::String(p)) if !p.trim().is_empty() => Some(base.join(p)),
                Some(_) => {
                    c.err(at, format!("http.tls.{name}"), "must be the path of a PEM file");
                    None
                }
                None => {
                    c.err(at, format!("http.tls.{name}"), "is required");
                    None
                }
            };
            let (cert, key) = (path("cert")?, path("key")?);
            if let Err(e) = crate::web::tls::load_pair(&cert, &key) {
                let field = match &e {
                    TlsError::Read { path, .. } if *path == key => "http.tls.key",
                    TlsError::NoKey { .. } | TlsError::BadKey { .. } | TlsError::Mismatch { .. } => "http.tls.key",
                    TlsError::BadPem { path, .. } if *path == key => "http.tls.key",
                    _ => "http.tls.cert",
                };
                c.err(at, field, e.to_string());
                return None;
            }
            Some(TlsSource::Files { cert, key })
        }
        other => {
            c.err(at, "http.tls", format!("{TLS_FORMS}, not {other}"));
            None
        }
    }
}
