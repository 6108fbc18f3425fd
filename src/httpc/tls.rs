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
