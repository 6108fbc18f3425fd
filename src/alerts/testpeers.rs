//! Receivers for alerts on loopback, shared by the TLS tests and `tandem
//! bench alerts`: a test CA (rcgen) issuing `localhost`/127.0.0.1
//! certificates, an SMTP server (Debian's aiosmtpd run by `/usr/bin/python3`,
//! plain, STARTTLS or implicit TLS, with AUTH), a mosquitto broker with a TLS
//! listener and an in-process MQTT subscriber, and an HTTP(S) listener that
//! records each request. Every receiver notes the wall-clock time a message
//! arrived, so a benchmark can measure event → delivery.
//!
//! Must never listen beyond 127.0.0.1, buffer more than a bounded request,
//! or outlive its owner: child processes are killed and listener threads
//! stopped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The Debian python that has `aiosmtpd` (a `python3` earlier on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A certificate authority for one test, and the certificates it issues.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// PEM files of a CA and one certificate it issued.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Result<TestCa, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(TestCa { cert, key })
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) usable by a
    /// server and a client: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> Result<(String, String), String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
        p.distinguished_name.push(rcgen::DnType::CommonName, "tandem test");
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &self.cert, &self.key).map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes `ca.pem` (once) and `{stem}.pem`/`{stem}.key` for a server on
    /// loopback (`localhost`, 127.0.0.1) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<TlsFiles, String> {
        let f = TlsFiles {
            ca: dir.join(format!("{stem}-ca.pem")),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"])?;
        for (p, text) in [(&f.ca, self.pem()), (&f.cert, cert), (&f.key, key)] {
            std::fs::write(p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
        }
        Ok(f)
    }
}

/// A free TCP port on loopback (bound and released: another process may
/// race for it, which on a test machine it does not).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16, timeout: Duration, child: &mut Child, what: &str, log: &Path) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(st)) = child.try_wait() {
            let err = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} exited ({st}): {}", err.trim()));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}"))
}

/// Waits until `child` prints a line `ready` on its stdout (it has bound its
/// port), or fails with its log if it exits first or takes longer than
/// `timeout`.
fn wait_ready(child: &mut Child, timeout: Duration, what: &str, log: &Path) -> Result<(), String> {
    let stdout = child.stdout.take().ok_or("no stdout to read")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            match line {
                Ok(l) if l.trim() == "ready" => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let start = Instant::now();
    while start.elapsed() < timeout {
        if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            let err = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} exited ({st}): {}", err.trim()));
        }
    }
    Err(format!("{what} did not say it was ready within {timeout:?}"))
}

/// A child process killed when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How the SMTP server protects its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpMode {
    Plain,
    /// STARTTLS required before MAIL; AUTH only after it.
    StartTls,
    /// SMTPS: TLS from the first byte.
    Implicit,
}

/// One message as the SMTP server received it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ReceivedMail {
    /// Unix seconds when the DATA ended.
    pub t: f64,
    /// The AUTH login, if the client authenticated.
    pub auth: Option<String>,
    /// Whether the connection was encrypted when the message came.
    pub tls: bool,
    pub rcpt: Vec<String>,
    /// The whole message (headers and MIME body).
    pub data: String,
}

/// aiosmtpd with a handler appending each message as a JSON line.
const SMTP_SERVER: &str = r#"
import json, ssl, sys, threading, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, mode, cert, key, out, user, password = sys.argv[1:8]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        rec = {"t": time.time(), "auth": login,
               "tls": server.transport.get_extra_info("ssl_object") is not None,
               "rcpt": envelope.rcpt_tos,
               "data": envelope.content.decode("utf-8", "replace")}
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
        and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

kw = dict(hostname="127.0.0.1", port=int(port))
if user:
    kw.update(authenticator=authenticator)
if mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if mode == "starttls":
        kw.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
    else:
        kw.update(ssl_context=ctx, auth_require_tls=False)
else:
    kw.update(auth_require_tls=False)
c = Controller(Handler(), **kw)
c.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// An aiosmtpd server on loopback.
pub struct SmtpPeer {
    pub port: u16,
    out: PathBuf,
    _child: Reaped,
}

impl SmtpPeer {
    /// Whether Debian's python with aiosmtpd is installed.
    pub fn available() -> bool {
        Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts a server in `dir`; `tls` is the certificate it presents (not
    /// for `Plain`), `auth` the one login it accepts (AUTH not offered when
    /// `None`).
    pub fn start(
        dir: &Path,
        name: &str,
        mode: SmtpMode,
        tls: Option<&TlsFiles>,
        auth: Option<(&str, &str)>,
    ) -> Result<SmtpPeer, String> {
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).map_err(|e| e.to_string())?;
        let mut port = free_port().map_err(|e| e.to_string())?;
        let out = dir.join(format!("{name}.mail.jsonl"));
        let log = dir.join(format!("{name}.smtp.log"));
        let mode_s = match mode {
            SmtpMode::Plain => "plain",
            SmtpMode::StartTls => "starttls",
            SmtpMode::Implicit => "implicit",
        };
        if mode != SmtpMode::Plain && tls.is_none() {
            return Err("an SMTP server with TLS needs a certificate".into());
        }
        let (cert, key) = tls.map(|t| (t.cert.clone(), t.key.clone())).unwrap_or_default();
        let (user, password) = auth.unwrap_or(("", ""));
        // A port from `free_port` is free only until someone binds it: a
        // test running beside this one may get the same port and bind it
        // first, and then probing the port finds *its* server. So the server
        // says "ready" once it has bound, and a server that could not bind
        // is started again on another port.
        let mut last = String::new();
        for _ in 0..5 {
            let mut child = Command::new(PYTHON)
                .arg(&script)
                .arg(port.to_string())
                .arg(mode_s)
                .args([&cert, &key, &out])
                .args([user, password])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
                .spawn()
                .map_err(|e| format!("starting {PYTHON}: {e}"))?;
            match wait_ready(&mut child, Duration::from_secs(20), "aiosmtpd", &log) {
                Ok(()) => {
                    return Ok(SmtpPeer {
                        port,
                        out,
                        _child: Reaped(child),
                    })
                }
                Err(e) if e.contains("already in use") => {
                    last = e;
                    port = free_port().map_err(|e| e.to_string())?;
                }
                Err(e) => {
                    drop(Reaped(child));
                    return Err(e);
                }
            }
        }
        Err(last)
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// mosquitto with one TLS listener on loopback.
pub struct MosquittoPeer {
    pub port: u16,
    _child: Reaped,
}

impl MosquittoPeer {
    pub fn available() -> bool {
        Path::new(MOSQUITTO).exists()
    }

    /// `require_client_cert`: only clients with a certificate of the CA may
    /// connect (otherwise anonymous clients are allowed).
    pub fn start(dir: &Path, tls: &TlsFiles, require_client_cert: bool) -> Result<MosquittoPeer, String> {
        let port = free_port().map_err(|e| e.to_string())?;
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        let log = dir.join(format!("mosquitto-{port}.log"));
        // As root mosquitto would switch to its own user, which cannot read
        // the test's private directory.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        let text = format!(
            "{user}persistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate {require_client_cert}\nallow_anonymous true\n",
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display()
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting {MOSQUITTO}: {e}"))?;
        wait_port(port, Duration::from_secs(10), &mut child, "mosquitto", &log)?;
        Ok(MosquittoPeer {
            port,
            _child: Reaped(child),
        })
    }
}

/// One MQTT message a subscriber received.
#[derive(Clone, Debug)]
pub struct ReceivedPublish {
    pub time: SystemTime,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// An MQTT subscriber over TLS in a thread of this process.
pub struct MqttSubscriber {
    pub received: Arc<Mutex<Vec<ReceivedPublish>>>,
    client: rumqttc::Client,
    stop: Arc<AtomicBool>,
}

impl MqttSubscriber {
    /// Connects to `127.0.0.1:port` over TLS trusting `ca` (presenting
    /// `client` if given), subscribes to `topic` and returns once the broker
    /// confirmed the subscription.
    pub fn start(port: u16, ca: &Path, client: Option<(&Path, &Path)>, topic: &str) -> Result<MqttSubscriber, String> {
        let config = super::trust::client_config(Some(ca), client)?;
        let mut opts = rumqttc::MqttOptions::new(
            format!("tandem-test-sub-{port}-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
            config,
        )));
        let (c, mut connection) = rumqttc::Client::new(opts, 64);
        c.subscribe(topic, rumqttc::QoS::AtLeastOnce)
            .map_err(|e| e.to_string())?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (r2, s2) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for n in connection.iter() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                match n {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ready_tx.send(Ok(()));
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(mut v) = r2.lock() {
                            v.push(ReceivedPublish {
                                time: SystemTime::now(),
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(MqttSubscriber {
                received,
                client: c,
                stop,
            }),
            Ok(Err(e)) => Err(format!("MQTT subscriber: {e}")),
            Err(_) => Err("MQTT subscriber: no SUBACK within 10 s".into()),
        }
    }
}

impl Drop for MqttSubscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
    }
}

/// One request an `HttpPeer` received.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub time: SystemTime,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The largest request an `HttpPeer` reads (head and body).
const MAX_REQUEST: usize = 1 << 20;

/// An HTTP or HTTPS listener on loopback that records every request and
/// answers with the next status of its script (200 once the script is spent).
pub struct HttpPeer {
    pub port: u16,
    pub received: Arc<Mutex<Vec<ReceivedRequest>>>,
    statuses: Arc<Mutex<std::collections::VecDeque<u16>>>,
    stop: Arc<AtomicBool>,
}

/// A server configuration presenting `tls`'s certificate.
pub fn server_config(tls: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = crate::web::tls::load_certs(&tls.cert).map_err(|e| e.to_string())?;
    let key = crate::web::tls::load_key(&tls.key).map_err(|e| e.to_string())?;
    let c = rustls::ServerConfig::builder_with_provider(crate::web::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(c))
}

impl HttpPeer {
    /// Plain HTTP when `tls` is `None`.
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>) -> std::io::Result<HttpPeer> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st, sp) = (received.clone(), statuses.clone(), stop.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                if sp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                let (r, st, tls) = (r.clone(), st.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    match tls {
                        None => serve(s, &r, &st),
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve(rustls::StreamOwned::new(conn, s), &r, &st);
                        }
                    }
                });
            }
        });
        Ok(HttpPeer {
            port,
            received,
            statuses,
            stop,
        })
    }

    /// The statuses to answer the next requests with, in order.
    pub fn answer_with(&self, statuses: &[u16]) {
        if let Ok(mut s) = self.statuses.lock() {
            s.extend(statuses);
        }
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve<S: Read + Write>(
    s: S,
    received: &Mutex<Vec<ReceivedRequest>>,
    statuses: &Mutex<std::collections::VecDeque<u16>>,
) {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
        if total > MAX_REQUEST {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if len > MAX_REQUEST {
        return;
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    if let Ok(mut v) = received.lock() {
        v.push(ReceivedRequest {
            time: SystemTime::now(),
            method,
            path,
            headers,
            body,
        });
    }
    let status = statuses.lock().ok().and_then(|mut s| s.pop_front()).unwrap_or(200);
    let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let s = r.get_mut();
    let _ = s.write_all(answer.as_bytes());
    let _ = s.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_peer_records_what_a_webhook_sends() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Peer CA").unwrap();
        let files = ca.write(dir.path(), "web").unwrap();
        let peer = HttpPeer::start(Some(server_config(&files).unwrap())).unwrap();
        peer.answer_with(&[503]);
        let cfg = super::super::trust::client_config(Some(&files.ca), None).unwrap();
        let tls = crate::httpc::PeerTls::from_config(&cfg, "test".into());
        let url = format!("https://127.0.0.1:{}/hook", peer.port);
        let send = || {
            crate::httpc::request_via("POST", &url, &[("X-A", "1")], b"{}", Duration::from_secs(5), Some(&tls)).unwrap()
        };
        assert_eq!(send().status, 503);
        assert_eq!(send().status, 200);
        let got = peer.requests();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/hook"));
        assert_eq!(
            (got[0].header("x-a"), got[0].body.as_slice()),
            (Some("1"), b"{}".as_slice())
        );
    }
}
