//! The archive's index rows: schema version 13 and every statement the
//! archiver runs on its own connection (beside the writer, like the
//! importer). A row moves `complete` → `archived` in one statement that
//! also records the object's key and SHA-256, and only while it is still
//! `complete` — if retention took it first, the upload is simply dropped.
//! Must never change a row that is being written or deleted, and never
//! mark a row archived before the object was verified (the caller's duty,
//! stated again here because nothing else would catch it).

use rusqlite::{params, Connection, OptionalExtension};

use super::plan::{Archived, Local};
use crate::store::db;
use crate::time::Time90k;

/// Version 13 (issue 13, the S3 archive tier): state 3, `archived`, whose
/// footage is the object `archive_key` (the segment file byte for byte, its
/// SHA-256 in `archive_sha256`) and whose local file is gone or going.
/// Archived rows do not count as local bytes (the `channel_bytes` triggers
/// count `state < 2`) and local retention never sees them (it reads
/// `state = 1`); the archiver expires them (`[archive] max_age`). The two
/// partial indexes find the next uploads and expiries without a scan.
pub const MIGRATION_13: &str = r#"
ALTER TABLE segment ADD COLUMN archive_key TEXT;       -- state 3: the object holding the segment file
ALTER TABLE segment ADD COLUMN archive_sha256 BLOB;    -- state 3: SHA-256 of the object, verified on upload
CREATE INDEX segment_archive_due ON segment (end_90k) WHERE state = 1;
CREATE INDEX segment_archived ON segment (end_90k) WHERE state = 3;
"#;

/// `meta` key of the archive's `Location` (JSON), for the read side.
const LOCATION_KEY: &str = "archive_location";

/// Closed, undamaged segments that ended at or before `due`, oldest first.
/// Damaged ones (or with holes) stay local: their file is not the whole
/// segment, and local retention deletes them in time. So do segments a
/// pending failback transfer still has to send to a peer
/// (`failover::transfer` sends local files): they go once it is done.
pub fn due_local(conn: &Connection, due: Time90k, limit: usize) -> rusqlite::Result<Vec<Local>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, end_90k, bytes FROM segment s INDEXED BY segment_archive_due
         WHERE state = 1 AND end_90k <= ?1 AND damage IS NULL AND holes IS NULL
           AND NOT EXISTS (SELECT 1 FROM transfer t WHERE t.state = 0 AND t.local_channel = s.channel
                           AND t.start_90k < s.end_90k AND t.end_90k > s.start_90k)
         ORDER BY end_90k LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![due.0, limit as i64], |r| {
        Ok(Local {
            id: r.get(0)?,
            channel: r.get(1)?,
            end: Time90k(r.get(2)?),
            bytes: r.get::<_, i64>(3)? as u64,
        })
    })?;
    rows.collect()
}

/// Archived segments that ended at or before `before`, oldest first.
pub fn archived_before(conn: &Connection, before: Time90k, limit: usize) -> rusqlite::Result<Vec<Archived>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, end_90k, archive_key FROM segment INDEXED BY segment_archived
         WHERE state = 3 AND end_90k <= ?1 ORDER BY end_90k LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![before.0, limit as i64], |r| {
        Ok(Archived {
            id: r.get(0)?,
            channel: r.get(1)?,
            end: Time90k(r.get(2)?),
            key: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// Points a `complete` row at its verified object. False when the row is
/// no longer `complete` (retention marked it garbage meanwhile).
pub fn mark_archived(conn: &Connection, id: i64, key: &str, sha256: &[u8; 32]) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE segment SET state = 3, archive_key = ?2, archive_sha256 = ?3 WHERE id = ?1 AND state = 1",
        params![id, key, &sha256[..]],
    )?;
    Ok(n == 1)
}

/// Deletes an expired archived row (after its object is gone).
pub fn delete_archived(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM segment WHERE id = ?1 AND state = 3", params![id])?;
    Ok(())
}

/// An archived row's object key and SHA-256.
pub fn archive_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    conn.query_row(
        "SELECT archive_key, archive_sha256 FROM segment WHERE id = ?1 AND state = 3",
        params![id],
        |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)),
    )
    .optional()
    .map(|o| o.and_then(|(k, h)| Some((k?, h.unwrap_or_default()))))
}

/// Whether a row is archived (the local file may go).
pub fn is_archived(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT state FROM segment WHERE id = ?1", params![id], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        == Some(db::ARCHIVED))
}

pub fn store_location(conn: &Connection, loc: &super::Location) -> rusqlite::Result<()> {
    let json = serde_json::to_string(loc).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![LOCATION_KEY, json],
    )?;
    Ok(())
}

/// Where this store's archive is, if it has one.
pub fn location(conn: &Connection) -> rusqlite::Result<Option<super::Location>> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![LOCATION_KEY], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(v.and_then(|j| serde_json::from_str(&j).ok()))
}

/// What the index says about the archive (`GET /api/v1/archive`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub archived_segments: u64,
    pub archived_bytes: u64,
    /// Closed local segments old enough to be archived, not yet archived.
    pub due_segments: u64,
    pub due_bytes: u64,
    /// Multipart uploads recorded as in progress (`uploads`).
    pub uploads_in_progress: u64,
}

pub fn counts(conn: &Connection, due: Time90k) -> rusqlite::Result<Counts> {
    let (archived_segments, archived_bytes) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segment INDEXED BY segment_archived WHERE state = 3",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?;
    let (due_segments, due_bytes) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segment INDEXED BY segment_archive_due
         WHERE state = 1 AND end_90k <= ?1",
        params![due.0],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?;
    // The archiver creates its table when it first opens.
    let uploads_in_progress = conn
        .query_row("SELECT COUNT(*) FROM archive_upload", [], |r| r.get::<_, i64>(0))
        .unwrap_or(0) as u64;
    Ok(Counts {
        archived_segments,
        archived_bytes,
        due_segments,
        due_bytes,
        uploads_in_progress,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLL_BACK_13: &str = "DROP INDEX segment_archive_due; DROP INDEX segment_archived;
        ALTER TABLE segment DROP COLUMN archive_key; ALTER TABLE segment DROP COLUMN archive_sha256;
        PRAGMA user_version = 12;";

    fn complete(c: &Connection, channel: u32, start: i64, end: i64, bytes: u64) -> i64 {
        let e = db::upsert_sample_entry(c, b"entry", "h264", 1, 1).unwrap();
        let p = db::Progress {
            end: Time90k(end),
            frames: 1,
            key_frames: 1,
            bytes,
            media_bytes: bytes,
        };
        db::insert_finished_segment(c, channel, Time90k(start), e, &p, &[], None).unwrap()
    }

    #[test]
    fn a_version_12_store_migrates_and_archived_rows_leave_local_accounting() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = db::open(&dir.path().join("index.db")).unwrap();
        db::migrate(&mut c).unwrap();
        c.execute_batch(ROLL_BACK_13).unwrap();
        let a = complete(&c, 1, 0, 100, 1000);
        let b = complete(&c, 1, 100, 200, 500);
        db::migrate(&mut c).unwrap();
        db::migrate(&mut c).unwrap();
        let v: i32 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, db::SCHEMA_VERSION);
        assert_eq!(db::channel_usage(&c, 10).unwrap()[&1].total_bytes, 1500);
        let due: Vec<i64> = due_local(&c, Time90k(150), 10).unwrap().iter().map(|l| l.id).collect();
        assert_eq!(due, [a]);
        // Owed to a peer: not before the transfer is done.
        c.execute(
            "INSERT INTO transfer (rule, local_channel, remote_channel, target, start_90k, end_90k, state, bytes_sent)
             VALUES ('r', 1, 1, 'peer:1', 50, 60, 0, 0)",
            [],
        )
        .unwrap();
        assert!(due_local(&c, Time90k(150), 10).unwrap().is_empty());
        c.execute("UPDATE transfer SET state = 1", []).unwrap();
        assert_eq!(due_local(&c, Time90k(150), 10).unwrap().len(), 1);

        assert!(mark_archived(&c, a, "k/a.seg", &[7; 32]).unwrap());
        // Once only, and only from complete.
        assert!(!mark_archived(&c, a, "k/a.seg", &[7; 32]).unwrap());
        db::mark_garbage(&c, b).unwrap();
        assert!(!mark_archived(&c, b, "k/b.seg", &[7; 32]).unwrap());
        assert_eq!(archive_of(&c, a).unwrap(), Some(("k/a.seg".into(), vec![7; 32])));
        assert!(is_archived(&c, a).unwrap() && !is_archived(&c, b).unwrap());

        // Not local bytes, not local retention's, still footage.
        let local = complete(&c, 1, 300, 400, 70);
        let u = db::channel_usage(&c, 10).unwrap();
        assert_eq!(u[&1].total_bytes, 70);
        assert_eq!(u[&1].oldest.iter().map(|s| s.id).collect::<Vec<_>>(), [local]);
        let found: Vec<i64> = db::segments_overlapping(&c, 1, Time90k(0), Time90k(300))
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(found, [a]);
        let due: Vec<i64> = due_local(&c, Time90k(1000), 10).unwrap().iter().map(|l| l.id).collect();
        assert_eq!(due, [local]);
        let old: Vec<i64> = archived_before(&c, Time90k(100), 10)
            .unwrap()
            .iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(old, [a]);
        assert!(archived_before(&c, Time90k(99), 10).unwrap().is_empty());
        delete_archived(&c, a).unwrap();
        assert!(archive_of(&c, a).unwrap().is_none());
    }

    #[test]
    fn the_location_is_kept_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = db::open(&dir.path().join("index.db")).unwrap();
        db::migrate(&mut c).unwrap();
        assert_eq!(location(&c).unwrap(), None);
        let l = super::super::Location {
            bucket: "b".into(),
            prefix: "p".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "r".into(),
            virtual_hosted: false,
            credentials: None,
        };
        store_location(&c, &l).unwrap();
        store_location(&c, &l).unwrap();
        assert_eq!(location(&c).unwrap(), Some(l));
    }
}
