//! Tests of `open_segment`: the durable prefix, queued writes and their
//! rollback, closing a segment with nothing durable.

use super::*;

fn entries(n: u32) -> Vec<FrameEntry> {
    (0..n)
        .map(|i| FrameEntry {
            duration: 3000 + i,
            size: 1000 + 7 * i,
            key: i % 10 == 0,
        })
        .collect()
}

fn encode(e: &[FrameEntry]) -> Vec<u8> {
    let mut enc = IndexEncoder::default();
    for &f in e {
        enc.push(f);
    }
    enc.blob().to_vec()
}

#[test]
fn a_durable_prefix_keeps_exactly_its_frames() {
    let all = entries(25);
    let blob = encode(&all);
    for n in 0..=25u32 {
        let before: i64 = all[..(n as usize).saturating_sub(1)]
            .iter()
            .map(|e| i64::from(e.duration))
            .sum();
        // The durable point's end: the last durable frame lasted as long as the one before it.
        let last = if n >= 2 { all[n as usize - 2].duration } else { 1 };
        let p = index::decode(&durable_prefix(&blob, n, before + i64::from(last)).unwrap()).unwrap();
        assert_eq!(p.len(), n as usize);
        for (i, e) in p.iter().enumerate() {
            assert_eq!((e.size, e.key), (all[i].size, all[i].key), "frame {i} of {n}");
            if i + 1 < n as usize {
                assert_eq!(e.duration, all[i].duration);
            } else {
                assert_eq!(e.duration, last, "the last frame ends at the durable end");
            }
        }
    }
    // The whole index with its own end is the index itself.
    let total: i64 = all.iter().map(|e| i64::from(e.duration)).sum();
    assert_eq!(durable_prefix(&blob, 25, total).unwrap(), blob);
}

#[test]
fn a_prefix_longer_than_the_index_or_of_a_corrupt_blob_is_an_error() {
    let blob = encode(&entries(3));
    assert!(durable_prefix(&blob, 4, 0).is_err());
    assert!(durable_prefix(&blob[..blob.len() - 1], 2, 0).is_err());
    // An end before the last frame's start keeps its own duration.
    let p = index::decode(&durable_prefix(&blob, 2, 10).unwrap()).unwrap();
    assert_eq!(p[1].duration, 3001);
}

fn entry() -> Arc<SampleEntry> {
    Arc::new(SampleEntry {
        data: vec![9; 40],
        codec: "h264",
        width: 1,
        height: 1,
    })
}

/// A fresh store's directory and index, with one sample entry (and its id).
fn store() -> (tempfile::TempDir, Connection, Arc<SampleEntry>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(&dir.path().join("index.db")).unwrap();
    db::migrate(&mut conn).unwrap();
    let e = entry();
    let eid = db::upsert_sample_entry(&conn, &e.data, e.codec, e.width, e.height).unwrap();
    (dir, conn, e, eid)
}

#[test]
fn a_closed_durable_prefix_describes_the_synced_bytes_exactly() {
    let (dir, conn, e, eid) = store();
    let mut seg = OpenSegment::create(&conn, dir.path(), 1, Time90k(0), (&e, eid), 1, false).unwrap();
    for i in 0..5 {
        seg.write_frame(Time90k(i * 3000), i == 0, Bytes::from(vec![i as u8; 100]))
            .unwrap();
    }
    seg.sync().unwrap();
    let synced = std::fs::read(segment_path(dir.path(), 1, seg.id)).unwrap();
    for i in 5..9 {
        seg.write_frame(Time90k(i * 3000), false, Bytes::from(vec![i as u8; 100]))
            .unwrap();
    }
    let id = seg.id;
    let lost = seg.close_durable(&conn, dir.path(), 1, &std::io::Error::from_raw_os_error(libc::EIO));
    assert_eq!((lost.kept, lost.frames), (5, 4));
    // The file was cut back to the synced bytes, and the row says exactly that.
    let path = segment_path(dir.path(), 1, id);
    assert_eq!(std::fs::read(&path).unwrap(), synced);
    let (frames, bytes, end, blob, sha) = row(&conn, id);
    assert_eq!((frames, bytes as usize, end), (5, synced.len(), 5 * 3000));
    assert_eq!(index::decode(&blob).unwrap().len(), 5);
    let digest = super::super::record_digest::check(&mut &synced[..], synced.len() as u64, &mut |_| true);
    assert_eq!(sha, digest.unwrap().to_vec());
}

/// The row of a finished segment: frames, bytes, end, index and digest.
fn row(conn: &Connection, id: i64) -> (u32, i64, i64, Vec<u8>, Vec<u8>) {
    conn.query_row(
        "SELECT frames, bytes, end_90k, frame_index, record_sha256 FROM segment WHERE id = ?1 AND state = 1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .unwrap()
}

#[test]
fn queued_frames_reach_the_file_only_when_written_and_always_before_an_fsync() {
    let (dir, conn, e, eid) = store();
    let mut seg = OpenSegment::create(&conn, dir.path(), 1, Time90k(0), (&e, eid), 1, false).unwrap();
    let path = segment_path(dir.path(), 1, seg.id);
    let header = std::fs::metadata(&path).unwrap().len();
    let t0 = Instant::now();
    for i in 0..3 {
        seg.queue_frame(Time90k(i * 3000), i == 0, Bytes::from(vec![7; 1000]), t0)
            .unwrap();
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), header, "queued, not written");
    assert_eq!(seg.written().0, 3, "the segment counts queued frames");
    let delay = write_delay(Duration::from_secs(1));
    assert!(!seg.write_due(t0, delay));
    assert!(
        seg.write_due(t0 + delay, delay),
        "due once the oldest has waited the delay"
    );
    let synced = seg.sync().unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        seg.written().1,
        "an fsync writes the queue first"
    );
    assert_eq!(synced, seg.written().1, "all of it durable, header included");
    assert_eq!(seg.queued_since(), None);
    // A full queue is due at once, whatever its age.
    for i in 3..3 + QUEUE_FRAMES as i64 {
        seg.queue_frame(Time90k(i * 3000), false, Bytes::from_static(&[1; 10]), t0)
            .unwrap();
    }
    assert!(seg.write_due(t0, delay));
    // A short flush interval shortens the delay.
    assert_eq!(write_delay(Duration::from_millis(300)), Duration::from_millis(75));
}

#[test]
fn a_failed_write_loses_only_the_queue_and_the_row_describes_the_rest_exactly() {
    let (dir, conn, e, eid) = store();
    let frame = |i: i64| {
        (
            Time90k(i * 3000),
            i % 4 == 0,
            Bytes::from(vec![i as u8; 50 + i as usize]),
        )
    };
    // What the segment must end as: frames 0..3 and 10..13, written directly.
    let kept: Vec<i64> = (0..3).chain(10..13).collect();
    let mut reference = OpenSegment::create(&conn, dir.path(), 2, Time90k(0), (&e, eid), 1, false).unwrap();
    for &i in &kept {
        let (t, k, d) = frame(i);
        reference.write_frame(t, k, d).unwrap();
    }
    let rid = reference.id;
    assert!(reference
        .finish(&conn, dir.path(), 2, Some(Time90k(13 * 3000)))
        .is_none());

    let mut seg = OpenSegment::create(&conn, dir.path(), 1, Time90k(0), (&e, eid), 1, false).unwrap();
    let path = segment_path(dir.path(), 1, seg.id);
    for i in 0..3 {
        let (t, k, d) = frame(i);
        seg.write_frame(t, k, d).unwrap();
    }
    seg.unflushed.push((Time90k(0), Instant::now()));
    let before = (seg.progress().bytes, seg.end(), seg.unflushed.len());
    for i in 3..7 {
        let (t, k, d) = frame(i);
        seg.queue_frame(t, k, d, Instant::now()).unwrap();
        seg.unflushed.push((t, Instant::now()));
    }
    // The disk refuses the write (a descriptor opened read-only).
    let writable = std::mem::replace(&mut seg.file, Arc::new(File::open(&path).unwrap()));
    let failed = seg.write_out().unwrap_err();
    assert_eq!(failed.frames, 4);
    assert_eq!(
        (seg.progress().bytes, seg.end(), seg.unflushed.len()),
        before,
        "rolled back"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before.0);
    seg.file = writable;
    for i in 10..13 {
        let (t, k, d) = frame(i);
        seg.queue_frame(t, k, d, Instant::now()).unwrap();
    }
    let id = seg.id;
    assert_eq!(
        seg.seal_for_close(1, Some(Time90k(13 * 3000))),
        0,
        "the queue is written at the close"
    );
    assert!(seg.finish(&conn, dir.path(), 1, Some(Time90k(13 * 3000))).is_none());
    let (a, b) = (row(&conn, id), row(&conn, rid));
    // (The digests differ: a segment's header names its channel and id.)
    assert_eq!(
        (a.0, a.1, a.2, &a.3),
        (b.0, b.1, b.2, &b.3),
        "same frames, bytes, end and index as the segment written without the failure"
    );
    let file = std::fs::read(&path).unwrap();
    let digest = super::super::record_digest::check(&mut &file[..], file.len() as u64, &mut |_| true);
    assert_eq!(digest.unwrap().to_vec(), a.4);
}

#[test]
fn a_segment_with_nothing_durable_is_removed() {
    let (dir, conn, e, eid) = store();
    let mut seg = OpenSegment::create(&conn, dir.path(), 1, Time90k(0), (&e, eid), 1, false).unwrap();
    seg.write_frame(Time90k(0), true, Bytes::from_static(&[1; 10])).unwrap();
    let id = seg.id;
    let lost = seg.close_durable(&conn, dir.path(), 1, &std::io::Error::from_raw_os_error(libc::EIO));
    assert_eq!((lost.kept, lost.frames), (0, 1));
    assert!(!segment_path(dir.path(), 1, id).exists());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM segment WHERE id = ?1", [id], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}
