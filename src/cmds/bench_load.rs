//! Disturbances `bench ingest` records under: another writer loading the
//! same filesystem (`--disk-load`), and old footage for retention to delete
//! while the cameras record (`--preload-day`, `--preload-minutes`).
//!
//! Owns only the load and the pre-loading. Must never touch the NVR's files
//! while it runs (the load writes its own file beside the store; the
//! pre-loaded day is generated before the NVR starts).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::bench_index::Files;

/// The load's writes: 1 MiB each…
const CHUNK: usize = 1 << 20;
/// …into new files of 1 GiB, each fdatasynced when full, as a build's
/// outputs or a copy would be: new files allocate blocks, so ext4's
/// ordered mode makes any journal commit (another file's fsync) wait for
/// their data — rewriting one file in place barely slowed the store's
/// fsyncs (p99 23 ms at 300 MiB/s), and 256-MiB files left the store's
/// rounds at 300–700 ms…
const FILE_MIB: u64 = 1024;
/// …the oldest removed while more than this many exist (2 GiB on disk).
const FILES_KEPT: u64 = 2;

/// What the load did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(super) struct LoadFigures {
    pub(super) target_mib_per_s: u64,
    pub(super) mib_per_s: f64,
    pub(super) fsyncs: u64,
    pub(super) fsync_p99_ms: f64,
    pub(super) fsync_max_ms: f64,
}

/// A writer loading the filesystem of `dir` from a thread of the benchmark's
/// process (not the NVR's): paced writes of `mib_per_s` into new files,
/// each fdatasynced when full, as a build or a copy would.
pub(super) struct DiskLoad {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<LoadFigures>>>,
    dir: PathBuf,
}

impl DiskLoad {
    pub(super) fn start(dir: &Path, mib_per_s: u64) -> Result<DiskLoad> {
        let dir = dir.join("disk-load");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, d) = (stop.clone(), dir.clone());
        let thread = std::thread::Builder::new()
            .name("disk-load".into())
            .spawn(move || load(&d, mib_per_s, &s))?;
        Ok(DiskLoad {
            stop,
            thread: Some(thread),
            dir,
        })
    }

    /// Stops the load and says what it did.
    pub(super) fn finish(mut self) -> Result<LoadFigures> {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.take().context("the load ran")?;
        t.join().map_err(|_| anyhow::anyhow!("the disk load thread failed"))?
    }
}

impl Drop for DiskLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn load(dir: &Path, mib_per_s: u64, stop: &AtomicBool) -> Result<LoadFigures> {
    let name = |n: u64| dir.join(format!("{n}.bin"));
    let mut file = File::create(name(0))?;
    // Not zeros: a filesystem may treat those specially.
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 131 % 251) as u8).collect();
    let t0 = Instant::now();
    let mut written = 0u64;
    let mut fsyncs = Vec::new();
    while !stop.load(Ordering::Acquire) {
        // Paced: the n-th MiB is written no sooner than n / rate seconds in.
        let due = t0 + Duration::from_secs_f64(written as f64 / mib_per_s.max(1) as f64);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w.min(Duration::from_millis(100)));
            continue;
        }
        file.write_all(&chunk)?;
        written += 1;
        if written % FILE_MIB == 0 {
            let s = Instant::now();
            file.sync_data()?;
            fsyncs.push(s.elapsed().as_secs_f64() * 1000.0);
            let n = written / FILE_MIB;
            file = File::create(name(n))?;
            if n >= FILES_KEPT {
                let _ = std::fs::remove_file(name(n - FILES_KEPT));
            }
        }
    }
    fsyncs.sort_by(f64::total_cmp);
    let p99 = fsyncs
        .get(((fsyncs.len() as f64 * 0.99) as usize).min(fsyncs.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    Ok(LoadFigures {
        target_mib_per_s: mib_per_s,
        mib_per_s: written as f64 / t0.elapsed().as_secs_f64().max(1e-3),
        fsyncs: fsyncs.len() as u64,
        fsync_p99_ms: p99,
        fsync_max_ms: fsyncs.last().copied().unwrap_or(0.0),
    })
}

/// Generates `minutes` of finished one-minute segments for channels
/// `1..=channels` into the store at `data` (rows as the writer leaves them:
/// `bench index`'s generator), ending two days ago, so that a one-day
/// `max_age` makes retention delete all of it while the cameras record.
/// Returns the segments made.
pub(super) fn preload(data: &Path, channels: u32, minutes: u64, files: Files) -> Result<u64> {
    std::fs::create_dir_all(data.join("video"))?;
    let end = tandem::time::Time90k::from_system(std::time::SystemTime::now()) + -(2 * 86_400 * 90_000);
    let g = super::bench_index::generate(data, channels, minutes, files, 14, end)?;
    // The generator's sparse originals (the store's files link to them), or
    // its empty pool directory.
    std::fs::remove_dir_all(data.join("pool"))?;
    Ok(g.segments)
}
