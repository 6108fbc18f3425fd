//! The lazy filesystem mounted for real (root and /dev/fuse): std::fs and
//! SQLite through the kernel, power cuts, remounts and every fault.
//! Outside CI a missing prerequisite skips with a printed reason; with
//! `CI=true` it fails.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lazyfs::{LazyFs, Match, Mount, OpKind, When};

fn runnable() -> bool {
    match lazyfs::available() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("missing prerequisite in CI: {why}");
            }
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

struct Rig {
    fs: LazyFs,
    mount: Option<Mount>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Rig {
    fn new(capacity: u64) -> Option<Rig> {
        if !runnable() {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        let fs = LazyFs::new(capacity);
        let mount = Some(fs.mount(&dir).expect("mount"));
        Some(Rig {
            fs,
            mount,
            dir,
            _tmp: tmp,
        })
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Cut, unmount, power on, mount again: what a restart after a power cut sees.
    fn cut_and_restart(&mut self) {
        self.fs.cut();
        self.restart();
    }

    fn restart(&mut self) {
        drop(self.mount.take());
        self.fs.power_on();
        self.mount = Some(self.fs.mount(&self.dir).expect("remount"));
    }
}

fn fsync_dir(p: &Path) -> std::io::Result<()> {
    File::open(p)?.sync_all()
}

fn write_new(p: &Path, data: &[u8]) -> File {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    f.write_all(data).unwrap();
    f
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[test]
fn std_fs_durability_across_a_cut() {
    let Some(mut r) = Rig::new(1 << 30) else { return };
    fs::create_dir(r.p("d")).unwrap();
    // Synced data and name.
    let mut a = write_new(&r.p("d/a"), b"synced");
    a.sync_all().unwrap();
    // b: synced, named durably, then unlinked without a directory fsync.
    let b = write_new(&r.p("d/b"), b"unlinked");
    b.sync_all().unwrap();
    fsync_dir(&r.dir).unwrap();
    // c: named durably, its data never fsynced.
    let mut c = write_new(&r.p("d/c"), b"");
    fsync_dir(&r.p("d")).unwrap();
    c.write_all(b"never synced").unwrap();
    drop(c);
    a.write_all(b" and not synced").unwrap();
    assert_eq!(fs::read(r.p("d/a")).unwrap(), b"synced and not synced");
    // A rename made durable, and one not.
    let t = write_new(&r.p("d/tmp1"), b"renamed");
    t.sync_all().unwrap();
    let u = write_new(&r.p("d/tmp2"), b"not renamed");
    u.sync_all().unwrap();
    fsync_dir(&r.p("d")).unwrap();
    fs::rename(r.p("d/tmp1"), r.p("d/final1")).unwrap();
    fsync_dir(&r.p("d")).unwrap();
    fs::rename(r.p("d/tmp2"), r.p("d/final2")).unwrap();
    fs::remove_file(r.p("d/b")).unwrap();
    let stats = r.fs.stats();
    assert!(stats.unsynced_bytes >= 15, "{stats:?}");
    assert!(stats.fsyncs >= 4 && stats.dir_fsyncs >= 4, "{stats:?}");

    r.fs.cut();
    assert!(r.fs.cut_time_us().is_some());
    let e = fs::read(r.p("d/a")).unwrap_err();
    assert_eq!(errno(&e), libc::EIO, "{e}");
    for e in [
        File::create(r.p("d/new")).unwrap_err(),
        fs::create_dir(r.p("e")).unwrap_err(),
        fs::read_dir(r.p("d")).unwrap_err(),
        a.sync_all().unwrap_err(),
        a.write_all(b"late").unwrap_err(),
        fs::rename(r.p("d/a"), r.p("d/z")).unwrap_err(),
    ] {
        assert_eq!(errno(&e), libc::EIO, "{e}");
    }
    drop((a, t, u));
    r.restart();

    assert_eq!(fs::read(r.p("d/a")).unwrap(), b"synced");
    assert_eq!(fs::read(r.p("d/b")).unwrap(), b"unlinked", "the unlink was not synced");
    assert_eq!(fs::read(r.p("d/c")).unwrap(), b"");
    assert_eq!(fs::read(r.p("d/final1")).unwrap(), b"renamed");
    assert!(!r.p("d/tmp1").exists());
    assert_eq!(fs::read(r.p("d/tmp2")).unwrap(), b"not renamed");
    assert!(!r.p("d/final2").exists());
    let mut names: Vec<String> = fs::read_dir(r.p("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "final1", "tmp2"]);
    assert_eq!(r.fs.stats().cuts, 1);
}

#[test]
fn a_created_file_whose_directory_was_not_fsynced_is_gone() {
    let Some(mut r) = Rig::new(1 << 30) else { return };
    let f = write_new(&r.p("new"), b"data");
    f.sync_all().unwrap();
    drop(f);
    r.cut_and_restart();
    assert_eq!(fs::read(r.p("new")).unwrap_err().kind(), ErrorKind::NotFound);
}

/// Tandem's evidence key is created in the store directory by a hard link
/// of a synced temporary file, then a directory fsync.
#[test]
fn a_hard_linked_file_survives_once_its_directory_is_synced() {
    let Some(mut r) = Rig::new(1 << 30) else { return };
    let f = write_new(&r.p(".key.tmp"), b"secret");
    f.sync_all().unwrap();
    fs::hard_link(r.p(".key.tmp"), r.p("key")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(r.p("key")).unwrap().nlink(), 2);
    fs::remove_file(r.p(".key.tmp")).unwrap();
    fsync_dir(&r.dir).unwrap();
    drop(f);
    r.cut_and_restart();
    assert_eq!(fs::read(r.p("key")).unwrap(), b"secret");
    assert!(!r.p(".key.tmp").exists());
}

#[test]
fn the_trace_lists_durability_operations_with_relative_paths() {
    let Some(r) = Rig::new(1 << 30) else { return };
    fs::create_dir(r.p("v")).unwrap();
    let f = write_new(&r.p("v/s.tmp"), b"x");
    f.sync_data().unwrap();
    fs::rename(r.p("v/s.tmp"), r.p("v/s")).unwrap();
    fsync_dir(&r.p("v")).unwrap();
    f.set_len(0).unwrap();
    fs::remove_file(r.p("v/s")).unwrap();
    let got: Vec<(OpKind, String)> = r.fs.trace().into_iter().map(|t| (t.op, t.path)).collect();
    let want = [
        (OpKind::Mkdir, "v"),
        (OpKind::Create, "v/s.tmp"),
        (OpKind::Fsync, "v/s.tmp"),
        (OpKind::Rename, "v/s"),
        (OpKind::FsyncDir, "v"),
        (OpKind::Truncate, "v/s"),
        (OpKind::Unlink, "v/s"),
    ];
    let want: Vec<(OpKind, String)> = want.iter().map(|(o, p)| (*o, p.to_string())).collect();
    assert_eq!(got, want);
    let seqs: Vec<u64> = r.fs.trace().iter().map(|t| t.seq).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
}

#[test]
fn sqlite_in_wal_mode_keeps_committed_rows_and_only_those() {
    let Some(mut r) = Rig::new(1 << 30) else { return };
    let db = r.p("index.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
        c.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);")
            .unwrap();
        for i in 0..200 {
            c.execute("INSERT INTO t (id, v) VALUES (?1, zeroblob(3000))", [i])
                .unwrap();
        }
        c.execute_batch("BEGIN").unwrap();
        for i in 200..400 {
            c.execute("INSERT INTO t (id, v) VALUES (?1, zeroblob(3000))", [i])
                .unwrap();
        }
        // The power goes with the transaction open (its pages may already
        // be in the WAL, uncommitted).
        r.fs.cut();
        let _ = c.execute_batch("COMMIT");
    }
    r.restart();
    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).unwrap();
    assert_eq!(n, 200);
    let max: i64 = c.query_row("SELECT max(id) FROM t", [], |row| row.get(0)).unwrap();
    assert_eq!(max, 199);
    let ok: String = c.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(ok, "ok");
    // And it goes on working after the restart.
    c.execute("INSERT INTO t (id, v) VALUES (1000, x'00')", []).unwrap();
}

#[test]
fn fsync_eio_once_forgets_the_failed_writes() {
    let Some(mut r) = Rig::new(1 << 30) else { return };
    let mut f = write_new(&r.p("seg"), b"");
    f.sync_all().unwrap();
    fsync_dir(&r.dir).unwrap();
    r.fs.fail_fsync("seg", 1);
    f.write_all(b"aaaa").unwrap();
    let e = f.sync_all().unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    f.write_all(b"bbbb").unwrap();
    f.sync_all().expect("the second fsync succeeds");
    assert_eq!(fs::read(r.p("seg")).unwrap(), b"aaaabbbb", "still in memory");
    assert_eq!(r.fs.stats().injected_errors, 1);
    drop(f);
    r.cut_and_restart();
    assert_eq!(
        fs::read(r.p("seg")).unwrap(),
        b"\0\0\0\0bbbb",
        "the failed writes are gone"
    );
}

#[test]
fn a_slow_fsync_does_not_hold_up_other_files() {
    let Some(r) = Rig::new(1 << 30) else { return };
    let slow = write_new(&r.p("slow"), b"x");
    let mut other = write_new(&r.p("other"), b"");
    r.fs.slow_fsync(Duration::from_millis(500));
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        slow.sync_all().unwrap();
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    for _ in 0..20 {
        other.write_all(&[1; 4096]).unwrap();
    }
    let mut back = Vec::new();
    File::open(r.p("other")).unwrap().read_to_end(&mut back).unwrap();
    let busy = start.elapsed();
    assert_eq!(back.len(), 20 * 4096);
    let fsync_took = t.join().unwrap();
    assert!(fsync_took >= Duration::from_millis(500), "{fsync_took:?}");
    assert!(busy < Duration::from_millis(200), "reads and writes waited {busy:?}");
    r.fs.clear_faults();
    let start = Instant::now();
    other.sync_all().unwrap();
    assert!(start.elapsed() < Duration::from_millis(200));
}

#[test]
fn slow_fsyncs_of_two_files_wait_side_by_side() {
    let Some(r) = Rig::new(1 << 30) else { return };
    let files: Vec<File> = (0..2).map(|i| write_new(&r.p(&format!("f{i}")), b"x")).collect();
    r.fs.slow_fsync(Duration::from_millis(500));
    let start = Instant::now();
    let threads: Vec<_> = files
        .into_iter()
        .map(|f| std::thread::spawn(move || f.sync_all()))
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(
        took < Duration::from_millis(900),
        "one fsync waited for the other: {took:?}"
    );
}

#[test]
fn enospc_past_capacity_and_on_demand() {
    let Some(r) = Rig::new(1 << 20) else { return };
    // SAFETY: a zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(r.dir.to_str().unwrap()).unwrap();
    // SAFETY: valid path and out-pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_blocks * st.f_frsize, 1 << 20);
    assert_eq!(st.f_bfree, st.f_blocks);
    let mut f = write_new(&r.p("big"), &[0; 1000]);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_bavail * st.f_frsize, (1 << 20) - 4096, "1000 bytes used");
    let e = f.write_all(&[1; 1 << 20]).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    f.set_len(0).unwrap();
    f.write_all(&[1; 1000]).unwrap();

    fs::create_dir(r.p("full")).unwrap();
    let mut g = write_new(&r.p("full/g"), b"");
    r.fs.enospc("full/");
    assert_eq!(errno(&g.write_all(b"x").unwrap_err()), libc::ENOSPC);
    let e = File::create(r.p("full/h")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    f.write_all(b"elsewhere is fine").unwrap();
    r.fs.clear_faults();
    g.write_all(b"x").unwrap();
}

#[test]
fn fail_reads_fails_only_the_matching_file() {
    let Some(r) = Rig::new(1 << 30) else { return };
    drop(write_new(&r.p("bad.mp4"), b"frames"));
    // Whole pages written and read back are in the kernel's page cache.
    let big = write_new(&r.p("bad-big.mp4"), &vec![5; 256 * 1024]);
    assert_eq!(fs::read(r.p("bad-big.mp4")).unwrap().len(), 256 * 1024);
    drop(write_new(&r.p("good.mp4"), b"frames"));
    r.fs.fail_reads("bad");
    let e = fs::read(r.p("bad.mp4")).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    assert_eq!(fs::read(r.p("good.mp4")).unwrap(), b"frames");
    let e = fs::read(r.p("bad-big.mp4")).unwrap_err();
    assert_eq!(errno(&e), libc::EIO, "a cached file read again fails too");
    let mut buf = [0; 10];
    let reader = File::open(r.p("good.mp4")).unwrap();
    reader.read_exact_at(&mut buf[..6], 0).unwrap();
    r.fs.fail_reads("good");
    let e = reader.read_exact_at(&mut buf[..6], 0).unwrap_err();
    assert_eq!(
        errno(&e),
        libc::EIO,
        "a page read before the fault is not served from a cache"
    );
    let e = big.read_exact_at(&mut buf, 0).unwrap_err();
    assert_eq!(errno(&e), libc::EIO, "a handle opened before the fault fails too");
    let f = OpenOptions::new().append(true).open(r.p("bad.mp4")).unwrap();
    f.write_all_at(b"!", 6).unwrap();
    r.fs.clear_faults();
    assert_eq!(fs::read(r.p("bad.mp4")).unwrap(), b"frames!");
}

/// Writes `v` to `seg` and fsyncs it; the fsync's result.
fn overwrite_and_sync(f: &File, v: &[u8]) -> std::io::Result<()> {
    f.write_all_at(v, 0)?;
    f.sync_data()
}

#[test]
fn cut_at_the_nth_fsync_before_and_after() {
    for when in [When::Before, When::After] {
        let Some(mut r) = Rig::new(1 << 30) else { return };
        let f = write_new(&r.p("seg"), b"");
        f.sync_all().unwrap();
        fsync_dir(&r.dir).unwrap();
        let other = write_new(&r.p("other"), b"");
        let at = Match {
            op: OpKind::Fsync,
            path_contains: "seg".into(),
        };
        r.fs.cut_at(at, 2, when);
        overwrite_and_sync(&other, b"o").unwrap();
        overwrite_and_sync(&f, b"1").unwrap();
        assert!(r.fs.cut_time_us().is_none());
        let second = overwrite_and_sync(&f, b"2");
        assert!(r.fs.cut_time_us().is_some(), "{when:?}");
        match when {
            When::Before => assert_eq!(errno(&second.unwrap_err()), libc::EIO),
            When::After => second.unwrap(),
        }
        let e = overwrite_and_sync(&f, b"3").unwrap_err();
        assert_eq!(errno(&e), libc::EIO);
        drop((f, other));
        r.restart();
        let want: &[u8] = if when == When::Before { b"1" } else { b"2" };
        assert_eq!(fs::read(r.p("seg")).unwrap(), want, "{when:?}");
    }
}

#[test]
fn a_killed_writer_does_not_keep_the_mount_from_coming_back() {
    let Some(mut r) = Rig::new(1 << 30) else { return };
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("while true; do echo x >> f; done")
        .current_dir(&r.dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(fs::metadata(r.p("f")).unwrap().len() > 0);
    r.fs.cut();
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    // Not reaped before the unmount: the mount may still be busy.
    let start = Instant::now();
    r.restart();
    let took = start.elapsed();
    child.wait().unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!r.p("f").exists(), "f was never made durable");
    fs::write(r.p("after"), b"works").unwrap();
    assert_eq!(fs::read(r.p("after")).unwrap(), b"works");
}

#[test]
fn an_open_handle_in_this_process_does_not_block_the_remount() {
    let Some(mut r) = Rig::new(1 << 30) else { return };
    let f = write_new(&r.p("held"), b"x");
    r.fs.cut();
    r.restart();
    drop(f);
    assert!(!r.p("held").exists());
    fs::write(r.p("again"), b"y").unwrap();
    assert_eq!(fs::read(r.p("again")).unwrap(), b"y");
}

/// Not a timed assertion: the figure quoted in the crate's docs. Like a
/// recorder: 32 MiB segments written in 64 KiB blocks, an fsync per second,
/// and the oldest segments deleted (with a directory fsync) to bound memory.
#[test]
fn throughput_of_sequential_writes_with_an_fsync_per_second() {
    let Some(r) = Rig::new(1 << 30) else { return };
    let block = vec![7u8; 64 * 1024];
    let seg_size = 32u64 << 20;
    let start = Instant::now();
    let mut last_sync = Instant::now();
    let (mut written, mut fsyncs, mut seg) = (0u64, 0u64, 0u64);
    let mut f = write_new(&r.p("seg0"), b"");
    while start.elapsed() < Duration::from_millis(2500) {
        f.write_all(&block).unwrap();
        written += block.len() as u64;
        if last_sync.elapsed() >= Duration::from_secs(1) {
            f.sync_data().unwrap();
            fsyncs += 1;
            last_sync = Instant::now();
        }
        if written % seg_size == 0 {
            f.sync_data().unwrap();
            seg += 1;
            f = write_new(&r.p(&format!("seg{seg}")), b"");
            if seg >= 4 {
                fs::remove_file(r.p(&format!("seg{}", seg - 4))).unwrap();
            }
            fsync_dir(&r.dir).unwrap();
        }
    }
    f.sync_data().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(r.fs.stats().fsyncs >= fsyncs + seg);
    assert_eq!(fs::read_dir(&r.dir).unwrap().count() as u64, seg.min(3) + 1);
    eprintln!(
        "lazyfs throughput: {:.0} MB/s of 64 KiB writes with an fsync per second \
         ({} MiB in {secs:.2} s, {} segments)",
        written as f64 / 1e6 / secs,
        written >> 20,
        seg + 1
    );
}

#[test]
fn the_handles_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LazyFs>();
    send_sync::<Mount>();
}
