//! The audit log: who logged in, watched, exported or changed what, kept in
//! the store's index as an append-only hash chain.
//!
//! Invariant: every row's `hash` is `entry_hash(prev_hash, row)` and its
//! `prev_hash` is the `hash` of the row before it (by id); the first row
//! kept chains to the anchor in `meta` (`audit_anchor`: 32 zero bytes, or the
//! hash of the last row retention removed), and `meta.audit_head` names the
//! last row written. Editing, inserting or deleting a row in the middle breaks
//! the chain at that row; removing rows at either end breaks the anchor or the
//! head. (Someone who can rewrite the whole database can also recompute the
//! chain: this detects tampering, it cannot prevent it.)
//!
//! Appends read the previous hash inside their own write transaction, so a CLI
//! command appending while the server runs keeps one chain. This module must
//! never be on the recording path: the server appends through `Appender`, a
//! bounded queue drained by its own thread.

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::evidence::hex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Login,
    LoginFailed,
    Logout,
    ClipExport,
    EvidenceExport,
    LiveView,
    EventTrigger,
    UserChange,
    TokenChange,
    ConfigChange,
    PeerImport,
    /// An event picture opened through a signed alert link (no login).
    SnapshotLink,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::Login,
        Action::LoginFailed,
        Action::Logout,
        Action::ClipExport,
        Action::EvidenceExport,
        Action::LiveView,
        Action::EventTrigger,
        Action::UserChange,
        Action::TokenChange,
        Action::ConfigChange,
        Action::PeerImport,
        Action::SnapshotLink,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::Logout => "logout",
            Action::ClipExport => "clip_export",
            Action::EvidenceExport => "evidence_export",
            Action::LiveView => "live_view",
            Action::EventTrigger => "event_trigger",
            Action::UserChange => "user_change",
            Action::TokenChange => "token_change",
            Action::ConfigChange => "config_change",
            Action::PeerImport => "peer_import",
            Action::SnapshotLink => "snapshot_link",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One thing someone did. `target` names what (a channel and range, a user, a
/// token); `outcome` is `ok` or why it was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub actor: String,
    pub addr: Option<IpAddr>,
    pub action: Action,
    pub target: String,
    pub outcome: String,
}

impl Entry {
    pub fn new(actor: impl Into<String>, addr: Option<IpAddr>, action: Action, target: impl Into<String>) -> Entry {
        Entry {
            actor: actor.into(),
            addr,
            action,
            target: target.into(),
            outcome: "ok".into(),
        }
    }

    pub fn outcome(mut self, o: impl Into<String>) -> Entry {
        self.outcome = o.into();
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the audit log is busy; try again")]
    Busy,
    #[error("the audit log has stopped")]
    Stopped,
    #[error("cannot write the audit log: {0}")]
    Failed(String),
}

/// One stored row, as `GET /api/v1/audit` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub addr: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
}

/// SHA-256 over the previous hash and the row, each field length-prefixed so
/// that no two different rows encode alike.
pub fn entry_hash(prev: &[u8], id: i64, at_ms: i64, row: &Row) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tandem-audit-v1");
    h.update(prev);
    h.update(id.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for f in [
        row.actor.as_str(),
        row.addr.as_deref().unwrap_or(""),
        row.action.as_str(),
        row.target.as_str(),
        row.outcome.as_str(),
    ] {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().into()
}

fn meta_hash(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
        r.get::<_, String>(0)
    })
    .optional()
    .map(|v| v.and_then(|s| hex_decode(&s)))
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )?;
    Ok(())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Appends entries in one write transaction, chained to the last stored row;
/// returns their ids in order.
pub fn append_all(conn: &Connection, entries: &[(i64, Entry)]) -> Result<Vec<i64>, AuditError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (mut id, mut prev) = match last {
        Some((id, h)) => (id, h),
        None => (0, meta_hash(&tx, "audit_anchor")?.unwrap_or_else(|| vec![0; 32])),
    };
    let mut ids = Vec::with_capacity(entries.len());
    for (at_ms, e) in entries {
        id += 1;
        let row = Row {
            id,
            at_ms: *at_ms,
            actor: e.actor.clone(),
            addr: e.addr.map(|a| a.to_string()),
            action: e.action.as_str().into(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
        };
        let hash = entry_hash(&prev, id, *at_ms, &row);
        tx.execute(
            "INSERT INTO audit (id, at_ms, actor, addr, action, target, outcome, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                at_ms,
                row.actor,
                row.addr,
                row.action,
                row.target,
                row.outcome,
                prev,
                hash.as_slice()
            ],
        )?;
        prev = hash.to_vec();
        ids.push(id);
    }
    if let Some(&last) = ids.last() {
        set_meta(&tx, "audit_head", &format!("{last}:{}", hex(&prev)))?;
    }
    tx.commit()?;
    Ok(ids)
}

/// Appends one entry (used by CLI commands that act on the store directly).
pub fn append(conn: &Connection, at_ms: i64, e: &Entry) -> Result<i64, AuditError> {
    Ok(append_all(conn, &[(at_ms, e.clone())])?[0])
}

/// Removes entries older than `before_ms`, moving the anchor to the hash of
/// the last one removed so the chain still verifies from the first kept row.
pub fn expire(conn: &Connection, before_ms: i64) -> Result<usize, AuditError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let last_gone: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT id, hash FROM audit WHERE at_ms < ?1 ORDER BY id DESC LIMIT 1",
            [before_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, hash)) = last_gone else {
        return Ok(0);
    };
    // By id, not time: the chain is ordered by id, and the anchor must be the
    // hash of the row just before the first one kept.
    let n = tx.execute("DELETE FROM audit WHERE id <= ?1", [id])?;
    set_meta(&tx, "audit_anchor", &hex(&hash))?;
    tx.commit()?;
    Ok(n)
}

/// A search of the log, newest last, at most `limit` rows.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub limit: usize,
}

pub fn search(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, actor, addr, action, target, outcome FROM audit
         WHERE (?1 IS NULL OR at_ms >= ?1) AND (?2 IS NULL OR at_ms < ?2)
           AND (?3 IS NULL OR actor = ?3 OR actor LIKE ?3 || ' (token %')
           AND (?4 IS NULL OR action = ?4)
         ORDER BY id DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![
            q.start_ms,
            q.end_ms,
            q.actor,
            q.action.map(|a| a.as_str()),
            q.limit as i64
        ],
        read_row,
    )?;
    let mut v = rows.collect::<rusqlite::Result<Vec<Row>>>()?;
    v.reverse();
    Ok(v)
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        actor: r.get(2)?,
        addr: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        outcome: r.get(6)?,
    })
}

/// What `tandem verify --audit` found.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub entries: u64,
    /// Each break of the chain: the row (or place) and what is wrong.
    pub problems: Vec<String>,
}

/// Walks the whole chain from the anchor to the head.
pub fn verify(conn: &Connection) -> rusqlite::Result<Verdict> {
    let mut v = Verdict::default();
    let mut prev = meta_hash(conn, "audit_anchor")?.unwrap_or_else(|| vec![0; 32]);
    let mut last_id = None;
    let mut stmt =
        conn.prepare("SELECT id, at_ms, actor, addr, action, target, outcome, prev_hash, hash FROM audit ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let row = read_row(r)?;
        let stored_prev: Vec<u8> = r.get(7)?;
        let stored: Vec<u8> = r.get(8)?;
        v.entries += 1;
        if let Some(l) = last_id {
            if row.id != l + 1 {
                v.problems
                    .push(format!("entries {} to {} are missing (deleted)", l + 1, row.id - 1));
            }
        }
        if stored_prev != prev {
            v.problems.push(format!(
                "entry {}: does not follow the entry before it (an entry before it was changed, inserted or deleted)",
                row.id
            ));
        }
        if entry_hash(&stored_prev, row.id, row.at_ms, &row).as_slice() != stored.as_slice() {
            v.problems.push(format!(
                "entry {} ({} by {} at {} ms): its contents were changed after it was written",
                row.id, row.action, row.actor, row.at_ms
            ));
        }
        prev = stored;
        last_id = Some(row.id);
    }
    let head: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'audit_head'", [], |r| r.get(0))
        .optional()?;
    if let Some(h) = head {
        let expect = last_id.map(|id| format!("{id}:{}", hex(&prev)));
        if expect.as_deref() != Some(h.as_str()) {
            let id = h.split(':').next().unwrap_or("?");
            v.problems.push(format!(
                "the log ends before its last written entry {id}: entries at the end were deleted or changed"
            ));
        }
    }
    Ok(v)
}

/// Hands entries to a thread that appends them in small batches, so a burst
/// of audited requests costs the index one short transaction per batch and
/// never queues without bound.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::SyncSender<Pending>,
}

/// Entries waiting to be written; past this, audited requests get 503.
pub const QUEUE: usize = 1024;
const BATCH: usize = 256;

impl Appender {
    /// Starts the appending thread on its own connection to `db`.
    pub fn start(db: &std::path::Path) -> Result<Appender, AuditError> {
        let conn = crate::store::db::open(db)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || run(conn, rx))
            .map_err(|_| AuditError::Stopped)?;
        Ok(Appender { tx })
    }

    /// Appends and waits until the entry is stored; its id.
    pub async fn append(&self, at_ms: i64, e: Entry) -> Result<i64, AuditError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.try_send((at_ms, e, Some(tx))).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => AuditError::Busy,
            mpsc::TrySendError::Disconnected(_) => AuditError::Stopped,
        })?;
        rx.await.map_err(|_| AuditError::Stopped)?
    }

    /// Appends without waiting (for failed logins: the refusal is sent at
    /// once). False when the queue is full and the entry was dropped.
    pub fn append_later(&self, at_ms: i64, e: Entry) -> bool {
        self.tx.try_send((at_ms, e, None)).is_ok()
    }
}

type Pending = (
    i64,
    Entry,
    Option<tokio::sync::oneshot::Sender<Result<i64, AuditError>>>,
);

fn run(conn: Connection, rx: mpsc::Receiver<Pending>) {
    let mut dropped_warned = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Gather what arrives within a moment so a burst is one transaction.
        let until = std::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < BATCH {
            match rx.recv_timeout(until.saturating_duration_since(std::time::Instant::now())) {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let entries: Vec<(i64, Entry)> = batch.iter().map(|(t, e, _)| (*t, e.clone())).collect();
        match append_all(&conn, &entries) {
            Ok(ids) => {
                dropped_warned = false;
                for ((_, _, reply), id) in batch.into_iter().zip(ids) {
                    if let Some(r) = reply {
                        let _ = r.send(Ok(id));
                    }
                }
            }
            Err(e) => {
                if !dropped_warned {
                    tracing::error!("cannot write the audit log: {e}");
                    dropped_warned = true;
                }
                let msg = e.to_string();
                for (_, _, reply) in batch {
                    if let Some(r) = reply {
                        let _ = r.send(Err(AuditError::Failed(msg.clone())));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let d = tempfile::tempdir().unwrap();
        let c = crate::store::db::open_dir(d.path()).unwrap();
        (d, c)
    }

    fn e(actor: &str, a: Action) -> Entry {
        Entry::new(actor, Some("10.0.0.7".parse().unwrap()), a, "channel 1")
    }

    #[test]
    fn a_chain_verifies_and_searches() {
        let (_d, c) = db();
        assert_eq!(append(&c, 1000, &e("ann", Action::Login)).unwrap(), 1);
        let ids = append_all(
            &c,
            &[
                (2000, e("ann", Action::ClipExport)),
                (3000, e("bob", Action::LoginFailed)),
            ],
        )
        .unwrap();
        assert_eq!(ids, vec![2, 3]);
        let v = verify(&c).unwrap();
        assert_eq!((v.entries, v.problems.len()), (3, 0), "{:?}", v.problems);
        let q = Query {
            actor: Some("ann".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            search(&c, &q).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let q = Query {
            action: Some(Action::LoginFailed),
            start_ms: Some(2500),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(search(&c, &q).unwrap()[0].actor, "bob");
    }

    #[test]
    fn updates_are_refused_and_edits_named() {
        let (_d, c) = db();
        for i in 0..5 {
            append(&c, i * 1000, &e("ann", Action::Login)).unwrap();
        }
        assert!(c.execute("UPDATE audit SET actor = 'eve' WHERE id = 3", []).is_err());
        c.execute_batch("DROP TRIGGER audit_append_only; UPDATE audit SET actor = 'eve' WHERE id = 3;")
            .unwrap();
        let v = verify(&c).unwrap();
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0].contains("entry 3"), "{:?}", v.problems);
    }

    #[test]
    fn deletions_anywhere_are_found_and_retention_is_not_one() {
        for victim in [1, 3, 5] {
            let (_d, c) = db();
            for i in 0..5 {
                append(&c, i * 1000, &e("ann", Action::Login)).unwrap();
            }
            c.execute("DELETE FROM audit WHERE id = ?1", [victim]).unwrap();
            let v = verify(&c).unwrap();
            assert!(!v.problems.is_empty(), "deleting entry {victim} went unnoticed");
        }
        let (_d, c) = db();
        for i in 0..5 {
            append(&c, i * 1000, &e("ann", Action::Login)).unwrap();
        }
        assert_eq!(expire(&c, 2500).unwrap(), 3);
        let v = verify(&c).unwrap();
        assert_eq!((v.entries, v.problems.len()), (2, 0), "{:?}", v.problems);
        assert_eq!(append(&c, 9000, &e("ann", Action::Logout)).unwrap(), 6);
        assert!(verify(&c).unwrap().problems.is_empty());
    }

    #[tokio::test]
    async fn the_appender_batches_and_answers_ids() {
        let (d, c) = db();
        let a = Appender::start(&d.path().join("index.db")).unwrap();
        let mut hs = Vec::new();
        for i in 0..50 {
            let a = a.clone();
            hs.push(tokio::spawn(async move {
                a.append(i, e("ann", Action::LiveView)).await.unwrap()
            }));
        }
        let mut ids = Vec::new();
        for h in hs {
            ids.push(h.await.unwrap());
        }
        ids.sort();
        assert_eq!(ids, (1..=50).collect::<Vec<_>>());
        assert!(a.append_later(99, e("x", Action::LoginFailed)));
        crate::store::db::open(&d.path().join("index.db")).unwrap();
        let v = (0..50)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                let v = verify(&c).unwrap();
                (v.entries == 51).then_some(v)
            })
            .expect("the queued entry was written");
        assert!(v.problems.is_empty());
    }
}
