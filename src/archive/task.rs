//! The archiver: a thread of its own (with its own small runtime and index
//! connection, beside the writer like the importer) that carries out the
//! planner's passes — upload each due segment (one PUT, or multipart above
//! `part_size`), bandwidth-capped by a token bucket, read it back and check
//! size and SHA-256, list it in its day index, then point the row at the
//! object, then (after a grace of seconds) delete the local file; and
//! expire archived footage past `max_age` (row first, then object and day
//! index entry).
//!
//! Resumable: nothing is marked before it is verified, so an upload cut
//! anywhere (process killed, server gone, task dropped) leaves the row
//! `complete` and the file in place; a multipart upload's acknowledged parts
//! are recorded (`uploads`), and the next pass continues at the next part
//! (the parts already sent are read and hashed locally, not sent again). An
//! upload the server no longer knows is started again at once; one whose
//! segment went (retention) is left to the bucket's incomplete-upload
//! expiry. A local file whose row is already `archived`
//! (killed between commit and unlink) is deleted when the archiver starts.
//! Must never delete a local file whose row is not `archived`, and never
//! touch a row that is being written.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::bucket::TokenBucket;
use super::day_index::{self, DayIndex, Entry};
use super::plan::{self, Limits};
use super::{rows, uploads, ArchiveError, Location};
use crate::config::archive::ArchiveSettings;
use crate::store::{db, segment_path};
use crate::time::{Clock, Time90k};

/// Parts of a multipart upload (S3 wants ≥ 5 MiB but the last).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Uploads per pass: one day-index update per channel-day per pass, so a
/// pass must gather enough segments to keep that small.
pub const BATCH: usize = 64;
/// Cache files of archived footage served to clips, kept this long unused.
pub const CACHE_IDLE: Duration = Duration::from_secs(3600);
/// Between passes that found less than a batch to do.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What one pass did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PassReport {
    pub uploaded: usize,
    pub bytes: u64,
    /// Seconds spent uploading and verifying.
    pub upload_secs: f64,
    /// Uploaded, but local retention took the row first (the object stays
    /// listed in its day index until `max_age`).
    pub raced: usize,
    pub local_deleted: usize,
    pub expired: usize,
    /// Objects past `max_age` that no row points at any more (an expiry
    /// cut between its row and its object, or a row retention took),
    /// found by the hourly sweep of the day indexes and deleted.
    pub swept: usize,
    /// Bytes of interrupted uploads not sent again: resumed at their next part.
    pub resumed_bytes: u64,
    pub errors: Vec<String>,
}

pub struct Archiver {
    dir: PathBuf,
    loc: Location,
    store: Arc<AmazonS3>,
    nvr: String,
    conn: Connection,
    limits: Limits,
    bucket: TokenBucket,
    t0: Instant,
    part_size: usize,
    /// When (in the passes' time) the day indexes were last swept.
    swept_at: Option<Time90k>,
    /// Local copies of archived segments and when they may go.
    unlink_later: Vec<(PathBuf, Instant)>,
    unlink_grace: Duration,
    /// This pass's `PassReport::resumed_bytes`.
    resumed_bytes: u64,
}

/// How long the local copy of a newly archived segment stays (see `unlink_due`).
pub const UNLINK_GRACE: Duration = Duration::from_secs(10);

/// How often the day indexes past `max_age` are swept for leftovers.
const SWEEP_EVERY: i64 = 3600 * 90_000;

struct Uploaded {
    row: db::SegmentRow,
    entry: db::SampleEntryRow,
    key: ObjectPath,
    sha256: [u8; 32],
}

fn ticks(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 90).saturating_mul(90)
}

impl Archiver {
    /// Opens the archiver on a store (already opened and migrated by
    /// `Store::open`), records where its archive is, and finishes the local
    /// deletions a kill interrupted.
    pub fn open(dir: &Path, settings: &ArchiveSettings) -> Result<Archiver, ArchiveError> {
        let loc = Location::of(settings);
        let store = loc.client()?;
        let conn = db::open(&dir.join("index.db"))?;
        let nvr = db::nvr_id(&conn)?;
        rows::store_location(&conn, &loc)?;
        // One second of the cap: a part larger than that waits its share
        // before it is sent (`TokenBucket::take`).
        let burst = settings.bandwidth;
        let a = Archiver {
            dir: dir.to_path_buf(),
            loc,
            store,
            nvr,
            conn,
            limits: Limits {
                after: ticks(settings.after),
                max_age: settings.max_age.map(ticks),
                batch: BATCH,
            },
            bucket: TokenBucket::new(settings.bandwidth, burst, 0.0),
            t0: Instant::now(),
            part_size: DEFAULT_PART_SIZE,
            swept_at: None,
            unlink_later: Vec::new(),
            unlink_grace: UNLINK_GRACE,
            resumed_bytes: 0,
        };
        uploads::open(&a.conn)?;
        let n = a.delete_leftover_files()?;
        if n > 0 {
            info!(
                files = n,
                "archive: deleted local copies of archived segments left by an interrupted pass"
            );
        }
        Ok(a)
    }

    /// Smaller multipart parts (tests and the benchmark use it to exercise
    /// multipart with small segments).
    pub fn set_part_size(&mut self, bytes: usize) {
        self.part_size = bytes.max(1);
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    pub fn nvr(&self) -> &str {
        &self.nvr
    }

    fn delete_leftover_files(&self) -> Result<usize, ArchiveError> {
        let mut n = 0;
        for (_, chdir) in crate::store::orphans::channel_dirs(&self.dir) {
            let mut any = false;
            for e in std::fs::read_dir(&chdir)?.flatten() {
                let name = e.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".seg"))
                    .and_then(|n| n.parse::<i64>().ok())
                else {
                    continue;
                };
                if rows::is_archived(&self.conn, id)? {
                    std::fs::remove_file(e.path())?;
                    any = true;
                    n += 1;
                }
            }
            if any {
                File::open(&chdir)?.sync_all()?;
            }
        }
        Ok(n)
    }

    /// One pass at `now`: uploads up to a batch of due segments, then
    /// expires what is past `max_age`.
    pub async fn pass(&mut self, now: Time90k) -> Result<PassReport, ArchiveError> {
        let mut report = PassReport::default();
        self.resumed_bytes = 0;
        self.unlink_due(&mut report)?;
        let due = Time90k(now.0.saturating_sub(self.limits.after));
        let local = rows::due_local(&self.conn, due, self.limits.batch)?;
        let cutoff = self.limits.max_age.map(|m| Time90k(now.0.saturating_sub(m)));
        let archived = match cutoff {
            Some(c) => rows::archived_before(&self.conn, c, 1000)?,
            None => Vec::new(),
        };
        // Passes run one at a time, so nothing is in flight between them.
        let p = plan::plan(&local, &archived, now, self.limits, &HashSet::new());
        let entries = db::sample_entries(&self.conn)?;
        let started = Instant::now();
        let mut done = Vec::new();
        for s in &p.upload {
            match self.upload(s.id, &entries).await {
                Ok(Some(u)) => {
                    report.bytes += u.row.bytes;
                    done.push(u);
                }
                Ok(None) => {}
                // This segment's own file (unreadable, shorter than its
                // row): the others go on, or one bad file would hold up
                // the archive forever (it is first in every plan).
                Err(e @ ArchiveError::Segment { .. }) => {
                    warn!(segment = s.id, "not archived: {e}");
                    report.errors.push(e.to_string());
                }
                Err(e) => {
                    warn!(segment = s.id, "archive upload failed: {e}");
                    report.errors.push(e.to_string());
                    // The server or network is likely down: the next pass
                    // tries again rather than failing every segment now.
                    break;
                }
            }
        }
        report.upload_secs = started.elapsed().as_secs_f64();
        report.resumed_bytes = self.resumed_bytes;
        self.commit(done, &mut report).await?;
        if let Some(c) = cutoff {
            self.expire(&p.expire, c, &mut report).await?;
            if report.errors.is_empty() && self.swept_at.is_none_or(|t| now.0.saturating_sub(t.0) >= SWEEP_EVERY) {
                // Housekeeping: a failure waits for a later pass, it does
                // not fail this one.
                match self.sweep(c, &mut report).await {
                    Ok(()) => self.swept_at = Some(now),
                    Err(e) => report.errors.push(format!("sweep: {e}")),
                }
            }
        }
        Ok(report)
    }

    /// Deletes what the day indexes list past `cutoff` with no archived row
    /// (entries with a row expire through it, rows first). Lists this NVR's
    /// channels and their days; reads only the days not after the cutoff's.
    async fn sweep(&mut self, cutoff: Time90k, report: &mut PassReport) -> Result<(), ArchiveError> {
        let last_day = super::day_of(cutoff);
        let root = self.loc.nvr_root(&self.nvr);
        for ch in super::offline::children(&self.store, &root).await? {
            let Some(channel) = ch.strip_prefix("ch").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let chroot = ObjectPath::from(format!("{root}/{ch}"));
            for day in super::offline::children(&self.store, &chroot).await? {
                if day > last_day {
                    break;
                }
                let key = self.loc.day_index_key(&self.nvr, channel, &day);
                let mut d = day_index::load(&self.store, &key, &self.nvr, channel, &day).await?;
                let mut gone = Vec::new();
                for e in d.segments.values().filter(|e| e.end_90k <= cutoff.0) {
                    if rows::archive_of(&self.conn, e.id)?.is_none() {
                        gone.push(e.id);
                    }
                }
                if gone.is_empty() {
                    continue;
                }
                for id in gone {
                    if let Some(e) = d.segments.remove(&id) {
                        delete_object(&self.store, &ObjectPath::from(format!("{chroot}/{day}/{}", e.object))).await?;
                        report.swept += 1;
                    }
                }
                day_index::save(&self.store, &key, &d).await?;
            }
        }
        Ok(())
    }

    /// Day indexes first (the bucket lists only verified objects), then
    /// the rows, then the local files.
    async fn commit(&mut self, done: Vec<Uploaded>, report: &mut PassReport) -> Result<(), ArchiveError> {
        let mut days: BTreeMap<(u32, String), Vec<Entry>> = BTreeMap::new();
        for u in &done {
            days.entry((u.row.channel, super::day_of(u.row.start)))
                .or_default()
                .push(Entry::new(&u.row, &u.entry, &u.sha256));
        }
        for ((channel, day), entries) in days {
            let key = self.loc.day_index_key(&self.nvr, channel, &day);
            let mut d = day_index::load(&self.store, &key, &self.nvr, channel, &day).await?;
            d.add(entries);
            day_index::save(&self.store, &key, &d).await?;
        }
        let tx = self.conn.transaction()?;
        let mut marked = Vec::new();
        for u in &done {
            if rows::mark_archived(&tx, u.row.id, u.key.as_ref(), &u.sha256)? {
                marked.push(u);
            } else {
                report.raced += 1;
            }
        }
        tx.commit()?;
        let now = Instant::now();
        for u in &marked {
            self.unlink_later.push((
                segment_path(&self.dir, u.row.channel, u.row.id),
                now + self.unlink_grace,
            ));
        }
        self.unlink_due(report)?;
        report.uploaded += marked.len();
        Ok(())
    }

    /// Deletes the local copies whose grace has passed, then fsyncs their
    /// directories. Why a grace: a clip request planned from the row just
    /// before it became `archived` opens the local file a moment later;
    /// removing it at once would fail that request.
    fn unlink_due(&mut self, report: &mut PassReport) -> Result<(), ArchiveError> {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.unlink_later.drain(..).partition(|(_, at)| *at <= now);
        self.unlink_later = later;
        let mut dirs = HashSet::new();
        for (p, _) in due {
            match std::fs::remove_file(&p) {
                Ok(()) => {
                    report.local_deleted += 1;
                    if let Some(d) = p.parent() {
                        dirs.insert(d.to_path_buf());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Left for the next start (`delete_leftover_files`).
                Err(e) => warn!(file = %p.display(), "archived, but the local copy stays: {e}"),
            }
        }
        for d in dirs {
            File::open(&d)?.sync_all()?;
        }
        Ok(())
    }

    /// How long a local copy stays after its row became `archived`
    /// (default `UNLINK_GRACE`; tests use zero).
    pub fn set_unlink_grace(&mut self, d: Duration) {
        self.unlink_grace = d;
    }

    async fn upload(
        &mut self,
        id: i64,
        entries: &std::collections::HashMap<i64, db::SampleEntryRow>,
    ) -> Result<Option<Uploaded>, ArchiveError> {
        let Some(row) = db::segment(&self.conn, id)? else {
            return Ok(None);
        };
        if row.state != db::COMPLETE {
            return Ok(None);
        }
        let seg = |why: String| ArchiveError::Segment { id, why };
        let entry = entries
            .get(&row.sample_entry_id)
            .cloned()
            .ok_or_else(|| seg("no sample entry".into()))?;
        let key = self.loc.segment_key(&self.nvr, row.channel, row.start, id);
        let path = segment_path(&self.dir, row.channel, id);
        let mut f = File::open(&path).map_err(|e| seg(format!("{}: {e}", path.display())))?;
        let len = f.metadata()?.len();
        if len < row.bytes {
            return Err(seg(format!("file has {len} of {} bytes", row.bytes)));
        }
        if row.bytes <= self.part_size as u64 {
            let mut buf = vec![0u8; row.bytes as usize];
            f.read_exact(&mut buf)?;
            let sha256: [u8; 32] = Sha256::digest(&buf).into();
            self.pace(buf.len()).await;
            let opts = PutOptions {
                attributes: attributes(&sha256),
                ..Default::default()
            };
            self.store.put_opts(&key, PutPayload::from(buf), opts).await?;
            self.verify(&key, row.bytes, &sha256).await?;
            return Ok(Some(Uploaded {
                row,
                entry,
                key,
                sha256,
            }));
        }
        drop(f);
        // Multipart: the digest is known only at the end, so the object's
        // metadata cannot carry it; the row and the day index do. An upload
        // a cut left behind is resumed; one the server no longer knows (it
        // expired, the server lost it) is started again at once.
        let saved = uploads::saved(&self.conn, id)?.filter(|s| s.key == key.as_ref() && s.part_size == self.part_size);
        let sha256 = match saved {
            Some(s) => match self.send_parts(id, &key, &path, row.bytes, Some(s.clone())).await {
                Ok(sha) => sha,
                Err((e, false)) => {
                    warn!(
                        segment = id,
                        "archive: the interrupted upload cannot be resumed ({e}); starting it again"
                    );
                    let _ = self.store.abort_multipart(&key, &s.upload_id).await;
                    uploads::forget(&self.conn, id)?;
                    self.send_parts(id, &key, &path, row.bytes, None)
                        .await
                        .map_err(|(e, _)| e)?
                }
                Err((e, true)) => return Err(e),
            },
            None => self
                .send_parts(id, &key, &path, row.bytes, None)
                .await
                .map_err(|(e, _)| e)?,
        };
        uploads::forget(&self.conn, id)?;
        self.verify(&key, row.bytes, &sha256).await?;
        Ok(Some(Uploaded {
            row,
            entry,
            key,
            sha256,
        }))
    }

    /// Sends `path` (its first `bytes`) as the parts of a multipart upload —
    /// continuing `resume` (its acknowledged parts are read and hashed here,
    /// not sent again) or a new one — recording each acknowledged part, then
    /// completes it; returns the whole file's SHA-256. On failure the upload
    /// is kept for the next pass, and the flag says whether this call got
    /// any answer from the server for it (a resumed upload that got none is
    /// presumably gone on the server).
    async fn send_parts(
        &mut self,
        id: i64,
        key: &ObjectPath,
        path: &Path,
        bytes: u64,
        resume: Option<uploads::Saved>,
    ) -> Result<[u8; 32], (ArchiveError, bool)> {
        let mut progressed = false;
        let r: Result<[u8; 32], ArchiveError> = async {
            let mut f = File::open(path)?;
            let mut sha = Sha256::new();
            let mut left = bytes;
            let part_size = self.part_size;
            let mut read_part = |f: &mut File, left: &mut u64| -> Result<Vec<u8>, ArchiveError> {
                let n = (*left).min(part_size as u64) as usize;
                let mut buf = vec![0u8; n];
                f.read_exact(&mut buf)?;
                *left -= n as u64;
                sha.update(&buf);
                Ok(buf)
            };
            let mut saved = match resume {
                Some(s) => {
                    for _ in &s.parts {
                        read_part(&mut f, &mut left)?;
                    }
                    let skipped = bytes - left;
                    info!(
                        segment = id,
                        parts = s.parts.len(),
                        bytes = skipped,
                        "archive: resuming an interrupted upload"
                    );
                    self.resumed_bytes += skipped;
                    s
                }
                None => {
                    let upload_id = self.store.create_multipart(key).await?;
                    progressed = true;
                    let s = uploads::Saved {
                        key: key.to_string(),
                        upload_id,
                        part_size,
                        parts: Vec::new(),
                    };
                    uploads::save(&self.conn, id, &s)?;
                    s
                }
            };
            while left > 0 {
                let buf = read_part(&mut f, &mut left)?;
                self.pace(buf.len()).await;
                let idx = saved.parts.len();
                let part = self
                    .store
                    .put_part(key, &saved.upload_id, idx, PutPayload::from(buf))
                    .await?;
                progressed = true;
                saved.parts.push(part.content_id);
                uploads::save(&self.conn, id, &saved)?;
            }
            let parts = saved.parts.iter().map(|c| PartId { content_id: c.clone() }).collect();
            self.store.complete_multipart(key, &saved.upload_id, parts).await?;
            Ok(sha.finalize().into())
        }
        .await;
        r.map_err(|e| (e, progressed))
    }

    async fn pace(&mut self, bytes: usize) {
        let now = self.t0.elapsed().as_secs_f64();
        let wait = self.bucket.take(bytes as u64, now);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Reads the object back: its size, then every byte through SHA-256.
    pub async fn verify(&self, key: &ObjectPath, bytes: u64, sha256: &[u8; 32]) -> Result<(), ArchiveError> {
        let bad = |why: String| ArchiveError::Verify {
            key: key.to_string(),
            why,
        };
        let meta = self.store.head(key).await?;
        if meta.size != bytes {
            return Err(bad(format!("{} bytes stored, {bytes} sent", meta.size)));
        }
        let mut stream = self.store.get(key).await?.into_stream();
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            h.update(&chunk);
        }
        let got: [u8; 32] = h.finalize().into();
        if n != bytes || &got != sha256 {
            return Err(bad(format!(
                "read back {n} bytes with SHA-256 {}, sent {bytes} with {}",
                day_index::hex(&got),
                day_index::hex(sha256)
            )));
        }
        Ok(())
    }

    /// Rows first (a row never points at a deleted object), then objects,
    /// then the day indexes — which also drop and delete whatever else of
    /// that day is past the cutoff (what an interrupted expiry left).
    async fn expire(
        &mut self,
        expire: &[plan::Archived],
        cutoff: Time90k,
        report: &mut PassReport,
    ) -> Result<(), ArchiveError> {
        if expire.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for a in expire {
            rows::delete_archived(&tx, a.id)?;
        }
        tx.commit()?;
        let mut days = BTreeMap::new();
        for a in expire {
            delete_object(&self.store, &ObjectPath::from(a.key.as_str())).await?;
            report.expired += 1;
            if let Some((dir, _)) = a.key.rsplit_once('/') {
                let day = dir.rsplit_once('/').map_or(dir, |(_, d)| d).to_string();
                days.insert(format!("{dir}/index.json"), (a.channel, day, dir.to_string()));
            }
        }
        for (key, (channel, day, dir)) in days {
            let key = ObjectPath::from(key);
            let mut d: DayIndex = day_index::load(&self.store, &key, &self.nvr, channel, &day).await?;
            for e in d.expire(cutoff) {
                delete_object(&self.store, &ObjectPath::from(format!("{dir}/{}", e.object))).await?;
                if !expire.iter().any(|a| a.id == e.id) {
                    report.swept += 1;
                }
            }
            day_index::save(&self.store, &key, &d).await?;
        }
        Ok(())
    }
}

fn attributes(sha256: &[u8; 32]) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::Metadata("sha256".into()), day_index::hex(sha256).into());
    a
}

async fn delete_object(store: &Arc<AmazonS3>, key: &ObjectPath) -> Result<(), ArchiveError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The archiver's thread; stops when dropped.
pub struct ArchiverThread {
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
    last: Arc<std::sync::Mutex<LastPass>>,
}

/// The archiver's latest pass, for `GET /api/v1/archive`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LastPass {
    /// Passes run since the NVR started.
    pub passes: u64,
    /// When the latest ended (RFC 3339).
    pub at: Option<String>,
    pub report: Option<PassReport>,
    /// Why the latest failed as a whole (the server unreachable at open, the index).
    pub error: Option<String>,
}

impl ArchiverThread {
    pub fn last_pass(&self) -> LastPass {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ArchiverThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Starts the archiver on its own thread: a pass every `interval` (at once
/// again while a pass fills its batch), cache files pruned as they idle.
pub fn spawn(
    dir: PathBuf,
    settings: ArchiveSettings,
    clock: Arc<dyn Clock>,
    interval: Duration,
) -> std::io::Result<ArchiverThread> {
    // Before the HTTP API serves anything: the cache was written without
    // fsyncs, so after a power cut only an empty one is trusted.
    match std::fs::remove_dir_all(dir.join(super::hydrate::CACHE_DIR)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let last = Arc::new(std::sync::Mutex::new(LastPass::default()));
    let record = last.clone();
    let note = move |now: Time90k, r: Result<&PassReport, String>| {
        if let Ok(mut l) = record.lock() {
            l.passes += 1;
            l.at = Some(now.to_rfc3339());
            match r {
                Ok(rep) => {
                    l.report = Some(rep.clone());
                    l.error = None;
                }
                Err(e) => l.error = Some(e),
            }
        }
    };
    let join = std::thread::Builder::new().name("archive".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return warn!("archive: no runtime: {e}"),
        };
        rt.block_on(async move {
            let mut archiver = None;
            while !s.load(Ordering::Relaxed) {
                let a = match &mut archiver {
                    Some(a) => a,
                    None => match Archiver::open(&dir, &settings) {
                        Ok(a) => archiver.insert(a),
                        Err(e) => {
                            warn!("archive: {e}");
                            note(clock.now(), Err(e.to_string()));
                            sleep_unless(&s, interval).await;
                            continue;
                        }
                    },
                };
                // A stop drops a pass mid-upload: safe, since nothing is
                // marked before it is verified (the next start uploads again).
                let pass = tokio::select! {
                    r = a.pass(clock.now()) => r,
                    () = stopped(&s) => break,
                };
                note(clock.now(), pass.as_ref().map_err(|e| e.to_string()));
                let busy = match pass {
                    Ok(r) => {
                        if r.uploaded + r.expired > 0 || !r.errors.is_empty() {
                            info!(
                                uploaded = r.uploaded,
                                bytes = r.bytes,
                                secs = format!("{:.1}", r.upload_secs),
                                expired = r.expired,
                                raced = r.raced,
                                errors = r.errors.len(),
                                "archive pass"
                            );
                        }
                        r.uploaded == BATCH
                    }
                    Err(e) => {
                        warn!("archive pass: {e}");
                        false
                    }
                };
                super::hydrate::prune(&dir, CACHE_IDLE);
                if !busy {
                    sleep_unless(&s, interval).await;
                }
            }
        });
    })?;
    Ok(ArchiverThread {
        stop,
        join: Some(join),
        last,
    })
}

async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKS: i64 = 90_000;

    #[test]
    fn durations_become_ticks_without_overflow() {
        assert_eq!(ticks(Duration::from_secs(2)), 2 * TICKS);
        assert_eq!(ticks(Duration::from_secs(u64::MAX)), (i64::MAX / 90) * 90);
    }
}
