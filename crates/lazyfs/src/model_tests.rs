//! Tests of the durability rules, one rule at a time, and a property test
//! against a byte-level reference model.

use super::*;
use crate::chunks::CHUNK;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

fn now() -> SystemTime {
    UNIX_EPOCH
}

fn meta() -> Meta {
    Meta::new(0o644, 0, 0, now())
}

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn model() -> Model {
    Model::new(1 << 30, now())
}

/// Reads a whole file by path after a cut; None when the name is gone.
fn content(m: &Model, path: &str) -> Option<Vec<u8>> {
    let mut ino = ROOT;
    for part in path.split('/') {
        ino = m.lookup(ino, n(part)).ok()?;
    }
    let size = m.attr(ino).ok()?.size;
    Some(m.read(ino, 0, size as usize).unwrap())
}

#[test]
fn new_file_is_not_durable_until_its_directory_is_fsynced() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.write(f, 0, b"hello", now()).unwrap();
    m.fsync(f).unwrap();
    let mut cut = m.clone();
    cut.cut();
    assert_eq!(content(&cut, "a"), None, "name not durable without a dir fsync");

    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "a").as_deref(), Some(&b"hello"[..]));
}

#[test]
fn a_name_synced_before_its_data_appears_empty() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.write(f, 0, b"hello", now()).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "a").as_deref(), Some(&b""[..]));
}

#[test]
fn data_is_not_durable_until_the_file_is_fsynced() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.write(f, 0, b"one", now()).unwrap();
    m.fsync(f).unwrap();
    m.write(f, 3, b"two", now()).unwrap();
    m.write(f, 0, b"ONE", now()).unwrap();
    assert_eq!(m.read(f, 0, 100).unwrap(), b"ONEtwo");
    assert_eq!(m.unsynced_bytes(), 6);
    m.cut();
    assert_eq!(content(&m, "a").as_deref(), Some(&b"one"[..]));
    assert_eq!(m.unsynced_bytes(), 0);
}

#[test]
fn a_failed_fsync_forgets_the_writes_it_should_have_persisted() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.write(f, 0, b"aaaa", now()).unwrap();
    m.fsync(f).unwrap();
    m.write(f, 0, b"bb", now()).unwrap();
    m.write(f, 4, b"cccc", now()).unwrap();
    m.fsync_failed(f).unwrap();
    // Still readable from memory...
    assert_eq!(m.read(f, 0, 100).unwrap(), b"bbaacccc");
    // ...and a later successful fsync persists only what was written again.
    m.write(f, 1, b"d", now()).unwrap();
    m.fsync(f).unwrap();
    m.cut();
    assert_eq!(content(&m, "a").as_deref(), Some(&b"adaa"[..]));
}

#[test]
fn truncate_is_durable_with_the_fsync_and_reveals_zeros() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.write(f, 0, &[7; 100], now()).unwrap();
    m.fsync(f).unwrap();
    m.set_size(f, 10, now()).unwrap();
    let mut before = m.clone();
    before.cut();
    assert_eq!(content(&before, "a").unwrap(), vec![7; 100]);
    m.set_size(f, 50, now()).unwrap();
    m.fsync(f).unwrap();
    m.cut();
    let mut want = vec![7; 10];
    want.resize(50, 0);
    assert_eq!(content(&m, "a").unwrap(), want);
}

#[test]
fn a_hole_after_a_forgotten_truncate_is_durable_as_zeros() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.write(f, 0, &[7; 100], now()).unwrap();
    m.fsync(f).unwrap();
    m.set_size(f, 10, now()).unwrap();
    m.fsync_failed(f).unwrap();
    // The durable file still has 100 bytes of 7; the write leaves a hole
    // over them that must read as zeros once durable.
    m.write(f, 50, b"x", now()).unwrap();
    m.fsync(f).unwrap();
    m.cut();
    let mut want = vec![7; 10];
    want.resize(50, 0);
    want.push(b'x');
    assert_eq!(content(&m, "a").unwrap(), want);
}

#[test]
fn rename_is_durable_with_the_directory_fsync_and_replaces_the_target() {
    let mut m = model();
    let a = m.create(ROOT, n("a"), meta()).unwrap();
    let b = m.create(ROOT, n("b"), meta()).unwrap();
    m.write(a, 0, b"new", now()).unwrap();
    m.write(b, 0, b"old", now()).unwrap();
    m.fsync(a).unwrap();
    m.fsync(b).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.rename(ROOT, n("a"), ROOT, n("b"), false, now()).unwrap();
    assert_eq!(m.lookup(ROOT, n("a")), Err(Error::NotFound));
    let mut before = m.clone();
    before.cut();
    assert_eq!(content(&before, "a").as_deref(), Some(&b"new"[..]));
    assert_eq!(content(&before, "b").as_deref(), Some(&b"old"[..]));
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "a"), None);
    assert_eq!(content(&m, "b").as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_rename_across_directories_is_durable_whole_with_either_directory() {
    for sync_source in [false, true] {
        let mut m = model();
        let d1 = m.mkdir(ROOT, n("d1"), meta()).unwrap();
        let d2 = m.mkdir(ROOT, n("d2"), meta()).unwrap();
        let f = m.create(d1, n("f"), meta()).unwrap();
        m.write(f, 0, b"x", now()).unwrap();
        m.fsync(f).unwrap();
        m.fsync_dir(d1).unwrap();
        m.fsync_dir(d2).unwrap();
        m.fsync_dir(ROOT).unwrap();
        m.rename(d1, n("f"), d2, n("g"), false, now()).unwrap();
        m.fsync_dir(if sync_source { d1 } else { d2 }).unwrap();
        m.cut();
        assert_eq!(content(&m, "d1/f"), None, "sync_source={sync_source}");
        assert_eq!(content(&m, "d2/g").as_deref(), Some(&b"x"[..]));
    }
}

#[test]
fn a_renamed_directory_takes_its_durable_entries_along() {
    let mut m = model();
    let a = m.mkdir(ROOT, n("a"), meta()).unwrap();
    let f = m.create(a, n("f"), meta()).unwrap();
    m.write(f, 0, b"in a", now()).unwrap();
    m.fsync(f).unwrap();
    m.fsync_dir(a).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.rename(ROOT, n("a"), ROOT, n("b"), false, now()).unwrap();
    assert_eq!(m.path(f), "b/f");
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "a/f"), None);
    assert_eq!(content(&m, "b/f").as_deref(), Some(&b"in a"[..]));
}

#[test]
fn a_rename_over_a_durable_file_in_another_directory() {
    let mut m = model();
    let d = m.mkdir(ROOT, n("d"), meta()).unwrap();
    let new = m.create(ROOT, n("new"), meta()).unwrap();
    let old = m.create(d, n("x"), meta()).unwrap();
    m.write(new, 0, b"new", now()).unwrap();
    m.write(old, 0, b"old", now()).unwrap();
    for i in [new, old, d, ROOT] {
        m.fsync(i).unwrap();
    }
    m.rename(ROOT, n("new"), d, n("x"), false, now()).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "new"), None);
    assert_eq!(content(&m, "d/x").as_deref(), Some(&b"new"[..]));
    assert_eq!(m.live.len(), 3, "the replaced inode is gone: {:?}", m.live.keys());
}

#[test]
fn a_hard_link_is_durable_with_its_directory_and_outlives_the_other_name() {
    // How Tandem writes its evidence key: write a temporary, fsync, link
    // to the final name, unlink the temporary, fsync the directory.
    let mut m = model();
    let tmp = m.create(ROOT, n(".key.tmp"), meta()).unwrap();
    m.write(tmp, 0, b"secret", now()).unwrap();
    m.fsync(tmp).unwrap();
    m.link(tmp, ROOT, n("key"), now()).unwrap();
    assert_eq!(m.attr(tmp).unwrap().nlink, 2);
    assert_eq!(m.link(tmp, ROOT, n("key"), now()), Err(Error::Exists));
    let mut before = m.clone();
    before.cut();
    assert_eq!(content(&before, "key"), None, "the link was not synced");
    m.unlink(ROOT, n(".key.tmp"), now()).unwrap();
    assert_eq!(m.attr(tmp).unwrap().nlink, 1);
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "key").as_deref(), Some(&b"secret"[..]));
    assert_eq!(content(&m, ".key.tmp"), None);

    let d = m.mkdir(ROOT, n("d"), meta()).unwrap();
    assert_eq!(m.link(d, ROOT, n("d2"), now()), Err(Error::NotPermitted));
}

#[test]
fn both_links_survive_when_both_were_synced() {
    let mut m = model();
    let d = m.mkdir(ROOT, n("d"), meta()).unwrap();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.write(f, 0, b"x", now()).unwrap();
    m.fsync(f).unwrap();
    m.link(f, d, n("b"), now()).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "a").as_deref(), Some(&b"x"[..]));
    assert_eq!(content(&m, "d/b").as_deref(), Some(&b"x"[..]));
    let a = m.lookup(ROOT, n("a")).unwrap();
    assert_eq!(m.attr(a).unwrap().nlink, 2);
    m.unlink(ROOT, n("a"), now()).unwrap();
    assert_eq!(content(&m, "d/b").as_deref(), Some(&b"x"[..]));
}

#[test]
fn unlink_is_durable_with_the_directory_fsync() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.write(f, 0, b"x", now()).unwrap();
    m.fsync(f).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.unlink(ROOT, n("a"), now()).unwrap();
    let mut before = m.clone();
    before.cut();
    assert_eq!(content(&before, "a").as_deref(), Some(&b"x"[..]));
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "a"), None);
    assert!(m.durable.len() == 1 && m.live.len() == 1, "only the root is left");
}

#[test]
fn mkdir_is_durable_with_its_parent_and_its_entries_with_itself() {
    let mut m = model();
    let d = m.mkdir(ROOT, n("d"), meta()).unwrap();
    let f = m.create(d, n("f"), meta()).unwrap();
    m.fsync(f).unwrap();
    m.fsync_dir(d).unwrap();
    let mut before = m.clone();
    before.cut();
    assert_eq!(before.lookup(ROOT, n("d")), Err(Error::NotFound));
    m.fsync_dir(ROOT).unwrap();
    m.cut();
    assert_eq!(content(&m, "d/f").as_deref(), Some(&b""[..]));
}

#[test]
fn an_unlinked_open_file_stays_readable_until_released() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.open(f).unwrap();
    m.write(f, 0, b"abc", now()).unwrap();
    m.unlink(ROOT, n("a"), now()).unwrap();
    assert_eq!(m.read(f, 0, 10).unwrap(), b"abc");
    assert_eq!(m.used(), 3);
    m.release(f);
    assert_eq!(m.read(f, 0, 10), Err(Error::NotFound));
    assert_eq!(m.used(), 0);
}

#[test]
fn namespace_errors() {
    let mut m = model();
    let d = m.mkdir(ROOT, n("d"), meta()).unwrap();
    m.create(d, n("f"), meta()).unwrap();
    m.create(ROOT, n("g"), meta()).unwrap();
    assert_eq!(m.create(ROOT, n("g"), meta()), Err(Error::Exists));
    assert_eq!(m.rmdir(ROOT, n("d"), now()), Err(Error::NotEmpty));
    assert_eq!(m.unlink(ROOT, n("d"), now()), Err(Error::IsDir));
    assert_eq!(m.rmdir(ROOT, n("g"), now()), Err(Error::NotDir));
    assert_eq!(m.rename(ROOT, n("d"), d, n("x"), false, now()), Err(Error::Invalid));
    assert_eq!(m.rename(ROOT, n("g"), ROOT, n("d"), false, now()), Err(Error::IsDir));
    assert_eq!(m.rename(ROOT, n("d"), ROOT, n("g"), false, now()), Err(Error::NotDir));
    assert_eq!(m.rename(ROOT, n("g"), d, n("f"), true, now()), Err(Error::Exists));
    assert_eq!(m.create(ROOT, n("a/b"), meta()), Err(Error::Invalid));
    assert_eq!(
        m.create(ROOT, &OsString::from("x".repeat(256)), meta()),
        Err(Error::NameTooLong)
    );
    assert_eq!(m.path(m.lookup(d, n("f")).unwrap()), "d/f");
}

#[test]
fn capacity_is_enforced_on_the_live_bytes() {
    let mut m = Model::new(100, now());
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.write(f, 0, &[1; 60], now()).unwrap();
    assert_eq!(m.write(f, 60, &[1; 41], now()), Err(Error::NoSpace));
    assert_eq!(m.set_size(f, 101, now()), Err(Error::NoSpace));
    m.write(f, 0, &[2; 100], now()).unwrap();
    assert_eq!(m.used(), 100);
    m.set_size(f, 0, now()).unwrap();
    assert_eq!(m.used(), 0);
}

#[test]
fn fsync_shares_whole_chunks_instead_of_copying() {
    let mut m = model();
    let f = m.create(ROOT, n("a"), meta()).unwrap();
    m.write(f, 0, &vec![5; 3 * CHUNK], now()).unwrap();
    m.fsync(f).unwrap();
    let (Body::File(l), Body::File(d)) = (&m.live[&f].body, &m.durable[&f].body) else {
        panic!("not files");
    };
    for i in 0..3 {
        let (a, b) = (l.data.chunks[i].as_ref().unwrap(), d.data.chunks[i].as_ref().unwrap());
        assert!(Arc::ptr_eq(a, b), "chunk {i} copied");
    }
}

#[test]
fn ranges_merge() {
    let mut r = Ranges::default();
    r.add(10, 20);
    r.add(30, 40);
    r.add(20, 30);
    r.add(5, 6);
    r.add(0, 0);
    assert_eq!(r.0, vec![(5, 6), (10, 40)]);
    r.clip(15);
    assert_eq!(r.0, vec![(5, 6), (10, 15)]);
    assert_eq!(r.total(), 6);
}

mod prop {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Six names: three in the root, three in `d` (made durable first).
    const SLOTS: [&str; 6] = ["a", "b", "c", "d/a", "d/b", "d/c"];
    const DIRS: [&str; 2] = ["", "d"];

    fn dir_of(slot: usize) -> usize {
        slot / 3
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(usize),
        Write(usize, u64, usize, u8),
        Truncate(usize, u64),
        Fsync(usize),
        FsyncFails(usize),
        FsyncDir(usize),
        Rename(usize, usize),
        Link(usize, usize),
        Unlink(usize),
        Cut,
    }

    fn op() -> impl Strategy<Value = Op> {
        let slot = 0..SLOTS.len();
        // Offsets and sizes that cross chunk boundaries.
        let off = prop_oneof![
            0..300u64,
            (CHUNK as u64 - 200)..(CHUNK as u64 + 200),
            0..(3 * CHUNK as u64)
        ];
        prop_oneof![
            2 => slot.clone().prop_map(Op::Create),
            4 => (
                slot.clone(),
                off.clone(),
                prop_oneof![1..300usize, 1..(2 * CHUNK)],
                any::<u8>()
            )
                .prop_map(|(f, o, l, b)| Op::Write(f, o, l, b)),
            2 => (slot.clone(), off).prop_map(|(f, s)| Op::Truncate(f, s)),
            3 => slot.clone().prop_map(Op::Fsync),
            2 => slot.clone().prop_map(Op::FsyncFails),
            3 => (0..DIRS.len()).prop_map(Op::FsyncDir),
            2 => (slot.clone(), slot.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
            1 => (slot.clone(), slot.clone()).prop_map(|(a, b)| Op::Link(a, b)),
            1 => slot.prop_map(Op::Unlink),
            1 => Just(Op::Cut),
        ]
    }

    /// Byte-level reference: every byte carries its own dirty flag, and a
    /// file its sets of live and durable names.
    #[derive(Clone, Default)]
    struct RefFile {
        live: Vec<u8>,
        durable: Vec<u8>,
        dirty: Vec<bool>,
        size_dirty: bool,
        live_names: BTreeSet<usize>,
        durable_names: BTreeSet<usize>,
    }

    impl RefFile {
        fn mark(&mut self, s: usize, e: usize) {
            if self.dirty.len() < e {
                self.dirty.resize(e, false);
            }
            self.dirty[s..e].fill(true);
        }
        fn resize(&mut self, size: usize) {
            let old = self.live.len();
            if size != old {
                self.live.resize(size, 0);
                self.dirty.truncate(size.min(old));
                self.mark(old.min(size), old.max(size));
                self.size_dirty = true;
            }
        }
        fn fsync(&mut self) {
            if self.size_dirty {
                self.durable.resize(self.live.len(), 0);
            }
            for (i, d) in self.dirty.iter().enumerate() {
                if *d && i < self.durable.len() && i < self.live.len() {
                    self.durable[i] = self.live[i];
                }
            }
            self.forget();
        }
        fn forget(&mut self) {
            self.dirty.clear();
            self.size_dirty = false;
        }
        fn names_in(names: &BTreeSet<usize>, dir: usize) -> Vec<usize> {
            names.iter().copied().filter(|&s| dir_of(s) == dir).collect()
        }
    }

    #[derive(Default)]
    struct Reference {
        files: Vec<RefFile>,
    }

    impl Reference {
        fn at(&self, slot: usize) -> Option<usize> {
            self.files.iter().position(|f| f.live_names.contains(&slot))
        }

        /// A directory fsync: every file whose names in `dir` changed gets
        /// all its live names as durable names, taking them from others.
        fn fsync_dir(&mut self, dir: usize) {
            let affected: Vec<usize> = (0..self.files.len())
                .filter(|&x| {
                    let f = &self.files[x];
                    RefFile::names_in(&f.live_names, dir) != RefFile::names_in(&f.durable_names, dir)
                })
                .collect();
            for x in affected {
                let names = self.files[x].live_names.clone();
                for (y, g) in self.files.iter_mut().enumerate() {
                    if y != x {
                        g.durable_names.retain(|s| !names.contains(s));
                    }
                }
                self.files[x].durable_names = names;
            }
        }

        fn cut(&mut self) {
            for f in &mut self.files {
                f.live_names = f.durable_names.clone();
                f.live = f.durable.clone();
                f.forget();
            }
        }
    }

    fn lookup(m: &Model, slot: usize) -> Option<Ino> {
        let mut ino = ROOT;
        for part in SLOTS[slot].split('/') {
            ino = m.lookup(ino, n(part)).ok()?;
        }
        Some(ino)
    }

    fn name_of(slot: usize) -> (usize, &'static str) {
        (dir_of(slot), SLOTS[slot].rsplit('/').next().unwrap())
    }

    fn check(m: &Model, r: &Reference, dirs: [Ino; 2]) -> std::result::Result<(), TestCaseError> {
        for (slot, path) in SLOTS.iter().enumerate() {
            let want = r.at(slot).map(|id| r.files[id].live.clone());
            prop_assert_eq!(content(m, path), want, "file {}", path);
            if let Some(id) = r.at(slot) {
                let ino = lookup(m, slot).unwrap();
                let nlink = m.attr(ino).unwrap().nlink as usize;
                prop_assert_eq!(nlink, r.files[id].live_names.len(), "nlink of {}", path);
            }
        }
        let used: u64 = r
            .files
            .iter()
            .filter(|f| !f.live_names.is_empty())
            .map(|f| f.live.len() as u64)
            .sum();
        prop_assert_eq!(m.used(), used);
        prop_assert_eq!(
            m.readdir(dirs[1]).unwrap().len(),
            (3..6).filter(|&s| r.at(s).is_some()).count()
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        #[test]
        fn after_a_cut_every_name_and_byte_is_as_the_last_syncs_left_it(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            let mut m = model();
            let d = m.mkdir(ROOT, n("d"), meta()).unwrap();
            m.fsync_dir(ROOT).unwrap();
            let dirs = [ROOT, d];
            let mut r = Reference::default();
            for op in ops {
                match op {
                    Op::Create(s) => {
                        let (dir, name) = name_of(s);
                        let got = m.create(dirs[dir], n(name), meta());
                        if r.at(s).is_some() {
                            prop_assert_eq!(got, Err(Error::Exists));
                        } else {
                            got.unwrap();
                            r.files.push(RefFile {
                                live_names: BTreeSet::from([s]),
                                ..RefFile::default()
                            });
                        }
                    }
                    Op::Write(s, off, len, byte) => {
                        let Some(id) = r.at(s) else { continue };
                        m.write(lookup(&m, s).unwrap(), off, &vec![byte; len], now()).unwrap();
                        let f = &mut r.files[id];
                        let (a, e) = (off as usize, off as usize + len);
                        if f.live.len() < e {
                            f.resize(e);
                        }
                        f.live[a..e].fill(byte);
                        f.mark(a, e);
                    }
                    Op::Truncate(s, size) => {
                        let Some(id) = r.at(s) else { continue };
                        m.set_size(lookup(&m, s).unwrap(), size, now()).unwrap();
                        r.files[id].resize(size as usize);
                    }
                    Op::Fsync(s) => {
                        let Some(id) = r.at(s) else { continue };
                        m.fsync(lookup(&m, s).unwrap()).unwrap();
                        r.files[id].fsync();
                    }
                    Op::FsyncFails(s) => {
                        let Some(id) = r.at(s) else { continue };
                        m.fsync_failed(lookup(&m, s).unwrap()).unwrap();
                        r.files[id].forget();
                    }
                    Op::FsyncDir(dir) => {
                        m.fsync_dir(dirs[dir]).unwrap();
                        r.fsync_dir(dir);
                    }
                    Op::Rename(a, b) => {
                        let ((da, na), (db, nb)) = (name_of(a), name_of(b));
                        let got = m.rename(dirs[da], n(na), dirs[db], n(nb), false, now());
                        match (r.at(a), r.at(b)) {
                            (None, _) => prop_assert_eq!(got, Err(Error::NotFound)),
                            (Some(x), Some(y)) if x == y => got.unwrap(),
                            (Some(x), y) => {
                                got.unwrap();
                                if let Some(y) = y {
                                    r.files[y].live_names.remove(&b);
                                }
                                r.files[x].live_names.remove(&a);
                                r.files[x].live_names.insert(b);
                            }
                        }
                    }
                    Op::Link(a, b) => {
                        let ((db, nb), ino) = (name_of(b), lookup(&m, a));
                        match (r.at(a), r.at(b)) {
                            (None, _) => continue,
                            (Some(_), Some(_)) => {
                                prop_assert_eq!(m.link(ino.unwrap(), dirs[db], n(nb), now()), Err(Error::Exists));
                            }
                            (Some(x), None) => {
                                m.link(ino.unwrap(), dirs[db], n(nb), now()).unwrap();
                                r.files[x].live_names.insert(b);
                            }
                        }
                    }
                    Op::Unlink(s) => {
                        let (dir, name) = name_of(s);
                        let got = m.unlink(dirs[dir], n(name), now());
                        match r.at(s) {
                            None => prop_assert_eq!(got, Err(Error::NotFound)),
                            Some(x) => {
                                got.unwrap();
                                r.files[x].live_names.remove(&s);
                            }
                        }
                    }
                    Op::Cut => {
                        m.cut();
                        r.cut();
                    }
                }
                check(&m, &r, dirs)?;
            }
            // Always end with a cut: the property is about what survives.
            m.cut();
            r.cut();
            check(&m, &r, dirs)?;
        }
    }
}
