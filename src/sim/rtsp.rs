//! Sans-IO RTSP for the simulated camera: request parsing, response building,
//! Basic/Digest authentication checks, and RTP packetization of H.264.
//!
//! Written here rather than taken from a crate because the server side needs
//! only a few methods and must interleave parsing with `$`-framed RTCP from the
//! client; a 200-line parser is easier to hold than another dependency.
//! Must never touch sockets or clocks.

use base64::Engine;
use md5::{Digest, Md5};

#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn cseq(&self) -> &str {
        self.header("CSeq").unwrap_or("0")
    }
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Not enough bytes yet.
    Incomplete,
    /// A request and the number of bytes it used.
    Request(Request, usize),
    /// An interleaved binary frame (RTCP from the client) to skip.
    Interleaved(usize),
    /// Not RTSP: the connection should be dropped.
    Garbage(String),
}

const MAX_REQUEST: usize = 16 * 1024;

pub fn parse(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if buf[0] == b'$' {
        if buf.len() < 4 {
            return Parsed::Incomplete;
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        return if buf.len() < 4 + len {
            Parsed::Incomplete
        } else {
            Parsed::Interleaved(4 + len)
        };
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_REQUEST {
            Parsed::Garbage("request header too long".into())
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(text) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Garbage("request is not UTF-8".into());
    };
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Parsed::Garbage(format!("bad request line {first:?}"));
    };
    if !version.starts_with("RTSP/1.") {
        return Parsed::Garbage(format!("bad version {version:?}"));
    }
    let mut headers = Vec::new();
    let mut content_length = 0;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Parsed::Garbage(format!("bad header line {line:?}"));
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if k.eq_ignore_ascii_case("Content-Length") {
            content_length = v.parse().unwrap_or(0);
        }
        headers.push((k, v));
    }
    let total = end + 4 + content_length;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    Parsed::Request(
        Request {
            method: method.to_string(),
            uri: uri.to_string(),
            headers,
        },
        total,
    )
}

pub fn response(status: &str, cseq: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\nServer: Tandem simulated camera\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    Basic,
    Digest,
}

/// The camera's credentials and the nonce it hands out.
#[derive(Clone, Debug)]
pub struct Auth {
    pub scheme: AuthScheme,
    pub user: String,
    pub password: String,
    pub realm: String,
    pub nonce: String,
}

fn md5_hex(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `k="v", k2=v2` into pairs.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((key.to_ascii_lowercase(), value));
    }
    out
}

impl Auth {
    pub fn challenge(&self) -> String {
        match self.scheme {
            AuthScheme::Basic => format!("Basic realm=\"{}\"", self.realm),
            AuthScheme::Digest => {
                format!("Digest realm=\"{}\", nonce=\"{}\"", self.realm, self.nonce)
            }
        }
    }

    /// Whether the request's `Authorization` header proves the credentials.
    pub fn check(&self, req: &Request) -> bool {
        let Some(h) = req.header("Authorization") else {
            return false;
        };
        match self.scheme {
            AuthScheme::Basic => {
                let Some(b64) = h.strip_prefix("Basic ") else {
                    return false;
                };
                let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
                    return false;
                };
                raw == format!("{}:{}", self.user, self.password).as_bytes()
            }
            AuthScheme::Digest => {
                let Some(p) = h.strip_prefix("Digest ") else {
                    return false;
                };
                let params = auth_params(p);
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                let (Some(user), Some(nonce), Some(uri), Some(resp)) =
                    (get("username"), get("nonce"), get("uri"), get("response"))
                else {
                    return false;
                };
                if user != self.user || nonce != self.nonce {
                    return false;
                }
                let ha1 = md5_hex(&format!("{}:{}:{}", self.user, self.realm, self.password));
                let ha2 = md5_hex(&format!("{}:{}", req.method, uri));
                let expected = match (get("qop"), get("nc"), get("cnonce")) {
                    (Some(qop), Some(nc), Some(cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
                    _ => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
                };
                expected.eq_ignore_ascii_case(resp)
            }
        }
    }
}

/// Largest RTP payload; keeps packets under a 1500-byte Ethernet MTU with headers.
pub const MAX_PAYLOAD: usize = 1400;

/// Packetizes one access unit (NAL units without start codes) per RFC 6184:
/// single NAL unit packets, FU-A for NALs larger than `MAX_PAYLOAD`.
/// The first segment of a request URI's path (`rtsp://h:p/cam1/trackID=0` → `cam1`).
pub fn first_path_segment(uri: &str) -> Option<&str> {
    let path = match uri.find("://") {
        Some(p) => {
            let after = &uri[p + 3..];
            &after[after.find('/').unwrap_or(after.len())..]
        }
        None => uri,
    };
    path.trim_start_matches('/').split('/').next()
}

pub fn packetize_h264(nals: &[&[u8]], out: &mut Vec<Vec<u8>>) {
    for nal in nals {
        if nal.is_empty() {
            continue;
        }
        if nal.len() <= MAX_PAYLOAD {
            out.push(nal.to_vec());
            continue;
        }
        let header = nal[0];
        let indicator = (header & 0xe0) | 28;
        let mut rest = &nal[1..];
        let mut first = true;
        while !rest.is_empty() {
            let n = rest.len().min(MAX_PAYLOAD - 2);
            let last = n == rest.len();
            let fu_header = (header & 0x1f) | if first { 0x80 } else { 0 } | if last { 0x40 } else { 0 };
            let mut p = Vec::with_capacity(n + 2);
            p.push(indicator);
            p.push(fu_header);
            p.extend_from_slice(&rest[..n]);
            out.push(p);
            rest = &rest[n..];
            first = false;
        }
    }
}

/// Writes a 12-byte RTP header followed by the payload.
pub fn rtp_packet(out: &mut Vec<u8>, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) {
    out.push(0x80);
    out.push(96 | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Like `rtp_packet`, with an optional header extension (profile, length
/// and data, already encoded) after the fixed header.
pub fn rtp_packet_ext(
    out: &mut Vec<u8>,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    extension: Option<&[u8]>,
    payload: &[u8],
) {
    let at = out.len();
    rtp_packet(out, marker, seq, ts, ssrc, &[]);
    if let Some(ext) = extension {
        out[at] |= 0x10;
        out.extend_from_slice(ext);
    }
    out.extend_from_slice(payload);
}

/// An RTCP sender report (RFC 3550 §6.4.1) without reception blocks:
/// `ntp` is the capture time of the frame with RTP timestamp `rtp_ts`.
pub fn rtcp_sender_report(out: &mut Vec<u8>, ssrc: u32, ntp: u64, rtp_ts: u32, packets: u32, octets: u32) {
    out.extend_from_slice(&[0x80, 200, 0, 6]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp.to_be_bytes());
    out.extend_from_slice(&rtp_ts.to_be_bytes());
    out.extend_from_slice(&packets.to_be_bytes());
    out.extend_from_slice(&octets.to_be_bytes());
}

/// An RTCP BYE for one source (RFC 3550 §6.6); sent after a sender report
/// in one compound packet when a replay has sent its last frame.
pub fn rtcp_bye(out: &mut Vec<u8>, ssrc: u32) {
    out.extend_from_slice(&[0x81, 203, 0, 1]);
    out.extend_from_slice(&ssrc.to_be_bytes());
}

/// Whether a compound RTCP packet from a client asks for a key frame: a
/// Picture Loss Indication (RFC 4585 §6.3.1) or a Full Intra Request (RFC 5104
/// §4.3.1). Anything malformed is simply not a request.
pub fn is_key_frame_request(mut rtcp: &[u8]) -> bool {
    while rtcp.len() >= 4 {
        let (v, fmt, pt) = (rtcp[0] >> 6, rtcp[0] & 0x1f, rtcp[1]);
        let len = (usize::from(u16::from_be_bytes([rtcp[2], rtcp[3]])) + 1) * 4;
        if v != 2 || len > rtcp.len() {
            return false;
        }
        if pt == 206 && (fmt == 1 || fmt == 4) && len >= 12 {
            return true;
        }
        rtcp = &rtcp[len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_frame_requests_are_recognised_in_compound_packets() {
        let rr = [0x80, 201, 0, 1, 1, 2, 3, 4];
        let pli = [0x81, 206, 0, 2, 1, 2, 3, 4, 9, 9, 9, 9];
        let fir = [0x84, 206, 0, 4, 1, 2, 3, 4, 0, 0, 0, 0, 9, 9, 9, 9, 1, 0, 0, 0];
        assert!(is_key_frame_request(&pli));
        assert!(is_key_frame_request(&[&rr[..], &pli[..]].concat()));
        assert!(is_key_frame_request(&[&rr[..], &fir[..]].concat()));
        assert!(!is_key_frame_request(&rr));
        // Generic NACK (RTPFB 205) and REMB-like PSFB FMT 15 are not requests.
        assert!(!is_key_frame_request(&[0x81, 205, 0, 2, 1, 2, 3, 4, 9, 9, 9, 9]));
        assert!(!is_key_frame_request(&[0x8f, 206, 0, 2, 1, 2, 3, 4, 9, 9, 9, 9]));
        // Truncated, wrong version, or a length past the end: not a request.
        for cut in 0..pli.len() {
            assert!(!is_key_frame_request(&pli[..cut]), "cut at {cut}");
        }
        assert!(!is_key_frame_request(&[0x41, 206, 0, 2, 1, 2, 3, 4, 9, 9, 9, 9]));
        assert!(!is_key_frame_request(&[0x81, 206, 0xff, 0xff, 1, 2, 3, 4]));
        assert!(!is_key_frame_request(&[&rr[..], &[0x81, 206, 0, 9]].concat()));
    }

    #[test]
    fn parses_requests_incrementally() {
        let req = b"OPTIONS rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\n\r\n";
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        match parse(req) {
            Parsed::Request(r, n) => {
                assert_eq!(n, req.len());
                assert_eq!(r.method, "OPTIONS");
                assert_eq!(r.cseq(), "1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(b"$\x01\x00\x02ab"), Parsed::Interleaved(6));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Garbage(_)));
    }

    #[test]
    fn digest_auth_accepts_right_and_refuses_wrong_password() {
        let auth = Auth {
            scheme: AuthScheme::Digest,
            user: "admin".into(),
            password: "secret".into(),
            realm: "r".into(),
            nonce: "n1".into(),
        };
        let ha1 = md5_hex("admin:r:secret");
        let ha2 = md5_hex("DESCRIBE:rtsp://h/cam1");
        let good = md5_hex(&format!("{ha1}:n1:{ha2}"));
        let mk = |resp: &str| Request {
            method: "DESCRIBE".into(),
            uri: "rtsp://h/cam1".into(),
            headers: vec![(
                "Authorization".into(),
                format!(
                    "Digest username=\"admin\", realm=\"r\", nonce=\"n1\", uri=\"rtsp://h/cam1\", response=\"{resp}\""
                ),
            )],
        };
        assert!(auth.check(&mk(&good)));
        assert!(!auth.check(&mk("0123")));
    }

    #[test]
    fn rtcp_packets_have_their_length_in_words() {
        let mut v = Vec::new();
        rtcp_sender_report(&mut v, 1, 2, 3, 4, 5);
        assert_eq!(v.len(), 28);
        assert_eq!(u16::from_be_bytes([v[2], v[3]]) as usize, v.len() / 4 - 1);
        assert_eq!(&v[8..16], &2u64.to_be_bytes());
        let at = v.len();
        rtcp_bye(&mut v, 1);
        assert_eq!(v.len() - at, 8);
        assert_eq!((v[at], v[at + 1], v[at + 3]), (0x81, 203, 1));
    }

    #[test]
    fn fu_a_fragments_reassemble() {
        let nal: Vec<u8> = std::iter::once(0x65).chain((0..5000u32).map(|i| i as u8)).collect();
        let mut pkts = Vec::new();
        packetize_h264(&[&nal], &mut pkts);
        assert!(pkts.len() > 3);
        assert!(pkts.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut rebuilt = vec![(pkts[0][0] & 0xe0) | (pkts[0][1] & 0x1f)];
        for p in &pkts {
            rebuilt.extend_from_slice(&p[2..]);
        }
        assert_eq!(rebuilt, nal);
        assert_eq!(pkts[0][1] & 0x80, 0x80);
        assert_eq!(pkts.last().unwrap()[1] & 0x40, 0x40);
    }
}
