//! Multipart uploads in progress, so that one cut (process killed, server or
//! network gone) resumes at the next part instead of starting over: for each
//! segment being uploaded, its object key, the upload id the server gave,
//! the part size and the parts the server acknowledged (their ETags), in
//! order. A part is recorded only after the server answered for it.
//!
//! The archiver's own bookkeeping, in a table of its own created when it
//! opens (`archive_upload`; a store that never archived has none). Must
//! never be read as proof of anything stored: only a completed, read-back,
//! verified object marks a row archived (`rows`).

use rusqlite::{params, Connection, OptionalExtension};

/// The archiver's table; also clears uploads whose segment is no longer
/// waiting to be archived (deleted by retention, or archived by a pass that
/// was cut before it could forget the upload).
pub fn open(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS archive_upload (
            segment_id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            upload_id TEXT NOT NULL,
            part_size INTEGER NOT NULL,
            parts TEXT NOT NULL  -- JSON list of the acknowledged parts' ETags, in order
        );",
    )?;
    conn.execute(
        "DELETE FROM archive_upload WHERE segment_id NOT IN (SELECT id FROM segment WHERE state = 1)",
        [],
    )
}

/// An upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub key: String,
    pub upload_id: String,
    pub part_size: usize,
    pub parts: Vec<String>,
}

pub fn saved(conn: &Connection, segment: i64) -> rusqlite::Result<Option<Saved>> {
    conn.query_row(
        "SELECT key, upload_id, part_size, parts FROM archive_upload WHERE segment_id = ?1",
        params![segment],
        |r| {
            let parts: String = r.get(3)?;
            Ok(Saved {
                key: r.get(0)?,
                upload_id: r.get(1)?,
                part_size: r.get::<_, i64>(2)? as usize,
                // An unreadable list resumes nothing: the upload starts over.
                parts: serde_json::from_str(&parts).unwrap_or_default(),
            })
        },
    )
    .optional()
}

/// Records an upload just created, or the parts acknowledged so far.
pub fn save(conn: &Connection, segment: i64, s: &Saved) -> rusqlite::Result<()> {
    let parts = serde_json::to_string(&s.parts).expect("a list of strings serializes");
    conn.execute(
        "INSERT OR REPLACE INTO archive_upload (segment_id, key, upload_id, part_size, parts)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![segment, s.key, s.upload_id, s.part_size as i64, parts],
    )?;
    Ok(())
}

/// The upload completed, or cannot be resumed.
pub fn forget(conn: &Connection, segment: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM archive_upload WHERE segment_id = ?1", params![segment])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_saved_part_by_part_and_cleared_with_their_segment() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE segment (id INTEGER PRIMARY KEY, state INTEGER);
                            INSERT INTO segment VALUES (1, 1), (2, 1), (3, 3);",
        )
        .unwrap();
        assert_eq!(open(&conn).unwrap(), 0);
        let mut s = Saved {
            key: "site/nvr/1/x".into(),
            upload_id: "u1".into(),
            part_size: 8 << 20,
            parts: vec![],
        };
        save(&conn, 1, &s).unwrap();
        s.parts.push("\"etag-1\"".into());
        save(&conn, 1, &s).unwrap();
        assert_eq!(saved(&conn, 1).unwrap(), Some(s.clone()));
        assert_eq!(saved(&conn, 2).unwrap(), None);
        save(&conn, 2, &s).unwrap();
        save(&conn, 3, &s).unwrap();
        forget(&conn, 2).unwrap();
        assert_eq!(saved(&conn, 2).unwrap(), None);
        // Opened again: segment 3 is archived already, its upload goes.
        assert_eq!(open(&conn).unwrap(), 1);
        assert!(saved(&conn, 3).unwrap().is_none() && saved(&conn, 1).unwrap().is_some());
    }
}
