//! The SQLite index: schema, migrations and every statement Tandem runs.
//!
//! Invariant (see `docs/store.md`): for every segment file under `video/`,
//! exactly one of these holds —
//! 1. its row is `complete` and the row's frame index describes the file's
//!    first `bytes` bytes exactly;
//! 2. its row is `writing`: the file is being appended to (or was, before a
//!    crash) and the row's `end_90k`/`frames`/`bytes` describe a flushed prefix;
//! 3. its row is `garbage`: the file is being deleted and may be gone;
//! 4. it has no row: its row's insert never committed (its id is above the
//!    last committed one: start-up adopts it from its self-describing
//!    header), or its row is gone while an unlink failed or was undone by a
//!    power cut (the background listing adopts it: see `store::orphans`).
//!
//! This module must never touch segment files; the writer orders file and row
//! changes so that the invariant survives a crash at any instant.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// A segment's bytes as stored now: a damaged segment occupies only what is
/// left of its file (counting the bytes its row once promised would make
/// retention delete good footage and the storage report overstate use).
/// Defined here, before the submodules, so that the segment queries and
/// the tests can both use it.
macro_rules! stored_bytes {
    () => {
        "CASE WHEN damage IS NULL THEN bytes ELSE COALESCE(readable_bytes, 0) END"
    };
}

mod events;
mod gapfill;
mod segments;
#[cfg(test)]
mod tests;
mod transfers;

pub use events::*;
pub use gapfill::*;
pub use segments::*;
pub use transfers::*;

pub const SCHEMA_VERSION: i32 = 13;

const SCHEMA: &str = r#"
CREATE TABLE sample_entry (
  id INTEGER PRIMARY KEY,
  data BLOB NOT NULL UNIQUE,     -- the mp4 avc1/hvc1 box, as stored in segment headers
  codec TEXT NOT NULL,           -- 'h264' or 'h265'
  width INTEGER NOT NULL,
  height INTEGER NOT NULL
);
CREATE TABLE segment (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: file names derive from it
  channel INTEGER NOT NULL,
  state INTEGER NOT NULL,        -- 0 writing, 1 complete, 2 garbage, 3 archived (schema 13)
  start_90k INTEGER NOT NULL,
  end_90k INTEGER NOT NULL,
  frames INTEGER NOT NULL,
  key_frames INTEGER NOT NULL,
  bytes INTEGER NOT NULL,        -- file length covered by this row
  media_bytes INTEGER NOT NULL,  -- frame data only
  sample_entry_id INTEGER NOT NULL REFERENCES sample_entry (id),
  frame_index BLOB               -- see store::index; NULL while writing
);
CREATE INDEX segment_channel_start ON segment (channel, start_90k);
CREATE TABLE event (
  id INTEGER PRIMARY KEY,
  channel INTEGER,               -- NULL for NVR-wide events
  kind TEXT NOT NULL,
  start_90k INTEGER NOT NULL,
  end_90k INTEGER,
  details TEXT NOT NULL          -- JSON
);
CREATE INDEX event_channel_start ON event (channel, start_90k);
"#;

/// Version 2: the NVR's identity, footage imported from peers, and footage
/// owed to peers (failback transfers).
const MIGRATION_2: &str = r#"
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE import (
  origin TEXT NOT NULL,          -- the sending NVR's id
  origin_segment INTEGER NOT NULL,
  channel INTEGER NOT NULL,
  received_90k INTEGER NOT NULL,
  frames_kept INTEGER NOT NULL,
  PRIMARY KEY (origin, origin_segment)
);
CREATE TABLE transfer (
  id INTEGER PRIMARY KEY,
  rule TEXT NOT NULL,
  local_channel INTEGER NOT NULL,
  remote_channel INTEGER NOT NULL,
  target TEXT NOT NULL,          -- host:port of the receiving Tandem
  start_90k INTEGER NOT NULL,
  end_90k INTEGER NOT NULL,
  state INTEGER NOT NULL,        -- 0 pending, 1 done
  bytes_sent INTEGER NOT NULL,
  last_error TEXT
);
"#;

/// Version 3: event footage (kept under its own retention) and searching
/// events by type.
const MIGRATION_3: &str = r#"
ALTER TABLE segment ADD COLUMN event INTEGER NOT NULL DEFAULT 0;  -- 1: lies in an event window
CREATE INDEX event_kind_start ON event (kind, start_90k);
"#;

/// Version 4: damage found in finished segments, damaged stretches that
/// repair stepped over, and each channel's longest segment so that overlap
/// queries stay on the (channel, start) index for segments of any length.
/// Triggers keep `channel_span` up to date whoever writes the rows (writer,
/// import, repair); it only ever grows, which only widens the look-back.
const MIGRATION_4: &str = r#"
ALTER TABLE segment ADD COLUMN damage TEXT;             -- NULL: the file matches the row; else what is wrong
ALTER TABLE segment ADD COLUMN readable_bytes INTEGER;  -- with damage: the file prefix still usable (0: none)
ALTER TABLE segment ADD COLUMN holes TEXT;              -- JSON [{frames_before, bytes, ticks}]: stretches repair skipped
CREATE TABLE channel_span (
  channel INTEGER PRIMARY KEY,
  max_ticks INTEGER NOT NULL     -- longest end_90k - start_90k any segment of the channel ever had
);
INSERT INTO channel_span (channel, max_ticks)
  SELECT channel, MAX(MAX(end_90k - start_90k), 0) FROM segment GROUP BY channel;
CREATE TRIGGER segment_span_insert AFTER INSERT ON segment BEGIN
  INSERT OR IGNORE INTO channel_span (channel, max_ticks) VALUES (new.channel, 0);
  UPDATE channel_span SET max_ticks = MAX(max_ticks, new.end_90k - new.start_90k) WHERE channel = new.channel;
END;
CREATE TRIGGER segment_span_update AFTER UPDATE OF start_90k, end_90k ON segment BEGIN
  INSERT OR IGNORE INTO channel_span (channel, max_ticks) VALUES (new.channel, 0);
  UPDATE channel_span SET max_ticks = MAX(max_ticks, new.end_90k - new.start_90k) WHERE channel = new.channel;
END;
"#;

/// Access control (`crate::auth`): users, browser sessions, API tokens and the
/// audit log. Secrets are stored only as SHA-256 (sessions, tokens) or
/// Argon2id (passwords). The audit log is append-only: an UPDATE is refused by
/// a trigger, and each row carries the hash of the one before it.
const MIGRATION_5: &str = r#"
CREATE TABLE user (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,            -- 'admin', 'operator' or 'viewer'
  channels TEXT,                 -- JSON [n, ...]: the channels a non-admin may see; NULL: all
  password_hash TEXT NOT NULL,   -- Argon2id PHC string
  created_ms INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL
);
CREATE TABLE session (
  secret_hash BLOB PRIMARY KEY,  -- SHA-256 of the cookie's secret
  user TEXT NOT NULL REFERENCES user (name) ON DELETE CASCADE,
  csrf TEXT NOT NULL,            -- sent back as X-CSRF-Token by clients that send no Origin
  created_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  addr TEXT
);
CREATE TABLE api_token (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  secret_hash BLOB NOT NULL UNIQUE,
  user TEXT NOT NULL REFERENCES user (name) ON DELETE CASCADE,
  role TEXT NOT NULL,            -- at most the user's role
  channels TEXT,                 -- JSON; NULL: the user's channels
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER,
  last_used_ms INTEGER
);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  actor TEXT NOT NULL,
  addr TEXT,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL,
  prev_hash BLOB NOT NULL,       -- `hash` of the entry before (32 zero bytes for the first ever)
  hash BLOB NOT NULL             -- SHA-256 over prev_hash and this row's fields (auth::audit_log::entry_hash)
);
CREATE INDEX audit_at ON audit (at_ms);
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit BEGIN
  SELECT RAISE(ABORT, 'the audit log is append-only');
END;
"#;

/// Version 6: each finished segment's SHA-256 over the bytes its row lists,
/// computed by the writer as it wrote them, so that `tandem verify --data`
/// and the scrub find a file changed afterwards. NULL for segments finished
/// before version 6 or rebuilt by start-up repair: those are unhashed.
const MIGRATION_6: &str = r#"
ALTER TABLE segment ADD COLUMN sha256 BLOB;             -- 32 bytes; NULL: not hashed
"#;

/// Version 7: the configurations applied (`store::config_versions`), the
/// last 50 kept, so any can be looked at again and re-applied.
const MIGRATION_7: &str = r#"
CREATE TABLE config_version (
  id INTEGER PRIMARY KEY,
  applied_ms INTEGER NOT NULL,
  actor TEXT NOT NULL,
  origin TEXT NOT NULL,          -- client address, 'sighup', 'start' or 'cli'
  source TEXT NOT NULL,          -- the file or upload it came from
  sha256 TEXT NOT NULL,          -- hex SHA-256 of `document`
  document TEXT NOT NULL,        -- parfile::document as TOML, secrets in clear (the index is the NVR's own)
  diff TEXT NOT NULL             -- JSON parfile::Diff against the version before
);
"#;

/// Version 8: the alert outbox (`store::outbox`): each message an action
/// owes, stored before its first attempt so that a crash or restart resumes
/// it, with its attempts, next attempt, give-up time and outcome.
const MIGRATION_8: &str = r#"
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY,
  action TEXT NOT NULL,          -- the [[action]]'s name
  channel INTEGER,               -- the event's channel; NULL: NVR-wide or a test
  created_ms INTEGER NOT NULL,
  message TEXT NOT NULL,         -- alerts::Message as JSON
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  give_up_ms INTEGER NOT NULL,   -- created_ms + the action's retry_for
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
  last_error TEXT,
  delivered_ms INTEGER
);
CREATE INDEX outbox_due ON outbox (action, state, next_attempt_ms);
CREATE INDEX outbox_state ON outbox (state, created_ms);
"#;

/// Issue 11 (zero frames lost). `capture_offset_90k`: the camera's clock
/// minus this NVR's clock over the segment, measured by ingest (RTCP sender
/// reports) or by a replay (ONVIF NTP stamps); NULL when unknown. It lets two
/// NVRs whose clocks differ merge footage by the camera's capture time.
/// `gapfill_job`: a hole in a channel's timeline being fetched from the
/// camera's edge storage; survives restarts (see `gapfill`).
const MIGRATION_9: &str = r#"
ALTER TABLE segment ADD COLUMN capture_offset_90k INTEGER;
CREATE TABLE gapfill_job (
  id INTEGER PRIMARY KEY,
  channel INTEGER NOT NULL,
  camera TEXT NOT NULL,          -- the [[network_camera]] name asked for the footage
  start_90k INTEGER NOT NULL,    -- the hole, in this NVR's time
  end_90k INTEGER NOT NULL,
  reason TEXT NOT NULL,          -- reconnect, startup, takeover, failback, manual
  state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'lost', 'failed')),
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  filled_to_90k INTEGER,         -- progress: footage merged up to here
  frames INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0,
  lost_90k INTEGER NOT NULL DEFAULT 0,  -- of the hole, what the camera no longer had
  last_error TEXT
);
CREATE INDEX gapfill_job_state ON gapfill_job (state, next_attempt_ms);
CREATE INDEX gapfill_job_channel ON gapfill_job (channel, start_90k);
CREATE TABLE gapfill_binding (   -- each channel's binding history, for gap fill's planner
  id INTEGER PRIMARY KEY,
  channel INTEGER NOT NULL,
  camera TEXT NOT NULL,
  start_90k INTEGER NOT NULL,
  end_90k INTEGER,               -- NULL: bound now (or when the process stopped)
  ended_by_restart INTEGER NOT NULL DEFAULT 0  -- 1: closed by the next start-up, not by an unbind
);
CREATE INDEX gapfill_binding_channel ON gapfill_binding (channel, start_90k);
CREATE TABLE gapfill_segment (   -- segments gap fill merged, for the timeline's marks
  segment_id INTEGER PRIMARY KEY,
  job INTEGER NOT NULL
);
CREATE TRIGGER gapfill_segment_gone AFTER DELETE ON segment BEGIN
  DELETE FROM gapfill_segment WHERE segment_id = old.id;
END;
"#;

/// Version 10 (issue 14, a year of index): what runs often stops reading
/// the whole segment table, which at 64 channels × a year of minute segments
/// is 34 M rows. `channel_bytes` keeps each channel's stored bytes (the
/// `stored_bytes!` of its rows that are not garbage), kept up to date by
/// triggers whoever writes the rows, so the writer's retention pass (every
/// 5 s) reads 64 rows instead of summing the table. The oldest finished
/// segments of each kind come from their own partial index, which covers
/// what the pass reads of them (the pass used to walk a channel's whole
/// history to find its oldest event footage),
/// start-up finds the rows being written or deleted from a partial index
/// holding only those, and the (channel, start) index grows the columns the
/// recordings list reads, so that it reads the index (~50 bytes a row)
/// instead of the rows, whose frame indexes make them ~5 kB each (`id`
/// follows the start so that the index's order is the lists' order, with
/// no sort). Built once
/// when an existing store is upgraded: a full read of the table.
const MIGRATION_10: &str = r#"
CREATE TABLE channel_bytes (
  channel INTEGER PRIMARY KEY,
  bytes INTEGER NOT NULL         -- SUM of stored bytes over the channel's rows with state < 2
);
INSERT INTO channel_bytes (channel, bytes)
  SELECT channel, SUM(CASE WHEN damage IS NULL THEN bytes ELSE COALESCE(readable_bytes, 0) END)
  FROM segment WHERE state < 2 GROUP BY channel;
CREATE TRIGGER segment_bytes_insert AFTER INSERT ON segment WHEN new.state < 2 BEGIN
  INSERT OR IGNORE INTO channel_bytes (channel, bytes) VALUES (new.channel, 0);
  UPDATE channel_bytes
    SET bytes = bytes + CASE WHEN new.damage IS NULL THEN new.bytes ELSE COALESCE(new.readable_bytes, 0) END
    WHERE channel = new.channel;
END;
CREATE TRIGGER segment_bytes_delete AFTER DELETE ON segment WHEN old.state < 2 BEGIN
  UPDATE channel_bytes
    SET bytes = bytes - CASE WHEN old.damage IS NULL THEN old.bytes ELSE COALESCE(old.readable_bytes, 0) END
    WHERE channel = old.channel;
END;
CREATE TRIGGER segment_bytes_update AFTER UPDATE OF channel, state, bytes, damage, readable_bytes ON segment BEGIN
  UPDATE channel_bytes
    SET bytes = bytes - CASE WHEN old.state >= 2 THEN 0
                             WHEN old.damage IS NULL THEN old.bytes ELSE COALESCE(old.readable_bytes, 0) END
    WHERE channel = old.channel;
  INSERT OR IGNORE INTO channel_bytes (channel, bytes) VALUES (new.channel, 0);
  UPDATE channel_bytes
    SET bytes = bytes + CASE WHEN new.state >= 2 THEN 0
                             WHEN new.damage IS NULL THEN new.bytes ELSE COALESCE(new.readable_bytes, 0) END
    WHERE channel = new.channel;
END;
CREATE INDEX segment_finished_oldest ON segment (channel, event, start_90k, end_90k, bytes) WHERE state = 1;
CREATE INDEX segment_unfinished ON segment (state) WHERE state <> 1;
DROP INDEX segment_channel_start;
CREATE INDEX segment_channel_start ON segment
  (channel, start_90k, id, end_90k, state, frames, bytes, sample_entry_id, damage, readable_bytes, holes);
"#;

/// Version 11: `record_sha256`, the record digest (`store::record_digest`:
/// the SHA-256 of the segment header and every record header, each holding
/// its frame's CRC-32) that the writer stores from now on instead of a
/// SHA-256 of every byte. `sha256` keeps the whole-file hashes of segments
/// finished before; the check uses whichever a row has.
const MIGRATION_11: &str = r#"
ALTER TABLE segment ADD COLUMN record_sha256 BLOB;      -- 32 bytes; NULL: see sha256
"#;

pub const WRITING: i64 = 0;
pub const COMPLETE: i64 = 1;
pub const GARBAGE: i64 = 2;
/// In the archive tier, no longer on the local disk (`crate::archive`).
pub const ARCHIVED: i64 = 3;

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // WAL lets HTTP readers run beside the writer; FULL makes each commit
    // durable, which the ordered file/row protocol relies on. Commits are rare
    // (segment open/close, once per flush), so FULL costs little.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The log size at which the writer checkpoints by itself: a backstop far
/// above what the `store-checkpoint` thread lets the log reach (64 MiB of
/// 4-KiB pages), so the writer's commits never run a checkpoint's fsyncs
/// while that thread keeps up.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// Puts the writer's connection in its recording mode, after repair: commits
/// are not synced on the writer thread (`synchronous = NORMAL`) and the log
/// is checkpointed elsewhere (`store::checkpoint`, which says why this keeps
/// every promise). What must be durable when its commit returns goes through
/// `synced`.
pub fn set_writer_mode(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
}

/// Runs `f` with `synchronous = FULL`: every commit it makes, and every
/// commit before it on any connection (the log is one sequence), is durable
/// when it returns. For commits followed by what a power cut must not see
/// without them: an unlink after retention's marks, an event announced.
/// Must not be called inside a transaction.
pub fn synced<T>(conn: &Connection, f: impl FnOnce() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    let r = f();
    // Left at FULL if this fails: slower, never less durable.
    let _ = conn.pragma_update(None, "synchronous", "NORMAL");
    r
}

/// How long a connection waits for another's write lock.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn open_readonly(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Opens (creating if need be) the index of the store in `dir` at the current
/// schema, for commands that work on a store without running the NVR.
pub fn open_dir(dir: &Path) -> Result<Connection, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let p = dir.join("index.db");
    let mut c = open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    migrate(&mut c).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(c)
}

/// Brings the schema to `SCHEMA_VERSION`. Refuses a newer database rather than
/// guessing at it.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let v: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if v > SCHEMA_VERSION {
        return Err(format!(
            "database schema version {v} is newer than this Tandem understands ({SCHEMA_VERSION})"
        ));
    }
    let steps: [(i32, &str); 13] = [
        (1, SCHEMA),
        (2, MIGRATION_2),
        (3, MIGRATION_3),
        (4, MIGRATION_4),
        (5, MIGRATION_5),
        (6, MIGRATION_6),
        (7, MIGRATION_7),
        (8, MIGRATION_8),
        (9, MIGRATION_9),
        (10, MIGRATION_10),
        (11, MIGRATION_11),
        (12, super::run_days::MIGRATION_12),
        (13, crate::archive::rows::MIGRATION_13),
    ];
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    for (version, sql) in steps.iter().filter(|(n, _)| *n > v) {
        tx.execute_batch(sql)
            .map_err(|e| format!("migrating to schema {version}: {e}"))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

/// This NVR's identity among its peers, created on first use.
pub fn nvr_id(conn: &Connection) -> rusqlite::Result<String> {
    if let Some(id) = conn
        .query_row("SELECT value FROM meta WHERE key = 'nvr_id'", [], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    let id = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
    conn.execute("INSERT INTO meta (key, value) VALUES ('nvr_id', ?1)", params![id])?;
    Ok(id)
}

/// The key that signs the alerts' expiring snapshot links
/// (`alerts::link`): 32 random bytes, hex, created on first use and kept with
/// the index so that links stay valid across restarts.
pub fn link_key(conn: &Connection) -> rusqlite::Result<String> {
    if let Some(k) = conn
        .query_row("SELECT value FROM meta WHERE key = 'link_key'", [], |r| r.get(0))
        .optional()?
    {
        return Ok(k);
    }
    let k: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
    conn.execute("INSERT INTO meta (key, value) VALUES ('link_key', ?1)", params![k])?;
    Ok(k)
}
