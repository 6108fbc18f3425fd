//! Segment integrity: each finished segment's SHA-256 (stored by the writer
//! as it wrote the file, schema 6) checked against the file on disk, by
//! `tandem verify --data` and by the background scrub.
//!
//! The start-up check (`repair::check_finished`) only looks at sizes, so that
//! a year of footage is checked in seconds; a file changed in place keeps its
//! size, and only reading it all finds that. That is this module's job, at a
//! bounded rate so that it never competes with recording.
//!
//! Read-only: must never modify a segment file or its row. A mismatch is
//! reported (and logged by the scrub), not repaired.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{db, segment_path};
use crate::time::Time90k;

/// What one finished segment's check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Intact,
    /// No hash stored (finished before schema 6, or rebuilt by repair).
    Unhashed,
    /// The start-up check already marked it damaged; not read again.
    KnownDamage(String),
    Mismatch(String),
}

/// Judges a segment from its stored hash and what the file gave. `read` is
/// the file's length and the SHA-256 of its first `bytes` bytes, or why it
/// could not be read. Pure.
pub fn judge(stored: Option<&[u8]>, bytes: u64, read: Result<(u64, [u8; 32]), String>) -> Outcome {
    let Some(stored) = stored else {
        return Outcome::Unhashed;
    };
    match read {
        Err(why) => Outcome::Mismatch(why),
        Ok((len, _)) if len < bytes => Outcome::Mismatch(format!("{len} bytes, fewer than the {bytes} written")),
        Ok((len, _)) if len > bytes => Outcome::Mismatch(format!("{len} bytes, more than the {bytes} written")),
        Ok((_, h)) if h.as_slice() != stored => Outcome::Mismatch(format!(
            "SHA-256 {} differs from the {} recorded when it was written",
            crate::evidence::hex(&h),
            crate::evidence::hex(stored)
        )),
        Ok(_) => Outcome::Intact,
    }
}

/// Spreads reads over time: at most `bytes_per_sec` on average.
pub struct Pacer {
    bytes_per_sec: Option<u64>,
    start: Instant,
    done: u64,
}

impl Pacer {
    pub fn new(bytes_per_sec: Option<u64>) -> Pacer {
        Pacer {
            bytes_per_sec,
            start: Instant::now(),
            done: 0,
        }
    }
    /// How long to wait after `n` more bytes to stay within the rate.
    fn after(&mut self, n: u64) -> Option<Duration> {
        let rate = self.bytes_per_sec?;
        self.done += n;
        let due = Duration::from_secs_f64(self.done as f64 / rate.max(1) as f64);
        due.checked_sub(self.start.elapsed()).filter(|d| !d.is_zero())
    }
}

const CHUNK: usize = 256 * 1024;

/// What a row's hash covers.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Every byte (schemas 6 to 9).
    WholeFile,
    /// The record digest (`record_digest`, schema 10 on).
    Records,
}

/// The file's length and the hash of its first `bytes` bytes, of the kind
/// the row holds. `wait` is called with each pause the pacer asks for and
/// returns false to stop.
fn hash_file(
    path: &Path,
    bytes: u64,
    kind: Kind,
    pace: &mut Pacer,
    wait: &mut dyn FnMut(Duration) -> bool,
) -> Result<(u64, [u8; 32]), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    // A FIFO or device in a segment's place would block or never end.
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut f = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    if let Kind::Records = kind {
        // A file shorter or longer than written is judged by its length.
        if meta.len() != bytes {
            return Ok((meta.len(), [0; 32]));
        }
        let mut r = std::io::BufReader::with_capacity(CHUNK, f);
        let h = super::record_digest::check(&mut r, bytes, &mut |n| pace.after(n).is_none_or(&mut *wait))?;
        return Ok((bytes, h));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes.min(meta.len());
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        f.read_exact(&mut buf[..n]).map_err(|e| format!("read failed: {e}"))?;
        h.update(&buf[..n]);
        left -= n as u64;
        if let Some(d) = pace.after(n as u64) {
            if !wait(d) {
                return Err("stopped".into());
            }
        }
    }
    Ok((meta.len(), h.finalize().into()))
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Mismatch {
    pub segment: i64,
    pub channel: u32,
    pub file: PathBuf,
    pub why: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub checked: u64,
    pub intact: u64,
    pub unhashed: u64,
    pub bytes_read: u64,
    /// Damaged files the start-up check had already marked.
    pub known_damage: Vec<String>,
    pub mismatches: Vec<Mismatch>,
}

/// Which segments to check.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub channel: Option<u32>,
    pub start: Time90k,
    pub end: Time90k,
}

impl Scope {
    pub const ALL: Scope = Scope {
        channel: None,
        start: Time90k(i64::MIN),
        end: Time90k(i64::MAX),
    };
}

/// Checks every finished segment in `scope`; `on_mismatch` is told of each
/// as it is found. Stops early (with what it has) when `wait` returns false.
pub fn check(
    dir: &Path,
    scope: Scope,
    pace: &mut Pacer,
    wait: &mut dyn FnMut(Duration) -> bool,
    on_mismatch: &mut dyn FnMut(&Mismatch),
) -> Result<Report, String> {
    let index = dir.join("index.db");
    if !index.is_file() {
        return Err(format!("{} is not a Tandem store (no index.db)", dir.display()));
    }
    let conn = db::open_readonly(&index).map_err(|e| format!("{}: {e}", index.display()))?;
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let rows = db::finished_segments_for_check(&conn, scope.channel, scope.start, scope.end, version)
        .map_err(|e| format!("{}: {e}", index.display()))?;
    let mut r = Report::default();
    for s in rows {
        let path = segment_path(dir, s.channel, s.id);
        r.checked += 1;
        let kind = match (&s.record_sha256, &s.sha256) {
            (Some(h), _) => Some((h, Kind::Records)),
            (None, Some(h)) => Some((h, Kind::WholeFile)),
            (None, None) => None,
        };
        let outcome = match (&s.damage, kind) {
            (Some(d), _) => Outcome::KnownDamage(d.clone()),
            (None, None) => Outcome::Unhashed,
            (None, Some((h, kind))) => {
                let read = hash_file(&path, s.bytes, kind, pace, wait);
                if read.as_ref().is_err_and(|e| e == "stopped") {
                    break;
                }
                if read.is_ok() {
                    r.bytes_read += s.bytes;
                }
                // Retention may have deleted it since the list was read (it
                // marks the row garbage before unlinking): not a mismatch.
                if read.is_err() && !still_finished(&conn, s.id) {
                    r.checked -= 1;
                    continue;
                }
                judge(Some(h), s.bytes, read)
            }
        };
        match outcome {
            Outcome::Intact => r.intact += 1,
            Outcome::Unhashed => r.unhashed += 1,
            Outcome::KnownDamage(d) => r.known_damage.push(format!("{}: {d}", path.display())),
            Outcome::Mismatch(why) => {
                let m = Mismatch {
                    segment: s.id,
                    channel: s.channel,
                    file: path,
                    why,
                };
                on_mismatch(&m);
                r.mismatches.push(m);
            }
        }
    }
    Ok(r)
}

fn still_finished(conn: &rusqlite::Connection, id: i64) -> bool {
    // If the index cannot say, the failure stands.
    db::segment(conn, id).map_or(true, |row| row.is_some_and(|r| r.state == db::COMPLETE))
}

/// The scrub's counters, shown in `GET /api/v1/store`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScrubStats {
    pub enabled: bool,
    pub interval_s: Option<f64>,
    pub passes: u64,
    pub segments_checked: u64,
    pub bytes_read: u64,
    pub unhashed: u64,
    /// Segment files found changed since they were written, over all passes.
    pub mismatches: u64,
    pub last_mismatch: Option<String>,
    pub last_pass_ms: Option<u64>,
}

pub type SharedScrubStats = Arc<Mutex<ScrubStats>>;

/// How fast the scrub reads: a small share of any disk's bandwidth, so the
/// writer's fdatasyncs never wait behind it.
pub const SCRUB_RATE: u64 = 8 << 20;

/// Starts the scrub thread: a pass over every finished segment, then a wait
/// of `interval`, until `stop`'s sender is dropped (checked between reads).
pub fn spawn_scrub(
    dir: PathBuf,
    interval: Duration,
    rate: u64,
    stats: SharedScrubStats,
    stop: std::sync::mpsc::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::sync::mpsc::RecvTimeoutError;
    if let Ok(mut s) = stats.lock() {
        s.enabled = true;
        s.interval_s = Some(interval.as_secs_f64());
    }
    std::thread::Builder::new().name("scrub".into()).spawn(move || {
        let mut wait = |d: Duration| matches!(stop.recv_timeout(d), Err(RecvTimeoutError::Timeout));
        // The first pass waits one interval too: start-up belongs to repair and recording.
        while wait(interval) {
            let t0 = Instant::now();
            let mut pace = Pacer::new(Some(rate));
            let mut found = 0u64;
            let mut on_mismatch = |m: &Mismatch| {
                found += 1;
                tracing::error!(
                    channel = m.channel,
                    segment = m.segment,
                    file = %m.file.display(),
                    "scrub: segment file changed after it was written: {}",
                    m.why
                );
                if let Ok(mut s) = stats.lock() {
                    s.mismatches += 1;
                    s.last_mismatch = Some(format!("{}: {}", m.file.display(), m.why));
                }
            };
            match check(&dir, Scope::ALL, &mut pace, &mut wait, &mut on_mismatch) {
                Ok(r) => {
                    tracing::info!(
                        segments = r.checked,
                        unhashed = r.unhashed,
                        mismatches = r.mismatches.len(),
                        mib_read = r.bytes_read >> 20,
                        s = t0.elapsed().as_secs(),
                        "scrub pass finished"
                    );
                    if let Ok(mut s) = stats.lock() {
                        s.passes += 1;
                        s.segments_checked += r.checked;
                        s.bytes_read += r.bytes_read;
                        s.unhashed = r.unhashed;
                        s.last_pass_ms = Some(t0.elapsed().as_millis() as u64);
                    }
                }
                Err(e) => tracing::warn!("scrub pass could not run: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judgement_of_one_segment() {
        let h = [5u8; 32];
        assert_eq!(judge(None, 10, Err("gone".into())), Outcome::Unhashed);
        assert_eq!(judge(Some(&h), 10, Ok((10, h))), Outcome::Intact);
        let m = |o: Outcome| match o {
            Outcome::Mismatch(w) => w,
            o => panic!("{o:?}"),
        };
        assert!(m(judge(Some(&h), 10, Ok((10, [6; 32])))).contains("SHA-256"));
        assert!(m(judge(Some(&h), 10, Ok((9, h)))).contains("fewer"));
        assert!(m(judge(Some(&h), 10, Ok((11, h)))).contains("more"));
        assert_eq!(m(judge(Some(&h), 10, Err("gone".into()))), "gone");
    }

    /// A segment file of 20 frames and its record digest.
    fn segment_file(id: i64, seed: i64) -> (Vec<u8>, [u8; 32]) {
        use crate::store::segment_file::{record_header, SegmentHeader};
        let header = SegmentHeader {
            channel: 1,
            segment_id: id,
            start: Time90k(0),
            sample_entry: b"avc1".to_vec(),
        }
        .encode();
        let mut d = crate::store::record_digest::RecordDigest::new(&header);
        let mut out = header;
        for f in 0..20u32 {
            let data: Vec<u8> = (0..240u32)
                .map(|b| (i64::from(b + f) * (seed + 3) % 251) as u8)
                .collect();
            let h = record_header(f * 3600, f == 0, &data);
            d.record(&h);
            out.extend_from_slice(&h);
            out.extend_from_slice(&data);
        }
        (out, d.finish())
    }

    /// A store of four finished segments: record digests (schema 10) on the
    /// first two, none on the third, a whole-file SHA-256 (schemas 6 to 9)
    /// on the fourth.
    fn store() -> (tempfile::TempDir, Vec<PathBuf>) {
        let d = tempfile::tempdir().unwrap();
        let mut c = db::open(&d.path().join("index.db")).unwrap();
        db::migrate(&mut c).unwrap();
        let e = db::upsert_sample_entry(&c, b"avc1", "h264", 1, 1).unwrap();
        let mut paths = Vec::new();
        for i in 0..4i64 {
            let id = db::insert_writing_segment(&c, 1, Time90k(i * 1000), e).unwrap();
            let (body, digest) = segment_file(id, i);
            let path = segment_path(d.path(), 1, id);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &body).unwrap();
            let p = db::Progress {
                end: Time90k(i * 1000 + 1000),
                frames: 1,
                key_frames: 1,
                bytes: body.len() as u64,
                media_bytes: 1,
            };
            db::complete_segment(&c, id, &p, b"", (i < 2).then_some(&digest)).unwrap();
            if i == 3 {
                let whole: [u8; 32] = Sha256::digest(&body).into();
                c.execute(
                    "UPDATE segment SET sha256 = ?2 WHERE id = ?1",
                    rusqlite::params![id, whole.as_slice()],
                )
                .unwrap();
            }
            paths.push(path);
        }
        (d, paths)
    }

    fn run(dir: &Path, scope: Scope) -> Report {
        check(dir, scope, &mut Pacer::new(None), &mut |_| true, &mut |_| {}).unwrap()
    }

    #[test]
    fn finds_a_file_changed_in_place_and_nothing_else() {
        let (d, paths) = store();
        let r = run(d.path(), Scope::ALL);
        assert_eq!((r.checked, r.intact, r.unhashed, r.mismatches.len()), (4, 3, 1, 0));
        let len = std::fs::metadata(&paths[0]).unwrap().len();
        assert_eq!(r.bytes_read, 3 * len);
        // One byte of a frame changed, same size: named, with the reason.
        let mut b = std::fs::read(&paths[1]).unwrap();
        b[len as usize - 100] ^= 1;
        std::fs::write(&paths[1], &b).unwrap();
        // The unhashed segment changed too: not checkable, not a failure.
        std::fs::write(&paths[2], b"x").unwrap();
        let mut told = Vec::new();
        let r = check(d.path(), Scope::ALL, &mut Pacer::new(None), &mut |_| true, &mut |m| {
            told.push(m.file.clone())
        })
        .unwrap();
        assert_eq!(r.mismatches.len(), 1);
        assert_eq!(r.mismatches[0].file, paths[1]);
        assert!(r.mismatches[0].why.contains("fails its CRC-32"), "{r:?}");
        assert_eq!(told, vec![paths[1].clone()]);
        assert_eq!(r.unhashed, 1);
        // Scoped by time and channel.
        let s = |c, a, b| Scope {
            channel: Some(c),
            start: Time90k(a),
            end: Time90k(b),
        };
        assert_eq!(run(d.path(), s(1, 0, 1000)).checked, 1);
        assert_eq!(run(d.path(), s(1, 1500, 1600)).mismatches.len(), 1);
        assert_eq!(run(d.path(), s(2, 0, 10_000)).checked, 0);
        // A byte changed in the segment with a whole-file hash: found too.
        let mut b = std::fs::read(&paths[3]).unwrap();
        b[300] ^= 4;
        std::fs::write(&paths[3], &b).unwrap();
        let r = run(d.path(), s(1, 3000, 3500));
        assert!(r.mismatches[0].why.contains("SHA-256"), "{r:?}");
        // A truncated or missing file of a finished row is a mismatch.
        std::fs::write(&paths[0], b"short").unwrap();
        std::fs::remove_file(&paths[3]).unwrap();
        let r = run(d.path(), Scope::ALL);
        assert_eq!(r.mismatches.len(), 3, "{r:?}");
        assert!(r.mismatches[0].why.contains(&format!("fewer than the {len}")), "{r:?}");
        assert!(r.mismatches[2].why.contains("cannot read it"));
        // Not a store: a clear error.
        assert!(check(
            &d.path().join("nope"),
            Scope::ALL,
            &mut Pacer::new(None),
            &mut |_| true,
            &mut |_| {}
        )
        .unwrap_err()
        .contains("no index.db"));
    }

    #[test]
    fn a_segment_retention_deletes_mid_pass_is_not_a_mismatch_and_stop_is_honoured() {
        let (d, paths) = store();
        let c = db::open(&d.path().join("index.db")).unwrap();
        let last = db::finished_segments_for_check(&c, None, Time90k(0), Time90k(10_000), db::SCHEMA_VERSION)
            .unwrap()
            .last()
            .unwrap()
            .id;
        // Paced (the pauses are only asked for, not slept): the first comes
        // after the first file is read, and retention deletes the last one
        // then (row garbage first, then the file).
        let mut deleted = false;
        let mut wait = |_| {
            if !deleted {
                db::mark_garbage(&c, last).unwrap();
                std::fs::remove_file(&paths[3]).unwrap();
                deleted = true;
            }
            true
        };
        let r = check(
            d.path(),
            Scope::ALL,
            &mut Pacer::new(Some(1000)),
            &mut wait,
            &mut |_| {},
        )
        .unwrap();
        assert!(deleted);
        assert_eq!((r.checked, r.mismatches.len()), (3, 0), "{r:?}");
        // A stop request ends the pass early without a verdict on the rest.
        let r = check(
            d.path(),
            Scope::ALL,
            &mut Pacer::new(Some(1)),
            &mut |_| false,
            &mut |_| {},
        )
        .unwrap();
        assert!(r.mismatches.is_empty() && r.intact == 0);
    }

    #[test]
    fn pacer_holds_the_rate() {
        let mut p = Pacer::new(Some(1000));
        assert!(p.after(500).is_some_and(|d| d > Duration::from_millis(400)));
        assert!(Pacer::new(None).after(1 << 30).is_none());
    }
}
