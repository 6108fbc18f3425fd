//! Probes for failover checks: ICMP echo, TCP connect, and the HTTP(S) status
//! of a peer Tandem (`tls = true`: its certificate checked against the
//! configured CA or pinned fingerprint; a mismatch is a miss that says so). Each probe is one attempt with a timeout and reports whether
//! it was answered; the state machine decides what that means.
//!
//! ICMP uses the unprivileged ICMP datagram socket where the system allows it
//! (`net.ipv4.ping_group_range`) and a raw socket otherwise (root); if neither
//! is allowed the probe fails with an error saying so. IPv4 only.
//! Written with libc rather than a crate: two dozen lines of socket calls do
//! not justify a dependency. Must never block the async runtime: the blocking
//! probes run on the blocking pool.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::peer::{Status, StatusQuery};
use super::rule::{Check, CheckKind};
use crate::httpc::PeerTls;

#[derive(Clone, Debug, PartialEq)]
pub enum ProbeResult {
    Answered {
        rtt: Duration,
        /// For `http` checks: the peer's channels that are recording now.
        recording: Option<Vec<u32>>,
    },
    Missed(String),
}

/// One probe. `peer_token` is sent to an `http` check's peer, whose status
/// names the channels it records; without it (or when the peer refuses it)
/// an answer still proves the peer alive, with its channels unknown. `tls`
/// is the peer trust for `tls = true` checks (without it they miss, saying
/// so: never plain HTTP).
pub async fn probe(check: &Check, seq: u64, peer_token: Option<String>, tls: Option<&PeerTls>) -> ProbeResult {
    probe_offering(check, seq, peer_token, tls, &StatusQuery::default()).await
}

/// `probe`; an `http` check also tells the peer which of its channels this
/// NVR backs up (`offer`), so the peer's timeline can ask for them.
pub async fn probe_offering(
    check: &Check,
    seq: u64,
    peer_token: Option<String>,
    tls: Option<&PeerTls>,
    offer: &StatusQuery,
) -> ProbeResult {
    let timeout = check.timeout;
    let start = Instant::now();
    let r: Result<Option<Vec<u32>>, String> = match check.kind {
        CheckKind::Icmp => {
            let addr = check.address.clone();
            match tokio::task::spawn_blocking(move || icmp_echo(&addr, seq as u16, timeout)).await {
                Ok(r) => r.map(|_| None),
                Err(e) => Err(e.to_string()),
            }
        }
        CheckKind::Tcp => {
            let target = (check.address.clone(), check.port.unwrap_or(0));
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
                Ok(Ok(_)) => Ok(None),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            }
        }
        CheckKind::Http => {
            let url = format!("{}{}", status_url(check), offer.to_query());
            let tls = tls.cloned();
            match tokio::task::spawn_blocking(move || http_status(&url, peer_token.as_deref(), timeout, tls.as_ref()))
                .await
            {
                Ok(r) => r,
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match r {
        Ok(recording) => ProbeResult::Answered {
            rtt: start.elapsed(),
            recording,
        },
        Err(e) => ProbeResult::Missed(e),
    }
}

/// The peer's status endpoint; an IPv6 literal is bracketed.
pub fn status_url(check: &Check) -> String {
    let scheme = if check.tls { "https" } else { "http" };
    let host = if check.address.contains(':') && !check.address.starts_with('[') {
        format!("[{}]", check.address)
    } else {
        check.address.clone()
    };
    format!("{scheme}://{host}:{}/api/v1/status", check.port.unwrap_or(8080))
}

fn http_status(
    url: &str,
    peer_token: Option<&str>,
    timeout: Duration,
    tls: Option<&PeerTls>,
) -> Result<Option<Vec<u32>>, String> {
    let auth = peer_token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let r = crate::httpc::request_via("GET", url, &headers, b"", timeout, tls).map_err(|e| e.to_string())?;
    // A peer that wants credentials we lack is still alive and answering.
    if r.status == 401 || r.status == 403 {
        return Ok(None);
    }
    if r.status != 200 {
        return Err(format!("status endpoint answered {}", r.status));
    }
    let status: Status = serde_json::from_slice(&r.body).map_err(|e| format!("status endpoint sent bad JSON: {e}"))?;
    Ok(Some(status.recording()))
}

fn resolve_v4(host: &str) -> Result<Ipv4Addr, String> {
    if let Ok(a) = host.parse::<Ipv4Addr>() {
        return Ok(a);
    }
    (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(*v4.ip()),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| format!("{host} has no IPv4 address"))
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for ch in data.chunks(2) {
        let word = u16::from_be_bytes([ch[0], *ch.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds an ICMP echo request.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"tandem-failover!");
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Whether `pkt` (ICMP, without IP header) is the reply to our request.
fn is_reply(pkt: &[u8], id: Option<u16>, seq: u16) -> bool {
    pkt.len() >= 8
        && pkt[0] == 0
        && u16::from_be_bytes([pkt[6], pkt[7]]) == seq
        && id.is_none_or(|id| u16::from_be_bytes([pkt[4], pkt[5]]) == id)
}

struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this struct owns.
        unsafe { libc::close(self.0) };
    }
}

/// Sends one echo request and waits for its reply; returns the round trip.
pub fn icmp_echo(host: &str, seq: u16, timeout: Duration) -> Result<Duration, String> {
    let addr = resolve_v4(host)?;
    // SAFETY: plain socket(2) calls; the descriptor is owned by `Fd`.
    let (fd, raw) = unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP);
        if s >= 0 {
            (Fd(s), false)
        } else {
            let r = libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP);
            if r < 0 {
                return Err(format!(
                    "cannot open an ICMP socket ({}): run as root or allow it with sysctl net.ipv4.ping_group_range",
                    std::io::Error::last_os_error()
                ));
            }
            (Fd(r), true)
        }
    };
    let id = (std::process::id() as u16) ^ 0x5444;
    let pkt = echo_request(id, seq);
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    let start = Instant::now();
    // SAFETY: `pkt` and `sa` outlive the call; sizes are theirs.
    let n = unsafe {
        libc::sendto(
            fd.0,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(format!(
            "sending ICMP echo to {addr}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no echo reply from {addr} within {} ms", timeout.as_millis()));
        }
        let mut pfd = libc::pollfd {
            fd: fd.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if r <= 0 {
            continue;
        }
        let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `buf` and `from` are valid for the sizes given.
        let n = unsafe {
            libc::recvfrom(
                fd.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        if n <= 0 {
            continue;
        }
        if from.sin_addr.s_addr != u32::from_ne_bytes(addr.octets()) {
            continue;
        }
        let data = &buf[..n as usize];
        // A raw socket delivers the IP header too, and every ICMP packet on the host.
        let (icmp, want_id) = if raw {
            let ihl = usize::from(data[0] & 0x0f) * 4;
            (data.get(ihl..).unwrap_or_default(), Some(id))
        } else {
            (data, None) // the kernel rewrote the id and filters for us
        };
        if is_reply(icmp, want_id, seq) {
            return Ok(start.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_verifies() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet including its checksum sums to zero");
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn replies_are_matched_by_sequence_and_id() {
        let mut reply = echo_request(9, 5);
        reply[0] = 0;
        assert!(is_reply(&reply, Some(9), 5));
        assert!(is_reply(&reply, None, 5));
        assert!(!is_reply(&reply, Some(8), 5));
        assert!(!is_reply(&reply, None, 6));
        assert!(!is_reply(&echo_request(9, 5), None, 5), "a request is not a reply");
        assert!(!is_reply(&reply[..6], None, 5));
    }

    #[tokio::test]
    async fn loopback_probes() {
        let check = |kind, port| Check {
            kind,
            address: "127.0.0.1".into(),
            port,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            failure_count: 1,
            normal_count: 1,
            tls: false,
        };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap().port();
        assert!(matches!(
            probe(&check(CheckKind::Tcp, Some(open)), 0, None, None).await,
            ProbeResult::Answered { .. }
        ));
        drop(l);
        assert!(matches!(
            probe(&check(CheckKind::Tcp, Some(open)), 1, None, None).await,
            ProbeResult::Missed(_)
        ));
        assert!(matches!(
            probe(&check(CheckKind::Http, Some(open)), 2, None, None).await,
            ProbeResult::Missed(_)
        ));
        // ICMP to loopback answers wherever an ICMP socket may be opened.
        match probe(&check(CheckKind::Icmp, None), 3, None, None).await {
            ProbeResult::Answered { .. } => {}
            ProbeResult::Missed(e) => assert!(e.contains("ICMP socket"), "{e}"),
        }
    }
}
