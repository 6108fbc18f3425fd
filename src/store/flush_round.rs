//! A flush round's fdatasyncs, on a thread of their own beside the writer.
//!
//! At a round's start the writer captures each dirty segment's progress
//! (`OpenSegment::capture`) and hands the round the segments' shared files;
//! it goes on appending frames while the round fdatasyncs them (and, after
//! a file, the directory of a name not yet durable). When the round answers,
//! the writer moves each segment's durable point to exactly what was
//! captured (`OpenSegment::captured_durable`) and commits that — never what
//! was written after — or closes a failed segment at its last durable frame,
//! counting every frame after it lost, those appended during the round too.
//! Why: another process's writeback stretched a round's fdatasyncs to
//! seconds, and a writer waiting for them could not empty the write buffer
//! (1 s at 1 Gbit/s): ingest dropped frames.
//!
//! Owns only the thread and the syscalls of a round. Must never touch the
//! index or a segment's state (the writer does, with the answer), never run
//! two rounds at once (`start` refuses while one is in flight), and never
//! retry a failed fsync.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::flush::sync_files_with;

/// The fsync a round runs on a file or a directory (injectable for tests).
pub(super) type SyncFn = Arc<dyn Fn(&File) -> io::Result<()> + Send + Sync>;

/// `fdatasync`, the production sync.
pub(super) fn fdatasync() -> SyncFn {
    Arc::new(|f: &File| f.sync_data())
}

/// One segment's file in a round.
pub(super) struct RoundFile {
    pub file: Arc<File>,
    /// Fsynced after the file while the segment's name is not yet durable.
    pub dir: Option<PathBuf>,
}

/// A round's answer: each file's result in the order given, and how long
/// the fsyncs took.
#[derive(Debug)]
pub(super) struct Answer {
    pub results: Vec<io::Result<()>>,
    pub took: Duration,
}

/// Why `Flusher::start` refused a round.
#[derive(Debug, thiserror::Error)]
pub(super) enum RoundError {
    #[error("a flush round is already in flight")]
    InFlight,
}

/// fdatasyncs the files side by side, then (each once) the directories of
/// those whose names are not yet durable; each file's result in its place —
/// a failed directory fsync fails every file in it.
pub(super) fn sync_round(files: &[RoundFile], sync: &SyncFn) -> Vec<io::Result<()>> {
    let handles: Vec<&File> = files.iter().map(|f| &*f.file).collect();
    let mut results = sync_files_with(&handles, sync.as_ref());
    let mut dirs: Vec<&Path> = files
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .filter_map(|(f, _)| f.dir.as_deref())
        .collect();
    dirs.sort();
    dirs.dedup();
    if dirs.is_empty() {
        return results;
    }
    let opened: Vec<io::Result<File>> = dirs.iter().map(File::open).collect();
    let dir_handles: Vec<&File> = opened.iter().filter_map(|f| f.as_ref().ok()).collect();
    let mut synced = sync_files_with(&dir_handles, sync.as_ref()).into_iter();
    let failed: Vec<(&Path, io::Error)> = dirs
        .iter()
        .zip(opened)
        .filter_map(|(d, f)| match f {
            Err(e) => Some((*d, e)),
            Ok(_) => synced.next().and_then(|r| r.err()).map(|e| (*d, e)),
        })
        .collect();
    for (f, r) in files.iter().zip(results.iter_mut()) {
        if let Some((d, e)) = failed.iter().find(|(d, _)| Some(*d) == f.dir.as_deref()) {
            // The kind is kept, so the pause names the cause (a full disk).
            *r = Err(io::Error::new(
                e.kind(),
                format!("fsync of directory {}: {e}", d.display()),
            ));
        }
    }
    results
}

fn timed(files: &[RoundFile], sync: &SyncFn) -> Answer {
    let started = Instant::now();
    let results = sync_round(files, sync);
    Answer {
        results,
        took: started.elapsed(),
    }
}

/// The round thread and the one round in flight.
pub(super) struct Flusher {
    thread: Option<(SyncSender<Vec<RoundFile>>, Receiver<Answer>)>,
    sync: SyncFn,
    /// The answer of a round run on the caller's thread (no round thread).
    ready: Option<Answer>,
    /// Files in the round in flight (0: none in flight).
    in_flight: Option<usize>,
}

impl Flusher {
    /// Starts the round thread; without one, rounds run on the caller's
    /// thread as before (slower under load, never wrong).
    pub(super) fn spawn(sync: SyncFn) -> Flusher {
        let (tx, rx) = sync_channel::<Vec<RoundFile>>(1);
        let (answer_tx, answer) = sync_channel::<Answer>(1);
        let s = sync.clone();
        let thread = std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                for files in rx {
                    if answer_tx.send(timed(&files, &s)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| warn!("cannot start the flush thread, the writer will fsync itself: {e}"))
            .ok()
            .map(|_| (tx, answer));
        Flusher {
            thread,
            sync,
            ready: None,
            in_flight: None,
        }
    }

    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts a round of `files`.
    pub(super) fn start(&mut self, files: Vec<RoundFile>) -> Result<(), RoundError> {
        if self.in_flight.is_some() {
            return Err(RoundError::InFlight);
        }
        self.in_flight = Some(files.len());
        let files = match &self.thread {
            Some((tx, _)) => match tx.try_send(files) {
                Ok(()) => return Ok(()),
                Err(std::sync::mpsc::TrySendError::Full(f) | std::sync::mpsc::TrySendError::Disconnected(f)) => {
                    warn!("the flush thread is gone; the writer fsyncs itself");
                    self.thread = None;
                    f
                }
            },
            None => files,
        };
        self.ready = Some(timed(&files, &self.sync));
        Ok(())
    }

    /// The round's answer if it has come (waiting at most `wait`).
    pub(super) fn answer(&mut self, wait: Duration) -> Option<Answer> {
        let n = self.in_flight?;
        if let Some(a) = self.ready.take() {
            self.in_flight = None;
            return Some(a);
        }
        let Some((_, rx)) = self.thread.as_ref() else {
            return Some(self.lost(n));
        };
        let r = if wait.is_zero() {
            rx.try_recv().map_err(|e| matches!(e, TryRecvError::Disconnected))
        } else {
            rx.recv_timeout(wait)
                .map_err(|e| matches!(e, RecvTimeoutError::Disconnected))
        };
        match r {
            Ok(a) => {
                self.in_flight = None;
                Some(a)
            }
            Err(false) => None,
            Err(true) => {
                self.thread = None;
                Some(self.lost(n))
            }
        }
    }

    /// The answer of a round whose thread died mid-round: nothing it did can
    /// be trusted as durable, so every one of its `n` files failed.
    fn lost(&mut self, n: usize) -> Answer {
        self.in_flight = None;
        Answer {
            results: (0..n)
                .map(|_| Err(io::Error::other("the flush thread stopped")))
                .collect(),
            took: Duration::ZERO,
        }
    }

    /// Waits for the round in flight, if any.
    pub(super) fn wait(&mut self) -> Option<Answer> {
        loop {
            if !self.in_flight() {
                return None;
            }
            if let Some(a) = self.answer(Duration::from_secs(1)) {
                return Some(a);
            }
        }
    }
}

#[cfg(test)]
#[path = "flush_round_tests.rs"]
mod tests;
