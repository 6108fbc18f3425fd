//! The load harness of the hardening work: what a hostile but realistic
//! client does to a live NVR over loopback — floods the event trigger, holds
//! idle and half-sent connections, uploads a large import — with counts of
//! how the NVR answered. Used by `tandem attack` (against any NVR),
//! `tandem bench attack` (with recording measured beside it) and the tests.
//!
//! Owns only client behaviour; every loop is bounded in count and time and
//! stops by itself. Must never target anything but the address it is given
//! (tests and benchmarks give loopback).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::segment_file::{record_header, SegmentHeader};
use crate::time::Time90k;

/// What to do, and for how long.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: SocketAddr,
    /// Channels whose event trigger is flooded.
    pub channels: Vec<u32>,
    /// Trigger requests per second, all clients together (0: no flood).
    pub trigger_rate: u32,
    pub trigger_clients: u32,
    pub duration: Duration,
    /// Idle, half-sent connections held open for `duration`.
    pub slow_connections: u32,
    /// Bytes of footage uploaded as one import (0: none), to `import_channel`.
    pub import_bytes: u64,
    pub import_channel: u32,
    pub peer_token: Option<String>,
    /// `Authorization: Bearer` for API calls, if the NVR wants one.
    pub bearer: Option<String>,
}

/// How the NVR answered.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Trigger answers by status code ("0" = no answer: the connection failed).
    pub triggers: BTreeMap<String, u64>,
    pub slow_opened: u64,
    /// Of those, how many the NVR had closed by the end.
    pub slow_closed_by_nvr: u64,
    pub import_bytes_sent: u64,
    /// The final answer to the import's `complete`, or the first refusal.
    pub import_status: Option<u16>,
    pub import_answer: Option<String>,
    pub seconds: f64,
}

impl Report {
    /// Trigger requests that were accepted (2xx).
    pub fn triggers_accepted(&self) -> u64 {
        self.triggers
            .iter()
            .filter(|(k, _)| k.starts_with('2'))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn triggers_sent(&self) -> u64 {
        self.triggers.values().sum()
    }
}

/// Runs the plan; returns when every part has finished.
pub fn run(plan: &Plan) -> Report {
    crate::web::server::nofile_limit(); // raise our own descriptor limit for the slow connections
    let start = Instant::now();
    let report = Arc::new(Mutex::new(Report::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if plan.trigger_rate > 0 && !plan.channels.is_empty() {
        let clients = plan.trigger_clients.max(1);
        for i in 0..clients {
            let (plan, report, stop) = (plan.clone(), report.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                trigger_client(&plan, i, clients, &report, &stop)
            }));
        }
    }
    if plan.slow_connections > 0 {
        let (plan, report) = (plan.clone(), report.clone());
        threads.push(std::thread::spawn(move || slow_connections(&plan, &report)));
    }
    if plan.import_bytes > 0 {
        let (plan, report) = (plan.clone(), report.clone());
        threads.push(std::thread::spawn(move || import(&plan, &report)));
    }
    std::thread::sleep(plan.duration);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let mut r = report.lock().map(|r| r.clone()).unwrap_or_default();
    r.seconds = start.elapsed().as_secs_f64();
    r
}

/// One keep-alive HTTP/1.1 connection for repeated small requests.
struct Conn {
    addr: SocketAddr,
    s: Option<TcpStream>,
    buf: Vec<u8>,
    /// How long an answer may take (a merge of a large import takes minutes).
    timeout: Duration,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            s: None,
            buf: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends a request and reads the answer's status (0 when the connection failed).
    fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
        match self.try_request(method, path, headers, body) {
            Ok(r) => r,
            Err(_) => {
                self.s = None;
                (0, Vec::new())
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        if self.s.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.s = Some(s);
            self.buf.clear();
        }
        let s = self.s.as_mut().expect("connected above");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        // Read the head, then exactly Content-Length bytes of body.
        let mut tmp = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..n]);
            if self.buf.len() > 1 << 20 {
                return Err(std::io::Error::other("answer head too large"));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if len > 16 << 20 {
            return Err(std::io::Error::other("answer too large"));
        }
        while self.buf.len() < head_end + len {
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        if head.to_ascii_lowercase().contains("connection: close") {
            self.s = None;
        }
        Ok((status, body))
    }
}

fn count(report: &Mutex<Report>, status: u16) {
    if let Ok(mut r) = report.lock() {
        *r.triggers.entry(status.to_string()).or_default() += 1;
    }
}

/// Opens a new event from a new source on every request (the costliest
/// pattern), at its share of the rate, until told to stop.
fn trigger_client(plan: &Plan, i: u32, clients: u32, report: &Mutex<Report>, stop: &AtomicBool) {
    let mut conn = Conn::new(plan.target);
    let interval = Duration::from_secs_f64(f64::from(clients) / f64::from(plan.trigger_rate.max(1)));
    let mut next = Instant::now();
    let mut auth = vec![("Content-Type", "application/json".to_string())];
    if let Some(b) = &plan.bearer {
        auth.push(("Authorization", format!("Bearer {b}")));
    }
    let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let ch = plan.channels[(k as usize + i as usize) % plan.channels.len()];
        let body = format!(r#"{{"type":"door","action":"start","source":"w{i}-{k}"}}"#);
        let (st, _) = conn.request(
            "POST",
            &format!("/api/v1/channels/{ch}/events"),
            &headers,
            body.as_bytes(),
        );
        count(report, st);
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            // Behind (the NVR is slow to answer): do not burst to catch up.
            next = now;
        }
    }
}

/// Holds half-sent requests open, adding one header byte now and then (a
/// slowloris), and counts how many the NVR closed.
fn slow_connections(plan: &Plan, report: &Mutex<Report>) {
    let mut socks = Vec::new();
    for _ in 0..plan.slow_connections {
        match TcpStream::connect_timeout(&plan.target, Duration::from_secs(2)) {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n");
                let _ = s.set_nonblocking(true);
                socks.push(Some(s));
            }
            Err(_) => break,
        }
    }
    if let Ok(mut r) = report.lock() {
        r.slow_opened = socks.len() as u64;
    }
    let end = Instant::now() + plan.duration;
    let mut closed = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(2));
        for slot in socks.iter_mut() {
            let Some(s) = slot else { continue };
            let mut b = [0u8; 1024];
            let gone = match s.read(&mut b) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.write_all(b"X").is_err(),
                Err(_) => true,
            };
            if gone {
                *slot = None;
                closed += 1;
            }
        }
    }
    if let Ok(mut r) = report.lock() {
        r.slow_closed_by_nvr = closed;
    }
}

/// A minimal `avc1` sample entry (640×360): enough for the store to accept
/// the footage; nothing decodes it.
pub fn fake_sample_entry() -> Vec<u8> {
    let mut e = vec![0u8; 86];
    e[0..4].copy_from_slice(&86u32.to_be_bytes());
    e[4..8].copy_from_slice(b"avc1");
    e[32..34].copy_from_slice(&640u16.to_be_bytes());
    e[34..36].copy_from_slice(&360u16.to_be_bytes());
    e
}

/// A segment file as a peer would upload it: `frames` frames of `frame_size`
/// bytes, 25 per second from `start`, a key frame every 25, produced piece by
/// piece so a gigabyte never sits in memory.
pub struct SegmentSource {
    header: Vec<u8>,
    frames: u64,
    frame_size: usize,
    next: u64,
    pending: Vec<u8>,
}

impl SegmentSource {
    pub fn new(origin_segment: i64, start: Time90k, frames: u64, frame_size: usize) -> SegmentSource {
        let header = SegmentHeader {
            channel: 1,
            segment_id: origin_segment,
            start,
            sample_entry: fake_sample_entry(),
        }
        .encode();
        SegmentSource {
            header,
            frames,
            frame_size,
            next: 0,
            pending: Vec::new(),
        }
    }

    /// Total bytes the file will have.
    pub fn len(&self) -> u64 {
        self.header.len() as u64 + self.frames * (16 + self.frame_size as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// The next up to `max` bytes of the file (empty at the end).
    pub fn piece(&mut self, max: usize) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.header);
        out.append(&mut self.pending);
        let mut data = vec![0u8; self.frame_size];
        while out.len() < max && self.next < self.frames {
            let i = self.next;
            self.next += 1;
            // Length-prefixed NAL units of filler: unique per frame.
            data[..4].copy_from_slice(&(self.frame_size as u32 - 4).to_be_bytes());
            data[4] = if i % 25 == 0 { 0x65 } else { 0x41 };
            data[5..13].copy_from_slice(&i.to_be_bytes());
            let pts = (i * 3600) as u32;
            out.extend_from_slice(&record_header(pts, i % 25 == 0, &data));
            out.extend_from_slice(&data);
        }
        if out.len() > max {
            self.pending = out.split_off(max);
        }
        out
    }
}

/// Uploads one large import in 8-MiB pieces with the peer token, then asks for the merge.
fn import(plan: &Plan, report: &Mutex<Report>) {
    let Some(token) = plan.peer_token.clone() else {
        return;
    };
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str())];
    let frame = 64 * 1024;
    let frames = plan.import_bytes / (frame as u64 + 16);
    // An hour ago, so it lands beside the live recording, not on it.
    let start = Time90k::from_system(std::time::SystemTime::now()) + -3600 * 90_000;
    let seg = (std::process::id() as i64) << 20 | (start.0 & 0xfffff);
    let origin = "a77ac4";
    let mut src = SegmentSource::new(seg, start, frames, frame);
    let len = src.len();
    let mut conn = Conn::new(plan.target);
    conn.timeout = Duration::from_secs(600);
    let mut offset = 0u64;
    loop {
        let piece = src.piece(8 << 20);
        if piece.is_empty() {
            break;
        }
        let (st, body) = conn.request(
            "PUT",
            &format!("/api/v1/import/{origin}/{seg}?offset={offset}"),
            &headers,
            &piece,
        );
        if st != 200 {
            if let Ok(mut r) = report.lock() {
                r.import_status = Some(st);
                r.import_answer = Some(crate::excerpt::short(&String::from_utf8_lossy(&body)));
            }
            return;
        }
        offset += piece.len() as u64;
        if let Ok(mut r) = report.lock() {
            r.import_bytes_sent = offset;
        }
    }
    let (st, body) = conn.request(
        "POST",
        &format!(
            "/api/v1/import/{origin}/{seg}/complete?channel={}&length={len}",
            plan.import_channel
        ),
        &headers,
        b"",
    );
    if let Ok(mut r) = report.lock() {
        r.import_status = Some(st);
        r.import_answer = Some(crate::excerpt::short(&String::from_utf8_lossy(&body)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_upload_is_a_valid_segment_in_any_piece_size() {
        let start = Time90k(1_800_000_000 * 90_000);
        for piece in [100, 7919, 1 << 20] {
            let mut src = SegmentSource::new(9, start, 60, 1000);
            let len = src.len();
            let mut all = Vec::new();
            loop {
                let p = src.piece(piece);
                if p.is_empty() {
                    break;
                }
                assert!(p.len() <= piece);
                all.extend_from_slice(&p);
            }
            assert_eq!(all.len() as u64, len);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.seg");
            std::fs::write(&path, &all).unwrap();
            let mut f = std::fs::File::open(&path).unwrap();
            let scan = crate::store::segment_file::scan(&mut f, len, true).unwrap();
            assert_eq!(scan.frames.len(), 60);
            assert_eq!(scan.stopped, None);
            assert_eq!(scan.frames.iter().filter(|f| f.key).count(), 3);
            assert!(crate::store::SampleEntry::parse(scan.header.sample_entry).is_some());
            // A scan of a file from outside stops at its frame budget.
            let capped = crate::store::segment_file::scan_at_most(&mut f, len, true, 10).unwrap();
            assert_eq!(capped.frames.len(), 10);
            assert_eq!(capped.stopped, Some("too many frames"));
        }
    }
}
