//! The store: segment files under `DIR/video/ch<N>/`, their SQLite index at
//! `DIR/index.db`, startup repair, and the read side used by playback/export.
//!
//! Everything that touches footage on disk goes through here. Writes happen on
//! the dedicated writer thread (`writer`); reads open their own read-only
//! connections, so HTTP requests never wait on the recording path.
//! See `docs/store.md` for the invariants.

pub mod db;
pub mod events;
pub mod health;
pub mod import;
pub mod index;
pub mod queue;
pub mod retention;
pub mod segment_file;
pub mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tracing::{info, warn};

use crate::time::{Clock, Time90k};
pub use queue::WriterTx;
pub use writer::{Command, Frame, RecordingStatus, StatusMap};

/// The codec parameters of a run of frames: the mp4 sample entry box plus what
/// the API reports about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleEntry {
    pub data: Vec<u8>,
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
}

impl SampleEntry {
    /// Reads codec and size back from an `avc1`/`hvc1` VisualSampleEntry box.
    pub fn parse(data: Vec<u8>) -> Option<SampleEntry> {
        if data.len() < 36 {
            return None;
        }
        let codec = match &data[4..8] {
            b"avc1" | b"avc3" => "h264",
            b"hvc1" | b"hev1" => "h265",
            _ => return None,
        };
        let width = u32::from(u16::from_be_bytes([data[32], data[33]]));
        let height = u32::from(u16::from_be_bytes([data[34], data[35]]));
        Some(SampleEntry {
            data,
            codec,
            width,
            height,
        })
    }
}

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
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RepairReport {
    pub segments_repaired: usize,
    pub segments_adopted: usize,
    pub segments_discarded: usize,
    pub garbage_collected: usize,
    pub bytes_truncated: u64,
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
    _lock: File,
}

impl Store {
    pub fn open(cfg: StoreConfig, clock: Arc<dyn Clock>) -> Result<(Store, RepairReport)> {
        std::fs::create_dir_all(cfg.dir.join("video"))
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
        ensure_reserve(&cfg.dir);
        let status: StatusMap = Arc::new(Mutex::new(HashMap::new()));
        let wcfg = writer::WriterConfig {
            dir: cfg.dir.clone(),
            flush_interval: cfg.flush_interval,
            segment_len: (cfg.segment_duration.as_secs_f64() * 90_000.0) as i64,
            min_free_bytes: cfg.min_free_bytes,
            policies: cfg.policies,
            recording: cfg.recording,
            retention_interval: Duration::from_secs(5),
        };
        let (tx, rx) = queue::channel();
        let gate_stats = events::GateStatsMap::default();
        let writer_stats = health::SharedWriterStats::default();
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

/// Brings files and index back into agreement after a crash (see the
/// invariant in `db`). Keeps every complete frame; logs each repair.
pub fn repair(conn: &rusqlite::Connection, dir: &Path) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    for row in db::segments_in_state(conn, db::GARBAGE)? {
        let _ = std::fs::remove_file(segment_path(dir, row.channel, row.id));
        db::delete_segment_row(conn, row.id)?;
        report.garbage_collected += 1;
    }
    for row in db::segments_in_state(conn, db::WRITING)? {
        finish_from_file(conn, dir, row.channel, row.id, false, &mut report)?;
    }
    let known = db::all_segment_ids(conn)?;
    if let Ok(rd) = std::fs::read_dir(dir.join("video")) {
        for chdir in rd.flatten() {
            let Some(channel) = chdir
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("ch")?.parse::<u32>().ok())
            else {
                continue;
            };
            for f in std::fs::read_dir(chdir.path())?.flatten() {
                let name = f.file_name();
                let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")?.parse::<i64>().ok()) else {
                    continue;
                };
                if !known.contains(&id) {
                    finish_from_file(conn, dir, channel, id, true, &mut report)?;
                }
            }
        }
    }
    sync_video_dirs(dir);
    if report.segments_repaired + report.segments_adopted + report.segments_discarded > 0 {
        info!(?report, "store repaired after an unclean stop");
    }
    Ok(report)
}

fn finish_from_file(
    conn: &rusqlite::Connection,
    dir: &Path,
    channel: u32,
    id: i64,
    adopt: bool,
    report: &mut RepairReport,
) -> Result<()> {
    let path = segment_path(dir, channel, id);
    let discard = |report: &mut RepairReport, why: &str| -> Result<()> {
        warn!(
            channel,
            segment = id,
            "discarding segment with no complete frame: {why}"
        );
        let _ = std::fs::remove_file(&path);
        if !adopt {
            db::delete_segment_row(conn, id)?;
        }
        report.segments_discarded += 1;
        Ok(())
    };
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) => return discard(report, &format!("file unreadable: {e}")),
    };
    let len = file.metadata()?.len();
    let scan = match segment_file::scan(&mut file, len, true) {
        Ok(s) if !s.frames.is_empty() && s.header.segment_id == id && s.header.channel == channel => s,
        Ok(_) => return discard(report, "no frames or mismatched header"),
        Err(e) => return discard(report, &e.to_string()),
    };
    if scan.valid_len < len {
        file.set_len(scan.valid_len)?;
        report.bytes_truncated += len - scan.valid_len;
    }
    file.sync_all()?;
    let Some(entry) = SampleEntry::parse(scan.header.sample_entry.clone()) else {
        return discard(report, "unknown sample entry");
    };
    let entries = scan.entries(3000);
    let end = scan.header.start + entries.iter().map(|e| i64::from(e.duration)).sum::<i64>();
    let progress = db::Progress {
        end,
        frames: entries.len() as u32,
        key_frames: entries.iter().filter(|e| e.key).count() as u32,
        bytes: scan.valid_len,
        media_bytes: entries.iter().map(|e| u64::from(e.size)).sum(),
    };
    let tx = conn.unchecked_transaction()?;
    let entry_id = db::upsert_sample_entry(&tx, &entry.data, entry.codec, entry.width, entry.height)?;
    if adopt {
        db::insert_adopted_segment(&tx, id, channel, scan.header.start, entry_id)?;
    }
    db::complete_segment(&tx, id, &progress, &index::encode(&entries))?;
    tx.commit()?;
    info!(
        channel,
        segment = id,
        frames = entries.len(),
        truncated_bytes = len - scan.valid_len,
        tail = scan.stopped.unwrap_or("clean"),
        "segment repaired{}",
        if adopt { " (adopted from file)" } else { "" }
    );
    if adopt {
        report.segments_adopted += 1;
    } else {
        report.segments_repaired += 1;
    }
    Ok(())
}

/// One frame's place in a segment file, with its wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    pub time: Time90k,
    pub duration: u32,
    pub offset: u64,
    pub size: u32,
    pub key: bool,
}

/// A segment's frames as read for playback.
#[derive(Clone, Debug)]
pub struct SegmentFrames {
    pub id: i64,
    pub path: PathBuf,
    pub entry: Arc<db::SampleEntryRow>,
    pub frames: Vec<FrameRef>,
}

/// A contiguous stretch of recording as listed by the recordings API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecordingRun {
    pub start: String,
    pub end: String,
    #[serde(skip)]
    pub start_90k: Time90k,
    #[serde(skip)]
    pub end_90k: Time90k,
    pub frames: u64,
    pub bytes: u64,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub segments: u32,
    /// True while the last segment is still being written.
    pub growing: bool,
}

/// Two segments closer than this (a tenth of a second) count as one run.
const CONTIGUOUS: i64 = 9_000;

/// The read side: opens its own read-only connection per call, so it can run
/// on any blocking thread while the writer records.
#[derive(Clone, Debug)]
pub struct Reader {
    pub dir: PathBuf,
}

impl Reader {
    pub fn new(dir: PathBuf) -> Reader {
        Reader { dir }
    }

    fn conn(&self) -> Result<rusqlite::Connection> {
        let p = self.dir.join("index.db");
        if !p.exists() {
            bail!("no Tandem store at {}", self.dir.display());
        }
        Ok(db::open_readonly(&p)?)
    }

    pub fn recordings(&self, channel: u32, start: Time90k, end: Time90k) -> Result<Vec<RecordingRun>> {
        let conn = self.conn()?;
        let entries = db::sample_entries(&conn)?;
        let mut runs: Vec<RecordingRun> = Vec::new();
        let mut last_entry = -1;
        for s in db::segments_overlapping(&conn, channel, start, end)? {
            let e = entries.get(&s.sample_entry_id);
            let growing = s.state == db::WRITING;
            match runs.last_mut() {
                Some(r)
                    if s.start - r.end_90k <= CONTIGUOUS
                        && s.start >= r.start_90k
                        && last_entry == s.sample_entry_id =>
                {
                    r.end_90k = r.end_90k.max(s.end);
                    r.frames += u64::from(s.frames);
                    r.bytes += s.bytes;
                    r.segments += 1;
                    r.growing |= growing;
                }
                _ => runs.push(RecordingRun {
                    start: String::new(),
                    end: String::new(),
                    start_90k: s.start,
                    end_90k: s.end,
                    frames: u64::from(s.frames),
                    bytes: s.bytes,
                    codec: e.map(|e| e.codec.clone()).unwrap_or_default(),
                    width: e.map(|e| e.width).unwrap_or(0),
                    height: e.map(|e| e.height).unwrap_or(0),
                    segments: 1,
                    growing,
                }),
            }
            last_entry = s.sample_entry_id;
        }
        for r in &mut runs {
            r.start = r.start_90k.to_rfc3339();
            r.end = r.end_90k.to_rfc3339();
        }
        Ok(runs)
    }

    /// The frames of every segment overlapping [start, end), for clip building.
    pub fn segment_frames(&self, channel: u32, start: Time90k, end: Time90k) -> Result<Vec<SegmentFrames>> {
        let conn = self.conn()?;
        let entries: HashMap<i64, Arc<db::SampleEntryRow>> = db::sample_entries(&conn)?
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let mut out = Vec::new();
        for s in db::segments_overlapping(&conn, channel, start, end)? {
            let Some(entry) = entries.get(&s.sample_entry_id).cloned() else {
                continue;
            };
            let path = segment_path(&self.dir, channel, s.id);
            let mut frames = Vec::with_capacity(s.frames as usize);
            let mut t = s.start;
            match (&s.frame_index, s.state) {
                (Some(blob), db::COMPLETE) => {
                    let mut off = header_len(entry.data.len());
                    for e in index::decode(blob).with_context(|| format!("segment {}", s.id))? {
                        off += segment_file::RECORD_HEADER_LEN;
                        frames.push(FrameRef {
                            time: t,
                            duration: e.duration,
                            offset: off,
                            size: e.size,
                            key: e.key,
                        });
                        off += u64::from(e.size);
                        t = t + i64::from(e.duration);
                    }
                }
                _ => {
                    // Still being written: read the records that are complete now.
                    let Ok(mut f) = File::open(&path) else {
                        continue;
                    };
                    let len = f.metadata()?.len();
                    let scan = segment_file::scan(&mut f, len, false)?;
                    for (sf, e) in scan.frames.iter().zip(scan.entries(3000)) {
                        frames.push(FrameRef {
                            time: scan.header.start + i64::from(sf.pts),
                            duration: e.duration,
                            offset: sf.offset,
                            size: sf.size,
                            key: sf.key,
                        });
                    }
                }
            }
            out.push(SegmentFrames {
                id: s.id,
                path,
                entry,
                frames,
            });
        }
        Ok(out)
    }

    /// Whether a peer's segment has been imported already.
    pub fn imported(&self, origin: &str, origin_segment: i64) -> Result<bool> {
        Ok(db::imported(&self.conn()?, origin, origin_segment)?)
    }

    pub fn events(
        &self,
        channel: Option<u32>,
        kind: Option<&str>,
        start: Time90k,
        end: Time90k,
    ) -> Result<Vec<db::EventRow>> {
        Ok(db::events(&self.conn()?, channel, kind, start, end)?)
    }
}
