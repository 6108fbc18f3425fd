//! TLS for the HTTP server: loading an operator's certificate chain and key
//! (PEM), generating a self-signed certificate once into the data directory,
//! the SHA-256 fingerprint an operator pins on the peer NVR, and the rustls
//! server configuration (ring, ALPN `h2` then `http/1.1`).
//!
//! Must never serve a key that does not match its certificate, never
//! regenerate a self-signed certificate that exists (peers pin its
//! fingerprint), never leave a half-written key or certificate behind, and
//! never read a PEM file without a bound. Pure parts (fingerprint text, the
//! SAN list) are functions of their inputs.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Where the server's certificate comes from (`[http] tls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// An operator's PEM certificate chain (leaf first) and private key.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated on first start into `DATA/tls/`.
    SelfSigned,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {msg}", path.display())]
    Read { path: PathBuf, msg: String },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: not valid PEM: {msg}", path.display())]
    BadPem { path: PathBuf, msg: String },
    #[error("{}: unusable private key: {msg}", path.display())]
    BadKey { path: PathBuf, msg: String },
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: {msg}", cert.display())]
    BadCertificate { cert: PathBuf, msg: String },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// PEM files are small; a bound keeps a wrong path (a log, a disk image) harmless.
const MAX_PEM: u64 = 1 << 20;

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::config::source::read_bounded_at_most(path, MAX_PEM)
        .map(String::into_bytes)
        .map_err(|msg| TlsError::Read {
            path: path.to_path_buf(),
            msg,
        })
}

/// Every certificate in a PEM file, in file order (the leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(TlsError::NoKey {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(TlsError::BadPem {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks a certificate chain and its key: both parse, and the
/// key is the certificate's.
pub fn load_pair(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let der = load_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey {
            path: key.to_path_buf(),
            msg: e.to_string(),
        })?;
    let ck = rustls::sign::CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        // The provider cannot say (not the case for ring's keys): accepted
        // as rustls itself does; the handshake fails if it is wrong.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(e) => Err(TlsError::BadCertificate {
            cert: cert.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

/// SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// `sha256:` and lowercase hex: the form `failover.peer_fingerprint` takes.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    format!("sha256:{}", crate::evidence::hex(fp))
}

/// Parses `sha256:HEX`, also as OpenSSL prints it (`AB:CD:…`, any case,
/// with or without the `sha256:` prefix).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    let hex = match t.split_once(':') {
        Some((alg, rest)) if alg.eq_ignore_ascii_case("sha256") => rest,
        Some((alg, _)) if alg.len() > 2 => return Err(format!("`{alg}` is not sha256")),
        _ => t,
    };
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("must be `sha256:` and 64 hex digits (the output of `tandem tls fingerprint`)".into());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The names a generated certificate covers: loopback by name and address,
/// this host's name, and the listen address when it is a specific one.
pub fn self_signed_sans(hostname: Option<&str>, listen: IpAddr) -> Vec<String> {
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Some(h) = hostname.map(str::trim).filter(|h| is_dns_name(h)) {
        sans.push(h.to_ascii_lowercase());
    }
    if !listen.is_unspecified() {
        sans.push(listen.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

/// A host name a certificate may carry (RFC 1123 labels); `localhost` aside.
fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && h.parse::<IpAddr>().is_err()
}

/// This machine's host name, if it has a usable one.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into our buffer.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..end]).ok().map(str::to_string)
}

/// `DATA/tls/cert.pem` and `DATA/tls/key.pem`.
pub fn self_signed_paths(data: &Path) -> (PathBuf, PathBuf) {
    let d = data.join("tls");
    (d.join("cert.pem"), d.join("key.pem"))
}

/// The self-signed certificate in `data`, generated if there is none yet.
/// Returns the paths and whether it was generated now.
pub fn ensure_self_signed(data: &Path, listen: IpAddr) -> Result<(PathBuf, PathBuf, bool), TlsError> {
    let (cert, key) = self_signed_paths(data);
    if cert.exists() {
        // A certificate without its key is damage, not a first start:
        // replacing it would silently break every peer that pins it.
        return Ok((cert, key, false));
    }
    let sans = self_signed_sans(hostname().as_deref(), listen);
    let (cert_pem, key_pem) = generate_self_signed(&sans)?;
    let dir = cert.parent().expect("a file in DATA/tls");
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // The key first: a certificate on disk promises its key is there.
    write_atomically(&key, key_pem.as_bytes(), 0o600)?;
    write_atomically(&cert, cert_pem.as_bytes(), 0o644)?;
    Ok((cert, key, true))
}

/// A self-signed certificate (ECDSA P-256) for `sans`, as PEM (cert, key).
pub fn generate_self_signed(sans: &[String]) -> Result<(String, String), TlsError> {
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(g)?;
    let mut params = rcgen::CertificateParams::new(sans.to_vec()).map_err(g)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Tandem NVR (self-signed)");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    // Ten years: the certificate is never regenerated (peers pin it).
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(g)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `bytes` to a temporary file beside `path` with `mode`, syncs it,
/// renames it over `path` and syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(werr)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
    }
    Ok(())
}

/// The server's TLS configuration and its certificate's fingerprint.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: String,
    pub cert: PathBuf,
}

/// Builds the server's rustls configuration for `source`, generating the
/// self-signed certificate into `data` on first use. Logs the fingerprint.
pub fn server_tls(source: &TlsSource, data: &Path, listen: SocketAddr) -> Result<ServerTls, TlsError> {
    let (cert, key) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::SelfSigned => {
            let (cert, key, generated) = ensure_self_signed(data, listen.ip())?;
            if generated {
                tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
            }
            (cert, key)
        }
    };
    let ck = load_pair(&cert, &key)?;
    let fp = format_fingerprint(&fingerprint(ck.cert[0].as_ref()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCertificate {
            cert: cert.clone(),
            msg: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCert(Arc::new(ck))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tracing::info!(cert = %cert.display(), fingerprint = %fp, "serving HTTPS");
    Ok(ServerTls {
        config: Arc::new(config),
        fingerprint: fp,
        cert,
    })
}

/// One certificate for every name a client asks for (no SNI routing).
#[derive(Debug)]
struct SingleCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for SingleCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The fingerprint of the first certificate in a PEM file.
pub fn file_fingerprint(cert: &Path) -> Result<String, TlsError> {
    let certs = load_certs(cert)?;
    Ok(format_fingerprint(&fingerprint(certs[0].as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_format_and_parse_back() {
        let fp = fingerprint(b"not really a certificate");
        let text = format_fingerprint(&fp);
        assert!(text.starts_with("sha256:"));
        assert_eq!(text.len(), 7 + 64);
        assert_eq!(text, text.to_ascii_lowercase());
        assert_eq!(parse_fingerprint(&text).unwrap(), fp);
        // OpenSSL's form: colons, upper case, no prefix, or its own prefix.
        let openssl: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_fingerprint(&openssl.join(":")).unwrap(), fp);
        assert_eq!(parse_fingerprint(&format!("SHA256:{}", openssl.join(":"))).unwrap(), fp);
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint(&format!("sha1:{}", &text[7..])).is_err());
        assert!(parse_fingerprint(&format!("sha256:{}zz", &text[9..])).is_err());
        assert!(parse_fingerprint("").is_err());
    }

    #[test]
    fn san_list_covers_loopback_the_host_and_a_specific_listen_address() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(
            self_signed_sans(Some("NVR-Lobby"), any),
            ["localhost", "127.0.0.1", "::1", "nvr-lobby"]
        );
        assert_eq!(
            self_signed_sans(Some("nvr"), "192.0.2.7".parse().unwrap()),
            ["localhost", "127.0.0.1", "::1", "nvr", "192.0.2.7"]
        );
        // Loopback listen addresses are not repeated; odd host names are left out.
        assert_eq!(
            self_signed_sans(Some("localhost"), "127.0.0.1".parse().unwrap()),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(self_signed_sans(Some("bad_name!"), "::".parse().unwrap()).len(), 3);
        assert_eq!(self_signed_sans(None, "::1".parse().unwrap()).len(), 3);
        assert_eq!(self_signed_sans(Some("10.0.0.1"), any).len(), 3);
        assert_eq!(self_signed_sans(Some("-x.example"), any).len(), 3);
    }

    #[test]
    fn self_signed_certificate_is_generated_once_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (cert, key, generated) = ensure_self_signed(d.path(), "127.0.0.1".parse().unwrap()).unwrap();
        assert!(generated);
        assert_eq!(cert, d.path().join("tls/cert.pem"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key is readable by its owner only");
        let fp = file_fingerprint(&cert).unwrap();
        load_pair(&cert, &key).unwrap();
        let (_, _, again) = ensure_self_signed(d.path(), "127.0.0.1".parse().unwrap()).unwrap();
        assert!(!again);
        assert_eq!(
            file_fingerprint(&cert).unwrap(),
            fp,
            "a second start keeps the certificate"
        );
        assert!(!d.path().join("tls/cert.pem.tmp").exists());
    }

    #[test]
    fn bad_pairs_are_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (c1, k1) = generate_self_signed(&["localhost".into()]).unwrap();
        let (_, k2) = generate_self_signed(&["localhost".into()]).unwrap();
        let w = |n: &str, s: &str| {
            let p = d.path().join(n);
            std::fs::write(&p, s).unwrap();
            p
        };
        let (cert, key, other_key) = (w("c.pem", &c1), w("k.pem", &k1), w("k2.pem", &k2));
        load_pair(&cert, &key).unwrap();
        let e = load_pair(&cert, &other_key).unwrap_err().to_string();
        assert!(e.contains("k2.pem") && e.contains("does not match"), "{e}");
        let e = load_pair(&key, &key).unwrap_err().to_string();
        assert!(e.contains("k.pem: no PEM certificate"), "{e}");
        let e = load_pair(&cert, &cert).unwrap_err().to_string();
        assert!(e.contains("c.pem: no PEM private key"), "{e}");
        let e = load_pair(&d.path().join("missing.pem"), &key).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
