//! A lazy filesystem for tests: a FUSE filesystem that keeps every write in
//! memory until it is made durable — a file's data and size by `fsync` /
//! `fdatasync` of that file, a name (create, rename, unlink, mkdir) by
//! `fsync` of its directory — and that on command "cuts the power": everything
//! not yet durable is dropped and the disk is presented as the last syncs left
//! it. It also fails or slows operations on demand (EIO from fsync once or
//! always, slow fsync, ENOSPC, unreadable files) so that tests can hold a
//! store to its durability promise. The idea is Jepsen's LazyFS.
//!
//! Owns: the in-memory model (`model`), the FUSE adapter (`mount`), the fault
//! controls (this file) and the power-cut lab driver (`lab`).
//! Must never touch the disk under its mount point: all state is in memory.
//!
//! Operations served: lookup, getattr, setattr (size, mode, owner, times),
//! mknod (regular files), create, mkdir, unlink, rmdir, rename (replacing,
//! `RENAME_NOREPLACE`; not `RENAME_EXCHANGE`), open, read, write, flush,
//! release, fsync/fdatasync, opendir, readdir, releasedir, fsyncdir, statfs,
//! access, link (hard links: Tandem links its evidence key into the store
//! directory) and fallocate (mode 0, and `KEEP_SIZE`, a reservation past the end that
//! changes nothing in the model). Not served: symlinks, xattrs
//! (the kernel then answers ENOTSUP itself); POSIX locks are kept by the
//! kernel, which is what SQLite needs. Shared writable mmap works (SQLite's
//! `-shm`): the kernel writes those pages back through `write`.
//!
//! Semantics chosen where the contract is silent (see `model` for the rest):
//! a rename or link between directories becomes durable whole when either
//! directory is fsynced; a failed directory fsync changes nothing; the trace
//! and the `cut_at` counters see every operation that reaches the filesystem
//! while the power is on, whatever its outcome (an `EEXIST` create counts);
//! rmdir counts as `OpKind::Unlink`, a hard link as `OpKind::Create`,
//! `fallocate` as `OpKind::Write`; a cut disarms a pending `cut_at`; faults
//! survive cuts until `clear_faults`; every operation but `release` fails
//! with EIO while the power is off (pages the kernel had cached may still be
//! read by a process until it is killed; a fresh mount has no cache).
//!
//! A program that creates a file or directory must fsync its parent
//! directory for the name to survive: SQLite does so for its journal and WAL
//! (and with them the database file beside them), not for the database file
//! itself. Tried with Tandem's store on this filesystem: it creates its
//! storage directory, `video/` and `video/chN/` without fsyncing their
//! parents, so a cut takes the whole store with it unless the parents are
//! synced.
//!
//! Performance (debug build, this 2-core machine, shared): 570–910 MB/s of
//! sequential 64 KiB writes through the mount with an fsync per second,
//! 32 MiB segments rolled over and deleted as a recorder does (the
//! `throughput_of_sequential_writes_with_an_fsync_per_second` test prints
//! it). An fsync costs the dirty byte ranges' chunk pointers, not their
//! bytes; a cut costs one pointer per 64 KiB of durable data. Memory is the
//! live data plus whatever durable data the live state no longer shares
//! (overwritten or deleted, until the directory fsync of the delete).

mod chunks;
mod control;
pub mod lab;
mod model;
mod mount;

use std::path::Path;
use std::time::Duration;

pub use mount::Mount;

/// The kind of filesystem operation a trigger or fault can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Create,
    Mkdir,
    Write,
    Truncate,
    /// `fsync` or `fdatasync` of a file.
    Fsync,
    /// `fsync` of a directory.
    FsyncDir,
    Rename,
    Unlink,
    Read,
}

/// When a triggered cut happens relative to the matching operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// The operation never happens: it fails with EIO as the power goes.
    Before,
    /// The operation takes effect (an fsync makes its data durable), then the power goes.
    After,
}

/// Which operations a trigger or fault applies to: a kind, and a substring
/// of the path (relative to the mount point, e.g. `video/ch1/`; empty = any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub op: OpKind,
    pub path_contains: String,
}

/// One durability-relevant operation as the filesystem saw it (the trace
/// tests use to enumerate a segment's fsync and rename boundaries).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpRecord {
    /// Counted from 1 since the filesystem was created.
    pub seq: u64,
    pub op: OpKind,
    /// Relative to the mount point; for a rename, the destination.
    pub path: String,
}

/// Counters since the filesystem was created.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub writes: u64,
    pub fsyncs: u64,
    pub dir_fsyncs: u64,
    /// Bytes written and not yet durable.
    pub unsynced_bytes: u64,
    pub cuts: u64,
    pub injected_errors: u64,
}

/// A lazy filesystem. Cheap to clone: clones control the same filesystem.
#[derive(Clone)]
pub struct LazyFs {
    inner: std::sync::Arc<mount::Shared>,
}

impl LazyFs {
    /// An empty filesystem of `capacity` bytes: `statfs` reports it and a
    /// write past it fails with ENOSPC.
    pub fn new(capacity: u64) -> LazyFs {
        LazyFs {
            inner: mount::Shared::new(capacity),
        }
    }

    /// Mounts the filesystem at `dir` (created if missing). Needs root. The
    /// state survives unmounting: mount again after `power_on` to see what
    /// the cut left (a fresh mount also empties the kernel's caches).
    pub fn mount(&self, dir: &Path) -> std::io::Result<Mount> {
        mount::mount(&self.inner, dir)
    }

    /// Cuts the power now: everything not durable is dropped, and every
    /// operation fails with EIO until `power_on`. Kill the processes using
    /// the mount, drop the `Mount`, `power_on`, and mount again.
    pub fn cut(&self) {
        self.inner.cut()
    }

    /// Arms a cut at the `nth` (from 1) operation matching `at` from now on.
    /// Replaces any trigger armed before.
    pub fn cut_at(&self, at: Match, nth: u64, when: When) {
        self.inner.cut_at(at, nth, when)
    }

    /// Whether the power is off, and when it went (wall clock, µs since the epoch).
    pub fn cut_time_us(&self) -> Option<i64> {
        self.inner.cut_time_us()
    }

    /// Power returns: operations work again on the state the cut left.
    pub fn power_on(&self) {
        self.inner.power_on()
    }

    /// The next `count` fsyncs (files and directories) whose path matches
    /// `path_contains` fail with EIO (`u64::MAX`: until `clear_faults`). As
    /// on Linux, a failed fsync drops the file's unsynced writes from the
    /// durable state for good while reads still return them from memory —
    /// a later fsync that succeeds does not bring them back.
    pub fn fail_fsync(&self, path_contains: &str, count: u64) {
        self.inner.fail_fsync(path_contains, count)
    }

    /// Every fsync sleeps `delay` before it takes effect and answers, without
    /// holding up other operations (reads and writes go on meanwhile).
    pub fn slow_fsync(&self, delay: Duration) {
        self.inner.slow_fsync(delay)
    }

    /// Writes and creates under paths matching `path_contains` fail with ENOSPC.
    pub fn enospc(&self, path_contains: &str) {
        self.inner.enospc(path_contains)
    }

    /// Reads of files whose path matches `path_contains` fail with EIO.
    pub fn fail_reads(&self, path_contains: &str) {
        self.inner.fail_reads(path_contains)
    }

    /// Removes every fault (not a pending cut, not a cut that happened).
    pub fn clear_faults(&self) {
        self.inner.clear_faults()
    }

    /// The durability-relevant operations seen so far (creates, mkdirs,
    /// fsyncs, directory fsyncs, renames, unlinks, truncates; not writes or reads).
    pub fn trace(&self) -> Vec<OpRecord> {
        self.inner.trace()
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// Whether this process may mount FUSE filesystems here (root and `/dev/fuse`).
/// Tests print the reason and skip (or fail under `CI=true`) when not.
pub fn available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("mounting a FUSE filesystem needs root".into());
    }
    Ok(())
}
