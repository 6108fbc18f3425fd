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
    public_url: Option<Spanned<String>>,
}

/// How the API is served, beyond its address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// `None`: plain HTTP.
    pub tls: Option<TlsSource>,
    /// A plain-HTTP listener answering every request with 308 to the same
    /// path over HTTPS (only with `tls`).
    pub redirect_listen: Option<SocketAddr>,
    /// How people reach the web client from outside (links in alerts);
    /// `None`: derived from the listen address and this host's name.
    pub public_url: Option<url::Url>,
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
    if let Some(u) = &h.public_url {
        match url::Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                settings.public_url = Some(url)
            }
            _ => c.err(
                u.span().start,
                "http.public_url",
                "must be an http:// or https:// URL people can open (https://nvr.example.com)",
            ),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, ConfigErrors};
    use crate::web::tls::TlsSource;

    fn p(text: &str, base: &Path) -> Result<crate::config::Config, ConfigErrors> {
        parse(text, "site.toml", base)
    }

    fn errors(text: &str, base: &Path) -> String {
        p(text, base).unwrap_err().to_string()
    }

    #[test]
    fn tls_is_off_by_default_and_self_signed_on_request() {
        let d = tempfile::tempdir().unwrap();
        let c = p("[storage]\nmin_free = 0\n", d.path()).unwrap();
        assert!(!c.is_tls());
        assert_eq!(c.http.scheme(), "http");
        let c = p(
            "[storage]\nmin_free = 0\n[http]\nlisten = \"0.0.0.0:8443\"\ntls = \"self-signed\"\nredirect_listen = \"0.0.0.0:8080\"\n",
            d.path(),
        )
        .unwrap();
        assert!(c.is_tls());
        assert_eq!(c.http.tls, Some(TlsSource::SelfSigned));
        assert_eq!(c.http.redirect_listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(c.listen.port(), 8443);
    }

    #[test]
    fn certificate_files_resolve_against_the_config_directory_and_must_match() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = crate::web::tls::generate_self_signed(&["nvr".into()]).unwrap();
        let (_, other_key) = crate::web::tls::generate_self_signed(&["nvr".into()]).unwrap();
        std::fs::create_dir(d.path().join("pki")).unwrap();
        std::fs::write(d.path().join("pki/cert.pem"), cert).unwrap();
        std::fs::write(d.path().join("pki/key.pem"), key).unwrap();
        std::fs::write(d.path().join("pki/other.pem"), other_key).unwrap();
        let head = "[storage]\nmin_free = 0\n[http]\n";
        let c = p(
            &format!("{head}tls = {{ cert = \"pki/cert.pem\", key = \"pki/key.pem\" }}\n"),
            d.path(),
        )
        .unwrap();
        assert_eq!(
            c.http.tls,
            Some(TlsSource::Files {
                cert: d.path().join("pki/cert.pem"),
                key: d.path().join("pki/key.pem"),
            })
        );
        let e = errors(
            &format!("{head}tls = {{ cert = \"pki/cert.pem\", key = \"pki/other.pem\" }}\n"),
            d.path(),
        );
        assert!(
            e.starts_with("site.toml:4: http.tls.key: ") && e.contains("other.pem") && e.contains("does not match"),
            "{e}"
        );
        let e = errors(
            &format!("{head}tls = {{ cert = \"pki/missing.pem\", key = \"pki/key.pem\" }}\n"),
            d.path(),
        );
        assert!(
            e.contains("site.toml:4: http.tls.cert: ") && e.contains("missing.pem"),
            "{e}"
        );
        let e = errors(&format!("{head}tls = {{ cert = \"pki/cert.pem\" }}\n"), d.path());
        assert!(e.contains("http.tls.key: is required"), "{e}");
        let e = errors(
            &format!("{head}tls = {{ cert = \"pki/cert.pem\", key = \"pki/key.pem\", ca = \"x\" }}\n"),
            d.path(),
        );
        assert!(e.contains("http.tls.ca: unknown field"), "{e}");
    }

    #[test]
    fn bad_tls_and_redirect_settings_are_named() {
        let d = tempfile::tempdir().unwrap();
        let head = "[storage]\nmin_free = 0\n[http]\nlisten = \"127.0.0.1:8443\"\n";
        let e = errors(&format!("{head}tls = \"yes\"\n"), d.path());
        assert!(e.starts_with("site.toml:5: http.tls: must be \"self-signed\""), "{e}");
        let e = errors(&format!("{head}tls = true\n"), d.path());
        assert!(e.contains("http.tls: must be"), "{e}");
        let e = errors(&format!("{head}redirect_listen = \"127.0.0.1:8080\"\n"), d.path());
        assert!(
            e.contains("site.toml:5: http.redirect_listen: redirects to HTTPS, so it needs `tls`"),
            "{e}"
        );
        let e = errors(
            &format!("{head}tls = \"self-signed\"\nredirect_listen = \"127.0.0.1:8443\"\n"),
            d.path(),
        );
        assert!(
            e.contains("site.toml:6: http.redirect_listen: 127.0.0.1:8443 is `http.listen` itself"),
            "{e}"
        );
        let e = errors(
            &format!("{head}tls = \"self-signed\"\nredirect_listen = \"port 80\"\n"),
            d.path(),
        );
        assert!(e.contains("http.redirect_listen: `port 80` is not an address"), "{e}");
    }

    #[test]
    fn peer_trust_is_a_ca_or_a_fingerprint_and_tls_rules_need_one() {
        use crate::httpc::PeerTrust;
        let d = tempfile::tempdir().unwrap();
        let (ca, _) = crate::web::tls::generate_self_signed(&["peer".into()]).unwrap();
        std::fs::write(d.path().join("ca.pem"), ca).unwrap();
        let rule = |check_tls: &str, backup_tls: &str| {
            format!(
                r#"
[storage]
min_free = 0
[failover]
peer_token = "0123456789abcdef"
{{trust}}
[[rule]]
name = "peer"
check = {{ type = "http", address = "192.0.2.9", port = 8443, interval = 1, failure_count = 2, normal_count = 2{check_tls} }}
states = {{ normal = [], failure = [] }}
backup = {{ address = "192.0.2.9", port = 8443, cameras = []{backup_tls} }}
"#
            )
        };
        let fp = format!("sha256:{}", "ab".repeat(32));
        let c = p(
            &rule(", tls = true", ", tls = true").replace("{trust}", &format!("peer_fingerprint = \"{fp}\"")),
            d.path(),
        )
        .unwrap();
        assert_eq!(c.failover.peer_trust, Some(PeerTrust::Fingerprint([0xab; 32])));
        assert!(c.rules[0].rule.check.tls);
        assert!(c.rules[0].rule.backup.as_ref().unwrap().tls);
        let c = p(
            &rule("", ", tls = true").replace("{trust}", "peer_ca = \"ca.pem\""),
            d.path(),
        )
        .unwrap();
        assert!(
            matches!(&c.failover.peer_trust, Some(PeerTrust::Ca { path, roots }) if path.ends_with("ca.pem") && roots.len() == 1)
        );
        assert!(!c.rules[0].rule.check.tls);
        // No trust for a TLS rule; a bad trust; both at once.
        let e = errors(&rule(", tls = true", "").replace("{trust}", ""), d.path());
        assert!(e.contains("failover.peer_ca: rules with `tls = true` need"), "{e}");
        let e = errors(
            &rule("", "").replace("{trust}", "peer_fingerprint = \"sha256:12\""),
            d.path(),
        );
        assert!(e.contains("site.toml:6: failover.peer_fingerprint: must be"), "{e}");
        let e = errors(&rule("", "").replace("{trust}", "peer_ca = \"nope.pem\""), d.path());
        assert!(
            e.contains("site.toml:6: failover.peer_ca: ") && e.contains("nope.pem"),
            "{e}"
        );
        let e = errors(
            &rule("", "").replace("{trust}", &format!("peer_ca = \"ca.pem\"\npeer_fingerprint = \"{fp}\"")),
            d.path(),
        );
        assert!(e.contains("give peer_ca or peer_fingerprint, not both"), "{e}");
        // TLS on a check that does not speak HTTP.
        let e = errors(
            &rule(", tls = true", "")
                .replace("type = \"http\"", "type = \"tcp\"")
                .replace("{trust}", &format!("peer_fingerprint = \"{fp}\"")),
            d.path(),
        );
        assert!(e.contains("check.tls: only an `http` check speaks TLS"), "{e}");
        let e = errors(
            &rule(", tls = \"yes\"", "").replace("{trust}", &format!("peer_fingerprint = \"{fp}\"")),
            d.path(),
        );
        assert!(e.contains("check.tls: must be true or false"), "{e}");
    }
}
