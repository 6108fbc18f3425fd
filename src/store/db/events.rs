//! Event rows: stored, ended, closed after a crash, listed.

use rusqlite::{params, Connection, OptionalExtension};

use crate::time::Time90k;

#[derive(Clone, Debug, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub channel: Option<u32>,
    pub kind: String,
    pub start: String,
    pub end: Option<String>,
    pub details: serde_json::Value,
}

pub fn insert_event(
    conn: &Connection,
    channel: Option<u32>,
    kind: &str,
    start: Time90k,
    end: Option<Time90k>,
    details: &serde_json::Value,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO event (channel, kind, start_90k, end_90k, details) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![channel, kind, start.0, end.map(|e| e.0), details.to_string()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One change to the event table, queued by the writer for its next commit.
#[derive(Clone, Debug)]
pub enum EventOp {
    Insert {
        id: i64,
        channel: Option<u32>,
        kind: String,
        start: Time90k,
        end: Option<Time90k>,
        details: serde_json::Value,
    },
    End {
        id: i64,
        end: Time90k,
        details: Option<serde_json::Value>,
    },
}

/// The id the next stored event gets (the writer hands ids out itself).
pub fn next_event_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM event", [], |r| r.get(0))
}

/// Writes queued event changes (inside the caller's transaction).
pub fn apply_event_ops(conn: &Connection, ops: &[EventOp]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO event (id, channel, kind, start_90k, end_90k, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for op in ops {
        match op {
            EventOp::Insert {
                id,
                channel,
                kind,
                start,
                end,
                details,
            } => {
                insert.execute(params![
                    id,
                    channel,
                    kind,
                    start.0,
                    end.map(|e| e.0),
                    details.to_string()
                ])?;
            }
            EventOp::End { id, end, details } => end_event(conn, *id, *end, details.as_ref())?,
        }
    }
    Ok(())
}

/// Closes events a previous process left open (it stopped mid-event): their
/// end is unknown, so they end where they started, marked `interrupted`.
pub fn close_interrupted_events(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE event SET end_90k = start_90k, details = json_set(details, '$.interrupted', json('true'))
         WHERE end_90k IS NULL",
        [],
    )
}

/// Sets an event's end, merging `details` (an object) into the stored ones.
pub fn end_event(
    conn: &Connection,
    id: i64,
    end: Time90k,
    details: Option<&serde_json::Value>,
) -> rusqlite::Result<()> {
    match details.filter(|d| d.as_object().is_some_and(|o| !o.is_empty())) {
        None => conn.execute("UPDATE event SET end_90k = ?2 WHERE id = ?1", params![id, end.0])?,
        Some(d) => conn.execute(
            "UPDATE event SET end_90k = ?2, details = json_patch(details, ?3) WHERE id = ?1",
            params![id, end.0, d.to_string()],
        )?,
    };
    Ok(())
}

/// An event's channel (none for the NVR's own) and start, by id.
pub fn event_place(conn: &Connection, id: i64) -> rusqlite::Result<Option<(Option<u32>, Time90k)>> {
    conn.query_row("SELECT channel, start_90k FROM event WHERE id = ?1", params![id], |r| {
        Ok((r.get(0)?, Time90k(r.get(1)?)))
    })
    .optional()
}

pub fn events(
    conn: &Connection,
    channel: Option<u32>,
    kind: Option<&str>,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<Vec<EventRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, kind, start_90k, end_90k, details FROM event
         WHERE (?1 IS NULL OR channel = ?1) AND (?4 IS NULL OR kind = ?4)
           AND start_90k < ?3 AND (end_90k IS NULL OR end_90k >= ?2)
         ORDER BY start_90k LIMIT 10000",
    )?;
    let rows = stmt.query_map(params![channel, start.0, end.0, kind], |r| {
        let details: String = r.get(5)?;
        Ok(EventRow {
            id: r.get(0)?,
            channel: r.get(1)?,
            kind: r.get(2)?,
            start: Time90k(r.get(3)?).to_rfc3339(),
            end: r.get::<_, Option<i64>>(4)?.map(|e| Time90k(e).to_rfc3339()),
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        })
    })?;
    rows.collect()
}
