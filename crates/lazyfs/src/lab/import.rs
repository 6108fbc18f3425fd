//! The lab's failback peer: uploads finished segments of channel 1 to the
//! NVR's import API (`PUT` the file, `POST …/complete`) and has them merged
//! into the import channel, one after another, so that cuts land inside
//! imports. Failures are expected (the power goes) and only counted.
//!
//! Must never upload the same footage twice in one run (a repeat merges
//! nothing) nor talk to anything but the NVR on loopback.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{procs, IMPORT_CHANNEL, PEER_TOKEN};

const ORIGIN: &str = "c0ffee";

/// Uploads recent segments of channel 1 to the NVR's import API and merges
/// them into the import channel, one after another until stopped; marks
/// when a request is in flight. Failures are expected (the power goes).
pub(super) struct Importer {
    stop: Arc<AtomicBool>,
    pub in_flight: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

static NEXT_UPLOAD: AtomicU64 = AtomicU64::new(1);

impl Importer {
    pub fn start(port: u16, data: PathBuf, pause: Duration) -> Importer {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicBool::new(false));
        let (s, f) = (stop.clone(), in_flight.clone());
        let thread = std::thread::spawn(move || {
            let mut merged = 0;
            let mut last = None;
            while !s.load(Ordering::SeqCst) {
                // Each finished segment once: a second upload of the same
                // footage would be dropped as a duplicate, merging nothing.
                match recent_segment(&data.join("video/ch1")) {
                    Some((path, bytes)) if last.as_ref() != Some(&path) => {
                        let seg = NEXT_UPLOAD.fetch_add(1, Ordering::SeqCst);
                        f.store(true, Ordering::SeqCst);
                        if upload(port, seg, &bytes) {
                            merged += 1;
                        }
                        f.store(false, Ordering::SeqCst);
                        last = Some(path);
                    }
                    _ => std::thread::sleep(pause),
                }
            }
            merged
        });
        Importer {
            stop,
            in_flight,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> u32 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

/// The newest finished segment file of a channel directory (the newest one
/// is still being written).
fn recent_segment(dir: &Path) -> Option<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok()?, e.path())))
        .collect();
    files.sort_unstable();
    let path = files.iter().rev().nth(1)?.1.clone();
    let bytes = std::fs::read(&path).ok()?;
    Some((path, bytes))
}

fn upload(port: u16, seg: u64, bytes: &[u8]) -> bool {
    let t = Duration::from_secs(5);
    let base = format!("/api/v1/import/{ORIGIN}/{seg}");
    let put = procs::http(port, "PUT", &format!("{base}?offset=0"), Some(PEER_TOKEN), bytes, t);
    if !put.is_ok_and(|r| r.status == 200) {
        return false;
    }
    let done = format!("{base}/complete?channel={IMPORT_CHANNEL}&length={}", bytes.len());
    procs::http(port, "POST", &done, Some(PEER_TOKEN), b"", t).is_ok_and(|r| r.status == 200)
}
