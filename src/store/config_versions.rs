//! The configurations this NVR has applied (table `config_version` in the
//! index): who applied each, when, from where, its document and the diff it
//! made. The last `KEEP` are kept so any can be re-applied (`rollback`).
//!
//! Owns the table's SQL and nothing else: it never applies a configuration
//! and never decides what a document holds (that is `parfile`'s).

use rusqlite::{params, Connection, OptionalExtension};
use sha2::Digest;

/// How many versions are kept; older ones are deleted as new ones arrive.
pub const KEEP: usize = 50;

/// A version to store.
pub struct NewVersion<'a> {
    pub applied_ms: i64,
    pub actor: &'a str,
    /// Client address, "sighup", "start" or "cli".
    pub origin: &'a str,
    /// The file (or upload) it came from.
    pub source: &'a str,
    /// `parfile::document` as TOML text.
    pub document: &'a str,
    /// JSON of the `parfile::Diff` it made.
    pub diff: &'a str,
}

/// A stored version without its document (what a listing shows).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub id: i64,
    pub applied_ms: i64,
    pub actor: String,
    pub origin: String,
    pub source: String,
    pub sha256: String,
    /// The diff it made, as stored (JSON).
    pub diff: serde_json::Value,
}

/// A stored version with its document.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub summary: Summary,
    pub document: String,
}

/// Hex SHA-256 of a document's text.
pub fn sha256_hex(document: &str) -> String {
    sha2::Sha256::digest(document.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores `v` and deletes all but the newest `KEEP`; returns its id.
pub fn insert(conn: &Connection, v: &NewVersion) -> rusqlite::Result<i64> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO config_version (applied_ms, actor, origin, source, sha256, document, diff) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            v.applied_ms,
            v.actor,
            v.origin,
            v.source,
            sha256_hex(v.document),
            v.document,
            v.diff
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "DELETE FROM config_version WHERE id NOT IN \
         (SELECT id FROM config_version ORDER BY id DESC LIMIT ?1)",
        params![KEEP as i64],
    )?;
    tx.commit()?;
    Ok(id)
}

const COLUMNS: &str = "id, applied_ms, actor, origin, source, sha256, diff, document";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Version> {
    let diff: String = r.get(6)?;
    Ok(Version {
        summary: Summary {
            id: r.get(0)?,
            applied_ms: r.get(1)?,
            actor: r.get(2)?,
            origin: r.get(3)?,
            source: r.get(4)?,
            sha256: r.get(5)?,
            // A diff that is not JSON (never written so) is shown as its text.
            diff: serde_json::from_str(&diff).unwrap_or(serde_json::Value::String(diff)),
        },
        document: r.get(7)?,
    })
}

/// The newest version (the one running, once the NVR has started).
pub fn latest(conn: &Connection) -> rusqlite::Result<Option<Version>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM config_version ORDER BY id DESC LIMIT 1"),
        [],
        row,
    )
    .optional()
}

/// The id of the newest version, 0 when there is none.
pub fn current_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM config_version", [], |r| r.get(0))
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Version>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM config_version WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
}

/// The version stored just before the newest one: what a rollback without
/// a version number goes back to.
pub fn previous(conn: &Connection) -> rusqlite::Result<Option<Version>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM config_version ORDER BY id DESC LIMIT 1 OFFSET 1"),
        [],
        row,
    )
    .optional()
}

/// Every kept version, newest first, without documents.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Summary>> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM config_version ORDER BY id DESC"))?;
    let rows = st.query_map([], row)?;
    rows.map(|r| r.map(|v| v.summary)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let d = tempfile::tempdir().unwrap();
        let c = crate::store::db::open_dir(d.path()).unwrap();
        (d, c)
    }

    fn new<'a>(doc: &'a str, at: i64) -> NewVersion<'a> {
        NewVersion {
            applied_ms: at,
            actor: "ann",
            origin: "127.0.0.1",
            source: "site.tpar",
            document: doc,
            diff: r#"{"changes":[]}"#,
        }
    }

    #[test]
    fn empty_store_has_no_versions() {
        let (_d, c) = db();
        assert_eq!(current_id(&c).unwrap(), 0);
        assert!(latest(&c).unwrap().is_none());
        assert!(previous(&c).unwrap().is_none());
        assert!(list(&c).unwrap().is_empty());
    }

    #[test]
    fn insert_then_read_back_every_field() {
        let (_d, c) = db();
        let id = insert(&c, &new("a = 1\n", 5)).unwrap();
        let v = get(&c, id).unwrap().unwrap();
        assert_eq!(v.document, "a = 1\n");
        assert_eq!(v.summary.actor, "ann");
        assert_eq!(v.summary.origin, "127.0.0.1");
        assert_eq!(v.summary.source, "site.tpar");
        assert_eq!(v.summary.applied_ms, 5);
        assert_eq!(v.summary.sha256, sha256_hex("a = 1\n"));
        assert_eq!(v.summary.diff, serde_json::json!({"changes": []}));
        assert_eq!(current_id(&c).unwrap(), id);
        assert!(get(&c, id + 1).unwrap().is_none());
    }

    #[test]
    fn previous_is_the_one_before_the_newest() {
        let (_d, c) = db();
        let a = insert(&c, &new("a", 1)).unwrap();
        assert!(previous(&c).unwrap().is_none());
        let b = insert(&c, &new("b", 2)).unwrap();
        assert_eq!(previous(&c).unwrap().unwrap().summary.id, a);
        assert_eq!(latest(&c).unwrap().unwrap().summary.id, b);
        let l = list(&c).unwrap();
        assert_eq!(l.iter().map(|s| s.id).collect::<Vec<_>>(), vec![b, a]);
    }

    #[test]
    fn only_the_newest_fifty_are_kept() {
        let (_d, c) = db();
        let ids: Vec<i64> = (0..KEEP as i64 + 7)
            .map(|i| insert(&c, &new(&format!("v{i}"), i)).unwrap())
            .collect();
        let kept = list(&c).unwrap();
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept.first().unwrap().id, *ids.last().unwrap());
        assert_eq!(kept.last().unwrap().id, ids[7]);
        assert!(get(&c, ids[6]).unwrap().is_none());
    }

    #[test]
    fn a_diff_that_is_not_json_is_kept_as_text() {
        let (_d, c) = db();
        let mut v = new("x", 1);
        v.diff = "not json";
        let id = insert(&c, &v).unwrap();
        assert_eq!(
            get(&c, id).unwrap().unwrap().summary.diff,
            serde_json::json!("not json")
        );
    }
}
