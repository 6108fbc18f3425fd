//! How the peer client trusts a peer NVR's certificate: a configured CA
//! (`failover.peer_ca`: chain and name checked by webpki) or a pinned
//! SHA-256 fingerprint (`failover.peer_fingerprint`: exactly that
//! certificate, whatever its names and dates — what a self-signed peer
//! offers). Must never accept a certificate without one of the two checks:
//! there is no "insecure" mode, and `https://` without trust is an error.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::web::tls::{fingerprint, format_fingerprint};

/// The peer trust configured in `[failover]`.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerTrust {
    /// The CA certificates of `path`, read when the configuration was.
    Ca {
        path: PathBuf,
        roots: Vec<CertificateDer<'static>>,
    },
    Fingerprint([u8; 32]),
}

impl PeerTrust {
    /// What a refused certificate failed to match, for error messages.
    pub fn describe(&self) -> String {
        match self {
            PeerTrust::Ca { path, .. } => format!("failover.peer_ca ({})", path.display()),
            PeerTrust::Fingerprint(fp) => format!("failover.peer_fingerprint ({})", format_fingerprint(fp)),
        }
    }
}

/// A ready client configuration for one trust.
#[derive(Clone)]
pub struct PeerTls {
    pub(super) config: Arc<rustls::ClientConfig>,
    pub(super) what: String,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerTls({})", self.what)
    }
}

impl PeerTls {
    /// The rustls configuration, for clients other than `httpc` (the CLI's export).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// Any client configuration (an alert's `ca_file` or the system roots,
    /// see `alerts::trust`); `what` names that trust in a refusal.
    pub fn from_config(config: &rustls::ClientConfig, what: String) -> PeerTls {
        let mut config = config.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        PeerTls {
            config: Arc::new(config),
            what,
        }
    }

    pub fn new(trust: &PeerTrust) -> Result<PeerTls, String> {
        let provider = crate::web::tls::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match trust {
            PeerTrust::Ca { path, roots } => {
                let mut store = rustls::RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(roots.iter().cloned());
                if added == 0 {
                    return Err(format!("{}: no usable CA certificate", path.display()));
                }
                builder.with_root_certificates(store).with_no_client_auth()
            }
            PeerTrust::Fingerprint(fp) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    fp: *fp,
                    algs: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(PeerTls {
            config: Arc::new(config),
            what: trust.describe(),
        })
    }
}

/// Accepts exactly the certificate with the pinned SHA-256 (its handshake
/// signature still checked, so the peer must hold its key).
#[derive(Debug)]
struct Pinned {
    fp: [u8; 32],
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

#[derive(Debug, thiserror::Error)]
#[error("its fingerprint {got} is not the pinned {want}")]
struct NotPinned {
    got: String,
    want: String,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity.as_ref());
        if got == self.fp {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(NotPinned {
                got: format_fingerprint(&got),
                want: format_fingerprint(&self.fp),
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::*;
    use crate::httpc::request_via;

    /// A TLS server on loopback answering every request with 200 `ok`.
    fn server(chain: Vec<CertificateDer<'static>>, key_pem: &str) -> u16 {
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes()).unwrap().unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(crate::web::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut b) {
                        Ok(1) => head.push(b[0]),
                        _ => break,
                    }
                }
                if head.ends_with(b"\r\n\r\n") {
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        port
    }

    fn get(port: u16, trust: Option<&PeerTrust>) -> std::io::Result<crate::httpc::Response> {
        let tls = trust.map(|t| PeerTls::new(t).unwrap());
        let url = format!("https://127.0.0.1:{port}/api/v1/status");
        request_via("GET", &url, &[], b"", Duration::from_secs(5), tls.as_ref())
    }

    fn pem_to_der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap()
    }

    #[test]
    fn a_pinned_fingerprint_accepts_exactly_that_certificate() {
        let (cert, key) = crate::web::tls::generate_self_signed(&["somewhere.example".into()]).unwrap();
        let der = pem_to_der(&cert);
        let port = server(vec![der.clone()], &key);
        // Any name: the pin is the certificate itself.
        let r = get(port, Some(&PeerTrust::Fingerprint(fingerprint(&der)))).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
        let mut wrong = fingerprint(&der);
        wrong[0] ^= 1;
        let e = get(port, Some(&PeerTrust::Fingerprint(wrong))).unwrap_err().to_string();
        assert!(
            e.contains("refused the peer's certificate: it does not match failover.peer_fingerprint")
                && e.contains(&format_fingerprint(&fingerprint(&der))),
            "{e}"
        );
        // No trust at all: refused before connecting, never sent in plain text.
        let e = get(port, None).unwrap_err().to_string();
        assert!(
            e.contains("https needs failover.peer_ca or failover.peer_fingerprint"),
            "{e}"
        );
    }

    #[test]
    fn a_configured_ca_checks_the_chain_and_the_name() {
        let ca = |cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            (p.self_signed(&key).unwrap(), key)
        };
        let (site_ca, site_key) = ca("Site CA");
        let (other_ca, _) = ca("Other CA");
        let leaf = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &site_ca, &site_key)
                .unwrap();
            (cert.der().clone(), key.serialize_pem())
        };
        let trust = |c: &rcgen::Certificate| PeerTrust::Ca {
            path: "ca.pem".into(),
            roots: vec![c.der().clone()],
        };
        let (der, key) = leaf("127.0.0.1");
        let good = server(vec![der, site_ca.der().clone()], &key);
        assert_eq!(get(good, Some(&trust(&site_ca))).unwrap().status, 200);
        let e = get(good, Some(&trust(&other_ca))).unwrap_err().to_string();
        assert!(e.contains("does not match failover.peer_ca (ca.pem)"), "{e}");
        // Signed by the right CA, but for another name.
        let (der, key) = leaf("other.example");
        let misnamed = server(vec![der], &key);
        let e = get(misnamed, Some(&trust(&site_ca))).unwrap_err().to_string();
        assert!(
            e.contains("does not match failover.peer_ca") && e.contains("not valid for name"),
            "{e}"
        );
    }
}
