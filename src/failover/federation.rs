//! One timeline across a pair of NVRs: for a channel with a backup peer, the
//! footage the peer holds for ranges this NVR lacks — before the failback
//! transfer has brought it here — shown in `recordings` (`held_by`) and
//! served by `clip.mp4`.
//!
//! A channel's peers: the backup of every rule whose `backup` maps the
//! channel (the standby asks the primary), and every standby that announced
//! itself through its probes as backing the channel up (the primary asks
//! the standby; `super::peer::Directory`). In a recorder pool, also every
//! other member with a channel for the same camera (`nvr::pool::pool_peers`,
//! from the members' records; `Nvr::federation_peers` joins the two).
//!
//! The choice of what to show is pure (`holes`, `fill`); the calls to the
//! peer are blocking (`httpc`), bounded in time and size, run on the
//! blocking pool by the routes. Must never fail a request for this NVR's
//! own footage because a peer is down or slow: a peer's failure is a note
//! in the answer.

use std::time::{Duration, Instant};

use super::peer::{Directory, PeerNote, Recordings, Run};
use crate::config::Config;
use crate::httpc::PeerTls;
use crate::time::Time90k;

/// How long one call to a peer may take.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest recordings answer read from a peer.
pub const MAX_RECORDINGS_ANSWER: u64 = 4 << 20;
/// Holes shorter than this (a tenth of a second: two runs closer than it
/// are one run) are not asked of a peer.
const MIN_HOLE: i64 = 9_000;

/// A peer NVR that may hold footage of one of this NVR's channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRef {
    /// `host:port`, as `held_by` shows it.
    pub name: String,
    /// `http://host:port` or `https://host:port`.
    pub base_url: String,
    /// The channel's number on the peer.
    pub channel: u32,
}

fn host_port(address: &str, port: u16) -> String {
    super::transfer::target(address, port, false)
}

/// The peers of `channel`: configured backups first, then learned ones.
pub fn peers_of(config: &Config, dir: &Directory, channel: u32, now: Instant) -> Vec<PeerRef> {
    let mut out: Vec<PeerRef> = Vec::new();
    for r in &config.rules {
        let Some(b) = &r.rule.backup else { continue };
        for m in b.cameras.iter().filter(|m| m.local == channel) {
            let name = host_port(&b.address, b.port.unwrap_or(8080));
            let scheme = if b.tls { "https" } else { "http" };
            out.push(PeerRef {
                base_url: format!("{scheme}://{name}"),
                name,
                channel: m.remote,
            });
        }
    }
    for (ip, port, tls, theirs) in dir.backups_of(channel, now) {
        let name = host_port(&ip.to_string(), port);
        let scheme = if tls { "https" } else { "http" };
        out.push(PeerRef {
            base_url: format!("{scheme}://{name}"),
            name,
            channel: theirs,
        });
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert((p.base_url.clone(), p.channel)));
    out
}

/// The time this NVR's runs cover: a run still being written covers up to
/// `end` (its footage is arriving here; a peer's copy of it would be a
/// duplicate).
pub fn local_spans(runs: &[crate::store::reader::RecordingRun], end: Time90k) -> Vec<(Time90k, Time90k)> {
    runs.iter()
        .map(|r| (r.start_90k, if r.growing { r.end_90k.max(end) } else { r.end_90k }))
        .collect()
}

/// The parts of `start..end` no local run covers (runs as time spans).
pub fn holes(local: &[(Time90k, Time90k)], start: Time90k, end: Time90k) -> Vec<(Time90k, Time90k)> {
    let mut spans: Vec<(Time90k, Time90k)> = local.iter().copied().filter(|(a, b)| b > a).collect();
    spans.sort_unstable();
    let mut out = Vec::new();
    let mut at = start;
    for (a, b) in spans {
        if b <= at {
            continue;
        }
        if a >= end {
            break;
        }
        if a > at {
            out.push((at, a));
        }
        at = at.max(b);
    }
    if at < end {
        out.push((at, end));
    }
    out.retain(|(a, b)| b.0 - a.0 >= MIN_HOLE);
    out
}

/// The peer's runs cut to the holes, marked `held_by`; a run's frames and
/// bytes are scaled to the part shown.
pub fn fill(holes: &[(Time90k, Time90k)], peer: &str, runs: &[Run]) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        let (Ok(rs), Ok(re)) = (Time90k::parse_rfc3339(&r.start), Time90k::parse_rfc3339(&r.end)) else {
            continue;
        };
        if re <= rs {
            continue;
        }
        for &(hs, he) in holes {
            let (a, b) = (rs.max(hs), re.min(he));
            if b.0 - a.0 < MIN_HOLE {
                continue;
            }
            let part = (b.0 - a.0) as f64 / (re.0 - rs.0) as f64;
            let mut piece = r.clone();
            piece.start = a.to_rfc3339();
            piece.end = b.to_rfc3339();
            piece.frames = (r.frames as f64 * part).round() as u64;
            piece.bytes = (r.bytes as f64 * part).round() as u64;
            piece.held_by = Some(peer.to_string());
            out.push(piece);
        }
    }
    out
}

/// Asks a peer for its own runs of its channel (blocking; never federated,
/// so two peers never ask each other in a loop).
pub fn peer_runs(
    peer: &PeerRef,
    start: Time90k,
    end: Time90k,
    token: &str,
    tls: Option<&PeerTls>,
) -> Result<Vec<Run>, String> {
    let url = format!(
        "{}/api/v1/channels/{}/recordings?start={}&end={}&federated=0",
        peer.base_url,
        peer.channel,
        enc(&start.to_rfc3339()),
        enc(&end.to_rfc3339())
    );
    let auth = format!("Bearer {token}");
    let r = crate::httpc::request_bounded(
        "GET",
        &url,
        &[("Authorization", &auth)],
        b"",
        PEER_TIMEOUT,
        tls,
        MAX_RECORDINGS_ANSWER,
    )
    .map_err(|e| format!("cannot reach the peer: {e}"))?;
    if r.status != 200 {
        let why = r.json().ok().and_then(|v| v["error"].as_str().map(str::to_string));
        return Err(format!(
            "the peer answered {}{}",
            r.status,
            why.map(|w| format!(": {w}")).unwrap_or_default()
        ));
    }
    let answer: Recordings =
        serde_json::from_slice(&r.body).map_err(|e| format!("the peer's recordings are not understood: {e}"))?;
    Ok(answer.recordings)
}

/// A clip the peer builds of its own footage, fetched a bounded piece at a
/// time with HTTP ranges (`If-Range` keeps the pieces of one version).
#[derive(Clone, Debug)]
pub struct PeerClip {
    pub url: String,
    pub len: u64,
    pub etag: String,
    /// The peer's `X-Tandem-Gaps` and `X-Tandem-Range`, passed on.
    pub gaps: Option<String>,
    pub range: Option<String>,
}

/// The largest piece of a peer's clip held in memory at once.
pub const CLIP_PIECE: u64 = 1 << 20;

/// Why a peer's clip is not available.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerClipError {
    /// The peer has no footage there.
    NoFootage,
    Failed(String),
}

impl std::fmt::Display for PeerClipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerClipError::NoFootage => write!(f, "the peer has no footage in the range"),
            PeerClipError::Failed(e) => write!(f, "{e}"),
        }
    }
}

fn clip_get(
    url: &str,
    token: &str,
    tls: Option<&PeerTls>,
    range: (u64, u64),
    if_range: Option<&str>,
) -> Result<crate::httpc::Response, PeerClipError> {
    let auth = format!("Bearer {token}");
    let want = format!("bytes={}-{}", range.0, range.1 - 1);
    let mut headers = vec![("Authorization", auth.as_str()), ("Range", want.as_str())];
    if let Some(e) = if_range {
        headers.push(("If-Range", e));
    }
    let r = crate::httpc::request_bounded("GET", url, &headers, b"", PEER_TIMEOUT, tls, CLIP_PIECE + 4096)
        .map_err(|e| PeerClipError::Failed(format!("cannot reach the peer: {e}")))?;
    match r.status {
        206 => Ok(r),
        404 => Err(PeerClipError::NoFootage),
        s => Err(PeerClipError::Failed(format!(
            "the peer answered {s} to a range of its clip"
        ))),
    }
}

/// Opens the peer's clip of its channel from `start` to `end` (blocking):
/// its length and version, from a one-byte range.
pub fn open_clip(
    peer: &PeerRef,
    start: Time90k,
    end: Time90k,
    token: &str,
    tls: Option<&PeerTls>,
) -> Result<PeerClip, PeerClipError> {
    let url = format!(
        "{}/api/v1/channels/{}/clip.mp4?start={}&end={}&federated=0",
        peer.base_url,
        peer.channel,
        enc(&start.to_rfc3339()),
        enc(&end.to_rfc3339())
    );
    let r = clip_get(&url, token, tls, (0, 1), None)?;
    let len = r
        .header("content-range")
        .and_then(|v| v.rsplit_once('/'))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        .ok_or_else(|| PeerClipError::Failed("the peer's clip has no length".into()))?;
    let etag = r
        .header("etag")
        .map(str::to_string)
        .ok_or_else(|| PeerClipError::Failed("the peer's clip has no ETag".into()))?;
    Ok(PeerClip {
        gaps: r.header("x-tandem-gaps").map(str::to_string),
        range: r.header("x-tandem-range").map(str::to_string),
        url,
        len,
        etag,
    })
}

impl PeerClip {
    /// Bytes `from..to` of the clip (blocking), at most `CLIP_PIECE`; the
    /// clip must still be the version opened.
    pub fn piece(&self, from: u64, to: u64, token: &str, tls: Option<&PeerTls>) -> Result<Vec<u8>, PeerClipError> {
        let to = to.min(from + CLIP_PIECE).min(self.len);
        let r = clip_get(&self.url, token, tls, (from, to), Some(&self.etag))?;
        if r.body.len() as u64 != to - from {
            return Err(PeerClipError::Failed(format!(
                "the peer sent {} bytes for a range of {} (its clip changed?)",
                r.body.len(),
                to - from
            )));
        }
        Ok(r.body)
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The peers' runs for the holes in `local`, with a note per peer asked
/// (blocking). A peer asked is not asked again for what an earlier one
/// already filled.
pub fn federate(
    peers: &[PeerRef],
    local: &[(Time90k, Time90k)],
    start: Time90k,
    end: Time90k,
    token: Option<&str>,
    tls: Option<&PeerTls>,
) -> (Vec<Run>, Vec<PeerNote>) {
    let mut have: Vec<(Time90k, Time90k)> = local.to_vec();
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    for p in peers {
        let gaps = holes(&have, start, end);
        if gaps.is_empty() {
            break;
        }
        let Some(token) = token else {
            notes.push(PeerNote {
                peer: p.name.clone(),
                channel: p.channel,
                error: Some("no failover.peer_token is configured".into()),
            });
            continue;
        };
        let (a, b) = (gaps[0].0, gaps[gaps.len() - 1].1);
        match peer_runs(p, a, b, token, tls) {
            Ok(theirs) => {
                let got = fill(&gaps, &p.name, &theirs);
                for r in &got {
                    if let (Ok(s), Ok(e)) = (Time90k::parse_rfc3339(&r.start), Time90k::parse_rfc3339(&r.end)) {
                        have.push((s, e));
                    }
                }
                runs.extend(got);
                notes.push(PeerNote {
                    peer: p.name.clone(),
                    channel: p.channel,
                    error: None,
                });
            }
            Err(e) => {
                tracing::debug!(peer = %p.name, "federated recordings: {e}");
                notes.push(PeerNote {
                    peer: p.name.clone(),
                    channel: p.channel,
                    error: Some(e),
                });
            }
        }
    }
    (runs, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time90k {
        Time90k(1_700_000_000 * 90_000 + s * 90_000)
    }

    fn run(a: i64, b: i64, frames: u64) -> Run {
        Run {
            start: t(a).to_rfc3339(),
            end: t(b).to_rfc3339(),
            frames,
            bytes: frames * 10,
            ..Default::default()
        }
    }

    #[test]
    fn holes_are_what_no_local_run_covers() {
        assert_eq!(holes(&[], t(0), t(10)), vec![(t(0), t(10))]);
        assert_eq!(holes(&[(t(0), t(10))], t(0), t(10)), vec![]);
        assert_eq!(
            holes(&[(t(2), t(4)), (t(3), t(5)), (t(7), t(8))], t(0), t(10)),
            vec![(t(0), t(2)), (t(5), t(7)), (t(8), t(10))]
        );
        // Runs outside the range, and a sliver shorter than a tenth of a second.
        assert_eq!(
            holes(&[(t(-5), t(1)), (Time90k(t(1).0 + 4_000), t(20))], t(0), t(10)),
            vec![]
        );
    }

    #[test]
    fn peer_runs_fill_only_the_holes_and_are_marked() {
        let gaps = [(t(0), t(2)), (t(5), t(7))];
        let got = fill(&gaps, "nvr-b:8080", &[run(1, 6, 50), run(8, 9, 10)]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].start.as_str(), got[0].end.as_str()),
            (t(1).to_rfc3339().as_str(), t(2).to_rfc3339().as_str())
        );
        assert_eq!(got[0].frames, 10);
        assert_eq!(got[1].start, t(5).to_rfc3339());
        assert_eq!(got[1].end, t(6).to_rfc3339());
        assert!(got.iter().all(|r| r.held_by.as_deref() == Some("nvr-b:8080")));
        // A run with unreadable times is skipped, not trusted.
        let bad = Run {
            start: "yesterday".into(),
            end: t(1).to_rfc3339(),
            ..Default::default()
        };
        assert!(fill(&gaps, "p", &[bad]).is_empty());
    }

    #[test]
    fn a_peer_that_is_down_is_a_note_not_an_error() {
        // A port nobody listens on (bound, then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = PeerRef {
            name: format!("127.0.0.1:{port}"),
            base_url: format!("http://127.0.0.1:{port}"),
            channel: 1,
        };
        let started = Instant::now();
        let (runs, notes) = federate(&[p], &[], t(0), t(10), Some("token-0123456789abcdef"), None);
        assert!(runs.is_empty());
        assert_eq!(notes.len(), 1);
        assert!(notes[0].error.as_deref().unwrap().contains("cannot reach"), "{notes:?}");
        assert!(started.elapsed() < PEER_TIMEOUT + Duration::from_secs(1));
        // Nothing is asked when the local footage covers the range.
        let (runs, notes) = federate(
            &[PeerRef {
                name: "x".into(),
                base_url: "http://127.0.0.1:1".into(),
                channel: 1,
            }],
            &[(t(0), t(10))],
            t(0),
            t(10),
            None,
            None,
        );
        assert!(runs.is_empty() && notes.is_empty());
    }
}
