//! The peer protocol between Tandem NVRs, typed once and used by both ends:
//! the status a probe reads (`GET /api/v1/status`, with the standby's offer
//! to back channels up), what an import upload answers, and the recordings
//! a federated timeline asks a peer for. Also the directory of peers that
//! announced themselves as backups of this NVR's channels through their
//! probes, so a primary knows its standby without configuring it.
//!
//! Must never trust an offer that did not come with the peer token (the
//! route checks it), and never keep more than `MAX_LEARNED` offers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::RecordingState;

/// `GET /api/v1/status`: the NVR at a glance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub nvr_id: String,
    #[serde(default)]
    pub uptime_s: f64,
    /// RFC 3339.
    #[serde(default)]
    pub now: String,
    #[serde(default)]
    pub channels: Vec<ChannelStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub number: u32,
    #[serde(default)]
    pub binding: Option<String>,
    /// The recording state (`recording`, `catching_up`, `idle`, …); a peer
    /// too old to send it reads as idle.
    #[serde(default)]
    pub recording: RecordingState,
    #[serde(default)]
    pub mode: String,
    /// Live footage arrives and the channel's policy applies to it now:
    /// what failback waits for.
    #[serde(default)]
    pub live: bool,
    #[serde(default)]
    pub connected: bool,
}

impl Status {
    /// The channels recording live footage now (`recording` from peers
    /// older than the `live` field).
    pub fn recording(&self) -> Vec<u32> {
        self.channels
            .iter()
            .filter(|c| c.live || c.recording == RecordingState::Recording)
            .map(|c| c.number)
            .collect()
    }
}

/// The query of a standby's status probe: "I back up these channels of
/// yours, and answer on this port" — how a primary learns where its
/// footage is held during a failover.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusQuery {
    /// The standby's HTTP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_port: Option<u16>,
    /// The standby answers over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_tls: Option<bool>,
    /// `PRIMARY:STANDBY` channel pairs, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_channels: Option<String>,
}

/// At most this many channel pairs in one offer.
pub const MAX_PAIRS: usize = 4096;

impl StatusQuery {
    /// The offer of a rule's backup map (`local` is the standby's channel,
    /// `remote` the primary's).
    pub fn offer(port: u16, tls: bool, pairs: &[(u32, u32)]) -> StatusQuery {
        let list: Vec<String> = pairs.iter().map(|(p, s)| format!("{p}:{s}")).collect();
        StatusQuery {
            backup_port: Some(port),
            backup_tls: Some(tls),
            backup_channels: Some(list.join(",")),
        }
    }

    /// The query string (`?…`), empty without an offer.
    pub fn to_query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(p) = self.backup_port {
            s.append_pair("backup_port", &p.to_string());
        }
        if let Some(t) = self.backup_tls {
            s.append_pair("backup_tls", if t { "true" } else { "false" });
        }
        if let Some(c) = &self.backup_channels {
            s.append_pair("backup_channels", c);
        }
        let q = s.finish();
        if q.is_empty() {
            q
        } else {
            format!("?{q}")
        }
    }

    /// The (primary, standby) channel pairs, or why the offer is malformed.
    pub fn pairs(&self) -> Result<Vec<(u32, u32)>, String> {
        let Some(list) = &self.backup_channels else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, item) in list.split(',').filter(|s| !s.is_empty()).enumerate() {
            if i >= MAX_PAIRS {
                return Err(format!("backup_channels: more than {MAX_PAIRS} pairs"));
            }
            let pair = item
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
                .filter(|(a, b)| (1..=4096).contains(a) && (1..=4096).contains(b));
            match pair {
                Some(p) => out.push(p),
                None => {
                    return Err(format!(
                        "backup_channels: `{item}` is not PRIMARY:STANDBY channel numbers"
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// What an import upload answers (`GET` and `PUT` of
/// `/api/v1/import/{origin}/{segment}`): the bytes the receiver holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Required: an error answer (`{"error": …}`) is not a state.
    pub received: u64,
    /// The (origin, segment) pair was merged already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
}

/// The query of `GET /api/v1/channels/{n}/recordings`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingsQuery {
    pub start: String,
    pub end: String,
    /// `1`: include a backup peer's footage for ranges this NVR lacks
    /// (the default for channels with a backup peer); `0`: this NVR only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<String>,
}

/// One run of footage as the recordings answer lists it; fields this type
/// does not name are carried through untouched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub frames: u64,
    #[serde(default)]
    pub bytes: u64,
    /// The peer NVR holding this footage (`host:port`); absent: this NVR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A peer asked for its part of a federated answer, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNote {
    pub peer: String,
    pub channel: u32,
    /// Why the peer's footage is missing from the answer (down, refused, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `GET /api/v1/channels/{n}/recordings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recordings {
    pub channel: u32,
    pub recordings: Vec<Run>,
    /// Peers asked for a federated answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerNote>,
    /// The stretches gap fill is fetching or has fetched (`web::gapfill`).
    #[serde(default)]
    pub gapfill: Vec<serde_json::Value>,
}

/// Offers older than this are forgotten: a standby probes every interval.
pub const LEARNED_TTL: Duration = Duration::from_secs(60);
/// Standbys remembered at most.
pub const MAX_LEARNED: usize = 64;

/// A standby that announced itself through its probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    pub tls: bool,
    /// (this NVR's channel, the standby's channel).
    pub pairs: Vec<(u32, u32)>,
    pub seen: Instant,
}

/// The standbys that back this NVR's channels up, by (address, port).
#[derive(Debug, Default)]
pub struct Directory {
    learned: Mutex<BTreeMap<(IpAddr, u16), Learned>>,
}

impl Directory {
    /// Records an offer (from a request that carried the peer token).
    pub fn learn(&self, addr: IpAddr, port: u16, tls: bool, pairs: Vec<(u32, u32)>, now: Instant) {
        let mut m = self.learned.lock().expect("peer directory lock");
        m.retain(|_, l| now.saturating_duration_since(l.seen) < LEARNED_TTL);
        if m.len() >= MAX_LEARNED && !m.contains_key(&(addr, port)) {
            // The stalest gives way: a live standby probes again within seconds.
            if let Some(k) = m.iter().min_by_key(|(_, l)| l.seen).map(|(k, _)| *k) {
                m.remove(&k);
            }
        }
        m.insert((addr, port), Learned { tls, pairs, seen: now });
    }

    /// The standbys backing `channel` up now: (address, port, tls, their channel).
    pub fn backups_of(&self, channel: u32, now: Instant) -> Vec<(IpAddr, u16, bool, u32)> {
        let m = self.learned.lock().expect("peer directory lock");
        m.iter()
            .filter(|(_, l)| now.saturating_duration_since(l.seen) < LEARNED_TTL)
            .flat_map(|((ip, port), l)| {
                l.pairs
                    .iter()
                    .filter(|(mine, _)| *mine == channel)
                    .map(move |(_, theirs)| (*ip, *port, l.tls, *theirs))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_round_trips_through_the_query() {
        let q = StatusQuery::offer(8081, false, &[(1, 3), (2, 4)]);
        let text = q.to_query();
        assert_eq!(text, "?backup_port=8081&backup_tls=false&backup_channels=1%3A3%2C2%3A4");
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&text.as_bytes()[1..])
            .into_owned()
            .collect();
        assert_eq!(pairs[2], ("backup_channels".to_string(), "1:3,2:4".to_string()));
        let back = StatusQuery {
            backup_channels: Some(pairs[2].1.clone()),
            ..Default::default()
        };
        assert_eq!(back.pairs().unwrap(), vec![(1, 3), (2, 4)]);
        assert_eq!(StatusQuery::default().to_query(), "");
    }

    #[test]
    fn a_malformed_offer_is_refused_with_the_item() {
        for bad in ["1", "1:x", "0:1", "1:5000", "a:b"] {
            let q = StatusQuery {
                backup_channels: Some(bad.into()),
                ..Default::default()
            };
            let e = q.pairs().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        let many = (0..=MAX_PAIRS).map(|_| "1:1").collect::<Vec<_>>().join(",");
        let q = StatusQuery {
            backup_channels: Some(many),
            ..Default::default()
        };
        assert!(q.pairs().unwrap_err().contains("more than"));
    }

    #[test]
    fn status_lists_recording_channels_old_and_new() {
        let s: Status = serde_json::from_value(serde_json::json!({
            "channels": [
                { "number": 1, "live": true, "recording": "catching_up" },
                { "number": 2, "recording": "recording" },
                { "number": 3, "live": false, "recording": "idle" },
            ]
        }))
        .unwrap();
        assert_eq!(s.recording(), vec![1, 2]);
    }

    #[test]
    fn recording_states_keep_their_wire_names_and_a_newer_peers_parse() {
        let names = [
            (RecordingState::Idle, "idle"),
            (RecordingState::Recording, "recording"),
            (RecordingState::CatchingUp, "catching_up"),
            (RecordingState::DiskFull, "disk_full"),
            (RecordingState::NoFileDescriptors, "no_file_descriptors"),
            (RecordingState::StorageError, "storage_error"),
        ];
        for (state, name) in names {
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<RecordingState>(serde_json::json!(name)).unwrap(),
                state
            );
        }
        let s: Status = serde_json::from_value(serde_json::json!({
            "channels": [
                { "number": 1, "recording": "defragmenting" },
                { "number": 2 },
                { "number": 3, "recording": "recording" },
            ]
        }))
        .unwrap();
        assert_eq!(s.channels[0].recording, RecordingState::Unknown);
        assert_eq!(s.channels[1].recording, RecordingState::Idle);
        assert_eq!(s.recording(), vec![3]);
    }

    #[test]
    fn the_directory_forgets_and_is_bounded() {
        let d = Directory::default();
        let t0 = Instant::now();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        d.learn(ip, 8081, false, vec![(1, 2)], t0);
        assert_eq!(d.backups_of(1, t0), vec![(ip, 8081, false, 2)]);
        assert!(d.backups_of(2, t0).is_empty());
        assert!(d.backups_of(1, t0 + LEARNED_TTL).is_empty());
        for p in 0..(MAX_LEARNED as u16 + 10) {
            d.learn(
                ip,
                9000 + p,
                false,
                vec![(1, 1)],
                t0 + Duration::from_millis(u64::from(p)),
            );
        }
        let now = t0 + Duration::from_secs(1);
        assert_eq!(d.backups_of(1, now).len(), MAX_LEARNED);
        // The newest offers are the ones kept.
        assert!(d
            .backups_of(1, now)
            .iter()
            .any(|b| b.1 == 9000 + MAX_LEARNED as u16 + 9));
    }

    #[test]
    fn a_run_keeps_fields_it_does_not_name() {
        let v = serde_json::json!({ "start": "a", "end": "b", "frames": 3, "codec": "h264", "origin": "gapfill" });
        let r: Run = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.frames, 3);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "start": "a", "end": "b", "frames": 3, "bytes": 0, "codec": "h264", "origin": "gapfill"
            })
        );
    }
}
