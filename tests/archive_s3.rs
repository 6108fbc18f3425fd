//! The S3 archive tier against a real S3-compatible server: moto's server
//! (`moto_server`, installed by `scripts/test` as root into a venv; see
//! `docs/archive.md` for why moto), started by each test on a free port.
//! Footage goes through the real store on simulated time (stamped frames,
//! as in `event_window`), then the archiver's passes are run at chosen
//! times: archive after the threshold, frames across both tiers identical
//! to the originals (audit: 0 lost), an upload cut by a dropped task or a
//! killed server resumes, the local copy goes only after verification, and
//! `tandem archive ls|export` read the bucket with the NVR stopped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tandem::archive::task::Archiver;
use tandem::archive::uploads;
use tandem::audit::audit_store;
use tandem::config::archive::{ArchiveCredentials, ArchiveSettings};
use tandem::nal::FrameStamp;
use tandem::recording::Mode;
use tandem::store::{db, segment_path, Command as StoreCommand, Frame, SampleEntry, Store, StoreConfig};
use tandem::time::{SystemClock, Time90k};

const FPS: i64 = 10;
const GOP: i64 = 10;
const T0_US: i64 = 1_800_000_000_000_000;
/// 20-s segments of 200 frames of ~32 KiB: 6.4 MB each, two parts of 5 MiB
/// (the least S3 takes) and the rest, so every upload is multipart.
const FRAME_PAD: usize = 32 << 10;
const PART: usize = 5 << 20;

fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANDEM_MOTO_SERVER") {
        return Some(p.into());
    }
    let venv = PathBuf::from("/opt/tandem-test/moto/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    common::have_program("moto_server").then(|| "moto_server".into())
}

/// A moto S3 server on a free port with one bucket, killed when dropped.
struct S3 {
    proc: Option<common::Proc>,
    bin: PathBuf,
    port: u16,
    logdir: PathBuf,
}

impl S3 {
    fn start(logdir: &Path) -> Option<S3> {
        let bin = moto_server();
        if !common::prerequisite(bin.is_some(), "moto_server (moto[server] from PyPI)") {
            return None;
        }
        let mut s = S3 {
            proc: None,
            bin: bin.unwrap(),
            port: common::free_port(),
            logdir: logdir.to_path_buf(),
        };
        s.restart();
        Some(s)
    }

    /// (Re)starts the server on the same port; moto keeps its state in
    /// memory, so the bucket is created again.
    fn restart(&mut self) {
        self.proc = Some(common::spawn(
            "moto",
            Command::new(&self.bin).args(["-H", "127.0.0.1", "-p", &self.port.to_string()]),
            &self.logdir,
        ));
        let url = format!("http://127.0.0.1:{}/archive", self.port);
        common::wait_for(Duration::from_secs(30), "moto to answer", || {
            common::http_anonymous("PUT", &url, &[], b"").is_ok_and(|r| r.status == 200)
        });
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn credentials(dir: &Path) -> PathBuf {
    let p = dir.join("s3-credentials");
    std::fs::write(
        &p,
        "[default]\naws_access_key_id = test\naws_secret_access_key = test\n",
    )
    .unwrap();
    p
}

fn settings(s3: &S3, creds: &Path, after_s: u64, bandwidth: u64) -> ArchiveSettings {
    ArchiveSettings {
        bucket: "archive".into(),
        prefix: "site".into(),
        endpoint: Some(s3.endpoint()),
        region: "us-east-1".into(),
        after: Duration::from_secs(after_s),
        max_age: Some(Duration::from_secs(3600)),
        bandwidth,
        credentials: ArchiveCredentials::File(creds.to_path_buf()),
        virtual_hosted: false,
    }
}

fn frame_data(n: i64) -> Vec<u8> {
    let sei = FrameStamp {
        camera_id: 7,
        seq: n as u64,
        capture_unix_micros: T0_US + n * 1_000_000 / FPS,
        boot_id: 1,
    }
    .to_h264_sei();
    let mut slice = vec![0x65, 0x88, 0x84];
    slice.extend((0..FRAME_PAD).map(|i| (i as i64 * 31 + n) as u8 | 1));
    let mut data = Vec::new();
    for nal in [&sei[..], &slice[..]] {
        data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        data.extend_from_slice(nal);
    }
    data
}

fn at(n: i64) -> Time90k {
    Time90k::from_unix_micros(T0_US + n * 1_000_000 / FPS)
}

/// Records `secs` of one channel into a new store (simulated time).
fn record(dir: &Path, secs: i64) -> Store {
    let mut entry = vec![0u8; 86];
    entry[4..8].copy_from_slice(b"avc1");
    let entry = Arc::new(SampleEntry::parse(entry).unwrap());
    let cfg = StoreConfig {
        write_buffer: 64 << 20,
        ..common::store_config(dir, Mode::Continuous)
    };
    let (store, _) = Store::open(cfg, Arc::new(SystemClock)).unwrap();
    let tx = store.sender();
    for n in 0..secs * FPS {
        tx.send(StoreCommand::Frame(Frame {
            channel: 1,
            run: 1,
            time: at(n),
            key: n % GOP == 0,
            sample_entry: entry.clone(),
            data: frame_data(n).into(),
            capture_offset: None,
        }))
        .unwrap();
        if n % 100 == 99 {
            // Keeps the write buffer from dropping frames.
            store.sync();
        }
    }
    store.sync();
    store
}

fn rows(dir: &Path) -> Vec<db::SegmentRow> {
    let c = db::open_readonly(&dir.join("index.db")).unwrap();
    let mut v: Vec<db::SegmentRow> = [db::COMPLETE, db::ARCHIVED, db::WRITING]
        .iter()
        .flat_map(|&s| {
            if s == db::COMPLETE {
                let ids: Vec<i64> = c
                    .prepare("SELECT id FROM segment WHERE state = 1")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                ids.into_iter().filter_map(|id| db::segment(&c, id).unwrap()).collect()
            } else {
                db::segments_in_state(&c, s).unwrap()
            }
        })
        .collect();
    v.sort_by_key(|r| r.id);
    v
}

/// What most tests start from: a moto server, `secs` of one channel
/// recorded into a store under `data`, the bucket's credentials and a
/// runtime for the archiver's passes. (Fields in the order they drop.)
struct Fixture {
    rt: tokio::runtime::Runtime,
    store: Store,
    creds: PathBuf,
    data: PathBuf,
    s3: S3,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// None (the test skips) when moto is missing outside CI.
    fn new(secs: i64) -> Option<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3::start(dir.path())?;
        let data = dir.path().join("data");
        let store = record(&data, secs);
        let creds = credentials(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Some(Fixture {
            rt,
            store,
            creds,
            data,
            s3,
            dir,
        })
    }

    /// An archiver as the tests drive it: small multipart parts (so a few MB
    /// take several) and no grace before a verified local copy is unlinked.
    fn archiver(&self, after_s: u64, bandwidth: u64) -> Archiver {
        let mut a = Archiver::open(&self.data, &settings(&self.s3, &self.creds, after_s, bandwidth)).unwrap();
        a.set_part_size(PART);
        a.set_unlink_grace(Duration::ZERO);
        a
    }
}

/// Every frame the store serves for [a, b) of the run, byte for byte
/// against what was recorded.
fn assert_frames_identical(store: &Store, a: i64, b: i64) {
    let footage = store.reader().footage(1, at(a), at(b)).unwrap();
    assert!(footage.damaged.is_empty(), "{:?}", footage.damaged);
    let mut seen = 0;
    for seg in &footage.segments {
        let f = std::fs::File::open(&seg.path).unwrap();
        for fr in seg.frames.iter().filter(|fr| fr.time >= at(a) && fr.time < at(b)) {
            use std::os::unix::fs::FileExt;
            let n = (fr.time.as_unix_micros() - T0_US) * FPS / 1_000_000;
            let mut buf = vec![0u8; fr.size as usize];
            f.read_exact_at(&mut buf, fr.offset).unwrap();
            assert!(buf == frame_data(n), "frame {n} differs (from {})", seg.path.display());
            seen += 1;
        }
    }
    assert_eq!(seen, b - a, "frames served for [{a}, {b})");
}

#[test]
fn archives_after_the_threshold_and_serves_both_tiers_and_the_bucket_alone() {
    let Some(f) = Fixture::new(130) else { return };
    // At 130 s with after = 60 s: the segments that ended by 70 s go.
    let mut a = f.archiver(60, 1 << 30);
    let r = f.rt.block_on(a.pass(at(130 * FPS))).unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    let all = rows(&f.data);
    let archived: Vec<&db::SegmentRow> = all.iter().filter(|r| r.state == db::ARCHIVED).collect();
    assert_eq!(
        archived.len(),
        3,
        "segments ending at 20, 40, 60 s: {:?}",
        all.iter().map(|r| (r.id, r.state, r.end)).collect::<Vec<_>>()
    );
    assert_eq!(r.uploaded, 3);
    assert!(r.bytes > 3 * 6_000_000, "{r:?}");
    for row in &all {
        let local = segment_path(&f.data, 1, row.id).exists();
        assert_eq!(
            local,
            row.state != db::ARCHIVED,
            "segment {} (state {})",
            row.id,
            row.state
        );
        if row.state != db::ARCHIVED {
            assert!(row.end > at(60 * FPS));
        }
    }
    // A second pass at the same time has nothing more to do.
    let again = f.rt.block_on(a.pass(at(130 * FPS))).unwrap();
    assert_eq!((again.uploaded, again.bytes), (0, 0));

    // Both tiers as one: the listing is one run, every frame identical,
    // and the audit finds none lost across the boundary at 60 s.
    let runs = f.store.reader().recordings(1, at(0), at(130 * FPS)).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_frames_identical(&f.store, 30 * FPS, 90 * FPS);
    let audit = audit_store(&f.store.reader(), 1, at(0), at(120 * FPS)).unwrap();
    assert_eq!(
        (audit.frames_found, audit.cameras[0].frames_lost, audit.duplicates),
        (1200, 0, 0)
    );
    // Only the frames of the clip were fetched, not the whole objects.
    let cached: u64 = std::fs::read_dir(f.data.join("archive-cache/ch1"))
        .unwrap()
        .map(|e| {
            use std::os::unix::fs::MetadataExt;
            e.unwrap().metadata().unwrap().blocks() * 512
        })
        .sum();
    assert!(cached > 0);
    // A clip across the tiers through the mp4 builder, audited.
    let footage = f.store.reader().footage(1, at(50 * FPS), at(70 * FPS)).unwrap();
    let clip = tandem::mp4::clip::build(&footage.segments, &footage.damaged, at(50 * FPS), at(70 * FPS)).unwrap();
    let mp4 = f.dir.path().join("across.mp4");
    let mut bytes = Vec::new();
    let sources = tandem::export::open_sources(&clip, 0, clip.len, 8).unwrap();
    tandem::export::write_range(&clip, sources, 0, clip.len, 1 << 20, |b| {
        bytes.extend_from_slice(&b);
        true
    })
    .unwrap();
    std::fs::write(&mp4, &bytes).unwrap();
    let r = tandem::audit::audit_mp4(&mp4).unwrap();
    assert_eq!(
        (r.frames_found, r.cameras[0].first_seq, r.cameras[0].frames_lost),
        (200, 500, 0)
    );

    // The NVR stopped: the bucket alone lists and exports.
    f.store.shutdown();
    drop(a);
    let bucket = [
        "--url",
        "s3://archive/site",
        "--endpoint",
        &f.s3.endpoint(),
        "--credentials",
        f.creds.to_str().unwrap(),
    ];
    let mut ls = vec!["archive", "ls", "--json"];
    ls.extend_from_slice(&bucket);
    let out = common::run_tandem(&ls);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let days: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(days.as_array().unwrap().len(), 1, "{days}");
    assert_eq!(days[0]["segments"], 3);
    assert_eq!(days[0]["frames"], 600);
    let exported = f.dir.path().join("export.mp4");
    let (start, end) = (at(15 * FPS).to_rfc3339(), at(45 * FPS).to_rfc3339());
    let clip = common::clip_args(1, &start, &end, &exported);
    let mut export = vec!["archive", "export"];
    export.extend(clip.iter().map(String::as_str));
    export.extend_from_slice(&bucket);
    let out = common::run_tandem(&export);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = tandem::audit::audit_mp4(&exported).unwrap();
    // From the key frame at 15 s to the last frame before 45 s.
    assert_eq!(
        (r.frames_found, r.cameras[0].first_seq, r.cameras[0].frames_lost),
        (300, 150, 0)
    );
}

#[test]
fn an_interrupted_upload_keeps_row_and_file_and_resumes() {
    let Some(mut f) = Fixture::new(45) else { return };
    let now = at(45 * FPS);
    let before = rows(&f.data);
    let first = before.iter().find(|r| r.state == db::COMPLETE).unwrap().clone();
    let index = f.data.join("index.db");
    let saved = || uploads::saved(&db::open_readonly(&index).unwrap(), first.id).unwrap();
    let still_local = || {
        let row = db::segment(&db::open_readonly(&index).unwrap(), first.id)
            .unwrap()
            .unwrap();
        assert_eq!(row.state, db::COMPLETE, "nothing marked before verification");
        assert!(segment_path(&f.data, 1, first.id).exists(), "the local copy stays");
    };

    // 1. The server killed mid-upload (1 MiB/s for 6.4 MB in 5-MiB parts):
    // the pass reports the error, and marks and deletes nothing.
    let mut a = f.archiver(10, 1 << 20);
    let r = f.rt.block_on(async {
        let pass = a.pass(now);
        tokio::pin!(pass);
        tokio::select! {
            r = &mut pass => panic!("finished before the kill: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(1500)) => {}
        }
        f.s3.kill();
        pass.await
    });
    let r = r.unwrap();
    assert_eq!(r.uploaded, 0);
    assert!(!r.errors.is_empty(), "{r:?}");
    still_local();
    let lost = saved().expect("the upload in progress is recorded");
    drop(a);

    // 2. Back up, but empty (moto keeps nothing): the recorded upload is
    // unknown there, so it starts again at once; the task is dropped (as a
    // kill would cut it) once the server acknowledged its first part.
    f.s3.restart();
    let mut a = f.archiver(10, 1 << 20);
    let cut = f.rt.block_on(async {
        let pass = a.pass(now);
        tokio::pin!(pass);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                r = &mut pass => panic!("finished before the cut: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if saved().is_some_and(|s| s.upload_id != lost.upload_id && s.parts.len() == 1) {
                return true;
            }
        }
        false
    });
    assert!(cut, "a new upload's first part was never acknowledged: {:?}", saved());
    drop(a);
    still_local();

    // 3. A restarted archiver resumes at the second part: the first 5 MiB
    // are not sent again; it verifies the whole object, and only then deletes.
    let mut a = f.archiver(10, 1 << 30);
    let r = f.rt.block_on(a.pass(now)).unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.uploaded, 1, "the segment that ended at 20 s");
    assert_eq!(r.resumed_bytes, PART as u64, "{r:?}");
    assert_eq!(r.local_deleted, 1);
    assert!(!segment_path(&f.data, 1, first.id).exists());
    assert!(saved().is_none(), "the finished upload is forgotten");
    assert_frames_identical(&f.store, 0, 40 * FPS);
    f.store.shutdown();
}

#[test]
fn verification_rejects_an_object_that_differs_and_expiry_keeps_rows_and_objects_in_step() {
    let Some(f) = Fixture::new(65) else { return };
    let mut a = f.archiver(10, 1 << 30);
    assert_eq!(f.rt.block_on(a.pass(at(45 * FPS))).unwrap().uploaded, 1);
    let c = db::open_readonly(&f.data.join("index.db")).unwrap();
    let id = db::segments_in_state(&c, db::ARCHIVED).unwrap()[0].id;
    // A second segment archived, then its row lost as an expiry cut
    // between row and object would leave it: the sweep finds the object.
    assert_eq!(f.rt.block_on(a.pass(at(65 * FPS))).unwrap().uploaded, 1);
    let leaked = db::segments_in_state(&c, db::ARCHIVED).unwrap()[1].clone();
    let leaked_key = tandem::archive::rows::archive_of(&c, leaked.id).unwrap().unwrap().0;
    db::open(&f.data.join("index.db"))
        .unwrap()
        .execute("DELETE FROM segment WHERE id = ?1", [leaked.id])
        .unwrap();
    let (key, sha) = tandem::archive::rows::archive_of(&c, id).unwrap().unwrap();
    let sha: [u8; 32] = sha.try_into().unwrap();
    let size = db::segment(&c, id).unwrap().unwrap().bytes;
    let key = object_store::path::Path::from(key);
    f.rt.block_on(a.verify(&key, size, &sha)).unwrap();
    // The same size, one byte changed: refused.
    let store_client = a.location().client().unwrap();
    f.rt.block_on(async {
        use object_store::ObjectStoreExt;
        let mut b = store_client.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
        b[1000] ^= 1;
        store_client.put(&key, b.into()).await.unwrap();
    });
    let e = f.rt.block_on(a.verify(&key, size, &sha)).unwrap_err();
    assert!(e.to_string().contains("SHA-256"), "{e}");
    // Served from the changed object, the frame's CRC refuses it: the
    // segment is reported damaged, never served with the wrong byte.
    let footage = f.store.reader().footage(1, at(0), at(20 * FPS)).unwrap();
    assert!(footage.segments.is_empty(), "{:?}", footage.segments.len());
    assert_eq!(footage.damaged.len(), 1, "{:?}", footage.damaged);
    assert!(
        footage.damaged[0].why.contains("does not match its record"),
        "{:?}",
        footage.damaged
    );

    // Expiry (max_age 1 h) when the first segment (ended at 20 s) is past
    // it and the second (40 s) is not: the row goes, then its object and
    // its day index entry; the leaked second one stays listed.
    let gone = |k: &str| {
        use object_store::ObjectStoreExt;
        let k = object_store::path::Path::from(k);
        matches!(
            f.rt.block_on(store_client.head(&k)),
            Err(object_store::Error::NotFound { .. })
        )
    };
    // (`after` 2 h from here on: nothing more is uploaded meanwhile.)
    let mut a = Archiver::open(&f.data, &settings(&f.s3, &f.creds, 7200, 1 << 30)).unwrap();
    let r = f.rt.block_on(a.pass(at(30 * FPS) + 3600 * 90_000)).unwrap();
    assert_eq!((r.uploaded, r.expired, r.swept), (0, 1, 0), "{r:?}");
    assert!(tandem::archive::rows::archive_of(&c, id).unwrap().is_none());
    assert!(gone(key.as_ref()) && !gone(&leaked_key));
    // An hour later the sweep finds the object no row points at.
    let r = f.rt.block_on(a.pass(at(65 * FPS) + 2 * 3600 * 90_000)).unwrap();
    assert_eq!((r.uploaded, r.expired, r.swept), (0, 0, 1), "{r:?}");
    assert!(gone(&leaked_key));
    let days =
        f.rt.block_on(tandem::archive::offline::days(a.location(), a.nvr(), None))
            .unwrap();
    assert!(days.is_empty(), "{days:?}");
    f.store.shutdown();
}

#[test]
fn bench_archive_uploads_everything_under_each_cap_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The bench starts its own server; checked here only so the test skips
    // (or fails in CI) with the reason when moto is missing.
    let Some(bin) = moto_server() else {
        common::prerequisite(false, "moto_server (moto[server] from PyPI)");
        return;
    };
    let data = dir.path().join("data");
    let r = common::bench_json(
        dir.path(),
        &[
            "archive",
            "--channels",
            "2",
            "--seconds",
            "25",
            "--bitrate-kbps",
            "2000",
            "--segment-seconds",
            "10",
            "--caps",
            "0,4MiB",
            "--moto",
            bin.to_str().unwrap(),
            "--dir",
            data.to_str().unwrap(),
        ],
    );
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{r}");
    for x in results {
        // 10-s segments: two closed per channel, the third still open.
        assert_eq!(x["segments"], 4, "{x}");
        assert_eq!(x["frames_recorded"], 2 * 25 * 25);
        assert_eq!(x["frames_found"], x["frames_recorded"], "{x}");
        assert_eq!(x["frames_lost"], 0);
        assert!(x["errors"].as_array().unwrap().is_empty(), "{x}");
        assert!(x["bytes"].as_u64().unwrap() > 4 * 2_000_000, "{x}");
    }
    assert_eq!(results[1]["cap_bytes_per_s"], 4 << 20);
}

#[test]
fn a_running_nvr_archives_and_serves_a_clip_across_both_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = S3::start(dir.path()) else { return };
    let creds = credentials(dir.path());
    let (_cam, urls) = common::sim_camera(dir.path(), 1, &[]);
    let data = dir.path().join("data");
    let cfg = format!(
        "{}[archive]\nurl = \"s3://archive/site\"\nendpoint = \"{}\"\nafter = \"1s\"\nbandwidth = \"8MiB/s\"\ncredentials = \"{}\"\n",
        common::recorder_config(&data, &[("c", &urls[0])]),
        s3.endpoint(),
        creds.display()
    )
    .replace("min_free = \"10 MB\"\n", "min_free = \"10 MB\"\nsegment_duration = \"2s\"\n");
    let nvr = common::nvr(dir.path(), "nvr", &cfg);
    let archived = || {
        db::open_readonly(&data.join("index.db"))
            .and_then(|c| db::segments_in_state(&c, db::ARCHIVED))
            .map(|v| v.len())
            .unwrap_or(0)
    };
    // The archiver's first pass runs at start, the next 10 s later.
    common::wait_for(Duration::from_secs(60), "segments archived", || archived() >= 3);
    // What an operator sees of it.
    let status: serde_json::Value = common::http_get(&format!("{}/api/v1/archive", nvr.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["bucket"], "archive", "{status}");
    assert_eq!(status["after_s"], 1.0, "{status}");
    assert!(status["index"]["archived_segments"].as_u64().unwrap() >= 3, "{status}");
    assert!(status["index"]["archived_bytes"].as_u64().unwrap() > 0, "{status}");
    assert!(status["last_pass"]["passes"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["last_pass"]["report"]["uploaded"].is_u64(), "{status}");
    let c = db::open_readonly(&data.join("index.db")).unwrap();
    // Local copies go a grace (10 s) after their rows, at the next pass.
    let first_three: Vec<i64> = db::segments_in_state(&c, db::ARCHIVED).unwrap()[..3]
        .iter()
        .map(|r| r.id)
        .collect();
    common::wait_for(
        Duration::from_secs(40),
        "local copies of archived segments deleted",
        || first_three.iter().all(|id| !segment_path(&data, 1, *id).exists()),
    );
    let first = db::segments_in_state(&c, db::ARCHIVED).unwrap()[0].start;
    // From the first archived frame to a second ago: both tiers, one clip.
    let (start, end) = (first.to_rfc3339(), common::rfc3339_offset(-1.0));
    let out = dir.path().join("clip.mp4");
    common::export("server", &nvr.base, 1, &start, &end, &out);
    let r = tandem::audit::audit_mp4(&out).unwrap();
    assert!(r.frames_found > 100, "{r:?}");
    assert_eq!(
        (r.cameras[0].frames_lost, r.duplicates),
        (0, 0),
        "{:?}",
        r.cameras[0].gaps
    );
    let local = db::segments_overlapping(&c, 1, first, Time90k::parse_rfc3339(&end).unwrap())
        .unwrap()
        .iter()
        .filter(|s| s.state != db::ARCHIVED)
        .count();
    assert!(local > 0, "the clip should end in local footage");
    if common::have_program("ffmpeg") {
        common::assert_decodes_cleanly(&out, "clip across the tiers");
    }

    // The NVR stopped: the archived footage of a real camera, from the
    // bucket alone, is a clip that decodes and loses nothing.
    let mut nvr = nvr;
    assert!(nvr.proc.terminate().success());
    let c = db::open_readonly(&data.join("index.db")).unwrap();
    let archived = db::segments_in_state(&c, db::ARCHIVED).unwrap();
    let (a, b) = (archived[0].start, archived.last().unwrap().end);
    let exported = dir.path().join("from-bucket.mp4");
    let (start, end) = (a.to_rfc3339(), b.to_rfc3339());
    let endpoint = s3.endpoint();
    let mut export = vec![
        "archive",
        "export",
        "--url",
        "s3://archive/site",
        "--endpoint",
        &endpoint,
        "--credentials",
        creds.to_str().unwrap(),
    ];
    let clip = common::clip_args(1, &start, &end, &exported);
    export.extend(clip.iter().map(String::as_str));
    let out = common::run_tandem(&export);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = tandem::audit::audit_mp4(&exported).unwrap();
    let frames: u32 = archived.iter().map(|s| s.frames).sum();
    assert_eq!(r.frames_found, u64::from(frames), "{r:?}");
    assert_eq!(
        (r.cameras[0].frames_lost, r.duplicates),
        (0, 0),
        "{:?}",
        r.cameras[0].gaps
    );
    if common::have_program("ffmpeg") {
        common::assert_decodes_cleanly(&exported, "export from the bucket alone");
    }
    drop(s3);
}

#[test]
fn a_segment_whose_file_is_cut_short_stays_local_and_the_rest_go() {
    let Some(f) = Fixture::new(65) else { return };
    let c = db::open_readonly(&f.data.join("index.db")).unwrap();
    let first = db::segment(&c, 1).unwrap().unwrap();
    assert_eq!(first.state, db::COMPLETE);
    // Cut behind the index's back (as a disk fault would).
    let file = std::fs::File::options()
        .write(true)
        .open(segment_path(&f.data, 1, first.id))
        .unwrap();
    file.set_len(first.bytes / 2).unwrap();
    let mut a = f.archiver(1, 1 << 30);
    let r = f.rt.block_on(a.pass(at(65 * FPS))).unwrap();
    assert_eq!(r.uploaded, 2, "{r:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(r.errors[0].contains(&format!("segment {}", first.id)), "{r:?}");
    assert_eq!(db::segment(&c, first.id).unwrap().unwrap().state, db::COMPLETE);
    assert!(segment_path(&f.data, 1, first.id).exists());
    f.store.shutdown();
}
