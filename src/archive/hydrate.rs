//! The read side of the archive: the frames a clip needs from archived
//! segments, fetched with ranged GETs into a sparse cache file at the same
//! offsets as in the segment file, so the clip builder and the HTTP range
//! server read them like any local segment (`DIR/archive-cache/ch<N>/`).
//! Only the byte ranges of the wanted frames are fetched, never a whole
//! object unless the whole segment is wanted; what the cache already holds
//! (each frame's record header is checked against the frame index) is not
//! fetched again; what is fetched is checked record by record (size and
//! CRC) before it is written. The archiver removes cache files an hour
//! after their last use, and the whole cache when the NVR starts (a power
//! cut may have torn a write).
//!
//! Must never write the index or a segment file, and never hand back a
//! frame whose bytes it did not fetch and check.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

use super::{ArchiveError, Location};
use crate::store::reader::FrameRef;
use crate::store::segment_file::RECORD_HEADER_LEN;
use crate::time::Time90k;

pub const CACHE_DIR: &str = "archive-cache";

pub fn cache_path(dir: &Path, channel: u32, id: i64) -> PathBuf {
    dir.join(CACHE_DIR)
        .join(format!("ch{channel}"))
        .join(format!("{id:016}.seg"))
}

/// The frames of a segment that a [start, end) clip needs: from the last key
/// frame at or before `start` (else the first) to the last frame starting
/// before `end`. Pure.
pub fn wanted(frames: &[FrameRef], start: Time90k, end: Time90k) -> std::ops::Range<usize> {
    let first = frames
        .iter()
        .rposition(|f| f.key && f.time <= start)
        .unwrap_or_else(|| {
            frames
                .iter()
                .position(|f| f.time + i64::from(f.duration) > start)
                .unwrap_or(0)
        });
    let last = frames.iter().rposition(|f| f.time < end).map_or(first, |i| i + 1);
    first..last.max(first)
}

/// Byte ranges (record header + data, merged where adjacent) covering
/// `frames` that `have` says are missing. Pure.
pub fn missing_ranges(frames: &[FrameRef], have: impl Fn(&FrameRef) -> bool) -> Vec<std::ops::Range<u64>> {
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for f in frames.iter().filter(|f| !have(f)) {
        let r = f.offset - RECORD_HEADER_LEN..f.offset + u64::from(f.size);
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// One archived segment's wanted frames to bring into the cache.
pub struct Job {
    pub key: String,
    pub cache: PathBuf,
    pub frames: Vec<FrameRef>,
}

/// Whether the cache file holds the frame: its record header's size field
/// matches the frame index (a sparse hole reads as zeros).
fn cached(f: &std::fs::File, fr: &FrameRef) -> bool {
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, fr.offset - RECORD_HEADER_LEN).is_ok() && u32::from_be_bytes(b) == fr.size
}

/// Brings every job's frames into its cache file. Runs the fetches on a
/// thread of its own with its own runtime, so it may be called from any
/// thread (blocking or not) of any program.
pub fn fetch(loc: &Location, jobs: Vec<Job>) -> Result<u64, ArchiveError> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let loc = loc.clone();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(fetch_async(&loc, jobs))
        })
        .join()
        .unwrap_or_else(|_| Err(ArchiveError::Io(std::io::Error::other("archive fetch thread panicked"))))
    })
}

/// As `fetch`, on the caller's runtime.
pub async fn fetch_async(loc: &Location, jobs: Vec<Job>) -> Result<u64, ArchiveError> {
    let store = loc.client()?;
    let mut fetched = 0;
    for job in jobs {
        if let Some(d) = job.cache.parent() {
            std::fs::create_dir_all(d)?;
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&job.cache)?;
        let ranges = missing_ranges(&job.frames, |fr| cached(&f, fr));
        let key = ObjectPath::from(job.key.as_str());
        for r in ranges {
            let bytes = store.get_range(&key, r.clone()).await?;
            let bad = |why: String| ArchiveError::Verify {
                key: job.key.clone(),
                why,
            };
            if bytes.len() as u64 != r.end - r.start {
                return Err(bad(format!(
                    "asked for {} bytes at {}, got {}",
                    r.end - r.start,
                    r.start,
                    bytes.len()
                )));
            }
            // Each fetched record is checked as the local reader's scan
            // would (size, then the CRC over header and data) before it is
            // written: the cache holds only verified frames, so a frame
            // found there later needs only its size checked.
            for fr in job
                .frames
                .iter()
                .filter(|fr| fr.offset - RECORD_HEADER_LEN >= r.start && fr.offset + u64::from(fr.size) <= r.end)
            {
                let at = (fr.offset - RECORD_HEADER_LEN - r.start) as usize;
                let (h, data) = bytes[at..at + (RECORD_HEADER_LEN + u64::from(fr.size)) as usize]
                    .split_at(RECORD_HEADER_LEN as usize);
                let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                if size != fr.size || !crate::store::segment_file::record_intact(h, data) {
                    return Err(bad(format!("frame at {} does not match its record", fr.offset)));
                }
            }
            f.write_all_at(&bytes, r.start)?;
            fetched += bytes.len() as u64;
        }
    }
    Ok(fetched)
}

/// Removes cache files not used for `idle`.
pub fn prune(dir: &Path, idle: std::time::Duration) -> usize {
    let mut n = 0;
    let Ok(chs) = std::fs::read_dir(dir.join(CACHE_DIR)) else {
        return 0;
    };
    for ch in chs.flatten() {
        let Ok(files) = std::fs::read_dir(ch.path()) else {
            continue;
        };
        for f in files.flatten() {
            let old = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|e| e > idle);
            if old && std::fs::remove_file(f.path()).is_ok() {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<FrameRef> {
        // 10 frames of 100 ticks, a key frame every 4, records back to back.
        let mut off = 100 + RECORD_HEADER_LEN;
        (0..10)
            .map(|i| {
                let f = FrameRef {
                    time: Time90k(1000 + i * 100),
                    duration: 100,
                    offset: off,
                    size: 50,
                    key: i % 4 == 0,
                };
                off += 50 + RECORD_HEADER_LEN;
                f
            })
            .collect()
    }

    #[test]
    fn a_clip_wants_from_the_key_frame_before_its_start() {
        let f = frames();
        assert_eq!(wanted(&f, Time90k(1650), Time90k(1850)), 4..9);
        assert_eq!(wanted(&f, Time90k(0), Time90k(5000)), 0..10);
        assert_eq!(wanted(&f, Time90k(1000), Time90k(1001)), 0..1);
    }

    #[test]
    fn pruning_removes_only_idle_cache_files() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (cache_path(dir.path(), 1, 1), cache_path(dir.path(), 2, 2));
        for p in [&old, &new] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
            .unwrap();
        assert_eq!(prune(dir.path(), std::time::Duration::from_secs(3600)), 1);
        assert!(!old.exists() && new.exists());
    }

    #[test]
    fn only_missing_frames_are_fetched_in_merged_ranges() {
        let f = frames();
        let r = missing_ranges(&f[0..4], |fr| fr.time == Time90k(1200));
        let rec = 50 + RECORD_HEADER_LEN;
        assert_eq!(r, vec![100..100 + 2 * rec, 100 + 3 * rec..100 + 4 * rec]);
        assert!(missing_ranges(&f, |_| true).is_empty());
    }
}
