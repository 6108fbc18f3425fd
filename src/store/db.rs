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
use std::collections::HashMap;
use std::path::Path;

use crate::store::capacity::ChannelFootage;
use crate::store::retention::{ChannelUsage, SegmentInfo};
use crate::store::segment_file::Hole;
use crate::time::Time90k;

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

#[derive(Clone, Debug)]
pub struct SegmentRow {
    pub id: i64,
    pub channel: u32,
    pub state: i64,
    pub start: Time90k,
    pub end: Time90k,
    pub frames: u32,
    pub key_frames: u32,
    pub bytes: u64,
    pub media_bytes: u64,
    pub sample_entry_id: i64,
    pub frame_index: Option<Vec<u8>>,
    /// What is wrong with the file, if the start-up check found it damaged.
    pub damage: Option<String>,
    /// With `damage`: how many leading bytes of the file are still usable.
    pub readable_bytes: Option<u64>,
    /// Damaged stretches inside the file that repair stepped over.
    pub holes: Vec<Hole>,
}

const SEGMENT_COLS: &str = "id, channel, state, start_90k, end_90k, frames, key_frames, bytes, \
                            media_bytes, sample_entry_id, frame_index, damage, readable_bytes, holes";

pub(crate) fn segment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SegmentRow> {
    Ok(SegmentRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        state: r.get(2)?,
        start: Time90k(r.get(3)?),
        end: Time90k(r.get(4)?),
        frames: r.get(5)?,
        key_frames: r.get(6)?,
        bytes: r.get::<_, i64>(7)? as u64,
        media_bytes: r.get::<_, i64>(8)? as u64,
        sample_entry_id: r.get(9)?,
        frame_index: r.get(10)?,
        damage: r.get(11)?,
        readable_bytes: r.get::<_, Option<i64>>(12)?.map(|b| b.max(0) as u64),
        // A hole list that does not parse is treated as none: the frame index
        // alone still places every frame before the first hole correctly.
        holes: r
            .get::<_, Option<String>>(13)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleEntryRow {
    pub id: i64,
    pub data: Vec<u8>,
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

pub fn upsert_sample_entry(conn: &Connection, data: &[u8], codec: &str, w: u32, h: u32) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT OR IGNORE INTO sample_entry (data, codec, width, height) VALUES (?1, ?2, ?3, ?4)",
        params![data, codec, w, h],
    )?;
    conn.query_row("SELECT id FROM sample_entry WHERE data = ?1", params![data], |r| {
        r.get(0)
    })
}

pub fn sample_entries(conn: &Connection) -> rusqlite::Result<HashMap<i64, SampleEntryRow>> {
    let mut stmt = conn.prepare_cached("SELECT id, data, codec, width, height FROM sample_entry")?;
    let rows = stmt.query_map([], |r| {
        Ok(SampleEntryRow {
            id: r.get(0)?,
            data: r.get(1)?,
            codec: r.get(2)?,
            width: r.get(3)?,
            height: r.get(4)?,
        })
    })?;
    rows.map(|r| r.map(|s| (s.id, s))).collect()
}

pub fn insert_writing_segment(conn: &Connection, channel: u32, start: Time90k, entry: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO segment (channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes, sample_entry_id)
         VALUES (?1, 0, ?2, ?2, 0, 0, 0, 0, ?3)",
        params![channel, start.0, entry],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Inserts a segment adopted from a file whose row was never committed.
pub fn insert_adopted_segment(
    conn: &Connection,
    id: i64,
    channel: u32,
    start: Time90k,
    entry: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO segment (id, channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes, sample_entry_id)
         VALUES (?1, ?2, 0, ?3, ?3, 0, 0, 0, 0, ?4)",
        params![id, channel, start.0, entry],
    )?;
    Ok(())
}

pub struct Progress {
    pub end: Time90k,
    pub frames: u32,
    pub key_frames: u32,
    pub bytes: u64,
    pub media_bytes: u64,
}

pub fn update_writing(conn: &Connection, id: i64, p: &Progress) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE segment SET end_90k = ?2, frames = ?3, key_frames = ?4, bytes = ?5, media_bytes = ?6
         WHERE id = ?1 AND state = 0",
        params![
            id,
            p.end.0,
            p.frames,
            p.key_frames,
            p.bytes as i64,
            p.media_bytes as i64
        ],
    )?;
    Ok(())
}

/// Marks a segment finished. `record_sha256` is the record digest
/// (`record_digest`) of the file's first `p.bytes` bytes; `None` when it
/// was not made as they were written (repair).
pub fn complete_segment(
    conn: &Connection,
    id: i64,
    p: &Progress,
    index: &[u8],
    record_sha256: Option<&[u8; 32]>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE segment SET state = 1, end_90k = ?2, frames = ?3, key_frames = ?4, bytes = ?5,
         media_bytes = ?6, frame_index = ?7, record_sha256 = ?8 WHERE id = ?1",
        params![
            id,
            p.end.0,
            p.frames,
            p.key_frames,
            p.bytes as i64,
            p.media_bytes as i64,
            index,
            record_sha256.map(|h| h.as_slice())
        ],
    )?;
    Ok(())
}

/// Inserts a segment that is already finished, as `insert_writing_segment`
/// followed by `complete_segment` would leave it, in one statement: for
/// generators of large synthetic indexes (`tandem bench index`), which must
/// produce exactly the rows the writer does.
pub fn insert_finished_segment(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    entry: i64,
    p: &Progress,
    index: &[u8],
    record_sha256: Option<&[u8; 32]>,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO segment (channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes,
           sample_entry_id, frame_index, record_sha256)
         VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        channel,
        start.0,
        p.end.0,
        p.frames,
        p.key_frames,
        p.bytes as i64,
        p.media_bytes as i64,
        entry,
        index,
        record_sha256.map(|h| h.as_slice())
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Turns off the rollback journal and fsyncs on `conn` for a bulk load of
/// generated rows: a crash during the load leaves a corrupt index, so this is
/// only for indexes that are thrown away (benchmarks); `open` turns WAL and
/// FULL back on for the next connection.
pub fn bulk_load_mode(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)
}

/// A finished segment as the integrity check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedSegment {
    pub id: i64,
    pub channel: u32,
    pub start: Time90k,
    pub bytes: u64,
    /// The SHA-256 of the whole file: segments finished at schemas 6 to 9.
    pub sha256: Option<Vec<u8>>,
    /// The record digest: segments finished since schema 10. Both None:
    /// finished before schema 6 or rebuilt by repair.
    pub record_sha256: Option<Vec<u8>>,
    /// Damage the start-up check already recorded.
    pub damage: Option<String>,
}

/// Finished segments (optionally of one channel) overlapping [start, end),
/// in id order, for `tandem verify --data` and the scrub.
/// `version`: the index's schema (an older one, not yet opened by this
/// Tandem, lacks the hash columns: its segments are unhashed).
pub fn finished_segments_for_check(
    conn: &Connection,
    channel: Option<u32>,
    start: Time90k,
    end: Time90k,
    version: i32,
) -> rusqlite::Result<Vec<HashedSegment>> {
    let hash = if version >= 6 { "sha256" } else { "NULL" };
    let records = if version >= 11 { "record_sha256" } else { "NULL" };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, channel, start_90k, bytes, {hash}, damage, {records} FROM segment
         WHERE state = 1 AND (?1 IS NULL OR channel = ?1) AND start_90k < ?3 AND end_90k > ?2
         ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![channel, start.0, end.0], |r| {
        Ok(HashedSegment {
            id: r.get(0)?,
            channel: r.get(1)?,
            start: Time90k(r.get(2)?),
            bytes: r.get::<_, i64>(3)?.max(0) as u64,
            sha256: r.get(4)?,
            damage: r.get(5)?,
            record_sha256: r.get(6)?,
        })
    })?;
    rows.collect()
}

pub fn segment(conn: &Connection, id: i64) -> rusqlite::Result<Option<SegmentRow>> {
    conn.query_row(
        &format!("SELECT {SEGMENT_COLS} FROM segment WHERE id = ?1"),
        params![id],
        segment_row,
    )
    .optional()
}

pub fn segments_in_state(conn: &Connection, state: i64) -> rusqlite::Result<Vec<SegmentRow>> {
    // `state <> 1` lets the rows being written or deleted come from their
    // partial index; finished rows are asked for elsewhere.
    debug_assert_ne!(state, COMPLETE);
    let mut stmt = conn.prepare(&format!(
        "SELECT {SEGMENT_COLS} FROM segment WHERE state = ?1 AND state <> 1 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![state], segment_row)?;
    rows.collect()
}

pub fn all_segment_ids(conn: &Connection) -> rusqlite::Result<std::collections::HashSet<i64>> {
    let mut stmt = conn.prepare("SELECT id FROM segment")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Segments of a channel overlapping [start, end), in time order, excluding
/// garbage (archived ones included: their footage is served from the bucket).
pub fn segments_overlapping(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<Vec<SegmentRow>> {
    overlapping(conn, channel, start, end, SEGMENT_COLS)
}

/// As `segments_overlapping`, for the recordings list: read from the
/// covering index `segment_channel_start` alone, so `frame_index` is `None` and
/// `key_frames`, `media_bytes` are 0 — except for rows with damage or holes,
/// read whole because their frame index places what is still readable. A
/// year of rows with their frame indexes is gigabytes; this is megabytes.
pub fn segments_overlapping_for_runs(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<Vec<SegmentRow>> {
    let mut rows = overlapping(
        conn,
        channel,
        start,
        end,
        "id, channel, state, start_90k, end_90k, frames, 0, bytes, 0, sample_entry_id, NULL, damage, \
         readable_bytes, holes",
    )?;
    for r in rows.iter_mut().filter(|r| r.damage.is_some() || !r.holes.is_empty()) {
        if let Some(whole) = segment(conn, r.id)? {
            *r = whole;
        }
    }
    Ok(rows)
}

/// `cols`: `SEGMENT_COLS` or columns in the same order (for `segment_row`).
fn overlapping(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
    cols: &str,
) -> rusqlite::Result<Vec<SegmentRow>> {
    // A segment overlapping `start` began at most the channel's longest
    // segment before it (`channel_span`), so bounding the start from below
    // lets the (channel, start) index do the work for segments of any length.
    // The extra hour covers a segment being written, whose row end lags.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols} FROM segment
         WHERE channel = ?1 AND start_90k < ?3 AND end_90k > ?2 AND state <> 2
           AND start_90k >= ?2 - 324000000
               - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = ?1), 0)
         ORDER BY start_90k, id"
    ))?;
    let rows = stmt.query_map(params![channel, start.0, end.0], segment_row)?;
    rows.collect()
}

/// Starts of the channel's segments being written that began before `before`.
pub fn writing_starts_before(conn: &Connection, channel: u32, before: Time90k) -> rusqlite::Result<Vec<Time90k>> {
    let mut stmt =
        conn.prepare_cached("SELECT start_90k FROM segment WHERE channel = ?1 AND state = 0 AND start_90k < ?2")?;
    let rows = stmt.query_map(params![channel, before.0], |r| Ok(Time90k(r.get(0)?)))?;
    rows.collect()
}

/// Records a segment's capture offset (camera clock − this NVR's, 90 kHz
/// ticks) unless it has one: a segment keeps its first known value.
pub fn set_capture_offset(conn: &Connection, id: i64, offset: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE segment SET capture_offset_90k = ?2 WHERE id = ?1 AND capture_offset_90k IS NULL",
        params![id, offset],
    )?;
    Ok(())
}

/// A segment's own capture offset, if it has one.
pub fn capture_offset_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT capture_offset_90k FROM segment WHERE id = ?1",
        params![id],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

/// The capture offset of the channel's segment nearest to `t` that has one
/// (a segment containing `t` is nearest); `None` when no segment of the
/// channel has one. Garbage rows are not asked.
pub fn capture_offset_near(conn: &Connection, channel: u32, t: Time90k) -> rusqlite::Result<Option<i64>> {
    // Two walks of the (channel, start) index from `t`, each stopping at its
    // first row with an offset.
    let before: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT end_90k, capture_offset_90k FROM segment
             WHERE channel = ?1 AND start_90k <= ?2 AND state < 2 AND capture_offset_90k IS NOT NULL
             ORDER BY start_90k DESC LIMIT 1",
        )?
        .query_row(params![channel, t.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let after: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT start_90k, capture_offset_90k FROM segment
             WHERE channel = ?1 AND start_90k > ?2 AND state < 2 AND capture_offset_90k IS NOT NULL
             ORDER BY start_90k LIMIT 1",
        )?
        .query_row(params![channel, t.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match (before, after) {
        (Some((end, a)), Some((start, b))) => {
            // A segment being written has a row end that lags; it still
            // counts as reaching `t` when it is the last one before it.
            let gap_before = (t.0 - end).max(0);
            let gap_after = start - t.0;
            Some(if gap_before <= gap_after { a } else { b })
        }
        (Some((_, a)), None) => Some(a),
        (None, Some((_, b))) => Some(b),
        (None, None) => None,
    })
}

/// Whether a peer's segment has been imported already.
pub fn imported(conn: &Connection, origin: &str, origin_segment: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM import WHERE origin = ?1 AND origin_segment = ?2",
        params![origin, origin_segment],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Segments of a channel overlapping [start, end) found by scanning every
/// row: the reference `segments_overlapping` is tested against.
#[cfg(test)]
fn segments_overlapping_scan(conn: &Connection, channel: u32, start: Time90k, end: Time90k) -> Vec<i64> {
    let mut stmt = conn
        .prepare(
            "SELECT id FROM segment WHERE channel = ?1 AND start_90k < ?3 AND end_90k > ?2 AND state <> 2
             ORDER BY start_90k, id",
        )
        .unwrap();
    let rows = stmt.query_map(params![channel, start.0, end.0], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Every finished, not yet damaged segment, with just what the start-up check
/// needs, by channel and start: read from the (channel, start) index alone,
/// which covers these columns (the rows, with their frame indexes, are ~100
/// times larger), and in the order the files were created.
pub fn complete_segment_sizes(conn: &Connection) -> rusqlite::Result<Vec<(i64, u32, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT id, channel, bytes FROM segment WHERE state = 1 AND damage IS NULL ORDER BY channel, start_90k",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)))?;
    rows.collect()
}

/// Records that a finished segment's file is damaged: only its first
/// `readable_bytes` bytes can be served. False if the row is no longer a
/// finished segment (retention got there first).
pub fn mark_damaged(conn: &Connection, id: i64, why: &str, readable_bytes: u64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE segment SET damage = ?2, readable_bytes = ?3 WHERE id = ?1 AND state = 1",
        params![id, why, readable_bytes as i64],
    )?;
    Ok(n == 1)
}

/// Stores the damaged stretches repair stepped over in a segment's file.
pub fn set_holes(conn: &Connection, id: i64, holes: &[Hole]) -> rusqlite::Result<()> {
    let json = if holes.is_empty() {
        None
    } else {
        serde_json::to_string(holes).ok()
    };
    conn.execute("UPDATE segment SET holes = ?2 WHERE id = ?1", params![id, json])?;
    Ok(())
}

pub fn mark_garbage(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE segment SET state = 2 WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn delete_segment_row(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM segment WHERE id = ?1", params![id])?;
    Ok(())
}

/// A segment's bytes as stored now: a damaged segment occupies only what is
/// left of its file (counting the bytes its row once promised would make
/// retention delete good footage and the storage report overstate use).
macro_rules! stored_bytes {
    () => {
        "CASE WHEN damage IS NULL THEN bytes ELSE COALESCE(readable_bytes, 0) END"
    };
}

/// Per channel: total bytes of all segments and the `limit` oldest complete
/// ones of each kind (continuous footage, event footage).
pub fn channel_usage(conn: &Connection, limit: usize) -> rusqlite::Result<HashMap<u32, ChannelUsage>> {
    let mut out: HashMap<u32, ChannelUsage> = HashMap::new();
    // Kept by triggers (schema 10): summing the table here cost a full scan
    // of it on every retention pass.
    let mut stmt = conn.prepare_cached(
        "SELECT c.channel, c.bytes FROM channel_bytes c
         WHERE EXISTS (SELECT 1 FROM segment s WHERE s.channel = c.channel AND s.state < 2)",
    )?;
    for r in stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))? {
        let (ch, total) = r?;
        out.entry(ch).or_default().total_bytes = total as u64;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, start_90k, end_90k, bytes, event FROM segment
         WHERE channel = ?1 AND state = 1 AND event = ?2 ORDER BY start_90k LIMIT ?3",
    )?;
    for (ch, u) in out.iter_mut() {
        for event in [false, true] {
            let rows = stmt.query_map(params![ch, event, limit as i64], |r| {
                Ok(SegmentInfo {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    start: Time90k(r.get(2)?),
                    end: Time90k(r.get(3)?),
                    bytes: r.get::<_, i64>(4)? as u64,
                    event: r.get(5)?,
                })
            })?;
            *u.oldest_mut(event) = rows.collect::<rusqlite::Result<_>>()?;
        }
    }
    Ok(out)
}

/// Per channel: bytes stored, the oldest segment's start, and the bytes
/// recorded in [since, now) with each segment prorated by its overlap (the
/// storage report's rate, `store::capacity`).
pub fn footage_figures(conn: &Connection, since: Time90k, now: Time90k) -> rusqlite::Result<Vec<ChannelFootage>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT channel, SUM(",
        stored_bytes!(),
        "),
                MIN(start_90k),
                SUM(CASE WHEN end_90k > ?1 AND start_90k < ?2
                         THEN bytes * 1.0 * (MIN(end_90k, ?2) - MAX(start_90k, ?1)) / MAX(end_90k - start_90k, 1)
                         ELSE 0 END)
         FROM segment WHERE state < 2 GROUP BY channel ORDER BY channel"
    ))?;
    let rows = stmt.query_map(params![since.0, now.0], |r| {
        Ok(ChannelFootage {
            channel: r.get(0)?,
            bytes: r.get::<_, i64>(1)?.max(0) as u64,
            oldest: r.get::<_, Option<i64>>(2)?.map(Time90k),
            recent_bytes: r.get::<_, f64>(3)?.max(0.0) as u64,
        })
    })?;
    rows.collect()
}

/// Marks the channel's segments overlapping [start, ∞) as event footage.
/// Rows still being written (the open segment, and closed ones whose
/// completion waits for the next flush round) have an `end_90k` brought up
/// to date only by that round: the writer names those that reach past
/// `start` by their end in memory (`unsettled`), and only those.
pub fn mark_event_footage(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    unsettled: &[i64],
) -> rusqlite::Result<usize> {
    let ids = serde_json::to_string(unsettled).expect("a list of integers serializes");
    conn.execute(
        "UPDATE segment SET event = 1
         WHERE channel = ?1 AND state < 2 AND event = 0
           AND ((end_90k > ?2 AND state <> 0) OR id IN (SELECT value FROM json_each(?3)))",
        params![channel, start.0, ids],
    )
}

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

// ---- Gap fill (`crate::gapfill`): jobs, binding history, merged segments. ----

/// One `gapfill_job` row; `gapfill::store` turns it into a typed job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapfillJobRow {
    pub id: i64,
    pub channel: u32,
    pub camera: String,
    pub start: Time90k,
    pub end: Time90k,
    pub reason: String,
    pub state: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub filled_to: Option<Time90k>,
    pub frames: u64,
    pub bytes: u64,
    pub lost_90k: i64,
    pub last_error: Option<String>,
}

const GAPFILL_JOB_COLS: &str = "id, channel, camera, start_90k, end_90k, reason, state, created_ms, updated_ms, \
                                attempts, next_attempt_ms, filled_to_90k, frames, bytes, lost_90k, last_error";

fn gapfill_job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GapfillJobRow> {
    Ok(GapfillJobRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        camera: r.get(2)?,
        start: Time90k(r.get(3)?),
        end: Time90k(r.get(4)?),
        reason: r.get(5)?,
        state: r.get(6)?,
        created_ms: r.get(7)?,
        updated_ms: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_ms: r.get(10)?,
        filled_to: r.get::<_, Option<i64>>(11)?.map(Time90k),
        frames: r.get::<_, i64>(12)?.max(0) as u64,
        bytes: r.get::<_, i64>(13)?.max(0) as u64,
        lost_90k: r.get(14)?,
        last_error: r.get(15)?,
    })
}

/// Records a new hole to fill; returns its id.
#[allow(clippy::too_many_arguments)]
pub fn gapfill_insert_job(
    conn: &Connection,
    channel: u32,
    camera: &str,
    start: Time90k,
    end: Time90k,
    reason: &str,
    now_ms: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO gapfill_job (channel, camera, start_90k, end_90k, reason, state, created_ms, updated_ms, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?6)",
        params![channel, camera, start.0, end.0, reason, now_ms],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The newest `limit` jobs (of one channel, or all), newest first.
pub fn gapfill_jobs(conn: &Connection, channel: Option<u32>, limit: usize) -> rusqlite::Result<Vec<GapfillJobRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GAPFILL_JOB_COLS} FROM gapfill_job WHERE (?1 IS NULL OR channel = ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![channel, limit as i64], gapfill_job_row)?;
    rows.collect()
}

/// One channel's jobs overlapping [start, end), by start.
pub fn gapfill_jobs_overlapping(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<Vec<GapfillJobRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GAPFILL_JOB_COLS} FROM gapfill_job WHERE channel = ?1 AND start_90k < ?3 AND end_90k > ?2
         ORDER BY start_90k LIMIT 10000"
    ))?;
    let rows = stmt.query_map(params![channel, start.0, end.0], gapfill_job_row)?;
    rows.collect()
}

/// Jobs waiting for an attempt whose time has come, oldest first.
pub fn gapfill_due_jobs(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<GapfillJobRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GAPFILL_JOB_COLS} FROM gapfill_job WHERE state = 'pending' AND next_attempt_ms <= ?1
         ORDER BY id LIMIT 1000"
    ))?;
    let rows = stmt.query_map(params![now_ms], gapfill_job_row)?;
    rows.collect()
}

/// A job's attempt begins.
pub fn gapfill_start_attempt(conn: &Connection, id: i64, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_job SET state = 'running', updated_ms = ?2 WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(())
}

/// A piece of a job merged: its progress so far.
pub fn gapfill_progress(
    conn: &Connection,
    id: i64,
    filled_to: Time90k,
    frames: u64,
    bytes: u64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_job SET filled_to_90k = MAX(COALESCE(filled_to_90k, ?2), ?2), frames = ?3, bytes = ?4,
         updated_ms = ?5 WHERE id = ?1",
        params![id, filled_to.0, frames as i64, bytes as i64, now_ms],
    )?;
    Ok(())
}

/// A job's attempt ended: its new state, attempts, next attempt, loss and error.
#[allow(clippy::too_many_arguments)]
pub fn gapfill_end_attempt(
    conn: &Connection,
    id: i64,
    state: &str,
    attempts: u32,
    next_attempt_ms: i64,
    lost_90k: i64,
    last_error: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_job SET state = ?2, attempts = ?3, next_attempt_ms = ?4, lost_90k = ?5, last_error = ?6,
         updated_ms = ?7 WHERE id = ?1",
        params![id, state, attempts, next_attempt_ms, lost_90k, last_error, now_ms],
    )?;
    Ok(())
}

/// At start-up: jobs the last process was running wait for a new attempt.
pub fn gapfill_requeue_running(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE gapfill_job SET state = 'pending', next_attempt_ms = ?1 WHERE state = 'running'",
        params![now_ms],
    )
}

/// The stretches of a channel any job covers, ending after `since`.
pub fn gapfill_job_spans(conn: &Connection, channel: u32, since: Time90k) -> rusqlite::Result<Vec<(Time90k, Time90k)>> {
    let mut stmt =
        conn.prepare_cached("SELECT start_90k, end_90k FROM gapfill_job WHERE channel = ?1 AND end_90k > ?2")?;
    let rows = stmt.query_map(params![channel, since.0], |r| {
        Ok((Time90k(r.get(0)?), Time90k(r.get(1)?)))
    })?;
    rows.collect()
}

/// A channel's recorded stretches (start, end of each segment row that is
/// not garbage) ending after `since`: what the planner reads, without the
/// frame indexes.
pub fn gapfill_runs(conn: &Connection, channel: u32, since: Time90k) -> rusqlite::Result<Vec<(Time90k, Time90k)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT start_90k, end_90k FROM segment WHERE channel = ?1 AND state < 2 AND (end_90k > ?2 OR state = 0)
         ORDER BY start_90k",
    )?;
    let rows = stmt.query_map(params![channel, since.0], |r| {
        Ok((Time90k(r.get(0)?), Time90k(r.get(1)?)))
    })?;
    rows.collect()
}

/// A channel bound to `camera` from `at` on (ends any binding it had).
pub fn gapfill_note_binding(
    conn: &Connection,
    channel: u32,
    camera: Option<&str>,
    at: Time90k,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE gapfill_binding SET end_90k = MAX(?2, start_90k) WHERE channel = ?1 AND end_90k IS NULL",
        params![channel, at.0],
    )?;
    if let Some(cam) = camera {
        conn.execute(
            "INSERT INTO gapfill_binding (channel, camera, start_90k) VALUES (?1, ?2, ?3)",
            params![channel, cam, at.0],
        )?;
    }
    Ok(())
}

/// At start-up: bindings the last process left open end now, marked as
/// ended by a restart (the process stopped while they held).
pub fn gapfill_end_bindings_at_start(conn: &Connection, at: Time90k) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE gapfill_binding SET end_90k = MAX(?1, start_90k), ended_by_restart = 1 WHERE end_90k IS NULL",
        params![at.0],
    )
}

/// A channel's binding spans ending after `since` (or open):
/// (camera, start, end, ended by a restart).
pub type BindingRow = (String, Time90k, Option<Time90k>, bool);

pub fn gapfill_bindings(conn: &Connection, channel: u32, since: Time90k) -> rusqlite::Result<Vec<BindingRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT camera, start_90k, end_90k, ended_by_restart FROM gapfill_binding
         WHERE channel = ?1 AND (end_90k IS NULL OR end_90k > ?2) ORDER BY start_90k",
    )?;
    let rows = stmt.query_map(params![channel, since.0], |r| {
        Ok((
            r.get(0)?,
            Time90k(r.get(1)?),
            r.get::<_, Option<i64>>(2)?.map(Time90k),
            r.get::<_, i64>(3)? != 0,
        ))
    })?;
    rows.collect()
}

/// The highest segment id handed out so far (ids are never reused).
pub fn last_segment_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM segment", [], |r| r.get(0))
}

/// Marks the channel's segments created after `after_id` that start in
/// [start, end) as merged by gap-fill job `job`: a merge's own segments
/// (live recording starts at the present, never inside a past hole).
pub fn gapfill_mark_segments(
    conn: &Connection,
    job: i64,
    channel: u32,
    after_id: i64,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO gapfill_segment (segment_id, job)
         SELECT id, ?1 FROM segment WHERE channel = ?2 AND id > ?3 AND start_90k >= ?4 AND start_90k < ?5 AND state < 2",
        params![job, channel, after_id, start.0, end.0],
    )
}

/// The next unused piece number of gap-fill job `job` (the `origin_segment`
/// of its merges is `job << 32 | piece`, unique across attempts and restarts).
pub fn gapfill_next_piece(conn: &Connection, job: i64, origin: &str) -> rusqlite::Result<i64> {
    let base = job << 32;
    conn.query_row(
        "SELECT COALESCE(MAX(origin_segment) + 1, ?2) FROM import
         WHERE origin = ?1 AND origin_segment >= ?2 AND origin_segment < ?3",
        params![origin, base, base + (1i64 << 32)],
        |r| r.get(0),
    )
}

/// Of the segments with ids in [lo, hi], those gap fill merged (of any
/// channel: callers keep the ids they hold). A range of the table's key,
/// for lists that already have their rows: `gapfill_segment_ids` walks the
/// (channel, start) range again.
pub fn gapfill_segments_among(conn: &Connection, lo: i64, hi: i64) -> rusqlite::Result<std::collections::HashSet<i64>> {
    let mut stmt = conn.prepare_cached("SELECT segment_id FROM gapfill_segment WHERE segment_id BETWEEN ?1 AND ?2")?;
    let rows = stmt.query_map(params![lo, hi], |r| r.get(0))?;
    rows.collect()
}

/// Of a channel's segments overlapping [start, end), those gap fill merged.
pub fn gapfill_segment_ids(
    conn: &Connection,
    channel: u32,
    start: Time90k,
    end: Time90k,
) -> rusqlite::Result<std::collections::HashSet<i64>> {
    // Bounded from below as in `segments_overlapping`: without it the
    // (channel, start) index was walked from the channel's first segment.
    let mut stmt = conn.prepare_cached(
        "SELECT g.segment_id FROM gapfill_segment g JOIN segment s ON s.id = g.segment_id
         WHERE s.channel = ?1 AND s.start_90k < ?3 AND s.end_90k > ?2
           AND s.start_90k >= ?2 - 324000000
               - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = ?1), 0)",
    )?;
    let rows = stmt.query_map(params![channel, start.0, end.0], |r| r.get(0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_offset_near_finds_the_nearest_segment_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(&dir.path().join("db")).unwrap();
        migrate(&mut c).unwrap();
        let e = upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
        let seg = |start: i64, end: i64, offset: Option<i64>| {
            let id = insert_writing_segment(&c, 1, Time90k(start), e).unwrap();
            let p = Progress {
                end: Time90k(end),
                frames: 1,
                key_frames: 1,
                bytes: 1,
                media_bytes: 1,
            };
            complete_segment(&c, id, &p, b"i", None).unwrap();
            if let Some(o) = offset {
                set_capture_offset(&c, id, o).unwrap();
            }
            id
        };
        assert_eq!(capture_offset_near(&c, 1, Time90k(500)).unwrap(), None);
        let a = seg(100, 200, Some(11));
        seg(200, 300, None);
        seg(1000, 1100, Some(22));
        // Inside, before, between (nearer to each side), after.
        assert_eq!(capture_offset_near(&c, 1, Time90k(150)).unwrap(), Some(11));
        assert_eq!(capture_offset_near(&c, 1, Time90k(0)).unwrap(), Some(11));
        assert_eq!(capture_offset_near(&c, 1, Time90k(500)).unwrap(), Some(11));
        assert_eq!(capture_offset_near(&c, 1, Time90k(700)).unwrap(), Some(22));
        assert_eq!(capture_offset_near(&c, 1, Time90k(5000)).unwrap(), Some(22));
        // Another channel's offsets are not ours.
        assert_eq!(capture_offset_near(&c, 2, Time90k(150)).unwrap(), None);
        assert_eq!(capture_offset_of(&c, a).unwrap(), Some(11));
        assert_eq!(capture_offset_of(&c, a + 1).unwrap(), None);
        assert_eq!(capture_offset_of(&c, 12345).unwrap(), None);
        // A segment keeps its first known offset.
        set_capture_offset(&c, a, 99).unwrap();
        assert_eq!(capture_offset_near(&c, 1, Time90k(150)).unwrap(), Some(11));
    }

    #[test]
    fn fresh_schema_migrates_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let mut c = open(&p).unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let e = upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
        assert_eq!(upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap(), e);
        let id = insert_writing_segment(&c, 1, Time90k(100), e).unwrap();
        let p2 = Progress {
            end: Time90k(200),
            frames: 2,
            key_frames: 1,
            bytes: 10,
            media_bytes: 5,
        };
        complete_segment(&c, id, &p2, b"idx", None).unwrap();
        let rows = segments_overlapping(&c, 1, Time90k(150), Time90k(300)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].frames, 2);
        assert!(segments_overlapping(&c, 1, Time90k(200), Time90k(300))
            .unwrap()
            .is_empty());
        // A version-1 database migrates to exactly the fresh schema.
        let p1 = dir.path().join("v1");
        let mut old = open(&p1).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        migrate(&mut old).unwrap();
        let schema = |c: &Connection| -> Vec<String> {
            let mut st = c
                .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
                .unwrap();
            st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
        };
        assert_eq!(schema(&old), schema(&c));
        let id = nvr_id(&c).unwrap();
        assert_eq!(nvr_id(&c).unwrap(), id);
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(migrate(&mut c).unwrap_err().contains("newer"));
    }

    #[test]
    fn events_end_search_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(&dir.path().join("db")).unwrap();
        migrate(&mut c).unwrap();
        let d = serde_json::json!({ "area": 0.1 });
        let a = insert_event(&c, Some(1), "motion", Time90k(100), None, &d).unwrap();
        end_event(&c, a, Time90k(200), Some(&serde_json::json!({ "region": "r" }))).unwrap();
        let b = insert_event(&c, Some(2), "door", Time90k(150), None, &d).unwrap();
        assert_eq!(event_place(&c, b).unwrap(), Some((Some(2), Time90k(150))));
        assert_eq!(event_place(&c, b + 100).unwrap(), None);
        // Overlap search: motion [100, 200] is found from 180 on; by type; by channel.
        assert_eq!(events(&c, None, None, Time90k(180), Time90k(300)).unwrap().len(), 2);
        assert_eq!(
            events(&c, None, Some("door"), Time90k(0), Time90k(300)).unwrap()[0].id,
            b
        );
        assert!(events(&c, Some(1), None, Time90k(201), Time90k(300))
            .unwrap()
            .is_empty());
        let m = &events(&c, Some(1), None, Time90k(0), Time90k(300)).unwrap()[0];
        assert_eq!(m.details, serde_json::json!({ "area": 0.1, "region": "r" }));
        // The door was still open when the process stopped.
        assert_eq!(close_interrupted_events(&c).unwrap(), 1);
        let door = &events(&c, Some(2), None, Time90k(0), Time90k(300)).unwrap()[0];
        assert_eq!(door.end.as_deref(), Some(door.start.as_str()));
        assert_eq!(door.details["interrupted"], true);
    }

    fn fresh() -> (tempfile::TempDir, Connection, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(&dir.path().join("db")).unwrap();
        migrate(&mut c).unwrap();
        let e = upsert_sample_entry(&c, b"avc1box", "h264", 640, 480).unwrap();
        (dir, c, e)
    }

    fn add(c: &Connection, e: i64, channel: u32, start: i64, end: i64) -> i64 {
        let id = insert_writing_segment(c, channel, Time90k(start), e).unwrap();
        let p = Progress {
            end: Time90k(end),
            frames: 1,
            key_frames: 1,
            bytes: 10,
            media_bytes: 5,
        };
        complete_segment(c, id, &p, b"idx", None).unwrap();
        id
    }

    const HOUR: i64 = 3600 * 90_000;

    #[test]
    fn footage_figures_prorate_segments_over_the_rate_window() {
        let (_d, c, e) = fresh();
        // Channel 1: one segment wholly before the window, one half inside it.
        add(&c, e, 1, 0, HOUR);
        add(&c, e, 1, 2 * HOUR, 4 * HOUR);
        add(&c, e, 2, 3 * HOUR, 3 * HOUR + 90_000);
        let f = footage_figures(&c, Time90k(3 * HOUR), Time90k(4 * HOUR)).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].channel, f[0].bytes, f[0].oldest), (1, 20, Some(Time90k(0))));
        assert_eq!(f[0].recent_bytes, 5, "half of a 10-byte segment lies in the window");
        assert_eq!((f[1].channel, f[1].bytes, f[1].recent_bytes), (2, 10, 10));
        assert_eq!(f[1].oldest, Some(Time90k(3 * HOUR)));
    }

    #[test]
    fn long_segments_are_found_from_their_middle() {
        let (_d, c, e) = fresh();
        // Minute segments around a 2-hour and a 30-hour one, and another channel.
        let mut t = 0;
        for _ in 0..100 {
            add(&c, e, 1, t, t + 60 * 90_000);
            t += 60 * 90_000;
        }
        let two = add(&c, e, 1, t, t + 2 * HOUR);
        let thirty = add(&c, e, 1, t + 3 * HOUR, t + 33 * HOUR);
        add(&c, e, 2, 0, 50 * HOUR);
        let ids = |a: i64, b: i64| -> Vec<i64> {
            let got: Vec<i64> = segments_overlapping(&c, 1, Time90k(a), Time90k(b))
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(
                got,
                segments_overlapping_scan(&c, 1, Time90k(a), Time90k(b)),
                "{a}..{b}"
            );
            got
        };
        assert_eq!(ids(t + HOUR, t + HOUR + 90_000), vec![two]);
        assert_eq!(ids(t + 18 * HOUR, t + 18 * HOUR + 1), vec![thirty]);
        assert_eq!(ids(t + 2 * HOUR, t + 3 * HOUR), Vec::<i64>::new());
        assert_eq!(ids(t - 30 * 90_000, t + 1).len(), 2);
        // Every query the scan answers, the index answers the same.
        for a in (0..40).map(|k| k * HOUR / 2) {
            for len in [1, 90_000, HOUR, 10 * HOUR] {
                ids(a, a + len);
            }
        }
        // The look-back follows the longest segment only, and the query uses
        // the (channel, start) index rather than scanning the table.
        let span: i64 = c
            .query_row("SELECT max_ticks FROM channel_span WHERE channel = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(span, 30 * HOUR);
        let plan: Vec<String> = c
            .prepare(
                "EXPLAIN QUERY PLAN SELECT id FROM segment WHERE channel = 1 AND start_90k < 5 AND end_90k > 2
                 AND state < 2 AND start_90k >= 2 - 324000000
                 - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = 1), 0) ORDER BY start_90k, id",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(plan.iter().any(|l| l.contains("segment_channel_start")), "{plan:?}");
    }

    /// Each query plan's lines, for checking which index a statement uses.
    fn query_plan(c: &Connection, sql: &str) -> String {
        c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn channel_bytes_follow_every_change_to_the_rows() {
        let (_d, c, e) = fresh();
        let summed = |c: &Connection| -> HashMap<u32, u64> {
            let mut st = c
                .prepare(concat!(
                    "SELECT channel, SUM(",
                    stored_bytes!(),
                    ") FROM segment WHERE state < 2 GROUP BY channel"
                ))
                .unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        let kept = |c: &Connection| -> HashMap<u32, u64> {
            channel_usage(c, 10)
                .unwrap()
                .into_iter()
                .map(|(ch, u)| (ch, u.total_bytes))
                .collect()
        };
        let progress = |bytes| Progress {
            end: Time90k(2 * HOUR),
            frames: 3,
            key_frames: 1,
            bytes,
            media_bytes: bytes / 2,
        };
        let check = |step: &str| assert_eq!(kept(&c), summed(&c), "after {step}");
        add(&c, e, 1, 0, HOUR);
        check("a finished segment");
        add(&c, e, 2, 0, HOUR);
        check("another channel's");
        let w = insert_writing_segment(&c, 1, Time90k(HOUR), e).unwrap();
        check("a segment being written");
        update_writing(&c, w, &progress(500)).unwrap();
        check("its progress");
        assert!(mark_damaged(&c, 1, "file truncated", 3).unwrap());
        check("damage");
        set_holes(&c, w, &[]).unwrap();
        check("holes");
        mark_garbage(&c, 2).unwrap();
        check("garbage");
        delete_segment_row(&c, 2).unwrap();
        check("a deleted garbage row");
        insert_finished_segment(&c, 3, Time90k(0), e, &progress(70), b"idx", None).unwrap();
        check("a segment inserted finished");
        complete_segment(&c, w, &progress(700), b"idx", None).unwrap();
        check("completion");
        assert!(mark_damaged(&c, w, "file missing", 0).unwrap());
        check("a missing file");
        delete_segment_row(&c, 1).unwrap();
        check("a deleted finished row");
        assert_eq!(kept(&c), HashMap::from([(1, 0), (3, 70)]));
    }

    #[test]
    fn frequent_queries_stay_on_their_indexes() {
        let (_d, c, e) = fresh();
        for i in 0..50 {
            add(&c, e, 1 + i % 2, i64::from(i) * HOUR, i64::from(i + 1) * HOUR);
        }
        // Retention's oldest finished segments of a kind.
        let p = query_plan(
            &c,
            "SELECT id, channel, start_90k, end_90k, bytes, event FROM segment
             WHERE channel = 1 AND state = 1 AND event = 0 ORDER BY start_90k LIMIT 5",
        );
        assert!(
            p.contains("COVERING INDEX segment_finished_oldest") && !p.contains("TEMP B-TREE"),
            "{p}"
        );
        // Start-up's check of every finished segment.
        let p = query_plan(
            &c,
            "SELECT id, channel, bytes FROM segment WHERE state = 1 AND damage IS NULL ORDER BY channel, start_90k",
        );
        assert!(
            p.contains("COVERING INDEX segment_channel_start") && !p.contains("TEMP B-TREE"),
            "{p}"
        );
        // Start-up's rows being written or deleted.
        let p = query_plan(&c, "SELECT id FROM segment WHERE state = 2 AND state <> 1 ORDER BY id");
        assert!(p.contains("segment_unfinished"), "{p}");
        // The recordings list: the covering index alone.
        let p = query_plan(
            &c,
            "SELECT id, channel, state, start_90k, end_90k, frames, 0, bytes, 0, sample_entry_id, NULL, damage,
               readable_bytes, holes FROM segment
             WHERE channel = 1 AND start_90k < 5 AND end_90k > 2 AND state < 2
               AND start_90k >= 2 - 324000000 - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = 1), 0)
             ORDER BY start_90k, id",
        );
        assert!(p.contains("COVERING INDEX segment_channel_start"), "{p}");
        // Gap fill's marks: a bounded range of the channel, not its history.
        let p = query_plan(
            &c,
            "SELECT g.segment_id FROM gapfill_segment g JOIN segment s ON s.id = g.segment_id
             WHERE s.channel = 1 AND s.start_90k < 5 AND s.end_90k > 2
               AND s.start_90k >= 2 - 324000000 - COALESCE((SELECT max_ticks FROM channel_span WHERE channel = 1), 0)",
        );
        assert!(p.contains("start_90k>? AND start_90k<?") || p.contains("SCAN g"), "{p}");
        // The rows for runs are the overlapping rows; only damaged ones carry their frame index.
        assert!(mark_damaged(&c, 3, "file truncated", 5).unwrap());
        let all = segments_overlapping(&c, 2, Time90k(0), Time90k(50 * HOUR)).unwrap();
        let runs = segments_overlapping_for_runs(&c, 2, Time90k(0), Time90k(50 * HOUR)).unwrap();
        assert_eq!(
            all.iter()
                .map(|r| (r.id, r.start, r.end, r.frames, r.bytes))
                .collect::<Vec<_>>(),
            runs.iter()
                .map(|r| (r.id, r.start, r.end, r.frames, r.bytes))
                .collect::<Vec<_>>()
        );
        for r in &runs {
            assert_eq!(r.frame_index.is_some(), r.id == 3, "segment {}", r.id);
        }
    }

    #[test]
    fn version_3_store_migrates_with_its_long_segments_and_marks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v3");
        let mut old = open(&p).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute_batch(MIGRATION_2).unwrap();
        old.execute_batch(MIGRATION_3).unwrap();
        old.pragma_update(None, "user_version", 3).unwrap();
        old.execute_batch(
            "INSERT INTO sample_entry (id, data, codec, width, height) VALUES (1, x'00', 'h264', 1, 1);
             INSERT INTO segment (channel, state, start_90k, end_90k, frames, key_frames, bytes, media_bytes,
               sample_entry_id) VALUES (4, 1, 0, 648000000, 1, 1, 10, 5, 1);",
        )
        .unwrap();
        migrate(&mut old).unwrap();
        let rows = segments_overlapping(&old, 4, Time90k(HOUR), Time90k(HOUR + 1)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].damage, None);
        assert!(rows[0].holes.is_empty());
        assert_eq!(complete_segment_sizes(&old).unwrap(), vec![(rows[0].id, 4, 10)]);
        assert!(mark_damaged(&old, rows[0].id, "file missing", 0).unwrap());
        // A row retention has just marked garbage is not damage.
        let deleted = insert_writing_segment(&old, 4, Time90k(0), 1).unwrap();
        mark_garbage(&old, deleted).unwrap();
        assert!(!mark_damaged(&old, deleted, "file missing", 0).unwrap());
        let holes = [Hole {
            frames_before: 3,
            bytes: 99,
            ticks: 3000,
        }];
        set_holes(&old, rows[0].id, &holes).unwrap();
        let r = segment(&old, rows[0].id).unwrap().unwrap();
        assert_eq!(r.damage.as_deref(), Some("file missing"));
        assert_eq!(r.readable_bytes, Some(0));
        assert_eq!(r.holes, holes);
        assert!(complete_segment_sizes(&old).unwrap().is_empty());
        // Retention counts only what is left of a damaged file.
        assert_eq!(channel_usage(&old, 10).unwrap()[&4].total_bytes, 0);
    }
}
