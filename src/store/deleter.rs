//! Retention's unlinks, off the writer thread. The writer marks a batch of
//! segments garbage (one commit), hands their files to this thread, and
//! deletes the rows when it hears the files and their directories' entries
//! are gone — the same order as before (garbage commit, unlink, directory
//! fsync, row delete), so a power cut anywhere leaves garbage rows that
//! start-up repair finishes.
//!
//! Why a thread: an unlink here took 3.6 ms (ext4 mounted with `discard`,
//! 4-MiB files), so a day of 64 channels (92,160 one-minute segments) held
//! the writer for minutes while every channel's frames filled the write
//! buffer. Must never touch the index, and never take a batch while one is
//! being deleted (the writer plans no more until it hears back).

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};

use tracing::warn;

use super::segment_path;

/// A file retention decided to delete.
#[derive(Clone, Copy, Debug)]
pub struct Doomed {
    pub channel: u32,
    pub id: i64,
    pub bytes: u64,
}

/// A batch whose files are gone and whose directories are synced.
#[derive(Debug)]
pub struct Deleted {
    /// The segments whose files are gone: their rows may be deleted. A file
    /// that could not be unlinked is left out, so its row stays `garbage`
    /// and start-up tries again; deleting the row would leave a file no row
    /// describes, which only the background listing would find.
    pub ids: Vec<i64>,
    /// Bytes of the files unlinked (a file already gone counts nothing).
    pub freed: u64,
}

pub struct Deleter {
    tx: SyncSender<Vec<Doomed>>,
    done: Receiver<Deleted>,
    busy: bool,
}

impl Deleter {
    pub fn spawn(dir: PathBuf) -> std::io::Result<Deleter> {
        let (tx, rx) = sync_channel::<Vec<Doomed>>(1);
        let (done_tx, done) = sync_channel::<Deleted>(1);
        std::thread::Builder::new()
            .name("store-retention".into())
            .spawn(move || {
                for batch in rx {
                    let r = delete(&dir, &batch);
                    if done_tx.send(r).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Deleter { tx, done, busy: false })
    }

    /// Whether a batch is being deleted (the writer plans none meanwhile).
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Hands a batch over; gives it back if the thread is gone.
    pub fn start(&mut self, batch: Vec<Doomed>) -> Result<(), Vec<Doomed>> {
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.busy = true;
                Ok(())
            }
            Err(std::sync::mpsc::TrySendError::Full(b) | std::sync::mpsc::TrySendError::Disconnected(b)) => Err(b),
        }
    }

    /// The finished batch, if the thread has finished one.
    pub fn finished(&mut self) -> Option<Deleted> {
        match self.done.try_recv() {
            Ok(d) => {
                self.busy = false;
                Some(d)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.busy = false;
                None
            }
        }
    }
}

/// Unlinks the batch's files, then makes their removal durable. Also what
/// the writer does itself if the thread cannot be started.
pub fn delete(dir: &std::path::Path, batch: &[Doomed]) -> Deleted {
    let mut freed = 0;
    let mut ids = Vec::with_capacity(batch.len());
    for d in batch {
        let p = segment_path(dir, d.channel, d.id);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                freed += d.bytes;
                ids.push(d.id);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ids.push(d.id),
            Err(e) => warn!(
                "cannot delete {}: {e}; its row stays garbage until start-up tries again",
                p.display()
            ),
        }
    }
    super::sync_video_dirs(dir);
    Deleted { ids, freed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_batch_is_unlinked_on_the_thread_and_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let batch: Vec<Doomed> = (1..=3)
            .map(|id| {
                let p = segment_path(dir.path(), 2, id);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, vec![0u8; 100 * id as usize]).unwrap();
                Doomed {
                    channel: 2,
                    id,
                    bytes: 100 * id as u64,
                }
            })
            .collect();
        // A file already gone is no failure and frees nothing.
        std::fs::remove_file(segment_path(dir.path(), 2, 3)).unwrap();
        let mut d = Deleter::spawn(dir.path().to_path_buf()).unwrap();
        assert!(!d.busy());
        d.start(batch).unwrap();
        assert!(d.busy());
        let deadline = Instant::now() + Duration::from_secs(10);
        let done = loop {
            if let Some(done) = d.finished() {
                break done;
            }
            assert!(Instant::now() < deadline, "the batch was not deleted");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!((done.ids, done.freed), (vec![1, 2, 3], 300));
        assert!(!d.busy() && d.finished().is_none());
        assert!(!segment_path(dir.path(), 2, 1).exists());
    }

    #[test]
    fn a_file_that_cannot_be_unlinked_keeps_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let doomed: Vec<Doomed> = (1..=2)
            .map(|id| Doomed {
                channel: 1,
                id,
                bytes: 10,
            })
            .collect();
        let ok = segment_path(dir.path(), 1, 1);
        std::fs::create_dir_all(ok.parent().unwrap()).unwrap();
        std::fs::write(&ok, [0u8; 10]).unwrap();
        // A directory in the file's place: the unlink fails (even as root).
        let stuck = segment_path(dir.path(), 1, 2);
        std::fs::create_dir_all(stuck.join("x")).unwrap();
        let done = delete(dir.path(), &doomed);
        assert_eq!((done.ids, done.freed), (vec![1], 10));
        assert!(stuck.exists());
    }
}
