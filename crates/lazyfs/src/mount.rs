//! The FUSE adapter (`fuser::Filesystem` over the model behind a mutex), the
//! shared control handle behind `LazyFs`, and `Mount`, which unmounts on drop.
//!
//! Owns: translating kernel requests into model operations gated by
//! `Control` (power, triggers, faults), answering slow fsyncs from their own
//! threads, and unmounting even while killed processes still hold the mount.
//! Must never block a request on another one except through the one lock,
//! and never hold that lock while sleeping.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, SessionACL, SessionUnmounter, TimeOrNow, WriteFlags,
};

use crate::control::Control;
use crate::model::{self, Ino, Kind, Meta, Model};
use crate::{Match, OpKind, OpRecord, Stats, When};

/// Attribute and entry cache lifetime in the kernel: short, and a cut is
/// followed by a fresh mount anyway.
const TTL: Duration = Duration::from_secs(1);
const BLOCK: u64 = 4096;

pub(crate) struct Shared {
    ctl: Mutex<Control>,
    next_fh: AtomicU64,
    /// The kernel connection of every live mount, by mount id: to drop
    /// cached pages that must now fail to read.
    notifiers: Mutex<Vec<(u64, Notifier)>>,
    next_mount: AtomicU64,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn file_attr(a: model::Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.meta.atime,
        mtime: a.meta.mtime,
        ctime: a.meta.ctime,
        crtime: a.meta.ctime,
        kind: file_type(a.kind),
        perm: a.meta.perm,
        nlink: if a.kind == Kind::Dir { 2 } else { a.nlink },
        uid: a.meta.uid,
        gid: a.meta.gid,
        rdev: 0,
        blksize: BLOCK as u32,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

/// Runs `f` on the model if `Control` lets operation `op` on `paths`
/// happen; an injected fault is handed to `on_fault` instead.
fn gated<T>(
    c: &mut Control,
    op: OpKind,
    paths: &[&str],
    on_fault: impl FnOnce(&mut Model),
    f: impl FnOnce(&mut Model) -> model::Result<T>,
) -> Result<T, i32> {
    let v = c.begin(op, paths, now_us())?;
    let r = match v.fault {
        Some(e) => {
            on_fault(&mut c.model);
            Err(e)
        }
        None => f(&mut c.model).map_err(model::Error::errno),
    };
    c.finish(v, now_us());
    r
}

fn no_fault(_: &mut Model) {}

impl Shared {
    pub(crate) fn new(capacity: u64) -> Arc<Shared> {
        Arc::new(Shared {
            ctl: Mutex::new(Control::new(Model::new(capacity, SystemTime::now()))),
            next_fh: AtomicU64::new(1),
            notifiers: Mutex::new(Vec::new()),
            next_mount: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // A panic in one request must not wedge the filesystem for the test.
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, if the power is on.
    fn powered(&self) -> Result<MutexGuard<'_, Control>, Errno> {
        let c = self.lock();
        if c.powered() {
            Ok(c)
        } else {
            Err(Errno::EIO)
        }
    }

    pub(crate) fn cut(&self) {
        self.lock().cut(now_us());
        tracing::info!("lazyfs: power cut");
    }
    pub(crate) fn cut_at(&self, at: Match, nth: u64, when: When) {
        self.lock().cut_at(at, nth, when)
    }
    pub(crate) fn cut_time_us(&self) -> Option<i64> {
        self.lock().cut_time_us()
    }
    pub(crate) fn power_on(&self) {
        self.lock().power_on();
        tracing::info!("lazyfs: power on");
    }
    pub(crate) fn fail_fsync(&self, p: &str, count: u64) {
        self.lock().fail_fsync(p, count);
        tracing::info!(path_contains = p, count, "lazyfs: fsyncs will fail with EIO");
    }
    pub(crate) fn slow_fsync(&self, d: Duration) {
        self.lock().slow_fsync(d);
        tracing::info!(delay_ms = d.as_millis() as u64, "lazyfs: fsyncs are slow");
    }
    pub(crate) fn enospc(&self, p: &str) {
        self.lock().enospc(p);
        tracing::info!(path_contains = p, "lazyfs: writes and creates fail with ENOSPC");
    }
    pub(crate) fn fail_reads(&self, p: &str) {
        let inodes = {
            let mut c = self.lock();
            c.fail_reads(p);
            c.model.files_matching(p)
        };
        // Pages already in the kernel's cache would still be served without
        // asking us: drop them (without holding the lock, as the kernel may
        // wait for reads in progress).
        let notifiers = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, n) in notifiers.iter() {
            for &ino in &inodes {
                // ENOENT: this kernel never saw the inode, nothing cached.
                let _ = n.inval_inode(INodeNo(ino), 0, 0);
            }
        }
        tracing::info!(path_contains = p, "lazyfs: reads fail with EIO");
    }
    pub(crate) fn clear_faults(&self) {
        self.lock().clear_faults();
        tracing::info!("lazyfs: faults cleared");
    }
    pub(crate) fn trace(&self) -> Vec<OpRecord> {
        self.lock().trace()
    }
    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats()
    }

    /// The fsync of a file or directory, as it takes effect.
    fn fsync(&self, ino: Ino) -> Result<(), i32> {
        let mut c = self.lock();
        let kind = c.model.attr(ino).map_err(model::Error::errno)?.kind;
        let path = c.model.path(ino);
        let (op, dir) = match kind {
            Kind::Dir => (OpKind::FsyncDir, true),
            Kind::File => (OpKind::Fsync, false),
        };
        let r = gated(
            &mut c,
            op,
            &[&path],
            |m| {
                if !dir {
                    let _ = m.fsync_failed(ino);
                }
            },
            |m| if dir { m.fsync_dir(ino) } else { m.fsync(ino) },
        );
        if let Err(e) = r {
            if c.powered() && e == libc::EIO {
                tracing::info!(path, "lazyfs: fsync failed (injected EIO)");
            }
        }
        r
    }
}

struct Fs {
    shared: Arc<Shared>,
}

impl Fs {
    fn answer_fsync(&self, ino: Ino, reply: ReplyEmpty) {
        let delay = self.shared.lock().fsync_delay();
        if delay.is_zero() {
            match self.shared.fsync(ino) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
            return;
        }
        // A slow disk: the fsync takes effect and answers later, from its own
        // thread, while the session goes on serving other requests.
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            match shared.fsync(ino) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn entry(&self, r: Result<Ino, i32>, c: &Control, reply: ReplyEntry) {
        match r.and_then(|i| c.model.attr(i).map_err(model::Error::errno)) {
            Ok(a) => reply.entry(&TTL, &file_attr(a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

macro_rules! powered_or {
    ($self:ident, $reply:ident) => {
        match $self.shared.powered() {
            Ok(c) => c,
            Err(e) => return $reply.error(e),
        }
    };
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let c = powered_or!(self, reply);
        let r = c.model.lookup(parent.0, name).map_err(model::Error::errno);
        self.entry(r, &c, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let c = powered_or!(self, reply);
        match c.model.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e.errno())),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut c = powered_or!(self, reply);
        let ino = ino.0;
        let now = SystemTime::now();
        if let Some(size) = size {
            let path = c.model.path(ino);
            let r = gated(&mut c, OpKind::Truncate, &[&path], no_fault, |m| {
                m.set_size(ino, size, now)
            });
            if let Err(e) = r {
                return reply.error(errno(e));
            }
        }
        let at = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => now,
        };
        let r = c.model.set_meta(ino, |m: &mut Meta| {
            if let Some(mode) = mode {
                m.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = uid {
                m.uid = uid;
            }
            if let Some(gid) = gid {
                m.gid = gid;
            }
            if let Some(t) = atime {
                m.atime = at(t);
            }
            if let Some(t) = mtime {
                m.mtime = at(t);
            }
            if mode.is_some() || uid.is_some() || gid.is_some() {
                m.ctime = now;
            }
        });
        match r.and_then(|()| c.model.attr(ino)) {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e.errno())),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut c = powered_or!(self, reply);
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let meta = Meta::new((mode & !umask & 0o7777) as u16, req.uid(), req.gid(), SystemTime::now());
        let path = c.model.child_path(parent.0, name);
        let r = gated(&mut c, OpKind::Create, &[&path], no_fault, |m| {
            m.create(parent.0, name, meta)
        });
        self.entry(r, &c, reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut c = powered_or!(self, reply);
        let meta = Meta::new((mode & !umask & 0o7777) as u16, req.uid(), req.gid(), SystemTime::now());
        let path = c.model.child_path(parent.0, name);
        let r = gated(&mut c, OpKind::Mkdir, &[&path], no_fault, |m| {
            m.mkdir(parent.0, name, meta)
        });
        self.entry(r, &c, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut c = powered_or!(self, reply);
        let path = c.model.child_path(parent.0, name);
        let now = SystemTime::now();
        match gated(&mut c, OpKind::Unlink, &[&path], no_fault, |m| {
            m.unlink(parent.0, name, now)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut c = powered_or!(self, reply);
        let path = c.model.child_path(parent.0, name);
        let now = SystemTime::now();
        match gated(&mut c, OpKind::Unlink, &[&path], no_fault, |m| {
            m.rmdir(parent.0, name, now)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut c = powered_or!(self, reply);
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let from = c.model.child_path(parent.0, name);
        let to = c.model.child_path(newparent.0, newname);
        let now = SystemTime::now();
        let r = gated(&mut c, OpKind::Rename, &[&from, &to], no_fault, |m| {
            m.rename(parent.0, name, newparent.0, newname, noreplace, now)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let mut c = powered_or!(self, reply);
        let path = c.model.child_path(newparent.0, newname);
        let now = SystemTime::now();
        let r = gated(&mut c, OpKind::Create, &[&path], no_fault, |m| {
            m.link(ino.0, newparent.0, newname, now).map(|()| ino.0)
        });
        self.entry(r, &c, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut c = powered_or!(self, reply);
        match c.model.open(ino.0) {
            Ok(()) => {
                let fh = self.shared.next_fh.fetch_add(1, Ordering::Relaxed);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(e.errno())),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut c = powered_or!(self, reply);
        let existing = c.model.lookup(parent.0, name).ok();
        let r = match existing {
            Some(_) if flags & libc::O_EXCL != 0 => Err(libc::EEXIST),
            Some(ino) => Ok(ino),
            None => {
                let meta = Meta::new((mode & !umask & 0o7777) as u16, req.uid(), req.gid(), SystemTime::now());
                let path = c.model.child_path(parent.0, name);
                gated(&mut c, OpKind::Create, &[&path], no_fault, |m| {
                    m.create(parent.0, name, meta)
                })
            }
        };
        let r = r.and_then(|ino| {
            c.model.open(ino).map_err(model::Error::errno)?;
            c.model.attr(ino).map_err(model::Error::errno)
        });
        match r {
            Ok(a) => {
                let fh = self.shared.next_fh.fetch_add(1, Ordering::Relaxed);
                reply.created(&TTL, &file_attr(a), Generation(0), FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut c = powered_or!(self, reply);
        let path = c.model.path(ino.0);
        match gated(&mut c, OpKind::Read, &[&path], no_fault, |m| {
            m.read(ino.0, offset, size as usize)
        }) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut c = powered_or!(self, reply);
        let path = c.model.path(ino.0);
        let now = SystemTime::now();
        match gated(&mut c, OpKind::Write, &[&path], no_fault, |m| {
            m.write(ino.0, offset, data, now)
        }) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lo: LockOwner, reply: ReplyEmpty) {
        let _c = powered_or!(self, reply);
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Even after a cut: a handle closing is not an operation on the disk.
        self.shared.lock().model.release(ino.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.answer_fsync(ino.0, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let c = powered_or!(self, reply);
        match c.model.readdir(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e.errno())),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let c = powered_or!(self, reply);
        let (entries, parent) = match (c.model.readdir(ino.0), c.model.parent(ino.0)) {
            (Ok(e), Ok(p)) => (e, p),
            (Err(e), _) | (_, Err(e)) => return reply.error(errno(e.errno())),
        };
        drop(c);
        let dots = [(".".into(), ino.0, Kind::Dir), ("..".into(), parent, Kind::Dir)];
        for (i, (name, child, kind)) in dots.into_iter().chain(entries).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, file_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.answer_fsync(ino.0, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let c = powered_or!(self, reply);
        let blocks = c.model.capacity() / BLOCK;
        let free = c.model.capacity().saturating_sub(c.model.used()) / BLOCK;
        reply.statfs(blocks, free, free, 1 << 20, 1 << 20, BLOCK as u32, 255, BLOCK as u32);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let c = powered_or!(self, reply);
        match c.model.attr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(e.errno())),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut c = powered_or!(self, reply);
        if mode == libc::FALLOC_FL_KEEP_SIZE {
            // Space reserved past the end changes neither the size nor a
            // byte: there is nothing to model, or to lose in a cut.
            return reply.ok();
        }
        if mode != 0 {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let ino = ino.0;
        let path = c.model.path(ino);
        let now = SystemTime::now();
        let r = gated(&mut c, OpKind::Write, &[&path], no_fault, |m| {
            let size = m.attr(ino)?.size;
            let end = offset.saturating_add(length);
            if end > size {
                m.set_size(ino, end, now)?;
            }
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// A mounted lazy filesystem; dropping it unmounts (lazily if processes
/// still hold it) and ends the session thread.
pub struct Mount {
    shared: Arc<Shared>,
    id: u64,
    dir: PathBuf,
    /// The mount's device number: names its FUSE connection for an abort.
    dev: u64,
    unmounter: Option<SessionUnmounter>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Mount {
    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

pub(crate) fn mount(s: &Arc<Shared>, dir: &Path) -> io::Result<Mount> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("lazyfs".into()),
        MountOption::Subtype("lazyfs".into()),
    ];
    config.acl = SessionACL::All;
    // Two readers of /dev/fuse: a long read or write does not hold up a
    // lookup (slow fsyncs answer from their own threads anyway).
    config.n_threads = Some(2);
    let fs = Fs { shared: s.clone() };
    let mut session = fuser::Session::new(fs, &dir, &config)?;
    let unmounter = session.unmount_callable();
    let id = s.next_mount.fetch_add(1, Ordering::Relaxed);
    s.notifiers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, session.notifier()));
    let thread = std::thread::Builder::new()
        .name("lazyfs".into())
        .spawn(move || session.run())?;
    let mut m = Mount {
        shared: s.clone(),
        id,
        dir,
        dev: 0,
        unmounter: Some(unmounter),
        thread: Some(thread),
    };
    m.dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&m.dir)?);
    tracing::info!(dir = %m.dir.display(), "lazyfs: mounted");
    Ok(m)
}

fn wait_finished(t: &JoinHandle<io::Result<()>>, limit: Duration) -> bool {
    let start = Instant::now();
    while !t.is_finished() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Ends the FUSE connection whatever still holds it (fusectl's `abort`), so
/// that the session thread returns.
fn abort_connection(dev: u64) {
    let conns = Path::new("/sys/fs/fuse/connections");
    let abort = conns.join(dev.to_string()).join("abort");
    if !abort.exists() {
        let src = c"fusectl";
        let target = c"/sys/fs/fuse/connections";
        // SAFETY: valid NUL-terminated strings; no data argument.
        unsafe {
            libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null());
        }
    }
    if let Err(e) = std::fs::write(&abort, "1") {
        tracing::warn!(error = %e, path = %abort.display(), "lazyfs: cannot abort the FUSE connection");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.shared
            .notifiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| *id != self.id);
        let busy = match self.unmounter.take().map(|mut u| u.unmount()) {
            Some(Err(e)) => {
                tracing::info!(dir = %self.dir.display(), error = %e, "lazyfs: mount busy, detaching");
                true
            }
            _ => false,
        };
        if busy {
            use std::os::unix::ffi::OsStrExt;
            if let Ok(c) = std::ffi::CString::new(self.dir.as_os_str().as_bytes()) {
                // SAFETY: a valid NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let Some(t) = self.thread.take() else { return };
        if !wait_finished(&t, Duration::from_secs(1)) {
            abort_connection(self.dev);
            if !wait_finished(&t, Duration::from_secs(5)) {
                tracing::warn!(dir = %self.dir.display(), "lazyfs: session thread did not end; leaving it");
                return;
            }
        }
        if let Err(e) = t
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("session thread panicked")))
        {
            tracing::warn!(error = %e, "lazyfs: session ended with an error");
        }
    }
}
