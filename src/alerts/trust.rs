//! Whom the alert transports trust: the certificates of an action's
//! `ca_file`, or else the system's roots (`/etc/ssl/certs` through
//! `rustls-native-certs`), and optionally a client certificate for mutual
//! TLS (MQTT). One rustls client configuration, `ring` provider, shared by
//! mail, webhooks and MQTT.
//!
//! Must never hand out a configuration that accepts a certificate without
//! checking its chain and name: there is no "insecure" switch, and a
//! `ca_file` that holds no certificate is an error, not "trust nothing" or
//! "trust anything".

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;

/// The trust anchors: every certificate of `ca_file`, or the system roots.
/// Errors name the file.
pub fn roots(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    match ca_file {
        Some(p) => crate::web::tls::load_certs(p).map_err(|e| format!("ca_file {}: {e}", p.display())),
        None => {
            let sys = system_roots();
            if sys.is_empty() {
                return Err("no system CA certificates found (is ca-certificates installed?); set ca_file".into());
            }
            Ok(sys.to_vec())
        }
    }
}

/// The system store, read once: it changes with a package upgrade, not
/// between two alerts, and parsing ~150 roots per message is waste.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let r = rustls_native_certs::load_native_certs();
        for e in &r.errors {
            tracing::warn!("reading the system CA certificates: {e}");
        }
        r.certs
    })
}

/// A client configuration trusting `ca_file` (or the system roots) and, for
/// mutual TLS, presenting `client_auth` = (certificate chain PEM, key PEM).
pub fn client_config(
    ca_file: Option<&Path>,
    client_auth: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots(ca_file)?);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", describe(ca_file)));
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::web::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store);
    let config = match client_auth {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain =
                crate::web::tls::load_certs(cert).map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
            let key_der = crate::web::tls::load_key(key).map_err(|e| format!("client_key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!(
                    "client_cert {} and client_key {} do not make a pair: {e}",
                    cert.display(),
                    key.display()
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// The trust in words, for errors: "ca_file /x/ca.pem" or "the system roots".
pub fn describe(ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(p) => format!("ca_file {}", p.display()),
        None => "the system roots".into(),
    }
}

/// Whether an error text (rustls's, or a library's wrapping it) is a refused
/// server certificate rather than a network failure. Libraries such as
/// lettre and rumqttc flatten rustls's typed error into text, so this is
/// the one place that reads it.
pub fn is_certificate_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "invalid peer certificate",
        "unknownissuer",
        "unknown issuer",
        "notvalidforname",
        "not valid for name",
        "certificate expired",
        "badsignature",
        "no certificates presented",
        "certificate unknown",
        "bad certificate",
    ]
    .iter()
    .any(|k| t.contains(k))
}

/// A refused certificate in an operator's words, naming the trust it failed.
pub fn not_trusted(ca_file: Option<&Path>, detail: &str) -> String {
    format!("certificate not trusted ({}): {detail}", describe(ca_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(Some(&missing), None).unwrap_err();
        assert!(e.contains("ca_file") && e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty), None).unwrap_err();
        assert!(e.contains("empty.pem"), "{e}");
    }

    #[test]
    fn a_ca_file_and_a_client_pair_make_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let cfg = client_config(Some(&c), Some((&c, &k))).unwrap();
        assert!(cfg.client_auth_cert_resolver.has_certs());
        // A key of another certificate is refused, naming both files.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&k, other.serialize_pem()).unwrap();
        let e = client_config(Some(&c), Some((&c, &k))).unwrap_err();
        assert!(e.contains("c.pem") && e.contains("k.pem"), "{e}");
    }

    #[test]
    fn the_system_roots_are_used_without_a_ca_file() {
        if !Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
            eprintln!("skipped: no /etc/ssl/certs/ca-certificates.crt on this machine");
            return;
        }
        assert!(roots(None).unwrap().len() > 10);
        assert!(client_config(None, None).is_ok());
    }

    #[test]
    fn certificate_errors_are_told_from_network_errors() {
        assert!(is_certificate_error("invalid peer certificate: UnknownIssuer"));
        assert!(is_certificate_error("invalid peer certificate: NotValidForName"));
        assert!(!is_certificate_error("Connection refused (os error 111)"));
        assert_eq!(
            not_trusted(Some(Path::new("/x/ca.pem")), "UnknownIssuer"),
            "certificate not trusted (ca_file /x/ca.pem): UnknownIssuer"
        );
    }
}
