//! The in-memory filesystem with two states: *live* (what processes see) and
//! *durable* (what survives a power cut). Inode-based: both states are maps
//! from inode number to node, and a cut replaces the live map by the durable
//! one. File data lives in fixed-size chunks shared by `Arc`, so that making a
//! file durable or cutting copies pointers, not bytes.
//!
//! Owns: the durability rules (a file's data and size by its fsync, names by
//! their directory's fsync, a failed fsync forgets the dirty ranges), space
//! accounting. Must never know about FUSE, paths given by the kernel, faults
//! or triggers (the adapter in `mount` decides those) and never does I/O.
//!
//! Rules where the contract is silent:
//! - A directory fsync makes durable, for every inode whose names in that
//!   directory changed, all of that inode's live names: a rename (or link)
//!   across directories becomes durable whole when either directory is
//!   fsynced, as on a journaling filesystem. After a cut a renamed inode
//!   never has both names, nor none because only one side was synced.
//! - A directory fsync that fails changes nothing (the names stay pending).
//! - Metadata (mode, owner, times) becomes durable with the file's fsync; a
//!   name made durable before its inode was fsynced has the live metadata of
//!   that moment and no data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use crate::chunks::{Data, Ranges};

pub(crate) type Ino = u64;
pub(crate) const ROOT: Ino = 1;
const MAX_NAME: usize = 255;
/// Files larger than this are refused (EFBIG) whatever the capacity.
const MAX_FILE: u64 = 1 << 40;

/// Why an operation failed; `mount` maps it to an errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    NoSpace,
    Invalid,
    NameTooLong,
    TooBig,
    NotPermitted,
}

impl Error {
    pub(crate) fn errno(self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Exists => libc::EEXIST,
            Error::NotDir => libc::ENOTDIR,
            Error::IsDir => libc::EISDIR,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::NoSpace => libc::ENOSPC,
            Error::Invalid => libc::EINVAL,
            Error::NameTooLong => libc::ENAMETOOLONG,
            Error::TooBig => libc::EFBIG,
            Error::NotPermitted => libc::EPERM,
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
}

/// What `getattr` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    /// Live names (0: unlinked but open).
    pub nlink: u32,
    pub meta: Meta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission bits only (no file type).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

impl Meta {
    pub(crate) fn new(perm: u16, uid: u32, gid: u32, now: SystemTime) -> Meta {
        Meta {
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }
}

#[derive(Clone, Debug)]
struct File {
    data: Data,
    /// Bytes whose live value may differ from the durable one since the
    /// last fsync (empty in the durable state).
    dirty: Ranges,
    size_dirty: bool,
}

#[derive(Clone, Debug)]
enum Body {
    File(File),
    Dir(BTreeMap<OsString, Ino>),
}

#[derive(Clone, Debug)]
struct Node {
    meta: Meta,
    /// The names of this inode in this state (more than one: hard links).
    names: Vec<(Ino, OsString)>,
    body: Body,
    /// Open handles (live state only): an unlinked open file stays readable.
    open: u32,
}

impl Node {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }

    fn size(&self) -> u64 {
        match &self.body {
            Body::File(f) => f.data.size,
            Body::Dir(_) => 0,
        }
    }

    /// The same inode as a new name would make it durable: no data.
    fn empty_like(&self) -> Node {
        let body = match self.body {
            Body::File(_) => Body::File(File {
                data: Data::default(),
                dirty: Ranges::default(),
                size_dirty: false,
            }),
            Body::Dir(_) => Body::Dir(BTreeMap::new()),
        };
        Node {
            meta: self.meta,
            names: Vec::new(),
            body,
            open: 0,
        }
    }
}

/// The whole filesystem: live and durable states and the space used.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    capacity: u64,
    live: HashMap<Ino, Node>,
    durable: HashMap<Ino, Node>,
    next_ino: Ino,
    /// Sum of the live files' sizes.
    used: u64,
}

fn check_name(name: &OsStr) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(Error::Invalid);
    }
    if b.len() > MAX_NAME {
        return Err(Error::NameTooLong);
    }
    Ok(())
}

impl Model {
    pub(crate) fn new(capacity: u64, now: SystemTime) -> Model {
        let root = Node {
            meta: Meta::new(0o755, 0, 0, now),
            names: Vec::new(),
            body: Body::Dir(BTreeMap::new()),
            open: 0,
        };
        let mut live = HashMap::new();
        live.insert(ROOT, root.clone());
        let mut durable = HashMap::new();
        durable.insert(ROOT, root);
        Model {
            capacity,
            live,
            durable,
            next_ino: ROOT + 1,
            used: 0,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Bytes written (or truncated) and not yet durable, over all files.
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.live
            .values()
            .map(|n| match &n.body {
                Body::File(f) => f.dirty.total(),
                Body::Dir(_) => 0,
            })
            .sum()
    }

    fn node(&self, ino: Ino) -> Result<&Node> {
        self.live.get(&ino).ok_or(Error::NotFound)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node> {
        self.live.get_mut(&ino).ok_or(Error::NotFound)
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<OsString, Ino>> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Error::NotDir),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<OsString, Ino>> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Error::NotDir),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut File> {
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Error::IsDir),
        }
    }

    pub(crate) fn attr(&self, ino: Ino) -> Result<Attr> {
        let n = self.node(ino)?;
        Ok(Attr {
            ino,
            kind: n.kind(),
            size: n.size(),
            nlink: n.names.len() as u32,
            meta: n.meta,
        })
    }

    pub(crate) fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino> {
        self.dir(parent)?.get(name).copied().ok_or(Error::NotFound)
    }

    /// The parent of a directory (the root is its own parent).
    pub(crate) fn parent(&self, ino: Ino) -> Result<Ino> {
        Ok(self.node(ino)?.names.first().map_or(ROOT, |(p, _)| *p))
    }

    /// The live path relative to the root ("" for the root itself; an
    /// unlinked inode gets its last name).
    pub(crate) fn path(&self, ino: Ino) -> String {
        let mut parts = Vec::new();
        let mut cur = ino;
        // Bounded: a directory cannot be its own ancestor, but never loop
        // forever on a broken invariant either.
        for _ in 0..4096 {
            match self.live.get(&cur).and_then(|n| n.names.first()) {
                Some((p, name)) => {
                    parts.push(name.to_string_lossy().into_owned());
                    cur = *p;
                }
                None => break,
            }
        }
        parts.reverse();
        parts.join("/")
    }

    /// The path `name` would have in directory `parent`.
    pub(crate) fn child_path(&self, parent: Ino, name: &OsStr) -> String {
        let p = self.path(parent);
        let n = name.to_string_lossy();
        if p.is_empty() {
            n.into_owned()
        } else {
            format!("{p}/{n}")
        }
    }

    /// Live files whose path contains `p`.
    pub(crate) fn files_matching(&self, p: &str) -> Vec<Ino> {
        self.live
            .iter()
            .filter(|(&ino, n)| n.kind() == Kind::File && self.path(ino).contains(p))
            .map(|(&ino, _)| ino)
            .collect()
    }

    /// Entries of a live directory in name order.
    pub(crate) fn readdir(&self, ino: Ino) -> Result<Vec<(OsString, Ino, Kind)>> {
        Ok(self
            .dir(ino)?
            .iter()
            .map(|(name, &i)| {
                let kind = self.live.get(&i).map_or(Kind::File, Node::kind);
                (name.clone(), i, kind)
            })
            .collect())
    }

    fn insert_new(&mut self, parent: Ino, name: &OsStr, meta: Meta, body: Body) -> Result<Ino> {
        check_name(name)?;
        if self.dir(parent)?.contains_key(name) {
            return Err(Error::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.live.insert(
            ino,
            Node {
                meta,
                names: vec![(parent, name.to_owned())],
                body,
                open: 0,
            },
        );
        let now = meta.mtime;
        let p = self.node_mut(parent)?;
        p.meta.mtime = now;
        p.meta.ctime = now;
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Creates an empty regular file (EEXIST if the name is taken).
    pub(crate) fn create(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> Result<Ino> {
        let body = Body::File(File {
            data: Data::default(),
            dirty: Ranges::default(),
            size_dirty: false,
        });
        self.insert_new(parent, name, meta, body)
    }

    pub(crate) fn mkdir(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> Result<Ino> {
        self.insert_new(parent, name, meta, Body::Dir(BTreeMap::new()))
    }

    pub(crate) fn read(&self, ino: Ino, off: u64, len: usize) -> Result<Vec<u8>> {
        match &self.node(ino)?.body {
            Body::File(f) => Ok(f.data.read(off, len)),
            Body::Dir(_) => Err(Error::IsDir),
        }
    }

    /// Checks that growing the live files by `grow` bytes fits.
    fn reserve(&self, old: u64, new: u64) -> Result<()> {
        if new > MAX_FILE {
            return Err(Error::TooBig);
        }
        if new > old && self.used + (new - old) > self.capacity {
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, ino: Ino, off: u64, data: &[u8], now: SystemTime) -> Result<()> {
        let end = off.checked_add(data.len() as u64).ok_or(Error::TooBig)?;
        let old = self.file_mut(ino)?.data.size;
        let new = old.max(end);
        self.reserve(old, new)?;
        let f = self.file_mut(ino)?;
        f.data.write(off, data);
        f.dirty.add(off, end);
        if new != old {
            // A hole between the old end and the write reads as zeros; the
            // durable state must agree after the fsync.
            f.dirty.add(old, new);
            f.size_dirty = true;
        }
        self.used = self.used + new - old;
        let n = self.node_mut(ino)?;
        n.meta.mtime = now;
        n.meta.ctime = now;
        Ok(())
    }

    /// Truncates or extends a file (zeros).
    pub(crate) fn set_size(&mut self, ino: Ino, size: u64, now: SystemTime) -> Result<()> {
        let old = self.file_mut(ino)?.data.size;
        self.reserve(old, size)?;
        let f = self.file_mut(ino)?;
        if size != old {
            f.data.set_size(size);
            f.dirty.clip(size);
            f.dirty.add(old.min(size), old.max(size));
            f.size_dirty = true;
        }
        self.used = self.used + size - old;
        let n = self.node_mut(ino)?;
        n.meta.mtime = now;
        n.meta.ctime = now;
        Ok(())
    }

    /// Changes metadata (what `setattr` carries besides the size).
    pub(crate) fn set_meta(&mut self, ino: Ino, f: impl FnOnce(&mut Meta)) -> Result<()> {
        f(&mut self.node_mut(ino)?.meta);
        Ok(())
    }

    pub(crate) fn open(&mut self, ino: Ino) -> Result<()> {
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    /// Closes a handle; an unlinked file goes away with its last handle.
    /// Unknown inodes are ignored (a handle from before a cut).
    pub(crate) fn release(&mut self, ino: Ino) {
        if let Some(n) = self.live.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
            self.drop_if_unreferenced(ino);
        }
    }

    fn drop_if_unreferenced(&mut self, ino: Ino) {
        let Some(n) = self.live.get(&ino) else { return };
        if ino == ROOT || !n.names.is_empty() || n.open > 0 {
            return;
        }
        let size = n.size();
        self.live.remove(&ino);
        self.used -= size;
        if self.durable.get(&ino).is_some_and(|d| d.names.is_empty()) {
            self.durable.remove(&ino);
        }
    }

    fn remove_name(&mut self, parent: Ino, name: &OsStr, now: SystemTime) -> Result<Ino> {
        let ino = self.dir_mut(parent)?.remove(name).ok_or(Error::NotFound)?;
        let p = self.node_mut(parent)?;
        p.meta.mtime = now;
        p.meta.ctime = now;
        if let Some(n) = self.live.get_mut(&ino) {
            n.names.retain(|(p, nm)| !(*p == parent && nm == name));
            n.meta.ctime = now;
        }
        Ok(ino)
    }

    pub(crate) fn unlink(&mut self, parent: Ino, name: &OsStr, now: SystemTime) -> Result<()> {
        let ino = self.lookup(parent, name)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(Error::IsDir);
        }
        self.remove_name(parent, name, now)?;
        self.drop_if_unreferenced(ino);
        Ok(())
    }

    pub(crate) fn rmdir(&mut self, parent: Ino, name: &OsStr, now: SystemTime) -> Result<()> {
        let ino = self.lookup(parent, name)?;
        if !self.dir(ino)?.is_empty() {
            return Err(Error::NotEmpty);
        }
        self.remove_name(parent, name, now)?;
        self.drop_if_unreferenced(ino);
        Ok(())
    }

    /// `rename(2)`: replaces the target (a file by a file, an empty directory
    /// by a directory) unless `noreplace`.
    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
        now: SystemTime,
    ) -> Result<()> {
        check_name(new_name)?;
        let src = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        let src_kind = self.node(src)?.kind();
        if let Some(&dst) = self.dir(new_parent)?.get(new_name) {
            if dst == src {
                return Ok(());
            }
            if noreplace {
                return Err(Error::Exists);
            }
            match (src_kind, self.node(dst)?.kind()) {
                (Kind::Dir, Kind::File) => return Err(Error::NotDir),
                (Kind::File, Kind::Dir) => return Err(Error::IsDir),
                (Kind::Dir, Kind::Dir) if !self.dir(dst)?.is_empty() => return Err(Error::NotEmpty),
                _ => {}
            }
        }
        if src_kind == Kind::Dir {
            // A directory cannot move into itself or below.
            let mut cur = new_parent;
            loop {
                if cur == src {
                    return Err(Error::Invalid);
                }
                if cur == ROOT {
                    break;
                }
                cur = self.parent(cur)?;
            }
        }
        self.remove_name(parent, name, now)?;
        let replaced = self.dir_mut(new_parent)?.insert(new_name.to_owned(), src);
        let np = self.node_mut(new_parent)?;
        np.meta.mtime = now;
        np.meta.ctime = now;
        let n = self.node_mut(src)?;
        n.names.push((new_parent, new_name.to_owned()));
        n.meta.ctime = now;
        if let Some(dst) = replaced {
            if let Some(d) = self.live.get_mut(&dst) {
                d.names.retain(|(p, nm)| !(*p == new_parent && nm == new_name));
            }
            self.drop_if_unreferenced(dst);
        }
        Ok(())
    }

    /// `link(2)`: another name for a file.
    pub(crate) fn link(&mut self, ino: Ino, parent: Ino, name: &OsStr, now: SystemTime) -> Result<()> {
        check_name(name)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(Error::NotPermitted);
        }
        if self.dir(parent)?.contains_key(name) {
            return Err(Error::Exists);
        }
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        let p = self.node_mut(parent)?;
        p.meta.mtime = now;
        p.meta.ctime = now;
        let n = self.node_mut(ino)?;
        n.names.push((parent, name.to_owned()));
        n.meta.ctime = now;
        Ok(())
    }

    fn ensure_durable(&mut self, ino: Ino) {
        if !self.durable.contains_key(&ino) {
            if let Some(n) = self.live.get(&ino) {
                let empty = n.empty_like();
                self.durable.insert(ino, empty);
            }
        }
    }

    /// `fsync`/`fdatasync` of a file: its dirty ranges, size and metadata
    /// become durable. A directory is synced as by `fsync_dir`.
    pub(crate) fn fsync(&mut self, ino: Ino) -> Result<()> {
        if self.node(ino)?.kind() == Kind::Dir {
            return self.fsync_dir(ino);
        }
        self.ensure_durable(ino);
        let live = self.live.get_mut(&ino).ok_or(Error::NotFound)?;
        let meta = live.meta;
        let Body::File(lf) = &mut live.body else {
            return Err(Error::IsDir);
        };
        let ranges = std::mem::take(&mut lf.dirty);
        let size_dirty = std::mem::take(&mut lf.size_dirty);
        let d = self.durable.get_mut(&ino).ok_or(Error::NotFound)?;
        d.meta = meta;
        let Body::File(df) = &mut d.body else {
            return Err(Error::IsDir);
        };
        let mut max_end = 0;
        for (s, e) in ranges.iter() {
            df.data.copy_from(&lf.data, s, e);
            max_end = max_end.max(e);
        }
        if size_dirty {
            df.data.set_size(lf.data.size);
        }
        if max_end > df.data.size {
            // Bytes copied past a durable size whose change was forgotten
            // by a failed fsync: keep the zeros-past-size invariant.
            let size = df.data.size;
            df.data.size = max_end;
            df.data.set_size(size);
        }
        Ok(())
    }

    /// A failed fsync of a file: like Linux after a writeback error, its
    /// pending changes are forgotten (never made durable by a later fsync)
    /// while the live state keeps them.
    pub(crate) fn fsync_failed(&mut self, ino: Ino) -> Result<()> {
        if let Body::File(f) = &mut self.node_mut(ino)?.body {
            f.dirty = Ranges::default();
            f.size_dirty = false;
        }
        Ok(())
    }

    /// `fsync` of a directory: its live names become its durable names, and
    /// every inode whose names in it changed gets all its durable names from
    /// its live ones (a rename or link elsewhere is made durable whole).
    pub(crate) fn fsync_dir(&mut self, dir: Ino) -> Result<()> {
        let live_entries = self.dir(dir)?.clone();
        self.ensure_durable(dir);
        let old = match &self.durable[&dir].body {
            Body::Dir(d) => d.clone(),
            Body::File(_) => return Err(Error::NotDir),
        };
        let mut affected: Vec<Ino> = old
            .iter()
            .filter(|(name, ino)| live_entries.get(*name) != Some(ino))
            .chain(live_entries.iter().filter(|(name, ino)| old.get(*name) != Some(ino)))
            .map(|(_, &ino)| ino)
            .collect();
        affected.sort_unstable();
        affected.dedup();
        let mut touched = affected.clone();
        for &ino in &affected {
            self.sync_names(ino, &mut touched);
        }
        for ino in touched {
            if !self.live.contains_key(&ino) && self.durable.get(&ino).is_some_and(|d| d.names.is_empty()) {
                self.durable.remove(&ino);
            }
        }
        Ok(())
    }

    /// Makes the durable names of `ino` its live names.
    fn sync_names(&mut self, ino: Ino, touched: &mut Vec<Ino>) {
        let live_names = self.live.get(&ino).map(|n| n.names.clone()).unwrap_or_default();
        let durable_names = self.durable.get(&ino).map(|n| n.names.clone()).unwrap_or_default();
        for (p, n) in &durable_names {
            if !live_names.contains(&(*p, n.clone())) {
                self.durable_unlink(*p, n, ino);
            }
        }
        for (p, n) in &live_names {
            if !durable_names.contains(&(*p, n.clone())) {
                self.durable_link(*p, n, ino, touched);
            }
        }
    }

    fn durable_unlink(&mut self, dir: Ino, name: &OsStr, ino: Ino) {
        if let Some(Node { body: Body::Dir(d), .. }) = self.durable.get_mut(&dir) {
            if d.get(name) == Some(&ino) {
                d.remove(name);
            }
        }
        if let Some(n) = self.durable.get_mut(&ino) {
            n.names.retain(|(p, nm)| !(*p == dir && nm == name));
        }
    }

    /// Gives `ino` the durable name `dir/name`; whatever that name durably
    /// held before loses it.
    fn durable_link(&mut self, dir: Ino, name: &OsStr, ino: Ino, touched: &mut Vec<Ino>) {
        self.ensure_durable(dir);
        self.ensure_durable(ino);
        let replaced = match self.durable.get_mut(&dir) {
            Some(Node { body: Body::Dir(d), .. }) => d.insert(name.to_owned(), ino),
            _ => return,
        };
        if let Some(prev) = replaced.filter(|&p| p != ino) {
            if let Some(n) = self.durable.get_mut(&prev) {
                n.names.retain(|(p, nm)| !(*p == dir && nm == name));
            }
            touched.push(prev);
        }
        if let Some(n) = self.durable.get_mut(&ino) {
            if !n.names.iter().any(|(p, nm)| *p == dir && nm == name) {
                n.names.push((dir, name.to_owned()));
            }
        }
    }

    /// The power cut: live := durable. Inodes not reachable from the root
    /// in the durable state are gone for good.
    pub(crate) fn cut(&mut self) {
        let mut reachable = HashSet::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(Node { body: Body::Dir(d), .. }) = self.durable.get(&ino) {
                stack.extend(d.values().copied());
            }
        }
        self.durable.retain(|ino, _| reachable.contains(ino));
        self.live = self.durable.clone();
        self.used = self.live.values().map(Node::size).sum();
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
