//! The failback transfer against a real receiving Tandem: the import endpoint
//! refuses requests without the peer token and stores nothing; a transfer cut
//! halfway resumes where it stopped; sending the same footage twice stores it
//! once; and the bandwidth cap is honoured (measured).

mod common;
use common::*;
use std::time::{Duration, Instant};
use tandem::failover::transfer::{self, Job, Worker};
use tandem::time::Time90k;

const TOKEN: &str = "peer-token-for-tests-0001";

#[test]
fn import_is_authenticated_resumable_idempotent_and_paced() {
    let dir = tempfile::tempdir().unwrap();
    let (_cam, urls) = sim_camera(dir.path(), 1, &["--bitrate-kbps", "2000"]);
    // A: records ~6 s in 2 s segments, then stops cleanly.
    let a_dir = record_in_short_segments(dir.path(), "a", &urls[0], 150);
    // B: the receiver, with an idle channel 3 and the peer token.
    let b = nvr(
        dir.path(),
        "b",
        &format!(
            "[storage]\ndir = \"{}\"\nmin_free = \"10 MB\"\n[http]\nlisten = \"{{listen}}\"\n\
             [failover]\npeer_token = \"{TOKEN}\"\n[[channel]]\nnumber = 3\n",
            dir.path().join("b-data").display()
        ),
    );
    let host = b.base.trim_start_matches("http://").to_string();
    let segs = tandem::store::Reader::new(a_dir.clone())
        .segment_frames(1, Time90k(0), Time90k(i64::MAX))
        .unwrap();
    assert!(segs.len() >= 3, "{} segments", segs.len());
    let first = &segs[0];
    let bytes = std::fs::read(&first.path).unwrap();

    // 1. No token, or a wrong one: refused, nothing staged.
    let url = format!("{}/api/v1/import/abc123/{}", b.base, first.id);
    for auth in [None, Some("Bearer wrong-token-wrong-token")] {
        let h: Vec<(&str, &str)> = auth.map(|v| vec![("Authorization", v)]).unwrap_or_default();
        assert_eq!(
            http_request("PUT", &format!("{url}?offset=0"), &h, &bytes[..1000])
                .unwrap()
                .status,
            401
        );
        assert_eq!(http_request("GET", &url, &h, b"").unwrap().status, 401);
        let done = format!("{url}/complete?channel=3&length={}", bytes.len());
        assert_eq!(http_request("POST", &done, &h, b"").unwrap().status, 401);
    }
    assert!(
        !dir.path().join("b-data/import").exists()
            || std::fs::read_dir(dir.path().join("b-data/import")).unwrap().count() == 0
    );

    // 2. A cut transfer: the first half of segment 1 arrives, then the link drops.
    let auth = format!("Bearer {TOKEN}");
    let origin = {
        let c = tandem::store::db::open(&a_dir.join("index.db")).unwrap();
        tandem::store::db::nvr_id(&c).unwrap()
    };
    let half = bytes.len() / 2;
    let put = format!("{}/api/v1/import/{origin}/{}?offset=0", b.base, first.id);
    let r = http_request("PUT", &put, &[("Authorization", &auth)], &bytes[..half]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["received"], half as u64);
    // A piece at the wrong offset is refused with where to resume.
    let wrong = put.replace("offset=0", "offset=5");
    let r = http_request("PUT", &wrong, &[("Authorization", &auth)], &bytes[..10]).unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(r.json().unwrap()["received"], half as u64);

    // 3. The worker sends everything at 400 kB/s and resumes segment 1 at `half`.
    let total: u64 = segs.iter().map(|s| std::fs::metadata(&s.path).unwrap().len()).sum();
    let rate = 400_000u64;
    let job = Job {
        rule: "test".into(),
        local_channel: 1,
        remote_channel: 3,
        target: host.clone(),
        start: Time90k(0),
        end: Time90k(i64::MAX / 2),
    };
    transfer::queue(&a_dir, &job).unwrap();
    let (wake, rx) = std::sync::mpsc::channel();
    let w = Worker {
        dir: a_dir.clone(),
        origin: origin.clone(),
        token: TOKEN.into(),
        rate,
        tls: None,
        tls_targets: Vec::new(),
    };
    let started = Instant::now();
    let t = std::thread::spawn(move || w.run(rx));
    wait_for(Duration::from_secs(60), "transfer done", || {
        transfer::list(&a_dir).unwrap()[0].state == transfer::TransferState::Done
    });
    let took = started.elapsed().as_secs_f64();
    let sent = transfer::list(&a_dir).unwrap()[0].bytes_sent;
    assert_eq!(sent, total - half as u64, "resumed: the first half was not sent again");
    let expect = sent as f64 / rate as f64;
    eprintln!("sent {sent} bytes in {took:.2} s at a cap of {rate} B/s (ideal {expect:.2} s)");
    assert!(
        took >= expect * 0.9,
        "faster than the cap: {took:.2} s for {sent} bytes"
    );
    let a_frames: u64 = segs.iter().map(|s| s.frames.len() as u64).sum();
    let audit = audit_json(&["--data", dir.path().join("b-data").to_str().unwrap(), "--channel", "3"]);
    assert_eq!(audit["frames_found"], a_frames, "{audit}");
    assert_eq!(audit["frames_lost"], 0);

    // 4. Sending it all again stores nothing twice.
    transfer::queue(&a_dir, &job).unwrap();
    wake.send(()).unwrap();
    wait_for(Duration::from_secs(30), "second transfer done", || {
        transfer::list(&a_dir).unwrap()[1].state == transfer::TransferState::Done
    });
    assert_eq!(transfer::list(&a_dir).unwrap()[1].bytes_sent, 0);
    let again = audit_json(&["--data", dir.path().join("b-data").to_str().unwrap(), "--channel", "3"]);
    assert_eq!(again["frames_found"], a_frames);
    assert_eq!(again["duplicates"], 0);
    drop(wake);
    t.join().unwrap();
}
