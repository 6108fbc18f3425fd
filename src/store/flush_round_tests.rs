//! Tests of flush rounds beside the writer: what a capture claims and how a
//! round's answer moves a segment's durable point (pure, every interleaving
//! of frames written before, queued at and appended after a round's start,
//! with the round succeeding or failing, the segment live or closed), and
//! the round thread under slow and failing fsyncs (injected).

use super::*;
use crate::store::db;
use crate::store::open_segment::OpenSegment;
use crate::store::{segment_path, SampleEntry};
use crate::time::Time90k;
use bytes::Bytes;
use rusqlite::Connection;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

fn store() -> (tempfile::TempDir, Connection, Arc<SampleEntry>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(&dir.path().join("index.db")).unwrap();
    db::migrate(&mut conn).unwrap();
    let e = Arc::new(SampleEntry {
        data: vec![9; 40],
        codec: "h264",
        width: 1,
        height: 1,
    });
    let eid = db::upsert_sample_entry(&conn, &e.data, e.codec, e.width, e.height).unwrap();
    (dir, conn, e, eid)
}

/// Frames `from..to` of a 25-fps stream, written (as the writer appends them).
fn write(seg: &mut OpenSegment, from: i64, to: i64) {
    for i in from..to {
        seg.write_frame(Time90k(i * 3600), i == 0, Bytes::from(vec![i as u8; 50 + i as usize]))
            .unwrap();
        seg.unflushed.push((Time90k(i * 3600), Instant::now()));
    }
}

/// Frames `from..to`, queued only (not yet in the file).
fn queue(seg: &mut OpenSegment, from: i64, to: i64) {
    for i in from..to {
        seg.queue_frame(
            Time90k(i * 3600),
            i == 0,
            Bytes::from(vec![i as u8; 50 + i as usize]),
            Instant::now(),
        )
        .unwrap();
        seg.unflushed.push((Time90k(i * 3600), Instant::now()));
    }
}

/// The row's state and frames (None: no row).
fn row(conn: &Connection, id: i64) -> Option<(i64, u32, i64)> {
    conn.query_row("SELECT state, frames, bytes FROM segment WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .ok()
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

#[test]
fn every_interleaving_of_a_round_claims_exactly_what_it_captured() {
    // earlier: frames a previous round already made durable; before:
    // written before this round's capture; queued: still queued at the
    // capture; after: appended while the round runs; then the round
    // succeeds or fails, with the segment live or closed meanwhile.
    let mut cases = 0;
    for earlier in [0i64, 2] {
        for before in 0i64..3 {
            for queued in 0i64..3 {
                for after in 0i64..3 {
                    for ok in [true, false] {
                        for closed in [false, true] {
                            one_interleaving(earlier, before, queued, after, ok, closed);
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * 3 * 3 * 3 * 2 * 2);
}

fn one_interleaving(earlier: i64, before: i64, queued: i64, after: i64, ok: bool, closed: bool) {
    let case = format!("earlier {earlier} before {before} queued {queued} after {after} ok {ok} closed {closed}");
    let (dir, conn, e, eid) = store();
    let mut seg = OpenSegment::create(&conn, dir.path(), 1, Time90k(0), (&e, eid), 1, false).unwrap();
    let id = seg.id;
    let path = segment_path(dir.path(), 1, id);
    write(&mut seg, 0, earlier);
    let first = seg.capture();
    assert!(first.dir().is_some(), "a new segment's name is not durable yet");
    let (_, d) = seg.captured_durable(&first);
    assert_eq!(d.len() as i64, earlier);
    let durable_before = std::fs::metadata(&path).unwrap().len();

    write(&mut seg, earlier, earlier + before);
    queue(&mut seg, earlier + before, earlier + before + queued);
    let dirty_at_capture = seg.dirty;
    let c = seg.capture();
    let p = c.progress();
    // A capture claims only what is in the file: never a queued frame.
    assert_eq!(p.frames as i64, earlier + before, "{case}");
    assert_eq!(p.bytes, std::fs::metadata(&path).unwrap().len(), "{case}");
    assert!(c.dir().is_none(), "{case}: the first round synced the directory");
    assert_eq!(seg.dirty, queued > 0, "{case}: the queue is the next round's");
    assert_eq!(dirty_at_capture, before + queued > 0, "{case}");
    seg.write_out().unwrap();
    write(&mut seg, earlier + before + queued, earlier + before + queued + after);
    let total = earlier + before + queued + after;
    if closed {
        assert_eq!(seg.seal_for_close(1, None), 0);
    }
    if ok {
        let (bytes, durable) = seg.captured_durable(&c);
        assert_eq!(
            durable.len() as i64,
            before,
            "{case}: exactly the captured frames are durable"
        );
        assert_eq!(seg.unflushed.len() as i64, queued + after, "{case}");
        assert_eq!(bytes, p.bytes - durable_before, "{case}");
        assert_eq!(seg.durable_progress().frames as i64, earlier + before, "{case}");
        let whole = queued + after == 0;
        assert_eq!(seg.all_durable(), whole, "{case}");
        if closed && whole && total > 0 {
            let done = seg.completion();
            assert_eq!(done.progress.frames as i64, total, "{case}");
            assert_eq!(done.progress.bytes, std::fs::metadata(&path).unwrap().len(), "{case}");
        }
        // An answer older than what is durable proves nothing more.
        assert_eq!(seg.captured_durable(&first), (0, Vec::new()), "{case}");
        assert_eq!(seg.durable_progress().frames as i64, earlier + before, "{case}");
    } else {
        // The round's fsync failed: the segment closes at the durable point
        // of before the round; frames appended during it are lost too.
        let lost = seg.close_durable(&conn, dir.path(), 1, &eio());
        assert_eq!(lost.kept as i64, earlier, "{case}");
        assert_eq!(lost.frames as i64, total - earlier, "{case}");
        if earlier == 0 {
            assert!(
                row(&conn, id).is_none() && !path.exists(),
                "{case}: nothing durable, nothing kept"
            );
        } else {
            let (state, frames, bytes) = row(&conn, id).unwrap();
            assert_eq!((state, frames as i64), (1, earlier), "{case}");
            assert_eq!(bytes as u64, durable_before, "{case}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                durable_before,
                "{case}: cut back"
            );
        }
    }
}

/// A sync that waits, fails for chosen inodes and counts what it synced.
struct Faulty {
    delay: Duration,
    fail: Mutex<Vec<u64>>,
    synced: Mutex<Vec<u64>>,
}

impl Faulty {
    fn sync(self: &Arc<Self>) -> SyncFn {
        let me = self.clone();
        Arc::new(move |f: &File| {
            std::thread::sleep(me.delay);
            let ino = f.metadata()?.ino();
            if me.fail.lock().unwrap().contains(&ino) {
                return Err(eio());
            }
            me.synced.lock().unwrap().push(ino);
            Ok(())
        })
    }
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn a_slow_round_runs_beside_the_writer_and_only_one_at_a_time() {
    let (dir, conn, e, eid) = store();
    let f = Arc::new(Faulty {
        delay: Duration::from_millis(300),
        fail: Mutex::new(Vec::new()),
        synced: Mutex::new(Vec::new()),
    });
    let mut flusher = Flusher::spawn(f.sync());
    let mut seg = OpenSegment::create(&conn, dir.path(), 1, Time90k(0), (&e, eid), 1, false).unwrap();
    write(&mut seg, 0, 5);
    let c = seg.capture();
    let files = vec![RoundFile {
        file: seg.shared_file(),
        dir: c.dir().map(Path::to_path_buf),
    }];
    let t0 = Instant::now();
    flusher.start(files).unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "start does not wait for the fsync"
    );
    assert!(matches!(flusher.start(Vec::new()), Err(RoundError::InFlight)));
    // The writer appends while the round runs.
    write(&mut seg, 5, 30);
    assert!(flusher.answer(Duration::ZERO).is_none(), "still in flight");
    let a = flusher.wait().unwrap();
    assert!(a.took >= Duration::from_millis(600), "file and directory: {:?}", a.took);
    assert_eq!(a.results.len(), 1);
    assert!(a.results[0].is_ok());
    assert!(!flusher.in_flight() && flusher.wait().is_none());
    let (_, durable) = seg.captured_durable(&c);
    assert_eq!(
        durable.len(),
        5,
        "the frames appended during the round are the next round's"
    );
    assert_eq!(seg.unflushed.len(), 25);
    assert!(seg.capture().dir().is_none(), "the round synced the directory");
    let synced = f.synced.lock().unwrap().clone();
    let p = segment_path(dir.path(), 1, seg.id);
    assert_eq!(
        synced,
        vec![ino(&p), ino(p.parent().unwrap())],
        "the file, then its directory"
    );
}

#[test]
fn a_round_that_fails_while_frames_are_appended_loses_them_too() {
    let (dir, conn, e, eid) = store();
    let f = Arc::new(Faulty {
        delay: Duration::from_millis(100),
        fail: Mutex::new(Vec::new()),
        synced: Mutex::new(Vec::new()),
    });
    let mut flusher = Flusher::spawn(f.sync());
    let mut segs: Vec<OpenSegment> = (1..=3)
        .map(|ch| OpenSegment::create(&conn, dir.path(), ch, Time90k(0), (&e, eid), 1, false).unwrap())
        .collect();
    // A first round makes 4 frames of each durable.
    let round = |segs: &mut Vec<OpenSegment>, flusher: &mut Flusher| {
        let caps: Vec<_> = segs.iter_mut().map(|s| s.capture()).collect();
        let files = segs
            .iter()
            .zip(&caps)
            .map(|(s, c)| RoundFile {
                file: s.shared_file(),
                dir: c.dir().map(Path::to_path_buf),
            })
            .collect();
        flusher.start(files).unwrap();
        caps
    };
    for s in segs.iter_mut() {
        write(s, 0, 4);
    }
    let caps = round(&mut segs, &mut flusher);
    for (s, r) in segs.iter_mut().zip(flusher.wait().unwrap().results) {
        r.unwrap();
        s.captured_durable(&caps[segs_index(&caps, s.id)]);
    }
    // The second round fails for channel 2's file; frames are appended
    // to every segment while it runs, and channel 3's closes meanwhile.
    for s in segs.iter_mut() {
        write(s, 4, 10);
    }
    f.fail
        .lock()
        .unwrap()
        .push(ino(&segment_path(dir.path(), 2, segs[1].id)));
    let caps = round(&mut segs, &mut flusher);
    for s in segs.iter_mut() {
        write(s, 10, 16);
    }
    segs[2].seal_for_close(3, None);
    let a = flusher.wait().unwrap();
    assert!(a.results[0].is_ok() && a.results[1].is_err() && a.results[2].is_ok());
    let mut it = segs.into_iter().zip(a.results).zip(caps);
    let ((mut s1, _), c1) = it.next().unwrap();
    let ((s2, _), _) = it.next().unwrap();
    let ((mut s3, _), c3) = it.next().unwrap();
    s1.captured_durable(&c1);
    assert_eq!(s1.durable_progress().frames, 10);
    let id2 = s2.id;
    let lost = s2.close_durable(&conn, dir.path(), 2, &eio());
    assert_eq!(
        (lost.kept, lost.frames),
        (4, 12),
        "the 6 frames appended during the round are lost too"
    );
    assert_eq!(row(&conn, id2).map(|r| (r.0, r.1)), Some((1, 4)));
    // The closed segment is not wholly durable yet: the next round finishes it.
    s3.captured_durable(&c3);
    assert!(!s3.all_durable());
    assert_eq!(s3.durable_progress().frames, 10);
}

fn segs_index(caps: &[crate::store::open_segment::Capture], id: i64) -> usize {
    caps.iter().position(|c| c.id == id).unwrap()
}

#[test]
fn a_failed_directory_fsync_fails_every_new_file_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let file = |d: &Path, n: &str| Arc::new(File::create(d.join(n)).unwrap());
    let files = vec![
        RoundFile {
            file: file(&a, "1"),
            dir: Some(a.clone()),
        },
        RoundFile {
            file: file(&a, "2"),
            dir: None,
        },
        RoundFile {
            file: file(&b, "3"),
            dir: Some(b.clone()),
        },
        RoundFile {
            file: file(&a, "4"),
            dir: Some(a.clone()),
        },
    ];
    let f = Arc::new(Faulty {
        delay: Duration::ZERO,
        fail: Mutex::new(vec![ino(&a)]),
        synced: Mutex::new(Vec::new()),
    });
    let r = sync_round(&files, &f.sync());
    let ok: Vec<bool> = r.iter().map(|r| r.is_ok()).collect();
    // File 2's name was durable already: its own fsync is what counts.
    assert_eq!(ok, vec![false, true, true, false]);
    assert!(r[0].as_ref().unwrap_err().to_string().contains("fsync of directory"));
}

#[test]
fn without_a_thread_a_round_runs_on_the_caller_and_answers_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut fl = Flusher {
        thread: None,
        sync: fdatasync(),
        ready: None,
        in_flight: None,
    };
    assert!(fl.answer(Duration::ZERO).is_none() && fl.wait().is_none());
    let files = vec![RoundFile {
        file: Arc::new(File::create(dir.path().join("x")).unwrap()),
        dir: None,
    }];
    fl.start(files).unwrap();
    assert!(fl.in_flight());
    let a = fl.answer(Duration::ZERO).unwrap();
    assert!(a.results[0].is_ok());
    assert!(!fl.in_flight() && fl.answer(Duration::ZERO).is_none());
}
