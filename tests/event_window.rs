//! Event recording end to end through the real store: stamped frames in, an
//! event under the seed's 30 s / 2 min policy, and `audit` of what was stored
//! must show exactly [key frame ≤ event − 30 s, event end + 2 min] and nothing
//! else. Frames run on simulated time, so the 7-minute scenario takes a second.

mod common;

use std::sync::Arc;

use tandem::audit::audit_store;
use tandem::events::Edge;
use tandem::nal::FrameStamp;
use tandem::recording::Mode;
use tandem::store::{Command, Frame, RecordingState, SampleEntry, Store};
use tandem::time::{SystemClock, Time90k};

const FPS: i64 = 10;
const GOP: i64 = 10;
const T0_US: i64 = 1_800_000_000_000_000;

fn frame(n: i64, entry: &Arc<SampleEntry>) -> Frame {
    let us = T0_US + n * 1_000_000 / FPS;
    let sei = FrameStamp {
        camera_id: 7,
        seq: n as u64,
        capture_unix_micros: us,
        boot_id: 1,
    }
    .to_h264_sei();
    let mut data = Vec::new();
    for nal in [&sei[..], &[0x65, 0x88, 0x84, 0x00, 0x10][..]] {
        data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        data.extend_from_slice(nal);
    }
    Frame {
        channel: 1,
        run: 1,
        time: Time90k::from_unix_micros(us),
        key: n % GOP == 0,
        sample_entry: entry.clone(),
        data: data.into(),
        capture_offset: None,
    }
}

fn at(n: i64) -> Time90k {
    Time90k::from_unix_micros(T0_US + n * 1_000_000 / FPS)
}

fn run(mode: Mode, event: (i64, i64), secs: i64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut entry = vec![0u8; 86];
    entry[4..8].copy_from_slice(b"avc1");
    let entry = Arc::new(SampleEntry::parse(entry).unwrap());
    let (store, _) = Store::open(common::store_config(dir.path(), mode), Arc::new(SystemClock)).unwrap();
    let tx = store.sender();
    let edge = |start: bool, n: i64| {
        Command::EventEdge(Edge {
            channel: 1,
            kind: "door".into(),
            key: "door".into(),
            start,
            time: at(n),
            details: serde_json::json!({}),
            trigger: true,
        })
    };
    for n in 0..secs * FPS {
        if n == event.0 {
            tx.send(edge(true, n)).unwrap();
        }
        if n == event.1 {
            tx.send(edge(false, n)).unwrap();
        }
        tx.send(Command::Frame(frame(n, &entry))).unwrap();
    }
    store.sync();
    (dir, store)
}

#[test]
fn events_mode_stores_exactly_the_event_window() {
    // Door opens at 100.3 s, closes at 105.0 s; 420 s of video.
    let (_dir, store) = run(Mode::Events, (1003, 1050), 420);
    let r = audit_store(&store.reader(), 1, at(0), at(420 * FPS)).unwrap();
    assert_eq!(r.cameras.len(), 1, "{r:?}");
    let c = &r.cameras[0];
    // 100.3 − 30 = 70.3 s → the key frame at 70.0 s (within one GOP of it).
    assert_eq!(c.first_seq, 700);
    assert!(at(1003) - at(c.first_seq as i64) - 30 * 90_000 < GOP * 90_000 / FPS);
    // 105.0 + 120 = 225.0 s, inclusive.
    assert_eq!(c.last_seq, 2250);
    assert_eq!(c.frames_lost, 0, "nothing missing inside the window: {:?}", c.gaps);
    assert_eq!(r.frames_found, 2250 - 700 + 1);
    assert_eq!(r.duplicates, 0);
    let segs = store.reader().recordings(1, at(0), at(420 * FPS)).unwrap();
    assert!(!segs.is_empty());
    // The event is stored with its start and end.
    let ev = store.reader().events(Some(1), Some("door"), at(0), at(4200)).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].start, at(1003).to_rfc3339());
    assert_eq!(ev[0].end.as_deref(), Some(at(1050).to_rfc3339().as_str()));
    store.shutdown();
}

#[test]
fn continuous_events_stores_everything_and_marks_event_footage() {
    let (dir, store) = run(Mode::ContinuousEvents, (1003, 1050), 420);
    let r = audit_store(&store.reader(), 1, at(0), at(420 * FPS)).unwrap();
    assert_eq!(r.frames_found, 4200);
    assert_eq!(r.frames_lost, 0);
    store.shutdown();
    // Segments overlapping [70.3 s, 225 s] are event footage; the rest not.
    let conn = rusqlite::Connection::open(dir.path().join("index.db")).unwrap();
    let mut st = conn
        .prepare("SELECT start_90k, end_90k, event FROM segment ORDER BY start_90k")
        .unwrap();
    let rows: Vec<(i64, i64, bool)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(rows.len() >= 20, "{rows:?}");
    for (s, e, ev) in &rows {
        let overlaps = *e > at(703).0 && *s <= at(2250).0;
        assert_eq!(
            *ev, overlaps,
            "segment {s}..{e}: event={ev}, overlaps window={overlaps}"
        );
    }
    assert!(rows.iter().any(|r| !r.2) && rows.iter().any(|r| r.2));
}

#[test]
fn events_from_many_sources_are_stored_and_bounded() {
    // 300 sources open a door each and never close it (a flood of distinct
    // keys): every event is stored, in one commit per flush, and the channel
    // holds at most 256 open — the oldest are ended, marked why.
    let (_dir, store) = run(Mode::Events, (-1, -1), 2);
    let tx = store.sender();
    for i in 0..300 {
        tx.send(Command::EventEdge(Edge {
            channel: 1,
            kind: "door".into(),
            key: format!("http:door:{i}"),
            start: true,
            time: at(20 + i),
            details: serde_json::json!({}),
            trigger: true,
        }))
        .unwrap();
    }
    store.sync();
    let ev = store.reader().events(Some(1), Some("door"), at(0), at(10_000)).unwrap();
    assert_eq!(ev.len(), 300);
    let ended: Vec<_> = ev.iter().filter(|e| e.end.is_some()).collect();
    assert_eq!(ended.len(), 300 - 256);
    assert!(ended.iter().all(|e| e.details["ended"] == "too many open events"));
    // The oldest were the ones ended.
    assert!(ev[..44].iter().all(|e| e.end.is_some()) && ev[44..].iter().all(|e| e.end.is_none()));
    // Ids are unique and increasing even though the writer hands them out.
    assert!(ev.windows(2).all(|w| w[0].id < w[1].id));
    store.shutdown();
}

/// A channel's status says `recording` from its first segment on, through
/// every rollover: the next segment opens with the frame that closes the
/// last, and a reader between the two (a dashboard, `/metrics`, a peer's
/// failback) must not see the channel stop. An observer polls the status
/// as fast as it can while 60 one-second segments are written.
#[test]
fn a_channel_stays_recording_through_every_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let mut entry = vec![0u8; 86];
    entry[4..8].copy_from_slice(b"avc1");
    let entry = Arc::new(SampleEntry::parse(entry).unwrap());
    let mut cfg = common::store_config(dir.path(), Mode::Continuous);
    cfg.segment_duration = std::time::Duration::from_secs(1);
    let (store, _) = Store::open(cfg, Arc::new(SystemClock)).unwrap();
    let status = store.status.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut polls, mut seen_recording, mut stops) = (0u64, false, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let s = status.lock().unwrap().get(&1).cloned();
                polls += 1;
                match s.map(|s| (s.state, s.segments_written)) {
                    Some((RecordingState::Recording, _)) => seen_recording = true,
                    Some((state, segments)) if seen_recording => stops.push((state, segments)),
                    _ => {}
                }
            }
            (polls, seen_recording, stops)
        })
    };
    let tx = store.sender();
    for n in 0..60 * FPS {
        tx.send(Command::Frame(frame(n, &entry))).unwrap();
    }
    store.sync();
    done.store(true, std::sync::atomic::Ordering::Release);
    let (polls, seen_recording, stops) = observer.join().unwrap();
    let written = store.status.lock().unwrap()[&1].segments_written;
    assert!(written >= 55, "one-second segments rolled over: {written}");
    assert!(seen_recording && polls > 1000, "the observer watched ({polls} polls)");
    assert!(
        stops.is_empty(),
        "the status left `recording` at a rollover: {:?}",
        &stops[..stops.len().min(5)]
    );
    store.shutdown();
}
