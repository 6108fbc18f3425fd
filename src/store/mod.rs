//! The store: segment files under `DIR/video/ch<N>/`, their SQLite index at
//! `DIR/index.db`, opening it (`Store::open` runs `repair` and starts the
//! writer), and the shared pieces of the read side (`reader`) and repair.
//!
//! Everything that touches footage on disk goes through here. Writes happen on
//! the dedicated writer thread (`writer`); reads open their own read-only
//! connections, so HTTP requests never wait on the recording path.
//! See `docs/store.md` for the invariants.

mod boundary;
pub mod capacity;
mod checkpoint;
pub mod config_versions;
pub mod db;
pub mod deleter;
pub mod events;
pub mod flush;
mod flush_round;
pub mod health;
pub mod import;
pub mod import_plan;
pub mod index;
pub mod integrity;
pub mod open_segment;
pub mod orphans;
pub mod outbox;
mod periodic;
pub mod queue;
pub mod reader;
pub mod record_digest;
pub mod repair;
mod reserve;
pub mod retention;
pub mod retention_run;
pub mod run_days;
pub mod runs;
pub mod segment_file;
pub mod write_queue;
pub mod writer;
mod writer_round;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tracing::warn;

pub use crate::media::{Frame, SampleEntry};
use crate::time::Clock;
pub use queue::WriterTx;
pub use reader::{DamagedSpan, Footage, FrameRef, Overlap, Reader, RecordingRun, SegmentFrames};
pub use repair::{repair, RepairReport};
pub use writer::{Command, RecordingState, RecordingStatus, StatusMap};

pub fn segment_path(dir: &Path, channel: u32, id: i64) -> PathBuf {
    dir.join("video")
        .join(format!("ch{channel}"))
        .join(format!("{id:016}.seg"))
}

/// Bytes of a segment file's header for a sample entry of `entry_len` bytes.
pub fn header_len(entry_len: usize) -> u64 {
    12 + 28 + entry_len as u64 + 4
}

pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Creates `dir` and its missing parents, each made durable: a new
/// directory's name survives a power cut only once its parent is fsynced
/// (without it a cut can take the whole store, index and all, with it).
pub(crate) fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        create_dir_durable(p)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
}

/// fsyncs every channel directory so that deletions and creations are durable.
pub(crate) fn sync_video_dirs(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir.join("video")) {
        for e in rd.flatten() {
            if let Ok(d) = File::open(e.path()) {
                let _ = d.sync_all();
            }
        }
    }
}

/// Space held back in `DIR/reserve` while all is well and released when the
/// disk fills, so that a full disk can still close segments and record why.
const RESERVE_BYTES: usize = 4 << 20;

pub(crate) fn ensure_reserve(dir: &Path) {
    let p = dir.join("reserve");
    if p.metadata().map(|m| m.len() as usize == RESERVE_BYTES).unwrap_or(false) {
        return;
    }
    let r = std::fs::write(&p, vec![0u8; RESERVE_BYTES]).and_then(|_| File::open(&p)?.sync_all());
    if let Err(e) = r {
        let _ = std::fs::remove_file(&p);
        warn!("cannot set aside {} MiB of reserve space: {e}", RESERVE_BYTES >> 20);
    }
}

pub(crate) fn release_reserve(dir: &Path) {
    if std::fs::remove_file(dir.join("reserve")).is_ok() {
        warn!("disk full: released the reserve space to close segments cleanly");
    }
}

pub struct StoreConfig {
    pub dir: PathBuf,
    pub flush_interval: Duration,
    pub segment_duration: Duration,
    pub min_free_bytes: u64,
    pub policies: HashMap<u32, retention::RetentionPolicy>,
    pub recording: HashMap<u32, crate::recording::RecordingPolicy>,
    /// Where stored events are announced (the action dispatcher), if anywhere.
    pub notifier: Option<crate::events::Notifier>,
    /// Limits of footage imported from peers.
    pub import: import::ImportLimits,
    /// Bytes of video the write buffer holds at most (`[storage] write_buffer`).
    pub write_buffer: u64,
}

pub struct Store {
    pub dir: PathBuf,
    tx: WriterTx,
    pub status: StatusMap,
    /// The writer thread's own health: frame-to-durable latency, events.
    pub writer_stats: health::SharedWriterStats,
    /// Merges footage from peers beside the writer (see `import`).
    pub importer: import::Importer,
    /// Each channel's event gate: mode, pre-event buffer use, windows.
    pub gate_stats: events::GateStatsMap,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Keeps the day summaries of recording runs folded; stops when dropped.
    _runs: Option<periodic::Periodic>,
    /// Checkpoints the index's log once a second; stops when dropped.
    _checkpointer: Option<periodic::Periodic>,
    _lock: File,
}

impl Store {
    pub fn open(cfg: StoreConfig, clock: Arc<dyn Clock>) -> Result<(Store, RepairReport)> {
        create_dir_durable(&cfg.dir.join("video"))
            .with_context(|| format!("creating storage directory {}", cfg.dir.display()))?;
        let lock = lock_dir(&cfg.dir)?;
        let db_path = cfg.dir.join("index.db");
        let mut conn = db::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
        db::migrate(&mut conn).map_err(|e| anyhow::anyhow!("{}: {e}", db_path.display()))?;
        let report = repair(&conn, &cfg.dir).context("repairing the store")?;
        match db::close_interrupted_events(&conn) {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "closed events left open by the previous run"),
            Err(e) => tracing::warn!("cannot close events left open: {e}"),
        }
        // Repair's commits were synced; recording's need not be (`checkpoint`).
        db::set_writer_mode(&conn).with_context(|| format!("{}: the writer's mode", db_path.display()))?;
        ensure_reserve(&cfg.dir);
        spawn_finished_check(&cfg.dir, &db_path);
        let runs = run_days::spawn(db_path.clone(), clock.clone());
        let status: StatusMap = Arc::new(Mutex::new(HashMap::new()));
        let wcfg = writer::WriterConfig {
            dir: cfg.dir.clone(),
            flush_interval: cfg.flush_interval,
            segment_len: crate::time::ticks_of(cfg.segment_duration),
            min_free_bytes: cfg.min_free_bytes,
            policies: cfg.policies,
            recording: cfg.recording,
            retention_interval: Duration::from_secs(5),
        };
        let (tx, rx) = queue::channel(cfg.write_buffer);
        let gate_stats = events::GateStatsMap::default();
        let writer_stats = health::SharedWriterStats::default();
        let checkpointer = checkpoint::spawn(db_path.clone(), writer_stats.clone());
        let importer = import::Importer::start(cfg.dir.clone(), cfg.import.clone(), clock.clone())?;
        let w = writer::Writer::new(
            wcfg,
            conn,
            clock,
            status.clone(),
            gate_stats.clone(),
            cfg.notifier,
            writer_stats.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", db_path.display()))?;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || w.run(rx))?;
        Ok((
            Store {
                dir: cfg.dir,
                tx,
                status,
                writer_stats,
                importer,
                gate_stats,
                thread: Some(thread),
                _runs: runs,
                _checkpointer: checkpointer,
                _lock: lock,
            },
            report,
        ))
    }

    pub fn sender(&self) -> WriterTx {
        self.tx.clone()
    }

    pub fn reader(&self) -> Reader {
        Reader { dir: self.dir.clone() }
    }

    /// Flushes everything written so far to disk; blocks until done.
    pub fn sync(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Command::Sync(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Closes every open segment and stops the writer thread.
    pub fn shutdown(mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks finished segments for damage, then lists every segment file for
/// ones whose row is gone (`orphans::adopt_unindexed`), on its own thread
/// and connection, so that recording starts without waiting for a year of
/// `stat` calls and file names.
fn spawn_finished_check(dir: &Path, db_path: &Path) {
    let (dir, db_path) = (dir.to_path_buf(), db_path.to_path_buf());
    let r = std::thread::Builder::new().name("store-check".into()).spawn(move || {
        let mut report = RepairReport::default();
        let r = db::open(&db_path).map_err(anyhow::Error::from).and_then(|c| {
            repair::check_finished(&c, &dir, &mut report)?;
            orphans::adopt_unindexed(&c, &dir, &mut report)?;
            Ok(())
        });
        if let Err(e) = r {
            warn!("cannot check finished segments for damage or files without a row: {e:#}");
        }
    });
    if let Err(e) = r {
        warn!("cannot start the check of finished segments: {e}");
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let p = dir.join("tandem.lock");
    let f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "storage directory {} is in use by another Tandem process",
            dir.display()
        );
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_directories_are_created_with_their_parents() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a").join("b").join("video");
        create_dir_durable(&d).unwrap();
        assert!(d.is_dir());
        create_dir_durable(&d).unwrap();
        // A file where a directory should be is an error, not a panic.
        std::fs::write(t.path().join("f"), b"x").unwrap();
        assert!(create_dir_durable(&t.path().join("f").join("g")).is_err());
    }
}
