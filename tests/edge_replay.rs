//! Edge storage and ONVIF replay, both ends, on loopback: the simulated
//! camera (in process) records whether or not anyone watches; Tandem's replay
//! client gets back exactly the frames it stamped (0xABAC capture time = SEI
//! stamp, no sequence gap, key frame first, T last) much faster than real
//! time; a range partly outside the ring returns what is there, one wholly
//! outside is "not available" (not transient); `Rate-Control: yes` paces
//! the replay in real time; GStreamer's rtspsrc in ONVIF
//! mode replays the same footage; live sessions carry RTCP sender reports
//! whose NTP time is the capture time of the frame at that RTP timestamp.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tandem::nal::FrameStamp;
use tandem::replay::{self, ReplayError, ReplayFrame, ReplaySource};
use tandem::sim::{self, SimOptions, SimServer, VideoSpec};
use tandem::time::Time90k;

const FPS: u32 = 25;
const SPEC: VideoSpec = VideoSpec {
    width: 320,
    height: 180,
    fps: FPS,
    gop: 25,
    bitrate_kbps: 300,
};
const CAMERA_ID: u32 = 7;

async fn camera(edge_storage: Option<u32>) -> SimServer {
    let video = tokio::task::spawn_blocking(|| sim::encode_loop(&SPEC))
        .await
        .unwrap()
        .unwrap();
    let opts = SimOptions {
        count: 1,
        first_id: CAMERA_ID,
        setup_delay: Duration::ZERO,
        auth: None,
        switch: None,
        motion: None,
        ignore_key_frame_requests: false,
    };
    sim::start_with_edge("127.0.0.1:0".parse().unwrap(), Arc::new(video), opts, edge_storage)
        .await
        .unwrap()
}

fn source(server: &SimServer) -> ReplaySource {
    ReplaySource {
        url: server.url(1).parse().unwrap(),
        credentials: None,
        max_frame_bytes: 8 << 20,
    }
}

fn now() -> Time90k {
    Time90k::from_system(std::time::SystemTime::now())
}

const SEC: i64 = 90_000;

async fn replay_all(server: &SimServer, start: Time90k, end: Time90k) -> Vec<ReplayFrame> {
    let mut s = replay::open(&source(server), start, end).await.unwrap();
    let mut frames = Vec::new();
    while let Some(f) = s.next().await {
        frames.push(f.unwrap());
        assert!(frames.len() < 10_000, "endless replay");
    }
    frames
}

fn stamp(f: &ReplayFrame) -> FrameStamp {
    FrameStamp::from_frame(&f.data).expect("every replayed frame carries its SEI stamp")
}

/// The frames form one contiguous, correctly stamped run from a key frame.
fn assert_run(frames: &[ReplayFrame]) {
    assert!(!frames.is_empty());
    assert!(
        frames[0].key && frames[0].flags.clean_point,
        "first frame is a key frame"
    );
    let stamps: Vec<FrameStamp> = frames.iter().map(stamp).collect();
    for (f, s) in frames.iter().zip(&stamps) {
        assert_eq!(s.camera_id, CAMERA_ID);
        assert_eq!(
            f.capture,
            Time90k::from_unix_micros(s.capture_unix_micros),
            "0xABAC capture time equals the SEI stamp (seq {})",
            s.seq
        );
        assert_eq!(f.key, f.flags.clean_point);
        assert!(!f.flags.discontinuity && !f.flags.end_of_run, "no hole in the ring");
    }
    for w in stamps.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "contiguous sequence numbers");
        assert_eq!(w[1].boot_id, w[0].boot_id);
    }
    let last = frames.last().unwrap();
    assert!(last.flags.terminal, "T on the last frame");
    assert_eq!(frames.iter().filter(|f| f.flags.terminal).count(), 1);
}

/// `t` rounded down to the millisecond, the resolution of `Range: clock=`:
/// a range asked for on that grid reaches the camera exactly, so the
/// assertions on both of its ends hold whatever the frames' phase.
fn on_ms_grid(t: Time90k) -> Time90k {
    Time90k(t.0 - t.0.rem_euclid(90))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_a_past_interval_nobody_watched_faster_than_real_time() {
    let server = camera(Some(60)).await;
    // Nobody watches: the camera records on its own.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(server.total_sessions(), 0);
    let end = on_ms_grid(now() + -2 * SEC);
    let start = end + -5 * SEC;
    let t0 = Instant::now();
    let frames = replay_all(&server, start, end).await;
    let took = t0.elapsed();
    assert_run(&frames);
    assert!(frames[0].capture <= start, "starts at the key frame at/before start");
    assert!(frames[0].capture.0 > start.0 - SEC, "…no more than a GOP before it");
    let last = frames.last().unwrap().capture;
    assert!(
        last < end && last.0 >= end.0 - SEC / i64::from(FPS) - 1,
        "ends with the last frame before end ({last} for {end})"
    );
    let in_range = frames.iter().filter(|f| f.capture >= start && f.capture < end).count();
    assert!(in_range.abs_diff(5 * FPS as usize) <= 1, "{in_range} frames in 5 s");
    // Rate-Control: no — well under a third of the interval's real time.
    assert!(took < Duration::from_secs(5) / 3, "replay of 5 s took {took:?}");
    println!(
        "replayed {} frames (5 s) in {:?}: {:.0}x real time",
        frames.len(),
        took,
        5.0 / took.as_secs_f64()
    );
    // An end between milliseconds (what gap fill asks for: 90 kHz times):
    // half a millisecond after a frame's capture, that frame is the last
    // (the request's END, truncated to the millisecond, used to leave it out
    // when the end fell in the same millisecond: this test's old flake).
    let c = frames[frames.len() / 2].capture;
    for end in [c + 45, c + 1, c + 89] {
        let got = replay_all(&server, start, end).await;
        assert_run(&got);
        assert_eq!(got.last().unwrap().capture, c, "end {} ticks after a frame", end - c);
    }
    // Ending at or within a millisecond before a frame: the frame before it
    // is the last, and nothing captured at or after the end comes back
    // (the camera may send it, as END is rounded up; the client trims it).
    let before = frames[frames.len() / 2 - 1].capture;
    for end in [c, c + -1, c + -45, c + -89] {
        let got = replay_all(&server, start, end).await;
        assert_eq!(
            got.last().unwrap().capture,
            before,
            "end {} ticks before a frame",
            c - end
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_partly_outside_the_ring_returns_what_is_there() {
    let server = camera(Some(3)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let t = now();
    // On the millisecond grid, as in the test above: off it, the camera may
    // send a terminal frame in the sub-millisecond tail that `Range: clock=`
    // rounds up to, which the client trims, and the run then ends without T
    // (`replay::open`'s documented contract): up to one run in forty, a
    // window under 1 ms in each 40-ms frame interval. CI hit it once.
    let (start, end) = (t + -20 * SEC, on_ms_grid(t + -SEC));
    let frames = replay_all(&server, start, end).await;
    assert_run(&frames);
    // The ring holds only the last 3 s: it starts at its first key frame.
    assert!(frames[0].capture.0 >= t.0 - 4 * SEC, "{} vs now {t}", frames[0].capture);
    assert!(frames.last().unwrap().capture < end);
    assert!(frames.len() >= FPS as usize, "{} frames", frames.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_wholly_outside_is_not_available() {
    let server = camera(Some(3)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = now();
    let err = replay::open(&source(&server), t + -100 * SEC, t + -90 * SEC)
        .await
        .unwrap_err();
    match &err {
        ReplayError::NotAvailable { available, .. } => {
            let (a, b) = available.expect("the 457 answer names what the camera holds");
            assert!(a < b && b <= now() && a.0 > t.0 - 5 * SEC, "{a}..{b}");
        }
        e => panic!("want NotAvailable, got {e:?}"),
    }
    assert!(!err.is_transient(), "gapfill reports it lost, not retried");
    // A camera without edge storage cannot replay at all.
    let plain = camera(None).await;
    let err = replay::open(&source(&plain), t + -2 * SEC, t).await.unwrap_err();
    assert!(matches!(err, ReplayError::Unsupported { .. }), "{err:?}");
    assert!(!err.is_transient());
}

/// Without `Rate-Control: no` the camera replays in real time (here with
/// vendored retina's ONVIF play options directly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_control_yes_replays_in_real_time() {
    use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
    use retina::codec::{CodecItem, FrameFormat};
    let server = camera(Some(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let end = now() + -SEC;
    let start = end + -2 * SEC;
    let range = tandem::replay::onvif::ClockRange {
        start: Some(start),
        end: Some(end),
    };
    let mut session = Session::describe(server.url(1).parse().unwrap(), SessionOptions::default())
        .await
        .unwrap();
    session
        .setup(
            0,
            SetupOptions::default()
                .transport(Transport::Tcp(Default::default()))
                .frame_format(FrameFormat::MP4),
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut demuxed = session
        .play(PlayOptions::default().range(&range.format()).onvif_replay(true))
        .await
        .unwrap()
        .demuxed()
        .unwrap();
    demuxed.keep_header_extensions(4);
    let mut first: Option<(Instant, Time90k)> = None;
    let mut last: (Instant, Time90k);
    loop {
        let item = tokio::time::timeout(Duration::from_secs(5), demuxed.next())
            .await
            .expect("replay stalled")
            .unwrap()
            .unwrap();
        let CodecItem::VideoFrame(f) = item else { continue };
        let e = demuxed
            .header_extension(0, f.timestamp())
            .expect("0xABAC on every frame");
        let ext = tandem::replay::onvif::Extension::decode_data(&e.data).unwrap();
        let capture = tandem::replay::onvif::time_from_ntp(ext.ntp);
        let first = *first.get_or_insert((Instant::now(), capture));
        last = (Instant::now(), capture);
        if ext.flags.terminal {
            break;
        }
        // Never ahead of the recording's own pace (a frame of slack).
        let media = Duration::from_micros(((capture.0 - first.1 .0) * 100 / 9) as u64);
        assert!(
            first.0.elapsed() + Duration::from_millis(40) >= media,
            "ahead of real time"
        );
    }
    let (at, capture) = last;
    let (t_first, c_first) = first.unwrap();
    let media = (capture.0 - c_first.0) as f64 / SEC as f64;
    let wall = at.duration_since(t_first).as_secs_f64();
    assert!(media >= 1.9, "{media} s of media");
    assert!(
        (wall - media).abs() < 0.3,
        "real time: {media:.2} s of media took {wall:.2} s"
    );
    assert!(t0.elapsed() < Duration::from_secs(6));
}

/// Live sessions (TCP and UDP) carry sender reports: NTP = capture time of
/// the frame with that RTP timestamp, as retina surfaces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sessions_carry_sender_reports_with_capture_time() {
    use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
    use retina::codec::{CodecItem, FrameFormat};
    let server = camera(Some(10)).await;
    for udp in [false, true] {
        let mut session = Session::describe(server.url(1).parse().unwrap(), SessionOptions::default())
            .await
            .unwrap();
        let transport = if udp {
            Transport::Udp(Default::default())
        } else {
            Transport::Tcp(Default::default())
        };
        session
            .setup(
                0,
                SetupOptions::default()
                    .transport(transport)
                    .frame_format(FrameFormat::MP4),
            )
            .await
            .unwrap();
        let mut demuxed = session.play(PlayOptions::default()).await.unwrap().demuxed().unwrap();
        let mut reports: Vec<(i64, u64)> = Vec::new();
        let mut frames: Vec<(i64, i64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            let item = tokio::time::timeout(Duration::from_secs(5), demuxed.next())
                .await
                .expect("live stream stalled")
                .unwrap()
                .unwrap();
            match item {
                CodecItem::Rtcp(r) => {
                    if let Some(sr) = r.pkts().find_map(|p| p.as_sender_report().ok().flatten()) {
                        let ts = r.rtp_timestamp().expect("SR placed on the timeline").timestamp();
                        reports.push((ts, sr.ntp_timestamp().0));
                    }
                }
                CodecItem::VideoFrame(f) => {
                    let s = FrameStamp::from_frame(f.data()).unwrap();
                    frames.push((f.timestamp().timestamp(), s.capture_unix_micros));
                }
                _ => {}
            }
        }
        // Over UDP, RTCP and RTP come on different sockets (and retina reads
        // RTCP first), so a report can arrive before its frame's packets: one
        // at the window's end may have no frame yet. Not a defect; leave it out.
        if let Some(&(last_frame, _)) = frames.last() {
            reports.retain(|(ts, _)| !udp || *ts <= last_frame);
        }
        // Right after PLAY and about every second.
        assert!((3..=6).contains(&reports.len()), "udp={udp}: {} reports", reports.len());
        for (ts, ntp) in &reports {
            let (_, capture) = frames
                .iter()
                .find(|(fts, _)| fts == ts)
                .unwrap_or_else(|| panic!("udp={udp}: no frame at the SR's RTP time {ts}"));
            assert_eq!(
                tandem::replay::onvif::time_from_ntp(*ntp),
                Time90k::from_unix_micros(*capture),
                "udp={udp}: SR NTP = the frame's capture time"
            );
        }
    }
}

fn gst_rtspsrc_available() -> bool {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('Gst','1.0'); from gi.repository import Gst; Gst.init(None); \
             assert all(Gst.ElementFactory.find(e) for e in ('rtspsrc','rtph264depay','h264parse','fakesink'))",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// GStreamer's rtspsrc in ONVIF mode (onvif-rate-control=false, a clock
/// range from a seek) receives the frames of the range: the replay follows
/// the specification, not just Tandem's own client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtspsrc_onvif_mode_replays_the_range() {
    if !common::prerequisite(
        gst_rtspsrc_available(),
        "GStreamer rtspsrc with Python bindings (python3-gi, gstreamer1.0-plugins-good/bad)",
    ) {
        return;
    }
    let server = camera(Some(60)).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 2.0;
    let start = end - 3.0;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/gst_onvif_replay.py");
    let url = server.url(1);
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        // `timeout`: a GStreamer that hangs fails the test instead of stalling it.
        Command::new("timeout")
            .args([
                "60",
                "/usr/bin/python3",
                script,
                &url,
                &format!("{start:.6}"),
                &format!("{end:.6}"),
                "20",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("frames "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    // The BYE after the last frame usually becomes EOS; rtspsrc does not
    // always turn it into one, so "no more buffers" counts as the end too.
    assert!(
        text.contains("eos") || text.contains("idle"),
        "rtspsrc received the range and stopped: {text}"
    );
    // 3 s at 25 fps, from the key frame at or before start (≤ 1 GOP more).
    assert!((75..=75 + 25).contains(&frames), "GStreamer received {frames} frames");
    assert!(took < Duration::from_secs(30), "{took:?}");
}
