//! The `transfer` table: failback transfers owed to a peer
//! (`crate::failover::transfer` sends them; this module only stores them).

use rusqlite::{params, Connection};

use crate::time::Time90k;

/// Where a failback transfer stands (the table stores 0 and 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Some of the range is still to be sent.
    Pending,
    /// The peer has imported the whole range.
    Done,
}

impl TransferState {
    /// The wire name (the API's `state`, the metrics' label).
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Pending => "pending",
            TransferState::Done => "done",
        }
    }
}

/// One `transfer` row, as the API lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TransferRow {
    pub id: i64,
    /// What is owed (shown flat in the API: `rule`, `target`, …).
    #[serde(flatten)]
    pub owed: NewTransfer,
    pub state: TransferState,
    pub bytes_sent: u64,
    pub last_error: Option<String>,
}

/// A transfer to queue: footage of `local_channel` in `[start, end)` owed to
/// `target`'s `remote_channel` under `rule`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewTransfer {
    pub rule: String,
    pub local_channel: u32,
    pub remote_channel: u32,
    pub target: String,
    pub start: Time90k,
    pub end: Time90k,
}

/// Queues a transfer; returns its id.
pub fn insert_transfer(c: &Connection, job: &NewTransfer) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO transfer (rule, local_channel, remote_channel, target, start_90k, end_90k, state, bytes_sent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0)",
        params![
            job.rule,
            job.local_channel,
            job.remote_channel,
            job.target,
            job.start.0,
            job.end.0
        ],
    )?;
    Ok(c.last_insert_rowid())
}

/// Every transfer, oldest first.
pub fn transfers(c: &Connection) -> rusqlite::Result<Vec<TransferRow>> {
    let mut st = c.prepare(
        "SELECT id, rule, local_channel, remote_channel, target, start_90k, end_90k, state, bytes_sent, last_error
         FROM transfer ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        let (s, e) = (Time90k(r.get(5)?), Time90k(r.get(6)?));
        Ok(TransferRow {
            id: r.get(0)?,
            owed: NewTransfer {
                rule: r.get(1)?,
                local_channel: r.get(2)?,
                remote_channel: r.get(3)?,
                target: r.get(4)?,
                start: s,
                end: e,
            },
            state: if r.get::<_, i64>(7)? == 0 {
                TransferState::Pending
            } else {
                TransferState::Done
            },
            bytes_sent: r.get::<_, i64>(8)? as u64,
            last_error: r.get(9)?,
        })
    })?;
    rows.collect()
}

/// The whole range reached the peer.
pub fn transfer_done(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE transfer SET state = 1, last_error = NULL WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

/// An attempt stopped on `error`; the job stays pending.
pub fn transfer_interrupted(c: &Connection, id: i64, error: &str) -> rusqlite::Result<()> {
    c.execute("UPDATE transfer SET last_error = ?2 WHERE id = ?1", params![id, error])?;
    Ok(())
}

/// Bytes the peer has taken so far.
pub fn transfer_progress(c: &Connection, id: i64, bytes_sent: u64) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE transfer SET bytes_sent = ?2 WHERE id = ?1",
        params![id, bytes_sent as i64],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_is_queued_advanced_and_listed_flat() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = super::super::open(&dir.path().join("db")).unwrap();
        super::super::migrate(&mut c).unwrap();
        let owed = NewTransfer {
            rule: "r1".into(),
            local_channel: 3,
            remote_channel: 7,
            target: "https://10.0.0.2:8080".into(),
            start: Time90k::parse_rfc3339("2026-11-25T10:00:00Z").unwrap(),
            end: Time90k::parse_rfc3339("2026-11-25T10:05:00Z").unwrap(),
        };
        let id = insert_transfer(&c, &owed).unwrap();
        transfer_progress(&c, id, 4096).unwrap();
        transfer_interrupted(&c, id, "peer unreachable").unwrap();
        let rows = transfers(&c).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].state, rows[0].bytes_sent), (TransferState::Pending, 4096));
        assert_eq!(rows[0].last_error.as_deref(), Some("peer unreachable"));
        let v = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(v["rule"], "r1");
        assert_eq!(
            (v["local_channel"].as_u64(), v["remote_channel"].as_u64()),
            (Some(3), Some(7))
        );
        assert_eq!(v["start"], "2026-11-25T10:00:00Z");
        assert_eq!(v["end"], "2026-11-25T10:05:00Z");
        assert_eq!(v["state"], "pending");
        assert!(v.get("owed").is_none(), "the row is shown flat: {v}");

        transfer_done(&c, id).unwrap();
        let rows = transfers(&c).unwrap();
        assert_eq!(
            (rows[0].state, rows[0].last_error.as_deref()),
            (TransferState::Done, None)
        );
        assert_eq!(serde_json::to_value(&rows[0]).unwrap()["state"], "done");
    }
}
