//! What the pool keeps in etcd and the decisions taken on it, without etcd:
//! the key layout under the prefix, the member record and the assignment
//! document (JSON), the scheduler's step (records → `placement::place` → the
//! document to write, if it changed) and an NVR's step (document → the
//! cameras assigned to it → what to start and stop). Must never perform I/O:
//! `membership` reads and writes what this module names and builds.
//!
//! # Key layout (prefix `/tandem/` by default)
//!
//! - `<prefix>members/<name>`: a `MemberRecord`, attached to the member's
//!   lease: it disappears when the member stops renewing it.
//! - `<prefix>scheduler`: etcd's election of that name; each candidate's key
//!   is `<prefix>scheduler/<lease id in hex>` (the election API's own), on
//!   its lease, and the oldest one is the scheduler.
//! - `<prefix>recording/<name>`: the cameras a member records now (a JSON
//!   list), attached to its lease. An NVR that lost a camera to another
//!   stops it only once the other lists it here (make-before-break,
//!   `handover`).
//! - `<prefix>assignment`: the whole assignment, one `AssignmentDoc`. One
//!   document rather than a key per camera: the scheduler replaces it in one
//!   compare-and-swap and every NVR sees one consistent version; the cost is
//!   etcd's request limit (1.5 MiB by default, about 30,000 cameras with
//!   20-character ids and names).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::placement::{self, Assignment, Camera, Capacity, Member, Placement, PlacementError, RebalanceLimits};

/// The keys of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` as configured (`[pool] prefix`): starts and ends with `/`.
    pub fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }
    /// Prefix of every member's record (ends with `/`).
    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }
    pub fn member(&self, name: &str) -> String {
        format!("{}members/{name}", self.prefix)
    }
    /// The member name in a member record's key, if the key is one.
    pub fn member_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("members/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
    }
    /// Every key of the pool starts with it (ends with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Prefix of every member's recording list (ends with `/`).
    pub fn recordings(&self) -> String {
        format!("{}recording/", self.prefix)
    }
    pub fn recording(&self, name: &str) -> String {
        format!("{}recording/{name}", self.prefix)
    }
    /// The member name in a recording list's key, if the key is one.
    pub fn recording_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("recording/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
    }
    /// The pool's shared parameter file (`config push --pool`).
    pub fn config(&self) -> String {
        format!("{}config", self.prefix)
    }
    /// A member's report of applying the shared file.
    pub fn applied(&self, name: &str) -> String {
        format!("{}config-applied/{name}", self.prefix)
    }
    /// The member name in an applied report's key, if the key is one.
    pub fn applied_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("config-applied/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
    }
    /// Whether `key` is one candidate's key in the scheduler election
    /// (`<prefix>scheduler/<lease in hex>`).
    pub fn is_candidate(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .and_then(|k| k.strip_prefix("scheduler/"))
            .is_some_and(|l| !l.is_empty() && !l.contains('/'))
    }
    /// The election's name.
    pub fn scheduler(&self) -> String {
        format!("{}scheduler", self.prefix)
    }
    pub fn assignment(&self) -> String {
        format!("{}assignment", self.prefix)
    }
}

/// What a member publishes about itself under `members/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub channels: u32,
    pub kbps: u64,
    /// Where the other NVRs reach it (its HTTP API).
    pub address: String,
    /// Tandem's version, so a mixed pool during an upgrade is visible.
    pub version: String,
    /// The pool's cameras this member has a channel for, and that channel:
    /// where the others ask for its footage of a camera (one timeline).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cameras: BTreeMap<String, u32>,
}

impl MemberRecord {
    pub fn capacity(&self) -> Capacity {
        Capacity {
            channels: self.channels,
            kbps: self.kbps,
        }
    }
}

/// The stored assignment (`<prefix>assignment`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentDoc {
    /// The scheduler that wrote it.
    pub scheduler: String,
    /// Camera id → member name; cameras no member can take are absent.
    pub cameras: Assignment,
}

/// What a member publishes under `recording/<name>`: the cameras it records
/// now, and the revision of the stored assignment it had acted on when it
/// looked. A list answers only for that assignment: one written before a
/// camera came back to this member may still name it from its previous
/// stay, after this member let it go (a camera moved away and straight
/// back, as when a partitioned member returns). `handover` therefore takes
/// the list as proof of recording only once its revision reaches the
/// stored assignment's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingList {
    pub cameras: BTreeSet<String>,
    /// etcd's `mod_revision` of the assignment acted on (0: none read yet).
    pub assignment: i64,
}

/// Whether a recording list that answers to assignment revision `as_of`
/// (`None`: a bare list of an earlier version, trusted as before) proves
/// recording under the stored assignment of revision `stored`. The one rule
/// both `PoolView::records` and the pool lab (reading `GET /api/v1/pool`)
/// judge by.
pub fn list_answers_to(as_of: Option<i64>, stored: i64) -> bool {
    as_of.is_none_or(|r| r >= stored)
}

/// A member's recording list. The bare JSON list of earlier versions
/// (before `RecordingList`) reads as `None` for the revision: such a member
/// is trusted as it was then, so a pool upgraded one NVR at a time keeps
/// handing cameras over.
pub fn decode_recording(member: &str, value: &[u8]) -> Result<(BTreeSet<String>, Option<i64>), RecordError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Now(RecordingList),
        Bare(BTreeSet<String>),
    }
    match serde_json::from_slice(value) {
        Ok(Either::Now(l)) => Ok((l.cameras, Some(l.assignment))),
        Ok(Either::Bare(cameras)) => Ok((cameras, None)),
        Err(source) => Err(RecordError::Recording {
            member: member.to_string(),
            source,
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("member record {key:?} is not valid JSON: {source}")]
    Member { key: String, source: serde_json::Error },
    #[error("member {member:?}'s recording list is neither {{\"cameras\": [...], \"assignment\": revision}} nor a JSON list of cameras: {source}")]
    Recording { member: String, source: serde_json::Error },
    #[error("the stored assignment is not valid JSON: {0}")]
    Assignment(serde_json::Error),
    #[error("the pool's stored configuration is not valid JSON: {0}")]
    Config(serde_json::Error),
    #[error("member {member:?}'s configuration report is not valid JSON: {source}")]
    Applied { member: String, source: serde_json::Error },
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

pub fn decode_member(key: &str, value: &[u8]) -> Result<MemberRecord, RecordError> {
    serde_json::from_slice(value).map_err(|source| RecordError::Member {
        key: key.to_string(),
        source,
    })
}

pub fn decode_assignment(value: &[u8]) -> Result<AssignmentDoc, RecordError> {
    serde_json::from_slice(value).map_err(RecordError::Assignment)
}

/// The document as stored (compact JSON; the maps are ordered, so equal
/// assignments give equal bytes).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize: plain maps and strings")
}

/// How far the scheduler rebalances when a member joins (a new NVR, or one
/// that returns): until the most and least loaded members are within a fifth
/// of their capacity of each other, at most 64 cameras per join. Only on a
/// join: a failure moves exactly the failed member's cameras, and a camera
/// on a healthy member moves only to fill a member that came (each such
/// move is carried out make-before-break by `handover`).
pub const JOIN_REBALANCE: RebalanceLimits = RebalanceLimits {
    max_moves: 64,
    tolerance: 0.2,
};

/// The scheduler's step: the members registered now (name → record; each
/// holds its lease, so each is alive), the pool's cameras and the stored
/// assignment → the placement, and the document to write when it differs
/// from the stored one (`None`: nothing to write). With `rebalance` (a
/// member joined), cameras also move from the most to the least loaded.
pub fn schedule(
    scheduler: &str,
    members: &BTreeMap<String, MemberRecord>,
    cameras: &[Camera],
    stored: Option<&AssignmentDoc>,
    rebalance: Option<RebalanceLimits>,
) -> Result<(Placement, Option<AssignmentDoc>), RecordError> {
    let members: Vec<Member> = members
        .iter()
        .map(|(name, r)| Member {
            name: name.clone(),
            capacity: r.capacity(),
            alive: true,
        })
        .collect();
    let empty = Assignment::new();
    let current = stored.map_or(&empty, |d| &d.cameras);
    let placement = match rebalance {
        Some(limits) => placement::rebalance(&members, cameras, current, limits)?,
        None => placement::place(&members, cameras, current)?,
    };
    let write = (stored.is_none() || placement.assignment != *current).then(|| AssignmentDoc {
        scheduler: scheduler.to_string(),
        cameras: placement.assignment.clone(),
    });
    Ok((placement, write))
}

/// The cameras `doc` assigns to `name`.
pub fn assigned_to(doc: &AssignmentDoc, name: &str) -> BTreeSet<String> {
    doc.cameras
        .iter()
        .filter(|(_, m)| m.as_str() == name)
        .map(|(c, _)| c.clone())
        .collect()
}

/// What an NVR does when its cameras change from `old` to `new`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub start: BTreeSet<String>,
    pub stop: BTreeSet<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty()
    }
}

pub fn diff(old: &BTreeSet<String>, new: &BTreeSet<String>) -> Changes {
    Changes {
        start: new.difference(old).cloned().collect(),
        stop: old.difference(new).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::capacity::Priority;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn record(channels: u32) -> MemberRecord {
        MemberRecord {
            channels,
            kbps: 100_000,
            address: "http://a".into(),
            version: "0".into(),
            cameras: Default::default(),
        }
    }

    fn camera(id: &str) -> Camera {
        Camera {
            id: id.into(),
            kbps: 2000,
            priority: Priority::Medium,
        }
    }

    #[test]
    fn keys_layout() {
        let k = Keys::new("/t/");
        assert_eq!(k.member("nvr-1"), "/t/members/nvr-1");
        assert_eq!(k.members(), "/t/members/");
        assert_eq!(k.scheduler(), "/t/scheduler");
        assert_eq!(k.assignment(), "/t/assignment");
        assert_eq!(Keys::new("/t"), k);
        assert_eq!(k.member_name("/t/members/nvr-1"), Some("nvr-1"));
        for bad in ["/t/members/", "/t/members/a/b", "/u/members/a", "/t/assignment"] {
            assert_eq!(k.member_name(bad), None, "{bad}");
        }
        assert_eq!(k.recording("nvr-1"), "/t/recording/nvr-1");
        assert_eq!(k.recording_name("/t/recording/nvr-1"), Some("nvr-1"));
        assert_eq!(k.recording_name("/t/members/nvr-1"), None);
        assert!(k.is_candidate("/t/scheduler/694d7b3e2c1a"));
        assert!(!k.is_candidate("/t/scheduler"));
        assert!(!k.is_candidate("/t/scheduler/"));
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let r = record(4);
        assert_eq!(decode_member("k", &encode(&r)).unwrap(), r);
        assert!(matches!(decode_member("k", b"{"), Err(RecordError::Member { .. })));
        let d = AssignmentDoc {
            scheduler: "a".into(),
            cameras: [("c1".to_string(), "a".to_string())].into(),
        };
        assert_eq!(decode_assignment(&encode(&d)).unwrap(), d);
        assert!(decode_assignment(b"[]").is_err());
    }

    #[test]
    fn diff_gives_start_and_stop() {
        let c = diff(&set(&["a", "b"]), &set(&["b", "c"]));
        assert_eq!(c.start, set(&["c"]));
        assert_eq!(c.stop, set(&["a"]));
        assert!(diff(&set(&["a"]), &set(&["a"])).is_empty());
        assert_eq!(diff(&set(&[]), &set(&["x"])).start, set(&["x"]));
    }

    #[test]
    fn assigned_to_filters_by_member() {
        let d = AssignmentDoc {
            scheduler: "a".into(),
            cameras: [("c1", "a"), ("c2", "b"), ("c3", "a")]
                .into_iter()
                .map(|(c, m)| (c.to_string(), m.to_string()))
                .collect(),
        };
        assert_eq!(assigned_to(&d, "a"), set(&["c1", "c3"]));
        assert_eq!(assigned_to(&d, "z"), set(&[]));
    }

    #[test]
    fn schedule_writes_only_changes() {
        let members: BTreeMap<_, _> = [("a".to_string(), record(2)), ("b".to_string(), record(2))].into();
        let cams: Vec<_> = ["c1", "c2", "c3"].iter().map(|c| camera(c)).collect();
        let (p, write) = schedule("a", &members, &cams, None, None).unwrap();
        let doc = write.expect("nothing stored: written");
        assert_eq!(doc.cameras.len(), 3);
        assert_eq!(p.assignment, doc.cameras);
        // The same state again: nothing to write.
        let (_, again) = schedule("a", &members, &cams, Some(&doc), None).unwrap();
        assert_eq!(again, None);
        // b leaves: its cameras go to a within a's two channels; one is left out.
        let only_a: BTreeMap<_, _> = [("a".to_string(), record(2))].into();
        let (p, write) = schedule("a", &only_a, &cams, Some(&doc), None).unwrap();
        let doc2 = write.expect("changed");
        assert_eq!(doc2.cameras.len(), 2);
        assert!(doc2.cameras.values().all(|m| m == "a"));
        assert_eq!(p.unassigned.len(), 1);
    }

    #[test]
    fn a_join_rebalances_toward_the_newcomer_and_nothing_else_moves() {
        let cams: Vec<_> = (1..=8).map(|i| camera(&format!("c{i}"))).collect();
        let a_only: BTreeMap<_, _> = [("a".to_string(), record(8))].into();
        let (_, doc) = schedule("a", &a_only, &cams, None, None).unwrap();
        let doc = doc.unwrap();
        assert!(doc.cameras.values().all(|m| m == "a"));
        let both: BTreeMap<_, _> = [("a".to_string(), record(8)), ("b".to_string(), record(8))].into();
        // Without a join (a scheduler newly elected, a camera list change): nothing moves.
        let (p, write) = schedule("a", &both, &cams, Some(&doc), None).unwrap();
        assert!(write.is_none() && p.moves.is_empty());
        // b joined: cameras move to b only, until within the tolerance.
        let (p, write) = schedule("a", &both, &cams, Some(&doc), Some(JOIN_REBALANCE)).unwrap();
        let after = write.expect("moved");
        let on_b = assigned_to(&after, "b").len();
        assert!((3..=4).contains(&on_b), "{after:?}");
        assert_eq!(p.moves.len(), on_b);
        for (c, m) in &after.cameras {
            assert!(m == "b" || doc.cameras[c] == "a", "{c} moved elsewhere");
        }
        // Balanced already: a second join step moves nothing.
        let (_, again) = schedule("a", &both, &cams, Some(&after), Some(JOIN_REBALANCE)).unwrap();
        assert!(again.is_none());
    }

    #[test]
    fn schedule_of_an_empty_pool_writes_an_empty_assignment() {
        let (_, write) = schedule("a", &BTreeMap::new(), &[camera("c1")], None, None).unwrap();
        assert_eq!(write.unwrap().cameras, Assignment::new());
    }
}
